//! The power lifecycle: start, stop, kill, restart, pause, suspend and resume.

use std::sync::Arc;
use std::time::Duration;

use super::set_state;
use crate::job::{DomainUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::storage::repository_path;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// How to stop a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
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

impl Manager {
    /// Start a VM on a server chosen by its pool's start policy. The job's result is the VM.
    pub fn start_vm(&self, vm: VmId) -> Result<JobHandle> {
        self.start_on(vm, None)
    }

    /// Start a VM on `server`, a server of its pool (or its own server, for a VM outside any pool;
    /// a VM assigned to neither is assigned to `server` by starting there), with the checks of placement on that one server: running and connected, not in maintenance
    /// mode, the VM's storage there, no VM of its anti-affinity group there, and its memory free
    /// ([`Error::InsufficientResources`] with the reason otherwise). The job's result is the VM.
    pub fn start_vm_on(&self, vm: VmId, server: ServerId) -> Result<JobHandle> {
        self.start_on(vm, Some(server))
    }

    fn start_on(&self, vm: VmId, target: Option<ServerId>) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Start)?;
        if v.pool.is_none() && v.server.is_none() && target.is_none() {
            return Err(Error::invalid(
                "vm",
                "assign the VM to a pool or a server before starting it, or start it on a server",
            ));
        }
        let summary = match target {
            Some(t) => {
                let s = self.server(t)?;
                let fits = match v.pool {
                    Some(p) => s.pool == Some(p),
                    None => v.server.is_none_or(|s| s == t),
                };
                if !fits {
                    return Err(Error::invalid(
                        "server",
                        format!(
                            "{} is not a server VM {} can start on (its pool's, or its own)",
                            s.name, v.name
                        ),
                    ));
                }
                format!("Start VM {} on {}", v.name, s.name)
            }
            None => format!("Start VM {}", v.name),
        };
        let r = v.object_ref();
        let last = v.server;
        self.submit(
            JobSpec::new("StartVm", &summary, vec![r])
                .step("place", move |ctx| {
                    let mut v = ctx.mgr.vm(vm)?;
                    if v.pool.is_none() && v.server.is_none() {
                        Arc::make_mut(&mut v).server = target;
                    }
                    let server = ctx.mgr.pick_server(&v, |s| target.is_none_or(|t| s == t))?;
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
                    // A domain of this VM kept shut down for inspection (on_crash = preserve) goes
                    // first: on the server it starts on, and on the one it last ran on.
                    // (The last server may be unreachable or gone: then there is nothing to do there.)
                    let kept_on = |s: ServerId| -> Result<bool> {
                        Ok(ctx
                            .hv(s)?
                            .list_domains()?
                            .into_iter()
                            .any(|d| d.uuid == Some(vm) && !crate::manager::servers::is_live(d.state)))
                    };
                    for s in [Some(server), last.filter(|l| *l != server)].into_iter().flatten() {
                        let kept = match kept_on(s) {
                            Ok(k) => k,
                            Err(e) if s == server => return Err(e),
                            Err(_) => false,
                        };
                        if kept {
                            ctx.message(format!("destroying the shut-down domain kept on {s}"));
                            ctx.hv(s)?.destroy(vm)?;
                        }
                    }
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
        let old = v.domid;
        let action = v.config.restart_actions.on_reboot;
        self.submit(
            JobSpec::new("RestartVm", &format!("Restart VM {}", v.name), vec![v.object_ref()])
                .step("reboot", move |ctx| ctx.hv(server)?.reboot(vm, Duration::from_secs(60)))
                .step("follow the new domain", move |ctx| {
                    // The toolstack rebuilds the domain with a new domid (on_reboot = restart), or
                    // destroys it, or keeps it shut down, as the VM's on_reboot action says.
                    let hv = ctx.hv(server)?;
                    let deadline = std::time::Instant::now() + Duration::from_secs(90);
                    loop {
                        let mine: Vec<_> =
                            hv.list_domains()?.into_iter().filter(|d| d.uuid == Some(vm)).collect();
                        match action {
                            RestartAction::Restart => {
                                if let Some(d) = mine.iter().find(|d| {
                                    Some(d.domid) != old && crate::manager::servers::is_live(d.state)
                                }) {
                                    return set_state(ctx, vm, PowerState::Running, Some(d.domid));
                                }
                            }
                            RestartAction::Destroy if mine.is_empty() => {
                                return set_state(ctx, vm, PowerState::Stopped, None);
                            }
                            RestartAction::Preserve
                                if mine.iter().all(|d| !crate::manager::servers::is_live(d.state)) =>
                            {
                                ctx.message("the domain is kept shut down for inspection");
                                return set_state(ctx, vm, PowerState::Stopped, None);
                            }
                            _ => {}
                        }
                        if std::time::Instant::now() >= deadline {
                            return Err(Error::Timeout {
                                what: format!("VM {vm}'s domain after its reboot ({action:?})"),
                                millis: 90_000,
                            });
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }),
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

    /// Resume a paused or suspended VM (a suspended one on the server it was suspended on).
    pub fn resume_vm(&self, vm: VmId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Resume)?;
        let server = v.server.ok_or_else(|| Error::invalid("vm", "the VM has no server to resume on"))?;
        self.resume_on(v, server)
    }

    /// Resume a suspended VM on `target`, another server of its pool that has its repository (or
    /// the one it was suspended on): the image is in the repository, which both servers mount.
    pub fn resume_vm_on(&self, vm: VmId, target: ServerId) -> Result<JobHandle> {
        let v = self.vm_checked(vm, PowerOperation::Resume)?;
        if v.power_state != PowerState::Suspended {
            return Err(Error::state(v.object_ref(), "Suspended", v.power_state));
        }
        let t = self.server(target)?;
        if v.server != Some(target) && (v.pool.is_none() || t.pool != v.pool) {
            return Err(Error::invalid("target", "a suspended VM resumes on a server of its own pool"));
        }
        if t.maintenance_mode {
            return Err(Error::state(t.object_ref(), "not in maintenance mode", "in maintenance mode"));
        }
        self.resume_on(v, target)
    }

    fn resume_on(&self, v: std::sync::Arc<Vm>, server: ServerId) -> Result<JobHandle> {
        let vm = v.id;
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
                    // Capacity and anti-affinity on the server, as for a start.
                    let v = ctx.mgr.vm(vm)?;
                    ctx.mgr.pick_server(&v, |s| s == server)?;
                    let spec = ctx.mgr.domain_spec(vm)?;
                    let path = path.ok_or_else(|| Error::invalid("vm", "no suspend image"))?;
                    ctx.will_do(Undo::Domain(DomainUndo::Destroy { server: server.0, vm: vm.0 }))?;
                    let domid = hv.restore(&spec, &path)?;
                    ctx.tx(|tx| {
                        tx.edit::<Vm>(vm, |v| {
                            v.power_state = PowerState::Running;
                            v.domid = Some(domid);
                            v.server = Some(server);
                        })
                        .map(drop)
                    })
                }
            },
        ))
    }
}
