//! Storage capabilities, after Oracle VM's Storage Connect split: a **file-system plug-in** side
//! (mount and unmount file systems, create, resize, copy and delete files, report capacity and usage)
//! and a **storage-array** side (log in to and out of targets, list LUNs and, for arrays the server
//! can manage like a vendor plug-in does, create, resize, clone and delete LUNs and their access
//! groups).
//!
//! Paths are paths on the server (repository paths such as `/OVS/Repositories/<id>/...`).

use serde::{Deserialize, Serialize};

use crate::Result;

/// What a server mounts: a file system of a file server, as a Storage Connect file-system plug-in
/// reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountSource {
    /// An NFS export `host:export`.
    Nfs {
        /// The NFS server's host name or address.
        host: String,
        /// The exported path.
        export: String,
        /// NFS major version (3 or 4); `None` lets the client negotiate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u8>,
    },
    /// A directory of the server's own file system, bound at the mount point.
    Local {
        /// The directory.
        path: String,
    },
    /// A file system of a file server reached through an external plug-in (an executable on each
    /// server that speaks ovm's storage plug-in protocol: see `docs/storage-plugins.md`).
    External {
        /// The plug-in's name (see [`check_plugin_name`]).
        plugin: String,
        /// The file server, as the plug-in names it (see [`check_plugin_host`]).
        host: String,
        /// The file system, as the plug-in's discovery named it: a plain absolute path.
        path: String,
    },
}

impl MountSource {
    /// Check the fields (what a server is asked to mount comes from the manager's records, but an
    /// agent checks it again before it reaches `mount`).
    pub fn check(&self) -> Result<()> {
        match self {
            MountSource::Nfs { host, export, version } => {
                crate::model::validate_host("host", host)?;
                check_abs_path("export", export)?;
                if let Some(v) = version {
                    if !matches!(v, 3 | 4) {
                        return Err(crate::Error::invalid("version", format!("NFS version {v} (3 or 4)")));
                    }
                }
                Ok(())
            }
            MountSource::Local { path } => check_abs_path("path", path),
            MountSource::External { plugin, host, path } => {
                check_plugin_name(plugin)?;
                check_plugin_host(host)?;
                check_abs_path("path", path)
            }
        }
    }
}

impl MountSource {
    /// Whether `self` and `other` name the same file system (the NFS version is how it is
    /// mounted, not what; a trailing `/` changes nothing).
    pub fn same_file_system(&self, other: &MountSource) -> bool {
        match (self, other) {
            (
                MountSource::Nfs { host: h1, export: e1, .. },
                MountSource::Nfs { host: h2, export: e2, .. },
            ) => h1 == h2 && e1.trim_end_matches('/') == e2.trim_end_matches('/'),
            (MountSource::Local { path: a }, MountSource::Local { path: b }) => {
                a.trim_end_matches('/') == b.trim_end_matches('/')
            }
            (
                MountSource::External { plugin: p1, host: h1, path: a },
                MountSource::External { plugin: p2, host: h2, path: b },
            ) => p1 == p2 && h1 == h2 && a.trim_end_matches('/') == b.trim_end_matches('/'),
            _ => false,
        }
    }
}

impl std::fmt::Display for MountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountSource::Nfs { host, export, .. } if host.contains(':') => write!(f, "[{host}]:{export}"),
            // (hosts are bare: validate_host refuses brackets)
            MountSource::Nfs { host, export, .. } => write!(f, "{host}:{export}"),
            MountSource::Local { path } => write!(f, "{path}"),
            MountSource::External { plugin, host, path } => write!(f, "{plugin}:{host}:{path}"),
        }
    }
}

/// The longest plug-in name.
pub const PLUGIN_NAME_MAX: usize = 64;

/// An external plug-in's name: `[a-z0-9][a-z0-9_-]{0,63}` (a file name in the plug-in directory;
/// never a path).
pub fn check_plugin_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= PLUGIN_NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(
            "plugin",
            format!("{name:?} is not a plug-in name ([a-z0-9][a-z0-9_-]{{0,63}})"),
        ))
    }
}

/// A file server as an external plug-in names it (its meaning is the plug-in's): 1 to 1024
/// printable ASCII characters without spaces, not starting with `-` (never an option to anything).
pub fn check_plugin_host(host: &str) -> Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 1024
        && !host.starts_with('-')
        && host.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid("host", format!("{host:?} is not a file server a plug-in can be given")))
    }
}

/// `path` is absolute, has no `..`, `.` or empty components and no control characters.
pub fn check_abs_path(what: &str, path: &str) -> Result<()> {
    let ok = path.starts_with('/')
        && path.len() <= 4096
        && !path.chars().any(char::is_control)
        && (path == "/" || path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(what, format!("{path:?} is not a plain absolute path")))
    }
}

/// A file system mounted on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSystemMount {
    /// What is mounted.
    pub source: MountSource,
    /// Where, on the server.
    pub mount_point: String,
}

/// A file server as an admin server reaches it for discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileServerAccess {
    /// An NFS server.
    Nfs {
        /// Host name or address.
        host: String,
    },
    /// The admin server's own file system under `root`.
    Local {
        /// The directory whose file system is offered.
        root: String,
    },
    /// A file server reached through an external plug-in.
    External {
        /// The plug-in's name (see [`check_plugin_name`]).
        plugin: String,
        /// The file server, as the plug-in names it (see [`check_plugin_host`]).
        host: String,
    },
}

impl FileServerAccess {
    /// Check the fields (an agent checks them again before anything runs).
    pub fn check(&self) -> Result<()> {
        match self {
            FileServerAccess::Nfs { host } => crate::model::validate_host("host", host),
            FileServerAccess::Local { root } => check_abs_path("root", root),
            FileServerAccess::External { plugin, host } => {
                check_plugin_name(plugin)?;
                check_plugin_host(host)
            }
        }
    }
}

/// A file system a file server offers, as discovered from the storage itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredFileSystem {
    /// Export path (NFS), directory (local) or the path an external plug-in names it by.
    pub path: String,
    /// Capacity, bytes.
    pub total_bytes: u64,
    /// Free, bytes.
    pub free_bytes: u64,
    /// The id of the ovm repository that already lives on it (its `.ovsrepo` marker), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// Capacity and usage of a mounted file system, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsUsage {
    /// Capacity.
    pub total_bytes: u64,
    /// Used.
    pub used_bytes: u64,
}

/// Largest chunk [`FileStoragePlugin::write_file_at`] takes, bytes.
pub const MAX_WRITE_CHUNK: usize = 512 * 1024;

/// Largest file [`FileStoragePlugin::put_file`] writes and [`FileStoragePlugin::read_config`] reads,
/// bytes (configuration files).
pub const MAX_CONFIG_FILE: usize = 256 * 1024;

/// Most files [`FileStoragePlugin::list_repository`] lists.
pub const MAX_LISTED_FILES: usize = 100_000;

/// A file of a repository, as [`FileStoragePlugin::list_repository`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryFile {
    /// Path relative to the repository's mount point, components joined by `/`
    /// (e.g. `VirtualMachines/<id>/vm.cfg`).
    pub path: String,
    /// Size, bytes.
    pub size_bytes: u64,
}

/// The repository's own configuration file, at the top of its file system (also listed by
/// [`FileStoragePlugin::list_repository`]).
pub const REPOSITORY_CONFIG: &str = "repository.cfg";

/// The directories of a repository's layout that [`FileStoragePlugin::list_repository`] lists
/// (files directly in them, and in their subdirectories one level down).
pub const REPOSITORY_LAYOUT: [&str; 6] =
    ["Templates", "Assemblies", "ISOs", "VirtualDisks", "VirtualMachines", "Kernels"];

/// The file-system plug-in side of a server's storage.
pub trait FileStoragePlugin: Send + Sync {
    /// The file systems `server` offers, with their real capacity and free space, found by asking the
    /// storage (for NFS: the server's export list, each export mounted briefly, read-only, to
    /// measure it). Exports this server is not allowed to mount are left out; none at all is an
    /// error.
    fn discover(&self, server: &FileServerAccess) -> Result<Vec<DiscoveredFileSystem>>;
    /// Mount `source` at `mount_point`. Mounting the same source at the same place again succeeds;
    /// another source already mounted there is an error.
    fn mount(&self, source: &MountSource, mount_point: &str) -> Result<()>;
    /// Unmount the file system at `mount_point`; unmounting where nothing is mounted succeeds.
    fn unmount(&self, mount_point: &str) -> Result<()>;
    /// The file systems mounted through this plug-in (under the repositories' root).
    fn mounts(&self) -> Result<Vec<FileSystemMount>>;
    /// Make Oracle VM's repository layout (`Templates/`, `Assemblies/`, `ISOs/`, `VirtualDisks/`,
    /// `VirtualMachines/`) and the `.ovsrepo` marker naming `repository` on the file system mounted
    /// at `mount_point`. Idempotent for the same repository; a file system whose marker names
    /// another repository is refused (`Conflict`), and nothing is written to it.
    fn init_repository(&self, mount_point: &str, repository: &str) -> Result<()>;
    /// Remove the marker of `repository` from the file system mounted at `mount_point` (a marker
    /// naming another repository stays). The layout's directories are kept.
    fn remove_repository(&self, mount_point: &str, repository: &str) -> Result<()>;
    /// Capacity and usage of the file system holding `path`.
    fn usage(&self, path: &str) -> Result<FsUsage>;
    /// Create a sparse file of `size_bytes` at `path`; fails if a file exists there.
    fn create_file(&self, path: &str, size_bytes: u64) -> Result<()>;
    /// Grow or shrink the file at `path` to `size_bytes`.
    fn resize_file(&self, path: &str, size_bytes: u64) -> Result<()>;
    /// Copy the file at `from` to `to`; fails if a file exists at `to`.
    fn copy_file(&self, from: &str, to: &str) -> Result<()>;
    /// Delete the file at `path`; deleting a missing file succeeds.
    fn delete_file(&self, path: &str) -> Result<()>;
    /// Size of the file at `path`, or `None` if there is none.
    fn file_size(&self, path: &str) -> Result<Option<u64>>;
    /// Write `data` (at most [`MAX_WRITE_CHUNK`] bytes) at `offset` of the existing file at `path`
    /// (made by [`create_file`](Self::create_file) with its final size): a write past that size
    /// is refused, so an import never grows a file beyond what was declared and checked.
    fn write_file_at(&self, path: &str, offset: u64, data: &[u8]) -> Result<()>;
    /// The end of [`write_file_at`](Self::write_file_at) calls into `path`: what was written
    /// reaches the storage before this returns (a server may keep the file open between chunks).
    fn finish_write(&self, path: &str) -> Result<()>;
    /// Replace the file at `path` with `contents` (at most [`MAX_CONFIG_FILE`] bytes) atomically:
    /// a reader sees the old file or the new one, never a part (configuration files).
    fn put_file(&self, path: &str, contents: &[u8]) -> Result<()>;
    /// The regular files of the repository mounted at `mount_point`, in the directories of
    /// [`REPOSITORY_LAYOUT`], and its [`REPOSITORY_CONFIG`], sorted by path (at most
    /// [`MAX_LISTED_FILES`]; symbolic links and other special files are left out).
    fn list_repository(&self, mount_point: &str) -> Result<Vec<RepositoryFile>>;
    /// The text of the configuration file at `path` (a `*.cfg` file of a repository, at most
    /// [`MAX_CONFIG_FILE`] bytes of UTF-8), or `None` if there is no such file.
    fn read_config(&self, path: &str) -> Result<Option<String>>;
}

/// A LUN of a storage array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lun {
    /// The array's id of the LUN: its SCSI identifier (page 83 WWID, e.g. `naa.6001405...`) as
    /// servers see it, or the array's own id where the array names it (vendor management).
    pub id: String,
    /// Name (the unit serial number, or the array's name for it).
    pub name: String,
    /// Size, bytes.
    pub size_bytes: u64,
    /// Whether the LUN is a thin clone of another.
    pub thin_clone_of: Option<String>,
}

/// An access group of a storage array: the initiators a set of LUNs is presented to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccessGroup {
    /// Name.
    pub name: String,
    /// Initiator names (iSCSI IQNs).
    pub initiators: Vec<String>,
    /// Ids of the LUNs presented to the group.
    pub luns: Vec<String>,
}

/// An iSCSI session of a server: the portal (`host:port`) and the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IscsiSession {
    /// The portal, `host:port`.
    pub portal: String,
    /// The target's name (IQN).
    pub target: String,
}

/// An iSCSI target name: `iqn.`/`eui.`/`naa.` followed by the characters RFC 3720 allows.
pub fn check_target(target: &str) -> Result<()> {
    let ok = (target.starts_with("iqn.") || target.starts_with("eui.") || target.starts_with("naa."))
        && target.len() <= 223
        && target.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid("target", format!("{target:?} is not an iSCSI name")))
    }
}

/// An iSCSI portal: `host` or `host:port` with a plain host name or address.
pub fn check_portal(portal: &str) -> Result<()> {
    let (host, port) = match portal.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
        _ => (portal, None),
    };
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let host_ok = crate::model::validate_host("portal", bare).is_ok();
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(crate::Error::invalid("portal", format!("{portal:?} is not host[:port]")))
    }
}

/// The storage-array side of a server's storage: what the server does as an initiator.
pub trait StorageArrayPlugin: Send + Sync {
    /// This server's initiator name (its iSCSI IQN).
    fn initiator(&self) -> Result<String>;
    /// The targets the portal (`host[:port]`) offers this server (iSCSI SendTargets).
    fn discover_targets(&self, portal: &str) -> Result<Vec<String>>;
    /// Log in to `target` through `portal`; logging in again succeeds. Returns once the target's
    /// LUNs are disks of this server.
    fn login(&self, portal: &str, target: &str) -> Result<()>;
    /// Log out of `target`; logging out of a target not logged in to succeeds.
    fn logout(&self, portal: &str, target: &str) -> Result<()>;
    /// The sessions of this server.
    fn sessions(&self) -> Result<Vec<IscsiSession>>;
    /// The LUNs of `target` this server sees (it must be logged in), with their SCSI identifiers
    /// and real sizes.
    fn list_luns(&self, target: &str) -> Result<Vec<Lun>>;
    /// Rescan `target`'s session so that LUNs granted to this server since it logged in become
    /// disks (returns once they have); not logged in is an error.
    fn rescan(&self, target: &str) -> Result<()>;
    /// Forget LUN `id` of `target` on this server (its SCSI device is removed) before the array
    /// stops presenting it; forgetting a LUN the server does not see succeeds.
    fn forget_lun(&self, target: &str, id: &str) -> Result<()>;
    /// Vendor-style management of the array `access` names, with this server as its admin server
    /// (as Storage Connect runs a vendor plug-in on an admin server). Drivers without the plug-in
    /// answer [`crate::Error::Unsupported`].
    fn array_management(&self, access: &ArrayAdminAccess) -> Result<Box<dyn ArrayManagement + '_>> {
        Err(crate::Error::Unsupported { what: format!("the storage-array plug-in {:?}", access.plugin) })
    }
}

/// The name of ovm's vendor-style plug-in for Linux LIO targets (managed through `ovm-lio`).
pub const LIO_PLUGIN: &str = "ovm-lio";

/// How an admin server reaches an array's management interface.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayAdminAccess {
    /// The plug-in (e.g. [`LIO_PLUGIN`]).
    pub plugin: String,
    /// The management interface's host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The administrator's name.
    pub username: String,
    /// The administrator's password.
    pub password: String,
    /// Fingerprint (`sha256:` and hex) of the certificate the management interface must present;
    /// `None` on first contact only (see [`ArrayManagement::fingerprint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl std::fmt::Debug for ArrayAdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayAdminAccess")
            .field("plugin", &self.plugin)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"***")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl ArrayAdminAccess {
    /// Check the fields (an agent checks them again before it connects).
    pub fn check(&self) -> Result<()> {
        crate::model::validate_host("host", &self.host)?;
        if self.port == 0 {
            return Err(crate::Error::invalid("port", "port 0"));
        }
        if self.username.is_empty() || self.username.len() > 64 || self.username.contains(':') {
            return Err(crate::Error::invalid("username", "1 to 64 characters, no ':'"));
        }
        if self.password.is_empty() || self.password.len() > 256 {
            return Err(crate::Error::invalid("password", "1 to 256 characters"));
        }
        if let Some(f) = &self.fingerprint {
            let hex = f.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(crate::Error::invalid("fingerprint", "sha256: and 64 hex digits"));
            }
        }
        Ok(())
    }
}

/// One call of [`ArrayManagement`] as data: what an agent is asked to do on an array and what the
/// `ovm-lio` management interface answers (JSON-RPC methods of the same names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum ArrayOp {
    /// The certificate's fingerprint (no credentials are sent).
    Fingerprint,
    /// The targets the array manages.
    Targets,
    /// The LUNs of a target.
    Luns {
        /// Target.
        target: String,
    },
    /// Create a LUN.
    CreateLun {
        /// Target.
        target: String,
        /// Name.
        name: String,
        /// Size, bytes.
        size_bytes: u64,
    },
    /// Resize a LUN.
    ResizeLun {
        /// Target.
        target: String,
        /// The LUN's id.
        lun: String,
        /// New size, bytes.
        size_bytes: u64,
    },
    /// Clone a LUN.
    CloneLun {
        /// Target.
        target: String,
        /// The LUN's id.
        lun: String,
        /// The clone's name.
        name: String,
    },
    /// Delete a LUN.
    DeleteLun {
        /// Target.
        target: String,
        /// The LUN's id.
        lun: String,
    },
    /// The access groups of a target.
    AccessGroups {
        /// Target.
        target: String,
    },
    /// Create an access group.
    CreateAccessGroup {
        /// Target.
        target: String,
        /// Group.
        group: String,
    },
    /// Delete an access group.
    DeleteAccessGroup {
        /// Target.
        target: String,
        /// Group.
        group: String,
    },
    /// Add an initiator to a group.
    AddInitiator {
        /// Target.
        target: String,
        /// Group.
        group: String,
        /// Initiator (IQN).
        initiator: String,
    },
    /// Remove an initiator from a group.
    RemoveInitiator {
        /// Target.
        target: String,
        /// Group.
        group: String,
        /// Initiator (IQN).
        initiator: String,
    },
    /// Present a LUN to a group.
    Present {
        /// Target.
        target: String,
        /// Group.
        group: String,
        /// The LUN's id.
        lun: String,
    },
    /// Stop presenting a LUN to a group.
    Unpresent {
        /// Target.
        target: String,
        /// Group.
        group: String,
        /// The LUN's id.
        lun: String,
    },
}

impl ArrayOp {
    /// Check the arguments: target names, LUN and group names, initiators.
    pub fn check(&self) -> Result<()> {
        let name = |what: &str, n: &str| -> Result<()> {
            let ok = !n.is_empty()
                && n.len() <= 64
                && !n.starts_with(['.', '-'])
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(crate::Error::invalid(
                    what,
                    format!("{n:?}: 1 to 64 of [A-Za-z0-9-_.:], not starting with '.' or '-'"),
                ))
            }
        };
        match self {
            ArrayOp::Fingerprint | ArrayOp::Targets => Ok(()),
            ArrayOp::Luns { target } | ArrayOp::AccessGroups { target } => check_target(target),
            ArrayOp::CreateLun { target, name: n, size_bytes } => {
                check_target(target)?;
                name("name", n)?;
                if *size_bytes == 0 {
                    return Err(crate::Error::invalid("size_bytes", "a LUN of 0 bytes"));
                }
                Ok(())
            }
            ArrayOp::ResizeLun { target, lun, .. } | ArrayOp::DeleteLun { target, lun } => {
                check_target(target)?;
                name("lun", lun)
            }
            ArrayOp::CloneLun { target, lun, name: n } => {
                check_target(target)?;
                name("lun", lun)?;
                name("name", n)
            }
            ArrayOp::CreateAccessGroup { target, group } | ArrayOp::DeleteAccessGroup { target, group } => {
                check_target(target)?;
                name("group", group)
            }
            ArrayOp::AddInitiator { target, group, initiator }
            | ArrayOp::RemoveInitiator { target, group, initiator } => {
                check_target(target)?;
                name("group", group)?;
                check_target(initiator)
            }
            ArrayOp::Present { target, group, lun } | ArrayOp::Unpresent { target, group, lun } => {
                check_target(target)?;
                name("group", group)?;
                name("lun", lun)
            }
        }
    }

    /// The target the call is about, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            ArrayOp::Fingerprint | ArrayOp::Targets => None,
            ArrayOp::Luns { target }
            | ArrayOp::AccessGroups { target }
            | ArrayOp::CreateLun { target, .. }
            | ArrayOp::ResizeLun { target, .. }
            | ArrayOp::CloneLun { target, .. }
            | ArrayOp::DeleteLun { target, .. }
            | ArrayOp::CreateAccessGroup { target, .. }
            | ArrayOp::DeleteAccessGroup { target, .. }
            | ArrayOp::AddInitiator { target, .. }
            | ArrayOp::RemoveInitiator { target, .. }
            | ArrayOp::Present { target, .. }
            | ArrayOp::Unpresent { target, .. } => Some(target),
        }
    }

    /// Run the call on `m` (after checking its arguments).
    pub fn apply(self, m: &dyn ArrayManagement) -> Result<ArrayAnswer> {
        self.check()?;
        Ok(match self {
            ArrayOp::Fingerprint => ArrayAnswer::Fingerprint(m.fingerprint()?),
            ArrayOp::Targets => ArrayAnswer::Targets(m.targets()?),
            ArrayOp::Luns { target } => ArrayAnswer::Luns(m.luns(&target)?),
            ArrayOp::CreateLun { target, name, size_bytes } => {
                ArrayAnswer::Lun(m.create_lun(&target, &name, size_bytes)?)
            }
            ArrayOp::ResizeLun { target, lun, size_bytes } => {
                m.resize_lun(&target, &lun, size_bytes)?;
                ArrayAnswer::Done
            }
            ArrayOp::CloneLun { target, lun, name } => ArrayAnswer::Lun(m.clone_lun(&target, &lun, &name)?),
            ArrayOp::DeleteLun { target, lun } => {
                m.delete_lun(&target, &lun)?;
                ArrayAnswer::Done
            }
            ArrayOp::AccessGroups { target } => ArrayAnswer::AccessGroups(m.access_groups(&target)?),
            ArrayOp::CreateAccessGroup { target, group } => {
                m.create_access_group(&target, &group)?;
                ArrayAnswer::Done
            }
            ArrayOp::DeleteAccessGroup { target, group } => {
                m.delete_access_group(&target, &group)?;
                ArrayAnswer::Done
            }
            ArrayOp::AddInitiator { target, group, initiator } => {
                m.add_initiator(&target, &group, &initiator)?;
                ArrayAnswer::Done
            }
            ArrayOp::RemoveInitiator { target, group, initiator } => {
                m.remove_initiator(&target, &group, &initiator)?;
                ArrayAnswer::Done
            }
            ArrayOp::Present { target, group, lun } => {
                m.present(&target, &group, &lun)?;
                ArrayAnswer::Done
            }
            ArrayOp::Unpresent { target, group, lun } => {
                m.unpresent(&target, &group, &lun)?;
                ArrayAnswer::Done
            }
        })
    }
}

/// The answer to an [`ArrayOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ArrayAnswer {
    /// Done, nothing to say.
    Done,
    /// A certificate fingerprint.
    Fingerprint(String),
    /// Targets.
    Targets(Vec<String>),
    /// One LUN.
    Lun(Lun),
    /// LUNs.
    Luns(Vec<Lun>),
    /// Access groups.
    AccessGroups(Vec<AccessGroup>),
}

fn unexpected(op: &str, a: &ArrayAnswer) -> crate::Error {
    crate::Error::backend("storage array", format!("unexpected answer to {op}: {a:?}"))
}

/// [`ArrayManagement`] over a function that carries each call somewhere else (an agent, or a
/// management interface over the network) and returns its answer.
pub struct ArrayOpClient<F: Fn(ArrayOp) -> Result<ArrayAnswer> + Send + Sync>(pub F);

impl<F: Fn(ArrayOp) -> Result<ArrayAnswer> + Send + Sync> std::fmt::Debug for ArrayOpClient<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArrayOpClient")
    }
}

impl<F: Fn(ArrayOp) -> Result<ArrayAnswer> + Send + Sync> ArrayOpClient<F> {
    fn done(&self, op: ArrayOp) -> Result<()> {
        match (self.0)(op)? {
            ArrayAnswer::Done => Ok(()),
            a => Err(unexpected("a change", &a)),
        }
    }
    fn lun(&self, op: ArrayOp) -> Result<Lun> {
        match (self.0)(op)? {
            ArrayAnswer::Lun(l) => Ok(l),
            a => Err(unexpected("a LUN's creation", &a)),
        }
    }
}

impl<F: Fn(ArrayOp) -> Result<ArrayAnswer> + Send + Sync> ArrayManagement for ArrayOpClient<F> {
    fn fingerprint(&self) -> Result<String> {
        match (self.0)(ArrayOp::Fingerprint)? {
            ArrayAnswer::Fingerprint(f) => Ok(f),
            a => Err(unexpected("fingerprint", &a)),
        }
    }
    fn targets(&self) -> Result<Vec<String>> {
        match (self.0)(ArrayOp::Targets)? {
            ArrayAnswer::Targets(t) => Ok(t),
            a => Err(unexpected("targets", &a)),
        }
    }
    fn luns(&self, target: &str) -> Result<Vec<Lun>> {
        match (self.0)(ArrayOp::Luns { target: target.into() })? {
            ArrayAnswer::Luns(l) => Ok(l),
            a => Err(unexpected("luns", &a)),
        }
    }
    fn create_lun(&self, target: &str, name: &str, size_bytes: u64) -> Result<Lun> {
        self.lun(ArrayOp::CreateLun { target: target.into(), name: name.into(), size_bytes })
    }
    fn resize_lun(&self, target: &str, lun: &str, size_bytes: u64) -> Result<()> {
        self.done(ArrayOp::ResizeLun { target: target.into(), lun: lun.into(), size_bytes })
    }
    fn clone_lun(&self, target: &str, lun: &str, name: &str) -> Result<Lun> {
        self.lun(ArrayOp::CloneLun { target: target.into(), lun: lun.into(), name: name.into() })
    }
    fn delete_lun(&self, target: &str, lun: &str) -> Result<()> {
        self.done(ArrayOp::DeleteLun { target: target.into(), lun: lun.into() })
    }
    fn access_groups(&self, target: &str) -> Result<Vec<AccessGroup>> {
        match (self.0)(ArrayOp::AccessGroups { target: target.into() })? {
            ArrayAnswer::AccessGroups(g) => Ok(g),
            a => Err(unexpected("access_groups", &a)),
        }
    }
    fn create_access_group(&self, target: &str, group: &str) -> Result<()> {
        self.done(ArrayOp::CreateAccessGroup { target: target.into(), group: group.into() })
    }
    fn delete_access_group(&self, target: &str, group: &str) -> Result<()> {
        self.done(ArrayOp::DeleteAccessGroup { target: target.into(), group: group.into() })
    }
    fn add_initiator(&self, target: &str, group: &str, initiator: &str) -> Result<()> {
        self.done(ArrayOp::AddInitiator {
            target: target.into(),
            group: group.into(),
            initiator: initiator.into(),
        })
    }
    fn remove_initiator(&self, target: &str, group: &str, initiator: &str) -> Result<()> {
        self.done(ArrayOp::RemoveInitiator {
            target: target.into(),
            group: group.into(),
            initiator: initiator.into(),
        })
    }
    fn present(&self, target: &str, group: &str, lun: &str) -> Result<()> {
        self.done(ArrayOp::Present { target: target.into(), group: group.into(), lun: lun.into() })
    }
    fn unpresent(&self, target: &str, group: &str, lun: &str) -> Result<()> {
        self.done(ArrayOp::Unpresent { target: target.into(), group: group.into(), lun: lun.into() })
    }
}

/// Vendor-style management of a storage array's LUNs and access groups.
pub trait ArrayManagement: Send + Sync {
    /// Fingerprint (`sha256:` and hex) of the management interface's certificate, learnt without
    /// sending credentials (to be pinned in the array's access); drivers without one answer an
    /// empty string.
    fn fingerprint(&self) -> Result<String>;
    /// The targets the array manages (LUNs are created on these).
    fn targets(&self) -> Result<Vec<String>>;
    /// The LUNs of `target`, with their SCSI identifiers as servers see them and real sizes.
    fn luns(&self, target: &str) -> Result<Vec<Lun>>;
    /// Create a LUN of `size_bytes` named `name`.
    fn create_lun(&self, target: &str, name: &str, size_bytes: u64) -> Result<Lun>;
    /// Resize a LUN.
    fn resize_lun(&self, target: &str, lun: &str, size_bytes: u64) -> Result<()>;
    /// Clone a LUN (thin where the array can); returns the clone.
    fn clone_lun(&self, target: &str, lun: &str, name: &str) -> Result<Lun>;
    /// Delete a LUN (and its presentations).
    fn delete_lun(&self, target: &str, lun: &str) -> Result<()>;
    /// The access groups of `target`.
    fn access_groups(&self, target: &str) -> Result<Vec<AccessGroup>>;
    /// Create an empty access group.
    fn create_access_group(&self, target: &str, group: &str) -> Result<()>;
    /// Delete an access group.
    fn delete_access_group(&self, target: &str, group: &str) -> Result<()>;
    /// Add an initiator to a group (adding it again succeeds).
    fn add_initiator(&self, target: &str, group: &str, initiator: &str) -> Result<()>;
    /// Remove an initiator from a group.
    fn remove_initiator(&self, target: &str, group: &str, initiator: &str) -> Result<()>;
    /// Present a LUN to a group.
    fn present(&self, target: &str, group: &str, lun: &str) -> Result<()>;
    /// Stop presenting a LUN to a group.
    fn unpresent(&self, target: &str, group: &str, lun: &str) -> Result<()>;
}
