"""Server networking through Python: a VLAN network over bonds on two simulated servers, VNICs
hot-plugged, bad input refused with nothing changed, drift reported and converged."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import ovm
from conftest import WAIT, result_id


@dataclass
class Net:
    mgr: ovm.Manager
    servers: list[str]
    pool: str
    bonds: list[str]
    vlans: list[str]
    net: str

    def port(self, server: str, interface: str) -> str:
        return port(self.mgr, server, interface)


def port(mgr: ovm.Manager, server: str, interface: str) -> str:
    [p] = [p for p in mgr.records("Port") if isinstance(p, ovm.Port) and p.server == server
           and p.interface == interface]
    return p.id


def build(mgr: ovm.Manager) -> Net:
    """On xen1 and xen2 (in one pool): bond0 of eth1+eth2, ARP-monitored, addressed 10.77.1.N/24;
    VLAN 300 on it; VM network vm300 on bridge vmnet300 over the VLANs."""
    servers = [result_id(mgr.discover_server(f"sim://xen{i}", ovm.SIM_PASSWORD)) for i in (1, 2)]
    pool = result_id(mgr.create_pool("pool1"))
    for s in servers:
        mgr.add_server_to_pool(pool, s).wait(WAIT)
    bonds, vlans = [], []
    for i, s in enumerate(servers):
        ports = [port(mgr, s, "eth1"), port(mgr, s, "eth2")]
        b = result_id(mgr.create_bond(s, "bond0", "ActiveBackup", ports, arp_interval_ms=200,
                                      arp_targets=["10.77.1.254"], address=f"10.77.1.{i + 1}/24"))
        bonds.append(b)
        vlans.append(result_id(mgr.create_vlan_interface(s, 300, bond=b)))
    net = result_id(mgr.create_network("vm300", "vmnet300"))
    for v in vlans:
        mgr.add_network_member(net, "Vlan", v).wait(WAIT)
    return Net(mgr, servers, pool, bonds, vlans, net)


@pytest.fixture
def dc(mgr: ovm.Manager) -> Net:
    return build(mgr)


def test_a_vlan_network_over_bonds_is_configured_on_both_servers(dc: Net) -> None:
    mgr = dc.mgr
    for i, s in enumerate(dc.servers):
        cfg = mgr.server_network_config(s)
        assert set(cfg) == {"bonds", "vlans", "bridges", "addresses"}
        [bond] = cfg["bonds"]
        assert (bond["name"], bond["ports"], bond["primary"]) == ("bond0", ["eth1", "eth2"], "eth1")
        assert bond["monitor"] == {"Arp": {"interval_ms": 200, "targets": ["10.77.1.254"]}}
        assert [(v["parent"], v["vlan_id"]) for v in cfg["vlans"]] == [("bond0", 300)]
        [br] = [b for b in cfg["bridges"] if b["name"] == "vmnet300"]
        assert br["interfaces"] == ["bond0.300"]
        assert {"interface": "bond0", "address": f"10.77.1.{i + 1}", "prefix": 24} in cfg["addresses"]
        assert mgr.network_drift(s) == []
    b = mgr.record("BondPort", dc.bonds[0])
    assert isinstance(b, ovm.BondPort)
    assert (b.mtu, b.monitor, b.monitor_interval_ms, b.arp_targets) == (1500, "Arp", 200, ["10.77.1.254"])
    assert b.addressing == "Static 10.77.1.1/24"


def test_the_old_create_bond_call_still_works_and_a_bond_is_deleted(mgr: ovm.Manager) -> None:
    s = result_id(mgr.discover_server("sim://solo", ovm.SIM_PASSWORD))
    b = result_id(mgr.create_bond(s, "bond1", "Lacp", [port(mgr, s, "eth3")]))
    rec = mgr.record("BondPort", b)
    assert isinstance(rec, ovm.BondPort)
    assert (rec.mode, rec.mtu, rec.monitor, rec.arp_targets, rec.addressing) == ("Lacp", 1500, "Mii", [], "None")
    assert [x["name"] for x in mgr.server_network_config(s)["bonds"]] == ["bond1"]
    mgr.delete_bond(b).wait(WAIT)
    assert mgr.server_network_config(s)["bonds"] == []
    with pytest.raises(ovm.NotFoundError):
        mgr.record("BondPort", b)


def test_a_vnic_is_hot_plugged_and_unplugged(dc: Net) -> None:
    mgr = dc.mgr
    vm = result_id(mgr.create_vm("web", ovm.VmConfig(memory_mib=512, vnics=[ovm.Vnic(network=dc.net)]),
                                 pool=dc.pool))
    mgr.start_vm(vm).wait(WAIT)
    [(mac, bridge, _)] = mgr.vm_nics(vm)
    assert bridge == "vmnet300" and mac == mgr.vm(vm).macs[0]
    info = mgr.add_vnic(vm, dc.net).wait(WAIT)
    assert info.result is not None and info.result.id == vm
    macs = mgr.vm(vm).macs
    assert len(macs) == 2 and macs[0] == mac
    new = macs[-1]
    nics = mgr.vm_nics(vm)
    assert sorted(n[0] for n in nics) == sorted(macs)
    assert all(n[1] == "vmnet300" and n[2] for n in nics)
    mgr.remove_vnic(vm, new).wait(WAIT)
    assert [n[0] for n in mgr.vm_nics(vm)] == [mac]
    assert mgr.vm(vm).macs == [mac]
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.remove_vnic(vm, "00:16:3e:ff:ff:ff").wait(WAIT)


def outcome(call: object) -> type[BaseException]:
    """The exception a change raises, whether refused at once or failed as a job."""
    try:
        assert callable(call)
        job = call()
        assert isinstance(job, ovm.Job)
        job.wait(WAIT)
    except ovm.OvmError as e:
        return type(e)
    raise AssertionError("the change was not refused")


def test_bad_input_is_refused_with_nothing_changed(dc: Net) -> None:
    mgr = dc.mgr
    s1 = dc.servers[0]
    before = [mgr.server_network_config(s) for s in dc.servers]
    bonds_before = [b.id for b in mgr.records("BondPort")]
    networks_before = [n.id for n in mgr.networks()]
    # A port already in a bond.
    assert outcome(lambda: mgr.create_bond(s1, "bond1", "Lacp", [dc.port(s1, "eth2"), dc.port(s1, "eth3")])) \
        is ovm.ConflictError
    # ARP monitoring of an 802.3ad bond.
    assert outcome(lambda: mgr.create_bond(s1, "bond3", "Lacp", [dc.port(s1, "eth3")], arp_interval_ms=200,
                                           arp_targets=["10.77.1.254"])) is ovm.InvalidArgumentError
    # VLAN ids outside 1-4094.
    assert outcome(lambda: mgr.create_vlan_interface(s1, 4095, bond=dc.bonds[0])) is ovm.InvalidArgumentError
    # Arguments refused before anything is submitted.
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_bond(s1, "bond2", "ActiveBackup", [dc.port(s1, "eth3")], arp_interval_ms=200,
                        arp_targets=["10.77.1.300"])
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.create_bond(s1, "bond2", "ActiveBackup", [dc.port(s1, "eth3")], arp_targets=["10.77.1.254"])
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_address("Bond", dc.bonds[0], "10.77.1.9")
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.set_address("Trunk", dc.bonds[0], None)
    # The bridge of another network.
    assert outcome(lambda: mgr.create_network("again", "vmnet300")) is ovm.ConflictError
    assert [mgr.server_network_config(s) for s in dc.servers] == before
    assert [b.id for b in mgr.records("BondPort")] == bonds_before
    assert [n.id for n in mgr.networks()] == networks_before


def test_an_address_is_set_and_a_management_cut_is_refused(dc: Net) -> None:
    mgr = dc.mgr
    s2 = dc.servers[1]
    mgr.set_address("Bond", dc.bonds[1], "10.77.1.20/24").wait(WAIT)
    addresses = mgr.server_network_config(s2)["addresses"]
    assert {"interface": "bond0", "address": "10.77.1.20", "prefix": 24} in addresses
    assert {"interface": "bond0", "address": "10.77.1.2", "prefix": 24} not in addresses
    # Moving eth0's address would cut the manager's link to the server: refused unless forced; when
    # forced, the manager cannot confirm it over a new connection and the server rolls it back.
    eth0 = dc.port(s2, "eth0")
    before = mgr.server_network_config(s2)
    assert outcome(lambda: mgr.set_address("Port", eth0, "10.201.0.9/16")) is ovm.ConflictError
    assert mgr.server_network_config(s2) == before
    forced = mgr.set_address("Port", eth0, "10.201.0.9/16", force=True, confirm_within=2.0)
    with pytest.raises(ovm.ConflictError, match="rolled back"):
        forced.wait(60.0)
    assert mgr.server_network_config(s2) == before


def test_drift_is_reported_and_converged(dc: Net) -> None:
    mgr = dc.mgr
    s2 = dc.servers[1]
    assert mgr.network_drift(s2) == []
    mgr.sim_remove_network_item("xen2", "bridge", "vmnet300")
    drift = mgr.network_drift(s2)
    assert drift and any("vmnet300" in line for line in drift), drift
    assert mgr.network_drift(dc.servers[0]) == []
    mgr.reapply_network(s2).wait(WAIT)
    assert mgr.network_drift(s2) == []
    assert any(b["name"] == "vmnet300" for b in mgr.server_network_config(s2)["bridges"])
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.sim_remove_network_item("xen2", "route", "x")
