#!/bin/sh
# Runs in dom0 under `lab serve --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent`:
# the ovm agent serving the local Xen host on port 8899 (forwarded to the host), with a fresh
# state directory and the password the end-to-end test presents (ovm-core/tests/agent_lab.rs).
# Other agents reach it for migrations at its address on the lab LAN (xenbr0).
set -e
printf '%s\n' ovm-lab-agent > /tmp/ovm-agent-password
lan=$(ip -4 -o addr show dev xenbr0 | awk '{ split($4, a, "/"); print a[1]; exit }')
[ -n "$lan" ] || { echo "agent-dom0: xenbr0 has no IPv4 address" >&2; exit 1; }
exec /mnt/host/bin/ovm-agent serve --backend xen --listen 0.0.0.0:8899 --migration-address "$lan:8899" \
    --state-dir /var/lib/ovm-agent --password-file /tmp/ovm-agent-password
