//! The service side: a manager's API offered on a Unix socket.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::api::{dispatch, ManagerApi};
use super::proto::{negotiate, salvage_id, ClientMessage, ServiceMessage};
use crate::agent::proto::frame::{self, FrameError};
use crate::sync::lock;
use crate::{Error, Result};

/// How a [`Service`] listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// The socket file's permission bits (default `0o600`: only the service's user may connect;
    /// `0o660` lets its group in too). Who may open the file is who may use the manager.
    pub mode: u32,
    /// Connections served at once; one more is refused (default 64).
    pub max_connections: usize,
    /// Requests and subscriptions running at once on one connection; one more is answered with
    /// [`Error::InvalidArgument`] (default 32).
    pub max_in_flight: usize,
    /// How long a client has to say hello, and a write to a client may block (default 30 s).
    pub io_timeout: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            mode: 0o600,
            max_connections: 64,
            max_in_flight: 32,
            io_timeout: Duration::from_secs(30),
        }
    }
}

/// Who is at the other end of a connection, as the kernel reports it (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerCredentials {
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A client connected to a [`Service`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The connection's number (from 1, in accept order).
    pub connection: u64,
    /// Who connected.
    pub peer: PeerCredentials,
    /// What the client said it is in its hello (empty before the hello).
    pub client: String,
}

struct Conn {
    info: ClientInfo,
    stream: UnixStream,
}

struct Shared {
    api: Arc<dyn ManagerApi>,
    manager_id: String,
    opts: ServiceOptions,
    conns: Mutex<HashMap<u64, Conn>>,
    next_conn: AtomicU64,
    stop: AtomicBool,
}

/// A manager's API served on a Unix socket until [`Service::shutdown`] (or drop).
///
/// Each connection is served by its own thread; a request that may wait runs on a thread of a
/// pool that grows on demand, so a long wait does not hold up other requests. What one client sends never affects another: a malformed
/// frame gets a typed [`ServiceMessage::ProtocolError`], an oversized one closes that connection only.
pub struct Service {
    path: PathBuf,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("path", &self.path).finish_non_exhaustive()
    }
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::Internal { message: format!("{what} {}: {e}", path.display()) }
}

/// The credentials of the peer of a connected Unix socket.
pub fn peer_credentials(s: &UnixStream) -> io::Result<PeerCredentials> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the descriptor is a live socket owned by `s`; `cred` and `len` are valid for writes of
    // the sizes given, and the kernel writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCredentials { pid: cred.pid as u32, uid: cred.uid, gid: cred.gid })
}

/// Removes a socket file left by a service that is gone; refuses when one still listens there or
/// the path is not a socket.
fn clear_stale_socket(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        return Err(Error::invalid("socket", format!("{} exists and is not a socket", path.display())));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(Error::conflict(format!("a service already listens on {}", path.display())));
    }
    std::fs::remove_file(path).map_err(|e| io_error("cannot remove the stale socket", path, e))
}

impl Service {
    /// Serve `api` on a Unix socket at `path`. The socket is created with `opts.mode` before it is
    /// visible at `path` (bound under a temporary name, then renamed), so no one connects through
    /// wider permissions. A socket file left by a service that is gone is replaced; one where a
    /// service still listens is an [`Error::Conflict`].
    pub fn bind(api: Arc<dyn ManagerApi>, path: impl AsRef<Path>, opts: ServiceOptions) -> Result<Service> {
        let path = path.as_ref().to_path_buf();
        let manager_id = api.manager_id()?;
        clear_stale_socket(&path)?;
        let name = path.file_name().ok_or_else(|| Error::invalid("socket", "the path has no file name"))?;
        let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|e| io_error("cannot listen on", &tmp, e))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(opts.mode & 0o777))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error("cannot place the socket at", &path, e));
        }
        listener.set_nonblocking(true).map_err(|e| io_error("cannot listen on", &path, e))?;
        let shared = Arc::new(Shared {
            api,
            manager_id,
            opts,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("ovm-service".into())
            .spawn(move || accept_loop(&s, &listener))
            .map_err(|e| Error::Internal { message: format!("cannot start the service thread: {e}") })?;
        log::info!("manager {} serving on {}", shared.manager_id, path.display());
        Ok(Service { path, shared, accept: Mutex::new(Some(accept)) })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The clients connected now, in connection order.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let mut v: Vec<ClientInfo> = lock(&self.shared.conns).values().map(|c| c.info.clone()).collect();
        v.sort_by_key(|c| c.connection);
        v
    }

    /// Stop accepting, close every connection (requests running finish, their answers are dropped)
    /// and remove the socket file. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = lock(&self.accept).take() {
            let _ = t.join();
            let _ = std::fs::remove_file(&self.path);
        }
        for c in lock(&self.shared.conns).values() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => admit(shared, stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("accepting a connection failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn admit(shared: &Arc<Shared>, stream: UnixStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(shared.opts.io_timeout));
    let peer = match peer_credentials(&stream) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("a connection without peer credentials was closed: {e}");
            return;
        }
    };
    let connection = shared.next_conn.fetch_add(1, Ordering::SeqCst);
    let full = {
        let mut conns = lock(&shared.conns);
        let full = conns.len() >= shared.opts.max_connections;
        if !full {
            if let Ok(clone) = stream.try_clone() {
                let info = ClientInfo { connection, peer, client: String::new() };
                conns.insert(connection, Conn { info, stream: clone });
            }
        }
        full
    };
    let writer = Arc::new(Mutex::new(stream));
    if full {
        let error = Error::conflict(format!(
            "the service serves {} connections, its limit; try again later",
            shared.opts.max_connections
        ));
        let _ = send(&writer, &ServiceMessage::Refused { error });
        return;
    }
    log::info!("connection {connection} from pid {} uid {} gid {}", peer.pid, peer.uid, peer.gid);
    let s = shared.clone();
    let spawned = std::thread::Builder::new().name(format!("ovm-conn-{connection}")).spawn(move || {
        serve_connection(&s, connection, &writer);
        lock(&s.conns).remove(&connection);
        log::info!("connection {connection} closed");
    });
    if spawned.is_err() {
        lock(&shared.conns).remove(&connection);
    }
}

/// Writes one message; an answer too large for a frame is replaced by its typed error.
fn send(writer: &Mutex<UnixStream>, msg: &ServiceMessage) -> io::Result<()> {
    let frame = match frame::encode(msg) {
        Ok(f) => f,
        Err(error) => {
            let replacement = match msg {
                ServiceMessage::Response { id, .. } => {
                    ServiceMessage::Response { id: *id, result: Err(error) }
                }
                ServiceMessage::Change { id, .. } => ServiceMessage::Change { id: *id, change: Err(error) },
                _ => ServiceMessage::ProtocolError { id: None, error },
            };
            frame::encode(&replacement).map_err(|e| io::Error::other(e.to_string()))?
        }
    };
    let mut w = lock(writer);
    frame::write_frame_blocking(&mut *w, &frame)
}

/// A request or subscription running on a connection: it counts against the in-flight limit until
/// dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn take(count: &Arc<AtomicUsize>, limit: usize) -> Option<InFlight> {
        count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(InFlight(count.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hello(shared: &Shared, connection: u64, writer: &Mutex<UnixStream>, reader: &mut UnixStream) -> bool {
    let _ = reader.set_read_timeout(Some(shared.opts.io_timeout));
    let mut buf = Vec::new();
    let first = frame::read_frame_blocking(reader, &mut buf);
    let _ = reader.set_read_timeout(None);
    let refuse = |error| {
        let _ = send(writer, &ServiceMessage::Refused { error });
        false
    };
    match first.map(|()| frame::decode::<ClientMessage>(&buf)) {
        Ok(Ok(ClientMessage::Hello { min_version, max_version, client })) => {
            let Some(version) = negotiate(min_version, max_version) else {
                return refuse(Error::Unsupported {
                    what: format!(
                        "protocol versions {min_version}..={max_version} (this service speaks {}..={})",
                        super::proto::MIN_PROTOCOL_VERSION,
                        super::proto::PROTOCOL_VERSION
                    ),
                });
            };
            if let Some(c) = lock(&shared.conns).get_mut(&connection) {
                c.info.client = client.chars().take(128).collect();
            }
            send(writer, &ServiceMessage::Welcome { version, manager_id: shared.manager_id.clone() }).is_ok()
        }
        Ok(Ok(_)) => refuse(Error::invalid("message", "the first message must be a hello")),
        Ok(Err(e)) => refuse(Error::invalid("message", e)),
        Err(FrameError::TooLarge(n)) => refuse(too_large(n)),
        Err(_) => false,
    }
}

fn too_large(n: usize) -> Error {
    Error::invalid("frame", format!("{n} bytes is over the limit of {} bytes", frame::MAX_FRAME))
}

fn serve_connection(shared: &Arc<Shared>, connection: u64, writer: &Arc<Mutex<UnixStream>>) {
    let Ok(mut reader) = lock(writer).try_clone() else { return };
    if !hello(shared, connection, writer, &mut reader) {
        return;
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let subscriptions: Arc<Mutex<HashMap<u64, Arc<AtomicBool>>>> = Arc::default();
    let mut buf = Vec::new();
    loop {
        match frame::read_frame_blocking(&mut reader, &mut buf) {
            Ok(()) => {}
            Err(FrameError::TooLarge(n)) => {
                let _ = send(writer, &ServiceMessage::ProtocolError { id: None, error: too_large(n) });
                break;
            }
            Err(_) => break,
        }
        let msg = match frame::decode::<ClientMessage>(&buf) {
            Ok(m) => m,
            Err(e) => {
                let error = Error::invalid("message", e);
                if send(writer, &ServiceMessage::ProtocolError { id: salvage_id(&buf), error }).is_err() {
                    break;
                }
                continue;
            }
        };
        let answered = match msg {
            ClientMessage::Hello { .. } => send(
                writer,
                &ServiceMessage::ProtocolError {
                    id: None,
                    error: Error::invalid("message", "hello was already said"),
                },
            ),
            ClientMessage::Request { id, call } => {
                match InFlight::take(&in_flight, shared.opts.max_in_flight) {
                    None => send(writer, &ServiceMessage::Response { id, result: Err(busy(shared)) }),
                    Some(slot) if call.answers_at_once() => {
                        let result = dispatch(&*shared.api, *call);
                        drop(slot);
                        send(writer, &ServiceMessage::Response { id, result })
                    }
                    Some(slot) => {
                        let (s, w) = (shared.clone(), writer.clone());
                        spawn_or_answer(writer, id, move || {
                            let result = dispatch(&*s.api, call.bounded());
                            let _ = send(&w, &ServiceMessage::Response { id, result });
                            drop(slot);
                        })
                    }
                }
            }
            ClientMessage::Subscribe { id, from } => {
                match InFlight::take(&in_flight, shared.opts.max_in_flight) {
                    None => send(writer, &ServiceMessage::Response { id, result: Err(busy(shared)) }),
                    Some(slot) => subscribe(shared, writer, &subscriptions, id, from, slot),
                }
            }
            ClientMessage::Unsubscribe { id } => {
                if let Some(flag) = lock(&subscriptions).remove(&id) {
                    flag.store(true, Ordering::SeqCst);
                }
                Ok(())
            }
        };
        if answered.is_err() {
            break;
        }
    }
    for flag in lock(&subscriptions).values() {
        flag.store(true, Ordering::SeqCst);
    }
}

fn busy(shared: &Shared) -> Error {
    Error::invalid(
        "request",
        format!("{} requests and subscriptions already run on this connection", shared.opts.max_in_flight),
    )
}

fn spawn_or_answer(writer: &Mutex<UnixStream>, id: u64, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    static WORKERS: std::sync::OnceLock<super::workers::Workers> = std::sync::OnceLock::new();
    match WORKERS.get_or_init(Default::default).run(f) {
        Ok(()) => Ok(()),
        Err(e) => {
            let error = Error::Internal { message: format!("cannot start a thread for the request: {e}") };
            send(writer, &ServiceMessage::Response { id, result: Err(error) })
        }
    }
}

fn subscribe(
    shared: &Shared,
    writer: &Arc<Mutex<UnixStream>>,
    subscriptions: &Arc<Mutex<HashMap<u64, Arc<AtomicBool>>>>,
    id: u64,
    from: Option<u64>,
    slot: InFlight,
) -> io::Result<()> {
    let mut stream = match shared.api.subscribe_changes(from) {
        Ok(s) => s,
        Err(e) => return send(writer, &ServiceMessage::Response { id, result: Err(e) }),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut subs = lock(subscriptions);
        if subs.contains_key(&id) {
            let error = Error::conflict(format!("subscription {id} is already open on this connection"));
            return send(writer, &ServiceMessage::Response { id, result: Err(error) });
        }
        subs.insert(id, cancel.clone());
    }
    send(writer, &ServiceMessage::Response { id, result: Ok(serde_json::Value::Null) })?;
    let w = writer.clone();
    let subs = subscriptions.clone();
    spawn_or_answer(writer, id, move || {
        let _slot = slot;
        while !cancel.load(Ordering::SeqCst) {
            let change = match stream.next_change(Duration::from_millis(200)) {
                Ok(None) => continue,
                Ok(Some(c)) => Ok(c),
                Err(e) => Err(e),
            };
            let end = change.is_err();
            if send(&w, &ServiceMessage::Change { id, change }).is_err() || end {
                break;
            }
        }
        lock(&subs).remove(&id);
    })
}
