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

use std::io::{self, Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::driver::{DomainChange, DomainSpec, DomainStatus, HostInfo, HostLoad};
use crate::model::VmId;
use crate::Error;

/// The protocol version this build speaks (also the newest).
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest protocol version this build speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// Largest frame accepted in either direction, bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Console output returned by one request is cut to its last this many bytes.
pub const MAX_CONSOLE: usize = 256 << 10;

/// A message from the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message of a connection.
    Hello {
        /// Oldest protocol version the manager speaks.
        min_version: u32,
        /// Newest protocol version the manager speaks.
        max_version: u32,
        /// The manager's id.
        manager_id: String,
    },
    /// A request.
    Request {
        /// Chosen by the manager; echoed in the response.
        id: u64,
        /// What to do.
        op: Op,
    },
}

/// An operation requested by the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Present the agent password and take ownership: from then on only this manager's certificate
    /// is accepted. Allowed when unowned (or already owned by the caller).
    TakeOwnership {
        /// The agent password.
        password: String,
    },
    /// Return the agent to unowned.
    ReleaseOwnership,
    /// Host information.
    HostInfo,
    /// Current load.
    Load,
    /// Resident domains.
    ListDomains,
    /// Build and start a domain.
    CreateDomain {
        /// The domain.
        spec: Box<DomainSpec>,
    },
    /// Graceful shutdown with a timeout.
    Shutdown {
        /// VM.
        vm: VmId,
        /// Timeout, ms.
        timeout_ms: u64,
    },
    /// Graceful reboot with a timeout.
    Reboot {
        /// VM.
        vm: VmId,
        /// Timeout, ms.
        timeout_ms: u64,
    },
    /// Destroy at once.
    Destroy {
        /// VM.
        vm: VmId,
    },
    /// Pause.
    Pause {
        /// VM.
        vm: VmId,
    },
    /// Unpause.
    Unpause {
        /// VM.
        vm: VmId,
    },
    /// Save to a file and destroy.
    Suspend {
        /// VM.
        vm: VmId,
        /// Path on the server.
        path: String,
    },
    /// Restore from a file.
    Restore {
        /// The domain.
        spec: Box<DomainSpec>,
        /// Path on the server.
        path: String,
    },
    /// Live-migrate.
    Migrate {
        /// VM.
        vm: VmId,
        /// Destination address.
        destination: String,
        /// Live.
        live: bool,
    },
    /// Memory target.
    SetMemory {
        /// VM.
        vm: VmId,
        /// MiB.
        memory_mib: u64,
    },
    /// Online vCPUs.
    SetVcpus {
        /// VM.
        vm: VmId,
        /// Count.
        vcpus: u32,
    },
    /// Console output (the last [`MAX_CONSOLE`] bytes).
    Console {
        /// VM.
        vm: VmId,
    },
    /// Power the host off.
    PowerOff,
    /// Create a sparse file.
    StorageCreate {
        /// Path.
        path: String,
        /// Size.
        size_bytes: u64,
    },
    /// Copy a file.
    StorageCopy {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// Delete a file.
    StorageDelete {
        /// Path.
        path: String,
    },
    /// Restart the agent process (its supervisor starts it again); domains keep running.
    RestartAgent,
}

impl Op {
    /// Whether an unowned agent serves this operation.
    pub fn allowed_unowned(&self) -> bool {
        matches!(self, Op::TakeOwnership { .. })
    }

    /// How long the manager waits for the answer.
    pub fn timeout(&self) -> Duration {
        let base = Duration::from_secs(60);
        match self {
            Op::Shutdown { timeout_ms, .. } | Op::Reboot { timeout_ms, .. } => {
                base + Duration::from_millis(*timeout_ms)
            }
            Op::CreateDomain { .. }
            | Op::Restore { .. }
            | Op::Suspend { .. }
            | Op::Migrate { .. }
            | Op::StorageCopy { .. } => Duration::from_secs(900),
            _ => base,
        }
    }
}

/// Whether the agent is owned, seen from the connecting manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// No manager owns the agent: only [`Op::TakeOwnership`] is served.
    Unowned,
    /// The connecting manager owns it.
    OwnedByYou,
}

/// A message from the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// Answer to a [`ClientMessage::Hello`] the agent accepts.
    Welcome {
        /// The protocol version of this connection.
        version: u32,
        /// The agent's host name.
        hostname: String,
        /// Ownership seen from this manager.
        ownership: Ownership,
    },
    /// The connection is refused; the agent closes it.
    Refused {
        /// Why.
        error: Error,
    },
    /// The answer to a request.
    Response {
        /// The request's id.
        id: u64,
        /// The outcome.
        result: Result<Reply, Error>,
    },
    /// A domain changed (sent to the owning manager only).
    Change {
        /// What changed.
        change: DomainChange,
    },
    /// A frame could not be understood; the connection goes on.
    ProtocolError {
        /// What was wrong.
        message: String,
    },
}

/// The value of a successful request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Reply {
    /// Nothing to return.
    Done,
    /// Host information.
    HostInfo(HostInfo),
    /// Load.
    Load(HostLoad),
    /// Domains.
    Domains(Vec<DomainStatus>),
    /// A domid.
    Domid(u32),
    /// Console text.
    Console(String),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The announced length is over [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// A transport error (including a close inside a frame).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Encodes one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, msg)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(Error::invalid("message", format!("{len} bytes is over the frame limit of {MAX_FRAME}")));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Decodes one frame body.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed message: {e}"))
}

/// Splits a byte stream into frame bodies: every complete frame, then what is left over. A length
/// over [`MAX_FRAME`] is an error. (Used by the fuzz target; the connections read frames with
/// [`read_frame`].)
pub fn split_frames(mut bytes: &[u8]) -> Result<(Vec<&[u8]>, &[u8]), FrameError> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if bytes.len() < 4 + len {
            break;
        }
        out.push(&bytes[4..4 + len]);
        bytes = &bytes[4 + len..];
    }
    Ok((out, bytes))
}

/// Checks a frame header just read (a close there is a clean close) and sizes `buf` for the body.
fn body_buffer(header: io::Result<()>, len: [u8; 4], buf: &mut Vec<u8>) -> Result<(), FrameError> {
    match header {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf.clear();
    buf.resize(len, 0);
    Ok(())
}

/// Reads one frame body.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut len = [0u8; 4];
    let header = r.read_exact(&mut len).await.map(drop);
    body_buffer(header, len, buf)?;
    r.read_exact(buf).await?;
    Ok(())
}

/// Writes one frame (already encoded by [`encode`]).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

/// Reads one frame body from a blocking stream.
pub fn read_frame_blocking<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut len = [0u8; 4];
    let header = r.read_exact(&mut len);
    body_buffer(header, len, buf)?;
    r.read_exact(buf)?;
    Ok(())
}

/// Writes one frame to a blocking stream.
pub fn write_frame_blocking<W: Write>(w: &mut W, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            ClientMessage::Hello { min_version: 1, max_version: 1, manager_id: "m".into() },
            ClientMessage::Request { id: 7, op: Op::TakeOwnership { password: "pw".into() } },
            ClientMessage::Request { id: 8, op: Op::Shutdown { vm: VmId::new(), timeout_ms: 5 } },
            ClientMessage::Request { id: 9, op: Op::ListDomains },
        ];
        for m in msgs {
            let f = encode(&m).unwrap();
            let (frames, rest) = split_frames(&f).unwrap();
            assert!(rest.is_empty());
            assert_eq!(decode::<ClientMessage>(frames[0]).unwrap(), m);
        }
        let r =
            AgentMessage::Response { id: 3, result: Err(Error::PermissionDenied { reason: "no".into() }) };
        assert_eq!(decode::<AgentMessage>(&encode(&r).unwrap()[4..]).unwrap(), r);
        let r = AgentMessage::Response { id: 4, result: Ok(Reply::Domid(12)) };
        assert_eq!(decode::<AgentMessage>(&encode(&r).unwrap()[4..]).unwrap(), r);
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        assert!(matches!(split_frames(&[0xff, 0xff, 0xff, 0xff]), Err(FrameError::TooLarge(_))));
        let (frames, rest) = split_frames(&[0, 0, 0, 5, b'{']).unwrap();
        assert!(frames.is_empty() && rest.len() == 5);
        assert!(decode::<ClientMessage>(b"{").is_err());
        assert!(decode::<ClientMessage>(br#"{"type":"request","id":1,"op":{"op":"nuke"}}"#).is_err());
        assert!(decode::<ClientMessage>(br#"{"type":"hello","min_version":1}"#).is_err());
    }

    #[test]
    fn oversized_messages_are_refused_at_encoding() {
        let big = Reply::Console("x".repeat(MAX_FRAME + 1));
        let err = encode(&AgentMessage::Response { id: 1, result: Ok(big) }).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }
}
