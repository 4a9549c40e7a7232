//! Network configuration of a server: its ports, and the bridges, bonds and VLAN interfaces in dom0.

use serde::{Deserialize, Serialize};

use crate::model::{BondMode, EthernetPort};
use crate::Result;

/// A bridge in dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    /// Bridge name, e.g. `xenbr0`.
    pub name: String,
    /// Interfaces enslaved to it (ports, bonds or VLAN interfaces).
    pub interfaces: Vec<String>,
    /// MTU.
    pub mtu: u32,
}

/// A bond in dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BondConfig {
    /// Bond name, e.g. `bond0`.
    pub name: String,
    /// Mode.
    pub mode: BondMode,
    /// Member ports.
    pub ports: Vec<String>,
}

/// A VLAN interface in dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanConfig {
    /// The interface it tags on (port or bond).
    pub parent: String,
    /// VLAN id, 1..=4094.
    pub vlan_id: u16,
}

impl VlanConfig {
    /// Its interface name, `PARENT.ID`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.parent, self.vlan_id)
    }
}

/// The network configuration of dom0.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Bridges, by name.
    pub bridges: Vec<BridgeConfig>,
    /// Bonds, by name.
    pub bonds: Vec<BondConfig>,
    /// VLAN interfaces, by name.
    pub vlans: Vec<VlanConfig>,
}

/// Reading and applying a server's network configuration. Applying an item replaces the item of the
/// same name.
pub trait NetworkOps: Send + Sync {
    /// The server's Ethernet ports.
    fn ports(&self) -> Result<Vec<EthernetPort>>;
    /// The bridges, bonds and VLAN interfaces configured now.
    fn network_config(&self) -> Result<NetworkConfig>;
    /// Create or replace a bridge.
    fn apply_bridge(&self, bridge: &BridgeConfig) -> Result<()>;
    /// Remove a bridge.
    fn remove_bridge(&self, name: &str) -> Result<()>;
    /// Create or replace a bond.
    fn apply_bond(&self, bond: &BondConfig) -> Result<()>;
    /// Remove a bond.
    fn remove_bond(&self, name: &str) -> Result<()>;
    /// Create a VLAN interface (creating it again succeeds).
    fn apply_vlan(&self, vlan: &VlanConfig) -> Result<()>;
    /// Remove a VLAN interface by name (`PARENT.ID`).
    fn remove_vlan(&self, name: &str) -> Result<()>;
}
