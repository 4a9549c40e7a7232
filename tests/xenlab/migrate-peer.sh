#!/bin/bash
# dom0 helper of the migration lab test (ovm-core/tests/migration_lab.rs), copied to
# /mnt/host/bin/ with --dom0-file: the peer that ovm's migration is measured against (the same
# lab guest started with xl and live-migrated with plain `xl migrate` over an unencrypted TCP
# pipe), and a ping that measures how long a guest does not answer.
#   migrate-peer.sh create               start the peer guest here (10.77.0.51), wait until it pings
#   migrate-peer.sh receive              accept one migration on TCP port 8100
#   migrate-peer.sh send HOST            migrate the peer guest to HOST; prints the seconds it took
#   migrate-peer.sh ping-start ADDR LOG  ping ADDR every 0.2 s into LOG, in the background
#   migrate-peer.sh ping-gap LOG         stop pinging; print the longest gap between replies, seconds
set -euo pipefail
case "${1:-}" in
create)
    cat > /tmp/peer.cfg <<'CFG'
name = "peer-guest"
type = "pv"
kernel = "/var/lib/ovm-lab/vmlinux"
ramdisk = "/var/lib/ovm-lab/domu-initrd.gz"
extra = "console=hvc0 ovm.ip=10.77.0.51/24 ovm.ping=10.77.0.1"
memory = 128
vcpus = 1
vif = [ "bridge=xenbr0" ]
CFG
    xl create /tmp/peer.cfg
    for _ in $(seq 300); do
        grep -q 'net=OK' /var/log/xen/console/guest-peer-guest.log 2>/dev/null && exit 0
        sleep 1
    done
    echo "the peer guest did not come up" >&2; exit 1 ;;
receive)
    printf '#!/bin/sh\nexec xl migrate-receive\n' > /tmp/migrate-receive
    chmod +x /tmp/migrate-receive
    (busybox nc -l -p 8100 -e /tmp/migrate-receive > /tmp/migrate-receive.log 2>&1 &)
    sleep 1 ;;
send)
    t0=$EPOCHREALTIME
    xl migrate -s '' peer-guest "exec busybox nc $2 8100"
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }' ;;
ping-start)
    ping -i 0.2 -w 900 "$2" > "$3" 2>&1 &
    echo $! > "$3.pid"
    sleep 0.5 ;;
ping-gap)
    kill "$(cat "$2.pid")" 2>/dev/null || true
    sleep 0.3
    # busybox ping prints "seq=N", iputils "icmp_seq=N".
    awk -F'seq=' '/seq=/ { split($2, a, " "); s = a[1] + 0; if (n++ && s - p > m) m = s - p; p = s }
        END { if (!n) { print "no replies:"; system("head -3 " FILENAME); exit 1 } printf "%.1f\n", (m > 1 ? m - 1 : 0) * 0.2 }' "$2" ;;
*)
    echo "usage: migrate-peer.sh create|receive|send HOST|ping-start ADDR LOG|ping-gap LOG" >&2; exit 2 ;;
esac
