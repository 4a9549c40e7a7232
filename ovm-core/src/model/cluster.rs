//! A clustered pool's membership as plain data: the master's epoch and each member's heartbeat.
//! The rules that move them are in [`crate::policy::election`].

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// A master's term: taking the master lock makes the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

/// A member's heartbeat as the others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatState {
    /// Heartbeats arrive.
    Alive,
    /// Its last heartbeat is `T` old or more: it has fenced itself, and is not declared dead yet.
    Late,
    /// Declared dead: its locks are free and its VMs may run elsewhere.
    Dead,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct MemberStatus {
    /// The server's name.
    pub name: String,
    /// Which boot of the server.
    pub incarnation: u64,
    /// When its last heartbeat was written.
    pub last_heartbeat_ms: Timestamp,
    /// How the others see it.
    pub heartbeat: HeartbeatState,
}
