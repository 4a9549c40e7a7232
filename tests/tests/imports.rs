//! Repository contents on simulated servers: an Oracle VM template archive, a two-VM OVA (from a
//! file and over HTTP) and an ISO imported and cloned; hostile archives refused with nothing left
//! in the repository; and a lost manager database rebuilt from the repositories, object by object.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use common::{ok, result_id, WAIT};
use ovm_core::driver::sim::{SimDriver, SimWorld, DEFAULT_PASSWORD};
use ovm_core::driver::{Driver, RepositoryFile};
use ovm_core::manager::{
    repository_path, CloneOptions, DiskClone, FileServerSpec, PoolSpec, RepositorySpec, ServerLogin, VmSpec,
};
use ovm_core::model::*;
use ovm_core::{ErrorKind, Manager};

const GIB: u64 = 1 << 30;

/// One ustar header and its data (declared size `size`, which may differ from the data's).
fn tar_entry(out: &mut Vec<u8>, name: &str, kind: u8, data: &[u8], size: u64, link: &str) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 8u64.pow(11) {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256 for sizes octal cannot hold.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        tar_entry(&mut out, name, b'0', data, data.len() as u64, "");
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A disk image: mostly holes, with a marker.
fn image(size: usize, marker: &str) -> Vec<u8> {
    let mut v = vec![0u8; size];
    v[4096..4096 + marker.len()].copy_from_slice(marker.as_bytes());
    v
}

const VM_CFG: &str = "\
# An Oracle VM 3 template
OVM_simple_name = 'OL7 template'
OVM_os_type = 'Oracle Linux 7'
OVM_domain_type = 'xen_pvm'
name = '0004fb00000600001234'
memory = 512
maxmem = 1024
vcpus = 1
disk = ['file:/OVS/Repositories/0004fb0000030000aaaa/VirtualDisks/System.img,xvda,w']
vif = ['mac=00:21:f6:00:00:01,bridge=0a0a0a00']
kernel = 'vmlinuz'
ramdisk = 'initrd.img'
extra = 'console=hvc0'
on_crash = 'restart'
";

fn template_archive() -> Vec<u8> {
    tar(&[
        ("OVM_OL7/vm.cfg", VM_CFG.as_bytes()),
        ("OVM_OL7/System.img", &image(1 << 20, "template-disk")),
        ("OVM_OL7/vmlinuz", b"kernel"),
        ("OVM_OL7/initrd.img", b"initrd"),
        ("OVM_OL7/README", b"not used"),
    ])
}

fn ovf(files: &[(&str, usize)]) -> String {
    let refs: String = files
        .iter()
        .enumerate()
        .map(|(i, (f, n))| format!(r#"<File ovf:id="file{i}" ovf:href="{f}" ovf:size="{n}"/>"#))
        .collect();
    let disks: String = files
        .iter()
        .enumerate()
        .map(|(i, _)| {
            format!(
                r#"<Disk ovf:diskId="vmdisk{i}" ovf:fileRef="file{i}" ovf:capacity="4" ovf:capacityAllocationUnits="byte * 2^20" ovf:format="http://www.gnome.org/~markmc/qcow-image-format.html#raw"/>"#
            )
        })
        .collect();
    let system = |i: usize, name: &str| {
        format!(
            r#"<VirtualSystem ovf:id="{name}"><Info>A VM</Info><Name>{name}</Name>
<VirtualHardwareSection><Info>hw</Info>
<Item><rasd:ElementName>1 CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
<Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>256 MB</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>256</rasd:VirtualQuantity></Item>
<Item><rasd:ElementName>disk</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk{i}</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
<Item><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>nic</rasd:ElementName><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></Item>
</VirtualHardwareSection></VirtualSystem>"#
        )
    };
    format!(
        r#"<?xml version="1.0"?>
<Envelope ovf:version="1.0" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
<References>{refs}</References>
<DiskSection><Info>disks</Info>{disks}</DiskSection>
<NetworkSection><Info>nets</Info><Network ovf:name="VM Network"><Description>n</Description></Network></NetworkSection>
<VirtualSystemCollection ovf:id="shop"><Info>two VMs</Info><Name>shop</Name>{}{}</VirtualSystemCollection>
</Envelope>"#,
        system(0, "web"),
        system(1, "db")
    )
}

fn sha256(data: &[u8]) -> String {
    let mut h = ovm_core::import::manifest::Hasher::new(ovm_core::import::manifest::DigestAlg::Sha256);
    h.update(data);
    h.finish()
}

/// A two-VM OVA; `tamper` changes a disk after its checksum was taken.
fn ova(tamper: bool) -> Vec<u8> {
    ova_with(tamper, false)
}

/// A two-VM OVA, its manifest second or (as OVF 2.0 allows) last.
fn ova_with(tamper: bool, manifest_last: bool) -> Vec<u8> {
    let d1 = image(3 << 20, "web-disk");
    let mut d2 = image(2 << 20, "db-disk");
    let descriptor = ovf(&[("shop-disk1.img", d1.len()), ("shop-disk2.img", d2.len())]);
    let mf = format!(
        "SHA256(shop.ovf)= {}\nSHA256(shop-disk1.img)= {}\nSHA256(shop-disk2.img)= {}\n",
        sha256(descriptor.as_bytes()),
        sha256(&d1),
        sha256(&d2)
    );
    if tamper {
        d2[9999] = 1;
    }
    if manifest_last {
        return tar(&[
            ("shop.ovf", descriptor.as_bytes()),
            ("shop-disk1.img", &d1),
            ("shop-disk2.img", &d2),
            ("shop.mf", mf.as_bytes()),
        ]);
    }
    tar(&[
        ("shop.ovf", descriptor.as_bytes()),
        ("shop.mf", mf.as_bytes()),
        ("shop-disk1.img", &d1),
        ("shop-disk2.img", &d2),
    ])
}

fn iso(size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    v[32769..32774].copy_from_slice(b"CD001");
    v
}

struct Dc {
    mgr: Manager,
    world: SimWorld,
    repo: RepositoryId,
    servers: Vec<ServerId>,
    pool: PoolId,
    dir: PathBuf,
}

fn dc(tag: &str) -> Dc {
    let world = SimWorld::default();
    world.add_nfs_export("nfs1", "/srv/repo", 200 * GIB);
    let mgr = Manager::builder().sim_world(world.clone()).recurring_jobs(false).open().unwrap();
    let servers: Vec<ServerId> = (1..=2)
        .map(|k| ServerId(result_id(mgr.discover_server(&format!("sim://xen{k}"), DEFAULT_PASSWORD))))
        .collect();
    let fsrv = FileServerId(result_id(mgr.register_file_server(FileServerSpec::nfs(
        "nfs1",
        "nfs1",
        vec![servers[0]],
    ))));
    let fs = mgr.file_systems_of(fsrv).into_iter().find(|f| f.path == "/srv/repo").unwrap().id;
    let repo = RepositoryId(result_id(mgr.create_repository(RepositorySpec {
        name: "repo1".into(),
        backing: RepositoryBacking::FileSystem(fs),
        owner_pool: None,
        capacity_bytes: 0,
    })));
    ok(mgr.present_repository_to(repo, &servers));
    let pool = PoolId(result_id(mgr.create_pool(PoolSpec::new("pool1"))));
    for s in &servers {
        ok(mgr.add_server_to_pool(pool, *s));
    }
    let dir = std::env::temp_dir().join(format!("ovm-imports-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Dc { mgr, world, repo, servers, pool, dir }
}

impl Dc {
    fn file(&self, name: &str, data: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, data).unwrap();
        p.to_str().unwrap().to_owned()
    }

    fn listing(&self) -> Vec<RepositoryFile> {
        let hv = SimDriver::new(self.world.clone())
            .connect("sim://xen1", DEFAULT_PASSWORD, self.mgr.id())
            .unwrap();
        hv.file_storage().unwrap().list_repository(&repository_path(self.repo)).unwrap()
    }

    fn failed(&self, job: ovm_core::Result<ovm_core::JobHandle>) -> ovm_core::Error {
        job.expect("job accepted").wait(WAIT).expect_err("the import fails")
    }
}

impl Dc {
    fn in_pool(&self) -> CloneOptions {
        CloneOptions { pool: Some(self.pool), ..CloneOptions::default() }
    }
}

impl Drop for Dc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serve `body` over HTTP for `n` requests; returns the URL of `/name`.
fn http(body: Vec<u8>, name: &str, n: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/{name}", l.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
            let _ = s.write_all(&body);
        }
    });
    url
}

#[test]
fn a_template_archive_an_ova_and_an_iso_are_imported_and_cloned() {
    let dc = dc("ok");
    // An Oracle VM template archive, from a file.
    let src = dc.file("OVM_OL7.tar", &template_archive());
    let job = ok(dc.mgr.import_template(dc.repo, &src, None));
    let len = std::fs::metadata(&src).unwrap().len();
    assert_eq!((job.bytes_done, job.bytes_total), (len, Some(len)), "progress counts the archive's bytes");
    let t = dc.mgr.get::<Template>(TemplateId(job.result.unwrap().id)).unwrap();
    assert_eq!(t.name, "OL7 template");
    assert_eq!(t.config.os_type, "Oracle Linux 7");
    assert_eq!((t.config.memory_mib, t.config.max_memory_mib), (512, 1024));
    assert_eq!(t.disks.len(), 1);
    let disk = dc.mgr.get::<VirtualDisk>(t.disks[0]).unwrap();
    assert_eq!(disk.size_bytes, 1 << 20);
    assert_eq!(
        dc.world.file_contents(&disk.path).unwrap(),
        image(1 << 20, "template-disk"),
        "the bytes arrived"
    );
    let k = t.config.pv_kernel.clone().expect("the archive's kernel boots it");
    assert!(k.kernel.ends_with("/vmlinuz") && k.kernel.starts_with(&repository_path(dc.repo)), "{k:?}");
    assert_eq!(k.cmdline, "console=hvc0");
    let files: Vec<String> = dc.listing().into_iter().map(|f| f.path).collect();
    assert!(files.iter().all(|f| !f.ends_with("README")), "what vm.cfg does not use is not kept: {files:?}");
    assert!(files.iter().any(|f| f.starts_with("Templates/") && f.ends_with("/vm.cfg")), "{files:?}");

    // A two-VM OVA, over HTTP.
    let url = http(ova(false), "shop.ova", 1);
    let job = ok(dc.mgr.import_assembly(dc.repo, &url, None));
    let a = dc.mgr.get::<Assembly>(AssemblyId(job.result.unwrap().id)).unwrap();
    assert_eq!(a.name, "shop");
    assert_eq!(a.vm_names, ["web", "db"]);
    assert_eq!(a.disks.len(), 2);
    for (d, marker, size) in [(a.disks[0], "web-disk", 3 << 20), (a.disks[1], "db-disk", 2 << 20)] {
        let disk = dc.mgr.get::<VirtualDisk>(d).unwrap();
        assert_eq!(disk.size_bytes, 4 << 20, "grown to the OVF's capacity");
        let mut want = image(size, marker);
        want.resize(4 << 20, 0);
        assert_eq!(dc.world.file_contents(&disk.path).unwrap(), want, "the bytes of {marker} arrived");
    }
    let web = dc.mgr.get_by_name::<Template>("web").unwrap();
    assert_eq!(web.from_assembly, Some(a.id));
    assert_eq!((web.config.vcpus, web.config.memory_mib, web.config.vnics.len()), (1, 256, 1));

    // The manifest may also end the archive (OVF 2.0); a tampered disk is then caught at the end.
    let src = dc.file("shop2.ova", &ova_with(false, true));
    let a2 = AssemblyId(result_id(dc.mgr.import_assembly(dc.repo, &src, Some("shop2"))));
    assert_eq!(dc.mgr.get::<Assembly>(a2).unwrap().disks.len(), 2);
    let src = dc.file("shop3.ova", &ova_with(true, true));
    let e = dc.failed(dc.mgr.import_assembly(dc.repo, &src, Some("shop3")));
    assert!(e.to_string().contains("checksum"), "{e}");
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Repository, dc.repo.0)));
    let e = dc.mgr.import_assembly(dc.repo, &src, Some("shop2")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "a name in use is refused at once");

    // An ISO, from a file; a file that is no ISO is refused.
    let src = dc.file("install.iso", &iso(64 << 10));
    let cd = VirtualCdromId(result_id(dc.mgr.import_iso(dc.repo, "install", &src)));
    assert_eq!(dc.mgr.get::<VirtualCdrom>(cd).unwrap().size_bytes, 64 << 10);
    let src = dc.file("not.iso", &vec![7u8; 64 << 10]);
    let e = dc.failed(dc.mgr.import_iso(dc.repo, "bogus", &src));
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // Clones start.
    let db = dc.mgr.get_by_name::<Template>("db").unwrap().id;
    for (tpl, name) in [(t.id, "ol7-1"), (web.id, "web-1"), (db, "db-1")] {
        let vm = VmId(result_id(dc.mgr.clone_template(tpl, name, dc.in_pool())));
        ok(dc.mgr.start_vm(vm));
        assert_eq!(dc.mgr.get::<Vm>(vm).unwrap().power_state, PowerState::Running);
    }
    // A clone assigned to no pool and no server starts on the server it is started on, which it
    // is then assigned to.
    let vm = VmId(result_id(dc.mgr.clone_template(t.id, "ol7-free", CloneOptions::default())));
    let e = dc.mgr.start_vm(vm).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    ok(dc.mgr.start_vm_on(vm, dc.servers[1]));
    let v = dc.mgr.get::<Vm>(vm).unwrap();
    assert_eq!((v.power_state, v.server, v.pool), (PowerState::Running, Some(dc.servers[1]), None));
}

#[test]
fn deleting_a_template_takes_its_boot_files_unless_a_clone_boots_them() {
    let dc = dc("delete");
    let used = |dc: &Dc| dc.mgr.repository(dc.repo).unwrap().used_bytes;
    let before = used(&dc);
    let src = dc.file("a.tar", &template_archive());
    let t = TemplateId(result_id(dc.mgr.import_template(dc.repo, &src, Some("a"))));
    let disk = dc.mgr.get::<Template>(t).unwrap().disks[0];
    ok(dc.mgr.delete_object(ObjectRef::new(ObjectKind::Template, t.0)));
    let files: Vec<String> = dc.listing().into_iter().map(|f| f.path).collect();
    assert!(files.iter().all(|f| !f.ends_with("vmlinuz") && !f.ends_with("initrd.img")), "{files:?}");
    assert_eq!(used(&dc), before + (1 << 20), "only the template's disk (an object of its own) is left");
    // A clone boots the template's kernel: it stays when the template goes.
    let src = dc.file("b.tar", &template_archive());
    let t = TemplateId(result_id(dc.mgr.import_template(dc.repo, &src, Some("b"))));
    let vm = VmId(result_id(dc.mgr.clone_template(t, "b-vm", dc.in_pool())));
    ok(dc.mgr.delete_object(ObjectRef::new(ObjectKind::Template, t.0)));
    let k = dc.mgr.get::<Vm>(vm).unwrap().config.pv_kernel.clone().unwrap().kernel;
    assert!(dc.world.file_size(&k).is_some(), "{k} is kept for the clone");
    let _ = disk;
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let dc = dc("hostile");
    let before = dc.listing();
    let templates = dc.mgr.list::<Template>(|_| true).len();
    let disk = image(64 << 10, "x");
    let cfg = VM_CFG.as_bytes();
    let mut cases: Vec<(&str, Vec<u8>, ErrorKind)> = Vec::new();
    cases.push((
        "dotdot",
        tar(&[("t/vm.cfg", cfg), ("t/../../etc/System.img", &disk)]),
        ErrorKind::InvalidArgument,
    ));
    cases.push(("absolute", tar(&[("/etc/System.img", &disk), ("vm.cfg", cfg)]), ErrorKind::InvalidArgument));
    for (tag, kind) in [("symlink", b'2'), ("hardlink", b'1'), ("device", b'3'), ("fifo", b'6')] {
        let mut a = Vec::new();
        tar_entry(&mut a, "t/System.img", b'0', &disk, disk.len() as u64, "");
        tar_entry(&mut a, "t/vmlinuz", kind, b"", 0, "/etc/shadow");
        tar_entry(&mut a, "t/vm.cfg", b'0', cfg, cfg.len() as u64, "");
        a.extend_from_slice(&[0u8; 1024]);
        cases.push((tag, a, ErrorKind::InvalidArgument));
    }
    let whole = template_archive();
    cases.push(("truncated", whole[..whole.len() / 2].to_vec(), ErrorKind::InvalidArgument));
    let mut huge = Vec::new();
    tar_entry(&mut huge, "t/vm.cfg", b'0', cfg, cfg.len() as u64, "");
    tar_entry(&mut huge, "t/System.img", b'0', &disk, 300 * GIB, "");
    cases.push(("larger than the repository", huge, ErrorKind::InsufficientResources));
    let mut short = Vec::new();
    tar_entry(&mut short, "t/System.img", b'0', &disk, disk.len() as u64 + 4096, "");
    cases.push(("shorter than declared", short, ErrorKind::InvalidArgument));
    cases.push(("no vm.cfg", tar(&[("t/System.img", &disk)]), ErrorKind::InvalidArgument));
    // A boot file that is not in the archive would be a file of the server loaded into the guest.
    let server_file = VM_CFG.replace("ramdisk = 'initrd.img'", "ramdisk = '/etc/shadow'");
    cases.push((
        "a ramdisk from the server",
        tar(&[("t/vm.cfg", server_file.as_bytes()), ("t/System.img", &disk), ("t/vmlinuz", b"k")]),
        ErrorKind::InvalidArgument,
    ));
    // A data file may not take a configuration file's name; one file may not be two disks.
    cases.push((
        "a data file named .cfg",
        tar(&[("t/vm.cfg", cfg), ("t/System.img.cfg", &disk)]),
        ErrorKind::InvalidArgument,
    ));
    let twice = VM_CFG.replace(
        "disk = ['file:/OVS/Repositories/0004fb0000030000aaaa/VirtualDisks/System.img,xvda,w']",
        "disk = ['file:/x/System.img,xvda,w', 'file:/x/System.img,xvdb,w']",
    );
    cases.push((
        "one file as two disks",
        tar(&[
            ("t/vm.cfg", twice.as_bytes()),
            ("t/System.img", &disk),
            ("t/vmlinuz", b"k"),
            ("t/initrd.img", b"i"),
        ]),
        ErrorKind::InvalidArgument,
    ));
    for (tag, archive, kind) in cases {
        let src = dc.file(&format!("{tag}.tar").replace(' ', "-"), &archive);
        let e = dc.failed(dc.mgr.import_template(dc.repo, &src, None));
        assert_eq!(e.kind(), kind, "{tag}: {e}");
        assert_eq!(dc.listing(), before, "{tag}: nothing is left in the repository");
        assert_eq!(dc.mgr.list::<Template>(|_| true).len(), templates, "{tag}");
        ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Repository, dc.repo.0)));
    }
    // Assemblies: a checksum that does not match, an OVF with entities, a descriptor that is not first.
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><Envelope>&lol2;</Envelope>"#;
    let mut ova_cases: Vec<(&str, Vec<u8>)> = vec![
        ("tampered", ova(true)),
        ("entities", tar(&[("bomb.ovf", bomb.as_bytes())])),
        (
            "descriptor not first",
            tar(&[("d.img", &disk), ("x.ovf", ovf(&[("d.img", disk.len())]).as_bytes())]),
        ),
    ];
    let vmdk = ovf(&[("d.vmdk", disk.len()), ("e.vmdk", disk.len())]).replace(
        "http://www.gnome.org/~markmc/qcow-image-format.html#raw",
        "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized",
    );
    ova_cases.push(("vmdk", tar(&[("v.ovf", vmdk.as_bytes()), ("d.vmdk", &disk)])));
    for (tag, archive) in ova_cases {
        let src = dc.file(&format!("{tag}.ova").replace(' ', "-"), &archive);
        let e = dc.failed(dc.mgr.import_assembly(dc.repo, &src, None));
        let why = match tag {
            "tampered" => "checksum",
            "entities" => "DOCTYPE",
            "descriptor not first" => "begins with its .ovf descriptor",
            _ => "raw disk images only",
        };
        assert!(e.to_string().contains(why), "{tag}: {e}");
        assert_eq!(dc.listing(), before, "{tag}: nothing is left in the repository");
        assert!(dc.mgr.list::<Assembly>(|_| true).is_empty(), "{tag}");
        ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Repository, dc.repo.0)));
    }
    // A URL that redirects to another server.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/a.ova", l.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf);
        let _ = s.write_all(
            b"HTTP/1.1 302 Found\r\nLocation: http://198.51.100.9/a.ova\r\nContent-Length: 0\r\n\r\n",
        );
    });
    let e = dc.failed(dc.mgr.import_assembly(dc.repo, &url, None));
    assert!(e.to_string().contains("198.51.100.9"), "{e}");
    assert_eq!(dc.listing(), before);
    // Bad arguments are refused before any job.
    for bad in ["relative/path.tar", "ftp://h/x.tar", "http://user:pw@h/x"] {
        let e = dc.mgr.import_template(dc.repo, bad, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
    }
}

/// The objects of the repositories, comparable across managers (servers by address).
fn snapshot(mgr: &Manager) -> Vec<String> {
    let address = |s: Option<ServerId>| s.map(|s| mgr.server(s).unwrap().address.clone());
    let mut out = Vec::new();
    for r in mgr.list::<Repository>(|_| true) {
        let mut on: Vec<String> = r.presented_to.iter().map(|s| address(Some(*s)).unwrap()).collect();
        on.sort();
        out.push(format!(
            "repository {} {} {} {} {} {on:?}",
            r.id, r.name, r.capacity_bytes, r.used_bytes, r.initialized
        ));
    }
    for d in mgr.list::<VirtualDisk>(|_| true) {
        out.push(format!("{d:?}"));
    }
    for c in mgr.list::<VirtualCdrom>(|_| true) {
        out.push(format!("{c:?}"));
    }
    for t in mgr.list::<Template>(|_| true) {
        out.push(format!("{t:?}"));
    }
    for a in mgr.list::<Assembly>(|_| true) {
        out.push(format!("{a:?}"));
    }
    for v in mgr.list::<Vm>(|_| true) {
        let mut config = v.config.clone();
        config.vnics.iter_mut().for_each(|n| n.network = None);
        out.push(format!(
            "vm {} {} {:?} {config:?} {:?} on {:?} {:?} {:?}",
            v.id,
            v.name,
            v.description,
            v.repository,
            address(v.server),
            v.power_state,
            v.domid
        ));
    }
    out.sort();
    out
}

#[test]
fn a_lost_database_is_rebuilt_from_the_repositories() {
    let dc = dc("rebuild");
    let src = dc.file("OVM_OL7.tar", &template_archive());
    let t = TemplateId(result_id(dc.mgr.import_template(dc.repo, &src, Some("ol7"))));
    let src = dc.file("shop.ova", &ova(false));
    ok(dc.mgr.import_assembly(dc.repo, &src, Some("shop")));
    let src = dc.file("install.iso", &iso(40 << 10));
    ok(dc.mgr.import_iso(dc.repo, "install", &src));
    let running = VmId(result_id(dc.mgr.clone_template(t, "running", dc.in_pool())));
    ok(dc.mgr.start_vm(running));
    let stopped = VmId(result_id(dc.mgr.clone_template(t, "stopped", dc.in_pool())));
    ok(dc.mgr.edit_vm(stopped, |v| v.description = "kept in its vm.cfg".into()));
    let gone = VmId(result_id(dc.mgr.clone_template(t, "gone", CloneOptions::default())));
    ok(dc.mgr.delete_vm(gone));
    let blank = VirtualDiskId(result_id(dc.mgr.create_virtual_disk(dc.repo, "blank", GIB, true)));
    let before = snapshot(&dc.mgr);
    assert!(before.iter().any(|l| l.contains("running") && l.contains("Running")));
    assert!(
        dc.listing().iter().all(|f| !f.path.contains(&gone.0.simple().to_string())),
        "a deleted VM's file goes"
    );

    // A new manager on an empty database takes the servers over and reads the repositories.
    let fresh = Manager::builder().sim_world(dc.world.clone()).recurring_jobs(false).open().unwrap();
    let logins: Vec<ServerLogin> = ["sim://xen1", "sim://xen2"]
        .iter()
        .map(|a| ServerLogin { address: (*a).into(), password: DEFAULT_PASSWORD.into() })
        .collect();
    let report = fresh.rebuild_from_servers(&logins).unwrap();
    assert_eq!(report.servers.len(), 2);
    assert_eq!(report.repositories, [dc.repo]);
    assert_eq!(report.running.len(), 1);
    // Server pools are not kept in repositories: the report names each VM's.
    assert_eq!(report.not_recovered.len(), 2, "{:#?}", report.not_recovered);
    assert!(report.not_recovered.iter().all(|l| l.contains("server pool")), "{:#?}", report.not_recovered);
    assert_eq!(snapshot(&fresh), before, "the rebuilt inventory matches, object by object");
    assert_eq!(fresh.get::<VirtualDisk>(blank).unwrap().name, "blank");
    // The rebuilt manager works: in a new pool, the stopped VM starts.
    let pool = PoolId(result_id(fresh.create_pool(PoolSpec::new("pool1"))));
    for s in &report.servers {
        ok(fresh.add_server_to_pool(pool, *s));
    }
    ok(fresh.edit_vm(stopped, |v| v.pool = Some(pool)));
    ok(fresh.start_vm(stopped));
    let e = fresh.rebuild_from_servers(&logins).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "only into an empty inventory");
    let _ = dc.servers;
}

#[test]
fn a_clone_copies_each_disk_where_it_is_told_or_shares_it() {
    let dc = dc("customise");
    dc.world.add_nfs_export("nfs1", "/srv/fast", 100 * GIB);
    let fs2 = dc
        .mgr
        .list::<FileSystem>(|_| true)
        .into_iter()
        .find(|f| f.path == "/srv/repo")
        .map(|f| f.location)
        .unwrap();
    let FileSystemLocation::FileServer(fsrv) = fs2 else { panic!("an NFS file system") };
    ok(dc.mgr.refresh_file_server(fsrv));
    let fast = dc.mgr.file_systems_of(fsrv).into_iter().find(|f| f.path == "/srv/fast").unwrap().id;
    let repo2 = RepositoryId(result_id(dc.mgr.create_repository(RepositorySpec {
        name: "fast".into(),
        backing: RepositoryBacking::FileSystem(fast),
        owner_pool: None,
        capacity_bytes: 0,
    })));
    ok(dc.mgr.present_repository_to(repo2, &dc.servers));
    let system = VirtualDiskId(result_id(dc.mgr.create_virtual_disk(dc.repo, "system", GIB, false)));
    let shared = VirtualDiskId(result_id(dc.mgr.create_virtual_disk(dc.repo, "shared", GIB, true)));
    let config = VmConfig {
        disks: vec![
            DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(system) },
            DiskMapping { slot: 1, target: DiskTarget::VirtualDisk(shared) },
        ],
        ..VmConfig::default()
    };
    let t = TemplateId(result_id(dc.mgr.create_template(dc.repo, "two-disks", config, vec![system, shared])));
    let opts = CloneOptions {
        pool: Some(dc.pool),
        disks: vec![(0, DiskClone::Copy { repository: Some(repo2) }), (1, DiskClone::Share)],
        ..CloneOptions::default()
    };
    let vm = dc.mgr.get::<Vm>(VmId(result_id(dc.mgr.clone_template(t, "custom", opts)))).unwrap();
    let DiskTarget::VirtualDisk(copy) = vm.config.disks[0].target else { panic!() };
    let copy = dc.mgr.get::<VirtualDisk>(copy).unwrap();
    assert_eq!(copy.repository, repo2, "slot 0 copied into the other repository");
    assert!(copy.path.starts_with(&repository_path(repo2)));
    assert_eq!(vm.config.disks[1].target, DiskTarget::VirtualDisk(shared), "slot 1 shared");
    ok(dc.mgr.start_vm(vm.id));
    // Bad choices are refused before anything is copied.
    let disks_before = dc.mgr.list::<VirtualDisk>(|_| true).len();
    for (disks, why) in [
        (vec![(0, DiskClone::Share)], "not shareable"),
        (vec![(5, DiskClone::Share)], "maps no virtual disk"),
        (vec![(0, DiskClone::Copy { repository: Some(RepositoryId::new()) })], "Repository"),
    ] {
        let opts = CloneOptions { pool: Some(dc.pool), disks, ..CloneOptions::default() };
        let e = dc.mgr.clone_template(t, "bad", opts).unwrap_err();
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
    assert_eq!(dc.mgr.list::<VirtualDisk>(|_| true).len(), disks_before);
}

/// Serve `files` (path → body; 404 for any other path) over HTTP until the test ends; returns
/// the server's base URL and the paths asked for, in order.
fn http_tree(files: Vec<(&'static str, Vec<u8>)>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            log.lock().unwrap().push(path.clone());
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = s.write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    let _ = s.write_all(body);
                }
                None => {
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    (base, asked)
}

#[test]
fn a_pv_guest_boots_the_installer_of_an_install_tree_over_the_network() {
    let dc = dc("netboot");
    let mut kernel = vec![0u8; 8192];
    kernel[0x202..0x206].copy_from_slice(b"HdrS");
    let (base, asked) = http_tree(vec![
        ("/ol/images/pxeboot/vmlinuz", kernel),
        ("/ol/images/pxeboot/initrd.img", b"an initramfs".to_vec()),
        ("/bad/images/xen/vmlinuz", b"<html>not a kernel</html>".to_vec()),
        ("/bad/images/xen/initrd.img", b"x".to_vec()),
    ]);
    let config = VmConfig { memory_mib: 256, max_memory_mib: 256, ..VmConfig::default() };
    let mut spec = VmSpec::new("installer", config);
    spec.pool = Some(dc.pool);
    spec.repository = Some(dc.repo);
    let vm = VmId(result_id(dc.mgr.create_vm(spec)));
    let boot = |url: String| Some(NetworkBoot { url, cmdline: format!("inst.repo={base}/ol") });

    // Refused at once: what is not an HTTP(S) URL.
    for bad in ["ftp://mirror/ol", "http:///ol", "/srv/ol", "http://host/a b"] {
        let e = dc.mgr.set_vm_network_boot(vm, boot(bad.into())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
    }
    assert_eq!(dc.mgr.vm(vm).unwrap().config.network_boot, None, "nothing stored");

    // The server reads the installer from the first layout the tree has, then boots it.
    ok(dc.mgr.set_vm_network_boot(vm, boot(format!("{base}/ol/"))));
    ok(dc.mgr.start_vm(vm));
    assert_eq!(dc.mgr.vm(vm).unwrap().power_state, PowerState::Running);
    assert_eq!(
        *asked.lock().unwrap(),
        ["/ol/images/xen/vmlinuz", "/ol/images/pxeboot/vmlinuz", "/ol/images/pxeboot/initrd.img"]
    );
    ok(dc.mgr.kill_vm(vm));

    // A tree without an installer, or with a "kernel" that is none: the start fails with the
    // reason, and the VM stays stopped.
    for (tree, why) in [("empty", "no installer kernel"), ("bad", "not a Linux kernel")] {
        ok(dc.mgr.set_vm_network_boot(vm, boot(format!("{base}/{tree}"))));
        let e = dc.mgr.start_vm(vm).unwrap().wait(WAIT).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(why), "{e}");
        assert_eq!(dc.mgr.vm(vm).unwrap().power_state, PowerState::Stopped);
        ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm.0)));
    }
    // A server that does not answer is that error, not a tree without an installer.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}/ol", closed.local_addr().unwrap());
    drop(closed);
    ok(dc.mgr.set_vm_network_boot(vm, boot(gone)));
    let e = dc.mgr.start_vm(vm).unwrap().wait(WAIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    ok(dc.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm.0)));
    // Taken away: the guest boots as before, without the tree.
    ok(dc.mgr.set_vm_network_boot(vm, None));
    let n = asked.lock().unwrap().len();
    ok(dc.mgr.start_vm(vm));
    assert_eq!(asked.lock().unwrap().len(), n, "the tree is not read");
    // HVM guests boot over the network with PXE.
    ok(dc.mgr.kill_vm(vm));
    ok(dc.mgr.set_vm_network_boot(vm, boot(format!("{base}/ol"))));
    let e = dc.mgr.set_vm_boot(vm, DomainType::Hvm, vec![BootDevice::Network]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}
