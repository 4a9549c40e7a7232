//! OVF manifests (the `.mf` file): one digest per file of the package, and a hasher to check them.
//!
//! A line reads `SHA256(disk1.vmdk)= 0123...` (SHA1 and SHA512 likewise; spaces around `=` vary).
//! A manifest is at most 1 MiB and 10 000 lines, and names each file once.

use std::collections::HashSet;

use crate::{Error, Result};

/// Largest manifest accepted, bytes.
pub const MAX_MANIFEST: usize = 1024 * 1024;
const MAX_LINES: usize = 10_000;

/// A digest algorithm a manifest may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    /// SHA-1 (OVF 1.x).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl DigestAlg {
    fn hex_len(self) -> usize {
        match self {
            DigestAlg::Sha1 => 40,
            DigestAlg::Sha256 => 64,
            DigestAlg::Sha512 => 128,
        }
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            DigestAlg::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            DigestAlg::Sha256 => &ring::digest::SHA256,
            DigestAlg::Sha512 => &ring::digest::SHA512,
        }
    }
}

/// A digest from a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The algorithm.
    pub alg: DigestAlg,
    /// The digest in lower-case hexadecimal.
    pub hex: String,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Each file named and its digest, in the manifest's order.
    pub entries: Vec<(String, Digest)>,
}

impl Manifest {
    /// The digest given for `file`, if any.
    pub fn digest(&self, file: &str) -> Option<&Digest> {
        self.entries.iter().find(|(f, _)| f == file).map(|(_, d)| d)
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::invalid("manifest", reason)
}

/// Parses a manifest. Blank lines are skipped; any other line must be a digest line.
pub fn parse(text: &str) -> Result<Manifest> {
    if text.len() > MAX_MANIFEST {
        return Err(bad(format!("the manifest is larger than {MAX_MANIFEST} bytes")));
    }
    let mut manifest = Manifest::default();
    let mut seen = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if n >= MAX_LINES {
            return Err(bad(format!("the manifest has more than {MAX_LINES} lines")));
        }
        if line.trim().is_empty() {
            continue;
        }
        let (file, digest) = parse_line(line).map_err(|why| bad(format!("line {}: {why}", n + 1)))?;
        if !seen.insert(file.clone()) {
            return Err(bad(format!("{file:?} is listed twice")));
        }
        manifest.entries.push((file, digest));
    }
    Ok(manifest)
}

fn parse_line(line: &str) -> std::result::Result<(String, Digest), String> {
    let line = line.trim();
    let open = line.find('(').ok_or("not of the form ALG(file)= digest")?;
    let alg = match line[..open].trim() {
        "SHA1" => DigestAlg::Sha1,
        "SHA256" => DigestAlg::Sha256,
        "SHA512" => DigestAlg::Sha512,
        other => return Err(format!("unknown digest algorithm {other:?}")),
    };
    let close = line.rfind(')').filter(|&c| c > open).ok_or("no ')' after the file name")?;
    let file = &line[open + 1..close];
    if file.is_empty() || file.chars().any(char::is_control) {
        return Err(format!("bad file name {file:?}"));
    }
    let rest = line[close + 1..].trim_start();
    let hex = rest.strip_prefix('=').ok_or("no '=' after the file name")?.trim();
    if hex.len() != alg.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{hex:?} is not a {alg:?} digest"));
    }
    Ok((file.to_string(), Digest { alg, hex: hex.to_ascii_lowercase() }))
}

/// Computes a digest incrementally, for checking files against a manifest.
pub struct Hasher {
    context: ring::digest::Context,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("algorithm", self.context.algorithm()).finish()
    }
}

impl Hasher {
    /// A hasher for `alg`.
    pub fn new(alg: DigestAlg) -> Hasher {
        Hasher { context: ring::digest::Context::new(alg.ring()) }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.context.update(data);
    }

    /// The digest of everything added, in lower-case hexadecimal.
    pub fn finish(self) -> String {
        use std::fmt::Write;
        self.context.finish().as_ref().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1_ABC: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";
    const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn refused(text: &str, needle: &str) {
        match parse(text) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "manifest");
                assert!(reason.contains(needle), "{reason:?} should mention {needle:?}");
            }
            other => panic!("expected a refusal mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_every_algorithm_and_spacing() {
        let sha512 = "A".repeat(128);
        let text = format!(
            "SHA1(pkg.ovf)= {SHA1_ABC}\r\n\nSHA256 (disk 1.vmdk) = {}\nSHA512(x.iso)={sha512}\n",
            SHA256_ABC.to_uppercase()
        );
        let m = parse(&text).unwrap();
        assert_eq!(m.entries.len(), 3);
        assert_eq!(m.entries[0], ("pkg.ovf".into(), Digest { alg: DigestAlg::Sha1, hex: SHA1_ABC.into() }));
        assert_eq!(m.digest("disk 1.vmdk").unwrap().hex, SHA256_ABC);
        assert_eq!(m.digest("x.iso").unwrap(), &Digest { alg: DigestAlg::Sha512, hex: "a".repeat(128) });
        assert!(m.digest("other").is_none());
    }

    #[test]
    fn malformed_and_oversized_manifests_are_refused() {
        refused(&format!("MD5(a)= {SHA1_ABC}"), "unknown digest algorithm");
        refused(&format!("SHA1(a) {SHA1_ABC}"), "no '='");
        refused("SHA1(a)= abc", "not a Sha1 digest");
        refused(&format!("SHA256(a)= {SHA1_ABC}"), "not a Sha256 digest");
        refused(&format!("SHA1()= {SHA1_ABC}"), "bad file name");
        refused(&format!("SHA1 a= {SHA1_ABC}"), "not of the form");
        refused(&format!("SHA1(a)= {SHA1_ABC}\nSHA1(a)= {SHA1_ABC}"), "listed twice");
        refused(&"\n".repeat(MAX_LINES + 1), "more than 10000 lines");
        refused(&" ".repeat(MAX_MANIFEST + 1), "larger than");
    }

    #[test]
    fn hasher_matches_known_digests() {
        let mut h = Hasher::new(DigestAlg::Sha1);
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), SHA1_ABC);
        let mut h = Hasher::new(DigestAlg::Sha256);
        h.update(b"abc");
        assert_eq!(h.finish(), SHA256_ABC);
        let h = Hasher::new(DigestAlg::Sha512);
        assert!(h.finish().starts_with("cf83e1357eefb8bdf1542850d66d8007"));
    }
}
