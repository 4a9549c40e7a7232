//! Migration pre-checks: every reason a VM cannot migrate to a server, all at once (XAPI's
//! `assert_can_migrate`).
//!
//! [`blockers`] checks, for any VM:
//! * its state: a running VM migrates live, a stopped one moves; no other state moves;
//! * the target: not the VM's own server, a server of the VM's pool, not in maintenance mode,
//!   with the VirtualMachine role;
//! * storage: each repository holding the VM's files presented to the target and not failed
//!   there; each attached LUN's array logged in to from the target, and a vendor array's LUN
//!   presented to an access group the target is in;
//! * networks: each network of the VM's VNICs has a member on the target (its bridge is there);
//! * the target's hypervisor can run the VM's domain type;
//!
//! and, for a running VM (a live migration), also:
//! * the target is running and connected, and has the VM's memory free for guests (the memory of
//!   the VMs resident there counted as placement counts it) and offers its maximum memory at all;
//! * the target's CPU is of the source's vendor and has every feature of the source's CPU;
//! * both hypervisors are the same release (major.minor) with the same toolstack;
//! * no VM of an anti-affinity group of the VM runs on the target;
//! * the source's hypervisor can live-migrate the VM's domain type (log-dirty mode: shadow
//!   paging for PV guests, HAP or shadow for HVM and PVH guests) — unless the migration is a cold
//!   move ([`MigrationMode::Cold`]), which saves the paused domain and needs none.
//!
//! Facts a server did not report (a record from an earlier ovm: no capabilities, no CPU features,
//! no toolstack) are not held against it; the next refresh of the server fills them in.

use std::collections::BTreeSet;

use super::placement::{arrays_of, luns_hidden_from, repositories_of, Usage};
use crate::model::{
    AntiAffinityGroup, InInventory, Inventory, ManagedObject, MigrationBlocker, MigrationBlockerKind as K,
    MigrationMode, MountState, Network, NetworkId, ObjectKind, ObjectRef, PowerState, Server, ServerId,
    ServerPowerState, ServerRole, Vm,
};
use crate::Result;

/// At most this many missing CPU features are named in a blocker's detail.
const FEATURES_NAMED: usize = 8;

/// Every reason `vm` cannot migrate to `target` now, in a stable order; empty if it can.
/// `usage` is what resident VMs use ([`Usage::of`] the same inventory), `reachable` says which
/// servers the manager can command now. Fails only with `NotFound` if `target` does not exist.
pub fn blockers(
    inv: &Inventory,
    usage: &Usage,
    vm: &Vm,
    target: ServerId,
    mode: MigrationMode,
    reachable: impl Fn(ServerId) -> bool,
) -> Result<Vec<MigrationBlocker>> {
    let t: &Server = inv.get::<Server>(target)?;
    let tref = Some(t.object_ref());
    let mut out = Vec::new();
    let mut block = |kind, object: Option<ObjectRef>, detail: String| {
        out.push(MigrationBlocker::new(kind, object, detail));
    };
    let live = vm.power_state == PowerState::Running;
    if !matches!(vm.power_state, PowerState::Running | PowerState::Stopped) {
        block(
            K::VmState,
            Some(vm.object_ref()),
            format!(
                "VM {} is {}: a running VM migrates live and a stopped one moves, nothing else",
                vm.name, vm.power_state
            ),
        );
    }
    if vm.server == Some(target) {
        block(K::SameServer, tref, format!("VM {} is already on {}", vm.name, t.name));
    }
    match vm.pool {
        None => block(
            K::OtherPool,
            tref,
            format!("VM {} is in no server pool; VMs migrate between servers of their pool", vm.name),
        ),
        Some(p) if t.pool != Some(p) => {
            block(K::OtherPool, tref, format!("{} is not a server of the pool of VM {}", t.name, vm.name))
        }
        Some(_) => {}
    }
    if t.maintenance_mode {
        block(K::TargetInMaintenance, tref, format!("{} is in maintenance mode", t.name));
    }
    if !t.roles.contains(&ServerRole::VirtualMachine) {
        block(K::TargetNotForVms, tref, format!("{} does not have the VirtualMachine role", t.name));
    }
    for r in repositories_of(inv, vm) {
        let detail = if !r.presented_to.contains(&target) {
            format!("repository {} is not presented to {}", r.name, t.name)
        } else if r.mount_on(target).is_some_and(|m| m.state == MountState::Failed) {
            format!("{} could not mount repository {}", t.name, r.name)
        } else {
            continue;
        };
        block(K::RepositoryUnavailable, Some(r.object_ref()), detail);
    }
    for a in arrays_of(inv, vm).into_iter().filter(|a| !a.presented_to.contains(&target)) {
        block(
            K::LunUnavailable,
            Some(a.object_ref()),
            format!(
                "{} is not logged in to storage array {}, which has LUNs of VM {}",
                t.name, a.name, vm.name
            ),
        );
    }
    for d in luns_hidden_from(inv, vm, target) {
        block(
            K::LunUnavailable,
            Some(d.object_ref()),
            format!("{} is in no access group presenting LUN {}", t.name, d.name),
        );
    }
    let networks: BTreeSet<NetworkId> = vm.config.vnics.iter().filter_map(|n| n.network).collect();
    for n in networks {
        let net = inv.get::<Network>(n)?;
        let mut on_target = false;
        for m in &net.members {
            on_target |= inv.member_server(*m)? == target;
        }
        if !on_target {
            block(
                K::NetworkMissing,
                Some(net.object_ref()),
                format!(
                    "network {} of VM {} has no member on {} (its bridge {} is not there)",
                    net.name, vm.name, t.name, net.bridge
                ),
            );
        }
    }
    if let Some(why) = t.hardware.virt.and_then(|c| c.cannot_run(vm.config.domain_type)) {
        block(
            K::DomainTypeUnsupported,
            tref,
            format!("{} cannot run VM {} ({:?}): {why}", t.name, vm.name, vm.config.domain_type),
        );
    }
    if !live {
        return Ok(out);
    }
    if t.power_state != ServerPowerState::Running {
        block(K::TargetUnavailable, tref, format!("{} is {}", t.name, t.power_state));
    } else if !reachable(target) {
        block(K::TargetUnavailable, tref, format!("the manager is not connected to {}", t.name));
    }
    let used = usage.get(target);
    let own = if vm.server == Some(target) { vm.config.memory_mib } else { 0 };
    let guest = t.guest_memory_mib();
    let free = guest.saturating_sub(used.memory_mib.saturating_sub(own));
    if free < vm.config.memory_mib {
        block(
            K::InsufficientMemory,
            tref,
            format!(
                "VM {} needs {} MiB, {} has {free} MiB free for guests",
                vm.name, vm.config.memory_mib, t.name
            ),
        );
    } else if guest < vm.config.max_memory_mib {
        block(
            K::InsufficientMemory,
            tref,
            format!(
                "VM {} may grow to {} MiB, {} offers guests {guest} MiB in all",
                vm.name, vm.config.max_memory_mib, t.name
            ),
        );
    }
    let source = vm.server.filter(|s| *s != target).and_then(|s| inv.get::<Server>(s).ok());
    if let Some(s) = source {
        source_checks(s, t, vm, mode, &mut block);
    }
    for g in AntiAffinityGroup::table(inv)
        .iter()
        .filter(|g| g.vms.contains(&vm.id) || vm.anti_affinity_group == Some(g.id))
    {
        for peer in g.vms.iter().filter(|p| **p != vm.id).filter_map(|p| inv.get::<Vm>(*p).ok()) {
            if peer.power_state.is_resident() && peer.server == Some(target) {
                block(
                    K::AntiAffinity,
                    Some(ObjectRef::new(ObjectKind::Vm, peer.id)),
                    format!(
                        "VM {} of anti-affinity group {} with VM {} runs on {}",
                        peer.name, g.name, vm.name, t.name
                    ),
                );
            }
        }
    }
    Ok(out)
}

/// What a live migration needs of the source and target together: the CPU, the hypervisor release
/// and toolstack, and log-dirty support on the source.
fn source_checks(
    s: &Server,
    t: &Server,
    vm: &Vm,
    mode: MigrationMode,
    block: &mut impl FnMut(K, Option<ObjectRef>, String),
) {
    let (sh, th) = (&s.hardware, &t.hardware);
    let tref = Some(t.object_ref());
    if let (Some(sc), Some(tc)) = (&sh.cpu, &th.cpu) {
        if !sc.vendor.is_empty() && !tc.vendor.is_empty() && sc.vendor != tc.vendor {
            block(
                K::CpuIncompatible,
                tref,
                format!("{}'s CPU is {}, {}'s is {}", s.name, sc.vendor, t.name, tc.vendor),
            );
        }
        let missing = sc.missing_from(tc);
        if !missing.is_empty() {
            let named: Vec<String> =
                missing.iter().take(FEATURES_NAMED).map(|f| format!("{}*32+{}", f / 32, f % 32)).collect();
            let more = missing.len().saturating_sub(FEATURES_NAMED);
            block(
                K::CpuIncompatible,
                tref,
                format!(
                    "{}'s CPU lacks {} feature(s) of {}'s: {}{}",
                    t.name,
                    missing.len(),
                    s.name,
                    named.join(", "),
                    if more > 0 { format!(" and {more} more") } else { String::new() }
                ),
            );
        }
    }
    let release_differs = match (sh.xen_release(), th.xen_release()) {
        (Some(a), Some(b)) => a != b,
        _ => sh.xen_version != th.xen_version,
    };
    if release_differs {
        block(
            K::XenVersionMismatch,
            tref,
            format!("{} runs Xen {}, {} runs Xen {}", s.name, sh.xen_version, t.name, th.xen_version),
        );
    }
    if !sh.toolstack.is_empty() && !th.toolstack.is_empty() && sh.toolstack != th.toolstack {
        block(
            K::ToolstackMismatch,
            tref,
            format!("{} uses toolstack {}, {} uses {}", s.name, sh.toolstack, t.name, th.toolstack),
        );
    }
    let live = mode == MigrationMode::Live;
    if let Some(why) = sh.virt.filter(|_| live).and_then(|c| c.cannot_live_migrate(vm.config.domain_type)) {
        block(
            K::LiveMigrationUnsupported,
            Some(s.object_ref()),
            format!("{} cannot live-migrate VM {} ({:?}): {why}", s.name, vm.name, vm.config.domain_type),
        );
    }
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

    fn hardware() -> HostHardware {
        HostHardware {
            cpus: 8,
            memory_mib: 8192,
            xen_version: "4.17.3".into(),
            ports: vec![],
            hvm_capable: true,
            virt: Some(VirtCapabilities::ALL),
            cpu: Some(HostCpu { vendor: "GenuineIntel".into(), features: vec![0xff, 0x0f] }),
            toolstack: "xl".into(),
        }
    }

    fn server(name: &str, pool: PoolId) -> Server {
        Server {
            id: ServerId::new(),
            name: name.into(),
            description: String::new(),
            address: format!("sim://{name}"),
            hardware: hardware(),
            roles: vec![ServerRole::VirtualMachine],
            maintenance_mode: false,
            ownership: Ownership::Owned,
            power_state: ServerPowerState::Running,
            pool: Some(pool),
            ports: vec![],
            wol_mac: None,
            out_of_band: None,
            dom0_memory_mib: 1024,
        }
    }

    /// A pool of three servers with 7 GiB for guests each.
    fn fixture() -> Fixture {
        let mut inv = Inventory::new();
        let mut pool = ServerPool::new("pool");
        let servers: Vec<Server> = (0..3).map(|i| server(&format!("s{i}"), pool.id)).collect();
        pool.servers = servers.iter().map(|s| s.id).collect();
        let (pid, ids) = (pool.id, pool.servers.clone());
        inv.load(Object::ServerPool(pool));
        for s in servers {
            inv.load(Object::Server(s));
        }
        Fixture { inv, pool: pid, s: ids }
    }

    fn vm(f: &Fixture, memory_mib: u64, on: Option<usize>) -> Vm {
        Vm {
            id: VmId::new(),
            name: format!("vm{memory_mib}"),
            description: String::new(),
            config: VmConfig { memory_mib, max_memory_mib: memory_mib, ..VmConfig::default() },
            repository: None,
            pool: Some(f.pool),
            server: on.map(|i| f.s[i]),
            power_state: if on.is_some() { PowerState::Running } else { PowerState::Stopped },
            domid: None,
            anti_affinity_group: None,
        }
    }

    fn edit_server(f: &mut Fixture, i: usize, e: impl FnOnce(&mut Server)) {
        let mut s = (**f.inv.get::<Server>(f.s[i]).unwrap()).clone();
        e(&mut s);
        f.inv.load(Object::Server(s));
    }

    fn kinds_of(f: &Fixture, v: &Vm, target: usize) -> Vec<MigrationBlockerKind> {
        blockers(&f.inv, &Usage::of(&f.inv), v, f.s[target], MigrationMode::Live, |_| true)
            .unwrap()
            .into_iter()
            .map(|b| b.kind)
            .collect()
    }

    #[test]
    fn a_clean_target_has_no_blockers() {
        let mut f = fixture();
        let v = vm(&f, 2048, Some(0));
        f.inv.load(Object::Vm(v.clone()));
        assert_eq!(kinds_of(&f, &v, 1), vec![]);
        let stopped = vm(&f, 2048, None);
        assert_eq!(kinds_of(&f, &stopped, 1), vec![]);
    }

    #[test]
    fn every_reason_is_reported_at_once() {
        let mut f = fixture();
        let big = vm(&f, 4096, Some(0));
        let hog = vm(&f, 6144, Some(1));
        f.inv.load(Object::Vm(big.clone()));
        f.inv.load(Object::Vm(hog));
        edit_server(&mut f, 1, |s| {
            s.maintenance_mode = true;
            s.hardware.xen_version = "4.16.5".into();
            s.hardware.toolstack = "xapi".into();
            s.hardware.cpu = Some(HostCpu { vendor: "AuthenticAMD".into(), features: vec![0xfe, 0x0f] });
        });
        let found =
            blockers(&f.inv, &Usage::of(&f.inv), &big, f.s[1], MigrationMode::Live, |_| true).unwrap();
        let kinds: Vec<_> = found.iter().map(|b| b.kind).collect();
        assert_eq!(
            kinds,
            vec![
                MigrationBlockerKind::TargetInMaintenance,
                MigrationBlockerKind::InsufficientMemory,
                MigrationBlockerKind::CpuIncompatible,
                MigrationBlockerKind::CpuIncompatible,
                MigrationBlockerKind::XenVersionMismatch,
                MigrationBlockerKind::ToolstackMismatch,
            ]
        );
        let text: Vec<&str> = found.iter().map(|b| b.detail.as_str()).collect();
        assert_eq!(text[1], "VM vm4096 needs 4096 MiB, s1 has 1024 MiB free for guests");
        assert_eq!(text[2], "s0's CPU is GenuineIntel, s1's is AuthenticAMD");
        assert_eq!(text[3], "s1's CPU lacks 1 feature(s) of s0's: 0*32+0");
        assert_eq!(text[4], "s0 runs Xen 4.17.3, s1 runs Xen 4.16.5");
        assert!(found.iter().all(|b| b.object == Some(ObjectRef::new(ObjectKind::Server, f.s[1]))));
    }

    #[test]
    fn the_same_release_with_another_patch_level_is_compatible_and_unknown_facts_are_not_held_against_a_server(
    ) {
        let mut f = fixture();
        let v = vm(&f, 1024, Some(0));
        f.inv.load(Object::Vm(v.clone()));
        edit_server(&mut f, 1, |s| {
            s.hardware.xen_version = "4.17.0-sim".into();
            s.hardware.cpu = None;
            s.hardware.virt = None;
            s.hardware.toolstack = String::new();
        });
        assert_eq!(kinds_of(&f, &v, 1), vec![]);
        edit_server(&mut f, 1, |s| s.hardware.xen_version = "unstable".into());
        assert_eq!(kinds_of(&f, &v, 1), vec![MigrationBlockerKind::XenVersionMismatch]);
    }

    #[test]
    fn own_server_other_pool_and_vm_state() {
        let mut f = fixture();
        let mut v = vm(&f, 1024, Some(0));
        assert_eq!(kinds_of(&f, &v, 0), vec![MigrationBlockerKind::SameServer]);
        let other = ServerPool::new("other");
        let other_id = other.id;
        f.inv.load(Object::ServerPool(other));
        edit_server(&mut f, 2, |s| s.pool = Some(other_id));
        assert_eq!(kinds_of(&f, &v, 2), vec![MigrationBlockerKind::OtherPool]);
        v.power_state = PowerState::Paused;
        assert_eq!(kinds_of(&f, &v, 1), vec![MigrationBlockerKind::VmState]);
        v.power_state = PowerState::Running;
        v.pool = None;
        assert_eq!(kinds_of(&f, &v, 1), vec![MigrationBlockerKind::OtherPool]);
        let missing = ServerId::new();
        let err =
            blockers(&f.inv, &Usage::default(), &v, missing, MigrationMode::Live, |_| true).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
    }

    #[test]
    fn pv_live_migration_needs_shadow_paging_on_the_source() {
        let mut f = fixture();
        let mut v = vm(&f, 1024, Some(0));
        let no_shadow = VirtCapabilities { shadow: false, ..VirtCapabilities::ALL };
        edit_server(&mut f, 0, |s| s.hardware.virt = Some(no_shadow));
        assert_eq!(kinds_of(&f, &v, 1), vec![MigrationBlockerKind::LiveMigrationUnsupported]);
        let b = &blockers(&f.inv, &Usage::of(&f.inv), &v, f.s[1], MigrationMode::Live, |_| true).unwrap()[0];
        assert_eq!(b.object, Some(ObjectRef::new(ObjectKind::Server, f.s[0])));
        assert!(b.detail.contains("shadow paging"), "{}", b.detail);
        // A cold move saves the paused domain: it needs no dirty-page tracking.
        let cold = blockers(&f.inv, &Usage::of(&f.inv), &v, f.s[1], MigrationMode::Cold, |_| true).unwrap();
        assert!(cold.is_empty(), "{cold:?}");
        // HVM guests track dirty pages with HAP; a stopped PV guest merely moves.
        v.config.domain_type = DomainType::Hvm;
        assert_eq!(kinds_of(&f, &v, 1), vec![]);
        v.config.domain_type = DomainType::Pv;
        v.power_state = PowerState::Stopped;
        assert_eq!(kinds_of(&f, &v, 1), vec![]);
    }

    #[test]
    fn the_target_must_run_the_domain_type() {
        let mut f = fixture();
        let mut v = vm(&f, 1024, None);
        edit_server(&mut f, 1, |s| {
            s.hardware.virt = Some(VirtCapabilities { pv: false, ..VirtCapabilities::ALL })
        });
        assert_eq!(kinds_of(&f, &v, 1), vec![MigrationBlockerKind::DomainTypeUnsupported]);
        v.config.domain_type = DomainType::Pvh;
        assert_eq!(kinds_of(&f, &v, 1), vec![]);
        edit_server(&mut f, 1, |s| {
            s.hardware.virt = Some(VirtCapabilities { hap: false, shadow: false, ..VirtCapabilities::ALL })
        });
        assert_eq!(kinds_of(&f, &v, 1), vec![MigrationBlockerKind::DomainTypeUnsupported]);
    }

    #[test]
    fn target_availability_role_and_anti_affinity() {
        let mut f = fixture();
        let mut v = vm(&f, 1024, Some(0));
        let mut peer = vm(&f, 512, Some(1));
        peer.name = "peer".into();
        let g = AntiAffinityGroup {
            id: AntiAffinityGroupId::new(),
            name: "spread".into(),
            description: String::new(),
            pool: f.pool,
            vms: vec![v.id, peer.id],
        };
        v.anti_affinity_group = Some(g.id);
        peer.anti_affinity_group = Some(g.id);
        let peer_ref = ObjectRef::new(ObjectKind::Vm, peer.id);
        f.inv.load(Object::Vm(v.clone()));
        f.inv.load(Object::Vm(peer));
        f.inv.load(Object::AntiAffinityGroup(g));
        edit_server(&mut f, 1, |s| s.roles = vec![ServerRole::Utility]);
        let found =
            blockers(&f.inv, &Usage::of(&f.inv), &v, f.s[1], MigrationMode::Live, |s| s != f.s[1]).unwrap();
        let kinds: Vec<_> = found.iter().map(|b| b.kind).collect();
        assert_eq!(
            kinds,
            vec![
                MigrationBlockerKind::TargetNotForVms,
                MigrationBlockerKind::TargetUnavailable,
                MigrationBlockerKind::AntiAffinity
            ]
        );
        assert_eq!(found[1].detail, "the manager is not connected to s1");
        assert_eq!(found[2].object, Some(peer_ref));
        edit_server(&mut f, 2, |s| s.power_state = ServerPowerState::Unreachable);
        let found = blockers(&f.inv, &Usage::of(&f.inv), &v, f.s[2], MigrationMode::Live, |_| true).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].detail, "s2 is Unreachable");
    }

    #[test]
    fn maximum_memory_must_be_offered() {
        let f = fixture();
        let mut v = vm(&f, 1024, Some(0));
        v.config.max_memory_mib = 16384;
        let found = blockers(&f.inv, &Usage::of(&f.inv), &v, f.s[1], MigrationMode::Live, |_| true).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].detail, "VM vm1024 may grow to 16384 MiB, s1 offers guests 7168 MiB in all");
    }

    #[test]
    fn storage_and_networks_must_be_on_the_target() {
        let mut f = fixture();
        let (s0, s1) = (f.s[0], f.s[1]);
        let fs = FileSystemId::new();
        let repo = Repository {
            id: RepositoryId::new(),
            name: "repo".into(),
            description: String::new(),
            backing: RepositoryBacking::FileSystem(fs),
            owner_pool: Some(f.pool),
            presented_to: vec![s0],
            mounts: vec![],
            initialized: true,
            capacity_bytes: 1 << 30,
            used_bytes: 0,
        };
        let port = |s: ServerId, n: &str| Port {
            id: PortId::new(),
            name: format!("{n}:eth1"),
            description: String::new(),
            server: s,
            interface: "eth1".into(),
            mac: String::new(),
            addressing: Addressing::None,
            bond: None,
        };
        let p0 = port(s0, "s0");
        let net = Network {
            id: NetworkId::new(),
            name: "vmnet".into(),
            description: String::new(),
            functions: [NetworkFunction::VirtualMachine].into_iter().collect(),
            members: vec![NetworkMember::Port(p0.id)],
            bridge: "xenbr1".into(),
            mtu: 1500,
        };
        let mut v = vm(&f, 1024, Some(0));
        v.repository = Some(repo.id);
        v.config.vnics = vec![
            Vnic { mac: "00:16:3e:00:00:01".into(), network: Some(net.id) },
            Vnic { mac: "00:16:3e:00:00:02".into(), network: Some(net.id) },
            Vnic { mac: "00:16:3e:00:00:03".into(), network: None },
        ];
        let (repo_ref, net_ref) = (repo.object_ref(), net.object_ref());
        f.inv.load(Object::Repository(repo));
        f.inv.load(Object::Port(p0));
        f.inv.load(Object::Network(net.clone()));
        let found = blockers(&f.inv, &Usage::of(&f.inv), &v, s1, MigrationMode::Live, |_| true).unwrap();
        assert_eq!(
            found,
            vec![
                MigrationBlocker::new(
                    MigrationBlockerKind::RepositoryUnavailable,
                    Some(repo_ref),
                    "repository repo is not presented to s1"
                ),
                MigrationBlocker::new(
                    MigrationBlockerKind::NetworkMissing,
                    Some(net_ref),
                    "network vmnet of VM vm1024 has no member on s1 (its bridge xenbr1 is not there)"
                ),
            ],
            "one blocker per network, however many VNICs are on it"
        );
        // A member on the target realises the network there.
        let p1 = port(s1, "s1");
        let mut net = net;
        net.members.push(NetworkMember::Port(p1.id));
        f.inv.load(Object::Port(p1));
        f.inv.load(Object::Network(net));
        let kinds: Vec<_> = blockers(&f.inv, &Usage::of(&f.inv), &v, s1, MigrationMode::Live, |_| true)
            .unwrap()
            .into_iter()
            .map(|b| b.kind)
            .collect();
        assert_eq!(kinds, vec![MigrationBlockerKind::RepositoryUnavailable]);
    }
}
