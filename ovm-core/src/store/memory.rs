//! A [`Store`] in process memory: the manager database's tables without SQL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Batch, EventFilter, JobFilter, Journal, ObjectWrite, Store};
use crate::model::{Change, Event, EventId, Job, JobId, JobState, Object, Timestamp};
use crate::remote::auth::{AuditEntry, AuditFilter, UserRecord};
use crate::sync::lock;
use crate::{Error, Result};

/// A store in process memory, for tests and for managers that keep nothing.
///
/// It keeps what the SQLite store keeps, with the same orders and the same atomicity (a group of
/// batches is applied whole or not at all), so the job engine and recovery can be tested without a
/// database. Clones share their contents: hand one to a manager and keep another, and the kept one
/// shows what the manager committed, and outlives it (a manager reopened on it recovers what the
/// first one left unfinished). [`MemoryStore::fail_commits_after`] makes commits fail the way a
/// full disk does.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
    /// Set when this handle's manager gave the store up: it takes no more writes.
    released: bool,
}

#[derive(Debug, Default, Clone)]
struct Data {
    objects: HashMap<uuid::Uuid, Object>,
    /// Jobs in insertion order (SQLite's row order), with their journals and targets.
    jobs: Vec<StoredJob>,
    job_index: HashMap<JobId, usize>,
    /// Events in row order: a replaced event moves to the end, as SQLite's `INSERT OR REPLACE` does.
    events: Vec<Event>,
    changes: BTreeMap<u64, Change>,
    meta: BTreeMap<String, String>,
    recurring: BTreeMap<String, (u64, bool)>,
    users: BTreeMap<String, UserRecord>,
    audit: Vec<AuditEntry>,
    /// Group commits that still succeed before every commit fails (`None`: no failure injected).
    commits_left: Option<usize>,
    commits: usize,
}

#[derive(Debug, Clone)]
struct StoredJob {
    job: Job,
    journal: Journal,
    targets: HashSet<uuid::Uuid>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// After `n` more successful group commits, every commit fails with [`Error::Database`] and
    /// writes nothing, as a full disk would.
    pub fn fail_commits_after(&self, n: usize) {
        lock(&self.data).commits_left = Some(n);
    }

    /// An independent copy of what is committed now: what a crash at this moment would leave on a
    /// disk. A manager opened on it recovers the jobs that were running.
    pub fn snapshot(&self) -> MemoryStore {
        let mut data = lock(&self.data).clone();
        data.commits_left = None;
        MemoryStore { data: Arc::new(std::sync::Mutex::new(data)), released: false }
    }

    /// How many group commits succeeded so far.
    pub fn commits(&self) -> usize {
        lock(&self.data).commits
    }

    /// The committed journal of a job.
    pub fn journal(&self, id: JobId) -> Option<Journal> {
        let d = lock(&self.data);
        d.job_index.get(&id).map(|&i| d.jobs[i].journal.clone())
    }
}

impl Data {
    fn apply(&mut self, batch: &Batch, now: Timestamp) -> Vec<u64> {
        for w in &batch.objects {
            match w {
                ObjectWrite::Put(o) => {
                    self.objects.insert(o.uuid(), o.clone());
                }
                ObjectWrite::Remove(r) => {
                    self.objects.remove(&r.id);
                }
            }
        }
        for (j, journal) in &batch.jobs {
            let i = match self.job_index.get(&j.id) {
                Some(&i) => {
                    self.jobs[i].job = j.clone();
                    i
                }
                None => {
                    self.jobs.push(StoredJob {
                        job: j.clone(),
                        journal: Journal::default(),
                        targets: HashSet::new(),
                    });
                    self.job_index.insert(j.id, self.jobs.len() - 1);
                    self.jobs.len() - 1
                }
            };
            if let Some(journal) = journal {
                self.jobs[i].journal = journal.clone();
            }
            if j.state == JobState::Queued {
                self.jobs[i].targets.extend(j.targets.iter().map(|t| t.id));
            }
        }
        for e in &batch.events {
            self.events.retain(|x| x.id != e.id);
            self.events.push(e.clone());
        }
        let mut tokens = Vec::with_capacity(batch.changes.len());
        for &(object, op) in &batch.changes {
            let token = self.changes.keys().next_back().map_or(1, |t| t + 1);
            self.changes.insert(token, Change { token, object, op, at: now });
            tokens.push(token);
        }
        for (k, v) in &batch.meta {
            self.meta.insert(k.clone(), v.clone());
        }
        tokens
    }
}

fn in_range(t: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
}

/// Newest first (by time, then by row), at most `limit`.
fn newest_first<T: Clone>(rows: Vec<(Timestamp, usize, &T)>, limit: Option<usize>) -> Vec<T> {
    let mut rows = rows;
    rows.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
    rows.into_iter().take(limit.unwrap_or(usize::MAX)).map(|r| r.2.clone()).collect()
}

impl Store for MemoryStore {
    fn commit_many(&mut self, batches: &[&Batch], now: Timestamp) -> Result<Vec<Vec<u64>>> {
        if self.released {
            return Err(Error::Closed);
        }
        let mut d = lock(&self.data);
        match &mut d.commits_left {
            Some(0) => {
                return Err(Error::Database {
                    message: "the store refused the write (injected failure)".into(),
                })
            }
            Some(n) => *n -= 1,
            None => {}
        }
        d.commits += 1;
        Ok(batches.iter().map(|b| d.apply(b, now)).collect())
    }

    fn release_lock(&mut self) {
        self.released = true;
    }

    fn load_objects(&self) -> Result<Vec<Object>> {
        Ok(lock(&self.data).objects.values().cloned().collect())
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(lock(&self.data).meta.get(key).cloned())
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let d = lock(&self.data);
        Ok(d.meta
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn job(&self, id: JobId) -> Result<Option<Job>> {
        let d = lock(&self.data);
        Ok(d.job_index.get(&id).map(|&i| d.jobs[i].job.clone()))
    }

    fn unfinished_jobs(&self) -> Result<Vec<(Job, Journal)>> {
        let d = lock(&self.data);
        let mut v: Vec<(usize, &StoredJob)> = d
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                !matches!(s.job.state, JobState::Completed | JobState::Failed | JobState::Aborted)
            })
            .collect();
        v.sort_by_key(|(i, s)| (s.job.created, *i));
        Ok(v.into_iter().map(|(_, s)| (s.job.clone(), s.journal.clone())).collect())
    }

    fn jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        let d = lock(&self.data);
        let rows = d
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, s)| f.object.is_none_or(|o| s.targets.contains(&o)))
            .filter(|(_, s)| f.states.is_empty() || f.states.contains(&s.job.state))
            .filter(|(_, s)| in_range(s.job.created, f.since, f.until))
            .map(|(i, s)| (s.job.created, i, &s.job))
            .collect();
        Ok(newest_first(rows, f.limit))
    }

    fn event(&self, id: EventId) -> Result<Option<Event>> {
        Ok(lock(&self.data).events.iter().find(|e| e.id == id).cloned())
    }

    fn events(&self, f: &EventFilter) -> Result<Vec<Event>> {
        let d = lock(&self.data);
        let rows = d
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| f.object.is_none_or(|o| e.object.id == o))
            .filter(|(_, e)| f.min_severity.is_none_or(|s| e.severity >= s))
            .filter(|(_, e)| f.acknowledged.is_none_or(|a| e.acknowledged.is_some() == a))
            .filter(|(_, e)| in_range(e.created, f.since, f.until))
            .map(|(i, e)| (e.created, i, e))
            .collect();
        Ok(newest_first(rows, f.limit))
    }

    fn changes_since(&self, token: u64, limit: usize) -> Result<Vec<Change>> {
        let d = lock(&self.data);
        Ok(d.changes.range(token + 1..).take(limit).map(|(_, c)| c.clone()).collect())
    }

    fn last_token(&self) -> Result<u64> {
        Ok(lock(&self.data).changes.keys().next_back().copied().unwrap_or(0))
    }

    fn first_token(&self) -> Result<u64> {
        Ok(lock(&self.data).changes.keys().next().copied().unwrap_or(0))
    }

    fn prune_changes(&mut self, keep: u64) -> Result<usize> {
        if self.released {
            return Err(Error::Closed);
        }
        let mut d = lock(&self.data);
        let last = d.changes.keys().next_back().copied().unwrap_or(0);
        let cut = last.saturating_sub(keep.max(1));
        let kept = d.changes.split_off(&(cut + 1));
        let dropped = d.changes.len();
        d.changes = kept;
        Ok(dropped)
    }

    fn recurring(&self) -> Result<Vec<(String, u64, bool)>> {
        Ok(lock(&self.data).recurring.iter().map(|(k, &(i, e))| (k.clone(), i, e)).collect())
    }

    fn set_recurring(&mut self, name: &str, interval_ms: u64, enabled: bool) -> Result<()> {
        if self.released {
            return Err(Error::Closed);
        }
        lock(&self.data).recurring.insert(name.to_owned(), (interval_ms, enabled));
        Ok(())
    }

    fn users(&self) -> Result<Vec<UserRecord>> {
        Ok(lock(&self.data).users.values().cloned().collect())
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        Ok(lock(&self.data).users.get(name).cloned())
    }

    fn put_user(&mut self, user: &UserRecord) -> Result<()> {
        if self.released {
            return Err(Error::Closed);
        }
        lock(&self.data).users.insert(user.name.clone(), user.clone());
        Ok(())
    }

    fn delete_user(&mut self, name: &str) -> Result<bool> {
        if self.released {
            return Err(Error::Closed);
        }
        Ok(lock(&self.data).users.remove(name).is_some())
    }

    fn append_audit(&mut self, entry: &AuditEntry) -> Result<u64> {
        if self.released {
            return Err(Error::Closed);
        }
        let mut d = lock(&self.data);
        let mut e = entry.clone();
        e.id = d.audit.len() as u64 + 1;
        d.audit.push(e);
        Ok(d.audit.len() as u64)
    }

    fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let d = lock(&self.data);
        let it = d.audit.iter().rev().filter(|e| f.matches(e)).cloned();
        Ok(it.take(f.limit.unwrap_or(usize::MAX)).collect())
    }
}
