"""Import an assembly (an OVA, or an OVF with its files beside it) into a repository of a simulated
data centre, with a progress bar in bytes on stderr, then list the templates it made.

    python import_assembly.py                  # builds a small two-VM OVA itself
    python import_assembly.py PATH-OR-URL      # a .ova/.ovf file, or an http(s):// URL
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import ovm
import simlab


def raw_disk(size: int, marker: bytes) -> bytes:
    data = bytearray(size)
    data[4096:4096 + len(marker)] = marker
    return bytes(data)


def descriptor(name: str, disks: list[tuple[str, int]], vms: list[str]) -> str:
    """An OVF descriptor of `vms`, VM `i` on raw disk `disks[i]`, each with 1 vCPU, 256 MiB and a NIC."""
    refs = "".join(f'<File ovf:id="file{i}" ovf:href="{f}" ovf:size="{n}"/>' for i, (f, n) in enumerate(disks))
    sections = "".join(
        f'<Disk ovf:diskId="disk{i}" ovf:fileRef="file{i}" ovf:capacity="{n}" '
        'ovf:format="http://www.gnome.org/~markmc/qcow-image-format.html#raw"/>'
        for i, (_, n) in enumerate(disks))
    systems = "".join(
        f'<VirtualSystem ovf:id="{vm}"><Info>A VM</Info><Name>{vm}</Name>'
        '<VirtualHardwareSection><Info>hardware</Info>'
        '<Item><rasd:ElementName>1 CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>'
        '<rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>'
        '<Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>256 MB</rasd:ElementName>'
        '<rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>'
        '<rasd:VirtualQuantity>256</rasd:VirtualQuantity></Item>'
        f'<Item><rasd:ElementName>disk</rasd:ElementName><rasd:HostResource>ovf:/disk/disk{i}</rasd:HostResource>'
        '<rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>'
        '<Item><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>nic</rasd:ElementName>'
        '<rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></Item>'
        '</VirtualHardwareSection></VirtualSystem>'
        for i, vm in enumerate(vms))
    return (
        '<?xml version="1.0"?>\n'
        '<Envelope ovf:version="1.0" xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">'
        f'<References>{refs}</References><DiskSection><Info>disks</Info>{sections}</DiskSection>'
        '<NetworkSection><Info>networks</Info><Network ovf:name="VM Network"><Description>VMs</Description>'
        '</Network></NetworkSection>'
        f'<VirtualSystemCollection ovf:id="{name}"><Info>{len(vms)} VMs</Info><Name>{name}</Name>{systems}'
        '</VirtualSystemCollection></Envelope>'
    )


def build_ova(directory: Path) -> str:
    """A two-VM OVA `shop.ova` in `directory`: the descriptor, its SHA256 manifest, two raw disks."""
    disks = [("shop-web.img", raw_disk(8 << 20, b"web")), ("shop-db.img", raw_disk(6 << 20, b"db"))]
    ovf = descriptor("shop", [(f, len(d)) for f, d in disks], ["web", "db"]).encode()
    files = [("shop.ovf", ovf)]
    manifest = "".join(f"SHA256({f})= {hashlib.sha256(d).hexdigest()}\n" for f, d in files + disks)
    files += [("shop.mf", manifest.encode())] + disks
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    # Up to the end-of-archive blocks: an import stops reading there, so the zeros tarfile pads the
    # last record with would keep the bar short of 100%.
    path = directory / "shop.ova"
    path.write_bytes(buf.getvalue()[:tar.offset])
    return str(path.resolve())


def bar(done: int, total: int | None, width: int = 30) -> str:
    if total is None:
        return f"import [{'?' * width}] {done} bytes"
    fraction = done / total if total else 1.0
    filled = int(fraction * width)
    return f"import [{'#' * filled}{'.' * (width - filled)}] {done}/{total} bytes {fraction:6.1%}"


def import_with_progress(mgr: ovm.Manager, repository: str, source: str) -> str:
    """Import `source`, drawing the bar on stderr while the job runs; returns the assembly's id."""
    job = mgr.import_assembly(repository, source)
    while not job.done:
        sys.stderr.write("\r" + bar(job.bytes_done, job.bytes_total))
        sys.stderr.flush()
        time.sleep(0.05)
    info = job.wait()
    sys.stderr.write("\r" + bar(info.bytes_done, info.bytes_total) + "\n")
    if info.result is None:
        raise RuntimeError(f"job {job.id} has no result")
    return info.result.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="an OVA or OVF file, or an http(s):// URL")
    args = parser.parse_args()
    with ovm.Manager(recurring_jobs=False) as mgr, tempfile.TemporaryDirectory() as tmp:
        simlab.build(mgr, servers=2)
        repo = mgr.repository_by_name("repo1").id
        if args.source is None:
            source = build_ova(Path(tmp))
        elif "://" in args.source:
            source = args.source
        else:
            source = str(Path(args.source).resolve())
        assembly = mgr.record("Assembly", import_with_progress(mgr, repo, source))
        assert isinstance(assembly, ovm.Assembly)
        print(f"assembly {assembly.name}: {len(assembly.vm_names)} VMs, {len(assembly.disks)} disks")
        names = set(assembly.vm_names) | {f"{assembly.name}-{vm}" for vm in assembly.vm_names}
        for t in mgr.templates():
            if t.name in names:
                c = t.config
                print(f"  template {t.name:<8} {c.vcpus} vCPU {c.memory_mib} MiB "
                      f"{len(t.disks)} disk(s) {len(c.vnics)} NIC(s)")


if __name__ == "__main__":
    main()
