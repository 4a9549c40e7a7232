//! dom0 networking over rtnetlink: [`Netlink`] reads and changes the bonds, VLAN interfaces,
//! bridges and static addresses of the network namespace it runs in, one change at a time
//! ([`RawNetwork`]); [`crate::driver::NetworkTxns`] makes lists of changes atomic on top of it.
//!
//! The netlink calls are async; each call of [`Netlink`] runs them on a private current-thread
//! tokio runtime with its own netlink socket, so that plain blocking threads can call it (the
//! socket belongs to the network namespace of the calling thread).
//!
//! Notes from the kernel:
//! * the bonding module must be loaded with `max_bonds=0` (otherwise it makes a `bond0` itself);
//! * an interface is enslaved to a bond while down (the bonding driver opens it itself);
//! * a bond's MTU is given to its members when they are enslaved, and on every change;
//! * a bridge does not pass its MTU on: ovm sets the MTU of the ports it bridges (bonds and VLAN
//!   interfaces in a bridge keep the MTU configured for them).

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use rtnetlink::packet_route::link::{
    BondMode as NlBondMode, InfoBond, InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage, State,
};
use rtnetlink::{Handle, LinkBond, LinkBridge, LinkUnspec, LinkVlan};

use crate::driver::network::{
    AddressConfig, BondConfig, BondMonitor, BridgeConfig, NetChange, NetItem, NetKey, NetworkConfig,
    RawNetwork, VlanConfig,
};
use crate::model::{BondMode, EthernetPort};
use crate::{Error, Result};

const WHAT: &str = "network";

/// The network configuration of the network namespace of the calling thread (dom0's), through
/// rtnetlink.
#[derive(Debug, Clone, Default)]
pub struct Netlink {
    /// Interfaces taken as ports instead of the physical NICs (tests: veth pairs).
    ports: Option<Vec<String>>,
}

/// One interface as the kernel reports it.
#[derive(Debug, Clone, Default)]
pub(super) struct Link {
    pub(super) index: u32,
    pub(super) name: String,
    kind: Option<InfoKind>,
    bond: Vec<InfoBond>,
    vlan_id: Option<u16>,
    controller: Option<u32>,
    parent: Option<u32>,
    mtu: Option<u32>,
    max_mtu: Option<u32>,
    pub(super) address: Vec<u8>,
    perm_address: Vec<u8>,
    pub(super) up: bool,
    oper: Option<State>,
    carrier: Option<u8>,
}

impl Link {
    fn from_message(m: LinkMessage) -> Link {
        let mut l =
            Link { index: m.header.index, up: m.header.flags.contains(LinkFlags::Up), ..Default::default() };
        for a in m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n,
                LinkAttribute::Mtu(v) => l.mtu = Some(v),
                LinkAttribute::MaxMtu(v) => l.max_mtu = Some(v),
                LinkAttribute::Controller(v) if v != 0 => l.controller = Some(v),
                LinkAttribute::Link(v) if v != 0 => l.parent = Some(v),
                LinkAttribute::Address(v) => l.address = v,
                LinkAttribute::PermAddress(v) => l.perm_address = v,
                LinkAttribute::OperState(s) => l.oper = Some(s),
                LinkAttribute::Carrier(c) => l.carrier = Some(c),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => l.kind = Some(k),
                            LinkInfo::Data(InfoData::Bond(b)) => l.bond = b,
                            LinkInfo::Data(InfoData::Vlan(v)) => {
                                l.vlan_id = v.iter().find_map(|x| match x {
                                    InfoVlan::Id(id) => Some(*id),
                                    _ => None,
                                })
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }

    fn is_kind(&self, k: &InfoKind) -> bool {
        self.kind.as_ref() == Some(k)
    }

    fn bond_mode(&self) -> Option<NlBondMode> {
        self.bond.iter().find_map(|b| match b {
            InfoBond::Mode(m) => Some(*m),
            _ => None,
        })
    }

    fn bond_u32(&self, f: impl Fn(&InfoBond) -> Option<u32>) -> u32 {
        self.bond.iter().find_map(f).unwrap_or(0)
    }
}

/// Xen's interfaces of VMs in dom0 (`vifD.N`, and `vifD.N-emu`/`tapD.N` of HVM guests): in
/// bridges, but not ovm's to configure.
fn is_vm_interface(name: &str) -> bool {
    name.starts_with("vif") || name.starts_with("tap")
}

pub(super) fn format_mac(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn to_nl_mode(m: BondMode) -> NlBondMode {
    match m {
        BondMode::ActiveBackup => NlBondMode::ActiveBackup,
        BondMode::Lacp => NlBondMode::Ieee8023Ad,
        BondMode::AdaptiveLoadBalancing => NlBondMode::BalanceAlb,
    }
}

fn from_nl_mode(m: NlBondMode) -> Option<BondMode> {
    match m {
        NlBondMode::ActiveBackup => Some(BondMode::ActiveBackup),
        NlBondMode::Ieee8023Ad => Some(BondMode::Lacp),
        NlBondMode::BalanceAlb => Some(BondMode::AdaptiveLoadBalancing),
        _ => None,
    }
}

/// Whether a bond mode takes a primary member (the kernel refuses the option in the others).
fn takes_primary(m: BondMode) -> bool {
    matches!(m, BondMode::ActiveBackup | BondMode::AdaptiveLoadBalancing)
}

/// The errno of a failed netlink request, if the kernel answered one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// A failed request as ovm's error, with the kernel's message.
pub(super) fn nl_err(what: impl std::fmt::Display, e: rtnetlink::Error) -> Error {
    Error::backend(WHAT, format!("{what}: {}", kernel_msg(&e)))
}

/// The kernel's answer to a failed request.
fn kernel_msg(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

/// Whether a failed creation says that the kernel has no driver for the kind of interface.
fn no_driver(e: &rtnetlink::Error) -> bool {
    matches!(errno(e), Some(libc::EOPNOTSUPP | libc::ENODEV | libc::EAFNOSUPPORT | libc::ENOENT))
}

fn read_sys(name: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join(file))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Links by name, and a name by index.
pub(super) struct Links(Vec<Link>);

impl Links {
    pub(super) fn by_name(&self, name: &str) -> Option<&Link> {
        self.0.iter().find(|l| l.name == name)
    }
    pub(super) fn name_of(&self, index: u32) -> Option<&str> {
        self.0.iter().find(|l| l.index == index).map(|l| l.name.as_str())
    }
    fn index_of(&self, name: &str) -> Result<u32> {
        self.by_name(name)
            .map(|l| l.index)
            .ok_or_else(|| Error::backend(WHAT, format!("no interface {name}")))
    }
    fn members_of(&self, index: u32) -> impl Iterator<Item = &Link> {
        self.0.iter().filter(move |l| l.controller == Some(index))
    }
}

pub(super) async fn links(h: &Handle) -> Result<Links> {
    let msgs: Vec<LinkMessage> =
        h.link().get().execute().try_collect().await.map_err(|e| nl_err("listing interfaces", e))?;
    Ok(Links(msgs.into_iter().map(Link::from_message).collect()))
}

pub(super) async fn addresses(h: &Handle) -> Result<Vec<AddressMessage>> {
    h.address().get().execute().try_collect().await.map_err(|e| nl_err("listing addresses", e))
}

/// The address of an address message (the local one for IPv4).
pub(super) fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

fn is_link_local_v6(ip: &IpAddr, scope: AddressScope) -> bool {
    match ip {
        IpAddr::V6(v6) => scope == AddressScope::Link || (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

async fn set(h: &Handle, what: impl std::fmt::Display, m: LinkMessage) -> Result<()> {
    h.link().set(m).execute().await.map_err(|e| nl_err(what, e))
}

/// Changes an existing interface's kind-specific options (`RTM_NEWLINK` without `NLM_F_CREATE`
/// and `NLM_F_EXCL`, as `ip link set ... type ...`; `RTM_SETLINK` ignores them).
async fn change(h: &Handle, what: impl std::fmt::Display, m: LinkMessage) -> Result<()> {
    use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST};
    h.link().add(m).set_flags(NLM_F_REQUEST | NLM_F_ACK).execute().await.map_err(|e| nl_err(what, e))
}

async fn set_up(h: &Handle, name: &str, index: u32) -> Result<()> {
    set(h, format!("bringing {name} up"), LinkUnspec::new_with_index(index).up().build()).await
}

async fn set_mtu(h: &Handle, name: &str, index: u32, mtu: u32) -> Result<()> {
    set(h, format!("setting the MTU of {name} to {mtu}"), LinkUnspec::new_with_index(index).mtu(mtu).build())
        .await
}

/// Takes `name` out of its bond or bridge and brings it up.
async fn release(h: &Handle, name: &str, index: u32) -> Result<()> {
    set(h, format!("releasing {name}"), LinkUnspec::new_with_index(index).nocontroller().build()).await?;
    set_up(h, name, index).await
}

async fn delete(h: &Handle, name: &str, index: u32) -> Result<()> {
    h.link().del(index).execute().await.map_err(|e| nl_err(format!("deleting {name}"), e))
}

impl Netlink {
    /// dom0's: the physical NICs (those with a device) are the ports.
    pub fn new() -> Netlink {
        Netlink::default()
    }

    /// Takes the interfaces `ports` as the ports, whether backed by a device or not (tests).
    pub fn with_ports(ports: impl IntoIterator<Item = impl Into<String>>) -> Netlink {
        Netlink { ports: Some(ports.into_iter().map(Into::into).collect()) }
    }

    /// Whether a bridge named `name` exists (in the namespace of the calling thread).
    pub fn is_bridge(&self, name: &str) -> Result<bool> {
        let ls = self.run(|h| async move { links(&h).await })?;
        Ok(ls.by_name(name).is_some_and(|l| l.is_kind(&InfoKind::Bridge)))
    }

    /// Runs `f` with a netlink handle on a private current-thread runtime.
    pub(super) fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::backend(WHAT, format!("cannot start a runtime for netlink: {e}")))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(|e| Error::backend(WHAT, format!("cannot open a netlink socket: {e}")))?;
            let task = tokio::spawn(conn);
            let out = f(handle).await;
            task.abort();
            out
        })
    }

    fn is_port(&self, l: &Link) -> bool {
        match &self.ports {
            Some(p) => p.contains(&l.name),
            // A NIC has no link kind; Xen's VM interfaces have a device too (their backend).
            None => {
                l.kind.is_none()
                    && !is_vm_interface(&l.name)
                    && Path::new("/sys/class/net").join(&l.name).join("device").exists()
            }
        }
    }

    fn port_of(&self, l: &Link) -> EthernetPort {
        let mac = if !l.perm_address.is_empty() && l.perm_address.iter().any(|b| *b != 0) {
            &l.perm_address
        } else {
            &l.address
        };
        let carrier = read_sys(&l.name, "carrier")
            .and_then(|c| match c.as_str() {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            })
            .or_else(|| match read_sys(&l.name, "operstate").as_deref() {
                Some("up") => Some(true),
                Some("down" | "lowerlayerdown") => Some(false),
                _ => None,
            })
            .or_else(|| match l.oper {
                Some(State::Up) => Some(true),
                Some(State::Down | State::LowerLayerDown) => Some(false),
                _ => l.carrier.map(|c| c != 0),
            });
        EthernetPort {
            speed_mbps: read_sys(&l.name, "speed")
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|v| u32::try_from(v).ok()),
            carrier,
            driver: std::fs::read_link(Path::new("/sys/class/net").join(&l.name).join("device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned())),
            mtu: l.mtu,
            // 0: no limit (loopback, dummy).
            max_mtu: l.max_mtu.filter(|m| *m > 0),
            ..EthernetPort::new(&l.name, &format_mac(mac))
        }
    }

    fn config_of(links: &Links, addrs: &[AddressMessage]) -> NetworkConfig {
        let mut cfg = NetworkConfig::default();
        for l in &links.0 {
            match &l.kind {
                Some(InfoKind::Bond) => {
                    let Some(mode) = l.bond_mode().and_then(from_nl_mode) else {
                        log::warn!("bond {} is in a mode ovm does not configure; left out", l.name);
                        continue;
                    };
                    let arp = l.bond_u32(|b| match b {
                        InfoBond::ArpInterval(v) => Some(*v),
                        _ => None,
                    });
                    let monitor = if arp > 0 {
                        BondMonitor::Arp {
                            interval_ms: arp,
                            targets: l
                                .bond
                                .iter()
                                .find_map(|b| match b {
                                    InfoBond::ArpIpTarget(t) => Some(t.clone()),
                                    _ => None,
                                })
                                .unwrap_or_default(),
                        }
                    } else {
                        BondMonitor::Mii {
                            interval_ms: l.bond_u32(|b| match b {
                                InfoBond::MiiMon(v) => Some(*v),
                                _ => None,
                            }),
                        }
                    };
                    let primary = l
                        .bond
                        .iter()
                        .find_map(|b| match b {
                            InfoBond::Primary(i) if *i != 0 => links.name_of(*i).map(str::to_owned),
                            _ => None,
                        })
                        .filter(|_| takes_primary(mode));
                    let mut ports: Vec<String> = links.members_of(l.index).map(|m| m.name.clone()).collect();
                    ports.sort();
                    cfg.bonds.push(BondConfig {
                        name: l.name.clone(),
                        mode,
                        ports,
                        mtu: l.mtu.unwrap_or(1500),
                        monitor,
                        primary,
                    });
                }
                Some(InfoKind::Vlan) => {
                    let (Some(id), Some(parent)) = (l.vlan_id, l.parent.and_then(|p| links.name_of(p)))
                    else {
                        continue;
                    };
                    let v = VlanConfig { parent: parent.to_owned(), vlan_id: id, mtu: l.mtu.unwrap_or(1500) };
                    if v.name() == l.name {
                        cfg.vlans.push(v);
                    }
                }
                Some(InfoKind::Bridge) => cfg.bridges.push(BridgeConfig {
                    name: l.name.clone(),
                    interfaces: links
                        .members_of(l.index)
                        .filter(|m| !is_vm_interface(&m.name))
                        .map(|m| m.name.clone())
                        .collect(),
                    mtu: l.mtu.unwrap_or(1500),
                }),
                _ => {}
            }
        }
        for a in addrs {
            let Some(name) = links.name_of(a.header.index) else { continue };
            if name == "lo" {
                continue;
            }
            let Some(ip) = address_of(a) else { continue };
            if is_link_local_v6(&ip, a.header.scope) {
                continue;
            }
            cfg.addresses.push(AddressConfig {
                interface: name.to_owned(),
                address: ip,
                prefix: a.header.prefix_len,
            });
        }
        cfg.sort();
        cfg
    }
}

/// Puts a bond: creates it (or recreates it in another mode), sets its monitor, members, MTU and
/// primary, and brings it up.
async fn put_bond(h: &Handle, b: &BondConfig) -> Result<()> {
    // The kernel refuses the ARP options, even to turn ARP monitoring off, in the modes that
    // cannot use it (802.3ad, balance-tlb, balance-alb).
    let arp_mode = b.mode == BondMode::ActiveBackup;
    if matches!(b.monitor, BondMonitor::Arp { .. }) && !arp_mode {
        return Err(Error::invalid(
            "monitor",
            format!(
                "bond {}: ARP monitoring works in active-backup mode only, not {}",
                b.name,
                b.mode.linux_name()
            ),
        ));
    }
    if b.primary.is_some() && !takes_primary(b.mode) {
        return Err(Error::invalid(
            "primary",
            format!("bond {}: a {} bond has no primary member", b.name, b.mode.linux_name()),
        ));
    }
    let ls = links(h).await?;
    if let Some(l) = ls.by_name(&b.name) {
        if !l.is_kind(&InfoKind::Bond) {
            return Err(Error::backend(WHAT, format!("{} exists and is not a bond", b.name)));
        }
        if l.bond_mode() != Some(to_nl_mode(b.mode)) {
            // The mode of a bond changes only while it is down and has no members. It is changed
            // in place rather than the bond made anew, so that what sits on it (VLAN interfaces,
            // a bridge it is in) stays. Leaving ARP modes, the kernel turns ARP monitoring off.
            for m in ls.members_of(l.index) {
                release(h, &m.name, m.index).await?;
            }
            set(
                h,
                format!("taking bond {} down", b.name),
                LinkUnspec::new_with_index(l.index).down().build(),
            )
            .await?;
            let msg = LinkBond::new(&b.name).mode(to_nl_mode(b.mode)).build();
            change(h, format!("setting the mode of bond {} to {}", b.name, b.mode.linux_name()), msg).await?;
        }
    }
    let monitor = |m: rtnetlink::LinkMessageBuilder<LinkBond>| match &b.monitor {
        BondMonitor::Mii { interval_ms } if arp_mode => m.arp_interval(0).miimon(*interval_ms),
        BondMonitor::Mii { interval_ms } => m.miimon(*interval_ms),
        BondMonitor::Arp { interval_ms, targets } => {
            m.miimon(0).arp_interval(*interval_ms).arp_ip_target(targets.clone())
        }
    };
    let index = match ls.by_name(&b.name) {
        Some(l) => {
            // Kernel order within a change: mode, MII, ARP interval, ARP targets; a new ARP
            // target list replaces the old.
            let msg = monitor(LinkBond::new(&b.name)).build();
            change(h, format!("setting the link monitor of bond {}", b.name), msg).await?;
            l.index
        }
        None => {
            let msg = monitor(LinkBond::new(&b.name).mode(to_nl_mode(b.mode))).mtu(b.mtu).build();
            h.link().add(msg).execute().await.map_err(|e| {
                if no_driver(&e) {
                    Error::backend(
                        WHAT,
                        format!(
                            "creating bond {}: {} (the bonding module is not loaded: load it with max_bonds=0)",
                            b.name,
                            kernel_msg(&e)
                        ),
                    )
                } else {
                    nl_err(format!("creating bond {}", b.name), e)
                }
            })?;
            links(h).await?.index_of(&b.name)?
        }
    };
    let ls = links(h).await?;
    for old in ls.members_of(index).filter(|m| !b.ports.contains(&m.name)) {
        release(h, &old.name, old.index).await?;
    }
    for p in &b.ports {
        let l = ls.by_name(p).ok_or_else(|| Error::backend(WHAT, format!("bond {}: no port {p}", b.name)))?;
        if l.controller == Some(index) {
            continue;
        }
        if l.controller.is_some() {
            set(h, format!("releasing {p}"), LinkUnspec::new_with_index(l.index).nocontroller().build())
                .await?;
        }
        // Enslaved while down; the bonding driver opens it.
        set(h, format!("taking {p} down"), LinkUnspec::new_with_index(l.index).down().build()).await?;
        set(
            h,
            format!("adding {p} to bond {}", b.name),
            LinkUnspec::new_with_index(l.index).controller(index).build(),
        )
        .await?;
        set_up(h, p, l.index).await?;
    }
    // The bond gives its MTU to its members.
    set_mtu(h, &b.name, index, b.mtu).await?;
    if takes_primary(b.mode) {
        let primary = match &b.primary {
            Some(p) => ls.index_of(p)?,
            None => 0,
        };
        let current = links(h).await?.by_name(&b.name).map(|l| {
            l.bond_u32(|x| match x {
                InfoBond::Primary(v) => Some(*v),
                _ => None,
            })
        });
        if current != Some(primary) {
            let msg = LinkBond::new(&b.name).primary(primary).build();
            change(h, format!("setting the primary of bond {}", b.name), msg).await?;
        }
    }
    set_up(h, &b.name, index).await
}

/// Removes a bond: its members released (and up again), then the bond.
async fn remove_bond(h: &Handle, name: &str) -> Result<()> {
    let ls = links(h).await?;
    let Some(l) = ls.by_name(name) else { return Ok(()) };
    for m in ls.members_of(l.index) {
        release(h, &m.name, m.index).await?;
    }
    delete(h, name, l.index).await
}

async fn put_vlan(h: &Handle, v: &VlanConfig) -> Result<()> {
    let name = v.name();
    let ls = links(h).await?;
    let parent = ls.index_of(&v.parent)?;
    let existing = match ls.by_name(&name) {
        Some(l) if l.is_kind(&InfoKind::Vlan) && l.vlan_id == Some(v.vlan_id) && l.parent == Some(parent) => {
            Some(l.index)
        }
        // A VLAN interface of this name on another parent or id (made by hand): made anew.
        Some(l) if l.is_kind(&InfoKind::Vlan) => {
            delete(h, &name, l.index).await?;
            None
        }
        Some(_) => return Err(Error::backend(WHAT, format!("{name} exists and is not a VLAN interface"))),
        None => None,
    };
    let index = match existing {
        Some(i) => i,
        None => {
            h.link()
                .add(LinkVlan::new(&name, parent, v.vlan_id).mtu(v.mtu).build())
                .execute()
                .await
                .map_err(|e| {
                    if no_driver(&e) {
                        Error::backend(
                            WHAT,
                            format!(
                                "creating VLAN interface {name}: {} (the 8021q module is not loaded)",
                                kernel_msg(&e)
                            ),
                        )
                    } else {
                        nl_err(format!("creating VLAN interface {name}"), e)
                    }
                })?;
            links(h).await?.index_of(&name)?
        }
    };
    set_mtu(h, &name, index, v.mtu).await?;
    set_up(h, &name, index).await
}

async fn put_bridge(h: &Handle, b: &BridgeConfig) -> Result<()> {
    let ls = links(h).await?;
    let index = match ls.by_name(&b.name) {
        Some(l) if l.is_kind(&InfoKind::Bridge) => l.index,
        Some(_) => return Err(Error::backend(WHAT, format!("{} exists and is not a bridge", b.name))),
        None => {
            h.link()
                .add(LinkBridge::new(&b.name).mtu(b.mtu).build())
                .execute()
                .await
                .map_err(|e| nl_err(format!("creating bridge {}", b.name), e))?;
            links(h).await?.index_of(&b.name)?
        }
    };
    let ls = links(h).await?;
    for old in ls.members_of(index).filter(|m| !is_vm_interface(&m.name) && !b.interfaces.contains(&m.name)) {
        release(h, &old.name, old.index).await?;
    }
    for i in &b.interfaces {
        let l = ls
            .by_name(i)
            .ok_or_else(|| Error::backend(WHAT, format!("bridge {}: no interface {i}", b.name)))?;
        // A bridge does not pass its MTU on: its ports get it. Bonds and VLAN interfaces keep
        // their own, which are items of the configuration themselves.
        let own_mtu = l.is_kind(&InfoKind::Bond) || l.is_kind(&InfoKind::Vlan);
        if !own_mtu && l.mtu != Some(b.mtu) {
            set_mtu(h, i, l.index, b.mtu).await?;
        }
        if l.controller != Some(index) {
            set(
                h,
                format!("adding {i} to bridge {}", b.name),
                LinkUnspec::new_with_index(l.index).controller(index).build(),
            )
            .await?;
        }
        if !l.up {
            set_up(h, i, l.index).await?;
        }
    }
    set_mtu(h, &b.name, index, b.mtu).await?;
    set_up(h, &b.name, index).await
}

pub(super) async fn put_address(h: &Handle, a: &AddressConfig) -> Result<()> {
    let index = links(h).await?.index_of(&a.interface)?;
    match h.address().add(index, a.address, a.prefix).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(nl_err(format!("adding address {a}"), e)),
    }
}

async fn remove_address(h: &Handle, a: &AddressConfig) -> Result<()> {
    let index = links(h).await?.index_of(&a.interface)?;
    let found = addresses(h).await?.into_iter().find(|m| {
        m.header.index == index && m.header.prefix_len == a.prefix && address_of(m) == Some(a.address)
    });
    let Some(m) = found else { return Ok(()) };
    h.address().del(m).execute().await.map_err(|e| nl_err(format!("removing address {a}"), e))
}

async fn remove_link(h: &Handle, name: &str, kind: InfoKind) -> Result<()> {
    let ls = links(h).await?;
    let Some(l) = ls.by_name(name) else { return Ok(()) };
    if !l.is_kind(&kind) {
        return Err(Error::backend(WHAT, format!("{name} is not a {kind:?} interface")));
    }
    if kind == InfoKind::Bridge {
        for m in ls.members_of(l.index).filter(|m| !is_vm_interface(&m.name)) {
            set(
                h,
                format!("releasing {}", m.name),
                LinkUnspec::new_with_index(m.index).nocontroller().build(),
            )
            .await?;
        }
    }
    delete(h, name, l.index).await
}

impl RawNetwork for Netlink {
    fn ports(&self) -> Result<Vec<EthernetPort>> {
        let ls = self.run(|h| async move { links(&h).await })?;
        let mut ports: Vec<EthernetPort> =
            ls.0.iter().filter(|l| self.is_port(l)).map(|l| self.port_of(l)).collect();
        ports.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ports)
    }

    fn read(&self) -> Result<NetworkConfig> {
        self.run(|h| async move {
            let ls = links(&h).await?;
            let addrs = addresses(&h).await?;
            Ok(Netlink::config_of(&ls, &addrs))
        })
    }

    fn apply_one(&self, change: &NetChange) -> Result<()> {
        self.run(|h| async move {
            match change {
                NetChange::Put(NetItem::Bond(b)) => put_bond(&h, b).await,
                NetChange::Put(NetItem::Vlan(v)) => put_vlan(&h, v).await,
                NetChange::Put(NetItem::Bridge(b)) => put_bridge(&h, b).await,
                NetChange::Put(NetItem::Address(a)) => put_address(&h, a).await,
                NetChange::Remove(NetKey::Bond(n)) => remove_bond(&h, n).await,
                NetChange::Remove(NetKey::Vlan(n)) => remove_link(&h, n, InfoKind::Vlan).await,
                NetChange::Remove(NetKey::Bridge(n)) => remove_link(&h, n, InfoKind::Bridge).await,
                NetChange::Remove(NetKey::Address(a)) => remove_address(&h, a).await,
            }
        })
    }
}

/// On this host's kernel, in a fresh network namespace per test (root needed: CI runs as root).
/// Ports are veth ends (and a macvlan over one, whose MTU the kernel caps at its lower device's):
/// there is no bonding or 802.1Q module here, so bonds and VLAN interfaces are only checked to
/// fail cleanly.
/// Send the Wake-on-LAN magic packet for `mac` out of `interface`: a UDP broadcast to port 9 from a
/// socket bound to that interface (`SO_BINDTODEVICE`), three times, as wake-up tools do (the
/// packet is not acknowledged and a switch may drop the first while it learns).
pub(crate) fn send_wake_on_lan(mac: &str, interface: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let packet = crate::driver::magic_packet(mac)?;
    crate::driver::network::check_interface_name("interface", interface)?;
    if !Path::new("/sys/class/net").join(interface).exists() {
        return Err(Error::invalid("interface", format!("this server has no interface {interface}")));
    }
    let io = |what: &str, e: std::io::Error| Error::backend("wake-on-lan", format!("{what}: {e}"));
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| io("socket", e))?;
    sock.set_broadcast(true).map_err(|e| io("SO_BROADCAST", e))?;
    let name = interface.as_bytes();
    // SAFETY: the option value is the interface name's bytes, valid for the call, with its length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io(&format!("bind to {interface}"), std::io::Error::last_os_error()));
    }
    for _ in 0..3 {
        sock.send_to(&packet, ("255.255.255.255", 9)).map_err(|e| io(&format!("send on {interface}"), e))?;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use rtnetlink::packet_route::link::MacVlanMode;
    use rtnetlink::{LinkMacVlan, LinkVeth};

    use super::*;
    use crate::driver::network::{apply_all, ApplyOptions, NetworkTxns};
    use crate::driver::Applied;

    /// Runs `f` on a thread of its own in a new network namespace.
    pub(crate) fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "the netlink tests make network namespaces: run them as root");
        std::thread::spawn(move || {
            // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only this thread (and the
            // threads it starts) into a new network namespace, which goes when they end.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    fn veth(nl: &Netlink, a: &str, b: &str) {
        let (a, b) = (a.to_owned(), b.to_owned());
        nl.run(|h| async move {
            h.link().add(LinkVeth::new(&a, &b).build()).execute().await.map_err(|e| nl_err("veth", e))
        })
        .unwrap();
    }

    fn macvlan(nl: &Netlink, name: &str, lower: &str) {
        let (name, lower) = (name.to_owned(), lower.to_owned());
        nl.run(|h| async move {
            let i = links(&h).await?.index_of(&lower)?;
            h.link()
                .add(LinkMacVlan::new(&name, i, MacVlanMode::Bridge).build())
                .execute()
                .await
                .map_err(|e| nl_err("macvlan", e))
        })
        .unwrap();
    }

    fn link(nl: &Netlink, name: &str) -> Option<Link> {
        let name = name.to_owned();
        nl.run(|h| async move { Ok(links(&h).await?.by_name(&name).cloned()) }).unwrap()
    }

    fn bridge(name: &str, interfaces: &[&str], mtu: u32) -> NetItem {
        NetItem::Bridge(BridgeConfig {
            name: name.into(),
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            mtu,
        })
    }

    fn addr(interface: &str, a: &str, prefix: u8) -> AddressConfig {
        AddressConfig { interface: interface.into(), address: a.parse().unwrap(), prefix }
    }

    fn put(i: NetItem) -> NetChange {
        NetChange::Put(i)
    }

    fn put_addr(interface: &str, a: &str, prefix: u8) -> NetChange {
        put(NetItem::Address(addr(interface, a, prefix)))
    }

    /// Two veth pairs; `va0`, `va1` are the ports.
    fn rig() -> Netlink {
        let nl = Netlink::with_ports(["va0", "va1"]);
        veth(&nl, "va0", "vb0");
        veth(&nl, "va1", "vb1");
        nl
    }

    /// xenbr0 on va0 with an IPv4 and an IPv6 address, applied through NetworkTxns.
    fn xenbr0(nl: &Netlink) -> NetworkConfig {
        let changes = [
            put(bridge("xenbr0", &["va0"], 1500)),
            put_addr("xenbr0", "192.0.2.10", 24),
            put_addr("xenbr0", "2001:db8::10", 64),
        ];
        let txns = NetworkTxns::default();
        let done = txns.apply(Arc::new(nl.clone()), &changes, &ApplyOptions::default(), None).unwrap();
        assert_eq!(done, Applied::Done);
        let mut want = NetworkConfig {
            bridges: vec![BridgeConfig { name: "xenbr0".into(), interfaces: vec!["va0".into()], mtu: 1500 }],
            addresses: vec![addr("xenbr0", "192.0.2.10", 24), addr("xenbr0", "2001:db8::10", 64)],
            ..Default::default()
        };
        want.sort();
        want
    }

    fn l(index: u32, name: &str, kind: Option<InfoKind>, controller: Option<u32>) -> Link {
        Link { index, name: name.into(), kind, controller, mtu: Some(1500), ..Default::default() }
    }

    fn a(index: u32, ip: &str, prefix: u8, scope: AddressScope) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.prefix_len = prefix;
        m.header.scope = scope;
        m.attributes.push(AddressAttribute::Address(ip.parse().unwrap()));
        m
    }

    /// What the kernel reports of bonds and VLAN interfaces (which this host cannot make).
    #[test]
    fn bonds_vlans_bridges_and_addresses_are_read_from_link_messages() {
        let mut bond0 = l(10, "bond0", Some(InfoKind::Bond), None);
        bond0.mtu = Some(9000);
        bond0.bond = vec![
            InfoBond::Mode(NlBondMode::ActiveBackup),
            InfoBond::MiiMon(0),
            InfoBond::ArpInterval(500),
            InfoBond::ArpIpTarget(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]),
            InfoBond::Primary(3),
        ];
        let mut bond1 = l(11, "bond1", Some(InfoKind::Bond), None);
        bond1.bond = vec![InfoBond::Mode(NlBondMode::Ieee8023Ad), InfoBond::MiiMon(100)];
        let mut rr = l(12, "bond2", Some(InfoKind::Bond), None);
        rr.bond = vec![InfoBond::Mode(NlBondMode::BalanceRr)];
        let mut vlan = l(20, "bond0.100", Some(InfoKind::Vlan), None);
        (vlan.parent, vlan.vlan_id) = (Some(10), Some(100));
        let mut other_vlan = l(21, "v200", Some(InfoKind::Vlan), None);
        (other_vlan.parent, other_vlan.vlan_id) = (Some(10), Some(200));
        let links = Links(vec![
            l(1, "lo", None, None),
            l(2, "eth0", None, Some(10)),
            l(3, "eth1", None, Some(10)),
            l(4, "eth2", None, Some(11)),
            l(5, "eth3", None, Some(30)),
            bond0,
            bond1,
            rr,
            vlan,
            other_vlan,
            l(30, "xenbr0", Some(InfoKind::Bridge), None),
            l(31, "xenbr1", Some(InfoKind::Bridge), None),
            l(40, "vif3.0", None, Some(30)),
            l(41, "tap3.0", None, Some(30)),
            l(42, "bond0.100x", None, Some(31)),
        ]);
        let addrs = [
            a(1, "127.0.0.1", 8, AddressScope::Host),
            a(30, "192.0.2.5", 24, AddressScope::Universe),
            a(30, "fe80::1", 64, AddressScope::Link),
            a(30, "2001:db8::5", 64, AddressScope::Universe),
            a(20, "198.51.100.5", 25, AddressScope::Universe),
        ];
        let got = Netlink::config_of(&links, &addrs);
        let mut want = NetworkConfig {
            bonds: vec![
                BondConfig {
                    name: "bond0".into(),
                    mode: BondMode::ActiveBackup,
                    ports: vec!["eth0".into(), "eth1".into()],
                    mtu: 9000,
                    monitor: BondMonitor::Arp {
                        interval_ms: 500,
                        targets: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
                    },
                    primary: Some("eth1".into()),
                },
                BondConfig {
                    name: "bond1".into(),
                    mode: BondMode::Lacp,
                    ports: vec!["eth2".into()],
                    mtu: 1500,
                    monitor: BondMonitor::Mii { interval_ms: 100 },
                    primary: None,
                },
            ],
            vlans: vec![VlanConfig { parent: "bond0".into(), vlan_id: 100, mtu: 1500 }],
            bridges: vec![
                BridgeConfig { name: "xenbr0".into(), interfaces: vec!["eth3".into()], mtu: 1500 },
                BridgeConfig { name: "xenbr1".into(), interfaces: vec!["bond0.100x".into()], mtu: 1500 },
            ],
            addresses: vec![
                addr("xenbr0", "192.0.2.5", 24),
                addr("xenbr0", "2001:db8::5", 64),
                addr("bond0.100", "198.51.100.5", 25),
            ],
        };
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn ports_are_the_listed_interfaces() {
        in_netns(|| {
            let nl = rig();
            let ports = nl.ports().unwrap();
            assert_eq!(ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["va0", "va1"]);
            let l = link(&nl, "va0").unwrap();
            assert_eq!(ports[0].mac, format_mac(&l.address));
            assert_eq!(ports[0].mac.len(), 17);
            assert_eq!(ports[0].mtu, Some(1500));
            assert!(ports[0].max_mtu.is_some_and(|m| m >= 9000), "{:?}", ports[0]);
            assert_eq!(nl.read().unwrap(), NetworkConfig::default(), "a new namespace has nothing");
        })
    }

    #[test]
    fn a_bridge_and_addresses_read_back_as_applied_and_removing_restores() {
        in_netns(|| {
            let nl = rig();
            let want = xenbr0(&nl);
            assert_eq!(nl.read().unwrap(), want);
            let br = link(&nl, "xenbr0").unwrap();
            assert!(br.up, "the bridge is brought up");
            assert_eq!(link(&nl, "va0").unwrap().controller, Some(br.index));
            // Options of an existing interface change in place (the path of a bond's monitor).
            nl.run(|h| async move {
                change(&h, "ageing", LinkBridge::new("xenbr0").ageing_time(12_345).build()).await
            })
            .unwrap();
            assert_eq!(link(&nl, "xenbr0").unwrap().index, br.index);
            // Idempotent: the same changes again change nothing.
            apply_all(&nl, &[put(bridge("xenbr0", &["va0"], 1500)), put_addr("xenbr0", "192.0.2.10", 24)])
                .unwrap();
            assert_eq!(nl.read().unwrap(), want);
            // Members change; the MTU goes to the bridge and its interfaces.
            apply_all(&nl, &[put(bridge("xenbr0", &["va1"], 1400))]).unwrap();
            let got = nl.read().unwrap();
            assert_eq!(got.bridges[0].interfaces, ["va1"]);
            assert_eq!(got.bridges[0].mtu, 1400);
            assert_eq!(link(&nl, "va1").unwrap().mtu, Some(1400));
            let va0 = link(&nl, "va0").unwrap();
            assert_eq!((va0.controller, va0.up), (None, true), "released and up");
            // VM interfaces in a bridge are not ovm's: neither read nor released.
            veth(&nl, "vif7.0", "vifpeer");
            let vif = link(&nl, "vif7.0").unwrap();
            nl.run(|h| async move {
                set(&h, "enslave", LinkUnspec::new_with_index(vif.index).controller(br.index).build()).await
            })
            .unwrap();
            assert_eq!(nl.read().unwrap().bridges[0].interfaces, ["va1"]);
            apply_all(&nl, &[put(bridge("xenbr0", &["va0", "va1"], 1500))]).unwrap();
            assert_eq!(link(&nl, "vif7.0").unwrap().controller, Some(br.index));
            assert_eq!(nl.read().unwrap().bridges[0].interfaces, ["va0", "va1"]);
            // Removing everything leaves nothing.
            apply_all(
                &nl,
                &[
                    NetChange::Remove(NetKey::Address(addr("xenbr0", "192.0.2.10", 24))),
                    NetChange::Remove(NetKey::Address(addr("xenbr0", "2001:db8::10", 64))),
                    NetChange::Remove(NetKey::Bridge("xenbr0".into())),
                ],
            )
            .unwrap();
            assert_eq!(nl.read().unwrap(), NetworkConfig::default());
            assert!(link(&nl, "xenbr0").is_none());
            assert_eq!(link(&nl, "va0").unwrap().controller, None);
        })
    }

    #[test]
    fn a_list_failing_at_its_third_change_leaves_everything_as_before() {
        in_netns(|| {
            let nl = Netlink::with_ports(["va0", "va1", "mv0", "lo"]);
            veth(&nl, "va0", "vb0");
            veth(&nl, "va1", "vb1");
            // A macvlan takes no larger MTU than its lower device has (1500), whatever its
            // maximum says: only the kernel refuses 9000.
            macvlan(&nl, "mv0", "vb1");
            let want = xenbr0(&nl);
            let before = nl.read().unwrap();
            assert_eq!(before, want);
            let e = apply_all(
                &nl,
                &[
                    put_addr("xenbr0", "198.51.100.1", 24),
                    put(bridge("br1", &["va1"], 1500)),
                    put(bridge("br2", &["mv0"], 9000)),
                ],
            )
            .unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Backend, "{e}");
            assert!(e.to_string().contains("MTU of mv0 to 9000"), "{e}");
            assert_eq!(nl.read().unwrap(), before, "undone");
            assert!(link(&nl, "br1").is_none() && link(&nl, "br2").is_none());
            assert_eq!(link(&nl, "va1").unwrap().controller, None);
            // A bridge member the kernel refuses (loopback).
            let e = apply_all(
                &nl,
                &[
                    put(bridge("xenbr0", &["va0", "va1"], 1500)),
                    put_addr("xenbr0", "198.51.100.1", 24),
                    put(bridge("br3", &["lo"], 1500)),
                ],
            )
            .unwrap_err();
            assert!(e.to_string().contains("adding lo to bridge br3"), "{e}");
            assert_eq!(nl.read().unwrap(), before, "undone");
            assert_eq!(link(&nl, "va1").unwrap().controller, None);
        })
    }

    #[test]
    fn bonds_and_vlans_fail_cleanly_without_their_modules() {
        in_netns(|| {
            let nl = rig();
            let want = xenbr0(&nl);
            let bond = NetItem::Bond(BondConfig {
                name: "bond0".into(),
                mode: BondMode::ActiveBackup,
                ports: vec!["va1".into()],
                mtu: 1500,
                monitor: BondMonitor::Arp { interval_ms: 1000, targets: vec![Ipv4Addr::new(192, 0, 2, 1)] },
                primary: Some("va1".into()),
            });
            let e = apply_all(&nl, &[put_addr("xenbr0", "198.51.100.1", 24), put(bond)]).unwrap_err();
            if link(&nl, "bond0").is_none() && !Path::new("/sys/module/bonding").exists() {
                assert!(e.to_string().contains("bonding module is not loaded"), "{e}");
            }
            assert_eq!(nl.read().unwrap(), want);
            let vlan = NetItem::Vlan(VlanConfig { parent: "va1".into(), vlan_id: 10, mtu: 1500 });
            if !Path::new("/sys/module/8021q").exists() {
                let e = apply_all(&nl, &[put_addr("xenbr0", "198.51.100.1", 24), put(vlan)]).unwrap_err();
                assert!(e.to_string().contains("creating VLAN interface va1.10"), "{e}");
                assert!(e.to_string().contains("8021q module is not loaded"), "{e}");
                assert_eq!(nl.read().unwrap(), want);
            }
        })
    }
}
