//! The object model's rules, enforced through the Manager API with typed errors, nothing stored changed.

mod common;
use common::*;

use ovm_core::manager::{NetworkSpec, PoolSpec, RepositorySpec, StorageArraySpec, VmSpec};
use ovm_core::model::*;
use ovm_core::{Error, ErrorKind};

fn kind<T: std::fmt::Debug>(r: ovm_core::Result<T>) -> ErrorKind {
    r.expect_err("must be refused").kind()
}

#[test]
fn clustered_pool_needs_virtual_ip_and_pool_file_system() {
    let lab = lab();
    let mut spec = PoolSpec::new("clustered");
    spec.clustered = true;
    let err = lab.mgr.create_pool(spec.clone()).unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument { field, .. } if field == "virtual_ip"), "{err}");
    spec.virtual_ip = Some("192.0.2.1".parse().unwrap());
    let err = lab.mgr.create_pool(spec.clone()).unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument { field, .. } if field == "pool_file_system"), "{err}");
    spec.pool_file_system = Some(lab.fs);
    ok(lab.mgr.create_pool(spec.clone()));
    // The same virtual IP twice is a conflict.
    spec.name = "clustered2".into();
    assert_eq!(kind(lab.mgr.create_pool(spec)), ErrorKind::Conflict);
    // Cluster timeout bounds.
    let mut spec = PoolSpec::new("t");
    spec.cluster_timeout_secs = 9;
    assert_eq!(kind(lab.mgr.create_pool(spec)), ErrorKind::InvalidArgument);
    assert!(lab.mgr.get_by_name::<ServerPool>("t").is_err());
}

#[test]
fn server_belongs_to_at_most_one_pool() {
    let lab = lab();
    let p2 = PoolId(result_id(lab.mgr.create_pool(PoolSpec::new("pool2"))));
    let err = lab.mgr.add_server_to_pool(p2, lab.s1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("at most one pool"), "{err}");
    assert!(lab.mgr.pool(p2).unwrap().servers.is_empty());
    // Editing membership around the API is refused too.
    let mut pool2 = (*lab.mgr.pool(p2).unwrap()).clone();
    pool2.servers.push(lab.s1);
    assert_eq!(kind(lab.mgr.update_object(Object::ServerPool(pool2))), ErrorKind::Conflict);
    // The first member is the master; removing it elects another.
    assert_eq!(lab.mgr.pool(lab.pool).unwrap().master, Some(lab.s1));
    ok(lab.mgr.remove_server_from_pool(lab.pool, lab.s1));
    assert_eq!(lab.mgr.pool(lab.pool).unwrap().master, Some(lab.s2));
    ok(lab.mgr.add_server_to_pool(p2, lab.s1));
    assert_eq!(lab.mgr.server(lab.s1).unwrap().pool, Some(p2));
}

/// A LUN of a generic iSCSI array, discovered by registering the array through server 1.
fn physical_disk(lab: &Lab) -> PhysicalDiskId {
    let wwid = lab.mgr.sim().add_lun("iqn.2026-01.ovm.sim:rules", "lun0", 50 << 30);
    let array = StorageArrayId(result_id(lab.mgr.register_storage_array(StorageArraySpec::iscsi(
        "iscsi1",
        "storage",
        vec![lab.s1],
    ))));
    lab.mgr.physical_disks_of(array).iter().find(|d| d.page83_id == wwid).expect("the LUN is discovered").id
}

#[test]
fn repository_on_physical_disk_needs_clustered_pool_and_stays_in_it() {
    let lab = lab();
    let lun = physical_disk(&lab);
    let spec = |pool| RepositorySpec {
        name: "lunrepo".into(),
        backing: RepositoryBacking::PhysicalDisk(lun),
        owner_pool: pool,
        capacity_bytes: 0,
    };
    assert_eq!(kind(lab.mgr.create_repository(spec(None))), ErrorKind::InvalidArgument);
    let err = lab.mgr.create_repository(spec(Some(lab.pool))).unwrap_err();
    assert!(err.to_string().contains("not clustered"), "{err}");
    // A clustered pool with its own server.
    let s3 =
        ServerId(result_id(lab.mgr.discover_server("sim://xen3", ovm_core::driver::sim::DEFAULT_PASSWORD)));
    let mut cp = PoolSpec::new("cpool");
    cp.clustered = true;
    cp.virtual_ip = Some("192.0.2.2".parse().unwrap());
    cp.pool_file_system = Some(lab.fs);
    let cpool = PoolId(result_id(lab.mgr.create_pool(cp)));
    ok(lab.mgr.add_server_to_pool(cpool, s3));
    let repo = RepositoryId(result_id(lab.mgr.create_repository(spec(Some(cpool)))));
    // Presented to one pool only (the rule is checked before anything is mounted).
    let err = lab.mgr.present_repository(repo, lab.s1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    // Mounting OCFS2 on a LUN comes with the clustered pools; until then it is refused, not faked.
    assert_eq!(kind(lab.mgr.present_repository(repo, s3)), ErrorKind::Unsupported);
    assert!(lab.mgr.repository(repo).unwrap().presented_to.is_empty());
    // The pool cannot stop being clustered while it owns the repository.
    assert_eq!(kind(lab.mgr.edit_pool(cpool, |p| p.clustered = false)), ErrorKind::Conflict);
}

#[test]
fn a_port_belongs_to_at_most_one_network() {
    let lab = lab();
    let port_named = |name: &str| lab.mgr.list::<Port>(|p| p.server == lab.s1 && p.interface == name)[0].id;
    let port = port_named("eth0");
    // Discovery put the port the manager reaches the server through into the management network.
    let mgmt = lab.mgr.get_by_name::<Network>("Server Management").unwrap();
    assert!(mgmt.members.contains(&NetworkMember::Port(port)));
    let net2 = NetworkId(result_id(lab.mgr.create_network(NetworkSpec::vm_network("vmnet2", "xenbr2"))));
    let err = lab.mgr.add_network_member(net2, NetworkMember::Port(port)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("at most one network"), "{err}");
    // Taking it out of the management network would cut the manager's link: refused.
    let err = lab.mgr.remove_network_member(mgmt.id, NetworkMember::Port(port)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("cut the manager's link"), "{err}");
    // Bonded ports cannot be members themselves; a VLAN on the bond can.
    let (eth2, eth3) = (port_named("eth2"), port_named("eth3"));
    let bond =
        BondPortId(result_id(lab.mgr.create_bond(lab.s1, "bond0", BondMode::ActiveBackup, vec![eth2, eth3])));
    assert_eq!(lab.mgr.get::<Port>(eth2).unwrap().bond, Some(bond));
    assert_eq!(kind(lab.mgr.add_network_member(net2, NetworkMember::Port(eth2))), ErrorKind::Conflict);
    let vlan = VlanInterfaceId(result_id(lab.mgr.create_vlan_interface(lab.s1, VlanParent::Bond(bond), 100)));
    ok(lab.mgr.add_network_member(net2, NetworkMember::Vlan(vlan)));
    assert_eq!(kind(lab.mgr.create_vlan_interface(lab.s1, VlanParent::Bond(bond), 100)), ErrorKind::Conflict);
    assert_eq!(
        kind(lab.mgr.create_vlan_interface(lab.s1, VlanParent::Bond(bond), 4095)),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn vm_memory_within_max_within_server() {
    let lab = lab();
    let mut spec =
        VmSpec::new("big", VmConfig { memory_mib: 4096, max_memory_mib: 2048, ..VmConfig::default() });
    let err = lab.mgr.create_vm(spec.clone()).unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument { field, .. } if field == "memory_mib"), "{err}");
    // Servers have 16 GiB, 1 GiB of which dom0 keeps.
    spec.config = VmConfig { memory_mib: 1024, max_memory_mib: 32768, ..VmConfig::default() };
    spec.server = Some(lab.s1);
    let err = lab.mgr.create_vm(spec.clone()).unwrap_err();
    assert!(matches!(&err, Error::InvalidArgument { field, .. } if field == "max_memory_mib"), "{err}");
    spec.config.max_memory_mib = 15 * 1024;
    ok(lab.mgr.create_vm(spec));
    let vcpus = VmSpec::new("cpu", VmConfig { vcpus: 4, max_vcpus: 2, ..VmConfig::default() });
    assert_eq!(kind(lab.mgr.create_vm(vcpus)), ErrorKind::InvalidArgument);
}

#[test]
fn macs_are_unique_and_allocated_from_the_range() {
    let lab = lab();
    let a = lab.vm("a");
    let mac = lab.mgr.vm(a).unwrap().config.vnics[0].mac.clone();
    assert!(mac.starts_with("00:16:3e:"), "{mac}");
    let mut spec = VmSpec::new("b", VmConfig::default());
    spec.config.vnics.push(Vnic { mac: mac.clone(), network: Some(lab.net) });
    let err = lab.mgr.create_vm(spec).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("MAC"), "{err}");
    assert!(lab.mgr.vm_by_name("b").is_err());
    let b = lab.vm("b2");
    assert_ne!(lab.mgr.vm(b).unwrap().config.vnics[0].mac, mac);
    // A custom, small range gets exhausted with a clear error.
    ok(lab.mgr.set_mac_range(MacRange::new("02:00:00:00:00:00", "02:00:00:00:00:00").unwrap()));
    lab.vm("c");
    let mut spec = VmSpec::new("d", VmConfig::default());
    spec.config.vnics.push(Vnic { mac: String::new(), network: None });
    let err = lab.mgr.create_vm(spec).unwrap_err();
    assert!(err.to_string().contains("exhausted"), "{err}");
    assert!(MacRange::new("01:00:00:00:00:00", "01:00:00:00:00:10").is_err(), "multicast refused");
    assert!(MacRange::new("00:00:00:00:00:10", "00:00:00:00:00:01").is_err());
}

#[test]
fn names_unique_and_in_use_objects_not_deleted() {
    let lab = lab();
    let err =
        lab.mgr.create_network(ovm_core::manager::NetworkSpec::vm_network("vmnet", "xenbr9")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    lab.vm("user");
    let err = lab.mgr.delete_object(ObjectRef::new(ObjectKind::Network, lab.net)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(lab.mgr.network(lab.net).is_ok());
    let err = lab.mgr.delete_object(ObjectRef::new(ObjectKind::Repository, lab.repo)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(kind(lab.mgr.create_object(Object::Tag(Tag::new("")))), ErrorKind::InvalidArgument);
    assert_eq!(kind(lab.mgr.create_object(Object::Tag(Tag::new("bad\nname")))), ErrorKind::InvalidArgument);
    let unknown = ObjectRef::new(ObjectKind::Vm, ovm_core::uuid::Uuid::new_v4());
    assert_eq!(kind(lab.mgr.delete_object(unknown)), ErrorKind::NotFound);
    let mut t = Tag::new("prod");
    t.objects.push(unknown);
    // A tag naming a missing object: that object is not found.
    assert_eq!(kind(lab.mgr.create_object(Object::Tag(t))), ErrorKind::NotFound);
}

#[test]
fn vm_networks_must_carry_vm_traffic() {
    let lab = lab();
    let mut spec = ovm_core::manager::NetworkSpec::vm_network("storage", "xenbr5");
    spec.functions = [NetworkFunction::Storage].into();
    let storage = NetworkId(result_id(lab.mgr.create_network(spec)));
    let mut vm = VmSpec::new("x", VmConfig::default());
    vm.config.vnics.push(Vnic { mac: String::new(), network: Some(storage) });
    assert_eq!(kind(lab.mgr.create_vm(vm)), ErrorKind::InvalidArgument);
    lab.vm("on-vmnet");
    let mut n = (*lab.mgr.network(lab.net).unwrap()).clone();
    n.functions = [NetworkFunction::Storage].into();
    assert_eq!(kind(lab.mgr.update_object(Object::Network(n))), ErrorKind::Conflict);
}

#[test]
fn a_reference_to_a_missing_object_is_not_found_with_its_kind_and_id() {
    let lab = lab();
    let missing = PoolId::new();
    let mut spec = VmSpec::new("orphan", VmConfig::default());
    spec.pool = Some(missing);
    let err = lab.mgr.create_vm(spec).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { kind: ObjectKind::ServerPool, id } if *id == missing.to_string()),
        "{err:?}"
    );
    // Other arguments naming missing objects: a network member, a bond's port, a repository's server.
    let port = PortId::new();
    let err = lab.mgr.add_network_member(lab.net, NetworkMember::Port(port)).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { kind: ObjectKind::Port, id } if *id == port.to_string()),
        "{err:?}"
    );
    let err =
        lab.mgr.create_bond(lab.s1, "bond9", BondMode::ActiveBackup, vec![port]).map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::NotFound { kind: ObjectKind::Port, .. }), "{err:?}");
    let server = ServerId::new();
    let err = lab.mgr.present_repository(lab.repo, server).map(|_| ()).unwrap_err();
    assert!(matches!(&err, Error::NotFound { kind: ObjectKind::Server, .. }), "{err:?}");
    // Nothing was stored.
    assert!(lab.mgr.get_by_name::<Vm>("orphan").is_err());
    assert!(lab.mgr.get_by_name::<BondPort>("bond9").is_err());
}

#[test]
fn generic_edits_keep_the_typed_rules() {
    let lab = lab();
    let vm = lab.vm("generic");
    // A VM's power state, server and domid are the manager's: a generic edit may not set them.
    let mut running = (*lab.mgr.vm(vm).unwrap()).clone();
    running.power_state = PowerState::Running;
    assert_eq!(kind(lab.mgr.update_object(Object::Vm(running))), ErrorKind::InvalidArgument);
    let mut placed = (*lab.mgr.vm(vm).unwrap()).clone();
    placed.server = Some(lab.s1);
    assert_eq!(kind(lab.mgr.update_object(Object::Vm(placed))), ErrorKind::InvalidArgument);
    assert_eq!(lab.mgr.vm(vm).unwrap().power_state, PowerState::Stopped);
    // What a typed edit may change, a generic edit may too.
    let mut renamed = (*lab.mgr.vm(vm).unwrap()).clone();
    renamed.description = "edited".into();
    ok(lab.mgr.update_object(Object::Vm(renamed)));
    assert_eq!(lab.mgr.vm(vm).unwrap().description, "edited");
    // A server's state and a repository's presentations change through operations only.
    let mut server = (*lab.mgr.server(lab.s1).unwrap()).clone();
    server.power_state = ServerPowerState::Stopped;
    assert_eq!(kind(lab.mgr.update_object(Object::Server(server))), ErrorKind::InvalidArgument);
    let mut repo = (*lab.mgr.get::<Repository>(lab.repo).unwrap()).clone();
    repo.presented_to.clear();
    assert_eq!(kind(lab.mgr.update_object(Object::Repository(repo))), ErrorKind::InvalidArgument);
    // A VM is created stopped, whatever the record says.
    let mut copy = (*lab.mgr.vm(vm).unwrap()).clone();
    copy.id = VmId::new();
    copy.name = "copy".into();
    copy.power_state = PowerState::Running;
    copy.config.vnics.clear();
    assert_eq!(kind(lab.mgr.create_object(Object::Vm(copy))), ErrorKind::InvalidArgument);
}

#[test]
fn generic_delete_of_a_virtual_disk_is_the_typed_delete() {
    let lab = lab();
    let disk = VirtualDiskId(result_id(lab.mgr.create_virtual_disk(lab.repo, "scratch", 1 << 30, false)));
    let used = lab.mgr.get::<Repository>(lab.repo).unwrap().used_bytes;
    let info =
        lab.mgr.delete_object(ObjectRef::new(ObjectKind::VirtualDisk, disk)).unwrap().wait(WAIT).unwrap();
    assert_eq!(info.kind, "DeleteVirtualDisk", "the disk's file is removed with its record");
    assert_eq!(lab.mgr.get::<Repository>(lab.repo).unwrap().used_bytes, used - (1 << 30));
}
