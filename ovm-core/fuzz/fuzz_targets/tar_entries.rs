//! Fuzzes the tar reader on arbitrary bytes: nothing may panic, whatever the archive holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovm_core::import::tar::{for_each_entry, TarLimits};

fuzz_target!(|data: &[u8]| {
    let limits = TarLimits { max_file_size: 1 << 20, ..TarLimits::default() };
    let _ = for_each_entry(data, &limits, |_, r| {
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).map_err(|e| ovm_core::Error::invalid("fuzz", e.to_string()))?;
        Ok(())
    });
});
