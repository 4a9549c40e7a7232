# Runs the test executables listed in lab/tests.list inside dom0 (as lab/main.sh).
# Each line there is `run_test NAME TIMEOUT CWD PROGRAM ARGS...`. For each test:
# results/NAME.log (stdout + stderr), results/NAME.rc, results/NAME.secs.
# A test runs with OVM_XENLAB=1 set, in CWD (its package's directory in the
# read-only source share, like under cargo) or, for CWD "-", in its own empty
# directory under /tmp.
# shellcheck shell=bash
. ./lab/common.sh
export OVM_XENLAB=1 OVM_XENLAB_SHARE=/mnt/host RUST_BACKTRACE=1
RESULTS=/mnt/host/results
failed=0 total=0

# cargo-test: the workspace is shared read-only (9p tag "src") at its host path
if [ -f ./lab/srcdir ]; then
    SRC=$(cat ./lab/srcdir)
    mkdir -p "$SRC" && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro src "$SRC" &&
        log "source tree mounted read-only on $SRC"
fi

# --servers N: tests see OVM_XENLAB_SERVERS=N; the peers (10.77.0.2, .3) are
# waited for (they boot at the same time) before the first test starts
export OVM_XENLAB_SERVERS=$NODES
if [ "$NODES" -gt 1 ]; then
    for ((k = 2; k <= NODES; k++)); do
        if wait_until 300 ping -c 1 -W 1 "$NET.$k"; then log "peer server $k ($NET.$k) is up"
        else log "peer server $k ($NET.$k) did not answer"; fi
    done
fi

# --storage: the storage server's addresses; the tests start once it answers on the LAN
if [ -f ./lab/storage ]; then
    read -r OVM_XENLAB_STORAGE_IP OVM_XENLAB_STORAGE_LAN_IP < ./lab/storage
    export OVM_XENLAB_STORAGE_IP OVM_XENLAB_STORAGE_LAN_IP
    if wait_until 300 ping -c 1 -W 1 "$OVM_XENLAB_STORAGE_LAN_IP"; then log "storage server ($OVM_XENLAB_STORAGE_LAN_IP) is up"
    else log "storage server ($OVM_XENLAB_STORAGE_LAN_IP) did not answer"; fi
fi

run_test() {
    local name=$1 limit=$2 cwd=$3 prog=$4 t0 rc
    shift 4
    total=$((total + 1))
    if [ "$cwd" = - ] || [ ! -d "$cwd" ]; then cwd=/tmp/tests/$name; mkdir -p "$cwd"; fi
    log "TEST START $name"
    t0=$(uptime_s)
    (cd "$cwd" && exec timeout -s KILL "$limit" "/mnt/host/$prog" "$@") >"$RESULTS/$name.log" 2>&1 </dev/null
    rc=$?
    since "$t0" > "$RESULTS/$name.secs"
    echo "$rc" > "$RESULTS/$name.rc"
    sync
    [ "$rc" = 0 ] || failed=$((failed + 1))
    log "TEST END $name rc=$rc ($(cat "$RESULTS/$name.secs")s)"
}

. ./lab/tests.list
log "tests: $total run, $failed failed"
[ "$failed" = 0 ]
