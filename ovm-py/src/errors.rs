//! Python exceptions: `OvmError` and one subclass per [`ErrorKind`], built by one exhaustive match.

use ovm_core::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// Python class name of each kind, and the extra builtin base it has (besides `OvmError`).
fn class_of(kind: ErrorKind) -> (&'static str, Option<&'static str>) {
    match kind {
        ErrorKind::NotFound => ("NotFoundError", Some("LookupError")),
        ErrorKind::InvalidState => ("InvalidStateError", None),
        ErrorKind::OperationInProgress => ("OperationInProgressError", None),
        ErrorKind::InvalidArgument => ("InvalidArgumentError", Some("ValueError")),
        ErrorKind::Conflict => ("ConflictError", None),
        ErrorKind::Unsupported => ("UnsupportedError", None),
        ErrorKind::Backend => ("BackendError", None),
        ErrorKind::EventsLost => ("EventsLostError", None),
        ErrorKind::Aborted => ("AbortedError", None),
        ErrorKind::Timeout => ("OvmTimeoutError", Some("TimeoutError")),
        ErrorKind::InsufficientResources => ("InsufficientResourcesError", None),
        ErrorKind::UnacknowledgedEvents => ("UnacknowledgedEventsError", None),
        ErrorKind::Database => ("DatabaseError", None),
        ErrorKind::SchemaTooNew => ("SchemaTooNewError", None),
        ErrorKind::Interrupted => ("JobInterruptedError", None),
        ErrorKind::Closed => ("ClosedError", None),
        ErrorKind::PermissionDenied => ("PermissionDeniedError", Some("PermissionError")),
        ErrorKind::Internal => ("InternalError", None),
        ErrorKind::DatabaseLocked => ("DatabaseLockedError", None),
        ErrorKind::EvacuationFailed => ("EvacuationFailedError", None),
        // `ErrorKind` is non-exhaustive: a kind added to ovm-core later maps to the root class
        // until it gets its own (its `.kind` and `.code` are still exact).
        _ => ("OvmError", None),
    }
}

/// The typed fields of an error, as (attribute name, Python value) pairs.
fn fields<'py>(py: Python<'py>, e: &Error) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
    let s = |v: &str| -> PyResult<Bound<'py, PyAny>> { Ok(v.into_pyobject(py)?.into_any()) };
    let u = |v: u64| -> PyResult<Bound<'py, PyAny>> { Ok(v.into_pyobject(py)?.into_any()) };
    let obj = |r: &ovm_core::model::ObjectRef| -> PyResult<Bound<'py, PyAny>> {
        Ok(Bound::new(py, crate::ids::ObjectRef::from(*r))?.into_any())
    };
    Ok(match e {
        Error::NotFound { kind, id } => vec![("object_kind", s(kind.name())?), ("id", s(id)?)],
        Error::InvalidState { object, expected, actual } => {
            vec![("object", obj(object)?), ("expected", s(expected)?), ("actual", s(actual)?)]
        }
        Error::OperationInProgress { object, job } => vec![("object", obj(object)?), ("job", s(job)?)],
        Error::InvalidArgument { field, reason } => vec![("field", s(field)?), ("reason", s(reason)?)],
        Error::Conflict { reason } => vec![("reason", s(reason)?)],
        Error::Unsupported { what } => vec![("what", s(what)?)],
        Error::Backend { server, message } => vec![("server", s(server)?), ("message", s(message)?)],
        Error::EventsLost { resume_token } => vec![("resume_token", u(*resume_token)?)],
        Error::Aborted { job } => vec![("job", s(job)?)],
        Error::Timeout { what, millis } => vec![("what", s(what)?), ("millis", u(*millis)?)],
        Error::InsufficientResources { object, resource, needed, available } => vec![
            ("object", obj(object)?),
            ("resource", s(resource)?),
            ("needed", u(*needed)?),
            ("available", u(*available)?),
        ],
        Error::UnacknowledgedEvents { object, event, severity } => {
            vec![("object", obj(object)?), ("event", s(event)?), ("severity", s(severity)?)]
        }
        Error::Database { message } => vec![("message", s(message)?)],
        Error::SchemaTooNew { found, supported } => {
            vec![("found", u(u64::from(*found))?), ("supported", u(u64::from(*supported))?)]
        }
        Error::Interrupted { job } => vec![("job", s(job)?)],
        Error::Closed => vec![],
        Error::PermissionDenied { reason } => vec![("reason", s(reason)?)],
        Error::Internal { message } => vec![("message", s(message)?)],
        Error::DatabaseLocked { path, pid } => {
            let pid = match pid {
                Some(p) => u(u64::from(*p))?,
                None => py.None().into_bound(py),
            };
            vec![("path", s(path)?), ("pid", pid)]
        }
        Error::EvacuationFailed { server, failed } => {
            let failed = failed
                .iter()
                .map(|f| Ok((crate::ids::ObjectRef::from(f.vm), f.name.clone(), f.error.to_string())))
                .collect::<PyResult<Vec<_>>>()?;
            vec![("server", obj(server)?), ("failed", failed.into_pyobject(py)?.into_any())]
        }
        // `Error` is non-exhaustive: a variant added later still carries its kind, code and message.
        _ => vec![],
    })
}

struct Classes {
    root: Py<PyType>,
    by_kind: Vec<(ErrorKind, Py<PyType>)>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn make_class<'py>(
    py: Python<'py>,
    name: &str,
    bases: Vec<Bound<'py, PyAny>>,
    attrs: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyType>> {
    attrs.set_item("__module__", "ovm")?;
    let ty = py.get_type::<PyType>();
    Ok(ty.call1((name, PyTuple::new(py, bases)?, attrs))?.cast_into::<PyType>()?)
}

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let attrs = PyDict::new(py);
        attrs.set_item(
            "__doc__",
            "Root of every ovm error. `kind` is the stable kind name, `code` its stable number.",
        )?;
        attrs.set_item("kind", "")?;
        attrs.set_item("code", 0)?;
        let root = make_class(py, "OvmError", vec![builtins.getattr("Exception")?], &attrs)?;
        let mut by_kind = Vec::new();
        for kind in ErrorKind::ALL {
            let (name, extra) = class_of(kind);
            let mut bases = vec![root.clone().into_any()];
            if let Some(b) = extra {
                bases.push(builtins.getattr(b)?);
            }
            let attrs = PyDict::new(py);
            attrs.set_item("__doc__", format!("ovm error kind {} (code {}).", kind.name(), kind.code()))?;
            attrs.set_item("kind", kind.name())?;
            attrs.set_item("code", kind.code())?;
            by_kind.push((kind, make_class(py, name, bases, &attrs)?.unbind()));
        }
        Ok::<_, PyErr>(Classes { root: root.unbind(), by_kind })
    })
}

/// Add `OvmError` and its subclasses to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let c = classes(py)?;
    m.add("OvmError", c.root.bind(py))?;
    for (_, ty) in &c.by_kind {
        m.add(ty.bind(py).name()?, ty.bind(py))?;
    }
    Ok(())
}

/// Convert an ovm error into the Python exception instance of its class, with its typed fields.
pub fn exception<'py>(py: Python<'py>, e: &Error) -> PyResult<Bound<'py, PyAny>> {
    let c = classes(py)?;
    let kind = e.kind();
    let ty = c.by_kind.iter().find(|(k, _)| *k == kind).map(|(_, t)| t).unwrap_or(&c.root).bind(py);
    let exc = ty.call1((e.to_string(),))?;
    exc.setattr("kind", kind.name())?;
    exc.setattr("code", kind.code())?;
    for (name, value) in fields(py, e)? {
        exc.setattr(name, value)?;
    }
    Ok(exc)
}

/// Convert an ovm error into a `PyErr`.
pub fn to_py(e: Error) -> PyErr {
    Python::attach(|py| match exception(py, &e) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    })
}

/// `Result` conversion helper.
pub trait OrRaise<T> {
    /// Map an ovm error to its Python exception.
    fn or_raise(self) -> PyResult<T>;
}

impl From<crate::ids::Raised> for PyErr {
    fn from(r: crate::ids::Raised) -> PyErr {
        to_py(r.0)
    }
}

impl<T> OrRaise<T> for ovm_core::Result<T> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
