//! Simulated dom0 networking: each host has its `eth0` and the bridges, bonds and VLAN interfaces
//! applied to it, checked for references to interfaces that exist.

use super::{SimConnection, SimOp};
use crate::driver::network::{BondConfig, BridgeConfig, NetworkConfig, NetworkOps, VlanConfig};
use crate::model::EthernetPort;
use crate::{Error, Result};

use super::world::HostState;

fn ports(st: &HostState) -> Vec<EthernetPort> {
    vec![EthernetPort { name: "eth0".into(), mac: st.mac.clone(), speed_mbps: Some(10_000) }]
}

/// Whether `name` is an interface of the host other than a bridge.
fn interface_exists(st: &HostState, name: &str) -> bool {
    ports(st).iter().any(|p| p.name == name)
        || st.network.bonds.iter().any(|b| b.name == name)
        || st.network.vlans.iter().any(|v| v.name() == name)
}

/// Whether an interface is used by a bridge, bond or VLAN.
fn in_use(st: &HostState, name: &str) -> bool {
    st.network.bridges.iter().any(|b| b.interfaces.iter().any(|i| i == name))
        || st.network.bonds.iter().any(|b| b.ports.iter().any(|p| p == name))
        || st.network.vlans.iter().any(|v| v.parent == name)
}

impl NetworkOps for SimConnection {
    fn ports(&self) -> Result<Vec<EthernetPort>> {
        self.op(SimOp::Network, |st| Ok(ports(st)))
    }

    fn network_config(&self) -> Result<NetworkConfig> {
        self.op(SimOp::Network, |st| Ok(st.network.clone()))
    }

    fn apply_bridge(&self, bridge: &BridgeConfig) -> Result<()> {
        self.op(SimOp::Network, |st| {
            if let Some(i) = bridge.interfaces.iter().find(|i| !interface_exists(st, i)) {
                return Err(Error::backend(&st.name, format!("no interface {i} for bridge {}", bridge.name)));
            }
            st.network.bridges.retain(|b| b.name != bridge.name);
            st.network.bridges.push(bridge.clone());
            st.network.bridges.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(())
        })
    }

    fn remove_bridge(&self, name: &str) -> Result<()> {
        self.op(SimOp::Network, |st| {
            let before = st.network.bridges.len();
            st.network.bridges.retain(|b| b.name != name);
            if before == st.network.bridges.len() {
                return Err(Error::backend(&st.name, format!("no bridge {name}")));
            }
            Ok(())
        })
    }

    fn apply_bond(&self, bond: &BondConfig) -> Result<()> {
        self.op(SimOp::Network, |st| {
            if let Some(p) = bond.ports.iter().find(|p| !ports(st).iter().any(|e| &e.name == *p)) {
                return Err(Error::backend(&st.name, format!("no port {p} for bond {}", bond.name)));
            }
            if ports(st).iter().any(|p| p.name == bond.name) {
                return Err(Error::invalid("bond", format!("{} is a port name", bond.name)));
            }
            st.network.bonds.retain(|b| b.name != bond.name);
            st.network.bonds.push(bond.clone());
            st.network.bonds.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(())
        })
    }

    fn remove_bond(&self, name: &str) -> Result<()> {
        self.op(SimOp::Network, |st| {
            if in_use(st, name) {
                return Err(Error::conflict(format!("bond {name} is in use on {}", st.name)));
            }
            let before = st.network.bonds.len();
            st.network.bonds.retain(|b| b.name != name);
            if before == st.network.bonds.len() {
                return Err(Error::backend(&st.name, format!("no bond {name}")));
            }
            Ok(())
        })
    }

    fn apply_vlan(&self, vlan: &VlanConfig) -> Result<()> {
        self.op(SimOp::Network, |st| {
            if !(1..=4094).contains(&vlan.vlan_id) {
                return Err(Error::invalid("vlan_id", "must be 1..=4094"));
            }
            if !interface_exists(st, &vlan.parent) {
                return Err(Error::backend(&st.name, format!("no interface {} for a VLAN", vlan.parent)));
            }
            if !st.network.vlans.contains(vlan) {
                st.network.vlans.push(vlan.clone());
                st.network.vlans.sort_by_key(|v| v.name());
            }
            Ok(())
        })
    }

    fn remove_vlan(&self, name: &str) -> Result<()> {
        self.op(SimOp::Network, |st| {
            if in_use(st, name) {
                return Err(Error::conflict(format!("VLAN interface {name} is in use on {}", st.name)));
            }
            let before = st.network.vlans.len();
            st.network.vlans.retain(|v| v.name() != name);
            if before == st.network.vlans.len() {
                return Err(Error::backend(&st.name, format!("no VLAN interface {name}")));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::driver::network::{BondConfig, BridgeConfig, VlanConfig};
    use crate::driver::sim::{SimDriver, DEFAULT_PASSWORD};
    use crate::driver::Driver;
    use crate::model::BondMode;

    #[test]
    fn bridges_bonds_and_vlans() {
        let d = SimDriver::default();
        let h = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let n = h.network().unwrap();
        assert_eq!(n.ports().unwrap()[0].name, "eth0");
        let bond =
            BondConfig { name: "bond0".into(), mode: BondMode::ActiveBackup, ports: vec!["eth0".into()] };
        n.apply_bond(&bond).unwrap();
        assert!(n.apply_bond(&BondConfig { ports: vec!["eth9".into()], ..bond.clone() }).is_err());
        let vlan = VlanConfig { parent: "bond0".into(), vlan_id: 100 };
        n.apply_vlan(&vlan).unwrap();
        n.apply_vlan(&vlan).unwrap();
        assert!(n.apply_vlan(&VlanConfig { parent: "bond0".into(), vlan_id: 0 }).is_err());
        let br = BridgeConfig { name: "vlan100br".into(), interfaces: vec!["bond0.100".into()], mtu: 1500 };
        n.apply_bridge(&br).unwrap();
        assert!(n.apply_bridge(&BridgeConfig { interfaces: vec!["nope".into()], ..br.clone() }).is_err());
        let cfg = n.network_config().unwrap();
        assert_eq!((cfg.bonds.len(), cfg.vlans.len(), cfg.bridges.len()), (1, 1, 1));
        assert_eq!(
            n.remove_vlan("bond0.100").unwrap_err().kind(),
            crate::ErrorKind::Conflict,
            "the bridge uses it"
        );
        n.remove_bridge("vlan100br").unwrap();
        n.remove_vlan("bond0.100").unwrap();
        n.remove_bond("bond0").unwrap();
        assert_eq!(n.network_config().unwrap(), Default::default());
    }
}
