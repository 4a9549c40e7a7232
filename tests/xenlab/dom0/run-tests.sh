# Runs the test executables listed in lab/tests.list inside dom0 (as lab/main.sh).
# Each line there is `run_test NAME TIMEOUT PROGRAM ARGS...`. For each test:
# results/NAME.log (stdout + stderr), results/NAME.rc, results/NAME.secs.
# A test runs in its own empty directory under /tmp, with OVM_XENLAB=1 set.
# shellcheck shell=bash
. ./lab/common.sh
export OVM_XENLAB=1 OVM_XENLAB_SHARE=/mnt/host RUST_BACKTRACE=1
RESULTS=/mnt/host/results
failed=0 total=0

run_test() {
    local name=$1 limit=$2 prog=$3 t0 rc
    shift 3
    total=$((total + 1))
    mkdir -p "/tmp/tests/$name"
    log "TEST START $name"
    t0=$(uptime_s)
    (cd "/tmp/tests/$name" && exec timeout -s KILL "$limit" "/mnt/host/$prog" "$@") >"$RESULTS/$name.log" 2>&1 </dev/null
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
