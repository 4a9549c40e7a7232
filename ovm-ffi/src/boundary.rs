//! The panic boundary, argument checks and string helpers shared by every entry point.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::result::{clear_last_error, ovm_result, set_last_error, FfiError};

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

pub(crate) fn null(name: &str) -> FfiError {
    FfiError::new(ovm_result::OVM_RESULT_NULL_PARAMETER, format!("{name} is NULL"))
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
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, FfiError> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: as the caller's contract.
        unsafe { str_arg(p, name) }.map(Some)
    }
}

/// Parse a UUID argument.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn id_arg(p: *const c_char, name: &str) -> Result<ovm_core::uuid::Uuid, FfiError> {
    // SAFETY: as the caller's contract.
    let s = unsafe { str_arg(p, name) }?;
    ovm_core::uuid::Uuid::parse_str(s).map_err(|e| {
        FfiError::new(ovm_result::OVM_RESULT_INVALID_ARGUMENT, format!("{name} is not a UUID: {e}"))
    })
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

/// Copy `s` into a caller buffer as a NUL-terminated string, reporting the needed size.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes; `out_n` is valid for a write.
pub(crate) unsafe fn copy_out(s: &str, buf: *mut c_char, len: usize, out_n: *mut usize) -> ovm_result {
    let needed = s.len() + 1;
    // SAFETY: out_n is valid per the contract.
    unsafe { out_n.write(needed) };
    if buf.is_null() || len < needed {
        set_last_error(&format!("buffer too small: {needed} bytes needed"));
        return ovm_result::OVM_RESULT_BUFFER_TOO_SMALL;
    }
    // SAFETY: buf holds at least `needed` bytes; the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        buf.add(s.len()).write(0);
    }
    ovm_result::OVM_RESULT_OK
}

/// Copy into a caller buffer inside [`call`].
///
/// # Safety
/// As [`copy_out`].
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
        return Err(null(name));
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

/// Check a JSON-serializable value into an owned string.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<*mut c_char, FfiError> {
    serde_json::to_string(v)
        .map(owned)
        .map_err(|e| FfiError::new(ovm_result::OVM_RESULT_INTERNAL, format!("cannot encode JSON: {e}")))
}
