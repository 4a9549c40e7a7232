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
//! - [`load`]: what DRS and DPM read: server and VM loads over a period, booting and draining
//!   servers, migrations in flight, recent moves and power-ons, limits and the HA reserve, built
//!   into one indexed [`load::LoadSnapshot`].
//! - [`balance`]: DRS (move VMs off servers over their CPU or network thresholds) and DPM
//!   (consolidate under-used servers and power them off, power servers on when the pool runs hot),
//!   with hysteresis, as a [`balance::Plan`] of actions with their reasons.
//! - [`simulate`]: a seeded, deterministic simulator running placement, DRS and DPM over
//!   thousands of servers on simulated time (load traces, bursts, failures).
//! - [`election`]: a clustered pool's master election over a lock with epochs, heartbeats and
//!   self-fencing (who may be master, which commands a server carries out, when a silent server is
//!   dead).
//! - [`ha`]: which server each VM of failed servers restarts on, in start-priority order, or why
//!   it stays stopped; whether a pool absorbs N server failures (failures to tolerate).
//!
//! See `docs/policies.md`.

pub mod balance;
pub mod election;
pub mod ha;
pub mod load;
pub mod migration;
pub mod placement;
pub mod simulate;
