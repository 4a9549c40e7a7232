//! Generic access to every object type: lookup, list, create, edit and delete, with JSON records.
//!
//! Records are the serde JSON of ovm-core's model types, `{"kind":"Vm","object":{...}}` for
//! create/update, and the bare object for get/list.

use std::ffi::c_char;

use ovm_core::model::{Object, ObjectKind, ObjectRef};

use crate::boundary::{copy_out_checked, id_arg, job_entry, out_arg, put, put_json, str_arg, with_mgr};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::{ovm_result, FfiError};

/// Object kinds. The values are ovm-core's stable `ObjectKind` codes (a test checks the header
/// against them).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_object_kind {
    /// Server.
    OVM_OBJECT_SERVER = 0,
    /// Server pool.
    OVM_OBJECT_SERVER_POOL = 1,
    /// File server.
    OVM_OBJECT_FILE_SERVER = 2,
    /// Storage array.
    OVM_OBJECT_STORAGE_ARRAY = 3,
    /// File system.
    OVM_OBJECT_FILE_SYSTEM = 4,
    /// Physical disk (LUN).
    OVM_OBJECT_PHYSICAL_DISK = 5,
    /// Access group.
    OVM_OBJECT_ACCESS_GROUP = 6,
    /// Repository.
    OVM_OBJECT_REPOSITORY = 7,
    /// Virtual disk.
    OVM_OBJECT_VIRTUAL_DISK = 8,
    /// ISO (virtual CD-ROM).
    OVM_OBJECT_VIRTUAL_CDROM = 9,
    /// Template.
    OVM_OBJECT_TEMPLATE = 10,
    /// Assembly.
    OVM_OBJECT_ASSEMBLY = 11,
    /// Network.
    OVM_OBJECT_NETWORK = 12,
    /// Port.
    OVM_OBJECT_PORT = 13,
    /// Bond.
    OVM_OBJECT_BOND_PORT = 14,
    /// VLAN interface.
    OVM_OBJECT_VLAN_INTERFACE = 15,
    /// Virtual machine.
    OVM_OBJECT_VM = 16,
    /// Anti-affinity group.
    OVM_OBJECT_ANTI_AFFINITY_GROUP = 17,
    /// Tag.
    OVM_OBJECT_TAG = 18,
    /// Job.
    OVM_OBJECT_JOB = 19,
    /// Event.
    OVM_OBJECT_EVENT = 20,
}

/// Map a C kind number to ovm-core's kind (`OVM_RESULT_INVALID_ENUM` when out of range).
pub(crate) fn kind_arg(k: u32) -> Result<ObjectKind, FfiError> {
    ObjectKind::from_code(k).ok_or_else(|| {
        FfiError::new(ovm_result::OVM_RESULT_INVALID_ENUM, format!("{k} is not an ovm_object_kind"))
    })
}

/// The C number of an ovm-core kind: its stable code.
pub(crate) fn kind_code(k: ObjectKind) -> u32 {
    k.code()
}

pub(crate) fn inventory_kind(k: ObjectKind) -> Result<ObjectKind, FfiError> {
    if matches!(k, ObjectKind::Job | ObjectKind::Event) {
        Err(FfiError::new(
            ovm_result::OVM_RESULT_INVALID_ARGUMENT,
            "jobs and events have their own functions",
        ))
    } else {
        Ok(k)
    }
}

/// One object as JSON (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_object_get_json(
    mgr: *const ovm_manager,
    kind: u32,
    id: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let kind = inventory_kind(kind_arg(kind)?)?;
        let id = id_arg(id, "id")?;
        let out = out_arg(out, "out")?;
        put_json(out, &m.api.object(ObjectRef::new(kind, id))?)
    })
}

/// The id of the object of `kind` named `name`, into `buf` (37 bytes with the NUL).
#[no_mangle]
pub unsafe extern "C" fn ovm_object_lookup_by_name(
    mgr: *const ovm_manager,
    kind: u32,
    name: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let kind = inventory_kind(kind_arg(kind)?)?;
        let name = str_arg(name, "name")?;
        let id = m.api.find(kind, name.to_owned())?.uuid();
        copy_out_checked(&id.to_string(), buf, len, out_n)
    })
}

/// Number of objects of `kind`.
#[no_mangle]
pub unsafe extern "C" fn ovm_object_count(mgr: *const ovm_manager, kind: u32, out: *mut usize) -> ovm_result {
    with_mgr!(mgr, |m| {
        let kind = inventory_kind(kind_arg(kind)?)?;
        let out = out_arg(out, "out")?;
        put(out, m.api.objects(kind)?.len());
        Ok(())
    })
}

/// Every object of `kind` as a JSON array in name order (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_object_list_json(
    mgr: *const ovm_manager,
    kind: u32,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let kind = inventory_kind(kind_arg(kind)?)?;
        let out = out_arg(out, "out")?;
        let all: Vec<Object> = m.api.objects(kind)?;
        put_json(out, &all)
    })
}

fn parse_object(json: &str) -> Result<Object, FfiError> {
    serde_json::from_str::<Object>(json).map_err(|e| {
        FfiError::new(ovm_result::OVM_RESULT_INVALID_ARGUMENT, format!("not an ovm object record: {e}"))
    })
}

/// Create an object from its JSON record `{"kind":"Tag","object":{...}}`. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_object_create_json(
    mgr: *const ovm_manager,
    json: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.create_object(parse_object(str_arg(json, "json")?)?))
}

/// Replace an object with an edited JSON record (same shape as for create). Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_object_update_json(
    mgr: *const ovm_manager,
    json: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.update_object(parse_object(str_arg(json, "json")?)?))
}

/// Delete an object nothing refers to. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_object_delete(
    mgr: *const ovm_manager,
    kind: u32,
    id: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let kind = inventory_kind(kind_arg(kind)?)?;
        m.delete_object(ObjectRef::new(kind, id_arg(id, "id")?))
    })
}
