//! Fuzzes the `vm.cfg` parser: nothing may panic, and whatever parses renders back to a file
//! that parses to the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovm_core::import::vmcfg;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = vmcfg::VmCfg::parse(text) {
        let again = vmcfg::VmCfg::parse(&cfg.render()).expect("a rendered file parses");
        assert_eq!(again, cfg);
        let _ = vmcfg::template_from_cfg(&cfg);
    }
    let _ = vmcfg::parse_vm(text);
});
