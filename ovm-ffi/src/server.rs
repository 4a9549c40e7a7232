//! Typed operations on servers: discovery, agents, maintenance mode.

use std::ffi::c_char;

use ovm_core::model::*;

use ovm_core::driver::ChassisPower;
use ovm_core::manager::{ServerEdit, ServerFilter};
use ovm_core::power_plugin::ExecPowerController;

use crate::boundary::{
    copy_out_checked, id_arg, job_entry, opt_id_arg, out_arg, put, put_json, str_arg, with_mgr,
};
use crate::boundary::{opt_string_arg, string_arg};
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
        let a = string_arg(address, "address")?;
        let p = string_arg(password, "password")?;
        m.discover_server(a, p)
    })
}

/// Discover a server that another manager owns and take it over with its agent password (the
/// agent records the takeover); otherwise as `ovm_server_discover`. For a manager rebuilt after
/// losing its database (`ovm_manager_rebuild_from_servers`). The job's result is the server.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_take_over(
    mgr: *const ovm_manager,
    address: *const c_char,
    password: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let a = string_arg(address, "address")?;
        let p = string_arg(password, "password")?;
        m.take_over_server(a, p)
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
        let fp = m.api.agent_fingerprint(id)?.ok_or_else(|| {
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

/// Power a server off cleanly through its agent. It must be running and run no VM (enter
/// maintenance mode first): `OVM_RESULT_CONFLICT` names the VMs still there.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_power_off(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.power_off_server(ServerId(id_arg(server, "server")?)))
}

/// Power a powered-off server on by Wake-on-LAN: another running server of its pool sends the
/// magic packet for the server's Wake-on-LAN MAC on the management network, and the job waits up
/// to `timeout_ms` (0: the default, `OVM_POWER_ON_TIMEOUT_MS`) for its agent to answer.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_power_on(
    mgr: *const ovm_manager,
    server: *const c_char,
    timeout_ms: u64,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m
        .power_on_server(ServerId(id_arg(server, "server")?), (timeout_ms > 0).then_some(timeout_ms)))
}

/// How long `ovm_server_power_on` waits for the server's agent by default, in milliseconds.
pub const OVM_POWER_ON_TIMEOUT_MS: u64 = 900_000;
const _: () = assert!(OVM_POWER_ON_TIMEOUT_MS == ovm_core::manager::POWER_ON_TIMEOUT.as_millis() as u64);

/// Servers as a JSON array in name order: of `pool` (NULL: any), in `power_state` (an
/// `ovm_server_power_state`, or `OVM_SERVER_POWER_ANY`). The filter is ovm-core's `ServerFilter`.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_list_json(
    mgr: *const ovm_manager,
    pool: *const c_char,
    power_state: u32,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let power_state = match power_state {
            OVM_SERVER_POWER_ANY => None,
            0 => Some(ServerPowerState::Running),
            1 => Some(ServerPowerState::Stopped),
            2 => Some(ServerPowerState::Unreachable),
            p => {
                return Err(FfiError::new(
                    ovm_result::OVM_RESULT_INVALID_ENUM,
                    format!("{p} is not an ovm_server_power_state"),
                ))
            }
        };
        let filter = ServerFilter { pool: opt_id_arg(pool, "pool")?.map(PoolId), power_state };
        put_json(out, &m.api.servers_where(filter)?)
    })
}

/// Server states for `ovm_server_list_json`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_server_power_state {
    /// Reachable and running.
    OVM_SERVER_RUNNING = 0,
    /// Powered off by the manager.
    OVM_SERVER_STOPPED = 1,
    /// Not reachable.
    OVM_SERVER_UNREACHABLE = 2,
}

/// `ovm_server_list_json` power state: any.
pub const OVM_SERVER_POWER_ANY: u32 = u32::MAX;

/// Take ownership of a discovered server that is not owned (with its agent password). Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_take_ownership(
    mgr: *const ovm_manager,
    server: *const c_char,
    password: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.take_ownership(ServerId(id_arg(server, "server")?), string_arg(password, "password")?)
    })
}

/// Release ownership of a server (not in a pool, no VMs on it). Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_release_ownership(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.release_ownership(ServerId(id_arg(server, "server")?)))
}

/// Re-read a server's hardware, ports and domains. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_refresh(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.refresh_server(ServerId(id_arg(server, "server")?)))
}

/// Set how a server is powered on and off: its Wake-on-LAN MAC (`wol_mac`, NULL: none) and its
/// out-of-band power controller (`controller`, the name a controller was registered under with
/// `ovm_manager_register_power_plugin`, and `address`, its management controller's host name or IP
/// address; both NULL: none). A server with a controller is powered on through it rather than by
/// Wake-on-LAN. `OVM_RESULT_INVALID_ARGUMENT` for a malformed MAC or address, or a controller not
/// registered; nothing is changed then.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_set_power_control(
    mgr: *const ovm_manager,
    server: *const c_char,
    wol_mac: *const c_char,
    controller: *const c_char,
    address: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let server = ServerId(id_arg(server, "server")?);
        let wol_mac = opt_string_arg(wol_mac, "wol_mac")?;
        let out_of_band =
            match (opt_string_arg(controller, "controller")?, opt_string_arg(address, "address")?) {
                (None, None) => None,
                (Some(c), Some(a)) => Some(OutOfBand { controller: c.to_owned(), address: a.to_owned() }),
                _ => {
                    return Err(FfiError::new(
                        ovm_result::OVM_RESULT_INVALID_ARGUMENT,
                        "controller and address are given together, or neither",
                    ))
                }
            };
        let edit =
            ServerEdit { wol_mac: Some(wol_mac), out_of_band: Some(out_of_band), ..ServerEdit::default() };
        m.edit_server(server, edit)
    })
}

/// Register the executable power plug-in at `path` (absolute) as the out-of-band power
/// controller `name` (`a-z`, `0-9`, `-`, `_`), replacing one of that name, for as long as this
/// manager is open. The plug-in protocol: `PLUGIN on|off|status ADDRESS`, exit status 0 for
/// success, `on` or `off` on standard output for `status` (see docs/power.md).
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_register_power_plugin(
    mgr: *const ovm_manager,
    name: *const c_char,
    path: *const c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let plugin = ExecPowerController::new(str_arg(name, "name")?, str_arg(path, "path")?)?;
        m.local_only("ovm_manager_register_power_plugin")?
            .register_power_controller(std::sync::Arc::new(plugin))?;
        Ok(())
    })
}

/// For tests and demonstrations: register the simulated servers' management controllers as the
/// out-of-band power controller `"sim-bmc"` (a server's address is its simulated host's name).
#[no_mangle]
pub unsafe extern "C" fn ovm_sim_register_power_controller(mgr: *const ovm_manager) -> ovm_result {
    with_mgr!(mgr, |m| {
        {
            let local = m.local_only("ovm_sim_register_power_controller")?;
            local.register_power_controller(local.sim().power_controller())
        }?;
        Ok(())
    })
}

/// Whether `server`'s chassis is powered, as its out-of-band power controller reports it now
/// (`*on`). `OVM_RESULT_INVALID_ARGUMENT` if the server has no out-of-band controller.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_out_of_band_power_state(
    mgr: *const ovm_manager,
    server: *const c_char,
    on: *mut bool,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let on = out_arg(on, "on")?;
        let state = m.api.out_of_band_power_state(ServerId(id_arg(server, "server")?))?;
        put(on, state == ChassisPower::On);
        Ok(())
    })
}
