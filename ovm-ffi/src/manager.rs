//! `ovm_manager`: opening and closing a manager.

use std::ffi::c_char;
use std::time::Duration;

use ovm_core::Manager;

use crate::boundary::{copy_out_checked, entry, job_entry, out_arg, put, put_json, str_arg, with_mgr};
use crate::handles::ovm_job;
use crate::handles::{mgr_arg, ovm_manager, SubscriptionThread};
use crate::result::ovm_result;

/// Open (or create) a manager database. `uri` is a file path, `sqlite:///path`, or `:memory:` for a
/// private in-memory database. On success `*out` receives a new handle (free it with
/// `ovm_manager_free`). A corrupt file, another program's database or a newer schema is refused with
/// `OVM_RESULT_DATABASE` or `OVM_RESULT_SCHEMA_TOO_NEW` and left untouched. A database has one
/// manager: while another live manager (in any process) holds the file, this fails at once with
/// `OVM_RESULT_DATABASE_LOCKED`, and the last error message names the holder's process id.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_open(uri: *const c_char, out: *mut *mut ovm_manager) -> ovm_result {
    entry!({
        let uri = str_arg(uri, "uri")?;
        let out = out_arg(out, "out")?;
        let mgr = Manager::builder().database_uri(uri)?.open()?;
        put(out, Box::into_raw(Box::new(ovm_manager::new(mgr))));
        Ok(())
    })
}

/// Close a manager: refuse new jobs, wait up to `timeout_ms` for running ones, and give up the
/// database so another manager may open it; its subscriptions end (their `free_userdata` finalisers
/// run). The handle stays valid until `ovm_manager_free`, but every other call on it then fails with
/// `OVM_RESULT_CLOSED` except `ovm_manager_id` and closing again — the same rule as Python's
/// `Manager`. Job handles stay readable.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_close(mgr: *const ovm_manager, timeout_ms: u64) -> ovm_result {
    entry!({
        let m = mgr_arg(mgr)?;
        m.mgr.close(Duration::from_millis(timeout_ms))?;
        Ok(())
    })
}

/// Free a manager handle: stops its subscriptions (their `free_userdata` finalisers run) and releases
/// it. NULL does nothing; a handle of another type is ignored.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_free(mgr: *mut ovm_manager) {
    let _ = entry!({
        let m = match mgr_arg(mgr) {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        let subs: Vec<SubscriptionThread> =
            m.subs.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, s)| s).collect();
        for s in subs {
            s.stop();
        }
        // mgr came from Box::into_raw in ovm_manager_open and is freed once; the tag is cleared first
        // so a stale pointer is refused by later calls where the memory is still mapped.
        (*mgr).tag = 0;
        drop(Box::from_raw(mgr));
        Ok(())
    });
}

/// Copy the fingerprint (`sha256:` + hex) of the certificate the manager presents to agents into
/// `buf` (what an agent records as its owner).
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_certificate_fingerprint(
    mgr: *const ovm_manager,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let fp = m.mgr.certificate_fingerprint()?;
        copy_out_checked(&fp, buf, len, out_n)
    })
}

/// Copy the manager's identity (the owner id it presents to servers) into `buf`.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_id(
    mgr: *const ovm_manager,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    entry!({ copy_out_checked(mgr_arg(mgr)?.mgr.id(), buf, len, out_n) })
}

/// The manager's recurring jobs (name, interval, enabled) as a JSON array.
#[no_mangle]
pub unsafe extern "C" fn ovm_recurring_job_list_json(
    mgr: *const ovm_manager,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let all: Vec<serde_json::Value> = m
            .mgr
            .recurring_jobs()
            .into_iter()
            .map(|(name, every, on)| {
                serde_json::json!({"name": name, "interval_ms": every.as_millis() as u64, "enabled": on})
            })
            .collect();
        put_json(out, &all)
    })
}

/// Set a recurring job's interval and whether it runs.
#[no_mangle]
pub unsafe extern "C" fn ovm_recurring_job_set(
    mgr: *const ovm_manager,
    name: *const c_char,
    interval_ms: u64,
    enabled: bool,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        m.mgr.set_recurring_job(str_arg(name, "name")?, Duration::from_millis(interval_ms), enabled)?;
        Ok(())
    })
}

/// Run a recurring job now. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_recurring_job_run(
    mgr: *const ovm_manager,
    name: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.run_recurring(str_arg(name, "name")?))
}
