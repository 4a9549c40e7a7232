//! `ovm_manager`: opening and closing a manager.

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::Mutex;
use std::time::Duration;

use ovm_core::Manager;

use crate::boundary::{call, copy_out_checked, handle, out_arg, put, str_arg, Tagged};
use crate::events::SubscriptionThread;
use crate::result::{ovm_result, FfiError};

/// A manager: its database, jobs, events and server connections.
///
/// Thread safety: an `ovm_manager` may be used from any number of threads at once. It owns its own
/// worker threads (an async runtime): C never sees a future. Free it with `ovm_manager_free` once no
/// other call on it is running.
#[repr(C)]
#[derive(Debug)]
pub struct ovm_manager {
    tag: u64,
    pub(crate) mgr: Manager,
    pub(crate) subs: Mutex<HashMap<u64, SubscriptionThread>>,
    pub(crate) next_sub: Mutex<u64>,
}

impl Tagged for ovm_manager {
    const TAG: u64 = 0x6f76_6d5f_6d67_7231; // "ovm_mgr1"
    const NAME: &'static str = "ovm_manager";
}

/// Borrow the manager behind a handle argument.
///
/// # Safety
/// As [`handle`].
pub(crate) unsafe fn mgr_arg<'a>(p: *const ovm_manager) -> Result<&'a ovm_manager, FfiError> {
    // SAFETY: per the contract.
    unsafe { handle(p, "manager") }
}

/// Open (or create) a manager database. `uri` is a file path, `sqlite:///path`, or `:memory:` for a
/// private in-memory database. On success `*out` receives a new handle (free it with
/// `ovm_manager_free`). A corrupt file, another program's database or a newer schema is refused with
/// `OVM_RESULT_DATABASE` or `OVM_RESULT_SCHEMA_TOO_NEW` and left untouched. A database has one
/// manager: while another live manager (in any process) holds the file, this fails at once with
/// `OVM_RESULT_DATABASE_LOCKED`, and the last error message names the holder's process id.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_open(uri: *const c_char, out: *mut *mut ovm_manager) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let uri = unsafe { str_arg(uri, "uri") }?;
        let out = out_arg(out, "out")?;
        let mgr = Manager::builder().database_uri(uri)?.open()?;
        let h = Box::new(ovm_manager {
            tag: ovm_manager::TAG,
            mgr,
            subs: Mutex::new(HashMap::new()),
            next_sub: Mutex::new(1),
        });
        // SAFETY: out was checked.
        unsafe { put(out, Box::into_raw(h)) };
        Ok(())
    })
}

/// Close a manager: refuse new jobs, wait up to `timeout_ms` for running ones, and give up the
/// database so another manager may open it. The handle stays valid (reads still work; writes fail
/// with `OVM_RESULT_CLOSED`) until `ovm_manager_free`.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_close(mgr: *const ovm_manager, timeout_ms: u64) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        m.mgr.close(Duration::from_millis(timeout_ms))?;
        Ok(())
    })
}

/// Free a manager handle: stops its subscriptions (their `free_userdata` finalisers run) and releases
/// it. NULL does nothing; a handle of another type is ignored.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_free(mgr: *mut ovm_manager) {
    let _ = call(|| {
        // SAFETY: per the function's contract.
        let m = match unsafe { mgr_arg(mgr) } {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        let subs: Vec<SubscriptionThread> =
            m.subs.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, s)| s).collect();
        for s in subs {
            s.stop();
        }
        // SAFETY: mgr came from Box::into_raw in ovm_manager_open and is freed once; the tag is
        // cleared first so a stale pointer is refused by later calls where the memory is still mapped.
        unsafe {
            (*mgr).tag = 0;
            drop(Box::from_raw(mgr));
        }
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
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        let fp = m.mgr.certificate_fingerprint()?;
        // SAFETY: per the function's contract.
        unsafe { copy_out_checked(&fp, buf, len, out_n) }
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
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        // SAFETY: per the function's contract.
        unsafe { copy_out_checked(m.mgr.id(), buf, len, out_n) }
    })
}
