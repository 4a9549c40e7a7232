//! The inventory: every object, indexed, with the rules that span objects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::*;
use crate::{Error, Result};

/// Objects of one kind, by id and by (unique) name.
#[derive(Debug, Clone)]
pub struct Table<T> {
    by_id: HashMap<uuid::Uuid, Arc<T>>,
    by_name: BTreeMap<String, uuid::Uuid>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { by_id: HashMap::new(), by_name: BTreeMap::new() }
    }
}

impl<T: ManagedObject> Table<T> {
    /// The object with this id.
    pub fn get(&self, id: uuid::Uuid) -> Option<&Arc<T>> {
        self.by_id.get(&id)
    }
    /// The object with this name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<T>> {
        self.by_name.get(name).and_then(|id| self.by_id.get(id))
    }
    /// Number of objects.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
    /// All objects in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<T>> + '_ {
        self.by_name.values().filter_map(move |id| self.by_id.get(id))
    }
    fn insert(&mut self, obj: T) -> Option<Arc<T>> {
        let id = obj.uuid();
        let name = obj.name().to_owned();
        let old = self.by_id.insert(id, Arc::new(obj));
        if let Some(o) = &old {
            if o.name() != name {
                self.by_name.remove(o.name());
            }
        }
        self.by_name.insert(name, id);
        old
    }
    fn remove(&mut self, id: uuid::Uuid) -> Option<Arc<T>> {
        let old = self.by_id.remove(&id)?;
        self.by_name.remove(old.name());
        Some(old)
    }
}

macro_rules! inventory {
    ($($field:ident: $ty:ident),* $(,)?) => {
        /// Every inventory object of the manager. Plain data: no I/O.
        #[derive(Debug, Clone, Default)]
        pub struct Inventory {
            $(
                #[doc = concat!("All [`", stringify!($ty), "`] objects.")]
                pub $field: Table<$ty>,
            )*
            macs: HashMap<u64, VmId>,
        }

        /// Typed access to the inventory's tables.
        pub trait InInventory: ManagedObject {
            /// The table of this type.
            fn table(inv: &Inventory) -> &Table<Self>;
        }

        $(
            impl InInventory for $ty {
                fn table(inv: &Inventory) -> &Table<Self> { &inv.$field }
            }
        )*

        impl Inventory {
            /// The object `r` refers to.
            pub fn get_object(&self, r: ObjectRef) -> Option<Object> {
                match r.kind {
                    $(ObjectKind::$ty => self.$field.get(r.id).map(|o| Object::$ty((**o).clone())),)*
                    _ => None,
                }
            }
            /// Whether `r` exists.
            pub fn contains(&self, r: ObjectRef) -> bool {
                match r.kind {
                    $(ObjectKind::$ty => self.$field.get(r.id).is_some(),)*
                    _ => false,
                }
            }
            /// Id of the object of `kind` named `name`.
            pub fn id_by_name(&self, kind: ObjectKind, name: &str) -> Option<uuid::Uuid> {
                match kind {
                    $(ObjectKind::$ty => self.$field.by_name(name).map(|o| o.uuid()),)*
                    _ => None,
                }
            }
            fn put_unchecked(&mut self, obj: Object) -> Option<Object> {
                if let Object::Vm(vm) = &obj {
                    self.index_macs(vm);
                }
                match obj {
                    $(Object::$ty(o) => self.$field.insert(o).map(|old| Object::$ty((*old).clone())),)*
                }
            }
            fn remove_unchecked(&mut self, r: ObjectRef) -> Option<Object> {
                let old = match r.kind {
                    $(ObjectKind::$ty => self.$field.remove(r.id).map(|old| Object::$ty((*old).clone())),)*
                    _ => None,
                };
                if let Some(Object::Vm(vm)) = &old {
                    self.unindex_macs(vm);
                }
                old
            }
            /// Number of objects of `kind` (0 for jobs and events, which are not inventory objects).
            pub fn count(&self, kind: ObjectKind) -> usize {
                match kind {
                    $(ObjectKind::$ty => self.$field.len(),)*
                    _ => 0,
                }
            }
            /// Copies of the objects of `kind`, in name order.
            pub fn objects_of(&self, kind: ObjectKind) -> Vec<Object> {
                match kind {
                    $(ObjectKind::$ty => self.$field.iter().map(|o| Object::$ty((**o).clone())).collect(),)*
                    _ => Vec::new(),
                }
            }
            /// Every object, in kind then name order.
            pub fn all_objects(&self) -> Vec<Object> {
                let mut v = Vec::new();
                $(v.extend(self.$field.iter().map(|o| Object::$ty((**o).clone())));)*
                v
            }
            fn all_refs_of(&self) -> Vec<(ObjectRef, Vec<ObjectRef>)> {
                let mut v = Vec::new();
                $(v.extend(self.$field.iter().map(|o| (o.object_ref(), o.references())));)*
                v
            }
        }
    };
}

inventory! {
    servers: Server,
    pools: ServerPool,
    file_servers: FileServer,
    storage_arrays: StorageArray,
    file_systems: FileSystem,
    physical_disks: PhysicalDisk,
    access_groups: AccessGroup,
    repositories: Repository,
    virtual_disks: VirtualDisk,
    virtual_cdroms: VirtualCdrom,
    templates: Template,
    assemblies: Assembly,
    networks: Network,
    ports: Port,
    bond_ports: BondPort,
    vlan_interfaces: VlanInterface,
    vms: Vm,
    anti_affinity_groups: AntiAffinityGroup,
    tags: Tag,
}

/// Objects that refer to other objects. Used to refuse deleting an object still in use.
pub trait References {
    /// The objects this one refers to.
    fn references(&self) -> Vec<ObjectRef>;
}

fn r(kind: ObjectKind, id: impl Into<uuid::Uuid>) -> ObjectRef {
    ObjectRef::new(kind, id)
}

impl References for Server {
    fn references(&self) -> Vec<ObjectRef> {
        self.pool.iter().map(|p| r(ObjectKind::ServerPool, *p)).collect()
    }
}
impl References for ServerPool {
    fn references(&self) -> Vec<ObjectRef> {
        let mut v: Vec<_> = self.pool_file_system.iter().map(|f| r(ObjectKind::FileSystem, *f)).collect();
        v.extend(self.policy.networks.iter().map(|(n, _)| r(ObjectKind::Network, *n)));
        v
    }
}
impl References for FileServer {
    fn references(&self) -> Vec<ObjectRef> {
        self.admin_servers.iter().map(|s| r(ObjectKind::Server, *s)).collect()
    }
}
impl References for StorageArray {
    fn references(&self) -> Vec<ObjectRef> {
        self.admin_servers.iter().map(|s| r(ObjectKind::Server, *s)).collect()
    }
}
impl References for FileSystem {
    fn references(&self) -> Vec<ObjectRef> {
        vec![match self.location {
            FileSystemLocation::FileServer(f) => r(ObjectKind::FileServer, f),
            FileSystemLocation::PhysicalDisk(d) => r(ObjectKind::PhysicalDisk, d),
        }]
    }
}
impl References for PhysicalDisk {
    fn references(&self) -> Vec<ObjectRef> {
        let mut v: Vec<_> = self.array.iter().map(|a| r(ObjectKind::StorageArray, *a)).collect();
        v.extend(self.local_server.iter().map(|s| r(ObjectKind::Server, *s)));
        v
    }
}
impl References for AccessGroup {
    fn references(&self) -> Vec<ObjectRef> {
        let mut v = vec![r(ObjectKind::StorageArray, self.array)];
        v.extend(self.disks.iter().map(|d| r(ObjectKind::PhysicalDisk, *d)));
        v
    }
}
impl References for Repository {
    fn references(&self) -> Vec<ObjectRef> {
        let mut v = vec![match self.backing {
            RepositoryBacking::FileSystem(f) => r(ObjectKind::FileSystem, f),
            RepositoryBacking::PhysicalDisk(d) => r(ObjectKind::PhysicalDisk, d),
        }];
        v.extend(self.owner_pool.iter().map(|p| r(ObjectKind::ServerPool, *p)));
        v
    }
}
impl References for VirtualDisk {
    fn references(&self) -> Vec<ObjectRef> {
        vec![r(ObjectKind::Repository, self.repository)]
    }
}
impl References for VirtualCdrom {
    fn references(&self) -> Vec<ObjectRef> {
        vec![r(ObjectKind::Repository, self.repository)]
    }
}
fn config_refs(c: &VmConfig, v: &mut Vec<ObjectRef>) {
    for d in &c.disks {
        match d.target {
            DiskTarget::VirtualDisk(x) => v.push(r(ObjectKind::VirtualDisk, x)),
            DiskTarget::Cdrom(x) => v.push(r(ObjectKind::VirtualCdrom, x)),
            DiskTarget::EmptyCdrom => {}
            DiskTarget::PhysicalDisk(x) => v.push(r(ObjectKind::PhysicalDisk, x)),
        }
    }
    v.extend(c.vnics.iter().filter_map(|n| n.network).map(|n| r(ObjectKind::Network, n)));
}
impl References for Template {
    fn references(&self) -> Vec<ObjectRef> {
        let mut v = vec![r(ObjectKind::Repository, self.repository)];
        v.extend(self.disks.iter().map(|d| r(ObjectKind::VirtualDisk, *d)));
        config_refs(&self.config, &mut v);
        v
    }
}
impl References for Assembly {
    fn references(&self) -> Vec<ObjectRef> {
        let mut v = vec![r(ObjectKind::Repository, self.repository)];
        v.extend(self.disks.iter().map(|d| r(ObjectKind::VirtualDisk, *d)));
        v
    }
}
impl References for Network {
    fn references(&self) -> Vec<ObjectRef> {
        self.members
            .iter()
            .map(|m| match m {
                NetworkMember::Port(p) => r(ObjectKind::Port, *p),
                NetworkMember::Bond(b) => r(ObjectKind::BondPort, *b),
                NetworkMember::Vlan(x) => r(ObjectKind::VlanInterface, *x),
            })
            .collect()
    }
}
impl References for Port {
    fn references(&self) -> Vec<ObjectRef> {
        vec![r(ObjectKind::Server, self.server)]
    }
}
impl References for BondPort {
    fn references(&self) -> Vec<ObjectRef> {
        let mut v = vec![r(ObjectKind::Server, self.server)];
        v.extend(self.ports.iter().map(|p| r(ObjectKind::Port, *p)));
        v
    }
}
impl References for VlanInterface {
    fn references(&self) -> Vec<ObjectRef> {
        vec![
            r(ObjectKind::Server, self.server),
            match self.parent {
                VlanParent::Port(p) => r(ObjectKind::Port, p),
                VlanParent::Bond(b) => r(ObjectKind::BondPort, b),
            },
        ]
    }
}
impl References for Vm {
    fn references(&self) -> Vec<ObjectRef> {
        let mut v = Vec::new();
        config_refs(&self.config, &mut v);
        v.extend(self.repository.iter().map(|x| r(ObjectKind::Repository, *x)));
        v.extend(self.pool.iter().map(|x| r(ObjectKind::ServerPool, *x)));
        v.extend(self.server.iter().map(|x| r(ObjectKind::Server, *x)));
        v.extend(self.anti_affinity_group.iter().map(|x| r(ObjectKind::AntiAffinityGroup, *x)));
        v
    }
}
impl References for AntiAffinityGroup {
    fn references(&self) -> Vec<ObjectRef> {
        vec![r(ObjectKind::ServerPool, self.pool)]
    }
}
impl References for Tag {
    fn references(&self) -> Vec<ObjectRef> {
        // A tag does not keep its objects alive: deleting a tagged object drops it from the tag.
        Vec::new()
    }
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The object of type `T` with this id.
    pub fn get<T: InInventory>(&self, id: impl Into<uuid::Uuid>) -> Result<&Arc<T>> {
        let id = id.into();
        T::table(self).get(id).ok_or_else(|| Error::not_found(T::KIND, id))
    }

    /// The object of type `T` with this name.
    pub fn get_by_name<T: InInventory>(&self, name: &str) -> Result<&Arc<T>> {
        T::table(self).by_name(name).ok_or_else(|| Error::not_found(T::KIND, name))
    }

    /// The VM owning a MAC, if any.
    pub fn vm_with_mac(&self, mac: &str) -> Option<VmId> {
        parse_mac(mac).ok().and_then(|m| self.macs.get(&m).copied())
    }

    /// Whether a MAC is in use by a VM.
    pub fn mac_in_use(&self, mac: u64) -> bool {
        self.macs.contains_key(&mac)
    }

    fn index_macs(&mut self, vm: &Vm) {
        if let Some(old) = self.vms.get(vm.id.0).cloned() {
            self.unindex_macs(&old);
        }
        for n in &vm.config.vnics {
            if let Ok(m) = parse_mac(&n.mac) {
                self.macs.insert(m, vm.id);
            }
        }
    }

    fn unindex_macs(&mut self, vm: &Vm) {
        for n in &vm.config.vnics {
            if let Ok(m) = parse_mac(&n.mac) {
                if self.macs.get(&m) == Some(&vm.id) {
                    self.macs.remove(&m);
                }
            }
        }
    }

    /// Load an object without checks (used when reading a database that was checked on write).
    pub fn load(&mut self, obj: Object) {
        self.put_unchecked(obj);
    }

    /// Insert or replace an object after checking its own invariants and every cross-object rule.
    /// Returns the previous version.
    pub fn put(&mut self, obj: Object) -> Result<Option<Object>> {
        obj.validate()?;
        self.check_put(&obj)?;
        Ok(self.put_unchecked(obj))
    }

    /// Remove an object that nothing refers to any more. Returns it.
    pub fn remove(&mut self, what: ObjectRef) -> Result<Object> {
        self.check_remove(what)?;
        self.force_remove(what)
    }

    /// Check that `what` exists and nothing refers to it.
    pub fn check_remove(&self, what: ObjectRef) -> Result<()> {
        if !self.contains(what) {
            return Err(Error::not_found(what.kind, what.id));
        }
        if let Some((user, _)) =
            self.all_refs_of().into_iter().find(|(u, refs)| *u != what && refs.contains(&what))
        {
            let name = self.get_object(user).map(|o| o.name().to_owned()).unwrap_or_default();
            return Err(Error::conflict(format!("{what} is still used by {} {name:?}", user.kind)));
        }
        Ok(())
    }

    /// Remove an object without checking references (restoring an earlier consistent state).
    pub fn force_remove(&mut self, what: ObjectRef) -> Result<Object> {
        let old = self.remove_unchecked(what).ok_or_else(|| Error::not_found(what.kind, what.id))?;
        // Drop the removed object from tags.
        let tags: Vec<Tag> =
            self.tags.iter().filter(|t| t.objects.contains(&what)).map(|t| (**t).clone()).collect();
        for mut t in tags {
            t.objects.retain(|o| *o != what);
            self.put_unchecked(Object::Tag(t));
        }
        Ok(old)
    }

    /// A reference to an object that does not exist is [`Error::NotFound`] with its kind and id.
    fn must_exist(&self, r: ObjectRef) -> Result<()> {
        if self.contains(r) {
            Ok(())
        } else {
            Err(Error::not_found(r.kind, r.id))
        }
    }

    /// Check every cross-object rule for putting `obj`.
    pub fn check_put(&self, obj: &Object) -> Result<()> {
        // Unique names per kind.
        if let Some(other) = self.id_by_name(obj.kind(), obj.name()) {
            if other != obj.uuid() {
                return Err(Error::conflict(format!(
                    "a {} named {:?} already exists",
                    obj.kind(),
                    obj.name()
                )));
            }
        }
        match obj {
            Object::Server(s) => self.check_server(s),
            Object::ServerPool(p) => self.check_pool(p),
            Object::Repository(rp) => self.check_repository(rp),
            Object::Network(n) => self.check_network(n),
            Object::BondPort(b) => self.check_bond(b),
            Object::VlanInterface(v) => self.check_vlan(v),
            Object::Vm(vm) => self.check_vm(vm),
            Object::AccessGroup(g) => self.check_access_group(g),
            Object::AntiAffinityGroup(g) => {
                self.must_exist(r(ObjectKind::ServerPool, g.pool))?;
                for v in &g.vms {
                    self.must_exist(r(ObjectKind::Vm, *v))?;
                }
                Ok(())
            }
            Object::Tag(t) => {
                for o in &t.objects {
                    self.must_exist(*o)?;
                }
                Ok(())
            }
            other => {
                let refs = match other {
                    Object::FileServer(x) => x.references(),
                    Object::StorageArray(x) => x.references(),
                    Object::FileSystem(x) => x.references(),
                    Object::PhysicalDisk(x) => x.references(),
                    Object::VirtualDisk(x) => x.references(),
                    Object::VirtualCdrom(x) => x.references(),
                    Object::Template(x) => x.references(),
                    Object::Assembly(x) => x.references(),
                    Object::Port(x) => x.references(),
                    _ => Vec::new(),
                };
                for rf in refs {
                    self.must_exist(rf)?;
                }
                Ok(())
            }
        }
    }

    fn check_server(&self, s: &Server) -> Result<()> {
        if let Some(p) = s.pool {
            let pool = self.get::<ServerPool>(p)?;
            if !pool.servers.contains(&s.id) {
                return Err(Error::invalid(
                    "pool",
                    "the pool does not list this server; use add_server_to_pool",
                ));
            }
        }
        // Memory of VMs already placed here must still fit.
        for vm in self.vms.iter().filter(|v| v.server == Some(s.id)) {
            if vm.config.max_memory_mib > s.guest_memory_mib() {
                return Err(Error::conflict(format!(
                    "VM {:?} has max memory {} MiB, more than the {} MiB this server offers guests",
                    vm.name,
                    vm.config.max_memory_mib,
                    s.guest_memory_mib()
                )));
            }
        }
        Ok(())
    }

    fn check_pool(&self, p: &ServerPool) -> Result<()> {
        if let Some(fs) = p.pool_file_system {
            self.must_exist(r(ObjectKind::FileSystem, fs))?;
        }
        for s in &p.servers {
            let server = self.get::<Server>(*s)?;
            if let Some(other) = server.pool {
                if other != p.id {
                    return Err(Error::conflict(format!(
                        "server {:?} already belongs to another pool; a server belongs to at most one pool",
                        server.name
                    )));
                }
            }
        }
        for (n, _) in &p.policy.networks {
            self.must_exist(r(ObjectKind::Network, *n))?;
        }
        if !p.clustered {
            if let Some(rp) = self.repositories.iter().find(|rp| {
                rp.owner_pool == Some(p.id) && matches!(rp.backing, RepositoryBacking::PhysicalDisk(_))
            }) {
                return Err(Error::conflict(format!(
                    "repository {:?} is on a physical disk, which needs this pool to stay clustered",
                    rp.name
                )));
            }
        }
        Ok(())
    }

    fn check_repository(&self, rp: &Repository) -> Result<()> {
        for rf in rp.references() {
            self.must_exist(rf)?;
        }
        if let RepositoryBacking::PhysicalDisk(_) = rp.backing {
            let pool_id = rp.owner_pool.ok_or_else(|| {
                Error::invalid("owner_pool", "a repository on a physical disk needs a clustered pool")
            })?;
            let pool = self.get::<ServerPool>(pool_id)?;
            if !pool.clustered {
                return Err(Error::invalid(
                    "owner_pool",
                    format!(
                        "pool {:?} is not clustered; a repository on a physical disk needs a clustered pool",
                        pool.name
                    ),
                ));
            }
            for s in &rp.presented_to {
                if !pool.servers.contains(s) {
                    return Err(Error::conflict(
                        "a repository on a physical disk is presented to the servers of one pool only",
                    ));
                }
            }
        }
        for s in &rp.presented_to {
            self.must_exist(r(ObjectKind::Server, *s))?;
        }
        Ok(())
    }

    /// The server a network member (port, bond or VLAN interface) is on.
    pub fn member_server(&self, m: NetworkMember) -> Result<ServerId> {
        Ok(match m {
            NetworkMember::Port(p) => self.get::<Port>(p)?.server,
            NetworkMember::Bond(b) => self.get::<BondPort>(b)?.server,
            NetworkMember::Vlan(v) => self.get::<VlanInterface>(v)?.server,
        })
    }

    fn check_network(&self, n: &Network) -> Result<()> {
        let mut servers = std::collections::HashSet::new();
        for m in &n.members {
            let server = self.member_server(*m)?;
            if !servers.insert(server) {
                return Err(Error::conflict("a network has at most one member per server"));
            }
            if let NetworkMember::Port(p) = m {
                if self.ports.get(p.0).and_then(|p| p.bond).is_some() {
                    return Err(Error::conflict(
                        "a port enslaved to a bond cannot be a network member itself",
                    ));
                }
            }
            if let Some(other) = self.networks.iter().find(|o| o.id != n.id && o.members.contains(m)) {
                return Err(Error::conflict(format!(
                    "{m:?} already belongs to network {:?}; a port belongs to at most one network",
                    other.name
                )));
            }
        }
        if !n.functions.contains(&NetworkFunction::VirtualMachine) {
            if let Some(vm) =
                self.vms.iter().find(|vm| vm.config.vnics.iter().any(|v| v.network == Some(n.id)))
            {
                return Err(Error::conflict(format!(
                    "VM {:?} has a VNIC on this network, so it must keep the VirtualMachine function",
                    vm.name
                )));
            }
        }
        Ok(())
    }

    fn check_bond(&self, b: &BondPort) -> Result<()> {
        self.must_exist(r(ObjectKind::Server, b.server))?;
        for p in &b.ports {
            let port = self.get::<Port>(*p)?;
            if port.server != b.server {
                return Err(Error::invalid("ports", "all ports of a bond are on its server"));
            }
            if let Some(other) = port.bond {
                if other != b.id {
                    return Err(Error::conflict(format!("port {:?} is already in another bond", port.name)));
                }
            }
            if self.networks.iter().any(|n| n.members.contains(&NetworkMember::Port(*p))) {
                return Err(Error::conflict(format!(
                    "port {:?} is a network member; remove it first",
                    port.name
                )));
            }
        }
        Ok(())
    }

    fn check_vlan(&self, v: &VlanInterface) -> Result<()> {
        self.must_exist(r(ObjectKind::Server, v.server))?;
        let parent_server = match v.parent {
            VlanParent::Port(p) => self.get::<Port>(p)?.server,
            VlanParent::Bond(b) => self.get::<BondPort>(b)?.server,
        };
        if parent_server != v.server {
            return Err(Error::invalid("parent", "the parent interface is on another server"));
        }
        if self.vlan_interfaces.iter().any(|o| o.id != v.id && o.parent == v.parent && o.vlan_id == v.vlan_id)
        {
            return Err(Error::conflict(format!("VLAN {} already exists on that interface", v.vlan_id)));
        }
        Ok(())
    }

    fn check_access_group(&self, g: &AccessGroup) -> Result<()> {
        self.must_exist(r(ObjectKind::StorageArray, g.array))?;
        for d in &g.disks {
            let disk = self.get::<PhysicalDisk>(*d)?;
            if disk.array != Some(g.array) {
                return Err(Error::invalid("disks", format!("disk {:?} is on another array", disk.name)));
            }
        }
        for s in &g.servers {
            self.must_exist(r(ObjectKind::Server, *s))?;
        }
        Ok(())
    }

    fn check_vm(&self, vm: &Vm) -> Result<()> {
        for rf in vm.references() {
            self.must_exist(rf)?;
        }
        for n in &vm.config.vnics {
            let mac = parse_mac(&n.mac).map_err(|_| Error::invalid("vnics.mac", "not a MAC"))?;
            if let Some(owner) = self.macs.get(&mac) {
                if *owner != vm.id {
                    return Err(Error::conflict(format!("MAC {} is already used by another VM", n.mac)));
                }
            }
            if let Some(net) = n.network {
                let net = self.get::<Network>(net)?;
                if !net.functions.contains(&NetworkFunction::VirtualMachine) {
                    return Err(Error::invalid(
                        "vnics.network",
                        format!("network {:?} does not carry the VirtualMachine function", net.name),
                    ));
                }
            }
        }
        if let Some(s) = vm.server {
            let server = self.get::<Server>(s)?;
            if vm.config.max_memory_mib > server.guest_memory_mib() {
                return Err(Error::invalid(
                    "max_memory_mib",
                    format!(
                        "{} MiB exceeds the {} MiB server {:?} offers guests",
                        vm.config.max_memory_mib,
                        server.guest_memory_mib(),
                        server.name
                    ),
                ));
            }
            if vm.config.max_vcpus > MAX_VCPUS {
                return Err(Error::invalid("max_vcpus", "too many"));
            }
            if let (Some(vp), Some(sp)) = (vm.pool, server.pool) {
                if vp != sp {
                    return Err(Error::invalid("server", "the server is not in the VM's pool"));
                }
            }
        }
        for d in &vm.config.disks {
            if let DiskTarget::VirtualDisk(id) = d.target {
                let disk = self.get::<VirtualDisk>(id)?;
                if !disk.shareable {
                    if let Some(other) = self.vms.iter().find(|o| {
                        o.id != vm.id
                            && o.config.disks.iter().any(|od| od.target == DiskTarget::VirtualDisk(id))
                    }) {
                        return Err(Error::conflict(format!(
                            "virtual disk {:?} is not shareable and is used by VM {:?}",
                            disk.name, other.name
                        )));
                    }
                }
            }
            if let DiskTarget::PhysicalDisk(id) = d.target {
                let disk = self.get::<PhysicalDisk>(id)?;
                if let Some(r) =
                    self.repositories.iter().find(|r| r.backing == RepositoryBacking::PhysicalDisk(id))
                {
                    return Err(Error::conflict(format!(
                        "physical disk {:?} holds repository {:?}",
                        disk.name, r.name
                    )));
                }
                if let Some(other) = self.vms.iter().find(|o| {
                    o.id != vm.id && o.config.disks.iter().any(|od| od.target == DiskTarget::PhysicalDisk(id))
                }) {
                    return Err(Error::conflict(format!(
                        "physical disk {:?} is used by VM {:?}",
                        disk.name, other.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Allocate `count` free MACs from `range`, skipping those in use and in `also_taken`.
    pub fn allocate_macs(&self, range: MacRange, count: usize, also_taken: &[u64]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(count);
        let mut m = range.first;
        while out.len() < count {
            if m > range.last {
                return Err(Error::conflict("the MAC range is exhausted; widen it with set_mac_range"));
            }
            if !self.macs.contains_key(&m) && !also_taken.contains(&m) {
                out.push(format_mac(m));
            }
            m += 1;
        }
        Ok(out)
    }
}
