//! Migration slots: how many migrations run at once on each server.
//!
//! A migration holds a slot on its source and one on its destination for as long as it moves the
//! domain. A server has at most the manager's limit of slots ([`Manager::migration_limit`], 2
//! unless set). A migration whose servers are full waits in a queue: it takes its slots when they
//! are free and no migration queued before it wants one of the same servers (first come, first
//! served on each server), and stops waiting when its job is aborted. Slots live in memory only:
//! after a restart nothing is held (the interrupted jobs are rolled back by recovery).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::manager::jobs::StepCtx;
use crate::manager::lock;
use crate::model::{JobId, ServerId};
use crate::{Error, Result};

/// The limit when none was set.
pub const DEFAULT_MIGRATION_LIMIT: u32 = 2;
/// The largest limit that may be set.
pub const MAX_MIGRATION_LIMIT: u32 = 64;

/// How often a waiting migration looks at its job's abort flag.
const ABORT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug)]
struct Table {
    limit: u32,
    held: HashMap<ServerId, u32>,
    /// Waiting migrations, oldest first: the job and the servers it wants.
    queue: Vec<(JobId, [ServerId; 2])>,
}

impl Table {
    fn free(&self, s: ServerId) -> bool {
        self.held.get(&s).copied().unwrap_or(0) < self.limit
    }
}

/// The slots of every server.
#[derive(Debug)]
pub(crate) struct MigrationSlots {
    table: Mutex<Table>,
    changed: Condvar,
}

/// Slots held on two servers; given back when dropped.
#[derive(Debug)]
pub(crate) struct SlotGuard<'a> {
    slots: &'a MigrationSlots,
    servers: [ServerId; 2],
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut t = lock(&self.slots.table);
        for s in self.servers {
            if let Some(n) = t.held.get_mut(&s) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.held.remove(&s);
                }
            }
        }
        drop(t);
        self.slots.changed.notify_all();
    }
}

impl MigrationSlots {
    pub(crate) fn new(limit: u32) -> MigrationSlots {
        MigrationSlots {
            table: Mutex::new(Table { limit, held: HashMap::new(), queue: Vec::new() }),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        lock(&self.table).limit
    }

    pub(crate) fn set_limit(&self, limit: u32) {
        lock(&self.table).limit = limit;
        self.changed.notify_all();
    }

    /// How many slots `server` has taken now.
    #[cfg(test)]
    pub(crate) fn held(&self, server: ServerId) -> u32 {
        lock(&self.table).held.get(&server).copied().unwrap_or(0)
    }

    /// Take a slot on `source` and one on `dest` for `job`, waiting in line while either is full.
    /// `waiting` is told the servers that are full each time that changes; `aborted` is asked while
    /// waiting, and a true answer gives up the place in line with [`Error::Aborted`].
    pub(crate) fn acquire(
        &self,
        job: JobId,
        source: ServerId,
        dest: ServerId,
        aborted: impl Fn() -> bool,
        waiting: impl Fn(&[ServerId]),
    ) -> Result<SlotGuard<'_>> {
        let servers = [source, dest];
        let mut t = lock(&self.table);
        t.queue.push((job, servers));
        let mut reported: Vec<ServerId> = Vec::new();
        loop {
            let pos = t.queue.iter().position(|(j, _)| *j == job).expect("a waiting job is in the queue");
            let ahead = |s: ServerId| t.queue[..pos].iter().any(|(_, w)| w.contains(&s));
            let blocked: Vec<ServerId> =
                servers.iter().copied().filter(|s| !t.free(*s) || ahead(*s)).fold(Vec::new(), |mut v, s| {
                    if !v.contains(&s) {
                        v.push(s);
                    }
                    v
                });
            if blocked.is_empty() {
                t.queue.remove(pos);
                for s in servers {
                    *t.held.entry(s).or_default() += 1;
                }
                drop(t);
                // Those queued behind this one may now be first in line for other servers.
                self.changed.notify_all();
                return Ok(SlotGuard { slots: self, servers });
            }
            if aborted() {
                t.queue.remove(pos);
                drop(t);
                self.changed.notify_all();
                return Err(Error::Aborted { job: job.to_string() });
            }
            if blocked != reported {
                drop(t);
                waiting(&blocked);
                reported = blocked;
                t = lock(&self.table);
                continue;
            }
            t = self.changed.wait_timeout(t, ABORT_POLL).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// In a migration's step: take a slot on `source` and on `dest`, the job's message saying on which
/// servers it waits meanwhile. Aborting the job while it waits ends the wait with nothing done.
pub(crate) fn take<'a>(ctx: &StepCtx<'a>, source: ServerId, dest: ServerId) -> Result<SlotGuard<'a>> {
    let mgr = ctx.mgr;
    let guard = mgr.inner.migration_slots.acquire(
        ctx.job_id(),
        source,
        dest,
        || ctx.aborting(),
        |full| {
            let names: Vec<String> = full
                .iter()
                .map(|s| mgr.server(*s).map(|s| s.name.clone()).unwrap_or_else(|_| s.to_string()))
                .collect();
            ctx.message(format!("waiting for a migration slot on {}", names.join(" and ")));
        },
    )?;
    ctx.message("migrating");
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_server_never_holds_more_than_the_limit_and_waiters_go_first_come_first_served() {
        let slots = Arc::new(MigrationSlots::new(1));
        let (a, b, c) = (ServerId::new(), ServerId::new(), ServerId::new());
        let first = slots.acquire(JobId::new(), a, b, || false, |_| {}).unwrap();
        assert_eq!((slots.held(a), slots.held(b), slots.held(c)), (1, 1, 0));
        // Two waiters for `a`, queued in order; the second one also wants `c`, which is free.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for (i, dest) in [(1, b), (2, c)] {
            let (slots, order) = (slots.clone(), order.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                let g = slots
                    .acquire(
                        JobId::new(),
                        a,
                        dest,
                        || false,
                        |full| {
                            let _ = tx.send(full.to_vec());
                        },
                    )
                    .unwrap();
                lock(&order).push(i);
                std::thread::sleep(Duration::from_millis(30));
                drop(g);
            }));
            // Each waits (and says on which servers) before the next is queued.
            let full = rx.recv().unwrap();
            assert!(full.contains(&a), "{full:?}");
        }
        assert_eq!(slots.held(c), 0, "the second waiter is behind the first on a");
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock(&order), vec![1, 2]);
        assert_eq!((slots.held(a), slots.held(b), slots.held(c)), (0, 0, 0));
    }

    #[test]
    fn a_waiter_that_is_aborted_leaves_the_line_holding_nothing() {
        let slots = Arc::new(MigrationSlots::new(1));
        let (a, b) = (ServerId::new(), ServerId::new());
        let held = slots.acquire(JobId::new(), a, b, || false, |_| {}).unwrap();
        let abort = Arc::new(AtomicBool::new(false));
        let (s2, ab2) = (slots.clone(), abort.clone());
        let waiter = std::thread::spawn(move || {
            s2.acquire(JobId::new(), b, a, || ab2.load(Ordering::SeqCst), |_| {}).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(50));
        abort.store(true, Ordering::SeqCst);
        assert!(matches!(waiter.join().unwrap(), Err(Error::Aborted { .. })));
        drop(held);
        assert_eq!((slots.held(a), slots.held(b)), (0, 0));
        // A larger limit lets two run at once.
        slots.set_limit(2);
        let g1 = slots.acquire(JobId::new(), a, b, || false, |_| {}).unwrap();
        let g2 = slots.acquire(JobId::new(), b, a, || false, |_| panic!("nothing is full")).unwrap();
        assert_eq!(slots.held(a), 2);
        drop((g1, g2));
    }
}
