//! Typed operations on storage providers: file servers and their file systems, storage arrays and
//! their physical disks (LUNs), access groups — each discovered from the storage or made on it,
//! never recorded by hand.

use std::ffi::c_char;

use ovm_core::model::*;

use ovm_core::manager::{ArrayManagementSpec, FileServerSpec, StorageArraySpec};

use crate::boundary::{id_arg, id_list, job_entry, put_json, str_arg, str_list, with_mgr};
use crate::boundary::{opt_string_arg, string_arg};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::{ovm_result, FfiError};

/// `ovm_file_server_register` kind: a server's local file system.
pub const OVM_FILE_SERVER_LOCAL: u32 = 0;
/// `ovm_file_server_register` kind: an NFS server.
pub const OVM_FILE_SERVER_NFS: u32 = 1;
/// A file server's kind: reached through an external storage plug-in (registered with
/// `ovm_file_server_register_external`).
pub const OVM_FILE_SERVER_EXTERNAL: u32 = 2;

/// The names of the `OVM_FILE_SERVER_*` kinds, by number.
const FILE_SERVER_KINDS: [&str; 3] = ["Local", "Nfs", "External"];

fn enum_value<T: serde::de::DeserializeOwned>(what: &str, names: &[&str], code: u32) -> Result<T, FfiError> {
    let name = names.get(code as usize).ok_or_else(|| {
        FfiError::new(ovm_result::OVM_RESULT_INVALID_ENUM, format!("{code} is not a {what}"))
    })?;
    serde_json::from_value(serde_json::Value::String((*name).to_owned()))
        .map_err(|e| FfiError::new(ovm_result::OVM_RESULT_INTERNAL, format!("{what} {name}: {e}")))
}

/// Register a file server (`OVM_FILE_SERVER_*` `kind`) and discover its file systems, with their
/// real sizes, through the first reachable of the `n_admin_servers` servers in `admin_servers`. An
/// NFS server is reached at `access_host`; a local one (`access_host` NULL or empty) is the file
/// system of its one admin server. Nothing is stored if discovery fails. The job's result is the
/// file server; `ovm_file_system_list_json` lists what was found. A file server reached through an
/// external plug-in is registered with `ovm_file_server_register_external`.
#[no_mangle]
pub unsafe extern "C" fn ovm_file_server_register(
    mgr: *const ovm_manager,
    name: *const c_char,
    kind: u32,
    access_host: *const c_char,
    admin_servers: *const *const c_char,
    n_admin_servers: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        if kind == OVM_FILE_SERVER_EXTERNAL {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_ARGUMENT,
                "an external file server needs its plug-in: ovm_file_server_register_external",
            ));
        }
        let spec = FileServerSpec {
            name: string_arg(name, "name")?.to_owned(),
            kind: enum_value("file server kind", &FILE_SERVER_KINDS, kind)?,
            access_host: opt_string_arg(access_host, "access_host")?.unwrap_or_default().to_owned(),
            admin_servers: id_list(admin_servers, n_admin_servers, "admin_servers")?
                .into_iter()
                .map(ServerId)
                .collect(),
            plugin: String::new(),
        };
        m.register_file_server(spec)
    })
}

/// Register a file server reached through the external storage plug-in `plugin` (installed on
/// the admin servers and on every server its file systems are presented to), which names it
/// `host` (what `host` means is the plug-in's), and discover its file systems through the first
/// reachable of the `n_admin_servers` servers in `admin_servers`. Nothing is stored if discovery
/// fails. The job's result is the file server.
#[no_mangle]
pub unsafe extern "C" fn ovm_file_server_register_external(
    mgr: *const ovm_manager,
    name: *const c_char,
    plugin: *const c_char,
    host: *const c_char,
    admin_servers: *const *const c_char,
    n_admin_servers: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let admins =
            id_list(admin_servers, n_admin_servers, "admin_servers")?.into_iter().map(ServerId).collect();
        m.register_file_server(FileServerSpec::external(
            str_arg(name, "name")?,
            str_arg(plugin, "plugin")?,
            str_arg(host, "host")?,
            admins,
        ))
    })
}

/// Discover a file server's file systems again: sizes, new ones, vanished ones.
#[no_mangle]
pub unsafe extern "C" fn ovm_file_server_refresh(
    mgr: *const ovm_manager,
    file_server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.refresh_file_server(FileServerId(id_arg(file_server, "file_server")?)))
}

/// The file systems of `file_server`, as a JSON array in name order.
#[no_mangle]
pub unsafe extern "C" fn ovm_file_system_list_json(
    mgr: *const ovm_manager,
    file_server: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let f = FileServerId(id_arg(file_server, "file_server")?);
        put_json(out, &m.api.file_systems_of(f)?)
    })
}

/// Register a generic iSCSI array at `access_host:access_port`: the first reachable of the
/// `n_admin_servers` servers in `admin_servers` discovers the targets that admit it, logs in, and
/// its LUNs become physical disks with their real sizes and identifiers
/// (`ovm_physical_disk_list_json`). Nothing is stored if the portal does not answer. The job's
/// result is the array.
#[no_mangle]
pub unsafe extern "C" fn ovm_storage_array_register(
    mgr: *const ovm_manager,
    name: *const c_char,
    access_host: *const c_char,
    access_port: u16,
    admin_servers: *const *const c_char,
    n_admin_servers: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let spec = StorageArraySpec {
            name: string_arg(name, "name")?.to_owned(),
            access_host: string_arg(access_host, "access_host")?.to_owned(),
            access_port,
            admin_servers: id_list(admin_servers, n_admin_servers, "admin_servers")?
                .into_iter()
                .map(ServerId)
                .collect(),
            management: None,
        };
        m.register_storage_array(spec)
    })
}

/// Register a vendor-style array whose iSCSI portal is `access_host:access_port`, its LUNs and
/// access groups managed through the storage plug-in `plugin` (NULL: `"ovm-lio"`, ovm's LIO
/// plug-in) at `mgmt_host:mgmt_port` (3261 for `ovm-lio`) as `username` with `password` (kept in
/// the manager's database, never logged nor in an object). The first of the `n_admin_servers`
/// servers in `admin_servers` reaches the management interface and pins its certificate:
/// `fingerprint` (`"sha256:..."`), or NULL to pin the one it presents now; then the array's
/// targets and LUNs are listed, the LUNs becoming physical disks. Nothing is stored if the call
/// fails. Errors: `OVM_RESULT_INVALID_ARGUMENT` (a bad name, host, portal or empty password), and
/// through the job `OVM_RESULT_PERMISSION_DENIED` (credentials refused), `OVM_RESULT_BACKEND` (no
/// interface answers, or its certificate is not `fingerprint`), `OVM_RESULT_UNSUPPORTED` (an
/// unknown plug-in). The job's result is the array.
#[no_mangle]
pub unsafe extern "C" fn ovm_storage_array_register_vendor(
    mgr: *const ovm_manager,
    name: *const c_char,
    access_host: *const c_char,
    access_port: u16,
    admin_servers: *const *const c_char,
    n_admin_servers: usize,
    plugin: *const c_char,
    mgmt_host: *const c_char,
    mgmt_port: u16,
    username: *const c_char,
    password: *const c_char,
    fingerprint: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let mut management = ArrayManagementSpec::lio(
            str_arg(mgmt_host, "mgmt_host")?,
            str_arg(username, "username")?,
            str_arg(password, "password")?,
        );
        if let Some(p) = opt_string_arg(plugin, "plugin")? {
            p.clone_into(&mut management.plugin);
        }
        management.port = mgmt_port;
        management.fingerprint = opt_string_arg(fingerprint, "fingerprint")?;
        let spec = StorageArraySpec {
            name: string_arg(name, "name")?.to_owned(),
            access_host: string_arg(access_host, "access_host")?.to_owned(),
            access_port,
            admin_servers: id_list(admin_servers, n_admin_servers, "admin_servers")?
                .into_iter()
                .map(ServerId)
                .collect(),
            management: Some(management),
        };
        m.register_storage_array(spec)
    })
}

/// Create a LUN `name` of `size_bytes` on a vendor-style array, on its target `target` (NULL: its
/// first target). It becomes a physical disk that no server sees until it is presented to an
/// access group (`ovm_lun_present`). Errors: `OVM_RESULT_INVALID_ARGUMENT` (a bad name, a size of
/// 0, a target the array does not have), `OVM_RESULT_INVALID_STATE` (a generic array), and through
/// the job `OVM_RESULT_CONFLICT` (the target has a LUN of that name). The job's result is the
/// disk.
#[no_mangle]
pub unsafe extern "C" fn ovm_lun_create(
    mgr: *const ovm_manager,
    array: *const c_char,
    target: *const c_char,
    name: *const c_char,
    size_bytes: u64,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.create_lun(
            StorageArrayId(id_arg(array, "array")?),
            opt_string_arg(target, "target")?,
            string_arg(name, "name")?,
            size_bytes,
        )
    })
}

/// Clone a LUN of a vendor-style array (thin where the array can) into a new LUN `name` on the
/// same target, presented to nobody. Errors: `OVM_RESULT_INVALID_ARGUMENT` (a bad name, a disk
/// that is not a LUN of an array), and through the job `OVM_RESULT_CONFLICT` (a LUN of that name
/// exists). The job's result is the new disk.
#[no_mangle]
pub unsafe extern "C" fn ovm_lun_clone(
    mgr: *const ovm_manager,
    disk: *const c_char,
    name: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.clone_lun(PhysicalDiskId(id_arg(disk, "disk")?), string_arg(name, "name")?))
}

/// Grow a LUN of a vendor-style array to `size_bytes`; the servers that see it rescan. Errors:
/// `OVM_RESULT_INVALID_ARGUMENT` (a size below the LUN's: a LUN never shrinks).
#[no_mangle]
pub unsafe extern "C" fn ovm_lun_resize(
    mgr: *const ovm_manager,
    disk: *const c_char,
    size_bytes: u64,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.resize_lun(PhysicalDiskId(id_arg(disk, "disk")?), size_bytes))
}

/// Delete a LUN of a vendor-style array with its presentations: the servers that see it forget
/// it first. Not undoable. Errors: `OVM_RESULT_CONFLICT` (a VM or a repository uses it).
#[no_mangle]
pub unsafe extern "C" fn ovm_lun_delete(
    mgr: *const ovm_manager,
    disk: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.delete_lun(PhysicalDiskId(id_arg(disk, "disk")?)))
}

/// Create an access group `name` on a vendor-style array with the initiators of the `n_servers`
/// servers in `servers` (on each of the array's targets); LUNs presented to it
/// (`ovm_lun_present`) are seen by those servers. Errors: `OVM_RESULT_INVALID_ARGUMENT` (a bad name), `OVM_RESULT_NOT_FOUND` (a server),
/// `OVM_RESULT_CONFLICT` (the array has a group of that name). The job's result is the group.
#[no_mangle]
pub unsafe extern "C" fn ovm_access_group_create(
    mgr: *const ovm_manager,
    array: *const c_char,
    name: *const c_char,
    servers: *const *const c_char,
    n_servers: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let servers: Vec<ServerId> =
            id_list(servers, n_servers, "servers")?.into_iter().map(ServerId).collect();
        m.create_access_group(StorageArrayId(id_arg(array, "array")?), string_arg(name, "name")?, servers)
    })
}

/// Delete an access group of a vendor-style array, on the array too. Errors:
/// `OVM_RESULT_CONFLICT` (it still presents a LUN: `ovm_lun_unpresent` first).
#[no_mangle]
pub unsafe extern "C" fn ovm_access_group_delete(
    mgr: *const ovm_manager,
    group: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.delete_access_group(AccessGroupId(id_arg(group, "group")?)))
}

/// Present a LUN of a vendor-style array to an access group of the same array: the array maps it,
/// then each server of the group logs in to its target (or rescans) until it sees it. One job: a
/// server that does not see it undoes the presentation and the logins. Errors:
/// `OVM_RESULT_INVALID_ARGUMENT` (a LUN of another array), and through the job
/// `OVM_RESULT_BACKEND` (a server does not see it).
#[no_mangle]
pub unsafe extern "C" fn ovm_lun_present(
    mgr: *const ovm_manager,
    group: *const c_char,
    disk: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.present_lun(AccessGroupId(id_arg(group, "group")?), PhysicalDiskId(id_arg(disk, "disk")?))
    })
}

/// Stop presenting a LUN to an access group: the group's servers forget it, then the array unmaps
/// it. Errors: `OVM_RESULT_INVALID_ARGUMENT` (not presented to the group), `OVM_RESULT_CONFLICT` (a
/// VM or a repository uses it).
#[no_mangle]
pub unsafe extern "C" fn ovm_lun_unpresent(
    mgr: *const ovm_manager,
    group: *const c_char,
    disk: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.unpresent_lun(AccessGroupId(id_arg(group, "group")?), PhysicalDiskId(id_arg(disk, "disk")?))
    })
}

/// For tests and demonstrations: give the simulated world a vendor-style array whose management
/// interface is `host` (plug-in `"ovm-lio"`), accepting `username` and `password`, serving the
/// `n_targets` iSCSI targets in `targets`, with no LUN yet.
#[no_mangle]
pub unsafe extern "C" fn ovm_sim_add_managed_array(
    mgr: *const ovm_manager,
    host: *const c_char,
    username: *const c_char,
    password: *const c_char,
    targets: *const *const c_char,
    n_targets: usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let targets = str_list(targets, n_targets, "targets")?;
        m.local_only("ovm_sim_add_managed_array")?.sim().add_managed_array(
            str_arg(host, "host")?,
            str_arg(username, "username")?,
            str_arg(password, "password")?,
            &targets,
        );
        Ok(())
    })
}

/// For tests and demonstrations: give the simulated NFS server `host` an export `export` of
/// `capacity_bytes` (discovered by `ovm_file_server_register`). Once a host has an export,
/// mounting one it does not export fails.
#[no_mangle]
pub unsafe extern "C" fn ovm_sim_add_nfs_export(
    mgr: *const ovm_manager,
    host: *const c_char,
    export: *const c_char,
    capacity_bytes: u64,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        m.local_only("ovm_sim_add_nfs_export")?.sim().add_nfs_export(
            str_arg(host, "host")?,
            str_arg(export, "export")?,
            capacity_bytes,
        );
        Ok(())
    })
}

/// For tests and demonstrations: give the simulated generic array serving the iSCSI target
/// `target` a LUN `name` of `size_bytes` (discovered by `ovm_storage_array_register`, which any
/// portal reaches on the simulator).
#[no_mangle]
pub unsafe extern "C" fn ovm_sim_add_lun(
    mgr: *const ovm_manager,
    target: *const c_char,
    name: *const c_char,
    size_bytes: u64,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        m.local_only("ovm_sim_add_lun")?.sim().add_lun(
            str_arg(target, "target")?,
            str_arg(name, "name")?,
            size_bytes,
        );
        Ok(())
    })
}

/// Log the `n_servers` servers in `servers` in to every target of a generic array, in one job: a
/// server that fails is logged out again on the others.
#[no_mangle]
pub unsafe extern "C" fn ovm_storage_array_present_to(
    mgr: *const ovm_manager,
    array: *const c_char,
    servers: *const *const c_char,
    n_servers: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let servers: Vec<ServerId> =
            id_list(servers, n_servers, "servers")?.into_iter().map(ServerId).collect();
        m.present_storage_array_to(StorageArrayId(id_arg(array, "array")?), servers)
    })
}

/// Log a server out of every target of a generic array.
#[no_mangle]
pub unsafe extern "C" fn ovm_storage_array_unpresent(
    mgr: *const ovm_manager,
    array: *const c_char,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.unpresent_storage_array(
            StorageArrayId(id_arg(array, "array")?),
            ServerId(id_arg(server, "server")?),
        )
    })
}

/// The physical disks (LUNs) of `array`, as a JSON array in name order.
#[no_mangle]
pub unsafe extern "C" fn ovm_physical_disk_list_json(
    mgr: *const ovm_manager,
    array: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let a = StorageArrayId(id_arg(array, "array")?);
        put_json(out, &m.api.physical_disks_of(a)?)
    })
}
