//! High availability: what happens to each VM of a lost server ([`HaPlan`], one [`HaDecision`] per
//! VM) and whether a pool can absorb a number of server failures ([`HaTolerance`]). Computed by
//! [`crate::policy::ha`]; the manager acts on a plan when a server is lost and answers
//! `Manager::ha_plan` and `Manager::max_failures_tolerated` with it.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::{ObjectRef, PoolId, ServerId, VmId};

/// What HA does with a VM of a failed server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[repr(u32)]
pub enum HaAction {
    /// The VM is started again on [`HaDecision::target`].
    Restart = 1,
    /// The VM stays stopped; [`HaDecision::reasons`] say why.
    NotRestarted = 2,
}

impl HaAction {
    /// The stable number of this action (the C API's `ovm_ha_action`).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// A short stable name, e.g. `"Restart"`.
    pub fn name(self) -> &'static str {
        match self {
            HaAction::Restart => "Restart",
            HaAction::NotRestarted => "NotRestarted",
        }
    }
}

impl fmt::Display for HaAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Why a VM of a failed server is not restarted, or why one surviving server cannot take it. The
/// numbers are stable (the C API's `ovm_ha_reason_kind` uses them); new kinds get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
#[non_exhaustive]
#[repr(u32)]
pub enum HaReasonKind {
    /// The VM is not HA-enabled: it stays stopped.
    NotHaEnabled = 1,
    /// The server does not have the VM's memory free for guests (counting the VMs HA restarts
    /// there before it), or offers guests less than the VM's maximum memory.
    NoCapacity = 2,
    /// A VM of the VM's anti-affinity group runs on the server (or is restarted there first).
    AntiAffinity = 3,
    /// A repository of the VM's files or a LUN it has attached is not presented to (or could not
    /// be mounted on) the server.
    StorageNotPresented = 4,
    /// A network of the VM's VNICs has no member on the server.
    NetworkMissing = 5,
    /// The server cannot run VMs now: not running, not connected, in maintenance mode, or without
    /// the VirtualMachine role.
    ServerUnavailable = 6,
    /// The server's hypervisor cannot run the VM's domain type.
    DomainTypeUnsupported = 7,
    /// No server survives in the VM's pool (or the VM is in no pool) to restart it on.
    NoServerLeft = 8,
}

impl HaReasonKind {
    /// Every kind, in number order.
    pub const ALL: [HaReasonKind; 8] = [
        HaReasonKind::NotHaEnabled,
        HaReasonKind::NoCapacity,
        HaReasonKind::AntiAffinity,
        HaReasonKind::StorageNotPresented,
        HaReasonKind::NetworkMissing,
        HaReasonKind::ServerUnavailable,
        HaReasonKind::DomainTypeUnsupported,
        HaReasonKind::NoServerLeft,
    ];

    /// The stable number of this kind.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The kind with this stable number.
    pub fn from_code(code: u32) -> Option<HaReasonKind> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// A short stable name, e.g. `"NoCapacity"`.
    pub fn name(self) -> &'static str {
        use HaReasonKind::*;
        match self {
            NotHaEnabled => "NotHaEnabled",
            NoCapacity => "NoCapacity",
            AntiAffinity => "AntiAffinity",
            StorageNotPresented => "StorageNotPresented",
            NetworkMissing => "NetworkMissing",
            ServerUnavailable => "ServerUnavailable",
            DomainTypeUnsupported => "DomainTypeUnsupported",
            NoServerLeft => "NoServerLeft",
        }
    }
}

impl fmt::Display for HaReasonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One reason in a decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct HaReason {
    /// What kind of reason.
    pub kind: HaReasonKind,
    /// The surviving server the reason is about, if it is about one.
    pub server: Option<ServerId>,
    /// The object it is about beyond the server, when there is one: the repository, storage array
    /// or LUN, the network, the VM of the anti-affinity group.
    pub object: Option<ObjectRef>,
    /// A sentence naming the objects and the numbers, e.g. `"s2 has 512 MiB free for guests, VM
    /// db needs 1024 MiB"`.
    pub detail: String,
}

impl fmt::Display for HaReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What HA does with one VM that was resident on a failed server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct HaDecision {
    /// The VM.
    pub vm: VmId,
    /// Its name.
    pub vm_name: String,
    /// The failed server it was resident on.
    pub from: ServerId,
    /// Whether it is HA-enabled.
    pub high_availability: bool,
    /// Its start priority (1..=100; higher restarts first).
    pub priority: u8,
    /// Its memory at start, MiB.
    pub memory_mib: u64,
    /// Restart or not.
    pub action: HaAction,
    /// The server it is restarted on ([`HaAction::Restart`] only).
    pub target: Option<ServerId>,
    /// Why the target was chosen (a restart), or why the VM stays stopped, in a sentence.
    pub detail: String,
    /// For a VM not restarted: every surviving server's reasons for refusing it (or the one reason
    /// that applies to all, such as [`HaReasonKind::NotHaEnabled`]). Empty for a restart.
    pub reasons: Vec<HaReason>,
}

impl HaDecision {
    /// The distinct kinds of [`HaDecision::reasons`], in number order.
    pub fn reason_kinds(&self) -> Vec<HaReasonKind> {
        let mut k: Vec<HaReasonKind> = self.reasons.iter().map(|r| r.kind).collect();
        k.sort();
        k.dedup();
        k
    }

    /// Whether one of the reasons is of `kind`.
    pub fn has_reason(&self, kind: HaReasonKind) -> bool {
        self.reasons.iter().any(|r| r.kind == kind)
    }
}

/// What HA does when the servers `failed` of a pool fail: one decision per VM that was resident on
/// them, in the order they are acted on (HA-enabled VMs by start priority, highest first, then the
/// others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct HaPlan {
    /// The pool.
    pub pool: PoolId,
    /// The failed servers.
    pub failed: Vec<ServerId>,
    /// One decision per VM resident on a failed server.
    pub decisions: Vec<HaDecision>,
}

impl HaPlan {
    /// The HA-enabled VMs that are not restarted.
    pub fn not_restarted(&self) -> Vec<&HaDecision> {
        self.decisions.iter().filter(|d| d.high_availability && d.action == HaAction::NotRestarted).collect()
    }

    /// The VMs that are restarted.
    pub fn restarted(&self) -> Vec<&HaDecision> {
        self.decisions.iter().filter(|d| d.action == HaAction::Restart).collect()
    }

    /// Whether every HA-enabled VM is restarted.
    pub fn all_ha_restarted(&self) -> bool {
        self.not_restarted().is_empty()
    }

    /// The memory of the HA-enabled VMs not restarted, MiB.
    pub fn memory_not_restarted_mib(&self) -> u64 {
        self.not_restarted().iter().map(|d| d.memory_mib).sum()
    }
}

/// Whether a pool absorbs `failures` simultaneous server failures: every HA-enabled VM of the
/// failed servers restarts on the survivors (a dry run, as XAPI's failures-to-tolerate planner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct HaTolerance {
    /// The pool.
    pub pool: PoolId,
    /// How many servers fail at once.
    pub failures: u32,
    /// Whether every HA-enabled VM restarts in every case considered.
    pub tolerated: bool,
    /// Whether every combination of `failures` servers among the pool's running servers was
    /// planned (otherwise the heaviest ones and a memory bound: see [`crate::policy::ha`]).
    pub exhaustive: bool,
    /// How many combinations of failed servers were planned.
    pub combinations: u64,
    /// How many servers the failures were chosen among (the pool's running, connected servers).
    pub servers_considered: u32,
    /// For a check that was not exhaustive: whether the memory bound held (the HA memory of the
    /// `failures` most loaded servers fits in the free guest memory of the emptiest survivors).
    pub memory_bound_ok: Option<bool>,
    /// The worst case found: the plan with the most HA-enabled VMs not restarted (then the most
    /// memory not restarted). `None` when `failures` is 0.
    pub worst: Option<HaPlan>,
}

impl HaTolerance {
    /// The HA-enabled VMs that would not restart in the worst case.
    pub fn not_restarted(&self) -> Vec<&HaDecision> {
        self.worst.as_ref().map(|w| w.not_restarted()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_unique_stable_and_round_trip() {
        for (i, k) in HaReasonKind::ALL.iter().enumerate() {
            assert_eq!(k.code(), i as u32 + 1);
            assert_eq!(HaReasonKind::from_code(k.code()), Some(*k));
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{}\"", k.name()));
        }
        assert_eq!(HaReasonKind::from_code(0), None);
        assert_eq!(HaReasonKind::from_code(9), None);
        assert_eq!((HaAction::Restart.code(), HaAction::NotRestarted.code()), (1, 2));
    }
}
