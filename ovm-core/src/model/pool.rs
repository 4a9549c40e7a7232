//! Server pools and their policies.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use super::{validate_name, FileSystemId, NetworkId, PoolId, ServerId};
use crate::{Error, Result};

/// Where a starting VM is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum StartPolicy {
    /// The server with the most free resources.
    #[default]
    BestServer,
    /// Spread VMs for balanced load.
    BalanceServer,
    /// The server the VM is assigned to.
    CurrentServer,
}

/// Resource policy mode of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum PolicyMode {
    /// No automatic placement.
    #[default]
    Off,
    /// Distributed Resource Scheduler: migrate VMs off busy servers.
    Drs,
    /// Distributed Power Management: consolidate and power off idle servers.
    Dpm,
}

/// DRS/DPM policy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct PoolPolicy {
    /// Mode.
    pub mode: PolicyMode,
    /// CPU utilisation threshold in percent (1..=100).
    pub cpu_threshold_percent: u8,
    /// Evaluation period in seconds (≥ 60).
    pub period_secs: u32,
    /// Networks whose utilisation the policy also watches, with their thresholds in percent.
    pub networks: Vec<(NetworkId, u8)>,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        PoolPolicy {
            mode: PolicyMode::Off,
            cpu_threshold_percent: 80,
            period_secs: 120,
            networks: Vec::new(),
        }
    }
}

/// Bounds of the cluster timeout, seconds (Oracle VM's default is 120; short ones suit small test
/// clusters on one switch).
pub const CLUSTER_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 10..=300;

/// A server pool: servers sharing storage and networks, with an elected master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct ServerPool {
    /// Id.
    pub id: PoolId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Clustered pools have a pool file system, heartbeats and HA.
    pub clustered: bool,
    /// The pool's virtual IP, held by the master.
    pub virtual_ip: Option<IpAddr>,
    /// The pool file system (required when clustered).
    pub pool_file_system: Option<FileSystemId>,
    /// Cluster heartbeat timeout, seconds.
    pub cluster_timeout_secs: u32,
    /// Member servers.
    pub servers: Vec<ServerId>,
    /// The elected master (a member).
    pub master: Option<ServerId>,
    /// VM start placement.
    pub start_policy: StartPolicy,
    /// DRS/DPM policy.
    pub policy: PoolPolicy,
    /// Whether secure (TLS) VM migration is required.
    pub secure_migrate: bool,
    /// How many simultaneous server failures the pool keeps room for when it has HA-enabled VMs:
    /// DPM keeps the memory of this many of its largest running servers free, and setting it is
    /// refused while the failures-to-tolerate planner says the pool cannot absorb that many
    /// (XAPI's `ha_host_failures_to_tolerate`). 1 unless set; 0 reserves nothing.
    #[serde(default = "one")]
    pub ha_failures_to_tolerate: u32,
    /// The cluster node number of each member of a clustered pool whose members form a cluster
    /// (numbers 0..=254, kept while the server is a member: a cluster never sees a member
    /// renumbered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_nodes: Vec<(ServerId, u8)>,
}

fn one() -> u32 {
    1
}

impl ServerPool {
    /// A new, empty, unclustered pool.
    pub fn new(name: impl Into<String>) -> Self {
        ServerPool {
            id: PoolId::new(),
            name: name.into(),
            description: String::new(),
            clustered: false,
            virtual_ip: None,
            pool_file_system: None,
            cluster_timeout_secs: 120,
            servers: Vec::new(),
            master: None,
            start_policy: StartPolicy::default(),
            policy: PoolPolicy::default(),
            secure_migrate: false,
            ha_failures_to_tolerate: 1,
            cluster_nodes: Vec::new(),
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.clustered {
            if self.virtual_ip.is_none() {
                return Err(Error::invalid("virtual_ip", "a clustered pool needs a virtual IP"));
            }
            if self.pool_file_system.is_none() {
                return Err(Error::invalid("pool_file_system", "a clustered pool needs a pool file system"));
            }
        }
        if !CLUSTER_TIMEOUT_RANGE.contains(&self.cluster_timeout_secs) {
            return Err(Error::invalid("cluster_timeout_secs", "must be between 10 and 300 seconds"));
        }
        if let Some(m) = self.master {
            if !self.servers.contains(&m) {
                return Err(Error::invalid("master", "the master must be a member of the pool"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if !self.servers.iter().all(|s| seen.insert(*s)) {
            return Err(Error::invalid("servers", "a server is listed twice"));
        }
        let mut numbers = std::collections::HashSet::new();
        for (s, n) in &self.cluster_nodes {
            if !self.servers.contains(s) || *n == 255 || !numbers.insert(*n) {
                return Err(Error::invalid(
                    "cluster_nodes",
                    "each is a member, with its own number in 0..=254",
                ));
            }
        }
        let p = &self.policy;
        if !(1..=100).contains(&p.cpu_threshold_percent) {
            return Err(Error::invalid("policy.cpu_threshold_percent", "must be 1..=100"));
        }
        if p.period_secs < 60 {
            return Err(Error::invalid("policy.period_secs", "must be at least 60 seconds"));
        }
        if p.networks.iter().any(|(_, t)| !(1..=100).contains(t)) {
            return Err(Error::invalid("policy.networks", "thresholds must be 1..=100"));
        }
        Ok(())
    }
}
