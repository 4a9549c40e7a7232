"""A VLAN network over bonds on a pool: on every server eth1 and eth2 bonded as bond0 (active-backup,
ARP-monitored, addressed on a storage LAN), VLAN 300 on the bond, a VM network on bridge vmnet300
over the VLANs, and a VM on it with a second VNIC hot-plugged. Simulated servers by default."""

from __future__ import annotations

import argparse

import ovm
import simlab

WAIT = simlab.WAIT


def port(mgr: ovm.Manager, server: str, interface: str) -> str:
    """The id of port `interface` of `server`."""
    ports = [p for p in mgr.records("Port") if isinstance(p, ovm.Port)]
    return next(p.id for p in ports if p.server == server and p.interface == interface)


def build(mgr: ovm.Manager, pool: str, vlan_id: int, subnet: str) -> str:
    """Bond, VLAN and VM network on every server of `pool`; returns the network's id."""
    vlans = []
    for i, server in enumerate(sorted(mgr.pool(pool).servers, key=lambda s: mgr.server(s).name)):
        ports = [port(mgr, server, "eth1"), port(mgr, server, "eth2")]
        bond = simlab.result_id(mgr.create_bond(
            server, "bond0", "ActiveBackup", ports, mtu=1500,
            arp_interval_ms=200, arp_targets=[f"{subnet}.254"], address=f"{subnet}.{i + 1}/24",
        ))
        vlans.append(simlab.result_id(mgr.create_vlan_interface(server, vlan_id, bond=bond)))
    net = simlab.result_id(mgr.create_network(f"vm{vlan_id}", f"vmnet{vlan_id}"))
    for vlan in vlans:
        mgr.add_network_member(net, "Vlan", vlan).wait(WAIT)
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=2, help="simulated servers in the pool")
    parser.add_argument("--vlan", type=int, default=300, help="VLAN id")
    parser.add_argument("--subnet", default="10.77.1", help="storage LAN of the bonds (first three octets)")
    args = parser.parse_args()
    with ovm.Manager(recurring_jobs=False) as mgr:
        ids = [simlab.result_id(mgr.discover_server(f"sim://xen{i + 1}", ovm.SIM_PASSWORD))
               for i in range(args.servers)]
        pool = simlab.result_id(mgr.create_pool("pool1"))
        for s in ids:
            mgr.add_server_to_pool(pool, s).wait(WAIT)
        net = build(mgr, pool, args.vlan, args.subnet)
        for s in ids:
            cfg = mgr.server_network_config(s)
            bonds = ", ".join(f"{b['name']} ({'+'.join(b['ports'])})" for b in cfg["bonds"])
            bridges = ", ".join(f"{b['name']} [{' '.join(b['interfaces'])}]" for b in cfg["bridges"])
            drift = mgr.network_drift(s)
            print(f"{mgr.server(s).name}: bonds {bonds}; bridges {bridges}; "
                  f"{'no drift' if not drift else '; '.join(drift)}")
        vm = simlab.result_id(mgr.create_vm("web", ovm.VmConfig(memory_mib=512, vnics=[ovm.Vnic(network=net)]),
                                            pool=pool))
        mgr.start_vm(vm).wait(WAIT)
        mgr.add_vnic(vm, net).wait(WAIT)
        for mac, bridge, up in mgr.vm_nics(vm):
            print(f"web: {mac} on {bridge}{'' if up else ' (down)'}")


if __name__ == "__main__":
    main()
