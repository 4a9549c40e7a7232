//! Editing a VM, applied to its running domain where the change allows it.

use super::fill_macs;
use crate::driver::NicSpec;
use crate::job::{DomainUndo, Undo};
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

    /// Boot a stopped PV/PVH VM directly from `kernel` (`None`: no direct boot).
    pub fn set_vm_kernel(&self, vm: VmId, kernel: Option<PvKernel>) -> Result<JobHandle> {
        self.edit_vm(vm, move |v| v.config.pv_kernel = kernel)
    }

    /// Set how a stopped VM boots: its domain type and, for HVM and PVHVM guests, the order of its
    /// boot devices (each at most once; empty: the disk, then the CD-ROM drive).
    pub fn set_vm_boot(
        &self,
        vm: VmId,
        domain_type: DomainType,
        boot_order: Vec<BootDevice>,
    ) -> Result<JobHandle> {
        for (i, d) in boot_order.iter().enumerate() {
            if boot_order[..i].contains(d) {
                return Err(Error::invalid("boot_order", format!("{d:?} is listed twice")));
            }
        }
        if !boot_order.is_empty() && !matches!(domain_type, DomainType::Hvm | DomainType::PvHvm) {
            return Err(Error::invalid("boot_order", "only HVM and PVHVM guests have boot devices"));
        }
        self.edit_vm(vm, move |v| {
            v.config.domain_type = domain_type;
            v.config.boot_order = boot_order;
        })
    }

    /// Give a stopped PV VM a virtual framebuffer, or take it away: its screen, which
    /// [`Manager::open_vm_console`] then serves as an HVM guest's (on Xen, a device model in dom0
    /// serves it; the guest shows it with its `xen-fbfront` driver). HVM and PVHVM guests always
    /// have a screen; PVH guests cannot have one.
    pub fn set_vm_framebuffer(&self, vm: VmId, enabled: bool) -> Result<JobHandle> {
        let v = self.vm(vm)?;
        if enabled && v.config.domain_type != DomainType::Pv {
            return Err(Error::invalid(
                "framebuffer",
                format!(
                    "only PV guests have a virtual framebuffer ({} is {:?})",
                    v.name, v.config.domain_type
                ),
            ));
        }
        self.edit_vm(vm, move |v| v.config.framebuffer = enabled)
    }

    /// Boot a stopped PV or PVH VM from an install tree over the network (`None`: no more), as
    /// Oracle VM's "network boot path" does: at each start its server reads the installer's kernel
    /// and initial ramdisk from the tree (`images/xen/`, `images/pxeboot/` or `install.amd/xen/`
    /// under `url`, an `http://` or `https://` URL that the server reaches) and boots them with
    /// `cmdline`, which tells the installer where the tree is (e.g. `inst.repo=URL`). Before
    /// the VM's `pv_kernel` or the kernel on its disk; take it away once the guest is installed.
    pub fn set_vm_network_boot(&self, vm: VmId, boot: Option<NetworkBoot>) -> Result<JobHandle> {
        if let Some(b) = &boot {
            b.validate()?;
        }
        self.edit_vm(vm, move |v| v.config.network_boot = boot)
    }

    /// Connect VNIC number `index` (from 0) of a stopped VM to `network` (`None`: disconnect).
    pub fn set_vnic_network(&self, vm: VmId, index: u32, network: Option<NetworkId>) -> Result<JobHandle> {
        let n = self.vm(vm)?.config.vnics.len();
        if index as usize >= n {
            return Err(Error::invalid("index", format!("the VM has {n} VNICs, no VNIC {index}")));
        }
        self.edit_vm(vm, move |v| v.config.vnics[index as usize].network = network)
    }

    /// Enable or disable HA for a VM, with its start priority (1..=100; higher restarts first).
    pub fn set_vm_high_availability(&self, vm: VmId, enabled: bool, priority: u8) -> Result<JobHandle> {
        if !(1..=100).contains(&priority) {
            return Err(Error::invalid("priority", "must be 1..=100"));
        }
        self.edit_vm(vm, move |v| {
            v.config.high_availability = enabled;
            v.config.start_priority = priority;
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

    /// Give a VM a new VNIC on `network` (`None`: the server's default bridge) with a MAC from the
    /// manager's range; plugged into the domain at once if the VM runs (the network's bridge must be
    /// on its server). The job's result is the VM; the MAC is the new last VNIC's.
    pub fn add_vnic(&self, vm: VmId, network: Option<NetworkId>) -> Result<JobHandle> {
        let old = self.vm(vm)?;
        let mut new = (*old).clone();
        new.config.vnics.push(Vnic { mac: String::new(), network });
        {
            let st = self.state();
            fill_macs(&st.inv, st.mac_range, &mut new.config)?;
        }
        let mac = new.config.vnics.last().map(|n| n.mac.clone()).unwrap_or_default();
        let obj = Object::Vm(new.clone());
        obj.validate()?;
        self.state().inv.check_put(&obj)?;
        let bridge = match network {
            Some(n) => {
                let n = self.network(n)?;
                if !n.functions.contains(&NetworkFunction::VirtualMachine) {
                    return Err(Error::invalid(
                        "network",
                        format!("network {:?} does not carry VM traffic", n.name),
                    ));
                }
                Some(n.bridge.clone())
            }
            None => None,
        };
        let running = old.power_state.is_resident();
        let r = old.object_ref();
        self.submit(JobSpec::new("AddVnic", &format!("Add VNIC {mac} to VM {}", new.name), vec![r]).step(
            "plug",
            move |ctx| {
                if running {
                    let server = new
                        .server
                        .ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
                    check_network_on(ctx.mgr, network, server)?;
                    let hv = ctx.hv(server)?;
                    ctx.will_do(Undo::Domain(DomainUndo::DetachNic {
                        server: server.0,
                        vm: vm.0,
                        mac: mac.clone(),
                    }))?;
                    hv.attach_nic(vm, &NicSpec { mac: mac.clone(), bridge })?;
                }
                ctx.tx(|tx| tx.put(obj))?;
                ctx.set_result(r);
                Ok(())
            },
        ))
    }

    /// Remove the VNIC with `mac` from a VM; unplugged from the domain at once if the VM runs.
    pub fn remove_vnic(&self, vm: VmId, mac: &str) -> Result<JobHandle> {
        let old = self.vm(vm)?;
        let mut new = (*old).clone();
        let idx = new
            .config
            .vnics
            .iter()
            .position(|n| n.mac.eq_ignore_ascii_case(mac))
            .ok_or_else(|| Error::invalid("mac", format!("VM {:?} has no VNIC {mac}", old.name)))?;
        let gone = new.config.vnics.remove(idx);
        let bridge = match gone.network {
            Some(n) => Some(self.network(n)?.bridge.clone()),
            None => None,
        };
        let obj = Object::Vm(new.clone());
        let running = old.power_state.is_resident();
        let r = old.object_ref();
        self.submit(
            JobSpec::new("RemoveVnic", &format!("Remove VNIC {mac} from VM {}", new.name), vec![r]).step(
                "unplug",
                move |ctx| {
                    if running {
                        let server = new
                            .server
                            .ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
                        let hv = ctx.hv(server)?;
                        let nic = NicSpec { mac: gone.mac.clone(), bridge };
                        ctx.will_do(Undo::Domain(DomainUndo::AttachNic { server: server.0, vm: vm.0, nic }))?;
                        hv.detach_nic(vm, &gone.mac)?;
                    }
                    ctx.tx(|tx| tx.put(obj))?;
                    ctx.set_result(r);
                    Ok(())
                },
            ),
        )
    }

    /// A running VM's NICs as its server has them: (MAC, bridge, whether the guest took the NIC up).
    pub fn vm_nics(&self, vm: VmId) -> Result<Vec<(String, String, bool)>> {
        let v = self.vm(vm)?;
        let server = v
            .server
            .filter(|_| v.power_state.is_resident())
            .ok_or_else(|| Error::state(v.object_ref(), "running", v.power_state))?;
        self.hypervisor(server)?.domain_nics(vm)
    }
}

/// A VM network used on `server` must have a member there (its bridge is made only where it has).
pub(crate) fn check_network_on(mgr: &Manager, network: Option<NetworkId>, server: ServerId) -> Result<()> {
    let Some(n) = network else { return Ok(()) };
    mgr.read(|inv| {
        let net = inv.get::<Network>(n)?;
        for m in &net.members {
            if crate::manager::network::member_server(inv, *m)? == server {
                return Ok(());
            }
        }
        let s = inv.get::<Server>(server)?;
        Err(Error::invalid(
            "network",
            format!(
                "network {:?} has no member on server {:?}: its bridge {} is not there",
                net.name, s.name, net.bridge
            ),
        ))
    })
}
