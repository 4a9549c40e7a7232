//! Typed operations on storage providers: file servers, file systems, storage arrays, physical
//! disks and access groups (records the manager keeps; the repository calls act on them).

use std::ffi::c_char;

use ovm_core::model::*;

use ovm_core::manager::{FileServerSpec, StorageArraySpec};

use crate::boundary::{id_arg, id_list, job_entry, opt_id_arg, opt_str_arg, put_json, str_arg, with_mgr};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::{ovm_result, FfiError};

/// `ovm_file_server_create` kind: a server's local file system.
pub const OVM_FILE_SERVER_LOCAL: u32 = 0;
/// `ovm_file_server_create` kind: an NFS server.
pub const OVM_FILE_SERVER_NFS: u32 = 1;
/// A file server's kind: reached through an external storage plug-in (registered with
/// `ovm_file_server_register_external`).
pub const OVM_FILE_SERVER_EXTERNAL: u32 = 2;

/// The names of the `OVM_FILE_SERVER_*` kinds, by number.
const FILE_SERVER_KINDS: [&str; 3] = ["Local", "Nfs", "External"];

/// `ovm_storage_array_create` kind: iSCSI.
pub const OVM_STORAGE_ARRAY_ISCSI: u32 = 0;
/// `ovm_storage_array_create` kind: Fibre Channel.
pub const OVM_STORAGE_ARRAY_FIBRE_CHANNEL: u32 = 1;
/// `ovm_storage_array_create` kind: a vendor plug-in that creates LUNs and access groups.
pub const OVM_STORAGE_ARRAY_VENDOR: u32 = 2;

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
            name: str_arg(name, "name")?.to_owned(),
            kind: enum_value("file server kind", &FILE_SERVER_KINDS, kind)?,
            access_host: opt_str_arg(access_host, "access_host")?.unwrap_or_default().to_owned(),
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
        put_json(out, &m.mgr.file_systems_of(f))
    })
}

/// Record a file server (`OVM_FILE_SERVER_*` `kind`) reached at `access_host`. The job's result is
/// the file server.
#[no_mangle]
pub unsafe extern "C" fn ovm_file_server_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    kind: u32,
    access_host: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.create_object(Object::FileServer(FileServer {
            id: FileServerId::new(),
            name: str_arg(name, "name")?.to_owned(),
            description: String::new(),
            kind: enum_value("file server kind", &FILE_SERVER_KINDS, kind)?,
            access_host: str_arg(access_host, "access_host")?.to_owned(),
            admin_servers: Vec::new(),
            refreshed: false,
            plugin: String::new(),
        }))
    })
}

/// Record a file system exported by `file_server` at `path`, of `size_bytes` with `free_bytes`
/// free. The job's result is the file system (what `ovm_repository_create` takes).
#[no_mangle]
pub unsafe extern "C" fn ovm_file_system_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    file_server: *const c_char,
    path: *const c_char,
    size_bytes: u64,
    free_bytes: u64,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.create_object(Object::FileSystem(FileSystem {
            id: FileSystemId::new(),
            name: str_arg(name, "name")?.to_owned(),
            description: String::new(),
            location: FileSystemLocation::FileServer(FileServerId(id_arg(file_server, "file_server")?)),
            path: str_arg(path, "path")?.to_owned(),
            size_bytes,
            free_bytes,
        }))
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
            name: str_arg(name, "name")?.to_owned(),
            access_host: str_arg(access_host, "access_host")?.to_owned(),
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
        m.present_storage_array_to(StorageArrayId(id_arg(array, "array")?), &servers)
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
        put_json(out, &m.mgr.physical_disks_of(a))
    })
}

/// Record a storage array (`OVM_STORAGE_ARRAY_*` `kind`) managed through `plugin` at
/// `access_host:access_port`. The job's result is the array.
#[no_mangle]
pub unsafe extern "C" fn ovm_storage_array_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    kind: u32,
    plugin: *const c_char,
    access_host: *const c_char,
    access_port: u16,
    capacity_bytes: u64,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.create_object(Object::StorageArray(StorageArray {
            id: StorageArrayId::new(),
            name: str_arg(name, "name")?.to_owned(),
            description: String::new(),
            kind: enum_value("storage array kind", &["Iscsi", "FibreChannel", "Vendor"], kind)?,
            plugin: str_arg(plugin, "plugin")?.to_owned(),
            access_host: str_arg(access_host, "access_host")?.to_owned(),
            access_port,
            admin_servers: Vec::new(),
            capacity_bytes,
            presented_to: Vec::new(),
        }))
    })
}

/// Record a physical disk of `size_bytes`: a LUN of `array`, or (with `array` NULL) a local disk
/// of `local_server`. The job's result is the disk.
#[no_mangle]
pub unsafe extern "C" fn ovm_physical_disk_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    array: *const c_char,
    local_server: *const c_char,
    size_bytes: u64,
    shareable: bool,
    page83_id: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.create_object(Object::PhysicalDisk(PhysicalDisk {
            id: PhysicalDiskId::new(),
            name: str_arg(name, "name")?.to_owned(),
            description: String::new(),
            array: opt_id_arg(array, "array")?.map(StorageArrayId),
            local_server: opt_id_arg(local_server, "local_server")?.map(ServerId),
            size_bytes,
            shareable,
            page83_id: str_arg(page83_id, "page83_id")?.to_owned(),
            target: String::new(),
        }))
    })
}

/// Record an access group of `array` (its servers and disks are set with `ovm_access_group_set`).
/// The job's result is the group.
#[no_mangle]
pub unsafe extern "C" fn ovm_access_group_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    array: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.create_object(Object::AccessGroup(AccessGroup {
            id: AccessGroupId::new(),
            name: str_arg(name, "name")?.to_owned(),
            description: String::new(),
            array: StorageArrayId(id_arg(array, "array")?),
            servers: Vec::new(),
            disks: Vec::new(),
        }))
    })
}

/// Add (`on` true) or remove a server (`disk` false) or a physical disk (`disk` true) of an access
/// group: its servers see its disks. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_access_group_set(
    mgr: *const ovm_manager,
    group: *const c_char,
    disk: bool,
    member: *const c_char,
    on: bool,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let member = id_arg(member, "member")?;
        let mut g = (*m.get::<AccessGroup>(id_arg(group, "group")?)?).clone();
        if disk {
            m.get::<PhysicalDisk>(member)?;
            g.disks.retain(|d| d.0 != member);
            if on {
                g.disks.push(PhysicalDiskId(member));
            }
        } else {
            m.server(member)?;
            g.servers.retain(|s| s.0 != member);
            if on {
                g.servers.push(ServerId(member));
            }
        }
        m.update_object(Object::AccessGroup(g))
    })
}
