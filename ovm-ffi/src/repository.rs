//! Typed operations on repositories and what they hold: virtual disks, kernels.

use std::ffi::c_char;

use ovm_core::manager::RepositorySpec;
use ovm_core::model::*;

use crate::boundary::{id_arg, job_entry, opt_str_arg, str_arg};
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
            name: str_arg(name, "name")?.to_owned(),
            backing: RepositoryBacking::FileSystem(FileSystemId(id_arg(file_system, "file_system")?)),
            owner_pool: match opt_str_arg(pool, "pool")? {
                Some(_) => Some(PoolId(id_arg(pool, "pool")?)),
                None => None,
            },
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
            str_arg(name, "name")?,
            str_arg(kernel_source, "kernel_source")?,
            opt_str_arg(initrd_source, "initrd_source")?,
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
            str_arg(name, "name")?,
            size_bytes,
            false,
        )
    })
}
