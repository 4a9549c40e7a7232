"""Server power control from Python: powered off through the agent once empty, woken by a magic
packet from another server of the pool."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_a_management_controller_powers_a_server_on_with_no_peer(lab: Lab) -> None:
    mgr = lab.mgr
    name = mgr.server(lab.s1).name
    with pytest.raises(ovm.InvalidArgumentError, match="no power controller"):
        mgr.set_server_power_control(lab.s1, controller="sim-bmc", address=name)
    mgr.sim_register_power_controller()
    assert mgr.power_controllers() == ["sim-bmc"]
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_server_power_control(lab.s1, controller="sim-bmc")
    mgr.set_server_power_control(lab.s1, controller="sim-bmc", address=name).wait(30)
    s = mgr.server(lab.s1)
    assert (s.wol_mac, s.out_of_band_controller, s.out_of_band_address) == (None, "sim-bmc", name)
    assert mgr.out_of_band_power_state(lab.s1) == "On"

    # Both servers off: the management controller powers server 1 on; no magic packet is sent.
    mgr.power_off_server(lab.s2).wait(30)
    mgr.power_off_server(lab.s1).wait(30)
    assert mgr.out_of_band_power_state(lab.s1) == "Off"
    mgr.power_on_server(lab.s1, timeout=10.0).wait(30)
    assert mgr.server(lab.s1).power_state == "Running"
    assert mgr.sim_magic_packets() == []


def test_an_executable_power_plugin_is_run_with_the_servers_address(lab: Lab, tmp_path: Path) -> None:
    mgr = lab.mgr
    d = tmp_path
    plugin = d / "ovm-test-power"
    plugin.write_text('#!/bin/sh\necho "$1 $2" >> "$(dirname "$0")/calls"\n[ "$1" = status ] && echo off\nexit 0\n')
    os.chmod(plugin, 0o755)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.register_power_plugin("ipmi", "relative/path")
    mgr.register_power_plugin("ipmi", str(plugin))
    mgr.set_server_power_control(lab.s2, controller="ipmi", address="bmc-2.example").wait(30)
    assert mgr.out_of_band_power_state(lab.s2) == "Off"
    assert (d / "calls").read_text() == "status bmc-2.example\n"
