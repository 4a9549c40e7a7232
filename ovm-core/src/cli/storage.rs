//! `ovm storage`, `ovm repo`, `ovm disk`, `ovm template` and `ovm network`: file servers and their
//! file systems, repositories and what they hold, and networks.

use std::collections::BTreeSet;

use clap::Subcommand;

use super::{table, Ctx, WaitArgs};
use crate::manager::{CloneOptions, FileServerSpec, NetworkSpec, RepositorySpec};
use crate::model::*;
use crate::{Error, Result};

/// `ovm storage …`: file servers (NFS, a server's local file system) and their file systems.
#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// List file servers.
    List,
    /// Show one file server.
    Show {
        /// Name or id.
        file_server: String,
    },
    /// Register an NFS server; its exports are discovered through the servers named.
    RegisterNfs {
        /// Its name in ovm.
        name: String,
        /// Its host name or IP address.
        host: String,
        /// A server that mounts it to discover and refresh its exports (repeatable).
        #[arg(long = "via", value_name = "SERVER", required = true)]
        via: Vec<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Register a server's local file system.
    RegisterLocal {
        /// Its name in ovm.
        name: String,
        /// The server, by name or id.
        #[arg(long)]
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List a file server's file systems.
    FileSystems {
        /// The file server, by name or id.
        file_server: String,
    },
    /// Discover a file server's file systems again.
    Refresh {
        /// Name or id.
        file_server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Forget a file server.
    Delete {
        /// Name or id.
        file_server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `ovm repo …`
#[derive(Debug, Subcommand)]
pub enum RepoCmd {
    /// List repositories.
    List,
    /// Show one repository.
    Show {
        /// Name or id.
        repo: String,
    },
    /// Create a repository on a file system.
    Create {
        /// Its name.
        name: String,
        /// The file system, by name (e.g. host:/export) or id.
        #[arg(long)]
        file_system: String,
        /// The pool that owns it.
        #[arg(long)]
        pool: Option<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Present a repository to servers (each mounts it).
    Present {
        /// The repository, by name or id.
        repo: String,
        /// The servers, by name or id.
        #[arg(required = true)]
        servers: Vec<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop presenting a repository to a server.
    Unpresent {
        /// The repository, by name or id.
        repo: String,
        /// The server, by name or id.
        server: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Import a PV boot kernel (and initrd) from a URL or a file on a server the repository is
    /// presented to.
    ImportKernel {
        /// The repository, by name or id.
        repo: String,
        /// The kernel's name in the repository (VMs name it with `vm create --kernel`).
        name: String,
        /// Where the kernel is.
        #[arg(long)]
        kernel: String,
        /// Where the initrd is.
        #[arg(long)]
        initrd: Option<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Import a template archive (.tgz of vm.cfg and disks, or an OVA) from a URL.
    ImportTemplate {
        /// The repository, by name or id.
        repo: String,
        /// Where the archive is.
        source: String,
        /// The template's name (default: the archive's).
        #[arg(long)]
        name: Option<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Import an assembly (an OVA of several VMs) from a URL.
    ImportAssembly {
        /// The repository, by name or id.
        repo: String,
        /// Where the assembly is.
        source: String,
        /// Its name (default: the archive's).
        #[arg(long)]
        name: Option<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Import an ISO image from a URL.
    ImportIso {
        /// The repository, by name or id.
        repo: String,
        /// The ISO's name.
        name: String,
        /// Where the image is.
        source: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete an empty repository.
    Delete {
        /// Name or id.
        repo: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `ovm disk …`: virtual disks.
#[derive(Debug, Subcommand)]
pub enum DiskCmd {
    /// List virtual disks.
    List,
    /// Show one virtual disk.
    Show {
        /// Name or id.
        disk: String,
    },
    /// Create a virtual disk (sparse) in a repository.
    Create {
        /// Its name.
        name: String,
        /// The repository, by name or id.
        #[arg(long)]
        repo: String,
        /// Its size, MiB.
        #[arg(long, value_name = "MIB")]
        size: u64,
        /// Several VMs may map it at once.
        #[arg(long)]
        shareable: bool,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a virtual disk no VM maps.
    Delete {
        /// Name or id.
        disk: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `ovm template …`
#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// List templates.
    List,
    /// Show one template.
    Show {
        /// Name or id.
        template: String,
    },
    /// Create a template from a VM configuration (a JSON file, the `config` of `ovm --json vm show`)
    /// and virtual disks.
    Create {
        /// Its name.
        name: String,
        /// The repository, by name or id.
        #[arg(long)]
        repo: String,
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
        /// Its disks, by name or id (repeatable).
        #[arg(long = "disk", value_name = "DISK")]
        disks: Vec<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Clone a template into a new VM (its disks are copied, thinly where the file system can).
    Clone {
        /// The template, by name or id.
        template: String,
        /// The new VM's name.
        name: String,
        /// The pool the VM runs in.
        #[arg(long)]
        pool: Option<String>,
        /// The repository for the VM's disks (default: the template's).
        #[arg(long)]
        repo: Option<String>,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a template and its disks.
    Delete {
        /// Name or id.
        template: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `ovm network …`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// List networks.
    List,
    /// Show one network.
    Show {
        /// Name or id.
        network: String,
    },
    /// Create a network: a bridge on the servers of its ports.
    Create {
        /// Its name.
        name: String,
        /// The bridge's name on servers.
        #[arg(long)]
        bridge: String,
        /// A function it carries: management, live-migrate, cluster-heartbeat, vm, storage
        /// (repeatable).
        #[arg(long = "function", value_name = "FUNCTION", value_parser = parse_function)]
        functions: Vec<NetworkFunction>,
        /// A port, as SERVER:INTERFACE or its id (repeatable).
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<String>,
        /// The MTU.
        #[arg(long, default_value_t = 1500)]
        mtu: u16,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Add a port to a network.
    AddPort {
        /// The network, by name or id.
        network: String,
        /// The port, as SERVER:INTERFACE or its id.
        port: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Remove a port from a network.
    RemovePort {
        /// The network, by name or id.
        network: String,
        /// The port, as SERVER:INTERFACE or its id.
        port: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a network.
    Delete {
        /// Name or id.
        network: String,
        /// How to wait for the job.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

fn parse_function(s: &str) -> std::result::Result<NetworkFunction, String> {
    Ok(match s {
        "management" => NetworkFunction::Management,
        "live-migrate" => NetworkFunction::LiveMigrate,
        "cluster-heartbeat" => NetworkFunction::ClusterHeartbeat,
        "vm" => NetworkFunction::VirtualMachine,
        "storage" => NetworkFunction::Storage,
        _ => return Err("one of management, live-migrate, cluster-heartbeat, vm, storage".into()),
    })
}

/// `--type` of `ovm vm create`.
pub(super) fn parse_domain_type(s: &str) -> std::result::Result<DomainType, String> {
    Ok(match s {
        "pv" => DomainType::Pv,
        "hvm" => DomainType::Hvm,
        "pvhvm" => DomainType::PvHvm,
        "pvh" => DomainType::Pvh,
        _ => return Err("one of pv, hvm, pvhvm, pvh".into()),
    })
}

impl Ctx<'_> {
    fn delete(&mut self, kind: ObjectKind, key: &str, wait: &WaitArgs) -> Result<()> {
        let id = self.find(kind, key)?;
        let job = self.api.delete_object(ObjectRef::new(kind, id));
        self.job(job, wait)
    }

    fn repo(&self, key: &str) -> Result<RepositoryId> {
        self.find(ObjectKind::Repository, key).map(RepositoryId)
    }

    pub(super) fn disk(&self, key: &str) -> Result<VirtualDiskId> {
        self.find(ObjectKind::VirtualDisk, key).map(VirtualDiskId)
    }

    fn port(&self, key: &str) -> Result<NetworkMember> {
        self.find(ObjectKind::Port, key).map(|id| NetworkMember::Port(PortId(id)))
    }

    pub(super) fn storage(&mut self, cmd: &StorageCmd) -> Result<()> {
        let api = self.api;
        match cmd {
            StorageCmd::List => self.list(ObjectKind::FileServer),
            StorageCmd::Show { file_server } => self.show(ObjectKind::FileServer, file_server),
            StorageCmd::RegisterNfs { name, host, via, wait } => {
                let servers = via.iter().map(|s| self.server(s)).collect::<Result<Vec<_>>>()?;
                self.job(api.register_file_server(FileServerSpec::nfs(name, host, servers)), wait)
            }
            StorageCmd::RegisterLocal { name, server, wait } => {
                let s = self.server(server)?;
                self.job(api.register_file_server(FileServerSpec::local(name, s)), wait)
            }
            StorageCmd::FileSystems { file_server } => {
                let fs = FileServerId(self.find(ObjectKind::FileServer, file_server)?);
                let mut systems = api.file_systems_of(fs)?;
                systems.sort_by(|a, b| a.name.cmp(&b.name));
                let values = systems
                    .iter()
                    .cloned()
                    .map(|f| table::object_json(&Object::FileSystem(f)))
                    .collect::<Result<Vec<_>>>()?;
                self.emit(&values, |_| {
                    let mut t = table::Table::new(&["NAME", "ID", "PATH", "SIZE_BYTES", "FREE_BYTES"]);
                    for f in &systems {
                        t.row(vec![
                            f.name.clone(),
                            f.id.to_string(),
                            f.path.clone(),
                            f.size_bytes.to_string(),
                            f.free_bytes.to_string(),
                        ]);
                    }
                    Ok(t)
                })
            }
            StorageCmd::Refresh { file_server, wait } => {
                let fs = FileServerId(self.find(ObjectKind::FileServer, file_server)?);
                self.job(api.refresh_file_server(fs), wait)
            }
            StorageCmd::Delete { file_server, wait } => {
                self.delete(ObjectKind::FileServer, file_server, wait)
            }
        }
    }

    pub(super) fn repository(&mut self, cmd: &RepoCmd) -> Result<()> {
        let api = self.api;
        match cmd {
            RepoCmd::List => self.list(ObjectKind::Repository),
            RepoCmd::Show { repo } => self.show(ObjectKind::Repository, repo),
            RepoCmd::Create { name, file_system, pool, wait } => {
                let fs = FileSystemId(self.find(ObjectKind::FileSystem, file_system)?);
                let spec = RepositorySpec {
                    name: name.clone(),
                    backing: RepositoryBacking::FileSystem(fs),
                    owner_pool: pool.as_deref().map(|p| self.pool(p)).transpose()?,
                    capacity_bytes: 0,
                };
                self.job(api.create_repository(spec), wait)
            }
            RepoCmd::Present { repo, servers, wait } => {
                let r = self.repo(repo)?;
                let servers = servers.iter().map(|s| self.server(s)).collect::<Result<Vec<_>>>()?;
                self.job(api.present_repository_to(r, servers), wait)
            }
            RepoCmd::Unpresent { repo, server, wait } => {
                let (r, s) = (self.repo(repo)?, self.server(server)?);
                self.job(api.unpresent_repository(r, s), wait)
            }
            RepoCmd::ImportKernel { repo, name, kernel, initrd, wait } => {
                let r = self.repo(repo)?;
                self.job(api.import_kernel(r, name.clone(), kernel.clone(), initrd.clone()), wait)
            }
            RepoCmd::ImportTemplate { repo, source, name, wait } => {
                let r = self.repo(repo)?;
                self.job(api.import_template(r, source.clone(), name.clone()), wait)
            }
            RepoCmd::ImportAssembly { repo, source, name, wait } => {
                let r = self.repo(repo)?;
                self.job(api.import_assembly(r, source.clone(), name.clone()), wait)
            }
            RepoCmd::ImportIso { repo, name, source, wait } => {
                let r = self.repo(repo)?;
                self.job(api.import_iso(r, name.clone(), source.clone()), wait)
            }
            RepoCmd::Delete { repo, wait } => self.delete(ObjectKind::Repository, repo, wait),
        }
    }

    pub(super) fn virtual_disk(&mut self, cmd: &DiskCmd) -> Result<()> {
        match cmd {
            DiskCmd::List => self.list(ObjectKind::VirtualDisk),
            DiskCmd::Show { disk } => self.show(ObjectKind::VirtualDisk, disk),
            DiskCmd::Create { name, repo, size, shareable, wait } => {
                let r = self.repo(repo)?;
                let bytes = size
                    .checked_mul(1 << 20)
                    .ok_or_else(|| Error::invalid("size", format!("{size} MiB is too large")))?;
                self.job(self.api.create_virtual_disk(r, name.clone(), bytes, *shareable), wait)
            }
            DiskCmd::Delete { disk, wait } => {
                let d = self.disk(disk)?;
                self.job(self.api.delete_virtual_disk(d), wait)
            }
        }
    }

    pub(super) fn template(&mut self, cmd: &TemplateCmd) -> Result<()> {
        let api = self.api;
        match cmd {
            TemplateCmd::List => self.list(ObjectKind::Template),
            TemplateCmd::Show { template } => self.show(ObjectKind::Template, template),
            TemplateCmd::Create { name, repo, config, disks, wait } => {
                let r = self.repo(repo)?;
                let text = std::fs::read_to_string(config).map_err(|e| {
                    Error::invalid("config", format!("cannot read {}: {e}", config.display()))
                })?;
                let config: VmConfig = serde_json::from_str(&text)
                    .map_err(|e| Error::invalid("config", format!("{}: {e}", config.display())))?;
                let disks = disks.iter().map(|d| self.disk(d)).collect::<Result<Vec<_>>>()?;
                self.job(api.create_template(r, name.clone(), config, disks), wait)
            }
            TemplateCmd::Clone { template, name, pool, repo, wait } => {
                let t = TemplateId(self.find(ObjectKind::Template, template)?);
                let options = CloneOptions {
                    pool: pool.as_deref().map(|p| self.pool(p)).transpose()?,
                    repository: repo.as_deref().map(|r| self.repo(r)).transpose()?,
                    ..CloneOptions::default()
                };
                self.job(api.clone_template(t, name.clone(), options), wait)
            }
            TemplateCmd::Delete { template, wait } => {
                let t = TemplateId(self.find(ObjectKind::Template, template)?);
                self.job(api.delete_template(t), wait)
            }
        }
    }

    pub(super) fn network(&mut self, cmd: &NetworkCmd) -> Result<()> {
        let api = self.api;
        match cmd {
            NetworkCmd::List => self.list(ObjectKind::Network),
            NetworkCmd::Show { network } => self.show(ObjectKind::Network, network),
            NetworkCmd::Create { name, bridge, functions, ports, mtu, wait } => {
                let members = ports.iter().map(|p| self.port(p)).collect::<Result<Vec<_>>>()?;
                let spec = NetworkSpec {
                    name: name.clone(),
                    functions: functions.iter().copied().collect::<BTreeSet<_>>(),
                    members,
                    bridge: bridge.clone(),
                    mtu: *mtu,
                };
                self.job(api.create_network(spec), wait)
            }
            NetworkCmd::AddPort { network, port, wait } => {
                let n = NetworkId(self.find(ObjectKind::Network, network)?);
                let p = self.port(port)?;
                self.job(api.add_network_member(n, p), wait)
            }
            NetworkCmd::RemovePort { network, port, wait } => {
                let n = NetworkId(self.find(ObjectKind::Network, network)?);
                let p = self.port(port)?;
                self.job(api.remove_network_member(n, p), wait)
            }
            NetworkCmd::Delete { network, wait } => self.delete(ObjectKind::Network, network, wait),
        }
    }
}
