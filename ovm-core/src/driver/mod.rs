//! The driver seam: what a server's hypervisor does for the manager.
//!
//! A [`Driver`] connects to servers by address (its URI scheme selects it, e.g. `sim://` for the
//! in-process [`sim`] driver); each connection is a [`Hypervisor`]. The trait is shaped after Xen:
//! a domain exists only while it is resident (there is no persistent "defined" state on the host:
//! the manager keeps configurations), it has a runtime domid besides its stable UUID, shutdown is a
//! request the guest may take time to honour, and state changes arrive as a stream (xenstore watches).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{DomainType, HostHardware, RestartActions, VmId};
use crate::Result;

pub mod sim;

/// Everything a hypervisor needs to build a domain; produced by the manager from a [`crate::model::Vm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// Stable id, used as the Xen domain handle.
    pub uuid: VmId,
    /// Domain name.
    pub name: String,
    /// Domain type.
    pub domain_type: DomainType,
    /// vCPUs online.
    pub vcpus: u32,
    /// Maximum vCPUs.
    pub max_vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Maximum memory, MiB.
    pub max_memory_mib: u64,
    /// Disks: (device name like `xvda`, path on the server, read-only).
    pub disks: Vec<DiskSpec>,
    /// NICs: (MAC, bridge).
    pub nics: Vec<NicSpec>,
    /// PV/PVH direct boot.
    pub kernel: Option<String>,
    /// Initrd.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: Option<String>,
    /// Restart actions.
    pub restart_actions: RestartActions,
}

/// A disk of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Guest device, e.g. `xvda`.
    pub vdev: String,
    /// Backing path on the server.
    pub path: String,
    /// Read-only (CD-ROM).
    pub read_only: bool,
    /// Whether it is a CD-ROM.
    pub cdrom: bool,
}

/// A NIC of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// MAC.
    pub mac: String,
    /// Bridge on the server.
    pub bridge: String,
}

/// Run state of a resident domain, as Xen reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DomainRunState {
    /// Running on a CPU.
    Running,
    /// Blocked (idle, waiting for events): still "running" for users.
    Blocked,
    /// Paused.
    Paused,
    /// Shut down, with the reason, not yet destroyed.
    Shutdown(ShutdownReason),
    /// Being destroyed.
    Dying,
}

/// Why a domain shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShutdownReason {
    /// Powered off.
    Poweroff,
    /// Rebooting.
    Reboot,
    /// Suspended.
    Suspend,
    /// Crashed.
    Crash,
    /// Watchdog fired.
    Watchdog,
    /// Soft reset.
    SoftReset,
}

/// A resident domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainStatus {
    /// Stable id (`None` for dom0 or domains ovm did not create).
    pub uuid: Option<VmId>,
    /// Name.
    pub name: String,
    /// Runtime domain id.
    pub domid: u32,
    /// Run state.
    pub state: DomainRunState,
    /// Current memory, MiB.
    pub memory_mib: u64,
    /// Online vCPUs.
    pub vcpus: u32,
    /// CPU time used, ns.
    pub cpu_time_ns: u64,
}

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
    /// Identifier of the manager owning the agent, if any.
    pub owner: Option<String>,
}

/// A change of a domain seen by the hypervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DomainChange {
    /// A domain appeared.
    Appeared {
        /// Its id.
        uuid: Option<VmId>,
        /// Its domid.
        domid: u32,
    },
    /// A domain's run state changed.
    StateChanged {
        /// Its id.
        uuid: Option<VmId>,
        /// Its domid.
        domid: u32,
        /// New state.
        state: DomainRunState,
    },
    /// A domain disappeared (destroyed, or migrated away).
    Disappeared {
        /// Its id.
        uuid: Option<VmId>,
        /// Its domid.
        domid: u32,
    },
    /// The host itself went away (host failed).
    HostLost,
    /// The connection to the server's agent was lost; the server and its domains may be fine. The
    /// manager marks the server unreachable and reconnects.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Changes were dropped: list the domains again.
    Resync,
}

/// A connection to one server's hypervisor. Calls block; the manager runs them on job threads.
pub trait Hypervisor: Send + Sync + fmt::Debug {
    /// Host information.
    fn host_info(&self) -> Result<HostInfo>;
    /// Current load.
    fn load(&self) -> Result<HostLoad>;
    /// Resident domains.
    fn list_domains(&self) -> Result<Vec<DomainStatus>>;
    /// Build and start a domain; returns its domid.
    fn create_domain(&self, spec: &DomainSpec) -> Result<u32>;
    /// Ask the guest to power off and wait up to `timeout` for it to go; on timeout returns
    /// [`crate::Error::Timeout`] and leaves the domain running (the caller decides on destroy).
    fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()>;
    /// Ask the guest to reboot.
    fn reboot(&self, vm: VmId, timeout: Duration) -> Result<()>;
    /// Destroy the domain at once.
    fn destroy(&self, vm: VmId) -> Result<()>;
    /// Pause.
    fn pause(&self, vm: VmId) -> Result<()>;
    /// Unpause.
    fn unpause(&self, vm: VmId) -> Result<()>;
    /// Save the domain's memory to `path` (on the server) and destroy it.
    fn suspend(&self, vm: VmId, path: &str) -> Result<()>;
    /// Restore a domain saved at `path`; returns its domid.
    fn restore(&self, spec: &DomainSpec, path: &str) -> Result<u32>;
    /// Live-migrate the domain to the server at `destination` (an address this driver understands).
    fn migrate(&self, vm: VmId, destination: &str, live: bool) -> Result<()>;
    /// Set the memory target, MiB.
    fn set_memory(&self, vm: VmId, memory_mib: u64) -> Result<()>;
    /// Set the number of online vCPUs.
    fn set_vcpus(&self, vm: VmId, vcpus: u32) -> Result<()>;
    /// Console output collected so far.
    fn console(&self, vm: VmId) -> Result<String>;
    /// Subscribe to domain changes.
    fn watch(&self) -> Result<tokio::sync::broadcast::Receiver<DomainChange>>;
    /// Power the host off (DPM). Drivers that cannot return [`crate::Error::Unsupported`].
    fn power_off(&self) -> Result<()>;
    /// Create a sparse file of `size_bytes` at `path` (a repository path on the server).
    fn storage_create(&self, path: &str, size_bytes: u64) -> Result<()>;
    /// Copy the file at `from` to `to` (both repository paths on the server).
    fn storage_copy(&self, from: &str, to: &str) -> Result<()>;
    /// Delete the file at `path`; deleting a missing file succeeds.
    fn storage_delete(&self, path: &str) -> Result<()>;
}

/// A kind of server connection, selected by address scheme.
pub trait Driver: Send + Sync + fmt::Debug {
    /// Whether this driver handles `address`.
    fn handles(&self, address: &str) -> bool;
    /// Connect to the server at `address` presenting the agent `password`, taking ownership for
    /// manager `manager_id`.
    fn connect(&self, address: &str, password: &str, manager_id: &str) -> Result<Arc<dyn Hypervisor>>;
    /// Reconnect to a server this manager already owns.
    fn reconnect(&self, address: &str, manager_id: &str) -> Result<Arc<dyn Hypervisor>>;
    /// Release ownership of a server.
    fn release(&self, address: &str, manager_id: &str) -> Result<()>;
    /// Whether a failed connection to a server means the server itself failed (so its VMs are gone
    /// and HA restarts them elsewhere). Drivers that reach servers through an agent return `false`:
    /// an agent that does not answer says nothing about the server and its VMs.
    fn connection_loss_is_host_loss(&self) -> bool {
        true
    }
}
