"""A small simulated data centre shared by the examples: servers, a pool, storage, a network, a template."""

from __future__ import annotations

import ovm

WAIT = 60.0


def result_id(job: ovm.Job) -> str:
    """Wait for a job and return the id of the object it created."""
    result = job.wait(WAIT).result
    if result is None:
        raise RuntimeError(f"job {job.id} has no result")
    return result.id


def nfs_file_system(mgr: ovm.Manager, admin: str, name: str) -> str:
    """Give the simulated NFS server ``nfs.example.com`` an export, register the server through
    ``admin`` (its file systems are discovered) and return the exported file system's id."""
    path = f"/export/{name}"
    mgr.sim_add_nfs_export("nfs.example.com", path, 1 << 40)
    server = result_id(mgr.register_file_server(f"{name}-nfs", "Nfs", [admin], access_host="nfs.example.com"))
    return next(f.id for f in mgr.file_systems_of(server) if f.path == path)


def build(mgr: ovm.Manager, servers: int = 2, memory_mib: int = 65536) -> tuple[str, str, str]:
    """Discover `servers` simulated servers into pool `pool1` with repository `repo1`, network
    `vmnet` and template `tpl`. Returns (pool id, network id, template id)."""
    ids = [result_id(mgr.discover_server(f"sim://xen{i + 1}?memory_mib={memory_mib}&cpus=32", ovm.SIM_PASSWORD))
           for i in range(servers)]
    pool = result_id(mgr.create_pool("pool1"))
    for s in ids:
        mgr.add_server_to_pool(pool, s).wait(WAIT)
    repo = result_id(mgr.create_repository("repo1", nfs_file_system(mgr, ids[0], "fs1"), owner_pool=pool))
    for s in ids:
        mgr.present_repository(repo, s).wait(WAIT)
    net = result_id(mgr.create_network("vmnet", "xenbr1"))
    # A VM network is a bridge on the servers that have a member in it: eth1 of each server.
    ports = [p for p in mgr.records("Port") if isinstance(p, ovm.Port)]
    for s in ids:
        eth1 = next(p.id for p in ports if p.server == s and p.interface == "eth1")
        mgr.add_network_member(net, "Port", eth1).wait(WAIT)
    disk = result_id(mgr.create_virtual_disk(repo, "tpl-root", 8 << 30))
    config = ovm.VmConfig(memory_mib=512, max_memory_mib=1024, vcpus=1, max_vcpus=2, disks=[(0, disk)],
                          vnics=[ovm.Vnic(network=net, mac="00:00:00:00:00:01")], os_type="Oracle Linux 8")
    template = result_id(mgr.create_template(repo, "tpl", config, [disk]))
    return pool, net, template
