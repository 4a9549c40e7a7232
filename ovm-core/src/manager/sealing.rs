//! The key that encrypts the manager's secrets at rest (its private key for talking to agents).
//!
//! A manager given a [`SealingKey`] ([`crate::ManagerBuilder::sealing_key`], `ovm serve
//! --key-file`) keeps the secrets its drivers store as secrets ([`crate::driver::DriverState::put_secret`])
//! encrypted with AES-256-GCM: `sealed:v1:` then base64 of a random 96-bit nonce and the
//! ciphertext with its tag, the stored key's name as associated data (a sealed value moved to
//! another key does not open). A plain secret found when a key is given is sealed at once; a sealed
//! secret without the key, or with another key, is [`Error::PermissionDenied`].

use std::path::Path;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

/// The prefix of a sealed value.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// An AES-256 key for secrets at rest.
pub struct SealingKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey").finish_non_exhaustive()
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn bad_key(reason: impl Into<String>) -> Error {
    Error::invalid("key", reason)
}

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<SealingKey> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| bad_key("a key has 32 bytes"))?;
        Ok(SealingKey { key: LessSafeKey::new(unbound) })
    }

    /// A new random key, as 64 hexadecimal digits (what [`SealingKey::from_file`] reads).
    pub fn generate_hex() -> Result<String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Internal { message: "no random numbers for a key".into() })?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Reads a key file: 64 hexadecimal digits (surrounding white space ignored) or 32 raw bytes.
    /// The file must not be readable by group or others.
    pub fn from_file(path: &Path) -> Result<SealingKey> {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(path).map_err(|e| bad_key(format!("cannot read {}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(bad_key(format!(
                "{} is readable by group or others; make it 0600 or 0400",
                path.display()
            )));
        }
        let raw = std::fs::read(path).map_err(|e| bad_key(format!("cannot read {}: {e}", path.display())))?;
        let text = std::str::from_utf8(&raw).map(str::trim).unwrap_or_default();
        if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            let bytes: Vec<u8> =
                (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0)).collect();
            return SealingKey::from_bytes(&bytes);
        }
        if raw.len() == 32 {
            return SealingKey::from_bytes(&raw);
        }
        Err(bad_key(format!("{}: a key file holds 64 hex digits or 32 bytes", path.display())))
    }

    /// Encrypts `plain`, bound to `name`.
    pub fn seal(&self, name: &str, plain: &str) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Internal { message: "no random numbers for a nonce".into() })?;
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| Error::Internal { message: "encryption failed".into() })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED_PREFIX}{}", b64().encode(out)))
    }

    /// Decrypts a value [`SealingKey::seal`] made for `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<String> {
        let wrong = || Error::PermissionDenied {
            reason: format!("the secret {name} does not open with this key (another key, or altered)"),
        };
        let body = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(wrong)?;
        let raw = b64().decode(body).map_err(|_| wrong())?;
        if raw.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut data = rest.to_vec();
        let plain =
            self.key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut data).map_err(|_| wrong())?;
        String::from_utf8(plain.to_vec()).map_err(|_| wrong())
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn secrets_seal_and_open_only_with_their_key_and_name() {
        let hex = SealingKey::generate_hex().unwrap();
        assert_eq!(hex.len(), 64);
        let bytes: Vec<u8> =
            (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        let k = SealingKey::from_bytes(&bytes).unwrap();
        let sealed = k.seal("agent.identity", "PRIVATE KEY").unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("PRIVATE"));
        assert_ne!(k.seal("agent.identity", "PRIVATE KEY").unwrap(), sealed, "a fresh nonce each time");
        assert_eq!(k.open("agent.identity", &sealed).unwrap(), "PRIVATE KEY");
        assert_eq!(k.open("other", &sealed).unwrap_err().kind(), ErrorKind::PermissionDenied);
        let other = SealingKey::from_bytes(&[7u8; 32]).unwrap();
        assert_eq!(other.open("agent.identity", &sealed).unwrap_err().kind(), ErrorKind::PermissionDenied);
        assert_eq!(k.open("agent.identity", "sealed:v1:!!").unwrap_err().kind(), ErrorKind::PermissionDenied);
        assert_eq!(SealingKey::from_bytes(&[1u8; 16]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn key_files_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ovm-sealing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("key");
        std::fs::write(&p, format!("{}\n", SealingKey::generate_hex().unwrap())).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(SealingKey::from_file(&p).unwrap_err().kind(), ErrorKind::InvalidArgument);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        SealingKey::from_file(&p).unwrap();
        std::fs::write(&p, "short").unwrap();
        assert_eq!(SealingKey::from_file(&p).unwrap_err().kind(), ErrorKind::InvalidArgument);
        std::fs::write(&p, [9u8; 32]).unwrap();
        SealingKey::from_file(&p).unwrap();
        assert_eq!(SealingKey::from_file(&dir.join("none")).unwrap_err().kind(), ErrorKind::InvalidArgument);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
