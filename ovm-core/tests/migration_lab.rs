//! Live migration (and a cold move) on real Xen between two lab servers, through their agents: the manager runs here,
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
//! the VM running on the source. At the end, DPM and DRS act on the loads sampled from the two
//! servers: DPM empties an idle server and powers it off, wakes it by Wake-on-LAN when guests
//! burning CPU push the other over its threshold, and DRS moves one of them to it.

mod lab;

use std::time::Duration;

use lab::{agent_listens, wait_for};

use ovm_core::manager::{PoolSpec, ServerEdit, VmSpec};
use ovm_core::model::*;
use ovm_core::policy::balance::{Plan, Reason};
use ovm_core::store::EventFilter;
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

/// What the destination agent refuses, on real Xen, before the manager takes the servers: a
/// prepared domain with a disk outside the repositories this server has mounted or a bridge it
/// lacks; a forged ticket; a stream that carries another domain than the one prepared (the VM runs
/// on at the source); and that stream's ticket presented again. A client of its own (another
/// manager identity) plays the manager, then gives both servers up.
fn the_destination_agent_refuses_hostile_configurations_and_forged_or_reused_tickets(a1: &str, a2: &str) {
    use ovm_core::agent::{AgentDriver, Identity};
    use ovm_core::driver::{DiskSpec, DomainSpec, Driver, MigrationTicket, NicSpec};
    const ME: &str = "ticket-probe";
    let probe = AgentDriver::new(Identity::generate(ME).unwrap());
    let src = probe.connect(a1, PASSWORD, ME).unwrap();
    let dst = probe.connect(a2, PASSWORD, ME).unwrap();
    let (ms, md) = (src.migration().unwrap(), dst.migration().unwrap());
    let guest = lab::lab_guest("console=hvc0");
    let kernel = guest.pv_kernel.unwrap();
    let spec = DomainSpec {
        uuid: VmId::new(),
        name: "ticket-probe".into(),
        domain_type: DomainType::Pv,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 128,
        max_memory_mib: 128,
        disks: vec![],
        nics: vec![],
        kernel: Some(kernel.kernel),
        initrd: kernel.initrd,
        cmdline: Some(kernel.cmdline),
        restart_actions: Default::default(),
        boot_order: Vec::new(),
        ha_priority: None,
        framebuffer: false,
        network_boot: None,
    };
    src.create_domain(&spec).unwrap();
    let src_id = ms.identity().unwrap();
    let runs = |c: &dyn ovm_core::driver::ServerConnection| {
        c.list_domains().unwrap().iter().any(|d| d.uuid == Some(spec.uuid))
    };

    let disk = |path: &str| {
        let mut s = spec.clone();
        s.disks = vec![DiskSpec { slot: 0, path: path.into(), read_only: false, cdrom: false }];
        s
    };
    let mut no_bridge = spec.clone();
    no_bridge.nics = vec![NicSpec { mac: String::new(), bridge: Some("ovmnosuchbr".into()) }];
    for (what, hostile) in [
        ("a disk outside the storage root", disk("/etc/shadow")),
        (
            "a disk in a repository not mounted",
            disk("/OVS/Repositories/0004fb0000030000aaaa/VirtualDisks/a.img"),
        ),
        ("a disk reached through ..", disk("/OVS/../etc/shadow")),
        ("a bridge the server lacks", no_bridge),
    ] {
        let e = md.prepare_incoming(&hostile, &src_id, MigrationMode::Live).unwrap_err();
        assert_eq!(e.kind(), ovm_core::ErrorKind::InvalidArgument, "{what}: {e}");
        println!("refused as it should be, {what}: {e}");
    }

    let denied = |r: ovm_core::Result<()>| match r {
        Err(ovm_core::Error::PermissionDenied { reason }) => reason,
        other => panic!("expected PermissionDenied, got {other:?}"),
    };
    let real = md.prepare_incoming(&spec, &src_id, MigrationMode::Live).unwrap();
    let forged = MigrationTicket { token: "00".repeat(32), ..real.clone() };
    let e = denied(ms.send(spec.uuid, &forged, true));
    assert!(e.contains("no such ticket"), "{e}");
    println!("refused as it should be, a forged ticket: {e}");
    md.cancel_incoming(&real).unwrap();

    // Prepared for a smaller domain than the stream carries (more memory than the destination set
    // aside): the ticket is taken, the stream's configuration is refused, and the VM runs on at the
    // source. (The guest must have booted: a
    // domain whose kernel has not yet set up its memory map cannot be suspended at all.)
    wait_for("the probe guest to boot", 300, || {
        src.console(spec.uuid).map(|c| c.contains("OVM-DOMU-UP")).unwrap_or(false)
    });
    let mut smaller = spec.clone();
    smaller.memory_mib = 64;
    smaller.max_memory_mib = 64;
    let mismatched = md.prepare_incoming(&smaller, &src_id, MigrationMode::Live).unwrap();
    let e = ms.send(spec.uuid, &mismatched, true).unwrap_err();
    println!("refused as it should be, a stream carrying another domain: {e}");
    assert!(runs(&*src) && !runs(&*dst), "a refused stream leaves the domain at the source only");
    let e = denied(ms.send(spec.uuid, &mismatched, true));
    assert!(e.contains("no such ticket"), "{e}");
    println!("refused as it should be, a used ticket: {e}");
    assert!(runs(&*src) && !runs(&*dst));

    src.destroy(spec.uuid).unwrap();
    probe.release(a1, ME).unwrap();
    probe.release(a2, ME).unwrap();
}

#[test]
fn a_running_pv_guest_live_migrates_between_two_lab_servers_through_their_agents() {
    let (a1, a2) = (address(1), address(2));
    wait_for("agent 1 to listen", 240, || agent_listens(&a1));
    wait_for("agent 2 to listen", 240, || agent_listens(&a2));
    the_destination_agent_refuses_hostile_configurations_and_forged_or_reused_tickets(&a1, &a2);
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

    // Load sampling from real Xen through the agents: the servers' CPU (from each physical CPU's
    // idle time), the VM's CPU, dom0's interfaces with their counters.
    mgr.sample_loads().unwrap();
    // The guest pings server 1's dom0 every 3 s.
    std::thread::sleep(Duration::from_secs(4));
    let t0 = std::time::Instant::now();
    assert_eq!(mgr.sample_loads().unwrap(), 2, "both servers sampled");
    let round = t0.elapsed();
    let load = mgr.server_load(s1).unwrap().expect("a sample of server 1");
    assert!(load.cpus >= 1 && (0.0..=100.0).contains(&load.cpu_percent), "{load:?}");
    let mine = load.vms.iter().find(|v| v.vm == vm).expect("the VM in its server's sample");
    assert!(mine.cpu_percent >= 0.0 && mine.memory_mib >= 100, "{mine:?}");
    let bridge = load.interfaces.iter().find(|i| i.name == "xenbr0").expect("xenbr0 counted");
    assert!(bridge.rx_bytes_per_sec > 0.0, "the guest pings dom0 on xenbr0: {bridge:?}");
    println!(
        "LOAD server 1: cpu {:.1}% of {} CPUs, VM cpu {:.1}%, xenbr0 rx {:.0} B/s; one sampling round of 2 servers {:.1} ms",
        load.cpu_percent,
        load.cpus,
        mine.cpu_percent,
        bridge.rx_bytes_per_sec,
        round.as_secs_f64() * 1000.0
    );

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

    // A migration that fails on the destination: server 1's toolstack cannot plug the guest's NIC
    // (its vif hotplug script fails), so `xl migrate-receive` gives up and the source resumes the
    // guest. The VM is Running on server 2 as before, the same guest runs on, and neither server
    // keeps a domain of it that should not be there.
    on(1, "mount --bind /bin/false /etc/xen/scripts/vif-bridge", 30);
    let failed = mgr.migrate_vm(vm, s1).unwrap().wait(Some(Duration::from_secs(600)));
    on(1, "umount /etc/xen/scripts/vif-bridge", 30);
    let e = failed.expect_err("a migration whose destination cannot build the domain fails");
    println!("refused as it should be: a migration the destination cannot complete: {e}");
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(s2)), "the VM stays on server 2");
    let left = on(1, "xl list | tail -n +2 | grep -v '^Domain-0' || true", 30);
    assert!(left.trim().is_empty(), "server 1 keeps no domain: {left}");
    let before = alive(&mgr, vm).unwrap().0;
    wait_for("the guest's heartbeat going on on server 2 after the failed migration", 120, || {
        alive(&mgr, vm).is_some_and(|(n, net)| n > before && net)
    });
    ok("acknowledge the failure", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm.0)), 30);
    for s in [s1, s2] {
        ok("acknowledge the failure", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Server, s.0)), 30);
    }

    // A cold move, chosen explicitly: saved paused on server 2 straight into the stream, restored
    // and run on server 1; the same guest runs on (its heartbeat continues), and only then is
    // server 2's paused copy destroyed: server 2 has no domain of it left.
    let before_cold = alive(&mgr, vm).unwrap().0;
    let cold = ovm_core::manager::MigrateOptions { mode: MigrationMode::Cold };
    let (_, cold_time) = ok("cold-move the VM to server 1", mgr.migrate_vm_with(vm, s1, cold), 900);
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(s1)));
    wait_for("the guest's heartbeat on server 1 after the cold move, continuing", 120, || {
        alive(&mgr, vm).is_some_and(|(n, net)| n > before_cold && net)
    });
    let domains = on(2, "xl list", 30);
    assert!(!domains.contains("migrating-guest"), "server 2 still has a domain of the VM:\n{domains}");
    println!("COLD MOVE s2->s1 {:.1} s", cold_time.as_secs_f64());

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
    ok("maintenance mode off", mgr.set_maintenance_mode(s1, false), 60);

    // The same evacuation one migration at a time, back from server 2 to server 1: the peer of the
    // parallel evacuation's figure, measured when figures are asked for (`make lab-bench`; it adds
    // two sequential migrations, about three minutes, to the lab).
    if std::env::var_os("OVM_LAB_FIGURES").is_some() {
        let limit = mgr.migration_limit();
        ok("one migration at a time per server", mgr.set_migration_limit(1), 30);
        let counts = [alive(&mgr, vm).unwrap().0, alive(&mgr, vm2).unwrap().0];
        let (_, one_by_one) = ok(
            "maintenance mode on server 2 (evacuation, one at a time)",
            mgr.set_maintenance_mode(s2, true),
            1200,
        );
        for (v, before) in [vm, vm2].into_iter().zip(counts) {
            let r = mgr.vm(v).unwrap();
            assert_eq!(
                (r.power_state, r.server),
                (PowerState::Running, Some(s1)),
                "{} was evacuated",
                r.name
            );
            wait_for(&format!("{}'s heartbeat on server 1", r.name), 120, || {
                alive(&mgr, v).is_some_and(|(n, net)| n > before && net)
            });
        }
        ok("maintenance mode off", mgr.set_maintenance_mode(s2, false), 60);
        ok("the migration limit back", mgr.set_migration_limit(limit), 30);
        println!(
            "EVACUATION of 2 VMs: in parallel {:.1} s, one at a time {:.1} s (ratio {:.2})",
            evacuated.as_secs_f64(),
            one_by_one.as_secs_f64(),
            one_by_one.as_secs_f64() / evacuated.as_secs_f64()
        );
    } else {
        println!("EVACUATION of 2 VMs in parallel {:.1} s", evacuated.as_secs_f64());
    }
    for v in [vm, vm2] {
        ok("kill a VM", mgr.kill_vm(v), 120);
        ok("delete a VM", mgr.delete_vm(v), 60);
    }

    // The peer, measured when figures are asked for (`make lab-bench`; it adds about three
    // minutes): the same guest (kernel, memory, NIC) started with xl on server 1 and live-migrated
    // with plain `xl migrate` over an unencrypted TCP pipe (busybox nc) to server 2, with no
    // manager and no agent.
    if std::env::var_os("OVM_LAB_FIGURES").is_none() {
        println!("MIGRATION ovm s1->s2 {:.1} s (ping gap {ovm_gap:.1} s)", there.as_secs_f64());
    } else {
        on(1, "/mnt/host/bin/migrate-peer.sh create", 400);
        on(2, "/mnt/host/bin/migrate-peer.sh receive", 30);
        start_ping("10.77.0.51", "/tmp/ping-peer.log");
        let out = on(1, "/mnt/host/bin/migrate-peer.sh send 10.77.0.2", 900);
        let peer_gap = ping_gap("/tmp/ping-peer.log");
        let peer: f64 =
            out.lines().last().and_then(|w| w.trim().parse().ok()).unwrap_or_else(|| panic!("{out}"));
        on(2, "xl destroy peer-guest", 60);
        println!(
            "MIGRATION ovm s1->s2 {:.1} s (ping gap {ovm_gap:.1} s); plain xl migrate over TCP {peer:.1} s \
             (ping gap {peer_gap:.1} s); ovm/plain {:.2}",
            there.as_secs_f64(),
            there.as_secs_f64() / peer
        );
    }

    // DPM on real Xen, with server power control. Server 2 has a Wake-on-LAN MAC (its LAN
    // NIC), so DPM may power it off and on; server 1 has none and stays on. The pool's policy is
    // DPM with a 90% CPU threshold (each lab server has one CPU, its dom0 busy about 30% of it under
    // emulation): under-used below 45%, consolidated while the pool stays under 70%.
    let lab_script = std::env::var("OVM_XENLAB_LAB").expect("OVM_XENLAB_LAB (set by the lab)");
    let run = std::env::var("OVM_XENLAB_RUN").expect("OVM_XENLAB_RUN (set by the lab)");
    let machine = |k: u32| {
        let out = std::process::Command::new(&lab_script)
            .args(["power", &run, &format!("node{k}"), "state"])
            .output()
            .expect("lab power");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let edit = ServerEdit { wol_mac: Some(Some("52:54:00:0a:00:02".into())), ..ServerEdit::default() };
    ok("server 2's Wake-on-LAN MAC (its LAN NIC)", mgr.edit_server(s2, edit), 30);
    // Discovery took server 1's first port's MAC as its Wake-on-LAN MAC: without one, DPM leaves it on.
    let edit = ServerEdit { wol_mac: Some(None), ..ServerEdit::default() };
    ok("server 1 without a Wake-on-LAN MAC", mgr.edit_server(s1, edit), 30);
    let policy = |p: &mut ServerPool| {
        p.policy.mode = PolicyMode::Dpm;
        p.policy.cpu_threshold_percent = 90;
        p.policy.period_secs = 60;
    };
    ok("the pool's policy: DPM at 90%", mgr.edit_pool(pool, policy), 30);
    let guest = |name: &str, cmdline: &str| {
        let mut spec = VmSpec::new(name, config.clone());
        if let Some(k) = spec.config.pv_kernel.as_mut() {
            k.cmdline = cmdline.into();
        }
        spec.pool = Some(pool);
        VmId(ok("create a VM", mgr.create_vm(spec), 60).0.id)
    };

    // An idle guest on server 2: DPM empties the under-used server (the guest live-migrates to
    // server 1) and powers it off through its agent; the machine stops.
    let idle = guest("idle-guest", "console=hvc0 ovm.ip=10.77.0.53/24 ovm.ping=10.77.0.1");
    ok("start the idle guest on server 2", mgr.start_vm_on(idle, s2), 300);
    wait_for("the idle guest's heartbeat", 300, || alive(&mgr, idle).is_some_and(|(_, net)| net));
    let plan = plan_until(&mgr, pool, "DPM to empty server 2 and power it off", |p| {
        p.powered_off() == vec![s2] && p.migrations().any(|(v, from, to, _)| (v, from, to) == (idle, s2, s1))
    });
    println!("DPM plans: {}", serde_json::to_string(&plan).unwrap());
    let (_, dpm_off) = ok("run the policy (DPM powers server 2 off)", mgr.run_policy(pool), 900);
    wait_for("server 2's machine to stop", 300, || machine(2) == "off");
    assert_eq!(mgr.server(s2).unwrap().power_state, ServerPowerState::Stopped);
    assert_eq!(mgr.vm(idle).unwrap().server, Some(s1), "the idle guest moved to server 1");
    assert_eq!(machine(1), "on");
    ok("kill the idle guest", mgr.kill_vm(idle), 120);
    ok("delete it", mgr.delete_vm(idle), 60);

    // Load returns: two guests, each asking for half a CPU, on server 1 (the only one running)
    // make the pool run hot (over the threshold less the headroom, or over the threshold itself
    // with nowhere to move a VM), so DPM wakes server 2: server 1 sends a
    // Wake-on-LAN magic packet out of the management bridge, the lab's power controller (which
    // watches the switch for magic packets) boots the machine it names, and server 2's agent (its
    // state kept on the server's disk, as a real server's is) answers the manager again.
    let burners: Vec<VmId> = (1..=2)
        .map(|k| {
            let v = guest(
                &format!("burner-{k}"),
                &format!("console=hvc0 ovm.burn=50 ovm.ip=10.77.0.5{}/24 ovm.ping=10.77.0.1", 3 + k),
            );
            ok("start a CPU-burning guest", mgr.start_vm(v), 300);
            assert_eq!(mgr.vm(v).unwrap().server, Some(s1));
            v
        })
        .collect();
    for v in &burners {
        wait_for("the burning guest's heartbeat", 300, || alive(&mgr, *v).is_some_and(|(_, net)| net));
    }
    let plan = plan_until(&mgr, pool, "DPM to power server 2 on", |p| p.powered_on() == vec![s2]);
    println!("DPM plans: {}", serde_json::to_string(&plan).unwrap());
    let (_, dpm_on) = ok("run the policy (DPM wakes server 2)", mgr.run_policy(pool), 1500);
    let log = std::fs::read_to_string(format!("{run}/power.log")).expect("the power controller's log");
    assert!(log.contains("wol 52:54:00:0a:00:02: server 2 is off") && log.contains("node2 on"), "{log}");
    assert_eq!(mgr.server(s2).unwrap().power_state, ServerPowerState::Running);

    // DRS: server 1 is still over its threshold (its two guests ask for a whole CPU) and server 2
    // is idle; one burning guest live-migrates to server 2 and runs on there. The pool's policy
    // becomes DRS at 80%, which leaves a wider margin under a saturated CPU than DPM's 90%.
    let drs_policy = |p: &mut ServerPool| {
        p.policy.mode = PolicyMode::Drs;
        p.policy.cpu_threshold_percent = 80;
    };
    ok("the pool's policy: DRS at 80%", mgr.edit_pool(pool, drs_policy), 30);
    let counts: Vec<u64> = burners.iter().map(|v| alive(&mgr, *v).unwrap().0).collect();
    let plan = plan_until(&mgr, pool, "DRS to move a burning guest to server 2", |p| {
        p.migrations().any(|(v, from, to, r)| {
            burners.contains(&v) && (from, to) == (s1, s2) && matches!(r, Reason::CpuOverThreshold { .. })
        })
    });
    println!("DRS plans: {}", serde_json::to_string(&plan).unwrap());
    let (_, drs) = ok("run the policy (DRS relieves server 1)", mgr.run_policy(pool), 900);
    let moved: Vec<VmId> =
        burners.iter().copied().filter(|v| mgr.vm(*v).unwrap().server == Some(s2)).collect();
    assert_eq!(moved.len(), 1, "one burning guest moved to server 2");
    for (v, before) in burners.iter().zip(counts) {
        wait_for("the burning guests' heartbeats, continuing", 120, || {
            alive(&mgr, *v).is_some_and(|(n, net)| n > before && net)
        });
    }
    let events = mgr.events(&EventFilter::default()).unwrap();
    for kind in ["policy.migrate", "policy.power_off", "policy.power_on"] {
        let e = events.iter().find(|e| e.event_type == kind).unwrap_or_else(|| panic!("no {kind} event"));
        println!("EVENT {kind}: {}", e.summary);
    }
    ok("the pool's policy off", mgr.edit_pool(pool, |p| p.policy.mode = PolicyMode::Off), 30);
    for v in burners {
        ok("kill a VM", mgr.kill_vm(v), 120);
        ok("delete a VM", mgr.delete_vm(v), 60);
    }
    println!(
        "DPM/DRS: consolidated and powered server 2 off in {:.1} s; woke it by Wake-on-LAN in {:.1} s (its agent \
         answering); DRS moved a burning guest to it in {:.1} s",
        dpm_off.as_secs_f64(),
        dpm_on.as_secs_f64(),
        drs.as_secs_f64()
    );
}

/// Sample the servers' loads every 5 s until `pool`'s dry-run plan satisfies `want` (at most 6
/// minutes: the policy averages a 60 s period), and return that plan.
fn plan_until(mgr: &Manager, pool: PoolId, what: &str, want: impl Fn(&Plan) -> bool) -> Plan {
    let deadline = std::time::Instant::now() + Duration::from_secs(360);
    loop {
        mgr.sample_loads().unwrap();
        let plan = mgr.policy_plan(pool).unwrap();
        println!("LOADS {}", loads(mgr));
        if want(&plan) {
            return plan;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "timed out waiting for {what}; last plan {}; loads {}",
                serde_json::to_string(&plan).unwrap(),
                loads(mgr)
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Each server's newest sample: its CPU, and each of its VMs' (percent of one CPU).
fn loads(mgr: &Manager) -> String {
    let name = |v: VmId| mgr.vm(v).map(|v| v.name.clone()).unwrap_or_else(|_| v.to_string());
    mgr.servers()
        .iter()
        .filter_map(|s| {
            let l = mgr.server_load(s.id).ok().flatten()?;
            let vms: Vec<String> =
                l.vms.iter().map(|v| format!("{} {:.0}%", name(v.vm), v.cpu_percent)).collect();
            Some(format!("{}: {:.0}% [{}]", s.name, l.cpu_percent, vms.join(", ")))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
