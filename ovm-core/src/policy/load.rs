//! What the load-driven policies (DRS, DPM) read: the loads the manager measured over a policy
//! period, what it has in progress (booting servers, migrations in flight), what it did recently
//! (the hysteresis memory), and one dense, indexed snapshot built from those and the inventory.
//!
//! [`LoadSnapshot::build`] costs one pass over the VMs and one over the servers and watched
//! networks of the pools it covers; every plan then works on the snapshot's arrays, never on the
//! inventory.

use std::collections::{HashMap, HashSet};

use super::balance::PolicyParams;
use crate::model::{
    AntiAffinityGroup, AntiAffinityGroupId, BondMode, BondPort, Inventory, LoadSample, Network, NetworkId,
    NetworkMember, PoolId, Port, PowerState, Server, ServerId, ServerPool, ServerPowerState, ServerRole,
    Timestamp, VlanInterface, VlanParent, VmId,
};
use crate::Result;

/// A server's load averaged over the policy period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSample {
    /// CPU utilisation, a share of all the server's CPUs (0..=1).
    pub cpu_util: f64,
    /// Throughput of the server's member of each network, Mbit/s (the busier direction).
    pub network_mbps: Vec<(NetworkId, f64)>,
}

impl ServerSample {
    /// The CPU part of a server's history: the mean of the samples taken at or after `since`
    /// (`None` when there are none). Networks are left to the caller, which knows which interface
    /// is which network's member.
    pub fn cpu_mean(history: &[LoadSample], since: Timestamp) -> Option<ServerSample> {
        let (sum, n) = history.iter().filter(|s| s.at >= since).fold((0.0f64, 0u32), |(sum, n), s| {
            (sum + f64::from(s.cpu_percent) * f64::from(s.samples), n + s.samples)
        });
        (n > 0).then(|| ServerSample { cpu_util: sum / f64::from(n) / 100.0, network_mbps: Vec::new() })
    }
}

/// A VM's load averaged over the policy period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmSample {
    /// CPU used, in physical CPUs (1.5 = one and a half CPUs busy).
    pub cpu: f64,
    /// Traffic of the VM's VNICs on each network, Mbit/s.
    pub network_mbps: Vec<(NetworkId, f64)>,
}

impl VmSample {
    /// The mean CPU of each VM over the samples of one server's history taken at or after `since`.
    pub fn cpu_means(history: &[LoadSample], since: Timestamp) -> HashMap<VmId, VmSample> {
        let mut acc: HashMap<VmId, (f64, u32)> = HashMap::new();
        for s in history.iter().filter(|s| s.at >= since) {
            for v in &s.vms {
                let e = acc.entry(v.vm).or_default();
                e.0 += f64::from(v.cpu_percent) * f64::from(s.samples);
                e.1 += s.samples;
            }
        }
        acc.into_iter()
            .map(|(vm, (sum, n))| {
                (vm, VmSample { cpu: sum / f64::from(n.max(1)) / 100.0, network_mbps: Vec::new() })
            })
            .collect()
    }
}

/// How many live migrations may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationLimits {
    /// On one server, as source or destination (in flight and planned together).
    pub per_server: u32,
    /// In the whole manager.
    pub total: u32,
}

impl Default for MigrationLimits {
    fn default() -> Self {
        MigrationLimits { per_server: 2, total: 32 }
    }
}

/// A migration the manager is running now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The VM.
    pub vm: VmId,
    /// Where it comes from.
    pub from: ServerId,
    /// Where it goes.
    pub to: ServerId,
}

/// Everything beyond the inventory that a DRS or DPM plan depends on.
#[derive(Debug, Clone, Default)]
pub struct LoadInputs {
    /// The time the plan is made, ms (the caller's clock: the manager's or a simulated one).
    pub now: Timestamp,
    /// Each server's load over the period; a server without one counts the sum of its VMs' CPU.
    pub servers: HashMap<ServerId, ServerSample>,
    /// Each VM's load over the period; a VM without one counts as idle.
    pub vms: HashMap<VmId, VmSample>,
    /// Servers powered on and not up yet: capacity that is coming, not a target yet.
    pub booting: HashSet<ServerId>,
    /// Servers a previous DPM plan started emptying ([`crate::policy::balance::Plan::draining`]):
    /// never targets, emptied first.
    pub draining: HashSet<ServerId>,
    /// Servers the manager can power off and on again (an agent that powers off, a Wake-on-LAN
    /// MAC): the only ones DPM powers off or on.
    pub power_controlled: HashSet<ServerId>,
    /// Servers left out of DRS and DPM (not participating): never sources, targets or powered.
    pub excluded: HashSet<ServerId>,
    /// Servers the manager cannot command now although the inventory says they run.
    pub unreachable: HashSet<ServerId>,
    /// Migrations running now.
    pub migrations_in_flight: Vec<InFlight>,
    /// When each VM last moved (by a policy or anyone): a VM moved within the pool's hold time is
    /// not moved again.
    pub last_vm_move: HashMap<VmId, Timestamp>,
    /// When each server was last powered on: DPM does not power it off within the hold time.
    pub last_power_on: HashMap<ServerId, Timestamp>,
    /// Concurrent migration limits.
    pub migration_limit: MigrationLimits,
    /// How many server failures each pool must stay able to absorb: DPM keeps the memory of this
    /// many of the largest running servers free across the pool.
    pub ha_reserve: u32,
}

/// Where a server stands for the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Power {
    /// Running, reachable, with the VirtualMachine role: it takes part.
    Up,
    /// Powered off by the manager: DPM may power it on.
    Off,
    /// Powered on, not up yet.
    Booting,
    /// Anything else (unreachable, not for VMs, left out): counted nowhere.
    Out,
}

/// One server in a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct SrvLoad {
    pub id: ServerId,
    pub pool: u32,
    pub power: Power,
    pub maintenance: bool,
    pub draining: bool,
    pub power_controlled: bool,
    pub cpus: f64,
    pub guest_mib: u64,
    pub used_mib: u64,
    /// CPUs busy.
    pub cpu: f64,
    /// Mbit/s on each watched network of the pool (in the pool's order).
    pub net: Vec<f64>,
    /// Link speed of the server's member of each watched network, Mbit/s (0: no member).
    pub net_cap: Vec<f64>,
    pub in_flight: u32,
    pub last_power_on: Option<Timestamp>,
    /// Resident VMs (indexes into the snapshot's VMs).
    pub vms: Vec<u32>,
}

impl SrvLoad {
    /// Whether VMs may be planned onto it.
    pub fn takes_vms(&self) -> bool {
        self.power == Power::Up && !self.maintenance && !self.draining
    }
}

/// One resident VM in a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct VmLoadState {
    pub id: VmId,
    pub server: u32,
    pub memory_mib: u64,
    pub max_memory_mib: u64,
    pub cpu: f64,
    pub net: Vec<f64>,
    pub group: Option<u32>,
    /// Running, not migrating now, not moved within the hold time.
    pub movable: bool,
    /// Migrating now.
    pub in_flight: bool,
}

/// One pool in a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct PoolLoad {
    pub params: PolicyParams,
    pub servers: Vec<u32>,
}

/// The inventory and loads of some pools, in arrays indexed by position, ready for planning.
#[derive(Debug, Clone)]
pub struct LoadSnapshot {
    pub(crate) now: Timestamp,
    pub(crate) pools: Vec<PoolLoad>,
    pub(crate) servers: Vec<SrvLoad>,
    pub(crate) vms: Vec<VmLoadState>,
    /// Anti-affinity groups: their resident members.
    pub(crate) groups: Vec<Vec<u32>>,
    pub(crate) in_flight_total: u32,
    pub(crate) limits: MigrationLimits,
    pub(crate) ha_reserve: u32,
}

fn port_speed(server: &Server, port: &Port) -> f64 {
    server
        .hardware
        .ports
        .iter()
        .find(|e| e.name == port.interface)
        .and_then(|e| e.speed_mbps)
        .map_or(0.0, f64::from)
}

fn bond_speed(inv: &Inventory, server: &Server, bond: &BondPort) -> f64 {
    let speeds = bond.ports.iter().filter_map(|p| inv.get::<Port>(*p).ok()).map(|p| port_speed(server, p));
    match bond.mode {
        BondMode::ActiveBackup => speeds.fold(0.0, f64::max),
        BondMode::Lacp | BondMode::AdaptiveLoadBalancing => speeds.sum(),
    }
}

/// The link speed of a network member, Mbit/s: a port's, a bond's (the sum of its ports, the
/// fastest one for active-backup), a VLAN interface's parent's.
fn member_speed(inv: &Inventory, server: &Server, m: NetworkMember) -> f64 {
    match m {
        NetworkMember::Port(p) => inv.get::<Port>(p).map_or(0.0, |p| port_speed(server, p)),
        NetworkMember::Bond(b) => inv.get::<BondPort>(b).map_or(0.0, |b| bond_speed(inv, server, b)),
        NetworkMember::Vlan(v) => match inv.get::<VlanInterface>(v).map(|v| v.parent) {
            Ok(VlanParent::Port(p)) => inv.get::<Port>(p).map_or(0.0, |p| port_speed(server, p)),
            Ok(VlanParent::Bond(b)) => inv.get::<BondPort>(b).map_or(0.0, |b| bond_speed(inv, server, b)),
            Err(_) => 0.0,
        },
    }
}

/// A resident VM as the snapshot reads it, whoever knows it (the inventory, a simulator).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResidentVm {
    /// The VM.
    pub id: VmId,
    /// Its server's index in the snapshot ([`SnapshotBuilder::server_index`]).
    pub server: u32,
    /// Its memory, MiB.
    pub memory_mib: u64,
    /// Its maximum memory, MiB.
    pub max_memory_mib: u64,
    /// Whether it is running (a resident VM that is not, say a paused one, does not move).
    pub running: bool,
    /// Its anti-affinity group, when that group exists.
    pub group: Option<AntiAffinityGroupId>,
}

/// Builds a [`LoadSnapshot`]: the servers and watched networks of the pools from the inventory,
/// then the resident VMs one at a time from whoever tracks them, then the servers' loads.
///
/// This is the one place that says what the snapshot means (which VMs are movable, held or
/// migrating, anti-affinity groups, memory used, a server's CPU and traffic as the larger of its
/// own sample and the sum of its VMs'): [`LoadSnapshot::build_with`] feeds it the inventory's VMs
/// and the simulator feeds it its own arrays, without a map of samples per VM.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder<'a> {
    inputs: &'a LoadInputs,
    snap: LoadSnapshot,
    server_ix: HashMap<ServerId, u32>,
    /// Per pool: the index of each watched network.
    net_ix: Vec<HashMap<NetworkId, usize>>,
    moving: HashSet<VmId>,
    group_ix: HashMap<AntiAffinityGroupId, u32>,
    summed_cpu: Vec<f64>,
}

impl<'a> SnapshotBuilder<'a> {
    /// A snapshot of the servers of `pools` and their link speeds on the watched networks, with no
    /// VM yet.
    pub fn servers_of(
        inv: &Inventory,
        pools: &[(PoolId, PolicyParams)],
        inputs: &'a LoadInputs,
    ) -> Result<SnapshotBuilder<'a>> {
        let mut snap = LoadSnapshot {
            now: inputs.now,
            pools: Vec::with_capacity(pools.len()),
            servers: Vec::new(),
            vms: Vec::new(),
            groups: Vec::new(),
            in_flight_total: inputs.migrations_in_flight.len() as u32,
            limits: inputs.migration_limit,
            ha_reserve: inputs.ha_reserve,
        };
        let mut server_ix: HashMap<ServerId, u32> = HashMap::new();
        let mut net_ix: Vec<HashMap<NetworkId, usize>> = Vec::with_capacity(pools.len());
        for (pi, (pid, params)) in pools.iter().enumerate() {
            let pool = inv.get::<ServerPool>(*pid)?;
            let nets: HashMap<NetworkId, usize> =
                params.networks.iter().enumerate().map(|(i, (n, _))| (*n, i)).collect();
            let mut members = Vec::with_capacity(pool.servers.len());
            for sid in &pool.servers {
                let Ok(s) = inv.get::<Server>(*sid) else { continue };
                let booting = inputs.booting.contains(sid);
                let power = if inputs.excluded.contains(sid) || !s.roles.contains(&ServerRole::VirtualMachine)
                {
                    Power::Out
                } else if booting {
                    Power::Booting
                } else {
                    match s.power_state {
                        ServerPowerState::Running if !inputs.unreachable.contains(sid) => Power::Up,
                        ServerPowerState::Stopped => Power::Off,
                        _ => Power::Out,
                    }
                };
                let ix = snap.servers.len() as u32;
                server_ix.insert(*sid, ix);
                members.push(ix);
                snap.servers.push(SrvLoad {
                    id: *sid,
                    pool: pi as u32,
                    power,
                    maintenance: s.maintenance_mode,
                    draining: inputs.draining.contains(sid),
                    power_controlled: inputs.power_controlled.contains(sid),
                    cpus: f64::from(s.hardware.cpus.max(1)),
                    guest_mib: s.guest_memory_mib(),
                    used_mib: 0,
                    cpu: 0.0,
                    net: vec![0.0; nets.len()],
                    net_cap: vec![0.0; nets.len()],
                    in_flight: 0,
                    last_power_on: inputs.last_power_on.get(sid).copied(),
                    vms: Vec::new(),
                });
            }
            for (n, k) in &nets {
                let Ok(net) = inv.get::<Network>(*n) else { continue };
                for m in &net.members {
                    let Ok(sid) = inv.member_server(*m) else { continue };
                    if let (Some(&ix), Ok(s)) = (server_ix.get(&sid), inv.get::<Server>(sid)) {
                        snap.servers[ix as usize].net_cap[*k] = member_speed(inv, s, *m);
                    }
                }
            }
            snap.pools.push(PoolLoad { params: params.clone(), servers: members });
            net_ix.push(nets);
        }
        for f in &inputs.migrations_in_flight {
            for s in [f.from, f.to] {
                if let Some(&ix) = server_ix.get(&s) {
                    snap.servers[ix as usize].in_flight += 1;
                }
            }
        }
        let summed_cpu = vec![0.0f64; snap.servers.len()];
        Ok(SnapshotBuilder {
            moving: inputs.migrations_in_flight.iter().map(|f| f.vm).collect(),
            inputs,
            snap,
            server_ix,
            net_ix,
            group_ix: HashMap::new(),
            summed_cpu,
        })
    }

    /// A server's index in the snapshot, if it is a server of the pools.
    pub fn server_index(&self, server: ServerId) -> Option<u32> {
        self.server_ix.get(&server).copied()
    }

    /// Add a resident VM with its load over the period: `cpu` in CPUs, `net` in Mbit/s on each
    /// network (networks the pool does not watch are ignored). VMs are added in a stable order
    /// (the inventory's name order): plans break ties by it.
    pub fn vm(&mut self, vm: ResidentVm, cpu: f64, net_mbps: &[(NetworkId, f64)]) {
        let six = vm.server as usize;
        let Some(srv) = self.snap.servers.get_mut(six) else { return };
        srv.used_mib += vm.memory_mib;
        let cpu = cpu.max(0.0);
        self.summed_cpu[six] += cpu;
        let nets = &self.net_ix[srv.pool as usize];
        let mut net = vec![0.0; nets.len()];
        for (n, mbps) in net_mbps {
            if let Some(k) = nets.get(n) {
                net[*k] += mbps.max(0.0);
            }
        }
        let hold = self.snap.pools[srv.pool as usize].params.vm_hold_ms;
        let now = self.inputs.now;
        let held = self.inputs.last_vm_move.get(&vm.id).is_some_and(|t| t.saturating_add(hold) > now);
        let vix = self.snap.vms.len() as u32;
        srv.vms.push(vix);
        let group = vm.group.map(|g| {
            *self.group_ix.entry(g).or_insert_with(|| {
                self.snap.groups.push(Vec::new());
                self.snap.groups.len() as u32 - 1
            })
        });
        if let Some(g) = group {
            self.snap.groups[g as usize].push(vix);
        }
        let moving = !self.moving.is_empty() && self.moving.contains(&vm.id);
        self.snap.vms.push(VmLoadState {
            id: vm.id,
            server: vm.server,
            memory_mib: vm.memory_mib,
            max_memory_mib: vm.max_memory_mib,
            cpu,
            net,
            group,
            movable: vm.running && !held && !moving,
            in_flight: moving,
        });
    }

    /// The snapshot: each server's load is the larger of its own sample and the sum of its VMs'.
    pub fn finish(mut self) -> LoadSnapshot {
        let snap = &mut self.snap;
        for (ix, srv) in snap.servers.iter_mut().enumerate() {
            match self.inputs.servers.get(&srv.id) {
                Some(s) => {
                    srv.cpu = (s.cpu_util.clamp(0.0, 1.0) * srv.cpus).max(self.summed_cpu[ix]);
                    let nets = &self.net_ix[srv.pool as usize];
                    for (n, mbps) in &s.network_mbps {
                        if let Some(k) = nets.get(n) {
                            srv.net[*k] = mbps.max(0.0);
                        }
                    }
                }
                None => srv.cpu = self.summed_cpu[ix],
            }
        }
        // A server sample that saw less traffic than its VMs report counts the VMs' sum.
        for srv in snap.servers.iter_mut() {
            let mut from_vms = vec![0.0; srv.net.len()];
            for v in &srv.vms {
                for (k, m) in snap.vms[*v as usize].net.iter().enumerate() {
                    from_vms[k] += m;
                }
            }
            for (k, m) in from_vms.into_iter().enumerate() {
                srv.net[k] = srv.net[k].max(m);
            }
        }
        self.snap
    }
}

impl LoadSnapshot {
    /// The snapshot of `pools`, each with the policy its [`ServerPool::policy`] says.
    pub fn build(inv: &Inventory, pools: &[PoolId], inputs: &LoadInputs) -> Result<LoadSnapshot> {
        let with: Vec<(PoolId, PolicyParams)> = pools
            .iter()
            .map(|p| Ok((*p, PolicyParams::of_pool(inv.get::<ServerPool>(*p)?))))
            .collect::<Result<_>>()?;
        Self::build_with(inv, &with, inputs)
    }

    /// The snapshot of pools with the parameters given here (tests, simulations, what-ifs).
    pub fn build_with(
        inv: &Inventory,
        pools: &[(PoolId, PolicyParams)],
        inputs: &LoadInputs,
    ) -> Result<LoadSnapshot> {
        let mut b = SnapshotBuilder::servers_of(inv, pools, inputs)?;
        for vm in inv.vms.iter() {
            if !vm.power_state.is_resident() {
                continue;
            }
            let Some(server) = vm.server.and_then(|s| b.server_index(s)) else { continue };
            let (cpu, net) = inputs.vms.get(&vm.id).map_or((0.0, &[][..]), |s| (s.cpu, &s.network_mbps[..]));
            b.vm(
                ResidentVm {
                    id: vm.id,
                    server,
                    memory_mib: vm.config.memory_mib,
                    max_memory_mib: vm.config.max_memory_mib,
                    running: vm.power_state == PowerState::Running,
                    group: vm.anti_affinity_group.filter(|g| inv.get::<AntiAffinityGroup>(*g).is_ok()),
                },
                cpu,
                net,
            );
        }
        Ok(b.finish())
    }

    /// How many servers and resident VMs the snapshot holds.
    pub fn size(&self) -> (usize, usize) {
        (self.servers.len(), self.vms.len())
    }

    /// A server's CPU load in the snapshot, percent of its CPUs.
    pub fn cpu_percent(&self, server: ServerId) -> Option<f64> {
        self.servers.iter().find(|s| s.id == server).map(|s| 100.0 * s.cpu / s.cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VmLoad;

    fn sample(at: Timestamp, samples: u32, cpu_percent: f32, vm: VmId, vm_cpu: f32) -> LoadSample {
        LoadSample {
            at,
            samples,
            cpu_percent,
            cpus: 8,
            free_memory_mib: 0,
            guest_memory_mib: 0,
            vms: vec![VmLoad { vm, cpu_percent: vm_cpu, memory_mib: 512 }],
            interfaces: vec![],
        }
    }

    #[test]
    fn the_period_averages_the_kept_samples_weighted_by_how_many_they_hold() {
        let vm = VmId::new();
        let history = [
            sample(1_000, 1, 90.0, vm, 400.0),
            sample(2_000, 1, 20.0, vm, 100.0),
            sample(3_000, 3, 60.0, vm, 200.0),
        ];
        let s = ServerSample::cpu_mean(&history, 2_000).unwrap();
        assert!((s.cpu_util - 0.5).abs() < 1e-9, "(20 + 3 × 60) / 4 = 50 %: {s:?}");
        let v = VmSample::cpu_means(&history, 2_000);
        assert!((v[&vm].cpu - 1.75).abs() < 1e-9, "(1 + 3 × 2) / 4 CPUs");
        assert_eq!(ServerSample::cpu_mean(&history, 5_000), None);
    }

    #[test]
    fn a_network_capacity_is_the_speed_of_the_port_or_bond_it_runs_on() {
        use crate::model::*;
        let mut inv = Inventory::new();
        let mut pool = ServerPool::new("pool");
        let net = NetworkId::new();
        let mut network = Network {
            id: net,
            name: "vm".into(),
            description: String::new(),
            functions: [NetworkFunction::VirtualMachine].into_iter().collect(),
            members: vec![],
            bridge: "xenbr1".into(),
            mtu: 1500,
        };
        for (i, mode) in [BondMode::Lacp, BondMode::ActiveBackup].into_iter().enumerate() {
            let sid = ServerId::new();
            let ports: Vec<Port> = ["eth1", "eth2"]
                .iter()
                .map(|n| Port {
                    id: PortId::new(),
                    name: format!("s{i}:{n}"),
                    description: String::new(),
                    server: sid,
                    interface: (*n).into(),
                    mac: "00:10:e0:00:00:01".into(),
                    addressing: Addressing::None,
                    bond: None,
                })
                .collect();
            let bond = BondPort {
                id: BondPortId::new(),
                name: format!("s{i}:bond0"),
                description: String::new(),
                server: sid,
                interface: "bond0".into(),
                mode,
                ports: ports.iter().map(|p| p.id).collect(),
                addressing: Addressing::None,
                mtu: 1500,
                monitor: BondMonitor::default(),
            };
            network.members.push(NetworkMember::Bond(bond.id));
            let hw_ports = [("eth1", 10_000), ("eth2", 1_000)]
                .iter()
                .map(|(n, speed)| {
                    let mut e = EthernetPort::new(n, "00:10:e0:00:00:01");
                    e.speed_mbps = Some(*speed);
                    e
                })
                .collect();
            inv.load(Object::Server(Server {
                id: sid,
                name: format!("s{i}"),
                description: String::new(),
                address: format!("sim://s{i}"),
                hardware: HostHardware {
                    cpus: 8,
                    memory_mib: 16384,
                    xen_version: "4.17".into(),
                    ports: hw_ports,
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
                ports: ports.iter().map(|p| p.id).collect(),
                wol_mac: None,
                out_of_band: None,
                dom0_memory_mib: 0,
            }));
            for p in ports {
                inv.load(Object::Port(p));
            }
            inv.load(Object::BondPort(bond));
            pool.servers.push(sid);
        }
        inv.load(Object::Network(network));
        pool.policy.networks = vec![(net, 70)];
        let pid = pool.id;
        inv.load(Object::ServerPool(pool));
        let snap = LoadSnapshot::build(&inv, &[pid], &LoadInputs::default()).unwrap();
        assert_eq!(snap.servers[0].net_cap, vec![11_000.0], "LACP adds its ports' speeds");
        assert_eq!(snap.servers[1].net_cap, vec![10_000.0], "active-backup runs on one port at a time");
        assert_eq!(snap.pools[0].params.networks, vec![(net, 0.7)]);
    }
}
