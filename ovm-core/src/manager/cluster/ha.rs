//! High availability: restarting the VMs of a lost server on the other servers of its pool.

use std::sync::Arc;

use crate::manager::Manager;
use crate::model::*;

impl Manager {
    /// Start again, elsewhere, the HA-enabled VMs among `victims` (the VMs that were resident on a
    /// lost server); a VM that cannot be restarted gets an Error event.
    pub(super) fn restart_ha_vms(&self, victims: Vec<Arc<Vm>>) {
        for vm in victims.into_iter().filter(|v| v.config.high_availability) {
            // Placement skips unreachable servers; the start job runs in the background.
            if let Err(e) = self.start_vm(vm.id) {
                let _ = self.raise_event(
                    vm.object_ref(),
                    Severity::Error,
                    "ha.restart_failed",
                    &format!("HA could not restart VM {}: {e}", vm.name),
                );
            }
        }
    }
}
