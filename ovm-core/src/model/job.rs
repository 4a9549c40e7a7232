//! Job records.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::{JobId, ObjectRef, Timestamp};
use crate::Error;

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum JobState {
    /// Accepted, not started.
    Queued,
    /// Running.
    Running,
    /// Waiting for a queued child job.
    ChildQueued,
    /// Waiting for a running child job.
    ChildRunning,
    /// Finished successfully.
    Completed,
    /// Failed; its completed steps were rolled back.
    Failed,
    /// Aborted; its completed steps were rolled back.
    Aborted,
}

impl JobState {
    /// Whether the job has finished.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Aborted)
    }
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "Queued",
            JobState::Running => "Running",
            JobState::ChildQueued => "ChildQueued",
            JobState::ChildRunning => "ChildRunning",
            JobState::Completed => "Completed",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
        }
    }
    /// Parse a stable name.
    pub fn from_name(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::ChildQueued,
            JobState::ChildRunning,
            JobState::Completed,
            JobState::Failed,
            JobState::Aborted,
        ]
        .into_iter()
        .find(|st| st.name() == s)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What happened to a job that was unfinished when the manager stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum Recovery {
    /// All its steps had completed; it was marked Completed at reopen.
    Finalized,
    /// Its completed steps were undone at reopen; it is Failed with `Interrupted`.
    RolledBack,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A persisted job: one mutating operation of the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Job {
    /// Id.
    pub id: JobId,
    /// Kind of operation, e.g. `StartVm`.
    pub kind: String,
    /// Human summary, e.g. `Start VM web01`.
    pub summary: String,
    /// Objects the job acts on (and locks).
    pub targets: Vec<ObjectRef>,
    /// State.
    pub state: JobState,
    /// Progress 0.0..=1.0.
    pub progress: f32,
    /// Latest progress message.
    pub message: String,
    /// Bytes moved so far by a job that moves data (an import, a copy), else 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_done: u64,
    /// Bytes it will move in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Created.
    pub created: Timestamp,
    /// Started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
    /// Finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Timestamp>,
    /// Object created or affected (e.g. the new VM), when the job succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ObjectRef>,
    /// Error, when failed or aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
    /// Parent job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<JobId>,
    /// Child jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<JobId>,
    /// Names of the steps that completed, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps_done: Vec<String>,
    /// Names of the steps that were undone, in order of undoing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps_undone: Vec<String>,
    /// Whether an abort was requested.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort_requested: bool,
    /// Set when the job was recovered after a manager restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

impl Job {
    /// A new job of `kind` on `targets`, queued at `created`, nothing done yet.
    pub fn queued(
        kind: impl Into<String>,
        summary: impl Into<String>,
        targets: Vec<ObjectRef>,
        created: Timestamp,
    ) -> Job {
        Job {
            id: JobId::new(),
            kind: kind.into(),
            summary: summary.into(),
            targets,
            state: JobState::Queued,
            progress: 0.0,
            message: String::new(),
            bytes_done: 0,
            bytes_total: None,
            created,
            started: None,
            finished: None,
            result: None,
            error: None,
            parent: None,
            children: Vec::new(),
            steps_done: Vec::new(),
            steps_undone: Vec::new(),
            abort_requested: false,
            recovery: None,
        }
    }
}
