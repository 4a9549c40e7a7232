//! DRS and DPM: from a [`LoadSnapshot`] to a [`Plan`] of migrations and power actions, each with
//! its reason.
//!
//! **DRS** (pools in [`PolicyMode::Drs`] or [`PolicyMode::Dpm`]) reacts only to servers over a
//! threshold: CPU above the pool's `cpu_threshold_percent`, or a watched network's traffic above
//! its threshold as a share of the server's port or bond speed. For each such server, most
//! overloaded first, it moves VMs off until the server is back under its thresholds: the smallest
//! VM that alone relieves it, else the busiest one, each to the least-loaded server where the VM
//! fits with headroom to spare (memory; CPU and every watched network at most the threshold minus
//! [`PolicyParams::headroom`]; no VM of its anti-affinity group; migration limits).
//!
//! **DPM** (pools in [`PolicyMode::Dpm`], after DRS) powers servers on when the pool runs hot — a
//! server DRS could not relieve for want of room, the pool's average CPU above the threshold minus
//! the headroom, or the HA reserve not kept — counting servers still booting; otherwise it
//! consolidates: the least-loaded under-used servers (CPU under [`PolicyParams::underused`]) are
//! emptied, each VM to the *most* loaded server where it fits under the same ceiling (best fit), as
//! long as the pool's average CPU stays at most the threshold minus twice the headroom and the
//! HA reserve holds without the server. A server whose VMs all got a move in this plan gets a
//! `PowerOff` after those moves; one the migration limits cut short is listed in
//! [`Plan::draining`] and emptied first by the next plan.
//!
//! **Hysteresis**, so that VMs do not ping-pong and servers do not flap: a VM is only ever moved
//! to where it leaves the target below the threshold minus the headroom, so a move never makes a
//! new overloaded server; a VM that moved within [`PolicyParams::vm_hold_ms`] is not moved again;
//! a server powered on within [`PolicyParams::power_on_hold_ms`] is not powered off; DPM packs to
//! twice the headroom below the threshold but powers on only above one headroom below it.
//!
//! Servers in maintenance mode, excluded, unreachable, booting or draining are never targets;
//! servers in maintenance mode or excluded are never sources or powered.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::load::{LoadSnapshot, Power, SrvLoad};
use crate::model::{NetworkId, PolicyMode, ServerId, ServerPool, VmId};

/// The settings of one pool's DRS/DPM, as shares (0..=1) rather than percent.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyParams {
    /// Off, DRS, or DPM (which balances as DRS does, then consolidates and powers).
    pub mode: PolicyMode,
    /// A server above this share of its CPUs is overloaded.
    pub cpu_threshold: f64,
    /// Watched networks and their thresholds, shares of the member's link speed.
    pub networks: Vec<(NetworkId, f64)>,
    /// How often the policy runs and the span its loads average, seconds.
    pub period_secs: u32,
    /// Targets stay this far below each threshold after a move; DPM packs to twice this below.
    pub headroom: f64,
    /// DPM: a server below this share of its CPUs is under-used.
    pub underused: f64,
    /// A VM moved within this many ms is not moved again.
    pub vm_hold_ms: u64,
    /// A server powered on within this many ms is not powered off.
    pub power_on_hold_ms: u64,
}

impl PolicyParams {
    /// The parameters of a pool's [`crate::model::PoolPolicy`]: its mode, thresholds and period;
    /// a headroom of 10 points, under-used below half the CPU threshold, a VM hold of five
    /// periods and a power-on hold of fifteen.
    pub fn of_pool(pool: &ServerPool) -> PolicyParams {
        let p = &pool.policy;
        let period_ms = u64::from(p.period_secs) * 1000;
        PolicyParams {
            mode: p.mode,
            cpu_threshold: f64::from(p.cpu_threshold_percent) / 100.0,
            networks: p.networks.iter().map(|(n, t)| (*n, f64::from(*t) / 100.0)).collect(),
            period_secs: p.period_secs,
            headroom: 0.10,
            underused: f64::from(p.cpu_threshold_percent) / 200.0,
            vm_hold_ms: 5 * period_ms,
            power_on_hold_ms: 15 * period_ms,
        }
    }

    fn floor(x: f64) -> f64 {
        x.max(0.05)
    }

    /// The CPU share a target may reach with a VM moved in.
    pub fn target_ceiling(&self) -> f64 {
        Self::floor(self.cpu_threshold - self.headroom)
    }

    /// The pool's average CPU share DPM consolidates to at most.
    pub fn pack_ceiling(&self) -> f64 {
        Self::floor(self.cpu_threshold - 2.0 * self.headroom)
    }

    fn net_ceiling(&self, k: usize) -> f64 {
        Self::floor(self.networks[k].1 - self.headroom)
    }
}

/// Why an action was planned.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The source's CPU is over the threshold.
    CpuOverThreshold {
        /// The source's CPU, percent.
        percent: f64,
        /// The threshold, percent.
        threshold_percent: f64,
    },
    /// The source's traffic on a watched network is over its threshold.
    NetworkOverThreshold {
        /// The network.
        network: NetworkId,
        /// Traffic, percent of the member's link speed.
        percent: f64,
        /// The threshold, percent.
        threshold_percent: f64,
    },
    /// DPM empties an under-used server to power it off.
    Consolidate {
        /// The source's CPU, percent.
        server_percent: f64,
    },
    /// DPM powers off a server it emptied.
    Underused {
        /// The server's CPU before it was emptied, percent.
        server_percent: f64,
        /// The pool's average CPU without it, percent.
        pool_percent_after: f64,
    },
    /// DPM powers a server on: the pool's average CPU is too high.
    PoolHot {
        /// The pool's average CPU over its running servers, percent.
        pool_percent: f64,
    },
    /// DPM powers a server on: DRS found no room for the load of this server.
    Overloaded {
        /// The server DRS could not relieve.
        server: ServerId,
    },
    /// DPM powers a server on: the pool would not absorb the failure of its HA reserve (too little
    /// memory free, or free only in pieces too small for the VMs to restart).
    HaReserve {
        /// Memory the reserve needs free, MiB.
        needed_mib: u64,
        /// Memory free on the running servers, MiB.
        free_mib: u64,
    },
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Live-migrate a VM.
    Migrate {
        /// The VM.
        vm: VmId,
        /// Its server.
        from: ServerId,
        /// Where it goes.
        to: ServerId,
        /// Why.
        reason: Reason,
    },
    /// Power a server off: run it only once the migrations listed before it from that server are
    /// done.
    PowerOff {
        /// The server, empty once the moves before it are done.
        server: ServerId,
        /// Why.
        reason: Reason,
    },
    /// Power a server on (Wake-on-LAN).
    PowerOn {
        /// The server.
        server: ServerId,
        /// Why.
        reason: Reason,
    },
}

/// Why an overloaded server stays overloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocked {
    /// No server has room for any of its movable VMs.
    NoRoom,
    /// The migration limits are reached.
    MigrationLimit,
    /// None of its VMs may move now (held after a recent move, migrating, not running, or not
    /// using the overloaded resource).
    NothingMovable,
}

/// An overloaded server the plan does not relieve.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Unrelieved {
    /// The server.
    pub server: ServerId,
    /// What is over its threshold.
    pub reason: Reason,
    /// Why it stays so.
    pub blocked: Blocked,
}

/// What DRS and DPM propose, in the order to run it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// The actions.
    pub actions: Vec<Action>,
    /// Overloaded servers the plan leaves overloaded.
    pub unrelieved: Vec<Unrelieved>,
    /// Servers DPM started emptying but could not finish within the migration limits: pass them
    /// back as [`super::load::LoadInputs::draining`] to the next plan.
    pub draining: Vec<ServerId>,
}

impl Plan {
    /// The planned migrations.
    pub fn migrations(&self) -> impl Iterator<Item = (VmId, ServerId, ServerId, &Reason)> + '_ {
        self.actions.iter().filter_map(|a| match a {
            Action::Migrate { vm, from, to, reason } => Some((*vm, *from, *to, reason)),
            _ => None,
        })
    }

    /// The servers to power off.
    pub fn powered_off(&self) -> Vec<ServerId> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::PowerOff { server, .. } => Some(*server),
                _ => None,
            })
            .collect()
    }

    /// The servers to power on.
    pub fn powered_on(&self) -> Vec<ServerId> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::PowerOn { server, .. } => Some(*server),
                _ => None,
            })
            .collect()
    }
}

/// DRS then DPM, each for the pools whose mode asks for it.
pub fn plan(snap: &LoadSnapshot) -> Plan {
    let mut p = Planner::new(snap);
    p.drs();
    p.dpm();
    p.plan
}

/// DRS only (pools in DRS or DPM mode).
pub fn plan_drs(snap: &LoadSnapshot) -> Plan {
    let mut p = Planner::new(snap);
    p.drs();
    p.plan
}

/// DPM only (pools in DPM mode), without balancing first.
pub fn plan_dpm(snap: &LoadSnapshot) -> Plan {
    let mut p = Planner::new(snap);
    p.dpm();
    p.plan
}

const PPM: f64 = 1_000_000.0;

fn key(s: &SrvLoad) -> u64 {
    ((s.cpu / s.cpus).max(0.0) * PPM) as u64
}

/// What overloads a server: CPU or watched network `k`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resource {
    Cpu,
    Net(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// The least-loaded server that fits (DRS spreads).
    Spread,
    /// The most-loaded server that fits (DPM packs).
    Pack,
}

#[derive(Debug)]
struct Planner<'a> {
    snap: &'a LoadSnapshot,
    srv: Vec<SrvLoad>,
    vm_server: Vec<u32>,
    moved: Vec<bool>,
    planned_total: u32,
    /// Per pool: servers that take VMs, by CPU share.
    index: Vec<BTreeSet<(u64, u32)>>,
    max_cpus: Vec<f64>,
    /// Per server: leaving the pool's capacity in this plan (draining or powered off).
    leaving: Vec<bool>,
    plan: Plan,
}

impl<'a> Planner<'a> {
    fn new(snap: &'a LoadSnapshot) -> Planner<'a> {
        let srv = snap.servers.clone();
        let mut index = vec![BTreeSet::new(); snap.pools.len()];
        let mut max_cpus = vec![1.0f64; snap.pools.len()];
        for (i, s) in srv.iter().enumerate() {
            if s.takes_vms() {
                index[s.pool as usize].insert((key(s), i as u32));
                max_cpus[s.pool as usize] = max_cpus[s.pool as usize].max(s.cpus);
            }
        }
        let leaving = srv.iter().map(|s| s.draining).collect();
        Planner {
            snap,
            vm_server: snap.vms.iter().map(|v| v.server).collect(),
            moved: vec![false; snap.vms.len()],
            planned_total: 0,
            index,
            max_cpus,
            leaving,
            srv,
            plan: Plan::default(),
        }
    }

    fn params(&self, s: u32) -> &'a PolicyParams {
        &self.snap.pools[self.srv[s as usize].pool as usize].params
    }

    fn global_room(&self) -> bool {
        self.snap.in_flight_total + self.planned_total < self.snap.limits.total
    }

    fn server_room(&self, s: u32) -> bool {
        self.srv[s as usize].in_flight < self.snap.limits.per_server
    }

    /// The most overloaded resource of a server, with its reason and severity (load / threshold).
    fn overload(&self, s: u32) -> Option<(Resource, Reason, f64)> {
        let srv = &self.srv[s as usize];
        let p = self.params(s);
        let mut worst: Option<(Resource, Reason, f64)> = None;
        let cpu = srv.cpu / srv.cpus;
        if cpu > p.cpu_threshold {
            worst = Some((
                Resource::Cpu,
                Reason::CpuOverThreshold { percent: 100.0 * cpu, threshold_percent: 100.0 * p.cpu_threshold },
                cpu / p.cpu_threshold,
            ));
        }
        for (k, (network, t)) in p.networks.iter().enumerate() {
            let cap = srv.net_cap[k];
            if cap <= 0.0 {
                continue;
            }
            let share = srv.net[k] / cap;
            if share > *t && worst.as_ref().is_none_or(|w| share / t > w.2) {
                worst = Some((
                    Resource::Net(k),
                    Reason::NetworkOverThreshold {
                        network: *network,
                        percent: 100.0 * share,
                        threshold_percent: 100.0 * t,
                    },
                    share / t,
                ));
            }
        }
        worst
    }

    fn fits(&self, v: u32, t: u32, ceiling: f64, limits: bool) -> bool {
        let s = &self.srv[t as usize];
        let vm = &self.snap.vms[v as usize];
        if t == self.vm_server[v as usize] || !s.takes_vms() || self.leaving[t as usize] {
            return false;
        }
        if s.guest_mib < vm.max_memory_mib || s.guest_mib.saturating_sub(s.used_mib) < vm.memory_mib {
            return false;
        }
        if s.cpu + vm.cpu > ceiling * s.cpus {
            return false;
        }
        let p = self.params(t);
        for (k, m) in vm.net.iter().enumerate() {
            if *m > 0.0 && (s.net_cap[k] <= 0.0 || s.net[k] + m > p.net_ceiling(k) * s.net_cap[k]) {
                return false;
            }
        }
        if let Some(g) = vm.group {
            if self.snap.groups[g as usize].iter().any(|o| *o != v && self.vm_server[*o as usize] == t) {
                return false;
            }
        }
        !limits || self.server_room(t)
    }

    fn find_target(&self, v: u32, fit: Fit, limits: bool) -> Option<u32> {
        let from = self.vm_server[v as usize];
        let pool = self.srv[from as usize].pool as usize;
        let ceiling = self.params(from).target_ceiling();
        let top = (ceiling * PPM) as u64;
        let idx = &self.index[pool];
        match fit {
            Fit::Spread => {
                idx.range(..=(top, u32::MAX)).map(|(_, t)| *t).find(|t| self.fits(v, *t, ceiling, limits))
            }
            Fit::Pack => {
                let vm_share = self.snap.vms[v as usize].cpu / self.max_cpus[pool];
                let bound = (((ceiling - vm_share).max(0.0)) * PPM) as u64;
                idx.range(..=(bound, u32::MAX))
                    .rev()
                    .map(|(_, t)| *t)
                    .find(|t| self.fits(v, *t, ceiling, limits))
            }
        }
    }

    fn unindex(&mut self, s: u32) -> bool {
        let srv = &self.srv[s as usize];
        self.index[srv.pool as usize].remove(&(key(srv), s))
    }

    fn reindex(&mut self, s: u32) {
        let srv = &self.srv[s as usize];
        if srv.takes_vms() && !self.leaving[s as usize] {
            self.index[srv.pool as usize].insert((key(srv), s));
        }
    }

    /// Move `v` to `to` in the planner's state; `sign` 1 plans a move, -1 undoes one.
    fn shift(&mut self, v: u32, from: u32, to: u32, undo: bool) {
        self.unindex(from);
        self.unindex(to);
        let vm = &self.snap.vms[v as usize];
        {
            let f = &mut self.srv[from as usize];
            f.cpu -= vm.cpu;
            f.used_mib = f.used_mib.saturating_sub(vm.memory_mib);
            for (k, m) in vm.net.iter().enumerate() {
                f.net[k] -= m;
            }
            f.vms.retain(|x| *x != v);
        }
        {
            let t = &mut self.srv[to as usize];
            t.cpu += vm.cpu;
            t.used_mib += vm.memory_mib;
            for (k, m) in vm.net.iter().enumerate() {
                t.net[k] += m;
            }
            t.vms.push(v);
        }
        self.vm_server[v as usize] = to;
        if undo {
            self.srv[from as usize].in_flight -= 1;
            self.srv[to as usize].in_flight -= 1;
            self.planned_total -= 1;
            self.moved[v as usize] = false;
        } else {
            self.srv[from as usize].in_flight += 1;
            self.srv[to as usize].in_flight += 1;
            self.planned_total += 1;
            self.moved[v as usize] = true;
        }
        self.reindex(from);
        self.reindex(to);
    }

    fn migrate(&mut self, v: u32, to: u32, reason: Reason) {
        let from = self.vm_server[v as usize];
        self.shift(v, from, to, false);
        self.plan.actions.push(Action::Migrate {
            vm: self.snap.vms[v as usize].id,
            from: self.srv[from as usize].id,
            to: self.srv[to as usize].id,
            reason,
        });
    }

    fn movable(&self, v: u32) -> bool {
        self.snap.vms[v as usize].movable && !self.moved[v as usize]
    }

    fn load_of(&self, v: u32, r: Resource) -> f64 {
        let vm = &self.snap.vms[v as usize];
        match r {
            Resource::Cpu => vm.cpu,
            Resource::Net(k) => vm.net[k],
        }
    }

    fn drs(&mut self) {
        let snap = self.snap;
        for pool in &snap.pools {
            if !matches!(pool.params.mode, PolicyMode::Drs | PolicyMode::Dpm) {
                continue;
            }
            let mut hot: Vec<(f64, u32)> = pool
                .servers
                .iter()
                .filter(|s| self.srv[**s as usize].power == Power::Up && !self.srv[**s as usize].maintenance)
                .filter_map(|s| self.overload(*s).map(|o| (o.2, *s)))
                .collect();
            hot.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal).then(a.1.cmp(&b.1)));
            for (_, s) in hot {
                self.relieve(s);
            }
        }
    }

    fn relieve(&mut self, s: u32) {
        let id = self.srv[s as usize].id;
        while let Some((res, reason, _)) = self.overload(s) {
            let blocked = |why| Unrelieved { server: id, reason: reason.clone(), blocked: why };
            if !self.global_room() || !self.server_room(s) {
                self.plan.unrelieved.push(blocked(Blocked::MigrationLimit));
                return;
            }
            let srv = &self.srv[s as usize];
            let p = self.params(s);
            let need = match res {
                Resource::Cpu => srv.cpu - p.cpu_threshold * srv.cpus,
                Resource::Net(k) => srv.net[k] - p.networks[k].1 * srv.net_cap[k],
            };
            let mut cands: Vec<(f64, u32)> = srv
                .vms
                .iter()
                .copied()
                .filter(|v| self.movable(*v))
                .map(|v| (self.load_of(v, res), v))
                .filter(|(l, _)| *l > 0.0)
                .collect();
            if cands.is_empty() {
                self.plan.unrelieved.push(blocked(Blocked::NothingMovable));
                return;
            }
            // The smallest VM that relieves the server alone first, then the rest busiest first.
            cands.sort_by(|a, b| {
                let (ea, eb) = (a.0 >= need, b.0 >= need);
                eb.cmp(&ea)
                    .then_with(|| {
                        if ea { a.0.partial_cmp(&b.0) } else { b.0.partial_cmp(&a.0) }
                            .unwrap_or(Ordering::Equal)
                    })
                    .then(a.1.cmp(&b.1))
            });
            let Some((v, t)) =
                cands.iter().find_map(|(_, v)| self.find_target(*v, Fit::Spread, true).map(|t| (*v, t)))
            else {
                let limited = cands.iter().any(|(_, v)| self.find_target(*v, Fit::Spread, false).is_some());
                self.plan.unrelieved.push(blocked(if limited {
                    Blocked::MigrationLimit
                } else {
                    Blocked::NoRoom
                }));
                return;
            };
            self.migrate(v, t, reason.clone());
        }
    }

    /// Whether the pool keeps its HA reserve when `off` servers are gone and `on` ones come up:
    /// (memory needed free, memory free).
    fn ha(&self, pi: usize, on: &[u32]) -> (u64, u64) {
        let n = self.snap.ha_reserve as usize;
        let mut top: Vec<u64> = Vec::with_capacity(n + 1);
        let (mut total, mut used) = (0u64, 0u64);
        for s in &self.snap.pools[pi].servers {
            let srv = &self.srv[*s as usize];
            used += srv.used_mib;
            let counted = (srv.power == Power::Up && !srv.maintenance && !self.leaving[*s as usize])
                || srv.power == Power::Booting
                || on.contains(s);
            if !counted {
                continue;
            }
            total += srv.guest_mib;
            if n > 0 {
                top.push(srv.guest_mib);
                top.sort_unstable_by(|a, b| b.cmp(a));
                top.truncate(n);
            }
        }
        (top.iter().sum(), total.saturating_sub(used))
    }

    /// Whether, with `on` servers come up, each VM of the pool's HA reserve of failures would find
    /// a server with room for it: the VMs of the `ha_reserve` counted servers holding the most
    /// memory (the worst failures) and the VMs still on servers leaving the pool, largest first,
    /// each on the counted server with the most memory free (as start placement does). The
    /// aggregate check of [`Planner::ha`] misses memory that is free only in pieces too small for
    /// the VMs that need it. Anti-affinity is not considered.
    fn ha_restartable(&self, pi: usize, on: &[u32]) -> bool {
        let n = self.snap.ha_reserve as usize;
        if n == 0 {
            return true;
        }
        // (memory used, memory free, server) of each counted server.
        let mut counted: Vec<(u64, u64, u32)> = Vec::new();
        let mut homeless: Vec<u64> = Vec::new();
        let memory_of = |s: u32, out: &mut Vec<u64>| {
            out.extend(self.srv[s as usize].vms.iter().map(|v| self.snap.vms[*v as usize].memory_mib));
        };
        for s in &self.snap.pools[pi].servers {
            let srv = &self.srv[*s as usize];
            let up = srv.power == Power::Up && !srv.maintenance && !self.leaving[*s as usize];
            if up || srv.power == Power::Booting || on.contains(s) {
                counted.push((srv.used_mib, srv.guest_mib.saturating_sub(srv.used_mib), *s));
            } else {
                memory_of(*s, &mut homeless);
            }
        }
        // The worst failures, then the servers with the most memory free: the greedy placement of
        // k VMs takes free memory from at most the k servers with the most.
        let failed = n.min(counted.len());
        if failed < counted.len() {
            counted.select_nth_unstable_by(failed - 1, |a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
        }
        for (_, _, s) in &counted[..failed] {
            memory_of(*s, &mut homeless);
        }
        let rest = &mut counted[failed..];
        let k = homeless.len();
        if k == 0 {
            return true;
        }
        if k < rest.len() {
            rest.select_nth_unstable_by(k - 1, |a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        }
        let mut free: std::collections::BinaryHeap<u64> = rest.iter().take(k).map(|c| c.1).collect();
        homeless.sort_unstable_by(|a, b| b.cmp(a));
        for m in homeless {
            match free.pop() {
                Some(f) if f >= m => free.push(f - m),
                _ => return false,
            }
        }
        true
    }

    fn dpm(&mut self) {
        for pi in 0..self.snap.pools.len() {
            if self.snap.pools[pi].params.mode == PolicyMode::Dpm {
                self.dpm_pool(pi);
            }
        }
    }

    fn dpm_pool(&mut self, pi: usize) {
        let snap = self.snap;
        let pool = &snap.pools[pi];
        let p = &pool.params;
        let up = |pl: &Self, s: u32| {
            let srv = &pl.srv[s as usize];
            srv.power == Power::Up && !srv.maintenance
        };
        let load: f64 =
            pool.servers.iter().filter(|s| up(self, **s)).map(|s| self.srv[*s as usize].cpu).sum();
        let cap = |pl: &Self| -> f64 {
            pool.servers
                .iter()
                .filter(|s| up(pl, **s) && !pl.leaving[**s as usize])
                .map(|s| pl.srv[*s as usize].cpus)
                .sum()
        };
        let running = cap(self);
        let booting: Vec<u32> =
            pool.servers.iter().copied().filter(|s| self.srv[*s as usize].power == Power::Booting).collect();
        let booting_cap: f64 = booting.iter().map(|s| self.srv[*s as usize].cpus).sum();
        let stuck: Option<ServerId> = self
            .plan
            .unrelieved
            .iter()
            .find(|u| {
                u.blocked == Blocked::NoRoom
                    && pool.servers.iter().any(|s| self.srv[*s as usize].id == u.server)
            })
            .map(|u| u.server);
        let (needed, free) = self.ha(pi, &[]);
        let pool_share = if running > 0.0 { load / running } else { f64::INFINITY };
        let trigger = if let Some(server) = stuck {
            Some(Reason::Overloaded { server })
        } else if needed > free || !self.ha_restartable(pi, &[]) {
            Some(Reason::HaReserve { needed_mib: needed, free_mib: free })
        } else if pool_share > p.target_ceiling() && load > 0.0 {
            Some(Reason::PoolHot { pool_percent: 100.0 * pool_share })
        } else {
            None
        };
        if let Some(reason) = trigger {
            let mut off: Vec<u32> = pool
                .servers
                .iter()
                .copied()
                .filter(|s| {
                    let srv = &self.srv[*s as usize];
                    srv.power == Power::Off && srv.power_controlled && !srv.maintenance
                })
                .collect();
            off.sort_by(|a, b| {
                let (sa, sb) = (&self.srv[*a as usize], &self.srv[*b as usize]);
                sb.cpus.partial_cmp(&sa.cpus).unwrap_or(Ordering::Equal).then(a.cmp(b))
            });
            let mut on: Vec<u32> = Vec::new();
            for s in off {
                let coming = booting_cap + on.iter().map(|s| self.srv[*s as usize].cpus).sum::<f64>();
                let (needed, free) = self.ha(pi, &on);
                let short = load > p.pack_ceiling() * (running + coming)
                    || needed > free
                    || !self.ha_restartable(pi, &on)
                    || (stuck.is_some() && booting.is_empty() && on.is_empty());
                if !short {
                    break;
                }
                on.push(s);
                self.plan
                    .actions
                    .push(Action::PowerOn { server: self.srv[s as usize].id, reason: reason.clone() });
            }
            return;
        }
        // Consolidate: servers already draining first, then the least-loaded under-used ones.
        let hold = p.power_on_hold_ms;
        let mut cands: Vec<(bool, u64, u32)> = pool
            .servers
            .iter()
            .copied()
            .filter(|s| {
                let srv = &self.srv[*s as usize];
                up(self, *s)
                    && srv.power_controlled
                    && (srv.draining || (srv.in_flight == 0 && srv.cpu < p.underused * srv.cpus))
                    && srv.last_power_on.is_none_or(|t| t.saturating_add(hold) <= self.snap.now)
            })
            .map(|s| (!self.srv[s as usize].draining, key(&self.srv[s as usize]), s))
            .collect();
        cands.sort_unstable();
        let mut running = running;
        let min_up = self.snap.ha_reserve as usize + 1;
        let mut up_count =
            pool.servers.iter().filter(|s| up(self, **s) && !self.leaving[**s as usize]).count();
        for (fresh, _, c) in cands {
            let srv = &self.srv[c as usize];
            // A VM that cannot move now keeps the server on, unless it is migrating away from a
            // server already draining.
            if srv
                .vms
                .iter()
                .any(|v| !(self.movable(*v) || srv.draining && self.snap.vms[*v as usize].in_flight))
            {
                continue;
            }
            if fresh {
                let after = running - srv.cpus;
                if up_count <= min_up || after <= 0.0 || load > p.pack_ceiling() * after {
                    continue;
                }
                if !srv.vms.is_empty() && (!self.global_room() || !self.server_room(c)) {
                    continue;
                }
            }
            let share = 100.0 * srv.cpu / srv.cpus;
            let was_leaving = self.leaving[c as usize];
            self.unindex(c);
            self.leaving[c as usize] = true;
            if fresh {
                let (needed, free) = self.ha(pi, &[]);
                if needed > free || !self.ha_restartable(pi, &[]) {
                    self.leaving[c as usize] = was_leaving;
                    self.reindex(c);
                    continue;
                }
            }
            let mark = self.plan.actions.len();
            let mut vms: Vec<u32> =
                self.srv[c as usize].vms.iter().copied().filter(|v| self.movable(*v)).collect();
            vms.sort_by(|a, b| {
                let (x, y) = (&self.snap.vms[*a as usize], &self.snap.vms[*b as usize]);
                y.memory_mib.cmp(&x.memory_mib).then(a.cmp(b))
            });
            let mut done: Vec<(u32, u32)> = Vec::new();
            let mut outcome = Ok(());
            for v in vms {
                if !self.global_room() || !self.server_room(c) {
                    outcome = Err(Blocked::MigrationLimit);
                    break;
                }
                match self.find_target(v, Fit::Pack, true) {
                    Some(t) => {
                        self.migrate(v, t, Reason::Consolidate { server_percent: share });
                        done.push((v, t));
                    }
                    None if self.find_target(v, Fit::Pack, false).is_some() => {
                        outcome = Err(Blocked::MigrationLimit);
                        break;
                    }
                    None => {
                        outcome = Err(Blocked::NoRoom);
                        break;
                    }
                }
            }
            // A server the limits stop before its first move is not started.
            let nothing_started = fresh && done.is_empty();
            // Nor one whose VMs, once moved, would leave the pool unable to restart those of its
            // worst failures.
            let outcome = match outcome {
                Ok(()) | Err(Blocked::MigrationLimit) if fresh && !self.ha_restartable(pi, &[]) => {
                    Err(Blocked::NoRoom)
                }
                o => o,
            };
            match outcome {
                Err(Blocked::NoRoom) | Err(Blocked::NothingMovable) => self.abandon(c, done, mark),
                Err(Blocked::MigrationLimit) if nothing_started => self.abandon(c, done, mark),
                Err(Blocked::MigrationLimit) => {
                    if fresh {
                        running -= self.srv[c as usize].cpus;
                        up_count -= 1;
                    }
                    self.plan.draining.push(self.srv[c as usize].id);
                }
                Ok(()) if !self.srv[c as usize].vms.is_empty() => {
                    // VMs migrating away still: wait for them.
                    if fresh {
                        running -= self.srv[c as usize].cpus;
                        up_count -= 1;
                    }
                    self.plan.draining.push(self.srv[c as usize].id);
                }
                Ok(()) => {
                    if fresh {
                        running -= self.srv[c as usize].cpus;
                        up_count -= 1;
                    }
                    let after = if running > 0.0 { 100.0 * load / running } else { 0.0 };
                    self.srv[c as usize].power = Power::Out;
                    self.plan.actions.push(Action::PowerOff {
                        server: self.srv[c as usize].id,
                        reason: Reason::Underused { server_percent: share, pool_percent_after: after },
                    });
                }
            }
        }
    }
}

impl Planner<'_> {
    /// Give up emptying `c`: undo its moves in this plan; it takes VMs again.
    fn abandon(&mut self, c: u32, done: Vec<(u32, u32)>, mark: usize) {
        for (v, t) in done.into_iter().rev() {
            self.shift(v, t, c, true);
        }
        self.plan.actions.truncate(mark);
        self.leaving[c as usize] = false;
        self.srv[c as usize].draining = false;
        self.reindex(c);
    }
}

/// The peer DRS planner for benchmarks and cross-checks: the same rules, no index, no
/// incremental state. Each step re-sums every server's load from every VM, then tries every
/// movable VM of the most overloaded server against every server of its pool.
pub fn plan_drs_naive(snap: &LoadSnapshot) -> Plan {
    let mut plan = Plan::default();
    let n_srv = snap.servers.len();
    let mut vm_server: Vec<u32> = snap.vms.iter().map(|v| v.server).collect();
    let mut moved = vec![false; snap.vms.len()];
    let mut given_up = vec![false; n_srv];
    let mut planned = vec![0u32; n_srv];
    let mut planned_total = 0u32;
    // What is not the VMs' (dom0, unattributed load) stays with each server.
    let mut base_cpu: Vec<f64> = snap.servers.iter().map(|s| s.cpu).collect();
    let mut base_net: Vec<Vec<f64>> = snap.servers.iter().map(|s| s.net.clone()).collect();
    for v in &snap.vms {
        base_cpu[v.server as usize] -= v.cpu;
        for (k, m) in v.net.iter().enumerate() {
            base_net[v.server as usize][k] -= m;
        }
    }
    loop {
        let mut cpu = base_cpu.clone();
        let mut net = base_net.clone();
        let mut mem = vec![0u64; n_srv];
        for (i, v) in snap.vms.iter().enumerate() {
            let s = vm_server[i] as usize;
            cpu[s] += v.cpu;
            mem[s] += v.memory_mib;
            for (k, m) in v.net.iter().enumerate() {
                net[s][k] += m;
            }
        }
        let over = |s: usize| -> Option<(Option<usize>, f64)> {
            let srv = &snap.servers[s];
            let p = &snap.pools[srv.pool as usize].params;
            let mut worst = None;
            let c = cpu[s] / srv.cpus;
            if c > p.cpu_threshold {
                worst = Some((None, c / p.cpu_threshold));
            }
            for (k, (_, t)) in p.networks.iter().enumerate() {
                if srv.net_cap[k] > 0.0 {
                    let share = net[s][k] / srv.net_cap[k];
                    if share > *t && worst.is_none_or(|(_, w)| share / t > w) {
                        worst = Some((Some(k), share / t));
                    }
                }
            }
            worst
        };
        let mut worst: Option<(usize, Option<usize>, f64)> = None;
        for (s, srv) in snap.servers.iter().enumerate() {
            let p = &snap.pools[srv.pool as usize].params;
            if given_up[s] || srv.power != Power::Up || srv.maintenance || p.mode == PolicyMode::Off {
                continue;
            }
            if let Some((r, sev)) = over(s) {
                if worst.is_none_or(|w| sev > w.2) {
                    worst = Some((s, r, sev));
                }
            }
        }
        let Some((s, res, _)) = worst else { break };
        let srv = &snap.servers[s];
        let p = &snap.pools[srv.pool as usize].params;
        if snap.in_flight_total + planned_total >= snap.limits.total
            || srv.in_flight + planned[s] >= snap.limits.per_server
        {
            given_up[s] = true;
            continue;
        }
        let ceiling = p.target_ceiling();
        let mut best: Option<(f64, usize, usize)> = None;
        for (v, vm) in snap.vms.iter().enumerate() {
            if vm_server[v] as usize != s || !vm.movable || moved[v] {
                continue;
            }
            let load = match res {
                None => vm.cpu,
                Some(k) => vm.net[k],
            };
            if load <= 0.0 {
                continue;
            }
            for (t, ts) in snap.servers.iter().enumerate() {
                if t == s || ts.pool != srv.pool || !ts.takes_vms() {
                    continue;
                }
                let fits = ts.guest_mib >= vm.max_memory_mib
                    && ts.guest_mib.saturating_sub(mem[t]) >= vm.memory_mib
                    && cpu[t] + vm.cpu <= ceiling * ts.cpus
                    && vm.net.iter().enumerate().all(|(k, m)| {
                        *m <= 0.0
                            || (ts.net_cap[k] > 0.0 && net[t][k] + m <= p.net_ceiling(k) * ts.net_cap[k])
                    })
                    && vm.group.is_none_or(|g| {
                        snap.groups[g as usize]
                            .iter()
                            .all(|o| *o as usize == v || vm_server[*o as usize] as usize != t)
                    })
                    && ts.in_flight + planned[t] < snap.limits.per_server;
                if !fits {
                    continue;
                }
                // Prefer the busiest VM, then the least-loaded target.
                let score = -load * 1e6 + cpu[t] / ts.cpus;
                if best.is_none_or(|b| score < b.0) {
                    best = Some((score, v, t));
                }
            }
        }
        let Some((_, v, t)) = best else {
            given_up[s] = true;
            continue;
        };
        vm_server[v] = t as u32;
        moved[v] = true;
        planned[s] += 1;
        planned[t] += 1;
        planned_total += 1;
        plan.actions.push(Action::Migrate {
            vm: snap.vms[v].id,
            from: srv.id,
            to: snap.servers[t].id,
            reason: Reason::CpuOverThreshold {
                percent: 100.0 * cpu[s] / srv.cpus,
                threshold_percent: 100.0 * p.cpu_threshold,
            },
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::policy::load::{LoadInputs, MigrationLimits, VmSample};

    struct Fix {
        inv: Inventory,
        pool: PoolId,
        servers: Vec<ServerId>,
        inputs: LoadInputs,
        params: PolicyParams,
    }

    /// A pool of `n` servers of 8 CPUs and 16 GiB for guests, all power-controlled, no HA reserve.
    fn fixture(n: usize, mode: PolicyMode) -> Fix {
        let mut inv = Inventory::new();
        let mut pool = ServerPool::new("pool");
        pool.policy.mode = mode;
        pool.policy.period_secs = 60;
        let mut servers = Vec::new();
        for i in 0..n {
            let s = Server {
                id: ServerId::new(),
                name: format!("s{i}"),
                description: String::new(),
                address: format!("sim://s{i}"),
                hardware: HostHardware {
                    cpus: 8,
                    memory_mib: 16384,
                    xen_version: "4.17".into(),
                    ports: vec![],
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
                ports: vec![],
                wol_mac: None,
                out_of_band: None,
                dom0_memory_mib: 0,
            };
            servers.push(s.id);
            inv.load(Object::Server(s));
        }
        pool.servers = servers.clone();
        let params = PolicyParams::of_pool(&pool);
        let pid = pool.id;
        inv.load(Object::ServerPool(pool));
        let inputs = LoadInputs {
            now: 1_000_000,
            power_controlled: servers.iter().copied().collect(),
            migration_limit: MigrationLimits { per_server: 4, total: 16 },
            ..LoadInputs::default()
        };
        Fix { inv, pool: pid, servers, inputs, params }
    }

    fn vm(f: &mut Fix, on: usize, memory_mib: u64, cpu: f64) -> VmId {
        let n = f.inv.vms.len();
        let v = Vm {
            id: VmId::new(),
            name: format!("vm{n:03}"),
            description: String::new(),
            config: VmConfig { memory_mib, max_memory_mib: memory_mib, ..VmConfig::default() },
            repository: None,
            pool: Some(f.pool),
            server: Some(f.servers[on]),
            power_state: PowerState::Running,
            domid: None,
            anti_affinity_group: None,
        };
        let id = v.id;
        f.inv.load(Object::Vm(v));
        f.inputs.vms.insert(id, VmSample { cpu, network_mbps: vec![] });
        id
    }

    fn edit_server(f: &mut Fix, i: usize, edit: impl FnOnce(&mut Server)) {
        let mut s = (**f.inv.get::<Server>(f.servers[i]).unwrap()).clone();
        edit(&mut s);
        f.inv.load(Object::Server(s));
    }

    fn snap(f: &Fix) -> LoadSnapshot {
        LoadSnapshot::build_with(&f.inv, &[(f.pool, f.params.clone())], &f.inputs).unwrap()
    }

    fn moves(p: &Plan) -> Vec<(VmId, ServerId, ServerId)> {
        p.migrations().map(|(v, a, b, _)| (v, a, b)).collect()
    }

    /// Execute a plan's migrations on the fixture, as the manager would, at `f.inputs.now`.
    fn apply(f: &mut Fix, p: &Plan) {
        for (v, _, to) in moves(p) {
            let mut vm = (**f.inv.get::<Vm>(v).unwrap()).clone();
            vm.server = Some(to);
            f.inv.load(Object::Vm(vm));
            f.inputs.last_vm_move.insert(v, f.inputs.now);
        }
    }

    #[test]
    fn an_overloaded_server_sheds_the_smallest_relieving_vm_to_the_idlest_server() {
        let mut f = fixture(3, PolicyMode::Drs);
        let _big = vm(&mut f, 0, 1024, 3.0);
        let small = vm(&mut f, 0, 1024, 2.0);
        let _other = vm(&mut f, 0, 1024, 2.0);
        vm(&mut f, 1, 1024, 1.0);
        let p = plan(&snap(&f));
        let m = moves(&p);
        assert_eq!(m, vec![(small, f.servers[0], f.servers[2])], "{p:#?}");
        assert!(matches!(
            p.migrations().next().unwrap().3,
            Reason::CpuOverThreshold { percent, threshold_percent } if *percent == 87.5 && *threshold_percent == 80.0
        ));
        assert!(p.unrelieved.is_empty());
        assert!(p.powered_off().is_empty() && p.powered_on().is_empty(), "DRS does not power");
    }

    #[test]
    fn off_does_nothing_and_a_server_under_its_threshold_keeps_its_vms() {
        let mut f = fixture(2, PolicyMode::Off);
        vm(&mut f, 0, 1024, 7.5);
        assert_eq!(plan(&snap(&f)), Plan::default());
        let mut f = fixture(2, PolicyMode::Drs);
        vm(&mut f, 0, 1024, 6.0);
        assert_eq!(plan(&snap(&f)), Plan::default(), "75% is under 80%");
    }

    #[test]
    fn a_network_over_its_threshold_sheds_the_vm_carrying_the_traffic() {
        let mut f = fixture(2, PolicyMode::Drs);
        let net = NetworkId::new();
        f.params.networks = vec![(net, 0.5)];
        let quiet = vm(&mut f, 0, 1024, 1.0);
        let loud = vm(&mut f, 0, 1024, 0.5);
        f.inputs.vms.get_mut(&loud).unwrap().network_mbps = vec![(net, 300.0)];
        f.inputs.vms.get_mut(&quiet).unwrap().network_mbps = vec![(net, 10.0)];
        // dom0's own traffic (storage, say) counts on the server, not on any VM.
        f.inputs.servers.insert(
            f.servers[0],
            crate::policy::load::ServerSample { cpu_util: 1.5 / 8.0, network_mbps: vec![(net, 560.0)] },
        );
        // Both servers have a 1 Gbit/s port on the network.
        let mut network = Network {
            id: net,
            name: "vm".into(),
            description: String::new(),
            functions: [NetworkFunction::VirtualMachine].into_iter().collect(),
            members: vec![],
            bridge: "xenbr1".into(),
            mtu: 1500,
        };
        for i in 0..2 {
            let port = Port {
                id: PortId::new(),
                name: format!("s{i}:eth1"),
                description: String::new(),
                server: f.servers[i],
                interface: "eth1".into(),
                mac: "00:10:e0:00:00:01".into(),
                addressing: Addressing::None,
                bond: None,
            };
            network.members.push(NetworkMember::Port(port.id));
            edit_server(&mut f, i, |s| {
                let mut e = EthernetPort::new("eth1", "00:10:e0:00:00:01");
                e.speed_mbps = Some(1000);
                s.hardware.ports.push(e);
            });
            f.inv.load(Object::Port(port));
        }
        f.inv.load(Object::Network(network));
        let p = plan(&snap(&f));
        assert_eq!(moves(&p), vec![(loud, f.servers[0], f.servers[1])]);
        assert!(matches!(
            p.migrations().next().unwrap().3,
            Reason::NetworkOverThreshold { network, percent, .. } if *network == net && (*percent - 56.0).abs() < 1e-9
        ));
    }

    #[test]
    fn anti_affinity_and_maintenance_keep_targets_out() {
        let mut f = fixture(4, PolicyMode::Drs);
        let a = vm(&mut f, 0, 1024, 2.0);
        vm(&mut f, 0, 1024, 5.0);
        f.inputs.last_vm_move.insert(*f.inputs.vms.keys().find(|v| **v != a).unwrap(), f.inputs.now);
        let b = vm(&mut f, 1, 1024, 0.0);
        vm(&mut f, 3, 1024, 3.0);
        let g = AntiAffinityGroup {
            id: AntiAffinityGroupId::new(),
            name: "g".into(),
            description: String::new(),
            pool: f.pool,
            vms: vec![a, b],
        };
        let gid = g.id;
        f.inv.load(Object::AntiAffinityGroup(g));
        for v in [a, b] {
            let mut x = (**f.inv.get::<Vm>(v).unwrap()).clone();
            x.anti_affinity_group = Some(gid);
            f.inv.load(Object::Vm(x));
        }
        edit_server(&mut f, 2, |s| s.maintenance_mode = true);
        // s1 is idle but runs b of a's group; s2 is idle but in maintenance; s3 is left.
        let p = plan(&snap(&f));
        assert_eq!(moves(&p), vec![(a, f.servers[0], f.servers[3])], "{p:#?}");
        // With s3 gone too, nothing may take a: the server stays overloaded for want of room.
        edit_server(&mut f, 3, |s| s.maintenance_mode = true);
        let p = plan(&snap(&f));
        assert!(moves(&p).is_empty());
        assert_eq!(p.unrelieved.len(), 1);
        assert_eq!(p.unrelieved[0].blocked, Blocked::NoRoom);
    }

    #[test]
    fn hysteresis_no_ping_pong_over_two_ticks() {
        let mut f = fixture(2, PolicyMode::Drs);
        vm(&mut f, 0, 1024, 3.5);
        vm(&mut f, 0, 1024, 3.5);
        vm(&mut f, 1, 1024, 0.5);
        vm(&mut f, 1, 1024, 1.0);
        let first = plan(&snap(&f));
        assert_eq!(moves(&first).len(), 1, "{first:#?}");
        apply(&mut f, &first);
        // One period later with the same loads: s0 at 3.5/8, s1 at 5/8; nothing moves.
        f.inputs.now += 60_000;
        let second = plan(&snap(&f));
        assert_eq!(second, Plan::default(), "the moved VM stays, nothing comes back");
        // The moved VM grows and puts s1 over its threshold: it is held, so another VM goes.
        let back = moves(&first)[0].0;
        f.inputs.vms.get_mut(&back).unwrap().cpu = 5.0;
        let third = plan(&snap(&f));
        assert_eq!(third.migrations().count(), 1, "{third:#?}");
        assert!(third.migrations().all(|(v, ..)| v != back), "{third:#?}");
        // Without the hold, every move still leaves its target at most 70%: a move never
        // overloads its target, so it never has to come back.
        f.params.vm_hold_ms = 0;
        let s = snap(&f);
        for (v, _, to, _) in plan(&s).migrations() {
            assert!(s.cpu_percent(to).unwrap() + 100.0 * f.inputs.vms[&v].cpu / 8.0 <= 70.0);
        }
    }

    #[test]
    fn dpm_empties_the_least_loaded_server_then_powers_it_off() {
        let mut f = fixture(3, PolicyMode::Dpm);
        vm(&mut f, 0, 2048, 3.0);
        vm(&mut f, 1, 2048, 2.5);
        let last = vm(&mut f, 2, 2048, 0.5);
        let p = plan(&snap(&f));
        assert_eq!(
            p.actions,
            vec![
                Action::Migrate {
                    vm: last,
                    from: f.servers[2],
                    to: f.servers[0],
                    reason: Reason::Consolidate { server_percent: 6.25 }
                },
                Action::PowerOff {
                    server: f.servers[2],
                    reason: Reason::Underused { server_percent: 6.25, pool_percent_after: 37.5 }
                },
            ],
            "to the busiest server it fits (best fit), power-off after the move"
        );
        // s1 is under-used too, but the pool without it would run above 60%.
        assert!(p.draining.is_empty());
    }

    #[test]
    fn dpm_keeps_the_ha_reserve() {
        let mut f = fixture(3, PolicyMode::Dpm);
        vm(&mut f, 0, 8192, 1.0);
        vm(&mut f, 1, 8192, 1.0);
        vm(&mut f, 2, 4096, 0.5);
        // Without s2: 32 GiB for 20 GiB used, 12 GiB free < 16 GiB (one server) needed.
        f.inputs.ha_reserve = 1;
        let p = plan(&snap(&f));
        assert!(p.actions.is_empty(), "{p:#?}");
        f.inputs.ha_reserve = 0;
        let p = plan(&snap(&f));
        assert_eq!(p.powered_off(), vec![f.servers[2]]);
        // A pool short of its reserve powers a server on.
        let mut f = fixture(3, PolicyMode::Dpm);
        vm(&mut f, 0, 12288, 1.0);
        vm(&mut f, 1, 12288, 1.0);
        edit_server(&mut f, 2, |s| s.power_state = ServerPowerState::Stopped);
        f.inputs.ha_reserve = 1;
        let p = plan(&snap(&f));
        assert_eq!(p.powered_on(), vec![f.servers[2]]);
        assert!(matches!(
            p.actions[0],
            Action::PowerOn { reason: Reason::HaReserve { needed_mib: 16384, free_mib: 8192 }, .. }
        ));
    }

    /// Free memory in pieces too small for the VMs of a failed server does not count as the HA
    /// reserve: the failure's 10 GiB VM would fit nowhere though 23 GiB are free in all.
    #[test]
    fn dpm_keeps_an_ha_reserve_each_vm_fits_in() {
        let mut f = fixture(5, PolicyMode::Dpm);
        for i in 0..4 {
            vm(&mut f, i, 10240, 1.0);
        }
        vm(&mut f, 4, 1024, 0.1);
        f.inputs.ha_reserve = 1;
        let p = plan(&snap(&f));
        assert!(p.actions.is_empty(), "{p:#?}");
        f.inputs.ha_reserve = 0;
        let p = plan(&snap(&f));
        assert_eq!(p.powered_off(), vec![f.servers[4]]);
        // With the fifth server off, the pool powers it on for the reserve.
        let mut f = fixture(5, PolicyMode::Dpm);
        for i in 0..4 {
            vm(&mut f, i, 10240, 1.0);
        }
        edit_server(&mut f, 4, |s| s.power_state = ServerPowerState::Stopped);
        f.inputs.ha_reserve = 1;
        let p = plan(&snap(&f));
        assert_eq!(p.powered_on(), vec![f.servers[4]]);
        assert!(matches!(
            p.actions[0],
            Action::PowerOn { reason: Reason::HaReserve { needed_mib: 16384, free_mib: 24576 }, .. }
        ));
    }

    #[test]
    fn dpm_powers_a_server_on_when_the_pool_runs_hot() {
        let mut f = fixture(5, PolicyMode::Dpm);
        vm(&mut f, 0, 1024, 6.6);
        vm(&mut f, 0, 1024, 0.5);
        vm(&mut f, 1, 1024, 6.6);
        vm(&mut f, 1, 1024, 0.5);
        for i in 2..5 {
            edit_server(&mut f, i, |s| s.power_state = ServerPowerState::Stopped);
        }
        f.inputs.power_controlled.remove(&f.servers[2]);
        let p = plan(&snap(&f));
        // 14.2 CPUs busy: one more server of 8 brings the pool to 59%, under the 60% DPM packs to.
        assert_eq!(p.powered_on(), vec![f.servers[3]], "one power-controlled server: {p:#?}");
        assert!(matches!(&p.actions[0], Action::PowerOn { reason: Reason::Overloaded { .. }, .. }));
        assert!(p.unrelieved.iter().all(|u| u.blocked == Blocked::NoRoom));
        // While it boots, no second one is asked for.
        f.inputs.booting.insert(f.servers[3]);
        let p = plan(&snap(&f));
        assert!(p.powered_on().is_empty(), "{p:#?}");
        // A server powered on recently is not powered off, however idle: DPM consolidates onto
        // it instead.
        let mut f = fixture(3, PolicyMode::Dpm);
        vm(&mut f, 0, 1024, 3.0);
        vm(&mut f, 1, 1024, 3.0);
        f.inputs.last_power_on.insert(f.servers[2], f.inputs.now - 60_000);
        let p = plan(&snap(&f));
        assert_eq!(p.powered_off(), vec![f.servers[0]], "{p:#?}");
        assert_eq!(moves(&p)[0].2, f.servers[2]);
        f.inputs.last_power_on.insert(f.servers[2], f.inputs.now - f.params.power_on_hold_ms);
        assert_eq!(plan(&snap(&f)).powered_off(), vec![f.servers[2]]);
    }

    #[test]
    fn migration_limits_are_respected() {
        let mut f = fixture(8, PolicyMode::Drs);
        for s in 0..4 {
            for _ in 0..4 {
                vm(&mut f, s, 1024, 1.8);
            }
        }
        f.inputs.migration_limit = MigrationLimits { per_server: 1, total: 3 };
        f.inputs.migrations_in_flight.push(crate::policy::load::InFlight {
            vm: VmId::new(),
            from: f.servers[0],
            to: f.servers[4],
        });
        let p = plan(&snap(&f));
        let m = moves(&p);
        assert_eq!(m.len(), 2, "3 in all, one in flight: {p:#?}");
        for s in &f.servers {
            let n = m.iter().filter(|(_, a, b)| a == s || b == s).count();
            let busy = usize::from(*s == f.servers[0] || *s == f.servers[4]);
            assert!(n + busy <= 1, "one migration per server");
        }
        assert!(m.iter().all(|(_, a, b)| *a != f.servers[0] && *b != f.servers[4]));
        assert_eq!(p.unrelieved.iter().filter(|u| u.blocked == Blocked::MigrationLimit).count(), 2);
    }

    #[test]
    fn a_server_the_limits_cut_short_drains_over_several_plans() {
        let mut f = fixture(3, PolicyMode::Dpm);
        vm(&mut f, 0, 1024, 3.0);
        vm(&mut f, 1, 1024, 3.0);
        for _ in 0..3 {
            vm(&mut f, 2, 1024, 0.2);
        }
        f.inputs.migration_limit = MigrationLimits { per_server: 2, total: 16 };
        let p = plan(&snap(&f));
        assert_eq!(moves(&p).len(), 2);
        assert!(p.powered_off().is_empty(), "not before its last VM has a move");
        assert_eq!(p.draining, vec![f.servers[2]]);
        apply(&mut f, &p);
        f.inputs.draining = p.draining.iter().copied().collect();
        f.inputs.now += 60_000;
        let p = plan(&snap(&f));
        assert_eq!(moves(&p).len(), 1);
        assert_eq!(p.powered_off(), vec![f.servers[2]]);
        assert!(moves(&p).iter().all(|(_, from, _)| *from == f.servers[2]));
    }

    #[test]
    fn the_naive_peer_relieves_the_same_servers() {
        let mut f = fixture(6, PolicyMode::Drs);
        for s in 0..3 {
            vm(&mut f, s, 1024, 4.0);
            vm(&mut f, s, 1024, 3.0);
        }
        let s = snap(&f);
        let (fast, naive) = (plan_drs(&s), plan_drs_naive(&s));
        let sources = |p: &Plan| {
            let mut v: Vec<ServerId> = p.migrations().map(|m| m.1).collect();
            v.sort();
            v
        };
        assert_eq!(sources(&fast), sources(&naive));
        assert_eq!(fast.migrations().count(), 3);
    }
}
