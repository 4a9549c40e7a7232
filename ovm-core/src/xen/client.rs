//! The asynchronous xenstore client.
//!
//! One connection carries many requests at once: each request gets a fresh
//! request id and a oneshot channel in a pending map, and a reader task routes
//! every reply to its request by id. Requests are encoded straight into one
//! output buffer and written by the task that makes them; a request made
//! while others are in flight first lets the other ready tasks queue theirs,
//! so that a burst of requests goes out in one `write(2)`. Timeouts are kept
//! by one coarse per-connection watchdog rather than a timer per request.
//! While a thread waits for replies it may run as `SCHED_BATCH` (see
//! [`XsConfig::batch_wakeups`]). Watch events are routed by token to
//! [`WatchStream`]s. When the connection drops, outstanding requests fail with
//! [`XenError::Disconnected`]; with auto-reconnect (the default) the client
//! reconnects in the background and re-arms every live watch, and the next
//! request uses the new connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::error::{XenError, XenResult, XsErrno};
use super::perms::Perms;
use super::transport::{AsyncIo, Transport};
use super::wire::{self, Decoder, Message, MsgType, WatchEvent};
use crate::sync::lock;

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
    /// While a thread waits for replies it runs as `SCHED_BATCH` (when it
    /// ran as `SCHED_OTHER`; other policies are left alone), so that each
    /// reply xenstored writes makes it runnable without preempting
    /// xenstored: on a dom0 with few CPUs, xenstored then works through all
    /// queued requests and the replies are read in one go, instead of one
    /// pair of context switches per reply (or per part of one). The policy
    /// is restored once the thread has no reply left to wait for. The async
    /// client does this only on a runtime with one worker thread (where a
    /// task cannot move to another thread while it waits); the blocking
    /// client always (it waits on the caller's thread).
    pub batch_wakeups: bool,
}

impl Default for XsConfig {
    fn default() -> Self {
        XsConfig {
            request_timeout: Some(Duration::from_secs(30)),
            auto_reconnect: true,
            max_transaction_attempts: 16,
            max_in_flight: None,
            batch_wakeups: true,
        }
    }
}

type Reply = XenResult<Message>;

#[derive(Debug)]
struct Waiter {
    tx: oneshot::Sender<Reply>,
    /// Watchdog tick at which the request was made.
    born: u32,
}

#[derive(Debug, Default)]
struct Pending {
    alive: bool,
    /// Watchdog ticks so far (see [`watchdog_task`]).
    tick: u32,
    waiters: HashMap<u32, Waiter>,
}

/// Requests encoded but not yet written: `buf` holds the stream bytes
/// `flushed..queued` (counted since the connection was opened).
#[derive(Debug, Default)]
struct OutBuf {
    buf: Vec<u8>,
    queued: u64,
    flushed: u64,
}

/// One live connection: its descriptor, output buffer and pending requests.
struct Conn {
    io: Arc<AsyncIo>,
    alive: AtomicBool,
    out: Mutex<OutBuf>,
    /// Received bytes; the connection is read, and what arrives routed,
    /// under this lock.
    dec: Mutex<Decoder>,
    /// Limits requests in flight (see [`XsConfig::max_in_flight`]).
    inflight: Option<tokio::sync::Semaphore>,
    pending: Mutex<Pending>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Conn {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Marks the connection dead and fails every waiter; the first time, if
    /// watches are registered (and auto-reconnect is on), re-arms them in
    /// the background so watch streams keep working even if no request
    /// comes along to trigger the reconnect.
    fn fail(&self, inner: Option<&Arc<Inner>>, why: &XenError) {
        let first = self.alive.swap(false, Ordering::AcqRel);
        let waiters = {
            let mut p = lock(&self.pending);
            p.alive = false;
            std::mem::take(&mut p.waiters)
        };
        if let Some(s) = &self.inflight {
            s.close();
        }
        for (_, w) in waiters {
            let e = match why {
                XenError::Protocol(m) => XenError::Protocol(m.clone()),
                _ => XenError::Disconnected,
            };
            let _ = w.tx.send(Err(e));
        }
        let Some(i) = inner else { return };
        if first && i.config.auto_reconnect && !lock(&i.watches).is_empty() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(rearm_task(Arc::downgrade(i)));
            }
        }
    }

    /// One `read(2)` of what the connection has, then every whole message
    /// handed to its waiter or watch. `Ok(Ok(n))`: `n` bytes read;
    /// `Ok(Err(_))`: the connection is unusable (closed, framing lost);
    /// `Err(_)`: the read failed (`WouldBlock`: nothing there yet).
    fn read_dispatch(&self, inner: Option<&Inner>) -> std::io::Result<XenResult<usize>> {
        let mut dec = lock(&self.dec);
        let n = self.io.read_raw(dec.spare(READ_CHUNK))?;
        if n == 0 {
            return Ok(Err(XenError::Disconnected));
        }
        dec.commit(n);
        loop {
            match dec.next_message() {
                Ok(Some(m)) => self.dispatch(m, inner),
                Ok(None) => return Ok(Ok(n)),
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    fn dispatch(&self, m: Message, inner: Option<&Inner>) {
        if m.ty == MsgType::WatchEvent {
            // A malformed event does not break framing; it is dropped.
            let Ok(ev) = WatchEvent::parse(&m.payload) else { return };
            if let Some(i) = inner {
                if let Some(w) = lock(&i.watches).get(&ev.token) {
                    let _ = w.tx.send(ev);
                }
            }
            return;
        }
        // A reply nobody waits for (timed out, or invented by a hostile peer) is dropped.
        let waiter = lock(&self.pending).waiters.remove(&m.req_id);
        if let Some(w) = waiter {
            let _ = w.tx.send(Ok(m));
        }
    }

    fn forget(&self, req_id: u32) {
        lock(&self.pending).waiters.remove(&req_id);
    }

    /// Writes out everything queued; `Ok(false)` if the socket is full.
    fn try_flush(&self) -> std::io::Result<bool> {
        let mut out = lock(&self.out);
        while !out.buf.is_empty() {
            match self.io.try_write(&out.buf) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if n == out.buf.len() {
                        out.buf.clear();
                    } else {
                        out.buf.drain(..n);
                    }
                    out.flushed += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Returns once the stream bytes up to `end` are written (by this task
    /// or another one).
    async fn flush_until(&self, end: u64) -> std::io::Result<()> {
        loop {
            if lock(&self.out).flushed >= end {
                return Ok(());
            }
            if self.try_flush()? {
                return Ok(());
            }
            self.io.wait_writable().await?;
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        for h in lock(&self.tasks).drain(..) {
            h.abort();
        }
    }
}

/// Cleans up after a request, also when its future is dropped early: a
/// request given up forgets its waiter, and a thread switched to
/// `SCHED_BATCH` for the wait gets its policy back once no reply is left to
/// wait for on the connection (at once if the request was given up).
struct WaitGuard<'a> {
    conn: &'a Conn,
    req_id: u32,
    batch: bool,
    done: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.forget(self.req_id);
        }
        if self.batch && (!self.done || lock(&self.conn.pending).waiters.is_empty()) {
            batch_leave();
        }
    }
}

/// Gives up the thread once, to the back of the run queue, so that other
/// ready tasks run before this one continues (no timer, no system call).
#[derive(Default)]
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
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
    /// Held while (re)connecting.
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    /// The current connection, for the request fast path.
    live: Mutex<Option<Arc<Conn>>>,
    watches: Mutex<HashMap<String, WatchReg>>,
    next_req: AtomicU32,
    next_token: AtomicU64,
    reconnects: AtomicU64,
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
                live: Mutex::new(None),
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
        lock(&self.inner.live).as_ref().is_some_and(|c| c.is_alive())
    }

    // -- connection management ------------------------------------------

    async fn connection(&self) -> XenResult<Arc<Conn>> {
        Inner::connection(&self.inner).await
    }

    // -- the request path -----------------------------------------------

    async fn request(&self, ty: MsgType, tx_id: u32, parts: &[&[u8]], what: &str) -> XenResult<Message> {
        let conn = self.connection().await?;
        Inner::request_on(&self.inner, &conn, ty, tx_id, parts, what).await
    }

    // -- operations (tx = 0 outside a transaction) -----------------------

    async fn op_read(&self, tx: u32, path: &str) -> XenResult<Vec<u8>> {
        wire::check_path(path)?;
        Ok(self.request(MsgType::Read, tx, &[path.as_bytes(), b"\0"], path).await?.payload)
    }

    async fn op_write(&self, tx: u32, path: &str, value: &[u8]) -> XenResult<()> {
        wire::check_path(path)?;
        self.request(MsgType::Write, tx, &[path.as_bytes(), b"\0", value], path).await.map(drop)
    }

    async fn op_simple(&self, ty: MsgType, tx: u32, path: &str) -> XenResult<()> {
        wire::check_path(path)?;
        self.request(ty, tx, &[path.as_bytes(), b"\0"], path).await.map(drop)
    }

    async fn op_directory(&self, tx: u32, path: &str) -> XenResult<Vec<String>> {
        wire::check_path(path)?;
        match self.request(MsgType::Directory, tx, &[path.as_bytes(), b"\0"], path).await {
            Ok(m) => wire::split_strings(&m.payload),
            Err(e) if matches!(e.xs_errno(), Some(XsErrno::E2big)) => self.op_directory_part(tx, path).await,
            Err(e) => Err(e),
        }
    }

    /// `DIRECTORY_PART` loop for directories whose listing exceeds one
    /// payload; restarts if the node's generation changes in between.
    async fn op_directory_part(&self, tx: u32, path: &str) -> XenResult<Vec<String>> {
        let mut parts = DirParts::default();
        loop {
            let off = parts.offset();
            let m = self
                .request(MsgType::DirectoryPart, tx, &[path.as_bytes(), b"\0", off.as_bytes(), b"\0"], path)
                .await?;
            if let Some(done) = parts.feed(&m.payload)? {
                return Ok(done);
            }
        }
    }

    async fn op_get_perms(&self, tx: u32, path: &str) -> XenResult<Perms> {
        wire::check_path(path)?;
        let m = self.request(MsgType::GetPerms, tx, &[path.as_bytes(), b"\0"], path).await?;
        Perms::from_strings(&wire::split_strings(&m.payload)?)
            .map_err(|e| XenError::Protocol(format!("GET_PERMS reply: {e}")))
    }

    async fn op_set_perms(&self, tx: u32, path: &str, perms: &Perms) -> XenResult<()> {
        wire::check_path(path)?;
        let payload = perms_payload(path, perms);
        self.request(MsgType::SetPerms, tx, &[&payload], path).await.map(drop)
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
        let m = self.request(MsgType::GetDomainPath, NO_TX, &[&wire::nul_strings(&[&d])], &d).await?;
        wire::single_string(&m.payload)
    }

    /// Whether xenstored is connected to a domain.
    pub async fn is_domain_introduced(&self, domid: u32) -> XenResult<bool> {
        let d = domid.to_string();
        let m = self.request(MsgType::IsDomainIntroduced, NO_TX, &[&wire::nul_strings(&[&d])], &d).await?;
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
        self.request(MsgType::Introduce, NO_TX, &[&wire::nul_strings(&[&d, &g, &e])], &d).await.map(drop)
    }

    /// Makes xenstored forget a domain. Only dom0 may do this.
    pub async fn release_domain(&self, domid: u32) -> XenResult<()> {
        let d = domid.to_string();
        self.request(MsgType::Release, NO_TX, &[&wire::nul_strings(&[&d])], &d).await.map(drop)
    }

    /// Re-enables `@releaseDomain` for a resumed domain.
    pub async fn resume_domain(&self, domid: u32) -> XenResult<()> {
        let d = domid.to_string();
        self.request(MsgType::Resume, NO_TX, &[&wire::nul_strings(&[&d])], &d).await.map(drop)
    }

    /// Lets domain `domid` act on behalf of domain `target` (device models).
    pub async fn set_target(&self, domid: u32, target: u32) -> XenResult<()> {
        let (d, t) = (domid.to_string(), target.to_string());
        self.request(MsgType::SetTarget, NO_TX, &[&wire::nul_strings(&[&d, &t])], &d).await.map(drop)
    }

    /// `RESET_WATCHES`: xenstored drops every watch and transaction of this
    /// connection. Local watch streams end (their `next()` returns `None`).
    pub async fn reset_watches(&self) -> XenResult<()> {
        self.request(MsgType::ResetWatches, NO_TX, &[&wire::nul_strings(&[""])], "").await?;
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
        self.request(ty, tx_id, &[&payload], "").await
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
        let res = self.request(MsgType::Watch, NO_TX, &[&wire::nul_strings(&[path, token])], path).await;
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
        let conn = lock(&inner.live).clone();
        match conn {
            Some(c) if c.is_alive() => Inner::request_on(
                inner,
                &c,
                MsgType::Unwatch,
                NO_TX,
                &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
                path,
            )
            .await
            .map(drop),
            _ => Ok(()),
        }
    }

    // -- transactions -------------------------------------------------------

    /// Starts a transaction. End it with [`Transaction::commit`] or
    /// [`Transaction::abort`]; prefer [`XsClient::transaction`], which
    /// retries on `EAGAIN`.
    pub async fn transaction_start(&self) -> XenResult<Transaction> {
        let m = self.request(MsgType::TransactionStart, NO_TX, &[&wire::nul_strings(&[""])], "").await?;
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
        if let Some(c) = lock(&self.live).as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
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
        let io = Arc::new(self.transport.connect_async().await?);
        let limit = if io.is_socket() { self.config.max_in_flight } else { Some(1) };
        let conn = Arc::new(Conn {
            io: io.clone(),
            alive: AtomicBool::new(true),
            out: Mutex::new(OutBuf::default()),
            dec: Mutex::new(Decoder::new()),
            inflight: limit.map(|n| tokio::sync::Semaphore::new(n.max(1))),
            pending: Mutex::new(Pending { alive: true, tick: 0, waiters: HashMap::new() }),
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = vec![tokio::spawn(reader_task(io, Arc::downgrade(&conn), Arc::downgrade(self)))];
        if let Some(t) = self.config.request_timeout {
            tasks.push(tokio::spawn(watchdog_task(Arc::downgrade(&conn), t)));
        }
        *lock(&conn.tasks) = tasks;
        *slot = Some(conn.clone());
        *lock(&self.live) = Some(conn.clone());
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
                    &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"],
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
        parts: &[&[u8]],
        what: &str,
    ) -> XenResult<Message> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > wire::PAYLOAD_MAX {
            return Err(XenError::TooLarge { len, limit: wire::PAYLOAD_MAX });
        }
        let mut req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        if req_id == 0 {
            req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        }
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
            let born = p.tick;
            p.waiters.insert(req_id, Waiter { tx, born });
        }
        let mut guard = WaitGuard { conn, req_id, batch: false, done: false };
        let end = {
            let mut out = lock(&conn.out);
            let n = wire::encode_request(&mut out.buf, ty, req_id, tx_id, parts)?;
            out.queued += n as u64;
            out.queued
        };
        // Let the other ready tasks queue their requests first: the first
        // of them to run again writes them all at once.
        YieldOnce::default().await;
        if let Err(e) = conn.flush_until(end).await {
            conn.fail(Some(self), &XenError::Disconnected);
            return Err(XenError::io("write to xenstore", e));
        }
        let mut rx = rx;
        let reply = match rx.try_recv() {
            Ok(r) => Ok(r),
            Err(oneshot::error::TryRecvError::Closed) => Err(()),
            Err(oneshot::error::TryRecvError::Empty) => {
                // Only where the task cannot move to another thread while it
                // waits, so that the thread it leaves is the one it entered.
                if self.config.batch_wakeups && single_worker() {
                    batch_enter();
                    guard.batch = true;
                }
                rx.await.map_err(drop)
            }
        };
        guard.done = true;
        drop(guard);
        let reply = match reply {
            Ok(Err(XenError::Timeout(_))) => {
                return Err(XenError::Timeout(format!("xenstore {} {what}", ty.name())));
            }
            r => r.map_err(|()| XenError::Disconnected)??,
        };
        check_reply(ty, req_id, what, reply)
    }
}

thread_local! {
    /// This thread's policy as far as [`batch_enter`] knows: 0 not looked
    /// at yet, 1 `SCHED_OTHER`, 2 switched to `SCHED_BATCH` by us, 3 another
    /// policy (never touched).
    static SCHED_STATE: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // that lives across the call.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

/// Makes the calling thread `SCHED_BATCH` if it is `SCHED_OTHER` (see
/// [`XsConfig::batch_wakeups`]).
pub(crate) fn batch_enter() {
    SCHED_STATE.with(|s| {
        if s.get() == 0 {
            // SAFETY: pid 0 is the calling thread; no pointers.
            let p = unsafe { libc::sched_getscheduler(0) };
            s.set(if p == libc::SCHED_OTHER { 1 } else { 3 });
        }
        if s.get() == 1 && set_policy(libc::SCHED_BATCH) {
            s.set(2);
        }
    });
}

/// Whether the current tokio runtime runs its tasks on one thread (a
/// current-thread runtime, or a multi-thread one with one worker).
fn single_worker() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|h| h.metrics().num_workers() == 1)
}

/// Undoes [`batch_enter`] on the calling thread.
pub(crate) fn batch_leave() {
    SCHED_STATE.with(|s| {
        if s.get() == 2 {
            set_policy(libc::SCHED_OTHER);
            s.set(1);
        }
    });
}

/// Turns an `XS_ERROR` reply into its error and checks the reply's type.
pub(crate) fn check_reply(ty: MsgType, req_id: u32, what: &str, reply: Message) -> XenResult<Message> {
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

/// The payload of `SET_PERMS`: the path and each permission, NUL-terminated.
pub(crate) fn perms_payload(path: &str, perms: &Perms) -> Vec<u8> {
    let strings = perms.to_strings();
    let mut parts: Vec<&str> = vec![path];
    parts.extend(strings.iter().map(String::as_str));
    wire::nul_strings(&parts)
}

/// Accumulates a `DIRECTORY_PART` listing, restarting when the node's
/// generation changes between parts.
#[derive(Debug, Default)]
pub(crate) struct DirParts {
    gen: Option<String>,
    acc: Vec<u8>,
    restarts: u32,
}

impl DirParts {
    /// The offset to ask for next.
    pub(crate) fn offset(&self) -> String {
        self.acc.len().to_string()
    }

    /// Takes one reply; `Some(listing)` when complete, `None` to ask again at
    /// [`DirParts::offset`].
    pub(crate) fn feed(&mut self, payload: &[u8]) -> XenResult<Option<Vec<String>>> {
        let nul = payload
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| XenError::Protocol("DIRECTORY_PART reply without generation".into()))?;
        let g = wire::single_string(&payload[..nul])?;
        match &self.gen {
            Some(prev) if *prev != g => {
                self.restarts += 1;
                if self.restarts > 8 {
                    return Err(XenError::Protocol("directory keeps changing during listing".into()));
                }
                self.gen = None;
                self.acc.clear();
                return Ok(None);
            }
            Some(_) => {}
            None => self.gen = Some(g),
        }
        let chunk = &payload[nul + 1..];
        self.acc.extend_from_slice(chunk);
        if chunk.is_empty() || self.acc.len() <= 1 || self.acc.ends_with(&[0, 0]) {
            let acc = std::mem::take(&mut self.acc);
            return wire::split_strings(acc.strip_suffix(&[0]).unwrap_or(&acc)).map(Some);
        }
        if self.acc.len() > 64 * 1024 * 1024 {
            return Err(XenError::Protocol("directory listing too large".into()));
        }
        Ok(None)
    }
}

/// Fails requests older than the timeout. One coarse clock per connection
/// (a tick of a quarter of the timeout, 5 ms to 1 s) instead of a timer per
/// request: a request times out between its timeout and that plus a tick.
async fn watchdog_task(conn: Weak<Conn>, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    let ticks = u32::try_from(timeout.as_nanos().div_ceil(tick.as_nanos())).unwrap_or(u32::MAX);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(c) = conn.upgrade() else { return };
        let expired: Vec<Waiter> = {
            let mut p = lock(&c.pending);
            if !p.alive {
                return;
            }
            p.tick = p.tick.wrapping_add(1);
            let now = p.tick;
            let old: Vec<u32> = p
                .waiters
                .iter()
                .filter(|(_, w)| now.wrapping_sub(w.born) > ticks)
                .map(|(id, _)| *id)
                .collect();
            old.iter().filter_map(|id| p.waiters.remove(id)).collect()
        };
        for w in expired {
            let _ = w.tx.send(Err(XenError::Timeout(String::new())));
        }
    }
}

/// Bytes asked of each `read(2)` of the reader task.
const READ_CHUNK: usize = 16 * 1024;

async fn reader_task(io: Arc<AsyncIo>, conn: Weak<Conn>, inner: Weak<Inner>) {
    let failure = loop {
        let res = io
            .read_with(|| {
                let Some(c) = conn.upgrade() else { return Ok((Err(XenError::Disconnected), false)) };
                let i = inner.upgrade();
                let r = c.read_dispatch(i.as_deref())?;
                let drained = matches!(r, Ok(n) if n < READ_CHUNK);
                Ok((r, drained))
            })
            .await;
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => break e,
            Err(_) => break XenError::Disconnected,
        }
    };
    if let Some(c) = conn.upgrade() {
        c.fail(inner.upgrade().as_ref(), &failure);
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
        self.client.request(MsgType::TransactionEnd, self.id, &[flag.as_bytes(), b"\0"], flag).await.map(drop)
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
