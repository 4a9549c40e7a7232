//! Tests against a real Xen dom0 (Xen 4.17). Built only with the
//! `xen-lab-tests` feature; they must run as root inside dom0.
//!
//! Guest tests need a PV guest kernel and initramfs, given by the
//! environment variables `OVM_LAB_GUEST_KERNEL` and `OVM_LAB_GUEST_INITRD`;
//! those tests fail (they do not skip) when the variables are missing. In the
//! ovm Xen lab (`OVM_XENLAB=1`) they default to the lab's guest,
//! `/var/lib/ovm-lab/{vmlinux,domu-initrd.gz}`:
//!
//! ```sh
//! tests/xenlab/lab cargo-test -p ovm-core --features xen-lab-tests --test xen_lab
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ovm_core::xen::client::{XsClient, XsConfig};
use ovm_core::xen::transport::Transport;
use ovm_core::xen::{
    BlockingXsClient, DomainEvent, DomainState, LifecycleAction, Privcmd, ShutdownOutcome, ShutdownRequest,
    XenError, XenHost, XlDomainBuilder, XlToolstack,
};

/// Fails (never skips) outside a Xen dom0.
fn assert_dom0() {
    let caps = std::fs::read_to_string("/proc/xen/capabilities").unwrap_or_default();
    assert!(
        caps.contains("control_d"),
        "these tests must run in a Xen dom0 (/proc/xen/capabilities: {caps:?})"
    );
}

fn socket() -> Transport {
    assert_dom0();
    Transport::candidates()
        .into_iter()
        .find(|t| matches!(t, Transport::Socket(p) if p.exists()))
        .expect("xenstored socket present in dom0")
}

fn xenbus() -> Transport {
    Transport::Xenbus("/dev/xen/xenbus".into())
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("/ovm-lab/{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test]
async fn xenstore_read_dom0_name_over_socket_and_xenbus() {
    for t in [socket(), xenbus()] {
        let c = XsClient::connect(t.clone(), XsConfig::default()).await.unwrap();
        let name = c.read_string("/local/domain/0/name").await.unwrap();
        println!("{t:?}: /local/domain/0/name = {name:?}");
        assert_eq!(name, "Domain-0");
        assert_eq!(c.get_domain_path(0).await.unwrap(), "/local/domain/0");
        assert!(c.directory("/local/domain").await.unwrap().contains(&"0".to_string()));
        assert!(c.is_domain_introduced(0).await.unwrap());
    }
}

#[tokio::test]
async fn xenstore_write_read_rm_perms_both_transports() {
    for t in [socket(), xenbus()] {
        let c = XsClient::connect(t.clone(), XsConfig::default()).await.unwrap();
        let base = unique("rw");
        c.write(&format!("{base}/k"), "v1").await.unwrap();
        assert_eq!(c.read_string(&format!("{base}/k")).await.unwrap(), "v1");
        assert_eq!(c.directory(&base).await.unwrap(), vec!["k"]);
        let perms = ovm_core::xen::Perms::owned_by(0, ovm_core::xen::Access::None)
            .grant(1, ovm_core::xen::Access::Read);
        c.set_perms(&format!("{base}/k"), &perms).await.unwrap();
        assert_eq!(c.get_perms(&format!("{base}/k")).await.unwrap(), perms);
        c.rm(&base).await.unwrap();
        let e = c.read(&format!("{base}/k")).await.unwrap_err();
        assert!(e.is_not_found(), "{t:?}: {e}");
        // Pipelining against the real daemon.
        let futs: Vec<_> = (0..32)
            .map(|i| {
                let c = c.clone();
                let p = format!("{base}/p{i}");
                tokio::spawn(async move {
                    c.write(&p, i.to_string()).await?;
                    c.read_string(&p).await
                })
            })
            .collect();
        for (i, f) in futs.into_iter().enumerate() {
            assert_eq!(f.await.unwrap().unwrap(), i.to_string());
        }
        c.rm(&base).await.unwrap();
        println!("{t:?}: write/read/rm/perms/32 concurrent requests OK");
    }
}

#[tokio::test]
async fn conflicting_transactions_one_retries_and_wins() {
    let a = XsClient::connect(socket(), XsConfig::default()).await.unwrap();
    let b = XsClient::connect(xenbus(), XsConfig::default()).await.unwrap();
    let key = unique("tx");
    a.write(&key, "0").await.unwrap();
    // Manual: both start, both write, first commit wins, second gets EAGAIN.
    let ta = a.transaction_start().await.unwrap();
    let tb = b.transaction_start().await.unwrap();
    ta.write(&key, "a").await.unwrap();
    tb.write(&key, "b").await.unwrap();
    ta.commit().await.unwrap();
    let e = tb.commit().await.unwrap_err();
    println!("second commit: {e}");
    assert!(e.is_eagain(), "{e}");
    // Retry helper: b's body is interrupted by a's write on its first attempt.
    let mut attempts = 0;
    let (a2, key2) = (a.clone(), key.clone());
    let v = b
        .transaction(|tx| {
            attempts += 1;
            let (a2, key2) = (a2.clone(), key2.clone());
            let first = attempts == 1;
            async move {
                let n = tx.read_string(&key2).await?;
                if first {
                    a2.write(&key2, "interloper").await?;
                }
                tx.write(&key2, format!("{n}+b")).await?;
                Ok(n)
            }
        })
        .await
        .unwrap();
    println!("retry helper: {attempts} attempts, read {v:?}");
    assert_eq!(attempts, 2);
    assert_eq!(a.read_string(&key).await.unwrap(), "interloper+b");
    a.rm(&key).await.unwrap();
}

#[tokio::test]
async fn watches_fire() {
    let a = XsClient::connect(socket(), XsConfig::default()).await.unwrap();
    let b = XsClient::connect(xenbus(), XsConfig::default()).await.unwrap();
    let base = unique("watch");
    a.mkdir(&base).await.unwrap();
    for c in [&a, &b] {
        let mut w = c.watch(&base).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().unwrap();
        assert_eq!(first.path, base);
        a.write(&format!("{base}/x"), "1").await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().unwrap();
        assert_eq!(ev.path, format!("{base}/x"));
        w.unwatch().await.unwrap();
    }
    let mut rel = a.watch("@releaseDomain").await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), rel.next()).await.unwrap().unwrap();
    assert_eq!(ev.path, "@releaseDomain");
    a.rm(&base).await.unwrap();
    println!("watches fired over socket and xenbus");
}

#[test]
fn blocking_client_reads_dom0_name() {
    assert_dom0();
    let c = BlockingXsClient::connect_default().unwrap();
    assert_eq!(c.read_string("/local/domain/0/name").unwrap(), "Domain-0");
}

#[test]
fn hypercalls_version_physinfo_domains() {
    assert_dom0();
    let p = Privcmd::open().unwrap();
    println!("hypercall buffers from /dev/xen/hypercall: {}", p.uses_hypercall_device());
    let v = p.xen_version().unwrap();
    println!("xen_version = {v}");
    assert_eq!((v.major, v.minor), (4, 17));
    let info = p.physinfo().unwrap();
    println!("physinfo = {info:?}");
    assert!(info.nr_cpus >= 1);
    assert!(info.total_bytes >= 1 << 30, "at least 1 GiB");
    assert!(info.free_bytes > 0 && info.free_bytes < info.total_bytes);
    assert!(info.pv);
    let doms = p.domains().unwrap();
    println!("domains = {doms:?}");
    let d0 = doms.iter().find(|d| d.domid == 0).expect("dom0 listed");
    assert!(d0.memory_bytes >= 512 << 20, "dom0 has at least 512 MiB");
    assert!(d0.online_vcpus >= 1);
    assert!(d0.cpu_time_ns > 0);
    assert!(matches!(d0.state, DomainState::Running | DomainState::Blocked));
    assert_eq!(p.domain(0).unwrap().domid, 0);
    assert!(matches!(p.domain(4000), Err(XenError::NoSuchDomain(4000))));
    assert!(matches!(p.pause_domain(4000), Err(XenError::NoSuchDomain(4000))));
    p.check_interfaces().unwrap();
    // Xen refuses other interface versions; that surfaces as a typed error.
    let old_sysctl = Privcmd::open().unwrap().with_interface_versions(0x14, 0x15);
    let e = old_sysctl.physinfo().unwrap_err();
    println!("sysctl with interface 0x14: {e}");
    assert!(matches!(e, XenError::InterfaceVersion { what: "sysctl", .. }), "{e}");
    let old_domctl = Privcmd::open().unwrap().with_interface_versions(0x15, 0x14);
    let e = old_domctl.check_interfaces().unwrap_err();
    println!("domctl with interface 0x14: {e}");
    assert!(matches!(e, XenError::InterfaceVersion { what: "domctl", .. }), "{e}");
}

#[tokio::test]
async fn host_lists_dom0_with_name() {
    assert_dom0();
    let host = XenHost::open().await.unwrap();
    let doms = host.list_domains().await.unwrap();
    let d0 = doms.iter().find(|d| d.domid() == 0).expect("dom0");
    assert_eq!(d0.name.as_deref(), Some("Domain-0"));
    assert!(host.destroy(0).is_err(), "dom0 is protected");
    println!(
        "host domains: {:?}",
        doms.iter().map(|d| (d.domid(), d.name.clone(), d.info.state)).collect::<Vec<_>>()
    );
}

/// The guest image named by `var`; inside the ovm lab (`OVM_XENLAB=1`) it
/// defaults to the lab's documented PV guest. Missing means failure.
fn guest_image(var: &str, lab_default: &str) -> String {
    let v = match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ if std::env::var("OVM_XENLAB").as_deref() == Ok("1") => lab_default.to_string(),
        _ => panic!("{var} must name the PV guest image for this test (or run it in the ovm Xen lab)"),
    };
    assert!(std::path::Path::new(&v).exists(), "{var}: {v} does not exist");
    v
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn pv_guest_lifecycle() {
    assert_dom0();
    let kernel = guest_image("OVM_LAB_GUEST_KERNEL", "/var/lib/ovm-lab/vmlinux");
    let initrd = guest_image("OVM_LAB_GUEST_INITRD", "/var/lib/ovm-lab/domu-initrd.gz");
    let host = XenHost::open().await.unwrap();
    let mut events = host.events(Duration::from_secs(1)).await.unwrap();
    let xl = XlToolstack::new(std::env::var("OVM_XL").unwrap_or_else(|_| "xl".into()), "/tmp/ovm-lab-xl");
    let name = "ovmlab-pv1";
    let t0 = Instant::now();
    let domid = XlDomainBuilder::new(name)
        .kernel(&kernel)
        .ramdisk(&initrd)
        .cmdline("console=hvc0")
        .memory_mib(256)
        .vcpus(2)
        .on_poweroff(LifecycleAction::Destroy)
        .create(&xl)
        .unwrap();
    println!("xl create -> domid {domid} after {:?}", t0.elapsed());
    let d = host.domain(domid).await.unwrap();
    println!("domain: {d:?}");
    assert_eq!(d.name.as_deref(), Some(name));
    assert!(d.vm_path.as_deref().is_some_and(|p| p.starts_with("/vm/")));
    assert!(!d.uuid().is_nil());
    assert_eq!(d.info.max_vcpu_id, 1);
    assert!(d.info.memory_bytes > 200 << 20 && d.info.memory_bytes <= 260 << 20);
    assert!(host.list_domains().await.unwrap().iter().any(|x| x.domid() == domid));
    assert_eq!(host.find_by_name(name).await.unwrap().map(|x| x.domid()), Some(domid));

    // Console output from xenconsoled's log.
    let mut console = String::new();
    for _ in 0..240 {
        console = host.console_output(domid, 64 * 1024).await.unwrap_or_default();
        if console.contains("DOMU-UP") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(console.contains("DOMU-UP"), "guest console: {console}");
    println!(
        "guest up after {:?}: {}",
        t0.elapsed(),
        console.lines().find(|l| l.contains("DOMU-UP")).unwrap()
    );
    let h = host.clone();
    wait_for("both vCPUs online", 60, || {
        (h.hypercalls().domain(domid).unwrap().online_vcpus == 2).then_some(())
    })
    .await;

    // Pause / unpause.
    host.pause(domid).unwrap();
    assert_eq!(host.domain(domid).await.unwrap().info.state, DomainState::Paused);
    host.unpause(domid).unwrap();
    assert_ne!(host.domain(domid).await.unwrap().info.state, DomainState::Paused);

    // Memory target: the guest's balloon driver follows it.
    host.set_memory_target(domid, 192 * 1024).await.unwrap();
    assert_eq!(host.memory_target(domid).await.unwrap(), Some(192 * 1024));
    let shrunk = wait_for("balloon to shrink", 60, || {
        let m = h.hypercalls().domain(domid).unwrap().memory_bytes;
        (m <= 200 << 20).then_some(m)
    })
    .await;
    println!("memory after target 192 MiB: {} MiB", shrunk >> 20);
    assert!(host.set_memory_target(domid, 1 << 30).await.is_err(), "above maxmem");

    // vCPUs: take vCPU 1 offline through xenstore.
    host.set_online_vcpus(domid, 1).await.unwrap();
    assert_eq!(
        host.xenstore().read_string(&format!("/local/domain/{domid}/cpu/1/availability")).await.unwrap(),
        "offline"
    );
    wait_for("vCPU 1 offline", 60, || {
        (h.hypercalls().domain(domid).unwrap().online_vcpus == 1).then_some(())
    })
    .await;
    // Making it available again is all the toolstack can do: Linux marks the
    // vCPU present and leaves onlining it to guest userspace (udev), which the
    // lab's busybox guest does not have.
    host.set_online_vcpus(domid, 2).await.unwrap();
    assert_eq!(
        host.xenstore().read_string(&format!("/local/domain/{domid}/cpu/1/availability")).await.unwrap(),
        "online"
    );
    assert!(host.set_online_vcpus(domid, 3).await.is_err());
    println!("vcpu 1 taken offline by the guest kernel; made available again");

    // Graceful shutdown with destroy fallback.
    let outcome =
        host.shutdown(domid, ShutdownRequest::Poweroff, Duration::from_secs(30), true).await.unwrap();
    println!("shutdown outcome: {outcome:?} after {:?}", t0.elapsed());
    assert!(matches!(
        outcome,
        ShutdownOutcome::Guest(None | Some(ovm_core::xen::ShutdownReason::Poweroff))
            | ShutdownOutcome::Destroyed
    ));
    wait_for("domain to go away", 60, || match h.hypercalls().domain(domid) {
        Err(XenError::NoSuchDomain(_)) => Some(()),
        Ok(i) if i.state == DomainState::Dying => Some(()),
        _ => None,
    })
    .await;

    // The event stream saw the domain come and go.
    let mut appeared = false;
    let mut gone = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(appeared && gone) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), events.next()).await {
            Ok(Some(DomainEvent::Appeared(i))) if i.domid == domid => appeared = true,
            Ok(Some(DomainEvent::Disappeared { domid: id, .. })) if id == domid => gone = true,
            Ok(Some(DomainEvent::StateChanged { domid: id, new: DomainState::Dying, .. })) if id == domid => {
                gone = true
            }
            Ok(Some(e)) => println!("event: {e:?}"),
            _ => {}
        }
    }
    assert!(appeared && gone, "events: appeared={appeared} gone={gone}");
    println!("domain events: appeared and gone");
}

#[test]
fn xen_driver_runs_a_vm_for_the_manager() {
    use ovm_core::driver::{DiskSpec, DomainChange, DomainRunState, DomainSpec, Driver};
    use ovm_core::model::{DomainType, RestartActions, VmId};
    use ovm_core::xen::XenDriver;

    assert_dom0();
    let kernel = guest_image("OVM_LAB_GUEST_KERNEL", "/var/lib/ovm-lab/vmlinux");
    let initrd = guest_image("OVM_LAB_GUEST_INITRD", "/var/lib/ovm-lab/domu-initrd.gz");
    let driver = XenDriver::new(None).with_toolstack(XlToolstack::new(
        std::env::var("OVM_XL").unwrap_or_else(|_| "xl".into()),
        "/tmp/ovm-lab-xl",
    ));
    assert!(driver.handles("xen:///"));
    let hv = driver.connect("xen:///", "", "lab-manager").unwrap();
    assert!(driver.connect("xen:///", "", "another-manager").is_err(), "owned by lab-manager");
    let info = hv.host_info().unwrap();
    println!("host_info: {info:?}");
    assert_eq!(info.owner.as_deref(), Some("lab-manager"));
    assert!(info.hardware.xen_version.starts_with("4.17"));
    assert!(info.hardware.cpus >= 1 && info.hardware.memory_mib >= 1024);
    let load = hv.load().unwrap();
    println!("load: {load:?}");
    assert!(load.free_memory_mib > 256);
    assert!(hv
        .list_domains()
        .unwrap()
        .iter()
        .any(|d| d.domid == 0 && d.uuid.is_none() && d.name == "Domain-0"));

    let mut changes = hv.watch().unwrap();
    let disk = "/OVS/lab-driver-disk.img";
    let _ = std::fs::remove_file(disk);
    hv.file_storage().unwrap().create_file(disk, 16 << 20).unwrap();
    let vm = VmId::new();
    let spec = DomainSpec {
        uuid: vm,
        name: "ovmlab-drv1".into(),
        domain_type: DomainType::Pv,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 256,
        max_memory_mib: 256,
        disks: vec![DiskSpec { slot: 0, path: disk.into(), read_only: false, cdrom: false }],
        nics: vec![],
        kernel: Some(kernel),
        initrd: Some(initrd),
        cmdline: Some("console=hvc0".into()),
        restart_actions: RestartActions::default(),
        boot_order: Vec::new(),
        ha_priority: None,
        framebuffer: false,
        network_boot: None,
    };
    let t0 = Instant::now();
    let domid = hv.create_domain(&spec).unwrap();
    println!("create_domain -> {domid} after {:?}", t0.elapsed());
    let st = hv.list_domains().unwrap().into_iter().find(|d| d.uuid == Some(vm)).expect("listed by VM id");
    assert_eq!((st.domid, st.name.as_str(), st.memory_mib), (domid, "ovmlab-drv1", 256));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut appeared = false;
    while !appeared && Instant::now() < deadline {
        match changes.try_recv() {
            Ok(DomainChange::Appeared { uuid, domid: d }) => appeared = uuid == Some(vm) && d == domid,
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert!(appeared, "watch() reported the new domain");
    hv.pause(vm).unwrap();
    assert!(hv
        .list_domains()
        .unwrap()
        .iter()
        .any(|d| d.uuid == Some(vm) && d.state == DomainRunState::Paused));
    hv.unpause(vm).unwrap();
    let mut console = String::new();
    for _ in 0..240 {
        console = hv.console(vm).unwrap_or_default();
        if console.contains("DOMU-UP") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(console.contains("DOMU-UP"), "console: {console}");
    // The guest powers off cleanly if it can; otherwise the manager destroys it.
    match hv.shutdown(vm, Duration::from_secs(30)) {
        Ok(()) => println!("graceful shutdown after {:?}", t0.elapsed()),
        Err(e) => {
            assert_eq!(e.kind(), ovm_core::ErrorKind::Timeout, "{e}");
            println!("guest ignored the shutdown request: {e}; destroying");
            hv.destroy(vm).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while hv.list_domains().unwrap().iter().any(|d| d.uuid == Some(vm) && d.state != DomainRunState::Dying) {
        assert!(Instant::now() < deadline, "VM still resident");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(hv.pause(vm).unwrap_err().kind(), ovm_core::ErrorKind::NotFound);
    hv.file_storage().unwrap().delete_file(disk).unwrap();
    driver.release("xen:///", "lab-manager").unwrap();
    println!("XenDriver: create/watch/pause/console/shutdown OK");
}
