//! Servers: Xen hosts running the ovm agent.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::{validate_name, PoolId, PortId, ServerId};
use crate::{Error, Result};

/// Running state of a server as the manager last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum ServerPowerState {
    /// Reachable and running.
    Running,
    /// Powered off (by the manager, e.g. DPM).
    Stopped,
    /// Not reachable by the manager.
    Unreachable,
}

impl fmt::Display for ServerPowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a server is used for in its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum ServerRole {
    /// Can run virtual machines.
    VirtualMachine,
    /// Runs storage plugin operations (utility work: cloning, imports).
    Utility,
}

/// Who owns a server's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum Ownership {
    /// Discovered but not owned; it cannot be commanded.
    Unowned,
    /// Owned by this manager.
    Owned,
    /// Owned by another manager (its identifier).
    OwnedByOther(String),
}

/// A physical Ethernet port of a server, as discovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct EthernetPort {
    /// Interface name in dom0, e.g. `eth0`.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// Link speed in Mbit/s, when known.
    pub speed_mbps: Option<u32>,
    /// Whether the link is up (carrier), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<bool>,
    /// The kernel driver, e.g. `e1000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The MTU now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The largest MTU the NIC takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mtu: Option<u32>,
}

impl EthernetPort {
    /// A port with a name and MAC, nothing else known.
    pub fn new(name: &str, mac: &str) -> Self {
        EthernetPort {
            name: name.to_owned(),
            mac: mac.to_owned(),
            speed_mbps: None,
            carrier: None,
            driver: None,
            mtu: None,
            max_mtu: None,
        }
    }
}

/// Hardware facts reported by a server's hypervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct HostHardware {
    /// Physical CPU threads.
    pub cpus: u32,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Xen version string, e.g. `4.17.7`.
    pub xen_version: String,
    /// Physical ports.
    pub ports: Vec<EthernetPort>,
    /// Whether hardware virtualization (HVM) is available.
    pub hvm_capable: bool,
    /// What the hypervisor can run and track (Xen's physinfo capabilities); `None` when the server
    /// did not say (a record stored by an earlier ovm, an agent of an earlier ovm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virt: Option<VirtCapabilities>,
    /// The CPU's vendor and feature words; `None` when the server did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<HostCpu>,
    /// The toolstack that builds and migrates domains, e.g. `xl`; empty when the server did not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub toolstack: String,
}

impl HostHardware {
    /// The hypervisor's `major.minor` release, parsed from [`HostHardware::xen_version`]
    /// (`"4.17.7"`, `"4.17.0-sim"`); `None` if it does not start with two numbers.
    pub fn xen_release(&self) -> Option<(u32, u32)> {
        let mut parts = self.xen_version.split('.');
        let major = parts.next()?.trim().parse().ok()?;
        let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
        Some((major, minor.parse().ok()?))
    }
}

/// What a hypervisor can do for guests: Xen's `XEN_SYSCTL_physinfo` capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct VirtCapabilities {
    /// Runs PV guests.
    pub pv: bool,
    /// Runs HVM (and PVH) guests.
    pub hvm: bool,
    /// Hardware-assisted paging (EPT/NPT) is available.
    pub hap: bool,
    /// The hypervisor is built with shadow paging.
    pub shadow: bool,
}

impl VirtCapabilities {
    /// Every capability.
    pub const ALL: VirtCapabilities = VirtCapabilities { pv: true, hvm: true, hap: true, shadow: true };

    /// Why a guest of type `t` cannot run here, or `None` if it can: a PV guest needs PV support;
    /// an HVM, PV-on-HVM or PVH guest needs HVM support and a paging mode for it (HAP or shadow).
    pub fn cannot_run(self, t: super::DomainType) -> Option<&'static str> {
        use super::DomainType::*;
        match t {
            Pv if !self.pv => Some("the hypervisor runs no PV guests"),
            Hvm | PvHvm | Pvh if !self.hvm => Some("the hypervisor runs no HVM or PVH guests"),
            Hvm | PvHvm | Pvh if !self.hap && !self.shadow => {
                Some("the hypervisor has neither hardware-assisted nor shadow paging for HVM or PVH guests")
            }
            _ => None,
        }
    }

    /// Why a running guest of type `t` cannot be live-migrated away from here, or `None` if it can.
    /// Live migration tracks the pages the guest dirties while it is copied (log-dirty mode): for a
    /// PV guest Xen does that with shadow paging only, so a hypervisor built without shadow paging
    /// cannot live-migrate PV guests; an HVM or PVH guest needs HAP or shadow paging.
    pub fn cannot_live_migrate(self, t: super::DomainType) -> Option<&'static str> {
        use super::DomainType::*;
        match t {
            Pv if !self.shadow => Some(
                "the hypervisor is built without shadow paging, which log-dirty mode needs for a PV guest",
            ),
            Hvm | PvHvm | Pvh if !self.hap && !self.shadow => {
                Some("the hypervisor has neither HAP nor shadow paging for log-dirty mode")
            }
            _ => None,
        }
    }
}

/// A server's CPU as the hypervisor reports it: the vendor (CPUID's vendor string, e.g.
/// `GenuineIntel`) and feature words (Xen's featureset: word 0 is CPUID leaf 1 EDX, word 1 leaf 1
/// ECX, word 2 leaf 0x80000001 EDX, ...; Xen's `physinfo.hw_cap`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct HostCpu {
    /// Vendor string; empty if unknown.
    #[serde(default)]
    pub vendor: String,
    /// Feature words.
    pub features: Vec<u32>,
}

impl HostCpu {
    /// The features of `self` that `other` lacks, in Xen's `word*32+bit` numbering.
    pub fn missing_from(&self, other: &HostCpu) -> Vec<u32> {
        let mut out = Vec::new();
        for (w, bits) in self.features.iter().enumerate() {
            let lacking = bits & !other.features.get(w).copied().unwrap_or(0);
            for b in 0..32 {
                if lacking & (1 << b) != 0 {
                    out.push(w as u32 * 32 + b);
                }
            }
        }
        out
    }
}

/// A Xen host managed through its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct Server {
    /// Id.
    pub id: ServerId,
    /// Name (host name by default).
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Address used to reach the agent (IP, host name or a driver URI such as `sim://name`).
    pub address: String,
    /// Hardware as last refreshed.
    pub hardware: HostHardware,
    /// Roles in the pool.
    pub roles: Vec<ServerRole>,
    /// In maintenance mode: no VM may run or start on it.
    pub maintenance_mode: bool,
    /// Ownership of the agent.
    pub ownership: Ownership,
    /// Power state.
    pub power_state: ServerPowerState,
    /// The pool it belongs to, if any (at most one).
    pub pool: Option<PoolId>,
    /// Model ports created for its Ethernet ports.
    #[serde(default)]
    pub ports: Vec<PortId>,
    /// Wake-on-LAN MAC used by DPM to power it on.
    #[serde(default)]
    pub wol_mac: Option<String>,
    /// Its management controller (IPMI, Redfish...), which powers it on and off out of band.
    #[serde(default)]
    pub out_of_band: Option<OutOfBand>,
    /// Memory reserved for dom0, MiB (not available to VMs).
    pub dom0_memory_mib: u64,
}

impl Server {
    /// Memory available to guests, MiB.
    pub fn guest_memory_mib(&self) -> u64 {
        self.hardware.memory_mib.saturating_sub(self.dom0_memory_mib)
    }

    pub(crate) fn check(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.address.trim().is_empty() {
            return Err(Error::invalid("address", "must not be empty"));
        }
        if self.hardware.cpus == 0 {
            return Err(Error::invalid("hardware.cpus", "a server has at least one CPU"));
        }
        if self.dom0_memory_mib > self.hardware.memory_mib {
            return Err(Error::invalid("dom0_memory_mib", "exceeds the server's memory"));
        }
        if let Some(mac) = &self.wol_mac {
            super::parse_mac(mac).map_err(|_| Error::invalid("wol_mac", format!("{mac:?} is not a MAC")))?;
        }
        if let Some(o) = &self.out_of_band {
            o.check()?;
        }
        Ok(())
    }
}

/// How a server is powered on and off out of band: the power controller registered with the
/// manager under `controller` (see [`crate::driver::PowerController`]) and the address of the
/// server's management controller (its BMC: IPMI, Redfish) or PDU outlet. No credentials: the
/// controller keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct OutOfBand {
    /// The registered controller's name: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a
    /// letter or digit.
    pub controller: String,
    /// The management controller's host name or IP address (an IPv6 address may be bracketed),
    /// optionally with `:port`: 1 to 255 of letters, digits and `.:-_[]%`, not starting with `-`.
    pub address: String,
}

impl OutOfBand {
    /// Check both fields (see their documentation).
    pub fn check(&self) -> Result<()> {
        let c = &self.controller;
        let name_ok = (1..=64).contains(&c.len())
            && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && c.as_bytes()[0].is_ascii_alphanumeric();
        if !name_ok {
            return Err(Error::invalid(
                "out_of_band.controller",
                format!("{c:?} is not a controller name (a-z, 0-9, '-', '_', at most 64)"),
            ));
        }
        let a = &self.address;
        let address_ok = (1..=255).contains(&a.len())
            && !a.starts_with('-')
            && a.bytes().all(|b| b.is_ascii_alphanumeric() || b".:-_[]%".contains(&b));
        if !address_ok {
            return Err(Error::invalid(
                "out_of_band.address",
                format!("{a:?} is not a host name or IP address of a management controller"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DomainType;

    #[test]
    fn hardware_stored_by_an_earlier_ovm_decodes_without_the_new_facts() {
        let old = r#"{"cpus":8,"memory_mib":32768,"xen_version":"4.17.7","ports":[],"hvm_capable":true}"#;
        let hw: HostHardware = serde_json::from_str(old).unwrap();
        assert_eq!((hw.virt, hw.cpu.as_ref(), hw.toolstack.as_str()), (None, None, ""));
        assert_eq!(serde_json::to_string(&hw).unwrap(), old, "unknown facts are not written");
        assert_eq!(hw.xen_release(), Some((4, 17)));
    }

    #[test]
    fn xen_release_is_major_and_minor() {
        let with = |v: &str| HostHardware {
            cpus: 1,
            memory_mib: 1024,
            xen_version: v.into(),
            ports: vec![],
            hvm_capable: false,
            virt: None,
            cpu: None,
            toolstack: String::new(),
        };
        assert_eq!(with("4.17.0-sim").xen_release(), Some((4, 17)));
        assert_eq!(with("4.18-rc").xen_release(), Some((4, 18)));
        assert_eq!(with("4").xen_release(), None);
        assert_eq!(with("unstable").xen_release(), None);
        assert_eq!(with("").xen_release(), None);
    }

    #[test]
    fn missing_cpu_features_are_named_word_by_bit() {
        let a = HostCpu { vendor: String::new(), features: vec![0b101, 0, 1 << 31] };
        let b = HostCpu { vendor: String::new(), features: vec![0b001] };
        assert_eq!(a.missing_from(&b), vec![2, 2 * 32 + 31]);
        assert_eq!(b.missing_from(&a), Vec::<u32>::new());
        assert_eq!(a.missing_from(&a), Vec::<u32>::new());
    }

    #[test]
    fn what_a_hypervisor_can_run_and_live_migrate() {
        let all = VirtCapabilities::ALL;
        for t in [DomainType::Pv, DomainType::Hvm, DomainType::PvHvm, DomainType::Pvh] {
            assert_eq!((all.cannot_run(t), all.cannot_live_migrate(t)), (None, None), "{t:?}");
        }
        let no_shadow = VirtCapabilities { shadow: false, ..all };
        assert!(no_shadow.cannot_live_migrate(DomainType::Pv).is_some());
        assert_eq!(no_shadow.cannot_live_migrate(DomainType::Hvm), None, "HAP tracks dirty pages");
        assert_eq!(no_shadow.cannot_run(DomainType::Pv), None, "PV guests run without shadow paging");
        let shadow_only = VirtCapabilities { hap: false, ..all };
        assert_eq!(shadow_only.cannot_run(DomainType::Pvh), None);
        assert_eq!(shadow_only.cannot_live_migrate(DomainType::Hvm), None);
        let pv_only = VirtCapabilities { pv: true, hvm: false, hap: false, shadow: false };
        assert!(pv_only.cannot_run(DomainType::PvHvm).is_some());
        assert!(pv_only.cannot_live_migrate(DomainType::Pv).is_some());
        let paging_less = VirtCapabilities { hap: false, shadow: false, ..all };
        assert!(paging_less.cannot_run(DomainType::Hvm).is_some());
    }
}
