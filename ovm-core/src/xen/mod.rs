//! The Xen driver's low layers: a xenstore client, privcmd hypercalls and
//! domain operations built on them.
//!
//! * [`wire`], [`client`], [`blocking`], [`perms`], [`transport`]: our own
//!   xenstore client (wire protocol of Xen's `xs_wire.h`), async with a
//!   blocking façade, over xenstored's Unix socket or `/dev/xen/xenbus`.
//! * [`privcmd`], [`sys`]: hypercalls (`xen_version`, `sysctl`, `domctl`)
//!   through `/dev/xen/privcmd`, with the ABI structs of Xen 4.17.
//! * [`domain`]: domain operations on top of both ([`XenHost`]).
//! * [`xl`]: domain creation through the Xen toolstack (`xl create`).
//! * [`driver`]: [`XenDriver`], the manager's driver for the local Xen host.
//! * [`network`]: dom0's bonds, VLAN interfaces, bridges and addresses over rtnetlink.
//! * [`vip`]: a clustered pool's virtual IP: ARP probe (RFC 5227), address, gratuitous ARP.
//!
//! * [`naming`]: Xen's device and bridge names (always compiled; the rest needs the `xen` feature).
//!
//! Everything here talks to the Xen interfaces of Xen 4.17.
//!
//! # Testing
//!
//! * `cargo test -p ovm-core`: hermetic tests; the xenstore client runs
//!   against an in-process fake xenstored that speaks the real wire protocol
//!   over a Unix socket (pipelining with out-of-order replies, transactions
//!   with `EAGAIN`, watches re-armed after a reconnect, hostile replies), and
//!   a bounded, deterministic randomized test of the wire decoder.
//! * `ovm-core/fuzz`: a cargo-fuzz package (its own workspace) with the
//!   target `xs_decode`; with a stable toolchain:
//!   `cd ovm-core && RUSTC_BOOTSTRAP=1 cargo fuzz run xs_decode -- -max_total_time=20`.
//! * `ovm-core/tests/xen_lab.rs` (feature `xen-lab-tests`): tests in a real
//!   Xen dom0, e.g. through the project's Xen lab:
//!   `tests/xenlab/lab cargo-test -p ovm-core --features xen-lab-tests --test xen_lab`.
//! * `cargo bench -p ovm-core --bench xenstore`: codec and client round trips.
//!
//! # Notes from real Xen
//!
//! * Linux's `/dev/xen/xenbus` must not be given a second request before the
//!   first is answered (the kernel sends the payload from a per-file buffer
//!   that the next `write(2)` overwrites); the client keeps one request in
//!   flight on that transport and pipelines only over the socket.
//! * Taking a vCPU offline through `cpu/N/availability` is done by the guest
//!   kernel; bringing it back only makes it present, and the guest's
//!   userspace (udev) onlines it.

// Without the `xen` feature only `naming` is built, and the links above have no target.
#![cfg_attr(not(feature = "xen"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "xen")]
pub mod blocking;
#[cfg(feature = "xen")]
pub mod client;
#[cfg(feature = "xen")]
pub mod cluster;
#[cfg(feature = "xen")]
pub mod domain;
#[cfg(feature = "xen")]
pub mod driver;
#[cfg(feature = "xen")]
pub mod error;
#[cfg(feature = "xen")]
pub mod iscsi;
#[cfg(feature = "xen")]
pub mod migration;
pub mod naming;
#[cfg(feature = "xen")]
pub mod network;
#[cfg(feature = "xen")]
pub mod perms;
#[cfg(feature = "xen")]
pub mod plugin;
pub mod pool_ha;
#[cfg(feature = "xen")]
pub mod privcmd;
#[cfg(feature = "xen")]
pub mod storage;
#[cfg(feature = "xen")]
pub mod sys;
#[cfg(feature = "xen")]
pub mod transport;
#[cfg(feature = "xen")]
pub mod vip;
#[cfg(feature = "xen")]
pub mod watchdog;
#[cfg(feature = "xen")]
pub mod wire;
#[cfg(feature = "xen")]
pub mod xl;

#[cfg(all(test, feature = "xen"))]
mod client_tests;
#[cfg(all(test, feature = "xen"))]
mod fake;

#[cfg(feature = "xen")]
pub use blocking::BlockingXsClient;
#[cfg(feature = "xen")]
pub use client::{Transaction, WatchStream, XsClient, XsConfig};
#[cfg(feature = "xen")]
pub use domain::{Domain, DomainEvent, DomainEvents, Hypercalls, ShutdownOutcome, ShutdownRequest, XenHost};
#[cfg(feature = "xen")]
pub use driver::{XenConnection, XenDriver};
#[cfg(feature = "xen")]
pub use error::{XenError, XenResult, XsErrno};
#[cfg(feature = "xen")]
pub use perms::{Access, Perm, Perms};
#[cfg(feature = "xen")]
pub use privcmd::{DomainInfo, DomainState, PhysInfo, Privcmd, ShutdownReason, XenVersion};
#[cfg(feature = "xen")]
pub use transport::Transport;
#[cfg(feature = "xen")]
pub use wire::WatchEvent;
#[cfg(feature = "xen")]
pub use xl::{GuestType, LifecycleAction, XlDisk, XlDomainBuilder, XlToolstack, XlVif};
