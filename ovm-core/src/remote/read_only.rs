//! [`ReadOnlyManager`]: a database held by a running manager, opened for reports.

use std::path::Path;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::{find_in, Call};
use crate::manager::MAX_CHANGES_PER_CALL;
use crate::model::*;
use crate::store::{SqliteStore, Store};
use crate::sync::lock;
use crate::{Error, Result};

/// A manager database opened for reading only, beside the manager that holds it (or with none).
///
/// It takes no lock and cannot write: SQLite opens the file read-only, so a report can never
/// disturb the manager. The inventory is read once, when it is opened (a snapshot); jobs, events
/// and the change feed are read from the file at each call, so they are current. It implements
/// [`super::ManagerApi`]: the reads answer (objects, jobs, events, the change feed's tokens); every
/// other call is refused with [`Error::PermissionDenied`].
pub struct ReadOnlyManager {
    id: String,
    inv: Inventory,
    store: Mutex<SqliteStore>,
}

impl std::fmt::Debug for ReadOnlyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyManager").field("id", &self.id).finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(v: T) -> Result<serde_json::Value> {
    serde_json::to_value(v)
        .map_err(|e| Error::Internal { message: format!("an answer does not encode: {e}") })
}

impl ReadOnlyManager {
    /// Opens the database file at `path` for reading (see [`SqliteStore::open_read_only`]).
    pub fn open(path: impl AsRef<Path>) -> Result<ReadOnlyManager> {
        let store = SqliteStore::open_read_only(path.as_ref())?;
        let mut inv = Inventory::new();
        for o in store.load_objects()? {
            inv.load(o);
        }
        let id = store.meta("manager_id")?.unwrap_or_default();
        Ok(ReadOnlyManager { id, inv, store: Mutex::new(store) })
    }

    /// Answers one call.
    pub(crate) fn answer<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let method = call.method();
        serde_json::from_value(self.value(call)?)
            .map_err(|e| Error::Internal { message: format!("the answer to {method} does not decode: {e}") })
    }

    fn value(&self, call: Call) -> Result<serde_json::Value> {
        let store = lock(&self.store);
        match call {
            Call::manager_id {} => encode(&self.id),
            Call::objects { kind } => encode(self.inv.objects_of(kind)),
            Call::object { object } => {
                encode(self.inv.get_object(object).ok_or_else(|| Error::not_found(object.kind, object.id))?)
            }
            Call::find { kind, key } => encode(find_in(&self.inv, kind, &key)?),
            Call::job { id } => encode(store.job(id)?.ok_or_else(|| Error::not_found(ObjectKind::Job, id))?),
            Call::jobs { filter } => encode(store.jobs(&filter)?),
            Call::event { id } => {
                encode(store.event(id)?.ok_or_else(|| Error::not_found(ObjectKind::Event, id))?)
            }
            Call::events { filter } => encode(store.events(&filter)?),
            Call::current_token {} => encode(store.last_token()?),
            Call::events_since { token } => {
                let first = store.first_token()?;
                if first > 0 && token + 1 < first {
                    return Err(Error::EventsLost { resume_token: store.last_token()? });
                }
                let changes = store.changes_since(token, MAX_CHANGES_PER_CALL)?;
                let next = changes.last().map(|c| c.token).unwrap_or(token);
                encode((changes, next))
            }
            other => Err(Error::PermissionDenied {
                reason: format!("{} needs a manager; the database is open read-only", other.method()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ManagerApi;
    use crate::{ErrorKind, Manager};

    #[test]
    fn a_held_database_is_read_beside_its_manager() {
        let dir = std::env::temp_dir().join(format!("ovm-read-only-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("m.db");
        assert_eq!(ReadOnlyManager::open(&db).unwrap_err().kind(), ErrorKind::Database);
        let mgr = Manager::open(&db).unwrap();
        let pool = mgr.create_pool(crate::manager::PoolSpec::new("p1")).unwrap().wait(None).unwrap();
        // The manager holds the file: a second manager is refused, a reader is not.
        assert_eq!(Manager::open(&db).unwrap_err().kind(), ErrorKind::DatabaseLocked);
        let ro = ReadOnlyManager::open(&db).unwrap();
        assert_eq!(ro.manager_id().unwrap(), mgr.id());
        let pools = ro.objects(ObjectKind::ServerPool).unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(ro.find(ObjectKind::ServerPool, "p1".into()).unwrap(), pools[0]);
        assert_eq!(ro.job(pool.id).unwrap().state, JobState::Completed);
        assert!(ro.jobs(Default::default()).unwrap().iter().any(|j| j.id == pool.id));
        assert_eq!(ro.current_token().unwrap(), mgr.current_token().unwrap());
        // Jobs are read at each call: a later one shows at once.
        let later = mgr.create_pool(crate::manager::PoolSpec::new("p2")).unwrap().wait(None).unwrap();
        assert_eq!(ro.job(later.id).unwrap().state, JobState::Completed);
        let (changes, next) = ro.events_since(0).unwrap();
        assert!(!changes.is_empty() && next == ro.current_token().unwrap());
        // Writes are refused, typed, and nothing is written.
        let refused = ro.create_pool(crate::manager::PoolSpec::new("p3")).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::PermissionDenied);
        assert_eq!(ro.wait_job(later.id, None).unwrap_err().kind(), ErrorKind::PermissionDenied);
        assert!(ro.subscribe_changes(None).is_err());
        mgr.close(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(mgr.read(|inv| inv.count(ObjectKind::ServerPool)), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
