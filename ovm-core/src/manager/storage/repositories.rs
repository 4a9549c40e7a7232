//! Repositories: creation, and presenting them to servers (mounting) and back.

use crate::driver::MountSource;
use crate::job::{StorageUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// Settings of a new repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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
        if let Some(other) = self.list::<Repository>(|r| r.backing == spec.backing).first() {
            return Err(Error::conflict(format!("repository {:?} already lives there", other.name)));
        }
        if let RepositoryBacking::PhysicalDisk(pd) = spec.backing {
            let target = DiskTarget::PhysicalDisk(pd);
            if let Some(vm) = self.list::<Vm>(|v| v.config.disks.iter().any(|d| d.target == target)).first() {
                return Err(Error::conflict(format!("the physical disk is attached to VM {:?}", vm.name)));
            }
        }
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
            mounts: Vec::new(),
            initialized: false,
            capacity_bytes: capacity,
            used_bytes: 0,
        }))
    }

    /// Present (mount) a repository on a server: see [`Manager::present_repository_to`].
    pub fn present_repository(&self, repo: RepositoryId, server: ServerId) -> Result<JobHandle> {
        self.present_repository_to(repo, &[server])
    }

    /// Present a repository to servers: each mounts its file system at the repository's path
    /// (NFS mounted, a local directory bound), the first writes the repository's layout and marker
    /// (a file system holding another repository is refused), and each gets a mount record. One
    /// job: a server that fails undoes the mounts made on the others.
    pub fn present_repository_to(&self, repo: RepositoryId, servers: &[ServerId]) -> Result<JobHandle> {
        let r = self.repository(repo)?;
        if servers.is_empty() {
            return Err(Error::invalid("servers", "no server to present the repository to"));
        }
        let mut names = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            let s = self.server(*server)?;
            if r.presented_to.contains(server) || servers[..i].contains(server) {
                return Err(Error::conflict(format!(
                    "repository {:?} is already presented to {:?}",
                    r.name, s.name
                )));
            }
            if self.local_owner_of(&r).is_some_and(|o| o != *server) {
                return Err(Error::invalid(
                    "server",
                    format!("repository {:?} is on another server's local file system", r.name),
                ));
            }
            names.push(s.name.clone());
        }
        let mut edited = (*r).clone();
        edited.presented_to.extend_from_slice(servers);
        self.state().inv.check_put(&Object::Repository(edited))?;
        let (source, _) = self.mount_source_of(&r)?;
        let mount_point = super::repository_path(repo);
        // Only the presentation that writes the repository's marker for the first time may take it
        // away again on failure; a marker written before (the repository presented, then
        // unpresented everywhere) stays.
        let first = !r.initialized;
        let mut spec = JobSpec::new(
            "PresentRepository",
            &format!("Present {} to {}", r.name, names.join(", ")),
            vec![r.object_ref()],
        );
        for (i, (server, name)) in servers.iter().copied().zip(names).enumerate() {
            let (source, mount_point) = (source.clone(), mount_point.clone());
            spec = spec.step(&format!("mount on {name}"), move |ctx| {
                let hv = ctx.hv(server)?;
                let fs = crate::manager::file_storage(&*hv)?;
                ctx.will_do(Undo::Storage(StorageUndo::Unmount {
                    server: server.0,
                    mount_point: mount_point.clone(),
                    source: Some(source.clone()),
                }))?;
                fs.mount(&source, &mount_point)?;
                if first && i == 0 {
                    ctx.will_do(Undo::Storage(StorageUndo::RemoveMarker {
                        server: server.0,
                        mount_point: mount_point.clone(),
                        repository: repo.0.to_string(),
                    }))?;
                }
                fs.init_repository(&mount_point, &repo.0.to_string())?;
                ctx.tx(|tx| {
                    tx.edit::<Repository>(repo, |r| {
                        r.presented_to.push(server);
                        r.mounts.retain(|m| m.server != server);
                        r.initialized = true;
                        r.mounts.push(RepositoryMount {
                            server,
                            state: MountState::Mounted,
                            message: String::new(),
                        });
                    })
                    .map(drop)
                })
            });
        }
        self.submit(spec)
    }

    /// The server whose local file system holds the repository, if one does.
    fn local_owner_of(&self, r: &Repository) -> Option<ServerId> {
        let RepositoryBacking::FileSystem(f) = r.backing else { return None };
        let FileSystemLocation::FileServer(id) = self.get::<FileSystem>(f).ok()?.location else {
            return None;
        };
        let fsrv = self.get::<FileServer>(id).ok()?;
        (fsrv.kind == FileServerKind::Local).then(|| fsrv.admin_servers.first().copied()).flatten()
    }

    /// What servers mount for a repository, and the one server it may be presented to when it
    /// lies on a server's local file system.
    pub(crate) fn mount_source_of(&self, r: &Repository) -> Result<(MountSource, Option<ServerId>)> {
        match r.backing {
            RepositoryBacking::FileSystem(f) => {
                let fs = self.get::<FileSystem>(f)?;
                match fs.location {
                    FileSystemLocation::FileServer(id) => {
                        let fsrv = self.get::<FileServer>(id)?;
                        let owner = (fsrv.kind == FileServerKind::Local)
                            .then(|| fsrv.admin_servers.first().copied())
                            .flatten();
                        Ok((super::file_servers::mount_source(&fsrv, &fs.path), owner))
                    }
                    FileSystemLocation::PhysicalDisk(_) => Err(Error::Unsupported {
                        what: format!("mounting repository {:?}: OCFS2 on a physical disk", r.name),
                    }),
                }
            }
            RepositoryBacking::PhysicalDisk(_) => Err(Error::Unsupported {
                what: format!("mounting repository {:?}: OCFS2 on a physical disk", r.name),
            }),
        }
    }

    /// Stop presenting a repository to a server (no running VM on that server may use it): the
    /// server unmounts it.
    pub fn unpresent_repository(&self, repo: RepositoryId, server: ServerId) -> Result<JobHandle> {
        let r = self.repository(repo)?;
        if !r.presented_to.contains(&server) {
            return Err(Error::invalid("server", "the repository is not presented to that server"));
        }
        let in_use = self.read(|inv| {
            vm_using(inv, server, |inv, v| {
                crate::policy::placement::repositories_of(inv, v).iter().any(|x| x.id == repo)
            })
        });
        if let Some(vm) = in_use {
            return Err(Error::conflict(format!("VM {vm:?} on that server uses the repository")));
        }
        let (source, _) = self.mount_source_of(&r)?;
        let mount_point = super::repository_path(repo);
        self.submit(
            JobSpec::new("UnpresentRepository", &format!("Unpresent {}", r.name), vec![r.object_ref()]).step(
                "unmount",
                move |ctx| {
                    let hv = ctx.hv(server)?;
                    // Taken from the server in the inventory first: from then on placement chooses
                    // another server, and a VM that came to run there since the check is seen.
                    ctx.tx(|tx| {
                        if let Some(vm) = vm_using(tx.inv, server, |inv, v| {
                            crate::policy::placement::repositories_of(inv, v).iter().any(|x| x.id == repo)
                        }) {
                            return Err(Error::conflict(format!(
                                "VM {vm:?} on that server uses the repository"
                            )));
                        }
                        tx.edit::<Repository>(repo, |r| {
                            r.presented_to.retain(|s| *s != server);
                            r.mounts.retain(|m| m.server != server);
                        })
                        .map(drop)
                    })?;
                    ctx.will_do(Undo::Storage(StorageUndo::Mount {
                        server: server.0,
                        source,
                        mount_point: mount_point.clone(),
                    }))?;
                    crate::manager::file_storage(&*hv)?.unmount(&mount_point)
                },
            ),
        )
    }

    /// Mount again, on a server that is back (a restarted agent, a rebooted server), every
    /// repository presented to it; a mount that fails is recorded with an Error event.
    pub(crate) fn remount_repositories(&self, server: ServerId) {
        let Ok(hv) = self.hypervisor(server) else { return };
        // The generic arrays presented to it: log in again (a rebooted server has no sessions).
        if let Some(side) = hv.array_storage() {
            for a in self.list::<StorageArray>(|a| a.presented_to.contains(&server)) {
                let targets = self.array_targets(a.id);
                let portal = super::arrays::portal(&a);
                for t in targets {
                    if let Err(e) = side.login(&portal, &t) {
                        let name = self.server(server).map(|s| s.name.clone()).unwrap_or_default();
                        let _ = self.raise_event(
                            a.object_ref(),
                            Severity::Error,
                            "storage_array.login_failed",
                            &format!("{name} could not log in to {t} again: {e}"),
                        );
                    }
                }
            }
        }
        let Ok(fs) = crate::manager::file_storage(&*hv) else { return };
        for r in self.list::<Repository>(|r| r.presented_to.contains(&server)) {
            let outcome = self
                .mount_source_of(&r)
                .and_then(|(source, _)| fs.mount(&source, &super::repository_path(r.id)));
            let (state, message) = match &outcome {
                Ok(()) => (MountState::Mounted, String::new()),
                Err(e) => (MountState::Failed, e.to_string()),
            };
            if r.mount_on(server).is_some_and(|m| m.state == state && m.message == message) {
                continue;
            }
            let name = self.server(server).map(|s| s.name.clone()).unwrap_or_default();
            let _ = self.system_tx(|tx| {
                tx.edit::<Repository>(r.id, |r| {
                    r.mounts.retain(|m| m.server != server);
                    r.mounts.push(RepositoryMount { server, state, message: message.clone() });
                })?;
                match &outcome {
                    Ok(()) => tx.event(
                        r.object_ref(),
                        Severity::Info,
                        "repository.mounted",
                        format!("Repository {} is mounted again on {name}", r.name),
                    ),
                    Err(e) => tx.event(
                        r.object_ref(),
                        Severity::Error,
                        "repository.mount_failed",
                        format!("Repository {} could not be mounted on {name}: {e}", r.name),
                    ),
                }
                Ok(())
            });
        }
    }
}

/// The name of a VM resident on `server` for which `uses` holds.
pub(super) fn vm_using(
    inv: &Inventory,
    server: ServerId,
    uses: impl Fn(&Inventory, &Vm) -> bool,
) -> Option<String> {
    Vm::table(inv)
        .iter()
        .find(|v| v.server == Some(server) && v.power_state.is_resident() && uses(inv, v))
        .map(|v| v.name.clone())
}
