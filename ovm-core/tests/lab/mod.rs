//! What the lab's end-to-end tests share: timed job waits, polling, and telling an agent that
//! listens from QEMU's port forward.
#![allow(dead_code)] // each lab test uses part of it

use std::time::{Duration, Instant};

use ovm_core::model::{JobState, ObjectKind, ObjectRef};
use ovm_core::JobHandle;

/// Wait up to `secs` for `job` to complete; its result and how long it took (printed).
pub fn ok_timed(what: &str, job: ovm_core::Result<JobHandle>, secs: u64) -> (ObjectRef, Duration) {
    let t0 = Instant::now();
    let j = job.unwrap_or_else(|e| panic!("{what}: {e}")).wait(Some(Duration::from_secs(secs)));
    let j = j.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(j.state, JobState::Completed, "{what}: {j:?}");
    let took = t0.elapsed();
    println!("[{:>6.1} s] {what}", took.as_secs_f64());
    (j.result.unwrap_or(ObjectRef::new(ObjectKind::Job, j.id)), took)
}

/// Poll `f` every 250 ms for up to `secs` (printing how long it took).
pub fn wait_for(what: &str, secs: u64, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("[{:>6.1} s] {what}", t0.elapsed().as_secs_f64());
}

/// QEMU's port forward accepts connections even when nothing listens in dom0 (and then closes
/// them); a TLS server instead waits for the client's first message.
pub fn agent_listens(address: &str) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(address) else { return false };
    s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    matches!(s.read(&mut [0u8; 1]), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Run `cmd` through the lab's command runner in `share` (a dom0's or the storage server's), and
/// return its output; panics if it fails or takes longer than `secs`.
pub fn run_in(share: &std::path::Path, who: &str, cmd: &str, secs: u64) -> String {
    let (rc, out) = (share.join("cmd.rc"), share.join("cmd.out"));
    let _ = std::fs::remove_file(&rc);
    let _ = std::fs::remove_file(&out);
    std::fs::write(share.join("cmd.sh"), cmd).unwrap();
    std::fs::rename(share.join("cmd.sh"), share.join("cmd.go")).unwrap();
    let t0 = Instant::now();
    while !rc.exists() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{who} did not finish {cmd:?} in {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let status = std::fs::read_to_string(&rc).unwrap();
    assert_eq!(status.trim(), "0", "{who}: {cmd:?} failed: {text}");
    text
}

/// Run `cmd` in server `k`'s dom0 (its share's command runner, `dom0-runner.sh`).
pub fn on(k: u32, cmd: &str, secs: u64) -> String {
    let share = std::path::PathBuf::from(
        std::env::var(format!("OVM_XENLAB_SHARE_{k}")).expect("run under tests/xenlab/lab serve"),
    );
    run_in(&share, &format!("server {k}"), cmd, secs)
}

/// The lab's PV guest (its kernel and initramfs are at the same paths in every dom0), 128 MiB and
/// one vCPU, booted with `cmdline`; it prints the first bytes of its `xvda` and a heartbeat.
pub fn lab_guest(cmdline: &str) -> ovm_core::model::VmConfig {
    use ovm_core::model::{DomainType, PvKernel, VmConfig};
    VmConfig {
        domain_type: DomainType::Pv,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 128,
        max_memory_mib: 128,
        pv_kernel: Some(PvKernel {
            kernel: "/var/lib/ovm-lab/vmlinux".into(),
            initrd: Some("/var/lib/ovm-lab/domu-initrd.gz".into()),
            cmdline: cmdline.into(),
        }),
        ..VmConfig::default()
    }
}
