//! The Xen driver's low layers: a xenstore client, privcmd hypercalls and
//! domain operations built on them.
//!
//! * [`wire`], [`client`], [`blocking`], [`perms`], [`transport`]: our own
//!   xenstore client (wire protocol of Xen's `xs_wire.h`), async with a
//!   blocking façade, over xenstored's Unix socket or `/dev/xen/xenbus`.
//!
//! Everything here talks to the Xen interfaces of Xen 4.17.

pub mod blocking;
pub mod client;
pub mod error;
pub mod perms;
pub mod transport;
pub mod wire;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod fake;

pub use blocking::BlockingXsClient;
pub use client::{Transaction, WatchStream, XsClient, XsConfig};
pub use error::{XenError, XenResult, XsErrno};
pub use perms::{Access, Perm, Perms};
pub use transport::Transport;
pub use wire::WatchEvent;
