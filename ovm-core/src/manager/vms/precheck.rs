//! Migration pre-checks: every reason a migration would fail, in one call
//! ([`crate::policy::migration`] over the manager's inventory and connections).

use crate::manager::Manager;
use crate::model::*;
use crate::policy::{migration, placement};
use crate::{Error, Result};

impl Manager {
    /// Every reason migrating `vm` to `target` would fail now (empty if it would not): the VM's
    /// state, the pool, maintenance mode, the target's role, reachability and free memory, the
    /// VM's repositories, LUNs and networks on the target, CPU compatibility, the hypervisor
    /// release and toolstack, anti-affinity, and whether the hypervisors can run and live-migrate
    /// the VM's domain type. `NotFound` if the VM or the server does not exist.
    pub fn migration_blockers(&self, vm: VmId, target: ServerId) -> Result<Vec<MigrationBlocker>> {
        self.migration_blockers_with(vm, target, MigrationMode::Live)
    }

    /// [`Manager::migration_blockers`] for a migration in `mode`: a cold move needs no log-dirty
    /// support on the source (it saves the paused domain).
    pub fn migration_blockers_with(
        &self,
        vm: VmId,
        target: ServerId,
        mode: MigrationMode,
    ) -> Result<Vec<MigrationBlocker>> {
        let st = self.state();
        let v = st.inv.get::<Vm>(vm)?;
        let usage = placement::Usage::of(&st.inv);
        migration::blockers(&st.inv, &usage, v, target, mode, |s| st.conns.contains_key(&s))
    }

    /// `Ok` if `vm` can migrate to `target` now; otherwise [`Error::InvalidState`] about the VM
    /// whose message lists every reason ([`Manager::migration_blockers`] has them typed).
    pub fn assert_can_migrate(&self, vm: VmId, target: ServerId) -> Result<()> {
        self.assert_can_migrate_with(vm, target, MigrationMode::Live)
    }

    /// [`Manager::assert_can_migrate`] for a migration in `mode`.
    pub fn assert_can_migrate_with(&self, vm: VmId, target: ServerId, mode: MigrationMode) -> Result<()> {
        let blockers = self.migration_blockers_with(vm, target, mode)?;
        if blockers.is_empty() {
            return Ok(());
        }
        let name = self.server(target)?.name.clone();
        Err(blocked(ObjectRef::new(ObjectKind::Vm, vm), &name, &blockers))
    }
}

/// The error of a migration with `blockers` to the server named `target`.
fn blocked(vm: ObjectRef, target: &str, blockers: &[MigrationBlocker]) -> Error {
    let why: Vec<&str> = blockers.iter().map(|b| b.detail.as_str()).collect();
    Error::InvalidState {
        object: vm,
        expected: format!("able to migrate to {target}"),
        actual: format!(
            "blocked by {} reason{}: {}",
            blockers.len(),
            if blockers.len() == 1 { "" } else { "s" },
            why.join("; ")
        ),
    }
}
