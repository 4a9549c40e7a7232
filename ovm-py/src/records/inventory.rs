//! The record classes of the inventory kinds, each declared once with [`record!`]: the declaration
//! gives the Python class, its getters, `ref`, `to_dict()`, `__repr__`, and its stub text (the
//! `_ovm.pyi` section between the generated-records markers, checked by `tests/stubs.rs`).

use std::sync::Arc;

use ovm_core::model as m;
use pyo3::prelude::*;

use super::{dict, ObjectRef, VmConfig};
use crate::convert::{enum_name, ids, opt_id};

/// Declares the record class of each inventory kind.
///
/// ```text
/// /// Class doc.
/// Kind repr(field, ...) {
///     /// Getter doc.
///     field: RustType as "python type" = |o| expression over o: &m::Kind;
/// }
/// ```
///
/// Every class also gets `id`, `name`, `ref` and `to_dict()`. `repr(...)` lists the getters shown
/// after the name and id by `__repr__`.
macro_rules! record {
    ($(
        $(#[doc = $doc:literal])*
        $ty:ident repr($($rf:ident),* $(,)?) {
            $(
                $(#[doc = $fdoc:literal])*
                $field:ident: $rty:ty as $stub:literal = |$o:ident| $body:expr;
            )*
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[pyclass(module = "ovm", frozen)]
            #[derive(Debug)]
            pub struct $ty(pub Arc<m::$ty>);

            impl $ty {
                /// Wrap a snapshot.
                pub fn new(inner: Arc<m::$ty>) -> Self {
                    $ty(inner)
                }
                /// This class's stub text.
                const STUB: &'static str = concat!(
                    "@final\nclass ", stringify!($ty), ":\n",
                    "    @property\n    def id(self) -> str: ...\n",
                    "    @property\n    def name(self) -> str: ...\n",
                    $("    @property\n    def ", stringify!($field), "(self) -> ", $stub, ": ...\n",)*
                    "    @property\n    def ref(self) -> ObjectRef: ...\n",
                    "    def to_dict(self) -> dict[str, Any]: ...\n",
                );
            }

            #[pymethods]
            impl $ty {
                /// Id.
                #[getter]
                fn id(&self) -> String {
                    self.0.id.to_string()
                }
                /// Name.
                #[getter]
                fn name(&self) -> &str {
                    &self.0.name
                }
                $(
                    $(#[doc = $fdoc])*
                    #[getter]
                    fn $field(&self) -> $rty {
                        let $o: &m::$ty = &self.0;
                        $body
                    }
                )*
                /// Reference to this object.
                #[getter(r#ref)]
                fn object_ref(&self) -> ObjectRef {
                    ObjectRef(m::ManagedObject::object_ref(&*self.0))
                }
                /// Every field, as plain Python data (the form `Manager.create_objects` accepts under
                /// `"object"`).
                fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    dict(py, &*self.0)
                }
                fn __repr__(&self) -> String {
                    #[allow(unused_mut)]
                    let mut s = format!(
                        "{}(name={:?}, id={:?}",
                        stringify!($ty),
                        self.0.name,
                        self.0.id.to_string()
                    );
                    $(s.push_str(&format!(", {}={}", stringify!($rf), Show::show(&self.$rf())));)*
                    s.push(')');
                    s
                }
            }
        )*

        /// Add every inventory record class to the module, and `Record`, their `typing.Union`.
        pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
            $(module.add_class::<$ty>()?;)*
            let py = module.py();
            let classes = pyo3::types::PyTuple::new(py, [$(module.getattr(stringify!($ty))?),*])?;
            module.add("Record", py.import("typing")?.getattr("Union")?.get_item(classes)?)?;
            Ok(())
        }

        /// The names of the inventory record classes, in declaration order.
        pub const NAMES: &[&str] = &[$(stringify!($ty)),*];

        /// The record class of any inventory object.
        pub fn object_record<'py>(py: Python<'py>, o: m::Object) -> PyResult<Bound<'py, PyAny>> {
            match o {
                $(m::Object::$ty(x) => Ok(Bound::new(py, $ty(Arc::new(x)))?.into_any()),)*
            }
        }

        /// The stub section of the inventory record classes, as committed in `_ovm.pyi`: every
        /// class, then `Record`, the union of them.
        pub fn record_stubs() -> String {
            let mut s = [$($ty::STUB),*].join("\n");
            s.push_str("\nRecord = Union[\n");
            $(s.push_str(concat!("    ", stringify!($ty), ",\n"));)*
            s.push_str("]\n");
            s
        }
    };
}

/// A getter's value as Python would print it in a `repr`.
trait Show {
    fn show(&self) -> String;
}

impl Show for &str {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Show for String {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

macro_rules! show_number {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
show_number!(u16, u32, u64);

impl<T: Show> Show for Option<T> {
    fn show(&self) -> String {
        self.as_ref().map_or_else(|| "None".into(), Show::show)
    }
}

impl<T: Show> Show for Vec<T> {
    fn show(&self) -> String {
        format!("[{}]", self.iter().map(Show::show).collect::<Vec<_>>().join(", "))
    }
}

/// `"None"`, `"Dhcp"` or `"Static ADDRESS/PREFIX"`.
fn addressing(a: &m::Addressing) -> String {
    match a {
        m::Addressing::None => "None".into(),
        m::Addressing::Dhcp => "Dhcp".into(),
        m::Addressing::Static { address, prefix } => format!("Static {address}/{prefix}"),
    }
}

record! {
    /// A Xen server.
    Server repr(address, power_state, pool, cpus, memory_mib) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Address of the agent (`sim://NAME` for simulated servers).
        address: &str as "str" = |o| &o.address;
        /// Physical CPU threads.
        cpus: u32 as "int" = |o| o.hardware.cpus;
        /// Total memory, MiB.
        memory_mib: u64 as "int" = |o| o.hardware.memory_mib;
        /// Memory available to guests, MiB.
        guest_memory_mib: u64 as "int" = |o| o.guest_memory_mib();
        /// Xen version.
        xen_version: &str as "str" = |o| &o.hardware.xen_version;
        /// `"Running"`, `"Stopped"` or `"Unreachable"`.
        power_state: String as "str" = |o| enum_name(&o.power_state);
        /// `"Unowned"`, `"Owned"` or `"OwnedByOther"`.
        ownership: &'static str as "str" = |o| match o.ownership {
            m::Ownership::Unowned => "Unowned",
            m::Ownership::Owned => "Owned",
            m::Ownership::OwnedByOther(_) => "OwnedByOther",
        };
        /// In maintenance mode.
        maintenance_mode: bool as "bool" = |o| o.maintenance_mode;
        /// Pool id, if in a pool.
        pool: Option<String> as "Optional[str]" = |o| opt_id(o.pool);
        /// Roles, e.g. `["VirtualMachine", "Utility"]`.
        roles: Vec<String> as "list[str]" = |o| o.roles.iter().map(enum_name).collect();
        /// The MAC a Wake-on-LAN magic packet wakes the server by, if set.
        wol_mac: Option<String> as "Optional[str]" = |o| o.wol_mac.clone();
        /// The out-of-band power controller it is powered on and off by, if set.
        out_of_band_controller: Option<String> as "Optional[str]" =
            |o| o.out_of_band.as_ref().map(|b| b.controller.clone());
        /// Its management controller's address, if set.
        out_of_band_address: Option<String> as "Optional[str]" = |o| o.out_of_band.as_ref().map(|b| b.address.clone());
    }

    /// A server pool.
    ServerPool repr(servers, master) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Whether the pool is clustered.
        clustered: bool as "bool" = |o| o.clustered;
        /// The virtual IP, if any.
        virtual_ip: Option<String> as "Optional[str]" = |o| o.virtual_ip.map(|ip| ip.to_string());
        /// The pool file system's id (a clustered pool's).
        pool_file_system: Option<String> as "Optional[str]" = |o| opt_id(o.pool_file_system);
        /// How long a member may be silent before the others declare it dead, seconds.
        cluster_timeout_secs: u32 as "int" = |o| o.cluster_timeout_secs;
        /// Member server ids.
        servers: Vec<String> as "list[str]" = |o| ids(&o.servers);
        /// The master server's id.
        master: Option<String> as "Optional[str]" = |o| opt_id(o.master);
        /// Start policy name.
        start_policy: String as "str" = |o| enum_name(&o.start_policy);
        /// DRS/DPM mode: `"Off"`, `"Drs"` or `"Dpm"`.
        policy_mode: String as "str" = |o| enum_name(&o.policy.mode);
        /// DRS/DPM CPU threshold, percent.
        cpu_threshold_percent: u8 as "int" = |o| o.policy.cpu_threshold_percent;
        /// DRS/DPM period, seconds.
        policy_period_secs: u32 as "int" = |o| o.policy.period_secs;
        /// How many simultaneous server failures the pool keeps room for (HA).
        ha_failures_to_tolerate: u32 as "int" = |o| o.ha_failures_to_tolerate;
    }

    /// A file server (NFS, a server's local file system, or reached through an external plug-in).
    FileServer repr(kind, access_host) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// `"Local"`, `"Nfs"` or `"External"`.
        kind: String as "str" = |o| enum_name(&o.kind);
        /// Host the servers reach it at (for an external plug-in, the file server as it names it).
        access_host: &str as "str" = |o| &o.access_host;
        /// Ids of the servers that administer it.
        admin_servers: Vec<String> as "list[str]" = |o| ids(&o.admin_servers);
        /// Whether its file systems have been discovered.
        refreshed: bool as "bool" = |o| o.refreshed;
        /// The external storage plug-in that reaches it (empty for NFS and local).
        plugin: &str as "str" = |o| &o.plugin;
    }

    /// A storage array (iSCSI or Fibre Channel).
    StorageArray repr(kind, access_host, capacity_bytes) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Kind of array.
        kind: String as "str" = |o| enum_name(&o.kind);
        /// Storage plug-in name.
        plugin: &str as "str" = |o| &o.plugin;
        /// Host the servers reach it at.
        access_host: &str as "str" = |o| &o.access_host;
        /// Port the servers reach it at.
        access_port: u16 as "int" = |o| o.access_port;
        /// Ids of the servers that administer it.
        admin_servers: Vec<String> as "list[str]" = |o| ids(&o.admin_servers);
        /// Capacity, bytes.
        capacity_bytes: u64 as "int" = |o| o.capacity_bytes;
    }

    /// A file system: an NFS export, a local file system, or OCFS2 on a physical disk.
    FileSystem repr(path, size_bytes, free_bytes) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// The file server exporting it, if it is on one.
        file_server: Option<String> as "Optional[str]" = |o| match o.location {
            m::FileSystemLocation::FileServer(id) => Some(id.to_string()),
            m::FileSystemLocation::PhysicalDisk(_) => None,
        };
        /// The physical disk it is created on, if it is on one.
        physical_disk: Option<String> as "Optional[str]" = |o| match o.location {
            m::FileSystemLocation::PhysicalDisk(id) => Some(id.to_string()),
            m::FileSystemLocation::FileServer(_) => None,
        };
        /// Path (export path, or mount point).
        path: &str as "str" = |o| &o.path;
        /// Size, bytes.
        size_bytes: u64 as "int" = |o| o.size_bytes;
        /// Free, bytes.
        free_bytes: u64 as "int" = |o| o.free_bytes;
    }

    /// A physical disk: a LUN of a storage array, or a server's local disk.
    PhysicalDisk repr(size_bytes, array, local_server) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// The storage array it belongs to, if any.
        array: Option<String> as "Optional[str]" = |o| opt_id(o.array);
        /// The server it is local to, if any.
        local_server: Option<String> as "Optional[str]" = |o| opt_id(o.local_server);
        /// Size, bytes.
        size_bytes: u64 as "int" = |o| o.size_bytes;
        /// Shareable between servers.
        shareable: bool as "bool" = |o| o.shareable;
        /// SCSI page 83 id.
        page83_id: &str as "str" = |o| &o.page83_id;
        /// The iSCSI target serving it (empty for local and Fibre Channel disks).
        target: &str as "str" = |o| &o.target;
    }

    /// An access group: which servers see which disks of a storage array.
    AccessGroup repr(array, servers, disks) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// The storage array's id.
        array: String as "str" = |o| o.array.to_string();
        /// Ids of the servers in the group.
        servers: Vec<String> as "list[str]" = |o| ids(&o.servers);
        /// Ids of the physical disks presented to them.
        disks: Vec<String> as "list[str]" = |o| ids(&o.disks);
    }

    /// A storage repository.
    Repository repr(used_bytes, capacity_bytes, presented_to) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Owning pool id.
        owner_pool: Option<String> as "Optional[str]" = |o| opt_id(o.owner_pool);
        /// Ids of the servers it is presented to.
        presented_to: Vec<String> as "list[str]" = |o| ids(&o.presented_to);
        /// The mount on each server it is presented to: (server id, `"Mounted"` or `"Failed"`,
        /// why it failed).
        mounts: Vec<(String, String, String)> as "list[tuple[str, str, str]]" = |o| o
            .mounts
            .iter()
            .map(|m| (m.server.to_string(), enum_name(&m.state), m.message.clone()))
            .collect();
        /// Capacity, bytes.
        capacity_bytes: u64 as "int" = |o| o.capacity_bytes;
        /// Used, bytes.
        used_bytes: u64 as "int" = |o| o.used_bytes;
        /// Free, bytes.
        free_bytes: u64 as "int" = |o| o.free_bytes();
    }

    /// A virtual disk in a repository.
    VirtualDisk repr(size_bytes) {
        /// Repository id.
        repository: String as "str" = |o| o.repository.to_string();
        /// Size, bytes.
        size_bytes: u64 as "int" = |o| o.size_bytes;
        /// `"Raw"`, `"Sparse"` or `"Qcow2"`.
        format: String as "str" = |o| enum_name(&o.format);
        /// Shareable between VMs.
        shareable: bool as "bool" = |o| o.shareable;
        /// File path on the servers.
        path: &str as "str" = |o| &o.path;
    }

    /// An ISO image in a repository (a virtual CD-ROM).
    VirtualCdrom repr(size_bytes) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Repository id.
        repository: String as "str" = |o| o.repository.to_string();
        /// Size, bytes.
        size_bytes: u64 as "int" = |o| o.size_bytes;
        /// File path on the servers.
        path: &str as "str" = |o| &o.path;
    }

    /// A VM template.
    Template repr(disks) {
        /// Repository id.
        repository: String as "str" = |o| o.repository.to_string();
        /// Configuration of the VMs cloned from it.
        config: VmConfig as "VmConfig" = |o| VmConfig(o.config.clone());
        /// Its disks' ids.
        disks: Vec<String> as "list[str]" = |o| ids(&o.disks);
    }

    /// An assembly: an imported OVF package of VMs and disks.
    Assembly repr(source_url, vm_names) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Repository id.
        repository: String as "str" = |o| o.repository.to_string();
        /// Where it was imported from.
        source_url: &str as "str" = |o| &o.source_url;
        /// Names of the VMs it describes.
        vm_names: Vec<String> as "list[str]" = |o| o.vm_names.clone();
        /// Its disks' ids.
        disks: Vec<String> as "list[str]" = |o| ids(&o.disks);
    }

    /// A logical network.
    Network repr(bridge, functions) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Functions carried, e.g. `["VirtualMachine"]`.
        functions: Vec<String> as "list[str]" = |o| o.functions.iter().map(enum_name).collect();
        /// Bridge name on the servers.
        bridge: &str as "str" = |o| &o.bridge;
        /// MTU.
        mtu: u16 as "int" = |o| o.mtu;
    }

    /// A physical network port of a server.
    Port repr(server, interface, mac) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Server id.
        server: String as "str" = |o| o.server.to_string();
        /// Interface name on the server, e.g. `"eth0"`.
        interface: &str as "str" = |o| &o.interface;
        /// MAC address.
        mac: &str as "str" = |o| &o.mac;
        /// `"None"`, `"Dhcp"` or `"Static ADDRESS/PREFIX"`.
        addressing: String as "str" = |o| addressing(&o.addressing);
        /// The bond it is enslaved to, if any.
        bond: Option<String> as "Optional[str]" = |o| opt_id(o.bond);
    }

    /// A bond of ports on a server.
    BondPort repr(server, interface, mode) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Server id.
        server: String as "str" = |o| o.server.to_string();
        /// Interface name on the server, e.g. `"bond0"`.
        interface: &str as "str" = |o| &o.interface;
        /// Bonding mode, e.g. `"ActiveBackup"`.
        mode: String as "str" = |o| enum_name(&o.mode);
        /// Ids of its ports.
        ports: Vec<String> as "list[str]" = |o| ids(&o.ports);
        /// `"None"`, `"Dhcp"` or `"Static ADDRESS/PREFIX"`.
        addressing: String as "str" = |o| addressing(&o.addressing);
        /// MTU.
        mtu: u16 as "int" = |o| o.mtu;
        /// Link monitoring: `"Mii"` (the NICs' carrier) or `"Arp"` (probes of `arp_targets`).
        monitor: &'static str as "str" = |o| match o.monitor {
            m::BondMonitor::Mii { .. } => "Mii",
            m::BondMonitor::Arp { .. } => "Arp",
        };
        /// How often links are checked, ms.
        monitor_interval_ms: u32 as "int" = |o| match o.monitor {
            m::BondMonitor::Mii { interval_ms } | m::BondMonitor::Arp { interval_ms, .. } => interval_ms,
        };
        /// The addresses ARP probes go to (empty when MII-monitored).
        arp_targets: Vec<String> as "list[str]" = |o| match &o.monitor {
            m::BondMonitor::Arp { targets, .. } => targets.iter().map(|t| t.to_string()).collect(),
            m::BondMonitor::Mii { .. } => Vec::new(),
        };
    }

    /// A VLAN interface on a port or a bond.
    VlanInterface repr(server, vlan_id) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Server id.
        server: String as "str" = |o| o.server.to_string();
        /// The port it is on, if on a port.
        port: Option<String> as "Optional[str]" = |o| match o.parent {
            m::VlanParent::Port(id) => Some(id.to_string()),
            m::VlanParent::Bond(_) => None,
        };
        /// The bond it is on, if on a bond.
        bond: Option<String> as "Optional[str]" = |o| match o.parent {
            m::VlanParent::Bond(id) => Some(id.to_string()),
            m::VlanParent::Port(_) => None,
        };
        /// VLAN id (1-4094).
        vlan_id: u16 as "int" = |o| o.vlan_id;
        /// `"None"`, `"Dhcp"` or `"Static ADDRESS/PREFIX"`.
        addressing: String as "str" = |o| addressing(&o.addressing);
    }

    /// A virtual machine.
    Vm repr(power_state, server, vcpus, memory_mib) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Configuration.
        config: VmConfig as "VmConfig" = |o| VmConfig(o.config.clone());
        /// Memory at start, MiB (`config.memory_mib`).
        memory_mib: u64 as "int" = |o| o.config.memory_mib;
        /// vCPUs at start (`config.vcpus`).
        vcpus: u32 as "int" = |o| o.config.vcpus;
        /// MACs of its VNICs.
        macs: Vec<String> as "list[str]" = |o| o.config.vnics.iter().map(|v| v.mac.clone()).collect();
        /// Repository id.
        repository: Option<String> as "Optional[str]" = |o| opt_id(o.repository);
        /// Pool id.
        pool: Option<String> as "Optional[str]" = |o| opt_id(o.pool);
        /// Server id.
        server: Option<String> as "Optional[str]" = |o| opt_id(o.server);
        /// `"Stopped"`, `"Starting"`, `"Running"`, `"Paused"`, `"Suspended"`, `"Stopping"` or
        /// `"Migrating"`.
        power_state: String as "str" = |o| enum_name(&o.power_state);
        /// Xen domain id while resident.
        domid: Option<u32> as "Optional[int]" = |o| o.domid;
        /// The anti-affinity group it is in, if any.
        anti_affinity_group: Option<String> as "Optional[str]" = |o| opt_id(o.anti_affinity_group);
    }

    /// An anti-affinity group: VMs of a pool that should run on different servers.
    AntiAffinityGroup repr(pool, vms) {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// Pool id.
        pool: String as "str" = |o| o.pool.to_string();
        /// Ids of its VMs.
        vms: Vec<String> as "list[str]" = |o| ids(&o.vms);
    }

    /// A tag that can be attached to any object.
    Tag repr() {
        /// Description.
        description: &str as "str" = |o| &o.description;
        /// The objects carrying it.
        objects: Vec<ObjectRef> as "list[ObjectRef]" = |o| o.objects.iter().copied().map(ObjectRef).collect();
    }
}
