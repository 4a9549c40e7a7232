//! Typed operations: servers, pools, storage, networks and the VM lifecycle.

use std::collections::BTreeSet;
use std::ffi::c_char;
use std::time::Duration;

use ovm_core::manager::{CloneOptions, NetworkSpec, PoolSpec, RepositorySpec, StopOptions, VmSpec};
use ovm_core::model::*;
use ovm_core::JobHandle;

use crate::boundary::{call, copy_out_checked, id_arg, opt_str_arg, out_arg, owned, put, str_arg};
use crate::job::{job_call, ovm_job};
use crate::manager::{mgr_arg, ovm_manager};
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

/// `ovm_vm_stop` flag: destroy the domain if the guest does not power off within the timeout.
pub const OVM_STOP_FORCE: u32 = 1;

/// Network function bits for `ovm_network_create`.
pub const OVM_NETWORK_MANAGEMENT: u32 = 1;
/// Live migration traffic.
pub const OVM_NETWORK_LIVE_MIGRATE: u32 = 2;
/// Cluster heartbeat.
pub const OVM_NETWORK_CLUSTER_HEARTBEAT: u32 = 4;
/// Virtual machine traffic.
pub const OVM_NETWORK_VIRTUAL_MACHINE: u32 = 8;
/// Storage traffic.
pub const OVM_NETWORK_STORAGE: u32 = 16;

fn no_flags(flags: u32) -> Result<(), FfiError> {
    if flags != 0 {
        return Err(FfiError::new(
            ovm_result::OVM_RESULT_INVALID_ARGUMENT,
            format!("unknown flags {flags:#x}"),
        ));
    }
    Ok(())
}

/// Discover a server by address (IP, host name or `sim://NAME`) with its agent password, and take
/// ownership. The job's result is the server.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_discover(
    mgr: *const ovm_manager,
    address: *const c_char,
    password: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            let a = str_arg(address, "address")?;
            let p = str_arg(password, "password")?;
            Ok(m.discover_server(a, p)?)
        })
    }
}

/// Restart the agent of a server reached through one (its VMs keep running; the manager reconnects).
#[no_mangle]
pub unsafe extern "C" fn ovm_server_restart_agent(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { job_call(mgr, out, |m| Ok(m.restart_agent(ServerId(id_arg(server, "server")?))?)) }
}

/// Copy the fingerprint (`sha256:` + hex) of the agent certificate pinned for `server` into `buf`;
/// `OVM_RESULT_NOT_FOUND` for a server not reached through an agent.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_agent_fingerprint(
    mgr: *const ovm_manager,
    server: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        // SAFETY: per the function's contract.
        let id = ServerId(unsafe { id_arg(server, "server") }?);
        let fp = m.mgr.agent_fingerprint(id)?.ok_or_else(|| {
            FfiError::new(ovm_result::OVM_RESULT_NOT_FOUND, "no agent certificate is pinned for this server")
        })?;
        // SAFETY: per the function's contract.
        unsafe { copy_out_checked(&fp, buf, len, out_n) }
    })
}

/// Put a server into maintenance mode (`on` true: its VMs migrate away as child jobs) or take it out.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_set_maintenance(
    mgr: *const ovm_manager,
    server: *const c_char,
    on: bool,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { job_call(mgr, out, |m| Ok(m.set_maintenance_mode(ServerId(id_arg(server, "server")?), on)?)) }
}

/// Create an unclustered server pool. The job's result is the pool.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { job_call(mgr, out, |m| Ok(m.create_pool(PoolSpec::new(str_arg(name, "name")?))?)) }
}

/// Add a server to a pool (the first member becomes the master).
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_add_server(
    mgr: *const ovm_manager,
    pool: *const c_char,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            Ok(m.add_server_to_pool(PoolId(id_arg(pool, "pool")?), ServerId(id_arg(server, "server")?))?)
        })
    }
}

/// Remove a server (without running VMs) from its pool.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_remove_server(
    mgr: *const ovm_manager,
    pool: *const c_char,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            Ok(m.remove_server_from_pool(PoolId(id_arg(pool, "pool")?), ServerId(id_arg(server, "server")?))?)
        })
    }
}

/// Create a repository on a file system, owned by `pool` (may be NULL), with `capacity_bytes`
/// (0: the file system's free space). The job's result is the repository.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    file_system: *const c_char,
    pool: *const c_char,
    capacity_bytes: u64,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            let spec = RepositorySpec {
                name: str_arg(name, "name")?.to_owned(),
                backing: RepositoryBacking::FileSystem(FileSystemId(id_arg(file_system, "file_system")?)),
                owner_pool: match opt_str_arg(pool, "pool")? {
                    Some(_) => Some(PoolId(id_arg(pool, "pool")?)),
                    None => None,
                },
                capacity_bytes,
            };
            Ok(m.create_repository(spec)?)
        })
    }
}

/// Present a repository to a server.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_present(
    mgr: *const ovm_manager,
    repository: *const c_char,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            Ok(m.present_repository(
                RepositoryId(id_arg(repository, "repository")?),
                ServerId(id_arg(server, "server")?),
            )?)
        })
    }
}

/// Store a PV/PVH boot kernel (and an initial ramdisk, `initrd_source` may be NULL) in a repository
/// under `name`, copied from files on the server the repository is presented to. They land at
/// `REPOSITORY/Kernels/NAME/vmlinux` and `.../initrd`. The job's result is the repository.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_import_kernel(
    mgr: *const ovm_manager,
    repository: *const c_char,
    name: *const c_char,
    kernel_source: *const c_char,
    initrd_source: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            Ok(m.import_kernel(
                RepositoryId(id_arg(repository, "repository")?),
                str_arg(name, "name")?,
                str_arg(kernel_source, "kernel_source")?,
                opt_str_arg(initrd_source, "initrd_source")?,
            )?)
        })
    }
}

/// Create an empty virtual disk of `size_bytes` in a repository. The job's result is the disk.
#[no_mangle]
pub unsafe extern "C" fn ovm_virtual_disk_create(
    mgr: *const ovm_manager,
    repository: *const c_char,
    name: *const c_char,
    size_bytes: u64,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            Ok(m.create_virtual_disk(
                RepositoryId(id_arg(repository, "repository")?),
                str_arg(name, "name")?,
                size_bytes,
                false,
            )?)
        })
    }
}

/// Create a network carrying the `OVM_NETWORK_*` function bits in `functions`, on `bridge`.
#[no_mangle]
pub unsafe extern "C" fn ovm_network_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    bridge: *const c_char,
    functions: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            let all = [
                (OVM_NETWORK_MANAGEMENT, NetworkFunction::Management),
                (OVM_NETWORK_LIVE_MIGRATE, NetworkFunction::LiveMigrate),
                (OVM_NETWORK_CLUSTER_HEARTBEAT, NetworkFunction::ClusterHeartbeat),
                (OVM_NETWORK_VIRTUAL_MACHINE, NetworkFunction::VirtualMachine),
                (OVM_NETWORK_STORAGE, NetworkFunction::Storage),
            ];
            if functions & !0x1f != 0 {
                return Err(FfiError::new(
                    ovm_result::OVM_RESULT_INVALID_ENUM,
                    format!("unknown network function bits {functions:#x}"),
                ));
            }
            let set: BTreeSet<NetworkFunction> =
                all.iter().filter(|(b, _)| functions & b != 0).map(|(_, f)| *f).collect();
            let spec = NetworkSpec {
                name: str_arg(name, "name")?.to_owned(),
                functions: set,
                members: Vec::new(),
                bridge: str_arg(bridge, "bridge")?.to_owned(),
                mtu: 1500,
            };
            Ok(m.create_network(spec)?)
        })
    }
}

/// Create a PV VM in `pool` (may be NULL) with `memory_mib`, `vcpus` and `vnics` NICs (MACs from the
/// manager's range). The job's result is the VM.
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
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            if vnics > 64 {
                return Err(FfiError::new(ovm_result::OVM_RESULT_INVALID_ARGUMENT, "at most 64 VNICs"));
            }
            let config = VmConfig {
                memory_mib,
                max_memory_mib: memory_mib,
                vcpus,
                max_vcpus: vcpus.max(1),
                vnics: (0..vnics).map(|_| Vnic { mac: String::new(), network: None }).collect(),
                ..VmConfig::default()
            };
            let mut spec = VmSpec::new(str_arg(name, "name")?, config);
            if opt_str_arg(pool, "pool")?.is_some() {
                spec.pool = Some(PoolId(id_arg(pool, "pool")?));
            }
            Ok(m.create_vm(spec)?)
        })
    }
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
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            let mut opts = CloneOptions::default();
            if opt_str_arg(pool, "pool")?.is_some() {
                opts.pool = Some(PoolId(id_arg(pool, "pool")?));
            }
            Ok(m.clone_template(TemplateId(id_arg(template, "template")?), str_arg(name, "name")?, opts)?)
        })
    }
}

/// One VM operation with the common checks.
unsafe fn vm_op(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
    f: impl FnOnce(&ovm_core::Manager, VmId) -> ovm_core::Result<JobHandle>,
) -> ovm_result {
    // SAFETY: per the caller's contract.
    unsafe {
        job_call(mgr, out, |m| {
            no_flags(flags)?;
            Ok(f(m, VmId(id_arg(vm, "vm")?))?)
        })
    }
}

/// Start a VM on a server chosen by its pool's start policy. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_start(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { vm_op(mgr, vm, flags, out, |m, id| m.start_vm(id)) }
}

/// Destroy a VM's domain at once (hard power off). `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_kill(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { vm_op(mgr, vm, flags, out, |m, id| m.kill_vm(id)) }
}

/// Reboot a VM gracefully. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_restart(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { vm_op(mgr, vm, flags, out, |m, id| m.restart_vm(id)) }
}

/// Pause a running VM in memory. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_pause(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { vm_op(mgr, vm, flags, out, |m, id| m.pause_vm(id)) }
}

/// Suspend a running VM to a file in its repository. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_suspend(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { vm_op(mgr, vm, flags, out, |m, id| m.suspend_vm(id)) }
}

/// Resume a paused or suspended VM. `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_resume(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { vm_op(mgr, vm, flags, out, |m, id| m.resume_vm(id)) }
}

/// Delete a stopped VM (its virtual disks stay). `flags` must be 0. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_delete(
    mgr: *const ovm_manager,
    vm: *const c_char,
    flags: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    // SAFETY: per the function's contract.
    unsafe { vm_op(mgr, vm, flags, out, |m, id| m.delete_vm(id)) }
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
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
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
            Ok(m.stop_vm_with(VmId(id_arg(vm, "vm")?), opts)?)
        })
    }
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
    // SAFETY: per the function's contract.
    unsafe {
        job_call(mgr, out, |m| {
            no_flags(flags)?;
            Ok(m.migrate_vm(VmId(id_arg(vm, "vm")?), ServerId(id_arg(server, "server")?))?)
        })
    }
}

/// A VM's power state (an `ovm_power_state`).
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_power_state(
    mgr: *const ovm_manager,
    vm: *const c_char,
    out: *mut u32,
) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        // SAFETY: per the function's contract.
        let id = unsafe { id_arg(vm, "vm") }?;
        let out = out_arg(out, "out")?;
        let state = m.mgr.vm(id)?.power_state;
        // SAFETY: checked.
        unsafe { put(out, power(state) as u32) };
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
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        // SAFETY: per the function's contract.
        let v = m.mgr.vm(unsafe { id_arg(vm, "vm") }?)?;
        let s = v.server.ok_or_else(|| {
            FfiError::new(ovm_result::OVM_RESULT_NOT_FOUND, format!("VM {} has no server", v.name))
        })?;
        // SAFETY: per the function's contract.
        unsafe { copy_out_checked(&s.to_string(), buf, len, out_n) }
    })
}

/// Console output of a running VM (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_console(
    mgr: *const ovm_manager,
    vm: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        // SAFETY: per the function's contract.
        let id = unsafe { id_arg(vm, "vm") }?;
        let out = out_arg(out, "out")?;
        let text = m.mgr.vm_console(VmId(id))?;
        // SAFETY: checked.
        unsafe { put(out, owned(text)) };
        Ok(())
    })
}
