"""The binding parity scenario through Python (see ovm-core/examples/parity.rs): prints the JSON
document the Rust and C versions print, compared by ``bindings-examples/parity_compare.py``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import ovm

WAIT = 30.0


def run(job: ovm.Job) -> str:
    result = job.wait(WAIT).result
    return result.id if result is not None else ""


def code(call: Callable[[], ovm.Job]) -> int:
    """The error code of a call refused at once or failing in its job (0: it succeeded)."""
    try:
        call().wait(WAIT)
    except ovm.OvmError as e:
        return e.code
    return 0


def dicts(records: list[Any]) -> list[Any]:
    return [r.to_dict() for r in records]


def main() -> None:
    m = ovm.Manager()
    s1 = run(m.discover_server("sim://xen1?memory_mib=32768", ovm.SIM_PASSWORD))
    s2 = run(m.discover_server("sim://xen2?memory_mib=32768", ovm.SIM_PASSWORD))
    pool = run(m.create_pool("pool1"))
    m.add_server_to_pool(pool, s1).wait(WAIT)
    m.add_server_to_pool(pool, s2).wait(WAIT)
    m.sim_add_nfs_export("nfs.example.com", "/export/fs1", 1 << 40)
    nfs = run(m.register_file_server("nfs1", "Nfs", [s1], access_host="nfs.example.com"))
    fs = m.file_systems_of(nfs)[0].id
    repo = run(m.create_repository("repo1", fs, owner_pool=pool, capacity_bytes=100 << 30))
    m.present_repository(repo, s1).wait(WAIT)
    m.present_repository(repo, s2).wait(WAIT)
    net = run(m.create_network("vmnet", "xenbr1"))
    # The VM network's bridge is made on the servers that have a member in it: eth1 of each.
    for s in (s1, s2):
        ports = [p for p in m.records("Port") if isinstance(p, ovm.Port)]
        eth1 = next(p.id for p in ports if p.server == s and p.interface == "eth1")
        m.add_network_member(net, "Port", eth1).wait(WAIT)
    disk = run(m.create_virtual_disk(repo, "web-disk", 1 << 30))

    web = run(m.create_vm("web", ovm.VmConfig(memory_mib=1024, vcpus=2, vnics=[ovm.Vnic()]), pool=pool))
    m.set_vnic_network(web, 0, net).wait(WAIT)
    m.attach_disk(web, 0, disk).wait(WAIT)
    db = run(m.create_vm("db", ovm.VmConfig(memory_mib=2048, vcpus=1), pool=pool))
    m.set_kernel(db, "/boot/vmlinuz", cmdline="console=hvc0").wait(WAIT)

    m.start_vm(web).wait(WAIT)
    running = dicts(m.vms(pool=pool, power_state="Running"))
    m.stop_vm(web, timeout=10.0, force=True).wait(WAIT)

    edited = m.object("Vm", web)
    edited["object"]["power_state"] = "Running"
    errors = {
        "duplicate_pool": code(lambda: m.create_pool("pool1")),
        "edit_power_state": code(lambda: m.update_object(edited)),
        "start_unknown_vm": code(lambda: m.start_vm(str(uuid.uuid4()))),
    }
    summary = {
        "servers_in_pool": dicts(m.servers(pool=pool)),
        "file_systems": dicts(m.records("FileSystem")),
        "repositories": dicts(m.records("Repository")),
        "networks": dicts(m.networks()),
        "disks_in_repo": dicts(m.virtual_disks(repository=repo)),
        "vms": dicts(m.vms()),
        "running_in_pool": running,
        "stopped": dicts(m.vms(power_state="Stopped")),
        "errors": errors,
    }
    print(json.dumps(summary, indent=2, sort_keys=True))
    m.close()


if __name__ == "__main__":
    main()
