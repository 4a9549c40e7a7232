//! Typed operations on repositories and what they hold: virtual disks, kernels.

use std::ffi::c_char;

use ovm_core::manager::{DiskFilter, RepositorySpec};
use ovm_core::model::*;

use crate::boundary::{id_arg, id_list, job_entry, opt_id_arg, put_json, with_mgr};
use crate::boundary::{opt_string_arg, string_arg};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::ovm_result;

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
    job_entry!(mgr, out, |m| {
        let spec = RepositorySpec {
            name: string_arg(name, "name")?.to_owned(),
            backing: RepositoryBacking::FileSystem(FileSystemId(id_arg(file_system, "file_system")?)),
            owner_pool: opt_id_arg(pool, "pool")?.map(PoolId),
            capacity_bytes,
        };
        m.create_repository(spec)
    })
}

/// Present a repository to a server.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_present(
    mgr: *const ovm_manager,
    repository: *const c_char,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.present_repository(
            RepositoryId(id_arg(repository, "repository")?),
            ServerId(id_arg(server, "server")?),
        )
    })
}

/// Present a repository to the `n_servers` servers in `servers` in one job: each mounts it; a
/// server that fails undoes the mounts made on the others.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_present_to(
    mgr: *const ovm_manager,
    repository: *const c_char,
    servers: *const *const c_char,
    n_servers: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let servers: Vec<ServerId> =
            id_list(servers, n_servers, "servers")?.into_iter().map(ServerId).collect();
        m.present_repository_to(RepositoryId(id_arg(repository, "repository")?), servers)
    })
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
    job_entry!(mgr, out, |m| {
        m.import_kernel(
            RepositoryId(id_arg(repository, "repository")?),
            string_arg(name, "name")?,
            string_arg(kernel_source, "kernel_source")?,
            opt_string_arg(initrd_source, "initrd_source")?,
        )
    })
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
    job_entry!(mgr, out, |m| {
        m.create_virtual_disk(
            RepositoryId(id_arg(repository, "repository")?),
            string_arg(name, "name")?,
            size_bytes,
            false,
        )
    })
}

/// Stop presenting a repository to a server. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_unpresent(
    mgr: *const ovm_manager,
    repository: *const c_char,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.unpresent_repository(
            RepositoryId(id_arg(repository, "repository")?),
            ServerId(id_arg(server, "server")?),
        )
    })
}

/// Import an ISO image into a repository as a virtual CD-ROM, read from `source`: an absolute path
/// on this machine or an `http(s)://` URL (its length must be known). The job's result is the ISO;
/// `ovm_job_bytes` shows its progress.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_import_iso(
    mgr: *const ovm_manager,
    repository: *const c_char,
    name: *const c_char,
    source: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.import_iso(
            RepositoryId(id_arg(repository, "repository")?),
            string_arg(name, "name")?,
            string_arg(source, "source")?,
        )
    })
}

/// Import an Oracle VM template archive (`.tar` or `.tgz`: a `vm.cfg`, the disk images it names,
/// and the kernel and ramdisk it boots, if any) into a repository, read from `source`: an absolute
/// path on this machine or an `http(s)://` URL. The template is named `name`, or (`name` NULL) as
/// its `vm.cfg` says. A hostile archive (paths leaving the archive, links, devices) fails the job
/// with `OVM_RESULT_INVALID_ARGUMENT` and leaves nothing in the repository. The job's result is
/// the template; `ovm_job_bytes` shows its progress.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_import_template(
    mgr: *const ovm_manager,
    repository: *const c_char,
    source: *const c_char,
    name: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.import_template(
            RepositoryId(id_arg(repository, "repository")?),
            string_arg(source, "source")?,
            opt_string_arg(name, "name")?,
        )
    })
}

/// Import an assembly into a repository, read from `source` (an absolute path on this machine or
/// an `http(s)://` URL): an OVA archive, or an OVF descriptor with its files beside it. Each
/// virtual system becomes a template of the assembly; disks must be raw images, and the files a
/// manifest lists are checked against it. The assembly is named `name`, or (`name` NULL) as its
/// descriptor says. The job's result is the assembly; `ovm_job_bytes` shows its progress.
#[no_mangle]
pub unsafe extern "C" fn ovm_repository_import_assembly(
    mgr: *const ovm_manager,
    repository: *const c_char,
    source: *const c_char,
    name: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.import_assembly(
            RepositoryId(id_arg(repository, "repository")?),
            string_arg(source, "source")?,
            opt_string_arg(name, "name")?,
        )
    })
}

/// Delete a virtual disk no VM or template uses, with its file. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_virtual_disk_delete(
    mgr: *const ovm_manager,
    disk: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.delete_virtual_disk(VirtualDiskId(id_arg(disk, "disk")?)))
}

/// Virtual disks as a JSON array in name order, of `repository` (NULL: all). The filter is
/// ovm-core's `DiskFilter`.
#[no_mangle]
pub unsafe extern "C" fn ovm_virtual_disk_list_json(
    mgr: *const ovm_manager,
    repository: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let filter = DiskFilter { repository: opt_id_arg(repository, "repository")?.map(RepositoryId) };
        put_json(out, &m.api.virtual_disks_where(filter)?)
    })
}
