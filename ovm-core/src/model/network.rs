//! Networks: logical networks carrying functions, built from ports, bonds, VLANs and bridges.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use super::{validate_name, BondPortId, NetworkId, PortId, ServerId, VlanInterfaceId};
use crate::{Error, Result};

/// What a network is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum NetworkFunction {
    /// Manager ↔ server traffic.
    Management,
    /// Live migration traffic.
    LiveMigrate,
    /// Cluster heartbeat.
    ClusterHeartbeat,
    /// Virtual machine traffic (bridged).
    VirtualMachine,
    /// Storage traffic (iSCSI, NFS).
    Storage,
}

/// A member of a network on one server: a port, a bond or a VLAN interface, with an optional address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum NetworkMember {
    /// A physical port.
    Port(PortId),
    /// A bond.
    Bond(BondPortId),
    /// A VLAN interface.
    Vlan(VlanInterfaceId),
}

/// A logical network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Network {
    /// Id.
    pub id: NetworkId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Functions carried.
    pub functions: BTreeSet<NetworkFunction>,
    /// Members (ports, bonds, VLAN interfaces of servers).
    pub members: Vec<NetworkMember>,
    /// Bridge name on each server (for VM traffic), e.g. `xenbr0`.
    pub bridge: String,
    /// MTU.
    pub mtu: u16,
}

impl Network {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.functions.is_empty() {
            return Err(Error::invalid("functions", "a network carries at least one function"));
        }
        if !(68..=9000).contains(&self.mtu) {
            return Err(Error::invalid("mtu", "must be between 68 and 9000"));
        }
        if self.bridge.is_empty()
            || self.bridge.len() > 15
            || !self.bridge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(Error::invalid("bridge", "a Linux interface name of 1-15 characters [A-Za-z0-9_.-]"));
        }
        let mut seen = BTreeSet::new();
        if !self.members.iter().all(|m| seen.insert(*m)) {
            return Err(Error::invalid("members", "a member is listed twice"));
        }
        Ok(())
    }
}

/// How a port's address is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum Addressing {
    /// No IP address.
    #[default]
    None,
    /// DHCP.
    Dhcp,
    /// Static address with prefix length.
    Static {
        /// Address.
        address: IpAddr,
        /// Prefix length.
        prefix: u8,
    },
}

impl Addressing {
    fn check(&self, field: &str) -> Result<()> {
        if let Addressing::Static { address, prefix } = self {
            let max = if address.is_ipv4() { 32 } else { 128 };
            if *prefix > max {
                return Err(Error::invalid(field, format!("prefix /{prefix} is too long")));
            }
        }
        Ok(())
    }
}

/// A physical port of a server in the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Port {
    /// Id.
    pub id: PortId,
    /// Name (`server:eth0`).
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Server.
    pub server: ServerId,
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// MAC address.
    pub mac: String,
    /// Addressing.
    pub addressing: Addressing,
    /// The bond it is enslaved to, if any.
    pub bond: Option<BondPortId>,
}

impl Port {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        super::parse_mac(&self.mac)
            .map_err(|_| Error::invalid("mac", format!("{:?} is not a MAC", self.mac)))?;
        self.addressing.check("addressing")
    }
}

/// Bonding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum BondMode {
    /// active-backup (mode 1).
    ActiveBackup,
    /// 802.3ad LACP (mode 4).
    Lacp,
    /// balance-alb (mode 6).
    AdaptiveLoadBalancing,
}

impl BondMode {
    /// The Linux bonding driver's name for the mode.
    pub fn linux_name(self) -> &'static str {
        match self {
            BondMode::ActiveBackup => "active-backup",
            BondMode::Lacp => "802.3ad",
            BondMode::AdaptiveLoadBalancing => "balance-alb",
        }
    }
}

/// How a bond finds out that a member's link is down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum BondMonitor {
    /// The NIC's carrier (MII), polled every `interval_ms`.
    Mii {
        /// Poll interval.
        interval_ms: u32,
    },
    /// ARP probes of `targets` every `interval_ms`: finds a link cut beyond the NIC (at a switch),
    /// which leaves the carrier up.
    Arp {
        /// Probe interval.
        interval_ms: u32,
        /// Addresses probed (1 to 16).
        targets: Vec<Ipv4Addr>,
    },
}

impl Default for BondMonitor {
    fn default() -> Self {
        BondMonitor::Mii { interval_ms: 100 }
    }
}

fn default_mtu() -> u16 {
    1500
}

/// A bond of ports on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct BondPort {
    /// Id.
    pub id: BondPortId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Server.
    pub server: ServerId,
    /// Interface name, e.g. `bond0`.
    pub interface: String,
    /// Mode.
    pub mode: BondMode,
    /// Slave ports (all on the same server).
    pub ports: Vec<PortId>,
    /// Addressing.
    pub addressing: Addressing,
    /// MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Link monitoring.
    #[serde(default)]
    pub monitor: BondMonitor,
}

impl BondPort {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.ports.is_empty() {
            return Err(Error::invalid("ports", "a bond needs at least one port"));
        }
        if !(68..=9000).contains(&self.mtu) {
            return Err(Error::invalid("mtu", "must be between 68 and 9000"));
        }
        if let BondMonitor::Arp { interval_ms, targets } = &self.monitor {
            if targets.is_empty() || targets.len() > 16 || *interval_ms == 0 {
                return Err(Error::invalid(
                    "monitor",
                    "ARP monitoring needs 1 to 16 targets and an interval",
                ));
            }
        }
        let mut seen = BTreeSet::new();
        if !self.ports.iter().all(|p| seen.insert(*p)) {
            return Err(Error::invalid("ports", "a port is listed twice"));
        }
        self.addressing.check("addressing")
    }
}

/// What a VLAN interface sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum VlanParent {
    /// A port.
    Port(PortId),
    /// A bond.
    Bond(BondPortId),
}

/// A VLAN interface on a port or bond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct VlanInterface {
    /// Id.
    pub id: VlanInterfaceId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Server.
    pub server: ServerId,
    /// Parent interface.
    pub parent: VlanParent,
    /// VLAN id, 1..=4094.
    pub vlan_id: u16,
    /// Addressing.
    pub addressing: Addressing,
}

impl VlanInterface {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if !(1..=4094).contains(&self.vlan_id) {
            return Err(Error::invalid("vlan_id", "must be 1..=4094"));
        }
        self.addressing.check("addressing")
    }
}
