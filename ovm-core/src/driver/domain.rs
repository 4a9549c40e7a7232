//! Domain operations: building, running and watching the domains resident on a server.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{BootDevice, DomainType, RestartActions, VmId};
use crate::Result;

/// Everything a hypervisor needs to build a domain; produced by the manager from a [`crate::model::Vm`].
///
/// The spec says what the guest gets, not how the hypervisor names it: disks are numbered slots and
/// NICs may leave the bridge to the server's default. The driver names devices (Xen: `xvda`, `hda`)
/// and picks the default bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// Stable id, used as the Xen domain handle.
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
    /// Disks, in slot order.
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
    /// Boot devices in order (HVM guests; PV and PVH guests boot their kernel directly).
    #[serde(default)]
    pub boot_order: Vec<BootDevice>,
    /// High availability: `Some(start priority)` for a VM its pool restarts on another server
    /// when this one dies. A server in a clustered pool keeps the spec of such a domain on the
    /// pool file system, so that the pool's master restarts it even while the manager is away.
    #[serde(default)]
    pub ha_priority: Option<u8>,
    /// A PV guest's virtual framebuffer, served as its graphical console (HVM guests always
    /// have a screen).
    #[serde(default)]
    pub framebuffer: bool,
    /// A PV or PVH guest's network boot: the server reads the installer's kernel and initial
    /// ramdisk from this install tree, and boots them with its command line.
    #[serde(default)]
    pub network_boot: Option<crate::model::NetworkBoot>,
}

/// How a [`DiskSpec`] names a LUN (a physical disk): by its SCSI identifier, which each server
/// resolves to its own device for that LUN when it builds the domain.
pub const LUN_PATH_PREFIX: &str = "lun:";

/// The disk path of the LUN whose SCSI identifier (WWID) is `id`.
pub fn lun_path(id: &str) -> String {
    format!("{LUN_PATH_PREFIX}{id}")
}

/// The SCSI identifier a disk path names, if it names a LUN.
pub fn lun_of(path: &str) -> Option<&str> {
    path.strip_prefix(LUN_PATH_PREFIX).filter(|id| {
        !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    })
}

/// A disk of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Disk slot, from 0 (the boot disk); the driver derives the guest device name from it.
    pub slot: u8,
    /// Backing path on the server (empty for an empty CD-ROM drive), or a LUN ([`lun_path`]).
    pub path: String,
    /// Read-only.
    pub read_only: bool,
    /// Whether it is a CD-ROM drive.
    pub cdrom: bool,
}

/// A NIC of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// MAC.
    pub mac: String,
    /// Bridge on the server; `None` for the server's default bridge (the driver knows which it is).
    pub bridge: Option<String>,
}

/// Run state of a resident domain, as Xen reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DomainRunState {
    /// Running on a CPU.
    Running,
    /// Blocked (idle, waiting for events): still "running" for users.
    Blocked,
    /// Paused.
    Paused,
    /// Shut down, with the reason, not yet destroyed.
    Shutdown(ShutdownReason),
    /// Being destroyed.
    Dying,
}

/// Why a domain shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShutdownReason {
    /// Powered off.
    Poweroff,
    /// Rebooting.
    Reboot,
    /// Suspended.
    Suspend,
    /// Crashed.
    Crash,
    /// Watchdog fired.
    Watchdog,
    /// Soft reset.
    SoftReset,
}

/// A resident domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainStatus {
    /// Stable id (`None` for dom0 or domains ovm did not create).
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

/// A change of a domain seen by the hypervisor.
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
    /// A domain disappeared (destroyed, or migrated away).
    Disappeared {
        /// Its id.
        uuid: Option<VmId>,
        /// Its domid.
        domid: u32,
    },
    /// The host itself went away (host failed).
    HostLost,
    /// The connection to the server's agent was lost; the server and its domains may be fine. The
    /// manager marks the server unreachable and reconnects.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Changes were dropped: list the domains again.
    Resync,
}

/// Domain operations every server connection offers. Calls block; the manager runs them on job threads.
pub trait DomainOps: Send + Sync {
    /// Resident domains.
    fn list_domains(&self) -> Result<Vec<DomainStatus>>;
    /// Build and start a domain; returns its domid.
    fn create_domain(&self, spec: &DomainSpec) -> Result<u32>;
    /// Ask the guest to power off and wait up to `timeout` for it to go; on timeout returns
    /// [`crate::Error::Timeout`] and leaves the domain running (the caller decides on destroy).
    fn shutdown(&self, vm: VmId, timeout: Duration) -> Result<()>;
    /// Ask the guest to reboot.
    fn reboot(&self, vm: VmId, timeout: Duration) -> Result<()>;
    /// Destroy the domain at once.
    fn destroy(&self, vm: VmId) -> Result<()>;
    /// Pause.
    fn pause(&self, vm: VmId) -> Result<()>;
    /// Unpause.
    fn unpause(&self, vm: VmId) -> Result<()>;
    /// Save the domain's memory to `path` (on the server) and destroy it.
    fn suspend(&self, vm: VmId, path: &str) -> Result<()>;
    /// Restore a domain saved at `path`; returns its domid.
    fn restore(&self, spec: &DomainSpec, path: &str) -> Result<u32>;
    /// Set the memory target, MiB.
    fn set_memory(&self, vm: VmId, memory_mib: u64) -> Result<()>;
    /// Set the number of online vCPUs.
    fn set_vcpus(&self, vm: VmId, vcpus: u32) -> Result<()>;
    /// Console output collected so far.
    fn console(&self, vm: VmId) -> Result<String>;
    /// Subscribe to domain changes.
    fn watch(&self) -> Result<tokio::sync::broadcast::Receiver<DomainChange>>;
    /// Plug a NIC into a running domain (its bridge must exist).
    fn attach_nic(&self, vm: VmId, nic: &NicSpec) -> Result<()> {
        let _ = (vm, nic);
        Err(crate::Error::Unsupported { what: "hot-plugging NICs with this driver".into() })
    }
    /// Unplug the NIC with `mac` from a running domain.
    fn detach_nic(&self, vm: VmId, mac: &str) -> Result<()> {
        let _ = (vm, mac);
        Err(crate::Error::Unsupported { what: "hot-unplugging NICs with this driver".into() })
    }
    /// The NICs of a running domain as the server has them: (MAC, bridge, connected: whether the
    /// guest's driver took the NIC up).
    fn domain_nics(&self, vm: VmId) -> Result<Vec<(String, String, bool)>> {
        let _ = vm;
        Err(crate::Error::Unsupported { what: "listing a domain's NICs with this driver".into() })
    }
    /// Leave a message for a running guest: `key` = `value` where the guest reads it and only the
    /// server writes ([`check_guest_message`] first). A message with the same key is replaced.
    fn send_guest_message(&self, vm: VmId, key: &str, value: &str) -> Result<()> {
        let _ = (vm, key, value);
        Err(crate::Error::Unsupported { what: "guest messages with this driver".into() })
    }
    /// The messages left for a running guest (written by the server only).
    fn guest_messages(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        let _ = vm;
        Err(crate::Error::Unsupported { what: "guest messages with this driver".into() })
    }
    /// Take a message back (absent: nothing to do).
    fn remove_guest_message(&self, vm: VmId, key: &str) -> Result<()> {
        let _ = (vm, key);
        Err(crate::Error::Unsupported { what: "guest messages with this driver".into() })
    }
    /// A byte stream to a running guest's graphical console: the RFB (VNC) protocol of its
    /// screen, starting with the server's version ("RFB 003.008\n"), security type None. The
    /// console's server listens on the server only (Xen: the device model's VNC server on dom0's
    /// loopback); a manager reaches it through the stream, never over the network directly.
    fn open_console(&self, vm: VmId) -> Result<std::os::unix::net::UnixStream> {
        let _ = vm;
        Err(crate::Error::Unsupported { what: "graphical consoles with this driver".into() })
    }
    /// The values a running guest reports (at most [`MAX_GUEST_DATA`] of them; longer values and
    /// keys that are not [`check_guest_key`]'s are left out: the guest writes them).
    fn guest_data(&self, vm: VmId) -> Result<std::collections::BTreeMap<String, String>> {
        let _ = vm;
        Err(crate::Error::Unsupported { what: "guest data with this driver".into() })
    }
}

/// The longest key of a guest message or a guest's value.
pub const MAX_GUEST_KEY: usize = 64;
/// The longest value of a guest message or a guest's value, bytes.
pub const MAX_GUEST_VALUE: usize = 2048;
/// The most values read from a guest.
pub const MAX_GUEST_DATA: usize = 64;

/// Whether `key` may name a guest message or value: 1 to [`MAX_GUEST_KEY`] ASCII letters, digits,
/// `-`, `_` and `.`, not starting with `.` (it is one path element in xenstore).
pub fn check_guest_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_GUEST_KEY
        && !key.starts_with('.')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(
            "key",
            format!("{key:?}: 1 to {MAX_GUEST_KEY} letters, digits, '-', '_' or '.', not starting with '.'"),
        ))
    }
}

/// Whether `key` = `value` may be sent to a guest: a good key, and a value of at most
/// [`MAX_GUEST_VALUE`] bytes without NUL or other control characters than tab and newline.
pub fn check_guest_message(key: &str, value: &str) -> Result<()> {
    check_guest_key(key)?;
    if value.len() > MAX_GUEST_VALUE {
        return Err(crate::Error::invalid(
            "value",
            format!("{} bytes; at most {MAX_GUEST_VALUE}", value.len()),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t' && c != '\n') {
        return Err(crate::Error::invalid("value", "control characters other than tab and newline"));
    }
    Ok(())
}

/// Carry bytes both ways between `a` and `b` on two threads until either side ends (then both are
/// shut down). For drivers whose console server is a TCP socket on the host.
pub fn splice_console(a: std::net::TcpStream, b: std::os::unix::net::UnixStream) -> std::io::Result<()> {
    use std::net::Shutdown;
    let (mut a_rd, mut b_wr) = (a.try_clone()?, b.try_clone()?);
    let (mut b_rd, mut a_wr) = (b, a);
    std::thread::Builder::new().name("console-in".into()).spawn(move || {
        let _ = std::io::copy(&mut a_rd, &mut b_wr);
        let _ = b_wr.shutdown(Shutdown::Both);
        let _ = a_rd.shutdown(Shutdown::Both);
    })?;
    std::thread::Builder::new().name("console-out".into()).spawn(move || {
        let _ = std::io::copy(&mut b_rd, &mut a_wr);
        let _ = a_wr.shutdown(Shutdown::Both);
        let _ = b_rd.shutdown(Shutdown::Both);
    })?;
    Ok(())
}
