//! Agent protocol benchmarks: the cost of a request through an agent (TLS 1.3 on loopback, JSON
//! frames, a blocking call on the agent's side) against the same call on the hypervisor directly,
//! in the same run; one caller and eight concurrent callers on one connection; and a full connection
//! set-up (TCP, TLS handshake, hello).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use ovm_core::agent::{Agent, AgentConfig, AgentDriver, Identity};
use ovm_core::driver::sim::{SimDriver, SimWorld, DEFAULT_PASSWORD};
use ovm_core::driver::{Driver, ServerConnection};

const PASSWORD: &str = "bench";

struct Setup {
    direct: Arc<dyn ServerConnection>,
    remote: Arc<dyn ServerConnection>,
    driver: AgentDriver,
    addr: String,
    _rt: tokio::runtime::Runtime,
}

fn setup() -> Setup {
    let dir = std::env::temp_dir().join(format!("ovm-agent-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Agent::init(&dir, PASSWORD).unwrap();
    let direct = SimDriver::new(SimWorld::default())
        .connect("sim://bench?cpus=32&memory_mib=262144", DEFAULT_PASSWORD, "ovm-agent")
        .unwrap();
    let agent = Agent::open(AgentConfig::new(&dir), direct.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move { agent.serve(listener).await });
    let driver = AgentDriver::new(Identity::generate("bench-manager").unwrap());
    let remote = driver.connect(&addr, PASSWORD, "bench-manager").unwrap();
    Setup { direct, remote, driver, addr, _rt: rt }
}

fn per_call(n: u32, f: impl Fn()) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        f();
    }
    t0.elapsed() / n
}

fn benches(c: &mut Criterion) {
    let s = setup();
    // Same-run comparison printed as a ratio.
    let n = 2000;
    let direct = per_call(n, || drop(s.direct.host_info().unwrap()));
    let remote = per_call(n, || drop(s.remote.host_info().unwrap()));
    println!(
        "host_info: direct {:.1} µs, through the agent {:.1} µs ({:.0}x; the difference is one TLS round trip \
         on loopback, JSON both ways and a blocking-pool hop on the agent)",
        direct.as_secs_f64() * 1e6,
        remote.as_secs_f64() * 1e6,
        remote.as_secs_f64() / direct.as_secs_f64()
    );
    let threads = 8;
    let per_thread = 500;
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                for _ in 0..per_thread {
                    s.remote.list_domains().unwrap();
                }
            });
        }
    });
    let total = threads * per_thread;
    println!(
        "list_domains from {threads} threads on one connection: {:.0} requests/s",
        total as f64 / t0.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group("agent");
    g.bench_function("host_info direct", |b| b.iter(|| s.direct.host_info().unwrap()));
    g.bench_function("host_info through the agent", |b| b.iter(|| s.remote.host_info().unwrap()));
    g.sample_size(20);
    g.bench_function("reconnect (TCP + TLS 1.3 + hello)", |b| {
        b.iter(|| s.driver.reconnect(&s.addr, "bench-manager").unwrap())
    });
    g.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
