//! The manager's API as one table: the [`ManagerApi`] trait, the [`Call`] that carries a call over a
//! connection, and the service's [`dispatch`].
//!
//! Every remotable method is one row of [`remote_api!`]: its name, its arguments (owned, serde-typed),
//! its result, and how a local [`Manager`] answers it. The macro generates the trait's method, the
//! `Call` variant (`{"method": "start_vm", "args": {"vm": "…"}}` on the wire), the service's dispatch
//! and the client's stub, so adding a method to the remote API is adding a row.
//!
//! Methods that start a job return the job's record as it was when submitted ([`Job::id`] is the
//! handle: [`ManagerApi::wait_job`], [`ManagerApi::abort_job`]). Specs and options (such as
//! [`NetworkSpec`], [`CloneOptions`], [`ServerEdit`]) cross as JSON and refuse unknown fields.
//!
//! What stays local to [`Manager`], and why:
//! - methods that take a closure, such as [`Manager::edit_pool`], [`Manager::edit_vm`] and
//!   [`Manager::read`]: a closure cannot cross a connection (their typed equivalent is
//!   [`ManagerApi::update_object`], or a specific row such as [`ManagerApi::map_disk`]);
//! - registering in-process plug-ins and controllers (storage plug-ins, power controllers): they
//!   are objects of the calling process, which the service cannot call back;
//! - methods that hand out driver objects or job handles bound to this process (the job's id is
//!   the handle across a connection: [`ManagerApi::wait_job`], [`ManagerApi::abort_job`]);
//! - [`NetworkSpec::vm_network`] is a constructor of a spec, not an operation: build the spec
//!   on the client and pass it to [`ManagerApi::create_network`].

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::auth::{Account, Accounts, AuditEntry, AuditFilter, Role};
use crate::driver::{ClusterStatus, NetworkConfig};
use crate::manager::{
    BondSpec, CloneOptions, DiskFilter, FileServerSpec, Manager, MigrateOptions, NetworkApply, NetworkSpec,
    PoolSpec, RebuildReport, RepositorySpec, ServerEdit, ServerFilter, ServerLogin, StopOptions,
    StorageArraySpec, VmFilter, VmSpec,
};
use crate::model::*;
use crate::policy::balance::Plan;
use crate::store::{EventFilter, JobFilter};
use crate::{Error, JobHandle, Result};

/// The longest single wait the service performs for one [`ManagerApi::wait_job`] call; a longer
/// wait is several calls ([`ManagerApi::wait_job_for`] loops).
pub const MAX_SERVICE_WAIT: Duration = Duration::from_secs(30);

/// The record of a job just submitted, once it is in the database: a client that knows a job only
/// by its id (over a connection, from C or Python) can ask about it even after the manager's
/// process dies (the job is then rolled back or finalized at the next open).
fn submitted(h: Result<JobHandle>) -> Result<Job> {
    let h = h?;
    h.mgr.flush_queued()?;
    Ok(h.info())
}

/// The object of `kind` whose id or, failing that, name is `key`.
pub(crate) fn find_in(inv: &Inventory, kind: ObjectKind, key: &str) -> Result<Object> {
    let by_id = uuid::Uuid::parse_str(key).ok().and_then(|id| inv.get_object(ObjectRef::new(kind, id)));
    by_id
        .or_else(|| inv.id_by_name(kind, key).and_then(|id| inv.get_object(ObjectRef::new(kind, id))))
        .ok_or_else(|| Error::not_found(kind, key))
}

fn find_object(m: &Manager, kind: ObjectKind, key: &str) -> Result<Object> {
    m.read(|inv| find_in(inv, kind, key))
}

/// A stream of change-feed entries: a local [`crate::Subscription`] or one streamed by a service.
pub trait ChangeStream: Send {
    /// The next change, waiting at most `timeout` (`Ok(None)` when none came). A lag is
    /// [`Error::EventsLost`] with the token to resume from; a closed manager or connection is
    /// [`Error::Closed`].
    fn next_change(&mut self, timeout: Duration) -> Result<Option<Change>>;
}

impl ChangeStream for crate::Subscription {
    fn next_change(&mut self, timeout: Duration) -> Result<Option<Change>> {
        self.next_blocking(timeout)
    }
}

macro_rules! remote_api {
    ($(
        $(#[doc = $doc:literal])*
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty = |$m:ident| $body:expr;
    )*) => {
        /// One call of the manager's API, as it crosses a connection.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "method", content = "args", deny_unknown_fields)]
        pub enum Call {
            $(
                $(#[doc = $doc])*
                $name {
                    $(
                        #[allow(missing_docs)]
                        $arg: $ty,
                    )*
                },
            )*
        }

        impl Call {
            /// The method's name (as on the wire).
            pub fn method(&self) -> &'static str {
                match self { $(Call::$name { .. } => stringify!($name),)* }
            }

            /// The names of every remotable method, in table order.
            pub const METHODS: &'static [&'static str] = &[$(stringify!($name)),*];
        }

        /// The manager's API as both a local [`Manager`] and a [`super::RemoteManager`] offer it.
        ///
        /// Code written against `&dyn ManagerApi` runs the same on a database opened in this process
        /// and on a manager service reached over a socket.
        pub trait ManagerApi: Send + Sync {
            $(
                $(#[doc = $doc])*
                fn $name(&self, $($arg: $ty),*) -> Result<$ret>;
            )*

            /// [`ManagerApi::wait_job_for`], then, like [`JobHandle::wait`], the job's own error
            /// if it failed or was aborted: `Ok` only for a completed job.
            fn wait_job_completed(&self, id: JobId, timeout: Option<Duration>) -> Result<Job> {
                let job = self.wait_job_for(id, timeout)?;
                match (job.state, &job.error) {
                    (JobState::Completed, _) => Ok(job),
                    (_, Some(e)) => Err(e.clone()),
                    (s, None) => Err(Error::Internal { message: format!("job ended {s} without an error") }),
                }
            }

            /// A VM's record (the [`ManagerApi::object`] of a VM).
            fn vm_record(&self, vm: VmId) -> Result<Vm> {
                match self.object(ObjectRef::new(ObjectKind::Vm, vm))? {
                    Object::Vm(v) => Ok(v),
                    other => Err(Error::Internal { message: format!("{} is not a VM", other.name()) }),
                }
            }

            /// Subscribe to the change feed (see [`Manager::subscribe`]).
            fn subscribe_changes(&self, from: Option<u64>) -> Result<Box<dyn ChangeStream>>;

            /// The accounts and audit log a service checks callers against: a local [`Manager`]'s;
            /// `None` for others (a service on them admits only local superusers).
            fn accounts(&self) -> Option<&dyn Accounts> {
                None
            }

            /// Wait for a job to end, at most `timeout` (`None`: for as long as it runs), in waits
            /// of at most [`MAX_SERVICE_WAIT`]. Returns the record whatever the outcome;
            /// [`Error::Timeout`] if it still runs.
            fn wait_job_for(&self, id: JobId, timeout: Option<Duration>) -> Result<Job> {
                let deadline = timeout.map(|t| Instant::now() + t);
                loop {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    let step = left.map_or(MAX_SERVICE_WAIT, |l| l.min(MAX_SERVICE_WAIT));
                    match self.wait_job(id, Some(step.as_millis() as u64)) {
                        Err(Error::Timeout { .. }) if left.is_none_or(|l| l > step) => continue,
                        Err(Error::Timeout { .. }) => {
                            return Err(Error::Timeout {
                                what: format!("job {id}"),
                                millis: timeout.map_or(0, |t| t.as_millis() as u64),
                            })
                        }
                        r => return r,
                    }
                }
            }
        }

        impl ManagerApi for Manager {
            $(
                fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    let $m = self;
                    $body
                }
            )*

            fn subscribe_changes(&self, from: Option<u64>) -> Result<Box<dyn ChangeStream>> {
                Ok(Box::new(self.subscribe(from)?))
            }

            fn accounts(&self) -> Option<&dyn Accounts> {
                Some(self)
            }
        }

        /// Runs `call` on `api`; the answer is the method's result as JSON.
        pub fn dispatch(api: &dyn ManagerApi, call: Call) -> Result<serde_json::Value> {
            match call {
                $(
                    Call::$name { $($arg),* } => {
                        let out = api.$name($($arg),*)?;
                        serde_json::to_value(out).map_err(|e| Error::Internal {
                            message: format!("the answer to {} does not encode: {e}", stringify!($name)),
                        })
                    }
                )*
            }
        }

        impl ManagerApi for super::ReadOnlyManager {
            $(
                fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    self.answer(Call::$name { $($arg),* })
                }
            )*

            fn subscribe_changes(&self, _from: Option<u64>) -> Result<Box<dyn ChangeStream>> {
                Err(Error::PermissionDenied {
                    reason: "subscriptions need a manager; the database is open read-only".into(),
                })
            }
        }

        impl ManagerApi for super::RemoteManager {
            $(
                fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    self.call(Call::$name { $($arg),* })
                }
            )*

            fn subscribe_changes(&self, from: Option<u64>) -> Result<Box<dyn ChangeStream>> {
                Ok(Box::new(self.subscribe(from)?))
            }
        }
    };
}

remote_api! {
    /// The manager's identity.
    fn manager_id() -> String = |m| Ok(m.id().to_owned());
    /// Every object of one kind (the inventory kinds; jobs and events have calls of their own).
    fn objects(kind: ObjectKind) -> Vec<Object> = |m| Ok(m.read(|inv| inv.objects_of(kind)));
    /// One object by reference.
    fn object(object: ObjectRef) -> Object = |m| m.object(object);
    /// One object of `kind` by id or, failing that, by name.
    fn find(kind: ObjectKind, key: String) -> Object = |m| find_object(m, kind, &key);

    /// Discover a server (see [`Manager::discover_server`]).
    fn discover_server(address: String, password: String) -> Job =
        |m| submitted(m.discover_server(&address, &password));
    /// Take over a server owned by another manager (see [`Manager::take_over_server`]).
    fn take_over_server(address: String, password: String) -> Job =
        |m| submitted(m.take_over_server(&address, &password));
    /// Release ownership of a server (see [`Manager::release_ownership`]).
    fn release_ownership(server: ServerId) -> Job = |m| submitted(m.release_ownership(server));
    /// Refresh a server's inventory (see [`Manager::refresh_server`]).
    fn refresh_server(server: ServerId) -> Job = |m| submitted(m.refresh_server(server));
    /// Enter or leave maintenance mode (see [`Manager::set_maintenance_mode`]).
    fn set_maintenance_mode(server: ServerId, on: bool) -> Job =
        |m| submitted(m.set_maintenance_mode(server, on));
    /// Power a server off (see [`Manager::power_off_server`]).
    fn power_off_server(server: ServerId) -> Job = |m| submitted(m.power_off_server(server));
    /// Power a server on (see [`Manager::power_on_server`]); `timeout_ms` bounds the wait for it.
    fn power_on_server(server: ServerId, timeout_ms: Option<u64>) -> Job =
        |m| submitted(m.power_on_server(server, timeout_ms.map(Duration::from_millis)));

    /// Create a server pool (see [`Manager::create_pool`]).
    fn create_pool(spec: PoolSpec) -> Job = |m| submitted(m.create_pool(spec));
    /// Add a server to a pool (see [`Manager::add_server_to_pool`]).
    fn add_server_to_pool(pool: PoolId, server: ServerId) -> Job =
        |m| submitted(m.add_server_to_pool(pool, server));
    /// Remove a server from a pool (see [`Manager::remove_server_from_pool`]).
    fn remove_server_from_pool(pool: PoolId, server: ServerId) -> Job =
        |m| submitted(m.remove_server_from_pool(pool, server));
    /// Set how many server failures a pool's HA reserve covers.
    fn set_ha_failures_to_tolerate(pool: PoolId, failures: u32) -> Job =
        |m| submitted(m.set_ha_failures_to_tolerate(pool, failures));

    /// Create a VM (see [`Manager::create_vm`]).
    fn create_vm(spec: VmSpec) -> Job = |m| submitted(m.create_vm(spec));
    /// Start a VM (see [`Manager::start_vm`]).
    fn start_vm(vm: VmId) -> Job = |m| submitted(m.start_vm(vm));
    /// Start a VM on a given server (see [`Manager::start_vm_on`]).
    fn start_vm_on(vm: VmId, server: ServerId) -> Job = |m| submitted(m.start_vm_on(vm, server));
    /// Shut a VM down cleanly (see [`Manager::stop_vm`]).
    fn stop_vm(vm: VmId) -> Job = |m| submitted(m.stop_vm(vm));
    /// Kill a VM (see [`Manager::kill_vm`]).
    fn kill_vm(vm: VmId) -> Job = |m| submitted(m.kill_vm(vm));
    /// Restart a VM (see [`Manager::restart_vm`]).
    fn restart_vm(vm: VmId) -> Job = |m| submitted(m.restart_vm(vm));
    /// Pause a VM (see [`Manager::pause_vm`]).
    fn pause_vm(vm: VmId) -> Job = |m| submitted(m.pause_vm(vm));
    /// Suspend a VM (see [`Manager::suspend_vm`]).
    fn suspend_vm(vm: VmId) -> Job = |m| submitted(m.suspend_vm(vm));
    /// Resume a paused or suspended VM (see [`Manager::resume_vm`]).
    fn resume_vm(vm: VmId) -> Job = |m| submitted(m.resume_vm(vm));
    /// Live-migrate a VM (see [`Manager::migrate_vm`]).
    fn migrate_vm(vm: VmId, target: ServerId) -> Job = |m| submitted(m.migrate_vm(vm, target));
    /// Delete a VM (see [`Manager::delete_vm`]).
    fn delete_vm(vm: VmId) -> Job = |m| submitted(m.delete_vm(vm));
    /// A running VM's console output (see [`Manager::vm_console`]).
    fn vm_console(vm: VmId) -> String = |m| m.vm_console(vm);
    /// Send messages to a running VM's guest (see [`Manager::send_vm_messages`]).
    fn send_vm_messages(vm: VmId, messages: Vec<(String, String)>) -> Job =
        |m| submitted(m.send_vm_messages(vm, &messages));
    /// The values a running VM's guest reports (see [`Manager::vm_guest_data`]).
    fn vm_guest_data(vm: VmId) -> std::collections::BTreeMap<String, String> = |m| m.vm_guest_data(vm);
    /// Open a running VM's graphical console for one VNC client (see [`Manager::open_vm_console`]);
    /// through a manager service, the endpoint is on the service's machine's loopback.
    fn open_vm_console(vm: VmId) -> crate::manager::ConsoleEndpoint = |m| m.open_vm_console(vm);
    /// Delete any object (see [`Manager::delete_object`]).
    fn delete_object(object: ObjectRef) -> Job = |m| submitted(m.delete_object(object));

    /// A job's record, live or historical.
    fn job(id: JobId) -> Job = |m| Ok(m.job(id)?.info());
    /// Job history, newest first.
    fn jobs(filter: JobFilter) -> Vec<Job> = |m| m.jobs(&filter);
    /// Wait at most `timeout_ms` (`None`: as long as it runs) for a job to end and return its record
    /// whatever the outcome; [`Error::Timeout`] if it still runs. A service waits at most
    /// [`MAX_SERVICE_WAIT`] per call.
    fn wait_job(id: JobId, timeout_ms: Option<u64>) -> Job =
        |m| m.job(id)?.wait_done(timeout_ms.map(Duration::from_millis));
    /// Request a job's abort (see [`JobHandle::abort`]).
    fn abort_job(id: JobId) -> () = |m| m.job(id)?.abort();

    /// Events, newest first.
    fn events(filter: EventFilter) -> Vec<Event> = |m| m.events(&filter);
    /// One event.
    fn event(id: EventId) -> Event = |m| m.event(id);
    /// Acknowledge an event (see [`Manager::acknowledge_event`]).
    fn acknowledge_event(id: EventId) -> Job = |m| submitted(m.acknowledge_event(id));
    /// Acknowledge every event of an object (see [`Manager::acknowledge_all`]).
    fn acknowledge_all(object: ObjectRef) -> Job = |m| submitted(m.acknowledge_all(object));
    /// The newest change token.
    fn current_token() -> u64 = |m| m.current_token();
    /// Changes after `token` and the token to resume from (see [`Manager::events_since`]).
    fn events_since(token: u64) -> (Vec<Change>, u64) = |m| m.events_since(token);

    /// Take ownership of a discovered server (see [`Manager::take_ownership`]).
    fn take_ownership(server: ServerId, password: String) -> Job = |m| submitted(m.take_ownership(server, &password));
    /// Restart a server's agent (see [`Manager::restart_agent`]).
    fn restart_agent(server: ServerId) -> Job = |m| submitted(m.restart_agent(server));
    /// Whether a server's out-of-band controller reports it on (see [`Manager::out_of_band_power_state`]).
    fn out_of_band_power_state(server: ServerId) -> crate::driver::ChassisPower = |m| m.out_of_band_power_state(server);
    /// The power controllers registered with the manager, by name.
    fn power_controllers() -> Vec<String> = |m| Ok(m.power_controllers());
    /// The last load sampled on a server.
    fn server_load(server: ServerId) -> Option<LoadSample> = |m| m.server_load(server);
    /// The last load sampled of a VM.
    fn vm_load(vm: VmId) -> Option<VmLoad> = |m| m.vm_load(vm);
    /// Where a server's network differs from what the manager configured.
    fn network_drift(server: ServerId) -> Vec<String> = |m| m.network_drift(server);
    /// Configure a server's networks again (see [`Manager::reapply_network`]).
    fn reapply_network(server: ServerId) -> Job = |m| submitted(m.reapply_network(server));
    /// Add a port, bond or VLAN interface to a network (see [`Manager::add_network_member`]).
    fn add_network_member(network: NetworkId, member: NetworkMember) -> Job =
        |m| submitted(m.add_network_member(network, member));
    /// Remove a member from a network (see [`Manager::remove_network_member`]).
    fn remove_network_member(network: NetworkId, member: NetworkMember) -> Job =
        |m| submitted(m.remove_network_member(network, member));
    /// Delete a bond (see [`Manager::delete_bond`]).
    fn delete_bond(bond: BondPortId) -> Job = |m| submitted(m.delete_bond(bond));

    /// How many server failures a pool's VMs survive (see [`Manager::max_failures_tolerated`]).
    fn max_failures_tolerated(pool: PoolId) -> u32 = |m| m.max_failures_tolerated(pool);
    /// Whether a pool absorbs `failures` server failures (see [`Manager::ha_plan`]).
    fn ha_plan(pool: PoolId, failures: u32) -> HaTolerance = |m| m.ha_plan(pool, failures);
    /// Run a pool's DRS/DPM policy now (see [`Manager::run_policy`]).
    fn run_policy(pool: PoolId) -> Job = |m| submitted(m.run_policy(pool));
    /// Run a recurring system job now (see [`Manager::run_recurring`]).
    fn run_recurring(name: String) -> Job = |m| submitted(m.run_recurring(&name));
    /// The recurring system jobs: name, interval and whether enabled.
    fn recurring_jobs() -> Vec<(String, Duration, bool)> = |m| Ok(m.recurring_jobs());
    /// Change a recurring system job's interval or switch it on or off.
    fn set_recurring_job(name: String, interval: Duration, enabled: bool) -> () =
        |m| m.set_recurring_job(&name, interval, enabled);

    /// Start a suspended VM on a given server (see [`Manager::resume_vm_on`]).
    fn resume_vm_on(vm: VmId, target: ServerId) -> Job = |m| submitted(m.resume_vm_on(vm, target));
    /// Why a VM cannot live-migrate to a server (empty if it can).
    fn migration_blockers(vm: VmId, target: ServerId) -> Vec<MigrationBlocker> =
        |m| m.migration_blockers(vm, target);
    /// A VM's NICs: MAC, network name, connected.
    fn vm_nics(vm: VmId) -> Vec<(String, String, bool)> = |m| m.vm_nics(vm);
    /// Add a VNIC to a VM (see [`Manager::add_vnic`]).
    fn add_vnic(vm: VmId, network: Option<NetworkId>) -> Job = |m| submitted(m.add_vnic(vm, network));
    /// Remove a VM's VNIC by MAC (see [`Manager::remove_vnic`]).
    fn remove_vnic(vm: VmId, mac: String) -> Job = |m| submitted(m.remove_vnic(vm, &mac));
    /// Turn a stopped VM into a template (see [`Manager::vm_to_template`]).
    fn vm_to_template(vm: VmId, name: String) -> Job = |m| submitted(m.vm_to_template(vm, &name));
    /// Create an anti-affinity group (see [`Manager::create_anti_affinity_group`]).
    fn create_anti_affinity_group(pool: PoolId, name: String, vms: Vec<VmId>) -> Job =
        |m| submitted(m.create_anti_affinity_group(pool, &name, vms));

    /// Present a repository to a server (see [`Manager::present_repository`]).
    fn present_repository(repo: RepositoryId, server: ServerId) -> Job =
        |m| submitted(m.present_repository(repo, server));
    /// Present a repository to several servers (see [`Manager::present_repository_to`]).
    fn present_repository_to(repo: RepositoryId, servers: Vec<ServerId>) -> Job =
        |m| submitted(m.present_repository_to(repo, &servers));
    /// Stop presenting a repository to a server (see [`Manager::unpresent_repository`]).
    fn unpresent_repository(repo: RepositoryId, server: ServerId) -> Job =
        |m| submitted(m.unpresent_repository(repo, server));
    /// Import an ISO into a repository (see [`Manager::import_iso`]).
    fn import_iso(repo: RepositoryId, name: String, source: String) -> Job =
        |m| submitted(m.import_iso(repo, &name, &source));
    /// Import a template (see [`Manager::import_template`]).
    fn import_template(repo: RepositoryId, source: String, name: Option<String>) -> Job =
        |m| submitted(m.import_template(repo, &source, name.as_deref()));
    /// Import an assembly (see [`Manager::import_assembly`]).
    fn import_assembly(repo: RepositoryId, source: String, name: Option<String>) -> Job =
        |m| submitted(m.import_assembly(repo, &source, name.as_deref()));
    /// Delete a template (see [`Manager::delete_template`]).
    fn delete_template(template: TemplateId) -> Job = |m| submitted(m.delete_template(template));
    /// Delete a virtual disk (see [`Manager::delete_virtual_disk`]).
    fn delete_virtual_disk(disk: VirtualDiskId) -> Job = |m| submitted(m.delete_virtual_disk(disk));
    /// Refresh a file server's file systems (see [`Manager::refresh_file_server`]).
    fn refresh_file_server(id: FileServerId) -> Job = |m| submitted(m.refresh_file_server(id));
    /// Clone a LUN (see [`Manager::clone_lun`]).
    fn clone_lun(disk: PhysicalDiskId, name: String) -> Job = |m| submitted(m.clone_lun(disk, &name));
    /// Resize a LUN (see [`Manager::resize_lun`]).
    fn resize_lun(disk: PhysicalDiskId, size_bytes: u64) -> Job = |m| submitted(m.resize_lun(disk, size_bytes));
    /// Delete a LUN (see [`Manager::delete_lun`]).
    fn delete_lun(disk: PhysicalDiskId) -> Job = |m| submitted(m.delete_lun(disk));
    /// Present a LUN to an access group (see [`Manager::present_lun`]).
    fn present_lun(group: AccessGroupId, disk: PhysicalDiskId) -> Job = |m| submitted(m.present_lun(group, disk));
    /// Stop presenting a LUN to an access group (see [`Manager::unpresent_lun`]).
    fn unpresent_lun(group: AccessGroupId, disk: PhysicalDiskId) -> Job =
        |m| submitted(m.unpresent_lun(group, disk));
    /// Delete an access group (see [`Manager::delete_access_group`]).
    fn delete_access_group(group: AccessGroupId) -> Job = |m| submitted(m.delete_access_group(group));
    /// Present a storage array to servers (see [`Manager::present_storage_array_to`]).
    fn present_storage_array_to(array: StorageArrayId, servers: Vec<ServerId>) -> Job =
        |m| submitted(m.present_storage_array_to(array, &servers));
    /// Stop presenting a storage array to a server (see [`Manager::unpresent_storage_array`]).
    fn unpresent_storage_array(array: StorageArrayId, server: ServerId) -> Job =
        |m| submitted(m.unpresent_storage_array(array, server));

    /// Create a network (see [`Manager::create_network`]).
    fn create_network(spec: NetworkSpec) -> Job = |m| submitted(m.create_network(spec));
    /// Create a bond of ports on a server, MII-monitored, MTU 1500 (see [`Manager::create_bond`]).
    fn create_bond(server: ServerId, interface: String, mode: BondMode, ports: Vec<PortId>) -> Job =
        |m| submitted(m.create_bond(server, &interface, mode, ports));
    /// Create a bond with every setting (see [`Manager::create_bond_with`]).
    fn create_bond_with(spec: BondSpec) -> Job = |m| submitted(m.create_bond_with(spec));
    /// Create a VLAN interface on a port or bond (see [`Manager::create_vlan_interface`]).
    fn create_vlan_interface(server: ServerId, parent: VlanParent, vlan_id: u16) -> Job =
        |m| submitted(m.create_vlan_interface(server, parent, vlan_id));
    /// Change a network member's addressing (see [`Manager::set_addressing`]).
    fn set_addressing(member: NetworkMember, addressing: Addressing, how: NetworkApply) -> Job =
        |m| submitted(m.set_addressing(member, addressing, how));
    /// The network configuration the manager wants a server to have.
    fn desired_network_config(server: ServerId) -> NetworkConfig = |m| m.desired_network_config(server);
    /// The network configuration a server has now (read from it).
    fn server_network_config(server: ServerId) -> NetworkConfig = |m| m.server_network_config(server);

    /// Edit a server's properties (see [`Manager::edit_server`]).
    fn edit_server(server: ServerId, edit: ServerEdit) -> Job = |m| submitted(m.edit_server(server, edit));
    /// A server's sampled loads at a resolution (see [`Manager::server_load_history`]).
    fn server_load_history(server: ServerId, resolution: LoadResolution) -> Vec<LoadSample> =
        |m| m.server_load_history(server, resolution);
    /// How often server loads are sampled and how long they are kept.
    fn load_sampling() -> LoadSampling = |m| Ok(m.load_sampling());
    /// Change load sampling (see [`Manager::set_load_sampling`]).
    fn set_load_sampling(settings: LoadSampling) -> () = |m| m.set_load_sampling(settings);
    /// The fingerprint of the manager's agent-client certificate (see [`Manager::certificate_fingerprint`]).
    fn certificate_fingerprint() -> String = |m| m.certificate_fingerprint();
    /// The agent certificate fingerprint pinned for a server (see [`Manager::agent_fingerprint`]).
    fn agent_fingerprint(server: ServerId) -> Option<String> = |m| m.agent_fingerprint(server);
    /// A pool's cluster as its servers report it (see [`Manager::pool_cluster_status`]).
    fn pool_cluster_status(pool: PoolId) -> Option<ClusterStatus> = |m| m.pool_cluster_status(pool);
    /// The server answering at a pool's virtual IP and its cluster (see [`Manager::reach_pool`]).
    fn reach_pool(pool: PoolId) -> (ServerId, Option<ClusterStatus>) = |m| m.reach_pool(pool);
    /// Where a pool's HA-enabled VMs restart if `failed` fail (see [`Manager::ha_plan_for`]).
    fn ha_plan_for(pool: PoolId, failed: Vec<ServerId>) -> HaPlan = |m| m.ha_plan_for(pool, &failed);
    /// What a pool's DRS/DPM policy would do now, without doing it (see [`Manager::policy_plan`]).
    fn policy_plan(pool: PoolId) -> Plan = |m| m.policy_plan(pool);

    /// Shut a VM down with a timeout, optionally forced after it (see [`Manager::stop_vm_with`]).
    fn stop_vm_with(vm: VmId, options: StopOptions) -> Job = |m| submitted(m.stop_vm_with(vm, options));
    /// Move a VM live or cold (see [`Manager::migrate_vm_with`]).
    fn migrate_vm_with(vm: VmId, target: ServerId, options: MigrateOptions) -> Job =
        |m| submitted(m.migrate_vm_with(vm, target, options));
    /// Why a VM cannot migrate to a server in `mode` (empty if it can).
    fn migration_blockers_with(vm: VmId, target: ServerId, mode: MigrationMode) -> Vec<MigrationBlocker> =
        |m| m.migration_blockers_with(vm, target, mode);
    /// Fails with the first reason a VM cannot live-migrate to a server (see [`Manager::assert_can_migrate`]).
    fn assert_can_migrate(vm: VmId, target: ServerId) -> () = |m| m.assert_can_migrate(vm, target);
    /// Map a disk at a VM's slot (see [`Manager::map_disk`]).
    fn map_disk(vm: VmId, slot: u8, target: DiskTarget) -> Job = |m| submitted(m.map_disk(vm, slot, target));
    /// Clone a template into a new VM (see [`Manager::clone_template`]).
    fn clone_template(template: TemplateId, name: String, options: CloneOptions) -> Job =
        |m| submitted(m.clone_template(template, &name, options));
    /// Clone a stopped VM into a new VM (see [`Manager::clone_vm`]).
    fn clone_vm(vm: VmId, name: String, options: CloneOptions) -> Job =
        |m| submitted(m.clone_vm(vm, &name, options));

    /// Register a file server (see [`Manager::register_file_server`]).
    fn register_file_server(spec: FileServerSpec) -> Job = |m| submitted(m.register_file_server(spec));
    /// A file server's file systems.
    fn file_systems_of(server: FileServerId) -> Vec<FileSystem> =
        |m| Ok(m.file_systems_of(server).iter().map(|f| (**f).clone()).collect());
    /// Create a repository (see [`Manager::create_repository`]).
    fn create_repository(spec: RepositorySpec) -> Job = |m| submitted(m.create_repository(spec));
    /// Create a virtual disk in a repository (see [`Manager::create_virtual_disk`]).
    fn create_virtual_disk(repo: RepositoryId, name: String, size_bytes: u64, shareable: bool) -> Job =
        |m| submitted(m.create_virtual_disk(repo, &name, size_bytes, shareable));
    /// Import a kernel (and initrd) into a repository (see [`Manager::import_kernel`]).
    fn import_kernel(repo: RepositoryId, name: String, kernel_source: String, initrd_source: Option<String>) -> Job =
        |m| submitted(m.import_kernel(repo, &name, &kernel_source, initrd_source.as_deref()));
    /// Create a template from a configuration and disks (see [`Manager::create_template`]).
    fn create_template(repo: RepositoryId, name: String, config: VmConfig, disks: Vec<VirtualDiskId>) -> Job =
        |m| submitted(m.create_template(repo, &name, config, disks));
    /// Register a storage array (see [`Manager::register_storage_array`]).
    fn register_storage_array(spec: StorageArraySpec) -> Job = |m| submitted(m.register_storage_array(spec));
    /// A storage array's LUNs.
    fn physical_disks_of(array: StorageArrayId) -> Vec<PhysicalDisk> =
        |m| Ok(m.physical_disks_of(array).iter().map(|d| (**d).clone()).collect());
    /// Create a LUN on a vendor-style array (see [`Manager::create_lun`]).
    fn create_lun(array: StorageArrayId, target: Option<String>, name: String, size_bytes: u64) -> Job =
        |m| submitted(m.create_lun(array, target.as_deref(), &name, size_bytes));
    /// Create an access group on a vendor-style array (see [`Manager::create_access_group`]).
    fn create_access_group(array: StorageArrayId, name: String, servers: Vec<ServerId>) -> Job =
        |m| submitted(m.create_access_group(array, &name, &servers));
    /// Servers matching a filter, in name order (see [`Manager::servers_where`]).
    fn servers_where(filter: ServerFilter) -> Vec<Server> =
        |m| Ok(m.servers_where(&filter).iter().map(|s| (**s).clone()).collect());
    /// VMs matching a filter, in name order (see [`Manager::vms_where`]).
    fn vms_where(filter: VmFilter) -> Vec<Vm> = |m| Ok(m.vms_where(&filter).iter().map(|v| (**v).clone()).collect());
    /// Virtual disks matching a filter, in name order (see [`Manager::virtual_disks_where`]).
    fn virtual_disks_where(filter: DiskFilter) -> Vec<VirtualDisk> =
        |m| Ok(m.virtual_disks_where(&filter).iter().map(|d| (**d).clone()).collect());
    /// Set a stopped VM's domain type and boot order (see [`Manager::set_vm_boot`]).
    fn set_vm_boot(vm: VmId, domain_type: DomainType, boot_order: Vec<BootDevice>) -> Job =
        |m| submitted(m.set_vm_boot(vm, domain_type, boot_order));
    /// Boot a stopped PV VM from an install tree, or not (see [`Manager::set_vm_network_boot`]).
    fn set_vm_network_boot(vm: VmId, boot: Option<NetworkBoot>) -> Job =
        |m| submitted(m.set_vm_network_boot(vm, boot));
    /// Give a stopped PV VM a framebuffer, or not (see [`Manager::set_vm_framebuffer`]).
    fn set_vm_framebuffer(vm: VmId, enabled: bool) -> Job = |m| submitted(m.set_vm_framebuffer(vm, enabled));
    /// Boot a stopped VM from a kernel, or not (see [`Manager::set_vm_kernel`]).
    fn set_vm_kernel(vm: VmId, kernel: Option<PvKernel>) -> Job = |m| submitted(m.set_vm_kernel(vm, kernel));
    /// Connect a stopped VM's VNIC to a network (see [`Manager::set_vnic_network`]).
    fn set_vnic_network(vm: VmId, index: u32, network: Option<NetworkId>) -> Job =
        |m| submitted(m.set_vnic_network(vm, index, network));
    /// Enable or disable HA for a VM (see [`Manager::set_vm_high_availability`]).
    fn set_vm_high_availability(vm: VmId, enabled: bool, priority: u8) -> Job =
        |m| submitted(m.set_vm_high_availability(vm, enabled, priority));
    /// Set a pool's DRS/DPM policy (see [`Manager::set_pool_policy`]).
    fn set_pool_policy(pool: PoolId, policy: PoolPolicy) -> Job = |m| submitted(m.set_pool_policy(pool, policy));
    /// Rebuild a lost database from servers and their repositories (see
    /// [`Manager::rebuild_from_servers`]); runs to the end before it answers.
    fn rebuild_from_servers(servers: Vec<ServerLogin>) -> RebuildReport = |m| m.rebuild_from_servers(&servers);

    /// Create an object from its record (see [`Manager::create_object`]).
    fn create_object(object: Object) -> Job = |m| submitted(m.create_object(object));
    /// Create several objects in one job (see [`Manager::create_objects`]).
    fn create_objects(objects: Vec<Object>) -> Job = |m| submitted(m.create_objects(objects));
    /// Replace an object's record: the typed edit of any object (see [`Manager::update_object`]).
    fn update_object(object: Object) -> Job = |m| submitted(m.update_object(object));
    /// Drop all but the newest `keep` change-feed entries.
    fn prune_changes(keep: u64) -> usize = |m| m.prune_changes(keep);

    /// How many live migrations run at once on a server.
    fn migration_limit() -> u32 = |m| Ok(m.migration_limit());
    /// Set the migration limit (see [`Manager::set_migration_limit`]).
    fn set_migration_limit(limit: u32) -> Job = |m| submitted(m.set_migration_limit(limit));
    /// The range VNIC MACs are allocated from.
    fn mac_range() -> MacRange = |m| Ok(m.mac_range());
    /// Set the MAC range (see [`Manager::set_mac_range`]).
    fn set_mac_range(range: MacRange) -> Job = |m| submitted(m.set_mac_range(range));
    /// Record an event about an object (see [`Manager::raise_event`]).
    fn raise_event(object: ObjectRef, severity: Severity, event_type: String, summary: String) -> Event =
        |m| m.raise_event(object, severity, &event_type, &summary);
    /// Sample the load of every owned, reachable server now (see [`Manager::sample_loads`]).
    fn sample_loads() -> usize = |m| m.sample_loads();

    /// Create an account of the manager service (see [`Manager::create_user`]).
    fn create_user(name: String, role: Role, password: Option<String>, certificates: Vec<String>) -> Account =
        |m| m.create_user(&name, role, password.as_deref(), certificates);
    /// The service's accounts, by name.
    fn users() -> Vec<Account> = |m| m.users();
    /// Delete an account.
    fn delete_user(name: String) -> () = |m| m.delete_user(&name);
    /// Set an account's password.
    fn set_user_password(name: String, password: String) -> Account = |m| m.set_user_password(&name, &password);
    /// Set an account's role.
    fn set_user_role(name: String, role: Role) -> Account = |m| m.set_user_role(&name, role);
    /// Set the client-certificate fingerprints that authenticate as an account.
    fn set_user_certificates(name: String, certificates: Vec<String>) -> Account =
        |m| m.set_user_certificates(&name, certificates);
    /// The audit log, newest first.
    fn audit_log(filter: AuditFilter) -> Vec<AuditEntry> = |m| m.audit_log(&filter);
}

impl Call {
    /// Whether the call only reads what the manager holds in memory (or one row of its database), so
    /// that a service answers it on the connection's own thread rather than on a thread of its own:
    /// it cannot wait, and it never reaches a server.
    pub fn answers_at_once(&self) -> bool {
        matches!(
            self,
            Call::manager_id {}
                | Call::objects { .. }
                | Call::object { .. }
                | Call::find { .. }
                | Call::job { .. }
                | Call::event { .. }
                | Call::current_token {}
                | Call::migration_limit {}
                | Call::mac_range {}
                | Call::recurring_jobs {}
                | Call::power_controllers {}
                | Call::server_load { .. }
                | Call::vm_load { .. }
        )
    }

    /// Bounds what the call may hold a service's thread for: a wait is at most [`MAX_SERVICE_WAIT`].
    pub fn bounded(mut self) -> Call {
        if let Call::wait_job { timeout_ms, .. } = &mut self {
            let cap = MAX_SERVICE_WAIT.as_millis() as u64;
            *timeout_ms = Some(timeout_ms.map_or(cap, |t| t.min(cap)));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_encode_as_method_and_args() {
        let vm = VmId(uuid::Uuid::nil());
        let v = serde_json::to_value(Call::start_vm { vm }).unwrap();
        assert_eq!(v, serde_json::json!({"method": "start_vm", "args": {"vm": uuid::Uuid::nil()}}));
        let back: Call = serde_json::from_value(v).unwrap();
        assert_eq!(back, Call::start_vm { vm });
        assert_eq!(back.method(), "start_vm");
        let none: Call =
            serde_json::from_value(serde_json::json!({"method": "current_token", "args": {}})).unwrap();
        assert_eq!(none, Call::current_token {});
    }

    #[test]
    fn unknown_methods_and_arguments_do_not_decode() {
        for bad in [
            serde_json::json!({"method": "format_disk", "args": {}}),
            serde_json::json!({"method": "start_vm", "args": {"vm": "not-a-uuid"}}),
            serde_json::json!({"method": "start_vm", "args": {"vm": uuid::Uuid::nil(), "extra": 1}}),
            serde_json::json!({"args": {}}),
        ] {
            assert!(serde_json::from_value::<Call>(bad.clone()).is_err(), "{bad} decoded");
        }
    }

    #[test]
    fn specs_cross_as_json_and_refuse_unknown_fields() {
        // A server edit tells "clear" (null) from "leave" (absent).
        let edit = ServerEdit { wol_mac: Some(None), description: Some("d".into()), ..Default::default() };
        let v = serde_json::to_value(&edit).unwrap();
        assert_eq!(v["wol_mac"], serde_json::Value::Null);
        assert!(v.get("out_of_band").is_none());
        assert_eq!(serde_json::from_value::<ServerEdit>(v).unwrap(), edit);
        let server = uuid::Uuid::nil();
        for bad in [
            serde_json::json!({"method": "edit_server", "args": {"server": server, "edit": {"nmae": "x"}}}),
            serde_json::json!({"method": "create_network", "args": {"spec": {"name": "n"}}}),
            serde_json::json!({"method": "stop_vm_with", "args": {"vm": server, "options": {"force": true}}}),
            serde_json::json!({"method": "clone_vm", "args": {"vm": server, "name": "c", "options": {"pool": 3}}}),
        ] {
            assert!(serde_json::from_value::<Call>(bad.clone()).is_err(), "{bad} decoded");
        }
        let call = Call::create_network { spec: NetworkSpec::vm_network("n", "xenbr1") };
        let back: Call = serde_json::from_value(serde_json::to_value(&call).unwrap()).unwrap();
        assert_eq!(back, call);
        let call: Call = serde_json::from_value(
            serde_json::json!({"method": "clone_vm", "args": {"vm": server, "name": "c", "options": {}}}),
        )
        .unwrap();
        assert_eq!(
            call,
            Call::clone_vm { vm: VmId(server), name: "c".into(), options: CloneOptions::default() }
        );
    }

    #[test]
    fn method_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in Call::METHODS {
            assert!(seen.insert(*m), "{m} twice");
        }
        assert!(Call::METHODS.contains(&"wait_job"));
    }

    #[test]
    fn waits_are_bounded_for_the_service() {
        let id = JobId(uuid::Uuid::nil());
        let cap = MAX_SERVICE_WAIT.as_millis() as u64;
        assert_eq!(
            Call::wait_job { id, timeout_ms: None }.bounded(),
            Call::wait_job { id, timeout_ms: Some(cap) }
        );
        assert_eq!(
            Call::wait_job { id, timeout_ms: Some(5) }.bounded(),
            Call::wait_job { id, timeout_ms: Some(5) }
        );
        assert_eq!(Call::current_token {}.bounded(), Call::current_token {});
    }

    #[test]
    fn dispatch_runs_on_a_local_manager() {
        let m = Manager::open_in_memory().unwrap();
        let job: Job = serde_json::from_value(
            dispatch(
                &m,
                Call::discover_server {
                    address: "sim://a".into(),
                    password: crate::driver::sim::DEFAULT_PASSWORD.into(),
                },
            )
            .unwrap(),
        )
        .unwrap();
        let done = m.wait_job_for(job.id, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(done.state, JobState::Completed);
        let servers: Vec<Object> =
            serde_json::from_value(dispatch(&m, Call::objects { kind: ObjectKind::Server }).unwrap())
                .unwrap();
        assert_eq!(servers.len(), 1);
        let found = m.find(ObjectKind::Server, servers[0].name().to_owned()).unwrap();
        assert_eq!(found, servers[0]);
        let err = dispatch(&m, Call::find { kind: ObjectKind::Vm, key: "nope".into() }).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
    }
}
