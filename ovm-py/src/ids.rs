//! The bottom of the package: the `ObjectRef` class, which errors and records both use, and the
//! carrier of an ovm error on its way to Python ([`Raised`], turned into its exception by
//! `errors`). It imports nothing of the package.

use ovm_core::model::{self as m, ObjectKind};
use ovm_core::Error;
use pyo3::prelude::*;

/// An ovm error raised from code below `errors` (which converts it into its exception class).
#[derive(Debug)]
pub struct Raised(pub Error);

/// A reference to any object: its kind (e.g. `"Vm"`) and id.
#[pyclass(module = "ovm", frozen, eq, hash, from_py_object)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectRef(pub m::ObjectRef);

impl From<m::ObjectRef> for ObjectRef {
    fn from(r: m::ObjectRef) -> Self {
        ObjectRef(r)
    }
}

#[pymethods]
impl ObjectRef {
    #[new]
    fn new(kind: &str, id: &str) -> Result<Self, Raised> {
        let kind = ObjectKind::from_name(kind)
            .ok_or_else(|| Error::invalid("kind", format!("{kind:?} is not an object kind")))
            .map_err(Raised)?;
        let id = uuid::Uuid::parse_str(id)
            .map_err(|e| Raised(Error::invalid("id", format!("{id:?} is not an id: {e}"))))?;
        Ok(ObjectRef(m::ObjectRef { kind, id }))
    }
    /// Kind name, e.g. `"Vm"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.kind.name()
    }
    /// The object's id.
    #[getter]
    fn id(&self) -> String {
        self.0.id.to_string()
    }
    pub(crate) fn __repr__(&self) -> String {
        format!("ObjectRef({:?}, {:?})", self.0.kind.name(), self.0.id.to_string())
    }
}
