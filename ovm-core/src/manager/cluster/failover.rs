//! Pool master failover: when the master of a pool is lost, another running member takes over.

use crate::manager::jobs::Tx;
use crate::model::*;
use crate::Result;

/// If the lost server `s` is its pool's master, make the first running other member the master
/// (or none; none on a pool whose cluster elects its master) and record a Warning event on the
/// pool.
pub(super) fn fail_over_master(tx: &mut Tx<'_>, s: &Server) -> Result<()> {
    let server = s.id;
    if let Some(pool_id) = s.pool {
        let pool = tx.inv.get::<ServerPool>(pool_id)?.clone();
        if pool.master == Some(server) {
            // A pool on a cluster: its members elect the next master ([`super::watch`] follows).
            let on_cluster = super::pool_storage(&*tx.inv, &pool).is_some();
            let new_master = pool.servers.iter().copied().find(|m| {
                !on_cluster
                    && *m != server
                    && tx.inv.get::<Server>(*m).is_ok_and(|x| x.power_state == ServerPowerState::Running)
            });
            tx.edit::<ServerPool>(pool_id, |p| p.master = new_master)?;
            tx.event(
                pool.object_ref(),
                Severity::Warning,
                "pool.master_failover",
                match new_master {
                    Some(m) => format!("Master {} lost; {m} is the new master", s.name),
                    None if on_cluster => {
                        format!("Master {} lost; the pool's cluster elects the next master", s.name)
                    }
                    None => format!("Master {} lost; no other member can take over", s.name),
                },
            );
        }
    }
    Ok(())
}
