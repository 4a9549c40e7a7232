"""Several migrations at once (the migration limit, evacuation in parallel, its typed failure) and
the cold move."""

from __future__ import annotations

import pytest

import ovm
from conftest import WAIT, Lab


def vms_on_s1(lab: Lab, n: int) -> list[str]:
    """``n`` running VMs, all on server 1 (server 2 is in maintenance while they start)."""
    lab.mgr.set_maintenance_mode(lab.s2, True).wait(WAIT)
    vms = [lab.running_vm(f"vm{i}") for i in range(n)]
    lab.mgr.set_maintenance_mode(lab.s2, False).wait(WAIT)
    assert all(lab.mgr.vm(v).server == lab.s1 for v in vms)
    return vms


def test_the_migration_limit_is_a_typed_setting(lab: Lab) -> None:
    mgr = lab.mgr
    assert mgr.migration_limit() == 2
    mgr.set_migration_limit(3).wait(WAIT)
    assert mgr.migration_limit() == 3
    for bad in (0, 65):
        with pytest.raises(ovm.InvalidArgumentError):
            mgr.set_migration_limit(bad)
    assert mgr.migration_limit() == 3
    with pytest.raises(OverflowError):
        mgr.set_migration_limit(-1)


def test_evacuation_runs_children_in_parallel_and_reports_the_vms_left_behind(lab: Lab) -> None:
    mgr = lab.mgr
    vms = vms_on_s1(lab, 3)
    # The source fails the first domain it is asked to send; the others move.
    mgr.sim_fail_next("Migrate", 1, host="xen1")
    job = mgr.set_maintenance_mode(lab.s1, True)
    with pytest.raises(ovm.EvacuationFailedError) as ei:
        job.wait(WAIT)
    err = ei.value
    assert err.kind == "EvacuationFailed" and err.code == 20
    assert err.server.id == lab.s1
    [(vm_ref, name, reason)] = err.failed
    assert vm_ref.id in vms and name == mgr.vm(vm_ref.id).name and "injected failure" in reason
    info = job.info()
    assert len(info.children) == 3
    children = [mgr.job(c).info() for c in info.children]
    assert all(c.parent == info.id and c.kind == "MigrateVm" for c in children)
    assert sorted(c.state for c in children) == ["Completed", "Completed", "Failed"]
    assert [mgr.vm(v).server for v in vms].count(lab.s2) == 2
    assert mgr.vm(vm_ref.id).server == lab.s1 and mgr.vm(vm_ref.id).power_state == "Running"
    assert not mgr.server(lab.s1).maintenance_mode


def test_a_cold_move_is_chosen_explicitly(lab: Lab) -> None:
    mgr = lab.mgr
    [vm] = vms_on_s1(lab, 1)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.migrate_vm(vm, lab.s2, mode="warm")  # type: ignore[arg-type]
    assert mgr.vm(vm).server == lab.s1
    info = mgr.migrate_vm(vm, lab.s2, mode="cold").wait(WAIT)
    assert info.kind == "MoveVmCold"
    v = mgr.vm(vm)
    assert v.server == lab.s2 and v.power_state == "Running"
    assert mgr.migrate_vm(vm, lab.s1).wait(WAIT).kind == "MigrateVm"
    assert mgr.vm(vm).server == lab.s1
