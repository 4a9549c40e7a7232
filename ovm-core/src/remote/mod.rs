//! The manager's API over a connection: a [`Service`] offers a [`crate::Manager`] on a Unix socket,
//! and a [`RemoteManager`] (from [`crate::Manager::connect`]) calls it from another process.
//!
//! Both sides implement one trait, [`ManagerApi`], generated with the protocol's [`Call`] enum and
//! the service's [`dispatch`] from a single table in [`api`]: code written against
//! `&dyn ManagerApi` (such as the `ovm` command) runs the same on a database opened in-process and
//! on a service. The wire protocol is in [`proto`]: versioned, typed JSON messages in the agent
//! protocol's length-prefixed frames.
//!
//! Who may connect is who may open the socket file ([`ServiceOptions::mode`], `0600` by default);
//! the service records each client's process, user and group ids as the kernel reports them
//! ([`Service::clients`]).
//!
//! ```
//! use ovm_core::remote::{ManagerApi, Service, ServiceOptions};
//! use ovm_core::model::{JobState, ObjectKind};
//! # fn main() -> ovm_core::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ovm-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let socket = dir.join("manager.sock");
//! let service = Service::bind(std::sync::Arc::new(ovm_core::Manager::open_in_memory()?), &socket, ServiceOptions::default())?;
//! let remote = ovm_core::Manager::connect(&format!("ovm+unix://{}", socket.display()))?;
//! let job = remote.discover_server("sim://host1".into(), ovm_core::driver::sim::DEFAULT_PASSWORD.into())?;
//! assert_eq!(remote.wait_job_for(job.id, None)?.state, JobState::Completed);
//! assert_eq!(remote.objects(ObjectKind::Server)?.len(), 1);
//! # drop(remote); service.shutdown(); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(()) }
//! ```

pub mod api;
mod client;
pub mod proto;
mod read_only;
mod server;
mod workers;

pub use api::{dispatch, Call, ChangeStream, ManagerApi, MAX_SERVICE_WAIT};
pub use client::{RemoteManager, RemoteSubscription, ServiceAddress};
pub use read_only::ReadOnlyManager;
pub use server::{peer_credentials, ClientInfo, PeerCredentials, Service, ServiceOptions};

impl crate::Manager {
    /// Connects to a manager service at `uri` (`ovm+unix:///run/ovm/manager.sock`); see
    /// [`RemoteManager`]. The remote manager has the methods of [`ManagerApi`].
    pub fn connect(uri: &str) -> crate::Result<RemoteManager> {
        RemoteManager::connect(uri)
    }
}

#[cfg(test)]
mod tests;
