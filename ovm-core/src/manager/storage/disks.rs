//! What a repository holds: virtual disks, ISO images, boot kernels and templates.

use super::{add_used, kernel_paths, virtual_disk_path};
use crate::job::{StorageUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

impl Manager {
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
                crate::manager::file_storage(&*ctx.hv(server)?)?.create_file(&disk.path, size_bytes)?;
                ctx.tx(|tx| {
                    tx.put(Object::VirtualDisk(disk))?;
                    add_used(tx, repo, size_bytes as i64)
                })?;
                ctx.set_result(target);
                Ok(())
            }),
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
                        crate::manager::file_storage(&*hv)?.copy_file(from, to)?;
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

    /// Delete a template (its record and configuration file). Its disks stay (they are objects of
    /// their own); the boot files an import stored in its directory go too, unless a VM cloned from
    /// it still boots them.
    pub fn delete_template(&self, template: TemplateId) -> Result<JobHandle> {
        let t = self.get::<Template>(template)?;
        let r = t.object_ref();
        self.read(|inv| inv.check_remove(r))?;
        let repo = t.repository;
        let own = format!("{}/Templates/{}/", super::repository_path(repo), t.id.0.simple());
        let boot: Vec<String> = t
            .config
            .pv_kernel
            .iter()
            .flat_map(|k| std::iter::once(k.kernel.clone()).chain(k.initrd.clone()))
            .filter(|p| p.starts_with(&own))
            .collect();
        self.submit(JobSpec::new("DeleteTemplate", &format!("Delete template {}", t.name), vec![r]).step(
            "delete",
            move |ctx| {
                let in_use = |inv: &Inventory, p: &str| {
                    inv.vms.iter().any(|v| {
                        v.config
                            .pv_kernel
                            .as_ref()
                            .is_some_and(|k| k.kernel == p || k.initrd.as_deref() == Some(p))
                    })
                };
                let unused: Vec<String> =
                    ctx.mgr.read(|inv| boot.iter().filter(|p| !in_use(inv, p)).cloned().collect());
                let server = ctx.mgr.storage_server(repo)?;
                let hv = ctx.hv(server)?;
                let fs = crate::manager::file_storage(&*hv)?;
                let mut freed = 0u64;
                for p in &unused {
                    freed += fs.file_size(p)?.unwrap_or(0);
                }
                ctx.tx(|tx| {
                    tx.remove(r)?;
                    add_used(tx, repo, -(freed.min(i64::MAX as u64) as i64))
                })?;
                // The record is gone; its boot files follow (a failure leaves orphan files only).
                for p in &unused {
                    fs.delete_file(p)?;
                }
                Ok(())
            },
        ))
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
                    crate::manager::file_storage(&*ctx.hv(server)?)?.delete_file(&d.path)
                },
            ),
        )
    }
}
