//! The ovm walk-through: opens a manager database file, discovers simulated servers, builds a pool,
//! storage, a network and a template, creates a VM from the template, starts it, live-migrates it,
//! stops it, and prints the jobs and events.
//!
//! With `--xen ADDRESS PASSWORD` it works on a real Xen server instead: it discovers the server
//! through its agent (`ovm-agent` in dom0), makes a pool, a repository on an NFS server's export
//! (`--nfs HOST`: discovered through the server, mounted by its agent) or else on the server's
//! local file system, with a guest kernel imported into it (from `--kernel PATH` and `--initrd PATH` on the
//! server, by default the Xen lab's guest), a template, a PV VM cloned from it, starts it, shows its
//! console, stops it, and prints the jobs and events. `make demo-xen` does that on a lab server.
//!
//! Run: `cargo run -p ovm-core --example walkthrough -- [DATABASE_FILE] [--xen ADDRESS PASSWORD
//! [--nfs HOST] [--kernel PATH] [--initrd PATH]]`

use std::collections::BTreeSet;
use std::time::Duration;

use ovm_core::driver::sim::DEFAULT_PASSWORD;
use ovm_core::manager::{FileServerSpec, NetworkSpec, PoolSpec, RepositorySpec};
use ovm_core::model::*;
use ovm_core::store::{EventFilter, JobFilter};
use ovm_core::{JobHandle, Manager, Result};

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

fn done(what: &str, job: JobHandle) -> Result<ObjectRef> {
    let j = job.wait(WAIT)?;
    println!("  [{}] {what}", j.state);
    Ok(j.result.unwrap_or(ObjectRef::new(ObjectKind::Job, j.id)))
}

/// A real server reached through its agent.
struct XenTarget {
    address: String,
    password: String,
    kernel: String,
    initrd: String,
    /// An NFS server for the repository (else the server's local file system).
    nfs: Option<String>,
}

fn usage() -> ! {
    eprintln!("usage: walkthrough [DATABASE_FILE] [--xen ADDRESS PASSWORD [--nfs HOST] [--kernel PATH] [--initrd PATH]]");
    std::process::exit(2)
}

fn main() -> Result<()> {
    let mut path = None;
    let mut xen: Option<XenTarget> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--xen" => {
                let (Some(address), Some(password)) = (args.next(), args.next()) else { usage() };
                xen = Some(XenTarget {
                    address,
                    password,
                    kernel: "/var/lib/ovm-lab/vmlinux".into(),
                    initrd: "/var/lib/ovm-lab/domu-initrd.gz".into(),
                    nfs: None,
                });
            }
            "--nfs" => {
                let (Some(v), Some(x)) = (args.next(), xen.as_mut()) else { usage() };
                x.nfs = Some(v);
            }
            "--kernel" | "--initrd" => {
                let (Some(v), Some(x)) = (args.next(), xen.as_mut()) else { usage() };
                if a == "--kernel" {
                    x.kernel = v;
                } else {
                    x.initrd = v;
                }
            }
            p if !p.starts_with('-') && path.is_none() => path = Some(p.to_owned()),
            _ => usage(),
        }
    }
    let path = path.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ovm-walkthrough-{}.db", std::process::id())).display().to_string()
    });
    println!("ovm walk-through, manager database {path}");
    // The simulated data centre has an NFS server, nfs1.example.com, exporting /export/ovs (2 TiB)
    // and /export/iso (100 GiB); the manager discovers them through a server.
    let world = ovm_core::driver::sim::SimWorld::default();
    world.add_nfs_export("nfs1.example.com", "/export/ovs", 2 << 40);
    world.add_nfs_export("nfs1.example.com", "/export/iso", 100 << 30);
    let mgr = Manager::builder()
        .database(ovm_core::manager::DatabaseLocation::File(path.clone().into()))
        .sim_world(world)
        .open()?;
    let start_token = mgr.current_token()?;

    if !mgr.servers().is_empty() {
        println!(
            "The database already holds {} servers and {} VMs; use a new file for the walk-through.",
            mgr.servers().len(),
            mgr.vms().len()
        );
        return Ok(());
    }
    if let Some(x) = xen {
        xen_walkthrough(&mgr, &x)?;
        return report(mgr, &path, start_token);
    }
    println!("Discover servers");
    let s1 = ServerId(
        done(
            "discover sim://xen1",
            mgr.discover_server("sim://xen1?cpus=16&memory_mib=65536", DEFAULT_PASSWORD)?,
        )?
        .id,
    );
    let s2 = ServerId(
        done(
            "discover sim://xen2",
            mgr.discover_server("sim://xen2?cpus=16&memory_mib=65536", DEFAULT_PASSWORD)?,
        )?
        .id,
    );

    println!("Storage: an NFS file server and its file systems, discovered through xen1; a repository");
    let nfs = FileServerId(
        done(
            "register NFS file server nfs1",
            mgr.register_file_server(FileServerSpec::nfs("nfs1", "nfs1.example.com", vec![s1]))?,
        )?
        .id,
    );
    for f in mgr.file_systems_of(nfs) {
        println!("  file system {}: {} GiB, {} GiB free", f.name, f.size_bytes >> 30, f.free_bytes >> 30);
    }
    let fs_id = mgr.get_by_name::<FileSystem>("nfs1.example.com:/export/ovs")?.id;

    println!("A clustered server pool with both servers");
    let mut ps = PoolSpec::new("pool1");
    ps.clustered = true;
    ps.virtual_ip = Some("192.0.2.10".parse().expect("address"));
    ps.pool_file_system = Some(fs_id);
    let pool = PoolId(done("create pool pool1", mgr.create_pool(ps)?)?.id);
    done("add xen1 to pool1", mgr.add_server_to_pool(pool, s1)?)?;
    done("add xen2 to pool1", mgr.add_server_to_pool(pool, s2)?)?;

    let repo = RepositoryId(
        done(
            "create repository repo1",
            mgr.create_repository(RepositorySpec {
                name: "repo1".into(),
                backing: RepositoryBacking::FileSystem(fs_id),
                owner_pool: Some(pool),
                capacity_bytes: 0,
            })?,
        )?
        .id,
    );
    done("present repo1 to xen1", mgr.present_repository(repo, s1)?)?;
    done("present repo1 to xen2", mgr.present_repository(repo, s2)?)?;

    println!("A VM network");
    let mut ns = NetworkSpec::vm_network("vm-net", "xenbr1");
    ns.functions = BTreeSet::from([NetworkFunction::VirtualMachine]);
    let net = NetworkId(done("create network vm-net", mgr.create_network(ns)?)?.id);

    println!("A template with a system disk");
    let disk =
        VirtualDiskId(done("create disk", mgr.create_virtual_disk(repo, "ol6-system", 8 << 30, false)?)?.id);
    let config = VmConfig {
        domain_type: DomainType::Pvh,
        vcpus: 2,
        max_vcpus: 4,
        memory_mib: 2048,
        max_memory_mib: 4096,
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) }],
        vnics: vec![Vnic { mac: "00:00:00:00:00:00".into(), network: Some(net) }],
        os_type: "Oracle Linux 6".into(),
        ..VmConfig::default()
    };
    let tpl =
        TemplateId(done("create template ol6", mgr.create_template(repo, "ol6", config, vec![disk])?)?.id);

    println!("A VM from the template, started, migrated, stopped");
    let opts = ovm_core::manager::CloneOptions {
        pool: Some(pool),
        repository: None,
        networks: Some(vec![Some(net)]),
        ..Default::default()
    };
    let name = format!("web-{}", &uuid_suffix());
    let vm = VmId(done(&format!("clone template to VM {name}"), mgr.clone_template(tpl, &name, opts)?)?.id);
    done("start", mgr.start_vm(vm)?)?;
    let v = mgr.vm(vm)?;
    let on = v.server.expect("placed");
    println!(
        "  {} is {} on {} (domid {:?}, MAC {})",
        v.name,
        v.power_state,
        mgr.server(on)?.name,
        v.domid,
        v.config.vnics[0].mac
    );
    println!("  console: {}", mgr.vm_console(vm)?.lines().last().unwrap_or(""));
    let other = if on == s1 { s2 } else { s1 };
    done("live-migrate", mgr.migrate_vm(vm, other)?)?;
    println!("  {} now runs on {}", v.name, mgr.server(mgr.vm(vm)?.server.expect("placed"))?.name);
    done("stop", mgr.stop_vm(vm)?)?;
    println!("  {} is {}", v.name, mgr.vm(vm)?.power_state);

    report(mgr, &path, start_token)
}

/// The walk-through on a real Xen server through its agent.
fn xen_walkthrough(mgr: &Manager, x: &XenTarget) -> Result<()> {
    println!("Discover the Xen server at {} through its agent", x.address);
    let mut tries = 0;
    let server = loop {
        // A freshly booted server's agent may still be starting.
        match mgr.discover_server(&x.address, &x.password)?.wait(Some(Duration::from_secs(60))) {
            Ok(j) => break ServerId(j.result.expect("the server").id),
            Err(e) if e.kind() == ovm_core::ErrorKind::Backend && tries < 60 => {
                tries += 1;
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    };
    let s = mgr.server(server)?;
    println!(
        "  [Completed] {} (Xen {}, {} CPUs, {} MiB), agent certificate {}",
        s.name,
        s.hardware.xen_version,
        s.hardware.cpus,
        s.hardware.memory_mib,
        mgr.agent_fingerprint(server)?.unwrap_or_default()
    );
    let pool = PoolId(done("create pool xen-pool", mgr.create_pool(PoolSpec::new("xen-pool"))?)?.id);
    done("add the server to xen-pool", mgr.add_server_to_pool(pool, server)?)?;

    let fs_id = match &x.nfs {
        Some(host) => {
            println!("Storage: the NFS server {host}, discovered through the server; a repository, a guest kernel in it");
            let nfs = FileServerId(
                done(
                    &format!("discover the NFS server {host}"),
                    mgr.register_file_server(FileServerSpec::nfs("nfs", host, vec![server]))?,
                )?
                .id,
            );
            let fss = mgr.file_systems_of(nfs);
            for f in &fss {
                println!(
                    "  {} {}: {} GiB, {} GiB free",
                    f.name,
                    f.path,
                    f.size_bytes >> 30,
                    f.free_bytes >> 30
                );
            }
            fss.first().expect("an export").id
        }
        None => {
            println!("Storage: the server's local file system, a repository, a guest kernel in it");
            let local = FileServerId(
                done(
                    "register the server's local file system",
                    mgr.register_file_server(FileServerSpec::local(&format!("{}-local", s.name), server))?,
                )?
                .id,
            );
            mgr.file_systems_of(local).first().expect("the local file system").id
        }
    };
    let repo = RepositoryId(
        done(
            "create repository xen-repo",
            mgr.create_repository(RepositorySpec {
                name: "xen-repo".into(),
                backing: RepositoryBacking::FileSystem(fs_id),
                owner_pool: Some(pool),
                capacity_bytes: 0,
            })?,
        )?
        .id,
    );
    done("present xen-repo to the server (its agent mounts it)", mgr.present_repository(repo, server)?)?;
    done("import the guest kernel", mgr.import_kernel(repo, "guest", &x.kernel, Some(&x.initrd))?)?;
    let (kernel, initrd) = ovm_core::manager::kernel_paths(repo, "guest");

    println!("A PV template with a system disk, a VM cloned from it");
    let disk = VirtualDiskId(
        done("create disk", mgr.create_virtual_disk(repo, "guest-system", 64 << 20, false)?)?.id,
    );
    let config = VmConfig {
        domain_type: DomainType::Pv,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 256,
        max_memory_mib: 256,
        disks: vec![DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) }],
        pv_kernel: Some(PvKernel { kernel, initrd: Some(initrd), cmdline: "console=hvc0".into() }),
        os_type: "Linux".into(),
        ..VmConfig::default()
    };
    let tpl = TemplateId(
        done("create template guest", mgr.create_template(repo, "guest", config, vec![disk])?)?.id,
    );
    let opts = ovm_core::manager::CloneOptions { pool: Some(pool), ..Default::default() };
    let name = format!("guest-{}", &uuid_suffix());
    let vm = VmId(done(&format!("clone template to VM {name}"), mgr.clone_template(tpl, &name, opts)?)?.id);
    let start = mgr.start_vm(vm)?;
    let j = start.wait(Some(Duration::from_secs(300)))?;
    println!("  [{}] start", j.state);
    let v = mgr.vm(vm)?;
    println!("  {} is {} on {} (domain {:?})", v.name, v.power_state, s.name, v.domid);
    let t0 = std::time::Instant::now();
    let mut console = String::new();
    while t0.elapsed() < Duration::from_secs(300)
        && !console.contains("OVM-DOMU-UP")
        && !console.contains("login")
    {
        std::thread::sleep(Duration::from_secs(1));
        console = mgr.vm_console(vm)?;
    }
    println!("  console after {:.0} s:", t0.elapsed().as_secs_f64());
    for line in console.lines().filter(|l| l.starts_with("OVM-")).take(8) {
        println!("    {line}");
    }
    let j = mgr.stop_vm(vm)?.wait(Some(Duration::from_secs(300)))?;
    println!("  [{}] stop: {} is {}", j.state, v.name, mgr.vm(vm)?.power_state);
    Ok(())
}

fn report(mgr: Manager, path: &str, start_token: u64) -> Result<()> {
    println!("\nJobs (newest first):");
    for j in mgr.jobs(&JobFilter { limit: Some(30), ..Default::default() })? {
        println!("  {:<10} {:<24} {}", j.state, j.kind, j.summary);
    }
    println!("\nEvents:");
    for e in mgr.events(&EventFilter { limit: Some(20), ..Default::default() })? {
        println!("  {:<8} {:<22} {}", e.severity, e.event_type, e.summary);
    }
    let (changes, token) = mgr.events_since(start_token)?;
    println!("\nChange feed: {} changes in this run, resume token {token}", changes.len());
    mgr.close(Duration::from_secs(10))?;
    drop(mgr);
    let again = Manager::open(path)?;
    println!(
        "Reopened {path}: {} servers, {} VMs, {} jobs kept",
        again.servers().len(),
        again.vms().len(),
        again.jobs(&JobFilter::default())?.len()
    );
    Ok(())
}

fn uuid_suffix() -> String {
    VmId::new().to_string()[..8].to_owned()
}
