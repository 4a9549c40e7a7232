//! The simulated world: hosts, their domains, shared storage, storage arrays and clusters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::faults::Faults;
use super::DEFAULT_PASSWORD;
use crate::clock::{Clock, SimClock};
use crate::driver::network::NetworkConfig;
use crate::driver::storage::{AccessGroup, Lun};
use crate::driver::{
    lock, ChassisPower, DomainChange, DomainRunState, DomainSpec, MigrationTicket, PowerController,
    ShutdownReason,
};
use crate::model::{HostCpu, OutOfBand, Timestamp, VirtCapabilities, VmId};
use crate::policy::election::{ClusterLock, CommandRefusal, ElectionConfig, Epoch, Node};
use crate::{Error, Result};

#[derive(Debug)]
pub(super) struct SimDomain {
    pub(super) spec: DomainSpec,
    pub(super) domid: u32,
    pub(super) state: DomainRunState,
    pub(super) cpu_load_percent: f32,
    pub(super) console: String,
    /// Messages left for the guest.
    pub(super) messages: BTreeMap<String, String>,
    /// What the guest reports: the simulated guest runs the lab guest's reader, which answers
    /// each message `K` = `V` with `reply-K` = `V`.
    pub(super) data: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(super) struct HostState {
    pub(super) name: String,
    pub(super) cpus: u32,
    pub(super) memory_mib: u64,
    pub(super) dom0_memory_mib: u64,
    pub(super) password: String,
    pub(super) owner: Option<String>,
    pub(super) powered_on: bool,
    pub(super) lost: bool,
    pub(super) domains: HashMap<VmId, SimDomain>,
    /// Mount point → what is mounted there.
    pub(super) mounts: BTreeMap<String, crate::driver::storage::MountSource>,
    /// iSCSI sessions.
    pub(super) sessions: Vec<crate::driver::storage::IscsiSession>,
    pub(super) network: NetworkConfig,
    /// Ethernet ports.
    pub(super) ports: Vec<crate::model::EthernetPort>,
    /// The address the manager reaches the host at (on `xenbr0`).
    pub(super) management_ip: std::net::IpAddr,
    /// A tentative network change has cut the management link: calls fail until it is undone or
    /// confirmed.
    pub(super) cut: bool,
    /// Memory promised to incoming migrations, by ticket token.
    pub(super) incoming: HashMap<String, (VmId, u64)>,
    /// What the simulated hypervisor can do.
    pub(super) virt: VirtCapabilities,
    /// The simulated CPU.
    pub(super) cpu: HostCpu,
    /// The simulated hypervisor's version string.
    pub(super) xen_version: String,
    /// The simulated toolstack.
    pub(super) toolstack: String,
    /// How long building a domain takes on this host (a slow server).
    pub(super) create_time: std::time::Duration,
    /// Traffic counters of dom0's interfaces (bytes received, bytes sent), by interface name.
    pub(super) traffic: BTreeMap<String, (u64, u64)>,
}

#[derive(Debug)]
pub(super) struct SimHost {
    pub(super) state: Mutex<HostState>,
    pub(super) changes: broadcast::Sender<DomainChange>,
    /// Tentative network changes.
    pub(super) net_txns: crate::driver::NetworkTxns,
}

/// A simulated storage array (an iSCSI target).
#[derive(Debug, Default)]
pub(super) struct SimArray {
    /// Initiators allowed to log in (empty: anyone).
    pub(super) allowed: Vec<String>,
    pub(super) luns: BTreeMap<String, Lun>,
    pub(super) groups: BTreeMap<String, AccessGroup>,
    pub(super) next_lun: u64,
}

/// The management interface of a simulated vendor-style array (as `ovm-lio` is for LIO).
#[derive(Debug, Clone)]
pub(super) struct SimArrayAdmin {
    pub(super) username: String,
    pub(super) password: String,
    pub(super) targets: Vec<String>,
}

/// A simulated cluster: the shared state of [`crate::policy::election`] and each member's own
/// side.
#[derive(Debug, Clone)]
pub(super) struct SimCluster {
    /// Host names, in joining order.
    pub(super) members: Vec<String>,
    pub(super) lock: ClusterLock,
    /// Each member's own side (its current boot).
    pub(super) nodes: BTreeMap<String, Node>,
}

impl SimCluster {
    pub(super) fn new(config: ElectionConfig) -> SimCluster {
        SimCluster { members: Vec::new(), lock: ClusterLock::new(config), nodes: BTreeMap::new() }
    }

    /// If the master lock is free, the first member in joining order that reaches the cluster and
    /// has not fenced itself takes it.
    pub(super) fn elect(&mut self, net: &ClusterNet, now: Timestamp) {
        if self.lock.master().is_some() {
            return;
        }
        for m in &self.members {
            let Some(node) = self.nodes.get_mut(m) else { continue };
            if net.down.contains(m) || net.partitioned.contains(m) || node.is_fenced() {
                continue;
            }
            if let Ok(e) = self.lock.try_acquire(m, node.incarnation(), now) {
                node.became_master(e);
                return;
            }
        }
    }
}

/// Who reaches the clusters' shared state: hosts cut off from it, hosts down, and how often each
/// host has booted.
#[derive(Debug, Default)]
pub(super) struct ClusterNet {
    pub(super) partitioned: BTreeSet<String>,
    pub(super) down: BTreeSet<String>,
    pub(super) boots: BTreeMap<String, u64>,
    /// The timing of clusters made from now on (default: a 120 s cluster timeout).
    pub(super) config: Option<ElectionConfig>,
}

impl ClusterNet {
    pub(super) fn boot_of(&self, host: &str) -> u64 {
        self.boots.get(host).copied().unwrap_or(1)
    }

    pub(super) fn config(&self) -> ElectionConfig {
        self.config.unwrap_or(DEFAULT_ELECTION)
    }
}

/// T = 120 s (a pool's default cluster timeout), M = 12 s.
const DEFAULT_ELECTION: ElectionConfig =
    ElectionConfig { heartbeat_timeout_ms: 120_000, fence_margin_ms: 12_000 };

#[derive(Debug, Default)]
pub(super) struct WorldInner {
    pub(super) hosts: Mutex<HashMap<String, Arc<SimHost>>>,
    pub(super) faults: Mutex<Faults>,
    pub(super) next_domid: AtomicU32,
    pub(super) files: Mutex<HashMap<String, u64>>,
    /// Suspend images in the shared storage, by path: the domain saved there.
    pub(super) saved: Mutex<HashMap<String, DomainSpec>>,
    /// The contents of the small files written whole (configuration files), by path.
    pub(super) contents: Mutex<HashMap<String, Vec<u8>>>,
    /// File system (a mount source's text, `host:/export`) → capacity, bytes.
    pub(super) file_systems: Mutex<BTreeMap<String, u64>>,
    /// File system → the id of the repository whose marker it holds.
    pub(super) markers: Mutex<BTreeMap<String, String>>,
    /// File servers reached through an external plug-in: (plug-in, host) → their file systems'
    /// paths (each also in `file_systems`, keyed by its mount source's text).
    pub(super) external_servers: Mutex<BTreeMap<(String, String), Vec<String>>>,
    pub(super) arrays: Mutex<BTreeMap<String, SimArray>>,
    /// Management interfaces of vendor-style arrays, by host.
    pub(super) array_admins: Mutex<BTreeMap<String, SimArrayAdmin>>,
    pub(super) clusters: Mutex<BTreeMap<String, SimCluster>>,
    /// Lock order: a host's state, then `clusters`, then `cluster_net`.
    pub(super) cluster_net: Mutex<ClusterNet>,
    /// The time of the clusters' heartbeats and leases.
    pub(super) cluster_clock: SimClock,
    /// Virtual IPs → the host and interface holding them (one LAN: the management network).
    pub(super) virtual_ips: Mutex<BTreeMap<std::net::Ipv4Addr, (String, String)>>,
    /// Ticket token → (destination host, ticket).
    pub(super) tickets: Mutex<HashMap<String, (String, MigrationTicket)>>,
    pub(super) next_ticket: AtomicU32,
    /// Migrations under way from or to each host: (now, most at once).
    pub(super) migrating: Mutex<HashMap<String, (u32, u32)>>,
    /// How long a migration from or to each host takes at least.
    pub(super) migration_time: Mutex<HashMap<String, std::time::Duration>>,
    /// The Wake-on-LAN magic packets sent, in order.
    pub(super) magic_packets: Mutex<Vec<MagicPacket>>,
    /// The CPU load each guest generates wherever it runs, percent of one vCPU (when set).
    pub(super) guest_loads: Mutex<HashMap<VmId, f32>>,
    /// The calls the simulated management controllers answered ("OP HOST").
    pub(super) bmc_calls: Mutex<Vec<String>>,
    /// The HA records on the clusters' pool file systems: VM → (cluster, host, domain), as a
    /// clustered pool's servers keep them on Xen (`xen::pool_ha`).
    pub(super) ha_records: Mutex<BTreeMap<VmId, (String, String, DomainSpec)>>,
    /// When a request of the owning manager last reached each host's agent (real time).
    pub(super) manager_seen: Mutex<HashMap<String, std::time::Instant>>,
    /// How long a cluster's master waits after the manager's last request before it restarts the
    /// HA domains of dead members itself (`None`, the default: it never does).
    pub(super) manager_grace: Mutex<Option<Duration>>,
}

/// A Wake-on-LAN magic packet a simulated host sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicPacket {
    /// The host that sent it.
    pub sender: String,
    /// The interface it left by.
    pub interface: String,
    /// The MAC it wakes.
    pub mac: String,
}

/// A set of simulated servers. Cheap to clone; clones share the same world.
#[derive(Debug, Clone, Default)]
pub struct SimWorld {
    pub(super) inner: Arc<WorldInner>,
}

/// Capacity of a simulated file system mounted without being added first: 1 TiB.
pub const DEFAULT_FILE_SYSTEM_BYTES: u64 = 1 << 40;

/// The CPU vendor of a simulated host unless its address sets another (`cpu_vendor=`).
pub const SIM_CPU_VENDOR: &str = "GenuineIntel";

/// The CPU feature words of a simulated host unless its address sets others (`cpu=`): one
/// common feature set, so simulated servers are compatible by default (Xen's featureset words:
/// CPUID 1 EDX, 1 ECX, 0x80000001 EDX, 0x80000001 ECX, 0xd:1 EAX, 7:0 EBX).
pub const SIM_CPU_FEATURES: [u32; 6] =
    [0x178b_fbff, 0x7ffa_3223, 0x2c10_0800, 0x0000_0121, 0x0000_000f, 0x029c_67af];

/// The hypervisor version a simulated host reports unless its address sets another (`xen=`).
pub const SIM_XEN_VERSION: &str = "4.17.0-sim";

/// The toolstack a simulated host reports unless its address sets another (`toolstack=`).
pub const SIM_TOOLSTACK: &str = "sim";

/// Parsed `sim://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SimAddress {
    pub(super) name: String,
    pub(super) cpus: u32,
    pub(super) memory_mib: u64,
    pub(super) password: String,
    pub(super) virt: VirtCapabilities,
    pub(super) cpu: HostCpu,
    pub(super) xen_version: String,
    pub(super) toolstack: String,
    /// How long building a domain takes (`create_ms=`; default none).
    pub(super) create_time: std::time::Duration,
}

/// `caps=`: a comma-separated list of `pv`, `hvm`, `hap`, `shadow` (possibly empty).
fn parse_caps(v: &str) -> Result<VirtCapabilities> {
    let mut c = VirtCapabilities { pv: false, hvm: false, hap: false, shadow: false };
    for cap in v.split(',').filter(|s| !s.is_empty()) {
        match cap {
            "pv" => c.pv = true,
            "hvm" => c.hvm = true,
            "hap" => c.hap = true,
            "shadow" => c.shadow = true,
            _ => {
                return Err(Error::invalid(
                    "address",
                    format!("caps: {cap:?} is not a capability (pv, hvm, hap, shadow)"),
                ))
            }
        }
    }
    Ok(c)
}

/// `cpu=`: comma-separated feature words in hexadecimal (at most 8, as Xen's `hw_cap`).
fn parse_cpu_features(v: &str) -> Result<Vec<u32>> {
    let words: Vec<u32> = v
        .split(',')
        .map(|w| {
            let digits = w.strip_prefix("0x").unwrap_or(w);
            u32::from_str_radix(digits, 16).map_err(|_| {
                Error::invalid("address", format!("cpu: {w:?} is not a 32-bit hexadecimal feature word"))
            })
        })
        .collect::<Result<_>>()?;
    if words.len() > 8 {
        return Err(Error::invalid("address", "cpu: at most 8 feature words"));
    }
    Ok(words)
}

/// A printable ASCII token of 1 to 64 characters (a vendor, a version, a toolstack).
fn token(k: &str, v: &str) -> Result<String> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid("address", format!("{k} must be 1 to 64 printable ASCII characters")));
    }
    Ok(v.to_owned())
}

pub(super) fn parse_address(address: &str) -> Result<SimAddress> {
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
        virt: VirtCapabilities::ALL,
        cpu: HostCpu { vendor: SIM_CPU_VENDOR.to_owned(), features: SIM_CPU_FEATURES.to_vec() },
        xen_version: SIM_XEN_VERSION.to_owned(),
        toolstack: SIM_TOOLSTACK.to_owned(),
        create_time: std::time::Duration::ZERO,
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
            "caps" => a.virt = parse_caps(v)?,
            "cpu" => a.cpu.features = parse_cpu_features(v)?,
            "cpu_vendor" => a.cpu.vendor = token(k, v)?,
            "xen" => a.xen_version = token(k, v)?,
            "toolstack" => a.toolstack = token(k, v)?,
            "create_ms" => a.create_time = std::time::Duration::from_millis(num()?.min(600_000)),
            _ => return Err(Error::invalid("address", format!("unknown parameter {k:?}"))),
        }
    }
    if a.cpus == 0 || a.memory_mib < 1024 {
        return Err(Error::invalid("address", "a simulated host needs ≥1 CPU and ≥1024 MiB"));
    }
    Ok(a)
}

/// `name`, booted for the `boot`th time, joins cluster `c` again at `now` (and takes the master
/// lock if it is free).
pub(super) fn rejoin(c: &mut SimCluster, net: &ClusterNet, name: &str, boot: u64, now: Timestamp) {
    if let Ok(e) = c.lock.join(name, boot, now) {
        c.nodes.insert(name.to_owned(), Node::joined(c.lock.config(), name, boot, now, e));
        c.elect(net, now);
    }
}

impl SimWorld {
    /// An empty world.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn host(&self, name: &str) -> Result<Arc<SimHost>> {
        lock(&self.inner.hosts)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::backend(name, "no such simulated host"))
    }

    pub(super) fn host_for(&self, address: &str) -> Result<Arc<SimHost>> {
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
                    mounts: BTreeMap::new(),
                    sessions: Vec::new(),
                    network: super::network::initial_config(n),
                    ports: super::network::initial_ports(n),
                    management_ip: super::network::management_ip(n),
                    cut: false,
                    incoming: HashMap::new(),
                    virt: a.virt,
                    cpu: a.cpu.clone(),
                    xen_version: a.xen_version.clone(),
                    toolstack: a.toolstack.clone(),
                    create_time: a.create_time,
                    traffic: BTreeMap::new(),
                }),
                changes: broadcast::channel(1024).0,
                net_txns: Default::default(),
            })
        });
        Ok(host.clone())
    }

    /// Simulate the loss of a host: its domains die and every call to it fails until
    /// [`SimWorld::restore_host`]. Its cluster hears no more heartbeats from it.
    pub fn lose_host(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        {
            let mut st = lock(&h.state);
            st.lost = true;
            st.domains.clear();
        }
        lock(&self.inner.cluster_net).down.insert(name.to_owned());
        // Its addresses go with it.
        lock(&self.inner.virtual_ips).retain(|_, (holder, _)| holder != name);
        // A lost host reports nothing about its domains: the manager only sees the connection go.
        let _ = h.changes.send(DomainChange::HostLost);
        Ok(())
    }

    /// Bring a lost host back (empty, as after a reboot). It boots anew: if it was in a
    /// cluster it joins it again as a new incarnation (at once if it reaches the cluster,
    /// otherwise at the first heartbeat after [`SimWorld::heal_host`]).
    pub fn restore_host(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        {
            let mut st = lock(&h.state);
            st.lost = false;
            st.powered_on = true;
        }
        let now = self.inner.cluster_clock.now_ms();
        let mut clusters = lock(&self.inner.clusters);
        let mut net = lock(&self.inner.cluster_net);
        net.down.remove(name);
        let boot = net.boot_of(name) + 1;
        net.boots.insert(name.to_owned(), boot);
        if let Some(c) = clusters.values_mut().find(|c| c.members.iter().any(|m| m == name)) {
            c.nodes.remove(name);
            if !net.partitioned.contains(name) {
                rejoin(c, &net, name, boot, now);
            }
        }
        Ok(())
    }

    /// Cut `name` off from its cluster (the heartbeat disk and the cluster network), not from
    /// the manager: it fences itself once its lease runs out, unless healed before.
    pub fn partition_host(&self, name: &str) -> Result<()> {
        self.host(name)?;
        lock(&self.inner.cluster_net).partitioned.insert(name.to_owned());
        Ok(())
    }

    /// End the partition of `name`.
    pub fn heal_host(&self, name: &str) -> Result<()> {
        self.host(name)?;
        lock(&self.inner.cluster_net).partitioned.remove(name);
        Ok(())
    }

    /// The timing of the clusters made from now on (`T` and `M`, see
    /// [`crate::policy::election`]).
    pub fn set_cluster_timing(&self, config: ElectionConfig) {
        lock(&self.inner.cluster_net).config = Some(config);
    }

    /// The clusters' clock (it moves only by [`SimWorld::advance_cluster`]).
    pub fn cluster_clock(&self) -> SimClock {
        self.inner.cluster_clock.clone()
    }

    /// Let `by` pass for the clusters, in heartbeat periods (a tenth of `T`): members that reach
    /// their cluster heartbeat, members whose lease ran out fence themselves (the host reboots:
    /// its domains die and it is lost until [`SimWorld::restore_host`]), members silent for
    /// `T + M` are declared dead, and a free master lock goes to the first live member.
    pub fn advance_cluster(&self, by: Duration) {
        let clock = &self.inner.cluster_clock;
        let end = clock.now_ms().saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
        loop {
            let period = lock(&self.inner.cluster_net).config().heartbeat_timeout_ms.div_ceil(10).max(1);
            let now = clock.set(clock.now_ms().saturating_add(period).min(end));
            for host in self.cluster_tick(now) {
                let _ = self.lose_host(&host);
            }
            self.pool_ha_tick(now);
            if now >= end {
                return;
            }
        }
    }

    /// Let each cluster's master restart, on itself, the HA-enabled domains of members its
    /// cluster declared dead once no request of the owning manager has reached its agent for
    /// `grace` (real time), as a clustered pool's master does on Xen (`xen::pool_ha`); checked at
    /// each heartbeat period of [`SimWorld::advance_cluster`]. `None` (the default): never.
    pub fn set_manager_grace(&self, grace: Option<Duration>) {
        *lock(&self.inner.manager_grace) = grace;
    }

    /// The HA records of the clusters' pool file systems: VM → the host each names.
    pub fn ha_records(&self) -> BTreeMap<VmId, String> {
        lock(&self.inner.ha_records).iter().map(|(vm, (_, host, _))| (*vm, host.clone())).collect()
    }

    /// A request of the owning manager reached `host`'s agent.
    pub(super) fn manager_seen(&self, host: &str) {
        lock(&self.inner.manager_seen).insert(host.to_owned(), std::time::Instant::now());
    }

    /// `host` built the HA-enabled domain `spec`: its cluster's record names it (nothing for a
    /// domain that is not HA-enabled or a host in no cluster). Lock order: after the host's state.
    pub(super) fn ha_record(&self, host: &str, spec: &DomainSpec) {
        if spec.ha_priority.is_none() {
            return;
        }
        let cluster = lock(&self.inner.clusters)
            .iter()
            .find(|(_, c)| c.members.iter().any(|m| m == host))
            .map(|(id, _)| id.clone());
        if let Some(cluster) = cluster {
            lock(&self.inner.ha_records).insert(spec.uuid, (cluster, host.to_owned(), spec.clone()));
        }
    }

    /// `host` stopped `vm` on request: its record goes, if it names `host`.
    pub(super) fn ha_forget(&self, host: &str, vm: VmId) {
        let mut r = lock(&self.inner.ha_records);
        if r.get(&vm).is_some_and(|(_, h, _)| h == host) {
            r.remove(&vm);
        }
    }

    /// The masters' restarts for an absent manager (see [`SimWorld::set_manager_grace`]).
    fn pool_ha_tick(&self, now: Timestamp) {
        let Some(grace) = *lock(&self.inner.manager_grace) else { return };
        type Orphans = Vec<(VmId, String, DomainSpec)>;
        let plans: Vec<(String, Orphans)> = {
            let clusters = lock(&self.inner.clusters);
            let records = lock(&self.inner.ha_records);
            clusters
                .iter()
                .filter_map(|(id, c)| {
                    let (master, _) = c.lock.master()?;
                    let dead: std::collections::HashSet<String> = c
                        .lock
                        .members(now)
                        .into_iter()
                        .filter(|h| h.heartbeat == crate::model::HeartbeatState::Dead)
                        .map(|h| h.name)
                        .collect();
                    let mut o: Orphans = records
                        .iter()
                        .filter(|(_, (cl, host, _))| cl == id && host != master && dead.contains(host))
                        .map(|(vm, (_, host, spec))| (*vm, host.clone(), spec.clone()))
                        .collect();
                    o.sort_by(|a, b| b.2.ha_priority.cmp(&a.2.ha_priority).then(a.0 .0.cmp(&b.0 .0)));
                    Some((master.to_owned(), o))
                })
                .collect()
        };
        for (master, orphans) in plans {
            let recent = lock(&self.inner.manager_seen).get(&master).is_some_and(|t| t.elapsed() < grace);
            if recent || orphans.is_empty() {
                continue;
            }
            let Ok(host) = self.host(&master) else { continue };
            if lock(&host.state).lost {
                continue;
            }
            let conn = super::SimConnection { host, world: self.clone() };
            for (vm, from, spec) in orphans {
                // Claimed first, unless another took it meanwhile.
                {
                    let mut r = lock(&self.inner.ha_records);
                    match r.get_mut(&vm) {
                        Some(e) if e.1 == from => e.1 = master.clone(),
                        _ => continue,
                    }
                }
                if crate::driver::DomainOps::create_domain(&conn, &spec).is_err() {
                    // Given back (no room here): tried again at a later period.
                    if let Some(e) = lock(&self.inner.ha_records).get_mut(&vm) {
                        if e.1 == master {
                            e.1 = from;
                        }
                    }
                }
            }
        }
    }

    /// One heartbeat period at `now`; returns the hosts that fenced themselves.
    fn cluster_tick(&self, now: Timestamp) -> Vec<String> {
        let mut fenced = Vec::new();
        let mut clusters = lock(&self.inner.clusters);
        let net = lock(&self.inner.cluster_net);
        for c in clusters.values_mut() {
            for m in &c.members {
                let Some(node) = c.nodes.get_mut(m).filter(|n| !n.is_fenced()) else { continue };
                if net.down.contains(m) {
                    continue;
                }
                let beat = if net.partitioned.contains(m) || node.must_fence(now) {
                    None
                } else {
                    c.lock.heartbeat(m, node.incarnation(), now).ok()
                };
                match beat {
                    Some(e) => node.heartbeat_written(now, e),
                    None if node.must_fence(now) || !net.partitioned.contains(m) => {
                        node.fence();
                        fenced.push(m.clone());
                    }
                    None => {}
                }
            }
            // Rebooted members that could not reach the cluster join once they do.
            let waiting: Vec<String> = c
                .members
                .iter()
                .filter(|m| {
                    !c.nodes.contains_key(*m) && !net.down.contains(*m) && !net.partitioned.contains(*m)
                })
                .cloned()
                .collect();
            for m in waiting {
                rejoin(c, &net, &m, net.boot_of(&m), now);
            }
            c.lock.expire(now);
            c.elect(&net, now);
        }
        fenced
    }

    /// A command of the master of `epoch` reaches `host`: refused (a typed
    /// [`CommandRefusal`], as `Conflict`) if the host has fenced itself or has seen a later
    /// epoch (from its cluster's record, when it reaches it). `InvalidArgument` if the host is
    /// in no cluster.
    pub fn cluster_command(&self, host: &str, epoch: Epoch) -> Result<()> {
        self.host(host)?;
        let mut clusters = lock(&self.inner.clusters);
        let net = lock(&self.inner.cluster_net);
        let c = clusters
            .values_mut()
            .find(|c| c.members.iter().any(|m| m == host))
            .ok_or_else(|| Error::invalid("host", format!("{host} is in no cluster")))?;
        let current = c.lock.epoch();
        let node = c
            .nodes
            .get_mut(host)
            .filter(|_| !net.down.contains(host))
            .ok_or_else(|| Error::backend(host, "host unreachable"))?;
        if !net.partitioned.contains(host) {
            node.observe(current);
        }
        node.accept(epoch).map_err(|e: CommandRefusal| e.into())
    }

    /// A magic packet for `mac` left `sender` by `interface`: the simulated LAN reaches every
    /// host, and a powered-off host with a port of that MAC powers on (as a NIC armed for
    /// Wake-on-LAN does). Nothing answers for a MAC no host has.
    pub(super) fn deliver_magic_packet(&self, sender: &str, interface: &str, mac: &str) {
        lock(&self.inner.magic_packets).push(MagicPacket {
            sender: sender.into(),
            interface: interface.into(),
            mac: mac.to_ascii_lowercase(),
        });
        for h in lock(&self.inner.hosts).values() {
            let mut st = lock(&h.state);
            if !st.lost && !st.powered_on && st.ports.iter().any(|p| p.mac.eq_ignore_ascii_case(mac)) {
                st.powered_on = true;
            }
        }
    }

    /// The Wake-on-LAN magic packets the simulated hosts sent, in order.
    pub fn magic_packets(&self) -> Vec<MagicPacket> {
        lock(&self.inner.magic_packets).clone()
    }

    /// The MAC of a host's first Ethernet port (its management NIC, which Wake-on-LAN wakes).
    pub fn management_mac(&self, name: &str) -> Result<String> {
        let h = self.host(name)?;
        let st = lock(&h.state);
        st.ports.first().map(|p| p.mac.clone()).ok_or_else(|| Error::backend(name, "the host has no ports"))
    }

    /// The host (and interface) holding the virtual IP `address`, if any.
    pub fn virtual_ip_holder(&self, address: std::net::Ipv4Addr) -> Option<(String, String)> {
        lock(&self.inner.virtual_ips).get(&address).cloned()
    }

    /// Whether a host is powered on (lost or not).
    pub fn is_powered_on(&self, name: &str) -> bool {
        self.host(name).map(|h| lock(&h.state).powered_on) == Ok(true)
    }

    /// Power a host on, as Wake-on-LAN would.
    pub fn wake(&self, name: &str) -> Result<()> {
        let h = self.host(name)?;
        lock(&h.state).powered_on = true;
        Ok(())
    }

    /// The hosts' simulated management controllers as one out-of-band [`PowerController`] named
    /// [`SIM_BMC`]: a server's [`crate::model::OutOfBand::address`] is its host's name. `on` powers
    /// a host on (its agent then answers), `off` cuts its power at once (its domains are gone, the
    /// manager sees the host lost), `status` reads it. Every call is counted
    /// ([`SimWorld::bmc_calls`]).
    pub fn power_controller(&self) -> Arc<dyn PowerController> {
        Arc::new(SimBmc { world: self.clone() })
    }

    /// The calls the simulated management controllers answered, in order, as `"OP HOST"`.
    pub fn bmc_calls(&self) -> Vec<String> {
        lock(&self.inner.bmc_calls).clone()
    }

    /// Whether a host is powered on and not lost.
    pub fn is_up(&self, name: &str) -> bool {
        self.host(name).map(|h| {
            let st = lock(&h.state);
            st.powered_on && !st.lost
        }) == Ok(true)
    }

    /// Set the CPU load a domain generates, percent of one vCPU (default 10). The load is the
    /// guest's: it goes on after a migration, a restore or a restart.
    pub fn set_domain_load(&self, vm: VmId, percent: f32) {
        lock(&self.inner.guest_loads).insert(vm, percent.clamp(0.0, 100.0));
        for h in lock(&self.inner.hosts).values() {
            if let Some(d) = lock(&h.state).domains.get_mut(&vm) {
                d.cpu_load_percent = percent.clamp(0.0, 100.0);
            }
        }
    }

    /// Count traffic on an interface of a host's dom0 (a port, bond, bridge or `vif<domid>.<n>`): its
    /// counters grow by `rx` and `tx` bytes. The counters are what the host's load reports.
    pub fn add_traffic(&self, host: &str, interface: &str, rx: u64, tx: u64) -> Result<()> {
        let h = self.host(host)?;
        let mut st = lock(&h.state);
        let c = st.traffic.entry(interface.to_owned()).or_default();
        c.0 = c.0.saturating_add(rx);
        c.1 = c.1.saturating_add(tx);
        Ok(())
    }

    /// The host a domain is resident on, if any.
    pub fn resident_on(&self, vm: VmId) -> Option<String> {
        lock(&self.inner.hosts).values().find_map(|h| {
            let st = lock(&h.state);
            st.domains.contains_key(&vm).then(|| st.name.clone())
        })
    }

    /// The domid of a VM's domain, wherever it is resident.
    pub fn domain_id(&self, vm: VmId) -> Option<u32> {
        lock(&self.inner.hosts).values().find_map(|h| lock(&h.state).domains.get(&vm).map(|d| d.domid))
    }

    /// The messages left for a VM's guest, wherever its domain is resident (none if it is not).
    pub fn guest_messages(&self, vm: VmId) -> BTreeMap<String, String> {
        lock(&self.inner.hosts)
            .values()
            .find_map(|h| lock(&h.state).domains.get(&vm).map(|d| d.messages.clone()))
            .unwrap_or_default()
    }

    /// The run state of a VM's domain, wherever it is resident.
    pub fn domain_state(&self, vm: VmId) -> Option<DomainRunState> {
        lock(&self.inner.hosts).values().find_map(|h| lock(&h.state).domains.get(&vm).map(|d| d.state))
    }

    /// Make the guest inside a domain crash (Xen reports shutdown reason `crash`); the domain's
    /// `on_crash` action follows, as Xen's toolstack applies it.
    pub fn crash_domain(&self, vm: VmId) -> Result<()> {
        self.guest_shutdown(vm, ShutdownReason::Crash)
    }

    /// The guest inside a domain reboots itself (`reboot` in the guest): its `on_reboot` action
    /// follows. With the default (restart), the toolstack builds a new domain with a new domid.
    pub fn guest_reboot(&self, vm: VmId) -> Result<()> {
        self.guest_shutdown(vm, ShutdownReason::Reboot)
    }

    /// The guest inside a domain powers itself off: its `on_poweroff` action follows.
    pub fn guest_power_off(&self, vm: VmId) -> Result<()> {
        self.guest_shutdown(vm, ShutdownReason::Poweroff)
    }

    /// A guest shut down for `reason`; apply the domain's restart action for it as Xen's toolstack
    /// does: destroy the domain, rebuild it with a new domid, or keep it shut down for inspection.
    fn guest_shutdown(&self, vm: VmId, reason: ShutdownReason) -> Result<()> {
        use crate::model::RestartAction;
        for h in lock(&self.inner.hosts).values() {
            let mut st = lock(&h.state);
            let Some(d) = st.domains.get_mut(&vm) else { continue };
            if matches!(d.state, DomainRunState::Shutdown(_)) {
                return Err(Error::backend(&st.name, format!("domain {vm} is already shut down")));
            }
            let actions = d.spec.restart_actions;
            let action = match reason {
                ShutdownReason::Poweroff => actions.on_poweroff,
                ShutdownReason::Reboot => actions.on_reboot,
                ShutdownReason::Crash | ShutdownReason::Watchdog => actions.on_crash,
                ShutdownReason::Suspend | ShutdownReason::SoftReset => RestartAction::Restart,
            };
            let old = d.domid;
            let mut events = vec![DomainChange::StateChanged {
                uuid: Some(vm),
                domid: old,
                state: DomainRunState::Shutdown(reason),
            }];
            match action {
                RestartAction::Preserve => d.state = DomainRunState::Shutdown(reason),
                RestartAction::Destroy => {
                    st.domains.remove(&vm);
                    events.push(DomainChange::Disappeared { uuid: Some(vm), domid: old });
                }
                RestartAction::Restart => {
                    let domid = self.inner.next_domid.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    d.domid = domid;
                    d.state = DomainRunState::Running;
                    d.console.push_str(&format!(
                        "[sim] {reason:?}: domain rebuilt with domid {domid}\n[sim] ovm-sim guest up\n"
                    ));
                    events.push(DomainChange::Disappeared { uuid: Some(vm), domid: old });
                    events.push(DomainChange::Appeared { uuid: Some(vm), domid });
                }
            }
            drop(st);
            for e in events {
                let _ = h.changes.send(e);
            }
            return Ok(());
        }
        Err(Error::backend("sim", format!("domain {vm} is not resident anywhere")))
    }

    /// Size of a file in the simulated shared storage, if it exists.
    pub fn file_size(&self, path: &str) -> Option<u64> {
        lock(&self.inner.files).get(path).copied()
    }

    /// The bytes of a file in the simulated shared storage, as written to it (files of at most
    /// 64 MiB written chunk by chunk, and configuration files), if they are kept.
    pub fn file_contents(&self, path: &str) -> Option<Vec<u8>> {
        let size = self.file_size(path)?;
        let mut c = lock(&self.inner.contents).get(path).cloned()?;
        c.resize(size as usize, 0);
        Some(c)
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

    /// Add an export `export` of `capacity_bytes` to the simulated NFS server `host`. Once a host
    /// has an export, discovery lists its exports and mounting one it does not export fails (a host
    /// with none is lenient: whatever is mounted from it is made with
    /// [`DEFAULT_FILE_SYSTEM_BYTES`]).
    pub fn add_nfs_export(&self, host: &str, export: &str, capacity_bytes: u64) {
        let key = crate::driver::storage::MountSource::Nfs {
            host: host.to_owned(),
            export: export.to_owned(),
            version: None,
        }
        .to_string();
        lock(&self.inner.file_systems).insert(key, capacity_bytes);
    }

    /// Take an export away from the simulated NFS server `host` (as its administrator would).
    pub fn remove_nfs_export(&self, host: &str, export: &str) {
        let key = crate::driver::storage::MountSource::Nfs {
            host: host.to_owned(),
            export: export.to_owned(),
            version: None,
        }
        .to_string();
        lock(&self.inner.file_systems).remove(&key);
    }

    /// Add a file server reached through the external plug-in `plugin`, which names it `host`,
    /// offering `file_systems` (path, capacity in bytes). No executable runs: every simulated
    /// server answers for the plug-in as if it were installed there. A file server added again
    /// gets the new file systems too.
    pub fn add_external_file_server(&self, plugin: &str, host: &str, file_systems: &[(&str, u64)]) {
        let mut servers = lock(&self.inner.external_servers);
        let paths = servers.entry((plugin.to_owned(), host.to_owned())).or_default();
        for (path, capacity) in file_systems {
            let key = crate::driver::storage::MountSource::External {
                plugin: plugin.to_owned(),
                host: host.to_owned(),
                path: (*path).to_owned(),
            }
            .to_string();
            lock(&self.inner.file_systems).insert(key, *capacity);
            if !paths.iter().any(|p| p == path) {
                paths.push((*path).to_owned());
            }
        }
    }

    /// Give the array serving `target` a LUN `name` of `size_bytes` (as an administrator would on a
    /// generic array); its id is a made-up WWID.
    pub fn add_lun(&self, target: &str, name: &str, size_bytes: u64) -> String {
        let mut arrays = lock(&self.inner.arrays);
        let a = arrays.entry(target.to_owned()).or_default();
        a.next_lun += 1;
        let tag: u64 = target
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let id = format!("naa.6001405{:09x}{tag:016x}", a.next_lun);
        a.luns.insert(
            id.clone(),
            Lun { id: id.clone(), name: name.to_owned(), size_bytes, thin_clone_of: None },
        );
        id
    }

    /// Let only these simulated hosts log in to the array serving `target` (its ACL).
    pub fn allow_initiators(&self, target: &str, hosts: &[&str]) {
        let mut arrays = lock(&self.inner.arrays);
        arrays.entry(target.to_owned()).or_default().allowed =
            hosts.iter().map(|h| format!("iqn.2026-01.ovm.sim:{h}")).collect();
    }

    /// Add a vendor-style array managed at `host` (its management interface, reached with
    /// `username` and `password` through the [`crate::driver::LIO_PLUGIN`] plug-in) serving
    /// `targets`, with no LUNs: its LUNs are created through the plug-in, and a server sees only
    /// those presented to an access group it is in.
    pub fn add_managed_array(&self, host: &str, username: &str, password: &str, targets: &[&str]) {
        for t in targets {
            self.add_array(t);
        }
        lock(&self.inner.array_admins).insert(
            host.to_owned(),
            SimArrayAdmin {
                username: username.to_owned(),
                password: password.to_owned(),
                targets: targets.iter().map(|t| t.to_string()).collect(),
            },
        );
    }

    /// The certificate fingerprint of the simulated management interface at `host`.
    pub fn array_admin_fingerprint(host: &str) -> String {
        crate::agent::tls::fingerprint(host.as_bytes())
    }

    /// Add a storage array serving iSCSI target `target` (an empty one replaces nothing).
    pub fn add_array(&self, target: &str) {
        lock(&self.inner.arrays).entry(target.to_owned()).or_default();
    }

    /// The names of the simulated hosts.
    pub fn host_names(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.inner.hosts).keys().cloned().collect();
        v.sort();
        v
    }
}

/// The name of the simulated hosts' out-of-band power controller ([`SimWorld::power_controller`]).
pub const SIM_BMC: &str = "sim-bmc";

/// The simulated management controllers of a world's hosts.
#[derive(Debug)]
struct SimBmc {
    world: SimWorld,
}

impl SimBmc {
    fn host(&self, op: &str, target: &OutOfBand) -> Result<Arc<SimHost>> {
        lock(&self.world.inner.bmc_calls).push(format!("{op} {}", target.address));
        // A BMC that does not answer (its host is unknown) is a backend failure, as a real one is.
        self.world.host(&target.address).map_err(|_| {
            Error::backend(SIM_BMC, format!("no management controller answers at {}", target.address))
        })
    }
}

impl PowerController for SimBmc {
    fn name(&self) -> &str {
        SIM_BMC
    }

    fn power_on(&self, target: &OutOfBand) -> Result<()> {
        let h = self.host("on", target)?;
        let mut st = lock(&h.state);
        st.powered_on = true;
        st.lost = false;
        Ok(())
    }

    fn power_off(&self, target: &OutOfBand) -> Result<()> {
        let h = self.host("off", target)?;
        {
            let mut st = lock(&h.state);
            st.powered_on = false;
            st.domains.clear();
        }
        let _ = h.changes.send(DomainChange::HostLost);
        Ok(())
    }

    fn power_state(&self, target: &OutOfBand) -> Result<ChassisPower> {
        let h = self.host("status", target)?;
        let on = lock(&h.state).powered_on;
        Ok(if on { ChassisPower::On } else { ChassisPower::Off })
    }
}
