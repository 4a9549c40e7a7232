//! Conversions between Python values and ovm's serde data.

use ovm_core::model::ObjectKind;
use ovm_core::Error;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::errors::OrRaise;

/// Parse a UUID argument; a malformed one is an `InvalidArgumentError` on `field`.
pub fn uuid(field: &str, s: &str) -> PyResult<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|e| Error::invalid(field, format!("{s:?} is not an id: {e}"))).or_raise()
}

/// Parse an object kind name such as `"Vm"`.
pub fn kind(s: &str) -> PyResult<ObjectKind> {
    ObjectKind::from_name(s)
        .ok_or_else(|| Error::invalid("kind", format!("{s:?} is not an object kind")))
        .or_raise()
}

/// The serde name of a unit enum value (e.g. `PowerState::Running` → `"Running"`).
pub fn enum_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Parse a unit enum value from its serde name; an unknown name is an `InvalidArgumentError`.
pub fn parse_enum<T: DeserializeOwned>(field: &str, s: &str) -> PyResult<T> {
    serde_json::from_value(Value::String(s.to_owned()))
        .map_err(|_| Error::invalid(field, format!("{s:?} is not a valid value")))
        .or_raise()
}

/// An optional id as an optional string.
pub fn opt_id<T: std::fmt::Display>(id: Option<T>) -> Option<String> {
    id.map(|i| i.to_string())
}

/// Ids as strings.
pub fn ids<T: std::fmt::Display>(v: &[T]) -> Vec<String> {
    v.iter().map(|i| i.to_string()).collect()
}

/// Serialize `v` into plain Python data (dict, list, str, int, float, bool, None).
pub fn to_python<'py, T: Serialize>(py: Python<'py>, v: &T) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(v).map_err(|e| Error::Internal { message: e.to_string() }).or_raise()?;
    json_to_py(py, &value)
}

fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            PyList::new(py, a.iter().map(|x| json_to_py(py, x)).collect::<PyResult<Vec<_>>>()?)?.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// Convert plain Python data into a serde value; other types are an `InvalidArgumentError` on `field`.
pub fn from_python(field: &str, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(u) = v.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Ok(Value::from(v.extract::<i64>()?));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(serde_json::Number::from_f64(f.value()).map(Value::Number).unwrap_or(Value::Null));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut o = serde_json::Map::new();
        for (k, x) in d.iter() {
            let k = k
                .cast::<PyString>()
                .map_err(|_| Error::invalid(field, "dictionary keys must be str"))
                .or_raise()?;
            o.insert(k.to_cow()?.into_owned(), from_python(field, &x)?);
        }
        return Ok(Value::Object(o));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items = v.try_iter()?.map(|x| from_python(field, &x?)).collect::<PyResult<Vec<_>>>()?;
        return Ok(Value::Array(items));
    }
    Err(Error::invalid(field, format!("cannot convert a {} value", v.get_type().name()?))).or_raise()
}

/// Decode plain Python data into a serde type; a mismatch is an `InvalidArgumentError` on `field`.
pub fn decode<T: DeserializeOwned>(field: &str, v: &Bound<'_, PyAny>) -> PyResult<T> {
    serde_json::from_value(from_python(field, v)?)
        .map_err(|e| Error::invalid(field, e.to_string()))
        .or_raise()
}
