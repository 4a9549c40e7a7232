//! Server networking on real servers: the manager on the lab's management LAN, an ovm agent in the
//! dom0 of three Xen servers with four NICs each on the lab switch. ovm discovers the ports, makes
//! a VM network on three servers (timed), builds on servers 2 and 3 an active-backup bond of the two
//! storage NICs (ARP-monitored, addressed on a storage network), VLAN 300 on it and a VM network
//! bridge on the VLAN; a guest on each server with a VNIC on that network pings the other; a bond
//! member's link is cut at the switch and the pings carry on (the gap measured); a NIC is hot-plugged;
//! drift is found and converged; a forced change that cuts the management link is rolled back by
//! the agent; bad input is refused with the servers unchanged (read back in dom0); everything is
//! taken apart again. Run through the lab, in the data-centre boot (`make dc-lab-test`).

mod lab;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use lab::{agent_listens, on, wait_for};

use ovm_core::driver::BondMonitor;
use ovm_core::manager::{BondSpec, NetworkApply, NetworkSpec, VmSpec};
use ovm_core::model::*;
use ovm_core::store::EventFilter;
use ovm_core::{ErrorKind, JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> (ObjectRef, Duration) {
    lab::ok_timed(what, job, secs)
}

/// A change refused at once or by its job.
fn refused(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> ovm_core::Error {
    let e = match job {
        Err(e) => e,
        Ok(j) => j.wait(Some(Duration::from_secs(secs))).expect_err(what),
    };
    println!("refused as it should be: {what}: {e}");
    e
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is unset: run this test through `tests/xenlab/lab serve -n 3 --storage --manager` (make dc-lab-test)")
    })
}

/// Set a link of the lab switch up or down (`node2.storage` is server 2's stor0).
fn switch(link: &str, state: &str) {
    let st = std::process::Command::new(env("OVM_XENLAB_SWITCH"))
        .args(["ctl", &env("OVM_XENLAB_SWITCH_DIR"), "link", link, state])
        .status()
        .expect("run the lab switch's control");
    assert!(st.success(), "switch link {link} {state}");
}

/// What dom0 of server `k` has, independently of ovm: interfaces (name, kind, master, MTU) and
/// addresses, without the guests' interfaces.
fn dom0_state(k: u32) -> String {
    on(
        k,
        "for n in $(ls /sys/class/net | grep -v -e '^vif' -e '^tap' -e '^bonding_masters$' | sort); do \
           m=$(basename \"$(readlink /sys/class/net/$n/master 2>/dev/null)\" 2>/dev/null); \
           echo \"$n mtu=$(cat /sys/class/net/$n/mtu) master=$m bridge=$([ -d /sys/class/net/$n/bridge ] && echo y) bond=$([ -d /sys/class/net/$n/bonding ] && echo y)\"; \
         done; ip -o addr show | grep -v -e ' vif' -e ' lo ' -e 'scope link' | awk '{print $2, $4}' | sort",
        30,
    )
}

fn active_slave(k: u32) -> String {
    on(k, "sed -n 's/^Currently Active Slave: //p' /proc/net/bonding/bond0", 30).trim().to_owned()
}

fn heartbeats(mgr: &Manager, vm: VmId) -> usize {
    mgr.vm_console(vm).map(|c| c.matches("OVM-DOMU-ALIVE").count()).unwrap_or(0)
}

fn ok_heartbeats(mgr: &Manager, vm: VmId) -> usize {
    mgr.vm_console(vm)
        .map(|c| c.lines().filter(|l| l.contains("OVM-DOMU-ALIVE") && l.contains("net=OK")).count())
        .unwrap_or(0)
}

#[test]
fn bonds_vlans_and_bridges_are_built_on_real_servers_and_carry_guests() {
    env("OVM_XENLAB_MANAGER_IP");
    let addrs: Vec<String> = (1..=3).map(|k| format!("10.77.0.{k}:8899")).collect();
    for a in &addrs {
        wait_for(&format!("agent {a} to listen"), 240, || agent_listens(a));
    }
    let mgr = Manager::builder().recurring_jobs(false).open().unwrap();
    // The earlier lab tests' managers own the agents: this one takes them over.
    let s: Vec<ServerId> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            ServerId(ok(&format!("take over server {}", i + 1), mgr.take_over_server(a, PASSWORD), 120).0.id)
        })
        .collect();
    let port = |k: usize, name: &str| mgr.list::<Port>(|p| p.server == s[k - 1] && p.interface == name)[0].id;

    // Ports, with what the NICs say about themselves; the management network from the port the
    // manager reaches each server through, its address as dom0 has it; no drift.
    let mgmt = mgr.get_by_name::<Network>("Server Management").unwrap();
    assert_eq!(mgmt.bridge, "xenbr0");
    for k in 1..=3 {
        let hw = mgr.server(s[k - 1]).unwrap().hardware.clone();
        for (name, mac) in [("lan0", "0a"), ("stor0", "0b"), ("vm0", "0c"), ("stor1", "0d")] {
            let p = hw
                .ports
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("server {k}: no port {name}"));
            assert_eq!(p.mac, format!("52:54:00:{mac}:00:0{k}"), "server {k} {name}");
            assert_eq!(p.carrier, Some(true), "server {k} {name}");
            assert_eq!(p.driver.as_deref(), Some("virtio_net"), "server {k} {name}");
        }
        assert_eq!(
            hw.ports.iter().find(|p| p.name == "vm0").unwrap().max_mtu,
            Some(1500),
            "vm0 takes no jumbo frames"
        );
        assert!(
            mgmt.members.contains(&NetworkMember::Port(port(k, "lan0"))),
            "server {k}: lan0 in the management network"
        );
        assert_eq!(
            mgr.get::<Port>(port(k, "lan0")).unwrap().addressing,
            Addressing::Static { address: format!("10.77.0.{k}").parse().unwrap(), prefix: 24 }
        );
        let drift = mgr.network_drift(s[k - 1]).unwrap();
        assert!(drift.is_empty(), "server {k}: {drift:?}");
    }
    let before: Vec<String> = (1..=3).map(dom0_state).collect();

    // Bad input refused, nothing changed on any server: an MTU vm0 refuses, a bridge named like a
    // port or like the management bridge, a storage network member without an address, a VLAN id
    // out of range.
    let mut jumbo = NetworkSpec::new("jumbo", "vmjumbo", BTreeSet::new(), Some(9000));
    jumbo.members = (1..=3).map(|k| NetworkMember::Port(port(k, "vm0"))).collect();
    let e = refused("a 9000-byte MTU on vm0", mgr.create_network(jumbo), 120);
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("vm0"), "{e}");
    let mut named_port = NetworkSpec::vm_network("named-like-a-port", "stor1");
    named_port.members = vec![NetworkMember::Port(port(1, "vm0"))];
    assert_eq!(
        refused("a bridge named stor1", mgr.create_network(named_port), 120).kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        refused(
            "a second network on bridge xenbr0",
            mgr.create_network(NetworkSpec::vm_network("again", "xenbr0")),
            60
        )
        .kind(),
        ErrorKind::Conflict
    );
    let mut storage_bare =
        NetworkSpec::new("bare", "unused0", BTreeSet::from([NetworkFunction::Storage]), None);
    storage_bare.members = vec![NetworkMember::Port(port(1, "vm0"))];
    assert_eq!(
        refused("a storage network without addresses", mgr.create_network(storage_bare), 60).kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        refused("VLAN 4095", mgr.create_vlan_interface(s[0], VlanParent::Port(port(1, "vm0")), 4095), 60)
            .kind(),
        ErrorKind::InvalidArgument
    );
    // A change that fails on the second of three servers (an interface of that name is there,
    // unknown to ovm) is undone on the first.
    // (no dummy0 from the module: numdummies=0)
    on(2, "modprobe dummy numdummies=0 && ip link add vmfail type dummy", 30);
    let mut fails = NetworkSpec::vm_network("fails-on-2", "vmfail");
    fails.members = (1..=3).map(|k| NetworkMember::Port(port(k, "vm0"))).collect();
    let e = refused("a network whose bridge server 2 cannot make", mgr.create_network(fails), 180);
    assert!(e.to_string().contains("vmfail"), "{e}");
    on(2, "ip link del vmfail", 30);
    for sk in &s {
        ok("acknowledge the failure", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Server, sk.0)), 30);
    }
    for k in 1..=3u32 {
        assert_eq!(dom0_state(k), before[k as usize - 1], "server {k} unchanged");
    }

    // Figure: a VM network applied to three servers.
    let mut pool_net = NetworkSpec::vm_network("vm-pool", "vmpool");
    pool_net.members = (1..=3).map(|k| NetworkMember::Port(port(k, "vm0"))).collect();
    let (r, took) = ok("a VM network on three servers", mgr.create_network(pool_net), 180);
    let pool_net = NetworkId(r.id);
    for k in 1..=3 {
        assert_eq!(on(k as u32, "ls /sys/class/net/vmpool/brif", 30).trim(), "vm0", "server {k}");
    }
    println!("FIGURE network applied to a 3-server pool: {:.2} s", took.as_secs_f64());

    // Servers 2 and 3: bond0 of stor0 + stor1, active-backup, ARP-monitored against the storage
    // server, addressed on a storage network; VLAN 300 on it; a VM network bridge on the VLAN.
    let storage_ip = env("OVM_XENLAB_STORAGE_IP");
    let mut bonds = Vec::new();
    let mut vlans = Vec::new();
    for k in [2usize, 3] {
        let mut b = BondSpec::new(
            s[k - 1],
            "bond0",
            BondMode::ActiveBackup,
            vec![port(k, "stor0"), port(k, "stor1")],
        );
        b.monitor = BondMonitor::Arp { interval_ms: 200, targets: vec![storage_ip.parse().unwrap()] };
        b.addressing = Addressing::Static { address: format!("10.77.1.{k}").parse().unwrap(), prefix: 24 };
        let bond = BondPortId(ok(&format!("bond0 on server {k}"), mgr.create_bond_with(b), 180).0.id);
        bonds.push(bond);
        vlans.push(VlanInterfaceId(
            ok(
                &format!("VLAN 300 on server {k}'s bond0"),
                mgr.create_vlan_interface(s[k - 1], VlanParent::Bond(bond), 300),
                180,
            )
            .0
            .id,
        ));
    }
    let mut storage =
        NetworkSpec::new("storage", "unused0", BTreeSet::from([NetworkFunction::Storage]), None);
    storage.members = bonds.iter().map(|b| NetworkMember::Bond(*b)).collect();
    let storage = NetworkId(ok("the storage network on the bonds", mgr.create_network(storage), 180).0.id);
    let mut vm300 = NetworkSpec::vm_network("vm300", "vmnet300");
    vm300.members = vlans.iter().map(|v| NetworkMember::Vlan(*v)).collect();
    let vm300 = NetworkId(ok("the VM network on VLAN 300", mgr.create_network(vm300), 180).0.id);
    for k in [2u32, 3] {
        let bonding = on(k, "cat /proc/net/bonding/bond0", 30);
        assert!(bonding.contains("fault-tolerance (active-backup)"), "server {k}: {bonding}");
        assert!(
            bonding.contains("Slave Interface: stor0") && bonding.contains("Slave Interface: stor1"),
            "{bonding}"
        );
        assert!(bonding.contains(&storage_ip), "ARP target: {bonding}");
        assert_eq!(
            on(k, "cat /sys/class/net/bond0.300/mtu && ls /sys/class/net/vmnet300/brif", 30)
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["1500", "bond0.300"]
        );
        assert!(on(k, "ip -o -4 addr show dev bond0", 30).contains(&format!("10.77.1.{k}/24")));
        wait_for(&format!("server {k}'s bond0 to make stor0 active"), 60, || active_slave(k) == "stor0");
        on(k, &format!("ping -c 2 -W 3 {storage_ip} >/dev/null"), 30);
        // Storage traffic to the storage server goes over the storage network's bond.
        assert!(on(k, &format!("ip route get {storage_ip}"), 30).contains("dev bond0"));
        assert!(mgr.network_drift(s[k as usize - 1]).unwrap().is_empty());
    }
    assert_eq!(mgr.network_address(s[1], NetworkFunction::Storage), Some("10.77.1.2".parse().unwrap()));

    // A guest on each server with a VNIC on vm300, pinging the other.
    let guest = |k: usize, other: usize| {
        let mut config =
            lab::lab_guest(&format!("console=hvc0 quiet ovm.ip=10.77.30.{k}/24 ovm.ping=10.77.30.{other}"));
        config.vnics = vec![Vnic { mac: String::new(), network: Some(vm300) }];
        let mut spec = VmSpec::new(&format!("net-g{k}"), config);
        spec.server = Some(s[k - 1]);
        VmId(ok(&format!("create guest {k}"), mgr.create_vm(spec), 60).0.id)
    };
    let (g2, g3) = (guest(2, 3), guest(3, 2));
    ok("start guest 3", mgr.start_vm(g3), 300);
    ok("start guest 2", mgr.start_vm(g2), 300);
    for (g, other) in [(g2, 3), (g3, 2)] {
        wait_for(&format!("guest {g} to ping 10.77.30.{other}"), 300, || {
            mgr.vm_console(g).is_ok_and(|c| c.contains(&format!("OVM-DOMU-PING 10.77.30.{other} OK")))
        });
    }
    let mac2 = mgr.vm(g2).unwrap().config.vnics[0].mac.clone();
    assert!(mgr.vm_console(g2).unwrap().contains(&format!("mac {mac2}")), "the guest sees its VNIC's MAC");
    assert_eq!(mgr.vm_nics(g2).unwrap(), vec![(mac2.clone(), "vmnet300".to_string(), true)]);

    // A bond member's link cut at the switch: bond0 fails over to stor1, the guests carry on.
    on(2, &format!("ping -i 0.1 -c 300 -W 1 {storage_ip} > /tmp/ovm-bond-ping.log 2>&1 &"), 30);
    std::thread::sleep(Duration::from_secs(5));
    let beats = ok_heartbeats(&mgr, g2);
    switch("node2.storage", "down");
    let cut = Instant::now();
    wait_for("server 2's bond0 to fail over to stor1", 60, || active_slave(2) == "stor1");
    let failover = cut.elapsed();
    wait_for("guest 2 to ping guest 3 again after the cut", 120, || ok_heartbeats(&mgr, g2) > beats + 1);
    wait_for("the dom0 ping to finish", 90, || {
        on(2, "cat /tmp/ovm-bond-ping.log", 30).contains("transmitted")
    });
    let log = on(2, "cat /tmp/ovm-bond-ping.log", 30);
    let stats = log.lines().find(|l| l.contains("transmitted")).unwrap().to_owned();
    let nums: Vec<u64> = stats.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let (sent, got) = (nums[0], nums[1]);
    let gap = (sent - got) as f64 * 0.1;
    println!("FIGURE bond failover: active slave changed {:.2} s after the cut; dom0 ping every 0.1 s over the bond lost {} of {sent} (gap ≈ {gap:.1} s); guest heartbeats carried on", failover.as_secs_f64(), sent - got);
    assert!(got * 10 >= sent * 7, "the ping carried on through the cut: {stats}");
    switch("node2.storage", "up");
    wait_for("server 2's bond0 to go back to stor0", 60, || active_slave(2) == "stor0");
    assert!(heartbeats(&mgr, g3) > 0);

    // A second VNIC hot-plugged into guest 3 and unplugged.
    ok("hot-plug a VNIC into guest 3", mgr.add_vnic(g3, Some(vm300)), 120);
    let mac3b = mgr.vm(g3).unwrap().config.vnics[1].mac.clone();
    wait_for("guest 3's new NIC to connect", 60, || {
        mgr.vm_nics(g3).is_ok_and(|n| n.iter().any(|x| x.0 == mac3b && x.1 == "vmnet300" && x.2))
    });
    assert_eq!(on(3, "ls /sys/class/net/vmnet300/brif | grep -c vif", 30).trim(), "2");
    ok("unplug it", mgr.remove_vnic(g3, &mac3b), 120);
    wait_for("guest 3 to have one NIC again", 60, || mgr.vm_nics(g3).is_ok_and(|n| n.len() == 1));

    // Drift: the VLAN taken out of its bridge behind ovm's back is found and put back.
    on(3, "ip link set bond0.300 nomaster", 30);
    ok("refresh server 3", mgr.refresh_server(s[2]), 120);
    let events = mgr.events(&EventFilter { object: Some(s[2].0), ..Default::default() }).unwrap();
    let ev = events.iter().find(|e| e.event_type == "network.drift").expect("a drift event");
    assert!(ev.summary.contains("vmnet300"), "{}", ev.summary);
    ok("re-apply server 3's network", mgr.reapply_network(s[2]), 120);
    assert!(on(3, "ls /sys/class/net/vmnet300/brif", 30).contains("bond0.300"));

    // A forced change that cuts the management link (server 1's address moved off the LAN the
    // manager is on) is rolled back by the agent; unforced, it is refused.
    let lan0 = NetworkMember::Port(port(1, "lan0"));
    let moved = Addressing::Static { address: "10.77.9.1".parse().unwrap(), prefix: 24 };
    let e = refused(
        "moving server 1's management address",
        mgr.set_addressing(lan0, moved.clone(), NetworkApply::default()),
        60,
    );
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let how = NetworkApply { force: true, confirm_within: Duration::from_secs(15) };
    let t0 = Instant::now();
    let e = refused("the same, forced", mgr.set_addressing(lan0, moved, how), 240);
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("rolled back"), "{e}");
    println!("[{:>6.1} s] the agent rolled the cut back and the manager saw it", t0.elapsed().as_secs_f64());
    assert!(on(1, "ip -o -4 addr show dev xenbr0", 30).contains("10.77.0.1/24"));
    wait_for("agent 1 to answer again", 60, || agent_listens(&addrs[0]));
    let events = mgr.events(&EventFilter { object: Some(s[0].0), ..Default::default() }).unwrap();
    assert!(events.iter().any(|e| e.event_type == "network.rolled_back"));
    ok("acknowledge", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Server, s[0].0)), 30);

    // Taken apart: every server back as it was.
    for g in [g2, g3] {
        ok("kill a guest", mgr.kill_vm(g), 120);
        ok("delete it", mgr.delete_object(ObjectRef::new(ObjectKind::Vm, g.0)), 60);
    }
    ok("delete vm300", mgr.delete_object(ObjectRef::new(ObjectKind::Network, vm300.0)), 180);
    ok("delete the storage network", mgr.delete_object(ObjectRef::new(ObjectKind::Network, storage.0)), 180);
    ok("delete vm-pool", mgr.delete_object(ObjectRef::new(ObjectKind::Network, pool_net.0)), 180);
    for v in vlans {
        ok("delete a VLAN interface", mgr.delete_object(ObjectRef::new(ObjectKind::VlanInterface, v.0)), 180);
    }
    for b in bonds {
        ok("delete a bond", mgr.delete_bond(b), 180);
    }
    for k in 1..=3u32 {
        assert_eq!(dom0_state(k), before[k as usize - 1], "server {k} as it was");
    }
    mgr.close(Duration::from_secs(10)).unwrap();
}
