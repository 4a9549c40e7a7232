# The lab self-test, run inside dom0 of one lab server (as lab/main.sh).
# Every check really runs and a failed one makes the exit status non-zero.
# shellcheck shell=bash
. ./lab/common.sh
T0=$(uptime_s)
start_hello_service

# --- Xen and the toolstack
log "== Xen"
check "hypervisor type is xen" grep -qx xen /sys/hypervisor/type
check "dom0 is the control domain" grep -q control_d /proc/xen/capabilities
for f in /dev/xen/privcmd /dev/xen/xenbus /dev/xen/evtchn /dev/xen/gntdev /run/xenstored/socket; do
    check "$f exists" test -e "$f"
done
xl info > /tmp/xl-info.txt 2>&1
XEN_VERSION=$(awk '/^xen_version/{print $3}' /tmp/xl-info.txt)
log "xl info: xen_version=$XEN_VERSION $(grep -E '^(virt_caps|total_memory|free_memory|nr_cpus|xen_scheduler)' /tmp/xl-info.txt | tr -s ' ' | tr '\n' ';')"
check "xl info reports Xen 4.17 (got '$XEN_VERSION')" test "${XEN_VERSION%.*}" = 4.17
check "xl info: HAP available (PVH/HVM possible)" grep -q 'virt_caps.*hap' /tmp/xl-info.txt
xl list | tee /tmp/xl-list.txt
check "xl list shows Domain-0" grep -q '^Domain-0 *0 ' /tmp/xl-list.txt

# --- xenstore
log "== xenstore ($(cat /run/ovm-lab-xenstored))"
check "$(cat /run/ovm-lab-xenstored) is running" pidof "$(cat /run/ovm-lab-xenstored)"
check "xenconsoled is running" pidof xenconsoled
check "xenstore: /local/domain/0/name = Domain-0" test "$(xenstore-read /local/domain/0/name)" = Domain-0
stamp="lab-selftest-$$-$(uptime_s)"
xenstore-write /ovm-lab/selftest/key "$stamp"
check "xenstore write + read back" test "$(xenstore-read /ovm-lab/selftest/key)" = "$stamp"
xenstore-rm /ovm-lab/selftest
check "xenstore rm removed the key" sh -c '! xenstore-exists /ovm-lab/selftest'

# --- PV guests: vm1 with a vif on xenbr0 and a file-backed disk (Xen's own
# hotplug scripts), vm2 without devices; both booting at the same time.
log "== PV guests"
DISK_MARKER="OVM-LAB-DISK-MARKER-$$"
dd if=/dev/zero of=/tmp/vm1-disk.img bs=1M count=16 2>/dev/null
printf '%s' "$DISK_MARKER" | dd of=/tmp/vm1-disk.img conv=notrunc 2>/dev/null
VM1_IP=$NET.$((100 + NODE))
DOM0_IP=$NET.$NODE
cfg1=$(guest_cfg vm1 256 "ovm.ip=$VM1_IP/24 ovm.ping=$DOM0_IP" \
    "bridge=xenbr0,mac=00:16:3e:77:00:$((10 + NODE))" \
    "format=raw,vdev=xvda,access=rw,script=block,target=/tmp/vm1-disk.img")
cfg2=$(guest_cfg vm2 128 "")
t=$(uptime_s)
if xl create "$cfg1"; then pass "xl create vm1 (vif + disk) in $(since "$t")s"
else fail "xl create vm1"; tail -n 30 /var/log/xen/xen-hotplug.log 2>/dev/null; fi
t2=$(uptime_s)
if xl create "$cfg2"; then pass "xl create vm2 in $(since "$t2")s"; else fail "xl create vm2"; fi
xl list | tee /tmp/xl-list.txt
check "xl list shows vm1 and vm2" sh -c 'grep -q "^vm1 " /tmp/xl-list.txt && grep -q "^vm2 " /tmp/xl-list.txt'
ID1=$(xl domid vm1 2>/dev/null)
check "xenstore has /local/domain/$ID1/name = vm1" test "$(xenstore-read "/local/domain/$ID1/name" 2>/dev/null)" = vm1
check "vif$ID1.0 is a port of xenbr0" test -e "/sys/class/net/xenbr0/brif/vif$ID1.0"

if wait_console vm2 OVM-DOMU-UP 300; then pass "vm2 console marker OVM-DOMU-UP after $(since "$t2")s"
else fail "vm2 console marker"; fi
t=$(uptime_s)
check "xl destroy vm2" xl destroy vm2
check "vm2 gone after destroy" wait_until 20 domain_gone vm2

if wait_console vm1 OVM-DOMU-READY 300; then pass "vm1 console marker OVM-DOMU-READY after $(since "$t2")s"
else fail "vm1 console marker"; fi
grep OVM-DOMU "$(console_log vm1)" | sed 's/^/    vm1 console: /'
check "vm1 vif backend connected (xenbus state 4)" test "$(backend_state "$ID1" vif 0)" = 4
check "vm1 disk backend connected (xenbus state 4)" test "$(backend_state "$ID1" vbd 51712)" = 4
check "vm1 read its disk (marker $DISK_MARKER)" console_has vm1 "OVM-DOMU-DISK xvda: $DISK_MARKER"
check "vm1 pinged dom0 ($DOM0_IP)" console_has vm1 "OVM-DOMU-PING $DOM0_IP OK"
check "dom0 pings vm1 ($VM1_IP)" ping -c 2 -W 3 "$VM1_IP"
t=$(uptime_s)
check "xl shutdown -w vm1" timeout 120 xl shutdown -w vm1
check "vm1 powered off cleanly (console OVM-DOMU-POWEROFF, $(since "$t")s)" console_has vm1 OVM-DOMU-POWEROFF
check "vm1 gone (no longer in xenstore)" wait_until 20 domain_gone vm1
xl list | tee /tmp/xl-list.txt
check "xl list no longer shows vm1 or vm2" sh -c '! grep -qE "^vm[12] " /tmp/xl-list.txt'

check "vif$ID1.0 removed from xenbr0" wait_until 20 test ! -e "/sys/class/net/xenbr0/brif/vif$ID1.0"
check "vm1's loop device released" wait_until 20 sh -c '! losetup -a | grep -q vm1-disk'

# --- optional (OVM_XENLAB_SELFTEST_PVH=1 on the host): a PVH guest, with one
# retry if it triple-faults early (a rare TCG nested-SVM failure)
if [ -e ./lab/with-pvh ]; then
    log "== PVH guest"
    cfg3=$(guest_cfg pvh1 192 "")
    sed -i 's/^type = "pv"/type = "pvh"/' "$cfg3"
    for attempt in 1 2; do
        t=$(uptime_s)
        check "xl create pvh1 (attempt $attempt)" xl create "$cfg3"
        if wait_console pvh1 OVM-DOMU-READY 300; then pass "pvh1 console marker OVM-DOMU-READY after $(since "$t")s"; break; fi
        if [ $attempt = 1 ] && xl dmesg | grep -q 'Triple fault'; then
            log "pvh1 triple-faulted; retrying once"; xl destroy pvh1 2>/dev/null
            continue
        fi
        fail "pvh1 console marker"; break
    done
    check "pvh1 is a PVH guest" console_has pvh1 "type=PVH"
    check "xl shutdown -w pvh1" timeout 120 xl shutdown -w pvh1
    check "pvh1 powered off cleanly" console_has pvh1 OVM-DOMU-POWEROFF
fi

# --- optional (OVM_XENLAB_SELFTEST_HVM=1 on the host): an HVM guest, its device model (qemu-system-xen)
# in dom0, SeaBIOS and direct kernel boot of the guest kernel, serial output to the console log, a VNC
# server on dom0's loopback; then a PVHVM one (the same with the PV disk and NIC drivers).
if [ -e ./lab/with-hvm ]; then
    log "== HVM guest"
    hvm_cfg() {
        {
            echo "name = \"$1\""
            echo 'type = "hvm"'
            echo 'kernel = "/var/lib/ovm-lab/images/vmlinuz"'
            echo 'ramdisk = "/var/lib/ovm-lab/domu-initrd.gz"'
            echo "extra = \"console=ttyS0 quiet $2\""
            echo 'memory = 256'
            echo 'vcpus = 1'
            echo "serial = \"file:$(console_log "$1")\""
            echo 'vnc = 1'
            echo 'vnclisten = "127.0.0.1"'
            echo 'vncunused = 1'
            echo "xen_platform_pci = $3"
            echo 'on_crash = "preserve"'
            [ -z "${4:-}" ] || echo "disk = [ '$4' ]"
        } > "/tmp/$1.cfg"
        echo "/tmp/$1.cfg"
    }
    t=$(uptime_s)
    if xl create "$(hvm_cfg hvm1 "" 0)"; then pass "xl create hvm1 in $(since "$t")s"
    else fail "xl create hvm1"; tail -n 40 /var/log/xen/qemu-dm-hvm1.log 2>/dev/null; fi
    if wait_console hvm1 OVM-DOMU-UP 900; then pass "hvm1 console marker OVM-DOMU-UP after $(since "$t")s"
    else fail "hvm1 console marker"; tail -n 40 "$(console_log hvm1)" /var/log/xen/qemu-dm-hvm1.log 2>/dev/null; fi
    check "hvm1 is an HVM guest" wait_console hvm1 "type=HVM" 30
    check "the device model runs" pidof xen-qemu-system-i386
    check "hvm1's VNC server listens on dom0's loopback" sh -c 'netstat -ltn 2>/dev/null | grep -q "127.0.0.1:59"'
    check "xl destroy hvm1" xl destroy hvm1
    dd if=/dev/zero of=/tmp/hvm2-disk.img bs=1M count=8 2>/dev/null
    printf 'OVM-HVM-DISK' | dd of=/tmp/hvm2-disk.img conv=notrunc 2>/dev/null
    t=$(uptime_s)
    check "xl create hvm2 (PVHVM)" xl create "$(hvm_cfg hvm2 "" 1 "format=raw,vdev=xvda,access=rw,target=/tmp/hvm2-disk.img")"
    if wait_console hvm2 OVM-DOMU-READY 900; then pass "hvm2 console marker OVM-DOMU-READY after $(since "$t")s"
    else fail "hvm2 console marker"; tail -n 40 "$(console_log hvm2)" 2>/dev/null; fi
    check "hvm2 read its disk through the PV driver" console_has hvm2 "OVM-DOMU-DISK xvda: OVM-HVM-DISK"
    check "xl destroy hvm2" xl destroy hvm2
    # From the installation CD: SeaBIOS boots ISOLINUX from the emulated CD-ROM drive.
    {
        echo 'name = "hvm3"'
        echo 'type = "hvm"'
        echo 'memory = 256'
        echo 'boot = "d"'
        echo "serial = \"file:$(console_log hvm3)\""
        echo 'vnc = 1'
        echo 'vnclisten = "127.0.0.1"'
        echo 'vncunused = 1'
        echo 'xen_platform_pci = 0'
        echo "disk = [ 'format=raw,vdev=hdc,access=ro,devtype=cdrom,target=/var/lib/ovm-lab/images/install.iso' ]"
    } > /tmp/hvm3.cfg
    t=$(uptime_s)
    check "xl create hvm3 (CD boot)" xl create /tmp/hvm3.cfg
    if wait_console hvm3 OVM-DOMU-UP 900; then pass "hvm3 console marker OVM-DOMU-UP after $(since "$t")s"
    else fail "hvm3 console marker"; tail -n 40 "$(console_log hvm3)" /var/log/xen/qemu-dm-hvm3.log 2>/dev/null; fi
    # The serial port is written as the guest prints: wait for the end of the line too.
    check "hvm3 booted from its CD" wait_console hvm3 "boot=cdrom" 30
    grep -a OVM-DOMU-UP "$(console_log hvm3)" | sed 's/^/    hvm3 console: /'

    check "xl destroy hvm3" xl destroy hvm3
fi

# --- optional (OVM_XENLAB_SELFTEST_MIGRATE=1 on the host): live migration on this server
# (loopback: xl migrate-receive on the same host), the same machinery as between two servers.
# A Xen build with shadow paging must migrate a PV guest; one without it must refuse with the
# log-dirty error (PV live migration needs shadow paging). PVH (with _PVH=1) is reported as found.
migrate_loopback() {   # migrate_loopback NAME -> 0 if the guest runs again after the migration
    timeout 600 xl migrate -s '' "$1" 'exec xl migrate-receive' > "/tmp/migrate-$1.log" 2>&1 || return 1
    xl list "$1" >/dev/null 2>&1
}
if [ -e ./lab/with-migrate ]; then
    log "== live migration (loopback)"
    shadow=$(cat ./lab/xen-shadow 2>/dev/null || echo unknown)
    cfg4=$(guest_cfg mig1 128 "")
    check "xl create mig1" xl create "$cfg4"
    check "mig1 console marker" wait_console mig1 OVM-DOMU-READY 300
    t=$(uptime_s)
    if migrate_loopback mig1; then
        log "FINDING PV live migration: works (shadow paging: $shadow), $(since "$t")s"
        if [ "$shadow" = no ]; then fail "PV live migration was expected to fail without shadow paging"
        else pass "PV live migration of mig1 in $(since "$t")s"; fi
    else
        log "FINDING PV live migration: fails (shadow paging: $shadow):"
        tail -n 8 /tmp/migrate-mig1.log | while IFS= read -r l; do log "  $l"; done
        if [ "$shadow" = no ] && grep -q -i 'logdirty\|log-dirty\|log_dirty' /tmp/migrate-mig1.log; then
            pass "PV live migration refused for want of shadow paging, as expected"
        else fail "PV live migration"; fi
    fi
    xl destroy mig1 2>/dev/null || true
    if [ -e ./lab/with-pvh ]; then
        cfg5=$(guest_cfg migpvh 192 "")
        sed -i 's/^type = "pv"/type = "pvh"/' "$cfg5"
        if xl create "$cfg5" && wait_console migpvh OVM-DOMU-READY 300; then
            t=$(uptime_s)
            if migrate_loopback migpvh; then log "FINDING PVH live migration: works, $(since "$t")s"
            else
                log "FINDING PVH live migration: fails:"
                tail -n 8 /tmp/migrate-migpvh.log | while IFS= read -r l; do log "  $l"; done
            fi
        else
            log "FINDING PVH live migration: not tried (the PVH guest did not boot)"
        fi
        xl destroy migpvh 2>/dev/null || true
    fi
fi

# --- kernel modules the host kernel lacks, for later storage/network work
log "== kernel modules"
for m in bonding 8021q dummy bridge nfsd nfs nfsv3 nfsv4 iscsi_tcp iscsi_target_mod \
         ocfs2 ocfs2_stack_o2cb ocfs2_dlmfs dlm target_core_iblock target_core_file nbd; do
    modprobe "$m" 2>&1
    check "module $m loaded" test -d "/sys/module/$m"
done
log "lsmod: $(lsmod | awk 'NR>1{print $1}' | sort | tr '\n' ' ')"
check "filesystems: ocfs2 nfsd" sh -c 'grep -qw ocfs2 /proc/filesystems && grep -qw nfsd /proc/filesystems'
if [ -x /sbin/mkfs.ocfs2 ]; then check "ocfs2-tools run (mkfs.ocfs2 -V)" /sbin/mkfs.ocfs2 -V; fi

# --- management port: the host reaches dom0's port 8899 through QEMU's forward
check "host reached dom0 port 8899" wait_until 60 test -s /run/ovm-lab-hello.hits

log "TIMING selftest in dom0 took $(since "$T0")s"
log "self-test: $CHECKS_PASSED checks passed, $CHECKS_FAILED failed"
[ "$CHECKS_FAILED" = 0 ]
