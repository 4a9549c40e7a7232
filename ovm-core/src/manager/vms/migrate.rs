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
        let v = self.vm(vm)?;
        self.ensure_unlocked(v.object_ref())?;
        let t = self.server(target)?;
        // Every reason it would fail, at once; again in the step, before any effect.
        self.assert_can_migrate(vm, target)?;
        let running = v.power_state == PowerState::Running;
        let source = v.server;
        let spec =
            JobSpec::new("MigrateVm", &format!("Migrate VM {} to {}", v.name, t.name), vec![v.object_ref()])
                .parent(parent)
                .step("migrate", move |ctx| {
                    ctx.mgr.assert_can_migrate(vm, target)?;
                    if running {
                        let from = source
                            .ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
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
