//! Cloning: a VM from a template or from another VM, and a template from a VM; their disks are copied.

use super::fill_macs;
use crate::job::{StorageUndo, Undo};
use crate::manager::jobs::{JobSpec, StepCtx, Tx};
use crate::manager::storage::{add_used, virtual_disk_path};
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// Where a clone goes, and how each of its disks is made (Oracle VM's clone customizer).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloneOptions {
    /// Pool of the new VM.
    pub pool: Option<PoolId>,
    /// Repository for the cloned disks (default: the source's).
    pub repository: Option<RepositoryId>,
    /// Networks for the new VNICs, replacing the source's networks in order.
    pub networks: Option<Vec<Option<NetworkId>>>,
    /// How the virtual disk at a slot is cloned; a slot not named is copied into
    /// [`repository`](Self::repository).
    pub disks: Vec<(u8, DiskClone)>,
}

/// How one virtual disk of a clone is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DiskClone {
    /// Copy it into a repository (default: the clone's): a thin clone (reflink) where the file
    /// system can, else a copy that keeps the holes.
    Copy {
        /// Where the copy goes.
        repository: Option<RepositoryId>,
    },
    /// Map the source's disk itself (it must be shareable).
    Share,
}

/// The virtual disks a configuration maps, in mapping order.
fn virtual_disks(config: &VmConfig) -> Vec<VirtualDiskId> {
    config
        .disks
        .iter()
        .filter_map(|d| if let DiskTarget::VirtualDisk(x) = d.target { Some(x) } else { None })
        .collect()
}

/// The disks a clone copies: each source disk, the id of its copy and the repository it goes to.
struct DiskCopies {
    source: Vec<VirtualDiskId>,
    new: Vec<VirtualDiskId>,
    into: Vec<RepositoryId>,
}

impl DiskCopies {
    /// A fresh id for the copy of each of `source`, going to `repo` unless `opts` says otherwise
    /// for its slot in `config`; shared disks are not copied. Checks the choices.
    fn plan(mgr: &Manager, config: &VmConfig, repo: RepositoryId, opts: &CloneOptions) -> Result<Self> {
        let mut copies = DiskCopies { source: Vec::new(), new: Vec::new(), into: Vec::new() };
        let mut seen = std::collections::BTreeSet::new();
        for (slot, _) in &opts.disks {
            if !seen.insert(*slot) {
                return Err(Error::invalid("disks", format!("slot {slot} is named twice")));
            }
            let ok = config
                .disks
                .iter()
                .any(|d| d.slot == *slot && matches!(d.target, DiskTarget::VirtualDisk(_)));
            if !ok {
                return Err(Error::invalid("disks", format!("slot {slot} maps no virtual disk")));
            }
        }
        for d in &config.disks {
            let DiskTarget::VirtualDisk(src) = d.target else { continue };
            let how = opts.disks.iter().find(|(s, _)| *s == d.slot).map(|(_, h)| *h);
            match how {
                Some(DiskClone::Share) => {
                    let disk = mgr.get::<VirtualDisk>(src)?;
                    if !disk.shareable {
                        return Err(Error::invalid(
                            "disks",
                            format!("virtual disk {:?} (slot {}) is not shareable", disk.name, d.slot),
                        ));
                    }
                }
                Some(DiskClone::Copy { repository }) => {
                    let into = repository.unwrap_or(repo);
                    mgr.repository(into)?;
                    // A server must have the source's repository and the copy's mounted together.
                    mgr.storage_server_for(&[mgr.get::<VirtualDisk>(src)?.repository, into])?;
                    copies.add(src, into);
                }
                None => {
                    mgr.storage_server_for(&[mgr.get::<VirtualDisk>(src)?.repository, repo])?;
                    copies.add(src, repo)
                }
            }
        }
        Ok(copies)
    }

    /// Every disk of `source`, copied into `repo`.
    fn all(source: Vec<VirtualDiskId>, repo: RepositoryId) -> Self {
        let mut copies = DiskCopies { source: Vec::new(), new: Vec::new(), into: Vec::new() };
        for s in source {
            copies.add(s, repo);
        }
        copies
    }

    fn add(&mut self, src: VirtualDiskId, into: RepositoryId) {
        self.source.push(src);
        self.new.push(VirtualDiskId::new());
        self.into.push(into);
    }

    /// Add one step per disk to `spec`, copying it as `{name}-disk{n}`.
    fn steps(&self, mut spec: JobSpec, name: &str) -> JobSpec {
        for (i, ((src, dst), into)) in self.source.iter().zip(&self.new).zip(&self.into).enumerate() {
            let (src, dst, into) = (*src, *dst, *into);
            let disk_name = format!("{name}-disk{}", i + 1);
            spec = spec.step(&format!("clone disk {}", i + 1), move |ctx| {
                clone_disk(ctx, src, dst, into, &disk_name)
            });
        }
        spec
    }

    /// Point the disk mappings of `config` at the copies.
    fn remap(&self, config: &mut VmConfig) {
        for d in &mut config.disks {
            if let DiskTarget::VirtualDisk(old) = d.target {
                if let Some(pos) = self.source.iter().position(|x| *x == old) {
                    d.target = DiskTarget::VirtualDisk(self.new[pos]);
                }
            }
        }
    }
}

impl Manager {
    /// Create a VM by cloning a template (its disks are copied, MACs freshly allocated).
    /// The job's result is the new VM.
    pub fn clone_template(&self, template: TemplateId, name: &str, opts: CloneOptions) -> Result<JobHandle> {
        let t = self.get::<Template>(template)?;
        self.clone_into_vm(&t.name, t.object_ref(), t.repository, t.config.clone(), name, opts)
    }

    /// Clone a stopped VM into a new VM. The job's result is the new VM.
    pub fn clone_vm(&self, vm: VmId, name: &str, opts: CloneOptions) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Start)?;
        let repo =
            v.repository.ok_or_else(|| Error::invalid("vm", "the VM has no repository to clone from"))?;
        let mut opts = opts;
        if opts.pool.is_none() {
            opts.pool = v.pool;
        }
        self.clone_into_vm(&v.name, v.object_ref(), repo, v.config.clone(), name, opts)
    }

    #[allow(clippy::too_many_arguments)]
    fn clone_into_vm(
        &self,
        source_name: &str,
        source: ObjectRef,
        source_repo: RepositoryId,
        mut config: VmConfig,
        name: &str,
        opts: CloneOptions,
    ) -> Result<JobHandle> {
        validate_name(name)?;
        if self.get_by_name::<Vm>(name).is_ok() {
            return Err(Error::conflict(format!("a Vm named {name:?} already exists")));
        }
        let repo = opts.repository.unwrap_or(source_repo);
        self.repository(repo)?;
        if let Some(p) = opts.pool {
            self.pool(p)?;
        }
        if let Some(nets) = &opts.networks {
            config.vnics = nets.iter().map(|n| Vnic { mac: String::new(), network: *n }).collect();
        } else {
            for n in &mut config.vnics {
                n.mac.clear();
            }
        }
        let vm_id = VmId::new();
        let target = ObjectRef::new(ObjectKind::Vm, vm_id);
        let mut spec =
            JobSpec::new("CloneVm", &format!("Clone {source_name} to VM {name}"), vec![target, source]);
        let copies = DiskCopies::plan(self, &config, repo, &opts)?;
        spec = copies.steps(spec, name);
        let name = name.to_owned();
        spec = spec.step("create VM", move |ctx| {
            let range = ctx.mgr.mac_range();
            ctx.tx(|tx| {
                copies.remap(&mut config);
                fill_macs(tx.inv, range, &mut config)?;
                let vm = Vm {
                    id: vm_id,
                    name: name.clone(),
                    description: String::new(),
                    config: config.clone(),
                    repository: Some(repo),
                    pool: opts.pool,
                    server: None,
                    power_state: PowerState::Stopped,
                    domid: None,
                    anti_affinity_group: None,
                };
                tx.put(Object::Vm(vm))
            })?;
            ctx.set_result(target);
            Ok(())
        });
        self.submit(spec)
    }

    /// Make a template from a stopped VM (its disks are copied). The job's result is the template.
    pub fn vm_to_template(&self, vm: VmId, name: &str) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Start)?;
        validate_name(name)?;
        let repo = v.repository.ok_or_else(|| Error::invalid("vm", "the VM has no repository"))?;
        let copies = DiskCopies::all(virtual_disks(&v.config), repo);
        let tid = TemplateId::new();
        let target = ObjectRef::new(ObjectKind::Template, tid);
        let mut spec = JobSpec::new(
            "VmToTemplate",
            &format!("Make template {name} from {}", v.name),
            vec![target, v.object_ref()],
        );
        spec = copies.steps(spec, name);
        let name = name.to_owned();
        let mut config = v.config.clone();
        spec = spec.step("create template", move |ctx| {
            copies.remap(&mut config);
            // A template's MACs are placeholders (each clone gets fresh ones), distinct because a
            // configuration never repeats a MAC.
            for (i, n) in config.vnics.iter_mut().enumerate() {
                n.mac = crate::model::format_mac(i as u64);
            }
            ctx.tx(|tx| {
                tx.put(Object::Template(Template {
                    id: tid,
                    name: name.clone(),
                    description: String::new(),
                    repository: repo,
                    config: config.clone(),
                    disks: copies.new.clone(),
                    from_assembly: None,
                    from_vm: Some(vm),
                }))
            })?;
            ctx.set_result(target);
            Ok(())
        });
        self.submit(spec)
    }
}

fn clone_disk(
    ctx: &StepCtx<'_>,
    src: VirtualDiskId,
    dst: VirtualDiskId,
    repo: RepositoryId,
    name: &str,
) -> Result<()> {
    let source = ctx.mgr.get::<VirtualDisk>(src)?;
    // A server that has both the source's repository and the copy's mounted.
    let server = ctx.mgr.storage_server_for(&[source.repository, repo])?;
    let path = virtual_disk_path(repo, dst);
    ctx.message(format!("copying {} to {name}", source.name));
    ctx.will_do(Undo::Storage(StorageUndo::DeleteFile { server: server.0, path: path.clone() }))?;
    crate::manager::file_storage(&*ctx.hv(server)?)?.copy_file(&source.path, &path)?;
    ctx.tx(|tx: &mut Tx<'_>| {
        let mut dname = name.to_owned();
        while tx.inv.virtual_disks.by_name(&dname).is_some() {
            dname.push('\'');
        }
        tx.put(Object::VirtualDisk(VirtualDisk {
            id: dst,
            name: dname,
            description: format!("clone of {}", source.name),
            repository: repo,
            size_bytes: source.size_bytes,
            format: source.format,
            shareable: false,
            path,
        }))?;
        add_used(tx, repo, source.size_bytes as i64)
    })
}
