//! An in-process fake xenstored for the unit tests: it speaks the real wire
//! protocol over a Unix socket and can be told to misbehave (reorder replies,
//! force transaction conflicts, send hostile bytes, drop connections).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::wire::{self, Decoder, Message, MsgType};
use crate::sync::lock;

#[derive(Debug, Clone)]
struct Node {
    value: Vec<u8>,
    perms: Vec<String>,
}

type Tree = BTreeMap<String, Node>;

#[derive(Debug)]
struct Tx {
    base_gen: u64,
    tree: Tree,
    changed: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Behaviour {
    /// Hold this many replies and send them in reverse order.
    pub reorder_batch: usize,
    /// Fail this many upcoming commits with EAGAIN.
    pub forced_eagain_commits: u32,
    /// Raw byte strings sent instead of the next replies.
    pub hostile: VecDeque<Vec<u8>>,
    /// Directory listings longer than this answer E2BIG (0: never).
    pub dir_part_limit: usize,
}

#[derive(Debug)]
struct State {
    tree: Tree,
    gen: u64,
    txs: HashMap<u32, Tx>,
    next_tx: u32,
    watches: Vec<(u64, String, String)>,
    conns: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    behaviour: Behaviour,
    requests: Vec<(MsgType, u32)>,
}

/// The fake daemon. Dropping it stops it.
#[derive(Debug)]
pub(crate) struct FakeXenstored {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
    conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl FakeXenstored {
    /// Starts a daemon on a fresh socket path (inside a tokio runtime).
    pub(crate) fn start() -> FakeXenstored {
        let dir = std::env::temp_dir().join(format!(
            "ovm-fake-xenstored-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sock = dir.join("socket");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).expect("bind fake xenstored");
        let mut tree = Tree::new();
        for p in ["/", "/local", "/local/domain", "/local/domain/0"] {
            tree.insert(p.into(), Node { value: Vec::new(), perms: vec!["n0".into()] });
        }
        tree.insert(
            "/local/domain/0/name".into(),
            Node { value: b"Domain-0".to_vec(), perms: vec!["r0".into()] },
        );
        let state = Arc::new(Mutex::new(State {
            tree,
            gen: 1,
            txs: HashMap::new(),
            next_tx: 1,
            watches: Vec::new(),
            conns: HashMap::new(),
            behaviour: Behaviour::default(),
            requests: Vec::new(),
        }));
        let conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (st, tasks) = (state.clone(), conn_tasks.clone());
        let accept = tokio::spawn(async move {
            let mut id = 0u64;
            while let Ok((s, _)) = listener.accept().await {
                id += 1;
                let (r, w) = s.into_split();
                let h = tokio::spawn(serve(r, w, id, st.clone()));
                lock(&tasks).push(h);
            }
        });
        FakeXenstored { dir, state, accept, conn_tasks }
    }

    /// The socket path.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("socket")
    }

    /// Serves one already-connected byte stream (e.g. one end of a socket
    /// pair standing in for `/dev/xen/xenbus`).
    pub(crate) fn serve_stream<S>(&self, s: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(s);
        let h =
            tokio::spawn(serve(r, w, 1_000_000 + SEQ.fetch_add(1, Ordering::Relaxed), self.state.clone()));
        lock(&self.conn_tasks).push(h);
    }

    pub(crate) fn with_behaviour(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut lock(&self.state).behaviour);
    }

    /// Closes every client connection (the clients see EOF), as a restarted
    /// daemon would; their watches are forgotten.
    pub(crate) fn drop_connections(&self) {
        for h in lock(&self.conn_tasks).drain(..) {
            h.abort();
        }
        let mut st = lock(&self.state);
        st.conns.clear();
        st.watches.clear();
        st.txs.clear();
    }

    /// Current value of a node.
    pub(crate) fn value(&self, path: &str) -> Option<Vec<u8>> {
        lock(&self.state).tree.get(path).map(|n| n.value.clone())
    }

    /// Current permissions of a node (`n0`, `r5`, ...).
    pub(crate) fn perms(&self, path: &str) -> Option<Vec<String>> {
        lock(&self.state).tree.get(path).map(|n| n.perms.clone())
    }

    /// Writes a node from "another client" (fires watches, bumps the generation).
    pub(crate) fn external_write(&self, path: &str, value: &[u8]) {
        let mut st = lock(&self.state);
        write_node(&mut st.tree, path, value);
        st.gen += 1;
        fire(&st, path);
    }

    /// Fires a special watch (`@introduceDomain`, `@releaseDomain`).
    pub(crate) fn fire_special(&self, path: &str) {
        fire(&lock(&self.state), path);
    }

    /// Requests seen so far (type, tx id).
    pub(crate) fn requests(&self) -> Vec<(MsgType, u32)> {
        lock(&self.state).requests.clone()
    }

    /// Number of watches currently registered.
    pub(crate) fn watch_count(&self) -> usize {
        lock(&self.state).watches.len()
    }
}

impl Drop for FakeXenstored {
    fn drop(&mut self) {
        self.accept.abort();
        for h in lock(&self.conn_tasks).drain(..) {
            h.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn write_node(tree: &mut Tree, path: &str, value: &[u8]) {
    let mut p = parent(path);
    while let Some(q) = p {
        tree.entry(q.to_string()).or_insert_with(|| Node { value: Vec::new(), perms: vec!["n0".into()] });
        p = parent(q);
    }
    let perms = tree.get(path).map(|n| n.perms.clone()).unwrap_or_else(|| vec!["n0".into()]);
    tree.insert(path.to_string(), Node { value: value.to_vec(), perms });
}

fn children(tree: &Tree, path: &str) -> Vec<String> {
    let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
    tree.range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| !k[prefix.len()..].contains('/') && k.len() > prefix.len())
        .map(|(k, _)| k[prefix.len()..].to_string())
        .collect()
}

fn fire(st: &State, path: &str) {
    for (conn, wpath, token) in &st.watches {
        let hit = path == wpath || (path.starts_with(wpath.as_str()) && path[wpath.len()..].starts_with('/'));
        if hit {
            if let Some(tx) = st.conns.get(conn) {
                let m = Message::new(MsgType::WatchEvent, 0, 0, wire::nul_strings(&[path, token])).unwrap();
                let _ = tx.send(m.encode());
            }
        }
    }
}

fn err(m: &Message, e: &str) -> Message {
    Message::new(MsgType::Error, m.req_id, m.tx_id, wire::nul_strings(&[e])).unwrap()
}

fn ok(m: &Message, payload: Vec<u8>) -> Message {
    Message::new(m.ty, m.req_id, m.tx_id, payload).unwrap()
}

fn handle(st: &mut State, conn: u64, m: &Message) -> Message {
    st.requests.push((m.ty, m.tx_id));
    let args = match wire::split_strings(&m.payload) {
        Ok(a) => a,
        Err(_) if m.ty == MsgType::Write => Vec::new(),
        Err(_) => return err(m, "EINVAL"),
    };
    let arg0 = args.first().cloned().unwrap_or_default();
    match m.ty {
        MsgType::TransactionStart => {
            let id = st.next_tx;
            st.next_tx += 1;
            let snapshot = st.tree.clone();
            st.txs.insert(id, Tx { base_gen: st.gen, tree: snapshot, changed: Vec::new() });
            ok(m, wire::nul_strings(&[&id.to_string()]))
        }
        MsgType::TransactionEnd => {
            let Some(tx) = st.txs.remove(&m.tx_id) else { return err(m, "ENOENT") };
            if arg0 == "T" {
                if st.behaviour.forced_eagain_commits > 0 {
                    st.behaviour.forced_eagain_commits -= 1;
                    return err(m, "EAGAIN");
                }
                if tx.base_gen != st.gen {
                    return err(m, "EAGAIN");
                }
                if !tx.changed.is_empty() {
                    st.tree = tx.tree;
                    st.gen += 1;
                    for p in &tx.changed {
                        fire(st, p);
                    }
                }
            }
            ok(m, wire::nul_strings(&["OK"]))
        }
        MsgType::Watch => {
            let token = args.get(1).cloned().unwrap_or_default();
            st.watches.push((conn, arg0.clone(), token.clone()));
            // Fires once right away, like xenstored.
            if let Some(tx) = st.conns.get(&conn) {
                let reply = ok(m, wire::nul_strings(&["OK"]));
                let _ = tx.send(reply.encode());
                let ev =
                    Message::new(MsgType::WatchEvent, 0, 0, wire::nul_strings(&[&arg0, &token])).unwrap();
                let _ = tx.send(ev.encode());
            }
            // Marker: the reply was already sent.
            Message::new(MsgType::Watch, u32::MAX, 0, Vec::new()).unwrap()
        }
        MsgType::Unwatch => {
            let token = args.get(1).cloned().unwrap_or_default();
            let before = st.watches.len();
            st.watches.retain(|(c, p, t)| !(*c == conn && *p == arg0 && *t == token));
            if st.watches.len() == before {
                return err(m, "ENOENT");
            }
            ok(m, wire::nul_strings(&["OK"]))
        }
        MsgType::ResetWatches => {
            st.watches.retain(|(c, _, _)| *c != conn);
            ok(m, wire::nul_strings(&["OK"]))
        }
        MsgType::GetDomainPath => ok(m, wire::nul_strings(&[&format!("/local/domain/{arg0}")])),
        MsgType::IsDomainIntroduced => ok(m, wire::nul_strings(&[if arg0 == "0" { "T" } else { "F" }])),
        MsgType::Introduce => {
            fire(st, "@introduceDomain");
            ok(m, wire::nul_strings(&["OK"]))
        }
        MsgType::Release => {
            fire(st, "@releaseDomain");
            ok(m, wire::nul_strings(&["OK"]))
        }
        _ => handle_tree(st, m, &args, &arg0),
    }
}

fn handle_tree(st: &mut State, m: &Message, args: &[String], arg0: &str) -> Message {
    let arg0 = arg0.to_string();
    let limit = st.behaviour.dir_part_limit;
    // Transactions operate on a private copy of the tree.
    if m.tx_id != 0 && m.ty != MsgType::TransactionEnd && !st.txs.contains_key(&m.tx_id) {
        return err(m, "ENOENT");
    }
    let gen = st.gen;
    let (tree, changed): (&mut Tree, Option<&mut Vec<String>>) =
        if m.tx_id != 0 && m.ty != MsgType::TransactionEnd {
            let tx = st.txs.get_mut(&m.tx_id).expect("checked");
            (&mut tx.tree, Some(&mut tx.changed))
        } else {
            (&mut st.tree, None)
        };
    let in_tx = changed.is_some();
    let mut fired: Vec<String> = Vec::new();
    let reply = match m.ty {
        MsgType::Read => match tree.get(&arg0) {
            Some(n) => ok(m, n.value.clone()),
            None => err(m, "ENOENT"),
        },
        MsgType::Write => {
            let nul = m.payload.iter().position(|b| *b == 0).unwrap_or(m.payload.len());
            let path = String::from_utf8_lossy(&m.payload[..nul]).into_owned();
            let value = m.payload.get(nul + 1..).unwrap_or(&[]).to_vec();
            write_node(tree, &path, &value);
            fired.push(path);
            ok(m, wire::nul_strings(&["OK"]))
        }
        MsgType::Mkdir => {
            if !tree.contains_key(&arg0) {
                write_node(tree, &arg0, b"");
                fired.push(arg0.clone());
            }
            ok(m, wire::nul_strings(&["OK"]))
        }
        MsgType::Rm => {
            if !tree.contains_key(&arg0) {
                match parent(&arg0) {
                    Some(p) if tree.contains_key(p) => ok(m, wire::nul_strings(&["OK"])),
                    _ => err(m, "ENOENT"),
                }
            } else {
                let prefix = format!("{arg0}/");
                tree.retain(|k, _| k != &arg0 && !k.starts_with(&prefix));
                fired.push(arg0.clone());
                ok(m, wire::nul_strings(&["OK"]))
            }
        }
        MsgType::Directory | MsgType::DirectoryPart => {
            if !tree.contains_key(&arg0) {
                err(m, "ENOENT")
            } else {
                let kids = children(tree, &arg0);
                let mut listing = wire::nul_strings(&kids.iter().map(String::as_str).collect::<Vec<_>>());
                if m.ty == MsgType::Directory {
                    if limit > 0 && listing.len() > limit {
                        err(m, "E2BIG")
                    } else {
                        ok(m, listing)
                    }
                } else {
                    listing.push(0);
                    let off: usize = args.get(1).and_then(|o| o.parse().ok()).unwrap_or(0);
                    let chunk_len = if limit == 0 { listing.len() } else { limit };
                    let start = off.min(listing.len());
                    let end = (start + chunk_len).min(listing.len());
                    let mut p = wire::nul_strings(&[&gen.to_string()]);
                    p.extend_from_slice(&listing[start..end]);
                    ok(m, p)
                }
            }
        }
        MsgType::GetPerms => match tree.get(&arg0) {
            Some(n) => ok(m, wire::nul_strings(&n.perms.iter().map(String::as_str).collect::<Vec<_>>())),
            None => err(m, "ENOENT"),
        },
        MsgType::SetPerms => match tree.get_mut(&arg0) {
            Some(n) if args.len() >= 2 => {
                if args[1..].iter().any(|p| p.parse::<super::perms::Perm>().is_err()) {
                    err(m, "EINVAL")
                } else {
                    n.perms = args[1..].to_vec();
                    fired.push(arg0.clone());
                    ok(m, wire::nul_strings(&["OK"]))
                }
            }
            Some(_) => err(m, "EINVAL"),
            None => err(m, "ENOENT"),
        },
        _ => err(m, "ENOSYS"),
    };
    if let Some(c) = changed {
        c.extend(fired);
    } else if !in_tx && reply.ty != MsgType::Error && !fired.is_empty() {
        st.gen += 1;
        for p in &fired {
            fire(st, p);
        }
    }
    reply
}

async fn serve<R, W>(mut r: R, mut w: W, conn: u64, state: Arc<Mutex<State>>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    lock(&state).conns.insert(conn, tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    // Abort the writer when this task ends (or is aborted).
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _writer = AbortOnDrop(writer);
    let mut dec = Decoder::new();
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        dec.feed(&buf[..n]);
        while let Ok(Some(m)) = dec.next_message() {
            let mut st = lock(&state);
            let reply = handle(&mut st, conn, &m);
            if reply.ty == MsgType::Watch && reply.req_id == u32::MAX {
                continue;
            }
            let bytes = st.behaviour.hostile.pop_front().unwrap_or_else(|| reply.encode());
            let batch = st.behaviour.reorder_batch;
            if batch > 1 {
                held.push(bytes);
                if held.len() >= batch {
                    for b in held.drain(..).rev() {
                        let _ = tx.send(b);
                    }
                }
            } else {
                let _ = tx.send(bytes);
            }
        }
    }
    let mut st = lock(&state);
    st.conns.remove(&conn);
    st.watches.retain(|(c, _, _)| *c != conn);
}

impl AsRef<Path> for FakeXenstored {
    fn as_ref(&self) -> &Path {
        &self.dir
    }
}
