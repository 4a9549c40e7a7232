//! Simulated dom0 networking: each host has four ports (`eth0`..`eth3`), bridge `xenbr0` on `eth0`
//! holding the address the manager reaches it at, and what ovm applies to it. Changes are checked
//! and applied by the same code as on real servers ([`crate::driver::NetworkTxns`]); a forced change that cuts the
//! management link makes the host unreachable until it is confirmed or undone.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::world::{HostState, SimHost};
use super::{SimConnection, SimOp, SIM_BRIDGE};
use crate::driver::network::{
    AddressConfig, Applied, ApplyOptions, BridgeConfig, NetChange, NetItem, NetKey, NetworkConfig,
    NetworkOps, RawNetwork, TxnState,
};
use crate::driver::NicSpec;
use crate::model::{EthernetPort, VmId};
use crate::sync::lock;
use crate::{Error, Result};

/// Ports per simulated host.
pub const SIM_PORTS: u64 = 4;

/// The MAC of port `i` of the `n`th host.
pub(super) fn port_mac(n: u64, i: u64) -> String {
    crate::model::format_mac(0x02_00_5e_00_00_00 + (n << 8) + i)
}

pub(super) fn initial_ports(n: u64) -> Vec<EthernetPort> {
    (0..SIM_PORTS)
        .map(|i| EthernetPort {
            speed_mbps: Some(10_000),
            carrier: Some(true),
            driver: Some("sim".into()),
            mtu: Some(1500),
            max_mtu: Some(9000),
            ..EthernetPort::new(&format!("eth{i}"), &port_mac(n, i))
        })
        .collect()
}

/// The address the manager reaches the `n`th host at.
pub(super) fn management_ip(n: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 200, (n / 250) as u8, (n % 250) as u8 + 1))
}

pub(super) fn initial_config(n: u64) -> NetworkConfig {
    NetworkConfig {
        bridges: vec![BridgeConfig { name: SIM_BRIDGE.into(), interfaces: vec!["eth0".into()], mtu: 1500 }],
        addresses: vec![AddressConfig {
            interface: SIM_BRIDGE.into(),
            address: management_ip(n),
            prefix: 16,
        }],
        ..Default::default()
    }
}

/// The host's configuration as its kernel would apply changes: no checks beyond what a kernel
/// refuses (the checks are [`crate::driver::network::check_changes`]'s).
struct SimRaw(Arc<SimHost>, super::SimWorld);

impl RawNetwork for SimRaw {
    fn ports(&self) -> Result<Vec<EthernetPort>> {
        Ok(lock(&self.0.state).ports.clone())
    }

    fn read(&self) -> Result<NetworkConfig> {
        Ok(lock(&self.0.state).network.clone())
    }

    fn apply_one(&self, change: &NetChange) -> Result<()> {
        let name = lock(&self.0.state).name.clone();
        self.1.before(SimOp::NetworkChange, &name)?;
        let mut st = lock(&self.0.state);
        let next =
            crate::driver::network::check_changes(&st.network, &st.ports, std::slice::from_ref(change))
                .map_err(|e| Error::backend(&st.name, format!("{change}: {e}")))?;
        st.network = next;
        sync_ports(&mut st);
        Ok(())
    }
}

/// Port MTUs follow the interfaces above them.
fn sync_ports(st: &mut HostState) {
    let net = st.network.clone();
    for p in &mut st.ports {
        let mtu = net
            .bonds
            .iter()
            .find(|b| b.ports.contains(&p.name))
            .map(|b| b.mtu)
            .or_else(|| net.bridges.iter().find(|b| b.interfaces.contains(&p.name)).map(|b| b.mtu));
        if let Some(m) = mtu {
            p.mtu = Some(m);
        }
    }
}

/// Whether every NIC's bridge exists on the host (a VIF on a missing bridge fails to plug).
pub(super) fn check_bridges(st: &HostState, nics: &[NicSpec]) -> Result<()> {
    for n in nics {
        let b = n.bridge.as_deref().unwrap_or(SIM_BRIDGE);
        if !st.network.bridges.iter().any(|x| x.name == b) {
            return Err(Error::backend(&st.name, format!("NIC {}: no bridge {b} on this server", n.mac)));
        }
    }
    Ok(())
}

impl NetworkOps for SimConnection {
    fn ports(&self) -> Result<Vec<EthernetPort>> {
        self.op(SimOp::Query, |st| Ok(st.ports.clone()))
    }

    fn network_config(&self) -> Result<NetworkConfig> {
        self.op(SimOp::Query, |st| Ok(st.network.clone()))
    }

    fn apply(&self, changes: &[NetChange], opts: &ApplyOptions) -> Result<Applied> {
        let ip = self.op(SimOp::Network, |st| Ok(st.management_ip))?;
        let host = self.host.clone();
        let on_cut: Arc<dyn Fn(bool) + Send + Sync> = Arc::new(move |cut| lock(&host.state).cut = cut);
        let opts = ApplyOptions { management: Some(ip), ..opts.clone() };
        self.host.net_txns.apply(
            Arc::new(SimRaw(self.host.clone(), self.world.clone())),
            changes,
            &opts,
            Some(on_cut),
        )
    }

    fn confirm(&self, txn: u64) -> Result<TxnState> {
        self.op(SimOp::Query, |_| Ok(()))?;
        self.host.net_txns.confirm(txn)
    }

    fn txn_state(&self, txn: u64) -> Result<TxnState> {
        self.op(SimOp::Query, |_| Ok(()))?;
        self.host.net_txns.state(txn)
    }

    fn management_address(&self) -> Option<IpAddr> {
        Some(lock(&self.host.state).management_ip)
    }
}

/// What tests do to a simulated host's ports.
impl super::SimWorld {
    /// Take a port away (as if its NIC were removed); `Err` if there is no such port.
    pub fn remove_port(&self, host: &str, port: &str) -> Result<()> {
        let h = self.host(host)?;
        let mut st = lock(&h.state);
        let before = st.ports.len();
        st.ports.retain(|p| p.name != port);
        if st.ports.len() == before {
            return Err(Error::backend(host, format!("no port {port}")));
        }
        Ok(())
    }

    /// Set a port's carrier.
    pub fn set_carrier(&self, host: &str, port: &str, up: bool) -> Result<()> {
        self.edit_port(host, port, |p| p.carrier = Some(up))
    }

    /// Set the largest MTU a port takes.
    pub fn set_max_mtu(&self, host: &str, port: &str, mtu: u32) -> Result<()> {
        self.edit_port(host, port, |p| p.max_mtu = Some(mtu))
    }

    /// Change what a host's port `port` reports.
    fn edit_port(&self, host: &str, port: &str, f: impl FnOnce(&mut EthernetPort)) -> Result<()> {
        let h = self.host(host)?;
        let mut st = lock(&h.state);
        let p = st
            .ports
            .iter_mut()
            .find(|p| p.name == port)
            .ok_or_else(|| Error::backend(host, format!("no port {port}")))?;
        f(p);
        Ok(())
    }

    /// A host's network configuration, read directly (what an administrator on it would see).
    pub fn network_config(&self, host: &str) -> Result<NetworkConfig> {
        Ok(lock(&self.host(host)?.state).network.clone())
    }

    /// Change a host's configuration behind the manager's back (drift), unchecked.
    pub fn tamper_network(&self, host: &str, change: NetChange) -> Result<()> {
        let h = self.host(host)?;
        let mut st = lock(&h.state);
        st.network = crate::driver::network::applied(&st.network, &[change]);
        Ok(())
    }

    /// The address the manager reaches a host at.
    pub fn management_ip(&self, host: &str) -> Result<IpAddr> {
        Ok(lock(&self.host(host)?.state).management_ip)
    }

    /// The NICs of a domain: (MAC, bridge).
    pub fn domain_nics(&self, vm: VmId) -> Vec<(String, String)> {
        for name in self.host_names() {
            if let Ok(h) = self.host(&name) {
                let st = lock(&h.state);
                if let Some(d) = st.domains.get(&vm) {
                    return d
                        .spec
                        .nics
                        .iter()
                        .map(|n| (n.mac.clone(), n.bridge.clone().unwrap_or_else(|| SIM_BRIDGE.into())))
                        .collect();
                }
            }
        }
        Vec::new()
    }
}

/// Silences "unused" for items only some configurations use.
#[allow(dead_code)]
fn _uses(_: NetItem, _: NetKey) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::network::{BondConfig, BondMonitor, VlanConfig};
    use crate::driver::sim::{SimDriver, DEFAULT_PASSWORD};
    use crate::driver::Driver;
    use crate::model::BondMode;
    use crate::ErrorKind;

    fn bond(ports: &[&str]) -> NetItem {
        NetItem::Bond(BondConfig {
            name: "bond0".into(),
            mode: BondMode::ActiveBackup,
            ports: ports.iter().map(|p| p.to_string()).collect(),
            mtu: 1500,
            monitor: BondMonitor::default(),
            primary: None,
        })
    }

    #[test]
    fn bonds_vlans_bridges_and_addresses_apply_all_or_nothing() {
        let d = SimDriver::default();
        let h = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let n = h.network().unwrap();
        assert_eq!(n.ports().unwrap().len(), 4);
        let initial = n.network_config().unwrap();
        let vlan = VlanConfig { parent: "bond0".into(), vlan_id: 300, mtu: 1500 };
        let changes = vec![
            NetChange::Put(bond(&["eth1", "eth2"])),
            NetChange::Put(NetItem::Vlan(vlan.clone())),
            NetChange::Put(NetItem::Bridge(BridgeConfig {
                name: "vmnet300".into(),
                interfaces: vec!["bond0.300".into()],
                mtu: 1500,
            })),
        ];
        assert_eq!(n.apply(&changes, &ApplyOptions::default()).unwrap(), Applied::Done);
        let cfg = n.network_config().unwrap();
        assert_eq!((cfg.bonds.len(), cfg.vlans.len(), cfg.bridges.len()), (1, 1, 2));
        // Refused, nothing changed: a member in use, a VLAN id out of range, a name collision,
        // an MTU the port refuses, removing what a bridge uses.
        let bad: Vec<(Vec<NetChange>, ErrorKind)> = vec![
            (
                vec![NetChange::Put(NetItem::Bond(BondConfig {
                    name: "bond1".into(),
                    ..match bond(&["eth2", "eth3"]) {
                        NetItem::Bond(b) => b,
                        _ => unreachable!(),
                    }
                }))],
                ErrorKind::Conflict,
            ),
            (
                vec![NetChange::Put(NetItem::Vlan(VlanConfig { vlan_id: 4095, ..vlan.clone() }))],
                ErrorKind::InvalidArgument,
            ),
            (
                vec![NetChange::Put(NetItem::Bridge(BridgeConfig {
                    name: "eth3".into(),
                    interfaces: vec![],
                    mtu: 1500,
                }))],
                ErrorKind::Conflict,
            ),
            (
                vec![NetChange::Put(NetItem::Bridge(BridgeConfig {
                    name: "big".into(),
                    interfaces: vec!["eth3".into()],
                    mtu: 9500,
                }))],
                ErrorKind::InvalidArgument,
            ),
            (vec![NetChange::Remove(NetKey::Vlan("bond0.300".into()))], ErrorKind::Conflict),
        ];
        for (c, kind) in bad {
            assert_eq!(n.apply(&c, &ApplyOptions::default()).unwrap_err().kind(), kind, "{c:?}");
            assert_eq!(n.network_config().unwrap(), cfg, "{c:?} changed nothing");
        }
        // Undone from the restore point; a failure part way (the kernel refuses the third
        // change) undoes the first two.
        let back = crate::driver::network::restore_point(&initial, &changes).changes(&cfg);
        n.apply(&back, &ApplyOptions::default()).unwrap();
        assert_eq!(n.network_config().unwrap(), initial);
        d.world().fail_after(SimOp::NetworkChange, Some("s1"), 2);
        let e = n.apply(&changes, &ApplyOptions::default()).unwrap_err();
        assert!(e.to_string().contains("vmnet300"), "{e}");
        assert_eq!(n.network_config().unwrap(), initial, "nothing left half-done");
    }

    #[test]
    fn a_change_that_cuts_management_is_refused_unless_forced_and_then_rolled_back() {
        let d = SimDriver::default();
        let h = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let n = h.network().unwrap();
        let before = n.network_config().unwrap();
        let ip = n.management_address().unwrap();
        let cut = vec![NetChange::Remove(NetKey::Address(AddressConfig {
            interface: SIM_BRIDGE.into(),
            address: ip,
            prefix: 16,
        }))];
        let e = n.apply(&cut, &ApplyOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert_eq!(n.network_config().unwrap(), before);
        let opts = ApplyOptions { force: true, confirm_within_ms: 2_000, management: None };
        let Applied::Tentative { txn, .. } = n.apply(&cut, &opts).unwrap() else { panic!("not tentative") };
        std::thread::sleep(std::time::Duration::from_millis(800));
        assert!(n.network_config().is_err(), "the host is cut off");
        std::thread::sleep(std::time::Duration::from_millis(2_500));
        assert_eq!(n.network_config().unwrap(), before, "rolled back");
        assert!(matches!(n.txn_state(txn).unwrap(), TxnState::RolledBack { .. }));
        assert!(matches!(n.confirm(txn).unwrap(), TxnState::RolledBack { .. }), "too late to confirm");
        // Confirmed in time, it stays (a forced change that does not cut is applied at once).
        let add = vec![NetChange::Put(NetItem::Address(AddressConfig {
            interface: "eth3".into(),
            address: "192.0.2.9".parse().unwrap(),
            prefix: 24,
        }))];
        assert_eq!(n.apply(&add, &opts).unwrap(), Applied::Done);
    }
}
