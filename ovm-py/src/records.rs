//! Frozen record classes: read-only snapshots of ovm objects, with typed getters.

use std::sync::Arc;

use ovm_core::model as m;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::convert::{self, enum_name, opt_id};
use crate::errors::OrRaise;

mod inventory;
pub use inventory::*;

/// Build the `to_dict()` of a serde value.
fn dict<'py, T: serde::Serialize>(py: Python<'py>, v: &T) -> PyResult<Bound<'py, PyAny>> {
    convert::to_python(py, v)
}

pub use crate::ids::ObjectRef;

/// A disk mapping argument: `(slot, virtual_disk_id)`, or the getter's shape `(slot, kind, id)` with
/// kind `"VirtualDisk"`, `"Cdrom"` (an ISO's id), `"PhysicalDisk"` (a LUN's id) or `"EmptyCdrom"`
/// (id `None`).
fn disk_mapping(d: &Bound<'_, PyAny>) -> PyResult<(u8, m::DiskTarget)> {
    if let Ok((slot, disk)) = d.extract::<(u8, String)>() {
        return Ok((slot, m::DiskTarget::VirtualDisk(m::VirtualDiskId(convert::uuid("disks", &disk)?))));
    }
    let (slot, kind, id) = d.extract::<(u8, String, Option<String>)>()?;
    let target = match (kind.as_str(), id) {
        ("VirtualDisk", Some(id)) => m::DiskTarget::VirtualDisk(m::VirtualDiskId(convert::uuid("disks", &id)?)),
        ("Cdrom", Some(id)) => m::DiskTarget::Cdrom(m::VirtualCdromId(convert::uuid("disks", &id)?)),
        ("EmptyCdrom", None) => m::DiskTarget::EmptyCdrom,
        ("PhysicalDisk", Some(id)) => m::DiskTarget::PhysicalDisk(m::PhysicalDiskId(convert::uuid("disks", &id)?)),
        (k, _) => {
            return Err(ovm_core::Error::invalid(
                "disks",
                format!("{k:?} with that id is not a disk mapping (VirtualDisk, Cdrom or PhysicalDisk with an id, EmptyCdrom without)"),
            ))
            .or_raise()
        }
    };
    Ok((slot, target))
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
        start_priority=50, boot_order=None, kernel=None, initrd=None, cmdline=String::new()
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        vcpus: u32,
        max_vcpus: Option<u32>,
        memory_mib: u64,
        max_memory_mib: Option<u64>,
        domain_type: &str,
        vnics: Vec<Vnic>,
        disks: Vec<Bound<'_, PyAny>>,
        high_availability: bool,
        os_type: String,
        start_priority: u8,
        boot_order: Option<Vec<String>>,
        kernel: Option<String>,
        initrd: Option<String>,
        cmdline: String,
    ) -> PyResult<Self> {
        // ovm-core's defaults for what is not given (the C API builds VMs with the same call).
        let mut c =
            m::VmConfig::sized(memory_mib, max_memory_mib, vcpus, max_vcpus, vnics.len()).or_raise()?;
        c.domain_type = convert::parse_enum("domain_type", domain_type)?;
        c.vnics = vnics.into_iter().map(|v| v.0).collect();
        c.high_availability = high_availability;
        c.os_type = os_type;
        c.start_priority = start_priority;
        match kernel {
            Some(kernel) => c.pv_kernel = Some(m::PvKernel { kernel, initrd, cmdline }),
            None if initrd.is_some() || !cmdline.is_empty() => {
                return Err(ovm_core::Error::invalid("kernel", "initrd and cmdline need a kernel")).or_raise()
            }
            None => {}
        }
        for d in disks {
            let (slot, target) = disk_mapping(&d)?;
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
    /// PV/PVH direct-boot kernel path, if the VM boots one (see `Manager.import_kernel`).
    #[getter]
    fn kernel(&self) -> Option<String> {
        self.0.pv_kernel.as_ref().map(|k| k.kernel.clone())
    }
    /// Initial ramdisk path of the direct-boot kernel, if any.
    #[getter]
    fn initrd(&self) -> Option<String> {
        self.0.pv_kernel.as_ref().and_then(|k| k.initrd.clone())
    }
    /// Kernel command line of the direct-boot kernel (empty without one).
    #[getter]
    fn cmdline(&self) -> String {
        self.0.pv_kernel.as_ref().map(|k| k.cmdline.clone()).unwrap_or_default()
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
    /// Disk mappings as `(slot, kind, target id)`; kind is `"VirtualDisk"`, `"Cdrom"`, `"PhysicalDisk"`
    /// or `"EmptyCdrom"`.
    #[getter]
    fn disks(&self) -> Vec<(u8, &'static str, Option<String>)> {
        self.0
            .disks
            .iter()
            .map(|d| match d.target {
                m::DiskTarget::VirtualDisk(id) => (d.slot, "VirtualDisk", Some(id.to_string())),
                m::DiskTarget::Cdrom(id) => (d.slot, "Cdrom", Some(id.to_string())),
                m::DiskTarget::EmptyCdrom => (d.slot, "EmptyCdrom", None),
                m::DiskTarget::PhysicalDisk(id) => (d.slot, "PhysicalDisk", Some(id.to_string())),
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
    /// Whether a PV guest has a virtual framebuffer (its screen, served as its graphical console).
    #[getter]
    fn framebuffer(&self) -> bool {
        self.0.framebuffer
    }
    /// A PV guest's network boot: `(url, cmdline)` of its install tree, or `None`.
    #[getter]
    fn network_boot(&self) -> Option<(String, String)> {
        self.0.network_boot.as_ref().map(|n| (n.url.clone(), n.cmdline.clone()))
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
    /// Bytes moved by a job that moves data (an import, a copy); 0 for other jobs.
    #[getter]
    fn bytes_done(&self) -> u64 {
        self.0.bytes_done
    }
    /// Bytes it moves in all, `None` when unknown (or for a job that moves none).
    #[getter]
    fn bytes_total(&self) -> Option<u64> {
        self.0.bytes_total
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
    /// Ids of the child jobs it ran (say, the migrations of an evacuation), in order.
    #[getter]
    fn children(&self) -> Vec<String> {
        self.0.children.iter().map(|c| c.to_string()).collect()
    }
    /// Id of the job that ran it as a child, if any.
    #[getter]
    fn parent(&self) -> Option<String> {
        self.0.parent.map(|p| p.to_string())
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

/// One reason a migration would fail (`Manager.migration_blockers`).
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct MigrationBlocker(pub m::MigrationBlocker);

#[pymethods]
impl MigrationBlocker {
    /// The kind's stable name, e.g. `"TargetInMaintenance"` (see `migration_blocker_kinds()`).
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.kind.name()
    }
    /// The kind's stable number.
    #[getter]
    fn code(&self) -> u32 {
        self.0.kind.code()
    }
    /// The object it is about, if any: the target or source server, a repository, storage array
    /// or LUN, a network, a VM of the anti-affinity group.
    #[getter]
    fn object(&self) -> Option<ObjectRef> {
        self.0.object.map(ObjectRef::from)
    }
    /// A sentence naming the objects and numbers.
    #[getter]
    fn detail(&self) -> &str {
        &self.0.detail
    }
    fn __repr__(&self) -> String {
        format!("MigrationBlocker({}, {:?})", self.0.kind.name(), self.0.detail)
    }
    fn __str__(&self) -> String {
        self.0.detail.clone()
    }
}

/// A simulated day of a data centre under a policy (`simulate_policy_day`): the totals, and per
/// one-minute tick the servers powered on and the running servers' CPU utilisation.
#[pyclass(module = "ovm", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct SimulatedDay {
    /// Ticks simulated (one a minute).
    pub ticks: u32,
    /// Live migrations the policy made.
    pub migrations: u64,
    /// Servers powered off by DPM.
    pub power_offs: u64,
    /// Servers powered on by DPM.
    pub power_ons: u64,
    /// Server-hours powered on.
    pub server_hours_on: f64,
    /// Server-minutes spent over the CPU or network threshold.
    pub server_minutes_over: f64,
    /// Server failures drawn.
    pub failures: u64,
    /// VMs of failed servers that could not be restarted at once.
    pub vms_not_restarted: u64,
    /// VM-minutes spent down after failures.
    pub vm_minutes_down: f64,
    /// Servers powered on (running or booting) after each tick.
    pub powered_servers: Vec<u32>,
    /// The running servers' CPU utilisation after each tick, percent.
    pub cpu_utilisation_percent: Vec<f64>,
}

impl SimulatedDay {
    /// The record of a finished simulation and its series.
    pub fn of(
        r: &ovm_core::policy::simulate::SimReport,
        powered: Vec<u32>,
        utilisation: Vec<f64>,
    ) -> SimulatedDay {
        SimulatedDay {
            ticks: r.ticks,
            migrations: r.migrations,
            power_offs: r.power_offs,
            power_ons: r.power_ons,
            server_hours_on: r.server_hours_on,
            server_minutes_over: r.server_minutes_over,
            failures: r.failures,
            vms_not_restarted: r.vms_not_restarted,
            vm_minutes_down: r.vm_minutes_down,
            powered_servers: powered,
            cpu_utilisation_percent: utilisation,
        }
    }
}

#[pymethods]
impl SimulatedDay {
    fn __repr__(&self) -> String {
        format!(
            "SimulatedDay(ticks={}, server_hours_on={:.1}, server_minutes_over={:.0}, migrations={}, power_offs={}, \
             power_ons={}, vms_not_restarted={})",
            self.ticks,
            self.server_hours_on,
            self.server_minutes_over,
            self.migrations,
            self.power_offs,
            self.power_ons,
            self.vms_not_restarted
        )
    }
}

/// One action of a DRS/DPM plan (`Manager.policy_plan`): a live migration, or a server powered
/// off or on, with its reason.
#[pyclass(module = "ovm", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct PolicyAction {
    /// `"migrate"`, `"power_off"` or `"power_on"`.
    pub kind: &'static str,
    /// The VM a migration moves.
    pub vm: Option<String>,
    /// The server a migration leaves, or the server powered off or on.
    pub server: String,
    /// Where a migration goes.
    pub target: Option<String>,
    /// The reason's kind: `"cpu_over_threshold"`, `"network_over_threshold"`, `"consolidate"`,
    /// `"underused"`, `"pool_hot"`, `"overloaded"` or `"ha_reserve"`.
    pub reason: String,
    /// The reason in a sentence, with its figures.
    pub detail: String,
}

#[pymethods]
impl PolicyAction {
    fn __repr__(&self) -> String {
        match &self.vm {
            Some(vm) => format!(
                "PolicyAction({}, vm={vm}, {} -> {}, {:?})",
                self.kind,
                self.server,
                self.target.as_deref().unwrap_or("?"),
                self.detail
            ),
            None => format!("PolicyAction({}, {}, {:?})", self.kind, self.server, self.detail),
        }
    }
}

impl PolicyAction {
    /// The Python view of a plan's action.
    pub fn of(a: &ovm_core::policy::balance::Action) -> PolicyAction {
        use ovm_core::policy::balance::Action;
        let reason_kind = |r: &ovm_core::policy::balance::Reason| {
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                .unwrap_or_default()
        };
        let detail = |r| ovm_core::manager::describe_reason(r, |s| s.to_string());
        match a {
            Action::Migrate { vm, from, to, reason } => PolicyAction {
                kind: "migrate",
                vm: Some(vm.to_string()),
                server: from.to_string(),
                target: Some(to.to_string()),
                reason: reason_kind(reason),
                detail: detail(reason),
            },
            Action::PowerOff { server, reason } | Action::PowerOn { server, reason } => PolicyAction {
                kind: if matches!(a, Action::PowerOff { .. }) { "power_off" } else { "power_on" },
                vm: None,
                server: server.to_string(),
                target: None,
                reason: reason_kind(reason),
                detail: detail(reason),
            },
        }
    }
}

/// One reason in an HA decision (`HaDecision.reasons`).
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct HaReason(pub m::HaReason);

#[pymethods]
impl HaReason {
    /// The kind's stable name, e.g. `"NoCapacity"` (see `ha_reason_kinds()`).
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.kind.name()
    }
    /// The kind's stable number.
    #[getter]
    fn code(&self) -> u32 {
        self.0.kind.code()
    }
    /// The surviving server the reason is about, if any.
    #[getter]
    fn server(&self) -> Option<String> {
        opt_id(self.0.server)
    }
    /// The other object it is about, if any: a repository, storage array or LUN, a network, a VM
    /// of the anti-affinity group, the VM itself or the pool.
    #[getter]
    fn object(&self) -> Option<ObjectRef> {
        self.0.object.map(ObjectRef::from)
    }
    /// A sentence naming the objects and numbers.
    #[getter]
    fn detail(&self) -> &str {
        &self.0.detail
    }
    fn __repr__(&self) -> String {
        format!("HaReason({}, {:?})", self.0.kind.name(), self.0.detail)
    }
    fn __str__(&self) -> String {
        self.0.detail.clone()
    }
}

/// What HA does with one VM of a failed server (`HaTolerance.decisions`).
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct HaDecision(pub m::HaDecision);

#[pymethods]
impl HaDecision {
    /// The VM's id.
    #[getter]
    fn vm(&self) -> String {
        self.0.vm.to_string()
    }
    /// The VM's name.
    #[getter]
    fn vm_name(&self) -> &str {
        &self.0.vm_name
    }
    /// The failed server it was on.
    #[getter(from_server)]
    fn lost_server(&self) -> String {
        self.0.from.to_string()
    }
    /// Whether it is HA-enabled.
    #[getter]
    fn high_availability(&self) -> bool {
        self.0.high_availability
    }
    /// Its start priority (1..=100, higher first).
    #[getter]
    fn priority(&self) -> u8 {
        self.0.priority
    }
    /// Its memory, MiB.
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.0.memory_mib
    }
    /// `"Restart"` or `"NotRestarted"`.
    #[getter]
    fn action(&self) -> &'static str {
        self.0.action.name()
    }
    /// The server it restarts on (a restart only).
    #[getter]
    fn target(&self) -> Option<String> {
        opt_id(self.0.target)
    }
    /// Why that server, or why it stays stopped.
    #[getter]
    fn detail(&self) -> &str {
        &self.0.detail
    }
    /// For a VM not restarted: every surviving server's reasons.
    #[getter]
    fn reasons(&self) -> Vec<HaReason> {
        self.0.reasons.iter().cloned().map(HaReason).collect()
    }
    /// The distinct kinds of the reasons, by number.
    #[getter]
    fn reason_kinds(&self) -> Vec<&'static str> {
        self.0.reason_kinds().into_iter().map(|k| k.name()).collect()
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!("HaDecision({:?}, {}, {:?})", self.0.vm_name, self.0.action.name(), self.0.detail)
    }
}

/// A clustered pool's cluster as its servers report it (`Manager.pool_cluster_status`).
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct ClusterStatus(pub ovm_core::driver::ClusterStatus);

#[pymethods]
impl ClusterStatus {
    /// The cluster (the pool's id).
    #[getter]
    fn cluster(&self) -> String {
        self.0.cluster.clone()
    }
    /// The members' names in the cluster (their server ids), in joining order.
    #[getter]
    fn members(&self) -> Vec<String> {
        self.0.members.clone()
    }
    /// The master's name, if one is elected.
    #[getter]
    fn master(&self) -> Option<String> {
        self.0.master.clone()
    }
    /// The master's epoch: it grows at every election.
    #[getter]
    fn epoch(&self) -> u64 {
        self.0.epoch
    }
    /// Each member's heartbeat as the cluster sees it: `(name, "alive" | "late" | "dead")`.
    #[getter]
    fn heartbeats(&self) -> Vec<(String, &'static str)> {
        self.0
            .heartbeats
            .iter()
            .map(|h| {
                let state = match h.heartbeat {
                    m::HeartbeatState::Alive => "alive",
                    m::HeartbeatState::Late => "late",
                    m::HeartbeatState::Dead => "dead",
                };
                (h.name.clone(), state)
            })
            .collect()
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!("ClusterStatus({:?}, master={:?}, epoch={})", self.0.cluster, self.0.master, self.0.epoch)
    }
}

/// Whether a pool absorbs a number of server failures (`Manager.ha_plan`), with the worst case's
/// decisions.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct HaTolerance(pub m::HaTolerance);

#[pymethods]
impl HaTolerance {
    /// The pool's id.
    #[getter]
    fn pool(&self) -> String {
        self.0.pool.to_string()
    }
    /// How many servers fail at once.
    #[getter]
    fn failures(&self) -> u32 {
        self.0.failures
    }
    /// Whether every HA-enabled VM restarts in every case considered.
    #[getter]
    fn tolerated(&self) -> bool {
        self.0.tolerated
    }
    /// Whether every combination of failed servers was planned (at most 256 of them).
    #[getter]
    fn exhaustive(&self) -> bool {
        self.0.exhaustive
    }
    /// How many combinations were planned.
    #[getter]
    fn combinations(&self) -> u64 {
        self.0.combinations
    }
    /// How many servers the failures were chosen among (running, connected).
    #[getter]
    fn servers_considered(&self) -> u32 {
        self.0.servers_considered
    }
    /// For a check that was not exhaustive, whether the memory bound held; None otherwise.
    #[getter]
    fn memory_bound_ok(&self) -> Option<bool> {
        self.0.memory_bound_ok
    }
    /// The failed servers of the worst case.
    #[getter]
    fn failed(&self) -> Vec<String> {
        self.0.worst.as_ref().map(|w| convert::ids(&w.failed)).unwrap_or_default()
    }
    /// The worst case's decisions, in the order HA acts on them.
    #[getter]
    fn decisions(&self) -> Vec<HaDecision> {
        self.0
            .worst
            .as_ref()
            .map(|w| w.decisions.iter().cloned().map(HaDecision).collect())
            .unwrap_or_default()
    }
    /// The HA-enabled VMs that would not restart in the worst case.
    #[getter]
    fn not_restarted(&self) -> Vec<HaDecision> {
        self.0.not_restarted().into_iter().cloned().map(HaDecision).collect()
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "HaTolerance(failures={}, tolerated={}, exhaustive={}, not_restarted={})",
            self.0.failures,
            if self.0.tolerated { "True" } else { "False" },
            if self.0.exhaustive { "True" } else { "False" },
            self.0.not_restarted().len()
        )
    }
}

/// What `Manager.rebuild_from_servers` recovered, and what it could not.
#[pyclass(module = "ovm", frozen)]
#[derive(Debug)]
pub struct RebuildReport(pub ovm_core::manager::RebuildReport);

#[pymethods]
impl RebuildReport {
    /// Ids of the servers taken over.
    #[getter]
    fn servers(&self) -> Vec<String> {
        convert::ids(&self.0.servers)
    }
    /// Ids of the repositories recovered.
    #[getter]
    fn repositories(&self) -> Vec<String> {
        convert::ids(&self.0.repositories)
    }
    /// Number of objects recovered from configuration files (repositories included).
    #[getter]
    fn objects(&self) -> usize {
        self.0.objects
    }
    /// The VMs found running, as `(vm id, server id)`.
    #[getter]
    fn running(&self) -> Vec<(String, String)> {
        self.0.running.iter().map(|(v, s)| (v.to_string(), s.to_string())).collect()
    }
    /// What could not be recovered, one sentence each.
    #[getter]
    fn not_recovered(&self) -> Vec<String> {
        self.0.not_recovered.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "RebuildReport(servers={}, repositories={}, objects={}, running={}, not_recovered={})",
            self.0.servers.len(),
            self.0.repositories.len(),
            self.0.objects,
            self.0.running.len(),
            self.0.not_recovered.len()
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

/// A VM's load over one sampling interval (`LoadSample.vms`, `Manager.vm_load`).
#[pyclass(module = "ovm", frozen)]
#[derive(Debug, Clone)]
pub struct VmLoad(pub m::VmLoad);

#[pymethods]
impl VmLoad {
    /// The VM's id.
    #[getter]
    fn vm(&self) -> String {
        self.0.vm.to_string()
    }
    /// CPU used, percent of one physical CPU (above 100 for several busy vCPUs).
    #[getter]
    fn cpu_percent(&self) -> f32 {
        self.0.cpu_percent
    }
    /// Memory, MiB.
    #[getter]
    fn memory_mib(&self) -> u64 {
        self.0.memory_mib
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!("VmLoad(vm={:?}, cpu_percent={:.1})", self.0.vm.to_string(), self.0.cpu_percent)
    }
}

/// A dom0 network interface's throughput over one sampling interval (`LoadSample.interfaces`).
#[pyclass(module = "ovm", frozen)]
#[derive(Debug, Clone)]
pub struct InterfaceLoad(pub m::InterfaceLoad);

#[pymethods]
impl InterfaceLoad {
    /// Interface name in dom0.
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }
    /// Bytes received per second.
    #[getter]
    fn rx_bytes_per_sec(&self) -> f64 {
        self.0.rx_bytes_per_sec
    }
    /// Bytes sent per second.
    #[getter]
    fn tx_bytes_per_sec(&self) -> f64 {
        self.0.tx_bytes_per_sec
    }
    /// Link speed, Mbit/s, if the interface has one.
    #[getter]
    fn speed_mbps(&self) -> Option<u32> {
        self.0.speed_mbps
    }
    /// The busier direction as a share of the link speed, percent (None without a speed).
    #[getter]
    fn utilisation_percent(&self) -> Option<f32> {
        self.0.utilisation_percent()
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "InterfaceLoad({:?}, rx={:.0} B/s, tx={:.0} B/s)",
            self.0.name, self.0.rx_bytes_per_sec, self.0.tx_bytes_per_sec
        )
    }
}

/// A server's load over one sampling interval, or the average of several
/// (`Manager.server_load`, `Manager.server_load_history`).
#[pyclass(module = "ovm", frozen)]
#[derive(Debug, Clone)]
pub struct LoadSample(pub m::LoadSample);

#[pymethods]
impl LoadSample {
    /// When the interval ended, ms since the Unix epoch.
    #[getter]
    fn at(&self) -> u64 {
        self.0.at
    }
    /// How many raw samples this one averages (1 for a raw sample).
    #[getter]
    fn samples(&self) -> u32 {
        self.0.samples
    }
    /// CPU utilisation, percent of all the server's CPUs.
    #[getter]
    fn cpu_percent(&self) -> f32 {
        self.0.cpu_percent
    }
    /// Physical CPUs.
    #[getter]
    fn cpus(&self) -> u32 {
        self.0.cpus
    }
    /// Memory free for guests, MiB.
    #[getter]
    fn free_memory_mib(&self) -> u64 {
        self.0.free_memory_mib
    }
    /// Memory used by guests, MiB.
    #[getter]
    fn guest_memory_mib(&self) -> u64 {
        self.0.guest_memory_mib
    }
    /// Each VM running on the server.
    #[getter]
    fn vms(&self) -> Vec<VmLoad> {
        self.0.vms.iter().cloned().map(VmLoad).collect()
    }
    /// Each dom0 network interface, with its throughput.
    #[getter]
    fn interfaces(&self) -> Vec<InterfaceLoad> {
        self.0.interfaces.iter().cloned().map(InterfaceLoad).collect()
    }
    /// Every field, as plain Python data.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        dict(py, &self.0)
    }
    fn __repr__(&self) -> String {
        format!(
            "LoadSample(at={}, cpu_percent={:.1}, vms={})",
            self.0.at,
            self.0.cpu_percent,
            self.0.vms.len()
        )
    }
}

/// A VM's one-time console endpoint (`Manager.open_vm_console`): a VNC client connects to
/// `host`:`port` and gives `password` (VNC authentication), once, within `expires_in` seconds.
#[pyclass(module = "ovm", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct ConsoleEndpoint {
    /// The VM.
    pub vm: String,
    /// The endpoint's address (the manager's loopback).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The one-time password.
    pub password: String,
    /// How long the endpoint waits for its client, seconds.
    pub expires_in: f64,
}

#[pymethods]
impl ConsoleEndpoint {
    fn __repr__(&self) -> String {
        format!("ConsoleEndpoint(vm={:?}, host={:?}, port={})", self.vm, self.host, self.port)
    }
}

impl From<ovm_core::manager::ConsoleEndpoint> for ConsoleEndpoint {
    fn from(e: ovm_core::manager::ConsoleEndpoint) -> Self {
        ConsoleEndpoint {
            vm: e.vm.0.to_string(),
            host: e.address.ip().to_string(),
            port: e.address.port(),
            password: e.password,
            expires_in: e.expires_in.as_secs_f64(),
        }
    }
}
