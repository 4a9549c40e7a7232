//! The members of a clustered pool whose pool file system lies on a physical disk (a LUN) or on an
//! NFS file system (a file there, as Oracle VM keeps it) form the
//! pool's cluster on their servers ([`crate::driver::ClusterOps`]): a server added to the pool
//! joins it (the first one makes the pool file system), the members already in it learn of the
//! new one first, and a server removed leaves it before the others forget it. Each change on a
//! server is journaled before it is made: its undo brings the server's view of the cluster back.
//! A member that boots again is in no cluster (O2CB's configuration does not outlive a boot): it
//! joins again ([`Manager::rejoin_cluster`], started by the cluster watch).

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::driver::cluster::PoolFile;
use crate::driver::{ClusterNode, ClusterOps, ClusterSpec, ClusterStatus};
use crate::job::{ServerUndo, Undo};
use crate::manager::jobs::{JobSpec, StepCtx};
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// How long a join waits for the cluster to report a master.
const MASTER_WAIT: Duration = Duration::from_secs(30);

/// Run `f` on the cluster operations of a connected server.
pub(crate) fn on_cluster<T>(
    mgr: &Manager,
    server: ServerId,
    f: impl FnOnce(&dyn ClusterOps) -> Result<T>,
) -> Result<T> {
    let h = mgr.hypervisor(server)?;
    let c = h.cluster().ok_or_else(|| Error::Unsupported { what: format!("clusters on server {server}") })?;
    f(c)
}

/// A member's name in its cluster: its server id.
pub(crate) fn node_name(server: ServerId) -> String {
    server.0.simple().to_string()
}

/// What holds a clustered pool's file system on its servers.
#[derive(Debug, Clone)]
pub(crate) enum PoolStorage {
    /// A physical disk (a shared LUN).
    Disk(PhysicalDisk),
    /// A file on an NFS file system.
    File(PoolFile),
}

/// The size of a pool file system kept as a file on NFS, MiB (Oracle VM's was 12 GiB; the
/// heartbeat, the locks and ovm's records need far less).
pub(crate) const POOL_FILE_MIB: u64 = 2048;

/// What holds `pool`'s file system, if the pool is clustered and its file system lies on a
/// physical disk or on an NFS file system (the pools whose members form a cluster on their
/// servers).
pub(crate) fn pool_storage(inv: &Inventory, pool: &ServerPool) -> Option<PoolStorage> {
    if !pool.clustered {
        return None;
    }
    let fs = inv.get::<FileSystem>(pool.pool_file_system?).ok()?;
    match fs.location {
        FileSystemLocation::PhysicalDisk(d) => {
            inv.get::<PhysicalDisk>(d).ok().map(|d| PoolStorage::Disk(PhysicalDisk::clone(d)))
        }
        FileSystemLocation::FileServer(srv) => {
            let srv = inv.get::<FileServer>(srv).ok()?;
            (srv.kind == FileServerKind::Nfs).then(|| {
                PoolStorage::File(PoolFile {
                    host: srv.access_host.clone(),
                    export: fs.path.clone(),
                    size_mib: POOL_FILE_MIB,
                })
            })
        }
    }
}

/// The IPv4 address a server is reached at (its address's host: an address, or a plain host name
/// resolved), for the cluster's traffic; unspecified if it has none (a backend that needs one
/// refuses it). A host name behind a URL scheme is the driver's own, and is not resolved.
fn server_ipv4(address: &str) -> Ipv4Addr {
    let scheme = address.split_once("://");
    let a = scheme.map_or(address, |(_, rest)| rest).trim_end_matches('/');
    if let Ok(ip) = a.parse::<Ipv4Addr>() {
        return ip;
    }
    if let Ok(SocketAddr::V4(sa)) = a.parse::<SocketAddr>() {
        return *sa.ip();
    }
    if scheme.is_some() {
        return Ipv4Addr::UNSPECIFIED;
    }
    let resolved = a.to_socket_addrs().or_else(|_| (a, 0).to_socket_addrs());
    resolved
        .into_iter()
        .flatten()
        .find_map(|sa| match sa {
            SocketAddr::V4(v4) => Some(*v4.ip()),
            SocketAddr::V6(_) => None,
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// The cluster of `pool` (with its members as `pool.cluster_nodes` has them) as member `this`
/// is told of it.
pub(crate) fn cluster_spec(
    inv: &Inventory,
    pool: &ServerPool,
    storage: &PoolStorage,
    this: ServerId,
    format: bool,
) -> Result<ClusterSpec> {
    let nodes = pool
        .cluster_nodes
        .iter()
        .map(|(s, number)| {
            let srv = inv.get::<Server>(*s)?;
            Ok(ClusterNode { number: *number, name: node_name(*s), address: server_ipv4(&srv.address) })
        })
        .collect::<Result<Vec<_>>>()?;
    let virtual_ip = match pool.virtual_ip {
        Some(std::net::IpAddr::V4(ip)) => Some(ip),
        Some(ip) => {
            return Err(Error::invalid("virtual_ip", format!("{ip}: a cluster's virtual IP is IPv4")))
        }
        None => None,
    };
    Ok(ClusterSpec {
        cluster: pool.id.0.to_string(),
        nodes,
        this_node: node_name(this),
        pool_disk: match storage {
            PoolStorage::Disk(d) => d.page83_id.clone(),
            PoolStorage::File(_) => String::new(),
        },
        pool_file: match storage {
            PoolStorage::Disk(_) => None,
            PoolStorage::File(f) => Some(f.clone()),
        },
        format,
        timeout_secs: pool.cluster_timeout_secs,
        virtual_ip,
    })
}

/// The lowest cluster node number no member of `pool` has.
pub(crate) fn free_node_number(pool: &ServerPool) -> Result<u8> {
    (0..=254u8)
        .find(|n| !pool.cluster_nodes.iter().any(|(_, m)| m == n))
        .ok_or_else(|| Error::conflict(format!("pool {} has as many members as a cluster can", pool.name)))
}

/// Step: `server` (already a member in the inventory, with its node number) joins the cluster of
/// `pool`; the connected members learn of it first.
pub(crate) fn join_step(ctx: &StepCtx<'_>, pool: PoolId, server: ServerId) -> Result<()> {
    let (p, disk, inv) = {
        let st = ctx.mgr.state();
        let p = ServerPool::clone(st.inv.get::<ServerPool>(pool)?);
        let Some(disk) = pool_storage(&st.inv, &p) else { return Ok(()) };
        (p, disk, st.inv.clone())
    };
    let mut before = p.clone();
    before.cluster_nodes.retain(|(s, _)| *s != server);
    let others: Vec<ServerId> = before.cluster_nodes.iter().map(|(s, _)| *s).collect();
    for m in &others {
        if ctx.mgr.hypervisor(*m).is_err() {
            continue; // not connected: told when it joins again
        }
        let old = cluster_spec(&inv, &before, &disk, *m, false)?;
        let new = cluster_spec(&inv, &p, &disk, *m, false)?;
        ctx.message(format!("telling {m} of the new member"));
        ctx.will_do(Undo::Server(ServerUndo::Cluster { server: m.0, spec: Box::new(old) }))?;
        on_cluster(ctx.mgr, *m, |c| c.join(&new))?;
    }
    let spec = cluster_spec(&inv, &p, &disk, server, others.is_empty())?;
    ctx.message(if spec.format { "making the pool file system and joining" } else { "joining the cluster" });
    ctx.will_do(Undo::Server(ServerUndo::LeaveCluster { server: server.0 }))?;
    let status = on_cluster(ctx.mgr, server, |c| c.join(&spec))?;
    let status = wait_for_master(ctx.mgr, server, status);
    record_master(ctx, pool, &p, &status)
}

impl Manager {
    /// A member of `pool`'s cluster that is in no cluster (it booted again) joins it again, as
    /// the member it was (its node number), without making the pool file system. A job; it does
    /// nothing if by then the server is no member of the pool's cluster, or is in a cluster.
    pub(crate) fn rejoin_cluster(&self, pool: PoolId, server: ServerId) -> Result<JobHandle> {
        let (s, p) = (self.server(server)?, self.pool(pool)?);
        self.submit(
            JobSpec::new(
                "JoinCluster",
                &format!("{} joins the cluster of pool {} again", s.name, p.name),
                vec![s.object_ref(), p.object_ref()],
            )
            .unblockable()
            .step("join", move |ctx| rejoin_step(ctx, pool, server)),
        )
    }
}

fn rejoin_step(ctx: &StepCtx<'_>, pool: PoolId, server: ServerId) -> Result<()> {
    let (p, disk, inv) = {
        let st = ctx.mgr.state();
        let p = ServerPool::clone(st.inv.get::<ServerPool>(pool)?);
        let Some(disk) = pool_storage(&st.inv, &p) else { return Ok(()) };
        (p, disk, st.inv.clone())
    };
    if !p.servers.contains(&server) || !p.cluster_nodes.iter().any(|(s, _)| *s == server) {
        return Ok(());
    }
    if on_cluster(ctx.mgr, server, |c| c.status())?.is_some() {
        return Ok(());
    }
    let spec = cluster_spec(&inv, &p, &disk, server, false)?;
    ctx.message("joining the cluster again");
    ctx.will_do(Undo::Server(ServerUndo::LeaveCluster { server: server.0 }))?;
    on_cluster(ctx.mgr, server, |c| c.join(&spec))?;
    let name = inv.get::<Server>(server)?.name.clone();
    ctx.tx(|tx| {
        tx.event(
            ObjectRef::new(ObjectKind::Server, server),
            Severity::Info,
            "cluster.rejoined",
            format!("Server {name} joined the cluster of pool {} again", p.name),
        );
        Ok(())
    })
}

/// Step: `server` leaves the cluster of `pool` (if it is connected; a server that is not is in no
/// cluster once it boots again), then the connected members forget it.
pub(crate) fn leave_step(ctx: &StepCtx<'_>, pool: PoolId, server: ServerId) -> Result<()> {
    let (p, disk, inv) = {
        let st = ctx.mgr.state();
        let p = ServerPool::clone(st.inv.get::<ServerPool>(pool)?);
        let Some(disk) = pool_storage(&st.inv, &p) else { return Ok(()) };
        (p, disk, st.inv.clone())
    };
    if !p.cluster_nodes.iter().any(|(s, _)| *s == server) {
        return Ok(());
    }
    if ctx.mgr.hypervisor(server).is_ok() {
        let old = cluster_spec(&inv, &p, &disk, server, false)?;
        ctx.message("leaving the cluster");
        ctx.will_do(Undo::Server(ServerUndo::Cluster { server: server.0, spec: Box::new(old) }))?;
        on_cluster(ctx.mgr, server, |c| c.leave())?;
    }
    let mut after = p.clone();
    after.cluster_nodes.retain(|(s, _)| *s != server);
    for (m, _) in &after.cluster_nodes {
        if ctx.mgr.hypervisor(*m).is_err() {
            continue;
        }
        let old = cluster_spec(&inv, &p, &disk, *m, false)?;
        let new = cluster_spec(&inv, &after, &disk, *m, false)?;
        ctx.will_do(Undo::Server(ServerUndo::Cluster { server: m.0, spec: Box::new(old) }))?;
        on_cluster(ctx.mgr, *m, |c| c.join(&new))?;
    }
    Ok(())
}

/// The cluster's state once it names a master (or after [`MASTER_WAIT`]).
fn wait_for_master(mgr: &Manager, server: ServerId, mut status: ClusterStatus) -> ClusterStatus {
    let t0 = Instant::now();
    while status.master.is_none() && t0.elapsed() < MASTER_WAIT {
        std::thread::sleep(Duration::from_millis(500));
        match on_cluster(mgr, server, |c| c.status()) {
            Ok(Some(s)) => status = s,
            _ => break,
        }
    }
    status
}

/// The member of `p` the cluster calls `name`: by its node name, or (backends that name members
/// by host, such as the simulator) by the server's name.
pub(crate) fn member_named(inv: &Inventory, p: &ServerPool, name: &str) -> Option<ServerId> {
    p.servers
        .iter()
        .copied()
        .find(|s| node_name(*s) == name || inv.get::<Server>(*s).is_ok_and(|srv| srv.name == name))
}

/// Make the pool's master the member the cluster elected.
fn record_master(ctx: &StepCtx<'_>, pool: PoolId, p: &ServerPool, status: &ClusterStatus) -> Result<()> {
    let Some(master) = status.master.as_deref() else { return Ok(()) };
    let Some(id) = member_named(&ctx.mgr.state().inv, p, master) else { return Ok(()) };
    if p.master == Some(id) {
        return Ok(());
    }
    ctx.tx(|tx| tx.edit::<ServerPool>(pool, |p| p.master = Some(id)).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_numbers() {
        assert_eq!(server_ipv4("10.77.0.1"), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(server_ipv4("ovm://10.77.0.2:8899/"), Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(server_ipv4("10.77.0.3:8899"), Ipv4Addr::new(10, 77, 0, 3));
        assert_eq!(server_ipv4("sim://xen1.invalid"), Ipv4Addr::UNSPECIFIED);
        let mut p = ServerPool::new("p");
        assert_eq!(free_node_number(&p).unwrap(), 0);
        let (a, b) = (ServerId::new(), ServerId::new());
        p.servers = vec![a, b];
        p.cluster_nodes = vec![(a, 0), (b, 2)];
        assert_eq!(free_node_number(&p).unwrap(), 1);
    }
}
