//! Live migration of a running VM (and moving a stopped one) between servers of a pool.

use crate::job::{DomainUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

impl Manager {
    /// Live-migrate a running VM (or move a stopped one) to another server of its pool.
    pub fn migrate_vm(&self, vm: VmId, target: ServerId) -> Result<JobHandle> {
        self.migrate_vm_child(vm, target, None)
    }

    pub(crate) fn migrate_vm_child(
        &self,
        vm: VmId,
        target: ServerId,
        parent: Option<JobId>,
    ) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Migrate)?;
        let t = self.server(target)?;
        if v.server == Some(target) {
            return Err(Error::invalid("target", format!("VM {:?} is already on {:?}", v.name, t.name)));
        }
        if v.pool.is_none() || t.pool != v.pool {
            return Err(Error::invalid("target", "VMs migrate between servers of their own pool"));
        }
        if t.maintenance_mode {
            return Err(Error::state(t.object_ref(), "not in maintenance mode", "in maintenance mode"));
        }
        let running = v.power_state == PowerState::Running;
        let source = v.server;
        let spec =
            JobSpec::new("MigrateVm", &format!("Migrate VM {} to {}", v.name, t.name), vec![v.object_ref()])
                .parent(parent)
                .step("migrate", move |ctx| {
                    let v = ctx.mgr.vm(vm)?;
                    ctx.mgr.server(target)?;
                    if running {
                        let from = source
                            .ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
                        // Held until the domain has moved (or failed to): at most the migration
                        // limit runs at once on each server; the others wait in line here.
                        let _slots = super::slots::take(ctx, from, target)?;
                        // Capacity and anti-affinity on the target, as for a start.
                        ctx.mgr.pick_server(&v, |s| s == target)?;
                        ctx.tx(|tx| {
                            tx.edit::<Vm>(vm, |v| v.power_state = PowerState::Migrating).map(|_| ())
                        })?;
                        ctx.will_do(Undo::Domain(DomainUndo::MigrateBack {
                            from: target.0,
                            to: from.0,
                            vm: vm.0,
                        }))?;
                        // The destination prepares and issues a ticket; the source sends the domain.
                        let spec = ctx.mgr.domain_spec(vm)?;
                        let dest_conn = ctx.hv(target)?;
                        // Over the live-migrate network, where the destination has an address on it.
                        let via = ctx.mgr.network_address(target, NetworkFunction::LiveMigrate);
                        super::send_domain(&*ctx.hv(from)?, &*dest_conn, &spec, true, via)?;
                        let domid = ctx
                            .hv(target)?
                            .list_domains()?
                            .into_iter()
                            .find(|d| d.uuid == Some(vm))
                            .map(|d| d.domid);
                        ctx.tx(|tx| {
                            tx.edit::<Vm>(vm, |v| {
                                v.server = Some(target);
                                v.power_state = PowerState::Running;
                                v.domid = domid;
                            })
                            .map(|_| ())
                        })
                    } else {
                        ctx.tx(|tx| tx.edit::<Vm>(vm, |v| v.server = Some(target)).map(|_| ()))
                    }
                });
        self.submit(spec)
    }
}
