//! Policies: pure functions from an inventory snapshot (and, for the load-driven ones, server and VM
//! loads) to a decision or a plan. They perform no I/O, take no locks and read no clock of their
//! own: the manager hands them what it knows and executes what they return as jobs. That keeps them
//! unit-testable and lets a simulator run them over thousands of servers on simulated time.
//!
//! - [`placement`]: which server a VM starts or moves on (the pool's start policy, capacity,
//!   maintenance mode, roles, anti-affinity).
//! - [`migration`]: every reason a VM cannot migrate to a server (pre-checks: state, pool,
//!   maintenance, storage, networks, memory, CPU, hypervisor release and capabilities,
//!   anti-affinity).

pub mod migration;
pub mod placement;
