//! Graphical consoles: the RFB (VNC) pieces the manager's console endpoints speak, and a small
//! client that takes a screenshot through one.
//!
//! A VM's screen is served on its server only (Xen: the device model's VNC server on dom0's
//! loopback). [`crate::Manager::open_vm_console`] opens a stream to it through the driver (through
//! the agent's mutual-TLS connection for a remote server) and offers it on a one-time endpoint on
//! the manager's loopback: a VNC client connects there and authenticates with the endpoint's
//! one-time password (RFB "VNC Authentication"); the endpoint then speaks to the guest's server
//! (security None) and carries the rest of the protocol both ways. A wrong password is refused
//! (three, and the endpoint closes); once a client is in, or the endpoint expires, it accepts no
//! other connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};

use crate::{Error, Result};

/// The protocol version the endpoints and the client speak.
pub const RFB_VERSION: &[u8; 12] = b"RFB 003.008\n";

/// RFB security type "None".
pub const SECURITY_NONE: u8 = 1;
/// RFB security type "VNC Authentication".
pub const SECURITY_VNC: u8 = 2;

/// The answer to a VNC Authentication `challenge` with `password`: the challenge encrypted with
/// DES, the key being the password's first 8 bytes (zero-padded), each byte's bits reversed.
pub fn vnc_auth_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = des::Des::new(GenericArray::from_slice(&key));
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::backend("console", format!("{what}: {e}"))
}

fn read_u32(s: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Read an RFB failure reason (a length and that many bytes, at most 4 KiB kept).
fn read_reason(s: &mut impl Read) -> String {
    let Ok(n) = read_u32(s) else { return String::new() };
    let mut text = vec![0u8; (n as usize).min(4096)];
    if s.read_exact(&mut text).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The guest's side of a console stream: take its version and choose security None. What follows
/// is the client's `ClientInit`.
pub(crate) fn open_guest_side(guest: &mut (impl Read + Write)) -> Result<()> {
    let mut version = [0u8; 12];
    guest.read_exact(&mut version).map_err(|e| io("the guest's console server", e))?;
    if !version.starts_with(b"RFB 003.") {
        return Err(Error::backend("console", "the guest's console server does not speak RFB"));
    }
    guest.write_all(RFB_VERSION).map_err(|e| io("the guest's console server", e))?;
    let mut n = [0u8; 1];
    guest.read_exact(&mut n).map_err(|e| io("the guest's console server", e))?;
    if n[0] == 0 {
        return Err(Error::backend(
            "console",
            format!("the guest's console server refused: {}", read_reason(guest)),
        ));
    }
    let mut types = vec![0u8; usize::from(n[0])];
    guest.read_exact(&mut types).map_err(|e| io("the guest's console server", e))?;
    if !types.contains(&SECURITY_NONE) {
        return Err(Error::backend(
            "console",
            format!("the guest's console server wants security types {types:?}, not None"),
        ));
    }
    guest.write_all(&[SECURITY_NONE]).map_err(|e| io("the guest's console server", e))?;
    let result = read_u32(guest).map_err(|e| io("the guest's console server", e))?;
    if result != 0 {
        return Err(Error::backend(
            "console",
            format!("the guest's console server refused: {}", read_reason(guest)),
        ));
    }
    Ok(())
}

/// Why a client's handshake ended.
#[derive(Debug)]
pub(crate) enum ClientRefused {
    /// A wrong password.
    WrongPassword,
    /// Anything else (a version or security type the endpoint does not speak, a broken connection).
    Other(String),
}

/// The client's side of an endpoint: RFB 3.7 or 3.8, VNC Authentication with `password` and the
/// 16-byte `challenge`.
pub(crate) fn authenticate_client(
    client: &mut (impl Read + Write),
    password: &str,
    challenge: &[u8; 16],
) -> std::result::Result<(), ClientRefused> {
    let other = |e: std::io::Error| ClientRefused::Other(e.to_string());
    client.write_all(RFB_VERSION).map_err(other)?;
    let mut version = [0u8; 12];
    client.read_exact(&mut version).map_err(other)?;
    let v38 = &version == RFB_VERSION;
    if !v38 && &version != b"RFB 003.007\n" {
        // 3.3 and unknown versions: a failure the way 3.3 understands (security type 0).
        let why = b"this endpoint speaks RFB 3.7 and 3.8";
        let _ = client.write_all(&0u32.to_be_bytes());
        let _ = client.write_all(&(why.len() as u32).to_be_bytes());
        let _ = client.write_all(why);
        return Err(ClientRefused::Other(format!(
            "RFB version {:?}",
            String::from_utf8_lossy(&version).trim()
        )));
    }
    client.write_all(&[1, SECURITY_VNC]).map_err(other)?;
    let mut chosen = [0u8; 1];
    client.read_exact(&mut chosen).map_err(other)?;
    let fail = |client: &mut dyn Write, why: &str| {
        let _ = client.write_all(&1u32.to_be_bytes());
        if v38 {
            let _ = client.write_all(&(why.len() as u32).to_be_bytes());
            let _ = client.write_all(why.as_bytes());
        }
    };
    if chosen[0] != SECURITY_VNC {
        fail(client, "VNC authentication only");
        return Err(ClientRefused::Other(format!("security type {}", chosen[0])));
    }
    client.write_all(challenge).map_err(other)?;
    let mut answer = [0u8; 16];
    client.read_exact(&mut answer).map_err(other)?;
    let expected = vnc_auth_response(password, challenge);
    let same = expected.iter().zip(answer.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        fail(client, "wrong console password");
        return Err(ClientRefused::WrongPassword);
    }
    client.write_all(&0u32.to_be_bytes()).map_err(other)?;
    Ok(())
}

/// The most bytes of an HTTP request head a WebSocket client may send.
const MAX_HTTP_HEAD: usize = 8192;
/// The largest WebSocket frame payload taken from a client.
const MAX_WS_FRAME: u64 = 1 << 20;

/// The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn websocket_accept(key: &str) -> String {
    use base64::Engine;
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

/// Read an HTTP request head (through the blank line) from `s`.
fn read_http_head(s: &mut impl Read) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HTTP_HEAD {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "HTTP request head too long"));
        }
        s.read_exact(&mut b)?;
        head.push(b[0]);
    }
    String::from_utf8(head)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "HTTP head not UTF-8"))
}

/// Accept a WebSocket client on `tcp` whose request head is still unread (noVNC and websockify's
/// clients): answer the upgrade (with the `binary` subprotocol if offered) and return the
/// stream's reading and writing halves, which carry binary frames.
pub(crate) fn accept_websocket(mut tcp: TcpStream) -> std::io::Result<(WsReader, WsWriter)> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    let head = read_http_head(&mut tcp)?;
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    if !request.starts_with("GET ") {
        return Err(bad("not a GET request"));
    }
    let mut key = None;
    let mut upgrade = false;
    let mut binary = false;
    for l in lines {
        let Some((name, value)) = l.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "sec-websocket-key" => key = Some(value.to_owned()),
            "sec-websocket-protocol" => binary = value.split(',').any(|p| p.trim() == "binary"),
            _ => {}
        }
    }
    let (Some(key), true) = (key, upgrade) else {
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return Err(bad("not a WebSocket upgrade"));
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        websocket_accept(&key)
    );
    if binary {
        answer.push_str("Sec-WebSocket-Protocol: binary\r\n");
    }
    answer.push_str("\r\n");
    tcp.write_all(answer.as_bytes())?;
    let writer = WsWriter { tcp: std::sync::Arc::new(std::sync::Mutex::new(tcp.try_clone()?)) };
    Ok((WsReader { tcp, out: writer.clone(), pending: Vec::new(), at: 0, closed: false }, writer))
}

/// The writing half of a WebSocket: each write is one unmasked binary frame.
#[derive(Debug, Clone)]
pub(crate) struct WsWriter {
    tcp: std::sync::Arc<std::sync::Mutex<TcpStream>>,
}

impl WsWriter {
    fn frame(&self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        self.tcp.lock().unwrap_or_else(|p| p.into_inner()).write_all(&f)
    }

    /// Close the connection both ways.
    pub(crate) fn shutdown(&self) {
        let _ = self.tcp.lock().unwrap_or_else(|p| p.into_inner()).shutdown(std::net::Shutdown::Both);
    }
}

impl Write for WsWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.frame(0x2, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading half of a WebSocket: the payloads of the client's binary frames, in order (pings
/// answered, a close frame ends the stream).
#[derive(Debug)]
pub(crate) struct WsReader {
    tcp: TcpStream,
    out: WsWriter,
    pending: Vec<u8>,
    at: usize,
    closed: bool,
}

impl WsReader {
    fn next_frame(&mut self) -> std::io::Result<()> {
        let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
        loop {
            let mut h = [0u8; 2];
            self.tcp.read_exact(&mut h)?;
            let opcode = h[0] & 0x0f;
            if h[1] & 0x80 == 0 {
                return Err(bad("a client's frame must be masked"));
            }
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.tcp.read_exact(&mut b)?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.tcp.read_exact(&mut b)?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            if len > MAX_WS_FRAME {
                return Err(bad("WebSocket frame too large"));
            }
            let mut mask = [0u8; 4];
            self.tcp.read_exact(&mut mask)?;
            let mut payload = vec![0u8; len as usize];
            self.tcp.read_exact(&mut payload)?;
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match opcode {
                0x0 | 0x2 => {
                    self.pending = payload;
                    self.at = 0;
                    return Ok(());
                }
                0x8 => {
                    let _ = self.out.frame(0x8, &[]);
                    self.closed = true;
                    return Ok(());
                }
                0x9 => self.out.frame(0xA, &payload)?,
                0xA => {}
                _ => return Err(bad("text frames are not RFB")),
            }
        }
    }
}

impl Read for WsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.pending.len() {
            if self.closed {
                return Ok(0);
            }
            self.next_frame()?;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A screen as 8-bit RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screenshot {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// The desktop name the server gave.
    pub name: String,
    /// Row-major RGB triplets.
    pub rgb: Vec<u8>,
}

impl Screenshot {
    /// How many distinct colours the screen has (1: blank).
    pub fn colours(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        for p in self.rgb.chunks_exact(3) {
            seen.insert([p[0], p[1], p[2]]);
        }
        seen.len()
    }

    /// The screen as a PNG image (8-bit RGB, deflate-compressed).
    pub fn png(&self) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&u32::from(self.width).to_be_bytes());
        ihdr.extend_from_slice(&u32::from(self.height).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        let row = usize::from(self.width) * 3;
        let mut raw = Vec::with_capacity((row + 1) * usize::from(self.height));
        for line in self.rgb.chunks_exact(row.max(1)) {
            raw.push(0);
            raw.extend_from_slice(line);
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = z.write_all(&raw);
        chunk(&mut png, b"IDAT", &z.finish().unwrap_or_default());
        chunk(&mut png, b"IEND", &[]);
        png
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Connect to a console endpoint at `address`, authenticate with `password`, and take one
/// screenshot: the whole screen in raw encoding, 32-bit true colour.
pub fn screenshot(address: SocketAddr, password: &str, timeout: Duration) -> Result<Screenshot> {
    let s = TcpStream::connect_timeout(&address, timeout).map_err(|e| io("connect to the console", e))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| io("console", e))?;
    screenshot_over(s, password)
}

/// [`screenshot`] over a stream already connected to an RFB server (inside a WebSocket, say).
pub fn screenshot_over(mut s: impl Read + Write, password: &str) -> Result<Screenshot> {
    let e = |e: std::io::Error| io("the console", e);
    let mut version = [0u8; 12];
    s.read_exact(&mut version).map_err(e)?;
    s.write_all(RFB_VERSION).map_err(e)?;
    let mut n = [0u8; 1];
    s.read_exact(&mut n).map_err(e)?;
    if n[0] == 0 {
        return Err(Error::PermissionDenied {
            reason: format!("the console refused: {}", read_reason(&mut s)),
        });
    }
    let mut types = vec![0u8; usize::from(n[0])];
    s.read_exact(&mut types).map_err(e)?;
    if types.contains(&SECURITY_VNC) {
        s.write_all(&[SECURITY_VNC]).map_err(e)?;
        let mut challenge = [0u8; 16];
        s.read_exact(&mut challenge).map_err(e)?;
        s.write_all(&vnc_auth_response(password, &challenge)).map_err(e)?;
    } else if types.contains(&SECURITY_NONE) {
        s.write_all(&[SECURITY_NONE]).map_err(e)?;
    } else {
        return Err(Error::Unsupported { what: format!("console security types {types:?}") });
    }
    if read_u32(&mut s).map_err(e)? != 0 {
        return Err(Error::PermissionDenied {
            reason: format!("the console refused: {}", read_reason(&mut s)),
        });
    }
    s.write_all(&[1]).map_err(e)?; // ClientInit: shared
    let mut init = [0u8; 24];
    s.read_exact(&mut init).map_err(e)?;
    let (width, height) = (u16::from_be_bytes([init[0], init[1]]), u16::from_be_bytes([init[2], init[3]]));
    let mut name =
        vec![0u8; (u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize).min(4096)];
    s.read_exact(&mut name).map_err(e)?;
    // 32 bits per pixel, little-endian, true colour, red at bit 16, green 8, blue 0.
    let mut msg = vec![0u8, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0];
    msg.extend_from_slice(&[2, 0, 0, 1, 0, 0, 0, 0]); // SetEncodings: raw
    msg.extend_from_slice(&[3, 0, 0, 0, 0, 0]); // FramebufferUpdateRequest, whole screen
    msg.extend_from_slice(&width.to_be_bytes());
    msg.extend_from_slice(&height.to_be_bytes());
    s.write_all(&msg).map_err(e)?;
    let mut rgb = vec![0u8; usize::from(width) * usize::from(height) * 3];
    loop {
        let mut ty = [0u8; 1];
        s.read_exact(&mut ty).map_err(e)?;
        match ty[0] {
            0 => break,
            // Bell, cut text: skipped.
            2 => {}
            3 => {
                let mut h = [0u8; 7];
                s.read_exact(&mut h).map_err(e)?;
                let n = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
                std::io::copy(&mut (&mut s).take(n as u64), &mut std::io::sink()).map_err(e)?;
            }
            other => return Err(Error::backend("console", format!("unexpected server message {other}"))),
        }
    }
    let mut h = [0u8; 3];
    s.read_exact(&mut h).map_err(e)?;
    for _ in 0..u16::from_be_bytes([h[1], h[2]]) {
        let mut r = [0u8; 12];
        s.read_exact(&mut r).map_err(e)?;
        let [x, y, w, hh] = [0, 2, 4, 6].map(|i| usize::from(u16::from_be_bytes([r[i], r[i + 1]])));
        let enc = i32::from_be_bytes([r[8], r[9], r[10], r[11]]);
        if enc != 0 {
            return Err(Error::backend("console", format!("encoding {enc}, asked for raw")));
        }
        let mut px = vec![0u8; w * hh * 4];
        s.read_exact(&mut px).map_err(e)?;
        for row in 0..hh {
            for col in 0..w {
                let (xx, yy) = (x + col, y + row);
                if xx >= usize::from(width) || yy >= usize::from(height) {
                    continue;
                }
                let p = &px[(row * w + col) * 4..][..4];
                let v = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                let o = (yy * usize::from(width) + xx) * 3;
                rgb[o..o + 3].copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
            }
        }
    }
    Ok(Screenshot { width, height, name: String::from_utf8_lossy(&name).into_owned(), rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnc_authentication_matches_a_known_answer() {
        // DES's classic test vector (key 133457799BBCDFF1, plaintext 0123456789ABCDEF →
        // 85E813540F0AB405), with the key's bytes bit-reversed as VNC does.
        let cipher =
            des::Des::new(GenericArray::from_slice(&[0x13, 0x34, 0x57, 0x79, 0x9B, 0xBC, 0xDF, 0xF1]));
        let mut block = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF];
        cipher.encrypt_block(GenericArray::from_mut_slice(&mut block));
        assert_eq!(block, [0x85, 0xE8, 0x13, 0x54, 0x0F, 0x0A, 0xB4, 0x05]);
        // The same challenge answered twice is answered the same; another password differs.
        let c = [7u8; 16];
        assert_eq!(vnc_auth_response("secret", &c), vnc_auth_response("secret", &c));
        assert_ne!(vnc_auth_response("secret", &c), vnc_auth_response("secreT", &c));
        // Only the first 8 bytes count, as in every VNC server.
        assert_eq!(vnc_auth_response("12345678", &c), vnc_auth_response("123456789", &c));
    }

    #[test]
    fn websocket_accept_matches_rfc_6455() {
        assert_eq!(websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn png_of_a_screen_has_its_size_and_a_valid_crc() {
        let s = Screenshot { width: 2, height: 1, name: "x".into(), rgb: vec![255, 0, 0, 0, 0, 255] };
        let png = s.png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes([png[16], png[17], png[18], png[19]]), 2);
        let crc = u32::from_be_bytes([png[29], png[30], png[31], png[32]]);
        assert_eq!(crc, crc32(&png[12..29]));
        assert_eq!(s.colours(), 2);
        // The CRC of "IEND" is the well-known AE426082.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }
}
