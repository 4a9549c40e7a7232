//! `Job` (a handle on a running or finished job) and `Subscription` (the change feed).

use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ovm_core::model::{self as m, JobId};
use ovm_core::remote::{ChangeStream, ManagerApi};
use ovm_core::Error;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;

use crate::errors::{to_py, OrRaise};
use crate::records::{Change, JobInfo};

/// How often a blocking wait wakes up to let Python handle signals (Ctrl-C).
const SLICE: Duration = Duration::from_millis(100);

fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(Error::invalid("timeout", format!("{t} is not a number of seconds >= 0"))).or_raise(),
    }
}

/// A job: returned by every mutating call. Wait for it, abort it, or read its progress.
///
/// It is the job's id on the manager that runs it (in this process or a service): every read and
/// wait asks that manager.
#[pyclass(module = "ovm", frozen)]
pub struct Job {
    api: Arc<dyn ManagerApi>,
    id: JobId,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Job {
    /// The job `id` of the manager `api`.
    pub fn new(api: Arc<dyn ManagerApi>, id: JobId) -> Self {
        Job { api, id }
    }

    /// The job's record now.
    fn record(&self) -> PyResult<m::Job> {
        self.api.job(self.id).or_raise()
    }

    /// Wait until the job is done (in slices, checking for signals), then return its outcome.
    fn wait_impl(&self, py: Python<'_>, timeout: Option<f64>, strict: bool) -> PyResult<JobInfo> {
        let timeout = timeout_arg(timeout)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let (api, id) = (&self.api, self.id);
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            match py.detach(|| api.wait_job(id, Some(slice.as_millis() as u64))) {
                Ok(_) => break,
                Err(Error::Timeout { .. }) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let millis = timeout.map(|t| t.as_millis() as u64).unwrap_or(0);
                        return Err(to_py(Error::Timeout { what: format!("job {id}"), millis }));
                    }
                    py.check_signals()?;
                }
                Err(e) => return Err(to_py(e)),
            }
        }
        let job = if strict {
            api.wait_job_completed(id, Some(Duration::ZERO))
        } else {
            api.wait_job_for(id, Some(Duration::ZERO))
        };
        job.map(JobInfo).or_raise()
    }
}

#[pymethods]
impl Job {
    /// The job's id.
    #[getter]
    fn id(&self) -> String {
        self.id.to_string()
    }
    /// Current state name (see `JobInfo.state`).
    #[getter]
    fn state(&self) -> PyResult<&'static str> {
        Ok(self.record()?.state.name())
    }
    /// Current progress, 0.0 to 1.0.
    #[getter]
    fn progress(&self) -> PyResult<f32> {
        Ok(self.record()?.progress)
    }
    /// Whether the job has finished.
    #[getter]
    fn done(&self) -> PyResult<bool> {
        Ok(self.record()?.state.is_terminal())
    }
    /// Bytes moved so far by a job that moves data (an import, a copy); 0 for other jobs.
    #[getter]
    fn bytes_done(&self) -> PyResult<u64> {
        Ok(self.record()?.bytes_done)
    }
    /// Bytes the job will move in all, `None` while unknown (or for a job that moves none).
    #[getter]
    fn bytes_total(&self) -> PyResult<Option<u64>> {
        Ok(self.record()?.bytes_total)
    }
    /// A snapshot of the job's record.
    fn info(&self) -> PyResult<JobInfo> {
        self.record().map(JobInfo)
    }
    /// Wait until the job finishes (at most `timeout` seconds; `None` waits for ever) and return its
    /// record. Raises the job's error if it failed or was aborted, `OvmTimeoutError` on timeout.
    /// The GIL is released while waiting.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<JobInfo> {
        self.wait_impl(py, timeout, true)
    }
    /// Like `wait`, but returns the record whatever the outcome (its `error` says why it failed).
    #[pyo3(signature = (timeout=None))]
    fn wait_done(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<JobInfo> {
        self.wait_impl(py, timeout, false)
    }
    /// Request an abort: the job stops before its next step and undoes the steps it completed.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        let (api, id) = (&self.api, self.id);
        py.detach(|| api.abort_job(id)).or_raise()
    }
    /// An awaitable that finishes like `wait()` (the wait runs on a thread of its own).
    fn wait_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (api, id) = (self.api.clone(), self.id);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let waited =
                tokio::task::spawn_blocking(move || api.wait_job_completed(id, None)).await.map_err(|e| {
                    to_py(Error::Internal { message: format!("the wait for job {id} failed: {e}") })
                })?;
            waited.map(JobInfo).map_err(to_py)
        })
    }
    /// `await job` is `await job.wait_async()`.
    fn __await__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.wait_async(py)?.call_method0("__await__")
    }
    fn __repr__(&self) -> PyResult<String> {
        let j = self.record()?;
        Ok(format!(
            "Job(kind={:?}, id={:?}, state={:?}, progress={:.2}, summary={:?})",
            j.kind,
            j.id.to_string(),
            j.state.name(),
            j.progress,
            j.summary
        ))
    }
}

/// Whether a Python manager handle is closed: closed through the handle, or its in-process
/// manager closed.
#[derive(Debug, Clone)]
pub struct Closing {
    local: Option<ovm_core::Manager>,
    handle: Arc<AtomicBool>,
}

impl Closing {
    pub fn new(local: Option<ovm_core::Manager>) -> Self {
        Closing { local, handle: Arc::new(AtomicBool::new(false)) }
    }

    /// Mark the handle closed.
    pub fn close(&self) {
        self.handle.store(true, Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.handle.load(Ordering::SeqCst) || self.local.as_ref().is_some_and(|m| m.is_closed())
    }
}

type Stream = Arc<Mutex<Box<dyn ChangeStream>>>;

/// Lock a stream, whatever a panicking holder left in it (a stream holds no invariant of ours).
fn lock_stream(s: &Stream) -> std::sync::MutexGuard<'_, Box<dyn ChangeStream>> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A subscription to the change feed: iterate it (blocking) or `async for` over it.
///
/// Iteration ends when the manager is closed. If the subscriber falls too far behind, the next
/// change raises `EventsLostError`; re-read state and subscribe again from its `resume_token`.
#[pyclass(module = "ovm", frozen)]
pub struct Subscription {
    inner: Stream,
    token: Arc<AtomicU64>,
    closed: Closing,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("token", &self.token.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription reading `stream`, whose changes follow `token`.
    pub fn new(stream: Box<dyn ChangeStream>, token: u64, closed: Closing) -> Self {
        Subscription { inner: Arc::new(Mutex::new(stream)), token: Arc::new(AtomicU64::new(token)), closed }
    }

    fn next_impl(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<Change>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.closed.is_closed() {
                return Err(to_py(Error::Closed));
            }
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            let (inner, token) = (&self.inner, &self.token);
            let got = py.detach(|| next_from(inner, token, slice));
            match got.or_raise()? {
                Some(c) => return Ok(Some(Change(c))),
                None if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(None),
                None => py.check_signals()?,
            }
        }
    }
}

/// The next change of `stream` within `slice`, its token kept in `token`.
fn next_from(stream: &Stream, token: &AtomicU64, slice: Duration) -> ovm_core::Result<Option<m::Change>> {
    let got = lock_stream(stream).next_change(slice)?;
    if let Some(c) = &got {
        token.store(c.token, Ordering::SeqCst);
    }
    Ok(got)
}

#[pymethods]
impl Subscription {
    /// Token of the last change delivered (subscribe again from it to resume).
    #[getter]
    fn token(&self) -> u64 {
        self.token.load(Ordering::SeqCst)
    }
    /// The next change, waiting at most `timeout` seconds (`None` for ever); `None` if none came.
    /// Raises `ClosedError` if the manager is closed. The GIL is released while waiting.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Change>> {
        let t = timeout_arg(timeout)?;
        self.next_impl(py, t)
    }
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __next__(&self, py: Python<'_>) -> PyResult<Change> {
        // The feed of a closed manager ends the iteration (`next()` raises `ClosedError` instead).
        match self.next_impl(py, None) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(PyStopIteration::new_err(())),
            Err(_) if self.closed.is_closed() => Err(PyStopIteration::new_err(())),
            Err(e) => Err(e),
        }
    }
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (inner, token, closed) = (self.inner.clone(), self.token.clone(), self.closed.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            loop {
                if closed.is_closed() {
                    return Err(PyStopAsyncIteration::new_err(()));
                }
                // The stream blocks: each slice of the wait runs on a thread of its own.
                let (i, t) = (inner.clone(), token.clone());
                let got =
                    tokio::task::spawn_blocking(move || next_from(&i, &t, SLICE)).await.map_err(|e| {
                        to_py(Error::Internal { message: format!("the wait for a change failed: {e}") })
                    })?;
                match got {
                    Ok(Some(c)) => return Ok(Change(c)),
                    Ok(None) => continue,
                    Err(_) if closed.is_closed() => return Err(PyStopAsyncIteration::new_err(())),
                    Err(e) => return Err(to_py(e)),
                }
            }
        })
    }
    fn __repr__(&self) -> String {
        format!("Subscription(token={})", self.token())
    }
}
