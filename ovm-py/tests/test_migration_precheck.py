"""Migration pre-checks from Python: typed blockers, the mapped exception, a clean target."""

from __future__ import annotations

import pytest

import ovm
from conftest import WAIT, Lab, result_id


def test_blocker_kinds_are_the_cores() -> None:
    kinds = ovm.migration_blocker_kinds()
    assert kinds[0] == ("SameServer", 1)
    assert ("TargetInMaintenance", 4) in kinds
    assert ("LiveMigrationUnsupported", 16) in kinds
    assert [code for _, code in kinds] == list(range(1, len(kinds) + 1))


def test_every_blocker_at_once_then_a_clean_target(lab: Lab) -> None:
    mgr = lab.mgr
    # A small server of another Xen release, in maintenance, without the repository or the VM network.
    s3 = result_id(mgr.discover_server("sim://xen3?memory_mib=4096&xen=4.16.2", ovm.SIM_PASSWORD))
    mgr.add_server_to_pool(lab.pool, s3).wait(WAIT)
    mgr.set_maintenance_mode(s3, True).wait(WAIT)
    vm = lab.vm("big", memory_mib=8192)
    mgr.start_vm(vm).wait(WAIT)
    here = mgr.vm(vm).server
    other = lab.s2 if here == lab.s1 else lab.s1

    blockers = mgr.migration_blockers(vm, s3)
    assert [b.kind for b in blockers] == [
        "TargetInMaintenance",
        "RepositoryUnavailable",
        "NetworkMissing",
        "InsufficientMemory",
        "XenVersionMismatch",
    ]
    assert all(isinstance(b, ovm.MigrationBlocker) for b in blockers)
    assert blockers[0].code == 4 and blockers[0].object == ovm.ObjectRef("Server", s3)
    assert blockers[1].object == ovm.ObjectRef("Repository", lab.repo)
    assert blockers[2].object == ovm.ObjectRef("Network", lab.net)
    assert blockers[3].detail == "VM big needs 8192 MiB, xen3 has 3072 MiB free for guests"
    assert str(blockers[3]) == blockers[3].detail
    assert "InsufficientMemory" in repr(blockers[3])

    with pytest.raises(ovm.InvalidStateError) as caught:
        mgr.assert_can_migrate(vm, s3)
    err = caught.value
    assert err.kind == "InvalidState" and err.object == ovm.ObjectRef("Vm", vm)
    assert "blocked by 5 reasons" in err.actual
    for b in blockers:
        assert b.detail in str(err)
    with pytest.raises(ovm.InvalidStateError):
        mgr.migrate_vm(vm, s3)
    assert mgr.vm(vm).server == here

    assert mgr.migration_blockers(vm, other) == []
    mgr.assert_can_migrate(vm, other)
    mgr.migrate_vm(vm, other).wait(WAIT)
    assert mgr.vm(vm).server == other


def test_pv_live_migration_without_shadow_paging(lab: Lab) -> None:
    mgr = lab.mgr
    # The biggest server, so a started VM lands there; built without shadow paging.
    s4 = result_id(mgr.discover_server("sim://xen4?memory_mib=65536&caps=pv,hvm,hap", ovm.SIM_PASSWORD))
    mgr.add_server_to_pool(lab.pool, s4).wait(WAIT)
    mgr.present_repository(lab.repo, s4).wait(WAIT)
    [eth1] = [p for p in mgr.records("Port") if isinstance(p, ovm.Port) and p.server == s4 and p.interface == "eth1"]
    mgr.add_network_member(lab.net, "Port", eth1.id).wait(WAIT)
    vm = lab.running_vm("pv")
    assert mgr.vm(vm).server == s4
    [b] = mgr.migration_blockers(vm, lab.s1)
    assert (b.kind, b.object) == ("LiveMigrationUnsupported", ovm.ObjectRef("Server", s4))
    assert "without shadow paging" in b.detail


def test_bad_arguments_are_typed_errors(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.vm("v")
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.migration_blockers(vm, "not-a-uuid")
    with pytest.raises(ovm.NotFoundError):
        mgr.migration_blockers(vm, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(ovm.NotFoundError):
        mgr.assert_can_migrate("00000000-0000-0000-0000-000000000000", lab.s1)
