//! A streaming reader of tar archives (plain or gzip-compressed) that validates every header.
//!
//! It reads POSIX ustar, GNU long names (`L` entries) and PAX extended headers (`path`, `size`),
//! and hands each regular file to a callback with a reader limited to exactly its data. Anything
//! that could escape the extraction directory or surprise its reader is refused: absolute paths,
//! `..`, links, devices, FIFOs, sparse files, duplicates, and malformed or truncated headers.

use std::collections::HashSet;
use std::io::{self, Read};

use crate::{Error, Result};

const BLOCK: usize = 512;
/// Largest PAX extended header or GNU long name accepted, bytes.
const MAX_META: u64 = 64 * 1024;
/// Deepest path accepted, in components.
const MAX_DEPTH: usize = 32;

/// Limits applied while reading an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarLimits {
    /// Most entries (files and directories) accepted.
    pub max_entries: usize,
    /// Longest path accepted, bytes.
    pub max_path: usize,
    /// Largest file accepted, bytes.
    pub max_file_size: u64,
}

impl Default for TarLimits {
    /// 10 000 entries, paths of 1024 bytes, files of 4 TiB.
    fn default() -> Self {
        TarLimits { max_entries: 10_000, max_path: 1024, max_file_size: 1 << 42 }
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// One entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Normalised relative path: components joined with `/`, without `.` or empty components.
    pub path: String,
    /// Size of the data, bytes (0 for a directory).
    pub size: u64,
    /// File or directory.
    pub kind: TarKind,
}

/// What an archive held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TarSummary {
    /// Number of entries (files and directories).
    pub entries: usize,
    /// Total bytes of file data.
    pub bytes: u64,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::invalid("archive", reason)
}

fn truncated(what: &str) -> Error {
    bad(format!("the archive is truncated ({what})"))
}

fn io_error(e: &io::Error, what: &str) -> Error {
    // The reader's own typed error (an abort, a failed download) is passed on as it is.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return inner.clone();
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        truncated(what)
    } else {
        bad(format!("cannot read {what}: {e}"))
    }
}

/// Reads every entry of a tar archive from `r`, calling `f` for each file and directory in order.
///
/// gzip compression is detected by its magic bytes. `f` gets each file with a reader limited to
/// its data (a directory with an empty reader); whatever it leaves unread is skipped. An error
/// from `f` stops the walk and is returned as is, unless the archive itself was found truncated
/// or unreadable meanwhile, which is reported instead.
pub fn for_each_entry<R: Read>(
    mut r: R,
    limits: &TarLimits,
    f: impl FnMut(&TarEntry, &mut dyn Read) -> Result<()>,
) -> Result<TarSummary> {
    let mut magic = [0u8; 2];
    let n = read_full(&mut r, &mut magic).map_err(|e| io_error(&e, "the archive"))?;
    let head = io::Cursor::new(magic[..n].to_vec()).chain(r);
    if n == 2 && magic == [0x1f, 0x8b] {
        walk(flate2::read::MultiGzDecoder::new(head), limits, f)
    } else {
        walk(head, limits, f)
    }
}

/// Reads until `buf` is full or EOF; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Metadata carried by PAX and GNU headers to the next entry.
#[derive(Default)]
struct Pending {
    path: Option<String>,
    size: Option<u64>,
    long_name: Option<String>,
}

fn walk<R: Read>(
    mut r: R,
    limits: &TarLimits,
    mut f: impl FnMut(&TarEntry, &mut dyn Read) -> Result<()>,
) -> Result<TarSummary> {
    let mut summary = TarSummary::default();
    let mut seen = HashSet::new();
    let mut pending = Pending::default();
    let mut block = [0u8; BLOCK];
    let mut headers = 0usize;
    loop {
        if !read_header(&mut r, &mut block, &pending)? {
            return Ok(summary);
        }
        if block.iter().all(|&b| b == 0) {
            end_of_archive(&mut r, &mut block, &pending)?;
            return Ok(summary);
        }
        let header = Header::parse(&block)?;
        // Metadata headers count too: an endless run of them is refused like too many entries.
        headers += 1;
        if headers > limits.max_entries.saturating_mul(2) {
            return Err(bad(format!("more than {} headers", limits.max_entries.saturating_mul(2))));
        }
        let Some(kind) = header.kind(&mut r, &mut pending)? else { continue };
        let entry = make_entry(&header, kind, std::mem::take(&mut pending), limits)?;
        if summary.entries >= limits.max_entries {
            return Err(bad(format!("more than {} entries", limits.max_entries)));
        }
        if !seen.insert(entry.path.clone()) {
            return Err(bad(format!("{:?} appears twice", entry.path)));
        }
        summary.entries += 1;
        summary.bytes = summary.bytes.saturating_add(entry.size);
        pass_entry(&mut r, &entry, &mut f)?;
    }
}

/// Reads the next header block. `false` at a clean end of input between entries.
fn read_header<R: Read>(r: &mut R, block: &mut [u8; BLOCK], pending: &Pending) -> Result<bool> {
    let n = read_full(r, block).map_err(|e| io_error(&e, "a header"))?;
    let dangling = pending.path.is_some() || pending.size.is_some() || pending.long_name.is_some();
    match n {
        0 if dangling => Err(truncated("an extended header is not followed by its entry")),
        0 => Ok(false),
        BLOCK => Ok(true),
        _ => Err(truncated("end of input inside a header")),
    }
}

/// After one zero block: a second zero block or the end of input ends the archive.
fn end_of_archive<R: Read>(r: &mut R, block: &mut [u8; BLOCK], pending: &Pending) -> Result<()> {
    if pending.path.is_some() || pending.size.is_some() || pending.long_name.is_some() {
        return Err(truncated("an extended header is not followed by its entry"));
    }
    let n = read_full(r, block).map_err(|e| io_error(&e, "the end of the archive"))?;
    if n == 0 || (n == BLOCK && block.iter().all(|&b| b == 0)) {
        Ok(())
    } else if n < BLOCK {
        Err(truncated("end of input inside the end-of-archive marker"))
    } else {
        Err(bad("a zero block inside the archive is followed by more entries"))
    }
}

/// The fields of one 512-byte header this reader uses.
struct Header {
    name: String,
    size: u64,
    typeflag: u8,
}

impl Header {
    fn parse(block: &[u8; BLOCK]) -> Result<Header> {
        check_checksum(block)?;
        let size = parse_number(&block[124..136])
            .ok_or_else(|| bad(format!("the size field of {:?} is malformed", raw_name(block))))?;
        Ok(Header { name: raw_name(block), size, typeflag: block[156] })
    }

    /// Consumes PAX and GNU metadata entries (returning `None`) or says what the entry is.
    fn kind<R: Read>(&self, r: &mut R, pending: &mut Pending) -> Result<Option<TarKind>> {
        let refuse = |what: &str| Err(bad(format!("{:?} is {what}, which is not accepted", self.name)));
        match self.typeflag {
            b'0' | 0 | b'7' => Ok(Some(TarKind::File)),
            b'5' => Ok(Some(TarKind::Dir)),
            b'x' => {
                let data = read_meta(r, self.size, &self.name)?;
                parse_pax(&data, pending)?;
                Ok(None)
            }
            b'g' => read_meta(r, self.size, &self.name).map(|_| None),
            b'L' => {
                let data = read_meta(r, self.size, &self.name)?;
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                let name = String::from_utf8(data[..end].to_vec())
                    .map_err(|_| bad("a GNU long name is not UTF-8"))?;
                pending.long_name = Some(name);
                Ok(None)
            }
            b'1' | b'K' => refuse("a hard link"),
            b'2' => refuse("a symbolic link"),
            b'3' => refuse("a character device"),
            b'4' => refuse("a block device"),
            b'6' => refuse("a FIFO"),
            b'S' => refuse("a GNU sparse file"),
            t => refuse(&format!("of entry type {:?}", char::from(t))),
        }
    }
}

/// The ustar name (with its prefix when the header is POSIX ustar), lossily decoded for messages.
fn raw_name(block: &[u8; BLOCK]) -> String {
    let field = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    let name = field(&block[0..100]);
    if &block[257..263] == b"ustar\0" && block[345] != 0 {
        format!("{}/{}", field(&block[345..500]), name)
    } else {
        name
    }
}

fn check_checksum(block: &[u8; BLOCK]) -> Result<()> {
    let stored = parse_number(&block[148..156]);
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(b) })
        .sum();
    if stored == Some(sum) {
        Ok(())
    } else {
        Err(bad(format!("the header of {:?} has a bad checksum", raw_name(block))))
    }
}

/// Parses an octal numeric field (space or NUL terminated) or a GNU base-256 one.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return None;
        }
        let mut v = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let start = field.iter().position(|&b| b != b' ')?;
    let digits = &field[start..];
    let end = digits.iter().position(|&b| b == 0 || b == b' ').unwrap_or(digits.len());
    if end == 0 || digits[end..].iter().any(|&b| b != 0 && b != b' ') {
        return None;
    }
    digits[..end].iter().try_fold(0u64, |v, &b| {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v.checked_mul(8)?.checked_add(u64::from(b - b'0'))
    })
}

/// Reads the data of a metadata entry (PAX header, GNU long name) and its padding.
fn read_meta<R: Read>(r: &mut R, size: u64, name: &str) -> Result<Vec<u8>> {
    if size > MAX_META {
        return Err(bad(format!("the extended header {name:?} is larger than {MAX_META} bytes")));
    }
    let len = size as usize + padding(size) as usize;
    let mut data = vec![0u8; len];
    if read_full(r, &mut data).map_err(|e| io_error(&e, "an extended header"))? != len {
        return Err(truncated("end of input inside an extended header"));
    }
    data.truncate(size as usize);
    Ok(data)
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Parses PAX records `LEN KEY=VALUE\n`, keeping `path` and `size`; sparse files are refused.
fn parse_pax(mut data: &[u8], pending: &mut Pending) -> Result<()> {
    let malformed = || bad("a PAX extended header is malformed");
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(malformed)?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(malformed());
        }
        let record = &data[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(malformed)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let text = || String::from_utf8(value.to_vec()).map_err(|_| bad("a PAX path is not UTF-8"));
        match key {
            b"path" => pending.path = Some(text()?),
            b"size" => {
                let s = std::str::from_utf8(value).ok().filter(|s| s.bytes().all(|b| b.is_ascii_digit()));
                let size = s.and_then(|s| s.parse().ok());
                pending.size = Some(size.ok_or_else(|| bad("a PAX size is malformed"))?);
            }
            k if k.starts_with(b"GNU.sparse.") => return Err(bad("GNU sparse files are not accepted")),
            _ => {}
        }
        data = &data[len..];
    }
    Ok(())
}

fn make_entry(header: &Header, kind: TarKind, pending: Pending, limits: &TarLimits) -> Result<TarEntry> {
    let raw = pending.path.or(pending.long_name).unwrap_or_else(|| header.name.clone());
    let path = normalise(&raw, limits)?;
    let size = pending.size.unwrap_or(header.size);
    if size > limits.max_file_size {
        return Err(bad(format!("{path:?} is larger than {} bytes", limits.max_file_size)));
    }
    if kind == TarKind::Dir && size != 0 {
        return Err(bad(format!("the directory {path:?} has data")));
    }
    Ok(TarEntry { path, size, kind })
}

/// Checks a path and joins its components with `/`, without `.` and empty components.
pub(crate) fn normalise(raw: &str, limits: &TarLimits) -> Result<String> {
    let refuse = |why: &str| Err(bad(format!("the path {raw:?} {why}")));
    if raw.len() > limits.max_path {
        return refuse(&format!("is longer than {} bytes", limits.max_path));
    }
    if raw.chars().any(char::is_control) {
        return refuse("contains a NUL or control character");
    }
    if raw.starts_with('/') {
        return refuse("is absolute");
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return refuse("contains '..'"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return refuse("is empty");
    }
    if parts.len() > MAX_DEPTH {
        return refuse(&format!("is deeper than {MAX_DEPTH} components"));
    }
    Ok(parts.join("/"))
}

/// A reader of one entry's data that records why it stopped early.
struct EntryReader<'a, R> {
    inner: &'a mut R,
    remaining: u64,
    failure: Option<io::Error>,
}

impl<R: Read> Read for EntryReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let result = match self.inner.read(&mut buf[..want]) {
            Ok(0) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            other => other,
        };
        match result {
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failure = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

/// Hands the entry to the callback, then skips what it left unread and the padding.
fn pass_entry<R: Read>(
    r: &mut R,
    entry: &TarEntry,
    f: &mut impl FnMut(&TarEntry, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut reader = EntryReader { inner: r, remaining: entry.size, failure: None };
    let outcome = f(entry, &mut reader);
    if let Some(e) = reader.failure.take() {
        return Err(io_error(&e, &format!("the data of {:?}", entry.path)));
    }
    // A refusal stops the walk at once: the rest of the input is not read (it may never end).
    outcome?;
    let _ = io::copy(&mut reader, &mut io::sink());
    if let Some(e) = reader.failure {
        return Err(io_error(&e, &format!("the data of {:?}", entry.path)));
    }
    let pad = padding(entry.size) as usize;
    let mut buf = [0u8; BLOCK];
    if read_full(r, &mut buf[..pad]).map_err(|e| io_error(&e, "padding"))? != pad {
        return Err(truncated(&format!("end of input in the padding of {:?}", entry.path)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds one ustar header block.
    pub(crate) fn header(name: &str, size: u64, typeflag: u8) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0000000");
        b[116..123].copy_from_slice(b"0000000");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"00000000000");
        b[156] = typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        seal(&mut b);
        b
    }

    /// Writes the checksum of a header block.
    fn seal(b: &mut [u8]) {
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&c| u64::from(c)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }

    /// A header followed by data and padding.
    pub(crate) fn entry(name: &str, data: &[u8], typeflag: u8) -> Vec<u8> {
        let mut v = header(name, data.len() as u64, typeflag);
        v.extend_from_slice(data);
        v.resize(v.len() + padding(data.len() as u64) as usize, 0);
        v
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        entry(name, data, b'0')
    }

    fn end(mut v: Vec<u8>) -> Vec<u8> {
        v.resize(v.len() + 2 * BLOCK, 0);
        v
    }

    fn pax_record(key: &str, value: &str) -> String {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    }

    fn collect(bytes: &[u8]) -> Result<Vec<(TarEntry, Vec<u8>)>> {
        let mut out = Vec::new();
        for_each_entry(bytes, &TarLimits::default(), |e, r| {
            let mut data = Vec::new();
            r.read_to_end(&mut data).map_err(|e| Error::invalid("test", e.to_string()))?;
            out.push((e.clone(), data));
            Ok(())
        })?;
        Ok(out)
    }

    fn refused(bytes: &[u8], needle: &str) {
        match collect(bytes) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "archive");
                assert!(reason.contains(needle), "{reason:?} should mention {needle:?}");
            }
            other => panic!("expected a refusal mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn three_files_round_trip_with_exact_bytes() {
        let big: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
        let mut v = entry("pkg/", b"", b'5');
        v.extend(file("pkg/a.ovf", b"<Envelope/>"));
        v.extend(file("./pkg//disk1.img", &big));
        v.extend(file("pkg/empty", b""));
        let got = collect(&end(v)).unwrap();
        let names: Vec<_> = got.iter().map(|(e, _)| (e.path.as_str(), e.kind, e.size)).collect();
        assert_eq!(
            names,
            [
                ("pkg", TarKind::Dir, 0),
                ("pkg/a.ovf", TarKind::File, 11),
                ("pkg/disk1.img", TarKind::File, 1500),
                ("pkg/empty", TarKind::File, 0)
            ]
        );
        assert_eq!(got[1].1, b"<Envelope/>");
        assert_eq!(got[2].1, big);
        assert!(got[3].1.is_empty());
    }

    #[test]
    fn summary_counts_entries_and_bytes_and_unread_data_is_skipped() {
        let mut v = file("a", &[1; 700]);
        v.extend(file("b", &[2; 10]));
        let mut seen = Vec::new();
        let s = for_each_entry(&end(v)[..], &TarLimits::default(), |e, r| {
            let mut one = [0u8; 1];
            r.read_exact(&mut one).unwrap();
            seen.push((e.path.clone(), one[0]));
            Ok(())
        })
        .unwrap();
        assert_eq!(s, TarSummary { entries: 2, bytes: 710 });
        assert_eq!(seen, [("a".to_string(), 1), ("b".to_string(), 2)]);
    }

    #[test]
    fn clean_eof_at_a_header_boundary_ends_the_archive() {
        let v = file("a", b"x");
        assert_eq!(collect(&v).unwrap().len(), 1);
        let mut one_zero = file("a", b"x");
        one_zero.resize(one_zero.len() + BLOCK, 0);
        assert_eq!(collect(&one_zero).unwrap().len(), 1);
        assert!(collect(b"").unwrap().is_empty());
    }

    #[test]
    fn gzip_is_detected() {
        use std::io::Write;
        let plain = end(file("disk.img", b"hello"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let got = collect(&gz.finish().unwrap()).unwrap();
        assert_eq!(got[0].0.path, "disk.img");
        assert_eq!(got[0].1, b"hello");
    }

    #[test]
    fn truncated_gzip_is_refused() {
        use std::io::Write;
        let plain = end(file("disk.img", &[7; 4000]));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert!(collect(&gz[..gz.len() / 2]).is_err());
    }

    #[test]
    fn pax_path_and_size() {
        let long = format!("{}/disk.img", "d".repeat(150));
        let mut records = pax_record("path", &long);
        records.push_str(&pax_record("mtime", "1.5"));
        let mut v = entry("PaxHeaders/x", records.as_bytes(), b'x');
        v.extend(file("short", b"abc"));
        let got = collect(&end(v)).unwrap();
        assert_eq!(got[0].0.path, long);
        assert_eq!(got[0].1, b"abc");

        let mut v = entry("PaxHeaders/x", pax_record("size", "3").as_bytes(), b'x');
        let mut h = header("f", 0, b'0');
        h.extend_from_slice(b"xyz");
        h.resize(2 * BLOCK, 0);
        v.extend(h);
        assert_eq!(collect(&end(v)).unwrap()[0].1, b"xyz");
    }

    #[test]
    fn gnu_long_name() {
        let long = format!("{}/file", "n".repeat(200));
        let mut name = long.clone().into_bytes();
        name.push(0);
        let mut v = entry("././@LongLink", &name, b'L');
        v.extend(file("truncated-name", b"1"));
        assert_eq!(collect(&end(v)).unwrap()[0].0.path, long);
    }

    #[test]
    fn ustar_prefix_is_joined() {
        let mut h = header("name", 1, b'0');
        h[345..351].copy_from_slice(b"prefix");
        seal(&mut h);
        h.push(b'z');
        h.resize(2 * BLOCK, 0);
        assert_eq!(collect(&end(h)).unwrap()[0].0.path, "prefix/name");
    }

    #[test]
    fn bad_paths_are_refused() {
        refused(&end(file("/etc/passwd", b"")), "is absolute");
        refused(&end(file("a/../../b", b"")), "'..'");
        refused(&end(file("..", b"")), "'..'");
        refused(&end(file("./", b"")), "is empty");
        refused(&end(file("a\u{1}b", b"")), "control character");
        let deep = vec!["d"; 33].join("/");
        refused(&end(file(&deep, b"")), "deeper than 32");
        let long = "x".repeat(1025);
        let v = entry("PaxHeaders/x", pax_record("path", &long).as_bytes(), b'x');
        refused(&end([v, file("f", b"")].concat()), "longer than 1024");
        let v = entry("PaxHeaders/x", pax_record("path", "a\0b").as_bytes(), b'x');
        refused(&end([v, file("f", b"")].concat()), "control character");
    }

    #[test]
    fn links_devices_fifos_and_sparse_files_are_refused() {
        for (t, what) in [
            (b'1', "hard link"),
            (b'2', "symbolic link"),
            (b'3', "character device"),
            (b'4', "block device"),
            (b'6', "FIFO"),
            (b'S', "sparse"),
            (b'V', "entry type"),
        ] {
            refused(&end(entry("evil", b"", t)), what);
        }
        let v = entry("PaxHeaders/x", pax_record("GNU.sparse.map", "0,1").as_bytes(), b'x');
        refused(&end([v, file("f", b"")].concat()), "sparse");
    }

    #[test]
    fn duplicates_and_too_many_entries_are_refused() {
        refused(&end([file("a", b"1"), file("./a", b"2")].concat()), "appears twice");
        let many: Vec<u8> = (0..4).flat_map(|i| file(&format!("f{i}"), b"")).collect();
        let limits = TarLimits { max_entries: 3, ..TarLimits::default() };
        let err = for_each_entry(&end(many)[..], &limits, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("more than 3 entries"), "{err}");
    }

    #[test]
    fn large_files_and_metadata_are_refused() {
        let limits = TarLimits { max_file_size: 10, ..TarLimits::default() };
        let err = for_each_entry(&end(file("big", &[0; 11]))[..], &limits, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("larger than 10 bytes"), "{err}");
        refused(&end(header("PaxHeaders/x", 64 * 1024 + 1, b'x')), "larger than 65536");
        refused(&end(header("././@LongLink", 1 << 30, b'L')), "larger than 65536");
    }

    #[test]
    fn malformed_headers_are_refused() {
        let mut h = header("a", 0, b'0');
        h[124..136].copy_from_slice(b"00000000009\0");
        seal(&mut h);
        refused(&end(h), "size field");
        let mut h = header("a", 0, b'0');
        h[0] = b'b';
        refused(&end(h), "bad checksum");
        refused(&end(entry("PaxHeaders/x", b"99 path=a\n", b'x')), "malformed");
        refused(&end(entry("dir", b"data", b'5')), "has data");
        refused(&end(entry("PaxHeaders/x", pax_record("size", "-1").as_bytes(), b'x')), "PAX size");
        let mut v = file("a", b"");
        v.resize(v.len() + BLOCK, 0);
        v.extend(file("b", b""));
        refused(&v, "zero block");
    }

    #[test]
    fn truncation_is_a_typed_error() {
        let full = end(file("a", &[5; 1000]));
        refused(&full[..300], "truncated");
        refused(&full[..BLOCK + 600], "truncated");
        refused(&full[..BLOCK + 1010], "truncated");
        let pax = entry("PaxHeaders/x", pax_record("path", "p").as_bytes(), b'x');
        refused(&pax, "truncated");
        // The callback sees an UnexpectedEof, but the walk reports the typed truncation.
        let err = for_each_entry(&full[..BLOCK + 600], &TarLimits::default(), |_, r| {
            let mut data = Vec::new();
            r.read_to_end(&mut data).map_err(|e| Error::invalid("callback", e.to_string()))?;
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, reason }
            if field == "archive" && reason.contains("truncated")),
            "{err}"
        );
    }

    #[test]
    fn callback_errors_stop_the_walk() {
        let v = end([file("a", b"1"), file("b", b"2")].concat());
        let mut calls = 0;
        let err = for_each_entry(&v[..], &TarLimits::default(), |_, _| {
            calls += 1;
            Err(Error::invalid("test", "stop"))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(err, Error::invalid("test", "stop"));
    }

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_number(b"0000012\0"), Some(10));
        assert_eq!(parse_number(b"  12 \0\0\0"), Some(10));
        assert_eq!(parse_number(b"\0\0\0\0"), None);
        assert_eq!(parse_number(b"1 2\0"), None);
        assert_eq!(parse_number(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_number(&[0xff; 12]), None);
        assert_eq!(parse_number(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
