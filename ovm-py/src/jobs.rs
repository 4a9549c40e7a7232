//! `Job` (a handle on a running or finished job) and `Subscription` (the change feed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ovm_core::{Error, JobHandle};
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
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Job(pub JobHandle);

impl Job {
    /// Wait until the job is done (in slices, checking for signals), then return its outcome.
    fn wait_impl(&self, py: Python<'_>, timeout: Option<f64>, strict: bool) -> PyResult<JobInfo> {
        let timeout = timeout_arg(timeout)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            let h = &self.0;
            match py.detach(|| h.wait_done(Some(slice))) {
                Ok(_) => break,
                Err(Error::Timeout { .. }) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let millis = timeout.map(|t| t.as_millis() as u64).unwrap_or(0);
                        return Err(to_py(Error::Timeout { what: format!("job {}", h.id()), millis }));
                    }
                    py.check_signals()?;
                }
                Err(e) => return Err(to_py(e)),
            }
        }
        let job =
            if strict { self.0.wait(Some(Duration::ZERO)) } else { self.0.wait_done(Some(Duration::ZERO)) };
        job.map(JobInfo).or_raise()
    }
}

#[pymethods]
impl Job {
    /// The job's id.
    #[getter]
    fn id(&self) -> String {
        self.0.id().to_string()
    }
    /// Current state name (see `JobInfo.state`).
    #[getter]
    fn state(&self) -> &'static str {
        self.0.state().name()
    }
    /// Current progress, 0.0 to 1.0.
    #[getter]
    fn progress(&self) -> f32 {
        self.0.info().progress
    }
    /// Whether the job has finished.
    #[getter]
    fn done(&self) -> bool {
        self.0.state().is_terminal()
    }
    /// Bytes moved so far by a job that moves data (an import, a copy); 0 for other jobs.
    #[getter]
    fn bytes_done(&self) -> u64 {
        self.0.info().bytes_done
    }
    /// Bytes the job will move in all, `None` while unknown (or for a job that moves none).
    #[getter]
    fn bytes_total(&self) -> Option<u64> {
        self.0.info().bytes_total
    }
    /// A snapshot of the job's record.
    fn info(&self) -> JobInfo {
        JobInfo(self.0.info())
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
        let h = &self.0;
        py.detach(|| h.abort()).or_raise()
    }
    /// An awaitable that finishes like `wait()`.
    fn wait_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let h = self.0.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            h.wait_async().await.map(JobInfo).map_err(to_py)
        })
    }
    /// `await job` is `await job.wait_async()`.
    fn __await__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.wait_async(py)?.call_method0("__await__")
    }
    fn __repr__(&self) -> String {
        let j = self.0.info();
        format!(
            "Job(kind={:?}, id={:?}, state={:?}, progress={:.2}, summary={:?})",
            j.kind,
            j.id.to_string(),
            j.state.name(),
            j.progress,
            j.summary
        )
    }
}

/// A subscription to the change feed: iterate it (blocking) or `async for` over it.
///
/// Iteration ends when the manager is closed. If the subscriber falls too far behind, the next
/// change raises `EventsLostError`; re-read state and subscribe again from its `resume_token`.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Subscription {
    inner: Arc<tokio::sync::Mutex<ovm_core::Subscription>>,
    token: Arc<AtomicU64>,
    mgr: ovm_core::Manager,
}

impl Subscription {
    pub fn new(sub: ovm_core::Subscription, mgr: ovm_core::Manager) -> Self {
        let token = Arc::new(AtomicU64::new(sub.token()));
        Subscription { inner: Arc::new(tokio::sync::Mutex::new(sub)), token, mgr }
    }

    fn next_impl(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<Change>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.mgr.is_closed() {
                return Err(to_py(Error::Closed));
            }
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            let (inner, token) = (&self.inner, &self.token);
            let got = py.detach(|| {
                let mut s = inner.blocking_lock();
                let r = s.next_blocking(slice);
                token.store(s.token(), Ordering::SeqCst);
                r
            });
            match got.or_raise()? {
                Some(c) => return Ok(Some(Change(c))),
                None if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(None),
                None => py.check_signals()?,
            }
        }
    }
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
            Err(_) if self.mgr.is_closed() => Err(PyStopIteration::new_err(())),
            Err(e) => Err(e),
        }
    }
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (inner, token, mgr) = (self.inner.clone(), self.token.clone(), self.mgr.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let mut s = inner.lock().await;
            loop {
                if mgr.is_closed() {
                    return Err(PyStopAsyncIteration::new_err(()));
                }
                if let Ok(r) = tokio::time::timeout(SLICE, s.next()).await {
                    token.store(s.token(), Ordering::SeqCst);
                    return r.map(Change).map_err(to_py);
                }
            }
        })
    }
    fn __repr__(&self) -> String {
        format!("Subscription(token={})", self.token())
    }
}
