//! The `sim` driver: in-process simulated Xen servers, like libvirt's `test:///default`.
//!
//! A [`SimWorld`] holds simulated hosts addressed as `sim://NAME` (optionally
//! `sim://NAME?cpus=16&memory_mib=65536&password=secret`; a host is created on first contact).
//! Hosts enforce CPU-independent memory capacity and power-state rules, report load, emit
//! [`DomainChange`]s, and can be told to fail: a host lost, the next N calls of an operation
//! failing, operations delayed, guests ignoring shutdown requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use super::{DomainChange, DomainRunState, DomainSpec, DomainStatus, Driver, HostInfo, HostLoad, Hypervisor};
use crate::model::{EthernetPort, HostHardware, VmId};
use crate::{Error, Result};

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
    /// `migrate`.
    Migrate,
    /// `host_info`/`load`/`list_domains`.
    Query,
    /// `storage_create`/`storage_copy`/`storage_delete`.
    Storage,
}

#[derive(Debug)]
struct SimDomain {
    spec: DomainSpec,
    domid: u32,
    state: DomainRunState,
    cpu_load_percent: f32,
    console: String,
}

#[derive(Debug)]
struct HostState {
    name: String,
    cpus: u32,
    memory_mib: u64,
    dom0_memory_mib: u64,
    password: String,
    owner: Option<String>,
    powered_on: bool,
    lost: bool,
    domains: HashMap<VmId, SimDomain>,
    saved: HashMap<String, DomainSpec>,
    mac: String,
}

#[derive(Debug)]
struct SimHost {
    state: Mutex<HostState>,
    changes: broadcast::Sender<DomainChange>,
}

#[derive(Debug, Default)]
struct Faults {
    fail_next: Vec<(SimOp, Option<String>, u32)>,
    delays: HashMap<SimOp, Duration>,
    ignore_shutdown: Vec<VmId>,
}

#[derive(Debug, Default)]
struct WorldInner {
    hosts: Mutex<HashMap<String, Arc<SimHost>>>,
    faults: Mutex<Faults>,
    next_domid: AtomicU32,
    files: Mutex<HashMap<String, u64>>,
}

/// A set of simulated servers. Cheap to clone; clones share the same world.
#[derive(Debug, Clone, Default)]
pub struct SimWorld {
    inner: Arc<WorldInner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parsed `sim://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimAddress {
    name: String,
    cpus: u32,
    memory_mib: u64,
    password: String,
}

fn parse_address(address: &str) -> Result<SimAddress> {
    let rest = address
        .strip_prefix("sim://")
        .ok_or_else(|| Error::invalid("address", format!("{address:?} is not a sim:// address")))?;
    let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
    if name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(Error::invalid("address", format!("{name:?} is not a valid simulated host name")));
    }
    let mut a = SimAddress {
        name: name.to_owned(),
        cpus: 8,
        memory_mib: 32 * 1024,
        password: DEFAULT_PASSWORD.to_owned(),
    };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) =
            kv.split_once('=').ok_or_else(|| Error::invalid("address", format!("bad parameter {kv:?}")))?;
        let num = || v.parse::<u64>().map_err(|_| Error::invalid("address", format!("{k} must be a number")));
        match k {
            "cpus" => {
                a.cpus = u32::try_from(num()?).map_err(|_| Error::invalid("address", "cpus too large"))?
            }
            "memory_mib" => a.memory_mib = num()?,
            "password" => a.password = v.to_owned(),
            _ => return Err(Error::invalid("address", format!("unknown parameter {k:?}"))),
        }
    }
    if a.cpus == 0 || a.memory_mib < 1024 {
        return Err(Error::invalid("address", "a simulated host needs ≥1 CPU and ≥1024 MiB"));
    }
    Ok(a)
}

impl SimWorld {
    /// An empty world.
    pub fn new() -> Self {
        Self::default()
    }

    fn host(&self, name: &str) -> Result<Arc<SimHost>> {
        lock(&self.inner.hosts)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::backend(name, "no such simulated host"))
    }

    fn host_for(&self, address: &str) -> Result<Arc<SimHost>> {
        let a = parse_address(address)?;
        let mut hosts = lock(&self.inner.hosts);
        let n = hosts.len() as u64;
        let host = hosts.entry(a.name.clone()).or_insert_with(|| {
            Arc::new(SimHost {
                state: Mutex::new(HostState {
                    name: a.name.clone(),
                    cpus: a.cpus,
                    memory_mib: a.memory_mib,
                    dom0_memory_mib: 1024,
                    password: a.password.clone(),
                    owner: None,
                    powered_on: true,
                    lost: false,
                    domains: HashMap::new(),
                    saved: HashMap::new(),
                    mac: crate::model::format_mac(0x02_00_5e_00_00_00 + n),
                }),
                changes: broadcast::channel(1024).0,
            })
        });
        Ok(host.clone())
    }

    /// Make the next `count` calls of `op` fail (on `host` only, if given).
    pub fn fail_next(&self, op: SimOp, host: Option<&str>, count: u32) {
        lock(&self.inner.faults).fail_next.push((op, host.map(str::to_owned), count));
    }

    /// Delay every call of `op` by `delay` (zero removes the delay).
    pub fn set_delay(&self, op: SimOp, delay: Duration) {
        let mut f = lock(&self.inner.faults);
        if delay.is_zero() {
            f.delays.remove(&op);
        } else {
            f.delays.insert(op, delay);
        }
    }

    /// Make a guest ignore graceful shutdown and reboot requests.
    pub fn ignore_shutdown(&self, vm: VmId, ignore: bool) {
        let mut f = lock(&self.inner.faults);
        f.ignore_shutdown.retain(|v| *v != vm);
        if ignore {
            f.ignore_shutdown.push(vm);
        }
    }

    /// Simulate the loss of a host: its domains die and every call to it fails until
    /// [`SimWorld::restore_host`].
    pub fn lose_host(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        {
            let mut st = lock(&h.state);
            st.lost = true;
            st.domains.clear();
        }
        // A lost host reports nothing about its domains: the manager only sees the connection go.
        let _ = h.changes.send(DomainChange::HostLost);
        Ok(())
    }

    /// Bring a lost host back (empty, as after a reboot).
    pub fn restore_host(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        let mut st = lock(&h.state);
        st.lost = false;
        st.powered_on = true;
        Ok(())
    }

    /// Power a host on, as Wake-on-LAN would.
    pub fn wake(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        lock(&h.state).powered_on = true;
        Ok(())
    }

    /// Whether a host is powered on and not lost.
    pub fn is_up(&self, name: &str) -> bool {
        self.host(name).map(|h| {
            let st = lock(&h.state);
            st.powered_on && !st.lost
        }) == Ok(true)
    }

    /// Set the CPU load a domain generates, percent of one vCPU (default 10).
    pub fn set_domain_load(&self, vm: VmId, percent: f32) {
        for h in lock(&self.inner.hosts).values() {
            if let Some(d) = lock(&h.state).domains.get_mut(&vm) {
                d.cpu_load_percent = percent.clamp(0.0, 100.0);
            }
        }
    }

    /// Make the guest inside a domain crash (Xen reports shutdown reason `crash`).
    pub fn crash_domain(&self, vm: VmId) -> Result<()> {
        for h in lock(&self.inner.hosts).values() {
            let mut st = lock(&h.state);
            if let Some(d) = st.domains.remove(&vm) {
                drop(st);
                let _ = h.changes.send(DomainChange::StateChanged {
                    uuid: Some(vm),
                    domid: d.domid,
                    state: DomainRunState::Shutdown(super::ShutdownReason::Crash),
                });
                let _ = h.changes.send(DomainChange::Disappeared { uuid: Some(vm), domid: d.domid });
                return Ok(());
            }
        }
        Err(Error::backend("sim", format!("domain {vm} is not resident anywhere")))
    }

    /// Size of a file in the simulated shared storage, if it exists.
    pub fn file_size(&self, path: &str) -> Option<u64> {
        lock(&self.inner.files).get(path).copied()
    }

    /// Put a file of `size_bytes` at `path` in the simulated shared storage (as if an administrator
    /// had placed it there), replacing any file at that path.
    pub fn put_file(&self, path: &str, size_bytes: u64) {
        lock(&self.inner.files).insert(path.to_owned(), size_bytes);
    }

    /// Number of files in the simulated shared storage.
    pub fn file_count(&self) -> usize {
        lock(&self.inner.files).len()
    }

    /// The names of the simulated hosts.
    pub fn host_names(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.inner.hosts).keys().cloned().collect();
        v.sort();
        v
    }

    fn before(&self, op: SimOp, host: &str) -> Result<()> {
        // The delay comes first, so a fault armed while an operation is under way still hits it.
        let delay = lock(&self.inner.faults).delays.get(&op).copied();
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let mut f = lock(&self.inner.faults);
        if let Some(i) = f
            .fail_next
            .iter()
            .position(|(o, h, n)| *o == op && *n > 0 && h.as_deref().is_none_or(|h| h == host))
        {
            f.fail_next[i].2 -= 1;
            if f.fail_next[i].2 == 0 {
                f.fail_next.remove(i);
            }
            return Err(Error::backend(host, format!("injected failure of {op:?}")));
        }
        Ok(())
    }
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
    fn handles(&self, address: &str) -> bool {
        address.starts_with("sim://")
    }

    fn connect(&self, address: &str, password: &str, manager_id: &str) -> Result<Arc<dyn Hypervisor>> {
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

    fn reconnect(&self, address: &str, manager_id: &str) -> Result<Arc<dyn Hypervisor>> {
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
        let name = lock(&self.host.state).name.clone();
        self.world.before(op, &name)?;
        let mut st = lock(&self.host.state);
        if st.lost || !st.powered_on {
            return Err(Error::backend(&st.name, "host unreachable"));
        }
        f(&mut st)
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

    fn admit(&self, st: &mut HostState, spec: &DomainSpec) -> Result<u32> {
        if st.domains.contains_key(&spec.uuid) {
            return Err(Error::backend(&st.name, format!("domain {} is already resident", spec.name)));
        }
        let free = st.memory_mib - st.dom0_memory_mib - Self::used_memory(st);
        if spec.memory_mib > free {
            return Err(Error::InsufficientResources {
                object: crate::model::ObjectRef::new(crate::model::ObjectKind::Vm, spec.uuid),
                resource: "memory (MiB)".into(),
                needed: spec.memory_mib,
                available: free,
            });
        }
        let domid = self.world.inner.next_domid.fetch_add(1, Ordering::Relaxed) + 1;
        st.domains.insert(
            spec.uuid,
            SimDomain {
                spec: spec.clone(),
                domid,
                state: DomainRunState::Running,
                cpu_load_percent: 10.0,
                console: format!(
                    "[sim] Xen domain {} (domid {domid}) on {}: {} vCPU, {} MiB\n[sim] ovm-sim guest up\n",
                    spec.name, st.name, spec.vcpus, spec.memory_mib
                ),
            },
        );
        Ok(domid)
    }
}

impl Hypervisor for SimConnection {
    fn host_info(&self) -> Result<HostInfo> {
        self.op(SimOp::Query, |st| {
            Ok(HostInfo {
                hostname: st.name.clone(),
                hardware: HostHardware {
                    cpus: st.cpus,
                    memory_mib: st.memory_mib,
                    xen_version: "4.17.0-sim".into(),
                    ports: vec![EthernetPort {
                        name: "eth0".into(),
                        mac: st.mac.clone(),
                        speed_mbps: Some(10_000),
                    }],
                    hvm_capable: true,
                },
                dom0_memory_mib: st.dom0_memory_mib,
                owner: st.owner.clone(),
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
            Ok(HostLoad {
                cpu_percent: (busy / st.cpus as f32).min(100.0),
                guest_memory_mib: used,
                free_memory_mib: st.memory_mib - st.dom0_memory_mib - used,
            })
        })
    }

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
        let domid = self.op(SimOp::Create, |st| self.admit(st, spec))?;
        self.emit(DomainChange::Appeared { uuid: Some(spec.uuid), domid });
        Ok(domid)
    }

    fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()> {
        let ignores = lock(&self.world.inner.faults).ignore_shutdown.contains(&vm);
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
        self.emit(DomainChange::StateChanged {
            uuid: Some(vm),
            domid,
            state: DomainRunState::Shutdown(super::ShutdownReason::Poweroff),
        });
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid });
        Ok(())
    }

    fn reboot(&self, vm: VmId, timeout: Duration) -> Result<()> {
        if lock(&self.world.inner.faults).ignore_shutdown.contains(&vm) {
            std::thread::sleep(timeout);
            return Err(Error::Timeout {
                what: format!("guest {vm} to reboot"),
                millis: timeout.as_millis() as u64,
            });
        }
        self.op(SimOp::Reboot, |st| {
            let d = Self::domain(st, vm)?;
            d.console.push_str("[sim] reboot\n[sim] ovm-sim guest up\n");
            d.state = DomainRunState::Running;
            Ok(())
        })
    }

    fn destroy(&self, vm: VmId) -> Result<()> {
        let domid = self.op(SimOp::Destroy, |st| {
            Self::domain(st, vm)?;
            Ok(st.domains.remove(&vm).map(|d| d.domid).unwrap_or_default())
        })?;
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid });
        Ok(())
    }

    fn pause(&self, vm: VmId) -> Result<()> {
        let domid = self.op(SimOp::Pause, |st| {
            let d = Self::domain(st, vm)?;
            d.state = DomainRunState::Paused;
            Ok(d.domid)
        })?;
        self.emit(DomainChange::StateChanged { uuid: Some(vm), domid, state: DomainRunState::Paused });
        Ok(())
    }

    fn unpause(&self, vm: VmId) -> Result<()> {
        let domid = self.op(SimOp::Pause, |st| {
            let d = Self::domain(st, vm)?;
            d.state = DomainRunState::Running;
            Ok(d.domid)
        })?;
        self.emit(DomainChange::StateChanged { uuid: Some(vm), domid, state: DomainRunState::Running });
        Ok(())
    }

    fn suspend(&self, vm: VmId, path: &str) -> Result<()> {
        let domid = self.op(SimOp::Suspend, |st| {
            Self::domain(st, vm)?;
            let d = st.domains.remove(&vm).ok_or_else(|| Error::backend("sim", "vanished"))?;
            st.saved.insert(path.to_owned(), d.spec);
            Ok(d.domid)
        })?;
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid });
        Ok(())
    }

    fn restore(&self, spec: &DomainSpec, path: &str) -> Result<u32> {
        let domid = self.op(SimOp::Restore, |st| {
            let saved = st
                .saved
                .get(path)
                .cloned()
                .ok_or_else(|| Error::backend(&st.name, format!("no saved image at {path}")))?;
            if saved.uuid != spec.uuid {
                return Err(Error::backend(&st.name, "the saved image belongs to another domain"));
            }
            let domid = self.admit(st, spec)?;
            st.saved.remove(path);
            Ok(domid)
        })?;
        self.emit(DomainChange::Appeared { uuid: Some(spec.uuid), domid });
        Ok(domid)
    }

    fn migrate(&self, vm: VmId, destination: &str, _live: bool) -> Result<()> {
        let dest_host = self.world.host_for(destination)?;
        if Arc::ptr_eq(&dest_host, &self.host) {
            return Err(Error::invalid("destination", "a domain cannot migrate to its own server"));
        }
        let dest = SimConnection { host: dest_host, world: self.world.clone() };
        let (spec, old_domid) = self.op(SimOp::Migrate, |st| {
            let d = Self::domain(st, vm)?;
            Ok((d.spec.clone(), d.domid))
        })?;
        let new_domid = dest.op(SimOp::Migrate, |st| dest.admit(st, &spec))?;
        dest.emit(DomainChange::Appeared { uuid: Some(vm), domid: new_domid });
        lock(&self.host.state).domains.remove(&vm);
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid: old_domid });
        Ok(())
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

    fn watch(&self) -> Result<broadcast::Receiver<DomainChange>> {
        Ok(self.host.changes.subscribe())
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

    fn storage_create(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            let mut files = lock(&self.world.inner.files);
            if files.contains_key(path) {
                return Err(Error::backend(&st.name, format!("{path} already exists")));
            }
            files.insert(path.to_owned(), size_bytes);
            Ok(())
        })
    }

    fn storage_copy(&self, from: &str, to: &str) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            let mut files = lock(&self.world.inner.files);
            let size =
                *files.get(from).ok_or_else(|| Error::backend(&st.name, format!("{from} does not exist")))?;
            if files.contains_key(to) {
                return Err(Error::backend(&st.name, format!("{to} already exists")));
            }
            files.insert(to.to_owned(), size);
            Ok(())
        })
    }

    fn storage_delete(&self, path: &str) -> Result<()> {
        self.op(SimOp::Storage, |_| {
            lock(&self.world.inner.files).remove(path);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mem: u64) -> DomainSpec {
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
        }
    }

    #[test]
    fn address_parsing() {
        assert_eq!(parse_address("sim://a?cpus=4&memory_mib=4096").unwrap().cpus, 4);
        assert!(parse_address("sim://").is_err());
        assert!(parse_address("xen://a").is_err());
        assert!(parse_address("sim://a?cpus=x").is_err());
        assert!(parse_address("sim://a?bogus=1").is_err());
        assert!(parse_address("sim://a b").is_err());
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
