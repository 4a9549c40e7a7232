//! Load sampling: each server's CPU, memory, VMs' CPU and interface throughput, kept raw and
//! downsampled within the configured retention.

mod common;
use common::*;

use std::time::Duration;

use ovm_core::model::*;
use ovm_core::ErrorKind;

#[test]
fn loads_are_sampled_per_server_vm_and_interface_and_kept_within_the_retention() {
    let lab = lab();
    let (mgr, sim) = (&lab.mgr, lab.mgr.sim());
    let busy = lab.running_vm("busy");
    let idle = lab.running_vm("idle");
    assert_eq!(mgr.server_load(lab.s1).unwrap(), None, "nothing before the first sample");

    let settings = LoadSampling {
        interval: Duration::from_secs(1),
        raw_retention: Duration::from_secs(3),
        coarse_interval: Duration::from_secs(2),
        coarse_retention: Duration::from_secs(10),
    };
    mgr.set_load_sampling(settings).unwrap();
    assert_eq!(mgr.load_sampling(), settings);
    sim.set_domain_load(busy, 90.0);
    sim.set_domain_load(idle, 5.0);
    let host = |s: ServerId| lab.server_name(s);
    assert_eq!(mgr.sample_loads().unwrap(), 2, "both servers answer");
    let where_busy = mgr.vm(busy).unwrap().server.unwrap();
    sim.add_traffic(&host(where_busy), "eth0", 0, 0).unwrap();
    mgr.sample_loads().unwrap();
    sim.add_traffic(&host(where_busy), "eth0", 50_000_000, 1_000).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    mgr.sample_loads().unwrap();

    let s = mgr.server_load(where_busy).unwrap().expect("a sample");
    assert_eq!(s.cpus, 8);
    let v = s.vms.iter().find(|v| v.vm == busy).expect("the busy VM is in its server's sample");
    assert_eq!(v.cpu_percent, 90.0);
    assert_eq!(mgr.vm_load(busy).unwrap().unwrap().cpu_percent, 90.0);
    assert_eq!(mgr.vm_load(idle).unwrap().unwrap().cpu_percent, 5.0);
    let eth0 = s.interfaces.iter().find(|i| i.name == "eth0").expect("eth0 counted");
    assert_eq!(eth0.speed_mbps, Some(10_000));
    assert!(eth0.rx_bytes_per_sec > 10_000_000.0, "50 MB in about 0.2 s: {eth0:?}");
    assert!(eth0.utilisation_percent().unwrap() > 8.0, "{eth0:?}");
    assert!(s.cpu_percent > 0.0);

    // More rounds: the raw history stops at its retention (3 samples), pairs are averaged.
    for _ in 0..4 {
        mgr.sample_loads().unwrap();
    }
    let raw = mgr.server_load_history(where_busy, LoadResolution::Raw).unwrap();
    assert_eq!(raw.len(), 3);
    let coarse = mgr.server_load_history(where_busy, LoadResolution::Coarse).unwrap();
    assert_eq!(coarse.len(), 3, "7 samples make 3 pairs");
    assert!(coarse.iter().all(|c| c.samples == 2));

    // Bad settings are refused and change nothing.
    let bad = LoadSampling { coarse_interval: Duration::from_millis(1500), ..settings };
    assert_eq!(mgr.set_load_sampling(bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(mgr.load_sampling(), settings);
    // A server that does not answer is left out of the round; its history stays.
    sim.lose_host(&host(lab.s2)).unwrap();
    assert_eq!(mgr.sample_loads().unwrap(), 1);
    assert!(mgr.server_load(lab.s2).unwrap().is_some());
    assert_eq!(mgr.server_load(ServerId(uuid::Uuid::new_v4())).unwrap_err().kind(), ErrorKind::NotFound);
}
