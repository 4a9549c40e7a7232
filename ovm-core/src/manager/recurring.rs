//! Recurring system jobs with editable intervals (persisted in the manager database).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::jobs::JobSpec;
use super::{lock, JobHandle, Manager};
use crate::model::*;
use crate::store::Store;
use crate::{Error, Result};

/// The recurring job that refreshes every owned server (hardware, reachability, domain states).
pub const REFRESH_SERVERS: &str = "RefreshServers";

const DEFAULTS: &[(&str, u64)] = &[(REFRESH_SERVERS, 60_000)];

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) interval: Duration,
    pub(crate) enabled: bool,
    pub(crate) next: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Schedule {
    pub(crate) entries: BTreeMap<String, Entry>,
}

impl Schedule {
    pub(crate) fn load(db: &dyn Store) -> Result<Schedule> {
        let mut s = Schedule::default();
        for (name, ms) in DEFAULTS {
            s.entries.insert(
                (*name).to_owned(),
                Entry {
                    interval: Duration::from_millis(*ms),
                    enabled: true,
                    next: Instant::now() + Duration::from_millis(*ms),
                },
            );
        }
        for (name, ms, enabled) in db.recurring()? {
            if let Some(e) = s.entries.get_mut(&name) {
                e.interval = Duration::from_millis(ms);
                e.enabled = enabled;
                e.next = Instant::now() + e.interval;
            }
        }
        Ok(s)
    }
}

/// Start the scheduler on the manager's runtime. It holds only a weak reference to the manager.
pub(crate) fn start(mgr: &Manager) {
    let weak = Arc::downgrade(&mgr.inner);
    mgr.inner.handle.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Some(inner) = weak.upgrade() else { return };
            let mgr = Manager { inner };
            if mgr.is_closed() {
                return;
            }
            let due: Vec<String> = {
                let mut s = lock(&mgr.inner.recurring);
                let now = Instant::now();
                s.entries
                    .iter_mut()
                    .filter(|(_, e)| e.enabled && e.next <= now)
                    .map(|(n, e)| {
                        e.next = now + e.interval;
                        n.clone()
                    })
                    .collect()
            };
            for name in due {
                let _ = mgr.run_recurring(&name);
            }
            // Each pool's DRS/DPM once per policy period.
            for pool in mgr.policies_due() {
                let _ = mgr.run_policy(pool);
            }
            if mgr.load_sampling_due() {
                let m = mgr.clone();
                mgr.inner.handle.spawn_blocking(move || {
                    let _ = m.sample_loads();
                    m.load_sampling_done();
                });
            }
        }
    });
}

impl Manager {
    /// The recurring system jobs: name, interval, enabled.
    pub fn recurring_jobs(&self) -> Vec<(String, Duration, bool)> {
        lock(&self.inner.recurring).entries.iter().map(|(n, e)| (n.clone(), e.interval, e.enabled)).collect()
    }

    /// Change a recurring job's interval (≥ 1 s) or enable/disable it. Persisted.
    pub fn set_recurring_job(&self, name: &str, interval: Duration, enabled: bool) -> Result<()> {
        if interval < Duration::from_secs(1) {
            return Err(Error::invalid("interval", "must be at least one second"));
        }
        let mut s = lock(&self.inner.recurring);
        let e = s
            .entries
            .get_mut(name)
            .ok_or_else(|| Error::invalid("name", format!("no recurring job {name:?}")))?;
        self.db().set_recurring(name, interval.as_millis() as u64, enabled)?;
        e.interval = interval;
        e.enabled = enabled;
        e.next = Instant::now() + interval;
        Ok(())
    }

    /// Run a recurring job now. Returns its job.
    pub fn run_recurring(&self, name: &str) -> Result<JobHandle> {
        match name {
            REFRESH_SERVERS => {
                let spec = JobSpec::new(REFRESH_SERVERS, "Refresh all servers", vec![]).unblockable().step(
                    "refresh",
                    |ctx| {
                        // A server powered off on purpose is not polled: powering it on reconnects.
                        let servers = ctx.mgr.list::<Server>(|s| {
                            s.ownership == Ownership::Owned && s.power_state != ServerPowerState::Stopped
                        });
                        let mut unreachable = Vec::new();
                        for s in servers {
                            if ctx.mgr.refresh_one(s.id).is_err() {
                                unreachable.push(s.name.clone());
                            }
                        }
                        ctx.message(if unreachable.is_empty() {
                            "all servers reachable".to_owned()
                        } else {
                            format!("unreachable: {}", unreachable.join(", "))
                        });
                        Ok(())
                    },
                );
                self.submit(spec)
            }
            _ => Err(Error::invalid("name", format!("no recurring job {name:?}"))),
        }
    }
}
