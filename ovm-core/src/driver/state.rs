//! Persistent state of drivers, kept by the manager in its database.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::Result;

/// A driver's persistent key/value store, under the driver's namespace (the manager stores key `K`
/// of driver `NAME` as `NAME.K`). Writes are durable when they return.
pub trait DriverState: Send + Sync + fmt::Debug {
    /// The value of `key`.
    fn get(&self, key: &str) -> Result<Option<String>>;
    /// Set `key`.
    fn put(&self, key: &str, value: &str) -> Result<()>;
    /// Remove `key` (removing a missing key succeeds).
    fn delete(&self, key: &str) -> Result<()>;
    /// Every key starting with `prefix`, with its value, by key.
    fn list(&self, prefix: &str) -> Result<Vec<(String, String)>>;
    /// The value of a secret (such as a private key): as [`DriverState::get`], decrypted when the
    /// manager keeps secrets encrypted at rest ([`crate::ManagerBuilder::sealing_key`]).
    fn get_secret(&self, key: &str) -> Result<Option<String>> {
        self.get(key)
    }
    /// Set a secret: as [`DriverState::put`], encrypted when the manager has a sealing key.
    fn put_secret(&self, key: &str, value: &str) -> Result<()> {
        self.put(key, value)
    }
}

/// What the manager hands a driver when it opens.
#[derive(Debug, Clone)]
pub struct DriverContext {
    /// The manager's id (the owner id it claims servers with).
    pub manager_id: String,
    /// The driver's persistent state.
    pub state: Arc<dyn DriverState>,
}

/// A [`DriverState`] in memory, for drivers used without a manager, and tests.
#[derive(Debug, Default)]
pub struct MemoryDriverState {
    map: Mutex<BTreeMap<String, String>>,
}

impl DriverState for MemoryDriverState {
    fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(crate::driver::lock(&self.map).get(key).cloned())
    }
    fn put(&self, key: &str, value: &str) -> Result<()> {
        crate::driver::lock(&self.map).insert(key.to_owned(), value.to_owned());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<()> {
        crate::driver::lock(&self.map).remove(key);
        Ok(())
    }
    fn list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let m = crate::driver::lock(&self.map);
        Ok(m.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
