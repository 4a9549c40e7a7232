//! The `sim` driver: in-process simulated Xen servers, like libvirt's `test:///default`.
//!
//! A [`SimWorld`] holds simulated hosts addressed as `sim://NAME` (optionally
//! `sim://NAME?cpus=16&memory_mib=65536&password=secret`, `create_ms=N` for a server that takes N
//! ms to build a domain; a host is created on first contact).
//! What a host's hypervisor reports can be set too: `caps=pv,hvm,hap,shadow` (its capabilities;
//! all four unless set), `cpu=178bfbff,7ffa3223,...` (its CPU feature words in hexadecimal,
//! [`SIM_CPU_FEATURES`] unless set), `cpu_vendor=AuthenticAMD` ([`SIM_CPU_VENDOR`]), `xen=4.16.2`
//! ([`SIM_XEN_VERSION`]) and `toolstack=NAME` ([`SIM_TOOLSTACK`]). A host refuses domains of a
//! type its capabilities cannot run, and to live-migrate a PV domain without shadow paging.
//! Hosts enforce CPU-independent memory capacity and power-state rules, report load, emit
//! [`DomainChange`]s, and can be told to fail: a host lost, the next N calls of an operation
//! failing, operations delayed, guests ignoring shutdown requests ([`faults`]).
//!
//! The sim driver has every capability of the seam, simulated: shared file storage with mounts and
//! usage, storage arrays with LUNs and access groups ([`storage`]), dom0 bridges, bonds and VLANs
//! ([`network`]), cluster membership with a master and an epoch ([`cluster`]), and migration by
//! ticket between two simulated hosts ([`migration`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The bridge a simulated server reports for guests: the one a Xen host has by default.
pub const SIM_BRIDGE: &str = "xenbr0";

use tokio::sync::broadcast;

use super::{
    lock, ClusterOps, DomainChange, DomainLoad, DomainOps, DomainRunState, DomainSpec, DomainStatus, Driver,
    FileStoragePlugin, HostInfo, HostLoad, HostOps, InterfaceCounters, MigrationOps, NetworkOps,
    ServerConnection, ShutdownReason, StorageArrayPlugin,
};
use crate::model::{HostHardware, VmId};
use crate::{Error, Result};

pub mod cluster;
pub mod console;
pub mod faults;
pub mod migration;
pub mod network;
pub mod storage;
pub mod world;

use world::{HostState, SimDomain, SimHost};
pub use world::{
    MagicPacket, SimWorld, DEFAULT_FILE_SYSTEM_BYTES, SIM_BMC, SIM_CPU_FEATURES, SIM_CPU_VENDOR,
    SIM_TOOLSTACK, SIM_XEN_VERSION,
};

/// The agent password simulated hosts accept unless their address sets another.
pub const DEFAULT_PASSWORD: &str = "ovm-sim";

/// Operations of a simulated host that faults can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimOp {
    /// `connect`/`reconnect`.
    Connect,
    /// `create_domain`.
    Create,
    /// `shutdown`.
    Shutdown,
    /// `reboot`.
    Reboot,
    /// `destroy`.
    Destroy,
    /// `pause`/`unpause`.
    Pause,
    /// `suspend`.
    Suspend,
    /// `restore`.
    Restore,
    /// `prepare_incoming`/`send` of a migration.
    Migrate,
    /// `host_info`/`load`/`list_domains`.
    Query,
    /// File storage and storage-array operations.
    Storage,
    /// Network configuration.
    Network,
    /// One change of a network configuration, as the server's kernel applies it.
    NetworkChange,
    /// Cluster membership.
    Cluster,
    /// Leaving or taking back a message for a guest.
    GuestMessage,
}

/// The driver for `sim://` addresses.
#[derive(Debug, Clone, Default)]
pub struct SimDriver {
    world: SimWorld,
}

impl SimDriver {
    /// A driver over `world`.
    pub fn new(world: SimWorld) -> Self {
        SimDriver { world }
    }
    /// Its world.
    pub fn world(&self) -> &SimWorld {
        &self.world
    }
}

impl Driver for SimDriver {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn handles(&self, address: &str) -> bool {
        address.starts_with("sim://")
    }

    fn connect(&self, address: &str, password: &str, manager_id: &str) -> Result<Arc<dyn ServerConnection>> {
        let host = self.world.host_for(address)?;
        let name = lock(&host.state).name.clone();
        self.world.before(SimOp::Connect, &name)?;
        {
            let mut st = lock(&host.state);
            if st.lost || !st.powered_on {
                return Err(Error::backend(&st.name, "host unreachable"));
            }
            if st.password != password {
                return Err(Error::PermissionDenied {
                    reason: format!("wrong agent password for {}", st.name),
                });
            }
            match &st.owner {
                Some(o) if o != manager_id => {
                    return Err(Error::PermissionDenied {
                        reason: format!("{} is owned by another manager ({o})", st.name),
                    })
                }
                _ => st.owner = Some(manager_id.to_owned()),
            }
        }
        Ok(Arc::new(SimConnection { host, world: self.world.clone() }))
    }

    fn take_over(
        &self,
        address: &str,
        password: &str,
        manager_id: &str,
    ) -> Result<Arc<dyn ServerConnection>> {
        {
            let host = self.world.host_for(address)?;
            let mut st = lock(&host.state);
            if st.password == password {
                st.owner = None;
            }
        }
        self.connect(address, password, manager_id)
    }

    fn reconnect(&self, address: &str, manager_id: &str) -> Result<Arc<dyn ServerConnection>> {
        let host = self.world.host_for(address)?;
        let name = lock(&host.state).name.clone();
        self.world.before(SimOp::Connect, &name)?;
        {
            let mut st = lock(&host.state);
            if st.lost || !st.powered_on {
                return Err(Error::backend(&st.name, "host unreachable"));
            }
            match &st.owner {
                Some(o) if o != manager_id => {
                    return Err(Error::PermissionDenied {
                        reason: format!("{} is owned by another manager", st.name),
                    })
                }
                // A simulated host forgets nothing while the process lives; after a restart of the
                // process it is new, and the owning manager re-adopts it.
                _ => st.owner = Some(manager_id.to_owned()),
            }
        }
        Ok(Arc::new(SimConnection { host, world: self.world.clone() }))
    }

    /// The simulated LAN: the host holding the address (a claimed one, or else the master of the
    /// cluster the members are in, as a Xen master holds its pool's address), if it is a member.
    fn reach_pool(
        &self,
        virtual_ip: std::net::IpAddr,
        members: &[String],
        manager_id: &str,
    ) -> Result<(String, Arc<dyn ServerConnection>)> {
        let names: Vec<(String, String)> = members
            .iter()
            .filter_map(|m| self.world.host_for(m).ok().map(|h| (m.clone(), lock(&h.state).name.clone())))
            .collect();
        let claimed = match virtual_ip {
            std::net::IpAddr::V4(v4) => lock(&self.world.inner.virtual_ips).get(&v4).map(|(h, _)| h.clone()),
            std::net::IpAddr::V6(_) => None,
        };
        let holder = claimed.or_else(|| {
            let clusters = lock(&self.world.inner.clusters);
            let down = lock(&self.world.inner.cluster_net).down.clone();
            clusters
                .values()
                .find(|c| names.iter().any(|(_, n)| c.members.contains(n)))
                .and_then(|c| c.lock.master().map(|(m, _)| m.to_owned()))
                .filter(|m| !down.contains(m))
        });
        let holder = holder
            .ok_or_else(|| Error::backend(virtual_ip.to_string(), "nothing answers at the pool's address"))?;
        let (address, _) =
            names.iter().find(|(_, n)| *n == holder).ok_or_else(|| Error::PermissionDenied {
                reason: format!("{holder} answers at {virtual_ip}, and it is no member of the pool"),
            })?;
        Ok((address.clone(), self.reconnect(address, manager_id)?))
    }

    fn release(&self, address: &str, manager_id: &str) -> Result<()> {
        let host = self.world.host_for(address)?;
        let mut st = lock(&host.state);
        if st.owner.as_deref() == Some(manager_id) {
            st.owner = None;
            Ok(())
        } else {
            Err(Error::PermissionDenied { reason: format!("{} is not owned by this manager", st.name) })
        }
    }
}

/// A connection to one simulated host.
#[derive(Debug)]
struct SimConnection {
    host: Arc<SimHost>,
    world: SimWorld,
}

impl SimConnection {
    fn op<T>(&self, op: SimOp, f: impl FnOnce(&mut HostState) -> Result<T>) -> Result<T> {
        let (name, slow) = {
            let st = lock(&self.host.state);
            (st.name.clone(), if op == SimOp::Create { st.create_time } else { Duration::ZERO })
        };
        if !slow.is_zero() {
            std::thread::sleep(slow);
        }
        self.world.before(op, &name)?;
        let mut st = lock(&self.host.state);
        if st.lost || !st.powered_on || st.cut {
            return Err(Error::backend(&st.name, "host unreachable"));
        }
        f(&mut st)
    }

    /// Pause or unpause a domain (one simulated operation, `SimOp::Pause`, for both) and report it.
    fn set_run_state(&self, vm: VmId, state: DomainRunState) -> Result<()> {
        let domid = self.op(SimOp::Pause, |st| {
            let d = Self::domain(st, vm)?;
            d.state = state;
            Ok(d.domid)
        })?;
        self.emit(DomainChange::StateChanged { uuid: Some(vm), domid, state });
        Ok(())
    }

    fn emit(&self, c: DomainChange) {
        let _ = self.host.changes.send(c);
    }

    fn used_memory(st: &HostState) -> u64 {
        st.domains.values().map(|d| d.spec.memory_mib).sum()
    }

    fn domain(st: &mut HostState, vm: VmId) -> Result<&mut SimDomain> {
        let name = st.name.clone();
        st.domains.get_mut(&vm).ok_or_else(|| Error::backend(name, format!("domain {vm} is not resident")))
    }

    /// Whether `spec`'s memory is free beside dom0, the resident domains and the reservations of
    /// incoming migrations.
    fn memory_fits(st: &HostState, spec: &DomainSpec) -> Result<()> {
        let reserved: u64 = st.incoming.values().map(|(_, m)| m).sum();
        let free = (st.memory_mib - st.dom0_memory_mib - Self::used_memory(st)).saturating_sub(reserved);
        if spec.memory_mib > free {
            return Err(Error::InsufficientResources {
                object: crate::model::ObjectRef::new(crate::model::ObjectKind::Vm, spec.uuid),
                resource: "memory (MiB)".into(),
                needed: spec.memory_mib,
                available: free,
            });
        }
        Ok(())
    }

    /// The VM was stopped here on request: its cluster's HA record goes, if it names this host.
    fn forget_ha(&self, vm: VmId) {
        let name = lock(&self.host.state).name.clone();
        self.world.ha_forget(&name, vm);
    }

    fn admit(&self, st: &mut HostState, spec: &DomainSpec) -> Result<u32> {
        if st.domains.contains_key(&spec.uuid) {
            return Err(Error::backend(&st.name, format!("domain {} is already resident", spec.name)));
        }
        if let Some(why) = st.virt.cannot_run(spec.domain_type) {
            return Err(Error::Unsupported { what: format!("{} on {}: {why}", spec.name, st.name) });
        }
        Self::memory_fits(st, spec)?;
        network::check_bridges(st, &spec.nics)?;
        let domid = self.world.inner.next_domid.fetch_add(1, Ordering::Relaxed) + 1;
        let cpu_load_percent = lock(&self.world.inner.guest_loads).get(&spec.uuid).copied().unwrap_or(10.0);
        st.domains.insert(
            spec.uuid,
            SimDomain {
                spec: spec.clone(),
                domid,
                state: DomainRunState::Running,
                cpu_load_percent,
                console: format!(
                    "[sim] Xen domain {} (domid {domid}) on {}: {} vCPU, {} MiB\n[sim] ovm-sim guest up\n",
                    spec.name, st.name, spec.vcpus, spec.memory_mib
                ),
                messages: BTreeMap::new(),
                data: BTreeMap::new(),
            },
        );
        self.world.ha_record(&st.name, spec);
        Ok(domid)
    }
}

impl HostOps for SimConnection {
    fn host_info(&self) -> Result<HostInfo> {
        self.op(SimOp::Query, |st| {
            Ok(HostInfo {
                hostname: st.name.clone(),
                hardware: HostHardware {
                    cpus: st.cpus,
                    memory_mib: st.memory_mib,
                    xen_version: st.xen_version.clone(),
                    ports: st.ports.clone(),
                    hvm_capable: st.virt.hvm,
                    virt: Some(st.virt),
                    cpu: Some(st.cpu.clone()),
                    toolstack: st.toolstack.clone(),
                },
                dom0_memory_mib: st.dom0_memory_mib,
                owner: st.owner.clone(),
                // Simulated Xen hosts have Xen's default bridge.
                default_bridge: SIM_BRIDGE.into(),
            })
        })
    }

    fn load(&self) -> Result<HostLoad> {
        self.op(SimOp::Query, |st| {
            let busy: f32 = st
                .domains
                .values()
                .filter(|d| matches!(d.state, DomainRunState::Running | DomainRunState::Blocked))
                .map(|d| d.cpu_load_percent * d.spec.vcpus as f32)
                .sum();
            let used = Self::used_memory(st);
            let mut domains: Vec<DomainLoad> = st
                .domains
                .iter()
                .map(|(vm, d)| DomainLoad {
                    vm: *vm,
                    cpu_percent: if matches!(d.state, DomainRunState::Running | DomainRunState::Blocked) {
                        d.cpu_load_percent * d.spec.vcpus as f32
                    } else {
                        0.0
                    },
                    memory_mib: d.spec.memory_mib,
                })
                .collect();
            domains.sort_by_key(|d| d.vm);
            // A port's speed is what the simulated port reports; bonds, bridges and vifs have none.
            let speed = |name: &str| st.ports.iter().find(|p| p.name == name).and_then(|p| p.speed_mbps);
            let interfaces = st
                .traffic
                .iter()
                .map(|(name, (rx, tx))| InterfaceCounters {
                    name: name.clone(),
                    rx_bytes: *rx,
                    tx_bytes: *tx,
                    speed_mbps: speed(name),
                })
                .collect();
            Ok(HostLoad {
                cpu_percent: (busy / st.cpus as f32).min(100.0),
                guest_memory_mib: used,
                free_memory_mib: st.memory_mib - st.dom0_memory_mib - used,
                cpus: st.cpus,
                domains,
                interfaces,
            })
        })
    }

    fn power_off(&self) -> Result<()> {
        self.op(SimOp::Query, |st| {
            if !st.domains.is_empty() {
                return Err(Error::backend(&st.name, "domains are still running"));
            }
            st.powered_on = false;
            Ok(())
        })?;
        self.emit(DomainChange::HostLost);
        Ok(())
    }

    fn wake_on_lan(&self, mac: &str, interface: &str) -> Result<()> {
        crate::driver::magic_packet(mac)?;
        crate::driver::network::check_interface_name("interface", interface)?;
        let sender = self.op(SimOp::Query, |st| {
            known_interface(st, interface)?;
            Ok(st.name.clone())
        })?;
        self.world.deliver_magic_packet(&sender, interface, mac);
        Ok(())
    }

    fn claim_virtual_ip(&self, vip: &crate::driver::vip::VirtualIp) -> Result<()> {
        let me = self.op(SimOp::Network, |st| {
            known_interface(st, vip.interface())?;
            Ok(st.name.clone())
        })?;
        let mut held = lock(&self.world.inner.virtual_ips);
        match held.get(&vip.address()) {
            Some((host, interface)) if *host == me && interface != vip.interface() => {
                return Err(crate::driver::vip::VipError::AssignedElsewhere {
                    address: vip.address(),
                    interface: interface.clone(),
                }
                .into())
            }
            Some((host, _)) if *host != me => {
                // The holder's kernel answers the probe with its MAC.
                let mac = self.world.management_mac(host)?;
                return Err(Error::conflict(format!("{} is in use by {mac}", vip.address())));
            }
            _ => {}
        }
        held.insert(vip.address(), (me, vip.interface().to_owned()));
        Ok(())
    }

    fn release_virtual_ip(&self, vip: &crate::driver::vip::VirtualIp) -> Result<()> {
        let me = self.op(SimOp::Network, |st| {
            known_interface(st, vip.interface())?;
            Ok(st.name.clone())
        })?;
        let mut held = lock(&self.world.inner.virtual_ips);
        if held
            .get(&vip.address())
            .is_some_and(|(host, interface)| *host == me && interface == vip.interface())
        {
            held.remove(&vip.address());
        }
        Ok(())
    }
}

/// `InvalidArgument` unless `interface` is one of the host's (a port, bond, VLAN interface or
/// bridge, or the management bridge).
fn known_interface(st: &HostState, interface: &str) -> Result<()> {
    let n = &st.network;
    let known = interface == SIM_BRIDGE
        || st.ports.iter().any(|p| p.name == interface)
        || n.bonds.iter().any(|b| b.name == interface)
        || n.vlans.iter().any(|v| v.name() == interface)
        || n.bridges.iter().any(|b| b.name == interface);
    if !known {
        return Err(Error::invalid("interface", format!("server {} has no interface {interface}", st.name)));
    }
    Ok(())
}

impl DomainOps for SimConnection {
    fn list_domains(&self) -> Result<Vec<DomainStatus>> {
        self.op(SimOp::Query, |st| {
            let mut v = vec![DomainStatus {
                uuid: None,
                name: "Domain-0".into(),
                domid: 0,
                state: DomainRunState::Running,
                memory_mib: st.dom0_memory_mib,
                vcpus: st.cpus,
                cpu_time_ns: 0,
            }];
            let mut doms: Vec<&SimDomain> = st.domains.values().collect();
            doms.sort_by_key(|d| d.domid);
            v.extend(doms.into_iter().map(|d| DomainStatus {
                uuid: Some(d.spec.uuid),
                name: d.spec.name.clone(),
                domid: d.domid,
                state: d.state,
                memory_mib: d.spec.memory_mib,
                vcpus: d.spec.vcpus,
                cpu_time_ns: 0,
            }));
            Ok(v)
        })
    }

    fn create_domain(&self, spec: &DomainSpec) -> Result<u32> {
        for d in &spec.disks {
            if let Some(id) = crate::driver::lun_of(&d.path) {
                let seen = self.sees_lun(id)?;
                if !seen {
                    let host = lock(&self.host.state).name.clone();
                    return Err(Error::backend(host, format!("LUN {id} is not a disk of this server")));
                }
            }
        }
        if let Some(nb) = &spec.network_boot {
            // A network boot reads the installer from its install tree as a server does (over
            // HTTP, checked), into a directory that goes when the simulated guest has "booted" it.
            let dir = std::env::temp_dir().join(format!(
                "ovm-sim-netboot-{}-{}",
                std::process::id(),
                spec.uuid.0.simple()
            ));
            let fetched = crate::driver::netboot::fetch_installer(nb, &dir);
            let _ = std::fs::remove_dir_all(&dir);
            fetched?;
        }
        let domid = self.op(SimOp::Create, |st| self.admit(st, spec))?;
        self.emit(DomainChange::Appeared { uuid: Some(spec.uuid), domid });
        Ok(domid)
    }

    fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()> {
        let ignores = self.world.ignores_shutdown(vm);
        if ignores {
            self.op(SimOp::Shutdown, |st| Self::domain(st, vm).map(|_| ()))?;
            std::thread::sleep(timeout);
            return Err(Error::Timeout {
                what: format!("guest {vm} to shut down"),
                millis: timeout.as_millis() as u64,
            });
        }
        let domid = self.op(SimOp::Shutdown, |st| {
            Self::domain(st, vm)?;
            Ok(st.domains.remove(&vm).map(|d| d.domid).unwrap_or_default())
        })?;
        self.forget_ha(vm);
        self.emit(DomainChange::StateChanged {
            uuid: Some(vm),
            domid,
            state: DomainRunState::Shutdown(ShutdownReason::Poweroff),
        });
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid });
        Ok(())
    }

    fn reboot(&self, vm: VmId, timeout: Duration) -> Result<()> {
        if self.world.ignores_shutdown(vm) {
            std::thread::sleep(timeout);
            return Err(Error::Timeout {
                what: format!("guest {vm} to reboot"),
                millis: timeout.as_millis() as u64,
            });
        }
        // As on Xen: the guest is asked to reboot, shuts down for reboot, and its `on_reboot`
        // action follows (by default a new domain with a new domid).
        self.op(SimOp::Reboot, |st| Self::domain(st, vm).map(drop))?;
        self.world.guest_reboot(vm)
    }

    fn destroy(&self, vm: VmId) -> Result<()> {
        let domid = self.op(SimOp::Destroy, |st| {
            Self::domain(st, vm)?;
            Ok(st.domains.remove(&vm).map(|d| d.domid).unwrap_or_default())
        })?;
        self.forget_ha(vm);
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid });
        Ok(())
    }

    fn pause(&self, vm: VmId) -> Result<()> {
        self.set_run_state(vm, DomainRunState::Paused)
    }

    fn unpause(&self, vm: VmId) -> Result<()> {
        self.set_run_state(vm, DomainRunState::Running)
    }

    fn suspend(&self, vm: VmId, path: &str) -> Result<()> {
        let domid = self.op(SimOp::Suspend, |st| {
            Self::domain(st, vm)?;
            if !st.mounts.keys().any(|m| storage::under(path, m)) {
                return Err(Error::backend(&st.name, format!("no file system is mounted at {path}")));
            }
            let d = st.domains.remove(&vm).ok_or_else(|| Error::backend("sim", "vanished"))?;
            // The image is a file of the guest's memory in the shared storage.
            lock(&self.world.inner.files).insert(path.to_owned(), d.spec.memory_mib << 20);
            lock(&self.world.inner.saved).insert(path.to_owned(), d.spec);
            Ok(d.domid)
        })?;
        self.forget_ha(vm);
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid });
        Ok(())
    }

    fn restore(&self, spec: &DomainSpec, path: &str) -> Result<u32> {
        let domid = self.op(SimOp::Restore, |st| {
            if !st.mounts.keys().any(|m| storage::under(path, m)) {
                return Err(Error::backend(&st.name, format!("no file system is mounted at {path}")));
            }
            let saved = lock(&self.world.inner.saved)
                .get(path)
                .cloned()
                .ok_or_else(|| Error::backend(&st.name, format!("no saved image at {path}")))?;
            if saved.uuid != spec.uuid {
                return Err(Error::invalid("image", "the saved image belongs to another domain"));
            }
            let domid = self.admit(st, spec)?;
            lock(&self.world.inner.saved).remove(path);
            lock(&self.world.inner.files).remove(path);
            Ok(domid)
        })?;
        self.emit(DomainChange::Appeared { uuid: Some(spec.uuid), domid });
        Ok(domid)
    }

    fn set_memory(&self, vm: VmId, memory_mib: u64) -> Result<()> {
        self.op(SimOp::Query, |st| {
            let name = st.name.clone();
            let used = Self::used_memory(st);
            let cap = st.memory_mib - st.dom0_memory_mib;
            let d = Self::domain(st, vm)?;
            if memory_mib > d.spec.max_memory_mib {
                return Err(Error::invalid("memory_mib", "exceeds the domain's maximum"));
            }
            if used - d.spec.memory_mib + memory_mib > cap {
                return Err(Error::backend(name, "not enough free memory"));
            }
            d.spec.memory_mib = memory_mib;
            Ok(())
        })
    }

    fn set_vcpus(&self, vm: VmId, vcpus: u32) -> Result<()> {
        self.op(SimOp::Query, |st| {
            let d = Self::domain(st, vm)?;
            if vcpus == 0 || vcpus > d.spec.max_vcpus {
                return Err(Error::invalid("vcpus", "must be 1..=max_vcpus"));
            }
            d.spec.vcpus = vcpus;
            Ok(())
        })
    }

    fn console(&self, vm: VmId) -> Result<String> {
        self.op(SimOp::Query, |st| Ok(Self::domain(st, vm)?.console.clone()))
    }

    fn send_guest_message(&self, vm: VmId, key: &str, value: &str) -> Result<()> {
        crate::driver::check_guest_message(key, value)?;
        self.op(SimOp::GuestMessage, |st| {
            let d = Self::domain(st, vm)?;
            d.messages.insert(key.to_owned(), value.to_owned());
            // The guest's reader answers, as the lab guest's does (a reply key too long to be
            // read back is not read back).
            let reply = format!("reply-{key}");
            if crate::driver::check_guest_key(&reply).is_ok() {
                d.data.insert(reply, value.to_owned());
            }
            d.console.push_str(&format!("OVM-DOMU-MSG {key}={value}\n"));
            Ok(())
        })
    }

    fn open_console(&self, vm: VmId) -> Result<std::os::unix::net::UnixStream> {
        let (name, domid) = self.op(SimOp::Query, |st| {
            let d = Self::domain(st, vm)?;
            // As on Xen: an HVM guest's device model serves its screen, and a PV guest's serves
            // its framebuffer if it has one.
            let screen = match d.spec.domain_type {
                crate::model::DomainType::Hvm | crate::model::DomainType::PvHvm => true,
                crate::model::DomainType::Pv => d.spec.framebuffer,
                crate::model::DomainType::Pvh => false,
            };
            if !screen {
                return Err(Error::invalid(
                    "vm",
                    format!("VM {vm} has no graphical console (no VNC server)"),
                ));
            }
            Ok((d.spec.name.clone(), d.domid))
        })?;
        console::open(name, domid).map_err(|e| Error::Internal { message: format!("console: {e}") })
    }

    fn guest_messages(&self, vm: VmId) -> Result<BTreeMap<String, String>> {
        self.op(SimOp::Query, |st| Ok(Self::domain(st, vm)?.messages.clone()))
    }

    fn remove_guest_message(&self, vm: VmId, key: &str) -> Result<()> {
        crate::driver::check_guest_key(key)?;
        self.op(SimOp::GuestMessage, |st| {
            Self::domain(st, vm)?.messages.remove(key);
            Ok(())
        })
    }

    fn guest_data(&self, vm: VmId) -> Result<BTreeMap<String, String>> {
        self.op(SimOp::Query, |st| Ok(Self::domain(st, vm)?.data.clone()))
    }

    fn watch(&self) -> Result<broadcast::Receiver<DomainChange>> {
        Ok(self.host.changes.subscribe())
    }

    fn attach_nic(&self, vm: VmId, nic: &crate::driver::NicSpec) -> Result<()> {
        self.op(SimOp::Create, |st| {
            network::check_bridges(st, std::slice::from_ref(nic))?;
            let name = st.name.clone();
            let d = Self::domain(st, vm)?;
            if d.spec.nics.iter().any(|n| n.mac.eq_ignore_ascii_case(&nic.mac)) {
                return Err(Error::backend(name, format!("the domain has a NIC {} already", nic.mac)));
            }
            d.spec.nics.push(nic.clone());
            Ok(())
        })
    }

    fn detach_nic(&self, vm: VmId, mac: &str) -> Result<()> {
        self.op(SimOp::Destroy, |st| {
            let name = st.name.clone();
            let d = Self::domain(st, vm)?;
            let before = d.spec.nics.len();
            d.spec.nics.retain(|n| !n.mac.eq_ignore_ascii_case(mac));
            if d.spec.nics.len() == before {
                return Err(Error::backend(name, format!("the domain has no NIC {mac}")));
            }
            Ok(())
        })
    }

    fn domain_nics(&self, vm: VmId) -> Result<Vec<(String, String, bool)>> {
        self.op(SimOp::Query, |st| {
            let d = Self::domain(st, vm)?;
            Ok(d.spec
                .nics
                .iter()
                .map(|n| (n.mac.clone(), n.bridge.clone().unwrap_or_else(|| SIM_BRIDGE.into()), true))
                .collect())
        })
    }
}

impl ServerConnection for SimConnection {
    fn file_storage(&self) -> Option<&dyn FileStoragePlugin> {
        Some(self)
    }
    fn array_storage(&self) -> Option<&dyn StorageArrayPlugin> {
        Some(self)
    }
    fn network(&self) -> Option<&dyn NetworkOps> {
        Some(self)
    }
    fn cluster(&self) -> Option<&dyn ClusterOps> {
        Some(self)
    }
    fn migration(&self) -> Option<&dyn MigrationOps> {
        Some(self)
    }

    fn migration_streams(&self) -> Option<&dyn crate::driver::MigrationStreams> {
        Some(self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::world::parse_address;
    use super::*;

    pub(crate) fn spec(mem: u64) -> DomainSpec {
        DomainSpec {
            uuid: VmId::new(),
            name: "d".into(),
            domain_type: crate::model::DomainType::Pv,
            vcpus: 1,
            max_vcpus: 2,
            memory_mib: mem,
            max_memory_mib: mem,
            disks: vec![],
            nics: vec![],
            kernel: None,
            initrd: None,
            cmdline: None,
            restart_actions: Default::default(),
            boot_order: Vec::new(),
            ha_priority: None,
            framebuffer: false,
            network_boot: None,
        }
    }

    #[test]
    fn address_parsing() {
        assert_eq!(parse_address("sim://a?cpus=4&memory_mib=4096").unwrap().cpus, 4);
        assert!(parse_address("sim://").is_err());
        assert!(parse_address("xen://a").is_err());
        assert!(parse_address("sim://a?cpus=x").is_err());
        assert!(parse_address("sim://a?bogus=1").is_err());
        assert_eq!(
            parse_address("sim://a?create_ms=1500").unwrap().create_time,
            std::time::Duration::from_millis(1500)
        );
        assert!(parse_address("sim://a b").is_err());
    }

    #[test]
    fn hypervisor_facts_come_from_the_address() {
        use crate::model::{HostCpu, VirtCapabilities};
        let a = parse_address("sim://a").unwrap();
        assert_eq!(a.virt, VirtCapabilities::ALL);
        assert_eq!(a.cpu, HostCpu { vendor: SIM_CPU_VENDOR.into(), features: SIM_CPU_FEATURES.to_vec() });
        let a = parse_address(
            "sim://a?caps=pv,hvm,hap&cpu=0x1f,ff&cpu_vendor=AuthenticAMD&xen=4.16.2&toolstack=xl",
        )
        .unwrap();
        assert_eq!(a.virt, VirtCapabilities { shadow: false, ..VirtCapabilities::ALL });
        assert_eq!(a.cpu, HostCpu { vendor: "AuthenticAMD".into(), features: vec![0x1f, 0xff] });
        assert_eq!((a.xen_version.as_str(), a.toolstack.as_str()), ("4.16.2", "xl"));
        let none = parse_address("sim://a?caps=").unwrap().virt;
        assert_eq!(none, VirtCapabilities { pv: false, hvm: false, hap: false, shadow: false });
        for bad in [
            "sim://a?caps=pv,vmx",
            "sim://a?cpu=",
            "sim://a?cpu=xyz",
            "sim://a?cpu=100000000",
            "sim://a?cpu=1,2,3,4,5,6,7,8,9",
            "sim://a?cpu_vendor=",
            "sim://a?xen=4 17",
            "sim://a?toolstack=",
        ] {
            let err = parse_address(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}: {err}");
        }
        // What the host reports, and the domain types it runs.
        let d = SimDriver::default();
        let h = d.connect("sim://pvonly?caps=pv&xen=4.16.2", DEFAULT_PASSWORD, "m").unwrap();
        let hw = h.host_info().unwrap().hardware;
        assert_eq!(
            (hw.xen_version.as_str(), hw.hvm_capable, hw.toolstack.as_str()),
            ("4.16.2", false, SIM_TOOLSTACK)
        );
        assert_eq!(hw.virt, Some(VirtCapabilities { pv: true, hvm: false, hap: false, shadow: false }));
        let mut hvm = spec(1024);
        hvm.domain_type = crate::model::DomainType::Hvm;
        let err = h.create_domain(&hvm).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported, "{err}");
        h.create_domain(&spec(1024)).unwrap();
    }

    #[test]
    fn capacity_password_and_faults() {
        let d = SimDriver::default();
        assert_eq!(
            d.connect("sim://h1?memory_mib=4096", "nope", "m1").unwrap_err().kind(),
            crate::ErrorKind::PermissionDenied
        );
        let h = d.connect("sim://h1", DEFAULT_PASSWORD, "m1").unwrap();
        assert_eq!(
            d.connect("sim://h1", DEFAULT_PASSWORD, "m2").unwrap_err().kind(),
            crate::ErrorKind::PermissionDenied
        );
        let mut rx = h.watch().unwrap();
        let s = spec(2048);
        h.create_domain(&s).unwrap();
        assert!(matches!(rx.try_recv().unwrap(), DomainChange::Appeared { .. }));
        // 4096 - 1024 dom0 - 2048 = 1024 free.
        let err = h.create_domain(&spec(2048)).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InsufficientResources);
        h.pause(s.uuid).unwrap();
        assert_eq!(h.list_domains().unwrap()[1].state, DomainRunState::Paused);
        d.world().fail_next(SimOp::Destroy, Some("h1"), 1);
        assert_eq!(h.destroy(s.uuid).unwrap_err().kind(), crate::ErrorKind::Backend);
        h.destroy(s.uuid).unwrap();
        assert_eq!(h.list_domains().unwrap().len(), 1);
        d.world().lose_host("h1").unwrap();
        assert!(h.load().is_err());
    }
}
