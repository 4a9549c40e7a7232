//! Storage: Storage Connect plugins' objects, repositories and their contents.

use serde::{Deserialize, Serialize};

use super::{
    validate_name, AccessGroupId, AssemblyId, FileServerId, FileSystemId, PhysicalDiskId, PoolId,
    RepositoryId, ServerId, StorageArrayId, TemplateId, VirtualCdromId, VirtualDiskId, VmId,
};
use crate::{Error, Result};

/// File server flavours (Storage Connect file system plugins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum FileServerKind {
    /// Local file system of a server.
    Local,
    /// An NFS server.
    Nfs,
    /// A file server reached through an external plug-in installed on its admin servers and on
    /// the servers its file systems are presented to (see `docs/storage-plugins.md`).
    External,
}

/// A file server exporting file systems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct FileServer {
    /// Id.
    pub id: FileServerId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Kind.
    pub kind: FileServerKind,
    /// Host name or IP (empty for local); for an external plug-in, the file server as the
    /// plug-in names it.
    pub access_host: String,
    /// Servers that perform storage operations for it (admin servers).
    pub admin_servers: Vec<ServerId>,
    /// Whether the file server is refreshed and usable.
    pub refreshed: bool,
    /// The external plug-in that reaches it (empty for NFS and local file servers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plugin: String,
}

impl FileServer {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        match self.kind {
            FileServerKind::Nfs => super::validate_host("access_host", &self.access_host)?,
            FileServerKind::External => {
                crate::driver::storage::check_plugin_name(&self.plugin)?;
                crate::driver::storage::check_plugin_host(&self.access_host).map_err(|_| {
                    Error::invalid(
                        "access_host",
                        format!("{:?} is not a file server a plug-in can be given", self.access_host),
                    )
                })?;
            }
            FileServerKind::Local => {}
        }
        if self.kind != FileServerKind::External && !self.plugin.is_empty() {
            return Err(Error::invalid("plugin", "only an external file server has a plug-in"));
        }
        Ok(())
    }
}

/// Storage array flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum StorageArrayKind {
    /// Generic iSCSI target (LUNs created outside ovm).
    Iscsi,
    /// Generic Fibre Channel (LUNs created outside ovm).
    FibreChannel,
    /// A vendor plugin that can create LUNs and access groups.
    Vendor,
}

/// A storage array exposing LUNs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct StorageArray {
    /// Id.
    pub id: StorageArrayId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Kind.
    pub kind: StorageArrayKind,
    /// Storage Connect plugin name, e.g. `oracle.generic.SCSIPlugin` or a vendor's.
    pub plugin: String,
    /// Access host (iSCSI portal) when relevant.
    pub access_host: String,
    /// Port of the access host (3260 for iSCSI).
    pub access_port: u16,
    /// Admin servers.
    pub admin_servers: Vec<ServerId>,
    /// Capacity for LUN creation, bytes (vendor arrays).
    pub capacity_bytes: u64,
    /// Servers logged in to its targets (that see its LUNs).
    #[serde(default)]
    pub presented_to: Vec<ServerId>,
}

impl StorageArray {
    /// Whether ovm may create LUNs and access groups on it.
    pub fn can_create_luns(&self) -> bool {
        self.kind == StorageArrayKind::Vendor
    }
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.plugin.trim().is_empty() {
            return Err(Error::invalid("plugin", "a storage array needs a plugin"));
        }
        if self.kind == StorageArrayKind::Iscsi {
            super::validate_host("access_host", &self.access_host)?;
        }
        Ok(())
    }
}

/// Where a file system lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum FileSystemLocation {
    /// Exported by a file server.
    FileServer(FileServerId),
    /// Created on a physical disk (OCFS2).
    PhysicalDisk(PhysicalDiskId),
}

/// A file system (NFS export, local FS, or OCFS2 on a LUN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct FileSystem {
    /// Id.
    pub id: FileSystemId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Location.
    pub location: FileSystemLocation,
    /// Export path (NFS) or mount path.
    pub path: String,
    /// Size, bytes.
    pub size_bytes: u64,
    /// Free, bytes.
    pub free_bytes: u64,
}

impl FileSystem {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.free_bytes > self.size_bytes {
            return Err(Error::invalid("free_bytes", "exceeds size"));
        }
        Ok(())
    }
}

/// A LUN of a storage array, or a local disk of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct PhysicalDisk {
    /// Id.
    pub id: PhysicalDiskId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// The array it belongs to (None for a server-local disk).
    pub array: Option<StorageArrayId>,
    /// The server owning it, for local disks.
    pub local_server: Option<ServerId>,
    /// Size, bytes.
    pub size_bytes: u64,
    /// Shareable between servers.
    pub shareable: bool,
    /// Page83 / WWID identifier.
    pub page83_id: String,
    /// The iSCSI target that serves it (empty for local and Fibre Channel disks).
    #[serde(default)]
    pub target: String,
}

impl PhysicalDisk {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.array.is_none() && self.local_server.is_none() {
            return Err(Error::invalid("array", "a physical disk belongs to an array or a server"));
        }
        if self.size_bytes == 0 {
            return Err(Error::invalid("size_bytes", "must be positive"));
        }
        Ok(())
    }
}

/// An access group: which servers (initiators) may see which LUNs of an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct AccessGroup {
    /// Id.
    pub id: AccessGroupId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// The array.
    pub array: StorageArrayId,
    /// Servers whose initiators are in the group.
    pub servers: Vec<ServerId>,
    /// LUNs presented to the group.
    pub disks: Vec<PhysicalDiskId>,
}

impl AccessGroup {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)
    }
}

/// Where a repository's file system lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum RepositoryBacking {
    /// A file system exported by a file server (NFS or local).
    FileSystem(FileSystemId),
    /// OCFS2 on a physical disk: needs a clustered pool, presented to that pool only.
    PhysicalDisk(PhysicalDiskId),
}

/// The state of a repository's mount on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum MountState {
    /// Mounted, as the repository's presentation wants.
    Mounted,
    /// Presented, but the server could not mount it (see the message); ovm mounts it again when
    /// the server is back or the repository is presented again.
    Failed,
}

/// A repository's mount on one server it is presented to (XAPI's PBD): the server, the state and,
/// when the mount failed, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct RepositoryMount {
    /// The server.
    pub server: ServerId,
    /// State.
    pub state: MountState,
    /// Why the mount failed (empty when mounted).
    #[serde(default)]
    pub message: String,
}

/// A storage repository holding templates, assemblies, ISOs, VM files and virtual disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Repository {
    /// Id.
    pub id: RepositoryId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Backing storage.
    pub backing: RepositoryBacking,
    /// The pool that owns it (required for physical-disk repositories).
    pub owner_pool: Option<PoolId>,
    /// Servers it is presented to (mounted on).
    pub presented_to: Vec<ServerId>,
    /// The mount on each server it is presented to.
    #[serde(default)]
    pub mounts: Vec<RepositoryMount>,
    /// Whether its layout and marker were written on its file system (by its first presentation).
    #[serde(default)]
    pub initialized: bool,
    /// Capacity, bytes.
    pub capacity_bytes: u64,
    /// Used, bytes.
    pub used_bytes: u64,
}

impl Repository {
    /// The state of the mount on `server`, if the repository is presented to it and ovm tried.
    pub fn mount_on(&self, server: ServerId) -> Option<&RepositoryMount> {
        self.mounts.iter().find(|m| m.server == server)
    }

    /// Free space, bytes.
    pub fn free_bytes(&self) -> u64 {
        self.capacity_bytes.saturating_sub(self.used_bytes)
    }
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.used_bytes > self.capacity_bytes {
            return Err(Error::invalid("used_bytes", "exceeds capacity"));
        }
        if let Some(m) = self.mounts.iter().find(|m| !self.presented_to.contains(&m.server)) {
            return Err(Error::invalid(
                "mounts",
                format!("a mount on server {} it is not presented to", m.server),
            ));
        }
        if matches!(self.backing, RepositoryBacking::PhysicalDisk(_)) && self.owner_pool.is_none() {
            return Err(Error::invalid(
                "owner_pool",
                "a repository on a physical disk needs a clustered pool",
            ));
        }
        Ok(())
    }
}

/// Virtual disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum DiskFormat {
    /// Raw image.
    Raw,
    /// Sparse raw image.
    Sparse,
    /// QCOW2.
    Qcow2,
}

/// A virtual disk file in a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct VirtualDisk {
    /// Id.
    pub id: VirtualDiskId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Repository holding it.
    pub repository: RepositoryId,
    /// Size, bytes.
    pub size_bytes: u64,
    /// Format.
    pub format: DiskFormat,
    /// Whether several VMs may attach it.
    pub shareable: bool,
    /// Path inside the repository.
    pub path: String,
}

impl VirtualDisk {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.size_bytes == 0 {
            return Err(Error::invalid("size_bytes", "a virtual disk must have a positive size"));
        }
        Ok(())
    }
}

/// An ISO image in a repository, mountable as a virtual CD-ROM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct VirtualCdrom {
    /// Id.
    pub id: VirtualCdromId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Repository holding it.
    pub repository: RepositoryId,
    /// Size, bytes.
    pub size_bytes: u64,
    /// Path inside the repository.
    pub path: String,
}

impl VirtualCdrom {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)
    }
}

/// A VM template: a VM configuration plus disks, cloned to make VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Template {
    /// Id.
    pub id: TemplateId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Repository holding it.
    pub repository: RepositoryId,
    /// The configuration clones start from (its id, MACs and disks are replaced on clone).
    pub config: super::VmConfig,
    /// The template's own disks, cloned for each VM.
    pub disks: Vec<VirtualDiskId>,
    /// Assembly it was imported from, if any.
    pub from_assembly: Option<AssemblyId>,
    /// VM it was made from, if any.
    pub from_vm: Option<VmId>,
}

impl Template {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        self.config.check()
    }
}

/// An assembly (OVF/OVA package) imported into a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Assembly {
    /// Id.
    pub id: AssemblyId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Repository holding it.
    pub repository: RepositoryId,
    /// Source URL it was imported from.
    pub source_url: String,
    /// Names of the VMs it describes.
    pub vm_names: Vec<String>,
    /// Disks extracted from it.
    pub disks: Vec<VirtualDiskId>,
}

impl Assembly {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)
    }
}
