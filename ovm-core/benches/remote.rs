//! The manager's API through a service's Unix socket against the same calls in-process, on one
//! manager, in one run: a getter, a job's round trip (submit, then wait for its end) and a
//! change-feed subscriber's throughput. Prints each figure and its ratio to the in-process peer.
//!
//! `cargo bench -p ovm-core --bench remote`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ovm_core::manager::{DatabaseLocation, PoolSpec};
use ovm_core::model::*;
use ovm_core::remote::{ManagerApi, Service, ServiceOptions};
use ovm_core::Manager;

const LONG: Option<Duration> = Some(Duration::from_secs(120));

/// Mean time of one call of `f`, over `n` calls after `n / 10` warm-up calls (`f` is given each
/// call's number, from 0).
fn per_call(n: u32, mut f: impl FnMut(u32)) -> Duration {
    for i in 0..n / 10 {
        f(i);
    }
    let t = Instant::now();
    for i in n / 10..n / 10 + n {
        f(i);
    }
    t.elapsed() / n
}

fn show(what: &str, local: Duration, remote: Duration) {
    println!(
        "{what}: in-process {:.1} µs, through the socket {:.1} µs ({:.1}× in-process)",
        local.as_secs_f64() * 1e6,
        remote.as_secs_f64() * 1e6,
        remote.as_secs_f64() / local.as_secs_f64()
    );
}

fn getter(local: &dyn ManagerApi, remote: &dyn ManagerApi) {
    let vm = local.find(ObjectKind::Vm, "vm-00042".into()).expect("vm");
    let r = vm.object_ref();
    let l = per_call(50_000, |_| {
        local.object(r).expect("object");
    });
    let s = per_call(10_000, |_| {
        remote.object(r).expect("object");
    });
    show("getter (one VM by reference)", l, s);
    let l = per_call(50_000, |_| {
        local.find(ObjectKind::Vm, "vm-00042".into()).expect("find");
    });
    let s = per_call(10_000, |_| {
        remote.find(ObjectKind::Vm, "vm-00042".into()).expect("find");
    });
    show("getter (one VM by name)", l, s);
}

fn job_round_trip(tag: &str, local: &dyn ManagerApi, remote: &dyn ManagerApi) {
    let round_trip = |api: &dyn ManagerApi, name: String| {
        let job = api.create_pool(PoolSpec::new(&name)).expect("submit");
        let done = api.wait_job_for(job.id, LONG).expect("wait");
        assert_eq!(done.state, JobState::Completed, "{done:?}");
    };
    let l = per_call(300, |i| round_trip(local, format!("{tag}-local-{i}")));
    let s = per_call(300, |i| round_trip(remote, format!("{tag}-remote-{i}")));
    show(&format!("job round trip (create a pool and wait; {tag} database)"), l, s);
}

fn change_feed(mgr: &Manager, local: &dyn ManagerApi, remote: &dyn ManagerApi) {
    const N: usize = 50_000;
    let from = mgr.current_token().expect("token");
    let tags: Vec<Object> = (0..N).map(|i| Object::Tag(Tag::new(format!("feed-{i}")))).collect();
    let job = local.create_objects(tags).expect("submit");
    local.wait_job_for(job.id, LONG).expect("wait");
    let drain = |api: &dyn ManagerApi| {
        let mut sub = api.subscribe_changes(Some(from)).expect("subscribe");
        let t = Instant::now();
        let mut seen = 0usize;
        while seen < N {
            match sub.next_change(Duration::from_secs(30)).expect("change") {
                Some(_) => seen += 1,
                None => panic!("the feed stopped after {seen} of {N} changes"),
            }
        }
        N as f64 / t.elapsed().as_secs_f64()
    };
    let l = drain(local);
    let s = drain(remote);
    println!(
        "change-feed subscriber, {N} changes from a token: in-process {:.0}/s, through the socket {:.0}/s ({:.2}× in-process)",
        l,
        s,
        s / l
    );
}

fn sample_vm(i: usize) -> Vm {
    Vm {
        id: VmId::new(),
        name: format!("vm-{i:05}"),
        description: String::new(),
        config: VmConfig::default(),
        repository: None,
        pool: None,
        server: None,
        power_state: PowerState::Stopped,
        domid: None,
        anti_affinity_group: None,
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ovm-bench-remote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (tag, on_disk) in [("in-memory", false), ("on-disk", true)] {
        let mut b = Manager::builder().recurring_jobs(false);
        if on_disk {
            b = b.database(DatabaseLocation::File(dir.join("manager.db")));
        }
        let mgr = b.open().expect("open");
        let vms: Vec<Object> = (0..1000).map(|i| Object::Vm(sample_vm(i))).collect();
        let job = mgr.create_objects(vms).expect("submit");
        job.wait(LONG).expect("import");
        let sock = dir.join(format!("{tag}.sock"));
        let service =
            Service::bind(Arc::new(mgr.clone()), &sock, ServiceOptions::default()).expect("service");
        let remote = Manager::connect(&format!("ovm+unix://{}", sock.display())).expect("connect");
        if !on_disk {
            getter(&mgr, &remote);
            change_feed(&mgr, &mgr, &remote);
        }
        job_round_trip(tag, &mgr, &remote);
        drop(remote);
        service.shutdown();
        mgr.close(Duration::from_secs(30)).expect("close");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
