//! Typed operations on server pools.

use std::ffi::c_char;

use ovm_core::manager::PoolSpec;
use ovm_core::model::*;

use crate::boundary::{id_arg, job_entry, str_arg};
use crate::handles::{ovm_job, ovm_manager};
use crate::result::ovm_result;

/// Create an unclustered server pool. The job's result is the pool.
#[no_mangle]
pub unsafe extern "C" fn ovm_pool_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.create_pool(PoolSpec::new(str_arg(name, "name")?)))
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
