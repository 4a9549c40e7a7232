//! Configuration files kept current in the repositories, so that a lost manager database can be
//! rebuilt from what the servers mount ([`Manager::rebuild_from_servers`]).
//!
//! Every object that lives in a repository has a file there, in the `vm.cfg` syntax
//! ([`crate::import::vmcfg`]):
//!
//! | object | file |
//! |---|---|
//! | repository | `repository.cfg` at the top of its file system |
//! | VM | `VirtualMachines/<id>/vm.cfg` |
//! | template | `Templates/<id>/vm.cfg` |
//! | assembly | `Assemblies/<id>/assembly.cfg` |
//! | virtual disk, ISO | beside its file, with `.cfg` appended |
//!
//! At the end of each job, the files of the objects the job wrote are brought up to date (a file
//! whose text would not change is not written again), and the files of objects it removed are
//! deleted. A file that cannot be written (its repository is not mounted on a running server) is
//! named in the job's message and written by the next job that touches the object.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use super::rebuild::RepositoryMeta;
use super::repository_path;
use crate::import::vmcfg;
use crate::manager::{lock, Manager};
use crate::model::*;

/// Where an object's file is, and a hash of the text last written there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    repo: RepositoryId,
    path: String,
    hash: Option<u64>,
}

/// The files the manager knows of, by object.
pub(crate) type Known = HashMap<ObjectRef, Written>;

/// The kinds of objects that have a configuration file.
pub(crate) fn has_file(kind: ObjectKind) -> bool {
    matches!(
        kind,
        ObjectKind::Repository
            | ObjectKind::Vm
            | ObjectKind::Template
            | ObjectKind::Assembly
            | ObjectKind::VirtualDisk
            | ObjectKind::VirtualCdrom
    )
}

/// The repository and path of an object's configuration file.
pub(crate) fn file_of(obj: &Object) -> Option<(RepositoryId, String)> {
    let dir = |repo: RepositoryId, sub: &str, id: uuid::Uuid| {
        format!("{}/{sub}/{}", repository_path(repo), id.simple())
    };
    match obj {
        Object::Repository(r) => Some((r.id, format!("{}/repository.cfg", repository_path(r.id)))),
        Object::Vm(v) => v.repository.map(|r| (r, format!("{}/vm.cfg", dir(r, "VirtualMachines", v.id.0)))),
        Object::Template(t) => {
            Some((t.repository, format!("{}/vm.cfg", dir(t.repository, "Templates", t.id.0))))
        }
        Object::Assembly(a) => {
            Some((a.repository, format!("{}/assembly.cfg", dir(a.repository, "Assemblies", a.id.0))))
        }
        Object::VirtualDisk(d) => Some((d.repository, format!("{}.cfg", d.path))),
        Object::VirtualCdrom(c) => Some((c.repository, format!("{}.cfg", c.path))),
        _ => None,
    }
}

/// The text of an object's configuration file.
pub(crate) fn text_of(inv: &Inventory, obj: &Object) -> Option<String> {
    Some(match obj {
        Object::Repository(r) => render_repository(inv, r),
        Object::Vm(v) => vmcfg::render_vm(v),
        Object::Template(t) => vmcfg::render_template(t),
        Object::Assembly(a) => vmcfg::render_assembly(a),
        Object::VirtualDisk(d) => vmcfg::render_disk(d),
        Object::VirtualCdrom(c) => vmcfg::render_iso(c),
        _ => return None,
    })
}

fn hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The files of the objects already in an inventory (their text is not known to be current).
pub(crate) fn seed(inv: &Inventory) -> Known {
    let mut known = Known::new();
    for kind in [
        ObjectKind::Repository,
        ObjectKind::Vm,
        ObjectKind::Template,
        ObjectKind::Assembly,
        ObjectKind::VirtualDisk,
        ObjectKind::VirtualCdrom,
    ] {
        for obj in inv.objects_of(kind) {
            if let Some((repo, path)) = file_of(&obj) {
                known.insert(obj.object_ref(), Written { repo, path, hash: None });
            }
        }
    }
    known
}

impl Manager {
    /// Bring the configuration files of `touched` objects up to date. Returns what could not be
    /// written.
    pub(crate) fn sync_config_files(&self, touched: &BTreeSet<ObjectRef>) -> Vec<String> {
        let mut problems = Vec::new();
        // Files of objects that are gone whose deletion failed before are tried again.
        let stale: Vec<ObjectRef> = {
            let known = lock(&self.inner.config_files);
            let st = self.state();
            known.keys().filter(|r| !st.inv.contains(**r)).take(64).copied().collect()
        };
        let mut all: BTreeSet<ObjectRef> = touched.clone();
        all.extend(stale);
        for r in all.iter().filter(|r| has_file(r.kind)) {
            let want = {
                let st = self.state();
                st.inv.get_object(*r).and_then(|o| Some((file_of(&o)?, text_of(&st.inv, &o)?)))
            };
            let before = lock(&self.inner.config_files).get(r).cloned();
            // A file no longer wanted there goes (object removed, or moved to another repository).
            if let Some(b) = &before {
                if want.as_ref().is_none_or(|((_, p), _)| *p != b.path) {
                    match self.delete_config_file(b) {
                        Ok(()) => {
                            lock(&self.inner.config_files).remove(r);
                        }
                        Err(e) => problems.push(format!("configuration file {} not deleted: {e}", b.path)),
                    }
                }
            }
            let Some(((repo, path), text)) = want else { continue };
            let h = hash(&text);
            if before.as_ref().is_some_and(|b| b.path == path && b.hash == Some(h)) {
                continue;
            }
            match self.put_config_file(repo, &path, &text) {
                Ok(()) => {
                    lock(&self.inner.config_files).insert(*r, Written { repo, path, hash: Some(h) });
                }
                Err(e) => {
                    lock(&self.inner.config_files)
                        .insert(*r, Written { repo, path: path.clone(), hash: None });
                    // A repository mounted nowhere gets its files when it is presented (that job
                    // touches it); anything else is worth saying.
                    if e.kind() != crate::ErrorKind::InvalidState {
                        problems.push(format!("configuration file {path} not written: {e}"));
                    }
                }
            }
        }
        problems
    }

    fn put_config_file(&self, repo: RepositoryId, path: &str, text: &str) -> crate::Result<()> {
        let server = self.storage_server(repo)?;
        crate::manager::file_storage(&*self.hypervisor(server)?)?.put_file(path, text.as_bytes())
    }

    fn delete_config_file(&self, w: &Written) -> crate::Result<()> {
        // A repository that is gone took its files with it.
        if self.repository(w.repo).is_err() {
            return Ok(());
        }
        let server = self.storage_server(w.repo)?;
        crate::manager::file_storage(&*self.hypervisor(server)?)?.delete_file(&w.path)
    }
}

const REPOSITORY_HEADER: &str = "# ovm repository configuration, kept current by the manager\n";

/// A repository's file: its name, description and capacity, and the names of the file server and
/// file system it was made on (a rebuilt manager registers the file server under that name).
pub(crate) fn render_repository(inv: &Inventory, r: &Repository) -> String {
    use vmcfg::Value::{Int, Str};
    let (server, fs) = match r.backing {
        RepositoryBacking::FileSystem(f) => match inv.get::<FileSystem>(f) {
            Ok(fs) => {
                let server = match fs.location {
                    FileSystemLocation::FileServer(id) => {
                        inv.get::<FileServer>(id).map(|s| s.name.clone()).unwrap_or_default()
                    }
                    FileSystemLocation::PhysicalDisk(_) => String::new(),
                };
                (server, fs.name.clone())
            }
            Err(_) => (String::new(), String::new()),
        },
        RepositoryBacking::PhysicalDisk(_) => (String::new(), String::new()),
    };
    let cfg = vmcfg::VmCfg {
        entries: vec![
            ("uuid".into(), Str(r.id.0.to_string())),
            ("OVM_simple_name".into(), Str(r.name.clone())),
            ("OVM_description".into(), Str(r.description.clone())),
            ("OVM_capacity".into(), Int(r.capacity_bytes.min(i64::MAX as u64) as i64)),
            ("OVM_file_server".into(), Str(server)),
            ("OVM_file_system".into(), Str(fs)),
        ],
    };
    format!("{REPOSITORY_HEADER}{}", cfg.render())
}

/// Read a repository's file back.
pub(crate) fn parse_repository(text: &str) -> crate::Result<RepositoryMeta> {
    let cfg = vmcfg::VmCfg::parse(text)?;
    let s = |k: &str| match cfg.get(k) {
        Some(vmcfg::Value::Str(v)) => Ok(v.clone()),
        _ => Err(crate::Error::invalid("repository.cfg", format!("no {k}"))),
    };
    let capacity_bytes = match cfg.get("OVM_capacity") {
        Some(vmcfg::Value::Int(n)) if *n >= 0 => *n as u64,
        _ => return Err(crate::Error::invalid("repository.cfg", "no OVM_capacity")),
    };
    let name = s("OVM_simple_name")?;
    validate_name(&name)?;
    Ok(RepositoryMeta {
        name,
        description: s("OVM_description")?,
        capacity_bytes,
        file_server: s("OVM_file_server")?,
        file_system: s("OVM_file_system")?,
    })
}
