//! Live migration of a running VM (and moving a stopped one) between servers of a pool, and the
//! cold move chosen explicitly where live migration is impossible.

use crate::job::{DomainUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// How [`Manager::migrate_vm_with`] moves a running VM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrateOptions {
    /// Live (the default) or cold ([`MigrationMode`]).
    pub mode: MigrationMode,
}

impl Manager {
    /// Live-migrate a running VM (or move a stopped one) to another server of its pool.
    pub fn migrate_vm(&self, vm: VmId, target: ServerId) -> Result<JobHandle> {
        self.migrate_vm_child(vm, target, MigrateOptions::default(), None)
    }

    /// Move a running VM (or a stopped one) to another server of its pool the way `options` say.
    /// [`MigrationMode::Live`] is [`Manager::migrate_vm`]. [`MigrationMode::Cold`], for where live
    /// migration is impossible, is chosen explicitly: the domain is paused and saved on the
    /// source straight into the stream, restored and started on the target, and only once the
    /// target runs it is the paused source domain destroyed. If anything fails before that, the
    /// source domain is unpaused (and what the target had restored is destroyed): the VM runs where
    /// it ran. The guest stops for as long as the save and restore take. A stopped VM just moves.
    pub fn migrate_vm_with(&self, vm: VmId, target: ServerId, options: MigrateOptions) -> Result<JobHandle> {
        self.migrate_vm_child(vm, target, options, None)
    }

    pub(crate) fn migrate_vm_child(
        &self,
        vm: VmId,
        target: ServerId,
        options: MigrateOptions,
        parent: Option<JobId>,
    ) -> Result<JobHandle> {
        let v = self.vm(vm)?;
        self.ensure_unlocked(v.object_ref())?;
        let t = self.server(target)?;
        // Every reason it would fail, at once; again in the step, before any effect.
        self.assert_can_migrate_with(vm, target, options.mode)?;
        let running = v.power_state == PowerState::Running;
        let source = v.server;
        let cold = options.mode == MigrationMode::Cold;
        let (kind, summary) = if cold {
            ("MoveVmCold", format!("Move VM {} to {} (cold)", v.name, t.name))
        } else {
            ("MigrateVm", format!("Migrate VM {} to {}", v.name, t.name))
        };
        let spec =
            JobSpec::new(kind, &summary, vec![v.object_ref()]).parent(parent).step("migrate", move |ctx| {
                let v = ctx.mgr.vm(vm)?;
                ctx.mgr.server(target)?;
                if running {
                    let from = source
                        .ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
                    // Held until the domain has moved (or failed to): at most the migration
                    // limit runs at once on each server; the others wait in line here.
                    let _slots = super::slots::take(ctx, from, target)?;
                    ctx.mgr.assert_can_migrate_with(vm, target, options.mode)?;
                    // Capacity and anti-affinity on the target, as for a start.
                    ctx.mgr.pick_server(&v, |s| s == target)?;
                    ctx.tx(|tx| tx.edit::<Vm>(vm, |v| v.power_state = PowerState::Migrating).map(|_| ()))?;
                    if cold {
                        // Until the target runs the domain, the source keeps it (paused by the
                        // save); if anything fails, whatever the target restored is destroyed
                        // and the source's copy runs again.
                        ctx.will_do(Undo::Domain(DomainUndo::ColdMoveBack {
                            source: from.0,
                            target: target.0,
                            vm: vm.0,
                        }))?;
                    } else {
                        ctx.will_do(Undo::Domain(DomainUndo::MigrateBack {
                            from: target.0,
                            to: from.0,
                            vm: vm.0,
                        }))?;
                    }
                    // The destination prepares and issues a ticket; the source sends the domain.
                    let spec = ctx.mgr.domain_spec(vm)?;
                    let dest_conn = ctx.hv(target)?;
                    // Over the live-migrate network, where the destination has an address on it.
                    let via = ctx.mgr.network_address(target, NetworkFunction::LiveMigrate);
                    super::send_domain(&*ctx.hv(from)?, &*dest_conn, &spec, true, via, options.mode)?;
                    if cold {
                        // The target runs the domain: only now is the paused source copy destroyed.
                        cold_finish(ctx, vm, from)?;
                    }
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
                    ctx.mgr.assert_can_migrate_with(vm, target, options.mode)?;
                    ctx.tx(|tx| tx.edit::<Vm>(vm, |v| v.server = Some(target)).map(|_| ()))
                }
            });
        self.submit(spec)
    }
}

/// After a cold move: destroy the paused copy of `vm` left on `source`, which must not run again
/// now that the target runs the domain. If it cannot be destroyed, the move still stands (the
/// target runs the guest, and going back would run an older copy of it): an Error event on the VM
/// says where the paused copy is.
fn cold_finish(ctx: &crate::manager::jobs::StepCtx<'_>, vm: VmId, source: ServerId) -> Result<()> {
    let destroyed = ctx.hv(source).and_then(|hv| {
        if hv.list_domains()?.iter().any(|d| d.uuid == Some(vm)) {
            hv.destroy(vm)?;
        }
        Ok(())
    });
    if let Err(e) = destroyed {
        let name = ctx.mgr.server(source).map(|s| s.name.clone()).unwrap_or_else(|_| source.to_string());
        ctx.tx(|tx| {
            tx.event(
                ObjectRef::new(ObjectKind::Vm, vm),
                Severity::Error,
                "vm.cold_move.source_left",
                format!("the VM runs on its new server, but its paused copy on {name} could not be destroyed: {e}; destroy it there"),
            );
            Ok(())
        })?;
    }
    Ok(())
}
