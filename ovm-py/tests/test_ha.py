"""HA from Python: the failures-to-tolerate planner, its typed decisions and errors, start_vm_on."""

from __future__ import annotations

import pytest

import ovm
from conftest import WAIT, Lab, port_id, result_id

# Servers of 16 GiB keep 1 GiB for dom0: 15 GiB for guests.
GUEST_MIB = 15360


def third_server(lab: Lab) -> str:
    mgr = lab.mgr
    s3 = result_id(mgr.discover_server("sim://xen3?memory_mib=16384", ovm.SIM_PASSWORD))
    mgr.add_server_to_pool(lab.pool, s3).wait(WAIT)
    mgr.present_repository(lab.repo, s3).wait(WAIT)
    mgr.add_network_member(lab.net, "Port", port_id(mgr, s3, "eth1")).wait(WAIT)
    return s3


def ha_vm(lab: Lab, name: str, memory_mib: int, server: str, priority: int = 50) -> str:
    config = ovm.VmConfig(
        memory_mib=memory_mib, vnics=[ovm.Vnic(network=lab.net)], high_availability=True,
        start_priority=priority,
    )
    vm = result_id(lab.mgr.create_vm(name, config, pool=lab.pool, repository=lab.repo))
    lab.mgr.start_vm_on(vm, server).wait(WAIT)
    assert lab.mgr.vm(vm).server == server
    return vm


def test_reason_kinds_are_the_cores() -> None:
    kinds = ovm.ha_reason_kinds()
    assert kinds[0] == ("NotHaEnabled", 1)
    assert ("NoCapacity", 2) in kinds and ("AntiAffinity", 3) in kinds
    assert [code for _, code in kinds] == list(range(1, len(kinds) + 1))


def test_three_servers_absorb_one_failure_not_two(lab: Lab) -> None:
    mgr = lab.mgr
    s3 = third_server(lab)
    each = GUEST_MIB * 45 // 100
    for i, s in enumerate((lab.s1, lab.s2, s3)):
        ha_vm(lab, f"v{i}", each, s, priority=10 * (i + 1))

    one = mgr.ha_plan(lab.pool, 1)
    assert isinstance(one, ovm.HaTolerance)
    assert one.tolerated and one.exhaustive
    assert (one.failures, one.combinations, one.servers_considered) == (1, 3, 3)
    assert one.memory_bound_ok is None
    assert one.not_restarted == []
    assert len(one.failed) == 1 and all(d.action == "Restart" for d in one.decisions)

    two = mgr.ha_plan(lab.pool, 2)
    assert not two.tolerated
    [lost] = two.not_restarted
    assert isinstance(lost, ovm.HaDecision)
    assert lost.action == "NotRestarted" and lost.target is None and lost.high_availability
    assert lost.reason_kinds == ["NoCapacity"]
    [reason] = lost.reasons
    assert isinstance(reason, ovm.HaReason)
    assert reason.code == 2 and reason.server is not None and reason.server not in two.failed
    assert "MiB free for guests" in reason.detail
    # Decisions come in priority order: the restarted one first.
    assert [d.priority for d in two.decisions] == sorted((d.priority for d in two.decisions), reverse=True)
    d = two.to_dict()
    assert d["tolerated"] is False and d["worst"]["decisions"][1]["action"] == "NotRestarted"
    assert "tolerated=False" in repr(two)

    assert mgr.max_failures_tolerated(lab.pool) == 1
    assert mgr.ha_plan(lab.pool, 0).tolerated

    # DPM keeps room for as many failures as the pool is set to tolerate: at most what it absorbs.
    assert mgr.pool(lab.pool).ha_failures_to_tolerate == 1
    with pytest.raises(ovm.ConflictError, match="at most 1 simultaneous server failures now, not 2"):
        mgr.set_ha_failures_to_tolerate(lab.pool, 2)
    mgr.set_ha_failures_to_tolerate(lab.pool, 0).wait(WAIT)
    assert mgr.pool(lab.pool).ha_failures_to_tolerate == 0


def test_bad_input_is_a_typed_error(lab: Lab) -> None:
    mgr = lab.mgr
    with pytest.raises(ovm.NotFoundError):
        mgr.ha_plan("00000000-0000-0000-0000-000000000000", 1)
    with pytest.raises(ovm.NotFoundError):
        mgr.max_failures_tolerated("00000000-0000-0000-0000-000000000000")
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.ha_plan(lab.pool, 3)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.ha_plan("not-a-uuid", 1)
    # Two empty servers: nothing to restart, one failure is absorbed.
    assert mgr.max_failures_tolerated(lab.pool) == 1
    vm = lab.vm("huge", memory_mib=GUEST_MIB)
    mgr.start_vm_on(vm, lab.s1).wait(WAIT)
    with pytest.raises(ovm.InsufficientResourcesError):
        mgr.start_vm_on(lab.vm("more"), lab.s1).wait(WAIT)


def test_a_clustered_pool_on_a_lun_forms_its_cluster(lab: Lab) -> None:
    mgr = lab.mgr
    wwid = mgr.sim_add_lun("iqn.2026-01.ovm.sim:pool", "pool", 1 << 30)
    array = result_id(mgr.register_storage_array("array", "storage", [lab.s1]))
    disk = next(d.id for d in mgr.physical_disks_of(array) if d.page83_id == wwid)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_pool("bad-timeout", virtual_ip="192.0.2.20", pool_disk=disk, cluster_timeout_secs=5)
    with pytest.raises(ovm.NotFoundError):
        mgr.create_pool("no-disk", virtual_ip="192.0.2.20", pool_disk="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_pool("not-a-disk-id", virtual_ip="192.0.2.20", pool_disk="disk")
    assert [p.name for p in mgr.pools()] == ["pool1"], "nothing stored"

    pool = result_id(mgr.create_pool("cp", virtual_ip="192.0.2.20", pool_disk=disk, cluster_timeout_secs=12))
    p = mgr.pool(pool)
    assert p.clustered and p.pool_file_system is not None
    s3 = result_id(mgr.discover_server("sim://xen3", ovm.SIM_PASSWORD))
    mgr.add_server_to_pool(pool, s3).wait(WAIT)
    status = mgr.pool_cluster_status(pool)
    assert status is not None
    assert status.cluster == pool and status.members == ["xen3"] and status.master == "xen3"
    assert status.epoch == 1 and status.heartbeats == [("xen3", "alive")]
    assert mgr.pool(pool).master == s3
    # The pool is reached at its address: its master answers.
    at, reached = mgr.reach_pool(pool)
    assert at == s3 and reached is not None and reached.master == "xen3"
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.reach_pool(lab.pool)  # no virtual IP
    # The servers of an unclustered pool are in no cluster.
    assert mgr.pool_cluster_status(lab.pool) is None


def test_a_clustered_pool_on_an_nfs_file_system_forms_its_cluster(lab: Lab) -> None:
    mgr = lab.mgr
    mgr.sim_add_nfs_export("poolnfs.example.com", "/export/poolfs", 1 << 40)
    fsrv = result_id(mgr.register_file_server("poolnfs", "Nfs", [lab.s1], access_host="poolnfs.example.com"))
    [fs] = [f.id for f in mgr.file_systems_of(fsrv) if f.path == "/export/poolfs"]
    with pytest.raises(ovm.NotFoundError):
        mgr.create_pool("no-fs", virtual_ip="192.0.2.21", pool_file_system="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_pool("not-an-fs-id", virtual_ip="192.0.2.21", pool_file_system="fs")
    pool = result_id(mgr.create_pool("nfs-cp", virtual_ip="192.0.2.21", pool_file_system=fs, cluster_timeout_secs=12))
    p = mgr.pool(pool)
    assert p.clustered and p.pool_file_system == fs
    s3 = result_id(mgr.discover_server("sim://xen3", ovm.SIM_PASSWORD))
    mgr.add_server_to_pool(pool, s3).wait(WAIT)
    status = mgr.pool_cluster_status(pool)
    assert status is not None and status.members == ["xen3"] and status.master == "xen3"
