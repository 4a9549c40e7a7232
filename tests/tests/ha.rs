//! High availability on sim servers: a lost server's HA-enabled VMs restarted on the survivors in
//! start-priority order by the plan, its other VMs stopped with events, a VM that fits nowhere
//! reported with its reasons, anti-affinity kept, and the failures-to-tolerate planner.

mod common;
use common::*;

use std::time::{Duration, Instant};

use ovm_core::driver::sim::DEFAULT_PASSWORD;
use ovm_core::model::*;
use ovm_core::store::{EventFilter, JobFilter};
use ovm_core::ErrorKind;

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A lab of three servers of 8 GiB in one pool, all with the repository and the VM network.
fn lab3() -> (Lab, ServerId) {
    let lab = lab_with(ovm_core::Manager::builder().recurring_jobs(false).open().expect("open"), 8192);
    let s3 = ServerId(result_id(lab.mgr.discover_server("sim://xen3?memory_mib=8192", DEFAULT_PASSWORD)));
    ok(lab.mgr.add_server_to_pool(lab.pool, s3));
    ok(lab.mgr.present_repository(lab.repo, s3));
    let eth1 = lab.mgr.list::<Port>(|p| p.server == s3 && p.interface == "eth1")[0].id;
    ok(lab.mgr.add_network_member(lab.net, NetworkMember::Port(eth1)));
    (lab, s3)
}

/// Lose xen1 and wait until the manager has seen it.
fn lose_xen1(lab: &Lab) {
    lab.mgr.sim().lose_host("xen1").unwrap();
    wait_until("xen1 to be seen lost", || {
        lab.mgr.server(lab.s1).unwrap().power_state == ServerPowerState::Unreachable
    });
}

/// Whether `vm` runs on a server other than xen1.
fn moved(lab: &Lab, vm: VmId) -> bool {
    let v = lab.mgr.vm(vm).unwrap();
    v.power_state == PowerState::Running && v.server != Some(lab.s1)
}

/// A VM of `memory_mib`, HA-enabled with `priority` (or not, with `None`), running on `on`.
fn vm_on(lab: &Lab, name: &str, memory_mib: u64, priority: Option<u8>, on: ServerId) -> VmId {
    let vm = lab.vm(name);
    ok(lab.mgr.edit_vm(vm, |v| {
        v.config.memory_mib = memory_mib;
        v.config.max_memory_mib = memory_mib;
        v.config.high_availability = priority.is_some();
        v.config.start_priority = priority.unwrap_or(50);
    }));
    ok(lab.mgr.start_vm_on(vm, on));
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(on));
    vm
}

fn guest_memory(lab: &Lab, s: ServerId) -> u64 {
    lab.mgr.server(s).unwrap().guest_memory_mib()
}

/// The events of `type_` on `vm`, oldest first.
fn events_of(lab: &Lab, vm: VmId, type_: &str) -> Vec<Event> {
    let mut e = lab.mgr.events(&EventFilter { object: Some(vm.0), ..Default::default() }).unwrap();
    e.retain(|e| e.event_type == type_);
    e.reverse();
    e
}

/// The restart job HA ran for `vm` (the last start job on it).
fn restart_job(lab: &Lab, vm: VmId) -> Job {
    let jobs = lab.mgr.jobs(&JobFilter { object: Some(vm.0), ..Default::default() }).unwrap();
    jobs.into_iter().filter(|j| j.kind == "StartVm").max_by_key(|j| j.created).unwrap()
}

#[test]
fn a_lost_servers_ha_vms_restart_by_priority_and_the_rest_is_reported() {
    let (lab, s3) = lab3();
    let (s1, s2) = (lab.s1, lab.s2);
    let g = guest_memory(&lab, s1);
    assert!(g >= 6144, "{g} MiB for guests");
    // The survivors keep 2 GiB free each.
    vm_on(&lab, "fill2", g - 2048, None, s2);
    vm_on(&lab, "fill3", g - 2048, None, s3);
    let lo = vm_on(&lab, "lo", 1024, Some(10), s1);
    let hi = vm_on(&lab, "hi", 1024, Some(90), s1);
    let mid = vm_on(&lab, "mid", 1024, Some(50), s1);
    let big = vm_on(&lab, "big", 1536, Some(5), s1);
    let plain = vm_on(&lab, "plain", 512, None, s1);
    // The plan for a loss of xen1 says so beforehand.
    let plan = lab.mgr.ha_plan_for(lab.pool, &[s1]).unwrap();
    let order: Vec<&str> = plan.decisions.iter().map(|d| d.vm_name.as_str()).collect();
    assert_eq!(order, ["hi", "mid", "lo", "big", "plain"]);

    lose_xen1(&lab);
    wait_until("the HA VMs to run again", || [hi, mid, lo].iter().all(|v| moved(&lab, *v)));
    // Best fit in priority order: hi on xen2 (a tie, the first server), mid on xen3, lo on xen2.
    let on = |v: VmId| lab.mgr.vm(v).unwrap().server;
    assert_eq!((on(hi), on(mid), on(lo)), (Some(s2), Some(s3), Some(s2)));
    assert_eq!(lab.mgr.vm(big).unwrap().power_state, PowerState::Stopped);
    assert_eq!(lab.mgr.vm(plain).unwrap().power_state, PowerState::Stopped);
    // One event per decision, with the target or the reasons.
    for (v, target) in [(hi, "xen2"), (mid, "xen3"), (lo, "xen2")] {
        let e = events_of(&lab, v, "ha.restart");
        assert_eq!(e.len(), 1);
        assert!(e[0].summary.contains(target), "{}", e[0].summary);
        assert_eq!(e[0].severity, Severity::Info);
    }
    let nr = events_of(&lab, big, "ha.not_restarted");
    assert_eq!(nr.len(), 1);
    assert_eq!(nr[0].severity, Severity::Warning);
    assert!(nr[0].summary.contains("NoCapacity"), "{}", nr[0].summary);
    assert!(nr[0].summary.contains("xen2 has 0 MiB free"), "{}", nr[0].summary);
    let st = events_of(&lab, plain, "vm.stopped");
    assert_eq!(st.len(), 1);
    assert!(st[0].summary.contains("not HA-enabled"), "{}", st[0].summary);
    assert!(events_of(&lab, plain, "ha.restart").is_empty());
    // The restarts ran one after another, highest priority first.
    let (jh, jm, jl) = (restart_job(&lab, hi), restart_job(&lab, mid), restart_job(&lab, lo));
    assert!(jh.summary.ends_with("on xen2") && jm.summary.ends_with("on xen3"), "{}", jh.summary);
    assert!(jh.finished.unwrap() <= jm.started.unwrap() && jm.finished.unwrap() <= jl.started.unwrap());
}

#[test]
fn anti_affinity_is_kept_when_restarting() {
    let (lab, s3) = lab3();
    let (s1, s2) = (lab.s1, lab.s2);
    let a = vm_on(&lab, "a", 512, Some(60), s1);
    let b = vm_on(&lab, "b", 512, Some(50), s1);
    let c = vm_on(&lab, "c", 512, None, s2);
    // a and c may not share a server, nor b and c: c runs on xen2.
    ok(lab.mgr.create_anti_affinity_group(lab.pool, "apart", vec![a, c]));
    let plan = lab.mgr.ha_plan_for(lab.pool, &[s1]).unwrap();
    let d = plan.decisions.iter().find(|d| d.vm == a).unwrap();
    assert_eq!(d.target, Some(s3));
    lose_xen1(&lab);
    wait_until("a and b to run again", || [a, b].iter().all(|v| moved(&lab, *v)));
    assert_eq!(lab.mgr.vm(a).unwrap().server, Some(s3), "not next to c");
    assert_eq!(lab.mgr.vm(c).unwrap().server, Some(s2));
    assert!(lab.mgr.vm(b).unwrap().server != Some(s1));
}

#[test]
fn a_vm_with_every_survivor_refusing_it_by_anti_affinity_is_not_restarted() {
    let (lab, s3) = lab3();
    let (s1, s2) = (lab.s1, lab.s2);
    let a = vm_on(&lab, "a", 512, Some(50), s1);
    let b = vm_on(&lab, "b", 512, None, s2);
    let c = vm_on(&lab, "c", 512, None, s3);
    ok(lab.mgr.create_anti_affinity_group(lab.pool, "apart", vec![a, b, c]));
    let plan = lab.mgr.ha_plan_for(lab.pool, &[s1]).unwrap();
    assert_eq!(plan.decisions[0].reason_kinds(), vec![HaReasonKind::AntiAffinity]);
    lose_xen1(&lab);
    wait_until("the event", || !events_of(&lab, a, "ha.not_restarted").is_empty());
    let e = &events_of(&lab, a, "ha.not_restarted")[0];
    assert!(e.summary.contains("AntiAffinity"), "{}", e.summary);
    assert_eq!(lab.mgr.vm(a).unwrap().power_state, PowerState::Stopped);
}

#[test]
fn the_planner_says_three_servers_absorb_one_failure_not_two() {
    let (lab, s3) = lab3();
    let g = guest_memory(&lab, lab.s1);
    // Each server runs an HA VM of 45% of a server: two servers take one failed server's, one
    // survivor cannot take two.
    let each = g * 45 / 100;
    for (i, s) in [lab.s1, lab.s2, s3].into_iter().enumerate() {
        vm_on(&lab, &format!("v{i}"), each, Some(50), s);
    }
    let one = lab.mgr.ha_plan(lab.pool, 1).unwrap();
    assert!(one.tolerated && one.exhaustive, "{one:?}");
    assert_eq!((one.combinations, one.servers_considered), (3, 3));
    let two = lab.mgr.ha_plan(lab.pool, 2).unwrap();
    assert!(!two.tolerated);
    let lost = two.not_restarted();
    assert_eq!(lost.len(), 1, "the survivor takes one of the two");
    assert!(lost[0].has_reason(HaReasonKind::NoCapacity));
    assert_eq!(lab.mgr.max_failures_tolerated(lab.pool).unwrap(), 1);
    // Typed errors.
    assert_eq!(lab.mgr.ha_plan(PoolId::new(), 1).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(lab.mgr.max_failures_tolerated(PoolId::new()).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(lab.mgr.ha_plan(lab.pool, 4).unwrap_err().kind(), ErrorKind::InvalidArgument);
    // A lost server is not counted among those that can fail.
    lab.mgr.sim().lose_host("xen3").unwrap();
    wait_until("xen3 to be seen lost", || {
        lab.mgr.server(s3).unwrap().power_state == ServerPowerState::Unreachable
    });
    assert_eq!(lab.mgr.ha_plan(lab.pool, 1).unwrap().servers_considered, 2);
}

#[test]
fn start_vm_on_starts_on_that_server_or_says_why_not() {
    let (lab, s3) = lab3();
    let a = vm_on(&lab, "a", 512, None, s3);
    assert_eq!(lab.mgr.vm(a).unwrap().server, Some(s3));
    let big = lab.vm("big");
    let g = guest_memory(&lab, s3);
    ok(lab.mgr.edit_vm(big, |v| {
        v.config.memory_mib = g;
        v.config.max_memory_mib = g;
    }));
    let e = lab.mgr.start_vm_on(big, s3).unwrap().wait(WAIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InsufficientResources, "{e}");
    let outside = ServerId(result_id(lab.mgr.discover_server("sim://lone", DEFAULT_PASSWORD)));
    assert_eq!(lab.mgr.start_vm_on(big, outside).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(lab.mgr.start_vm_on(big, ServerId::new()).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn the_failures_to_tolerate_setting_is_checked_by_the_planner_and_kept_by_dpm() {
    let (lab, s3) = lab3();
    let (mgr, sim) = (&lab.mgr, lab.mgr.sim());
    // One HA-enabled VM of 3 GiB on each server: the pool absorbs one failure, not two.
    let vms = [
        vm_on(&lab, "a", 3072, Some(50), lab.s1),
        vm_on(&lab, "b", 3072, Some(50), lab.s2),
        vm_on(&lab, "c", 3072, Some(50), s3),
    ];
    assert_eq!(mgr.max_failures_tolerated(lab.pool).unwrap(), 1);
    assert_eq!(mgr.pool(lab.pool).unwrap().ha_failures_to_tolerate, 1, "one failure unless set");
    let e = mgr.set_ha_failures_to_tolerate(lab.pool, 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("at most 1 simultaneous server failures now, not 2"), "{e}");
    assert_eq!(mgr.pool(lab.pool).unwrap().ha_failures_to_tolerate, 1, "nothing stored");

    // DPM with idle servers: keeping room for one failure, it powers nothing off (two servers
    // could hold the three VMs, but not after losing one of them); tolerating none, it empties one.
    mgr.set_load_sampling(ovm_core::model::LoadSampling {
        interval: Duration::from_secs(1),
        raw_retention: Duration::from_secs(600),
        coarse_interval: Duration::from_secs(10),
        coarse_retention: Duration::from_secs(600),
    })
    .unwrap();
    for v in vms {
        sim.set_domain_load(v, 5.0);
    }
    ok(mgr.edit_pool(lab.pool, |p| {
        p.policy.mode = PolicyMode::Dpm;
        p.policy.cpu_threshold_percent = 60;
        p.policy.period_secs = 60;
    }));
    mgr.sample_loads().unwrap();
    let plan = mgr.policy_plan(lab.pool).unwrap();
    assert!(plan.powered_off().is_empty(), "{plan:?}");
    ok(mgr.set_ha_failures_to_tolerate(lab.pool, 0));
    let plan = mgr.policy_plan(lab.pool).unwrap();
    assert_eq!(plan.powered_off().len(), 1, "{plan:?}");
    // Back to one: allowed, since the pool absorbs one failure.
    ok(mgr.set_ha_failures_to_tolerate(lab.pool, 1));
    assert!(mgr.policy_plan(lab.pool).unwrap().powered_off().is_empty());
}

/// The pool's cluster as its servers report it: master, epoch and heartbeats, through a failover
/// on the sim servers' cluster clock (the election of `ovm_core::policy::election`).
#[test]
fn the_pools_cluster_reads_back_through_a_failover() {
    use ovm_core::driver::sim::SimDriver;
    use ovm_core::driver::Driver;
    use ovm_core::policy::election::ElectionConfig;

    let (lab, _s3) = lab3();
    let world = lab.mgr.sim();
    assert_eq!(lab.mgr.pool_cluster_status(lab.pool).unwrap(), None, "in no cluster yet");
    assert_eq!(lab.mgr.pool_cluster_status(PoolId::new()).unwrap_err().kind(), ErrorKind::NotFound);
    // The servers join the pool's cluster (through the sim driver: the manager does not do it yet).
    world.set_cluster_timing(ElectionConfig::new(30_000, 5_000).unwrap());
    let agents = SimDriver::new(world.clone());
    for host in ["xen1", "xen2", "xen3"] {
        let c = agents.connect(&format!("sim://{host}"), DEFAULT_PASSWORD, lab.mgr.id()).unwrap();
        c.cluster().unwrap().join(&ovm_core::driver::ClusterSpec::named("pool-1", host)).unwrap();
    }
    let s = lab.mgr.pool_cluster_status(lab.pool).unwrap().unwrap();
    assert_eq!((s.members.len(), s.master.as_deref(), s.epoch), (3, Some("xen1"), 1));
    assert!(s.heartbeats.iter().all(|h| h.heartbeat == HeartbeatState::Alive), "{s:?}");
    // xen1 is cut off from the cluster: it fences itself after 30 s, is declared dead at 35 s.
    world.partition_host("xen1").unwrap();
    world.advance_cluster(Duration::from_secs(36));
    let s = lab.mgr.pool_cluster_status(lab.pool).unwrap().unwrap();
    assert_eq!((s.master.as_deref(), s.epoch), (Some("xen2"), 2));
    assert_eq!(s.heartbeats[0].heartbeat, HeartbeatState::Dead);
    assert!(world.cluster_command("xen3", Epoch(1)).is_err(), "the former master's epoch is refused");
}
