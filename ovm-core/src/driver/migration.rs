//! Migration, orchestrated by the manager at both ends: the destination prepares for an incoming
//! domain and returns a [`MigrationTicket`]; the source sends the domain using that ticket.
//!
//! Each end has an identity ([`MigrationOps::identity`]: for servers behind agents, the agent's
//! certificate fingerprint that the manager pinned). The manager tells the destination whom to
//! expect (the source's identity) and the source whom to trust (the ticket's `peer`), so the two
//! servers authenticate each other with what the manager already verified.
//!
//! A backend that moves domains as a byte stream ([`MigrationStreams`], the Xen toolstack's
//! migration stream) lets whoever connects the two servers carry it: the agents carry it over
//! mutual TLS between themselves.

use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use super::DomainSpec;
use crate::model::{MigrationMode, VmId};
use crate::Result;

/// What a source needs to send a domain to a prepared destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationTicket {
    /// The domain it admits.
    pub vm: VmId,
    /// Where to send it, in the destination driver's terms (an address).
    pub destination: String,
    /// A one-time token the destination recognises.
    pub token: String,
    /// The destination's identity, which the source checks before it sends anything.
    #[serde(default)]
    pub peer: String,
    /// What the destination prepared for: a live migration stream or a saved domain (a cold
    /// move). A ticket admits only a domain sent the way it was prepared for.
    #[serde(default)]
    pub mode: MigrationMode,
}

/// Both ends of a migration.
pub trait MigrationOps: Send + Sync {
    /// What this end proves to the other end of a migration.
    fn identity(&self) -> Result<String>;
    /// Destination side: prepare to receive the domain described by `spec` from the source whose
    /// identity is `source` (checking that the domain fits and that its disks and networks are
    /// here), the way `mode` says, and issue the one-time ticket the source needs.
    fn prepare_incoming(
        &self,
        spec: &DomainSpec,
        source: &str,
        mode: MigrationMode,
    ) -> Result<MigrationTicket>;
    /// Destination side: give up a prepared migration that will not happen.
    fn cancel_incoming(&self, ticket: &MigrationTicket) -> Result<()>;
    /// Source side: send the domain to the destination that issued `ticket`, the way the ticket
    /// was prepared for. Live ([`MigrationMode::Live`]; `live` false pauses the domain for the whole
    /// copy): on success the domain runs there and no longer here. Cold
    /// ([`MigrationMode::Cold`]; `live` is ignored): on success the domain runs there and its
    /// saved copy is left paused here, for the caller to destroy; on failure it may be left paused
    /// here (the caller unpauses it).
    fn send(&self, vm: VmId, ticket: &MigrationTicket, live: bool) -> Result<()>;
}

/// Both ends of a migration as a byte stream that the caller carries between the two servers.
pub trait MigrationStreams: Send + Sync {
    /// Destination side: check, before any ticket is issued, that a domain described by `spec`
    /// may come here (memory, disk paths inside this server's repositories, bridges present).
    fn check_incoming(&self, spec: &DomainSpec) -> Result<()>;
    /// Destination side: receive the domain described by `spec` from `stream` the way `mode`
    /// says (a live migration stream, or a saved domain, which is restored, started and answered
    /// with a verdict), refusing a stream whose domain is not the one `spec` describes before the
    /// toolstack sees it; returns its domid here. A domain left half-received is destroyed.
    fn receive_stream(&self, spec: &DomainSpec, mode: MigrationMode, stream: UnixStream) -> Result<u32>;
    /// Source side: send domain `vm` through `stream`, which reaches the destination's
    /// [`MigrationStreams::receive_stream`] for the same `mode`. Live: on success the domain runs
    /// there and no longer here; on failure it still runs here. Cold: the domain is saved paused
    /// into the stream, and the call returns once the destination says whether the domain runs
    /// there; on success its paused copy stays here (for the caller to destroy), on failure it
    /// is left paused or running here (the caller unpauses it).
    fn send_stream(&self, vm: VmId, live: bool, mode: MigrationMode, stream: UnixStream) -> Result<()>;
}
