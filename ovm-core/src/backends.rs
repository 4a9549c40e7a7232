//! The default drivers, assembled in one place outside the manager proper.
//!
//! The manager reaches servers only through drivers registered on its [`ManagerBuilder`]; it names
//! no backend. This module is the facade that the bindings and examples use: [`default_drivers`] is
//! the documented default set, and [`Manager::builder`], [`Manager::open`] and
//! [`Manager::open_in_memory`] start from it.
//!
//! The default set, in order:
//!
//! 1. the `sim` driver ([`SimDriver`]) over a new, empty [`SimWorld`], for `sim://NAME` addresses;
//! 2. the agent driver ([`AgentDriver::persistent`]), for IP addresses and host names of servers
//!    running the ovm agent. Its certificate and pins live in the manager database under the
//!    `agent.` keys.
//!
//! The Xen driver for the local dom0 (feature `xen`) is not in the default set: register
//! `ovm_core::xen::XenDriver` explicitly where the manager runs in dom0.

use std::sync::Arc;

use crate::agent::AgentDriver;
use crate::driver::sim::{SimDriver, SimWorld};
use crate::driver::Driver;
use crate::{Manager, ManagerBuilder};

/// The default drivers: `sim` over a new world, then the agent driver.
pub fn default_drivers() -> Vec<Arc<dyn Driver>> {
    vec![Arc::new(SimDriver::new(SimWorld::new())), Arc::new(AgentDriver::persistent())]
}

impl Manager {
    /// A builder with an in-memory database and the [default drivers](default_drivers).
    pub fn builder() -> ManagerBuilder {
        default_drivers().into_iter().fold(ManagerBuilder::new(), ManagerBuilder::driver)
    }

    /// The simulated world of the registered `sim` driver.
    ///
    /// # Panics
    ///
    /// If no [`SimDriver`] is registered (the default set has one).
    pub fn sim(&self) -> &SimWorld {
        self.drivers()
            .iter()
            .find_map(|d| d.downcast_ref::<SimDriver>())
            .map(SimDriver::world)
            .expect("a sim driver is registered")
    }
}

impl ManagerBuilder {
    /// Serve `sim://` servers from `world`: registers a [`SimDriver`] over it in place of any other.
    pub fn sim_world(self, world: SimWorld) -> Self {
        self.replace_driver(Arc::new(SimDriver::new(world)))
    }
}
