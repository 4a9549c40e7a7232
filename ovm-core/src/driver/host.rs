//! Host operations: what a server says about itself, its load, and powering it off.

use serde::{Deserialize, Serialize};

use crate::model::HostHardware;
use crate::Result;

/// A server's load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostLoad {
    /// CPU utilisation, percent of all CPUs.
    pub cpu_percent: f32,
    /// Memory used by guests, MiB.
    pub guest_memory_mib: u64,
    /// Memory free for guests, MiB.
    pub free_memory_mib: u64,
}

/// What the host says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Hardware.
    pub hardware: HostHardware,
    /// Memory kept by dom0, MiB.
    pub dom0_memory_mib: u64,
    /// Identifier of the manager owning the server, if any.
    pub owner: Option<String>,
    /// The bridge a guest NIC joins when its network names none (Xen: `xenbr0`); the manager names
    /// the management network's bridge after it at the first discovery.
    pub default_bridge: String,
}

/// Host operations every server connection offers. Calls block; the manager runs them on job threads.
pub trait HostOps: Send + Sync {
    /// Host information.
    fn host_info(&self) -> Result<HostInfo>;
    /// Current load.
    fn load(&self) -> Result<HostLoad>;
    /// Power the host off (DPM). Drivers that cannot return [`crate::Error::Unsupported`].
    fn power_off(&self) -> Result<()>;
}
