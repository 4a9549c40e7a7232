//! Migration, orchestrated by the manager at both ends: the destination prepares for an incoming
//! domain and returns a [`MigrationTicket`]; the source sends the domain using that ticket.

use serde::{Deserialize, Serialize};

use super::DomainSpec;
use crate::model::VmId;
use crate::Result;

/// What a source needs to send a domain to a prepared destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationTicket {
    /// The domain it admits.
    pub vm: VmId,
    /// Where to send it, in the destination driver's terms (an address).
    pub destination: String,
    /// A token the destination recognises (empty when the destination needs none).
    pub token: String,
}

/// Both ends of a migration.
pub trait MigrationOps: Send + Sync {
    /// Destination side: prepare to receive the domain described by `spec` (checking that it fits).
    fn prepare_incoming(&self, spec: &DomainSpec) -> Result<MigrationTicket>;
    /// Destination side: give up a prepared migration that will not happen.
    fn cancel_incoming(&self, ticket: &MigrationTicket) -> Result<()>;
    /// Source side: send the domain to the destination that issued `ticket`.
    fn send(&self, vm: VmId, ticket: &MigrationTicket, live: bool) -> Result<()>;
}
