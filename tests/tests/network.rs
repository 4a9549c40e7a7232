//! Server networking on simulated servers: a VLAN network over active-backup bonds on three servers,
//! VNICs on it (at start and hot-plugged), bad input refused with every server unchanged (read
//! back), a failure on the second of three servers undone on the first, a forced change that cuts
//! the management link rolled back by the server, drift found and converged, a vanished port
//! reported, and MACs unique across a manager restart.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use common::{ok, result_id, WAIT};
use ovm_core::driver::sim::{SimOp, DEFAULT_PASSWORD};
use ovm_core::driver::{AddressConfig, BondMonitor, NetChange, NetKey, NetworkConfig};
use ovm_core::manager::{BondSpec, NetworkApply, NetworkSpec, PoolSpec, VmSpec};
use ovm_core::model::*;
use ovm_core::store::EventFilter;
use ovm_core::{ErrorKind, Manager};

struct Dc {
    mgr: Manager,
    servers: Vec<ServerId>,
    names: Vec<String>,
}

fn dc(mgr: Manager, n: usize) -> Dc {
    let mut servers = Vec::new();
    let mut names = Vec::new();
    for i in 1..=n {
        let s = ServerId(result_id(mgr.discover_server(&format!("sim://net{i}"), DEFAULT_PASSWORD)));
        servers.push(s);
        names.push(format!("net{i}"));
    }
    Dc { mgr, servers, names }
}

impl Dc {
    fn port(&self, s: ServerId, name: &str) -> PortId {
        self.mgr.list::<Port>(|p| p.server == s && p.interface == name)[0].id
    }
    fn configs(&self) -> Vec<NetworkConfig> {
        self.names.iter().map(|n| self.mgr.sim().network_config(n).unwrap()).collect()
    }
    /// On every server: bond0 of eth1+eth2 (active-backup, ARP-monitored), addressed on the storage
    /// network; VLAN 300 on it in a VM network on bridge vmnet300.
    fn build(&self) -> (Vec<BondPortId>, Vec<VlanInterfaceId>, NetworkId, NetworkId) {
        let mut bonds = Vec::new();
        let mut vlans = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            let mut spec = BondSpec::new(
                *s,
                "bond0",
                BondMode::ActiveBackup,
                vec![self.port(*s, "eth1"), self.port(*s, "eth2")],
            );
            spec.monitor =
                BondMonitor::Arp { interval_ms: 200, targets: vec!["10.77.1.254".parse().unwrap()] };
            spec.addressing =
                Addressing::Static { address: format!("10.77.1.{}", i + 1).parse().unwrap(), prefix: 24 };
            let b = BondPortId(result_id(self.mgr.create_bond_with(spec)));
            bonds.push(b);
            vlans.push(VlanInterfaceId(result_id(self.mgr.create_vlan_interface(
                *s,
                VlanParent::Bond(b),
                300,
            ))));
        }
        let mut storage =
            NetworkSpec::new("storage", "unused0", BTreeSet::from([NetworkFunction::Storage]), None);
        storage.members = bonds.iter().map(|b| NetworkMember::Bond(*b)).collect();
        let storage = NetworkId(result_id(self.mgr.create_network(storage)));
        let mut vm = NetworkSpec::vm_network("vm300", "vmnet300");
        vm.members = vlans.iter().map(|v| NetworkMember::Vlan(*v)).collect();
        let vm = NetworkId(result_id(self.mgr.create_network(vm)));
        (bonds, vlans, storage, vm)
    }
}

#[test]
fn a_vlan_network_over_bonds_is_configured_on_every_server_and_carries_vnics() {
    let d = dc(Manager::builder().recurring_jobs(false).open().unwrap(), 3);
    let (_bonds, _vlans, _storage, vmnet) = d.build();
    for (i, cfg) in d.configs().iter().enumerate() {
        let bond = &cfg.bonds[0];
        assert_eq!(
            (bond.name.as_str(), &bond.ports[..]),
            ("bond0", &["eth1".to_string(), "eth2".to_string()][..])
        );
        assert_eq!(bond.primary.as_deref(), Some("eth1"));
        assert!(matches!(bond.monitor, BondMonitor::Arp { .. }));
        assert_eq!(cfg.vlans[0].name(), "bond0.300");
        let br = cfg.bridges.iter().find(|b| b.name == "vmnet300").expect("the VM network's bridge");
        assert_eq!(br.interfaces, vec!["bond0.300".to_string()]);
        let ip: IpAddr = format!("10.77.1.{}", i + 1).parse().unwrap();
        assert!(cfg.addresses.iter().any(|a| a.address == ip && a.interface == "bond0"), "{cfg:?}");
        assert!(d.mgr.network_drift(d.servers[i]).unwrap().is_empty());
    }
    assert_eq!(
        d.mgr.network_address(d.servers[1], NetworkFunction::Storage),
        Some("10.77.1.2".parse().unwrap())
    );
    // A VM on the network: its VNIC is on vmnet300 when it starts; a second VNIC is hot-plugged and
    // unplugged while it runs.
    let pool = PoolId(result_id(d.mgr.create_pool(PoolSpec::new("p"))));
    for s in &d.servers {
        ok(d.mgr.add_server_to_pool(pool, *s));
    }
    let mut spec = VmSpec::new("v", VmConfig { memory_mib: 512, max_memory_mib: 512, ..VmConfig::default() });
    spec.pool = Some(pool);
    spec.config.vnics.push(Vnic { mac: String::new(), network: Some(vmnet) });
    let vm = VmId(result_id(d.mgr.create_vm(spec)));
    ok(d.mgr.start_vm(vm));
    let mac = d.mgr.vm(vm).unwrap().config.vnics[0].mac.clone();
    assert!(mac.starts_with("00:16:3e"), "{mac}");
    assert_eq!(d.mgr.sim().domain_nics(vm), vec![(mac.clone(), "vmnet300".to_string())]);
    ok(d.mgr.add_vnic(vm, Some(vmnet)));
    let mac2 = d.mgr.vm(vm).unwrap().config.vnics[1].mac.clone();
    assert_ne!(mac, mac2);
    let nics = d.mgr.vm_nics(vm).unwrap();
    assert_eq!(nics.len(), 2);
    assert!(nics.iter().all(|n| n.1 == "vmnet300" && n.2));
    ok(d.mgr.remove_vnic(vm, &mac2));
    assert_eq!(d.mgr.vm_nics(vm).unwrap().len(), 1);
    assert_eq!(d.mgr.vm(vm).unwrap().config.vnics.len(), 1);
    // Taking the network apart unconfigures every server.
    ok(d.mgr.kill_vm(vm));
    ok(d.mgr.delete_object(ObjectRef::new(ObjectKind::Vm, vm.0)));
    ok(d.mgr.delete_object(ObjectRef::new(ObjectKind::Network, vmnet.0)));
    for cfg in d.configs() {
        assert!(cfg.bridges.iter().all(|b| b.name != "vmnet300"));
    }
}

#[test]
fn bad_input_is_refused_with_every_server_unchanged() {
    let d = dc(Manager::builder().recurring_jobs(false).open().unwrap(), 3);
    let (bonds, vlans, _storage, vmnet) = d.build();
    let before = d.configs();
    let s1 = d.servers[0];
    let kind = |r: ovm_core::Result<ovm_core::JobHandle>| match r {
        Err(e) => e.kind(),
        Ok(j) => j.wait(WAIT).expect_err("must fail").kind(),
    };
    // A port in two networks.
    let net2 = NetworkId(result_id(d.mgr.create_network(NetworkSpec::vm_network("other", "vmnet9"))));
    assert_eq!(kind(d.mgr.add_network_member(net2, NetworkMember::Vlan(vlans[0]))), ErrorKind::Conflict);
    // A bond member already in use.
    assert_eq!(
        kind(d.mgr.create_bond(s1, "bond1", BondMode::Lacp, vec![d.port(s1, "eth2"), d.port(s1, "eth3")])),
        ErrorKind::Conflict
    );
    // VLAN ids outside 1-4094.
    for id in [0, 4095] {
        assert_eq!(
            kind(d.mgr.create_vlan_interface(s1, VlanParent::Bond(bonds[0]), id)),
            ErrorKind::InvalidArgument
        );
    }
    // An MTU the port refuses.
    d.mgr.sim().set_max_mtu("net1", "eth3", 1500).unwrap();
    let mut jumbo = NetworkSpec::new("jumbo", "vmjumbo", BTreeSet::new(), Some(9000));
    jumbo.members = vec![NetworkMember::Port(d.port(s1, "eth3"))];
    let e = d.mgr.create_network(jumbo).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("eth3"), "{e}");
    // A bridge name that collides: with another network's bridge, with a port.
    assert_eq!(kind(d.mgr.create_network(NetworkSpec::vm_network("again", "vmnet300"))), ErrorKind::Conflict);
    let mut on_port = NetworkSpec::vm_network("portname", "eth0");
    on_port.members = vec![NetworkMember::Port(d.port(s1, "eth3"))];
    assert_eq!(kind(d.mgr.create_network(on_port)), ErrorKind::Conflict);
    // A function that needs an address on a member without one.
    let mut hb =
        NetworkSpec::new("heartbeat", "unused1", BTreeSet::from([NetworkFunction::ClusterHeartbeat]), None);
    hb.members = vec![NetworkMember::Port(d.port(s1, "eth3"))];
    assert_eq!(kind(d.mgr.create_network(hb)), ErrorKind::InvalidArgument);
    // A change that fails on the second of three servers is undone on the first.
    let mut wide = NetworkSpec::vm_network("wide", "vmwide");
    wide.members = d.servers.iter().map(|s| NetworkMember::Port(d.port(*s, "eth3"))).collect();
    d.mgr.sim().fail_next(SimOp::NetworkChange, Some("net2"), 1);
    let e = d.mgr.create_network(wide).unwrap().wait(WAIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(d.mgr.get_by_name::<Network>("wide").is_err(), "not recorded");
    assert!(d.mgr.get::<Network>(vmnet).is_ok());
    assert_eq!(d.configs(), before, "every server as it was");
}

#[test]
fn a_forced_change_that_cuts_management_is_rolled_back_by_the_server() {
    let d = dc(Manager::builder().recurring_jobs(false).open().unwrap(), 1);
    let s = d.servers[0];
    let eth0 = d.port(s, "eth0");
    let before = d.configs();
    let ip = d.mgr.sim().management_ip("net1").unwrap();
    let moved = Addressing::Static { address: "10.201.0.9".parse().unwrap(), prefix: 16 };
    // Refused unless forced.
    let e =
        d.mgr.set_addressing(NetworkMember::Port(eth0), moved.clone(), NetworkApply::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(d.configs(), before);
    // Forced: the server applies it, the manager cannot reach it to confirm, the server undoes it.
    let how = NetworkApply { force: true, confirm_within: Duration::from_secs(2) };
    let e = d
        .mgr
        .set_addressing(NetworkMember::Port(eth0), moved, how)
        .unwrap()
        .wait(Some(Duration::from_secs(60)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("rolled back"), "{e}");
    assert_eq!(d.configs(), before, "rolled back on the server");
    assert_eq!(
        d.mgr.get::<Port>(eth0).unwrap().addressing,
        Addressing::Static { address: ip, prefix: 16 },
        "the model keeps the address"
    );
    let warned = d.mgr.events(&EventFilter { object: Some(s.0), ..Default::default() }).unwrap();
    assert!(warned.iter().any(|e| e.event_type == "network.rolled_back"), "{warned:?}");
    // A forced change that does not cut it is applied at once.
    ok(d.mgr.acknowledge_all(ObjectRef::new(ObjectKind::Server, s.0)));
    let extra = Addressing::Static { address: "192.0.2.7".parse().unwrap(), prefix: 24 };
    ok(d.mgr.set_addressing(NetworkMember::Port(d.port(s, "eth3")), extra, NetworkApply::default()));
}

#[test]
fn drift_is_reported_and_converged_and_a_vanished_port_raises_an_event() {
    let d = dc(Manager::builder().recurring_jobs(false).open().unwrap(), 2);
    d.build();
    let s = d.servers[1];
    let want = d.mgr.desired_network_config(s).unwrap();
    d.mgr.sim().tamper_network("net2", NetChange::Remove(NetKey::Bridge("vmnet300".into()))).unwrap();
    d.mgr
        .sim()
        .tamper_network(
            "net2",
            NetChange::Remove(NetKey::Address(AddressConfig {
                interface: "bond0".into(),
                address: "10.77.1.2".parse().unwrap(),
                prefix: 24,
            })),
        )
        .unwrap();
    let drift = d.mgr.network_drift(s).unwrap();
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert!(drift.iter().any(|x| x.contains("vmnet300")), "{drift:?}");
    ok(d.mgr.refresh_server(s));
    let events = d.mgr.events(&EventFilter { object: Some(s.0), ..Default::default() }).unwrap();
    let ev = events.iter().find(|e| e.event_type == "network.drift").expect("a drift event");
    assert!(ev.summary.contains("vmnet300") && ev.summary.contains("10.77.1.2"), "{}", ev.summary);
    ok(d.mgr.reapply_network(s));
    assert!(d.mgr.network_drift(s).unwrap().is_empty());
    let cfg = d.mgr.server_network_config(s).unwrap();
    for item in want.items() {
        assert!(cfg.items().contains(&item), "{item:?} back");
    }
    // A port disappears.
    d.mgr.sim().remove_port("net2", "eth3").unwrap();
    ok(d.mgr.refresh_server(s));
    let events = d.mgr.events(&EventFilter { object: Some(s.0), ..Default::default() }).unwrap();
    assert!(
        events.iter().any(|e| e.event_type == "network.drift" && e.summary.contains("port eth3")),
        "{events:?}"
    );
}

#[test]
fn vnic_macs_are_unique_across_a_manager_restart() {
    let path = std::env::temp_dir().join(format!("ovm-net-macs-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let open = || {
        Manager::builder().database_uri(path.to_str().unwrap()).unwrap().recurring_jobs(false).open().unwrap()
    };
    let mk = |mgr: &Manager, name: &str| {
        let mut spec =
            VmSpec::new(name, VmConfig { memory_mib: 256, max_memory_mib: 256, ..VmConfig::default() });
        spec.config.vnics = vec![Vnic { mac: String::new(), network: None }; 2];
        let vm = VmId(result_id(mgr.create_vm(spec)));
        mgr.vm(vm).unwrap().config.vnics.iter().map(|n| n.mac.clone()).collect::<Vec<_>>()
    };
    let first = {
        let mgr = open();
        let macs = mk(&mgr, "a");
        mgr.close(Duration::from_secs(5)).unwrap();
        macs
    };
    let mgr = open();
    let second = mk(&mgr, "b");
    let all: BTreeSet<&String> = first.iter().chain(second.iter()).collect();
    assert_eq!(all.len(), 4, "{first:?} {second:?}");
    mgr.close(Duration::from_secs(5)).unwrap();
    let _ = std::fs::remove_file(&path);
}
