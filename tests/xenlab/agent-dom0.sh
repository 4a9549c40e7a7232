#!/bin/sh
# Runs in dom0 under `lab serve --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent`:
# the ovm agent serving the local Xen host on port 8899 (forwarded to the host), with a fresh
# state directory and the password the end-to-end test presents (ovm-core/tests/agent_lab.rs).
# Other agents reach it for migrations at its address on the lab LAN (xenbr0).
set -e
# With --dom0-file tests/xenlab/dom0-runner.sh, host tests can also run commands in dom0.
[ ! -x /mnt/host/bin/dom0-runner.sh ] || /mnt/host/bin/dom0-runner.sh &
# With --dom0-file bindings-examples/storage-plugins/ovm-example-nfs-shares, the example external
# storage plug-in is installed where the agent looks for plug-ins (owned by root, writable by root only).
plugins=/usr/lib/ovm/storage-plugins
mkdir -p "$plugins" && chmod 755 /usr/lib/ovm "$plugins"
if [ -e /mnt/host/bin/ovm-example-nfs-shares ]; then
    cp /mnt/host/bin/ovm-example-nfs-shares "$plugins/" && chmod 755 "$plugins/ovm-example-nfs-shares"
fi
# Bonds and VLANs, as an Oracle VM Server's boot loads them (no default bond: ovm names its own).
modprobe bonding max_bonds=0 || echo "agent-dom0: no bonding module" >&2
modprobe 8021q || echo "agent-dom0: no 8021q module" >&2
printf '%s\n' ovm-lab-agent > /tmp/ovm-agent-password
lan=$(ip -4 -o addr show dev xenbr0 | awk '{ split($4, a, "/"); print a[1]; exit }')
[ -n "$lan" ] || { echo "agent-dom0: xenbr0 has no IPv4 address" >&2; exit 1; }
# The agent's state is kept on the server's share, which outlives a power cycle as a real
# server's disk does (a server powered off and woken again is still owned by its manager). The
# lab's dom0 runs no init system, so the agent powers the machine off directly (busybox syncs first).
# The agent rewrites its alive file each second, for a watchdog (`ovm-agent watchdog`) that tests start.
# The lab's network boot server on xenbr0, where a VM's NIC without a network is plugged: DHCP
# offering PXELINUX, TFTP serving it, its configuration and the guest kernel (the images share).
net=${lan%.*}
dnsmasq --port=0 --interface=xenbr0 --bind-interfaces --user=root --group=root \
    --dhcp-range="$net.100,$net.199,255.255.255.0,1h" --dhcp-boot=pxelinux.0 --log-dhcp \
    --enable-tftp --tftp-root=/var/lib/ovm-lab/images/pxe --dhcp-leasefile=/tmp/dnsmasq.leases \
    --pid-file=/run/dnsmasq.pid --log-facility=/mnt/host/results/dnsmasq.log ||
    { echo "agent-dom0: dnsmasq (the PXE server) did not start" >&2; exit 1; }
# The lab's install tree over HTTP (busybox httpd), for PV guests' network boot.
httpd -p "$lan:80" -h /var/lib/ovm-lab/images/install-tree ||
    { echo "agent-dom0: httpd (the install tree) did not start" >&2; exit 1; }
mkdir -p /mnt/host/results/agent-state
exec /mnt/host/bin/ovm-agent serve --backend xen --listen 0.0.0.0:8899 --migration-address "$lan:8899" \
    --state-dir /mnt/host/results/agent-state --password-file /tmp/ovm-agent-password \
    --storage-plugin-dir "$plugins" --power-off-command "poweroff -f" --alive-file /tmp/ovm-agent.alive
