//! A blocking façade over [`XsClient`] for callers without an async runtime.
//!
//! It owns a single-threaded tokio runtime that each call drives on the
//! calling thread (writing the request, reading the reply): no thread
//! hand-off per request, which matters in a small dom0. Watch events are
//! read while a call (such as [`BlockingWatch::next_timeout`]) runs; until
//! then they wait in the socket. Do not call it from inside an async context.

use std::time::Duration;

use super::client::{Transaction, WatchStream, XsClient, XsConfig};
use super::error::{XenError, XenResult};
use super::perms::Perms;
use super::transport::Transport;
use super::wire::WatchEvent;

/// A blocking xenstore client.
#[derive(Debug)]
pub struct BlockingXsClient {
    rt: tokio::runtime::Runtime,
    client: XsClient,
}

impl BlockingXsClient {
    /// Connects over the first available transport.
    pub fn connect_default() -> XenResult<BlockingXsClient> {
        BlockingXsClient::connect(Transport::detect()?, XsConfig::default())
    }

    /// Connects over `transport`.
    pub fn connect(transport: Transport, config: XsConfig) -> XenResult<BlockingXsClient> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| XenError::io("start xenstore runtime", e))?;
        let client = rt.block_on(XsClient::connect(transport, config))?;
        Ok(BlockingXsClient { rt, client })
    }

    /// The underlying async client (to share the connection with async code).
    pub fn async_client(&self) -> &XsClient {
        &self.client
    }

    /// Reads a node.
    pub fn read(&self, path: &str) -> XenResult<Vec<u8>> {
        self.rt.block_on(self.client.read(path))
    }

    /// Reads a node as text.
    pub fn read_string(&self, path: &str) -> XenResult<String> {
        self.rt.block_on(self.client.read_string(path))
    }

    /// Reads a node, `None` if it does not exist.
    pub fn try_read_string(&self, path: &str) -> XenResult<Option<String>> {
        self.rt.block_on(self.client.try_read_string(path))
    }

    /// Writes a node.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> XenResult<()> {
        self.rt.block_on(self.client.write(path, value))
    }

    /// Creates a node.
    pub fn mkdir(&self, path: &str) -> XenResult<()> {
        self.rt.block_on(self.client.mkdir(path))
    }

    /// Removes a node and its children.
    pub fn rm(&self, path: &str) -> XenResult<()> {
        self.rt.block_on(self.client.rm(path))
    }

    /// Lists a node's children.
    pub fn directory(&self, path: &str) -> XenResult<Vec<String>> {
        self.rt.block_on(self.client.directory(path))
    }

    /// Reads permissions.
    pub fn get_perms(&self, path: &str) -> XenResult<Perms> {
        self.rt.block_on(self.client.get_perms(path))
    }

    /// Sets permissions.
    pub fn set_perms(&self, path: &str, perms: &Perms) -> XenResult<()> {
        self.rt.block_on(self.client.set_perms(path, perms))
    }

    /// The home path of a domain.
    pub fn get_domain_path(&self, domid: u32) -> XenResult<String> {
        self.rt.block_on(self.client.get_domain_path(domid))
    }

    /// Introduces a domain to xenstored.
    pub fn introduce_domain(&self, domid: u32, gfn: u64, evtchn: u32) -> XenResult<()> {
        self.rt.block_on(self.client.introduce_domain(domid, gfn, evtchn))
    }

    /// Makes xenstored forget a domain.
    pub fn release_domain(&self, domid: u32) -> XenResult<()> {
        self.rt.block_on(self.client.release_domain(domid))
    }

    /// Watches a path.
    pub fn watch(&self, path: &str) -> XenResult<BlockingWatch<'_>> {
        let stream = self.rt.block_on(self.client.watch(path))?;
        Ok(BlockingWatch { owner: self, stream: Some(stream) })
    }

    /// Runs `body` in a transaction, retrying on `EAGAIN`.
    pub fn transaction<T>(
        &self,
        mut body: impl FnMut(&BlockingTransaction<'_>) -> XenResult<T>,
    ) -> XenResult<T> {
        // The async retry helper cannot run blocking closures, so the retry
        // loop is repeated here on top of the async primitives.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let tx = self.rt.block_on(self.client.transaction_start())?;
            let btx = BlockingTransaction { owner: self, tx };
            let res = body(&btx);
            let outcome = match res {
                Ok(v) => match self.rt.block_on(btx.tx.commit()) {
                    Ok(()) => return Ok(v),
                    Err(e) => e,
                },
                Err(e) => {
                    let _ = self.rt.block_on(btx.tx.abort());
                    e
                }
            };
            if !outcome.is_eagain() {
                return Err(outcome);
            }
            if attempts >= 16 {
                return Err(XenError::TransactionConflict { attempts });
            }
            std::thread::sleep(Duration::from_millis((1u64 << attempts.min(6)).min(50)));
        }
    }
}

/// A transaction of a [`BlockingXsClient`].
#[derive(Debug)]
pub struct BlockingTransaction<'a> {
    owner: &'a BlockingXsClient,
    tx: Transaction,
}

impl BlockingTransaction<'_> {
    /// Reads a node in the transaction.
    pub fn read_string(&self, path: &str) -> XenResult<String> {
        self.owner.rt.block_on(self.tx.read_string(path))
    }

    /// Writes a node in the transaction.
    pub fn write(&self, path: &str, value: impl AsRef<[u8]>) -> XenResult<()> {
        self.owner.rt.block_on(self.tx.write(path, value))
    }

    /// Removes a node in the transaction.
    pub fn rm(&self, path: &str) -> XenResult<()> {
        self.owner.rt.block_on(self.tx.rm(path))
    }

    /// Lists children in the transaction.
    pub fn directory(&self, path: &str) -> XenResult<Vec<String>> {
        self.owner.rt.block_on(self.tx.directory(path))
    }
}

/// A watch of a [`BlockingXsClient`].
#[derive(Debug)]
pub struct BlockingWatch<'a> {
    owner: &'a BlockingXsClient,
    stream: Option<WatchStream>,
}

impl BlockingWatch<'_> {
    /// Waits up to `timeout` for the next event.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<WatchEvent> {
        let stream = self.stream.as_mut()?;
        self.owner.rt.block_on(async { tokio::time::timeout(timeout, stream.next()).await.ok().flatten() })
    }
}

impl Drop for BlockingWatch<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.stream.take() {
            let _ = self.owner.rt.block_on(s.unwatch());
        }
    }
}
