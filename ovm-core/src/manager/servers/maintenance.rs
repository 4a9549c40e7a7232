//! Editing a server, and maintenance mode (evacuating its VMs).

use std::sync::Arc;

use super::ServerEdit;
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

impl Manager {
    /// Edit a server's name, description, roles or Wake-on-LAN MAC.
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
        self.update_object(Object::Server(s))
    }

    /// Put a server into maintenance mode (its running VMs are live-migrated to other servers of its
    /// pool, each as a child job) or take it out.
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
            spec = spec.step("evacuate VMs", move |ctx| {
                let running: Vec<Arc<Vm>> =
                    ctx.mgr.list::<Vm>(|v| v.server == Some(server) && v.power_state.is_resident());
                for vm in running {
                    if ctx.aborting() {
                        return Err(Error::Aborted { job: ctx.job_id().to_string() });
                    }
                    ctx.message(format!("migrating {}", vm.name));
                    let target = ctx.mgr.pick_migration_target(&vm, server)?;
                    ctx.run_child(ctx.mgr.migrate_vm_child(vm.id, target, Some(ctx.job_id())))?;
                }
                Ok(())
            });
        }
        spec = spec.step("set mode", move |ctx| {
            ctx.tx(|tx| tx.edit::<Server>(server, |s| s.maintenance_mode = on)).map(|_| ())
        });
        self.submit(spec)
    }
}
