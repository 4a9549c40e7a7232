//! The `ovm` command: `ovm <object> <verb>` on a manager database opened in-process (`--db`) or on
//! a manager service (`--connect`, or the `OVM_CONNECT` environment variable), and `ovm serve`,
//! which runs that service.
//!
//! Every command runs against [`ManagerApi`], so it does the same on a database and on a service.
//! Objects are named by name or id. Output is a table, or JSON with `--json`. Commands that start
//! a job wait for it (showing its progress on a terminal) unless `--no-wait`, which prints the job's
//! id. The exit status is 0 on success, [`EXIT_USAGE`] for a command line that does not parse, and
//! [`exit_code`] of the error's [`ErrorKind`] otherwise (a failed job exits with its error's kind).

pub mod schema;
mod serve;
mod storage;
pub mod table;
mod users;

pub use storage::{DiskCmd, NetworkCmd, RepoCmd, StorageCmd, TemplateCmd};

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::manager::{PoolSpec, VmSpec};
use crate::model::*;
use crate::remote::ManagerApi;
use crate::store::{EventFilter, JobFilter};
use crate::{Error, ErrorKind, Manager, Result};

/// Exit status of a command line that does not parse (clap's).
pub const EXIT_USAGE: i32 = 2;
/// Exit status when the output could not be written.
pub const EXIT_OUTPUT: i32 = 3;

/// The exit status for an error of `kind`: 10 plus its stable number (`NotFound` 11, …,
/// `EvacuationFailed` 30).
pub fn exit_code(kind: ErrorKind) -> i32 {
    10 + kind.code() as i32
}

/// The `ovm` command line.
#[derive(Debug, Parser)]
#[command(
    name = "ovm",
    version,
    about = "Administer ovm: servers, pools, VMs, repositories, jobs and events"
)]
pub struct Cli {
    /// Open the manager database at PATH in this process (it must not be held by a running manager).
    /// It wins over --connect and OVM_CONNECT.
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<std::path::PathBuf>,
    /// With --db: read the database beside the manager that holds it, for reports (lists, shows,
    /// jobs and events; anything that changes something is refused).
    #[arg(long, global = true, requires = "db")]
    pub read_only: bool,
    /// Use the manager service at URI, e.g. ovm+unix:///run/ovm/manager.sock.
    #[arg(long, global = true, value_name = "URI", env = "OVM_CONNECT")]
    pub connect: Option<String>,
    /// With --connect: act as this user of the service; the password comes from OVM_PASSWORD or a
    /// prompt. Without it, the service admits only its own user and root.
    #[arg(long, global = true, value_name = "NAME", env = "OVM_USER")]
    pub user: Option<String>,
    /// With an ovm+tls:// address: the SHA-256 fingerprint of the service's certificate (ovm serve
    /// prints it).
    #[arg(long, global = true, value_name = "FINGERPRINT", env = "OVM_TLS_FINGERPRINT")]
    pub tls_fingerprint: Option<String>,
    /// With an ovm+tls:// address: log in with this client certificate (made by `ovm certificate`,
    /// registered with `ovm user add NAME --certificate FINGERPRINT`) instead of a password.
    #[arg(long, global = true, value_name = "PATH", env = "OVM_CLIENT_CERTIFICATE")]
    pub client_certificate: Option<std::path::PathBuf>,
    /// The key the manager's private key is encrypted with at rest (64 hex digits or 32 bytes, a
    /// file only its owner reads), for ovm serve and --db.
    #[arg(long, global = true, value_name = "PATH", env = "OVM_KEY_FILE")]
    pub key_file: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The objects and other commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a manager on a database and serve its API on a Unix socket until SIGTERM.
    Serve(serve::ServeArgs),
    /// Servers.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Server pools.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Virtual machines.
    #[command(subcommand)]
    Vm(VmCmd),
    /// Storage repositories.
    #[command(subcommand)]
    Repo(RepoCmd),
    /// File servers and their file systems.
    #[command(subcommand)]
    Storage(StorageCmd),
    /// Virtual disks.
    #[command(subcommand)]
    Disk(DiskCmd),
    /// VM templates.
    #[command(subcommand)]
    Template(TemplateCmd),
    /// Networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Jobs.
    #[command(subcommand)]
    Job(JobCmd),
    /// Events.
    #[command(subcommand)]
    Event(EventCmd),
    /// Accounts of the manager service.
    #[command(subcommand)]
    User(users::UserCmd),
    /// The manager service's audit log.
    #[command(subcommand)]
    Audit(users::AuditCmd),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Create a client certificate and its key at PATH (mode 0600; an existing one is kept) and
    /// print its fingerprint, to register with `ovm user add NAME --certificate FINGERPRINT`.
    Certificate {
        /// Where to keep it.
        path: std::path::PathBuf,
    },
    /// Print the JSON Schema of a record --json prints (Server, Vm, Job, Event, Change, …).
    Schema {
        /// The record (without it: the list of records).
        record: Option<String>,
    },
}

/// How a command that starts a job waits for it.
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Print the job's id and return at once.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds (the job goes on).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// `ovm server …`
#[derive(Debug, Subcommand)]
pub enum ServerCmd {
    /// List servers.
    List,
    /// Show one server.
    Show {
        /// Name or id.
        server: String,
    },
    /// Discover a server by address and take ownership of it.
    Discover {
        /// Its address (a host name or IP address, or sim://NAME for a simulated server).
        address: String,
        /// The agent's password.
        #[arg(long, env = "OVM_SERVER_PASSWORD", hide_env_values = true)]
        password: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Refresh a server's inventory.
    Refresh {
        /// Name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Put a server in maintenance mode (moving its VMs away) or take it out.
    Maintenance {
        /// Name or id.
        server: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        mode: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Power a server on (by Wake-on-LAN or its out-of-band controller) and wait until it answers.
    PowerOn {
        /// Name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Power a server off (it must hold no running VMs).
    PowerOff {
        /// Name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Release ownership of a server.
    Release {
        /// Name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Forget a server.
    Delete {
        /// Name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `ovm pool …`
#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// List server pools.
    List,
    /// Show one pool.
    Show {
        /// Name or id.
        pool: String,
    },
    /// Create a server pool: unclustered, or clustered with `--pool-disk` and `--virtual-ip` (its
    /// members form a cluster on their servers, the first one makes the pool file system on the
    /// disk, and the elected master holds the virtual IP).
    Create {
        /// Its name.
        name: String,
        /// A description.
        #[arg(long, default_value = "")]
        description: String,
        /// The physical disk (a shared LUN, by name or id) to make the pool file system on.
        #[arg(long, requires = "virtual_ip")]
        pool_disk: Option<String>,
        /// The pool's virtual IP (a clustered pool's).
        #[arg(long, requires = "pool_disk")]
        virtual_ip: Option<std::net::IpAddr>,
        /// How long a member may be silent before the others declare it dead, seconds (10 to 300).
        #[arg(long, default_value_t = 120)]
        cluster_timeout: u32,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The cluster of a clustered pool as its servers report it: members, master, epoch and
    /// heartbeats.
    Cluster {
        /// The pool, by name or id.
        pool: String,
    },
    /// Add a server to a pool.
    AddServer {
        /// The pool, by name or id.
        pool: String,
        /// The server, by name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Remove a server from a pool.
    RemoveServer {
        /// The pool, by name or id.
        pool: String,
        /// The server, by name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a pool.
    Delete {
        /// Name or id.
        pool: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `ovm vm …`
#[derive(Debug, Subcommand)]
pub enum VmCmd {
    /// List VMs.
    List,
    /// Show one VM.
    Show {
        /// Name or id.
        vm: String,
    },
    /// Create a VM.
    Create {
        /// Its name.
        name: String,
        /// The pool it runs in, by name or id.
        #[arg(long)]
        pool: Option<String>,
        /// Memory, MiB.
        #[arg(long, default_value_t = 512)]
        memory: u64,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Restart it elsewhere if its server fails.
        #[arg(long)]
        ha: bool,
        /// Its virtualization mode: pv, hvm, pvhvm or pvh.
        #[arg(long = "type", value_name = "TYPE", default_value = "pv", value_parser = storage::parse_domain_type)]
        domain_type: DomainType,
        /// The repository for its files.
        #[arg(long)]
        repo: Option<String>,
        /// Boot this kernel, imported into --repo with `ovm repo import-kernel` (with its initrd).
        #[arg(long, requires = "repo")]
        kernel: Option<String>,
        /// The kernel's command line.
        #[arg(long, default_value = "", requires = "kernel")]
        cmdline: String,
        /// A virtual disk to map, by name or id, at the next slot from 0 (repeatable).
        #[arg(long = "disk", value_name = "DISK")]
        disks: Vec<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Clone a stopped VM into a new one (its disks are copied, thinly where the file system can).
    Clone {
        /// The VM, by name or id.
        vm: String,
        /// The new VM's name.
        name: String,
        /// The pool the new VM runs in (default: none).
        #[arg(long)]
        pool: Option<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Make a template from a stopped VM (its disks are copied).
    ToTemplate {
        /// The VM, by name or id.
        vm: String,
        /// The template's name.
        name: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Give a VM one more virtual NIC.
    AddVnic {
        /// The VM, by name or id.
        vm: String,
        /// The network it is on, by name or id.
        #[arg(long)]
        network: Option<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Start a VM.
    Start(VmTarget),
    /// Shut a VM down cleanly.
    Stop(VmTarget),
    /// Kill a VM at once.
    Kill(VmTarget),
    /// Restart a VM.
    Restart(VmTarget),
    /// Pause a running VM.
    Pause(VmTarget),
    /// Suspend a running VM to its repository.
    Suspend(VmTarget),
    /// Resume a paused or suspended VM.
    Resume(VmTarget),
    /// Delete a stopped VM.
    Delete(VmTarget),
    /// Print a running VM's console output.
    Console {
        /// Name or id.
        vm: String,
    },
    /// Live-migrate a running VM to another server.
    Migrate {
        /// The VM, by name or id.
        vm: String,
        /// The target server, by name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// A VM and how to wait.
#[derive(Debug, Args)]
pub struct VmTarget {
    /// Name or id.
    pub vm: String,
    /// How to wait for the job.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `ovm job …`
#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// List jobs, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one job.
    Show {
        /// Its id.
        job: JobId,
    },
    /// Wait for a job to end; the exit status is its outcome's.
    Wait {
        /// Its id.
        job: JobId,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Ask a running job to stop and undo what it did.
    Abort {
        /// Its id.
        job: JobId,
    },
}

/// `ovm event …`
#[derive(Debug, Subcommand)]
pub enum EventCmd {
    /// List events, newest first.
    List {
        /// Only those not yet acknowledged.
        #[arg(long)]
        unacknowledged: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Acknowledge an event.
    Ack {
        /// Its id.
        event: EventId,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Print changes as they happen, one JSON object a line.
    Watch {
        /// Replay the changes after this token first.
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<usize>,
    },
}

/// Runs the command line `args` (with the program name first) and returns the exit status.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let mut out = String::new();
    let status = match run(&cli, &mut out) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ovm: {e}");
            exit_code(e.kind())
        }
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return EXIT_OUTPUT;
    }
    status
}

/// Opens the manager the options name: the API, and the in-process manager to close at the end.
fn open(cli: &Cli) -> Result<(Arc<dyn ManagerApi>, Option<Manager>)> {
    match (&cli.db, &cli.connect) {
        (Some(db), _) if cli.read_only => Ok((Arc::new(crate::remote::ReadOnlyManager::open(db)?), None)),
        (Some(db), _) => {
            let location = crate::manager::DatabaseLocation::File(db.clone());
            let mut b = Manager::builder().recurring_jobs(false).database(location);
            if let Some(key) = users::sealing_key(cli.key_file.as_deref())? {
                b = b.sealing_key(key);
            }
            let mgr = b.open()?;
            Ok((Arc::new(mgr.clone()), Some(mgr)))
        }
        (None, Some(uri)) => {
            let creds = match &cli.user {
                Some(user) => {
                    let pw = users::password(&format!("Password of {user}"), false)?;
                    Some(crate::remote::Credentials::new(user.clone(), pw))
                }
                None => None,
            };
            let remote = match &cli.tls_fingerprint {
                Some(pin) if uri.trim().starts_with("ovm+tls://") => {
                    let identity = match &cli.client_certificate {
                        None => None,
                        Some(path) => {
                            let text = std::fs::read_to_string(path).map_err(|e| {
                                Error::invalid("client-certificate", format!("{}: {e}", path.display()))
                            })?;
                            let id: crate::agent::tls::Identity =
                                serde_json::from_str(&text).map_err(|e| {
                                    Error::invalid("client-certificate", format!("{}: {e}", path.display()))
                                })?;
                            id.validate()?;
                            Some(id)
                        }
                    };
                    let tls = crate::remote::TlsClient { pin: pin.clone(), identity };
                    crate::remote::RemoteManager::connect_tls(uri, &tls, creds)?
                }
                _ => crate::remote::RemoteManager::connect_as(uri, creds)?,
            };
            Ok((Arc::new(remote), None))
        }
        (None, None) => Err(Error::invalid(
            "manager",
            "say which manager: --db PATH, or --connect URI (or set OVM_CONNECT)",
        )),
    }
}

/// Runs one parsed command, appending what it prints to `out`.
pub fn run(cli: &Cli, out: &mut String) -> Result<()> {
    match &cli.command {
        Command::Serve(args) => return serve::run(args, cli.db.as_deref(), cli.key_file.as_deref()),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "ovm", &mut buf);
            out.push_str(&String::from_utf8_lossy(&buf));
            return Ok(());
        }
        Command::Certificate { path } => {
            let id = users::tls_identity(path, "ovm-client")?;
            out.push_str(&format!("{}\n", id.fingerprint()?));
            return Ok(());
        }
        Command::Schema { record } => {
            let text = match record {
                Some(r) => serde_json::to_string_pretty(&schema::schema(r)?)? + "\n",
                None => schema::names().join("\n") + "\n",
            };
            out.push_str(&text);
            return Ok(());
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .map_err(|e| Error::Internal { message: format!("cannot render the man page: {e}") })?;
            out.push_str(&String::from_utf8_lossy(&buf));
            return Ok(());
        }
        _ => {}
    }
    let (api, local) = open(cli)?;
    let ctx = Ctx { api: &*api, json: cli.json, out };
    let result = ctx.dispatch(&cli.command);
    if let Some(mgr) = local {
        // Jobs started with --no-wait run to their end before the database is let go.
        mgr.close(Duration::from_secs(24 * 3600))?;
    }
    result
}

struct Ctx<'a> {
    api: &'a dyn ManagerApi,
    json: bool,
    out: &'a mut String,
}

impl Ctx<'_> {
    fn dispatch(mut self, cmd: &Command) -> Result<()> {
        let api = self.api;
        match cmd {
            Command::Server(c) => match c {
                ServerCmd::List => self.list(ObjectKind::Server),
                ServerCmd::Show { server } => self.show(ObjectKind::Server, server),
                ServerCmd::Discover { address, password, wait } => {
                    self.job(api.discover_server(address.clone(), password.clone()), wait)
                }
                ServerCmd::Refresh { server, wait } => {
                    let s = self.server(server)?;
                    self.job(api.refresh_server(s), wait)
                }
                ServerCmd::Maintenance { server, mode, wait } => {
                    let s = self.server(server)?;
                    self.job(api.set_maintenance_mode(s, mode == "on"), wait)
                }
                ServerCmd::PowerOn { server, wait } => {
                    let s = self.server(server)?;
                    self.job(api.power_on_server(s, None), wait)
                }
                ServerCmd::PowerOff { server, wait } => {
                    let s = self.server(server)?;
                    self.job(api.power_off_server(s), wait)
                }
                ServerCmd::Release { server, wait } => {
                    let s = self.server(server)?;
                    self.job(api.release_ownership(s), wait)
                }
                ServerCmd::Delete { server, wait } => {
                    let s = self.server(server)?;
                    self.job(api.delete_object(ObjectRef::new(ObjectKind::Server, s)), wait)
                }
            },
            Command::Pool(c) => match c {
                PoolCmd::List => self.list(ObjectKind::ServerPool),
                PoolCmd::Show { pool } => self.show(ObjectKind::ServerPool, pool),
                PoolCmd::Create { name, description, pool_disk, virtual_ip, cluster_timeout, wait } => {
                    let pool_disk = match pool_disk {
                        Some(d) => Some(PhysicalDiskId(self.find(ObjectKind::PhysicalDisk, d)?)),
                        None => None,
                    };
                    let spec = PoolSpec {
                        description: description.clone(),
                        clustered: pool_disk.is_some(),
                        virtual_ip: *virtual_ip,
                        pool_disk,
                        cluster_timeout_secs: *cluster_timeout,
                        ..PoolSpec::new(name)
                    };
                    self.job(api.create_pool(spec), wait)
                }
                PoolCmd::Cluster { pool } => {
                    let p = self.pool(pool)?;
                    let status = api.pool_cluster_status(p)?;
                    self.emit(&status, |s| {
                        let mut t = table::Table::new(&["MEMBER", "MASTER", "HEARTBEAT"]);
                        if let Some(s) = s {
                            for m in &s.members {
                                let master = if s.master.as_deref() == Some(m) {
                                    format!("epoch {}", s.epoch)
                                } else {
                                    String::new()
                                };
                                let hb = s
                                    .heartbeats
                                    .iter()
                                    .find(|h| h.name == *m)
                                    .map(|h| format!("{:?}", h.heartbeat).to_lowercase())
                                    .unwrap_or_default();
                                t.row(vec![m.clone(), master, hb]);
                            }
                        }
                        Ok(t)
                    })
                }
                PoolCmd::AddServer { pool, server, wait } => {
                    let (p, s) = (self.pool(pool)?, self.server(server)?);
                    self.job(api.add_server_to_pool(p, s), wait)
                }
                PoolCmd::RemoveServer { pool, server, wait } => {
                    let (p, s) = (self.pool(pool)?, self.server(server)?);
                    self.job(api.remove_server_from_pool(p, s), wait)
                }
                PoolCmd::Delete { pool, wait } => {
                    let p = self.pool(pool)?;
                    self.job(api.delete_object(ObjectRef::new(ObjectKind::ServerPool, p)), wait)
                }
            },
            Command::Vm(c) => match c {
                VmCmd::List => self.list(ObjectKind::Vm),
                VmCmd::Show { vm } => self.show(ObjectKind::Vm, vm),
                VmCmd::Create {
                    name,
                    pool,
                    memory,
                    vcpus,
                    ha,
                    domain_type,
                    repo,
                    kernel,
                    cmdline,
                    disks,
                    wait,
                } => {
                    let repository = repo
                        .as_deref()
                        .map(|r| self.find(ObjectKind::Repository, r).map(RepositoryId))
                        .transpose()?;
                    let pv_kernel = match (kernel, repository) {
                        (Some(k), Some(r)) => {
                            let (kernel, initrd) = crate::manager::kernel_paths(r, k);
                            Some(PvKernel { kernel, initrd: Some(initrd), cmdline: cmdline.clone() })
                        }
                        _ => None,
                    };
                    let disks = disks
                        .iter()
                        .enumerate()
                        .map(|(slot, d)| {
                            let slot =
                                u8::try_from(slot).map_err(|_| Error::invalid("disk", "too many disks"))?;
                            Ok(DiskMapping { slot, target: DiskTarget::VirtualDisk(self.disk(d)?) })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let config = VmConfig {
                        domain_type: *domain_type,
                        vcpus: *vcpus,
                        max_vcpus: *vcpus,
                        memory_mib: *memory,
                        max_memory_mib: *memory,
                        high_availability: *ha,
                        disks,
                        pv_kernel,
                        ..VmConfig::default()
                    };
                    let mut spec = VmSpec::new(name, config);
                    spec.pool = pool.as_deref().map(|p| self.pool(p)).transpose()?;
                    spec.repository = repository;
                    self.job(api.create_vm(spec), wait)
                }
                VmCmd::Clone { vm, name, pool, wait } => {
                    let v = self.vm(vm)?;
                    let options = crate::manager::CloneOptions {
                        pool: pool.as_deref().map(|p| self.pool(p)).transpose()?,
                        ..Default::default()
                    };
                    self.job(api.clone_vm(v, name.clone(), options), wait)
                }
                VmCmd::ToTemplate { vm, name, wait } => {
                    let v = self.vm(vm)?;
                    self.job(api.vm_to_template(v, name.clone()), wait)
                }
                VmCmd::AddVnic { vm, network, wait } => {
                    let v = self.vm(vm)?;
                    let n = network
                        .as_deref()
                        .map(|n| self.find(ObjectKind::Network, n).map(NetworkId))
                        .transpose()?;
                    self.job(api.add_vnic(v, n), wait)
                }
                VmCmd::Start(t) => self.vm_job(t, |api, vm| api.start_vm(vm)),
                VmCmd::Stop(t) => self.vm_job(t, |api, vm| api.stop_vm(vm)),
                VmCmd::Kill(t) => self.vm_job(t, |api, vm| api.kill_vm(vm)),
                VmCmd::Restart(t) => self.vm_job(t, |api, vm| api.restart_vm(vm)),
                VmCmd::Pause(t) => self.vm_job(t, |api, vm| api.pause_vm(vm)),
                VmCmd::Suspend(t) => self.vm_job(t, |api, vm| api.suspend_vm(vm)),
                VmCmd::Resume(t) => self.vm_job(t, |api, vm| api.resume_vm(vm)),
                VmCmd::Delete(t) => self.vm_job(t, |api, vm| api.delete_vm(vm)),
                VmCmd::Console { vm } => {
                    let text = api.vm_console(self.vm(vm)?)?;
                    self.emit(&text, |t| {
                        let mut table = table::Table::new(&["CONSOLE"]);
                        table.row(vec![t.clone()]);
                        Ok(table)
                    })
                }
                VmCmd::Migrate { vm, server, wait } => {
                    let (v, s) = (self.vm(vm)?, self.server(server)?);
                    self.job(api.migrate_vm(v, s), wait)
                }
            },
            Command::Repo(c) => self.repository(c),
            Command::Storage(c) => self.storage(c),
            Command::Disk(c) => self.virtual_disk(c),
            Command::Template(c) => self.template(c),
            Command::Network(c) => self.network(c),
            Command::Job(c) => match c {
                JobCmd::List { limit } => {
                    let jobs = api.jobs(JobFilter { limit: Some(*limit), ..Default::default() })?;
                    self.emit(&jobs, |_| Ok(table::jobs(&jobs)))
                }
                JobCmd::Show { job } => {
                    let j = api.job(*job)?;
                    self.emit(&j, |_| Ok(table::jobs(std::slice::from_ref(&j))))
                }
                JobCmd::Wait { job, timeout } => {
                    let j = api.job(*job)?;
                    self.finish(j, timeout.map(Duration::from_secs))
                }
                JobCmd::Abort { job } => {
                    api.abort_job(*job)?;
                    let j = api.job(*job)?;
                    self.emit(&j, |_| Ok(table::jobs(std::slice::from_ref(&j))))
                }
            },
            Command::Event(c) => match c {
                EventCmd::List { unacknowledged, limit } => {
                    let filter = EventFilter {
                        acknowledged: unacknowledged.then_some(false),
                        limit: Some(*limit),
                        ..Default::default()
                    };
                    let events = api.events(filter)?;
                    let names = self.names()?;
                    self.emit(&events, |_| Ok(table::events(&events, &names)))
                }
                EventCmd::Ack { event, wait } => self.job(api.acknowledge_event(*event), wait),
                EventCmd::Watch { from, count } => self.watch(*from, *count),
            },
            Command::User(c) => self.user(c),
            Command::Audit(c) => self.audit(c),
            Command::Serve(_)
            | Command::Completions { .. }
            | Command::Man
            | Command::Schema { .. }
            | Command::Certificate { .. } => {
                Err(Error::Internal { message: "handled before a manager is opened".into() })
            }
        }
    }

    fn find(&self, kind: ObjectKind, key: &str) -> Result<uuid::Uuid> {
        Ok(self.api.find(kind, key.to_owned())?.uuid())
    }
    fn server(&self, key: &str) -> Result<ServerId> {
        self.find(ObjectKind::Server, key).map(ServerId)
    }
    fn pool(&self, key: &str) -> Result<PoolId> {
        self.find(ObjectKind::ServerPool, key).map(PoolId)
    }
    fn vm(&self, key: &str) -> Result<VmId> {
        self.find(ObjectKind::Vm, key).map(VmId)
    }

    /// Names of the objects a table refers to (servers, pools, VMs, repositories).
    fn names(&self) -> Result<table::Names> {
        let mut names = table::Names::new();
        for kind in [ObjectKind::Server, ObjectKind::ServerPool, ObjectKind::Vm, ObjectKind::Repository] {
            for o in self.api.objects(kind)? {
                names.insert(o.uuid(), o.name().to_owned());
            }
        }
        Ok(names)
    }

    /// Prints `value` as JSON, or the table `table` makes.
    fn emit<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
        table: impl FnOnce(&T) -> Result<table::Table>,
    ) -> Result<()> {
        let text = if self.json { table::json(value)? } else { table(value)?.render() };
        self.out.push_str(&text);
        Ok(())
    }

    fn list(&mut self, kind: ObjectKind) -> Result<()> {
        let mut objs = self.api.objects(kind)?;
        objs.sort_by(|a, b| a.name().cmp(b.name()).then(a.uuid().cmp(&b.uuid())));
        let values = objs.iter().map(table::object_json).collect::<Result<Vec<_>>>()?;
        let names = if self.json { table::Names::new() } else { self.names()? };
        self.emit(&values, |_| Ok(table::objects(kind, &objs, &names)))
    }

    fn show(&mut self, kind: ObjectKind, key: &str) -> Result<()> {
        let o = self.api.find(kind, key.to_owned())?;
        let v = table::object_json(&o)?;
        self.emit(&v, |v| Ok(table::fields(v)))
    }

    fn vm_job(&mut self, t: &VmTarget, f: impl FnOnce(&dyn ManagerApi, VmId) -> Result<Job>) -> Result<()> {
        let vm = self.vm(&t.vm)?;
        let job = f(self.api, vm);
        self.job(job, &t.wait)
    }

    /// A job was submitted: print its id (`--no-wait`) or wait for it.
    fn job(&mut self, submitted: Result<Job>, wait: &WaitArgs) -> Result<()> {
        let job = submitted?;
        if wait.no_wait {
            let text = if self.json { table::json(&job)? } else { format!("{}\n", job.id) };
            self.out.push_str(&text);
            return Ok(());
        }
        self.finish(job, wait.timeout.map(Duration::from_secs))
    }

    /// Waits for a job (with progress on a terminal), prints its record and returns its error.
    fn finish(&mut self, job: Job, timeout: Option<Duration>) -> Result<()> {
        let end = wait_with_progress(self.api, job, timeout)?;
        self.emit(&end, |j| Ok(table::jobs(std::slice::from_ref(j))))?;
        match end.error {
            Some(e) if end.state != JobState::Completed => Err(e),
            _ => Ok(()),
        }
    }

    fn watch(&mut self, from: Option<u64>, count: Option<usize>) -> Result<()> {
        let mut feed = self.api.subscribe_changes(from)?;
        let mut seen = 0;
        let mut stdout = std::io::stdout().lock();
        while count.is_none_or(|c| seen < c) {
            if let Some(c) = feed.next_change(Duration::from_secs(1))? {
                let line = serde_json::to_string(&c)?;
                // Printed as they come, not at exit.
                writeln!(stdout, "{line}").and_then(|()| stdout.flush()).map_err(|_| Error::Closed)?;
                seen += 1;
            }
        }
        Ok(())
    }
}

/// Waits for `job` to end, at most `timeout`; on a terminal, draws its progress on stderr.
fn wait_with_progress(api: &dyn ManagerApi, job: Job, timeout: Option<Duration>) -> Result<Job> {
    let tty = std::io::stderr().is_terminal();
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut current = job;
    loop {
        if current.state.is_terminal() {
            if tty {
                eprintln!();
            }
            return Ok(current);
        }
        if tty {
            eprint!("\r[{:>3.0}%] {} {}\x1b[K", current.progress * 100.0, current.summary, current.message);
        }
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(Error::Timeout {
                what: format!("job {}", current.id),
                millis: timeout.map_or(0, |t| t.as_millis() as u64),
            });
        }
        let step = left.map_or(Duration::from_millis(500), |l| l.min(Duration::from_millis(500)));
        current = match api.wait_job(current.id, Some(step.as_millis() as u64)) {
            Ok(j) => j,
            Err(Error::Timeout { .. }) => api.job(current.id)?,
            Err(e) => return Err(e),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_are_distinct_and_clear_of_usage() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            let c = exit_code(k);
            assert!(seen.insert(c));
            assert!(c > EXIT_OUTPUT && c < 126, "{k}: {c}");
        }
        assert_eq!(exit_code(ErrorKind::NotFound), 11);
    }

    #[test]
    fn a_manager_must_be_named() {
        let cli = Cli::try_parse_from(["ovm", "vm", "list"]).unwrap();
        if cli.connect.is_none() {
            let mut out = String::new();
            assert_eq!(run(&cli, &mut out).unwrap_err().kind(), ErrorKind::InvalidArgument);
        }
        // --db wins over a service named too (as by OVM_CONNECT in the environment).
        let both = ["ovm", "--db", "/nonexistent/dir/m.db", "--connect", "ovm+unix:///x", "vm", "list"];
        let mut out = String::new();
        assert_eq!(
            run(&Cli::try_parse_from(both).unwrap(), &mut out).unwrap_err().kind(),
            ErrorKind::Database
        );
    }

    #[test]
    fn commands_run_on_a_database() {
        let dir = std::env::temp_dir().join(format!("ovm-cli-db-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("m.db");
        let run_line = |line: &str| {
            let mut args = vec!["ovm".to_owned(), "--db".into(), db.display().to_string()];
            args.extend(line.split_whitespace().map(str::to_owned));
            let cli = Cli::try_parse_from(args).unwrap();
            let mut out = String::new();
            run(&cli, &mut out).map(|()| out)
        };
        run_line("pool create p1").unwrap();
        run_line("vm create web01 --pool p1 --memory 1024").unwrap();
        let list = run_line("vm list").unwrap();
        assert!(list.starts_with("NAME "), "{list}");
        assert!(list.contains("web01") && list.contains("p1") && list.contains("1024"), "{list}");
        let json: serde_json::Value = serde_json::from_str(&run_line("--json pool list").unwrap()).unwrap();
        assert_eq!(json[0]["name"], "p1");
        let err = run_line("vm start nope").unwrap_err();
        assert_eq!(exit_code(err.kind()), 11);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
