//! Faults a test injects into the simulated world: failing calls, delays, guests ignoring shutdown.

use std::collections::HashMap;
use std::time::Duration;

use super::{SimOp, SimWorld};
use crate::driver::lock;
use crate::model::VmId;
use crate::{Error, Result};

#[derive(Debug, Default)]
pub(super) struct Faults {
    fail_next: Vec<(SimOp, Option<String>, u32)>,
    fail_after: Vec<(SimOp, Option<String>, u32)>,
    delays: HashMap<SimOp, Duration>,
    pub(super) ignore_shutdown: Vec<VmId>,
}

impl SimWorld {
    /// Make the next `count` calls of `op` fail (on `host` only, if given).
    pub fn fail_next(&self, op: SimOp, host: Option<&str>, count: u32) {
        lock(&self.inner.faults).fail_next.push((op, host.map(str::to_owned), count));
    }

    /// Let `pass` calls of `op` through (on `host` only, if given), then fail the one after.
    pub fn fail_after(&self, op: SimOp, host: Option<&str>, pass: u32) {
        lock(&self.inner.faults).fail_after.push((op, host.map(str::to_owned), pass));
    }

    /// Delay every call of `op` by `delay` (zero removes the delay).
    pub fn set_delay(&self, op: SimOp, delay: Duration) {
        let mut f = lock(&self.inner.faults);
        if delay.is_zero() {
            f.delays.remove(&op);
        } else {
            f.delays.insert(op, delay);
        }
    }

    /// Make a guest ignore graceful shutdown and reboot requests.
    pub fn ignore_shutdown(&self, vm: VmId, ignore: bool) {
        let mut f = lock(&self.inner.faults);
        f.ignore_shutdown.retain(|v| *v != vm);
        if ignore {
            f.ignore_shutdown.push(vm);
        }
    }

    pub(super) fn ignores_shutdown(&self, vm: VmId) -> bool {
        lock(&self.inner.faults).ignore_shutdown.contains(&vm)
    }

    /// Applies the delay and the armed failures of `op` on `host`.
    pub(super) fn before(&self, op: SimOp, host: &str) -> Result<()> {
        // The delay comes first, so a fault armed while an operation is under way still hits it.
        let delay = lock(&self.inner.faults).delays.get(&op).copied();
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let mut f = lock(&self.inner.faults);
        if let Some(i) =
            f.fail_after.iter().position(|(o, h, _)| *o == op && h.as_deref().is_none_or(|h| h == host))
        {
            if f.fail_after[i].2 == 0 {
                f.fail_after.remove(i);
                return Err(Error::backend(host, format!("injected failure of {op:?}")));
            }
            f.fail_after[i].2 -= 1;
        }
        if let Some(i) = f
            .fail_next
            .iter()
            .position(|(o, h, n)| *o == op && *n > 0 && h.as_deref().is_none_or(|h| h == host))
        {
            f.fail_next[i].2 -= 1;
            if f.fail_next[i].2 == 0 {
                f.fail_next.remove(i);
            }
            return Err(Error::backend(host, format!("injected failure of {op:?}")));
        }
        Ok(())
    }
}
