//! Python API of ovm: the native module `ovm._ovm`, wrapped by the pure-Python package `ovm`.
//!
//! The module only translates: arguments into `ovm_core` calls, results into frozen record
//! classes, and `ovm_core::Error` into one Python exception class per `ErrorKind`.
//! Blocking calls release the GIL; `Job.wait_async` and `Subscription.__anext__` return asyncio
//! awaitables through `pyo3-async-runtimes` (tokio).

use pyo3::prelude::*;

use errors::OrRaise;

mod convert;
mod errors;
mod ids;
mod jobs;
mod manager;
pub mod records;

/// Does nothing: the baseline for measuring the cost of a call into the module.
#[pyfunction]
fn _noop() {}

/// The stable numbered error kinds, as `{name: code}`.
#[pyfunction]
fn error_kinds() -> Vec<(&'static str, u32)> {
    ovm_core::ErrorKind::ALL.iter().map(|k| (k.name(), k.code())).collect()
}

/// The object kinds with their stable codes (the C enum `ovm_object_kind`), as `(name, code)`.
#[pyfunction]
fn object_kinds() -> Vec<(&'static str, u32)> {
    ovm_core::model::ObjectKind::ALL.iter().map(|k| (k.name(), k.code())).collect()
}

/// The migration blocker kinds with their stable codes (the C enum `ovm_migration_blocker_kind`),
/// as `(name, code)`.
#[pyfunction]
fn migration_blocker_kinds() -> Vec<(&'static str, u32)> {
    ovm_core::model::MigrationBlockerKind::ALL.iter().map(|k| (k.name(), k.code())).collect()
}

/// The HA reason kinds with their stable codes (the C enum `ovm_ha_reason_kind`), as `(name, code)`.
#[pyfunction]
fn ha_reason_kinds() -> Vec<(&'static str, u32)> {
    ovm_core::model::HaReasonKind::ALL.iter().map(|k| (k.name(), k.code())).collect()
}

/// Run the deterministic policy simulator (`ovm_core::policy::simulate`) over one day at
/// one-minute ticks: `servers` servers (1 to 2,000) with twenty VMs each, diurnal load, bursts and
/// failures drawn from `seed`, under the policy `mode` (`"Off"`, `"Drs"` or `"Dpm"`). The same seed
/// gives the same day.
/// Take one screenshot through a console endpoint (`Manager.open_vm_console`): connect to
/// `host`:`port`, authenticate with `password`, read the whole screen and return it as a PNG
/// image, with its width, height and how many distinct colours it has (1: blank).
#[pyfunction]
#[pyo3(signature = (host, port, password, timeout=10.0))]
fn console_screenshot(
    py: Python<'_>,
    host: &str,
    port: u16,
    password: &str,
    timeout: f64,
) -> PyResult<(Py<pyo3::types::PyBytes>, u16, u16, usize)> {
    let ip: std::net::IpAddr =
        host.parse().map_err(|_| ovm_core::Error::invalid("host", "an IP address")).or_raise()?;
    if !(timeout > 0.0 && timeout <= 3600.0) {
        return Err(ovm_core::Error::invalid("timeout", "seconds, more than 0 and at most 3600")).or_raise();
    }
    let (password, t) = (password.to_owned(), std::time::Duration::from_secs_f64(timeout));
    let shot =
        py.detach(move || ovm_core::console::screenshot((ip, port).into(), &password, t)).or_raise()?;
    let png = pyo3::types::PyBytes::new(py, &shot.png()).unbind();
    Ok((png, shot.width, shot.height, shot.colours()))
}

#[pyfunction]
#[pyo3(signature = (seed=1, servers=100, mode="Dpm"))]
fn simulate_policy_day(
    py: Python<'_>,
    seed: u64,
    servers: usize,
    mode: &str,
) -> PyResult<records::SimulatedDay> {
    use ovm_core::policy::simulate::{SimConfig, Simulation};
    if !(1..=2000).contains(&servers) {
        return Err(ovm_core::Error::invalid("servers", format!("{servers} is not within 1-2000")))
            .or_raise();
    }
    let mode: ovm_core::model::PolicyMode = convert::parse_enum("mode", mode)?;
    let day = py.detach(move || {
        let cfg = SimConfig::day(seed, servers, mode);
        let total = cfg.ticks;
        let mut sim = Simulation::new(cfg);
        let mut powered = Vec::new();
        let mut utilisation = Vec::new();
        while sim.report().ticks < total {
            sim.step();
            powered.push(sim.powered_servers() as u32);
            utilisation.push(100.0 * sim.cpu_utilisation());
        }
        records::SimulatedDay::of(sim.report(), powered, utilisation)
    });
    Ok(day)
}

#[pymodule]
fn _ovm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The runtime that drives awaitables handed to asyncio. Jobs run on the manager's own runtime;
    // this one only waits for them, so one worker thread is enough.
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(1).thread_name("ovm-py-async").enable_all();
    pyo3_async_runtimes::tokio::init(rt);

    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SIM_PASSWORD", ovm_core::driver::sim::DEFAULT_PASSWORD)?;
    m.add_function(wrap_pyfunction!(_noop, m)?)?;
    m.add_function(wrap_pyfunction!(error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(object_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(migration_blocker_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(ha_reason_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(simulate_policy_day, m)?)?;
    m.add_function(wrap_pyfunction!(console_screenshot, m)?)?;
    m.add_class::<records::ConsoleEndpoint>()?;
    m.add_class::<manager::Manager>()?;
    m.add_class::<jobs::Job>()?;
    m.add_class::<jobs::Subscription>()?;
    m.add_class::<records::ObjectRef>()?;
    records::register(m)?;
    m.add_class::<records::Vnic>()?;
    m.add_class::<records::VmConfig>()?;
    m.add_class::<records::JobInfo>()?;
    m.add_class::<records::Event>()?;
    m.add_class::<records::Change>()?;
    m.add_class::<records::RebuildReport>()?;
    m.add_class::<records::MigrationBlocker>()?;
    m.add_class::<records::PolicyAction>()?;
    m.add_class::<records::SimulatedDay>()?;
    m.add_class::<records::HaReason>()?;
    m.add_class::<records::HaDecision>()?;
    m.add_class::<records::ClusterStatus>()?;
    m.add_class::<records::HaTolerance>()?;
    m.add_class::<records::LoadSample>()?;
    m.add_class::<records::VmLoad>()?;
    m.add_class::<records::InterfaceLoad>()?;
    errors::register(m)?;
    Ok(())
}
