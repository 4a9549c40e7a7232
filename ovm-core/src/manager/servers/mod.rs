//! Servers: discovery and ownership ([`discover`]), editing and maintenance mode ([`maintenance`]),
//! refresh, connection monitoring and reconnection ([`monitor`]), power off and on ([`power`]), and the
//! undo of effects on servers.
//! Pools are in [`super::pools`]; what happens when a server is lost, in [`super::cluster`].

mod discover;
mod domains;
pub(crate) use domains::is_live;
mod maintenance;
mod monitor;
mod power;
pub use power::POWER_ON_TIMEOUT;

use crate::job::ServerUndo;
use crate::manager::Manager;
use crate::model::*;
use crate::{Error, Result};

/// Editable properties of a server.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerEdit {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New roles.
    pub roles: Option<Vec<ServerRole>>,
    /// Wake-on-LAN MAC (`Some(None)` clears it: `null` on the wire; absent leaves it).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "crate::serde_util::some")]
    pub wol_mac: Option<Option<String>>,
    /// Out-of-band power controller (`Some(None)` clears it: `null` on the wire; absent leaves it).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "crate::serde_util::some")]
    pub out_of_band: Option<Option<OutOfBand>>,
}

impl Manager {
    /// The server a VM should start or move on ([`crate::policy::placement::pick`]), among the
    /// servers this manager is connected to and `allow` accepts.
    pub(crate) fn pick_server(&self, vm: &Vm, allow: impl Fn(ServerId) -> bool) -> Result<ServerId> {
        let st = self.state();
        let usage = crate::policy::placement::Usage::of(&st.inv);
        crate::policy::placement::pick(&st.inv, &usage, vm, allow, |s| st.conns.contains_key(&s))
    }
}

/// Undo an effect on a server's ownership (see [`crate::job::ServerUndo`]).
pub(crate) fn undo_server(mgr: &Manager, u: &ServerUndo) -> Result<()> {
    match u {
        ServerUndo::ReleaseOwnership { address } => {
            mgr.driver_for(address)?.release(address, mgr.id()).or_else(|e| match e {
                Error::PermissionDenied { .. } => Ok(()),
                e => Err(e),
            })
        }
        ServerUndo::Network { server, point } => {
            crate::manager::network::undo_network(mgr, ServerId(*server), point)
        }
        ServerUndo::LeaveCluster { server } => {
            crate::manager::cluster::on_cluster(mgr, ServerId(*server), |c| c.leave())
        }
        ServerUndo::Cluster { server, spec } => {
            crate::manager::cluster::on_cluster(mgr, ServerId(*server), |c| c.join(spec).map(drop))
        }
    }
}
