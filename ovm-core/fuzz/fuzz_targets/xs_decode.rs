//! Fuzzes the xenstore wire decoder and the reply parsers on arbitrary bytes:
//! nothing may panic, and whatever decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovm_core::xen::wire::{decode, single_string, split_strings, Decoder, WatchEvent};
use ovm_core::xen::Perms;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((m, used))) = decode(data) {
        assert!(used <= data.len());
        assert_eq!(m.encode(), &data[..used]);
        let _ = m.error();
        let _ = single_string(&m.payload);
        let _ = WatchEvent::parse(&m.payload);
        if let Ok(parts) = split_strings(&m.payload) {
            let _ = Perms::from_strings(&parts);
        }
    }
    // The same bytes fed in uneven chunks to the streaming decoder.
    let mut d = Decoder::new();
    let step = 1 + data.first().map_or(0, |b| usize::from(*b % 13));
    for chunk in data.chunks(step) {
        d.feed(chunk);
        while let Ok(Some(_)) = d.next_message() {}
    }
});
