# `lab serve`: keep this server up while a command runs on the host (as
# lab/main.sh). If the host put bin/dom0-exec in the share, it runs in the
# background in dom0 (e.g. a service listening on port 8899, which the host
# reaches through QEMU's forward); its output goes to results/dom0-exec.log.
# The server powers off when the host creates the file "stop" in the share.
# shellcheck shell=bash
. ./lab/common.sh
pid=
if [ -x /mnt/host/bin/dom0-exec ]; then
    mkdir -p /tmp/dom0-exec
    (cd /tmp/dom0-exec && exec /mnt/host/bin/dom0-exec) >/mnt/host/results/dom0-exec.log 2>&1 </dev/null &
    pid=$!
    log "started dom0-exec (pid $pid)"
fi
touch /mnt/host/results/serving
log "serving until the host is done"
until [ -e /mnt/host/stop ]; do sleep 1; done
rc=0
if [ -n "$pid" ]; then
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid"
    else wait "$pid"; rc=$?; log "dom0-exec had exited with status $rc"; fi
fi
log "host is done"
exit "$rc"
