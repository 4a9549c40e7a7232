//! The asynchronous xenstore client.
//!
//! One connection carries many requests at once: each request gets a fresh
//! request id and a oneshot channel in a pending map, and a reader task routes
//! every reply to its request by id. Watch events are routed by token to
//! [`WatchStream`]s. When the connection drops, outstanding requests fail with
//! [`XenError::Disconnected`]; with auto-reconnect (the default) the client
//! reconnects in the background and re-arms every live watch, and the next
//! request uses the new connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::error::{XenError, XenResult, XsErrno};
use super::perms::Perms;
use super::transport::{ReadHalf, Transport, WriteHalf};
use super::wire::{self, Decoder, Message, MsgType, WatchEvent};

/// Tunables of a [`XsClient`].
#[derive(Debug, Clone)]
pub struct XsConfig {
    /// How long one request may wait for its reply (`None`: forever).
    pub request_timeout: Option<Duration>,
    /// Reconnect after the connection is lost (and re-arm watches).
    pub auto_reconnect: bool,
    /// How many times [`XsClient::transaction`] tries a transaction that
    /// keeps ending in `EAGAIN`.
    pub max_transaction_attempts: u32,
    /// Most requests in flight at once on one connection (`None`: no
    /// limit). Over `/dev/xen/xenbus` the client always keeps a single
    /// request in flight, whatever is set here: Linux's xenbus device hands
    /// the request payload to its sender thread by reference to a per-file
    /// buffer, which the next `write(2)` overwrites, so pipelined requests
    /// there can be corrupted (seen on Linux 6.1 under Xen 4.17).
    pub max_in_flight: Option<usize>,
}

impl Default for XsConfig {
    fn default() -> Self {
        XsConfig {
            request_timeout: Some(Duration::from_secs(30)),
            auto_reconnect: true,
            max_transaction_attempts: 16,
            max_in_flight: None,
        }
    }
}

type Reply = XenResult<Message>;

#[derive(Debug, Default)]
struct Pending {
    alive: bool,
    waiters: HashMap<u32, oneshot::Sender<Reply>>,
}

/// One live connection: its write half and its pending requests.
struct Conn {
    writer: tokio::sync::Mutex<WriteHalf>,
    /// Limits requests in flight (see [`XsConfig::max_in_flight`]).
    inflight: Option<tokio::sync::Semaphore>,
    pending: Mutex<Pending>,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Conn {
    fn is_alive(&self) -> bool {
        lock(&self.pending).alive
    }

    /// Marks the connection dead and fails every waiter.
    fn kill(&self, why: impl Fn() -> XenError) {
        let waiters = {
            let mut p = lock(&self.pending);
            p.alive = false;
            std::mem::take(&mut p.waiters)
        };
        if let Some(s) = &self.inflight {
            s.close();
        }
        for (_, w) in waiters {
            let _ = w.send(Err(why()));
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.reader).take() {
            h.abort();
        }
    }
}

#[derive(Debug)]
struct WatchReg {
    path: String,
    tx: mpsc::UnboundedSender<WatchEvent>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    config: XsConfig,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    watches: Mutex<HashMap<String, WatchReg>>,
    next_req: AtomicU32,
    next_token: AtomicU64,
    reconnects: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short critical sections cannot leave
    // the maps inconsistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An asynchronous xenstore client (cheap to clone; clones share the
/// connection).
#[derive(Debug, Clone)]
pub struct XsClient {
    inner: Arc<Inner>,
}

/// The transaction id of "no transaction".
const NO_TX: u32 = 0;

impl XsClient {
    /// Connects over the first available transport (xenstored's socket, then
    /// `/dev/xen/xenbus`).
    pub async fn connect_default() -> XenResult<XsClient> {
        XsClient::connect(Transport::detect()?, XsConfig::default()).await
    }

    /// Connects over `transport`.
    pub async fn connect(transport: Transport, config: XsConfig) -> XenResult<XsClient> {
        let client = XsClient {
            inner: Arc::new(Inner {
                transport,
                config,
                conn: tokio::sync::Mutex::new(None),
                watches: Mutex::new(HashMap::new()),
                next_req: AtomicU32::new(1),
                next_token: AtomicU64::new(1),
                reconnects: AtomicU64::new(0),
            }),
        };
        client.connection().await?;
        Ok(client)
    }

    /// The transport this client uses.
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// How many times the connection was re-established after a loss.
    pub fn reconnect_count(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// True while the current connection is up.
    pub async fn is_connected(&self) -> bool {
        self.inner.conn.lock().await.as_ref().is_some_and(|c| c.is_alive())
    }

    // -- connection management ------------------------------------------

    async fn connection(&self) -> XenResult<Arc<Conn>> {
        Inner::connection(&self.inner).await
    }

    // -- the request path -----------------------------------------------

    async fn request(&self, ty: MsgType, tx_id: u32, payload: Vec<u8>, what: &str) -> XenResult<Message> {
        let conn = self.connection().await?;
        Inner::request_on(&self.inner, &conn, ty, tx_id, payload, what).await
    }

    // -- operations (tx = 0 outside a transaction) -----------------------

    async fn op_read(&self, tx: u32, path: &str) -> XenResult<Vec<u8>> {
        wire::check_path(path)?;
        Ok(self.request(MsgType::Read, tx, wire::nul_strings(&[path]), path).await?.payload)
    }

    async fn op_write(&self, tx: u32, path: &str, value: &[u8]) -> XenResult<()> {
        wire::check_path(path)?;
        let mut p = wire::nul_strings(&[path]);
        p.extend_from_slice(value);
        if p.len() > wire::PAYLOAD_MAX {
            return Err(XenError::TooLarge { len: p.len(), limit: wire::PAYLOAD_MAX });
        }
        self.request(MsgType::Write, tx, p, path).await.map(drop)
    }

    async fn op_simple(&self, ty: MsgType, tx: u32, path: &str) -> XenResult<()> {
        wire::check_path(path)?;
        self.request(ty, tx, wire::nul_strings(&[path]), path).await.map(drop)
    }

    async fn op_directory(&self, tx: u32, path: &str) -> XenResult<Vec<String>> {
        wire::check_path(path)?;
        match self.request(MsgType::Directory, tx, wire::nul_strings(&[path]), path).await {
            Ok(m) => wire::split_strings(&m.payload),
            Err(e) if matches!(e.xs_errno(), Some(XsErrno::E2big)) => self.op_directory_part(tx, path).await,
            Err(e) => Err(e),
        }
    }

    /// `DIRECTORY_PART` loop for directories whose listing exceeds one
    /// payload; restarts if the node's generation changes in between.
    async fn op_directory_part(&self, tx: u32, path: &str) -> XenResult<Vec<String>> {
        let mut restarts = 0;
        'outer: loop {
            let mut gen: Option<String> = None;
            let mut acc: Vec<u8> = Vec::new();
            loop {
                let off = acc.len().to_string();
                let m =
                    self.request(MsgType::DirectoryPart, tx, wire::nul_strings(&[path, &off]), path).await?;
                let nul =
                    m.payload.iter().position(|b| *b == 0).ok_or_else(|| {
                        XenError::Protocol("DIRECTORY_PART reply without generation".into())
                    })?;
                let g = wire::single_string(&m.payload[..nul])?;
                match &gen {
                    Some(prev) if *prev != g => {
                        restarts += 1;
                        if restarts > 8 {
                            return Err(XenError::Protocol("directory keeps changing during listing".into()));
                        }
                        continue 'outer;
                    }
                    Some(_) => {}
                    None => gen = Some(g),
                }
                let chunk = &m.payload[nul + 1..];
                acc.extend_from_slice(chunk);
                if chunk.is_empty() || acc.len() <= 1 || acc.ends_with(&[0, 0]) {
                    break;
                }
                if acc.len() > 64 * 1024 * 1024 {
                    return Err(XenError::Protocol("directory listing too large".into()));
                }
            }
            return wire::split_strings(acc.strip_suffix(&[0]).unwrap_or(&acc));
        }
    }

    async fn op_get_perms(&self, tx: u32, path: &str) -> XenResult<Perms> {
        wire::check_path(path)?;
        let m = self.request(MsgType::GetPerms, tx, wire::nul_strings(&[path]), path).await?;
        Perms::from_strings(&wire::split_strings(&m.payload)?)
            .map_err(|e| XenError::Protocol(format!("GET_PERMS reply: {e}")))
    }

    async fn op_set_perms(&self, tx: u32, path: &str, perms: &Perms) -> XenResult<()> {
        wire::check_path(path)?;
        let strings = perms.to_strings();
        let mut parts: Vec<&str> = vec![path];
        parts.extend(strings.iter().map(String::as_str));
        self.request(MsgType::SetPerms, tx, wire::nul_strings(&parts), path).await.map(drop)
    }

    // -- public API ------------------------------------------------------

    /// Reads a node's value.
    pub async fn read(&self, path: &str) -> XenResult<Vec<u8>> {
        self.op_read(NO_TX, path).await
    }

    /// Reads a node's value as UTF-8 text.
    pub async fn read_string(&self, path: &str) -> XenResult<String> {
        utf8(self.read(path).await?, path)
    }

    /// Reads a node, mapping `ENOENT` to `None`.
    pub async fn try_read_string(&self, path: &str) -> XenResult<Option<String>> {
        match self.read_string(path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a node (creating missing parents).
    pub async fn write(&self, path: &str, value: impl AsRef<[u8]>) -> XenResult<()> {
        self.op_write(NO_TX, path, value.as_ref()).await
    }

    /// Creates a node (and missing parents) if absent.
    pub async fn mkdir(&self, path: &str) -> XenResult<()> {
        self.op_simple(MsgType::Mkdir, NO_TX, path).await
    }

    /// Removes a node and its children.
    pub async fn rm(&self, path: &str) -> XenResult<()> {
        self.op_simple(MsgType::Rm, NO_TX, path).await
    }

    /// Lists a node's children (leaf names).
    pub async fn directory(&self, path: &str) -> XenResult<Vec<String>> {
        self.op_directory(NO_TX, path).await
    }

    /// Reads a node's permissions.
    pub async fn get_perms(&self, path: &str) -> XenResult<Perms> {
        self.op_get_perms(NO_TX, path).await
    }

    /// Sets a node's permissions.
    pub async fn set_perms(&self, path: &str, perms: &Perms) -> XenResult<()> {
        self.op_set_perms(NO_TX, path, perms).await
    }

    /// The home path of a domain (`/local/domain/<domid>`).
    pub async fn get_domain_path(&self, domid: u32) -> XenResult<String> {
        let d = domid.to_string();
        let m = self.request(MsgType::GetDomainPath, NO_TX, wire::nul_strings(&[&d]), &d).await?;
        wire::single_string(&m.payload)
    }

    /// Whether xenstored is connected to a domain.
    pub async fn is_domain_introduced(&self, domid: u32) -> XenResult<bool> {
        let d = domid.to_string();
        let m = self.request(MsgType::IsDomainIntroduced, NO_TX, wire::nul_strings(&[&d]), &d).await?;
        match wire::single_string(&m.payload)?.as_str() {
            "T" => Ok(true),
            "F" => Ok(false),
            other => Err(XenError::Protocol(format!("IS_DOMAIN_INTRODUCED answered {other:?}"))),
        }
    }

    /// Introduces a domain to xenstored (its store page frame and event
    /// channel). Only dom0 may do this.
    pub async fn introduce_domain(&self, domid: u32, gfn: u64, evtchn: u32) -> XenResult<()> {
        let (d, g, e) = (domid.to_string(), gfn.to_string(), evtchn.to_string());
        self.request(MsgType::Introduce, NO_TX, wire::nul_strings(&[&d, &g, &e]), &d).await.map(drop)
    }

    /// Makes xenstored forget a domain. Only dom0 may do this.
    pub async fn release_domain(&self, domid: u32) -> XenResult<()> {
        let d = domid.to_string();
        self.request(MsgType::Release, NO_TX, wire::nul_strings(&[&d]), &d).await.map(drop)
    }

    /// Re-enables `@releaseDomain` for a resumed domain.
    pub async fn resume_domain(&self, domid: u32) -> XenResult<()> {
        let d = domid.to_string();
        self.request(MsgType::Resume, NO_TX, wire::nul_strings(&[&d]), &d).await.map(drop)
    }

    /// Lets domain `domid` act on behalf of domain `target` (device models).
    pub async fn set_target(&self, domid: u32, target: u32) -> XenResult<()> {
        let (d, t) = (domid.to_string(), target.to_string());
        self.request(MsgType::SetTarget, NO_TX, wire::nul_strings(&[&d, &t]), &d).await.map(drop)
    }

    /// `RESET_WATCHES`: xenstored drops every watch and transaction of this
    /// connection. Local watch streams end (their `next()` returns `None`).
    pub async fn reset_watches(&self) -> XenResult<()> {
        self.request(MsgType::ResetWatches, NO_TX, wire::nul_strings(&[""]), "").await?;
        lock(&self.inner.watches).clear();
        Ok(())
    }

    /// Sends a raw request and returns the raw reply (for message types
    /// without a dedicated method, e.g. `CONTROL`). `XS_ERROR` replies are
    /// still turned into errors.
    pub async fn raw_request(&self, ty: MsgType, tx_id: u32, payload: Vec<u8>) -> XenResult<Message> {
        if ty == MsgType::WatchEvent || ty == MsgType::Error {
            return Err(XenError::InvalidArgument(format!("{} is not a request", ty.name())));
        }
        self.request(ty, tx_id, payload, "").await
    }

    // -- watches ----------------------------------------------------------

    /// Watches `path` (a node, or `@introduceDomain` / `@releaseDomain`).
    /// xenstored fires once right away; events may also be spurious, and
    /// one fires after each reconnect when the watch is re-armed.
    pub async fn watch(&self, path: &str) -> XenResult<WatchStream> {
        let n = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let token = format!("ovm:{}:{n}", std::process::id());
        self.watch_with_token(path, &token).await
    }

    /// Watches `path` with a caller-chosen token (must be unique within
    /// this client).
    pub async fn watch_with_token(&self, path: &str, token: &str) -> XenResult<WatchStream> {
        wire::check_path(path)?;
        if token.is_empty() || token.as_bytes().contains(&0) {
            return Err(XenError::InvalidArgument(format!("bad watch token {token:?}")));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut w = lock(&self.inner.watches);
            if w.contains_key(token) {
                return Err(XenError::InvalidArgument(format!("watch token {token:?} already in use")));
            }
            // Registered before the request: the first event may overtake the reply.
            w.insert(token.to_string(), WatchReg { path: path.to_string(), tx });
        }
        let res = self.request(MsgType::Watch, NO_TX, wire::nul_strings(&[path, token]), path).await;
        if let Err(e) = res {
            lock(&self.inner.watches).remove(token);
            return Err(e);
        }
        Ok(WatchStream {
            rx,
            token: token.to_string(),
            path: path.to_string(),
            client: Arc::downgrade(&self.inner),
        })
    }

    async fn unwatch(inner: &Arc<Inner>, path: &str, token: &str) -> XenResult<()> {
        let removed = lock(&inner.watches).remove(token).is_some();
        if !removed {
            return Ok(());
        }
        let conn = inner.conn.lock().await.clone();
        match conn {
            Some(c) if c.is_alive() => {
                Inner::request_on(inner, &c, MsgType::Unwatch, NO_TX, wire::nul_strings(&[path, token]), path)
                    .await
                    .map(drop)
            }
            _ => Ok(()),
        }
    }

    // -- transactions -------------------------------------------------------

    /// Starts a transaction. End it with [`Transaction::commit`] or
    /// [`Transaction::abort`]; prefer [`XsClient::transaction`], which
    /// retries on `EAGAIN`.
    pub async fn transaction_start(&self) -> XenResult<Transaction> {
        let m = self.request(MsgType::TransactionStart, NO_TX, wire::nul_strings(&[""]), "").await?;
        let s = wire::single_string(&m.payload)?;
        let id = s
            .parse::<u32>()
            .ok()
            .filter(|id| *id != 0)
            .ok_or_else(|| XenError::Protocol(format!("bad transaction id {s:?}")))?;
        Ok(Transaction { client: self.clone(), id })
    }

    /// Runs `body` in a transaction and commits it, retrying the whole
    /// transaction (up to [`XsConfig::max_transaction_attempts`] times) when
    /// xenstored reports a conflict (`EAGAIN`) on any operation or on commit.
    /// Any other error aborts the transaction and is returned.
    pub async fn transaction<T, F, Fut>(&self, mut body: F) -> XenResult<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = XenResult<T>>,
    {
        let max = self.inner.config.max_transaction_attempts.max(1);
        for attempt in 1..=max {
            let tx = self.transaction_start().await?;
            match body(tx.clone()).await {
                Ok(v) => match tx.commit().await {
                    Ok(()) => return Ok(v),
                    Err(e) if e.is_eagain() => {}
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let _ = tx.abort().await;
                    if !e.is_eagain() {
                        return Err(e);
                    }
                }
            }
            // Back off a little, growing with each attempt, to let the
            // competing writer finish.
            let ms = (1u64 << attempt.min(6)).min(50);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Err(XenError::TransactionConflict { attempts: max })
    }
}

fn utf8(v: Vec<u8>, path: &str) -> XenResult<String> {
    String::from_utf8(v).map_err(|_| XenError::Protocol(format!("value of {path} is not UTF-8")))
}

impl Inner {
    async fn connection(self: &Arc<Self>) -> XenResult<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
            if !self.config.auto_reconnect {
                return Err(XenError::Disconnected);
            }
        }
        let reconnect = slot.is_some();
        let (r, w) = self.transport.connect().await?;
        let limit = match self.transport {
            Transport::Xenbus(_) => Some(1),
            Transport::Socket(_) => self.config.max_in_flight,
        };
        let conn = Arc::new(Conn {
            writer: tokio::sync::Mutex::new(w),
            inflight: limit.map(|n| tokio::sync::Semaphore::new(n.max(1))),
            pending: Mutex::new(Pending { alive: true, waiters: HashMap::new() }),
            reader: Mutex::new(None),
        });
        let handle = tokio::spawn(reader_task(r, Arc::downgrade(&conn), Arc::downgrade(self)));
        *lock(&conn.reader) = Some(handle);
        *slot = Some(conn.clone());
        drop(slot);
        if reconnect {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            // Re-arm the watches on the new connection.
            let regs: Vec<(String, String)> =
                lock(&self.watches).iter().map(|(t, w)| (w.path.clone(), t.clone())).collect();
            for (path, token) in regs {
                Inner::request_on(
                    self,
                    &conn,
                    MsgType::Watch,
                    NO_TX,
                    wire::nul_strings(&[&path, &token]),
                    &path,
                )
                .await?;
            }
        }
        Ok(conn)
    }

    async fn request_on(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        ty: MsgType,
        tx_id: u32,
        payload: Vec<u8>,
        what: &str,
    ) -> XenResult<Message> {
        let mut req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        if req_id == 0 {
            req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        }
        let msg = Message::new(ty, req_id, tx_id, payload)?;
        // Held until the reply arrives (or the request fails).
        let _permit = match &conn.inflight {
            Some(s) => Some(s.acquire().await.map_err(|_| XenError::Disconnected)?),
            None => None,
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&conn.pending);
            if !p.alive {
                return Err(XenError::Disconnected);
            }
            p.waiters.insert(req_id, tx);
        }
        let bytes = msg.encode();
        let write_res = {
            let mut w = conn.writer.lock().await;
            match w.write_all(&bytes).await {
                Ok(()) => w.flush().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = write_res {
            lock(&conn.pending).waiters.remove(&req_id);
            conn.kill(|| XenError::Disconnected);
            return Err(XenError::io("write to xenstore", e));
        }
        let reply = match self.config.request_timeout {
            Some(t) => match tokio::time::timeout(t, rx).await {
                Ok(r) => r,
                Err(_) => {
                    lock(&conn.pending).waiters.remove(&req_id);
                    return Err(XenError::Timeout(format!("xenstore {} {what}", ty.name())));
                }
            },
            None => rx.await,
        };
        let reply = reply.map_err(|_| XenError::Disconnected)??;
        if let Some(errno) = reply.error() {
            return Err(XenError::Xenstore { op: ty.name(), path: what.to_string(), errno });
        }
        if reply.ty != ty {
            return Err(XenError::Protocol(format!(
                "reply to {} (req {req_id}) has type {}",
                ty.name(),
                reply.ty.name()
            )));
        }
        Ok(reply)
    }
}

async fn reader_task(mut r: ReadHalf, conn: Weak<Conn>, inner: Weak<Inner>) {
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 2 * (wire::HEADER_LEN + wire::PAYLOAD_MAX)];
    let failure: XenError = loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break XenError::Disconnected,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break XenError::Disconnected,
        };
        dec.feed(&buf[..n]);
        let mut broken = None;
        loop {
            match dec.next_message() {
                Ok(Some(m)) => dispatch(m, &conn, &inner),
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = broken {
            break e;
        }
    };
    let msg = failure.to_string();
    let protocol = matches!(failure, XenError::Protocol(_));
    if let Some(c) = conn.upgrade() {
        c.kill(|| if protocol { XenError::Protocol(msg.clone()) } else { XenError::Disconnected });
    }
    // Re-arm watches in the background so watch streams keep working even if
    // no request comes along to trigger the reconnect.
    if let Some(i) = inner.upgrade() {
        if i.config.auto_reconnect && !lock(&i.watches).is_empty() {
            let weak = Arc::downgrade(&i);
            drop(i);
            tokio::spawn(rearm_task(weak));
        }
    }
}

/// Boxed to break the type cycle connection → reader → re-arm → connection.
fn rearm_task(inner: Weak<Inner>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(rearm_loop(inner))
}

async fn rearm_loop(inner: Weak<Inner>) {
    let mut delay = Duration::from_millis(20);
    loop {
        tokio::time::sleep(delay).await;
        let Some(i) = inner.upgrade() else { return };
        if lock(&i.watches).is_empty() {
            return;
        }
        if i.connection().await.is_ok() {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

fn dispatch(m: Message, conn: &Weak<Conn>, inner: &Weak<Inner>) {
    if m.ty == MsgType::WatchEvent {
        // A malformed event does not break framing; it is dropped.
        let Ok(ev) = WatchEvent::parse(&m.payload) else { return };
        if let Some(i) = inner.upgrade() {
            if let Some(w) = lock(&i.watches).get(&ev.token) {
                let _ = w.tx.send(ev);
            }
        }
        return;
    }
    let Some(c) = conn.upgrade() else { return };
    // A reply nobody waits for (timed out, or invented by a hostile peer) is dropped.
    let waiter = lock(&c.pending).waiters.remove(&m.req_id);
    if let Some(w) = waiter {
        let _ = w.send(Ok(m));
    }
}

/// A stream of events of one watch. Dropping it removes the watch.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::UnboundedReceiver<WatchEvent>,
    token: String,
    path: String,
    client: Weak<Inner>,
}

impl WatchStream {
    /// The next event (`None` once the client is gone).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }

    /// An event that is already queued, without waiting.
    pub fn try_next(&mut self) -> Option<WatchEvent> {
        self.rx.try_recv().ok()
    }

    /// The watched path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The watch token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Removes the watch now and waits for xenstored to confirm.
    pub async fn unwatch(mut self) -> XenResult<()> {
        let client = std::mem::take(&mut self.client);
        match client.upgrade() {
            Some(inner) => XsClient::unwatch(&inner, &self.path, &self.token).await,
            None => Ok(()),
        }
    }
}

impl futures_core::Stream for WatchStream {
    type Item = WatchEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let Some(inner) = self.client.upgrade() else { return };
        if lock(&inner.watches).get(&self.token).is_none() {
            return;
        }
        let (path, token) = (self.path.clone(), self.token.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    let _ = XsClient::unwatch(&inner, &path, &token).await;
                });
            }
            Err(_) => {
                lock(&inner.watches).remove(&token);
            }
        }
    }
}

/// A xenstore transaction. Operations see a private snapshot; the commit
/// fails with `EAGAIN` if another writer got in between. Clones refer to the
/// same transaction.
#[derive(Debug, Clone)]
pub struct Transaction {
    client: XsClient,
    id: u32,
}

impl Transaction {
    /// The transaction id chosen by xenstored.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Reads a node in the transaction.
    pub async fn read(&self, path: &str) -> XenResult<Vec<u8>> {
        self.client.op_read(self.id, path).await
    }

    /// Reads a node as text in the transaction.
    pub async fn read_string(&self, path: &str) -> XenResult<String> {
        utf8(self.read(path).await?, path)
    }

    /// Writes a node in the transaction.
    pub async fn write(&self, path: &str, value: impl AsRef<[u8]>) -> XenResult<()> {
        self.client.op_write(self.id, path, value.as_ref()).await
    }

    /// Creates a node in the transaction.
    pub async fn mkdir(&self, path: &str) -> XenResult<()> {
        self.client.op_simple(MsgType::Mkdir, self.id, path).await
    }

    /// Removes a node in the transaction.
    pub async fn rm(&self, path: &str) -> XenResult<()> {
        self.client.op_simple(MsgType::Rm, self.id, path).await
    }

    /// Lists a node's children in the transaction.
    pub async fn directory(&self, path: &str) -> XenResult<Vec<String>> {
        self.client.op_directory(self.id, path).await
    }

    /// Reads permissions in the transaction.
    pub async fn get_perms(&self, path: &str) -> XenResult<Perms> {
        self.client.op_get_perms(self.id, path).await
    }

    /// Sets permissions in the transaction.
    pub async fn set_perms(&self, path: &str, perms: &Perms) -> XenResult<()> {
        self.client.op_set_perms(self.id, path, perms).await
    }

    async fn end(&self, commit: bool) -> XenResult<()> {
        let flag = if commit { "T" } else { "F" };
        self.client
            .request(MsgType::TransactionEnd, self.id, wire::nul_strings(&[flag]), flag)
            .await
            .map(drop)
    }

    /// Commits; `EAGAIN` means a conflict and the transaction must be redone.
    pub async fn commit(&self) -> XenResult<()> {
        self.end(true).await
    }

    /// Discards the transaction.
    pub async fn abort(&self) -> XenResult<()> {
        self.end(false).await
    }
}
