//! The binding parity scenario, through the Rust API. `bindings-examples/c/parity.c` and
//! `bindings-examples/python/parity.py` run the same steps through C and Python; each prints the
//! same JSON document, and `bindings-examples/parity_compare.py` checks they agree once ids are
//! replaced by names (`make parity-test`).

use std::collections::BTreeSet;
use std::time::Duration;

use ovm_core::manager::{
    DiskFilter, FileServerSpec, NetworkSpec, PoolSpec, RepositorySpec, ServerFilter, StopOptions, VmFilter,
    VmSpec,
};
use ovm_core::model::*;
use ovm_core::{JobHandle, Manager, Result};

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

fn run(job: Result<JobHandle>) -> uuid::Uuid {
    let job = job.expect("accepted");
    let info = job.wait(WAIT).expect("completed");
    info.result.map(|r| r.id).unwrap_or_default()
}

/// The error code of a call refused at once or failing in its job.
fn code(job: Result<JobHandle>) -> u32 {
    match job.and_then(|j| j.wait(WAIT)) {
        Ok(_) => 0,
        Err(e) => e.kind().code(),
    }
}

fn main() -> Result<()> {
    let mgr = Manager::builder().open()?;
    let pw = ovm_core::driver::sim::DEFAULT_PASSWORD;
    let s1 = ServerId(run(mgr.discover_server("sim://xen1?memory_mib=32768", pw)));
    let s2 = ServerId(run(mgr.discover_server("sim://xen2?memory_mib=32768", pw)));
    let pool = PoolId(run(mgr.create_pool(PoolSpec::new("pool1"))));
    run(mgr.add_server_to_pool(pool, s1));
    run(mgr.add_server_to_pool(pool, s2));
    mgr.sim().add_nfs_export("nfs.example.com", "/export/fs1", 1 << 40);
    let nfs =
        FileServerId(run(mgr.register_file_server(FileServerSpec::nfs("nfs1", "nfs.example.com", vec![s1]))));
    let fs = mgr.file_systems_of(nfs)[0].id;
    let repo = RepositoryId(run(mgr.create_repository(RepositorySpec {
        name: "repo1".into(),
        backing: RepositoryBacking::FileSystem(fs),
        owner_pool: Some(pool),
        capacity_bytes: 100 << 30,
    })));
    run(mgr.present_repository(repo, s1));
    run(mgr.present_repository(repo, s2));
    let net = NetworkId(run(mgr.create_network(NetworkSpec::new("vmnet", "xenbr1", BTreeSet::new(), None))));
    // The VM network's bridge is made on the servers that have a member in it: eth1 of each.
    for s in [s1, s2] {
        let eth1 = mgr.list::<Port>(|p| p.server == s && p.interface == "eth1")[0].id;
        run(mgr.add_network_member(net, NetworkMember::Port(eth1)));
    }
    let disk = VirtualDiskId(run(mgr.create_virtual_disk(repo, "web-disk", 1 << 30, false)));

    let mut web = VmSpec::new("web", VmConfig::sized(1024, None, 2, None, 1)?);
    web.pool = Some(pool);
    let web = VmId(run(mgr.create_vm(web)));
    run(mgr.edit_vm(web, move |v| v.config.vnics[0].network = Some(net)));
    run(mgr.edit_vm(web, move |v| {
        v.config.disks.push(DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) })
    }));
    let mut db = VmSpec::new("db", VmConfig::sized(2048, None, 1, None, 0)?);
    db.pool = Some(pool);
    let db = VmId(run(mgr.create_vm(db)));
    run(mgr.edit_vm(db, |v| {
        v.config.pv_kernel =
            Some(PvKernel { kernel: "/boot/vmlinuz".into(), initrd: None, cmdline: "console=hvc0".into() })
    }));

    run(mgr.start_vm(web));
    let running = mgr.vms_where(&VmFilter {
        pool: Some(pool),
        power_state: Some(PowerState::Running),
        ..Default::default()
    });
    run(mgr.stop_vm_with(web, StopOptions { timeout: Duration::from_secs(10), force_after_timeout: true }));

    let mut edited = (*mgr.vm(web)?).clone();
    edited.power_state = PowerState::Running;
    let errors = serde_json::json!({
        "duplicate_pool": code(mgr.create_pool(PoolSpec::new("pool1"))),
        "edit_power_state": code(mgr.update_object(Object::Vm(edited))),
        "start_unknown_vm": code(mgr.start_vm(VmId::new())),
    });
    let summary = serde_json::json!({
        "servers_in_pool": mgr.servers_where(&ServerFilter { pool: Some(pool), ..Default::default() }),
        "file_systems": mgr.read(|inv| inv.objects_of(ObjectKind::FileSystem)),
        "repositories": mgr.read(|inv| inv.objects_of(ObjectKind::Repository)),
        "networks": mgr.read(|inv| inv.objects_of(ObjectKind::Network)),
        "disks_in_repo": mgr.virtual_disks_where(&DiskFilter { repository: Some(repo) }),
        "vms": mgr.vms(),
        "running_in_pool": running,
        "stopped": mgr.vms_where(&VmFilter { power_state: Some(PowerState::Stopped), ..Default::default() }),
        "errors": errors,
    });
    println!("{}", serde_json::to_string_pretty(&summary).expect("JSON"));
    mgr.close(Duration::from_secs(10))
}
