//! From the model to the servers: what each server's network configuration must be
//! ([`desired`], pure), and the jobs that change the model and the servers together — checked on
//! every server first, then applied server by server with each server's undo journaled before
//! its change, the inventory written last.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::driver::network::{
    check_changes, cuts_management, plan, restore_point, AddressConfig, Applied, ApplyOptions, BondConfig,
    BridgeConfig, NetChange, NetKey, NetworkConfig, RestorePoint, TxnState, VlanConfig,
};
use crate::job::{ServerUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// Functions that need an address on each member.
pub(crate) fn addressed(f: NetworkFunction) -> bool {
    !matches!(f, NetworkFunction::VirtualMachine)
}

/// The interface name of a network member.
pub(crate) fn member_interface(inv: &Inventory, m: NetworkMember) -> Result<(ServerId, String, Addressing)> {
    Ok(match m {
        NetworkMember::Port(p) => {
            let p = inv.get::<Port>(p)?;
            (p.server, p.interface.clone(), p.addressing.clone())
        }
        NetworkMember::Bond(b) => {
            let b = inv.get::<BondPort>(b)?;
            (b.server, b.interface.clone(), b.addressing.clone())
        }
        NetworkMember::Vlan(v) => {
            let v = inv.get::<VlanInterface>(v)?;
            (v.server, vlan_name(inv, v)?, v.addressing.clone())
        }
    })
}

fn parent_interface(inv: &Inventory, p: VlanParent) -> Result<String> {
    Ok(match p {
        VlanParent::Port(p) => inv.get::<Port>(p)?.interface.clone(),
        VlanParent::Bond(b) => inv.get::<BondPort>(b)?.interface.clone(),
    })
}

fn vlan_name(inv: &Inventory, v: &VlanInterface) -> Result<String> {
    Ok(format!("{}.{}", parent_interface(inv, v.parent)?, v.vlan_id))
}

/// What server `server`'s network configuration must hold by the model: its bonds and VLAN
/// interfaces; for each network with members on it, a bridge of those members (networks carrying
/// VM traffic) and the members' static addresses (on the bridge, or on the member itself).
pub(crate) fn desired(inv: &Inventory, server: ServerId) -> Result<NetworkConfig> {
    let mut cfg = NetworkConfig::default();
    // The MTU each interface needs: the largest of the networks over it.
    let mut need: std::collections::HashMap<String, u32> = Default::default();
    let mut addresses = Vec::new();
    for n in inv.networks.iter() {
        let mut members = Vec::new();
        for m in &n.members {
            let (s, iface, addressing) = member_interface(inv, *m)?;
            if s != server {
                continue;
            }
            members.push(iface.clone());
            let e = need.entry(iface.clone()).or_default();
            *e = (*e).max(u32::from(n.mtu));
            let on = if n.functions.contains(&NetworkFunction::VirtualMachine) {
                n.bridge.clone()
            } else {
                iface.clone()
            };
            match addressing {
                Addressing::Static { address, prefix } => {
                    addresses.push(AddressConfig { interface: on, address, prefix });
                }
                Addressing::Dhcp => {
                    return Err(Error::Unsupported {
                        what: format!(
                            "DHCP on {iface} (network {:?}): ovm configures static addresses",
                            n.name
                        ),
                    })
                }
                // (A member of an addressed network without an address is refused when the
                // network changes: see `check_addresses`.)
                Addressing::None => {}
            }
        }
        if n.functions.contains(&NetworkFunction::VirtualMachine) && !members.is_empty() {
            cfg.bridges.push(BridgeConfig {
                name: n.bridge.clone(),
                interfaces: members,
                mtu: u32::from(n.mtu),
            });
        }
    }
    for v in inv.vlan_interfaces.iter().filter(|v| v.server == server) {
        let name = vlan_name(inv, v)?;
        let mtu = need.get(&name).copied().unwrap_or(1500);
        let parent = parent_interface(inv, v.parent)?;
        let e = need.entry(parent.clone()).or_default();
        *e = (*e).max(mtu);
        if let Addressing::Static { address, prefix } = v.addressing {
            if !addresses.iter().any(|a| a.address == address) {
                addresses.push(AddressConfig { interface: name.clone(), address, prefix });
            }
        }
        cfg.vlans.push(VlanConfig { parent, vlan_id: v.vlan_id, mtu });
    }
    for b in inv.bond_ports.iter().filter(|b| b.server == server) {
        let mut ports: Vec<String> = b
            .ports
            .iter()
            .map(|p| inv.get::<Port>(*p).map(|p| p.interface.clone()))
            .collect::<Result<_>>()?;
        // The first port is the primary of an active-backup bond; the kernel lists members by name.
        let primary = (b.mode == BondMode::ActiveBackup).then(|| ports[0].clone());
        ports.sort();
        let mtu = u32::from(b.mtu).max(need.get(&b.interface).copied().unwrap_or(0));
        if let Addressing::Static { address, prefix } = b.addressing {
            if !addresses.iter().any(|a| a.address == address) {
                addresses.push(AddressConfig { interface: b.interface.clone(), address, prefix });
            }
        }
        cfg.bonds.push(BondConfig {
            name: b.interface.clone(),
            mode: b.mode,
            primary,
            ports,
            mtu,
            monitor: b.monitor.clone(),
        });
    }
    // VLAN MTUs are known once every network is seen; bond MTUs once every VLAN is.
    cfg.addresses = addresses;
    cfg.sort();
    Ok(cfg)
}

/// The keys of a configuration.
fn keys(cfg: &NetworkConfig) -> BTreeSet<NetKey> {
    cfg.items().into_iter().map(|i| i.key()).collect()
}

/// How a network change is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkApply {
    /// Apply a change that would cut the manager's link to a server; the server undoes it unless
    /// the manager confirms it over a new connection within `confirm_within`.
    pub force: bool,
    /// Time to confirm a forced change (zero: the default, 30 s).
    pub confirm_within: Duration,
}

/// One server's part of a change: what it must have after, and what it must no longer have.
#[derive(Debug, Clone)]
struct ServerPart {
    server: ServerId,
    name: String,
    desired: NetworkConfig,
    remove: Vec<NetKey>,
}

impl Manager {
    /// A job that writes `puts` and removes `removes` in the inventory and makes every server
    /// whose configuration that changes so. Everything is checked before anything is done.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn submit_network_change(
        &self,
        kind: &str,
        summary: &str,
        puts: Vec<Object>,
        removes: Vec<ObjectRef>,
        result: Option<ObjectRef>,
        how: NetworkApply,
    ) -> Result<JobHandle> {
        let (parts, targets) = {
            let st = self.state();
            let before = st.inv.clone();
            let mut after = before.clone();
            for r in &removes {
                after.check_remove(*r)?;
                after.remove(*r)?;
            }
            for o in &puts {
                o.validate()?;
                after.check_put(o)?;
                after.put(o.clone())?;
            }
            for n in after.networks.iter() {
                check_bridge_unique(&after, n)?;
            }
            for o in &puts {
                check_addresses(&after, o)?;
            }
            let mut parts = Vec::new();
            for s in after.servers.iter() {
                let d0 = desired(&before, s.id).unwrap_or_default();
                let d1 = desired(&after, s.id)?;
                if d0 == d1 {
                    continue;
                }
                let remove: Vec<NetKey> = keys(&d0).difference(&keys(&d1)).cloned().collect();
                if !st.conns.contains_key(&s.id) {
                    return Err(Error::state(
                        s.object_ref(),
                        "connected (its network must change)",
                        s.power_state,
                    ));
                }
                parts.push(ServerPart { server: s.id, name: s.name.clone(), desired: d1, remove });
            }
            // Server by server in name order (a failure's place is predictable).
            parts.sort_by(|a, b| a.name.cmp(&b.name));
            let mut targets: Vec<ObjectRef> = puts.iter().map(|o| o.object_ref()).collect();
            targets.extend(removes.iter().copied());
            targets.extend(parts.iter().map(|p| ObjectRef::new(ObjectKind::Server, p.server)));
            targets.sort();
            targets.dedup();
            (parts, targets)
        };
        // Refused at once, before any job, when a server says no (read only).
        check_parts(self, &parts, how)?;
        let check = parts.clone();
        let mut spec = JobSpec::new(kind, summary, targets)
            .step("check every server", move |ctx| check_parts(ctx.mgr, &check, how));
        for p in parts {
            spec = spec.step(&format!("configure {}", p.name), move |ctx| {
                let hv = ctx.hv(p.server)?;
                let net = network_of(&*hv)?;
                let actual = net.network_config()?;
                let changes = plan(&actual, &p.desired, &p.remove);
                if changes.is_empty() {
                    return Ok(());
                }
                ctx.message(format!("{}: {}", p.name, describe(&changes)));
                ctx.will_do(Undo::Server(ServerUndo::Network {
                    server: p.server.0,
                    point: Box::new(restore_point(&actual, &changes)),
                }))?;
                apply_on(ctx.mgr, p.server, &changes, how).map_err(|e| on_server(&p.name, e))
            });
        }
        spec = spec.step("record", move |ctx| {
            ctx.tx(|tx| {
                for r in removes {
                    tx.remove(r)?;
                }
                for o in puts {
                    tx.put(o)?;
                }
                Ok(())
            })?;
            if let Some(r) = result {
                ctx.set_result(r);
            }
            Ok(())
        });
        self.submit(spec)
    }

    /// Converge a server's network configuration to the model: put back what is missing or
    /// different (drift); items the model does not name are left alone.
    pub fn reapply_network(&self, server: ServerId) -> Result<JobHandle> {
        let s = self.server(server)?;
        let desired = self.read(|inv| desired(inv, server))?;
        let name = s.name.clone();
        self.hypervisor(server)?;
        self.submit(
            JobSpec::new(
                "ReapplyNetwork",
                &format!("Re-apply the network configuration of {name}"),
                vec![s.object_ref()],
            )
            .step("configure", move |ctx| {
                let hv = ctx.hv(server)?;
                let net = network_of(&*hv)?;
                let actual = net.network_config()?;
                let changes = plan(&actual, &desired, &[]);
                if changes.is_empty() {
                    return Ok(());
                }
                check_changes(&actual, &net.ports()?, &changes).map_err(|e| on_server(&name, e))?;
                ctx.message(format!("{name}: {}", describe(&changes)));
                ctx.will_do(Undo::Server(ServerUndo::Network {
                    server: server.0,
                    point: Box::new(restore_point(&actual, &changes)),
                }))?;
                apply_on(ctx.mgr, server, &changes, NetworkApply::default())
                    .map_err(|e| on_server(&name, e))?;
                ctx.tx(|tx| {
                    tx.event(
                        ObjectRef::new(ObjectKind::Server, server),
                        Severity::Info,
                        "network.reapplied",
                        format!("Network configuration of {name} re-applied: {}", describe(&changes)),
                    );
                    Ok(())
                })
            }),
        )
    }

    /// How a server's network configuration differs from the model, in words (empty: as it should
    /// be). Reads the server.
    pub fn network_drift(&self, server: ServerId) -> Result<Vec<String>> {
        let desired = self.read(|inv| desired(inv, server))?;
        let hv = self.hypervisor(server)?;
        let actual = network_of(&*hv)?.network_config()?;
        Ok(crate::driver::network::drift(&actual, &desired))
    }

    /// The configuration the model gives a server (what [`Manager::reapply_network`] converges it
    /// to).
    pub fn desired_network_config(&self, server: ServerId) -> Result<NetworkConfig> {
        self.server(server)?;
        self.read(|inv| desired(inv, server))
    }

    /// The network configuration a server has now (read from it).
    pub fn server_network_config(&self, server: ServerId) -> Result<NetworkConfig> {
        let hv = self.hypervisor(server)?;
        network_of(&*hv)?.network_config()
    }

    /// The address of a server on the network carrying `function` (its static address there).
    pub fn network_address(&self, server: ServerId, function: NetworkFunction) -> Option<std::net::IpAddr> {
        self.read(|inv| {
            for n in inv.networks.iter().filter(|n| n.functions.contains(&function)) {
                for m in &n.members {
                    if let Ok((s, _, Addressing::Static { address, .. })) = member_interface(inv, *m) {
                        if s == server {
                            return Some(address);
                        }
                    }
                }
            }
            None
        })
    }
}

/// A network carrying management, storage, live-migrate or heartbeat traffic needs a static
/// address on each member: checked for the networks a change writes, and the networks of the
/// members it writes.
fn check_addresses(inv: &Inventory, o: &Object) -> Result<()> {
    let member = match o {
        Object::Port(p) => Some(NetworkMember::Port(p.id)),
        Object::BondPort(b) => Some(NetworkMember::Bond(b.id)),
        Object::VlanInterface(v) => Some(NetworkMember::Vlan(v.id)),
        _ => None,
    };
    for n in inv.networks.iter() {
        if !matches!(o, Object::Network(x) if x.id == n.id) && !member.is_some_and(|m| n.members.contains(&m))
        {
            continue;
        }
        let Some(f) = n.functions.iter().find(|f| addressed(**f)) else { continue };
        for m in &n.members {
            let (s, iface, addressing) = member_interface(inv, *m)?;
            if addressing == Addressing::None {
                let server = inv.get::<Server>(s).map(|s| s.name.clone()).unwrap_or_default();
                return Err(Error::invalid(
                    "addressing",
                    format!(
                        "network {:?} carries {f:?}, so its member {iface} on server {server} needs a static address \
                         (set_addressing) first",
                        n.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Checks each server's part against what the server has: the changes are valid there and, unless
/// forced, do not cut the manager's link to it.
fn check_parts(mgr: &Manager, parts: &[ServerPart], how: NetworkApply) -> Result<()> {
    for p in parts {
        let hv = mgr.hypervisor(p.server)?;
        let net = network_of(&*hv)?;
        let actual = net.network_config()?;
        let ports = net.ports()?;
        let changes = plan(&actual, &p.desired, &p.remove);
        check_changes(&actual, &ports, &changes).map_err(|e| on_server(&p.name, e))?;
        if !how.force {
            if let Some(why) = net.management_address().and_then(|ip| cuts_management(&actual, &changes, ip))
            {
                return Err(Error::conflict(format!(
                    "server {}: refused: the change would cut the manager's link to it: {why}; force it to apply it \
                     under a rollback timer",
                    p.name
                )));
            }
        }
    }
    Ok(())
}

fn check_bridge_unique(inv: &Inventory, n: &Network) -> Result<()> {
    if !n.functions.contains(&NetworkFunction::VirtualMachine) {
        return Ok(());
    }
    if let Some(o) = inv.networks.iter().find(|o| {
        o.id != n.id && o.bridge == n.bridge && o.functions.contains(&NetworkFunction::VirtualMachine)
    }) {
        return Err(Error::conflict(format!("bridge {} is network {:?}'s already", n.bridge, o.name)));
    }
    Ok(())
}

pub(crate) fn network_of(hv: &dyn crate::driver::ServerConnection) -> Result<&dyn crate::driver::NetworkOps> {
    hv.network().ok_or_else(|| Error::Unsupported { what: "network configuration on this server".into() })
}

fn on_server(name: &str, e: Error) -> Error {
    let inner = crate::driver::network::inner_message(&e);
    match e.kind() {
        crate::ErrorKind::InvalidArgument => Error::invalid("network", format!("server {name}: {inner}")),
        crate::ErrorKind::Conflict => Error::conflict(format!("server {name}: {inner}")),
        crate::ErrorKind::Unsupported => e,
        _ => Error::backend(name, inner),
    }
}

fn describe(changes: &[NetChange]) -> String {
    changes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
}

/// Applies `changes` on a server; a tentative (forced) change is confirmed over a new connection,
/// and if the server undid it (the manager could not reach it in time), that is the error.
pub(crate) fn apply_on(
    mgr: &Manager,
    server: ServerId,
    changes: &[NetChange],
    how: NetworkApply,
) -> Result<()> {
    let hv = mgr.hypervisor(server)?;
    let opts = ApplyOptions {
        force: how.force,
        confirm_within_ms: how.confirm_within.as_millis() as u64,
        management: None,
    };
    let applied = network_of(&*hv)?.apply(changes, &opts)?;
    drop(hv);
    let Applied::Tentative { txn, confirm_within_ms } = applied else { return Ok(()) };
    let address = mgr.get::<Server>(server)?.address.clone();
    let driver = mgr.driver_for(&address)?;
    let within = Duration::from_millis(confirm_within_ms);
    let start = Instant::now();
    // Confirm over a new connection: the old one may outlive a cut that new ones cannot cross.
    while start.elapsed() < within {
        if let Ok(conn) = driver.reconnect(&address, mgr.id()) {
            if let Some(n) = conn.network() {
                match n.confirm(txn) {
                    Ok(TxnState::Confirmed) => return Ok(()),
                    Ok(TxnState::RolledBack { reason }) => return Err(rolled_back(mgr, server, &reason)),
                    _ => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Not confirmed: the server undoes it on its own. Wait to hear that it did.
    let give_up = Instant::now() + within + Duration::from_secs(120);
    while Instant::now() < give_up {
        if let Ok(conn) = driver.reconnect(&address, mgr.id()) {
            if let Some(n) = conn.network() {
                match n.txn_state(txn) {
                    Ok(TxnState::RolledBack { reason }) => return Err(rolled_back(mgr, server, &reason)),
                    Ok(TxnState::Confirmed) => return Ok(()),
                    _ => {}
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(Error::backend(
        &address,
        format!("a forced network change could not be confirmed and the server has not said that it undid it (change {txn})"),
    ))
}

fn rolled_back(mgr: &Manager, server: ServerId, reason: &str) -> Error {
    let _ = mgr.raise_event(
        ObjectRef::new(ObjectKind::Server, server),
        Severity::Warning,
        "network.rolled_back",
        &format!("A forced network change lost the manager's link to the server, which undid it: {reason}"),
    );
    Error::conflict(format!(
        "the change cut the manager's link to the server and was rolled back by the server: {reason}"
    ))
}

/// Undo of a network change on a server: back to the restore point, from whatever it has now.
pub(crate) fn undo_network(mgr: &Manager, server: ServerId, point: &RestorePoint) -> Result<()> {
    let hv = mgr.hypervisor(server)?;
    let actual = network_of(&*hv)?.network_config()?;
    let changes = point.changes(&actual);
    drop(hv);
    if changes.is_empty() {
        return Ok(());
    }
    apply_on(mgr, server, &changes, NetworkApply { force: true, confirm_within: Duration::ZERO })
}
