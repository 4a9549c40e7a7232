//! Where an import (or a PV guest's network boot) reads from: a file or an HTTP(S) URL, read as a stream
//! (nothing is copied to memory or to a temporary file first).
//!
//! The HTTP client is deliberately small: `GET` only, HTTP/1.1 with `Content-Length` or chunked
//! bodies, redirects followed only within the same scheme, host and port (at most
//! [`MAX_REDIRECTS`]), a head of at most [`MAX_HEAD`] bytes, and a read timeout so that a server
//! that stops sending fails the import instead of holding it forever. HTTPS checks the server's
//! certificate against the operating system's trusted roots.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::{Error, Result};

/// Most redirects followed (all within the same origin).
pub const MAX_REDIRECTS: usize = 5;
/// Largest response head, bytes.
pub const MAX_HEAD: usize = 64 * 1024;
/// How long a read may wait for the server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// An opened source: its bytes, and its length when known.
pub struct Opened {
    /// The bytes.
    pub reader: Box<dyn Read + Send>,
    /// The length, if the file system or the server says.
    pub length: Option<u64>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("length", &self.length).finish_non_exhaustive()
    }
}

/// Where an import reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An absolute path of a regular file on the manager's machine.
    Path(String),
    /// An `http://` or `https://` URL.
    Url(Url),
}

impl Source {
    /// Parse `text`: an `http(s)://` URL or an absolute path.
    pub fn parse(text: &str) -> Result<Source> {
        if text.starts_with("http://") || text.starts_with("https://") {
            return Url::parse(text).map(Source::Url);
        }
        if text.contains("://") {
            return Err(Error::invalid(
                "source",
                format!("{text:?}: only http, https and absolute paths are read"),
            ));
        }
        if !text.starts_with('/') || text.contains('\0') {
            return Err(Error::invalid(
                "source",
                format!("{text:?} is not an absolute path or an HTTP(S) URL"),
            ));
        }
        Ok(Source::Path(text.to_owned()))
    }

    /// Open it.
    pub fn open(&self) -> Result<Opened> {
        match self {
            Source::Path(p) => {
                let f =
                    std::fs::File::open(p).map_err(|e| Error::invalid("source", format!("open {p}: {e}")))?;
                let meta = f.metadata().map_err(|e| Error::invalid("source", format!("stat {p}: {e}")))?;
                if !meta.is_file() {
                    return Err(Error::invalid("source", format!("{p} is not a regular file")));
                }
                Ok(Opened { reader: Box::new(f), length: Some(meta.len()) })
            }
            Source::Url(u) => get(u),
        }
    }

    /// The source named `href` beside this one (an OVF descriptor's files): `href` is one plain
    /// file name.
    pub fn sibling(&self, href: &str) -> Result<Source> {
        let plain = !href.is_empty()
            && href != "."
            && href != ".."
            && !href.contains(['/', '\\', '\0', '?', '#'])
            && !href.contains("://");
        if !plain {
            return Err(Error::invalid("href", format!("{href:?} is not a plain file name")));
        }
        Ok(match self {
            Source::Path(p) => {
                let dir = Path::new(p).parent().unwrap_or(Path::new("/"));
                Source::Path(dir.join(href).to_string_lossy().into_owned())
            }
            Source::Url(u) => {
                let dir = &u.path[..u.path.rfind('/').map_or(0, |i| i + 1)];
                Source::Url(Url { path: format!("{dir}{href}"), ..u.clone() })
            }
        })
    }

    /// The last component of the path, for names.
    pub fn file_name(&self) -> &str {
        let p = match self {
            Source::Path(p) => p.as_str(),
            Source::Url(u) => u.path.split(['?', '#']).next().unwrap_or(""),
        };
        p.rsplit('/').next().unwrap_or("")
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path(p) => f.write_str(p),
            Source::Url(u) => write!(f, "{u}"),
        }
    }
}

/// An HTTP(S) URL: scheme, host, port and path (with its query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https`?
    pub tls: bool,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse an `http://` or `https://` URL (no user information).
    pub fn parse(text: &str) -> Result<Url> {
        let bad = |why: &str| Error::invalid("url", format!("{text:?}: {why}"));
        let (tls, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("not http or https"));
        };
        if text.len() > 8192 || text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("too long, or has spaces or control characters"));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], "/"),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/").to_owned();
        if authority.contains('@') {
            return Err(bad("user information in a URL is not accepted"));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Url { tls, host: host.to_owned(), port, path })
    }

    fn origin(&self) -> (bool, &str, u16) {
        (self.tls, &self.host, self.port)
    }

    fn authority(&self) -> String {
        let h = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", if self.tls { "https" } else { "http" }, self.authority(), self.path)
    }
}

fn fetch_error(url: &Url, why: impl std::fmt::Display) -> Error {
    Error::backend(url.authority(), format!("GET {url}: {why}"))
}

/// `GET` a URL, following same-origin redirects.
fn get(url: &Url) -> Result<Opened> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut r = BufReader::new(connect(&url)?);
        let head = read_head(&mut r).map_err(|e| fetch_error(&url, e))?;
        let status = head.status;
        if (300..400).contains(&status) {
            let loc = head
                .header("location")
                .ok_or_else(|| fetch_error(&url, format!("{status} without Location")))?;
            let next = if loc.starts_with('/') {
                Url { path: loc.to_owned(), ..url.clone() }
            } else {
                Url::parse(loc)?
            };
            if next.origin() != url.origin() {
                return Err(Error::invalid(
                    "url",
                    format!("{url} redirects to {next}, another server or scheme: not followed"),
                ));
            }
            url = next;
            continue;
        }
        if status != 200 {
            return Err(fetch_error(&url, format!("HTTP {status} {}", head.reason)));
        }
        let chunked = head.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let length = match head.header("content-length") {
            Some(v) if !chunked => {
                Some(v.parse::<u64>().map_err(|_| fetch_error(&url, format!("bad Content-Length {v:?}")))?)
            }
            _ => None,
        };
        let reader: Box<dyn Read + Send> = if chunked {
            Box::new(Chunked { inner: r, left: 0, done: false })
        } else if let Some(n) = length {
            Box::new(Exact { inner: r.take(n), left: n })
        } else {
            Box::new(r)
        };
        return Ok(Opened { reader, length });
    }
    Err(Error::invalid("url", format!("{url}: more than {MAX_REDIRECTS} redirects")))
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connect(url: &Url) -> Result<Box<dyn Stream>> {
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| fetch_error(url, format!("resolve: {e}")))?
        .next()
        .ok_or_else(|| fetch_error(url, "no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| fetch_error(url, e))?;
    tcp.set_read_timeout(Some(READ_TIMEOUT)).ok();
    tcp.set_write_timeout(Some(READ_TIMEOUT)).ok();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ovm/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    );
    let mut s: Box<dyn Stream> = if url.tls {
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| Error::invalid("url", format!("{}: {e}", url.host)))?;
        let conn = rustls::ClientConnection::new(tls_config()?, name).map_err(|e| fetch_error(url, e))?;
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    s.write_all(request.as_bytes()).and_then(|_| s.flush()).map_err(|e| fetch_error(url, e))?;
    Ok(s)
}

/// The client configuration for HTTPS: the operating system's trusted roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<std::result::Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err("no trusted root certificates on this machine".to_owned());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|message| Error::Internal { message: format!("HTTPS: {message}") })
}

struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn bad(m: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.into())
}

/// One line of at most the head's remaining budget, without its line end.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.by_ref().take(*budget as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(bad("the connection closed in the response head"));
    }
    if n > *budget {
        return Err(bad(format!("response head over {MAX_HEAD} bytes")));
    }
    *budget -= n;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("response head is not UTF-8"))
}

fn read_head(r: &mut impl BufRead) -> io::Result<Head> {
    let mut budget = MAX_HEAD;
    let first = read_line(r, &mut budget)?;
    let mut parts = first.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1 status line: {first:?}")));
    }
    let status = parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| bad("bad status"))?;
    let reason = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut budget)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(Head { status, reason, headers })
}

/// A body of a known length: ending early is an error, not a short file.
struct Exact<R> {
    inner: io::Take<R>,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the server closed the connection {} bytes before the end", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A chunked body.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut budget = 1024;
            let line = read_line(&mut self.inner, &mut budget)?;
            let size = line.split(';').next().unwrap_or("").trim();
            self.left = u64::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            if self.left == 0 {
                // Trailers, then the end.
                let mut budget = MAX_HEAD;
                while !read_line(&mut self.inner, &mut budget)?.is_empty() {}
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection in a chunk",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut budget = 2;
            if !read_line(&mut self.inner, &mut budget)?.is_empty() {
                return Err(bad("no line end after a chunk"));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serve each response in turn, one per connection, on a loopback port.
    fn serve(responses: Vec<Vec<u8>>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for resp in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&resp);
            }
        });
        port
    }

    fn read_all(src: &Source) -> Result<Vec<u8>> {
        let mut o = src.open()?;
        let mut v = Vec::new();
        o.reader.read_to_end(&mut v).map_err(|e| Error::invalid("source", e.to_string()))?;
        Ok(v)
    }

    #[test]
    fn urls_and_paths() {
        let u = Url::parse("https://[::1]:8443/a/b.ova?x=1#f").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "::1", 8443, "/a/b.ova?x=1"));
        assert_eq!(Url::parse("http://h").unwrap().path, "/");
        for bad in ["ftp://h/x", "http://u:p@h/x", "http://h:0/", "http:///x", "http://h/a b"] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
        assert!(Source::parse("relative/file.iso").is_err());
        let s = Source::parse("http://h/dir/a.ovf").unwrap();
        assert_eq!(s.sibling("disk1.img").unwrap().to_string(), "http://h/dir/disk1.img");
        assert!(s.sibling("../etc/passwd").is_err());
        assert!(s.sibling("http://elsewhere/x").is_err());
        assert_eq!(Source::parse("/x/a.ovf").unwrap().sibling("d.img").unwrap().to_string(), "/x/d.img");
    }

    #[test]
    fn bodies_by_length_and_chunks() {
        let port = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
                .to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
        ]);
        let src = Source::parse(&format!("http://127.0.0.1:{port}/f")).unwrap();
        assert_eq!(src.open().unwrap().length, Some(5));
        assert_eq!(read_all(&src).unwrap(), b"abcde");
        let e = read_all(&src).unwrap_err();
        assert!(e.to_string().contains("before the end"), "{e}");
    }

    #[test]
    fn redirects_stay_on_the_same_server() {
        let port = serve(vec![
            b"HTTP/1.1 302 Found\r\nLocation: /real\r\nContent-Length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            b"HTTP/1.1 301 Moved\r\nLocation: http://198.51.100.7/x\r\n\r\n".to_vec(),
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ]);
        let src = Source::parse(&format!("http://127.0.0.1:{port}/f")).unwrap();
        assert_eq!(read_all(&src).unwrap(), b"ok");
        let e = src.open().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("198.51.100.7"), "{e}");
        let e = src.open().unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
    }

    #[test]
    fn a_huge_head_is_refused() {
        let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..5000 {
            resp.extend_from_slice(format!("X-Junk-{i}: {}\r\n", "y".repeat(20)).as_bytes());
        }
        let port = serve(vec![resp]);
        let e = Source::parse(&format!("http://127.0.0.1:{port}/f")).unwrap().open().unwrap_err();
        assert!(e.to_string().contains("head over"), "{e}");
    }
}
