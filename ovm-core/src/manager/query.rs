//! Defaults and list filters every binding shares, so C, Python and Rust callers get the same VM
//! configuration from the same arguments and the same objects from the same filter.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Manager, NetworkSpec};
use crate::model::*;
use crate::{Error, Result};

/// MTU of a network created without one.
pub const DEFAULT_MTU: u16 = 1500;

/// Most VNICs a VM configuration built by [`VmConfig::sized`] may have.
pub const MAX_VNICS: usize = 64;

impl VmConfig {
    /// The configuration of a VM given only its size: `memory_mib` and `vcpus` at start, maxima
    /// equal to them unless given (`max_vcpus` defaults to `vcpus`, `max_memory_mib` to
    /// `memory_mib`), `vnics` NICs with manager-allocated MACs (at most [`MAX_VNICS`]), and every
    /// other field as [`VmConfig::default`].
    pub fn sized(
        memory_mib: u64,
        max_memory_mib: Option<u64>,
        vcpus: u32,
        max_vcpus: Option<u32>,
        vnics: usize,
    ) -> Result<VmConfig> {
        if vnics > MAX_VNICS {
            return Err(Error::invalid("vnics", format!("at most {MAX_VNICS} VNICs")));
        }
        Ok(VmConfig {
            memory_mib,
            max_memory_mib: max_memory_mib.unwrap_or(memory_mib),
            vcpus,
            max_vcpus: max_vcpus.unwrap_or(vcpus),
            vnics: (0..vnics).map(|_| Vnic { mac: String::new(), network: None }).collect(),
            ..VmConfig::default()
        })
    }
}

impl NetworkSpec {
    /// The functions a network carries when none are given: VM traffic.
    pub fn default_functions() -> BTreeSet<NetworkFunction> {
        BTreeSet::from([NetworkFunction::VirtualMachine])
    }

    /// A network on `bridge` carrying `functions` (empty: [`NetworkSpec::default_functions`]), with
    /// `mtu` (`None`: [`DEFAULT_MTU`]) and no members.
    pub fn new(name: &str, bridge: &str, functions: BTreeSet<NetworkFunction>, mtu: Option<u16>) -> Self {
        NetworkSpec {
            name: name.to_owned(),
            functions: if functions.is_empty() { Self::default_functions() } else { functions },
            members: Vec::new(),
            bridge: bridge.to_owned(),
            mtu: mtu.unwrap_or(DEFAULT_MTU),
        }
    }
}

/// Which VMs to list: every condition given must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmFilter {
    /// Only VMs of this pool.
    pub pool: Option<PoolId>,
    /// Only VMs on (or assigned to) this server.
    pub server: Option<ServerId>,
    /// Only VMs in this power state.
    pub power_state: Option<PowerState>,
}

impl VmFilter {
    /// Whether `vm` passes.
    pub fn matches(&self, vm: &Vm) -> bool {
        self.pool.is_none_or(|p| vm.pool == Some(p))
            && self.server.is_none_or(|s| vm.server == Some(s))
            && self.power_state.is_none_or(|p| vm.power_state == p)
    }
}

/// Which servers to list: every condition given must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerFilter {
    /// Only servers of this pool.
    pub pool: Option<PoolId>,
    /// Only servers in this state.
    pub power_state: Option<ServerPowerState>,
}

impl ServerFilter {
    /// Whether `server` passes.
    pub fn matches(&self, server: &Server) -> bool {
        self.pool.is_none_or(|p| server.pool == Some(p))
            && self.power_state.is_none_or(|p| server.power_state == p)
    }
}

/// Which virtual disks to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskFilter {
    /// Only disks in this repository.
    pub repository: Option<RepositoryId>,
}

impl DiskFilter {
    /// Whether `disk` passes.
    pub fn matches(&self, disk: &VirtualDisk) -> bool {
        self.repository.is_none_or(|r| disk.repository == r)
    }
}

impl Manager {
    /// VMs passing `filter`, in name order.
    pub fn vms_where(&self, filter: &VmFilter) -> Vec<Arc<Vm>> {
        self.list::<Vm>(|v| filter.matches(v))
    }

    /// Servers passing `filter`, in name order.
    pub fn servers_where(&self, filter: &ServerFilter) -> Vec<Arc<Server>> {
        self.list::<Server>(|s| filter.matches(s))
    }

    /// Virtual disks passing `filter`, in name order.
    pub fn virtual_disks_where(&self, filter: &DiskFilter) -> Vec<Arc<VirtualDisk>> {
        self.list::<VirtualDisk>(|d| filter.matches(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_config_defaults_maxima_to_the_start_values_and_bounds_vnics() {
        let c = VmConfig::sized(1024, None, 2, None, 3).unwrap();
        assert_eq!((c.max_memory_mib, c.max_vcpus, c.vnics.len()), (1024, 2, 3));
        assert!(c.vnics.iter().all(|v| v.mac.is_empty() && v.network.is_none()));
        let c = VmConfig::sized(1024, Some(2048), 2, Some(4), 0).unwrap();
        assert_eq!((c.max_memory_mib, c.max_vcpus), (2048, 4));
        assert_eq!(
            VmConfig::sized(1, None, 1, None, MAX_VNICS + 1).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn network_defaults() {
        let n = NetworkSpec::new("n", "xenbr0", BTreeSet::new(), None);
        assert_eq!(n.mtu, DEFAULT_MTU);
        assert_eq!(n.functions, NetworkSpec::default_functions());
        assert_eq!(n, NetworkSpec::vm_network("n", "xenbr0"));
    }
}
