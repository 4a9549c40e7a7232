//! The domain list through ovm's hypercall path (`XEN_SYSCTL_getdomaininfolist` over
//! /dev/xen/privcmd) against `xl list` (the toolstack: a process, libxl, its own hypercalls), in
//! the same boot, interleaved rounds. Must run as root in a Xen dom0.

use std::time::{Duration, Instant};

use ovm_core::xen::privcmd::Privcmd;

const ROUNDS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
fn domain_list_hypercall_vs_xl_list() {
    assert!(std::env::var_os("OVM_XENLAB").is_some(), "run in the Xen lab's dom0");
    let pc = Privcmd::open().expect("privcmd");
    let n_hc = 200;
    let n_xl = 5;
    let (mut hc, mut xl) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        for _ in 0..n_hc {
            let d = pc.domains().expect("domain list");
            assert!(d.iter().any(|i| i.domid == 0));
        }
        hc.push(t0.elapsed().as_secs_f64() * 1e6 / f64::from(n_hc));
        let t0 = Instant::now();
        for _ in 0..n_xl {
            let out = std::process::Command::new("xl").arg("list").output().expect("xl list");
            assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Domain-0"));
        }
        xl.push(t0.elapsed().as_secs_f64() * 1e6 / f64::from(n_xl));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (hc, xl) = (median(hc), median(xl));
    println!(
        "domain list: hypercall {hc:.0} µs, `xl list` {xl:.0} µs: the hypercall path is {:.0}x faster \
         (median of {ROUNDS} rounds)",
        xl / hc
    );
}
