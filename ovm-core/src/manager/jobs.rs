//! The job engine: every mutating call is a job made of steps with undo records.
//!
//! A job locks its target objects when it is submitted (a second job on a locked object fails at
//! once with [`Error::OperationInProgress`]). Its steps run in order on a worker thread. Each step
//! writes inventory changes in transactions that also append the undo records to the job's journal,
//! so a failure, an abort or a crash of the process rolls back exactly what was done. Effects on
//! servers (a started domain, a copied file) are journaled *before* they are made, and their undo
//! is idempotent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{lock, revert_object, JobJournal, Manager, State};
use crate::driver::ServerConnection;
use crate::job::Undo;
use crate::model::*;
use crate::store::{Batch, ObjectWrite};
use crate::{Error, Result};

type StepFn = Box<dyn FnOnce(&StepCtx<'_>) -> Result<()> + Send>;

/// One step of a job.
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) run: StepFn,
}

/// What a job is before it is submitted.
pub(crate) struct JobSpec {
    pub(crate) kind: String,
    pub(crate) summary: String,
    pub(crate) targets: Vec<ObjectRef>,
    pub(crate) steps: Vec<Step>,
    pub(crate) parent: Option<JobId>,
    /// Whether unacknowledged Error/Critical events on the targets block the job.
    pub(crate) blockable: bool,
}

impl JobSpec {
    pub(crate) fn new(kind: &str, summary: &str, targets: Vec<ObjectRef>) -> Self {
        JobSpec {
            kind: kind.to_owned(),
            summary: summary.to_owned(),
            targets,
            steps: Vec::new(),
            parent: None,
            blockable: true,
        }
    }
    pub(crate) fn step(
        mut self,
        name: &str,
        f: impl FnOnce(&StepCtx<'_>) -> Result<()> + Send + 'static,
    ) -> Self {
        self.steps.push(Step { name: name.to_owned(), run: Box::new(f) });
        self
    }
    pub(crate) fn parent(mut self, p: Option<JobId>) -> Self {
        self.parent = p;
        self
    }
    pub(crate) fn unblockable(mut self) -> Self {
        self.blockable = false;
        self
    }
}

/// Live state of a running job shared between the engine and handles.
#[derive(Debug)]
pub(crate) struct JobCell {
    pub(crate) record: Mutex<Job>,
    pub(crate) done: Condvar,
    pub(crate) watch: watch::Sender<JobState>,
    pub(crate) abort: AtomicBool,
}

impl JobCell {
    fn new(job: Job) -> Arc<Self> {
        let st = job.state;
        Arc::new(JobCell {
            record: Mutex::new(job),
            done: Condvar::new(),
            watch: watch::channel(st).0,
            abort: AtomicBool::new(false),
        })
    }
}

/// A handle on a job: its id, a snapshot of its record, waiting and abort.
#[derive(Debug, Clone)]
pub struct JobHandle {
    pub(crate) id: JobId,
    pub(crate) cell: Arc<JobCell>,
    pub(crate) mgr: Manager,
}

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The current record.
    pub fn info(&self) -> Job {
        lock(&self.cell.record).clone()
    }

    /// The current state.
    pub fn state(&self) -> JobState {
        lock(&self.cell.record).state
    }

    /// Wait until the job finishes (at most `timeout`; `None` waits forever). Returns its record if it
    /// completed, or the job's error if it failed or was aborted. [`Error::Timeout`] if still running.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Job> {
        let job = self.wait_done(timeout)?;
        match (job.state, &job.error) {
            (JobState::Completed, _) => Ok(job),
            (_, Some(e)) => Err(e.clone()),
            (s, None) => Err(Error::Internal { message: format!("job ended {s} without an error") }),
        }
    }

    /// Wait until the job finishes and return its record whatever the outcome.
    pub fn wait_done(&self, timeout: Option<Duration>) -> Result<Job> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut rec = lock(&self.cell.record);
        while !rec.state.is_terminal() {
            match deadline {
                None => rec = self.cell.done.wait(rec).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout {
                            what: format!("job {}", self.id),
                            millis: timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
                        });
                    }
                    rec = self
                        .cell
                        .done
                        .wait_timeout(rec, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
        }
        Ok(rec.clone())
    }

    /// Wait asynchronously until the job finishes; like [`JobHandle::wait`].
    pub async fn wait_async(&self) -> Result<Job> {
        let mut rx = self.cell.watch.subscribe();
        loop {
            if rx.borrow_and_update().is_terminal() {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        self.wait(Some(Duration::from_secs(0))).or_else(|e| match e {
            Error::Timeout { .. } => self.wait(None),
            e => Err(e),
        })
    }

    /// Request an abort. A queued job ends at once; a running job stops before its next step and
    /// undoes the steps it completed. Aborting a finished job is an [`Error::InvalidState`].
    pub fn abort(&self) -> Result<()> {
        let rec = lock(&self.cell.record);
        if rec.state.is_terminal() {
            return Err(Error::state(
                ObjectRef::new(ObjectKind::Job, self.id),
                "Queued or Running",
                rec.state,
            ));
        }
        drop(rec);
        self.cell.abort.store(true, Ordering::SeqCst);
        self.mgr.persist_job(&self.cell, None, |j| {
            j.abort_requested = true;
        })
    }
}

/// A transaction on the inventory inside a step.
pub(crate) struct Tx<'a> {
    pub(crate) inv: &'a mut Inventory,
    pub(crate) batch: Batch,
    pub(crate) undo: Vec<Undo>,
    pub(crate) new_events: Vec<Event>,
    /// The time on the manager's clock when the transaction began.
    pub(crate) now: Timestamp,
}

impl<'a> Tx<'a> {
    /// A transaction on `inv` begun at `now`.
    pub(crate) fn new(inv: &'a mut Inventory, now: Timestamp) -> Tx<'a> {
        Tx { inv, batch: Batch::default(), undo: Vec::new(), new_events: Vec::new(), now }
    }

    /// Insert or replace an object (all rules checked).
    pub(crate) fn put(&mut self, obj: Object) -> Result<()> {
        let r = obj.object_ref();
        let before = self.inv.put(obj.clone())?;
        let op = if before.is_some() { ChangeOp::Modified } else { ChangeOp::Added };
        self.undo.push(Undo::RevertObject { object: r, before: before.map(Box::new) });
        self.batch.objects.push(ObjectWrite::Put(obj));
        self.batch.changes.push((r, op));
        Ok(())
    }

    /// Edit an object of type `T` in place (all rules checked).
    pub(crate) fn edit<T: InInventory>(
        &mut self,
        id: impl Into<uuid::Uuid>,
        f: impl FnOnce(&mut T),
    ) -> Result<T> {
        let mut o = (**self.inv.get::<T>(id)?).clone();
        f(&mut o);
        self.put(o.clone().into_object())?;
        Ok(o)
    }

    /// Remove an object nothing refers to.
    pub(crate) fn remove(&mut self, r: ObjectRef) -> Result<Object> {
        let old = self.inv.remove(r)?;
        self.undo.push(Undo::RevertObject { object: r, before: Some(Box::new(old.clone())) });
        self.batch.objects.push(ObjectWrite::Remove(r));
        self.batch.changes.push((r, ChangeOp::Removed));
        Ok(old)
    }

    /// Raise an event in this transaction.
    pub(crate) fn event(&mut self, object: ObjectRef, severity: Severity, event_type: &str, summary: String) {
        let e = Event {
            id: EventId::new(),
            object,
            severity,
            event_type: event_type.to_owned(),
            summary,
            created: self.now,
            acknowledged: None,
        };
        self.batch.changes.push((ObjectRef::new(ObjectKind::Event, e.id), ChangeOp::Added));
        self.batch.events.push(e.clone());
        self.new_events.push(e);
    }

    /// Set a meta value.
    pub(crate) fn meta(&mut self, key: &str, value: String) {
        self.batch.meta.push((key.to_owned(), value));
    }

    /// Put the inventory back as it was before the transaction; nothing was written.
    pub(crate) fn revert(self) {
        let mut scratch = Batch::default();
        for u in self.undo.into_iter().rev() {
            if let Undo::RevertObject { object, before } = u {
                revert_object(self.inv, &mut scratch, object, before);
            }
        }
    }
}

/// What a step sees.
pub(crate) struct StepCtx<'a> {
    pub(crate) mgr: &'a Manager,
    pub(crate) cell: &'a Arc<JobCell>,
    pub(crate) journal: &'a Mutex<JobJournal>,
}

impl StepCtx<'_> {
    /// Run `f` on the inventory and commit its writes together with their undo records.
    pub(crate) fn tx<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut guard = self.mgr.state();
        let st = &mut *guard;
        let mut tx = Tx::new(&mut st.inv, self.mgr.now());
        let out = match f(&mut tx) {
            Ok(v) => v,
            Err(e) => {
                tx.revert();
                return Err(e);
            }
        };
        let mut journal = lock(self.journal);
        let saved_len = journal.steps.last().map(|s| s.1.len()).unwrap_or(0);
        if let Some(last) = journal.steps.last_mut() {
            last.1.extend(tx.undo.iter().cloned());
        }
        let mut batch = std::mem::take(&mut tx.batch);
        let rec = lock(&self.cell.record).clone();
        batch.jobs.push((rec, Some(journal.clone())));
        let events = std::mem::take(&mut tx.new_events);
        if let Err(e) = self.mgr.enqueue(batch) {
            if let Some(last) = journal.steps.last_mut() {
                last.1.truncate(saved_len);
            }
            tx.revert();
            return Err(e);
        }
        for e in events.into_iter().filter(|e| e.severity.blocks()) {
            st.blocking_events.entry(e.object.id).or_default().push((e.id, e.severity));
        }
        drop(journal);
        drop(guard);
        // Not flushed here: the batch is committed, in order, with the job's next durability point
        // (journaling a server effect in `will_do`, or the job's end), so a crash leaves a prefix of
        // the job's writes together with their undo records, and nothing is reported before then.
        Ok(out)
    }

    /// The connection to a server.
    pub(crate) fn hv(&self, server: ServerId) -> Result<Arc<dyn ServerConnection>> {
        self.mgr.hypervisor(server)
    }

    /// Journal the undo of an effect on a server *before* making the effect.
    pub(crate) fn will_do(&self, undo: Undo) -> Result<()> {
        let mut journal = lock(self.journal);
        if let Some(last) = journal.steps.last_mut() {
            last.1.push(undo);
        }
        let mut batch = Batch::default();
        batch.jobs.push((lock(&self.cell.record).clone(), Some(journal.clone())));
        drop(journal);
        let st = self.mgr.state();
        self.mgr.write(st, batch)
    }

    /// Report progress within the current step.
    pub(crate) fn message(&self, msg: impl Into<String>) {
        lock(&self.cell.record).message = msg.into();
    }

    /// Record the job's result object.
    pub(crate) fn set_result(&self, r: ObjectRef) {
        lock(&self.cell.record).result = Some(r);
    }

    /// This job's id.
    pub(crate) fn job_id(&self) -> JobId {
        lock(&self.cell.record).id
    }

    /// Whether an abort was requested.
    pub(crate) fn aborting(&self) -> bool {
        self.cell.abort.load(Ordering::SeqCst)
    }

    /// Submit a child job and wait for it; this job shows ChildQueued/ChildRunning meanwhile.
    pub(crate) fn run_child(&self, child: Result<JobHandle>) -> Result<Job> {
        let child = child?;
        let cid = child.id;
        self.mgr.persist_job(self.cell, None, |j| {
            j.children.push(cid);
            j.state = JobState::ChildRunning;
        })?;
        let res = child.wait(None);
        self.mgr.persist_job(self.cell, None, |j| j.state = JobState::Running)?;
        res
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
        let job = Job {
            id: JobId::new(),
            kind: spec.kind,
            summary: spec.summary,
            targets: spec.targets.clone(),
            state: JobState::Queued,
            progress: 0.0,
            message: String::new(),
            created: self.now(),
            started: None,
            finished: None,
            result: None,
            error: None,
            parent: spec.parent,
            children: Vec::new(),
            steps_done: Vec::new(),
            steps_undone: Vec::new(),
            abort_requested: false,
            recovery: None,
        };
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

    /// A handle on any job, live or historical.
    pub fn job(&self, id: JobId) -> Result<JobHandle> {
        let st = self.state();
        if let Some(c) = st.live.get(&id) {
            return Ok(JobHandle { id, cell: c.clone(), mgr: self.clone() });
        }
        drop(st);
        let job = self.db().job(id)?.ok_or_else(|| Error::not_found(ObjectKind::Job, id))?;
        Ok(JobHandle { id, cell: JobCell::new(job), mgr: self.clone() })
    }

    /// Job history, newest first.
    pub fn jobs(&self, filter: &crate::store::JobFilter) -> Result<Vec<Job>> {
        self.db().jobs(filter)
    }
}

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
        let steps = lock(journal).steps.clone();
        for (name, undos) in steps.iter().rev() {
            for u in undos.iter().rev() {
                match u {
                    Undo::RevertObject { object, before } => {
                        let mut st = mgr.state();
                        revert_object(&mut st.inv, &mut batch, *object, before.clone());
                    }
                    other => {
                        if let Err(e) = undo_on_server(mgr, other) {
                            undo_errors.push(format!("{name}: {e}"));
                        }
                    }
                }
            }
            undone.push(name.clone());
        }
    }
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
    st.live.remove(&rec.id);
    if st.live.is_empty() {
        mgr.inner.jobs_idle.notify_all();
    }
    drop(st);
    let mut rec = rec;
    if let Err(e) = seq.and_then(|seq| mgr.flush(seq)) {
        // The database refused the final write: the in-memory record still tells the truth.
        rec.message.push_str(&format!(" (not persisted: {e})"));
    }
    let mut guard = lock(&cell.record);
    *guard = rec;
    cell.watch.send_replace(state);
    cell.done.notify_all();
}

/// Undo an effect on a server. Idempotent: an effect that is already gone is not an error.
pub(crate) fn undo_on_server(mgr: &Manager, u: &Undo) -> Result<()> {
    match u {
        Undo::RevertObject { .. } => Ok(()),
        Undo::Domain(d) => super::vms::undo_domain(mgr, d),
        Undo::Storage(s) => super::storage::undo_storage(mgr, s),
        Undo::Server(s) => super::servers::undo_server(mgr, s),
    }
}
