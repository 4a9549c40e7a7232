"""Server power control from Python: powered off through the agent once empty, woken by a magic
packet from another server of the pool."""

from __future__ import annotations

import pytest

import ovm
from conftest import Lab


def test_a_server_powers_off_and_is_woken_by_its_pool(lab: Lab) -> None:
    mgr = lab.mgr
    vm = lab.running_vm("web")
    host = mgr.vm(vm).server
    assert host is not None
    other = lab.s2 if host == lab.s1 else lab.s1
    name, other_name = mgr.server(host).name, mgr.server(other).name

    with pytest.raises(ovm.ConflictError, match="web"):
        mgr.power_off_server(host)
    mgr.set_maintenance_mode(host, True).wait(30)
    mgr.power_off_server(host).wait(30)
    assert mgr.server(host).power_state == "Stopped"
    assert not mgr.sim_is_powered_on(name)
    with pytest.raises(ovm.InvalidStateError):
        mgr.power_off_server(host)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.power_on_server(host, timeout=-1.0)

    mgr.power_on_server(host, timeout=10.0).wait(30)
    assert mgr.server(host).power_state == "Running"
    wol_mac = mgr.server(host).wol_mac
    assert wol_mac is not None
    assert mgr.sim_magic_packets() == [(other_name, "xenbr0", wol_mac.lower())]
    assert mgr.sim_is_powered_on(name)
