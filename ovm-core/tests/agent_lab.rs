//! End to end on real Xen: the manager runs here, on the host, with a database file; the agent runs
//! in dom0 of a lab server, reached through the lab's forwarded port. Run through the lab:
//!
//! ```sh
//! tests/xenlab/lab serve --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent -- \
//!     cargo test -p ovm-core --features agent-lab-tests --test agent_lab -- --nocapture
//! ```
//!
//! (`make agent-lab-test` does exactly that.) The dom0 script starts `ovm-agent serve` with the
//! password below; the lab guest's kernel and initramfs are at `/var/lib/ovm-lab/` in dom0.

mod lab;

use std::time::{Duration, Instant};

use lab::{agent_listens, wait_for};

use ovm_core::manager::{kernel_paths, DatabaseLocation, FileServerSpec, RepositorySpec, VmSpec};
use ovm_core::model::*;
use ovm_core::store::EventFilter;
use ovm_core::{JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> ObjectRef {
    lab::ok_timed(what, job, secs).0
}

/// Start a VM (`start` submits the job, `what` names it), wait up to `secs` for its console to
/// hold every one of `markers` (`waiting` names that); the time from the start and the console.
fn boot_to_markers(
    mgr: &Manager,
    vm: VmId,
    what: &str,
    start: impl FnOnce() -> ovm_core::Result<JobHandle>,
    waiting: &str,
    secs: u64,
    markers: &[&str],
) -> (Duration, String) {
    let t0 = Instant::now();
    ok(what, start(), 300);
    wait_for(waiting, secs, || mgr.vm_console(vm).is_ok_and(|c| markers.iter().all(|m| c.contains(m))));
    (t0.elapsed(), mgr.vm_console(vm).unwrap())
}

fn events(mgr: &Manager, object: ObjectRef) -> Vec<Event> {
    mgr.events(&EventFilter { object: Some(object.id), ..Default::default() }).unwrap()
}

#[test]
fn manager_on_the_host_drives_a_lab_server_through_its_agent() {
    let port = std::env::var("OVM_XENLAB_PORT_1").expect(
        "OVM_XENLAB_PORT_1 is unset: run this test through `tests/xenlab/lab serve` (make agent-lab-test)",
    );
    let address = format!("127.0.0.1:{port}");
    wait_for("the agent to listen", 180, || agent_listens(&address));

    let dir = std::env::temp_dir().join(format!("ovm-agent-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("manager.db");
    let open = || Manager::builder().database(DatabaseLocation::File(db.clone())).open().unwrap();
    let mgr = open();

    // Discovery: ownership, hardware, the management network.
    let server = ServerId(ok("discover the lab server", mgr.discover_server(&address, PASSWORD), 120).id);
    let s = mgr.server(server).unwrap();
    println!("server {} at {}: {:?}", s.name, s.address, s.hardware);
    assert!(s.hardware.xen_version.starts_with("4.17"), "{:?}", s.hardware);
    assert!(s.hardware.cpus >= 1 && s.hardware.memory_mib >= 1024);
    assert!(!s.ports.is_empty(), "dom0's network ports are recorded");
    assert!(mgr.networks().iter().any(|n| n.functions.contains(&NetworkFunction::Management)));
    assert!(mgr.agent_fingerprint(server).unwrap().is_some());
    // A wrong password from another manager is refused and changes nothing.
    let other = Manager::open_in_memory().unwrap();
    let e =
        other.discover_server(&address, "wrong").unwrap().wait(Some(Duration::from_secs(60))).unwrap_err();
    assert_eq!(e.kind(), ovm_core::ErrorKind::PermissionDenied, "{e}");
    drop(other);

    // A repository on the server's local file system, the lab guest's kernel stored in it, a disk.
    // The local file server is discovered from the server: its file system with the real size.
    let fsrv = FileServerId(
        ok(
            "register the local file server",
            mgr.register_file_server(FileServerSpec::local("lab-local", server)),
            60,
        )
        .id,
    );
    let fss = mgr.file_systems_of(fsrv);
    assert_eq!(fss.len(), 1, "{fss:?}");
    assert_eq!(fss[0].path, ovm_core::manager::LOCAL_FILE_SYSTEM_ROOT);
    assert!(fss[0].size_bytes > 0 && fss[0].free_bytes <= fss[0].size_bytes, "{:?}", fss[0]);
    let fs_id = fss[0].id;
    let repo = RepositoryId(
        ok(
            "create the repository",
            mgr.create_repository(RepositorySpec {
                name: "lab-repo".into(),
                backing: RepositoryBacking::FileSystem(fs_id),
                owner_pool: None,
                capacity_bytes: 0,
            }),
            30,
        )
        .id,
    );
    ok("present the repository", mgr.present_repository(repo, server), 30);
    ok(
        "import the guest kernel and initramfs into the repository",
        mgr.import_kernel(
            repo,
            "lab-guest",
            "/var/lib/ovm-lab/vmlinux",
            Some("/var/lib/ovm-lab/domu-initrd.gz"),
        ),
        120,
    );
    let (kernel, initrd) = kernel_paths(repo, "lab-guest");
    let disk =
        VirtualDiskId(ok("create a disk", mgr.create_virtual_disk(repo, "lab-disk", 16 << 20, false), 60).id);

    // A PV VM booted from the repository's kernel, with the disk.
    let config = VmConfig {
        domain_type: DomainType::Pv,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 256,
        max_memory_mib: 256,
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) }],
        pv_kernel: Some(PvKernel { kernel, initrd: Some(initrd), cmdline: "console=hvc0".into() }),
        ..VmConfig::default()
    };
    let mut spec = VmSpec::new("agent-lab-vm", config);
    spec.server = Some(server);
    spec.repository = Some(repo);
    let vm = VmId(ok("create the VM", mgr.create_vm(spec), 60).id);
    let t0 = Instant::now();
    ok("start the VM", mgr.start_vm(vm), 300);
    let v = mgr.vm(vm).unwrap();
    assert_eq!(v.power_state, PowerState::Running);
    println!("VM {} running as domain {:?}", v.name, v.domid);
    wait_for("the guest's console marker", 300, || {
        mgr.vm_console(vm).map(|c| c.contains("OVM-DOMU-UP")).unwrap_or(false)
    });
    let pv_marker = t0.elapsed();

    // Guest messages: left in the guest's xenstore directory, read by the lab guest's reader,
    // which answers each in the values it reports.
    let messages = [
        ("hostname".to_owned(), "agent-lab-vm".to_owned()),
        ("motd".to_owned(), "hello from ovm".to_owned()),
    ];
    let t1 = Instant::now();
    ok("send messages to the guest", mgr.send_vm_messages(vm, &messages), 60);
    wait_for("the guest to answer both messages", 60, || {
        mgr.vm_guest_data(vm).is_ok_and(|d| {
            d.get("reply-hostname").map(String::as_str) == Some("agent-lab-vm")
                && d.get("reply-motd").map(String::as_str) == Some("hello from ovm")
        })
    });
    println!("MESSAGE-FIGURES send-to-answer={:.1}s", t1.elapsed().as_secs_f64());
    let console = mgr.vm_console(vm).unwrap();
    assert!(console.contains("OVM-DOMU-MSG hostname=agent-lab-vm"), "{console}");

    // The agent restarts mid-way: the server goes unreachable, comes back, the VM ran on.
    let sref = mgr.server(server).unwrap().object_ref();
    ok("restart the agent", mgr.restart_agent(server), 60);
    wait_for("the unreachable warning", 60, || {
        events(&mgr, sref)
            .iter()
            .any(|e| e.event_type == "server.unreachable" && e.severity == Severity::Warning)
    });
    wait_for("the manager to reconnect", 120, || {
        mgr.server(server).unwrap().power_state == ServerPowerState::Running
    });
    assert!(events(&mgr, sref)
        .iter()
        .any(|e| e.event_type == "server.reachable" && e.severity == Severity::Info));
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Running, "the VM kept running");
    assert!(mgr.vm_console(vm).unwrap().contains("OVM-DOMU-UP"));

    // Stop it (the guest powers off cleanly, or is destroyed after the timeout).
    ok("stop the VM", mgr.stop_vm(vm), 300);
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Stopped);

    // The manager restarts too: it reconnects with its key and the pinned agent certificate.
    mgr.close(Duration::from_secs(30)).unwrap();
    drop(mgr);
    let mgr = open();
    assert_eq!(mgr.server(server).unwrap().power_state, ServerPowerState::Running);
    ok("start the VM again after the manager restarted", mgr.start_vm(vm), 300);
    ok("kill the VM", mgr.kill_vm(vm), 120);

    // A PV guest's virtual framebuffer: served by a device model in dom0 and shown by the guest's
    // xen-fbfront, reached through the manager as an HVM guest's screen is.
    ok("give the PV VM a framebuffer", mgr.set_vm_framebuffer(vm, true), 60);
    ok("start the PV VM with its framebuffer", mgr.start_vm(vm), 300);
    wait_for("the guest's framebuffer", 300, || {
        mgr.vm_console(vm).map(|c| c.contains("OVM-DOMU-FB fb0")).unwrap_or(false)
    });
    let ep = mgr.open_vm_console(vm).unwrap();
    let shot = ovm_core::console::screenshot(ep.address, &ep.password, Duration::from_secs(30)).unwrap();
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-lab-pv-framebuffer.png");
    std::fs::write(&png, shot.png()).unwrap();
    println!(
        "PV framebuffer: {}x{} colours={} saved to {}",
        shot.width,
        shot.height,
        shot.colours(),
        png.display()
    );
    assert!(shot.colours() > 1, "the PV guest's screen is not blank");
    ok("kill the VM", mgr.kill_vm(vm), 120);
    ok("take the framebuffer away", mgr.set_vm_framebuffer(vm, false), 60);

    // Network boot of a PV guest (Oracle VM's network boot path): the agent reads the installer
    // from the lab's install tree (HTTP in dom0, on xenbr0), the guest boots it and reads the tree
    // over its NIC.
    let tree = "http://10.77.0.1";
    ok("give the PV VM a NIC", mgr.add_vnic(vm, None), 60);
    let boot = NetworkBoot {
        url: format!("{tree}/"),
        cmdline: format!("console=hvc0 ovm.boot=network ovm.ip=10.77.0.60/24 ovm.repo={tree}"),
    };
    ok("boot the PV VM from the install tree", mgr.set_vm_network_boot(vm, Some(boot)), 60);
    let (netboot_marker, console) = boot_to_markers(
        &mgr,
        vm,
        "start the PV VM from the network",
        || mgr.start_vm(vm),
        "the installer to read its tree",
        300,
        &["OVM-DOMU-REPO"],
    );
    assert!(console.contains("boot=network"), "{console}");
    assert!(console.contains(&format!("OVM-DOMU-REPO {tree}: ovm lab install tree")), "{console}");
    ok("kill the VM", mgr.kill_vm(vm), 120);
    ok("no more network boot", mgr.set_vm_network_boot(vm, None), 60);

    // An installation CD, imported into the repository from the manager's machine, boots an HVM
    // guest (SeaBIOS, ISOLINUX from the emulated CD-ROM drive, the device model in dom0); its
    // serial port is its console.
    let images = std::env::var("OVM_XENLAB_IMAGES").expect("OVM_XENLAB_IMAGES is unset: run through the lab");
    let iso = VirtualCdromId(
        ok(
            "import the installation CD",
            mgr.import_iso(repo, "lab-install", &format!("{images}/install.iso")),
            300,
        )
        .id,
    );
    let hvm_config = |domain_type, disk| VmConfig {
        domain_type,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 256,
        max_memory_mib: 256,
        disks: vec![
            DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) },
            DiskMapping { slot: 2, target: DiskTarget::Cdrom(iso) },
        ],
        boot_order: vec![BootDevice::Cdrom, BootDevice::Disk],
        ..VmConfig::default()
    };
    let disk_of = |name: &str| {
        VirtualDiskId(ok("create a disk", mgr.create_virtual_disk(repo, name, 16 << 20, false), 60).id)
    };
    let mut spec = VmSpec::new("agent-lab-hvm", hvm_config(DomainType::Hvm, disk_of("hvm-disk")));
    spec.server = Some(server);
    spec.repository = Some(repo);
    let hvm = VmId(ok("create the HVM VM", mgr.create_vm(spec), 60).id);
    // The whole marker line (the serial port is written as the guest prints).
    let (hvm_marker, console) = boot_to_markers(
        &mgr,
        hvm,
        "start the HVM VM",
        || mgr.start_vm(hvm),
        "the HVM guest's console marker",
        900,
        &["OVM-DOMU-UP", "boot=cdrom"],
    );
    assert!(console.contains("type=HVM") && console.contains("boot=cdrom"), "{console}");
    assert!(!console.contains("OVM-DOMU-DISK xvda"), "no PV disk without the platform device: {console}");

    // Its screen through the manager: the device model's VNC server on dom0's loopback, reached
    // over the agent's TLS, offered once on this machine's loopback with a one-time password.
    let t = Duration::from_secs(30);
    let ep = mgr.open_vm_console(hvm).unwrap();
    let e = ovm_core::console::screenshot(ep.address, "wrong-pw", t).unwrap_err();
    assert_eq!(e.kind(), ovm_core::ErrorKind::PermissionDenied, "{e}");
    let t1 = Instant::now();
    let shot = ovm_core::console::screenshot(ep.address, &ep.password, t).unwrap();
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-lab-hvm-screen.png");
    std::fs::write(&png, shot.png()).unwrap();
    println!(
        "CONSOLE-FIGURES screenshot={:.1}s {}x{} colours={} saved to {}",
        t1.elapsed().as_secs_f64(),
        shot.width,
        shot.height,
        shot.colours(),
        png.display()
    );
    assert!(shot.width >= 640 && shot.height >= 400, "{}x{}", shot.width, shot.height);
    assert!(shot.colours() > 1, "the guest's screen is not blank");
    assert!(
        ovm_core::console::screenshot(ep.address, &ep.password, t).is_err(),
        "a used endpoint takes nobody"
    );
    ok("kill the HVM VM", mgr.kill_vm(hvm), 120);
    ok("delete the HVM VM", mgr.delete_vm(hvm), 60);

    // PVHVM: the same CD, the Xen platform device: the guest unplugs the emulated disk and
    // reaches its disk through the PV driver.
    let mut spec = VmSpec::new("agent-lab-pvhvm", hvm_config(DomainType::PvHvm, disk_of("pvhvm-disk")));
    spec.server = Some(server);
    spec.repository = Some(repo);
    let pvhvm = VmId(ok("create the PVHVM VM", mgr.create_vm(spec), 60).id);
    let (pvhvm_marker, console) = boot_to_markers(
        &mgr,
        pvhvm,
        "start the PVHVM VM",
        || mgr.start_vm(pvhvm),
        "the PVHVM guest's disk through the PV driver",
        900,
        &["OVM-DOMU-DISK xvda"],
    );
    assert!(console.contains("type=HVM") && console.contains("boot=cdrom"), "{console}");
    ok("kill the PVHVM VM", mgr.kill_vm(pvhvm), 120);
    ok("delete the PVHVM VM", mgr.delete_vm(pvhvm), 60);

    // PXE: an HVM guest with a blank disk and a NIC on xenbr0, where the lab's PXE server
    // (dnsmasq in dom0) answers DHCP: the NIC's iPXE ROM loads PXELINUX over TFTP, which loads
    // the kernel and initramfs its configuration names.
    let mut pxe_config = hvm_config(DomainType::Hvm, disk_of("pxe-disk"));
    pxe_config.disks.truncate(1);
    pxe_config.boot_order = vec![BootDevice::Network, BootDevice::Disk];
    let mut spec = VmSpec::new("agent-lab-pxe", pxe_config);
    spec.server = Some(server);
    spec.repository = Some(repo);
    let pxe = VmId(ok("create the PXE VM", mgr.create_vm(spec), 60).id);
    ok("give the PXE VM a NIC", mgr.add_vnic(pxe, None), 60);
    let (pxe_marker, console) = boot_to_markers(
        &mgr,
        pxe,
        "start the PXE VM",
        || mgr.start_vm(pxe),
        "the PXE guest's console marker",
        900,
        &["OVM-DOMU-UP", "boot=pxe"],
    );
    assert!(console.contains("type=HVM"), "{console}");
    ok("kill the PXE VM", mgr.kill_vm(pxe), 120);
    ok("delete the PXE VM", mgr.delete_vm(pxe), 60);

    // An Oracle VM template of a PV guest whose kernel is on its disk (its vm.cfg names pygrub):
    // imported, cloned, started on the server; the server's PV boot loader (GRUB for Xen, in the
    // guest's domain) reads the guest's grub.cfg and boots its kernel.
    let template = TemplateId(
        ok(
            "import the PV template",
            mgr.import_template(repo, &format!("{images}/pv-template.tgz"), Some("lab-pv-template")),
            300,
        )
        .id,
    );
    let t = mgr.get::<Template>(template).unwrap();
    assert_eq!((t.config.domain_type, t.config.pv_kernel.is_none()), (DomainType::Pv, true), "{t:?}");
    let own = VmId(
        ok(
            "clone the PV template",
            mgr.clone_template(
                template,
                "agent-lab-pv-own-kernel",
                ovm_core::manager::CloneOptions::default(),
            ),
            300,
        )
        .id,
    );
    let (own_marker, console) = boot_to_markers(
        &mgr,
        own,
        "start the clone on the server",
        || mgr.start_vm_on(own, server),
        "the PV guest booted from its disk",
        300,
        &["OVM-DOMU-UP", "boot=disk"],
    );
    assert!(console.contains("type=PV"), "{console}");
    ok("kill the PV clone", mgr.kill_vm(own), 120);
    ok("delete the PV clone", mgr.delete_vm(own), 60);
    println!(
        "BOOT-FIGURES start-to-marker pv={:.1}s pv-own-kernel-via-boot-loader={:.1}s hvm-from-cd={:.1}s \
         pvhvm-from-cd-to-pv-disk={:.1}s hvm-pxe={:.1}s pv-network-boot-to-tree-read={:.1}s",
        pv_marker.as_secs_f64(),
        own_marker.as_secs_f64(),
        hvm_marker.as_secs_f64(),
        pvhvm_marker.as_secs_f64(),
        pxe_marker.as_secs_f64(),
        netboot_marker.as_secs_f64()
    );
    ok("delete the VM", mgr.delete_vm(vm), 60);
    ok("delete the disk", mgr.delete_virtual_disk(disk), 60);

    println!("events:");
    for e in mgr.events(&EventFilter::default()).unwrap() {
        println!("  {:<8} {:<22} {}", e.severity, e.event_type, e.summary);
    }
    ok("release the server", mgr.release_ownership(server), 60);
    mgr.close(Duration::from_secs(30)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
