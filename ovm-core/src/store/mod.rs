//! The manager database, behind one seam: the [`Store`] trait, what the manager reads and writes.
//!
//! Two stores implement it. [`SqliteStore`] is the manager database (embedded SQLite, versioned
//! schema, every group commit in one transaction). [`MemoryStore`] keeps the same tables in process
//! memory, with no SQL at all: the job engine and recovery are unit-tested on it, a commit failure
//! can be injected into it, and its contents outlive the manager that wrote them (a clone shares
//! them), so a test can reopen a manager on what a stopped one left.
//!
//! Durability of the SQLite store: the database runs in WAL mode. With [`Durability::Normal`] (the
//! default) a committed change survives a crash of the process; after a power loss or OS crash the
//! changes committed since the last WAL checkpoint may be lost, but the file stays consistent.
//! [`Durability::Full`] syncs the WAL on every commit, so a committed change also survives a power
//! loss.

pub use crate::job::Journal;
use crate::model::{
    Change, ChangeOp, Event, EventId, Job, JobId, JobState, Object, ObjectRef, Severity, Timestamp,
};
use crate::remote::auth::{AuditEntry, AuditFilter, UserRecord};
use crate::Result;

mod lock;
mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// What the manager keeps: objects, jobs with their journals, events, the change feed, meta keys
/// and recurring-job settings. Writes arrive as [`Batch`]es; a group of batches is committed
/// atomically (all or none), in order.
pub trait Store: Send + std::fmt::Debug {
    /// Write several batches atomically (group commit); returns each batch's change tokens, which
    /// grow across commits and are never reused.
    fn commit_many(&mut self, batches: &[&Batch], now: Timestamp) -> Result<Vec<Vec<u64>>>;

    /// Write one batch atomically; returns the change tokens assigned, in order.
    fn commit(&mut self, batch: &Batch, now: Timestamp) -> Result<Vec<u64>> {
        Ok(self.commit_many(&[batch], now)?.pop().unwrap_or_default())
    }

    /// Give up the store (its file's lock, for a file): every later write fails with
    /// [`crate::Error::Closed`]; reads still work.
    fn release_lock(&mut self);

    /// Every stored object.
    fn load_objects(&self) -> Result<Vec<Object>>;
    /// A meta value.
    fn meta(&self, key: &str) -> Result<Option<String>>;
    /// Every meta entry whose key starts with `prefix`, by key.
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>>;
    /// One job.
    fn job(&self, id: JobId) -> Result<Option<Job>>;
    /// Unfinished jobs with their journals, oldest first.
    fn unfinished_jobs(&self) -> Result<Vec<(Job, Journal)>>;
    /// Job history, newest first.
    fn jobs(&self, f: &JobFilter) -> Result<Vec<Job>>;
    /// One event.
    fn event(&self, id: EventId) -> Result<Option<Event>>;
    /// Events, newest first.
    fn events(&self, f: &EventFilter) -> Result<Vec<Event>>;
    /// Change-feed entries after `token`, oldest first, at most `limit`.
    fn changes_since(&self, token: u64, limit: usize) -> Result<Vec<Change>>;
    /// The newest change token (0 when the feed is empty).
    fn last_token(&self) -> Result<u64>;
    /// The oldest retained change token (0 when the feed is empty).
    fn first_token(&self) -> Result<u64>;
    /// Drop change-feed entries older than the newest `keep` (at least the newest entry is kept, so
    /// tokens keep growing).
    fn prune_changes(&mut self, keep: u64) -> Result<usize>;
    /// Recurring job intervals (name → (interval ms, enabled)), by name.
    fn recurring(&self) -> Result<Vec<(String, u64, bool)>>;
    /// Set a recurring job's interval.
    fn set_recurring(&mut self, name: &str, interval_ms: u64, enabled: bool) -> Result<()>;
    /// Every account, by name.
    fn users(&self) -> Result<Vec<UserRecord>>;
    /// One account.
    fn user(&self, name: &str) -> Result<Option<UserRecord>>;
    /// Insert or replace an account.
    fn put_user(&mut self, user: &UserRecord) -> Result<()>;
    /// Delete an account; whether it existed.
    fn delete_user(&mut self, name: &str) -> Result<bool>;
    /// Append an entry to the audit log; its id (from 1, in order) is returned and stored with it.
    fn append_audit(&mut self, entry: &AuditEntry) -> Result<u64>;
    /// Audit log entries, newest first.
    fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>>;
}

/// Newest schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

/// How hard commits are pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: survives process crashes; a power loss may lose the latest commits.
    #[default]
    Normal,
    /// WAL with `synchronous=FULL`: every commit is on stable storage when it returns.
    Full,
}

/// A write of one object.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // Short-lived, moved once into the commit; boxing would add an allocation per write.
pub enum ObjectWrite {
    /// Insert or replace.
    Put(Object),
    /// Delete.
    Remove(ObjectRef),
}

/// One atomic batch of writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// Objects to insert, replace or delete, applied in order.
    pub objects: Vec<ObjectWrite>,
    /// Jobs to insert or replace, with their journal when it changed.
    pub jobs: Vec<(Job, Option<Journal>)>,
    /// Events to insert or replace.
    pub events: Vec<Event>,
    /// Change-feed entries to append.
    pub changes: Vec<(ObjectRef, ChangeOp)>,
    /// Meta keys to set.
    pub meta: Vec<(String, String)>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
            && self.jobs.is_empty()
            && self.events.is_empty()
            && self.changes.is_empty()
            && self.meta.is_empty()
    }
}

/// Filter for job history queries.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct JobFilter {
    /// Only jobs acting on this object.
    pub object: Option<uuid::Uuid>,
    /// Only jobs in these states.
    pub states: Vec<JobState>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// Filter for event queries.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EventFilter {
    /// Only events about this object.
    pub object: Option<uuid::Uuid>,
    /// Only events of at least this severity.
    pub min_severity: Option<Severity>,
    /// Only acknowledged (`Some(true)`) or unacknowledged (`Some(false)`) events.
    pub acknowledged: Option<bool>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

#[cfg(test)]
mod conformance {
    //! The same writes on the SQLite store and the memory store give the same answers.

    use super::*;
    use crate::model::{ObjectKind, Tag};

    fn job(created: Timestamp, state: JobState, targets: Vec<ObjectRef>) -> Job {
        Job { state, ..Job::queued("k", "", targets, created) }
    }

    fn event(object: ObjectRef, severity: Severity, created: Timestamp, acked: bool) -> Event {
        Event {
            id: EventId::new(),
            object,
            severity,
            event_type: "t".into(),
            summary: String::new(),
            created,
            acknowledged: acked.then_some(created + 1),
        }
    }

    /// Writes every kind of record, then asks every query; returns the answers as text.
    fn exercise(store: &mut dyn Store) -> Vec<String> {
        let tag = Tag::new("t");
        let vm = Tag::new("v");
        let (t, v) = (ObjectRef::new(ObjectKind::Tag, tag.id), ObjectRef::new(ObjectKind::Tag, vm.id));
        let mut j1 = job(10, JobState::Queued, vec![t]);
        let j2 = job(10, JobState::Queued, vec![v]);
        let j3 = job(5, JobState::Queued, vec![t, v]);
        let mut e1 = event(t, Severity::Error, 3, false);
        let e2 = event(v, Severity::Info, 3, true);
        let e3 = event(t, Severity::Critical, 7, false);
        let mut b = Batch::default();
        b.objects.push(ObjectWrite::Put(crate::model::Object::Tag(tag.clone())));
        b.objects.push(ObjectWrite::Put(crate::model::Object::Tag(vm.clone())));
        b.jobs.extend([
            (j1.clone(), Some(Journal::new(2))),
            (j2.clone(), None),
            (j3.clone(), Some(Journal::new(1))),
        ]);
        b.events.extend([e1.clone(), e2.clone(), e3.clone()]);
        b.changes.extend([(t, ChangeOp::Added), (v, ChangeOp::Added)]);
        b.meta.extend([("a.x".into(), "1".into()), ("a.y".into(), "2".into()), ("b".into(), "3".into())]);
        let mut out = vec![format!("{:?}", store.commit(&b, 100).unwrap())];
        // Second group: a job finishes with a journal, an event is acknowledged (and re-inserted),
        // the VM is removed.
        j1.state = JobState::Completed;
        e1.acknowledged = Some(50);
        let mut b2 = Batch::default();
        b2.jobs.push((j1.clone(), Some(Journal { total: 2, steps: vec![("s".into(), vec![])], done: 2 })));
        b2.events.push(e1.clone());
        b2.objects.push(ObjectWrite::Remove(v));
        b2.changes.extend([(v, ChangeOp::Removed), (t, ChangeOp::Modified), (t, ChangeOp::Modified)]);
        let empty = Batch::default();
        out.push(format!("{:?}", store.commit_many(&[&b2, &empty], 200).unwrap()));

        let ids = |jobs: Vec<Job>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
        let mut objects: Vec<_> = store.load_objects().unwrap().iter().map(|o| o.object_ref()).collect();
        objects.sort_by_key(|r| r.id);
        out.push(format!("{objects:?}"));
        out.push(format!("{:?}", store.meta("b").unwrap()));
        out.push(format!("{:?}", store.meta("zz").unwrap()));
        out.push(format!("{:?}", store.meta_with_prefix("a.").unwrap()));
        out.push(format!("{:?}", store.job(j1.id).unwrap().map(|j| j.state)));
        let unfinished: Vec<_> =
            store.unfinished_jobs().unwrap().into_iter().map(|(j, jr)| (j.id, jr)).collect();
        out.push(format!("{unfinished:?}"));
        out.push(format!("{:?}", ids(store.jobs(&JobFilter::default()).unwrap())));
        out.push(format!(
            "{:?}",
            ids(store.jobs(&JobFilter { object: Some(t.id), ..Default::default() }).unwrap())
        ));
        out.push(format!(
            "{:?}",
            ids(store
                .jobs(&JobFilter { states: vec![JobState::Queued], limit: Some(1), ..Default::default() })
                .unwrap())
        ));
        out.push(format!(
            "{:?}",
            ids(store.jobs(&JobFilter { since: Some(6), until: Some(11), ..Default::default() }).unwrap())
        ));
        let eids = |ev: Vec<Event>| ev.iter().map(|e| e.id).collect::<Vec<_>>();
        out.push(format!("{:?}", eids(store.events(&EventFilter::default()).unwrap())));
        out.push(format!(
            "{:?}",
            eids(
                store
                    .events(&EventFilter {
                        min_severity: Some(Severity::Error),
                        acknowledged: Some(false),
                        ..Default::default()
                    })
                    .unwrap()
            )
        ));
        out.push(format!(
            "{:?}",
            eids(
                store
                    .events(&EventFilter { object: Some(t.id), limit: Some(1), ..Default::default() })
                    .unwrap()
            )
        ));
        out.push(format!("{:?}", store.event(e1.id).unwrap().and_then(|e| e.acknowledged)));
        let feed = |s: &dyn Store, from| {
            s.changes_since(from, 3).unwrap().iter().map(|c| (c.token, c.op, c.at)).collect::<Vec<_>>()
        };
        out.push(format!("{:?}", feed(store, 0)));
        out.push(format!("{:?} {:?}", store.first_token().unwrap(), store.last_token().unwrap()));
        out.push(format!("{:?}", store.prune_changes(2).unwrap()));
        out.push(format!(
            "{:?} {:?} {:?}",
            store.first_token().unwrap(),
            store.last_token().unwrap(),
            feed(store, 0)
        ));
        let mut b3 = Batch::default();
        b3.changes.push((t, ChangeOp::Modified));
        out.push(format!("{:?}", store.commit(&b3, 300).unwrap()));
        store.set_recurring("refresh", 1000, true).unwrap();
        store.set_recurring("a", 5, false).unwrap();
        store.set_recurring("refresh", 2000, true).unwrap();
        out.push(format!("{:?}", store.recurring().unwrap()));
        use crate::remote::auth::{AuditOutcome, Role};
        let user = |name: &str, role| UserRecord {
            name: name.into(),
            role,
            password_hash: None,
            certificates: vec![],
            created: 5,
        };
        store.put_user(&user("zed", Role::ReadOnly)).unwrap();
        store.put_user(&user("amy", Role::Operator)).unwrap();
        store.put_user(&user("zed", Role::Administrator)).unwrap();
        out.push(format!("{:?}", store.users().unwrap()));
        out.push(format!("{:?} {:?}", store.user("amy").unwrap(), store.user("bob").unwrap()));
        out.push(format!("{:?} {:?}", store.delete_user("amy").unwrap(), store.delete_user("amy").unwrap()));
        for (i, who) in ["zed", "amy", "zed"].into_iter().enumerate() {
            let e = AuditEntry {
                id: 0,
                at: 10 * i as u64,
                user: who.into(),
                peer: "p".into(),
                method: "m".into(),
                summary: "{}".into(),
                outcome: if i == 1 { AuditOutcome::Refused { reason: "r".into() } } else { AuditOutcome::Ok },
            };
            out.push(format!("{:?}", store.append_audit(&e).unwrap()));
        }
        out.push(format!("{:?}", store.audit(&AuditFilter::default()).unwrap()));
        let zed = AuditFilter { user: Some("zed".into()), limit: Some(1), ..Default::default() };
        out.push(format!("{:?}", store.audit(&zed).unwrap()));
        let refused = AuditFilter { refused_only: true, since: Some(5), ..Default::default() };
        out.push(format!("{:?}", store.audit(&refused).unwrap()));
        store.release_lock();
        out.push(format!("{:?}", store.commit(&b3, 400).map_err(|e| e.kind())));
        out.push(format!("{:?}", store.set_recurring("x", 1, true).map_err(|e| e.kind())));
        out.push(format!("{:?}", store.put_user(&user("x", Role::ReadOnly)).map_err(|e| e.kind())));
        out.push(format!("{:?}", store.prune_changes(1).map_err(|e| e.kind())));
        out.push(format!("{:?}", store.last_token().unwrap()));
        out
    }

    #[test]
    fn the_memory_store_answers_as_the_sqlite_store_does() {
        let mut sqlite = SqliteStore::open_in_memory().unwrap();
        let mut memory = MemoryStore::new();
        let (a, b) = (exercise(&mut sqlite), exercise(&mut memory));
        // The records differ by their fresh ids, so compare the shapes: the same ids in the same
        // places once each is replaced by its first position.
        let normalize = |lines: Vec<String>| -> Vec<String> {
            let re = |s: &str| -> Vec<String> {
                s.split(|c: char| !(c.is_ascii_hexdigit() || c == '-')).map(str::to_owned).collect()
            };
            let mut seen: Vec<String> = Vec::new();
            lines
                .into_iter()
                .map(|l| {
                    let mut l = l;
                    for w in re(&l.clone()) {
                        if w.len() == 36 && w.matches('-').count() == 4 {
                            let n = seen.iter().position(|x| *x == w).unwrap_or_else(|| {
                                seen.push(w.clone());
                                seen.len() - 1
                            });
                            l = l.replace(&w, &format!("#{n}"));
                        }
                    }
                    l
                })
                .collect()
        };
        let (a, b) = (normalize(a), normalize(b));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "answer {i} differs (sqlite left, memory right)");
        }
        assert_eq!(a.len(), b.len());
    }
}
