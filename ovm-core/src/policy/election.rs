//! Master election of a clustered pool over a lock with epochs, and the self-fencing that makes
//! it safe.
//!
//! Two state machines, both pure (time comes in as `now`, read by the caller from a
//! [`crate::clock::Clock`]):
//!
//! * [`ClusterLock`]: what the pool's members share (in a real pool: the disk heartbeat region of
//!   o2hb, the DLM master lock and per-VM locks, and the epoch record on the pool file system):
//!   each member's last heartbeat, the master lock and its **epoch**, and which member holds each
//!   VM's lock.
//! * [`Node`]: one server's own side: when it last wrote a heartbeat, the highest epoch it has
//!   seen, whether it is master, whether it has fenced itself.
//!
//! The rules, with `T` = [`ElectionConfig::heartbeat_timeout_ms`] and `M` =
//! [`ElectionConfig::fence_margin_ms`]:
//!
//! 1. A member heartbeats while it reaches the shared state. A member whose last successful
//!    heartbeat is `T` old **fences itself** ([`Node::must_fence`]): it drops mastership and the
//!    virtual IP and stops its VMs (a real server reboots, by the kernel or the Xen watchdog).
//! 2. The others **declare it dead** only when its last heartbeat is `T + M` old
//!    ([`ClusterLock::expire`]), so always after it fenced itself. Only then do its master lock
//!    and its VM locks become free: a new master may be elected and its VMs restarted elsewhere.
//! 3. Taking the master lock raises the epoch by one ([`ClusterLock::try_acquire`]); a master
//!    stamps its commands with its epoch ([`Node::stamp`]); a server refuses a command stamped
//!    with an epoch older than the highest it has seen ([`Node::accept`]).
//! 4. A server starts a VM only holding the VM's lock ([`ClusterLock::lock_vm`]), so that a
//!    command delivered late, or a stale view, never starts a VM twice.
//! 5. A server that boots again joins as a new incarnation; its former incarnation is dead at
//!    once (it rebooted: it runs nothing and holds no lock).
//!
//! The property tests (`election/tests.rs`) run random partitions, deaths, heals and restarts on
//! simulated time and check: never two masters of one epoch, never two masters at once, epochs
//! only grow, stale commands are refused, no VM runs on two servers, every HA VM runs again once
//! the pool is stable and has room.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
pub use crate::model::{Epoch, HeartbeatState, MemberStatus};

/// The timing of heartbeats and fencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionConfig {
    /// `T`: a member that has not written a heartbeat for this long fences itself.
    pub heartbeat_timeout_ms: u64,
    /// `M`: how much longer the others wait before they declare it dead.
    pub fence_margin_ms: u64,
}

impl ElectionConfig {
    /// `T` and `M`, both more than zero (`InvalidArgument` otherwise).
    pub fn new(heartbeat_timeout_ms: u64, fence_margin_ms: u64) -> crate::Result<ElectionConfig> {
        if heartbeat_timeout_ms == 0 {
            return Err(crate::Error::invalid("heartbeat_timeout_ms", "must be more than zero"));
        }
        if fence_margin_ms == 0 {
            return Err(crate::Error::invalid(
                "fence_margin_ms",
                "must be more than zero: a member is declared dead only after it fenced itself",
            ));
        }
        if heartbeat_timeout_ms.checked_add(fence_margin_ms).is_none() {
            return Err(crate::Error::invalid("fence_margin_ms", "timeout plus margin overflows"));
        }
        Ok(ElectionConfig { heartbeat_timeout_ms, fence_margin_ms })
    }

    /// From a pool's cluster timeout in seconds (Oracle VM's `clusterTimeout`) as `T`, with a
    /// margin of a tenth of it (at least one second).
    pub fn from_cluster_timeout_secs(secs: u32) -> crate::Result<ElectionConfig> {
        let t = u64::from(secs) * 1000;
        ElectionConfig::new(t, (t / 10).max(1000))
    }

    /// `T + M`: how old a member's last heartbeat is when it is declared dead.
    pub fn dead_after_ms(&self) -> u64 {
        self.heartbeat_timeout_ms + self.fence_margin_ms
    }
}

/// Why the shared state refused a member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElectionRefusal {
    /// The server is not a member.
    #[error("{name} is not a member of the cluster")]
    NotMember {
        /// The server.
        name: String,
    },
    /// The server booted again since: this incarnation is over.
    #[error("{name} incarnation {incarnation} is over (the cluster knows incarnation {current})")]
    StaleIncarnation {
        /// The server.
        name: String,
        /// The incarnation that asked.
        incarnation: u64,
        /// The one the cluster knows.
        current: u64,
    },
    /// The member's lease ran out: it must fence itself and join again after its reboot.
    #[error("{name} missed its heartbeats for {silent_ms} ms: it must fence itself")]
    Expired {
        /// The server.
        name: String,
        /// Since its last heartbeat.
        silent_ms: u64,
    },
    /// The master lock is held by a live member.
    #[error("{master} is the master ({epoch})")]
    MasterHeld {
        /// The master.
        master: String,
        /// Its epoch.
        epoch: Epoch,
    },
    /// The VM's lock is held by a member not declared dead.
    #[error("VM {vm} is locked by {holder}")]
    VmLocked {
        /// The VM.
        vm: String,
        /// The member holding its lock.
        holder: String,
    },
}

impl From<ElectionRefusal> for crate::Error {
    fn from(e: ElectionRefusal) -> crate::Error {
        crate::Error::conflict(e.to_string())
    }
}

/// Why a server refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefusal {
    /// The command comes from a former master.
    #[error("the command is stamped with {command}, older than {current}")]
    StaleEpoch {
        /// The command's epoch.
        command: Epoch,
        /// The highest the server has seen.
        current: Epoch,
    },
    /// This server has fenced itself.
    #[error("this server has fenced itself")]
    Fenced,
    /// This server is not the master (or its lease ran out): it cannot stamp a command.
    #[error("this server is not the master")]
    NotMaster,
}

impl From<CommandRefusal> for crate::Error {
    fn from(e: CommandRefusal) -> crate::Error {
        crate::Error::conflict(e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    incarnation: u64,
    last_heartbeat: Timestamp,
    dead: bool,
}

/// A member, by name and incarnation.
type Holder = (String, u64);

/// The state the members of a pool share: heartbeats, the master lock and its epoch, VM locks.
#[derive(Debug, Clone)]
pub struct ClusterLock {
    config: ElectionConfig,
    members: BTreeMap<String, Record>,
    master: Option<Holder>,
    epoch: Epoch,
    vm_locks: BTreeMap<String, Holder>,
}

impl ClusterLock {
    /// An empty cluster at epoch 0.
    pub fn new(config: ElectionConfig) -> ClusterLock {
        ClusterLock {
            config,
            members: BTreeMap::new(),
            master: None,
            epoch: Epoch(0),
            vm_locks: BTreeMap::new(),
        }
    }

    /// The timing.
    pub fn config(&self) -> ElectionConfig {
        self.config
    }

    /// The current epoch (of the last master elected).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The master and its incarnation, while it holds the lock.
    pub fn master(&self) -> Option<(&str, u64)> {
        self.master.as_ref().map(|(n, i)| (n.as_str(), *i))
    }

    /// `name` (incarnation `incarnation`, which grows at every boot) joins at `now`, which counts
    /// as its first heartbeat. A newer incarnation of a member replaces the former, which is dead
    /// at once: its locks are freed. Joining again with the same incarnation is a heartbeat.
    pub fn join(&mut self, name: &str, incarnation: u64, now: Timestamp) -> Result<Epoch, ElectionRefusal> {
        if let Some(r) = self.members.get(name) {
            if incarnation < r.incarnation {
                return Err(ElectionRefusal::StaleIncarnation {
                    name: name.to_owned(),
                    incarnation,
                    current: r.incarnation,
                });
            }
            if incarnation == r.incarnation {
                return self.heartbeat(name, incarnation, now);
            }
            self.free_locks_of(&(name.to_owned(), r.incarnation));
        }
        self.members.insert(name.to_owned(), Record { incarnation, last_heartbeat: now, dead: false });
        Ok(self.epoch)
    }

    /// `name` leaves for good: its master lock and VM locks are released.
    pub fn leave(&mut self, name: &str) {
        if let Some(r) = self.members.remove(name) {
            self.free_locks_of(&(name.to_owned(), r.incarnation));
        }
    }

    /// A heartbeat written at `now`; returns the current epoch, which the member reads with it.
    /// Refused for a former incarnation, a member declared dead, or one whose last heartbeat is
    /// `T` old (it must fence itself).
    pub fn heartbeat(
        &mut self,
        name: &str,
        incarnation: u64,
        now: Timestamp,
    ) -> Result<Epoch, ElectionRefusal> {
        let t = self.config.heartbeat_timeout_ms;
        let r = self.record(name, incarnation)?;
        let silent_ms = now.saturating_sub(r.last_heartbeat);
        if r.dead || silent_ms >= t {
            return Err(ElectionRefusal::Expired { name: name.to_owned(), silent_ms });
        }
        let epoch = self.epoch;
        if let Some(r) = self.members.get_mut(name) {
            r.last_heartbeat = r.last_heartbeat.max(now);
        }
        Ok(epoch)
    }

    /// Declares dead the members whose last heartbeat is `T + M` old at `now`, freeing their
    /// locks; returns them (name, incarnation).
    pub fn expire(&mut self, now: Timestamp) -> Vec<(String, u64)> {
        let dead_after = self.config.dead_after_ms();
        let newly: Vec<Holder> = self
            .members
            .iter()
            .filter(|(_, r)| !r.dead && now.saturating_sub(r.last_heartbeat) >= dead_after)
            .map(|(n, r)| (n.clone(), r.incarnation))
            .collect();
        for h in &newly {
            if let Some(r) = self.members.get_mut(&h.0) {
                r.dead = true;
            }
            self.free_locks_of(h);
        }
        newly
    }

    /// `name` takes the master lock at `now`: free, or held by a member declared dead (as of
    /// `now`, see [`Self::expire`]). It becomes master of the next epoch, which is returned.
    /// Asking again while master returns its epoch. Only a live member (heartbeat younger than
    /// `T`) may take it.
    pub fn try_acquire(
        &mut self,
        name: &str,
        incarnation: u64,
        now: Timestamp,
    ) -> Result<Epoch, ElectionRefusal> {
        self.live(name, incarnation, now)?;
        self.expire(now);
        let me = (name.to_owned(), incarnation);
        match &self.master {
            Some(m) if *m == me => return Ok(self.epoch),
            Some((master, _)) => {
                return Err(ElectionRefusal::MasterHeld { master: master.clone(), epoch: self.epoch })
            }
            None => {}
        }
        self.epoch = Epoch(self.epoch.0 + 1);
        self.master = Some(me);
        Ok(self.epoch)
    }

    /// The master gives the lock up (a graceful handover); another member's release changes
    /// nothing.
    pub fn release(&mut self, name: &str, incarnation: u64) {
        if self.master.as_ref().is_some_and(|(n, i)| n == name && *i == incarnation) {
            self.master = None;
        }
    }

    /// `name` takes the lock of `vm` at `now`, to run it: free, held by itself, or held by a member
    /// declared dead.
    pub fn lock_vm(
        &mut self,
        vm: &str,
        name: &str,
        incarnation: u64,
        now: Timestamp,
    ) -> Result<(), ElectionRefusal> {
        self.live(name, incarnation, now)?;
        self.expire(now);
        let me = (name.to_owned(), incarnation);
        match self.vm_locks.get(vm) {
            Some(h) if *h != me => Err(ElectionRefusal::VmLocked {
                vm: vm.to_owned(),
                holder: format!("{} (boot {})", h.0, h.1),
            }),
            _ => {
                self.vm_locks.insert(vm.to_owned(), me);
                Ok(())
            }
        }
    }

    /// `name` gives up the lock of `vm` (the VM stopped there).
    pub fn unlock_vm(&mut self, vm: &str, name: &str, incarnation: u64) {
        if self.vm_locks.get(vm).is_some_and(|(n, i)| n == name && *i == incarnation) {
            self.vm_locks.remove(vm);
        }
    }

    /// Who holds the lock of `vm`.
    pub fn vm_holder(&self, vm: &str) -> Option<(&str, u64)> {
        self.vm_locks.get(vm).map(|(n, i)| (n.as_str(), *i))
    }

    /// Whether `name` in incarnation `incarnation` is declared dead (or replaced by a later boot,
    /// or gone).
    pub fn is_dead(&self, name: &str, incarnation: u64) -> bool {
        self.members.get(name).is_none_or(|r| r.dead || r.incarnation != incarnation)
    }

    /// The members at `now`, by name.
    pub fn members(&self, now: Timestamp) -> Vec<MemberStatus> {
        self.members
            .iter()
            .map(|(name, r)| MemberStatus {
                name: name.clone(),
                incarnation: r.incarnation,
                last_heartbeat_ms: r.last_heartbeat,
                heartbeat: if r.dead {
                    HeartbeatState::Dead
                } else if now.saturating_sub(r.last_heartbeat) >= self.config.heartbeat_timeout_ms {
                    HeartbeatState::Late
                } else {
                    HeartbeatState::Alive
                },
            })
            .collect()
    }

    fn record(&self, name: &str, incarnation: u64) -> Result<&Record, ElectionRefusal> {
        let r = self.members.get(name).ok_or_else(|| ElectionRefusal::NotMember { name: name.to_owned() })?;
        if r.incarnation != incarnation {
            return Err(ElectionRefusal::StaleIncarnation {
                name: name.to_owned(),
                incarnation,
                current: r.incarnation,
            });
        }
        Ok(r)
    }

    fn live(&self, name: &str, incarnation: u64, now: Timestamp) -> Result<(), ElectionRefusal> {
        let r = self.record(name, incarnation)?;
        let silent_ms = now.saturating_sub(r.last_heartbeat);
        if r.dead || silent_ms >= self.config.heartbeat_timeout_ms {
            return Err(ElectionRefusal::Expired { name: name.to_owned(), silent_ms });
        }
        Ok(())
    }

    fn free_locks_of(&mut self, h: &Holder) {
        if self.master.as_ref() == Some(h) {
            self.master = None;
        }
        self.vm_locks.retain(|_, holder| holder != h);
    }
}

/// What a server must do when it fences itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fencing {
    /// It was master of this epoch: drop the virtual IP and the master services.
    pub was_master: Option<Epoch>,
}

/// One server's own side of the election.
#[derive(Debug, Clone)]
pub struct Node {
    config: ElectionConfig,
    name: String,
    incarnation: u64,
    last_heartbeat_ok: Timestamp,
    highest_epoch: Epoch,
    master_of: Option<Epoch>,
    fenced: bool,
}

impl Node {
    /// `name`, booted for the `incarnation`th time, having joined the cluster at `now` and read
    /// `epoch` there.
    pub fn joined(
        config: ElectionConfig,
        name: &str,
        incarnation: u64,
        now: Timestamp,
        epoch: Epoch,
    ) -> Node {
        Node {
            config,
            name: name.to_owned(),
            incarnation,
            last_heartbeat_ok: now,
            highest_epoch: epoch,
            master_of: None,
            fenced: false,
        }
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its boot.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The highest epoch it has seen.
    pub fn highest_epoch(&self) -> Epoch {
        self.highest_epoch
    }

    /// Whether it has fenced itself.
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// A heartbeat was written at `now`, and the epoch read with it.
    pub fn heartbeat_written(&mut self, now: Timestamp, epoch: Epoch) {
        self.last_heartbeat_ok = self.last_heartbeat_ok.max(now);
        self.observe(epoch);
    }

    /// An epoch learnt otherwise (the epoch record, a command accepted).
    pub fn observe(&mut self, epoch: Epoch) {
        self.highest_epoch = self.highest_epoch.max(epoch);
    }

    /// When it must fence itself unless a heartbeat gets through: `T` after the last.
    pub fn fence_deadline(&self) -> Timestamp {
        self.last_heartbeat_ok.saturating_add(self.config.heartbeat_timeout_ms)
    }

    /// Whether it must fence itself now.
    pub fn must_fence(&self, now: Timestamp) -> bool {
        !self.fenced && now >= self.fence_deadline()
    }

    /// Fences itself: no longer master, accepts no command. The caller drops the virtual IP and
    /// the master services and stops the VMs (a real server reboots).
    pub fn fence(&mut self) -> Fencing {
        self.fenced = true;
        Fencing { was_master: self.master_of.take() }
    }

    /// It took the master lock, for `epoch`.
    pub fn became_master(&mut self, epoch: Epoch) {
        self.observe(epoch);
        self.master_of = Some(epoch);
    }

    /// It handed mastership over (graceful): the caller released the VIP and the lock.
    pub fn stepped_down(&mut self) {
        self.master_of = None;
    }

    /// The epoch it is master of at `now`: none once fenced or past its fence deadline, even
    /// before it has run [`Self::fence`].
    pub fn master_epoch(&self, now: Timestamp) -> Option<Epoch> {
        self.master_of.filter(|_| !self.fenced && now < self.fence_deadline())
    }

    /// The epoch to stamp a command with, as master at `now`.
    pub fn stamp(&self, now: Timestamp) -> Result<Epoch, CommandRefusal> {
        self.master_epoch(now).ok_or(CommandRefusal::NotMaster)
    }

    /// Whether to carry out a command stamped `epoch`: refused when fenced or when older than the
    /// highest epoch seen; a newer epoch becomes the highest seen.
    pub fn accept(&mut self, epoch: Epoch) -> Result<(), CommandRefusal> {
        if self.fenced {
            return Err(CommandRefusal::Fenced);
        }
        if epoch < self.highest_epoch {
            return Err(CommandRefusal::StaleEpoch { command: epoch, current: self.highest_epoch });
        }
        self.highest_epoch = epoch;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
