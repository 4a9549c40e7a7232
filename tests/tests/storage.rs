//! Storage through the file-system plug-ins, on simulated servers: a file server's file systems
//! discovered with their sizes, repositories mounted on the servers they are presented to (and
//! unmounted), bad input refused with nothing left behind, and placement that follows the mounts.

mod common;

use common::{ok, result_id, WAIT};
use ovm_core::driver::sim::{SimDriver, SimOp, SimWorld, DEFAULT_PASSWORD};
use ovm_core::driver::{Driver, MountSource};
use ovm_core::manager::{
    repository_path, ArrayManagementSpec, FileServerSpec, PoolSpec, RepositorySpec, StorageArraySpec, VmSpec,
};
use ovm_core::model::*;
use ovm_core::{ErrorKind, Manager};

const GIB: u64 = 1 << 30;

struct Dc {
    mgr: Manager,
    world: SimWorld,
    servers: Vec<ServerId>,
    pool: PoolId,
}

fn dc() -> Dc {
    let world = SimWorld::default();
    world.add_nfs_export("nfs1", "/srv/repo", 200 * GIB);
    world.add_nfs_export("nfs1", "/srv/iso", 20 * GIB);
    let mgr = Manager::builder().sim_world(world.clone()).recurring_jobs(false).open().unwrap();
    let servers: Vec<ServerId> = (1..=3)
        .map(|k| ServerId(result_id(mgr.discover_server(&format!("sim://xen{k}"), DEFAULT_PASSWORD))))
        .collect();
    let pool = PoolId(result_id(mgr.create_pool(PoolSpec::new("pool1"))));
    for s in &servers {
        ok(mgr.add_server_to_pool(pool, *s));
    }
    Dc { mgr, world, servers, pool }
}

fn failed(job: ovm_core::Result<ovm_core::JobHandle>) -> ovm_core::Error {
    job.expect("job accepted").wait(WAIT).expect_err("the job fails")
}

/// What a simulated server has mounted, as the driver reports it.
fn mounts(dc: &Dc, host: &str) -> Vec<(MountSource, String)> {
    let hv = SimDriver::new(dc.world.clone())
        .connect(&format!("sim://{host}"), DEFAULT_PASSWORD, dc.mgr.id())
        .unwrap();
    hv.file_storage().unwrap().mounts().unwrap().into_iter().map(|m| (m.source, m.mount_point)).collect()
}

fn nfs_repository(dc: &Dc) -> (FileServerId, FileSystemId, RepositoryId) {
    let fsrv = FileServerId(result_id(dc.mgr.register_file_server(FileServerSpec::nfs(
        "nfs1",
        "nfs1",
        vec![dc.servers[0]],
    ))));
    let fs = dc.mgr.file_systems_of(fsrv).into_iter().find(|f| f.path == "/srv/repo").unwrap().id;
    let repo = RepositoryId(result_id(dc.mgr.create_repository(RepositorySpec {
        name: "repo1".into(),
        backing: RepositoryBacking::FileSystem(fs),
        owner_pool: Some(dc.pool),
        capacity_bytes: 0,
    })));
    (fsrv, fs, repo)
}

#[test]
fn a_file_server_is_discovered_with_the_sizes_the_storage_reports() {
    let dc = dc();
    let (fsrv, _, _) = nfs_repository(&dc);
    let mut found: Vec<(String, String, u64, u64)> = dc
        .mgr
        .file_systems_of(fsrv)
        .iter()
        .map(|f| (f.name.clone(), f.path.clone(), f.size_bytes, f.free_bytes))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("nfs1:/srv/iso".into(), "/srv/iso".into(), 20 * GIB, 20 * GIB),
            ("nfs1:/srv/repo".into(), "/srv/repo".into(), 200 * GIB, 200 * GIB),
        ]
    );
    // A new export appears, one vanishes: refresh follows the storage.
    dc.world.add_nfs_export("nfs1", "/srv/new", GIB);
    dc.world.remove_nfs_export("nfs1", "/srv/iso");
    ok(dc.mgr.refresh_file_server(fsrv));
    let mut paths: Vec<String> = dc.mgr.file_systems_of(fsrv).iter().map(|f| f.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, ["/srv/new", "/srv/repo"]);
    // The one holding a repository stays, with an Error event, when it vanishes.
    dc.world.remove_nfs_export("nfs1", "/srv/repo");
    ok(dc.mgr.refresh_file_server(fsrv));
    let repo_fs = dc.mgr.file_systems_of(fsrv).into_iter().find(|f| f.path == "/srv/repo").expect("kept");
    let events = dc
        .mgr
        .events(&ovm_core::store::EventFilter { object: Some(repo_fs.id.0), ..Default::default() })
        .unwrap();
    assert!(events.iter().any(|e| e.event_type == "file_system.vanished"), "{events:?}");
}

#[test]
fn bad_file_servers_are_refused_and_nothing_is_stored() {
    let dc = dc();
    let before = dc.mgr.read(|inv| inv.all_objects().len());
    // Nobody answers there: the job fails, nothing is kept.
    let e = failed(dc.mgr.register_file_server(FileServerSpec::nfs("ghost", "nfs9", vec![dc.servers[0]])));
    assert!(e.to_string().contains("no NFS server answers"), "{e}");
    assert_eq!(dc.mgr.read(|inv| inv.all_objects().len()), before);
    // Bad arguments are refused at once.
    let e = dc.mgr.register_file_server(FileServerSpec::nfs("x", "nfs1", vec![])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    for host in ["bad host;rm", "-oexec", "[fd00::1]", ""] {
        let e = dc.mgr.register_file_server(FileServerSpec::nfs("x", host, vec![dc.servers[0]])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{host:?}");
    }
    let e = dc.mgr.register_file_server(FileServerSpec::nfs("x", "nfs1", vec![ServerId::new()])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(dc.mgr.read(|inv| inv.all_objects().len()), before);
}

#[test]
fn an_external_plugin_file_server_is_registered_refreshed_and_presented() {
    let dc = dc();
    let (plugin, host) = ("nas-shares", "nas1:/export/shares");
    dc.world.add_external_file_server(
        plugin,
        host,
        &[("/export/shares/vm1", 300 * GIB), ("/export/shares/iso", GIB)],
    );
    let fsrv = FileServerId(result_id(dc.mgr.register_file_server(FileServerSpec::external(
        "nas1",
        plugin,
        host,
        vec![dc.servers[0], dc.servers[1]],
    ))));
    let record = dc.mgr.get::<FileServer>(fsrv).unwrap();
    assert_eq!(
        (record.kind, record.plugin.as_str(), record.access_host.as_str()),
        (FileServerKind::External, plugin, host)
    );
    let mut found: Vec<(String, String, u64)> =
        dc.mgr.file_systems_of(fsrv).iter().map(|f| (f.name.clone(), f.path.clone(), f.size_bytes)).collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("nas1:/export/shares/iso".into(), "/export/shares/iso".into(), GIB),
            ("nas1:/export/shares/vm1".into(), "/export/shares/vm1".into(), 300 * GIB),
        ]
    );
    // A new share appears: refresh finds it.
    dc.world.add_external_file_server(plugin, host, &[("/export/shares/new", 2 * GIB)]);
    ok(dc.mgr.refresh_file_server(fsrv));
    assert_eq!(dc.mgr.file_systems_of(fsrv).len(), 3);
    // A repository on one share, presented to two servers: each mounts it through the plug-in.
    let fs = dc.mgr.file_systems_of(fsrv).into_iter().find(|f| f.path == "/export/shares/vm1").unwrap().id;
    let repo = RepositoryId(result_id(dc.mgr.create_repository(RepositorySpec {
        name: "nas-repo".into(),
        backing: RepositoryBacking::FileSystem(fs),
        owner_pool: Some(dc.pool),
        capacity_bytes: 0,
    })));
    ok(dc.mgr.present_repository_to(repo, &dc.servers[..2]));
    let source =
        MountSource::External { plugin: plugin.into(), host: host.into(), path: "/export/shares/vm1".into() };
    let at = repository_path(repo);
    for h in ["xen1", "xen2"] {
        assert_eq!(mounts(&dc, h), vec![(source.clone(), at.clone())], "{h}");
    }
    let r = dc.mgr.repository(repo).unwrap();
    assert_eq!(r.presented_to, dc.servers[..2]);
    assert!(r.mounts.iter().all(|m| m.state == MountState::Mounted) && r.mounts.len() == 2);
    ok(dc.mgr.create_virtual_disk(repo, "d", GIB, false));
    // A failure on the third server is undone there, the others keep theirs.
    dc.world.fail_next(SimOp::Storage, Some("xen3"), 1);
    failed(dc.mgr.present_repository(repo, dc.servers[2]));
    assert!(mounts(&dc, "xen3").is_empty());
    assert_eq!(dc.mgr.repository(repo).unwrap().presented_to, dc.servers[..2]);
    ok(dc.mgr.acknowledge_all(r.object_ref()));
    ok(dc.mgr.unpresent_repository(repo, dc.servers[1]));
    assert!(mounts(&dc, "xen2").is_empty());
    assert_eq!(mounts(&dc, "xen1"), vec![(source, at)]);
}

#[test]
fn bad_external_file_servers_are_refused_and_nothing_is_stored() {
    let dc = dc();
    dc.world.add_external_file_server("nas-shares", "nas1:/export", &[("/export/a", GIB)]);
    let before = dc.mgr.read(|inv| inv.all_objects().len());
    let admins = vec![dc.servers[0]];
    for plugin in ["../bin/sh", "a/b", "..", "Nas", "-x", "", &"p".repeat(65), "nas shares"] {
        let e = dc
            .mgr
            .register_file_server(FileServerSpec::external("x", plugin, "nas1:/export", admins.clone()))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{plugin:?}");
    }
    for host in ["-oexec", "", "nas1 /export", "nas1:/export\n"] {
        let e = dc
            .mgr
            .register_file_server(FileServerSpec::external("x", "nas-shares", host, admins.clone()))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{host:?}");
    }
    // The plug-in reaches no such file server: the job fails, nothing is kept.
    failed(dc.mgr.register_file_server(FileServerSpec::external("x", "nas-shares", "nas2:/export", admins)));
    assert_eq!(dc.mgr.read(|inv| inv.all_objects().len()), before);
}

#[test]
fn presenting_mounts_on_every_server_and_unpresenting_unmounts() {
    let dc = dc();
    let (_, _, repo) = nfs_repository(&dc);
    let at = repository_path(repo);
    let source = MountSource::Nfs { host: "nfs1".into(), export: "/srv/repo".into(), version: None };
    ok(dc.mgr.present_repository_to(repo, &dc.servers[..2]));
    for host in ["xen1", "xen2"] {
        assert_eq!(mounts(&dc, host), vec![(source.clone(), at.clone())], "{host}");
    }
    assert!(mounts(&dc, "xen3").is_empty());
    let r = dc.mgr.repository(repo).unwrap();
    assert_eq!(r.presented_to, dc.servers[..2]);
    assert!(r.mounts.iter().all(|m| m.state == MountState::Mounted) && r.mounts.len() == 2);
    // Another repository cannot take the same file system.
    let fs = match r.backing {
        RepositoryBacking::FileSystem(f) => f,
        RepositoryBacking::PhysicalDisk(_) => unreachable!(),
    };
    let e = dc
        .mgr
        .create_repository(RepositorySpec {
            name: "again".into(),
            backing: RepositoryBacking::FileSystem(fs),
            owner_pool: None,
            capacity_bytes: 0,
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    ok(dc.mgr.unpresent_repository(repo, dc.servers[1]));
    assert!(mounts(&dc, "xen2").is_empty());
    assert_eq!(dc.mgr.repository(repo).unwrap().presented_to, vec![dc.servers[0]]);
}

#[test]
fn a_mount_that_fails_on_the_second_server_is_undone_on_the_first() {
    let dc = dc();
    let (_, _, repo) = nfs_repository(&dc);
    dc.world.fail_next(SimOp::Storage, Some("xen2"), 1);
    let e = failed(dc.mgr.present_repository_to(repo, &dc.servers[..2]));
    assert!(e.to_string().contains("injected failure"), "{e}");
    for host in ["xen1", "xen2"] {
        assert!(mounts(&dc, host).is_empty(), "{host} keeps nothing mounted");
    }
    let r = dc.mgr.repository(repo).unwrap();
    assert!(r.presented_to.is_empty() && r.mounts.is_empty());
    // The marker the first server wrote is gone too: the file system is free again.
    let hv = SimDriver::new(dc.world.clone()).connect("sim://xen3", DEFAULT_PASSWORD, dc.mgr.id()).unwrap();
    let found = hv
        .file_storage()
        .unwrap()
        .discover(&ovm_core::driver::FileServerAccess::Nfs { host: "nfs1".into() })
        .unwrap();
    assert!(found.iter().all(|f| f.repository.is_none()), "{found:?}");
    // The failure is an Error event on the repository; once acknowledged, presenting works.
    ok(dc.mgr.acknowledge_all(r.object_ref()));
    ok(dc.mgr.present_repository_to(repo, &dc.servers[..2]));
}

#[test]
fn a_vm_runs_only_where_its_repository_is_mounted() {
    let dc = dc();
    let (_, _, repo) = nfs_repository(&dc);
    ok(dc.mgr.present_repository(repo, dc.servers[1]));
    let disk = VirtualDiskId(result_id(dc.mgr.create_virtual_disk(repo, "d", GIB, false)));
    let config = VmConfig {
        memory_mib: 512,
        max_memory_mib: 512,
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) }],
        ..VmConfig::default()
    };
    let mut spec = VmSpec::new("web", config);
    spec.pool = Some(dc.pool);
    let vm = VmId(result_id(dc.mgr.create_vm(spec)));
    for _ in 0..3 {
        ok(dc.mgr.start_vm(vm));
        assert_eq!(dc.mgr.vm(vm).unwrap().server, Some(dc.servers[1]), "only server 2 has the repository");
        ok(dc.mgr.kill_vm(vm));
    }
    // Unpresenting it from the server the VM runs on is refused.
    ok(dc.mgr.start_vm(vm));
    let e = dc.mgr.unpresent_repository(repo, dc.servers[1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    ok(dc.mgr.kill_vm(vm));
    ok(dc.mgr.unpresent_repository(repo, dc.servers[1]));
    let e = dc.mgr.start_vm(vm).and_then(|j| j.wait(WAIT)).map(|j| j.state);
    assert!(matches!(e, Err(_) | Ok(JobState::Failed)), "no server has the repository: {e:?}");
}

#[test]
fn a_failed_mount_leaves_what_was_mounted_there_before() {
    let dc = dc();
    let (_, _, repo) = nfs_repository(&dc);
    let at = repository_path(repo);
    // Something else is mounted at server 2's mount point: its mount fails, and the undo of the
    // step (journaled before the mount) must not unmount it.
    let other = MountSource::Nfs { host: "nfs1".into(), export: "/srv/iso".into(), version: None };
    let hv = SimDriver::new(dc.world.clone()).connect("sim://xen2", DEFAULT_PASSWORD, dc.mgr.id()).unwrap();
    hv.file_storage().unwrap().mount(&other, &at).unwrap();
    let e = failed(dc.mgr.present_repository_to(repo, &dc.servers[..2]));
    assert!(e.to_string().contains("already mounted"), "{e}");
    assert!(mounts(&dc, "xen1").is_empty(), "server 1's mount was undone");
    assert_eq!(mounts(&dc, "xen2"), vec![(other, at)], "server 2 keeps what it had");
}

#[test]
fn an_iscsi_array_is_discovered_and_presented_to_servers_with_undo() {
    let dc = dc();
    let (shared, private) = ("iqn.2026-01.ovm.sim:shared", "iqn.2026-01.ovm.sim:private");
    let lun0 = dc.world.add_lun(shared, "lun0", 4 * GIB);
    let lun1 = dc.world.add_lun(shared, "lun1", GIB);
    dc.world.add_lun(private, "lun0", GIB);
    dc.world.allow_initiators(private, &["xen3"]);
    let before = dc.mgr.read(|inv| inv.all_objects().len());
    // A portal nobody serves: nothing stored.
    let empty = SimWorld::default();
    let lonely = Manager::builder().sim_world(empty).recurring_jobs(false).open().unwrap();
    let s = ServerId(result_id(lonely.discover_server("sim://xen9", DEFAULT_PASSWORD)));
    let e = failed(lonely.register_storage_array(StorageArraySpec::iscsi("a", "iscsi9", vec![s])));
    assert!(e.to_string().contains("no iSCSI target"), "{e}");
    assert!(lonely.list_all::<StorageArray>().is_empty());
    let e = dc
        .mgr
        .register_storage_array(StorageArraySpec::iscsi("a", "bad portal", vec![dc.servers[0]]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(dc.mgr.read(|inv| inv.all_objects().len()), before);

    // Discovered through server 1: the targets that admit it, their LUNs with sizes and WWIDs.
    let array = StorageArrayId(result_id(dc.mgr.register_storage_array(StorageArraySpec::iscsi(
        "lio",
        "storage",
        vec![dc.servers[0]],
    ))));
    let mut disks: Vec<(String, u64, String)> = dc
        .mgr
        .physical_disks_of(array)
        .iter()
        .map(|d| (d.page83_id.clone(), d.size_bytes, d.target.clone()))
        .collect();
    disks.sort();
    let mut want = vec![(lun0, 4 * GIB, shared.to_owned()), (lun1, GIB, shared.to_owned())];
    want.sort();
    assert_eq!(disks, want);

    // Presented to servers 1 and 2: both log in. A failure on server 2 logs server 1 out again
    // only if the job logged it in (server 1, the admin server, stays logged in).
    let logged_in = |host: &str| {
        let hv = SimDriver::new(dc.world.clone())
            .connect(&format!("sim://{host}"), DEFAULT_PASSWORD, dc.mgr.id())
            .unwrap();
        hv.array_storage().unwrap().sessions().unwrap().iter().map(|s| s.target.clone()).collect::<Vec<_>>()
    };
    dc.world.fail_next(SimOp::Storage, Some("xen3"), 1);
    failed(dc.mgr.present_storage_array_to(array, &[dc.servers[1], dc.servers[2]]));
    assert!(logged_in("xen2").is_empty(), "server 2's login was undone");
    assert_eq!(logged_in("xen1"), vec![shared.to_owned()], "the admin server keeps its session");
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::StorageArray, array.0)));
    ok(dc.mgr.present_storage_array_to(array, &[dc.servers[1], dc.servers[2]]));
    assert_eq!(logged_in("xen2"), vec![shared.to_owned()]);
    ok(dc.mgr.unpresent_storage_array(array, dc.servers[1]));
    assert!(logged_in("xen2").is_empty());
    // Presenting to the admin server, already logged in, and a failure after it: its session was
    // not opened by the job, so the undo leaves it.
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::StorageArray, array.0)));
    dc.world.fail_next(SimOp::Storage, Some("xen3"), 1);
    failed(dc.mgr.present_storage_array_to(array, &[dc.servers[0], dc.servers[2]]));
    assert_eq!(logged_in("xen1"), vec![shared.to_owned()], "the admin server keeps its session");
    // The same storage registered again: its LUNs are known, and it is refused with nothing kept.
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::StorageArray, array.0)));
    let arrays = dc.mgr.list_all::<StorageArray>().len();
    let e = failed(dc.mgr.register_storage_array(StorageArraySpec::iscsi(
        "lio2",
        "storage",
        vec![dc.servers[1]],
    )));
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(dc.mgr.list_all::<StorageArray>().len(), arrays);
    assert!(logged_in("xen2").is_empty(), "the refused registration logged server 2 out again");
}

/// A VM of the pool whose disk is LUN `disk`.
fn lun_vm(dc: &Dc, name: &str, disk: PhysicalDiskId) -> VmSpec {
    let config = VmConfig {
        memory_mib: 512,
        max_memory_mib: 512,
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::PhysicalDisk(disk) }],
        ..VmConfig::default()
    };
    let mut spec = VmSpec::new(name, config);
    spec.pool = Some(dc.pool);
    spec
}

#[test]
fn a_lun_attached_to_a_vm_runs_it_only_where_the_array_is_presented() {
    let dc = dc();
    let target = "iqn.2026-01.ovm.sim:shared";
    dc.world.add_lun(target, "lun0", 4 * GIB);
    dc.world.add_lun(target, "lun1", GIB);
    let array = StorageArrayId(result_id(dc.mgr.register_storage_array(StorageArraySpec::iscsi(
        "lio",
        "storage",
        vec![dc.servers[0]],
    ))));
    ok(dc.mgr.present_storage_array_to(array, &[dc.servers[1]]));
    let luns = dc.mgr.physical_disks_of(array);
    let (a, b) = (luns[0].id, luns[1].id);
    let spec = lun_vm(&dc, "db", a);
    let vm = VmId(result_id(dc.mgr.create_vm(spec)));
    // Servers 1 and 2 are logged in; server 3 is not and is never chosen.
    ok(dc.mgr.set_maintenance_mode(dc.servers[0], true));
    for _ in 0..2 {
        ok(dc.mgr.start_vm(vm));
        assert_eq!(dc.mgr.vm(vm).unwrap().server, Some(dc.servers[1]));
        ok(dc.mgr.kill_vm(vm));
    }
    ok(dc.mgr.start_vm(vm));
    // The array cannot be taken from a server running a VM on one of its LUNs.
    assert_eq!(dc.mgr.unpresent_storage_array(array, dc.servers[1]).unwrap_err().kind(), ErrorKind::Conflict);
    ok(dc.mgr.kill_vm(vm));
    ok(dc.mgr.unpresent_storage_array(array, dc.servers[1]));
    assert!(dc.mgr.start_vm(vm).and_then(|j| j.wait(WAIT)).is_err(), "no server sees the LUN and may run it");
    ok(dc.mgr.set_maintenance_mode(dc.servers[0], false));
    // A LUN is one VM's: a second VM cannot take it, nor can a repository.
    let other = lun_vm(&dc, "db2", a);
    assert_eq!(dc.mgr.create_vm(other).unwrap_err().kind(), ErrorKind::Conflict);
    let e = dc
        .mgr
        .create_repository(RepositorySpec {
            name: "on-the-lun".into(),
            backing: RepositoryBacking::PhysicalDisk(a),
            owner_pool: Some(dc.pool),
            capacity_bytes: 0,
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    // The other LUN is free for another VM.
    let third = lun_vm(&dc, "db3", b);
    ok(dc.mgr.create_vm(third));
}

#[test]
fn a_failed_presentation_keeps_the_marker_an_earlier_one_wrote() {
    let dc = dc();
    let (_, _, repo) = nfs_repository(&dc);
    ok(dc.mgr.present_repository(repo, dc.servers[0]));
    ok(dc.mgr.unpresent_repository(repo, dc.servers[0]));
    // Presented again, to two servers, and the second fails: the marker written the first time
    // stays on the file system.
    dc.world.fail_next(SimOp::Storage, Some("xen2"), 1);
    failed(dc.mgr.present_repository_to(repo, &dc.servers[..2]));
    let hv = SimDriver::new(dc.world.clone()).connect("sim://xen3", DEFAULT_PASSWORD, dc.mgr.id()).unwrap();
    let found = hv
        .file_storage()
        .unwrap()
        .discover(&ovm_core::driver::FileServerAccess::Nfs { host: "nfs1".into() })
        .unwrap();
    let marker = found.iter().find(|f| f.path == "/srv/repo").and_then(|f| f.repository.clone());
    assert_eq!(marker, Some(repo.0.to_string()));
}

#[test]
fn a_vendor_array_creates_luns_and_presents_them_through_access_groups() {
    let dc = dc();
    let target = "iqn.2026-01.ovm.sim:managed";
    dc.world.add_managed_array("lio-admin", "admin", "secret", &[target]);
    let spec = |password: &str, fingerprint: Option<String>| {
        let mut m = ArrayManagementSpec::lio("lio-admin", "admin", password);
        m.fingerprint = fingerprint;
        StorageArraySpec::vendor("lio", "storage", vec![dc.servers[0]], m)
    };
    let before = dc.mgr.read(|inv| inv.all_objects().len());
    // Refused credentials, a certificate that is not the one given, no management interface
    // there, an unknown plug-in: nothing stored.
    assert_eq!(
        failed(dc.mgr.register_storage_array(spec("wrong", None))).kind(),
        ErrorKind::PermissionDenied
    );
    let e = failed(dc.mgr.register_storage_array(spec("secret", Some(format!("sha256:{}", "0".repeat(64))))));
    assert!(e.to_string().contains("not the"), "{e}");
    let mut m = ArrayManagementSpec::lio("nobody", "admin", "secret");
    assert_eq!(
        failed(dc.mgr.register_storage_array(StorageArraySpec::vendor(
            "x",
            "s",
            vec![dc.servers[0]],
            m.clone()
        )))
        .kind(),
        ErrorKind::Backend
    );
    m.plugin = "acme".into();
    assert_eq!(
        failed(dc.mgr.register_storage_array(StorageArraySpec::vendor("x", "s", vec![dc.servers[0]], m)))
            .kind(),
        ErrorKind::Unsupported
    );
    let mut bad = ArrayManagementSpec::lio("-oProxy", "admin", "secret");
    assert_eq!(
        dc.mgr
            .register_storage_array(StorageArraySpec::vendor("x", "s", vec![dc.servers[0]], bad.clone()))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    bad.host = "lio-admin".into();
    bad.password = String::new();
    assert!(dc
        .mgr
        .register_storage_array(StorageArraySpec::vendor("x", "s", vec![dc.servers[0]], bad))
        .is_err());
    assert!(dc.mgr.list_all::<StorageArray>().is_empty());
    assert_eq!(dc.mgr.read(|inv| inv.all_objects().len()), before);

    // Registered, pinning the certificate it presents; a generic array cannot make LUNs.
    let array = StorageArrayId(result_id(dc.mgr.register_storage_array(spec("secret", None))));
    assert!(dc.mgr.physical_disks_of(array).is_empty());
    assert!(dc.mgr.get::<StorageArray>(array).unwrap().can_create_luns());
    assert_eq!(
        dc.mgr.create_lun(array, None, "bad name/", GIB).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        dc.mgr.create_lun(array, Some("iqn.2026-01.x:other"), "d", GIB).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(dc.mgr.create_lun(array, None, "d", 0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let lun = PhysicalDiskId(result_id(dc.mgr.create_lun(array, None, "data", 2 * GIB)));
    let d = dc.mgr.get::<PhysicalDisk>(lun).unwrap();
    assert_eq!((d.size_bytes, d.target.as_str(), d.name.as_str()), (2 * GIB, target, "lio:data"));
    assert_eq!(failed(dc.mgr.create_lun(array, None, "data", GIB)).kind(), ErrorKind::Conflict, "same name");
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::StorageArray, array.0)));

    // An access group of servers 1 and 2. Presenting fails on server 2: undone on the array and
    // on server 1.
    let sees = |host: &str| {
        let hv = SimDriver::new(dc.world.clone())
            .connect(&format!("sim://{host}"), DEFAULT_PASSWORD, dc.mgr.id())
            .unwrap();
        let side = hv.array_storage().unwrap();
        if !side.sessions().unwrap().iter().any(|s| s.target == target) {
            return Vec::new();
        }
        side.list_luns(target).unwrap().into_iter().map(|l| l.id).collect::<Vec<_>>()
    };
    let group =
        AccessGroupId(result_id(dc.mgr.create_access_group(array, "pool1", &[dc.servers[0], dc.servers[1]])));
    assert_eq!(dc.mgr.create_access_group(array, "pool1", &[]).unwrap_err().kind(), ErrorKind::Conflict);
    // A group naming a server (an initiator) ovm does not know: refused, nothing stored.
    assert_eq!(
        dc.mgr.create_access_group(array, "ghosts", &[ServerId::new()]).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(dc.mgr.list_all::<AccessGroup>().len(), 1);
    dc.world.fail_next(SimOp::Storage, Some("xen2"), 1);
    failed(dc.mgr.present_lun(group, lun));
    assert!(dc.mgr.get::<AccessGroup>(group).unwrap().disks.is_empty());
    assert!(sees("xen1").is_empty(), "server 1's login was undone");
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::PhysicalDisk, lun.0)));
    ok(dc.mgr.present_lun(group, lun));
    ok(dc.mgr.present_lun(group, lun)); // again: nothing to do
    assert_eq!(sees("xen1"), vec![d.page83_id.clone()]);
    // A group made on the array outside ovm is not taken over (its undo would delete it).
    let hv = SimDriver::new(dc.world.clone()).connect("sim://xen1", DEFAULT_PASSWORD, dc.mgr.id()).unwrap();
    let access = ovm_core::driver::ArrayAdminAccess {
        plugin: ovm_core::driver::LIO_PLUGIN.into(),
        host: "lio-admin".into(),
        port: 3261,
        username: "admin".into(),
        password: "secret".into(),
        fingerprint: Some(SimWorld::array_admin_fingerprint("lio-admin")),
    };
    hv.array_storage()
        .unwrap()
        .array_management(&access)
        .unwrap()
        .create_access_group(target, "theirs")
        .unwrap();
    let e = failed(dc.mgr.create_access_group(array, "theirs", &[dc.servers[2]]));
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::StorageArray, array.0)));
    let groups =
        hv.array_storage().unwrap().array_management(&access).unwrap().access_groups(target).unwrap();
    assert!(groups.iter().any(|g| g.name == "theirs"), "still there");
    assert_eq!(sees("xen2"), vec![d.page83_id.clone()]);
    assert!(sees("xen3").is_empty(), "not in the group");

    // A VM on the LUN runs only on the group's servers.
    let vm = VmId(result_id(dc.mgr.create_vm(lun_vm(&dc, "db", lun))));
    ok(dc.mgr.set_maintenance_mode(dc.servers[0], true));
    ok(dc.mgr.start_vm(vm));
    assert_eq!(dc.mgr.vm(vm).unwrap().server, Some(dc.servers[1]));
    assert_eq!(dc.mgr.delete_lun(lun).unwrap_err().kind(), ErrorKind::Conflict, "in use");
    assert_eq!(dc.mgr.unpresent_lun(group, lun).unwrap_err().kind(), ErrorKind::Conflict, "in use");
    ok(dc.mgr.kill_vm(vm));
    ok(dc.mgr.set_maintenance_mode(dc.servers[0], false));

    // Grown (never shrunk), cloned.
    assert_eq!(dc.mgr.resize_lun(lun, GIB).unwrap_err().kind(), ErrorKind::InvalidArgument);
    ok(dc.mgr.resize_lun(lun, 3 * GIB));
    assert_eq!(dc.mgr.get::<PhysicalDisk>(lun).unwrap().size_bytes, 3 * GIB);
    let copy = PhysicalDiskId(result_id(dc.mgr.clone_lun(lun, "data-copy")));
    let c = dc.mgr.get::<PhysicalDisk>(copy).unwrap();
    assert_eq!((c.size_bytes, c.name.as_str()), (3 * GIB, "lio:data-copy"));
    assert!(!sees("xen1").contains(&c.page83_id), "a clone is presented to nobody");
    // A VM on it is placed nowhere, though servers 1 and 2 are logged in to the array.
    let cvm = VmId(result_id(dc.mgr.create_vm(lun_vm(&dc, "on-the-copy", copy))));
    let e = dc.mgr.start_vm(cvm).unwrap().wait(WAIT).unwrap_err();
    assert!(e.to_string().contains("no access group presenting LUN lio:data-copy"), "{e}");
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, cvm.0)));
    ok(dc.mgr.delete_vm(cvm));

    // Taken apart: a group presenting a LUN is not deleted; the VM goes, the LUN is unpresented
    // (the servers stop seeing it) and deleted, then the group.
    assert_eq!(dc.mgr.delete_access_group(group).unwrap_err().kind(), ErrorKind::Conflict);
    ok(dc.mgr.delete_vm(vm));
    ok(dc.mgr.unpresent_lun(group, lun));
    assert!(sees("xen2").is_empty());
    ok(dc.mgr.delete_lun(lun));
    ok(dc.mgr.delete_lun(copy));
    ok(dc.mgr.delete_access_group(group));
    assert!(dc.mgr.physical_disks_of(array).is_empty());
    assert!(dc.mgr.list_all::<AccessGroup>().is_empty());
}

#[test]
fn what_the_storage_says_is_never_typed_by_hand() {
    let dc = dc();
    let (fsrv, fs, repo) = nfs_repository(&dc);
    let target = "iqn.2026-01.ovm.sim:managed";
    dc.world.add_managed_array("lio-admin", "admin", "secret", &[target]);
    let array = StorageArrayId(result_id(dc.mgr.register_storage_array(StorageArraySpec::vendor(
        "lio",
        "storage",
        vec![dc.servers[0]],
        ArrayManagementSpec::lio("lio-admin", "admin", "secret"),
    ))));
    let lun = PhysicalDiskId(result_id(dc.mgr.create_lun(array, None, "data", GIB)));
    let spare = PhysicalDiskId(result_id(dc.mgr.create_lun(array, None, "spare", GIB)));
    let group = AccessGroupId(result_id(dc.mgr.create_access_group(array, "pool1", &[dc.servers[0]])));
    ok(dc.mgr.present_lun(group, lun));
    let before = dc.mgr.read(|inv| inv.all_objects().len());

    // A copy of each under a new id is refused, alone or in an import, naming the operation.
    let copies = [
        (
            Object::FileServer(FileServer {
                id: FileServerId::new(),
                ..(*dc.mgr.get::<FileServer>(fsrv).unwrap()).clone()
            }),
            "register_file_server",
        ),
        (
            Object::FileSystem(FileSystem {
                id: FileSystemId::new(),
                ..(*dc.mgr.get::<FileSystem>(fs).unwrap()).clone()
            }),
            "register_file_server",
        ),
        (
            Object::StorageArray(StorageArray {
                id: StorageArrayId::new(),
                ..(*dc.mgr.get::<StorageArray>(array).unwrap()).clone()
            }),
            "register_storage_array",
        ),
        (
            Object::PhysicalDisk(PhysicalDisk {
                id: PhysicalDiskId::new(),
                ..(*dc.mgr.get::<PhysicalDisk>(lun).unwrap()).clone()
            }),
            "create_lun",
        ),
        (
            Object::AccessGroup(AccessGroup {
                id: AccessGroupId::new(),
                name: "g2".into(),
                ..(*dc.mgr.get::<AccessGroup>(group).unwrap()).clone()
            }),
            "create_access_group",
        ),
    ];
    for (o, operation) in copies {
        let e = dc.mgr.create_object(o.clone()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(operation), "{e}");
        assert_eq!(dc.mgr.create_objects(vec![o]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
    assert_eq!(dc.mgr.read(|inv| inv.all_objects().len()), before);

    // Edits: a name or a description, yes; what the storage says, no.
    fn edit<T: Clone>(
        mgr: &Manager,
        old: &T,
        wrap: fn(T) -> Object,
        f: impl FnOnce(&mut T),
    ) -> ovm_core::Result<ovm_core::JobHandle> {
        let mut x = old.clone();
        f(&mut x);
        mgr.update_object(wrap(x))
    }
    let refused = |r: ovm_core::Result<ovm_core::JobHandle>| {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidArgument)
    };
    let m = &dc.mgr;
    let f = (*m.get::<FileServer>(fsrv).unwrap()).clone();
    refused(edit(m, &f, Object::FileServer, |x| x.access_host = "nfs2".into()));
    refused(edit(m, &f, Object::FileServer, |x| x.admin_servers.clear()));
    ok(edit(m, &f, Object::FileServer, |x| x.name = "filer".into()));
    let s = (*m.get::<FileSystem>(fs).unwrap()).clone();
    refused(edit(m, &s, Object::FileSystem, |x| x.size_bytes *= 2));
    refused(edit(m, &s, Object::FileSystem, |x| x.path = "/srv/iso".into()));
    ok(edit(m, &s, Object::FileSystem, |x| x.description = "the repository's".into()));
    let a = (*m.get::<StorageArray>(array).unwrap()).clone();
    refused(edit(m, &a, Object::StorageArray, |x| x.presented_to.push(dc.servers[2])));
    refused(edit(m, &a, Object::StorageArray, |x| x.kind = StorageArrayKind::Iscsi));
    ok(edit(m, &a, Object::StorageArray, |x| x.description = "LIO".into()));
    let d = (*m.get::<PhysicalDisk>(lun).unwrap()).clone();
    refused(edit(m, &d, Object::PhysicalDisk, |x| x.page83_id = "naa.1".into()));
    refused(edit(m, &d, Object::PhysicalDisk, |x| x.size_bytes *= 2));
    refused(edit(m, &d, Object::PhysicalDisk, |x| x.target = "iqn.2026-01.x:y".into()));
    refused(edit(m, &d, Object::PhysicalDisk, |x| x.array = None));
    ok(edit(m, &d, Object::PhysicalDisk, |x| x.name = "lio:data (db)".into()));
    let g = (*m.get::<AccessGroup>(group).unwrap()).clone();
    refused(edit(m, &g, Object::AccessGroup, |x| x.servers.push(dc.servers[1])));
    refused(edit(m, &g, Object::AccessGroup, |x| x.disks.clear()));
    refused(edit(m, &g, Object::AccessGroup, |x| x.name = "renamed".into()));
    ok(edit(m, &g, Object::AccessGroup, |x| x.description = "pool 1".into()));
    ok(m.present_repository(repo, dc.servers[0]));
    let r = (*m.repository(repo).unwrap()).clone();
    refused(edit(m, &r, Object::Repository, |x| x.mounts.clear()));
    refused(edit(m, &r, Object::Repository, |x| x.initialized = !x.initialized));
    ok(edit(m, &r, Object::Repository, |x| x.name = "repo-1".into()));

    // Deleting through the generic call goes to the array: a group presenting a LUN stays, a LUN
    // and a group are deleted there; an array servers are logged in to is not forgotten.
    let e = m.delete_object(ObjectRef::new(ObjectKind::AccessGroup, group.0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(ok(m.delete_object(ObjectRef::new(ObjectKind::PhysicalDisk, spare.0))).kind, "DeleteLun");
    ok(m.unpresent_lun(group, lun));
    assert_eq!(ok(m.delete_object(ObjectRef::new(ObjectKind::PhysicalDisk, lun.0))).kind, "DeleteLun");
    assert_eq!(
        ok(m.delete_object(ObjectRef::new(ObjectKind::AccessGroup, group.0))).kind,
        "DeleteAccessGroup"
    );
    assert!(m.physical_disks_of(array).is_empty());
    if !m.get::<StorageArray>(array).unwrap().presented_to.is_empty() {
        let e = m.delete_object(ObjectRef::new(ObjectKind::StorageArray, array.0)).unwrap_err();
        assert!(e.to_string().contains("unpresent_storage_array"), "{e}");
    }
}
