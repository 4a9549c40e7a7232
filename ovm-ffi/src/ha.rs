//! High availability: the failures-to-tolerate planner (`ovm_pool_ha_plan`, as a struct or as
//! JSON, and `ovm_pool_max_failures_tolerated`), and what a VM needs for HA
//! (`ovm_vm_set_high_availability`).

use std::ffi::c_char;

use ovm_core::model::{HaDecision, HaReason, HaReasonKind, HaTolerance, PoolId, VmId};

use crate::boundary::{entry, id_arg, job_entry, out_arg, owned, put, put_json, with_mgr};
use crate::handles::{ovm_job, ovm_manager};
use crate::objects::kind_code;
use crate::result::ovm_result;

/// What HA does with a VM of a failed server (`ovm_ha_decision.action`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_ha_action {
    /// Restarted on `ovm_ha_decision.target_id`.
    OVM_HA_RESTART = 1,
    /// Not restarted; the decision's reasons say why.
    OVM_HA_NOT_RESTARTED = 2,
}

/// Why a VM is not restarted or a surviving server cannot take it (`ovm_ha_reason.kind`): the
/// stable numbers of ovm-core's `HaReasonKind`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_ha_reason_kind {
    /// The VM is not HA-enabled: it stays stopped.
    OVM_HA_REASON_NOT_HA_ENABLED = 1,
    /// The server does not have the VM's memory free for guests.
    OVM_HA_REASON_NO_CAPACITY = 2,
    /// A VM of the VM's anti-affinity group runs on the server (or is restarted there first).
    OVM_HA_REASON_ANTI_AFFINITY = 3,
    /// A repository or LUN of the VM is not presented to (or not mounted on) the server.
    OVM_HA_REASON_STORAGE_NOT_PRESENTED = 4,
    /// A network of the VM's VNICs has no member on the server.
    OVM_HA_REASON_NETWORK_MISSING = 5,
    /// The server is not running, not connected, in maintenance mode or not for VMs.
    OVM_HA_REASON_SERVER_UNAVAILABLE = 6,
    /// The server's hypervisor cannot run the VM's domain type.
    OVM_HA_REASON_DOMAIN_TYPE_UNSUPPORTED = 7,
    /// No server of the pool survives (or the VM is in no pool).
    OVM_HA_REASON_NO_SERVER_LEFT = 8,
}

/// A server id, NUL-terminated.
#[repr(C)]
#[derive(Debug)]
pub struct ovm_ha_server_id {
    /// The id.
    pub id: [c_char; 37],
}

/// One reason in an `ovm_ha_decision`.
#[repr(C)]
#[derive(Debug)]
pub struct ovm_ha_reason {
    /// An `ovm_ha_reason_kind`.
    pub kind: u32,
    /// Whether the reason is about one surviving server (then `server_id` names it).
    pub has_server: bool,
    /// That server's id, NUL-terminated (empty when `has_server` is false).
    pub server_id: [c_char; 37],
    /// Whether the reason is about another object (then `object_kind` and `object_id` name it).
    pub has_object: bool,
    /// The `ovm_object_kind` of that object: a repository, storage array or LUN, a network, a VM
    /// of the anti-affinity group, the VM itself or the pool.
    pub object_kind: u32,
    /// Its id, NUL-terminated (empty when `has_object` is false).
    pub object_id: [c_char; 37],
    /// A sentence naming the objects and numbers, NUL-terminated UTF-8 (owned by the plan).
    pub detail: *mut c_char,
}

/// What HA does with one VM of a failed server.
#[repr(C)]
#[derive(Debug)]
pub struct ovm_ha_decision {
    /// The VM's id, NUL-terminated.
    pub vm_id: [c_char; 37],
    /// Its name (owned by the plan).
    pub vm_name: *mut c_char,
    /// The failed server it was on, NUL-terminated.
    pub from_id: [c_char; 37],
    /// Whether it is HA-enabled.
    pub high_availability: bool,
    /// Its start priority (1..=100, higher first).
    pub priority: u8,
    /// Its memory, MiB.
    pub memory_mib: u64,
    /// An `ovm_ha_action`.
    pub action: u32,
    /// Whether `target_id` is set (a restart).
    pub has_target: bool,
    /// The server it restarts on, NUL-terminated (empty otherwise).
    pub target_id: [c_char; 37],
    /// Why that server, or why it stays stopped, in a sentence (owned by the plan).
    pub detail: *mut c_char,
    /// For a VM not restarted: every surviving server's reasons (owned by the plan).
    pub reasons: *mut ovm_ha_reason,
    /// How many `reasons`.
    pub n_reasons: usize,
}

/// The answer of `ovm_pool_ha_plan`. Free with `ovm_ha_plan_free`.
#[repr(C)]
#[derive(Debug)]
pub struct ovm_ha_plan {
    /// How many servers fail at once.
    pub failures: u32,
    /// Whether every HA-enabled VM restarts in every case considered.
    pub tolerated: bool,
    /// Whether every combination of failed servers was planned (at most 256 of them); otherwise the
    /// most loaded servers were, and a memory bound checked.
    pub exhaustive: bool,
    /// How many combinations were planned.
    pub combinations: u64,
    /// How many servers the failures were chosen among (running, connected).
    pub servers_considered: u32,
    /// The memory bound of a check that was not exhaustive: 1 held, 0 did not, -1 not checked.
    pub memory_bound: i32,
    /// The failed servers of the worst case (owned by the plan).
    pub failed: *mut ovm_ha_server_id,
    /// How many `failed`.
    pub n_failed: usize,
    /// The worst case's decisions, in the order HA acts on them (owned by the plan).
    pub decisions: *mut ovm_ha_decision,
    /// How many `decisions`.
    pub n_decisions: usize,
    /// How many HA-enabled VMs would not restart in the worst case.
    pub n_not_restarted: usize,
}

fn id_buf(id: impl ToString) -> [c_char; 37] {
    let mut out = [0 as c_char; 37];
    for (dst, src) in out.iter_mut().zip(id.to_string().bytes().take(36)) {
        *dst = src as c_char;
    }
    out
}

/// A boxed slice handed to C as a pointer and a length.
fn leak<T>(v: Vec<T>) -> (*mut T, usize) {
    let b = v.into_boxed_slice();
    let n = b.len();
    (Box::into_raw(b).cast::<T>(), n)
}

/// Take back a slice made by `leak`.
///
/// # Safety
/// `p` and `n` came from one `leak` call and are taken back once.
unsafe fn unleak<T>(p: *mut T, n: usize) -> Vec<T> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: per the contract, a boxed slice of n elements.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) }.into_vec()
}

fn reason(r: &HaReason) -> ovm_ha_reason {
    ovm_ha_reason {
        kind: r.kind.code(),
        has_server: r.server.is_some(),
        server_id: r.server.map_or([0; 37], id_buf),
        has_object: r.object.is_some(),
        object_kind: r.object.map_or(0, |o| kind_code(o.kind)),
        object_id: r.object.map_or([0; 37], |o| id_buf(o.id)),
        detail: owned(r.detail.clone()),
    }
}

fn decision(d: &HaDecision) -> ovm_ha_decision {
    let (reasons, n_reasons) = leak(d.reasons.iter().map(reason).collect());
    ovm_ha_decision {
        vm_id: id_buf(d.vm),
        vm_name: owned(d.vm_name.clone()),
        from_id: id_buf(d.from),
        high_availability: d.high_availability,
        priority: d.priority,
        memory_mib: d.memory_mib,
        action: d.action.code(),
        has_target: d.target.is_some(),
        target_id: d.target.map_or([0; 37], id_buf),
        detail: owned(d.detail.clone()),
        reasons,
        n_reasons,
    }
}

fn plan(t: &HaTolerance) -> ovm_ha_plan {
    let (failed, decisions) = match &t.worst {
        Some(w) => (
            w.failed.iter().map(|s| ovm_ha_server_id { id: id_buf(s) }).collect(),
            w.decisions.iter().map(decision).collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let (failed, n_failed) = leak(failed);
    let (decisions, n_decisions) = leak(decisions);
    ovm_ha_plan {
        failures: t.failures,
        tolerated: t.tolerated,
        exhaustive: t.exhaustive,
        combinations: t.combinations,
        servers_considered: t.servers_considered,
        memory_bound: t.memory_bound_ok.map_or(-1, i32::from),
        failed,
        n_failed,
        decisions,
        n_decisions,
        n_not_restarted: t.not_restarted().len(),
    }
}

/// Whether `pool` absorbs `failures` of its running, connected servers failing at once (a dry run
/// of HA; every combination when there are at most 256, otherwise the most loaded servers and a
/// memory bound), with the worst case's decisions. Writes a plan to `*out`: free it with
/// `ovm_ha_plan_free`. `OVM_RESULT_NOT_FOUND` if the pool does not exist,
/// `OVM_RESULT_INVALID_ARGUMENT` if `failures` exceeds its running, connected servers.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_ha_plan(
    mgr: *const ovm_manager,
    pool: *const c_char,
    failures: u32,
    out: *mut *mut ovm_ha_plan,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let pool = PoolId(id_arg(pool, "pool")?);
        let out = out_arg(out, "out")?;
        let t = m.api.ha_plan(pool, failures)?;
        put(out, Box::into_raw(Box::new(plan(&t))));
        Ok(())
    })
}

/// Free a plan of `ovm_pool_ha_plan` and everything in it. NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn ovm_ha_plan_free(plan: *mut ovm_ha_plan) {
    let _ = entry!({
        if plan.is_null() {
            return Ok(());
        }
        // plan came from Box::into_raw in ovm_pool_ha_plan and is freed once, per the contract.
        let p = Box::from_raw(plan);
        drop(unleak(p.failed, p.n_failed));
        for d in unleak(p.decisions, p.n_decisions) {
            crate::boundary::ovm_string_free(d.vm_name);
            crate::boundary::ovm_string_free(d.detail);
            for r in unleak(d.reasons, d.n_reasons) {
                crate::boundary::ovm_string_free(r.detail);
            }
        }
        Ok(())
    });
}

/// `ovm_pool_ha_plan` as JSON: `{"pool": "...", "failures": 1, "tolerated": true, "exhaustive":
/// true, "combinations": 3, "servers_considered": 3, "memory_bound_ok": null, "worst": {"pool":
/// "...", "failed": ["..."], "decisions": [{"vm": "...", "vm_name": "...", "from": "...",
/// "high_availability": true, "priority": 50, "memory_mib": 1024, "action": "Restart" or
/// "NotRestarted", "target": "..." or null, "detail": "...", "reasons": [{"kind": "NoCapacity",
/// "server": "..." or null, "object": {...} or null, "detail": "..."}]}]} or null}` (owned: free
/// with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_ha_plan_json(
    mgr: *const ovm_manager,
    pool: *const c_char,
    failures: u32,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let pool = PoolId(id_arg(pool, "pool")?);
        put_json(out, &m.api.ha_plan(pool, failures)?)
    })
}

/// The largest number of simultaneous server failures `pool` tolerates (every HA-enabled VM
/// restarts), together with every smaller number; at most its running, connected servers less one.
/// `OVM_RESULT_NOT_FOUND` if the pool does not exist.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_max_failures_tolerated(
    mgr: *const ovm_manager,
    pool: *const c_char,
    out: *mut u32,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let pool = PoolId(id_arg(pool, "pool")?);
        let out = out_arg(out, "out")?;
        put(out, m.api.max_failures_tolerated(pool)?);
        Ok(())
    })
}

/// Enable or disable HA for `vm`, with its start priority (1..=100; higher restarts first;
/// `OVM_RESULT_INVALID_ARGUMENT` otherwise). Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_set_high_availability(
    mgr: *const ovm_manager,
    vm: *const c_char,
    enabled: bool,
    priority: u8,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let vm = VmId(id_arg(vm, "vm")?);
        m.set_vm_high_availability(vm, enabled, priority)
    })
}

/// A static, NUL-terminated name of an HA reason kind, e.g. `"NoCapacity"`; NULL for a number that
/// is not one. Do not free.
#[no_mangle]
pub extern "C" fn ovm_ha_reason_kind_name(kind: u32) -> *const c_char {
    match HaReasonKind::from_code(kind) {
        Some(k) => NAMES.iter().find(|(c, _)| *c == k).map_or(std::ptr::null(), |(_, n)| n.as_ptr().cast()),
        None => std::ptr::null(),
    }
}

/// The names of the kinds, NUL-terminated (tested equal to `HaReasonKind::name`).
const NAMES: [(HaReasonKind, &str); 8] = {
    use HaReasonKind::*;
    [
        (NotHaEnabled, "NotHaEnabled\0"),
        (NoCapacity, "NoCapacity\0"),
        (AntiAffinity, "AntiAffinity\0"),
        (StorageNotPresented, "StorageNotPresented\0"),
        (NetworkMissing, "NetworkMissing\0"),
        (ServerUnavailable, "ServerUnavailable\0"),
        (DomainTypeUnsupported, "DomainTypeUnsupported\0"),
        (NoServerLeft, "NoServerLeft\0"),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn kinds_and_names_are_the_cores() {
        assert_eq!(NAMES.len(), HaReasonKind::ALL.len());
        for (k, name) in NAMES {
            assert_eq!(name.trim_end_matches('\0'), k.name());
            // SAFETY: a static NUL-terminated string.
            let c = unsafe { CStr::from_ptr(ovm_ha_reason_kind_name(k.code())) };
            assert_eq!(c.to_str().unwrap(), k.name());
        }
        assert!(ovm_ha_reason_kind_name(0).is_null());
        assert!(ovm_ha_reason_kind_name(9).is_null());
        use ovm_ha_reason_kind::*;
        let c = [
            OVM_HA_REASON_NOT_HA_ENABLED,
            OVM_HA_REASON_NO_CAPACITY,
            OVM_HA_REASON_ANTI_AFFINITY,
            OVM_HA_REASON_STORAGE_NOT_PRESENTED,
            OVM_HA_REASON_NETWORK_MISSING,
            OVM_HA_REASON_SERVER_UNAVAILABLE,
            OVM_HA_REASON_DOMAIN_TYPE_UNSUPPORTED,
            OVM_HA_REASON_NO_SERVER_LEFT,
        ];
        let core: Vec<u32> = HaReasonKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(c.iter().map(|k| *k as u32).collect::<Vec<_>>(), core);
        use ovm_core::model::HaAction;
        assert_eq!(ovm_ha_action::OVM_HA_RESTART as u32, HaAction::Restart.code());
        assert_eq!(ovm_ha_action::OVM_HA_NOT_RESTARTED as u32, HaAction::NotRestarted.code());
    }
}
