//! Networks, bonds and VLAN interfaces: the model, and the servers configured to match it
//! ([`realise`]). Every change goes through one kind of job: checked on every server it touches,
//! applied server by server (each server's undo journaled first), recorded last.

mod realise;

use std::collections::BTreeSet;

pub use realise::NetworkApply;
pub(crate) use realise::{desired, member_interface, undo_network};
#[allow(unused_imports)]
const _: () = ();

use super::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// Settings of a new network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Name.
    pub name: String,
    /// Functions carried.
    pub functions: BTreeSet<NetworkFunction>,
    /// Members.
    pub members: Vec<NetworkMember>,
    /// Bridge name on servers.
    pub bridge: String,
    /// MTU.
    pub mtu: u16,
}

impl NetworkSpec {
    /// A VM network named `name` on bridge `bridge`.
    pub fn vm_network(name: &str, bridge: &str) -> Self {
        NetworkSpec::new(name, bridge, BTreeSet::new(), None)
    }
}

/// Settings of a new bond.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BondSpec {
    /// Server.
    pub server: ServerId,
    /// Interface name, e.g. `bond0`.
    pub interface: String,
    /// Mode.
    pub mode: BondMode,
    /// Member ports (the first is the primary of an active-backup bond).
    pub ports: Vec<PortId>,
    /// MTU.
    pub mtu: u16,
    /// Link monitoring.
    pub monitor: BondMonitor,
    /// Addressing of the bond itself.
    pub addressing: Addressing,
}

impl BondSpec {
    /// A bond of `ports` on `server`, MII-monitored, MTU 1500, no address.
    pub fn new(server: ServerId, interface: &str, mode: BondMode, ports: Vec<PortId>) -> Self {
        BondSpec {
            server,
            interface: interface.to_owned(),
            mode,
            ports,
            mtu: 1500,
            monitor: BondMonitor::default(),
            addressing: Addressing::None,
        }
    }
}

impl Manager {
    /// Create a network, realised on the servers of its members. The job's result is the network.
    pub fn create_network(&self, spec: NetworkSpec) -> Result<JobHandle> {
        let n = Network {
            id: NetworkId::new(),
            name: spec.name,
            description: String::new(),
            functions: spec.functions,
            members: spec.members,
            bridge: spec.bridge,
            mtu: spec.mtu,
        };
        let r = n.object_ref();
        let summary = format!("Create network {}", n.name);
        self.submit_network_put("CreateNetwork", &summary, Object::Network(n), r)
    }

    /// Submit a change that stores one object (`r`, the job's result) and configures the servers
    /// it concerns accordingly.
    fn submit_network_put(&self, kind: &str, summary: &str, obj: Object, r: ObjectRef) -> Result<JobHandle> {
        self.submit_network_change(kind, summary, vec![obj], vec![], Some(r), Default::default())
    }

    /// Add a port, bond or VLAN interface to a network (configured on its server).
    pub fn add_network_member(&self, network: NetworkId, member: NetworkMember) -> Result<JobHandle> {
        let mut n = (*self.network(network)?).clone();
        if n.members.contains(&member) {
            return Err(Error::conflict("already a member"));
        }
        n.members.push(member);
        let summary = format!("Add a member to network {}", n.name);
        let r = n.object_ref();
        self.submit_network_put("EditNetwork", &summary, Object::Network(n), r)
    }

    /// Remove a member from a network (unconfigured on its server).
    pub fn remove_network_member(&self, network: NetworkId, member: NetworkMember) -> Result<JobHandle> {
        let mut n = (*self.network(network)?).clone();
        if !n.members.contains(&member) {
            return Err(Error::invalid("member", "not a member of the network"));
        }
        n.members.retain(|m| *m != member);
        let summary = format!("Remove a member from network {}", n.name);
        let r = n.object_ref();
        self.submit_network_put("EditNetwork", &summary, Object::Network(n), r)
    }

    /// Set the address of a port, bond or VLAN interface (configured on its server). A change that
    /// would cut the manager's link to the server is refused unless `how.force`.
    pub fn set_addressing(
        &self,
        member: NetworkMember,
        addressing: Addressing,
        how: NetworkApply,
    ) -> Result<JobHandle> {
        let obj = match member {
            NetworkMember::Port(p) => Object::Port(Port { addressing, ..(*self.get::<Port>(p)?).clone() }),
            NetworkMember::Bond(b) => {
                Object::BondPort(BondPort { addressing, ..(*self.get::<BondPort>(b)?).clone() })
            }
            NetworkMember::Vlan(v) => Object::VlanInterface(VlanInterface {
                addressing,
                ..(*self.get::<VlanInterface>(v)?).clone()
            }),
        };
        let r = obj.object_ref();
        let summary = format!("Set the address of {}", obj.name());
        self.submit_network_change("SetAddressing", &summary, vec![obj], vec![], Some(r), how)
    }

    /// Bond ports of one server (MII-monitored, MTU 1500). The job's result is the bond.
    pub fn create_bond(
        &self,
        server: ServerId,
        interface: &str,
        mode: BondMode,
        ports: Vec<PortId>,
    ) -> Result<JobHandle> {
        self.create_bond_with(BondSpec::new(server, interface, mode, ports))
    }

    /// Bond ports of one server, configured on it. The job's result is the bond.
    pub fn create_bond_with(&self, spec: BondSpec) -> Result<JobHandle> {
        crate::driver::network::check_interface_name("interface", &spec.interface)?;
        let s = self.server(spec.server)?;
        let bond = BondPort {
            id: BondPortId::new(),
            name: format!("{}:{}", s.name, spec.interface),
            description: String::new(),
            server: spec.server,
            interface: spec.interface,
            mode: spec.mode,
            ports: spec.ports.clone(),
            addressing: spec.addressing,
            mtu: spec.mtu,
            monitor: spec.monitor,
        };
        let mut puts = vec![Object::BondPort(bond.clone())];
        for p in &spec.ports {
            let mut port = (*self.get::<Port>(*p)?).clone();
            if let Some(other) = port.bond.filter(|b| *b != bond.id) {
                let other = self.get::<BondPort>(other).map(|b| b.name.clone()).unwrap_or_default();
                return Err(Error::conflict(format!("port {:?} is already in bond {other:?}", port.name)));
            }
            port.bond = Some(bond.id);
            puts.push(Object::Port(port));
        }
        let r = bond.object_ref();
        let summary = format!("Create bond {}", bond.name);
        self.submit_network_change("CreateBond", &summary, puts, vec![], Some(r), Default::default())
    }

    /// Delete a bond (its ports are released). Nothing may use it.
    pub fn delete_bond(&self, bond: BondPortId) -> Result<JobHandle> {
        let b = self.get::<BondPort>(bond)?;
        let mut puts = Vec::new();
        for p in &b.ports {
            let mut port = (*self.get::<Port>(*p)?).clone();
            port.bond = None;
            puts.push(Object::Port(port));
        }
        let summary = format!("Delete bond {}", b.name);
        self.submit_network_change(
            "DeleteBond",
            &summary,
            puts,
            vec![b.object_ref()],
            None,
            Default::default(),
        )
    }

    /// Create a VLAN interface on a port or bond, configured on its server. The job's result is the
    /// interface.
    pub fn create_vlan_interface(
        &self,
        server: ServerId,
        parent: VlanParent,
        vlan_id: u16,
    ) -> Result<JobHandle> {
        let s = self.server(server)?;
        let parent_name = match parent {
            VlanParent::Port(p) => self.get::<Port>(p)?.interface.clone(),
            VlanParent::Bond(b) => self.get::<BondPort>(b)?.interface.clone(),
        };
        let v = VlanInterface {
            id: VlanInterfaceId::new(),
            name: format!("{}:{parent_name}.{vlan_id}", s.name),
            description: String::new(),
            server,
            parent,
            vlan_id,
            addressing: Addressing::None,
        };
        v.check()?;
        crate::driver::network::check_interface_name("interface", &format!("{parent_name}.{vlan_id}"))?;
        let r = v.object_ref();
        let summary = format!("Create VLAN interface {}", v.name);
        self.submit_network_change(
            "CreateVlanInterface",
            &summary,
            vec![Object::VlanInterface(v)],
            vec![],
            Some(r),
            Default::default(),
        )
    }

    /// Create, edit or delete a network object through the network job (what the generic object
    /// calls do for networks, bonds, VLAN interfaces and ports).
    pub(crate) fn network_object_change(
        &self,
        put: Option<Object>,
        remove: Option<ObjectRef>,
    ) -> Result<JobHandle> {
        if let Some(ObjectRef { kind: ObjectKind::BondPort, id }) = remove {
            return self.delete_bond(BondPortId(id));
        }
        let (kind, summary) = match (&put, remove) {
            (Some(o), _) => (format!("Edit{}", o.kind()), format!("Edit {} {}", o.kind(), o.name())),
            (None, Some(r)) => (format!("Delete{}", r.kind), format!("Delete {r}")),
            (None, None) => return Err(Error::invalid("object", "nothing to change")),
        };
        let result = put.as_ref().map(|o| o.object_ref());
        self.submit_network_change(
            &kind,
            &summary,
            put.into_iter().collect(),
            remove.into_iter().collect(),
            result,
            Default::default(),
        )
    }
}

/// The server of a network member.
pub(crate) fn member_server(inv: &Inventory, m: NetworkMember) -> Result<ServerId> {
    realise::member_interface(inv, m).map(|(s, _, _)| s)
}

/// Whether objects of `kind` are configured on servers (so they change through network jobs).
pub(crate) fn is_network_kind(kind: ObjectKind) -> bool {
    matches!(kind, ObjectKind::Network | ObjectKind::BondPort | ObjectKind::VlanInterface | ObjectKind::Port)
}
