#!/bin/bash
# The data-centre self-test, on the host, under
#   lab serve -n 3 --storage --manager --dom0 tests/xenlab/dom0-runner.sh -- tests/xenlab/dc-selftest.sh
# (make dc-lab-test): three Xen servers and the storage server on the lab switch, one boot for all,
# this script in the manager's network namespace on the management LAN (10.77.0.250):
# the manager reaching every dom0 and the storage server directly,
# NFS mounted on every server over an active-backup bond of two storage NICs, an iSCSI LUN shared by
# two servers, a bond that loses a link at the switch and carries on, a VLAN between two servers,
# a guest on server 2 reaching a guest on server 3 over a VLAN-backed VM network, a cut link, a
# partition and a hung server seen and healed, server 1 killed while servers 2 and 3 and the storage
# server carry on, server 1 booted again by the manager's magic packet, and the storage server
# killed and booted again with its clients recovering. Each phase prints its time.
# shellcheck disable=SC2016  # the commands in single quotes expand in dom0, not here
set -uo pipefail
: "${OVM_XENLAB_RUN:?run under lab serve}" "${OVM_XENLAB_SWITCH_DIR:?run with the lab switch}"
: "${OVM_XENLAB_STORAGE_SHARE:?run with lab serve --storage}" "${OVM_XENLAB_MANAGER_IP:?run with lab serve --manager}"
[ "${OVM_XENLAB_NODES:-0}" = 3 ] || { echo "dc-selftest: needs three servers (lab serve -n 3)" >&2; exit 2; }
LAB=$OVM_XENLAB_LAB SW=$OVM_XENLAB_SWITCH DIR=$OVM_XENLAB_SWITCH_DIR RUN=$OVM_XENLAB_RUN
STORAGE_IP=$OVM_XENLAB_STORAGE_IP
T_START=$(date +%s.%N)
passed=0 failed=0 PHASES=()
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
say() { printf '[dc-selftest %6ss] %s\n' "$(secs "$T_START")" "$*" >&2; }
pass() { passed=$((passed + 1)); say "PASS $*"; }
fail() { failed=$((failed + 1)); say "FAIL $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
PHASE='' PHASE_T0=''
phase() {   # phase NAME: end the current phase (its time is printed and kept), start NAME
    if [ -n "$PHASE" ]; then
        PHASES+=("$PHASE=$(secs "$PHASE_T0")s")
        say "phase $PHASE took $(secs "$PHASE_T0")s"
    fi
    PHASE=$1 PHASE_T0=$(now)
    [ -z "$PHASE" ] || say "--- phase $PHASE"
}

# on K 'COMMAND' [SECONDS]: run COMMAND in server K's dom0 (K = storage: on the storage server);
# its output on stdout, its status ours. In dom0 the functions of dom0/dc-lib.sh are loaded.
on() {
    local share t=$((${3:-60} * 5)) pre='. lab/dc-lib.sh; '
    if [ "$1" = storage ]; then share=$OVM_XENLAB_STORAGE_SHARE pre=''; else share=$RUN/node$1/share; fi
    rm -f "$share/cmd.rc" "$share/cmd.out"
    printf '%s%s\n' "$pre" "$2" > "$share/cmd.sh" && mv "$share/cmd.sh" "$share/cmd.go"
    while [ ! -e "$share/cmd.rc" ] && [ $t -gt 0 ]; do sleep 0.2; t=$((t - 1)); done
    [ -e "$share/cmd.rc" ] || { say "machine $1 did not finish within ${3:-60}s: $2"; return 124; }
    cat "$share/cmd.out"
    return "$(cat "$share/cmd.rc")"
}
# on_each 'COMMAND' K...: COMMAND on the servers K... at once ($K in COMMAND is the server's number);
# fails if it fails on any; the outputs are shown, each line prefixed with its server.
on_each() {
    local cmd=$1 k rc=0 pids=()
    shift
    for k in "$@"; do
        (on "$k" "K=$k; $cmd" 120 > "$RUN/on_each.$k" 2>&1) &
        pids+=($!)
    done
    for k in "${!pids[@]}"; do wait "${pids[$k]}" || rc=1; done
    for k in "$@"; do sed "s/^/    server $k: /" "$RUN/on_each.$k" >&2; done
    return $rc
}
quiet() { "$@" > "$RUN/last.out" 2>&1 || { sed 's/^/    /' "$RUN/last.out" >&2; return 1; }; }
reaches() { on "$1" "ping -c 1 -W 2 $2 >/dev/null || ping -c 2 -W 2 $2 >/dev/null"; }
unreachable() { ! reaches "$1" "$2"; }
state() { "$LAB" power "$RUN" "$1" state; }
wait_serving() {   # wait_serving K SECONDS
    local t=$2
    while [ ! -e "$RUN/node$1/share/results/serving" ] && [ "$t" -gt 0 ]; do sleep 1; t=$((t - 1)); done
    [ -e "$RUN/node$1/share/results/serving" ]
}
# http_get IP TEXT: the manager fetches / from IP port 8080 and finds TEXT in it
http_get() {
    timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/8080" && printf "GET / HTTP/1.0\r\n\r\n" >&3 && cat <&3' "$1" 2>/dev/null |
        grep -qx "$2"
}
tcp_open() { timeout 10 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }
manager_sees() { http_get 10.77.0.1 "server 1" && http_get 10.77.0.2 "server 2" && http_get 10.77.0.3 "server 3"; }
manager_sees_2_3_not_1() { ! http_get 10.77.0.1 "server 1" && http_get 10.77.0.2 "server 2" && http_get 10.77.0.3 "server 3"; }
# wake MAC IP: a Wake-on-LAN magic packet for MAC, a UDP datagram to port 9 of IP, whose neighbour
# entry is set to MAC (the server sleeps and answers no ARP), sent as one write: one datagram
wake() {
    local hex m i p='\xff\xff\xff\xff\xff\xff'
    hex=$(for m in ${1//:/ }; do printf '\\x%s' "$m"; done)
    for ((i = 0; i < 16; i++)); do p+=$hex; done
    # shellcheck disable=SC2059  # the packet's bytes are printf escapes
    ip neigh replace "$2" lladdr "$1" dev mgr0 nud permanent &&
        printf "$p" > "$RUN/magic" && cat "$RUN/magic" > "/dev/udp/$2/9"
}
storage_ready() {   # storage_ready SECONDS: until the storage server serves
    local t=$1
    while [ ! -e "$OVM_XENLAB_STORAGE_SHARE/results/ready" ] && [ "$t" -gt 0 ]; do sleep 1; t=$((t - 1)); done
    [ -e "$OVM_XENLAB_STORAGE_SHARE/results/ready" ]
}
arp_from() { "$SW" ctl "$DIR" arp "$1" | grep -q "^$2 $3 "; }   # arp_from IP MAC PORT: who answered

IQN=iqn.2026-01.lab.ovm
LUN0=ovm-lab-shared-lun0
REPO=$STORAGE_IP:/srv/nfs/repo

phase network
check "server 1 reaches servers 2 and 3 through the switch" eval 'reaches 1 10.77.0.2 && reaches 1 10.77.0.3'
check "server 3 reaches server 2" reaches 3 10.77.0.2
check "the switch saw server 2 (52:54:00:0a:00:02) answer ARP for 10.77.0.2" arp_from 10.77.0.2 52:54:00:0a:00:02 node2.lan
check "four NICs up in every dom0 (lan0, stor0, stor1, vm0)" on_each \
    'for n in lan0 stor0 stor1 vm0; do grep -qx up /sys/class/net/$n/operstate || { echo "$n not up"; exit 1; }; done' 1 2 3
check "the storage server answers on the management LAN (10.77.0.254)" reaches 1 "$OVM_XENLAB_STORAGE_LAN_IP"

phase manager
check "a web service on port 8080 in every dom0" on_each 'web_up $K' 1 2 3
check "the manager ($OVM_XENLAB_MANAGER_IP, on the LAN) fetches a page from every dom0 directly (10.77.0.K:8080)" manager_sees
check "the manager reaches the storage server's NFS and iSCSI ports on the LAN" \
    eval 'tcp_open "$OVM_XENLAB_STORAGE_LAN_IP" 2049 && tcp_open "$OVM_XENLAB_STORAGE_LAN_IP" 3260'
check "server 1's dom0 reaches the manager" reaches 1 "$OVM_XENLAB_MANAGER_IP"
check "the switch saw the manager ($OVM_XENLAB_MANAGER_MAC) answer ARP for $OVM_XENLAB_MANAGER_IP" \
    arp_from "$OVM_XENLAB_MANAGER_IP" "$OVM_XENLAB_MANAGER_MAC" manager.lan

phase bonds
check "every server bonds stor0 and stor1 (active-backup, ARP-monitored) and reaches the storage server over bond0" \
    on_each 'bond_up $K && echo "bond0 10.77.1.$K, active $(active_slave)"' 1 2 3

phase nfs
check "NFS: $REPO (NFSv4.2) mounted on every server" on_each "nfs_mount $REPO /mnt/repo" 1 2 3
check "NFS: server 1 writes a file" on 1 'echo "from server 1 at $(date +%s)" > /mnt/repo/s1.txt && sync'
check "NFS: servers 2 and 3 read server 1's file" on_each 'grep -q "^from server 1 " /mnt/repo/s1.txt' 2 3
nfs_each_writes_all_read() {
    on_each 'echo "server $K" > /mnt/repo/own-$K.txt && sync' 1 2 3 &&
        on_each 'for k in 1 2 3; do grep -qx "server $k" /mnt/repo/own-$k.txt || exit 1; done' 1 2 3
}
check "NFS: each server writes its own file; every server reads all three" nfs_each_writes_all_read
check "NFS: the storage server holds the files on its disk" on storage 'cat /srv/nfs/repo/own-1.txt /srv/nfs/repo/own-2.txt /srv/nfs/repo/own-3.txt | grep -c server | grep -qx 3'
check "NFS: NFSv3 (nolock) mount on server 3 reads the same file" \
    on 3 "nfs_mount $REPO /mnt/repo3 vers=3,nolock,proto=tcp,mountproto=tcp && grep -q '^from server 1 ' /mnt/repo3/s1.txt && umount /mnt/repo3"

phase iscsi
check "iSCSI: servers 2 and 3 log in to $IQN:shared" on_each "iscsi_login $IQN:shared >/dev/null && lun_dev $LUN0 >/dev/null" 2 3
check "iSCSI: the storage server sees both sessions" \
    on storage "grep -l 'Session State: TARG_SESS_STATE_LOGGED_IN' /sys/kernel/config/target/iscsi/$IQN:shared/tpgt_1/acls/*/info | wc -l | grep -qx 2"
marker="lun0 written by server 2 at $(date +%s)"
check "iSCSI: server 2 writes sector 0 of the shared LUN" on 2 "sector_write \$(lun_dev $LUN0) 0 '$marker'"
check "iSCSI: server 3 reads server 2's sector from the same LUN" on 3 "[ \"\$(sector_read \$(lun_dev $LUN0) 0)\" = '$marker' ]"
lun_3_to_2() {
    on 3 "sector_write \$(lun_dev $LUN0) 1 'from server 3'" &&
        on 2 "[ \"\$(sector_read \$(lun_dev $LUN0) 1)\" = 'from server 3' ]"
}
check "iSCSI: server 3 writes sector 1, server 2 reads it" lun_3_to_2
check "iSCSI: the ACL keeps server 2 out of $IQN:private3" on 2 "! iscsi_login $IQN:private3 2>&1"
check "iSCSI: the ACL lets server 3 into $IQN:private3" on 3 "iscsi_login $IQN:private3 >/dev/null && lun_dev ovm-lab-private3-lun0 >/dev/null"

phase bond-failover
on 2 'ping -c 40 -i 0.25 -W 1 10.77.1.254 > /tmp/bond-ping.log 2>&1 &' >/dev/null
sleep 2
"$SW" ctl "$DIR" link node2.storage down >/dev/null
t0=$(now)
check "bond: stor0's link cut at the switch, server 2's bond0 fails over to stor1" on 2 'wait_active stor1 30'
say "    failover took $(secs "$t0")s"
check "bond: NFS and iSCSI still work on server 2 over stor1" \
    on 2 "grep -q '^from server 1 ' /mnt/repo/s1.txt && echo after-failover > /mnt/repo/bond.txt && sync && [ \"\$(sector_read \$(lun_dev $LUN0) 1)\" = 'from server 3' ]"
"$SW" ctl "$DIR" link node2.storage up >/dev/null
check "bond: the link restored, bond0 goes back to its primary stor0" on 2 'wait_active stor0 30'
check "bond: a ping of the storage server every 0.25 s ran on through the cut (at least 30 of 40 answered)" \
    on 2 'ping_received /tmp/bond-ping.log 30 30' 60

phase vlan
check "VLAN 100 on vm0 of servers 2 and 3 (10.77.100.K)" on_each 'vlan_up vm0 100 10.77.100.$K/24' 2 3
check "VLAN 100: server 2 reaches server 3" reaches 2 10.77.100.3
check "VLAN 100: the switch saw server 3 answer ARP inside the 802.1Q frame (on node3.vm)" \
    arp_from 10.77.100.3 52:54:00:0c:00:03 node3.vm
check "VLAN 100: server 1's untagged vm0 (10.77.100.1) does not reach it" \
    on 1 'ip addr add 10.77.100.1/24 dev vm0 && ! ping -c 2 -W 2 10.77.100.3 >/dev/null'

phase guests
check "a VM network on servers 2 and 3: bridge vmnet200 on VLAN 200 of vm0" on_each 'vlan_up vm0 200 && bridge_up vmnet200 vm0.200' 2 3
check "guest g3 boots on server 3 on vmnet200 (10.77.200.13)" on 3 'guest_start g3 10.77.200.13/24 10.77.200.13 vmnet200 00:16:3e:77:02:03' 120
check "guest g2 boots on server 2 on vmnet200 (10.77.200.12), pinging g3" on 2 'guest_start g2 10.77.200.12/24 10.77.200.13 vmnet200 00:16:3e:77:02:02' 120
check "guest g3 is up" on 3 'guest_wait g3 OVM-DOMU-READY 240' 260
check "guest g2 on server 2 reached guest g3 on server 3" on 2 'guest_wait g2 "OVM-DOMU-PING 10.77.200.13 OK" 240' 260
check "the switch carried g3's ARP answer (00:16:3e:77:02:03) from node3.vm" arp_from 10.77.200.13 00:16:3e:77:02:03 node3.vm

phase faults
"$SW" ctl "$DIR" link node2.lan down >/dev/null
check "a cut link: server 1 cannot reach server 2" unreachable 1 10.77.0.2
"$SW" ctl "$DIR" link node2.lan up >/dev/null
check "the link restored: server 1 reaches server 2" reaches 1 10.77.0.2
"$SW" ctl "$DIR" partition node1 '|' node2 node3 storage >/dev/null
check "partitioned: server 1 cannot reach server 3" unreachable 1 10.77.0.3
check "partitioned: servers 2 and 3 still reach each other" reaches 2 10.77.0.3
"$SW" ctl "$DIR" heal >/dev/null
check "healed: server 1 reaches server 3" reaches 1 10.77.0.3
"$LAB" power "$RUN" 3 hang >/dev/null 2>&1
check "server 3's QEMU stopped is seen as hung" test "$(state 3)" = hung
check "a hung server 3 does not answer" unreachable 2 10.77.0.3
"$LAB" power "$RUN" 3 resume >/dev/null 2>&1
check "server 3 resumed answers again" reaches 2 10.77.0.3

phase kill-server1
t0=$(now)
"$LAB" power "$RUN" 1 kill >/dev/null 2>&1
check "server 1 killed is seen as off" test "$(state 1)" = off
check "servers 2 and 3 keep talking" eval 'reaches 2 10.77.0.3 && reaches 3 10.77.0.2'
nfs_2_to_3() {
    on 2 'echo "while server 1 was off" > /mnt/repo/s1-off.txt && sync' &&
        on 3 'grep -qx "while server 1 was off" /mnt/repo/s1-off.txt'
}
check "the storage server keeps serving: server 2 writes to NFS, server 3 reads it" nfs_2_to_3
check "the storage server keeps serving: server 3 reads the shared LUN" on 3 "[ \"\$(sector_read \$(lun_dev $LUN0) 0)\" = '$marker' ]"
check "guest g2 on server 2 still reaches guest g3 on server 3 (its heartbeat)" on 2 'guest_heartbeat g2 30' 40
check "the manager sees server 1 gone, servers 2 and 3 answering" manager_sees_2_3_not_1
check "the switch still serves servers 2, 3 and the storage server" \
    sh -c "'$SW' ctl '$DIR' ports | grep -cE '^(node2\.lan|node3\.lan|storage\.storage) [a-z]+ up' | grep -qx 3"

phase wake-server1
check "the manager sends a magic packet for server 1's management MAC" wake 52:54:00:0a:00:01 10.77.0.1
check "the switch saw the magic packet come from the manager" sh -c "'$SW' ctl '$DIR' wol | grep -q '^52:54:00:0a:00:01 manager.lan '"
check "the power controller booted server 1" wait_serving 1 400
say "    server 1 was back $(secs "$t0")s after it was killed"
check "server 1 reaches server 2 after its power-on" reaches 1 10.77.0.2
check "the manager reaches server 1 again" eval 'on 1 "web_up 1" && http_get 10.77.0.1 "server 1"'
check "server 1, booted again, mounts the NFS export (over the LAN) and reads what server 2 wrote while it was off" \
    on 1 "nfs_mount $OVM_XENLAB_STORAGE_LAN_IP:/srv/nfs/repo /mnt/repo && grep -qx 'while server 1 was off' /mnt/repo/s1-off.txt"
check "the power log shows the magic packet and the power-on" sh -c "grep -q 'wol 52:54:00:0a:00:01: server 1 is off' '$RUN/power.log' && grep -q 'node1 on' '$RUN/power.log'"

phase storage-restart
t0=$(now)
"$LAB" power "$RUN" storage kill >/dev/null 2>&1
check "the storage server killed is seen as off" test "$(state storage)" = off
"$LAB" power "$RUN" storage on >/dev/null 2>&1
check "the storage server boots again and serves (its disk kept)" storage_ready 120
say "    the storage server served again $(secs "$t0")s after it was killed"
check "NFS: server 2's mount recovers and reads the files written before the restart" \
    on 2 'timeout 100 grep -qx "while server 1 was off" /mnt/repo/s1-off.txt' 110
check "iSCSI: server 3's session recovers and reads the shared LUN's sector written before the restart" \
    on 3 "for i in \$(seq 50); do [ \"\$(sector_read \$(lun_dev $LUN0) 0)\" = '$marker' ] && exit 0; sleep 2; done; exit 1" 120
say "    storage clients recovered $(secs "$t0")s after the storage server was killed"

phase cleanup
on_each 'xl destroy g$K 2>/dev/null; iscsiadm -m node --logoutall=all >/dev/null 2>&1; umount /mnt/repo 2>/dev/null; true' 2 3 >/dev/null 2>&1
phase ''
say "TIMING ${PHASES[*]} total=$(secs "$T_START")s"
say "$passed passed, $failed failed"
[ "$failed" = 0 ]
