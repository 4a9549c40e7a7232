//! The C API of ovm: `include/ovm.h`.
//!
//! Conventions (see the header's preamble):
//! * every fallible function returns an [`ovm_result`]; `OVM_RESULT_OK` is 0 and the other numbers are
//!   stable: 1–999 are ovm-core's `ErrorKind` numbers, 1000+ are C-boundary errors;
//! * outputs are the last parameters and are written only on success;
//! * a failed call stores a message readable with [`ovm_last_error_message`] on the calling thread;
//! * every pointer is NULL-checked, every entry point catches panics (`OVM_RESULT_PANIC`);
//! * handles are opaque and freed with their `_free` function; `_free(NULL)` does nothing;
//! * strings in are NUL-terminated UTF-8 (checked); strings out go into caller buffers (the needed size
//!   is reported when too small) or are owned `char *` freed with [`ovm_string_free`].
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // Safety contracts are stated on each function for C callers.

// Layers, bottom up (each module uses only those above it in this list):
// result → last_error → handles → boundary → job → objects → events, manager, and the typed
// operations per object (server, pool, storage, repository, network, vm, migration, ha, tag, rebuild).
mod boundary;
mod console;
mod events;
mod ha;
mod handles;
mod job;
mod last_error;
mod loads;
mod manager;
mod migration;
mod network;
mod objects;
mod pool;
mod rebuild;
mod repository;
mod result;
mod server;
mod storage;
mod tag;
mod vm;

pub use boundary::ovm_string_free;
pub use events::*;
pub use ha::*;
pub use handles::{ovm_job, ovm_manager, ovm_rebuild_report};
pub use job::*;
pub use last_error::ovm_last_error_message;
pub use loads::*;
pub use manager::*;
pub use migration::*;
pub use network::*;
pub use objects::*;
pub use pool::*;
pub use rebuild::*;
pub use repository::*;
pub use result::*;
pub use server::*;
pub use storage::*;
pub use tag::*;
pub use vm::*;

/// Version of this library, e.g. `"0.1.0"`. The string is static: do not free it.
#[no_mangle]
pub extern "C" fn ovm_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Access to the Rust manager behind a handle, for this crate's benchmarks and tests.
#[doc(hidden)]
pub mod test_support {
    /// The manager behind a live handle, if it runs in this process.
    pub fn manager(m: &crate::ovm_manager) -> Option<&ovm_core::Manager> {
        m.local.as_ref()
    }
}
