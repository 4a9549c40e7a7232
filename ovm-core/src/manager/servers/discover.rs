//! Discovery of servers, and taking, releasing and restarting their agents (ownership).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::driver::ServerConnection;
use crate::job::{ServerUndo, Undo};
use crate::manager::jobs::JobSpec;
use crate::manager::{lock, JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

impl Manager {
    /// Discover a server by address (IP, host name, or a driver URI such as `sim://host1`), presenting
    /// the agent `password`, and take ownership of it. The job's result is the new [`Server`]. On the
    /// first discovery a management network is created with the server's first port.
    pub fn discover_server(&self, address: &str, password: &str) -> Result<JobHandle> {
        self.discover(address, password, false)
    }

    /// Discover a server that another manager owns and take it over, presenting its agent
    /// password (the agent records the takeover). For a manager rebuilt after losing its database
    /// ([`Manager::rebuild_from_servers`]); otherwise as [`Manager::discover_server`].
    pub fn take_over_server(&self, address: &str, password: &str) -> Result<JobHandle> {
        self.discover(address, password, true)
    }

    fn discover(&self, address: &str, password: &str, take_over: bool) -> Result<JobHandle> {
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
                let hv = if take_over {
                    driver.take_over(&address, &password, ctx.mgr.id())?
                } else {
                    driver.connect(&address, &password, ctx.mgr.id())?
                };
                *lock(&conn) = Some(hv);
                Ok(())
            })
            .step("record server", move |ctx| {
                let hv = lock(&conn2)
                    .clone()
                    .ok_or_else(|| Error::Internal { message: "no connection".into() })?;
                let info = hv.host_info()?;
                let link = management_link(&*hv);
                ctx.tx(|tx| {
                    let mut name = info.hostname.clone();
                    if tx.inv.servers.by_name(&name).is_some() {
                        name = format!("{name} ({addr2})");
                    }
                    let mut ports = Vec::new();
                    for p in &info.hardware.ports {
                        let addressing = match &link {
                            Some(m) if m.port == p.name => {
                                Addressing::Static { address: m.address.address, prefix: m.address.prefix }
                            }
                            _ => Addressing::None,
                        };
                        let port = Port {
                            id: PortId::new(),
                            name: format!("{name}:{}", p.name),
                            description: String::new(),
                            server: id,
                            interface: p.name.clone(),
                            mac: p.mac.clone(),
                            addressing,
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
                        out_of_band: None,
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
                    // The management network's member: the port the manager reaches the server
                    // through (under its bridge, if any); without that knowledge, the first port.
                    let member = match &link {
                        Some(m) => ports.iter().find(|p| p.interface == m.port),
                        None => ports.first(),
                    }
                    .map(|p| NetworkMember::Port(p.id));
                    let bridged =
                        link.as_ref().map(|m| m.bridge.clone()).unwrap_or(Some(info.default_bridge.clone()));
                    match (mgmt, member) {
                        (None, member) => {
                            let n = Network {
                                id: NetworkId::new(),
                                name: "Server Management".into(),
                                description: "Created at the first server discovery".into(),
                                functions: if bridged.is_some() {
                                    BTreeSet::from([
                                        NetworkFunction::Management,
                                        NetworkFunction::LiveMigrate,
                                        NetworkFunction::ClusterHeartbeat,
                                        NetworkFunction::VirtualMachine,
                                    ])
                                } else {
                                    BTreeSet::from([
                                        NetworkFunction::Management,
                                        NetworkFunction::LiveMigrate,
                                        NetworkFunction::ClusterHeartbeat,
                                    ])
                                },
                                members: member.into_iter().collect(),
                                bridge: bridged.unwrap_or_else(|| info.default_bridge.clone()),
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
}

/// Where the manager reaches a server: the port under the interface holding the address the
/// connection goes to, the bridge over it (if any) and the address.
struct ManagementLink {
    port: String,
    bridge: Option<String>,
    address: crate::driver::AddressConfig,
}

fn management_link(hv: &dyn ServerConnection) -> Option<ManagementLink> {
    let net = hv.network()?;
    let ip = net.management_address()?;
    let cfg = net.network_config().ok()?;
    let ports = net.ports().ok()?;
    let address = cfg.addresses.iter().find(|a| a.address == ip)?.clone();
    let iface = address.interface.clone();
    if ports.iter().any(|p| p.name == iface) {
        return Some(ManagementLink { port: iface, bridge: None, address });
    }
    let bridge = cfg.bridges.iter().find(|b| b.name == iface)?;
    let port = bridge.interfaces.iter().find(|i| ports.iter().any(|p| &p.name == *i))?.clone();
    Some(ManagementLink { port, bridge: Some(iface), address })
}
