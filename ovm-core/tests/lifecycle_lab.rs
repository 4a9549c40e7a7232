//! The VM lifecycle on real Xen, through the agents of two lab servers sharing an NFS repository:
//! a VM whose name xl would refuse (spaces, non-ASCII) starts; it is paused and unpaused; its
//! memory and vCPUs change while it runs; it reboots through the manager and from inside the guest
//! (the VM stays Running and ovm follows the new domid); it crashes with each restart action
//! (restart: followed; preserve: the crashed domain kept, then cleared by the next start; destroy:
//! Stopped); it stops gracefully (no forced destroy); it is suspended into the repository and
//! resumed on the other server, where the same guest (its heartbeat counter going on) runs on.
//! Run through the lab, in the data-centre boot (`make dc-lab-test`).

mod lab;

use std::time::Duration;

use lab::{agent_listens, on, run_in, wait_for};

use ovm_core::manager::{repository_path, FileServerSpec, PoolSpec, RepositorySpec, StopOptions, VmSpec};
use ovm_core::model::*;
use ovm_core::store::EventFilter;
use ovm_core::{JobHandle, Manager};

/// The agent password the dom0 script sets.
const PASSWORD: &str = "ovm-lab-agent";
/// An export made for this test on the storage server (and taken away at its end).
const EXPORT: &str = "/srv/nfs/life";

fn ok(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> ObjectRef {
    lab::ok_timed(what, job, secs).0
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is unset: run this test through `make dc-lab-test`"))
}

fn on_storage(cmd: &str, secs: u64) -> String {
    run_in(&std::path::PathBuf::from(env("OVM_XENLAB_STORAGE_SHARE")), "the storage server", cmd, secs)
}

/// The newest heartbeat on the VM's console: its counter (a rebooted guest starts again at 1).
fn heartbeat(mgr: &Manager, vm: VmId) -> Option<u64> {
    let console = mgr.vm_console(vm).ok()?;
    let line = console.lines().rev().find(|l| l.starts_with("OVM-DOMU-ALIVE "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `xl list`'s line for domain `domid` on server `k`: (name, memory MiB, vCPUs, state).
fn xl_domain(k: u32, domid: u32) -> Option<(String, u64, u32, String)> {
    let out = on(k, "xl list", 60);
    out.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 5 && f[1] == domid.to_string())
            .then(|| (f[0].to_owned(), f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0), f[4].to_owned()))
    })
}

/// How many times a guest of the domain named `name` has come up on server `k` (its console log
/// there keeps every boot's lines, even while the VM is stopped).
fn boots(k: u32, name: &str) -> usize {
    let out = on(k, &format!("grep -c OVM-DOMU-UP /var/log/xen/console/guest-{name}.log || true"), 30);
    out.trim().parse().unwrap_or(0)
}

/// Start the VM and wait until its guest has come up once more than `before` (so that its SysRq
/// handler is there) and beats.
fn start_fresh(mgr: &Manager, vm: VmId, name: &str) {
    let before = boots(1, name);
    ok("start the VM", mgr.start_vm(vm), 300);
    wait_for("the guest to come up", 240, || boots(1, name) > before);
    wait_for("its heartbeat", 120, || heartbeat(mgr, vm).is_some_and(|n| n <= 2));
}

fn events_of(mgr: &Manager, vm: VmId, kind: &str) -> usize {
    mgr.events(&EventFilter { object: Some(vm.0), ..Default::default() })
        .unwrap()
        .iter()
        .filter(|e| e.event_type == kind)
        .count()
}

fn domid(mgr: &Manager, vm: VmId) -> u32 {
    mgr.vm(vm).unwrap().domid.expect("a running VM has a domid")
}

/// Wait for a few heartbeats of the guest; the newest counter.
fn beating(mgr: &Manager, vm: VmId) -> u64 {
    wait_for("a few heartbeats", 120, || heartbeat(mgr, vm).is_some_and(|m| m >= 3));
    heartbeat(mgr, vm).unwrap()
}

/// Wait until the VM runs in a domain other than `old` and the guest in it is up again (its
/// heartbeat counter, `prev` before, started again), checking all along that the VM never leaves
/// Running.
fn followed(mgr: &Manager, vm: VmId, old: u32, prev: u64, what: &str) -> u32 {
    wait_for(what, 240, || {
        let v = mgr.vm(vm).unwrap();
        assert_eq!(v.power_state, PowerState::Running, "{what}: the VM stays Running");
        v.domid.is_some_and(|d| d != old)
    });
    let new = domid(mgr, vm);
    wait_for("the rebuilt guest's heartbeat, counting again from 1", 240, || {
        heartbeat(mgr, vm).is_some_and(|n| n < prev)
    });
    new
}

#[test]
fn the_whole_vm_lifecycle_on_real_xen() {
    let storage = env("OVM_XENLAB_STORAGE_LAN_IP");
    let (a1, a2) = ("10.77.0.1:8899".to_owned(), "10.77.0.2:8899".to_owned());
    wait_for("agent 1 to listen", 240, || agent_listens(&a1));
    wait_for("agent 2 to listen", 240, || agent_listens(&a2));
    on_storage(
        &format!(
            "mkdir -p {EXPORT} && cp /etc/exports /etc/exports.ovm-life && \
             echo '{EXPORT} 10.77.0.0/24(rw,no_root_squash,no_subtree_check,insecure,fsid=11)' >> /etc/exports && \
             exportfs -ra"
        ),
        30,
    );
    let mgr = Manager::builder().recurring_jobs(false).open().unwrap();
    // The servers belong to the previous test's manager: this one takes them over.
    let s1 = ServerId(ok("take server 1 over", mgr.take_over_server(&a1, PASSWORD), 120).id);
    let s2 = ServerId(ok("take server 2 over", mgr.take_over_server(&a2, PASSWORD), 120).id);
    let pool = PoolId(ok("create the pool", mgr.create_pool(PoolSpec::new("life-pool")), 30).id);
    ok("add server 1", mgr.add_server_to_pool(pool, s1), 60);
    ok("add server 2", mgr.add_server_to_pool(pool, s2), 60);
    let fsrv = FileServerId(
        ok(
            "discover the NFS server",
            mgr.register_file_server(FileServerSpec::nfs("life-nfs", &storage, vec![s1])),
            180,
        )
        .id,
    );
    let fs = mgr.file_systems_of(fsrv).into_iter().find(|f| f.path == EXPORT).expect("the export").id;
    let repo = RepositoryId(
        ok(
            "create the repository",
            mgr.create_repository(RepositorySpec {
                name: "life".into(),
                backing: RepositoryBacking::FileSystem(fs),
                owner_pool: Some(pool),
                capacity_bytes: 0,
            }),
            30,
        )
        .id,
    );
    ok("present it to servers 1 and 2", mgr.present_repository_to(repo, &[s1, s2]), 240);

    // A VM whose name xl refuses as a domain name: ovm gives the domain a safe name of its own.
    let name = "web 01 · Grüße";
    let mut config = lab::lab_guest("console=hvc0");
    config.max_vcpus = 2;
    let mut spec = VmSpec::new(name, config);
    spec.server = Some(s1);
    spec.pool = Some(pool);
    spec.repository = Some(repo);
    let vm = VmId(ok("create the VM", mgr.create_vm(spec), 60).id);
    ok("start the VM", mgr.start_vm(vm), 300);
    wait_for("the guest's heartbeat", 240, || heartbeat(&mgr, vm).is_some());
    let d = domid(&mgr, vm);
    let (xl_name, ..) = xl_domain(1, d).expect("xl lists the domain");
    assert!(
        xl_name.starts_with("web_01") && xl_name.ends_with(&vm.0.simple().to_string()[..8]),
        "the domain's name {xl_name:?} is the VM's, made safe, with the start of its id"
    );
    println!("VM {name:?} runs as domain {d} named {xl_name:?}");

    // Pause and unpause.
    ok("pause", mgr.pause_vm(vm), 60);
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Paused);
    assert!(xl_domain(1, d).unwrap().3.contains('p'), "xl shows the domain paused");
    ok("unpause", mgr.resume_vm(vm), 60);
    assert!(!xl_domain(1, d).unwrap().3.contains('p'), "xl shows the domain running");
    let n = heartbeat(&mgr, vm).unwrap();
    wait_for("the heartbeat to go on after the pause", 60, || heartbeat(&mgr, vm).is_some_and(|m| m > n));

    // Memory and vCPUs while it runs: the guest gives memory back and brings a vCPU online.
    ok(
        "memory 128 → 96 MiB and 2 vCPUs while running",
        mgr.edit_vm(vm, |v| {
            v.config.memory_mib = 96;
            v.config.vcpus = 2;
        }),
        60,
    );
    let seen = std::cell::RefCell::new(None);
    let t0 = std::time::Instant::now();
    while !seen.borrow().as_ref().is_some_and(|(m, v): &(u64, u32)| (90..=100).contains(m) && *v == 2) {
        assert!(t0.elapsed() < Duration::from_secs(120), "dom0 sees (memory MiB, vCPUs) {:?}", seen.borrow());
        std::thread::sleep(Duration::from_millis(500));
        *seen.borrow_mut() = xl_domain(1, d).map(|(_, m, v, _)| (m, v));
    }
    println!("dom0 sees the guest with {:?} (MiB, vCPUs online)", seen.borrow());

    // A reboot through the manager: a new domain, the VM Running all along.
    let prev = beating(&mgr, vm);
    ok("restart the VM", mgr.restart_vm(vm), 300);
    let d = followed(&mgr, vm, d, prev, "the VM to run in its rebuilt domain after the restart");
    assert!(xl_domain(1, d).is_some(), "the manager's domid is the one dom0 runs");

    // A reboot from inside the guest (sysrq b: the guest kernel reboots at once), without a job.
    let prev = beating(&mgr, vm);
    on(1, &format!("xl sysrq {d} b"), 30);
    let d = followed(&mgr, vm, d, prev, "the VM to follow the domain rebuilt after the guest's reboot");
    assert!(events_of(&mgr, vm, "vm.restarted") >= 1, "the reboot is reported");
    assert_eq!(events_of(&mgr, vm, "vm.stopped"), 0, "a reboot never shows the VM stopped");

    // A crash with on_crash = restart (the default): an Error event, and a new domain followed.
    let prev = beating(&mgr, vm);
    on(1, &format!("xl sysrq {d} c"), 30);
    let _ = followed(&mgr, vm, d, prev, "the VM to follow the domain rebuilt after the crash");
    wait_for("the crash to be reported", 30, || events_of(&mgr, vm, "vm.crashed") == 1);
    assert_eq!(events_of(&mgr, vm, "vm.stopped"), 0);
    ok("acknowledge the crash", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm.0)), 30);

    // A graceful stop: the guest powers off when asked, nothing is destroyed by force.
    ok(
        "stop the VM gracefully",
        mgr.stop_vm_with(vm, StopOptions { timeout: Duration::from_secs(120), force_after_timeout: false }),
        180,
    );
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Stopped);

    // on_crash = preserve: the crashed domain stays (for a debugger or a core dump), the VM is
    // Stopped; the next start clears the kept domain.
    ok(
        "on_crash = preserve",
        mgr.edit_vm(vm, |v| v.config.restart_actions.on_crash = RestartAction::Preserve),
        30,
    );
    start_fresh(&mgr, vm, &xl_name);
    let d = domid(&mgr, vm);
    on(1, &format!("xl sysrq {d} c"), 30);
    wait_for("the VM to be Stopped after its crash", 120, || {
        mgr.vm(vm).unwrap().power_state == PowerState::Stopped
    });
    let kept = xl_domain(1, d).expect("the crashed domain is kept");
    assert!(kept.3.contains('c') || kept.3.contains('s'), "kept shut down (crashed): {kept:?}");
    ok("acknowledge the crash", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm.0)), 30);
    start_fresh(&mgr, vm, &xl_name);
    assert!(xl_domain(1, d).is_none(), "the kept domain was cleared by the start");

    // on_crash = destroy: the VM is Stopped and nothing is left.
    ok("kill the VM", mgr.kill_vm(vm), 120);
    ok(
        "on_crash = destroy",
        mgr.edit_vm(vm, |v| v.config.restart_actions.on_crash = RestartAction::Destroy),
        30,
    );
    start_fresh(&mgr, vm, &xl_name);
    let d = domid(&mgr, vm);
    on(1, &format!("xl sysrq {d} c"), 30);
    wait_for("the VM to be Stopped after its crash", 120, || {
        mgr.vm(vm).unwrap().power_state == PowerState::Stopped
    });
    wait_for("the crashed domain to be gone", 60, || xl_domain(1, d).is_none());
    ok("acknowledge the crash", mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm.0)), 30);

    // Suspend into the repository on server 1, resume on server 2: the same guest runs on there.
    start_fresh(&mgr, vm, &xl_name);
    let before = beating(&mgr, vm);
    ok("suspend the VM into the repository", mgr.suspend_vm(vm), 300);
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Suspended);
    let image = format!("{}/VirtualMachines/{}/suspend.img", repository_path(repo), vm.0.simple());
    on(2, &format!("test -s '{image}'"), 30);
    ok("resume it on server 2", mgr.resume_vm_on(vm, s2), 300);
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(s2)));
    assert!(xl_domain(2, v.domid.unwrap()).is_some(), "server 2 runs it");
    wait_for("the same guest's heartbeat going on, on server 2", 120, || {
        heartbeat(&mgr, vm).is_some_and(|n| n > before)
    });

    ok("kill the VM", mgr.kill_vm(vm), 120);
    ok("delete the VM", mgr.delete_vm(vm), 60);
    ok("unpresent from server 1", mgr.unpresent_repository(repo, s1), 120);
    ok("unpresent from server 2", mgr.unpresent_repository(repo, s2), 120);
    on_storage(&format!("mv /etc/exports.ovm-life /etc/exports && exportfs -ra && rm -rf {EXPORT}"), 60);
}
