//! Byte transports to xenstored: its Unix socket (dom0 with a local daemon)
//! and the kernel's `/dev/xen/xenbus` device (any domain).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

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

/// Read half of a connection.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// Write half of a connection.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

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

    /// Opens a new connection (must be called inside a tokio runtime).
    pub(crate) async fn connect(&self) -> XenResult<(ReadHalf, WriteHalf)> {
        match self {
            Transport::Socket(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| XenError::io(format!("connect {}", p.display()), e))?;
                let (r, w) = s.into_split();
                Ok((Box::new(r), Box::new(w)))
            }
            Transport::Xenbus(p) => {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(p)
                    .map_err(|e| XenError::io(format!("open {}", p.display()), e))?;
                let dev = XenbusDevice::new(f.into())?;
                let (r, w) = tokio::io::split(dev);
                Ok((Box::new(r), Box::new(w)))
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

fn set_nonblocking(fd: &OwnedFd) -> XenResult<()> {
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
        match t.connect().await {
            Err(XenError::Io { context, .. }) => assert!(context.contains("/nonexistent/ovm-test/socket")),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("connected to a missing socket"),
        }
    }
}
