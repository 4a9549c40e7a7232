# Functions shared by the lab scripts that run inside dom0 (bash, sourced).
# shellcheck shell=bash
export PATH=/usr/lib/xen-4.17/bin:/mnt/host/bin:/usr/sbin:/usr/bin:/sbin:/bin
NODE=${OVM_LAB_NODE:-1}
NODES=${OVM_LAB_NODES:-1}
NET=${OVM_LAB_NET:-10.77.0}
export NODE NODES NET
CHECKS_FAILED=0
CHECKS_PASSED=0

uptime_s() { cut -d' ' -f1 /proc/uptime; }
log() { echo "OVM-LAB [$(uptime_s)] $*"; }
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN{printf "%.1f", b-a}'; }
pass() { CHECKS_PASSED=$((CHECKS_PASSED + 1)); log "CHECK PASS $*"; }
fail() { CHECKS_FAILED=$((CHECKS_FAILED + 1)); log "CHECK FAIL $*"; }
# check DESCRIPTION COMMAND...: run COMMAND (output kept in the console log)
check() {
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

# wait_until SECONDS COMMAND...: poll COMMAND every 0.5 s
wait_until() {
    local t=$1 i=0; shift
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt "$t" ] && return 1
        sleep 1
    done
}

console_log() { echo "/var/log/xen/console/guest-$1.log"; }
# console_has NAME TEXT: the guest's console log contains TEXT
console_has() { grep -qF -- "$2" "$(console_log "$1")" 2>/dev/null; }
# wait_console NAME TEXT SECONDS: wait for TEXT (gives up if the domain vanishes;
# polls cheaply: xl is slow under emulation, so only grep and xenstore)
wait_console() {
    local name=$1 text=$2 t=$3 i=0 id
    id=$(domid_of "$name")
    until console_has "$name" "$text"; do
        i=$((i + 1)); [ $i -gt $((t * 2)) ] && return 1
        if [ $((i % 10)) = 0 ] && ! xenstore-exists "/local/domain/$id" 2>/dev/null; then
            sleep 1; console_has "$name" "$text"; return
        fi
        sleep 0.5
    done
}
# domid_of NAME: from xenstore (cheaper than xl domid)
domid_of() {
    local d
    for d in $(xenstore-list /local/domain 2>/dev/null); do
        [ "$(xenstore-read "/local/domain/$d/name" 2>/dev/null)" = "$1" ] && { echo "$d"; return 0; }
    done
    return 1
}
domain_gone() { ! domid_of "$1" >/dev/null; }
# backend_state DOMID KIND DEVID: xenbus state of a backend (4 = connected)
backend_state() { xenstore-read "/local/domain/0/backend/$2/$1/$3/state" 2>/dev/null; }

# guest_cfg NAME MEMORY EXTRA [VIF] [DISK]: write /tmp/NAME.cfg for the lab PV guest
guest_cfg() {
    local name=$1 mem=$2 extra=$3 vif=${4:-} disk=${5:-}
    {
        echo "name = \"$name\""
        echo 'type = "pv"'
        echo 'kernel = "/var/lib/ovm-lab/vmlinux"'
        echo 'ramdisk = "/var/lib/ovm-lab/domu-initrd.gz"'
        echo "extra = \"console=hvc0 quiet $extra\""
        echo "memory = $mem"
        echo 'vcpus = 1'
        echo 'on_crash = "preserve"'
        [ -z "$vif" ] || echo "vif = [ '$vif' ]"
        [ -z "$disk" ] || echo "disk = [ '$disk' ]"
    } > "/tmp/$name.cfg"
    echo "/tmp/$name.cfg"
}

# Management port 8899: busybox httpd answers GET /cgi-bin/hello and records
# that the host reached it (the host probes 127.0.0.1:PORT forwarded by QEMU).
start_hello_service() {
    mkdir -p /srv/www/cgi-bin
    cat > /srv/www/cgi-bin/hello <<EOF
#!/bin/sh
export PATH=$PATH
echo "\$(date) \$REMOTE_ADDR" >> /run/ovm-lab-hello.hits
printf 'Content-Type: text/plain\r\n\r\n'
echo "OVM-LAB-HELLO node=$NODE xen=\$(xl info 2>/dev/null | awk '/^xen_version/{print \$3}') dom0=\$(hostname)"
EOF
    chmod 755 /srv/www/cgi-bin/hello
    httpd -p 8899 -h /srv/www
}

# Keep the guests' consoles, Xen's and dom0's kernel logs in the share
# (results/diag/) whatever happens to the run.
save_diagnostics() {
    local d=/mnt/host/results/diag
    mkdir -p "$d" 2>/dev/null || return 0
    cp /var/log/xen/console/*.log "$d/" 2>/dev/null
    cp /var/log/xen/xen-hotplug.log /var/log/xen/qemu-dm-*.log "$d/" 2>/dev/null
    xl dmesg > "$d/xl-dmesg.txt" 2>&1
    dmesg > "$d/dom0-dmesg.txt" 2>&1
    return 0
}
trap save_diagnostics EXIT
