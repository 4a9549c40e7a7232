//! Typed operations on virtual machines: create, clone, the lifecycle, and reading their state.

use std::ffi::c_char;
use std::time::Duration;

use ovm_core::manager::{CloneOptions, DiskClone, MigrateOptions, StopOptions, VmFilter, VmSpec};
use ovm_core::model::*;

use crate::boundary::{
    array_arg, copy_out_checked, flags_arg, id_arg, id_list, job_entry, opt_id_arg, opt_id_list, out_arg,
    owned, put, put_json, str_arg, with_mgr,
};
use crate::boundary::{opt_string_arg, string_arg};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::{ovm_result, FfiError};

/// VM power states.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_power_state {
    /// Not running.
    OVM_POWER_STOPPED = 0,
    /// Starting.
    OVM_POWER_STARTING = 1,
    /// Running.
    OVM_POWER_RUNNING = 2,
    /// Paused.
    OVM_POWER_PAUSED = 3,
    /// Suspended to its repository.
    OVM_POWER_SUSPENDED = 4,
    /// Shutting down.
    OVM_POWER_STOPPING = 5,
    /// Migrating.
    OVM_POWER_MIGRATING = 6,
}

fn power(p: PowerState) -> ovm_power_state {
    use ovm_power_state::*;
    match p {
        PowerState::Stopped => OVM_POWER_STOPPED,
        PowerState::Starting => OVM_POWER_STARTING,
        PowerState::Running => OVM_POWER_RUNNING,
        PowerState::Paused => OVM_POWER_PAUSED,
        PowerState::Suspended => OVM_POWER_SUSPENDED,
        PowerState::Stopping => OVM_POWER_STOPPING,
        PowerState::Migrating => OVM_POWER_MIGRATING,
    }
}

/// `ovm_vm_list_json` power state: any.
pub const OVM_POWER_ANY: u32 = u32::MAX;

fn power_arg(p: u32) -> Result<Option<PowerState>, FfiError> {
    use ovm_power_state::*;
    let all = [
        (OVM_POWER_STOPPED, PowerState::Stopped),
        (OVM_POWER_STARTING, PowerState::Starting),
        (OVM_POWER_RUNNING, PowerState::Running),
        (OVM_POWER_PAUSED, PowerState::Paused),
        (OVM_POWER_SUSPENDED, PowerState::Suspended),
        (OVM_POWER_STOPPING, PowerState::Stopping),
        (OVM_POWER_MIGRATING, PowerState::Migrating),
    ];
    if p == OVM_POWER_ANY {
        return Ok(None);
    }
    all.iter().find(|(c, _)| *c as u32 == p).map(|(_, s)| Some(*s)).ok_or_else(|| {
        FfiError::new(ovm_result::OVM_RESULT_INVALID_ENUM, format!("{p} is not an ovm_power_state"))
    })
}

/// `ovm_vm_stop` flag: destroy the domain if the guest does not power off within the timeout.
pub const OVM_STOP_FORCE: u32 = 1;

/// Create a PV VM in `pool` (may be NULL) with `memory_mib`, `vcpus` and `vnics` NICs (MACs from the
/// manager's range, at most 64), with ovm-core's defaults for the rest (`VmConfig::sized`: maxima
/// equal to the start values). The job's result is the VM.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    pool: *const c_char,
    memory_mib: u64,
    vcpus: u32,
    vnics: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let config = VmConfig::sized(memory_mib, None, vcpus, None, vnics as usize)?;
        let mut spec = VmSpec::new(str_arg(name, "name")?, config);
        spec.pool = opt_id_arg(pool, "pool")?.map(PoolId);
        m.create_vm(spec)
    })
}

/// Domain types (`ovm_vm_set_boot`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_domain_type {
    /// Paravirtualised: the VM's kernel booted directly.
    OVM_DOMAIN_PV = 0,
    /// Fully virtualised: firmware, emulated devices (the device model in dom0).
    OVM_DOMAIN_HVM = 1,
    /// HVM with PV drivers (the Xen platform device).
    OVM_DOMAIN_PVHVM = 2,
    /// PVH: a PV kernel in an HVM container, no device model.
    OVM_DOMAIN_PVH = 3,
}

/// Boot devices of HVM and PVHVM guests (`ovm_vm_set_boot`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_boot_device {
    /// The first disk.
    OVM_BOOT_DISK = 0,
    /// The CD-ROM drive.
    OVM_BOOT_CDROM = 1,
    /// The network (PXE).
    OVM_BOOT_NETWORK = 2,
}

/// Set how a stopped VM boots: its domain type (an `ovm_domain_type`) and, for HVM and PVHVM
/// guests, its `n` boot devices in order (`ovm_boot_device`s, each at most once; `n` 0: the disk,
/// then the CD-ROM drive). Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_set_boot(
    mgr: *const ovm_manager,
    vm: *const c_char,
    domain_type: u32,
    boot_order: *const u32,
    n: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let id = VmId(id_arg(vm, "vm")?);
        let ty = match domain_type {
            0 => DomainType::Pv,
            1 => DomainType::Hvm,
            2 => DomainType::PvHvm,
            3 => DomainType::Pvh,
            other => return Err(FfiError::invalid(format!("domain_type {other} is not an ovm_domain_type"))),
        };
        let order = if n == 0 { &[][..] } else { array_arg(boot_order, n, "boot_order")? };
        let mut devices = Vec::with_capacity(n);
        for d in order {
            devices.push(match d {
                0 => BootDevice::Disk,
                1 => BootDevice::Cdrom,
                2 => BootDevice::Network,
                other => {
                    return Err(FfiError::invalid(format!("boot device {other} is not an ovm_boot_device")))
                }
            });
        }
        m.set_vm_boot(id, ty, devices)
    })
}

/// Boot a stopped PV/PVH VM directly from `kernel` (with `initrd`, may be NULL, and the kernel
/// command line `cmdline`, may be NULL for none), paths as `ovm_repository_import_kernel` stores
/// them; `kernel` NULL removes direct boot. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_set_kernel(
    mgr: *const ovm_manager,
    vm: *const c_char,
    kernel: *const c_char,
    initrd: *const c_char,
    cmdline: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let id = VmId(id_arg(vm, "vm")?);
        let initrd = opt_string_arg(initrd, "initrd")?;
        let cmdline = opt_string_arg(cmdline, "cmdline")?.unwrap_or_default().to_owned();
        let pv_kernel = match opt_string_arg(kernel, "kernel")? {
            Some(k) => Some(PvKernel { kernel: k.to_owned(), initrd, cmdline }),
            None if initrd.is_some() || !cmdline.is_empty() => {
                return Err(FfiError::invalid("initrd and cmdline need a kernel"));
            }
            None => None,
        };
        m.set_vm_kernel(id, pv_kernel)
    })
}

/// Give a stopped PV VM a virtual framebuffer (`enabled` true), served by `ovm_vm_console_open` as
/// an HVM guest's screen is, or take it away (false). Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_set_framebuffer(
    mgr: *const ovm_manager,
    vm: *const c_char,
    enabled: bool,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.set_vm_framebuffer(VmId(id_arg(vm, "vm")?), enabled))
}

/// Boot a stopped PV or PVH VM from the install tree at `url` (an `http://` or `https://` URL its
/// server reaches: the installer's kernel and initial ramdisk are read from it at each start) with
/// the kernel command line `cmdline` (may be NULL for none); `url` NULL: no network boot any more.
/// Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_set_network_boot(
    mgr: *const ovm_manager,
    vm: *const c_char,
    url: *const c_char,
    cmdline: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let id = VmId(id_arg(vm, "vm")?);
        let cmdline = opt_string_arg(cmdline, "cmdline")?.unwrap_or_default().to_owned();
        let boot = match opt_string_arg(url, "url")? {
            Some(u) => Some(NetworkBoot { url: u.to_owned(), cmdline }),
            None if !cmdline.is_empty() => return Err(FfiError::invalid("a cmdline needs a url")),
            None => None,
        };
        m.set_vm_network_boot(id, boot)
    })
}

/// Map physical disk (LUN) `disk` into slot `slot` of a stopped VM (replacing what the slot held);
/// the VM then runs only on servers logged in to the LUN's array. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_attach_physical_disk(
    mgr: *const ovm_manager,
    vm: *const c_char,
    slot: u8,
    disk: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let target = DiskTarget::PhysicalDisk(PhysicalDiskId(id_arg(disk, "disk")?));
        m.map_disk(VmId(id_arg(vm, "vm")?), slot, target)
    })
}

/// Map virtual disk `disk` into slot `slot` of a stopped VM (replacing what the slot held).
/// Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_attach_disk(
    mgr: *const ovm_manager,
    vm: *const c_char,
    slot: u8,
    disk: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let target = DiskTarget::VirtualDisk(VirtualDiskId(id_arg(disk, "disk")?));
        m.map_disk(VmId(id_arg(vm, "vm")?), slot, target)
    })
}

/// Connect VNIC number `index` (from 0) of a stopped VM to `network` (NULL: disconnect). Returns a
/// job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_set_vnic_network(
    mgr: *const ovm_manager,
    vm: *const c_char,
    index: u32,
    network: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let id = VmId(id_arg(vm, "vm")?);
        let net = opt_id_arg(network, "network")?.map(NetworkId);
        m.set_vnic_network(id, index, net)
    })
}

/// Give a VM a new VNIC on `network` (NULL: the server's default bridge) with a MAC from the
/// manager's range; plugged into the domain at once if the VM runs (the network's bridge must be on
/// its server). The job's result is the VM; the new MAC is that of its last VNIC. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_add_vnic(
    mgr: *const ovm_manager,
    vm: *const c_char,
    network: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m
        .add_vnic(VmId(id_arg(vm, "vm")?), opt_id_arg(network, "network")?.map(NetworkId)))
}

/// Remove the VNIC with MAC `mac` from a VM; unplugged from the domain at once if the VM runs.
/// Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_remove_vnic(
    mgr: *const ovm_manager,
    vm: *const c_char,
    mac: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.remove_vnic(VmId(id_arg(vm, "vm")?), string_arg(mac, "mac")?))
}

/// A running VM's NICs as its server has them: a JSON array of objects with `mac`, `bridge` and
/// `connected` (whether the guest took the NIC up). Free with `ovm_string_free`.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_nics_json(
    mgr: *const ovm_manager,
    vm: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let nics: Vec<serde_json::Value> = m
            .api
            .vm_nics(VmId(id_arg(vm, "vm")?))?
            .into_iter()
            .map(|(mac, bridge, connected)| serde_json::json!({"mac": mac, "bridge": bridge, "connected": connected}))
            .collect();
        put_json(out, &nics)
    })
}

/// Send `n` messages to a running VM's guest: `keys[i]` = `values[i]`, left where the guest reads
/// them (Xen: its xenstore directory `ovm/message`); a message with the same key is replaced. All
/// or nothing: if one cannot be left, those already left are taken back. Keys are 1 to 64
/// letters, digits, `-`, `_` and `.`; values at most 2048 bytes of text. `flags` must be 0.
/// Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_send_messages(
    mgr: *const ovm_manager,
    vm: *const c_char,
    keys: *const *const c_char,
    values: *const *const c_char,
    n: usize,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        flags_arg(flags, 0)?;
        let id = VmId(id_arg(vm, "vm")?);
        let (ks, vs) = (array_arg(keys, n, "keys")?, array_arg(values, n, "values")?);
        let mut messages = Vec::with_capacity(n);
        for (k, v) in ks.iter().zip(vs) {
            messages.push((string_arg(*k, "keys")?, string_arg(*v, "values")?));
        }
        m.send_vm_messages(id, messages)
    })
}

/// The values a running VM's guest reports (Xen: what it writes under its xenstore directory
/// `data`), as a JSON object of strings. Free with `ovm_string_free`.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_guest_data_json(
    mgr: *const ovm_manager,
    vm: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let data = m.api.vm_guest_data(VmId(id_arg(vm, "vm")?))?;
        put_json(out, &data)
    })
}

/// VMs as a JSON array in name order: of `pool` (NULL: any), on `server` (NULL: any), in
/// `power_state` (an `ovm_power_state`, or `OVM_POWER_ANY`). The filter is ovm-core's `VmFilter`.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_list_json(
    mgr: *const ovm_manager,
    pool: *const c_char,
    server: *const c_char,
    power_state: u32,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let filter = VmFilter {
            pool: opt_id_arg(pool, "pool")?.map(PoolId),
            server: opt_id_arg(server, "server")?.map(ServerId),
            power_state: power_arg(power_state)?,
        };
        put_json(out, &m.api.vms_where(filter)?)
    })
}

/// Create an anti-affinity group in `pool` holding the `n_vms` VMs in `vms` (may be NULL when
/// `n_vms` is 0). The job's result is the group.
#[no_mangle]
pub unsafe extern "C" fn ovm_anti_affinity_group_create(
    mgr: *const ovm_manager,
    pool: *const c_char,
    name: *const c_char,
    vms: *const *const c_char,
    n_vms: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let pool = PoolId(id_arg(pool, "pool")?);
        let vms = id_list(vms, n_vms, "vms")?.into_iter().map(VmId).collect();
        m.create_anti_affinity_group(pool, string_arg(name, "name")?, vms)
    })
}

/// Create a VM by cloning a template into `pool` (may be NULL). The job's result is the VM.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_clone_template(
    mgr: *const ovm_manager,
    template: *const c_char,
    name: *const c_char,
    pool: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let mut opts = CloneOptions::default();
        if opt_string_arg(pool, "pool")?.is_some() {
            opts.pool = Some(PoolId(id_arg(pool, "pool")?));
        }
        m.clone_template(TemplateId(id_arg(template, "template")?), string_arg(name, "name")?, opts)
    })
}

/// How one virtual disk of a clone is made (`ovm_vm_clone_template_custom`, `ovm_vm_clone`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_disk_clone_mode {
    /// Copy the disk into a repository (a thin clone where the file system can).
    OVM_DISK_CLONE_COPY = 0,
    /// Map the source's disk itself (it must be shareable).
    OVM_DISK_CLONE_SHARE = 1,
}

/// ovm-core's `CloneOptions` from the arguments of the customising clone calls.
///
/// # Safety
/// As `ovm_vm_clone_template_custom`'s contract.
#[allow(clippy::too_many_arguments)]
unsafe fn clone_options(
    pool: *const c_char,
    repository: *const c_char,
    slots: *const u8,
    modes: *const u32,
    disk_repositories: *const *const c_char,
    n_disks: usize,
) -> Result<CloneOptions, FfiError> {
    // SAFETY: per the caller's contract, passed on to the checked helpers.
    let (slots, modes, repos) = unsafe {
        (
            array_arg(slots, n_disks, "slots")?,
            array_arg(modes, n_disks, "modes")?,
            opt_id_list(disk_repositories, n_disks, "disk_repositories")?,
        )
    };
    let mut disks = Vec::with_capacity(n_disks);
    for (i, ((slot, mode), repo)) in slots.iter().zip(modes).zip(repos).enumerate() {
        let how = match *mode {
            m if m == ovm_disk_clone_mode::OVM_DISK_CLONE_COPY as u32 => {
                DiskClone::Copy { repository: repo.map(RepositoryId) }
            }
            m if m == ovm_disk_clone_mode::OVM_DISK_CLONE_SHARE as u32 && repo.is_none() => DiskClone::Share,
            m if m == ovm_disk_clone_mode::OVM_DISK_CLONE_SHARE as u32 => {
                return Err(FfiError::invalid(format!(
                    "disk_repositories[{i}]: a shared disk is not copied into a repository"
                )));
            }
            m => {
                return Err(FfiError::new(
                    ovm_result::OVM_RESULT_INVALID_ENUM,
                    format!("modes[{i}]: {m} is not an ovm_disk_clone_mode"),
                ))
            }
        };
        disks.push((*slot, how));
    }
    // SAFETY: per the caller's contract.
    let (pool, repository) = unsafe { (opt_id_arg(pool, "pool")?, opt_id_arg(repository, "repository")?) };
    Ok(CloneOptions {
        pool: pool.map(PoolId),
        repository: repository.map(RepositoryId),
        networks: None,
        disks,
    })
}

/// Create a VM by cloning a template into `pool` (may be NULL), customised as Oracle VM's clone
/// customizer does: its disks are copied into `repository` (NULL: the template's), except the
/// `n_disks` disks at `slots[i]`, made as `modes[i]` (an `ovm_disk_clone_mode`) says — copied into
/// `disk_repositories[i]` (NULL, or `disk_repositories` NULL: into `repository`), or shared
/// (`disk_repositories[i]` must then be NULL). A slot that maps no virtual disk, or a shared disk
/// that is not shareable, is refused before anything is copied. The job's result is the VM.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_clone_template_custom(
    mgr: *const ovm_manager,
    template: *const c_char,
    name: *const c_char,
    pool: *const c_char,
    repository: *const c_char,
    slots: *const u8,
    modes: *const u32,
    disk_repositories: *const *const c_char,
    n_disks: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let opts = clone_options(pool, repository, slots, modes, disk_repositories, n_disks)?;
        m.clone_template(TemplateId(id_arg(template, "template")?), string_arg(name, "name")?, opts)
    })
}

/// Clone a stopped VM into a new VM in `pool` (NULL: the source's pool), its disks made as
/// `ovm_vm_clone_template_custom` says (`n_disks` 0: each copied into `repository`, NULL: the
/// source's). The job's result is the new VM.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_clone(
    mgr: *const ovm_manager,
    vm: *const c_char,
    name: *const c_char,
    pool: *const c_char,
    repository: *const c_char,
    slots: *const u8,
    modes: *const u32,
    disk_repositories: *const *const c_char,
    n_disks: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let opts = clone_options(pool, repository, slots, modes, disk_repositories, n_disks)?;
        m.clone_vm(VmId(id_arg(vm, "vm")?), string_arg(name, "name")?, opts)
    })
}

/// The body of a VM operation that takes `flags` (which must be 0): `$f(manager, VmId)` gives the job.
macro_rules! vm_entry {
    ($mgr:expr, $vm:expr, $flags:expr, $out:expr, |$m:ident, $id:ident| $body:expr) => {
        job_entry!($mgr, $out, |$m| {
            flags_arg($flags, 0)?;
            let $id = VmId(id_arg($vm, "vm")?);
            $body
        })
    };
}

/// Start a VM on a server chosen by its pool's start policy. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_start(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    vm_entry!(mgr, vm, flags, out, |m, id| m.start_vm(id))
}

/// Destroy a VM's domain at once (hard power off). `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_kill(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    vm_entry!(mgr, vm, flags, out, |m, id| m.kill_vm(id))
}

/// Reboot a VM gracefully. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_restart(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    vm_entry!(mgr, vm, flags, out, |m, id| m.restart_vm(id))
}

/// Pause a running VM in memory. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_pause(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    vm_entry!(mgr, vm, flags, out, |m, id| m.pause_vm(id))
}

/// Suspend a running VM to a file in its repository. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_suspend(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    vm_entry!(mgr, vm, flags, out, |m, id| m.suspend_vm(id))
}

/// Resume a paused or suspended VM. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_resume(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    vm_entry!(mgr, vm, flags, out, |m, id| m.resume_vm(id))
}

/// Resume a suspended VM on `server`, another server of its pool with its repository (or the one it
/// was suspended on). `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_resume_on(
    mgr: *const ovm_manager,
    vm: *const c_char,
    server: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        flags_arg(flags, 0)?;
        m.resume_vm_on(VmId(id_arg(vm, "vm")?), ServerId(id_arg(server, "server")?))
    })
}

/// Start a VM on `server`, a server of its pool (its own server for a VM in no pool), with the
/// checks of placement on that server (`OVM_RESULT_INSUFFICIENT_RESOURCES` from the job if it
/// cannot take the VM). `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_start_on(
    mgr: *const ovm_manager,
    vm: *const c_char,
    server: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        flags_arg(flags, 0)?;
        m.start_vm_on(VmId(id_arg(vm, "vm")?), ServerId(id_arg(server, "server")?))
    })
}

/// Delete a stopped VM (its virtual disks stay). `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_delete(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    vm_entry!(mgr, vm, flags, out, |m, id| m.delete_vm(id))
}

/// Stop a VM gracefully, waiting up to `timeout_ms` for the guest; with `OVM_STOP_FORCE` in `flags`
/// the domain is destroyed after the timeout. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_stop(
    mgr: *const ovm_manager,
    vm: *const c_char,
    timeout_ms: u64,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        if flags & !OVM_STOP_FORCE != 0 {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_ARGUMENT,
                format!("unknown flags {flags:#x}"),
            ));
        }
        let opts = StopOptions {
            timeout: Duration::from_millis(timeout_ms),
            force_after_timeout: flags & OVM_STOP_FORCE != 0,
        };
        m.stop_vm_with(VmId(id_arg(vm, "vm")?), opts)
    })
}

/// Live-migrate a running VM (or move a stopped one) to `server` in its pool. `flags` must be 0.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_migrate(
    mgr: *const ovm_manager,
    vm: *const c_char,
    server: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        flags_arg(flags, 0)?;
        m.migrate_vm(VmId(id_arg(vm, "vm")?), ServerId(id_arg(server, "server")?))
    })
}

/// How many migrations may run at once on one server (a migration counts on its source and on its
/// destination; more wait in line for a slot). 2 unless set.
#[no_mangle]
pub unsafe extern "C" fn ovm_migration_limit(mgr: *const ovm_manager, out: *mut u32) -> ovm_result {
    with_mgr!(mgr, |m| {
        let out = out_arg(out, "out")?;
        put(out, m.api.migration_limit()?);
        Ok(())
    })
}

/// Set how many migrations may run at once on one server (1 to 64; anything else is
/// `OVM_RESULT_INVALID_ARGUMENT` with nothing changed). Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_migration_limit_set(
    mgr: *const ovm_manager,
    limit: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.set_migration_limit(limit))
}

/// How `ovm_vm_migrate_with` moves a running VM.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_migration_mode {
    /// Live migration (what `ovm_vm_migrate` does).
    OVM_MIGRATION_LIVE = 0,
    /// A cold move: paused and saved on the source into the stream, restored and run on the
    /// target; the source copy is destroyed only once the target runs it.
    OVM_MIGRATION_COLD = 1,
}

fn migration_mode_arg(mode: u32) -> Result<MigrationMode, FfiError> {
    use ovm_migration_mode::*;
    [(OVM_MIGRATION_LIVE, MigrationMode::Live), (OVM_MIGRATION_COLD, MigrationMode::Cold)]
        .iter()
        .find(|(c, _)| *c as u32 == mode)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            FfiError::new(ovm_result::OVM_RESULT_INVALID_ENUM, format!("{mode} is not an ovm_migration_mode"))
        })
}

/// Move a running VM (or a stopped one) to `server` in its pool the way `mode` (an
/// `ovm_migration_mode`) says: `OVM_MIGRATION_LIVE` is `ovm_vm_migrate`; `OVM_MIGRATION_COLD`, for
/// where live migration is impossible, saves the domain paused on the source into the stream,
/// restores and runs it on `server`, and destroys the source copy only then (on failure the VM
/// runs on at the source). A mode out of range is `OVM_RESULT_INVALID_ENUM` with nothing done.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_migrate_with(
    mgr: *const ovm_manager,
    vm: *const c_char,
    server: *const c_char,
    mode: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let mode = migration_mode_arg(mode)?;
        m.migrate_vm_with(
            VmId(id_arg(vm, "vm")?),
            ServerId(id_arg(server, "server")?),
            MigrateOptions { mode },
        )
    })
}

/// A VM's power state (an `ovm_power_state`).
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_power_state(
    mgr: *const ovm_manager,
    vm: *const c_char,
    out: *mut u32,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let id = id_arg(vm, "vm")?;
        let out = out_arg(out, "out")?;
        let state = m.api.vm_record(VmId(id))?.power_state;
        put(out, power(state) as u32);
        Ok(())
    })
}

/// The id of the server a VM runs on (or is assigned to); `OVM_RESULT_NOT_FOUND` if none.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_server(
    mgr: *const ovm_manager,
    vm: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let v = m.api.vm_record(VmId(id_arg(vm, "vm")?))?;
        let s = v.server.ok_or_else(|| {
            FfiError::new(ovm_result::OVM_RESULT_NOT_FOUND, format!("VM {} has no server", v.name))
        })?;
        copy_out_checked(&s.to_string(), buf, len, out_n)
    })
}

/// Console output of a running VM (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_console(
    mgr: *const ovm_manager,
    vm: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let id = id_arg(vm, "vm")?;
        let out = out_arg(out, "out")?;
        let text = m.api.vm_console(VmId(id))?;
        put(out, owned(text));
        Ok(())
    })
}
