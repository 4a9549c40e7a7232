//! The caller's side of a job: [`JobHandle`], and looking jobs up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::JobCell;
use crate::manager::{lock, Manager};
use crate::model::*;
use crate::{Error, Result};

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

impl Manager {
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
