//! Acting on the verdicts of a pool's cluster. Once a second the manager reads the cluster of each
//! clustered pool whose pool file system lies on a disk from every member it is connected to (in
//! parallel, each read bounded) and:
//!
//! - **declares a member dead** only when the cluster does: an answering member sees its heartbeat
//!   dead (on O2CB, its disk heartbeat stopped: it is powered off, or it fenced itself), no
//!   answering member sees it alive, the manager cannot reach it, and it was seen alive before
//!   or was already unreachable (a member joining or leaving does not heartbeat yet, or no
//!   longer, but the manager reaches it). Then its VMs are marked
//!   stopped and the HA-enabled ones restarted on the survivors ([`Manager::server_lost`]); so a
//!   VM is never restarted while its old copy may still run;
//! - **leaves alone a member whose agent alone is unreachable**: its heartbeat still beats, so its
//!   VMs still run there. One Warning event (`server.agent_unreachable`) says so;
//! - **brings back a member declared dead** that is reachable again but in no cluster (it booted
//!   again): it joins the cluster again ([`Manager::rejoin_cluster`]);
//! - **follows the cluster's master**: the master of the highest epoch any member reports is the
//!   pool's master in the inventory (`pool.master_elected`).
//!
//! A manager that opens while a member is already dead finds it unreachable and its heartbeat
//! dead: it declares it dead then. VMs the pool's master restarted meanwhile (HA without the
//! manager, `xen::pool_ha`) are found where they run first, and never started twice.

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::membership::{member_named, pool_storage};
use crate::driver::cluster::ClusterStatus;
use crate::driver::ServerConnection;
use crate::manager::{lock, Manager};
use crate::model::*;
use crate::Result;

/// How often each pool's cluster is read.
const PERIOD: Duration = Duration::from_secs(1);
/// How long one round waits for the members' answers.
const ASK_DEADLINE: Duration = Duration::from_secs(3);
/// How long before a member that did not join its cluster again is told again.
const REJOIN_RETRY: Duration = Duration::from_secs(60);

/// What the watch remembers between rounds.
#[derive(Default)]
pub(crate) struct Watch {
    /// Members seen with a live heartbeat, by pool.
    seen_alive: HashMap<PoolId, HashSet<ServerId>>,
    /// Servers whose read is still in flight (a dead server's read waits for its timeout): not
    /// asked again meanwhile.
    asking: Arc<Mutex<HashSet<ServerId>>>,
    /// Servers declared dead, not back in the cluster since.
    declared: HashSet<ServerId>,
    /// Servers told to join their cluster again, and when.
    rejoining: HashMap<ServerId, Instant>,
    /// Servers reported with an unreachable agent and a live heartbeat, not answering since.
    agent_lost: HashSet<ServerId>,
}

/// Start the watch on the manager's runtime. It holds only a weak reference to the manager.
pub(crate) fn start(mgr: &Manager) {
    let weak = Arc::downgrade(&mgr.inner);
    mgr.inner.handle.spawn(async move {
        let mut watch = Watch::default();
        loop {
            tokio::time::sleep(PERIOD).await;
            let Some(inner) = weak.upgrade() else { return };
            let mgr = Manager { inner };
            if mgr.is_closed() {
                return;
            }
            let pools: Vec<ServerPool> = mgr.read(|inv| {
                ServerPool::table(inv)
                    .iter()
                    .filter(|p| !p.cluster_nodes.is_empty() && pool_storage(inv, p).is_some())
                    .map(|p| ServerPool::clone(p))
                    .collect()
            });
            if pools.is_empty() {
                continue;
            }
            let round = tokio::task::spawn_blocking(move || {
                for p in &pools {
                    watch.pool(&mgr, p);
                }
                watch
            });
            match round.await {
                Ok(w) => watch = w,
                Err(_) => return,
            }
        }
    });
}

impl Watch {
    /// One round for pool `p`.
    fn pool(&mut self, mgr: &Manager, p: &ServerPool) {
        let members: Vec<ServerId> =
            p.cluster_nodes.iter().map(|(s, _)| *s).filter(|s| p.servers.contains(s)).collect();
        let conns: Vec<(ServerId, Arc<dyn ServerConnection>)> = {
            let st = mgr.state();
            members.iter().filter_map(|s| st.conns.get(s).map(|c| (*s, c.clone()))).collect()
        };
        let (answers, outside): (Vec<_>, Vec<_>) =
            self.ask(conns).into_iter().partition(|(_, st)| st.is_some());
        let answers: Vec<(ServerId, ClusterStatus)> =
            answers.into_iter().filter_map(|(s, st)| st.map(|st| (s, st))).collect();
        if answers.is_empty() {
            return;
        }
        for (s, _) in outside {
            if !self.declared.contains(&s) {
                continue;
            }
            let due = self.rejoining.get(&s).is_none_or(|t| t.elapsed() >= REJOIN_RETRY);
            if due && mgr.rejoin_cluster(p.id, s).is_ok() {
                self.rejoining.insert(s, Instant::now());
            }
        }
        let answered: HashSet<ServerId> = answers.iter().map(|(s, _)| *s).collect();
        let (mut live, mut dead) = (HashSet::new(), HashSet::new());
        mgr.read(|inv| {
            for (_, st) in &answers {
                for h in &st.heartbeats {
                    let Some(id) = member_named(inv, p, &h.name) else { continue };
                    match h.heartbeat {
                        HeartbeatState::Alive => live.insert(id),
                        HeartbeatState::Dead => dead.insert(id),
                        HeartbeatState::Late => false,
                    };
                }
            }
        });
        let seen = self.seen_alive.entry(p.id).or_default();
        seen.extend(live.iter().copied());
        seen.retain(|s| members.contains(s));
        let connected: HashSet<ServerId> = mgr.state().conns.keys().copied().collect();
        for s in &members {
            if answered.contains(s) {
                self.declared.remove(s);
                self.rejoining.remove(s);
                self.agent_lost.remove(s);
                continue;
            }
            if connected.contains(s) && self.declared.contains(s) {
                continue; // back, in no cluster yet
            }
            let Ok(server) = mgr.server(*s) else { continue };
            if live.contains(s) {
                if !connected.contains(s) && self.agent_lost.insert(*s) {
                    let _ = mgr.raise_event(
                        server.object_ref(),
                        Severity::Warning,
                        "server.agent_unreachable",
                        &format!(
                            "The agent of server {} is unreachable, but the cluster of pool {} sees its \
                             heartbeat: it is not dead, and its VMs are not restarted elsewhere",
                            server.name, p.name
                        ),
                    );
                }
                continue;
            }
            // Seen alive by this watch, or already unreachable when the manager opened (it never
            // connected to it since).
            let known = seen.contains(s)
                || (server.power_state == ServerPowerState::Unreachable && !connected.contains(s));
            if dead.contains(s) && known && self.declared.insert(*s) {
                seen.remove(s);
                mgr.server_declared_dead(
                    *s,
                    &format!(
                        "the cluster of pool {} declared it dead: its heartbeat stopped (it is powered \
                         off or fenced itself)",
                        p.name
                    ),
                );
            }
        }
        if let Some((_, st)) = answers.iter().max_by_key(|(_, st)| st.epoch) {
            let _ = follow_master(mgr, p.id, st);
        }
    }

    /// The cluster as each of `conns` reports it (`None`: in no cluster), read in parallel for at
    /// most [`ASK_DEADLINE`]; servers not answering in time, or with an error, are left out.
    fn ask(
        &self,
        conns: Vec<(ServerId, Arc<dyn ServerConnection>)>,
    ) -> Vec<(ServerId, Option<ClusterStatus>)> {
        let (tx, rx) = mpsc::channel();
        for (s, c) in conns {
            if !lock(&self.asking).insert(s) {
                continue;
            }
            let (tx, asking) = (tx.clone(), self.asking.clone());
            let spawned = std::thread::Builder::new().name("ovm-cluster-watch".into()).spawn(move || {
                let status = c.cluster().map(|ops| ops.status());
                lock(&asking).remove(&s);
                if let Some(Ok(st)) = status {
                    let _ = tx.send((s, st));
                }
            });
            if spawned.is_err() {
                lock(&self.asking).remove(&s);
            }
        }
        drop(tx);
        let deadline = Instant::now() + ASK_DEADLINE;
        let mut answers = Vec::new();
        while let Ok(a) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            answers.push(a);
        }
        answers
    }
}

/// Make the master `st` names the pool's master in the inventory, with an Info event, unless the
/// manager knows that server is not running.
fn follow_master(mgr: &Manager, pool: PoolId, st: &ClusterStatus) -> Result<()> {
    let Some(name) = st.master.as_deref() else { return Ok(()) };
    mgr.system_tx(|tx| {
        let p = tx.inv.get::<ServerPool>(pool)?.clone();
        let Some(m) = member_named(&*tx.inv, &p, name) else { return Ok(()) };
        let server = tx.inv.get::<Server>(m)?;
        // A master the manager knows dead: the cluster has not elected the next one yet.
        if p.master == Some(m) || server.power_state != ServerPowerState::Running {
            return Ok(());
        }
        let server = server.name.clone();
        tx.edit::<ServerPool>(pool, |p| p.master = Some(m))?;
        tx.event(
            p.object_ref(),
            Severity::Info,
            "pool.master_elected",
            format!("The cluster of pool {} elected {server} its master (epoch {})", p.name, st.epoch),
        );
        Ok(())
    })
}
