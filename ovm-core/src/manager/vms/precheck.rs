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
        let st = self.state();
        let v = st.inv.get::<Vm>(vm)?;
        let usage = placement::Usage::of(&st.inv);
        migration::blockers(&st.inv, &usage, v, target, |s| st.conns.contains_key(&s))
    }

    /// `Ok` if `vm` can migrate to `target` now; otherwise [`Error::InvalidState`] about the VM
    /// whose message lists every reason ([`Manager::migration_blockers`] has them typed).
    pub fn assert_can_migrate(&self, vm: VmId, target: ServerId) -> Result<()> {
        let blockers = self.migration_blockers(vm, target)?;
        if blockers.is_empty() {
            return Ok(());
        }
        let name = self.server(target)?.name.clone();
        Err(blocked(ObjectRef::new(ObjectKind::Vm, vm), &name, &blockers))
    }

    /// The server of `vm`'s pool, other than `leaving`, that `vm` should live-migrate to: among
    /// those without migration blockers, the one the pool's start policy picks. Fails with
    /// `InsufficientResources` naming each server's blockers when none qualifies.
    pub(crate) fn pick_migration_target(&self, vm: &Vm, leaving: ServerId) -> Result<ServerId> {
        let st = self.state();
        let usage = placement::Usage::of(&st.inv);
        let reachable = |s: ServerId| st.conns.contains_key(&s);
        let candidates: Vec<ServerId> = match vm.pool {
            Some(p) => st.inv.get::<ServerPool>(p)?.servers.clone(),
            None => Vec::new(),
        };
        let mut clear = Vec::new();
        let mut refused = Vec::new();
        for s in candidates.into_iter().filter(|s| *s != leaving) {
            let found = migration::blockers(&st.inv, &usage, vm, s, reachable)?;
            if found.is_empty() {
                clear.push(s);
            } else {
                let name = &st.inv.get::<Server>(s)?.name;
                let why: Vec<&str> = found.iter().map(|b| b.detail.as_str()).collect();
                refused.push(format!("{name}: {}", why.join(", ")));
            }
        }
        if clear.is_empty() {
            return Err(Error::InsufficientResources {
                object: vm.object_ref(),
                resource: format!(
                    "a server to migrate it to ({})",
                    if refused.is_empty() {
                        "no other server in its pool".to_owned()
                    } else {
                        refused.join("; ")
                    }
                ),
                needed: vm.config.memory_mib,
                available: 0,
            });
        }
        placement::pick(&st.inv, &usage, vm, |s| clear.contains(&s), reachable)
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
