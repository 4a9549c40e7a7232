//! The per-thread last error message, and copying strings into caller buffers (which reports a too
//! small buffer through it). Depends only on [`crate::result`].

use std::cell::RefCell;
use std::ffi::c_char;

use crate::result::ovm_result;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|l| l.borrow_mut().clear());
}

pub(crate) fn set_last_error(msg: &str) {
    LAST_ERROR.with(|l| {
        let mut l = l.borrow_mut();
        l.clear();
        l.push_str(msg);
    });
}

/// Copy the calling thread's last error message (empty after a successful call) into `buf` as a
/// NUL-terminated string. `*out_n` receives the message length plus one. If `len` is too small,
/// returns `OVM_RESULT_BUFFER_TOO_SMALL` with `*out_n` set to the size needed. This call does not
/// reset the last error.
#[no_mangle]
pub unsafe extern "C" fn ovm_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    if out_n.is_null() {
        return ovm_result::OVM_RESULT_NULL_PARAMETER;
    }
    let msg = LAST_ERROR.with(|l| l.borrow().clone());
    // SAFETY: the caller passes `buf` valid for `len` bytes and a valid `out_n`.
    unsafe { copy_out(&msg, buf, len, out_n) }
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
