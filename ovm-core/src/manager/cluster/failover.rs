//! Pool master failover: when the master of a pool is lost, another running member takes over.

use crate::manager::jobs::Tx;
use crate::model::*;
use crate::Result;

/// If the lost server `s` is its pool's master, make the first running other member the master
/// (or none) and record a Warning event on the pool.
pub(super) fn fail_over_master(tx: &mut Tx<'_>, s: &Server) -> Result<()> {
    let server = s.id;
    if let Some(pool_id) = s.pool {
        let pool = tx.inv.get::<ServerPool>(pool_id)?.clone();
        if pool.master == Some(server) {
            let new_master = pool.servers.iter().copied().find(|m| {
                *m != server
                    && tx.inv.get::<Server>(*m).is_ok_and(|x| x.power_state == ServerPowerState::Running)
            });
            tx.edit::<ServerPool>(pool_id, |p| p.master = new_master)?;
            tx.event(
                pool.object_ref(),
                Severity::Warning,
                "pool.master_failover",
                match new_master {
                    Some(m) => format!("Master {} lost; {m} is the new master", s.name),
                    None => format!("Master {} lost; no other member can take over", s.name),
                },
            );
        }
    }
    Ok(())
}
