//! VM lifecycle, placement, migration, HA, master failover and out-of-band domain changes on sim servers.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ovm_core::driver::sim::SimOp;
use ovm_core::driver::{DomainRunState, ShutdownReason};
use ovm_core::manager::{CloneOptions, StopOptions};
use ovm_core::model::*;
use ovm_core::store::EventFilter;
use ovm_core::{Error, ErrorKind};

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn full_power_lifecycle() {
    let lab = lab();
    let vm = lab.running_vm("life");
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!(v.power_state, PowerState::Running);
    assert!(v.domid.is_some());
    assert!(lab.mgr.vm_console(vm).unwrap().contains("guest up"));
    ok(lab.mgr.pause_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Paused);
    let err = lab.mgr.stop_vm(vm).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidState { expected, actual, .. } if expected == "Running" && actual == "Paused"),
        "{err}"
    );
    ok(lab.mgr.resume_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running);
    ok(lab.mgr.restart_vm(vm));
    assert_eq!(lab.mgr.vm_console(vm).unwrap().matches("guest up").count(), 2);
    ok(lab.mgr.suspend_vm(vm));
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.domid), (PowerState::Suspended, None));
    ok(lab.mgr.resume_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running);
    ok(lab.mgr.stop_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Stopped);
    assert_eq!(lab.mgr.vm_console(vm).unwrap_err().kind(), ErrorKind::InvalidState);
    ok(lab.mgr.start_vm(vm));
    ok(lab.mgr.kill_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Stopped);
    ok(lab.mgr.delete_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap_err().kind(), ErrorKind::NotFound);
}

fn events_of(lab: &Lab, vm: VmId, kind: &str) -> usize {
    lab.mgr
        .events(&EventFilter::default())
        .unwrap()
        .iter()
        .filter(|e| e.object.id == vm.0 && e.event_type == kind)
        .count()
}

#[test]
fn reboots_and_crashes_follow_the_restart_actions_and_the_new_domid() {
    let lab = lab();
    let vm = lab.running_vm("guest");
    let domid = |lab: &Lab| lab.mgr.vm(vm).unwrap().domid.unwrap();
    let first = domid(&lab);

    // A reboot through the manager: the domain is rebuilt with a new domid, which the VM follows.
    ok(lab.mgr.restart_vm(vm));
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!(v.power_state, PowerState::Running);
    let second = domid(&lab);
    assert_ne!(second, first, "a reboot gives the domain a new domid");
    assert_eq!(lab.mgr.sim().resident_on(vm).as_deref(), Some(lab.server_name(v.server.unwrap()).as_str()));

    // A reboot inside the guest: no job, the VM stays Running and follows the new domain.
    lab.mgr.sim().guest_reboot(vm).unwrap();
    wait_until("the VM to follow its rebuilt domain", || domid(&lab) != second);
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running);
    assert_eq!(events_of(&lab, vm, "vm.stopped"), 0, "a reboot never shows the VM stopped");
    assert_eq!(events_of(&lab, vm, "vm.restarted"), 1);
    let third = domid(&lab);

    // A crash with the default on_crash = restart: an Error event, and the VM runs on in a new domain.
    lab.mgr.sim().crash_domain(vm).unwrap();
    wait_until("the VM to follow its domain rebuilt after the crash", || domid(&lab) != third);
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running);
    assert_eq!(events_of(&lab, vm, "vm.crashed"), 1);
    assert_eq!(events_of(&lab, vm, "vm.stopped"), 0);
    ok(lab.mgr.acknowledge_all(lab.mgr.vm(vm).unwrap().object_ref()));

    // The guest powers off (on_poweroff = destroy): Stopped.
    lab.mgr.sim().guest_power_off(vm).unwrap();
    wait_until("the VM to stop", || lab.mgr.vm(vm).unwrap().power_state == PowerState::Stopped);
    assert_eq!(lab.mgr.vm(vm).unwrap().domid, None);

    // on_crash = preserve: the crashed domain is kept shut down for inspection and the VM is
    // Stopped; starting it again destroys the kept domain first.
    ok(lab.mgr.edit_vm(vm, |v| {
        v.config.restart_actions.on_crash = RestartAction::Preserve;
        v.config.restart_actions.on_reboot = RestartAction::Destroy;
    }));
    ok(lab.mgr.start_vm(vm));
    lab.mgr.sim().crash_domain(vm).unwrap();
    wait_until("the VM to stop after its crash", || {
        lab.mgr.vm(vm).unwrap().power_state == PowerState::Stopped
    });
    assert_eq!(
        lab.mgr.sim().domain_state(vm),
        Some(DomainRunState::Shutdown(ShutdownReason::Crash)),
        "the crashed domain is kept"
    );
    ok(lab.mgr.acknowledge_all(lab.mgr.vm(vm).unwrap().object_ref()));
    ok(lab.mgr.start_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running);
    assert!(lab.mgr.vm_console(vm).unwrap().contains("guest up"));

    // on_reboot = destroy: a reboot inside the guest stops the VM.
    lab.mgr.sim().guest_reboot(vm).unwrap();
    wait_until("the VM to stop after its reboot", || {
        lab.mgr.vm(vm).unwrap().power_state == PowerState::Stopped
    });
    assert_eq!(lab.mgr.sim().resident_on(vm), None);
}

#[test]
fn a_suspended_vm_resumes_on_another_server_of_its_pool() {
    let lab = lab();
    let vm = lab.running_vm("traveller");
    let from = lab.mgr.vm(vm).unwrap().server.unwrap();
    let to = if from == lab.s1 { lab.s2 } else { lab.s1 };
    ok(lab.mgr.suspend_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Suspended);
    assert_eq!(lab.mgr.sim().resident_on(vm), None);
    // Only a suspended VM, only in its pool.
    let other = lab.running_vm("stays");
    assert_eq!(lab.mgr.resume_vm_on(other, to).unwrap_err().kind(), ErrorKind::InvalidState);
    ok(lab.mgr.resume_vm_on(vm, to));
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(to)));
    assert_eq!(lab.mgr.sim().resident_on(vm).as_deref(), Some(lab.server_name(to).as_str()));
    assert_eq!(v.domid, lab.mgr.sim().domain_id(vm));
}

#[test]
fn stop_falls_back_to_destroy_or_fails_cleanly() {
    let lab = lab();
    let vm = lab.running_vm("stubborn");
    lab.mgr.sim().ignore_shutdown(vm, true);
    let job = lab
        .mgr
        .stop_vm_with(vm, StopOptions { timeout: Duration::from_millis(50), force_after_timeout: false })
        .unwrap();
    assert_eq!(job.wait(WAIT).unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running, "rolled back to Running");
    ok(lab.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm)));
    ok(lab
        .mgr
        .stop_vm_with(vm, StopOptions { timeout: Duration::from_millis(50), force_after_timeout: true }));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Stopped);
}

#[test]
fn capacity_is_enforced_and_placement_follows_policy() {
    // Servers with 4 GiB, 1 GiB of it for dom0: three 1 GiB VMs fit on each.
    let lab = lab_with(ovm_core::Manager::builder().recurring_jobs(false).open().unwrap(), 4096);
    let vms: Vec<VmId> = (0..6).map(|i| lab.running_vm(&format!("v{i}"))).collect();
    for s in [lab.s1, lab.s2] {
        assert_eq!(
            vms.iter().filter(|v| lab.mgr.vm(**v).unwrap().server == Some(s)).count(),
            3,
            "best-server spreads by free memory"
        );
    }
    let extra = lab.vm("extra");
    let err = lab.mgr.start_vm(extra).unwrap().wait(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InsufficientResources, "{err}");
    assert_eq!(lab.mgr.vm(extra).unwrap().power_state, PowerState::Stopped);
    // Migration to a full server is refused at once (a pre-check) and the VM stays where it was.
    let from = lab.mgr.vm(vms[0]).unwrap().server.unwrap();
    let to = if from == lab.s1 { lab.s2 } else { lab.s1 };
    let err = lab.mgr.migrate_vm(vms[0], to).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains("has 0 MiB free for guests"), "{err}");
    assert_eq!(lab.mgr.vm(vms[0]).unwrap().server, Some(from));
    assert_eq!(lab.mgr.vm(vms[0]).unwrap().power_state, PowerState::Running);
}

#[test]
fn anti_affinity_keeps_vms_apart() {
    let lab = lab();
    let a = lab.vm("aa-a");
    let b = lab.vm("aa-b");
    let c = lab.vm("aa-c");
    ok(lab.mgr.create_anti_affinity_group(lab.pool, "spread", vec![a, b, c]));
    ok(lab.mgr.start_vm(a));
    ok(lab.mgr.start_vm(b));
    assert_ne!(lab.mgr.vm(a).unwrap().server, lab.mgr.vm(b).unwrap().server);
    let err = lab.mgr.start_vm(c).unwrap().wait(WAIT).unwrap_err();
    assert!(err.to_string().contains("anti-affinity"), "{err}");
}

#[test]
fn live_migration_moves_the_domain() {
    let lab = lab();
    let vm = lab.running_vm("mig");
    let from = lab.mgr.vm(vm).unwrap().server.unwrap();
    let to = if from == lab.s1 { lab.s2 } else { lab.s1 };
    ok(lab.mgr.migrate_vm(vm, to));
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!((v.server, v.power_state), (Some(to), PowerState::Running));
    assert!(lab.mgr.vm_console(vm).unwrap().contains(&lab.server_name(to)));
    let err = lab.mgr.migrate_vm(vm, to).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains("is already on"), "{err}");
    // A failed migration leaves the VM where it was.
    lab.mgr.sim().fail_next(SimOp::Migrate, None, 1);
    let j = lab.mgr.migrate_vm(vm, from).unwrap().wait_done(WAIT).unwrap();
    assert_eq!(j.state, JobState::Failed);
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!((v.server, v.power_state), (Some(to), PowerState::Running));
}

#[test]
fn a_failed_send_gives_the_destination_its_reservation_back() {
    // Each server has room for exactly one 1024 MiB VM.
    let lab = lab_with(ovm_core::Manager::builder().recurring_jobs(false).open().unwrap(), 2048);
    let vm = lab.running_vm("mig");
    let from = lab.mgr.vm(vm).unwrap().server.unwrap();
    let to = if from == lab.s1 { lab.s2 } else { lab.s1 };
    // The destination prepares (reserving the memory), then the source fails to send.
    lab.mgr.sim().fail_next(SimOp::Migrate, Some(&lab.server_name(from)), 1);
    let j = lab.mgr.migrate_vm(vm, to).unwrap().wait_done(WAIT).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(from));
    // The manager cancelled the ticket: the destination has room again.
    match lab.mgr.migrate_vm(vm, to) {
        Err(Error::UnacknowledgedEvents { event, .. }) => {
            ok(lab.mgr.acknowledge_event(event.parse().unwrap()))
        }
        other => panic!("expected the failure's event to block, got {other:?}"),
    };
    ok(lab.mgr.migrate_vm(vm, to));
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(to));
}

#[test]
fn clones_vm_to_vm_and_vm_to_template() {
    let lab = lab();
    let vm = VmId(result_id(lab.mgr.clone_template(
        lab.template,
        "src",
        CloneOptions { pool: Some(lab.pool), ..Default::default() },
    )));
    let src = lab.mgr.vm(vm).unwrap();
    assert_eq!(src.config.disks.len(), 2);
    assert!(src
        .config
        .disks
        .iter()
        .all(|d| matches!(d.target, DiskTarget::VirtualDisk(x) if x != lab.template_disk)));
    let copy = VmId(result_id(lab.mgr.clone_vm(vm, "copy", CloneOptions::default())));
    let c = lab.mgr.vm(copy).unwrap();
    assert_ne!(c.config.vnics[0].mac, src.config.vnics[0].mac);
    assert_eq!(c.pool, src.pool);
    // A VM with two VNICs becomes a template (placeholder MACs, distinct), and its clones get
    // fresh MACs.
    ok(lab.mgr.edit_vm(copy, |v| v.config.vnics.push(Vnic { mac: String::new(), network: Some(lab.net) })));
    let t = TemplateId(result_id(lab.mgr.vm_to_template(copy, "golden")));
    let tpl = lab.mgr.get::<Template>(t).unwrap();
    assert_eq!(tpl.from_vm, Some(copy));
    assert_eq!(tpl.config.vnics.len(), 2);
    let from_golden = VmId(result_id(lab.mgr.clone_template(t, "from-golden", CloneOptions::default())));
    let g = lab.mgr.vm(from_golden).unwrap();
    assert_ne!(g.config.vnics[0].mac, g.config.vnics[1].mac);
    assert!(g.config.vnics.iter().all(|n| !tpl.config.vnics.iter().any(|t| t.mac == n.mac)));
    ok(lab.mgr.delete_vm(from_golden));
    ok(lab.mgr.start_vm(copy));
    assert_eq!(
        lab.mgr.clone_vm(copy, "nope", CloneOptions::default()).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    let used = lab.mgr.repository(lab.repo).unwrap().used_bytes;
    // The template's 6 GiB of disks, plus four clones of them (a deleted VM keeps its disks).
    assert_eq!(used, (6u64 << 30) * 5);
}

#[test]
fn lost_server_triggers_ha_restart_and_master_failover() {
    let lab = lab();
    let ha = lab.vm("ha");
    ok(lab.mgr.edit_vm(ha, |v| v.config.high_availability = true));
    let plain = lab.vm("plain");
    // Put both on the master (s1) by taking s2 out of placement for a moment.
    ok(lab.mgr.set_maintenance_mode(lab.s2, true));
    ok(lab.mgr.start_vm(ha));
    ok(lab.mgr.start_vm(plain));
    ok(lab.mgr.set_maintenance_mode(lab.s2, false));
    assert_eq!(lab.mgr.pool(lab.pool).unwrap().master, Some(lab.s1));
    lab.mgr.sim().lose_host("xen1").unwrap();
    wait_until("the HA VM to restart on xen2", || {
        let v = lab.mgr.vm(ha).unwrap();
        v.power_state == PowerState::Running && v.server == Some(lab.s2)
    });
    assert_eq!(lab.mgr.server(lab.s1).unwrap().power_state, ServerPowerState::Unreachable);
    assert_eq!(lab.mgr.vm(plain).unwrap().power_state, PowerState::Stopped);
    assert_eq!(lab.mgr.pool(lab.pool).unwrap().master, Some(lab.s2));
    let evs = lab.mgr.events(&EventFilter::default()).unwrap();
    assert!(evs.iter().any(|e| e.event_type == "server.unreachable" && e.severity == Severity::Warning));
    assert!(evs.iter().any(|e| e.event_type == "pool.master_failover"));
    // The server comes back: a refresh reconnects it and says so.
    lab.mgr.sim().restore_host("xen1").unwrap();
    ok(lab.mgr.refresh_server(lab.s1));
    assert_eq!(lab.mgr.server(lab.s1).unwrap().power_state, ServerPowerState::Running);
    assert!(lab
        .mgr
        .events(&EventFilter::default())
        .unwrap()
        .iter()
        .any(|e| e.event_type == "server.reachable"));
}

#[test]
fn guest_crash_outside_the_manager_is_noticed() {
    let lab = lab();
    let vm = lab.vm("crashy");
    ok(lab.mgr.edit_vm(vm, |v| v.config.restart_actions.on_crash = RestartAction::Destroy));
    ok(lab.mgr.start_vm(vm));
    lab.mgr.sim().crash_domain(vm).unwrap();
    wait_until("the VM to be seen stopped", || lab.mgr.vm(vm).unwrap().power_state == PowerState::Stopped);
    let evs = lab.mgr.events(&EventFilter { object: Some(vm.0), ..Default::default() }).unwrap();
    assert!(evs.iter().any(|e| e.event_type == "vm.stopped" && e.severity == Severity::Warning));
    assert!(evs.iter().any(|e| e.event_type == "vm.crashed" && e.severity == Severity::Error));
}

#[test]
fn editing_a_running_vm_changes_only_hot_settings() {
    let lab = lab();
    let vm = lab.running_vm("hot");
    assert_eq!(lab.mgr.edit_vm(vm, |v| v.config.max_vcpus = 4).unwrap_err().kind(), ErrorKind::InvalidState);
    ok(lab.mgr.edit_vm(vm, |v| v.description = "renamed while running".into()));
    let vm2 = lab.vm("cold");
    ok(lab.mgr.edit_vm(vm2, |v| {
        v.config.max_vcpus = 4;
        v.config.max_memory_mib = 2048;
    }));
    ok(lab.mgr.start_vm(vm2));
    ok(lab.mgr.edit_vm(vm2, |v| {
        v.config.vcpus = 3;
        v.config.memory_mib = 2000;
    }));
    assert_eq!(lab.mgr.vm(vm2).unwrap().config.vcpus, 3);
    assert_eq!(
        lab.mgr.edit_vm(vm2, |v| v.config.domain_type = DomainType::Hvm).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    assert_eq!(
        lab.mgr.edit_vm(vm2, |v| v.config.memory_mib = 4096).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        lab.mgr.edit_vm(vm2, |v| v.power_state = PowerState::Stopped).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn a_kernel_imported_into_a_repository_boots_a_pv_vm() {
    let lab = lab();
    let world = lab.mgr.sim();
    world.put_file("/srv/images/vmlinuz", 8 << 20);
    world.put_file("/srv/images/initrd.img", 32 << 20);
    let files = world.file_count();
    // Bad input: refused at once, nothing stored.
    for (name, src) in [("a/b", "/srv/images/vmlinuz"), ("..", "/srv/images/vmlinuz"), ("k", "relative/path")]
    {
        let e = lab.mgr.import_kernel(lab.repo, name, src, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{name} {src}: {e}");
    }
    // A missing initrd fails the job and the kernel already copied is removed again.
    let e = lab.mgr.import_kernel(lab.repo, "k1", "/srv/images/vmlinuz", Some("/srv/images/nope")).unwrap();
    assert_eq!(e.wait(Some(Duration::from_secs(10))).unwrap_err().kind(), ErrorKind::Backend);
    assert_eq!(world.file_count(), files, "rolled back");
    // The failure raised an Error event on the repository, which blocks it until acknowledged.
    let repo = lab.mgr.repository(lab.repo).unwrap().object_ref();
    assert_eq!(
        lab.mgr.import_kernel(lab.repo, "k1", "/srv/images/vmlinuz", None).unwrap_err().kind(),
        ErrorKind::UnacknowledgedEvents
    );
    ok(lab.mgr.acknowledge_all(repo));

    ok(lab.mgr.import_kernel(lab.repo, "k1", "/srv/images/vmlinuz", Some("/srv/images/initrd.img")));
    let (kernel, initrd) = ovm_core::manager::kernel_paths(lab.repo, "k1");
    assert_eq!(world.file_size(&kernel), Some(8 << 20));
    assert_eq!(world.file_size(&initrd), Some(32 << 20));
    let config = VmConfig {
        domain_type: DomainType::Pv,
        pv_kernel: Some(PvKernel { kernel, initrd: Some(initrd), cmdline: "console=hvc0".into() }),
        ..VmConfig::default()
    };
    let mut spec = ovm_core::manager::VmSpec::new("pv-kernel", config);
    spec.pool = Some(lab.pool);
    let vm = VmId(result_id(lab.mgr.create_vm(spec)));
    ok(lab.mgr.start_vm(vm));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running);
}

#[test]
fn messages_reach_the_guest_all_or_nothing_and_its_answers_are_read_back() {
    let lab = lab();
    let vm = lab.running_vm("messages");
    let msgs =
        |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    ok(lab.mgr.send_vm_messages(vm, &msgs(&[("hostname", "web-01"), ("role", "frontend")])));
    // The simulated guest runs the lab guest's reader: it answers each message.
    let data = lab.mgr.vm_guest_data(vm).unwrap();
    assert_eq!(data.get("reply-hostname").map(String::as_str), Some("web-01"));
    assert_eq!(data.get("reply-role").map(String::as_str), Some("frontend"));
    assert!(lab.mgr.vm_console(vm).unwrap().contains("OVM-DOMU-MSG hostname=web-01"));
    // The second of two fails: the first is taken back, the replaced one put back as it was.
    lab.mgr.sim().fail_after(SimOp::GuestMessage, None, 1);
    let e = lab
        .mgr
        .send_vm_messages(vm, &msgs(&[("hostname", "web-02"), ("extra", "x")]))
        .unwrap()
        .wait(Some(Duration::from_secs(10)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    let left = lab.mgr.sim().guest_messages(vm);
    assert_eq!(left.get("hostname").map(String::as_str), Some("web-01"), "{left:?}");
    assert!(!left.contains_key("extra"), "{left:?}");
    ok(lab.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm.0)));
    // Bad input is refused before anything is sent.
    for bad in [msgs(&[]), msgs(&[("a/b", "x")]), msgs(&[("k", "nul\0")])] {
        assert_eq!(
            lab.mgr.send_vm_messages(vm, &bad).unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "{bad:?}"
        );
    }
    ok(lab.mgr.stop_vm(vm));
    assert_eq!(
        lab.mgr.send_vm_messages(vm, &msgs(&[("k", "v")])).unwrap_err().kind(),
        ErrorKind::InvalidState
    );
    assert_eq!(lab.mgr.vm_guest_data(vm).unwrap_err().kind(), ErrorKind::InvalidState);
}

#[test]
fn the_console_of_an_hvm_guest_is_reached_once_with_its_one_time_password() {
    let lab = lab();
    let vm = fully_virtualised(&lab, "screen", DomainType::Hvm);
    assert_eq!(lab.mgr.open_vm_console(vm).unwrap_err().kind(), ErrorKind::InvalidState, "not running");
    ok(lab.mgr.start_vm(vm));
    let t = Duration::from_secs(10);
    // A wrong password is refused; the endpoint stays for the right one.
    let ep = lab.mgr.open_vm_console(vm).unwrap();
    assert!(ep.address.ip().is_loopback());
    assert_eq!(ep.password.len(), 8);
    let e = ovm_core::console::screenshot(ep.address, "wrong!!!", t).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let shot = ovm_core::console::screenshot(ep.address, &ep.password, t).unwrap();
    assert_eq!((shot.width, shot.height, shot.name.as_str()), (160, 100, "screen"));
    assert!(shot.colours() > 1, "not blank");
    let png = shot.png();
    assert_eq!(&png[1..4], b"PNG");
    // Used: the endpoint takes nobody else, with the right password or not.
    assert!(ovm_core::console::screenshot(ep.address, &ep.password, t).is_err());
    // Three wrong passwords close an endpoint.
    let ep2 = lab.mgr.open_vm_console(vm).unwrap();
    assert_ne!(ep2.password, ep.password);
    for _ in 0..3 {
        assert!(ovm_core::console::screenshot(ep2.address, "badpass1", t).is_err());
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(ovm_core::console::screenshot(ep2.address, &ep2.password, t).is_err(), "closed after three");
    // A PV guest has no graphical console.
    let pv = lab.running_vm("text-only");
    assert_eq!(lab.mgr.open_vm_console(pv).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn a_pv_guest_with_a_framebuffer_has_a_screen_and_a_pvh_guest_cannot() {
    let lab = lab();
    let vm = fully_virtualised(&lab, "pv-screen", DomainType::Pv);
    ok(lab.mgr.set_vm_framebuffer(vm, true));
    assert!(lab.mgr.vm(vm).unwrap().config.framebuffer);
    ok(lab.mgr.start_vm(vm));
    let e = lab.mgr.set_vm_framebuffer(vm, false).and_then(|j| j.wait(WAIT)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "only a stopped VM changes: {e}");
    let ep = lab.mgr.open_vm_console(vm).unwrap();
    let shot = ovm_core::console::screenshot(ep.address, &ep.password, Duration::from_secs(10)).unwrap();
    assert_eq!(shot.name, "pv-screen");
    assert!(shot.colours() > 1, "not blank");
    // Taken away again, the next start has no screen.
    ok(lab.mgr.kill_vm(vm));
    ok(lab.mgr.set_vm_framebuffer(vm, false));
    ok(lab.mgr.start_vm(vm));
    assert_eq!(lab.mgr.open_vm_console(vm).unwrap_err().kind(), ErrorKind::InvalidArgument);
    // PVH guests have no device model to serve one, HVM guests always have a screen: both refused,
    // and a PV guest with a framebuffer does not become PVH.
    ok(lab.mgr.kill_vm(vm));
    ok(lab.mgr.set_vm_framebuffer(vm, true));
    let e = lab.mgr.set_vm_boot(vm, DomainType::Pvh, vec![]).and_then(|j| j.wait(WAIT)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(lab.mgr.vm(vm).unwrap().config.domain_type, DomainType::Pv, "unchanged");
    let hvm = fully_virtualised(&lab, "hvm-screen", DomainType::Hvm);
    let e = lab.mgr.set_vm_framebuffer(hvm, true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

/// A WebSocket client's stream (as noVNC's): masked binary frames out, frames in.
struct Ws {
    tcp: std::net::TcpStream,
    pending: Vec<u8>,
    at: usize,
}

impl Ws {
    fn connect(addr: std::net::SocketAddr) -> (Ws, String) {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(
            b"GET /websockify HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: binary\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        (Ws { tcp, pending: Vec::new(), at: 0 }, String::from_utf8(head).unwrap())
    }
}

impl std::io::Read for Ws {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.pending.len() {
            let mut h = [0u8; 2];
            self.tcp.read_exact(&mut h)?;
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.tcp.read_exact(&mut b)?;
                    usize::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.tcp.read_exact(&mut b)?;
                    u64::from_be_bytes(b) as usize
                }
                n => usize::from(n),
            };
            let mut p = vec![0u8; len];
            self.tcp.read_exact(&mut p)?;
            assert_eq!(h[0], 0x82, "a final binary frame from the server");
            self.pending = p;
            self.at = 0;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl std::io::Write for Ws {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut f = vec![0x82];
        if buf.len() < 126 {
            f.push(0x80 | buf.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(buf.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(buf.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&f)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_websocket_client_reaches_the_console_as_novnc_does() {
    let lab = lab();
    let vm = fully_virtualised(&lab, "web-screen", DomainType::PvHvm);
    ok(lab.mgr.start_vm(vm));
    let ep = lab.mgr.open_vm_console(vm).unwrap();
    let (ws, head) = Ws::connect(ep.address);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: binary"), "{head}");
    // The same one-time password, inside the frames.
    let shot = ovm_core::console::screenshot_over(ws, &ep.password).unwrap();
    assert_eq!((shot.width, shot.height, shot.name.as_str()), (160, 100, "web-screen"));
    assert!(shot.colours() > 1);
    // A WebSocket client with a wrong password is refused like any other.
    let ep = lab.mgr.open_vm_console(vm).unwrap();
    let (ws, _) = Ws::connect(ep.address);
    let e = ovm_core::console::screenshot_over(ws, "nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
}

/// A stopped HVM or PVHVM VM of 512 MiB in the lab's pool and repository.
fn fully_virtualised(lab: &Lab, name: &str, domain_type: DomainType) -> VmId {
    let config = VmConfig { domain_type, memory_mib: 512, max_memory_mib: 512, ..VmConfig::default() };
    let mut spec = ovm_core::manager::VmSpec::new(name, config);
    spec.pool = Some(lab.pool);
    spec.repository = Some(lab.repo);
    VmId(result_id(lab.mgr.create_vm(spec)))
}
