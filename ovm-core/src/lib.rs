//! ovm: an embeddable manager for Xen virtualization environments, after Oracle VM Manager 3.
//!
//! ovm keeps an inventory of **servers** (Xen hosts), **server pools**, **storage** (file servers,
//! storage arrays, repositories, virtual disks, ISOs, templates, assemblies), **networks** (ports, bonds,
//! VLANs, bridges) and **virtual machines**, persisted in a manager database (SQLite). Every mutating
//! call returns a [`JobHandle`] at once; jobs run steps with undo records, so a failure, an abort or a
//! crash rolls back. Every change lands in a resumable change feed, and **events** with severities
//! report what happened to each object.
//!
//! Servers are reached through drivers behind the [`driver::Driver`] trait, registered on the
//! [`ManagerBuilder`]; [`backends`] assembles the default set. Real servers are discovered by IP
//! address or host name and driven through the ovm agent in their dom0 ([`agent`], the `ovm-agent`
//! program), which serves the Xen driver ([`xen`]) over mutual TLS to the one manager that owns it.
//! The `sim` driver simulates servers in-process (addresses `sim://NAME`) for examples and tests.
//!
//! # Features
//!
//! * `xen` (default): the dom0 side: the xenstore client, privcmd hypercalls and the Xen driver.
//! * `agent-server` (default): the agent's server side, and with `xen` the `ovm-agent` program.
//!
//! Without them the crate is the manager side only (model, store, manager, driver seam, sim,
//! agent client), which is what the C and Python bindings build.
//!
//! # Walk-through
//!
//! ```
//! use ovm_core::{Manager, model::*, manager::*};
//! use ovm_core::driver::sim::DEFAULT_PASSWORD;
//! use std::time::Duration;
//! # fn main() -> ovm_core::Result<()> {
//! let mgr = Manager::open_in_memory()?;
//! let wait = Some(Duration::from_secs(10));
//!
//! // Two servers, one pool.
//! let s1 = mgr.discover_server("sim://xen1", DEFAULT_PASSWORD)?.wait(wait)?.result.unwrap();
//! let s2 = mgr.discover_server("sim://xen2", DEFAULT_PASSWORD)?.wait(wait)?.result.unwrap();
//! let pool = mgr.create_pool(PoolSpec::new("pool1"))?.wait(wait)?.result.unwrap();
//! mgr.add_server_to_pool(PoolId(pool.id), ServerId(s1.id))?.wait(wait)?;
//! mgr.add_server_to_pool(PoolId(pool.id), ServerId(s2.id))?.wait(wait)?;
//!
//! // A VM in the pool, started and live-migrated.
//! let mut config = VmConfig::default();
//! config.vnics.push(Vnic { mac: String::new(), network: None });
//! let mut spec = VmSpec::new("web01", config);
//! spec.pool = Some(PoolId(pool.id));
//! let vm = VmId(mgr.create_vm(spec)?.wait(wait)?.result.unwrap().id);
//! mgr.start_vm(vm)?.wait(wait)?;
//! let on = mgr.vm(vm)?.server.unwrap();
//! let other = if on.0 == s1.id { ServerId(s2.id) } else { ServerId(s1.id) };
//! mgr.migrate_vm(vm, other)?.wait(wait)?;
//! assert_eq!(mgr.vm(vm)?.server, Some(other));
//! mgr.stop_vm(vm)?.wait(wait)?;
//! assert_eq!(mgr.vm(vm)?.power_state, PowerState::Stopped);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod agent;
pub mod backends;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod console;
pub mod driver;
pub mod error;
mod exec;
pub mod import;
pub mod job;
pub mod lio;
pub mod manager;
pub mod model;
pub mod policy;
pub mod power_plugin;
pub mod remote;
mod serde_util;
pub(crate) mod source;
pub mod store;
mod sync;
pub mod xen;

pub use error::{Error, ErrorKind, FailedMove, Result};
pub use manager::{JobHandle, Manager, ManagerBuilder, Subscription};
pub use uuid;
