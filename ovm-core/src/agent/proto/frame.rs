//! Frames: a 4-byte big-endian length, then that many bytes of one JSON message.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Error;

/// Largest frame accepted in either direction, bytes.
pub const MAX_FRAME: usize = 1 << 20;

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
