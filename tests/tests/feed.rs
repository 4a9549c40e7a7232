//! The change feed: events_since with tokens, subscriptions, EventsLost and resuming.

mod common;
use common::*;

use std::time::Duration;

use ovm_core::model::*;
use ovm_core::{Error, ErrorKind, Manager};

#[test]
fn events_since_returns_changes_after_a_token_and_resumes() {
    let lab = lab();
    let t0 = lab.mgr.current_token().unwrap();
    let vm = lab.vm("feed");
    let (changes, t1) = lab.mgr.events_since(t0).unwrap();
    assert!(t1 > t0);
    assert!(changes.windows(2).all(|w| w[0].token < w[1].token), "tokens increase");
    assert!(changes
        .iter()
        .any(|c| c.object == ObjectRef::new(ObjectKind::Vm, vm) && c.op == ChangeOp::Added));
    assert!(changes.iter().any(|c| c.object.kind == ObjectKind::Job && c.op == ChangeOp::Added));
    let (none, same) = lab.mgr.events_since(t1).unwrap();
    assert!(none.is_empty());
    assert_eq!(same, t1);
    ok(lab.mgr.start_vm(vm));
    let (more, _) = lab.mgr.events_since(t1).unwrap();
    assert!(more.iter().any(|c| c.object.id == vm.0 && c.op == ChangeOp::Modified));
    assert!(more.iter().all(|c| c.token > t1));
    ok(lab.mgr.kill_vm(vm));
    ok(lab.mgr.delete_vm(vm));
    let (last, _) = lab.mgr.events_since(t1).unwrap();
    assert!(last.iter().any(|c| c.object.id == vm.0 && c.op == ChangeOp::Removed));
}

#[test]
fn pruned_feed_reports_events_lost_with_a_resume_token() {
    let lab = lab();
    let t0 = lab.mgr.current_token().unwrap();
    lab.vm("a");
    lab.vm("b");
    lab.mgr.prune_changes(2).unwrap();
    match lab.mgr.events_since(t0) {
        Err(Error::EventsLost { resume_token }) => {
            assert_eq!(resume_token, lab.mgr.current_token().unwrap());
            let (after, _) = lab.mgr.events_since(resume_token).unwrap();
            assert!(after.is_empty());
        }
        other => panic!("expected EventsLost, got {other:?}"),
    }
}

#[test]
fn subscription_delivers_in_order_and_lag_surfaces_as_events_lost() {
    let mgr = Manager::builder().recurring_jobs(false).change_buffer(8).open().unwrap();
    let lab = lab_with(mgr, 16384);
    let mut sub = lab.mgr.subscribe(None).unwrap();
    let start = sub.token();
    let vm = lab.vm("s1");
    let first = sub.next_blocking(Duration::from_secs(5)).unwrap().expect("a change");
    assert!(first.token > start);
    // Fall far behind: many changes while not reading.
    for i in 0..20 {
        lab.vm(&format!("bulk{i}"));
    }
    let mut lost_at = None;
    for _ in 0..200 {
        match sub.next_blocking(Duration::from_millis(200)) {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(Error::EventsLost { resume_token }) => {
                lost_at = Some(resume_token);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let resume = lost_at.expect("a lagging subscriber must be told it lost events");
    // Resuming from the token replays exactly what came after it, from the database.
    let mut again = lab.mgr.subscribe(Some(resume)).unwrap();
    let mut seen = Vec::new();
    while let Some(c) = again.next_blocking(Duration::from_millis(200)).unwrap() {
        seen.push(c);
    }
    assert!(!seen.is_empty());
    assert_eq!(seen[0].token, resume + 1, "no gap after the resume token");
    assert!(seen.windows(2).all(|w| w[1].token == w[0].token + 1), "no gaps, no duplicates");
    assert_eq!(seen.last().unwrap().token, lab.mgr.current_token().unwrap());
    let _ = vm;
}

#[test]
fn lag_in_fail_mode_stays_failed_and_in_resume_mode_replays_the_gap() {
    use ovm_core::manager::LostEvents;
    let mgr = Manager::builder().recurring_jobs(false).change_buffer(8).open().unwrap();
    let lab = lab_with(mgr, 16384);
    let mut strict = lab.mgr.subscribe(None).unwrap();
    assert_eq!(strict.lost_events_mode(), LostEvents::Fail);
    let mut resuming = lab.mgr.subscribe(None).unwrap().on_lost(LostEvents::Resume);
    let start = resuming.token();
    for i in 0..20 {
        lab.vm(&format!("lag{i}"));
    }
    let end = lab.mgr.current_token().unwrap();
    // Fail: the loss is reported, and reported again: a gap is never delivered as a whole feed.
    let lost = match strict.next_blocking(Duration::from_secs(5)) {
        Err(Error::EventsLost { resume_token }) => resume_token,
        other => panic!("expected EventsLost, got {other:?}"),
    };
    assert!(matches!(
        strict.next_blocking(Duration::from_millis(50)),
        Err(Error::EventsLost { resume_token }) if resume_token == lost
    ));
    // Resume: one notice, then every change after the last one delivered, no gaps, no duplicates.
    let mut seen = Vec::new();
    let mut notices = 0;
    loop {
        match resuming.next_blocking(Duration::from_millis(200)) {
            Ok(Some(c)) => seen.push(c.token),
            Ok(None) => break,
            Err(Error::EventsLost { .. }) => notices += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(notices, 1, "one lag, one notice");
    assert_eq!(seen.first(), Some(&(start + 1)));
    assert_eq!(seen.last(), Some(&end));
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "no gaps, no duplicates: {seen:?}");
}

#[test]
fn async_subscription_and_job_wait() {
    let lab = lab();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let vm = lab.vm("async");
    rt.block_on(async {
        let mut sub = lab.mgr.subscribe(None).unwrap();
        let job = lab.mgr.start_vm(vm).unwrap();
        let done = job.wait_async().await.unwrap();
        assert_eq!(done.state, JobState::Completed);
        let c = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
        assert!(c.token > 0);
    });
    assert_eq!(
        lab.mgr
            .raise_event(ObjectRef::new(ObjectKind::Vm, VmId::new()), Severity::Info, "x", "y")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        lab.mgr.raise_event(ObjectRef::new(ObjectKind::Vm, vm), Severity::Info, " ", "y").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}
