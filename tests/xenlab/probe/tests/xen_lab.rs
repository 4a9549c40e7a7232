//! Runs inside the dom0 of an ovm Xen lab server:
//! `tests/xenlab/lab cargo-test --manifest-path tests/xenlab/probe/Cargo.toml`.
//! Outside the lab (OVM_XENLAB unset) every test fails on purpose, so that a
//! run that did not reach Xen can never pass.

use ovm_xenlab_probe::{xen_version, Xenstore};

fn in_lab() {
    assert_eq!(
        std::env::var("OVM_XENLAB").as_deref(),
        Ok("1"),
        "not running in the ovm Xen lab (run via tests/xenlab/lab cargo-test)"
    );
}

#[test]
fn hypervisor_is_xen() {
    in_lab();
    let kind = std::fs::read_to_string("/sys/hypervisor/type").expect("read /sys/hypervisor/type");
    assert_eq!(kind.trim(), "xen");
}

#[test]
fn privcmd_xen_version_hypercall() {
    in_lab();
    let version = xen_version().expect("xen_version hypercall");
    println!("xen_version hypercall: {version}");
    assert!(version.starts_with("4.17."), "unexpected Xen version {version}");
}

#[test]
fn xenstore_read_dom0_name() {
    in_lab();
    let mut xs = Xenstore::connect().expect("connect to xenstored");
    assert_eq!(xs.read("/local/domain/0/name").expect("XS_READ"), "Domain-0");
    assert!(xs.directory("/local/domain").expect("XS_DIRECTORY").contains(&"0".to_string()));
}

#[test]
fn xenstore_write_read_rm() {
    in_lab();
    let mut xs = Xenstore::connect().expect("connect to xenstored");
    let value = format!("written by pid {}", std::process::id());
    xs.write("/ovm-lab/probe/key", &value).expect("XS_WRITE");
    assert_eq!(xs.read("/ovm-lab/probe/key").expect("XS_READ"), value);
    xs.rm("/ovm-lab/probe").expect("XS_RM");
    assert!(xs.read("/ovm-lab/probe/key").is_err(), "key still there after XS_RM");
}

#[test]
fn runs_in_package_dir_with_source_tree_visible() {
    in_lab();
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let manifest =
        std::fs::read_to_string(format!("{manifest_dir}/Cargo.toml")).expect("read own Cargo.toml in dom0");
    assert!(manifest.contains("name = \"ovm-xenlab-probe\""));
    assert_eq!(std::env::current_dir().expect("cwd"), std::path::Path::new(manifest_dir));
}
