//! Events: per-object messages with severities, and the change feed's records.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::{EventId, ObjectRef, Timestamp};

/// Severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum Severity {
    /// Informational.
    Info,
    /// Something to look at.
    Warning,
    /// An operation or component failed; blocks the object until acknowledged.
    Error,
    /// A critical failure; blocks the object until acknowledged.
    Critical,
}

impl Severity {
    /// Whether an unacknowledged event of this severity blocks mutating operations on its object.
    pub fn blocks(self) -> bool {
        self >= Severity::Error
    }
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "Info",
            Severity::Warning => "Warning",
            Severity::Error => "Error",
            Severity::Critical => "Critical",
        }
    }
    /// Parse a stable name.
    pub fn from_name(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Error, Severity::Critical]
            .into_iter()
            .find(|x| x.name() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// An event about an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Event {
    /// Id.
    pub id: EventId,
    /// The object it is about.
    pub object: ObjectRef,
    /// Severity.
    pub severity: Severity,
    /// Short type, e.g. `server.unreachable`.
    pub event_type: String,
    /// Human description.
    pub summary: String,
    /// When it was raised.
    pub created: Timestamp,
    /// When it was acknowledged.
    pub acknowledged: Option<Timestamp>,
}

/// What happened to an object in the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum ChangeOp {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Removed,
}

impl ChangeOp {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::Added => "Added",
            ChangeOp::Modified => "Modified",
            ChangeOp::Removed => "Removed",
        }
    }
    /// Parse a stable name.
    pub fn from_name(s: &str) -> Option<ChangeOp> {
        [ChangeOp::Added, ChangeOp::Modified, ChangeOp::Removed].into_iter().find(|x| x.name() == s)
    }
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Change {
    /// Token of this change; resume after it with `events_since(token)`.
    pub token: u64,
    /// The object (any kind, including jobs and events).
    pub object: ObjectRef,
    /// What happened.
    pub op: ChangeOp,
    /// When.
    pub at: Timestamp,
}
