//! The ovm walk-through: opens a manager database file, discovers simulated servers, builds a pool,
//! storage, a network and a template, creates a VM from the template, starts it, live-migrates it,
//! stops it, and prints the jobs and events.
//!
//! Run: `cargo run -p ovm-core --example walkthrough -- [DATABASE_FILE]`

use std::collections::BTreeSet;
use std::time::Duration;

use ovm_core::driver::sim::DEFAULT_PASSWORD;
use ovm_core::manager::{NetworkSpec, PoolSpec, RepositorySpec};
use ovm_core::model::*;
use ovm_core::store::{EventFilter, JobFilter};
use ovm_core::{JobHandle, Manager, Result};

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

fn done(what: &str, job: JobHandle) -> Result<ObjectRef> {
    let j = job.wait(WAIT)?;
    println!("  [{}] {what}", j.state);
    Ok(j.result.unwrap_or(ObjectRef::new(ObjectKind::Job, j.id)))
}

fn main() -> Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ovm-walkthrough-{}.db", std::process::id())).display().to_string()
    });
    println!("ovm walk-through, manager database {path}");
    let mgr = Manager::open(&path)?;
    let start_token = mgr.current_token()?;

    if !mgr.servers().is_empty() {
        println!(
            "The database already holds {} servers and {} VMs; use a new file for the walk-through.",
            mgr.servers().len(),
            mgr.vms().len()
        );
        return Ok(());
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

    println!("Storage: an NFS file server, a file system, a repository");
    let nfs = FileServer {
        id: FileServerId::new(),
        name: "nfs1".into(),
        description: String::new(),
        kind: FileServerKind::Nfs,
        access_host: "nfs1.example.com".into(),
        admin_servers: vec![s1],
        refreshed: true,
    };
    let nfs_id = nfs.id;
    done("create file server nfs1", mgr.create_object(Object::FileServer(nfs))?)?;
    let fs = FileSystem {
        id: FileSystemId::new(),
        name: "nfs1:/export/ovs".into(),
        description: String::new(),
        location: FileSystemLocation::FileServer(nfs_id),
        path: "/export/ovs".into(),
        size_bytes: 2 << 40,
        free_bytes: 1 << 40,
    };
    let fs_id = fs.id;
    done("create file system", mgr.create_object(Object::FileSystem(fs))?)?;

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
    let again = Manager::open(&path)?;
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
