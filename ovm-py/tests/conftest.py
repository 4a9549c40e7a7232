"""Shared fixtures: a manager with two simulated servers, a pool, a repository, a network and a template."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import ovm

WAIT = 20.0


@dataclass
class Lab:
    mgr: ovm.Manager
    s1: str
    s2: str
    pool: str
    fs: str
    repo: str
    net: str
    template: str

    def vm(self, name: str, memory_mib: int = 1024) -> str:
        config = ovm.VmConfig(memory_mib=memory_mib, vnics=[ovm.Vnic(network=self.net)])
        job = self.mgr.create_vm(name, config, pool=self.pool, repository=self.repo)
        result = job.wait(WAIT).result
        assert result is not None
        return result.id

    def running_vm(self, name: str) -> str:
        vm = self.vm(name)
        self.mgr.start_vm(vm).wait(WAIT)
        return vm


def result_id(job: ovm.Job) -> str:
    r = job.wait(WAIT).result
    assert r is not None
    return r.id


def iso_image(directory: Path, name: str = "install.iso") -> str:
    """Write a small file that looks like an ISO 9660 image (64 KiB of zeros with the volume
    descriptor's ``CD001`` at byte 32769) into ``directory``; returns its absolute path."""
    data = bytearray(64 << 10)
    data[32769:32774] = b"CD001"
    path = directory / name
    path.write_bytes(bytes(data))
    return str(path.resolve())


def file_system(mgr: ovm.Manager, admin: str, name: str) -> str:
    """A file system of 1 TiB exported by the simulated NFS server ``nfs.example.com``, discovered
    by registering that server (as ``NAME-server``) through ``admin``."""
    host, path = "nfs.example.com", f"/export/{name}"
    mgr.sim_add_nfs_export(host, path, 1 << 40)
    fsrv = result_id(mgr.register_file_server(f"{name}-server", "Nfs", [admin], access_host=host))
    [fs] = [f for f in mgr.file_systems_of(fsrv) if f.path == path]
    return fs.id


def port_id(mgr: ovm.Manager, server: str, interface: str) -> str:
    """The id of port ``interface`` (e.g. ``"eth1"``) of ``server``."""
    [p] = [p for p in mgr.records("Port") if isinstance(p, ovm.Port) and p.server == server
           and p.interface == interface]
    return p.id


def make_lab(mgr: ovm.Manager) -> Lab:
    s1 = result_id(mgr.discover_server("sim://xen1?memory_mib=16384", ovm.SIM_PASSWORD))
    s2 = result_id(mgr.discover_server("sim://xen2?memory_mib=16384", ovm.SIM_PASSWORD))
    fs = file_system(mgr, s1, "fs1")
    pool = result_id(mgr.create_pool("pool1"))
    mgr.add_server_to_pool(pool, s1).wait(WAIT)
    mgr.add_server_to_pool(pool, s2).wait(WAIT)
    repo = result_id(mgr.create_repository("repo1", fs, owner_pool=pool, capacity_bytes=100 << 30))
    mgr.present_repository(repo, s1).wait(WAIT)
    mgr.present_repository(repo, s2).wait(WAIT)
    net = result_id(mgr.create_network("vmnet", "xenbr1"))
    # A VM network is a bridge on the servers that have a member in it: eth1 of each server.
    for s in (s1, s2):
        mgr.add_network_member(net, "Port", port_id(mgr, s, "eth1")).wait(WAIT)
    disk = result_id(mgr.create_virtual_disk(repo, "tpl-disk", 4 << 30))
    disk2 = result_id(mgr.create_virtual_disk(repo, "tpl-data", 2 << 30))
    config = ovm.VmConfig(
        memory_mib=1024, max_memory_mib=2048, max_vcpus=2, disks=[(0, disk), (1, disk2)],
        vnics=[ovm.Vnic(network=net, mac="00:00:00:00:00:01")],
    )
    template = result_id(mgr.create_template(repo, "tpl", config, [disk, disk2]))
    return Lab(mgr, s1, s2, pool, fs, repo, net, template)


@pytest.fixture
def mgr() -> Iterator[ovm.Manager]:
    m = ovm.Manager(recurring_jobs=False)
    yield m
    m.close()


@pytest.fixture
def lab(mgr: ovm.Manager) -> Lab:
    return make_lab(mgr)
