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
    /// Management of arrays like a vendor plug-in does it, if this server can; `None` for generic
    /// arrays, whose LUNs are managed outside ovm.
    fn management(&self) -> Option<&dyn ArrayManagement> {
        None
    }
}

/// Vendor-style management of a storage array's LUNs and access groups.
pub trait ArrayManagement: Send + Sync {
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
