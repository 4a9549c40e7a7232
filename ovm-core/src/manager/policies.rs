//! DRS and DPM at work: the pure planners of [`crate::policy::balance`] fed with the loads the
//! manager sampled ([`super::loads`]), as a dry run ([`Manager::policy_plan`]) or as a job that
//! carries the plan out ([`Manager::run_policy`]): live migrations as child jobs within the
//! migration limit, then the servers DPM emptied powered off, and servers powered on by
//! Wake-on-LAN when the pool runs hot. Every action is an event with its reason. Each pool whose
//! policy is not Off runs once per policy period on its own (the recurring scheduler).
//!
//! What the planners remember between runs lives here, in memory: when each VM was last moved by a
//! policy and each server last powered on (the hysteresis holds), and the servers DPM started
//! emptying. After a restart it starts afresh, which at worst lets one VM move one period early.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::manager::jobs::JobSpec;
use crate::manager::{lock, JobHandle, Manager};
use crate::model::*;
use crate::policy::balance::{self, Action, Plan, Reason};
use crate::policy::load::{LoadInputs, LoadSnapshot, MigrationLimits, ServerSample, VmSample};
use crate::{Error, Result};

/// What the policies remember between runs.
#[derive(Debug, Default)]
pub(crate) struct PolicyMemory {
    last_vm_move: HashMap<VmId, Timestamp>,
    last_power_on: HashMap<ServerId, Timestamp>,
    draining: HashSet<ServerId>,
    booting: HashSet<ServerId>,
    /// When a policy last moved a VM from or to each server: its loads from before do not count.
    server_changed: HashMap<ServerId, Timestamp>,
    /// When each pool's policy last ran (the scheduler runs it once per period).
    last_run: HashMap<PoolId, Instant>,
}

/// The text of a reason, for events and messages.
pub fn describe_reason(r: &Reason, name: impl Fn(ServerId) -> String) -> String {
    match r {
        Reason::CpuOverThreshold { percent, threshold_percent } => {
            format!("CPU {percent:.0}% is over the {threshold_percent:.0}% threshold")
        }
        Reason::NetworkOverThreshold { network, percent, threshold_percent } => {
            format!("network {network} at {percent:.0}% of its link is over the {threshold_percent:.0}% threshold")
        }
        Reason::Consolidate { server_percent } => {
            format!("under-used at {server_percent:.0}% CPU: emptied to be powered off")
        }
        Reason::Underused { server_percent, pool_percent_after } => format!(
            "under-used at {server_percent:.0}% CPU; the pool runs at {pool_percent_after:.0}% without it"
        ),
        Reason::PoolHot { pool_percent } => format!("the pool runs hot at {pool_percent:.0}% CPU"),
        Reason::Overloaded { server } => format!("no room to relieve server {}", name(*server)),
        Reason::HaReserve { needed_mib, free_mib } if needed_mib > free_mib => {
            format!("the HA reserve needs {needed_mib} MiB free, the running servers have {free_mib} MiB")
        }
        Reason::HaReserve { free_mib, .. } => format!(
            "the VMs of the HA reserve's failures would not each find room: the running servers' {free_mib} MiB \
             free are in pieces too small"
        ),
    }
}

impl Manager {
    /// The plan DRS/DPM would carry out for `pool` now, from the loads sampled over its policy
    /// period: nothing changes (a dry run). A pool whose policy is Off plans nothing.
    pub fn policy_plan(&self, pool: PoolId) -> Result<Plan> {
        let p = self.get::<ServerPool>(pool)?;
        let inputs = self.policy_inputs(&p)?;
        let st = self.state();
        let snap = LoadSnapshot::build(&st.inv, &[pool], &inputs)?;
        drop(st);
        Ok(balance::plan(&snap))
    }

    /// Run `pool`'s policy now: plan as [`Manager::policy_plan`] does, then carry the plan out in
    /// a job — the migrations at once as child jobs (each waits for its migration slots), then
    /// each server DPM emptied powered off once its VMs have all gone, then the servers to power
    /// on. Each action is an event (`policy.migrate`, `policy.power_off`, `policy.power_on`,
    /// `policy.unrelieved`) naming its reason. An action that fails does not stop the others;
    /// the job then fails naming them.
    pub fn run_policy(&self, pool: PoolId) -> Result<JobHandle> {
        let p = self.get::<ServerPool>(pool)?;
        lock(&self.inner.policy).last_run.insert(pool, Instant::now());
        let spec = JobSpec::new(
            "RunPolicy",
            &format!("Run the {:?} policy of pool {}", p.policy.mode, p.name),
            vec![p.object_ref()],
        )
        .step("plan and carry out", move |ctx| {
            let plan = ctx.mgr.policy_plan(pool)?;
            ctx.mgr.carry_out(ctx, pool, plan)
        });
        self.submit(spec)
    }

    /// The pools whose policy is due (not Off, a period since it last ran); marks them run.
    pub(crate) fn policies_due(&self) -> Vec<PoolId> {
        let pools: Vec<(PoolId, Duration)> = self
            .list::<ServerPool>(|p| p.policy.mode != PolicyMode::Off)
            .iter()
            .map(|p| (p.id, Duration::from_secs(u64::from(p.policy.period_secs))))
            .collect();
        let mut mem = lock(&self.inner.policy);
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, period) in pools {
            let last = *mem.last_run.entry(id).or_insert(now);
            if now.duration_since(last) >= period {
                mem.last_run.insert(id, now);
                due.push(id);
            }
        }
        due
    }

    /// What the planners read besides the inventory: each member's load averaged over the policy
    /// period (CPU, and the traffic of its member of each watched network), each VM's CPU, and
    /// what the policies remember.
    fn policy_inputs(&self, pool: &ServerPool) -> Result<LoadInputs> {
        let now = self.now();
        let since: Timestamp = now.saturating_sub(u64::from(pool.policy.period_secs) * 1000);
        let mut inputs = LoadInputs {
            now,
            migration_limit: MigrationLimits {
                per_server: self.migration_limit(),
                ..MigrationLimits::default()
            },
            ..LoadInputs::default()
        };
        let watched: Vec<NetworkId> = pool.policy.networks.iter().map(|(n, _)| *n).collect();
        let reachable: HashSet<ServerId> = lock(&self.inner.state).conns.keys().copied().collect();
        let changed = lock(&self.inner.policy).server_changed.clone();
        for sid in &pool.servers {
            let s = self.server(*sid)?;
            let history = self.server_load_history(*sid, LoadResolution::Raw)?;
            // Only what was measured since the server's VMs last changed: the average of a period
            // that saw a VM leave would still count it.
            let since = changed.get(sid).map_or(since, |t| since.max(t + 1));
            match ServerSample::cpu_mean(&history, since) {
                Some(mut sample) => {
                    for n in &watched {
                        if let Some(iface) = self.member_interface(*n, *sid) {
                            sample.network_mbps.push((*n, mean_mbps(&history, since, &iface)));
                        }
                    }
                    inputs.servers.insert(*sid, sample);
                }
                // No load measured in the period: the policies leave the server alone rather than
                // take it for idle.
                None if s.power_state == ServerPowerState::Running => {
                    inputs.excluded.insert(*sid);
                }
                None => {}
            }
            let vms: HashMap<VmId, VmSample> = VmSample::cpu_means(&history, since);
            inputs.vms.extend(vms);
            if s.power_state == ServerPowerState::Running && !reachable.contains(sid) {
                inputs.unreachable.insert(*sid);
            }
            // DPM powers off and on only servers it can wake again: by Wake-on-LAN or through
            // their management controller.
            let out_of_band =
                s.out_of_band.as_ref().is_some_and(|o| self.power_controller(&o.controller).is_ok());
            if s.wol_mac.is_some() || out_of_band {
                inputs.power_controlled.insert(*sid);
            }
        }
        // A pool with HA-enabled VMs keeps room for their restart after as many simultaneous
        // server failures as it is set to tolerate.
        let ha_vms = self.list::<Vm>(|v| v.pool == Some(pool.id) && v.config.high_availability).len();
        inputs.ha_reserve = if ha_vms > 0 { pool.ha_failures_to_tolerate } else { 0 };
        let mem = lock(&self.inner.policy);
        inputs.last_vm_move = mem.last_vm_move.clone();
        inputs.last_power_on = mem.last_power_on.clone();
        inputs.draining = mem.draining.clone();
        inputs.booting = mem.booting.clone();
        Ok(inputs)
    }

    /// The dom0 interface of `server`'s member of `network` (a port, a bond or a VLAN interface).
    fn member_interface(&self, network: NetworkId, server: ServerId) -> Option<String> {
        self.read(|inv| {
            let net = inv.get::<Network>(network).ok()?;
            net.members.iter().find_map(|m| match crate::manager::network::member_interface(inv, *m) {
                Ok((s, iface, _)) if s == server => Some(iface),
                _ => None,
            })
        })
    }

    /// Carry a plan out within a policy job (see [`Manager::run_policy`]).
    fn carry_out(&self, ctx: &crate::manager::jobs::StepCtx<'_>, pool: PoolId, plan: Plan) -> Result<()> {
        let name = |s: ServerId| self.server(s).map(|s| s.name.clone()).unwrap_or_else(|_| s.to_string());
        let pool_ref = ObjectRef::new(ObjectKind::ServerPool, pool.0);
        let mut failed = Vec::new();
        for u in &plan.unrelieved {
            let _ = self.raise_event(
                ObjectRef::new(ObjectKind::Server, u.server.0),
                Severity::Warning,
                "policy.unrelieved",
                &format!(
                    "Server {} stays overloaded ({:?}): {}",
                    name(u.server),
                    u.blocked,
                    describe_reason(&u.reason, name)
                ),
            );
        }
        // The migrations, at once.
        let mut children = Vec::new();
        let mut moves = Vec::new();
        for (vm, from, to, reason) in plan.migrations() {
            let why = describe_reason(reason, name);
            match self.migrate_vm_child(vm, to, Default::default(), Some(ctx.job_id())) {
                Ok(child) => {
                    let vm_name = self.vm(vm).map(|v| v.name.clone()).unwrap_or_default();
                    let _ = self.raise_event(
                        ObjectRef::new(ObjectKind::Vm, vm.0),
                        Severity::Info,
                        "policy.migrate",
                        &format!("VM {vm_name} moves from {} to {}: {why}", name(from), name(to)),
                    );
                    children.push(child);
                    moves.push((vm, from));
                }
                Err(e) => failed.push(format!("moving VM {vm}: {e}")),
            }
        }
        let outcomes = ctx.run_children(children)?;
        let now = self.now();
        let mut left_behind: HashSet<ServerId> = HashSet::new();
        {
            let mut mem = lock(&self.inner.policy);
            for ((vm, from), r) in moves.iter().zip(&outcomes) {
                match r {
                    Ok(_) => {
                        mem.last_vm_move.insert(*vm, now);
                        let to = self.vm(*vm).ok().and_then(|v| v.server);
                        for s in std::iter::once(*from).chain(to) {
                            mem.server_changed.insert(s, now);
                        }
                    }
                    Err(e) => {
                        failed.push(format!("moving VM {vm}: {e}"));
                        left_behind.insert(*from);
                    }
                }
            }
            mem.draining = plan.draining.iter().copied().collect();
        }
        // Power actions, in the plan's order.
        for a in &plan.actions {
            match a {
                Action::PowerOff { server, reason } => {
                    if left_behind.contains(server) {
                        failed.push(format!("powering off {}: a VM did not move away", name(*server)));
                        continue;
                    }
                    let why = describe_reason(reason, name);
                    let r = self.power_off_server(*server).and_then(|j| j.wait(None));
                    match r {
                        Ok(_) => {
                            lock(&self.inner.policy).draining.remove(server);
                            let _ = self.raise_event(
                                ObjectRef::new(ObjectKind::Server, server.0),
                                Severity::Info,
                                "policy.power_off",
                                &format!("Server {} powered off: {why}", name(*server)),
                            );
                        }
                        Err(e) => failed.push(format!("powering off {}: {e}", name(*server))),
                    }
                }
                Action::PowerOn { server, reason } => {
                    let why = describe_reason(reason, name);
                    lock(&self.inner.policy).booting.insert(*server);
                    let r = self.power_on_server(*server, None).and_then(|j| j.wait(None));
                    let mut mem = lock(&self.inner.policy);
                    mem.booting.remove(server);
                    match r {
                        Ok(_) => {
                            mem.last_power_on.insert(*server, self.now());
                            drop(mem);
                            let _ = self.raise_event(
                                ObjectRef::new(ObjectKind::Server, server.0),
                                Severity::Info,
                                "policy.power_on",
                                &format!("Server {} powered on: {why}", name(*server)),
                            );
                        }
                        Err(e) => failed.push(format!("powering on {}: {e}", name(*server))),
                    }
                }
                Action::Migrate { .. } => {}
            }
        }
        ctx.message(format!(
            "{} actions, {} failed{}",
            plan.actions.len(),
            failed.len(),
            if plan.unrelieved.is_empty() {
                String::new()
            } else {
                format!(", {} servers unrelieved", plan.unrelieved.len())
            }
        ));
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Conflict { reason: format!("pool {}: {}", pool_ref.id, failed.join("; ")) })
        }
    }
}

/// The mean throughput of interface `iface` over the samples at or after `since`, Mbit/s (the
/// busier direction).
fn mean_mbps(history: &[LoadSample], since: Timestamp, iface: &str) -> f64 {
    let (sum, n) = history.iter().filter(|s| s.at >= since).fold((0.0f64, 0u32), |(sum, n), s| {
        match s.interfaces.iter().find(|i| i.name == iface) {
            Some(i) => {
                (sum + i.rx_bytes_per_sec.max(i.tx_bytes_per_sec) * f64::from(s.samples), n + s.samples)
            }
            None => (sum, n),
        }
    });
    if n == 0 {
        0.0
    } else {
        sum / f64::from(n) * 8.0 / 1e6
    }
}
