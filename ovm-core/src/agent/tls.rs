//! TLS for the agent protocol: self-signed identities pinned by fingerprint (no certificate
//! authority), TLS 1.3 only, mutual authentication.
//!
//! Both sides have a self-signed certificate. The manager pins the agent's certificate fingerprint
//! on first contact (discovery) and accepts only that certificate afterwards; the agent pins the
//! owning manager's client certificate when ownership is taken and accepts only that one for
//! anything but taking ownership.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = self.fingerprint().unwrap_or_else(|_| "<invalid>".into());
        f.debug_struct("Identity").field("fingerprint", &fp).finish_non_exhaustive()
    }
}

impl Identity {
    /// A new self-signed identity (ECDSA P-256) whose certificate names `common_name`.
    pub fn generate(common_name: &str) -> Result<Identity> {
        let key = rcgen::KeyPair::generate().map_err(|e| tls_err(format!("generate key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(vec![common_name.to_owned()])
            .map_err(|e| tls_err(format!("certificate parameters: {e}")))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2120, 1, 1);
        let cert = params.self_signed(&key).map_err(|e| tls_err(format!("self-sign: {e}")))?;
        Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| Error::invalid("certificate", format!("not a PEM certificate: {e}")))
    }

    fn key_der(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| Error::invalid("private key", format!("not a PEM private key: {e}")))
    }

    /// The certificate's fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> Result<String> {
        Ok(fingerprint(&self.cert_der()?))
    }

    /// Checks that the key and certificate parse and belong together.
    pub fn validate(&self) -> Result<()> {
        let key = provider()
            .key_provider
            .load_private_key(self.key_der()?)
            .map_err(|e| Error::invalid("private key", e.to_string()))?;
        let ck = rustls::sign::CertifiedKey::new(vec![self.cert_der()?], key);
        ck.keys_match().map_err(|e| Error::invalid("identity", format!("key and certificate: {e}")))
    }
}

/// `sha256:` followed by the lowercase hex SHA-256 of a certificate's DER encoding.
pub fn fingerprint(cert: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, cert);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in d.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn tls_err(message: String) -> Error {
    Error::Internal { message }
}

/// The crypto provider of every agent connection.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The agent's TLS configuration: its identity, TLS 1.3, and a client certificate required (any
/// self-signed one that proves possession of its key; the agent then decides by fingerprint).
pub fn server_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(e.to_string()))?
        .with_client_cert_verifier(Arc::new(AnyClientCert { algs: algorithms(), mandatory: true }))
        .with_single_cert(vec![identity.cert_der()?], identity.key_der()?)
        .map_err(|e| Error::invalid("identity", e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// A server configuration where a client certificate is asked for but optional (any self-signed one
/// that proves possession of its key; the server decides by fingerprint): the manager service's.
pub fn server_config_optional_client_cert(identity: &Identity) -> Result<Arc<rustls::ServerConfig>> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(e.to_string()))?
        .with_client_cert_verifier(Arc::new(AnyClientCert { algs: algorithms(), mandatory: false }))
        .with_single_cert(vec![identity.cert_der()?], identity.key_der()?)
        .map_err(|e| Error::invalid("identity", e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// What the manager saw of an agent's certificate during a handshake.
#[derive(Debug, Default)]
pub struct SeenCert(Mutex<Option<String>>);

impl SeenCert {
    /// The fingerprint seen, if a handshake got that far.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The manager's TLS configuration: its identity as the client certificate, TLS 1.3, and the
/// agent's certificate accepted only if its fingerprint is `pin` (any, recorded in `seen`, when
/// `pin` is `None`: first contact).
pub fn client_config(
    identity: &Identity,
    pin: Option<String>,
    seen: Arc<SeenCert>,
) -> Result<Arc<rustls::ClientConfig>> {
    let cfg = pinned_client(pin, seen)?
        .with_client_auth_cert(vec![identity.cert_der()?], identity.key_der()?)
        .map_err(|e| Error::invalid("identity", e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// A client configuration being built: TLS 1.3 and the server's certificate pinned (see
/// [`client_config`]).
fn pinned_client(
    pin: Option<String>,
    seen: Arc<SeenCert>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerCert { pin, seen, algs: algorithms() })))
}

/// A client configuration that checks only the server (no client certificate): TLS 1.3 and the
/// server's certificate accepted only if its fingerprint is `pin` (any, recorded in `seen`, when
/// `pin` is `None`).
pub fn server_only_client_config(
    pin: Option<String>,
    seen: Arc<SeenCert>,
) -> Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(pinned_client(pin, seen)?.with_no_client_auth()))
}

/// A server configuration without client certificates (clients authenticate otherwise).
pub fn server_config_no_client_auth(identity: &Identity) -> Result<Arc<rustls::ServerConfig>> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert_der()?], identity.key_der()?)
        .map_err(|e| Error::invalid("identity", e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// The server name to present for `host` (a DNS name or an IP address; certificates are pinned,
/// not checked against names).
pub fn server_name(host: &str) -> ServerName<'static> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("ovm-agent").expect("valid name"))
}

#[derive(Debug)]
struct AnyClientCert {
    algs: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Possession of the key is proven by the handshake signature; who may do what is decided
        // by the certificate's fingerprint after the handshake.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[derive(Debug)]
struct PinnedServerCert {
    pin: Option<String>,
    seen: Arc<SeenCert>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        *self.seen.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp.clone());
        match &self.pin {
            Some(pin) if *pin != fp => {
                Err(rustls::Error::General(format!("the peer's certificate {fp} is not the pinned {pin}")))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_valid_and_distinct() {
        let a = Identity::generate("a").unwrap();
        let b = Identity::generate("b").unwrap();
        a.validate().unwrap();
        assert_ne!(a.fingerprint().unwrap(), b.fingerprint().unwrap());
        assert!(a.fingerprint().unwrap().starts_with("sha256:"));
        assert_eq!(a.fingerprint().unwrap().len(), 7 + 64);
        let mixed = Identity { cert_pem: a.cert_pem.clone(), key_pem: b.key_pem.clone() };
        assert!(mixed.validate().is_err());
        let junk = Identity { cert_pem: "junk".into(), key_pem: "junk".into() };
        assert_eq!(junk.validate().unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}
