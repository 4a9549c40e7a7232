//! Typed operations on networks.

use std::collections::BTreeSet;
use std::ffi::c_char;

use ovm_core::manager::NetworkSpec;
use ovm_core::model::*;

use crate::boundary::{id_arg, id_list, job_entry, opt_id_arg, str_arg};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::{ovm_result, FfiError};

/// Network function bits for `ovm_network_create`.
pub const OVM_NETWORK_MANAGEMENT: u32 = 1;
/// Live migration traffic.
pub const OVM_NETWORK_LIVE_MIGRATE: u32 = 2;
/// Cluster heartbeat.
pub const OVM_NETWORK_CLUSTER_HEARTBEAT: u32 = 4;
/// Virtual machine traffic.
pub const OVM_NETWORK_VIRTUAL_MACHINE: u32 = 8;
/// Storage traffic.
pub const OVM_NETWORK_STORAGE: u32 = 16;

/// Create a network carrying the `OVM_NETWORK_*` function bits in `functions` (0: a VM network), on
/// `bridge`, with ovm-core's default MTU (`NetworkSpec::new`). The job's result is the network.
#[no_mangle]
pub unsafe extern "C" fn ovm_network_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    bridge: *const c_char,
    functions: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let all = [
            (OVM_NETWORK_MANAGEMENT, NetworkFunction::Management),
            (OVM_NETWORK_LIVE_MIGRATE, NetworkFunction::LiveMigrate),
            (OVM_NETWORK_CLUSTER_HEARTBEAT, NetworkFunction::ClusterHeartbeat),
            (OVM_NETWORK_VIRTUAL_MACHINE, NetworkFunction::VirtualMachine),
            (OVM_NETWORK_STORAGE, NetworkFunction::Storage),
        ];
        if functions & !0x1f != 0 {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_ENUM,
                format!("unknown network function bits {functions:#x}"),
            ));
        }
        let set: BTreeSet<NetworkFunction> =
            all.iter().filter(|(b, _)| functions & b != 0).map(|(_, f)| *f).collect();
        let spec = NetworkSpec::new(str_arg(name, "name")?, str_arg(bridge, "bridge")?, set, None);
        m.create_network(spec)
    })
}

/// Bond modes for `ovm_bond_create`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_bond_mode {
    /// active-backup (mode 1).
    OVM_BOND_ACTIVE_BACKUP = 0,
    /// 802.3ad LACP (mode 4).
    OVM_BOND_LACP = 1,
    /// Adaptive load balancing (balance-alb, mode 6).
    OVM_BOND_ADAPTIVE_LOAD_BALANCING = 2,
}

/// Bond the `n_ports` ports in `ports` of `server` as interface `interface` in `mode` (an
/// `ovm_bond_mode`). The job's result is the bond.
#[no_mangle]
pub unsafe extern "C" fn ovm_bond_create(
    mgr: *const ovm_manager,
    server: *const c_char,
    interface: *const c_char,
    mode: u32,
    ports: *const *const c_char,
    n_ports: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let mode = match mode {
            0 => BondMode::ActiveBackup,
            1 => BondMode::Lacp,
            2 => BondMode::AdaptiveLoadBalancing,
            _ => {
                return Err(FfiError::new(
                    ovm_result::OVM_RESULT_INVALID_ENUM,
                    format!("{mode} is not an ovm_bond_mode"),
                ))
            }
        };
        let ports = id_list(ports, n_ports, "ports")?.into_iter().map(PortId).collect();
        m.create_bond(ServerId(id_arg(server, "server")?), str_arg(interface, "interface")?, mode, ports)
    })
}

/// Create VLAN `vlan_id` on a port (`port`) or a bond (`bond`) of `server`: exactly one of them is
/// non-NULL. The job's result is the VLAN interface.
#[no_mangle]
pub unsafe extern "C" fn ovm_vlan_interface_create(
    mgr: *const ovm_manager,
    server: *const c_char,
    port: *const c_char,
    bond: *const c_char,
    vlan_id: u16,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let parent = match (opt_id_arg(port, "port")?, opt_id_arg(bond, "bond")?) {
            (Some(p), None) => VlanParent::Port(PortId(p)),
            (None, Some(b)) => VlanParent::Bond(BondPortId(b)),
            _ => return Err(FfiError::invalid("give exactly one of port and bond")),
        };
        m.create_vlan_interface(ServerId(id_arg(server, "server")?), parent, vlan_id)
    })
}

/// Member kinds for `ovm_network_add_member` and `ovm_network_remove_member`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_network_member {
    /// A port.
    OVM_MEMBER_PORT = 0,
    /// A bond.
    OVM_MEMBER_BOND = 1,
    /// A VLAN interface.
    OVM_MEMBER_VLAN = 2,
}

unsafe fn member_arg(kind: u32, id: *const c_char) -> Result<NetworkMember, FfiError> {
    // SAFETY: per the caller's contract.
    let id = unsafe { id_arg(id, "member") }?;
    Ok(match kind {
        0 => NetworkMember::Port(PortId(id)),
        1 => NetworkMember::Bond(BondPortId(id)),
        2 => NetworkMember::Vlan(VlanInterfaceId(id)),
        _ => {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_ENUM,
                format!("{kind} is not an ovm_network_member"),
            ))
        }
    })
}

/// Add a port, bond or VLAN interface (`kind`, an `ovm_network_member`) to a network. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_network_add_member(
    mgr: *const ovm_manager,
    network: *const c_char,
    kind: u32,
    member: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m
        .add_network_member(NetworkId(id_arg(network, "network")?), member_arg(kind, member)?))
}

/// Remove a member from a network. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_network_remove_member(
    mgr: *const ovm_manager,
    network: *const c_char,
    kind: u32,
    member: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m
        .remove_network_member(NetworkId(id_arg(network, "network")?), member_arg(kind, member)?))
}
