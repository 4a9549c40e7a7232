//! Migration pre-checks on sim servers: every reason at once, a clean target, PV live migration
//! without shadow paging, and evacuation choosing only targets without blockers.

mod common;
use common::*;

use ovm_core::driver::sim::DEFAULT_PASSWORD;
use ovm_core::model::*;
use ovm_core::ErrorKind;

/// Discover `address` and add it to the lab's pool.
fn join(lab: &Lab, address: &str) -> ServerId {
    let s = ServerId(result_id(lab.mgr.discover_server(address, DEFAULT_PASSWORD)));
    ok(lab.mgr.add_server_to_pool(lab.pool, s));
    s
}

/// Put `server`'s eth1 into the lab's VM network (its bridge is then made there).
fn on_vm_network(lab: &Lab, server: ServerId) {
    let eth1 = lab.mgr.list::<Port>(|p| p.server == server && p.interface == "eth1")[0].id;
    ok(lab.mgr.add_network_member(lab.net, NetworkMember::Port(eth1)));
}

fn kinds(b: &[MigrationBlocker]) -> Vec<MigrationBlockerKind> {
    b.iter().map(|b| b.kind).collect()
}

#[test]
fn every_blocker_is_reported_by_one_call_and_a_clean_target_migrates() {
    let lab = lab();
    // A small server of another Xen release with an older CPU, in maintenance, without the
    // repository or the VM network.
    let s3 = join(&lab, "sim://xen3?memory_mib=4096&xen=4.16.2&cpu=178bfbff,7ffa3223");
    ok(lab.mgr.set_maintenance_mode(s3, true));
    let mut spec = ovm_core::manager::VmSpec::new(
        "big",
        VmConfig { memory_mib: 8192, max_memory_mib: 8192, ..VmConfig::default() },
    );
    spec.pool = Some(lab.pool);
    spec.repository = Some(lab.repo);
    spec.config.vnics.push(Vnic { mac: String::new(), network: Some(lab.net) });
    let vm = VmId(result_id(lab.mgr.create_vm(spec)));
    ok(lab.mgr.start_vm(vm));
    let from = lab.mgr.vm(vm).unwrap().server.unwrap();
    let to = if from == lab.s1 { lab.s2 } else { lab.s1 };

    let found = lab.mgr.migration_blockers(vm, s3).unwrap();
    assert_eq!(
        kinds(&found),
        vec![
            MigrationBlockerKind::TargetInMaintenance,
            MigrationBlockerKind::RepositoryUnavailable,
            MigrationBlockerKind::NetworkMissing,
            MigrationBlockerKind::InsufficientMemory,
            MigrationBlockerKind::CpuIncompatible,
            MigrationBlockerKind::XenVersionMismatch,
        ],
        "{found:#?}"
    );
    assert_eq!(found[1].object, Some(ObjectRef::new(ObjectKind::Repository, lab.repo)));
    assert_eq!(found[2].object, Some(ObjectRef::new(ObjectKind::Network, lab.net)));
    assert_eq!(found[3].detail, "VM big needs 8192 MiB, xen3 has 3072 MiB free for guests");
    assert!(found[4].detail.starts_with("xen3's CPU lacks 28 feature(s) of "), "{}", found[4].detail);
    assert!(found[5].detail.ends_with("runs Xen 4.17.0-sim, xen3 runs Xen 4.16.2"), "{}", found[5].detail);

    // assert_can_migrate and migrate_vm refuse with one error naming every reason, and nothing moves.
    let err = lab.mgr.assert_can_migrate(vm, s3).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    let text = err.to_string();
    assert!(text.contains("blocked by 6 reasons"), "{text}");
    for b in &found {
        assert!(text.contains(&b.detail), "{text} lacks {}", b.detail);
    }
    let jobs = lab.mgr.jobs(&Default::default()).unwrap().len();
    assert_eq!(lab.mgr.migrate_vm(vm, s3).unwrap_err(), err);
    assert_eq!(lab.mgr.jobs(&Default::default()).unwrap().len(), jobs, "no job was submitted");
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(from));

    // The VM's own server, and a server that does not exist.
    assert_eq!(kinds(&lab.mgr.migration_blockers(vm, from).unwrap()), vec![MigrationBlockerKind::SameServer]);
    let missing = ServerId::new();
    assert_eq!(lab.mgr.migration_blockers(vm, missing).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(lab.mgr.migrate_vm(vm, missing).unwrap_err().kind(), ErrorKind::NotFound);

    // The other lab server is clean, and the migration goes.
    assert_eq!(lab.mgr.migration_blockers(vm, to).unwrap(), vec![]);
    lab.mgr.assert_can_migrate(vm, to).unwrap();
    ok(lab.mgr.migrate_vm(vm, to));
    let v = lab.mgr.vm(vm).unwrap();
    assert_eq!((v.server, v.power_state), (Some(to), PowerState::Running));
}

#[test]
fn a_server_without_shadow_paging_cannot_live_migrate_a_pv_guest() {
    let lab = lab();
    // The biggest server, so a started VM lands there; its Xen is built without shadow paging.
    let noshadow = join(&lab, "sim://xen4?memory_mib=65536&caps=pv,hvm,hap");
    ok(lab.mgr.present_repository(lab.repo, noshadow));
    on_vm_network(&lab, noshadow);
    let hw = &lab.mgr.server(noshadow).unwrap().hardware;
    assert_eq!(hw.virt, Some(VirtCapabilities { shadow: false, ..VirtCapabilities::ALL }));
    let vm = lab.running_vm("pv");
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(noshadow));
    assert_eq!(lab.mgr.vm(vm).unwrap().config.domain_type, DomainType::Pv);

    let found = lab.mgr.migration_blockers(vm, lab.s1).unwrap();
    assert_eq!(kinds(&found), vec![MigrationBlockerKind::LiveMigrationUnsupported]);
    assert_eq!(found[0].object, Some(ObjectRef::new(ObjectKind::Server, noshadow)));
    assert!(found[0].detail.contains("without shadow paging"), "{}", found[0].detail);
    let err = lab.mgr.migrate_vm(vm, lab.s1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains("shadow paging"), "{err}");
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(noshadow));

    // Stopped, it merely moves.
    ok(lab.mgr.kill_vm(vm));
    assert_eq!(lab.mgr.migration_blockers(vm, lab.s1).unwrap(), vec![]);
    ok(lab.mgr.migrate_vm(vm, lab.s1));
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(lab.s1));
}

#[test]
fn evacuation_skips_servers_with_blockers() {
    let lab = lab();
    let vm = lab.running_vm("evac");
    let from = lab.mgr.vm(vm).unwrap().server.unwrap();
    let other = if from == lab.s1 { lab.s2 } else { lab.s1 };
    // The server with the most free memory — the start policy's choice — has the repository but
    // not the VM network.
    let roomy = join(&lab, "sim://xen5?memory_mib=131072");
    ok(lab.mgr.present_repository(lab.repo, roomy));
    assert_eq!(
        kinds(&lab.mgr.migration_blockers(vm, roomy).unwrap()),
        vec![MigrationBlockerKind::NetworkMissing]
    );
    let job = ok(lab.mgr.set_maintenance_mode(from, true));
    assert_eq!(job.children.len(), 1);
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(other));
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Running);

    // With no server left without blockers, evacuation fails naming each one's reasons.
    ok(lab.mgr.set_maintenance_mode(from, false));
    ok(lab.mgr.set_maintenance_mode(from, true));
    let err = lab.mgr.set_maintenance_mode(other, true).unwrap().wait(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EvacuationFailed, "{err}");
    let text = err.to_string();
    assert!(text.contains("is in maintenance mode"), "{text}");
    assert!(text.contains("network vmnet of VM evac has no member on xen5"), "{text}");
    assert_eq!(lab.mgr.vm(vm).unwrap().server, Some(other));
}
