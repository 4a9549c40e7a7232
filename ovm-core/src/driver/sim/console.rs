//! The simulated guests' graphical consoles: a small RFB 3.8 server (security None, raw encoding,
//! 32-bit true colour) showing a screen of the guest's own: its domid's colour with a frame and
//! one bar per byte of its name. It mirrors what a Xen server's device model serves, so that the
//! manager's console proxy, its tokens and clients' screenshots are tested without Xen.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// The screen's size.
pub const WIDTH: u16 = 160;
/// The screen's height.
pub const HEIGHT: u16 = 100;

/// A 32-bit true-colour pixel format: shifts of red, green and blue, and byte order.
#[derive(Debug, Clone, Copy)]
struct Format {
    big_endian: bool,
    shifts: [u8; 3],
}

/// The console of the domain `name` (`domid`): the stream's other end is served on a thread.
pub(super) fn open(name: String, domid: u32) -> std::io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    std::thread::Builder::new().name("sim-console".into()).spawn(move || {
        let _ = serve(theirs, &name, domid);
    })?;
    Ok(ours)
}

/// The colour (r, g, b) of pixel (x, y).
fn colour(x: u16, y: u16, name: &[u8], domid: u32) -> [u8; 3] {
    let base = [(domid * 70 % 256) as u8, (domid * 150 % 256) as u8, 96];
    if x < 4 || y < 4 || x >= WIDTH - 4 || y >= HEIGHT - 4 {
        return [255, 255, 255];
    }
    let bar = usize::from((x - 4) / 6);
    match name.get(bar) {
        Some(b) if (y - 4) < u16::from(*b) % (HEIGHT - 8) => [255, 220, 0],
        _ => base,
    }
}

fn server_init(name: &str, f: Format) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&WIDTH.to_be_bytes());
    m.extend_from_slice(&HEIGHT.to_be_bytes());
    m.extend_from_slice(&[32, 24, u8::from(f.big_endian), 1]);
    for _ in 0..3 {
        m.extend_from_slice(&255u16.to_be_bytes());
    }
    m.extend_from_slice(&f.shifts);
    m.extend_from_slice(&[0, 0, 0]);
    m.extend_from_slice(&(name.len() as u32).to_be_bytes());
    m.extend_from_slice(name.as_bytes());
    m
}

fn frame(name: &str, domid: u32, f: Format) -> Vec<u8> {
    let mut m = vec![0, 0];
    m.extend_from_slice(&1u16.to_be_bytes());
    for v in [0, 0, WIDTH, HEIGHT] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m.extend_from_slice(&0i32.to_be_bytes()); // raw
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let [r, g, b] = colour(x, y, name.as_bytes(), domid);
            let v =
                (u32::from(r) << f.shifts[0]) | (u32::from(g) << f.shifts[1]) | (u32::from(b) << f.shifts[2]);
            m.extend_from_slice(&if f.big_endian { v.to_be_bytes() } else { v.to_le_bytes() });
        }
    }
    m
}

fn serve(mut s: UnixStream, name: &str, domid: u32) -> std::io::Result<()> {
    s.write_all(b"RFB 003.008\n")?;
    let mut version = [0u8; 12];
    s.read_exact(&mut version)?;
    if &version[..4] != b"RFB " {
        return Ok(());
    }
    s.write_all(&[1, 1])?; // one security type: None
    let mut t = [0u8; 1];
    s.read_exact(&mut t)?;
    if t[0] != 1 {
        let why = b"security type None only";
        s.write_all(&1u32.to_be_bytes())?;
        s.write_all(&(why.len() as u32).to_be_bytes())?;
        return s.write_all(why);
    }
    s.write_all(&0u32.to_be_bytes())?;
    let mut shared = [0u8; 1];
    s.read_exact(&mut shared)?;
    let mut f = Format { big_endian: false, shifts: [16, 8, 0] };
    s.write_all(&server_init(name, f))?;
    loop {
        let mut ty = [0u8; 1];
        if s.read_exact(&mut ty).is_err() {
            return Ok(());
        }
        match ty[0] {
            // SetPixelFormat: 32-bit true colour with 8-bit channels is followed; others ignored.
            0 => {
                let mut b = [0u8; 19];
                s.read_exact(&mut b)?;
                let pf = &b[3..];
                let max = |i: usize| u16::from_be_bytes([pf[4 + 2 * i], pf[5 + 2 * i]]);
                if pf[0] == 32
                    && pf[3] == 1
                    && (0..3).all(|i| max(i) == 255)
                    && pf[10..13].iter().all(|s| *s <= 24)
                {
                    f = Format { big_endian: pf[2] != 0, shifts: [pf[10], pf[11], pf[12]] };
                }
            }
            // SetEncodings: raw is always among them.
            2 => {
                let mut b = [0u8; 3];
                s.read_exact(&mut b)?;
                let n = usize::from(u16::from_be_bytes([b[1], b[2]]));
                let mut e = vec![0u8; 4 * n];
                s.read_exact(&mut e)?;
            }
            // FramebufferUpdateRequest: the whole screen, raw.
            3 => {
                let mut b = [0u8; 9];
                s.read_exact(&mut b)?;
                s.write_all(&frame(name, domid, f))?;
            }
            4 => s.read_exact(&mut [0u8; 7])?,
            5 => s.read_exact(&mut [0u8; 5])?,
            6 => {
                let mut b = [0u8; 7];
                s.read_exact(&mut b)?;
                let n = u32::from_be_bytes([b[3], b[4], b[5], b[6]]).min(1 << 20) as usize;
                let mut text = vec![0u8; n];
                s.read_exact(&mut text)?;
            }
            _ => return Ok(()),
        }
    }
}
