use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::policy::simulate::SplitMix64;

const T: u64 = 8_000;
const M: u64 = 2_000;

fn config() -> ElectionConfig {
    ElectionConfig::new(T, M).unwrap()
}

#[test]
fn the_timing_is_checked() {
    assert_eq!(ElectionConfig::new(0, 1).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    assert_eq!(ElectionConfig::new(1, 0).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    assert_eq!(ElectionConfig::new(u64::MAX, 1).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    let c = ElectionConfig::from_cluster_timeout_secs(120).unwrap();
    assert_eq!((c.heartbeat_timeout_ms, c.fence_margin_ms, c.dead_after_ms()), (120_000, 12_000, 132_000));
    assert_eq!(ElectionConfig::from_cluster_timeout_secs(5).unwrap().fence_margin_ms, 1_000);
    assert!(ElectionConfig::from_cluster_timeout_secs(0).is_err());
}

/// A partitioned master fences itself at T; the other is master only at T + M, of the next epoch;
/// the former master's commands are refused from then on.
#[test]
fn a_partitioned_master_fences_itself_before_another_is_elected() {
    let mut lock = ClusterLock::new(config());
    let e0 = lock.join("a", 1, 0).unwrap();
    let mut a = Node::joined(config(), "a", 1, 0, e0);
    let e0 = lock.join("b", 1, 0).unwrap();
    let mut b = Node::joined(config(), "b", 1, 0, e0);
    let e1 = lock.try_acquire("a", 1, 0).unwrap();
    assert_eq!(e1, Epoch(1));
    a.became_master(e1);
    assert_eq!(lock.try_acquire("a", 1, 0), Ok(Epoch(1)), "asking again changes nothing");
    assert_eq!(
        lock.try_acquire("b", 1, 0),
        Err(ElectionRefusal::MasterHeld { master: "a".into(), epoch: e1 })
    );
    assert_eq!(a.stamp(0), Ok(e1));
    assert_eq!(b.stamp(0), Err(CommandRefusal::NotMaster));
    b.accept(a.stamp(0).unwrap()).unwrap();

    // a is cut off at 1000, after its last heartbeat; b goes on.
    lock.heartbeat("a", 1, 1_000).map(|e| a.heartbeat_written(1_000, e)).unwrap();
    for now in (1_000..=11_000).step_by(1_000) {
        b.heartbeat_written(now, lock.heartbeat("b", 1, now).unwrap());
        let late = lock.members(now).into_iter().find(|m| m.name == "a").unwrap().heartbeat;
        if now < 1_000 + T {
            assert!(!a.must_fence(now) && a.master_epoch(now) == Some(e1), "{now}");
            assert_eq!(late, HeartbeatState::Alive);
        } else {
            assert!((a.is_fenced() || a.must_fence(now)) && a.master_epoch(now).is_none(), "{now}");
            assert_eq!(a.stamp(now), Err(CommandRefusal::NotMaster));
        }
        if now == 1_000 + T {
            assert_eq!(a.fence(), Fencing { was_master: Some(e1) });
            assert_eq!(late, HeartbeatState::Late);
        }
        if now < 1_000 + T + M {
            assert!(
                matches!(lock.try_acquire("b", 1, now), Err(ElectionRefusal::MasterHeld { .. })),
                "{now}"
            );
        }
    }
    assert!(lock.heartbeat("a", 1, 9_500).is_err(), "an expired lease is not renewed");
    let e2 = lock.try_acquire("b", 1, 11_000).unwrap();
    assert_eq!(e2, Epoch(2));
    b.became_master(e2);
    assert!(lock.is_dead("a", 1));
    assert_eq!(lock.members(11_000)[0].heartbeat, HeartbeatState::Dead);
    assert_eq!(a.accept(e2), Err(CommandRefusal::Fenced));

    // c joins later and learns epoch 2: a's old command is refused.
    let e = lock.join("c", 1, 11_000).unwrap();
    let mut c = Node::joined(config(), "c", 1, 11_000, e);
    assert_eq!(c.accept(e1), Err(CommandRefusal::StaleEpoch { command: e1, current: e2 }));
    assert_eq!(c.accept(e2), Ok(()));
    assert_eq!(crate::Error::from(CommandRefusal::NotMaster).kind(), crate::ErrorKind::Conflict);

    // a reboots: a new incarnation; the former cannot come back.
    assert!(matches!(lock.join("a", 1, 12_000), Err(ElectionRefusal::Expired { .. })));
    assert_eq!(lock.join("a", 2, 12_000), Ok(e2));
    assert!(matches!(
        lock.heartbeat("a", 1, 12_000),
        Err(ElectionRefusal::StaleIncarnation { current: 2, .. })
    ));
    assert!(matches!(lock.join("a", 1, 12_000), Err(ElectionRefusal::StaleIncarnation { .. })));
}

#[test]
fn vm_locks_follow_their_holder_and_are_freed_by_death_reboot_or_leave() {
    let mut lock = ClusterLock::new(config());
    for n in ["a", "b"] {
        lock.join(n, 1, 0).unwrap();
    }
    lock.lock_vm("vm1", "a", 1, 0).unwrap();
    lock.lock_vm("vm1", "a", 1, 0).unwrap();
    assert!(matches!(lock.lock_vm("vm1", "b", 1, 0), Err(ElectionRefusal::VmLocked { .. })));
    lock.unlock_vm("vm1", "b", 1);
    assert_eq!(lock.vm_holder("vm1"), Some(("a", 1)), "only the holder unlocks");
    // a goes silent: its lock is free only at T + M.
    lock.heartbeat("b", 1, T - 1).unwrap();
    assert!(matches!(lock.lock_vm("vm1", "b", 1, T - 1), Err(ElectionRefusal::VmLocked { .. })));
    lock.heartbeat("b", 1, T + M - 1).unwrap();
    let mut lock2 = lock.clone();
    assert!(matches!(lock.lock_vm("vm1", "b", 1, T + M - 1), Err(ElectionRefusal::VmLocked { .. })));
    lock.lock_vm("vm1", "b", 1, T + M).unwrap();
    assert_eq!(lock.vm_holder("vm1"), Some(("b", 1)));
    assert!(lock.is_dead("a", 1));
    // A reboot frees at once.
    lock2.join("a", 2, 100).unwrap();
    assert_eq!(lock2.vm_holder("vm1"), None);
    lock2.lock_vm("vm2", "a", 2, 100).unwrap();
    lock2.leave("a");
    assert_eq!(lock2.vm_holder("vm2"), None);
    assert!(matches!(lock2.lock_vm("vm2", "a", 2, 100), Err(ElectionRefusal::NotMember { .. })));
}

// ---- Property tests: random partitions, deaths, heals and restarts on simulated time. ----

/// The heartbeat period.
const TICK: u64 = 1_000;
const SERVERS: usize = 4;
const CAPACITY: usize = 3;
const VMS: usize = 7;

#[derive(Debug, Clone, Copy)]
enum Event {
    Partition(usize),
    Heal(usize),
    Kill(usize),
    Restart(usize),
    Wait(u64),
}

#[derive(Debug)]
struct Server {
    name: String,
    up: bool,
    connected: bool,
    incarnation: u64,
    node: Option<Node>,
    vms: BTreeSet<usize>,
    highest_seen: Epoch,
}

#[derive(Debug, Clone, Copy)]
struct Command {
    id: u64,
    deliver_at: Timestamp,
    to: usize,
    incarnation: u64,
    epoch: Epoch,
    vm: usize,
}

/// Where the pool's record says an HA VM runs (or is being started): the command that put it there.
#[derive(Debug, Clone, Copy)]
struct Placed {
    server: usize,
    incarnation: u64,
    command: u64,
}

#[derive(Debug, Default)]
struct Stats {
    elections: u32,
    fences: u32,
    stale_refused: u32,
    restarts: u32,
}

struct Harness {
    now: Timestamp,
    rng: SplitMix64,
    lock: ClusterLock,
    servers: Vec<Server>,
    placed: Vec<Option<Placed>>,
    inflight: Vec<Command>,
    next_command: u64,
    masters: BTreeMap<Epoch, (String, u64)>,
    last_epoch: Epoch,
    /// Off only to show that the checks catch what self-fencing prevents.
    self_fence: bool,
    stats: Stats,
    trace: Vec<String>,
}

fn vm_name(vm: usize) -> String {
    format!("vm{vm}")
}

impl Harness {
    fn new(seed: u64, self_fence: bool) -> Harness {
        let mut h = Harness {
            now: 0,
            rng: SplitMix64::new(seed),
            lock: ClusterLock::new(config()),
            servers: (0..SERVERS)
                .map(|i| Server {
                    name: format!("s{i}"),
                    up: true,
                    connected: true,
                    incarnation: 1,
                    node: None,
                    vms: BTreeSet::new(),
                    highest_seen: Epoch(0),
                })
                .collect(),
            placed: vec![None; VMS],
            inflight: Vec::new(),
            next_command: 0,
            masters: BTreeMap::new(),
            last_epoch: Epoch(0),
            self_fence,
            stats: Stats::default(),
            trace: Vec::new(),
        };
        h.join_all();
        h
    }

    fn random_event(&mut self) -> Event {
        let s = self.rng.below(SERVERS as u64) as usize;
        match self.rng.below(10) {
            0 | 1 => Event::Partition(s),
            2 | 3 => Event::Heal(s),
            4 => Event::Kill(s),
            5 | 6 => Event::Restart(s),
            _ => Event::Wait(1 + self.rng.below(2 * (T + M) / TICK)),
        }
    }

    fn apply(&mut self, e: Event) -> Result<(), String> {
        self.trace.push(format!("t={} {e:?}", self.now));
        match e {
            Event::Partition(i) => self.servers[i].connected = false,
            Event::Heal(i) => self.servers[i].connected = true,
            Event::Kill(i) => {
                let s = &mut self.servers[i];
                (s.up, s.node) = (false, None);
                s.vms.clear();
            }
            Event::Restart(i) => {
                let s = &mut self.servers[i];
                if !s.up {
                    (s.up, s.node) = (true, None);
                    s.incarnation += 1;
                }
            }
            Event::Wait(ticks) => {
                for _ in 1..ticks {
                    self.tick()?;
                }
            }
        }
        self.tick()
    }

    fn fence(&mut self, i: usize) {
        let s = &mut self.servers[i];
        if let Some(n) = s.node.as_mut() {
            n.fence();
        }
        // Fencing reboots the server: down until restarted, its VMs gone.
        s.up = false;
        s.vms.clear();
        self.stats.fences += 1;
        self.trace.push(format!("t={} {} fenced itself", self.now, s.name));
    }

    fn join_all(&mut self) {
        for s in self.servers.iter_mut().filter(|s| s.up && s.connected && s.node.is_none()) {
            if let Ok(e) = self.lock.join(&s.name, s.incarnation, self.now) {
                s.node = Some(Node::joined(config(), &s.name, s.incarnation, self.now, e));
            }
        }
    }

    fn tick(&mut self) -> Result<(), String> {
        self.now += TICK;
        let now = self.now;
        // 1. Self-fencing of those whose lease ran out.
        for i in 0..SERVERS {
            let must = self.servers[i].up && self.servers[i].node.as_ref().is_some_and(|n| n.must_fence(now));
            if must && self.self_fence {
                self.fence(i);
            }
        }
        // 2. Heartbeats of those who reach the shared state; joins after a reboot.
        for i in 0..SERVERS {
            let s = &mut self.servers[i];
            if !(s.up && s.connected) {
                continue;
            }
            let Some(node) = s.node.as_mut() else { continue };
            match self.lock.heartbeat(&s.name, s.incarnation, now) {
                Ok(e) => node.heartbeat_written(now, e),
                Err(_) if self.self_fence => self.fence(i),
                Err(_) => {}
            }
        }
        self.join_all();
        // 3. Deaths: only of servers that fenced themselves (or were killed or rebooted).
        for (name, inc) in self.lock.expire(now) {
            let s = self.servers.iter().find(|s| s.name == name).expect("a member is a server");
            if s.up && s.incarnation == inc {
                return Err(format!("{name} declared dead at {now} while still up (not fenced)"));
            }
        }
        // 4. Election, when the lock is free.
        if self.lock.master().is_none() {
            let start = self.rng.below(SERVERS as u64) as usize;
            for k in 0..SERVERS {
                let i = (start + k) % SERVERS;
                let s = &mut self.servers[i];
                if !(s.up && s.connected) {
                    continue;
                }
                let Some(node) = s.node.as_mut() else { continue };
                if let Ok(e) = self.lock.try_acquire(&s.name, s.incarnation, now) {
                    if let Some(other) = self.masters.insert(e, (s.name.clone(), s.incarnation)) {
                        return Err(format!("two masters of {e}: {other:?} and {}", s.name));
                    }
                    if e <= self.last_epoch {
                        return Err(format!("{e} elected after {}", self.last_epoch));
                    }
                    node.became_master(e);
                    self.stats.elections += 1;
                    self.trace.push(format!("t={now} {} master of {e}", s.name));
                    break;
                }
            }
        }
        // 5. The master's HA pass.
        self.ha_pass();
        // 6. Commands that arrive now.
        self.deliver();
        self.check()
    }

    /// The master (connected, within its lease) restarts the VMs whose server is declared dead,
    /// and starts those placed nowhere, on live members with room.
    fn ha_pass(&mut self) {
        let now = self.now;
        let Some((m, epoch)) = self.servers.iter().enumerate().find_map(|(i, s)| {
            let e = s.node.as_ref()?.stamp(now).ok()?;
            (s.up && s.connected).then_some((i, e))
        }) else {
            return;
        };
        let alive: Vec<(usize, u64)> = self
            .lock
            .members(now)
            .into_iter()
            .filter(|ms| ms.heartbeat == HeartbeatState::Alive)
            .filter_map(|ms| self.servers.iter().position(|s| s.name == ms.name).map(|i| (i, ms.incarnation)))
            .collect();
        for vm in 0..VMS {
            let needs = match self.placed[vm] {
                None => true,
                Some(p) => self.lock.is_dead(&self.servers[p.server].name, p.incarnation),
            };
            if !needs {
                continue;
            }
            let load = |i: usize, inc: u64, placed: &[Option<Placed>]| {
                placed.iter().flatten().filter(|p| p.server == i && p.incarnation == inc).count()
            };
            let room: Vec<(usize, u64)> =
                alive.iter().copied().filter(|&(i, inc)| load(i, inc, &self.placed) < CAPACITY).collect();
            if room.is_empty() {
                return;
            }
            let (to, incarnation) = room[self.rng.below(room.len() as u64) as usize];
            // Most commands arrive at once; some are held up for longer than a failover takes.
            let delay =
                if self.rng.below(4) == 0 { self.rng.below(3 * (T + M) / TICK) } else { self.rng.below(2) };
            let id = self.next_command;
            self.next_command += 1;
            self.inflight.push(Command { id, deliver_at: now + delay * TICK, to, incarnation, epoch, vm });
            self.placed[vm] = Some(Placed { server: to, incarnation, command: id });
            self.trace.push(format!(
                "t={now} {} ({epoch}) starts vm{vm} on {}",
                self.servers[m].name, self.servers[to].name
            ));
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (due, later): (Vec<Command>, Vec<Command>) =
            self.inflight.drain(..).partition(|c| c.deliver_at <= now);
        self.inflight = later;
        for c in due {
            let started = self.carry_out(&c);
            if !started && self.placed[c.vm].is_some_and(|p| p.command == c.id) {
                self.placed[c.vm] = None;
            }
        }
    }

    /// Whether the command's VM runs where it says.
    fn carry_out(&mut self, c: &Command) -> bool {
        let now = self.now;
        let current = self.lock.epoch();
        let s = &mut self.servers[c.to];
        if !(s.up && s.incarnation == c.incarnation) {
            return false;
        }
        let Some(node) = s.node.as_mut() else { return false };
        if s.connected {
            node.observe(current);
        }
        match node.accept(c.epoch) {
            Ok(()) => {}
            Err(CommandRefusal::StaleEpoch { .. }) => {
                self.stats.stale_refused += 1;
                self.trace.push(format!("t={now} {} refuses vm{} of {}", s.name, c.vm, c.epoch));
                return false;
            }
            Err(_) => return false,
        }
        if s.connected && c.epoch != current {
            self.trace
                .push(format!("VIOLATION {} accepted {} while the cluster is at {current}", s.name, c.epoch));
        }
        if s.vms.contains(&c.vm) {
            return true;
        }
        if !s.connected || s.vms.len() >= CAPACITY {
            return false;
        }
        if self.lock.lock_vm(&vm_name(c.vm), &s.name, s.incarnation, now).is_err() {
            return false;
        }
        s.vms.insert(c.vm);
        self.stats.restarts += 1;
        true
    }

    fn check(&mut self) -> Result<(), String> {
        let now = self.now;
        if let Some(v) = self.trace.iter().find(|t| t.starts_with("VIOLATION")) {
            return Err(v.clone());
        }
        let epoch = self.lock.epoch();
        if epoch < self.last_epoch {
            return Err(format!("the epoch went back from {} to {epoch}", self.last_epoch));
        }
        self.last_epoch = epoch;
        let masters: Vec<&str> = self
            .servers
            .iter()
            .filter(|s| s.up && s.node.as_ref().is_some_and(|n| n.master_epoch(now).is_some()))
            .map(|s| s.name.as_str())
            .collect();
        if masters.len() > 1 {
            return Err(format!("two masters at once at {now}: {masters:?}"));
        }
        for s in &mut self.servers {
            if let Some(n) = &s.node {
                if n.highest_epoch() < s.highest_seen {
                    return Err(format!("{} went back to {}", s.name, n.highest_epoch()));
                }
                s.highest_seen = n.highest_epoch();
            }
        }
        for vm in 0..VMS {
            let on: Vec<&str> = self
                .servers
                .iter()
                .filter(|s| s.up && s.vms.contains(&vm))
                .map(|s| s.name.as_str())
                .collect();
            if on.len() > 1 {
                return Err(format!("vm{vm} runs on {on:?} at {now}"));
            }
        }
        Ok(())
    }

    /// Heals and restarts everything, waits for the pool to settle, and checks that there is one
    /// master and every VM runs once.
    fn settle(&mut self) -> Result<(), String> {
        for i in 0..SERVERS {
            self.apply(Event::Heal(i))?;
            self.apply(Event::Restart(i))?;
        }
        // Long enough for fences, deaths, the slowest command and a new round of starts.
        for _ in 0..(6 * (T + M) / TICK) {
            self.tick()?;
        }
        let masters = self
            .servers
            .iter()
            .filter(|s| s.node.as_ref().is_some_and(|n| n.master_epoch(self.now).is_some()))
            .count();
        if masters != 1 {
            return Err(format!("{masters} masters once settled"));
        }
        for vm in 0..VMS {
            if !self.servers.iter().any(|s| s.up && s.vms.contains(&vm)) {
                return Err(format!("vm{vm} does not run once settled"));
            }
        }
        Ok(())
    }

    fn run(&mut self, events: usize) -> Result<(), String> {
        for _ in 0..events {
            let e = self.random_event();
            self.apply(e)?;
        }
        self.settle()
    }
}

fn explain(seed: u64, h: &Harness, why: String) -> String {
    let tail = h.trace.len().saturating_sub(40);
    format!("seed {seed}: {why}\nlast events:\n{}", h.trace[tail..].join("\n"))
}

#[test]
fn random_partitions_deaths_heals_and_restarts_keep_the_invariants() {
    let mut total = Stats::default();
    for seed in 0..300u64 {
        let mut h = Harness::new(seed, true);
        if let Err(why) = h.run(60) {
            panic!("{}", explain(seed, &h, why));
        }
        total.elections += h.stats.elections;
        total.fences += h.stats.fences;
        total.stale_refused += h.stats.stale_refused;
        total.restarts += h.stats.restarts;
    }
    // The runs went through what the invariants are about.
    assert!(total.elections > 600, "{total:?}");
    assert!(total.fences > 300, "{total:?}");
    assert!(total.stale_refused > 20, "{total:?}");
    assert!(total.restarts > 3000, "{total:?}");
}

#[test]
fn without_self_fencing_the_checks_see_a_vm_run_twice() {
    let found = (0..300u64).find_map(|seed| Harness::new(seed, false).run(60).err());
    let why = found.expect("some run without self-fencing breaks an invariant");
    assert!(why.contains("declared dead") || why.contains("runs on"), "{why}");
}
