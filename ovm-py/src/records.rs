//! Frozen record classes: read-only snapshots of ovm objects, with typed getters.

use std::sync::Arc;

use ovm_core::model as m;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::convert::{self, enum_name, ids, opt_id};

/// Build the `to_dict()` of a serde value.
fn dict<'py, T: serde::Serialize>(py: Python<'py>, v: &T) -> PyResult<Bound<'py, PyAny>> {
    convert::to_python(py, v)
}

/// A reference to any object: its kind (e.g. `"Vm"`) and id.
#[pyclass(module = "ovm", frozen, eq, hash, from_py_object)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectRef(pub m::ObjectRef);

impl From<m::ObjectRef> for ObjectRef {
    fn from(r: m::ObjectRef) -> Self {
        ObjectRef(r)
    }
}

#[pymethods]
impl ObjectRef {
    #[new]
    fn new(kind: &str, id: &str) -> PyResult<Self> {
        Ok(ObjectRef(m::ObjectRef { kind: convert::kind(kind)?, id: convert::uuid("id", id)? }))
    }
    /// Kind name, e.g. `"Vm"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.kind.name()
    }
    /// The object's id.
    #[getter]
    fn id(&self) -> String {
        self.0.id.to_string()
    }
    fn __repr__(&self) -> String {
        format!("ObjectRef({:?}, {:?})", self.0.kind.name(), self.0.id.to_string())
    }
}

/// Common parts of the records wrapping an inventory object.
macro_rules! common {
    ($ty:ident) => {
        impl $ty {
            pub fn new(inner: Arc<m::$ty>) -> Self {
                $ty(inner)
            }
        }
    };
}

/// A Xen server.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Server(pub Arc<m::Server>);
common!(Server);

#[pymethods]
impl Server {
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
    /// Description.
    #[getter]
    fn description(&self) -> &str {
        &self.0.description
    }
    /// Address of the agent (`sim://NAME` for simulated servers).
    #[getter]
    fn address(&self) -> &str {
        &self.0.address
    }
    /// Physical CPU threads.
    #[getter]
    fn cpus(&self) -> u32 {
        self.0.hardware.cpus
    }
    /// Total memory, MiB.
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.0.hardware.memory_mib
    }
    /// Memory available to guests, MiB.
    #[getter]
    fn guest_memory_mib(&self) -> u64 {
        self.0.guest_memory_mib()
    }
    /// Xen version.
    #[getter]
    fn xen_version(&self) -> &str {
        &self.0.hardware.xen_version
    }
    /// `"Running"`, `"Stopped"` or `"Unreachable"`.
    #[getter]
    fn power_state(&self) -> String {
        enum_name(&self.0.power_state)
    }
    /// `"Unowned"`, `"Owned"` or `"OwnedByOther"`.
    #[getter]
    fn ownership(&self) -> &'static str {
        match self.0.ownership {
            m::Ownership::Unowned => "Unowned",
            m::Ownership::Owned => "Owned",
            m::Ownership::OwnedByOther(_) => "OwnedByOther",
        }
    }
    /// In maintenance mode.
    #[getter]
    fn maintenance_mode(&self) -> bool {
        self.0.maintenance_mode
    }
    /// Pool id, if in a pool.
    #[getter]
    fn pool(&self) -> Option<String> {
        opt_id(self.0.pool)
    }
    /// Roles, e.g. `["VirtualMachine", "Utility"]`.
    #[getter]
    fn roles(&self) -> Vec<String> {
        self.0.roles.iter().map(enum_name).collect()
    }
    /// Reference to this object.
    #[getter(r#ref)]
    fn object_ref(&self) -> ObjectRef {
        ObjectRef(m::ManagedObject::object_ref(&*self.0))
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &*self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "Server(name={:?}, id={:?}, address={:?}, power_state={:?}, pool={:?}, cpus={}, memory_mib={})",
            self.0.name,
            self.0.id.to_string(),
            self.0.address,
            enum_name(&self.0.power_state),
            opt_id(self.0.pool),
            self.0.hardware.cpus,
            self.0.hardware.memory_mib
        )
    }
}

/// A server pool.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct ServerPool(pub Arc<m::ServerPool>);
common!(ServerPool);

#[pymethods]
impl ServerPool {
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
    /// Description.
    #[getter]
    fn description(&self) -> &str {
        &self.0.description
    }
    /// Whether the pool is clustered.
    #[getter]
    fn clustered(&self) -> bool {
        self.0.clustered
    }
    /// The virtual IP, if any.
    #[getter]
    fn virtual_ip(&self) -> Option<String> {
        self.0.virtual_ip.map(|ip| ip.to_string())
    }
    /// Member server ids.
    #[getter]
    fn servers(&self) -> Vec<String> {
        ids(&self.0.servers)
    }
    /// The master server's id.
    #[getter]
    fn master(&self) -> Option<String> {
        opt_id(self.0.master)
    }
    /// Start policy name.
    #[getter]
    fn start_policy(&self) -> String {
        enum_name(&self.0.start_policy)
    }
    /// Reference to this object.
    #[getter(r#ref)]
    fn object_ref(&self) -> ObjectRef {
        ObjectRef(m::ManagedObject::object_ref(&*self.0))
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &*self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "ServerPool(name={:?}, id={:?}, servers={}, master={:?})",
            self.0.name,
            self.0.id.to_string(),
            self.0.servers.len(),
            opt_id(self.0.master)
        )
    }
}

/// A storage repository.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Repository(pub Arc<m::Repository>);
common!(Repository);

#[pymethods]
impl Repository {
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
    /// Description.
    #[getter]
    fn description(&self) -> &str {
        &self.0.description
    }
    /// Owning pool id.
    #[getter]
    fn owner_pool(&self) -> Option<String> {
        opt_id(self.0.owner_pool)
    }
    /// Ids of the servers it is presented to.
    #[getter]
    fn presented_to(&self) -> Vec<String> {
        ids(&self.0.presented_to)
    }
    /// Capacity, bytes.
    #[getter]
    fn capacity_bytes(&self) -> u64 {
        self.0.capacity_bytes
    }
    /// Used, bytes.
    #[getter]
    fn used_bytes(&self) -> u64 {
        self.0.used_bytes
    }
    /// Free, bytes.
    #[getter]
    fn free_bytes(&self) -> u64 {
        self.0.free_bytes()
    }
    /// Reference to this object.
    #[getter(r#ref)]
    fn object_ref(&self) -> ObjectRef {
        ObjectRef(m::ManagedObject::object_ref(&*self.0))
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &*self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "Repository(name={:?}, id={:?}, used_bytes={}, capacity_bytes={}, presented_to={})",
            self.0.name,
            self.0.id.to_string(),
            self.0.used_bytes,
            self.0.capacity_bytes,
            self.0.presented_to.len()
        )
    }
}

/// A virtual disk in a repository.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct VirtualDisk(pub Arc<m::VirtualDisk>);
common!(VirtualDisk);

#[pymethods]
impl VirtualDisk {
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
    /// Repository id.
    #[getter]
    fn repository(&self) -> String {
        self.0.repository.to_string()
    }
    /// Size, bytes.
    #[getter]
    fn size_bytes(&self) -> u64 {
        self.0.size_bytes
    }
    /// `"Raw"`, `"Sparse"` or `"Qcow2"`.
    #[getter]
    fn format(&self) -> String {
        enum_name(&self.0.format)
    }
    /// Shareable between VMs.
    #[getter]
    fn shareable(&self) -> bool {
        self.0.shareable
    }
    /// File path on the servers.
    #[getter]
    fn path(&self) -> &str {
        &self.0.path
    }
    /// Reference to this object.
    #[getter(r#ref)]
    fn object_ref(&self) -> ObjectRef {
        ObjectRef(m::ManagedObject::object_ref(&*self.0))
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &*self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "VirtualDisk(name={:?}, id={:?}, size_bytes={})",
            self.0.name,
            self.0.id.to_string(),
            self.0.size_bytes
        )
    }
}

/// A VM template.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Template(pub Arc<m::Template>);
common!(Template);

#[pymethods]
impl Template {
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
    /// Repository id.
    #[getter]
    fn repository(&self) -> String {
        self.0.repository.to_string()
    }
    /// Configuration of the VMs cloned from it.
    #[getter]
    fn config(&self) -> VmConfig {
        VmConfig(self.0.config.clone())
    }
    /// Its disks' ids.
    #[getter]
    fn disks(&self) -> Vec<String> {
        ids(&self.0.disks)
    }
    /// Reference to this object.
    #[getter(r#ref)]
    fn object_ref(&self) -> ObjectRef {
        ObjectRef(m::ManagedObject::object_ref(&*self.0))
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &*self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "Template(name={:?}, id={:?}, disks={})",
            self.0.name,
            self.0.id.to_string(),
            self.0.disks.len()
        )
    }
}

/// A logical network.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Network(pub Arc<m::Network>);
common!(Network);

#[pymethods]
impl Network {
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
    /// Description.
    #[getter]
    fn description(&self) -> &str {
        &self.0.description
    }
    /// Functions carried, e.g. `["VirtualMachine"]`.
    #[getter]
    fn functions(&self) -> Vec<String> {
        self.0.functions.iter().map(enum_name).collect()
    }
    /// Bridge name on the servers.
    #[getter]
    fn bridge(&self) -> &str {
        &self.0.bridge
    }
    /// MTU.
    #[getter]
    fn mtu(&self) -> u16 {
        self.0.mtu
    }
    /// Reference to this object.
    #[getter(r#ref)]
    fn object_ref(&self) -> ObjectRef {
        ObjectRef(m::ManagedObject::object_ref(&*self.0))
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &*self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "Network(name={:?}, id={:?}, bridge={:?}, functions={:?})",
            self.0.name,
            self.0.id.to_string(),
            self.0.bridge,
            self.functions()
        )
    }
}

/// A virtual NIC: its MAC and network. An empty `mac` asks the manager to allocate one.
#[pyclass(module = "ovm", frozen, from_py_object)]
#[derive(Debug, Clone)]
pub struct Vnic(pub m::Vnic);

#[pymethods]
impl Vnic {
    #[new]
    #[pyo3(signature = (network=None, mac=String::new()))]
    fn py_new(network: Option<&str>, mac: String) -> PyResult<Self> {
        let network = network.map(|n| convert::uuid("network", n).map(m::NetworkId)).transpose()?;
        Ok(Vnic(m::Vnic { mac, network }))
    }
    /// MAC address (`""` until allocated).
    #[getter]
    fn mac(&self) -> &str {
        &self.0.mac
    }
    /// Network id.
    #[getter]
    fn network(&self) -> Option<String> {
        opt_id(self.0.network)
    }
    fn __repr__(&self) -> String {
        format!("Vnic(network={:?}, mac={:?})", opt_id(self.0.network), self.0.mac)
    }
}

/// The configuration of a VM or template. Build one with keyword arguments; the manager checks
/// it when it is used (`create_vm`, `edit_vm`, `create_template`).
#[pyclass(module = "ovm", frozen, from_py_object)]
#[derive(Debug, Clone)]
pub struct VmConfig(pub m::VmConfig);

#[pymethods]
impl VmConfig {
    #[new]
    #[pyo3(signature = (
        *, vcpus=1, max_vcpus=None, memory_mib=512, max_memory_mib=None, domain_type="Pv",
        vnics=Vec::new(), disks=Vec::new(), high_availability=false, os_type=String::new(),
        start_priority=50, boot_order=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        vcpus: u32,
        max_vcpus: Option<u32>,
        memory_mib: u64,
        max_memory_mib: Option<u64>,
        domain_type: &str,
        vnics: Vec<Vnic>,
        disks: Vec<(u8, String)>,
        high_availability: bool,
        os_type: String,
        start_priority: u8,
        boot_order: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let mut c = m::VmConfig {
            domain_type: convert::parse_enum("domain_type", domain_type)?,
            vcpus,
            max_vcpus: max_vcpus.unwrap_or(vcpus),
            memory_mib,
            max_memory_mib: max_memory_mib.unwrap_or(memory_mib),
            vnics: vnics.into_iter().map(|v| v.0).collect(),
            high_availability,
            os_type,
            start_priority,
            ..m::VmConfig::default()
        };
        for (slot, disk) in disks {
            let target = m::DiskTarget::VirtualDisk(m::VirtualDiskId(convert::uuid("disks", &disk)?));
            c.disks.push(m::DiskMapping { slot, target });
        }
        if let Some(order) = boot_order {
            c.boot_order =
                order.iter().map(|b| convert::parse_enum("boot_order", b)).collect::<PyResult<_>>()?;
        }
        Ok(VmConfig(c))
    }
    /// `"Hvm"`, `"Pv"`, `"PvHvm"` or `"Pvh"`.
    #[getter]
    fn domain_type(&self) -> String {
        enum_name(&self.0.domain_type)
    }
    /// vCPUs at start.
    #[getter]
    fn vcpus(&self) -> u32 {
        self.0.vcpus
    }
    /// Maximum vCPUs.
    #[getter]
    fn max_vcpus(&self) -> u32 {
        self.0.max_vcpus
    }
    /// Memory at start, MiB.
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.0.memory_mib
    }
    /// Maximum memory, MiB.
    #[getter]
    fn max_memory_mib(&self) -> u64 {
        self.0.max_memory_mib
    }
    /// Virtual NICs.
    #[getter]
    fn vnics(&self) -> Vec<Vnic> {
        self.0.vnics.iter().cloned().map(Vnic).collect()
    }
    /// Disk mappings as `(slot, kind, target id)`; kind is `"VirtualDisk"`, `"Cdrom"` or `"EmptyCdrom"`.
    #[getter]
    fn disks(&self) -> Vec<(u8, &'static str, Option<String>)> {
        self.0
            .disks
            .iter()
            .map(|d| match d.target {
                m::DiskTarget::VirtualDisk(id) => (d.slot, "VirtualDisk", Some(id.to_string())),
                m::DiskTarget::Cdrom(id) => (d.slot, "Cdrom", Some(id.to_string())),
                m::DiskTarget::EmptyCdrom => (d.slot, "EmptyCdrom", None),
            })
            .collect()
    }
    /// Boot order.
    #[getter]
    fn boot_order(&self) -> Vec<String> {
        self.0.boot_order.iter().map(enum_name).collect()
    }
    /// Restart elsewhere if the server fails.
    #[getter]
    fn high_availability(&self) -> bool {
        self.0.high_availability
    }
    /// Operating system type.
    #[getter]
    fn os_type(&self) -> &str {
        &self.0.os_type
    }
    /// Start priority (1..=100).
    #[getter]
    fn start_priority(&self) -> u8 {
        self.0.start_priority
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "VmConfig(domain_type={:?}, vcpus={}, max_vcpus={}, memory_mib={}, max_memory_mib={}, vnics={}, disks={})",
            enum_name(&self.0.domain_type),
            self.0.vcpus,
            self.0.max_vcpus,
            self.0.memory_mib,
            self.0.max_memory_mib,
            self.0.vnics.len(),
            self.0.disks.len()
        )
    }
}

/// A virtual machine.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Vm(pub Arc<m::Vm>);
common!(Vm);

#[pymethods]
impl Vm {
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
    /// Description.
    #[getter]
    fn description(&self) -> &str {
        &self.0.description
    }
    /// Configuration.
    #[getter]
    fn config(&self) -> VmConfig {
        VmConfig(self.0.config.clone())
    }
    /// Memory at start, MiB (`config.memory_mib`).
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.0.config.memory_mib
    }
    /// vCPUs at start (`config.vcpus`).
    #[getter]
    fn vcpus(&self) -> u32 {
        self.0.config.vcpus
    }
    /// MACs of its VNICs.
    #[getter]
    fn macs(&self) -> Vec<String> {
        self.0.config.vnics.iter().map(|v| v.mac.clone()).collect()
    }
    /// Repository id.
    #[getter]
    fn repository(&self) -> Option<String> {
        opt_id(self.0.repository)
    }
    /// Pool id.
    #[getter]
    fn pool(&self) -> Option<String> {
        opt_id(self.0.pool)
    }
    /// Server id.
    #[getter]
    fn server(&self) -> Option<String> {
        opt_id(self.0.server)
    }
    /// `"Stopped"`, `"Starting"`, `"Running"`, `"Paused"`, `"Suspended"`, `"Stopping"` or `"Migrating"`.
    #[getter]
    fn power_state(&self) -> String {
        enum_name(&self.0.power_state)
    }
    /// Xen domain id while resident.
    #[getter]
    fn domid(&self) -> Option<u32> {
        self.0.domid
    }
    /// Reference to this object.
    #[getter(r#ref)]
    fn object_ref(&self) -> ObjectRef {
        ObjectRef(m::ManagedObject::object_ref(&*self.0))
    }
    /// Every field, as plain Python data (the form `Manager.create_objects` accepts under `"object"`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &*self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "Vm(name={:?}, id={:?}, power_state={:?}, server={:?}, vcpus={}, memory_mib={})",
            self.0.name,
            self.0.id.to_string(),
            enum_name(&self.0.power_state),
            opt_id(self.0.server),
            self.0.config.vcpus,
            self.0.config.memory_mib
        )
    }
}

/// A snapshot of a job's record.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct JobInfo(pub m::Job);

#[pymethods]
impl JobInfo {
    /// Id.
    #[getter]
    fn id(&self) -> String {
        self.0.id.to_string()
    }
    /// Operation, e.g. `"StartVm"`.
    #[getter]
    fn kind(&self) -> &str {
        &self.0.kind
    }
    /// Summary, e.g. `"Start VM web01"`.
    #[getter]
    fn summary(&self) -> &str {
        &self.0.summary
    }
    /// `"Queued"`, `"Running"`, `"ChildQueued"`, `"ChildRunning"`, `"Completed"`, `"Failed"` or `"Aborted"`.
    #[getter]
    fn state(&self) -> &'static str {
        self.0.state.name()
    }
    /// Whether the job has finished.
    #[getter]
    fn done(&self) -> bool {
        self.0.state.is_terminal()
    }
    /// Progress, 0.0 to 1.0.
    #[getter]
    fn progress(&self) -> f32 {
        self.0.progress
    }
    /// Latest progress message.
    #[getter]
    fn message(&self) -> &str {
        &self.0.message
    }
    /// Objects the job acts on.
    #[getter]
    fn targets(&self) -> Vec<ObjectRef> {
        self.0.targets.iter().copied().map(ObjectRef).collect()
    }
    /// The object created or affected, once completed.
    #[getter]
    fn result(&self) -> Option<ObjectRef> {
        self.0.result.map(ObjectRef)
    }
    /// The error (an `OvmError` instance) if it failed or was aborted.
    #[getter]
    fn error<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.0.error.as_ref().map(|e| crate::errors::exception(py, e)).transpose()
    }
    /// Creation time, ms since the epoch.
    #[getter]
    fn created(&self) -> u64 {
        self.0.created
    }
    /// Start time, ms since the epoch.
    #[getter]
    fn started(&self) -> Option<u64> {
        self.0.started
    }
    /// End time, ms since the epoch.
    #[getter]
    fn finished(&self) -> Option<u64> {
        self.0.finished
    }
    /// Steps completed, in order.
    #[getter]
    fn steps_done(&self) -> Vec<String> {
        self.0.steps_done.clone()
    }
    /// Steps undone, in order of undoing.
    #[getter]
    fn steps_undone(&self) -> Vec<String> {
        self.0.steps_undone.clone()
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "JobInfo(kind={:?}, id={:?}, state={:?}, progress={:.2}, summary={:?})",
            self.0.kind,
            self.0.id.to_string(),
            self.0.state.name(),
            self.0.progress,
            self.0.summary
        )
    }
}

/// An event about an object.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Event(pub m::Event);

#[pymethods]
impl Event {
    /// Id.
    #[getter]
    fn id(&self) -> String {
        self.0.id.to_string()
    }
    /// The object it is about.
    #[getter]
    fn object(&self) -> ObjectRef {
        ObjectRef(self.0.object)
    }
    /// `"Info"`, `"Warning"`, `"Error"` or `"Critical"`.
    #[getter]
    fn severity(&self) -> &'static str {
        self.0.severity.name()
    }
    /// Short type, e.g. `"server.unreachable"`.
    #[getter]
    fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// Description.
    #[getter]
    fn summary(&self) -> &str {
        &self.0.summary
    }
    /// When raised, ms since the epoch.
    #[getter]
    fn created(&self) -> u64 {
        self.0.created
    }
    /// When acknowledged, ms since the epoch.
    #[getter]
    fn acknowledged(&self) -> Option<u64> {
        self.0.acknowledged
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "Event(severity={:?}, event_type={:?}, object={}, summary={:?}, acknowledged={})",
            self.0.severity.name(),
            self.0.event_type,
            ObjectRef(self.0.object).__repr__(),
            self.0.summary,
            self.0.acknowledged.is_some()
        )
    }
}

/// One entry of the change feed.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct Change(pub m::Change);

#[pymethods]
impl Change {
    /// Token; resume after it.
    #[getter]
    fn token(&self) -> u64 {
        self.0.token
    }
    /// The object that changed (any kind, including jobs and events).
    #[getter]
    fn object(&self) -> ObjectRef {
        ObjectRef(self.0.object)
    }
    /// `"Added"`, `"Modified"` or `"Removed"`.
    #[getter]
    fn op(&self) -> &'static str {
        self.0.op.name()
    }
    /// When, ms since the epoch.
    #[getter]
    fn at(&self) -> u64 {
        self.0.at
    }
    fn __repr__(&self) -> String {
        format!(
            "Change(token={}, op={:?}, object={})",
            self.0.token,
            self.0.op.name(),
            ObjectRef(self.0.object).__repr__()
        )
    }
}

/// Convert a list of inventory objects into a Python list of records.
pub fn list<'py, T, R>(
    py: Python<'py>,
    items: Vec<Arc<T>>,
    wrap: fn(Arc<T>) -> R,
) -> PyResult<Bound<'py, PyList>>
where
    R: pyo3::PyClass + Into<pyo3::PyClassInitializer<R>>,
{
    let objs = items.into_iter().map(|x| Bound::new(py, wrap(x))).collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, objs)
}
