//! DRS and DPM at work on simulated servers: loads sampled, a dry-run plan with its reasons, the
//! plan carried out (live migrations, a server powered off and woken again), events for each
//! action, and no second move while the first one's hold lasts.

mod common;
use common::*;

use std::time::Duration;

use ovm_core::model::*;
use ovm_core::policy::balance::{Action, Reason};
use ovm_core::store::EventFilter;

fn settings() -> LoadSampling {
    LoadSampling {
        interval: Duration::from_secs(1),
        raw_retention: Duration::from_secs(600),
        coarse_interval: Duration::from_secs(10),
        coarse_retention: Duration::from_secs(600),
    }
}

fn event_count(lab: &Lab, kind: &str) -> usize {
    lab.mgr.events(&EventFilter::default()).unwrap().iter().filter(|e| e.event_type == kind).count()
}

/// Three VMs on one server (the other in maintenance mode while they start).
fn three_on_one(lab: &Lab) -> (ServerId, ServerId, Vec<VmId>) {
    let mgr = &lab.mgr;
    ok(mgr.set_maintenance_mode(lab.s2, true));
    let vms: Vec<VmId> = ["a", "b", "c"].iter().map(|n| lab.running_vm(n)).collect();
    ok(mgr.set_maintenance_mode(lab.s2, false));
    assert!(vms.iter().all(|v| mgr.vm(*v).unwrap().server == Some(lab.s1)));
    (lab.s1, lab.s2, vms)
}

fn set_policy(lab: &Lab, mode: PolicyMode, threshold: u8) {
    ok(lab.mgr.edit_pool(lab.pool, |p| {
        p.policy.mode = mode;
        p.policy.cpu_threshold_percent = threshold;
        p.policy.period_secs = 60;
    }));
}

#[test]
fn drs_moves_a_vm_off_a_server_over_its_cpu_threshold_and_not_back() {
    let lab = lab();
    let (mgr, sim) = (&lab.mgr, lab.mgr.sim());
    mgr.set_load_sampling(settings()).unwrap();
    let (hot, idle, vms) = three_on_one(&lab);
    for v in &vms {
        sim.set_domain_load(*v, 100.0);
    }
    // Policy Off: nothing planned.
    mgr.sample_loads().unwrap();
    assert!(mgr.policy_plan(lab.pool).unwrap().actions.is_empty());

    // DRS at 30%: three busy vCPUs on 8 CPUs are 37.5%; one VM moves to the idle server.
    set_policy(&lab, PolicyMode::Drs, 30);
    mgr.sample_loads().unwrap();
    let plan = mgr.policy_plan(lab.pool).unwrap();
    assert_eq!(plan.actions.len(), 1, "{plan:?}");
    let Action::Migrate { vm, from, to, reason } = &plan.actions[0] else { panic!("{plan:?}") };
    assert_eq!((*from, *to), (hot, idle));
    assert!(vms.contains(vm));
    assert!(
        matches!(reason, Reason::CpuOverThreshold { percent, .. } if (*percent - 37.5).abs() < 1.0),
        "{reason:?}"
    );
    // A dry run changes nothing.
    assert_eq!(mgr.vm(*vm).unwrap().server, Some(hot));

    ok(mgr.run_policy(lab.pool));
    assert_eq!(mgr.vm(*vm).unwrap().server, Some(idle));
    assert_eq!(event_count(&lab, "policy.migrate"), 1);

    // Loads measured again (only what was measured after the move counts): both servers are
    // under the threshold.
    std::thread::sleep(Duration::from_millis(5));
    mgr.sample_loads().unwrap();
    let plan = mgr.policy_plan(lab.pool).unwrap();
    assert!(plan.actions.is_empty(), "{plan:?}");
    // The VM that moved is held where it went: with a threshold of 10% its new server (12.5%) is
    // over, the VM is the only one there, and the plan leaves the server unrelieved rather than
    // move it again.
    set_policy(&lab, PolicyMode::Drs, 10);
    std::thread::sleep(Duration::from_millis(5));
    mgr.sample_loads().unwrap();
    let plan = mgr.policy_plan(lab.pool).unwrap();
    assert!(plan.migrations().all(|(v, ..)| v != *vm), "{plan:?}");
    let u = plan.unrelieved.iter().find(|u| u.server == idle).unwrap_or_else(|| panic!("{plan:?}"));
    assert_eq!(u.blocked, ovm_core::policy::balance::Blocked::NothingMovable, "{plan:?}");
}

#[test]
fn dpm_empties_an_idle_server_powers_it_off_and_wakes_it_when_load_returns() {
    let lab = lab();
    let (mgr, sim) = (&lab.mgr, lab.mgr.sim());
    mgr.set_load_sampling(settings()).unwrap();
    let (s1, s2) = (lab.s1, lab.s2);
    // One idle VM on each server.
    let a = lab.running_vm("a");
    let b = lab.running_vm("b");
    for (v, s) in [(a, s1), (b, s2)] {
        if mgr.vm(v).unwrap().server != Some(s) {
            ok(mgr.migrate_vm(v, s));
        }
    }
    assert_eq!(mgr.vm(a).unwrap().server, Some(s1));
    assert_eq!(mgr.vm(b).unwrap().server, Some(s2));
    for v in [a, b] {
        sim.set_domain_load(v, 5.0);
    }
    set_policy(&lab, PolicyMode::Dpm, 50);
    mgr.sample_loads().unwrap();
    let plan = mgr.policy_plan(lab.pool).unwrap();
    let off = plan.powered_off();
    assert_eq!(off.len(), 1, "{plan:?}");
    let (gone, kept) = if off[0] == s1 { (s1, s2) } else { (s2, s1) };
    assert!(plan
        .migrations()
        .all(|(_, from, to, r)| from == gone && to == kept && matches!(r, Reason::Consolidate { .. })));

    ok(mgr.run_policy(lab.pool));
    assert_eq!(mgr.server(gone).unwrap().power_state, ServerPowerState::Stopped);
    assert!(!sim.is_powered_on(&lab.server_name(gone)));
    for v in [a, b] {
        assert_eq!(mgr.vm(v).unwrap().server, Some(kept));
    }
    assert_eq!(event_count(&lab, "policy.power_off"), 1);

    // Load returns: both VMs busy on the one server left; more than half of it is busy with a
    // third VM; DPM powers the other server on by Wake-on-LAN.
    let c = lab.running_vm("c");
    let d = lab.running_vm("d");
    let e = lab.running_vm("e");
    for v in [a, b, c, d, e] {
        sim.set_domain_load(v, 100.0);
    }
    mgr.sample_loads().unwrap();
    let plan = mgr.policy_plan(lab.pool).unwrap();
    assert_eq!(plan.powered_on(), vec![gone], "{plan:?}");
    ok(mgr.run_policy(lab.pool));
    assert_eq!(mgr.server(gone).unwrap().power_state, ServerPowerState::Running);
    assert!(sim.is_up(&lab.server_name(gone)));
    assert_eq!(event_count(&lab, "policy.power_on"), 1);
    let sent = sim.magic_packets();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sender, lab.server_name(kept));
}

#[test]
fn servers_without_measured_load_are_left_alone() {
    let lab = lab();
    let (mgr, sim) = (&lab.mgr, lab.mgr.sim());
    let (_, _, vms) = three_on_one(&lab);
    for v in &vms {
        sim.set_domain_load(*v, 100.0);
    }
    set_policy(&lab, PolicyMode::Dpm, 30);
    // Nothing sampled yet: no plan (an unmeasured server is not taken for an idle one).
    let plan = mgr.policy_plan(lab.pool).unwrap();
    assert!(plan.actions.is_empty(), "{plan:?}");
}
