//! The agent protocol: typed messages in length-prefixed frames, inside TLS.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of one JSON message; a frame
//! longer than [`MAX_FRAME`] is refused before it is read. The manager speaks first with
//! [`ClientMessage::Hello`] (the protocol versions it speaks and its id); the agent answers
//! [`AgentMessage::Welcome`] with the version both speak, or [`AgentMessage::Refused`] and closes.
//! Then the manager sends [`ClientMessage::Request`]s, each with its own id; the agent answers each
//! with an [`AgentMessage::Response`] carrying the same id (responses may come out of order: requests
//! run concurrently) and pushes [`AgentMessage::Change`]s to the owning manager.
//!
//! Malformed frames never take the agent down: a frame that is not a message gets
//! [`AgentMessage::ProtocolError`] and the connection goes on; a frame too long to read closes it.

//!
//! [`frame`] is the framing; [`v1`] the messages of protocol version 1, with wire types of their
//! own: the driver seam's structs convert to and from them, so changing the seam cannot change what
//! version 1 sends. The tests pin the encoding of every message.

pub mod frame;
pub mod v1;

pub use frame::{
    decode, encode, read_frame, read_frame_blocking, split_frames, write_frame, write_frame_blocking,
    FrameError, MAX_FRAME,
};
pub use v1::{dispatch, AgentMessage, Client, ClientMessage, Op, Ownership, Reply, Serve};

/// The protocol version this build speaks (also the newest).
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest protocol version this build speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// Console output returned by one request is cut to its last this many bytes.
pub const MAX_CONSOLE: usize = 256 << 10;
