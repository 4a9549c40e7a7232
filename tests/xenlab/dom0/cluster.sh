# Multi-server checks, run inside the dom0 of every lab server of a cluster
# (as lab/main.sh). Server K (OVM_LAB_NODE) has 10.77.0.K on xenbr0, which
# bridges lan0, the lab network shared by all servers; its VM gets 10.77.0.(100+K).
# Two raw images are attached to every server (share-rw): "ovm-shared" (a
# small mailbox the servers coordinate through, one 512-byte sector each) and
# "ovm-pool" (formatted with OCFS2 and mounted on all servers at once).
# shellcheck shell=bash
. ./lab/common.sh
T0=$(uptime_s)
start_hello_service

disk_with_serial() {
    local b
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${b##*/}"; return 0; }
    done
    return 1
}
MBOX=$(disk_with_serial ovm-shared) || { fail "shared disk ovm-shared attached"; exit 1; }
POOL=$(disk_with_serial ovm-pool) || { fail "shared disk ovm-pool attached"; exit 1; }
log "shared disks: mailbox $MBOX, pool $POOL"

# Mailbox: sector K holds the states reached by server K ("hello vm-up ...").
STATES=""
put_state() {
    STATES="$STATES $1"
    printf '%-511s\n' "node$NODE$STATES" | dd of="$MBOX" bs=512 seek="$NODE" count=1 conv=notrunc oflag=direct 2>/dev/null
}
states_of() { dd if="$MBOX" bs=512 skip="$1" count=1 iflag=direct 2>/dev/null | tr -d '\000'; }
all_reached() {
    local k
    for ((k = 1; k <= NODES; k++)); do
        case " $(states_of "$k") " in *" $1 "*) ;; *) return 1 ;; esac
    done
}
# barrier STATE SECONDS: announce STATE, wait until every server reached it
barrier() {
    put_state "$1"
    wait_until "$2" all_reached "$1"
}
others() { local k; for ((k = 1; k <= NODES; k++)); do [ "$k" = "$NODE" ] || echo "$k"; done; }

log "xenbr0: $(ip -o -4 addr show dev xenbr0 | awk '{print $4}'), ports: $(cd /sys/class/net/xenbr0/brif && echo *)"
check "lab NIC lan0 is a port of xenbr0" test -e /sys/class/net/xenbr0/brif/lan0

# 1. the shared disk: every server sees every other server's sector
check "shared disk: all $NODES servers' markers seen" barrier hello 300

# 2. dom0 to dom0 over the lab network
for k in $(others); do
    check "dom0 of server $NODE pings dom0 of server $k ($NET.$k)" wait_until 60 ping -c 1 -W 1 "$NET.$k"
done

# 3. a VM on every server, on xenbr0; it pings the other servers' dom0s
VM=vm$NODE
VM_IP=$NET.$((100 + NODE))
ping_list=$(for k in $(others); do printf '%s,' "$NET.$k"; done)
cfg=$(guest_cfg "$VM" 192 "ovm.ip=$VM_IP/24 ovm.ping=${ping_list%,}" "bridge=xenbr0,mac=00:16:3e:77:01:$((10 + NODE))")
t=$(uptime_s)
check "xl create $VM" xl create "$cfg"
if wait_console "$VM" OVM-DOMU-READY 300; then pass "$VM up and done after $(since "$t")s"; else fail "$VM console marker"; fi
grep OVM-DOMU "$(console_log "$VM")" | sed "s/^/    $VM console: /"
for k in $(others); do
    check "$VM (server $NODE) pinged dom0 of server $k" console_has "$VM" "OVM-DOMU-PING $NET.$k OK"
done

# 4. each dom0 reaches the VMs on the other servers
barrier vm-up 300 || fail "not every server got its VM up"
for k in $(others); do
    check "dom0 of server $NODE pings vm$k on server $k ($NET.$((100 + k)))" wait_until 30 ping -c 1 -W 2 "$NET.$((100 + k))"
done
barrier pinged 300 || fail "not every server finished pinging the VMs"
check "xl destroy $VM" xl destroy "$VM"

# 5. OCFS2 (o2cb stack, local heartbeat) on the shared pool disk, mounted on
#    every server at once: the server pool file system of Oracle VM.
if [ -x /sbin/mkfs.ocfs2 ] && [ "${OVM_LAB_OCFS2:-1}" = 1 ]; then
    t=$(uptime_s)
    mkdir -p /etc/ocfs2 /dlm /mnt/pool
    ln -sf /proc/mounts /etc/mtab
    hostname "ovm-lab$NODE"
    {
        printf 'cluster:\n\tnode_count = %s\n\theartbeat_mode = local\n\tname = ovmlab\n\n' "$NODES"
        for ((k = 1; k <= NODES; k++)); do
            printf 'node:\n\tip_port = 7777\n\tip_address = %s.%s\n\tnumber = %s\n\tname = ovm-lab%s\n\tcluster = ovmlab\n\n' "$NET" "$k" "$k" "$k"
        done
    } > /etc/ocfs2/cluster.conf
    modprobe ocfs2_stack_o2cb; modprobe ocfs2_dlmfs
    mount -t configfs none /sys/kernel/config 2>/dev/null
    mount -t ocfs2_dlmfs ocfs2_dlmfs /dlm
    check "o2cb register-cluster ovmlab" o2cb register-cluster ovmlab
    if [ "$NODE" = 1 ]; then
        check "mkfs.ocfs2 on the shared pool disk" mkfs.ocfs2 -q -b 4K -C 4K -N "$NODES" -J size=8M -L ovmpool \
            --cluster-stack=o2cb --cluster-name=ovmlab "$POOL"
    fi
    if barrier mkfs 300; then
        check "mount.ocfs2 $POOL /mnt/pool" mount.ocfs2 "$POOL" /mnt/pool
        echo "written by server $NODE" > "/mnt/pool/from-server$NODE"; sync
        barrier mounted 300 || fail "not every server mounted the pool"
        for k in $(others); do
            check "OCFS2: server $NODE reads server $k's file" wait_until 30 grep -qx "written by server $k" "/mnt/pool/from-server$k"
        done
        barrier checked 300 || true
        check "umount /mnt/pool" umount /mnt/pool
        log "TIMING OCFS2 part took $(since "$t")s"
    else
        fail "server 1 never formatted the pool"
    fi
fi

barrier finished 120 || fail "not every server finished"
check "host reached dom0 port 8899" wait_until 60 test -s /run/ovm-lab-hello.hits
log "TIMING cluster checks in dom0 took $(since "$T0")s"
log "server $NODE: $CHECKS_PASSED checks passed, $CHECKS_FAILED failed"
[ "$CHECKS_FAILED" = 0 ]
