"""Server and VM loads from Python: sampling settings, a round, typed samples and their history."""

from __future__ import annotations

import time

import pytest

import ovm
from conftest import Lab


def test_loads_are_sampled_and_kept(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.running_vm("busy")
    assert mgr.server_load(lab.s1) is None
    assert mgr.load_sampling() == {
        "interval": 10.0,
        "raw_retention": 3600.0,
        "coarse_interval": 300.0,
        "coarse_retention": 604800.0,
    }
    mgr.set_load_sampling(interval=1.0, raw_retention=5.0, coarse_interval=2.0, coarse_retention=60.0)
    assert mgr.load_sampling()["coarse_interval"] == 2.0
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_load_sampling(coarse_interval=1.5)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_load_sampling(interval=-1.0)
    assert mgr.load_sampling()["coarse_interval"] == 2.0

    mgr.sim_set_domain_load(vm, 60.0)
    server = mgr.vm(vm).server
    assert server is not None
    host = mgr.server(server).name
    mgr.sim_add_traffic(host, "eth1", 0, 0)
    assert mgr.sample_loads() == 2
    mgr.sim_add_traffic(host, "eth1", 40_000_000, 0)
    time.sleep(0.2)
    assert mgr.sample_loads() == 2

    sample = mgr.server_load(server)
    assert isinstance(sample, ovm.LoadSample)
    assert sample.cpus == 8 and sample.samples == 1
    assert [v.vm for v in sample.vms] == [vm]
    load = mgr.vm_load(vm)
    assert isinstance(load, ovm.VmLoad) and load.cpu_percent == 60.0 and load.memory_mib == 1024
    eth1 = next(i for i in sample.interfaces if i.name == "eth1")
    assert isinstance(eth1, ovm.InterfaceLoad)
    assert eth1.rx_bytes_per_sec > 10_000_000 and eth1.speed_mbps == 10_000
    assert eth1.utilisation_percent is not None and eth1.utilisation_percent > 8.0
    assert sample.to_dict()["vms"][0]["cpu_percent"] == 60.0

    raw = mgr.server_load_history(server)
    assert len(raw) == 2
    coarse = mgr.server_load_history(server, resolution="coarse")
    assert len(coarse) == 1 and coarse[0].samples == 2
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.server_load_history(server, resolution="hourly")
