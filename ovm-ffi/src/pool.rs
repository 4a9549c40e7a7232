//! Typed operations on server pools.

use std::ffi::c_char;

use ovm_core::manager::PoolSpec;
use ovm_core::model::*;

use crate::boundary::{array_arg, id_arg, id_list, job_entry, put_json, str_arg, with_mgr};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::{ovm_result, FfiError};

/// Create an unclustered server pool. The job's result is the pool.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.create_pool(PoolSpec::new(str_arg(name, "name")?)))
}

/// Create a clustered server pool whose pool file system is made on `pool_disk` (the id of a
/// shared LUN's physical disk): its members form a cluster on their servers (OCFS2 with O2CB), the
/// first one to join makes the file system, and the elected master holds `virtual_ip` (IPv4,
/// text). `cluster_timeout_secs` (10 to 300) is how long a member may be silent before the others
/// declare it dead. The job's result is the pool. `OVM_RESULT_INVALID_ARGUMENT` for a bad address,
/// timeout or disk that is not a shared LUN; `OVM_RESULT_CONFLICT` if the disk or the address is
/// used already; nothing is stored then.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_create_clustered(
    mgr: *const ovm_manager,
    name: *const c_char,
    virtual_ip: *const c_char,
    pool_disk: *const c_char,
    cluster_timeout_secs: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let vip = str_arg(virtual_ip, "virtual_ip")?;
        let spec = PoolSpec {
            clustered: true,
            virtual_ip: Some(vip.parse().map_err(|_| {
                ovm_core::Error::invalid("virtual_ip", format!("{vip:?} is not an IP address"))
            })?),
            pool_disk: Some(PhysicalDiskId(id_arg(pool_disk, "pool_disk")?)),
            cluster_timeout_secs,
            ..PoolSpec::new(str_arg(name, "name")?)
        };
        m.create_pool(spec)
    })
}

/// Create a clustered server pool whose pool file system is a file on `pool_file_system` (the id
/// of an NFS file system of a registered file server), as Oracle VM keeps it there: its members
/// mount the export, the first one to join makes the file and the OCFS2 file system in it, and
/// they form a cluster on their servers whose elected master holds `virtual_ip` (IPv4, text).
/// `cluster_timeout_secs` (10 to 300) is how long a member may be silent before the others declare
/// it dead. The job's result is the pool. `OVM_RESULT_INVALID_ARGUMENT` for a bad address or
/// timeout, `OVM_RESULT_NOT_FOUND` for an unknown file system, `OVM_RESULT_CONFLICT` if the address
/// is used already; nothing is stored then.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_create_clustered_on_file_system(
    mgr: *const ovm_manager,
    name: *const c_char,
    virtual_ip: *const c_char,
    pool_file_system: *const c_char,
    cluster_timeout_secs: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let vip = str_arg(virtual_ip, "virtual_ip")?;
        let spec = PoolSpec {
            clustered: true,
            virtual_ip: Some(vip.parse().map_err(|_| {
                ovm_core::Error::invalid("virtual_ip", format!("{vip:?} is not an IP address"))
            })?),
            pool_file_system: Some(FileSystemId(id_arg(pool_file_system, "pool_file_system")?)),
            cluster_timeout_secs,
            ..PoolSpec::new(str_arg(name, "name")?)
        };
        m.create_pool(spec)
    })
}

/// The cluster of `pool` as its servers report it, as JSON (owned: free with `ovm_string_free`):
/// `{"cluster", "members": [...], "master", "epoch", "heartbeats": [{"name", "incarnation",
/// "last_heartbeat_ms", "heartbeat": "alive" | "late" | "dead"}]}`, or `null` when its servers are
/// in no cluster. `OVM_RESULT_NOT_FOUND` if the pool does not exist; `OVM_RESULT_UNSUPPORTED` if no
/// connected server of the pool reports a cluster.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_cluster_status_json(
    mgr: *const ovm_manager,
    pool: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| { put_json(out, &m.api.pool_cluster_status(PoolId(id_arg(pool, "pool")?))?) })
}

/// Reach `pool` at its virtual IP, as Oracle VM's manager does: `{"server": ID, "cluster": ...}`
/// (owned JSON: free with `ovm_string_free`) names the server that answers there — the master of
/// its cluster — and the cluster as it reports it (as `ovm_pool_cluster_status_json`, or `null`).
/// `OVM_RESULT_NOT_FOUND` if the pool does not exist; `OVM_RESULT_INVALID_ARGUMENT` if it has no
/// virtual IP or no servers; `OVM_RESULT_PERMISSION_DENIED` if a server outside the pool answers.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_reach_json(
    mgr: *const ovm_manager,
    pool: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let (server, cluster) = m.api.reach_pool(PoolId(id_arg(pool, "pool")?))?;
        put_json(out, &serde_json::json!({ "server": server, "cluster": cluster }))
    })
}

/// Add a server to a pool (the first member becomes the master).
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_add_server(
    mgr: *const ovm_manager,
    pool: *const c_char,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.add_server_to_pool(PoolId(id_arg(pool, "pool")?), ServerId(id_arg(server, "server")?))
    })
}

/// Remove a server (without running VMs) from its pool.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_remove_server(
    mgr: *const ovm_manager,
    pool: *const c_char,
    server: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        m.remove_server_from_pool(PoolId(id_arg(pool, "pool")?), ServerId(id_arg(server, "server")?))
    })
}

/// `ovm_pool_set_policy` mode.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_policy_mode {
    /// No DRS or DPM.
    OVM_POLICY_OFF = 0,
    /// DRS: move VMs off servers over their thresholds.
    OVM_POLICY_DRS = 1,
    /// DPM: DRS, and consolidate under-used servers, powering them off and on.
    OVM_POLICY_DPM = 2,
}

/// Set a pool's DRS/DPM policy: `mode` (an `ovm_policy_mode`), the CPU threshold in percent
/// (1-100), the period in seconds (at least 60), and `n_networks` watched networks with their
/// thresholds in percent of their link speed (`networks` and `thresholds` may be NULL when
/// `n_networks` is 0).
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_set_policy(
    mgr: *const ovm_manager,
    pool: *const c_char,
    mode: u32,
    cpu_threshold_percent: u8,
    period_secs: u32,
    networks: *const *const c_char,
    thresholds: *const u8,
    n_networks: usize,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let mode = match mode {
            0 => PolicyMode::Off,
            1 => PolicyMode::Drs,
            2 => PolicyMode::Dpm,
            x => {
                return Err(FfiError::new(
                    ovm_result::OVM_RESULT_INVALID_ENUM,
                    format!("{x} is not an ovm_policy_mode"),
                ))
            }
        };
        let ids = id_list(networks, n_networks, "networks")?;
        let ts = array_arg(thresholds, n_networks, "thresholds")?;
        let policy = PoolPolicy {
            mode,
            cpu_threshold_percent,
            period_secs,
            networks: ids.into_iter().map(NetworkId).zip(ts.iter().copied()).collect(),
        };
        m.set_pool_policy(PoolId(id_arg(pool, "pool")?), policy)
    })
}

/// Set how many simultaneous server failures `pool` keeps room for when it has HA-enabled VMs
/// (DPM keeps that reserve free; 1 unless set, 0 reserves nothing). `OVM_RESULT_CONFLICT` beyond
/// what `ovm_pool_max_failures_tolerated` says the pool absorbs now; nothing is changed then.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_set_ha_failures_to_tolerate(
    mgr: *const ovm_manager,
    pool: *const c_char,
    failures: u32,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.set_ha_failures_to_tolerate(PoolId(id_arg(pool, "pool")?), failures))
}

/// The DRS/DPM plan for `pool` now, from the loads sampled over its policy period, as JSON (owned:
/// free with `ovm_string_free`): `{"actions": [...], "unrelieved": [...], "draining": [...]}`,
/// each action `{"action": "migrate", "vm", "from", "to", "reason"}` or
/// `{"action": "power_off" | "power_on", "server", "reason"}`, each reason with its `kind` and
/// figures. A dry run: nothing changes.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_policy_plan_json(
    mgr: *const ovm_manager,
    pool: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| { put_json(out, &m.api.policy_plan(PoolId(id_arg(pool, "pool")?))?) })
}

/// Run `pool`'s DRS/DPM policy now: its plan carried out in a job (migrations as child jobs,
/// servers powered off and on), each action an event.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_run_policy(
    mgr: *const ovm_manager,
    pool: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.run_policy(PoolId(id_arg(pool, "pool")?)))
}

/// For tests and demonstrations: set the CPU load the simulated guest of `vm` generates wherever
/// it runs, percent of one vCPU (0-100; the simulator's default is 10).
#[no_mangle]
pub unsafe extern "C" fn ovm_sim_set_domain_load(
    mgr: *const ovm_manager,
    vm: *const c_char,
    percent: f32,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        if !(0.0..=100.0).contains(&percent) {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_ARGUMENT,
                format!("percent {percent} is not within 0-100"),
            ));
        }
        m.local_only("ovm_sim_set_vm_load")?.sim().set_domain_load(VmId(id_arg(vm, "vm")?), percent);
        Ok(())
    })
}
