//! Small synchronisation helpers shared by every module.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, ignoring poisoning.
///
/// Every mutex in ovm guards state that is consistent at each unlock point, so a panic of another
/// thread while holding it does not make the data unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
