//! Why a VM cannot migrate to a server: the blockers a migration pre-check reports
//! ([`crate::policy::migration`], `Manager::migration_blockers`).

use serde::{Deserialize, Serialize};
use std::fmt;

use super::ObjectRef;

/// What kind of obstacle stands between a VM and a server it should migrate to. The numbers are
/// stable (the C API's `ovm_migration_blocker_kind` uses them); new kinds get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[non_exhaustive]
#[repr(u32)]
pub enum MigrationBlockerKind {
    /// The VM is already on the target server.
    SameServer = 1,
    /// The target is not a server of the VM's pool (or the VM is in no pool).
    OtherPool = 2,
    /// The VM is neither running (live migration) nor stopped (a move).
    VmState = 3,
    /// The target server is in maintenance mode.
    TargetInMaintenance = 4,
    /// The target server is not running or the manager is not connected to it.
    TargetUnavailable = 5,
    /// The target server does not have the VirtualMachine role.
    TargetNotForVms = 6,
    /// The target cannot give the VM its memory.
    InsufficientMemory = 7,
    /// The target's CPU lacks features of the source's, or is of another vendor.
    CpuIncompatible = 8,
    /// A repository the VM's files are in is not presented to (or not mounted on) the target.
    RepositoryUnavailable = 9,
    /// A LUN attached to the VM is not reachable from the target (array not logged in to, or the
    /// LUN not presented to an access group the target is in).
    LunUnavailable = 10,
    /// A network one of the VM's VNICs is on has no member on the target.
    NetworkMissing = 11,
    /// The hypervisors' releases (major.minor) differ.
    XenVersionMismatch = 12,
    /// The servers' toolstacks differ.
    ToolstackMismatch = 13,
    /// A VM of one of the VM's anti-affinity groups runs on the target.
    AntiAffinity = 14,
    /// The target's hypervisor cannot run the VM's domain type.
    DomainTypeUnsupported = 15,
    /// The source's hypervisor cannot live-migrate the VM's domain type (it cannot track the pages
    /// the guest dirties: PV guests need shadow paging).
    LiveMigrationUnsupported = 16,
}

impl MigrationBlockerKind {
    /// Every kind, in number order.
    pub const ALL: [MigrationBlockerKind; 16] = [
        MigrationBlockerKind::SameServer,
        MigrationBlockerKind::OtherPool,
        MigrationBlockerKind::VmState,
        MigrationBlockerKind::TargetInMaintenance,
        MigrationBlockerKind::TargetUnavailable,
        MigrationBlockerKind::TargetNotForVms,
        MigrationBlockerKind::InsufficientMemory,
        MigrationBlockerKind::CpuIncompatible,
        MigrationBlockerKind::RepositoryUnavailable,
        MigrationBlockerKind::LunUnavailable,
        MigrationBlockerKind::NetworkMissing,
        MigrationBlockerKind::XenVersionMismatch,
        MigrationBlockerKind::ToolstackMismatch,
        MigrationBlockerKind::AntiAffinity,
        MigrationBlockerKind::DomainTypeUnsupported,
        MigrationBlockerKind::LiveMigrationUnsupported,
    ];

    /// The stable number of this kind.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The kind with this stable number.
    pub fn from_code(code: u32) -> Option<MigrationBlockerKind> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// A short stable name, e.g. `"TargetInMaintenance"`.
    pub fn name(self) -> &'static str {
        use MigrationBlockerKind::*;
        match self {
            SameServer => "SameServer",
            OtherPool => "OtherPool",
            VmState => "VmState",
            TargetInMaintenance => "TargetInMaintenance",
            TargetUnavailable => "TargetUnavailable",
            TargetNotForVms => "TargetNotForVms",
            InsufficientMemory => "InsufficientMemory",
            CpuIncompatible => "CpuIncompatible",
            RepositoryUnavailable => "RepositoryUnavailable",
            LunUnavailable => "LunUnavailable",
            NetworkMissing => "NetworkMissing",
            XenVersionMismatch => "XenVersionMismatch",
            ToolstackMismatch => "ToolstackMismatch",
            AntiAffinity => "AntiAffinity",
            DomainTypeUnsupported => "DomainTypeUnsupported",
            LiveMigrationUnsupported => "LiveMigrationUnsupported",
        }
    }
}

impl fmt::Display for MigrationBlockerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One reason a migration would fail.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct MigrationBlocker {
    /// What kind of obstacle.
    pub kind: MigrationBlockerKind,
    /// The object it is about, when there is one: the target or source server, the repository,
    /// storage array or LUN, the network, the VM of the anti-affinity group.
    pub object: Option<ObjectRef>,
    /// A sentence naming the objects and the numbers, e.g. `"s2 is in maintenance mode"`.
    pub detail: String,
}

impl MigrationBlocker {
    /// A blocker of `kind` about `object`.
    pub fn new(kind: MigrationBlockerKind, object: Option<ObjectRef>, detail: impl Into<String>) -> Self {
        MigrationBlocker { kind, object, detail: detail.into() }
    }
}

impl fmt::Display for MigrationBlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_stable_and_round_trip() {
        for (i, k) in MigrationBlockerKind::ALL.iter().enumerate() {
            assert_eq!(k.code(), i as u32 + 1, "{k} is numbered in order, from 1");
            assert_eq!(MigrationBlockerKind::from_code(k.code()), Some(*k));
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
        assert_eq!(MigrationBlockerKind::from_code(0), None);
        assert_eq!(MigrationBlockerKind::from_code(17), None);
        assert_eq!(MigrationBlockerKind::LiveMigrationUnsupported.code(), 16);
    }
}
