//! Server power control: a server powered off through its agent (the init system's clean
//! shutdown) and powered on again by a Wake-on-LAN magic packet that another server of its pool
//! sends on the management LAN. DPM takes both actions; administrators can too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::{ChassisPower, PowerController};
use crate::manager::jobs::JobSpec;
use crate::manager::{lock, JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// How long powering a server on waits for its agent to answer after the magic packet, unless the
/// caller says otherwise: a server's firmware, Xen and dom0 boot within it.
pub const POWER_ON_TIMEOUT: Duration = Duration::from_secs(900);

impl Manager {
    /// Power a server off cleanly through its agent. It must be running and run no VM (enter
    /// maintenance mode first, which evacuates it). The server is marked
    /// [`ServerPowerState::Stopped`], so losing its connection raises no alarm, and nothing
    /// polls it until [`Manager::power_on_server`].
    pub fn power_off_server(&self, server: ServerId) -> Result<JobHandle> {
        let s = self.server(server)?;
        if s.power_state != ServerPowerState::Running {
            return Err(Error::state(s.object_ref(), "Running", s.power_state));
        }
        check_no_resident_vms(self, &s)?;
        let spec =
            JobSpec::new("PowerOffServer", &format!("Power off server {}", s.name), vec![s.object_ref()])
                .step("power off", move |ctx| {
                    let s = ctx.mgr.server(server)?;
                    check_no_resident_vms(ctx.mgr, &s)?;
                    let hv = ctx.hv(server)?;
                    // Stopped before the call: the connection drops while the server goes down. If the
                    // call fails, the job's undo marks it Running again.
                    ctx.tx(|tx| {
                        tx.edit::<Server>(server, |s| s.power_state = ServerPowerState::Stopped).map(|_| ())
                    })?;
                    hv.power_off()?;
                    lock(&ctx.mgr.inner.state).conns.remove(&server);
                    ctx.tx(|tx| {
                        tx.event(
                            s.object_ref(),
                            Severity::Info,
                            "server.powered_off",
                            format!("Server {} is powering off", s.name),
                        );
                        Ok(())
                    })
                });
        self.submit(spec)
    }

    /// Power a powered-off server on: a Wake-on-LAN magic packet for its `wol_mac`, sent by a
    /// running server of its pool (or, in a pool of one, of this manager) out of the management
    /// network's bridge; then the job waits up to `timeout` (default [`POWER_ON_TIMEOUT`]) for the
    /// server's agent, reconnects, and the server rejoins: domains reconciled, repositories
    /// mounted again, network checked.
    ///
    /// A server with an out-of-band controller ([`Server::out_of_band`]) is powered on by it
    /// instead, through its management controller: no other server needs to run.
    pub fn power_on_server(&self, server: ServerId, timeout: Option<Duration>) -> Result<JobHandle> {
        let s = self.server(server)?;
        if s.power_state == ServerPowerState::Running {
            return Err(Error::state(s.object_ref(), "Stopped or Unreachable", s.power_state));
        }
        let timeout = timeout.unwrap_or(POWER_ON_TIMEOUT);
        let spec =
            JobSpec::new("PowerOnServer", &format!("Power on server {}", s.name), vec![s.object_ref()]);
        let spec = match s.out_of_band.clone() {
            Some(oob) => {
                let controller = self.power_controller(&oob.controller)?;
                spec.step("power on through the management controller", move |ctx| {
                    controller.power_on(&oob)?;
                    ctx.message(format!("powered on by {} at {}", oob.controller, oob.address));
                    Ok(())
                })
            }
            None => {
                let mac = s.wol_mac.clone().ok_or_else(|| {
                    Error::invalid(
                        "wol_mac",
                        format!(
                            "server {} has no Wake-on-LAN MAC or out-of-band controller to wake it by",
                            s.name
                        ),
                    )
                })?;
                let (sender, interface) = self.wake_sender(&s)?;
                let sender_name = self.server(sender)?.name.clone();
                spec.step("send the magic packet", move |ctx| {
                    ctx.hv(sender)?.wake_on_lan(&mac, &interface)?;
                    ctx.message(format!("magic packet for {mac} sent by {sender_name} on {interface}"));
                    Ok(())
                })
            }
        };
        let spec = spec.step("wait for the server", move |ctx| {
            let deadline = Instant::now() + timeout;
            loop {
                if ctx.aborting() {
                    return Err(Error::Aborted { job: ctx.job_id().to_string() });
                }
                let up = ctx.mgr.refresh_one(server).is_ok()
                    && ctx.mgr.server(server)?.power_state == ServerPowerState::Running;
                if up {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        what: format!("the agent of server {} to answer after the magic packet", s.name),
                        millis: timeout.as_millis() as u64,
                    });
                }
                std::thread::sleep(Duration::from_secs(2).min(timeout));
            }
            ctx.tx(|tx| {
                tx.event(
                    s.object_ref(),
                    Severity::Info,
                    "server.powered_on",
                    format!("Server {} is powered on and reachable", s.name),
                );
                Ok(())
            })
        });
        self.submit(spec)
    }

    /// Register an out-of-band power controller (replacing one of the same name). Servers name it
    /// in [`Server::out_of_band`]; it lives as long as this manager (register it again after
    /// opening the manager anew).
    pub fn register_power_controller(&self, controller: Arc<dyn PowerController>) -> Result<()> {
        OutOfBand { controller: controller.name().to_owned(), address: "check".into() }.check()?;
        let mut all = lock(&self.inner.power_controllers);
        all.retain(|c| c.name() != controller.name());
        all.push(controller);
        Ok(())
    }

    /// The names of the registered out-of-band power controllers.
    pub fn power_controllers(&self) -> Vec<String> {
        lock(&self.inner.power_controllers).iter().map(|c| c.name().to_owned()).collect()
    }

    /// The registered power controller named `name`; `InvalidArgument` if there is none.
    pub(crate) fn power_controller(&self, name: &str) -> Result<Arc<dyn PowerController>> {
        lock(&self.inner.power_controllers).iter().find(|c| c.name() == name).cloned().ok_or_else(|| {
            Error::invalid(
                "out_of_band.controller",
                format!("no power controller {name:?} is registered with this manager"),
            )
        })
    }

    /// A server's power as its management controller reports it now (out of band, whatever its
    /// agent says). `InvalidArgument` if the server has no out-of-band controller.
    pub fn out_of_band_power_state(&self, server: ServerId) -> Result<ChassisPower> {
        let s = self.server(server)?;
        let oob = s.out_of_band.clone().ok_or_else(|| {
            Error::invalid("out_of_band", format!("server {} has no out-of-band power controller", s.name))
        })?;
        self.power_controller(&oob.controller)?.power_state(&oob)
    }

    /// Which server sends the magic packet for `s`, and out of which interface: a running server
    /// this manager reaches, of `s`'s pool if it has one, on the management network's bridge.
    fn wake_sender(&self, s: &Server) -> Result<(ServerId, String)> {
        let st = self.state();
        let candidates: Vec<&Server> = st
            .inv
            .servers
            .iter()
            .map(|x| &**x)
            .filter(|x| {
                x.id != s.id && x.power_state == ServerPowerState::Running && st.conns.contains_key(&x.id)
            })
            .filter(|x| s.pool.is_none() || x.pool == s.pool)
            .collect();
        let sender = candidates.first().ok_or_else(|| Error::Conflict {
            reason: format!(
                "no running server {} can send the magic packet that wakes server {}",
                if s.pool.is_some() { "of its pool" } else { "of this manager" },
                s.name
            ),
        })?;
        let bridge = st
            .inv
            .networks
            .iter()
            .find(|n| n.functions.contains(&NetworkFunction::Management))
            .map(|n| n.bridge.clone())
            .ok_or_else(|| Error::Conflict { reason: "there is no management network".into() })?;
        Ok((sender.id, bridge))
    }
}

fn check_no_resident_vms(mgr: &Manager, s: &Server) -> Result<()> {
    let resident: Vec<String> = mgr
        .list::<Vm>(|v| v.server == Some(s.id) && v.power_state.is_resident())
        .iter()
        .map(|v| v.name.clone())
        .collect();
    if !resident.is_empty() {
        return Err(Error::Conflict {
            reason: format!(
                "server {} still runs VMs ({}): put it in maintenance mode first, which moves them",
                s.name,
                resident.join(", ")
            ),
        });
    }
    Ok(())
}
