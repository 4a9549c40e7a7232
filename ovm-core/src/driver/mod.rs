//! The driver seam: what a server's hypervisor does for the manager.
//!
//! A [`Driver`] connects to servers by address (its URI scheme selects it, e.g. `sim://` for the
//! in-process [`sim`] driver); each connection is a [`ServerConnection`]. The seam is shaped after
//! Xen: a domain exists only while it is resident (there is no persistent "defined" state on the
//! host: the manager keeps configurations), it has a runtime domid besides its stable UUID, shutdown
//! is a request the guest may take time to honour, and state changes arrive as a stream (xenstore
//! watches).
//!
//! A connection is split by capability. Every connection offers [`HostOps`] (facts, load, power) and
//! [`DomainOps`] (lifecycle, console, watch). The rest is optional and reached through accessors that
//! return `None` when the driver lacks the capability:
//!
//! * [`ServerConnection::file_storage`]: the file-system plug-in side of storage ([`storage`]);
//! * [`ServerConnection::array_storage`]: the storage-array side (LUNs, sessions, and optionally
//!   vendor-style [`ArrayManagement`]);
//! * [`ServerConnection::network`]: ports, bridges, bonds and VLANs ([`network`]);
//! * [`ServerConnection::cluster`]: membership of a pool's cluster ([`cluster`]);
//! * [`ServerConnection::migration`]: both ends of a migration by ticket ([`migration`]).
//!
//! Out-of-band power control (a server's management controller, reached from the manager) is not
//! part of a connection: [`PowerController`]s are registered with the manager ([`power`]).
//!
//! Backends depend on this module; it depends on no backend. The manager reaches drivers only
//! through these traits, and hands each driver a namespaced [`DriverState`] for what it persists.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::Result;

pub mod cluster;
pub mod domain;
pub mod host;
pub mod migration;
pub mod netboot;
pub mod network;
pub mod power;
pub mod sim;
pub mod state;
pub mod storage;
pub mod vip;

pub use cluster::{ClusterNode, ClusterOps, ClusterSpec, ClusterStatus};
pub use domain::{
    check_guest_key, check_guest_message, lun_of, lun_path, splice_console, DiskSpec, DomainChange,
    DomainOps, DomainRunState, DomainSpec, DomainStatus, NicSpec, ShutdownReason, LUN_PATH_PREFIX,
    MAX_GUEST_DATA, MAX_GUEST_KEY, MAX_GUEST_VALUE,
};
pub use host::{magic_packet, DomainLoad, HostInfo, HostLoad, HostOps, InterfaceCounters};
pub use migration::{MigrationOps, MigrationStreams, MigrationTicket};
pub use network::{
    AddressConfig, Applied, ApplyOptions, BondConfig, BondMonitor, BridgeConfig, NetChange, NetItem, NetKey,
    NetworkConfig, NetworkOps, NetworkTxns, RawNetwork, RestorePoint, TxnState, VlanConfig,
};
pub use power::{ChassisPower, PowerController};
pub use state::{DriverContext, DriverState, MemoryDriverState};
pub use storage::{
    check_abs_path, check_portal, check_target, AccessGroup, ArrayAdminAccess, ArrayAnswer, ArrayManagement,
    ArrayOp, ArrayOpClient, DiscoveredFileSystem, FileServerAccess, FileStoragePlugin, FileSystemMount,
    FsUsage, IscsiSession, Lun, MountSource, RepositoryFile, StorageArrayPlugin, LIO_PLUGIN, MAX_CONFIG_FILE,
    MAX_LISTED_FILES, MAX_WRITE_CHUNK, REPOSITORY_CONFIG, REPOSITORY_LAYOUT,
};

pub(crate) use crate::sync::lock;

/// A connection to one server: host and domain operations, plus the optional capabilities the
/// driver has. Calls block; the manager runs them on job threads.
pub trait ServerConnection: HostOps + DomainOps + fmt::Debug {
    /// The file-system plug-in side of the server's storage.
    fn file_storage(&self) -> Option<&dyn FileStoragePlugin> {
        None
    }
    /// The storage-array side of the server's storage.
    fn array_storage(&self) -> Option<&dyn StorageArrayPlugin> {
        None
    }
    /// The server's network configuration.
    fn network(&self) -> Option<&dyn NetworkOps> {
        None
    }
    /// Membership of a pool's cluster.
    fn cluster(&self) -> Option<&dyn ClusterOps> {
        None
    }
    /// Migration to and from this server.
    fn migration(&self) -> Option<&dyn MigrationOps> {
        None
    }
    /// Migration as a byte stream carried by the caller (what an agent serves its peers with).
    fn migration_streams(&self) -> Option<&dyn MigrationStreams> {
        None
    }
}

/// What a driver that reaches servers through a remote agent offers beyond connections: the
/// certificates it pins and restarting an agent.
pub trait RemoteAgents: Send + Sync {
    /// Fingerprint of the certificate the manager presents to agents.
    fn certificate_fingerprint(&self) -> Result<String>;
    /// The agent certificate fingerprint pinned for `address`.
    fn pinned_fingerprint(&self, address: &str) -> Option<String>;
    /// Ask the agent at `address` (owned by `manager_id`) to restart; its domains keep running and
    /// existing connections drop.
    fn restart_agent(&self, address: &str, manager_id: &str) -> Result<()>;
}

/// A kind of server connection, selected by address scheme.
pub trait Driver: Send + Sync + fmt::Debug + Any {
    /// The driver's name, also the namespace of its persistent state (e.g. `sim`, `agent`, `xen`).
    fn name(&self) -> &'static str;
    /// Whether this driver handles `address`.
    fn handles(&self, address: &str) -> bool;
    /// Called once when the manager opens, before any connection: the manager's id and the
    /// driver's persistent state. Drivers with nothing to persist ignore it.
    fn attach(&self, ctx: DriverContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
    /// Connect to the server at `address` presenting the agent `password`, taking ownership for
    /// manager `manager_id`.
    fn connect(&self, address: &str, password: &str, manager_id: &str) -> Result<Arc<dyn ServerConnection>>;
    /// Connect to the server at `address` that another manager owns, presenting the agent
    /// `password`, and take it over for manager `manager_id` (a manager rebuilt after losing its
    /// database). Drivers without ownership answer `Unsupported`.
    fn take_over(
        &self,
        address: &str,
        password: &str,
        manager_id: &str,
    ) -> Result<Arc<dyn ServerConnection>> {
        let _ = (address, password, manager_id);
        Err(crate::Error::Unsupported {
            what: format!("taking over servers with the {} driver", self.name()),
        })
    }
    /// Reconnect to a server this manager already owns.
    fn reconnect(&self, address: &str, manager_id: &str) -> Result<Arc<dyn ServerConnection>>;
    /// Reach a clustered pool at its virtual IP, as Oracle VM's manager reaches a pool: a
    /// connection to whichever server holds `virtual_ip` now (the pool's master), accepted only if
    /// it is one of `members` (the addresses of the pool's servers, which this manager owns).
    /// Returns the member's address and the connection. `PermissionDenied` if another server
    /// answers there; `Unsupported` by default.
    fn reach_pool(
        &self,
        virtual_ip: std::net::IpAddr,
        members: &[String],
        manager_id: &str,
    ) -> Result<(String, Arc<dyn ServerConnection>)> {
        let _ = (members, manager_id);
        Err(crate::Error::Unsupported {
            what: format!("reaching pool address {virtual_ip} with the {} driver", self.name()),
        })
    }
    /// Release ownership of a server.
    fn release(&self, address: &str, manager_id: &str) -> Result<()>;
    /// Whether a failed connection to a server means the server itself failed (so its VMs are gone
    /// and HA restarts them elsewhere). Drivers that reach servers through an agent return `false`:
    /// an agent that does not answer says nothing about the server and its VMs.
    fn connection_loss_is_host_loss(&self) -> bool {
        true
    }
    /// The remote-agent capability, for drivers that reach servers through an agent.
    fn remote_agents(&self) -> Option<&dyn RemoteAgents> {
        None
    }
    /// The driver as [`Any`], so that code that registered a concrete driver can find it again.
    fn as_any(&self) -> &dyn Any;
}

impl dyn Driver {
    /// The driver as a `T`, if it is one.
    pub fn downcast_ref<T: Driver>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }
}
