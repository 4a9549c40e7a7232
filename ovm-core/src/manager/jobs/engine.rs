//! Submitting a job, running its steps on a worker thread, and finishing it: undoing what a failed
//! or aborted job did, recording the outcome and releasing its locks.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{revert_object, JobCell, JobHandle, JobSpec, Step, StepCtx};
use crate::job::Undo;
use crate::manager::{lock, JobJournal, Manager, State};
use crate::model::*;
use crate::store::Batch;
use crate::{Error, Result};

fn check_blocking_events(st: &State, targets: &[ObjectRef]) -> Result<()> {
    for t in targets {
        if let Some((e, sev)) = st.blocking_events.get(&t.id).and_then(|v| v.first()) {
            return Err(Error::UnacknowledgedEvents {
                object: *t,
                event: e.to_string(),
                severity: sev.to_string(),
            });
        }
    }
    Ok(())
}

fn run(mgr: Manager, cell: Arc<JobCell>, steps: Vec<Step>, targets: Vec<ObjectRef>) {
    let total = steps.len();
    let journal = Mutex::new(JobJournal { total, steps: Vec::new(), done: 0 });
    let mut failure: Option<Error> = None;
    for (i, step) in steps.into_iter().enumerate() {
        if cell.abort.load(Ordering::SeqCst) {
            failure = Some(Error::Aborted { job: lock(&cell.record).id.to_string() });
            break;
        }
        lock(&journal).steps.push((step.name.clone(), Vec::new()));
        {
            let mut r = lock(&cell.record);
            if r.state == JobState::Queued {
                r.state = JobState::Running;
                r.started = Some(mgr.now());
                cell.watch.send_replace(JobState::Running);
            }
            r.message = step.name.clone();
        }
        let ctx = StepCtx { mgr: &mgr, cell: &cell, journal: &journal };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (step.run)(&ctx)))
            .unwrap_or_else(|_| Err(Error::Internal { message: format!("step {:?} panicked", step.name) }));
        match outcome {
            Ok(()) => {
                let mut j = lock(&journal);
                j.done = i + 1;
                let mut r = lock(&cell.record);
                r.steps_done.push(step.name.clone());
                r.progress = (i + 1) as f32 / total as f32;
                let last = i + 1 == total;
                if !last {
                    let mut batch = Batch::default();
                    batch.changes.push((ObjectRef::new(ObjectKind::Job, r.id), ChangeOp::Modified));
                    batch.jobs.push((r.clone(), Some(j.clone())));
                    drop(r);
                    drop(j);
                    let st = mgr.state();
                    // Committed with the job's next durability point (see StepCtx::tx).
                    if let Err(e) = mgr.enqueue(batch) {
                        failure = Some(e);
                        break;
                    }
                    drop(st);
                    cell.watch.send_replace(JobState::Running);
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    finish(&mgr, &cell, &journal, failure, &targets);
}

/// Undo every journaled step (in reverse), then record the outcome and release the locks.
fn finish(
    mgr: &Manager,
    cell: &Arc<JobCell>,
    journal: &Mutex<JobJournal>,
    failure: Option<Error>,
    targets: &[ObjectRef],
) {
    let mut batch = Batch::default();
    let mut undone = Vec::new();
    let mut undo_errors = Vec::new();
    if failure.is_some() {
        let journal = lock(journal).clone();
        for (name, u) in journal.rollback_order() {
            match u {
                Undo::RevertObject { object, before } => {
                    let mut st = mgr.state();
                    revert_object(&mut st.inv, &mut batch, *object, before.clone());
                }
                other => {
                    if let Err(e) = mgr.undo_on_server(other) {
                        undo_errors.push(format!("{name}: {e}"));
                    }
                }
            }
        }
        undone = journal.steps_undone();
    }
    // The configuration files of what the job wrote follow the inventory (see `storage::config_files`).
    let touched = std::mem::take(&mut *lock(&cell.touched));
    let file_problems = mgr.sync_config_files(&touched);
    // The final record is published to waiters only after it is stored and the locks are released,
    // so a caller that saw the job end can immediately operate on its targets.
    let rec = {
        let mut r = lock(&cell.record).clone();
        r.finished = Some(mgr.now());
        r.steps_undone = undone;
        match &failure {
            None => {
                r.state = JobState::Completed;
                r.progress = 1.0;
                r.message = "completed".into();
                if !file_problems.is_empty() {
                    r.message = format!("completed; {}", file_problems.join("; "));
                }
            }
            Some(e) => {
                r.state =
                    if matches!(e, Error::Aborted { .. }) { JobState::Aborted } else { JobState::Failed };
                r.error = Some(e.clone());
                r.message = if undo_errors.is_empty() {
                    format!("{e}; rolled back")
                } else {
                    format!("{e}; rollback incomplete: {}", undo_errors.join("; "))
                };
            }
        }
        r.clone()
    };
    let state = rec.state;
    let job_ref = ObjectRef::new(ObjectKind::Job, rec.id);
    batch.changes.push((job_ref, ChangeOp::Modified));
    // A completed job's journal is no longer needed (recovery only reads unfinished jobs), so it is
    // not rewritten; a failed job keeps its journal with what was undone, for inspection.
    let journal = if failure.is_some() { Some(lock(journal).clone()) } else { None };
    batch.jobs.push((rec.clone(), journal));
    if let Some(e) = &failure {
        if !matches!(e, Error::Aborted { .. }) {
            // A failed job raises an Error event on its first target that still exists (as Oracle VM does).
            let existing = {
                let st = mgr.state();
                targets.iter().copied().find(|t| st.inv.contains(*t))
            };
            if let Some(t) = existing.as_ref() {
                let ev = Event {
                    id: EventId::new(),
                    object: *t,
                    severity: Severity::Error,
                    event_type: format!("job.failed.{}", rec.kind),
                    summary: format!("{} failed: {e}", rec.summary),
                    created: mgr.now(),
                    acknowledged: None,
                };
                batch.changes.push((ObjectRef::new(ObjectKind::Event, ev.id), ChangeOp::Added));
                batch.events.push(ev);
            }
        }
    }
    let mut st = mgr.state();
    let events = batch.events.clone();
    let seq = mgr.enqueue(batch);
    for e in events {
        st.blocking_events.entry(e.object.id).or_default().push((e.id, e.severity));
    }
    for t in targets {
        if st.locks.get(&t.id) == Some(&rec.id) {
            st.locks.remove(&t.id);
        }
    }
    drop(st);
    let id = rec.id;
    let mut rec = rec;
    if let Err(e) = seq.and_then(|seq| mgr.flush(seq)) {
        // The database refused the final write: the in-memory record still tells the truth.
        rec.message.push_str(&format!(" (not persisted: {e})"));
    }
    {
        let mut guard = lock(&cell.record);
        *guard = rec;
        cell.watch.send_replace(state);
        cell.done.notify_all();
    }
    // The job leaves the live table only once its outcome is in the database and in its cell: a
    // lookup by id in between finds the cell, never a missing or stale record.
    let mut st = mgr.state();
    st.live.remove(&id);
    if st.live.is_empty() {
        mgr.inner.jobs_idle.notify_all();
    }
}

impl Manager {
    /// Persist a change to a live job's record.
    pub(crate) fn persist_job(
        &self,
        cell: &JobCell,
        journal: Option<JobJournal>,
        f: impl FnOnce(&mut Job),
    ) -> Result<()> {
        let rec = {
            let mut r = lock(&cell.record);
            f(&mut r);
            r.clone()
        };
        let st_val = rec.state;
        let mut batch = Batch::default();
        batch.changes.push((ObjectRef::new(ObjectKind::Job, rec.id), ChangeOp::Modified));
        batch.jobs.push((rec, journal));
        let st = self.state();
        self.write(st, batch)?;
        cell.watch.send_replace(st_val);
        Ok(())
    }

    /// Check admission (closed, blocking events, locks), record the job as Queued, start it.
    pub(crate) fn submit(&self, spec: JobSpec) -> Result<JobHandle> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let mut job = Job::queued(spec.kind, spec.summary, spec.targets.clone(), self.now());
        job.parent = spec.parent;
        let id = job.id;
        let cell = JobCell::new(job.clone());
        {
            let mut st = self.state();
            if spec.blockable {
                check_blocking_events(&st, &spec.targets)?;
            }
            for t in &spec.targets {
                if let Some(holder) = st.locks.get(&t.id) {
                    return Err(Error::OperationInProgress { object: *t, job: holder.to_string() });
                }
            }
            let mut batch = Batch::default();
            batch.changes.push((ObjectRef::new(ObjectKind::Job, id), ChangeOp::Added));
            let journal = JobJournal { total: spec.steps.len(), steps: Vec::new(), done: 0 };
            batch.jobs.push((job, Some(journal)));
            // The Queued record is committed with the job's first write (group commit): a job is
            // durable before it changes anything, and its outcome before it is reported.
            self.enqueue(batch)?;
            for t in &spec.targets {
                st.locks.insert(t.id, id);
            }
            st.live.insert(id, cell.clone());
        }
        let mgr = self.clone();
        let c = cell.clone();
        let steps = spec.steps;
        let targets = spec.targets;
        self.inner.handle.spawn_blocking(move || run(mgr, c, steps, targets));
        Ok(JobHandle { id, cell, mgr: self.clone() })
    }

    /// Fail with [`Error::OperationInProgress`] if a job holds `object`.
    pub(crate) fn ensure_unlocked(&self, object: ObjectRef) -> Result<()> {
        match self.state().locks.get(&object.id) {
            Some(job) => Err(Error::OperationInProgress { object, job: job.to_string() }),
            None => Ok(()),
        }
    }
}
