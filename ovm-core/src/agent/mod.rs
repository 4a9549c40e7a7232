//! The ovm agent: what runs in dom0 of every server, and the manager's driver that talks to it.
//!
//! As in Oracle VM, the manager does everything on a server through its agent (TCP port
//! [`DEFAULT_PORT`]). The manager discovers a server by IP address or host name with the agent
//! password; the agent then belongs to that manager, which it recognises by its client certificate,
//! until ownership is released:
//!
//! * `server::Agent` (feature `agent-server`) serves a [`crate::driver::ServerConnection`] (in dom0: the Xen driver, feature `xen`)
//!   over mutual TLS 1.3 ([`tls`]) with the typed, versioned protocol of [`proto`]. An unowned agent
//!   serves only "take ownership", which needs the agent password (failures are rate-limited per
//!   address); an owned agent refuses every other certificate at the hello. Refusals and ownership
//!   changes are logged (standard error and `audit.log`). Its key and state live in its state
//!   directory and survive restarts.
//! * [`client::AgentDriver`] is the manager's [`crate::driver::Driver`] for agent addresses (`HOST`,
//!   `HOST:PORT`, `ovm://HOST[:PORT]`). It pins the agent's certificate fingerprint at discovery
//!   (kept in the manager database) and requires it on every reconnection.
//!
//! The `ovm-agent` program (`ovm-core/src/bin/ovm-agent.rs`) runs an agent.

pub mod client;
#[cfg(feature = "agent-server")]
mod migration;
pub mod proto;
#[cfg(feature = "agent-server")]
pub mod server;
pub mod tls;

pub use client::{parse_address, AgentConnection, AgentDriver, DEFAULT_PORT};
#[cfg(feature = "agent-server")]
pub use server::{Agent, AgentConfig, AuditRecord, Owner, ServeEnd};
pub use tls::Identity;

/// Carry the bytes of a stream connection (a migration, a console) between the agents' or the
/// manager's TLS connection and a local socket, both ways, until both ends close.
pub(crate) async fn relay<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut tls: S,
    local: std::os::unix::net::UnixStream,
) -> crate::Result<()> {
    let internal = |e: std::io::Error| crate::Error::Internal { message: format!("stream socket: {e}") };
    local.set_nonblocking(true).map_err(internal)?;
    let mut local = tokio::net::UnixStream::from_std(local).map_err(internal)?;
    match tokio::io::copy_bidirectional(&mut tls, &mut local).await {
        Ok(_) => Ok(()),
        Err(e) => Err(crate::Error::backend("stream", format!("the connection broke: {e}"))),
    }
}
