//! Shared storage on real servers: the manager on the lab's management LAN, an ovm agent in the dom0
//! of two Xen servers, and the lab's storage server (knfsd). The NFS file server is discovered
//! through an agent with the sizes the storage server reports, a repository on it is presented to
//! both servers (mounted by each agent, read back from each dom0), a disk written from server 1 is
//! read by a VM started on server 2, and bad input leaves nothing mounted anywhere. Run through the
//! lab, in the data-centre boot (`make dc-lab-test`):
//!
//! ```sh
//! tests/xenlab/lab serve -n 3 --storage --manager --dom0 tests/xenlab/agent-dom0.sh \
//!     --dom0-file target/debug/ovm-agent --dom0-file tests/xenlab/dom0-runner.sh -- \
//!     target/debug/deps/storage_lab-* --nocapture
//! ```

mod lab;

use std::path::PathBuf;
use std::time::Duration;

use lab::{agent_listens, on, run_in, wait_for};

use ovm_core::manager::{
    repository_path, virtual_disk_path, ArrayManagementSpec, FileServerSpec, PoolSpec, RepositorySpec,
    StorageArraySpec, VmSpec,
};
use ovm_core::model::*;
use ovm_core::{JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> (ObjectRef, Duration) {
    lab::ok_timed(what, job, secs)
}

fn fails(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> ovm_core::Error {
    let e = job
        .unwrap_or_else(|e| panic!("{what}: refused at once: {e}"))
        .wait(Some(Duration::from_secs(secs)))
        .expect_err(what);
    println!("refused as it should be: {what}: {e}");
    e
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is unset: run this test through `tests/xenlab/lab serve --storage --manager` (make dc-lab-test)")
    })
}

/// Run `cmd` on the storage server.
fn on_storage(cmd: &str, secs: u64) -> String {
    run_in(&PathBuf::from(env("OVM_XENLAB_STORAGE_SHARE")), "the storage server", cmd, secs)
}

/// Whether anything is mounted on server `k` at `at`.
fn mounted(k: u32, at: &str) -> bool {
    on(k, &format!("grep -c ' {at} ' /proc/mounts || true"), 30).trim() != "0"
}

/// `df -B1` of a path on the storage server: (total, available) bytes.
fn df(path: &str) -> (u64, u64) {
    let out = on_storage(&format!("df -B1 -P {path} | tail -n 1"), 30);
    let f: Vec<u64> = out.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert!(f.len() >= 3, "df: {out:?}");
    (f[0], f[2])
}

#[test]
fn nfs_storage_is_discovered_mounted_on_two_servers_and_runs_a_vm_from_either() {
    env("OVM_XENLAB_MANAGER_IP");
    let storage = env("OVM_XENLAB_STORAGE_LAN_IP");
    let (a1, a2) = ("10.77.0.1:8899".to_owned(), "10.77.0.2:8899".to_owned());
    wait_for("agent 1 to listen", 240, || agent_listens(&a1));
    wait_for("agent 2 to listen", 240, || agent_listens(&a2));
    let mgr = Manager::builder().recurring_jobs(false).open().unwrap();
    let s1 = ServerId(ok("discover server 1", mgr.discover_server(&a1, PASSWORD), 120).0.id);
    let s2 = ServerId(ok("discover server 2", mgr.discover_server(&a2, PASSWORD), 120).0.id);
    let pool = PoolId(ok("create the pool", mgr.create_pool(PoolSpec::new("storage-pool")), 30).0.id);
    ok("add server 1", mgr.add_server_to_pool(pool, s1), 60);
    ok("add server 2", mgr.add_server_to_pool(pool, s2), 60);

    // An address where no NFS server answers: the job fails and nothing is stored.
    let e = fails(
        "register an NFS server nobody runs",
        mgr.register_file_server(FileServerSpec::nfs("ghost", "10.77.0.99", vec![s1])),
        180,
    );
    assert_eq!(e.kind(), ovm_core::ErrorKind::Backend, "{e}");
    assert!(mgr.list_all::<FileServer>().is_empty() && mgr.list_all::<FileSystem>().is_empty());

    // Discovery through server 1's agent: every export, with the sizes the storage server reports.
    let (fsrv, t_discover) = ok(
        "discover the NFS server",
        mgr.register_file_server(FileServerSpec::nfs("lab-nfs", &storage, vec![s1])),
        180,
    );
    let fsrv = FileServerId(fsrv.id);
    let fss = mgr.file_systems_of(fsrv);
    let mut paths: Vec<&str> = fss.iter().map(|f| f.path.as_str()).collect();
    paths.sort();
    // /srv/nfs/iso is exported to the storage segment only: server 1, on the LAN, cannot offer it.
    assert_eq!(paths, ["/srv/nfs/contents", "/srv/nfs/repo", "/srv/nfs/shares"]);
    let repo_fs = fss.iter().find(|f| f.path == "/srv/nfs/repo").unwrap().clone();
    let (total, avail) = df("/srv/nfs/repo");
    println!(
        "discovered {}: {} bytes, {} free; df on the storage server: {total}, {avail}",
        repo_fs.name, repo_fs.size_bytes, repo_fs.free_bytes
    );
    // NFS reports the size in its own block units: within a block of what the server's df says.
    assert!(repo_fs.size_bytes.abs_diff(total) <= 1 << 20, "the size is the storage's own");
    assert!(repo_fs.free_bytes.abs_diff(avail) < 64 << 20, "free space as the storage reports it");

    // An export that goes away: the storage server exports one more directory, a refresh
    // discovers it, then its administrator takes it away again (/etc/exports as it was). Presenting
    // a repository on it fails on the server and leaves nothing mounted.
    on_storage(
        "mkdir -p /srv/nfs/gone && cp /etc/exports /etc/exports.ovm-lab && \
         echo '/srv/nfs/gone 10.77.0.0/24(rw,no_root_squash,no_subtree_check,insecure,fsid=9)' >> /etc/exports && \
         exportfs -ra",
        30,
    );
    ok("refresh the NFS server: one more export", mgr.refresh_file_server(fsrv), 180);
    let bogus = mgr
        .file_systems_of(fsrv)
        .iter()
        .find(|f| f.path == "/srv/nfs/gone")
        .expect("the new export is discovered")
        .id;
    on_storage("mv /etc/exports.ovm-lab /etc/exports && exportfs -ra", 30);
    let nope = RepositoryId(
        ok(
            "create a repository on it",
            mgr.create_repository(RepositorySpec {
                name: "nope".into(),
                backing: RepositoryBacking::FileSystem(bogus),
                owner_pool: Some(pool),
                capacity_bytes: 0,
            }),
            30,
        )
        .0
        .id,
    );
    fails("present a repository on an export that does not exist", mgr.present_repository(nope, s1), 120);
    assert!(!mounted(1, &repository_path(nope)), "nothing stays mounted on server 1");
    assert!(mgr.repository(nope).unwrap().presented_to.is_empty());
    ok("acknowledge", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Repository, nope.0)), 30);
    ok("delete that repository", mgr.delete_object(ObjectRef::new(ObjectKind::Repository, nope.0)), 30);
    ok("refresh the NFS server: the export is gone", mgr.refresh_file_server(fsrv), 180);
    assert!(mgr.get::<FileSystem>(bogus).is_err(), "a vanished export nothing uses is forgotten");

    // The repository on the real export.
    let repo = RepositoryId(
        ok(
            "create the repository",
            mgr.create_repository(RepositorySpec {
                name: "nfs-repo".into(),
                backing: RepositoryBacking::FileSystem(repo_fs.id),
                owner_pool: Some(pool),
                capacity_bytes: 0,
            }),
            30,
        )
        .0
        .id,
    );
    let at = repository_path(repo);

    // Server 2's mount point is taken (a tmpfs there): presenting to both fails on server 2, and
    // server 1's mount and the marker it wrote are undone.
    on(2, &format!("mkdir -p {at} && mount -t tmpfs ovm-blocker {at}"), 30);
    fails(
        "present to servers 1 and 2 while server 2 cannot mount",
        mgr.present_repository_to(repo, &[s1, s2]),
        180,
    );
    assert!(!mounted(1, &at), "server 1's mount was undone");
    on_storage("test ! -e /srv/nfs/repo/.ovsrepo", 30);
    on(2, &format!("umount {at} && rmdir {at}"), 30);
    ok("acknowledge", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Repository, repo.0)), 30);

    // Presented to both: each dom0 has it mounted from the storage server, with the layout and
    // the marker on the storage.
    let (_, t_present) = ok("present to servers 1 and 2", mgr.present_repository_to(repo, &[s1, s2]), 240);
    for k in [1, 2] {
        let line = on(k, &format!("grep ' {at} ' /proc/mounts"), 30);
        assert!(
            line.starts_with(&format!("{storage}:/srv/nfs/repo ")) && line.contains(" nfs"),
            "server {k}: {line}"
        );
        let listing = on(k, &format!("cat {at}/.ovsrepo; ls {at}"), 30);
        assert!(listing.contains(&format!("OVS_REPO_UUID={}", repo.0)), "server {k}: {listing}");
        for d in ["Templates", "Assemblies", "ISOs", "VirtualDisks", "VirtualMachines"] {
            assert!(listing.lines().any(|l| l == d), "server {k} lacks {d}: {listing}");
        }
    }
    assert!(on_storage("cat /srv/nfs/repo/.ovsrepo", 30).contains(&repo.0.to_string()));
    let r = mgr.repository(repo).unwrap();
    assert_eq!(r.mounts.len(), 2);
    assert!(r.mounts.iter().all(|m| m.state == MountState::Mounted));

    // A disk created through server 1 and written from server 1's dom0, read by a VM started on
    // server 2 from the same file.
    let disk = VirtualDiskId(
        ok("create a disk", mgr.create_virtual_disk(repo, "shared-disk", 64 << 20, false), 120).0.id,
    );
    let path = virtual_disk_path(repo, disk);
    let mark = format!("OVM-NFS-DISK-{}", &repo.0.simple().to_string()[..8]);
    on(1, &format!("printf '{mark}' | dd of={path} conv=notrunc 2>/dev/null && sync"), 30);
    on_storage(
        &format!(
            "head -c {} /srv/nfs/repo/VirtualDisks/{}.img | grep -q {mark}",
            mark.len(),
            disk.0.simple()
        ),
        30,
    );
    let config = VmConfig {
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) }],
        ..lab::lab_guest("console=hvc0")
    };
    let mut spec = VmSpec::new("nfs-guest", config);
    spec.repository = Some(repo);
    spec.pool = Some(pool);
    let vm = VmId(ok("create the VM", mgr.create_vm(spec), 60).0.id);
    ok("server 1 into maintenance", mgr.set_maintenance_mode(s1, true), 120);
    ok("start the VM (placed on server 2)", mgr.start_vm(vm), 300);
    assert_eq!(mgr.vm(vm).unwrap().server, Some(s2));
    wait_for("the guest on server 2 to read the disk server 1 wrote", 300, || {
        mgr.vm_console(vm).is_ok_and(|c| c.contains(&format!("OVM-DOMU-DISK xvda: {mark}")))
    });
    // The repository cannot be taken from the server the VM runs on.
    assert_eq!(mgr.unpresent_repository(repo, s2).unwrap_err().kind(), ovm_core::ErrorKind::Conflict);
    ok("kill the VM", mgr.kill_vm(vm), 120);
    ok("server 1 out of maintenance", mgr.set_maintenance_mode(s1, false), 120);
    ok("delete the VM", mgr.delete_object(ObjectRef::new(ObjectKind::Vm, vm.0)), 60);
    ok("delete the disk", mgr.delete_object(ObjectRef::new(ObjectKind::VirtualDisk, disk.0)), 60);
    on_storage(&format!("test ! -e /srv/nfs/repo/VirtualDisks/{}.img", disk.0.simple()), 30);

    // Refresh: the sizes follow the storage.
    ok("refresh the NFS server", mgr.refresh_file_server(fsrv), 180);

    // Unpresent: each server unmounts.
    let (_, t_un1) = ok("unpresent from server 1", mgr.unpresent_repository(repo, s1), 120);
    let (_, t_un2) = ok("unpresent from server 2", mgr.unpresent_repository(repo, s2), 120);
    for k in [1, 2] {
        assert!(!mounted(k, &at), "server {k} unmounted the repository");
    }

    // An external plug-in serves a repository: ovm's Python example, installed in each dom0, for a
    // NAS whose file systems are the subdirectories of an export (/srv/nfs/shares/projects).
    let e = fails(
        "register a file server through a plug-in no server has",
        mgr.register_file_server(FileServerSpec::external(
            "ghost-nas",
            "acme-nas",
            &format!("{storage}:/srv/nfs/shares"),
            vec![s1],
        )),
        120,
    );
    println!("({:?})", e.kind());
    assert!(mgr.list_all::<FileServer>().iter().all(|f| f.name != "ghost-nas"), "nothing stored");
    let (nas, t_ext) = ok(
        "discover the NAS through the example plug-in",
        mgr.register_file_server(FileServerSpec::external(
            "lab-nas",
            "ovm-example-nfs-shares",
            &format!("{storage}:/srv/nfs/shares"),
            vec![s1],
        )),
        180,
    );
    let shares = mgr.file_systems_of(FileServerId(nas.id));
    let share =
        shares.iter().find(|f| f.path == "/srv/nfs/shares/projects").unwrap_or_else(|| panic!("{shares:?}"));
    let (total, _) = df("/srv/nfs/shares/projects");
    assert!(
        share.size_bytes.abs_diff(total) <= 1 << 20,
        "the share's size is the storage's: {} vs {total}",
        share.size_bytes
    );
    let ext_repo = RepositoryId(
        ok(
            "create a repository on the share",
            mgr.create_repository(RepositorySpec {
                name: "nas-repo".into(),
                backing: RepositoryBacking::FileSystem(share.id),
                owner_pool: Some(pool),
                capacity_bytes: 0,
            }),
            30,
        )
        .0
        .id,
    );
    let ext_at = repository_path(ext_repo);
    let (_, t_ext_present) = ok(
        "present the plug-in's repository to servers 1 and 2",
        mgr.present_repository_to(ext_repo, &[s1, s2]),
        240,
    );
    for k in [1, 2] {
        let line = on(k, &format!("grep ' {ext_at} ' /proc/mounts"), 30);
        assert!(line.starts_with(&format!("{storage}:/srv/nfs/shares/projects ")), "server {k}: {line}");
        assert!(line.contains("nosuid") && line.contains("nodev"), "server {k}: {line}");
    }
    assert!(on_storage("cat /srv/nfs/shares/projects/.ovsrepo", 30).contains(&ext_repo.0.to_string()));
    let ext_disk = VirtualDiskId(
        ok("create a disk on the share", mgr.create_virtual_disk(ext_repo, "nas-disk", 8 << 20, false), 120)
            .0
            .id,
    );
    on_storage(&format!("test -e /srv/nfs/shares/projects/VirtualDisks/{}.img", ext_disk.0.simple()), 30);
    ok(
        "delete the disk on the share",
        mgr.delete_object(ObjectRef::new(ObjectKind::VirtualDisk, ext_disk.0)),
        60,
    );
    ok("unpresent the plug-in's repository from server 1", mgr.unpresent_repository(ext_repo, s1), 120);
    ok("unpresent the plug-in's repository from server 2", mgr.unpresent_repository(ext_repo, s2), 120);
    for k in [1, 2] {
        assert!(!mounted(k, &ext_at), "server {k} unmounted the plug-in's repository");
    }
    println!(
        "EXTERNAL-FIGURES discover={:.1}s present-to-2={:.1}s",
        t_ext.as_secs_f64(),
        t_ext_present.as_secs_f64()
    );

    // The LIO target: discovered through server 1, which the shared target admits and the private
    // one (server 3 only) refuses; its LUNs with the sizes the storage server gave them.
    let (array, t_array) = ok(
        "discover the iSCSI array",
        mgr.register_storage_array(StorageArraySpec::iscsi("lab-lio", &storage, vec![s1])),
        240,
    );
    let array = StorageArrayId(array.id);
    let mut luns: Vec<(String, u64, String)> = mgr
        .physical_disks_of(array)
        .iter()
        .map(|d| (d.name.clone(), d.size_bytes, d.target.clone()))
        .collect();
    luns.sort();
    let shared = "iqn.2026-01.lab.ovm:shared".to_owned();
    assert_eq!(
        luns,
        [
            ("lab-lio:ovm-lab-shared-lun0".to_owned(), 1 << 30, shared.clone()),
            ("lab-lio:ovm-lab-shared-lun1".to_owned(), 256 << 20, shared.clone()),
            ("lab-lio:ovm-lab-shared-pool".to_owned(), 512 << 20, shared.clone()),
        ]
    );
    let (_, t_login) = ok("present the array to server 2", mgr.present_storage_array_to(array, &[s2]), 240);
    for k in [1, 2] {
        let wwids = on(k, "cat /sys/block/sd*/device/wwid", 30);
        for d in mgr.physical_disks_of(array) {
            assert!(wwids.contains(&d.page83_id), "server {k} sees {}: {wwids}", d.page83_id);
        }
    }
    // A LUN attached to a VM directly: server 1 writes a mark into its first sector, and a VM
    // started on a server logged in to the array reads it from its own device for the LUN.
    let lun = mgr.physical_disks_of(array).into_iter().find(|d| d.name.ends_with("lun1")).unwrap();
    let lun_mark = "OVM-LUN-DISK-MARK";
    on(
        1,
        &format!(
            "for x in /sys/block/sd*; do [ \"$(cat $x/device/wwid)\" = '{}' ] && d=/dev/${{x##*/}}; done; \
             printf '%-512s' '{lun_mark}' | dd of=$d bs=512 count=1 oflag=direct conv=notrunc 2>/dev/null",
            lun.page83_id
        ),
        30,
    );
    let config = VmConfig {
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::PhysicalDisk(lun.id) }],
        ..lab::lab_guest("console=hvc0")
    };
    let mut spec = VmSpec::new("lun-guest", config);
    spec.pool = Some(pool);
    let lvm = VmId(ok("create a VM on the LUN", mgr.create_vm(spec), 60).0.id);
    ok("start the VM on the LUN", mgr.start_vm(lvm), 300);
    println!("the LUN's VM runs on {:?}", mgr.vm(lvm).unwrap().server);
    wait_for("the guest to read the mark on its LUN", 300, || {
        mgr.vm_console(lvm).is_ok_and(|c| c.contains(&format!("OVM-DOMU-DISK xvda: {lun_mark}")))
    });
    ok("kill the LUN's VM", mgr.kill_vm(lvm), 120);
    ok("delete the LUN's VM", mgr.delete_object(ObjectRef::new(ObjectKind::Vm, lvm.0)), 60);
    ok("log server 2 out", mgr.unpresent_storage_array(array, s2), 120);
    ok("log server 1 out", mgr.unpresent_storage_array(array, s1), 120);
    for k in [1, 2] {
        assert!(!on(k, "iscsiadm -m session 2>&1 || true", 30).contains(&shared), "server {k} logged out");
        let nodes = on(k, "iscsiadm -m node 2>&1 || true", 30);
        assert!(!nodes.contains(&shared), "server {k} keeps no node record of the target: {nodes}");
    }

    // The LIO target as a vendor-style array: ovm-lio on the storage server is its management
    // interface, reached from server 1 (the admin server) over the LAN with the password the lab
    // gave it; its certificate is the one it printed at start.
    let ready = std::fs::read_to_string(PathBuf::from(env("OVM_XENLAB_STORAGE_SHARE")).join("results/ready"))
        .unwrap();
    let fingerprint = ready
        .lines()
        .find_map(|l| l.strip_prefix("ovm-lio "))
        .expect("the storage server runs ovm-lio (storage.conf: managed, lio-admin)")
        .trim()
        .to_owned();
    let vendor = |password: &str, fp: Option<String>| {
        let mut m = ArrayManagementSpec::lio(&storage, "admin", password);
        m.fingerprint = fp;
        StorageArraySpec::vendor("lab-lio-managed", &storage, vec![s1], m)
    };
    let arrays_before = mgr.list_all::<StorageArray>().len();
    let e = fails(
        "register the array with a wrong password",
        mgr.register_storage_array(vendor("wrong", None)),
        120,
    );
    assert_eq!(e.kind(), ovm_core::ErrorKind::PermissionDenied, "{e}");
    let other = format!("sha256:{}", "0".repeat(64));
    let e = fails(
        "register the array pinning another certificate",
        mgr.register_storage_array(vendor("ovm-lab-array", Some(other))),
        120,
    );
    assert!(e.to_string().contains("not the"), "{e}");
    assert_eq!(mgr.list_all::<StorageArray>().len(), arrays_before, "nothing stored");
    let (varray, t_vendor) = ok(
        "register the LIO array through ovm-lio",
        mgr.register_storage_array(vendor("ovm-lab-array", Some(fingerprint))),
        120,
    );
    let varray = StorageArrayId(varray.id);
    let managed = "iqn.2026-01.lab.ovm:managed";
    let (lun, t_create) =
        ok("create a LUN on the array", mgr.create_lun(varray, None, "lab-data", 64 << 20), 120);
    let lun = mgr.get::<PhysicalDisk>(PhysicalDiskId(lun.id)).unwrap();
    assert_eq!((lun.size_bytes, lun.target.as_str()), (64 << 20, managed));
    on_storage(
        &format!("test \"$(stat -c %s /srv/ovm-lio/luns/{managed}/lab-data.img)\" = {}", 64 << 20),
        30,
    );
    let e =
        fails("create a LUN larger than the array", mgr.create_lun(varray, None, "too-big", 1 << 50), 120);
    assert_eq!(e.kind(), ovm_core::ErrorKind::InvalidArgument, "{e}");
    ok("acknowledge", mgr.acknowledge_all(ObjectRef::new(ObjectKind::StorageArray, varray.0)), 30);
    let device = |k: u32, id: &str| {
        on(k, &format!("for x in /sys/block/sd*; do [ \"$(cat $x/device/wwid 2>/dev/null)\" = '{id}' ] && echo /dev/${{x##*/}}; done; true"), 30)
            .trim()
            .to_owned()
    };
    for k in [1, 2] {
        assert_eq!(device(k, &lun.page83_id), "", "server {k} sees the LUN before it is presented");
    }
    let group = AccessGroupId(
        ok(
            "create an access group of servers 1 and 2",
            mgr.create_access_group(varray, "storage-pool", &[s1, s2]),
            120,
        )
        .0
        .id,
    );
    let (_, t_grant) = ok("present the LUN to the group", mgr.present_lun(group, lun.id), 300);
    // Each server sees it under the identifier the array gave (the kernel's own page 83 id) and
    // with its size.
    for k in [1, 2] {
        let d = device(k, &lun.page83_id);
        assert!(d.starts_with("/dev/sd"), "server {k} sees {}: {d:?}", lun.page83_id);
        assert_eq!(on(k, &format!("blockdev --getsize64 {d}"), 30).trim(), (64u64 << 20).to_string());
    }
    // A VM on server 2 reads what server 1 wrote on the LUN.
    let vmark = "OVM-VENDOR-LUN-MARK";
    let d1 = device(1, &lun.page83_id);
    on(
        1,
        &format!(
            "printf '%-512s' '{vmark}' | dd of={d1} bs=512 count=1 oflag=direct conv=notrunc 2>/dev/null"
        ),
        30,
    );
    let config = VmConfig {
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::PhysicalDisk(lun.id) }],
        ..lab::lab_guest("console=hvc0")
    };
    let mut spec = VmSpec::new("vendor-lun-guest", config);
    spec.pool = Some(pool);
    let vvm = VmId(ok("create a VM on the new LUN", mgr.create_vm(spec), 60).0.id);
    ok("server 1 into maintenance", mgr.set_maintenance_mode(s1, true), 120);
    ok("start the VM on the new LUN", mgr.start_vm(vvm), 300);
    assert_eq!(mgr.vm(vvm).unwrap().server, Some(s2));
    wait_for("the guest on server 2 to read the mark on the new LUN", 300, || {
        mgr.vm_console(vvm).is_ok_and(|c| c.contains(&format!("OVM-DOMU-DISK xvda: {vmark}")))
    });
    assert_eq!(mgr.delete_lun(lun.id).unwrap_err().kind(), ovm_core::ErrorKind::Conflict, "in use");
    ok("kill the VM", mgr.kill_vm(vvm), 120);
    ok("server 1 out of maintenance", mgr.set_maintenance_mode(s1, false), 120);
    ok("delete the VM", mgr.delete_object(ObjectRef::new(ObjectKind::Vm, vvm.0)), 60);
    // Grown while presented: both servers see the new size after their rescan.
    let (_, t_grow) = ok("grow the LUN", mgr.resize_lun(lun.id, 128 << 20), 300);
    for k in [1, 2] {
        let d = device(k, &lun.page83_id);
        assert_eq!(
            on(k, &format!("blockdev --getsize64 {d}"), 30).trim(),
            (128u64 << 20).to_string(),
            "server {k}"
        );
    }
    // Cloned on the array: the copy holds the mark and is presented to nobody.
    let (copy, t_clone) = ok("clone the LUN", mgr.clone_lun(lun.id, "lab-data-copy"), 300);
    let copy = PhysicalDiskId(copy.id);
    on_storage(&format!("head -c 512 /srv/ovm-lio/luns/{managed}/lab-data-copy.img | grep -q {vmark}"), 30);
    // Taken apart: unpresented (the servers forget it), deleted, the servers logged out, the
    // group deleted; nothing is left on the storage server.
    ok("unpresent the LUN", mgr.unpresent_lun(group, lun.id), 120);
    for k in [1, 2] {
        assert_eq!(device(k, &lun.page83_id), "", "server {k} forgot the LUN");
    }
    ok("delete the LUN", mgr.delete_lun(lun.id), 120);
    ok("delete the copy", mgr.delete_lun(copy), 120);
    ok("log server 1 out of the array", mgr.unpresent_storage_array(varray, s1), 120);
    ok("log server 2 out of the array", mgr.unpresent_storage_array(varray, s2), 120);
    ok("delete the access group", mgr.delete_access_group(group), 120);
    on_storage(&format!("test -z \"$(ls /srv/ovm-lio/luns/{managed})\" && test -z \"$(ls /sys/kernel/config/target/iscsi/{managed}/tpgt_1/acls)\""), 30);
    println!(
        "VENDOR-FIGURES register={:.1}s create-lun={:.1}s present-to-2={:.1}s grow={:.1}s clone={:.1}s",
        t_vendor.as_secs_f64(),
        t_create.as_secs_f64(),
        t_grant.as_secs_f64(),
        t_grow.as_secs_f64(),
        t_clone.as_secs_f64()
    );
    println!(
        "STORAGE-FIGURES nfs-discover={:.1}s present-to-2={:.1}s unpresent-from-2={:.1}s iscsi-discover={:.1}s iscsi-login={:.1}s",
        t_discover.as_secs_f64(),
        t_present.as_secs_f64(),
        (t_un1 + t_un2).as_secs_f64(),
        t_array.as_secs_f64(),
        t_login.as_secs_f64()
    );
    // The peer, in the same run: what the same work costs done by hand in a dom0 (timed there, so
    // without ovm's jobs, agents and TLS): mounting the export on one server and unmounting it,
    // and an iSCSI discovery and login with iscsiadm, logout included.
    let timed = |cmd: &str| -> f64 {
        let out = on(
            1,
            &format!(
                "t0=$(cut -d' ' -f1 /proc/uptime); {cmd} >/dev/null 2>&1 || echo FAILED; \
                 t1=$(cut -d' ' -f1 /proc/uptime); echo \"$t0 $t1\""
            ),
            120,
        );
        assert!(!out.contains("FAILED"), "{cmd}: {out}");
        let t: Vec<f64> = out.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        t[1] - t[0]
    };
    let nfs_peer = timed(&format!(
        "mkdir -p /tmp/peer && mount.nfs {storage}:/srv/nfs/repo /tmp/peer -o hard,nolock && umount /tmp/peer"
    ));
    let iscsi_peer = timed(&format!(
        "iscsiadm -m discovery -t sendtargets -p {storage}:3260 && \
         iscsiadm -m node -T {shared} -p {storage}:3260 --login && \
         iscsiadm -m node -T {shared} -p {storage}:3260 --logout && iscsiadm -m node -T {shared} -o delete"
    ));
    println!(
        "STORAGE-PEER by-hand mount+umount={nfs_peer:.2}s (ovm present-to-2 / (2 x by hand) = {:.1}) \
         by-hand iscsi discover+login+logout={iscsi_peer:.2}s (ovm present-array-to-1 / by hand = {:.1})",
        t_present.as_secs_f64() / (2.0 * nfs_peer),
        t_login.as_secs_f64() / iscsi_peer
    );
}
