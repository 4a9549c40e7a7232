//! Editing a VM, applied to its running domain where the change allows it.

use super::fill_macs;
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

impl Manager {
    /// Map `target` (a virtual disk, an ISO, an empty CD-ROM drive or a LUN) into slot `slot` of a
    /// stopped VM, replacing what the slot held.
    pub fn map_disk(&self, vm: VmId, slot: u8, target: DiskTarget) -> Result<JobHandle> {
        self.edit_vm(vm, move |v| {
            v.config.disks.retain(|d| d.slot != slot);
            v.config.disks.push(DiskMapping { slot, target });
            v.config.disks.sort_by_key(|d| d.slot);
        })
    }

    /// Edit a VM. While it runs, only name, description, HA, memory (≤ max) and vCPUs (≤ max) may change;
    /// memory and vCPU changes are applied to the running domain.
    pub fn edit_vm(&self, vm: VmId, f: impl FnOnce(&mut Vm)) -> Result<JobHandle> {
        let old = self.vm(vm)?;
        let mut new = (*old).clone();
        f(&mut new);
        if new.id != old.id
            || new.power_state != old.power_state
            || new.server != old.server
            || new.domid != old.domid
        {
            return Err(Error::invalid(
                "vm",
                "id, power state, server and domid are changed by operations, not edits",
            ));
        }
        let running = old.power_state.is_resident();
        if running {
            let mut a = old.config.clone();
            let mut b = new.config.clone();
            a.memory_mib = 0;
            b.memory_mib = 0;
            a.vcpus = 0;
            b.vcpus = 0;
            a.high_availability = false;
            b.high_availability = false;
            if a != b || new.pool != old.pool || new.repository != old.repository {
                return Err(Error::state(
                    old.object_ref(),
                    "Stopped (only memory, vCPUs, HA, name and description change while running)",
                    old.power_state,
                ));
            }
        }
        {
            let mut st = self.state();
            let range = st.mac_range;
            let st = &mut *st;
            fill_macs(&st.inv, range, &mut new.config)?;
        }
        let obj = Object::Vm(new.clone());
        obj.validate()?;
        self.state().inv.check_put(&obj)?;
        let (mem_changed, cpu_changed) =
            (new.config.memory_mib != old.config.memory_mib, new.config.vcpus != old.config.vcpus);
        self.submit(JobSpec::new("EditVm", &format!("Edit VM {}", new.name), vec![old.object_ref()]).step(
            "edit",
            move |ctx| {
                if running {
                    let server = new
                        .server
                        .ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
                    let hv = ctx.hv(server)?;
                    if mem_changed {
                        hv.set_memory(vm, new.config.memory_mib)?;
                    }
                    if cpu_changed {
                        hv.set_vcpus(vm, new.config.vcpus)?;
                    }
                }
                ctx.tx(|tx| tx.put(obj))
            },
        ))
    }
}
