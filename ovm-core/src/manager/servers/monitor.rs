//! Refresh, connection monitoring: keeping a connection and its domain-change watch, reconciling
//! VM power states, and reconnecting with backoff after a disconnection.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::driver::{DomainChange, ServerConnection};
use crate::manager::jobs::{JobSpec, Tx};
use crate::manager::{lock, JobHandle, Manager};
use crate::model::*;
use crate::Result;

impl Manager {
    /// Refresh a server's hardware and reachability now. Returns a job.
    pub fn refresh_server(&self, server: ServerId) -> Result<JobHandle> {
        let s = self.server(server)?;
        self.submit(
            JobSpec::new("RefreshServer", &format!("Refresh {}", s.name), vec![s.object_ref()])
                .unblockable()
                .step("refresh", move |ctx| ctx.mgr.refresh_one(server)),
        )
    }

    /// Reconnect if needed, then update hardware and power state; raise Warning/Info events on
    /// reachability changes.
    pub(crate) fn refresh_one(&self, server: ServerId) -> Result<()> {
        let s = self.server(server)?;
        if s.ownership != Ownership::Owned {
            return Ok(());
        }
        let existing = lock(&self.inner.state).conns.get(&server).cloned();
        let attempt = match existing {
            Some(hv) => hv.host_info().map(|i| (hv, i)),
            None => self
                .driver_for(&s.address)
                .and_then(|d| d.reconnect(&s.address, self.id()))
                .and_then(|hv| hv.host_info().map(|i| (hv, i))),
        };
        match attempt {
            Ok((hv, info)) => {
                let was = s.power_state;
                let fresh = !lock(&self.inner.state).conns.contains_key(&server);
                if fresh {
                    self.attach(server, hv);
                }
                self.system_tx(|tx| {
                    tx.edit::<Server>(server, |s| {
                        s.hardware = info.hardware.clone();
                        s.power_state = ServerPowerState::Running;
                    })?;
                    if was == ServerPowerState::Unreachable {
                        tx.event(
                            ObjectRef::new(ObjectKind::Server, server),
                            Severity::Info,
                            "server.reachable",
                            format!("Server {} is reachable again", s.name),
                        );
                    }
                    Ok(())
                })?;
                if fresh {
                    self.reconcile_domains(server)?;
                    self.remount_repositories(server);
                }
                self.check_network(server, &s.name, &info.hardware.ports);
                Ok(())
            }
            Err(e) => {
                let host_loss = self.driver_for(&s.address).is_ok_and(|d| d.connection_loss_is_host_loss());
                if host_loss || e.kind() == crate::ErrorKind::PermissionDenied {
                    self.server_lost(server, &e.to_string());
                } else {
                    self.server_disconnected(server, &e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Compare a server's ports and network configuration with the model: ports that disappeared
    /// and configuration that drifted raise a Warning event (once per change of what is found);
    /// ports that appeared are added to the inventory.
    pub(crate) fn check_network(&self, server: ServerId, name: &str, ports: &[EthernetPort]) {
        let Some(hv) = lock(&self.inner.state).conns.get(&server).cloned() else { return };
        let model: Vec<Port> =
            self.list::<Port>(|p| p.server == server).into_iter().map(|p| (*p).clone()).collect();
        let mut found = Vec::new();
        for p in &model {
            if !ports.iter().any(|a| a.name == p.interface) {
                found.push(format!("port {} ({}) is gone", p.interface, p.mac));
            }
        }
        let new: Vec<&EthernetPort> =
            ports.iter().filter(|a| !model.iter().any(|p| p.interface == a.name)).collect();
        if let Some(net) = hv.network() {
            if let (Ok(actual), Ok(desired)) =
                (net.network_config(), self.read(|inv| crate::manager::network::desired(inv, server)))
            {
                found.extend(crate::driver::network::drift(&actual, &desired));
            }
        }
        let changed = {
            let mut st = lock(&self.inner.state);
            let before = st.network_reported.insert(server, found.clone());
            before.as_ref() != Some(&found) && !(before.is_none() && found.is_empty())
        };
        let _ = self.system_tx(|tx| {
            for a in &new {
                let port = Port {
                    id: PortId::new(),
                    name: format!("{name}:{}", a.name),
                    description: String::new(),
                    server,
                    interface: a.name.clone(),
                    mac: a.mac.clone(),
                    addressing: Addressing::None,
                    bond: None,
                };
                tx.put(Object::Port(port.clone()))?;
                tx.edit::<Server>(server, |s| s.ports.push(port.id))?;
                tx.event(
                    ObjectRef::new(ObjectKind::Server, server),
                    Severity::Info,
                    "network.port_added",
                    format!("Server {name} has a new port {} ({})", a.name, a.mac),
                );
            }
            if changed {
                let r = ObjectRef::new(ObjectKind::Server, server);
                if found.is_empty() {
                    tx.event(
                        r,
                        Severity::Info,
                        "network.in_sync",
                        format!("Server {name}'s network is as configured again"),
                    );
                } else {
                    tx.event(
                        r,
                        Severity::Warning,
                        "network.drift",
                        format!(
                            "Server {name}'s network differs from its configuration: {}",
                            found.join("; ")
                        ),
                    );
                }
            }
            Ok(())
        });
    }

    /// Keep a connection and watch its domain changes.
    pub(crate) fn attach(&self, server: ServerId, hv: Arc<dyn ServerConnection>) {
        let rx = hv.watch();
        let watched = Arc::downgrade(&hv);
        lock(&self.inner.state).conns.insert(server, hv);
        let Ok(mut rx) = rx else { return };
        let weak = Arc::downgrade(&self.inner);
        // An async task per server waits for changes; handling one (brief locking and a commit) runs
        // on a blocking thread, so watchers never hold a thread while idle.
        self.inner.handle.spawn(async move {
            loop {
                let msg = rx.recv().await;
                let Some(inner) = weak.upgrade() else { return };
                let mgr = Manager { inner };
                if mgr.is_closed() {
                    return;
                }
                // A change from a connection the manager no longer uses (the server was powered
                // off, released or reconnected since) says nothing of the server now: a late
                // `HostLost` from a server powered off must not mark it lost once it is back.
                let current = lock(&mgr.inner.state)
                    .conns
                    .get(&server)
                    .is_some_and(|c| std::ptr::addr_eq(Arc::as_ptr(c), watched.as_ptr()));
                if !current {
                    return;
                }
                let done = matches!(
                    msg,
                    Ok(DomainChange::HostLost | DomainChange::Disconnected { .. }) | Err(RecvError::Closed)
                );
                let handled = tokio::task::spawn_blocking(move || match msg {
                    Ok(DomainChange::HostLost) => mgr.server_lost(server, "the server was lost"),
                    Ok(DomainChange::Disconnected { reason }) => mgr.server_disconnected(server, &reason),
                    Ok(DomainChange::Resync) => {
                        let _ = mgr.reconcile_domains(server);
                    }
                    Ok(DomainChange::Disappeared { uuid: Some(vm), domid }) => {
                        let _ = mgr.domain_gone(server, vm, Some(domid));
                    }
                    Ok(DomainChange::Appeared { uuid: Some(vm), domid }) => {
                        let _ = mgr.domain_appeared(server, vm, domid);
                    }
                    Ok(DomainChange::StateChanged { uuid: Some(vm), domid, state }) => {
                        let _ = mgr.domain_state_changed(server, vm, domid, state);
                    }
                    Ok(_) | Err(RecvError::Closed) => {}
                    Err(RecvError::Lagged(_)) => {
                        let _ = mgr.reconcile_domains(server);
                    }
                })
                .await;
                if done || handled.is_err() {
                    return;
                }
            }
        });
    }

    /// Apply inventory writes outside any job (system bookkeeping), publishing their changes.
    pub(crate) fn system_tx<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut guard = self.state();
        let st = &mut *guard;
        let mut tx = Tx::new(&mut st.inv, self.now());
        let out = match f(&mut tx) {
            Ok(v) => v,
            Err(e) => {
                tx.revert();
                return Err(e);
            }
        };
        let Tx { batch, new_events, .. } = tx;
        let seq = self.enqueue(batch)?;
        for e in new_events.into_iter().filter(|e| e.severity.blocks()) {
            st.blocking_events.entry(e.object.id).or_default().push((e.id, e.severity));
        }
        drop(guard);
        self.flush(seq)?;
        Ok(out)
    }

    /// The connection to a server's agent dropped (the server and its VMs may be fine): mark the
    /// server unreachable with a Warning event, leave its VMs as they are, and reconnect in the
    /// background (with backoff) until it answers again, is released or removed, or the manager closes.
    pub(crate) fn server_disconnected(&self, server: ServerId, why: &str) {
        lock(&self.inner.state).conns.remove(&server);
        let Ok(s) = self.server(server) else { return };
        if s.power_state == ServerPowerState::Running {
            let _ = self.system_tx(|tx| {
                tx.edit::<Server>(server, |s| s.power_state = ServerPowerState::Unreachable)?;
                tx.event(
                    s.object_ref(),
                    Severity::Warning,
                    "server.unreachable",
                    format!("Server {} is unreachable: {why}", s.name),
                );
                Ok(())
            });
        }
        self.keep_reconnecting(server);
    }

    /// Try to reconnect to `server` in the background, with backoff, until it answers, it is
    /// stopped or released, or the agent refuses this manager (an Error event).
    pub(crate) fn keep_reconnecting(&self, server: ServerId) {
        if !lock(&self.inner.state).reconnecting.insert(server) {
            return; // A reconnection task is already running.
        }
        let weak = Arc::downgrade(&self.inner);
        self.inner.handle.spawn(async move {
            let mut delay = std::time::Duration::from_millis(250);
            loop {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(15));
                let Some(inner) = weak.upgrade() else { return };
                let mgr = Manager { inner };
                let wanted = !mgr.is_closed()
                    && mgr.server(server).is_ok_and(|s| {
                        s.ownership == Ownership::Owned && s.power_state != ServerPowerState::Stopped
                    })
                    && !lock(&mgr.inner.state).conns.contains_key(&server);
                if !wanted {
                    lock(&mgr.inner.state).reconnecting.remove(&server);
                    return;
                }
                let done = tokio::task::spawn_blocking(move || {
                    let r = mgr.refresh_one(server);
                    let done = match &r {
                        Ok(()) => true,
                        // The agent refuses this manager (another certificate at that address, or
                        // it was handed over): retrying will not help; an administrator must look.
                        Err(e) if e.kind() == crate::ErrorKind::PermissionDenied => {
                            if let Ok(s) = mgr.server(server) {
                                let _ = mgr.raise_event(
                                    s.object_ref(),
                                    Severity::Error,
                                    "server.agent_refused",
                                    &format!(
                                        "The agent of server {} refused this manager: {}",
                                        s.name,
                                        r.as_ref().unwrap_err()
                                    ),
                                );
                            }
                            true
                        }
                        Err(_) => false,
                    };
                    if done {
                        lock(&mgr.inner.state).reconnecting.remove(&server);
                    }
                    done
                })
                .await;
                if done.unwrap_or(true) {
                    return;
                }
            }
        });
    }
}
