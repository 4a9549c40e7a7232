//! Shared fixtures: a manager with simulated servers, a pool, storage, a network and a template.
#![allow(dead_code)]

use std::time::Duration;

use ovm_core::driver::sim::DEFAULT_PASSWORD;
use ovm_core::manager::{FileServerSpec, NetworkSpec, PoolSpec, RepositorySpec, VmSpec};
use ovm_core::model::*;
use ovm_core::{JobHandle, Manager, Result};

pub const WAIT: Option<Duration> = Some(Duration::from_secs(20));

pub fn ok(job: Result<JobHandle>) -> Job {
    job.expect("job accepted").wait(WAIT).expect("job completed")
}

pub fn result_id(job: Result<JobHandle>) -> uuid::Uuid {
    ok(job).result.expect("job result").id
}

pub struct Lab {
    pub mgr: Manager,
    pub s1: ServerId,
    pub s2: ServerId,
    pub pool: PoolId,
    pub fs: FileSystemId,
    pub repo: RepositoryId,
    pub net: NetworkId,
    pub template: TemplateId,
    pub template_disk: VirtualDiskId,
}

/// A file system `name` of 1 TiB, exported by the simulated NFS server `nfs-NAME` and discovered
/// by registering that server through `admin`.
pub fn file_system(mgr: &Manager, admin: ServerId, name: &str) -> FileSystemId {
    let host = format!("nfs-{name}");
    let path = format!("/export/{name}");
    mgr.sim().add_nfs_export(&host, &path, 1 << 40);
    let fsrv = FileServerId(result_id(mgr.register_file_server(FileServerSpec::nfs(
        &format!("{name}-server"),
        &host,
        vec![admin],
    ))));
    mgr.file_systems_of(fsrv).iter().find(|f| f.path == path).expect("the export is discovered").id
}

pub fn lab_with(mgr: Manager, memory_mib: u64) -> Lab {
    let s1 = ServerId(result_id(
        mgr.discover_server(&format!("sim://xen1?memory_mib={memory_mib}"), DEFAULT_PASSWORD),
    ));
    let s2 = ServerId(result_id(
        mgr.discover_server(&format!("sim://xen2?memory_mib={memory_mib}"), DEFAULT_PASSWORD),
    ));
    let fs = file_system(&mgr, s1, "fs1");
    let pool = PoolId(result_id(mgr.create_pool(PoolSpec::new("pool1"))));
    ok(mgr.add_server_to_pool(pool, s1));
    ok(mgr.add_server_to_pool(pool, s2));
    let repo = RepositoryId(result_id(mgr.create_repository(RepositorySpec {
        name: "repo1".into(),
        backing: RepositoryBacking::FileSystem(fs),
        owner_pool: Some(pool),
        capacity_bytes: 100 << 30,
    })));
    ok(mgr.present_repository(repo, s1));
    ok(mgr.present_repository(repo, s2));
    // The VM network on eth1 of both servers (its bridge is made on each).
    let eth1 = |s: ServerId| mgr.list::<Port>(|p| p.server == s && p.interface == "eth1")[0].id;
    let mut spec = NetworkSpec::vm_network("vmnet", "xenbr1");
    spec.members = vec![NetworkMember::Port(eth1(s1)), NetworkMember::Port(eth1(s2))];
    let net = NetworkId(result_id(mgr.create_network(spec)));
    let disk = VirtualDiskId(result_id(mgr.create_virtual_disk(repo, "tpl-disk", 4 << 30, false)));
    let disk2 = VirtualDiskId(result_id(mgr.create_virtual_disk(repo, "tpl-data", 2 << 30, false)));
    let config = VmConfig {
        memory_mib: 1024,
        max_memory_mib: 2048,
        vcpus: 1,
        max_vcpus: 2,
        disks: vec![
            DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) },
            DiskMapping { slot: 1, target: DiskTarget::VirtualDisk(disk2) },
        ],
        vnics: vec![Vnic { mac: "00:00:00:00:00:01".into(), network: Some(net) }],
        ..VmConfig::default()
    };
    let template = TemplateId(result_id(mgr.create_template(repo, "tpl", config, vec![disk, disk2])));
    Lab { mgr, s1, s2, pool, fs, repo, net, template, template_disk: disk }
}

pub fn lab() -> Lab {
    lab_with(Manager::builder().recurring_jobs(false).open().expect("open"), 16384)
}

impl Lab {
    pub fn vm(&self, name: &str) -> VmId {
        let mut spec =
            VmSpec::new(name, VmConfig { memory_mib: 1024, max_memory_mib: 1024, ..VmConfig::default() });
        spec.pool = Some(self.pool);
        spec.repository = Some(self.repo);
        spec.config.vnics.push(Vnic { mac: String::new(), network: Some(self.net) });
        VmId(result_id(self.mgr.create_vm(spec)))
    }

    pub fn running_vm(&self, name: &str) -> VmId {
        let vm = self.vm(name);
        ok(self.mgr.start_vm(vm));
        vm
    }

    pub fn server_name(&self, s: ServerId) -> String {
        self.mgr.server(s).unwrap().name.clone()
    }
}
