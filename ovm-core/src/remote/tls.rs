//! The manager service over TLS on a TCP port, both ends.
//!
//! A TLS connection is bridged to the service's ordinary connection handling through a socket
//! pair: the TLS side runs on a small async runtime, the protocol side is the same code as a
//! Unix-socket client's. A TLS client is never the local superuser: it authenticates with a
//! password in its hello, or with a client certificate whose SHA-256 fingerprint is registered to a
//! user (`set_user_certificates`). The service's certificate is pinned by the client by fingerprint
//! (certificates are self-signed, as the agents'; see [`crate::agent::tls`]).

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::agent::tls::{self, Identity, SeenCert};
use crate::{Error, Result};

/// Where and as what a service listens for TLS clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    /// `ADDRESS:PORT` to listen on (port 0: any free port; see [`super::Service::tls_address`]).
    pub address: String,
    /// The service's certificate and key.
    pub identity: Identity,
}

/// How a client reaches a service over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClient {
    /// The SHA-256 fingerprint of the service's certificate (required: the certificate is
    /// self-signed, so it is pinned).
    pub pin: String,
    /// A client certificate to present (it authenticates as the user it is registered to).
    pub identity: Option<Identity>,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal { message: format!("cannot start a TLS runtime: {e}") })
}

fn io_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal { message: format!("{what}: {e}") }
}

/// A connected TLS client as the service sees it.
pub(super) struct TlsPeer {
    pub(super) address: SocketAddr,
    pub(super) certificate: Option<String>,
}

/// Listens on `listen.address`; each client that completes the handshake is handed to `admit` as
/// one end of a socket pair. Returns the bound address and the listener's thread, which ends when
/// `stop` is set.
pub(super) fn listen(
    listen: &TlsListen,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handshake_timeout: Duration,
    admit: impl Fn(UnixStream, TlsPeer) + Send + Sync + 'static,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let config = tls::server_config_optional_client_cert(&listen.identity)?;
    let listener = std::net::TcpListener::bind(&listen.address)
        .map_err(|e| Error::invalid("listen", format!("cannot listen on {}: {e}", listen.address)))?;
    let local = listener.local_addr().map_err(|e| io_err("listening", e))?;
    listener.set_nonblocking(true).map_err(|e| io_err("listening", e))?;
    let rt = runtime()?;
    let admit = Arc::new(admit);
    let thread = std::thread::Builder::new()
        .name("ovm-service-tls".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                while !stop.load(Ordering::SeqCst) {
                    let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
                    let Ok(Ok((tcp, address))) = accepted else { continue };
                    let (acceptor, admit) = (acceptor.clone(), admit.clone());
                    tokio::spawn(async move {
                        let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
                        let mut tls = match handshake {
                            Ok(Ok(t)) => t,
                            Ok(Err(e)) => return log::info!("TLS handshake with {address} failed: {e}"),
                            Err(_) => return log::info!("TLS handshake with {address} timed out"),
                        };
                        let certificate = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| tls::fingerprint(c));
                        let Ok((ours, theirs)) = UnixStream::pair() else { return };
                        let Ok(()) = ours.set_nonblocking(true) else { return };
                        let Ok(mut ours) = tokio::net::UnixStream::from_std(ours) else { return };
                        admit(theirs, TlsPeer { address, certificate });
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut ours).await;
                    });
                }
            });
        })
        .map_err(|e| io_err("cannot start the TLS listener", e))?;
    Ok((local, thread))
}

/// Connects to `host:port` over TLS, checks the service's certificate against `client.pin`, and
/// returns one end of a socket pair bridged to the connection (the bridge runs on a thread of its
/// own until either side closes).
pub(super) fn connect(address: &str, client: &TlsClient) -> Result<UnixStream> {
    let seen = Arc::new(SeenCert::default());
    let pinned = super::auth::normalize_fingerprint(&client.pin)?;
    let pin = Some(pinned.clone());
    let config = match &client.identity {
        Some(id) => tls::client_config(id, pin, seen.clone())?,
        None => tls::server_only_client_config(pin, seen.clone())?,
    };
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let rt = runtime()?;
    let tls = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| Error::Backend {
            server: address.to_owned(),
            message: format!("cannot connect: {e}"),
        })?;
        let connector = tokio_rustls::TlsConnector::from(config);
        connector.connect(tls::server_name(host), tcp).await.map_err(|e| match seen.get() {
            Some(fp) if fp != pinned => Error::PermissionDenied {
                reason: format!("the service at {address} presents certificate {fp}, not the pinned one"),
            },
            _ => Error::Backend { server: address.to_owned(), message: format!("TLS handshake: {e}") },
        })
    })?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| io_err("socket pair", e))?;
    ours.set_nonblocking(true).map_err(|e| io_err("socket pair", e))?;
    std::thread::Builder::new()
        .name("ovm-client-tls".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tls = tls;
                let Ok(mut ours) = tokio::net::UnixStream::from_std(ours) else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut ours).await;
            });
        })
        .map_err(|e| io_err("cannot start the TLS bridge", e))?;
    Ok(theirs)
}
