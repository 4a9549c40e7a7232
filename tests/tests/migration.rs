//! Several migrations at once: the per-server migration limit, waiting in line for a slot, and
//! maintenance mode evacuating a server's VMs in parallel within the limit.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ovm_core::driver::sim::{SimOp, DEFAULT_PASSWORD};
use ovm_core::manager::{VmSpec, DEFAULT_MIGRATION_LIMIT};
use ovm_core::model::*;
use ovm_core::{Error, ErrorKind, JobHandle, Manager};

/// A VM of `memory_mib` in the lab's pool and repository, without NICs.
fn small_vm(lab: &Lab, name: &str, memory_mib: u64) -> VmId {
    let mut spec =
        VmSpec::new(name, VmConfig { memory_mib, max_memory_mib: memory_mib, ..VmConfig::default() });
    spec.pool = Some(lab.pool);
    spec.repository = Some(lab.repo);
    VmId(result_id(lab.mgr.create_vm(spec)))
}

/// Start `n` VMs of 1 GiB, all on server 1 (server 2 is in maintenance meanwhile).
fn vms_on_s1(lab: &Lab, n: usize) -> Vec<VmId> {
    ok(lab.mgr.set_maintenance_mode(lab.s2, true));
    let vms: Vec<VmId> = (0..n)
        .map(|i| {
            let vm = small_vm(lab, &format!("vm{i}"), 1024);
            ok(lab.mgr.start_vm(vm));
            vm
        })
        .collect();
    ok(lab.mgr.set_maintenance_mode(lab.s2, false));
    for v in &vms {
        assert_eq!(lab.mgr.vm(*v).unwrap().server, Some(lab.s1));
    }
    vms
}

/// A third server of `memory_mib` in the lab's pool, with the lab's repository presented.
fn third_server(lab: &Lab, name: &str, memory_mib: u64) -> ServerId {
    let s = ServerId(result_id(
        lab.mgr.discover_server(&format!("sim://{name}?memory_mib={memory_mib}"), DEFAULT_PASSWORD),
    ));
    ok(lab.mgr.add_server_to_pool(lab.pool, s));
    ok(lab.mgr.present_repository(lab.repo, s));
    s
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(20), "{what} never happened");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_limit_is_a_setting_kept_in_the_database_and_checked() {
    let dir = std::env::temp_dir().join(format!("ovm-test-limit-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("m.db");
    let mgr = Manager::builder()
        .database(ovm_core::manager::DatabaseLocation::File(db.clone()))
        .recurring_jobs(false)
        .open()
        .unwrap();
    assert_eq!(mgr.migration_limit(), DEFAULT_MIGRATION_LIMIT);
    assert_eq!(DEFAULT_MIGRATION_LIMIT, 2);
    for bad in [0, ovm_core::manager::MAX_MIGRATION_LIMIT + 1] {
        assert_eq!(mgr.set_migration_limit(bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
    assert_eq!(mgr.migration_limit(), 2, "a refused limit changes nothing");
    ok(mgr.set_migration_limit(5));
    assert_eq!(mgr.migration_limit(), 5);
    mgr.close(Duration::from_secs(5)).unwrap();
    drop(mgr);
    let mgr = Manager::builder()
        .database(ovm_core::manager::DatabaseLocation::File(db))
        .recurring_jobs(false)
        .open()
        .unwrap();
    assert_eq!(mgr.migration_limit(), 5);
    mgr.close(Duration::from_secs(5)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_a_limit_of_two_no_server_runs_more_than_two_migrations_at_once() {
    let lab = lab();
    let vms = vms_on_s1(&lab, 5);
    assert_eq!(lab.mgr.migration_limit(), 2);
    lab.mgr.sim().set_migration_time("xen1", Duration::from_millis(150));
    let jobs: Vec<JobHandle> = vms.iter().map(|v| lab.mgr.migrate_vm(*v, lab.s2).unwrap()).collect();
    // Three of them wait in line, and say so.
    wait_for("a migration waiting for a slot", || {
        jobs.iter().any(|j| j.info().message.contains("waiting for a migration slot on xen1"))
    });
    for j in &jobs {
        j.wait(WAIT).unwrap();
    }
    for v in &vms {
        let vm = lab.mgr.vm(*v).unwrap();
        assert_eq!((vm.server, vm.power_state), (Some(lab.s2), PowerState::Running));
    }
    let sim = lab.mgr.sim();
    assert_eq!(sim.most_concurrent_migrations("xen1"), 2, "two at once, never more");
    assert_eq!(sim.most_concurrent_migrations("xen2"), 2);
    assert_eq!(sim.migrations_under_way("xen1"), 0);

    // The limit counts on the destination too: with a limit of 3, five VMs going back to server 1
    // run three at once.
    ok(lab.mgr.set_migration_limit(3));
    let jobs: Vec<JobHandle> = vms.iter().map(|v| lab.mgr.migrate_vm(*v, lab.s1).unwrap()).collect();
    for j in &jobs {
        j.wait(WAIT).unwrap();
    }
    assert_eq!(sim.most_concurrent_migrations("xen1"), 3);
}

#[test]
fn a_migration_aborted_while_it_waits_for_a_slot_ends_with_nothing_done() {
    let lab = lab();
    let vms = vms_on_s1(&lab, 2);
    ok(lab.mgr.set_migration_limit(1));
    lab.mgr.sim().set_migration_time("xen1", Duration::from_millis(300));
    let first = lab.mgr.migrate_vm(vms[0], lab.s2).unwrap();
    wait_for("the first migration under way", || lab.mgr.sim().migrations_under_way("xen1") == 1);
    let second = lab.mgr.migrate_vm(vms[1], lab.s2).unwrap();
    wait_for("the second migration waiting", || {
        second.info().message.contains("waiting for a migration slot on xen1 and xen2")
    });
    second.abort().unwrap();
    let done = second.wait_done(WAIT).unwrap();
    assert_eq!(done.state, JobState::Aborted);
    assert!(matches!(done.error, Some(Error::Aborted { .. })), "{:?}", done.error);
    let vm = lab.mgr.vm(vms[1]).unwrap();
    assert_eq!((vm.server, vm.power_state), (Some(lab.s1), PowerState::Running), "nothing moved");
    assert_eq!(lab.mgr.sim().resident_on(vms[1]).as_deref(), Some("xen1"));
    first.wait(WAIT).unwrap();
    assert_eq!(lab.mgr.sim().most_concurrent_migrations("xen1"), 1);
    // Its place in line is given up: it migrates at once when asked again.
    lab.mgr.sim().set_migration_time("xen1", Duration::ZERO);
    ok(lab.mgr.migrate_vm(vms[1], lab.s2));
    assert_eq!(lab.mgr.vm(vms[1]).unwrap().server, Some(lab.s2));
}

#[test]
fn maintenance_mode_evacuates_several_vms_in_parallel_within_the_limit() {
    let lab = lab();
    let vms = vms_on_s1(&lab, 5);
    lab.mgr.sim().set_migration_time("xen1", Duration::from_millis(150));
    let job = lab.mgr.set_maintenance_mode(lab.s1, true).unwrap();
    // Progress is visible through the children, recorded on the parent before they finish.
    wait_for("five children recorded", || job.info().children.len() == 5);
    wait_for("two children migrating at once", || lab.mgr.sim().migrations_under_way("xen1") == 2);
    let waiting = job
        .info()
        .children
        .iter()
        .filter(|c| lab.mgr.job(**c).unwrap().info().message.starts_with("waiting for a migration slot"))
        .count();
    assert!(waiting >= 1, "the others wait in line");
    let info = job.wait(WAIT).unwrap();
    assert_eq!(info.children.len(), 5);
    for c in &info.children {
        let child = lab.mgr.job(*c).unwrap().info();
        assert_eq!(
            (child.parent, child.kind.as_str(), child.state),
            (Some(info.id), "MigrateVm", JobState::Completed)
        );
    }
    for v in &vms {
        assert_eq!(lab.mgr.vm(*v).unwrap().server, Some(lab.s2));
    }
    assert!(lab.mgr.server(lab.s1).unwrap().maintenance_mode);
    assert_eq!(lab.mgr.sim().most_concurrent_migrations("xen1"), 2);
}

#[test]
fn evacuation_places_vms_counting_those_already_going_to_a_server() {
    let lab = lab();
    // Server 3 and server 4 each have room for one VM of 1 GiB (1.5 GiB and 1.25 GiB for guests);
    // server 2 is in maintenance.
    let s3 = third_server(&lab, "xen3", 1024 + 1536);
    let s4 = third_server(&lab, "xen4", 1024 + 1280);
    ok(lab.mgr.set_maintenance_mode(lab.s2, true));
    ok(lab.mgr.set_maintenance_mode(s3, true));
    ok(lab.mgr.set_maintenance_mode(s4, true));
    let vms: Vec<VmId> = (0..3)
        .map(|i| {
            let vm = small_vm(&lab, &format!("vm{i}"), 1024);
            ok(lab.mgr.start_vm(vm));
            vm
        })
        .collect();
    ok(lab.mgr.set_maintenance_mode(s3, false));
    ok(lab.mgr.set_maintenance_mode(s4, false));
    lab.mgr.sim().set_migration_time("xen1", Duration::from_millis(100));
    let job = lab.mgr.set_maintenance_mode(lab.s1, true).unwrap();
    let done = job.wait_done(WAIT).unwrap();
    // Two VMs moved, one to each server (the policy prefers the most free memory: server 3 first,
    // then, counting the VM already going there, server 4); the third has nowhere to go.
    let placed: Vec<Option<ServerId>> = vms.iter().map(|v| lab.mgr.vm(*v).unwrap().server).collect();
    assert_eq!(placed.iter().filter(|s| **s == Some(s3)).count(), 1, "{placed:?}");
    assert_eq!(placed.iter().filter(|s| **s == Some(s4)).count(), 1, "{placed:?}");
    let left: Vec<VmId> =
        vms.iter().copied().filter(|v| lab.mgr.vm(*v).unwrap().server == Some(lab.s1)).collect();
    assert_eq!(left.len(), 1);
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.children.len(), 2, "no child for a VM with no place");
    match done.error {
        Some(Error::EvacuationFailed { server, failed }) => {
            assert_eq!(server.id, lab.s1.0);
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].vm.id, left[0].0);
            assert_eq!(failed[0].error.kind(), ErrorKind::InsufficientResources);
        }
        other => panic!("expected EvacuationFailed, got {other:?}"),
    }
    assert_eq!(ErrorKind::EvacuationFailed.code(), 20);
    assert!(!lab.mgr.server(lab.s1).unwrap().maintenance_mode);
}

#[test]
fn a_failed_child_is_reported_while_the_others_move_and_the_server_stays_out_of_maintenance() {
    let lab = lab();
    let vms = vms_on_s1(&lab, 4);
    lab.mgr.sim().set_migration_time("xen1", Duration::from_millis(50));
    // The source fails the second domain it is asked to send (the first two sends run at once;
    // whichever comes second fails).
    lab.mgr.sim().fail_after(SimOp::Migrate, Some("xen1"), 1);
    let job = lab.mgr.set_maintenance_mode(lab.s1, true).unwrap();
    let done = job.wait_done(WAIT).unwrap();
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.children.len(), 4);
    let failed_children: Vec<Job> = done
        .children
        .iter()
        .map(|c| lab.mgr.job(*c).unwrap().info())
        .filter(|c| c.state == JobState::Failed)
        .collect();
    assert_eq!(failed_children.len(), 1);
    let Some(Error::EvacuationFailed { failed, .. }) = &done.error else {
        panic!("expected EvacuationFailed, got {:?}", done.error)
    };
    assert_eq!(failed.len(), 1);
    let stuck = VmId(failed[0].vm.id);
    assert_eq!(failed[0].name, lab.mgr.vm(stuck).unwrap().name);
    assert_eq!(failed[0].error.kind(), ErrorKind::Backend);
    assert!(done.error.as_ref().unwrap().to_string().contains(&failed[0].name));
    for v in &vms {
        let vm = lab.mgr.vm(*v).unwrap();
        let want = if *v == stuck { lab.s1 } else { lab.s2 };
        assert_eq!((vm.server, vm.power_state), (Some(want), PowerState::Running), "{}", vm.name);
    }
    assert!(!lab.mgr.server(lab.s1).unwrap().maintenance_mode);
    assert_eq!(lab.mgr.sim().migrations_under_way("xen1"), 0);
    // The failures raised Error events on the VM and the server, which block them until seen.
    ok(lab.mgr.acknowledge_all(failed[0].vm));
    ok(lab.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Server, lab.s1)));
    // The slots were all given back: the last VM moves, and the server can then enter maintenance.
    ok(lab.mgr.migrate_vm(stuck, lab.s2));
    ok(lab.mgr.set_maintenance_mode(lab.s1, true));
}

#[test]
fn aborting_an_evacuation_aborts_the_children_still_waiting() {
    let lab = lab();
    let vms = vms_on_s1(&lab, 4);
    ok(lab.mgr.set_migration_limit(1));
    lab.mgr.sim().set_migration_time("xen1", Duration::from_millis(200));
    let job = lab.mgr.set_maintenance_mode(lab.s1, true).unwrap();
    wait_for("children waiting in line", || {
        let children = job.info().children;
        children.len() == 4
            && children
                .iter()
                .filter(|c| lab.mgr.job(**c).unwrap().info().message.starts_with("waiting"))
                .count()
                == 3
    });
    job.abort().unwrap();
    let done = job.wait_done(WAIT).unwrap();
    assert_eq!(done.state, JobState::Aborted);
    let states: Vec<JobState> = done.children.iter().map(|c| lab.mgr.job(*c).unwrap().info().state).collect();
    assert_eq!(states.iter().filter(|s| **s == JobState::Aborted).count(), 3, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == JobState::Completed).count(), 1, "{states:?}");
    assert_eq!(vms.iter().filter(|v| lab.mgr.vm(**v).unwrap().server == Some(lab.s1)).count(), 3);
    assert!(!lab.mgr.server(lab.s1).unwrap().maintenance_mode);
    assert_eq!(lab.mgr.sim().migrations_under_way("xen1"), 0);
}

#[test]
fn a_cold_move_runs_the_vm_on_the_target_and_destroys_the_source_copy_only_after() {
    use ovm_core::manager::MigrateOptions;
    let lab = lab();
    let vms = vms_on_s1(&lab, 1);
    let vm = vms[0];
    let cold = MigrateOptions { mode: MigrationMode::Cold };
    // The source refuses to send: the VM runs on where it ran, not paused.
    lab.mgr.sim().fail_next(SimOp::Migrate, Some("xen1"), 1);
    let failed = lab.mgr.migrate_vm_with(vm, lab.s2, cold).unwrap().wait_done(WAIT).unwrap();
    assert_eq!(failed.state, JobState::Failed);
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!((v.server, v.power_state), (Some(lab.s1), PowerState::Running));
    assert_eq!(lab.mgr.sim().resident_on(vm).as_deref(), Some("xen1"));
    ok(lab.mgr.acknowledge_all(v.object_ref()));

    let done = ok(lab.mgr.migrate_vm_with(vm, lab.s2, cold));
    assert_eq!(done.kind, "MoveVmCold");
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!((v.server, v.power_state), (Some(lab.s2), PowerState::Running));
    assert_eq!(lab.mgr.sim().resident_on(vm).as_deref(), Some("xen2"), "the source copy is gone");
    // Cold moves take migration slots like live ones, and the default stays live.
    assert_eq!(lab.mgr.sim().most_concurrent_migrations("xen1"), 1);
    assert_eq!(MigrateOptions::default().mode, MigrationMode::Live);
    assert_eq!(ok(lab.mgr.migrate_vm(vm, lab.s1)).kind, "MigrateVm");
}
