//! Out-of-band power control: a server's baseboard management controller (IPMI, Redfish) or a
//! switched PDU, reached from the manager, not through the server's own agent.
//!
//! Wake-on-LAN needs another running server on the management LAN and only powers on; a
//! [`PowerController`] powers a server on and off and reads its power state whatever its dom0 is
//! doing. Controllers are registered with the manager under a name (the embedding application
//! brings its own, or an executable plug-in: `ovm_core::power_plugin`); a server names its
//! controller and the address of its management controller in
//! [`crate::model::OutOfBand`]. Credentials stay with the controller, never in the inventory.

use std::fmt;

use crate::model::OutOfBand;
use crate::Result;

/// A server's power as its management controller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChassisPower {
    /// The chassis is powered.
    On,
    /// The chassis is off.
    Off,
}

/// One kind of out-of-band power controller. Calls block; the manager runs them on job threads.
pub trait PowerController: Send + Sync + fmt::Debug {
    /// The name servers give in [`OutOfBand::controller`].
    fn name(&self) -> &str;
    /// Power the chassis on (nothing happens if it is on).
    fn power_on(&self, target: &OutOfBand) -> Result<()>;
    /// Cut the chassis's power at once, whatever runs on it (fencing; a clean shutdown goes
    /// through the server's agent).
    fn power_off(&self, target: &OutOfBand) -> Result<()>;
    /// The chassis's power now.
    fn power_state(&self, target: &OutOfBand) -> Result<ChassisPower>;
}
