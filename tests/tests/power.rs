//! Server power control: a server powered off through its agent once it runs no VM, and powered
//! on again by a Wake-on-LAN magic packet sent by another server of its pool.

mod common;
use common::*;

use std::time::Duration;

use ovm_core::manager::ServerEdit;
use ovm_core::model::*;
use ovm_core::store::EventFilter;
use ovm_core::ErrorKind;

fn event_types(lab: &Lab, server: ServerId) -> Vec<String> {
    let filter = EventFilter { object: Some(server.0), ..EventFilter::default() };
    lab.mgr.events(&filter).unwrap().into_iter().map(|e| e.event_type).collect()
}

#[test]
fn a_server_is_powered_off_when_empty_and_woken_by_another_server_of_its_pool() {
    let lab = lab();
    let (mgr, sim) = (&lab.mgr, lab.mgr.sim());
    let vm = lab.running_vm("web");
    let host = mgr.vm(vm).unwrap().server.unwrap();
    let other = if host == lab.s1 { lab.s2 } else { lab.s1 };
    let (host_name, other_name) = (lab.server_name(host), lab.server_name(other));

    // Not while a VM runs there: nothing changes.
    let e = mgr.power_off_server(host).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("web"), "{e}");
    assert!(sim.is_powered_on(&host_name));

    // Maintenance mode moves the VM away; then the server powers off.
    ok(mgr.set_maintenance_mode(host, true));
    assert_eq!(mgr.vm(vm).unwrap().server, Some(other));
    ok(mgr.power_off_server(host));
    assert!(!sim.is_powered_on(&host_name), "the simulated host is off");
    assert_eq!(mgr.server(host).unwrap().power_state, ServerPowerState::Stopped);
    let evs = event_types(&lab, host);
    assert!(evs.iter().any(|t| t == "server.powered_off"), "{evs:?}");
    assert!(
        !evs.iter().any(|t| t == "server.unreachable"),
        "powered off on purpose is not a failure: {evs:?}"
    );
    // Refreshing all servers leaves it alone.
    ok(mgr.run_recurring("RefreshServers"));
    assert_eq!(mgr.server(host).unwrap().power_state, ServerPowerState::Stopped);
    let e = mgr.power_off_server(host).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");

    // Powering on without a Wake-on-LAN MAC is refused.
    let mac = mgr.server(host).unwrap().wol_mac.clone().expect("discovery records the first port's MAC");
    assert_eq!(mac, sim.management_mac(&host_name).unwrap());
    ok(mgr.edit_server(host, ServerEdit { wol_mac: Some(None), ..ServerEdit::default() }));
    assert_eq!(mgr.power_on_server(host, None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    ok(mgr.edit_server(host, ServerEdit { wol_mac: Some(Some(mac.clone())), ..ServerEdit::default() }));

    // The other server of the pool sends the magic packet on the management bridge; the server
    // answers again and rejoins.
    ok(mgr.power_on_server(host, Some(Duration::from_secs(10))));
    let sent = sim.magic_packets();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].sender.as_str(), sent[0].interface.as_str()), (other_name.as_str(), "xenbr0"));
    assert_eq!(sent[0].mac, mac.to_ascii_lowercase());
    assert!(sim.is_up(&host_name));
    assert_eq!(mgr.server(host).unwrap().power_state, ServerPowerState::Running);
    assert!(event_types(&lab, host).iter().any(|t| t == "server.powered_on"));
    assert_eq!(mgr.power_on_server(host, None).unwrap_err().kind(), ErrorKind::InvalidState);
    ok(mgr.set_maintenance_mode(host, false));
    ok(mgr.migrate_vm(vm, host));
    assert_eq!(mgr.vm(vm).unwrap().server, Some(host), "VMs run there again");
}

#[test]
fn a_silent_server_times_out_and_none_is_woken_without_a_running_peer() {
    let lab = lab();
    let (mgr, sim) = (&lab.mgr, lab.mgr.sim());
    let (a, b) = (lab.s1, lab.s2);
    // A server whose NIC does not wake (a MAC no host has): the packet goes out, the job times out
    // and the server stays Stopped.
    ok(mgr.power_off_server(b));
    ok(mgr.edit_server(
        b,
        ServerEdit { wol_mac: Some(Some("02:00:00:00:99:99".into())), ..ServerEdit::default() },
    ));
    let e = mgr.power_on_server(b, Some(Duration::from_secs(1))).unwrap().wait(WAIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(mgr.server(b).unwrap().power_state, ServerPowerState::Stopped);
    assert!(!sim.is_powered_on(&lab.server_name(b)));
    assert_eq!(sim.magic_packets().len(), 1);

    // With every server off, nobody is left to send the packet.
    ok(mgr.power_off_server(a));
    let e = mgr.power_on_server(a, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(sim.magic_packets().len(), 1);
}

#[test]
fn a_server_with_a_management_controller_is_powered_on_through_it_with_no_peer_running() {
    let lab = lab();
    let (mgr, sim) = (&lab.mgr, lab.mgr.sim());
    let (a, b) = (lab.s1, lab.s2);
    let name_a = lab.server_name(a);
    let bmc = OutOfBand { controller: ovm_core::driver::sim::SIM_BMC.into(), address: name_a.clone() };
    let set = |o: Option<OutOfBand>| {
        mgr.edit_server(a, ServerEdit { out_of_band: Some(o), ..ServerEdit::default() })
    };

    // Only a registered controller, and a well-formed address, are accepted; nothing is stored
    // otherwise.
    let e = set(Some(bmc.clone())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("no power controller \"sim-bmc\" is registered"), "{e}");
    mgr.register_power_controller(sim.power_controller()).unwrap();
    assert_eq!(mgr.power_controllers(), vec!["sim-bmc".to_owned()]);
    let bad = OutOfBand { address: "-H evil".into(), ..bmc.clone() };
    assert_eq!(set(Some(bad)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(mgr.server(a).unwrap().out_of_band, None);
    ok(set(Some(bmc.clone())));
    assert_eq!(mgr.server(a).unwrap().out_of_band, Some(bmc.clone()));
    assert_eq!(mgr.out_of_band_power_state(a).unwrap(), ovm_core::driver::ChassisPower::On);
    assert_eq!(mgr.out_of_band_power_state(b).unwrap_err().kind(), ErrorKind::InvalidArgument);

    // Both servers off, no Wake-on-LAN MAC on a: its management controller powers it on all the
    // same (no server needs to run to send a packet), and it rejoins.
    ok(mgr.edit_server(a, ServerEdit { wol_mac: Some(None), ..ServerEdit::default() }));
    ok(mgr.power_off_server(b));
    ok(mgr.power_off_server(a));
    assert_eq!(mgr.out_of_band_power_state(a).unwrap(), ovm_core::driver::ChassisPower::Off);
    ok(mgr.power_on_server(a, Some(Duration::from_secs(10))));
    assert!(sim.is_up(&name_a));
    assert_eq!(mgr.server(a).unwrap().power_state, ServerPowerState::Running);
    assert!(sim.magic_packets().is_empty(), "no magic packet: {:?}", sim.magic_packets());
    let calls = sim.bmc_calls();
    assert!(calls.contains(&format!("on {name_a}")), "{calls:?}");
    assert!(event_types(&lab, a).iter().any(|t| t == "server.powered_on"));

    // Clearing it leaves the server as it was before.
    ok(set(None));
    assert_eq!(mgr.server(a).unwrap().out_of_band, None);
}
