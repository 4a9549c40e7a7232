//! Protocol version 1: the messages, and wire types of their own for what they carry.
//!
//! The wire types mirror what the driver seam's structs were when version 1 was fixed, and convert
//! to and from the seam's types; the JSON of every message is pinned by the `golden_frames` test. A
//! change that alters that JSON is a new protocol version, not an edit here. Version 1 carries Xen
//! device names for disks (`xvda`, `hda`) and always a bridge name, so the conversions name devices
//! and the default bridge the way the Xen driver does ([`crate::xen::naming`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver;
use crate::model::{self, VmId};
use crate::xen::naming;
use crate::Error;

/// A message from the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message of a connection.
    Hello {
        /// Oldest protocol version the manager speaks.
        min_version: u32,
        /// Newest protocol version the manager speaks.
        max_version: u32,
        /// The manager's id.
        manager_id: String,
        /// The manager means to take the agent over from the manager that owns it (with the
        /// agent password, [`Op::TakeOwnership`]): the agent then answers
        /// [`Ownership::OwnedByAnother`] instead of refusing the connection.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        take_over: bool,
    },
    /// A request.
    Request {
        /// Chosen by the manager; echoed in the response.
        id: u64,
        /// What to do.
        op: Op,
    },
    /// First (and only) message of a migration connection from a source agent: the ticket it
    /// holds. Once the agent answers [`AgentMessage::Receiving`], the connection carries the
    /// domain's migration stream.
    Migration {
        /// The ticket's token.
        token: String,
        /// The VM the ticket admits.
        vm: VmId,
        /// What the connection will carry: a live migration stream (absent) or a saved domain. A
        /// ticket prepared for the other is refused.
        #[serde(default, skip_serializing_if = "MigrationMode::is_live")]
        mode: MigrationMode,
    },
    /// First (and only) message of a console connection from the owning manager: once the agent
    /// answers [`AgentMessage::ConsoleOpen`], the connection carries the RFB (VNC) protocol of
    /// the VM's graphical console ([`crate::driver::DomainOps::open_console`]).
    Console {
        /// The VM.
        vm: VmId,
    },
}

/// Declares every remote operation once. From one declaration
/// `method => Variant { fields } -> ReplyVariant(Type);` come:
///
/// * the [`Op`] variant (its JSON tag is the variant name in snake case);
/// * the [`Client`] method that sends it and unpacks the expected [`Reply`];
/// * the [`Serve`] method an agent implements, and the arm of [`dispatch`] that calls it and packs
///   its value into the reply.
macro_rules! remote_ops {
    ($(
        $(#[$doc:meta])*
        $method:ident => $variant:ident $({ $( $(#[$fdoc:meta])* $field:ident : $fty:ty ),* $(,)? })?
            -> $reply:ident $(($rty:ty))? ;
    )*) => {
        /// An operation requested by the manager.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
        pub enum Op {
            $( $(#[$doc])* $variant $({ $( $(#[$fdoc])* $field: $fty ),* })?, )*
        }

        /// The manager's side of every operation: send it, wait, and unpack the expected reply.
        pub trait Client {
            /// Send `op` and wait for its answer.
            fn call(&self, op: Op) -> Result<Reply, Error>;
            /// The error for an answer of the wrong kind.
            fn unexpected(&self, reply: Reply) -> Error;
            $(
                $(#[$doc])*
                fn $method(&self $($(, $field: $fty)*)?) -> Result<remote_ops!(@ret $($rty)?), Error> {
                    let r = self.call(Op::$variant $({ $($field),* })?)?;
                    remote_ops!(@unpack self, r, $reply $(, $rty)?)
                }
            )*
        }

        /// The agent's side of every operation.
        pub trait Serve {
            $(
                $(#[$doc])*
                fn $method(&self $($(, $field: $fty)*)?) -> Result<remote_ops!(@ret $($rty)?), Error>;
            )*
        }

        /// Runs `op` on `server` and packs the outcome into its reply.
        pub fn dispatch<S: Serve + ?Sized>(server: &S, op: Op) -> Result<Reply, Error> {
            Ok(match op {
                $(
                    Op::$variant $({ $($field),* })? => {
                        remote_ops!(@pack $reply, server.$method($($($field),*)?) $(, $rty)?)
                    }
                )*
            })
        }
    };
    (@ret) => { () };
    (@ret $t:ty) => { $t };
    (@unpack $c:expr, $r:expr, $reply:ident) => {
        match $r {
            Reply::$reply => Ok(()),
            other => Err($c.unexpected(other)),
        }
    };
    (@unpack $c:expr, $r:expr, $reply:ident, $t:ty) => {
        match $r {
            Reply::$reply(v) => Ok(v),
            other => Err($c.unexpected(other)),
        }
    };
    (@pack $reply:ident, $v:expr) => {{
        $v?;
        Reply::$reply
    }};
    (@pack $reply:ident, $v:expr, $t:ty) => {
        Reply::$reply($v?)
    };
}

remote_ops! {
    /// Present the agent password and take ownership: from then on only this manager's certificate
    /// is accepted. Allowed when unowned (or already owned by the caller), or, with `take_over`,
    /// from another manager (a manager rebuilt after losing its database; the agent records it).
    take_ownership => TakeOwnership {
        /// The agent password.
        password: String,
        /// Take the agent from the manager that owns it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        take_over: bool,
    } -> Done;
    /// Return the agent to unowned.
    release_ownership => ReleaseOwnership -> Done;
    /// Host information.
    host_info => HostInfo -> HostInfo(HostInfo);
    /// Current load.
    load => Load -> Load(HostLoad);
    /// Resident domains.
    list_domains => ListDomains -> Domains(Vec<DomainStatus>);
    /// Build and start a domain.
    create_domain => CreateDomain {
        /// The domain.
        spec: Box<DomainSpec>,
    } -> Domid(u32);
    /// Graceful shutdown with a timeout.
    shutdown => Shutdown {
        /// VM.
        vm: VmId,
        /// Timeout, ms.
        timeout_ms: u64,
    } -> Done;
    /// Graceful reboot with a timeout.
    reboot => Reboot {
        /// VM.
        vm: VmId,
        /// Timeout, ms.
        timeout_ms: u64,
    } -> Done;
    /// Destroy at once.
    destroy => Destroy {
        /// VM.
        vm: VmId,
    } -> Done;
    /// Pause.
    pause => Pause {
        /// VM.
        vm: VmId,
    } -> Done;
    /// Unpause.
    unpause => Unpause {
        /// VM.
        vm: VmId,
    } -> Done;
    /// Save to a file and destroy.
    suspend => Suspend {
        /// VM.
        vm: VmId,
        /// Path on the server.
        path: String,
    } -> Done;
    /// Restore from a file.
    restore => Restore {
        /// The domain.
        spec: Box<DomainSpec>,
        /// Path on the server.
        path: String,
    } -> Domid(u32);
    /// Destination side of a migration: check that the domain may come here and issue a one-time
    /// ticket for the agent whose certificate has the fingerprint `source`.
    prepare_incoming => PrepareIncoming {
        /// The domain to expect.
        spec: Box<DomainSpec>,
        /// Fingerprint of the source agent's certificate (the manager's pin).
        source: String,
        /// What to expect: a live migration stream (absent) or a saved domain (a cold move).
        #[serde(default, skip_serializing_if = "MigrationMode::is_live")]
        mode: MigrationMode,
    } -> Ticket(IncomingTicket);
    /// Destination side: give up a prepared migration.
    cancel_incoming => CancelIncoming {
        /// The ticket's token.
        token: String,
    } -> Done;
    /// Source side: send a domain to the agent that issued a ticket, over mutual TLS between the
    /// agents; answered once the domain runs there (or still runs here, on failure).
    send_domain => SendDomain {
        /// VM.
        vm: VmId,
        /// The destination agent's migration address (`host:port`), from its ticket.
        destination: String,
        /// The ticket's token.
        token: String,
        /// Fingerprint of the destination agent's certificate (the manager's pin).
        peer: String,
        /// Live (the domain keeps running while its memory is copied).
        live: bool,
        /// How the ticket was prepared: a live migration stream (absent) or a cold move (the
        /// domain is saved paused into the connection and its paused copy stays here once the
        /// destination runs it).
        #[serde(default, skip_serializing_if = "MigrationMode::is_live")]
        mode: MigrationMode,
    } -> Done;
    /// Memory target.
    set_memory => SetMemory {
        /// VM.
        vm: VmId,
        /// MiB.
        memory_mib: u64,
    } -> Done;
    /// Online vCPUs.
    set_vcpus => SetVcpus {
        /// VM.
        vm: VmId,
        /// Count.
        vcpus: u32,
    } -> Done;
    /// Console output (the last [`super::MAX_CONSOLE`] bytes).
    console => Console {
        /// VM.
        vm: VmId,
    } -> Console(String);
    /// Power the host off.
    power_off => PowerOff -> Done;
    /// Send a Wake-on-LAN magic packet out of one of the host's interfaces.
    wake_on_lan => WakeOnLan {
        /// The MAC of the NIC to wake.
        mac: String,
        /// The interface to send it from (the management LAN's bridge).
        interface: String,
    } -> Done;
    /// Take a clustered pool's virtual IP on one of the host's interfaces: ARP probes (RFC 5227),
    /// the address added, gratuitous ARP ([`crate::driver::HostOps::claim_virtual_ip`]).
    claim_virtual_ip => ClaimVirtualIp {
        /// The interface (the management LAN's bridge).
        interface: String,
        /// The address.
        address: std::net::Ipv4Addr,
        /// Its prefix length (the management subnet's).
        prefix: u8,
    } -> Done;
    /// Give the virtual IP up (idempotent).
    release_virtual_ip => ReleaseVirtualIp {
        /// The interface.
        interface: String,
        /// The address.
        address: std::net::Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    } -> Done;
    /// Join a clustered pool's cluster, or bring its membership up to date
    /// ([`crate::driver::ClusterOps::join`]). The spec is the seam's type, frozen as part of v1
    /// (pinned by `golden_frames`).
    cluster_join => ClusterJoin {
        /// The cluster, its members, the pool file system's disk, timeouts and virtual IP.
        spec: driver::ClusterSpec,
    } -> Cluster(driver::ClusterStatus);
    /// Leave the cluster the server is in (leaving none succeeds).
    cluster_leave => ClusterLeave -> Done;
    /// The cluster the server is in, if any.
    cluster_status => ClusterStatus -> ClusterState(Option<driver::ClusterStatus>);
    /// Create a sparse file.
    storage_create => StorageCreate {
        /// Path.
        path: String,
        /// Size.
        size_bytes: u64,
    } -> Done;
    /// Copy a file.
    storage_copy => StorageCopy {
        /// From.
        from: String,
        /// To.
        to: String,
    } -> Done;
    /// Delete a file.
    storage_delete => StorageDelete {
        /// Path.
        path: String,
    } -> Done;
    /// Restart the agent process (its supervisor starts it again); domains keep running.
    restart_agent => RestartAgent -> Done;
    /// The file systems a file server offers, with their real sizes (this server as its admin
    /// server).
    storage_discover => StorageDiscover {
        /// The file server.
        server: FileServerAccess,
    } -> FileSystems(Vec<DiscoveredFileSystem>);
    /// Mount a file system at a repository's mount point.
    storage_mount => StorageMount {
        /// What.
        source: MountSource,
        /// Where.
        mount_point: String,
    } -> Done;
    /// Unmount a repository's mount point.
    storage_unmount => StorageUnmount {
        /// Where.
        mount_point: String,
    } -> Done;
    /// The repositories' file systems mounted.
    storage_mounts => StorageMounts -> Mounts(Vec<FileSystemMount>);
    /// Write a repository's layout and marker on the file system mounted at `mount_point`.
    storage_init_repository => StorageInitRepository {
        /// Where.
        mount_point: String,
        /// The repository's id.
        repository: String,
    } -> Done;
    /// Remove a repository's marker from the file system mounted at `mount_point`.
    storage_remove_repository => StorageRemoveRepository {
        /// Where.
        mount_point: String,
        /// The repository's id.
        repository: String,
    } -> Done;
    /// Capacity and usage of the file system holding a path.
    storage_usage => StorageUsage {
        /// Path.
        path: String,
    } -> Usage(FsUsage);
    /// Grow or shrink a file.
    storage_resize => StorageResize {
        /// Path.
        path: String,
        /// Size.
        size_bytes: u64,
    } -> Done;
    /// Size of a file (`None`: no file there).
    storage_file_size => StorageFileSize {
        /// Path.
        path: String,
    } -> FileSize(Option<u64>);
    /// The server's Ethernet ports.
    net_ports => NetPorts -> Ports(Vec<EthernetPort>);
    /// The server's bonds, VLAN interfaces, bridges and addresses.
    net_config => NetConfig -> NetConfig(driver::NetworkConfig);
    /// Apply network changes, all or nothing. The agent protects the link the request arrives
    /// on: a change that would cut it is refused unless forced, and a forced one is undone unless
    /// confirmed over a new connection in time.
    net_apply => NetApply {
        /// The changes, in order.
        changes: Vec<driver::NetChange>,
        /// Force and confirmation time (the management address is the agent's to fill in).
        opts: driver::ApplyOptions,
    } -> NetApplied(driver::Applied);
    /// Confirm a tentative network change.
    net_confirm => NetConfirm {
        /// Its id.
        txn: u64,
    } -> NetTxn(driver::TxnState);
    /// The state of a tentative network change.
    net_txn_state => NetTxnState {
        /// Its id.
        txn: u64,
    } -> NetTxn(driver::TxnState);
    /// Plug a NIC into a running domain.
    nic_attach => NicAttach {
        /// The domain.
        vm: VmId,
        /// The NIC.
        nic: NicSpec,
    } -> Done;
    /// Unplug a NIC from a running domain.
    nic_detach => NicDetach {
        /// The domain.
        vm: VmId,
        /// Its MAC.
        mac: String,
    } -> Done;
    /// A running domain's NICs: (MAC, bridge, connected).
    domain_nics => DomainNics {
        /// The domain.
        vm: VmId,
    } -> Nics(Vec<(String, String, bool)>);
    /// Leave a message for a running guest ([`crate::driver::DomainOps::send_guest_message`]).
    send_guest_message => SendGuestMessage {
        /// The domain.
        vm: VmId,
        /// The message's key.
        key: String,
        /// Its value.
        value: String,
    } -> Done;
    /// The messages left for a running guest.
    guest_messages => GuestMessages {
        /// The domain.
        vm: VmId,
    } -> GuestData(std::collections::BTreeMap<String, String>);
    /// Take a message back.
    remove_guest_message => RemoveGuestMessage {
        /// The domain.
        vm: VmId,
        /// The message's key.
        key: String,
    } -> Done;
    /// The values a running guest reports.
    guest_data => GuestData {
        /// The domain.
        vm: VmId,
    } -> GuestData(std::collections::BTreeMap<String, String>);
    /// This server's iSCSI initiator name.
    iscsi_initiator => IscsiInitiator -> Initiator(String);
    /// The targets an iSCSI portal offers this server.
    iscsi_discover => IscsiDiscover {
        /// `host[:port]`.
        portal: String,
    } -> Targets(Vec<String>);
    /// Log in to an iSCSI target.
    iscsi_login => IscsiLogin {
        /// `host[:port]`.
        portal: String,
        /// Target name.
        target: String,
    } -> Done;
    /// Log out of an iSCSI target.
    iscsi_logout => IscsiLogout {
        /// `host[:port]`.
        portal: String,
        /// Target name.
        target: String,
    } -> Done;
    /// This server's iSCSI sessions.
    iscsi_sessions => IscsiSessions -> Sessions(Vec<IscsiSession>);
    /// The LUNs of a target this server sees.
    iscsi_luns => IscsiLuns {
        /// Target name.
        target: String,
    } -> Luns(Vec<Lun>);
    /// Rescan a target's session for LUNs granted since the login.
    iscsi_rescan => IscsiRescan {
        /// Target name.
        target: String,
    } -> Done;
    /// Remove a LUN's SCSI device before the array stops presenting it.
    iscsi_forget => IscsiForget {
        /// Target name.
        target: String,
        /// The LUN's SCSI identifier.
        lun: String,
    } -> Done;
    /// Run a call of a storage array's vendor-style plug-in on this (admin) server.
    array_manage => ArrayManage {
        /// The array's management interface and credentials.
        access: driver::ArrayAdminAccess,
        /// The call.
        call: driver::ArrayOp,
    } -> Array(driver::ArrayAnswer);
    /// Write a chunk into an existing file, within its size.
    storage_write => StorageWrite {
        /// Path.
        path: String,
        /// Where in the file.
        offset: u64,
        /// The bytes, base64 (standard alphabet, padded).
        data: String,
    } -> Done;
    /// The end of writes into a file: its data reaches the storage.
    storage_finish_write => StorageFinishWrite {
        /// Path.
        path: String,
    } -> Done;
    /// Replace a small file atomically.
    storage_put => StoragePut {
        /// Path.
        path: String,
        /// The contents, base64 (standard alphabet, padded).
        contents: String,
    } -> Done;
    /// The files of a mounted repository, in path order, a page of at most [`LIST_PAGE`] after
    /// `after` (the last path of the page before).
    storage_list_repository => StorageListRepository {
        /// The repository's mount point.
        mount_point: String,
        /// The last path of the page before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    } -> RepositoryFiles(Vec<RepositoryFile>);
    /// The text of a repository's configuration file (`None`: no such file).
    storage_read_config => StorageReadConfig {
        /// Path.
        path: String,
    } -> Config(Option<String>);
}

impl Op {
    /// Whether an unowned agent serves this operation.
    pub fn allowed_unowned(&self) -> bool {
        matches!(self, Op::TakeOwnership { .. })
    }

    /// How long the manager waits for the answer.
    pub fn timeout(&self) -> Duration {
        let base = Duration::from_secs(60);
        match self {
            Op::Shutdown { timeout_ms, .. } | Op::Reboot { timeout_ms, .. } => {
                base + Duration::from_millis(*timeout_ms)
            }
            Op::CreateDomain { .. }
            | Op::Restore { .. }
            | Op::Suspend { .. }
            | Op::SendDomain { .. }
            | Op::StorageCopy { .. } => Duration::from_secs(900),
            // showmount and a brief mount of each export, each within 30 s.
            Op::StorageDiscover { .. } => Duration::from_secs(300),
            Op::StorageMount { .. } | Op::StorageUnmount { .. } | Op::ClusterLeave => {
                Duration::from_secs(120)
            }
            // The pool file system made (the first member) and mounted.
            Op::ClusterJoin { .. } => Duration::from_secs(300),
            // Discovery, then the login and the SCSI scan of its LUNs.
            Op::IscsiLogin { .. } | Op::IscsiRescan { .. } => Duration::from_secs(180),
            // A clone copies a LUN on the array.
            Op::ArrayManage { .. } => Duration::from_secs(960),
            _ => base,
        }
    }
}

/// Whether the agent is owned, seen from the connecting manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// No manager owns the agent: only [`Op::TakeOwnership`] is served.
    Unowned,
    /// The connecting manager owns it.
    OwnedByYou,
    /// Another manager owns it, and the connecting manager said it means to take it over: only
    /// [`Op::TakeOwnership`] is served.
    OwnedByAnother,
}

/// A message from the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// Answer to a [`ClientMessage::Hello`] the agent accepts.
    Welcome {
        /// The protocol version of this connection.
        version: u32,
        /// The agent's host name.
        hostname: String,
        /// Ownership seen from this manager.
        ownership: Ownership,
    },
    /// The connection is refused; the agent closes it.
    Refused {
        /// Why.
        error: Error,
    },
    /// The answer to a request.
    Response {
        /// The request's id.
        id: u64,
        /// The outcome.
        result: Result<Reply, Error>,
    },
    /// A domain changed (sent to the owning manager only).
    Change {
        /// What changed.
        change: DomainChange,
    },
    /// The migration ticket is accepted: from now on the connection carries the domain's
    /// migration stream.
    Receiving,
    /// The console is open: from now on the connection carries its RFB protocol.
    ConsoleOpen,
    /// A frame could not be understood; the connection goes on.
    ProtocolError {
        /// What was wrong.
        message: String,
    },
}

/// The value of a successful request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Reply {
    /// Nothing to return.
    Done,
    /// Host information.
    HostInfo(HostInfo),
    /// Load.
    Load(HostLoad),
    /// Domains.
    Domains(Vec<DomainStatus>),
    /// A domid.
    Domid(u32),
    /// Console text.
    Console(String),
    /// A migration ticket.
    Ticket(IncomingTicket),
    /// File systems of a file server.
    FileSystems(Vec<DiscoveredFileSystem>),
    /// Mounted file systems.
    Mounts(Vec<FileSystemMount>),
    /// Capacity and usage.
    Usage(FsUsage),
    /// A file's size, if there is a file.
    FileSize(Option<u64>),
    /// An iSCSI initiator name.
    Initiator(String),
    /// iSCSI target names.
    Targets(Vec<String>),
    /// iSCSI sessions.
    Sessions(Vec<IscsiSession>),
    /// LUNs.
    Luns(Vec<Lun>),
    /// The answer of a storage array's plug-in.
    Array(driver::ArrayAnswer),
    /// The files of a repository.
    RepositoryFiles(Vec<RepositoryFile>),
    /// A configuration file's text.
    Config(Option<String>),
    /// Ethernet ports.
    Ports(Vec<EthernetPort>),
    /// A network configuration.
    NetConfig(driver::NetworkConfig),
    /// What applying network changes did.
    NetApplied(driver::Applied),
    /// The state of a tentative network change.
    NetTxn(driver::TxnState),
    /// A domain's NICs.
    Nics(Vec<(String, String, bool)>),
    /// A cluster's state.
    Cluster(driver::ClusterStatus),
    /// The cluster a server is in, if any.
    ClusterState(Option<driver::ClusterStatus>),
    /// The values a guest reports.
    GuestData(std::collections::BTreeMap<String, String>),
}

/// Most files one [`Op::StorageListRepository`] answer lists (its frame stays well under
/// [`super::MAX_FRAME`]: paths are at most a few hundred bytes).
pub const LIST_PAGE: usize = 1000;

/// Bytes as the messages carry them: base64, standard alphabet, padded.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Bytes from a message's base64 field `field`.
pub fn unbase64(field: &str, text: &str) -> Result<Vec<u8>, Error> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| Error::invalid(field, format!("not base64: {e}")))
}

/// A file of a repository (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryFile {
    /// Path relative to the mount point.
    pub path: String,
    /// Size, bytes.
    pub size_bytes: u64,
}

impl From<driver::RepositoryFile> for RepositoryFile {
    fn from(f: driver::RepositoryFile) -> Self {
        RepositoryFile { path: f.path, size_bytes: f.size_bytes }
    }
}

impl From<RepositoryFile> for driver::RepositoryFile {
    fn from(f: RepositoryFile) -> Self {
        driver::RepositoryFile { path: f.path, size_bytes: f.size_bytes }
    }
}

/// An iSCSI session (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IscsiSession {
    /// `host:port`.
    pub portal: String,
    /// Target name.
    pub target: String,
}

/// A LUN (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lun {
    /// SCSI identifier or the array's id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Size, bytes.
    pub size_bytes: u64,
    /// The LUN it is a thin clone of.
    pub thin_clone_of: Option<String>,
}

impl From<driver::IscsiSession> for IscsiSession {
    fn from(s: driver::IscsiSession) -> Self {
        IscsiSession { portal: s.portal, target: s.target }
    }
}

impl From<IscsiSession> for driver::IscsiSession {
    fn from(s: IscsiSession) -> Self {
        driver::IscsiSession { portal: s.portal, target: s.target }
    }
}

impl From<driver::Lun> for Lun {
    fn from(l: driver::Lun) -> Self {
        Lun { id: l.id, name: l.name, size_bytes: l.size_bytes, thin_clone_of: l.thin_clone_of }
    }
}

impl From<Lun> for driver::Lun {
    fn from(l: Lun) -> Self {
        driver::Lun { id: l.id, name: l.name, size_bytes: l.size_bytes, thin_clone_of: l.thin_clone_of }
    }
}

/// What a server mounts (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MountSource {
    /// An NFS export.
    Nfs {
        /// Host.
        host: String,
        /// Export path.
        export: String,
        /// NFS major version, if fixed.
        version: Option<u8>,
    },
    /// A local directory.
    Local {
        /// The directory.
        path: String,
    },
    /// A file system reached through an external plug-in.
    External {
        /// The plug-in's name.
        plugin: String,
        /// The file server, as the plug-in names it.
        host: String,
        /// The file system, as the plug-in names it.
        path: String,
    },
}

/// A file server as its admin server reaches it (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FileServerAccess {
    /// An NFS server.
    Nfs {
        /// Host.
        host: String,
    },
    /// The admin server's file system under `root`.
    Local {
        /// Directory.
        root: String,
    },
    /// A file server reached through an external plug-in.
    External {
        /// The plug-in's name.
        plugin: String,
        /// The file server, as the plug-in names it.
        host: String,
    },
}

/// A discovered file system (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredFileSystem {
    /// Export path or directory.
    pub path: String,
    /// Capacity, bytes.
    pub total_bytes: u64,
    /// Free, bytes.
    pub free_bytes: u64,
    /// Repository marker found on it.
    pub repository: Option<String>,
}

/// A mounted file system (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSystemMount {
    /// What.
    pub source: MountSource,
    /// Where.
    pub mount_point: String,
}

/// Capacity and usage (v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsUsage {
    /// Capacity, bytes.
    pub total_bytes: u64,
    /// Used, bytes.
    pub used_bytes: u64,
}

impl From<&driver::MountSource> for MountSource {
    fn from(s: &driver::MountSource) -> Self {
        match s.clone() {
            driver::MountSource::Nfs { host, export, version } => MountSource::Nfs { host, export, version },
            driver::MountSource::Local { path } => MountSource::Local { path },
            driver::MountSource::External { plugin, host, path } => {
                MountSource::External { plugin, host, path }
            }
        }
    }
}

impl From<MountSource> for driver::MountSource {
    fn from(s: MountSource) -> Self {
        match s {
            MountSource::Nfs { host, export, version } => driver::MountSource::Nfs { host, export, version },
            MountSource::Local { path } => driver::MountSource::Local { path },
            MountSource::External { plugin, host, path } => {
                driver::MountSource::External { plugin, host, path }
            }
        }
    }
}

impl From<&driver::FileServerAccess> for FileServerAccess {
    fn from(s: &driver::FileServerAccess) -> Self {
        match s.clone() {
            driver::FileServerAccess::Nfs { host } => FileServerAccess::Nfs { host },
            driver::FileServerAccess::Local { root } => FileServerAccess::Local { root },
            driver::FileServerAccess::External { plugin, host } => {
                FileServerAccess::External { plugin, host }
            }
        }
    }
}

impl From<FileServerAccess> for driver::FileServerAccess {
    fn from(s: FileServerAccess) -> Self {
        match s {
            FileServerAccess::Nfs { host } => driver::FileServerAccess::Nfs { host },
            FileServerAccess::Local { root } => driver::FileServerAccess::Local { root },
            FileServerAccess::External { plugin, host } => {
                driver::FileServerAccess::External { plugin, host }
            }
        }
    }
}

impl From<driver::DiscoveredFileSystem> for DiscoveredFileSystem {
    fn from(f: driver::DiscoveredFileSystem) -> Self {
        DiscoveredFileSystem {
            path: f.path,
            total_bytes: f.total_bytes,
            free_bytes: f.free_bytes,
            repository: f.repository,
        }
    }
}

impl From<DiscoveredFileSystem> for driver::DiscoveredFileSystem {
    fn from(f: DiscoveredFileSystem) -> Self {
        driver::DiscoveredFileSystem {
            path: f.path,
            total_bytes: f.total_bytes,
            free_bytes: f.free_bytes,
            repository: f.repository,
        }
    }
}

impl From<driver::FileSystemMount> for FileSystemMount {
    fn from(m: driver::FileSystemMount) -> Self {
        FileSystemMount { source: (&m.source).into(), mount_point: m.mount_point }
    }
}

impl From<FileSystemMount> for driver::FileSystemMount {
    fn from(m: FileSystemMount) -> Self {
        driver::FileSystemMount { source: m.source.into(), mount_point: m.mount_point }
    }
}

impl From<driver::FsUsage> for FsUsage {
    fn from(u: driver::FsUsage) -> Self {
        FsUsage { total_bytes: u.total_bytes, used_bytes: u.used_bytes }
    }
}

impl From<FsUsage> for driver::FsUsage {
    fn from(u: FsUsage) -> Self {
        driver::FsUsage { total_bytes: u.total_bytes, used_bytes: u.used_bytes }
    }
}

/// How a domain moves between agents (v1): `"live"` or `"cold"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationMode {
    /// A live migration stream.
    #[default]
    Live,
    /// A saved domain (a cold move).
    Cold,
}

impl MigrationMode {
    /// Whether this is the default, live (left out of messages).
    pub fn is_live(&self) -> bool {
        *self == MigrationMode::Live
    }
}

impl From<model::MigrationMode> for MigrationMode {
    fn from(m: model::MigrationMode) -> Self {
        match m {
            model::MigrationMode::Live => MigrationMode::Live,
            model::MigrationMode::Cold => MigrationMode::Cold,
        }
    }
}

impl From<MigrationMode> for model::MigrationMode {
    fn from(m: MigrationMode) -> Self {
        match m {
            MigrationMode::Live => model::MigrationMode::Live,
            MigrationMode::Cold => model::MigrationMode::Cold,
        }
    }
}

/// What a destination agent issues for an incoming migration (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingTicket {
    /// Where the source agent connects (`host:port` on the migration network).
    pub destination: String,
    /// The one-time token.
    pub token: String,
}

/// Xen domain types (v1).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainType {
    Hvm,
    Pv,
    PvHvm,
    Pvh,
}

/// What Xen does when the domain powers off, reboots or crashes (v1).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartAction {
    Destroy,
    Restart,
    Preserve,
}

/// Restart actions (v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartActions {
    /// On guest power-off.
    pub on_poweroff: RestartAction,
    /// On guest reboot.
    pub on_reboot: RestartAction,
    /// On crash.
    pub on_crash: RestartAction,
}

/// A domain to build (v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// Stable id.
    pub uuid: VmId,
    /// Domain name.
    pub name: String,
    /// Domain type.
    pub domain_type: DomainType,
    /// vCPUs online.
    pub vcpus: u32,
    /// Maximum vCPUs.
    pub max_vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Maximum memory, MiB.
    pub max_memory_mib: u64,
    /// Disks.
    pub disks: Vec<DiskSpec>,
    /// NICs.
    pub nics: Vec<NicSpec>,
    /// PV/PVH direct boot.
    pub kernel: Option<String>,
    /// Initrd.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: Option<String>,
    /// Restart actions.
    pub restart_actions: RestartActions,
    /// Boot devices in order (absent: the backend's default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_order: Vec<BootDevice>,
    /// High availability: the VM's start priority when its pool restarts it elsewhere if this
    /// server dies (absent: not HA-enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_priority: Option<u8>,
    /// A PV guest's virtual framebuffer, served as its graphical console (absent: none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub framebuffer: bool,
    /// A PV or PVH guest's network boot (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_boot: Option<NetworkBoot>,
}

/// Network boot of a PV or PVH guest (v1): the install tree's URL, the installer's command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkBoot {
    /// `http://` or `https://` URL of the install tree.
    pub url: String,
    /// The installer's kernel command line.
    pub cmdline: String,
}

/// A boot device (v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootDevice {
    /// The first disk.
    Disk,
    /// The CD-ROM.
    Cdrom,
    /// The network (PXE).
    Network,
}

impl From<crate::model::BootDevice> for BootDevice {
    fn from(b: crate::model::BootDevice) -> Self {
        use crate::model::BootDevice as B;
        match b {
            B::Disk => Self::Disk,
            B::Cdrom => Self::Cdrom,
            B::Network => Self::Network,
        }
    }
}

impl From<BootDevice> for crate::model::BootDevice {
    fn from(b: BootDevice) -> Self {
        match b {
            BootDevice::Disk => Self::Disk,
            BootDevice::Cdrom => Self::Cdrom,
            BootDevice::Network => Self::Network,
        }
    }
}

/// A disk (v1): named by its Xen guest device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Guest device, e.g. `xvda`.
    pub vdev: String,
    /// Backing path on the server.
    pub path: String,
    /// Read-only.
    pub read_only: bool,
    /// Whether it is a CD-ROM.
    pub cdrom: bool,
}

/// A NIC (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// MAC.
    pub mac: String,
    /// Bridge on the server.
    pub bridge: String,
}

/// Why a domain shut down (v1).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShutdownReason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
}

/// Run state of a domain (v1).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainRunState {
    Running,
    Blocked,
    Paused,
    Shutdown(ShutdownReason),
    Dying,
}

/// A resident domain (v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainStatus {
    /// Stable id.
    pub uuid: Option<VmId>,
    /// Name.
    pub name: String,
    /// Runtime domain id.
    pub domid: u32,
    /// Run state.
    pub state: DomainRunState,
    /// Current memory, MiB.
    pub memory_mib: u64,
    /// Online vCPUs.
    pub vcpus: u32,
    /// CPU time used, ns.
    pub cpu_time_ns: u64,
}

/// A server's load (v1). `cpus`, `domains` and `interfaces` came later: an agent without them
/// sends none and they read as empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostLoad {
    /// CPU utilisation, percent of all CPUs.
    pub cpu_percent: f32,
    /// Memory used by guests, MiB.
    pub guest_memory_mib: u64,
    /// Memory free for guests, MiB.
    pub free_memory_mib: u64,
    /// Physical CPUs.
    #[serde(default)]
    pub cpus: u32,
    /// Each guest domain's load.
    #[serde(default)]
    pub domains: Vec<driver::DomainLoad>,
    /// Traffic counters of dom0's interfaces.
    #[serde(default)]
    pub interfaces: Vec<driver::InterfaceCounters>,
}

/// A physical Ethernet port (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EthernetPort {
    /// Interface name in dom0.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// Link speed in Mbit/s, when known.
    pub speed_mbps: Option<u32>,
    /// Whether the link is up, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<bool>,
    /// Kernel driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// MTU now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Largest MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mtu: Option<u32>,
}

/// Hardware facts (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHardware {
    /// Physical CPU threads.
    pub cpus: u32,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Xen version string.
    pub xen_version: String,
    /// Physical ports.
    pub ports: Vec<EthernetPort>,
    /// Whether HVM is available.
    pub hvm_capable: bool,
    /// The hypervisor's capabilities (absent from agents of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virt: Option<VirtCapabilities>,
    /// The CPU (absent from agents of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<HostCpu>,
    /// The toolstack (absent from agents of earlier versions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub toolstack: String,
}

/// What the hypervisor can do for guests (v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtCapabilities {
    /// Runs PV guests.
    pub pv: bool,
    /// Runs HVM and PVH guests.
    pub hvm: bool,
    /// Hardware-assisted paging.
    pub hap: bool,
    /// Shadow paging.
    pub shadow: bool,
}

/// A server's CPU (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCpu {
    /// Vendor string.
    pub vendor: String,
    /// Feature words.
    pub features: Vec<u32>,
}

impl From<model::VirtCapabilities> for VirtCapabilities {
    fn from(c: model::VirtCapabilities) -> Self {
        VirtCapabilities { pv: c.pv, hvm: c.hvm, hap: c.hap, shadow: c.shadow }
    }
}

impl From<VirtCapabilities> for model::VirtCapabilities {
    fn from(c: VirtCapabilities) -> Self {
        model::VirtCapabilities { pv: c.pv, hvm: c.hvm, hap: c.hap, shadow: c.shadow }
    }
}

impl From<model::HostCpu> for HostCpu {
    fn from(c: model::HostCpu) -> Self {
        HostCpu { vendor: c.vendor, features: c.features }
    }
}

impl From<HostCpu> for model::HostCpu {
    fn from(c: HostCpu) -> Self {
        model::HostCpu { vendor: c.vendor, features: c.features }
    }
}

/// What the host says about itself (v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Hardware.
    pub hardware: HostHardware,
    /// Memory kept by dom0, MiB.
    pub dom0_memory_mib: u64,
    /// Owning manager's id.
    pub owner: Option<String>,
}

/// A change of a domain (v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DomainChange {
    /// A domain appeared.
    Appeared {
        /// Its id.
        uuid: Option<VmId>,
        /// Its domid.
        domid: u32,
    },
    /// A domain's run state changed.
    StateChanged {
        /// Its id.
        uuid: Option<VmId>,
        /// Its domid.
        domid: u32,
        /// New state.
        state: DomainRunState,
    },
    /// A domain disappeared.
    Disappeared {
        /// Its id.
        uuid: Option<VmId>,
        /// Its domid.
        domid: u32,
    },
    /// The host went away.
    HostLost,
    /// The connection was lost.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Changes were dropped.
    Resync,
}

// Conversions between the seam and v1. Enums map variant by variant, so a variant added to the seam
// fails to compile here instead of changing the protocol.

macro_rules! same_variants {
    ($a:ty, $b:ty, [$($v:ident),*]) => {
        impl From<$a> for $b {
            fn from(x: $a) -> $b {
                match x { $(<$a>::$v => <$b>::$v),* }
            }
        }
        impl From<$b> for $a {
            fn from(x: $b) -> $a {
                match x { $(<$b>::$v => <$a>::$v),* }
            }
        }
    };
}

same_variants!(model::DomainType, DomainType, [Hvm, Pv, PvHvm, Pvh]);
same_variants!(model::RestartAction, RestartAction, [Destroy, Restart, Preserve]);
same_variants!(
    driver::ShutdownReason,
    ShutdownReason,
    [Poweroff, Reboot, Suspend, Crash, Watchdog, SoftReset]
);

impl From<model::RestartActions> for RestartActions {
    fn from(r: model::RestartActions) -> Self {
        RestartActions {
            on_poweroff: r.on_poweroff.into(),
            on_reboot: r.on_reboot.into(),
            on_crash: r.on_crash.into(),
        }
    }
}

impl From<RestartActions> for model::RestartActions {
    fn from(r: RestartActions) -> Self {
        model::RestartActions {
            on_poweroff: r.on_poweroff.into(),
            on_reboot: r.on_reboot.into(),
            on_crash: r.on_crash.into(),
        }
    }
}

impl From<&driver::DomainSpec> for DomainSpec {
    fn from(s: &driver::DomainSpec) -> Self {
        DomainSpec {
            uuid: s.uuid,
            name: s.name.clone(),
            domain_type: s.domain_type.into(),
            vcpus: s.vcpus,
            max_vcpus: s.max_vcpus,
            memory_mib: s.memory_mib,
            max_memory_mib: s.max_memory_mib,
            disks: s
                .disks
                .iter()
                .map(|d| DiskSpec {
                    vdev: naming::disk_device(s.domain_type, d.slot),
                    path: d.path.clone(),
                    read_only: d.read_only,
                    cdrom: d.cdrom,
                })
                .collect(),
            nics: s
                .nics
                .iter()
                .map(|n| NicSpec {
                    mac: n.mac.clone(),
                    bridge: n.bridge.clone().unwrap_or_else(|| naming::DEFAULT_BRIDGE.to_owned()),
                })
                .collect(),
            kernel: s.kernel.clone(),
            initrd: s.initrd.clone(),
            cmdline: s.cmdline.clone(),
            restart_actions: s.restart_actions.into(),
            boot_order: s.boot_order.iter().map(|&b| b.into()).collect(),
            ha_priority: s.ha_priority,
            framebuffer: s.framebuffer,
            network_boot: s
                .network_boot
                .as_ref()
                .map(|n| NetworkBoot { url: n.url.clone(), cmdline: n.cmdline.clone() }),
        }
    }
}

impl TryFrom<DomainSpec> for driver::DomainSpec {
    type Error = Error;

    fn try_from(s: DomainSpec) -> Result<Self, Error> {
        let mut disks = Vec::with_capacity(s.disks.len());
        for d in s.disks {
            let slot = naming::disk_slot(&d.vdev).ok_or_else(|| {
                Error::invalid("vdev", format!("{:?} is not a Xen disk device name", d.vdev))
            })?;
            disks.push(driver::DiskSpec { slot, path: d.path, read_only: d.read_only, cdrom: d.cdrom });
        }
        Ok(driver::DomainSpec {
            uuid: s.uuid,
            name: s.name,
            domain_type: s.domain_type.into(),
            vcpus: s.vcpus,
            max_vcpus: s.max_vcpus,
            memory_mib: s.memory_mib,
            max_memory_mib: s.max_memory_mib,
            disks,
            nics: s
                .nics
                .into_iter()
                .map(|n| driver::NicSpec { mac: n.mac, bridge: Some(n.bridge) })
                .collect(),
            kernel: s.kernel,
            initrd: s.initrd,
            cmdline: s.cmdline,
            restart_actions: s.restart_actions.into(),
            boot_order: s.boot_order.into_iter().map(Into::into).collect(),
            ha_priority: s.ha_priority,
            framebuffer: s.framebuffer,
            network_boot: s
                .network_boot
                .map(|n| crate::model::NetworkBoot { url: n.url, cmdline: n.cmdline }),
        })
    }
}

impl From<driver::DomainRunState> for DomainRunState {
    fn from(s: driver::DomainRunState) -> Self {
        use driver::DomainRunState as D;
        match s {
            D::Running => Self::Running,
            D::Blocked => Self::Blocked,
            D::Paused => Self::Paused,
            D::Shutdown(r) => Self::Shutdown(r.into()),
            D::Dying => Self::Dying,
        }
    }
}

impl From<DomainRunState> for driver::DomainRunState {
    fn from(s: DomainRunState) -> Self {
        use driver::DomainRunState as D;
        match s {
            DomainRunState::Running => D::Running,
            DomainRunState::Blocked => D::Blocked,
            DomainRunState::Paused => D::Paused,
            DomainRunState::Shutdown(r) => D::Shutdown(r.into()),
            DomainRunState::Dying => D::Dying,
        }
    }
}

impl From<driver::DomainStatus> for DomainStatus {
    fn from(d: driver::DomainStatus) -> Self {
        DomainStatus {
            uuid: d.uuid,
            name: d.name,
            domid: d.domid,
            state: d.state.into(),
            memory_mib: d.memory_mib,
            vcpus: d.vcpus,
            cpu_time_ns: d.cpu_time_ns,
        }
    }
}

impl From<DomainStatus> for driver::DomainStatus {
    fn from(d: DomainStatus) -> Self {
        driver::DomainStatus {
            uuid: d.uuid,
            name: d.name,
            domid: d.domid,
            state: d.state.into(),
            memory_mib: d.memory_mib,
            vcpus: d.vcpus,
            cpu_time_ns: d.cpu_time_ns,
        }
    }
}

impl From<driver::HostLoad> for HostLoad {
    fn from(l: driver::HostLoad) -> Self {
        HostLoad {
            cpu_percent: l.cpu_percent,
            guest_memory_mib: l.guest_memory_mib,
            free_memory_mib: l.free_memory_mib,
            cpus: l.cpus,
            domains: l.domains,
            interfaces: l.interfaces,
        }
    }
}

impl From<HostLoad> for driver::HostLoad {
    fn from(l: HostLoad) -> Self {
        driver::HostLoad {
            cpu_percent: l.cpu_percent,
            guest_memory_mib: l.guest_memory_mib,
            free_memory_mib: l.free_memory_mib,
            cpus: l.cpus,
            domains: l.domains,
            interfaces: l.interfaces,
        }
    }
}

impl From<model::EthernetPort> for EthernetPort {
    fn from(p: model::EthernetPort) -> Self {
        EthernetPort {
            name: p.name,
            mac: p.mac,
            speed_mbps: p.speed_mbps,
            carrier: p.carrier,
            driver: p.driver,
            mtu: p.mtu,
            max_mtu: p.max_mtu,
        }
    }
}

impl From<EthernetPort> for model::EthernetPort {
    fn from(p: EthernetPort) -> Self {
        model::EthernetPort {
            name: p.name,
            mac: p.mac,
            speed_mbps: p.speed_mbps,
            carrier: p.carrier,
            driver: p.driver,
            mtu: p.mtu,
            max_mtu: p.max_mtu,
        }
    }
}

impl From<driver::HostInfo> for HostInfo {
    fn from(i: driver::HostInfo) -> Self {
        let h = i.hardware;
        HostInfo {
            hostname: i.hostname,
            hardware: HostHardware {
                cpus: h.cpus,
                memory_mib: h.memory_mib,
                xen_version: h.xen_version,
                ports: h.ports.into_iter().map(Into::into).collect(),
                hvm_capable: h.hvm_capable,
                virt: h.virt.map(Into::into),
                cpu: h.cpu.map(Into::into),
                toolstack: h.toolstack,
            },
            dom0_memory_mib: i.dom0_memory_mib,
            owner: i.owner,
        }
    }
}

impl From<HostInfo> for driver::HostInfo {
    fn from(i: HostInfo) -> Self {
        let h = i.hardware;
        driver::HostInfo {
            hostname: i.hostname,
            hardware: model::HostHardware {
                cpus: h.cpus,
                memory_mib: h.memory_mib,
                xen_version: h.xen_version,
                ports: h.ports.into_iter().map(Into::into).collect(),
                hvm_capable: h.hvm_capable,
                virt: h.virt.map(Into::into),
                cpu: h.cpu.map(Into::into),
                toolstack: h.toolstack,
            },
            dom0_memory_mib: i.dom0_memory_mib,
            owner: i.owner,
            // v1 agents serve Xen hosts, whose default bridge is Xen's.
            default_bridge: naming::DEFAULT_BRIDGE.into(),
        }
    }
}

impl From<driver::DomainChange> for DomainChange {
    fn from(c: driver::DomainChange) -> Self {
        use driver::DomainChange as D;
        match c {
            D::Appeared { uuid, domid } => Self::Appeared { uuid, domid },
            D::StateChanged { uuid, domid, state } => Self::StateChanged { uuid, domid, state: state.into() },
            D::Disappeared { uuid, domid } => Self::Disappeared { uuid, domid },
            D::HostLost => Self::HostLost,
            D::Disconnected { reason } => Self::Disconnected { reason },
            D::Resync => Self::Resync,
        }
    }
}

impl From<DomainChange> for driver::DomainChange {
    fn from(c: DomainChange) -> Self {
        use driver::DomainChange as D;
        match c {
            DomainChange::Appeared { uuid, domid } => D::Appeared { uuid, domid },
            DomainChange::StateChanged { uuid, domid, state } => {
                D::StateChanged { uuid, domid, state: state.into() }
            }
            DomainChange::Disappeared { uuid, domid } => D::Disappeared { uuid, domid },
            DomainChange::HostLost => D::HostLost,
            DomainChange::Disconnected { reason } => D::Disconnected { reason },
            DomainChange::Resync => D::Resync,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, split_frames, FrameError, MAX_FRAME};
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            ClientMessage::Hello { min_version: 1, max_version: 1, manager_id: "m".into(), take_over: false },
            ClientMessage::Request {
                id: 7,
                op: Op::TakeOwnership { password: "pw".into(), take_over: false },
            },
            ClientMessage::Request { id: 8, op: Op::Shutdown { vm: VmId::new(), timeout_ms: 5 } },
            ClientMessage::Request { id: 9, op: Op::ListDomains },
        ];
        for m in msgs {
            let f = encode(&m).unwrap();
            let (frames, rest) = split_frames(&f).unwrap();
            assert!(rest.is_empty());
            assert_eq!(decode::<ClientMessage>(frames[0]).unwrap(), m);
        }
        let r =
            AgentMessage::Response { id: 3, result: Err(Error::PermissionDenied { reason: "no".into() }) };
        assert_eq!(decode::<AgentMessage>(&encode(&r).unwrap()[4..]).unwrap(), r);
        let r = AgentMessage::Response { id: 4, result: Ok(Reply::Domid(12)) };
        assert_eq!(decode::<AgentMessage>(&encode(&r).unwrap()[4..]).unwrap(), r);
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        assert!(matches!(split_frames(&[0xff, 0xff, 0xff, 0xff]), Err(FrameError::TooLarge(_))));
        let (frames, rest) = split_frames(&[0, 0, 0, 5, b'{']).unwrap();
        assert!(frames.is_empty() && rest.len() == 5);
        assert!(decode::<ClientMessage>(b"{").is_err());
        assert!(decode::<ClientMessage>(br#"{"type":"request","id":1,"op":{"op":"nuke"}}"#).is_err());
        assert!(decode::<ClientMessage>(br#"{"type":"hello","min_version":1}"#).is_err());
    }

    #[test]
    fn oversized_messages_are_refused_at_encoding() {
        let big = Reply::Console("x".repeat(MAX_FRAME + 1));
        let err = encode(&AgentMessage::Response { id: 1, result: Ok(big) }).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }

    /// The encoding of every v1 message, pinned byte for byte, both ways. These strings are protocol
    /// version 1: a manager and an agent built before and after a change must still exchange them.
    #[test]
    fn golden_frames() {
        let vm = VmId("00000000-0000-4000-8000-000000000001".parse().unwrap());
        const VM: &str = r#""00000000-0000-4000-8000-000000000001""#;
        let spec = DomainSpec {
            uuid: vm,
            name: "web01".into(),
            domain_type: DomainType::Pv,
            vcpus: 1,
            max_vcpus: 2,
            memory_mib: 512,
            max_memory_mib: 1024,
            disks: vec![
                DiskSpec { vdev: "xvda".into(), path: "/r/web01.img".into(), read_only: false, cdrom: false },
                DiskSpec { vdev: "xvdb".into(), path: "/r/boot.iso".into(), read_only: true, cdrom: true },
            ],
            nics: vec![NicSpec { mac: "00:16:3e:00:00:01".into(), bridge: "xenbr0".into() }],
            kernel: Some("/boot/vmlinuz".into()),
            initrd: None,
            cmdline: Some("console=hvc0".into()),
            restart_actions: RestartActions {
                on_poweroff: RestartAction::Destroy,
                on_reboot: RestartAction::Restart,
                on_crash: RestartAction::Preserve,
            },
            boot_order: Vec::new(),
            ha_priority: None,
            framebuffer: false,
            network_boot: None,
        };
        let spec_json = format!(
            concat!(
                r#"{{"uuid":{},"name":"web01","domain_type":"Pv","vcpus":1,"max_vcpus":2,"memory_mib":512,"#,
                r#""max_memory_mib":1024,"disks":[{{"vdev":"xvda","path":"/r/web01.img","read_only":false,"#,
                r#""cdrom":false}},{{"vdev":"xvdb","path":"/r/boot.iso","read_only":true,"cdrom":true}}],"#,
                r#""nics":[{{"mac":"00:16:3e:00:00:01","bridge":"xenbr0"}}],"kernel":"/boot/vmlinuz","#,
                r#""initrd":null,"cmdline":"console=hvc0","restart_actions":{{"on_poweroff":"Destroy","#,
                r#""on_reboot":"Restart","on_crash":"Preserve"}}}}"#
            ),
            VM
        );
        let req = |op: Op| ClientMessage::Request { id: 7, op };
        let client: Vec<(ClientMessage, String)> = vec![
            (
                ClientMessage::Hello { min_version: 1, max_version: 1, manager_id: "m1".into(), take_over: false },
                r#"{"type":"hello","min_version":1,"max_version":1,"manager_id":"m1"}"#.into(),
            ),
            (
                req(Op::TakeOwnership { password: "pw".into(), take_over: false }),
                r#"{"type":"request","id":7,"op":{"op":"take_ownership","password":"pw"}}"#.into(),
            ),
            (
                req(Op::TakeOwnership { password: "pw".into(), take_over: true }),
                r#"{"type":"request","id":7,"op":{"op":"take_ownership","password":"pw","take_over":true}}"#.into(),
            ),
            (req(Op::ReleaseOwnership), r#"{"type":"request","id":7,"op":{"op":"release_ownership"}}"#.into()),
            (req(Op::HostInfo), r#"{"type":"request","id":7,"op":{"op":"host_info"}}"#.into()),
            (req(Op::Load), r#"{"type":"request","id":7,"op":{"op":"load"}}"#.into()),
            (req(Op::ListDomains), r#"{"type":"request","id":7,"op":{"op":"list_domains"}}"#.into()),
            (
                req(Op::CreateDomain { spec: Box::new(spec.clone()) }),
                format!(r#"{{"type":"request","id":7,"op":{{"op":"create_domain","spec":{spec_json}}}}}"#),
            ),
            (
                req(Op::Shutdown { vm, timeout_ms: 60000 }),
                format!(r#"{{"type":"request","id":7,"op":{{"op":"shutdown","vm":{VM},"timeout_ms":60000}}}}"#),
            ),
            (
                req(Op::Reboot { vm, timeout_ms: 5 }),
                format!(r#"{{"type":"request","id":7,"op":{{"op":"reboot","vm":{VM},"timeout_ms":5}}}}"#),
            ),
            (req(Op::Destroy { vm }), format!(r#"{{"type":"request","id":7,"op":{{"op":"destroy","vm":{VM}}}}}"#)),
            (req(Op::Pause { vm }), format!(r#"{{"type":"request","id":7,"op":{{"op":"pause","vm":{VM}}}}}"#)),
            (req(Op::Unpause { vm }), format!(r#"{{"type":"request","id":7,"op":{{"op":"unpause","vm":{VM}}}}}"#)),
            (
                req(Op::Suspend { vm, path: "/r/web01.save".into() }),
                format!(r#"{{"type":"request","id":7,"op":{{"op":"suspend","vm":{VM},"path":"/r/web01.save"}}}}"#),
            ),
            (
                req(Op::Restore { spec: Box::new(spec.clone()), path: "/r/web01.save".into() }),
                format!(
                    r#"{{"type":"request","id":7,"op":{{"op":"restore","spec":{spec_json},"path":"/r/web01.save"}}}}"#
                ),
            ),
            (
                req(Op::PrepareIncoming {
                    spec: Box::new(spec.clone()),
                    source: "sha256:ab".into(),
                    mode: MigrationMode::Live,
                }),
                format!(
                    r#"{{"type":"request","id":7,"op":{{"op":"prepare_incoming","spec":{spec_json},"source":"sha256:ab"}}}}"#
                ),
            ),
            (
                req(Op::CancelIncoming { token: "t1".into() }),
                r#"{"type":"request","id":7,"op":{"op":"cancel_incoming","token":"t1"}}"#.into(),
            ),
            (
                req(Op::SendDomain {
                    vm,
                    destination: "10.0.0.2:8899".into(),
                    token: "t1".into(),
                    peer: "sha256:cd".into(),
                    live: true,
                    mode: MigrationMode::Live,
                }),
                format!(
                    r#"{{"type":"request","id":7,"op":{{"op":"send_domain","vm":{VM},"destination":"10.0.0.2:8899","token":"t1","peer":"sha256:cd","live":true}}}}"#
                ),
            ),
            (
                ClientMessage::Migration { token: "t1".into(), vm, mode: MigrationMode::Live },
                format!(r#"{{"type":"migration","token":"t1","vm":{VM}}}"#),
            ),
            // A cold move: the same messages naming the mode (left out when live, above).
            (
                req(Op::PrepareIncoming {
                    spec: Box::new(spec.clone()),
                    source: "sha256:ab".into(),
                    mode: MigrationMode::Cold,
                }),
                format!(
                    r#"{{"type":"request","id":7,"op":{{"op":"prepare_incoming","spec":{spec_json},"source":"sha256:ab","mode":"cold"}}}}"#
                ),
            ),
            (
                req(Op::SendDomain {
                    vm,
                    destination: "10.0.0.2:8899".into(),
                    token: "t1".into(),
                    peer: "sha256:cd".into(),
                    live: false,
                    mode: MigrationMode::Cold,
                }),
                format!(
                    r#"{{"type":"request","id":7,"op":{{"op":"send_domain","vm":{VM},"destination":"10.0.0.2:8899","token":"t1","peer":"sha256:cd","live":false,"mode":"cold"}}}}"#
                ),
            ),
            (
                ClientMessage::Migration { token: "t1".into(), vm, mode: MigrationMode::Cold },
                format!(r#"{{"type":"migration","token":"t1","vm":{VM},"mode":"cold"}}"#),
            ),
            (ClientMessage::Console { vm }, format!(r#"{{"type":"console","vm":{VM}}}"#)),
            (
                req(Op::SetMemory { vm, memory_mib: 768 }),
                format!(r#"{{"type":"request","id":7,"op":{{"op":"set_memory","vm":{VM},"memory_mib":768}}}}"#),
            ),
            (
                req(Op::SetVcpus { vm, vcpus: 2 }),
                format!(r#"{{"type":"request","id":7,"op":{{"op":"set_vcpus","vm":{VM},"vcpus":2}}}}"#),
            ),
            (req(Op::Console { vm }), format!(r#"{{"type":"request","id":7,"op":{{"op":"console","vm":{VM}}}}}"#)),
            (req(Op::PowerOff), r#"{"type":"request","id":7,"op":{"op":"power_off"}}"#.into()),
            (
                req(Op::WakeOnLan { mac: "52:54:00:0a:00:02".into(), interface: "xenbr0".into() }),
                r#"{"type":"request","id":7,"op":{"op":"wake_on_lan","mac":"52:54:00:0a:00:02","interface":"xenbr0"}}"#
                    .into(),
            ),
            (
                req(Op::ClaimVirtualIp {
                    interface: "xenbr0".into(),
                    address: std::net::Ipv4Addr::new(10, 77, 0, 100),
                    prefix: 24,
                }),
                r#"{"type":"request","id":7,"op":{"op":"claim_virtual_ip","interface":"xenbr0","address":"10.77.0.100","prefix":24}}"#
                    .into(),
            ),
            (
                req(Op::ReleaseVirtualIp {
                    interface: "xenbr0".into(),
                    address: std::net::Ipv4Addr::new(10, 77, 0, 100),
                    prefix: 24,
                }),
                r#"{"type":"request","id":7,"op":{"op":"release_virtual_ip","interface":"xenbr0","address":"10.77.0.100","prefix":24}}"#
                    .into(),
            ),
            (
                req(Op::ClusterJoin {
                    spec: driver::ClusterSpec {
                        cluster: "p1".into(),
                        nodes: vec![driver::ClusterNode {
                            number: 1,
                            name: "s1".into(),
                            address: std::net::Ipv4Addr::new(10, 77, 0, 1),
                        }],
                        this_node: "s1".into(),
                        pool_disk: "naa.6001405abc".into(),
                        pool_file: None,
                        format: true,
                        timeout_secs: 12,
                        virtual_ip: Some(std::net::Ipv4Addr::new(10, 77, 0, 200)),
                    },
                }),
                r#"{"type":"request","id":7,"op":{"op":"cluster_join","spec":{"cluster":"p1","nodes":[{"number":1,"name":"s1","address":"10.77.0.1"}],"this_node":"s1","pool_disk":"naa.6001405abc","format":true,"timeout_secs":12,"virtual_ip":"10.77.0.200"}}}"#
                    .into(),
            ),
            (req(Op::ClusterLeave), r#"{"type":"request","id":7,"op":{"op":"cluster_leave"}}"#.into()),
            (req(Op::ClusterStatus), r#"{"type":"request","id":7,"op":{"op":"cluster_status"}}"#.into()),
            (
                req(Op::StorageCreate { path: "/r/a.img".into(), size_bytes: 1073741824 }),
                r#"{"type":"request","id":7,"op":{"op":"storage_create","path":"/r/a.img","size_bytes":1073741824}}"#
                    .into(),
            ),
            (
                req(Op::StorageCopy { from: "/r/a.img".into(), to: "/r/b.img".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_copy","from":"/r/a.img","to":"/r/b.img"}}"#.into(),
            ),
            (
                req(Op::StorageDelete { path: "/r/a.img".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_delete","path":"/r/a.img"}}"#.into(),
            ),
            (req(Op::RestartAgent), r#"{"type":"request","id":7,"op":{"op":"restart_agent"}}"#.into()),
            (
                req(Op::StorageDiscover { server: FileServerAccess::Nfs { host: "nfs1".into() } }),
                r#"{"type":"request","id":7,"op":{"op":"storage_discover","server":{"kind":"nfs","host":"nfs1"}}}"#
                    .into(),
            ),
            (
                req(Op::StorageDiscover { server: FileServerAccess::Local { root: "/OVS/Local".into() } }),
                r#"{"type":"request","id":7,"op":{"op":"storage_discover","server":{"kind":"local","root":"/OVS/Local"}}}"#
                    .into(),
            ),
            (
                req(Op::StorageMount {
                    source: MountSource::Nfs { host: "nfs1".into(), export: "/e".into(), version: Some(3) },
                    mount_point: "/OVS/Repositories/r".into(),
                }),
                concat!(
                    r#"{"type":"request","id":7,"op":{"op":"storage_mount","source":{"kind":"nfs","host":"nfs1","#,
                    r#""export":"/e","version":3},"mount_point":"/OVS/Repositories/r"}}"#
                )
                .into(),
            ),
            (
                req(Op::StorageDiscover {
                    server: FileServerAccess::External {
                        plugin: "ovm-example-nfs-shares".into(),
                        host: "nas1:/export/shares".into(),
                    },
                }),
                concat!(
                    r#"{"type":"request","id":7,"op":{"op":"storage_discover","server":{"kind":"external","#,
                    r#""plugin":"ovm-example-nfs-shares","host":"nas1:/export/shares"}}}"#
                )
                .into(),
            ),
            (
                req(Op::StorageMount {
                    source: MountSource::External {
                        plugin: "ovm-example-nfs-shares".into(),
                        host: "nas1:/export/shares".into(),
                        path: "/export/shares/vm1".into(),
                    },
                    mount_point: "/OVS/Repositories/r".into(),
                }),
                concat!(
                    r#"{"type":"request","id":7,"op":{"op":"storage_mount","source":{"kind":"external","#,
                    r#""plugin":"ovm-example-nfs-shares","host":"nas1:/export/shares","path":"/export/shares/vm1"},"#,
                    r#""mount_point":"/OVS/Repositories/r"}}"#
                )
                .into(),
            ),
            (
                req(Op::StorageMount {
                    source: MountSource::Local { path: "/OVS/Local".into() },
                    mount_point: "/OVS/Repositories/r".into(),
                }),
                concat!(
                    r#"{"type":"request","id":7,"op":{"op":"storage_mount","source":{"kind":"local","path":"/OVS/Local"},"#,
                    r#""mount_point":"/OVS/Repositories/r"}}"#
                )
                .into(),
            ),
            (
                req(Op::StorageUnmount { mount_point: "/OVS/Repositories/r".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_unmount","mount_point":"/OVS/Repositories/r"}}"#.into(),
            ),
            (req(Op::StorageMounts), r#"{"type":"request","id":7,"op":{"op":"storage_mounts"}}"#.into()),
            (
                req(Op::StorageInitRepository { mount_point: "/OVS/Repositories/r".into(), repository: "r".into() }),
                concat!(
                    r#"{"type":"request","id":7,"op":{"op":"storage_init_repository","#,
                    r#""mount_point":"/OVS/Repositories/r","repository":"r"}}"#
                )
                .into(),
            ),
            (
                req(Op::StorageRemoveRepository { mount_point: "/OVS/Repositories/r".into(), repository: "r".into() }),
                concat!(
                    r#"{"type":"request","id":7,"op":{"op":"storage_remove_repository","#,
                    r#""mount_point":"/OVS/Repositories/r","repository":"r"}}"#
                )
                .into(),
            ),
            (
                req(Op::StorageUsage { path: "/r".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_usage","path":"/r"}}"#.into(),
            ),
            (
                req(Op::StorageResize { path: "/r/a.img".into(), size_bytes: 2 }),
                r#"{"type":"request","id":7,"op":{"op":"storage_resize","path":"/r/a.img","size_bytes":2}}"#.into(),
            ),
            (
                req(Op::StorageFileSize { path: "/r/a.img".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_file_size","path":"/r/a.img"}}"#.into(),
            ),
            (req(Op::IscsiInitiator), r#"{"type":"request","id":7,"op":{"op":"iscsi_initiator"}}"#.into()),
            (
                req(Op::IscsiDiscover { portal: "10.0.0.9:3260".into() }),
                r#"{"type":"request","id":7,"op":{"op":"iscsi_discover","portal":"10.0.0.9:3260"}}"#.into(),
            ),
            (
                req(Op::IscsiLogin { portal: "10.0.0.9".into(), target: "iqn.2026-01.x:t".into() }),
                r#"{"type":"request","id":7,"op":{"op":"iscsi_login","portal":"10.0.0.9","target":"iqn.2026-01.x:t"}}"#
                    .into(),
            ),
            (
                req(Op::IscsiLogout { portal: "10.0.0.9".into(), target: "iqn.2026-01.x:t".into() }),
                r#"{"type":"request","id":7,"op":{"op":"iscsi_logout","portal":"10.0.0.9","target":"iqn.2026-01.x:t"}}"#
                    .into(),
            ),
            (req(Op::IscsiSessions), r#"{"type":"request","id":7,"op":{"op":"iscsi_sessions"}}"#.into()),
            (
                req(Op::IscsiLuns { target: "iqn.2026-01.x:t".into() }),
                r#"{"type":"request","id":7,"op":{"op":"iscsi_luns","target":"iqn.2026-01.x:t"}}"#.into(),
            ),
            (
                req(Op::IscsiRescan { target: "iqn.2026-01.x:t".into() }),
                r#"{"type":"request","id":7,"op":{"op":"iscsi_rescan","target":"iqn.2026-01.x:t"}}"#.into(),
            ),
            (
                req(Op::IscsiForget { target: "iqn.2026-01.x:t".into(), lun: "naa.6001405ab".into() }),
                r#"{"type":"request","id":7,"op":{"op":"iscsi_forget","target":"iqn.2026-01.x:t","lun":"naa.6001405ab"}}"#
                    .into(),
            ),
            (
                req(Op::ArrayManage {
                    access: driver::ArrayAdminAccess {
                        plugin: "ovm-lio".into(),
                        host: "10.0.0.9".into(),
                        port: 3261,
                        username: "admin".into(),
                        password: "pw".into(),
                        fingerprint: Some("sha256:00".into()),
                    },
                    call: driver::ArrayOp::CreateLun {
                        target: "iqn.2026-01.x:t".into(),
                        name: "l1".into(),
                        size_bytes: 1024,
                    },
                }),
                concat!(
                    r#"{"type":"request","id":7,"op":{"op":"array_manage","access":{"plugin":"ovm-lio","#,
                    r#""host":"10.0.0.9","port":3261,"username":"admin","password":"pw","fingerprint":"sha256:00"},"#,
                    r#""call":{"method":"create_lun","params":{"target":"iqn.2026-01.x:t","name":"l1","size_bytes":1024}}}}"#
                )
                .into(),
            ),
            (
                req(Op::ArrayManage {
                    access: driver::ArrayAdminAccess {
                        plugin: "ovm-lio".into(),
                        host: "a".into(),
                        port: 1,
                        username: "u".into(),
                        password: "p".into(),
                        fingerprint: None,
                    },
                    call: driver::ArrayOp::Fingerprint,
                }),
                concat!(
                    r#"{"type":"request","id":7,"op":{"op":"array_manage","access":{"plugin":"ovm-lio","#,
                    r#""host":"a","port":1,"username":"u","password":"p"},"call":{"method":"fingerprint"}}}"#
                )
                .into(),
            ),
            (
                req(Op::StorageWrite { path: "/r/a.img".into(), offset: 512, data: "AAE=".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_write","path":"/r/a.img","offset":512,"data":"AAE="}}"#
                    .into(),
            ),
            (
                req(Op::StorageFinishWrite { path: "/r/a.img".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_finish_write","path":"/r/a.img"}}"#.into(),
            ),
            (
                req(Op::StoragePut { path: "/r/VirtualMachines/v/vm.cfg".into(), contents: "eD0x".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_put","path":"/r/VirtualMachines/v/vm.cfg","contents":"eD0x"}}"#
                    .into(),
            ),
            (
                req(Op::StorageListRepository { mount_point: "/OVS/Repositories/r".into(), after: None }),
                r#"{"type":"request","id":7,"op":{"op":"storage_list_repository","mount_point":"/OVS/Repositories/r"}}"#
                    .into(),
            ),
            (
                req(Op::StorageListRepository { mount_point: "/r".into(), after: Some("ISOs/a.iso".into()) }),
                r#"{"type":"request","id":7,"op":{"op":"storage_list_repository","mount_point":"/r","after":"ISOs/a.iso"}}"#
                    .into(),
            ),
            (
                req(Op::StorageReadConfig { path: "/r/repository.cfg".into() }),
                r#"{"type":"request","id":7,"op":{"op":"storage_read_config","path":"/r/repository.cfg"}}"#.into(),
            ),
            (req(Op::NetPorts), r#"{"type":"request","id":7,"op":{"op":"net_ports"}}"#.into()),
            (req(Op::NetConfig), r#"{"type":"request","id":7,"op":{"op":"net_config"}}"#.into()),
            (
                req(Op::NetApply {
                    changes: vec![
                        driver::NetChange::Put(driver::NetItem::Vlan(driver::VlanConfig {
                            parent: "bond0".into(),
                            vlan_id: 300,
                            mtu: 1500,
                        })),
                        driver::NetChange::Remove(driver::NetKey::Bridge("vmnet9".into())),
                    ],
                    opts: driver::ApplyOptions { force: true, confirm_within_ms: 20_000, management: None },
                }),
                r#"{"type":"request","id":7,"op":{"op":"net_apply","changes":[{"put":{"vlan":{"parent":"bond0","vlan_id":300,"mtu":1500}}},{"remove":{"bridge":"vmnet9"}}],"opts":{"force":true,"confirm_within_ms":20000}}}"#.into(),
            ),
            (req(Op::NetConfirm { txn: 3 }), r#"{"type":"request","id":7,"op":{"op":"net_confirm","txn":3}}"#.into()),
            (req(Op::NetTxnState { txn: 3 }), r#"{"type":"request","id":7,"op":{"op":"net_txn_state","txn":3}}"#.into()),
            (
                req(Op::NicAttach {
                    vm: VmId(uuid::Uuid::nil()),
                    nic: NicSpec { mac: "00:16:3e:00:00:01".into(), bridge: "vmnet300".into() },
                }),
                r#"{"type":"request","id":7,"op":{"op":"nic_attach","vm":"00000000-0000-0000-0000-000000000000","nic":{"mac":"00:16:3e:00:00:01","bridge":"vmnet300"}}}"#.into(),
            ),
            (
                req(Op::NicDetach { vm: VmId(uuid::Uuid::nil()), mac: "00:16:3e:00:00:01".into() }),
                r#"{"type":"request","id":7,"op":{"op":"nic_detach","vm":"00000000-0000-0000-0000-000000000000","mac":"00:16:3e:00:00:01"}}"#.into(),
            ),
            (
                req(Op::DomainNics { vm: VmId(uuid::Uuid::nil()) }),
                r#"{"type":"request","id":7,"op":{"op":"domain_nics","vm":"00000000-0000-0000-0000-000000000000"}}"#.into(),
            ),
            (
                req(Op::SendGuestMessage { vm: VmId(uuid::Uuid::nil()), key: "hostname".into(), value: "web-01".into() }),
                r#"{"type":"request","id":7,"op":{"op":"send_guest_message","vm":"00000000-0000-0000-0000-000000000000","key":"hostname","value":"web-01"}}"#.into(),
            ),
            (
                req(Op::RemoveGuestMessage { vm: VmId(uuid::Uuid::nil()), key: "hostname".into() }),
                r#"{"type":"request","id":7,"op":{"op":"remove_guest_message","vm":"00000000-0000-0000-0000-000000000000","key":"hostname"}}"#.into(),
            ),
            (
                req(Op::GuestMessages { vm: VmId(uuid::Uuid::nil()) }),
                r#"{"type":"request","id":7,"op":{"op":"guest_messages","vm":"00000000-0000-0000-0000-000000000000"}}"#.into(),
            ),
            (
                req(Op::GuestData { vm: VmId(uuid::Uuid::nil()) }),
                r#"{"type":"request","id":7,"op":{"op":"guest_data","vm":"00000000-0000-0000-0000-000000000000"}}"#.into(),
            ),
        ];
        let info = HostInfo {
            hostname: "xen1".into(),
            hardware: HostHardware {
                cpus: 8,
                memory_mib: 32768,
                xen_version: "4.17.7".into(),
                ports: vec![EthernetPort {
                    name: "eth0".into(),
                    mac: "52:54:00:12:34:56".into(),
                    speed_mbps: Some(1000),
                    carrier: None,
                    driver: None,
                    mtu: None,
                    max_mtu: None,
                }],
                hvm_capable: false,
                virt: None,
                cpu: None,
                toolstack: String::new(),
            },
            dom0_memory_mib: 1024,
            owner: Some("m1".into()),
        };
        // An agent of this version also reports the hypervisor's capabilities, the CPU and the
        // toolstack; the frame above (an earlier agent's) still decodes, without them.
        let mut facts = info.clone();
        facts.hardware.ports.clear();
        facts.hardware.hvm_capable = true;
        facts.hardware.virt = Some(VirtCapabilities { pv: true, hvm: true, hap: true, shadow: false });
        facts.hardware.cpu =
            Some(HostCpu { vendor: "GenuineIntel".into(), features: vec![3219913727, 4294582783] });
        facts.hardware.toolstack = "xl".into();
        let status = DomainStatus {
            uuid: Some(vm),
            name: "web01".into(),
            domid: 3,
            state: DomainRunState::Blocked,
            memory_mib: 512,
            vcpus: 1,
            cpu_time_ns: 123456789,
        };
        let dom0 = DomainStatus {
            uuid: None,
            name: "Domain-0".into(),
            domid: 0,
            state: DomainRunState::Running,
            ..status.clone()
        };
        let resp = |result: Result<Reply, Error>| AgentMessage::Response { id: 7, result };
        let change = |change: DomainChange| AgentMessage::Change { change };
        let agent: Vec<(AgentMessage, String)> = vec![
            (
                AgentMessage::Welcome { version: 1, hostname: "xen1".into(), ownership: Ownership::Unowned },
                r#"{"type":"welcome","version":1,"hostname":"xen1","ownership":"unowned"}"#.into(),
            ),
            (
                AgentMessage::Welcome { version: 1, hostname: "xen1".into(), ownership: Ownership::OwnedByYou },
                r#"{"type":"welcome","version":1,"hostname":"xen1","ownership":"owned_by_you"}"#.into(),
            ),
            (
                AgentMessage::Refused { error: Error::PermissionDenied { reason: "not the owner".into() } },
                r#"{"type":"refused","error":{"PermissionDenied":{"reason":"not the owner"}}}"#.into(),
            ),
            (resp(Ok(Reply::Done)), r#"{"type":"response","id":7,"result":{"Ok":{"kind":"done"}}}"#.into()),
            (
                resp(Ok(Reply::HostInfo(info))),
                concat!(
                    r#"{"type":"response","id":7,"result":{"Ok":{"kind":"host_info","value":{"hostname":"xen1","#,
                    r#""hardware":{"cpus":8,"memory_mib":32768,"xen_version":"4.17.7","ports":[{"name":"eth0","#,
                    r#""mac":"52:54:00:12:34:56","speed_mbps":1000}],"hvm_capable":false},"dom0_memory_mib":1024,"#,
                    r#""owner":"m1"}}}}"#
                )
                .into(),
            ),
            (
                resp(Ok(Reply::HostInfo(facts))),
                concat!(
                    r#"{"type":"response","id":7,"result":{"Ok":{"kind":"host_info","value":{"hostname":"xen1","#,
                    r#""hardware":{"cpus":8,"memory_mib":32768,"xen_version":"4.17.7","ports":[],"hvm_capable":true,"#,
                    r#""virt":{"pv":true,"hvm":true,"hap":true,"shadow":false},"#,
                    r#""cpu":{"vendor":"GenuineIntel","features":[3219913727,4294582783]},"toolstack":"xl"},"#,
                    r#""dom0_memory_mib":1024,"owner":"m1"}}}}"#
                )
                .into(),
            ),
            (
                resp(Ok(Reply::Load(HostLoad {
                    cpu_percent: 12.5,
                    guest_memory_mib: 2048,
                    free_memory_mib: 29696,
                    cpus: 4,
                    domains: vec![driver::DomainLoad { vm, cpu_percent: 150.0, memory_mib: 512 }],
                    interfaces: vec![driver::InterfaceCounters {
                        name: "bond0".into(),
                        rx_bytes: 10,
                        tx_bytes: 20,
                        speed_mbps: Some(2000),
                    }],
                }))),
                format!(
                    concat!(
                        r#"{{"type":"response","id":7,"result":{{"Ok":{{"kind":"load","value":{{"cpu_percent":12.5,"#,
                        r#""guest_memory_mib":2048,"free_memory_mib":29696,"cpus":4,"#,
                        r#""domains":[{{"vm":"{}","cpu_percent":150.0,"memory_mib":512}}],"#,
                        r#""interfaces":[{{"name":"bond0","rx_bytes":10,"tx_bytes":20,"speed_mbps":2000}}]}}}}}}}}"#
                    ),
                    vm.0
                ),
            ),
            (
                resp(Ok(Reply::Domains(vec![dom0, status]))),
                format!(
                    concat!(
                        r#"{{"type":"response","id":7,"result":{{"Ok":{{"kind":"domains","value":[{{"uuid":null,"#,
                        r#""name":"Domain-0","domid":0,"state":"Running","memory_mib":512,"vcpus":1,"#,
                        r#""cpu_time_ns":123456789}},{{"uuid":{},"name":"web01","domid":3,"state":"Blocked","#,
                        r#""memory_mib":512,"vcpus":1,"cpu_time_ns":123456789}}]}}}}}}"#
                    ),
                    VM
                ),
            ),
            (resp(Ok(Reply::Domid(12))), r#"{"type":"response","id":7,"result":{"Ok":{"kind":"domid","value":12}}}"#.into()),
            (
                resp(Ok(Reply::Console("boot\n".into()))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"console","value":"boot\n"}}}"#.into(),
            ),
            (
                resp(Ok(Reply::GuestData([("ip".to_owned(), "10.0.0.5".to_owned())].into()))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"guest_data","value":{"ip":"10.0.0.5"}}}}"#.into(),
            ),
            (
                resp(Ok(Reply::Ticket(IncomingTicket { destination: "10.0.0.2:8899".into(), token: "t1".into() }))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"ticket","value":{"destination":"10.0.0.2:8899","token":"t1"}}}}"#.into(),
            ),
            (AgentMessage::Receiving, r#"{"type":"receiving"}"#.into()),
            (AgentMessage::ConsoleOpen, r#"{"type":"console_open"}"#.into()),
            (
                resp(Ok(Reply::FileSystems(vec![DiscoveredFileSystem {
                    path: "/e".into(),
                    total_bytes: 10,
                    free_bytes: 4,
                    repository: Some("r".into()),
                }]))),
                concat!(
                    r#"{"type":"response","id":7,"result":{"Ok":{"kind":"file_systems","value":[{"path":"/e","#,
                    r#""total_bytes":10,"free_bytes":4,"repository":"r"}]}}}"#
                )
                .into(),
            ),
            (
                resp(Ok(Reply::Mounts(vec![FileSystemMount {
                    source: MountSource::Nfs { host: "nfs1".into(), export: "/e".into(), version: None },
                    mount_point: "/OVS/Repositories/r".into(),
                }]))),
                concat!(
                    r#"{"type":"response","id":7,"result":{"Ok":{"kind":"mounts","value":[{"source":{"kind":"nfs","#,
                    r#""host":"nfs1","export":"/e","version":null},"mount_point":"/OVS/Repositories/r"}]}}}"#
                )
                .into(),
            ),
            (
                resp(Ok(Reply::Mounts(vec![FileSystemMount {
                    source: MountSource::External {
                        plugin: "p1".into(),
                        host: "nas1:/x".into(),
                        path: "/x/a".into(),
                    },
                    mount_point: "/OVS/Repositories/r".into(),
                }]))),
                concat!(
                    r#"{"type":"response","id":7,"result":{"Ok":{"kind":"mounts","value":[{"source":{"kind":"external","#,
                    r#""plugin":"p1","host":"nas1:/x","path":"/x/a"},"mount_point":"/OVS/Repositories/r"}]}}}"#
                )
                .into(),
            ),
            (
                resp(Ok(Reply::Usage(FsUsage { total_bytes: 10, used_bytes: 6 }))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"usage","value":{"total_bytes":10,"used_bytes":6}}}}"#
                    .into(),
            ),
            (
                resp(Ok(Reply::Initiator("iqn.2026-01.x:s1".into()))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"initiator","value":"iqn.2026-01.x:s1"}}}"#.into(),
            ),
            (
                resp(Ok(Reply::Targets(vec!["iqn.2026-01.x:t".into()]))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"targets","value":["iqn.2026-01.x:t"]}}}"#.into(),
            ),
            (
                resp(Ok(Reply::Sessions(vec![IscsiSession {
                    portal: "10.0.0.9:3260".into(),
                    target: "iqn.2026-01.x:t".into(),
                }]))),
                concat!(
                    r#"{"type":"response","id":7,"result":{"Ok":{"kind":"sessions","value":[{"portal":"10.0.0.9:3260","#,
                    r#""target":"iqn.2026-01.x:t"}]}}}"#
                )
                .into(),
            ),
            (
                resp(Ok(Reply::Luns(vec![Lun {
                    id: "naa.6001405".into(),
                    name: "lun0".into(),
                    size_bytes: 512,
                    thin_clone_of: None,
                }]))),
                concat!(
                    r#"{"type":"response","id":7,"result":{"Ok":{"kind":"luns","value":[{"id":"naa.6001405","#,
                    r#""name":"lun0","size_bytes":512,"thin_clone_of":null}]}}}"#
                )
                .into(),
            ),
            (
                resp(Ok(Reply::ClusterState(Some(driver::ClusterStatus {
                    cluster: "p1".into(),
                    members: vec!["s1".into(), "s2".into()],
                    master: Some("s2".into()),
                    epoch: 3,
                    heartbeats: vec![model::MemberStatus {
                        name: "s1".into(),
                        incarnation: 0,
                        last_heartbeat_ms: 5,
                        heartbeat: model::HeartbeatState::Dead,
                    }],
                })))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"cluster_state","value":{"cluster":"p1","members":["s1","s2"],"master":"s2","epoch":3,"heartbeats":[{"name":"s1","incarnation":0,"last_heartbeat_ms":5,"heartbeat":"dead"}]}}}}"#
                    .into(),
            ),
            (resp(Ok(Reply::ClusterState(None))), r#"{"type":"response","id":7,"result":{"Ok":{"kind":"cluster_state","value":null}}}"#.into()),
            (
                resp(Ok(Reply::FileSize(None))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"file_size","value":null}}}"#.into(),
            ),
            (
                resp(Ok(Reply::RepositoryFiles(vec![
                    RepositoryFile { path: "VirtualDisks/d.img".into(), size_bytes: 9 },
                    RepositoryFile { path: "VirtualDisks/d.img.cfg".into(), size_bytes: 3 },
                ]))),
                concat!(
                    r#"{"type":"response","id":7,"result":{"Ok":{"kind":"repository_files","value":["#,
                    r#"{"path":"VirtualDisks/d.img","size_bytes":9},"#,
                    r#"{"path":"VirtualDisks/d.img.cfg","size_bytes":3}]}}}"#
                )
                .into(),
            ),
            (
                resp(Ok(Reply::Config(Some("x = 1\n".into())))),
                r#"{"type":"response","id":7,"result":{"Ok":{"kind":"config","value":"x = 1\n"}}}"#.into(),
            ),
            (
                resp(Err(Error::Unsupported { what: "x".into() })),
                r#"{"type":"response","id":7,"result":{"Err":{"Unsupported":{"what":"x"}}}}"#.into(),
            ),
            (
                change(DomainChange::Appeared { uuid: Some(vm), domid: 3 }),
                format!(r#"{{"type":"change","change":{{"Appeared":{{"uuid":{VM},"domid":3}}}}}}"#),
            ),
            (
                change(DomainChange::StateChanged {
                    uuid: Some(vm),
                    domid: 3,
                    state: DomainRunState::Shutdown(ShutdownReason::Crash),
                }),
                format!(
                    r#"{{"type":"change","change":{{"StateChanged":{{"uuid":{VM},"domid":3,"state":{{"Shutdown":"Crash"}}}}}}}}"#
                ),
            ),
            (
                change(DomainChange::StateChanged { uuid: None, domid: 4, state: DomainRunState::Paused }),
                r#"{"type":"change","change":{"StateChanged":{"uuid":null,"domid":4,"state":"Paused"}}}"#.into(),
            ),
            (
                change(DomainChange::Disappeared { uuid: Some(vm), domid: 3 }),
                format!(r#"{{"type":"change","change":{{"Disappeared":{{"uuid":{VM},"domid":3}}}}}}"#),
            ),
            (change(DomainChange::HostLost), r#"{"type":"change","change":"HostLost"}"#.into()),
            (
                change(DomainChange::Disconnected { reason: "eof".into() }),
                r#"{"type":"change","change":{"Disconnected":{"reason":"eof"}}}"#.into(),
            ),
            (change(DomainChange::Resync), r#"{"type":"change","change":"Resync"}"#.into()),
            (
                AgentMessage::ProtocolError { message: "malformed".into() },
                r#"{"type":"protocol_error","message":"malformed"}"#.into(),
            ),
        ];
        fn check<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(m: &T, json: &str) {
            let frame = encode(m).unwrap();
            assert_eq!(std::str::from_utf8(&frame[4..]).unwrap(), json);
            assert_eq!(frame[..4], (json.len() as u32).to_be_bytes());
            assert_eq!(&decode::<T>(json.as_bytes()).unwrap(), m, "{json}");
        }
        for (m, json) in &client {
            check(m, json);
        }
        for (m, json) in &agent {
            check(m, json);
        }
        // Every operation is pinned above (a new one fails to compile here until it is).
        let ops: Vec<&Op> = client
            .iter()
            .filter_map(|(m, _)| if let ClientMessage::Request { op, .. } = m { Some(op) } else { None })
            .collect();
        for op in &ops {
            match op {
                Op::TakeOwnership { .. }
                | Op::ReleaseOwnership
                | Op::HostInfo
                | Op::Load
                | Op::ListDomains
                | Op::CreateDomain { .. }
                | Op::Shutdown { .. }
                | Op::Reboot { .. }
                | Op::Destroy { .. }
                | Op::Pause { .. }
                | Op::Unpause { .. }
                | Op::Suspend { .. }
                | Op::Restore { .. }
                | Op::PrepareIncoming { .. }
                | Op::CancelIncoming { .. }
                | Op::SendDomain { .. }
                | Op::SetMemory { .. }
                | Op::SetVcpus { .. }
                | Op::Console { .. }
                | Op::PowerOff
                | Op::WakeOnLan { .. }
                | Op::ClaimVirtualIp { .. }
                | Op::ReleaseVirtualIp { .. }
                | Op::ClusterJoin { .. }
                | Op::ClusterLeave
                | Op::ClusterStatus
                | Op::StorageCreate { .. }
                | Op::StorageCopy { .. }
                | Op::StorageDelete { .. }
                | Op::RestartAgent
                | Op::StorageDiscover { .. }
                | Op::StorageMount { .. }
                | Op::StorageUnmount { .. }
                | Op::StorageMounts
                | Op::StorageInitRepository { .. }
                | Op::StorageRemoveRepository { .. }
                | Op::StorageUsage { .. }
                | Op::StorageResize { .. }
                | Op::StorageFileSize { .. }
                | Op::IscsiInitiator
                | Op::IscsiDiscover { .. }
                | Op::IscsiLogin { .. }
                | Op::IscsiLogout { .. }
                | Op::IscsiSessions
                | Op::IscsiLuns { .. }
                | Op::IscsiRescan { .. }
                | Op::IscsiForget { .. }
                | Op::ArrayManage { .. }
                | Op::StorageWrite { .. }
                | Op::StorageFinishWrite { .. }
                | Op::StoragePut { .. }
                | Op::StorageListRepository { .. }
                | Op::StorageReadConfig { .. }
                | Op::NetPorts
                | Op::NetConfig
                | Op::NetApply { .. }
                | Op::NetConfirm { .. }
                | Op::NetTxnState { .. }
                | Op::NicAttach { .. }
                | Op::NicDetach { .. }
                | Op::DomainNics { .. }
                | Op::SendGuestMessage { .. }
                | Op::GuestMessages { .. }
                | Op::RemoveGuestMessage { .. }
                | Op::GuestData { .. } => {}
            }
        }
        // 72 operations, two of them pinned a second time for a cold move.
        assert_eq!(ops.len(), 74);
    }

    #[test]
    fn seam_conversions_name_devices_and_bridges() {
        let seam = driver::DomainSpec {
            uuid: VmId::new(),
            name: "h".into(),
            domain_type: model::DomainType::Hvm,
            vcpus: 1,
            max_vcpus: 1,
            memory_mib: 512,
            max_memory_mib: 512,
            disks: vec![
                driver::DiskSpec { slot: 0, path: "/r/a.img".into(), read_only: false, cdrom: false },
                driver::DiskSpec { slot: 2, path: String::new(), read_only: true, cdrom: true },
            ],
            nics: vec![
                driver::NicSpec { mac: "m1".into(), bridge: None },
                driver::NicSpec { mac: "m2".into(), bridge: Some("br1".into()) },
            ],
            kernel: None,
            initrd: None,
            cmdline: None,
            restart_actions: Default::default(),
            boot_order: vec![model::BootDevice::Cdrom, model::BootDevice::Disk],
            ha_priority: None,
            framebuffer: false,
            network_boot: None,
        };
        let wire = DomainSpec::from(&seam);
        assert!(serde_json::to_string(&wire).unwrap().contains(r#""boot_order":["Cdrom","Disk"]"#));
        assert_eq!(wire.disks.iter().map(|d| d.vdev.as_str()).collect::<Vec<_>>(), ["hda", "hdc"]);
        assert_eq!(wire.nics.iter().map(|n| n.bridge.as_str()).collect::<Vec<_>>(), ["xenbr0", "br1"]);
        let back = driver::DomainSpec::try_from(wire.clone()).unwrap();
        assert_eq!(back.disks, seam.disks);
        assert_eq!(back.boot_order, seam.boot_order);
        assert_eq!(back.nics[1], seam.nics[1]);
        assert_eq!(back.nics[0].bridge.as_deref(), Some("xenbr0"));
        let mut bad = wire;
        bad.disks[0].vdev = "sda".into();
        assert_eq!(driver::DomainSpec::try_from(bad).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }
}
