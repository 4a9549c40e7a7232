//! Helper for the crash-recovery test: opens a manager database, starts a VM whose domain creation
//! hangs, prints `READY <vm> <job>` once the job's first step is journaled, and waits to be killed.

use std::time::Duration;

use ovm_core::driver::sim::{SimOp, DEFAULT_PASSWORD};
use ovm_core::manager::{PoolSpec, VmSpec};
use ovm_core::model::*;
use ovm_core::Manager;

fn main() -> ovm_core::Result<()> {
    let path = std::env::args().nth(1).expect("database path");
    let wait = Some(Duration::from_secs(20));
    let mgr = Manager::builder().database_uri(&path)?.recurring_jobs(false).open()?;
    let s = mgr.discover_server("sim://crash1", DEFAULT_PASSWORD)?.wait(wait)?.result.expect("server");
    let pool = mgr.create_pool(PoolSpec::new("p"))?.wait(wait)?.result.expect("pool");
    mgr.add_server_to_pool(PoolId(pool.id), ServerId(s.id))?.wait(wait)?;
    let mut spec = VmSpec::new("victim", VmConfig::default());
    spec.pool = Some(PoolId(pool.id));
    let vm = mgr.create_vm(spec)?.wait(wait)?.result.expect("vm");
    mgr.sim().set_delay(SimOp::Create, Duration::from_secs(3600));
    let job = mgr.start_vm(VmId(vm.id))?;
    while job.info().steps_done.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The second step has journaled its server-side undo before calling the (hanging) driver.
    std::thread::sleep(Duration::from_millis(100));
    println!("READY {} {}", vm.id, job.id());
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}
