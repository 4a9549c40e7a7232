//! Migration pre-checks: every reason a VM cannot migrate to a server, typed
//! (`ovm_vm_migration_blockers`), as JSON (`ovm_vm_migration_blockers_json`) or as one error
//! (`ovm_vm_assert_can_migrate`).

use std::ffi::c_char;

use ovm_core::model::{MigrationBlocker, MigrationBlockerKind, ServerId, VmId};

use crate::boundary::{entry, id_arg, out_arg, owned, put, put_json, with_mgr};
use crate::handles::ovm_manager;
use crate::objects::kind_code;
use crate::result::{ovm_result, FfiError};

/// What kind of obstacle a migration blocker is (`ovm_migration_blocker.kind`): the stable numbers
/// of ovm-core's `MigrationBlockerKind`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_migration_blocker_kind {
    /// The VM is already on the target server.
    OVM_MIGRATION_BLOCKER_SAME_SERVER = 1,
    /// The target is not a server of the VM's pool (or the VM is in no pool).
    OVM_MIGRATION_BLOCKER_OTHER_POOL = 2,
    /// The VM is neither running (live migration) nor stopped (a move).
    OVM_MIGRATION_BLOCKER_VM_STATE = 3,
    /// The target is in maintenance mode.
    OVM_MIGRATION_BLOCKER_TARGET_IN_MAINTENANCE = 4,
    /// The target is not running, or the manager is not connected to it.
    OVM_MIGRATION_BLOCKER_TARGET_UNAVAILABLE = 5,
    /// The target does not have the VirtualMachine role.
    OVM_MIGRATION_BLOCKER_TARGET_NOT_FOR_VMS = 6,
    /// The target cannot give the VM its memory.
    OVM_MIGRATION_BLOCKER_INSUFFICIENT_MEMORY = 7,
    /// The target's CPU lacks features of the source's, or is of another vendor.
    OVM_MIGRATION_BLOCKER_CPU_INCOMPATIBLE = 8,
    /// A repository of the VM is not presented to (or not mounted on) the target.
    OVM_MIGRATION_BLOCKER_REPOSITORY_UNAVAILABLE = 9,
    /// A LUN attached to the VM is not reachable from the target.
    OVM_MIGRATION_BLOCKER_LUN_UNAVAILABLE = 10,
    /// A network of the VM's VNICs has no member on the target.
    OVM_MIGRATION_BLOCKER_NETWORK_MISSING = 11,
    /// The hypervisors' releases (major.minor) differ.
    OVM_MIGRATION_BLOCKER_XEN_VERSION_MISMATCH = 12,
    /// The toolstacks differ.
    OVM_MIGRATION_BLOCKER_TOOLSTACK_MISMATCH = 13,
    /// A VM of one of the VM's anti-affinity groups runs on the target.
    OVM_MIGRATION_BLOCKER_ANTI_AFFINITY = 14,
    /// The target's hypervisor cannot run the VM's domain type.
    OVM_MIGRATION_BLOCKER_DOMAIN_TYPE_UNSUPPORTED = 15,
    /// The source's hypervisor cannot live-migrate the VM's domain type (a PV guest needs shadow
    /// paging).
    OVM_MIGRATION_BLOCKER_LIVE_MIGRATION_UNSUPPORTED = 16,
}

/// One reason a migration would fail, filled in by `ovm_vm_migration_blockers`. `detail` is owned
/// by the array: free the array's details with `ovm_migration_blockers_free`.
#[repr(C)]
#[derive(Debug)]
pub struct ovm_migration_blocker {
    /// An `ovm_migration_blocker_kind`.
    pub kind: u32,
    /// Whether the blocker is about an object (then `object_kind` and `object_id` name it).
    pub has_object: bool,
    /// The `ovm_object_kind` of that object: the target or source server, a repository, storage
    /// array or LUN, a network, a VM of the anti-affinity group.
    pub object_kind: u32,
    /// Its id, NUL-terminated (empty when `has_object` is false).
    pub object_id: [c_char; 37],
    /// A sentence naming the objects and numbers, NUL-terminated UTF-8.
    pub detail: *mut c_char,
}

impl ovm_migration_blocker {
    fn from_core(b: &MigrationBlocker) -> Self {
        let mut object_id = [0 as c_char; 37];
        if let Some(o) = &b.object {
            for (dst, src) in object_id.iter_mut().zip(o.id.to_string().bytes()) {
                *dst = src as c_char;
            }
        }
        ovm_migration_blocker {
            kind: b.kind.code(),
            has_object: b.object.is_some(),
            object_kind: b.object.map_or(0, |o| kind_code(o.kind)),
            object_id,
            detail: owned(b.detail.clone()),
        }
    }
}

/// Every reason migrating `vm` to `server` would fail now, written to `out[0..*out_n]` (none:
/// `*out_n` is 0 and the migration can go). `cap` is how many `out` holds (`out` may be NULL when
/// `cap` is 0). If more than `cap` blockers are found, returns `OVM_RESULT_BUFFER_TOO_SMALL` with
/// `*out_n` set to their number and nothing written to `out`. Free the details written with
/// `ovm_migration_blockers_free(out, *out_n)`. `OVM_RESULT_NOT_FOUND` if the VM or server does not
/// exist.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_migration_blockers(
    mgr: *const ovm_manager,
    vm: *const c_char,
    server: *const c_char,
    out: *mut ovm_migration_blocker,
    cap: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let (vm, server) = (VmId(id_arg(vm, "vm")?), ServerId(id_arg(server, "server")?));
        let out_n = out_arg(out_n, "out_n")?;
        if cap > 0 {
            out_arg(out, "out")?;
        }
        let found = m.api.migration_blockers(vm, server)?;
        put(out_n, found.len());
        if found.len() > cap {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_BUFFER_TOO_SMALL,
                format!("{} migration blockers found, room for {cap}", found.len()),
            ));
        }
        for (i, b) in found.iter().enumerate() {
            // i < found.len() <= cap, and out is valid for cap writes per the contract.
            put(out.add(i), ovm_migration_blocker::from_core(b));
        }
        Ok(())
    })
}

/// Free the details of the `n` blockers at `blockers` (written by `ovm_vm_migration_blockers`)
/// and set them to NULL; the array itself is the caller's. NULL `blockers` does nothing.
#[no_mangle]
pub unsafe extern "C" fn ovm_migration_blockers_free(blockers: *mut ovm_migration_blocker, n: usize) {
    let _ = entry!({
        if blockers.is_null() {
            return Ok(());
        }
        for i in 0..n {
            // i < n, and blockers is valid for n elements per the contract.
            let b = &mut *blockers.add(i);
            crate::boundary::ovm_string_free(b.detail);
            b.detail = std::ptr::null_mut();
        }
        Ok(())
    });
}

/// Every reason migrating `vm` to `server` would fail now, as a JSON array of
/// `{"kind": "TargetInMaintenance", "object": {"kind": "Server", "id": "..."} or null,
/// "detail": "..."}` (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_migration_blockers_json(
    mgr: *const ovm_manager,
    vm: *const c_char,
    server: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let (vm, server) = (VmId(id_arg(vm, "vm")?), ServerId(id_arg(server, "server")?));
        put_json(out, &m.api.migration_blockers(vm, server)?)
    })
}

/// `OVM_RESULT_OK` if `vm` can migrate to `server` now; otherwise `OVM_RESULT_INVALID_STATE`, and
/// `ovm_last_error_message` lists every reason.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_assert_can_migrate(
    mgr: *const ovm_manager,
    vm: *const c_char,
    server: *const c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let (vm, server) = (VmId(id_arg(vm, "vm")?), ServerId(id_arg(server, "server")?));
        Ok(m.api.assert_can_migrate(vm, server)?)
    })
}

/// A static, NUL-terminated name of a migration blocker kind, e.g. `"TargetInMaintenance"`;
/// NULL for a number that is not one. Do not free.
#[no_mangle]
pub extern "C" fn ovm_migration_blocker_kind_name(kind: u32) -> *const c_char {
    match MigrationBlockerKind::from_code(kind) {
        Some(k) => NAMES.iter().find(|(c, _)| *c == k).map_or(std::ptr::null(), |(_, n)| n.as_ptr().cast()),
        None => std::ptr::null(),
    }
}

/// The names of the kinds, NUL-terminated (tested equal to `MigrationBlockerKind::name`).
const NAMES: [(MigrationBlockerKind, &str); 16] = {
    use MigrationBlockerKind::*;
    [
        (SameServer, "SameServer\0"),
        (OtherPool, "OtherPool\0"),
        (VmState, "VmState\0"),
        (TargetInMaintenance, "TargetInMaintenance\0"),
        (TargetUnavailable, "TargetUnavailable\0"),
        (TargetNotForVms, "TargetNotForVms\0"),
        (InsufficientMemory, "InsufficientMemory\0"),
        (CpuIncompatible, "CpuIncompatible\0"),
        (RepositoryUnavailable, "RepositoryUnavailable\0"),
        (LunUnavailable, "LunUnavailable\0"),
        (NetworkMissing, "NetworkMissing\0"),
        (XenVersionMismatch, "XenVersionMismatch\0"),
        (ToolstackMismatch, "ToolstackMismatch\0"),
        (AntiAffinity, "AntiAffinity\0"),
        (DomainTypeUnsupported, "DomainTypeUnsupported\0"),
        (LiveMigrationUnsupported, "LiveMigrationUnsupported\0"),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn kinds_and_names_are_the_cores() {
        assert_eq!(NAMES.len(), MigrationBlockerKind::ALL.len());
        for (k, name) in NAMES {
            assert_eq!(name.trim_end_matches('\0'), k.name());
            // SAFETY: a static NUL-terminated string.
            let c = unsafe { CStr::from_ptr(ovm_migration_blocker_kind_name(k.code())) };
            assert_eq!(c.to_str().unwrap(), k.name());
        }
        assert!(ovm_migration_blocker_kind_name(0).is_null());
        assert!(ovm_migration_blocker_kind_name(17).is_null());
        use ovm_migration_blocker_kind::*;
        let c = [
            OVM_MIGRATION_BLOCKER_SAME_SERVER,
            OVM_MIGRATION_BLOCKER_OTHER_POOL,
            OVM_MIGRATION_BLOCKER_VM_STATE,
            OVM_MIGRATION_BLOCKER_TARGET_IN_MAINTENANCE,
            OVM_MIGRATION_BLOCKER_TARGET_UNAVAILABLE,
            OVM_MIGRATION_BLOCKER_TARGET_NOT_FOR_VMS,
            OVM_MIGRATION_BLOCKER_INSUFFICIENT_MEMORY,
            OVM_MIGRATION_BLOCKER_CPU_INCOMPATIBLE,
            OVM_MIGRATION_BLOCKER_REPOSITORY_UNAVAILABLE,
            OVM_MIGRATION_BLOCKER_LUN_UNAVAILABLE,
            OVM_MIGRATION_BLOCKER_NETWORK_MISSING,
            OVM_MIGRATION_BLOCKER_XEN_VERSION_MISMATCH,
            OVM_MIGRATION_BLOCKER_TOOLSTACK_MISMATCH,
            OVM_MIGRATION_BLOCKER_ANTI_AFFINITY,
            OVM_MIGRATION_BLOCKER_DOMAIN_TYPE_UNSUPPORTED,
            OVM_MIGRATION_BLOCKER_LIVE_MIGRATION_UNSUPPORTED,
        ];
        let core: Vec<u32> = MigrationBlockerKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(c.iter().map(|k| *k as u32).collect::<Vec<_>>(), core);
    }
}
