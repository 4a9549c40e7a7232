//! What a step sees: its context ([`StepCtx`]) and the inventory transactions it writes ([`Tx`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{revert_object, JobCell, JobHandle};
use crate::driver::ServerConnection;
use crate::job::Undo;
use crate::manager::{lock, JobJournal, Manager};
use crate::model::*;
use crate::store::{Batch, ObjectWrite};
use crate::Result;

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
        let touched: Vec<ObjectRef> = batch.changes.iter().map(|(r, _)| *r).collect();
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
        lock(&self.cell.touched).extend(touched);
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

    /// Report bytes moved so far, and the total when known.
    pub(crate) fn bytes(&self, done: u64, total: Option<u64>) {
        let mut r = lock(&self.cell.record);
        r.bytes_done = done;
        r.bytes_total = total;
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

    /// Run several submitted child jobs at once and wait for all of them; each outcome is returned
    /// in the order given. All are recorded as this job's children before it waits (it shows
    /// ChildRunning meanwhile). Aborting this job aborts the children that have not finished, and
    /// still waits for them (each rolls back what it did).
    pub(crate) fn run_children(&self, children: Vec<JobHandle>) -> Result<Vec<Result<Job>>> {
        if children.is_empty() {
            return Ok(Vec::new());
        }
        self.mgr.persist_job(self.cell, None, |j| {
            j.children.extend(children.iter().map(|c| c.id));
            j.state = JobState::ChildRunning;
        })?;
        let mut aborted = false;
        let mut outcomes: Vec<Option<Result<Job>>> = children.iter().map(|_| None).collect();
        while outcomes.iter().any(Option::is_none) {
            if self.aborting() && !aborted {
                aborted = true;
                for c in children.iter().filter(|c| !c.state().is_terminal()) {
                    // A child that finished meanwhile refuses the abort; its outcome stands.
                    let _ = c.abort();
                }
            }
            for (c, out) in children.iter().zip(outcomes.iter_mut()).filter(|(_, o)| o.is_none()) {
                if c.state().is_terminal() {
                    *out = Some(c.wait(None));
                }
            }
            // Wait a little on the first child still running, then look at them all again.
            if let Some(c) = children.iter().zip(&outcomes).find(|(_, o)| o.is_none()).map(|(c, _)| c) {
                let _ = c.wait_done(Some(std::time::Duration::from_millis(20)));
            }
        }
        self.mgr.persist_job(self.cell, None, |j| j.state = JobState::Running)?;
        Ok(outcomes.into_iter().flatten().collect())
    }
}
