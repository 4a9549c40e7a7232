//! The job engine: every mutating call is a job made of steps with undo records.
//!
//! A job locks its target objects when it is submitted (a second job on a locked object fails at
//! once with [`Error::OperationInProgress`]). Its steps run in order on a worker thread. Each step
//! writes inventory changes in transactions that also append the undo records to the job's journal,
//! so a failure, an abort or a crash of the process rolls back exactly what was done. Effects on
//! servers (a started domain, a copied file) are journaled *before* they are made, and their undo
//! is idempotent: each subsystem undoes its own effects (`vms::undo_domain`, `storage::undo_storage`,
//! `servers::undo_server`).
//!
//! [`engine`] submits and runs jobs, [`ctx`] is what a step sees (its context and transactions),
//! [`handle`] is the caller's side, and [`recovery`] rolls back what the last stop interrupted.

mod ctx;
mod engine;
mod handle;
mod recovery;
#[cfg(test)]
mod tests;

pub(crate) use ctx::{StepCtx, Tx};
pub use handle::JobHandle;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::watch;

use crate::model::*;
use crate::store::{Batch, ObjectWrite};
use crate::Result;

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
    /// The objects the job's transactions wrote (their configuration files follow at its end).
    pub(crate) touched: Mutex<std::collections::BTreeSet<ObjectRef>>,
}

impl JobCell {
    fn new(job: Job) -> Arc<Self> {
        let st = job.state;
        Arc::new(JobCell {
            record: Mutex::new(job),
            done: Condvar::new(),
            watch: watch::channel(st).0,
            abort: AtomicBool::new(false),
            touched: Mutex::default(),
        })
    }
}

/// Put back an object's previous version (or remove it), recording the write and the change.
pub(crate) fn revert_object(
    inv: &mut Inventory,
    batch: &mut Batch,
    object: ObjectRef,
    before: Option<Box<Object>>,
) {
    match before {
        Some(o) => {
            let o = *o;
            inv.load(o.clone());
            batch.objects.push(ObjectWrite::Put(o));
            batch.changes.push((object, ChangeOp::Modified));
        }
        None => {
            inv_remove_unchecked(inv, object);
            batch.objects.push(ObjectWrite::Remove(object));
            batch.changes.push((object, ChangeOp::Removed));
        }
    }
}

fn inv_remove_unchecked(inv: &mut Inventory, object: ObjectRef) {
    // Restoring an earlier consistent state: references to the object were undone before it.
    let _ = inv.remove(object).or_else(|_| inv.force_remove(object));
}
