//! A clustered server pool on three real Xen servers, through their agents: the pool file system
//! is OCFS2 made on a LUN of the storage server's iSCSI target, O2CB runs on all three, the master
//! elected through the DLM holds the pool's virtual IP, and when the master's QEMU is killed the
//! survivors declare it dead and one of them takes the master lock (a higher epoch) and the
//! address. Prints the time from the kill to the virtual IP answering from the new master.
//! Run through the lab, last in the data-centre boot (`make dc-lab-test`): it kills a server.

mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{agent_listens, on, wait_for};

use ovm_core::driver::ClusterStatus;
use ovm_core::manager::{PoolSpec, StorageArraySpec};
use ovm_core::model::*;
use ovm_core::{JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";
/// The pool's virtual IP, on the management LAN (10.77.0.0/24).
const VIP: &str = "10.77.0.200";
/// The cluster timeout: the disk heartbeat declares a silent member dead after about 14 s.
const TIMEOUT_SECS: u32 = 12;

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> ObjectRef {
    lab::ok_timed(what, job, secs).0
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is unset: run this test through `make dc-lab-test`"))
}

/// Whether server `k` has the virtual IP on an interface.
fn holds_vip(k: u32) -> bool {
    on(k, &format!("ip -o -4 addr show | grep -c ' {VIP}/' || true"), 30).trim() != "0"
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
    let mgr = Manager::builder().recurring_jobs(false).open().unwrap();
    let servers: Vec<ServerId> = addresses
        .iter()
        .enumerate()
        .map(|(k, a)| {
            // Taken over: the data-centre boot's earlier tests' managers own the agents (server 1,
            // booted again by the self-test, is owned by none: taking it over takes it).
            ServerId(ok(&format!("take server {} over", k + 1), mgr.take_over_server(a, PASSWORD), 120).id)
        })
        .collect();

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

    // The master loses power: the survivors declare it dead, elect a new master, which takes the
    // address.
    let t0 = Instant::now();
    let lab = env("OVM_XENLAB_LAB");
    let run = env("OVM_XENLAB_RUN");
    let out = Command::new(&lab).args(["power", &run, &master.to_string(), "kill"]).output().unwrap();
    assert!(out.status.success(), "lab power kill: {}", String::from_utf8_lossy(&out.stderr));
    println!("killed server {master} (the master)");
    let survivors: Vec<u32> = (1..=3).filter(|k| *k != master).collect();
    let mut new_master = 0;
    let limit = Duration::from_secs(120);
    while new_master == 0 {
        assert!(t0.elapsed() < limit, "no survivor took the virtual IP within {limit:?}");
        if vip_answers() {
            new_master = survivors.iter().copied().find(|k| holds_vip(*k)).unwrap_or(0);
        }
        if new_master == 0 {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let kill_to_vip = t0.elapsed();
    println!(
        "the virtual IP answered from server {new_master}, {:.1} s after the kill",
        kill_to_vip.as_secs_f64()
    );
    let after = status(&mgr, pool);
    println!("cluster: {after:?}");
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
        "CLUSTER-FIGURES timeout={TIMEOUT_SECS}s kill-to-vip={:.1}s epoch={}->{}",
        kill_to_vip.as_secs_f64(),
        before.epoch,
        after.epoch
    );

    // The killed server is powered on again, so that the lab ends with every server done; after
    // its boot it is in no cluster (O2CB's configuration does not outlive a boot).
    let out = Command::new(&lab).args(["power", &run, &master.to_string(), "on"]).output().unwrap();
    assert!(out.status.success(), "lab power on: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(&format!("server {master} to boot again"), 400, || {
        agent_listens(&addresses[master as usize - 1])
    });
    let configured = on(master, "ls /sys/kernel/config/cluster 2>/dev/null || true", 30);
    assert!(configured.trim().is_empty(), "server {master} is in no cluster after its boot: {configured}");
}
