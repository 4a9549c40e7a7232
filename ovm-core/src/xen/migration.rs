//! Migration streams on Xen: `xl migrate` at the source and `xl migrate-receive` at the destination,
//! with the stream carried by the caller (the agents carry it over mutual TLS). A cold move
//! carries a saved domain instead: `xl save -p` at the source (the domain stays paused there) and
//! `xl restore -p` at the destination, each through a FIFO, then an unpause there and a verdict
//! byte back ([`send_saved`], [`receive_saved`]).
//!
//! The receiving toolstack builds the domain from the configuration inside the stream, so the
//! destination reads the stream's xl header and configuration first and refuses the stream unless
//! that configuration is the domain it prepared for: the same UUID, only the prepared disks, only
//! bridges that exist here, no more memory or vCPUs, and no device that reaches into dom0 (PCI
//! pass-through, I/O ports, IRQs, a bootloader, device-model arguments, ...). Only then does any byte
//! reach `xl migrate-receive`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::driver::DomainSpec;
use crate::xen::naming;
use crate::{Error, Result};

/// The xl save/migration header's magic (`savefileheader_magic` of xl).
const MAGIC: &[u8; 32] = b"Xen saved domain, xl format\n \0 \r";
/// `SAVEFILE_BYTEORDER_VALUE`, written in the sender's byte order.
const BYTEORDER: u32 = 0x0102_0304;
/// Mandatory flag: the configuration is JSON.
const FLAG_JSON: u32 = 1;
/// Mandatory flag: the libxl stream is version 2.
const FLAG_STREAM_V2: u32 = 2;
/// The largest configuration a stream may carry.
const MAX_CONFIG: u32 = 1 << 20;

fn bad(why: impl Into<String>) -> Error {
    Error::invalid("migration stream", why)
}

/// Read the xl header and the configuration at the start of a migration stream. Returns the bytes
/// read (to be passed on unchanged) and the configuration.
pub fn read_header(r: &mut impl Read) -> Result<(Vec<u8>, Value)> {
    let mut fixed = [0u8; 48];
    r.read_exact(&mut fixed).map_err(|e| bad(format!("no xl header: {e}")))?;
    if &fixed[..32] != MAGIC {
        return Err(bad("not an xl migration stream (bad magic)"));
    }
    let word = |i: usize| u32::from_le_bytes(fixed[32 + 4 * i..36 + 4 * i].try_into().expect("4 bytes"));
    if word(0) != BYTEORDER {
        return Err(bad("the stream's byte order is not this server's"));
    }
    let (mandatory, optional_len) = (word(1), word(3));
    if mandatory & !(FLAG_JSON | FLAG_STREAM_V2) != 0 || mandatory & FLAG_JSON == 0 {
        return Err(bad(format!(
            "unsupported xl header flags {mandatory:#x} (a JSON configuration is required)"
        )));
    }
    if !(4..=MAX_CONFIG + 4).contains(&optional_len) {
        return Err(bad(format!("configuration block of {optional_len} bytes")));
    }
    let mut optional = vec![0u8; optional_len as usize];
    r.read_exact(&mut optional).map_err(|e| bad(format!("truncated configuration: {e}")))?;
    let len = u32::from_le_bytes(optional[..4].try_into().expect("4 bytes")) as usize;
    if len > optional.len() - 4 {
        return Err(bad("the configuration is longer than its block"));
    }
    let text = &optional[4..4 + len];
    let text = text.strip_suffix(b"\0").unwrap_or(text);
    let config: Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("the configuration is not JSON: {e}")))?;
    let mut raw = fixed.to_vec();
    raw.extend_from_slice(&optional);
    Ok((raw, config))
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_u64() == Some(0),
    }
}

/// Check that `config` (libxl's JSON domain configuration, as `xl migrate` sends it) describes the
/// domain `spec` and nothing more. `bridge_exists` tells whether a bridge exists on this server.
pub fn validate_config(
    config: &Value,
    spec: &DomainSpec,
    bridge_exists: impl Fn(&str) -> bool,
) -> Result<()> {
    let obj = config.as_object().ok_or_else(|| bad("the configuration is not an object"))?;
    const ALLOWED: &[&str] = &[
        "c_info",
        "b_info",
        "disks",
        "nics",
        "on_poweroff",
        "on_reboot",
        "on_watchdog",
        "on_crash",
        "on_soft_reset",
    ];
    for (k, v) in obj {
        if !ALLOWED.contains(&k.as_str()) && !is_empty(v) {
            return Err(bad(format!("the configuration has {k:?}, which ovm does not give domains")));
        }
    }
    let uuid = config["c_info"]["uuid"].as_str().unwrap_or("");
    if !uuid.eq_ignore_ascii_case(&spec.uuid.to_string()) {
        return Err(bad(format!("the stream carries domain {uuid:?}, not {}", spec.uuid)));
    }
    let b = &config["b_info"];
    for k in [
        "iomem",
        "ioports",
        "irqs",
        "bootloader",
        "bootloader_args",
        "device_model",
        "extra",
        "extra_pv",
        "extra_hvm",
    ] {
        if !is_empty(&b[k]) {
            return Err(bad(format!("the configuration sets b_info.{k}")));
        }
    }
    if let Some(o) = b.as_object() {
        if let Some(k) = o.keys().find(|k| k.starts_with("device_model_args") && !is_empty(&o[k.as_str()])) {
            return Err(bad(format!("the configuration sets b_info.{k}")));
        }
    }
    let max_kb = spec.max_memory_mib.max(spec.memory_mib) * 1024;
    for k in ["max_memkb", "target_memkb"] {
        if b[k].as_u64().unwrap_or(0) > max_kb {
            return Err(bad(format!("b_info.{k} is {} KiB; the domain has {max_kb} KiB", b[k])));
        }
    }
    if b["max_vcpus"].as_u64().unwrap_or(0) > u64::from(spec.max_vcpus.max(spec.vcpus)) {
        return Err(bad(format!(
            "b_info.max_vcpus is {}; the domain has {}",
            b["max_vcpus"], spec.max_vcpus
        )));
    }
    let empty = Vec::new();
    let paths: Vec<&str> =
        spec.disks.iter().filter(|d| !d.path.is_empty()).map(|d| d.path.as_str()).collect();
    for d in config["disks"].as_array().unwrap_or(&empty) {
        let p = d["pdev_path"].as_str().unwrap_or("");
        if !p.is_empty() && !paths.contains(&p) {
            return Err(bad(format!("disk {p:?} is not one of the domain's disks")));
        }
        if !is_empty(&d["script"]) {
            return Err(bad(format!("disk {p:?} names a hotplug script")));
        }
    }
    let bridges: Vec<&str> =
        spec.nics.iter().map(|n| n.bridge.as_deref().unwrap_or(naming::DEFAULT_BRIDGE)).collect();
    for n in config["nics"].as_array().unwrap_or(&empty) {
        let br = n["bridge"].as_str().unwrap_or(naming::DEFAULT_BRIDGE);
        if !bridges.contains(&br) {
            return Err(bad(format!("bridge {br:?} is not one of the domain's networks")));
        }
        if !bridge_exists(br) {
            return Err(bad(format!("bridge {br:?} does not exist on this server")));
        }
        match n["script"].as_str() {
            None | Some("vif-bridge") | Some("/etc/xen/scripts/vif-bridge") => {}
            Some(s) => return Err(bad(format!("a NIC names the script {s:?}"))),
        }
    }
    Ok(())
}

/// Copy until end of input, writing each read out at once. (`std::io::copy` between a socket and
/// a FIFO uses a kernel-side copy that holds a handshake's few bytes back, and both sides of a
/// migration then wait for each other.)
fn pump(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
        total += n as u64;
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::backend("xen", format!("{what}: {e}"))
}

/// Receive a domain with `xl migrate-receive`, passing it the stream once its configuration has been
/// validated. Returns when xl has finished (the domain runs here when it succeeded).
pub fn receive(xl: &std::path::Path, spec: &DomainSpec, stream: UnixStream) -> Result<()> {
    receive_checked(xl, spec, stream, |br| {
        std::path::Path::new("/sys/class/net").join(br).join("bridge").is_dir()
    })
}

/// [`receive`], with `bridge_exists` telling which bridges this server has.
fn receive_checked(
    xl: &std::path::Path,
    spec: &DomainSpec,
    stream: UnixStream,
    bridge_exists: impl Fn(&str) -> bool,
) -> Result<()> {
    let mut child = Command::new(xl)
        .arg("migrate-receive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("start xl migrate-receive"))?;
    let mut xl_out = child.stdout.take().expect("piped");
    let mut to_peer = stream.try_clone().map_err(io("migration socket"))?;
    // The receiver speaks first (its banner) and answers the sender's handshakes.
    let out = std::thread::spawn(move || {
        let _ = pump(&mut xl_out, &mut to_peer);
        let _ = to_peer.shutdown(std::net::Shutdown::Write);
    });
    let mut from_peer = stream;
    let mut xl_in = child.stdin.take().expect("piped");
    let checked = read_header(&mut from_peer).and_then(|(raw, config)| {
        validate_config(&config, spec, &bridge_exists)?;
        Ok(raw)
    });
    let raw = match checked {
        Ok(raw) => raw,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = from_peer.shutdown(std::net::Shutdown::Both);
            let _ = out.join();
            return Err(e);
        }
    };
    let fed = xl_in.write_all(&raw).and_then(|_| pump(&mut from_peer, &mut xl_in).map(drop));
    drop(xl_in);
    let status = child.wait().map_err(io("wait for xl migrate-receive"))?;
    let _ = from_peer.shutdown(std::net::Shutdown::Both);
    let _ = out.join();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if !status.success() {
        return Err(Error::backend("xen", format!("xl migrate-receive failed ({status}): {}", err.trim())));
    }
    fed.map_err(io("feed xl migrate-receive"))
}

/// Send domain `domid` with `xl migrate`, the stream going through `stream`. `xl` talks to its
/// transport through the standard input and output of a command it runs; here that command relays
/// through two FIFOs in a private directory, which this process connects to `stream`.
pub fn send(xl: &std::path::Path, domid: u32, stream: UnixStream) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("ovm-migrate-{}", uuid::Uuid::new_v4()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io("migration directory"))?;
    }
    let cleanup = |d: &std::path::Path| {
        let _ = std::fs::remove_dir_all(d);
    };
    let (tx, rx) = (dir.join("tx"), dir.join("rx"));
    let made = Command::new("mkfifo").arg(&tx).arg(&rx).status().map_err(io("mkfifo"));
    if !matches!(made, Ok(s) if s.success()) {
        cleanup(&dir);
        return Err(Error::backend("xen", "cannot make the migration FIFOs"));
    }
    // With an empty transport command, xl runs its "host" argument under sh as the transport. The
    // background `cat` reads the FIFO (sh gives an asynchronous command /dev/null as its standard
    // input unless it redirects it), the foreground one reads what xl sends.
    let rune = format!("cat <'{}' & exec cat >'{}'", rx.display(), tx.display());
    let child = match Command::new(xl)
        .args(["migrate", "-s", "", &domid.to_string(), &rune])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            cleanup(&dir);
            return Err(io("start xl migrate")(e));
        }
    };
    let (mut up, mut down) = (stream.try_clone().map_err(io("migration socket"))?, stream);
    let (tx2, rx2) = (tx.clone(), rx.clone());
    // xl → peer: what xl writes to its transport arrives in `tx`.
    let outgoing = std::thread::spawn(move || {
        if let Ok(mut f) = std::fs::File::open(&tx2) {
            let _ = pump(&mut f, &mut up);
        }
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    // peer → xl: what the receiver answers goes into `rx`.
    let incoming = std::thread::spawn(move || {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&rx2) {
            let _ = pump(&mut down, &mut f);
        }
    });
    let out = child.wait_with_output().map_err(io("wait for xl migrate"));
    // If xl ended before its transport opened the FIFOs, open their other ends so the relays end.
    let _ = std::fs::OpenOptions::new().write(true).custom_flags_nonblock().open(&tx);
    let _ = std::fs::OpenOptions::new().read(true).custom_flags_nonblock().open(&rx);
    let _ = outgoing.join();
    cleanup(&dir);
    let out = out?;
    // The peer side of `incoming` ends when the destination closes the connection.
    drop(incoming);
    if !out.status.success() {
        return Err(Error::backend(
            "xen",
            format!("xl migrate failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(())
}

/// A private directory holding one FIFO, removed when dropped.
struct Fifo {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl Fifo {
    fn new(name: &str) -> Result<Fifo> {
        let dir = std::env::temp_dir().join(format!("ovm-{name}-{}", uuid::Uuid::new_v4()));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io("migration directory"))?;
        }
        let fifo = Fifo { path: dir.join(name), dir };
        let made = Command::new("mkfifo").arg(&fifo.path).status().map_err(io("mkfifo"))?;
        if !made.success() {
            return Err(Error::backend("xen", "cannot make the migration FIFO"));
        }
        Ok(fifo)
    }

    /// Open the FIFO's ends without waiting, so that a thread blocked opening the other end
    /// returns (after the toolstack ended without opening its end).
    fn unblock(&self) {
        let _ = std::fs::OpenOptions::new().write(true).custom_flags_nonblock().open(&self.path);
        let _ = std::fs::OpenOptions::new().read(true).custom_flags_nonblock().open(&self.path);
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The verdict byte of a cold move: the destination runs the domain.
const RESTORED: u8 = 0;
/// The verdict byte of a cold move: the destination does not run the domain.
const NOT_RESTORED: u8 = 1;

/// Source side of a cold move: save domain `domid` with `xl save -p` (which leaves it paused
/// here, not destroyed) straight into `stream` through a FIFO, then wait for the destination's
/// verdict. On success the domain runs there and its saved copy is still here, paused; on failure
/// it is here, paused or (when the save itself failed, as xl resumes it then) running.
pub fn send_saved(xl: &std::path::Path, domid: u32, stream: UnixStream) -> Result<()> {
    let fifo = Fifo::new("save")?;
    let child = Command::new(xl)
        .arg("save")
        .arg("-p")
        .arg(domid.to_string())
        .arg(&fifo.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("start xl save"))?;
    let mut up = stream.try_clone().map_err(io("migration socket"))?;
    let path = fifo.path.clone();
    // xl → peer: the saved domain, as xl writes it.
    let outgoing = std::thread::spawn(move || {
        let sent = std::fs::File::open(&path).and_then(|mut f| pump(&mut f, &mut up));
        let _ = up.shutdown(std::net::Shutdown::Write);
        sent
    });
    let out = child.wait_with_output().map_err(io("wait for xl save"));
    fifo.unblock();
    let sent = outgoing.join().map_err(|_| Error::Internal { message: "save relay panicked".into() })?;
    let out = out?;
    if !out.status.success() {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return Err(Error::backend(
            "xen",
            format!("xl save failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    sent.map_err(io("send the saved domain"))?;
    let mut verdict = [NOT_RESTORED];
    let mut rd = stream;
    match rd.read_exact(&mut verdict) {
        Ok(()) if verdict[0] == RESTORED => Ok(()),
        Ok(()) => Err(Error::backend("xen", "the destination did not restore the domain; it is paused here")),
        Err(e) => Err(Error::backend(
            "xen",
            format!("no answer from the destination ({e}); the domain is paused here"),
        )),
    }
}

/// Destination side of a cold move: read the saved domain's xl header and configuration from
/// `stream` and validate them against `spec` ([`read_header`], [`validate_config`]) before any
/// byte reaches `xl restore -p`, which reads the domain from a FIFO; then `start` unpauses the
/// restored domain and returns its domid. Whatever fails after the restore began, `discard`
/// destroys what was restored. The source is answered a verdict byte either way.
pub fn receive_saved(
    xl: &std::path::Path,
    spec: &DomainSpec,
    stream: UnixStream,
    start: impl FnOnce() -> Result<u32>,
    discard: impl FnOnce(),
) -> Result<u32> {
    receive_saved_checked(
        xl,
        spec,
        stream,
        |br| std::path::Path::new("/sys/class/net").join(br).join("bridge").is_dir(),
        start,
        discard,
    )
}

fn receive_saved_checked(
    xl: &std::path::Path,
    spec: &DomainSpec,
    stream: UnixStream,
    bridge_exists: impl Fn(&str) -> bool,
    start: impl FnOnce() -> Result<u32>,
    discard: impl FnOnce(),
) -> Result<u32> {
    let mut from_peer = stream;
    let answer = |s: &UnixStream, v: u8| {
        let mut w = s;
        let _ = w.write_all(&[v]);
        let _ = s.shutdown(std::net::Shutdown::Both);
    };
    let raw = match read_header(&mut from_peer).and_then(|(raw, config)| {
        validate_config(&config, spec, &bridge_exists)?;
        Ok(raw)
    }) {
        Ok(raw) => raw,
        Err(e) => {
            answer(&from_peer, NOT_RESTORED);
            return Err(e);
        }
    };
    let restored = (|| {
        let fifo = Fifo::new("restore")?;
        let child = Command::new(xl)
            .arg("restore")
            .arg("-p")
            .arg(&fifo.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("start xl restore"))?;
        let mut reader = from_peer.try_clone().map_err(io("migration socket"))?;
        let path = fifo.path.clone();
        // peer → xl: the validated header, then the rest of the saved domain.
        let incoming = std::thread::spawn(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(&raw).and_then(|_| pump(&mut reader, &mut f)))
        });
        let out = child.wait_with_output().map_err(io("wait for xl restore"));
        fifo.unblock();
        let fed =
            incoming.join().map_err(|_| Error::Internal { message: "restore relay panicked".into() })?;
        let out = out?;
        if !out.status.success() {
            return Err(Error::backend(
                "xen",
                format!(
                    "xl restore failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        fed.map_err(io("feed xl restore"))?;
        start()
    })();
    match restored {
        Ok(domid) => {
            answer(&from_peer, RESTORED);
            Ok(domid)
        }
        Err(e) => {
            discard();
            answer(&from_peer, NOT_RESTORED);
            Err(e)
        }
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{DiskSpec, NicSpec};
    use crate::model::{DomainType, VmId};

    fn spec() -> DomainSpec {
        DomainSpec {
            uuid: VmId::new(),
            name: "web01".into(),
            domain_type: DomainType::Pv,
            vcpus: 1,
            max_vcpus: 2,
            memory_mib: 256,
            max_memory_mib: 512,
            disks: vec![DiskSpec {
                slot: 0,
                path: "/OVS/Repositories/r/VirtualDisks/a.img".into(),
                read_only: false,
                cdrom: false,
            }],
            nics: vec![NicSpec { mac: "00:16:3e:00:00:01".into(), bridge: None }],
            kernel: Some("/boot/vmlinuz".into()),
            initrd: None,
            cmdline: None,
            restart_actions: Default::default(),
            boot_order: Vec::new(),
            ha_priority: None,
            framebuffer: false,
            network_boot: None,
        }
    }

    fn config(s: &DomainSpec) -> Value {
        serde_json::json!({
            "c_info": {"type": "pv", "name": s.name, "uuid": s.uuid.to_string()},
            "b_info": {"max_vcpus": 2, "max_memkb": 524288, "target_memkb": 262144, "type.pv": {"kernel": "/boot/vmlinuz"}},
            "disks": [{"pdev_path": s.disks[0].path, "vdev": "xvda", "format": "raw", "readwrite": 1}],
            "nics": [{"devid": 0, "mac": "00:16:3e:00:00:01", "bridge": "xenbr0"}],
            "on_reboot": "restart",
            "pcidevs": [],
        })
    }

    fn stream(config: &Value, mandatory: u32) -> Vec<u8> {
        let mut text = serde_json::to_vec(config).unwrap();
        text.push(0);
        let mut b = MAGIC.to_vec();
        for w in [BYTEORDER, mandatory, 0, 4 + text.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&(text.len() as u32).to_le_bytes());
        b.extend_from_slice(&text);
        b.extend_from_slice(b"LibxlFmt...");
        b
    }

    #[test]
    fn the_header_and_configuration_are_read_and_passed_on_unchanged() {
        let s = spec();
        let bytes = stream(&config(&s), FLAG_JSON | FLAG_STREAM_V2);
        let mut r = &bytes[..];
        let (raw, cfg) = read_header(&mut r).unwrap();
        assert_eq!(cfg, config(&s));
        assert_eq!([raw.as_slice(), r].concat(), bytes, "nothing is lost or changed");
        assert_eq!(r, b"LibxlFmt...");
        validate_config(&cfg, &s, |b| b == "xenbr0").unwrap();
    }

    /// A stand-in for `xl` speaking xl's migration handshake (banner, header and configuration,
    /// stream, "ready", "go", status byte) on both sides, so that the relays of [`send`] and
    /// [`receive`] are tested against each other without Xen. The receiver writes what it got to
    /// `received` next to itself.
    const FAKE_XL: &str = r#"#!/usr/bin/env python3
import os, subprocess, sys
here = os.path.dirname(os.path.abspath(sys.argv[0]))
BANNER = b"xl migration receiver ready, send binary domain data.\n"
READY = b"domain received, ready to unpause\0"
GO = b"domain is yours, you are cleared to unpause\0"
RESULT = b"my copy unpause results are as follows\0"
def read_n(f, n):
    b = b""
    while len(b) < n:
        c = f.read(n - len(b))
        if not c:
            sys.exit("eof after %d of %d bytes" % (len(b), n))
        b += c
    return b
if sys.argv[1] == "migrate":
    assert sys.argv[2:4] == ["-s", ""], sys.argv
    t = subprocess.Popen(["sh", "-c", sys.argv[5]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert read_n(t.stdout, len(BANNER)) == BANNER
    t.stdin.write(open(os.path.join(here, "stream"), "rb").read()); t.stdin.flush()
    assert read_n(t.stdout, len(READY)) == READY
    t.stdin.write(GO); t.stdin.flush()
    assert read_n(t.stdout, len(RESULT)) == RESULT
    status = read_n(t.stdout, 1)
    t.stdin.close(); t.wait()
    sys.exit(status[0])
elif sys.argv[1] == "migrate-receive":
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    out.write(BANNER); out.flush()
    fixed = read_n(inp, 48)
    opt = read_n(inp, int.from_bytes(fixed[44:48], "little"))
    payload = read_n(inp, int(open(os.path.join(here, "payload_len")).read()))
    open(os.path.join(here, "received"), "wb").write(fixed + opt + payload)
    out.write(READY); out.flush()
    assert read_n(inp, len(GO)) == GO
    out.write(RESULT + b"\0"); out.flush()
elif sys.argv[1] == "save":
    # xl save -p DOMID FILE: the saved domain into FILE (a FIFO); the domain stays paused.
    assert sys.argv[2:4] == ["-p", "7"], sys.argv
    with open(sys.argv[4], "wb") as f:
        f.write(open(os.path.join(here, "stream"), "rb").read())
    open(os.path.join(here, "saved_paused"), "w").write("7")
elif sys.argv[1] == "restore":
    # xl restore -p FILE: the domain from FILE (a FIFO), left paused.
    assert sys.argv[2] == "-p", sys.argv
    with open(sys.argv[3], "rb") as inp:
        fixed = read_n(inp, 48)
        opt = read_n(inp, int.from_bytes(fixed[44:48], "little"))
        payload = read_n(inp, int(open(os.path.join(here, "payload_len")).read()))
    if os.path.exists(os.path.join(here, "restore_fails")):
        sys.exit("restore failed")
    open(os.path.join(here, "received"), "wb").write(fixed + opt + payload)
else:
    sys.exit("unexpected " + " ".join(sys.argv))
"#;

    /// A directory holding the stand-in `xl`, and its path.
    fn fake_xl() -> (std::path::PathBuf, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ovm-xl-migrate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let xl = dir.join("xl");
        std::fs::write(&xl, FAKE_XL).unwrap();
        std::fs::set_permissions(&xl, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, xl)
    }

    #[test]
    fn send_and_receive_relay_xl_handshake_and_stream_through_a_socket() {
        let (dir, xl) = fake_xl();
        let s = spec();
        let mut bytes = stream(&config(&s), FLAG_JSON | FLAG_STREAM_V2);
        // A stream of a few MiB, larger than any pipe or socket buffer on the way.
        let payload: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
        bytes.truncate(bytes.len() - b"LibxlFmt...".len());
        let header_len = bytes.len();
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.join("stream"), &bytes).unwrap();
        std::fs::write(dir.join("payload_len"), payload.len().to_string()).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (xl2, s2) = (xl.clone(), s.clone());
        let receiver = std::thread::spawn(move || receive_checked(&xl2, &s2, b, |br| br == "xenbr0"));
        let sent = send(&xl, 7, a);
        receiver.join().unwrap().unwrap();
        sent.unwrap();
        let got = std::fs::read(dir.join("received")).unwrap();
        assert_eq!(got.len(), bytes.len());
        assert!(got == bytes, "the stream arrived unchanged ({header_len} header bytes)");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stream_for_another_domain_never_reaches_the_receiving_toolstack() {
        let (dir, xl) = fake_xl();
        let s = spec();
        let mut other = config(&s);
        other["disks"][0]["pdev_path"] = "/etc/shadow".into();
        std::fs::write(dir.join("stream"), stream(&other, FLAG_JSON | FLAG_STREAM_V2)).unwrap();
        std::fs::write(dir.join("payload_len"), "11").unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (xl2, s2) = (xl.clone(), s.clone());
        let receiver = std::thread::spawn(move || receive_checked(&xl2, &s2, b, |br| br == "xenbr0"));
        assert!(send(&xl, 7, a).is_err(), "the source sees the migration fail");
        let e = receiver.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("not one of the domain's disks"), "{e}");
        assert!(!dir.join("received").exists(), "xl migrate-receive got nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What a cold move's receiver did: (started, discarded).
    fn cold_receiver(
        xl: std::path::PathBuf,
        s: DomainSpec,
        b: UnixStream,
    ) -> std::thread::JoinHandle<(Result<u32>, bool, bool)> {
        std::thread::spawn(move || {
            let (started, discarded) = (std::cell::Cell::new(false), std::cell::Cell::new(false));
            let r = receive_saved_checked(
                &xl,
                &s,
                b,
                |br| br == "xenbr0",
                || {
                    started.set(true);
                    Ok(42)
                },
                || discarded.set(true),
            );
            (r, started.get(), discarded.get())
        })
    }

    #[test]
    fn a_cold_move_saves_paused_into_the_stream_and_restores_only_a_validated_domain() {
        let (dir, xl) = fake_xl();
        let s = spec();
        let mut bytes = stream(&config(&s), FLAG_JSON | FLAG_STREAM_V2);
        let payload: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 253) as u8).collect();
        bytes.truncate(bytes.len() - b"LibxlFmt...".len());
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.join("stream"), &bytes).unwrap();
        std::fs::write(dir.join("payload_len"), payload.len().to_string()).unwrap();

        // The saved domain arrives unchanged, is restored and started; the source hears so.
        let (a, b) = UnixStream::pair().unwrap();
        let receiver = cold_receiver(xl.clone(), s.clone(), b);
        send_saved(&xl, 7, a).unwrap();
        let (r, started, discarded) = receiver.join().unwrap();
        assert_eq!((r.unwrap(), started, discarded), (42, true, false));
        assert!(std::fs::read(dir.join("received")).unwrap() == bytes, "the saved domain arrived unchanged");
        assert!(dir.join("saved_paused").exists(), "saved with -p: left paused, not destroyed");
        std::fs::remove_file(dir.join("received")).unwrap();

        // A failed restore: what was restored is discarded and the source is told.
        std::fs::write(dir.join("restore_fails"), "").unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let receiver = cold_receiver(xl.clone(), s.clone(), b);
        let e = send_saved(&xl, 7, a).unwrap_err();
        assert!(e.to_string().contains("paused here"), "{e}");
        let (r, started, discarded) = receiver.join().unwrap();
        assert!(r.unwrap_err().to_string().contains("xl restore failed"));
        assert_eq!((started, discarded), (false, true));
        std::fs::remove_file(dir.join("restore_fails")).unwrap();

        // A saved domain that is not the prepared one never reaches xl restore.
        let mut other = config(&s);
        other["disks"][0]["pdev_path"] = "/etc/shadow".into();
        let mut evil = stream(&other, FLAG_JSON | FLAG_STREAM_V2);
        evil.truncate(evil.len() - b"LibxlFmt...".len());
        evil.extend_from_slice(&payload);
        std::fs::write(dir.join("stream"), &evil).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let receiver = cold_receiver(xl.clone(), s.clone(), b);
        assert!(send_saved(&xl, 7, a).is_err(), "the source sees the move fail");
        let (r, started, _) = receiver.join().unwrap();
        assert!(r.unwrap_err().to_string().contains("not one of the domain's disks"));
        assert!(!started);
        assert!(!dir.join("received").exists(), "xl restore got nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_headers_are_refused() {
        let s = spec();
        let good = stream(&config(&s), FLAG_JSON | FLAG_STREAM_V2);
        let mut bad_magic = good.clone();
        bad_magic[0] = b'Y';
        let no_json = stream(&config(&s), FLAG_STREAM_V2);
        let unknown_flag = stream(&config(&s), FLAG_JSON | 8);
        let mut huge = good.clone();
        huge[44..48].copy_from_slice(&(MAX_CONFIG + 5).to_le_bytes());
        let mut long_config = good.clone();
        long_config[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut not_json = good.clone();
        not_json[52] = b'!';
        for (what, b) in [
            ("bad magic", bad_magic),
            ("no JSON", no_json),
            ("unknown flag", unknown_flag),
            ("huge", huge),
            ("config longer than block", long_config),
            ("not JSON", not_json),
            ("truncated", good[..60].to_vec()),
            ("empty", vec![]),
        ] {
            assert!(read_header(&mut &b[..]).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn a_configuration_reaching_beyond_the_prepared_domain_is_refused() {
        let s = spec();
        let refused = |f: &dyn Fn(&mut Value)| {
            let mut c = config(&s);
            f(&mut c);
            validate_config(&c, &s, |b| b == "xenbr0").unwrap_err().to_string()
        };
        assert!(refused(&|c| c["c_info"]["uuid"] = VmId::new().to_string().into()).contains("carries domain"));
        assert!(refused(&|c| c["disks"][0]["pdev_path"] = "/etc/shadow".into())
            .contains("not one of the domain's disks"));
        assert!(refused(&|c| c["disks"][0]["script"] = "/tmp/x".into()).contains("hotplug script"));
        assert!(refused(&|c| c["nics"][0]["bridge"] = "br-other".into())
            .contains("not one of the domain's networks"));
        assert!(refused(&|c| c["nics"][0]["script"] = "/tmp/evil".into()).contains("script"));
        assert!(refused(&|c| c["b_info"]["max_memkb"] = 1048576.into()).contains("max_memkb"));
        assert!(refused(&|c| c["b_info"]["max_vcpus"] = 64.into()).contains("max_vcpus"));
        assert!(refused(&|c| c["b_info"]["bootloader"] = "pygrub".into()).contains("bootloader"));
        assert!(refused(&|c| c["b_info"]["ioports"] = serde_json::json!(["0x3f8-0x3ff"])).contains("ioports"));
        assert!(refused(&|c| c["b_info"]["device_model_args_pv"] = serde_json::json!(["-x"]))
            .contains("device_model_args"));
        assert!(refused(&|c| c["pcidevs"] = serde_json::json!([{"bus": 0}])).contains("pcidevs"));
        assert!(refused(&|c| c["p9s"] = serde_json::json!([{"path": "/"}])).contains("p9s"));
        // A bridge of the domain that this server does not have.
        let c = config(&s);
        assert!(validate_config(&c, &s, |_| false).unwrap_err().to_string().contains("does not exist"));
    }
}
