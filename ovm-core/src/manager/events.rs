//! Events (per object, with severities and acknowledgement) and the change feed.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};

use super::jobs::JobSpec;
use super::{JobHandle, Manager};
use crate::model::*;
use crate::store::{Batch, EventFilter};
use crate::{Error, Result};

/// Most changes [`Manager::events_since`] returns in one call.
pub const MAX_CHANGES_PER_CALL: usize = 10_000;

impl Manager {
    /// Record an event about an object (for example from a console plugin or a monitoring hook).
    /// Error and Critical events block mutating operations on the object until acknowledged.
    pub fn raise_event(
        &self,
        object: ObjectRef,
        severity: Severity,
        event_type: &str,
        summary: &str,
    ) -> Result<Event> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if event_type.trim().is_empty() {
            return Err(Error::invalid("event_type", "must not be empty"));
        }
        let mut st = self.state();
        if !st.inv.contains(object) && !matches!(object.kind, ObjectKind::Job | ObjectKind::Event) {
            return Err(Error::not_found(object.kind, object.id));
        }
        let e = Event {
            id: EventId::new(),
            object,
            severity,
            event_type: event_type.to_owned(),
            summary: summary.to_owned(),
            created: self.now(),
            acknowledged: None,
        };
        let mut b = Batch::default();
        b.events.push(e.clone());
        b.changes.push((ObjectRef::new(ObjectKind::Event, e.id), ChangeOp::Added));
        let seq = self.enqueue(b)?;
        if severity.blocks() {
            st.blocking_events.entry(object.id).or_default().push((e.id, severity));
        }
        drop(st);
        self.flush(seq)?;
        Ok(e)
    }

    /// Events matching `filter`, newest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        self.db().events(filter)
    }

    /// One event.
    pub fn event(&self, id: EventId) -> Result<Event> {
        self.db().event(id)?.ok_or_else(|| Error::not_found(ObjectKind::Event, id))
    }

    /// Acknowledge an event. Returns a job.
    pub fn acknowledge_event(&self, id: EventId) -> Result<JobHandle> {
        let e = self.event(id)?;
        if e.acknowledged.is_some() {
            return Err(Error::state(
                ObjectRef::new(ObjectKind::Event, id),
                "unacknowledged",
                "acknowledged",
            ));
        }
        self.acknowledge(vec![e], "Acknowledge event")
    }

    /// Acknowledge every unacknowledged event of an object. Returns a job.
    pub fn acknowledge_all(&self, object: ObjectRef) -> Result<JobHandle> {
        let evs = self.events(&EventFilter {
            object: Some(object.id),
            acknowledged: Some(false),
            ..Default::default()
        })?;
        self.acknowledge(evs, &format!("Acknowledge events of {object}"))
    }

    fn acknowledge(&self, events: Vec<Event>, summary: &str) -> Result<JobHandle> {
        let targets: Vec<ObjectRef> =
            events.iter().map(|e| ObjectRef::new(ObjectKind::Event, e.id)).collect();
        let spec = JobSpec::new("AcknowledgeEvents", summary, targets).unblockable().step(
            "acknowledge",
            move |ctx| {
                let at = ctx.mgr.now();
                let mut b = Batch::default();
                for mut e in events {
                    e.acknowledged = Some(at);
                    b.changes.push((ObjectRef::new(ObjectKind::Event, e.id), ChangeOp::Modified));
                    b.events.push(e);
                }
                let mut st = ctx.mgr.state();
                let seq = ctx.mgr.enqueue(b.clone_events())?;
                for e in &b.events {
                    if let Some(v) = st.blocking_events.get_mut(&e.object.id) {
                        v.retain(|(id, _)| *id != e.id);
                        if v.is_empty() {
                            st.blocking_events.remove(&e.object.id);
                        }
                    }
                }
                drop(st);
                ctx.mgr.flush(seq)
            },
        );
        self.submit(spec)
    }

    /// The newest change token. Changes after it have greater tokens.
    pub fn current_token(&self) -> Result<u64> {
        self.db().last_token()
    }

    /// Changes after `token` (oldest first, at most `MAX_CHANGES_PER_CALL`) and the token to resume from.
    /// If `token` is older than the retained feed, returns [`Error::EventsLost`]: re-read state and
    /// resume from the token it carries.
    pub fn events_since(&self, token: u64) -> Result<(Vec<Change>, u64)> {
        let db = self.db();
        let first = db.first_token()?;
        if first > 0 && token + 1 < first {
            return Err(Error::EventsLost { resume_token: db.last_token()? });
        }
        let changes = db.changes_since(token, MAX_CHANGES_PER_CALL)?;
        let next = changes.last().map(|c| c.token).unwrap_or(token);
        Ok((changes, next))
    }

    /// Drop all but the newest `keep` change-feed entries.
    pub fn prune_changes(&self, keep: u64) -> Result<usize> {
        self.db().prune_changes(keep)
    }

    /// Subscribe to the change feed. With `from = Some(token)`, the changes after `token` are replayed
    /// first; with `None` only new changes arrive.
    pub fn subscribe(&self, from: Option<u64>) -> Result<Subscription> {
        let rx = self.inner.changes.subscribe();
        let (backlog, last) = match from {
            Some(t) => {
                let mut all = VecDeque::new();
                let mut cursor = t;
                loop {
                    let (v, next) = self.events_since(cursor)?;
                    let n = v.len();
                    all.extend(v);
                    cursor = next;
                    if n < MAX_CHANGES_PER_CALL {
                        break;
                    }
                }
                (all, t)
            }
            None => (VecDeque::new(), self.current_token()?),
        };
        Ok(Subscription { rx, backlog, last, mgr: self.clone(), on_lost: LostEvents::Fail, failed: None })
    }
}

impl Batch {
    fn clone_events(&self) -> Batch {
        Batch { events: self.events.clone(), changes: self.changes.clone(), ..Default::default() }
    }
}

/// What a [`Subscription`] does when it falls behind by more than the manager's change buffer.
///
/// Both modes report the loss as [`Error::EventsLost`] with the token of the last change delivered.
/// The C API subscribes with [`LostEvents::Resume`] (its callback sees `OVM_CHANGE_EVENTS_LOST`, then
/// the missed changes); Python's `Subscription` uses [`LostEvents::Fail`] (it raises
/// `EventsLostError`, and `Manager.subscribe(from_token=e.resume_token)` resumes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LostEvents {
    /// The loss ends the subscription: every later receive returns [`Error::EventsLost`] again.
    /// Re-read state, then [`Manager::subscribe`] again from the resume token.
    #[default]
    Fail,
    /// The loss is a notice: the subscription has already resumed, and the next receives replay the
    /// missed changes from the database, in order, then continue live.
    Resume,
}

/// A live subscription to the change feed. If it falls behind by more than the manager's change
/// buffer, the next receive returns [`Error::EventsLost`] with the token to resume from; what
/// follows depends on its [`LostEvents`] mode (default [`LostEvents::Fail`]).
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Change>,
    backlog: VecDeque<Change>,
    last: u64,
    mgr: Manager,
    on_lost: LostEvents,
    /// Set once a [`LostEvents::Fail`] subscription lagged: the error every receive returns.
    failed: Option<u64>,
}

impl Subscription {
    /// Choose what happens when the subscription falls behind.
    pub fn on_lost(mut self, mode: LostEvents) -> Self {
        self.on_lost = mode;
        self
    }

    /// Its [`LostEvents`] mode.
    pub fn lost_events_mode(&self) -> LostEvents {
        self.on_lost
    }

    /// After a lag in [`LostEvents::Resume`] mode: listen again and queue the missed changes.
    fn resume(&mut self) -> Result<()> {
        self.rx = self.mgr.inner.changes.subscribe();
        let mut cursor = self.last;
        loop {
            let (v, next) = self.mgr.events_since(cursor)?;
            let n = v.len();
            self.backlog.extend(v);
            cursor = next;
            if n < MAX_CHANGES_PER_CALL {
                return Ok(());
            }
        }
    }

    /// The token of the last change delivered.
    pub fn token(&self) -> u64 {
        self.last
    }

    fn take(&mut self, c: Change) -> Option<Change> {
        if c.token <= self.last {
            return None;
        }
        self.last = c.token;
        Some(c)
    }

    fn lost(&self) -> Error {
        Error::EventsLost { resume_token: self.last }
    }

    /// The next change, waiting asynchronously. Once the manager is closed, [`Error::Closed`].
    pub async fn next(&mut self) -> Result<Change> {
        if self.mgr.is_closed() {
            return Err(Error::Closed);
        }
        if let Some(resume_token) = self.failed {
            return Err(Error::EventsLost { resume_token });
        }
        loop {
            if let Some(c) = self.backlog.pop_front() {
                if let Some(c) = self.take(c) {
                    return Ok(c);
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(c) => {
                    if let Some(c) = self.take(c) {
                        return Ok(c);
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let lost = self.lost();
                    match self.on_lost {
                        // Stay failed: a gap in the feed is never delivered as if it were whole.
                        LostEvents::Fail => self.failed = Some(self.last),
                        LostEvents::Resume => self.resume()?,
                    }
                    return Err(lost);
                }
                Err(RecvError::Closed) => return Err(Error::Closed),
            }
        }
    }

    /// The next change, waiting at most `timeout` (`Ok(None)` when none came). Must not be called
    /// from inside an async runtime; use [`Subscription::next`] there.
    pub fn next_blocking(&mut self, timeout: Duration) -> Result<Option<Change>> {
        let handle = self.mgr.inner.handle.clone();
        handle.block_on(async {
            match tokio::time::timeout(timeout, self.next()).await {
                Ok(r) => r.map(Some),
                Err(_) => Ok(None),
            }
        })
    }
}
