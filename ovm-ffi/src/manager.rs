//! `ovm_manager`: opening and closing a manager.

use std::ffi::c_char;
use std::time::Duration;

use std::sync::Arc;

use ovm_core::remote::ServiceAddress;
use ovm_core::Manager;

use crate::boundary::string_arg;
use crate::boundary::{copy_out_checked, entry, job_entry, out_arg, put, put_json, str_arg, with_mgr};
use crate::handles::ovm_job;
use crate::handles::{mgr_arg, ovm_manager, SubscriptionThread};
use crate::result::ovm_result;

/// Open (or create) a manager database, or connect to a manager service. `uri` is a file path,
/// `sqlite:///path`, or `:memory:` for a private in-memory database; `ovm+unix:///path/manager.sock`
/// connects to the manager service (`ovm serve`) on that socket instead, and every call of the
/// handle then goes to the service (jobs, events and subscriptions included). On success `*out`
/// receives a new handle (free it with `ovm_manager_free`). A corrupt file, another program's
/// database or a newer schema is refused with `OVM_RESULT_DATABASE` or `OVM_RESULT_SCHEMA_TOO_NEW`
/// and left untouched. A database has one manager: while another live manager (in any process)
/// holds the file, this fails at once with `OVM_RESULT_DATABASE_LOCKED`, and the last error message
/// names the holder's process id. On a handle connected to a service, the calls that need an
/// object of this process (storage and power plug-in callbacks, the simulated world, closing the
/// manager) fail with `OVM_RESULT_UNSUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_open(uri: *const c_char, out: *mut *mut ovm_manager) -> ovm_result {
    entry!({
        let uri = str_arg(uri, "uri")?;
        let out = out_arg(out, "out")?;
        let handle = if ServiceAddress::is_service_uri(uri) {
            ovm_manager::remote(Arc::new(Manager::connect(uri)?))
        } else {
            ovm_manager::local(Manager::builder().database_uri(uri)?.open()?)
        };
        put(out, Box::into_raw(Box::new(handle)));
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
        m.local_only("ovm_manager_close")?.close(Duration::from_millis(timeout_ms))?;
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
        let fp = m.api.certificate_fingerprint()?;
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
    entry!({ copy_out_checked(&mgr_arg(mgr)?.api.manager_id()?, buf, len, out_n) })
}

/// The manager's recurring jobs (name, interval, enabled) as a JSON array.
#[no_mangle]
pub unsafe extern "C" fn ovm_recurring_job_list_json(
    mgr: *const ovm_manager,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let all: Vec<serde_json::Value> = m
            .api
            .recurring_jobs()?
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
        m.api.set_recurring_job(
            str_arg(name, "name")?.to_owned(),
            Duration::from_millis(interval_ms),
            enabled,
        )?;
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
    job_entry!(mgr, out, |m| m.run_recurring(string_arg(name, "name")?.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::sync::Arc;

    use ovm_core::remote::{Service, ServiceOptions};
    use ovm_core::Manager;

    use super::*;
    use crate::handles::ovm_job;
    use crate::job::{ovm_job_free, ovm_job_state, ovm_job_status, ovm_job_wait};
    use crate::objects::ovm_object_count;
    use crate::result::ovm_result::*;
    use crate::server::ovm_server_discover;
    use crate::storage::ovm_sim_add_nfs_export;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn a_service_uri_opens_a_handle_whose_calls_and_jobs_go_to_the_service() {
        let dir = std::env::temp_dir().join(format!("ovm-ffi-remote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let served = Manager::open_in_memory().unwrap();
        let service =
            Service::bind(Arc::new(served.clone()), dir.join("m.sock"), ServiceOptions::default()).unwrap();
        let uri = c(&format!("ovm+unix://{}", service.path().display()));
        let mut m: *mut ovm_manager = std::ptr::null_mut();
        let mut job: *mut ovm_job = std::ptr::null_mut();
        // SAFETY: valid C strings and out pointers; every handle is freed below.
        unsafe {
            assert_eq!(ovm_manager_open(uri.as_ptr(), &mut m), OVM_RESULT_OK);
            let (addr, pw) = (c("sim://r1"), c(ovm_core::driver::sim::DEFAULT_PASSWORD));
            assert_eq!(ovm_server_discover(m, addr.as_ptr(), pw.as_ptr(), &mut job), OVM_RESULT_OK);
            assert_eq!(ovm_job_wait(job, 30_000), OVM_RESULT_OK);
            let mut state = 0u32;
            assert_eq!(ovm_job_state(job, &mut state), OVM_RESULT_OK);
            assert_eq!(state, ovm_job_status::OVM_JOB_STATE_COMPLETED as u32);
            ovm_job_free(job);
            // The service's manager did the work; the handle reads it back through the socket.
            assert_eq!(served.servers().len(), 1);
            let mut n = 0usize;
            assert_eq!(
                ovm_object_count(m, crate::objects::ovm_object_kind::OVM_OBJECT_SERVER as u32, &mut n),
                OVM_RESULT_OK
            );
            assert_eq!(n, 1);
            // What needs a manager of this process is refused, typed.
            let (host, export) = (c("nfs.example.com"), c("/export/fs1"));
            assert_eq!(
                ovm_sim_add_nfs_export(m, host.as_ptr(), export.as_ptr(), 1 << 30),
                OVM_RESULT_UNSUPPORTED
            );
            assert_eq!(ovm_manager_close(m, 1000), OVM_RESULT_UNSUPPORTED);
            ovm_manager_free(m);
            // A database URI still opens a manager here.
            let mem = c(":memory:");
            assert_eq!(ovm_manager_open(mem.as_ptr(), &mut m), OVM_RESULT_OK);
            assert_eq!(ovm_sim_add_nfs_export(m, host.as_ptr(), export.as_ptr(), 1 << 30), OVM_RESULT_OK);
            ovm_manager_free(m);
            let bad = c("ovm+unix://relative.sock");
            assert_eq!(ovm_manager_open(bad.as_ptr(), &mut m), OVM_RESULT_INVALID_ARGUMENT);
        }
        service.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
