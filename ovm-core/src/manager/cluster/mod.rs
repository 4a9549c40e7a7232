//! Clustered pools: what happens when a server of a pool is lost.
//!
//! Today: marking a lost server unreachable and its VMs stopped ([`Manager::server_lost`]), pool
//! master failover ([`failover`]), restarting the lost server's high-availability VMs on other
//! servers in start-priority order by the plan of [`crate::policy::ha`], and the
//! failures-to-tolerate planner ([`ha`]), and reading a pool's cluster
//! ([`Manager::pool_cluster_status`]). The election rules (epochs, heartbeats, self-fencing) are
//! [`crate::policy::election`], run by the simulated driver; the virtual IP on dom0 is
//! `xen::vip`. The members of a clustered pool on a LUN form its cluster on their servers
//! ([`membership`]), and the manager acts on their cluster's verdicts ([`watch`]): a member is
//! declared dead, and its HA VMs restarted, only once the cluster sees its heartbeat stopped.
//! While the manager is away, the pool's master restarts HA VMs itself (`xen::pool_ha`); the
//! manager, back, finds them where they run.

mod failover;
mod ha;
mod membership;
mod watch;

pub(crate) use membership::on_cluster;
pub(crate) use membership::{free_node_number, join_step, leave_step, pool_storage};
pub(crate) use watch::start as start_watch;

use failover::fail_over_master;

use std::collections::HashSet;
use std::sync::Arc;

use crate::driver::cluster::ClusterStatus;
use crate::manager::{lock, Manager};
use crate::model::*;
use crate::{Error, Result};

impl Manager {
    /// The cluster of `pool` as its servers report it: members, master, the master's epoch and
    /// each member's heartbeat ([`ClusterStatus`]). Asked of the pool's master first, then of its
    /// other connected servers, until one answers; `None` when that server is in no cluster.
    /// `NotFound` if the pool does not exist; `Unsupported` if no connected server of the pool
    /// has cluster operations; otherwise the last server's error if none answered.
    pub fn pool_cluster_status(&self, pool: PoolId) -> Result<Option<ClusterStatus>> {
        let p = self.pool(pool)?;
        let conns: Vec<_> = {
            let st = self.state();
            p.master
                .into_iter()
                .chain(p.servers.iter().copied().filter(|s| Some(*s) != p.master))
                .filter_map(|s| st.conns.get(&s).cloned())
                .collect()
        };
        let mut last = None;
        for c in conns {
            let Some(ops) = c.cluster() else { continue };
            match ops.status() {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Unsupported {
            what: format!("no connected server of pool {} reports its cluster", p.name),
        }))
    }

    /// Reach `pool` at its virtual IP, as Oracle VM's manager reaches a pool: the server that
    /// answers there — the master of its cluster, which holds the address — and the cluster as
    /// that server reports it. `NotFound` if the pool does not exist; `InvalidArgument` if it has
    /// no virtual IP or no servers; `Unsupported` if its servers' driver cannot; a timeout or
    /// backend error if nothing answers there; `PermissionDenied` if a server that is not a member
    /// of the pool (or not owned by this manager) answers.
    pub fn reach_pool(&self, pool: PoolId) -> Result<(ServerId, Option<ClusterStatus>)> {
        let p = self.pool(pool)?;
        let vip = p
            .virtual_ip
            .ok_or_else(|| Error::invalid("virtual_ip", format!("pool {} has no virtual IP", p.name)))?;
        let members: Vec<Arc<Server>> = p.servers.iter().filter_map(|s| self.server(*s).ok()).collect();
        let first = members
            .first()
            .ok_or_else(|| Error::invalid("servers", format!("pool {} has no servers", p.name)))?;
        let driver = self.driver_for(&first.address)?;
        let addresses: Vec<String> = members.iter().map(|s| s.address.clone()).collect();
        let (address, conn) = driver.reach_pool(vip, &addresses, self.id())?;
        let server = members.iter().find(|s| s.address == address).map(|s| s.id).ok_or_else(|| {
            Error::Internal { message: format!("the driver answered for {address}, no member of the pool") }
        })?;
        let status = match conn.cluster() {
            Some(c) => c.status()?,
            None => None,
        };
        Ok((server, status))
    }

    /// A server stopped answering: mark it and its VMs stopped, warn, fail over the master, and
    /// act on the HA plan ([`crate::policy::ha`]): one event per VM (`ha.restart`,
    /// `ha.not_restarted` or `vm.stopped`), then the HA-enabled VMs restarted in start-priority
    /// order on their planned servers.
    ///
    /// Through an agent, a lost connection, an agent that refuses this manager or one whose own
    /// link to its hypervisor ended says nothing of the server's VMs, which may still run: the
    /// server is only marked unreachable (as [`Manager::server_disconnected`] does), and its VMs
    /// are restarted elsewhere only once its pool's cluster declares it dead (after it fenced
    /// itself; [`watch`]). A VM is never restarted while its old copy may run.
    pub(crate) fn server_lost(&self, server: ServerId, why: &str) {
        let through_agent = self
            .server(server)
            .is_ok_and(|s| self.driver_for(&s.address).is_ok_and(|d| !d.connection_loss_is_host_loss()));
        if through_agent {
            return self.server_disconnected(server, why);
        }
        self.lose(server, why, false)
    }

    /// The cluster of the server's pool declared it dead ([`watch`]): as [`Manager::server_lost`],
    /// also when the manager had already marked it unreachable (its connection dropped first), as
    /// long as VMs are still recorded on it; with a `server.dead` event.
    pub(crate) fn server_declared_dead(&self, server: ServerId, why: &str) {
        self.lose(server, why, true)
    }

    fn lose(&self, server: ServerId, why: &str, declared: bool) {
        let connected: HashSet<ServerId> = {
            let mut st = lock(&self.inner.state);
            st.conns.remove(&server);
            st.conns.keys().copied().collect()
        };
        let Ok(s) = self.server(server) else { return };
        let victims: Vec<Arc<Vm>> =
            self.list::<Vm>(|v| v.server == Some(server) && v.power_state.is_resident());
        // Already lost; declared dead by its cluster, it is handled while VMs are recorded on it.
        let handled = !declared || victims.is_empty();
        if s.power_state == ServerPowerState::Unreachable && handled {
            return;
        }
        let stopped_by_dpm = s.power_state == ServerPowerState::Stopped;
        let ids: Vec<VmId> = victims.iter().map(|v| v.id).collect();
        let res = self.system_tx(|tx| {
            let plan = ha::plan_loss(tx, &s, &ids, &connected);
            tx.edit::<Server>(server, |s| {
                if !stopped_by_dpm {
                    s.power_state = ServerPowerState::Unreachable;
                }
            })?;
            if declared {
                tx.event(
                    s.object_ref(),
                    Severity::Warning,
                    "server.dead",
                    format!("Server {} is dead: {why}", s.name),
                );
            } else if !stopped_by_dpm {
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
            ha::record_decisions(tx, &s, &plan);
            fail_over_master(tx, &s)?;
            Ok(plan)
        });
        if let Ok(plan) = res {
            self.restart_ha_vms(plan);
        }
        // Declared dead by its cluster: it may boot again; its agent will be back then.
        if declared && self.driver_for(&s.address).is_ok_and(|d| !d.connection_loss_is_host_loss()) {
            self.keep_reconnecting(server);
        }
    }
}
