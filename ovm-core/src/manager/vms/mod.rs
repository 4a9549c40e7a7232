//! Virtual machines: creation ([`create`]), cloning and templates ([`clone`]), the power lifecycle
//! ([`power`]), live migration ([`migrate`]) and its pre-checks ([`precheck`]), editing ([`edit`]), the domain spec a driver is given
//! ([`spec`]), deletion, consoles, anti-affinity groups, and the undo of effects on domains.

mod clone;
mod console;
mod create;
mod edit;
mod migrate;
mod power;
mod precheck;
pub(crate) mod slots;
mod spec;

pub use clone::{CloneOptions, DiskClone};
pub use console::{ConsoleEndpoint, CONSOLE_TTL};
pub use create::VmSpec;
pub use migrate::MigrateOptions;
pub use power::StopOptions;
pub use slots::{DEFAULT_MIGRATION_LIMIT, MAX_MIGRATION_LIMIT};

use crate::job::{DomainUndo, Undo};
use crate::manager::jobs::{JobSpec, StepCtx};
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

impl Manager {
    pub(crate) fn vm_checked(&self, vm: VmId, op: PowerOperation) -> Result<std::sync::Arc<Vm>> {
        let v = self.vm(vm)?;
        self.ensure_unlocked(v.object_ref())?;
        if !v.power_state.allows(op) {
            let expected: Vec<String> = PowerState::allowed_from(op).iter().map(|s| s.to_string()).collect();
            return Err(Error::state(v.object_ref(), expected.join(" or "), v.power_state));
        }
        Ok(v)
    }

    /// Delete a stopped VM (its virtual disks stay in the repository).
    pub fn delete_vm(&self, vm: VmId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Start)?;
        let r = v.object_ref();
        self.read(|inv| inv.check_remove(r))?;
        self.submit(JobSpec::new("DeleteVm", &format!("Delete VM {}", v.name), vec![r]).step(
            "delete",
            move |ctx| {
                ctx.tx(|tx| {
                    for g in tx
                        .inv
                        .anti_affinity_groups
                        .iter()
                        .filter(|g| g.vms.contains(&vm))
                        .map(|g| g.id)
                        .collect::<Vec<_>>()
                    {
                        tx.edit::<AntiAffinityGroup>(g, |g| g.vms.retain(|x| *x != vm))?;
                    }
                    tx.remove(r).map(|_| ())
                })
            },
        ))
    }

    /// Console output of a running VM.
    pub fn vm_console(&self, vm: VmId) -> Result<String> {
        let v = self.vm(vm)?;
        if !v.power_state.is_resident() {
            return Err(Error::state(v.object_ref(), "Running or Paused", v.power_state));
        }
        let server =
            v.server.ok_or_else(|| Error::Internal { message: "resident VM without server".into() })?;
        self.hypervisor(server)?.console(vm)
    }

    /// Send messages to a running VM's guest, as Oracle VM's "send VM messages" does: each
    /// `key` = `value` is left where the guest reads it (Xen: the guest's xenstore directory
    /// `ovm/message`, which only dom0 writes); a message with the same key is replaced. All or
    /// nothing: if one cannot be left, those already left are taken back. Keys are 1 to 64
    /// letters, digits, `-`, `_` and `.`; values at most 2048 bytes of text.
    pub fn send_vm_messages(&self, vm: VmId, messages: &[(String, String)]) -> Result<JobHandle> {
        if messages.is_empty() {
            return Err(Error::invalid("messages", "no message to send"));
        }
        for (k, v) in messages {
            crate::driver::check_guest_message(k, v)?;
        }
        let v = self.vm(vm)?;
        if v.power_state != PowerState::Running {
            return Err(Error::state(v.object_ref(), "Running", v.power_state));
        }
        let server =
            v.server.ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
        let mut job = JobSpec::new(
            "SendVmMessages",
            &format!("Send {} message(s) to VM {}", messages.len(), v.name),
            vec![v.object_ref()],
        );
        for (k, val) in messages {
            let (k, val) = (k.clone(), val.clone());
            job = job.step("send", move |ctx| {
                let hv = ctx.hv(server)?;
                // What the guest had under the key is what an undo puts back.
                let previous = hv.guest_messages(vm)?.remove(&k);
                ctx.will_do(Undo::Domain(DomainUndo::RestoreGuestMessage {
                    server: server.0,
                    vm: vm.0,
                    key: k.clone(),
                    previous,
                }))?;
                hv.send_guest_message(vm, &k, &val)
            });
        }
        self.submit(job)
    }

    /// The values a running VM's guest reports (Xen: what the guest writes under its xenstore
    /// directory `data`; names that are not valid keys and values over 2048 bytes are left out).
    pub fn vm_guest_data(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        let v = self.vm(vm)?;
        if !v.power_state.is_resident() {
            return Err(Error::state(v.object_ref(), "Running or Paused", v.power_state));
        }
        let server =
            v.server.ok_or_else(|| Error::Internal { message: "resident VM without server".into() })?;
        self.hypervisor(server)?.guest_data(vm)
    }

    /// Create an anti-affinity group in a pool. The job's result is the group.
    pub fn create_anti_affinity_group(&self, pool: PoolId, name: &str, vms: Vec<VmId>) -> Result<JobHandle> {
        let g = AntiAffinityGroup {
            id: AntiAffinityGroupId::new(),
            name: name.to_owned(),
            description: String::new(),
            pool,
            vms: vms.clone(),
        };
        let r = ObjectRef::new(ObjectKind::AntiAffinityGroup, g.id);
        let obj = Object::AntiAffinityGroup(g.clone());
        obj.validate()?;
        self.state().inv.check_put(&obj)?;
        let mut targets = vec![r];
        targets.extend(vms.iter().map(|v| ObjectRef::new(ObjectKind::Vm, *v)));
        self.submit(
            JobSpec::new("CreateAntiAffinityGroup", &format!("Create anti-affinity group {name}"), targets)
                .step("create", move |ctx| {
                    ctx.tx(|tx| {
                        tx.put(obj)?;
                        for v in &vms {
                            tx.edit::<Vm>(*v, |v| v.anti_affinity_group = Some(g.id))?;
                        }
                        Ok(())
                    })?;
                    ctx.set_result(r);
                    Ok(())
                }),
        )
    }
}

pub(super) fn set_state(ctx: &StepCtx<'_>, vm: VmId, state: PowerState, domid: Option<u32>) -> Result<()> {
    ctx.tx(|tx| {
        tx.edit::<Vm>(vm, |v| {
            v.power_state = state;
            v.domid = domid;
        })
        .map(|_| ())
    })
}

/// Move the domain of `spec` from `source` to `dest`: the destination, told the source's identity,
/// prepares and issues a one-time ticket naming its own identity; the source sends the domain with
/// it. A failed send gives the ticket back. With `via` (the destination's address on the
/// live-migrate network), the stream goes to that address rather than the one the destination
/// named, when it named an IP address and port. The destination prepares for `mode`: a live
/// migration, or a cold move (which leaves the domain paused at the source once it runs at the
/// destination; see [`crate::driver::MigrationOps::send`]).
pub(crate) fn send_domain(
    source: &dyn crate::driver::ServerConnection,
    dest: &dyn crate::driver::ServerConnection,
    spec: &crate::driver::DomainSpec,
    live: bool,
    via: Option<std::net::IpAddr>,
    mode: MigrationMode,
) -> Result<()> {
    let (from, to) = (super::migration(source)?, super::migration(dest)?);
    let mut ticket = to.prepare_incoming(spec, &from.identity()?, mode)?;
    if let (Some(ip), Ok(named)) = (via, ticket.destination.parse::<std::net::SocketAddr>()) {
        ticket.destination = std::net::SocketAddr::new(ip, named.port()).to_string();
    }
    if let Err(e) = from.send(spec.uuid, &ticket, live) {
        let _ = to.cancel_incoming(&ticket);
        return Err(e);
    }
    Ok(())
}

/// Undo an effect on a domain (see [`crate::job::DomainUndo`]).
pub(crate) fn undo_domain(mgr: &Manager, u: &DomainUndo) -> Result<()> {
    match u {
        DomainUndo::Destroy { server, vm } => {
            let hv = mgr.hypervisor(ServerId(*server))?;
            let resident = hv.list_domains()?.iter().any(|d| d.uuid == Some(VmId(*vm)));
            if resident {
                hv.destroy(VmId(*vm))?;
            }
            Ok(())
        }
        DomainUndo::MigrateBack { from, to, vm } => {
            let hv = mgr.hypervisor(ServerId(*from))?;
            if hv.list_domains()?.iter().any(|d| d.uuid == Some(VmId(*vm))) {
                let spec = mgr.domain_spec(VmId(*vm))?;
                let via = mgr.network_address(ServerId(*to), NetworkFunction::LiveMigrate);
                send_domain(&*hv, &*mgr.hypervisor(ServerId(*to))?, &spec, true, via, MigrationMode::Live)?;
            }
            Ok(())
        }
        DomainUndo::ColdMoveBack { source, target, vm } => {
            let vm = VmId(*vm);
            let src = mgr.hypervisor(ServerId(*source))?;
            let Some(copy) = src.list_domains()?.into_iter().find(|d| d.uuid == Some(vm)) else {
                // The move completed: the target's domain is the VM now.
                return Ok(());
            };
            let dst = mgr.hypervisor(ServerId(*target))?;
            if dst.list_domains()?.iter().any(|d| d.uuid == Some(vm)) {
                dst.destroy(vm)?;
            }
            if copy.state == crate::driver::DomainRunState::Paused {
                src.unpause(vm)?;
            }
            Ok(())
        }
        DomainUndo::Unpause { server, vm } => {
            // Only a paused domain is unpaused: the undo runs too when the pause never happened.
            let hv = mgr.hypervisor(ServerId(*server))?;
            let paused = hv
                .list_domains()?
                .iter()
                .any(|d| d.uuid == Some(VmId(*vm)) && d.state == crate::driver::DomainRunState::Paused);
            if paused {
                hv.unpause(VmId(*vm))?;
            }
            Ok(())
        }
        DomainUndo::DetachNic { server, vm, mac } => {
            let hv = mgr.hypervisor(ServerId(*server))?;
            let vm = VmId(*vm);
            if !hv.list_domains()?.iter().any(|d| d.uuid == Some(vm)) {
                return Ok(());
            }
            if hv.domain_nics(vm)?.iter().any(|n| n.0.eq_ignore_ascii_case(mac)) {
                hv.detach_nic(vm, mac)?;
            }
            Ok(())
        }
        DomainUndo::AttachNic { server, vm, nic } => {
            let hv = mgr.hypervisor(ServerId(*server))?;
            let vm = VmId(*vm);
            if !hv.domain_nics(vm)?.iter().any(|n| n.0.eq_ignore_ascii_case(&nic.mac)) {
                hv.attach_nic(vm, nic)?;
            }
            Ok(())
        }
        DomainUndo::RestoreGuestMessage { server, vm, key, previous } => {
            let hv = mgr.hypervisor(ServerId(*server))?;
            let vm = VmId(*vm);
            // A domain that is gone took its messages with it.
            if !hv.list_domains()?.iter().any(|d| d.uuid == Some(vm)) {
                return Ok(());
            }
            match previous {
                Some(v) => hv.send_guest_message(vm, key, v),
                None => hv.remove_guest_message(vm, key),
            }
        }
    }
}

/// Give the VNICs of `config` whose MAC is empty a free MAC from `range`.
pub(super) fn fill_macs(inv: &Inventory, range: MacRange, config: &mut VmConfig) -> Result<()> {
    let missing = config.vnics.iter().filter(|n| n.mac.is_empty()).count();
    if missing == 0 {
        return Ok(());
    }
    let taken: Vec<u64> = config.vnics.iter().filter_map(|n| parse_mac(&n.mac).ok()).collect();
    let mut macs = inv.allocate_macs(range, missing, &taken)?.into_iter();
    for n in config.vnics.iter_mut().filter(|n| n.mac.is_empty()) {
        n.mac = macs.next().unwrap_or_default();
    }
    Ok(())
}
