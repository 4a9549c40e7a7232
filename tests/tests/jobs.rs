//! Jobs: rollback of a failed middle step, abort, locks, history, children, blocking events.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ovm_core::driver::sim::SimOp;
use ovm_core::manager::CloneOptions;
use ovm_core::model::*;
use ovm_core::store::{EventFilter, JobFilter};
use ovm_core::{Error, ErrorKind};

#[test]
fn failed_middle_step_rolls_back_completed_steps() {
    let lab = lab();
    let files_before = lab.mgr.sim().file_count();
    let repo_before = lab.mgr.repository(lab.repo).unwrap();
    lab.mgr.sim().set_delay(SimOp::Storage, Duration::from_millis(200));
    let job = lab
        .mgr
        .clone_template(lab.template, "web", CloneOptions { pool: Some(lab.pool), ..Default::default() })
        .unwrap();
    // Wait until the first disk is cloned, then arm the failure for the next storage call.
    let t0 = Instant::now();
    while !job.info().steps_done.contains(&"clone disk 1".to_string()) {
        assert!(t0.elapsed() < Duration::from_secs(10), "first step never completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    lab.mgr.sim().fail_next(SimOp::Storage, None, 1);
    let err = job.wait(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    let info = job.info();
    assert_eq!(info.state, JobState::Failed);
    assert_eq!(info.steps_done, vec!["clone disk 1"]);
    assert_eq!(info.steps_undone, vec!["clone disk 2", "clone disk 1"]);
    // Nothing of the clone is left: no VM, no disk record, no file, no space used.
    assert!(lab.mgr.vm_by_name("web").is_err());
    assert_eq!(lab.mgr.list::<VirtualDisk>(|d| d.name.starts_with("web")).len(), 0);
    assert_eq!(lab.mgr.sim().file_count(), files_before);
    assert_eq!(lab.mgr.repository(lab.repo).unwrap().used_bytes, repo_before.used_bytes);
    // The lock is released: the same template clones fine now.
    lab.mgr.sim().set_delay(SimOp::Storage, Duration::ZERO);
    // A failed job raised an Error event on its target, which blocks the next job on it.
    let err = lab.mgr.clone_template(
        lab.template,
        "web",
        CloneOptions { pool: Some(lab.pool), ..Default::default() },
    );
    let ev = match err {
        Err(Error::UnacknowledgedEvents { event, .. }) => event,
        other => panic!("expected UnacknowledgedEvents, got {other:?}"),
    };
    ok(lab.mgr.acknowledge_event(ev.parse().unwrap()));
    ok(lab.mgr.clone_template(
        lab.template,
        "web",
        CloneOptions { pool: Some(lab.pool), ..Default::default() },
    ));
    assert_eq!(lab.mgr.list::<VirtualDisk>(|d| d.name.starts_with("web")).len(), 2);
}

#[test]
fn unacknowledged_error_events_block_until_acknowledged() {
    let lab = lab();
    let vm = lab.vm("v");
    let r = ObjectRef::new(ObjectKind::Vm, vm);
    let warn = lab.mgr.raise_event(r, Severity::Warning, "test.warning", "just a warning").unwrap();
    ok(lab.mgr.start_vm(vm)); // Warnings do not block.
    let e = lab.mgr.raise_event(r, Severity::Critical, "test.critical", "disk on fire").unwrap();
    let err = lab.mgr.stop_vm(vm).unwrap_err();
    assert!(matches!(&err, Error::UnacknowledgedEvents { event, .. } if *event == e.id.to_string()), "{err}");
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running);
    ok(lab.mgr.acknowledge_event(e.id));
    assert!(lab.mgr.event(e.id).unwrap().acknowledged.is_some());
    assert_eq!(lab.mgr.acknowledge_event(e.id).unwrap_err().kind(), ErrorKind::InvalidState);
    ok(lab.mgr.stop_vm(vm));
    let unacked = lab
        .mgr
        .events(&EventFilter { object: Some(vm.0), acknowledged: Some(false), ..Default::default() })
        .unwrap();
    assert_eq!(unacked.iter().map(|e| e.id).collect::<Vec<_>>(), vec![warn.id]);
    ok(lab.mgr.acknowledge_all(r));
    assert!(lab
        .mgr
        .events(&EventFilter { object: Some(vm.0), acknowledged: Some(false), ..Default::default() })
        .unwrap()
        .is_empty());
    let crit =
        lab.mgr.events(&EventFilter { min_severity: Some(Severity::Error), ..Default::default() }).unwrap();
    assert_eq!(crit.len(), 1);
}

#[test]
fn conflicting_operation_gets_operation_in_progress() {
    let lab = lab();
    let vm = lab.vm("busy");
    lab.mgr.sim().set_delay(SimOp::Create, Duration::from_millis(400));
    let start = lab.mgr.start_vm(vm).unwrap();
    let err = lab.mgr.edit_vm(vm, |v| v.description = "x".into()).unwrap_err();
    match &err {
        Error::OperationInProgress { object, job } => {
            assert_eq!(object.id, vm.0);
            assert_eq!(*job, start.id().to_string());
        }
        other => panic!("expected OperationInProgress, got {other:?}"),
    }
    assert_eq!(lab.mgr.start_vm(vm).unwrap_err().kind(), ErrorKind::OperationInProgress);
    start.wait(WAIT).unwrap();
    ok(lab.mgr.edit_vm(vm, |v| v.description = "x".into()));
}

#[test]
fn abort_stops_a_job_and_undoes_its_steps() {
    let lab = lab();
    let vm = lab.vm("ab");
    lab.mgr.sim().set_delay(SimOp::Storage, Duration::from_millis(300));
    let files = lab.mgr.sim().file_count();
    let job = lab
        .mgr
        .clone_template(lab.template, "clone-ab", CloneOptions { pool: Some(lab.pool), ..Default::default() })
        .unwrap();
    let t0 = Instant::now();
    while job.info().steps_done.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    job.abort().unwrap();
    let err = job.wait(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Aborted);
    let info = job.info();
    assert_eq!(info.state, JobState::Aborted);
    assert!(info.abort_requested);
    assert!(!info.steps_undone.is_empty());
    assert_eq!(lab.mgr.sim().file_count(), files);
    assert!(lab.mgr.vm_by_name("clone-ab").is_err());
    assert_eq!(job.abort().unwrap_err().kind(), ErrorKind::InvalidState);
    // Aborted jobs raise no blocking event: the template is usable at once.
    lab.mgr.sim().set_delay(SimOp::Storage, Duration::ZERO);
    ok(lab.mgr.clone_template(
        lab.template,
        "clone-ab",
        CloneOptions { pool: Some(lab.pool), ..Default::default() },
    ));
    let _ = vm;
}

#[test]
fn failed_start_rolls_back_placement() {
    let lab = lab();
    let vm = lab.vm("nostart");
    lab.mgr.sim().fail_next(SimOp::Create, None, 1);
    let job = lab.mgr.start_vm(vm).unwrap();
    let info = job.wait_done(WAIT).unwrap();
    assert_eq!(info.state, JobState::Failed);
    assert_eq!(info.steps_done, vec!["place"]);
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!(v.power_state, PowerState::Stopped);
    assert_eq!(v.server, None, "placement undone");
}

#[test]
fn history_queries_and_waiting() {
    let lab = lab();
    let vm = lab.vm("h");
    ok(lab.mgr.start_vm(vm));
    ok(lab.mgr.stop_vm(vm));
    let by_vm = lab.mgr.jobs(&JobFilter { object: Some(vm.0), ..Default::default() }).unwrap();
    let kinds: Vec<&str> = by_vm.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(kinds, vec!["StopVm", "StartVm", "CreateVm"]);
    let latest = lab.mgr.jobs(&JobFilter { limit: Some(2), ..Default::default() }).unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0].kind, "StopVm");
    let completed =
        lab.mgr.jobs(&JobFilter { states: vec![JobState::Completed], ..Default::default() }).unwrap();
    assert!(completed.iter().all(|j| j.state == JobState::Completed));
    let failed = lab.mgr.jobs(&JobFilter { states: vec![JobState::Failed], ..Default::default() }).unwrap();
    assert!(failed.is_empty());
    let t = by_vm[0].created;
    let range =
        lab.mgr.jobs(&JobFilter { since: Some(t), until: Some(t + 1), ..Default::default() }).unwrap();
    assert!(range.iter().any(|j| j.id == by_vm[0].id));
    // A historical job handle reports the stored record.
    let h = lab.mgr.job(by_vm[0].id).unwrap();
    assert_eq!(h.wait(Some(Duration::ZERO)).unwrap().state, JobState::Completed);
    assert_eq!(lab.mgr.job(JobId::new()).unwrap_err().kind(), ErrorKind::NotFound);
    // A wait that times out says so.
    lab.mgr.sim().set_delay(SimOp::Create, Duration::from_millis(300));
    let slow = lab.mgr.start_vm(vm).unwrap();
    assert_eq!(slow.wait(Some(Duration::from_millis(10))).unwrap_err().kind(), ErrorKind::Timeout);
    slow.wait(WAIT).unwrap();
}

#[test]
fn maintenance_mode_migrates_vms_as_child_jobs() {
    let lab = lab();
    let a = lab.running_vm("a");
    let b = lab.running_vm("b");
    let on_s1: Vec<VmId> =
        [a, b].into_iter().filter(|v| lab.mgr.vm(*v).unwrap().server == Some(lab.s1)).collect();
    let job = lab.mgr.set_maintenance_mode(lab.s1, true).unwrap();
    let info = job.wait(WAIT).unwrap();
    assert_eq!(info.children.len(), on_s1.len());
    for c in &info.children {
        let child = lab.mgr.job(*c).unwrap().info();
        assert_eq!(child.parent, Some(info.id));
        assert_eq!(child.kind, "MigrateVm");
        assert_eq!(child.state, JobState::Completed);
    }
    for v in [a, b] {
        assert_eq!(lab.mgr.vm(v).unwrap().server, Some(lab.s2));
        assert_eq!(lab.mgr.vm(v).unwrap().power_state, PowerState::Running);
    }
    assert!(lab.mgr.server(lab.s1).unwrap().maintenance_mode);
    // Nothing starts or migrates onto a server in maintenance.
    assert_eq!(lab.mgr.migrate_vm(a, lab.s1).unwrap_err().kind(), ErrorKind::InvalidState);
    let c = lab.vm("c");
    ok(lab.mgr.start_vm(c));
    assert_eq!(lab.mgr.vm(c).unwrap().server, Some(lab.s2));
    ok(lab.mgr.set_maintenance_mode(lab.s1, false));
}

#[test]
fn closed_manager_refuses_jobs() {
    let lab = lab();
    lab.mgr.close(Duration::from_secs(5)).unwrap();
    assert_eq!(
        lab.mgr.create_vm(ovm_core::manager::VmSpec::new("x", VmConfig::default())).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[test]
fn jobs_events_and_changes_are_dated_by_the_managers_clock() {
    let clock = ovm_core::clock::SimClock::new(1_700_000_000_000);
    let mgr = ovm_core::Manager::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .recurring_jobs(false)
        .open()
        .unwrap();
    let first = ok(mgr.create_pool(ovm_core::manager::PoolSpec::new("p1")));
    assert_eq!(
        (first.created, first.started, first.finished),
        (1_700_000_000_000, Some(1_700_000_000_000), Some(1_700_000_000_000))
    );
    clock.advance(std::time::Duration::from_secs(3600));
    let second = ok(mgr.create_pool(ovm_core::manager::PoolSpec::new("p2")));
    assert_eq!(second.created, 1_700_003_600_000);
    let (changes, _) = mgr.events_since(0).unwrap();
    assert!(changes.iter().all(|c| c.at == 1_700_000_000_000 || c.at == 1_700_003_600_000), "{changes:?}");
    assert!(changes.iter().any(|c| c.at == 1_700_003_600_000));
    assert_eq!(mgr.now(), 1_700_003_600_000);
}
