//! Following domains that change without a job: a guest that powers off, reboots or crashes, and
//! the restart action the server's toolstack then applies (Xen's `on_poweroff`, `on_reboot`,
//! `on_crash`): a new domain with a new domid, which the manager follows so the VM stays Running;
//! the domain destroyed, and the VM Stopped; or the domain kept shut down for inspection.
//!
//! Notices can arrive late and in any order relative to what the manager reads from the server, so
//! every decision is checked against the server's domain list and the VM as it is at that moment;
//! a VM a job is working on is left to that job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::{DomainRunState, ShutdownReason};
use crate::manager::{lock, Manager};
use crate::model::*;
use crate::Result;

/// How long a toolstack may take to rebuild a domain whose guest rebooted or crashed with the
/// restart action: the VM stays Running meanwhile.
const RESTART_WAIT: Duration = Duration::from_secs(90);
/// A domain vanished without the manager seeing why (no shutdown state was seen): how long to
/// look for a rebuilt one before the VM counts as stopped, when one of its actions restarts.
const UNEXPLAINED_WAIT: Duration = Duration::from_secs(5);
/// How often the server's domain list is read while waiting.
const POLL: Duration = Duration::from_millis(250);

/// The restart action a VM's configuration gives for `reason`.
pub(crate) fn restart_action(actions: RestartActions, reason: ShutdownReason) -> RestartAction {
    match reason {
        ShutdownReason::Poweroff => actions.on_poweroff,
        ShutdownReason::Reboot => actions.on_reboot,
        ShutdownReason::Crash | ShutdownReason::Watchdog => actions.on_crash,
        // A suspended domain is saved by whoever suspended it; a soft reset rebuilds the domain.
        ShutdownReason::Suspend => RestartAction::Preserve,
        ShutdownReason::SoftReset => RestartAction::Restart,
    }
}

/// Whether a domain in this state is a running guest (not shut down, not being destroyed).
pub(crate) fn is_live(state: DomainRunState) -> bool {
    !matches!(state, DomainRunState::Shutdown(_) | DomainRunState::Dying)
}

fn is_up(state: PowerState) -> bool {
    matches!(state, PowerState::Running | PowerState::Paused)
}

impl Manager {
    fn job_holds(&self, vm: VmId) -> bool {
        lock(&self.inner.state).locks.contains_key(&vm.0)
    }

    /// A domain's run state changed. A shutdown is remembered (its reason decides what the
    /// domain's disappearance means); a crash raises an event; a domain kept shut down for
    /// inspection leaves its VM Stopped.
    pub(crate) fn domain_state_changed(
        &self,
        server: ServerId,
        vm: VmId,
        domid: u32,
        state: DomainRunState,
    ) -> Result<()> {
        let DomainRunState::Shutdown(reason) = state else { return Ok(()) };
        lock(&self.inner.state).shutdowns.insert(vm, (domid, reason));
        if self.job_holds(vm) {
            return Ok(());
        }
        let v = self.vm(vm)?;
        if v.server != Some(server) || v.domid != Some(domid) || !is_up(v.power_state) {
            return Ok(());
        }
        let action = restart_action(v.config.restart_actions, reason);
        let on = self.server(server).map(|s| s.name.clone()).unwrap_or_else(|_| server.to_string());
        let crashed = matches!(reason, ShutdownReason::Crash | ShutdownReason::Watchdog);
        if crashed {
            self.system_tx(|tx| {
                tx.event(
                    v.object_ref(),
                    Severity::Error,
                    "vm.crashed",
                    format!("VM {} crashed on {on} ({reason:?}); its on_crash action is {action:?}", v.name),
                );
                Ok(())
            })?;
        }
        if action == RestartAction::Preserve {
            self.mark_stopped(
                server,
                vm,
                Some(domid),
                format!(
                    "VM {} shut down on {on} ({reason:?}); its domain {domid} is kept there for inspection \
                     (starting the VM again destroys it)",
                    v.name
                ),
            )?;
        }
        Ok(())
    }

    /// A VM's domain vanished from its server without a job doing it. With `domid`, only if that is
    /// still the VM's domain: a late notice about a domain a job has already replaced (stop, then
    /// start again) changes nothing. When the domain's restart action rebuilds it (a guest reboot,
    /// a crash with `on_crash = restart`), the VM stays Running while the manager waits for the new
    /// domain and follows it; otherwise the VM is Stopped.
    pub(crate) fn domain_gone(&self, server: ServerId, vm: VmId, domid: Option<u32>) -> Result<()> {
        if self.job_holds(vm) {
            return Ok(()); // A job is changing this VM; it records the outcome itself.
        }
        let v = self.vm(vm)?;
        if v.server != Some(server) || !is_up(v.power_state) {
            return Ok(());
        }
        if domid.is_some() && v.domid.is_some() && domid != v.domid {
            return Ok(());
        }
        let seen = {
            let mut st = lock(&self.inner.state);
            match st.shutdowns.get(&vm) {
                Some(&(d, r)) if domid.is_none_or(|x| x == d) => {
                    st.shutdowns.remove(&vm);
                    Some(r)
                }
                _ => None,
            }
        };
        let actions = v.config.restart_actions;
        let wait = match seen {
            Some(r) if restart_action(actions, r) == RestartAction::Restart => Some(RESTART_WAIT),
            Some(_) => None,
            // (Reconciling, not from a notice: the domain went unseen; a rebuilt one that comes
            // up later is found running by its own notice.)
            None if domid.is_some()
                && [actions.on_reboot, actions.on_crash].contains(&RestartAction::Restart) =>
            {
                Some(UNEXPLAINED_WAIT)
            }
            None => None,
        };
        let why = match seen {
            Some(ShutdownReason::Poweroff) => "the guest powered off",
            Some(ShutdownReason::Crash | ShutdownReason::Watchdog) => "the guest crashed",
            Some(ShutdownReason::Reboot) => "the guest rebooted and its on_reboot action destroys it",
            _ => "guest shutdown or crash",
        };
        let Some(wait) = wait else {
            return self.mark_stopped(
                server,
                vm,
                v.domid,
                format!("VM {} stopped outside the manager ({why})", v.name),
            );
        };
        // Wait on a blocking thread of the runtime, so notices of other domains go on being handled.
        let weak = Arc::downgrade(&self.inner);
        let old = v.domid;
        let deadline = Instant::now() + wait;
        self.inner.handle.spawn_blocking(move || loop {
            let Some(inner) = weak.upgrade() else { return };
            let mgr = Manager { inner };
            if mgr.is_closed() || mgr.job_holds(vm) {
                return;
            }
            match mgr.vm(vm) {
                Ok(v) if v.server == Some(server) && v.domid == old && is_up(v.power_state) => {}
                _ => return, // Followed already, or changed by someone else.
            }
            let rebuilt = mgr.hypervisor(server).and_then(|hv| hv.list_domains()).ok().and_then(|doms| {
                doms.into_iter().find(|d| d.uuid == Some(vm) && Some(d.domid) != old && is_live(d.state))
            });
            if let Some(d) = rebuilt {
                let _ = mgr.follow(server, vm, old, d.domid, seen);
                return;
            }
            if Instant::now() >= deadline {
                let name = mgr.vm(vm).map(|v| v.name.clone()).unwrap_or_default();
                let _ = mgr.mark_stopped(
                    server,
                    vm,
                    old,
                    format!("VM {name} stopped outside the manager ({why}; no new domain came up)"),
                );
                return;
            }
            drop(mgr);
            std::thread::sleep(POLL);
        });
        Ok(())
    }

    /// A domain of a VM appeared on a server without a job making it: the toolstack rebuilt it after
    /// a reboot or crash, or it was started outside the manager. The VM follows it, if it is there
    /// now and running.
    pub(crate) fn domain_appeared(&self, server: ServerId, vm: VmId, domid: u32) -> Result<()> {
        if self.job_holds(vm) {
            return Ok(());
        }
        let v = self.vm(vm)?;
        if v.server != Some(server)
            || v.domid == Some(domid)
            || !matches!(v.power_state, PowerState::Running | PowerState::Paused | PowerState::Stopped)
        {
            return Ok(());
        }
        let hv = self.hypervisor(server)?;
        let Some(d) = hv.list_domains()?.into_iter().find(|d| d.uuid == Some(vm) && d.domid == domid) else {
            return Ok(()); // A late notice of a domain that is gone again.
        };
        if !is_live(d.state) {
            return Ok(());
        }
        let seen = lock(&self.inner.state).shutdowns.get(&vm).map(|&(_, r)| r);
        self.follow(server, vm, v.domid, domid, seen)
    }

    /// The VM's domain on `server` is now `domid` (it was `old`): record it, Running.
    fn follow(
        &self,
        server: ServerId,
        vm: VmId,
        old: Option<u32>,
        domid: u32,
        reason: Option<ShutdownReason>,
    ) -> Result<()> {
        let on = self.server(server).map(|s| s.name.clone()).unwrap_or_else(|_| server.to_string());
        let followed = self.system_tx(|tx| {
            let v = tx.inv.get::<Vm>(vm)?.clone();
            if v.server != Some(server) || v.domid != old || v.domid == Some(domid) {
                return Ok(false); // Someone else followed or changed it meanwhile.
            }
            let was_stopped = v.power_state == PowerState::Stopped;
            tx.edit::<Vm>(vm, |v| {
                v.domid = Some(domid);
                // A rebuilt domain is paused only while the toolstack builds it, then runs.
                v.power_state = PowerState::Running;
            })?;
            let summary = match (old, reason) {
                (Some(o), Some(r)) => format!(
                    "VM {} restarted on {on} after a {} (domain {o} replaced by {domid})",
                    v.name,
                    match r {
                        ShutdownReason::Reboot => "reboot",
                        ShutdownReason::Crash | ShutdownReason::Watchdog => "crash",
                        _ => "shutdown",
                    }
                ),
                (Some(o), None) => format!("VM {} runs on {on} as domain {domid} (was {o})", v.name),
                (None, _) if was_stopped => {
                    format!("VM {} found running on {on} as domain {domid}", v.name)
                }
                (None, _) => format!("VM {} runs on {on} as domain {domid}", v.name),
            };
            tx.event(v.object_ref(), Severity::Info, "vm.restarted", summary);
            Ok(true)
        })?;
        if followed {
            lock(&self.inner.state).shutdowns.remove(&vm);
        }
        Ok(())
    }

    /// Mark a VM Stopped (its domain `domid` is gone or kept shut down), with a Warning event,
    /// unless it changed meanwhile.
    fn mark_stopped(&self, server: ServerId, vm: VmId, domid: Option<u32>, summary: String) -> Result<()> {
        self.system_tx(|tx| {
            let v = tx.inv.get::<Vm>(vm)?.clone();
            if v.server != Some(server) || v.domid != domid || !is_up(v.power_state) {
                return Ok(());
            }
            tx.edit::<Vm>(vm, |v| {
                v.power_state = PowerState::Stopped;
                v.domid = None;
            })?;
            tx.event(v.object_ref(), Severity::Warning, "vm.stopped", summary);
            Ok(())
        })
    }

    /// Align VM power states and domids with what the server reports: a VM whose domain is gone
    /// stops (or waits for its rebuilt domain), a VM whose domain was rebuilt follows the new domid,
    /// and a stopped VM whose domain runs there is found running.
    pub(crate) fn reconcile_domains(&self, server: ServerId) -> Result<()> {
        let hv = self.hypervisor(server)?;
        let live: Vec<(VmId, u32)> = hv
            .list_domains()?
            .into_iter()
            .filter(|d| is_live(d.state))
            .filter_map(|d| d.uuid.map(|u| (u, d.domid)))
            .collect();
        for vm in self.list::<Vm>(|v| v.server == Some(server)) {
            match live.iter().find(|(u, _)| *u == vm.id) {
                None if is_up(vm.power_state) => self.domain_gone(server, vm.id, None)?,
                Some(&(_, domid)) if vm.domid != Some(domid) => self.domain_appeared(server, vm.id, domid)?,
                _ => {}
            }
        }
        // Domains of VMs the manager records elsewhere.
        for (vm, domid) in live {
            self.adopt_domain(server, vm, domid)?;
        }
        Ok(())
    }

    /// The VM's domain `domid` runs on `server` while the manager records the VM stopped, or on
    /// another server it cannot reach: record it on `server`, Running, and say why with an Info
    /// event: `ha.restarted_by_pool` for an HA-enabled VM whose server the manager cannot reach
    /// (the master of a clustered pool restarted it while the manager was away), `vm.found_running`
    /// otherwise. Nothing for a VM a job is working on, one running on a server the manager
    /// reaches, or a server outside the VM's pool. Whether it was recorded here.
    pub(crate) fn adopt_domain(&self, server: ServerId, vm: VmId, domid: u32) -> Result<bool> {
        if self.job_holds(vm) {
            return Ok(false);
        }
        let connected: std::collections::HashSet<ServerId> =
            lock(&self.inner.state).conns.keys().copied().collect();
        let Ok(host) = self.server(server) else { return Ok(false) };
        self.system_tx(|tx| {
            let Ok(v) = tx.inv.get::<Vm>(vm).cloned() else { return Ok(false) };
            let elsewhere = v.server.filter(|s| *s != server);
            let recorded_up_there = elsewhere.is_some_and(|s| connected.contains(&s)) && is_up(v.power_state);
            let here_already = v.server == Some(server);
            if here_already || recorded_up_there || (v.pool.is_some() && v.pool != host.pool) {
                return Ok(false);
            }
            let (kind, summary) = match elsewhere {
                Some(old) if v.config.high_availability && !connected.contains(&old) => (
                    "ha.restarted_by_pool",
                    format!(
                        "VM {} runs on {} as domain {domid}: the master of its pool restarted it there                          while its server was lost",
                        v.name, host.name
                    ),
                ),
                _ => ("vm.found_running", format!("VM {} found running on {} as domain {domid}", v.name, host.name)),
            };
            tx.edit::<Vm>(vm, |v| {
                v.server = Some(server);
                v.domid = Some(domid);
                v.power_state = PowerState::Running;
            })?;
            tx.event(v.object_ref(), Severity::Info, kind, summary);
            Ok(true)
        })
    }

    /// Where the VM's domain runs among the servers the manager reaches, if anywhere.
    pub(crate) fn find_domain(&self, vm: VmId) -> Option<(ServerId, u32)> {
        let conns: Vec<(ServerId, Arc<dyn crate::driver::ServerConnection>)> =
            lock(&self.inner.state).conns.iter().map(|(s, c)| (*s, c.clone())).collect();
        conns.into_iter().find_map(|(s, c)| {
            let doms = c.list_domains().ok()?;
            doms.into_iter().find(|d| d.uuid == Some(vm) && is_live(d.state)).map(|d| (s, d.domid))
        })
    }
}
