//! Reads and writes of one xenstore node, timed for ovm's client (the
//! blocking client and the async client, sequential and pipelined, over the
//! socket and /dev/xen/xenbus), Xen's C libxenstore (`xs_open(0)`, loaded
//! with dlopen from the dom0 image) and the xenstore-rs crate. Must run as
//! root in a Xen dom0.
//!
//! Every measurement is repeated in many short rounds, the clients taking
//! turns within a round so that a slow phase of the emulator (or of the
//! host) hits them all alike. Reported: the median time per operation over
//! the rounds, the best round, and ratios against C and xenstore-rs taken
//! as the median of the per-round ratios (above 1: ovm is faster).

use std::collections::BTreeMap;
use std::ffi::{c_char, c_uint, c_ulong, c_void, CString};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ovm_core::xen::client::{XsClient, XsConfig};
use ovm_core::xen::transport::Transport;
use ovm_core::xen::BlockingXsClient;

const ROUNDS: usize = 15;
const OPS: u32 = 64;
/// Pipelined rounds make more requests (so that 32 in flight is a steady state).
const PIPE_OPS: u32 = 4 * OPS;
const PATH: &str = "/local/domain/0/name";
const WPATH: &str = "/ovm-bench/key";
const VALUE: &str = "12345";

type XsOpen = unsafe extern "C" fn(c_ulong) -> *mut c_void;
type XsClose = unsafe extern "C" fn(*mut c_void);
type XsRead = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *mut c_uint) -> *mut c_void;
type XsWrite = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_void, c_uint) -> bool;

struct CXs {
    xs: *mut c_void,
    close: XsClose,
    read: XsRead,
    write: XsWrite,
    path: CString,
    wpath: CString,
}

impl CXs {
    fn open() -> CXs {
        let lib = CString::new("libxenstore.so.4").unwrap();
        // SAFETY: dlopen of a system library by name; the handle is never closed.
        let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW) };
        assert!(!h.is_null(), "libxenstore.so.4 not found in dom0");
        let sym = |name: &str| {
            let n = CString::new(name).unwrap();
            // SAFETY: looking up a symbol in the handle opened above.
            let p = unsafe { libc::dlsym(h, n.as_ptr()) };
            assert!(!p.is_null(), "{name} missing");
            p
        };
        // SAFETY: the symbols have these C signatures (xenstore.h of Xen 4.17).
        let (open, close, read, write) = unsafe {
            (
                std::mem::transmute::<*mut c_void, XsOpen>(sym("xs_open")),
                std::mem::transmute::<*mut c_void, XsClose>(sym("xs_close")),
                std::mem::transmute::<*mut c_void, XsRead>(sym("xs_read")),
                std::mem::transmute::<*mut c_void, XsWrite>(sym("xs_write")),
            )
        };
        // SAFETY: xs_open(0) returns a handle or NULL.
        let xs = unsafe { open(0) };
        assert!(!xs.is_null(), "xs_open failed");
        CXs { xs, close, read, write, path: CString::new(PATH).unwrap(), wpath: CString::new(WPATH).unwrap() }
    }

    fn read(&self) {
        let mut len: c_uint = 0;
        // SAFETY: valid handle, NUL-terminated path, out-pointer to len.
        let v = unsafe { (self.read)(self.xs, 0, self.path.as_ptr(), &mut len) };
        assert!(!v.is_null());
        // SAFETY: xs_read returns a malloc'd buffer of len bytes.
        let s = unsafe { std::slice::from_raw_parts(v as *const u8, len as usize) };
        assert_eq!(s, b"Domain-0");
        // SAFETY: freeing the buffer xs_read allocated with malloc.
        unsafe { libc::free(v) };
    }

    fn write(&self) {
        // SAFETY: valid handle and buffers of the given lengths.
        let ok = unsafe {
            (self.write)(self.xs, 0, self.wpath.as_ptr(), VALUE.as_ptr().cast(), VALUE.len() as c_uint)
        };
        assert!(ok);
    }
}

impl Drop for CXs {
    fn drop(&mut self) {
        // SAFETY: closing the handle opened in `open`.
        unsafe { (self.close)(self.xs) };
    }
}

/// CPU time and context switches so far: of xenstored and of this process.
#[derive(Clone, Copy, Default)]
struct Snap {
    xs_cpu_ns: u64,
    xs_vcsw: u64,
    self_cpu_ns: u64,
    self_vcsw: u64,
    self_ivcsw: u64,
}

fn xenstored_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "xenstored" || comm.trim() == "oxenstored").then_some(pid)
    })
}

fn schedstat_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn status_field(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

impl Snap {
    fn take(xenstored: Option<u32>) -> Snap {
        let mut s = Snap::default();
        if let Some(pid) = xenstored {
            s.xs_cpu_ns = schedstat_ns(&format!("/proc/{pid}/schedstat"));
            s.xs_vcsw = status_field(&format!("/proc/{pid}/status"), "voluntary_ctxt_switches:");
        }
        for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
            let p = t.path();
            s.self_cpu_ns += schedstat_ns(&format!("{}/schedstat", p.display()));
            let st = format!("{}/status", p.display());
            s.self_vcsw += status_field(&st, "voluntary_ctxt_switches:");
            s.self_ivcsw += status_field(&st, "nonvoluntary_ctxt_switches:");
        }
        s
    }
}

/// Per-round durations of each measurement, by name, and the CPU time and
/// context switches spent on each (summed over the rounds).
#[derive(Default)]
struct Results {
    order: Vec<String>,
    runs: BTreeMap<String, (u32, Vec<Duration>)>,
    xenstored: Option<u32>,
    snap: Snap,
    cost: BTreeMap<String, (u64, Snap)>,
}

impl Results {
    /// Marks the start of a measurement.
    fn start(&mut self) {
        if self.xenstored.is_none() {
            self.xenstored = xenstored_pid();
        }
        self.snap = Snap::take(self.xenstored);
    }

    fn add(&mut self, what: &str, n: u32, d: Duration) {
        let now = Snap::take(self.xenstored);
        let b = self.snap;
        let c = self.cost.entry(what.to_string()).or_default();
        c.0 += u64::from(n);
        c.1.xs_cpu_ns += now.xs_cpu_ns.saturating_sub(b.xs_cpu_ns);
        c.1.xs_vcsw += now.xs_vcsw.saturating_sub(b.xs_vcsw);
        c.1.self_cpu_ns += now.self_cpu_ns.saturating_sub(b.self_cpu_ns);
        c.1.self_vcsw += now.self_vcsw.saturating_sub(b.self_vcsw);
        c.1.self_ivcsw += now.self_ivcsw.saturating_sub(b.self_ivcsw);
        if !self.runs.contains_key(what) {
            self.order.push(what.to_string());
        }
        self.runs.entry(what.to_string()).or_insert((n, Vec::new())).1.push(d);
    }

    /// Median microseconds per operation.
    fn median_us(&self, what: &str) -> f64 {
        let (n, ds) = &self.runs[what];
        let mut us: Vec<f64> = ds.iter().map(|d| d.as_secs_f64() * 1e6 / f64::from(*n)).collect();
        us.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let m = us.len() / 2;
        if us.len() % 2 == 1 {
            us[m]
        } else {
            (us[m - 1] + us[m]) / 2.0
        }
    }

    /// Median over the rounds of `base`'s time per op divided by `what`'s,
    /// both of the same round (robust to the emulator's slow phases).
    fn median_ratio(&self, base: &str, what: &str) -> f64 {
        let (nb, db) = &self.runs[base];
        let (nw, dw) = &self.runs[what];
        let mut x: Vec<f64> = db
            .iter()
            .zip(dw)
            .map(|(b, w)| (b.as_secs_f64() / f64::from(*nb)) / (w.as_secs_f64() / f64::from(*nw)))
            .collect();
        x.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let m = x.len() / 2;
        if x.len() % 2 == 1 {
            x[m]
        } else {
            (x[m - 1] + x[m]) / 2.0
        }
    }

    fn spread(&self, what: &str) -> (f64, f64) {
        let (n, ds) = &self.runs[what];
        let us: Vec<f64> = ds.iter().map(|d| d.as_secs_f64() * 1e6 / f64::from(*n)).collect();
        (us.iter().copied().fold(f64::MAX, f64::min), us.iter().copied().fold(0.0, f64::max))
    }
}

fn timed(n: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed()
}

/// `depth` tasks, each making `n / depth` requests one after another: `depth`
/// requests in flight all the time.
async fn pipelined(c: &XsClient, n: u32, depth: u32, write: bool) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..depth)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..n / depth {
                    if write {
                        c.write(WPATH, VALUE).await.unwrap();
                    } else {
                        assert_eq!(c.read(PATH).await.unwrap(), b"Domain-0");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn sequential(c: &XsClient, n: u32, write: bool) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        if write {
            c.write(WPATH, VALUE).await.unwrap();
        } else {
            assert_eq!(c.read(PATH).await.unwrap(), b"Domain-0");
        }
    }
    start.elapsed()
}

fn blocking_threads(b: &Arc<BlockingXsClient>, n: u32, threads: u32) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                for _ in 0..n / threads {
                    assert_eq!(b.read(PATH).unwrap(), b"Domain-0");
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    start.elapsed()
}

fn diagnostics() {
    let cs = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .unwrap_or_default();
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(Instant::now());
    }
    let clock = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    let sys = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "DIAG clocksource {} Instant::now {clock:.2} us, getppid() {sys:.2} us, cpus {}",
        cs.trim(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
}

#[test]
fn compare_xenstore_clients() {
    assert!(
        std::fs::read_to_string("/proc/xen/capabilities").unwrap_or_default().contains("control_d"),
        "must run in a Xen dom0"
    );
    diagnostics();
    let socket = Transport::candidates()
        .into_iter()
        .find(|t| matches!(t, Transport::Socket(p) if p.exists()))
        .expect("xenstored socket");
    let xenbus = Transport::Xenbus("/dev/xen/xenbus".into());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    let c = CXs::open();
    let rs = {
        use xenstore_rs::unix::XsUnix;
        XsUnix::new().expect("xenstore-rs connect")
    };
    let blocking = Arc::new(BlockingXsClient::connect(socket.clone(), XsConfig::default()).unwrap());
    let blocking_xb = BlockingXsClient::connect(xenbus.clone(), XsConfig::default()).unwrap();
    let no_batch = XsConfig { batch_wakeups: false, ..XsConfig::default() };
    let blocking_nb = BlockingXsClient::connect(socket.clone(), no_batch.clone()).unwrap();
    let ac_nb = rt.block_on(XsClient::connect(socket.clone(), no_batch)).unwrap();
    let (ac, ac_xb) = rt.block_on(async {
        (
            XsClient::connect(socket.clone(), XsConfig::default()).await.unwrap(),
            XsClient::connect(xenbus.clone(), XsConfig::default()).await.unwrap(),
        )
    });
    // Warm-up: every path once (page cache, xenstored), and the node to write.
    blocking.write(WPATH, VALUE).unwrap();
    for _ in 0..50 {
        c.read();
        c.write();
        blocking.read(PATH).unwrap();
    }
    rt.block_on(async { sequential(&ac, 50, false).await });

    let mut r = Results::default();
    r.snap = Snap::take(r.xenstored);
    let spawn_ac = |f: std::pin::Pin<Box<dyn std::future::Future<Output = Duration> + Send>>| {
        rt.block_on(rt.spawn(f)).unwrap()
    };
    for round in 1..=ROUNDS {
        if round > 1 {
            let (n, d) = &r.runs["C libxenstore read"];
            let us = d.last().unwrap().as_secs_f64() * 1e6 / f64::from(*n);
            println!("round {}/{ROUNDS} done (C read {us:.0} us/op)", round - 1);
        }
        r.start();
        r.add("C libxenstore read", OPS, timed(OPS, || c.read()));
        r.start();
        r.add(
            "xenstore-rs read",
            OPS,
            timed(OPS, || {
                use xenstore_rs::Xs;
                assert_eq!(&*rs.read(PATH).unwrap(), "Domain-0");
            }),
        );
        r.start();
        r.add("ovm blocking read", OPS, timed(OPS, || assert_eq!(blocking.read(PATH).unwrap(), b"Domain-0")));
        r.start();
        r.add(
            "ovm blocking read, no batch",
            OPS,
            timed(OPS, || assert_eq!(blocking_nb.read(PATH).unwrap(), b"Domain-0")),
        );
        r.start();
        r.add("ovm blocking read, 4 threads", OPS, blocking_threads(&blocking, OPS, 4));
        for (name, client, n, depth) in [
            ("ovm async read", &ac, OPS, 1),
            ("ovm async read, 8 in flight", &ac, PIPE_OPS, 8),
            ("ovm async read, 32 in flight", &ac, PIPE_OPS, 32),
            ("ovm async read, no batch", &ac_nb, OPS, 1),
            ("ovm async read, 32 in flight, no batch", &ac_nb, PIPE_OPS, 32),
        ] {
            let c2 = client.clone();
            r.start();
            let d = spawn_ac(Box::pin(async move {
                if depth == 1 {
                    sequential(&c2, n, false).await
                } else {
                    pipelined(&c2, n, depth, false).await
                }
            }));
            r.add(name, n, d);
        }

        r.start();
        r.add("C libxenstore write", OPS, timed(OPS, || c.write()));
        r.start();
        r.add(
            "xenstore-rs write",
            OPS,
            timed(OPS, || {
                use xenstore_rs::Xs;
                rs.write(WPATH, VALUE).unwrap();
            }),
        );
        r.start();
        r.add("ovm blocking write", OPS, timed(OPS, || blocking.write(WPATH, VALUE).unwrap()));
        r.start();
        r.add("ovm blocking write, no batch", OPS, timed(OPS, || blocking_nb.write(WPATH, VALUE).unwrap()));
        for (name, n, depth) in [
            ("ovm async write", OPS, 1),
            ("ovm async write, no batch", OPS, 1),
            ("ovm async write, 8 in flight", PIPE_OPS, 8),
            ("ovm async write, 32 in flight", PIPE_OPS, 32),
            ("ovm async write, 32 in flight, no batch", PIPE_OPS, 32),
        ] {
            let c2 = if name.ends_with("no batch") { ac_nb.clone() } else { ac.clone() };
            r.start();
            let d = spawn_ac(Box::pin(async move {
                if depth == 1 {
                    sequential(&c2, n, true).await
                } else {
                    pipelined(&c2, n, depth, true).await
                }
            }));
            r.add(name, n, d);
        }

        // The device: one request at a time, for information.
        r.start();
        r.add(
            "ovm blocking read (xenbus)",
            OPS / 2,
            timed(OPS / 2, || {
                assert_eq!(blocking_xb.read(PATH).unwrap(), b"Domain-0");
            }),
        );
        let x2 = ac_xb.clone();
        r.start();
        let d = spawn_ac(Box::pin(async move { sequential(&x2, OPS / 2, false).await }));
        r.add("ovm async read (xenbus)", OPS / 2, d);
    }

    println!("\nmedian of {ROUNDS} rounds; ratios: median of the per-round ratios (above 1: ovm is faster)");
    for what in &r.order {
        let us = r.median_us(what);
        let (lo, hi) = r.spread(what);
        let (c, rs) = if what.contains("write") {
            ("C libxenstore write", "xenstore-rs write")
        } else {
            ("C libxenstore read", "xenstore-rs read")
        };
        println!(
            "BENCH {what:<40} {us:>8.1} us/op {:>7.0} ops/s  vs C {:>5.2}x  vs xenstore-rs {:>5.2}x  (best {lo:.0}, worst {hi:.0} us)",
            1e6 / us,
            r.median_ratio(c, what),
            r.median_ratio(rs, what)
        );
    }
    println!("\nper operation, summed over the rounds (threads of this process; xenstored from /proc)");
    for what in &r.order {
        let (n, c) = &r.cost[what];
        let n = *n as f64;
        println!(
            "COST {what:<40} client cpu {:>7.1} us, xenstored cpu {:>7.1} us; client switches {:.2} voluntary {:.2} preempted, xenstored {:.2} voluntary",
            c.self_cpu_ns as f64 / n / 1e3,
            c.xs_cpu_ns as f64 / n / 1e3,
            c.self_vcsw as f64 / n,
            c.self_ivcsw as f64 / n,
            c.xs_vcsw as f64 / n,
        );
    }
    let c_read = "C libxenstore read";
    let c_write = "C libxenstore write";
    let verdict = |label: &str, what: &str, base: &str, need: f64| {
        let x = r.median_ratio(base, what);
        let ok = if x >= need { "MET" } else { "NOT MET" };
        println!("TARGET {label:<40} {x:>5.2}x C (need >= {need:.1}x): {ok}");
    };
    verdict("sequential read (blocking)", "ovm blocking read", c_read, 1.0);
    verdict("sequential read (async)", "ovm async read", c_read, 1.0);
    verdict("sequential write (blocking)", "ovm blocking write", c_write, 1.0);
    verdict("sequential write (async)", "ovm async write", c_write, 1.0);
    verdict("pipelined read (async, 8 in flight)", "ovm async read, 8 in flight", c_read, 2.0);
    verdict("pipelined read (async, 32 in flight)", "ovm async read, 32 in flight", c_read, 2.0);
    verdict("pipelined write (async, 8 in flight)", "ovm async write, 8 in flight", c_write, 2.0);
    verdict("pipelined write (async, 32 in flight)", "ovm async write, 32 in flight", c_write, 2.0);
    blocking.rm("/ovm-bench").unwrap();
}
