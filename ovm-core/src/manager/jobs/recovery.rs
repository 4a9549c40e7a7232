//! Recovery at open: jobs the last stop interrupted are rolled back (or finalized if every step had
//! finished), and the effects on servers they left behind are undone once servers are reconnected.

use super::revert_object;
use crate::job::Undo;
use crate::manager::Manager;
use crate::model::*;
use crate::store::Batch;
use crate::{Error, Result};

/// Meta key prefix of the server undo records an interrupted job left (`pending_undo:JOB`).
const PENDING_UNDO: &str = "pending_undo:";

impl Manager {
    /// Roll back or finalize every job that was unfinished when the manager last stopped.
    pub(crate) fn recover_jobs(&self) -> Result<()> {
        let unfinished = self.db().unfinished_jobs()?;
        for (mut job, journal) in unfinished {
            let mut batch = Batch::default();
            if journal.all_steps_done() {
                job.state = JobState::Completed;
                job.progress = 1.0;
                job.recovery = Some(Recovery::Finalized);
                job.message = "finalized after a manager restart".into();
            } else {
                let mut st = self.state();
                // Effects on servers are undone later, once servers are reconnected.
                for (_, u) in journal.rollback_order() {
                    if let Undo::RevertObject { object, before } = u {
                        revert_object(&mut st.inv, &mut batch, *object, before.clone());
                    }
                }
                drop(st);
                job.steps_undone = journal.steps_undone();
                job.state = JobState::Failed;
                job.error = Some(Error::Interrupted { job: job.id.to_string() });
                job.recovery = Some(Recovery::RolledBack);
                job.message = "rolled back after a manager restart".into();
                let server_undos: Vec<Undo> = journal.server_effects().cloned().collect();
                if !server_undos.is_empty() {
                    batch
                        .meta
                        .push((format!("{PENDING_UNDO}{}", job.id), serde_json::to_string(&server_undos)?));
                }
            }
            job.finished = Some(self.now());
            batch.changes.push((ObjectRef::new(ObjectKind::Job, job.id), ChangeOp::Modified));
            batch.jobs.push((job, Some(journal)));
            let st = self.state();
            self.write(st, batch)?;
        }
        Ok(())
    }

    /// Undo the effects on servers of jobs interrupted by the last stop ([`Manager::recover_jobs`]
    /// keeps them under `pending_undo:JOB`); called once servers are reconnected.
    pub(crate) fn run_pending_undos(&self) {
        // Server-side undo records left by jobs interrupted by the last stop.
        let pending: Vec<(String, Vec<Undo>)> = {
            let db = self.db();
            let keys: Vec<String> = db
                .jobs(&crate::store::JobFilter { states: vec![JobState::Failed], ..Default::default() })
                .unwrap_or_default()
                .into_iter()
                .filter(|j| j.recovery == Some(Recovery::RolledBack))
                .map(|j| format!("{PENDING_UNDO}{}", j.id))
                .collect();
            keys.into_iter()
                .filter_map(|k| {
                    db.meta(&k).ok().flatten().and_then(|v| serde_json::from_str(&v).ok()).map(|u| (k, u))
                })
                .collect()
        };
        for (key, undos) in pending {
            for u in undos {
                let _ = self.undo_on_server(&u);
            }
            let st = self.state();
            let mut b = Batch::default();
            b.meta.push((key, "[]".into()));
            let _ = self.write(st, b);
        }
    }
}
