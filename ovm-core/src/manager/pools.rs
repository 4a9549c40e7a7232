//! Server pools: creation, membership and settings.

use std::net::IpAddr;

use crate::manager::cluster::{free_node_number, join_step, leave_step, pool_storage};
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
    /// The pool file system: for a clustered pool, an NFS file system of a file server, on which
    /// the pool's members keep the pool file system as a file (as Oracle VM does), or a file
    /// system on a physical disk; the members then form a cluster on their servers.
    pub pool_file_system: Option<FileSystemId>,
    /// The physical disk (a shared LUN) to make the pool file system on, instead of
    /// `pool_file_system`: the pool's members then form a cluster on their servers (OCFS2 with
    /// O2CB), the first one to join makes the file system, and the cluster elects the master that
    /// holds the virtual IP. The disk must be shareable and used by nothing else.
    #[serde(default)]
    pub pool_disk: Option<PhysicalDiskId>,
    /// Cluster timeout, seconds (10..=300): how long a member may be silent before the others
    /// declare it dead.
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
            pool_disk: None,
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
            pool_disk,
            cluster_timeout_secs,
            start_policy,
            policy,
        } = spec;
        let mut p = ServerPool {
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
        if let (true, Some(fs), None) = (p.clustered, p.pool_file_system, pool_disk) {
            // The members keep the pool file system as a file on the file system's NFS export.
            let f = self.get::<FileSystem>(fs)?;
            if let FileSystemLocation::FileServer(srv) = f.location {
                if self.get::<FileServer>(srv)?.kind != FileServerKind::Nfs {
                    return Err(Error::invalid(
                        "pool_file_system",
                        format!(
                            "{} is not on an NFS server: a pool file system on a file server is on NFS",
                            f.name
                        ),
                    ));
                }
            }
        }
        let Some(disk) = pool_disk else { return self.create_object(Object::ServerPool(p)) };
        let fs = self.pool_file_system_on(&p, disk)?;
        p.pool_file_system = Some(fs.id);
        let obj = Object::ServerPool(p);
        obj.validate()?;
        let r = obj.object_ref();
        let summary = format!("Create clustered pool {} on disk {}", obj.name(), fs.name);
        self.submit(JobSpec::new("CreateServerPool", &summary, vec![r]).step("create", move |ctx| {
            ctx.tx(|tx| {
                tx.put(Object::FileSystem(fs))?;
                tx.put(obj)
            })?;
            ctx.set_result(r);
            Ok(())
        }))
    }

    /// The record of the pool file system of clustered pool `p` on physical disk `disk`, checked:
    /// the pool is clustered and names no other file system, the disk is a shareable LUN that
    /// holds no other file system, repository or pool file system.
    fn pool_file_system_on(&self, p: &ServerPool, disk: PhysicalDiskId) -> Result<FileSystem> {
        if !p.clustered {
            return Err(Error::invalid("pool_disk", "only a clustered pool has a pool file system"));
        }
        if p.pool_file_system.is_some() {
            return Err(Error::invalid(
                "pool_disk",
                "give a pool file system or a disk to make it on, not both",
            ));
        }
        let d = self.get::<PhysicalDisk>(disk)?;
        if !d.shareable || d.array.is_none() {
            return Err(Error::invalid(
                "pool_disk",
                format!("disk {} is not a shared LUN of a storage array", d.name),
            ));
        }
        let st = self.state();
        let used_by_fs =
            st.inv.file_systems.iter().find(|f| f.location == FileSystemLocation::PhysicalDisk(disk));
        if let Some(f) = used_by_fs {
            return Err(Error::conflict(format!("disk {} holds file system {}", d.name, f.name)));
        }
        let used_by_repo =
            st.inv.repositories.iter().find(|r| r.backing == RepositoryBacking::PhysicalDisk(disk));
        if let Some(r) = used_by_repo {
            return Err(Error::conflict(format!("disk {} holds repository {}", d.name, r.name)));
        }
        drop(st);
        let fs = FileSystem {
            id: FileSystemId::new(),
            name: format!("{} pool file system", p.name),
            description: format!("OCFS2 on {} ({})", d.name, d.page83_id),
            location: FileSystemLocation::PhysicalDisk(disk),
            path: format!("/poolfsmnt/{}", p.id.0),
            size_bytes: d.size_bytes,
            free_bytes: d.size_bytes,
        };
        fs.check()?;
        Ok(fs)
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
        let clustered = pool_storage(&self.state().inv, &p).is_some();
        let number = if clustered { Some(free_node_number(&p)?) } else { None };
        let mut job = JobSpec::new(
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
                    if let Some(n) = number {
                        p.cluster_nodes.push((server, n));
                    }
                })?;
                tx.edit::<Server>(server, |s| s.pool = Some(pool))?;
                Ok(())
            })
        });
        if clustered {
            job = job.step("join the cluster", move |ctx| join_step(ctx, pool, server));
        }
        self.submit(job)
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
            .step("leave the cluster", move |ctx| leave_step(ctx, pool, server))
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
                        p.cluster_nodes.retain(|(x, _)| *x != server);
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
