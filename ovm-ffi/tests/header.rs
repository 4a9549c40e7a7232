//! The committed header's version macros match Cargo.toml, and `ovm_version()` agrees.

use std::ffi::CStr;

fn macro_value(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("{name} missing from include/ovm.h"))
        .trim()
        .to_owned()
}

#[test]
fn header_version_matches_the_crate() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/ovm.h"))
        .expect("include/ovm.h");
    assert_eq!(macro_value(&header, "OVM_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MAJOR"));
    assert_eq!(macro_value(&header, "OVM_VERSION_MINOR"), env!("CARGO_PKG_VERSION_MINOR"));
    assert_eq!(macro_value(&header, "OVM_VERSION_PATCH"), env!("CARGO_PKG_VERSION_PATCH"));
    // SAFETY: ovm_version returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(ovm::ovm_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert!(header.contains("ovm_result ovm_vm_start("), "the header declares the API");
}

#[test]
fn result_names_are_static_and_unknown_is_named() {
    // SAFETY: static strings.
    let name = |c| unsafe { CStr::from_ptr(ovm::ovm_result_name(c)) }.to_str().unwrap().to_owned();
    assert_eq!(name(0), "OVM_RESULT_OK");
    assert_eq!(name(1), "OVM_RESULT_NOT_FOUND");
    assert_eq!(name(1003), "OVM_RESULT_PANIC");
    assert_eq!(name(777), "OVM_RESULT_UNKNOWN");
}

/// `OVM_OBJECT_SERVER_POOL` for `ServerPool`.
fn c_kind_name(name: &str) -> String {
    let mut out = String::from("OVM_OBJECT_");
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[test]
fn header_object_kinds_are_the_core_codes() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/ovm.h"))
        .expect("include/ovm.h");
    let start = header.find("enum ovm_object_kind").expect("the header declares ovm_object_kind");
    let body = &header[start..];
    let body = &body[..body.find("};").expect("end of ovm_object_kind")];
    let constants: Vec<(String, u32)> = body
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().trim_end_matches(',').split_once(" = ")?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect();
    let expected: Vec<(String, u32)> =
        ovm_core::model::ObjectKind::ALL.iter().map(|k| (c_kind_name(k.name()), k.code())).collect();
    assert_eq!(
        constants, expected,
        "include/ovm.h's ovm_object_kind differs from ovm-core's ObjectKind codes"
    );
}

#[test]
fn header_sim_password_is_the_simulators() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/ovm.h"))
        .expect("include/ovm.h");
    assert_eq!(
        macro_value(&header, "OVM_SIM_PASSWORD"),
        format!("{:?}", ovm_core::driver::sim::DEFAULT_PASSWORD)
    );
}
