//! The handle types C holds (`ovm_manager`, `ovm_job`, `ovm_rebuild_report`) and their checked
//! borrowing. Below every
//! module that defines entry points: it depends only on [`crate::result`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ovm_core::model::{Job, JobId};
use ovm_core::remote::ManagerApi;
use ovm_core::Manager;

use crate::result::{ovm_result, FfiError};

/// Handles carry a type tag so a handle of another type, or a freed one, is refused.
pub(crate) trait Tagged {
    const TAG: u64;
    const NAME: &'static str;
}

/// Borrow a handle after checking it is non-NULL and of the right type.
///
/// # Safety
/// `p` is NULL or points to a live handle created by ovm (of any type).
pub(crate) unsafe fn handle<'a, T: Tagged>(p: *const T, name: &str) -> Result<&'a T, FfiError> {
    if p.is_null() {
        return Err(FfiError::null(name));
    }
    // SAFETY: all ovm handles start with their u64 tag (repr(C)), so reading it is valid for any of them.
    let tag = unsafe { p.cast::<u64>().read() };
    if tag != T::TAG {
        return Err(FfiError::new(
            ovm_result::OVM_RESULT_WRONG_HANDLE,
            format!("{name} is not a live {} handle", T::NAME),
        ));
    }
    // SAFETY: the tag matched, so p is a live T.
    Ok(unsafe { &*p })
}

/// A manager: a database opened in this process (its jobs, events and server connections), or a
/// manager service reached over a socket.
///
/// Every call goes through [`ManagerApi`] (`api`); `local` is the same manager when it runs in this
/// process, for what only an in-process manager can do (plug-in callbacks, the simulated world).
///
/// Thread safety: an `ovm_manager` may be used from any number of threads at once. It owns its own
/// worker threads (an async runtime): C never sees a future. Free it with `ovm_manager_free` once no
/// other call on it is running.
#[repr(C)]
pub struct ovm_manager {
    pub(crate) tag: u64,
    pub(crate) api: Arc<dyn ManagerApi>,
    pub(crate) local: Option<Manager>,
    pub(crate) subs: Mutex<HashMap<u64, SubscriptionThread>>,
    pub(crate) next_sub: Mutex<u64>,
}

impl std::fmt::Debug for ovm_manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ovm_manager").field("local", &self.local.is_some()).finish_non_exhaustive()
    }
}

impl Tagged for ovm_manager {
    const TAG: u64 = 0x6f76_6d5f_6d67_7231; // "ovm_mgr1"
    const NAME: &'static str = "ovm_manager";
}

impl ovm_manager {
    /// A handle on a manager of this process.
    pub(crate) fn local(mgr: Manager) -> Self {
        Self::with(Arc::new(mgr.clone()), Some(mgr))
    }

    /// A handle on a manager service.
    pub(crate) fn remote(api: Arc<dyn ManagerApi>) -> Self {
        Self::with(api, None)
    }

    fn with(api: Arc<dyn ManagerApi>, local: Option<Manager>) -> Self {
        ovm_manager { tag: Self::TAG, api, local, subs: Mutex::new(HashMap::new()), next_sub: Mutex::new(1) }
    }

    /// The in-process manager, for `what` (an operation that needs an object of this process);
    /// `OVM_RESULT_UNSUPPORTED` on a handle connected to a service.
    pub(crate) fn local_only(&self, what: &str) -> Result<&Manager, FfiError> {
        self.local.as_ref().ok_or_else(|| {
            FfiError::new(
                ovm_result::OVM_RESULT_UNSUPPORTED,
                format!("{what} needs a manager in this process; this handle is connected to a service"),
            )
        })
    }

    /// Whether the manager was closed through this handle (a service's closing shows as
    /// `OVM_RESULT_CLOSED` on the next call).
    pub(crate) fn is_closed(&self) -> bool {
        self.local.as_ref().is_some_and(|m| m.is_closed())
    }
}

/// Borrow the manager behind a handle argument.
///
/// # Safety
/// As [`handle`].
pub(crate) unsafe fn mgr_arg<'a>(p: *const ovm_manager) -> Result<&'a ovm_manager, FfiError> {
    // SAFETY: per the contract.
    unsafe { handle(p, "manager") }
}

/// A job: one mutating operation of the manager, known by its id to the manager that runs it
/// (in this process or a service).
///
/// Thread safety: an `ovm_job` may be used from several threads at once (waiting in one while
/// reading its state in another). Free it with `ovm_job_free`; the job itself runs on regardless.
#[repr(C)]
pub struct ovm_job {
    pub(crate) tag: u64,
    pub(crate) api: Arc<dyn ManagerApi>,
    pub(crate) id: JobId,
}

impl std::fmt::Debug for ovm_job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ovm_job").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Tagged for ovm_job {
    const TAG: u64 = 0x6f76_6d5f_6a6f_6231; // "ovm_job1"
    const NAME: &'static str = "ovm_job";
}

impl ovm_job {
    /// The job's record now.
    pub(crate) fn info(&self) -> ovm_core::Result<Job> {
        self.api.job(self.id)
    }
}

/// Borrow the job behind a handle argument.
///
/// # Safety
/// As [`handle`].
pub(crate) unsafe fn job_arg<'a>(p: *const ovm_job) -> Result<&'a ovm_job, FfiError> {
    // SAFETY: per the caller's contract.
    unsafe { handle(p, "job") }
}

/// Hand a new job handle to the caller: the job `job` of the manager `api`.
///
/// # Safety
/// `out` is non-NULL and valid for a write.
pub(crate) unsafe fn give_job(out: *mut *mut ovm_job, api: &Arc<dyn ManagerApi>, job: &Job) {
    let h = Box::new(ovm_job { tag: ovm_job::TAG, api: api.clone(), id: job.id });
    // SAFETY: per the contract.
    unsafe { out.write(Box::into_raw(h)) }
}

/// What `ovm_manager_rebuild_from_servers` recovered, and what it could not: ovm-core's
/// `RebuildReport`, read with the `ovm_rebuild_report_` getters.
///
/// Thread safety: read-only; may be read from several threads at once. Free it with
/// `ovm_rebuild_report_free`.
#[repr(C)]
#[derive(Debug)]
pub struct ovm_rebuild_report {
    pub(crate) tag: u64,
    pub(crate) report: ovm_core::manager::RebuildReport,
}

impl Tagged for ovm_rebuild_report {
    const TAG: u64 = 0x6f76_6d5f_7262_6431; // "ovm_rbd1"
    const NAME: &'static str = "ovm_rebuild_report";
}

/// Borrow the report behind a handle argument.
///
/// # Safety
/// As [`handle`].
pub(crate) unsafe fn report_arg<'a>(
    p: *const ovm_rebuild_report,
) -> Result<&'a ovm_rebuild_report, FfiError> {
    // SAFETY: per the caller's contract.
    unsafe { handle(p, "report") }
}

/// A running subscription thread, owned by its manager handle.
#[derive(Debug)]
pub(crate) struct SubscriptionThread {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

impl SubscriptionThread {
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
