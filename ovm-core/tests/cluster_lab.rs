//! First a clustered pool whose pool file system is a file on the storage server's NFS export:
//! two servers form its cluster through a loop device, elect a master, and leave. Then a
//! clustered server pool on three real Xen servers, through their agents: the pool file system
//! is OCFS2 made on a LUN of the storage server's iSCSI target, O2CB runs on all three, the master
//! elected through the DLM holds the pool's virtual IP, and when the master's QEMU is killed the
//! survivors declare it dead and one of them takes the master lock (a higher epoch) and the
//! address, while the manager, on the cluster's verdict, restarts the master's HA-enabled guest on
//! a survivor. Prints the times from the kill to the virtual IP answering from the new master and
//! to the HA guest's console marker on its new server. The killed server, powered on again, joins
//! the cluster again. Then a server cut off the management LAN by the lab switch fences itself,
//! and only after that is its HA guest restarted elsewhere (prints the times from the cut); and a
//! server whose agent hangs is reset by Xen's watchdog before its HA guest is restarted elsewhere;
//! and with the manager stopped, the master restarts the HA guest of a killed server by itself.
//! Run through the lab, last in the data-centre boot (`make dc-lab-test`): it kills a server.

mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{agent_listens, on, run_in, wait_for};

use ovm_core::driver::ClusterStatus;
use ovm_core::manager::{DatabaseLocation, FileServerSpec, PoolSpec, StorageArraySpec, VmSpec};
use ovm_core::model::*;
use ovm_core::store::EventFilter;
use ovm_core::{JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";
/// The pool's virtual IP, on the management LAN (10.77.0.0/24).
const VIP: &str = "10.77.0.200";
/// The cluster timeout: the disk heartbeat declares a silent member dead after about 22 s, and a
/// member whose own heartbeat write takes 20 s fences itself. Under TCG, with four QEMUs on two
/// cores, the storage server's iSCSI answers can stall for over 12 s: a shorter timeout fences
/// healthy members.
const TIMEOUT_SECS: u32 = 20;

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> ObjectRef {
    lab::ok_timed(what, job, secs).0
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is unset: run this test through `make dc-lab-test`"))
}

/// The virtual IP of the pool whose file system is a file on NFS.
const NFS_VIP: &str = "10.77.0.201";
/// The storage server's export for that file.
const POOL_EXPORT: &str = "/srv/nfs/poolfs";

/// Whether server `k` has the virtual IP on an interface.
fn holds_vip(k: u32) -> bool {
    holds(k, VIP)
}

/// Whether server `k` has address `ip` on an interface.
fn holds(k: u32, ip: &str) -> bool {
    on(k, &format!("ip -o -4 addr show | grep -c ' {ip}/' || true"), 30).trim() != "0"
}

fn on_storage(cmd: &str, secs: u64) -> String {
    run_in(&std::path::PathBuf::from(env("OVM_XENLAB_STORAGE_SHARE")), "the storage server", cmd, secs)
}

/// Whether the pool's agent answers at the virtual IP (the agents listen on every address).
fn vip_answers() -> bool {
    agent_listens(&format!("{VIP}:8899"))
}

/// The server number (1..=3) of the member the cluster names `name`.
fn number_of(servers: &[ServerId], name: &str) -> u32 {
    let i = servers.iter().position(|s| s.0.simple().to_string() == name).expect("a member");
    i as u32 + 1
}

/// Whether the VM's console (on its current server) shows the lab guest's boot marker.
fn marker(mgr: &Manager, vm: VmId) -> bool {
    mgr.vm_console(vm).map(|c| c.contains("OVM-DOMU-UP")).unwrap_or(false)
}

fn events_of(mgr: &Manager, object: ObjectRef, event_type: &str) -> usize {
    mgr.events(&EventFilter { object: Some(object.id), ..Default::default() })
        .unwrap()
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

fn has_event(mgr: &Manager, object: ObjectRef, event_type: &str) -> bool {
    events_of(mgr, object, event_type) > 0
}

/// What Xen prints on the console when dom0's watchdog fires (it then resets the server).
const WATCHDOG_FIRED: &str = "Watchdog timer fired for domain 0";
/// The Xen watchdog's timeout in the lab.
const WATCHDOG_SECS: u32 = 10;
/// The alive file the lab's agents write (`tests/xenlab/agent-dom0.sh`).
const ALIVE_FILE: &str = "/tmp/ovm-agent.alive";

/// What O2CB prints on the console when it fences its server.
const FENCE: &str = "ocfs2 is very sorry to be fencing this system";

/// Set a link of the lab switch up or down (`node2.lan` is server 2's management NIC).
fn switch(link: &str, state: &str) {
    let st = Command::new(env("OVM_XENLAB_SWITCH"))
        .args(["ctl", &env("OVM_XENLAB_SWITCH_DIR"), "link", link, state])
        .status()
        .expect("run the lab switch's control");
    assert!(st.success(), "switch link {link} {state}");
}

fn status(mgr: &Manager, pool: PoolId) -> ClusterStatus {
    mgr.pool_cluster_status(pool).unwrap().expect("the servers are in the pool's cluster")
}

#[test]
fn a_clustered_pool_on_an_iscsi_lun_elects_a_master_that_holds_the_virtual_ip_and_fails_over() {
    env("OVM_XENLAB_MANAGER_IP");
    let storage = env("OVM_XENLAB_STORAGE_LAN_IP");
    let addresses: Vec<String> = (1..=3).map(|k| format!("10.77.0.{k}:8899")).collect();
    for (k, a) in addresses.iter().enumerate() {
        wait_for(&format!("agent {} to listen", k + 1), 400, || agent_listens(a));
    }
    // A database on disk: the manager is stopped and opened again at the end.
    let db = std::env::temp_dir().join(format!("ovm-cluster-lab-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let open = || {
        Manager::builder().database(DatabaseLocation::File(db.clone())).recurring_jobs(false).open().unwrap()
    };
    let mgr = open();
    let servers: Vec<ServerId> = addresses
        .iter()
        .enumerate()
        .map(|(k, a)| {
            // Taken over: the data-centre boot's earlier tests' managers own the agents (server 1,
            // booted again by the self-test, is owned by none: taking it over takes it).
            ServerId(ok(&format!("take server {} over", k + 1), mgr.take_over_server(a, PASSWORD), 120).id)
        })
        .collect();

    // A clustered pool whose pool file system is a file on an NFS export, as Oracle VM keeps it:
    // servers 1 and 2 mount the export, the first makes the file and the OCFS2 file system in it
    // (through a loop device), both heartbeat on it and elect a master that holds the pool's
    // address; then both leave the pool, and its cluster is gone from their servers.
    on_storage(
        &format!(
            "mkdir -p {POOL_EXPORT} && \
             echo '{POOL_EXPORT} 10.77.0.0/24(rw,no_root_squash,no_subtree_check,insecure,fsid=12)' >> /etc/exports && \
             exportfs -ra"
        ),
        30,
    );
    let fsrv = FileServerId(
        ok(
            "discover the NFS server",
            mgr.register_file_server(FileServerSpec::nfs("lab-nfs", &storage, vec![servers[0]])),
            180,
        )
        .id,
    );
    let fs = mgr.file_systems_of(fsrv).into_iter().find(|f| f.path == POOL_EXPORT).expect("the export").id;
    let nfs_spec = PoolSpec {
        clustered: true,
        virtual_ip: Some(NFS_VIP.parse().unwrap()),
        pool_file_system: Some(fs),
        cluster_timeout_secs: TIMEOUT_SECS,
        ..PoolSpec::new("clustered-on-nfs")
    };
    let nfs_pool = PoolId(ok("create the clustered pool on NFS", mgr.create_pool(nfs_spec), 30).id);
    for s in &servers[..2] {
        ok("a server joins the pool on NFS", mgr.add_server_to_pool(nfs_pool, *s), 300);
    }
    let nfs_mount = format!("/poolfsmnt/{}", nfs_pool.0);
    for k in 1..=2 {
        let m = on(k, "grep ' ocfs2 ' /proc/mounts || true", 30);
        assert!(m.contains(&format!(" {nfs_mount} ocfs2 ")), "server {k} mounts the pool file system: {m}");
        let loops = on(k, "cat /sys/block/loop*/loop/backing_file 2>/dev/null || true", 30);
        assert!(loops.contains(".ovspoolfs/"), "server {k} reaches it through a loop device: {loops}");
    }
    wait_for("both heartbeats on the pool file system on NFS", 60, || {
        let s = status(&mgr, nfs_pool);
        s.heartbeats.len() == 2 && s.heartbeats.iter().all(|h| h.heartbeat == HeartbeatState::Alive)
    });
    let st = status(&mgr, nfs_pool);
    let nfs_master = number_of(&servers, st.master.as_deref().expect("a master"));
    wait_for("the master of the pool on NFS to hold its address", 60, || holds(nfs_master, NFS_VIP));
    on(1, &format!("echo on-nfs > {nfs_mount}/from-1 && sync"), 30);
    wait_for("server 2 to read it", 30, || {
        on(2, &format!("cat {nfs_mount}/from-1 2>/dev/null || true"), 30).trim() == "on-nfs"
    });
    println!("cluster on NFS: {st:?}");
    for s in servers[..2].iter().rev() {
        ok("a server leaves the pool on NFS", mgr.remove_server_from_pool(nfs_pool, *s), 300);
    }
    for k in 1..=2 {
        let m = on(k, "grep -E ' (ocfs2|nfs4?) ' /proc/mounts || true", 30);
        assert!(!m.contains("/poolfs"), "server {k} let go of the pool file system and its export: {m}");
        assert!(!holds(k, NFS_VIP), "server {k} holds no address of that pool");
    }

    // The pool file system's LUN, seen by all three servers.
    let array = StorageArrayId(
        ok(
            "discover the iSCSI array",
            mgr.register_storage_array(StorageArraySpec::iscsi("lab-lio", &storage, vec![servers[0]])),
            240,
        )
        .id,
    );
    ok("present the array to servers 2 and 3", mgr.present_storage_array_to(array, &servers[1..]), 240);
    let disk = mgr
        .physical_disks_of(array)
        .into_iter()
        .find(|d| d.name.ends_with("-pool"))
        .expect("the storage server's pool LUN");

    // Bad input first: nothing is stored, nothing is done on a server.
    let e =
        mgr.create_pool(PoolSpec { pool_disk: Some(disk.id), ..PoolSpec::new("not-clustered") }).unwrap_err();
    println!("refused as it should be: a pool disk for an unclustered pool: {e}");

    let spec = PoolSpec {
        clustered: true,
        virtual_ip: Some(VIP.parse().unwrap()),
        pool_disk: Some(disk.id),
        cluster_timeout_secs: TIMEOUT_SECS,
        ..PoolSpec::new("clustered")
    };
    let pool = PoolId(ok("create the clustered pool", mgr.create_pool(spec), 30).id);
    for (k, s) in servers.iter().enumerate() {
        let what = if k == 0 { "server 1 makes the pool file system and joins" } else { "a server joins" };
        ok(what, mgr.add_server_to_pool(pool, *s), 300);
    }

    // The cluster: three members, heartbeating on the pool file system, one master.
    let mount = format!("/poolfsmnt/{}", pool.0);
    for k in 1..=3 {
        let m = on(k, "grep ' ocfs2 ' /proc/mounts || true", 30);
        assert!(m.contains(&format!(" {mount} ocfs2 ")), "server {k} mounts the pool file system: {m}");
    }
    wait_for("every member's heartbeat to be seen", 60, || {
        let s = status(&mgr, pool);
        s.heartbeats.len() == 3 && s.heartbeats.iter().all(|h| h.heartbeat == HeartbeatState::Alive)
    });
    let before = status(&mgr, pool);
    println!("cluster: {before:?}");
    assert_eq!(before.members.len(), 3);
    let master = number_of(&servers, before.master.as_deref().expect("a master"));
    assert!(before.epoch >= 1);
    assert_eq!(mgr.pool(pool).unwrap().master, Some(servers[master as usize - 1]), "the manager's master");

    // One file system on all three: what one writes, the others read.
    on(1, &format!("echo written-by-server-1 > {mount}/from-1 && sync"), 30);
    for k in [2, 3] {
        wait_for(&format!("server {k} to read server 1's file"), 30, || {
            on(k, &format!("cat {mount}/from-1 2>/dev/null || true"), 30).trim() == "written-by-server-1"
        });
    }

    // The virtual IP: held by the master alone, answering.
    wait_for("the master to hold the virtual IP", 60, || holds_vip(master));
    for k in (1..=3).filter(|k| *k != master) {
        assert!(!holds_vip(k), "server {k} is not master and does not hold {VIP}");
    }
    wait_for("the virtual IP to answer", 30, vip_answers);
    // The manager reaches the pool at its address: the master answers there.
    let (at_vip, st) = mgr.reach_pool(pool).unwrap();
    assert_eq!(at_vip, servers[master as usize - 1], "the master answers at {VIP}");
    assert_eq!(st.map(|s| s.epoch), Some(before.epoch));

    // HA: two guests on the master, one HA-enabled. The manager's connection to the master stays
    // up until the kill: HA waits for the cluster's verdict, not for the manager's view.
    let on_master = servers[master as usize - 1];
    let guest = |name: &str, ha: bool, on: ServerId| {
        let mut spec =
            VmSpec::new(name, VmConfig { high_availability: ha, ..lab::lab_guest("console=hvc0") });
        spec.server = Some(on);
        spec.pool = Some(pool);
        let vm = VmId(ok(&format!("create {name}"), mgr.create_vm(spec), 60).id);
        ok(&format!("start {name}"), mgr.start_vm_on(vm, on), 300);
        wait_for(&format!("{name}'s console marker"), 300, || marker(&mgr, vm));
        vm
    };
    let ha_vm = guest("ha-guest", true, on_master);
    let plain_vm = guest("plain-guest", false, on_master);

    // The master loses power: the survivors declare it dead, elect a new master, which takes the
    // address; the manager restarts the HA guest on a survivor.
    let t0 = Instant::now();
    let lab = env("OVM_XENLAB_LAB");
    let run = env("OVM_XENLAB_RUN");
    let out = Command::new(&lab).args(["power", &run, &master.to_string(), "kill"]).output().unwrap();
    assert!(out.status.success(), "lab power kill: {}", String::from_utf8_lossy(&out.stderr));
    println!("killed server {master} (the master)");
    let survivors: Vec<u32> = (1..=3).filter(|k| *k != master).collect();
    // Each is watched by its own thread (a probe of the address takes up to a few seconds).
    let limit = Duration::from_secs(180);
    let ((new_master, kill_to_vip), kill_to_ha) = std::thread::scope(|scope| {
        let vip = scope.spawn(|| loop {
            assert!(t0.elapsed() < limit, "no survivor took the virtual IP within {limit:?}");
            if vip_answers() {
                if let Some(k) = survivors.iter().copied().find(|k| holds_vip(*k)) {
                    let t = t0.elapsed();
                    println!("the virtual IP answered from server {k}, {t:.1?} after the kill");
                    return (k, t);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        });
        let ha = loop {
            assert!(t0.elapsed() < limit, "the HA guest did not run again within {limit:?}");
            let v = mgr.vm(ha_vm).unwrap();
            if v.power_state == PowerState::Running && v.server != Some(on_master) && marker(&mgr, ha_vm) {
                let t = t0.elapsed();
                println!("the HA guest's console marker on its new server, {t:.1?} after the kill");
                break t;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        (vip.join().unwrap(), ha)
    });
    let dead_ref = ObjectRef::new(ObjectKind::Server, on_master);
    assert!(has_event(&mgr, dead_ref, "server.dead"), "declared dead by its cluster");
    let moved_to = mgr.vm(ha_vm).unwrap().server.unwrap();
    assert!(servers.contains(&moved_to) && moved_to != on_master);
    let k = servers.iter().position(|s| *s == moved_to).unwrap() as u32 + 1;
    let domid = mgr.vm(ha_vm).unwrap().domid.expect("a domain").to_string();
    let domains = on(k, "xl list | awk 'NR>1 {print $2}'", 30);
    assert!(domains.split_whitespace().any(|d| d == domid), "server {k} runs domain {domid}: {domains}");
    let plain = mgr.vm(plain_vm).unwrap();
    assert_eq!((plain.power_state, plain.server), (PowerState::Stopped, Some(on_master)), "not HA-enabled");
    assert!(has_event(&mgr, plain.object_ref(), "vm.stopped"));
    wait_for("the manager to follow the elected master", 30, || {
        mgr.pool(pool).unwrap().master == Some(servers[new_master as usize - 1])
    });
    let after = status(&mgr, pool);
    println!("cluster: {after:?}");
    let (at_vip, _) = mgr.reach_pool(pool).unwrap();
    assert_eq!(at_vip, servers[new_master as usize - 1], "the new master answers at {VIP}");
    assert_eq!(number_of(&servers, after.master.as_deref().unwrap()), new_master);
    assert!(after.epoch > before.epoch, "a new epoch: {} then {}", before.epoch, after.epoch);
    let dead = servers[master as usize - 1].0.simple().to_string();
    let seen_dead = after.heartbeats.iter().find(|h| h.name == dead).map(|h| h.heartbeat);
    assert_eq!(seen_dead, Some(HeartbeatState::Dead), "{after:?}");
    let other = survivors.iter().copied().find(|k| *k != new_master).unwrap();
    assert!(!holds_vip(other), "only the new master holds {VIP}");
    // The pool file system goes on for the survivors.
    on(new_master, &format!("echo after-the-kill > {mount}/after && sync"), 60);
    wait_for("the other survivor to read it", 60, || {
        on(other, &format!("cat {mount}/after 2>/dev/null || true"), 30).trim() == "after-the-kill"
    });
    println!(
        "CLUSTER-FIGURES timeout={TIMEOUT_SECS}s kill-to-vip={:.1}s kill-to-ha-marker={:.1}s epoch={}->{}",
        kill_to_vip.as_secs_f64(),
        kill_to_ha.as_secs_f64(),
        before.epoch,
        after.epoch
    );

    // The killed server is powered on again. After its boot it is in no cluster (O2CB's
    // configuration does not outlive a boot); the manager reconnects to its agent and it joins the
    // cluster again, as the member it was, and mounts the pool file system.
    let out = Command::new(&lab).args(["power", &run, &master.to_string(), "on"]).output().unwrap();
    assert!(out.status.success(), "lab power on: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(&format!("server {master} to boot again"), 400, || {
        agent_listens(&addresses[master as usize - 1])
    });
    wait_for(&format!("server {master} to join the cluster again"), 180, || {
        has_event(&mgr, dead_ref, "cluster.rejoined")
    });
    let m = on(master, "grep ' ocfs2 ' /proc/mounts || true", 30);
    assert!(
        m.contains(&format!(" {mount} ocfs2 ")),
        "server {master} mounts the pool file system again: {m}"
    );
    wait_for("every member's heartbeat to be seen again", 60, || {
        let s = status(&mgr, pool);
        s.heartbeats.len() == 3 && s.heartbeats.iter().all(|h| h.heartbeat == HeartbeatState::Alive)
    });
    assert_eq!(
        on(master, &format!("cat {mount}/after"), 30).trim(),
        "after-the-kill",
        "it reads what the survivors wrote"
    );
    let last = status(&mgr, pool);
    assert_eq!(last.epoch, after.epoch, "a member joining again changes no master: {last:?}");

    // A network partition. Server P (not the master) is cut off the management LAN, which carries
    // the cluster's network heartbeat and the manager's connection; it keeps running, and keeps
    // its disk heartbeat on the storage LAN. Cut off from the others, it has lost the cluster's
    // quorum and fences itself (O2CB resets it; the lab's QEMU exits). Only then does its disk
    // heartbeat stop, do the others declare it dead, and does the manager restart its HA guest
    // elsewhere: the guest never runs twice.
    let master_now = number_of(&servers, last.master.as_deref().unwrap());
    let p = (1..=3).find(|k| *k != master_now).unwrap();
    let on_p = servers[p as usize - 1];
    let cut_vm = guest("ha-guest-cut", true, on_p);
    let console = std::path::PathBuf::from(&run).join(format!("node{p}/console.log"));
    let fences = || {
        let log = std::fs::read(&console).unwrap_or_default();
        String::from_utf8_lossy(&log).matches(FENCE).count()
    };
    let fences_before = fences();
    let p_ref = ObjectRef::new(ObjectKind::Server, on_p);
    let rejoins_before = events_of(&mgr, p_ref, "cluster.rejoined");
    switch(&format!("node{p}.lan"), "down");
    let t0 = Instant::now();
    println!("cut server {p} off the management LAN");
    let mut fenced_at = None;
    let restarted_at = loop {
        assert!(t0.elapsed() < Duration::from_secs(240), "the cut server's HA guest did not run again");
        if fenced_at.is_none() && fences() > fences_before {
            fenced_at = Some(t0.elapsed());
            println!("server {p} fenced itself, {:.1?} after the cut", t0.elapsed());
        }
        let v = mgr.vm(cut_vm).unwrap();
        if v.power_state == PowerState::Running && v.server != Some(on_p) {
            break t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("its HA guest was restarted on another server, {restarted_at:.1?} after the cut");
    let fenced_at = fenced_at.expect("the cut server fenced itself before its guest was restarted");
    assert!(fenced_at < restarted_at);
    assert!(has_event(&mgr, p_ref, "server.dead"));
    wait_for("the restarted guest's console marker", 120, || marker(&mgr, cut_vm));
    // The guest runs once, on one of the servers that are up.
    let uuid = cut_vm.0.to_string();
    let copies: usize = (1..=3)
        .filter(|k| *k != p)
        .map(|k| on(k, &format!("xl list -v | grep -c {uuid} || true"), 30).trim().parse::<usize>().unwrap())
        .sum();
    assert_eq!(copies, 1, "one copy of the guest runs");
    println!(
        "PARTITION-FIGURES cut-to-fence={:.1}s cut-to-ha-restart={:.1}s",
        fenced_at.as_secs_f64(),
        restarted_at.as_secs_f64()
    );

    // The partition heals and the fenced server is powered on again: it joins the cluster again.
    switch(&format!("node{p}.lan"), "up");
    let out = Command::new(&lab).args(["power", &run, &p.to_string(), "on"]).output().unwrap();
    assert!(out.status.success(), "lab power on: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(&format!("server {p} to boot again"), 400, || agent_listens(&addresses[p as usize - 1]));
    wait_for(&format!("server {p} to join the cluster again"), 180, || {
        events_of(&mgr, p_ref, "cluster.rejoined") > rejoins_before
    });
    wait_for("every member's heartbeat to be seen after the partition", 60, || {
        let s = status(&mgr, pool);
        s.heartbeats.len() == 3 && s.heartbeats.iter().all(|h| h.heartbeat == HeartbeatState::Alive)
    });

    // A hung agent. Server H (not the master) runs the Xen watchdog, which stops petting when the
    // agent's process runs but no longer writes its alive file; Xen then resets the server, its
    // disk heartbeat stops, and only then is its HA guest restarted elsewhere.
    let st = status(&mgr, pool);
    let master_now = number_of(&servers, st.master.as_deref().unwrap());
    let h = (1..=3).find(|k| *k != master_now).unwrap();
    let on_h = servers[h as usize - 1];
    let hang_vm = guest("ha-guest-hang", true, on_h);
    on(
        h,
        &format!(
            "setsid /mnt/host/bin/ovm-agent watchdog --timeout {WATCHDOG_SECS} --interval 2 --hang-after 6 \
             --alive-file {ALIVE_FILE} > /mnt/host/results/watchdog.log 2>&1 < /dev/null &"
        ),
        30,
    );
    wait_for("the watchdog to be armed", 30, || {
        on(h, "cat /mnt/host/results/watchdog.log 2>/dev/null || true", 30).contains("armed")
    });
    let h_ref = ObjectRef::new(ObjectKind::Server, on_h);
    let (deaths_before, rejoins_before) =
        (events_of(&mgr, h_ref, "server.dead"), events_of(&mgr, h_ref, "cluster.rejoined"));
    let h_console = std::path::PathBuf::from(&run).join(format!("node{h}/console.log"));
    let fired = || {
        let log = std::fs::read(&h_console).unwrap_or_default();
        String::from_utf8_lossy(&log).matches(WATCHDOG_FIRED).count()
    };
    let fired_before = fired();
    on(h, &format!("kill -STOP $(cat {ALIVE_FILE})"), 30);
    let t0 = Instant::now();
    println!("stopped server {h}'s agent");
    let mut fired_at = None;
    let restarted_at = loop {
        assert!(t0.elapsed() < Duration::from_secs(240), "the hung server's HA guest did not run again");
        if fired_at.is_none() && fired() > fired_before {
            fired_at = Some(t0.elapsed());
            println!("Xen's watchdog reset server {h}, {:.1?} after its agent hung", t0.elapsed());
        }
        let v = mgr.vm(hang_vm).unwrap();
        if v.power_state == PowerState::Running && v.server != Some(on_h) {
            break t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("its HA guest was restarted on another server, {restarted_at:.1?} after its agent hung");
    let fired_at = fired_at.expect("the watchdog reset the server before its guest was restarted");
    assert!(fired_at < restarted_at);
    assert!(events_of(&mgr, h_ref, "server.dead") > deaths_before);
    wait_for("the restarted guest's console marker", 120, || marker(&mgr, hang_vm));
    println!(
        "WATCHDOG-FIGURES timeout={WATCHDOG_SECS}s hang-to-reset={:.1}s hang-to-ha-restart={:.1}s",
        fired_at.as_secs_f64(),
        restarted_at.as_secs_f64()
    );
    let out = Command::new(&lab).args(["power", &run, &h.to_string(), "on"]).output().unwrap();
    assert!(out.status.success(), "lab power on: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(&format!("server {h} to boot again"), 400, || agent_listens(&addresses[h as usize - 1]));
    wait_for(&format!("server {h} to join the cluster again"), 180, || {
        events_of(&mgr, h_ref, "cluster.rejoined") > rejoins_before
    });
    wait_for("every member's heartbeat to be seen after the watchdog", 60, || {
        let s = status(&mgr, pool);
        s.heartbeats.len() == 3 && s.heartbeats.iter().all(|h| h.heartbeat == HeartbeatState::Alive)
    });

    // HA without the manager. Server D (not the master) runs an HA guest, whose record its server
    // keeps on the pool file system. The manager stops; D is killed; the master, the manager
    // silent, restarts the guest on itself from that record. The manager, opened again, finds
    // it running there.
    let st = status(&mgr, pool);
    let master_now = number_of(&servers, st.master.as_deref().unwrap());
    let d = (1..=3).find(|k| *k != master_now).unwrap();
    let on_d = servers[d as usize - 1];
    let away_vm = guest("ha-guest-away", true, on_d);
    let record = format!("{mount}/.ovm/ha/{}.json", away_vm.0.simple());
    let text = on(master_now, &format!("cat {record}"), 30);
    assert!(text.contains(&on_d.0.simple().to_string()), "the pool's record names server {d}: {text}");
    let plain_away = guest("plain-guest-away", false, on_d);
    let d_ref = ObjectRef::new(ObjectKind::Server, on_d);
    let deaths_before = events_of(&mgr, d_ref, "server.dead");
    mgr.close(Duration::from_secs(60)).unwrap();
    drop(mgr);
    println!("stopped the manager");
    let out = Command::new(&lab).args(["power", &run, &d.to_string(), "kill"]).output().unwrap();
    assert!(out.status.success(), "lab power kill: {}", String::from_utf8_lossy(&out.stderr));
    let t0 = Instant::now();
    println!("killed server {d}");
    let uuid = away_vm.0.to_string();
    let runs_on_master = || {
        on(master_now, &format!("xl list -v | grep -c {uuid} || true"), 30).trim().parse::<usize>().unwrap()
            == 1
    };
    while !runs_on_master() {
        assert!(t0.elapsed() < Duration::from_secs(240), "the pool did not restart the HA guest");
        std::thread::sleep(Duration::from_millis(250));
    }
    let kill_to_restart = t0.elapsed();
    println!("the master restarted the HA guest, {kill_to_restart:.1?} after the kill, the manager away");
    let other = (1..=3).find(|k| *k != master_now && *k != d).unwrap();
    let elsewhere = on(other, &format!("xl list -v | grep -c {uuid} || true"), 30);
    assert_eq!(elsewhere.trim(), "0", "one copy of the guest runs");
    let plain_uuid = plain_away.0.to_string();
    for k in [master_now, other] {
        let n = on(k, &format!("xl list -v | grep -c {plain_uuid} || true"), 30);
        assert_eq!(n.trim(), "0", "a VM that is not HA-enabled is not restarted by the pool");
    }

    let mgr = open();
    println!("opened the manager again");
    let on_master = servers[master_now as usize - 1];
    wait_for("the manager to find the HA guest on the master", 120, || {
        mgr.vm(away_vm).is_ok_and(|v| v.server == Some(on_master) && v.power_state == PowerState::Running)
    });
    assert!(has_event(&mgr, ObjectRef::new(ObjectKind::Vm, away_vm), "ha.restarted_by_pool"));
    wait_for("the HA guest's console marker on the master", 120, || marker(&mgr, away_vm));
    wait_for("the manager to declare the killed server dead", 120, || {
        events_of(&mgr, d_ref, "server.dead") > deaths_before
    });
    wait_for("the plain guest to be recorded stopped", 30, || {
        mgr.vm(plain_away).is_ok_and(|v| v.power_state == PowerState::Stopped)
    });
    // Still one copy: the manager's own HA did not start it again.
    let copies: usize = [master_now, other]
        .iter()
        .map(|k| on(*k, &format!("xl list -v | grep -c {uuid} || true"), 30).trim().parse::<usize>().unwrap())
        .sum();
    assert_eq!(copies, 1, "one copy of the guest runs");
    println!(
        "AWAY-FIGURES timeout={TIMEOUT_SECS}s kill-to-pool-restart={:.1}s",
        kill_to_restart.as_secs_f64()
    );
    // The killed server boots again and rejoins the cluster.
    let rejoins_before = events_of(&mgr, d_ref, "cluster.rejoined");
    let out = Command::new(&lab).args(["power", &run, &d.to_string(), "on"]).output().unwrap();
    assert!(out.status.success(), "lab power on: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(&format!("server {d} to boot again"), 400, || agent_listens(&addresses[d as usize - 1]));
    wait_for(&format!("server {d} to join the cluster again"), 180, || {
        events_of(&mgr, d_ref, "cluster.rejoined") > rejoins_before
    });
    wait_for("every member's heartbeat to be seen at the end", 60, || {
        let s = status(&mgr, pool);
        s.heartbeats.len() == 3 && s.heartbeats.iter().all(|h| h.heartbeat == HeartbeatState::Alive)
    });
    let _ = std::fs::remove_file(&db);
}
