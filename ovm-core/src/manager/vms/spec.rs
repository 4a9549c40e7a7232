//! Compiling a VM's configuration into the [`DomainSpec`] a driver starts.

use crate::driver::{DiskSpec, DomainSpec, NicSpec};
use crate::manager::Manager;
use crate::model::*;
use crate::Result;

impl Manager {
    /// Build the hypervisor's view of a VM.
    pub(crate) fn domain_spec(&self, vm: VmId) -> Result<DomainSpec> {
        let st = self.state();
        let inv = &st.inv;
        let v = inv.get::<Vm>(vm)?;
        let c = &v.config;
        let mut disks = Vec::new();
        let mut mappings = c.disks.clone();
        mappings.sort_by_key(|d| d.slot);
        for d in &mappings {
            let slot = d.slot;
            match d.target {
                DiskTarget::VirtualDisk(id) => {
                    let disk = inv.get::<VirtualDisk>(id)?;
                    disks.push(DiskSpec { slot, path: disk.path.clone(), read_only: false, cdrom: false });
                }
                DiskTarget::Cdrom(id) => {
                    let iso = inv.get::<VirtualCdrom>(id)?;
                    disks.push(DiskSpec { slot, path: iso.path.clone(), read_only: true, cdrom: true });
                }
                DiskTarget::EmptyCdrom => {
                    disks.push(DiskSpec { slot, path: String::new(), read_only: true, cdrom: true });
                }
                DiskTarget::PhysicalDisk(id) => {
                    let pd = inv.get::<PhysicalDisk>(id)?;
                    disks.push(DiskSpec {
                        slot,
                        path: crate::driver::lun_path(&pd.page83_id),
                        read_only: false,
                        cdrom: false,
                    });
                }
            }
        }
        let mut nics = Vec::new();
        for n in &c.vnics {
            let bridge = match n.network {
                Some(net) => Some(inv.get::<Network>(net)?.bridge.clone()),
                None => None,
            };
            nics.push(NicSpec { mac: n.mac.clone(), bridge });
        }
        Ok(DomainSpec {
            uuid: v.id,
            name: v.name.clone(),
            domain_type: c.domain_type,
            vcpus: c.vcpus,
            max_vcpus: c.max_vcpus,
            memory_mib: c.memory_mib,
            max_memory_mib: c.max_memory_mib,
            disks,
            nics,
            kernel: c.pv_kernel.as_ref().map(|k| k.kernel.clone()),
            initrd: c.pv_kernel.as_ref().and_then(|k| k.initrd.clone()),
            cmdline: c.pv_kernel.as_ref().map(|k| k.cmdline.clone()),
            restart_actions: c.restart_actions,
            boot_order: c.boot_order.clone(),
            ha_priority: c.high_availability.then_some(c.start_priority),
            framebuffer: c.framebuffer,
            network_boot: c.network_boot.clone(),
        })
    }
}
