//! Rebuilding a lost manager database from the servers and the repositories they mount.
//!
//! The inventory of storage lives in the repositories: each object ovm keeps there has a
//! configuration file ([`super::config_files`]). A new manager (an empty database) takes the
//! servers over, reads what each mounts, registers the file servers again, and makes the
//! repositories, disks, ISOs, assemblies, templates and VMs from their files, with their ids;
//! the domains running on the servers say where VMs run. What cannot be recovered is reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::config_files::parse_repository;
use super::file_servers::mount_source;
use super::{repository_path, FileServerSpec};
use crate::driver::{MountSource, RepositoryFile};
use crate::import::vmcfg;
use crate::manager::jobs::JobSpec;
use crate::manager::{lock, Manager};
use crate::model::*;
use crate::{Error, Result};

/// A server to rebuild from: its address and its agent password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLogin {
    /// Address, as it was discovered.
    pub address: String,
    /// Agent password.
    pub password: String,
}

/// What [`Manager::rebuild_from_servers`] recovered, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebuildReport {
    /// The servers taken over.
    pub servers: Vec<ServerId>,
    /// The repositories recovered.
    pub repositories: Vec<RepositoryId>,
    /// Objects recovered from configuration files (repositories included).
    pub objects: usize,
    /// VMs found running, and where.
    pub running: Vec<(VmId, ServerId)>,
    /// What could not be recovered, one sentence each.
    pub not_recovered: Vec<String>,
}

/// A file of a repository, with its text if it is a configuration file.
struct Listed {
    path: String,
    size_bytes: u64,
    config: Option<String>,
}

/// What one repository holds, as read from the first server that mounts it.
struct Found {
    source: MountSource,
    servers: Vec<ServerId>,
    files: Vec<Listed>,
}

/// The files of the repository mounted at `mount_point`, with the text of its configuration files.
fn list(fs: &dyn crate::driver::FileStoragePlugin, mount_point: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for RepositoryFile { path, size_bytes } in fs.list_repository(mount_point)? {
        let config =
            if path.ends_with(".cfg") { fs.read_config(&format!("{mount_point}/{path}"))? } else { None };
        out.push(Listed { path, size_bytes, config });
    }
    Ok(out)
}

impl Manager {
    /// Rebuild this manager's inventory — which must be empty, as after its database was lost —
    /// from `servers` and the repositories they mount: each server is taken over with its agent
    /// password ([`Manager::take_over_server`]); the file servers behind its repositories are
    /// registered again; repositories, virtual disks, ISOs, assemblies, templates and VMs are made
    /// from their configuration files, with their former ids; VMs whose domains run on a server
    /// are marked running there. Server pools, networks and anti-affinity groups are not kept in
    /// repositories: VMs come back outside any pool and unconnected, and the report says so.
    pub fn rebuild_from_servers(&self, servers: &[ServerLogin]) -> Result<RebuildReport> {
        let occupied = self.read(|inv| {
            [ObjectKind::Server, ObjectKind::Repository, ObjectKind::Vm, ObjectKind::Template]
                .into_iter()
                .any(|k| inv.count(k) > 0)
        });
        if occupied {
            return Err(Error::conflict("the inventory is not empty: rebuild into a new manager database"));
        }
        if servers.is_empty() {
            return Err(Error::invalid("servers", "no server to rebuild from"));
        }
        let mut report = RebuildReport::default();
        // A server that cannot be taken over (a wrong password, down) is reported; the others
        // are rebuilt from (one of them may mount the same repositories).
        let mut first_error = None;
        for s in servers {
            let taken = self.take_over_server(&s.address, &s.password).and_then(|j| j.wait(None));
            match taken.map(|job| job.result) {
                Ok(Some(id)) => report.servers.push(ServerId(id.id)),
                Ok(None) => {
                    report.not_recovered.push(format!("server {}: taken over without a record", s.address))
                }
                Err(e) => {
                    report.not_recovered.push(format!("server {}: not taken over: {e}", s.address));
                    first_error.get_or_insert(e);
                }
            }
        }
        if report.servers.is_empty() {
            return Err(first_error.unwrap_or_else(|| Error::invalid("servers", "no server was taken over")));
        }
        let servers = report.servers.clone();
        let found = self.read_repositories(&servers, &mut report)?;
        let file_systems = self.register_file_servers(&found, &mut report);
        let shared = std::sync::Arc::new(std::sync::Mutex::new(report));
        let shared2 = shared.clone();
        let spec =
            JobSpec::new("RebuildInventory", "Rebuild the inventory from the repositories", Vec::new()).step(
                "recover objects",
                move |ctx| {
                    let mut report = lock(&shared2);
                    let plan = plan_objects(ctx.mgr, &found, &file_systems, &mut report)?;
                    ctx.tx(|tx| {
                        for obj in plan {
                            let what = format!("{} {:?}", obj.kind(), obj.name());
                            let r = obj.object_ref();
                            match tx.inv.check_put(&obj) {
                                Ok(()) => {
                                    tx.put(obj)?;
                                    report.objects += 1;
                                    if r.kind == ObjectKind::Repository {
                                        report.repositories.push(RepositoryId(r.id));
                                    }
                                }
                                Err(e) => report.not_recovered.push(format!("{what}: {e}")),
                            }
                        }
                        Ok(())
                    })?;
                    Ok(())
                },
            );
        let job = self.submit(spec)?.wait(None)?;
        if let Some(e) = job.error {
            return Err(e);
        }
        let mut report = std::mem::take(&mut *lock(&shared));
        self.mark_running(&mut report)?;
        Ok(report)
    }

    /// The repositories the servers mount, with their files (read once per repository).
    fn read_repositories(
        &self,
        servers: &[ServerId],
        report: &mut RebuildReport,
    ) -> Result<BTreeMap<RepositoryId, Found>> {
        let mut found: BTreeMap<RepositoryId, Found> = BTreeMap::new();
        for s in servers {
            let hv = self.hypervisor(*s)?;
            let Some(fs) = hv.file_storage() else { continue };
            for m in fs.mounts()? {
                let Some(repo) = m
                    .mount_point
                    .strip_prefix("/OVS/Repositories/")
                    .and_then(|id| uuid::Uuid::parse_str(id).ok())
                    .map(RepositoryId)
                else {
                    report.not_recovered.push(format!("mount {} is not a repository's", m.mount_point));
                    continue;
                };
                if let Some(f) = found.get_mut(&repo) {
                    f.servers.push(*s);
                    continue;
                }
                match list(fs, &m.mount_point) {
                    Ok(files) => {
                        found.insert(repo, Found { source: m.source, servers: vec![*s], files });
                    }
                    Err(e) => report.not_recovered.push(format!("repository at {}: {e}", m.mount_point)),
                }
            }
        }
        Ok(found)
    }

    /// Register each file server behind the repositories again, and find each repository's file
    /// system among what it offers.
    fn register_file_servers(
        &self,
        found: &BTreeMap<RepositoryId, Found>,
        report: &mut RebuildReport,
    ) -> HashMap<RepositoryId, FileSystemId> {
        let mut out = HashMap::new();
        for (repo, f) in found {
            let names = f
                .files
                .iter()
                .find(|x| x.path == "repository.cfg")
                .and_then(|x| x.config.as_deref())
                .and_then(|t| parse_repository(t).ok())
                .map(|r| (r.file_server, r.file_system));
            let existing = self.list::<FileSystem>(|_| true).into_iter().find(|fs| {
                let FileSystemLocation::FileServer(id) = fs.location else { return false };
                self.get::<FileServer>(id)
                    .is_ok_and(|srv| same_source(&mount_source(&srv, &fs.path), &f.source))
            });
            let fs = match existing {
                Some(fs) => Some(fs.id),
                None => {
                    let name = names.as_ref().map(|n| n.0.clone()).unwrap_or_else(|| default_name(&f.source));
                    let spec = match &f.source {
                        MountSource::Nfs { host, .. } => {
                            Some(FileServerSpec::nfs(&name, host, f.servers.clone()))
                        }
                        MountSource::Local { .. } => Some(FileServerSpec::local(&name, f.servers[0])),
                        MountSource::External { plugin, host, .. } => {
                            Some(FileServerSpec::external(&name, plugin, host, f.servers.clone()))
                        }
                    };
                    let registered =
                        spec.map(|s| self.register_file_server(s).and_then(|j| j.wait(None))).transpose();
                    if let Err(e) = registered {
                        report.not_recovered.push(format!("file server of repository {repo}: {e}"));
                    }
                    self.list::<FileSystem>(|_| true)
                        .into_iter()
                        .find(|fs| {
                            let FileSystemLocation::FileServer(id) = fs.location else { return false };
                            self.get::<FileServer>(id)
                                .is_ok_and(|srv| same_source(&mount_source(&srv, &fs.path), &f.source))
                        })
                        .map(|fs| fs.id)
                }
            };
            match fs {
                Some(id) => {
                    out.insert(*repo, id);
                }
                None => report
                    .not_recovered
                    .push(format!("repository {repo}: its file system was not found again")),
            }
        }
        out
    }

    /// Mark the recovered VMs whose domains run on the servers.
    fn mark_running(&self, report: &mut RebuildReport) -> Result<()> {
        let mut running = Vec::new();
        for s in report.servers.clone() {
            let hv = self.hypervisor(s)?;
            for d in hv.list_domains()? {
                let Some(vm) = d.uuid else { continue };
                if d.domid == 0 {
                    continue;
                }
                if self.get::<Vm>(vm).is_ok() {
                    running.push((vm, s, d.domid));
                } else {
                    report.not_recovered.push(format!(
                        "domain {} (domid {}) on server {s} has no configuration in any repository",
                        d.name, d.domid
                    ));
                }
            }
        }
        if running.is_empty() {
            return Ok(());
        }
        let list = running.clone();
        let spec =
            JobSpec::new("RebuildInventory", "Mark the VMs that run", Vec::new()).step("mark", move |ctx| {
                ctx.tx(|tx| {
                    for (vm, server, domid) in &list {
                        tx.edit::<Vm>(*vm, |v| {
                            v.server = Some(*server);
                            v.power_state = PowerState::Running;
                            v.domid = Some(*domid);
                        })?;
                    }
                    Ok(())
                })
            });
        let job = self.submit(spec)?.wait(None)?;
        if let Some(e) = job.error {
            return Err(e);
        }
        report.running = running.into_iter().map(|(v, s, _)| (v, s)).collect();
        Ok(())
    }
}

fn same_source(a: &MountSource, b: &MountSource) -> bool {
    match (a, b) {
        (MountSource::Nfs { host: h1, export: e1, .. }, MountSource::Nfs { host: h2, export: e2, .. }) => {
            h1 == h2 && e1.trim_end_matches('/') == e2.trim_end_matches('/')
        }
        _ => a == b,
    }
}

fn default_name(source: &MountSource) -> String {
    match source {
        MountSource::Nfs { host, .. } => format!("nfs-{host}"),
        MountSource::Local { path } => format!("local-{}", path.trim_start_matches('/').replace('/', "-")),
        MountSource::External { plugin, host, .. } => format!("{plugin}-{host}"),
    }
}

/// The objects of every repository, in an order the inventory accepts (repositories, disks and
/// ISOs, assemblies, templates, VMs).
fn plan_objects(
    mgr: &Manager,
    found: &BTreeMap<RepositoryId, Found>,
    file_systems: &HashMap<RepositoryId, FileSystemId>,
    report: &mut RebuildReport,
) -> Result<Vec<Object>> {
    let mut repos = Vec::new();
    let mut media = Vec::new();
    let mut assemblies = Vec::new();
    let mut templates = Vec::new();
    let mut vms = Vec::new();
    for (repo, f) in found {
        let Some(fs) = file_systems.get(repo) else { continue };
        let fs = mgr.get::<FileSystem>(*fs)?;
        let root = repository_path(*repo);
        let sizes: HashMap<String, u64> =
            f.files.iter().map(|x| (format!("{root}/{}", x.path), x.size_bytes)).collect();
        let mut used = 0u64;
        let mut described = BTreeSet::new();
        let mut meta = None;
        for file in &f.files {
            let Some(text) = &file.config else { continue };
            let full = format!("{root}/{}", file.path);
            described.insert(full.clone());
            let parsed: Result<Option<Object>> = (|| {
                Ok(Some(match classify(&file.path) {
                    Kind::Repository => {
                        meta = Some(parse_repository(text)?);
                        return Ok(None);
                    }
                    Kind::Vm => Object::Vm(vmcfg::parse_vm(text)?),
                    Kind::Template => Object::Template(vmcfg::parse_template(text)?),
                    Kind::Assembly => Object::Assembly(vmcfg::parse_assembly(text)?),
                    Kind::Iso => Object::VirtualCdrom(vmcfg::parse_iso(text)?),
                    Kind::Disk => Object::VirtualDisk(vmcfg::parse_disk(text)?),
                }))
            })();
            match parsed {
                Ok(None) => {}
                Ok(Some(obj)) => {
                    // A configuration must describe an object of this repository, in its own place
                    // (a copy left elsewhere, or one of another repository, is not trusted).
                    let placed = match &obj {
                        Object::Vm(v) => v.repository == Some(*repo),
                        Object::Template(t) => t.repository == *repo,
                        Object::Assembly(a) => a.repository == *repo,
                        Object::VirtualDisk(d) => d.repository == *repo,
                        Object::VirtualCdrom(c) => c.repository == *repo,
                        _ => false,
                    } && super::config_files::file_of(&obj).is_some_and(|(_, p)| p == full);
                    if !placed {
                        report.not_recovered.push(format!(
                            "{full}: describes {} {:?} of another place",
                            obj.kind(),
                            obj.name()
                        ));
                        continue;
                    }
                    // A disk or an ISO needs its file, of the size it says.
                    let data = match &obj {
                        Object::VirtualDisk(d) => Some((d.path.clone(), d.size_bytes)),
                        Object::VirtualCdrom(c) => Some((c.path.clone(), c.size_bytes)),
                        _ => None,
                    };
                    // Boot files a configuration names are described by it.
                    let boot = match &obj {
                        Object::Vm(v) => v.config.pv_kernel.clone(),
                        Object::Template(t) => t.config.pv_kernel.clone(),
                        _ => None,
                    };
                    if let Some(k) = boot {
                        for p in std::iter::once(k.kernel).chain(k.initrd) {
                            // A template's own boot files (in its directory) were counted as used
                            // when it was imported.
                            let own = format!("{root}/Templates/");
                            if matches!(obj, Object::Template(_))
                                && p.starts_with(&own)
                                && !described.contains(&p)
                            {
                                used += sizes.get(&p).copied().unwrap_or(0);
                            }
                            described.insert(p);
                        }
                    }
                    if let Some((path, size)) = data {
                        described.insert(path.clone());
                        match sizes.get(&path) {
                            Some(_) => used += size,
                            None => {
                                report.not_recovered.push(format!(
                                    "{} {:?}: its file {path} is missing",
                                    obj.kind(),
                                    obj.name()
                                ));
                                continue;
                            }
                        }
                    }
                    match obj {
                        Object::Vm(mut v) => {
                            if v.pool.take().is_some() {
                                report.not_recovered.push(format!(
                                    "VM {:?}: its server pool (pools are not kept in repositories)",
                                    v.name
                                ));
                            }
                            if v.anti_affinity_group.take().is_some() {
                                report
                                    .not_recovered
                                    .push(format!("VM {:?}: its anti-affinity group", v.name));
                            }
                            for n in v.config.vnics.iter_mut().filter(|n| n.network.is_some()) {
                                if n.network.is_some_and(|id| mgr.get::<Network>(id).is_err()) {
                                    report
                                        .not_recovered
                                        .push(format!("VM {:?}: the network of VNIC {}", v.name, n.mac));
                                    n.network = None;
                                }
                            }
                            vms.push(Object::Vm(v));
                        }
                        Object::Template(t) => templates.push(Object::Template(t)),
                        Object::Assembly(a) => assemblies.push(Object::Assembly(a)),
                        other => media.push(other),
                    }
                }
                Err(e) => report.not_recovered.push(format!("{}: {e}", file.path)),
            }
        }
        for file in &f.files {
            let full = format!("{root}/{}", file.path);
            if file.config.is_none() && !described.contains(&full) && !file.path.starts_with("Kernels/") {
                report.not_recovered.push(format!("{full}: no configuration file describes it"));
            }
        }
        let meta = meta.unwrap_or_else(|| {
            report.not_recovered.push(format!("repository {repo}: no repository.cfg (named after its id)"));
            RepositoryMeta {
                name: format!("repository-{}", repo.0.simple()),
                description: String::new(),
                capacity_bytes: fs.size_bytes,
                file_server: String::new(),
                file_system: String::new(),
            }
        });
        repos.push(Object::Repository(Repository {
            id: *repo,
            name: meta.name,
            description: meta.description,
            backing: RepositoryBacking::FileSystem(fs.id),
            owner_pool: None,
            presented_to: f.servers.clone(),
            mounts: f
                .servers
                .iter()
                .map(|s| RepositoryMount { server: *s, state: MountState::Mounted, message: String::new() })
                .collect(),
            initialized: true,
            capacity_bytes: meta.capacity_bytes.max(used),
            used_bytes: used,
        }));
    }
    Ok(repos.into_iter().chain(media).chain(assemblies).chain(templates).chain(vms).collect())
}

/// What a repository's configuration file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepositoryMeta {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) capacity_bytes: u64,
    pub(crate) file_server: String,
    pub(crate) file_system: String,
}

enum Kind {
    Repository,
    Vm,
    Template,
    Assembly,
    Iso,
    Disk,
}

fn classify(path: &str) -> Kind {
    if path == "repository.cfg" {
        Kind::Repository
    } else if path.starts_with("VirtualMachines/") && path.ends_with("/vm.cfg") {
        Kind::Vm
    } else if path.starts_with("Templates/") && path.ends_with("/vm.cfg") {
        Kind::Template
    } else if path.starts_with("Assemblies/") && path.ends_with("/assembly.cfg") {
        Kind::Assembly
    } else if path.starts_with("ISOs/") {
        Kind::Iso
    } else {
        Kind::Disk
    }
}
