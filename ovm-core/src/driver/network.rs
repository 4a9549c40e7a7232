//! Network configuration of a server: its ports, and the bonds, VLAN interfaces, bridges and static
//! addresses in dom0.
//!
//! A server's configuration is a [`NetworkConfig`]: plain data, read back from the server and
//! changed by lists of [`NetChange`]s (put an item, replacing the item of the same key; remove an
//! item). Everything here that decides — whether changes are valid against a configuration
//! ([`check_changes`]), what undoes them ([`restore_point`]), the changes from one configuration to
//! another ([`plan`]), whether they would cut the link the manager reaches the server over
//! ([`cuts_management`]) — is pure, shared by every backend and by the manager.
//!
//! Backends implement [`RawNetwork`] (read the server, apply one change) and serve [`NetworkOps`]
//! through [`NetworkTxns`], which applies lists atomically (a failure undoes what was applied),
//! refuses a change that would cut the management link unless forced, and applies a forced one
//! under a rollback timer: unless confirmed over a new connection in time, it is undone on the
//! server's own initiative (as `netplan try` does).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::model::{BondMode, BondMonitor, EthernetPort};
use crate::{Error, Result};

/// The largest MTU ovm configures (jumbo frames).
pub const MAX_MTU: u32 = 9000;
/// The smallest MTU (IPv4's minimum).
pub const MIN_MTU: u32 = 68;

/// A bond in dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BondConfig {
    /// Bond name, e.g. `bond0`.
    pub name: String,
    /// Mode.
    pub mode: BondMode,
    /// Member ports.
    pub ports: Vec<String>,
    /// MTU.
    pub mtu: u32,
    /// Link monitoring.
    pub monitor: BondMonitor,
    /// The preferred member (active-backup).
    pub primary: Option<String>,
}

/// A VLAN interface in dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanConfig {
    /// The interface it tags on (port or bond).
    pub parent: String,
    /// VLAN id, 1..=4094.
    pub vlan_id: u16,
    /// MTU.
    pub mtu: u32,
}

impl VlanConfig {
    /// Its interface name, `PARENT.ID`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.parent, self.vlan_id)
    }
}

/// A bridge in dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    /// Bridge name, e.g. `xenbr0`.
    pub name: String,
    /// Interfaces in it (ports, bonds or VLAN interfaces; not the VMs' interfaces).
    pub interfaces: Vec<String>,
    /// MTU.
    pub mtu: u32,
}

/// A static address of an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddressConfig {
    /// The interface.
    pub interface: String,
    /// The address.
    pub address: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl std::fmt::Display for AddressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on {}", self.address, self.prefix, self.interface)
    }
}

/// The network configuration of dom0 (each list sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Bonds.
    pub bonds: Vec<BondConfig>,
    /// VLAN interfaces.
    pub vlans: Vec<VlanConfig>,
    /// Bridges.
    pub bridges: Vec<BridgeConfig>,
    /// Static addresses (of any interface but loopback; link-local IPv6 addresses are left out).
    pub addresses: Vec<AddressConfig>,
}

/// One item of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetItem {
    /// A bond.
    Bond(BondConfig),
    /// A VLAN interface.
    Vlan(VlanConfig),
    /// A bridge.
    Bridge(BridgeConfig),
    /// An address.
    Address(AddressConfig),
}

/// What identifies an item: its interface name, or the address itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetKey {
    /// A bond by name.
    Bond(String),
    /// A VLAN interface by name (`PARENT.ID`).
    Vlan(String),
    /// A bridge by name.
    Bridge(String),
    /// An address.
    Address(AddressConfig),
}

impl std::fmt::Display for NetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetKey::Bond(n) => write!(f, "bond {n}"),
            NetKey::Vlan(n) => write!(f, "VLAN interface {n}"),
            NetKey::Bridge(n) => write!(f, "bridge {n}"),
            NetKey::Address(a) => write!(f, "address {a}"),
        }
    }
}

impl NetItem {
    /// Its key.
    pub fn key(&self) -> NetKey {
        match self {
            NetItem::Bond(b) => NetKey::Bond(b.name.clone()),
            NetItem::Vlan(v) => NetKey::Vlan(v.name()),
            NetItem::Bridge(b) => NetKey::Bridge(b.name.clone()),
            NetItem::Address(a) => NetKey::Address(a.clone()),
        }
    }
    /// The interface it is or sits on.
    pub fn interface(&self) -> String {
        match self {
            NetItem::Bond(b) => b.name.clone(),
            NetItem::Vlan(v) => v.name(),
            NetItem::Bridge(b) => b.name.clone(),
            NetItem::Address(a) => a.interface.clone(),
        }
    }
}

impl NetKey {
    /// The interface it names or sits on.
    pub fn interface(&self) -> &str {
        match self {
            NetKey::Bond(n) | NetKey::Vlan(n) | NetKey::Bridge(n) => n,
            NetKey::Address(a) => &a.interface,
        }
    }
}

/// A change of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetChange {
    /// Create the item, or make the item of the same key what it says.
    Put(NetItem),
    /// Remove an item.
    Remove(NetKey),
}

impl std::fmt::Display for NetChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetChange::Put(i) => write!(f, "put {}", i.key()),
            NetChange::Remove(k) => write!(f, "remove {k}"),
        }
    }
}

impl NetworkConfig {
    /// The item of a key.
    pub fn get(&self, key: &NetKey) -> Option<NetItem> {
        match key {
            NetKey::Bond(n) => self.bonds.iter().find(|b| &b.name == n).cloned().map(NetItem::Bond),
            NetKey::Vlan(n) => self.vlans.iter().find(|v| &v.name() == n).cloned().map(NetItem::Vlan),
            NetKey::Bridge(n) => self.bridges.iter().find(|b| &b.name == n).cloned().map(NetItem::Bridge),
            NetKey::Address(a) => self.addresses.iter().find(|x| *x == a).cloned().map(NetItem::Address),
        }
    }

    /// Every item.
    pub fn items(&self) -> Vec<NetItem> {
        let mut v: Vec<NetItem> = self.bonds.iter().cloned().map(NetItem::Bond).collect();
        v.extend(self.vlans.iter().cloned().map(NetItem::Vlan));
        v.extend(self.bridges.iter().cloned().map(NetItem::Bridge));
        v.extend(self.addresses.iter().cloned().map(NetItem::Address));
        v
    }

    fn put(&mut self, item: NetItem) {
        self.remove(&item.key());
        match item {
            NetItem::Bond(b) => self.bonds.push(b),
            NetItem::Vlan(v) => self.vlans.push(v),
            NetItem::Bridge(b) => self.bridges.push(b),
            NetItem::Address(a) => self.addresses.push(a),
        }
        self.sort();
    }

    fn remove(&mut self, key: &NetKey) {
        match key {
            NetKey::Bond(n) => self.bonds.retain(|b| &b.name != n),
            NetKey::Vlan(n) => self.vlans.retain(|v| &v.name() != n),
            NetKey::Bridge(n) => self.bridges.retain(|b| &b.name != n),
            NetKey::Address(a) => self.addresses.retain(|x| x != a),
        }
    }

    /// Sorts every list (configurations compare equal whatever order they were read in).
    pub fn sort(&mut self) {
        self.bonds.sort_by(|a, b| a.name.cmp(&b.name));
        self.vlans.sort_by_key(|v| v.name());
        self.bridges.sort_by(|a, b| a.name.cmp(&b.name));
        self.addresses.sort();
        for b in &mut self.bridges {
            b.interfaces.sort();
        }
        for b in &mut self.bonds {
            b.ports.sort();
        }
    }

    /// The interface `name` is enslaved to (a bond or a bridge), if any.
    pub fn controller_of(&self, name: &str) -> Option<String> {
        self.bonds.iter().find(|b| b.ports.iter().any(|p| p == name)).map(|b| b.name.clone()).or_else(|| {
            self.bridges.iter().find(|b| b.interfaces.iter().any(|i| i == name)).map(|b| b.name.clone())
        })
    }

    /// What uses interface `name`: a controller, a VLAN on it, or an address on it.
    pub fn users_of(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self.controller_of(name).into_iter().collect();
        v.extend(
            self.vlans.iter().filter(|x| x.parent == name).map(|x| format!("VLAN interface {}", x.name())),
        );
        v.extend(self.addresses.iter().filter(|a| a.interface == name).map(|a| format!("address {a}")));
        v
    }

    /// `name` and every interface below it (bridge and bond members, VLAN parents), recursively.
    pub fn lower_interfaces(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(n) = todo.pop() {
            if !out.insert(n.clone()) {
                continue;
            }
            if let Some(b) = self.bonds.iter().find(|b| b.name == n) {
                todo.extend(b.ports.iter().cloned());
            }
            if let Some(b) = self.bridges.iter().find(|b| b.name == n) {
                todo.extend(b.interfaces.iter().cloned());
            }
            if let Some(v) = self.vlans.iter().find(|v| v.name() == n) {
                todo.push(v.parent.clone());
            }
        }
        out
    }

    /// The interface holding `address`, if any.
    pub fn interface_of(&self, address: IpAddr) -> Option<&str> {
        self.addresses.iter().find(|a| a.address == address).map(|a| a.interface.as_str())
    }
}

/// Whether `name` can be a Linux interface name: 1 to 15 bytes of `[A-Za-z0-9_.-]`.
pub fn check_interface_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(Error::invalid(
            field,
            format!("{name:?} is not an interface name (1-15 characters [A-Za-z0-9_.-])"),
        ));
    }
    Ok(())
}

fn check_mtu(what: &str, mtu: u32, ports: &[&EthernetPort]) -> Result<()> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(Error::invalid("mtu", format!("{what}: MTU {mtu} is not within {MIN_MTU}..={MAX_MTU}")));
    }
    for p in ports {
        if let Some(max) = p.max_mtu.filter(|m| mtu > *m) {
            return Err(Error::invalid(
                "mtu",
                format!("{what}: port {} takes an MTU of at most {max}, not {mtu}", p.name),
            ));
        }
    }
    Ok(())
}

/// The ports below interface `name` in `cfg`.
fn ports_below<'a>(cfg: &NetworkConfig, ports: &'a [EthernetPort], name: &str) -> Vec<&'a EthernetPort> {
    let lower = cfg.lower_interfaces(name);
    ports.iter().filter(|p| lower.contains(&p.name)).collect()
}

/// Checks that `changes`, applied in order to `config` on a server with `ports`, are valid, and
/// returns the configuration they lead to. Refused (typed, nothing applied): bad names, VLAN ids
/// outside 1–4094, MTUs outside 68–9000 or above what a port takes, members that do not exist or
/// are already used by a bond or bridge, names that collide with a port or another interface,
/// removing what does not exist or what something still uses.
pub fn check_changes(
    config: &NetworkConfig,
    ports: &[EthernetPort],
    changes: &[NetChange],
) -> Result<NetworkConfig> {
    let mut cfg = config.clone();
    let is_port = |n: &str| ports.iter().any(|p| p.name == n);
    for change in changes {
        let exists = |cfg: &NetworkConfig, n: &str| {
            is_port(n)
                || cfg.bonds.iter().any(|b| b.name == n)
                || cfg.vlans.iter().any(|v| v.name() == n)
                || cfg.bridges.iter().any(|b| b.name == n)
        };
        match change {
            NetChange::Put(item) => {
                let key = item.key();
                let name = item.interface();
                check_interface_name("name", &name)?;
                if !matches!(item, NetItem::Address(_)) {
                    // A new interface must not collide with anything of another kind.
                    if is_port(&name) {
                        return Err(Error::conflict(format!("{key}: {name} is the name of a port")));
                    }
                    let same_kind = cfg.get(&key).is_some();
                    if !same_kind && exists(&cfg, &name) {
                        return Err(Error::conflict(format!("{key}: an interface named {name} exists")));
                    }
                }
                match item {
                    NetItem::Bond(b) => {
                        if b.ports.is_empty() {
                            return Err(Error::invalid("ports", format!("bond {}: no member ports", b.name)));
                        }
                        let mut seen = BTreeSet::new();
                        for p in &b.ports {
                            if !is_port(p) {
                                return Err(Error::invalid(
                                    "ports",
                                    format!("bond {}: {p} is not a port of this server", b.name),
                                ));
                            }
                            if !seen.insert(p) {
                                return Err(Error::invalid(
                                    "ports",
                                    format!("bond {}: port {p} listed twice", b.name),
                                ));
                            }
                            if let Some(c) = cfg.controller_of(p).filter(|c| *c != b.name) {
                                return Err(Error::conflict(format!(
                                    "bond {}: port {p} is already in {c}",
                                    b.name
                                )));
                            }
                            let other: Vec<String> =
                                cfg.users_of(p).into_iter().filter(|u| *u != b.name).collect();
                            if !other.is_empty() {
                                return Err(Error::conflict(format!(
                                    "bond {}: port {p} is in use ({})",
                                    b.name,
                                    other.join(", ")
                                )));
                            }
                        }
                        if let Some(pr) = b.primary.as_ref().filter(|pr| !b.ports.contains(pr)) {
                            return Err(Error::invalid(
                                "primary",
                                format!("bond {}: primary {pr} is not a member", b.name),
                            ));
                        }
                        if matches!(b.monitor, BondMonitor::Arp { .. }) && b.mode != BondMode::ActiveBackup {
                            return Err(Error::invalid(
                                "monitor",
                                format!(
                                    "bond {}: ARP monitoring works in active-backup mode only ({} uses MII)",
                                    b.name,
                                    b.mode.linux_name()
                                ),
                            ));
                        }
                        if b.primary.is_some() && b.mode == BondMode::Lacp {
                            return Err(Error::invalid(
                                "primary",
                                format!("bond {}: an 802.3ad bond has no primary", b.name),
                            ));
                        }
                        if let BondMonitor::Arp { interval_ms, targets } = &b.monitor {
                            if targets.is_empty() || targets.len() > 16 || *interval_ms == 0 {
                                return Err(Error::invalid(
                                    "monitor",
                                    format!(
                                        "bond {}: ARP monitoring needs 1 to 16 targets and an interval",
                                        b.name
                                    ),
                                ));
                            }
                        }
                        let members: Vec<&EthernetPort> =
                            ports.iter().filter(|p| b.ports.contains(&p.name)).collect();
                        check_mtu(&format!("bond {}", b.name), b.mtu, &members)?;
                    }
                    NetItem::Vlan(v) => {
                        if !(1..=4094).contains(&v.vlan_id) {
                            return Err(Error::invalid(
                                "vlan_id",
                                format!("VLAN id {} is not within 1..=4094", v.vlan_id),
                            ));
                        }
                        if !exists(&cfg, &v.parent) || cfg.bridges.iter().any(|b| b.name == v.parent) {
                            return Err(Error::invalid(
                                "parent",
                                format!("VLAN interface {}: no port or bond {}", v.name(), v.parent),
                            ));
                        }
                        if let Some(c) = cfg.bonds.iter().find(|b| b.ports.contains(&v.parent)) {
                            return Err(Error::conflict(format!(
                                "VLAN interface {}: {} is a member of {}",
                                v.name(),
                                v.parent,
                                c.name
                            )));
                        }
                        check_mtu(
                            &format!("VLAN interface {}", v.name()),
                            v.mtu,
                            &ports_below(&cfg, ports, &v.parent),
                        )?;
                    }
                    NetItem::Bridge(b) => {
                        let mut seen = BTreeSet::new();
                        for i in &b.interfaces {
                            if !exists(&cfg, i) || cfg.bridges.iter().any(|x| x.name == *i) || *i == b.name {
                                return Err(Error::invalid(
                                    "interfaces",
                                    format!("bridge {}: no port, bond or VLAN interface {i}", b.name),
                                ));
                            }
                            if !seen.insert(i) {
                                return Err(Error::invalid(
                                    "interfaces",
                                    format!("bridge {}: {i} listed twice", b.name),
                                ));
                            }
                            if let Some(c) = cfg.controller_of(i).filter(|c| *c != b.name) {
                                return Err(Error::conflict(format!(
                                    "bridge {}: {i} is already in {c}",
                                    b.name
                                )));
                            }
                            if let Some(a) = cfg.addresses.iter().find(|a| a.interface == *i) {
                                return Err(Error::conflict(format!(
                                    "bridge {}: {i} has an address ({a}); a bridged interface carries none",
                                    b.name
                                )));
                            }
                        }
                        let below: Vec<&EthernetPort> =
                            b.interfaces.iter().flat_map(|i| ports_below(&cfg, ports, i)).collect();
                        check_mtu(&format!("bridge {}", b.name), b.mtu, &below)?;
                    }
                    NetItem::Address(a) => {
                        if !exists(&cfg, &a.interface) {
                            return Err(Error::invalid(
                                "interface",
                                format!("address {a}: no interface {}", a.interface),
                            ));
                        }
                        let max = if a.address.is_ipv4() { 32 } else { 128 };
                        if a.prefix == 0
                            || a.prefix > max
                            || a.address.is_unspecified()
                            || a.address.is_multicast()
                            || a.address.is_loopback()
                        {
                            return Err(Error::invalid("address", format!("{a} is not a usable address")));
                        }
                        if let Some(c) = cfg.controller_of(&a.interface) {
                            return Err(Error::conflict(format!("address {a}: {} is in {c}", a.interface)));
                        }
                        if let Some(o) = cfg
                            .addresses
                            .iter()
                            .find(|x| x.address == a.address && x.interface != a.interface)
                        {
                            return Err(Error::conflict(format!(
                                "address {a}: the server has it already ({o})"
                            )));
                        }
                    }
                }
                cfg.put(item.clone());
            }
            NetChange::Remove(key) => {
                if cfg.get(key).is_none() {
                    return Err(Error::invalid("change", format!("{key} does not exist")));
                }
                if !matches!(key, NetKey::Address(_)) {
                    let users: Vec<String> = cfg
                        .users_of(key.interface())
                        .into_iter()
                        .filter(|u| !u.starts_with("address "))
                        .collect();
                    if !users.is_empty() {
                        return Err(Error::conflict(format!("{key} is in use ({})", users.join(", "))));
                    }
                    // Addresses go with their interface.
                    let name = key.interface().to_owned();
                    cfg.addresses.retain(|a| a.interface != name);
                }
                cfg.remove(key);
            }
        }
    }
    Ok(cfg)
}

/// Applies `changes` to `config` without checking them (see [`check_changes`]).
pub fn applied(config: &NetworkConfig, changes: &[NetChange]) -> NetworkConfig {
    let mut cfg = config.clone();
    for c in changes {
        match c {
            NetChange::Put(i) => cfg.put(i.clone()),
            NetChange::Remove(k) => {
                if !matches!(k, NetKey::Address(_)) {
                    let name = k.interface().to_owned();
                    cfg.addresses.retain(|a| a.interface != name);
                }
                cfg.remove(k)
            }
        }
    }
    cfg
}

/// What undoes `changes` applied to `before`: the items they touch as `before` had them (to put
/// back), and the keys `before` did not have (to remove). [`plan`] from what the server has then
/// gives the changes, so an undo works from wherever a failure left the server.
pub fn restore_point(before: &NetworkConfig, changes: &[NetChange]) -> RestorePoint {
    let mut keys = BTreeSet::new();
    for c in changes {
        match c {
            NetChange::Put(i) => {
                keys.insert(i.key());
            }
            NetChange::Remove(k) => {
                if !matches!(k, NetKey::Address(_)) {
                    // The interface's addresses go with it.
                    keys.extend(
                        before
                            .addresses
                            .iter()
                            .filter(|a| a.interface == k.interface())
                            .cloned()
                            .map(NetKey::Address),
                    );
                }
                keys.insert(k.clone());
            }
        }
    }
    let mut keep = NetworkConfig::default();
    let mut remove = Vec::new();
    for k in keys {
        match before.get(&k) {
            Some(item) => keep.put(item),
            None => remove.push(k),
        }
    }
    RestorePoint { keep, remove }
}

/// See [`restore_point`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestorePoint {
    /// Items to have as they are here.
    pub keep: NetworkConfig,
    /// Keys to have none of.
    pub remove: Vec<NetKey>,
}

impl RestorePoint {
    /// The changes that restore it on a server configured as `now`.
    pub fn changes(&self, now: &NetworkConfig) -> Vec<NetChange> {
        plan(now, &self.keep, &self.remove)
    }
}

fn rank(key: &NetKey) -> u8 {
    match key {
        NetKey::Bond(_) => 0,
        NetKey::Vlan(_) => 1,
        NetKey::Bridge(_) => 2,
        NetKey::Address(_) => 3,
    }
}

/// The changes that make the items of `desired` so on a server configured as `actual`: removals
/// of the items `remove` lists that `actual` has (uppermost first), then puts of what differs
/// (bonds, VLANs, bridges, addresses). Items `actual` has that neither list names are left alone.
pub fn plan(actual: &NetworkConfig, desired: &NetworkConfig, remove: &[NetKey]) -> Vec<NetChange> {
    let mut out = Vec::new();
    let mut rm: Vec<&NetKey> =
        remove.iter().filter(|k| actual.get(k).is_some() && desired.get(k).is_none()).collect();
    rm.sort_by_key(|k| std::cmp::Reverse(rank(k)));
    out.extend(rm.into_iter().cloned().map(NetChange::Remove));
    for item in desired.items() {
        if actual.get(&item.key()).as_ref() != Some(&item) {
            out.push(NetChange::Put(item));
        }
    }
    out
}

/// The differences between what a server should have (`desired`) and what it has (`actual`), in
/// words; empty when every desired item is there as it should be.
pub fn drift(actual: &NetworkConfig, desired: &NetworkConfig) -> Vec<String> {
    desired
        .items()
        .into_iter()
        .filter_map(|item| match actual.get(&item.key()) {
            None => Some(format!("{} is missing", item.key())),
            Some(a) if a != item => {
                Some(format!("{} differs: {} instead of {}", item.key(), describe(&a), describe(&item)))
            }
            Some(_) => None,
        })
        .collect()
}

fn describe(item: &NetItem) -> String {
    match item {
        NetItem::Bond(b) => format!("{} of [{}], MTU {}", b.mode.linux_name(), b.ports.join(", "), b.mtu),
        NetItem::Vlan(v) => format!("VLAN {} on {}, MTU {}", v.vlan_id, v.parent, v.mtu),
        NetItem::Bridge(b) => format!("[{}], MTU {}", b.interfaces.join(", "), b.mtu),
        NetItem::Address(a) => a.to_string(),
    }
}

/// Whether `changes` applied to `config` would cut the link the manager reaches the server over
/// (the interface holding `management`, and every interface below it): the reason, if so. Adding
/// an address or a member to a management bridge does not cut it; removing or altering any other
/// item of the chain, or removing the address, does.
pub fn cuts_management(config: &NetworkConfig, changes: &[NetChange], management: IpAddr) -> Option<String> {
    let iface = config.interface_of(management)?.to_owned();
    let chain = config.lower_interfaces(&iface);
    let mut cfg = config.clone();
    for c in changes {
        let why = match c {
            NetChange::Remove(NetKey::Address(a)) if a.address == management => {
                Some(format!("it removes {a}, the address the manager reaches this server at"))
            }
            NetChange::Remove(k) if !matches!(k, NetKey::Address(_)) && chain.contains(k.interface()) => {
                Some(format!("it removes {k}, which carries the management address {management} ({iface})"))
            }
            NetChange::Put(item)
                if !matches!(item, NetItem::Address(_)) && chain.contains(&item.interface()) =>
            {
                match (cfg.get(&item.key()), item) {
                    (Some(NetItem::Bridge(old)), NetItem::Bridge(new))
                        if old.mtu == new.mtu
                            && old.interfaces.iter().all(|i| new.interfaces.contains(i)) =>
                    {
                        None
                    }
                    (Some(old), new) if old == *new => None,
                    _ => Some(format!(
                        "it changes {}, which carries the management address {management} ({iface})",
                        item.key()
                    )),
                }
            }
            NetChange::Put(NetItem::Bond(b)) => b.ports.iter().find(|p| chain.contains(*p)).map(|p| {
                format!("it bonds {p}, which carries the management address {management} ({iface})")
            }),
            _ => None,
        };
        if why.is_some() {
            return why;
        }
        cfg = applied(&cfg, std::slice::from_ref(c));
    }
    None
}

/// How to apply changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApplyOptions {
    /// Apply a change that would cut the management link (under a rollback timer).
    #[serde(default)]
    pub force: bool,
    /// How long a forced change waits for [`NetworkOps::confirm`] before the server undoes it
    /// (0: [`DEFAULT_CONFIRM_WITHIN`]).
    #[serde(default)]
    pub confirm_within_ms: u64,
    /// The address the manager reaches the server at (filled in by the server side: an agent
    /// from the connection it serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management: Option<IpAddr>,
}

/// How long a forced change that cuts the management link waits for confirmation by default.
pub const DEFAULT_CONFIRM_WITHIN: Duration = Duration::from_secs(30);

/// What applying changes did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// Applied.
    Done,
    /// A forced change that cuts the management link: it is applied just after this answer and
    /// undone by the server unless confirmed (over a new connection) within `confirm_within_ms`.
    Tentative {
        /// Transaction id, for [`NetworkOps::confirm`] and [`NetworkOps::txn_state`].
        txn: u64,
        /// Time to confirm it.
        confirm_within_ms: u64,
    },
}

/// The state of a tentative change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    /// Being applied; not yet confirmable.
    Applying,
    /// Applied, waiting for confirmation.
    Pending,
    /// Confirmed: it stays.
    Confirmed,
    /// Undone by the server.
    RolledBack {
        /// Why.
        reason: String,
    },
}

/// Reading and changing a server's network configuration.
pub trait NetworkOps: Send + Sync {
    /// The server's Ethernet ports.
    fn ports(&self) -> Result<Vec<EthernetPort>>;
    /// The bonds, VLAN interfaces, bridges and addresses configured now.
    fn network_config(&self) -> Result<NetworkConfig>;
    /// Apply `changes` in order, all or nothing (a failure undoes what was applied). A list that
    /// would cut the management link is refused (`Conflict`) unless `opts.force`; forced, it is
    /// applied tentatively (see [`Applied::Tentative`]).
    fn apply(&self, changes: &[NetChange], opts: &ApplyOptions) -> Result<Applied>;
    /// Confirm a tentative change; answers its state (`Confirmed`, or `RolledBack` if too late).
    /// `Conflict` while it is still being applied.
    fn confirm(&self, txn: u64) -> Result<TxnState>;
    /// The state of a tentative change.
    fn txn_state(&self, txn: u64) -> Result<TxnState>;
    /// The address this connection reaches the server at, when the connection knows it (the
    /// manager finds the management interface by it).
    fn management_address(&self) -> Option<IpAddr> {
        None
    }
}

/// What a backend does on a server: read it, and apply one change (checked already).
pub trait RawNetwork: Send + Sync {
    /// The server's Ethernet ports.
    fn ports(&self) -> Result<Vec<EthernetPort>>;
    /// The configuration now.
    fn read(&self) -> Result<NetworkConfig>;
    /// Apply one change.
    fn apply_one(&self, change: &NetChange) -> Result<()>;
}

/// Checks `changes` against what the server has, applies them in order and, when one fails,
/// undoes those applied (best effort: an undo failure is added to the error).
pub fn apply_all(raw: &dyn RawNetwork, changes: &[NetChange]) -> Result<()> {
    let before = raw.read()?;
    let ports = raw.ports()?;
    check_changes(&before, &ports, changes)?;
    apply_checked(raw, &before, changes)
}

fn apply_checked(raw: &dyn RawNetwork, before: &NetworkConfig, changes: &[NetChange]) -> Result<()> {
    for c in changes {
        if let Err(e) = raw.apply_one(c) {
            let msg = format!("{c} failed: {}", inner_message(&e));
            return Err(match restore(raw, &restore_point(before, changes)) {
                Ok(()) => retag(e, msg),
                Err(ue) => {
                    Error::backend("network", format!("{msg}; undoing what was applied failed too: {ue}"))
                }
            });
        }
    }
    Ok(())
}

/// Brings the server back to a restore point, from what it has now.
pub fn restore(raw: &dyn RawNetwork, point: &RestorePoint) -> Result<()> {
    let now = raw.read()?;
    let mut failed = Vec::new();
    for u in point.changes(&now) {
        if let Err(e) = raw.apply_one(&u) {
            failed.push(format!("{u}: {e}"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::backend("network", failed.join("; ")))
    }
}

/// An error's own words, without the kind's prefix that [`retag`] puts back.
pub(crate) fn inner_message(e: &Error) -> String {
    match e {
        Error::Backend { message, .. } => message.clone(),
        Error::Conflict { reason } => reason.clone(),
        Error::InvalidArgument { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

fn retag(e: Error, msg: String) -> Error {
    match e.kind() {
        crate::ErrorKind::InvalidArgument => Error::invalid("network", msg),
        crate::ErrorKind::Conflict => Error::conflict(msg),
        _ => Error::backend("network", msg),
    }
}

struct Txn {
    state: TxnState,
    confirmed: bool,
}

/// Tentative changes on one server, and the timers that undo them: the part of [`NetworkOps`]
/// every backend shares.
#[derive(Default)]
pub struct NetworkTxns {
    next: Mutex<u64>,
    txns: Arc<(Mutex<HashMap<u64, Txn>>, Condvar)>,
    /// Serialises changes on the server.
    apply_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for NetworkTxns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkTxns").finish_non_exhaustive()
    }
}

/// How long a tentative change waits before it is applied (the answer goes out first).
const APPLY_DELAY: Duration = Duration::from_millis(300);
/// Finished transactions kept for [`NetworkOps::txn_state`].
const KEPT_TXNS: usize = 64;

impl NetworkTxns {
    /// [`NetworkOps::apply`] over `raw`. `on_cut(true)` is called when a tentative change that
    /// cuts the management link takes effect and `on_cut(false)` when it is confirmed or undone
    /// (simulated servers use it to drop their connections meanwhile).
    pub fn apply(
        &self,
        raw: Arc<dyn RawNetwork>,
        changes: &[NetChange],
        opts: &ApplyOptions,
        on_cut: Option<Arc<dyn Fn(bool) + Send + Sync>>,
    ) -> Result<Applied> {
        let guard = crate::sync::lock(&self.apply_lock);
        let before = raw.read()?;
        let ports = raw.ports()?;
        check_changes(&before, &ports, changes)?;
        let cut = opts.management.and_then(|m| cuts_management(&before, changes, m));
        let Some(why) = cut else {
            return apply_checked(raw.as_ref(), &before, changes).map(|()| Applied::Done);
        };
        if !opts.force {
            return Err(Error::conflict(format!(
                "refused: the change would cut the manager's link to this server: {why} (force it to apply it under a rollback timer)"
            )));
        }
        drop(guard);
        let within = if opts.confirm_within_ms == 0 {
            DEFAULT_CONFIRM_WITHIN
        } else {
            Duration::from_millis(opts.confirm_within_ms.clamp(2_000, 600_000))
        };
        let txn = {
            let mut n = crate::sync::lock(&self.next);
            *n += 1;
            *n
        };
        {
            let mut t = crate::sync::lock(&self.txns.0);
            if t.len() >= KEPT_TXNS {
                let mut done: Vec<u64> = t
                    .iter()
                    .filter(|(_, x)| matches!(x.state, TxnState::Confirmed | TxnState::RolledBack { .. }))
                    .map(|(k, _)| *k)
                    .collect();
                done.sort();
                for k in done.iter().take(t.len() + 1 - KEPT_TXNS) {
                    t.remove(k);
                }
            }
            t.insert(txn, Txn { state: TxnState::Applying, confirmed: false });
        }
        let txns = self.txns.clone();
        let lock = self.apply_lock.clone();
        let changes = changes.to_vec();
        std::thread::Builder::new()
            .name(format!("net-txn-{txn}"))
            .spawn(move || {
                std::thread::sleep(APPLY_DELAY);
                let _g = crate::sync::lock(&lock);
                let set = |s: TxnState| {
                    let mut t = crate::sync::lock(&txns.0);
                    if let Some(x) = t.get_mut(&txn) {
                        x.state = s;
                    }
                    txns.1.notify_all();
                };
                let before = match raw.read() {
                    Ok(b) => b,
                    Err(e) => {
                        return set(TxnState::RolledBack {
                            reason: format!("reading the configuration failed: {e}"),
                        })
                    }
                };
                if let Err(e) = apply_checked(raw.as_ref(), &before, &changes) {
                    return set(TxnState::RolledBack { reason: format!("applying failed: {e}") });
                }
                if let Some(f) = &on_cut {
                    f(true);
                }
                set(TxnState::Pending);
                let deadline = Instant::now() + within;
                let mut t = crate::sync::lock(&txns.0);
                loop {
                    if t.get(&txn).is_some_and(|x| x.confirmed) {
                        drop(t);
                        if let Some(f) = &on_cut {
                            f(false);
                        }
                        return;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    t = txns
                        .1
                        .wait_timeout(t, deadline - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                // Not confirmed in time: undo, and from here on no confirmation is accepted.
                if let Some(x) = t.get_mut(&txn) {
                    x.state = TxnState::Applying;
                }
                drop(t);
                let undone = restore(raw.as_ref(), &restore_point(&before, &changes));
                if let Some(f) = &on_cut {
                    f(false);
                }
                let mut reason = format!("not confirmed within {} s: the server undid it", within.as_secs());
                if let Err(e) = undone {
                    reason.push_str(&format!("; undoing failed in part: {e}"));
                }
                set(TxnState::RolledBack { reason });
            })
            .map_err(|e| Error::backend("network", format!("cannot start the rollback timer: {e}")))?;
        Ok(Applied::Tentative { txn, confirm_within_ms: within.as_millis() as u64 })
    }

    /// [`NetworkOps::confirm`].
    pub fn confirm(&self, txn: u64) -> Result<TxnState> {
        let mut t = crate::sync::lock(&self.txns.0);
        let x = t
            .get_mut(&txn)
            .ok_or_else(|| Error::invalid("txn", format!("no network change {txn} on this server")))?;
        match &x.state {
            TxnState::Applying => Err(Error::conflict(format!(
                "network change {txn} is being applied or undone; confirm it after"
            ))),
            TxnState::Pending => {
                x.confirmed = true;
                x.state = TxnState::Confirmed;
                self.txns.1.notify_all();
                Ok(TxnState::Confirmed)
            }
            s => Ok(s.clone()),
        }
    }

    /// [`NetworkOps::txn_state`].
    pub fn state(&self, txn: u64) -> Result<TxnState> {
        let t = crate::sync::lock(&self.txns.0);
        t.get(&txn)
            .map(|x| x.state.clone())
            .ok_or_else(|| Error::invalid("txn", format!("no network change {txn} on this server")))
    }
}

/// The configuration a server's network items come to, by key (for comparisons in tests and
/// reports).
pub fn by_key(cfg: &NetworkConfig) -> BTreeMap<NetKey, NetItem> {
    cfg.items().into_iter().map(|i| (i.key(), i)).collect()
}
