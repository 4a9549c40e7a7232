//! `ovm_job`: waiting on, inspecting and aborting jobs.

use std::ffi::c_char;
use std::time::Duration;

use ovm_core::model::JobState;

use crate::boundary::{copy_out_checked, entry, id_arg, out_arg, put, put_json, with_mgr};
use crate::handles::{give_job, job_arg, ovm_job, ovm_manager};
use crate::result::{ovm_result, result_of_kind, FfiError};

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

/// The body of an entry point on a job handle `$job`, bound to `$j`.
macro_rules! with_job {
    ($job:expr, |$j:ident| $body:block) => {
        entry!({
            let $j: &ovm_job = job_arg($job)?;
            $body
        })
    };
}

/// Wait for a job to finish, at most `timeout_ms` milliseconds (negative: forever). Returns
/// `OVM_RESULT_OK` if it completed, the job's own error code if it failed or was aborted (its message
/// is the last error), or `OVM_RESULT_TIMEOUT` if it is still running.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_wait(job: *const ovm_job, timeout_ms: i64) -> ovm_result {
    with_job!(job, |j| {
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        j.api.wait_job_completed(j.id, timeout)?;
        Ok(())
    })
}

/// The job's current state (an `ovm_job_status`).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_state(job: *const ovm_job, out: *mut u32) -> ovm_result {
    with_job!(job, |j| {
        put(out_arg(out, "out")?, job_state(j.info()?.state) as u32);
        Ok(())
    })
}

/// The job's progress, 0.0 to 1.0.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_progress(job: *const ovm_job, out: *mut f32) -> ovm_result {
    with_job!(job, |j| {
        put(out_arg(out, "out")?, j.info()?.progress);
        Ok(())
    })
}

/// The bytes a job that moves data (an import, a copy) has moved so far into `*out_done`, and the
/// bytes it will move in all into `*out_total` with `*out_total_known` true — or 0 and false while
/// that is not known. A job that moves no data reports 0 and false.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_bytes(
    job: *const ovm_job,
    out_done: *mut u64,
    out_total: *mut u64,
    out_total_known: *mut bool,
) -> ovm_result {
    with_job!(job, |j| {
        let (done, total, known) = (
            out_arg(out_done, "out_done")?,
            out_arg(out_total, "out_total")?,
            out_arg(out_total_known, "out_total_known")?,
        );
        let info = j.info()?;
        put(done, info.bytes_done);
        put(total, info.bytes_total.unwrap_or(0));
        put(known, info.bytes_total.is_some());
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
    with_job!(job, |j| { copy_out_checked(&j.info()?.message, buf, len, out_n) })
}

/// The job's id (a UUID string, 37 bytes with the NUL).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_id(
    job: *const ovm_job,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_job!(job, |j| { copy_out_checked(&j.id.to_string(), buf, len, out_n) })
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
    with_job!(job, |j| {
        let r = j
            .info()?
            .result
            .ok_or_else(|| FfiError::new(ovm_result::OVM_RESULT_NOT_FOUND, "the job has no result object"))?;
        copy_out_checked(&r.id.to_string(), buf, len, out_n)
    })
}

/// The result code of the job's error (`OVM_RESULT_OK` while it has none).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_error_code(job: *const ovm_job, out: *mut u32) -> ovm_result {
    with_job!(job, |j| {
        let out = out_arg(out, "out")?;
        let code = j.info()?.error.map(|e| result_of_kind(e.kind())).unwrap_or(ovm_result::OVM_RESULT_OK);
        put(out, code as u32);
        Ok(())
    })
}

/// The whole job record as JSON (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_json(job: *const ovm_job, out: *mut *mut c_char) -> ovm_result {
    with_job!(job, |j| { put_json(out, &j.info()?) })
}

/// Request an abort: a queued job ends at once, a running one stops before its next step and undoes
/// what it did. `OVM_RESULT_INVALID_STATE` if the job already finished.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_abort(job: *const ovm_job) -> ovm_result {
    with_job!(job, |j| {
        j.api.abort_job(j.id)?;
        Ok(())
    })
}

/// A handle on an existing job by id.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_lookup(
    mgr: *const ovm_manager,
    id: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let id = id_arg(id, "id")?;
        let out = out_arg(out, "out")?;
        let j = m.api.job(ovm_core::model::JobId(id))?;
        give_job(out, &m.api, &j);
        Ok(())
    })
}

/// Job history as a JSON array, newest first, at most `limit` jobs (0: all).
#[no_mangle]
pub unsafe extern "C" fn ovm_job_list_json(
    mgr: *const ovm_manager,
    limit: usize,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let jobs = m
            .api
            .jobs(ovm_core::store::JobFilter { limit: (limit > 0).then_some(limit), ..Default::default() })?;
        put_json(out, &jobs)
    })
}

/// Free a job handle (the job runs on). NULL does nothing; a handle of another type is ignored.
#[no_mangle]
pub unsafe extern "C" fn ovm_job_free(job: *mut ovm_job) {
    let _ = entry!({
        if job_arg(job).is_err() {
            return Ok(());
        }
        // job came from Box::into_raw in give_job and is freed once.
        (*job).tag = 0;
        drop(Box::from_raw(job));
        Ok(())
    });
}
