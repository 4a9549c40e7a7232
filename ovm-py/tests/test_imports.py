"""Repository contents through Python: a template archive and a two-VM OVA imported with their
progress in bytes, a hostile archive refused with nothing left, clones with their disks customised,
and a lost manager database rebuilt from the servers by a second manager on the same simulated world."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

import ovm
from conftest import WAIT, Lab, result_id

VM_CFG = """\
OVM_simple_name = 'OL7 template'
memory = 512
vcpus = 1
disk = ['file:/OVS/Repositories/x/VirtualDisks/System.img,xvda,w']
vif = ['bridge=xenbr0']
"""


def image(size: int, marker: bytes) -> bytes:
    """A disk image: zeros with a marker."""
    data = bytearray(size)
    data[4096:4096 + len(marker)] = marker
    return bytes(data)


def write_tar(path: Path, files: list[tuple[str, bytes]]) -> str:
    """A ustar archive of `files` (in that order) at `path`, ending with its end-of-archive blocks
    (without the zeros `tarfile` pads the last record with, which an import does not read); returns
    its absolute path."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue()[:tar.offset])
    return str(path.resolve())


def template_archive(directory: Path) -> str:
    return write_tar(directory / "OVM_OL7.tar", [
        ("OVM_OL7/vm.cfg", VM_CFG.encode()),
        ("OVM_OL7/System.img", image(1 << 20, b"template-disk")),
    ])


def ovf(files: list[tuple[str, int]]) -> str:
    """An OVF descriptor of two VMs, `web` and `db`, each on one raw disk of `files`."""
    refs = "".join(f'<File ovf:id="file{i}" ovf:href="{f}" ovf:size="{n}"/>' for i, (f, n) in enumerate(files))
    disks = "".join(
        f'<Disk ovf:diskId="vmdisk{i}" ovf:fileRef="file{i}" ovf:capacity="4" '
        'ovf:capacityAllocationUnits="byte * 2^20" '
        'ovf:format="http://www.gnome.org/~markmc/qcow-image-format.html#raw"/>'
        for i in range(len(files)))

    def system(i: int, name: str) -> str:
        return (
            f'<VirtualSystem ovf:id="{name}"><Info>A VM</Info><Name>{name}</Name>\n'
            '<VirtualHardwareSection><Info>hw</Info>\n'
            '<Item><rasd:ElementName>1 CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>'
            '<rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>\n'
            '<Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>256 MB</rasd:ElementName>'
            '<rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>'
            '<rasd:VirtualQuantity>256</rasd:VirtualQuantity></Item>\n'
            f'<Item><rasd:ElementName>disk</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk{i}</rasd:HostResource>'
            '<rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>\n'
            '<Item><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>nic</rasd:ElementName>'
            '<rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></Item>\n'
            '</VirtualHardwareSection></VirtualSystem>'
        )

    return (
        '<?xml version="1.0"?>\n'
        '<Envelope ovf:version="1.0" xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">\n'
        f'<References>{refs}</References>\n'
        f'<DiskSection><Info>disks</Info>{disks}</DiskSection>\n'
        '<NetworkSection><Info>nets</Info><Network ovf:name="VM Network"><Description>n</Description></Network>'
        '</NetworkSection>\n'
        f'<VirtualSystemCollection ovf:id="shop"><Info>two VMs</Info><Name>shop</Name>{system(0, "web")}'
        f'{system(1, "db")}</VirtualSystemCollection>\n'
        '</Envelope>'
    )


def ova(directory: Path) -> str:
    """A two-VM OVA: the descriptor first, then its manifest, then the raw disks."""
    d1, d2 = image(3 << 20, b"web-disk"), image(2 << 20, b"db-disk")
    descriptor = ovf([("shop-disk1.img", len(d1)), ("shop-disk2.img", len(d2))]).encode()
    manifest = "".join(
        f"SHA256({name})= {hashlib.sha256(data).hexdigest()}\n"
        for name, data in [("shop.ovf", descriptor), ("shop-disk1.img", d1), ("shop-disk2.img", d2)]
    ).encode()
    return write_tar(directory / "shop.ova", [
        ("shop.ovf", descriptor), ("shop.mf", manifest), ("shop-disk1.img", d1), ("shop-disk2.img", d2),
    ])


def test_a_template_archive_is_imported_with_its_progress_in_bytes(lab: Lab, tmp_path: Path) -> None:
    mgr = lab.mgr
    src = template_archive(tmp_path)
    job = mgr.import_template(lab.repo, src)
    info = job.wait(WAIT)
    size = Path(src).stat().st_size
    assert (info.bytes_done, info.bytes_total) == (size, size)
    assert (job.bytes_done, job.bytes_total) == (size, size)
    assert info.result is not None
    t = mgr.template(info.result.id)
    assert t.name == "OL7 template"
    assert (t.config.memory_mib, t.config.vcpus) == (512, 1)
    [disk] = t.disks
    assert mgr.virtual_disk(disk).size_bytes == 1 << 20
    # Jobs that move no data say so.
    other = mgr.create_tag("plain").wait(WAIT)
    assert (other.bytes_done, other.bytes_total) == (0, None)
    # A clone of it starts.
    vm = result_id(mgr.clone_template(t.id, "ol7-1", pool=lab.pool))
    mgr.start_vm(vm).wait(WAIT)
    assert mgr.vm(vm).power_state == "Running"


def test_a_two_vm_ova_is_imported_as_an_assembly_with_two_templates(lab: Lab, tmp_path: Path) -> None:
    mgr = lab.mgr
    src = ova(tmp_path)
    job = mgr.import_assembly(lab.repo, src, "shop")
    info = job.wait(WAIT)
    size = Path(src).stat().st_size
    assert (info.bytes_done, info.bytes_total) == (size, size)
    assert info.result is not None and info.result.kind == "Assembly"
    assembly = mgr.record("Assembly", info.result.id)
    assert isinstance(assembly, ovm.Assembly)
    assert assembly.name == "shop"
    assert assembly.vm_names == ["web", "db"]
    assert [mgr.virtual_disk(d).size_bytes for d in assembly.disks] == [4 << 20, 4 << 20]
    web = mgr.template_by_name("web")
    assert (web.config.vcpus, web.config.memory_mib, len(web.config.vnics)) == (1, 256, 1)
    assert mgr.template_by_name("db").disks[0] in assembly.disks


def test_a_hostile_archive_is_refused_and_leaves_nothing(lab: Lab, tmp_path: Path) -> None:
    mgr = lab.mgr
    templates, disks = len(mgr.templates()), len(mgr.virtual_disks())
    src = write_tar(tmp_path / "dotdot.tar", [
        ("t/vm.cfg", VM_CFG.encode()),
        ("t/../../etc/System.img", image(64 << 10, b"x")),
    ])
    job = mgr.import_template(lab.repo, src)
    with pytest.raises(ovm.InvalidArgumentError):
        job.wait(WAIT)
    assert job.info().state == "Failed"
    assert (len(mgr.templates()), len(mgr.virtual_disks())) == (templates, disks)
    # Bad sources are refused before any job.
    for bad in ["relative/path.tar", "ftp://h/x.tar"]:
        with pytest.raises(ovm.InvalidArgumentError):
            mgr.import_template(lab.repo, bad)
    with pytest.raises(ovm.InvalidArgumentError):
        mgr.import_assembly(lab.repo, "relative.ova")


def test_a_clone_copies_each_disk_where_it_is_told_or_shares_it(lab: Lab) -> None:
    mgr = lab.mgr
    # A second export of the NFS server, found by refreshing it, holds a second repository.
    mgr.sim_add_nfs_export("nfs.example.com", "/export/fast", 1 << 40)
    [fsrv] = mgr.records("FileServer")
    mgr.refresh_file_server(fsrv.id).wait(WAIT)
    [fs] = [f.id for f in mgr.file_systems_of(fsrv.id) if f.path == "/export/fast"]
    fast = result_id(mgr.create_repository("fast", fs))
    mgr.present_repository_to(fast, [lab.s1, lab.s2]).wait(WAIT)
    system = result_id(mgr.create_virtual_disk(lab.repo, "system", 1 << 30))
    shared = result_id(mgr.create_virtual_disk(lab.repo, "shared", 1 << 30, shareable=True))
    config = ovm.VmConfig(disks=[(0, system), (1, shared)])
    tpl = result_id(mgr.create_template(lab.repo, "two-disks", config, [system, shared]))

    vm = result_id(mgr.clone_template(tpl, "custom", pool=lab.pool, disks={0: ("Copy", fast), 1: "Share"}))
    [(_, _, copy), (_, _, same)] = mgr.vm(vm).config.disks
    assert copy is not None and copy != system
    assert mgr.virtual_disk(copy).repository == fast
    assert same == shared
    # A VM clones the same way; a plain "Copy" goes to the clone's repository.
    vm2 = result_id(mgr.clone_vm(vm, "custom2", disks={0: "Copy", 1: "Share"}))
    [(_, _, copy2), (_, _, same2)] = mgr.vm(vm2).config.disks
    assert copy2 is not None and copy2 not in (copy, system)
    assert same2 == shared
    mgr.start_vm(vm).wait(WAIT)

    # Bad choices are refused before anything is copied.
    before = len(mgr.virtual_disks())
    for bad in [{0: "Share"}, {5: "Share"}, {0: "Move"}, {1: ("Share", fast)}, {0: ("Copy", "not-an-id")}]:
        with pytest.raises(ovm.InvalidArgumentError):
            mgr.clone_template(tpl, "bad", pool=lab.pool, disks=bad)
    assert len(mgr.virtual_disks()) == before


def test_a_lost_database_is_rebuilt_from_the_servers(lab: Lab, tmp_path: Path) -> None:
    mgr = lab.mgr
    tpl = result_id(mgr.import_template(lab.repo, template_archive(tmp_path), "ol7"))
    running = result_id(mgr.clone_template(tpl, "running", pool=lab.pool))
    mgr.start_vm(running).wait(WAIT)
    stopped = result_id(mgr.clone_template(tpl, "stopped", pool=lab.pool))
    disks = sorted(d.id for d in mgr.virtual_disks())
    logins = [(s.address, ovm.SIM_PASSWORD) for s in mgr.servers()]

    with ovm.Manager(recurring_jobs=False, sim_world_of=mgr) as fresh:
        report = fresh.rebuild_from_servers(logins)
        assert isinstance(report, ovm.RebuildReport)
        assert len(report.servers) == 2
        assert sorted(s.address for s in fresh.servers()) == sorted(a for a, _ in logins)
        assert report.repositories == [lab.repo]
        # Every disk, the imported template and both VMs come back; server pools and networks are
        # not kept in repositories: the report names each VM's pool, and the lab's template "tpl",
        # whose VNIC names the network "vmnet", is not recovered.
        pools = [line for line in report.not_recovered if "server pool" in line]
        others = [line for line in report.not_recovered if line not in pools]
        assert len(pools) == 2
        assert len(others) == 1 and others[0].startswith('Template "tpl"') and "Network" in others[0]
        assert report.objects == 1 + len(disks) + 1 + 2
        [(vm, on)] = report.running
        assert vm == running and on in report.servers
        assert fresh.vm(running).power_state == "Running"
        assert fresh.vm(stopped).name == "stopped"
        assert [t.name for t in fresh.templates()] == ["ol7"]
        assert sorted(d.id for d in fresh.virtual_disks()) == disks
        assert "RebuildReport(servers=2" in repr(report)
        # Only into an empty inventory.
        with pytest.raises(ovm.ConflictError):
            fresh.rebuild_from_servers(logins)
    with pytest.raises(ovm.InvalidArgumentError), ovm.Manager(recurring_jobs=False) as empty:
        empty.rebuild_from_servers([])
