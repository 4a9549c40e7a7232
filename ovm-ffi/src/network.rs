//! Typed operations on networks.

use std::collections::BTreeSet;
use std::ffi::c_char;

use ovm_core::manager::NetworkSpec;
use ovm_core::model::*;

use crate::boundary::{job_entry, str_arg};
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

/// Create a network carrying the `OVM_NETWORK_*` function bits in `functions`, on `bridge`.
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
        let spec = NetworkSpec {
            name: str_arg(name, "name")?.to_owned(),
            functions: set,
            members: Vec::new(),
            bridge: str_arg(bridge, "bridge")?.to_owned(),
            mtu: 1500,
        };
        m.create_network(spec)
    })
}
