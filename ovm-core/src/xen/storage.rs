//! File storage of the local Xen host (dom0): the generic file-system plug-ins of Storage Connect,
//! NFS (v3 and v4, through `mount.nfs` and `showmount`) and local (a directory bound at the mount
//! point), external plug-ins ([`super::plugin`]), and the files of the repositories mounted under
//! `/OVS/Repositories`.
//!
//! What an external plug-in did is checked in the mount table: after `mount` the mount point is
//! mounted, `nosuid,nodev` (else it is unmounted again and the mount refused), after `unmount` it
//! is not. Which plug-in mounted what is recorded under `<root>/.plugin-mounts`, one file per
//! mount point, valid while the mount table shows the same file system there.
//!
//! Everything this side writes is confined to the storage root (`/OVS`), and a file inside a
//! repository (`/OVS/Repositories/<id>/…`) is written only while that repository is mounted: a
//! repository path that is not mounted would otherwise land on dom0's own disk.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::plugin::PluginRunner;
use crate::driver::storage::{
    check_abs_path, DiscoveredFileSystem, FileServerAccess, FileSystemMount, FsUsage, MountSource,
    RepositoryFile, MAX_CONFIG_FILE, MAX_LISTED_FILES, MAX_WRITE_CHUNK, REPOSITORY_CONFIG, REPOSITORY_LAYOUT,
};
use crate::{Error, Result};

const SERVER: &str = "xen:///";

/// Where repositories are mounted, under the storage root.
pub const REPOSITORIES: &str = "Repositories";

/// The marker file at the top of a repository's file system: the repository's id.
pub const MARKER: &str = ".ovsrepo";

/// Directories of a repository (Oracle VM's layout).
pub const LAYOUT: [&str; 5] = ["Templates", "Assemblies", "ISOs", "VirtualDisks", "VirtualMachines"];

/// How long `mount.nfs` and `showmount` may take before the server is taken as unreachable.
const NFS_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the records of external plug-ins' mounts are kept, under the storage root.
const PLUGIN_MOUNTS: &str = ".plugin-mounts";

/// The dom0 file storage, rooted at `root` (`/OVS` on a server), with the external plug-ins of
/// one directory.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    plugins: PluginRunner,
    /// Files being written by [`LocalStorage::write_file_at`], kept open between chunks (a close
    /// on NFS flushes and commits: once per file, not once per chunk), with their last use.
    writing: std::sync::Arc<std::sync::Mutex<OpenWrites>>,
}

/// Files being written, by path: the open file and when it was last written.
type OpenWrites = std::collections::HashMap<String, (std::sync::Arc<File>, Instant)>;

/// How long a file being written stays open without a write.
const WRITE_IDLE: Duration = Duration::from_secs(60);

impl Default for LocalStorage {
    fn default() -> Self {
        LocalStorage::with_root("/OVS")
    }
}

/// The record of a mount an external plug-in made: what, and what the mount table showed then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PluginMount {
    source: MountSource,
    fstype: String,
    fs_source: String,
}

fn backend(what: impl std::fmt::Display) -> Error {
    Error::backend(SERVER, what.to_string())
}

/// Run `program args` with a time limit; its standard output, or an error with its standard error.
pub(crate) fn run(program: &str, args: &[&str], limit: Duration) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let done = crate::exec::run_limited(cmd, limit, u64::MAX).map_err(|e| match e {
        crate::exec::ExecError::Spawn(e) => backend(format!("run {program}: {e}")),
        crate::exec::ExecError::Wait(e) => backend(format!("wait for {program}: {e}")),
        crate::exec::ExecError::TimedOut => {
            backend(format!("{program} {} did not finish in {} s", args.join(" "), limit.as_secs()))
        }
    })?;
    if !done.status.success() {
        return Err(backend(format!(
            "{program} {}: {} ({})",
            args.join(" "),
            done.stderr.trim(),
            done.status
        )));
    }
    Ok(done.stdout)
}

/// Copy `src` into the new, empty file `dst` as cheaply as the file system allows: a reflink
/// (`FICLONE`: OCFS2 with refcount trees, XFS, btrfs) shares the blocks, a thin clone; otherwise
/// only the data regions are copied (`SEEK_DATA`/`SEEK_HOLE`), each with `copy_file_range` (which an
/// NFS 4.2 server does server-side) or, where that is refused, by reading and writing, so holes
/// stay holes. Says which it did.
pub(crate) fn thin_or_sparse_copy(src: &mut File, dst: &mut File) -> std::io::Result<&'static str> {
    use std::os::fd::AsRawFd;
    const FICLONE: libc::c_ulong = 0x4004_9409;
    let (s, d) = (src.as_raw_fd(), dst.as_raw_fd());
    // SAFETY: FICLONE takes the source descriptor; both are open for the call.
    if unsafe { libc::ioctl(d, FICLONE as _, s) } == 0 {
        return Ok("reflink (thin clone)");
    }
    let len = src.metadata()?.len();
    let mut pos: i64 = 0;
    let mut in_kernel = true;
    let mut buf = Vec::new();
    while (pos as u64) < len {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(s, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(s, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut off = data;
        while off < hole {
            let n = (hole - off).min(1 << 30) as usize;
            if in_kernel {
                let (mut so, mut doff) = (off, off);
                // SAFETY: both descriptors open, offsets are ours.
                let r = unsafe { libc::copy_file_range(s, &mut so, d, &mut doff, n, 0) };
                if r > 0 {
                    off += r as i64;
                    continue;
                }
                let e = std::io::Error::last_os_error();
                if r == 0
                    || matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)
                    )
                {
                    in_kernel = false;
                } else {
                    return Err(e);
                }
            }
            let n = n.min(1 << 20);
            buf.resize(n, 0);
            src.seek(SeekFrom::Start(off as u64))?;
            src.read_exact(&mut buf[..n])?;
            dst.seek(SeekFrom::Start(off as u64))?;
            dst.write_all(&buf[..n])?;
            off += n as i64;
        }
        pos = hole;
    }
    dst.set_len(len)?;
    dst.sync_all()?;
    Ok(if in_kernel { "sparse copy (copy_file_range)" } else { "sparse copy" })
}

/// Capacity and usage of the file system holding `path` (`statvfs(3)`).
pub(crate) fn fs_usage(path: &str) -> Result<FsUsage> {
    let c = std::ffi::CString::new(path).map_err(|_| Error::invalid("path", "contains a NUL byte"))?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated string and `s` points to writable memory for one statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(backend(format!("statvfs {path}: {e}")));
    }
    // SAFETY: statvfs returned 0, so it filled `s`.
    let s = unsafe { s.assume_init() };
    // The fields are u64 on 64-bit Linux and narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    let (frsize, blocks, free) = (u64::from(s.f_frsize), u64::from(s.f_blocks), u64::from(s.f_bavail));
    let total = blocks * frsize;
    Ok(FsUsage { total_bytes: total, used_bytes: total.saturating_sub(free * frsize) })
}

/// One line of `/proc/self/mountinfo`: the mount point, the root of the mount within its file
/// system, the file system type and the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub mount_point: String,
    pub root: String,
    pub fstype: String,
    pub source: String,
    /// The mount's own options (`rw,nosuid,nodev,relatime`).
    pub options: String,
}

/// Undo the octal escapes of `/proc/self/mountinfo` (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/self/mountinfo` text.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            Some(MountInfo {
                root: unescape(pre.get(3)?),
                mount_point: unescape(pre.get(4)?),
                options: pre.get(5)?.to_string(),
                fstype: post.next()?.to_owned(),
                source: unescape(post.next()?),
            })
        })
        .collect()
}

fn mountinfo() -> Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| backend(format!("read /proc/self/mountinfo: {e}")))?;
    Ok(parse_mountinfo(&text))
}

/// What a mount of the table is, as a [`MountSource`].
fn source_of(m: &MountInfo) -> MountSource {
    if m.fstype.starts_with("nfs") {
        if let Some((host, export)) = m.source.rsplit_once(":/") {
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            return MountSource::Nfs { host, export: format!("/{export}"), version: None };
        }
    }
    MountSource::Local { path: m.root.clone() }
}

fn same_source(a: &MountSource, b: &MountSource) -> bool {
    a.same_file_system(b)
}

/// `host:export` for `mount.nfs`.
fn nfs_spec(host: &str, export: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{export}")
    } else {
        format!("{host}:{export}")
    }
}

/// Mount options for an NFS repository: hard mounts (a VM's disk must never see a soft error),
/// TCP; NFSv3 (chosen, or fallen back to) without the lock manager: dom0 runs no `rpc.statd`, and a
/// VM's disk is guarded by ovm's ownership of the VM, not by NLM (NFSv4 locks in the protocol).
///
/// Nothing on a repository may act on dom0: `nosuid,nodev`. The brief read-only mount that
/// measures an export during discovery is `soft`, so a server that stops answering cannot hang the
/// agent.
fn nfs_options(version: Option<u8>, read_only: bool) -> String {
    let mut o = String::from(if read_only {
        "soft,proto=tcp,timeo=50,retrans=1,nolock,nosuid,nodev"
    } else {
        "hard,proto=tcp,timeo=100,retrans=3,nolock,nosuid,nodev"
    });
    match version {
        Some(3) => o.push_str(",vers=3,mountproto=tcp"),
        Some(4) => o.push_str(",vers=4"),
        _ => {}
    }
    if read_only {
        o.push_str(",ro");
    }
    o
}

fn c_path(p: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(p).map_err(|_| Error::invalid("path", "contains a NUL byte"))
}

fn bind_mount(from: &str, to: &str) -> Result<()> {
    let (f, t) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are NUL-terminated strings; a bind mount takes no file system type or data.
    let rc =
        unsafe { libc::mount(f.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    if rc != 0 {
        return Err(backend(format!("bind {from} at {to}: {}", std::io::Error::last_os_error())));
    }
    // A bind mount takes its flags only from a remount.
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: as above.
    let rc = unsafe { libc::mount(std::ptr::null(), t.as_ptr(), std::ptr::null(), flags, std::ptr::null()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let _ = umount(to);
        return Err(backend(format!("make {to} nosuid,nodev: {e}")));
    }
    Ok(())
}

/// Unmount `at`; nothing mounted there is success.
fn umount(at: &str) -> Result<()> {
    let t = c_path(at)?;
    // SAFETY: `t` is a NUL-terminated string.
    let rc = unsafe { libc::umount2(t.as_ptr(), 0) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
            _ => Err(backend(format!("unmount {at}: {e}"))),
        };
    }
    Ok(())
}

/// The NFS exports `host` lists (`showmount -e`): paths.
fn nfs_exports(host: &str) -> Result<Vec<String>> {
    let out = run("showmount", &["--no-headers", "-e", "--", host], NFS_TIMEOUT)
        .map_err(|e| Error::backend(host, format!("no NFS export list: {e}")))?;
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| check_abs_path("export", p).is_ok())
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Open for reading without following a symbolic link at the last component.
/// Add the regular files under `root/rel` to `out`, going `depth` directories further down;
/// symbolic links and special files are skipped, never followed.
fn list_files(root: &Path, rel: &Path, depth: u32, out: &mut Vec<RepositoryFile>) -> Result<()> {
    let dir = root.join(rel);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(backend(format!("list {}: {e}", dir.display()))),
    };
    for entry in entries {
        let entry = entry.map_err(|e| backend(format!("list {}: {e}", dir.display())))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if name.starts_with('.') {
            continue; // scratch files of writes in progress
        }
        let meta = match entry.path().symlink_metadata() {
            Ok(m) => m,
            Err(_) => continue, // gone meanwhile
        };
        let path = rel.join(&name);
        if meta.is_dir() && depth > 0 {
            list_files(root, &path, depth - 1, out)?;
        } else if meta.is_file() {
            if out.len() >= MAX_LISTED_FILES {
                return Err(Error::invalid(
                    "repository",
                    format!("more than {MAX_LISTED_FILES} files under {}", root.display()),
                ));
            }
            let path = path.to_str().unwrap_or_default().to_owned();
            out.push(RepositoryFile { path, size_bytes: meta.len() });
        }
    }
    Ok(())
}

/// The text of a small regular file, never through a symbolic link, nor blocking on a FIFO put in
/// its place.
fn read_small(p: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(MAX_CONFIG_FILE as u64 + 1).read_to_string(&mut text).ok()?;
    (text.len() <= MAX_CONFIG_FILE).then_some(text)
}

fn open_nofollow(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(p)
}

fn read_marker(dir: &Path) -> Option<String> {
    let mut text = String::new();
    open_nofollow(&dir.join(MARKER)).ok()?.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| l.strip_prefix("OVS_REPO_UUID=").map(|v| v.trim().to_owned()))
}

impl LocalStorage {
    /// Storage rooted at `root` instead of `/OVS` (tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        LocalStorage { root: root.into(), plugins: PluginRunner::default(), writing: Default::default() }
    }

    /// The same storage with the external plug-ins of `dir` (instead of
    /// [`super::plugin::DEFAULT_PLUGIN_DIR`]).
    pub fn with_plugins(mut self, plugins: PluginRunner) -> Self {
        self.plugins = plugins;
        self
    }

    /// The record of the external plug-in's mount at `mount_point` (a checked mount point).
    fn plugin_record(&self, mount_point: &str) -> PathBuf {
        let leaf = Path::new(mount_point).file_name().unwrap_or_default();
        self.root.join(PLUGIN_MOUNTS).join(leaf)
    }

    /// What an external plug-in mounted at `m`, if one did and the table still shows it.
    fn plugin_mount_at(&self, m: &MountInfo) -> Option<MountSource> {
        let text = std::fs::read(self.plugin_record(&m.mount_point)).ok()?;
        let r: PluginMount = serde_json::from_slice(&text).ok()?;
        (r.fstype == m.fstype && r.fs_source == m.source).then_some(r.source)
    }

    /// What is mounted at `m`.
    fn source_at(&self, m: &MountInfo) -> MountSource {
        self.plugin_mount_at(m).unwrap_or_else(|| source_of(m))
    }

    fn write_plugin_record(&self, mount_point: &str, r: &PluginMount) -> Result<()> {
        let path = self.plugin_record(mount_point);
        let dir = self.root.join(PLUGIN_MOUNTS);
        std::fs::create_dir_all(&dir).map_err(|e| backend(format!("create {}: {e}", dir.display())))?;
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec(r).map_err(|e| backend(format!("record of {mount_point}: {e}")))?;
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| backend(format!("write {}: {e}", path.display())))
    }

    /// The last mount at `mount_point` in the mount table.
    fn mounted_at(mount_point: &str) -> Result<Option<MountInfo>> {
        Ok(mountinfo()?.into_iter().rfind(|m| m.mount_point == mount_point))
    }

    /// Mount through an external plug-in and check what it did.
    fn mount_external(&self, source: &MountSource, mount_point: &str) -> Result<()> {
        let MountSource::External { plugin, host, path } = source else {
            return Err(Error::Internal { message: "not an external mount source".into() });
        };
        let done = self.plugins.mount(plugin, host, path, mount_point);
        let here = Self::mounted_at(mount_point)?;
        let m = match (done, here) {
            (Ok(()), Some(m)) => m,
            (Ok(()), None) => {
                return Err(Error::backend(
                    host,
                    format!("storage plug-in {plugin} mounted nothing at {mount_point}"),
                ))
            }
            (Err(e), here) => {
                // Nothing was mounted there before: what a failed plug-in left is taken away.
                if here.is_some() {
                    let _ = umount(mount_point);
                }
                return Err(e);
            }
        };
        let opts: Vec<&str> = m.options.split(',').collect();
        if !(opts.contains(&"nosuid") && opts.contains(&"nodev")) {
            let _ = umount(mount_point);
            return Err(Error::backend(
                host,
                format!(
                    "storage plug-in {plugin} mounted {path} at {mount_point} with {}, not nosuid,nodev: \
                     unmounted again",
                    m.options
                ),
            ));
        }
        let record =
            PluginMount { source: source.clone(), fstype: m.fstype.clone(), fs_source: m.source.clone() };
        self.write_plugin_record(mount_point, &record).inspect_err(|_| {
            let _ = umount(mount_point);
        })
    }

    fn repositories(&self) -> PathBuf {
        self.root.join(REPOSITORIES)
    }

    /// Where local file systems are offered from (`/OVS/Local`).
    fn local_root(&self) -> PathBuf {
        self.root.join("Local")
    }

    /// A path this side may write: plain, absolute, under the storage root, and, inside a
    /// repository, only while the repository is mounted.
    fn writable(&self, what: &str, path: &str) -> Result<()> {
        check_abs_path(what, path)?;
        let p = Path::new(path);
        if !p.starts_with(&self.root) || p == self.root {
            return Err(Error::invalid(what, format!("{path:?} is outside {}", self.root.display())));
        }
        if let Ok(rest) = p.strip_prefix(self.repositories()) {
            let mut parts = rest.components();
            let repo = parts.next().ok_or_else(|| Error::invalid(what, "names no repository"))?;
            if parts.next().is_none() {
                return Err(Error::invalid(what, format!("{path:?} is a repository, not a file in one")));
            }
            let dir = self.repositories().join(repo);
            let d = dir.to_str().unwrap_or_default();
            if !mountinfo()?.iter().any(|m| m.mount_point == d) {
                return Err(backend(format!("repository {d} is not mounted on this server")));
            }
            // A repository's file system comes from elsewhere: a symbolic link on it must not lead
            // a write out of it.
            return self.contained(what, p, &dir);
        }
        self.contained(what, p, &self.root)
    }

    /// The directories above `p` that exist resolve to a place inside `within`.
    fn contained(&self, what: &str, p: &Path, within: &Path) -> Result<()> {
        let base = std::fs::canonicalize(within).unwrap_or_else(|_| within.to_path_buf());
        let mut dir = p.parent();
        // Only the directories from `within` down are looked at: above it nothing is created.
        while let Some(d) = dir.filter(|d| d.starts_with(within)) {
            match std::fs::canonicalize(d) {
                Ok(real) if real.starts_with(&base) => return Ok(()),
                Ok(real) => {
                    return Err(Error::invalid(
                        what,
                        format!("{} leads to {}, outside {}", p.display(), real.display(), within.display()),
                    ))
                }
                Err(_) => dir = d.parent(),
            }
        }
        Ok(())
    }

    /// A mount point ovm manages: `<root>/Repositories/<name>` with one plain component.
    fn mount_point_ok(&self, mount_point: &str) -> Result<()> {
        check_abs_path("mount_point", mount_point)?;
        let p = Path::new(mount_point);
        match p.strip_prefix(self.repositories()) {
            Ok(rest) if rest.components().count() == 1 => Ok(()),
            _ => Err(Error::invalid(
                "mount_point",
                format!("{mount_point:?} is not a repository under {}", self.repositories().display()),
            )),
        }
    }

    fn scratch(&self) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.root.join(".discover").join(format!("{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| backend(format!("create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Discover the file systems of a file server with their real sizes.
    pub fn discover(&self, server: &FileServerAccess) -> Result<Vec<DiscoveredFileSystem>> {
        match server {
            FileServerAccess::Nfs { host } => {
                MountSource::Nfs { host: host.clone(), export: "/".into(), version: None }.check()?;
                let mut found = Vec::new();
                let mut refused: Vec<String> = Vec::new();
                for export in nfs_exports(host)? {
                    let dir = self.scratch()?;
                    let d = dir.to_str().unwrap_or_default().to_owned();
                    let mounted = run(
                        "mount.nfs",
                        &[&nfs_spec(host, &export), &d, "-o", &nfs_options(None, true)],
                        NFS_TIMEOUT,
                    );
                    let measured = mounted.and_then(|_| {
                        let u = fs_usage(&d);
                        let marker = read_marker(&dir);
                        umount(&d)?;
                        u.map(|u| (u, marker))
                    });
                    let _ = std::fs::remove_dir(&dir);
                    // An export this server may not mount (exported to other clients only) is not
                    // one it can offer: it is left out, and said so.
                    let (u, marker) = match measured {
                        Ok(m) => m,
                        Err(e) => {
                            log::info!("NFS export {host}:{export} left out: {e}");
                            refused.push(format!("{export}: {e}"));
                            continue;
                        }
                    };
                    found.push(DiscoveredFileSystem {
                        path: export,
                        total_bytes: u.total_bytes,
                        free_bytes: u.total_bytes - u.used_bytes,
                        repository: marker,
                    });
                }
                if found.is_empty() && !refused.is_empty() {
                    return Err(Error::backend(
                        host,
                        format!("no export can be mounted here: {}", refused.join("; ")),
                    ));
                }
                Ok(found)
            }
            FileServerAccess::External { plugin, host } => {
                server.check()?;
                self.plugins.discover(plugin, host)
            }
            FileServerAccess::Local { root } => {
                check_abs_path("root", root)?;
                if !Path::new(root).starts_with(self.local_root()) {
                    return Err(Error::invalid(
                        "root",
                        format!("{root:?} is not under {}", self.local_root().display()),
                    ));
                }
                std::fs::create_dir_all(root).map_err(|e| backend(format!("create {root}: {e}")))?;
                let u = fs_usage(root)?;
                Ok(vec![DiscoveredFileSystem {
                    path: root.clone(),
                    total_bytes: u.total_bytes,
                    free_bytes: u.total_bytes - u.used_bytes,
                    repository: read_marker(Path::new(root)),
                }])
            }
        }
    }

    /// Mount `source` at `mount_point` (idempotent for the same source).
    pub fn mount(&self, source: &MountSource, mount_point: &str) -> Result<()> {
        source.check()?;
        self.mount_point_ok(mount_point)?;
        if let Some(m) = Self::mounted_at(mount_point)? {
            let there = self.source_at(&m);
            return if same_source(&there, source) {
                Ok(())
            } else {
                Err(backend(format!("{} ({}) is already mounted at {mount_point}", m.source, m.fstype)))
            };
        }
        std::fs::create_dir_all(mount_point).map_err(|e| backend(format!("create {mount_point}: {e}")))?;
        let done = match source {
            MountSource::Nfs { host, export, version } => run(
                "mount.nfs",
                &[&nfs_spec(host, export), mount_point, "-o", &nfs_options(*version, false)],
                NFS_TIMEOUT,
            )
            .map_err(|e| Error::backend(host, format!("mount {export}: {e}")))
            .and_then(|_| {
                // mount.nfs may exit 0 without mounting (say, for an argument it takes as an
                // option): only the mount table says it is mounted.
                if mountinfo()?.iter().any(|m| m.mount_point == mount_point) {
                    Ok(())
                } else {
                    Err(Error::backend(host, format!("mount.nfs mounted nothing at {mount_point}")))
                }
            }),
            MountSource::External { .. } => self.mount_external(source, mount_point),
            MountSource::Local { path } => {
                if !Path::new(path).starts_with(self.local_root()) {
                    Err(Error::invalid(
                        "path",
                        format!("{path:?} is not under {}", self.local_root().display()),
                    ))
                } else if !Path::new(path).is_dir() {
                    Err(backend(format!("{path} is not a directory")))
                } else {
                    bind_mount(path, mount_point)
                }
            }
        };
        if done.is_err() {
            let _ = std::fs::remove_dir(mount_point);
        }
        done
    }

    /// Unmount what is mounted at `mount_point` and remove the empty mount point.
    pub fn unmount(&self, mount_point: &str) -> Result<()> {
        self.mount_point_ok(mount_point)?;
        let here = Self::mounted_at(mount_point)?;
        match here.as_ref().and_then(|m| self.plugin_mount_at(m)) {
            Some(MountSource::External { plugin, host, .. }) => {
                self.plugins.unmount(&plugin, mount_point)?;
                if Self::mounted_at(mount_point)?.is_some() {
                    return Err(Error::backend(
                        host,
                        format!("storage plug-in {plugin} left {mount_point} mounted"),
                    ));
                }
            }
            _ => umount(mount_point)?,
        }
        match std::fs::remove_file(self.plugin_record(mount_point)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                log::warn!("record of {mount_point} stays: {e}");
            }
            _ => {}
        }
        match std::fs::remove_dir(mount_point) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                log::warn!("mount point {mount_point} stays: {e}");
            }
            _ => {}
        }
        Ok(())
    }

    /// The repositories mounted.
    pub fn mounts(&self) -> Result<Vec<FileSystemMount>> {
        let repos = self.repositories();
        Ok(mountinfo()?
            .iter()
            .filter(|m| Path::new(&m.mount_point).parent() == Some(repos.as_path()))
            .map(|m| FileSystemMount { source: self.source_at(m), mount_point: m.mount_point.clone() })
            .collect())
    }

    /// Write the layout and the marker of `repository` at `mount_point`.
    pub fn init_repository(&self, mount_point: &str, repository: &str) -> Result<()> {
        self.mount_point_ok(mount_point)?;
        let ok_id = !repository.is_empty()
            && repository.len() <= 64
            && repository.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok_id {
            return Err(Error::invalid("repository", format!("{repository:?} is not a repository id")));
        }
        if !mountinfo()?.iter().any(|m| m.mount_point == mount_point) {
            return Err(backend(format!("nothing is mounted at {mount_point}")));
        }
        let dir = Path::new(mount_point);
        match read_marker(dir) {
            Some(r) if r == repository => {}
            Some(r) => {
                return Err(Error::conflict(format!("the file system at {mount_point} holds repository {r}")))
            }
            None => {
                let tmp = dir.join(format!("{MARKER}.tmp"));
                let _ = std::fs::remove_file(&tmp); // a crash's leftover (never followed)
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .and_then(|mut f| {
                        use std::io::Write;
                        f.write_all(format!("OVS_REPO_UUID={repository}\nOVS_REPO_VERSION=3.0\n").as_bytes())
                    })
                    .and_then(|_| std::fs::rename(&tmp, dir.join(MARKER)));
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                written.map_err(|e| backend(format!("write {}: {e}", dir.join(MARKER).display())))?;
            }
        }
        for d in LAYOUT {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| backend(format!("create {d}: {e}")))?;
        }
        Ok(())
    }

    /// Remove the marker of `repository` at `mount_point`.
    pub fn remove_repository(&self, mount_point: &str, repository: &str) -> Result<()> {
        self.mount_point_ok(mount_point)?;
        let dir = Path::new(mount_point);
        if read_marker(dir).as_deref() == Some(repository) {
            std::fs::remove_file(dir.join(MARKER))
                .map_err(|e| backend(format!("remove {}: {e}", dir.join(MARKER).display())))?;
        }
        Ok(())
    }

    /// Capacity and usage of the file system holding `path`.
    pub fn usage(&self, path: &str) -> Result<FsUsage> {
        check_abs_path("path", path)?;
        fs_usage(path)
    }

    /// Check that `path` may be written (see the module) and make the directories above it.
    pub fn prepare_write(&self, path: &str) -> Result<()> {
        self.writable("path", path)?;
        self.make_parent(path)
    }

    /// Make the directories above `path`.
    fn make_parent(&self, path: &str) -> Result<()> {
        match Path::new(path).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
                .map_err(|e| backend(format!("create directory {}: {e}", dir.display()))),
            _ => Ok(()),
        }
    }

    /// Create a sparse file.
    pub fn create_file(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.writable("path", path)?;
        self.make_parent(path)?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| backend(format!("create {path}: {e}")))?;
        f.set_len(size_bytes).map_err(|e| backend(format!("size {path}: {e}")))
    }

    /// Copy a file (the source may be anywhere dom0 can read; the copy lands under the root).
    pub fn copy_file(&self, from: &str, to: &str) -> Result<()> {
        check_abs_path("from", from)?;
        self.writable("to", to)?;
        self.make_parent(to)?;
        let mut src = std::fs::File::open(from).map_err(|e| backend(format!("open {from}: {e}")))?;
        // create_new: never over an existing file, nor through a symbolic link.
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(|e| backend(format!("create {to}: {e}")))?;
        match thin_or_sparse_copy(&mut src, &mut dst) {
            Ok(how) => {
                log::info!("copied {from} to {to}: {how}");
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(to);
                Err(backend(format!("copy {from} to {to}: {e}")))
            }
        }
    }

    /// Delete a file; a missing file is success. An object's directory in a repository
    /// (`Templates/<id>`, `Assemblies/<id>`, `VirtualMachines/<id>`) left empty goes too.
    pub fn delete_file(&self, path: &str) -> Result<()> {
        self.writable("path", path)?;
        crate::sync::lock(&self.writing).remove(path);
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(backend(format!("delete {path}: {e}"))),
        }
        if let Some(dir) = Path::new(path).parent() {
            let in_object_dir = dir
                .parent()
                .filter(|kind| {
                    kind.file_name().is_some_and(|n| {
                        ["Templates", "Assemblies", "VirtualMachines"].iter().any(|k| n == *k)
                    })
                })
                .and_then(|kind| kind.parent())
                .and_then(|repo| repo.parent())
                .is_some_and(|root| root == self.repositories());
            if in_object_dir {
                let _ = std::fs::remove_dir(dir); // fails while anything is left in it
            }
        }
        Ok(())
    }

    /// Grow or shrink a file.
    pub fn resize_file(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.writable("path", path)?;
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| backend(format!("open {path}: {e}")))?;
        f.set_len(size_bytes).map_err(|e| backend(format!("size {path}: {e}")))
    }

    /// Check that `path` is a suspend image a domain may be restored from: a file of a mounted
    /// repository's layout.
    pub fn saved_image(&self, path: &str) -> Result<()> {
        self.repository_file("image", path)
    }

    /// A file a domain may have as a disk: under the storage root and, inside a repository, only
    /// while that repository is mounted here, with no symbolic link leading out of it. Disk paths come
    /// from elsewhere (the manager, or another server's agent in a migration): the toolstack would
    /// give a guest any file of dom0 it is named.
    pub fn domain_disk(&self, path: &str) -> Result<()> {
        self.writable("disk", path).map_err(|e| match e {
            Error::Backend { message, .. } => Error::invalid("disk", message),
            other => other,
        })
    }

    /// A path the data-writing operations may write: a file in one of a mounted repository's
    /// layout directories (or its `repository.cfg`), no component hidden (`.`-names are ovm's own:
    /// the marker, scratch files).
    fn repository_file(&self, what: &str, path: &str) -> Result<()> {
        self.writable(what, path)?;
        let rest = Path::new(path)
            .strip_prefix(self.repositories())
            .map_err(|_| Error::invalid(what, format!("{path:?} is not in a repository")))?;
        let parts: Vec<&str> = rest.iter().filter_map(|c| c.to_str()).collect();
        let ok = match parts.as_slice() {
            [_, name] => *name == REPOSITORY_CONFIG,
            [_, dir, more @ ..] => REPOSITORY_LAYOUT.contains(dir) && !more.is_empty() && more.len() <= 2,
            _ => false,
        };
        if !ok || parts.iter().any(|c| c.starts_with('.')) {
            return Err(Error::invalid(what, format!("{path:?} is not a file of a repository's layout")));
        }
        Ok(())
    }

    /// Write a chunk into an existing file, within its size. The file stays open for the next
    /// chunk until [`LocalStorage::finish_write`] (or a minute without writes).
    pub fn write_file_at(&self, path: &str, offset: u64, data: &[u8]) -> Result<()> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        if data.len() > MAX_WRITE_CHUNK {
            return Err(Error::invalid(
                "data",
                format!("{} bytes is over the chunk limit of {MAX_WRITE_CHUNK}", data.len()),
            ));
        }
        let cached = {
            let mut w = crate::sync::lock(&self.writing);
            let now = Instant::now();
            w.retain(|_, (_, used)| now.duration_since(*used) < WRITE_IDLE);
            w.get_mut(path).map(|(f, used)| {
                *used = now;
                f.clone()
            })
        };
        let f = match cached {
            Some(f) => f,
            None => {
                self.repository_file("path", path)?;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(path)
                    .map_err(|e| backend(format!("open {path}: {e}")))?;
                let meta = f.metadata().map_err(|e| backend(format!("stat {path}: {e}")))?;
                if !meta.is_file() {
                    return Err(Error::invalid("path", format!("{path:?} is not a regular file")));
                }
                let f = std::sync::Arc::new(f);
                crate::sync::lock(&self.writing).insert(path.to_owned(), (f.clone(), Instant::now()));
                f
            }
        };
        let len = f.metadata().map_err(|e| backend(format!("stat {path}: {e}")))?.len();
        let end = offset.checked_add(data.len() as u64);
        if end.is_none_or(|end| end > len) {
            return Err(Error::invalid(
                "offset",
                format!("writing {} bytes at {offset} goes past the {len} bytes of {path}", data.len()),
            ));
        }
        f.write_all_at(data, offset).map_err(|e| backend(format!("write {path}: {e}")))
    }

    /// The end of writes into `path`: its data reaches the storage (`fsync`) and it is closed.
    pub fn finish_write(&self, path: &str) -> Result<()> {
        let f = crate::sync::lock(&self.writing).remove(path);
        match f {
            Some((f, _)) => f.sync_all().map_err(|e| backend(format!("sync {path}: {e}"))),
            None => Ok(()),
        }
    }

    /// The text of a repository's configuration file.
    pub fn read_config(&self, path: &str) -> Result<Option<String>> {
        self.repository_file("path", path)?;
        if !path.ends_with(".cfg") {
            return Err(Error::invalid("path", format!("{path:?} is not a configuration file")));
        }
        match Path::new(path).symlink_metadata() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(format!("stat {path}: {e}"))),
            Ok(m) if !m.is_file() || m.len() > MAX_CONFIG_FILE as u64 => Err(Error::invalid(
                "path",
                format!("{path:?} is not a configuration file of at most {MAX_CONFIG_FILE} bytes"),
            )),
            Ok(_) => read_small(Path::new(path))
                .map(Some)
                .ok_or_else(|| Error::invalid("path", format!("{path:?} is not readable UTF-8 text"))),
        }
    }

    /// Replace a small file atomically (a new file beside it, renamed over it).
    pub fn put_file(&self, path: &str, contents: &[u8]) -> Result<()> {
        if contents.len() > MAX_CONFIG_FILE {
            return Err(Error::invalid(
                "contents",
                format!("{} bytes is over the limit of {MAX_CONFIG_FILE}", contents.len()),
            ));
        }
        self.repository_file("path", path)?;
        self.make_parent(path)?;
        let p = Path::new(path);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = p.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(contents)?;
                f.sync_all()
            })
            .and_then(|_| std::fs::rename(&tmp, p));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(backend(format!("write {path}: {e}")));
        }
        Ok(())
    }

    /// The files of a mounted repository's layout, with the text of its configuration files.
    pub fn list_repository(&self, mount_point: &str) -> Result<Vec<RepositoryFile>> {
        self.mount_point_ok(mount_point)?;
        if !mountinfo()?.iter().any(|m| m.mount_point == mount_point) {
            return Err(backend(format!("nothing is mounted at {mount_point}")));
        }
        let root = Path::new(mount_point);
        let mut out = Vec::new();
        for top in REPOSITORY_LAYOUT {
            list_files(root, Path::new(top), 1, &mut out)?;
        }
        let top = root.join(REPOSITORY_CONFIG);
        if let Ok(meta) = top.symlink_metadata() {
            if meta.is_file() {
                out.push(RepositoryFile { path: REPOSITORY_CONFIG.into(), size_bytes: meta.len() });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Size of a file.
    pub fn file_size(&self, path: &str) -> Result<Option<u64>> {
        check_abs_path("path", path)?;
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(format!("stat {path}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_copy_keeps_the_holes_and_the_data() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("ovm-sparse-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.img"), dir.join("b.img"));
        // 256 MiB with 1 MiB of data at the start, at 100 MiB and at the very end.
        let mut f = File::create(&a).unwrap();
        f.set_len(256 << 20).unwrap();
        for (at, byte) in [(0u64, 1u8), (100 << 20, 2), ((256 << 20) - (1 << 20), 3)] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&vec![byte; 1 << 20]).unwrap();
        }
        f.sync_all().unwrap();
        drop(f);
        let mut src = File::open(&a).unwrap();
        let mut dst = std::fs::OpenOptions::new().write(true).create_new(true).open(&b).unwrap();
        let how = thin_or_sparse_copy(&mut src, &mut dst).unwrap();
        drop(dst);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{how}");
        let allocated = std::fs::metadata(&b).unwrap().blocks() * 512;
        // A reflink shares the source's blocks; a sparse copy allocates about the 3 MiB of data.
        assert!(allocated < 16 << 20, "{how}: {allocated} bytes allocated for 3 MiB of data");
        println!("{how}: {allocated} bytes allocated");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "36 25 0:32 / /OVS/Repositories/abc rw,relatime shared:1 - nfs4 10.77.1.254:/srv/nfs/repo rw,vers=4.2\n\
                    37 25 8:1 /srv/local\\040disk /OVS/Repositories/def rw - ext4 /dev/sda1 rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            source_of(&m[0]),
            MountSource::Nfs { host: "10.77.1.254".into(), export: "/srv/nfs/repo".into(), version: None }
        );
        assert_eq!(m[1].mount_point, "/OVS/Repositories/def");
        assert_eq!(source_of(&m[1]), MountSource::Local { path: "/srv/local disk".into() });
        let v6 = parse_mountinfo("1 2 0:3 / /x rw - nfs [fd00::1]:/e rw\n");
        assert_eq!(
            source_of(&v6[0]),
            MountSource::Nfs { host: "fd00::1".into(), export: "/e".into(), version: None }
        );
    }

    /// Storage rooted in a new temporary directory with test plug-ins (shell scripts) that
    /// mount a tmpfs.
    fn with_test_plugins(tag: &str) -> (PathBuf, LocalStorage) {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ovm-ext-storage-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ok = r#"printf '{"protocol":1,"ok":true,"result":{}}'"#;
        let head = r#"req=$(cat); mp=$(printf '%s' "$req" | sed -n 's/.*"mount_point":"\([^"]*\)".*/\1/p')"#;
        let scripts = [
            ("liar", format!("{head}; {ok}")),
            (
                "tmpfs",
                format!(
                    r#"{head}; case "$req" in *'"op":"mount"'*) mount -t tmpfs -o nosuid,nodev ovm-test "$mp" || exit 1;; *'"op":"unmount"'*) umount "$mp" || exit 1;; esac; {ok}"#
                ),
            ),
            (
                "suid",
                format!(
                    r#"{head}; case "$req" in *'"op":"mount"'*) mount -t tmpfs ovm-test "$mp" || exit 1;; esac; {ok}"#
                ),
            ),
            (
                "stubborn",
                format!(
                    r#"{head}; case "$req" in *'"op":"mount"'*) mount -t tmpfs -o nosuid,nodev ovm-test "$mp" || exit 1;; esac; {ok}"#
                ),
            ),
        ];
        for (name, body) in scripts {
            let p = plugins.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let s = LocalStorage::with_root(dir.join("OVS")).with_plugins(PluginRunner::new(&plugins));
        (dir, s)
    }

    fn ext(plugin: &str) -> MountSource {
        MountSource::External { plugin: plugin.into(), host: "nas1:/e".into(), path: "/e/a".into() }
    }

    #[test]
    fn a_plugin_that_mounts_nothing_is_caught() {
        let (dir, s) = with_test_plugins("liar");
        let at = format!("{}/OVS/{REPOSITORIES}/r1", dir.display());
        match s.mount(&ext("liar"), &at) {
            Err(Error::Backend { message, .. }) => assert!(message.contains("mounted nothing"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(!Path::new(&at).exists(), "the mount point is taken away again");
        assert!(matches!(s.mount(&ext("../liar"), &at), Err(Error::InvalidArgument { .. })));
        assert!(s.mount(&ext("liar"), "/mnt").is_err(), "a mount point outside the root");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Real mounts (a tmpfs): the tests run as root (as `make test` does), where mount(2) works.
    #[test]
    fn what_a_plugin_mounts_is_checked_recorded_and_unmounted() {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(uid, 0, "this test mounts a tmpfs: run the tests as root (make test)");
        let (dir, s) = with_test_plugins("mounts");
        let at = format!("{}/OVS/{REPOSITORIES}/r1", dir.display());
        s.mount(&ext("tmpfs"), &at).expect("mount(2) works for root here");
        // Mounted, recorded as the plug-in's, again (the same source) without harm.
        assert_eq!(
            s.mounts().unwrap(),
            vec![FileSystemMount { source: ext("tmpfs"), mount_point: at.clone() }]
        );
        s.mount(&ext("tmpfs"), &at).unwrap();
        assert!(s.mount(&ext("stubborn"), &at).is_err(), "another source is there");
        assert!(s.usage(&at).unwrap().total_bytes > 0);
        s.init_repository(&at, "r1").unwrap();
        s.create_file(&format!("{at}/VirtualDisks/d.img"), 4096).unwrap();
        s.unmount(&at).unwrap();
        assert!(s.mounts().unwrap().is_empty());
        assert!(!dir.join("OVS").join(PLUGIN_MOUNTS).join("r1").exists(), "the record goes");
        // Without nosuid,nodev: unmounted again, refused.
        match s.mount(&ext("suid"), &at) {
            Err(Error::Backend { message, .. }) => assert!(message.contains("not nosuid,nodev"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(mountinfo().unwrap().iter().all(|m| m.mount_point != at));
        // A plug-in that says it unmounted but did not.
        s.mount(&ext("stubborn"), &at).unwrap();
        match s.unmount(&at) {
            Err(Error::Backend { message, .. }) => assert!(message.contains("left"), "{message}"),
            other => panic!("{other:?}"),
        }
        umount(&at).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_file_system_whatever_the_version() {
        let a = MountSource::Nfs { host: "h".into(), export: "/e/".into(), version: Some(3) };
        let b = MountSource::Nfs { host: "h".into(), export: "/e".into(), version: None };
        assert!(same_source(&a, &b));
        assert!(!same_source(&a, &MountSource::Nfs { host: "h".into(), export: "/f".into(), version: None }));
        assert_eq!(nfs_spec("fd00::1", "/e"), "[fd00::1]:/e");
        assert!(nfs_options(Some(3), false).contains("nolock"));
        assert!(nfs_options(None, true).ends_with(",ro"));
    }

    #[test]
    fn writes_stay_under_the_root_and_inside_mounted_repositories() {
        let dir = std::env::temp_dir().join(format!("ovm-local-storage-{}", std::process::id()));
        let s = LocalStorage::with_root(&dir);
        let inside = format!("{}/Kernels/k", dir.display());
        s.create_file(&inside, 10).unwrap();
        assert_eq!(s.file_size(&inside).unwrap(), Some(10));
        for bad in ["/etc/passwd", "relative", "/OVS/../etc/x"] {
            assert!(matches!(s.create_file(bad, 1), Err(Error::InvalidArgument { .. })), "{bad}");
            assert!(s.delete_file(bad).is_err(), "{bad}");
        }
        let escape = format!("{}/Kernels/../../x", dir.display());
        assert!(s.create_file(&escape, 1).is_err());
        // A repository that is not mounted: nothing lands on the local disk.
        let unmounted = format!("{}/{REPOSITORIES}/r1/VirtualDisks/a.img", dir.display());
        assert!(s.create_file(&unmounted, 1).is_err());
        assert!(!Path::new(&unmounted).exists());
        assert!(s.copy_file(&inside, &unmounted).is_err());
        assert!(s
            .mount(
                &MountSource::Local { path: "/etc".into() },
                &format!("{}/{REPOSITORIES}/r1", dir.display())
            )
            .is_err());
        assert!(
            s.mount(&MountSource::Local { path: inside.clone() }, "/mnt").is_err(),
            "mount point outside"
        );
        assert!(
            s.init_repository(&format!("{}/{REPOSITORIES}/r1", dir.display()), "r1").is_err(),
            "not mounted"
        );
        // A symbolic link inside the root does not lead a write out of it.
        let outside = std::env::temp_dir().join(format!("ovm-local-storage-out-{}", std::process::id()));
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("Kernels/escape")).unwrap();
        let through = format!("{}/Kernels/escape/x", dir.display());
        assert!(matches!(s.create_file(&through, 1), Err(Error::InvalidArgument { .. })));
        assert!(s.copy_file(&inside, &through).is_err());
        assert!(!outside.join("x").exists());
        std::fs::remove_dir_all(&outside).unwrap();
        s.delete_file(&inside).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
