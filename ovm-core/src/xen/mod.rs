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
//!
//! Everything here talks to the Xen interfaces of Xen 4.17.

pub mod blocking;
pub mod client;
pub mod domain;
pub mod driver;
pub mod error;
pub mod perms;
pub mod privcmd;
pub mod sys;
pub mod transport;
pub mod wire;
pub mod xl;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod fake;

pub use blocking::BlockingXsClient;
pub use client::{Transaction, WatchStream, XsClient, XsConfig};
pub use domain::{Domain, DomainEvent, DomainEvents, Hypervisor, ShutdownOutcome, ShutdownRequest, XenHost};
pub use driver::{XenConnection, XenDriver};
pub use error::{XenError, XenResult, XsErrno};
pub use perms::{Access, Perm, Perms};
pub use privcmd::{DomainInfo, DomainState, PhysInfo, Privcmd, ShutdownReason, XenVersion};
pub use transport::Transport;
pub use wire::WatchEvent;
pub use xl::{GuestType, LifecycleAction, XlDisk, XlDomainBuilder, XlToolstack, XlVif};
