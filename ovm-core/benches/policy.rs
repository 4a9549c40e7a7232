//! Policy benchmarks: building the load snapshot and one DRS+DPM plan for 1,000 servers × 20,000
//! VMs, against the naive peer planner in the same run (printed as a ratio), and a simulated day at
//! one-minute ticks under DPM against the same day with no policy.

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use ovm_core::model::{PolicyMode, PoolId, ServerPool};
use ovm_core::policy::balance::{plan, plan_drs, plan_drs_naive, PolicyParams};
use ovm_core::policy::load::LoadSnapshot;
use ovm_core::policy::simulate::{SimConfig, Simulation};

const SERVERS: usize = 1_000;
const SEED: u64 = 2026;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of `n` runs of `f`.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect();
    t.sort();
    t[n / 2]
}

/// The simulated world with no policy at the busiest hour (15:00): VMs where random placement put
/// them, bursts and failures of the morning included.
fn busy_world() -> Simulation {
    let mut sim = Simulation::new(SimConfig::day(SEED, SERVERS, PolicyMode::Off));
    for _ in 0..15 * 60 {
        sim.step();
    }
    sim
}

fn one_plan(c: &mut Criterion) {
    let sim = busy_world();
    let inputs = sim.inputs();
    let inv = sim.inventory();
    // Plan for the pools as if DPM were on.
    let pools: Vec<(PoolId, PolicyParams)> = sim
        .pools()
        .iter()
        .map(|p| {
            let mut params = PolicyParams::of_pool(inv.get::<ServerPool>(*p).unwrap());
            params.mode = PolicyMode::Dpm;
            (*p, params)
        })
        .collect();
    let snap = LoadSnapshot::build_with(inv, &pools, &inputs).unwrap();
    let (servers, vms) = snap.size();
    let build = median(11, || drop(LoadSnapshot::build_with(inv, &pools, &inputs).unwrap()));
    let full = median(11, || drop(plan(&snap)));
    let drs = median(11, || drop(plan_drs(&snap)));
    let naive = median(3, || drop(plan_drs_naive(&snap)));
    let p = plan(&snap);
    let pn = plan_drs_naive(&snap);
    println!(
        "snapshot of {servers} servers x {vms} VMs: {:.2} ms (inputs: {} server and {} VM samples)",
        ms(build),
        inputs.servers.len(),
        inputs.vms.len()
    );
    println!(
        "one DRS+DPM plan: {:.2} ms (target < 50 ms): {} migrations, {} power-offs, {} power-ons, {} unrelieved, {} draining",
        ms(full),
        p.migrations().count(),
        p.powered_off().len(),
        p.powered_on().len(),
        p.unrelieved.len(),
        p.draining.len()
    );
    println!(
        "DRS alone: {:.2} ms; naive peer DRS (every server x every candidate VM per step): {:.1} ms, {} migrations; \
         naive / indexed = {:.0}x",
        ms(drs),
        ms(naive),
        pn.migrations().count(),
        naive.as_secs_f64() / drs.as_secs_f64()
    );
    let mut g = c.benchmark_group("policy_1000_servers_20000_vms");
    g.sample_size(20);
    g.bench_function("snapshot", |b| b.iter(|| LoadSnapshot::build_with(inv, &pools, &inputs).unwrap()));
    g.bench_function("plan_drs_dpm", |b| b.iter(|| plan(&snap)));
    g.finish();
}

fn simulated_day() {
    let t0 = Instant::now();
    let off = Simulation::new(SimConfig::day(SEED, SERVERS, PolicyMode::Off)).run();
    let t_off = t0.elapsed();
    let t0 = Instant::now();
    let dpm = Simulation::new(SimConfig::day(SEED, SERVERS, PolicyMode::Dpm)).run();
    let t_dpm = t0.elapsed();
    println!(
        "simulated day, {SERVERS} servers x {} VMs, 1-minute ticks: DPM {:.1} s (target < 60 s), no policy {:.1} s \
         (the policy's share: {:.1} s, {:.1} ms a tick)",
        SERVERS * 20,
        t_dpm.as_secs_f64(),
        t_off.as_secs_f64(),
        (t_dpm.saturating_sub(t_off)).as_secs_f64(),
        ms(t_dpm.saturating_sub(t_off)) / f64::from(dpm.ticks)
    );
    for (label, r) in [("no policy", &off), ("DPM", &dpm)] {
        println!(
            "  {label:>9}: {:.0} server-hours on, {:.0} server-minutes over threshold, {} migrations, {} power-offs, \
             {} power-ons, {} failures, {} VMs not restarted, {:.0} VM-minutes down, {} refused actions",
            r.server_hours_on,
            r.server_minutes_over,
            r.migrations,
            r.power_offs,
            r.power_ons,
            r.failures,
            r.vms_not_restarted,
            r.vm_minutes_down,
            r.refused_actions
        );
    }
    println!(
        "  DPM / no policy: server-hours {:.2}, server-minutes over threshold {:.2}",
        dpm.server_hours_on / off.server_hours_on,
        dpm.server_minutes_over / off.server_minutes_over.max(1.0)
    );
}

criterion_group!(benches, one_plan);

fn main() {
    simulated_day();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
