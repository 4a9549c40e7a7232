"""DRS from Python: a pool's policy set, a dry-run plan with its reason, the plan carried out."""

from __future__ import annotations

import pytest

import ovm
from conftest import Lab


def test_drs_plans_and_moves_a_vm_off_a_busy_server(lab: Lab) -> None:
    mgr = lab.mgr
    mgr.set_load_sampling(interval=1.0, raw_retention=600.0, coarse_interval=10.0, coarse_retention=600.0)
    mgr.set_maintenance_mode(lab.s2, True).wait(30)
    vms = [lab.running_vm(n) for n in ("a", "b", "c")]
    mgr.set_maintenance_mode(lab.s2, False).wait(30)
    for vm in vms:
        assert mgr.vm(vm).server == lab.s1
        mgr.sim_set_domain_load(vm, 100.0)
    mgr.sample_loads()
    assert mgr.policy_plan(lab.pool) == []

    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_pool_policy(lab.pool, "Sometimes")
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_pool_policy(lab.pool, "Drs", cpu_threshold_percent=30, period_secs=10).wait(30)
    mgr.set_pool_policy(lab.pool, "Drs", cpu_threshold_percent=30, period_secs=60).wait(30)
    pool = mgr.pool(lab.pool)
    assert (pool.policy_mode, pool.cpu_threshold_percent, pool.policy_period_secs) == ("Drs", 30, 60)
    mgr.sample_loads()
    plan = mgr.policy_plan(lab.pool)
    assert len(plan) == 1
    action = plan[0]
    assert isinstance(action, ovm.PolicyAction)
    assert (action.kind, action.server, action.target, action.reason) == (
        "migrate",
        lab.s1,
        lab.s2,
        "cpu_over_threshold",
    )
    assert action.vm in vms and "30% threshold" in action.detail
    mgr.run_policy(lab.pool).wait(30)
    assert mgr.vm(action.vm).server == lab.s2


def test_the_policy_simulator_runs_a_day_from_python() -> None:
    dpm = ovm.simulate_policy_day(seed=7, servers=20, mode="Dpm")
    again = ovm.simulate_policy_day(seed=7, servers=20, mode="Dpm")
    off = ovm.simulate_policy_day(seed=7, servers=20, mode="Off")
    assert isinstance(dpm, ovm.SimulatedDay)
    assert repr(dpm) == repr(again) and dpm.powered_servers == again.powered_servers, "the same seed, the same day"
    assert dpm.ticks == 1440 and len(dpm.powered_servers) == len(dpm.cpu_utilisation_percent) == 1440
    assert all(0.0 <= u <= 100.0 for u in dpm.cpu_utilisation_percent)
    assert off.powered_servers == [20] * 1440 or off.failures > 0
    assert dpm.server_hours_on < off.server_hours_on
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.simulate_policy_day(servers=0)
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.simulate_policy_day(mode="Sometimes")
