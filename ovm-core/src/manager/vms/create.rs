//! Creating a VM from a [`VmSpec`].

use super::fill_macs;
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::Result;

/// Settings of a new VM. VNICs whose `mac` is empty get a MAC from the manager's range.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VmSpec {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Configuration.
    pub config: VmConfig,
    /// Repository for its files.
    pub repository: Option<RepositoryId>,
    /// Pool.
    pub pool: Option<PoolId>,
    /// Assigned server (must be in the pool, if both are set).
    pub server: Option<ServerId>,
    /// Anti-affinity group.
    pub anti_affinity_group: Option<AntiAffinityGroupId>,
}

impl VmSpec {
    /// A VM named `name` with `config`, in no pool yet.
    pub fn new(name: &str, config: VmConfig) -> Self {
        VmSpec {
            name: name.to_owned(),
            description: String::new(),
            config,
            repository: None,
            pool: None,
            server: None,
            anti_affinity_group: None,
        }
    }
}

impl Manager {
    /// Create a VM from scratch. The job's result is the VM.
    pub fn create_vm(&self, spec: VmSpec) -> Result<JobHandle> {
        let mut vm = Vm {
            id: VmId::new(),
            name: spec.name,
            description: spec.description,
            config: spec.config,
            repository: spec.repository,
            pool: spec.pool,
            server: spec.server,
            power_state: PowerState::Stopped,
            domid: None,
            anti_affinity_group: spec.anti_affinity_group,
        };
        {
            let st = self.state();
            fill_macs(&st.inv, st.mac_range, &mut vm.config)?;
        }
        self.create_object(Object::Vm(vm))
    }
}
