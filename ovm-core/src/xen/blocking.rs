//! A blocking xenstore client for callers without an async runtime.
//!
//! Requests run on the calling thread with plain blocking system calls: the
//! whole request in one `write(2)`, then `read(2)`s of the reply into a
//! reused buffer (usually one). No runtime, no thread hand-off, no timer:
//! the request timeout is the socket's receive timeout (on the xenbus device,
//! a `poll(2)` before each read). While it waits, the calling thread runs as
//! `SCHED_BATCH` (see [`XsConfig::batch_wakeups`]), so that xenstored writes
//! the whole reply before the thread runs again.
//!
//! Watch events that arrive interleaved with replies are queued for their
//! [`BlockingWatch`]. Several threads may share one client: their requests
//! are in flight together on the socket (one at a time on the xenbus device);
//! one thread at a time reads the connection and hands replies and events to
//! the others.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::client::{batch_enter, batch_leave, check_reply, perms_payload, DirParts, XsClient, XsConfig};
use super::error::{XenError, XenResult, XsErrno};
use super::perms::Perms;
use super::transport::{SyncIo, Transport};
use super::wire::{self, Decoder, Message, MsgType, WatchEvent};
use crate::sync::lock;

/// The transaction id of "no transaction".
const NO_TX: u32 = 0;
/// Bytes asked of each `read(2)`.
const READ_CHUNK: usize = 2 * (wire::HEADER_LEN + wire::PAYLOAD_MAX);

/// A blocking xenstore client.
#[derive(Debug)]
pub struct BlockingXsClient {
    transport: Transport,
    config: XsConfig,
    state: Mutex<State>,
    /// Signalled when the reader hands something over or gives up its role,
    /// and when the device becomes free.
    cond: Condvar,
    next_token: AtomicU64,
    /// An async client on its own connection and runtime thread, made on
    /// first use of [`BlockingXsClient::async_client`].
    async_side: OnceLock<(tokio::runtime::Runtime, XsClient)>,
}

#[derive(Debug)]
struct Conn {
    io: SyncIo,
    gen: u64,
}

#[derive(Debug)]
struct Waiter {
    req_id: u32,
    reply: Option<XenResult<Message>>,
}

#[derive(Debug)]
struct WatchQueue {
    path: String,
    events: VecDeque<WatchEvent>,
}

#[derive(Debug, Default)]
struct State {
    conn: Option<Arc<Conn>>,
    /// Generation of the last connection made.
    gen: u64,
    connected_before: bool,
    reconnects: u64,
    next_req: u32,
    /// Requests in flight, with their reply once it is read.
    waiting: Vec<Waiter>,
    watches: HashMap<String, WatchQueue>,
    /// Some thread is reading the connection (outside the lock).
    reading: bool,
    /// Threads waiting on the condition variable.
    sleepers: usize,
    /// A request is in flight on the xenbus device (which takes one at a time).
    device_busy: bool,
    /// Received bytes of the current connection (lent to the reading thread).
    dec: Decoder,
    /// Request buffer, reused.
    wbuf: Vec<u8>,
}

/// What a reading thread waits for.
#[derive(Clone, Copy)]
enum ReadMode {
    /// A reply: block in `read(2)` up to the request timeout.
    Reply,
    /// An event: wait for readability up to this long, then read.
    Event(Duration),
}

impl BlockingXsClient {
    /// Connects over the first available transport.
    pub fn connect_default() -> XenResult<BlockingXsClient> {
        BlockingXsClient::connect(Transport::detect()?, XsConfig::default())
    }

    /// Connects over `transport`.
    pub fn connect(transport: Transport, config: XsConfig) -> XenResult<BlockingXsClient> {
        let c = BlockingXsClient {
            transport,
            config,
            state: Mutex::new(State { next_req: 1, ..State::default() }),
            cond: Condvar::new(),
            next_token: AtomicU64::new(1),
            async_side: OnceLock::new(),
        };
        {
            let mut st = lock(&c.state);
            c.conn(&mut st)?;
        }
        Ok(c)
    }

    /// An async client for the same xenstored, for code that wants one. It
    /// has its own connection, driven by a runtime thread of its own, made on
    /// first use (watches and transactions are not shared with this client).
    pub fn async_client(&self) -> XenResult<&XsClient> {
        if let Some((_, c)) = self.async_side.get() {
            return Ok(c);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ovm-xenstore")
            .enable_all()
            .build()
            .map_err(|e| XenError::io("start xenstore runtime", e))?;
        let client = rt.block_on(XsClient::connect(self.transport.clone(), self.config.clone()))?;
        // Another thread may have won the race; its client is kept.
        let _ = self.async_side.set((rt, client));
        Ok(&self.async_side.get().expect("just set").1)
    }

    /// The transport this client uses.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// How many times the connection was re-established after a loss.
    pub fn reconnect_count(&self) -> u64 {
        lock(&self.state).reconnects
    }

    // -- connection ---------------------------------------------------------

    /// The live connection, (re)connecting if needed. A new connection after
    /// a loss gets the watches re-armed (by [`Self::rearm`], once the caller
    /// has released the lock); `Ok((conn, true))` says so.
    fn conn(&self, st: &mut State) -> XenResult<(Arc<Conn>, bool)> {
        if let Some(c) = &st.conn {
            return Ok((c.clone(), false));
        }
        if st.connected_before && !self.config.auto_reconnect {
            return Err(XenError::Disconnected);
        }
        let io = self.transport.connect_blocking(self.config.request_timeout)?;
        st.gen += 1;
        let conn = Arc::new(Conn { io, gen: st.gen });
        st.conn = Some(conn.clone());
        st.dec = Decoder::new();
        st.device_busy = false;
        let again = st.connected_before;
        if again {
            st.reconnects += 1;
        }
        st.connected_before = true;
        Ok((conn, again))
    }

    /// Re-registers every watch on a new connection (xenstored fires each
    /// once, as on the first registration).
    fn rearm(&self) -> XenResult<()> {
        let regs: Vec<(String, String)> =
            lock(&self.state).watches.iter().map(|(t, w)| (w.path.clone(), t.clone())).collect();
        for (path, token) in regs {
            self.request(MsgType::Watch, NO_TX, &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"], &path)?;
        }
        Ok(())
    }

    /// Drops connection `gen` (if still current) and fails its requests.
    fn kill(&self, st: &mut State, gen: u64, why: &XenError) {
        if st.conn.as_ref().is_none_or(|c| c.gen != gen) {
            return;
        }
        st.conn = None;
        st.dec = Decoder::new();
        st.device_busy = false;
        for w in st.waiting.iter_mut().filter(|w| w.reply.is_none()) {
            w.reply = Some(Err(match why {
                XenError::Protocol(m) => XenError::Protocol(m.clone()),
                _ => XenError::Disconnected,
            }));
        }
        self.wake(st);
    }

    fn wake(&self, st: &State) {
        if st.sleepers > 0 {
            self.cond.notify_all();
        }
    }

    fn sleep<'a>(&self, mut st: MutexGuard<'a, State>, limit: Option<Duration>) -> MutexGuard<'a, State> {
        st.sleepers += 1;
        let mut st = match limit {
            Some(t) => self.cond.wait_timeout(st, t).unwrap_or_else(|e| e.into_inner()).0,
            None => self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
        };
        st.sleepers -= 1;
        st
    }

    // -- the request path ---------------------------------------------------

    fn request(&self, ty: MsgType, tx_id: u32, parts: &[&[u8]], what: &str) -> XenResult<Message> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > wire::PAYLOAD_MAX {
            return Err(XenError::TooLarge { len, limit: wire::PAYLOAD_MAX });
        }
        let mut st = lock(&self.state);
        let (mut conn, fresh) = self.conn(&mut st)?;
        if fresh {
            drop(st);
            self.rearm()?;
            st = lock(&self.state);
            conn = self.conn(&mut st)?.0;
        }
        // The device takes one request at a time (see `XsConfig::max_in_flight`).
        let device = !conn.io.is_socket();
        if device {
            while st.device_busy {
                st = self.sleep(st, None);
            }
            (conn, _) = self.conn(&mut st)?;
            st.device_busy = true;
        }
        let mut req_id = st.next_req;
        if req_id == 0 {
            req_id = 1;
        }
        st.next_req = req_id.wrapping_add(1);
        let mut wbuf = std::mem::take(&mut st.wbuf);
        wbuf.clear();
        // Cannot fail: the length was checked above.
        let _ = wire::encode_request(&mut wbuf, ty, req_id, tx_id, parts);
        let written = conn.io.write_all(&wbuf);
        st.wbuf = wbuf;
        if let Err(e) = written {
            self.kill(&mut st, conn.gen, &XenError::Disconnected);
            return Err(XenError::io("write to xenstore", e));
        }
        st.waiting.push(Waiter { req_id, reply: None });
        if self.config.batch_wakeups {
            batch_enter();
        }
        let res = self.wait_reply(st, &conn, req_id);
        if self.config.batch_wakeups {
            batch_leave();
        }
        if device {
            let mut st = lock(&self.state);
            if st.conn.as_ref().is_some_and(|c| c.gen == conn.gen) {
                st.device_busy = false;
            }
            self.wake(&st);
        }
        match res {
            Err(XenError::Timeout(_)) => Err(XenError::Timeout(format!("xenstore {} {what}", ty.name()))),
            Err(e) => Err(e),
            Ok(reply) => check_reply(ty, req_id, what, reply),
        }
    }

    /// Waits for the reply to `req_id`, reading the connection itself unless
    /// another thread already does.
    fn wait_reply<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        conn: &Arc<Conn>,
        req_id: u32,
    ) -> XenResult<Message> {
        let mut deadline: Option<Instant> = None;
        loop {
            let Some(pos) = st.waiting.iter().position(|w| w.req_id == req_id) else {
                return Err(XenError::Disconnected);
            };
            if st.waiting[pos].reply.is_some() {
                let w = st.waiting.swap_remove(pos);
                return w.reply.expect("checked");
            }
            if !st.reading {
                let (s, timed_out) = self.read_once(st, conn, ReadMode::Reply);
                st = s;
                if timed_out {
                    if let Some(pos) = st.waiting.iter().position(|w| w.req_id == req_id) {
                        if let Some(reply) = st.waiting.swap_remove(pos).reply {
                            return reply;
                        }
                    }
                    return Err(XenError::Timeout(String::new()));
                }
                continue;
            }
            // Another thread reads; it hands our reply over.
            let limit = match self.config.request_timeout {
                None => None,
                Some(t) => {
                    let d = *deadline.get_or_insert_with(|| Instant::now() + t);
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        st.waiting.retain(|w| w.req_id != req_id);
                        return Err(XenError::Timeout(String::new()));
                    }
                    Some(left)
                }
            };
            st = self.sleep(st, limit);
        }
    }

    /// Takes the reader role, reads once (outside the lock), routes what
    /// arrived. Returns the lock and whether the wait timed out.
    fn read_once<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        conn: &Arc<Conn>,
        mode: ReadMode,
    ) -> (MutexGuard<'a, State>, bool) {
        st.reading = true;
        let mut dec = std::mem::take(&mut st.dec);
        drop(st);
        let res = read_into(&conn.io, &mut dec, mode, self.config.request_timeout);
        let mut st = lock(&self.state);
        st.reading = false;
        let current = st.conn.as_ref().is_some_and(|c| c.gen == conn.gen);
        let mut timed_out = false;
        match res {
            _ if !current => {}
            Ok(true) => {
                st.dec = dec;
                self.route(&mut st, conn.gen);
            }
            Ok(false) => {
                st.dec = dec;
                timed_out = true;
            }
            Err(e) => self.kill(&mut st, conn.gen, &e),
        }
        self.wake(&st);
        (st, timed_out)
    }

    /// Hands every whole message received to its waiter or watch.
    fn route(&self, st: &mut State, gen: u64) {
        loop {
            match st.dec.next_message() {
                Ok(Some(m)) if m.ty == MsgType::WatchEvent => {
                    // A malformed event does not break framing; it is dropped.
                    if let Ok(ev) = WatchEvent::parse(&m.payload) {
                        if let Some(q) = st.watches.get_mut(&ev.token) {
                            q.events.push_back(ev);
                        }
                    }
                }
                Ok(Some(m)) => {
                    // A reply nobody waits for (timed out, or invented by a
                    // hostile peer) is dropped.
                    if let Some(w) = st.waiting.iter_mut().find(|w| w.req_id == m.req_id && w.reply.is_none())
                    {
                        w.reply = Some(Ok(m));
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.kill(st, gen, &e);
                    return;
                }
            }
        }
    }

    // -- operations -----------------------------------------------------------

    fn op_read(&self, tx: u32, path: &str) -> XenResult<Vec<u8>> {
        wire::check_path(path)?;
        Ok(self.request(MsgType::Read, tx, &[path.as_bytes(), b"\0"], path)?.payload)
    }

    fn op_write(&self, tx: u32, path: &str, value: &[u8]) -> XenResult<()> {
        wire::check_path(path)?;
        self.request(MsgType::Write, tx, &[path.as_bytes(), b"\0", value], path).map(drop)
    }

    fn op_simple(&self, ty: MsgType, tx: u32, path: &str) -> XenResult<()> {
        wire::check_path(path)?;
        self.request(ty, tx, &[path.as_bytes(), b"\0"], path).map(drop)
    }

    fn op_directory(&self, tx: u32, path: &str) -> XenResult<Vec<String>> {
        wire::check_path(path)?;
        match self.request(MsgType::Directory, tx, &[path.as_bytes(), b"\0"], path) {
            Ok(m) => wire::split_strings(&m.payload),
            Err(e) if matches!(e.xs_errno(), Some(XsErrno::E2big)) => {
                let mut parts = DirParts::default();
                loop {
                    let off = parts.offset();
                    let m = self.request(
                        MsgType::DirectoryPart,
                        tx,
                        &[path.as_bytes(), b"\0", off.as_bytes(), b"\0"],
                        path,
                    )?;
                    if let Some(done) = parts.feed(&m.payload)? {
                        return Ok(done);
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    fn op_get_perms(&self, tx: u32, path: &str) -> XenResult<Perms> {
        wire::check_path(path)?;
        let m = self.request(MsgType::GetPerms, tx, &[path.as_bytes(), b"\0"], path)?;
        Perms::from_strings(&wire::split_strings(&m.payload)?)
            .map_err(|e| XenError::Protocol(format!("GET_PERMS reply: {e}")))
    }

    fn op_set_perms(&self, tx: u32, path: &str, perms: &Perms) -> XenResult<()> {
        wire::check_path(path)?;
        self.request(MsgType::SetPerms, tx, &[&perms_payload(path, perms)], path).map(drop)
    }

    fn domid_request(&self, ty: MsgType, args: &[u64]) -> XenResult<Message> {
        let strings: Vec<String> = args.iter().map(u64::to_string).collect();
        let parts: Vec<&str> = strings.iter().map(String::as_str).collect();
        self.request(ty, NO_TX, &[&wire::nul_strings(&parts)], &strings[0])
    }

    // -- public API -------------------------------------------------------------

    /// Reads a node.
    pub fn read(&self, path: &str) -> XenResult<Vec<u8>> {
        self.op_read(NO_TX, path)
    }

    /// Reads a node as text.
    pub fn read_string(&self, path: &str) -> XenResult<String> {
        utf8(self.read(path)?, path)
    }

    /// Reads a node, `None` if it does not exist.
    pub fn try_read_string(&self, path: &str) -> XenResult<Option<String>> {
        match self.read_string(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a node.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> XenResult<()> {
        self.op_write(NO_TX, path, value.as_ref())
    }

    /// Creates a node.
    pub fn mkdir(&self, path: &str) -> XenResult<()> {
        self.op_simple(MsgType::Mkdir, NO_TX, path)
    }

    /// Removes a node and its children.
    pub fn rm(&self, path: &str) -> XenResult<()> {
        self.op_simple(MsgType::Rm, NO_TX, path)
    }

    /// Lists a node's children.
    pub fn directory(&self, path: &str) -> XenResult<Vec<String>> {
        self.op_directory(NO_TX, path)
    }

    /// Reads permissions.
    pub fn get_perms(&self, path: &str) -> XenResult<Perms> {
        self.op_get_perms(NO_TX, path)
    }

    /// Sets permissions.
    pub fn set_perms(&self, path: &str, perms: &Perms) -> XenResult<()> {
        self.op_set_perms(NO_TX, path, perms)
    }

    /// The home path of a domain.
    pub fn get_domain_path(&self, domid: u32) -> XenResult<String> {
        wire::single_string(&self.domid_request(MsgType::GetDomainPath, &[domid.into()])?.payload)
    }

    /// Introduces a domain to xenstored.
    pub fn introduce_domain(&self, domid: u32, gfn: u64, evtchn: u32) -> XenResult<()> {
        self.domid_request(MsgType::Introduce, &[domid.into(), gfn, evtchn.into()]).map(drop)
    }

    /// Makes xenstored forget a domain.
    pub fn release_domain(&self, domid: u32) -> XenResult<()> {
        self.domid_request(MsgType::Release, &[domid.into()]).map(drop)
    }

    /// Watches a path. xenstored fires once right away; events may also be
    /// spurious, and one fires after each reconnect when the watch is re-armed.
    pub fn watch(&self, path: &str) -> XenResult<BlockingWatch<'_>> {
        wire::check_path(path)?;
        let n = self.next_token.fetch_add(1, Ordering::Relaxed);
        let token = format!("ovm:{}:b{n}", std::process::id());
        // Registered before the request: the first event may overtake the reply.
        lock(&self.state)
            .watches
            .insert(token.clone(), WatchQueue { path: path.to_string(), events: VecDeque::new() });
        let res =
            self.request(MsgType::Watch, NO_TX, &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"], path);
        if let Err(e) = res {
            lock(&self.state).watches.remove(&token);
            return Err(e);
        }
        Ok(BlockingWatch { owner: self, token, path: path.to_string() })
    }

    /// Runs `body` in a transaction, retrying on `EAGAIN` (up to
    /// [`XsConfig::max_transaction_attempts`] times).
    pub fn transaction<T>(
        &self,
        mut body: impl FnMut(&BlockingTransaction<'_>) -> XenResult<T>,
    ) -> XenResult<T> {
        let max = self.config.max_transaction_attempts.max(1);
        for attempt in 1..=max {
            let m = self.request(MsgType::TransactionStart, NO_TX, &[b"\0"], "")?;
            let s = wire::single_string(&m.payload)?;
            let id = s
                .parse::<u32>()
                .ok()
                .filter(|id| *id != 0)
                .ok_or_else(|| XenError::Protocol(format!("bad transaction id {s:?}")))?;
            let tx = BlockingTransaction { owner: self, id };
            let outcome = match body(&tx) {
                Ok(v) => match tx.end(true) {
                    Ok(()) => return Ok(v),
                    Err(e) => e,
                },
                Err(e) => {
                    let _ = tx.end(false);
                    e
                }
            };
            if !outcome.is_eagain() {
                return Err(outcome);
            }
            std::thread::sleep(Duration::from_millis((1u64 << attempt.min(6)).min(50)));
        }
        Err(XenError::TransactionConflict { attempts: max })
    }
}

/// One read of the connection into `dec`: `Ok(true)` if bytes arrived,
/// `Ok(false)` on timeout, an error if the connection is unusable.
fn read_into(io: &SyncIo, dec: &mut Decoder, mode: ReadMode, timeout: Option<Duration>) -> XenResult<bool> {
    let wait = match mode {
        // The socket's receive timeout bounds the read itself.
        ReadMode::Reply if io.is_socket() => None,
        ReadMode::Reply => timeout,
        ReadMode::Event(t) => Some(t),
    };
    let must_poll = matches!(mode, ReadMode::Event(_)) || (!io.is_socket() && timeout.is_some());
    if must_poll && !io.wait_readable(wait).map_err(|e| XenError::io("poll xenstore", e))? {
        return Ok(false);
    }
    match io.read(dec.spare(READ_CHUNK)) {
        Ok(0) => Err(XenError::Disconnected),
        Ok(n) => {
            dec.commit(n);
            Ok(true)
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Ok(false)
        }
        Err(_) => Err(XenError::Disconnected),
    }
}

fn utf8(v: Vec<u8>, path: &str) -> XenResult<String> {
    String::from_utf8(v).map_err(|_| XenError::Protocol(format!("value of {path} is not UTF-8")))
}

/// A transaction of a [`BlockingXsClient`].
#[derive(Debug)]
pub struct BlockingTransaction<'a> {
    owner: &'a BlockingXsClient,
    id: u32,
}

impl BlockingTransaction<'_> {
    /// The transaction id chosen by xenstored.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Reads a node in the transaction.
    pub fn read(&self, path: &str) -> XenResult<Vec<u8>> {
        self.owner.op_read(self.id, path)
    }

    /// Reads a node as text in the transaction.
    pub fn read_string(&self, path: &str) -> XenResult<String> {
        utf8(self.read(path)?, path)
    }

    /// Writes a node in the transaction.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> XenResult<()> {
        self.owner.op_write(self.id, path, value.as_ref())
    }

    /// Creates a node in the transaction.
    pub fn mkdir(&self, path: &str) -> XenResult<()> {
        self.owner.op_simple(MsgType::Mkdir, self.id, path)
    }

    /// Removes a node in the transaction.
    pub fn rm(&self, path: &str) -> XenResult<()> {
        self.owner.op_simple(MsgType::Rm, self.id, path)
    }

    /// Lists children in the transaction.
    pub fn directory(&self, path: &str) -> XenResult<Vec<String>> {
        self.owner.op_directory(self.id, path)
    }

    /// Reads permissions in the transaction.
    pub fn get_perms(&self, path: &str) -> XenResult<Perms> {
        self.owner.op_get_perms(self.id, path)
    }

    /// Sets permissions in the transaction.
    pub fn set_perms(&self, path: &str, perms: &Perms) -> XenResult<()> {
        self.owner.op_set_perms(self.id, path, perms)
    }

    fn end(&self, commit: bool) -> XenResult<()> {
        let flag = if commit { "T" } else { "F" };
        self.owner.request(MsgType::TransactionEnd, self.id, &[flag.as_bytes(), b"\0"], flag).map(drop)
    }
}

/// A watch of a [`BlockingXsClient`]. Dropping it removes the watch.
#[derive(Debug)]
pub struct BlockingWatch<'a> {
    owner: &'a BlockingXsClient,
    token: String,
    path: String,
}

impl BlockingWatch<'_> {
    /// The watched path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The watch token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// An event that is already queued, without waiting.
    pub fn try_next(&mut self) -> Option<WatchEvent> {
        lock(&self.owner.state).watches.get_mut(&self.token)?.events.pop_front()
    }

    /// Waits up to `timeout` for the next event. After a lost connection this
    /// reconnects (with auto-reconnect) and re-arms the watches.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<WatchEvent> {
        let owner = self.owner;
        let deadline = Instant::now() + timeout;
        let mut st = lock(&owner.state);
        loop {
            if let Some(ev) = st.watches.get_mut(&self.token)?.events.pop_front() {
                return Some(ev);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if st.reading {
                st = owner.sleep(st, Some(left));
                continue;
            }
            let conn = match owner.conn(&mut st) {
                Ok((c, false)) => c,
                Ok((_, true)) => {
                    drop(st);
                    let _ = owner.rearm();
                    st = lock(&owner.state);
                    continue;
                }
                Err(_) => {
                    // Retry the connection a little later.
                    drop(st);
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                    st = lock(&owner.state);
                    continue;
                }
            };
            st = owner.read_once(st, &conn, ReadMode::Event(left)).0;
        }
    }
}

impl Drop for BlockingWatch<'_> {
    fn drop(&mut self) {
        let live = {
            let mut st = lock(&self.owner.state);
            st.watches.remove(&self.token);
            st.conn.is_some()
        };
        if live {
            let _ = self.owner.request(
                MsgType::Unwatch,
                NO_TX,
                &[self.path.as_bytes(), b"\0", self.token.as_bytes(), b"\0"],
                &self.path,
            );
        }
    }
}
