"""Property tests of the model rules, exercised through Python."""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ovm
from conftest import WAIT, Lab, make_lab

_names = itertools.count()


@pytest.fixture(scope="module")
def shared() -> Iterator[Lab]:
    m = ovm.Manager(recurring_jobs=False)
    yield make_lab(m)
    m.close()


def fresh_name() -> str:
    return f"p{next(_names)}"


@settings(max_examples=60, deadline=None)
@given(memory=st.integers(min_value=0, max_value=8192), max_memory=st.integers(min_value=0, max_value=8192))
def test_memory_at_most_max_memory(shared: Lab, memory: int, max_memory: int) -> None:
    mgr = shared.mgr
    before = len(mgr.vms())
    name = fresh_name()
    config = ovm.VmConfig(memory_mib=memory, max_memory_mib=max_memory)
    if 32 <= memory <= max_memory:
        vm = mgr.create_vm(name, config, pool=shared.pool).wait(WAIT).result
        assert vm is not None
        stored = mgr.vm(vm.id)
        assert stored.config.memory_mib == memory and stored.config.max_memory_mib == max_memory
        assert stored.config.memory_mib <= stored.config.max_memory_mib
        mgr.delete_vm(vm.id).wait(WAIT)
    else:
        with pytest.raises(ovm.InvalidArgumentError) as ei:
            mgr.create_vm(name, config, pool=shared.pool)
        assert ei.value.field == "memory_mib"
        with pytest.raises(ovm.NotFoundError):
            mgr.vm_by_name(name)
    assert len(mgr.vms()) == before


@settings(max_examples=40, deadline=None)
@given(vcpus=st.integers(min_value=0, max_value=16), max_vcpus=st.integers(min_value=0, max_value=16))
def test_vcpus_at_most_max_vcpus(shared: Lab, vcpus: int, max_vcpus: int) -> None:
    mgr = shared.mgr
    name = fresh_name()
    config = ovm.VmConfig(vcpus=vcpus, max_vcpus=max_vcpus)
    if 1 <= vcpus <= max_vcpus:
        vm = mgr.create_vm(name, config).wait(WAIT).result
        assert vm is not None
        assert mgr.vm(vm.id).config.vcpus <= mgr.vm(vm.id).config.max_vcpus
        mgr.delete_vm(vm.id).wait(WAIT)
    else:
        with pytest.raises(ovm.InvalidArgumentError) as ei:
            mgr.create_vm(name, config)
        assert ei.value.field == "vcpus"


MACS = [f"00:16:3e:7f:00:{i:02x}" for i in range(6)]


@settings(max_examples=30, deadline=None)
@given(requests=st.lists(st.lists(st.sampled_from(MACS), min_size=1, max_size=3), min_size=1, max_size=5))
def test_macs_are_unique_across_vms(shared: Lab, requests: list[list[str]]) -> None:
    mgr = shared.mgr
    created: list[str] = []
    try:
        for macs in requests:
            config = ovm.VmConfig(vnics=[ovm.Vnic(network=shared.net, mac=m) for m in macs])
            in_use = {m for v in mgr.vms() for m in v.macs}
            name = fresh_name()
            if len(set(macs)) < len(macs):
                with pytest.raises(ovm.InvalidArgumentError):
                    mgr.create_vm(name, config, pool=shared.pool)
            elif in_use & set(macs):
                with pytest.raises(ovm.ConflictError):
                    mgr.create_vm(name, config, pool=shared.pool).wait(WAIT)
            else:
                vm = mgr.create_vm(name, config, pool=shared.pool).wait(WAIT).result
                assert vm is not None
                created.append(vm.id)
            all_macs = [m for v in mgr.vms() for m in v.macs]
            assert len(all_macs) == len(set(all_macs))
    finally:
        for vm_id in created:
            mgr.delete_vm(vm_id).wait(WAIT)


@settings(max_examples=20, deadline=None)
@given(count=st.integers(min_value=1, max_value=6))
def test_allocated_macs_are_unique_and_in_range(shared: Lab, count: int) -> None:
    mgr = shared.mgr
    config = ovm.VmConfig(vnics=[ovm.Vnic(network=shared.net) for _ in range(count)])
    vm = mgr.create_vm(fresh_name(), config, pool=shared.pool).wait(WAIT).result
    assert vm is not None
    try:
        macs = mgr.vm(vm.id).macs
        assert len(macs) == count and len(set(macs)) == count
        assert all(m.startswith("00:16:3e:") for m in macs)
        everyone = [m for v in mgr.vms() for m in v.macs]
        assert len(everyone) == len(set(everyone))
    finally:
        mgr.delete_vm(vm.id).wait(WAIT)


@settings(max_examples=40, deadline=None)
@given(name=st.text(max_size=300))
def test_names_rule(shared: Lab, name: str) -> None:
    mgr = shared.mgr
    valid = bool(name.strip()) and len(name) <= 256 and not any(unicodedata.category(c) == "Cc" for c in name)
    try:
        job = mgr.create_network(name, "xenbr9")
    except ovm.InvalidArgumentError as e:
        assert not valid and e.field == "name"
        return
    except ovm.ConflictError:
        assert valid and mgr.network_by_name(name).name == name
        return
    net = job.wait(WAIT).result
    assert valid and net is not None
    assert mgr.network(net.id).name == name
    mgr.delete_object("Network", net.id).wait(WAIT)
