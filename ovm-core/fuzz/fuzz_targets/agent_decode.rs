//! Fuzzes the frame splitter and the message decoders of both protocols on arbitrary bytes (the
//! agent's, and the manager service's, which uses the same frames): nothing may panic, and whatever
//! decodes must re-encode to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovm_core::agent::proto::{decode, encode, split_frames, AgentMessage, ClientMessage};
use ovm_core::remote::proto::{ClientMessage as ManagerRequest, ServiceMessage};

/// If `body` decodes as a `T`, it re-encodes to a frame that decodes to the same `T`.
fn round_trip<T>(body: &[u8])
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    if let Ok(m) = decode::<T>(body) {
        let f = encode(&m).expect("a decoded message encodes");
        assert_eq!(decode::<T>(&f[4..]).expect("re-decodes"), m);
    }
}

fuzz_target!(|data: &[u8]| {
    // The input as a byte stream of frames, and as one frame body.
    let bodies: Vec<&[u8]> = match split_frames(data) {
        Ok((frames, _rest)) => frames,
        Err(_) => Vec::new(),
    };
    for body in bodies.into_iter().chain(std::iter::once(data)) {
        round_trip::<ClientMessage>(body);
        round_trip::<AgentMessage>(body);
        round_trip::<ManagerRequest>(body);
        round_trip::<ServiceMessage>(body);
    }
});
