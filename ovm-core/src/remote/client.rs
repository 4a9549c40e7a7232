//! The client side: [`RemoteManager`], a manager served by another process.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::api::{Call, ChangeStream};
use super::auth::Credentials;
use super::proto::{ClientMessage, ServiceMessage, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::agent::proto::frame::{self, FrameError};
use crate::model::Change;
use crate::sync::lock;
use crate::{Error, Result};

/// Where a manager service listens, parsed from a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAddress {
    /// `ovm+unix:///run/ovm/manager.sock`: a Unix socket.
    Unix(PathBuf),
    /// `ovm+tls://HOST:PORT`: TLS on a TCP port (see [`RemoteManager::connect_tls`]).
    Tls(String),
}

impl ServiceAddress {
    /// Whether `uri` names a manager service (`ovm+unix://…`, `ovm+tls://…`) rather than a
    /// database: what a binding's "open" checks to connect instead of opening a database.
    pub fn is_service_uri(uri: &str) -> bool {
        uri.trim_start().starts_with("ovm+")
    }

    /// Parses `ovm+unix://PATH` (the path absolute, as in `ovm+unix:///run/ovm/manager.sock`).
    pub fn parse(uri: &str) -> Result<ServiceAddress> {
        let uri = uri.trim();
        if let Some(path) = uri.strip_prefix("ovm+unix://") {
            if !path.starts_with('/') {
                return Err(Error::invalid("uri", format!("{uri:?}: the socket path must be absolute")));
            }
            return Ok(ServiceAddress::Unix(PathBuf::from(path)));
        }
        if let Some(hostport) = uri.strip_prefix("ovm+tls://") {
            let hostport = hostport.trim_end_matches('/');
            let port = hostport.rsplit_once(':').and_then(|(h, p)| (!h.is_empty()).then_some(p));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none_or(|p| p == 0) {
                return Err(Error::invalid("uri", format!("{uri:?}: a TLS address is ovm+tls://HOST:PORT")));
            }
            return Ok(ServiceAddress::Tls(hostport.to_owned()));
        }
        Err(Error::invalid(
            "uri",
            format!("{uri:?} is not a manager service address (ovm+unix:///PATH or ovm+tls://HOST:PORT)"),
        ))
    }
}

type Pending = Mutex<HashMap<u64, mpsc::Sender<Result<serde_json::Value>>>>;
type Subscribers = Mutex<HashMap<u64, mpsc::Sender<Result<Change>>>>;

/// What the connection's reader thread shares with callers.
#[derive(Default)]
struct Routes {
    pending: Pending,
    subscribers: Subscribers,
    closed: AtomicBool,
}

struct Connection {
    writer: Mutex<UnixStream>,
    routes: Arc<Routes>,
    next_id: AtomicU64,
    manager_id: String,
    version: u32,
    address: ServiceAddress,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
    }
}

/// A manager served by `ovm serve` (or any [`super::Service`]), reached over a connection.
///
/// It implements [`super::ManagerApi`], the same trait as [`crate::Manager`]: every call is sent to
/// the service and answered there, jobs included (a job method returns the submitted job's record;
/// [`super::ManagerApi::wait_job_for`] waits for it on the service, [`super::ManagerApi::abort_job`]
/// aborts it), and [`RemoteManager::subscribe`] streams the change feed over the connection. Errors
/// are the service's typed errors; a lost connection is [`Error::Closed`]. Cheap to clone: clones
/// share the connection, and calls from several threads run concurrently.
#[derive(Clone)]
pub struct RemoteManager {
    conn: Arc<Connection>,
}

impl std::fmt::Debug for RemoteManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteManager")
            .field("address", &self.conn.address)
            .field("manager_id", &self.conn.manager_id)
            .finish_non_exhaustive()
    }
}

fn lost(e: impl std::fmt::Display) -> Error {
    log::debug!("manager service connection: {e}");
    Error::Closed
}

impl RemoteManager {
    /// Connects to the service at `uri` (see [`ServiceAddress::parse`]) and says hello, without
    /// credentials: the service admits its own user and root as the local superuser.
    pub fn connect(uri: &str) -> Result<RemoteManager> {
        Self::connect_as(uri, None)
    }

    /// Connects to the service at `uri` as the user `credentials` name; a wrong password, or a
    /// call above the user's role, is [`Error::PermissionDenied`].
    pub fn connect_with(uri: &str, credentials: Credentials) -> Result<RemoteManager> {
        Self::connect_as(uri, Some(credentials))
    }

    /// Connects with credentials, or without.
    pub fn connect_as(uri: &str, credentials: Option<Credentials>) -> Result<RemoteManager> {
        let address = ServiceAddress::parse(uri)?;
        let path = match &address {
            ServiceAddress::Unix(path) => path,
            ServiceAddress::Tls(_) => return Err(Error::invalid(
                "uri",
                "a TLS service needs its certificate's fingerprint: use connect_tls (ovm: --tls-fingerprint)",
            )),
        };
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                Error::PermissionDenied { reason: format!("cannot connect to {}: {e}", path.display()) }
            }
            _ => {
                Error::Backend { server: path.display().to_string(), message: format!("cannot connect: {e}") }
            }
        })?;
        Self::handshake(stream, address, credentials)
    }

    /// Connects to the service at `ovm+tls://HOST:PORT`, whose certificate must have the fingerprint
    /// `tls.pin`; the client authenticates with `credentials`, or with `tls.identity`'s certificate
    /// if it is registered to a user. Either refused is [`Error::PermissionDenied`].
    pub fn connect_tls(
        uri: &str,
        tls: &super::TlsClient,
        credentials: Option<Credentials>,
    ) -> Result<RemoteManager> {
        let address = ServiceAddress::parse(uri)?;
        let ServiceAddress::Tls(hostport) = &address else {
            return Err(Error::invalid("uri", format!("{uri:?} is not a TLS address (ovm+tls://HOST:PORT)")));
        };
        let stream = super::tls::connect(hostport, tls)?;
        Self::handshake(stream, address, credentials)
    }

    fn handshake(
        mut stream: UnixStream,
        address: ServiceAddress,
        credentials: Option<Credentials>,
    ) -> Result<RemoteManager> {
        let hello = ClientMessage::Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            client: format!("ovm {}", env!("CARGO_PKG_VERSION")),
            credentials,
        };
        frame::write_frame_blocking(&mut stream, &frame::encode(&hello)?).map_err(lost)?;
        let mut buf = Vec::new();
        frame::read_frame_blocking(&mut stream, &mut buf).map_err(lost)?;
        let (version, manager_id) = match frame::decode::<ServiceMessage>(&buf) {
            Ok(ServiceMessage::Welcome { version, manager_id }) => (version, manager_id),
            Ok(ServiceMessage::Refused { error }) => return Err(error),
            Ok(other) => {
                return Err(Error::Internal { message: format!("the service answered hello with {other:?}") })
            }
            Err(e) => return Err(Error::Internal { message: format!("the service's welcome: {e}") }),
        };
        let routes = Arc::new(Routes::default());
        let mut reader = stream.try_clone().map_err(lost)?;
        let r = routes.clone();
        std::thread::Builder::new()
            .name("ovm-client".into())
            .spawn(move || read_loop(&mut reader, &r))
            .map_err(|e| Error::Internal { message: format!("cannot start the connection's reader: {e}") })?;
        let conn = Connection {
            writer: Mutex::new(stream),
            routes,
            next_id: AtomicU64::new(1),
            manager_id,
            version,
            address,
        };
        Ok(RemoteManager { conn: Arc::new(conn) })
    }

    /// The protocol version spoken on this connection.
    pub fn protocol_version(&self) -> u32 {
        self.conn.version
    }

    /// Where the service listens.
    pub fn address(&self) -> &ServiceAddress {
        &self.conn.address
    }

    fn send(&self, msg: &ClientMessage) -> Result<()> {
        let frame = frame::encode(msg)?;
        let mut w = lock(&self.conn.writer);
        frame::write_frame_blocking(&mut *w, &frame).map_err(lost)
    }

    /// Sends one call and waits for its answer.
    pub(crate) fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let id = self.conn.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        lock(&self.conn.routes.pending).insert(id, tx);
        if self.conn.routes.closed.load(Ordering::SeqCst) {
            lock(&self.conn.routes.pending).remove(&id);
            return Err(Error::Closed);
        }
        let method = call.method();
        if let Err(e) = self.send(&ClientMessage::Request { id, call: Box::new(call) }) {
            lock(&self.conn.routes.pending).remove(&id);
            return Err(e);
        }
        let value = rx.recv().map_err(lost)??;
        serde_json::from_value(value).map_err(|e| Error::Internal {
            message: format!("the service's answer to {method} does not decode: {e}"),
        })
    }

    /// Subscribe to the service's change feed (see [`crate::Manager::subscribe`]): the changes are
    /// streamed over this connection.
    pub fn subscribe(&self, from: Option<u64>) -> Result<RemoteSubscription> {
        let id = self.conn.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        let (ctx, crx) = mpsc::channel();
        lock(&self.conn.routes.pending).insert(id, tx);
        lock(&self.conn.routes.subscribers).insert(id, ctx);
        let unroute = || {
            lock(&self.conn.routes.pending).remove(&id);
            lock(&self.conn.routes.subscribers).remove(&id);
        };
        if self.conn.routes.closed.load(Ordering::SeqCst) {
            unroute();
            return Err(Error::Closed);
        }
        let answer =
            self.send(&ClientMessage::Subscribe { id, from }).and_then(|()| rx.recv().map_err(lost)?);
        if let Err(e) = answer {
            unroute();
            return Err(e);
        }
        Ok(RemoteSubscription { id, rx: crx, client: self.clone(), ended: false })
    }
}

fn read_loop(reader: &mut UnixStream, routes: &Routes) {
    let mut buf = Vec::new();
    loop {
        match frame::read_frame_blocking(reader, &mut buf) {
            Ok(()) => {}
            Err(FrameError::Closed) => break,
            Err(e) => {
                log::warn!("manager service connection: {e}");
                break;
            }
        }
        match frame::decode::<ServiceMessage>(&buf) {
            Ok(ServiceMessage::Response { id, result }) => {
                if let Some(tx) = lock(&routes.pending).remove(&id) {
                    let _ = tx.send(result);
                }
            }
            Ok(ServiceMessage::Change { id, change }) => {
                let mut subs = lock(&routes.subscribers);
                let end = change.is_err();
                if let Some(tx) = subs.get(&id) {
                    let _ = tx.send(change);
                }
                if end {
                    subs.remove(&id);
                }
            }
            Ok(ServiceMessage::ProtocolError { id: Some(id), error }) => {
                if let Some(tx) = lock(&routes.pending).remove(&id) {
                    let _ = tx.send(Err(error));
                }
            }
            Ok(other) => log::warn!("manager service sent an unexpected {other:?}"),
            Err(e) => log::warn!("manager service sent a frame that does not decode: {e}"),
        }
    }
    routes.closed.store(true, Ordering::SeqCst);
    lock(&routes.pending).clear();
    lock(&routes.subscribers).clear();
}

/// A subscription to a service's change feed, streamed over the connection. Dropping it closes it
/// on the service.
#[derive(Debug)]
pub struct RemoteSubscription {
    id: u64,
    rx: mpsc::Receiver<Result<Change>>,
    client: RemoteManager,
    ended: bool,
}

impl RemoteSubscription {
    /// The next change, waiting at most `timeout` (`Ok(None)` when none came). The error that ended
    /// the subscription on the service (such as [`Error::EventsLost`]) is returned once, then
    /// [`Error::Closed`]; so is a lost connection.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>> {
        if self.ended {
            return Err(Error::Closed);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(c)) => Ok(Some(c)),
            Ok(Err(e)) => {
                self.ended = true;
                Err(e)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Err(Error::Closed)
            }
        }
    }
}

impl ChangeStream for RemoteSubscription {
    fn next_change(&mut self, timeout: Duration) -> Result<Option<Change>> {
        self.next_timeout(timeout)
    }
}

impl Drop for RemoteSubscription {
    fn drop(&mut self) {
        lock(&self.client.conn.routes.subscribers).remove(&self.id);
        if !self.client.conn.routes.closed.load(Ordering::SeqCst) {
            let _ = self.client.send(&ClientMessage::Unsubscribe { id: self.id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            ServiceAddress::parse("ovm+unix:///run/ovm/manager.sock").unwrap(),
            ServiceAddress::Unix("/run/ovm/manager.sock".into())
        );
        assert_eq!(
            ServiceAddress::parse("ovm+unix://run/x").unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(ServiceAddress::parse("ovm+tls://h:1").unwrap(), ServiceAddress::Tls("h:1".into()));
        assert_eq!(
            ServiceAddress::parse("ovm+tls://[::1]:7443").unwrap(),
            ServiceAddress::Tls("[::1]:7443".into())
        );
        for bad in ["ovm+tls://h", "ovm+tls://h:0", "ovm+tls://:5", "ovm+tls://h:x"] {
            assert_eq!(
                ServiceAddress::parse(bad).unwrap_err().kind(),
                crate::ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
        assert_eq!(ServiceAddress::parse("/run/x").unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }
}
