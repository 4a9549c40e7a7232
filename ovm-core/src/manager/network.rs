//! Networks, bonds and VLAN interfaces.

use std::collections::BTreeSet;

use super::jobs::JobSpec;
use super::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// Settings of a new network.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Manager {
    /// Create a network. The job's result is the network.
    pub fn create_network(&self, spec: NetworkSpec) -> Result<JobHandle> {
        self.create_object(Object::Network(Network {
            id: NetworkId::new(),
            name: spec.name,
            description: String::new(),
            functions: spec.functions,
            members: spec.members,
            bridge: spec.bridge,
            mtu: spec.mtu,
        }))
    }

    /// Add a port, bond or VLAN interface to a network.
    pub fn add_network_member(&self, network: NetworkId, member: NetworkMember) -> Result<JobHandle> {
        let mut n = (*self.network(network)?).clone();
        if n.members.contains(&member) {
            return Err(Error::conflict("already a member"));
        }
        n.members.push(member);
        self.update_object(Object::Network(n))
    }

    /// Remove a member from a network.
    pub fn remove_network_member(&self, network: NetworkId, member: NetworkMember) -> Result<JobHandle> {
        let mut n = (*self.network(network)?).clone();
        if !n.members.contains(&member) {
            return Err(Error::invalid("member", "not a member of the network"));
        }
        n.members.retain(|m| *m != member);
        self.update_object(Object::Network(n))
    }

    /// Bond ports of one server. The job's result is the bond.
    pub fn create_bond(
        &self,
        server: ServerId,
        interface: &str,
        mode: BondMode,
        ports: Vec<PortId>,
    ) -> Result<JobHandle> {
        let s = self.server(server)?;
        let bond = BondPort {
            id: BondPortId::new(),
            name: format!("{}:{interface}", s.name),
            description: String::new(),
            server,
            interface: interface.to_owned(),
            mode,
            ports: ports.clone(),
            addressing: Addressing::None,
        };
        let obj = Object::BondPort(bond.clone());
        obj.validate()?;
        self.state().inv.check_put(&obj)?;
        let r = obj.object_ref();
        let mut targets = vec![r];
        targets.extend(ports.iter().map(|p| ObjectRef::new(ObjectKind::Port, *p)));
        self.submit(JobSpec::new("CreateBond", &format!("Create bond {}", bond.name), targets).step(
            "bond",
            move |ctx| {
                ctx.tx(|tx| {
                    tx.put(obj)?;
                    for p in &ports {
                        tx.edit::<Port>(*p, |p| p.bond = Some(bond.id))?;
                    }
                    Ok(())
                })?;
                ctx.set_result(r);
                Ok(())
            },
        ))
    }

    /// Create a VLAN interface on a port or bond. The job's result is the interface.
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
        self.create_object(Object::VlanInterface(VlanInterface {
            id: VlanInterfaceId::new(),
            name: format!("{}:{parent_name}.{vlan_id}", s.name),
            description: String::new(),
            server,
            parent,
            vlan_id,
            addressing: Addressing::None,
        }))
    }
}
