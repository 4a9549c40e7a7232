//! Time as the manager and its policies see it: a [`Clock`] that is the system's in production and a
//! simulated one ([`SimClock`]) where policies and the simulator run on simulated time.
//!
//! Timestamps are milliseconds since the Unix epoch ([`crate::model::Timestamp`]). Timeouts and
//! waits on real work (a job's `wait`, a driver call) stay on the monotonic [`std::time::Instant`]:
//! the clock dates what happened, it does not pace threads.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::Timestamp;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Timestamp {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    ms: Arc<AtomicU64>,
}

impl SimClock {
    /// A simulated clock showing `start_ms`.
    pub fn new(start_ms: Timestamp) -> SimClock {
        SimClock { ms: Arc::new(AtomicU64::new(start_ms)) }
    }

    /// Move the clock forward by `by`; returns the new time.
    pub fn advance(&self, by: Duration) -> Timestamp {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_add(by, Ordering::SeqCst).saturating_add(by)
    }

    /// Set the clock to `ms`, which may not lie before the time it shows (time never runs back).
    pub fn set(&self, ms: Timestamp) -> Timestamp {
        self.ms.fetch_max(ms, Ordering::SeqCst).max(ms)
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> Timestamp {
        self.ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_time_moves_only_forward_and_only_when_told() {
        let c = SimClock::new(1_000);
        let shared = c.clone();
        assert_eq!(c.now_ms(), 1_000);
        assert_eq!(c.advance(Duration::from_secs(60)), 61_000);
        assert_eq!(shared.now_ms(), 61_000, "clones share the time");
        assert_eq!(c.set(5_000), 61_000, "never back");
        assert_eq!(c.set(70_000), 70_000);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
