//! Typed operations on servers: discovery, agents, maintenance mode.

use std::ffi::c_char;

use ovm_core::model::*;

use crate::boundary::{copy_out_checked, id_arg, job_entry, str_arg, with_mgr};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::{ovm_result, FfiError};

/// Discover a server by address (IP, host name or `sim://NAME`) with its agent password, and take
/// ownership. The job's result is the server.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_discover(
    mgr: *const ovm_manager,
    address: *const c_char,
    password: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let a = str_arg(address, "address")?;
        let p = str_arg(password, "password")?;
        m.discover_server(a, p)
    })
}

/// Restart the agent of a server reached through one (its VMs keep running; the manager reconnects).
#[no_mangle]
pub unsafe extern "C" fn ovm_server_restart_agent(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.restart_agent(ServerId(id_arg(server, "server")?)))
}

/// Copy the fingerprint (`sha256:` + hex) of the agent certificate pinned for `server` into `buf`;
/// `OVM_RESULT_NOT_FOUND` for a server not reached through an agent.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_agent_fingerprint(
    mgr: *const ovm_manager,
    server: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let id = ServerId(id_arg(server, "server")?);
        let fp = m.mgr.agent_fingerprint(id)?.ok_or_else(|| {
            FfiError::new(ovm_result::OVM_RESULT_NOT_FOUND, "no agent certificate is pinned for this server")
        })?;
        copy_out_checked(&fp, buf, len, out_n)
    })
}

/// Put a server into maintenance mode (`on` true: its VMs migrate away as child jobs) or take it out.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_set_maintenance(
    mgr: *const ovm_manager,
    server: *const c_char,
    on: bool,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.set_maintenance_mode(ServerId(id_arg(server, "server")?), on))
}
