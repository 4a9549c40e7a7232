#!/bin/bash
# dom0 side of the data-centre self-test (run by `lab serve --dom0`): runs the commands the host
# drops into the share. The host writes cmd.sh, then renames it to cmd.go; this runs it and writes
# cmd.out and, last, cmd.rc. A server that is powered off and on again starts this afresh; a
# command the host dropped before this started (the host may write one as soon as the server says it
# is serving) is run, not removed: the host clears cmd.out and cmd.rc itself before each command.
cd /mnt/host || exit 1
rm -f cmd.run
while true; do
    if [ -e cmd.go ]; then
        mv cmd.go cmd.run
        bash cmd.run > cmd.out 2>&1
        echo $? > cmd.rc.tmp && mv cmd.rc.tmp cmd.rc
        rm -f cmd.run
    fi
    sleep 0.2
done
