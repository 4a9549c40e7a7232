//! Repositories: creation, and presenting them to servers (mounting) and back.

use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// Settings of a new repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySpec {
    /// Name.
    pub name: String,
    /// Backing file system or physical disk.
    pub backing: RepositoryBacking,
    /// Owning pool (required for a physical-disk repository, which must be clustered).
    pub owner_pool: Option<PoolId>,
    /// Capacity, bytes (0: take the file system's or disk's size).
    pub capacity_bytes: u64,
}

impl Manager {
    /// Create a repository. The job's result is the repository.
    pub fn create_repository(&self, spec: RepositorySpec) -> Result<JobHandle> {
        let capacity = if spec.capacity_bytes > 0 {
            spec.capacity_bytes
        } else {
            match spec.backing {
                RepositoryBacking::FileSystem(f) => self.get::<FileSystem>(f)?.free_bytes,
                RepositoryBacking::PhysicalDisk(d) => self.get::<PhysicalDisk>(d)?.size_bytes,
            }
        };
        self.create_object(Object::Repository(Repository {
            id: RepositoryId::new(),
            name: spec.name,
            description: String::new(),
            backing: spec.backing,
            owner_pool: spec.owner_pool,
            presented_to: Vec::new(),
            capacity_bytes: capacity,
            used_bytes: 0,
        }))
    }

    /// Present (mount) a repository on a server.
    pub fn present_repository(&self, repo: RepositoryId, server: ServerId) -> Result<JobHandle> {
        let r = self.repository(repo)?;
        let s = self.server(server)?;
        if r.presented_to.contains(&server) {
            return Err(Error::conflict(format!(
                "repository {:?} is already presented to {:?}",
                r.name, s.name
            )));
        }
        let mut edited = (*r).clone();
        edited.presented_to.push(server);
        self.state().inv.check_put(&Object::Repository(edited))?;
        self.submit(
            JobSpec::new(
                "PresentRepository",
                &format!("Present {} to {}", r.name, s.name),
                vec![r.object_ref()],
            )
            .step("present", move |ctx| {
                ctx.tx(|tx| tx.edit::<Repository>(repo, |r| r.presented_to.push(server))).map(|_| ())
            }),
        )
    }

    /// Stop presenting a repository to a server (no running VM on that server may use it).
    pub fn unpresent_repository(&self, repo: RepositoryId, server: ServerId) -> Result<JobHandle> {
        let r = self.repository(repo)?;
        if !r.presented_to.contains(&server) {
            return Err(Error::invalid("server", "the repository is not presented to that server"));
        }
        if let Some(vm) = self
            .list::<Vm>(|v| {
                v.repository == Some(repo) && v.server == Some(server) && v.power_state.is_resident()
            })
            .first()
        {
            return Err(Error::conflict(format!("VM {:?} on that server uses the repository", vm.name)));
        }
        self.submit(
            JobSpec::new("UnpresentRepository", &format!("Unpresent {}", r.name), vec![r.object_ref()]).step(
                "unpresent",
                move |ctx| {
                    ctx.tx(|tx| tx.edit::<Repository>(repo, |r| r.presented_to.retain(|s| *s != server)))
                        .map(|_| ())
                },
            ),
        )
    }
}
