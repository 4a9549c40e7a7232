//! Repository contents on real servers: an Oracle VM template archive (from a file on the
//! manager's machine) and a two-VM OVA (over HTTP) imported into an NFS repository on the lab's
//! storage server, VMs cloned from them started on two servers (each guest reads its cloned disk);
//! hostile archives refused with nothing left on the storage; a thin clone of a 2 GiB disk that
//! shares its blocks; and the manager's database deleted and rebuilt from the servers and their
//! repositories, compared object by object. With `OVM_LAB_FIGURES` set (`make lab-bench`), also the
//! peers of the figures: the thin clone timed against a full copy, and the import of a 256 MiB
//! archive against `wget | tar -x` of it.
//! Run in the data-centre boot (`make dc-lab-test`), after `storage_lab` (it takes the servers
//! over from that test's manager, as a rebuilt manager would).

mod lab;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::{agent_listens, on, run_in, wait_for};

use ovm_core::manager::{
    repository_path, CloneOptions, DatabaseLocation, FileServerSpec, PoolSpec, RepositorySpec, ServerLogin,
};
use ovm_core::model::*;
use ovm_core::{ErrorKind, JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The export the repository lives on, and its path on the storage server.
const EXPORT: &str = "/srv/nfs/contents";

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> (ObjectRef, Duration) {
    lab::ok_timed(what, job, secs)
}

fn fails(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> ovm_core::Error {
    let e = job
        .unwrap_or_else(|e| panic!("{what}: refused at once: {e}"))
        .wait(Some(Duration::from_secs(secs)))
        .expect_err(what);
    println!("refused as it should be: {what}: {e}");
    e
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is unset: run this test through `make dc-lab-test`"))
}

fn on_storage(cmd: &str, secs: u64) -> String {
    run_in(&PathBuf::from(env("OVM_XENLAB_STORAGE_SHARE")), "the storage server", cmd, secs)
}

/// What the export holds on the storage server: every path with its size.
fn storage_listing() -> String {
    on_storage(&format!("cd {EXPORT} && find . -exec stat -c '%n %s' {{}} + | sort"), 60)
}

/// One ustar header, written to `out`.
fn tar_entry(out: &mut impl Write, name: &str, kind: u8, size: u64, link: &str) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 8u64.pow(11) {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80; // GNU base-256
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
    out.write_all(&h).unwrap();
}

fn pad(out: &mut impl Write, size: u64) {
    out.write_all(&vec![0u8; ((512 - size % 512) % 512) as usize]).unwrap();
}

fn tar_file(out: &mut impl Write, name: &str, data: &[u8]) {
    tar_entry(out, name, b'0', data.len() as u64, "");
    out.write_all(data).unwrap();
    pad(out, data.len() as u64);
}

/// A disk image of `size` bytes starting with `marker`; with `filled`, every block holds data
/// (a pattern, nothing an import could skip), else the rest is zeros.
fn tar_image(out: &mut impl Write, name: &str, size: u64, marker: &str, filled: bool) {
    tar_entry(out, name, b'0', size, "");
    let mut block = vec![0u8; MIB as usize];
    let mut left = size;
    let mut first = true;
    let mut n = 0u64;
    while left > 0 {
        if filled {
            for (i, b) in block.iter_mut().enumerate() {
                *b = ((i as u64 + n * 7) % 251) as u8 + 1;
            }
        }
        if first {
            block[..marker.len()].copy_from_slice(marker.as_bytes());
            block[marker.len()] = b'\n';
            first = false;
        } else if !filled {
            block[..marker.len() + 1].fill(0);
        }
        let k = left.min(MIB);
        out.write_all(&block[..k as usize]).unwrap();
        left -= k;
        n += 1;
    }
    pad(out, size);
}

fn end(out: &mut impl Write) {
    out.write_all(&[0u8; 1024]).unwrap();
}

fn vm_cfg(name: &str) -> String {
    format!(
        "OVM_simple_name = '{name}'\nOVM_os_type = 'Linux'\nname = '{name}'\nmemory = 128\nvcpus = 1\n\
         disk = ['file:/OVS/Repositories/x/VirtualDisks/System.img,xvda,w']\nvif = ['bridge=xenbr0']\n\
         kernel = 'vmlinux'\nramdisk = 'domu-initrd.gz'\nextra = 'console=hvc0'\n"
    )
}

/// The lab guest's kernel and initramfs (a template archive carries its own), read from server 1.
fn guest_boot_files() -> (Vec<u8>, Vec<u8>) {
    on(1, "cp /var/lib/ovm-lab/vmlinux /var/lib/ovm-lab/domu-initrd.gz /mnt/host/", 60);
    let share = PathBuf::from(env("OVM_XENLAB_SHARE_1"));
    let k = std::fs::read(share.join("vmlinux")).unwrap();
    let i = std::fs::read(share.join("domu-initrd.gz")).unwrap();
    (k, i)
}

/// An Oracle VM template archive with a disk of `size` bytes, booting the lab guest's kernel.
fn template_archive(path: &Path, name: &str, size: u64, filled: bool) {
    let (kernel, initrd) = guest_boot_files();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    tar_file(&mut f, &format!("{name}/vm.cfg"), vm_cfg(name).as_bytes());
    tar_file(&mut f, &format!("{name}/vmlinux"), &kernel);
    tar_file(&mut f, &format!("{name}/domu-initrd.gz"), &initrd);
    tar_image(&mut f, &format!("{name}/System.img"), size, "OVM-TEMPLATE-DISK", filled);
    end(&mut f);
    f.flush().unwrap();
}

fn sha256(data: &[u8]) -> String {
    let mut h = ovm_core::import::manifest::Hasher::new(ovm_core::import::manifest::DigestAlg::Sha256);
    h.update(data);
    h.finish()
}

fn ovf(disks: &[(&str, u64)]) -> String {
    let refs: String = disks
        .iter()
        .enumerate()
        .map(|(i, (f, n))| format!(r#"<File ovf:id="file{i}" ovf:href="{f}" ovf:size="{n}"/>"#))
        .collect();
    let ds: String = disks
        .iter()
        .enumerate()
        .map(|(i, (_, n))| {
            format!(
                r#"<Disk ovf:diskId="disk{i}" ovf:fileRef="file{i}" ovf:capacity="{n}" ovf:capacityAllocationUnits="byte" ovf:format="http://www.gnome.org/~markmc/qcow-image-format.html#raw"/>"#
            )
        })
        .collect();
    let system = |i: usize, name: &str| {
        format!(
            r#"<VirtualSystem ovf:id="{name}"><Info>VM</Info><Name>{name}</Name><VirtualHardwareSection><Info>hw</Info>
<Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
<Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>128</rasd:VirtualQuantity></Item>
<Item><rasd:HostResource>ovf:/disk/disk{i}</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
</VirtualHardwareSection></VirtualSystem>"#
        )
    };
    format!(
        r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
<References>{refs}</References><DiskSection><Info>d</Info>{ds}</DiskSection>
<VirtualSystemCollection ovf:id="shop"><Info>two VMs</Info><Name>shop</Name>{}{}</VirtualSystemCollection></Envelope>"#,
        system(0, "web"),
        system(1, "db")
    )
}

/// A two-VM OVA (raw disks with markers, a SHA-256 manifest); `tamper` breaks a disk's checksum.
fn ova(path: &Path, tamper: bool) {
    let disk = |marker: &str, size: usize| {
        let mut d = vec![0u8; size];
        d[..marker.len()].copy_from_slice(marker.as_bytes());
        d[marker.len()] = b'\n';
        d[size / 2] = 0x5a;
        d
    };
    let (d1, mut d2) = (disk("OVA-WEB-DISK", 24 << 20), disk("OVA-DB-DISK", 16 << 20));
    let descriptor = ovf(&[("shop-web.img", d1.len() as u64), ("shop-db.img", d2.len() as u64)]);
    let mf = format!(
        "SHA256(shop.ovf)= {}\nSHA256(shop-web.img)= {}\nSHA256(shop-db.img)= {}\n",
        sha256(descriptor.as_bytes()),
        sha256(&d1),
        sha256(&d2)
    );
    if tamper {
        d2[12345] ^= 1;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    tar_file(&mut f, "shop.ovf", descriptor.as_bytes());
    tar_file(&mut f, "shop.mf", mf.as_bytes());
    tar_file(&mut f, "shop-web.img", &d1);
    tar_file(&mut f, "shop-db.img", &d2);
    end(&mut f);
    f.flush().unwrap();
}

/// Serve the files of `dir` over HTTP on the management LAN (one thread per request); returns the
/// base URL.
fn http_server(dir: PathBuf) -> String {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let url = format!("http://{}:{}", env("OVM_XENLAB_MANAGER_IP"), l.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let name = req.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
                match std::fs::File::open(dir.join(&name)) {
                    Ok(mut f) => {
                        let len = f.metadata().unwrap().len();
                        let _ = s.write_all(
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
                        );
                        let _ = std::io::copy(&mut f, &mut s);
                    }
                    Err(_) => {
                        let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    }
                }
            });
        }
    });
    url
}

/// The objects ovm keeps in repositories, comparable across managers (servers by address).
fn snapshot(mgr: &Manager) -> Vec<String> {
    let address = |s: Option<ServerId>| s.map(|s| mgr.server(s).unwrap().address.clone());
    let mut out = Vec::new();
    for r in mgr.list_all::<Repository>() {
        let mut on: Vec<String> = r.presented_to.iter().map(|s| address(Some(*s)).unwrap()).collect();
        on.sort();
        out.push(format!("repository {} {} {} {} {on:?}", r.id, r.name, r.capacity_bytes, r.used_bytes));
    }
    out.extend(mgr.list_all::<VirtualDisk>().iter().map(|d| format!("{d:?}")));
    out.extend(mgr.list_all::<VirtualCdrom>().iter().map(|d| format!("{d:?}")));
    out.extend(mgr.list_all::<Template>().iter().map(|d| format!("{d:?}")));
    out.extend(mgr.list_all::<Assembly>().iter().map(|d| format!("{d:?}")));
    for v in mgr.list_all::<Vm>() {
        let mut config = v.config.clone();
        config.vnics.iter_mut().for_each(|n| n.network = None);
        out.push(format!(
            "vm {} {} {config:?} {:?} on {:?} {:?} {:?}",
            v.id,
            v.name,
            v.repository,
            address(v.server),
            v.power_state,
            v.domid
        ));
    }
    out.sort();
    out
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn imports_clones_hostile_archives_and_a_rebuilt_manager_on_real_servers() {
    let storage = env("OVM_XENLAB_STORAGE_LAN_IP");
    let (a1, a2) = ("10.77.0.1:8899".to_owned(), "10.77.0.2:8899".to_owned());
    wait_for("agent 1 to listen", 240, || agent_listens(&a1));
    wait_for("agent 2 to listen", 240, || agent_listens(&a2));
    let dir = std::env::temp_dir().join(format!("ovm-repository-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let base = http_server(served.clone());
    let db = dir.join("manager.db");
    let mgr =
        Manager::builder().database(DatabaseLocation::File(db.clone())).recurring_jobs(false).open().unwrap();

    // The servers belong to the previous test's manager: this one takes them over.
    let s1 = ServerId(ok("take server 1 over", mgr.take_over_server(&a1, PASSWORD), 120).0.id);
    let s2 = ServerId(ok("take server 2 over", mgr.take_over_server(&a2, PASSWORD), 120).0.id);
    let pool = PoolId(ok("create the pool", mgr.create_pool(PoolSpec::new("contents-pool")), 30).0.id);
    ok("add server 1", mgr.add_server_to_pool(pool, s1), 60);
    ok("add server 2", mgr.add_server_to_pool(pool, s2), 60);
    let fsrv = FileServerId(
        ok(
            "discover the NFS server",
            mgr.register_file_server(FileServerSpec::nfs("lab-nfs", &storage, vec![s1])),
            180,
        )
        .0
        .id,
    );
    let fs = mgr.file_systems_of(fsrv).into_iter().find(|f| f.path == EXPORT).expect("the export").id;
    let repo = RepositoryId(
        ok(
            "create the repository",
            mgr.create_repository(RepositorySpec {
                name: "contents".into(),
                backing: RepositoryBacking::FileSystem(fs),
                owner_pool: Some(pool),
                capacity_bytes: 0,
            }),
            30,
        )
        .0
        .id,
    );
    ok("present it to servers 1 and 2", mgr.present_repository_to(repo, &[s1, s2]), 240);
    let at = repository_path(repo);

    // An Oracle VM template archive from a file on the manager's machine; a two-VM OVA over HTTP.
    let tpl_tar = dir.join("OVM_LAB.tar");
    template_archive(&tpl_tar, "OVM_LAB", 64 * MIB, false);
    let (t, t_tpl) =
        ok("import the template archive", mgr.import_template(repo, tpl_tar.to_str().unwrap(), None), 300);
    let t = mgr.get::<Template>(TemplateId(t.id)).unwrap();
    assert_eq!(t.name, "OVM_LAB");
    ova(&served.join("shop.ova"), false);
    let (a, t_ova) =
        ok("import the OVA over HTTP", mgr.import_assembly(repo, &format!("{base}/shop.ova"), None), 300);
    let a = mgr.get::<Assembly>(AssemblyId(a.id)).unwrap();
    assert_eq!(a.vm_names, ["web", "db"]);
    let listing = on(1, &format!("ls {at}/Templates/* {at}/Assemblies/*"), 30);
    assert!(listing.contains("System.img") && listing.contains("shop-web.img"), "{listing}");
    on_storage(&format!("head -c 17 {EXPORT}/Templates/*/System.img | grep -q OVM-TEMPLATE-DISK"), 30);

    // VMs cloned from them start on the two servers; each guest reads its cloned disk.
    let in_pool = || CloneOptions { pool: Some(pool), ..CloneOptions::default() };
    let v1 = VmId(ok("clone the template", mgr.clone_template(t.id, "lab-tpl-1", in_pool()), 300).0.id);
    let web = mgr.get_by_name::<Template>("web").unwrap().id;
    let db_t = mgr.get_by_name::<Template>("db").unwrap().id;
    let v2 = VmId(ok("clone web", mgr.clone_template(web, "lab-web-1", in_pool()), 300).0.id);
    let v3 = VmId(ok("clone db", mgr.clone_template(db_t, "lab-db-1", in_pool()), 300).0.id);
    // The OVA's systems are hardware VMs; the lab runs PV guests: they boot the lab's kernel.
    for v in [v2, v3] {
        ok(
            "boot the OVA's clone as a PV guest",
            mgr.edit_vm(v, |vm| {
                let lab = lab::lab_guest("console=hvc0");
                vm.config.domain_type = lab.domain_type;
                vm.config.pv_kernel = lab.pv_kernel;
            }),
            30,
        );
    }
    // Kept apart by an anti-affinity group: the template's clone and web run on different servers.
    ok("keep two VMs apart", mgr.create_anti_affinity_group(pool, "apart", vec![v1, v2]), 30);
    ok("start the template's clone", mgr.start_vm(v1), 300);
    ok("start web", mgr.start_vm(v2), 300);
    ok("start db", mgr.start_vm(v3), 300);
    let mut used: Vec<ServerId> = [v1, v2, v3].iter().filter_map(|v| mgr.vm(*v).unwrap().server).collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 2, "the clones run on both servers");
    for (v, marker) in [(v1, "OVM-TEMPLATE-DISK"), (v2, "OVA-WEB-DISK"), (v3, "OVA-DB-DISK")] {
        wait_for(&format!("the guest to read {marker} from its cloned disk"), 300, || {
            mgr.vm_console(v).is_ok_and(|c| c.contains(&format!("OVM-DOMU-DISK xvda: {marker}")))
        });
    }

    // Hostile input: refused, nothing left on the storage.
    let before = storage_listing();
    let cfg = vm_cfg("evil");
    let mut hostile: Vec<(&str, Vec<u8>)> = Vec::new();
    let build = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        v
    };
    hostile.push((
        "dotdot",
        build(&|v| {
            tar_file(v, "t/vm.cfg", cfg.as_bytes());
            tar_file(v, "t/../../../etc/System.img", b"x");
            end(v);
        }),
    ));
    hostile.push((
        "absolute",
        build(&|v| {
            tar_file(v, "/etc/System.img", b"x");
            end(v);
        }),
    ));
    hostile.push((
        "symlink",
        build(&|v| {
            tar_file(v, "t/System.img", &[1u8; 4096]);
            tar_entry(v, "t/link", b'2', 0, "/etc/shadow");
            end(v);
        }),
    ));
    hostile.push((
        "device",
        build(&|v| {
            tar_file(v, "t/System.img", &[1u8; 4096]);
            tar_entry(v, "t/sda", b'3', 0, "");
            end(v);
        }),
    ));
    let whole = std::fs::read(&tpl_tar).unwrap();
    hostile.push(("truncated", whole[..(40 * MIB) as usize].to_vec()));
    hostile.push((
        "larger than the repository",
        build(&|v| {
            tar_file(v, "t/vm.cfg", cfg.as_bytes());
            tar_entry(v, "t/System.img", b'0', 100 * GIB, "");
            v.extend_from_slice(&[1u8; 65536]);
        }),
    ));
    for (tag, bytes) in &hostile {
        let p = dir.join(format!("{}.tar", tag.replace(' ', "-")));
        std::fs::write(&p, bytes).unwrap();
        let e = fails(
            &format!("import a hostile archive ({tag})"),
            mgr.import_template(repo, p.to_str().unwrap(), None),
            120,
        );
        let want = if *tag == "larger than the repository" {
            ErrorKind::InsufficientResources
        } else {
            ErrorKind::InvalidArgument
        };
        assert_eq!(e.kind(), want, "{tag}: {e}");
        ok("acknowledge", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Repository, repo.0)), 30);
    }
    ova(&served.join("tampered.ova"), true);
    let e = fails(
        "import an OVA whose disk does not match its manifest",
        mgr.import_assembly(repo, &format!("{base}/tampered.ova"), None),
        120,
    );
    assert!(e.to_string().contains("checksum"), "{e}");
    ok("acknowledge", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Repository, repo.0)), 30);
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE z [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Envelope>&b;</Envelope>"#;
    let mut v = Vec::new();
    tar_file(&mut v, "bomb.ovf", bomb.as_bytes());
    end(&mut v);
    std::fs::write(served.join("bomb.ova"), &v).unwrap();
    fails("import an OVF with entities", mgr.import_assembly(repo, &format!("{base}/bomb.ova"), None), 120);
    ok("acknowledge", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Repository, repo.0)), 30);
    assert_eq!(storage_listing(), before, "nothing is left on the storage by a refused import");
    assert_eq!(mgr.list_all::<Template>().len(), 3);

    // Thin clone of a 2 GiB disk (every block written) against full copies of the same file.
    let big = VirtualDiskId(
        ok("create a 2 GiB disk", mgr.create_virtual_disk(repo, "big", 2 * GIB, false), 120).0.id,
    );
    let big_file = format!("{EXPORT}/VirtualDisks/{}.img", big.0.simple());
    on_storage(
        &format!("dd if=/dev/zero of={big_file} bs=4M count=512 conv=notrunc 2>/dev/null && sync"),
        600,
    );
    let big_cfg = VmConfig {
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(big) }],
        ..lab::lab_guest("")
    };
    let big_t =
        TemplateId(ok("a template on it", mgr.create_template(repo, "big", big_cfg, vec![big]), 60).0.id);
    let free_before = on_storage(&format!("df -B1 -P {EXPORT} | tail -n 1 | awk '{{print $4}}'"), 30);
    let (_, t_thin) = ok(
        "thin clone of the 2 GiB disk (a VM from the template)",
        mgr.clone_template(big_t, "big-clone", in_pool()),
        600,
    );
    let free_after = on_storage(&format!("df -B1 -P {EXPORT} | tail -n 1 | awk '{{print $4}}'"), 30);
    let (fb, fa): (u64, u64) = (free_before.trim().parse().unwrap(), free_after.trim().parse().unwrap());
    assert!(fb.saturating_sub(fa) < 64 * MIB, "the clone shares its blocks: {fb} -> {fa} free");
    // The peers of the figures, measured when figures are asked for (`make lab-bench`; they add
    // a 2 GiB copy and a 256 MiB import to the lab): a full copy of the clone's disk, and import
    // throughput against `tar -x` of the same archive.
    if std::env::var_os("OVM_LAB_FIGURES").is_none() {
        println!(
            "CLONE thin clone of a 2 GiB disk (the whole clone job) {:.3} s; imports: template archive of 64 MiB \
             {:.1} s, OVA {:.1} s",
            seconds(t_thin),
            seconds(t_tpl),
            seconds(t_ova)
        );
    } else {
        // The full copy: the same file copied on the storage server's own disk (the fastest a full
        // copy can be here; a copy by a server over NFS moves every byte twice over the network).
        let t0 = Instant::now();
        on_storage(&format!("cp {big_file} {EXPORT}/full-copy.img && sync"), 900);
        let t_local = t0.elapsed();
        on_storage(&format!("rm -f {EXPORT}/full-copy.img"), 60);
        println!(
            "CLONE-FIGURES thin clone of a 2 GiB disk (the whole clone job) {:.3} s; full copy of it on the storage \
             server {:.2} s; ratio {:.4}",
            seconds(t_thin),
            seconds(t_local),
            seconds(t_thin) / seconds(t_local)
        );

        // Import throughput against `tar -x` of the same archive over the same path (HTTP from the
        // manager's machine to a server, onto the NFS repository).
        let bench = served.join("bench.tar");
        template_archive(&bench, "OVM_BENCH", 256 * MIB, true);
        let size = std::fs::metadata(&bench).unwrap().len();
        let (bt, t_import) = ok(
            "import a 256 MiB template archive over HTTP",
            mgr.import_template(repo, &format!("{base}/bench.tar"), None),
            600,
        );
        let t0 = Instant::now();
        on(
            1,
            &format!("mkdir -p {at}/peer && wget -q -O - {base}/bench.tar | tar -x -C {at}/peer && sync"),
            600,
        );
        let t_tar = t0.elapsed();
        on(1, &format!("rm -rf {at}/peer"), 120);
        let mbs = |d: Duration| size as f64 / MIB as f64 / seconds(d);
        println!(
            "IMPORT-FIGURES {} MiB archive: ovm import {:.1} s ({:.1} MiB/s); wget | tar -x on a server {:.1} s ({:.1} MiB/s); \
             ratio {:.2}; template archive of 64 MiB {:.1} s; OVA {:.1} s",
            size / MIB,
            seconds(t_import),
            mbs(t_import),
            seconds(t_tar),
            mbs(t_tar),
            seconds(t_import) / seconds(t_tar),
            seconds(t_tpl),
            seconds(t_ova)
        );
        ok(
            "delete the benchmark's template",
            mgr.delete_object(ObjectRef::new(ObjectKind::Template, bt.id)),
            60,
        );
    }

    // The manager's database is lost; a new manager rebuilds it from the servers.
    let before = snapshot(&mgr);
    mgr.close(Duration::from_secs(60)).unwrap();
    drop(mgr);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let mgr =
        Manager::builder().database(DatabaseLocation::File(db.clone())).recurring_jobs(false).open().unwrap();
    let t0 = Instant::now();
    let report = mgr
        .rebuild_from_servers(&[
            ServerLogin { address: a1.clone(), password: PASSWORD.into() },
            ServerLogin { address: a2.clone(), password: PASSWORD.into() },
        ])
        .unwrap();
    println!(
        "REBUILD-FIGURES {:.1} s; {} objects, {} running; not recovered: {:#?}",
        seconds(t0.elapsed()),
        report.objects,
        report.running.len(),
        report.not_recovered
    );
    assert_eq!(report.repositories, [repo]);
    assert_eq!(report.running.len(), 3);
    assert!(
        report.not_recovered.iter().all(|l| l.contains("server pool") || l.contains("anti-affinity group")),
        "only the VMs' pools and groups are not kept in repositories: {:#?}",
        report.not_recovered
    );
    assert_eq!(snapshot(&mgr), before, "the rebuilt inventory matches the original, object by object");

    // The rebuilt manager drives the servers: the VMs stop, the repository is unpresented.
    for v in [v1, v2, v3] {
        ok("kill a VM", mgr.kill_vm(v), 120);
    }
    let (r1, r2) = (report.servers[0], report.servers[1]);
    ok("unpresent from server 1", mgr.unpresent_repository(repo, r1), 120);
    ok("unpresent from server 2", mgr.unpresent_repository(repo, r2), 120);
    let _ = std::fs::remove_dir_all(&dir);
}
