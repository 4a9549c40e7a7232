//! Storage: repositories, their presentation to servers, virtual disks, ISOs and templates.

use super::jobs::JobSpec;
use super::{JobHandle, Manager};
use crate::job::{StorageUndo, Undo};
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

    /// A server that can do storage work on a repository.
    pub(crate) fn storage_server(&self, repo: RepositoryId) -> Result<ServerId> {
        let r = self.repository(repo)?;
        let st = self.state();
        r.presented_to
            .iter()
            .copied()
            .find(|s| {
                st.conns.contains_key(s)
                    && st.inv.get::<Server>(*s).is_ok_and(|x| x.power_state == ServerPowerState::Running)
            })
            .ok_or_else(|| {
                Error::state(
                    r.object_ref(),
                    "presented to a running server",
                    "not presented to any running server",
                )
            })
    }

    /// Create an empty virtual disk in a repository. The job's result is the disk.
    pub fn create_virtual_disk(
        &self,
        repo: RepositoryId,
        name: &str,
        size_bytes: u64,
        shareable: bool,
    ) -> Result<JobHandle> {
        validate_name(name)?;
        if size_bytes == 0 {
            return Err(Error::invalid("size_bytes", "must be positive"));
        }
        let r = self.repository(repo)?;
        if r.free_bytes() < size_bytes {
            return Err(Error::InsufficientResources {
                object: r.object_ref(),
                resource: "space (bytes)".into(),
                needed: size_bytes,
                available: r.free_bytes(),
            });
        }
        let id = VirtualDiskId::new();
        let disk = VirtualDisk {
            id,
            name: name.to_owned(),
            description: String::new(),
            repository: repo,
            size_bytes,
            format: DiskFormat::Sparse,
            shareable,
            path: virtual_disk_path(repo, id),
        };
        self.state().inv.check_put(&Object::VirtualDisk(disk.clone()))?;
        let target = ObjectRef::new(ObjectKind::VirtualDisk, id);
        self.submit(
            JobSpec::new(
                "CreateVirtualDisk",
                &format!("Create virtual disk {name}"),
                vec![target, r.object_ref()],
            )
            .step("create file", move |ctx| {
                let server = ctx.mgr.storage_server(repo)?;
                ctx.will_do(Undo::Storage(StorageUndo::DeleteFile {
                    server: server.0,
                    path: disk.path.clone(),
                }))?;
                super::file_storage(&*ctx.hv(server)?)?.create_file(&disk.path, size_bytes)?;
                ctx.tx(|tx| {
                    tx.put(Object::VirtualDisk(disk))?;
                    add_used(tx, repo, size_bytes as i64)
                })?;
                ctx.set_result(target);
                Ok(())
            }),
        )
    }

    /// Import an ISO image of `size_bytes` into a repository (from `source_url`). The result is the ISO.
    pub fn import_iso(&self, repo: RepositoryId, name: &str, size_bytes: u64) -> Result<JobHandle> {
        validate_name(name)?;
        let r = self.repository(repo)?;
        let id = VirtualCdromId::new();
        let iso = VirtualCdrom {
            id,
            name: name.to_owned(),
            description: String::new(),
            repository: repo,
            size_bytes,
            path: iso_path(repo, id),
        };
        self.state().inv.check_put(&Object::VirtualCdrom(iso.clone()))?;
        let target = ObjectRef::new(ObjectKind::VirtualCdrom, id);
        self.submit(
            JobSpec::new("ImportIso", &format!("Import ISO {name}"), vec![target, r.object_ref()]).step(
                "store file",
                move |ctx| {
                    let server = ctx.mgr.storage_server(repo)?;
                    ctx.will_do(Undo::Storage(StorageUndo::DeleteFile {
                        server: server.0,
                        path: iso.path.clone(),
                    }))?;
                    super::file_storage(&*ctx.hv(server)?)?.create_file(&iso.path, size_bytes)?;
                    ctx.tx(|tx| {
                        tx.put(Object::VirtualCdrom(iso))?;
                        add_used(tx, repo, size_bytes as i64)
                    })?;
                    ctx.set_result(target);
                    Ok(())
                },
            ),
        )
    }

    /// Store a PV/PVH boot kernel and its initial ramdisk in a repository under `name`, copied from
    /// files on the server the repository is presented to (see [`kernel_paths`] for where they
    /// land; VMs boot them through [`PvKernel`]). The job's result is the repository.
    pub fn import_kernel(
        &self,
        repo: RepositoryId,
        name: &str,
        kernel_source: &str,
        initrd_source: Option<&str>,
    ) -> Result<JobHandle> {
        validate_name(name)?;
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::invalid("name", "a kernel name is one path component"));
        }
        for p in std::iter::once(kernel_source).chain(initrd_source) {
            if !p.starts_with('/') {
                return Err(Error::invalid("source", format!("{p:?} is not an absolute path on the server")));
            }
        }
        let r = self.repository(repo)?;
        let (kernel, initrd) = kernel_paths(repo, name);
        let mut files = vec![(kernel_source.to_owned(), kernel)];
        if let Some(i) = initrd_source {
            files.push((i.to_owned(), initrd));
        }
        let target = r.object_ref();
        self.submit(
            JobSpec::new("ImportKernel", &format!("Import kernel {name} into {}", r.name), vec![target])
                .step("copy files", move |ctx| {
                    let server = ctx.mgr.storage_server(repo)?;
                    let hv = ctx.hv(server)?;
                    for (from, to) in &files {
                        ctx.will_do(Undo::Storage(StorageUndo::DeleteFile {
                            server: server.0,
                            path: to.clone(),
                        }))?;
                        super::file_storage(&*hv)?.copy_file(from, to)?;
                    }
                    ctx.set_result(target);
                    Ok(())
                }),
        )
    }

    /// Create a template in a repository from a configuration and existing disks of that repository.
    pub fn create_template(
        &self,
        repo: RepositoryId,
        name: &str,
        config: VmConfig,
        disks: Vec<VirtualDiskId>,
    ) -> Result<JobHandle> {
        let t = Template {
            id: TemplateId::new(),
            name: name.to_owned(),
            description: String::new(),
            repository: repo,
            config,
            disks,
            from_assembly: None,
            from_vm: None,
        };
        for d in &t.disks {
            if self.get::<VirtualDisk>(*d)?.repository != repo {
                return Err(Error::invalid("disks", "template disks must be in the template's repository"));
            }
        }
        self.create_object(Object::Template(t))
    }

    /// Delete a virtual disk (file and record); it must not be used by a VM or template.
    pub fn delete_virtual_disk(&self, disk: VirtualDiskId) -> Result<JobHandle> {
        let d = self.get::<VirtualDisk>(disk)?;
        let r = d.object_ref();
        self.read(|inv| inv.check_remove(r))?;
        let repo = d.repository;
        self.submit(
            JobSpec::new("DeleteVirtualDisk", &format!("Delete virtual disk {}", d.name), vec![r]).step(
                "delete",
                move |ctx| {
                    ctx.tx(|tx| {
                        tx.remove(r)?;
                        add_used(tx, repo, -(d.size_bytes as i64))
                    })?;
                    // The record is gone; the file follows (a failure here leaves an orphan file only).
                    let server = ctx.mgr.storage_server(repo)?;
                    super::file_storage(&*ctx.hv(server)?)?.delete_file(&d.path)
                },
            ),
        )
    }
}

pub(crate) fn add_used(tx: &mut super::jobs::Tx<'_>, repo: RepositoryId, delta: i64) -> Result<()> {
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
