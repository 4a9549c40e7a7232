//! Server pools: creation, membership and settings.

use std::net::IpAddr;

use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// Settings of a new server pool.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoolSpec {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Clustered (needs `virtual_ip` and `pool_file_system`).
    pub clustered: bool,
    /// Virtual IP.
    pub virtual_ip: Option<IpAddr>,
    /// Pool file system.
    pub pool_file_system: Option<FileSystemId>,
    /// Cluster timeout, seconds (30..=300).
    pub cluster_timeout_secs: u32,
    /// Start policy.
    pub start_policy: StartPolicy,
    /// DRS/DPM policy.
    pub policy: PoolPolicy,
}

impl PoolSpec {
    /// An unclustered pool named `name` with default settings.
    pub fn new(name: &str) -> Self {
        PoolSpec {
            name: name.to_owned(),
            description: String::new(),
            clustered: false,
            virtual_ip: None,
            pool_file_system: None,
            cluster_timeout_secs: 120,
            start_policy: StartPolicy::BestServer,
            policy: PoolPolicy::default(),
        }
    }
}

impl Manager {
    /// Create a server pool. The job's result is the pool.
    pub fn create_pool(&self, spec: PoolSpec) -> Result<JobHandle> {
        // Destructured in full so that a new setting cannot be left out of the pool.
        let PoolSpec {
            name,
            description,
            clustered,
            virtual_ip,
            pool_file_system,
            cluster_timeout_secs,
            start_policy,
            policy,
        } = spec;
        let p = ServerPool {
            description,
            clustered,
            virtual_ip,
            pool_file_system,
            cluster_timeout_secs,
            start_policy,
            policy,
            ..ServerPool::new(name)
        };
        if let Some(ip) = p.virtual_ip {
            if !self.list::<ServerPool>(|o| o.virtual_ip == Some(ip)).is_empty() {
                return Err(Error::conflict(format!("virtual IP {ip} is used by another pool")));
            }
        }
        self.create_object(Object::ServerPool(p))
    }

    /// Add a server to a pool. The first member becomes the master.
    pub fn add_server_to_pool(&self, pool: PoolId, server: ServerId) -> Result<JobHandle> {
        let p = self.pool(pool)?;
        let s = self.server(server)?;
        if let Some(other) = s.pool {
            return Err(Error::conflict(if other == pool {
                format!("server {:?} is already in this pool", s.name)
            } else {
                format!(
                    "server {:?} already belongs to another pool; a server belongs to at most one pool",
                    s.name
                )
            }));
        }
        if s.ownership != Ownership::Owned {
            return Err(Error::state(s.object_ref(), "Owned", format!("{:?}", s.ownership)));
        }
        self.submit(
            JobSpec::new(
                "AddServerToPool",
                &format!("Add {} to pool {}", s.name, p.name),
                vec![p.object_ref(), s.object_ref()],
            )
            .step("join pool", move |ctx| {
                ctx.tx(|tx| {
                    tx.edit::<ServerPool>(pool, |p| {
                        p.servers.push(server);
                        if p.master.is_none() {
                            p.master = Some(server);
                        }
                    })?;
                    tx.edit::<Server>(server, |s| s.pool = Some(pool))?;
                    Ok(())
                })
            }),
        )
    }

    /// Remove a server (with no resident VMs) from its pool; a new master is elected if needed.
    pub fn remove_server_from_pool(&self, pool: PoolId, server: ServerId) -> Result<JobHandle> {
        let p = self.pool(pool)?;
        let s = self.server(server)?;
        if s.pool != Some(pool) {
            return Err(Error::invalid("server", format!("{:?} is not in pool {:?}", s.name, p.name)));
        }
        if let Some(vm) = self.list::<Vm>(|v| v.server == Some(server) && v.power_state.is_resident()).first()
        {
            return Err(Error::state(
                s.object_ref(),
                "without running VMs",
                format!("running VM {:?}", vm.name),
            ));
        }
        self.submit(
            JobSpec::new(
                "RemoveServerFromPool",
                &format!("Remove {} from pool {}", s.name, p.name),
                vec![p.object_ref(), s.object_ref()],
            )
            .step("leave pool", move |ctx| {
                ctx.tx(|tx| {
                    for vm in tx
                        .inv
                        .vms
                        .iter()
                        .filter(|v| v.server == Some(server))
                        .map(|v| v.id)
                        .collect::<Vec<_>>()
                    {
                        tx.edit::<Vm>(vm, |v| v.server = None)?;
                    }
                    tx.edit::<Server>(server, |s| s.pool = None)?;
                    tx.edit::<ServerPool>(pool, |p| {
                        p.servers.retain(|x| *x != server);
                        if p.master == Some(server) {
                            p.master = p.servers.first().copied();
                        }
                    })?;
                    Ok(())
                })
            }),
        )
    }

    /// Set a pool's DRS/DPM policy.
    pub fn set_pool_policy(&self, pool: PoolId, policy: PoolPolicy) -> Result<JobHandle> {
        self.edit_pool(pool, move |p| p.policy = policy)
    }

    /// Edit a pool's settings (membership changes go through add/remove).
    ///
    /// Raising `ha_failures_to_tolerate` is refused (`Conflict`) beyond what the
    /// failures-to-tolerate planner says the pool absorbs now ([`Manager::max_failures_tolerated`]).
    pub fn edit_pool(&self, pool: PoolId, f: impl FnOnce(&mut ServerPool)) -> Result<JobHandle> {
        let mut p = (*self.pool(pool)?).clone();
        let (servers, master, tolerated) = (p.servers.clone(), p.master, p.ha_failures_to_tolerate);
        f(&mut p);
        if p.servers != servers || p.master != master {
            return Err(Error::invalid("servers", "use add_server_to_pool / remove_server_from_pool"));
        }
        if p.ha_failures_to_tolerate > tolerated {
            self.check_failures_to_tolerate(&p)?;
        }
        self.update_object(Object::ServerPool(p))
    }

    /// Set how many simultaneous server failures `pool` keeps room for (see
    /// [`ServerPool::ha_failures_to_tolerate`]): refused (`Conflict`, naming what would not
    /// restart) beyond what the failures-to-tolerate planner says the pool absorbs now.
    pub fn set_ha_failures_to_tolerate(&self, pool: PoolId, failures: u32) -> Result<JobHandle> {
        self.edit_pool(pool, |p| p.ha_failures_to_tolerate = failures)
    }

    fn check_failures_to_tolerate(&self, p: &ServerPool) -> Result<()> {
        let max = self.max_failures_tolerated(p.id)?;
        if p.ha_failures_to_tolerate <= max {
            return Ok(());
        }
        let worst = self
            .ha_plan(p.id, max + 1)
            .ok()
            .and_then(|t| t.worst)
            .map(|worst| {
                let names: Vec<String> = worst
                    .decisions
                    .iter()
                    .filter(|d| d.action != HaAction::Restart && d.high_availability)
                    .map(|d| d.vm_name.clone())
                    .collect();
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({} would not restart after {} failures)", names.join(", "), max + 1)
                }
            })
            .unwrap_or_default();
        Err(Error::Conflict {
            reason: format!(
                "pool {} absorbs at most {max} simultaneous server failures now, not {}{worst}",
                p.name, p.ha_failures_to_tolerate
            ),
        })
    }
}
