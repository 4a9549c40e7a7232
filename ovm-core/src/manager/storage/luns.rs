//! Vendor-style storage arrays, managed through their Storage Connect plug-in on an admin server
//! (ovm's LIO plug-in, [`crate::driver::LIO_PLUGIN`]): registering one pins its management
//! interface's certificate and discovers its targets and LUNs; LUNs are created, grown, cloned
//! and deleted on the array; **access groups** say which servers (their initiators) see which
//! LUNs, and presenting a LUN to a group logs its servers in (or rescans their sessions) until
//! each sees it. Every change on the array is a job step whose undo is journaled before it.

use serde::{Deserialize, Serialize};

use super::arrays::{portal, StorageArraySpec};
use crate::driver::{
    ArrayAdminAccess, ArrayManagement, ArrayOp, ServerConnection, StorageArrayPlugin, LIO_PLUGIN,
};
use crate::job::{StorageUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, ErrorKind, Result};

/// How to reach a vendor-style array's management interface.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayManagementSpec {
    /// The plug-in ([`LIO_PLUGIN`]).
    pub plugin: String,
    /// Host name or address of the management interface.
    pub host: String,
    /// Its port ([`crate::lio::DEFAULT_PORT`] for `ovm-lio`).
    pub port: u16,
    /// The administrator's name.
    pub username: String,
    /// The administrator's password (kept in the manager's database, never in an object).
    pub password: String,
    /// The certificate fingerprint to pin (`sha256:...`); `None` pins the one seen at
    /// registration.
    pub fingerprint: Option<String>,
}

impl std::fmt::Debug for ArrayManagementSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayManagementSpec")
            .field("plugin", &self.plugin)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ArrayManagementSpec {
    /// An `ovm-lio` management interface at `host` (default port).
    pub fn lio(host: &str, username: &str, password: &str) -> Self {
        ArrayManagementSpec {
            plugin: LIO_PLUGIN.into(),
            host: host.into(),
            port: crate::lio::DEFAULT_PORT,
            username: username.into(),
            password: password.into(),
            fingerprint: None,
        }
    }
}

/// What the manager keeps of a vendor-style array besides its object: the access (with the
/// pinned certificate and the password) and its targets.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct VendorArray {
    pub(crate) access: ArrayAdminAccess,
    pub(crate) targets: Vec<String>,
}

fn meta_key(array: StorageArrayId) -> String {
    format!("storage_array_access/{array}")
}

fn array_side(hv: &dyn ServerConnection) -> Result<&dyn StorageArrayPlugin> {
    hv.array_storage().ok_or_else(|| Error::Unsupported { what: "storage arrays on this server".into() })
}

/// Run an undo record's call on the array: what is already gone counts as undone.
pub(crate) fn undo_array_call(
    mgr: &Manager,
    server: ServerId,
    array: StorageArrayId,
    call: &ArrayOp,
) -> Result<()> {
    let v = mgr.vendor_array(array)?;
    let hv = mgr.hypervisor(server)?;
    let m = array_side(&*hv)?.array_management(&v.access)?;
    match call.clone().apply(&*m) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        r => r.map(drop),
    }
}

impl Manager {
    pub(crate) fn vendor_array(&self, array: StorageArrayId) -> Result<VendorArray> {
        let a = self.get::<StorageArray>(array)?;
        if !a.can_create_luns() {
            return Err(Error::state(a.object_ref(), "a vendor-style array", "a generic array"));
        }
        let raw = self.db().meta(&meta_key(array))?;
        serde_json::from_str(&raw.unwrap_or_default())
            .map_err(|e| Error::Internal { message: format!("the access of array {}: {e}", a.name) })
    }

    /// Register a vendor-style array (see [`StorageArraySpec::vendor`]): its first admin server
    /// reaches the management interface, pins its certificate (the one given, or the one it
    /// presents now), and lists its targets and LUNs, which become physical disks. Nothing is
    /// stored if the interface does not answer or refuses the credentials.
    pub(super) fn register_vendor_array(
        &self,
        spec: StorageArraySpec,
        m: ArrayManagementSpec,
    ) -> Result<JobHandle> {
        let mut access = ArrayAdminAccess {
            plugin: m.plugin,
            host: m.host,
            port: m.port,
            username: m.username,
            password: m.password,
            fingerprint: m.fingerprint,
        };
        access.check()?;
        let array = StorageArray {
            id: StorageArrayId::new(),
            name: spec.name,
            description: String::new(),
            kind: StorageArrayKind::Vendor,
            plugin: access.plugin.clone(),
            access_host: spec.access_host,
            access_port: spec.access_port,
            admin_servers: spec.admin_servers,
            capacity_bytes: 0,
            presented_to: Vec::new(),
        };
        crate::driver::check_portal(&portal(&array))?;
        self.state().inv.check_put(&Object::StorageArray(array.clone()))?;
        let target = array.object_ref();
        self.submit(
            JobSpec::new(
                "RegisterStorageArray",
                &format!("Register storage array {}", array.name),
                vec![target],
            )
            .step("discover", move |ctx| {
                let hv = ctx.hv(array.admin_servers[0])?;
                let side = array_side(&*hv)?;
                let seen = side.array_management(&access)?.fingerprint()?;
                match &access.fingerprint {
                    Some(f) if *f != seen => {
                        return Err(Error::backend(
                            format!("{}:{}", access.host, access.port),
                            format!("presents certificate {seen}, not the {f} given"),
                        ))
                    }
                    _ => access.fingerprint = Some(seen.clone()),
                }
                let mgmt = side.array_management(&access)?;
                let targets = mgmt.targets()?;
                let mut disks = Vec::new();
                for t in &targets {
                    for lun in mgmt.luns(t)? {
                        disks.push(disk_of(&array, t, &lun));
                    }
                }
                ctx.message(format!("certificate {seen}; {} targets, {} LUNs", targets.len(), disks.len()));
                let v = VendorArray { access: access.clone(), targets };
                ctx.tx(|tx| {
                    super::arrays::put_array_and_disks(tx, &array, disks)?;
                    tx.meta(&meta_key(array.id), serde_json::to_string(&v).map_err(Error::from)?);
                    Ok(())
                })?;
                ctx.set_result(target);
                Ok(())
            }),
        )
    }

    /// The management interface of a vendor-style array, through its first admin server that is
    /// connected.
    fn with_array<T>(
        &self,
        array: StorageArrayId,
        hv: impl Fn(ServerId) -> Result<std::sync::Arc<dyn ServerConnection>>,
        f: impl FnOnce(ServerId, &dyn ArrayManagement) -> Result<T>,
    ) -> Result<T> {
        let a = self.get::<StorageArray>(array)?;
        let v = self.vendor_array(array)?;
        let mut last = None;
        for s in &a.admin_servers {
            match hv(*s) {
                Ok(h) => {
                    let side = array_side(&*h)?;
                    let m = side.array_management(&v.access)?;
                    return f(*s, &*m);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::invalid("admin_servers", "the array has no admin server")))
    }

    /// Create a LUN of `size_bytes` named `name` on a vendor-style array (on `target`, or its
    /// first target); it becomes a physical disk that no server sees until it is presented to an
    /// access group. The job's result is the disk.
    pub fn create_lun(
        &self,
        array: StorageArrayId,
        target: Option<&str>,
        name: &str,
        size_bytes: u64,
    ) -> Result<JobHandle> {
        let a = self.get::<StorageArray>(array)?;
        let v = self.vendor_array(array)?;
        let t = match target {
            Some(t) if v.targets.iter().any(|x| x == t) => t.to_owned(),
            Some(t) => return Err(Error::invalid("target", format!("{t} is not a target of {}", a.name))),
            None => v
                .targets
                .first()
                .cloned()
                .ok_or_else(|| Error::invalid("target", "the array has no target"))?,
        };
        ArrayOp::CreateLun { target: t.clone(), name: name.into(), size_bytes }.check()?;
        validate_name(&format!("{}:{name}", a.name))?;
        let name = name.to_owned();
        self.submit(
            JobSpec::new("CreateLun", &format!("Create LUN {name} on {}", a.name), vec![a.object_ref()])
                .step("create on the array", move |ctx| {
                    new_lun(ctx, array, &t, &name, |m| m.create_lun(&t, &name, size_bytes))
                }),
        )
    }

    /// Clone a LUN of a vendor-style array (thin where the array can) into a new LUN `name`.
    pub fn clone_lun(&self, disk: PhysicalDiskId, name: &str) -> Result<JobHandle> {
        let d = self.get::<PhysicalDisk>(disk)?;
        let array = d.array.ok_or_else(|| Error::invalid("disk", "not a LUN of an array"))?;
        self.vendor_array(array)?;
        let (t, src, name) = (d.target.clone(), d.page83_id.clone(), name.to_owned());
        ArrayOp::CloneLun { target: t.clone(), lun: src.clone(), name: name.clone() }.check()?;
        self.submit(
            JobSpec::new("CloneLun", &format!("Clone {} as {name}", d.name), vec![d.object_ref()])
                .step("clone on the array", move |ctx| {
                    new_lun(ctx, array, &t, &name, |m| m.clone_lun(&t, &src, &name))
                }),
        )
    }

    /// Grow a LUN of a vendor-style array to `size_bytes` (a LUN never shrinks); the servers that
    /// see it rescan and see the new size.
    pub fn resize_lun(&self, disk: PhysicalDiskId, size_bytes: u64) -> Result<JobHandle> {
        let d = self.get::<PhysicalDisk>(disk)?;
        let array = d.array.ok_or_else(|| Error::invalid("disk", "not a LUN of an array"))?;
        self.vendor_array(array)?;
        if size_bytes < d.size_bytes {
            return Err(Error::invalid(
                "size_bytes",
                format!("{size_bytes}: a LUN only grows (it has {})", d.size_bytes),
            ));
        }
        let viewers = self.servers_seeing(disk);
        let (t, id) = (d.target.clone(), d.page83_id.clone());
        self.submit(
            JobSpec::new(
                "ResizeLun",
                &format!("Grow {} to {size_bytes} bytes", d.name),
                vec![d.object_ref()],
            )
            .step("grow on the array", move |ctx| {
                // Growing has no undo: a LUN never shrinks, and a grown LUN loses nothing.
                ctx.mgr.with_array(array, |s| ctx.hv(s), |_, m| m.resize_lun(&t, &id, size_bytes))?;
                ctx.tx(|tx| tx.edit::<PhysicalDisk>(disk, |d| d.size_bytes = size_bytes).map(drop))
            })
            .step("rescan the servers", {
                let t = d.target.clone();
                move |ctx| {
                    for s in &viewers {
                        array_side(&*ctx.hv(*s)?)?.rescan(&t)?;
                    }
                    Ok(())
                }
            }),
        )
    }

    /// Delete a LUN of a vendor-style array: no VM or repository may use it; the servers that see
    /// it forget it first, then the array deletes it with its presentations. Not undoable.
    pub fn delete_lun(&self, disk: PhysicalDiskId) -> Result<JobHandle> {
        let d = self.get::<PhysicalDisk>(disk)?;
        let array = d.array.ok_or_else(|| Error::invalid("disk", "not a LUN of an array"))?;
        self.vendor_array(array)?;
        self.check_disk_unused(disk)?;
        let viewers = self.servers_seeing(disk);
        let (t, id) = (d.target.clone(), d.page83_id.clone());
        self.submit(JobSpec::new("DeleteLun", &format!("Delete {}", d.name), vec![d.object_ref()]).step(
            "delete on the array",
            move |ctx| {
                ctx.tx(|tx| {
                    check_unused(tx.inv, disk)?;
                    for g in AccessGroup::table(tx.inv)
                        .iter()
                        .filter(|g| g.disks.contains(&disk))
                        .cloned()
                        .collect::<Vec<_>>()
                    {
                        tx.edit::<AccessGroup>(g.id, |g| g.disks.retain(|x| *x != disk))?;
                    }
                    tx.remove(ObjectRef::new(ObjectKind::PhysicalDisk, disk)).map(drop)
                })?;
                for s in &viewers {
                    array_side(&*ctx.hv(*s)?)?.forget_lun(&t, &id)?;
                }
                ctx.mgr.with_array(array, |s| ctx.hv(s), |_, m| m.delete_lun(&t, &id))
            },
        ))
    }

    fn check_disk_unused(&self, disk: PhysicalDiskId) -> Result<()> {
        self.read(|inv| check_unused(inv, disk))
    }

    /// The servers that see a LUN: the members of the access groups it is presented to.
    fn servers_seeing(&self, disk: PhysicalDiskId) -> Vec<ServerId> {
        let mut s: Vec<ServerId> = self
            .list::<AccessGroup>(|g| g.disks.contains(&disk))
            .iter()
            .flat_map(|g| g.servers.clone())
            .collect();
        s.sort();
        s.dedup();
        s
    }

    /// Create an access group of a vendor-style array with these servers' initiators (on each of
    /// the array's targets). The job's result is the group.
    pub fn create_access_group(
        &self,
        array: StorageArrayId,
        name: &str,
        servers: &[ServerId],
    ) -> Result<JobHandle> {
        let a = self.get::<StorageArray>(array)?;
        let v = self.vendor_array(array)?;
        for s in servers {
            self.server(*s)?;
        }
        let g = AccessGroup {
            id: AccessGroupId::new(),
            name: name.to_owned(),
            description: String::new(),
            array,
            servers: servers.to_vec(),
            disks: Vec::new(),
        };
        self.state().inv.check_put(&Object::AccessGroup(g.clone()))?;
        if !self.list::<AccessGroup>(|x| x.array == array && x.name == name).is_empty() {
            return Err(Error::conflict(format!("{} has an access group named {name}", a.name)));
        }
        for t in &v.targets {
            ArrayOp::CreateAccessGroup { target: t.clone(), group: name.to_owned() }.check()?;
        }
        let r = g.object_ref();
        self.submit(
            JobSpec::new(
                "CreateAccessGroup",
                &format!("Create access group {name} on {}", a.name),
                vec![a.object_ref()],
            )
            .step("create on the array", move |ctx| {
                let mut initiators = Vec::new();
                for s in &g.servers {
                    initiators.push(array_side(&*ctx.hv(*s)?)?.initiator()?);
                }
                ctx.mgr.with_array(
                    array,
                    |s| ctx.hv(s),
                    |admin, m| {
                        for t in &v.targets {
                            // A group of that name made outside ovm is not ours to take over (nor
                            // would the undo be ours to run).
                            if m.access_groups(t)?.iter().any(|x| x.name == g.name) {
                                return Err(Error::conflict(format!(
                                    "{t} already has an access group named {}",
                                    g.name
                                )));
                            }
                            ctx.will_do(Undo::Storage(StorageUndo::ArrayCall {
                                server: admin.0,
                                array: array.0,
                                call: ArrayOp::DeleteAccessGroup { target: t.clone(), group: g.name.clone() },
                            }))?;
                            m.create_access_group(t, &g.name)?;
                            for i in &initiators {
                                m.add_initiator(t, &g.name, i)?;
                            }
                        }
                        Ok(())
                    },
                )?;
                ctx.tx(|tx| tx.put(Object::AccessGroup(g.clone())))?;
                ctx.set_result(r);
                Ok(())
            }),
        )
    }

    /// Delete an access group that presents no LUN.
    pub fn delete_access_group(&self, group: AccessGroupId) -> Result<JobHandle> {
        let g = self.get::<AccessGroup>(group)?;
        if !g.disks.is_empty() {
            return Err(Error::conflict(format!(
                "access group {} still presents {} LUN(s)",
                g.name,
                g.disks.len()
            )));
        }
        let v = self.vendor_array(g.array)?;
        self.submit(
            JobSpec::new(
                "DeleteAccessGroup",
                &format!("Delete access group {}", g.name),
                vec![g.object_ref()],
            )
            .step("delete on the array", move |ctx| {
                ctx.tx(|tx| tx.remove(g.object_ref()).map(drop))?;
                ctx.mgr.with_array(
                    g.array,
                    |s| ctx.hv(s),
                    |_, m| {
                        for t in &v.targets {
                            m.delete_access_group(t, &g.name)?;
                        }
                        Ok(())
                    },
                )
            }),
        )
    }

    /// Present a LUN to an access group: the array maps it for the group's initiators, then each
    /// server of the group logs in to the LUN's target (or rescans its session) until it sees the
    /// LUN. One job: a server that does not see it undoes the presentation and the logins.
    pub fn present_lun(&self, group: AccessGroupId, disk: PhysicalDiskId) -> Result<JobHandle> {
        let g = self.get::<AccessGroup>(group)?;
        let d = self.get::<PhysicalDisk>(disk)?;
        if d.array != Some(g.array) {
            return Err(Error::invalid("disk", format!("{} is not a LUN of the group's array", d.name)));
        }
        let a = self.get::<StorageArray>(g.array)?;
        self.vendor_array(g.array)?;
        let (t, id, array) = (d.target.clone(), d.page83_id.clone(), g.array);
        let mut spec =
            JobSpec::new("PresentLun", &format!("Present {} to {}", d.name, g.name), vec![d.object_ref()])
                .step("present on the array", {
                    let (t, id, gname) = (t.clone(), id.clone(), g.name.clone());
                    move |ctx| {
                        ctx.mgr.with_array(
                            array,
                            |s| ctx.hv(s),
                            |admin, m| {
                                // Presented already: nothing to do, and nothing to undo.
                                let had = m
                                    .access_groups(&t)?
                                    .iter()
                                    .any(|x| x.name == gname && x.luns.contains(&id));
                                if had {
                                    return Ok(());
                                }
                                ctx.will_do(Undo::Storage(StorageUndo::ArrayCall {
                                    server: admin.0,
                                    array: array.0,
                                    call: ArrayOp::Unpresent {
                                        target: t.clone(),
                                        group: gname.clone(),
                                        lun: id.clone(),
                                    },
                                }))?;
                                m.present(&t, &gname, &id)
                            },
                        )?;
                        ctx.tx(|tx| {
                            tx.edit::<AccessGroup>(group, |g| {
                                if !g.disks.contains(&disk) {
                                    g.disks.push(disk)
                                }
                            })
                            .map(drop)
                        })
                    }
                });
        let p = portal(&a);
        for server in g.servers.iter().copied() {
            let sname = self.server(server)?.name.clone();
            let (t, id, p) = (t.clone(), id.clone(), p.clone());
            spec = spec.step(&format!("see it on {sname}"), move |ctx| {
                let hv = ctx.hv(server)?;
                let side = array_side(&*hv)?;
                if side.sessions()?.iter().any(|s| s.target == t) {
                    side.rescan(&t)?;
                } else {
                    ctx.will_do(Undo::Storage(StorageUndo::Logout {
                        server: server.0,
                        portal: p.clone(),
                        target: t.clone(),
                    }))?;
                    side.login(&p, &t)?;
                }
                if !side.list_luns(&t)?.iter().any(|l| l.id == id) {
                    return Err(Error::backend(
                        &sname,
                        format!("LUN {id} is presented but the server does not see it"),
                    ));
                }
                ctx.tx(|tx| super::arrays::mark_presented(tx, array, server))
            });
        }
        self.submit(spec)
    }

    /// Stop presenting a LUN to an access group: no VM may use it; the group's servers forget it,
    /// then the array unmaps it.
    pub fn unpresent_lun(&self, group: AccessGroupId, disk: PhysicalDiskId) -> Result<JobHandle> {
        let g = self.get::<AccessGroup>(group)?;
        let d = self.get::<PhysicalDisk>(disk)?;
        if !g.disks.contains(&disk) {
            return Err(Error::invalid("disk", format!("{} is not presented to {}", d.name, g.name)));
        }
        self.check_disk_unused(disk)?;
        let (t, id, array) = (d.target.clone(), d.page83_id.clone(), g.array);
        self.submit(
            JobSpec::new(
                "UnpresentLun",
                &format!("Unpresent {} from {}", d.name, g.name),
                vec![d.object_ref()],
            )
            .step("unpresent", move |ctx| {
                ctx.tx(|tx| {
                    check_unused(tx.inv, disk)?;
                    tx.edit::<AccessGroup>(group, |g| g.disks.retain(|x| *x != disk)).map(drop)
                })?;
                for s in &g.servers {
                    array_side(&*ctx.hv(*s)?)?.forget_lun(&t, &id)?;
                }
                ctx.mgr.with_array(array, |s| ctx.hv(s), |_, m| m.unpresent(&t, &g.name, &id))
            }),
        )
    }
}

/// The step that makes LUN `name` on `target` of `array` with `make` (a creation or a clone): a
/// name already taken there is refused (the undo, deleting the LUN by that name, would otherwise
/// delete another's), the undo is journaled, and the new LUN becomes the job's physical disk.
fn new_lun(
    ctx: &crate::manager::jobs::StepCtx<'_>,
    array: StorageArrayId,
    target: &str,
    name: &str,
    make: impl FnOnce(&dyn ArrayManagement) -> Result<crate::driver::Lun>,
) -> Result<()> {
    let lun = ctx.mgr.with_array(
        array,
        |s| ctx.hv(s),
        |admin, m| {
            if m.luns(target)?.iter().any(|l| l.name == name) {
                return Err(Error::conflict(format!("{target} has a LUN named {name}")));
            }
            ctx.will_do(Undo::Storage(StorageUndo::ArrayCall {
                server: admin.0,
                array: array.0,
                call: ArrayOp::DeleteLun { target: target.to_owned(), lun: name.to_owned() },
            }))?;
            make(m)
        },
    )?;
    let d = disk_of(&*ctx.mgr.get::<StorageArray>(array)?, target, &lun);
    let r = d.object_ref();
    ctx.tx(|tx| tx.put(Object::PhysicalDisk(d)))?;
    ctx.set_result(r);
    Ok(())
}

/// A LUN is in use if a VM maps it or a repository lives on it.
fn check_unused(inv: &Inventory, disk: PhysicalDiskId) -> Result<()> {
    if let Some(v) = Vm::table(inv)
        .iter()
        .find(|v| v.config.disks.iter().any(|m| m.target == DiskTarget::PhysicalDisk(disk)))
    {
        return Err(Error::conflict(format!("VM {:?} uses the LUN", v.name)));
    }
    if let Some(r) =
        Repository::table(inv).iter().find(|r| r.backing == RepositoryBacking::PhysicalDisk(disk))
    {
        return Err(Error::conflict(format!("repository {:?} lives on the LUN", r.name)));
    }
    Ok(())
}

fn disk_of(a: &StorageArray, target: &str, lun: &crate::driver::Lun) -> PhysicalDisk {
    PhysicalDisk {
        id: PhysicalDiskId::new(),
        name: format!("{}:{}", a.name, lun.name),
        description: String::new(),
        array: Some(a.id),
        local_server: None,
        size_bytes: lun.size_bytes,
        shareable: true,
        page83_id: lun.id.clone(),
        target: target.to_owned(),
    }
}
