//! Byte transports to xenstored: its Unix socket (dom0 with a local daemon)
//! and the kernel's `/dev/xen/xenbus` device (any domain).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use super::error::{XenError, XenResult};

/// Where xenstored's Unix socket lives, in the order they are tried.
pub const SOCKET_PATHS: [&str; 2] = ["/var/run/xenstored/socket", "/run/xenstored/socket"];
/// The kernel xenbus device paths, in the order they are tried.
pub const XENBUS_PATHS: [&str; 2] = ["/dev/xen/xenbus", "/proc/xen/xenbus"];

/// A way to reach xenstored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// xenstored's Unix domain socket.
    Socket(PathBuf),
    /// The kernel's xenbus character device.
    Xenbus(PathBuf),
}

impl Transport {
    /// The transports tried by [`Transport::detect`]: the sockets first, then
    /// the xenbus devices.
    pub fn candidates() -> Vec<Transport> {
        SOCKET_PATHS
            .iter()
            .map(|p| Transport::Socket(p.into()))
            .chain(XENBUS_PATHS.iter().map(|p| Transport::Xenbus(p.into())))
            .collect()
    }

    /// The first candidate transport whose path exists.
    pub fn detect() -> XenResult<Transport> {
        let all = Transport::candidates();
        all.iter().find(|t| t.path().exists()).cloned().ok_or_else(|| XenError::NoTransport {
            tried: all.iter().map(|t| t.path().display().to_string()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The filesystem path of this transport.
    pub fn path(&self) -> &Path {
        match self {
            Transport::Socket(p) | Transport::Xenbus(p) => p,
        }
    }

    fn open_device(p: &Path, nonblocking: bool) -> XenResult<File> {
        let flags = if nonblocking { libc::O_NONBLOCK | libc::O_CLOEXEC } else { libc::O_CLOEXEC };
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags)
            .open(p)
            .map_err(|e| XenError::io(format!("open {}", p.display()), e))
    }

    /// Opens a new non-blocking connection registered with the current tokio
    /// runtime (must be called inside one).
    pub(crate) async fn connect_async(&self) -> XenResult<AsyncIo> {
        let (file, socket) = match self {
            Transport::Socket(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| XenError::io(format!("connect {}", p.display()), e))?;
                let s = s.into_std().map_err(|e| XenError::io("detach xenstore socket", e))?;
                (File::from(OwnedFd::from(s)), true)
            }
            Transport::Xenbus(p) => (Transport::open_device(p, true)?, false),
        };
        AsyncIo::new(file, socket)
    }

    /// Opens a new blocking connection. On a socket, `read_timeout` bounds
    /// every `read(2)` (`SO_RCVTIMEO`); the device has no such option, so
    /// its reader polls first.
    pub(crate) fn connect_blocking(&self, read_timeout: Option<Duration>) -> XenResult<SyncIo> {
        match self {
            Transport::Socket(p) => {
                let s = std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| XenError::io(format!("connect {}", p.display()), e))?;
                if let Some(t) = read_timeout {
                    s.set_read_timeout(Some(t.max(Duration::from_millis(1))))
                        .map_err(|e| XenError::io("set SO_RCVTIMEO", e))?;
                }
                Ok(SyncIo { file: File::from(OwnedFd::from(s)), socket: true })
            }
            Transport::Xenbus(p) => Ok(SyncIo { file: Transport::open_device(p, false)?, socket: false }),
        }
    }
}

/// Writes with `send(MSG_NOSIGNAL)` on a socket (a closed peer is an
/// `EPIPE` error, never a `SIGPIPE`), with `write(2)` on the device.
fn write_fd(file: &File, buf: &[u8], socket: bool) -> std::io::Result<usize> {
    if socket {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole
        // call and the descriptor is owned by `file`, which outlives it.
        let n = unsafe { libc::send(file.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    } else {
        (&*file).write(buf)
    }
}

/// A blocking connection: one descriptor used with plain `write(2)`/`read(2)`.
#[derive(Debug)]
pub(crate) struct SyncIo {
    file: File,
    socket: bool,
}

impl SyncIo {
    /// Whether this is a socket (pipelining allowed) rather than the device.
    pub(crate) fn is_socket(&self) -> bool {
        self.socket
    }

    /// Writes all of `buf` (a whole message, or several on a socket).
    pub(crate) fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            match write_fd(&self.file, buf, self.socket) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One `read(2)`; blocks (up to the socket's read timeout, reported as
    /// `WouldBlock`/`TimedOut`).
    pub(crate) fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match (&self.file).read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// Waits up to `timeout` (`None`: forever) for the descriptor to be
    /// readable; `Ok(false)` on timeout.
    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> std::io::Result<bool> {
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_millis().min(i32::MAX as u128) as i32,
        };
        let mut pfd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        loop {
            // SAFETY: one valid pollfd, and its count is 1.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r >= 0 {
                return Ok(r > 0);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// A non-blocking connection registered with tokio: requests are written
/// directly by the task that makes them, replies read by the reader task.
#[derive(Debug)]
pub(crate) struct AsyncIo {
    fd: AsyncFd<File>,
    socket: bool,
}

impl AsyncIo {
    fn new(file: File, socket: bool) -> XenResult<AsyncIo> {
        set_nonblocking(&file)?;
        // The device never reports writability (see `XenbusDevice`).
        let interest = if socket { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        // SAFETY: `file` owns its descriptor, which therefore stays open and
        // refers to the same open file description until the `AsyncFd` (which
        // takes ownership of `file`) is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(file, interest) }
            .map_err(|e| XenError::io("register xenstore connection", e.into()))?;
        Ok(AsyncIo { fd, socket })
    }

    /// Whether this is a socket (pipelining allowed) rather than the device.
    pub(crate) fn is_socket(&self) -> bool {
        self.socket
    }

    /// One non-blocking write attempt.
    pub(crate) fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match write_fd(self.fd.get_ref(), buf, self.socket) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// After a write would have blocked: waits until writing may succeed.
    pub(crate) async fn wait_writable(&self) -> std::io::Result<()> {
        if self.socket {
            // Clears only the readiness seen before the failed write (tokio
            // compares ticks), so a later wake-up is not lost; the caller
            // retries the write either way.
            let mut g = self.fd.writable().await?;
            g.clear_ready();
        } else {
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    /// One non-blocking `read(2)` (for use inside [`AsyncIo::read_with`]).
    pub(crate) fn read_raw(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.fd.get_ref().read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// Waits until the connection is readable and runs `read` (which must
    /// read it, a `WouldBlock` error meaning it found nothing); its `bool`
    /// says it drained the socket, which then forgets the readiness at once
    /// instead of paying a read that would block (a newer wake-up is kept:
    /// tokio compares ticks).
    pub(crate) async fn read_with<R>(
        &self,
        mut read: impl FnMut() -> std::io::Result<(R, bool)>,
    ) -> std::io::Result<R> {
        loop {
            let mut g = self.fd.readable().await?;
            match g.try_io(|_| read()) {
                Ok(Ok((r, drained))) => {
                    if drained && self.socket {
                        g.clear_ready();
                    }
                    return Ok(r);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

/// An async wrapper of the xenbus character device.
///
/// The device supports non-blocking reads and `poll(2)` for readability, but
/// it never reports writability; a write hands one whole message to the kernel
/// and completes at once, so writes are issued directly.
#[derive(Debug)]
pub struct XenbusDevice {
    fd: AsyncFd<File>,
}

impl XenbusDevice {
    /// Wraps an open, non-blocking descriptor of the device (or, in tests,
    /// anything that behaves like it, such as one end of a socket pair).
    pub fn new(fd: OwnedFd) -> XenResult<XenbusDevice> {
        set_nonblocking(&fd)?;
        let file = File::from(fd);
        // SAFETY: `file` owns its descriptor, which therefore stays open and
        // refers to the same open file description until the `AsyncFd` (which
        // takes ownership of `file`) is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }
            .map_err(|e| XenError::io("register xenbus fd", e.into()))?;
        Ok(XenbusDevice { fd })
    }
}

fn set_nonblocking(fd: &impl AsRawFd) -> XenResult<()> {
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL take no pointers.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(XenError::io("fcntl(F_GETFL)", std::io::Error::last_os_error()));
    }
    // SAFETY: as above; only the O_NONBLOCK status flag is added.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if r < 0 {
        return Err(XenError::io("fcntl(F_SETFL)", std::io::Error::last_os_error()));
    }
    Ok(())
}

impl AsyncRead for XenbusDevice {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|inner| inner.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for XenbusDevice {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        // The device never signals writability; a write either completes or
        // fails at once. A would-block here (only seen with test stand-ins) is
        // retried by yielding.
        match self.fd.get_ref().write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            r => Poll::Ready(r),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_socket_and_device() {
        let c = Transport::candidates();
        assert_eq!(c[0], Transport::Socket("/var/run/xenstored/socket".into()));
        assert_eq!(c[1], Transport::Socket("/run/xenstored/socket".into()));
        assert_eq!(c[2], Transport::Xenbus("/dev/xen/xenbus".into()));
        assert_eq!(c[2].path(), Path::new("/dev/xen/xenbus"));
    }

    #[tokio::test]
    async fn missing_socket_is_a_typed_error() {
        let t = Transport::Socket("/nonexistent/ovm-test/socket".into());
        match t.connect_async().await {
            Err(XenError::Io { context, .. }) => assert!(context.contains("/nonexistent/ovm-test/socket")),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("connected to a missing socket"),
        }
    }
}
