//! A deterministic simulator for placement, DRS and DPM at scale.
//!
//! One inventory of simulated servers and VMs (no driver, no thread per server), one simulated
//! clock ([`SimClock`]), load traces drawn from a seed with an own SplitMix64: every VM follows a
//! diurnal curve (its own peak hour, a trough at a quarter of its base load, a peak above it) with
//! per-minute noise and bursts of full use of its vCPUs; servers fail at random and come back
//! repaired. At each tick (one minute by default) the simulator:
//!
//! 1. ends what is due: booted servers come up, repaired servers come back running, migrations
//!    land;
//! 2. fails the servers due to fail: their VMs stop and are restarted by placement
//!    ([`super::placement::pick`]) on the servers left; a VM no server takes waits and is retried
//!    every tick;
//! 3. draws every VM's load, measures each server (CPU, network) and counts the servers over a
//!    threshold;
//! 4. every policy period, builds a [`LoadSnapshot`] and runs [`plan`], then executes the plan as
//!    the manager would: migrations, power-offs of servers left empty, Wake-on-LAN power-ons.
//!
//! The traces and failures depend only on the seed, so runs under different policies see the
//! same load, and the same seed gives the same [`SimReport`].

use std::collections::{HashMap, HashSet};

use super::balance::{plan, Action, PolicyParams};
use super::load::{
    InFlight, LoadInputs, LoadSnapshot, MigrationLimits, ResidentVm, ServerSample, SnapshotBuilder, VmSample,
};
use super::placement::{pick, Usage};
use crate::clock::{Clock, SimClock};
use crate::model::{
    AntiAffinityGroup, AntiAffinityGroupId, EthernetPort, HostHardware, Inventory, Network, NetworkFunction,
    NetworkId, NetworkMember, Object, Ownership, PolicyMode, PoolId, PoolPolicy, Port, PortId, PowerState,
    Server, ServerId, ServerPool, ServerPowerState, ServerRole, Timestamp, Vm, VmConfig, VmId,
};

/// SplitMix64: a small, fast, seedable generator (and a hash of its state).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform float in [0, 1) that depends only on its inputs.
fn hash_unit(seed: u64, a: u64, b: u64) -> f64 {
    let h =
        mix(seed ^ mix(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ mix(b.wrapping_add(0x632b_e59b_d9b4_e019))));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Servers (split evenly across the pools).
    pub servers: usize,
    /// VMs.
    pub vms: usize,
    /// Pools.
    pub pools: usize,
    /// CPUs of each server.
    pub server_cpus: u32,
    /// Memory of each server, MiB (dom0 keeps 4 GiB of it).
    pub server_memory_mib: u64,
    /// Link speed of each server's VM network port, Mbit/s.
    pub link_mbps: u32,
    /// Ticks to run.
    pub ticks: u32,
    /// Simulated seconds per tick.
    pub tick_secs: u32,
    /// The pools' policy mode.
    pub mode: PolicyMode,
    /// The pools' CPU threshold, percent.
    pub cpu_threshold_percent: u8,
    /// The VM network's threshold, percent.
    pub network_threshold_percent: u8,
    /// The policy period, seconds (a whole number of ticks).
    pub period_secs: u32,
    /// Mean server failures per server and day.
    pub failures_per_server_day: f64,
    /// Ticks a failed server takes to come back.
    pub repair_ticks: u32,
    /// Ticks a powered-on server takes to boot.
    pub boot_ticks: u32,
    /// Ticks a migration keeps its servers' migration slots.
    pub migration_ticks: u32,
    /// Migration limits.
    pub migration_limit: MigrationLimits,
    /// Server failures each pool must stay able to absorb.
    pub ha_reserve: u32,
    /// Anti-affinity groups of three VMs.
    pub anti_affinity_groups: usize,
    /// Chance that a VM starts a burst in a given minute.
    pub burst_per_minute: f64,
}

impl SimConfig {
    /// A day at one-minute ticks over `servers` servers and twenty VMs a server, in one pool.
    pub fn day(seed: u64, servers: usize, mode: PolicyMode) -> SimConfig {
        SimConfig {
            seed,
            servers,
            vms: servers * 20,
            pools: 1,
            server_cpus: 32,
            server_memory_mib: 256 * 1024,
            link_mbps: 10_000,
            ticks: 24 * 60,
            tick_secs: 60,
            mode,
            cpu_threshold_percent: 80,
            network_threshold_percent: 70,
            period_secs: 60,
            failures_per_server_day: 0.01,
            repair_ticks: 4 * 60,
            boot_ticks: 5,
            migration_ticks: 1,
            migration_limit: MigrationLimits { per_server: 2, total: (servers as u32 / 4).max(4) },
            ha_reserve: 1,
            anti_affinity_groups: servers / 2,
            burst_per_minute: 0.0005,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    /// Ticks run.
    pub ticks: u32,
    /// Migrations executed.
    pub migrations: u64,
    /// Servers powered off.
    pub power_offs: u64,
    /// Servers powered on.
    pub power_ons: u64,
    /// Hours servers were powered on (running or booting), summed over servers.
    pub server_hours_on: f64,
    /// Minutes servers spent over a threshold (CPU demand or network), summed over servers.
    pub server_minutes_over: f64,
    /// Server failures.
    pub failures: u64,
    /// VMs a failure stopped and placement could not restart on the spot.
    pub vms_not_restarted: u64,
    /// Minutes VMs spent stopped by a failure before a restart, summed over VMs.
    pub vm_minutes_down: f64,
    /// Actions of a plan the simulator could not execute (the state they assumed changed).
    pub refused_actions: u64,
    /// Overloaded servers a plan left unrelieved, summed over plans.
    pub unrelieved: u64,
    /// Policy plans made.
    pub plans: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Up,
    Off,
    Booting(u32),
    Failed(u32),
}

#[derive(Debug, Clone)]
struct Trace {
    /// CPUs used at the diurnal base.
    base: f64,
    vcpus: f64,
    peak_hour: f64,
    /// Mbit/s per CPU used.
    mbps_per_cpu: f64,
}

/// A simulated pool set running placement, DRS and DPM on simulated time.
#[derive(Debug)]
pub struct Simulation {
    cfg: SimConfig,
    inv: Inventory,
    clock: SimClock,
    pools: Vec<PoolId>,
    network: NetworkId,
    servers: Vec<ServerId>,
    server_ix: HashMap<ServerId, usize>,
    state: Vec<State>,
    vms: Vec<VmId>,
    vm_ix: HashMap<VmId, usize>,
    vm_server: Vec<Option<usize>>,
    trace: Vec<Trace>,
    burst_until: Vec<u32>,
    vm_cpu: Vec<f64>,
    down: Vec<usize>,
    failures: Vec<(u32, usize)>,
    next_failure: usize,
    /// Each VM's memory (its maximum memory too) and anti-affinity group.
    vm_facts: Vec<(u64, Option<AntiAffinityGroupId>)>,
    in_flight: Vec<(InFlight, u32)>,
    /// What the manager would hand the policies, kept up to date as the simulation goes (the
    /// VMs' samples excepted: the snapshot takes them from the simulator's arrays).
    inputs: LoadInputs,
    tick: u32,
    report: SimReport,
}

fn id(kind: u64, i: usize) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x6f76_6d00_0000_0000 | kind, i as u64)
}

impl Simulation {
    /// The simulated world of `cfg` at its first tick: VMs placed at random where they fit (so
    /// some servers start busier than others), every server running.
    pub fn new(cfg: SimConfig) -> Simulation {
        let mut rng = SplitMix64::new(cfg.seed);
        let mut inv = Inventory::new();
        let n_pools = cfg.pools.max(1);
        let network = NetworkId(id(1, 0));
        let mut net = Network {
            id: network,
            name: "vm-network".into(),
            description: String::new(),
            functions: [NetworkFunction::VirtualMachine].into_iter().collect(),
            members: Vec::with_capacity(cfg.servers),
            bridge: "xenbr1".into(),
            mtu: 1500,
        };
        let mut pools: Vec<ServerPool> = (0..n_pools)
            .map(|p| {
                let mut pool = ServerPool::new(format!("pool-{p:03}"));
                pool.id = PoolId(id(2, p));
                pool.policy = PoolPolicy {
                    mode: cfg.mode,
                    cpu_threshold_percent: cfg.cpu_threshold_percent,
                    period_secs: cfg.period_secs,
                    networks: vec![(network, cfg.network_threshold_percent)],
                };
                pool
            })
            .collect();
        let mut servers = Vec::with_capacity(cfg.servers);
        for i in 0..cfg.servers {
            let sid = ServerId(id(3, i));
            let pid = PortId(id(4, i));
            let pool = &mut pools[i % n_pools];
            pool.servers.push(sid);
            let name = format!("server-{i:05}");
            let mut eth = EthernetPort::new("eth1", "00:10:e0:00:00:01");
            eth.speed_mbps = Some(cfg.link_mbps);
            inv.load(Object::Server(Server {
                id: sid,
                name: name.clone(),
                description: String::new(),
                address: format!("sim://{name}"),
                hardware: HostHardware {
                    cpus: cfg.server_cpus,
                    memory_mib: cfg.server_memory_mib,
                    xen_version: "4.17".into(),
                    ports: vec![eth],
                    hvm_capable: true,
                    virt: None,
                    cpu: None,
                    toolstack: String::new(),
                },
                roles: vec![ServerRole::VirtualMachine],
                maintenance_mode: false,
                ownership: Ownership::Owned,
                power_state: ServerPowerState::Running,
                pool: Some(pool.id),
                ports: vec![pid],
                wol_mac: Some("00:10:e0:00:00:01".into()),
                out_of_band: None,
                dom0_memory_mib: 4096,
            }));
            inv.load(Object::Port(Port {
                id: pid,
                name: format!("{name}:eth1"),
                description: String::new(),
                server: sid,
                interface: "eth1".into(),
                mac: "00:10:e0:00:00:01".into(),
                addressing: Default::default(),
                bond: None,
            }));
            net.members.push(NetworkMember::Port(pid));
            servers.push(sid);
        }
        inv.load(Object::Network(net));
        // VMs: sizes, traces, random placement where memory allows, anti-affinity kept.
        let guest = cfg.server_memory_mib - 4096;
        let mut free = vec![guest; cfg.servers];
        let mut trace = Vec::with_capacity(cfg.vms);
        let mut vm_server = Vec::with_capacity(cfg.vms);
        let mut vms = Vec::with_capacity(cfg.vms);
        let mut vm_facts = Vec::with_capacity(cfg.vms);
        let n_groups = cfg.anti_affinity_groups.min(cfg.vms / 3);
        let mut groups: Vec<AntiAffinityGroup> = (0..n_groups)
            .map(|g| AntiAffinityGroup {
                id: AntiAffinityGroupId(id(5, g)),
                name: format!("group-{g:05}"),
                description: String::new(),
                pool: pools[g % n_pools].id,
                vms: Vec::new(),
            })
            .collect();
        let mut group_servers: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
        for i in 0..cfg.vms {
            let vcpus = [1u32, 2, 2, 4, 4, 8][rng.below(6) as usize];
            let memory_mib = [2048u64, 4096, 4096, 8192, 8192, 16384][rng.below(6) as usize];
            let group = (i < 3 * n_groups).then_some(i / 3);
            let pool_ix = group.map_or(i % n_pools, |g| g % n_pools);
            let members = &pools[pool_ix].servers;
            let mut placed = None;
            for _ in 0..64 {
                // Pool p holds servers p, p + pools, p + 2 pools, ...
                let s = rng.below(members.len() as u64) as usize * n_pools + pool_ix;
                if free[s] >= memory_mib && group.is_none_or(|g| !group_servers[g].contains(&s)) {
                    placed = Some(s);
                    break;
                }
            }
            if let (Some(s), Some(g)) = (placed, group) {
                group_servers[g].push(s);
            }
            if let Some(s) = placed {
                free[s] -= memory_mib;
            }
            let vid = VmId(id(6, i));
            let gid = group.map(|g| groups[g].id);
            if let Some(g) = group {
                groups[g].vms.push(vid);
            }
            inv.load(Object::Vm(Vm {
                id: vid,
                name: format!("vm-{i:06}"),
                description: String::new(),
                config: VmConfig {
                    vcpus,
                    max_vcpus: vcpus,
                    memory_mib,
                    max_memory_mib: memory_mib,
                    ..VmConfig::default()
                },
                repository: None,
                pool: Some(pools[pool_ix].id),
                server: placed.map(|s| servers[s]),
                power_state: if placed.is_some() { PowerState::Running } else { PowerState::Stopped },
                domid: None,
                anti_affinity_group: gid,
            }));
            trace.push(Trace {
                base: f64::from(vcpus) * (0.04 + 0.22 * rng.unit()),
                vcpus: f64::from(vcpus),
                peak_hour: 11.0 + 6.0 * rng.unit(),
                mbps_per_cpu: 50.0 + 250.0 * rng.unit(),
            });
            vm_server.push(placed);
            vms.push(vid);
            vm_facts.push((memory_mib, gid));
        }
        for g in groups {
            inv.load(Object::AntiAffinityGroup(g));
        }
        let pool_ids = pools.iter().map(|p| p.id).collect();
        for p in pools {
            inv.load(Object::ServerPool(p));
        }
        // Failures: a Poisson process per server, drawn up front.
        let minutes = f64::from(cfg.ticks) * f64::from(cfg.tick_secs) / 60.0;
        let rate = cfg.failures_per_server_day * cfg.servers as f64 / (24.0 * 60.0);
        let mut failures = Vec::new();
        let mut t = 0.0f64;
        if rate > 0.0 {
            loop {
                t += -(1.0 - rng.unit()).ln() / rate;
                if t >= minutes {
                    break;
                }
                let tick = (t * 60.0 / f64::from(cfg.tick_secs)) as u32;
                failures.push((tick, rng.below(cfg.servers as u64) as usize));
            }
        }
        let n_vms = vms.len();
        let inputs = LoadInputs {
            migration_limit: cfg.migration_limit,
            ha_reserve: cfg.ha_reserve,
            power_controlled: servers.iter().copied().collect(),
            ..LoadInputs::default()
        };
        Simulation {
            clock: SimClock::new(1_767_225_600_000),
            server_ix: servers.iter().enumerate().map(|(i, s)| (*s, i)).collect(),
            state: vec![State::Up; servers.len()],
            vm_ix: vms.iter().enumerate().map(|(i, v)| (*v, i)).collect(),
            burst_until: vec![0; n_vms],
            vm_cpu: vec![0.0; n_vms],
            down: Vec::new(),
            failures,
            next_failure: 0,
            vm_facts,
            in_flight: Vec::new(),
            inputs,
            tick: 0,
            report: SimReport::default(),
            cfg,
            inv,
            pools: pool_ids,
            network,
            servers,
            vms,
            vm_server,
            trace,
        }
    }

    /// The inventory now.
    pub fn inventory(&self) -> &Inventory {
        &self.inv
    }

    /// The pools.
    pub fn pools(&self) -> &[PoolId] {
        &self.pools
    }

    /// What was measured so far.
    pub fn report(&self) -> &SimReport {
        &self.report
    }

    /// The simulated time now, ms.
    pub fn now(&self) -> Timestamp {
        self.clock.now_ms()
    }

    /// How many servers are powered on now (running or booting).
    pub fn powered_servers(&self) -> usize {
        self.state.iter().filter(|s| matches!(s, State::Up | State::Booting(_))).count()
    }

    /// The share (0..=1) of the running servers' CPUs their VMs use at the last tick drawn (a
    /// server's demand beyond its CPUs counts as its CPUs).
    pub fn cpu_utilisation(&self) -> f64 {
        let mut demand = vec![0.0f64; self.servers.len()];
        for (v, s) in self.vm_server.iter().enumerate() {
            if let Some(s) = s {
                demand[*s] += self.vm_cpu[v];
            }
        }
        let cpus = f64::from(self.cfg.server_cpus.max(1));
        let up: Vec<usize> = (0..self.servers.len()).filter(|s| self.state[*s] == State::Up).collect();
        if up.is_empty() {
            return 0.0;
        }
        up.iter().map(|s| demand[*s].min(cpus)).sum::<f64>() / (up.len() as f64 * cpus)
    }

    fn set_server_power(&mut self, s: usize, p: ServerPowerState) {
        if let Ok(srv) = self.inv.get::<Server>(self.servers[s]) {
            let mut srv = (**srv).clone();
            srv.power_state = p;
            self.inv.load(Object::Server(srv));
        }
    }

    fn set_vm(&mut self, v: usize, server: Option<usize>) {
        self.vm_server[v] = server;
        if let Ok(vm) = self.inv.get::<Vm>(self.vms[v]) {
            let mut vm = (**vm).clone();
            vm.server = server.map(|s| self.servers[s]);
            vm.power_state = if server.is_some() { PowerState::Running } else { PowerState::Stopped };
            self.inv.load(Object::Vm(vm));
        }
    }

    /// Each VM's CPU demand at the current tick, in CPUs (stopped VMs' too: the traces do not
    /// depend on what the policies did).
    fn draw_loads(&mut self) {
        let t = self.tick;
        let minute = f64::from(t) * f64::from(self.cfg.tick_secs) / 60.0;
        let hour = (minute / 60.0) % 24.0;
        let seed = self.cfg.seed;
        for (v, tr) in self.trace.iter().enumerate() {
            let u = hash_unit(seed, v as u64, u64::from(t));
            if self.burst_until[v] <= t && u < self.cfg.burst_per_minute {
                let len = 10 + (hash_unit(seed ^ 0xb0, v as u64, u64::from(t)) * 50.0) as u32;
                self.burst_until[v] = t + len;
            }
            let cpu = if self.burst_until[v] > t {
                tr.vcpus
            } else {
                let phase = std::f64::consts::TAU * (hour - tr.peak_hour) / 24.0;
                let day = 0.25 + 1.35 * ((1.0 + phase.cos()) / 2.0).powi(2);
                let noise = 0.85 + 0.3 * hash_unit(seed ^ 0x5eed, v as u64, u64::from(t));
                (tr.base * day * noise).min(tr.vcpus)
            };
            self.vm_cpu[v] = cpu;
        }
    }

    /// What the manager would hand the policies now: the loads of the current tick, what is in
    /// progress and what was done recently.
    pub fn inputs(&self) -> LoadInputs {
        let mut inputs = self.inputs.clone();
        inputs.vms.reserve(self.vms.len());
        for (v, s) in self.vm_server.iter().enumerate() {
            if s.is_some() {
                let (cpu, net) = self.vm_load(v);
                inputs.vms.insert(self.vms[v], VmSample { cpu, network_mbps: net.to_vec() });
            }
        }
        inputs
    }

    /// A VM's load at the current tick: CPUs and its traffic on the VM network.
    fn vm_load(&self, v: usize) -> (f64, [(NetworkId, f64); 1]) {
        let c = self.vm_cpu[v];
        (c, [(self.network, c * self.trace[v].mbps_per_cpu)])
    }

    /// Bring the inputs up to the current tick: its time, the migrations in flight, the servers
    /// booting and each running server's CPU (`cpu`: the sum of its VMs', in CPUs).
    fn refresh_inputs(&mut self, cpu: &[f64]) {
        let now = self.now();
        let inputs = &mut self.inputs;
        inputs.now = now;
        inputs.migrations_in_flight.clear();
        inputs.migrations_in_flight.extend(self.in_flight.iter().map(|(f, _)| *f));
        inputs.servers.clear();
        inputs.booting.clear();
        let cpus = f64::from(self.cfg.server_cpus);
        for (s, st) in self.state.iter().enumerate() {
            match st {
                State::Up => {
                    inputs.servers.insert(
                        self.servers[s],
                        ServerSample { cpu_util: (cpu[s] / cpus).min(1.0), network_mbps: Vec::new() },
                    );
                }
                State::Booting(_) => {
                    inputs.booting.insert(self.servers[s]);
                }
                State::Off | State::Failed(_) => {}
            }
        }
    }

    /// The snapshot the policies plan on: the servers from the inventory, the resident VMs and
    /// their loads from the simulator's arrays (in index order, which is the inventory's name
    /// order), through the same builder as [`LoadSnapshot::build`].
    fn snapshot(&self) -> crate::Result<LoadSnapshot> {
        let pools: Vec<(PoolId, PolicyParams)> = self
            .pools
            .iter()
            .map(|p| Ok((*p, PolicyParams::of_pool(self.inv.get::<ServerPool>(*p)?))))
            .collect::<crate::Result<_>>()?;
        let mut b = SnapshotBuilder::servers_of(&self.inv, &pools, &self.inputs)?;
        let ix: Vec<Option<u32>> = self.servers.iter().map(|s| b.server_index(*s)).collect();
        for (v, s) in self.vm_server.iter().enumerate() {
            let Some(server) = s.and_then(|s| ix[s]) else { continue };
            let (memory_mib, group) = self.vm_facts[v];
            let vm = ResidentVm {
                id: self.vms[v],
                server,
                memory_mib,
                max_memory_mib: memory_mib,
                running: true,
                group,
            };
            let (cpu, net) = self.vm_load(v);
            b.vm(vm, cpu, &net);
        }
        Ok(b.finish())
    }

    /// Measure the current tick: servers on, servers over a threshold, VMs down.
    fn measure(&mut self) {
        let minutes = f64::from(self.cfg.tick_secs) / 60.0;
        let mut cpu = vec![0.0f64; self.servers.len()];
        let mut net = vec![0.0f64; self.servers.len()];
        for (v, s) in self.vm_server.iter().enumerate() {
            if let Some(s) = s {
                cpu[*s] += self.vm_cpu[v];
                net[*s] += self.vm_cpu[v] * self.trace[v].mbps_per_cpu;
            }
        }
        let cpu_t = f64::from(self.cfg.cpu_threshold_percent) / 100.0 * f64::from(self.cfg.server_cpus);
        let net_t = f64::from(self.cfg.network_threshold_percent) / 100.0 * f64::from(self.cfg.link_mbps);
        for (s, st) in self.state.iter().enumerate() {
            match st {
                State::Up => {
                    self.report.server_hours_on += minutes / 60.0;
                    if cpu[s] > cpu_t || net[s] > net_t {
                        self.report.server_minutes_over += minutes;
                    }
                }
                State::Booting(_) => self.report.server_hours_on += minutes / 60.0,
                State::Off | State::Failed(_) => {}
            }
        }
        self.report.vm_minutes_down += self.down.len() as f64 * minutes;
        self.refresh_inputs(&cpu);
    }

    fn restart_down(&mut self, first_try: &[usize]) {
        if self.down.is_empty() {
            return;
        }
        let mut usage = Usage::of(&self.inv);
        let up: HashSet<ServerId> = self
            .servers
            .iter()
            .zip(&self.state)
            .filter(|(_, st)| **st == State::Up)
            .map(|(s, _)| *s)
            .collect();
        let mut still = Vec::new();
        // Largest first, as the HA plan restarts VMs of one priority.
        let mut down = std::mem::take(&mut self.down);
        down.sort_by_key(|v| (std::cmp::Reverse(self.vm_facts[*v].0), *v));
        for v in down {
            let vm = self.inv.get::<Vm>(self.vms[v]).map(|v| (**v).clone());
            let Ok(vm) = vm else { continue };
            match pick(&self.inv, &usage, &vm, |_| true, |s| up.contains(&s)) {
                Ok(s) => {
                    usage.place(s, &vm);
                    let si = self.server_ix[&s];
                    self.set_vm(v, Some(si));
                }
                Err(_) => {
                    if first_try.contains(&v) {
                        self.report.vms_not_restarted += 1;
                    }
                    still.push(v);
                }
            }
        }
        self.down = still;
    }

    /// Run one tick.
    pub fn step(&mut self) {
        let t = self.tick;
        let now = self.now();
        // 1. What is due.
        for s in 0..self.servers.len() {
            match self.state[s] {
                State::Booting(until) if until <= t => {
                    self.state[s] = State::Up;
                    self.set_server_power(s, ServerPowerState::Running);
                    self.inputs.last_power_on.insert(self.servers[s], now);
                }
                State::Failed(until) if until <= t => {
                    self.state[s] = State::Up;
                    self.set_server_power(s, ServerPowerState::Running);
                    self.inputs.last_power_on.insert(self.servers[s], now);
                }
                _ => {}
            }
        }
        self.in_flight.retain(|(_, done)| *done > t);
        // 2. Failures.
        let mut stopped = Vec::new();
        while let Some(&(ft, s)) = self.failures.get(self.next_failure) {
            if ft > t {
                break;
            }
            self.next_failure += 1;
            if self.state[s] != State::Up {
                continue;
            }
            self.report.failures += 1;
            self.state[s] = State::Failed(t + self.cfg.repair_ticks);
            self.set_server_power(s, ServerPowerState::Unreachable);
            self.inputs.draining.remove(&self.servers[s]);
            let sid = self.servers[s];
            self.in_flight.retain(|(f, _)| f.from != sid && f.to != sid);
            for v in 0..self.vms.len() {
                if self.vm_server[v] == Some(s) {
                    self.set_vm(v, None);
                    stopped.push(v);
                }
            }
        }
        // The VMs a failure stopped, and those still waiting for room, restarted where they fit.
        self.down.extend(stopped.iter().copied());
        self.restart_down(&stopped);
        // 3. Loads.
        self.draw_loads();
        self.measure();
        // 4. Policies.
        let every = (self.cfg.period_secs / self.cfg.tick_secs.max(1)).max(1);
        if self.cfg.mode != PolicyMode::Off && t % every == 0 {
            self.run_policies(now);
        }
        self.tick += 1;
        self.report.ticks = self.tick;
        self.clock.advance(std::time::Duration::from_secs(u64::from(self.cfg.tick_secs)));
    }

    fn run_policies(&mut self, now: Timestamp) {
        let Ok(snap) = self.snapshot() else { return };
        let p = plan(&snap);
        self.report.plans += 1;
        self.report.unrelieved += p.unrelieved.len() as u64;
        let t = self.tick;
        for a in &p.actions {
            match a {
                Action::Migrate { vm, from, to, .. } => {
                    let (Some(&v), Some(&f), Some(&d)) =
                        (self.vm_ix.get(vm), self.server_ix.get(from), self.server_ix.get(to))
                    else {
                        self.report.refused_actions += 1;
                        continue;
                    };
                    if self.vm_server[v] != Some(f) || self.state[d] != State::Up {
                        self.report.refused_actions += 1;
                        continue;
                    }
                    self.set_vm(v, Some(d));
                    self.in_flight
                        .push((InFlight { vm: *vm, from: *from, to: *to }, t + self.cfg.migration_ticks));
                    self.inputs.last_vm_move.insert(*vm, now);
                    self.report.migrations += 1;
                }
                Action::PowerOff { server, .. } => {
                    let Some(&s) = self.server_ix.get(server) else { continue };
                    if self.state[s] != State::Up || self.vm_server.contains(&Some(s)) {
                        self.report.refused_actions += 1;
                        continue;
                    }
                    self.state[s] = State::Off;
                    self.set_server_power(s, ServerPowerState::Stopped);
                    self.report.power_offs += 1;
                }
                Action::PowerOn { server, .. } => {
                    let Some(&s) = self.server_ix.get(server) else { continue };
                    if self.state[s] != State::Off {
                        self.report.refused_actions += 1;
                        continue;
                    }
                    self.state[s] = State::Booting(t + self.cfg.boot_ticks);
                    self.report.power_ons += 1;
                }
            }
        }
        self.inputs.draining = p.draining.into_iter().collect();
    }

    /// Run the ticks left; returns the report.
    pub fn run(&mut self) -> SimReport {
        while self.tick < self.cfg.ticks {
            self.step();
        }
        self.report.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64, mode: PolicyMode) -> SimConfig {
        SimConfig { failures_per_server_day: 0.05, ..SimConfig::day(seed, 40, mode) }
    }

    #[test]
    fn powered_servers_and_utilisation_follow_the_day() {
        let mut sim = Simulation::new(small(3, PolicyMode::Dpm));
        let n = sim.cfg.servers;
        assert_eq!(sim.powered_servers(), n, "every server starts on");
        let (mut fewest, mut busiest) = (n, 0.0f64);
        while sim.report().ticks < sim.cfg.ticks {
            sim.step();
            let u = sim.cpu_utilisation();
            assert!((0.0..=1.0).contains(&u), "{u}");
            fewest = fewest.min(sim.powered_servers());
            busiest = busiest.max(u);
        }
        assert!(fewest < n, "DPM powers servers off at night");
        assert!(busiest > 0.0);
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        let cfg = SimConfig { ticks: 180, ..small(7, PolicyMode::Dpm) };
        let a = Simulation::new(cfg.clone()).run();
        let b = Simulation::new(cfg.clone()).run();
        assert_eq!(a, b);
        assert_eq!(a.ticks, 180);
        assert!(a.plans == 180 && a.migrations > 0, "{a:?}");
        let c = Simulation::new(SimConfig { seed: 8, ..cfg }).run();
        assert_ne!(a, c, "another seed, another trace");
    }

    #[test]
    fn the_traces_do_not_depend_on_the_policy() {
        let mut off = Simulation::new(SimConfig { ticks: 30, ..small(3, PolicyMode::Off) });
        let mut dpm = Simulation::new(SimConfig { ticks: 30, ..small(3, PolicyMode::Dpm) });
        for _ in 0..30 {
            off.step();
            dpm.step();
            assert_eq!(off.vm_cpu, dpm.vm_cpu);
        }
    }

    /// Many failures under DPM: each one's VMs find room at once, because DPM keeps the HA reserve
    /// in pieces the VMs fit in and the restarts place the largest first.
    #[test]
    fn dpm_keeps_room_to_restart_the_vms_of_every_failure() {
        let cfg = SimConfig { failures_per_server_day: 0.3, ..SimConfig::day(11, 60, PolicyMode::Dpm) };
        let dpm = Simulation::new(cfg).run();
        assert!(dpm.failures >= 5 && dpm.power_offs > 0, "{dpm:?}");
        assert_eq!((dpm.vms_not_restarted, dpm.vm_minutes_down), (0, 0.0), "{dpm:?}");
    }

    /// The bound: DPM's server-minutes over threshold are at most no policy's plus 1 % of DPM's
    /// server-minutes powered on.
    #[test]
    fn dpm_saves_server_hours_within_the_over_threshold_bound() {
        let off = Simulation::new(small(42, PolicyMode::Off)).run();
        let drs = Simulation::new(small(42, PolicyMode::Drs)).run();
        let dpm = Simulation::new(small(42, PolicyMode::Dpm)).run();
        assert!(drs.migrations > 0 && drs.power_offs == 0, "{drs:?}");
        assert!(
            drs.server_minutes_over < off.server_minutes_over,
            "DRS relieves hot spots: {drs:?} against {off:?}"
        );
        assert!(off.failures > 0, "the trace has failures: {off:?}");
        assert_eq!((off.migrations, off.power_offs), (0, 0));
        assert!(
            dpm.server_hours_on <= 0.85 * off.server_hours_on,
            "DPM saves at least 15 %: {:.1} h against {:.1} h",
            dpm.server_hours_on,
            off.server_hours_on
        );
        let bound = off.server_minutes_over + 0.01 * dpm.server_hours_on * 60.0;
        assert!(
            dpm.server_minutes_over <= bound,
            "over threshold: {:.0} min with DPM, {:.0} with none, bound {bound:.0}",
            dpm.server_minutes_over,
            off.server_minutes_over
        );
        assert!(dpm.power_offs > 0 && dpm.power_ons > 0, "{dpm:?}");
        assert_eq!(dpm.refused_actions, 0, "{dpm:?}");
        assert_eq!(dpm.vms_not_restarted, 0, "the HA reserve leaves room for every failure: {dpm:?}");
    }
}
