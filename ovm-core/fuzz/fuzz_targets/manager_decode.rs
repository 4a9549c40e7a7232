//! Fuzzes the manager service protocol's frame splitter and message decoders on arbitrary bytes:
//! nothing may panic, and whatever decodes must re-encode to a frame that decodes to the same
//! message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovm_core::agent::proto::{decode, encode, split_frames};
use ovm_core::remote::proto::{ClientMessage, ServiceMessage};

fuzz_target!(|data: &[u8]| {
    let bodies: Vec<&[u8]> = match split_frames(data) {
        Ok((frames, _rest)) => frames,
        Err(_) => Vec::new(),
    };
    for body in bodies.into_iter().chain(std::iter::once(data)) {
        if let Ok(m) = decode::<ClientMessage>(body) {
            let f = encode(&m).expect("a decoded message encodes");
            assert_eq!(decode::<ClientMessage>(&f[4..]).expect("re-decodes"), m);
        }
        if let Ok(m) = decode::<ServiceMessage>(body) {
            let f = encode(&m).expect("a decoded message encodes");
            assert_eq!(decode::<ServiceMessage>(&f[4..]).expect("re-decodes"), m);
        }
    }
});
