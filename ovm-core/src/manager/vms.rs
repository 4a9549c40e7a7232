//! Virtual machines: creation, cloning, the power lifecycle and live migration.

use std::time::Duration;

use super::jobs::{JobSpec, StepCtx, Tx};
use super::storage::{add_used, repository_path, virtual_disk_path};
use super::{JobHandle, Manager};
use crate::driver::{DiskSpec, DomainSpec, NicSpec};
use crate::job::{DomainUndo, StorageUndo, Undo};
use crate::model::*;
use crate::{Error, Result};

/// Settings of a new VM. VNICs whose `mac` is empty get a MAC from the manager's range.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Configuration.
    pub config: VmConfig,
    /// Repository for its files.
    pub repository: Option<RepositoryId>,
    /// Pool.
    pub pool: Option<PoolId>,
    /// Assigned server (must be in the pool, if both are set).
    pub server: Option<ServerId>,
    /// Anti-affinity group.
    pub anti_affinity_group: Option<AntiAffinityGroupId>,
}

impl VmSpec {
    /// A VM named `name` with `config`, in no pool yet.
    pub fn new(name: &str, config: VmConfig) -> Self {
        VmSpec {
            name: name.to_owned(),
            description: String::new(),
            config,
            repository: None,
            pool: None,
            server: None,
            anti_affinity_group: None,
        }
    }
}

/// Where a clone goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloneOptions {
    /// Pool of the new VM.
    pub pool: Option<PoolId>,
    /// Repository for the cloned disks (default: the source's).
    pub repository: Option<RepositoryId>,
    /// Networks for the new VNICs, replacing the source's networks in order.
    pub networks: Option<Vec<Option<NetworkId>>>,
}

/// How to stop a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOptions {
    /// How long the guest may take to power off.
    pub timeout: Duration,
    /// Destroy the domain if the guest did not power off in time.
    pub force_after_timeout: bool,
}

impl Default for StopOptions {
    fn default() -> Self {
        StopOptions { timeout: Duration::from_secs(60), force_after_timeout: true }
    }
}

fn fill_macs(inv: &Inventory, range: MacRange, config: &mut VmConfig) -> Result<()> {
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

impl Manager {
    fn vm_checked(&self, vm: VmId, op: PowerOperation) -> Result<std::sync::Arc<Vm>> {
        let v = self.vm(vm)?;
        self.ensure_unlocked(v.object_ref())?;
        if !v.power_state.allows(op) {
            let expected: Vec<String> = PowerState::allowed_from(op).iter().map(|s| s.to_string()).collect();
            return Err(Error::state(v.object_ref(), expected.join(" or "), v.power_state));
        }
        Ok(v)
    }

    /// Build the hypervisor's view of a VM.
    pub fn domain_spec(&self, vm: VmId) -> Result<DomainSpec> {
        let st = self.state();
        let inv = &st.inv;
        let v = inv.get::<Vm>(vm)?;
        let c = &v.config;
        let mut disks = Vec::new();
        let mut mappings = c.disks.clone();
        mappings.sort_by_key(|d| d.slot);
        for d in &mappings {
            let slot = d.slot;
            match d.target {
                DiskTarget::VirtualDisk(id) => {
                    let disk = inv.get::<VirtualDisk>(id)?;
                    disks.push(DiskSpec { slot, path: disk.path.clone(), read_only: false, cdrom: false });
                }
                DiskTarget::Cdrom(id) => {
                    let iso = inv.get::<VirtualCdrom>(id)?;
                    disks.push(DiskSpec { slot, path: iso.path.clone(), read_only: true, cdrom: true });
                }
                DiskTarget::EmptyCdrom => {
                    disks.push(DiskSpec { slot, path: String::new(), read_only: true, cdrom: true });
                }
            }
        }
        let mut nics = Vec::new();
        for n in &c.vnics {
            let bridge = match n.network {
                Some(net) => Some(inv.get::<Network>(net)?.bridge.clone()),
                None => None,
            };
            nics.push(NicSpec { mac: n.mac.clone(), bridge });
        }
        Ok(DomainSpec {
            uuid: v.id,
            name: v.name.clone(),
            domain_type: c.domain_type,
            vcpus: c.vcpus,
            max_vcpus: c.max_vcpus,
            memory_mib: c.memory_mib,
            max_memory_mib: c.max_memory_mib,
            disks,
            nics,
            kernel: c.pv_kernel.as_ref().map(|k| k.kernel.clone()),
            initrd: c.pv_kernel.as_ref().and_then(|k| k.initrd.clone()),
            cmdline: c.pv_kernel.as_ref().map(|k| k.cmdline.clone()),
            restart_actions: c.restart_actions,
        })
    }

    /// Create a VM from scratch. The job's result is the VM.
    pub fn create_vm(&self, spec: VmSpec) -> Result<JobHandle> {
        let mut vm = Vm {
            id: VmId::new(),
            name: spec.name,
            description: spec.description,
            config: spec.config,
            repository: spec.repository,
            pool: spec.pool,
            server: spec.server,
            power_state: PowerState::Stopped,
            domid: None,
            anti_affinity_group: spec.anti_affinity_group,
        };
        {
            let st = self.state();
            fill_macs(&st.inv, st.mac_range, &mut vm.config)?;
        }
        self.create_object(Object::Vm(vm))
    }

    /// Create a VM by cloning a template (its disks are copied, MACs freshly allocated).
    /// The job's result is the new VM.
    pub fn clone_template(&self, template: TemplateId, name: &str, opts: CloneOptions) -> Result<JobHandle> {
        let t = self.get::<Template>(template)?;
        self.clone_into_vm(
            &t.name,
            t.object_ref(),
            t.repository,
            t.config.clone(),
            t.disks.clone(),
            name,
            opts,
        )
    }

    /// Clone a stopped VM into a new VM. The job's result is the new VM.
    pub fn clone_vm(&self, vm: VmId, name: &str, opts: CloneOptions) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Start)?;
        let repo =
            v.repository.ok_or_else(|| Error::invalid("vm", "the VM has no repository to clone from"))?;
        let disks: Vec<VirtualDiskId> = v
            .config
            .disks
            .iter()
            .filter_map(|d| if let DiskTarget::VirtualDisk(x) = d.target { Some(x) } else { None })
            .collect();
        let mut opts = opts;
        if opts.pool.is_none() {
            opts.pool = v.pool;
        }
        self.clone_into_vm(&v.name, v.object_ref(), repo, v.config.clone(), disks, name, opts)
    }

    #[allow(clippy::too_many_arguments)]
    fn clone_into_vm(
        &self,
        source_name: &str,
        source: ObjectRef,
        source_repo: RepositoryId,
        mut config: VmConfig,
        source_disks: Vec<VirtualDiskId>,
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
        let new_disks: Vec<VirtualDiskId> = source_disks.iter().map(|_| VirtualDiskId::new()).collect();
        for (i, (src, dst)) in source_disks.iter().copied().zip(new_disks.iter().copied()).enumerate() {
            let vm_name = name.to_owned();
            spec = spec.step(&format!("clone disk {}", i + 1), move |ctx| {
                clone_disk(ctx, src, dst, repo, &format!("{vm_name}-disk{}", i + 1))
            });
        }
        let name = name.to_owned();
        spec = spec.step("create VM", move |ctx| {
            let range = ctx.mgr.mac_range();
            ctx.tx(|tx| {
                for d in &mut config.disks {
                    if let DiskTarget::VirtualDisk(old) = d.target {
                        if let Some(pos) = source_disks.iter().position(|x| *x == old) {
                            d.target = DiskTarget::VirtualDisk(new_disks[pos]);
                        }
                    }
                }
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
        let source_disks: Vec<VirtualDiskId> = v
            .config
            .disks
            .iter()
            .filter_map(|d| if let DiskTarget::VirtualDisk(x) = d.target { Some(x) } else { None })
            .collect();
        let new_disks: Vec<VirtualDiskId> = source_disks.iter().map(|_| VirtualDiskId::new()).collect();
        let tid = TemplateId::new();
        let target = ObjectRef::new(ObjectKind::Template, tid);
        let mut spec = JobSpec::new(
            "VmToTemplate",
            &format!("Make template {name} from {}", v.name),
            vec![target, v.object_ref()],
        );
        for (i, (src, dst)) in source_disks.iter().copied().zip(new_disks.iter().copied()).enumerate() {
            let tname = name.to_owned();
            spec = spec.step(&format!("clone disk {}", i + 1), move |ctx| {
                clone_disk(ctx, src, dst, repo, &format!("{tname}-disk{}", i + 1))
            });
        }
        let name = name.to_owned();
        let mut config = v.config.clone();
        spec = spec.step("create template", move |ctx| {
            for d in &mut config.disks {
                if let DiskTarget::VirtualDisk(old) = d.target {
                    if let Some(pos) = source_disks.iter().position(|x| *x == old) {
                        d.target = DiskTarget::VirtualDisk(new_disks[pos]);
                    }
                }
            }
            for n in &mut config.vnics {
                n.mac = "00:00:00:00:00:00".into();
            }
            ctx.tx(|tx| {
                tx.put(Object::Template(Template {
                    id: tid,
                    name: name.clone(),
                    description: String::new(),
                    repository: repo,
                    config: config.clone(),
                    disks: new_disks.clone(),
                    from_assembly: None,
                    from_vm: Some(vm),
                }))
            })?;
            ctx.set_result(target);
            Ok(())
        });
        self.submit(spec)
    }

    /// Start a VM on a server chosen by its pool's start policy. The job's result is the VM.
    pub fn start_vm(&self, vm: VmId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Start)?;
        if v.pool.is_none() && v.server.is_none() {
            return Err(Error::invalid("vm", "assign the VM to a pool or a server before starting it"));
        }
        let r = v.object_ref();
        self.submit(
            JobSpec::new("StartVm", &format!("Start VM {}", v.name), vec![r])
                .step("place", move |ctx| {
                    let v = ctx.mgr.vm(vm)?;
                    let server = ctx.mgr.pick_server(&v, |_| true)?;
                    ctx.message(format!("placing on {server}"));
                    ctx.tx(|tx| {
                        tx.edit::<Vm>(vm, |v| {
                            v.power_state = PowerState::Starting;
                            v.server = Some(server);
                        })
                    })?;
                    Ok(())
                })
                .step("start domain", move |ctx| {
                    let server = ctx
                        .mgr
                        .vm(vm)?
                        .server
                        .ok_or_else(|| Error::Internal { message: "unplaced".into() })?;
                    let spec = ctx.mgr.domain_spec(vm)?;
                    ctx.will_do(Undo::Domain(DomainUndo::Destroy { server: server.0, vm: vm.0 }))?;
                    let domid = ctx.hv(server)?.create_domain(&spec)?;
                    set_state(ctx, vm, PowerState::Running, Some(domid))?;
                    ctx.set_result(r);
                    Ok(())
                }),
        )
    }

    /// Gracefully stop a VM (with [`StopOptions::default`]).
    pub fn stop_vm(&self, vm: VmId) -> Result<JobHandle> {
        self.stop_vm_with(vm, StopOptions::default())
    }

    /// Gracefully stop a VM, destroying it after the timeout if `opts.force_after_timeout`.
    pub fn stop_vm_with(&self, vm: VmId, opts: StopOptions) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Stop)?;
        let server =
            v.server.ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
        self.submit(
            JobSpec::new("StopVm", &format!("Stop VM {}", v.name), vec![v.object_ref()])
                .step("request shutdown", move |ctx| {
                    set_state(ctx, vm, PowerState::Stopping, None).map(|_| ())
                })
                .step("wait for power off", move |ctx| {
                    let hv = ctx.hv(server)?;
                    match hv.shutdown(vm, opts.timeout) {
                        Ok(()) => {}
                        Err(Error::Timeout { .. }) if opts.force_after_timeout => {
                            ctx.message("guest did not stop in time; destroying");
                            hv.destroy(vm)?;
                        }
                        Err(e) => return Err(e),
                    }
                    set_state(ctx, vm, PowerState::Stopped, None)
                }),
        )
    }

    /// Destroy a VM's domain at once (hard power off).
    pub fn kill_vm(&self, vm: VmId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Kill)?;
        let server = v.server;
        let was = v.power_state;
        self.submit(JobSpec::new("KillVm", &format!("Kill VM {}", v.name), vec![v.object_ref()]).step(
            "destroy",
            move |ctx| {
                if was != PowerState::Suspended {
                    if let Some(s) = server {
                        let hv = ctx.hv(s)?;
                        if hv.list_domains()?.iter().any(|d| d.uuid == Some(vm)) {
                            hv.destroy(vm)?;
                        }
                    }
                }
                set_state(ctx, vm, PowerState::Stopped, None)
            },
        ))
    }

    /// Gracefully reboot a VM.
    pub fn restart_vm(&self, vm: VmId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Restart)?;
        let server =
            v.server.ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
        self.submit(
            JobSpec::new("RestartVm", &format!("Restart VM {}", v.name), vec![v.object_ref()])
                .step("reboot", move |ctx| ctx.hv(server)?.reboot(vm, Duration::from_secs(60))),
        )
    }

    /// Pause a running VM in memory.
    pub fn pause_vm(&self, vm: VmId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Pause)?;
        let server =
            v.server.ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
        self.submit(JobSpec::new("PauseVm", &format!("Pause VM {}", v.name), vec![v.object_ref()]).step(
            "pause",
            move |ctx| {
                ctx.will_do(Undo::Domain(DomainUndo::Unpause { server: server.0, vm: vm.0 }))?;
                ctx.hv(server)?.pause(vm)?;
                let domid = ctx.mgr.vm(vm)?.domid;
                set_state(ctx, vm, PowerState::Paused, domid)
            },
        ))
    }

    fn suspend_path(&self, vm: &Vm) -> Result<String> {
        let repo = vm
            .repository
            .ok_or_else(|| Error::invalid("vm", "suspending needs the VM to have a repository"))?;
        Ok(format!("{}/VirtualMachines/{}/suspend.img", repository_path(repo), vm.id.0.simple()))
    }

    /// Suspend a running VM to a file in its repository.
    pub fn suspend_vm(&self, vm: VmId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Suspend)?;
        let server =
            v.server.ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
        let path = self.suspend_path(&v)?;
        self.submit(JobSpec::new("SuspendVm", &format!("Suspend VM {}", v.name), vec![v.object_ref()]).step(
            "save",
            move |ctx| {
                ctx.hv(server)?.suspend(vm, &path)?;
                set_state(ctx, vm, PowerState::Suspended, None)
            },
        ))
    }

    /// Resume a paused or suspended VM.
    pub fn resume_vm(&self, vm: VmId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Resume)?;
        let server = v.server.ok_or_else(|| Error::invalid("vm", "the VM has no server to resume on"))?;
        let was = v.power_state;
        let path = self.suspend_path(&v).ok();
        self.submit(JobSpec::new("ResumeVm", &format!("Resume VM {}", v.name), vec![v.object_ref()]).step(
            "resume",
            move |ctx| {
                let hv = ctx.hv(server)?;
                if was == PowerState::Paused {
                    hv.unpause(vm)?;
                    let domid = ctx.mgr.vm(vm)?.domid;
                    set_state(ctx, vm, PowerState::Running, domid)
                } else {
                    let spec = ctx.mgr.domain_spec(vm)?;
                    let path = path.ok_or_else(|| Error::invalid("vm", "no suspend image"))?;
                    ctx.will_do(Undo::Domain(DomainUndo::Destroy { server: server.0, vm: vm.0 }))?;
                    let domid = hv.restore(&spec, &path)?;
                    set_state(ctx, vm, PowerState::Running, Some(domid))
                }
            },
        ))
    }

    /// Live-migrate a running VM (or move a stopped one) to another server of its pool.
    pub fn migrate_vm(&self, vm: VmId, target: ServerId) -> Result<JobHandle> {
        self.migrate_vm_child(vm, target, None)
    }

    pub(crate) fn migrate_vm_child(
        &self,
        vm: VmId,
        target: ServerId,
        parent: Option<JobId>,
    ) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Migrate)?;
        let t = self.server(target)?;
        if v.server == Some(target) {
            return Err(Error::invalid("target", format!("VM {:?} is already on {:?}", v.name, t.name)));
        }
        if v.pool.is_none() || t.pool != v.pool {
            return Err(Error::invalid("target", "VMs migrate between servers of their own pool"));
        }
        if t.maintenance_mode {
            return Err(Error::state(t.object_ref(), "not in maintenance mode", "in maintenance mode"));
        }
        let running = v.power_state == PowerState::Running;
        let source = v.server;
        let spec =
            JobSpec::new("MigrateVm", &format!("Migrate VM {} to {}", v.name, t.name), vec![v.object_ref()])
                .parent(parent)
                .step("migrate", move |ctx| {
                    let v = ctx.mgr.vm(vm)?;
                    ctx.mgr.server(target)?;
                    if running {
                        let from = source
                            .ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
                        // Capacity and anti-affinity on the target, as for a start.
                        ctx.mgr.pick_server(&v, |s| s == target)?;
                        ctx.tx(|tx| {
                            tx.edit::<Vm>(vm, |v| v.power_state = PowerState::Migrating).map(|_| ())
                        })?;
                        ctx.will_do(Undo::Domain(DomainUndo::MigrateBack {
                            from: target.0,
                            to: from.0,
                            vm: vm.0,
                        }))?;
                        // The destination prepares and issues a ticket; the source sends the domain.
                        let spec = ctx.mgr.domain_spec(vm)?;
                        let dest_conn = ctx.hv(target)?;
                        let ticket = super::migration(&*dest_conn)?.prepare_incoming(&spec)?;
                        let sent =
                            ctx.hv(from).and_then(|src| super::migration(&*src)?.send(vm, &ticket, true));
                        if let Err(e) = sent {
                            let _ = super::migration(&*dest_conn).and_then(|m| m.cancel_incoming(&ticket));
                            return Err(e);
                        }
                        let domid = ctx
                            .hv(target)?
                            .list_domains()?
                            .into_iter()
                            .find(|d| d.uuid == Some(vm))
                            .map(|d| d.domid);
                        ctx.tx(|tx| {
                            tx.edit::<Vm>(vm, |v| {
                                v.server = Some(target);
                                v.power_state = PowerState::Running;
                                v.domid = domid;
                            })
                            .map(|_| ())
                        })
                    } else {
                        ctx.tx(|tx| tx.edit::<Vm>(vm, |v| v.server = Some(target)).map(|_| ()))
                    }
                });
        self.submit(spec)
    }

    /// Edit a VM. While it runs, only name, description, HA, memory (≤ max) and vCPUs (≤ max) may change;
    /// memory and vCPU changes are applied to the running domain.
    pub fn edit_vm(&self, vm: VmId, f: impl FnOnce(&mut Vm)) -> Result<JobHandle> {
        let old = self.vm(vm)?;
        let mut new = (*old).clone();
        f(&mut new);
        if new.id != old.id
            || new.power_state != old.power_state
            || new.server != old.server
            || new.domid != old.domid
        {
            return Err(Error::invalid(
                "vm",
                "id, power state, server and domid are changed by operations, not edits",
            ));
        }
        let running = old.power_state.is_resident();
        if running {
            let mut a = old.config.clone();
            let mut b = new.config.clone();
            a.memory_mib = 0;
            b.memory_mib = 0;
            a.vcpus = 0;
            b.vcpus = 0;
            a.high_availability = false;
            b.high_availability = false;
            if a != b || new.pool != old.pool || new.repository != old.repository {
                return Err(Error::state(
                    old.object_ref(),
                    "Stopped (only memory, vCPUs, HA, name and description change while running)",
                    old.power_state,
                ));
            }
        }
        {
            let mut st = self.state();
            let range = st.mac_range;
            let st = &mut *st;
            fill_macs(&st.inv, range, &mut new.config)?;
        }
        let obj = Object::Vm(new.clone());
        obj.validate()?;
        self.state().inv.check_put(&obj)?;
        let (mem_changed, cpu_changed) =
            (new.config.memory_mib != old.config.memory_mib, new.config.vcpus != old.config.vcpus);
        self.submit(JobSpec::new("EditVm", &format!("Edit VM {}", new.name), vec![old.object_ref()]).step(
            "edit",
            move |ctx| {
                if running {
                    let server = new
                        .server
                        .ok_or_else(|| Error::Internal { message: "running VM without server".into() })?;
                    let hv = ctx.hv(server)?;
                    if mem_changed {
                        hv.set_memory(vm, new.config.memory_mib)?;
                    }
                    if cpu_changed {
                        hv.set_vcpus(vm, new.config.vcpus)?;
                    }
                }
                ctx.tx(|tx| tx.put(obj))
            },
        ))
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

fn set_state(ctx: &StepCtx<'_>, vm: VmId, state: PowerState, domid: Option<u32>) -> Result<()> {
    ctx.tx(|tx| {
        tx.edit::<Vm>(vm, |v| {
            v.power_state = state;
            v.domid = domid;
        })
        .map(|_| ())
    })
}

fn clone_disk(
    ctx: &StepCtx<'_>,
    src: VirtualDiskId,
    dst: VirtualDiskId,
    repo: RepositoryId,
    name: &str,
) -> Result<()> {
    let source = ctx.mgr.get::<VirtualDisk>(src)?;
    let server = ctx.mgr.storage_server(source.repository)?;
    let path = virtual_disk_path(repo, dst);
    ctx.message(format!("copying {} to {name}", source.name));
    ctx.will_do(Undo::Storage(StorageUndo::DeleteFile { server: server.0, path: path.clone() }))?;
    super::file_storage(&*ctx.hv(server)?)?.copy_file(&source.path, &path)?;
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
