//! High availability: what happens to the VMs of failed servers, and how many server failures a
//! pool absorbs.
//!
//! [`plan`] decides, for every VM resident on the failed servers of a pool, in order:
//! * the HA-enabled VMs by start priority (highest first; then the largest first, so that memory
//!   free in pieces goes to the VMs that need the most; then by name), each restarted on the
//!   surviving server the pool's start policy prefers among those that can take it — BEST (most
//!   free memory, also for CURRENT_SERVER, whose server is the failed one) or BALANCE (fewest
//!   resident VMs) — counting the VMs restarted before it there, exactly as placement counts
//!   resident VMs ([`super::placement`]);
//! * a surviving server can take a VM when it is running, connected, not in maintenance mode and
//!   has the VirtualMachine role; has the VM's repositories presented (and not failed to mount)
//!   and its LUNs reachable; has a member of every network of the VM's VNICs; can run its domain
//!   type; runs no VM of its anti-affinity group (nor gets one restarted there first); and has the
//!   VM's memory free for guests and offers its maximum memory at all;
//! * an HA-enabled VM no survivor can take is not restarted, with every survivor's reasons
//!   ([`HaReasonKind`]); the VMs that are not HA-enabled are not restarted either
//!   ([`HaReasonKind::NotHaEnabled`]).
//!
//! [`tolerate`] is the failures-to-tolerate planner (XAPI's `ha_compute_max_host_failures_to_tolerate`
//! as a dry run): whether every HA-enabled VM restarts whichever `n` of the pool's running,
//! connected servers fail at once. When the number of combinations of `n` servers is at most
//! [`EXHAUSTIVE_LIMIT`] (256), every combination is planned and the worst kept (most HA VMs not
//! restarted, then most of their memory). Beyond that the planner plans one combination — the `n`
//! servers with the most memory of resident HA-enabled VMs — and checks a memory bound: the HA
//! memory of those `n` servers must fit in the free guest memory of the `servers − n` emptiest
//! servers. Both must hold for the failures to count as tolerated; the answer says it was not
//! exhaustive ([`HaTolerance::exhaustive`]). [`max_failures_tolerated`] is the largest `n` (at most
//! the number of running servers less one: a pool needs a survivor) tolerated together with every
//! smaller one.

use std::collections::HashMap;

use super::placement::{arrays_of, luns_hidden_from, repositories_of, Usage};
use crate::model::{
    AntiAffinityGroup, HaAction, HaDecision, HaPlan, HaReason, HaReasonKind as K, HaTolerance, InInventory,
    Inventory, ManagedObject, MountState, Network, NetworkId, ObjectKind, ObjectRef, PoolId, Server,
    ServerId, ServerPool, ServerPowerState, ServerRole, StartPolicy, Vm, VmId,
};
use crate::{Error, Result};

/// Up to this many combinations of failed servers, [`tolerate`] plans every one.
pub const EXHAUSTIVE_LIMIT: u64 = 256;

/// [`plan_with`] with every running server counted as connected.
pub fn plan(inv: &Inventory, pool: PoolId, failed: &[ServerId]) -> Result<HaPlan> {
    plan_with(inv, pool, failed, |_| true)
}

/// What HA does when the servers `failed` of `pool` fail (see the module's description).
/// `reachable` says which servers the manager can command. `NotFound` if the pool or a failed
/// server does not exist, `InvalidArgument` if a failed server is not in the pool.
pub fn plan_with(
    inv: &Inventory,
    pool: PoolId,
    failed: &[ServerId],
    reachable: impl Fn(ServerId) -> bool,
) -> Result<HaPlan> {
    let p = inv.get::<ServerPool>(pool)?;
    for f in failed {
        let s = inv.get::<Server>(*f)?;
        if !p.servers.contains(f) {
            return Err(Error::invalid("failed", format!("{} is not a server of pool {}", s.name, p.name)));
        }
    }
    let mut usage = Usage::of(inv);
    Ok(plan_in(inv, p, failed, &mut usage, &reachable))
}

fn plan_in(
    inv: &Inventory,
    p: &ServerPool,
    failed: &[ServerId],
    usage: &mut Usage,
    reachable: &dyn Fn(ServerId) -> bool,
) -> HaPlan {
    let mut victims: Vec<&Vm> = inv
        .vms
        .iter()
        .map(|v| &**v)
        .filter(|v| v.power_state.is_resident() && v.server.is_some_and(|s| failed.contains(&s)))
        .collect();
    victims.sort_by(|a, b| {
        let key = |v: &Vm| {
            (
                !v.config.high_availability,
                std::cmp::Reverse(v.config.start_priority),
                std::cmp::Reverse(v.config.memory_mib),
            )
        };
        key(a).cmp(&key(b)).then_with(|| (&a.name, a.id).cmp(&(&b.name, b.id)))
    });
    let survivors: Vec<&Server> = p
        .servers
        .iter()
        .filter(|s| !failed.contains(s))
        .filter_map(|s| inv.get::<Server>(*s).ok().map(|s| &**s))
        .collect();
    let mut restarted: HashMap<VmId, ServerId> = HashMap::new();
    let mut decisions = Vec::with_capacity(victims.len());
    for vm in victims {
        let from = vm.server.unwrap_or_default();
        let mut d = HaDecision {
            vm: vm.id,
            vm_name: vm.name.clone(),
            from,
            high_availability: vm.config.high_availability,
            priority: vm.config.start_priority,
            memory_mib: vm.config.memory_mib,
            action: HaAction::NotRestarted,
            target: None,
            detail: String::new(),
            reasons: Vec::new(),
        };
        if !vm.config.high_availability {
            d.detail = format!("VM {} is not HA-enabled: it stays stopped", vm.name);
            d.reasons.push(HaReason {
                kind: K::NotHaEnabled,
                server: None,
                object: Some(vm.object_ref()),
                detail: d.detail.clone(),
            });
            decisions.push(d);
            continue;
        }
        if survivors.is_empty() || vm.pool != Some(p.id) {
            d.detail = format!("no server of pool {} survives to restart VM {} on", p.name, vm.name);
            d.reasons.push(HaReason {
                kind: K::NoServerLeft,
                server: None,
                object: Some(p.object_ref()),
                detail: d.detail.clone(),
            });
            decisions.push(d);
            continue;
        }
        let peers = peer_servers(inv, vm, failed, &restarted);
        let mut best: Option<(&Server, i64, u64)> = None;
        for s in survivors.iter().copied() {
            let reasons = refusals(inv, usage, vm, s, &peers, reachable);
            if !reasons.is_empty() {
                d.reasons.extend(reasons);
                continue;
            }
            let used = usage.get(s.id);
            let free = s.guest_memory_mib().saturating_sub(used.memory_mib);
            let score = match p.start_policy {
                StartPolicy::BalanceServer => -i64::from(used.resident),
                StartPolicy::BestServer | StartPolicy::CurrentServer => free as i64,
            };
            if best.is_none_or(|(_, b, _)| score > b) {
                best = Some((s, score, free));
            }
        }
        match best {
            Some((s, _, free)) => {
                usage.place(s.id, vm);
                restarted.insert(vm.id, s.id);
                d.action = HaAction::Restart;
                d.target = Some(s.id);
                d.detail = format!(
                    "restart VM {} (priority {}) on {}: start policy {:?}, {free} MiB free for guests, {} \
                     resident VMs before it",
                    vm.name,
                    vm.config.start_priority,
                    s.name,
                    p.start_policy,
                    usage.get(s.id).resident - 1
                );
                d.reasons.clear();
            }
            None => {
                let kinds: Vec<&str> = {
                    let mut k: Vec<K> = d.reasons.iter().map(|r| r.kind).collect();
                    k.sort();
                    k.dedup();
                    k.into_iter().map(|k| k.name()).collect()
                };
                d.detail = format!(
                    "no surviving server can take VM {} ({}): {}",
                    vm.name,
                    kinds.join(", "),
                    d.reasons.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>().join("; ")
                );
            }
        }
        decisions.push(d);
    }
    HaPlan { pool: p.id, failed: failed.to_vec(), decisions }
}

/// The servers the VMs of `vm`'s anti-affinity groups are on after the failure: resident on a
/// server that did not fail, or restarted by this plan.
fn peer_servers<'a>(
    inv: &'a Inventory,
    vm: &Vm,
    failed: &[ServerId],
    restarted: &HashMap<VmId, ServerId>,
) -> Vec<(ServerId, &'a Vm, &'a AntiAffinityGroup)> {
    let mut out = Vec::new();
    for g in AntiAffinityGroup::table(inv)
        .iter()
        .filter(|g| g.vms.contains(&vm.id) || vm.anti_affinity_group == Some(g.id))
    {
        for peer in g.vms.iter().filter(|p| **p != vm.id).filter_map(|p| inv.get::<Vm>(*p).ok()) {
            let on = match restarted.get(&peer.id) {
                Some(s) => Some(*s),
                None => peer.server.filter(|s| peer.power_state.is_resident() && !failed.contains(s)),
            };
            if let Some(s) = on {
                out.push((s, &**peer, &**g));
            }
        }
    }
    out
}

/// Every reason `s` cannot take `vm` (empty if it can). An unavailable server gets that reason only.
fn refusals(
    inv: &Inventory,
    usage: &Usage,
    vm: &Vm,
    s: &Server,
    peers: &[(ServerId, &Vm, &AntiAffinityGroup)],
    reachable: &dyn Fn(ServerId) -> bool,
) -> Vec<HaReason> {
    let mut out = Vec::new();
    let mut refuse = |kind, object: Option<ObjectRef>, detail: String| {
        out.push(HaReason { kind, server: Some(s.id), object, detail });
    };
    let unavailable = if s.power_state != ServerPowerState::Running {
        Some(format!("{} is {}", s.name, s.power_state))
    } else if !reachable(s.id) {
        Some(format!("{} is not connected", s.name))
    } else if s.maintenance_mode {
        Some(format!("{} is in maintenance mode", s.name))
    } else if !s.roles.contains(&ServerRole::VirtualMachine) {
        Some(format!("{} does not have the VirtualMachine role", s.name))
    } else {
        None
    };
    if let Some(why) = unavailable {
        refuse(K::ServerUnavailable, None, why);
        return out;
    }
    for r in repositories_of(inv, vm) {
        let detail = if !r.presented_to.contains(&s.id) {
            format!("repository {} is not presented to {}", r.name, s.name)
        } else if r.mount_on(s.id).is_some_and(|m| m.state == MountState::Failed) {
            format!("{} could not mount repository {}", s.name, r.name)
        } else {
            continue;
        };
        refuse(K::StorageNotPresented, Some(r.object_ref()), detail);
    }
    for a in arrays_of(inv, vm).into_iter().filter(|a| !a.presented_to.contains(&s.id)) {
        refuse(
            K::StorageNotPresented,
            Some(a.object_ref()),
            format!("{} is not logged in to storage array {}", s.name, a.name),
        );
    }
    for d in luns_hidden_from(inv, vm, s.id) {
        refuse(
            K::StorageNotPresented,
            Some(d.object_ref()),
            format!("{} is in no access group presenting LUN {}", s.name, d.name),
        );
    }
    let mut networks: Vec<NetworkId> = vm.config.vnics.iter().filter_map(|n| n.network).collect();
    networks.sort();
    networks.dedup();
    for n in networks {
        let Ok(net) = inv.get::<Network>(n) else { continue };
        if !net.members.iter().any(|m| inv.member_server(*m).is_ok_and(|ms| ms == s.id)) {
            refuse(
                K::NetworkMissing,
                Some(net.object_ref()),
                format!(
                    "network {} has no member on {} (its bridge {} is not there)",
                    net.name, s.name, net.bridge
                ),
            );
        }
    }
    if let Some(why) = s.hardware.virt.and_then(|c| c.cannot_run(vm.config.domain_type)) {
        refuse(
            K::DomainTypeUnsupported,
            None,
            format!("{} cannot run VM {} ({:?}): {why}", s.name, vm.name, vm.config.domain_type),
        );
    }
    for (_, peer, g) in peers.iter().filter(|(on, _, _)| *on == s.id) {
        refuse(
            K::AntiAffinity,
            Some(ObjectRef::new(ObjectKind::Vm, peer.id)),
            format!("VM {} of anti-affinity group {} runs on {}", peer.name, g.name, s.name),
        );
    }
    let guest = s.guest_memory_mib();
    let free = guest.saturating_sub(usage.get(s.id).memory_mib);
    if free < vm.config.memory_mib {
        refuse(
            K::NoCapacity,
            None,
            format!(
                "{} has {free} MiB free for guests, VM {} needs {} MiB",
                s.name, vm.name, vm.config.memory_mib
            ),
        );
    } else if guest < vm.config.max_memory_mib {
        refuse(
            K::NoCapacity,
            None,
            format!(
                "{} offers guests {guest} MiB in all, VM {} may grow to {} MiB",
                s.name, vm.name, vm.config.max_memory_mib
            ),
        );
    }
    out
}

/// [`tolerate_with`] with every running server counted as connected.
pub fn tolerate(inv: &Inventory, pool: PoolId, failures: u32) -> Result<HaTolerance> {
    tolerate_with(inv, pool, failures, |_| true)
}

/// The servers of `pool` that can fail: running and connected.
fn failable(inv: &Inventory, p: &ServerPool, reachable: &dyn Fn(ServerId) -> bool) -> Vec<ServerId> {
    p.servers
        .iter()
        .copied()
        .filter(|s| inv.get::<Server>(*s).is_ok_and(|s| s.power_state == ServerPowerState::Running))
        .filter(|s| reachable(*s))
        .collect()
}

/// Whether `pool` absorbs `failures` of its running, connected servers failing at once (see the
/// module's description). `NotFound` if the pool does not exist, `InvalidArgument` if `failures`
/// exceeds the number of those servers.
pub fn tolerate_with(
    inv: &Inventory,
    pool: PoolId,
    failures: u32,
    reachable: impl Fn(ServerId) -> bool,
) -> Result<HaTolerance> {
    let p = inv.get::<ServerPool>(pool)?;
    let servers = failable(inv, p, &reachable);
    tolerate_in(inv, p, &servers, failures, &reachable)
}

fn tolerate_in(
    inv: &Inventory,
    p: &ServerPool,
    servers: &[ServerId],
    failures: u32,
    reachable: &dyn Fn(ServerId) -> bool,
) -> Result<HaTolerance> {
    let n = servers.len();
    let k = failures as usize;
    if k > n {
        return Err(Error::invalid(
            "failures",
            format!("pool {} has {n} running, connected server(s); {failures} cannot fail", p.name),
        ));
    }
    let mut out = HaTolerance {
        pool: p.id,
        failures,
        tolerated: true,
        exhaustive: true,
        combinations: 0,
        servers_considered: n as u32,
        memory_bound_ok: None,
        worst: None,
    };
    if k == 0 {
        return Ok(out);
    }
    let base = Usage::of(inv);
    let worse = |a: &HaPlan, b: &HaPlan| {
        (a.not_restarted().len(), a.memory_not_restarted_mib())
            > (b.not_restarted().len(), b.memory_not_restarted_mib())
    };
    let count = binomial(n as u64, k as u64);
    if count <= EXHAUSTIVE_LIMIT {
        let mut idx: Vec<usize> = (0..k).collect();
        loop {
            let failed: Vec<ServerId> = idx.iter().map(|i| servers[*i]).collect();
            let plan = plan_in(inv, p, &failed, &mut base.clone(), reachable);
            out.combinations += 1;
            if out.worst.as_ref().is_none_or(|w| worse(&plan, w)) {
                out.worst = Some(plan);
            }
            // The next combination in lexicographic order.
            let Some(i) = (0..k).rev().find(|i| idx[*i] != i + n - k) else { break };
            idx[i] += 1;
            for j in i + 1..k {
                idx[j] = idx[j - 1] + 1;
            }
        }
        out.tolerated = out.worst.as_ref().is_some_and(|w| w.all_ha_restarted());
        return Ok(out);
    }
    // Too many combinations: the most loaded servers, and a memory bound.
    out.exhaustive = false;
    out.combinations = 1;
    let ha_memory = |s: ServerId| -> u64 {
        inv.vms
            .iter()
            .filter(|v| v.config.high_availability && v.power_state.is_resident() && v.server == Some(s))
            .map(|v| v.config.memory_mib)
            .sum()
    };
    let mut by_load: Vec<(u64, usize)> =
        servers.iter().enumerate().map(|(i, s)| (ha_memory(*s), i)).collect();
    by_load.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut failed: Vec<usize> = by_load[..k].iter().map(|(_, i)| *i).collect();
    failed.sort();
    let failed: Vec<ServerId> = failed.iter().map(|i| servers[*i]).collect();
    let plan = plan_in(inv, p, &failed, &mut base.clone(), reachable);
    let load: u64 = by_load[..k].iter().map(|(m, _)| m).sum();
    let mut free: Vec<u64> = servers
        .iter()
        .filter_map(|s| inv.get::<Server>(*s).ok())
        .map(|s| {
            let hosts = !s.maintenance_mode && s.roles.contains(&ServerRole::VirtualMachine);
            if hosts {
                s.guest_memory_mib().saturating_sub(base.get(s.id).memory_mib)
            } else {
                0
            }
        })
        .collect();
    free.sort();
    let room: u64 = free[..n - k].iter().sum();
    let bound = load <= room;
    out.memory_bound_ok = Some(bound);
    out.tolerated = bound && plan.all_ha_restarted();
    out.worst = Some(plan);
    Ok(out)
}

/// The largest number of simultaneous server failures `pool` tolerates, together with every
/// smaller number (at most its running, connected servers less one). `NotFound` if the pool does
/// not exist.
pub fn max_failures_tolerated(inv: &Inventory, pool: PoolId) -> Result<u32> {
    max_failures_tolerated_with(inv, pool, |_| true)
}

/// [`max_failures_tolerated`] with `reachable` saying which servers the manager can command.
pub fn max_failures_tolerated_with(
    inv: &Inventory,
    pool: PoolId,
    reachable: impl Fn(ServerId) -> bool,
) -> Result<u32> {
    let p = inv.get::<ServerPool>(pool)?;
    let servers = failable(inv, p, &reachable);
    let mut tolerated = 0;
    for k in 1..servers.len() as u32 {
        if !tolerate_in(inv, p, &servers, k, &reachable)?.tolerated {
            break;
        }
        tolerated = k;
    }
    Ok(tolerated)
}

/// `n` choose `k`, saturating.
fn binomial(n: u64, k: u64) -> u64 {
    let k = k.min(n - k);
    let mut r: u128 = 1;
    for i in 0..k {
        r = r * u128::from(n - i) / u128::from(i + 1);
        if r > u128::from(u64::MAX) {
            return u64::MAX;
        }
    }
    r as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    struct Fixture {
        inv: Inventory,
        pool: PoolId,
        s: Vec<ServerId>,
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
    fn fixture(memories: &[u64]) -> Fixture {
        let mut inv = Inventory::new();
        let mut pool = ServerPool::new("pool");
        let servers: Vec<Server> =
            memories.iter().enumerate().map(|(i, m)| server(&format!("s{i}"), *m, pool.id)).collect();
        pool.servers = servers.iter().map(|s| s.id).collect();
        let (pid, ids) = (pool.id, pool.servers.clone());
        inv.load(Object::ServerPool(pool));
        for s in servers {
            inv.load(Object::Server(s));
        }
        Fixture { inv, pool: pid, s: ids }
    }

    /// A running VM on server `on` (HA-enabled with `priority`, or not with `None`).
    fn vm(f: &mut Fixture, name: &str, memory_mib: u64, on: usize, priority: Option<u8>) -> VmId {
        let config = VmConfig {
            memory_mib,
            max_memory_mib: memory_mib,
            high_availability: priority.is_some(),
            start_priority: priority.unwrap_or(50),
            ..VmConfig::default()
        };
        let v = Vm {
            id: VmId::new(),
            name: name.into(),
            description: String::new(),
            config,
            repository: None,
            pool: Some(f.pool),
            server: Some(f.s[on]),
            power_state: PowerState::Running,
            domid: Some(1),
            anti_affinity_group: None,
        };
        let id = v.id;
        f.inv.load(Object::Vm(v));
        id
    }

    fn decision(p: &HaPlan, vm: VmId) -> &HaDecision {
        p.decisions.iter().find(|d| d.vm == vm).unwrap()
    }

    #[test]
    fn priority_order_capacity_and_non_ha_vms() {
        let mut f = fixture(&[8192, 4096, 2048]);
        let low = vm(&mut f, "low", 2048, 0, Some(10));
        let high = vm(&mut f, "high", 2048, 0, Some(90));
        let mid = vm(&mut f, "mid", 2048, 0, Some(50));
        let huge = vm(&mut f, "huge", 1024, 0, Some(5));
        let plain = vm(&mut f, "plain", 512, 0, None);
        let p = plan(&f.inv, f.pool, &[f.s[0]]).unwrap();
        let order: Vec<&str> = p.decisions.iter().map(|d| d.vm_name.as_str()).collect();
        assert_eq!(order, ["high", "mid", "low", "huge", "plain"]);
        // 6 GiB free on the survivors: high, mid and low fit (best fit: s1, then s2 and s1 tie at
        // 2 GiB, the first wins), the last HA VM finds nothing.
        assert_eq!(decision(&p, high).target, Some(f.s[1]));
        assert_eq!(decision(&p, mid).target, Some(f.s[1]));
        assert_eq!(decision(&p, low).target, Some(f.s[2]));
        let h = decision(&p, huge);
        assert_eq!(h.action, HaAction::NotRestarted);
        assert_eq!(h.reason_kinds(), vec![HaReasonKind::NoCapacity]);
        assert_eq!(h.reasons.len(), 2, "one reason per survivor: {:?}", h.reasons);
        assert!(h.detail.contains("s1 has 0 MiB free"), "{}", h.detail);
        let n = decision(&p, plain);
        assert_eq!((n.action, n.reason_kinds()), (HaAction::NotRestarted, vec![HaReasonKind::NotHaEnabled]));
        assert_eq!(p.not_restarted().len(), 1, "non-HA VMs do not count");
        assert_eq!(p.restarted().len(), 3);
    }

    #[test]
    fn anti_affinity_counts_resident_and_restarted_peers() {
        let mut f = fixture(&[8192, 8192, 8192, 8192]);
        let a = vm(&mut f, "a", 512, 0, Some(50));
        let b = vm(&mut f, "b", 512, 0, Some(40));
        let c = vm(&mut f, "c", 512, 1, Some(40));
        let d = vm(&mut f, "d", 512, 0, Some(30));
        let g = AntiAffinityGroup {
            id: AntiAffinityGroupId::new(),
            name: "g".into(),
            description: String::new(),
            pool: f.pool,
            vms: vec![a, b, c, d],
        };
        f.inv.load(Object::AntiAffinityGroup(g));
        let p = plan(&f.inv, f.pool, &[f.s[0]]).unwrap();
        // c runs on s1; a goes to s2, b to s3, d nowhere.
        assert_eq!(decision(&p, a).target, Some(f.s[2]));
        assert_eq!(decision(&p, b).target, Some(f.s[3]));
        let dd = decision(&p, d);
        assert_eq!(dd.reason_kinds(), vec![HaReasonKind::AntiAffinity]);
        assert_eq!(dd.reasons.len(), 3);
    }

    #[test]
    fn unavailable_servers_and_bad_input() {
        let mut f = fixture(&[4096, 4096, 4096]);
        let a = vm(&mut f, "a", 1024, 0, Some(50));
        let mut s1 = (**f.inv.get::<Server>(f.s[1]).unwrap()).clone();
        s1.maintenance_mode = true;
        f.inv.load(Object::Server(s1));
        let s2 = f.s[2];
        let p = plan_with(&f.inv, f.pool, &[f.s[0]], |s| s != s2).unwrap();
        let d = decision(&p, a);
        assert_eq!(d.reason_kinds(), vec![HaReasonKind::ServerUnavailable]);
        assert!(d.detail.contains("s1 is in maintenance mode") && d.detail.contains("s2 is not connected"));
        let all = plan(&f.inv, f.pool, &f.s).unwrap();
        assert_eq!(decision(&all, a).reason_kinds(), vec![HaReasonKind::NoServerLeft]);
        assert_eq!(plan(&f.inv, PoolId::new(), &[]).unwrap_err().kind(), crate::ErrorKind::NotFound);
        let other = server("other", 1024, PoolId::new());
        let oid = other.id;
        f.inv.load(Object::Server(other));
        assert_eq!(plan(&f.inv, f.pool, &[oid]).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(tolerate(&f.inv, f.pool, 4).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }

    #[test]
    fn three_servers_tolerate_one_failure_not_two() {
        let mut f = fixture(&[4096, 4096, 4096]);
        for i in 0..3 {
            vm(&mut f, &format!("v{i}"), 1536, i, Some(50));
        }
        let one = tolerate(&f.inv, f.pool, 1).unwrap();
        assert!(one.tolerated && one.exhaustive);
        assert_eq!(one.combinations, 3);
        let two = tolerate(&f.inv, f.pool, 2).unwrap();
        assert!(!two.tolerated);
        assert_eq!(two.combinations, 3);
        assert_eq!(two.not_restarted().len(), 1, "the survivor takes one of the two");
        assert_eq!(max_failures_tolerated(&f.inv, f.pool).unwrap(), 1);
        let none = tolerate(&f.inv, f.pool, 0).unwrap();
        assert!(none.tolerated && none.worst.is_none());
        // Lighter VMs: any two servers may fail.
        let mut g = fixture(&[4096, 4096, 4096]);
        for i in 0..3 {
            vm(&mut g, &format!("v{i}"), 1024, i, Some(50));
        }
        assert_eq!(max_failures_tolerated(&g.inv, g.pool).unwrap(), 2);
    }

    #[test]
    fn many_servers_use_the_heaviest_and_a_memory_bound() {
        let mut f = fixture(&[4096; 12]);
        for i in 0..12 {
            vm(&mut f, &format!("v{i}"), 1024 * (1 + (i as u64 % 3)), i, Some(50));
        }
        // C(12, 3) = 220: exhaustive; C(12, 4) = 495: not.
        let three = tolerate(&f.inv, f.pool, 3).unwrap();
        assert!(three.exhaustive);
        assert_eq!(three.combinations, 220);
        let four = tolerate(&f.inv, f.pool, 4).unwrap();
        assert!(!four.exhaustive);
        assert_eq!(four.memory_bound_ok, Some(true));
        let worst = four.worst.as_ref().unwrap();
        assert_eq!(worst.failed.len(), 4);
        for s in &worst.failed {
            let i = f.s.iter().position(|x| x == s).unwrap();
            assert_eq!(i % 3, 2, "the servers with 3 GiB of HA VMs fail");
        }
        assert_eq!(four.tolerated, worst.all_ha_restarted());
        assert_eq!(binomial(12, 4), 495);
        assert_eq!(binomial(200, 100), u64::MAX);
    }
}
