"""Behaviour of the Python API against simulated servers."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import pytest

import ovm
from conftest import WAIT, Lab, iso_image, make_lab, result_id


def test_open_in_memory_and_repr(mgr: ovm.Manager) -> None:
    assert not mgr.closed
    assert len(mgr.id) == 36
    assert repr(mgr).startswith("Manager(id=")
    assert mgr.servers() == []
    assert mgr.vms() == []


def test_database_file_persists_objects(tmp_path: Path) -> None:
    db = tmp_path / "manager.db"
    with ovm.Manager(db, recurring_jobs=False, durability="full") as m:
        sid = result_id(m.discover_server("sim://persist1", ovm.SIM_PASSWORD))
        manager_id = m.id
    assert m.closed
    with ovm.Manager(str(db), recurring_jobs=False) as m2:
        assert m2.id == manager_id
        assert m2.server(sid).name == "persist1"


def test_discover_and_lookup_servers(mgr: ovm.Manager) -> None:
    job = mgr.discover_server("sim://host1?cpus=8&memory_mib=16384", ovm.SIM_PASSWORD)
    info = job.wait(WAIT)
    assert info.state == "Completed" and info.done and info.progress == pytest.approx(1.0)
    assert info.result is not None and info.result.kind == "Server"
    s = mgr.server(info.result.id)
    assert (s.name, s.cpus, s.memory_mib, s.power_state, s.ownership) == ("host1", 8, 16384, "Running", "Owned")
    assert s.address.startswith("sim://host1")
    assert mgr.server_by_name("host1").id == s.id
    assert s.ref == ovm.ObjectRef("Server", s.id)
    assert "host1" in repr(s) and "Running" in repr(s)
    assert s.to_dict()["hardware"]["cpus"] == 8
    assert [x.id for x in mgr.servers(power_state="Running")] == [s.id]
    assert mgr.servers(power_state="Unreachable") == []


def test_pool_storage_network_template(lab: Lab) -> None:
    mgr = lab.mgr
    pool = mgr.pool(lab.pool)
    assert sorted(pool.servers) == sorted([lab.s1, lab.s2])
    assert pool.master in (lab.s1, lab.s2)
    assert mgr.pool_by_name("pool1").id == lab.pool
    assert [p.name for p in mgr.pools()] == ["pool1"]
    assert {s.id for s in mgr.servers(pool=lab.pool)} == {lab.s1, lab.s2}
    repo = mgr.repository(lab.repo)
    assert sorted(repo.presented_to) == sorted([lab.s1, lab.s2])
    assert repo.used_bytes + repo.free_bytes == repo.capacity_bytes
    assert mgr.repository_by_name("repo1").id == lab.repo
    assert [d.name for d in mgr.virtual_disks(repository=lab.repo)] == ["tpl-data", "tpl-disk"]
    net = mgr.network(lab.net)
    assert (net.bridge, net.functions, net.mtu) == ("xenbr1", ["VirtualMachine"], 1500)
    assert mgr.network_by_name("vmnet").id == lab.net
    tpl = mgr.template(lab.template)
    assert tpl.config.memory_mib == 1024 and tpl.config.max_memory_mib == 2048
    assert tpl.config.disks[0][0:2] == (0, "VirtualDisk")
    assert mgr.template_by_name("tpl").id == lab.template
    assert mgr.object("Repository", lab.repo)["object"]["name"] == "repo1"


def test_vm_lifecycle(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.vm("web01")
    v = mgr.vm(vm)
    assert (v.name, v.power_state, v.pool, v.memory_mib) == ("web01", "Stopped", lab.pool, 1024)
    assert len(v.macs) == 1 and v.macs[0].startswith("00:16:3e:")
    assert mgr.vm_by_name("web01").id == vm
    mgr.start_vm(vm).wait(WAIT)
    v = mgr.vm(vm)
    assert v.power_state == "Running" and v.server in (lab.s1, lab.s2) and v.domid is not None
    assert [x.id for x in mgr.vms(power_state="Running")] == [vm]
    assert [x.id for x in mgr.vms(server=v.server)] == [vm]
    mgr.pause_vm(vm).wait(WAIT)
    assert mgr.vm(vm).power_state == "Paused"
    mgr.resume_vm(vm).wait(WAIT)
    mgr.suspend_vm(vm).wait(WAIT)
    assert mgr.vm(vm).power_state == "Suspended"
    mgr.resume_vm(vm).wait(WAIT)
    assert mgr.vm(vm).power_state == "Running"
    other = lab.s2 if v.server == lab.s1 else lab.s1
    mgr.migrate_vm(vm, other).wait(WAIT)
    assert mgr.vm(vm).server == other
    # Suspended on one server, resumed on the other (the image is in the shared repository).
    mgr.suspend_vm(vm).wait(WAIT)
    mgr.resume_vm_on(vm, v.server).wait(WAIT)
    assert mgr.vm(vm).server == v.server and mgr.vm(vm).power_state == "Running"
    domid = mgr.vm(vm).domid
    mgr.restart_vm(vm).wait(WAIT)
    assert mgr.vm(vm).power_state == "Running" and mgr.vm(vm).domid != domid
    mgr.stop_vm(vm).wait(WAIT)
    assert mgr.vm(vm).power_state == "Stopped"
    mgr.edit_vm(vm, name="web01-renamed", description="edited").wait(WAIT)
    assert mgr.vm(vm).name == "web01-renamed" and mgr.vm(vm).description == "edited"
    mgr.delete_vm(vm).wait(WAIT)
    with pytest.raises(ovm.NotFoundError):
        mgr.vm(vm)


def test_clone_template_and_vm(lab: Lab) -> None:
    mgr = lab.mgr
    a = result_id(mgr.clone_template(lab.template, "from-tpl", pool=lab.pool))
    va = mgr.vm(a)
    assert va.config.max_memory_mib == 2048 and len(va.config.disks) == 2
    b = result_id(mgr.clone_vm(a, "from-vm", pool=lab.pool))
    vb = mgr.vm(b)
    assert vb.name == "from-vm" and set(vb.macs).isdisjoint(va.macs)
    assert len(mgr.virtual_disks(repository=lab.repo)) == 6


def test_job_records_and_history(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.vm("hist")
    job = mgr.start_vm(vm)
    info = job.wait(WAIT)
    assert job.id == info.id and job.state == "Completed" and job.done and job.progress == pytest.approx(1.0)
    assert info.kind == "StartVm" and info.steps_done and info.error is None
    assert info.targets == [ovm.ObjectRef("Vm", vm)]
    assert info.finished is not None and info.started is not None and info.created <= info.finished
    assert "StartVm" in repr(job) and "Completed" in repr(info)
    assert job.info().state == "Completed"
    assert mgr.job(job.id).info().id == job.id
    hist = mgr.jobs(object=vm)
    assert [j.kind for j in hist][:2] == ["StartVm", "CreateVm"]
    assert all(j.state == "Completed" for j in mgr.jobs(states=["Completed"], limit=3))
    assert len(mgr.jobs(limit=2)) == 2


def test_abort_running_job_rolls_back(lab: Lab) -> None:
    mgr = lab.mgr
    mgr.sim_set_delay("Storage", 0.3)
    job = mgr.clone_template(lab.template, "clone-ab", pool=lab.pool)
    deadline = time.monotonic() + 10
    while not job.info().steps_done:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    job.abort()
    with pytest.raises(ovm.AbortedError) as ei:
        job.wait(WAIT)
    assert ei.value.job == job.id and ei.value.kind == "Aborted" and ei.value.code == 9
    info = job.wait_done(WAIT)
    assert info.state == "Aborted" and isinstance(info.error, ovm.AbortedError) and info.steps_undone
    with pytest.raises(ovm.NotFoundError):
        mgr.vm_by_name("clone-ab")
    with pytest.raises(ovm.InvalidStateError) as st:
        job.abort()
    assert st.value.actual == "Aborted" and st.value.expected == "Queued or Running"
    mgr.sim_set_delay("Storage", 0.0)
    result_id(mgr.clone_template(lab.template, "clone-ab", pool=lab.pool))


def test_operation_in_progress_and_timeout(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.vm("busy")
    mgr.sim_set_delay("Create", 0.8)
    first = mgr.start_vm(vm)
    with pytest.raises(ovm.OperationInProgressError) as ei:
        mgr.start_vm(vm)
    assert ei.value.job == first.id and ei.value.object == ovm.ObjectRef("Vm", vm)
    with pytest.raises(ovm.OvmTimeoutError) as te:
        first.wait(timeout=0.05)
    assert isinstance(te.value, TimeoutError) and te.value.millis == 50
    first.wait(WAIT)
    mgr.sim_set_delay("Create", 0.0)
    assert mgr.vm(vm).power_state == "Running"


def test_failed_job_raises_its_error(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.vm("fails")
    mgr.sim_fail_next("Create", 10)
    with pytest.raises(ovm.BackendError) as ei:
        mgr.start_vm(vm).wait(WAIT)
    assert ei.value.kind == "Backend" and ei.value.message
    assert mgr.vm(vm).power_state == "Stopped"


def test_await_jobs() -> None:
    async def main() -> list[str]:
        with ovm.Manager(recurring_jobs=False) as m:
            lab = make_lab(m)
            vms = [lab.vm(f"a{i}") for i in range(4)]
            infos = await asyncio.gather(*(m.start_vm(v) for v in vms))
            assert all(i.state == "Completed" for i in infos)
            stopped = await m.stop_vm(vms[0]).wait_async()
            assert stopped.kind == "StopVm"
            return [m.vm(v).power_state for v in vms]

    assert asyncio.run(main()) == ["Stopped", "Running", "Running", "Running"]


def test_await_failed_job_raises() -> None:
    with ovm.Manager(recurring_jobs=False) as m:
        lab = make_lab(m)
        vm = lab.vm("x")
        m.sim_fail_next("Create", 10)
        with pytest.raises(ovm.BackendError):
            asyncio.run(_await(m.start_vm(vm)))


async def _await(job: ovm.Job) -> ovm.JobInfo:
    return await job


def test_events_block_until_acknowledged(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.vm("ev")
    ev = mgr.raise_event(ovm.ObjectRef("Vm", vm), "Error", "test.failure", "something broke")
    assert (ev.severity, ev.event_type, ev.acknowledged) == ("Error", "test.failure", None)
    assert "test.failure" in repr(ev)
    with pytest.raises(ovm.UnacknowledgedEventsError) as ei:
        mgr.start_vm(vm)
    assert ei.value.event == ev.id and ei.value.severity == "Error"
    assert [e.id for e in mgr.events(object=vm, acknowledged=False)] == [ev.id]
    assert mgr.events(object=vm, min_severity="Critical") == []
    mgr.acknowledge_event(ev.id).wait(WAIT)
    assert mgr.event(ev.id).acknowledged is not None
    mgr.start_vm(vm).wait(WAIT)
    mgr.raise_event(ovm.ObjectRef("Vm", vm), "Warning", "test.warn", "look")
    mgr.acknowledge_all(ovm.ObjectRef("Vm", vm)).wait(WAIT)
    assert mgr.events(object=vm, acknowledged=False) == []


def test_change_feed_blocking_and_resume(lab: Lab) -> None:
    mgr = lab.mgr
    start = mgr.current_token()
    sub = mgr.subscribe()
    assert sub.token == start
    vm = lab.vm("feed")
    seen = []
    for change in sub:
        seen.append(change)
        if change.object == ovm.ObjectRef("Vm", vm):
            break
    assert seen[-1].op == "Added" and "Added" in repr(seen[-1])
    assert all(a.token < b.token for a, b in zip(seen, seen[1:]))
    assert sub.token == seen[-1].token
    assert sub.next(timeout=0.05) is None or sub.token > seen[-1].token
    changes, nxt = mgr.events_since(start)
    assert [c.token for c in changes][: len(seen)] == [c.token for c in seen] and nxt >= seen[-1].token
    replay = mgr.subscribe(from_token=start)
    first = replay.next(timeout=1.0)
    assert first is not None and first.token == seen[0].token


def test_change_feed_async() -> None:
    async def main() -> str:
        with ovm.Manager(recurring_jobs=False) as m:
            sub = m.subscribe()
            job = m.discover_server("sim://feedhost", ovm.SIM_PASSWORD)
            async for change in sub:
                if change.object.kind == "Server":
                    await job
                    return change.op
        return "none"

    assert asyncio.run(main()) == "Added"


def test_events_lost_then_resume() -> None:
    with ovm.Manager(recurring_jobs=False, change_buffer=1) as m:
        sub = m.subscribe()
        for i in range(3):
            m.discover_server(f"sim://lost{i}", ovm.SIM_PASSWORD).wait(WAIT)
        with pytest.raises(ovm.EventsLostError) as ei:
            sub.next(timeout=1.0)
        resumed = m.subscribe(from_token=ei.value.resume_token)
        assert resumed.token == ei.value.resume_token
        with pytest.raises(ovm.EventsLostError):
            sub.next(timeout=0.1)  # a failed subscription stays failed


def test_a_resuming_subscription_replays_what_it_missed() -> None:
    with ovm.Manager(recurring_jobs=False, change_buffer=1) as m:
        sub = m.subscribe(resume=True)
        start = sub.token
        for i in range(3):
            m.discover_server(f"sim://gap{i}", ovm.SIM_PASSWORD).wait(WAIT)
        end = m.current_token()
        tokens: list[int] = []
        notices = 0
        while True:
            try:
                change = sub.next(timeout=0.3)
            except ovm.EventsLostError:
                notices += 1
                continue
            if change is None:
                break
            tokens.append(change.token)
        assert notices == 1
        assert tokens == list(range(start + 1, end + 1))


def test_iteration_ends_when_manager_closes(mgr: ovm.Manager) -> None:
    sub = mgr.subscribe()
    mgr.close()
    assert list(sub) == []
    with pytest.raises(ovm.ClosedError):
        sub.next(timeout=0.01)


def _spin(seconds: float) -> int:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


def test_blocking_waits_release_the_gil(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.vm("gil")
    baseline = _spin(0.3)
    mgr.sim_set_delay("Create", 0.6)
    job = mgr.start_vm(vm)
    sub = mgr.subscribe()
    waiters = [threading.Thread(target=job.wait, args=(WAIT,)), threading.Thread(target=sub.next, args=(0.6,))]
    for t in waiters:
        t.start()
    time.sleep(0.05)
    during = _spin(0.3)
    for t in waiters:
        t.join()
    mgr.sim_set_delay("Create", 0.0)
    assert job.state == "Completed"
    # Had the waiting threads held the GIL, this thread would have made almost no progress.
    assert during > baseline * 0.3


def test_more_operations(lab: Lab, tmp_path: Path) -> None:
    mgr = lab.mgr
    iso = result_id(mgr.import_iso(lab.repo, "install.iso", iso_image(tmp_path)))
    assert mgr.object("VirtualCdrom", iso)["object"]["name"] == "install.iso"
    vm = lab.vm("to-tpl")
    mgr.edit_vm(vm, config=ovm.VmConfig(memory_mib=768, max_memory_mib=1024, vnics=mgr.vm(vm).config.vnics)).wait(WAIT)
    assert (mgr.vm(vm).memory_mib, mgr.vm(vm).config.max_memory_mib) == (768, 1024)
    tpl = result_id(mgr.vm_to_template(vm, "tpl2"))
    assert mgr.template(tpl).config.memory_mib == 768
    mgr.refresh_server(lab.s1).wait(WAIT)
    mgr.set_maintenance_mode(lab.s2, True).wait(WAIT)
    assert mgr.server(lab.s2).maintenance_mode
    mgr.set_maintenance_mode(lab.s2, False).wait(WAIT)
    disk = result_id(mgr.create_virtual_disk(lab.repo, "scratch", 1 << 30, shareable=True))
    assert mgr.virtual_disk(disk).shareable
    mgr.delete_virtual_disk(disk).wait(WAIT)
    with pytest.raises(ovm.NotFoundError):
        mgr.virtual_disk(disk)
    lone = result_id(mgr.discover_server("sim://lone", ovm.SIM_PASSWORD))
    mgr.add_server_to_pool(lab.pool, lone).wait(WAIT)
    mgr.remove_server_from_pool(lab.pool, lone).wait(WAIT)
    assert mgr.server(lone).pool is None
    net = result_id(mgr.create_network("storage", "xenbr5", functions=["Storage"], mtu=9000))
    assert (mgr.network(net).functions, mgr.network(net).mtu) == (["Storage"], 9000)
    mgr.delete_object("Network", net).wait(WAIT)
    assert [n.name for n in mgr.networks()].count("storage") == 0


def test_create_objects_bulk_import(mgr: ovm.Manager) -> None:
    first = result_id(mgr.create_vm("bulk-0", ovm.VmConfig(memory_mib=256)))
    shape = mgr.vm(first).to_dict()
    objs = [{"kind": "Vm", "object": {**shape, "id": str(uuid.uuid4()), "name": f"bulk-{i}"}} for i in range(1, 50)]
    info = mgr.create_objects(objs).wait(WAIT)
    assert info.kind == "CreateObjects"
    assert len(mgr.vms()) == 50 and mgr.vm_by_name("bulk-49").memory_mib == 256
    dup = [{"kind": "Vm", "object": {**shape, "id": str(uuid.uuid4()), "name": "bulk-new"}}, objs[0]]
    with pytest.raises(ovm.ConflictError):
        mgr.create_objects(dup)
    assert len(mgr.vms()) == 50
    with pytest.raises(ovm.InvalidArgumentError) as ei:
        mgr.create_objects([{"kind": "Vm", "object": {"name": "broken"}}])
    assert ei.value.field == "objects[0]"


def test_agent_identity_and_kernel_import(lab: Lab) -> None:
    fp = lab.mgr.certificate_fingerprint()
    assert fp.startswith("sha256:") and len(fp) == 7 + 64
    # Simulated servers are not reached through an agent.
    assert lab.mgr.agent_fingerprint(lab.s1) is None
    with pytest.raises(ovm.UnsupportedError):
        lab.mgr.restart_agent(lab.s1)
    # Nothing listens at this address: the discovery job fails with a backend error.
    with pytest.raises(ovm.BackendError):
        lab.mgr.discover_server("127.0.0.1:1", "pw").wait(WAIT)
    with pytest.raises(ovm.InvalidArgumentError):
        lab.mgr.import_kernel(lab.repo, "a/b", "/boot/vmlinuz")
    with pytest.raises(ovm.InvalidArgumentError):
        lab.mgr.import_kernel(lab.repo, "k", "relative/vmlinuz")
    # The source file does not exist on the server: the job fails.
    with pytest.raises(ovm.BackendError):
        lab.mgr.import_kernel(lab.repo, "k", "/boot/vmlinuz", initrd_source=None).wait(WAIT)


def test_every_inventory_kind_has_a_typed_record(lab: Lab) -> None:
    mgr = lab.mgr
    fs = mgr.record("FileSystem", lab.fs)
    assert isinstance(fs, ovm.FileSystem)
    assert fs.path == "/export/fs1" and fs.file_server is not None and fs.physical_disk is None
    fsrv = mgr.record("FileServer", fs.file_server)
    assert isinstance(fsrv, ovm.FileServer) and fsrv.kind == "Nfs" and fsrv.access_host == "nfs.example.com"
    vm = lab.vm("typed")
    mgr.create_object({"kind": "Tag", "object": {"id": str(uuid.uuid4()), "name": "gold", "objects": [{"kind": "Vm", "id": vm}]}}).wait(WAIT)
    (tag,) = mgr.records("Tag")
    assert isinstance(tag, ovm.Tag) and tag.objects == [mgr.vm(vm).ref] and "gold" in repr(tag)
    for kind, cls in [("Server", ovm.Server), ("Vm", ovm.Vm), ("Network", ovm.Network)]:
        records = mgr.records(kind)
        assert records and all(isinstance(r, cls) for r in records)
        assert records[0].to_dict()["id"] == records[0].id
    assert mgr.records("Port") == [] or all(isinstance(p, ovm.Port) for p in mgr.records("Port"))
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.records("Job")
    with pytest.raises(ovm.NotFoundError):
        mgr.record("Tag", lab.fs)


def test_typed_storage_network_and_vm_setup(lab: Lab, tmp_path: Path) -> None:
    mgr = lab.mgr
    wwid = mgr.sim_add_lun("iqn.2026-01.ovm.sim:generic", "lun0", 1 << 36)
    array = result_id(mgr.register_storage_array("array1", "storage", [lab.s1]))
    [pd] = mgr.physical_disks_of(array)
    assert isinstance(pd, ovm.PhysicalDisk) and pd.array == array and pd.page83_id == wwid
    assert pd.size_bytes == 1 << 36
    mgr.sim_add_nfs_export("nfs2.example.com", "/export/fs2", 1 << 40)
    nfs = result_id(mgr.register_file_server("nfs2", "Nfs", [lab.s1], access_host="nfs2.example.com"))
    [fs] = mgr.file_systems_of(nfs)
    assert (fs.path, fs.size_bytes) == ("/export/fs2", 1 << 40)
    # What the storage says is not typed by hand: the generic calls refuse it.
    record = mgr.object("FileSystem", fs.id)
    record["object"]["id"] = str(uuid.uuid4())
    with pytest.raises(ovm.InvalidArgumentError, match="register_file_server"):
        mgr.create_object(record)
    record = mgr.object("PhysicalDisk", pd.id)
    record["object"]["size_bytes"] = 1 << 40
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.update_object(record)

    port = mgr.records("Port")[0]
    assert isinstance(port, ovm.Port)
    vlan = result_id(mgr.create_vlan_interface(port.server, 100, port=port.id))
    v = mgr.record("VlanInterface", vlan)
    assert isinstance(v, ovm.VlanInterface) and v.vlan_id == 100 and v.port == port.id and v.bond is None
    net = result_id(mgr.create_network("vlan100", "xenbr100"))
    assert mgr.network(net).mtu == 1500 and mgr.network(net).functions == ["VirtualMachine"]
    mgr.add_network_member(net, "Vlan", vlan).wait(WAIT)
    mgr.remove_network_member(net, "Vlan", vlan).wait(WAIT)
    mgr.add_network_member(net, "Vlan", vlan).wait(WAIT)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_vlan_interface(port.server, 7, port=port.id, bond=port.id)

    disk = result_id(mgr.create_virtual_disk(lab.repo, "root", 4 << 30))
    vm = result_id(mgr.create_vm("guest", ovm.VmConfig(memory_mib=512, vnics=[ovm.Vnic()]), pool=lab.pool))
    assert mgr.vm(vm).config.max_memory_mib == 512 and mgr.vm(vm).config.max_vcpus == 1
    mgr.attach_disk(vm, 0, disk).wait(WAIT)
    mgr.set_vnic_network(vm, 0, net).wait(WAIT)
    mgr.set_kernel(vm, "/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="root=/dev/xvda ro").wait(WAIT)
    c = mgr.vm(vm).config
    assert (c.kernel, c.initrd, c.cmdline) == ("/boot/vmlinuz", "/boot/initrd.img", "root=/dev/xvda ro")
    assert c.disks == [(0, "VirtualDisk", disk)]
    assert c.vnics[0].network == net
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_vnic_network(vm, 3, net)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_kernel(vm, None, cmdline="quiet")
    mgr.set_kernel(vm, None).wait(WAIT)
    assert mgr.vm(vm).config.kernel is None
    assert ovm.VmConfig(kernel="/k", cmdline="x").cmdline == "x"
    iso = result_id(mgr.import_iso(lab.repo, "install.iso", iso_image(tmp_path)))
    both = ovm.VmConfig(disks=[(0, disk), (1, "Cdrom", iso), (2, "EmptyCdrom", None)])
    assert both.disks == [(0, "VirtualDisk", disk), (1, "Cdrom", iso), (2, "EmptyCdrom", None)]
    assert ovm.VmConfig(disks=both.disks).disks == both.disks
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.VmConfig(disks=[(0, "EmptyCdrom", iso)])

    tag = result_id(mgr.create_tag("gold"))
    mgr.set_tag(tag, mgr.vm(vm).ref).wait(WAIT)
    assert mgr.record("Tag", tag).objects == [mgr.vm(vm).ref]
    mgr.set_tag(tag, mgr.vm(vm).ref, on=False).wait(WAIT)
    group_id = result_id(mgr.create_anti_affinity_group(lab.pool, "spread", [vm]))
    aag = mgr.record("AntiAffinityGroup", group_id)
    assert isinstance(aag, ovm.AntiAffinityGroup) and aag.vms == [vm]
    mgr.start_vm(vm).wait(WAIT)
    assert isinstance(mgr.vm_console(vm), str)
    # Guest messages: the simulated guest answers each KEY=VALUE with reply-KEY=VALUE.
    mgr.send_vm_messages(vm, {"hostname": "web-01", "role": "frontend"}).wait(WAIT)
    data = mgr.vm_guest_data(vm)
    assert data["reply-hostname"] == "web-01" and data["reply-role"] == "frontend"
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.send_vm_messages(vm, {"a/b": "x"})
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.send_vm_messages(vm, {"k": 1})  # type: ignore[dict-item]
    # A PV guest has no graphical console.
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.open_vm_console(vm)

    assert [name for name, _, _ in mgr.recurring_jobs()] == ["RefreshServers"]
    mgr.set_recurring_job("RefreshServers", 120.0, False)
    assert mgr.recurring_jobs()[0][1:] == (120.0, False)
    mgr.run_recurring("RefreshServers").wait(WAIT)
    spare = result_id(mgr.discover_server("sim://spare", ovm.SIM_PASSWORD))
    mgr.release_ownership(spare).wait(WAIT)
    assert mgr.server(spare).ownership == "Unowned"
    mgr.take_ownership(spare, ovm.SIM_PASSWORD).wait(WAIT)
    assert mgr.server(spare).ownership == "Owned"


def test_generic_update_keeps_the_typed_rules(lab: Lab) -> None:
    vm = lab.vm("generic")
    record = lab.mgr.object("Vm", vm)
    record["object"]["power_state"] = "Running"
    with pytest.raises(ovm.InvalidArgumentError):
        lab.mgr.update_object(record)
    assert lab.mgr.vm(vm).power_state == "Stopped"
    record["object"]["power_state"] = "Stopped"
    record["object"]["description"] = "edited"
    lab.mgr.update_object(record).wait(WAIT)
    assert lab.mgr.vm(vm).description == "edited"
    disk = result_id(lab.mgr.create_virtual_disk(lab.repo, "scratch", 1 << 30))
    assert lab.mgr.delete_object("VirtualDisk", disk).wait(WAIT).kind == "DeleteVirtualDisk"


def test_file_servers_are_discovered_and_repositories_mounted(lab: Lab) -> None:
    mgr = lab.mgr
    # A server's local file system, discovered through the server: one file system, sized by it.
    local = result_id(mgr.register_file_server("xen1-local", "Local", [lab.s1]))
    fss = mgr.file_systems_of(local)
    assert [f.path for f in fss] == ["/OVS/Local"]
    assert fss[0].size_bytes > 0 and fss[0].free_bytes <= fss[0].size_bytes
    repo = result_id(mgr.create_repository("local-repo", fss[0].id))
    # On a server's local file system: presented to that server only.
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.present_repository_to(repo, [lab.s1, lab.s2])
    mgr.present_repository_to(repo, [lab.s1]).wait(WAIT)
    r = mgr.repository(repo)
    assert r.presented_to == [lab.s1]
    assert r.mounts == [(lab.s1, "Mounted", "")]
    mgr.unpresent_repository(repo, lab.s1).wait(WAIT)
    assert mgr.repository(repo).mounts == []
    mgr.refresh_file_server(local).wait(WAIT)
    # Nobody serves NFS there: the job fails with the backend's error and nothing is stored.
    before = len(mgr.records("FileServer"))
    with pytest.raises(ovm.BackendError):
        mgr.register_file_server("ghost", "Nfs", [lab.s1], access_host="nfs9.example.com").wait(WAIT)
    assert len(mgr.records("FileServer")) == before
    # No iSCSI portal answers in this simulated data centre: nothing is stored.
    with pytest.raises(ovm.BackendError):
        mgr.register_storage_array("lio", "iscsi.example.com", [lab.s1]).wait(WAIT)
    assert mgr.records("StorageArray") == [] or all(a.name != "lio" for a in mgr.records("StorageArray"))
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.register_storage_array("lio", "bad portal", [lab.s1])
    # A file server reached through an external plug-in: the plug-in's name is checked here, and a
    # file server no server's plug-in reaches is not stored.
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.register_file_server("nas", "External", [lab.s1], access_host="nas1:/shares", plugin="../sh")
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.register_file_server("nas", "External", [lab.s1], access_host="-o:/shares", plugin="nas-shares")
    with pytest.raises(ovm.BackendError):
        mgr.register_file_server(
            "nas", "External", [lab.s1], access_host="nas1:/shares", plugin="nas-shares"
        ).wait(WAIT)
    assert len(mgr.records("FileServer")) == before
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.register_file_server("x", "Nfs", [], access_host="nfs1.example.com")
    with pytest.raises(ovm.NotFoundError):
        mgr.register_file_server("x", "Nfs", [str(uuid.uuid4())], access_host="nfs1.example.com")


def test_vendor_array_luns_and_access_groups(lab: Lab) -> None:
    mgr = lab.mgr
    target = "iqn.2026-01.ovm.sim:managed"
    mgr.sim_add_managed_array("lio-admin", "admin", "secret", [target])

    def register(password: str) -> ovm.Job:
        return mgr.register_vendor_storage_array(
            "vendor1", "storage", [lab.s1], management_host="lio-admin", username="admin", password=password
        )

    # Credentials refused: nothing stored.
    before = len(mgr.records("StorageArray"))
    with pytest.raises(ovm.PermissionDeniedError):
        register("wrong").wait(WAIT)
    assert len(mgr.records("StorageArray")) == before
    array = result_id(register("secret"))
    assert mgr.physical_disks_of(array) == []
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_lun(array, "bad name/", 1 << 30)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_lun(array, "d", 1 << 30, target="iqn.2026-01.x:other")
    lun = result_id(mgr.create_lun(array, "data", 2 << 30, target=target))
    [d] = mgr.physical_disks_of(array)
    assert (d.id, d.name, d.size_bytes) == (lun, "vendor1:data", 2 << 30)

    # An access group of both servers; presenting logs each in until it sees the LUN.
    group = result_id(mgr.create_access_group(array, "pool1", [lab.s1, lab.s2]))
    g = mgr.record("AccessGroup", group)
    assert isinstance(g, ovm.AccessGroup) and g.servers == [lab.s1, lab.s2] and g.disks == []
    mgr.present_lun(group, lun).wait(WAIT)
    assert mgr.record("AccessGroup", group).disks == [lun]
    assert sorted(mgr.object("StorageArray", array)["object"]["presented_to"]) == sorted([lab.s1, lab.s2])

    # Grown, never shrunk; cloned.
    mgr.resize_lun(lun, 3 << 30).wait(WAIT)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.resize_lun(lun, 1 << 30)
    copy = result_id(mgr.clone_lun(lun, "data-copy"))
    sizes = {p.name: p.size_bytes for p in mgr.physical_disks_of(array)}
    assert sizes == {"vendor1:data": 3 << 30, "vendor1:data-copy": 3 << 30}

    # Taken apart: a group presenting a LUN is not deleted.
    with pytest.raises(ovm.ConflictError):
        mgr.delete_access_group(group)
    mgr.unpresent_lun(group, lun).wait(WAIT)
    assert mgr.record("AccessGroup", group).disks == []
    mgr.delete_lun(lun).wait(WAIT)
    mgr.delete_lun(copy).wait(WAIT)
    mgr.delete_access_group(group).wait(WAIT)
    assert mgr.physical_disks_of(array) == []
    assert all(a.id != group for a in mgr.records("AccessGroup"))


def test_a_pv_guest_with_a_framebuffer_has_a_screen(lab: Lab) -> None:
    mgr = lab.mgr
    vm = result_id(mgr.create_vm("pv-screen", ovm.VmConfig(memory_mib=512), pool=lab.pool))
    assert mgr.record("Vm", vm).config.framebuffer is False
    mgr.set_framebuffer(vm, True).wait(WAIT)
    assert mgr.record("Vm", vm).config.framebuffer is True
    mgr.start_vm(vm).wait(WAIT)
    ep = mgr.open_vm_console(vm)
    _, width, height, colours = ovm.console_screenshot(ep.host, ep.port, ep.password)
    assert (width, height) == (160, 100) and colours > 1
    hvm = result_id(mgr.create_vm("hvm-screen", ovm.VmConfig(memory_mib=512, domain_type="Hvm"), pool=lab.pool))
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_framebuffer(hvm, True)


def test_a_pv_guest_boots_from_an_install_tree(lab: Lab) -> None:
    mgr = lab.mgr
    vm = result_id(mgr.create_vm("installer", ovm.VmConfig(memory_mib=512), pool=lab.pool))
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_network_boot(vm, "ftp://mirror/ol7")
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_network_boot(vm, None, "inst.repo=x")
    mgr.set_network_boot(vm, "http://mirror.example/ol7/", "inst.repo=http://mirror.example/ol7").wait(WAIT)
    assert mgr.record("Vm", vm).config.network_boot == (
        "http://mirror.example/ol7/",
        "inst.repo=http://mirror.example/ol7",
    )
    mgr.set_network_boot(vm, None).wait(WAIT)
    assert mgr.record("Vm", vm).config.network_boot is None


def test_the_console_of_an_hvm_guest_through_its_one_time_endpoint(lab: Lab) -> None:
    mgr = lab.mgr
    vm = result_id(mgr.create_vm("screen", ovm.VmConfig(memory_mib=512), pool=lab.pool))
    mgr.set_boot(vm, "Hvm", ["Cdrom", "Disk"]).wait(WAIT)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_boot(vm, "Pv", ["Disk"])
    mgr.start_vm(vm).wait(WAIT)
    ep = mgr.open_vm_console(vm)
    assert ep.host == "127.0.0.1" and len(ep.password) == 8 and ep.expires_in > 0
    with pytest.raises(ovm.PermissionDeniedError):
        ovm.console_screenshot(ep.host, ep.port, "not-it")
    png, width, height, colours = ovm.console_screenshot(ep.host, ep.port, ep.password)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (width, height) == (160, 100) and colours > 1
    with pytest.raises(ovm.OvmError):
        ovm.console_screenshot(ep.host, ep.port, ep.password, timeout=2.0)
