#!/bin/sh
# Runs in dom0 under `lab serve --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent`:
# the ovm agent serving the local Xen host on port 8899 (forwarded to the host), with a fresh
# state directory and the password the end-to-end test presents (ovm-core/tests/agent_lab.rs).
set -e
printf '%s\n' ovm-lab-agent > /tmp/ovm-agent-password
exec /mnt/host/bin/ovm-agent serve --backend xen --listen 0.0.0.0:8899 \
    --state-dir /var/lib/ovm-agent --password-file /tmp/ovm-agent-password
