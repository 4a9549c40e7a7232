//! Servers: Xen hosts running the ovm agent.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::{validate_name, PoolId, PortId, ServerId};
use crate::{Error, Result};

/// Running state of a server as the manager last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerPowerState {
    /// Reachable and running.
    Running,
    /// Powered off (by the manager, e.g. DPM).
    Stopped,
    /// Not reachable by the manager.
    Unreachable,
}

impl fmt::Display for ServerPowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a server is used for in its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ServerRole {
    /// Can run virtual machines.
    VirtualMachine,
    /// Runs storage plugin operations (utility work: cloning, imports).
    Utility,
}

/// Who owns a server's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ownership {
    /// Discovered but not owned; it cannot be commanded.
    Unowned,
    /// Owned by this manager.
    Owned,
    /// Owned by another manager (its identifier).
    OwnedByOther(String),
}

/// A physical Ethernet port of a server, as discovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EthernetPort {
    /// Interface name in dom0, e.g. `eth0`.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// Link speed in Mbit/s, when known.
    pub speed_mbps: Option<u32>,
    /// Whether the link is up (carrier), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<bool>,
    /// The kernel driver, e.g. `e1000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The MTU now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The largest MTU the NIC takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mtu: Option<u32>,
}

impl EthernetPort {
    /// A port with a name and MAC, nothing else known.
    pub fn new(name: &str, mac: &str) -> Self {
        EthernetPort {
            name: name.to_owned(),
            mac: mac.to_owned(),
            speed_mbps: None,
            carrier: None,
            driver: None,
            mtu: None,
            max_mtu: None,
        }
    }
}

/// Hardware facts reported by a server's hypervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHardware {
    /// Physical CPU threads.
    pub cpus: u32,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Xen version string, e.g. `4.17.7`.
    pub xen_version: String,
    /// Physical ports.
    pub ports: Vec<EthernetPort>,
    /// Whether hardware virtualization (HVM) is available.
    pub hvm_capable: bool,
}

/// A Xen host managed through its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// Id.
    pub id: ServerId,
    /// Name (host name by default).
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Address used to reach the agent (IP, host name or a driver URI such as `sim://name`).
    pub address: String,
    /// Hardware as last refreshed.
    pub hardware: HostHardware,
    /// Roles in the pool.
    pub roles: Vec<ServerRole>,
    /// In maintenance mode: no VM may run or start on it.
    pub maintenance_mode: bool,
    /// Ownership of the agent.
    pub ownership: Ownership,
    /// Power state.
    pub power_state: ServerPowerState,
    /// The pool it belongs to, if any (at most one).
    pub pool: Option<PoolId>,
    /// Model ports created for its Ethernet ports.
    #[serde(default)]
    pub ports: Vec<PortId>,
    /// Wake-on-LAN MAC used by DPM to power it on.
    #[serde(default)]
    pub wol_mac: Option<String>,
    /// Memory reserved for dom0, MiB (not available to VMs).
    pub dom0_memory_mib: u64,
}

impl Server {
    /// Memory available to guests, MiB.
    pub fn guest_memory_mib(&self) -> u64 {
        self.hardware.memory_mib.saturating_sub(self.dom0_memory_mib)
    }

    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.address.trim().is_empty() {
            return Err(Error::invalid("address", "must not be empty"));
        }
        if self.hardware.cpus == 0 {
            return Err(Error::invalid("hardware.cpus", "a server has at least one CPU"));
        }
        if self.dom0_memory_mib > self.hardware.memory_mib {
            return Err(Error::invalid("dom0_memory_mib", "exceeds the server's memory"));
        }
        if let Some(mac) = &self.wol_mac {
            super::parse_mac(mac).map_err(|_| Error::invalid("wol_mac", format!("{mac:?} is not a MAC")))?;
        }
        Ok(())
    }
}
