//! Fuzzes the OVF descriptor and manifest parsers on arbitrary bytes: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovm_core::import::{manifest, ovf};

fuzz_target!(|data: &[u8]| {
    let _ = ovf::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = manifest::parse(text);
    }
});
