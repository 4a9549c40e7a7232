//! High availability: restarting the VMs of a lost server on the other servers of its pool, by the
//! plan of [`crate::policy::ha`], and the failures-to-tolerate planner.

use std::collections::HashSet;
use std::time::Duration;

use crate::manager::jobs::Tx;
use crate::manager::Manager;
use crate::model::*;
use crate::policy::ha;
use crate::Result;

/// How long HA waits for one restart before it goes on with the next VM.
const RESTART_WAIT: Duration = Duration::from_secs(300);

impl Manager {
    /// Whether `pool` absorbs `failures` of its running, connected servers failing at once: a dry
    /// run of HA over the combinations of failed servers (every one when there are at most 256,
    /// otherwise the most loaded servers and a memory bound; see [`crate::policy::ha`]). The answer
    /// names the HA-enabled VMs that would not restart in the worst case, with their reasons.
    /// `NotFound` if the pool does not exist; `InvalidArgument` if `failures` exceeds the pool's
    /// running, connected servers.
    pub fn ha_plan(&self, pool: PoolId, failures: u32) -> Result<HaTolerance> {
        let st = self.state();
        ha::tolerate_with(&st.inv, pool, failures, |s| st.conns.contains_key(&s))
    }

    /// What HA would do now if the servers `failed` of `pool` failed: one decision per VM resident
    /// on them. `NotFound` if the pool or a server does not exist; `InvalidArgument` if a server is
    /// not in the pool.
    pub fn ha_plan_for(&self, pool: PoolId, failed: &[ServerId]) -> Result<HaPlan> {
        let st = self.state();
        ha::plan_with(&st.inv, pool, failed, |s| st.conns.contains_key(&s))
    }

    /// The largest number of simultaneous server failures `pool` tolerates (every HA-enabled VM
    /// restarts), together with every smaller number; at most its running, connected servers less
    /// one. `NotFound` if the pool does not exist.
    pub fn max_failures_tolerated(&self, pool: PoolId) -> Result<u32> {
        let st = self.state();
        ha::max_failures_tolerated_with(&st.inv, pool, |s| st.conns.contains_key(&s))
    }

    /// Start the VMs `plan` restarts, one after another in the plan's order (start priority,
    /// highest first), each on its planned server, in the background. A VM whose planned server
    /// cannot take it by then is placed by the pool's policy; a VM that cannot be restarted at all
    /// gets an Error event `ha.restart_failed`.
    pub(super) fn restart_ha_vms(&self, plan: HaPlan) {
        let restarts: Vec<(VmId, String, ServerId)> = plan
            .decisions
            .into_iter()
            .filter_map(|d| d.target.filter(|_| d.action == HaAction::Restart).map(|t| (d.vm, d.vm_name, t)))
            .collect();
        if restarts.is_empty() {
            return;
        }
        let mgr = self.clone();
        let spawned = std::thread::Builder::new().name("ovm-ha-restart".into()).spawn(move || {
            for (vm, name, target) in restarts {
                if mgr.is_closed() {
                    return;
                }
                // Restarted already (by the master of a clustered pool while the manager was
                // away): recorded where it runs, never started twice.
                if let Some((on, domid)) = mgr.find_domain(vm) {
                    let _ = mgr.adopt_domain(on, vm, domid);
                    continue;
                }
                let planned = mgr.start_vm_on(vm, target).and_then(|j| j.wait(Some(RESTART_WAIT)));
                let Err(first) = planned else { continue };
                if mgr.vm(vm).is_ok_and(|v| v.power_state != PowerState::Stopped) {
                    continue;
                }
                if let Err(e) = mgr.start_vm(vm).and_then(|j| j.wait(Some(RESTART_WAIT))) {
                    let _ = mgr.raise_event(
                        ObjectRef::new(ObjectKind::Vm, vm),
                        Severity::Error,
                        "ha.restart_failed",
                        &format!("HA could not restart VM {name}: {first}; placed by the pool's policy: {e}"),
                    );
                }
            }
        });
        if let Err(e) = spawned {
            log::error!("HA restarts could not be started: {e}");
        }
    }
}

/// The plan for the VMs `victims` of the lost server `s`, computed on the inventory before they are
/// marked stopped; `connected` are the servers the manager can command.
pub(super) fn plan_loss(tx: &Tx<'_>, s: &Server, victims: &[VmId], connected: &HashSet<ServerId>) -> HaPlan {
    let in_pool = s.pool.and_then(|p| ha::plan_with(&*tx.inv, p, &[s.id], |x| connected.contains(&x)).ok());
    if let Some(plan) = in_pool {
        return plan;
    }
    // A server outside any pool: nowhere to restart its VMs.
    let decisions = victims
        .iter()
        .filter_map(|v| tx.inv.get::<Vm>(*v).ok())
        .map(|v| {
            let ha = v.config.high_availability;
            let (kind, detail) = if ha {
                (
                    HaReasonKind::NoServerLeft,
                    format!("{} is in no server pool: VM {} has nowhere to restart", s.name, v.name),
                )
            } else {
                (HaReasonKind::NotHaEnabled, format!("VM {} is not HA-enabled: it stays stopped", v.name))
            };
            HaDecision {
                vm: v.id,
                vm_name: v.name.clone(),
                from: s.id,
                high_availability: ha,
                priority: v.config.start_priority,
                memory_mib: v.config.memory_mib,
                action: HaAction::NotRestarted,
                target: None,
                detail: detail.clone(),
                reasons: vec![HaReason { kind, server: None, object: Some(v.object_ref()), detail }],
            }
        })
        .collect();
    HaPlan { pool: PoolId(uuid::Uuid::nil()), failed: vec![s.id], decisions }
}

/// One event per decision of `plan` on its VM: `ha.restart` (Info, the target and why),
/// `ha.not_restarted` (Warning, every reason) for an HA-enabled VM, `vm.stopped` (Warning) for the
/// others.
pub(super) fn record_decisions(tx: &mut Tx<'_>, lost: &Server, plan: &HaPlan) {
    for d in &plan.decisions {
        let vm = ObjectRef::new(ObjectKind::Vm, d.vm);
        match (d.action, d.high_availability) {
            (HaAction::Restart, _) => tx.event(
                vm,
                Severity::Info,
                "ha.restart",
                format!("Server {} was lost: HA will {}", lost.name, d.detail),
            ),
            (HaAction::NotRestarted, true) => tx.event(
                vm,
                Severity::Warning,
                "ha.not_restarted",
                format!("Server {} was lost: HA does not restart VM {}: {}", lost.name, d.vm_name, d.detail),
            ),
            (HaAction::NotRestarted, false) => tx.event(
                vm,
                Severity::Warning,
                "vm.stopped",
                format!(
                    "VM {} stopped: its server {} was lost and it is not HA-enabled",
                    d.vm_name, lost.name
                ),
            ),
        }
    }
}
