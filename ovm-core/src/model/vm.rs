//! Virtual machines (Xen domains) and anti-affinity groups.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::{
    validate_name, AntiAffinityGroupId, NetworkId, PhysicalDiskId, PoolId, RepositoryId, ServerId,
    VirtualCdromId, VirtualDiskId, VmId,
};
use crate::{Error, Result};

/// Xen domain types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum DomainType {
    /// Hardware virtualized, emulated devices.
    Hvm,
    /// Paravirtualized.
    Pv,
    /// HVM with paravirtualized drivers.
    PvHvm,
    /// PVH: hardware virtualization without emulated devices.
    Pvh,
}

/// Power state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum PowerState {
    /// Not running.
    Stopped,
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// Paused in memory.
    Paused,
    /// Suspended to a file in its repository.
    Suspended,
    /// Shutting down.
    Stopping,
    /// Being migrated.
    Migrating,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How a running VM moves to another server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum MigrationMode {
    /// Live migration: the domain keeps running while its memory is copied; it stops only for the
    /// last round (Xen's `xl migrate`).
    #[default]
    Live,
    /// A cold move, for where live migration is impossible: the domain is paused and saved on the
    /// source straight into the stream, restored on the destination and run there; only then is the
    /// paused source domain destroyed (Xen's `xl save -p` and `xl restore -p`). The guest stops for
    /// as long as the save and restore take.
    Cold,
}

/// Verbs that change a VM's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum PowerOperation {
    /// Start (boot).
    Start,
    /// Graceful shutdown.
    Stop,
    /// Graceful reboot.
    Restart,
    /// Hard power off.
    Kill,
    /// Pause in memory.
    Pause,
    /// Save to disk.
    Suspend,
    /// Resume from pause or suspend.
    Resume,
    /// Live migrate.
    Migrate,
}

impl PowerState {
    /// The states from which `op` is allowed.
    pub fn allowed_from(op: PowerOperation) -> &'static [PowerState] {
        use PowerState::*;
        match op {
            PowerOperation::Start => &[Stopped],
            PowerOperation::Stop | PowerOperation::Restart => &[Running],
            PowerOperation::Kill => &[Running, Paused, Starting, Stopping, Suspended],
            PowerOperation::Pause | PowerOperation::Suspend => &[Running],
            PowerOperation::Resume => &[Paused, Suspended],
            PowerOperation::Migrate => &[Running, Stopped],
        }
    }

    /// Whether `op` may be applied in this state.
    pub fn allows(self, op: PowerOperation) -> bool {
        Self::allowed_from(op).contains(&self)
    }

    /// Whether the VM consumes server resources in this state.
    pub fn is_resident(self) -> bool {
        !matches!(self, PowerState::Stopped | PowerState::Suspended)
    }
}

/// What Xen does when the domain powers off, reboots or crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum RestartAction {
    /// Destroy the domain.
    Destroy,
    /// Restart it.
    Restart,
    /// Keep it for inspection.
    Preserve,
}

/// Restart actions of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct RestartActions {
    /// On guest power-off.
    pub on_poweroff: RestartAction,
    /// On guest reboot.
    pub on_reboot: RestartAction,
    /// On crash.
    pub on_crash: RestartAction,
}

impl Default for RestartActions {
    fn default() -> Self {
        RestartActions {
            on_poweroff: RestartAction::Destroy,
            on_reboot: RestartAction::Restart,
            on_crash: RestartAction::Restart,
        }
    }
}

/// Boot devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum BootDevice {
    /// First disk.
    Disk,
    /// CD-ROM (ISO).
    Cdrom,
    /// Network (PXE).
    Network,
}

/// What is mapped at a disk slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum DiskTarget {
    /// A virtual disk.
    VirtualDisk(VirtualDiskId),
    /// An ISO as CD-ROM.
    Cdrom(VirtualCdromId),
    /// An empty CD-ROM drive.
    EmptyCdrom,
    /// A physical disk (a LUN of a storage array), attached directly.
    PhysicalDisk(PhysicalDiskId),
}

/// A disk mapping at a slot (0 = xvda / hda).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct DiskMapping {
    /// Slot number.
    pub slot: u8,
    /// What is mapped.
    pub target: DiskTarget,
}

/// A virtual NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Vnic {
    /// MAC address (lower-case, colon separated).
    pub mac: String,
    /// Network it is attached to, if any.
    pub network: Option<NetworkId>,
}

/// PV direct boot: kernel, initrd and command line (paths in a repository or on the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct PvKernel {
    /// Kernel image path.
    pub kernel: String,
    /// Initrd path.
    pub initrd: Option<String>,
    /// Kernel command line.
    pub cmdline: String,
}

/// Network boot of a PV or PVH guest (Oracle VM's "network boot path"): the installer's kernel and
/// initial ramdisk are read from an install tree served over HTTP (an ISO's content, as its
/// distribution lays it out), and the installer reaches the rest of the tree over the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct NetworkBoot {
    /// The install tree: an `http://` or `https://` URL.
    pub url: String,
    /// The installer's kernel command line (where it finds the tree, e.g. `inst.repo=URL`).
    #[serde(default)]
    pub cmdline: String,
}

/// Longest [`NetworkBoot`] URL or command line, bytes.
pub const MAX_NETWORK_BOOT_TEXT: usize = 1024;

impl NetworkBoot {
    /// Check the URL's form (an HTTP(S) URL of printable characters, no spaces) and the command
    /// line's (printable, bounded).
    pub fn validate(&self) -> Result<()> {
        let printable = |s: &str| s.chars().all(|c| !c.is_control());
        let scheme = self.url.strip_prefix("http://").or_else(|| self.url.strip_prefix("https://"));
        if !scheme.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
            || self.url.len() > MAX_NETWORK_BOOT_TEXT
            || !printable(&self.url)
            || self.url.contains(char::is_whitespace)
        {
            return Err(Error::invalid(
                "network_boot.url",
                format!("{:?} is not an http:// or https:// URL of an install tree", self.url),
            ));
        }
        if self.cmdline.len() > MAX_NETWORK_BOOT_TEXT || !printable(&self.cmdline) {
            return Err(Error::invalid("network_boot.cmdline", "must be printable and at most 1024 bytes"));
        }
        Ok(())
    }
}

/// The configuration of a VM (also the body of a template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct VmConfig {
    /// Domain type.
    pub domain_type: DomainType,
    /// vCPUs online at start.
    pub vcpus: u32,
    /// Maximum vCPUs.
    pub max_vcpus: u32,
    /// Memory at start, MiB.
    pub memory_mib: u64,
    /// Maximum memory, MiB.
    pub max_memory_mib: u64,
    /// Disk mappings.
    pub disks: Vec<DiskMapping>,
    /// Virtual NICs.
    pub vnics: Vec<Vnic>,
    /// Boot order.
    pub boot_order: Vec<BootDevice>,
    /// Restart the VM elsewhere if its server fails.
    pub high_availability: bool,
    /// Operating system type (free text, e.g. `Oracle Linux 6`).
    pub os_type: String,
    /// Restart actions.
    pub restart_actions: RestartActions,
    /// Direct kernel boot for PV/PVH guests.
    pub pv_kernel: Option<PvKernel>,
    /// Start priority (1..=100, higher first).
    pub start_priority: u8,
    /// A PV guest's virtual framebuffer: its screen, served as its graphical console as an HVM
    /// guest's is (HVM and PVHVM guests always have a screen; PVH guests have no device model to
    /// serve one).
    #[serde(default)]
    pub framebuffer: bool,
    /// A PV or PVH guest's network boot: when set, the guest boots the installer of this install
    /// tree (before its `pv_kernel` or the kernel on its disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_boot: Option<NetworkBoot>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            domain_type: DomainType::Pv,
            vcpus: 1,
            max_vcpus: 1,
            memory_mib: 512,
            max_memory_mib: 512,
            disks: Vec::new(),
            vnics: Vec::new(),
            boot_order: vec![BootDevice::Disk],
            high_availability: false,
            os_type: String::new(),
            restart_actions: RestartActions::default(),
            pv_kernel: None,
            start_priority: 50,
            framebuffer: false,
            network_boot: None,
        }
    }
}

/// Highest number of vCPUs ovm accepts for one domain.
pub const MAX_VCPUS: u32 = 512;

impl VmConfig {
    /// Check the configuration's own invariants.
    pub fn check(&self) -> Result<()> {
        if self.vcpus == 0 {
            return Err(Error::invalid("vcpus", "a VM needs at least one vCPU"));
        }
        if self.vcpus > self.max_vcpus {
            return Err(Error::invalid(
                "vcpus",
                format!("{} exceeds max_vcpus {}", self.vcpus, self.max_vcpus),
            ));
        }
        if self.max_vcpus > MAX_VCPUS {
            return Err(Error::invalid("max_vcpus", format!("at most {MAX_VCPUS}")));
        }
        if self.memory_mib < 32 {
            return Err(Error::invalid("memory_mib", "a VM needs at least 32 MiB"));
        }
        if self.memory_mib > self.max_memory_mib {
            return Err(Error::invalid(
                "memory_mib",
                format!("{} MiB exceeds max_memory_mib {} MiB", self.memory_mib, self.max_memory_mib),
            ));
        }
        let mut slots = std::collections::HashSet::new();
        for d in &self.disks {
            if !slots.insert(d.slot) {
                return Err(Error::invalid("disks", format!("slot {} is mapped twice", d.slot)));
            }
        }
        let mut macs = std::collections::HashSet::new();
        for v in &self.vnics {
            let m = parse_mac(&v.mac)
                .map_err(|_| Error::invalid("vnics.mac", format!("{:?} is not a MAC", v.mac)))?;
            if !macs.insert(m) {
                return Err(Error::invalid("vnics", format!("MAC {} is used twice", v.mac)));
            }
        }
        if !(1..=100).contains(&self.start_priority) {
            return Err(Error::invalid("start_priority", "must be 1..=100"));
        }
        if let Some(nb) = &self.network_boot {
            if !matches!(self.domain_type, DomainType::Pv | DomainType::Pvh) {
                return Err(Error::invalid(
                    "network_boot",
                    "HVM guests boot over the network with PXE (the boot order's Network)",
                ));
            }
            nb.validate()?;
        }
        if self.framebuffer && self.domain_type == DomainType::Pvh {
            return Err(Error::invalid(
                "framebuffer",
                "a PVH guest has no device model to serve a framebuffer",
            ));
        }
        if matches!(self.domain_type, DomainType::Pv | DomainType::Pvh)
            && self.pv_kernel.as_ref().is_some_and(|k| k.kernel.trim().is_empty())
        {
            return Err(Error::invalid("pv_kernel.kernel", "must not be empty"));
        }
        Ok(())
    }
}

/// A virtual machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Vm {
    /// Id (also the Xen domain handle).
    pub id: VmId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Configuration.
    pub config: VmConfig,
    /// Repository holding its configuration file.
    pub repository: Option<RepositoryId>,
    /// Pool it belongs to.
    pub pool: Option<PoolId>,
    /// Server it runs on (or is assigned to).
    pub server: Option<ServerId>,
    /// Power state.
    pub power_state: PowerState,
    /// Runtime Xen domain id while resident.
    pub domid: Option<u32>,
    /// Anti-affinity group.
    pub anti_affinity_group: Option<AntiAffinityGroupId>,
}

impl Vm {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        self.config.check()?;
        if self.power_state.is_resident() && self.server.is_none() {
            return Err(Error::invalid("server", "a running VM must be on a server"));
        }
        Ok(())
    }
}

/// VMs of one group are kept on different servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct AntiAffinityGroup {
    /// Id.
    pub id: AntiAffinityGroupId,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Pool it applies in.
    pub pool: PoolId,
    /// Members.
    pub vms: Vec<VmId>,
}

impl AntiAffinityGroup {
    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)
    }
}

/// Parse a MAC address `aa:bb:cc:dd:ee:ff` (or with `-`) into 48 bits.
pub fn parse_mac(s: &str) -> Result<u64> {
    let bad = || Error::invalid("mac", format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut v = 0u64;
    for p in parts {
        if p.len() != 2 {
            return Err(bad());
        }
        v = (v << 8) | u64::from(u8::from_str_radix(p, 16).map_err(|_| bad())?);
    }
    Ok(v)
}

/// Format 48 bits as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(v: u64) -> String {
    let b = v.to_be_bytes();
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[2], b[3], b[4], b[5], b[6], b[7])
}

/// The range VNIC MACs are allocated from (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct MacRange {
    /// First MAC.
    pub first: u64,
    /// Last MAC.
    pub last: u64,
}

impl Default for MacRange {
    /// Xen's OUI `00:16:3e` with the lower half of its space.
    fn default() -> Self {
        MacRange { first: 0x00_16_3e_00_00_00, last: 0x00_16_3e_7f_ff_ff }
    }
}

impl MacRange {
    /// Parse from two MAC strings.
    pub fn new(first: &str, last: &str) -> Result<Self> {
        let f = parse_mac(first).map_err(|_| Error::invalid("mac_range.first", "not a MAC"))?;
        let l = parse_mac(last).map_err(|_| Error::invalid("mac_range.last", "not a MAC"))?;
        if f > l {
            return Err(Error::invalid("mac_range", "first is after last"));
        }
        if (f >> 40) & 1 == 1 {
            return Err(Error::invalid("mac_range", "multicast MACs cannot be used for VNICs"));
        }
        Ok(MacRange { first: f, last: l })
    }
}
