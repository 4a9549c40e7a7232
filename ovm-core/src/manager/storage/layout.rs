//! Where a repository and the files in it live on the servers it is presented to.

use crate::model::*;

/// The directory a local file server offers on its admin server (its file system holds one
/// repository, bound at the repository's mount point when presented).
pub const LOCAL_FILE_SYSTEM_ROOT: &str = "/OVS/Local";

/// Path of a repository on every server it is presented to.
pub fn repository_path(repo: RepositoryId) -> String {
    format!("/OVS/Repositories/{}", repo.0.simple())
}

/// Path of a virtual disk file.
pub fn virtual_disk_path(repo: RepositoryId, disk: VirtualDiskId) -> String {
    format!("{}/VirtualDisks/{}.img", repository_path(repo), disk.0.simple())
}

/// Paths of a boot kernel and its initial ramdisk stored in a repository under `name`.
pub fn kernel_paths(repo: RepositoryId, name: &str) -> (String, String) {
    let dir = format!("{}/Kernels/{name}", repository_path(repo));
    (format!("{dir}/vmlinux"), format!("{dir}/initrd"))
}

/// Path of an ISO file.
pub fn iso_path(repo: RepositoryId, iso: VirtualCdromId) -> String {
    format!("{}/ISOs/{}.iso", repository_path(repo), iso.0.simple())
}
