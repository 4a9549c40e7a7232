//! Start placement: the server a VM should start or move on.
//!
//! The rules, in the order they are checked for each candidate (the servers of the VM's pool, or the
//! VM's own server for a VM outside any pool): the caller's filter (say, "not the failed server"),
//! running and reachable, not in maintenance mode, carrying the VirtualMachine role, no VM of the
//! same anti-affinity group resident there, and memory: the VM's memory fits in what the server has
//! free for guests and its maximum memory within what the server offers guests at all. Among the
//! servers left, the pool's start policy picks: BEST (most free memory, the default), BALANCE
//! (fewest resident VMs) or CURRENT_SERVER (the VM's current server when it qualifies).
//!
//! What is used on each server is computed once per inventory snapshot in one pass over the VMs
//! ([`Usage::of`]), and kept up to date by the caller while it plans several placements in a row
//! ([`Usage::place`], [`Usage::remove`]), so placing one VM costs O(servers in the pool), not
//! O(servers × VMs).

use std::collections::HashMap;

use crate::model::{
    AccessGroup, AntiAffinityGroup, DiskTarget, InInventory, Inventory, ManagedObject, MountState,
    PhysicalDisk, Repository, RepositoryId, Server, ServerId, ServerPool, ServerPowerState, ServerRole,
    StartPolicy, StorageArray, StorageArrayId, VirtualCdrom, VirtualDisk, Vm,
};
use crate::{Error, Result};

/// What resident VMs use on one server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerUse {
    /// Memory of the resident VMs, MiB.
    pub memory_mib: u64,
    /// How many VMs are resident.
    pub resident: u32,
}

/// What resident VMs use on every server of an inventory snapshot.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    by_server: HashMap<ServerId, ServerUse>,
}

impl Usage {
    /// Usage in `inv`: one pass over its VMs.
    pub fn of(inv: &Inventory) -> Usage {
        let mut u = Usage::default();
        for vm in inv.vms.iter().filter(|v| v.power_state.is_resident()) {
            if let Some(s) = vm.server {
                u.place(s, vm);
            }
        }
        u
    }

    /// What is used on `server`.
    pub fn get(&self, server: ServerId) -> ServerUse {
        self.by_server.get(&server).copied().unwrap_or_default()
    }

    /// Count `vm` as resident on `server` (a placement the caller decided).
    pub fn place(&mut self, server: ServerId, vm: &Vm) {
        let e = self.by_server.entry(server).or_default();
        e.memory_mib += vm.config.memory_mib;
        e.resident += 1;
    }

    /// Stop counting `vm` on `server` (it stopped or moved away).
    pub fn remove(&mut self, server: ServerId, vm: &Vm) {
        if let Some(e) = self.by_server.get_mut(&server) {
            e.memory_mib = e.memory_mib.saturating_sub(vm.config.memory_mib);
            e.resident = e.resident.saturating_sub(1);
        }
    }
}

/// The repositories whose files a VM runs from: its own (its configuration file) and those of its
/// virtual disks and ISOs.
pub fn repositories_of<'a>(inv: &'a Inventory, vm: &Vm) -> Vec<&'a Repository> {
    let mut ids: Vec<RepositoryId> = vm.repository.into_iter().collect();
    for d in &vm.config.disks {
        match d.target {
            DiskTarget::VirtualDisk(id) => ids.extend(inv.get::<VirtualDisk>(id).ok().map(|d| d.repository)),
            DiskTarget::Cdrom(id) => ids.extend(inv.get::<VirtualCdrom>(id).ok().map(|c| c.repository)),
            DiskTarget::EmptyCdrom | DiskTarget::PhysicalDisk(_) => {}
        }
    }
    ids.sort();
    ids.dedup();
    ids.iter().filter_map(|r| inv.get::<Repository>(*r).ok().map(|r| &**r)).collect()
}

/// The storage arrays whose LUNs a VM has attached.
pub fn arrays_of<'a>(inv: &'a Inventory, vm: &Vm) -> Vec<&'a StorageArray> {
    let mut ids: Vec<StorageArrayId> = vm
        .config
        .disks
        .iter()
        .filter_map(|d| match d.target {
            DiskTarget::PhysicalDisk(id) => inv.get::<PhysicalDisk>(id).ok().and_then(|p| p.array),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids.iter().filter_map(|a| inv.get::<StorageArray>(*a).ok().map(|a| &**a)).collect()
}

/// The LUNs of vendor-style arrays a VM has attached that `server` is not presented: a vendor
/// array shows a server only the LUNs presented to an access group it is in.
pub fn luns_hidden_from<'a>(inv: &'a Inventory, vm: &Vm, server: ServerId) -> Vec<&'a PhysicalDisk> {
    vm.config
        .disks
        .iter()
        .filter_map(|d| match d.target {
            DiskTarget::PhysicalDisk(id) => inv.get::<PhysicalDisk>(id).ok().map(|p| &**p),
            _ => None,
        })
        .filter(|p| {
            p.array.and_then(|a| inv.get::<StorageArray>(a).ok()).is_some_and(|a| a.can_create_luns())
                && !AccessGroup::table(inv)
                    .iter()
                    .any(|g| g.disks.contains(&p.id) && g.servers.contains(&server))
        })
        .collect()
}

/// Pick the server `vm` should run on. `allow` is the operation's filter (servers it rejects are
/// skipped without a reason, say the server a VM is leaving); `reachable` says which servers the
/// manager can command now. Fails with [`Error::InsufficientResources`] listing why each candidate
/// was refused.
pub fn pick(
    inv: &Inventory,
    usage: &Usage,
    vm: &Vm,
    allow: impl Fn(ServerId) -> bool,
    reachable: impl Fn(ServerId) -> bool,
) -> Result<ServerId> {
    let pool = match vm.pool {
        Some(p) => Some(inv.get::<ServerPool>(p)?),
        None => None,
    };
    let candidates: Vec<&Server> = match pool {
        Some(p) => p.servers.iter().filter_map(|s| inv.get::<Server>(*s).ok().map(|s| &**s)).collect(),
        None => vm.server.and_then(|s| inv.get::<Server>(s).ok()).map(|s| &**s).into_iter().collect(),
    };
    let policy = pool.map(|p| p.start_policy);
    let group_peers: Vec<ServerId> = vm
        .anti_affinity_group
        .and_then(|g| inv.get::<AntiAffinityGroup>(g).ok())
        .map(|g| {
            g.vms
                .iter()
                .filter(|v| **v != vm.id)
                .filter_map(|v| inv.get::<Vm>(*v).ok())
                .filter(|v| v.power_state.is_resident())
                .filter_map(|v| v.server)
                .collect()
        })
        .unwrap_or_default();
    let repositories = repositories_of(inv, vm);
    let arrays = arrays_of(inv, vm);
    let mut best: Option<(ServerId, i64)> = None;
    let mut reasons = Vec::new();
    for s in candidates {
        if !allow(s.id) {
            continue;
        }
        if let Some(r) = repositories.iter().find(|r| !r.presented_to.contains(&s.id)) {
            reasons.push(format!("{} does not have repository {} presented", s.name, r.name));
            continue;
        }
        if let Some(a) = arrays.iter().find(|a| !a.presented_to.contains(&s.id)) {
            reasons.push(format!("{} is not logged in to storage array {}", s.name, a.name));
            continue;
        }
        if let Some(d) = luns_hidden_from(inv, vm, s.id).first() {
            reasons.push(format!("{} is in no access group presenting LUN {}", s.name, d.name));
            continue;
        }
        if let Some(r) =
            repositories.iter().find(|r| r.mount_on(s.id).is_some_and(|m| m.state == MountState::Failed))
        {
            reasons.push(format!("{} could not mount repository {}", s.name, r.name));
            continue;
        }
        if s.power_state != ServerPowerState::Running {
            reasons.push(format!("{} is {}", s.name, s.power_state));
            continue;
        }
        if !reachable(s.id) {
            reasons.push(format!("{} is not connected", s.name));
            continue;
        }
        if s.maintenance_mode {
            reasons.push(format!("{} is in maintenance mode", s.name));
            continue;
        }
        if !s.roles.contains(&ServerRole::VirtualMachine) {
            continue;
        }
        if group_peers.contains(&s.id) {
            reasons.push(format!("{} runs a VM of the same anti-affinity group", s.name));
            continue;
        }
        let used = usage.get(s.id);
        // The VM's own memory does not count against the server it is resident on (a migration
        // or restart onto the same server).
        let own =
            if vm.server == Some(s.id) && vm.power_state.is_resident() { vm.config.memory_mib } else { 0 };
        let free = s.guest_memory_mib().saturating_sub(used.memory_mib.saturating_sub(own));
        if free < vm.config.memory_mib || s.guest_memory_mib() < vm.config.max_memory_mib {
            reasons.push(format!("{} has {free} MiB free", s.name));
            continue;
        }
        let score = match policy {
            Some(StartPolicy::CurrentServer) if vm.server == Some(s.id) => i64::MAX,
            Some(StartPolicy::BalanceServer) => -i64::from(used.resident),
            _ => free as i64,
        };
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((s.id, score));
        }
    }
    best.map(|(s, _)| s).ok_or_else(|| Error::InsufficientResources {
        object: vm.object_ref(),
        resource: format!(
            "a server to run it ({})",
            if reasons.is_empty() { "no candidate servers".to_owned() } else { reasons.join("; ") }
        ),
        needed: vm.config.memory_mib,
        available: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    struct Fixture {
        inv: Inventory,
        pool: PoolId,
        servers: Vec<ServerId>,
    }

    fn server(name: &str, memory_mib: u64, pool: PoolId) -> Server {
        Server {
            id: ServerId::new(),
            name: name.into(),
            description: String::new(),
            address: format!("sim://{name}"),
            hardware: HostHardware {
                cpus: 8,
                memory_mib,
                xen_version: "4.17".into(),
                ports: vec![],
                hvm_capable: true,
                virt: None,
                cpu: None,
                toolstack: String::new(),
            },
            roles: vec![ServerRole::VirtualMachine],
            maintenance_mode: false,
            ownership: Ownership::Owned,
            power_state: ServerPowerState::Running,
            pool: Some(pool),
            ports: vec![],
            wol_mac: None,
            out_of_band: None,
            dom0_memory_mib: 0,
        }
    }

    /// A pool of servers with these guest memories (MiB).
    fn fixture(memories: &[u64], policy: StartPolicy) -> Fixture {
        let mut inv = Inventory::new();
        let mut pool = ServerPool::new("pool");
        pool.start_policy = policy;
        let servers: Vec<Server> =
            memories.iter().enumerate().map(|(i, m)| server(&format!("s{i}"), *m, pool.id)).collect();
        pool.servers = servers.iter().map(|s| s.id).collect();
        let ids = pool.servers.clone();
        let pid = pool.id;
        inv.load(Object::ServerPool(pool));
        for s in servers {
            inv.load(Object::Server(s));
        }
        Fixture { inv, pool: pid, servers: ids }
    }

    fn vm(f: &Fixture, memory_mib: u64, on: Option<usize>) -> Vm {
        let config = VmConfig { memory_mib, max_memory_mib: memory_mib, ..VmConfig::default() };
        Vm {
            id: VmId::new(),
            name: format!("vm-{}", uuid::Uuid::new_v4().simple()),
            description: String::new(),
            config,
            repository: None,
            pool: Some(f.pool),
            server: on.map(|i| f.servers[i]),
            power_state: if on.is_some() { PowerState::Running } else { PowerState::Stopped },
            domid: None,
            anti_affinity_group: None,
        }
    }

    fn add(f: &mut Fixture, v: Vm) -> Vm {
        f.inv.load(Object::Vm(v.clone()));
        v
    }

    fn pick_in(f: &Fixture, v: &Vm) -> Result<ServerId> {
        pick(&f.inv, &Usage::of(&f.inv), v, |_| true, |_| true)
    }

    #[test]
    fn best_picks_the_most_free_memory() {
        let mut f = fixture(&[4096, 8192, 8192], StartPolicy::BestServer);
        let big = vm(&f, 2048, Some(1));
        add(&mut f, big);
        let v = vm(&f, 1024, None);
        assert_eq!(pick_in(&f, &v).unwrap(), f.servers[2]);
    }

    #[test]
    fn balance_picks_the_fewest_resident_vms() {
        let mut f = fixture(&[4096, 65536], StartPolicy::BalanceServer);
        for _ in 0..3 {
            let v = vm(&f, 256, Some(1));
            add(&mut f, v);
        }
        let v = vm(&f, 256, None);
        assert_eq!(pick_in(&f, &v).unwrap(), f.servers[0], "fewer VMs beats more memory");
    }

    #[test]
    fn current_server_keeps_the_vm_where_it_is_when_it_fits() {
        let f = fixture(&[4096, 65536], StartPolicy::CurrentServer);
        let mut v = vm(&f, 1024, None);
        v.server = Some(f.servers[0]);
        assert_eq!(pick_in(&f, &v).unwrap(), f.servers[0]);
    }

    #[test]
    fn refusals_are_listed_and_nothing_fits_is_insufficient_resources() {
        let mut f = fixture(&[2048, 2048, 2048], StartPolicy::BestServer);
        let s0 = f.servers[0];
        let s1 = f.servers[1];
        edit_server(&mut f.inv, s0, |s| s.maintenance_mode = true);
        edit_server(&mut f.inv, s1, |s| s.power_state = ServerPowerState::Stopped);
        let hog = vm(&f, 1536, Some(2));
        add(&mut f, hog);
        let v = vm(&f, 1024, None);
        let err = pick_in(&f, &v).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), crate::ErrorKind::InsufficientResources);
        assert!(text.contains("s0 is in maintenance mode"), "{text}");
        assert!(text.contains("s1 is Stopped"), "{text}");
        assert!(text.contains("s2 has 512 MiB free"), "{text}");
    }

    #[test]
    fn a_resident_vm_does_not_count_against_its_own_server() {
        let mut f = fixture(&[2048], StartPolicy::BestServer);
        let v = vm(&f, 1536, Some(0));
        let v = add(&mut f, v);
        assert_eq!(pick_in(&f, &v).unwrap(), f.servers[0]);
    }

    #[test]
    fn anti_affinity_keeps_group_members_apart_and_the_filter_is_obeyed() {
        let mut f = fixture(&[8192, 8192], StartPolicy::BestServer);
        let a = vm(&f, 512, Some(0));
        let mut b = vm(&f, 512, None);
        let group = AntiAffinityGroup {
            id: AntiAffinityGroupId::new(),
            name: "g".into(),
            description: String::new(),
            pool: f.pool,
            vms: vec![a.id, b.id],
        };
        b.anti_affinity_group = Some(group.id);
        let mut a = a;
        a.anti_affinity_group = Some(group.id);
        add(&mut f, a);
        f.inv.load(Object::AntiAffinityGroup(group));
        assert_eq!(pick_in(&f, &b).unwrap(), f.servers[1]);
        let s1 = f.servers[1];
        let err = pick(&f.inv, &Usage::of(&f.inv), &b, |s| s != s1, |_| true).unwrap_err();
        assert!(err.to_string().contains("anti-affinity"), "{err}");
    }

    #[test]
    fn usage_is_kept_up_to_date_while_planning_several_placements() {
        let f = fixture(&[4096, 4096], StartPolicy::BestServer);
        let mut usage = Usage::of(&f.inv);
        let mut placed = Vec::new();
        for _ in 0..4 {
            let v = vm(&f, 1024, None);
            let s = pick(&f.inv, &usage, &v, |_| true, |_| true).unwrap();
            usage.place(s, &v);
            placed.push((s, v));
        }
        // Best-fit alternates and fills both servers evenly; a fifth and sixth still fit, a ninth not.
        assert_eq!(usage.get(f.servers[0]), ServerUse { memory_mib: 2048, resident: 2 });
        assert_eq!(usage.get(f.servers[1]), ServerUse { memory_mib: 2048, resident: 2 });
        let (s, v) = placed.pop().unwrap();
        usage.remove(s, &v);
        assert_eq!(usage.get(s).resident, 1);
        for _ in 0..5 {
            let v = vm(&f, 1024, None);
            let s = pick(&f.inv, &usage, &v, |_| true, |_| true).unwrap();
            usage.place(s, &v);
        }
        let v = vm(&f, 1024, None);
        assert!(pick(&f.inv, &usage, &v, |_| true, |_| true).is_err(), "8 GiB used of 8");
    }

    fn edit_server(inv: &mut Inventory, id: ServerId, f: impl FnOnce(&mut Server)) {
        let mut s = (**inv.get::<Server>(id).unwrap()).clone();
        f(&mut s);
        inv.load(Object::Server(s));
    }
}
