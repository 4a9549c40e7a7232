//! Live migration on real Xen between two lab servers, through their agents: the manager runs here,
//! on the host; each server's agent runs in its dom0 and the two agents carry the domain between
//! them over mutual TLS on the lab LAN. Run through the lab, on a Xen build that live-migrates PV
//! guests (see tests/xenlab/README.md):
//!
//! ```sh
//! OVM_XENLAB_XEN_VERSION=4.17.5+72-g01140da4e8-1 tests/xenlab/lab serve -n 2 \
//!     --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent -- \
//!     cargo test -p ovm-core --features agent-lab-tests --test migration_lab -- --nocapture
//! ```
//!
//! (`make migration-lab-test` does exactly that.)

use std::time::{Duration, Instant};

use ovm_core::manager::{PoolSpec, VmSpec};
use ovm_core::model::*;
use ovm_core::{JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> (ObjectRef, Duration) {
    let t0 = Instant::now();
    let j = job.unwrap_or_else(|e| panic!("{what}: {e}")).wait(Some(Duration::from_secs(secs)));
    let j = j.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(j.state, JobState::Completed, "{what}: {j:?}");
    let took = t0.elapsed();
    println!("[{:>6.1} s] {what}", took.as_secs_f64());
    (j.result.unwrap_or(ObjectRef::new(ObjectKind::Job, j.id)), took)
}

fn wait_for(what: &str, secs: u64, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("[{:>6.1} s] {what}", t0.elapsed().as_secs_f64());
}

fn agent_listens(address: &str) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(address) else { return false };
    s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    matches!(s.read(&mut [0u8; 1]), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

fn address(k: u32) -> String {
    let port = std::env::var(format!("OVM_XENLAB_PORT_{k}")).unwrap_or_else(|_| {
        panic!("OVM_XENLAB_PORT_{k} is unset: run this test through `tests/xenlab/lab serve -n 2` (make migration-lab-test)")
    });
    format!("127.0.0.1:{port}")
}

/// The newest heartbeat on the VM's console: its counter, and whether the guest reached the
/// address it pings.
fn alive(mgr: &Manager, vm: VmId) -> Option<(u64, bool)> {
    let console = mgr.vm_console(vm).ok()?;
    let line = console.lines().rev().find(|l| l.starts_with("OVM-DOMU-ALIVE "))?;
    let n = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((n, line.ends_with("net=OK")))
}

#[test]
fn a_running_pv_guest_live_migrates_between_two_lab_servers_through_their_agents() {
    let (a1, a2) = (address(1), address(2));
    wait_for("agent 1 to listen", 240, || agent_listens(&a1));
    wait_for("agent 2 to listen", 240, || agent_listens(&a2));
    let mgr = Manager::builder().recurring_jobs(false).open().unwrap();
    let s1 = ServerId(ok("discover server 1", mgr.discover_server(&a1, PASSWORD), 120).0.id);
    let s2 = ServerId(ok("discover server 2", mgr.discover_server(&a2, PASSWORD), 120).0.id);
    let pool = PoolId(ok("create the pool", mgr.create_pool(PoolSpec::new("lab-pool")), 30).0.id);
    ok("add server 1", mgr.add_server_to_pool(pool, s1), 60);
    ok("add server 2", mgr.add_server_to_pool(pool, s2), 60);

    // A PV guest booted from the lab guest's kernel, which every dom0 has at the same path (a
    // restored domain does not read its kernel again), with a NIC on the management network
    // (xenbr0 on the lab LAN) from which it pings server 1's dom0 every 3 s.
    let mgmt = mgr
        .networks()
        .into_iter()
        .find(|n| n.functions.contains(&NetworkFunction::Management))
        .expect("the management network")
        .id;
    let config = VmConfig {
        domain_type: DomainType::Pv,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 128,
        max_memory_mib: 128,
        pv_kernel: Some(PvKernel {
            kernel: "/var/lib/ovm-lab/vmlinux".into(),
            initrd: Some("/var/lib/ovm-lab/domu-initrd.gz".into()),
            cmdline: "console=hvc0 ovm.ip=10.77.0.50/24 ovm.ping=10.77.0.1".into(),
        }),
        vnics: vec![Vnic { mac: String::new(), network: Some(mgmt) }],
        ..VmConfig::default()
    };
    let mut spec = VmSpec::new("migrating-guest", config);
    spec.server = Some(s1);
    spec.pool = Some(pool);
    let vm = VmId(ok("create the VM", mgr.create_vm(spec), 60).0.id);
    ok("start the VM on server 1", mgr.start_vm(vm), 300);
    wait_for("the guest's console marker on server 1", 300, || {
        mgr.vm_console(vm).map(|c| c.contains("OVM-DOMU-UP")).unwrap_or(false)
    });

    wait_for("the guest's heartbeat with the network up on server 1", 120, || {
        alive(&mgr, vm).is_some_and(|(_, net)| net)
    });
    let before = alive(&mgr, vm).unwrap().0;

    let (_, there) = ok("live-migrate the VM to server 2", mgr.migrate_vm(vm, s2), 600);
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(s2)));
    println!("VM on server 2 as domain {:?}", v.domid);
    // The same guest runs on: its heartbeat counter goes on from where it was (a new boot would
    // start again at 1), and it still reaches server 1's dom0, now from server 2.
    wait_for("the guest's heartbeat on server 2, continuing, with the network up", 120, || {
        alive(&mgr, vm).is_some_and(|(n, net)| n > before && net)
    });
    let after = alive(&mgr, vm).unwrap().0;
    let (_, back) = ok("live-migrate the VM back to server 1", mgr.migrate_vm(vm, s1), 600);
    assert_eq!(mgr.vm(vm).unwrap().server, Some(s1));
    wait_for("the guest's heartbeat back on server 1", 120, || {
        alive(&mgr, vm).is_some_and(|(n, net)| n > after && net)
    });
    println!("MIGRATION s1->s2 {:.1} s, s2->s1 {:.1} s", there.as_secs_f64(), back.as_secs_f64());

    ok("kill the VM", mgr.kill_vm(vm), 120);
    ok("delete the VM", mgr.delete_vm(vm), 60);
}
