//! Simulated storage: one shared file store seen by every host (as an NFS repository would be),
//! file systems that hosts mount, and iSCSI storage arrays with LUNs and access groups.
//!
//! Files are not confined to mounted file systems (a repository path is valid on every simulated
//! host); [`FileStoragePlugin::usage`] counts the files under the mount point holding a path.

use super::{SimConnection, SimOp};
use crate::driver::storage::{
    check_abs_path, check_portal, check_target, AccessGroup, ArrayAdminAccess, ArrayAnswer, ArrayManagement,
    ArrayOp, ArrayOpClient, DiscoveredFileSystem, FileServerAccess, FileStoragePlugin, FileSystemMount,
    FsUsage, IscsiSession, Lun, MountSource, RepositoryFile, MAX_CONFIG_FILE, MAX_WRITE_CHUNK,
    REPOSITORY_CONFIG, REPOSITORY_LAYOUT,
};
use crate::driver::{lock, StorageArrayPlugin, LIO_PLUGIN};
use crate::{Error, Result};

/// The largest file whose bytes the simulated storage keeps (written with `write_file_at`).
const SIM_CONTENT_LIMIT: u64 = 64 << 20;

pub(super) fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

impl SimConnection {
    fn initiator_of(name: &str) -> String {
        format!("iqn.2026-01.ovm.sim:{name}")
    }

    fn array<T>(&self, target: &str, f: impl FnOnce(&mut super::world::SimArray) -> Result<T>) -> Result<T> {
        self.op(SimOp::Storage, |st| {
            let mut arrays = lock(&self.world.inner.arrays);
            let a = arrays.get_mut(target).ok_or_else(|| {
                Error::backend(&st.name, format!("no storage array serves target {target}"))
            })?;
            f(a)
        })
    }
}

impl SimConnection {
    /// Whether this host sees LUN `id` through one of its sessions.
    pub(super) fn sees_lun(&self, id: &str) -> Result<bool> {
        let targets: Vec<String> = self.sessions()?.into_iter().map(|s| s.target).collect();
        for t in targets {
            if self.list_luns(&t)?.iter().any(|l| l.id == id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The file systems of NFS server `host` the world knows: (export, key) pairs.
    fn exports_of(&self, host: &str) -> Vec<(String, String)> {
        let prefix = format!("{host}:");
        lock(&self.world.inner.file_systems)
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(|e| (e.to_owned(), k.clone())))
            .collect()
    }

    /// Bytes used on file system `key`: the files under every mount point where a host mounts it.
    fn used_on(&self, key: &str) -> u64 {
        let mut points: Vec<String> = Vec::new();
        for h in lock(&self.world.inner.hosts).values() {
            let st = lock(&h.state);
            points.extend(st.mounts.iter().filter(|(_, s)| s.to_string() == key).map(|(m, _)| m.clone()));
        }
        points.sort();
        points.dedup();
        lock(&self.world.inner.files)
            .iter()
            .filter(|(p, _)| points.iter().any(|m| under(p, m)))
            .map(|(_, s)| s)
            .sum()
    }
}

impl FileStoragePlugin for SimConnection {
    fn discover(&self, server: &FileServerAccess) -> Result<Vec<DiscoveredFileSystem>> {
        let exports = match server {
            FileServerAccess::Nfs { host } => {
                let e = self.exports_of(host);
                if e.is_empty() {
                    return Err(Error::backend(host, "no NFS server answers there"));
                }
                e
            }
            FileServerAccess::Local { root } => {
                check_abs_path("root", root)?;
                let key = MountSource::Local { path: root.clone() }.to_string();
                lock(&self.world.inner.file_systems)
                    .entry(key.clone())
                    .or_insert(super::DEFAULT_FILE_SYSTEM_BYTES);
                vec![(root.clone(), key)]
            }
            FileServerAccess::External { plugin, host } => {
                server.check()?;
                let paths = lock(&self.world.inner.external_servers)
                    .get(&(plugin.clone(), host.clone()))
                    .cloned()
                    .ok_or_else(|| {
                        Error::backend(host, format!("plug-in {plugin} reaches no file server there"))
                    })?;
                paths
                    .into_iter()
                    .map(|path| {
                        let key = MountSource::External {
                            plugin: plugin.clone(),
                            host: host.clone(),
                            path: path.clone(),
                        }
                        .to_string();
                        (path, key)
                    })
                    .collect()
            }
        };
        self.op(SimOp::Storage, |_| Ok(()))?;
        Ok(exports
            .into_iter()
            .map(|(path, key)| {
                let total = lock(&self.world.inner.file_systems).get(&key).copied().unwrap_or_default();
                let used = self.used_on(&key);
                DiscoveredFileSystem {
                    path,
                    total_bytes: total,
                    free_bytes: total.saturating_sub(used),
                    repository: lock(&self.world.inner.markers).get(&key).cloned(),
                }
            })
            .collect())
    }

    fn mount(&self, source: &MountSource, mount_point: &str) -> Result<()> {
        source.check()?;
        check_abs_path("mount_point", mount_point)?;
        if let MountSource::Nfs { host, export, .. } = source {
            let exports = self.exports_of(host);
            if !exports.is_empty() && !exports.iter().any(|(e, _)| e == export) {
                return Err(Error::backend(host, format!("{export} is not exported")));
            }
        }
        if let MountSource::External { plugin, host, path } = source {
            let servers = lock(&self.world.inner.external_servers);
            let paths = servers.get(&(plugin.clone(), host.clone())).ok_or_else(|| {
                Error::backend(host, format!("plug-in {plugin} reaches no file server there"))
            })?;
            if !paths.contains(path) {
                return Err(Error::NotFound {
                    kind: crate::model::ObjectKind::FileSystem,
                    id: source.to_string(),
                });
            }
        }
        self.op(SimOp::Storage, |st| {
            match st.mounts.get(mount_point) {
                Some(e) if e == source => return Ok(()),
                Some(e) => {
                    return Err(Error::backend(&st.name, format!("{e} is already mounted at {mount_point}")))
                }
                None => {}
            }
            lock(&self.world.inner.file_systems)
                .entry(source.to_string())
                .or_insert(super::DEFAULT_FILE_SYSTEM_BYTES);
            st.mounts.insert(mount_point.to_owned(), source.clone());
            Ok(())
        })
    }

    fn unmount(&self, mount_point: &str) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            st.mounts.remove(mount_point);
            Ok(())
        })
    }

    fn mounts(&self) -> Result<Vec<FileSystemMount>> {
        self.op(SimOp::Storage, |st| {
            Ok(st
                .mounts
                .iter()
                .map(|(m, e)| FileSystemMount { source: e.clone(), mount_point: m.clone() })
                .collect())
        })
    }

    fn init_repository(&self, mount_point: &str, repository: &str) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            let source = st
                .mounts
                .get(mount_point)
                .ok_or_else(|| Error::backend(&st.name, format!("nothing is mounted at {mount_point}")))?;
            let mut markers = lock(&self.world.inner.markers);
            match markers.get(&source.to_string()) {
                Some(r) if r == repository => Ok(()),
                Some(r) => Err(Error::conflict(format!("{source} holds repository {r}"))),
                None => {
                    markers.insert(source.to_string(), repository.to_owned());
                    Ok(())
                }
            }
        })
    }

    fn remove_repository(&self, mount_point: &str, repository: &str) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            let source = st
                .mounts
                .get(mount_point)
                .ok_or_else(|| Error::backend(&st.name, format!("nothing is mounted at {mount_point}")))?;
            let mut markers = lock(&self.world.inner.markers);
            if markers.get(&source.to_string()).is_some_and(|r| r == repository) {
                markers.remove(&source.to_string());
            }
            Ok(())
        })
    }

    fn usage(&self, path: &str) -> Result<FsUsage> {
        self.op(SimOp::Storage, |st| {
            let (mount_point, export) =
                st.mounts.iter().filter(|(m, _)| under(path, m)).max_by_key(|(m, _)| m.len()).ok_or_else(
                    || Error::backend(&st.name, format!("no file system is mounted at {path}")),
                )?;
            let total =
                lock(&self.world.inner.file_systems).get(&export.to_string()).copied().unwrap_or_default();
            let used = lock(&self.world.inner.files)
                .iter()
                .filter(|(p, _)| under(p, mount_point))
                .map(|(_, s)| s)
                .sum();
            Ok(FsUsage { total_bytes: total, used_bytes: used })
        })
    }

    fn create_file(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            let mut files = lock(&self.world.inner.files);
            if files.contains_key(path) {
                return Err(Error::backend(&st.name, format!("{path} already exists")));
            }
            files.insert(path.to_owned(), size_bytes);
            Ok(())
        })
    }

    fn resize_file(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            let mut files = lock(&self.world.inner.files);
            let size = files
                .get_mut(path)
                .ok_or_else(|| Error::backend(&st.name, format!("{path} does not exist")))?;
            *size = size_bytes;
            Ok(())
        })
    }

    fn copy_file(&self, from: &str, to: &str) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            let mut files = lock(&self.world.inner.files);
            let size =
                *files.get(from).ok_or_else(|| Error::backend(&st.name, format!("{from} does not exist")))?;
            if files.contains_key(to) {
                return Err(Error::backend(&st.name, format!("{to} already exists")));
            }
            files.insert(to.to_owned(), size);
            Ok(())
        })
    }

    fn delete_file(&self, path: &str) -> Result<()> {
        self.op(SimOp::Storage, |_| {
            lock(&self.world.inner.files).remove(path);
            lock(&self.world.inner.contents).remove(path);
            Ok(())
        })
    }

    fn file_size(&self, path: &str) -> Result<Option<u64>> {
        self.op(SimOp::Storage, |_| Ok(lock(&self.world.inner.files).get(path).copied()))
    }

    fn write_file_at(&self, path: &str, offset: u64, data: &[u8]) -> Result<()> {
        if data.len() > MAX_WRITE_CHUNK {
            return Err(Error::invalid("data", format!("{} bytes is over the chunk limit", data.len())));
        }
        self.op(SimOp::Storage, |st| {
            let files = lock(&self.world.inner.files);
            let size =
                *files.get(path).ok_or_else(|| Error::backend(&st.name, format!("{path} does not exist")))?;
            if offset.checked_add(data.len() as u64).is_none_or(|end| end > size) {
                return Err(Error::invalid(
                    "offset",
                    format!("writing {} bytes at {offset} goes past the {size} bytes of {path}", data.len()),
                ));
            }
            // The bytes of files up to SIM_CONTENT_LIMIT are kept, so that tests can read them back.
            if size <= SIM_CONTENT_LIMIT {
                let mut contents = lock(&self.world.inner.contents);
                let c = contents.entry(path.to_owned()).or_default();
                c.resize(size as usize, 0);
                let at = offset as usize;
                c[at..at + data.len()].copy_from_slice(data);
            }
            Ok(())
        })
    }

    fn read_config(&self, path: &str) -> Result<Option<String>> {
        check_abs_path("path", path)?;
        if !path.ends_with(".cfg") {
            return Err(Error::invalid("path", format!("{path:?} is not a configuration file")));
        }
        self.op(SimOp::Storage, |_| {
            Ok(lock(&self.world.inner.contents).get(path).and_then(|c| String::from_utf8(c.clone()).ok()))
        })
    }

    fn finish_write(&self, path: &str) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            if lock(&self.world.inner.files).contains_key(path) {
                Ok(())
            } else {
                Err(Error::backend(&st.name, format!("{path} does not exist")))
            }
        })
    }

    fn put_file(&self, path: &str, contents: &[u8]) -> Result<()> {
        check_abs_path("path", path)?;
        if contents.len() > MAX_CONFIG_FILE {
            return Err(Error::invalid("contents", format!("{} bytes is over the limit", contents.len())));
        }
        self.op(SimOp::Storage, |_| {
            lock(&self.world.inner.files).insert(path.to_owned(), contents.len() as u64);
            lock(&self.world.inner.contents).insert(path.to_owned(), contents.to_vec());
            Ok(())
        })
    }

    fn list_repository(&self, mount_point: &str) -> Result<Vec<RepositoryFile>> {
        check_abs_path("mount_point", mount_point)?;
        self.op(SimOp::Storage, |_| {
            let files = lock(&self.world.inner.files);
            let prefix = format!("{}/", mount_point.trim_end_matches('/'));
            let mut out: Vec<RepositoryFile> = files
                .iter()
                .filter_map(|(p, size)| {
                    let rel = p.strip_prefix(&prefix)?;
                    let parts: Vec<&str> = rel.split('/').collect();
                    let listed = ((2..=3).contains(&parts.len()) && REPOSITORY_LAYOUT.contains(&parts[0]))
                        || rel == REPOSITORY_CONFIG;
                    if !listed || parts.iter().any(|c| c.starts_with('.')) {
                        return None;
                    }
                    Some(RepositoryFile { path: rel.to_owned(), size_bytes: *size })
                })
                .collect();
            out.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(out)
        })
    }
}

impl StorageArrayPlugin for SimConnection {
    fn initiator(&self) -> Result<String> {
        self.op(SimOp::Storage, |st| Ok(Self::initiator_of(&st.name)))
    }

    fn discover_targets(&self, portal: &str) -> Result<Vec<String>> {
        check_portal(portal)?;
        self.op(SimOp::Storage, |st| {
            let me = Self::initiator_of(&st.name);
            let arrays = lock(&self.world.inner.arrays);
            let t: Vec<String> = arrays
                .iter()
                .filter(|(_, a)| a.allowed.is_empty() || a.allowed.contains(&me))
                .map(|(t, _)| t.clone())
                .collect();
            if arrays.is_empty() {
                return Err(Error::backend(portal, "no iSCSI target answers there"));
            }
            Ok(t)
        })
    }

    fn login(&self, portal: &str, target: &str) -> Result<()> {
        check_portal(portal)?;
        check_target(target)?;
        self.op(SimOp::Storage, |st| {
            let me = Self::initiator_of(&st.name);
            match lock(&self.world.inner.arrays).get(target) {
                None => {
                    return Err(Error::backend(&st.name, format!("no storage array serves target {target}")))
                }
                Some(a) if !a.allowed.is_empty() && !a.allowed.contains(&me) => {
                    return Err(Error::backend(portal, format!("{target} refuses initiator {me}")))
                }
                Some(_) => {}
            }
            let s = IscsiSession { portal: portal.to_owned(), target: target.to_owned() };
            if !st.sessions.iter().any(|x| x.target == target) {
                st.sessions.push(s);
            }
            Ok(())
        })
    }

    fn logout(&self, _portal: &str, target: &str) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            st.sessions.retain(|t| t.target != target);
            Ok(())
        })
    }

    fn sessions(&self) -> Result<Vec<IscsiSession>> {
        self.op(SimOp::Storage, |st| Ok(st.sessions.clone()))
    }

    fn list_luns(&self, target: &str) -> Result<Vec<Lun>> {
        self.op(SimOp::Storage, |st| {
            if !st.sessions.iter().any(|t| t.target == target) {
                return Err(Error::backend(&st.name, format!("not logged in to {target}")));
            }
            let me = Self::initiator_of(&st.name);
            let arrays = lock(&self.world.inner.arrays);
            let a = arrays.get(target).ok_or_else(|| {
                Error::backend(&st.name, format!("no storage array serves target {target}"))
            })?;
            // An array without access groups presents every LUN to everyone (a generic array).
            let visible = |l: &Lun| {
                a.groups.is_empty()
                    || a.groups.values().any(|g| g.initiators.contains(&me) && g.luns.contains(&l.id))
            };
            Ok(a.luns.values().filter(|l| visible(l)).cloned().collect())
        })
    }

    fn rescan(&self, target: &str) -> Result<()> {
        self.op(SimOp::Storage, |st| {
            if st.sessions.iter().any(|t| t.target == target) {
                Ok(())
            } else {
                Err(Error::backend(&st.name, format!("not logged in to {target}")))
            }
        })
    }

    fn forget_lun(&self, _target: &str, _id: &str) -> Result<()> {
        self.op(SimOp::Storage, |_| Ok(()))
    }

    fn array_management(&self, access: &ArrayAdminAccess) -> Result<Box<dyn ArrayManagement + '_>> {
        if access.plugin != LIO_PLUGIN {
            return Err(Error::Unsupported {
                what: format!("the storage-array plug-in {:?}", access.plugin),
            });
        }
        access.check()?;
        let access = access.clone();
        Ok(Box::new(ArrayOpClient(move |call: ArrayOp| {
            let where_ = format!("{}:{}", access.host, access.port);
            let admin = lock(&self.world.inner.array_admins)
                .get(&access.host)
                .cloned()
                .ok_or_else(|| Error::backend(&where_, "no management interface answers there"))?;
            let fp = super::SimWorld::array_admin_fingerprint(&access.host);
            if access.fingerprint.as_ref().is_some_and(|f| *f != fp) {
                return Err(Error::backend(&where_, format!("the certificate {fp} is not the pinned one")));
            }
            if call == ArrayOp::Fingerprint {
                return Ok(ArrayAnswer::Fingerprint(fp));
            }
            if access.fingerprint.is_none() {
                return Err(Error::invalid(
                    "fingerprint",
                    "the management interface's certificate is not pinned",
                ));
            }
            if access.username != admin.username || access.password != admin.password {
                return Err(Error::PermissionDenied {
                    reason: format!("{where_}: the array refused the credentials"),
                });
            }
            if let Some(t) = call.target() {
                if !admin.targets.iter().any(|x| x == t) {
                    return Err(Error::NotFound {
                        kind: crate::model::ObjectKind::StorageArray,
                        id: format!("target {t}"),
                    });
                }
            }
            match call {
                ArrayOp::Targets => Ok(ArrayAnswer::Targets(admin.targets.clone())),
                call => call.apply(self),
            }
        })))
    }
}

impl ArrayManagement for SimConnection {
    fn fingerprint(&self) -> Result<String> {
        Ok(String::new())
    }

    fn targets(&self) -> Result<Vec<String>> {
        Ok(lock(&self.world.inner.arrays).keys().cloned().collect())
    }

    fn luns(&self, target: &str) -> Result<Vec<Lun>> {
        self.array(target, |a| Ok(a.luns.values().cloned().collect()))
    }

    fn create_lun(&self, target: &str, name: &str, size_bytes: u64) -> Result<Lun> {
        self.array(target, |a| {
            a.next_lun += 1;
            let lun = Lun {
                id: format!("lun{}", a.next_lun),
                name: name.to_owned(),
                size_bytes,
                thin_clone_of: None,
            };
            a.luns.insert(lun.id.clone(), lun.clone());
            Ok(lun)
        })
    }

    fn resize_lun(&self, target: &str, lun: &str, size_bytes: u64) -> Result<()> {
        self.array(target, |a| {
            let l = a.luns.get_mut(lun).ok_or_else(|| Error::backend(target, format!("no LUN {lun}")))?;
            l.size_bytes = size_bytes;
            Ok(())
        })
    }

    fn clone_lun(&self, target: &str, lun: &str, name: &str) -> Result<Lun> {
        self.array(target, |a| {
            let src = a.luns.get(lun).ok_or_else(|| Error::backend(target, format!("no LUN {lun}")))?;
            let size_bytes = src.size_bytes;
            a.next_lun += 1;
            let clone = Lun {
                id: format!("lun{}", a.next_lun),
                name: name.to_owned(),
                size_bytes,
                thin_clone_of: Some(lun.to_owned()),
            };
            a.luns.insert(clone.id.clone(), clone.clone());
            Ok(clone)
        })
    }

    fn delete_lun(&self, target: &str, lun: &str) -> Result<()> {
        self.array(target, |a| {
            // By id, or by name (as an undo names a LUN it created).
            let id = a
                .luns
                .iter()
                .find(|(id, l)| *id == lun || l.name == lun)
                .map(|(id, _)| id.clone())
                .ok_or_else(|| Error::NotFound {
                    kind: crate::model::ObjectKind::PhysicalDisk,
                    id: lun.to_owned(),
                })?;
            let lun = id.as_str();
            a.luns.remove(lun);
            for g in a.groups.values_mut() {
                g.luns.retain(|l| l != lun);
            }
            Ok(())
        })
    }

    fn access_groups(&self, target: &str) -> Result<Vec<AccessGroup>> {
        self.array(target, |a| Ok(a.groups.values().cloned().collect()))
    }

    fn create_access_group(&self, target: &str, group: &str) -> Result<()> {
        self.array(target, |a| {
            if a.groups.contains_key(group) {
                return Err(Error::conflict(format!("access group {group} exists on {target}")));
            }
            a.groups.insert(group.to_owned(), AccessGroup { name: group.to_owned(), ..Default::default() });
            Ok(())
        })
    }

    fn delete_access_group(&self, target: &str, group: &str) -> Result<()> {
        self.array(target, |a| {
            a.groups
                .remove(group)
                .map(drop)
                .ok_or_else(|| Error::backend(target, format!("no access group {group}")))
        })
    }

    fn add_initiator(&self, target: &str, group: &str, initiator: &str) -> Result<()> {
        self.array(target, |a| {
            let g = a
                .groups
                .get_mut(group)
                .ok_or_else(|| Error::backend(target, format!("no access group {group}")))?;
            if !g.initiators.iter().any(|i| i == initiator) {
                g.initiators.push(initiator.to_owned());
            }
            Ok(())
        })
    }

    fn remove_initiator(&self, target: &str, group: &str, initiator: &str) -> Result<()> {
        self.array(target, |a| {
            let g = a
                .groups
                .get_mut(group)
                .ok_or_else(|| Error::backend(target, format!("no access group {group}")))?;
            g.initiators.retain(|i| i != initiator);
            Ok(())
        })
    }

    fn present(&self, target: &str, group: &str, lun: &str) -> Result<()> {
        self.array(target, |a| {
            if !a.luns.contains_key(lun) {
                return Err(Error::backend(target, format!("no LUN {lun}")));
            }
            let g = a
                .groups
                .get_mut(group)
                .ok_or_else(|| Error::backend(target, format!("no access group {group}")))?;
            if !g.luns.iter().any(|l| l == lun) {
                g.luns.push(lun.to_owned());
            }
            Ok(())
        })
    }

    fn unpresent(&self, target: &str, group: &str, lun: &str) -> Result<()> {
        self.array(target, |a| {
            let g = a
                .groups
                .get_mut(group)
                .ok_or_else(|| Error::backend(target, format!("no access group {group}")))?;
            g.luns.retain(|l| l != lun);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::driver::sim::{SimDriver, DEFAULT_PASSWORD};
    use crate::driver::{Driver, FileServerAccess, FileSystemMount, MountSource};

    #[test]
    fn files_mounts_and_usage() {
        let d = SimDriver::default();
        d.world().add_nfs_export("nfs1", "/repo", 10_000);
        d.world().add_nfs_export("nfs1", "/iso", 500);
        let h1 = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let h2 = d.connect("sim://s2", DEFAULT_PASSWORD, "m").unwrap();
        let (f1, f2) = (h1.file_storage().unwrap(), h2.file_storage().unwrap());
        let repo = nfs("nfs1", "/repo");
        f1.mount(&repo, "/OVS/Repositories/r1").unwrap();
        f1.mount(&repo, "/OVS/Repositories/r1").unwrap();
        assert!(f1.mount(&nfs("nfs2", "/other"), "/OVS/Repositories/r1").is_err());
        assert!(f1.mount(&nfs("nfs1", "/nope"), "/OVS/Repositories/r2").is_err(), "not exported");
        assert!(f1.mount(&nfs("nfs1", "/../x"), "/OVS/Repositories/r2").is_err(), "not a plain path");
        f1.create_file("/OVS/Repositories/r1/a.img", 1000).unwrap();
        assert!(f1.create_file("/OVS/Repositories/r1/a.img", 1).is_err());
        // The store is shared: the other host sees the file.
        f2.copy_file("/OVS/Repositories/r1/a.img", "/OVS/Repositories/r1/b.img").unwrap();
        f2.resize_file("/OVS/Repositories/r1/b.img", 3000).unwrap();
        assert_eq!(f1.file_size("/OVS/Repositories/r1/b.img").unwrap(), Some(3000));
        f1.create_file("/elsewhere/c.img", 50).unwrap();
        assert_eq!(
            f1.usage("/OVS/Repositories/r1/x").unwrap(),
            crate::driver::FsUsage { total_bytes: 10_000, used_bytes: 4000 }
        );
        assert!(f2.usage("/OVS/Repositories/r1").is_err(), "s2 has not mounted it");
        // Discovery: the exports with their sizes, the repository marker once made.
        f1.init_repository("/OVS/Repositories/r1", "r1").unwrap();
        f1.init_repository("/OVS/Repositories/r1", "r1").unwrap();
        assert!(
            f1.init_repository("/OVS/Repositories/r1", "r9").is_err(),
            "another repository's file system"
        );
        let found = f2.discover(&FileServerAccess::Nfs { host: "nfs1".into() }).unwrap();
        assert_eq!(found.len(), 2);
        let r = found.iter().find(|f| f.path == "/repo").unwrap();
        assert_eq!((r.total_bytes, r.free_bytes, r.repository.as_deref()), (10_000, 6000, Some("r1")));
        assert!(f2.discover(&FileServerAccess::Nfs { host: "nfs9".into() }).is_err(), "no such server");
        f1.delete_file("/OVS/Repositories/r1/a.img").unwrap();
        f1.delete_file("/OVS/Repositories/r1/a.img").unwrap();
        assert_eq!(f1.file_size("/OVS/Repositories/r1/a.img").unwrap(), None);
        assert_eq!(
            f1.mounts().unwrap(),
            vec![FileSystemMount { source: repo, mount_point: "/OVS/Repositories/r1".into() }]
        );
        f1.remove_repository("/OVS/Repositories/r1", "r1").unwrap();
        f1.unmount("/OVS/Repositories/r1").unwrap();
        f1.unmount("/OVS/Repositories/r1").unwrap();
        assert!(f1.mounts().unwrap().is_empty());
    }

    #[test]
    fn external_file_servers_answer_without_running_anything() {
        let d = SimDriver::default();
        d.world().add_external_file_server(
            "nas-shares",
            "nas1:/shares",
            &[("/shares/a", 5000), ("/shares/b", 700)],
        );
        let h1 = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let f1 = h1.file_storage().unwrap();
        let at = |plugin: &str, host: &str| FileServerAccess::External {
            plugin: plugin.into(),
            host: host.into(),
        };
        let found = f1.discover(&at("nas-shares", "nas1:/shares")).unwrap();
        let sizes: Vec<(String, u64)> = found.iter().map(|f| (f.path.clone(), f.total_bytes)).collect();
        assert_eq!(sizes, vec![("/shares/a".into(), 5000), ("/shares/b".into(), 700)]);
        assert!(f1.discover(&at("nas-shares", "nas2:/shares")).is_err(), "no such file server");
        assert!(f1.discover(&at("../nas-shares", "nas1:/shares")).is_err(), "not a plug-in name");
        assert!(f1.discover(&at("nas-shares", "-o")).is_err(), "an option");
        let src = |path: &str| MountSource::External {
            plugin: "nas-shares".into(),
            host: "nas1:/shares".into(),
            path: path.into(),
        };
        f1.mount(&src("/shares/a"), "/OVS/Repositories/r1").unwrap();
        assert!(f1.mount(&src("/shares/c"), "/OVS/Repositories/r2").is_err(), "not offered");
        f1.create_file("/OVS/Repositories/r1/x.img", 1000).unwrap();
        assert_eq!(f1.usage("/OVS/Repositories/r1").unwrap().total_bytes, 5000);
        assert_eq!(f1.mounts().unwrap()[0].source, src("/shares/a"));
        f1.unmount("/OVS/Repositories/r1").unwrap();
        assert!(f1.mounts().unwrap().is_empty());
    }

    fn nfs(host: &str, export: &str) -> MountSource {
        MountSource::Nfs { host: host.into(), export: export.into(), version: None }
    }

    #[test]
    fn luns_sessions_and_access_groups() {
        let d = SimDriver::default();
        let t = "iqn.2026-01.ovm.sim:array1";
        let h1 = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let h2 = d.connect("sim://s2", DEFAULT_PASSWORD, "m").unwrap();
        let (a1, a2) = (h1.array_storage().unwrap(), h2.array_storage().unwrap());
        let p = "storage:3260";
        assert!(a1.login(p, t).is_err(), "no array yet");
        assert!(a1.discover_targets(p).is_err(), "nobody answers");
        d.world().add_array(t);
        assert_eq!(a1.discover_targets(p).unwrap(), vec![t.to_owned()]);
        assert!(a1.login("bad portal", t).is_err() && a1.login(p, "not-an-iqn").is_err());
        a1.login(p, t).unwrap();
        a1.login(p, t).unwrap();
        a2.login(p, t).unwrap();
        assert_eq!(
            a1.sessions().unwrap(),
            vec![crate::driver::IscsiSession { portal: p.into(), target: t.into() }]
        );
        d.world().add_managed_array("lio", "admin", "pw", &[t]);
        let mut access = crate::driver::ArrayAdminAccess {
            plugin: crate::driver::LIO_PLUGIN.into(),
            host: "lio".into(),
            port: 3261,
            username: "admin".into(),
            password: "pw".into(),
            fingerprint: None,
        };
        let fp = a1.array_management(&access).unwrap().fingerprint().unwrap();
        assert!(a1.array_management(&access).unwrap().targets().is_err(), "credentials need a pin");
        access.fingerprint = Some(fp);
        let m = a1.array_management(&access).unwrap();
        assert_eq!(m.targets().unwrap(), vec![t.to_owned()]);
        let lun = m.create_lun(t, "pool-fs", 1 << 30).unwrap();
        // No access groups: a generic array shows every LUN to everyone.
        assert_eq!(a2.list_luns(t).unwrap(), vec![lun.clone()]);
        m.resize_lun(t, &lun.id, 2 << 30).unwrap();
        let clone = m.clone_lun(t, &lun.id, "copy").unwrap();
        assert_eq!((clone.size_bytes, clone.thin_clone_of.as_deref()), (2 << 30, Some(lun.id.as_str())));
        m.create_access_group(t, "g1").unwrap();
        assert!(m.create_access_group(t, "g1").is_err());
        m.add_initiator(t, "g1", &a1.initiator().unwrap()).unwrap();
        m.present(t, "g1", &clone.id).unwrap();
        assert_eq!(a1.list_luns(t).unwrap(), vec![clone.clone()]);
        assert!(a2.list_luns(t).unwrap().is_empty(), "s2 is in no group");
        m.delete_lun(t, &clone.id).unwrap();
        assert!(m.access_groups(t).unwrap()[0].luns.is_empty());
        m.remove_initiator(t, "g1", &a1.initiator().unwrap()).unwrap();
        m.unpresent(t, "g1", &lun.id).unwrap();
        m.delete_access_group(t, "g1").unwrap();
        a2.logout(p, t).unwrap();
        a2.logout(p, t).unwrap();
        assert!(a2.list_luns(t).is_err(), "logged out");
        // An ACL: only s1 may log in to the second array, and only s1 discovers it.
        let t2 = "iqn.2026-01.ovm.sim:array2";
        let wwid = d.world().add_lun(t2, "lun0", 5 << 30);
        d.world().allow_initiators(t2, &["s1"]);
        assert!(a2.login(p, t2).is_err());
        assert!(!a2.discover_targets(p).unwrap().contains(&t2.to_owned()));
        a1.login(p, t2).unwrap();
        assert_eq!(a1.list_luns(t2).unwrap()[0].id, wwid);
    }
}
