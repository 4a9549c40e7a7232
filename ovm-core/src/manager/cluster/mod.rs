//! Clustered pools: what happens when a server of a pool is lost.
//!
//! Today: marking a lost server unreachable and its VMs stopped ([`Manager::server_lost`]), pool
//! master failover ([`failover`]) and restarting the lost server's high-availability VMs on other
//! servers ([`ha`]). To come here: heartbeats between pool members, fencing of a lost server before
//! its VMs are restarted, master election and the pool's virtual IP.

mod failover;
mod ha;

use failover::fail_over_master;

use std::sync::Arc;

use crate::manager::{lock, Manager};
use crate::model::*;

impl Manager {
    /// A server stopped answering: mark it, warn, fail over the master, restart HA VMs elsewhere.
    pub(crate) fn server_lost(&self, server: ServerId, why: &str) {
        lock(&self.inner.state).conns.remove(&server);
        let Ok(s) = self.server(server) else { return };
        if s.power_state == ServerPowerState::Unreachable {
            return;
        }
        let stopped_by_dpm = s.power_state == ServerPowerState::Stopped;
        let victims: Vec<Arc<Vm>> =
            self.list::<Vm>(|v| v.server == Some(server) && v.power_state.is_resident());
        let res = self.system_tx(|tx| {
            tx.edit::<Server>(server, |s| {
                if !stopped_by_dpm {
                    s.power_state = ServerPowerState::Unreachable;
                }
            })?;
            if !stopped_by_dpm {
                tx.event(
                    s.object_ref(),
                    Severity::Warning,
                    "server.unreachable",
                    format!("Server {} is unreachable: {why}", s.name),
                );
            }
            for vm in &victims {
                tx.edit::<Vm>(vm.id, |v| {
                    v.power_state = PowerState::Stopped;
                    v.domid = None;
                })?;
            }
            fail_over_master(tx, &s)?;
            Ok(())
        });
        if res.is_err() {
            return;
        }
        self.restart_ha_vms(victims);
    }
}
