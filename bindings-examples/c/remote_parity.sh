#!/bin/sh
# The parity scenario through a manager service: starts `ovm serve` on a fresh database (its
# simulated world has the scenario's NFS export), runs build/parity against it over the socket and
# in-process, and compares the two documents with parity_compare.py (ids replaced by names).
#   remote_parity.sh OVM_BINARY [PARITY_BINARY]
set -eu
ovm=$1
parity=${2:-$(dirname "$0")/build/parity}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
"$ovm" --db "$dir/manager.db" serve --socket "$dir/manager.sock" --shutdown-timeout 10 \
  --sim-nfs-export nfs.example.com:/export/fs1 2>"$dir/serve.log" &
pid=$!
i=0
while [ ! -S "$dir/manager.sock" ]; do
  i=$((i + 1))
  if [ "$i" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "ovm serve did not start:" >&2
    cat "$dir/serve.log" >&2
    exit 1
  fi
  sleep 0.1
done
"$parity" "ovm+unix://$dir/manager.sock" >"$dir/remote.json"
"$parity" >"$dir/local.json"
python3 "$here/../parity_compare.py" "$dir/local.json" "$dir/remote.json"
echo "remote parity: the service gave the same results as the in-process manager"
