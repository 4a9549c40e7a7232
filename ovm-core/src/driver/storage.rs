//! Storage capabilities, after Oracle VM's Storage Connect split: a **file-system plug-in** side
//! (mount and unmount file systems, create, resize, copy and delete files, report capacity and usage)
//! and a **storage-array** side (log in to and out of targets, list LUNs and, for arrays the server
//! can manage like a vendor plug-in does, create, resize, clone and delete LUNs and their access
//! groups).
//!
//! Paths are paths on the server (repository paths such as `/OVS/Repositories/<id>/...`).

use serde::{Deserialize, Serialize};

use crate::Result;

/// A file system mounted on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSystemMount {
    /// What is mounted, e.g. `nfs1:/export/repo` or a block device.
    pub export: String,
    /// Where, on the server.
    pub mount_point: String,
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
    /// Mount `export` at `mount_point`. Mounting the same export at the same place again succeeds.
    fn mount(&self, export: &str, mount_point: &str) -> Result<()>;
    /// Unmount the file system at `mount_point`.
    fn unmount(&self, mount_point: &str) -> Result<()>;
    /// The file systems mounted through this plug-in.
    fn mounts(&self) -> Result<Vec<FileSystemMount>>;
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
    /// The array's id of the LUN (unique within the target).
    pub id: String,
    /// Name.
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

/// The storage-array side of a server's storage: what the server does as an initiator.
pub trait StorageArrayPlugin: Send + Sync {
    /// This server's initiator name (its iSCSI IQN).
    fn initiator(&self) -> Result<String>;
    /// Log in to `target` (a target name such as an IQN).
    fn login(&self, target: &str) -> Result<()>;
    /// Log out of `target`; logging out of a target not logged in to succeeds.
    fn logout(&self, target: &str) -> Result<()>;
    /// The targets this server is logged in to.
    fn sessions(&self) -> Result<Vec<String>>;
    /// The LUNs of `target` this server sees (it must be logged in).
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
