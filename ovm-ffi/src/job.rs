//! `ovm_job`: waiting on, inspecting and aborting jobs.

use std::ffi::c_char;
use std::time::Duration;

use ovm_core::model::JobState;
use ovm_core::JobHandle;

use crate::boundary::{call, copy_out_checked, handle, id_arg, out_arg, put, Tagged};
use crate::manager::mgr_arg;
use crate::result::{ovm_result, result_of_kind, FfiError};

/// A job: one mutating operation of the manager.
///
/// Thread safety: an `ovm_job` may be used from several threads at once (waiting in one while
/// reading its state in another). Free it with `ovm_job_free`; the job itself runs on regardless.
#[repr(C)]
#[derive(Debug)]
pub struct ovm_job {
    tag: u64,
    pub(crate) job: JobHandle,
}

impl Tagged for ovm_job {
    const TAG: u64 = 0x6f76_6d5f_6a6f_6231; // "ovm_job1"
    const NAME: &'static str = "ovm_job";
}

/// Job states.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_job_status {
    /// Accepted, not started.
    OVM_JOB_STATE_QUEUED = 0,
    /// Running.
    OVM_JOB_STATE_RUNNING = 1,
    /// Waiting for a queued child job.
    OVM_JOB_STATE_CHILD_QUEUED = 2,
    /// Waiting for a running child job.
    OVM_JOB_STATE_CHILD_RUNNING = 3,
    /// Finished successfully.
    OVM_JOB_STATE_COMPLETED = 4,
    /// Failed and rolled back.
    OVM_JOB_STATE_FAILED = 5,
    /// Aborted and rolled back.
    OVM_JOB_STATE_ABORTED = 6,
}

pub(crate) fn job_state(s: JobState) -> ovm_job_status {
    use ovm_job_status::*;
    match s {
        JobState::Queued => OVM_JOB_STATE_QUEUED,
        JobState::Running => OVM_JOB_STATE_RUNNING,
        JobState::ChildQueued => OVM_JOB_STATE_CHILD_QUEUED,
        JobState::ChildRunning => OVM_JOB_STATE_CHILD_RUNNING,
        JobState::Completed => OVM_JOB_STATE_COMPLETED,
        JobState::Failed => OVM_JOB_STATE_FAILED,
        JobState::Aborted => OVM_JOB_STATE_ABORTED,
    }
}

/// Hand a new job handle to the caller.
///
/// # Safety
/// `out` was checked with `out_arg`.
pub(crate) unsafe fn give_job(out: *mut *mut ovm_job, job: JobHandle) {
    let h = Box::new(ovm_job { tag: ovm_job::TAG, job });
    // SAFETY: per the contract.
    unsafe { put(out, Box::into_raw(h)) }
}

unsafe fn job_arg<'a>(p: *const ovm_job) -> Result<&'a ovm_job, FfiError> {
    // SAFETY: per the caller's contract.
    unsafe { handle(p, "job") }
}

/// Wait for a job to finish, at most `timeout_ms` milliseconds (negative: forever). Returns
/// `OVM_RESULT_OK` if it completed, the job's own error code if it failed or was aborted (its message
/// is the last error), or `OVM_RESULT_TIMEOUT` if it is still running.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_wait(job: *const ovm_job, timeout_ms: i64) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        j.job.wait(timeout)?;
        Ok(())
    })
}

/// The job's current state (an `ovm_job_status`).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_state(job: *const ovm_job, out: *mut u32) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        let out = out_arg(out, "out")?;
        // SAFETY: checked.
        unsafe { put(out, job_state(j.job.state()) as u32) };
        Ok(())
    })
}

/// The job's progress, 0.0 to 1.0.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_progress(job: *const ovm_job, out: *mut f32) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        let out = out_arg(out, "out")?;
        // SAFETY: checked.
        unsafe { put(out, j.job.info().progress) };
        Ok(())
    })
}

/// The job's latest message (progress text, or the error with the rollback outcome).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_message(
    job: *const ovm_job,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        // SAFETY: per the function's contract.
        unsafe { copy_out_checked(&j.job.info().message, buf, len, out_n) }
    })
}

/// The job's id (a UUID string, 37 bytes with the NUL).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_id(
    job: *const ovm_job,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        // SAFETY: per the function's contract.
        unsafe { copy_out_checked(&j.job.id().to_string(), buf, len, out_n) }
    })
}

/// The id of the object the job created or acted on (e.g. the new VM). `OVM_RESULT_NOT_FOUND` if the
/// job has no result (yet).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_result_id(
    job: *const ovm_job,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        let r =
            j.job.info().result.ok_or_else(|| {
                FfiError::new(ovm_result::OVM_RESULT_NOT_FOUND, "the job has no result object")
            })?;
        // SAFETY: per the function's contract.
        unsafe { copy_out_checked(&r.id.to_string(), buf, len, out_n) }
    })
}

/// The result code of the job's error (`OVM_RESULT_OK` while it has none).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_error_code(job: *const ovm_job, out: *mut u32) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        let out = out_arg(out, "out")?;
        let code = j.job.info().error.map(|e| result_of_kind(e.kind())).unwrap_or(ovm_result::OVM_RESULT_OK);
        // SAFETY: checked.
        unsafe { put(out, code as u32) };
        Ok(())
    })
}

/// The whole job record as JSON (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_json(job: *const ovm_job, out: *mut *mut c_char) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        let out = out_arg(out, "out")?;
        let s = crate::boundary::to_json(&j.job.info())?;
        // SAFETY: checked.
        unsafe { put(out, s) };
        Ok(())
    })
}

/// Request an abort: a queued job ends at once, a running one stops before its next step and undoes
/// what it did. `OVM_RESULT_INVALID_STATE` if the job already finished.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_abort(job: *const ovm_job) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let j = unsafe { job_arg(job) }?;
        j.job.abort()?;
        Ok(())
    })
}

/// A handle on an existing job by id.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_lookup(
    mgr: *const crate::ovm_manager,
    id: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        // SAFETY: per the function's contract.
        let id = unsafe { id_arg(id, "id") }?;
        let out = out_arg(out, "out")?;
        let j = m.mgr.job(ovm_core::model::JobId(id))?;
        // SAFETY: checked.
        unsafe { give_job(out, j) };
        Ok(())
    })
}

/// Job history as a JSON array, newest first, at most `limit` jobs (0: all).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_list_json(
    mgr: *const crate::ovm_manager,
    limit: usize,
    out: *mut *mut c_char,
) -> ovm_result {
    call(|| {
        // SAFETY: per the function's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        let out = out_arg(out, "out")?;
        let jobs = m.mgr.jobs(&ovm_core::store::JobFilter {
            limit: (limit > 0).then_some(limit),
            ..Default::default()
        })?;
        let s = crate::boundary::to_json(&jobs)?;
        // SAFETY: checked.
        unsafe { put(out, s) };
        Ok(())
    })
}

/// Free a job handle (the job runs on). NULL does nothing; a handle of another type is ignored.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_free(job: *mut ovm_job) {
    let _ = call(|| {
        // SAFETY: per the function's contract.
        if unsafe { job_arg(job) }.is_err() {
            return Ok(());
        }
        // SAFETY: job came from Box::into_raw in give_job and is freed once.
        unsafe {
            (*job).tag = 0;
            drop(Box::from_raw(job));
        }
        Ok(())
    });
}

/// Run a job-returning manager call with the common argument checks.
pub(crate) unsafe fn job_call(
    mgr: *const crate::ovm_manager,
    out: *mut *mut ovm_job,
    f: impl FnOnce(&ovm_core::Manager) -> Result<JobHandle, FfiError>,
) -> ovm_result {
    call(|| {
        // SAFETY: per the caller's contract.
        let m = unsafe { mgr_arg(mgr) }?;
        let out = out_arg(out, "out")?;
        let job = f(&m.mgr)?;
        // SAFETY: checked.
        unsafe { give_job(out, job) };
        Ok(())
    })
}
