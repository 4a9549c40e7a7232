"""A small simulated data centre shared by the examples: servers, a pool, storage, a network, a template."""

from __future__ import annotations

import uuid

import ovm

WAIT = 60.0


def result_id(job: ovm.Job) -> str:
    """Wait for a job and return the id of the object it created."""
    result = job.wait(WAIT).result
    if result is None:
        raise RuntimeError(f"job {job.id} has no result")
    return result.id


def nfs_file_system(mgr: ovm.Manager, name: str) -> str:
    """Register an NFS file server and one exported file system; return the file system's id."""
    server_id = str(uuid.uuid4())
    server = {"id": server_id, "name": f"{name}-nfs", "kind": "Nfs", "access_host": "nfs.example.com",
              "admin_servers": [], "refreshed": True}
    mgr.create_object({"kind": "FileServer", "object": server}).wait(WAIT)
    fs_id = str(uuid.uuid4())
    fs = {"id": fs_id, "name": name, "location": {"FileServer": server_id}, "path": f"/export/{name}",
          "size_bytes": 1 << 40, "free_bytes": 1 << 40}
    mgr.create_object({"kind": "FileSystem", "object": fs}).wait(WAIT)
    return fs_id


def build(mgr: ovm.Manager, servers: int = 2, memory_mib: int = 65536) -> tuple[str, str, str]:
    """Discover `servers` simulated servers into pool `pool1` with repository `repo1`, network
    `vmnet` and template `tpl`. Returns (pool id, network id, template id)."""
    ids = [result_id(mgr.discover_server(f"sim://xen{i + 1}?memory_mib={memory_mib}&cpus=32", ovm.SIM_PASSWORD))
           for i in range(servers)]
    pool = result_id(mgr.create_pool("pool1"))
    for s in ids:
        mgr.add_server_to_pool(pool, s).wait(WAIT)
    repo = result_id(mgr.create_repository("repo1", nfs_file_system(mgr, "fs1"), owner_pool=pool))
    for s in ids:
        mgr.present_repository(repo, s).wait(WAIT)
    net = result_id(mgr.create_network("vmnet", "xenbr1"))
    disk = result_id(mgr.create_virtual_disk(repo, "tpl-root", 8 << 30))
    config = ovm.VmConfig(memory_mib=512, max_memory_mib=1024, vcpus=1, max_vcpus=2, disks=[(0, disk)],
                          vnics=[ovm.Vnic(network=net, mac="00:00:00:00:00:01")], os_type="Oracle Linux 8")
    template = result_id(mgr.create_template(repo, "tpl", config, [disk]))
    return pool, net, template
