//! [`XenDriver`]: the manager's [`Driver`] for the Xen host the library runs
//! on (dom0), over our own xenstore client, privcmd hypercalls and, for
//! building, saving and restoring domains, the Xen toolstack (`xl`).
//!
//! Addresses: `xen:///` or `xen://localhost`. Remote Xen servers are reached
//! through the agent on each of them (`crate::agent`), which serves this
//! driver in its dom0.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::domain::{DomainEvent, ShutdownRequest, XenHost};
use super::error::{XenError, XsErrno};
use super::naming;
use super::network::Netlink;
use super::perms::{Access, Perms};
use super::privcmd::{DomainInfo, DomainState, ShutdownReason as XenShutdownReason};
use super::storage::LocalStorage;
use super::xl::{GuestType, LifecycleAction, XlBoot, XlDisk, XlDomainBuilder, XlToolstack, XlVif};
use crate::driver::network::{Applied, ApplyOptions, NetChange, NetworkConfig, RawNetwork, TxnState};
use crate::driver::{
    DiscoveredFileSystem, DomainChange, DomainLoad, DomainOps, DomainRunState, DomainSpec, DomainStatus,
    Driver, FileServerAccess, FileStoragePlugin, FileSystemMount, FsUsage, HostInfo, HostLoad, HostOps,
    InterfaceCounters, MountSource, NetworkOps, NetworkTxns, NicSpec, ServerConnection, ShutdownReason,
};
use crate::model::{
    BootDevice, DomainType, EthernetPort, HostCpu, HostHardware, ObjectKind, RestartAction, VirtCapabilities,
    VmId,
};
use crate::{Error, Result};

/// xenstore node recording which manager owns this host (dom0-only).
pub const OWNER_PATH: &str = "/ovm/owner";

const SERVER: &str = "xen:///";

fn map_err(e: XenError) -> Error {
    match e {
        XenError::NoSuchDomain(d) => Error::not_found(ObjectKind::Vm, format!("domain {d}")),
        XenError::InvalidArgument(m) => Error::invalid("argument", m),
        XenError::Timeout(what) => Error::Timeout { what, millis: 0 },
        XenError::InterfaceVersion { .. } => Error::Unsupported { what: e.to_string() },
        XenError::Xenstore { errno: XsErrno::Eacces | XsErrno::Eperm, .. } => {
            Error::PermissionDenied { reason: e.to_string() }
        }
        other => Error::backend(SERVER, other.to_string()),
    }
}

/// Creates the directory that will hold `path` (a repository's subdirectory on first use).
/// The driver of the local Xen host.
#[derive(Debug, Clone, Default)]
pub struct XenDriver {
    password: Option<String>,
    xl: XlToolstack,
    plugins: super::plugin::PluginRunner,
}

impl XenDriver {
    /// A driver; with `password`, [`Driver::connect`] checks it (without,
    /// being root in dom0 is the credential).
    pub fn new(password: Option<String>) -> XenDriver {
        XenDriver { password, xl: XlToolstack::default(), plugins: Default::default() }
    }

    /// Runs the external storage plug-ins of `dir` (instead of
    /// [`super::plugin::DEFAULT_PLUGIN_DIR`]).
    pub fn with_storage_plugin_dir(mut self, dir: impl Into<std::path::PathBuf>) -> XenDriver {
        self.plugins = super::plugin::PluginRunner::new(dir);
        self
    }

    /// Uses this `xl` toolstack (binary and configuration directory).
    pub fn with_toolstack(mut self, xl: XlToolstack) -> XenDriver {
        self.xl = xl;
        self
    }

    fn open(&self, manager_id: &str, claim: bool) -> Result<Arc<dyn ServerConnection>> {
        let rt = runtime()?;
        let host = rt.block_on(XenHost::open()).map_err(map_err)?;
        let conn = XenConnection::new(rt, host, self.xl.clone())?
            .with_storage(LocalStorage::default().with_plugins(self.plugins.clone()));
        conn.claim(manager_id, claim)?;
        Ok(Arc::new(conn))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ovm-xen")
        .enable_all()
        .build()
        .map_err(|e| Error::backend(SERVER, format!("start runtime: {e}")))
}

impl Driver for XenDriver {
    fn name(&self) -> &'static str {
        "xen"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn handles(&self, address: &str) -> bool {
        address == "xen:///" || address == "xen://localhost" || address == "xen://localhost/"
    }

    fn connect(&self, address: &str, password: &str, manager_id: &str) -> Result<Arc<dyn ServerConnection>> {
        if !self.handles(address) {
            return Err(Error::invalid("address", format!("{address} is not a local Xen address")));
        }
        if let Some(p) = &self.password {
            if p != password {
                return Err(Error::PermissionDenied {
                    reason: "wrong agent password for the local Xen host".into(),
                });
            }
        }
        self.open(manager_id, true)
    }

    fn reconnect(&self, address: &str, manager_id: &str) -> Result<Arc<dyn ServerConnection>> {
        if !self.handles(address) {
            return Err(Error::invalid("address", format!("{address} is not a local Xen address")));
        }
        self.open(manager_id, true)
    }

    fn release(&self, address: &str, manager_id: &str) -> Result<()> {
        if !self.handles(address) {
            return Err(Error::invalid("address", format!("{address} is not a local Xen address")));
        }
        let rt = runtime()?;
        rt.block_on(async {
            let xs = super::XsClient::connect_default().await.map_err(map_err)?;
            match xs.try_read_string(OWNER_PATH).await.map_err(map_err)? {
                Some(o) if o == manager_id => xs.rm(OWNER_PATH).await.map_err(map_err),
                _ => Err(Error::PermissionDenied {
                    reason: "the local Xen host is not owned by this manager".into(),
                }),
            }
        })
    }
}

/// A connection to the local Xen host (the [`ServerConnection`] of [`XenDriver`]).
#[derive(Debug)]
pub struct XenConnection {
    rt: tokio::runtime::Runtime,
    host: XenHost,
    xl: XlToolstack,
    changes: broadcast::Sender<DomainChange>,
    last_load: Mutex<Option<LoadMark>>,
    storage: LocalStorage,
    iscsi: super::iscsi::Iscsi,
    /// Network changes under a rollback timer.
    net_txns: NetworkTxns,
}

impl XenConnection {
    /// The same connection with its file storage rooted elsewhere than `/OVS` (tests).
    pub fn with_storage(mut self, storage: LocalStorage) -> Self {
        self.storage = storage;
        self
    }

    /// Wraps a host; starts forwarding its domain events to [`DomainOps::watch`].
    pub fn new(rt: tokio::runtime::Runtime, host: XenHost, xl: XlToolstack) -> Result<XenConnection> {
        let (changes, _) = broadcast::channel(1024);
        let mut events = rt.block_on(host.events(Duration::from_secs(5))).map_err(map_err)?;
        let tx = changes.clone();
        rt.spawn(async move {
            while let Some(ev) = events.next().await {
                let change = match ev {
                    DomainEvent::Appeared(i) => DomainChange::Appeared { uuid: vm_id(&i), domid: i.domid },
                    DomainEvent::Disappeared { domid, uuid } => {
                        DomainChange::Disappeared { uuid: vm_uuid(domid, uuid), domid }
                    }
                    DomainEvent::StateChanged { domid, uuid, new, .. } => DomainChange::StateChanged {
                        uuid: vm_uuid(domid, uuid),
                        domid,
                        state: run_state(new),
                    },
                };
                let _ = tx.send(change);
            }
            let _ = tx.send(DomainChange::HostLost);
        });
        Ok(XenConnection {
            rt,
            host,
            xl,
            changes,
            last_load: Mutex::new(None),
            storage: LocalStorage::default(),
            iscsi: super::iscsi::Iscsi::default(),
            net_txns: NetworkTxns::default(),
        })
    }

    fn claim(&self, manager_id: &str, claim: bool) -> Result<()> {
        self.rt.block_on(async {
            let xs = self.host.xenstore();
            match xs.try_read_string(OWNER_PATH).await.map_err(map_err)? {
                Some(o) if o != manager_id => Err(Error::PermissionDenied {
                    reason: format!("the local Xen host is owned by another manager ({o})"),
                }),
                Some(_) => Ok(()),
                None if claim => {
                    xs.write(OWNER_PATH, manager_id).await.map_err(map_err)?;
                    xs.set_perms(OWNER_PATH, &Perms::owned_by(0, Access::None)).await.map_err(map_err)
                }
                None => Ok(()),
            }
        })
    }

    fn domid_of(&self, vm: VmId) -> Result<u32> {
        let doms = self.host.hypercalls().domains().map_err(map_err)?;
        doms.iter()
            .find(|d| d.domid != 0 && d.uuid == vm.uuid() && d.state != DomainState::Dying)
            .map(|d| d.domid)
            .ok_or_else(|| Error::not_found(ObjectKind::Vm, vm))
    }

    fn builder(&self, spec: &DomainSpec) -> Result<XlDomainBuilder> {
        build(&self.storage, &self.iscsi, self.host.console_dir(), spec)
    }

    /// How the pool's master builds a domain here for HA ([`super::pool_ha`]): as a start does.
    fn restarter(&self) -> super::cluster::Restarter {
        let (storage, iscsi, xl) = (self.storage.clone(), self.iscsi.clone(), self.xl.clone());
        let console_dir = self.host.console_dir().to_path_buf();
        Arc::new(move |spec: &DomainSpec| {
            build(&storage, &iscsi, &console_dir, spec)?.create(&xl).map_err(map_err)
        })
    }

    /// Keep the pool's HA record of an HA-enabled domain just built here (see
    /// [`super::pool_ha`]); a record that cannot be written is logged: the domain runs, and the
    /// manager restarts it if this server dies while it is there.
    fn ha_record(&self, spec: &DomainSpec) {
        if spec.ha_priority.is_none() {
            return;
        }
        if let Some((mount, dlm, me)) = super::cluster::this_server().ha_context() {
            if let Err(e) = super::pool_ha::record(&mount, &dlm, &me, spec) {
                log::warn!("VM {}: the pool's HA record was not written: {e}", spec.name);
            }
        }
    }

    /// Forget the pool's HA record of a domain stopped here on request.
    fn ha_forget(&self, vm: VmId) {
        if let Some((mount, dlm, me)) = super::cluster::this_server().ha_context() {
            if let Err(e) = super::pool_ha::forget(&mount, &dlm, &me, vm) {
                log::warn!("VM {vm}: the pool's HA record was not removed: {e}");
            }
        }
    }

    fn request(&self, vm: VmId, request: ShutdownRequest, timeout: Duration) -> Result<()> {
        let domid = self.domid_of(vm)?;
        self.rt.block_on(self.host.shutdown(domid, request, timeout, false)).map(drop).map_err(|e| match e {
            XenError::Timeout(what) => Error::Timeout { what, millis: timeout.as_millis() as u64 },
            other => map_err(other),
        })
    }
}

/// The `xl` builder of a domain: disks resolved on this server (a LUN to its device here, a file
/// checked to lie in a repository), bridges named.
fn build(
    storage: &LocalStorage,
    iscsi: &super::iscsi::Iscsi,
    console_dir: &Path,
    spec: &DomainSpec,
) -> Result<XlDomainBuilder> {
    let guest_type = match spec.domain_type {
        DomainType::Pv => GuestType::Pv,
        DomainType::Pvh => GuestType::Pvh,
        DomainType::Hvm => GuestType::Hvm,
        DomainType::PvHvm => GuestType::PvHvm,
    };
    let hvm = guest_type.is_hvm();
    if spec.network_boot.is_some() && hvm {
        return Err(Error::invalid("network_boot", "HVM guests boot over the network with PXE"));
    }
    // What the domain boots: kernel, initial ramdisk, command line.
    let (kernel, ramdisk, cmdline): (Option<PathBuf>, Option<PathBuf>, Option<String>) =
        match (&spec.network_boot, &spec.kernel) {
            // A network boot: the installer that `netboot::fetch_installer` read into this
            // server's directory for the VM before the domain is created.
            (Some(nb), _) => {
                let dir = network_boot_dir(spec.uuid);
                (
                    Some(dir.join(crate::driver::netboot::KERNEL)),
                    Some(dir.join(crate::driver::netboot::INITRD)),
                    Some(nb.cmdline.clone()).filter(|c| !c.is_empty()),
                )
            }
            (None, Some(k)) => (Some(k.into()), spec.initrd.as_ref().map(Into::into), spec.cmdline.clone()),
            // HVM guests boot from their firmware.
            (None, None) if hvm => (None, spec.initrd.as_ref().map(Into::into), spec.cmdline.clone()),
            // A PV or PVH guest without a kernel of its own boots the one on its disk: the
            // server's PV boot loader (GRUB built for Xen) runs inside the guest's domain and
            // reads the guest's `/boot/grub/grub.cfg`, so dom0 never parses what the guest's disk
            // holds (as pygrub would).
            (None, None) => {
                if spec.initrd.is_some() {
                    return Err(Error::invalid("initrd", "an initial ramdisk needs a kernel"));
                }
                let loader = naming::pv_boot_loader(spec.domain_type, |p| p.is_file()).ok_or_else(|| {
                    Error::Unsupported {
                        what: format!(
                            "booting a {:?} guest from its disk: this server has no PV boot loader \
                             ({}); give the VM a kernel",
                            spec.domain_type,
                            naming::PV_BOOT_LOADERS
                                .iter()
                                .filter(|(t, _)| *t == spec.domain_type)
                                .map(|(_, p)| *p)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                })?;
                (Some(loader), None, None)
            }
        };
    let action = |a: RestartAction| match a {
        RestartAction::Destroy => LifecycleAction::Destroy,
        RestartAction::Restart => LifecycleAction::Restart,
        RestartAction::Preserve => LifecycleAction::Preserve,
    };
    let name = naming::domain_name(&spec.name, spec.uuid.uuid());
    let mut b = XlDomainBuilder::new(name.clone())
        .guest_type(guest_type)
        .uuid(spec.uuid.uuid())
        .memory_mib(spec.memory_mib)
        .maxmem_mib(spec.max_memory_mib.max(spec.memory_mib))
        .vcpus(spec.vcpus)
        .maxvcpus(spec.max_vcpus.max(spec.vcpus))
        .on_poweroff(action(spec.restart_actions.on_poweroff))
        .on_reboot(action(spec.restart_actions.on_reboot))
        .on_crash(action(spec.restart_actions.on_crash));
    if let Some(k) = kernel {
        b = b.kernel(k);
    }
    if let Some(r) = ramdisk {
        b = b.ramdisk(r);
    }
    if let Some(c) = cmdline {
        b = b.cmdline(c);
    }
    if spec.framebuffer && !hvm {
        // A PV guest's framebuffer is served by a device model of its own in dom0 (libxl starts
        // it for `vfb`), its VNC server on dom0's loopback as an HVM guest's screen is.
        if spec.domain_type != DomainType::Pv {
            return Err(Error::invalid("framebuffer", "only PV guests have a virtual framebuffer"));
        }
        b = b.vnc(true);
    }
    if hvm {
        // The serial port is the text console, logged where xenconsoled logs a PV guest's; the
        // screen is a VNC server on dom0's loopback.
        b = b
            .boot_order(
                spec.boot_order
                    .iter()
                    .map(|d| match d {
                        BootDevice::Disk => XlBoot::Disk,
                        BootDevice::Cdrom => XlBoot::Cdrom,
                        BootDevice::Network => XlBoot::Network,
                    })
                    .collect(),
            )
            .serial_log(console_dir.join(format!("guest-{name}.log")))
            .vnc(true);
    }
    for d in &spec.disks {
        if d.cdrom && !hvm {
            return Err(Error::invalid(
                "disks",
                "a CD-ROM drive is emulated: PV and PVH guests reach an ISO as a read-only disk",
            ));
        }
        // An HVM guest's emulated IDE controller has four drives, and a CD-ROM drive is one of them.
        if (spec.domain_type == DomainType::Hvm || d.cdrom) && d.slot >= 4 {
            return Err(Error::invalid(
                "disks",
                format!("slot {}: an HVM guest's emulated drives are slots 0 to 3", d.slot),
            ));
        }
        let vdev = if d.cdrom {
            naming::disk_device(DomainType::Hvm, d.slot)
        } else {
            naming::disk_device(spec.domain_type, d.slot)
        };
        if d.cdrom && d.path.is_empty() {
            b = b.disk(XlDisk {
                target: PathBuf::new(),
                vdev,
                format: "raw".into(),
                readonly: true,
                cdrom: true,
            });
            continue;
        }
        // A LUN is named by its SCSI identifier; this server's device for it is found now.
        let target = match crate::driver::lun_of(&d.path) {
            Some(id) => iscsi.device_of(id).ok_or_else(|| {
                Error::backend(SERVER, format!("LUN {id} is not a disk of this server (not logged in?)"))
            })?,
            None if d.path.starts_with(crate::driver::LUN_PATH_PREFIX) => {
                return Err(Error::invalid("disks", format!("{:?} is not a LUN identifier", d.path)))
            }
            None => {
                storage.domain_disk(&d.path)?;
                PathBuf::from(&d.path)
            }
        };
        b = b.disk(XlDisk {
            target,
            vdev,
            format: "raw".into(),
            readonly: d.read_only || d.cdrom,
            cdrom: d.cdrom,
        });
    }
    for n in &spec.nics {
        let mac = if n.mac.is_empty() { None } else { Some(n.mac.clone()) };
        let bridge = n.bridge.clone().unwrap_or_else(|| naming::DEFAULT_BRIDGE.to_owned());
        b = b.vif(XlVif { bridge, mac });
    }
    Ok(b)
}

/// Where a server keeps the installers of its network-booted guests, a directory per VM.
pub const NETWORK_BOOT_DIR: &str = "/var/lib/ovm/netboot";

fn network_boot_dir(vm: VmId) -> PathBuf {
    Path::new(NETWORK_BOOT_DIR).join(vm.0.simple().to_string())
}

/// One sample of what the load is computed from.
#[derive(Debug)]
struct LoadMark {
    at: Instant,
    /// Each physical CPU's idle time, ns, when the hypervisor tells it.
    idle: Option<Vec<u64>>,
    domains: Vec<DomainInfo>,
}

/// The traffic counters of the network interfaces under `sys` (`/sys/class/net`), loopback left
/// out. An interface that vanishes while it is read is left out.
fn interface_counters(sys: &std::path::Path) -> Vec<InterfaceCounters> {
    let read = |dir: &std::path::Path, f: &str| -> Option<String> {
        std::fs::read_to_string(dir.join(f)).ok().map(|s| s.trim().to_owned())
    };
    let mut out: Vec<InterfaceCounters> = std::fs::read_dir(sys)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            if name == "lo" {
                return None;
            }
            let dir = e.path();
            Some(InterfaceCounters {
                rx_bytes: read(&dir, "statistics/rx_bytes")?.parse().ok()?,
                tx_bytes: read(&dir, "statistics/tx_bytes")?.parse().ok()?,
                // `speed` is -1 or unreadable without a link.
                speed_mbps: read(&dir, "speed")
                    .and_then(|s| s.parse::<i64>().ok())
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| *v > 0),
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn vm_uuid(domid: u32, uuid: uuid::Uuid) -> Option<VmId> {
    (domid != 0 && !uuid.is_nil()).then_some(VmId(uuid))
}

fn vm_id(i: &DomainInfo) -> Option<VmId> {
    vm_uuid(i.domid, i.uuid)
}

fn run_state(s: DomainState) -> DomainRunState {
    match s {
        DomainState::Running | DomainState::NoState => DomainRunState::Running,
        DomainState::Blocked => DomainRunState::Blocked,
        DomainState::Paused => DomainRunState::Paused,
        DomainState::Dying => DomainRunState::Dying,
        DomainState::Shutdown(r) => DomainRunState::Shutdown(match r {
            XenShutdownReason::Poweroff | XenShutdownReason::Unknown(_) => ShutdownReason::Poweroff,
            XenShutdownReason::Reboot => ShutdownReason::Reboot,
            XenShutdownReason::Suspend => ShutdownReason::Suspend,
            XenShutdownReason::Crash => ShutdownReason::Crash,
            XenShutdownReason::Watchdog => ShutdownReason::Watchdog,
            XenShutdownReason::SoftReset => ShutdownReason::SoftReset,
        }),
    }
}

/// The toolstack a Xen host reports: domains are built and migrated with `xl` (libxl).
const TOOLSTACK: &str = "xl";

/// The CPU vendor of `/proc/cpuinfo` (`vendor_id`, the CPUID vendor string dom0 sees: Xen passes
/// the real vendor through).
fn cpu_vendor(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "vendor_id").then(|| v.trim().to_owned()).filter(|v| !v.is_empty())
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

impl HostOps for XenConnection {
    fn host_info(&self) -> Result<HostInfo> {
        let hv = self.host.hypercalls();
        let phys = hv.physinfo().map_err(map_err)?;
        let version = hv.version().map_err(map_err)?;
        let dom0 = hv.domain(0).map_err(map_err)?;
        let owner = self.rt.block_on(self.host.xenstore().try_read_string(OWNER_PATH)).map_err(map_err)?;
        Ok(HostInfo {
            hostname: hostname(),
            hardware: HostHardware {
                cpus: phys.nr_cpus,
                memory_mib: phys.total_bytes >> 20,
                xen_version: version.to_string(),
                ports: Netlink::new().ports()?,
                hvm_capable: phys.hvm,
                virt: Some(VirtCapabilities {
                    pv: phys.pv,
                    hvm: phys.hvm,
                    hap: phys.hap,
                    shadow: phys.shadow,
                }),
                cpu: Some(HostCpu {
                    vendor: std::fs::read_to_string("/proc/cpuinfo")
                        .ok()
                        .and_then(|c| cpu_vendor(&c))
                        .unwrap_or_default(),
                    features: phys.hw_cap.to_vec(),
                }),
                toolstack: TOOLSTACK.into(),
            },
            dom0_memory_mib: dom0.memory_bytes >> 20,
            owner,
            default_bridge: naming::DEFAULT_BRIDGE.into(),
        })
    }

    fn load(&self) -> Result<HostLoad> {
        let hv = self.host.hypercalls();
        let phys = hv.physinfo().map_err(map_err)?;
        let cpus = phys.nr_cpus.max(1);
        let sample = || -> Result<LoadMark> {
            let domains = hv.domains().map_err(map_err)?;
            // Older or restricted hypervisors may refuse getcpuinfo: the domains' CPU time stands in.
            let idle = hv.cpu_idle_times(cpus).ok().filter(|v| v.len() == cpus as usize);
            Ok(LoadMark { at: Instant::now(), idle, domains })
        };
        let mut last = self.last_load.lock().unwrap_or_else(|e| e.into_inner());
        let before = match last.take() {
            Some(m) => m,
            None => {
                let m = sample()?;
                std::thread::sleep(Duration::from_millis(100));
                m
            }
        };
        let now = sample()?;
        let wall_ns = now.at.duration_since(before.at).as_nanos().max(1) as f64;
        let cpu_percent = match (&before.idle, &now.idle) {
            (Some(a), Some(b)) => {
                let idle: u64 = a.iter().zip(b).map(|(x, y)| y.saturating_sub(*x)).sum();
                (100.0 * (1.0 - idle as f64 / (wall_ns * f64::from(cpus)))).clamp(0.0, 100.0)
            }
            _ => {
                let used: u64 = now
                    .domains
                    .iter()
                    .map(|d| {
                        let prev = before.domains.iter().find(|p| p.domid == d.domid && p.uuid == d.uuid);
                        d.cpu_time_ns.saturating_sub(prev.map_or(d.cpu_time_ns, |p| p.cpu_time_ns))
                    })
                    .sum();
                (100.0 * used as f64 / (wall_ns * f64::from(cpus))).clamp(0.0, 100.0)
            }
        } as f32;
        let domains = now
            .domains
            .iter()
            .filter_map(|d| {
                let vm = vm_id(d)?;
                // A domain new since the previous sample (or a domid reused) starts from its creation.
                let prev = before.domains.iter().find(|p| p.domid == d.domid && p.uuid == d.uuid);
                let used = d.cpu_time_ns.saturating_sub(prev.map_or(0, |p| p.cpu_time_ns));
                let span = if prev.is_some() { wall_ns } else { wall_ns.max(used as f64) };
                Some(DomainLoad {
                    vm,
                    cpu_percent: (100.0 * used as f64 / span) as f32,
                    memory_mib: d.memory_bytes >> 20,
                })
            })
            .collect();
        let guest_memory_mib =
            now.domains.iter().filter(|d| d.domid != 0).map(|d| d.memory_bytes).sum::<u64>() >> 20;
        *last = Some(now);
        Ok(HostLoad {
            cpu_percent,
            guest_memory_mib,
            free_memory_mib: phys.free_bytes >> 20,
            cpus,
            domains,
            interfaces: interface_counters(std::path::Path::new("/sys/class/net")),
        })
    }

    fn power_off(&self) -> Result<()> {
        // The agent powers its server off (it knows the server's power-off command); the library
        // itself does not power off the host it runs on.
        Err(Error::Unsupported { what: "powering off the host the library runs on".into() })
    }

    fn wake_on_lan(&self, mac: &str, interface: &str) -> Result<()> {
        super::network::send_wake_on_lan(mac, interface)
    }

    fn claim_virtual_ip(&self, vip: &crate::driver::vip::VirtualIp) -> Result<()> {
        vip.claim(&super::vip::ArpTiming::default())?;
        Ok(())
    }

    fn release_virtual_ip(&self, vip: &crate::driver::vip::VirtualIp) -> Result<()> {
        vip.release()?;
        Ok(())
    }
}

impl DomainOps for XenConnection {
    fn list_domains(&self) -> Result<Vec<DomainStatus>> {
        let doms = self.rt.block_on(self.host.list_domains()).map_err(map_err)?;
        Ok(doms
            .into_iter()
            .map(|d| DomainStatus {
                uuid: vm_id(&d.info),
                name: d.name.clone().unwrap_or_else(|| format!("domain-{}", d.info.domid)),
                domid: d.info.domid,
                state: run_state(d.info.state),
                memory_mib: d.info.memory_bytes >> 20,
                vcpus: d.info.online_vcpus,
                cpu_time_ns: d.info.cpu_time_ns,
            })
            .collect())
    }

    fn create_domain(&self, spec: &DomainSpec) -> Result<u32> {
        match &spec.network_boot {
            Some(nb) => crate::driver::netboot::fetch_installer(nb, &network_boot_dir(spec.uuid))?,
            // An installer fetched for an earlier start is not kept once the VM boots without it.
            None => {
                let _ = std::fs::remove_dir_all(network_boot_dir(spec.uuid));
            }
        }
        let b = self.builder(spec)?;
        let domid = b.create(&self.xl).map_err(map_err)?;
        self.ha_record(spec);
        Ok(domid)
    }

    fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        self.request(vm, ShutdownRequest::Poweroff, timeout)?;
        self.ha_forget(vm);
        // The guest has shut down; its toolstack monitor destroys the domain (on_poweroff). Wait
        // for that, so that the domain is gone (and its name free) when this returns; clean up
        // ourselves if the monitor does not.
        let grace = timeout.saturating_sub(t0.elapsed()).max(Duration::from_secs(10));
        let deadline = Instant::now() + grace;
        loop {
            let doms = self.host.hypercalls().domains().map_err(map_err)?;
            let Some(d) = doms.iter().find(|d| d.domid != 0 && d.uuid == vm.uuid()) else { return Ok(()) };
            if Instant::now() >= deadline {
                // A dying domain goes by itself; one left shut down is destroyed.
                return if d.state == DomainState::Dying { Ok(()) } else { self.destroy(vm) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn reboot(&self, vm: VmId, timeout: Duration) -> Result<()> {
        self.request(vm, ShutdownRequest::Reboot, timeout)
    }

    fn destroy(&self, vm: VmId) -> Result<()> {
        let domid = self.domid_of(vm)?;
        // The toolstack also tears down the domain's devices; without it,
        // the hypercall alone.
        match self.xl.destroy(domid) {
            Ok(()) => Ok(()),
            Err(XenError::Io { .. }) => self.host.destroy(domid).map_err(map_err),
            Err(e) => Err(map_err(e)),
        }?;
        self.ha_forget(vm);
        Ok(())
    }

    fn pause(&self, vm: VmId) -> Result<()> {
        self.host.pause(self.domid_of(vm)?).map_err(map_err)
    }

    fn unpause(&self, vm: VmId) -> Result<()> {
        self.host.unpause(self.domid_of(vm)?).map_err(map_err)
    }

    fn suspend(&self, vm: VmId, path: &str) -> Result<()> {
        let domid = self.domid_of(vm)?;
        // `xl save` makes no directories; the VM's directory in the repository may not exist yet.
        self.storage.prepare_write(path)?;
        self.xl.run(&["save", &domid.to_string(), path]).map_err(map_err)?;
        self.ha_forget(vm);
        Ok(())
    }

    fn restore(&self, spec: &DomainSpec, path: &str) -> Result<u32> {
        // The image lies in shared storage that other servers write, and the toolstack builds the
        // domain from the configuration inside it: that configuration is checked first, as an
        // incoming migration's is.
        self.storage.saved_image(path)?;
        let mut image = std::fs::File::open(path)
            .map_err(|e| Error::backend("xen", format!("open the suspend image {path}: {e}")))?;
        let (_, config) = crate::xen::migration::read_header(&mut image)?;
        crate::xen::migration::validate_config(&config, spec, |br| {
            std::path::Path::new("/sys/class/net").join(br).join("bridge").is_dir()
        })?;
        drop(image);
        self.xl.run(&["restore", path]).map_err(map_err)?;
        let domid = self.xl.domid(&naming::domain_name(&spec.name, spec.uuid.uuid())).map_err(map_err)?;
        self.ha_record(spec);
        Ok(domid)
    }

    fn set_memory(&self, vm: VmId, memory_mib: u64) -> Result<()> {
        let domid = self.domid_of(vm)?;
        self.rt.block_on(self.host.set_memory_target(domid, memory_mib * 1024)).map_err(map_err)
    }

    fn set_vcpus(&self, vm: VmId, vcpus: u32) -> Result<()> {
        let domid = self.domid_of(vm)?;
        self.rt.block_on(self.host.set_online_vcpus(domid, vcpus)).map_err(map_err)
    }

    fn console(&self, vm: VmId) -> Result<String> {
        let domid = self.domid_of(vm)?;
        self.rt.block_on(self.host.console_output(domid, 256 * 1024)).map_err(map_err)
    }

    fn watch(&self) -> Result<broadcast::Receiver<DomainChange>> {
        Ok(self.changes.subscribe())
    }

    /// `xl network-attach DOMID bridge=B mac=M` (one argument per key, as xl parses them); the
    /// bridge must exist.
    fn attach_nic(&self, vm: VmId, nic: &NicSpec) -> Result<()> {
        let vif = XlVif {
            bridge: nic.bridge.clone().unwrap_or_else(|| naming::DEFAULT_BRIDGE.to_owned()),
            mac: (!nic.mac.is_empty()).then(|| nic.mac.clone()),
        };
        let spec = vif.spec().map_err(map_err)?;
        let domid = self.domid_of(vm)?;
        if !Netlink::new().is_bridge(&vif.bridge)? {
            return Err(Error::invalid(
                "bridge",
                format!("bridge {} does not exist on this server: the NIC cannot be plugged", vif.bridge),
            ));
        }
        let mut args = vec!["network-attach".to_owned(), domid.to_string()];
        args.extend(spec.split(',').map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.xl.run(&args).map(drop).map_err(map_err)
    }

    /// `xl network-detach DOMID MAC`.
    fn detach_nic(&self, vm: VmId, mac: &str) -> Result<()> {
        super::xl::check_mac(mac).map_err(map_err)?;
        let domid = self.domid_of(vm)?;
        self.xl.run(&["network-detach", &domid.to_string(), mac]).map(drop).map_err(map_err)
    }

    /// The domain's VIFs from their backends in xenstore (`/local/domain/0/backend/vif/DOMID/N`):
    /// MAC, bridge, and whether connected (state 4).
    fn domain_nics(&self, vm: VmId) -> Result<Vec<(String, String, bool)>> {
        let domid = self.domid_of(vm)?;
        let base = format!("/local/domain/0/backend/vif/{domid}");
        self.rt.block_on(async {
            let xs = self.host.xenstore();
            let mut devs: Vec<(u32, String)> = match xs.directory(&base).await {
                Ok(d) => d.into_iter().filter_map(|n| Some((n.parse().ok()?, n))).collect(),
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(map_err(e)),
            };
            devs.sort();
            let mut nics = Vec::new();
            for (_, dev) in devs {
                let path = format!("{base}/{dev}");
                let Some(mac) = xs.try_read_string(&format!("{path}/mac")).await.map_err(map_err)? else {
                    continue;
                };
                let bridge = xs.try_read_string(&format!("{path}/bridge")).await.map_err(map_err)?;
                let state = xs.try_read_string(&format!("{path}/state")).await.map_err(map_err)?;
                nics.push((mac, bridge.unwrap_or_default(), state.as_deref().map(str::trim) == Some("4")));
            }
            Ok(nics)
        })
    }

    fn send_guest_message(&self, vm: VmId, key: &str, value: &str) -> Result<()> {
        crate::driver::check_guest_message(key, value)?;
        let domid = self.domid_of(vm)?;
        let dir = guest_message_dir(domid);
        self.rt.block_on(async {
            let xs = self.host.xenstore();
            // dom0 owns the messages; the guest reads them and cannot write them.
            let perms = Perms::owned_by(0, Access::None).grant(domid, Access::Read);
            for d in [format!("/local/domain/{domid}/ovm"), dir.clone()] {
                if xs.try_read_string(&d).await.map_err(map_err)?.is_none() {
                    xs.mkdir(&d).await.map_err(map_err)?;
                }
                xs.set_perms(&d, &perms).await.map_err(map_err)?;
            }
            xs.write(&format!("{dir}/{key}"), value).await.map_err(map_err)
        })
    }

    fn open_console(&self, vm: VmId) -> Result<std::os::unix::net::UnixStream> {
        let domid = self.domid_of(vm)?;
        // libxl writes where the device model's VNC server listens once it is up (HVM: the
        // guest's screen; PV: its virtual framebuffer, with `vfb`).
        let port = self.rt.block_on(async {
            self.host
                .xenstore()
                .try_read_string(&format!("/local/domain/{domid}/console/vnc-port"))
                .await
                .map_err(map_err)
        })?;
        let port: u16 = port.as_deref().map(str::trim).and_then(|p| p.parse().ok()).ok_or_else(|| {
            Error::invalid("vm", format!("VM {vm} has no graphical console (no VNC server)"))
        })?;
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| Error::backend(SERVER, format!("connect to the VNC server of VM {vm}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::Internal { message: format!("socket pair: {e}") })?;
        crate::driver::splice_console(tcp, theirs)
            .map_err(|e| Error::Internal { message: format!("console relay: {e}") })?;
        Ok(ours)
    }

    fn guest_messages(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        let domid = self.domid_of(vm)?;
        let dir = guest_message_dir(domid);
        self.rt.block_on(async {
            let xs = self.host.xenstore();
            let names = match xs.directory(&dir).await {
                Ok(d) => d,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(map_err(e)),
            };
            let mut out = std::collections::BTreeMap::new();
            for n in names {
                if let Some(v) = xs.try_read_string(&format!("{dir}/{n}")).await.map_err(map_err)? {
                    out.insert(n, v);
                }
            }
            Ok(out)
        })
    }

    fn remove_guest_message(&self, vm: VmId, key: &str) -> Result<()> {
        crate::driver::check_guest_key(key)?;
        let domid = self.domid_of(vm)?;
        self.rt.block_on(async {
            match self.host.xenstore().rm(&format!("{}/{key}", guest_message_dir(domid))).await {
                Err(e) if !e.is_not_found() => Err(map_err(e)),
                _ => Ok(()),
            }
        })
    }

    fn guest_data(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        let domid = self.domid_of(vm)?;
        // libxl makes `data` writable by the guest: what is read here is the guest's word, so
        // names and sizes are checked and the number of values bounded.
        let base = format!("/local/domain/{domid}/data");
        self.rt.block_on(async {
            let xs = self.host.xenstore();
            let mut names = match xs.directory(&base).await {
                Ok(d) => d,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(map_err(e)),
            };
            names.retain(|n| crate::driver::check_guest_key(n).is_ok());
            names.sort();
            let mut out = std::collections::BTreeMap::new();
            for n in names {
                if out.len() == crate::driver::MAX_GUEST_DATA {
                    break;
                }
                // Gone meanwhile, too long or not text: left out.
                let bytes = match xs.read(&format!("{base}/{n}")).await {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(map_err(e)),
                };
                if bytes.len() > crate::driver::MAX_GUEST_VALUE {
                    continue;
                }
                if let Ok(v) = String::from_utf8(bytes) {
                    out.insert(n, v);
                }
            }
            Ok(out)
        })
    }
}

/// Where a guest finds the messages ovm leaves it (dom0 writes, the guest reads).
fn guest_message_dir(domid: u32) -> String {
    format!("/local/domain/{domid}/ovm/message")
}

/// dom0's network configuration through rtnetlink ([`Netlink`]), changes made atomic and, when
/// forced across the management link, undone unless confirmed ([`NetworkTxns`]).
impl NetworkOps for XenConnection {
    fn ports(&self) -> Result<Vec<EthernetPort>> {
        Netlink::new().ports()
    }

    fn network_config(&self) -> Result<NetworkConfig> {
        Netlink::new().read()
    }

    fn apply(&self, changes: &[NetChange], opts: &ApplyOptions) -> Result<Applied> {
        self.net_txns.apply(Arc::new(Netlink::new()), changes, opts, None)
    }

    fn confirm(&self, txn: u64) -> Result<TxnState> {
        self.net_txns.confirm(txn)
    }

    fn txn_state(&self, txn: u64) -> Result<TxnState> {
        self.net_txns.state(txn)
    }
}

/// Files on the local file systems; mounting is not done by this driver (dom0's own mounts serve).
impl FileStoragePlugin for XenConnection {
    fn discover(&self, server: &FileServerAccess) -> Result<Vec<DiscoveredFileSystem>> {
        self.storage.discover(server)
    }

    fn mount(&self, source: &MountSource, mount_point: &str) -> Result<()> {
        self.storage.mount(source, mount_point)
    }

    fn unmount(&self, mount_point: &str) -> Result<()> {
        self.storage.unmount(mount_point)
    }

    fn mounts(&self) -> Result<Vec<FileSystemMount>> {
        self.storage.mounts()
    }

    fn init_repository(&self, mount_point: &str, repository: &str) -> Result<()> {
        self.storage.init_repository(mount_point, repository)
    }

    fn remove_repository(&self, mount_point: &str, repository: &str) -> Result<()> {
        self.storage.remove_repository(mount_point, repository)
    }

    fn usage(&self, path: &str) -> Result<FsUsage> {
        self.storage.usage(path)
    }

    fn create_file(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.storage.create_file(path, size_bytes)
    }

    fn copy_file(&self, from: &str, to: &str) -> Result<()> {
        self.storage.copy_file(from, to)
    }

    fn delete_file(&self, path: &str) -> Result<()> {
        self.storage.delete_file(path)
    }

    fn resize_file(&self, path: &str, size_bytes: u64) -> Result<()> {
        self.storage.resize_file(path, size_bytes)
    }

    fn file_size(&self, path: &str) -> Result<Option<u64>> {
        self.storage.file_size(path)
    }

    fn write_file_at(&self, path: &str, offset: u64, data: &[u8]) -> Result<()> {
        self.storage.write_file_at(path, offset, data)
    }

    fn finish_write(&self, path: &str) -> Result<()> {
        self.storage.finish_write(path)
    }

    fn put_file(&self, path: &str, contents: &[u8]) -> Result<()> {
        self.storage.put_file(path, contents)
    }

    fn list_repository(&self, mount_point: &str) -> Result<Vec<crate::driver::RepositoryFile>> {
        self.storage.list_repository(mount_point)
    }

    fn read_config(&self, path: &str) -> Result<Option<String>> {
        self.storage.read_config(path)
    }
}

/// The generic iSCSI plug-in (open-iscsi), and ovm's LIO plug-in for vendor-style management.
impl crate::driver::StorageArrayPlugin for XenConnection {
    fn initiator(&self) -> Result<String> {
        self.iscsi.initiator()
    }

    fn discover_targets(&self, portal: &str) -> Result<Vec<String>> {
        self.iscsi.discover_targets(portal)
    }

    fn login(&self, portal: &str, target: &str) -> Result<()> {
        self.iscsi.login(portal, target)
    }

    fn logout(&self, portal: &str, target: &str) -> Result<()> {
        self.iscsi.logout(portal, target)
    }

    fn sessions(&self) -> Result<Vec<crate::driver::IscsiSession>> {
        self.iscsi.sessions()
    }

    fn list_luns(&self, target: &str) -> Result<Vec<crate::driver::Lun>> {
        self.iscsi.list_luns(target)
    }

    fn rescan(&self, target: &str) -> Result<()> {
        self.iscsi.rescan(target)
    }

    fn forget_lun(&self, target: &str, id: &str) -> Result<()> {
        self.iscsi.forget_lun(target, id)
    }

    /// ovm's LIO plug-in: JSON-RPC to the target's `ovm-lio` from this server.
    fn array_management(
        &self,
        access: &crate::driver::ArrayAdminAccess,
    ) -> Result<Box<dyn crate::driver::ArrayManagement + '_>> {
        if access.plugin != crate::driver::LIO_PLUGIN {
            return Err(Error::Unsupported {
                what: format!("the storage-array plug-in {:?}", access.plugin),
            });
        }
        access.check()?;
        let access = access.clone();
        Ok(Box::new(crate::driver::ArrayOpClient(move |call| crate::lio::call(&access, call))))
    }
}

/// Host, domains, dom0's network configuration, local file storage (NFS and local) and the
/// generic iSCSI initiator; no cluster or migration (the local driver has no agents on other
/// servers).
impl crate::driver::ClusterOps for XenConnection {
    fn join(&self, spec: &crate::driver::cluster::ClusterSpec) -> Result<crate::driver::ClusterStatus> {
        super::cluster::this_server().set_restarter(self.restarter());
        super::cluster::this_server().join(spec)
    }

    fn manager_seen(&self) {
        super::cluster::this_server().manager_seen()
    }

    fn leave(&self) -> Result<()> {
        super::cluster::this_server().leave()
    }

    fn status(&self) -> Result<Option<crate::driver::ClusterStatus>> {
        super::cluster::this_server().status()
    }
}

impl ServerConnection for XenConnection {
    fn network(&self) -> Option<&dyn NetworkOps> {
        Some(self)
    }

    fn cluster(&self) -> Option<&dyn crate::driver::ClusterOps> {
        Some(self)
    }

    fn array_storage(&self) -> Option<&dyn crate::driver::StorageArrayPlugin> {
        Some(self)
    }

    fn file_storage(&self) -> Option<&dyn FileStoragePlugin> {
        Some(self)
    }

    fn migration_streams(&self) -> Option<&dyn crate::driver::MigrationStreams> {
        Some(self)
    }
}

/// Migration streams through the toolstack (`xl migrate` and `xl migrate-receive`, see
/// [`crate::xen::migration`]); the agent carries them between servers.
impl crate::driver::MigrationStreams for XenConnection {
    fn check_incoming(&self, spec: &DomainSpec) -> Result<()> {
        if self.domid_of(spec.uuid).is_ok() {
            return Err(Error::invalid("destination", "the domain already runs on this server"));
        }
        if !matches!(spec.domain_type, DomainType::Pv | DomainType::Pvh) {
            return Err(Error::Unsupported { what: "migrating HVM domains on the local Xen driver".into() });
        }
        let free = self.host.hypercalls().physinfo().map_err(map_err)?.free_bytes >> 20;
        let need = spec.max_memory_mib.max(spec.memory_mib);
        if need > free {
            return Err(Error::InsufficientResources {
                object: crate::model::ObjectRef::new(ObjectKind::Vm, spec.uuid),
                resource: "memory (MiB)".into(),
                needed: need,
                available: free,
            });
        }
        for d in spec.disks.iter().filter(|d| !d.path.is_empty()) {
            if crate::driver::lun_of(&d.path).is_some() || d.path.starts_with(crate::driver::LUN_PATH_PREFIX)
            {
                // Each server names a LUN by its own device: the stream carries the source's.
                return Err(Error::Unsupported {
                    what: format!(
                        "migrating a domain whose disk is a LUN ({}) on the local Xen driver",
                        d.path
                    ),
                });
            }
            self.storage.domain_disk(&d.path)?;
            if !std::path::Path::new(&d.path).exists() {
                return Err(Error::invalid("disk", format!("{} is not on this server", d.path)));
            }
        }
        for n in &spec.nics {
            let br = n.bridge.as_deref().unwrap_or(naming::DEFAULT_BRIDGE);
            if !std::path::Path::new("/sys/class/net").join(br).join("bridge").is_dir() {
                return Err(Error::invalid("bridge", format!("bridge {br} does not exist on this server")));
            }
        }
        Ok(())
    }

    fn receive_stream(
        &self,
        spec: &DomainSpec,
        mode: crate::model::MigrationMode,
        stream: std::os::unix::net::UnixStream,
    ) -> Result<u32> {
        let domid = match mode {
            crate::model::MigrationMode::Live => {
                crate::xen::migration::receive(self.xl.binary(), spec, stream)?;
                self.domid_of(spec.uuid)
            }
            // Restored paused, then run here; a domain left half-restored is destroyed.
            crate::model::MigrationMode::Cold => crate::xen::migration::receive_saved(
                self.xl.binary(),
                spec,
                stream,
                || {
                    let domid = self.domid_of(spec.uuid)?;
                    self.unpause(spec.uuid)?;
                    Ok(domid)
                },
                || {
                    if self.domid_of(spec.uuid).is_ok() {
                        let _ = self.destroy(spec.uuid);
                    }
                },
            ),
        }?;
        self.ha_record(spec);
        Ok(domid)
    }

    fn send_stream(
        &self,
        vm: VmId,
        live: bool,
        mode: crate::model::MigrationMode,
        stream: std::os::unix::net::UnixStream,
    ) -> Result<()> {
        let domid = self.domid_of(vm)?;
        if mode == crate::model::MigrationMode::Cold {
            // `xl save -p`: saved into the stream and left paused here, never destroyed.
            return crate::xen::migration::send_saved(self.xl.binary(), domid, stream);
        }
        if !live {
            self.pause(vm)?;
        }
        let sent = crate::xen::migration::send(self.xl.binary(), domid, stream);
        if sent.is_err() && !live && self.domid_of(vm).is_ok() {
            let _ = self.unpause(vm);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::driver::{DiskSpec, NicSpec};
    use crate::model::RestartActions;
    use crate::xen::client::{XsClient, XsConfig};
    use crate::xen::domain::tests::FakeHv;
    use crate::xen::fake::FakeXenstored;
    use crate::xen::sys;
    use crate::xen::transport::Transport;

    #[test]
    fn cpu_vendor_is_read_from_cpuinfo() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n";
        assert_eq!(cpu_vendor(info).as_deref(), Some("AuthenticAMD"));
        assert_eq!(cpu_vendor("processor\t: 0\nvendor_id\t:\n"), None);
        assert_eq!(cpu_vendor(""), None);
    }

    struct Rig {
        conn: XenConnection,
        fake: FakeXenstored,
        hv: Arc<FakeHv>,
        dir: PathBuf,
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A connection over the fake daemon, a fake hypervisor and a fake `xl`
    /// script that logs its arguments and answers `domid` with 5.
    fn rig(domids: &[u32]) -> Rig {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ovm-xen-driver-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let xl = dir.join("xl");
        std::fs::write(
            &xl,
            format!(
                "#!/bin/sh\necho \"$@\" >> {log}\nif [ \"$1\" = create ]; then cp \"$2\" {cfg}; fi\nif [ \"$1\" = domid ]; then echo 5; fi\nexit 0\n",
                log = dir.join("xl.log").display(),
                cfg = dir.join("last.cfg").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&xl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rt = runtime().unwrap();
        let fake = {
            let _g = rt.enter();
            FakeXenstored::start()
        };
        for d in domids.iter().filter(|d| **d != 0) {
            fake.external_write(&format!("/local/domain/{d}/name"), format!("guest{d}").as_bytes());
        }
        let xs =
            rt.block_on(XsClient::connect(Transport::Socket(fake.socket()), XsConfig::default())).unwrap();
        let hv = FakeHv::with(domids);
        let host = XenHost::with_parts(hv.clone(), xs);
        let conn = XenConnection::new(rt, host, XlToolstack::new(&xl, dir.join("cfg")))
            .unwrap()
            .with_storage(LocalStorage::with_root(&dir));
        Rig { conn, fake, hv, dir }
    }

    fn vm(domid: u32) -> VmId {
        VmId(uuid::Uuid::from_u128(0x1000 + u128::from(domid)))
    }

    fn spec() -> DomainSpec {
        DomainSpec {
            uuid: vm(5),
            name: "web01".into(),
            domain_type: DomainType::Pv,
            vcpus: 1,
            max_vcpus: 2,
            memory_mib: 256,
            max_memory_mib: 512,
            disks: vec![DiskSpec { slot: 0, path: "/repo/web01.img".into(), read_only: false, cdrom: false }],
            nics: vec![NicSpec { mac: "00:16:3e:01:02:03".into(), bridge: None }],
            kernel: Some("/boot/vmlinux".into()),
            initrd: Some("/boot/initrd.gz".into()),
            cmdline: Some("console=hvc0".into()),
            restart_actions: RestartActions::default(),
            boot_order: Vec::new(),
            ha_priority: None,
            framebuffer: false,
            network_boot: None,
        }
    }

    #[test]
    fn handles_local_addresses_only() {
        let d = XenDriver::new(None);
        assert!(d.handles("xen:///"));
        assert!(d.handles("xen://localhost"));
        assert!(!d.handles("sim://xen1"));
        assert!(!d.handles("xen://other-host"));
        assert_eq!(d.connect("sim://x", "", "m").unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        let d = XenDriver::new(Some("secret".into()));
        assert_eq!(
            d.connect("xen:///", "wrong", "m").unwrap_err().kind(),
            crate::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn lists_domains_and_maps_states() {
        let r = rig(&[0, 5]);
        r.hv.set_flags(5, sys::XEN_DOMINF_SHUTDOWN | (sys::SHUTDOWN_CRASH << sys::XEN_DOMINF_SHUTDOWNSHIFT));
        let doms = r.conn.list_domains().unwrap();
        assert_eq!(doms.len(), 2);
        assert_eq!((doms[0].uuid, doms[0].name.as_str(), doms[0].domid), (None, "Domain-0", 0));
        assert_eq!(doms[1].uuid, Some(vm(5)));
        assert_eq!(doms[1].name, "guest5");
        assert_eq!(doms[1].state, DomainRunState::Shutdown(ShutdownReason::Crash));
        assert_eq!(doms[1].memory_mib, 256);
        assert_eq!(doms[1].vcpus, 2);
    }

    #[test]
    fn ownership_is_recorded_in_xenstore() {
        let r = rig(&[0]);
        r.conn.claim("manager-a", true).unwrap();
        assert_eq!(r.fake.value(OWNER_PATH).unwrap(), b"manager-a");
        r.conn.claim("manager-a", true).unwrap();
        let e = r.conn.claim("manager-b", true).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::PermissionDenied);
    }

    #[test]
    fn creates_domains_through_xl() {
        let r = rig(&[0]);
        let mut web01 = spec();
        let disk = r.dir.join("web01.img");
        web01.disks[0].path = disk.to_str().unwrap().into();
        assert_eq!(r.conn.create_domain(&web01).unwrap(), 5);
        let log = std::fs::read_to_string(r.dir.join("xl.log")).unwrap();
        assert!(log.lines().next().unwrap().starts_with("create "), "{log}");
        assert_eq!(log.lines().nth(1), Some("domid web01"));
        let cfg = std::fs::read_to_string(r.dir.join("last.cfg")).unwrap();
        for line in [
            "name = \"web01\"",
            &format!("uuid = \"{}\"", vm(5)),
            "kernel = \"/boot/vmlinux\"",
            "maxmem = 512",
            "maxvcpus = 2",
            &format!("disk = [ 'format=raw,vdev=xvda,access=rw,target={}' ]", disk.display()),
            "vif = [ 'bridge=xenbr0,mac=00:16:3e:01:02:03' ]",
            "on_crash = \"restart\"",
        ] {
            assert!(cfg.lines().any(|l| l == line), "missing {line:?} in\n{cfg}");
        }
        // A disk is a file under the storage root, inside a repository only while it is mounted,
        // reached through no symbolic link that leads out: anything else of dom0 is refused.
        let escape = r.dir.join("escape");
        std::os::unix::fs::symlink("/etc", &escape).unwrap();
        for bad in [
            "/etc/shadow".to_owned(),
            "relative.img".to_owned(),
            format!("{}/Repositories/not-mounted/VirtualDisks/a.img", r.dir.display()),
            format!("{}/shadow", escape.display()),
            format!("{}/../shadow", r.dir.display()),
        ] {
            let mut hostile = web01.clone();
            hostile.uuid = vm(6);
            hostile.disks[0].path = bad.clone();
            let e = r.conn.create_domain(&hostile).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad}: {e}");
            let e = crate::driver::MigrationStreams::check_incoming(&r.conn, &hostile).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad}: {e}");
        }
        // An HVM guest boots from its firmware: its CD-ROM drive first, as asked, its serial port
        // logged beside the PV guests' consoles, its screen a VNC server on dom0's loopback.
        let mut hvm = spec();
        hvm.uuid = vm(7);
        hvm.name = "hvm01".into();
        hvm.domain_type = DomainType::Hvm;
        hvm.kernel = None;
        hvm.initrd = None;
        hvm.cmdline = None;
        let iso = r.dir.join("install.iso");
        hvm.disks = vec![
            DiskSpec { slot: 0, path: disk.to_str().unwrap().into(), read_only: false, cdrom: false },
            DiskSpec { slot: 2, path: iso.to_str().unwrap().into(), read_only: true, cdrom: true },
        ];
        hvm.boot_order = vec![BootDevice::Cdrom, BootDevice::Disk];
        r.conn.create_domain(&hvm).unwrap();
        let cfg = std::fs::read_to_string(r.dir.join("last.cfg")).unwrap();
        for line in [
            "type = \"hvm\"",
            "xen_platform_pci = 0",
            "boot = \"dc\"",
            "serial = \"file:/var/log/xen/console/guest-hvm01.log\"",
            "vnclisten = \"127.0.0.1\"",
            &format!(
                "disk = [ 'format=raw,vdev=hda,access=rw,target={}', 'format=raw,vdev=hdc,access=ro,devtype=cdrom,target={}' ]",
                disk.display(),
                iso.display()
            ),
        ] {
            assert!(cfg.lines().any(|l| l == line), "missing {line:?} in\n{cfg}");
        }
        assert!(!cfg.contains("kernel"), "{cfg}");
        // PVHVM: the PV disk names, the platform device.
        let mut pvhvm = hvm.clone();
        pvhvm.uuid = vm(8);
        pvhvm.name = "pvhvm01".into();
        pvhvm.domain_type = DomainType::PvHvm;
        r.conn.create_domain(&pvhvm).unwrap();
        let cfg = std::fs::read_to_string(r.dir.join("last.cfg")).unwrap();
        assert!(
            cfg.contains("xen_platform_pci = 1") && cfg.contains("vdev=xvda,") && cfg.contains("vdev=hdc,"),
            "{cfg}"
        );
        // A CD-ROM drive on a PV guest, or an emulated drive past the fourth, is refused.
        let mut pv_cd = spec();
        pv_cd.uuid = vm(9);
        pv_cd.disks = hvm.disks.clone();
        assert_eq!(r.conn.create_domain(&pv_cd).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        let mut fifth = hvm.clone();
        fifth.uuid = vm(10);
        fifth.disks[1].slot = 4;
        assert_eq!(r.conn.create_domain(&fifth).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        // A PV guest without a kernel boots the one on its disk through the server's PV boot
        // loader, if the server has one; a ramdisk without a kernel means nothing.
        let mut nokernel = spec();
        nokernel.uuid = vm(11);
        nokernel.kernel = None;
        assert_eq!(r.conn.create_domain(&nokernel).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        nokernel.initrd = None;
        nokernel.cmdline = None;
        match naming::pv_boot_loader(DomainType::Pv, |p| p.is_file()) {
            Some(loader) => {
                r.conn.create_domain(&nokernel).unwrap();
                let cfg = std::fs::read_to_string(r.dir.join("last.cfg")).unwrap();
                assert!(cfg.contains(&format!("kernel = \"{}\"", loader.display())), "{cfg}");
                assert!(!cfg.contains("ramdisk") && !cfg.contains("extra"), "{cfg}");
            }
            None => {
                let e = r.conn.create_domain(&nokernel).unwrap_err();
                assert_eq!(e.kind(), crate::ErrorKind::Unsupported, "{e}");
                assert!(e.to_string().contains("grub-x86_64-xen.bin"), "{e}");
            }
        }
    }

    #[test]
    fn domain_operations_by_vm_id() {
        let r = rig(&[0, 5]);
        r.conn.pause(vm(5)).unwrap();
        r.conn.unpause(vm(5)).unwrap();
        assert_eq!(r.hv.calls(), vec!["pause 5", "unpause 5"]);
        assert_eq!(r.conn.pause(vm(9)).unwrap_err().kind(), crate::ErrorKind::NotFound);
        r.conn.set_memory(vm(5), 128).unwrap();
        assert_eq!(r.fake.value("/local/domain/5/memory/target").unwrap(), b"131072");
        r.conn.set_vcpus(vm(5), 1).unwrap();
        assert_eq!(r.fake.value("/local/domain/5/cpu/1/availability").unwrap(), b"offline");
        let e = r.conn.shutdown(vm(5), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, Error::Timeout { millis: 200, .. }), "{e}");
        assert_eq!(r.fake.value("/local/domain/5/control/shutdown").unwrap(), b"poweroff");
        r.conn.destroy(vm(5)).unwrap();
        let log = std::fs::read_to_string(r.dir.join("xl.log")).unwrap();
        assert!(log.lines().any(|l| l == "destroy 5"), "{log}");
        let save = r.dir.join("VirtualMachines/web01/web01.save");
        r.conn.suspend(vm(5), save.to_str().unwrap()).unwrap();
        assert!(save.parent().unwrap().is_dir(), "suspend makes the VM's directory");
        let log = std::fs::read_to_string(r.dir.join("xl.log")).unwrap();
        assert!(log.lines().any(|l| l == format!("save 5 {}", save.display())), "{log}");
        assert!(r.conn.suspend(vm(5), "/etc/web01.save").is_err(), "outside the storage root");
        assert!(r.conn.migration().is_none() && r.conn.cluster().is_some() && r.conn.network().is_some());
        assert_eq!(r.conn.power_off().unwrap_err().kind(), crate::ErrorKind::Unsupported);
    }

    #[test]
    fn guest_messages_are_left_in_xenstore_for_the_guest_to_read_and_its_values_read_back() {
        let r = rig(&[0, 5]);
        r.conn.send_guest_message(vm(5), "hostname", "web-01").unwrap();
        r.conn.send_guest_message(vm(5), "motd", "line 1\nline 2").unwrap();
        assert_eq!(r.fake.value("/local/domain/5/ovm/message/hostname").unwrap(), b"web-01");
        // Owned by dom0, readable by the guest only.
        assert_eq!(r.fake.perms("/local/domain/5/ovm/message").unwrap(), ["n0", "r5"]);
        assert_eq!(r.fake.perms("/local/domain/5/ovm").unwrap(), ["n0", "r5"]);
        assert_eq!(r.conn.guest_messages(vm(5)).unwrap().len(), 2);
        r.conn.remove_guest_message(vm(5), "motd").unwrap();
        assert!(r.fake.value("/local/domain/5/ovm/message/motd").is_none());
        assert_eq!(
            r.conn.guest_messages(vm(5)).unwrap().into_iter().collect::<Vec<_>>(),
            [("hostname".to_owned(), "web-01".to_owned())]
        );
        r.conn.remove_guest_message(vm(5), "motd").unwrap();
        for (k, v) in [("a/b", "x"), ("", "x"), (".hidden", "x"), ("k", "nul\0"), ("k", &"x".repeat(4096))] {
            let e = r.conn.send_guest_message(vm(5), k, v).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{k:?}: {e}");
        }
        assert_eq!(
            r.conn.send_guest_message(vm(9), "k", "v").unwrap_err().kind(),
            crate::ErrorKind::NotFound
        );
        // What the guest reports, its bad names, long values and non-text left out.
        assert!(r.conn.guest_data(vm(5)).unwrap().is_empty());
        r.fake.external_write("/local/domain/5/data/ip", b"10.0.0.5");
        r.fake.external_write("/local/domain/5/data/reply-hostname", b"web-01");
        r.fake.external_write("/local/domain/5/data/.x", b"hidden");
        r.fake.external_write("/local/domain/5/data/big", &[b'x'; 3000]);
        r.fake.external_write("/local/domain/5/data/bin", &[0xff, 0xfe]);
        let d = r.conn.guest_data(vm(5)).unwrap();
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            [("ip".to_owned(), "10.0.0.5".to_owned()), ("reply-hostname".to_owned(), "web-01".to_owned())]
        );
    }

    #[test]
    fn nics_are_hot_plugged_through_xl_and_listed_from_xenstore() {
        crate::xen::network::tests::in_netns(|| {
            let r = rig(&[0, 5]);
            let log = || std::fs::read_to_string(r.dir.join("xl.log")).unwrap_or_default();
            let nic = NicSpec { mac: "00:16:3e:0a:0b:0c".into(), bridge: Some("br9".into()) };
            let e = r.conn.attach_nic(vm(5), &nic).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
            assert!(e.to_string().contains("bridge br9 does not exist"), "{e}");
            let bridge = crate::driver::network::NetItem::Bridge(crate::driver::network::BridgeConfig {
                name: "br9".into(),
                interfaces: Vec::new(),
                mtu: 1500,
            });
            crate::driver::network::apply_all(
                &Netlink::with_ports(Vec::<String>::new()),
                &[NetChange::Put(bridge)],
            )
            .unwrap();
            r.conn.attach_nic(vm(5), &nic).unwrap();
            assert!(
                log().lines().any(|l| l == "network-attach 5 bridge=br9 mac=00:16:3e:0a:0b:0c"),
                "{}",
                log()
            );
            let bad = NicSpec { mac: String::new(), bridge: Some("br9,script=/tmp/x".into()) };
            assert_eq!(r.conn.attach_nic(vm(5), &bad).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
            let bad = NicSpec { mac: "00:16:3e:0a:0b".into(), bridge: Some("br9".into()) };
            assert_eq!(r.conn.attach_nic(vm(5), &bad).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
            assert_eq!(r.conn.attach_nic(vm(9), &nic).unwrap_err().kind(), crate::ErrorKind::NotFound);
            r.conn.detach_nic(vm(5), "00:16:3e:0a:0b:0c").unwrap();
            assert!(log().lines().any(|l| l == "network-detach 5 00:16:3e:0a:0b:0c"), "{}", log());
            assert_eq!(
                r.conn.detach_nic(vm(5), "1 2").unwrap_err().kind(),
                crate::ErrorKind::InvalidArgument
            );
            assert_eq!(log().lines().filter(|l| l.starts_with("network-")).count(), 2, "{}", log());

            assert_eq!(r.conn.domain_nics(vm(5)).unwrap(), Vec::new());
            let b = "/local/domain/0/backend/vif/5";
            for (dev, mac, bridge, state) in
                [(10, "00:16:3e:00:00:0a", "br9", "2"), (0, "00:16:3e:00:00:01", "xenbr0", "4")]
            {
                r.fake.external_write(&format!("{b}/{dev}/mac"), mac.as_bytes());
                r.fake.external_write(&format!("{b}/{dev}/bridge"), bridge.as_bytes());
                r.fake.external_write(&format!("{b}/{dev}/state"), state.as_bytes());
            }
            assert_eq!(
                r.conn.domain_nics(vm(5)).unwrap(),
                vec![
                    ("00:16:3e:00:00:01".to_string(), "xenbr0".to_string(), true),
                    ("00:16:3e:00:00:0a".to_string(), "br9".to_string(), false),
                ]
            );
        })
    }

    #[test]
    fn network_configuration_is_served_through_netlink() {
        use crate::driver::network::{AddressConfig, BridgeConfig, NetItem};
        crate::xen::network::tests::in_netns(|| {
            let r = rig(&[0]);
            let net = r.conn.network().unwrap();
            assert_eq!(net.network_config().unwrap(), NetworkConfig::default());
            let bridge = BridgeConfig { name: "xenbr0".into(), interfaces: Vec::new(), mtu: 1500 };
            let address = AddressConfig {
                interface: "xenbr0".into(),
                address: "192.0.2.1".parse().unwrap(),
                prefix: 24,
            };
            let changes = [
                NetChange::Put(NetItem::Bridge(bridge.clone())),
                NetChange::Put(NetItem::Address(address.clone())),
            ];
            assert_eq!(net.apply(&changes, &ApplyOptions::default()).unwrap(), Applied::Done);
            let want =
                NetworkConfig { bridges: vec![bridge], addresses: vec![address], ..Default::default() };
            assert_eq!(net.network_config().unwrap(), want);
            // Cutting the management link is refused unless forced.
            let opts = ApplyOptions { management: Some("192.0.2.1".parse().unwrap()), ..Default::default() };
            let e = net
                .apply(&[NetChange::Remove(crate::driver::NetKey::Bridge("xenbr0".into()))], &opts)
                .unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Conflict, "{e}");
            assert_eq!(net.network_config().unwrap(), want);
            assert!(net.txn_state(1).is_err());
            // Forced, it is applied under a rollback timer and undone unless confirmed.
            let forced = ApplyOptions { force: true, confirm_within_ms: 2_000, ..opts };
            let Applied::Tentative { txn, .. } = net
                .apply(&[NetChange::Remove(crate::driver::NetKey::Bridge("xenbr0".into()))], &forced)
                .unwrap()
            else {
                panic!("a forced change of the management link is tentative")
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut removed = false;
            loop {
                match net.txn_state(txn).unwrap() {
                    TxnState::RolledBack { .. } => break,
                    TxnState::Pending => removed |= net.network_config().unwrap() == NetworkConfig::default(),
                    _ => {}
                }
                assert!(Instant::now() < deadline, "not rolled back");
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(removed, "the forced change took effect before it was undone");
            assert_eq!(net.network_config().unwrap(), want);
        })
    }

    #[test]
    fn changes_are_broadcast() {
        let r = rig(&[0]);
        let mut rx = r.conn.watch().unwrap();
        r.hv.set_flags(5, sys::XEN_DOMINF_RUNNING);
        r.fake.fire_special("@introduceDomain");
        let got = r.conn.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx.recv()).await });
        assert_eq!(got.unwrap().unwrap(), DomainChange::Appeared { uuid: Some(vm(5)), domid: 5 });
        r.hv.remove(5);
        r.fake.fire_special("@releaseDomain");
        let got = r.conn.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx.recv()).await });
        assert_eq!(got.unwrap().unwrap(), DomainChange::Disappeared { uuid: Some(vm(5)), domid: 5 });
    }

    #[test]
    fn storage_files() {
        let r = rig(&[0]);
        let p = r.dir.join("disk.img");
        let ps = p.to_str().unwrap();
        let fs = r.conn.file_storage().unwrap();
        fs.create_file(ps, 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
        assert!(fs.create_file(ps, 1).is_err(), "never overwrites");
        let q = r.dir.join("copy.img");
        fs.copy_file(ps, q.to_str().unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&q).unwrap().len(), 1 << 20);
        fs.resize_file(ps, 2 << 20).unwrap();
        assert_eq!(fs.file_size(ps).unwrap(), Some(2 << 20));
        let u = fs.usage(ps).unwrap();
        assert!(u.total_bytes > 0 && u.used_bytes <= u.total_bytes);
        fs.delete_file(ps).unwrap();
        fs.delete_file(ps).unwrap();
        assert!(!p.exists());
        assert_eq!(fs.file_size(ps).unwrap(), None);
    }
}
