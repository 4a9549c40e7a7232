//! Servers (discovery, ownership, maintenance, refresh, failure handling) and server pools.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::jobs::{JobSpec, Tx};
use super::{lock, JobHandle, Manager};
use crate::driver::{DomainChange, ServerConnection};
use crate::job::{ServerUndo, Undo};
use crate::model::*;
use crate::{Error, Result};

/// Settings of a new server pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Clustered (needs `virtual_ip` and `pool_file_system`).
    pub clustered: bool,
    /// Virtual IP.
    pub virtual_ip: Option<IpAddr>,
    /// Pool file system.
    pub pool_file_system: Option<FileSystemId>,
    /// Cluster timeout, seconds (30..=300).
    pub cluster_timeout_secs: u32,
    /// Start policy.
    pub start_policy: StartPolicy,
    /// DRS/DPM policy.
    pub policy: PoolPolicy,
}

impl PoolSpec {
    /// An unclustered pool named `name` with default settings.
    pub fn new(name: &str) -> Self {
        PoolSpec {
            name: name.to_owned(),
            description: String::new(),
            clustered: false,
            virtual_ip: None,
            pool_file_system: None,
            cluster_timeout_secs: 120,
            start_policy: StartPolicy::BestServer,
            policy: PoolPolicy::default(),
        }
    }
}

/// Editable properties of a server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerEdit {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New roles.
    pub roles: Option<Vec<ServerRole>>,
    /// Wake-on-LAN MAC (`Some(None)` clears it).
    pub wol_mac: Option<Option<String>>,
}

impl Manager {
    /// Discover a server by address (IP, host name, or a driver URI such as `sim://host1`), presenting
    /// the agent `password`, and take ownership of it. The job's result is the new [`Server`]. On the
    /// first discovery a management network is created with the server's first port.
    pub fn discover_server(&self, address: &str, password: &str) -> Result<JobHandle> {
        let address = address.trim().to_owned();
        if address.is_empty() {
            return Err(Error::invalid("address", "must not be empty"));
        }
        let driver = self.driver_for(&address)?;
        if let Some(s) = self.list::<Server>(|s| s.address == address).first() {
            return Err(Error::conflict(format!("server {:?} at {address} is already discovered", s.name)));
        }
        let password = password.to_owned();
        let id = ServerId::new();
        let target = ObjectRef::new(ObjectKind::Server, id);
        let conn: Arc<std::sync::Mutex<Option<Arc<dyn ServerConnection>>>> = Arc::default();
        let conn2 = conn.clone();
        let addr2 = address.clone();
        let spec = JobSpec::new("DiscoverServer", &format!("Discover server {address}"), vec![target])
            .step("connect and take ownership", move |ctx| {
                ctx.will_do(Undo::Server(ServerUndo::ReleaseOwnership { address: address.clone() }))?;
                let hv = driver.connect(&address, &password, ctx.mgr.id())?;
                *lock(&conn) = Some(hv);
                Ok(())
            })
            .step("record server", move |ctx| {
                let hv = lock(&conn2)
                    .clone()
                    .ok_or_else(|| Error::Internal { message: "no connection".into() })?;
                let info = hv.host_info()?;
                ctx.tx(|tx| {
                    let mut name = info.hostname.clone();
                    if tx.inv.servers.by_name(&name).is_some() {
                        name = format!("{name} ({addr2})");
                    }
                    let mut ports = Vec::new();
                    for p in &info.hardware.ports {
                        let port = Port {
                            id: PortId::new(),
                            name: format!("{name}:{}", p.name),
                            description: String::new(),
                            server: id,
                            interface: p.name.clone(),
                            mac: p.mac.clone(),
                            addressing: Addressing::None,
                            bond: None,
                        };
                        ports.push(port);
                    }
                    let server = Server {
                        id,
                        name,
                        description: String::new(),
                        address: addr2.clone(),
                        hardware: info.hardware.clone(),
                        roles: vec![ServerRole::VirtualMachine, ServerRole::Utility],
                        maintenance_mode: false,
                        ownership: Ownership::Owned,
                        power_state: ServerPowerState::Running,
                        pool: None,
                        ports: ports.iter().map(|p| p.id).collect(),
                        wol_mac: info.hardware.ports.first().map(|p| p.mac.clone()),
                        dom0_memory_mib: info.dom0_memory_mib,
                    };
                    tx.put(Object::Server(server))?;
                    for p in &ports {
                        tx.put(Object::Port(p.clone()))?;
                    }
                    let mgmt = tx
                        .inv
                        .networks
                        .iter()
                        .find(|n| n.functions.contains(&NetworkFunction::Management))
                        .map(|n| (**n).clone());
                    let member = ports.first().map(|p| NetworkMember::Port(p.id));
                    match (mgmt, member) {
                        (None, member) => {
                            let n = Network {
                                id: NetworkId::new(),
                                name: "Server Management".into(),
                                description: "Created at the first server discovery".into(),
                                functions: BTreeSet::from([
                                    NetworkFunction::Management,
                                    NetworkFunction::LiveMigrate,
                                    NetworkFunction::ClusterHeartbeat,
                                    NetworkFunction::VirtualMachine,
                                ]),
                                members: member.into_iter().collect(),
                                bridge: info.default_bridge.clone(),
                                mtu: 1500,
                            };
                            tx.put(Object::Network(n))?;
                        }
                        (Some(mut n), Some(m)) => {
                            n.members.push(m);
                            tx.put(Object::Network(n))?;
                        }
                        (Some(_), None) => {}
                    }
                    tx.event(
                        target,
                        Severity::Info,
                        "server.discovered",
                        format!("Server {addr2} discovered"),
                    );
                    Ok(())
                })?;
                ctx.mgr.attach(id, hv);
                ctx.set_result(target);
                Ok(())
            });
        self.submit(spec)
    }

    /// Take ownership of a discovered, unowned server.
    pub fn take_ownership(&self, server: ServerId, password: &str) -> Result<JobHandle> {
        let s = self.server(server)?;
        if s.ownership == Ownership::Owned {
            return Err(Error::state(s.object_ref(), "Unowned", "Owned"));
        }
        let driver = self.driver_for(&s.address)?;
        let password = password.to_owned();
        let address = s.address.clone();
        self.submit(
            JobSpec::new("TakeOwnership", &format!("Take ownership of {}", s.name), vec![s.object_ref()])
                .step("take ownership", move |ctx| {
                    ctx.will_do(Undo::Server(ServerUndo::ReleaseOwnership { address: address.clone() }))?;
                    let hv = driver.connect(&address, &password, ctx.mgr.id())?;
                    ctx.tx(|tx| {
                        tx.edit::<Server>(server, |s| {
                            s.ownership = Ownership::Owned;
                            s.power_state = ServerPowerState::Running;
                        })
                    })?;
                    ctx.mgr.attach(server, hv);
                    Ok(())
                }),
        )
    }

    /// Release ownership of a server (not in a pool, no VMs on it).
    pub fn release_ownership(&self, server: ServerId) -> Result<JobHandle> {
        let s = self.server(server)?;
        if s.ownership != Ownership::Owned {
            return Err(Error::state(s.object_ref(), "Owned", format!("{:?}", s.ownership)));
        }
        if s.pool.is_some() {
            return Err(Error::conflict("remove the server from its pool before releasing it"));
        }
        let driver = self.driver_for(&s.address)?;
        let address = s.address.clone();
        self.submit(
            JobSpec::new("ReleaseOwnership", &format!("Release {}", s.name), vec![s.object_ref()]).step(
                "release",
                move |ctx| {
                    ctx.tx(|tx| tx.edit::<Server>(server, |s| s.ownership = Ownership::Unowned))?;
                    driver.release(&address, ctx.mgr.id())?;
                    lock(&ctx.mgr.inner.state).conns.remove(&server);
                    Ok(())
                },
            ),
        )
    }

    /// Restart the agent of a server reached through an agent (its VMs keep running). The connection
    /// drops; the server is reported unreachable (Warning event) until the manager has reconnected
    /// (Info event).
    pub fn restart_agent(&self, server: ServerId) -> Result<JobHandle> {
        let s = self.server(server)?;
        if s.ownership != Ownership::Owned {
            return Err(Error::state(s.object_ref(), "Owned", format!("{:?}", s.ownership)));
        }
        let driver = self.driver_for(&s.address)?;
        if driver.remote_agents().is_none() {
            return Err(Error::Unsupported { what: format!("{} is not reached through an agent", s.name) });
        }
        let address = s.address.clone();
        self.submit(
            JobSpec::new("RestartAgent", &format!("Restart the agent of {}", s.name), vec![s.object_ref()])
                .unblockable()
                .step("restart agent", move |ctx| match driver.remote_agents() {
                    Some(a) => a.restart_agent(&address, ctx.mgr.id()),
                    None => {
                        Err(Error::Unsupported { what: format!("{address} is not reached through an agent") })
                    }
                }),
        )
    }

    /// Edit a server's name, description, roles or Wake-on-LAN MAC.
    pub fn edit_server(&self, server: ServerId, edit: ServerEdit) -> Result<JobHandle> {
        let mut s = (*self.server(server)?).clone();
        if let Some(n) = edit.name {
            s.name = n;
        }
        if let Some(d) = edit.description {
            s.description = d;
        }
        if let Some(r) = edit.roles {
            s.roles = r;
        }
        if let Some(w) = edit.wol_mac {
            s.wol_mac = w;
        }
        self.update_object(Object::Server(s))
    }

    /// Put a server into maintenance mode (its running VMs are live-migrated to other servers of its
    /// pool, each as a child job) or take it out.
    pub fn set_maintenance_mode(&self, server: ServerId, on: bool) -> Result<JobHandle> {
        let s = self.server(server)?;
        if s.maintenance_mode == on {
            return Err(Error::state(
                s.object_ref(),
                if on { "not in maintenance" } else { "in maintenance" },
                if on { "in maintenance" } else { "not in maintenance" },
            ));
        }
        let summary = format!("{} maintenance mode on {}", if on { "Enter" } else { "Leave" }, s.name);
        let mut spec = JobSpec::new("MaintenanceMode", &summary, vec![s.object_ref()]);
        if on {
            spec = spec.step("evacuate VMs", move |ctx| {
                let running: Vec<Arc<Vm>> =
                    ctx.mgr.list::<Vm>(|v| v.server == Some(server) && v.power_state.is_resident());
                for vm in running {
                    if ctx.aborting() {
                        return Err(Error::Aborted { job: ctx.job_id().to_string() });
                    }
                    ctx.message(format!("migrating {}", vm.name));
                    let target = ctx.mgr.pick_server(&vm, |s| s != server)?;
                    ctx.run_child(ctx.mgr.migrate_vm_child(vm.id, target, Some(ctx.job_id())))?;
                }
                Ok(())
            });
        }
        spec = spec.step("set mode", move |ctx| {
            ctx.tx(|tx| tx.edit::<Server>(server, |s| s.maintenance_mode = on)).map(|_| ())
        });
        self.submit(spec)
    }

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
                }
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

    /// Keep a connection and watch its domain changes.
    pub(crate) fn attach(&self, server: ServerId, hv: Arc<dyn ServerConnection>) {
        let rx = hv.watch();
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

    /// A VM's domain vanished from its server without a job doing it (guest powered off or crashed).
    /// With `domid`, only if that is still the VM's domain: a late notice about a domain a job has
    /// already replaced (stop, then start again) changes nothing.
    fn domain_gone(&self, server: ServerId, vm: VmId, domid: Option<u32>) -> Result<()> {
        let locked = lock(&self.inner.state).locks.contains_key(&vm.0);
        if locked {
            return Ok(()); // A job is changing this VM; it records the outcome itself.
        }
        let v = self.vm(vm)?;
        if v.server != Some(server) || !matches!(v.power_state, PowerState::Running | PowerState::Paused) {
            return Ok(());
        }
        if domid.is_some() && v.domid.is_some() && domid != v.domid {
            return Ok(());
        }
        self.system_tx(|tx| {
            tx.edit::<Vm>(vm, |v| {
                v.power_state = PowerState::Stopped;
                v.domid = None;
            })?;
            tx.event(
                v.object_ref(),
                Severity::Warning,
                "vm.stopped",
                format!("VM {} stopped outside the manager (guest shutdown or crash)", v.name),
            );
            Ok(())
        })
    }

    /// Align VM power states with what the server reports.
    pub(crate) fn reconcile_domains(&self, server: ServerId) -> Result<()> {
        let hv = self.hypervisor(server)?;
        let resident: Vec<VmId> = hv.list_domains()?.into_iter().filter_map(|d| d.uuid).collect();
        for vm in self.list::<Vm>(|v| v.server == Some(server)) {
            let here = resident.contains(&vm.id);
            if !here && matches!(vm.power_state, PowerState::Running | PowerState::Paused) {
                self.domain_gone(server, vm.id, None)?;
            }
        }
        Ok(())
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
                    && mgr.server(server).is_ok_and(|s| s.ownership == Ownership::Owned)
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

    /// A server stopped answering: mark it, warn, fail over the master, restart HA VMs elsewhere.
    pub(crate) fn server_lost(&self, server: ServerId, why: &str) {
        lock(&self.inner.state).conns.remove(&server);
        let Ok(s) = self.server(server) else { return };
        if s.power_state == ServerPowerState::Unreachable {
            return;
        }
        let stopped_by_dpm = s.power_state == ServerPowerState::Stopped;
        let victims: Vec<Arc<Vm>> =
            self.list::<Vm>(|v| v.server == Some(server) && v.power_state.is_resident());
        let res = self.system_tx(|tx| {
            tx.edit::<Server>(server, |s| {
                if !stopped_by_dpm {
                    s.power_state = ServerPowerState::Unreachable;
                }
            })?;
            if !stopped_by_dpm {
                tx.event(
                    s.object_ref(),
                    Severity::Warning,
                    "server.unreachable",
                    format!("Server {} is unreachable: {why}", s.name),
                );
            }
            for vm in &victims {
                tx.edit::<Vm>(vm.id, |v| {
                    v.power_state = PowerState::Stopped;
                    v.domid = None;
                })?;
            }
            if let Some(pool_id) = s.pool {
                let pool = tx.inv.get::<ServerPool>(pool_id)?.clone();
                if pool.master == Some(server) {
                    let new_master = pool.servers.iter().copied().find(|m| {
                        *m != server
                            && tx
                                .inv
                                .get::<Server>(*m)
                                .is_ok_and(|x| x.power_state == ServerPowerState::Running)
                    });
                    tx.edit::<ServerPool>(pool_id, |p| p.master = new_master)?;
                    tx.event(
                        pool.object_ref(),
                        Severity::Warning,
                        "pool.master_failover",
                        match new_master {
                            Some(m) => format!("Master {} lost; {m} is the new master", s.name),
                            None => format!("Master {} lost; no other member can take over", s.name),
                        },
                    );
                }
            }
            Ok(())
        });
        if res.is_err() {
            return;
        }
        // HA: restart HA-enabled VMs on other servers of the pool.
        for vm in victims.into_iter().filter(|v| v.config.high_availability) {
            // Placement skips unreachable servers; the start job runs in the background.
            if let Err(e) = self.start_vm(vm.id) {
                let _ = self.raise_event(
                    vm.object_ref(),
                    Severity::Error,
                    "ha.restart_failed",
                    &format!("HA could not restart VM {}: {e}", vm.name),
                );
            }
        }
    }

    /// Create a server pool. The job's result is the pool.
    pub fn create_pool(&self, spec: PoolSpec) -> Result<JobHandle> {
        let mut p = ServerPool::new(spec.name);
        p.description = spec.description;
        p.clustered = spec.clustered;
        p.virtual_ip = spec.virtual_ip;
        p.pool_file_system = spec.pool_file_system;
        p.cluster_timeout_secs = spec.cluster_timeout_secs;
        p.start_policy = spec.start_policy;
        p.policy = spec.policy;
        if let Some(ip) = p.virtual_ip {
            if !self.list::<ServerPool>(|o| o.virtual_ip == Some(ip)).is_empty() {
                return Err(Error::conflict(format!("virtual IP {ip} is used by another pool")));
            }
        }
        self.create_object(Object::ServerPool(p))
    }

    /// Add a server to a pool. The first member becomes the master.
    pub fn add_server_to_pool(&self, pool: PoolId, server: ServerId) -> Result<JobHandle> {
        let p = self.pool(pool)?;
        let s = self.server(server)?;
        if let Some(other) = s.pool {
            return Err(Error::conflict(if other == pool {
                format!("server {:?} is already in this pool", s.name)
            } else {
                format!(
                    "server {:?} already belongs to another pool; a server belongs to at most one pool",
                    s.name
                )
            }));
        }
        if s.ownership != Ownership::Owned {
            return Err(Error::state(s.object_ref(), "Owned", format!("{:?}", s.ownership)));
        }
        self.submit(
            JobSpec::new(
                "AddServerToPool",
                &format!("Add {} to pool {}", s.name, p.name),
                vec![p.object_ref(), s.object_ref()],
            )
            .step("join pool", move |ctx| {
                ctx.tx(|tx| {
                    tx.edit::<ServerPool>(pool, |p| {
                        p.servers.push(server);
                        if p.master.is_none() {
                            p.master = Some(server);
                        }
                    })?;
                    tx.edit::<Server>(server, |s| s.pool = Some(pool))?;
                    Ok(())
                })
            }),
        )
    }

    /// Remove a server (with no resident VMs) from its pool; a new master is elected if needed.
    pub fn remove_server_from_pool(&self, pool: PoolId, server: ServerId) -> Result<JobHandle> {
        let p = self.pool(pool)?;
        let s = self.server(server)?;
        if s.pool != Some(pool) {
            return Err(Error::invalid("server", format!("{:?} is not in pool {:?}", s.name, p.name)));
        }
        if let Some(vm) = self.list::<Vm>(|v| v.server == Some(server) && v.power_state.is_resident()).first()
        {
            return Err(Error::state(
                s.object_ref(),
                "without running VMs",
                format!("running VM {:?}", vm.name),
            ));
        }
        self.submit(
            JobSpec::new(
                "RemoveServerFromPool",
                &format!("Remove {} from pool {}", s.name, p.name),
                vec![p.object_ref(), s.object_ref()],
            )
            .step("leave pool", move |ctx| {
                ctx.tx(|tx| {
                    for vm in tx
                        .inv
                        .vms
                        .iter()
                        .filter(|v| v.server == Some(server))
                        .map(|v| v.id)
                        .collect::<Vec<_>>()
                    {
                        tx.edit::<Vm>(vm, |v| v.server = None)?;
                    }
                    tx.edit::<Server>(server, |s| s.pool = None)?;
                    tx.edit::<ServerPool>(pool, |p| {
                        p.servers.retain(|x| *x != server);
                        if p.master == Some(server) {
                            p.master = p.servers.first().copied();
                        }
                    })?;
                    Ok(())
                })
            }),
        )
    }

    /// Edit a pool's settings (membership changes go through add/remove).
    pub fn edit_pool(&self, pool: PoolId, f: impl FnOnce(&mut ServerPool)) -> Result<JobHandle> {
        let mut p = (*self.pool(pool)?).clone();
        let (servers, master) = (p.servers.clone(), p.master);
        f(&mut p);
        if p.servers != servers || p.master != master {
            return Err(Error::invalid("servers", "use add_server_to_pool / remove_server_from_pool"));
        }
        self.update_object(Object::ServerPool(p))
    }

    /// The server a VM should start or move on ([`crate::policy::placement::pick`]), among the
    /// servers this manager is connected to and `allow` accepts.
    pub(crate) fn pick_server(&self, vm: &Vm, allow: impl Fn(ServerId) -> bool) -> Result<ServerId> {
        let st = self.state();
        let usage = crate::policy::placement::Usage::of(&st.inv);
        crate::policy::placement::pick(&st.inv, &usage, vm, allow, |s| st.conns.contains_key(&s))
    }
}
