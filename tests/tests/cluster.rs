//! Clustered pools whose pool file system lies on a LUN: the members form the pool's cluster on
//! their servers (the sim driver's clusters), joining and leaving with the pool, and a join that
//! fails leaves the pool and the cluster as they were.

mod common;
use common::*;

use ovm_core::driver::sim::DEFAULT_PASSWORD;
use ovm_core::manager::{PoolSpec, StorageArraySpec};
use ovm_core::model::*;
use ovm_core::{ErrorKind, Manager};

struct Dc {
    mgr: Manager,
    servers: Vec<ServerId>,
    disk: PhysicalDiskId,
}

fn dc() -> Dc {
    let mgr = Manager::builder().recurring_jobs(false).open().expect("open");
    let servers: Vec<ServerId> = ["xen1", "xen2", "xen3"]
        .iter()
        .map(|h| ServerId(result_id(mgr.discover_server(&format!("sim://{h}"), DEFAULT_PASSWORD))))
        .collect();
    let wwid = mgr.sim().add_lun("iqn.2026-01.ovm.sim:pool", "pool", 1 << 30);
    let array = StorageArrayId(result_id(mgr.register_storage_array(StorageArraySpec::iscsi(
        "array",
        "storage",
        vec![servers[0]],
    ))));
    let disk = mgr.physical_disks_of(array).iter().find(|d| d.page83_id == wwid).expect("the LUN").id;
    Dc { mgr, servers, disk }
}

fn clustered(name: &str, vip: &str, disk: PhysicalDiskId) -> PoolSpec {
    PoolSpec {
        clustered: true,
        virtual_ip: Some(vip.parse().unwrap()),
        pool_disk: Some(disk),
        cluster_timeout_secs: 12,
        ..PoolSpec::new(name)
    }
}

#[test]
fn the_members_of_a_clustered_pool_on_a_lun_form_its_cluster() {
    let dc = dc();
    let mgr = &dc.mgr;
    let pool = PoolId(result_id(mgr.create_pool(clustered("cp", "192.0.2.10", dc.disk))));
    let p = mgr.pool(pool).unwrap();
    let fs = mgr.get::<FileSystem>(p.pool_file_system.expect("the pool file system's record")).unwrap();
    assert_eq!(fs.location, FileSystemLocation::PhysicalDisk(dc.disk));
    assert_eq!(fs.path, format!("/poolfsmnt/{}", pool.0));
    assert_eq!(mgr.pool_cluster_status(pool).unwrap_err().kind(), ErrorKind::Unsupported, "no member yet");

    for s in &dc.servers {
        ok(mgr.add_server_to_pool(pool, *s));
    }
    let p = mgr.pool(pool).unwrap();
    assert_eq!(p.cluster_nodes, vec![(dc.servers[0], 0), (dc.servers[1], 1), (dc.servers[2], 2)]);
    let st = mgr.pool_cluster_status(pool).unwrap().expect("in a cluster");
    assert_eq!(st.cluster, pool.0.to_string());
    assert_eq!((st.members.len(), st.master.as_deref(), st.epoch), (3, Some("xen1"), 1));
    assert_eq!(p.master, Some(dc.servers[0]), "the manager's master is the cluster's");

    // Leaving: the server is out of the cluster, the others carry on.
    ok(mgr.remove_server_from_pool(pool, dc.servers[1]));
    let st = mgr.pool_cluster_status(pool).unwrap().unwrap();
    assert_eq!(st.members, ["xen1", "xen3"]);
    assert_eq!(mgr.pool(pool).unwrap().cluster_nodes, vec![(dc.servers[0], 0), (dc.servers[2], 2)]);

    // A server that cannot reach the cluster: the job fails and undoes what it did.
    mgr.sim().partition_host("xen2").unwrap();
    let err = mgr.add_server_to_pool(pool, dc.servers[1]).unwrap().wait(None).unwrap_err();
    assert!(err.to_string().contains("cannot reach cluster"), "{err}");
    let p = mgr.pool(pool).unwrap();
    assert!(!p.servers.contains(&dc.servers[1]) && p.cluster_nodes.len() == 2, "{p:?}");
    assert_eq!(mgr.server(dc.servers[1]).unwrap().pool, None);
    assert_eq!(mgr.pool_cluster_status(pool).unwrap().unwrap().members, ["xen1", "xen3"]);
    ok(mgr.acknowledge_all(mgr.server(dc.servers[1]).unwrap().object_ref()));
    ok(mgr.acknowledge_all(p.object_ref()));
    mgr.sim().heal_host("xen2").unwrap();
    ok(mgr.add_server_to_pool(pool, dc.servers[1]));
    assert_eq!(mgr.pool(pool).unwrap().cluster_nodes[2], (dc.servers[1], 1), "the lowest free number");
    assert_eq!(mgr.pool_cluster_status(pool).unwrap().unwrap().members.len(), 3);
}

#[test]
fn a_pool_disk_is_checked_before_anything_is_stored() {
    let dc = dc();
    let mgr = &dc.mgr;
    let count = || mgr.list::<ServerPool>(|_| true).len() + mgr.list::<FileSystem>(|_| true).len();
    let before = count();
    let err = mgr.create_pool(PoolSpec { pool_disk: Some(dc.disk), ..PoolSpec::new("plain") }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = mgr.create_pool(clustered("unknown", "192.0.2.11", PhysicalDiskId::new())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let fs = file_system(mgr, dc.servers[0], "fs1");
    let both = PoolSpec { pool_file_system: Some(fs), ..clustered("both", "192.0.2.12", dc.disk) };
    assert_eq!(mgr.create_pool(both).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let after_fs = count();
    assert_eq!(after_fs, before + 1, "only the NFS file system was added");
    ok(mgr.create_pool(clustered("first", "192.0.2.13", dc.disk)));
    let err = mgr.create_pool(clustered("second", "192.0.2.14", dc.disk)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("first pool file system"), "{err}");
    assert_eq!(count(), after_fs + 2, "the first pool and its file system, nothing of the second");
}
