//! Storage arrays through the generic iSCSI plug-in of Storage Connect: registering an array
//! discovers its targets and LUNs (real sizes and SCSI identifiers) through an admin server, and
//! presenting the array to servers logs them in to its targets, each login a job step with undo.

use crate::driver::{check_portal, StorageArrayPlugin};
use crate::job::{StorageUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// The name of the generic iSCSI plug-in.
pub const GENERIC_ISCSI_PLUGIN: &str = "generic-iscsi";

/// Settings of a generic iSCSI array to register.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageArraySpec {
    /// Name.
    pub name: String,
    /// The portal's host name or address.
    pub access_host: String,
    /// The portal's port (3260 for iSCSI).
    pub access_port: u16,
    /// The servers that discover it (at least one).
    pub admin_servers: Vec<ServerId>,
    /// For a vendor-style array: its management interface (LUNs and access groups are then
    /// managed through ovm); `None` for a generic array.
    pub management: Option<super::luns::ArrayManagementSpec>,
}

impl StorageArraySpec {
    /// A generic iSCSI array at `host:3260`.
    pub fn iscsi(name: &str, host: &str, admin_servers: Vec<ServerId>) -> Self {
        StorageArraySpec {
            name: name.to_owned(),
            access_host: host.to_owned(),
            access_port: 3260,
            admin_servers,
            management: None,
        }
    }

    /// A vendor-style array: iSCSI portal at `host:3260`, LUNs and access groups managed through
    /// `management` (e.g. [`super::luns::ArrayManagementSpec::lio`]).
    pub fn vendor(
        name: &str,
        host: &str,
        admin_servers: Vec<ServerId>,
        management: super::luns::ArrayManagementSpec,
    ) -> Self {
        StorageArraySpec {
            management: Some(management),
            ..StorageArraySpec::iscsi(name, host, admin_servers)
        }
    }
}

/// Store a newly registered array with its LUNs. A LUN is known once: registering the same
/// storage again is refused.
pub(super) fn put_array_and_disks(
    tx: &mut crate::manager::jobs::Tx<'_>,
    array: &StorageArray,
    disks: Vec<PhysicalDisk>,
) -> Result<()> {
    for d in &disks {
        if let Some(o) = PhysicalDisk::table(tx.inv).iter().find(|o| o.page83_id == d.page83_id) {
            return Err(Error::conflict(format!(
                "LUN {} is already physical disk {:?}",
                d.page83_id, o.name
            )));
        }
    }
    tx.put(Object::StorageArray(array.clone()))?;
    for d in disks {
        tx.put(Object::PhysicalDisk(d))?;
    }
    Ok(())
}

/// Record that `server` is logged in to `array`.
pub(super) fn mark_presented(
    tx: &mut crate::manager::jobs::Tx<'_>,
    array: StorageArrayId,
    server: ServerId,
) -> Result<()> {
    tx.edit::<StorageArray>(array, |a| {
        if !a.presented_to.contains(&server) {
            a.presented_to.push(server);
        }
    })
    .map(drop)
}

pub(super) fn portal(a: &StorageArray) -> String {
    if a.access_host.contains(':') {
        format!("[{}]:{}", a.access_host, a.access_port)
    } else {
        format!("{}:{}", a.access_host, a.access_port)
    }
}

fn array_side(hv: &dyn crate::driver::ServerConnection) -> Result<&dyn StorageArrayPlugin> {
    hv.array_storage().ok_or_else(|| Error::Unsupported { what: "storage arrays on this server".into() })
}

impl Manager {
    /// Register a storage array. A vendor-style one (with `management`) is reached through its
    /// management interface (see [`Manager::create_lun`]). A generic iSCSI array: its first reachable admin server discovers the portal's
    /// targets, logs in to each that admits it (and stays logged in) and reports their LUNs, which
    /// become physical disks with their real sizes and identifiers. Nothing is stored if the
    /// portal does not answer. The job's result is the array.
    pub fn register_storage_array(&self, spec: StorageArraySpec) -> Result<JobHandle> {
        if spec.admin_servers.is_empty() {
            return Err(Error::invalid(
                "admin_servers",
                "a storage array needs an admin server to discover it",
            ));
        }
        for s in &spec.admin_servers {
            self.server(*s)?;
        }
        if let Some(m) = spec.management.clone() {
            return self.register_vendor_array(spec, m);
        }
        let array = StorageArray {
            id: StorageArrayId::new(),
            name: spec.name,
            description: String::new(),
            kind: StorageArrayKind::Iscsi,
            plugin: GENERIC_ISCSI_PLUGIN.into(),
            access_host: spec.access_host,
            access_port: spec.access_port,
            admin_servers: spec.admin_servers,
            capacity_bytes: 0,
            presented_to: Vec::new(),
        };
        check_portal(&portal(&array))?;
        self.state().inv.check_put(&Object::StorageArray(array.clone()))?;
        let target = ObjectRef::new(ObjectKind::StorageArray, array.id);
        self.submit(
            JobSpec::new(
                "RegisterStorageArray",
                &format!("Register storage array {}", array.name),
                vec![target],
            )
            .step("discover", move |ctx| {
                let admin = array.admin_servers[0];
                let hv = ctx.hv(admin)?;
                let side = array_side(&*hv)?;
                let p = portal(&array);
                let mut disks = Vec::new();
                let mut refused = Vec::new();
                let had = side.sessions()?;
                for t in side.discover_targets(&p)? {
                    if !had.iter().any(|s| s.target == t) {
                        ctx.will_do(Undo::Storage(StorageUndo::Logout {
                            server: admin.0,
                            portal: p.clone(),
                            target: t.clone(),
                        }))?;
                    }
                    if let Err(e) = side.login(&p, &t) {
                        refused.push(format!("{t}: {e}"));
                        continue;
                    }
                    for lun in side.list_luns(&t)? {
                        disks.push(PhysicalDisk {
                            id: PhysicalDiskId::new(),
                            name: format!("{}:{}", array.name, lun.name),
                            description: String::new(),
                            array: Some(array.id),
                            local_server: None,
                            size_bytes: lun.size_bytes,
                            shareable: true,
                            page83_id: lun.id,
                            target: t.clone(),
                        });
                    }
                }
                if disks.is_empty() && !refused.is_empty() {
                    return Err(Error::backend(
                        &p,
                        format!("no target admits this server: {}", refused.join("; ")),
                    ));
                }
                ctx.message(format!("{} LUNs", disks.len()));
                let mut array = array.clone();
                array.presented_to = vec![admin];
                ctx.tx(|tx| put_array_and_disks(tx, &array, disks))?;
                ctx.set_result(target);
                Ok(())
            }),
        )
    }

    /// The iSCSI targets serving a storage array's LUNs, each once.
    pub(crate) fn array_targets(&self, array: StorageArrayId) -> Vec<String> {
        let mut targets: Vec<String> = self
            .physical_disks_of(array)
            .iter()
            .map(|d| d.target.clone())
            .filter(|t| !t.is_empty())
            .collect();
        // A vendor-style array's targets are known even without LUNs.
        if let Ok(v) = self.vendor_array(array) {
            targets.extend(v.targets);
        }
        targets.sort();
        targets.dedup();
        targets
    }

    /// The physical disks (LUNs) of a storage array.
    pub fn physical_disks_of(&self, array: StorageArrayId) -> Vec<std::sync::Arc<PhysicalDisk>> {
        self.list::<PhysicalDisk>(|d| d.array == Some(array))
    }

    /// Present a generic array's LUNs to servers: each logs in to every target of the array and
    /// must then see every LUN of it (by its identifier). One job: a server that fails is logged
    /// out again on the others.
    pub fn present_storage_array_to(&self, array: StorageArrayId, servers: &[ServerId]) -> Result<JobHandle> {
        let a = self.get::<StorageArray>(array)?;
        if servers.is_empty() {
            return Err(Error::invalid("servers", "no server to present the array to"));
        }
        let disks = self.physical_disks_of(array);
        let targets = self.array_targets(array);
        let mut spec =
            JobSpec::new("PresentStorageArray", &format!("Present {}", a.name), vec![a.object_ref()]);
        for server in servers.iter().copied() {
            let name = self.server(server)?.name.clone();
            let (p, targets) = (portal(&a), targets.clone());
            let expected: Vec<(String, String)> =
                disks.iter().map(|d| (d.target.clone(), d.page83_id.clone())).collect();
            spec = spec.step(&format!("log in on {name}"), move |ctx| {
                let hv = ctx.hv(server)?;
                let side = array_side(&*hv)?;
                let had = side.sessions()?;
                for t in &targets {
                    if !had.iter().any(|s| &s.target == t) {
                        ctx.will_do(Undo::Storage(StorageUndo::Logout {
                            server: server.0,
                            portal: p.clone(),
                            target: t.clone(),
                        }))?;
                    }
                    side.login(&p, t)?;
                    let seen = side.list_luns(t)?;
                    if let Some((_, id)) =
                        expected.iter().find(|(tt, id)| tt == t && !seen.iter().any(|l| &l.id == id))
                    {
                        return Err(Error::backend(
                            &name,
                            format!("logged in to {t} but LUN {id} is not there"),
                        ));
                    }
                }
                ctx.tx(|tx| mark_presented(tx, array, server))
            });
        }
        self.submit(spec)
    }

    /// Log a server out of every target of a generic array.
    pub fn unpresent_storage_array(&self, array: StorageArrayId, server: ServerId) -> Result<JobHandle> {
        let a = self.get::<StorageArray>(array)?;
        self.server(server)?;
        let uses = move |inv: &Inventory, v: &Vm| {
            crate::policy::placement::arrays_of(inv, v).iter().any(|a| a.id == array)
        };
        let in_use = self.read(|inv| super::repositories::vm_using(inv, server, uses));
        if let Some(vm) = in_use {
            return Err(Error::conflict(format!("VM {vm:?} on that server uses a disk of the array")));
        }
        let targets = self.array_targets(array);
        let p = portal(&a);
        self.submit(
            JobSpec::new("UnpresentStorageArray", &format!("Unpresent {}", a.name), vec![a.object_ref()])
                .step("log out", move |ctx| {
                    let hv = ctx.hv(server)?;
                    let side = array_side(&*hv)?;
                    // Taken from the server in the inventory first (see unpresent_repository).
                    ctx.tx(|tx| {
                        if let Some(vm) = super::repositories::vm_using(tx.inv, server, uses) {
                            return Err(Error::conflict(format!(
                                "VM {vm:?} on that server uses a disk of the array"
                            )));
                        }
                        tx.edit::<StorageArray>(array, |a| a.presented_to.retain(|s| *s != server)).map(drop)
                    })?;
                    let had = side.sessions()?;
                    for t in targets.iter().filter(|t| had.iter().any(|s| &s.target == *t)) {
                        ctx.will_do(Undo::Storage(StorageUndo::Login {
                            server: server.0,
                            portal: p.clone(),
                            target: t.clone(),
                        }))?;
                        side.logout(&p, t)?;
                    }
                    Ok(())
                }),
        )
    }
}
