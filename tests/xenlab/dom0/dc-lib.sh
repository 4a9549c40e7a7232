# Functions the data-centre self-test (tests/xenlab/dc-selftest.sh, on the host) runs in a server's
# dom0 through dom0-runner.sh, as `. lab/dc-lib.sh; FUNCTION ARGS`: bonds, VLANs, NFS mounts, iSCSI
# logins and PV guests, the way an Oracle VM Server sets them up. Each returns non-zero on failure.
# shellcheck shell=bash
STORAGE_IP=${STORAGE_IP:-10.77.1.254}

# guest_heartbeat NAME SECONDS: a new OVM-DOMU-ALIVE line with net=OK on the guest's console within
# SECONDS (the guest runs and its first ping address answers now, not only at boot)
guest_heartbeat() {
    local log=/var/log/xen/console/guest-$1.log i n
    n=$(grep -c 'OVM-DOMU-ALIVE .* net=OK' "$log" 2>/dev/null)
    for ((i = 0; i < $2 * 2; i++)); do
        [ "$(grep -c 'OVM-DOMU-ALIVE .* net=OK' "$log" 2>/dev/null)" -gt "${n:-0}" ] && { grep 'OVM-DOMU-ALIVE' "$log" | tail -n1; return 0; }
        sleep 0.5
    done
    echo "guest $1: no new heartbeat with net=OK:"; grep 'OVM-DOMU-ALIVE' "$log" | tail -n3
    return 1
}

# web_up K: a small web service on port 8080 that answers "server K" (for the manager to reach)
web_up() {
    mkdir -p /tmp/www && echo "server $1" > /tmp/www/index.html && httpd -p 8080 -h /tmp/www
}

# bond_up K: bond0 = stor0 + stor1, active-backup with stor0 primary, link state by ARP monitoring of
# the storage server (a link cut at the switch leaves the NIC's carrier up, so MII monitoring would
# not see it), address 10.77.1.K/24.
bond_up() {
    local b=/sys/class/net/bond0/bonding
    modprobe bonding max_bonds=0 || return 1
    [ -e /sys/class/net/bond0 ] || echo +bond0 > /sys/class/net/bonding_masters || return 1
    echo active-backup > $b/mode && echo 0 > $b/miimon && echo 200 > $b/arp_interval &&
        echo +"$STORAGE_IP" > $b/arp_ip_target || return 1
    ip link set stor0 down && ip link set stor1 down || return 1
    echo +stor0 > $b/slaves && echo +stor1 > $b/slaves && echo stor0 > $b/primary || return 1
    ip link set bond0 up && ip addr add "10.77.1.$1/24" dev bond0 || return 1
    wait_active stor0 30 && ping -c 1 -W 3 "$STORAGE_IP" >/dev/null
}
active_slave() { sed -n 's/^Currently Active Slave: //p' /proc/net/bonding/bond0; }
# wait_active NIC SECONDS: until NIC is the bond's active slave
wait_active() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do [ "$(active_slave)" = "$1" ] && return 0; sleep 0.1; done
    echo "active slave: $(active_slave), not $1"; return 1
}

# ping_received LOG MIN SECONDS: the ping that writes LOG finishes within SECONDS with MIN or more replies
ping_received() {
    local i r
    for ((i = 0; i < $3 * 2; i++)); do grep -q 'packets received' "$1" && break; sleep 0.5; done
    tail -n 2 "$1"
    r=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' "$1")
    [ "${r:-0}" -ge "$2" ]
}

# vlan_up NIC ID [ADDR/NN]: NIC.ID, an 802.1Q VLAN interface on NIC, up (with ADDR)
vlan_up() {
    modprobe 8021q || return 1
    [ -e "/sys/class/net/$1.$2" ] || vconfig add "$1" "$2" >/dev/null || return 1
    ip link set "$1.$2" up || return 1
    [ -z "${3:-}" ] || ip addr add "$3" dev "$1.$2"
}

# bridge_up BRIDGE PORT: a Linux bridge with PORT in it (a VM network)
bridge_up() {
    [ -e "/sys/class/net/$1" ] || brctl addbr "$1" || return 1
    brctl addif "$1" "$2" && ip link set "$1" up
}

# nfs_mount SERVER:PATH DIR [OPTIONS]: mount an NFS export (default NFSv4.2)
nfs_mount() {
    mkdir -p "$2" || return 1
    modprobe nfsv4; modprobe nfsv3
    mount.nfs "$1" "$2" -o "${3:-vers=4.2}" && grep -q " $2 nfs" /proc/mounts
}

# iscsi_login TARGET-IQN [PORTAL]: discover the portal's targets, log in to TARGET
iscsi_login() {
    local portal=${2:-$STORAGE_IP}
    iscsiadm -m discovery -t sendtargets -p "$portal" >/dev/null || return 1
    iscsiadm -m node -T "$1" -p "$portal" --login
}
# lun_dev SERIAL [SECONDS]: the SCSI disk whose unit serial number (VPD page 0x80) is SERIAL
lun_dev() {
    local i d
    for ((i = 0; i < ${2:-30} * 2; i++)); do
        for d in /sys/block/sd*; do
            [ -e "$d/device/vpd_pg80" ] && grep -q "$1" "$d/device/vpd_pg80" 2>/dev/null && { echo "/dev/${d##*/}"; return 0; }
        done
        sleep 0.5
    done
    echo "no SCSI disk with serial $1" >&2; return 1
}
# sector_write DEV N TEXT / sector_read DEV N: one 512-byte sector, bypassing the page cache
sector_write() { printf '%-511s\n' "$3" | dd of="$1" bs=512 seek="$2" count=1 conv=notrunc oflag=direct 2>/dev/null; }
sector_read() { dd if="$1" bs=512 skip="$2" count=1 iflag=direct 2>/dev/null | tr -d '\000' | sed 's/ *$//'; }

# guest_start NAME IP/NN PING BRIDGE MAC: boot the lab's tiny PV guest on BRIDGE; it pings PING
guest_start() {
    cat > "/tmp/$1.cfg" <<EOF
name = "$1"
type = "pv"
kernel = "/var/lib/ovm-lab/vmlinux"
ramdisk = "/var/lib/ovm-lab/domu-initrd.gz"
extra = "console=hvc0 quiet ovm.ip=$2 ovm.ping=$3"
memory = 128
vcpus = 1
on_crash = "preserve"
vif = [ 'bridge=$4,mac=$5' ]
EOF
    xl create "/tmp/$1.cfg" >/dev/null
}
# guest_wait NAME TEXT SECONDS: until the guest's console shows TEXT
guest_wait() {
    local i
    for ((i = 0; i < $3 * 2; i++)); do
        grep -qF -- "$2" "/var/log/xen/console/guest-$1.log" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "guest $1: no '$2' on its console:"; grep OVM-DOMU "/var/log/xen/console/guest-$1.log" 2>/dev/null
    return 1
}
