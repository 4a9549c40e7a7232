//! Cluster membership: the servers of a pool form a cluster (Oracle VM: O2CB for the pool file
//! system), with one master, elected over a lock, and an epoch that grows at every election (the
//! rules: [`crate::policy::election`]).

use serde::{Deserialize, Serialize};

use crate::model::MemberStatus;
use crate::Result;

/// The state of a cluster seen from one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The cluster (the pool's id).
    pub cluster: String,
    /// Host names of the members, in joining order.
    pub members: Vec<String>,
    /// Host name of the master.
    pub master: Option<String>,
    /// The master's epoch: grows each time a master is elected. Commands stamped with an older
    /// one are refused.
    pub epoch: u64,
    /// Each member's heartbeat as the cluster sees it, by host name (empty where the backend does
    /// not report them).
    #[serde(default)]
    pub heartbeats: Vec<MemberStatus>,
}

/// Joining and leaving a pool's cluster.
pub trait ClusterOps: Send + Sync {
    /// Join `cluster` (joining the cluster the server is in succeeds; being in another one conflicts).
    fn join(&self, cluster: &str) -> Result<ClusterStatus>;
    /// Leave the cluster the server is in (leaving none succeeds).
    fn leave(&self) -> Result<()>;
    /// The cluster the server is in, if any.
    fn status(&self) -> Result<Option<ClusterStatus>>;
}
