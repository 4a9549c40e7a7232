//! The [`Manager`]: ovm's API. It owns the inventory, the manager database, the job engine, the
//! event feed and the connections to servers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::clock::{Clock, SystemClock};
use crate::driver::{Driver, DriverContext, DriverState, FileStoragePlugin, MigrationOps, ServerConnection};
use crate::job::Journal;
use crate::model::*;
use crate::store::{Batch, Durability, SqliteStore, Store};
use crate::{Error, Result};

mod cluster;
mod events;
mod jobs;
mod loads;
mod policies;
pub use policies::describe_reason;
mod network;
mod pools;
pub mod query;
mod recurring;
pub mod sealing;
mod servers;
mod storage;
mod vms;

pub(crate) use events::MAX_CHANGES_PER_CALL;
pub use events::{LostEvents, Subscription};
pub use jobs::JobHandle;
pub use network::{BondSpec, NetworkApply, NetworkSpec};
pub use pools::PoolSpec;
pub use query::{DiskFilter, ServerFilter, VmFilter, DEFAULT_MTU, MAX_VNICS};
pub use recurring::REFRESH_SERVERS;
pub use servers::{ServerEdit, POWER_ON_TIMEOUT};
pub use storage::{
    iso_path, kernel_paths, repository_path, virtual_disk_path, ArrayManagementSpec, FileServerSpec,
    RebuildReport, RepositorySpec, ServerLogin, StorageArraySpec, GENERIC_ISCSI_PLUGIN,
    LOCAL_FILE_SYSTEM_ROOT,
};
pub use vms::{
    CloneOptions, ConsoleEndpoint, DiskClone, MigrateOptions, StopOptions, VmSpec, CONSOLE_TTL,
    DEFAULT_MIGRATION_LIMIT, MAX_MIGRATION_LIMIT,
};

/// The meta key of the migration limit.
const MIGRATION_LIMIT_KEY: &str = "migration_limit";

/// Current time in milliseconds since the Unix epoch, on the system clock. A manager dates what it
/// does with its own [`Clock`] ([`ManagerBuilder::clock`]).
pub fn now_ms() -> Timestamp {
    SystemClock.now_ms()
}

pub(crate) use crate::sync::lock;

/// Where the manager database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A file.
    File(PathBuf),
    /// A private in-memory database (lost on close).
    Memory,
}

impl DatabaseLocation {
    /// Parse a database URI: `sqlite:///abs/path.db`, `sqlite://rel/path.db`, `sqlite::memory:`,
    /// `:memory:`, or a plain file path.
    pub fn parse(uri: &str) -> Result<Self> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(Error::invalid("database", "empty database location"));
        }
        if uri == ":memory:" || uri == "sqlite::memory:" || uri == "sqlite://:memory:" {
            return Ok(DatabaseLocation::Memory);
        }
        if let Some(rest) = uri.strip_prefix("sqlite://") {
            if rest.is_empty() {
                return Err(Error::invalid("database", "sqlite:// needs a path"));
            }
            return Ok(DatabaseLocation::File(PathBuf::from(rest)));
        }
        if uri.contains("://") {
            return Err(Error::invalid("database", format!("unsupported database URI {uri:?}")));
        }
        Ok(DatabaseLocation::File(PathBuf::from(uri)))
    }
}

/// Builds a [`Manager`]: the database, and the drivers that reach servers.
///
/// A builder from [`ManagerBuilder::new`] has no drivers: register each with
/// [`ManagerBuilder::driver`]. [`Manager::builder`] starts from the default set instead (see
/// [`crate::backends`]).
#[derive(Debug)]
pub struct ManagerBuilder {
    location: DatabaseLocation,
    durability: Durability,
    drivers: Vec<Arc<dyn Driver>>,
    change_buffer: usize,
    worker_threads: usize,
    recurring: bool,
    clock: Arc<dyn Clock>,
    store: Option<Box<dyn Store>>,
    sealing: Option<Arc<sealing::SealingKey>>,
}

impl ManagerBuilder {
    /// A builder with an in-memory database and no drivers.
    pub fn new() -> ManagerBuilder {
        ManagerBuilder {
            location: DatabaseLocation::Memory,
            durability: Durability::Normal,
            drivers: Vec::new(),
            change_buffer: 4096,
            worker_threads: 2,
            recurring: true,
            clock: Arc::new(SystemClock),
            store: None,
            sealing: None,
        }
    }

    /// Keep the drivers' secrets (the manager's private key for its agents) encrypted at rest
    /// with `key` (see [`sealing`]); secrets stored in the clear are encrypted when the manager
    /// opens. A manager whose secrets are encrypted does not open without its key.
    pub fn sealing_key(mut self, key: sealing::SealingKey) -> Self {
        self.sealing = Some(Arc::new(key));
        self
    }

    /// Use the database at `location`.
    pub fn database(mut self, location: DatabaseLocation) -> Self {
        self.location = location;
        self
    }
    /// Keep the manager's data in `store` instead of a database at a location (for example a
    /// [`crate::store::MemoryStore`], which tests share with the manager to see what it committed).
    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }
    /// Use the database at `uri` (see [`DatabaseLocation::parse`]).
    pub fn database_uri(mut self, uri: &str) -> Result<Self> {
        self.location = DatabaseLocation::parse(uri)?;
        Ok(self)
    }
    /// Set the commit durability (default [`Durability::Normal`]).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    /// Register a driver. A server's address goes to the first registered driver that handles it.
    pub fn driver(mut self, d: Arc<dyn Driver>) -> Self {
        self.drivers.push(d);
        self
    }
    /// Register a driver ahead of the others, replacing any registered driver of the same name.
    pub fn replace_driver(mut self, d: Arc<dyn Driver>) -> Self {
        self.drivers.retain(|x| x.name() != d.name());
        self.drivers.insert(0, d);
        self
    }
    /// The drivers registered so far, in order.
    pub fn drivers(&self) -> &[Arc<dyn Driver>] {
        &self.drivers
    }
    /// How many changes a subscriber may fall behind before it gets [`Error::EventsLost`] (default 4096).
    pub fn change_buffer(mut self, n: usize) -> Self {
        self.change_buffer = n.max(1);
        self
    }
    /// Run recurring system jobs (server refresh) in the background (default true).
    pub fn recurring_jobs(mut self, on: bool) -> Self {
        self.recurring = on;
        self
    }
    /// Date jobs, events and changes with this clock (default: the system clock). Policies and the
    /// simulator run on a [`crate::clock::SimClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Open the manager.
    pub fn open(self) -> Result<Manager> {
        Manager::open_with(self)
    }
}

pub(crate) struct State {
    pub(crate) inv: Inventory,
    pub(crate) locks: HashMap<uuid::Uuid, JobId>,
    pub(crate) live: HashMap<JobId, Arc<jobs::JobCell>>,
    pub(crate) conns: HashMap<ServerId, Arc<dyn ServerConnection>>,
    /// What was last reported of each server's network drift and missing ports (an event is
    /// raised when it changes).
    pub(crate) network_reported: HashMap<ServerId, Vec<String>>,
    /// Domains seen shut down and not yet gone: by VM, the domid and why (a restart action may
    /// follow, which the manager then follows to the new domain).
    pub(crate) shutdowns: HashMap<VmId, (u32, crate::driver::ShutdownReason)>,
    /// Servers whose agent connection dropped and that a background task is reconnecting.
    pub(crate) reconnecting: std::collections::HashSet<ServerId>,
    pub(crate) blocking_events: HashMap<uuid::Uuid, Vec<(EventId, Severity)>>,
    pub(crate) mac_range: MacRange,
}

/// Writes waiting for the next group commit, in inventory order.
#[derive(Default)]
pub(crate) struct CommitQueue {
    pending: Vec<(u64, Batch)>,
    next: u64,
    durable: u64,
    failed: Option<Error>,
}

pub(crate) struct Inner {
    pub(crate) id: String,
    pub(crate) state: Mutex<State>,
    pub(crate) db: Mutex<Box<dyn Store>>,
    pub(crate) queue: Mutex<CommitQueue>,
    pub(crate) changes: broadcast::Sender<Change>,
    pub(crate) drivers: Vec<Arc<dyn Driver>>,
    pub(crate) runtime: Mutex<Option<tokio::runtime::Runtime>>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) closed: AtomicBool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) recurring: Mutex<recurring::Schedule>,
    pub(crate) jobs_idle: std::sync::Condvar,
    /// The configuration files written in repositories, by object.
    pub(crate) config_files: Mutex<storage::config_files::Known>,
    /// How many migrations run at once on each server, and those waiting.
    pub(crate) migration_slots: vms::slots::MigrationSlots,
    /// Server load histories and how they are sampled.
    pub(crate) loads: Mutex<loads::Loads>,
    pub(crate) policy: Mutex<policies::PolicyMemory>,
    /// The out-of-band power controllers registered, by name.
    pub(crate) power_controllers: Mutex<Vec<Arc<dyn crate::driver::PowerController>>>,
    /// The key the drivers' secrets are encrypted with at rest, if given.
    pub(crate) sealing: Option<Arc<sealing::SealingKey>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = lock(&self.runtime).take() {
            rt.shutdown_background();
        }
    }
}

/// The ovm manager. Cheap to clone: clones share the same manager. Thread-safe.
///
/// ```
/// use ovm_core::{Manager, model::*};
/// # fn main() -> ovm_core::Result<()> {
/// let mgr = Manager::open_in_memory()?;
/// // Discover a simulated server (the `sim` driver; a real server is discovered by address).
/// let job = mgr.discover_server("sim://host1?cpus=8&memory_mib=16384", ovm_core::driver::sim::DEFAULT_PASSWORD)?;
/// let server_ref = job.wait(None)?.result.expect("the new server");
/// let server = mgr.server(server_ref.id)?;
/// assert_eq!(server.hardware.cpus, 8);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Manager {
    pub(crate) inner: Arc<Inner>,
}

impl Default for ManagerBuilder {
    fn default() -> Self {
        ManagerBuilder::new()
    }
}

impl Manager {
    /// Open (or create) the manager database file at `path`, with the default drivers. A database
    /// has one manager: if another live manager holds it (in this process or another), this fails
    /// at once with [`Error::DatabaseLocked`], which names the holder's process id. The lock is the
    /// operating system's, so a crashed holder never leaves the file locked.
    pub fn open(path: impl AsRef<Path>) -> Result<Manager> {
        Self::builder().database(DatabaseLocation::File(path.as_ref().to_path_buf())).open()
    }

    /// Open a manager with a private in-memory database, with the default drivers.
    pub fn open_in_memory() -> Result<Manager> {
        Self::builder().open()
    }

    fn open_with(b: ManagerBuilder) -> Result<Manager> {
        let mut db: Box<dyn Store> = match (b.store, &b.location) {
            (Some(store), _) => store,
            (None, DatabaseLocation::File(p)) => Box::new(SqliteStore::open(p, b.durability)?),
            (None, DatabaseLocation::Memory) => Box::new(SqliteStore::open_in_memory()?),
        };
        let mut inv = Inventory::new();
        for o in db.load_objects()? {
            inv.load(o);
        }
        let config_files = storage::config_files::seed(&inv);
        let mut blocking_events: HashMap<uuid::Uuid, Vec<(EventId, Severity)>> = HashMap::new();
        for e in db.events(&crate::store::EventFilter {
            min_severity: Some(Severity::Error),
            acknowledged: Some(false),
            ..Default::default()
        })? {
            blocking_events.entry(e.object.id).or_default().push((e.id, e.severity));
        }
        let mut setup = Batch::default();
        let id = match db.meta("manager_id")? {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                setup.meta.push(("manager_id".into(), id.clone()));
                id
            }
        };
        let mac_range = match db.meta("mac_range")? {
            Some(s) => serde_json::from_str(&s)?,
            None => MacRange::default(),
        };
        let migration_limit = match db.meta(MIGRATION_LIMIT_KEY)? {
            Some(s) => serde_json::from_str(&s)?,
            None => vms::DEFAULT_MIGRATION_LIMIT,
        };
        if !setup.is_empty() {
            db.commit(&setup, b.clock.now_ms())?;
        }
        let recurring = recurring::Schedule::load(&*db)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(b.worker_threads)
            // Jobs run on blocking threads; a bounded pool keeps a burst of jobs from becoming a burst of
            // threads. Parents waiting on children hold a thread, so the bound is generous.
            .max_blocking_threads(64)
            .thread_name("ovm-manager")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal { message: format!("cannot start the manager runtime: {e}") })?;
        let drivers = b.drivers;
        let inner = Arc::new(Inner {
            id,
            db: Mutex::new(db),
            queue: Mutex::new(CommitQueue::default()),
            state: Mutex::new(State {
                inv,
                locks: HashMap::new(),
                live: HashMap::new(),
                conns: HashMap::new(),
                network_reported: HashMap::new(),
                shutdowns: HashMap::new(),
                reconnecting: Default::default(),
                blocking_events,
                mac_range,
            }),
            changes: broadcast::channel(b.change_buffer).0,
            drivers,
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            closed: AtomicBool::new(false),
            clock: b.clock.clone(),
            recurring: Mutex::new(recurring),
            jobs_idle: std::sync::Condvar::new(),
            config_files: Mutex::new(config_files),
            migration_slots: vms::slots::MigrationSlots::new(migration_limit),
            loads: Mutex::new(loads::Loads::default()),
            policy: Mutex::new(policies::PolicyMemory::default()),
            power_controllers: Mutex::new(Vec::new()),
            sealing: b.sealing.clone(),
        });
        for d in &inner.drivers {
            let state = Arc::new(StoredDriverState { inner: Arc::downgrade(&inner), namespace: d.name() });
            d.attach(DriverContext { manager_id: inner.id.clone(), state })?;
        }
        let mgr = Manager { inner };
        mgr.recover_jobs()?;
        mgr.reconnect_servers();
        cluster::start_watch(&mgr);
        if b.recurring {
            recurring::start(&mgr);
        }
        Ok(mgr)
    }

    /// This manager's identity (used as the owner id on servers).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Fingerprint of the certificate this manager presents to agents (what they pin as owner), from
    /// the first registered driver that reaches servers through agents.
    pub fn certificate_fingerprint(&self) -> Result<String> {
        match self.inner.drivers.iter().find_map(|d| d.remote_agents()) {
            Some(a) => a.certificate_fingerprint(),
            None => {
                Err(Error::Unsupported { what: "no registered driver reaches servers through agents".into() })
            }
        }
    }

    /// Fingerprint of the agent certificate pinned for `server` (servers reached through an agent).
    pub fn agent_fingerprint(&self, server: ServerId) -> Result<Option<String>> {
        let s = self.server(server)?;
        let d = self.driver_for(&s.address)?;
        Ok(d.remote_agents().and_then(|a| a.pinned_fingerprint(&s.address)))
    }

    /// The registered drivers, in order.
    pub fn drivers(&self) -> &[Arc<dyn Driver>] {
        &self.inner.drivers
    }

    /// Close the manager: refuse new jobs, wait up to `timeout` for running ones, stop background work,
    /// and give up the database's lock (another manager may then open the file; this one keeps
    /// answering reads from memory, and every write fails with [`Error::Closed`]).
    pub fn close(&self, timeout: Duration) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + timeout;
        let mut st = lock(&self.inner.state);
        while !st.live.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: "running jobs to finish".into(),
                    millis: timeout.as_millis() as u64,
                });
            }
            st = self
                .inner
                .jobs_idle
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        drop(st);
        // What background work queued reaches the file; later writes fail with `Closed`. Then the
        // database's lock is given up, so another manager may open it.
        let last = lock(&self.inner.queue).next;
        let _ = self.flush(last);
        lock(&self.inner.queue).failed.get_or_insert(Error::Closed);
        self.db().release_lock();
        Ok(())
    }

    /// The time on this manager's clock, ms since the Unix epoch.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now_ms()
    }

    /// Whether [`Manager::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Read the inventory under the manager's lock.
    pub fn read<T>(&self, f: impl FnOnce(&Inventory) -> T) -> T {
        f(&self.state().inv)
    }

    /// A copy of any object.
    pub fn object(&self, r: ObjectRef) -> Result<Object> {
        self.state().inv.get_object(r).ok_or_else(|| Error::not_found(r.kind, r.id))
    }

    /// Look up an object of type `T` by id.
    pub fn get<T: InInventory>(&self, id: impl Into<uuid::Uuid>) -> Result<Arc<T>> {
        self.state().inv.get::<T>(id).cloned()
    }

    /// Look up an object of type `T` by name.
    pub fn get_by_name<T: InInventory>(&self, name: &str) -> Result<Arc<T>> {
        self.state().inv.get_by_name::<T>(name).cloned()
    }

    /// All objects of type `T` matching `filter`, in name order.
    pub fn list<T: InInventory>(&self, filter: impl Fn(&T) -> bool) -> Vec<Arc<T>> {
        T::table(&self.state().inv).iter().filter(|o| filter(o)).cloned().collect()
    }

    /// All objects of type `T`, in name order.
    pub fn list_all<T: InInventory>(&self) -> Vec<Arc<T>> {
        T::table(&self.state().inv).iter().cloned().collect()
    }

    /// A server by id.
    pub fn server(&self, id: impl Into<uuid::Uuid>) -> Result<Arc<Server>> {
        self.get::<Server>(id)
    }
    /// A pool by id.
    pub fn pool(&self, id: impl Into<uuid::Uuid>) -> Result<Arc<ServerPool>> {
        self.get::<ServerPool>(id)
    }
    /// A VM by id.
    pub fn vm(&self, id: impl Into<uuid::Uuid>) -> Result<Arc<Vm>> {
        self.get::<Vm>(id)
    }
    /// A VM by name.
    pub fn vm_by_name(&self, name: &str) -> Result<Arc<Vm>> {
        self.get_by_name::<Vm>(name)
    }
    /// A repository by id.
    pub fn repository(&self, id: impl Into<uuid::Uuid>) -> Result<Arc<Repository>> {
        self.get::<Repository>(id)
    }
    /// A network by id.
    pub fn network(&self, id: impl Into<uuid::Uuid>) -> Result<Arc<Network>> {
        self.get::<Network>(id)
    }
    /// All servers.
    pub fn servers(&self) -> Vec<Arc<Server>> {
        self.list_all::<Server>()
    }
    /// All pools.
    pub fn pools(&self) -> Vec<Arc<ServerPool>> {
        self.list_all::<ServerPool>()
    }
    /// All VMs.
    pub fn vms(&self) -> Vec<Arc<Vm>> {
        self.list_all::<Vm>()
    }
    /// All repositories.
    pub fn repositories(&self) -> Vec<Arc<Repository>> {
        self.list_all::<Repository>()
    }
    /// All networks.
    pub fn networks(&self) -> Vec<Arc<Network>> {
        self.list_all::<Network>()
    }

    /// The VNIC MAC range.
    pub fn mac_range(&self) -> MacRange {
        self.state().mac_range
    }

    /// Set the VNIC MAC range. Returns a job.
    pub fn set_mac_range(&self, range: MacRange) -> Result<JobHandle> {
        MacRange::new(&format_mac(range.first), &format_mac(range.last))?;
        self.submit(jobs::JobSpec::new("SetMacRange", "Set the VNIC MAC range", vec![]).step(
            "set range",
            move |ctx| {
                ctx.tx(|tx| {
                    tx.meta("mac_range", serde_json::to_string(&range).map_err(Error::from)?);
                    Ok(())
                })?;
                lock(&ctx.mgr.inner.state).mac_range = range;
                Ok(())
            },
        ))
    }

    /// How many migrations may run at once on one server (a migration counts on its source and on
    /// its destination); more wait for a slot, first come, first served. 2 unless set.
    pub fn migration_limit(&self) -> u32 {
        self.inner.migration_slots.limit()
    }

    /// Set how many migrations may run at once on one server (1 to
    /// [`MAX_MIGRATION_LIMIT`]). Returns a job; migrations waiting for a slot see the new limit at
    /// once.
    pub fn set_migration_limit(&self, limit: u32) -> Result<JobHandle> {
        if !(1..=MAX_MIGRATION_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "migration_limit",
                format!("{limit} is not between 1 and {MAX_MIGRATION_LIMIT}"),
            ));
        }
        self.submit(
            jobs::JobSpec::new("SetMigrationLimit", &format!("Set the migration limit to {limit}"), vec![])
                .step("set limit", move |ctx| {
                    ctx.tx(|tx| {
                        tx.meta(MIGRATION_LIMIT_KEY, limit.to_string());
                        Ok(())
                    })?;
                    ctx.mgr.inner.migration_slots.set_limit(limit);
                    Ok(())
                }),
        )
    }

    /// Create any inventory object after checking every rule. Returns a job whose result is the object.
    /// A VM must be created stopped, without a domain (as [`Manager::create_vm`] creates it). What
    /// the storage says is refused with [`ErrorKind::InvalidArgument`](crate::ErrorKind): file
    /// servers and file systems ([`Manager::register_file_server`]), storage arrays and physical
    /// disks ([`Manager::register_storage_array`], [`Manager::create_lun`]) and access groups
    /// ([`Manager::create_access_group`]).
    pub fn create_object(&self, obj: Object) -> Result<JobHandle> {
        obj.validate()?;
        check_generic_create(&obj)?;
        let r = obj.object_ref();
        {
            let st = self.state();
            if st.inv.contains(r) {
                return Err(Error::conflict(format!("{r} already exists")));
            }
            st.inv.check_put(&obj)?;
        }
        if network::is_network_kind(r.kind) {
            return self.network_object_change(Some(obj), None);
        }
        let summary = format!("Create {} {}", r.kind, obj.name());
        self.submit(jobs::JobSpec::new(&format!("Create{}", r.kind), &summary, vec![r]).step(
            "create",
            move |ctx| {
                ctx.tx(|tx| tx.put(obj))?;
                ctx.set_result(r);
                Ok(())
            },
        ))
    }

    /// Create many inventory objects in one job and one transaction (an import). Every rule is
    /// checked; if any object is refused, none is created.
    pub fn create_objects(&self, objs: Vec<Object>) -> Result<JobHandle> {
        if objs.is_empty() {
            return Err(Error::invalid("objects", "nothing to create"));
        }
        {
            let st = self.state();
            let mut ids = std::collections::HashSet::new();
            for o in &objs {
                o.validate()?;
                check_generic_create(o)?;
                if st.inv.contains(o.object_ref()) || !ids.insert(o.uuid()) {
                    return Err(Error::conflict(format!("{} already exists", o.object_ref())));
                }
            }
        }
        let n = objs.len();
        self.submit(jobs::JobSpec::new("CreateObjects", &format!("Create {n} objects"), vec![]).step(
            "create",
            move |ctx| {
                ctx.tx(|tx| {
                    for o in objs {
                        tx.put(o)?;
                    }
                    Ok(())
                })
            },
        ))
    }

    /// Replace an inventory object with an edited version after checking every rule, the typed
    /// operations' included: a VM goes through [`Manager::edit_vm`]; fields the manager owns (a VM's
    /// power state, server and domain id, a server's state, pool, ownership and hardware, a pool's
    /// members and master, a repository's presentations and mounts, everything of a file server, file
    /// system, storage array, physical disk or access group but its name and description — an access
    /// group's name is the array's too) are refused with
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind) — change them with their operations.
    pub fn update_object(&self, obj: Object) -> Result<JobHandle> {
        obj.validate()?;
        let r = obj.object_ref();
        if let Object::Vm(vm) = obj {
            return self.edit_vm(vm.id, move |v| *v = vm);
        }
        {
            let st = self.state();
            let old = st.inv.get_object(r).ok_or_else(|| Error::not_found(r.kind, r.id))?;
            st.inv.check_put(&obj)?;
            check_generic_edit(&old, &obj)?;
        }
        if network::is_network_kind(r.kind) {
            return self.network_object_change(Some(obj), None);
        }
        let summary = format!("Edit {} {}", r.kind, obj.name());
        self.submit(jobs::JobSpec::new(&format!("Edit{}", r.kind), &summary, vec![r]).step(
            "edit",
            move |ctx| {
                ctx.tx(|tx| tx.put(obj))?;
                ctx.set_result(r);
                Ok(())
            },
        ))
    }

    /// Delete an inventory object nothing refers to. A VM and a virtual disk are deleted as
    /// [`Manager::delete_vm`] and [`Manager::delete_virtual_disk`] do (a disk's file goes with it);
    /// a LUN of a vendor-style array and an access group are deleted on the array too, as
    /// [`Manager::delete_lun`] and [`Manager::delete_access_group`] do. A file server, a file
    /// system, a generic array or its LUN is only forgotten (the storage keeps it; a refresh or a
    /// registration finds it again); an array is forgotten only once no server is logged in to it.
    pub fn delete_object(&self, r: ObjectRef) -> Result<JobHandle> {
        let obj = self.object(r)?;
        let name = obj.name().to_owned();
        match &obj {
            Object::Vm(_) => return self.delete_vm(VmId(r.id)),
            Object::VirtualDisk(_) => return self.delete_virtual_disk(VirtualDiskId(r.id)),
            Object::Template(_) => return self.delete_template(TemplateId(r.id)),
            Object::AccessGroup(g) => return self.delete_access_group(g.id),
            Object::PhysicalDisk(d)
                if d.array
                    .is_some_and(|a| self.get::<StorageArray>(a).is_ok_and(|a| a.can_create_luns())) =>
            {
                return self.delete_lun(d.id);
            }
            Object::StorageArray(a) if !a.presented_to.is_empty() => {
                return Err(Error::conflict(format!(
                    "servers are logged in to {}: unpresent_storage_array first",
                    a.name
                )));
            }
            _ => {}
        }
        if r.kind == ObjectKind::Server {
            let s = self.server(r.id)?;
            if s.pool.is_some() {
                return Err(Error::conflict("remove the server from its pool first"));
            }
        }
        self.read(|inv| inv.check_remove(r))?;
        if network::is_network_kind(r.kind) && r.kind != ObjectKind::Port {
            return self.network_object_change(None, Some(r));
        }
        self.submit(
            jobs::JobSpec::new(&format!("Delete{}", r.kind), &format!("Delete {} {name}", r.kind), vec![r])
                .step("delete", move |ctx| {
                    ctx.tx(|tx| tx.remove(r).map(|_| ()))?;
                    if r.kind == ObjectKind::Server {
                        lock(&ctx.mgr.inner.state).conns.remove(&ServerId(r.id));
                    }
                    Ok(())
                }),
        )
    }

    /// The connection to an owned, reachable server.
    pub(crate) fn hypervisor(&self, server: ServerId) -> Result<Arc<dyn ServerConnection>> {
        let st = self.state();
        if let Some(h) = st.conns.get(&server) {
            return Ok(h.clone());
        }
        let s = st.inv.get::<Server>(server)?;
        Err(Error::state(s.object_ref(), "Running and owned by this manager", s.power_state))
    }

    pub(crate) fn driver_for(&self, address: &str) -> Result<Arc<dyn Driver>> {
        self.inner
            .drivers
            .iter()
            .find(|d| d.handles(address))
            .cloned()
            .ok_or_else(|| Error::Unsupported { what: format!("no driver handles the address {address:?}") })
    }

    /// The manager database (for reads and maintenance; writes go through [`Manager::enqueue`]).
    pub(crate) fn db(&self) -> MutexGuard<'_, Box<dyn Store>> {
        lock(&self.inner.db)
    }

    /// Queue a batch for the next group commit. Call it while holding the state lock, so the database
    /// receives writes in the order the inventory took them; then release the lock and
    /// [`Manager::flush`] the returned sequence number before reporting success.
    pub(crate) fn enqueue(&self, batch: Batch) -> Result<u64> {
        let mut q = lock(&self.inner.queue);
        if let Some(e) = &q.failed {
            return Err(e.clone());
        }
        q.next += 1;
        let seq = q.next;
        q.pending.push((seq, batch));
        Ok(seq)
    }

    /// Wait until every batch queued so far is committed (a job submitted before the call is then
    /// in the database, so its id outlives a crash of this process).
    pub(crate) fn flush_queued(&self) -> Result<()> {
        let seq = lock(&self.inner.queue).next;
        self.flush(seq)
    }

    /// Wait until the batch `seq` is committed. Group commit: the first waiter to get the database
    /// commits every queued batch in one transaction and publishes their changes in order.
    pub(crate) fn flush(&self, seq: u64) -> Result<()> {
        loop {
            {
                let q = lock(&self.inner.queue);
                if q.durable >= seq {
                    return match &q.failed {
                        Some(e) => Err(e.clone()),
                        None => Ok(()),
                    };
                }
            }
            let mut db = lock(&self.inner.db);
            let batches = std::mem::take(&mut lock(&self.inner.queue).pending);
            let Some(last) = batches.last().map(|b| b.0) else { continue };
            let at = self.now();
            let refs: Vec<&Batch> = batches.iter().map(|(_, b)| b).collect();
            let result = db.commit_many(&refs, at);
            let mut q = lock(&self.inner.queue);
            match result {
                Ok(tokens) => {
                    for ((_, b), toks) in batches.into_iter().zip(tokens) {
                        for ((object, op), token) in b.changes.into_iter().zip(toks) {
                            let _ = self.inner.changes.send(Change { token, object, op, at });
                        }
                    }
                }
                Err(e) => {
                    // The file refused a write (disk full, I/O error): the inventory in memory may be
                    // ahead of it, so the manager stops accepting writes. Reopening reloads the
                    // last committed state.
                    q.failed = Some(match e {
                        Error::Closed => Error::Closed,
                        e => Error::Database {
                            message: format!(
                                "a write to the manager database failed ({e}); reopen the manager"
                            ),
                        },
                    });
                }
            }
            q.durable = last;
            drop(q);
            drop(db);
        }
    }

    /// Queue `batch` under the state lock `st`, release it, and wait for the commit.
    pub(crate) fn write(&self, st: MutexGuard<'_, State>, batch: Batch) -> Result<()> {
        let seq = self.enqueue(batch)?;
        drop(st);
        self.flush(seq)
    }

    /// Reconnect to every owned server (at open). Unreachable servers are marked so, with a Warning event.
    fn reconnect_servers(&self) {
        let servers: Vec<Arc<Server>> = self.servers();
        for s in servers.into_iter().filter(|s| s.ownership == Ownership::Owned) {
            let _ = self.refresh_one(s.id);
        }
        self.run_pending_undos();
    }
}

/// A driver's persistent state in the manager database: key `K` of driver `NAME` is the meta key
/// `NAME.K` (so the agent driver's certificate is `agent.identity` and its pins `agent.pin:ADDRESS`).
/// The meta table has no deletion: an empty value is a deleted key.
struct StoredDriverState {
    inner: std::sync::Weak<Inner>,
    namespace: &'static str,
}

impl std::fmt::Debug for StoredDriverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredDriverState").field("namespace", &self.namespace).finish()
    }
}

impl StoredDriverState {
    fn manager(&self) -> Result<Manager> {
        self.inner
            .upgrade()
            .map(|inner| Manager { inner })
            .ok_or_else(|| Error::Internal { message: "the manager is closed".into() })
    }

    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.namespace)
    }
}

impl DriverState for StoredDriverState {
    fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.manager()?.db().meta(&self.key(key))?.filter(|v| !v.is_empty()))
    }

    fn put(&self, key: &str, value: &str) -> Result<()> {
        let mgr = self.manager()?;
        let mut b = Batch::default();
        b.meta.push((self.key(key), value.to_owned()));
        let st = mgr.state();
        mgr.write(st, b)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.put(key, "")
    }

    fn get_secret(&self, key: &str) -> Result<Option<String>> {
        let Some(value) = self.get(key)? else { return Ok(None) };
        let name = self.key(key);
        match (&self.manager()?.inner.sealing, sealing::is_sealed(&value)) {
            (Some(k), true) => k.open(&name, &value).map(Some),
            (None, true) => Err(Error::PermissionDenied {
                reason: format!("{name} is encrypted at rest: open the manager with its key file"),
            }),
            (Some(_), false) => {
                // Stored in the clear before a key was given: encrypt it now.
                self.put_secret(key, &value)?;
                log::info!("{name} is now encrypted at rest");
                Ok(Some(value))
            }
            (None, false) => Ok(Some(value)),
        }
    }

    fn put_secret(&self, key: &str, value: &str) -> Result<()> {
        match &self.manager()?.inner.sealing {
            Some(k) => self.put(key, &k.seal(&self.key(key), value)?),
            None => self.put(key, value),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let full = self.key(prefix);
        let skip = self.namespace.len() + 1;
        let rows = self.manager()?.db().meta_with_prefix(&full)?;
        Ok(rows.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k[skip..].to_owned(), v)).collect())
    }
}

/// The file storage of a server, or `Unsupported`.
pub(crate) fn file_storage(hv: &dyn ServerConnection) -> Result<&dyn FileStoragePlugin> {
    hv.file_storage().ok_or_else(|| Error::Unsupported { what: "file storage on this server".into() })
}

/// The migration capability of a server, or `Unsupported`.
pub(crate) fn migration(hv: &dyn ServerConnection) -> Result<&dyn MigrationOps> {
    hv.migration().ok_or_else(|| Error::Unsupported { what: "migration to or from this server".into() })
}

/// Journal type re-exported for the job engine.
pub(crate) type JobJournal = Journal;

/// The rules of the typed create calls that the generic one must keep too.
fn check_generic_create(obj: &Object) -> Result<()> {
    // What the storage says is discovered or made on it, never typed by hand.
    let from_storage = match obj {
        Object::FileServer(_) => Some(
            "a file server and its file systems are discovered from the storage: register_file_server",
        ),
        Object::FileSystem(_) => Some(
            "a file system is discovered from its file server: register_file_server or refresh_file_server",
        ),
        Object::StorageArray(_) => {
            Some("a storage array and its LUNs are discovered from the storage: register_storage_array")
        }
        Object::PhysicalDisk(_) => Some(
            "a physical disk is discovered from its array (register_storage_array) or made on it (create_lun, \
             clone_lun)",
        ),
        Object::AccessGroup(_) => Some("an access group is made on its array: create_access_group"),
        _ => None,
    };
    if let Some(why) = from_storage {
        return Err(Error::invalid(obj.kind().name(), why));
    }
    if let Object::Vm(v) = obj {
        if v.power_state != PowerState::Stopped || v.domid.is_some() {
            return Err(Error::invalid(
                "vm",
                "a VM is created stopped: its power state and domid are set by operations",
            ));
        }
    }
    Ok(())
}

/// Refuse generic edits of the fields the manager owns (see [`Manager::update_object`]).
fn check_generic_edit(old: &Object, new: &Object) -> Result<()> {
    let owned_changed = match (old, new) {
        (Object::Server(a), Object::Server(b)) => {
            let mut probe = b.clone();
            probe.name.clone_from(&a.name);
            probe.description.clone_from(&a.description);
            probe.roles.clone_from(&a.roles);
            probe.wol_mac.clone_from(&a.wol_mac);
            probe.out_of_band.clone_from(&a.out_of_band);
            (probe != *a).then_some(
                "only a server's name, description, roles, wake-on-LAN MAC and out-of-band controller \
                 change by editing; its state, pool, ownership and hardware change through operations",
            )
        }
        (Object::ServerPool(a), Object::ServerPool(b)) => (a.servers != b.servers || a.master != b.master)
            .then_some("a pool's servers and master change through add/remove server operations"),
        (Object::Repository(a), Object::Repository(b)) => {
            (a.presented_to != b.presented_to || a.mounts != b.mounts || a.initialized != b.initialized)
                .then_some(
                    "a repository's presentations, mounts and initialization change through \
                     present_repository/unpresent_repository",
                )
        }
        (Object::FileServer(a), Object::FileServer(b)) => {
            let mut probe = b.clone();
            renamed(&mut probe.name, &mut probe.description, a.name.as_str(), a.description.as_str());
            (probe != *a).then_some(
                "only a file server's name and description change by editing; the rest is discovered \
                 from the storage (register_file_server, refresh_file_server)",
            )
        }
        (Object::FileSystem(a), Object::FileSystem(b)) => {
            let mut probe = b.clone();
            renamed(&mut probe.name, &mut probe.description, a.name.as_str(), a.description.as_str());
            (probe != *a).then_some(
                "only a file system's name and description change by editing; its server, path and sizes \
                 are discovered from the storage (refresh_file_server)",
            )
        }
        (Object::StorageArray(a), Object::StorageArray(b)) => {
            let mut probe = b.clone();
            renamed(&mut probe.name, &mut probe.description, a.name.as_str(), a.description.as_str());
            (probe != *a).then_some(
                "only a storage array's name and description change by editing; the rest is discovered \
                 from the storage (register_storage_array) or changes through present_storage_array_to \
                 and unpresent_storage_array",
            )
        }
        (Object::PhysicalDisk(a), Object::PhysicalDisk(b)) => {
            let mut probe = b.clone();
            renamed(&mut probe.name, &mut probe.description, a.name.as_str(), a.description.as_str());
            (probe != *a).then_some(
                "only a physical disk's name and description change by editing; its array, size, \
                 identifier and target come from the storage (resize_lun changes a LUN's size)",
            )
        }
        (Object::AccessGroup(a), Object::AccessGroup(b)) => {
            // The array knows the group by its name: it does not change by editing.
            let mut probe = b.clone();
            probe.description.clone_from(&a.description);
            (probe != *a).then_some(
                "only an access group's description changes by editing; its name, array, servers and \
                 LUNs are the array's (create_access_group, present_lun, unpresent_lun)",
            )
        }
        _ => None,
    };
    match owned_changed {
        Some(why) => Err(Error::invalid(old.kind().name(), why)),
        None => Ok(()),
    }
}

/// Put back the old name and description in a probe of an edit, to compare the rest.
fn renamed(name: &mut String, description: &mut String, old_name: &str, old_description: &str) {
    old_name.clone_into(name);
    old_description.clone_into(description);
}

impl Manager {
    /// Undo an effect on a server, in the subsystem that made it. Idempotent: an effect that is
    /// already gone is not an error. (Here, at the top of the manager, so that the job engine names
    /// no subsystem.)
    pub(crate) fn undo_on_server(&self, u: &crate::job::Undo) -> Result<()> {
        use crate::job::Undo;
        match u {
            Undo::RevertObject { .. } => Ok(()),
            Undo::Domain(d) => vms::undo_domain(self, d),
            Undo::Storage(s) => storage::undo_storage(self, s),
            Undo::Server(s) => servers::undo_server(self, s),
        }
    }
}
