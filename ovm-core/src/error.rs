//! The one error type of ovm and its stable, numbered [`ErrorKind`].
//!
//! Every fallible call in ovm returns [`Result<T>`]. The [`Error`] enum carries typed fields a caller
//! can act on; [`Error::kind`] maps it to an [`ErrorKind`] whose numbers are stable across releases
//! (the C result codes and the Python exceptions are each one exhaustive mapping from it).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::model::{ObjectKind, ObjectRef};

/// Result type used throughout ovm.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stable, numbered error kinds. Numbers are never reused; new kinds get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[non_exhaustive]
#[repr(u32)]
pub enum ErrorKind {
    /// An object, job or event does not exist.
    NotFound = 1,
    /// The object is not in the state the operation needs.
    InvalidState = 2,
    /// Another job holds a lock on the object.
    OperationInProgress = 3,
    /// An argument is invalid.
    InvalidArgument = 4,
    /// The request conflicts with existing objects (duplicate name, MAC, membership...).
    Conflict = 5,
    /// The operation is not supported by this driver or object.
    Unsupported = 6,
    /// The hypervisor driver or a server failed.
    Backend = 7,
    /// The event subscription lagged; resume from the token.
    EventsLost = 8,
    /// The job was aborted.
    Aborted = 9,
    /// A wait timed out.
    Timeout = 10,
    /// Not enough CPU, memory or space.
    InsufficientResources = 11,
    /// The object has unacknowledged Error or Critical events.
    UnacknowledgedEvents = 12,
    /// The manager database failed or is unusable.
    Database = 13,
    /// The database was written by a newer ovm.
    SchemaTooNew = 14,
    /// The job was interrupted by a manager restart and rolled back.
    Interrupted = 15,
    /// The manager has been closed.
    Closed = 16,
    /// Authentication or ownership was refused.
    PermissionDenied = 17,
    /// An internal invariant was broken (a bug in ovm).
    Internal = 18,
    /// The manager database is held by another live manager (a database has one manager).
    DatabaseLocked = 19,
    /// An evacuation (maintenance mode) could not move every VM off its server.
    EvacuationFailed = 20,
}

impl ErrorKind {
    /// Every kind, in number order.
    pub const ALL: [ErrorKind; 20] = [
        ErrorKind::NotFound,
        ErrorKind::InvalidState,
        ErrorKind::OperationInProgress,
        ErrorKind::InvalidArgument,
        ErrorKind::Conflict,
        ErrorKind::Unsupported,
        ErrorKind::Backend,
        ErrorKind::EventsLost,
        ErrorKind::Aborted,
        ErrorKind::Timeout,
        ErrorKind::InsufficientResources,
        ErrorKind::UnacknowledgedEvents,
        ErrorKind::Database,
        ErrorKind::SchemaTooNew,
        ErrorKind::Interrupted,
        ErrorKind::Closed,
        ErrorKind::PermissionDenied,
        ErrorKind::Internal,
        ErrorKind::DatabaseLocked,
        ErrorKind::EvacuationFailed,
    ];

    /// The stable number of this kind.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The kind with this stable number.
    pub fn from_code(code: u32) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// A short stable name, e.g. `"NotFound"`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFound",
            ErrorKind::InvalidState => "InvalidState",
            ErrorKind::OperationInProgress => "OperationInProgress",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Unsupported => "Unsupported",
            ErrorKind::Backend => "Backend",
            ErrorKind::EventsLost => "EventsLost",
            ErrorKind::Aborted => "Aborted",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::InsufficientResources => "InsufficientResources",
            ErrorKind::UnacknowledgedEvents => "UnacknowledgedEvents",
            ErrorKind::Database => "Database",
            ErrorKind::SchemaTooNew => "SchemaTooNew",
            ErrorKind::Interrupted => "Interrupted",
            ErrorKind::Closed => "Closed",
            ErrorKind::PermissionDenied => "PermissionDenied",
            ErrorKind::Internal => "Internal",
            ErrorKind::DatabaseLocked => "DatabaseLocked",
            ErrorKind::EvacuationFailed => "EvacuationFailed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// An ovm error with typed fields. Serializable, so a failed job keeps its error in the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorKind::NotFound`].
    #[error("{kind} {id} not found")]
    NotFound {
        /// What kind of thing was looked up.
        kind: ObjectKind,
        /// The id or name that was looked up.
        id: String,
    },
    /// See [`ErrorKind::InvalidState`].
    #[error("{object} is {actual}, but the operation needs it {expected}")]
    InvalidState {
        /// The object.
        object: ObjectRef,
        /// The state(s) the operation needs.
        expected: String,
        /// The state it is in.
        actual: String,
    },
    /// See [`ErrorKind::OperationInProgress`].
    #[error("{object} is locked by job {job}; wait for it or abort it")]
    OperationInProgress {
        /// The locked object.
        object: ObjectRef,
        /// The job holding the lock.
        job: String,
    },
    /// See [`ErrorKind::InvalidArgument`].
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The argument or field.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
    /// See [`ErrorKind::Conflict`].
    #[error("conflict: {reason}")]
    Conflict {
        /// What conflicts with what.
        reason: String,
    },
    /// See [`ErrorKind::Unsupported`].
    #[error("unsupported: {what}")]
    Unsupported {
        /// What is not supported.
        what: String,
    },
    /// See [`ErrorKind::Backend`].
    #[error("backend error on {server}: {message}")]
    Backend {
        /// The server (or driver) that failed.
        server: String,
        /// What it said.
        message: String,
    },
    /// See [`ErrorKind::EventsLost`].
    #[error("events were lost; re-read state and resume from token {resume_token}")]
    EventsLost {
        /// The last token delivered before the loss.
        resume_token: u64,
    },
    /// See [`ErrorKind::Aborted`].
    #[error("job {job} was aborted")]
    Aborted {
        /// The aborted job.
        job: String,
    },
    /// See [`ErrorKind::Timeout`].
    #[error("timed out after {millis} ms waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        millis: u64,
    },
    /// See [`ErrorKind::InsufficientResources`].
    #[error("insufficient {resource} on {object}: need {needed}, available {available}")]
    InsufficientResources {
        /// The object lacking resources.
        object: ObjectRef,
        /// CPU, memory, ...
        resource: String,
        /// Amount needed.
        needed: u64,
        /// Amount available.
        available: u64,
    },
    /// See [`ErrorKind::UnacknowledgedEvents`].
    #[error("{object} has unacknowledged {severity} event {event}; acknowledge it first")]
    UnacknowledgedEvents {
        /// The blocked object.
        object: ObjectRef,
        /// The blocking event's id.
        event: String,
        /// Its severity.
        severity: String,
    },
    /// See [`ErrorKind::Database`].
    #[error("manager database error: {message}")]
    Database {
        /// Details.
        message: String,
    },
    /// See [`ErrorKind::SchemaTooNew`].
    #[error(
        "the database has schema version {found}, newer than {supported} which this ovm supports; \
             upgrade ovm (the file was left untouched)"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// See [`ErrorKind::Interrupted`].
    #[error("job {job} was interrupted by a manager restart and rolled back")]
    Interrupted {
        /// The interrupted job.
        job: String,
    },
    /// See [`ErrorKind::Closed`].
    #[error("the manager is closed")]
    Closed,
    /// See [`ErrorKind::PermissionDenied`].
    #[error("permission denied: {reason}")]
    PermissionDenied {
        /// Why.
        reason: String,
    },
    /// See [`ErrorKind::Internal`].
    #[error("internal error (please report): {message}")]
    Internal {
        /// Details.
        message: String,
    },
    /// See [`ErrorKind::DatabaseLocked`].
    #[error(
        "the manager database {path} is in use by {}; a manager database has one manager",
        holder(*pid)
    )]
    DatabaseLocked {
        /// The database file.
        path: String,
        /// The process holding it, when it could be read.
        pid: Option<u32>,
    },
    /// See [`ErrorKind::EvacuationFailed`]. The VMs that moved stay where they went.
    #[error("could not move every VM off {server}: {}", failed_moves(failed))]
    EvacuationFailed {
        /// The server being evacuated.
        server: ObjectRef,
        /// The VMs that could not move, and why.
        failed: Vec<FailedMove>,
    },
}

/// A VM that could not be moved, and why (see [`Error::EvacuationFailed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct FailedMove {
    /// The VM.
    pub vm: ObjectRef,
    /// Its name.
    pub name: String,
    /// Why it did not move.
    pub error: Box<Error>,
}

fn failed_moves(failed: &[FailedMove]) -> String {
    failed.iter().map(|f| format!("{} ({})", f.name, f.error)).collect::<Vec<_>>().join("; ")
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("another manager (process {pid})"),
        None => "another manager".into(),
    }
}

impl Error {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::InvalidState { .. } => ErrorKind::InvalidState,
            Error::OperationInProgress { .. } => ErrorKind::OperationInProgress,
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::EventsLost { .. } => ErrorKind::EventsLost,
            Error::Aborted { .. } => ErrorKind::Aborted,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::InsufficientResources { .. } => ErrorKind::InsufficientResources,
            Error::UnacknowledgedEvents { .. } => ErrorKind::UnacknowledgedEvents,
            Error::Database { .. } => ErrorKind::Database,
            Error::SchemaTooNew { .. } => ErrorKind::SchemaTooNew,
            Error::Interrupted { .. } => ErrorKind::Interrupted,
            Error::Closed => ErrorKind::Closed,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::Internal { .. } => ErrorKind::Internal,
            Error::DatabaseLocked { .. } => ErrorKind::DatabaseLocked,
            Error::EvacuationFailed { .. } => ErrorKind::EvacuationFailed,
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`Error::Conflict`].
    pub fn conflict(reason: impl Into<String>) -> Error {
        Error::Conflict { reason: reason.into() }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(kind: ObjectKind, id: impl fmt::Display) -> Error {
        Error::NotFound { kind, id: id.to_string() }
    }

    /// Shorthand for [`Error::InvalidState`].
    pub fn state(object: ObjectRef, expected: impl Into<String>, actual: impl fmt::Display) -> Error {
        Error::InvalidState { object, expected: expected.into(), actual: actual.to_string() }
    }

    /// Shorthand for [`Error::Backend`].
    pub fn backend(server: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Backend { server: server.into(), message: message.into() }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Database { message: e.to_string() }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Database { message: format!("stored record does not decode: {e}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert!(seen.insert(k.code()), "duplicate code {}", k.code());
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::NotFound.code(), 1);
        assert_eq!(ErrorKind::Internal.code(), 18);
        assert_eq!(ErrorKind::DatabaseLocked.code(), 19);
        assert_eq!(ErrorKind::EvacuationFailed.code(), 20);
    }
}
