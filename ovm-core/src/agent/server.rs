//! The agent side: serves one server's [`ServerConnection`] to its owning manager over mutual TLS.
//!
//! State directory (created by [`Agent::init`], read by [`Agent::open`]):
//! `agent-cert.pem` and `agent-key.pem` (the agent's identity, the key readable by root only),
//! `state.json` (the password hash and the owner), `audit.log` (one line per refusal and per
//! ownership change). Files are replaced atomically (write, fsync, rename, fsync the directory),
//! so a crash never leaves a half-written state; a state file that does not parse stops the agent
//! with a clear error and is left as it is.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::proto::{
    self, v1, AgentMessage, ClientMessage, FrameError, Op, Ownership, Reply, Serve, MAX_CONSOLE,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use super::tls::{self, Identity};
use crate::driver::ServerConnection;
use crate::model::VmId;
use crate::sync::lock;
use crate::{Error, Result};

const STATE_VERSION: u32 = 1;
const PBKDF2_ITERATIONS: u32 = 100_000;

/// Tunables of an agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The state directory.
    pub state_dir: PathBuf,
    /// Failed password attempts from one address before it is locked out.
    pub max_failures: u32,
    /// First lockout; each further failure doubles it, up to five minutes.
    pub lockout: Duration,
    /// Time allowed for the TLS handshake and the hello.
    pub handshake_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Where other agents reach this one to migrate domains here (`host:port` on the pool's live
    /// migrate network). Without it the agent refuses to prepare incoming migrations.
    pub migration_address: Option<String>,
    /// How long an incoming-migration ticket stays valid.
    pub incoming_ttl: Duration,
    /// The command that shuts the server down cleanly and powers it off (program and arguments,
    /// e.g. `poweroff`). Without it the agent hands power-off requests to its backend.
    pub power_off_command: Option<Vec<String>>,
}

impl AgentConfig {
    /// Defaults for the state directory `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            state_dir: state_dir.into(),
            max_failures: 3,
            lockout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 64,
            migration_address: None,
            incoming_ttl: Duration::from_secs(120),
            power_off_command: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordHash {
    salt: String,
    iterations: u32,
    hash: String,
}

impl PasswordHash {
    fn new(password: &str) -> Result<PasswordHash> {
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| Error::Internal { message: "no system randomness".into() })?;
        let mut hash = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(PBKDF2_ITERATIONS).expect("non-zero"),
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        Ok(PasswordHash { salt: hex(&salt), iterations: PBKDF2_ITERATIONS, hash: hex(&hash) })
    }

    fn verify(&self, password: &str) -> bool {
        let (Some(salt), Some(hash), Some(iter)) =
            (unhex(&self.salt), unhex(&self.hash), std::num::NonZeroU32::new(self.iterations))
        else {
            return false;
        };
        ring::pbkdf2::verify(ring::pbkdf2::PBKDF2_HMAC_SHA256, iter, &salt, password.as_bytes(), &hash)
            .is_ok()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The manager owning an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// The manager's id.
    pub manager_id: String,
    /// Fingerprint of its client certificate.
    pub fingerprint: String,
    /// When ownership was taken, ms since the Unix epoch.
    pub since_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    version: u32,
    password: PasswordHash,
    owner: Option<Owner>,
}

/// One audit record: a refusal or an ownership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When, ms since the Unix epoch.
    pub time_ms: u64,
    /// The peer.
    pub peer: SocketAddr,
    /// What happened (`refused: ...`, `ownership taken by ...`, ...).
    pub what: String,
}

#[derive(Debug, Default)]
struct Attempts {
    failures: u32,
    locked_until: Option<Instant>,
}

/// How [`Agent::serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd {
    /// The owner asked for a restart ([`Op::RestartAgent`]).
    RestartRequested,
    /// [`Agent::stop`] was called.
    Stopped,
}

/// An agent: its identity, its state and the hypervisor it serves.
#[derive(Debug, Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AgentConfig,
    identity: Identity,
    tls: tokio_rustls::TlsAcceptor,
    state: Mutex<State>,
    hv: Arc<dyn ServerConnection>,
    hostname: String,
    attempts: Mutex<HashMap<IpAddr, Attempts>>,
    audit: Mutex<VecDeque<AuditRecord>>,
    conns: AtomicUsize,
    /// Password checks (PBKDF2) at once: a flood of attempts cannot take the CPU.
    password_checks: tokio::sync::Semaphore,
    end: watch::Sender<Option<ServeEnd>>,
    incoming: super::migration::Incoming,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("state_dir", &self.cfg.state_dir)
            .field("identity", &self.identity)
            .field("owner", &lock(&self.state).owner)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::backend("ovm-agent", format!("{what} {}: {e}", path.display()))
}

/// Writes `data` to `path` atomically, readable by the owner only.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err("create", &tmp, e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| io_err("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err("rename to", path, e))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("sync", dir, e))
}

fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("agent-cert.pem"), dir.join("agent-key.pem"), dir.join("state.json"))
}

impl Agent {
    /// Prepare `state_dir`: create the agent's identity if it has none and set the agent password
    /// (keeping the owner, if any). Returns the certificate fingerprint, which administrators can
    /// compare with what the manager pinned.
    pub fn init(state_dir: &Path, password: &str) -> Result<String> {
        if password.is_empty() {
            return Err(Error::invalid("password", "must not be empty"));
        }
        fs::create_dir_all(state_dir).map_err(|e| io_err("create", state_dir, e))?;
        let _ = fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700));
        let (cert, key, state) = paths(state_dir);
        let identity = match (cert.exists(), key.exists()) {
            (true, true) => load_identity(state_dir)?,
            (false, false) => {
                let id = Identity::generate("ovm-agent")?;
                write_atomic(&key, id.key_pem.as_bytes())?;
                write_atomic(&cert, id.cert_pem.as_bytes())?;
                id
            }
            _ => {
                return Err(Error::invalid(
                    "state directory",
                    format!("{} holds only half of the agent identity", state_dir.display()),
                ))
            }
        };
        let owner = if state.exists() { load_state(&state)?.owner } else { None };
        let st = State { version: STATE_VERSION, password: PasswordHash::new(password)?, owner };
        write_atomic(&state, &serde_json::to_vec_pretty(&st)?)?;
        identity.fingerprint()
    }

    /// The certificate fingerprint and the owner recorded in `state_dir`, without serving.
    pub fn inspect(state_dir: &Path) -> Result<(String, Option<Owner>)> {
        let identity = load_identity(state_dir)?;
        let state = load_state(&paths(state_dir).2)?;
        Ok((identity.fingerprint()?, state.owner))
    }

    /// Open the agent of `cfg.state_dir` (prepared by [`Agent::init`]) serving `hv`.
    pub fn open(cfg: AgentConfig, hv: Arc<dyn ServerConnection>) -> Result<Agent> {
        let identity = load_identity(&cfg.state_dir)?;
        let state = load_state(&paths(&cfg.state_dir).2)?;
        let tls = tokio_rustls::TlsAcceptor::from(tls::server_config(&identity)?);
        let hostname = hv.host_info().map(|i| i.hostname).unwrap_or_else(|_| "unknown".into());
        Ok(Agent {
            inner: Arc::new(Inner {
                cfg,
                identity,
                tls,
                state: Mutex::new(state),
                hv,
                hostname,
                attempts: Mutex::default(),
                audit: Mutex::default(),
                conns: AtomicUsize::new(0),
                password_checks: tokio::sync::Semaphore::new(2),
                end: watch::channel(None).0,
                incoming: Default::default(),
            }),
        })
    }

    /// The agent certificate's fingerprint.
    pub fn fingerprint(&self) -> Result<String> {
        self.inner.identity.fingerprint()
    }

    /// The owning manager, if any.
    pub fn owner(&self) -> Option<Owner> {
        lock(&self.inner.state).owner.clone()
    }

    /// The newest audit records (up to 1,000), oldest first.
    pub fn audit(&self) -> Vec<AuditRecord> {
        lock(&self.inner.audit).iter().cloned().collect()
    }

    /// Make [`Agent::serve`] return.
    pub fn stop(&self) {
        self.inner.end.send_replace(Some(ServeEnd::Stopped));
    }

    /// Accept connections on `listener` until the owner asks for a restart or [`Agent::stop`].
    pub async fn serve(&self, listener: TcpListener) -> Result<ServeEnd> {
        let mut end = self.inner.end.subscribe();
        loop {
            if let Some(e) = *end.borrow_and_update() {
                return Ok(e);
            }
            tokio::select! {
                r = listener.accept() => {
                    let (tcp, peer) = match r {
                        Ok(x) => x,
                        Err(e) => {
                            log::error!("accept: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let inner = self.inner.clone();
                    if inner.conns.fetch_add(1, Ordering::SeqCst) >= inner.cfg.max_connections {
                        inner.conns.fetch_sub(1, Ordering::SeqCst);
                        inner.record(peer, "refused: too many connections".into());
                        continue;
                    }
                    tokio::spawn(async move {
                        let why = inner.clone().connection(tcp, peer).await;
                        if let Err(why) = why {
                            inner.record(peer, format!("refused: {why}"));
                        }
                        inner.conns.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                _ = end.changed() => {}
            }
        }
    }
}

fn load_identity(dir: &Path) -> Result<Identity> {
    let (cert, key, _) = paths(dir);
    let read = |p: &Path| fs::read_to_string(p).map_err(|e| io_err("read", p, e));
    let id = Identity { cert_pem: read(&cert)?, key_pem: read(&key)? };
    id.validate()?;
    Ok(id)
}

fn load_state(path: &Path) -> Result<State> {
    let data = fs::read(path).map_err(|e| io_err("read", path, e))?;
    let st: State = serde_json::from_slice(&data).map_err(|e| {
        Error::invalid("agent state", format!("{} is not a valid agent state file: {e}", path.display()))
    })?;
    if st.version != STATE_VERSION {
        return Err(Error::invalid(
            "agent state",
            format!("{} has version {}, this agent reads {STATE_VERSION}", path.display(), st.version),
        ));
    }
    Ok(st)
}

impl Inner {
    fn record(&self, peer: SocketAddr, what: String) {
        log::info!("{peer}: {what}");
        let rec = AuditRecord { time_ms: now_ms(), peer, what };
        let line = format!("{} {} {}\n", rec.time_ms, rec.peer, rec.what);
        let path = self.cfg.state_dir.join("audit.log");
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path) {
            let _ = f.write_all(line.as_bytes());
        }
        let mut a = lock(&self.audit);
        if a.len() >= 1000 {
            a.pop_front();
        }
        a.push_back(rec);
    }

    fn is_owner(&self, fingerprint: &str) -> bool {
        lock(&self.state).owner.as_ref().is_some_and(|o| o.fingerprint == fingerprint)
    }

    /// Replace the persisted state; the in-memory state changes only if the write succeeded.
    fn set_owner(&self, owner: Option<Owner>) -> Result<()> {
        let mut st = lock(&self.state);
        let next = State { owner, ..st.clone() };
        write_atomic(&paths(&self.cfg.state_dir).2, &serde_json::to_vec_pretty(&next)?)?;
        *st = next;
        Ok(())
    }

    /// One connection: handshake, hello, then requests until the peer goes. `Err` is a refusal.
    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> std::result::Result<(), String> {
        let _ = tcp.set_nodelay(true);
        let limit = self.cfg.handshake_timeout;
        let local = tcp.local_addr().ok().map(|a| a.ip());
        let tls = match tokio::time::timeout(limit, self.tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
            Err(_) => return Err("TLS handshake timed out".into()),
        };
        let fp = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            Some(c) => tls::fingerprint(c),
            None => return Err("no client certificate".into()),
        };
        let mut tls = tls;
        let mut buf = Vec::new();
        let hello = match tokio::time::timeout(limit, proto::read_frame(&mut tls, &mut buf)).await {
            Ok(Ok(())) => proto::decode::<ClientMessage>(&buf),
            Ok(Err(e)) => return Err(format!("no hello: {e}")),
            Err(_) => return Err("no hello in time".into()),
        };
        if let Ok(ClientMessage::Migration { token, vm, mode }) = hello {
            return self.incoming_migration(tls, peer, &fp, &token, vm, mode.into()).await;
        }
        if let Ok(ClientMessage::Console { vm }) = hello {
            return self.console(tls, peer, &fp, vm).await;
        }
        let (mut rd, mut wr) = tokio::io::split(tls);
        let (manager_id, version, take_over) = match hello {
            Ok(ClientMessage::Hello { min_version, max_version, manager_id, take_over }) => {
                let v = max_version.min(PROTOCOL_VERSION);
                if v < min_version.max(MIN_PROTOCOL_VERSION) || min_version > max_version {
                    return refuse(
                        &mut wr,
                        Error::Unsupported {
                            what: format!(
                                "protocol versions {min_version}..={max_version}; this agent speaks \
                             {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}"
                            ),
                        },
                    )
                    .await;
                }
                (manager_id, v, take_over)
            }
            Ok(other) => {
                return refuse(&mut wr, Error::invalid("hello", format!("expected hello, got {other:?}")))
                    .await
            }
            Err(e) => return refuse(&mut wr, Error::invalid("hello", e)).await,
        };
        let owner = lock(&self.state).owner.clone();
        let ownership = match owner {
            None => Ownership::Unowned,
            Some(o) if o.fingerprint == fp => Ownership::OwnedByYou,
            // Only a takeover is served to this connection (see `is_owner` on each request).
            Some(_) if take_over => Ownership::OwnedByAnother,
            Some(o) => {
                return refuse(
                    &mut wr,
                    Error::PermissionDenied {
                        reason: format!(
                        "this server is owned by manager {}; the certificate {fp} of manager {manager_id} is \
                         not the owner's",
                        o.manager_id
                    ),
                    },
                )
                .await
            }
        };
        let welcome = AgentMessage::Welcome { version, hostname: self.hostname.clone(), ownership };
        let frame = proto::encode(&welcome).map_err(|e| e.to_string())?;
        proto::write_frame(&mut wr, &frame).await.map_err(|e| format!("write: {e}"))?;

        // Writer task: frames from request handlers and the change forwarder.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
        let writer = tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if proto::write_frame(&mut wr, &f).await.is_err() {
                    break;
                }
            }
        });
        let forwarder = self.hv.watch().ok().map(|mut changes| {
            let tx = tx.clone();
            let me = self.clone();
            let fp = fp.clone();
            tokio::spawn(async move {
                loop {
                    let change = match changes.recv().await {
                        Ok(c) => c,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            log::warn!("{peer}: {n} domain changes dropped; asking for a resync");
                            crate::driver::DomainChange::Resync
                        }
                        Err(_) => break,
                    };
                    if !me.is_owner(&fp) {
                        continue;
                    }
                    let Ok(f) = proto::encode(&AgentMessage::Change { change: change.into() }) else {
                        continue;
                    };
                    if tx.send(f).await.is_err() {
                        break;
                    }
                }
            })
        });
        let mut end = self.end.subscribe();
        loop {
            // Only the owner may keep an idle connection open.
            let idle = if self.is_owner(&fp) { Duration::MAX } else { self.cfg.handshake_timeout * 6 };
            let r = tokio::select! {
                r = proto::read_frame(&mut rd, &mut buf) => r,
                _ = end.changed() => break,
                _ = tokio::time::sleep(idle) => {
                    self.record(peer, "closed: idle connection of a manager that does not own the server".into());
                    break;
                }
            };
            match r {
                Ok(()) => {}
                Err(FrameError::Closed) => break,
                Err(e @ FrameError::TooLarge(_)) => {
                    let f = proto::encode(&AgentMessage::ProtocolError { message: e.to_string() });
                    if let Ok(f) = f {
                        let _ = tx.send(f).await;
                    }
                    self.record(peer, format!("closed: {e}"));
                    break;
                }
                Err(e) => {
                    self.record(peer, format!("closed: {e}"));
                    break;
                }
            }
            let (id, op) = match proto::decode::<ClientMessage>(&buf) {
                Ok(ClientMessage::Request { id, op }) => (id, op),
                Ok(
                    ClientMessage::Hello { .. }
                    | ClientMessage::Migration { .. }
                    | ClientMessage::Console { .. },
                ) => {
                    let f = proto::encode(&AgentMessage::ProtocolError {
                        message:
                            "a hello, a migration ticket or a console request is only a connection's first \
                                  message"
                                .into(),
                    });
                    let _ = tx.send(f.map_err(|e| e.to_string())?).await;
                    continue;
                }
                Err(message) => {
                    self.record(peer, format!("malformed frame: {message}"));
                    let f = proto::encode(&AgentMessage::ProtocolError { message });
                    let _ = tx.send(f.map_err(|e| e.to_string())?).await;
                    continue;
                }
            };
            let me = self.clone();
            let tx = tx.clone();
            let fp = fp.clone();
            let manager_id = manager_id.clone();
            tokio::spawn(async move {
                let result = me.clone().handle(peer, local, &fp, &manager_id, op).await;
                let f = proto::encode(&AgentMessage::Response { id, result })
                    .or_else(|e| proto::encode(&AgentMessage::Response { id, result: Err(e) }));
                if let Ok(f) = f {
                    let _ = tx.send(f).await;
                }
            });
        }
        if let Some(f) = forwarder {
            f.abort();
        }
        drop(tx);
        let _ = writer.await;
        Ok(())
    }

    /// The owning manager opens a VM's graphical console: the connection then carries its RFB
    /// protocol, relayed to the console's server on this host. Anyone else is refused.
    async fn console(
        self: Arc<Self>,
        mut tls: tokio_rustls::server::TlsStream<TcpStream>,
        peer: SocketAddr,
        fp: &str,
        vm: VmId,
    ) -> std::result::Result<(), String> {
        let owner = lock(&self.state).owner.clone();
        if owner.as_ref().is_none_or(|o| o.fingerprint != fp) {
            self.record(peer, format!("console of VM {vm} refused to {fp}: not the owning manager"));
            return refuse(
                &mut tls,
                Error::PermissionDenied { reason: "only the owning manager opens consoles".into() },
            )
            .await;
        }
        let hv = self.hv.clone();
        let opened = tokio::task::spawn_blocking(move || hv.open_console(vm))
            .await
            .map_err(|e| Error::Internal { message: format!("console task: {e}") })
            .and_then(|r| r);
        let stream = match opened {
            Ok(s) => s,
            Err(e) => return refuse(&mut tls, e).await,
        };
        let frame = proto::encode(&AgentMessage::ConsoleOpen).map_err(|e| e.to_string())?;
        proto::write_frame(&mut tls, &frame).await.map_err(|e| format!("answer the console request: {e}"))?;
        self.record(peer, format!("console of VM {vm} opened"));
        super::relay(tls, stream).await.map_err(|e| e.to_string())
    }

    /// A source agent presents a migration ticket: admit it (or refuse and audit), then receive
    /// the domain over this connection.
    async fn incoming_migration(
        self: Arc<Self>,
        mut tls: tokio_rustls::server::TlsStream<TcpStream>,
        peer: SocketAddr,
        fp: &str,
        token: &str,
        vm: VmId,
        mode: crate::model::MigrationMode,
    ) -> std::result::Result<(), String> {
        let prepared = match self.incoming.admit(token, vm, fp, mode) {
            Ok(p) => p,
            Err(e) => return refuse(&mut tls, e).await,
        };
        self.record(peer, format!("migration of VM {vm} admitted from the agent {fp}"));
        let me = self.clone();
        let received = super::migration::receive(tls, prepared, move |spec, mode, stream| {
            capability(me.hv.migration_streams(), "migration streams")?.receive_stream(&spec, mode, stream)
        })
        .await;
        match received {
            Ok(domid) => {
                self.record(peer, format!("migration of VM {vm} received: domain {domid}"));
                Ok(())
            }
            Err(e) => Err(format!("migration of VM {vm} not received: {e}")),
        }
    }

    async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        local: Option<IpAddr>,
        fp: &str,
        manager_id: &str,
        op: Op,
    ) -> Result<Reply> {
        if let Op::TakeOwnership { password, take_over } = op {
            return self.take_ownership(peer, fp, manager_id, password, take_over).await;
        }
        if !op.allowed_unowned() && !self.is_owner(fp) {
            let why =
                format!("{op_name} refused: this manager does not own the server", op_name = op_name(&op));
            self.record(peer, format!("refused: {why}"));
            return Err(Error::PermissionDenied { reason: why });
        }
        if self.is_owner(fp) {
            if let Some(c) = self.hv.cluster() {
                c.manager_seen();
            }
        }
        match op {
            Op::ReleaseOwnership => {
                self.set_owner(None)?;
                self.record(peer, format!("ownership released by manager {manager_id}"));
                Ok(Reply::Done)
            }
            Op::RestartAgent => {
                self.record(peer, format!("restart requested by manager {manager_id}"));
                let me = self.clone();
                tokio::spawn(async move {
                    // Let the response go out first.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    me.end.send_replace(Some(ServeEnd::RestartRequested));
                });
                Ok(Reply::Done)
            }
            Op::NetApply { changes, mut opts } => {
                // The link this request came over is the one to protect.
                opts.management = local.map(|ip| match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
                    v4 => v4,
                });
                self.record(
                    peer,
                    format!(
                        "network changes from manager {manager_id}: {}",
                        describe_changes(&changes, &opts)
                    ),
                );
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.run(Op::NetApply { changes, opts }))
                    .await
                    .map_err(|e| Error::Internal { message: format!("request task failed: {e}") })?
            }
            op => {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.run(op))
                    .await
                    .map_err(|e| Error::Internal { message: format!("request task failed: {e}") })?
            }
        }
    }

    async fn take_ownership(
        self: Arc<Self>,
        peer: SocketAddr,
        fp: &str,
        manager_id: &str,
        password: String,
        take_over: bool,
    ) -> Result<Reply> {
        // Attempts to take an owned agent over share one budget, whatever address they come from
        // (an attacker with many addresses gets no more guesses); others count per address.
        let owned_by_another = lock(&self.state).owner.as_ref().is_some_and(|o| o.fingerprint != fp);
        let ip = if owned_by_another { TAKEOVER_ATTEMPTS } else { peer.ip() };
        // Waiting attempts see a lockout that the ones before them caused.
        let _permit = self
            .password_checks
            .acquire()
            .await
            .map_err(|_| Error::Internal { message: "password checks closed".into() })?;
        {
            let attempts = lock(&self.attempts);
            if let Some(until) = attempts.get(&ip).and_then(|a| a.locked_until) {
                let now = Instant::now();
                if until > now {
                    let secs = (until - now).as_secs_f64().ceil() as u64;
                    drop(attempts);
                    let from = if owned_by_another {
                        "to take this server over".to_owned()
                    } else {
                        format!("from {ip}")
                    };
                    let why = format!("too many failed password attempts {from}; retry in {secs} s");
                    self.record(peer, format!("refused: {why}"));
                    return Err(Error::PermissionDenied { reason: why });
                }
            }
        }
        let hash = lock(&self.state).password.clone();
        let ok = tokio::task::spawn_blocking(move || hash.verify(&password))
            .await
            .map_err(|e| Error::Internal { message: format!("password check failed: {e}") })?;
        if !ok {
            let mut attempts = lock(&self.attempts);
            if attempts.len() >= 4096 {
                // Forget addresses whose lockout is over (bounded memory under a spray of addresses).
                let now = Instant::now();
                attempts.retain(|k, a| *k == TAKEOVER_ATTEMPTS || a.locked_until.is_some_and(|t| t > now));
            }
            let a = attempts.entry(ip).or_default();
            a.failures += 1;
            if a.failures >= self.cfg.max_failures {
                let doublings = (a.failures - self.cfg.max_failures).min(16);
                let wait = (self.cfg.lockout * (1u32 << doublings)).min(Duration::from_secs(300));
                a.locked_until = Some(Instant::now() + wait);
            }
            drop(attempts);
            self.record(peer, format!("refused: wrong agent password from manager {manager_id}"));
            return Err(Error::PermissionDenied { reason: "wrong agent password".into() });
        }
        lock(&self.attempts).remove(&ip);
        // Check and claim under one lock: of two managers racing for an unowned agent, one wins.
        // `Ok(None)`: already the caller's; `Ok(Some(former))`: claimed (from `former`, if any).
        let outcome: std::result::Result<Option<Option<String>>, String> = {
            let mut st = lock(&self.state);
            match &st.owner {
                Some(o) if o.fingerprint == fp => Ok(None),
                Some(o) if !take_over => Err(format!("this server is owned by manager {}", o.manager_id)),
                previous => {
                    let previous = previous.as_ref().map(|o| o.manager_id.clone());
                    let owner = Owner {
                        manager_id: manager_id.to_owned(),
                        fingerprint: fp.to_owned(),
                        since_ms: now_ms(),
                    };
                    let next = State { owner: Some(owner), ..st.clone() };
                    write_atomic(&paths(&self.cfg.state_dir).2, &serde_json::to_vec_pretty(&next)?)?;
                    *st = next;
                    Ok(Some(previous))
                }
            }
        };
        match outcome {
            Ok(Some(None)) => {
                self.record(peer, format!("ownership taken by manager {manager_id} (certificate {fp})"));
                Ok(Reply::Done)
            }
            Ok(Some(Some(former))) => {
                self.record(
                    peer,
                    format!("ownership taken over from manager {former} by manager {manager_id} (certificate {fp})"),
                );
                Ok(Reply::Done)
            }
            Ok(None) => Ok(Reply::Done),
            Err(why) => {
                self.record(peer, format!("refused: {why}"));
                Err(Error::PermissionDenied { reason: why })
            }
        }
    }

    fn run(&self, op: Op) -> Result<Reply> {
        if let Op::SendDomain { vm, .. } = &op {
            // Carried by this agent: it connects to the destination agent with its own identity.
            let streams = capability(self.hv.migration_streams(), "migration streams")?;
            super::migration::send(&self.identity, streams, *vm, &op)?;
            return Ok(Reply::Done);
        }
        v1::dispatch(self, op)
    }
}

/// The key of the shared budget of failed takeover attempts in the attempts table.
const TAKEOVER_ATTEMPTS: std::net::IpAddr = std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// The operations served on blocking threads, on the served connection. (Ownership operations run
/// on the connection's task: see `Inner::handle`.)
impl Serve for Inner {
    fn take_ownership(&self, _password: String, _take_over: bool) -> Result<()> {
        Err(on_the_blocking_path())
    }

    fn release_ownership(&self) -> Result<()> {
        Err(on_the_blocking_path())
    }

    fn restart_agent(&self) -> Result<()> {
        Err(on_the_blocking_path())
    }

    fn host_info(&self) -> Result<v1::HostInfo> {
        let mut info = self.hv.host_info()?;
        info.owner = lock(&self.state).owner.as_ref().map(|o| o.manager_id.clone());
        Ok(info.into())
    }

    fn load(&self) -> Result<v1::HostLoad> {
        Ok(self.hv.load()?.into())
    }

    fn list_domains(&self) -> Result<Vec<v1::DomainStatus>> {
        Ok(self.hv.list_domains()?.into_iter().map(Into::into).collect())
    }

    fn create_domain(&self, spec: Box<v1::DomainSpec>) -> Result<u32> {
        self.hv.create_domain(&(*spec).try_into()?)
    }

    fn shutdown(&self, vm: VmId, timeout_ms: u64) -> Result<()> {
        self.hv.shutdown(vm, Duration::from_millis(timeout_ms))
    }

    fn reboot(&self, vm: VmId, timeout_ms: u64) -> Result<()> {
        self.hv.reboot(vm, Duration::from_millis(timeout_ms))
    }

    fn destroy(&self, vm: VmId) -> Result<()> {
        self.hv.destroy(vm)
    }

    fn pause(&self, vm: VmId) -> Result<()> {
        self.hv.pause(vm)
    }

    fn unpause(&self, vm: VmId) -> Result<()> {
        self.hv.unpause(vm)
    }

    fn suspend(&self, vm: VmId, path: String) -> Result<()> {
        self.hv.suspend(vm, &path)
    }

    fn restore(&self, spec: Box<v1::DomainSpec>, path: String) -> Result<u32> {
        self.hv.restore(&(*spec).try_into()?, &path)
    }

    fn prepare_incoming(
        &self,
        spec: Box<v1::DomainSpec>,
        source: String,
        mode: v1::MigrationMode,
    ) -> Result<v1::IncomingTicket> {
        let destination = self.cfg.migration_address.clone().ok_or_else(|| Error::Unsupported {
            what: "incoming migrations on an agent started without a migration address".into(),
        })?;
        let spec = crate::driver::DomainSpec::try_from(*spec)?;
        let streams = capability(self.hv.migration_streams(), "migration streams")?;
        let token = self.incoming.prepare(streams, spec, &source, mode.into(), self.cfg.incoming_ttl)?;
        Ok(v1::IncomingTicket { destination, token })
    }

    fn cancel_incoming(&self, token: String) -> Result<()> {
        self.incoming.cancel(&token);
        Ok(())
    }

    fn send_domain(
        &self,
        _vm: VmId,
        _d: String,
        _t: String,
        _p: String,
        _live: bool,
        _mode: v1::MigrationMode,
    ) -> Result<()> {
        // `run` carries it (it needs the agent's identity and runtime); never dispatched here.
        Err(Error::Internal { message: "send_domain on the dispatch path".into() })
    }

    fn set_memory(&self, vm: VmId, memory_mib: u64) -> Result<()> {
        self.hv.set_memory(vm, memory_mib)
    }

    fn set_vcpus(&self, vm: VmId, vcpus: u32) -> Result<()> {
        self.hv.set_vcpus(vm, vcpus)
    }

    fn console(&self, vm: VmId) -> Result<String> {
        let text = self.hv.console(vm)?;
        let mut cut = text.len().saturating_sub(MAX_CONSOLE);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        Ok(text[cut..].to_owned())
    }

    fn power_off(&self) -> Result<()> {
        let Some(cmd) = self.cfg.power_off_command.clone() else { return self.hv.power_off() };
        // Never with guests running: their owner moves them off first (a powered-off server's
        // guests would simply be gone).
        let guests: Vec<String> =
            self.hv.list_domains()?.into_iter().filter(|d| d.domid != 0).map(|d| d.name).collect();
        if !guests.is_empty() {
            return Err(Error::Conflict {
                reason: format!("guest domains still run on this server: {}", guests.join(", ")),
            });
        }
        let (program, args) = cmd
            .split_first()
            .ok_or_else(|| Error::Internal { message: "the power-off command is empty".into() })?;
        let (program, args) = (program.clone(), args.to_vec());
        // Answer first; the shutdown begins a moment later, so the owner learns it was accepted.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            eprintln!("ovm-agent: powering the server off ({program} {})", args.join(" "));
            match std::process::Command::new(&program).args(&args).status() {
                Ok(st) if st.success() => {}
                Ok(st) => eprintln!("ovm-agent: {program} exited with {st}"),
                Err(e) => eprintln!("ovm-agent: cannot run {program}: {e}"),
            }
        });
        Ok(())
    }

    fn wake_on_lan(&self, mac: String, interface: String) -> Result<()> {
        self.hv.wake_on_lan(&mac, &interface)
    }

    fn claim_virtual_ip(&self, interface: String, address: std::net::Ipv4Addr, prefix: u8) -> Result<()> {
        self.hv.claim_virtual_ip(&crate::driver::vip::VirtualIp::new(&interface, address, prefix)?)
    }

    fn release_virtual_ip(&self, interface: String, address: std::net::Ipv4Addr, prefix: u8) -> Result<()> {
        self.hv.release_virtual_ip(&crate::driver::vip::VirtualIp::new(&interface, address, prefix)?)
    }

    fn cluster_join(&self, spec: crate::driver::ClusterSpec) -> Result<crate::driver::ClusterStatus> {
        // What comes over the wire is checked here again, before any backend sees it.
        spec.check()?;
        capability(self.hv.cluster(), "clusters")?.join(&spec)
    }

    fn cluster_leave(&self) -> Result<()> {
        capability(self.hv.cluster(), "clusters")?.leave()
    }

    fn cluster_status(&self) -> Result<Option<crate::driver::ClusterStatus>> {
        capability(self.hv.cluster(), "clusters")?.status()
    }

    fn storage_create(&self, path: String, size_bytes: u64) -> Result<()> {
        capability(self.hv.file_storage(), "file storage")?.create_file(&path, size_bytes)
    }

    fn storage_copy(&self, from: String, to: String) -> Result<()> {
        capability(self.hv.file_storage(), "file storage")?.copy_file(&from, &to)
    }

    fn storage_delete(&self, path: String) -> Result<()> {
        capability(self.hv.file_storage(), "file storage")?.delete_file(&path)
    }

    fn storage_discover(&self, server: v1::FileServerAccess) -> Result<Vec<v1::DiscoveredFileSystem>> {
        let found = capability(self.hv.file_storage(), "file storage")?.discover(&server.into())?;
        Ok(found.into_iter().map(Into::into).collect())
    }

    fn storage_mount(&self, source: v1::MountSource, mount_point: String) -> Result<()> {
        let source: crate::driver::MountSource = source.into();
        // What comes over the wire is checked here again, before any backend sees it.
        source.check()?;
        crate::driver::check_abs_path("mount_point", &mount_point)?;
        capability(self.hv.file_storage(), "file storage")?.mount(&source, &mount_point)
    }

    fn storage_unmount(&self, mount_point: String) -> Result<()> {
        crate::driver::check_abs_path("mount_point", &mount_point)?;
        capability(self.hv.file_storage(), "file storage")?.unmount(&mount_point)
    }

    fn storage_mounts(&self) -> Result<Vec<v1::FileSystemMount>> {
        let m = capability(self.hv.file_storage(), "file storage")?.mounts()?;
        Ok(m.into_iter().map(Into::into).collect())
    }

    fn storage_init_repository(&self, mount_point: String, repository: String) -> Result<()> {
        capability(self.hv.file_storage(), "file storage")?.init_repository(&mount_point, &repository)
    }

    fn storage_remove_repository(&self, mount_point: String, repository: String) -> Result<()> {
        capability(self.hv.file_storage(), "file storage")?.remove_repository(&mount_point, &repository)
    }

    fn storage_usage(&self, path: String) -> Result<v1::FsUsage> {
        capability(self.hv.file_storage(), "file storage")?.usage(&path).map(Into::into)
    }

    fn storage_resize(&self, path: String, size_bytes: u64) -> Result<()> {
        capability(self.hv.file_storage(), "file storage")?.resize_file(&path, size_bytes)
    }

    fn storage_file_size(&self, path: String) -> Result<Option<u64>> {
        capability(self.hv.file_storage(), "file storage")?.file_size(&path)
    }

    fn storage_write(&self, path: String, offset: u64, data: String) -> Result<()> {
        let data = v1::unbase64("data", &data)?;
        capability(self.hv.file_storage(), "file storage")?.write_file_at(&path, offset, &data)
    }

    fn storage_finish_write(&self, path: String) -> Result<()> {
        capability(self.hv.file_storage(), "file storage")?.finish_write(&path)
    }

    fn storage_put(&self, path: String, contents: String) -> Result<()> {
        let contents = v1::unbase64("contents", &contents)?;
        capability(self.hv.file_storage(), "file storage")?.put_file(&path, &contents)
    }

    fn storage_list_repository(
        &self,
        mount_point: String,
        after: Option<String>,
    ) -> Result<Vec<v1::RepositoryFile>> {
        let files = capability(self.hv.file_storage(), "file storage")?.list_repository(&mount_point)?;
        Ok(files
            .into_iter()
            .filter(|f| after.as_ref().is_none_or(|a| f.path > *a))
            .take(v1::LIST_PAGE)
            .map(Into::into)
            .collect())
    }

    fn storage_read_config(&self, path: String) -> Result<Option<String>> {
        capability(self.hv.file_storage(), "file storage")?.read_config(&path)
    }

    fn net_ports(&self) -> Result<Vec<v1::EthernetPort>> {
        Ok(capability(self.hv.network(), "network configuration")?
            .ports()?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    fn net_config(&self) -> Result<crate::driver::NetworkConfig> {
        capability(self.hv.network(), "network configuration")?.network_config()
    }

    fn net_apply(
        &self,
        changes: Vec<crate::driver::NetChange>,
        opts: crate::driver::ApplyOptions,
    ) -> Result<crate::driver::Applied> {
        // `opts.management` is the address the request arrived at (see `Inner::handle`).
        capability(self.hv.network(), "network configuration")?.apply(&changes, &opts)
    }

    fn net_confirm(&self, txn: u64) -> Result<crate::driver::TxnState> {
        capability(self.hv.network(), "network configuration")?.confirm(txn)
    }

    fn net_txn_state(&self, txn: u64) -> Result<crate::driver::TxnState> {
        capability(self.hv.network(), "network configuration")?.txn_state(txn)
    }

    fn nic_attach(&self, vm: VmId, nic: v1::NicSpec) -> Result<()> {
        self.hv.attach_nic(vm, &crate::driver::NicSpec { mac: nic.mac, bridge: Some(nic.bridge) })
    }

    fn nic_detach(&self, vm: VmId, mac: String) -> Result<()> {
        self.hv.detach_nic(vm, &mac)
    }

    fn domain_nics(&self, vm: VmId) -> Result<Vec<(String, String, bool)>> {
        self.hv.domain_nics(vm)
    }

    fn send_guest_message(&self, vm: VmId, key: String, value: String) -> Result<()> {
        crate::driver::check_guest_message(&key, &value)?;
        self.hv.send_guest_message(vm, &key, &value)
    }

    fn guest_messages(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        self.hv.guest_messages(vm)
    }

    fn remove_guest_message(&self, vm: VmId, key: String) -> Result<()> {
        crate::driver::check_guest_key(&key)?;
        self.hv.remove_guest_message(vm, &key)
    }

    fn guest_data(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        self.hv.guest_data(vm)
    }

    fn iscsi_initiator(&self) -> Result<String> {
        capability(self.hv.array_storage(), "storage arrays")?.initiator()
    }

    fn iscsi_discover(&self, portal: String) -> Result<Vec<String>> {
        crate::driver::check_portal(&portal)?;
        capability(self.hv.array_storage(), "storage arrays")?.discover_targets(&portal)
    }

    fn iscsi_login(&self, portal: String, target: String) -> Result<()> {
        crate::driver::check_portal(&portal)?;
        crate::driver::check_target(&target)?;
        capability(self.hv.array_storage(), "storage arrays")?.login(&portal, &target)
    }

    fn iscsi_logout(&self, portal: String, target: String) -> Result<()> {
        crate::driver::check_portal(&portal)?;
        crate::driver::check_target(&target)?;
        capability(self.hv.array_storage(), "storage arrays")?.logout(&portal, &target)
    }

    fn iscsi_sessions(&self) -> Result<Vec<v1::IscsiSession>> {
        Ok(capability(self.hv.array_storage(), "storage arrays")?
            .sessions()?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    fn iscsi_luns(&self, target: String) -> Result<Vec<v1::Lun>> {
        crate::driver::check_target(&target)?;
        Ok(capability(self.hv.array_storage(), "storage arrays")?
            .list_luns(&target)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    fn iscsi_rescan(&self, target: String) -> Result<()> {
        crate::driver::check_target(&target)?;
        capability(self.hv.array_storage(), "storage arrays")?.rescan(&target)
    }

    fn iscsi_forget(&self, target: String, lun: String) -> Result<()> {
        crate::driver::check_target(&target)?;
        capability(self.hv.array_storage(), "storage arrays")?.forget_lun(&target, &lun)
    }

    fn array_manage(
        &self,
        access: crate::driver::ArrayAdminAccess,
        call: crate::driver::ArrayOp,
    ) -> Result<crate::driver::ArrayAnswer> {
        // What the manager sends is checked again here: the access (host, credentials, pin) and
        // the call's arguments.
        access.check()?;
        let side = capability(self.hv.array_storage(), "storage arrays")?;
        let m = side.array_management(&access)?;
        call.apply(&*m)
    }
}

fn on_the_blocking_path() -> Error {
    Error::Internal { message: "ownership operation on the blocking path".into() }
}

async fn refuse<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    error: Error,
) -> std::result::Result<(), String> {
    let msg = error.to_string();
    if let Ok(f) = proto::encode(&AgentMessage::Refused { error }) {
        let _ = proto::write_frame(wr, &f).await;
    }
    Err(msg)
}

/// A capability of the served connection, or `Unsupported` if it lacks it.
fn capability<'a, T: ?Sized>(c: Option<&'a T>, what: &str) -> Result<&'a T> {
    c.ok_or_else(|| Error::Unsupported { what: format!("{what} on this server") })
}

fn describe_changes(changes: &[crate::driver::NetChange], opts: &crate::driver::ApplyOptions) -> String {
    let mut v: Vec<String> = changes.iter().take(8).map(|c| c.to_string()).collect();
    if changes.len() > 8 {
        v.push(format!("and {} more", changes.len() - 8));
    }
    format!("{}{}", v.join(", "), if opts.force { " (forced)" } else { "" })
}

fn op_name(op: &Op) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "request".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies_only_the_password() {
        let h = PasswordHash::new("s3cret").unwrap();
        assert!(h.verify("s3cret"));
        assert!(!h.verify("s3cret "));
        assert!(!h.verify(""));
        let bad = PasswordHash { salt: "zz".into(), ..h.clone() };
        assert!(!bad.verify("s3cret"));
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])).unwrap(), vec![0, 1, 254, 255]);
        assert!(unhex("abc").is_none());
    }
}
