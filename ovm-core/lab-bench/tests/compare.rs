//! Reads and writes of one xenstore node, timed for: ovm's client (async,
//! sequential and pipelined, over the socket and /dev/xen/xenbus; blocking),
//! Xen's C libxenstore (`xs_open(0)`, loaded with dlopen from the dom0 image)
//! and the xenstore-rs crate. Must run as root in a Xen dom0.

use std::ffi::{c_char, c_uint, c_ulong, c_void, CString};
use std::time::{Duration, Instant};

use ovm_core::xen::client::{XsClient, XsConfig};
use ovm_core::xen::transport::Transport;
use ovm_core::xen::BlockingXsClient;

const READS: u32 = 2000;
const WRITES: u32 = 1000;
const PATH: &str = "/local/domain/0/name";
const WPATH: &str = "/ovm-bench/key";

fn report(what: &str, n: u32, d: Duration) {
    let us = d.as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "BENCH {what:<42} {n:>5} ops {:>9.1} ms {us:>8.1} us/op {:>8.0} ops/s",
        d.as_secs_f64() * 1e3,
        1e6 / us
    );
}

type XsOpen = unsafe extern "C" fn(c_ulong) -> *mut c_void;
type XsClose = unsafe extern "C" fn(*mut c_void);
type XsRead = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *mut c_uint) -> *mut c_void;
type XsWrite = unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_void, c_uint) -> bool;

fn bench_c_libxenstore() {
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
    let path = CString::new(PATH).unwrap();
    let t = Instant::now();
    for _ in 0..READS {
        let mut len: c_uint = 0;
        // SAFETY: valid handle, NUL-terminated path, out-pointer to len.
        let v = unsafe { read(xs, 0, path.as_ptr(), &mut len) };
        assert!(!v.is_null());
        // SAFETY: xs_read returns a malloc'd buffer of len bytes.
        let s = unsafe { std::slice::from_raw_parts(v as *const u8, len as usize) };
        assert_eq!(s, b"Domain-0");
        // SAFETY: freeing the buffer xs_read allocated with malloc.
        unsafe { libc::free(v) };
    }
    report("C libxenstore xs_read (xs_open(0))", READS, t.elapsed());
    let wpath = CString::new(WPATH).unwrap();
    let t = Instant::now();
    for i in 0..WRITES {
        let v = i.to_string();
        // SAFETY: valid handle and buffers of the given lengths.
        let ok = unsafe { write(xs, 0, wpath.as_ptr(), v.as_ptr().cast(), v.len() as c_uint) };
        assert!(ok);
    }
    report("C libxenstore xs_write", WRITES, t.elapsed());
    // SAFETY: closing the handle opened above.
    unsafe { close(xs) };
}

fn bench_xenstore_rs() {
    use xenstore_rs::unix::XsUnix;
    use xenstore_rs::Xs;
    let xs = XsUnix::new().expect("xenstore-rs connect");
    let t = Instant::now();
    for _ in 0..READS {
        assert_eq!(&*xs.read(PATH).unwrap(), "Domain-0");
    }
    report("xenstore-rs XsUnix read (socket)", READS, t.elapsed());
    let t = Instant::now();
    for i in 0..WRITES {
        xs.write(WPATH, &i.to_string()).unwrap();
    }
    report("xenstore-rs XsUnix write", WRITES, t.elapsed());
}

/// Runs on a runtime worker (spawned), as an async application would.
async fn bench_ovm_async(t: Transport, label: &str, reads: u32, depths: &[usize]) {
    let c = XsClient::connect(t.clone(), XsConfig::default()).await.unwrap();
    // Without the per-request timer (no clock reads for it).
    let quiet =
        XsClient::connect(t, XsConfig { request_timeout: None, ..XsConfig::default() }).await.unwrap();
    let start = Instant::now();
    for _ in 0..reads {
        assert_eq!(quiet.read(PATH).await.unwrap(), b"Domain-0");
    }
    report(&format!("ovm async read, sequential, no timeout ({label})"), reads, start.elapsed());
    let start = Instant::now();
    for _ in 0..reads {
        assert_eq!(c.read(PATH).await.unwrap(), b"Domain-0");
    }
    report(&format!("ovm async read, sequential ({label})"), reads, start.elapsed());
    for &depth in depths {
        let start = Instant::now();
        let mut done = 0;
        while done < reads {
            let batch = (reads - done).min(depth as u32);
            let futs: Vec<_> = (0..batch)
                .map(|_| {
                    let c = c.clone();
                    tokio::spawn(async move { c.read(PATH).await })
                })
                .collect();
            for f in futs {
                assert_eq!(f.await.unwrap().unwrap(), b"Domain-0");
            }
            done += batch;
        }
        report(&format!("ovm async read, {depth} in flight ({label})"), reads, start.elapsed());
    }
    let start = Instant::now();
    for i in 0..WRITES.min(reads) {
        c.write(WPATH, i.to_string()).await.unwrap();
    }
    report(&format!("ovm async write, sequential ({label})"), WRITES.min(reads), start.elapsed());
}

#[test]
fn compare_xenstore_clients() {
    assert!(
        std::fs::read_to_string("/proc/xen/capabilities").unwrap_or_default().contains("control_d"),
        "must run in a Xen dom0"
    );
    let socket = Transport::candidates()
        .into_iter()
        .find(|t| matches!(t, Transport::Socket(p) if p.exists()))
        .expect("xenstored socket");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Warm up every path once (page cache, xenstored).
    bench_c_libxenstore();
    println!("---");
    bench_c_libxenstore();
    bench_xenstore_rs();
    rt.block_on(rt.spawn(bench_ovm_async(socket.clone(), "socket", READS, &[8, 32]))).unwrap();
    let xenbus = Transport::Xenbus("/dev/xen/xenbus".into());
    rt.block_on(rt.spawn(bench_ovm_async(xenbus, "xenbus", READS / 4, &[]))).unwrap();
    // The same sequential loop driven from outside the runtime (block_on):
    // every reply crosses from the reader task's thread to the caller.
    rt.block_on(async {
        let c = XsClient::connect(socket.clone(), XsConfig::default()).await.unwrap();
        let start = Instant::now();
        for _ in 0..READS / 4 {
            assert_eq!(c.read(PATH).await.unwrap(), b"Domain-0");
        }
        report("ovm async read, from block_on (socket)", READS / 4, start.elapsed());
    });
    drop(rt);
    let b = BlockingXsClient::connect(socket, XsConfig::default()).unwrap();
    let start = Instant::now();
    for _ in 0..READS {
        assert_eq!(b.read(PATH).unwrap(), b"Domain-0");
    }
    report("ovm blocking read (socket)", READS, start.elapsed());
    let q = BlockingXsClient::connect(
        Transport::Socket("/var/run/xenstored/socket".into()),
        XsConfig { request_timeout: None, ..XsConfig::default() },
    )
    .unwrap();
    let start = Instant::now();
    for _ in 0..READS {
        assert_eq!(q.read(PATH).unwrap(), b"Domain-0");
    }
    report("ovm blocking read, no timeout (socket)", READS, start.elapsed());
    b.rm("/ovm-bench").unwrap();
}
