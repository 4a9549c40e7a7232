//! The manager side: [`AgentDriver`] reaches servers' agents by IP or host name.
//!
//! Addresses: `HOST`, `HOST:PORT`, `[IPV6]:PORT` or `ovm://HOST[:PORT]`; the port defaults to
//! [`DEFAULT_PORT`]. The first connection to an address (discovery) accepts the agent's certificate
//! and, once ownership is taken, pins its fingerprint; every later connection requires that
//! fingerprint. The manager presents its own certificate, which the agent pins as its owner's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::proto::{
    self, AgentMessage, Client, ClientMessage, Op, Ownership, Reply, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use super::tls::{self, Identity, SeenCert};
use crate::driver::{
    DiscoveredFileSystem, DomainChange, DomainOps, DomainSpec, DomainStatus, Driver, DriverContext,
    DriverState, FileServerAccess, FileStoragePlugin, FileSystemMount, FsUsage, HostInfo, HostLoad, HostOps,
    MigrationOps, MigrationTicket, MountSource, RemoteAgents, ServerConnection,
};
use crate::model::VmId;
use crate::sync::lock;
use crate::{Error, Result};

/// The agent's TCP port.
pub const DEFAULT_PORT: u16 = 8899;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One runtime (one thread) carries the I/O of every agent connection of the process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ovm-agent-io")
            .enable_all()
            .build()
            .expect("the agent I/O runtime starts")
    })
}

/// Runs `fut` on the agent I/O runtime and waits for it from any thread (async or not).
fn run<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std_mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the agent I/O runtime runs")
}

/// Host and port of an agent address; `None` if the address is not one.
pub fn parse_address(address: &str) -> Option<(String, u16)> {
    let a = address.trim();
    let a = match a.strip_prefix("ovm://") {
        Some(rest) => rest.trim_end_matches('/'),
        None if a.contains("://") => return None,
        None => a,
    };
    if a.is_empty() || a.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    if let Ok(ip) = a.parse::<std::net::Ipv6Addr>() {
        return Some((ip.to_string(), DEFAULT_PORT));
    }
    if let Some(rest) = a.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match tail {
            "" => DEFAULT_PORT,
            t => t.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host.to_owned(), port));
    }
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (a, DEFAULT_PORT),
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    (valid && port != 0).then(|| (host.to_owned(), port))
}

/// Key of the manager's certificate in the driver's state (stored as `agent.identity`).
const IDENTITY_KEY: &str = "identity";
/// Key prefix of pinned agent certificates, by address (stored as `agent.pin:ADDRESS`).
const PIN_KEY: &str = "pin:";

/// The driver of servers reached through their agent.
///
/// Its persistent state (the manager's certificate and the pinned agent certificates) lives in the
/// [`DriverState`] the manager hands it at [`Driver::attach`]; a driver made with
/// [`AgentDriver::new`] and never attached keeps its pins in memory.
#[derive(Debug, Clone, Default)]
pub struct AgentDriver {
    identity: Arc<OnceLock<Arc<Identity>>>,
    pins: Arc<Mutex<HashMap<String, String>>>,
    state: Arc<OnceLock<Arc<dyn DriverState>>>,
}

impl AgentDriver {
    /// A driver presenting `identity` (the manager's certificate) to agents.
    pub fn new(identity: Identity) -> AgentDriver {
        let d = AgentDriver::default();
        let _ = d.identity.set(Arc::new(identity));
        d
    }

    /// A driver whose certificate comes from its persistent state when the manager attaches it
    /// (generated and stored the first time).
    pub fn persistent() -> AgentDriver {
        AgentDriver::default()
    }

    fn identity(&self) -> Result<Arc<Identity>> {
        self.identity.get().cloned().ok_or_else(|| Error::Internal {
            message: "the agent driver has no certificate: attach it to a manager first".into(),
        })
    }

    /// Require `fingerprint` from the agent at `address` from now on (persisted when attached).
    pub fn pin(&self, address: &str, fingerprint: &str) {
        lock(&self.pins).insert(address.to_owned(), fingerprint.to_owned());
        if let Some(st) = self.state.get() {
            if let Err(e) = st.put(&format!("{PIN_KEY}{address}"), fingerprint) {
                log::warn!("cannot persist the certificate pin of {address}: {e}");
            }
        }
    }

    /// The pinned fingerprint of the agent at `address`.
    pub fn pinned(&self, address: &str) -> Option<String> {
        lock(&self.pins).get(address).cloned()
    }

    /// Forget the pin of `address`.
    pub fn forget(&self, address: &str) {
        lock(&self.pins).remove(address);
        if let Some(st) = self.state.get() {
            if let Err(e) = st.delete(&format!("{PIN_KEY}{address}")) {
                log::warn!("cannot forget the certificate pin of {address}: {e}");
            }
        }
    }

    /// The manager certificate's fingerprint (what agents pin as their owner).
    pub fn fingerprint(&self) -> Result<String> {
        self.identity()?.fingerprint()
    }

    fn open(&self, address: &str, manager_id: &str) -> Result<(Arc<AgentConnection>, Ownership)> {
        self.open_for(address, manager_id, false)
    }

    /// Open a connection; with `take_over`, to an agent another manager owns, for a takeover.
    fn open_for(
        &self,
        address: &str,
        manager_id: &str,
        take_over: bool,
    ) -> Result<(Arc<AgentConnection>, Ownership)> {
        let (host, port) = parse_address(address)
            .ok_or_else(|| Error::invalid("address", format!("{address:?} is not an agent address")))?;
        let pin = self.pinned(address);
        let seen = Arc::new(SeenCert::default());
        let cfg = tls::client_config(&*self.identity()?, pin.clone(), seen.clone())?;
        let addr = address.to_owned();
        let hello = ClientMessage::Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            manager_id: manager_id.to_owned(),
            take_over,
        };
        let seen2 = seen.clone();
        let (stream, ownership) = run(async move {
            let mut tls = dial(cfg, &host, port, &addr, pin, seen2).await?;
            match first_exchange(&mut tls, &hello, &addr, "hello").await? {
                AgentMessage::Welcome { ownership, .. } => Ok((tls, ownership)),
                AgentMessage::Refused { error } => Err(error),
                other => Err(Error::backend(&addr, format!("unexpected answer to hello: {other:?}"))),
            }
        })?;
        let fingerprint = seen.get().unwrap_or_default();
        Ok((AgentConnection::start(address, fingerprint, stream, self.identity()?), ownership))
    }
}

/// Send a connection's first message and read the agent's answer to it (`what` names it in
/// errors).
async fn first_exchange(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    first: &ClientMessage,
    addr: &str,
    what: &str,
) -> Result<AgentMessage> {
    let frame = proto::encode(first)?;
    proto::write_frame(tls, &frame).await.map_err(|e| Error::backend(addr, format!("send: {e}")))?;
    let mut buf = Vec::new();
    tokio::time::timeout(CONNECT_TIMEOUT, proto::read_frame(tls, &mut buf))
        .await
        .map_err(|_| Error::Timeout { what: format!("the answer of {addr} to the {what}"), millis: 10_000 })?
        .map_err(|e| Error::backend(addr, format!("{what}: {e}")))?;
    proto::decode::<AgentMessage>(&buf).map_err(|e| Error::backend(addr, e))
}

/// Connect to the agent at `host`:`port` (`addr` in messages) and shake hands over TLS with
/// `cfg`; a certificate other than the pinned `pin` is a permission error.
async fn dial(
    cfg: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    addr: &str,
    pin: Option<String>,
    seen: Arc<SeenCert>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Error::Timeout { what: format!("connect to the agent at {addr}"), millis: 10_000 })?
        .map_err(|e| Error::backend(addr, format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let tls_res = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(tls::server_name(host), tcp))
        .await
        .map_err(|_| Error::Timeout { what: format!("TLS handshake with {addr}"), millis: 10_000 })?;
    match tls_res {
        Ok(s) => Ok(s),
        Err(e) => Err(match (&pin, seen.get()) {
            (Some(p), Some(s)) if *p != s => Error::PermissionDenied {
                reason: format!("the agent at {addr} presented certificate {s}, not the pinned {p}"),
            },
            _ => Error::backend(addr, format!("TLS handshake: {e}")),
        }),
    }
}

impl AgentDriver {
    /// Ask the agent at `address` (owned by this manager) to restart its process; its domains keep
    /// running and existing connections drop.
    pub fn restart_agent(&self, address: &str, manager_id: &str) -> Result<()> {
        let (conn, ownership) = self.open(address, manager_id)?;
        if ownership != Ownership::OwnedByYou {
            return Err(Error::PermissionDenied {
                reason: format!("the agent at {address} is not owned by this manager"),
            });
        }
        conn.restart_agent()
    }
}

impl RemoteAgents for AgentDriver {
    fn certificate_fingerprint(&self) -> Result<String> {
        self.fingerprint()
    }

    fn pinned_fingerprint(&self, address: &str) -> Option<String> {
        self.pinned(address)
    }

    fn restart_agent(&self, address: &str, manager_id: &str) -> Result<()> {
        AgentDriver::restart_agent(self, address, manager_id)
    }
}

impl Driver for AgentDriver {
    fn name(&self) -> &'static str {
        "agent"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn handles(&self, address: &str) -> bool {
        parse_address(address).is_some()
    }

    fn attach(&self, ctx: DriverContext) -> Result<()> {
        let st = ctx.state;
        match st.get_secret(IDENTITY_KEY)? {
            Some(s) => {
                let id: Identity = serde_json::from_str(&s)?;
                id.validate()?;
                let _ = self.identity.set(Arc::new(id));
            }
            None => {
                let id = match self.identity.get() {
                    Some(id) => id.clone(),
                    None => Arc::new(Identity::generate(&format!("ovm-manager-{}", ctx.manager_id))?),
                };
                st.put_secret(IDENTITY_KEY, &serde_json::to_string(&*id)?)?;
                let _ = self.identity.set(id);
            }
        }
        {
            let mut pins = lock(&self.pins);
            for (key, fp) in st.list(PIN_KEY)? {
                if !fp.is_empty() {
                    pins.insert(key[PIN_KEY.len()..].to_owned(), fp);
                }
            }
        }
        let _ = self.state.set(st);
        Ok(())
    }

    fn remote_agents(&self) -> Option<&dyn RemoteAgents> {
        Some(self)
    }

    fn connect(&self, address: &str, password: &str, manager_id: &str) -> Result<Arc<dyn ServerConnection>> {
        let (conn, _) = self.open(address, manager_id)?;
        conn.take_ownership(password.to_owned(), false)?;
        self.pin(address, &conn.fingerprint);
        Ok(conn)
    }

    fn take_over(
        &self,
        address: &str,
        password: &str,
        manager_id: &str,
    ) -> Result<Arc<dyn ServerConnection>> {
        let (conn, _) = self.open_for(address, manager_id, true)?;
        conn.take_ownership(password.to_owned(), true)?;
        self.pin(address, &conn.fingerprint);
        Ok(conn)
    }

    fn reconnect(&self, address: &str, manager_id: &str) -> Result<Arc<dyn ServerConnection>> {
        if self.pinned(address).is_none() {
            return Err(Error::PermissionDenied {
                reason: format!(
                    "no certificate is pinned for the agent at {address}; discover the server again"
                ),
            });
        }
        let (conn, ownership) = self.open(address, manager_id)?;
        if ownership != Ownership::OwnedByYou {
            return Err(Error::PermissionDenied {
                reason: format!("the agent at {address} is no longer owned by this manager"),
            });
        }
        Ok(conn)
    }

    fn connection_loss_is_host_loss(&self) -> bool {
        false
    }

    /// The agents listen on every address of their server: the pool's address reaches the agent
    /// of the member holding it, on the members' port. Its certificate must be a member's pinned
    /// one (nothing but the hello has been sent before it is checked).
    fn reach_pool(
        &self,
        virtual_ip: std::net::IpAddr,
        members: &[String],
        manager_id: &str,
    ) -> Result<(String, Arc<dyn ServerConnection>)> {
        let port = members
            .iter()
            .find_map(|m| parse_address(m).map(|(_, p)| p))
            .ok_or_else(|| Error::invalid("members", "no agent address among the pool's servers"))?;
        let address = std::net::SocketAddr::new(virtual_ip, port).to_string();
        let (conn, ownership) = self.open(&address, manager_id)?;
        let member = members
            .iter()
            .find(|m| self.pinned(m).is_some_and(|p| p == conn.fingerprint))
            .ok_or_else(|| Error::PermissionDenied {
                reason: format!(
                    "the agent at {address} presented certificate {}, which is no pool member's",
                    conn.fingerprint
                ),
            })?;
        if ownership != Ownership::OwnedByYou {
            return Err(Error::PermissionDenied {
                reason: format!("the agent at {address} is not owned by this manager"),
            });
        }
        Ok((member.clone(), conn))
    }

    fn release(&self, address: &str, manager_id: &str) -> Result<()> {
        let (conn, ownership) = self.open(address, manager_id)?;
        if ownership == Ownership::OwnedByYou {
            conn.release_ownership()?;
        }
        self.forget(address);
        Ok(())
    }
}

type Pending = Arc<Mutex<HashMap<u64, std_mpsc::Sender<Result<Reply>>>>>;

/// A connection to one agent; the manager's [`ServerConnection`] for that server.
#[derive(Debug)]
pub struct AgentConnection {
    address: String,
    /// This manager's identity, for the connections a console opens beside this one.
    identity: Arc<Identity>,
    /// The agent's address as connected.
    peer_ip: Option<std::net::IpAddr>,
    fingerprint: String,
    frames: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
    changes: broadcast::Sender<DomainChange>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AgentConnection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl AgentConnection {
    fn start(
        address: &str,
        fingerprint: String,
        stream: tokio_rustls::client::TlsStream<TcpStream>,
        identity: Arc<Identity>,
    ) -> Arc<AgentConnection> {
        let peer_ip = stream.get_ref().0.peer_addr().ok().map(|a| a.ip());
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (frames, mut out) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let changes = broadcast::channel(4096).0;
        let writer = runtime().spawn(async move {
            while let Some(f) = out.recv().await {
                if proto::write_frame(&mut wr, &f).await.is_err() {
                    break;
                }
            }
        });
        let (p, a, c, addr) = (pending.clone(), alive.clone(), changes.clone(), address.to_owned());
        let reader = runtime().spawn(async move {
            let mut buf = Vec::new();
            let reason = loop {
                if let Err(e) = proto::read_frame(&mut rd, &mut buf).await {
                    break e.to_string();
                }
                match proto::decode::<AgentMessage>(&buf) {
                    Ok(AgentMessage::Response { id, result }) => {
                        if let Some(tx) = lock(&p).remove(&id) {
                            let _ = tx.send(result);
                        }
                    }
                    Ok(AgentMessage::Change { change }) => {
                        let _ = c.send(change.into());
                    }
                    Ok(AgentMessage::Refused { error }) => break error.to_string(),
                    Ok(AgentMessage::ProtocolError { message }) => {
                        log::warn!("the agent at {addr} could not read a request: {message}");
                    }
                    Ok(AgentMessage::Welcome { .. }) => break "a second welcome from the agent".into(),
                    Ok(AgentMessage::Receiving) | Ok(AgentMessage::ConsoleOpen) => {
                        break "a stream's answer on a manager's connection".into()
                    }
                    Err(e) => break format!("malformed message from the agent: {e}"),
                }
            };
            a.store(false, Ordering::SeqCst);
            for (_, tx) in lock(&p).drain() {
                let _ =
                    tx.send(Err(Error::backend(&addr, format!("connection to the agent lost: {reason}"))));
            }
            let _ = c.send(DomainChange::Disconnected { reason });
        });
        Arc::new(AgentConnection {
            peer_ip,
            identity,
            address: address.to_owned(),
            fingerprint,
            frames,
            pending,
            next_id: AtomicU64::new(1),
            alive,
            changes,
            tasks: vec![writer, reader],
        })
    }

    /// The fingerprint of the agent's certificate.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Send `op` and wait for its answer.
    pub fn call(&self, op: Op) -> Result<Reply> {
        if !self.alive.load(Ordering::SeqCst) {
            return Err(Error::backend(&self.address, "connection to the agent lost"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let timeout = op.timeout();
        let frame = proto::encode(&ClientMessage::Request { id, op })?;
        let (tx, rx) = std_mpsc::channel();
        lock(&self.pending).insert(id, tx);
        if self.frames.send(frame).is_err() || !self.alive.load(Ordering::SeqCst) {
            lock(&self.pending).remove(&id);
            return Err(Error::backend(&self.address, "connection to the agent lost"));
        }
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(Error::Timeout {
                    what: format!("answer from the agent at {}", self.address),
                    millis: timeout.as_millis() as u64,
                })
            }
        }
    }
}

/// Every v1 operation as a method (from the one declaration in [`proto::v1`]).
impl Client for AgentConnection {
    fn call(&self, op: Op) -> Result<Reply> {
        AgentConnection::call(self, op)
    }

    fn unexpected(&self, r: Reply) -> Error {
        Error::backend(&self.address, format!("unexpected answer from the agent: {r:?}"))
    }
}

impl HostOps for AgentConnection {
    fn host_info(&self) -> Result<HostInfo> {
        Ok(Client::host_info(self)?.into())
    }

    fn load(&self) -> Result<HostLoad> {
        Ok(Client::load(self)?.into())
    }

    fn power_off(&self) -> Result<()> {
        Client::power_off(self)
    }

    fn wake_on_lan(&self, mac: &str, interface: &str) -> Result<()> {
        Client::wake_on_lan(self, mac.to_owned(), interface.to_owned())
    }

    fn claim_virtual_ip(&self, vip: &crate::driver::vip::VirtualIp) -> Result<()> {
        Client::claim_virtual_ip(self, vip.interface().to_owned(), vip.address(), vip.prefix())
    }

    fn release_virtual_ip(&self, vip: &crate::driver::vip::VirtualIp) -> Result<()> {
        Client::release_virtual_ip(self, vip.interface().to_owned(), vip.address(), vip.prefix())
    }
}

impl crate::driver::ClusterOps for AgentConnection {
    fn join(&self, spec: &crate::driver::ClusterSpec) -> Result<crate::driver::ClusterStatus> {
        spec.check()?;
        Client::cluster_join(self, spec.clone())
    }

    fn leave(&self) -> Result<()> {
        Client::cluster_leave(self)
    }

    fn status(&self) -> Result<Option<crate::driver::ClusterStatus>> {
        Client::cluster_status(self)
    }
}

impl DomainOps for AgentConnection {
    fn list_domains(&self) -> Result<Vec<DomainStatus>> {
        Ok(Client::list_domains(self)?.into_iter().map(Into::into).collect())
    }

    fn create_domain(&self, spec: &DomainSpec) -> Result<u32> {
        Client::create_domain(self, Box::new(spec.into()))
    }

    fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()> {
        Client::shutdown(self, vm, timeout.as_millis() as u64)
    }

    fn reboot(&self, vm: VmId, timeout: Duration) -> Result<()> {
        Client::reboot(self, vm, timeout.as_millis() as u64)
    }

    fn destroy(&self, vm: VmId) -> Result<()> {
        Client::destroy(self, vm)
    }

    fn pause(&self, vm: VmId) -> Result<()> {
        Client::pause(self, vm)
    }

    fn unpause(&self, vm: VmId) -> Result<()> {
        Client::unpause(self, vm)
    }

    fn suspend(&self, vm: VmId, path: &str) -> Result<()> {
        Client::suspend(self, vm, path.to_owned())
    }

    fn restore(&self, spec: &DomainSpec, path: &str) -> Result<u32> {
        Client::restore(self, Box::new(spec.into()), path.to_owned())
    }

    fn set_memory(&self, vm: VmId, memory_mib: u64) -> Result<()> {
        Client::set_memory(self, vm, memory_mib)
    }

    fn set_vcpus(&self, vm: VmId, vcpus: u32) -> Result<()> {
        Client::set_vcpus(self, vm, vcpus)
    }

    fn console(&self, vm: VmId) -> Result<String> {
        Client::console(self, vm)
    }

    fn watch(&self) -> Result<broadcast::Receiver<DomainChange>> {
        Ok(self.changes.subscribe())
    }

    fn attach_nic(&self, vm: VmId, nic: &crate::driver::NicSpec) -> Result<()> {
        let bridge = nic
            .bridge
            .clone()
            .ok_or_else(|| Error::invalid("bridge", "a hot-plugged NIC names its bridge"))?;
        Client::nic_attach(self, vm, proto::v1::NicSpec { mac: nic.mac.clone(), bridge })
    }

    fn detach_nic(&self, vm: VmId, mac: &str) -> Result<()> {
        Client::nic_detach(self, vm, mac.to_owned())
    }

    fn domain_nics(&self, vm: VmId) -> Result<Vec<(String, String, bool)>> {
        Client::domain_nics(self, vm)
    }

    /// A connection of its own to the agent (the same pinned certificate), whose bytes after the
    /// agent's answer are the console's RFB protocol.
    fn open_console(&self, vm: VmId) -> Result<std::os::unix::net::UnixStream> {
        let (host, port) = parse_address(&self.address).ok_or_else(|| {
            Error::invalid("address", format!("{:?} is not an agent address", self.address))
        })?;
        let pin = Some(self.fingerprint.clone());
        let seen = Arc::new(SeenCert::default());
        let cfg = tls::client_config(&self.identity, pin.clone(), seen.clone())?;
        let addr = self.address.clone();
        let tls = run(async move {
            let mut tls = dial(cfg, &host, port, &addr, pin, seen).await?;
            match first_exchange(&mut tls, &ClientMessage::Console { vm }, &addr, "console request").await? {
                AgentMessage::ConsoleOpen => Ok(tls),
                AgentMessage::Refused { error } => Err(error),
                other => {
                    Err(Error::backend(&addr, format!("unexpected answer to a console request: {other:?}")))
                }
            }
        })?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::Internal { message: format!("socket pair: {e}") })?;
        let addr = self.address.clone();
        runtime().spawn(async move {
            if let Err(e) = super::relay(tls, theirs).await {
                log::debug!("console of {vm} at {addr} ended: {e}");
            }
        });
        Ok(ours)
    }

    fn send_guest_message(&self, vm: VmId, key: &str, value: &str) -> Result<()> {
        Client::send_guest_message(self, vm, key.to_owned(), value.to_owned())
    }

    fn guest_messages(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        Client::guest_messages(self, vm)
    }

    fn remove_guest_message(&self, vm: VmId, key: &str) -> Result<()> {
        Client::remove_guest_message(self, vm, key.to_owned())
    }

    fn guest_data(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        Client::guest_data(self, vm)
    }
}

/// The server's network configuration through the agent, which protects the link this
/// connection runs over.
impl crate::driver::NetworkOps for AgentConnection {
    fn ports(&self) -> Result<Vec<crate::model::EthernetPort>> {
        Ok(self.net_ports()?.into_iter().map(Into::into).collect())
    }

    fn network_config(&self) -> Result<crate::driver::NetworkConfig> {
        self.net_config()
    }

    fn apply(
        &self,
        changes: &[crate::driver::NetChange],
        opts: &crate::driver::ApplyOptions,
    ) -> Result<crate::driver::Applied> {
        self.net_apply(changes.to_vec(), crate::driver::ApplyOptions { management: None, ..opts.clone() })
    }

    fn confirm(&self, txn: u64) -> Result<crate::driver::TxnState> {
        self.net_confirm(txn)
    }

    fn txn_state(&self, txn: u64) -> Result<crate::driver::TxnState> {
        self.net_txn_state(txn)
    }

    fn management_address(&self) -> Option<std::net::IpAddr> {
        self.peer_ip
    }
}

/// The storage-array side through the agent: the server's generic iSCSI initiator.
impl crate::driver::StorageArrayPlugin for AgentConnection {
    fn initiator(&self) -> Result<String> {
        self.iscsi_initiator()
    }

    fn discover_targets(&self, portal: &str) -> Result<Vec<String>> {
        self.iscsi_discover(portal.to_owned())
    }

    fn login(&self, portal: &str, target: &str) -> Result<()> {
        self.iscsi_login(portal.to_owned(), target.to_owned())
    }

    fn logout(&self, portal: &str, target: &str) -> Result<()> {
        self.iscsi_logout(portal.to_owned(), target.to_owned())
    }

    fn sessions(&self) -> Result<Vec<crate::driver::IscsiSession>> {
        Ok(Client::iscsi_sessions(self)?.into_iter().map(Into::into).collect())
    }

    fn list_luns(&self, target: &str) -> Result<Vec<crate::driver::Lun>> {
        Ok(self.iscsi_luns(target.to_owned())?.into_iter().map(Into::into).collect())
    }

    fn rescan(&self, target: &str) -> Result<()> {
        self.iscsi_rescan(target.to_owned())
    }

    fn forget_lun(&self, target: &str, id: &str) -> Result<()> {
        self.iscsi_forget(target.to_owned(), id.to_owned())
    }

    fn array_management(
        &self,
        access: &crate::driver::ArrayAdminAccess,
    ) -> Result<Box<dyn crate::driver::ArrayManagement + '_>> {
        access.check()?;
        let access = access.clone();
        Ok(Box::new(crate::driver::ArrayOpClient(move |call| self.array_manage(access.clone(), call))))
    }
}

/// File storage through the agent: every operation of the file-system plug-in side.
impl FileStoragePlugin for AgentConnection {
    fn discover(&self, server: &FileServerAccess) -> Result<Vec<DiscoveredFileSystem>> {
        Ok(self.storage_discover(server.into())?.into_iter().map(Into::into).collect())
    }

    fn mount(&self, source: &MountSource, mount_point: &str) -> Result<()> {
        self.storage_mount(source.into(), mount_point.to_owned())
    }

    fn unmount(&self, mount_point: &str) -> Result<()> {
        self.storage_unmount(mount_point.to_owned())
    }

    fn mounts(&self) -> Result<Vec<FileSystemMount>> {
        Ok(self.storage_mounts()?.into_iter().map(Into::into).collect())
    }

    fn init_repository(&self, mount_point: &str, repository: &str) -> Result<()> {
        self.storage_init_repository(mount_point.to_owned(), repository.to_owned())
    }

    fn remove_repository(&self, mount_point: &str, repository: &str) -> Result<()> {
        self.storage_remove_repository(mount_point.to_owned(), repository.to_owned())
    }

    fn usage(&self, path: &str) -> Result<FsUsage> {
        self.storage_usage(path.to_owned()).map(Into::into)
    }

    fn create_file(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.storage_create(path.to_owned(), size_bytes)
    }

    fn resize_file(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.storage_resize(path.to_owned(), size_bytes)
    }

    fn copy_file(&self, from: &str, to: &str) -> Result<()> {
        self.storage_copy(from.to_owned(), to.to_owned())
    }

    fn delete_file(&self, path: &str) -> Result<()> {
        self.storage_delete(path.to_owned())
    }

    fn file_size(&self, path: &str) -> Result<Option<u64>> {
        self.storage_file_size(path.to_owned())
    }

    fn write_file_at(&self, path: &str, offset: u64, data: &[u8]) -> Result<()> {
        self.storage_write(path.to_owned(), offset, super::proto::v1::base64(data))
    }

    fn finish_write(&self, path: &str) -> Result<()> {
        self.storage_finish_write(path.to_owned())
    }

    fn put_file(&self, path: &str, contents: &[u8]) -> Result<()> {
        self.storage_put(path.to_owned(), super::proto::v1::base64(contents))
    }

    fn list_repository(&self, mount_point: &str) -> Result<Vec<crate::driver::RepositoryFile>> {
        // Page by page: one answer must fit in a frame.
        let mut out: Vec<crate::driver::RepositoryFile> = Vec::new();
        loop {
            let after = out.last().map(|f| f.path.clone());
            let page = self.storage_list_repository(mount_point.to_owned(), after)?;
            let n = page.len();
            out.extend(page.into_iter().map(Into::into));
            if n < super::proto::v1::LIST_PAGE || out.len() > crate::driver::MAX_LISTED_FILES {
                return Ok(out);
            }
        }
    }

    fn read_config(&self, path: &str) -> Result<Option<String>> {
        self.storage_read_config(path.to_owned())
    }
}

/// Migration between agents: the destination agent issues a one-time ticket for the source agent's
/// certificate (this connection's pin of it), and the source agent sends the domain to the
/// destination agent directly, checking its certificate against the manager's pin.
impl MigrationOps for AgentConnection {
    fn identity(&self) -> Result<String> {
        Ok(self.fingerprint.clone())
    }

    fn prepare_incoming(
        &self,
        spec: &DomainSpec,
        source: &str,
        mode: crate::model::MigrationMode,
    ) -> Result<MigrationTicket> {
        let t = Client::prepare_incoming(self, Box::new(spec.into()), source.to_owned(), mode.into())?;
        Ok(MigrationTicket {
            vm: spec.uuid,
            destination: t.destination,
            token: t.token,
            peer: self.fingerprint.clone(),
            mode,
        })
    }

    fn cancel_incoming(&self, ticket: &MigrationTicket) -> Result<()> {
        Client::cancel_incoming(self, ticket.token.clone())
    }

    fn send(&self, vm: VmId, ticket: &MigrationTicket, live: bool) -> Result<()> {
        if ticket.vm != vm {
            return Err(Error::invalid("ticket", format!("the ticket admits {}, not {vm}", ticket.vm)));
        }
        self.send_domain(
            vm,
            ticket.destination.clone(),
            ticket.token.clone(),
            ticket.peer.clone(),
            live,
            ticket.mode.into(),
        )
    }
}

/// What the agent forwards: host, domains, file storage and migration as protocol v1 carries them.
impl ServerConnection for AgentConnection {
    fn array_storage(&self) -> Option<&dyn crate::driver::StorageArrayPlugin> {
        Some(self)
    }

    fn cluster(&self) -> Option<&dyn crate::driver::ClusterOps> {
        Some(self)
    }

    fn file_storage(&self) -> Option<&dyn FileStoragePlugin> {
        Some(self)
    }

    fn migration(&self) -> Option<&dyn MigrationOps> {
        Some(self)
    }

    fn network(&self) -> Option<&dyn crate::driver::NetworkOps> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let ok = |a: &str, h: &str, p: u16| assert_eq!(parse_address(a), Some((h.to_owned(), p)), "{a}");
        ok("10.0.0.5", "10.0.0.5", 8899);
        ok("10.0.0.5:18899", "10.0.0.5", 18899);
        ok("xen1.example.com", "xen1.example.com", 8899);
        ok("ovm://xen1:9000", "xen1", 9000);
        ok("ovm://xen1/", "xen1", 8899);
        ok("[::1]:8000", "::1", 8000);
        ok("fe80::1", "fe80::1", 8899);
        for bad in ["", "sim://x", "xen:///", "host:0", "host:99999", "a b", "h/x", "user@h", "[::1", ":80"] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
    }
}
