//! Typed operations on networks.

use std::collections::BTreeSet;
use std::ffi::c_char;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ovm_core::manager::{BondSpec, NetworkApply, NetworkSpec};
use ovm_core::model::*;

use crate::boundary::string_arg;
use crate::boundary::{
    id_arg, id_list, job_entry, opt_id_arg, opt_str_arg, put_json, str_arg, str_list, with_mgr,
};
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

/// Bond modes for `ovm_bond_create` and `ovm_bond_create_with`.
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
/// `ovm_bond_mode`), MII-monitored, MTU 1500, no address (see `ovm_bond_create_with`). The job's
/// result is the bond.
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
        let mode = bond_mode_arg(mode)?;
        let ports = id_list(ports, n_ports, "ports")?.into_iter().map(PortId).collect();
        m.create_bond(ServerId(id_arg(server, "server")?), string_arg(interface, "interface")?, mode, ports)
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

/// Member kinds for `ovm_network_add_member`, `ovm_network_remove_member` and
/// `ovm_network_set_address`.
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

/// An address argument: NULL for none, `"dhcp"`, or `"ADDRESS/PREFIX"` (e.g. `"10.0.1.5/24"`).
///
/// # Safety
/// As [`opt_str_arg`].
unsafe fn addressing_arg(p: *const c_char, name: &str) -> Result<Addressing, FfiError> {
    // SAFETY: per the caller's contract.
    let Some(s) = (unsafe { opt_str_arg(p, name) })? else {
        return Ok(Addressing::None);
    };
    parse_addressing(s, name)
}

fn parse_addressing(s: &str, name: &str) -> Result<Addressing, FfiError> {
    if s == "dhcp" {
        return Ok(Addressing::Dhcp);
    }
    let bad = || FfiError::invalid(format!("{name} {s:?} is not \"ADDRESS/PREFIX\" or \"dhcp\""));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let address: IpAddr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    Ok(Addressing::Static { address, prefix })
}

fn bond_mode_arg(mode: u32) -> Result<BondMode, FfiError> {
    Ok(match mode {
        0 => BondMode::ActiveBackup,
        1 => BondMode::Lacp,
        2 => BondMode::AdaptiveLoadBalancing,
        _ => {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_ENUM,
                format!("{mode} is not an ovm_bond_mode"),
            ))
        }
    })
}

/// Bond the `n_ports` ports in `ports` of `server` (the first is the primary of an active-backup
/// bond) as interface `interface` in `mode` (an `ovm_bond_mode`), with `mtu` (0: 1500). Links are
/// monitored by ARP probes of the `n_targets` IPv4 addresses in `arp_targets` every
/// `arp_interval_ms` (active-backup bonds only), or by the NICs' carrier (MII, every 100 ms) when
/// `arp_interval_ms` is 0 (then `n_targets` must be 0). `address` is NULL (no address), `"dhcp"` or `"ADDRESS/PREFIX"`, e.g.
/// `"10.0.1.5/24"`. The job's result is the bond.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ovm_bond_create_with(
    mgr: *const ovm_manager,
    server: *const c_char,
    interface: *const c_char,
    mode: u32,
    ports: *const *const c_char,
    n_ports: usize,
    mtu: u16,
    arp_interval_ms: u32,
    arp_targets: *const *const c_char,
    n_targets: usize,
    address: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let mode = bond_mode_arg(mode)?;
        let ports = id_list(ports, n_ports, "ports")?.into_iter().map(PortId).collect();
        let targets = str_list(arp_targets, n_targets, "arp_targets")?
            .into_iter()
            .map(|t| {
                t.parse::<Ipv4Addr>()
                    .map_err(|_| FfiError::invalid(format!("ARP target {t:?} is not an IPv4 address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let monitor = if arp_interval_ms == 0 {
            if !targets.is_empty() {
                return Err(FfiError::invalid("ARP targets need an ARP interval"));
            }
            BondMonitor::default()
        } else {
            BondMonitor::Arp { interval_ms: arp_interval_ms, targets }
        };
        let mut spec =
            BondSpec::new(ServerId(id_arg(server, "server")?), str_arg(interface, "interface")?, mode, ports);
        if mtu != 0 {
            spec.mtu = mtu;
        }
        spec.monitor = monitor;
        spec.addressing = addressing_arg(address, "address")?;
        m.create_bond_with(spec)
    })
}

/// Delete a bond (its ports are released, its configuration removed from its server). Nothing may
/// use it. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_bond_delete(
    mgr: *const ovm_manager,
    bond: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.delete_bond(BondPortId(id_arg(bond, "bond")?)))
}

/// Set the address of a port, bond or VLAN interface (`member_kind`, an `ovm_network_member`) on
/// its server: `address` is NULL (none), `"dhcp"` or `"ADDRESS/PREFIX"`. A change that would cut the
/// manager's link to the server is refused with `OVM_RESULT_CONFLICT` unless `force`; a forced one
/// is undone by the server unless the manager reaches it again within `confirm_within_ms` (0: 30 s),
/// and then the job fails with `OVM_RESULT_CONFLICT`. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_network_set_address(
    mgr: *const ovm_manager,
    member_kind: u32,
    member_id: *const c_char,
    address: *const c_char,
    force: bool,
    confirm_within_ms: u64,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let member = member_arg(member_kind, member_id)?;
        let addressing = addressing_arg(address, "address")?;
        let how = NetworkApply { force, confirm_within: Duration::from_millis(confirm_within_ms) };
        m.set_addressing(member, addressing, how)
    })
}

/// Converge the network configuration of `server` to the model: put back what is missing or
/// different (what `ovm_server_network_drift_json` reports). Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_network_reapply(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.reapply_network(ServerId(id_arg(server, "server")?)))
}

/// How the network configuration of `server` differs from the model, read from the server: a JSON
/// array of strings, one per difference (`[]`: as it should be). Free with `ovm_string_free`.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_network_drift_json(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let server = ServerId(id_arg(server, "server")?);
        put_json(out, &m.api.network_drift(server)?)
    })
}

/// The network configuration `server` has now, read from it: a JSON object with `bonds`, `vlans`,
/// `bridges` and `addresses` (ovm-core's `driver::network::NetworkConfig`). Free with
/// `ovm_string_free`.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_network_config_json(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let server = ServerId(id_arg(server, "server")?);
        put_json(out, &m.api.server_network_config(server)?)
    })
}
