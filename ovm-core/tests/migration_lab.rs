//! Live migration on real Xen between two lab servers, through their agents: the manager runs here,
//! on the host; each server's agent runs in its dom0 and the two agents carry the domain between
//! them over mutual TLS on the lab LAN. Run through the lab, on a Xen build that live-migrates PV
//! guests (see tests/xenlab/README.md):
//!
//! ```sh
//! OVM_XENLAB_XEN_VERSION=4.17.5+72-g01140da4e8-1 tests/xenlab/lab serve -n 2 \
//!     --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent -- \
//!     cargo test -p ovm-core --features agent-lab-tests --test migration_lab -- --nocapture
//! ```
//!
//! (`make migration-lab-test` does exactly that.) A migration the destination cannot complete leaves
//! the VM running on the source.

mod lab;

use std::time::Duration;

use lab::{agent_listens, wait_for};

use ovm_core::manager::{PoolSpec, VmSpec};
use ovm_core::model::*;
use ovm_core::{JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> (ObjectRef, Duration) {
    lab::ok_timed(what, job, secs)
}

fn address(k: u32) -> String {
    let port = std::env::var(format!("OVM_XENLAB_PORT_{k}")).unwrap_or_else(|_| {
        panic!("OVM_XENLAB_PORT_{k} is unset: run this test through `tests/xenlab/lab serve -n 2` (make migration-lab-test)")
    });
    format!("127.0.0.1:{port}")
}

/// Run `cmd` in server `k`'s dom0 (through the lab's command runner) and return its output; panics
/// if it fails.
fn on(k: u32, cmd: &str, secs: u64) -> String {
    lab::on(k, cmd, secs)
}

/// Start pinging `addr` from server 1's dom0 every 0.2 s, into `log`.
fn start_ping(addr: &str, log: &str) {
    on(1, &format!("/mnt/host/bin/migrate-peer.sh ping-start {addr} {log}"), 30);
}

/// Stop the ping into `log`: the longest time the guest did not answer, in seconds.
fn ping_gap(log: &str) -> f64 {
    let out = on(1, &format!("/mnt/host/bin/migrate-peer.sh ping-gap {log}"), 30);
    out.trim().parse().unwrap_or_else(|_| panic!("ping log {log}: {out:?}"))
}

/// The newest heartbeat on the VM's console: its counter, and whether the guest reached the
/// address it pings.
fn alive(mgr: &Manager, vm: VmId) -> Option<(u64, bool)> {
    let console = mgr.vm_console(vm).ok()?;
    let line = console.lines().rev().find(|l| l.starts_with("OVM-DOMU-ALIVE "))?;
    let n = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((n, line.ends_with("net=OK")))
}

#[test]
fn a_running_pv_guest_live_migrates_between_two_lab_servers_through_their_agents() {
    let (a1, a2) = (address(1), address(2));
    wait_for("agent 1 to listen", 240, || agent_listens(&a1));
    wait_for("agent 2 to listen", 240, || agent_listens(&a2));
    let mgr = Manager::builder().recurring_jobs(false).open().unwrap();
    let s1 = ServerId(ok("discover server 1", mgr.discover_server(&a1, PASSWORD), 120).0.id);
    let s2 = ServerId(ok("discover server 2", mgr.discover_server(&a2, PASSWORD), 120).0.id);
    let pool = PoolId(ok("create the pool", mgr.create_pool(PoolSpec::new("lab-pool")), 30).0.id);
    ok("add server 1", mgr.add_server_to_pool(pool, s1), 60);
    ok("add server 2", mgr.add_server_to_pool(pool, s2), 60);

    // A PV guest booted from the lab guest's kernel, which every dom0 has at the same path (a
    // restored domain does not read its kernel again), with a NIC on the management network
    // (xenbr0 on the lab LAN) from which it pings server 1's dom0 every 3 s.
    let mgmt = mgr
        .networks()
        .into_iter()
        .find(|n| n.functions.contains(&NetworkFunction::Management))
        .expect("the management network")
        .id;
    let config = VmConfig {
        vnics: vec![Vnic { mac: String::new(), network: Some(mgmt) }],
        ..lab::lab_guest("console=hvc0 ovm.ip=10.77.0.50/24 ovm.ping=10.77.0.1")
    };
    let mut spec = VmSpec::new("migrating-guest", config.clone());
    spec.server = Some(s1);
    spec.pool = Some(pool);
    let vm = VmId(ok("create the VM", mgr.create_vm(spec), 60).0.id);
    ok("start the VM on server 1", mgr.start_vm(vm), 300);
    wait_for("the guest's console marker on server 1", 300, || {
        mgr.vm_console(vm).map(|c| c.contains("OVM-DOMU-UP")).unwrap_or(false)
    });

    wait_for("the guest's heartbeat with the network up on server 1", 120, || {
        alive(&mgr, vm).is_some_and(|(_, net)| net)
    });
    let before = alive(&mgr, vm).unwrap().0;

    start_ping("10.77.0.50", "/tmp/ping-ovm.log");
    let (_, there) = ok("live-migrate the VM to server 2", mgr.migrate_vm(vm, s2), 600);
    let ovm_gap = ping_gap("/tmp/ping-ovm.log");
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(s2)));
    println!("VM on server 2 as domain {:?}", v.domid);
    // The same guest runs on: its heartbeat counter goes on from where it was (a new boot would
    // start again at 1), and it still reaches server 1's dom0, now from server 2.
    wait_for("the guest's heartbeat on server 2, continuing, with the network up", 120, || {
        alive(&mgr, vm).is_some_and(|(n, net)| n > before && net)
    });
    let after = alive(&mgr, vm).unwrap().0;
    let (_, back) = ok("live-migrate the VM back to server 1", mgr.migrate_vm(vm, s1), 600);
    assert_eq!(mgr.vm(vm).unwrap().server, Some(s1));
    wait_for("the guest's heartbeat back on server 1", 120, || {
        alive(&mgr, vm).is_some_and(|(n, net)| n > after && net)
    });

    // A migration that fails on the destination: server 2's toolstack cannot plug the guest's NIC
    // (its vif hotplug script fails), so `xl migrate-receive` gives up and the source resumes the
    // guest. The VM is Running on server 1 as before, the same guest runs on, and neither server
    // keeps a domain of it that should not be there.
    on(2, "mount --bind /bin/false /etc/xen/scripts/vif-bridge", 30);
    let failed = mgr.migrate_vm(vm, s2).unwrap().wait(Some(Duration::from_secs(600)));
    on(2, "umount /etc/xen/scripts/vif-bridge", 30);
    let e = failed.expect_err("a migration whose destination cannot build the domain fails");
    println!("refused as it should be: a migration the destination cannot complete: {e}");
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(s1)), "the VM stays on server 1");
    let left = on(2, "xl list | tail -n +2 | grep -v '^Domain-0' || true", 30);
    assert!(left.trim().is_empty(), "server 2 keeps no domain: {left}");
    let before = alive(&mgr, vm).unwrap().0;
    wait_for("the guest's heartbeat going on on server 1 after the failed migration", 120, || {
        alive(&mgr, vm).is_some_and(|(n, net)| n > before && net)
    });
    ok("acknowledge the failure", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm.0)), 30);
    for s in [s1, s2] {
        ok("acknowledge the failure", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Server, s.0)), 30);
    }

    // Maintenance mode evacuates server 1: the VM and a second one migrate to server 2 and run on.
    let mut second = VmSpec::new("second-guest", config.clone());
    if let Some(k) = second.config.pv_kernel.as_mut() {
        k.cmdline = "console=hvc0 ovm.ip=10.77.0.52/24 ovm.ping=10.77.0.1".into();
    }
    second.server = Some(s1);
    second.pool = Some(pool);
    let vm2 = VmId(ok("create a second VM", mgr.create_vm(second), 60).0.id);
    ok("start the second VM on server 1", mgr.start_vm(vm2), 300);
    wait_for("the second guest's heartbeat", 300, || alive(&mgr, vm2).is_some_and(|(_, net)| net));
    let counts = [alive(&mgr, vm).unwrap().0, alive(&mgr, vm2).unwrap().0];
    let (_, evacuated) =
        ok("maintenance mode on server 1 (evacuation)", mgr.set_maintenance_mode(s1, true), 1200);
    for (v, before) in [vm, vm2].into_iter().zip(counts) {
        let r = mgr.vm(v).unwrap();
        assert_eq!((r.power_state, r.server), (PowerState::Running, Some(s2)), "{} was evacuated", r.name);
        wait_for(&format!("{}'s heartbeat on server 2", r.name), 120, || {
            alive(&mgr, v).is_some_and(|(n, net)| n > before && net)
        });
    }
    assert!(mgr.server(s1).unwrap().maintenance_mode);
    println!("EVACUATION of 2 VMs: {:.1} s", evacuated.as_secs_f64());
    ok("maintenance mode off", mgr.set_maintenance_mode(s1, false), 60);
    for v in [vm, vm2] {
        ok("kill a VM", mgr.kill_vm(v), 120);
        ok("delete a VM", mgr.delete_vm(v), 60);
    }

    // The peer, in the same run: the same guest (kernel, memory, NIC) started with xl on server 1
    // and live-migrated with plain `xl migrate` over an unencrypted TCP pipe (busybox nc) to
    // server 2, with no manager and no agent.
    on(1, "/mnt/host/bin/migrate-peer.sh create", 400);
    on(2, "/mnt/host/bin/migrate-peer.sh receive", 30);
    start_ping("10.77.0.51", "/tmp/ping-peer.log");
    let out = on(1, "/mnt/host/bin/migrate-peer.sh send 10.77.0.2", 900);
    let peer_gap = ping_gap("/tmp/ping-peer.log");
    let peer: f64 = out.lines().last().and_then(|w| w.trim().parse().ok()).unwrap_or_else(|| panic!("{out}"));
    on(2, "xl destroy peer-guest", 60);
    println!(
        "MIGRATION ovm s1->s2 {:.1} s (ping gap {ovm_gap:.1} s), s2->s1 {:.1} s; plain xl migrate over TCP {peer:.1} s \
         (ping gap {peer_gap:.1} s); ovm/plain {:.2}",
        there.as_secs_f64(),
        back.as_secs_f64(),
        there.as_secs_f64() / peer
    );
}
