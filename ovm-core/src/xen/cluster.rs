//! The cluster of a clustered pool on a Xen server's dom0, with the stack Oracle VM ran: O2CB
//! (configured through configfs), the pool file system (OCFS2 on a shared LUN, whose mount starts
//! the disk heartbeat), and the master elected through the cluster's lock manager (DLM, reached
//! through `ocfs2_dlmfs`).
//!
//! * **Configuration.** The cluster appears under `/sys/kernel/config/cluster/NAME` with its
//!   timeouts (the network's idle timeout and the disk heartbeat's dead threshold, both from the
//!   pool's cluster timeout) and one directory per member (number, address, port; `local` on this
//!   server's). Members added later are added to the running cluster; a member's number or
//!   address cannot change while it is one. The O2CB name is the pool id's first 16 letters and
//!   digits (O2CB's limit).
//! * **The pool file system.** The first member makes it (`mkfs.ocfs2` with the cluster's name
//!   and stack, labelled with the O2CB name) on the LUN whose SCSI identifier the spec names; a
//!   disk with any other file system, or another cluster's, is refused and left alone. Every member
//!   mounts it at `/poolfsmnt/POOL`; mounting starts the disk heartbeat, and O2CB fences (resets)
//!   a member that loses it. A pool file system on a file server is a file on its NFS export
//!   (`.ovspoolfs/NAME.img`, made by the first member): each member mounts the export at
//!   `/poolfsnfs/POOL` and the file through a loop device, then as above.
//! * **Election.** Every member tries, once a second, to take the DLM lock `master` of the
//!   domain `ovm-NAME` in exclusive mode without waiting (`open(O_RDWR | O_NONBLOCK)` on
//!   `ocfs2_dlmfs`). The one that gets it is master: it raises the epoch kept on the pool file
//!   system (`.ovm/epoch`), writes `.ovm/master` (its name and epoch), and claims the virtual IP.
//!   A dead master's lock is freed only after O2CB has declared it dead, after its self-fence, so
//!   two masters never hold the lock at once. Leaving releases the address and the lock.
//! * **HA without the manager.** The master also restarts the HA-enabled domains of dead members
//!   when the owning manager has been silent for longer than the cluster timeout and 5 s
//!   ([`super::pool_ha`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::storage::run;
use crate::driver::cluster::{ClusterNode, ClusterSpec, ClusterStatus};
use crate::model::{HeartbeatState, MemberStatus, VmId};
use crate::{Error, Result};

const SERVER: &str = "xen:///";
const CONFIGFS: &str = "/sys/kernel/config";
const DLMFS: &str = "/dlm";
const POOLFS_ROOT: &str = "/poolfsmnt";
/// Where the NFS exports holding pool file systems kept as files are mounted.
const POOLNFS_ROOT: &str = "/poolfsnfs";
const O2CB_PORT: u16 = 7777;
/// How often a member that is not master tries the master lock.
const ELECTION_PERIOD: Duration = Duration::from_secs(1);
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn backend(what: impl std::fmt::Display) -> Error {
    Error::backend(SERVER, what.to_string())
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    backend(format!("{what}: {e}"))
}

/// The O2CB name of a pool's cluster: its id's first 16 letters and digits.
pub fn o2cb_name(cluster: &str) -> String {
    cluster.chars().filter(char::is_ascii_alphanumeric).take(16).collect()
}

/// Where the pool file system of `cluster` is mounted.
pub fn pool_mount_point(cluster: &str) -> PathBuf {
    Path::new(POOLFS_ROOT).join(cluster)
}

/// The O2CB timeouts for a pool's cluster timeout: the disk heartbeat's dead threshold (in
/// two-second iterations) and the network's idle timeout, keepalive and reconnect delays (ms).
pub fn o2cb_timeouts(timeout_secs: u32) -> (u32, u32, u32, u32) {
    let dead_threshold = (timeout_secs / 2 + 1).max(3);
    let idle_ms = (timeout_secs * 1000).max(5000);
    (dead_threshold, idle_ms, 2000, 2000)
}

/// The master record on the pool file system: `NAME EPOCH`.
pub fn parse_master(text: &str) -> Option<(String, u64)> {
    let mut w = text.split_whitespace();
    let name = w.next()?.to_owned();
    let epoch = w.next()?.parse().ok()?;
    w.next().is_none().then_some((name, epoch))
}

/// Node numbers in o2hb's `livenodes` (numbers separated by white space).
pub fn parse_live_nodes(text: &str) -> Vec<u8> {
    text.split_whitespace().filter_map(|w| w.parse().ok()).collect()
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

fn write_attr(p: &Path, value: &str) -> Result<()> {
    fs::write(p, value).map_err(|e| io(format!("write {value} to {}", p.display()), e))
}

fn is_mounted(mount_point: &Path, fstype: &str) -> bool {
    fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && Path::new(f[1]) == mount_point && f[2] == fstype
        })
    })
}

/// The clusters configured in configfs (O2CB allows one).
fn configured_clusters() -> Vec<String> {
    fs::read_dir(Path::new(CONFIGFS).join("cluster"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// The members of the O2CB cluster `name` as configfs has them: name -> (number, address).
fn configured_nodes(name: &str) -> BTreeMap<String, (u8, Option<Ipv4Addr>)> {
    let dir = Path::new(CONFIGFS).join("cluster").join(name).join("node");
    let mut nodes = BTreeMap::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let num = read_trim(&e.path().join("num")).and_then(|s| s.parse().ok());
        let addr = read_trim(&e.path().join("ipv4_address")).and_then(|s| s.parse().ok());
        if let Some(num) = num {
            nodes.insert(n, (num, addr));
        }
    }
    nodes
}

/// Builds a domain on this server (the master's HA restarts, [`super::pool_ha`]).
pub type Restarter = Arc<dyn Fn(&crate::driver::DomainSpec) -> Result<u32> + Send + Sync>;

/// The pool's cluster on this server, and its elector.
pub struct XenCluster {
    state: Mutex<Option<Joined>>,
    restarter: Mutex<Option<Restarter>>,
    /// When a request of the owning manager last reached this server's agent (ms since the Unix
    /// epoch; the agent's start counts as one).
    manager_seen_ms: AtomicU64,
}

impl std::fmt::Debug for XenCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenCluster").finish_non_exhaustive()
    }
}

struct Joined {
    spec: ClusterSpec,
    elector: Elector,
}

struct Elector {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Elector {
    fn start(spec: &ClusterSpec) -> Elector {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let spec = spec.clone();
        let thread =
            std::thread::Builder::new().name("ovm-elector".into()).spawn(move || elect(&spec, &s)).ok();
        Elector { stop, thread }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The virtual IP on the interface whose subnet holds it (the management network's).
fn virtual_ip_here(address: Ipv4Addr) -> Result<crate::driver::vip::VirtualIp> {
    use crate::driver::network::RawNetwork;
    let cfg = super::network::Netlink::new().read()?;
    let (iface, prefix) = cfg
        .addresses
        .iter()
        .filter_map(|a| match a.address {
            std::net::IpAddr::V4(v4) if v4 != address && a.prefix > 0 && a.prefix < 32 => {
                let mask = u32::MAX << (32 - a.prefix);
                (u32::from(v4) & mask == u32::from(address) & mask).then(|| (a.interface.clone(), a.prefix))
            }
            _ => None,
        })
        .next()
        .ok_or_else(|| backend(format!("no interface of this server is on the subnet of {address}")))?;
    crate::driver::vip::VirtualIp::new(&iface, address, prefix)
        .map_err(|e| backend(format!("virtual IP {address}: {e}")))
}

/// The election loop of one member (see the module).
fn elect(spec: &ClusterSpec, stop: &AtomicBool) {
    let name = o2cb_name(&spec.cluster);
    let domain = Path::new(DLMFS).join(format!("ovm-{name}"));
    let meta = pool_mount_point(&spec.cluster).join(".ovm");
    let mut held: Option<File> = None;
    let mut vip_claimed = false;
    let mut tried = HashMap::new();
    let mut my_epoch = 0;
    while !stop.load(Ordering::SeqCst) {
        if held.is_none() {
            let _ = fs::create_dir(&domain);
            let lock = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(domain.join("master"));
            if let Ok(f) = lock {
                match become_master(&meta, &spec.this_node) {
                    Ok(epoch) => {
                        log::info!("cluster {}: master of epoch {epoch}", spec.cluster);
                        held = Some(f);
                        my_epoch = epoch;
                    }
                    Err(e) => log::warn!("cluster {}: taking mastership failed: {e}", spec.cluster),
                }
            }
        }
        if held.is_some() && !vip_claimed {
            if let Some(ip) = spec.virtual_ip {
                match virtual_ip_here(ip).and_then(|v| {
                    v.claim(&super::vip::ArpTiming::default()).map_err(|e| backend(e.to_string()))
                }) {
                    Ok(_) => vip_claimed = true,
                    Err(e) => log::warn!("cluster {}: virtual IP {ip}: {e}", spec.cluster),
                }
            } else {
                vip_claimed = true;
            }
        }
        if held.is_some() {
            this_server().restart_for_absent_manager(spec, my_epoch, &mut tried);
        }
        std::thread::sleep(ELECTION_PERIOD);
    }
    if held.is_some() {
        if let Some(ip) = spec.virtual_ip {
            if let Ok(v) = virtual_ip_here(ip) {
                let _ = v.release();
            }
        }
    }
    drop(held);
}

/// Raise the epoch on the pool file system and record this member as master; the new epoch.
fn become_master(meta: &Path, me: &str) -> Result<u64> {
    fs::create_dir_all(meta).map_err(|e| io(format!("create {}", meta.display()), e))?;
    let epoch = read_trim(&meta.join("epoch")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
    write_durably(&meta.join("epoch"), &format!("{epoch}\n"))?;
    write_durably(&meta.join("master"), &format!("{me} {epoch}\n"))?;
    Ok(epoch)
}

fn write_durably(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("new");
    let mut f = File::create(&tmp).map_err(|e| io(format!("create {}", tmp.display()), e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| io(format!("rename {}", path.display()), e))
}

/// What holds the pool file system of `spec`, for messages.
fn pool_storage_name(spec: &ClusterSpec, name: &str) -> String {
    match &spec.pool_file {
        Some(f) => format!("file {}:{}/{}", f.host, f.export, pool_file_name(name)),
        None => format!("disk {}", spec.pool_disk),
    }
}

/// The file of a pool file system kept on NFS, relative to the export.
fn pool_file_name(name: &str) -> String {
    format!(".ovspoolfs/{name}.img")
}

/// Where the export holding a pool's file system file is mounted.
fn pool_nfs_mount_point(cluster: &str) -> PathBuf {
    Path::new(POOLNFS_ROOT).join(cluster)
}

/// The block device of the pool file system: the LUN's on this server, or a loop device over the
/// file on the NFS export (the export mounted first, and the file made by the pool's first member).
fn pool_device(spec: &ClusterSpec, name: &str) -> Result<PathBuf> {
    let Some(pf) = &spec.pool_file else {
        let wwid = &spec.pool_disk;
        return super::iscsi::Iscsi::default().device_of(wwid).ok_or_else(|| {
            backend(format!(
                "the pool file system's disk {wwid} is not a disk of this server (not presented?)"
            ))
        });
    };
    pf.check()?;
    let mnt = pool_nfs_mount_point(&spec.cluster);
    if !is_mounted(&mnt, "nfs") && !is_mounted(&mnt, "nfs4") {
        fs::create_dir_all(&mnt).map_err(|e| io(format!("create {}", mnt.display()), e))?;
        let source = format!("{}:{}", pf.host, pf.export);
        run("mount", &["-t", "nfs", "-o", "hard", &source, &mnt.to_string_lossy()], TOOL_TIMEOUT)?;
    }
    let file = mnt.join(pool_file_name(name));
    let f = file.to_string_lossy().into_owned();
    if !file.exists() {
        if !spec.format {
            return Err(Error::conflict(format!(
                "there is no {}: the pool's first member makes the pool file system",
                pool_storage_name(spec, name)
            )));
        }
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(|e| io(format!("create {}", dir.display()), e))?;
        }
        let made = OpenOptions::new().write(true).create_new(true).open(&file).and_then(|h| {
            h.set_len(pf.size_mib << 20)?;
            h.sync_all()
        });
        made.map_err(|e| io(format!("make {f}"), e))?;
    }
    // The loop device already over it (joining again), or a new one.
    match loopdev::attached(&file).into_iter().next() {
        Some(dev) => Ok(dev),
        None => loopdev::attach(&file).map_err(|e| io(format!("a loop device over {f}"), e)),
    }
}

/// Loop devices through their ioctls (`linux/loop.h`).
mod loopdev {
    use std::fs::{self, OpenOptions};
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    const LOOP_SET_FD: libc::c_ulong = 0x4C00;
    const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
    const LOOP_SET_DIRECT_IO: libc::c_ulong = 0x4C08;
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

    /// The loop devices over `file` (from sysfs).
    pub(super) fn attached(file: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir("/sys/block").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            let backing = fs::read_to_string(e.path().join("loop/backing_file")).unwrap_or_default();
            if Path::new(backing.trim_end()) == file {
                out.push(Path::new("/dev").join(name));
            }
        }
        out
    }

    fn ioctl(f: &fs::File, req: libc::c_ulong, arg: libc::c_ulong) -> std::io::Result<libc::c_int> {
        // SAFETY: the loop ioctls used here take an integer argument, not a pointer.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), req as _, arg) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// A free loop device over `file`, with direct I/O (every write reaches the file's storage at
    /// once, every read comes from it): refused if direct I/O cannot be had.
    pub(super) fn attach(file: &Path) -> std::io::Result<PathBuf> {
        let backing = OpenOptions::new().read(true).write(true).open(file)?;
        let ctl = OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
        for _ in 0..8 {
            let n = ioctl(&ctl, LOOP_CTL_GET_FREE, 0)?;
            let dev = PathBuf::from(format!("/dev/loop{n}"));
            let d = OpenOptions::new().read(true).write(true).open(&dev)?;
            match ioctl(&d, LOOP_SET_FD, backing.as_raw_fd() as libc::c_ulong) {
                Ok(_) => {}
                // Taken meanwhile by someone else: another one.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = ioctl(&d, LOOP_SET_DIRECT_IO, 1) {
                let _ = ioctl(&d, LOOP_CLR_FD, 0);
                return Err(std::io::Error::new(e.kind(), format!("direct I/O on {}: {e}", dev.display())));
            }
            return Ok(dev);
        }
        Err(std::io::Error::other("no free loop device"))
    }

    /// Detach the loop device `dev`.
    pub(super) fn detach(dev: &Path) -> std::io::Result<()> {
        let d = OpenOptions::new().read(true).open(dev)?;
        ioctl(&d, LOOP_CLR_FD, 0).map(drop)
    }
}

/// Let go of the file and the export of a pool file system kept on NFS (nothing if there are
/// none): the loop devices over the file detached, the export unmounted.
fn release_pool_file(cluster: &str) -> Result<()> {
    let mnt = pool_nfs_mount_point(cluster);
    if !is_mounted(&mnt, "nfs") && !is_mounted(&mnt, "nfs4") {
        return Ok(());
    }
    let file = mnt.join(pool_file_name(&o2cb_name(cluster)));
    for dev in loopdev::attached(&file) {
        loopdev::detach(&dev).map_err(|e| io(format!("detach {}", dev.display()), e))?;
    }
    run("umount", &[&mnt.to_string_lossy()], TOOL_TIMEOUT)?;
    let _ = fs::remove_dir(&mnt);
    Ok(())
}

/// `TYPE` and `LABEL` of the file system on `dev`, if any (low-level probe).
fn probe(dev: &Path) -> Result<(Option<String>, Option<String>)> {
    let d = dev.to_string_lossy();
    let out = match run("blkid", &["-p", "-o", "export", &d], TOOL_TIMEOUT) {
        Ok(o) => o,
        // blkid exits 2 when it finds nothing.
        Err(e) if e.to_string().contains("exit status: 2") => String::new(),
        Err(e) => return Err(e),
    };
    let get = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).map(str::to_owned);
    Ok((get("TYPE"), get("LABEL")))
}

fn ensure_stack() -> Result<()> {
    // The OCFS2 tools find what is mounted in /etc/mtab (a link to the kernel's table on current
    // systems; a minimal dom0 may lack it).
    if fs::symlink_metadata("/etc/mtab").is_err() {
        std::os::unix::fs::symlink("/proc/self/mounts", "/etc/mtab").map_err(|e| io("link /etc/mtab", e))?;
    }
    let _ = run("modprobe", &["-a", "ocfs2", "ocfs2_stack_o2cb", "ocfs2_dlmfs"], TOOL_TIMEOUT);
    if !Path::new(CONFIGFS).join("cluster").is_dir() {
        let _ = run("mount", &["-t", "configfs", "none", CONFIGFS], TOOL_TIMEOUT);
    }
    if !Path::new(CONFIGFS).join("cluster").is_dir() {
        return Err(Error::Unsupported { what: "O2CB on this server (no cluster in configfs)".into() });
    }
    if !is_mounted(Path::new(DLMFS), "ocfs2_dlmfs") {
        fs::create_dir_all(DLMFS).map_err(|e| io("create /dlm", e))?;
        run("mount", &["-t", "ocfs2_dlmfs", "ocfs2_dlmfs", DLMFS], TOOL_TIMEOUT)?;
    }
    Ok(())
}

/// Create the O2CB cluster `name` in configfs with its timeouts, or check the one there.
fn configure(spec: &ClusterSpec, name: &str) -> Result<()> {
    let dir = Path::new(CONFIGFS).join("cluster").join(name);
    if !dir.is_dir() {
        fs::create_dir(&dir).map_err(|e| io(format!("create O2CB cluster {name}"), e))?;
        let (dead, idle, keepalive, reconnect) = o2cb_timeouts(spec.timeout_secs);
        write_attr(&dir.join("idle_timeout_ms"), &idle.to_string())?;
        write_attr(&dir.join("keepalive_delay_ms"), &keepalive.to_string())?;
        write_attr(&dir.join("reconnect_delay_ms"), &reconnect.to_string())?;
        write_attr(&dir.join("heartbeat/dead_threshold"), &dead.to_string())?;
    }
    let have = configured_nodes(name);
    // Members that left: out of the configuration, unless their heartbeat still beats. One that
    // has just left (unmounted the pool file system) is seen alive here until its silence passes
    // the dead threshold: waited for, that long.
    let (dead_threshold, ..) = o2cb_timeouts(spec.timeout_secs);
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(dead_threshold) * 2 + 6);
    for (node, (number, _)) in &have {
        if spec.nodes.iter().any(|n| n.name == *node) {
            continue;
        }
        while live_nodes().unwrap_or_default().contains(number) {
            if std::time::Instant::now() >= deadline {
                return Err(Error::conflict(format!(
                    "member {node} of cluster {name} still heartbeats: it leaves the cluster first"
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        fs::remove_dir(dir.join("node").join(node)).map_err(|e| io(format!("remove member {node}"), e))?;
    }
    for ClusterNode { number, name: node, address } in &spec.nodes {
        match have.get(node) {
            Some((n, a)) if *n == *number && *a == Some(*address) => {}
            Some((n, a)) => {
                return Err(Error::conflict(format!(
                    "member {node} is number {n} at {a:?} in cluster {name}, not {number} at {address}"
                )))
            }
            None => {
                if address.is_unspecified() || address.is_loopback() || address.is_multicast() {
                    return Err(Error::invalid(
                        "nodes",
                        format!("member {node}: {address} is not an address to reach it at"),
                    ));
                }
                if let Some((other, _)) =
                    have.iter().find(|(o, (n, _))| n == number && spec.nodes.iter().any(|x| x.name == **o))
                {
                    return Err(Error::conflict(format!(
                        "member number {number} is {other} in cluster {name}"
                    )));
                }
                let d = dir.join("node").join(node);
                fs::create_dir(&d).map_err(|e| io(format!("add member {node}"), e))?;
                // The kernel takes the number only once the address and port are set.
                write_attr(&d.join("ipv4_port"), &O2CB_PORT.to_string())?;
                write_attr(&d.join("ipv4_address"), &address.to_string())?;
                write_attr(&d.join("num"), &number.to_string())?;
                if *node == spec.this_node {
                    write_attr(&d.join("local"), "1")?;
                }
            }
        }
    }
    Ok(())
}

/// Make the pool file system if asked and mount it.
fn mount_pool_fs(spec: &ClusterSpec, name: &str) -> Result<()> {
    let mp = pool_mount_point(&spec.cluster);
    if is_mounted(&mp, "ocfs2") {
        return Ok(());
    }
    let dev = pool_device(spec, name)?;
    let d = dev.to_string_lossy().into_owned();
    match probe(&dev)? {
        (Some(t), Some(l)) if t == "ocfs2" && l == name => {}
        (Some(t), l) => {
            return Err(Error::conflict(format!(
            "{} holds a {t} file system{}, not the pool file system of cluster {name}; it is left as it is",
            pool_storage_name(spec, name),
            l.map(|l| format!(" labelled {l}")).unwrap_or_default()
        )))
        }
        (None, _) if spec.format => {
            let slots = spec.nodes.len().max(8).to_string();
            run(
                "mkfs.ocfs2",
                &[
                    "-q",
                    "-b",
                    "4K",
                    "-C",
                    "4K",
                    "-N",
                    &slots,
                    "-J",
                    "size=16M",
                    "-L",
                    name,
                    "--cluster-stack=o2cb",
                    "--cluster-name",
                    name,
                    &d,
                ],
                TOOL_TIMEOUT,
            )?;
        }
        (None, _) => {
            return Err(Error::conflict(format!(
                "{} is blank: the pool's first member makes the pool file system",
                pool_storage_name(spec, name)
            )))
        }
    }
    fs::create_dir_all(&mp).map_err(|e| io(format!("create {}", mp.display()), e))?;
    run("mount", &["-t", "ocfs2", &d, &mp.to_string_lossy()], TOOL_TIMEOUT)?;
    Ok(())
}

/// The cluster state of this process (one per server: O2CB allows one cluster).
pub fn this_server() -> &'static XenCluster {
    static CLUSTER: std::sync::OnceLock<XenCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| XenCluster {
        state: Mutex::new(None),
        restarter: Mutex::new(None),
        manager_seen_ms: AtomicU64::new(now_ms()),
    })
}

fn now_ms() -> u64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

/// How long the manager must have been silent before the master restarts HA domains itself: its
/// cluster watch asks every member each second, so a few seconds past the cluster timeout.
fn manager_grace(spec: &ClusterSpec) -> Duration {
    Duration::from_secs(u64::from(spec.timeout_secs) + 5)
}

impl XenCluster {
    /// A request of the owning manager reached the agent.
    pub fn manager_seen(&self) {
        self.manager_seen_ms.store(now_ms(), Ordering::SeqCst);
    }

    /// How this server builds a domain, for the master's HA restarts.
    pub fn set_restarter(&self, r: Restarter) {
        *crate::driver::lock(&self.restarter) = Some(r);
    }

    /// For the HA records of the cluster this server is in: the pool file system's mount point,
    /// the cluster's DLM domain and this member's name; `None` when in no cluster.
    pub fn ha_context(&self) -> Option<(PathBuf, PathBuf, String)> {
        let st = crate::driver::lock(&self.state);
        let j = st.as_ref()?;
        let mount = pool_mount_point(&j.spec.cluster);
        is_mounted(&mount, "ocfs2").then(|| {
            (
                mount,
                Path::new(DLMFS).join(format!("ovm-{}", o2cb_name(&j.spec.cluster))),
                j.spec.this_node.clone(),
            )
        })
    }

    /// The master's HA restarts, once the manager has been silent for its grace period.
    fn restart_for_absent_manager(
        &self,
        spec: &ClusterSpec,
        epoch: u64,
        tried: &mut HashMap<VmId, std::time::Instant>,
    ) {
        let silent = now_ms().saturating_sub(self.manager_seen_ms.load(Ordering::SeqCst));
        if Duration::from_millis(silent) < manager_grace(spec) {
            return;
        }
        let Some(start) = crate::driver::lock(&self.restarter).clone() else { return };
        let Some(live) = live_nodes() else { return };
        let name = o2cb_name(&spec.cluster);
        let nodes: BTreeMap<String, u8> =
            configured_nodes(&name).into_iter().map(|(n, (num, _))| (n, num)).collect();
        let mount = pool_mount_point(&spec.cluster);
        let dlm = Path::new(DLMFS).join(format!("ovm-{name}"));
        super::pool_ha::restart_orphans(&mount, &dlm, &spec.this_node, epoch, &nodes, &live, &*start, tried);
    }

    /// See [`crate::driver::ClusterOps::join`].
    pub fn join(&self, spec: &ClusterSpec) -> Result<ClusterStatus> {
        spec.check()?;
        if spec.pool_disk.is_empty() && spec.pool_file.is_none() {
            return Err(Error::invalid(
                "pool_disk",
                "a cluster of Xen servers needs its pool file system's disk or file",
            ));
        }
        let name = o2cb_name(&spec.cluster);
        let mut st = crate::driver::lock(&self.state);
        if let Some(other) = configured_clusters().into_iter().find(|c| *c != name) {
            return Err(Error::conflict(format!("this server is in cluster {other}")));
        }
        ensure_stack()?;
        configure(spec, &name)?;
        mount_pool_fs(spec, &name)?;
        match st.as_mut() {
            Some(j) if j.spec.cluster == spec.cluster && j.spec.virtual_ip == spec.virtual_ip => {
                j.spec = spec.clone()
            }
            _ => {
                if let Some(mut old) = st.take() {
                    old.elector.stop();
                }
                *st = Some(Joined { spec: spec.clone(), elector: Elector::start(spec) });
            }
        }
        drop(st);
        self.status()?.ok_or_else(|| backend(format!("cluster {name} vanished while joining")))
    }

    /// See [`crate::driver::ClusterOps::leave`].
    pub fn leave(&self) -> Result<()> {
        let mut st = crate::driver::lock(&self.state);
        if let Some(mut j) = st.take() {
            j.elector.stop();
        }
        for name in configured_clusters() {
            for mp in pool_mounts() {
                if o2cb_name(&mp) == name {
                    let p = pool_mount_point(&mp);
                    run("umount", &[&p.to_string_lossy()], TOOL_TIMEOUT)?;
                    let _ = fs::remove_dir(&p);
                    release_pool_file(&mp)?;
                }
            }
            let dir = Path::new(CONFIGFS).join("cluster").join(&name);
            // Every member's entry, also one a failed join left half made.
            for e in fs::read_dir(dir.join("node")).into_iter().flatten().flatten() {
                fs::remove_dir(e.path())
                    .map_err(|err| io(format!("remove member {}", e.file_name().to_string_lossy()), err))?;
            }
            fs::remove_dir(&dir).map_err(|e| io(format!("remove O2CB cluster {name}"), e))?;
        }
        // A pool file system file and its export left by a join that failed half-way.
        for e in fs::read_dir(POOLNFS_ROOT).into_iter().flatten().flatten() {
            release_pool_file(&e.file_name().to_string_lossy())?;
        }
        Ok(())
    }

    /// See [`crate::driver::ClusterOps::status`].
    pub fn status(&self) -> Result<Option<ClusterStatus>> {
        let Some(name) = configured_clusters().into_iter().next() else { return Ok(None) };
        let cluster = pool_mounts()
            .into_iter()
            .find(|c| o2cb_name(c) == name)
            .or_else(|| crate::driver::lock(&self.state).as_ref().map(|j| j.spec.cluster.clone()))
            .unwrap_or_else(|| name.clone());
        let mut nodes: Vec<(u8, String)> =
            configured_nodes(&name).into_iter().map(|(n, (num, _))| (num, n)).collect();
        nodes.sort();
        let (master, epoch) = read_trim(&pool_mount_point(&cluster).join(".ovm/master"))
            .and_then(|t| parse_master(&t))
            .map_or((None, 0), |(m, e)| (Some(m), e));
        let live = live_nodes();
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let heartbeats = match live {
            Some(live) => nodes
                .iter()
                .map(|(num, n)| MemberStatus {
                    name: n.clone(),
                    incarnation: 0,
                    last_heartbeat_ms: now,
                    heartbeat: if live.contains(num) { HeartbeatState::Alive } else { HeartbeatState::Dead },
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(Some(ClusterStatus {
            cluster,
            members: nodes.into_iter().map(|(_, n)| n).collect(),
            master,
            epoch,
            heartbeats,
        }))
    }
}

/// The pools whose file systems are mounted here (their ids, from the mount points).
fn pool_mounts() -> Vec<String> {
    let Ok(m) = fs::read_to_string("/proc/mounts") else { return Vec::new() };
    m.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "ocfs2")
                .then(|| f[1])?
                .strip_prefix(POOLFS_ROOT)?
                .strip_prefix('/')
                .map(str::to_owned)
        })
        .collect()
}

/// The members whose disk heartbeat this server sees (o2hb's `livenodes` in debugfs).
fn live_nodes() -> Option<Vec<u8>> {
    let p = Path::new("/sys/kernel/debug/o2hb/livenodes");
    if !p.exists() {
        let _ = run("mount", &["-t", "debugfs", "none", "/sys/kernel/debug"], TOOL_TIMEOUT);
    }
    read_trim(p).map(|t| parse_live_nodes(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_timeouts_and_records() {
        assert_eq!(o2cb_name("5f0c2a9e-1b2c-4d5e-8f90-0123456789ab"), "5f0c2a9e1b2c4d5e");
        assert_eq!(pool_mount_point("p-1"), Path::new("/poolfsmnt/p-1"));
        assert_eq!(o2cb_timeouts(120), (61, 120_000, 2000, 2000));
        assert_eq!(o2cb_timeouts(12), (7, 12_000, 2000, 2000));
        assert_eq!(o2cb_timeouts(2), (3, 5000, 2000, 2000));
        assert_eq!(parse_master("abc 7\n"), Some(("abc".into(), 7)));
        assert_eq!(parse_master("abc"), None);
        assert_eq!(parse_master("abc x"), None);
        assert_eq!(parse_master("abc 1 2"), None);
        assert_eq!(parse_live_nodes("0 1 3\n"), [0, 1, 3]);
        assert_eq!(parse_live_nodes(""), Vec::<u8>::new());
    }
}
