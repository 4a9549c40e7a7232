"""Exceptions: one class per error kind, typed fields, and bad inputs that change nothing."""

from __future__ import annotations

import uuid
from typing import Any, Callable

import pytest

import ovm
from conftest import WAIT, Lab

CLASSES = {
    "NotFound": ovm.NotFoundError,
    "InvalidState": ovm.InvalidStateError,
    "OperationInProgress": ovm.OperationInProgressError,
    "InvalidArgument": ovm.InvalidArgumentError,
    "Conflict": ovm.ConflictError,
    "Unsupported": ovm.UnsupportedError,
    "Backend": ovm.BackendError,
    "EventsLost": ovm.EventsLostError,
    "Aborted": ovm.AbortedError,
    "Timeout": ovm.OvmTimeoutError,
    "InsufficientResources": ovm.InsufficientResourcesError,
    "UnacknowledgedEvents": ovm.UnacknowledgedEventsError,
    "Database": ovm.DatabaseError,
    "SchemaTooNew": ovm.SchemaTooNewError,
    "Interrupted": ovm.JobInterruptedError,
    "Closed": ovm.ClosedError,
    "PermissionDenied": ovm.PermissionDeniedError,
    "Internal": ovm.InternalError,
    "DatabaseLocked": ovm.DatabaseLockedError,
    "EvacuationFailed": ovm.EvacuationFailedError,
}


def test_every_kind_has_its_class() -> None:
    kinds = ovm.error_kinds()
    assert [code for _, code in kinds] == list(range(1, len(kinds) + 1))
    assert {name for name, _ in kinds} == set(CLASSES)
    for name, code in kinds:
        cls = CLASSES[name]
        assert issubclass(cls, ovm.OvmError) and issubclass(cls, Exception)
        assert (cls.kind, cls.code) == (name, code)
        assert cls.__module__ == "ovm"
    assert issubclass(ovm.OvmTimeoutError, TimeoutError)
    assert issubclass(ovm.NotFoundError, LookupError)
    assert issubclass(ovm.InvalidArgumentError, ValueError)
    assert issubclass(ovm.PermissionDeniedError, PermissionError)


def snapshot(mgr: ovm.Manager) -> tuple[Any, ...]:
    return (
        [s.to_dict() for s in mgr.servers()],
        [p.to_dict() for p in mgr.pools()],
        [r.to_dict() for r in mgr.repositories()],
        [n.to_dict() for n in mgr.networks()],
        [v.to_dict() for v in mgr.vms()],
        mgr.current_token(),
    )


def test_unknown_ids_raise_not_found_and_change_nothing(lab: Lab) -> None:
    mgr = lab.mgr
    before = snapshot(mgr)
    missing = str(uuid.uuid4())
    lookups: list[Callable[[], object]] = [
        lambda: mgr.vm(missing),
        lambda: mgr.server(missing),
        lambda: mgr.pool(missing),
        lambda: mgr.repository(missing),
        lambda: mgr.network(missing),
        lambda: mgr.template(missing),
        lambda: mgr.virtual_disk(missing),
        lambda: mgr.vm_by_name("nope"),
        lambda: mgr.job(missing),
        lambda: mgr.event(missing),
        lambda: mgr.start_vm(missing),
        lambda: mgr.migrate_vm(missing, lab.s1),
        lambda: mgr.add_server_to_pool(lab.pool, missing),
        lambda: mgr.clone_template(missing, "x"),
    ]
    for call in lookups:
        with pytest.raises(ovm.NotFoundError) as ei:
            call()
        assert ei.value.kind == "NotFound" and ei.value.code == 1 and ei.value.id in (missing, "nope")
    assert snapshot(mgr) == before


def test_malformed_arguments_raise_invalid_argument(lab: Lab) -> None:
    mgr = lab.mgr
    before = snapshot(mgr)
    with pytest.raises(ovm.InvalidArgumentError) as ei:
        mgr.vm("not-a-uuid")
    assert ei.value.field == "id"
    with pytest.raises(ovm.InvalidArgumentError) as ei:
        mgr.start_vm("123")
    assert ei.value.field == "vm"
    with pytest.raises(ovm.InvalidArgumentError) as ei:
        mgr.vms(power_state="Flying")
    assert ei.value.field == "power_state"
    with pytest.raises(ovm.InvalidArgumentError) as ei:
        mgr.create_vm("", ovm.VmConfig())
    assert ei.value.field == "name"
    with pytest.raises(ovm.InvalidArgumentError) as ei:
        mgr.create_vm("v", ovm.VmConfig(memory_mib=1024, max_memory_mib=512))
    assert ei.value.field == "memory_mib" and "exceeds" in ei.value.reason
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_object({"kind": "Vm", "object": {"id": "x"}})
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_object({"kind": "Vm", "object": object()})
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.raise_event(ovm.ObjectRef("Vm", str(uuid.uuid4())), "Loud", "t", "s")
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.VmConfig(domain_type="Kvm")
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.ObjectRef("Spaceship", str(uuid.uuid4()))
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.Manager("mysql://db")
    with pytest.raises(ovm.InvalidArgumentError) as ei:
        ovm.Manager(durability="fast")
    assert ei.value.field == "durability"
    with pytest.raises(ovm.InvalidArgumentError):
        lab.mgr.job(str(uuid.uuid4()) + "x")
    assert snapshot(mgr) == before


def test_wrong_types_raise_type_error(lab: Lab) -> None:
    mgr = lab.mgr
    before = snapshot(mgr)
    bad: list[Callable[[], object]] = [
        lambda: mgr.vm(42),  # type: ignore[arg-type]
        lambda: mgr.start_vm(None),  # type: ignore[arg-type]
        lambda: mgr.create_vm("v", {"memory_mib": 512}),  # type: ignore[arg-type]
        lambda: mgr.create_virtual_disk(lab.repo, "d", "big"),  # type: ignore[arg-type]
        lambda: mgr.create_virtual_disk(lab.repo, "d", -1),
        lambda: ovm.VmConfig(vcpus="two"),  # type: ignore[arg-type]
        lambda: ovm.VmConfig(vnics=["00:16:3e:00:00:01"]),  # type: ignore[list-item]
        lambda: mgr.raise_event("Vm", "Info", "t", "s"),  # type: ignore[arg-type]
    ]
    for call in bad:
        with pytest.raises((TypeError, OverflowError)):
            call()
    assert snapshot(mgr) == before


def test_conflicts_and_states(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.vm("dup")
    before = snapshot(mgr)
    with pytest.raises(ovm.ConflictError) as ce:
        mgr.create_vm("dup", ovm.VmConfig(), pool=lab.pool).wait(WAIT)
    assert ce.value.reason
    with pytest.raises(ovm.InvalidStateError) as se:
        mgr.stop_vm(vm)
    assert se.value.actual == "Stopped" and se.value.object == ovm.ObjectRef("Vm", vm)
    with pytest.raises(ovm.InsufficientResourcesError) as ie:
        big = mgr.create_vm("big", ovm.VmConfig(memory_mib=1 << 20), pool=lab.pool).wait(WAIT).result
        assert big is not None
        mgr.start_vm(big.id).wait(WAIT)
    assert ie.value.resource and ie.value.needed > ie.value.available
    big_vm = mgr.vm_by_name("big")
    assert big_vm.power_state == "Stopped"
    with pytest.raises(ovm.UnacknowledgedEventsError):
        mgr.delete_vm(big_vm.id)
    mgr.acknowledge_all(big_vm.ref).wait(WAIT)
    mgr.delete_vm(big_vm.id).wait(WAIT)
    assert snapshot(mgr)[:4] == before[:4]
    assert [v.name for v in mgr.vms()] == ["dup"]


def test_closed_manager_raises_closed_and_stores_nothing(tmp_path: Any) -> None:
    db = tmp_path / "m.db"
    m = ovm.Manager(db, recurring_jobs=False)
    m.discover_server("sim://c1", ovm.SIM_PASSWORD).wait(WAIT)
    m.close()
    assert m.closed and "closed=True" in repr(m)
    calls: list[Callable[[], object]] = [
        lambda: m.servers(),
        lambda: m.vms(),
        lambda: m.discover_server("sim://c2", ovm.SIM_PASSWORD),
        lambda: m.create_pool("p"),
        lambda: m.subscribe(),
        lambda: m.current_token(),
        lambda: m.events(),
    ]
    for call in calls:
        with pytest.raises(ovm.ClosedError) as ei:
            call()
        assert ei.value.code == 16
    with ovm.Manager(db, recurring_jobs=False) as again:
        assert [s.name for s in again.servers()] == ["c1"]
        assert again.pools() == []


def test_no_export_shadows_a_builtin() -> None:
    import builtins

    shadowing = [name for name in ovm.__all__ if hasattr(builtins, name) and not name.startswith("__")]
    assert shadowing == []
    assert ovm.JobInterruptedError.__name__ == "JobInterruptedError"
    assert ovm.JobInterruptedError is not InterruptedError


def test_object_kind_codes_are_the_c_enum() -> None:
    import re
    from pathlib import Path

    header = (Path(__file__).resolve().parents[2] / "include" / "ovm.h").read_text()
    body = header[header.index("enum ovm_object_kind") :]
    body = body[: body.index("};")]
    c = [(name, int(value)) for name, value in re.findall(r"OVM_OBJECT_(\w+) = (\d+)", body)]
    py = [(re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper(), code) for name, code in ovm.object_kinds()]
    assert py == c
    assert dict(ovm.object_kinds())["Vm"] == 16
