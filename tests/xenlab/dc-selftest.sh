#!/bin/bash
# The data-centre self-test, on the host, under `lab serve -n 2 --dom0 tests/xenlab/dom0-runner.sh`:
# servers on the lab switch keep talking when one is killed, hung or partitioned away; the switch
# records who answered ARP; a powered-off server is booted by a magic packet sent from the other.
set -uo pipefail
: "${OVM_XENLAB_RUN:?run under lab serve}" "${OVM_XENLAB_SWITCH_DIR:?run with 2 or more servers}"
LAB=$OVM_XENLAB_LAB SW=$OVM_XENLAB_SWITCH DIR=$OVM_XENLAB_SWITCH_DIR RUN=$OVM_XENLAB_RUN
passed=0 failed=0
say() { printf '[dc-selftest] %s\n' "$*" >&2; }
pass() { passed=$((passed + 1)); say "PASS $*"; }
fail() { failed=$((failed + 1)); say "FAIL $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

# on K 'COMMAND' [SECONDS]: run COMMAND in server K's dom0; its output on stdout, its status ours.
on() {
    local share=$RUN/node$1/share t=$((${3:-60} * 5))
    rm -f "$share/cmd.rc" "$share/cmd.out"
    printf '%s\n' "$2" > "$share/cmd.sh" && mv "$share/cmd.sh" "$share/cmd.go"
    while [ ! -e "$share/cmd.rc" ] && [ $t -gt 0 ]; do sleep 0.2; t=$((t - 1)); done
    [ -e "$share/cmd.rc" ] || { say "server $1 did not run: $2"; return 124; }
    cat "$share/cmd.out"
    return "$(cat "$share/cmd.rc")"
}
reaches() { on "$1" "ping -c 1 -W 2 10.77.0.$2 >/dev/null || ping -c 2 -W 2 10.77.0.$2 >/dev/null"; }
unreachable() { ! reaches "$1" "$2"; }
state() { "$LAB" power "$RUN" "$1" state; }
wait_serving() {   # wait_serving K SECONDS
    local t=$2
    while [ ! -e "$RUN/node$1/share/results/serving" ] && [ "$t" -gt 0 ]; do sleep 1; t=$((t - 1)); done
    [ -e "$RUN/node$1/share/results/serving" ]
}

check "server 1 reaches server 2 through the switch" reaches 1 2
check "server 2 reaches server 1" reaches 2 1
check "the switch saw server 2 (52:54:00:0a:00:02) answer ARP for 10.77.0.2" \
    sh -c "'$SW' ctl '$DIR' arp 10.77.0.2 | grep -q '^52:54:00:0a:00:02 node2.lan '"
check "storage and VM NICs are up in dom0" on 1 'grep -qx up /sys/class/net/stor0/operstate && grep -qx up /sys/class/net/vm0/operstate'

# A cut link, a partition, a hang: each seen and healed.
"$SW" ctl "$DIR" link node2.lan down >/dev/null
check "a cut link: server 1 cannot reach server 2" unreachable 1 2
"$SW" ctl "$DIR" link node2.lan up >/dev/null
check "the link restored: server 1 reaches server 2" reaches 1 2
"$SW" ctl "$DIR" partition node1 '|' node2 >/dev/null
check "partitioned: server 1 cannot reach server 2" unreachable 1 2
"$SW" ctl "$DIR" heal >/dev/null
check "healed: server 1 reaches server 2" reaches 1 2
"$LAB" power "$RUN" 2 hang >/dev/null 2>&1
check "server 2's QEMU stopped is seen as hung" test "$(state 2)" = hung
check "a hung server 2 does not answer" unreachable 1 2
"$LAB" power "$RUN" 2 resume >/dev/null 2>&1
check "server 2 resumed answers again" reaches 1 2

# Killed: the switch and server 1 live on; a magic packet from server 1 boots server 2 again.
t0=$(date +%s)
"$LAB" power "$RUN" 2 kill >/dev/null 2>&1
check "server 2 killed is seen as off" test "$(state 2)" = off
check "server 1 still runs commands after server 2 died" on 1 true
check "the switch still serves server 1 (its port up, the switch alive)" \
    sh -c "'$SW' ctl '$DIR' ports | grep -q '^node1.lan lan up'"
magic='\xff\xff\xff\xff\xff\xff'
for _ in $(seq 16); do magic+='\x52\x54\x00\x0a\x00\x02'; done
# A directed magic packet (UDP port 9 to the sleeping server's address, whose MAC stays in the ARP
# table), as a manager's agent sends it on the management network. One write, so one datagram
# (bash's printf writes in pieces).
check "server 1 sends a magic packet for server 2's management MAC" on 1 \
    "arp -i xenbr0 -s 10.77.0.2 52:54:00:0a:00:02 && printf '$magic' > /tmp/magic && cat /tmp/magic > /dev/udp/10.77.0.2/9"
check "the switch saw the magic packet" sh -c "'$SW' ctl '$DIR' wol | grep -q '^52:54:00:0a:00:02 node1.lan '"
check "the power controller booted server 2" wait_serving 2 400
say "server 2 was back $(($(date +%s) - t0)) s after it was killed"
check "server 1 reaches server 2 after its power-on" reaches 1 2
check "the power log shows the magic packet and the power-on" sh -c "grep -q 'wol 52:54:00:0a:00:02: server 2 is off' '$RUN/power.log' && grep -q 'node2 on' '$RUN/power.log'"

say "$passed passed, $failed failed"
[ "$failed" = 0 ]
