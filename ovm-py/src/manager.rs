//! The `Manager` handle class: every method translates its arguments and calls `ovm_core::Manager`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ovm_core::driver::network::{NetChange, NetKey};
use ovm_core::driver::sim::SimOp;
use ovm_core::manager::{
    BondSpec, CloneOptions, DatabaseLocation, DiskClone, DiskFilter, LostEvents, NetworkApply, NetworkSpec,
    PoolSpec, RepositorySpec, ServerFilter, ServerLogin, StopOptions, VmFilter, VmSpec,
};
use ovm_core::model as m;
use ovm_core::remote::{ChangeStream, ManagerApi, RemoteManager};
use ovm_core::store::{Durability, EventFilter, JobFilter};
use ovm_core::Error;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyMapping};

use crate::convert::{self, parse_enum, uuid};
use crate::errors::{to_py, OrRaise};
use crate::jobs::{Closing, Job, Subscription};
use crate::records::{self as r, ObjectRef, VmConfig};

// `register_vendor_storage_array`'s defaults, written as literals so that Python sees them.
const _: () = assert!(ovm_core::lio::DEFAULT_PORT == 3261);
const _: () = {
    let (a, b) = (ovm_core::driver::LIO_PLUGIN.as_bytes(), b"ovm-lio");
    assert!(a.len() == b.len());
    let mut i = 0;
    while i < a.len() {
        assert!(a[i] == b[i]);
        i += 1;
    }
};

/// Records the manager answered, as the shared records the record classes wrap.
fn arcs<T>(v: ovm_core::Result<Vec<T>>) -> PyResult<Vec<Arc<T>>> {
    Ok(v.or_raise()?.into_iter().map(Arc::new).collect())
}

fn opt_uuid(field: &str, s: Option<&str>) -> PyResult<Option<uuid::Uuid>> {
    s.map(|s| uuid(field, s)).transpose()
}

/// An inventory record of type `$ty` from an [`m::Object`] the manager answered.
macro_rules! typed {
    ($obj:expr, $ty:ident) => {
        match $obj {
            m::Object::$ty(x) => Ok(std::sync::Arc::new(x)),
            other => {
                Err(Error::Internal { message: format!("{} is not a {}", other.name(), stringify!($ty)) })
            }
        }
    };
}

/// Every object of one kind, as records of type `$ty`, in name order.
macro_rules! typed_list {
    ($api:expr, $ty:ident) => {
        $api.objects(m::ObjectKind::$ty)
            .and_then(|v| v.into_iter().map(|o| typed!(o, $ty)).collect::<ovm_core::Result<Vec<_>>>())
            .or_raise()
    };
}

/// An ovm manager: its database, jobs, events and connections to servers.
///
/// `Manager()` opens a private in-memory database; `Manager("path/manager.db")` opens (or creates)
/// a database file (`":memory:"` and `sqlite://` URIs are accepted too). `Manager.connect(uri)`
/// connects to a manager service (`ovm serve`) instead: the same methods then run on the service.
/// Use it as a context manager or call `close()`; after closing, every call raises `ClosedError`.
/// `sim_world_of=other` serves `sim://` servers from the simulated world of manager `other` (a
/// second manager on the same simulated data centre, e.g. to rebuild a lost database).
#[pyclass(module = "ovm", frozen)]
pub struct Manager {
    /// Every call goes through the manager's API: a manager of this process or a service.
    api: Arc<dyn ManagerApi>,
    /// The same manager when it runs in this process, for what needs an object of this process
    /// (plug-ins, the simulated world).
    local: Option<ovm_core::Manager>,
    id: String,
    closed: Closing,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("id", &self.id).field("local", &self.local.is_some()).finish()
    }
}

impl Manager {
    fn of_local(mgr: ovm_core::Manager) -> Self {
        let id = mgr.id().to_owned();
        Manager { api: Arc::new(mgr.clone()), closed: Closing::new(Some(mgr.clone())), local: Some(mgr), id }
    }

    /// The manager's API, or `ClosedError`.
    fn m(&self) -> PyResult<&dyn ManagerApi> {
        if self.closed.is_closed() {
            return Err(to_py(Error::Closed));
        }
        Ok(&*self.api)
    }

    /// The manager of this process, for `what`; `UnsupportedError` on a manager service, or
    /// `ClosedError`.
    fn local(&self, what: &str) -> PyResult<&ovm_core::Manager> {
        self.m()?;
        self.local.as_ref().ok_or_else(|| {
            to_py(Error::Unsupported {
                what: format!(
                    "{what} needs a manager in this process; this one is a manager service's client"
                ),
            })
        })
    }

    /// One object by reference (a `m::Result`, so that `typed!` follows).
    fn get(&self, kind: m::ObjectKind, id: uuid::Uuid) -> PyResult<ovm_core::Result<m::Object>> {
        Ok(self.m()?.object(m::ObjectRef::new(kind, id)))
    }

    /// One object of `kind` by name (or id).
    fn by_name(&self, kind: m::ObjectKind, name: &str) -> PyResult<ovm_core::Result<m::Object>> {
        Ok(self.m()?.find(kind, name.to_owned()))
    }

    /// Submit a job with the GIL released.
    fn submit(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn ManagerApi) -> ovm_core::Result<m::Job> + Send,
    ) -> PyResult<Job> {
        let api = self.m()?;
        let job = py.detach(|| f(api)).or_raise()?;
        Ok(Job::new(self.api.clone(), job.id))
    }
}

#[pymethods]
impl Manager {
    #[new]
    #[pyo3(signature = (
        database=None, *, recurring_jobs=true, durability="normal", change_buffer=4096, sim_world_of=None
    ))]
    fn py_new(
        py: Python<'_>,
        database: Option<PathBuf>,
        recurring_jobs: bool,
        durability: &str,
        change_buffer: usize,
        sim_world_of: Option<PyRef<'_, Manager>>,
    ) -> PyResult<Self> {
        let durability = match durability {
            "normal" => Durability::Normal,
            "full" => Durability::Full,
            other => {
                return Err(Error::invalid("durability", format!("{other:?} is not \"normal\" or \"full\"")))
                    .or_raise()
            }
        };
        let location = match database {
            None => DatabaseLocation::Memory,
            Some(p) => match p.to_str() {
                Some(s) => DatabaseLocation::parse(s).or_raise()?,
                None => DatabaseLocation::File(p),
            },
        };
        let mut b = ovm_core::Manager::builder()
            .database(location)
            .durability(durability)
            .recurring_jobs(recurring_jobs)
            .change_buffer(change_buffer);
        if let Some(other) = sim_world_of {
            b = b.sim_world(other.local("sim_world_of")?.sim().clone());
        }
        let inner = py.detach(|| b.open()).or_raise()?;
        Ok(Manager::of_local(inner))
    }
    /// Connect to the manager service at `uri` (`ovm+unix:///PATH`, as `ovm serve` listens): every
    /// method then runs on the service. Operations that need an object of this process (plug-ins,
    /// the simulated world's `sim_` methods) raise `UnsupportedError`. `close()` closes the
    /// connection, not the service.
    #[staticmethod]
    fn connect(py: Python<'_>, uri: &str) -> PyResult<Self> {
        let remote = py.detach(|| RemoteManager::connect(uri)).or_raise()?;
        let id = py.detach(|| remote.manager_id()).or_raise()?;
        Ok(Manager { api: Arc::new(remote), local: None, id, closed: Closing::new(None) })
    }

    /// This manager's identity.
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }
    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.is_closed()
    }
    /// Close: refuse new jobs and wait up to `timeout` seconds for running ones. On a manager
    /// service's client, only this connection is closed (the service and its jobs run on).
    #[pyo3(signature = (timeout=30.0))]
    fn close(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let t = Duration::try_from_secs_f64(timeout)
            .map_err(|_| Error::invalid("timeout", "must be a number of seconds >= 0"))
            .or_raise()?;
        match &self.local {
            Some(m) => py.detach(|| m.close(t)).or_raise(),
            None => {
                self.closed.close();
                Ok(())
            }
        }
    }
    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py, 30.0)?;
        Ok(false)
    }
    fn __repr__(&self) -> PyResult<String> {
        if self.closed.is_closed() {
            return Ok(format!("Manager(id={:?}, closed=True)", self.id));
        }
        let count = |k| self.api.objects(k).map(|v| v.len()).or_raise();
        let (servers, pools, vms) =
            (count(m::ObjectKind::Server)?, count(m::ObjectKind::ServerPool)?, count(m::ObjectKind::Vm)?);
        Ok(format!("Manager(id={:?}, servers={servers}, pools={pools}, vms={vms})", self.id))
    }

    // ---- servers -------------------------------------------------------------------------------

    /// Discover the server at `address` (`sim://NAME` for a simulated one) and take ownership.
    /// The job's result is the server.
    fn discover_server(&self, py: Python<'_>, address: String, password: String) -> PyResult<Job> {
        self.submit(py, |m| m.discover_server(address, password))
    }
    /// Discover a server that another manager owns and take it over with its agent password (the
    /// agent records the takeover); otherwise as `discover_server`. The job's result is the server.
    fn take_over_server(&self, py: Python<'_>, address: String, password: String) -> PyResult<Job> {
        self.submit(py, |m| m.take_over_server(address, password))
    }
    /// Rebuild this manager's inventory — which must be empty, as after its database was lost —
    /// from `servers` (`(address, agent password)` pairs) and the repositories they mount: each
    /// server is taken over, and repositories, disks, ISOs, assemblies, templates and VMs are made
    /// from their configuration files with their former ids. Server pools, networks and
    /// anti-affinity groups are not kept in repositories. Blocks until done (the GIL is released).
    fn rebuild_from_servers(
        &self,
        py: Python<'_>,
        servers: Vec<(String, String)>,
    ) -> PyResult<r::RebuildReport> {
        let logins: Vec<ServerLogin> =
            servers.into_iter().map(|(address, password)| ServerLogin { address, password }).collect();
        let m = self.m()?;
        py.detach(|| m.rebuild_from_servers(logins)).map(r::RebuildReport).or_raise()
    }
    /// Restart the agent of a server reached through one (its VMs keep running; the manager
    /// reconnects).
    fn restart_agent(&self, py: Python<'_>, server: &str) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        self.submit(py, |m| m.restart_agent(s))
    }
    /// Fingerprint of the agent certificate pinned for `server` (`None` if not reached through an
    /// agent).
    fn agent_fingerprint(&self, server: &str) -> PyResult<Option<String>> {
        self.m()?.agent_fingerprint(m::ServerId(uuid("server", server)?)).or_raise()
    }
    /// Fingerprint of the certificate this manager presents to agents.
    fn certificate_fingerprint(&self) -> PyResult<String> {
        self.m()?.certificate_fingerprint().or_raise()
    }
    /// A server by id.
    fn server(&self, id: &str) -> PyResult<r::Server> {
        self.get(m::ObjectKind::Server, uuid("id", id)?)?
            .and_then(|o| typed!(o, Server))
            .map(r::Server)
            .or_raise()
    }
    /// A server by name.
    fn server_by_name(&self, name: &str) -> PyResult<r::Server> {
        self.by_name(m::ObjectKind::Server, name)?.and_then(|o| typed!(o, Server)).map(r::Server).or_raise()
    }
    /// Servers in name order, optionally only those of `pool` or in `power_state`.
    #[pyo3(signature = (*, pool=None, power_state=None))]
    fn servers<'py>(
        &self,
        py: Python<'py>,
        pool: Option<&str>,
        power_state: Option<&str>,
    ) -> PyResult<Bound<'py, PyList>> {
        let filter = ServerFilter {
            pool: opt_uuid("pool", pool)?.map(m::PoolId),
            power_state: power_state.map(|s| parse_enum("power_state", s)).transpose()?,
        };
        r::list(py, arcs(self.m()?.servers_where(filter))?, r::Server)
    }
    /// Put a server into or out of maintenance mode.
    fn set_maintenance_mode(&self, py: Python<'_>, server: &str, on: bool) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        self.submit(py, |m| m.set_maintenance_mode(s, on))
    }
    /// Power a server off cleanly through its agent; it must run no VM (enter maintenance mode
    /// first: `ConflictError` names the VMs still there).
    fn power_off_server(&self, py: Python<'_>, server: &str) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        self.submit(py, |m| m.power_off_server(s))
    }
    /// Power a powered-off server on by Wake-on-LAN: another running server of its pool sends the
    /// magic packet for its Wake-on-LAN MAC, and the job waits up to `timeout` seconds (default
    /// 900) for its agent to answer.
    #[pyo3(signature = (server, timeout=None))]
    fn power_on_server(&self, py: Python<'_>, server: &str, timeout: Option<f64>) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        let t = timeout
            .map(|t| {
                Duration::try_from_secs_f64(t)
                    .map_err(|_| Error::invalid("timeout", "must be a number of seconds >= 0"))
            })
            .transpose()
            .or_raise()?;
        let t = t.map(|t| t.as_millis() as u64);
        self.submit(py, |m| m.power_on_server(s, t))
    }
    /// Set how a server is powered on and off: its Wake-on-LAN MAC (`None`: none) and its
    /// out-of-band power controller (`controller`, a name registered with
    /// `register_power_plugin`, and `address`, its management controller's host name or IP
    /// address; both or neither). A server with a controller is powered on through it.
    #[pyo3(signature = (server, *, wol_mac=None, controller=None, address=None))]
    fn set_server_power_control(
        &self,
        py: Python<'_>,
        server: &str,
        wol_mac: Option<String>,
        controller: Option<String>,
        address: Option<String>,
    ) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        let out_of_band = match (controller, address) {
            (None, None) => None,
            (Some(controller), Some(address)) => Some(m::OutOfBand { controller, address }),
            _ => {
                return Err(Error::invalid(
                    "controller",
                    "controller and address are given together, or neither",
                ))
                .or_raise()
            }
        };
        let edit = ovm_core::manager::ServerEdit {
            wol_mac: Some(wol_mac),
            out_of_band: Some(out_of_band),
            ..Default::default()
        };
        self.submit(py, |m| m.edit_server(s, edit))
    }
    /// Register the executable power plug-in at `path` (absolute) as the out-of-band power
    /// controller `name`, for as long as this manager is open (protocol: `PLUGIN on|off|status
    /// ADDRESS`; see docs/power.md).
    fn register_power_plugin(&self, name: &str, path: &str) -> PyResult<()> {
        let m = self.local("register_power_plugin")?;
        let plugin = ovm_core::power_plugin::ExecPowerController::new(name, path).or_raise()?;
        m.register_power_controller(std::sync::Arc::new(plugin)).or_raise()
    }
    /// The names of the registered out-of-band power controllers.
    fn power_controllers(&self) -> PyResult<Vec<String>> {
        self.m()?.power_controllers().or_raise()
    }
    /// A server's chassis power as its out-of-band controller reports it now: `"On"` or `"Off"`.
    fn out_of_band_power_state(&self, server: &str) -> PyResult<String> {
        let s = m::ServerId(uuid("server", server)?);
        self.m()?.out_of_band_power_state(s).map(|p| format!("{p:?}")).or_raise()
    }
    /// Re-read a server's hardware and domains.
    fn refresh_server(&self, py: Python<'_>, server: &str) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        self.submit(py, |m| m.refresh_server(s))
    }

    /// Take ownership of a discovered, unowned server with its agent password.
    fn take_ownership(&self, py: Python<'_>, server: &str, password: String) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        self.submit(py, |m| m.take_ownership(s, password))
    }
    /// Release ownership of a server (not in a pool, no VMs on it).
    fn release_ownership(&self, py: Python<'_>, server: &str) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        self.submit(py, |m| m.release_ownership(s))
    }
    /// The recurring jobs: `(name, interval seconds, enabled)`.
    fn recurring_jobs(&self) -> PyResult<Vec<(String, f64, bool)>> {
        Ok(self
            .m()?
            .recurring_jobs()
            .or_raise()?
            .into_iter()
            .map(|(n, d, on)| (n, d.as_secs_f64(), on))
            .collect())
    }
    /// Set a recurring job's interval (seconds) and whether it runs.
    fn set_recurring_job(&self, name: &str, interval: f64, enabled: bool) -> PyResult<()> {
        let d = Duration::try_from_secs_f64(interval)
            .map_err(|_| Error::invalid("interval", "must be a number of seconds >= 0"))
            .or_raise()?;
        self.m()?.set_recurring_job(name.to_owned(), d, enabled).or_raise()
    }
    /// Run a recurring job now.
    fn run_recurring(&self, py: Python<'_>, name: &str) -> PyResult<Job> {
        self.submit(py, |m| m.run_recurring(name.to_owned()))
    }

    // ---- pools ---------------------------------------------------------------------------------

    /// Create a server pool. The job's result is the pool. With `pool_disk` (a shared LUN's
    /// physical disk) the pool is clustered: its members form a cluster on their servers, the
    /// first one makes the pool file system on the disk, and the elected master holds
    /// `virtual_ip`; `cluster_timeout_secs` (10 to 300) is how long a member may be silent before
    /// the others declare it dead. With `pool_file_system` (an NFS file system of a file server)
    /// instead, the pool file system is a file there, as Oracle VM keeps it.
    #[pyo3(signature = (name, *, description=String::new(), virtual_ip=None, pool_disk=None, cluster_timeout_secs=120, pool_file_system=None))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments
    fn create_pool(
        &self,
        py: Python<'_>,
        name: &str,
        description: String,
        virtual_ip: Option<&str>,
        pool_disk: Option<&str>,
        cluster_timeout_secs: u32,
        pool_file_system: Option<&str>,
    ) -> PyResult<Job> {
        let mut spec = PoolSpec::new(name);
        spec.description = description;
        spec.pool_disk = pool_disk.map(|d| uuid("pool_disk", d).map(m::PhysicalDiskId)).transpose()?;
        spec.pool_file_system =
            pool_file_system.map(|f| uuid("pool_file_system", f).map(m::FileSystemId)).transpose()?;
        spec.clustered = spec.pool_disk.is_some() || spec.pool_file_system.is_some();
        spec.cluster_timeout_secs = cluster_timeout_secs;
        spec.virtual_ip = virtual_ip
            .map(|ip| {
                ip.parse().map_err(|_| Error::invalid("virtual_ip", format!("{ip:?} is not an IP address")))
            })
            .transpose()
            .or_raise()?;
        self.submit(py, |m| m.create_pool(spec))
    }
    /// Set a pool's DRS/DPM policy: `mode` `"Off"`, `"Drs"` or `"Dpm"`, the CPU threshold in
    /// percent, the period in seconds (at least 60) and the watched networks with their
    /// thresholds in percent of their link speed.
    #[pyo3(signature = (pool, mode, cpu_threshold_percent=80, period_secs=300, networks=Vec::new()))]
    fn set_pool_policy(
        &self,
        py: Python<'_>,
        pool: &str,
        mode: &str,
        cpu_threshold_percent: u8,
        period_secs: u32,
        networks: Vec<(String, u8)>,
    ) -> PyResult<Job> {
        let p = m::PoolId(uuid("pool", pool)?);
        let policy = m::PoolPolicy {
            mode: parse_enum("mode", mode)?,
            cpu_threshold_percent,
            period_secs,
            networks: networks
                .iter()
                .map(|(n, t)| Ok((m::NetworkId(uuid("networks", n)?), *t)))
                .collect::<PyResult<_>>()?,
        };
        self.submit(py, |m| m.set_pool_policy(p, policy))
    }
    /// Set how many simultaneous server failures a pool keeps room for when it has HA-enabled
    /// VMs (DPM keeps that reserve free). Raises `ConflictError` beyond what
    /// `max_failures_tolerated` says the pool absorbs now.
    fn set_ha_failures_to_tolerate(&self, py: Python<'_>, pool: &str, failures: u32) -> PyResult<Job> {
        let p = m::PoolId(uuid("pool", pool)?);
        self.submit(py, |m| m.set_ha_failures_to_tolerate(p, failures))
    }
    /// A pool by id.
    fn pool(&self, id: &str) -> PyResult<r::ServerPool> {
        self.get(m::ObjectKind::ServerPool, uuid("id", id)?)?
            .and_then(|o| typed!(o, ServerPool))
            .map(r::ServerPool)
            .or_raise()
    }
    /// A pool by name.
    fn pool_by_name(&self, name: &str) -> PyResult<r::ServerPool> {
        self.by_name(m::ObjectKind::ServerPool, name)?
            .and_then(|o| typed!(o, ServerPool))
            .map(r::ServerPool)
            .or_raise()
    }
    /// All pools, in name order.
    fn pools<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        r::list(py, typed_list!(self.m()?, ServerPool)?, r::ServerPool)
    }
    /// Add a server to a pool.
    fn add_server_to_pool(&self, py: Python<'_>, pool: &str, server: &str) -> PyResult<Job> {
        let (p, s) = (m::PoolId(uuid("pool", pool)?), m::ServerId(uuid("server", server)?));
        self.submit(py, |m| m.add_server_to_pool(p, s))
    }
    /// Remove a server from its pool.
    fn remove_server_from_pool(&self, py: Python<'_>, pool: &str, server: &str) -> PyResult<Job> {
        let (p, s) = (m::PoolId(uuid("pool", pool)?), m::ServerId(uuid("server", server)?));
        self.submit(py, |m| m.remove_server_from_pool(p, s))
    }

    // ---- any object ----------------------------------------------------------------------------

    /// Create any inventory object from its dict form `{"kind": "FileSystem", "object": {...}}`
    /// (the shape `to_dict()` and `object()` produce). The job's result is the object.
    fn create_object(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Job> {
        let o: m::Object = convert::decode("object", obj)?;
        self.submit(py, |m| m.create_object(o))
    }
    /// Create many objects in one job and one transaction (a bulk import); if any is refused,
    /// none is created.
    fn create_objects(&self, py: Python<'_>, objects: &Bound<'_, PyAny>) -> PyResult<Job> {
        let mut objs = Vec::new();
        for (i, o) in objects.try_iter()?.enumerate() {
            objs.push(convert::decode::<m::Object>(&format!("objects[{i}]"), &o?)?);
        }
        self.submit(py, |m| m.create_objects(objs))
    }
    /// Replace an object with an edited dict form. The typed operations' rules hold: a VM is edited
    /// as `edit_vm` edits it, and fields the manager owns (power state, placement, pool members, ...)
    /// raise `InvalidArgumentError`.
    fn update_object(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Job> {
        let o: m::Object = convert::decode("object", obj)?;
        self.submit(py, |m| m.update_object(o))
    }
    /// Any object as a dict `{"kind": ..., "object": {...}}`.
    fn object<'py>(&self, py: Python<'py>, kind: &str, id: &str) -> PyResult<Bound<'py, PyAny>> {
        let r = m::ObjectRef { kind: convert::kind(kind)?, id: uuid("id", id)? };
        convert::to_python(py, &self.m()?.object(r).or_raise()?)
    }
    /// Any inventory object as its record class (`Server`, `FileSystem`, `Tag`, ...).
    fn record<'py>(&self, py: Python<'py>, kind: &str, id: &str) -> PyResult<Bound<'py, PyAny>> {
        let r = m::ObjectRef { kind: convert::kind(kind)?, id: uuid("id", id)? };
        r::object_record(py, self.m()?.object(r).or_raise()?)
    }
    /// Every object of `kind` as record classes, in name order.
    fn records<'py>(&self, py: Python<'py>, kind: &str) -> PyResult<Bound<'py, PyList>> {
        let kind = convert::kind(kind)?;
        if matches!(kind, m::ObjectKind::Job | m::ObjectKind::Event) {
            return Err(to_py(Error::invalid("kind", "jobs and events have their own methods")));
        }
        let all = self.m()?.objects(kind).or_raise()?;
        let items = all.into_iter().map(|o| r::object_record(py, o)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    /// Delete an object nothing refers to.
    fn delete_object(&self, py: Python<'_>, kind: &str, id: &str) -> PyResult<Job> {
        let r = m::ObjectRef { kind: convert::kind(kind)?, id: uuid("id", id)? };
        self.submit(py, |m| m.delete_object(r))
    }

    // ---- storage providers -----------------------------------------------------------------------

    /// Register a file server and discover its file systems, with their real sizes, through its
    /// first reachable admin server (`kind` `"Nfs"` with `access_host`, `"Local"`: the local
    /// file system of its one admin server, or `"External"`: reached through the external storage
    /// plug-in `plugin`, which names the file server `access_host`). Nothing is stored if
    /// discovery fails. The job's result is the file server.
    #[pyo3(signature = (name, kind, admin_servers, access_host=String::new(), plugin=String::new()))]
    fn register_file_server(
        &self,
        py: Python<'_>,
        name: String,
        kind: &str,
        admin_servers: Vec<String>,
        access_host: String,
        plugin: String,
    ) -> PyResult<Job> {
        let spec = ovm_core::manager::FileServerSpec {
            name,
            kind: parse_enum("kind", kind)?,
            access_host,
            admin_servers: admin_servers
                .iter()
                .map(|s| uuid("admin_servers", s).map(m::ServerId))
                .collect::<PyResult<Vec<_>>>()?,
            plugin,
        };
        self.submit(py, |m| m.register_file_server(spec))
    }
    /// Discover a file server's file systems again (sizes, new and vanished ones).
    fn refresh_file_server(&self, py: Python<'_>, file_server: &str) -> PyResult<Job> {
        let f = m::FileServerId(uuid("file_server", file_server)?);
        self.submit(py, |m| m.refresh_file_server(f))
    }
    /// Register a generic iSCSI array at `access_host:access_port`: its first admin server
    /// discovers the targets that admit it, logs in, and its LUNs become physical disks with their
    /// real sizes. Nothing is stored if the portal does not answer. The job's result is the array.
    #[pyo3(signature = (name, access_host, admin_servers, access_port=3260))]
    fn register_storage_array(
        &self,
        py: Python<'_>,
        name: String,
        access_host: String,
        admin_servers: Vec<String>,
        access_port: u16,
    ) -> PyResult<Job> {
        let spec = ovm_core::manager::StorageArraySpec {
            name,
            access_host,
            access_port,
            admin_servers: admin_servers
                .iter()
                .map(|s| uuid("admin_servers", s).map(m::ServerId))
                .collect::<PyResult<Vec<_>>>()?,
            management: None,
        };
        self.submit(py, |m| m.register_storage_array(spec))
    }
    /// Log servers in to every target of a generic array (one job: a server that fails is undone
    /// on the others).
    fn present_storage_array_to(&self, py: Python<'_>, array: &str, servers: Vec<String>) -> PyResult<Job> {
        let a = m::StorageArrayId(uuid("array", array)?);
        let ss = servers.iter().map(|s| uuid("servers", s).map(m::ServerId)).collect::<PyResult<Vec<_>>>()?;
        self.submit(py, |m| m.present_storage_array_to(a, ss))
    }
    /// Log a server out of every target of a generic array.
    fn unpresent_storage_array(&self, py: Python<'_>, array: &str, server: &str) -> PyResult<Job> {
        let (a, s) = (m::StorageArrayId(uuid("array", array)?), m::ServerId(uuid("server", server)?));
        self.submit(py, |m| m.unpresent_storage_array(a, s))
    }
    /// The physical disks (LUNs) of a storage array, in name order.
    fn physical_disks_of<'py>(&self, py: Python<'py>, array: &str) -> PyResult<Bound<'py, PyList>> {
        let a = m::StorageArrayId(uuid("array", array)?);
        r::list(py, arcs(self.m()?.physical_disks_of(a))?, r::PhysicalDisk)
    }
    /// Register a vendor-style array whose iSCSI portal is `access_host:access_port`, its LUNs and
    /// access groups managed through the storage plug-in `plugin` (ovm's LIO plug-in by default)
    /// at `management_host:management_port` as `username` with `password` (kept in the manager's
    /// database, never logged). Its first admin server pins the management interface's certificate
    /// (`fingerprint`, `"sha256:..."`, or the one it presents now) and lists its targets and LUNs,
    /// which become physical disks. Nothing is stored if the job fails (`PermissionDeniedError`:
    /// credentials refused). The job's result is the array.
    #[pyo3(signature = (
        name, access_host, admin_servers, *, management_host, username, password,
        plugin="ovm-lio", management_port=3261, fingerprint=None, access_port=3260
    ))]
    #[allow(clippy::too_many_arguments)]
    fn register_vendor_storage_array(
        &self,
        py: Python<'_>,
        name: String,
        access_host: String,
        admin_servers: Vec<String>,
        management_host: String,
        username: String,
        password: String,
        plugin: &str,
        management_port: u16,
        fingerprint: Option<String>,
        access_port: u16,
    ) -> PyResult<Job> {
        let spec = ovm_core::manager::StorageArraySpec {
            name,
            access_host,
            access_port,
            admin_servers: admin_servers
                .iter()
                .map(|s| uuid("admin_servers", s).map(m::ServerId))
                .collect::<PyResult<Vec<_>>>()?,
            management: Some(ovm_core::manager::ArrayManagementSpec {
                plugin: plugin.to_owned(),
                host: management_host,
                port: management_port,
                username,
                password,
                fingerprint,
            }),
        };
        self.submit(py, |m| m.register_storage_array(spec))
    }
    /// Create a LUN `name` of `size_bytes` on a vendor-style array (on `target`, or its first
    /// target); no server sees it until it is presented to an access group. The job's result is
    /// the physical disk.
    #[pyo3(signature = (array, name, size_bytes, *, target=None))]
    fn create_lun(
        &self,
        py: Python<'_>,
        array: &str,
        name: &str,
        size_bytes: u64,
        target: Option<&str>,
    ) -> PyResult<Job> {
        let a = m::StorageArrayId(uuid("array", array)?);
        self.submit(py, |m| m.create_lun(a, target.map(str::to_owned), name.to_owned(), size_bytes))
    }
    /// Clone a LUN of a vendor-style array into a new LUN `name`, presented to nobody. The job's
    /// result is the new physical disk.
    fn clone_lun(&self, py: Python<'_>, disk: &str, name: &str) -> PyResult<Job> {
        let d = m::PhysicalDiskId(uuid("disk", disk)?);
        self.submit(py, |m| m.clone_lun(d, name.to_owned()))
    }
    /// Grow a LUN of a vendor-style array to `size_bytes` (a LUN never shrinks); the servers that
    /// see it rescan.
    fn resize_lun(&self, py: Python<'_>, disk: &str, size_bytes: u64) -> PyResult<Job> {
        let d = m::PhysicalDiskId(uuid("disk", disk)?);
        self.submit(py, |m| m.resize_lun(d, size_bytes))
    }
    /// Delete a LUN of a vendor-style array (no VM or repository may use it); the servers that see
    /// it forget it first. Not undoable.
    fn delete_lun(&self, py: Python<'_>, disk: &str) -> PyResult<Job> {
        let d = m::PhysicalDiskId(uuid("disk", disk)?);
        self.submit(py, |m| m.delete_lun(d))
    }
    /// Create an access group `name` on a vendor-style array with these servers' initiators: the
    /// LUNs presented to it are seen by them. The job's result is the group.
    fn create_access_group(
        &self,
        py: Python<'_>,
        array: &str,
        name: &str,
        servers: Vec<String>,
    ) -> PyResult<Job> {
        let a = m::StorageArrayId(uuid("array", array)?);
        let ss = servers.iter().map(|s| uuid("servers", s).map(m::ServerId)).collect::<PyResult<Vec<_>>>()?;
        self.submit(py, |m| m.create_access_group(a, name.to_owned(), ss))
    }
    /// Delete an access group of a vendor-style array that presents no LUN.
    fn delete_access_group(&self, py: Python<'_>, group: &str) -> PyResult<Job> {
        let g = m::AccessGroupId(uuid("group", group)?);
        self.submit(py, |m| m.delete_access_group(g))
    }
    /// Present a LUN to an access group of its array: the array maps it, then each server of the
    /// group logs in (or rescans) until it sees it; one job, undone if a server does not.
    fn present_lun(&self, py: Python<'_>, group: &str, disk: &str) -> PyResult<Job> {
        let (g, d) = (m::AccessGroupId(uuid("group", group)?), m::PhysicalDiskId(uuid("disk", disk)?));
        self.submit(py, |m| m.present_lun(g, d))
    }
    /// Stop presenting a LUN to an access group (no VM or repository may use it): its servers
    /// forget it, then the array unmaps it.
    fn unpresent_lun(&self, py: Python<'_>, group: &str, disk: &str) -> PyResult<Job> {
        let (g, d) = (m::AccessGroupId(uuid("group", group)?), m::PhysicalDiskId(uuid("disk", disk)?));
        self.submit(py, |m| m.unpresent_lun(g, d))
    }
    /// The file systems of a file server, in name order.
    fn file_systems_of<'py>(&self, py: Python<'py>, file_server: &str) -> PyResult<Bound<'py, PyList>> {
        let f = m::FileServerId(uuid("file_server", file_server)?);
        r::list(py, arcs(self.m()?.file_systems_of(f))?, r::FileSystem)
    }

    // ---- storage -------------------------------------------------------------------------------

    /// Create a repository on a file system. The job's result is the repository.
    #[pyo3(signature = (name, file_system, *, owner_pool=None, capacity_bytes=0))]
    fn create_repository(
        &self,
        py: Python<'_>,
        name: &str,
        file_system: &str,
        owner_pool: Option<&str>,
        capacity_bytes: u64,
    ) -> PyResult<Job> {
        let spec = RepositorySpec {
            name: name.to_owned(),
            backing: m::RepositoryBacking::FileSystem(m::FileSystemId(uuid("file_system", file_system)?)),
            owner_pool: opt_uuid("owner_pool", owner_pool)?.map(m::PoolId),
            capacity_bytes,
        };
        self.submit(py, |m| m.create_repository(spec))
    }
    /// Present (mount) a repository on a server.
    fn present_repository(&self, py: Python<'_>, repository: &str, server: &str) -> PyResult<Job> {
        let (rp, s) =
            (m::RepositoryId(uuid("repository", repository)?), m::ServerId(uuid("server", server)?));
        self.submit(py, |m| m.present_repository(rp, s))
    }
    /// Store a PV/PVH boot kernel (and initial ramdisk) in a repository under `name`, copied from
    /// files on the server the repository is presented to. The job's result is the repository.
    #[pyo3(signature = (repository, name, kernel_source, initrd_source=None))]
    fn import_kernel(
        &self,
        py: Python<'_>,
        repository: &str,
        name: String,
        kernel_source: String,
        initrd_source: Option<String>,
    ) -> PyResult<Job> {
        let rp = m::RepositoryId(uuid("repository", repository)?);
        self.submit(py, |m| m.import_kernel(rp, name, kernel_source, initrd_source))
    }
    /// Present a repository to several servers in one job: each mounts it; a server that fails
    /// undoes the mounts made on the others.
    fn present_repository_to(&self, py: Python<'_>, repository: &str, servers: Vec<String>) -> PyResult<Job> {
        let rp = m::RepositoryId(uuid("repository", repository)?);
        let ss = servers.iter().map(|s| uuid("servers", s).map(m::ServerId)).collect::<PyResult<Vec<_>>>()?;
        self.submit(py, |m| m.present_repository_to(rp, ss))
    }
    /// Unpresent a repository from a server.
    fn unpresent_repository(&self, py: Python<'_>, repository: &str, server: &str) -> PyResult<Job> {
        let (rp, s) =
            (m::RepositoryId(uuid("repository", repository)?), m::ServerId(uuid("server", server)?));
        self.submit(py, |m| m.unpresent_repository(rp, s))
    }
    /// A repository by id.
    fn repository(&self, id: &str) -> PyResult<r::Repository> {
        self.get(m::ObjectKind::Repository, uuid("id", id)?)?
            .and_then(|o| typed!(o, Repository))
            .map(r::Repository)
            .or_raise()
    }
    /// A repository by name.
    fn repository_by_name(&self, name: &str) -> PyResult<r::Repository> {
        self.by_name(m::ObjectKind::Repository, name)?
            .and_then(|o| typed!(o, Repository))
            .map(r::Repository)
            .or_raise()
    }
    /// All repositories, in name order.
    fn repositories<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        r::list(py, typed_list!(self.m()?, Repository)?, r::Repository)
    }
    /// Create an empty virtual disk. The job's result is the disk.
    #[pyo3(signature = (repository, name, size_bytes, *, shareable=false))]
    fn create_virtual_disk(
        &self,
        py: Python<'_>,
        repository: &str,
        name: String,
        size_bytes: u64,
        shareable: bool,
    ) -> PyResult<Job> {
        let rp = m::RepositoryId(uuid("repository", repository)?);
        self.submit(py, |m| m.create_virtual_disk(rp, name, size_bytes, shareable))
    }
    /// Delete a virtual disk no VM or template uses.
    fn delete_virtual_disk(&self, py: Python<'_>, disk: &str) -> PyResult<Job> {
        let d = m::VirtualDiskId(uuid("disk", disk)?);
        self.submit(py, |m| m.delete_virtual_disk(d))
    }
    /// A virtual disk by id.
    fn virtual_disk(&self, id: &str) -> PyResult<r::VirtualDisk> {
        self.get(m::ObjectKind::VirtualDisk, uuid("id", id)?)?
            .and_then(|o| typed!(o, VirtualDisk))
            .map(r::VirtualDisk)
            .or_raise()
    }
    /// Virtual disks in name order, optionally only those of `repository`.
    #[pyo3(signature = (*, repository=None))]
    fn virtual_disks<'py>(&self, py: Python<'py>, repository: Option<&str>) -> PyResult<Bound<'py, PyList>> {
        let filter = DiskFilter { repository: opt_uuid("repository", repository)?.map(m::RepositoryId) };
        r::list(py, arcs(self.m()?.virtual_disks_where(filter))?, r::VirtualDisk)
    }
    /// Import an ISO image into a repository from `source`: an absolute path on this machine or
    /// an ``http(s)://`` URL. ``Job.bytes_done`` shows its progress.
    fn import_iso(&self, py: Python<'_>, repository: &str, name: String, source: String) -> PyResult<Job> {
        let rp = m::RepositoryId(uuid("repository", repository)?);
        self.submit(py, |m| m.import_iso(rp, name, source))
    }
    /// Import an Oracle VM template archive (`.tar`, `.tgz`: a `vm.cfg` and the disk images it
    /// names, and the kernel and ramdisk it boots, if any) into a repository from `source` (an
    /// absolute path on this machine or an ``http(s)://`` URL), named `name` or as its `vm.cfg`
    /// says. A hostile archive raises `InvalidArgumentError` and leaves nothing. The job's result
    /// is the template; ``Job.bytes_done`` shows its progress.
    #[pyo3(signature = (repository, source, name=None))]
    fn import_template(
        &self,
        py: Python<'_>,
        repository: &str,
        source: String,
        name: Option<String>,
    ) -> PyResult<Job> {
        let rp = m::RepositoryId(uuid("repository", repository)?);
        self.submit(py, |m| m.import_template(rp, source, name))
    }
    /// Import an assembly (an OVA archive, or an OVF descriptor with its files beside it) into a
    /// repository from `source` (an absolute path on this machine or an ``http(s)://`` URL), named
    /// `name` or as its descriptor says. Each virtual system becomes a template of the assembly;
    /// disks must be raw images; files the manifest lists are checked against it. The job's result
    /// is the assembly; ``Job.bytes_done`` shows its progress.
    #[pyo3(signature = (repository, source, name=None))]
    fn import_assembly(
        &self,
        py: Python<'_>,
        repository: &str,
        source: String,
        name: Option<String>,
    ) -> PyResult<Job> {
        let rp = m::RepositoryId(uuid("repository", repository)?);
        self.submit(py, |m| m.import_assembly(rp, source, name))
    }
    /// Create a template from a configuration and disks of the repository.
    #[pyo3(signature = (repository, name, config, disks=Vec::new()))]
    fn create_template(
        &self,
        py: Python<'_>,
        repository: &str,
        name: String,
        config: VmConfig,
        disks: Vec<String>,
    ) -> PyResult<Job> {
        let rp = m::RepositoryId(uuid("repository", repository)?);
        let disks =
            disks.iter().map(|d| uuid("disks", d).map(m::VirtualDiskId)).collect::<PyResult<Vec<_>>>()?;
        self.submit(py, |m| m.create_template(rp, name, config.0, disks))
    }
    /// A template by id.
    fn template(&self, id: &str) -> PyResult<r::Template> {
        self.get(m::ObjectKind::Template, uuid("id", id)?)?
            .and_then(|o| typed!(o, Template))
            .map(r::Template)
            .or_raise()
    }
    /// A template by name.
    fn template_by_name(&self, name: &str) -> PyResult<r::Template> {
        self.by_name(m::ObjectKind::Template, name)?
            .and_then(|o| typed!(o, Template))
            .map(r::Template)
            .or_raise()
    }
    /// All templates, in name order.
    fn templates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        r::list(py, typed_list!(self.m()?, Template)?, r::Template)
    }

    // ---- networks ------------------------------------------------------------------------------

    /// Create a network (by default a VM network). The job's result is the network.
    /// With no `functions`, a VM network; with no `mtu`, ovm's default MTU (1500).
    #[pyo3(signature = (name, bridge, *, functions=Vec::new(), mtu=None))]
    fn create_network(
        &self,
        py: Python<'_>,
        name: &str,
        bridge: &str,
        functions: Vec<String>,
        mtu: Option<u16>,
    ) -> PyResult<Job> {
        let functions = functions.iter().map(|f| parse_enum("functions", f)).collect::<PyResult<_>>()?;
        let spec = NetworkSpec::new(name, bridge, functions, mtu);
        self.submit(py, |m| m.create_network(spec))
    }
    /// A network by id.
    fn network(&self, id: &str) -> PyResult<r::Network> {
        self.get(m::ObjectKind::Network, uuid("id", id)?)?
            .and_then(|o| typed!(o, Network))
            .map(r::Network)
            .or_raise()
    }
    /// A network by name.
    fn network_by_name(&self, name: &str) -> PyResult<r::Network> {
        self.by_name(m::ObjectKind::Network, name)?
            .and_then(|o| typed!(o, Network))
            .map(r::Network)
            .or_raise()
    }
    /// All networks, in name order.
    fn networks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        r::list(py, typed_list!(self.m()?, Network)?, r::Network)
    }

    /// Bond `ports` of `server` (the first is the primary of an active-backup bond) as `interface`
    /// in `mode` (`"ActiveBackup"`, `"Lacp"` or `"AdaptiveLoadBalancing"`), with `mtu`. Links are
    /// monitored by ARP probes of `arp_targets` (IPv4 addresses) every `arp_interval_ms` (active-backup
    /// bonds only), or by the NICs' carrier (MII) when `arp_interval_ms` is `None`. `address` is `None`, `"dhcp"` or
    /// `"ADDRESS/PREFIX"`. The job's result is the bond.
    #[pyo3(signature = (server, interface, mode, ports, *, mtu=1500, arp_interval_ms=None, arp_targets=None, address=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_bond(
        &self,
        py: Python<'_>,
        server: &str,
        interface: String,
        mode: &str,
        ports: Vec<String>,
        mtu: u16,
        arp_interval_ms: Option<u32>,
        arp_targets: Option<Vec<String>>,
        address: Option<&str>,
    ) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        let mode: m::BondMode = parse_enum("mode", mode)?;
        let ports = ports.iter().map(|p| uuid("ports", p).map(m::PortId)).collect::<PyResult<Vec<_>>>()?;
        let targets = arp_targets
            .unwrap_or_default()
            .iter()
            .map(|t| {
                t.parse::<std::net::Ipv4Addr>()
                    .map_err(|_| Error::invalid("arp_targets", format!("{t:?} is not an IPv4 address")))
            })
            .collect::<Result<Vec<_>, _>>()
            .or_raise()?;
        let monitor = match arp_interval_ms {
            Some(interval_ms) => m::BondMonitor::Arp { interval_ms, targets },
            None if targets.is_empty() => m::BondMonitor::default(),
            None => return Err(to_py(Error::invalid("arp_targets", "ARP targets need arp_interval_ms"))),
        };
        let mut spec = BondSpec::new(s, &interface, mode, ports);
        spec.mtu = mtu;
        spec.monitor = monitor;
        spec.addressing = addressing_arg("address", address)?;
        self.submit(py, |m| m.create_bond_with(spec))
    }
    /// Delete a bond (its ports are released). Nothing may use it.
    fn delete_bond(&self, py: Python<'_>, bond: &str) -> PyResult<Job> {
        let b = m::BondPortId(uuid("bond", bond)?);
        self.submit(py, |m| m.delete_bond(b))
    }
    /// Create VLAN `vlan_id` on a `port` or a `bond` of `server` (exactly one of them).
    #[pyo3(signature = (server, vlan_id, *, port=None, bond=None))]
    fn create_vlan_interface(
        &self,
        py: Python<'_>,
        server: &str,
        vlan_id: u16,
        port: Option<&str>,
        bond: Option<&str>,
    ) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        let parent = match (opt_uuid("port", port)?, opt_uuid("bond", bond)?) {
            (Some(p), None) => m::VlanParent::Port(m::PortId(p)),
            (None, Some(b)) => m::VlanParent::Bond(m::BondPortId(b)),
            _ => return Err(to_py(Error::invalid("port", "give exactly one of port and bond"))),
        };
        self.submit(py, |m| m.create_vlan_interface(s, parent, vlan_id))
    }
    /// Add a port, bond or VLAN interface (`kind` `"Port"`, `"Bond"` or `"Vlan"`) to a network.
    fn add_network_member(&self, py: Python<'_>, network: &str, kind: &str, member: &str) -> PyResult<Job> {
        let n = m::NetworkId(uuid("network", network)?);
        let mb = network_member(kind, member)?;
        self.submit(py, |m| m.add_network_member(n, mb))
    }
    /// Remove a member from a network.
    fn remove_network_member(
        &self,
        py: Python<'_>,
        network: &str,
        kind: &str,
        member: &str,
    ) -> PyResult<Job> {
        let n = m::NetworkId(uuid("network", network)?);
        let mb = network_member(kind, member)?;
        self.submit(py, |m| m.remove_network_member(n, mb))
    }

    /// Set the address of a port, bond or VLAN interface (`member_kind` `"Port"`, `"Bond"` or
    /// `"Vlan"`): `address` is `None`, `"dhcp"` or `"ADDRESS/PREFIX"`. A change that would cut the
    /// manager's link to the server raises `ConflictError` unless `force`; a forced one is undone by
    /// the server unless the manager reaches it again within `confirm_within` seconds, and then the
    /// job fails with `ConflictError`.
    #[pyo3(signature = (member_kind, member_id, address, *, force=false, confirm_within=30.0))]
    fn set_address(
        &self,
        py: Python<'_>,
        member_kind: &str,
        member_id: &str,
        address: Option<&str>,
        force: bool,
        confirm_within: f64,
    ) -> PyResult<Job> {
        let member = network_member(member_kind, member_id)?;
        let addressing = addressing_arg("address", address)?;
        let confirm_within = Duration::try_from_secs_f64(confirm_within)
            .map_err(|_| Error::invalid("confirm_within", "must be a number of seconds >= 0"))
            .or_raise()?;
        let how = NetworkApply { force, confirm_within };
        self.submit(py, |m| m.set_addressing(member, addressing, how))
    }
    /// Converge the network configuration of `server` to the model (what `network_drift` reports).
    fn reapply_network(&self, py: Python<'_>, server: &str) -> PyResult<Job> {
        let s = m::ServerId(uuid("server", server)?);
        self.submit(py, |m| m.reapply_network(s))
    }
    /// How the network configuration of `server` differs from the model, one line per difference
    /// (empty: as it should be). Reads the server.
    fn network_drift(&self, py: Python<'_>, server: &str) -> PyResult<Vec<String>> {
        let s = m::ServerId(uuid("server", server)?);
        let m = self.m()?;
        py.detach(|| m.network_drift(s)).or_raise()
    }
    /// The network configuration `server` has now, read from it: a dict of `bonds`, `vlans`,
    /// `bridges` and `addresses`, each a list of plain dicts.
    fn server_network_config<'py>(&self, py: Python<'py>, server: &str) -> PyResult<Bound<'py, PyAny>> {
        let s = m::ServerId(uuid("server", server)?);
        let m = self.m()?;
        let cfg = py.detach(|| m.server_network_config(s)).or_raise()?;
        convert::to_python(py, &cfg)
    }

    // ---- VMs -----------------------------------------------------------------------------------

    /// Create a VM. VNICs with an empty MAC get one from the manager's range. The job's result is the VM.
    #[pyo3(signature = (name, config=None, *, description=String::new(), pool=None, repository=None, server=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_vm(
        &self,
        py: Python<'_>,
        name: &str,
        config: Option<VmConfig>,
        description: String,
        pool: Option<&str>,
        repository: Option<&str>,
        server: Option<&str>,
    ) -> PyResult<Job> {
        let mut spec = VmSpec::new(name, config.map(|c| c.0).unwrap_or_default());
        spec.description = description;
        spec.pool = opt_uuid("pool", pool)?.map(m::PoolId);
        spec.repository = opt_uuid("repository", repository)?.map(m::RepositoryId);
        spec.server = opt_uuid("server", server)?.map(m::ServerId);
        self.submit(py, |m| m.create_vm(spec))
    }
    /// A VM by id.
    fn vm(&self, id: &str) -> PyResult<r::Vm> {
        self.get(m::ObjectKind::Vm, uuid("id", id)?)?.and_then(|o| typed!(o, Vm)).map(r::Vm).or_raise()
    }
    /// A VM by name.
    fn vm_by_name(&self, name: &str) -> PyResult<r::Vm> {
        self.by_name(m::ObjectKind::Vm, name)?.and_then(|o| typed!(o, Vm)).map(r::Vm).or_raise()
    }
    /// VMs in name order, optionally only those of `pool`, on `server`, or in `power_state`.
    #[pyo3(signature = (*, pool=None, server=None, power_state=None))]
    fn vms<'py>(
        &self,
        py: Python<'py>,
        pool: Option<&str>,
        server: Option<&str>,
        power_state: Option<&str>,
    ) -> PyResult<Bound<'py, PyList>> {
        let filter = VmFilter {
            pool: opt_uuid("pool", pool)?.map(m::PoolId),
            server: opt_uuid("server", server)?.map(m::ServerId),
            power_state: power_state.map(|s| parse_enum("power_state", s)).transpose()?,
        };
        r::list(py, arcs(self.m()?.vms_where(filter))?, r::Vm)
    }
    /// Start a VM.
    fn start_vm(&self, py: Python<'_>, vm: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.start_vm(v))
    }
    /// Start a VM on `server`, a server of its pool, with the checks of placement on that server.
    fn start_vm_on(&self, py: Python<'_>, vm: &str, server: &str) -> PyResult<Job> {
        let (v, s) = (m::VmId(uuid("vm", vm)?), m::ServerId(uuid("server", server)?));
        self.submit(py, |m| m.start_vm_on(v, s))
    }
    /// Shut a VM down, waiting up to `timeout` seconds for the guest, then (if `force`) destroying it.
    #[pyo3(signature = (vm, *, timeout=60.0, force=true))]
    fn stop_vm(&self, py: Python<'_>, vm: &str, timeout: f64, force: bool) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let timeout = Duration::try_from_secs_f64(timeout)
            .map_err(|_| Error::invalid("timeout", "must be a number of seconds >= 0"))
            .or_raise()?;
        self.submit(py, |m| m.stop_vm_with(v, StopOptions { timeout, force_after_timeout: force }))
    }
    /// Power a VM off at once.
    fn kill_vm(&self, py: Python<'_>, vm: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.kill_vm(v))
    }
    /// Reboot a VM.
    fn restart_vm(&self, py: Python<'_>, vm: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.restart_vm(v))
    }
    /// Pause a VM in memory.
    fn pause_vm(&self, py: Python<'_>, vm: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.pause_vm(v))
    }
    /// Suspend a VM to its repository.
    fn suspend_vm(&self, py: Python<'_>, vm: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.suspend_vm(v))
    }
    /// Resume a paused or suspended VM.
    fn resume_vm(&self, py: Python<'_>, vm: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.resume_vm(v))
    }
    /// Resume a suspended VM on `server`, another server of its pool with its repository (or the
    /// one it was suspended on).
    fn resume_vm_on(&self, py: Python<'_>, vm: &str, server: &str) -> PyResult<Job> {
        let (v, s) = (m::VmId(uuid("vm", vm)?), m::ServerId(uuid("server", server)?));
        self.submit(py, |m| m.resume_vm_on(v, s))
    }
    /// Live-migrate a running VM (or move a stopped one) to `server`. With `mode="cold"`, for
    /// where live migration is impossible: the domain is paused and saved on the source into the
    /// stream, restored and run on `server`, and the source copy destroyed only then (on failure
    /// the VM runs on at the source).
    #[pyo3(signature = (vm, server, *, mode="live"))]
    fn migrate_vm(&self, py: Python<'_>, vm: &str, server: &str, mode: &str) -> PyResult<Job> {
        let (v, s) = (m::VmId(uuid("vm", vm)?), m::ServerId(uuid("server", server)?));
        let mode = match mode {
            "live" => m::MigrationMode::Live,
            "cold" => m::MigrationMode::Cold,
            other => {
                return Err(Error::invalid("mode", format!("{other:?} is not \"live\" or \"cold\"")))
                    .or_raise()
            }
        };
        self.submit(py, |m| m.migrate_vm_with(v, s, ovm_core::manager::MigrateOptions { mode }))
    }
    /// How many migrations may run at once on one server (a migration counts on its source and on
    /// its destination; more wait in line for a slot).
    fn migration_limit(&self) -> PyResult<u32> {
        self.m()?.migration_limit().or_raise()
    }
    /// Set the migration limit (1 to 64). Returns a job.
    fn set_migration_limit(&self, py: Python<'_>, limit: u32) -> PyResult<Job> {
        self.submit(py, |m| m.set_migration_limit(limit))
    }
    /// How server loads are sampled, in seconds: `{"interval": 10.0, "raw_retention": 3600.0,
    /// "coarse_interval": 300.0, "coarse_retention": 604800.0}`.
    fn load_sampling(&self) -> PyResult<std::collections::BTreeMap<&'static str, f64>> {
        let s = self.m()?.load_sampling().or_raise()?;
        Ok([
            ("interval", s.interval),
            ("raw_retention", s.raw_retention),
            ("coarse_interval", s.coarse_interval),
            ("coarse_retention", s.coarse_retention),
        ]
        .into_iter()
        .map(|(k, d)| (k, d.as_secs_f64()))
        .collect())
    }
    /// Change how server loads are sampled (seconds; omitted settings stay): the interval 1 s to
    /// 1 h, the coarse interval a whole multiple of it, each retention at least one of its
    /// intervals. Raises `InvalidArgumentError` otherwise, changing nothing.
    #[pyo3(signature = (*, interval=None, raw_retention=None, coarse_interval=None, coarse_retention=None))]
    fn set_load_sampling(
        &self,
        interval: Option<f64>,
        raw_retention: Option<f64>,
        coarse_interval: Option<f64>,
        coarse_retention: Option<f64>,
    ) -> PyResult<()> {
        let m = self.m()?;
        let mut s = m.load_sampling().or_raise()?;
        for (what, value, slot) in [
            ("interval", interval, &mut s.interval),
            ("raw_retention", raw_retention, &mut s.raw_retention),
            ("coarse_interval", coarse_interval, &mut s.coarse_interval),
            ("coarse_retention", coarse_retention, &mut s.coarse_retention),
        ] {
            if let Some(v) = value {
                *slot = std::time::Duration::try_from_secs_f64(v)
                    .map_err(|_| Error::invalid(what, format!("{v} is not a number of seconds")))
                    .or_raise()?;
            }
        }
        m.set_load_sampling(s).or_raise()
    }
    /// Sample the load of every owned, reachable server now; returns how many answered.
    fn sample_loads(&self, py: Python<'_>) -> PyResult<usize> {
        let m = self.m()?;
        py.detach(|| m.sample_loads()).or_raise()
    }
    /// The newest load sample of a server (None before the first).
    fn server_load(&self, server: &str) -> PyResult<Option<r::LoadSample>> {
        let s = m::ServerId(uuid("server", server)?);
        Ok(self.m()?.server_load(s).or_raise()?.map(r::LoadSample))
    }
    /// A server's kept load samples, oldest first: `resolution="raw"` (every sample) or `"coarse"`
    /// (averages over the coarse interval).
    #[pyo3(signature = (server, *, resolution="raw"))]
    fn server_load_history(&self, server: &str, resolution: &str) -> PyResult<Vec<r::LoadSample>> {
        let s = m::ServerId(uuid("server", server)?);
        let res = match resolution {
            "raw" => m::LoadResolution::Raw,
            "coarse" => m::LoadResolution::Coarse,
            other => {
                return Err(Error::invalid("resolution", format!("{other:?} is not \"raw\" or \"coarse\"")))
                    .or_raise()
            }
        };
        Ok(self.m()?.server_load_history(s, res).or_raise()?.into_iter().map(r::LoadSample).collect())
    }
    /// A running VM's load in its server's newest sample (None if it has none).
    fn vm_load(&self, vm: &str) -> PyResult<Option<r::VmLoad>> {
        let v = m::VmId(uuid("vm", vm)?);
        Ok(self.m()?.vm_load(v).or_raise()?.map(r::VmLoad))
    }
    /// Every reason migrating `vm` to `server` would fail now (empty: it can go).
    fn migration_blockers(
        &self,
        py: Python<'_>,
        vm: &str,
        server: &str,
    ) -> PyResult<Vec<r::MigrationBlocker>> {
        let (v, s) = (m::VmId(uuid("vm", vm)?), m::ServerId(uuid("server", server)?));
        let m = self.m()?;
        let found = py.detach(|| m.migration_blockers(v, s)).or_raise()?;
        Ok(found.into_iter().map(r::MigrationBlocker).collect())
    }
    /// The DRS/DPM plan for `pool` now, from the loads sampled over its policy period, in the
    /// order it would run: nothing changes (a dry run).
    fn policy_plan(&self, py: Python<'_>, pool: &str) -> PyResult<Vec<r::PolicyAction>> {
        let p = m::PoolId(uuid("pool", pool)?);
        let m = self.m()?;
        let plan = py.detach(|| m.policy_plan(p)).or_raise()?;
        Ok(plan.actions.iter().map(r::PolicyAction::of).collect())
    }
    /// Run `pool`'s DRS/DPM policy now: its plan carried out in a job (migrations, servers powered
    /// off and on), each action an event.
    fn run_policy(&self, py: Python<'_>, pool: &str) -> PyResult<Job> {
        let p = m::PoolId(uuid("pool", pool)?);
        self.submit(py, |m| m.run_policy(p))
    }
    /// The cluster of `pool` as its servers report it (members, master, epoch, heartbeats), or
    /// `None` when its servers are in no cluster.
    fn pool_cluster_status(&self, py: Python<'_>, pool: &str) -> PyResult<Option<r::ClusterStatus>> {
        let p = m::PoolId(uuid("pool", pool)?);
        let m = self.m()?;
        Ok(py.detach(|| m.pool_cluster_status(p)).or_raise()?.map(r::ClusterStatus))
    }
    /// Reach `pool` at its virtual IP, as Oracle VM's manager does: the id of the server that
    /// answers there (the master of its cluster) and the cluster as it reports it.
    fn reach_pool(&self, py: Python<'_>, pool: &str) -> PyResult<(String, Option<r::ClusterStatus>)> {
        let p = m::PoolId(uuid("pool", pool)?);
        let m = self.m()?;
        let (server, status) = py.detach(|| m.reach_pool(p)).or_raise()?;
        Ok((server.0.to_string(), status.map(r::ClusterStatus)))
    }
    /// Whether `pool` absorbs `failures` of its running, connected servers failing at once: a dry
    /// run of HA over every combination (at most 256; beyond, the most loaded servers and a memory
    /// bound), with the worst case's decisions.
    fn ha_plan(&self, py: Python<'_>, pool: &str, failures: u32) -> PyResult<r::HaTolerance> {
        let p = m::PoolId(uuid("pool", pool)?);
        let m = self.m()?;
        Ok(r::HaTolerance(py.detach(|| m.ha_plan(p, failures)).or_raise()?))
    }
    /// The largest number of simultaneous server failures `pool` tolerates, together with every
    /// smaller number (at most its running, connected servers less one).
    fn max_failures_tolerated(&self, py: Python<'_>, pool: &str) -> PyResult<u32> {
        let p = m::PoolId(uuid("pool", pool)?);
        let m = self.m()?;
        py.detach(|| m.max_failures_tolerated(p)).or_raise()
    }
    /// Return if `vm` can migrate to `server` now; otherwise raise `InvalidStateError` listing
    /// every reason.
    fn assert_can_migrate(&self, py: Python<'_>, vm: &str, server: &str) -> PyResult<()> {
        let (v, s) = (m::VmId(uuid("vm", vm)?), m::ServerId(uuid("server", server)?));
        let m = self.m()?;
        py.detach(|| m.assert_can_migrate(v, s)).or_raise()
    }
    /// Clone a stopped VM (its disks are copied, or as `disks` says: see `clone_template`). The
    /// job's result is the new VM.
    #[pyo3(signature = (vm, name, *, pool=None, repository=None, networks=None, disks=None))]
    #[allow(clippy::too_many_arguments)]
    fn clone_vm(
        &self,
        py: Python<'_>,
        vm: &str,
        name: String,
        pool: Option<&str>,
        repository: Option<&str>,
        networks: Option<Vec<Option<String>>>,
        disks: Option<&Bound<'_, PyMapping>>,
    ) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let opts = clone_options(pool, repository, networks, disks)?;
        self.submit(py, |m| m.clone_vm(v, name, opts))
    }
    /// Create a VM from a template. Its disks are copied into `repository` (default: the
    /// template's), except those `disks` names by slot: `"Share"` maps the template's disk itself
    /// (it must be shareable), `"Copy"` or `("Copy", repository_id)` copies it (into that
    /// repository; `None`: into `repository`). The job's result is the new VM.
    #[pyo3(signature = (template, name, *, pool=None, repository=None, networks=None, disks=None))]
    #[allow(clippy::too_many_arguments)]
    fn clone_template(
        &self,
        py: Python<'_>,
        template: &str,
        name: String,
        pool: Option<&str>,
        repository: Option<&str>,
        networks: Option<Vec<Option<String>>>,
        disks: Option<&Bound<'_, PyMapping>>,
    ) -> PyResult<Job> {
        let t = m::TemplateId(uuid("template", template)?);
        let opts = clone_options(pool, repository, networks, disks)?;
        self.submit(py, |m| m.clone_template(t, name, opts))
    }
    /// Turn a stopped VM into a template. The job's result is the template.
    fn vm_to_template(&self, py: Python<'_>, vm: &str, name: String) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.vm_to_template(v, name))
    }
    /// Edit a VM: any of name, description, or a whole new configuration.
    #[pyo3(signature = (vm, *, name=None, description=None, config=None))]
    fn edit_vm(
        &self,
        py: Python<'_>,
        vm: &str,
        name: Option<String>,
        description: Option<String>,
        config: Option<VmConfig>,
    ) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        // The VM's record with the edits, replaced as a whole (`update_object` edits a VM as
        // `Manager::edit_vm` does).
        self.submit(py, |m| {
            let mut x = m.vm_record(v)?;
            if let Some(n) = name {
                x.name = n;
            }
            if let Some(d) = description {
                x.description = d;
            }
            if let Some(c) = config {
                x.config = c.0;
            }
            m.update_object(m::Object::Vm(x))
        })
    }
    /// Delete a stopped VM and its disks.
    fn delete_vm(&self, py: Python<'_>, vm: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.delete_vm(v))
    }

    /// Set how a stopped VM boots: its domain type (`"Pv"`, `"Hvm"`, `"PvHvm"`, `"Pvh"`) and, for
    /// HVM and PVHVM guests, its boot devices in order (`"Disk"`, `"Cdrom"`, `"Network"`).
    #[pyo3(signature = (vm, domain_type, boot_order=Vec::new()))]
    fn set_boot(
        &self,
        py: Python<'_>,
        vm: &str,
        domain_type: &str,
        boot_order: Vec<String>,
    ) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let ty: m::DomainType = crate::convert::parse_enum("domain_type", domain_type)?;
        let order = boot_order
            .iter()
            .map(|d| crate::convert::parse_enum::<m::BootDevice>("boot_order", d))
            .collect::<PyResult<Vec<_>>>()?;
        self.submit(py, |m| m.set_vm_boot(v, ty, order))
    }
    /// Boot a stopped PV or PVH VM from the install tree at `url` (`http://` or `https://`, read by
    /// its server at each start) with the installer's `cmdline`; `url=None`: no network boot.
    #[pyo3(signature = (vm, url, cmdline=String::new()))]
    fn set_network_boot(
        &self,
        py: Python<'_>,
        vm: &str,
        url: Option<String>,
        cmdline: String,
    ) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let boot = match url {
            Some(url) => Some(m::NetworkBoot { url, cmdline }),
            None if !cmdline.is_empty() => {
                return Err(ovm_core::Error::invalid("cmdline", "a cmdline needs a url")).or_raise()
            }
            None => None,
        };
        self.submit(py, |m| m.set_vm_network_boot(v, boot))
    }
    /// Give a stopped PV VM a virtual framebuffer (`enabled=True`), served by `open_vm_console` as
    /// an HVM guest's screen is, or take it away.
    fn set_framebuffer(&self, py: Python<'_>, vm: &str, enabled: bool) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.set_vm_framebuffer(v, enabled))
    }
    /// Boot a stopped PV/PVH VM directly from `kernel` (with `initrd` and `cmdline`); `kernel=None`
    /// removes direct boot.
    #[pyo3(signature = (vm, kernel, *, initrd=None, cmdline=String::new()))]
    fn set_kernel(
        &self,
        py: Python<'_>,
        vm: &str,
        kernel: Option<String>,
        initrd: Option<String>,
        cmdline: String,
    ) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let k = match kernel {
            Some(kernel) => Some(m::PvKernel { kernel, initrd, cmdline }),
            None if initrd.is_some() || !cmdline.is_empty() => {
                return Err(to_py(Error::invalid("kernel", "initrd and cmdline need a kernel")))
            }
            None => None,
        };
        self.submit(py, |m| m.set_vm_kernel(v, k))
    }
    /// Map physical disk (LUN) `disk` into slot `slot` of a stopped VM (replacing what the slot
    /// held); the VM then runs only on servers logged in to the LUN's array.
    fn attach_physical_disk(&self, py: Python<'_>, vm: &str, slot: u8, disk: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let target = m::DiskTarget::PhysicalDisk(m::PhysicalDiskId(uuid("disk", disk)?));
        self.submit(py, |m| m.map_disk(v, slot, target))
    }
    /// Map virtual disk `disk` into slot `slot` of a stopped VM (replacing what the slot held).
    fn attach_disk(&self, py: Python<'_>, vm: &str, slot: u8, disk: &str) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let target = m::DiskTarget::VirtualDisk(m::VirtualDiskId(uuid("disk", disk)?));
        self.submit(py, |m| m.map_disk(v, slot, target))
    }
    /// Connect VNIC `index` (from 0) of a stopped VM to `network` (`None`: disconnect).
    #[pyo3(signature = (vm, index, network))]
    fn set_vnic_network(
        &self,
        py: Python<'_>,
        vm: &str,
        index: usize,
        network: Option<&str>,
    ) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let net = opt_uuid("network", network)?.map(m::NetworkId);
        let index =
            u32::try_from(index).map_err(|_| to_py(Error::invalid("index", format!("no VNIC {index}"))))?;
        self.submit(py, |m| m.set_vnic_network(v, index, net))
    }
    /// Give a VM a new VNIC on `network` (`None`: the server's default bridge) with a MAC from the
    /// manager's range; plugged in at once if the VM runs. The job's result is the VM; the new MAC is
    /// the last of its `macs`.
    #[pyo3(signature = (vm, network=None))]
    fn add_vnic(&self, py: Python<'_>, vm: &str, network: Option<&str>) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let net = opt_uuid("network", network)?.map(m::NetworkId);
        self.submit(py, |m| m.add_vnic(v, net))
    }
    /// Remove the VNIC with `mac` from a VM; unplugged at once if the VM runs.
    fn remove_vnic(&self, py: Python<'_>, vm: &str, mac: String) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        self.submit(py, |m| m.remove_vnic(v, mac))
    }
    /// A running VM's NICs as its server has them: `(mac, bridge, connected)`.
    fn vm_nics(&self, py: Python<'_>, vm: &str) -> PyResult<Vec<(String, String, bool)>> {
        let v = m::VmId(uuid("vm", vm)?);
        let m = self.m()?;
        py.detach(|| m.vm_nics(v)).or_raise()
    }
    /// Console output of a running VM.
    fn vm_console(&self, py: Python<'_>, vm: &str) -> PyResult<String> {
        let v = m::VmId(uuid("vm", vm)?);
        let m = self.m()?;
        py.detach(|| m.vm_console(v)).or_raise()
    }
    /// Send messages (`{key: value}`, in order) to a running VM's guest; all or nothing.
    fn send_vm_messages(&self, py: Python<'_>, vm: &str, messages: &Bound<'_, PyMapping>) -> PyResult<Job> {
        let v = m::VmId(uuid("vm", vm)?);
        let mut msgs = Vec::new();
        for item in messages.items()?.iter() {
            let (k, val): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            let k: String =
                k.extract().map_err(|_| to_py(Error::invalid("messages", "keys and values are str")))?;
            let val: String =
                val.extract().map_err(|_| to_py(Error::invalid("messages", "keys and values are str")))?;
            msgs.push((k, val));
        }
        self.submit(py, |m| m.send_vm_messages(v, msgs))
    }
    /// Open a running VM's graphical console for one VNC client.
    fn open_vm_console(&self, py: Python<'_>, vm: &str) -> PyResult<crate::records::ConsoleEndpoint> {
        let v = m::VmId(uuid("vm", vm)?);
        let m = self.m()?;
        py.detach(|| m.open_vm_console(v)).map(Into::into).or_raise()
    }
    /// The values a running VM's guest reports.
    fn vm_guest_data(
        &self,
        py: Python<'_>,
        vm: &str,
    ) -> PyResult<std::collections::BTreeMap<String, String>> {
        let v = m::VmId(uuid("vm", vm)?);
        let m = self.m()?;
        py.detach(|| m.vm_guest_data(v)).or_raise()
    }
    /// Create an anti-affinity group of `vms` in `pool`. The job's result is the group.
    #[pyo3(signature = (pool, name, vms=Vec::new()))]
    fn create_anti_affinity_group(
        &self,
        py: Python<'_>,
        pool: &str,
        name: String,
        vms: Vec<String>,
    ) -> PyResult<Job> {
        let p = m::PoolId(uuid("pool", pool)?);
        let vms = vms.iter().map(|v| uuid("vms", v).map(m::VmId)).collect::<PyResult<Vec<_>>>()?;
        self.submit(py, |m| m.create_anti_affinity_group(p, name, vms))
    }
    /// Create a tag. The job's result is the tag.
    fn create_tag(&self, py: Python<'_>, name: &str) -> PyResult<Job> {
        let o = m::Object::Tag(m::Tag::new(name));
        self.submit(py, |m| m.create_object(o))
    }
    /// Attach (`on=True`) or detach a tag to an object.
    #[pyo3(signature = (tag, object, on=true))]
    fn set_tag(&self, py: Python<'_>, tag: &str, object: ObjectRef, on: bool) -> PyResult<Job> {
        let t = uuid("tag", tag)?;
        let target = object.0;
        self.submit(py, |m| {
            m.object(target)?;
            let mut tag = typed!(m.object(m::ObjectRef::new(m::ObjectKind::Tag, t))?, Tag)?;
            let tag = std::sync::Arc::make_mut(&mut tag);
            tag.objects.retain(|o| *o != target);
            if on {
                tag.objects.push(target);
            }
            m.update_object(m::Object::Tag(tag.clone()))
        })
    }

    // ---- jobs ----------------------------------------------------------------------------------

    /// A handle on any job, running or finished.
    fn job(&self, py: Python<'_>, id: &str) -> PyResult<Job> {
        let j = m::JobId(uuid("id", id)?);
        self.submit(py, |m| m.job(j))
    }
    /// Job history, newest first: optionally only jobs on `object`, in `states`, at most `limit`.
    #[pyo3(signature = (*, object=None, states=Vec::new(), limit=None))]
    fn jobs(
        &self,
        py: Python<'_>,
        object: Option<&str>,
        states: Vec<String>,
        limit: Option<usize>,
    ) -> PyResult<Vec<r::JobInfo>> {
        let filter = JobFilter {
            object: opt_uuid("object", object)?,
            states: states.iter().map(|s| parse_enum("states", s)).collect::<PyResult<_>>()?,
            limit,
            ..Default::default()
        };
        let m = self.m()?;
        let v = py.detach(|| m.jobs(filter)).or_raise()?;
        Ok(v.into_iter().map(r::JobInfo).collect())
    }

    // ---- events and the change feed -------------------------------------------------------------

    /// Raise an event about an object. `severity` is `"Info"`, `"Warning"`, `"Error"` or `"Critical"`;
    /// Error and Critical events block mutating operations on the object until acknowledged.
    fn raise_event(
        &self,
        py: Python<'_>,
        object: ObjectRef,
        severity: &str,
        event_type: &str,
        summary: &str,
    ) -> PyResult<r::Event> {
        let sev: m::Severity = parse_enum("severity", severity)?;
        let m = self.m()?;
        py.detach(|| m.raise_event(object.0, sev, event_type.to_owned(), summary.to_owned()))
            .map(r::Event)
            .or_raise()
    }
    /// Events, newest first, with optional filters.
    #[pyo3(signature = (*, object=None, min_severity=None, acknowledged=None, limit=None))]
    fn events(
        &self,
        py: Python<'_>,
        object: Option<&str>,
        min_severity: Option<&str>,
        acknowledged: Option<bool>,
        limit: Option<usize>,
    ) -> PyResult<Vec<r::Event>> {
        let filter = EventFilter {
            object: opt_uuid("object", object)?,
            min_severity: min_severity.map(|s| parse_enum("min_severity", s)).transpose()?,
            acknowledged,
            limit,
            ..Default::default()
        };
        let m = self.m()?;
        let v = py.detach(|| m.events(filter)).or_raise()?;
        Ok(v.into_iter().map(r::Event).collect())
    }
    /// An event by id.
    fn event(&self, py: Python<'_>, id: &str) -> PyResult<r::Event> {
        let e = m::EventId(uuid("id", id)?);
        let m = self.m()?;
        py.detach(|| m.event(e)).map(r::Event).or_raise()
    }
    /// Acknowledge an event.
    fn acknowledge_event(&self, py: Python<'_>, id: &str) -> PyResult<Job> {
        let e = m::EventId(uuid("id", id)?);
        self.submit(py, |m| m.acknowledge_event(e))
    }
    /// Acknowledge every event about an object.
    fn acknowledge_all(&self, py: Python<'_>, object: ObjectRef) -> PyResult<Job> {
        self.submit(py, |m| m.acknowledge_all(object.0))
    }
    /// The newest change token.
    fn current_token(&self, py: Python<'_>) -> PyResult<u64> {
        let m = self.m()?;
        py.detach(|| m.current_token()).or_raise()
    }
    /// Changes after `token` (oldest first, a bounded batch) and the token to continue from.
    fn events_since(&self, py: Python<'_>, token: u64) -> PyResult<(Vec<r::Change>, u64)> {
        let m = self.m()?;
        let (v, next) = py.detach(|| m.events_since(token)).or_raise()?;
        Ok((v.into_iter().map(r::Change).collect(), next))
    }
    /// Subscribe to the change feed: from now (`from_token=None`) or replaying the changes after
    /// `from_token` first. Falling behind raises `EventsLostError`; by default the subscription then
    /// stays failed (subscribe again from `resume_token`). With `resume=True` it is a notice: the
    /// missed changes follow, replayed from the database (ovm-core's `LostEvents::Resume`, what C
    /// subscriptions do).
    #[pyo3(signature = (from_token=None, *, resume=false))]
    fn subscribe(&self, py: Python<'_>, from_token: Option<u64>, resume: bool) -> PyResult<Subscription> {
        let api = self.m()?;
        let mode = if resume { LostEvents::Resume } else { LostEvents::Fail };
        if let Some(m) = &self.local {
            let sub = py.detach(|| m.subscribe(from_token)).or_raise()?.on_lost(mode);
            let token = sub.token();
            return Ok(Subscription::new(Box::new(sub), token, self.closed.clone()));
        }
        // A service's stream: what it reports on a lag is the service's (`resume` is for a
        // subscription of this process). The token is read first, so that it never passes a
        // change the stream has yet to deliver.
        let token = match from_token {
            Some(t) => t,
            None => py.detach(|| api.current_token()).or_raise()?,
        };
        let stream: Box<dyn ChangeStream> = py.detach(|| api.subscribe_changes(from_token)).or_raise()?;
        Ok(Subscription::new(stream, token, self.closed.clone()))
    }

    // ---- simulated servers ----------------------------------------------------------------------

    /// Make the simulated servers delay an operation (`"Create"`, `"Shutdown"`, `"Storage"`, ...) by
    /// `seconds` (for demonstrations and tests of progress and abort).
    fn sim_set_delay(&self, op: &str, seconds: f64) -> PyResult<()> {
        let op = sim_op(op)?;
        let d = Duration::try_from_secs_f64(seconds)
            .map_err(|_| Error::invalid("seconds", "must be a number of seconds >= 0"))
            .or_raise()?;
        self.local("the simulated world")?.sim().set_delay(op, d);
        Ok(())
    }
    /// Give the simulated world a vendor-style array whose management interface is `host` (plug-in
    /// `"ovm-lio"`), accepting `username` and `password`, serving the iSCSI `targets`, with no LUN
    /// yet.
    fn sim_add_managed_array(
        &self,
        host: &str,
        username: &str,
        password: &str,
        targets: Vec<String>,
    ) -> PyResult<()> {
        let ts: Vec<&str> = targets.iter().map(String::as_str).collect();
        self.local("the simulated world")?.sim().add_managed_array(host, username, password, &ts);
        Ok(())
    }
    /// Give the simulated NFS server `host` an export `export` of `capacity_bytes` (discovered by
    /// `register_file_server`). Once a host has an export, mounting one it does not export fails.
    fn sim_add_nfs_export(&self, host: &str, export: &str, capacity_bytes: u64) -> PyResult<()> {
        self.local("the simulated world")?.sim().add_nfs_export(host, export, capacity_bytes);
        Ok(())
    }
    /// Give the simulated generic array serving the iSCSI `target` a LUN `name` of `size_bytes`
    /// (discovered by `register_storage_array`, which any portal reaches on the simulator). Returns
    /// the LUN's identifier (its `page83_id`).
    fn sim_add_lun(&self, target: &str, name: &str, size_bytes: u64) -> PyResult<String> {
        Ok(self.local("the simulated world")?.sim().add_lun(target, name, size_bytes))
    }
    /// The Wake-on-LAN magic packets the simulated servers sent, in order: (sender host,
    /// interface, MAC).
    fn sim_magic_packets(&self) -> PyResult<Vec<(String, String, String)>> {
        Ok(self
            .local("the simulated world")?
            .sim()
            .magic_packets()
            .into_iter()
            .map(|p| (p.sender, p.interface, p.mac))
            .collect())
    }
    /// Register the simulated servers' management controllers as the out-of-band power
    /// controller `"sim-bmc"` (a server's address is its simulated host's name).
    fn sim_register_power_controller(&self) -> PyResult<()> {
        let m = self.local("sim_register_power_controller")?;
        m.register_power_controller(m.sim().power_controller()).or_raise()
    }
    /// Whether simulated server `host` is powered on.
    fn sim_is_powered_on(&self, host: &str) -> PyResult<bool> {
        Ok(self.local("the simulated world")?.sim().is_powered_on(host))
    }
    /// Set the CPU load the simulated domain of `vm` generates, percent of one vCPU.
    fn sim_set_domain_load(&self, vm: &str, percent: f32) -> PyResult<()> {
        self.local("the simulated world")?.sim().set_domain_load(m::VmId(uuid("vm", vm)?), percent);
        Ok(())
    }
    /// Count traffic on an interface of simulated server `host`'s dom0: its counters grow by `rx`
    /// and `tx` bytes.
    fn sim_add_traffic(&self, host: &str, interface: &str, rx: u64, tx: u64) -> PyResult<()> {
        self.local("the simulated world")?.sim().add_traffic(host, interface, rx, tx).or_raise()
    }
    /// Change the network configuration of simulated server `host` behind the manager's back:
    /// remove its `kind` (`"bond"`, `"vlan"` or `"bridge"`) named `name` (to show drift).
    fn sim_remove_network_item(&self, host: &str, kind: &str, name: &str) -> PyResult<()> {
        let key = match kind {
            "bond" => NetKey::Bond(name.to_owned()),
            "vlan" => NetKey::Vlan(name.to_owned()),
            "bridge" => NetKey::Bridge(name.to_owned()),
            _ => return Err(to_py(Error::invalid("kind", format!("{kind:?} is not bond, vlan or bridge")))),
        };
        self.local("the simulated world")?.sim().tamper_network(host, NetChange::Remove(key)).or_raise()
    }
    /// Make the next `count` simulated operations `op` fail (on `host`, or on any host).
    #[pyo3(signature = (op, count=1, host=None))]
    fn sim_fail_next(&self, op: &str, count: u32, host: Option<&str>) -> PyResult<()> {
        let op = sim_op(op)?;
        self.local("the simulated world")?.sim().fail_next(op, host, count);
        Ok(())
    }
}

/// An address argument: `None`, `"dhcp"` or `"ADDRESS/PREFIX"`.
fn addressing_arg(field: &str, s: Option<&str>) -> PyResult<m::Addressing> {
    let Some(s) = s else { return Ok(m::Addressing::None) };
    if s == "dhcp" {
        return Ok(m::Addressing::Dhcp);
    }
    let bad = || to_py(Error::invalid(field, format!("{s:?} is not \"ADDRESS/PREFIX\" or \"dhcp\"")));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let address = a.parse().map_err(|_| bad())?;
    let prefix = p.parse().map_err(|_| bad())?;
    Ok(m::Addressing::Static { address, prefix })
}

fn network_member(kind: &str, id: &str) -> PyResult<m::NetworkMember> {
    let id = uuid("member", id)?;
    Ok(match kind {
        "Port" => m::NetworkMember::Port(m::PortId(id)),
        "Bond" => m::NetworkMember::Bond(m::BondPortId(id)),
        "Vlan" => m::NetworkMember::Vlan(m::VlanInterfaceId(id)),
        _ => return Err(to_py(Error::invalid("kind", format!("{kind:?} is not Port, Bond or Vlan")))),
    })
}

/// How one disk of a clone is made: `"Share"`, `"Copy"` or `("Copy", repository id or None)`.
fn disk_clone(slot: u8, how: &Bound<'_, PyAny>) -> PyResult<DiskClone> {
    let (mode, repo) = match how.extract::<String>() {
        Ok(mode) => (mode, None),
        Err(_) => how.extract::<(String, Option<String>)>().map_err(|_| {
            to_py(Error::invalid(
                "disks",
                format!("slot {slot}: not \"Share\", \"Copy\" or (\"Copy\", repository)"),
            ))
        })?,
    };
    match (mode.as_str(), repo) {
        ("Copy", repo) => {
            Ok(DiskClone::Copy { repository: opt_uuid("disks", repo.as_deref())?.map(m::RepositoryId) })
        }
        ("Share", None) => Ok(DiskClone::Share),
        ("Share", Some(_)) => Err(to_py(Error::invalid(
            "disks",
            format!("slot {slot}: a shared disk is not copied into a repository"),
        ))),
        (other, _) => Err(to_py(Error::invalid(
            "disks",
            format!("slot {slot}: {other:?} is not \"Copy\" or \"Share\""),
        ))),
    }
}

fn clone_options(
    pool: Option<&str>,
    repository: Option<&str>,
    networks: Option<Vec<Option<String>>>,
    disks: Option<&Bound<'_, PyMapping>>,
) -> PyResult<CloneOptions> {
    let mut how = Vec::new();
    if let Some(d) = disks {
        for item in d.items()?.iter() {
            let (slot, h): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            let slot: u8 =
                slot.extract().map_err(|_| to_py(Error::invalid("disks", "slots are ints from 0 to 255")))?;
            how.push((slot, disk_clone(slot, &h)?));
        }
    }
    Ok(CloneOptions {
        disks: how,
        pool: opt_uuid("pool", pool)?.map(m::PoolId),
        repository: opt_uuid("repository", repository)?.map(m::RepositoryId),
        networks: networks
            .map(|v| {
                v.iter()
                    .map(|n| n.as_deref().map(|s| uuid("networks", s).map(m::NetworkId)).transpose())
                    .collect::<PyResult<Vec<_>>>()
            })
            .transpose()?,
    })
}

fn sim_op(name: &str) -> PyResult<SimOp> {
    Ok(match name {
        "Connect" => SimOp::Connect,
        "Create" => SimOp::Create,
        "Shutdown" => SimOp::Shutdown,
        "Reboot" => SimOp::Reboot,
        "Destroy" => SimOp::Destroy,
        "Pause" => SimOp::Pause,
        "Suspend" => SimOp::Suspend,
        "Restore" => SimOp::Restore,
        "Migrate" => SimOp::Migrate,
        "Query" => SimOp::Query,
        "Storage" => SimOp::Storage,
        "Network" => SimOp::Network,
        "NetworkChange" => SimOp::NetworkChange,
        other => {
            return Err(Error::invalid("op", format!("{other:?} is not a simulated operation"))).or_raise()
        }
    })
}
