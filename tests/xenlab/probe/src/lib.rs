//! Minimal, std-only access to a Xen dom0, used to prove that Rust test
//! binaries built on the host run inside the ovm Xen lab: a privcmd hypercall
//! and the xenstore wire protocol over xenstored's unix socket.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Where xenstored listens in dom0.
pub const XENSTORED_SOCKET: &str = "/var/run/xenstored/socket";

/// xenstore message types (xen/include/public/io/xs_wire.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum XsOp {
    Directory = 1,
    Read = 2,
    Write = 11,
    Rm = 13,
    Error = 16,
}

/// A xenstore connection over any byte stream (socket or `/dev/xen/xenbus`).
#[derive(Debug)]
pub struct Xenstore<S> {
    stream: S,
    next_req: u32,
}

impl Xenstore<UnixStream> {
    /// Connects to xenstored's unix socket.
    pub fn connect() -> io::Result<Self> {
        Self::connect_at(XENSTORED_SOCKET)
    }

    /// Connects to a xenstored socket at `path`.
    pub fn connect_at(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Xenstore { stream: UnixStream::connect(path)?, next_req: 1 })
    }
}

impl<S: Read + Write> Xenstore<S> {
    /// Sends one request and returns the payload of its reply.
    pub fn request(&mut self, op: XsOp, payload: &[u8]) -> io::Result<Vec<u8>> {
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload too large"))?;
        let mut msg = Vec::with_capacity(16 + payload.len());
        for word in [op as u32, req_id, 0 /* no transaction */, len] {
            msg.extend_from_slice(&word.to_le_bytes());
        }
        msg.extend_from_slice(payload);
        // One write per message: /dev/xen/xenbus requires it.
        self.stream.write_all(&msg)?;

        let mut header = [0u8; 16];
        self.stream.read_exact(&mut header)?;
        let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (reply_op, reply_id, reply_len) = (word(0), word(4), word(12) as usize);
        let mut body = vec![0u8; reply_len];
        self.stream.read_exact(&mut body)?;
        if reply_op == XsOp::Error as u32 {
            let text = String::from_utf8_lossy(&body).trim_end_matches('\0').to_string();
            return Err(io::Error::other(format!("xenstore error {text}")));
        }
        if reply_op != op as u32 || reply_id != req_id {
            return Err(io::Error::other(format!("unexpected xenstore reply type {reply_op} id {reply_id}")));
        }
        Ok(body)
    }

    /// XS_READ of `path`.
    pub fn read(&mut self, path: &str) -> io::Result<String> {
        let body = self.request(XsOp::Read, &nul_terminated(path))?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// XS_WRITE of `value` at `path`.
    pub fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        let mut payload = nul_terminated(path);
        payload.extend_from_slice(value.as_bytes());
        self.request(XsOp::Write, &payload).map(drop)
    }

    /// XS_RM of `path` and its children.
    pub fn rm(&mut self, path: &str) -> io::Result<()> {
        self.request(XsOp::Rm, &nul_terminated(path)).map(drop)
    }

    /// XS_DIRECTORY: the children of `path`.
    pub fn directory(&mut self, path: &str) -> io::Result<Vec<String>> {
        let body = self.request(XsOp::Directory, &nul_terminated(path))?;
        Ok(body
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// `struct privcmd_hypercall` of the Linux privcmd driver.
#[repr(C)]
#[derive(Debug)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}

// _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))
const IOCTL_PRIVCMD_HYPERCALL: u64 =
    ((std::mem::size_of::<PrivcmdHypercall>() as u64) << 16) | ((b'P' as u64) << 8);
const HYPERVISOR_XEN_VERSION: u64 = 17;
const XENVER_VERSION: u64 = 0;
const XENVER_EXTRAVERSION: u64 = 1;

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}

/// Issues `__HYPERVISOR_xen_version` through `/dev/xen/privcmd`; returns e.g. "4.17.7".
pub fn xen_version() -> io::Result<String> {
    let privcmd = OpenOptions::new().read(true).write(true).open("/dev/xen/privcmd")?;
    let fd = privcmd.as_raw_fd();
    let mut call = PrivcmdHypercall { op: HYPERVISOR_XEN_VERSION, arg: [XENVER_VERSION, 0, 0, 0, 0] };
    // SAFETY: fd is an open privcmd device and `call` is a valid, exclusively
    // borrowed privcmd_hypercall that lives across the call; XENVER_version
    // takes no buffer.
    let version = unsafe { ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &mut call as *mut PrivcmdHypercall) };
    if version < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut extra = [0u8; 16]; // xen_extraversion_t
    let mut call = PrivcmdHypercall {
        op: HYPERVISOR_XEN_VERSION,
        arg: [XENVER_EXTRAVERSION, extra.as_mut_ptr() as u64, 0, 0, 0],
    };
    // SAFETY: as above; `extra` is a writable 16-byte buffer, the size of
    // xen_extraversion_t, alive for the duration of the call.
    let rc = unsafe { ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &mut call as *mut PrivcmdHypercall) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let extra = String::from_utf8_lossy(&extra).trim_end_matches('\0').to_string();
    Ok(format!("{}.{}{}", version >> 16, version & 0xffff, extra))
}
