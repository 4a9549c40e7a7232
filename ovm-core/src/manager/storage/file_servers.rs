//! File servers registered through their Storage Connect file-system plug-in: what they offer is
//! discovered from the storage (through an admin server), never typed by hand, and refreshed.

use super::layout::LOCAL_FILE_SYSTEM_ROOT;
use crate::driver::{DiscoveredFileSystem, FileServerAccess, MountSource};
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// Settings of a file server to register.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServerSpec {
    /// Name.
    pub name: String,
    /// NFS, the local file system of its (one) admin server, or reached through an external
    /// plug-in.
    pub kind: FileServerKind,
    /// The NFS server's host name or address, as the servers reach it (empty for local); for an
    /// external plug-in, the file server as the plug-in names it.
    pub access_host: String,
    /// The servers that discover and administer it (at least one; a local file server has one).
    pub admin_servers: Vec<ServerId>,
    /// The external plug-in's name (empty for NFS and local).
    pub plugin: String,
}

impl FileServerSpec {
    /// An NFS server at `host`, administered by `admin_servers`.
    pub fn nfs(name: &str, host: &str, admin_servers: Vec<ServerId>) -> Self {
        FileServerSpec {
            name: name.to_owned(),
            kind: FileServerKind::Nfs,
            access_host: host.to_owned(),
            admin_servers,
            plugin: String::new(),
        }
    }

    /// The local file system of `server`.
    pub fn local(name: &str, server: ServerId) -> Self {
        FileServerSpec {
            name: name.to_owned(),
            kind: FileServerKind::Local,
            access_host: String::new(),
            admin_servers: vec![server],
            plugin: String::new(),
        }
    }

    /// A file server reached through the external plug-in `plugin` (installed on the admin
    /// servers and on every server its file systems are presented to), which names it `host`
    /// (what `host` means is the plug-in's; see `docs/storage-plugins.md`).
    pub fn external(name: &str, plugin: &str, host: &str, admin_servers: Vec<ServerId>) -> Self {
        FileServerSpec {
            name: name.to_owned(),
            kind: FileServerKind::External,
            access_host: host.to_owned(),
            admin_servers,
            plugin: plugin.to_owned(),
        }
    }
}

/// How an admin server reaches `fs`.
pub(crate) fn access(fs: &FileServer) -> FileServerAccess {
    match fs.kind {
        FileServerKind::Nfs => FileServerAccess::Nfs { host: fs.access_host.clone() },
        FileServerKind::Local => FileServerAccess::Local { root: LOCAL_FILE_SYSTEM_ROOT.to_owned() },
        FileServerKind::External => {
            FileServerAccess::External { plugin: fs.plugin.clone(), host: fs.access_host.clone() }
        }
    }
}

/// What a server mounts for file system `path` of `server`.
pub(crate) fn mount_source(server: &FileServer, path: &str) -> MountSource {
    match server.kind {
        FileServerKind::Nfs => {
            MountSource::Nfs { host: server.access_host.clone(), export: path.to_owned(), version: None }
        }
        FileServerKind::Local => MountSource::Local { path: path.to_owned() },
        FileServerKind::External => MountSource::External {
            plugin: server.plugin.clone(),
            host: server.access_host.clone(),
            path: path.to_owned(),
        },
    }
}

/// The record of a file system `server` offers, as discovered.
fn file_system(server: &FileServer, f: &DiscoveredFileSystem) -> FileSystem {
    let host = match server.kind {
        FileServerKind::Nfs => &server.access_host,
        FileServerKind::Local | FileServerKind::External => &server.name,
    };
    FileSystem {
        id: FileSystemId::new(),
        name: format!("{host}:{}", f.path),
        description: String::new(),
        location: FileSystemLocation::FileServer(server.id),
        path: f.path.clone(),
        size_bytes: f.total_bytes,
        free_bytes: f.free_bytes.min(f.total_bytes),
    }
}

impl Manager {
    /// Register a file server and discover its file systems, with their real sizes, through its
    /// first reachable admin server. Nothing is stored if discovery fails (an unreachable or
    /// refusing server). The job's result is the file server; its file systems are listed by
    /// [`Manager::file_systems_of`].
    pub fn register_file_server(&self, spec: FileServerSpec) -> Result<JobHandle> {
        if spec.admin_servers.is_empty() {
            return Err(Error::invalid(
                "admin_servers",
                "a file server needs an admin server to discover it",
            ));
        }
        if spec.kind == FileServerKind::Local && spec.admin_servers.len() != 1 {
            return Err(Error::invalid("admin_servers", "a local file system belongs to one server"));
        }
        match spec.kind {
            FileServerKind::Nfs => {
                MountSource::Nfs { host: spec.access_host.clone(), export: "/".into(), version: None }
                    .check()?
            }
            FileServerKind::External => {
                FileServerAccess::External { plugin: spec.plugin.clone(), host: spec.access_host.clone() }
                    .check()?
            }
            FileServerKind::Local => {}
        }
        for s in &spec.admin_servers {
            self.server(*s)?;
        }
        let fsrv = FileServer {
            id: FileServerId::new(),
            name: spec.name,
            description: String::new(),
            kind: spec.kind,
            access_host: spec.access_host,
            admin_servers: spec.admin_servers,
            refreshed: true,
            plugin: spec.plugin,
        };
        self.state().inv.check_put(&Object::FileServer(fsrv.clone()))?;
        let target = ObjectRef::new(ObjectKind::FileServer, fsrv.id);
        self.submit(
            JobSpec::new("RegisterFileServer", &format!("Register file server {}", fsrv.name), vec![target])
                .step("discover", move |ctx| {
                    let found = ctx.mgr.discover_file_systems(&fsrv)?;
                    ctx.message(format!("{} file systems", found.len()));
                    ctx.tx(|tx| {
                        tx.put(Object::FileServer(fsrv.clone()))?;
                        for f in &found {
                            tx.put(Object::FileSystem(file_system(&fsrv, f)))?;
                        }
                        Ok(())
                    })?;
                    ctx.set_result(target);
                    Ok(())
                }),
        )
    }

    /// Discover a file server's file systems again: sizes and free space are updated, new file
    /// systems are added, and vanished ones are removed (or, if a repository lives on one, kept
    /// with an Error event naming it).
    pub fn refresh_file_server(&self, id: FileServerId) -> Result<JobHandle> {
        let fsrv = self.get::<FileServer>(id)?;
        self.submit(
            JobSpec::new(
                "RefreshFileServer",
                &format!("Refresh file server {}", fsrv.name),
                vec![fsrv.object_ref()],
            )
            .step("discover", move |ctx| {
                let found = ctx.mgr.discover_file_systems(&fsrv)?;
                let known = ctx.mgr.file_systems_of(fsrv.id);
                let used: Vec<FileSystemId> = ctx
                    .mgr
                    .list::<Repository>(|r| matches!(r.backing, RepositoryBacking::FileSystem(_)))
                    .iter()
                    .filter_map(|r| match r.backing {
                        RepositoryBacking::FileSystem(f) => Some(f),
                        RepositoryBacking::PhysicalDisk(_) => None,
                    })
                    .collect();
                ctx.tx(|tx| {
                    for f in &found {
                        match known.iter().find(|k| k.path == f.path) {
                            Some(k) => tx
                                .edit::<FileSystem>(k.id, |k| {
                                    k.size_bytes = f.total_bytes;
                                    k.free_bytes = f.free_bytes.min(f.total_bytes);
                                })
                                .map(drop)?,
                            None => tx.put(Object::FileSystem(file_system(&fsrv, f)))?,
                        }
                    }
                    for k in known.iter().filter(|k| !found.iter().any(|f| f.path == k.path)) {
                        if used.contains(&k.id) {
                            tx.event(
                                k.object_ref(),
                                Severity::Error,
                                "file_system.vanished",
                                format!(
                                    "{} no longer offers {}, which holds a repository",
                                    fsrv.name, k.path
                                ),
                            );
                        } else {
                            tx.remove(k.object_ref())?;
                        }
                    }
                    tx.edit::<FileServer>(fsrv.id, |s| s.refreshed = true).map(drop)
                })
            }),
        )
    }

    /// The file systems of a file server.
    pub fn file_systems_of(&self, server: FileServerId) -> Vec<std::sync::Arc<FileSystem>> {
        self.list::<FileSystem>(|f| f.location == FileSystemLocation::FileServer(server))
    }

    /// Ask the first reachable admin server of `fsrv` what it offers.
    fn discover_file_systems(&self, fsrv: &FileServer) -> Result<Vec<DiscoveredFileSystem>> {
        let mut last = None;
        for s in &fsrv.admin_servers {
            let hv = match self.hypervisor(*s) {
                Ok(hv) => hv,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            return crate::manager::file_storage(&*hv)?.discover(&access(fsrv));
        }
        Err(last.unwrap_or_else(|| Error::invalid("admin_servers", "no admin server")))
    }
}
