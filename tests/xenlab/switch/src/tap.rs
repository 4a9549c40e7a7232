//! A host-side machine on the switch: a TAP interface plugged into a switch port, so that programs
//! on the host (in a network namespace the lab makes, as the manager on the management LAN) reach
//! the lab's machines directly. The TAP side is one Ethernet frame per read and per write; the
//! switch side is the datagram protocol of QEMU's `-netdev dgram` (see [`crate::socket_paths`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

const TUNSETIFF: std::ffi::c_ulong = 0x4004_54ca;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: the interface name, then the flags (40 bytes in all).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

extern "C" {
    fn ioctl(fd: std::ffi::c_int, request: std::ffi::c_ulong, ...) -> std::ffi::c_int;
}

/// Create (or attach to) the TAP interface `name` in the current network namespace.
pub fn open_tap(name: &str) -> std::io::Result<File> {
    if name.is_empty() || name.len() >= 16 || name.contains(['/', ' ']) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    let mut req = IfReq { name: [0; 16], flags: IFF_TAP | IFF_NO_PI, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is laid out as (repr(C),
    // 40 bytes, the name NUL-terminated); the descriptor is open for as long as the call runs.
    let rc = unsafe { ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Plug `tap` into the switch port `port` of the switch serving `dir`, and carry frames both ways
/// until an error on the TAP side (the interface was deleted) or on the socket.
pub fn plug_tap(dir: &Path, port: &str, tap: File) -> std::io::Result<()> {
    let (switch_side, machine_side) = crate::socket_paths(dir, port);
    let _ = std::fs::remove_file(&machine_side);
    let sock = UnixDatagram::bind(&machine_side)?;
    sock.connect(&switch_side)?;
    let to_switch = sock.try_clone()?;
    let mut tap_in = tap.try_clone()?;
    let mut tap_out = tap;
    let up =
        std::thread::Builder::new().name("tap-to-switch".into()).spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = tap_in.read(&mut buf)?;
                // A switch that is gone or busy loses the frame, as a cable would.
                let _ = to_switch.send(&buf[..n]);
            }
        })?;
    let mut buf = vec![0u8; 65536];
    loop {
        if up.is_finished() {
            return up.join().unwrap_or(Ok(()));
        }
        let n = sock.recv(&mut buf)?;
        // A frame the interface refuses (it is down) is lost.
        let _ = tap_out.write(&buf[..n]);
    }
}
