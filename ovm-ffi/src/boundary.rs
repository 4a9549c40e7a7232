//! The panic boundary, argument checks, string helpers, and the macros every entry point's body is
//! written with.
//!
//! Entry points keep their `extern "C"` signatures written out (cbindgen reads them); their bodies
//! are one of:
//! * [`with_mgr!`]`(mgr, |m| { ... })`: a call on a manager handle;
//! * [`job_entry!`]`(mgr, out, |m| expr)`: a mutation that hands a job to `*out`;
//! * [`entry!`]`({ ... })`: anything else inside the boundary.
//!
//! Each macro opens the one `unsafe` block of the entry point; the argument helpers below are the
//! only unsafe operations in it, and each checks what it can (NULL, handle tags, UTF-8, UUIDs).

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::last_error::{clear_last_error, copy_out, set_last_error};
use crate::result::{ovm_result, FfiError};

/// Run an entry point: reset the last error, catch panics, map errors to codes and messages.
pub(crate) fn call(f: impl FnOnce() -> Result<(), FfiError>) -> ovm_result {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ovm_result::OVM_RESULT_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.code
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("panic inside ovm (a bug, please report): {what}"));
            ovm_result::OVM_RESULT_PANIC
        }
    }
}

/// The body of an entry point inside the panic boundary, in an `unsafe` context for the argument
/// helpers.
macro_rules! entry {
    ($body:block) => {
        $crate::boundary::call(|| {
            // SAFETY: the pointer arguments of every entry point are NULL or valid as its documentation
            // and the conventions of ovm.h state; the helpers used on them check NULL, handle tags,
            // UTF-8 and UUIDs before use.
            unsafe { $body }
        })
    };
}

/// The body of an entry point on an open manager handle `$mgr`, bound to `$m` (an `&ovm_manager`).
/// A closed manager is refused with `OVM_RESULT_CLOSED`: after `ovm_manager_close`, every call on
/// it fails that way except `ovm_manager_close` (again), `ovm_manager_id` and `ovm_manager_free` —
/// the rule Python's `Manager` follows too.
macro_rules! with_mgr {
    ($mgr:expr, |$m:ident| $body:block) => {
        $crate::boundary::entry!({
            let $m: &$crate::handles::ovm_manager = $crate::handles::mgr_arg($mgr)?;
            if $m.is_closed() {
                return Err(ovm_core::Error::Closed.into());
            }
            $body
        })
    };
}

/// The body of a mutating entry point: `$body` (with the manager's `ManagerApi` bound to `$m`)
/// returns the submitted job's record; a handle on the job goes to the caller through `$out`.
macro_rules! job_entry {
    ($mgr:expr, $out:expr, |$m:ident| $body:expr) => {
        $crate::boundary::with_mgr!($mgr, |h| {
            let out = $crate::boundary::out_arg($out, "out")?;
            let $m: &dyn ovm_core::remote::ManagerApi = &*h.api;
            let job: ovm_core::model::Job = $body?;
            $crate::handles::give_job(out, &h.api, &job);
            Ok(())
        })
    };
}

pub(crate) use {entry, job_entry, with_mgr};

pub(crate) fn null(name: &str) -> FfiError {
    FfiError::null(name)
}

/// Refuse flag bits outside `allowed`.
pub(crate) fn flags_arg(flags: u32, allowed: u32) -> Result<(), FfiError> {
    if flags & !allowed != 0 {
        return Err(FfiError::invalid(format!("unknown flags {:#x}", flags & !allowed)));
    }
    Ok(())
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives for the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        FfiError::new(ovm_result::OVM_RESULT_INVALID_UTF8, format!("{name} is not valid UTF-8: {e}"))
    })
}

/// An optional string argument (NULL means none).
///
/// # Safety
/// As [`str_arg`].
/// [`str_arg`], owned (for calls that take `String`).
pub(crate) unsafe fn string_arg(p: *const c_char, name: &str) -> Result<String, FfiError> {
    // SAFETY: per str_arg's contract.
    unsafe { str_arg(p, name) }.map(str::to_owned)
}

/// [`opt_str_arg`], owned.
pub(crate) unsafe fn opt_string_arg(p: *const c_char, name: &str) -> Result<Option<String>, FfiError> {
    // SAFETY: per opt_str_arg's contract.
    unsafe { opt_str_arg(p, name) }.map(|s| s.map(str::to_owned))
}

pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, FfiError> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: as the caller's contract.
        unsafe { str_arg(p, name) }.map(Some)
    }
}

fn parse_uuid(s: &str, name: &str) -> Result<ovm_core::uuid::Uuid, FfiError> {
    ovm_core::uuid::Uuid::parse_str(s).map_err(|e| {
        FfiError::new(ovm_result::OVM_RESULT_INVALID_ARGUMENT, format!("{name} is not a UUID: {e}"))
    })
}

/// Parse a UUID argument.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn id_arg(p: *const c_char, name: &str) -> Result<ovm_core::uuid::Uuid, FfiError> {
    // SAFETY: as the caller's contract.
    let s = unsafe { str_arg(p, name) }?;
    parse_uuid(s, name)
}

/// Parse an optional UUID argument (NULL means none).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_id_arg(
    p: *const c_char,
    name: &str,
) -> Result<Option<ovm_core::uuid::Uuid>, FfiError> {
    // SAFETY: as the caller's contract.
    match unsafe { opt_str_arg(p, name) }? {
        Some(s) => parse_uuid(s, name).map(Some),
        None => Ok(None),
    }
}

/// An array of `n` UUID strings (`p` may be NULL when `n` is 0).
///
/// # Safety
/// `p` is NULL or valid for `n` reads of pointers each NULL or as [`str_arg`].
pub(crate) unsafe fn id_list(
    p: *const *const c_char,
    n: usize,
    name: &str,
) -> Result<Vec<ovm_core::uuid::Uuid>, FfiError> {
    let one = |item, what: &str| {
        // SAFETY: each item as id_arg requires, per the contract.
        unsafe { id_arg(item, what) }
    };
    // SAFETY: per the contract, passed on.
    unsafe { list(p, n, name, one) }
}

/// An array of `n` optional UUID strings: `p` NULL means `n` NULLs, and a NULL item means none.
///
/// # Safety
/// `p` is NULL or valid for `n` reads of pointers each NULL or as [`str_arg`].
pub(crate) unsafe fn opt_id_list(
    p: *const *const c_char,
    n: usize,
    name: &str,
) -> Result<Vec<Option<ovm_core::uuid::Uuid>>, FfiError> {
    if p.is_null() {
        return Ok(vec![None; n]);
    }
    let one = |item, what: &str| {
        // SAFETY: each item as opt_id_arg requires, per the contract.
        unsafe { opt_id_arg(item, what) }
    };
    // SAFETY: per the contract, passed on.
    unsafe { list(p, n, name, one) }
}

/// An array of `n` plain values (`p` may be NULL when `n` is 0).
///
/// # Safety
/// `p` is NULL or valid for `n` reads of `T`, for the call.
pub(crate) unsafe fn array_arg<'a, T>(p: *const T, n: usize, name: &str) -> Result<&'a [T], FfiError> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL and valid for n reads per the contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// An array of `n` strings (`p` may be NULL when `n` is 0).
///
/// # Safety
/// `p` is NULL or valid for `n` reads of pointers each NULL or as [`str_arg`].
pub(crate) unsafe fn str_list<'a>(
    p: *const *const c_char,
    n: usize,
    name: &str,
) -> Result<Vec<&'a str>, FfiError> {
    let one = |item, what: &str| {
        // SAFETY: each item as str_arg requires, per the contract.
        unsafe { str_arg(item, what) }
    };
    // SAFETY: per the contract, passed on.
    unsafe { list(p, n, name, one) }
}

/// The `n` items of the array `p` (NULL when `n` is 0), each read by `one` with its name
/// (`name[i]`).
///
/// # Safety
/// `p` is NULL or valid for `n` reads of pointers, each as `one` requires.
unsafe fn list<T>(
    p: *const *const c_char,
    n: usize,
    name: &str,
    one: impl Fn(*const c_char, &str) -> Result<T, FfiError>,
) -> Result<Vec<T>, FfiError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(null(name));
    }
    (0..n)
        .map(|i| {
            // SAFETY: i < n, and p is valid for n reads per the contract.
            let item = unsafe { p.add(i).read() };
            one(item, &format!("{name}[{i}]"))
        })
        .collect()
}

/// Check an output pointer.
pub(crate) fn out_arg<T>(p: *mut T, name: &str) -> Result<*mut T, FfiError> {
    if p.is_null() {
        Err(null(name))
    } else {
        Ok(p)
    }
}

/// Write `value` to a checked output pointer.
///
/// # Safety
/// `p` was checked by [`out_arg`] and is valid for writes.
pub(crate) unsafe fn put<T>(p: *mut T, value: T) {
    // SAFETY: per the contract.
    unsafe { p.write(value) }
}

/// Copy into a caller buffer inside [`call`].
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes; `out_n` is NULL or valid for a write.
pub(crate) unsafe fn copy_out_checked(
    s: &str,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> Result<(), FfiError> {
    let out_n = out_arg(out_n, "out_n")?;
    // SAFETY: per the contract.
    match unsafe { copy_out(s, buf, len, out_n) } {
        ovm_result::OVM_RESULT_OK => Ok(()),
        code => Err(FfiError::new(code, format!("buffer too small: {} bytes needed", s.len() + 1))),
    }
}

/// An owned C string for the caller (free with `ovm_string_free`).
pub(crate) fn owned(s: String) -> *mut c_char {
    let s = s.replace('\0', "\u{FFFD}");
    CString::new(s).map(CString::into_raw).unwrap_or(std::ptr::null_mut())
}

/// Free a string returned by ovm (`char **out` outputs). NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn ovm_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` came from CString::into_raw in `owned` and is freed once, per the contract.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// Check a JSON-serializable value into an owned string.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<*mut c_char, FfiError> {
    serde_json::to_string(v)
        .map(owned)
        .map_err(|e| FfiError::new(ovm_result::OVM_RESULT_INTERNAL, format!("cannot encode JSON: {e}")))
}

/// Write a JSON value to a `char **` output.
///
/// # Safety
/// `out` is NULL or valid for a write.
pub(crate) unsafe fn put_json<T: serde::Serialize>(out: *mut *mut c_char, v: &T) -> Result<(), FfiError> {
    let out = out_arg(out, "out")?;
    let s = to_json(v)?;
    // SAFETY: checked non-NULL; valid per the contract.
    unsafe { put(out, s) };
    Ok(())
}
