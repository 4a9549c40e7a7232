//! Editing a server, and maintenance mode (evacuating its VMs).

use std::sync::Arc;

use super::ServerEdit;
use crate::manager::jobs::{JobSpec, StepCtx};
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::policy::placement;
use crate::{Error, FailedMove, Result};

impl Manager {
    /// Edit a server's name, description, roles, Wake-on-LAN MAC or out-of-band power controller.
    /// An out-of-band controller must be registered ([`Manager::register_power_controller`]).
    pub fn edit_server(&self, server: ServerId, edit: ServerEdit) -> Result<JobHandle> {
        let mut s = (*self.server(server)?).clone();
        if let Some(n) = edit.name {
            s.name = n;
        }
        if let Some(d) = edit.description {
            s.description = d;
        }
        if let Some(r) = edit.roles {
            s.roles = r;
        }
        if let Some(w) = edit.wol_mac {
            s.wol_mac = w;
        }
        if let Some(o) = edit.out_of_band {
            if let Some(o) = &o {
                o.check()?;
                self.power_controller(&o.controller)?;
            }
            s.out_of_band = o;
        }
        self.update_object(Object::Server(s))
    }

    /// Put a server into maintenance mode or take it out. Entering it evacuates the server: its
    /// running VMs are live-migrated to other servers of its pool, each as a child job of this one,
    /// all at once within the migration limit ([`Manager::migration_limit`]). Each VM goes where
    /// the pool's placement policy puts it, counting the VMs this evacuation is already moving
    /// there. If a VM cannot move, the others still do, the server stays out of maintenance mode
    /// and the job fails with [`Error::EvacuationFailed`] naming the VMs left behind.
    pub fn set_maintenance_mode(&self, server: ServerId, on: bool) -> Result<JobHandle> {
        let s = self.server(server)?;
        if s.maintenance_mode == on {
            return Err(Error::state(
                s.object_ref(),
                if on { "not in maintenance" } else { "in maintenance" },
                if on { "in maintenance" } else { "not in maintenance" },
            ));
        }
        let summary = format!("{} maintenance mode on {}", if on { "Enter" } else { "Leave" }, s.name);
        let mut spec = JobSpec::new("MaintenanceMode", &summary, vec![s.object_ref()]);
        if on {
            spec = spec.step("evacuate VMs", move |ctx| evacuate(ctx, server));
        }
        spec = spec.step("set mode", move |ctx| {
            ctx.tx(|tx| tx.edit::<Server>(server, |s| s.maintenance_mode = on)).map(|_| ())
        });
        self.submit(spec)
    }
}

/// The target of `vm` by the pool's placement policy, among the servers other than `leaving`,
/// counting the VMs of `planned` as already resident where they are going (their memory, and their
/// anti-affinity group).
fn plan_target(
    mgr: &Manager,
    vm: &Vm,
    leaving: ServerId,
    planned: &[(ServerId, Arc<Vm>)],
) -> Result<ServerId> {
    let st = mgr.state();
    let mut usage = placement::Usage::of(&st.inv);
    for (s, v) in planned {
        usage.place(*s, v);
    }
    let peer_there = |s: ServerId| {
        vm.anti_affinity_group.is_some()
            && planned.iter().any(|(t, v)| *t == s && v.anti_affinity_group == vm.anti_affinity_group)
    };
    let reachable = |s: ServerId| st.conns.contains_key(&s);
    // Only servers the VM can migrate to (the pre-checks, with the memory this evacuation is
    // already sending there counted); when there is none, each server's reasons are named.
    let candidates: Vec<ServerId> = match vm.pool {
        Some(p) => st.inv.get::<ServerPool>(p)?.servers.iter().copied().filter(|s| *s != leaving).collect(),
        None => Vec::new(),
    };
    let mut clear = Vec::new();
    let mut refused = Vec::new();
    for s in candidates {
        let found =
            crate::policy::migration::blockers(&st.inv, &usage, vm, s, MigrationMode::Live, reachable)?;
        if found.is_empty() {
            clear.push(s);
        } else {
            let why: Vec<&str> = found.iter().map(|b| b.detail.as_str()).collect();
            refused.push(format!("{}: {}", st.inv.get::<Server>(s)?.name, why.join(", ")));
        }
    }
    if clear.is_empty() && !refused.is_empty() {
        return Err(Error::InsufficientResources {
            object: vm.object_ref(),
            resource: format!("a server to migrate it to ({})", refused.join("; ")),
            needed: vm.config.memory_mib,
            available: 0,
        });
    }
    placement::pick(&st.inv, &usage, vm, |s| clear.contains(&s) && !peer_there(s), reachable)
}

/// Move every resident VM off `server`: place them all, then migrate them at once as child jobs
/// (each waits for its migration slots), and wait for every one.
fn evacuate(ctx: &StepCtx<'_>, server: ServerId) -> Result<()> {
    let resident: Vec<Arc<Vm>> =
        ctx.mgr.list::<Vm>(|v| v.server == Some(server) && v.power_state.is_resident());
    let mut planned: Vec<(ServerId, Arc<Vm>)> = Vec::new();
    let mut failed = Vec::new();
    let mut children = Vec::new();
    for vm in resident {
        if ctx.aborting() {
            break;
        }
        let child = plan_target(ctx.mgr, &vm, server, &planned).and_then(|target| {
            let child = ctx.mgr.migrate_vm_child(vm.id, target, Default::default(), Some(ctx.job_id()))?;
            planned.push((target, vm.clone()));
            Ok(child)
        });
        match child {
            Ok(c) => children.push((vm, c)),
            Err(e) => {
                failed.push(FailedMove { vm: vm.object_ref(), name: vm.name.clone(), error: Box::new(e) })
            }
        }
    }
    ctx.message(format!("migrating {} VMs", children.len()));
    let (vms, handles): (Vec<Arc<Vm>>, Vec<JobHandle>) = children.into_iter().unzip();
    let outcomes = ctx.run_children(handles)?;
    if ctx.aborting() {
        return Err(Error::Aborted { job: ctx.job_id().to_string() });
    }
    for (vm, outcome) in vms.iter().zip(outcomes) {
        if let Err(e) = outcome {
            failed.push(FailedMove { vm: vm.object_ref(), name: vm.name.clone(), error: Box::new(e) });
        }
    }
    if !failed.is_empty() {
        let s = ctx.mgr.server(server)?;
        return Err(Error::EvacuationFailed { server: s.object_ref(), failed });
    }
    Ok(())
}
