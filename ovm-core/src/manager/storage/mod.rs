//! Storage: repositories and their presentation to servers ([`repositories`]), virtual disks, ISOs,
//! kernels and templates ([`disks`]), where their files live ([`layout`]), and the undo of effects on
//! storage.

mod arrays;
pub(crate) mod config_files;
mod disks;
mod file_servers;
mod import;
mod layout;
mod luns;
mod rebuild;
mod repositories;
pub(crate) use crate::source;

pub use arrays::{StorageArraySpec, GENERIC_ISCSI_PLUGIN};
pub use file_servers::FileServerSpec;
pub use layout::LOCAL_FILE_SYSTEM_ROOT;
pub use layout::{iso_path, kernel_paths, repository_path, virtual_disk_path};
pub use luns::ArrayManagementSpec;
pub use rebuild::{RebuildReport, ServerLogin};
pub use repositories::RepositorySpec;

use crate::job::StorageUndo;
use crate::manager::Manager;
use crate::model::*;
use crate::{Error, Result};

impl Manager {
    /// A server that can do storage work on a repository.
    pub(crate) fn storage_server(&self, repo: RepositoryId) -> Result<ServerId> {
        self.storage_server_for(&[repo])
    }

    /// A server that can do storage work on all of `repos` at once (each mounted there).
    pub(crate) fn storage_server_for(&self, repos: &[RepositoryId]) -> Result<ServerId> {
        let rs = repos.iter().map(|r| self.repository(*r)).collect::<Result<Vec<_>>>()?;
        let first = rs.first().ok_or_else(|| Error::invalid("repository", "none given"))?;
        let st = self.state();
        first
            .presented_to
            .iter()
            .copied()
            .find(|s| {
                st.conns.contains_key(s)
                    && st.inv.get::<Server>(*s).is_ok_and(|x| x.power_state == ServerPowerState::Running)
                    && rs.iter().all(|r| {
                        r.presented_to.contains(s)
                            && r.mount_on(*s).is_none_or(|m| m.state == MountState::Mounted)
                    })
            })
            .ok_or_else(|| {
                let what = if rs.len() == 1 {
                    "not mounted on any running server"
                } else {
                    "not mounted together on any running server"
                };
                Error::state(first.object_ref(), "mounted on a running server", what)
            })
    }
}

/// Change the bytes used in a repository by `delta`, refusing to exceed its capacity.
pub(crate) fn add_used(tx: &mut crate::manager::jobs::Tx<'_>, repo: RepositoryId, delta: i64) -> Result<()> {
    let r = tx.inv.get::<Repository>(repo)?;
    let used = r.used_bytes as i64 + delta;
    if used < 0 || used as u64 > r.capacity_bytes {
        return Err(Error::InsufficientResources {
            object: r.object_ref(),
            resource: "space (bytes)".into(),
            needed: delta.max(0) as u64,
            available: r.free_bytes(),
        });
    }
    tx.edit::<Repository>(repo, |r| r.used_bytes = used as u64).map(|_| ())
}

/// Undo an effect on storage (see [`crate::job::StorageUndo`]).
pub(crate) fn undo_storage(mgr: &Manager, u: &StorageUndo) -> Result<()> {
    match u {
        StorageUndo::DeleteFile { server, path } => {
            crate::manager::file_storage(&*mgr.hypervisor(ServerId(*server))?)?.delete_file(path)
        }
        StorageUndo::Unmount { server, mount_point, source } => {
            let hv = mgr.hypervisor(ServerId(*server))?;
            let fs = crate::manager::file_storage(&*hv)?;
            let ours = match source {
                None => true,
                Some(s) => {
                    fs.mounts()?.iter().any(|m| m.mount_point == *mount_point && m.source.same_file_system(s))
                }
            };
            if ours {
                fs.unmount(mount_point)
            } else {
                Ok(())
            }
        }
        StorageUndo::Mount { server, source, mount_point } => {
            crate::manager::file_storage(&*mgr.hypervisor(ServerId(*server))?)?.mount(source, mount_point)
        }
        StorageUndo::Logout { server, portal, target } => {
            let hv = mgr.hypervisor(ServerId(*server))?;
            hv.array_storage()
                .ok_or_else(|| Error::Unsupported { what: "storage arrays on this server".into() })?
                .logout(portal, target)
        }
        StorageUndo::Login { server, portal, target } => {
            let hv = mgr.hypervisor(ServerId(*server))?;
            hv.array_storage()
                .ok_or_else(|| Error::Unsupported { what: "storage arrays on this server".into() })?
                .login(portal, target)
        }
        StorageUndo::ArrayCall { server, array, call } => {
            luns::undo_array_call(mgr, ServerId(*server), StorageArrayId(*array), call)
        }
        StorageUndo::RemoveMarker { server, mount_point, repository } => {
            crate::manager::file_storage(&*mgr.hypervisor(ServerId(*server))?)?
                .remove_repository(mount_point, repository)
        }
    }
}
