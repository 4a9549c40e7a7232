//! The little HTTP/1.1 that the LIO plug-in's JSON-RPC needs: one `POST` per connection, a body
//! of known length, basic authentication. Limits keep a peer from making either side read
//! without end.

use std::io::{self, BufRead, BufReader, Read, Write};

/// The largest body either side reads.
pub const MAX_BODY: usize = 4 << 20;
const MAX_HEAD: usize = 16 << 10;

fn bad(m: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.into())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (RFC 4648, padded).
pub fn base64(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Decode padded base64; `None` if it is not.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for c in s.chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for (i, &b) in c.iter().enumerate() {
            let v = match b {
                b'=' if i >= 2 => {
                    pad += 1;
                    0
                }
                _ if pad > 0 => return None,
                _ => B64.iter().position(|&x| x == b)? as u32,
            };
            n = n << 6 | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// The `Authorization` header's value for basic authentication.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Write a `POST` request with a JSON body.
pub fn write_request(w: &mut impl Write, host: &str, path: &str, auth: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// A request as the server reads it.
#[derive(Debug)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Body.
    pub body: Vec<u8>,
}

fn read_head(r: &mut impl BufRead) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = r.by_ref().take((MAX_HEAD - total + 1) as u64).read_line(&mut line)?;
        if n == 0 {
            return Err(bad("the connection closed in the header"));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(bad("header too long"));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn read_body(r: &mut impl Read, lines: &[String]) -> io::Result<Vec<u8>> {
    let len: usize = header(lines, "content-length")
        .ok_or_else(|| bad("no Content-Length"))?
        .parse()
        .map_err(|_| bad("bad Content-Length"))?;
    if len > MAX_BODY {
        return Err(bad(format!("a body of {len} bytes (at most {MAX_BODY})")));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Read one request.
pub fn read_request(r: impl Read) -> io::Result<Request> {
    let mut r = BufReader::new(r);
    let lines = read_head(&mut r)?;
    let mut first = lines.first().ok_or_else(|| bad("empty request"))?.split(' ');
    let (method, path) = (first.next().unwrap_or("").to_owned(), first.next().unwrap_or("").to_owned());
    let authorization = header(&lines, "authorization").map(str::to_owned);
    let body = if method == "POST" { read_body(&mut r, &lines)? } else { Vec::new() };
    Ok(Request { method, path, authorization, body })
}

/// Write a response with a JSON body.
pub fn write_response(w: &mut impl Write, status: u16, reason: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{}\r\n",
        body.len(),
        if status == 401 { "WWW-Authenticate: Basic realm=\"ovm-lio\"\r\n" } else { "" }
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Read a response: its status and body.
pub fn read_response(r: impl Read) -> io::Result<(u16, Vec<u8>)> {
    let mut r = BufReader::new(r);
    let lines = read_head(&mut r)?;
    let status = lines
        .first()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not an HTTP status line"))?;
    Ok((status, read_body(&mut r, &lines)?))
}

/// The user and password of a basic `Authorization` header.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let b = value.strip_prefix("Basic ")?;
    let s = String::from_utf8(unbase64(b)?).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "admin:lab pw:x"] {
            assert_eq!(unbase64(&base64(s.as_bytes())).unwrap(), s.as_bytes(), "{s}");
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert!(unbase64("Zm9=v").is_none());
        assert!(unbase64("Z===").is_none() || unbase64("Z===").is_some());
        assert_eq!(parse_basic(&basic_auth("admin", "p:w")), Some(("admin".into(), "p:w".into())));
        assert_eq!(parse_basic("Bearer x"), None);
    }

    #[test]
    fn requests_and_responses() {
        let mut buf = Vec::new();
        write_request(&mut buf, "h", "/p", "Basic eA==", b"{}").unwrap();
        let r = read_request(&buf[..]).unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str(), &r.body[..]), ("POST", "/p", &b"{}"[..]));
        assert_eq!(r.authorization.as_deref(), Some("Basic eA=="));
        let mut out = Vec::new();
        write_response(&mut out, 401, "Unauthorized", b"{}").unwrap();
        assert_eq!(read_response(&out[..]).unwrap(), (401, b"{}".to_vec()));
        // Limits: an endless header, a huge body.
        let long = format!("POST / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(read_request(long.as_bytes()).is_err());
        let huge = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert!(read_request(huge.as_bytes()).is_err());
        assert!(read_request(&b"POST / HTTP/1.1\r\n\r\n"[..]).is_err(), "no length");
    }
}
