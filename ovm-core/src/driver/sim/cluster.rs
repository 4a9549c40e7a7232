//! Simulated clusters: membership, the master lock and heartbeats live in the world
//! ([`crate::policy::election`] over the world's cluster clock), so every member sees the same
//! master and epoch. A member joining a cluster without a master takes the lock (the first to join
//! is master); when the master leaves, the next member in joining order takes over at once; when
//! it is cut off or dies, another is elected only once it is declared dead
//! ([`super::SimWorld::advance_cluster`]).

use super::world::{rejoin, SimCluster};
use super::{SimConnection, SimOp};
use crate::clock::Clock;
use crate::driver::cluster::{ClusterOps, ClusterSpec, ClusterStatus};
use crate::driver::lock;
use crate::model::Timestamp;
use crate::{Error, Result};

fn status(id: &str, c: &SimCluster, now: Timestamp) -> ClusterStatus {
    let heartbeats = c.lock.members(now);
    ClusterStatus {
        cluster: id.to_owned(),
        members: c.members.clone(),
        master: c.lock.master().map(|(m, _)| m.to_owned()),
        epoch: c.lock.epoch().0,
        heartbeats: c
            .members
            .iter()
            .filter_map(|m| heartbeats.iter().find(|h| h.name == *m).cloned())
            .collect(),
    }
}

impl ClusterOps for SimConnection {
    fn join(&self, spec: &ClusterSpec) -> Result<ClusterStatus> {
        spec.check()?;
        let cluster = spec.cluster.as_str();
        self.op(SimOp::Cluster, |st| {
            let now = self.world.inner.cluster_clock.now_ms();
            let mut clusters = lock(&self.world.inner.clusters);
            let net = lock(&self.world.inner.cluster_net);
            if net.partitioned.contains(&st.name) {
                return Err(Error::backend(&st.name, format!("cannot reach cluster {cluster}")));
            }
            if let Some((other, _)) =
                clusters.iter().find(|(id, c)| id.as_str() != cluster && c.members.contains(&st.name))
            {
                return Err(Error::conflict(format!("{} is a member of cluster {other}", st.name)));
            }
            let c = clusters.entry(cluster.to_owned()).or_insert_with(|| SimCluster::new(net.config()));
            if !c.members.contains(&st.name) {
                c.members.push(st.name.clone());
            }
            if c.nodes.get(&st.name).is_none_or(|n| n.is_fenced()) {
                rejoin(c, &net, &st.name, net.boot_of(&st.name), now);
            }
            if !c.nodes.contains_key(&st.name) {
                return Err(Error::backend(&st.name, format!("cannot join cluster {cluster} again yet")));
            }
            Ok(status(cluster, c, now))
        })
    }

    fn leave(&self) -> Result<()> {
        self.op(SimOp::Cluster, |st| {
            let now = self.world.inner.cluster_clock.now_ms();
            let mut clusters = lock(&self.world.inner.clusters);
            let net = lock(&self.world.inner.cluster_net);
            let Some((id, c)) = clusters.iter_mut().find(|(_, c)| c.members.contains(&st.name)) else {
                return Ok(());
            };
            c.members.retain(|m| *m != st.name);
            c.nodes.remove(&st.name);
            c.lock.leave(&st.name);
            c.elect(&net, now);
            if c.members.is_empty() {
                let id = id.clone();
                clusters.remove(&id);
            }
            Ok(())
        })
    }

    fn status(&self) -> Result<Option<ClusterStatus>> {
        self.op(SimOp::Cluster, |st| {
            let now = self.world.inner.cluster_clock.now_ms();
            let clusters = lock(&self.world.inner.clusters);
            if lock(&self.world.inner.cluster_net).partitioned.contains(&st.name) {
                return Err(Error::backend(&st.name, "cannot reach its cluster"));
            }
            Ok(clusters.iter().find(|(_, c)| c.members.contains(&st.name)).map(|(id, c)| status(id, c, now)))
        })
    }

    fn manager_seen(&self) {
        let name = lock(&self.host.state).name.clone();
        self.world.manager_seen(&name);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::clock::Clock;
    use crate::driver::cluster::ClusterSpec;
    use crate::driver::sim::{SimDriver, DEFAULT_PASSWORD};
    use crate::driver::Driver;
    use crate::model::{Epoch, HeartbeatState};
    use crate::policy::election::ElectionConfig;

    #[test]
    fn membership_master_and_epoch() {
        let d = SimDriver::default();
        let h1 = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let h2 = d.connect("sim://s2", DEFAULT_PASSWORD, "m").unwrap();
        let (c1, c2) = (h1.cluster().unwrap(), h2.cluster().unwrap());
        assert_eq!(c1.status().unwrap(), None);
        let s = c1.join(&ClusterSpec::named("pool-a", "s1")).unwrap();
        assert_eq!((s.master.as_deref(), s.epoch), (Some("s1"), 1));
        assert_eq!(
            c1.join(&ClusterSpec::named("pool-a", "s1")).unwrap().epoch,
            1,
            "joining again changes nothing"
        );
        let s = c2.join(&ClusterSpec::named("pool-a", "s2")).unwrap();
        assert_eq!((s.members.len(), s.master.as_deref(), s.epoch), (2, Some("s1"), 1), "no election");
        assert_eq!(s.heartbeats.iter().map(|h| h.heartbeat).collect::<Vec<_>>(), [HeartbeatState::Alive; 2]);
        assert_eq!(
            c1.join(&ClusterSpec::named("pool-b", "s1")).unwrap_err().kind(),
            crate::ErrorKind::Conflict
        );
        c1.leave().unwrap();
        let s = c2.status().unwrap().unwrap();
        assert_eq!((s.members, s.master.as_deref(), s.epoch), (vec!["s2".to_owned()], Some("s2"), 2));
        c1.leave().unwrap();
        c2.leave().unwrap();
        assert_eq!(c2.status().unwrap(), None);
        assert_eq!(c1.join(&ClusterSpec::named("pool-b", "s1")).unwrap().epoch, 1);
    }

    const T: Duration = Duration::from_secs(30);
    const M: Duration = Duration::from_secs(5);

    /// Three members of pool-a on a 30 s lease with a 5 s margin.
    fn pool() -> SimDriver {
        let d = SimDriver::default();
        d.world().set_cluster_timing(ElectionConfig::new(30_000, 5_000).unwrap());
        for s in ["s1", "s2", "s3"] {
            let h = d.connect(&format!("sim://{s}"), DEFAULT_PASSWORD, "m").unwrap();
            h.cluster().unwrap().join(&ClusterSpec::named("pool-a", "s")).unwrap();
        }
        d
    }

    fn status(d: &SimDriver, host: &str) -> crate::driver::cluster::ClusterStatus {
        let h = d.connect(&format!("sim://{host}"), DEFAULT_PASSWORD, "m").unwrap();
        h.cluster().unwrap().status().unwrap().unwrap()
    }

    #[test]
    fn a_partitioned_master_fences_itself_and_is_replaced_only_after_the_margin() {
        let d = pool();
        let w = d.world();
        w.advance_cluster(Duration::from_secs(10));
        assert_eq!((status(&d, "s2").master.as_deref(), status(&d, "s2").epoch), (Some("s1"), 1));
        w.partition_host("s1").unwrap();
        let cut_at = w.cluster_clock().now_ms();
        // Still master, and up, just before its lease runs out.
        w.advance_cluster(T - Duration::from_secs(4));
        assert!(w.is_up("s1"));
        assert_eq!(status(&d, "s2").master.as_deref(), Some("s1"));
        // Past T it has fenced itself (rebooted: down); nobody is master yet.
        w.advance_cluster(Duration::from_secs(4));
        assert!(!w.is_up("s1"), "fenced at {}", w.cluster_clock().now_ms() - cut_at);
        let s = status(&d, "s2");
        assert_eq!((s.master.as_deref(), s.epoch), (Some("s1"), 1), "not declared dead yet");
        assert_eq!(s.heartbeats[0].heartbeat, HeartbeatState::Late);
        // At T + M s2 (first in joining order) is elected, of epoch 2; s1's commands are refused.
        w.advance_cluster(M);
        let s = status(&d, "s2");
        assert_eq!((s.master.as_deref(), s.epoch), (Some("s2"), 2));
        assert_eq!(s.heartbeats[0].heartbeat, HeartbeatState::Dead);
        let e = w.cluster_command("s3", Epoch(1)).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Conflict);
        assert!(e.to_string().contains("older than epoch 2"), "{e}");
        w.cluster_command("s3", Epoch(2)).unwrap();
        // s1 boots again, still cut off: it joins once healed, as a member.
        w.heal_host("s1").unwrap();
        w.partition_host("s1").unwrap();
        w.restore_host("s1").unwrap();
        assert_eq!(status(&d, "s2").heartbeats[0].heartbeat, HeartbeatState::Dead);
        w.heal_host("s1").unwrap();
        w.advance_cluster(Duration::from_secs(3));
        let s = status(&d, "s1");
        assert_eq!((s.master.as_deref(), s.epoch), (Some("s2"), 2));
        assert_eq!((s.heartbeats[0].incarnation, s.heartbeats[0].heartbeat), (2, HeartbeatState::Alive));
        assert!(w.cluster_command("s1", Epoch(1)).is_err(), "the new boot read epoch 2");
    }

    #[test]
    fn a_short_partition_heals_without_a_change_and_a_dead_master_is_replaced() {
        let d = pool();
        let w = d.world();
        w.partition_host("s1").unwrap();
        w.advance_cluster(T - Duration::from_secs(5));
        w.heal_host("s1").unwrap();
        w.advance_cluster(T + M);
        assert!(w.is_up("s1"));
        assert_eq!((status(&d, "s3").master.as_deref(), status(&d, "s3").epoch), (Some("s1"), 1));
        // The master dies: s2 takes over once s1 is declared dead, not before.
        w.lose_host("s1").unwrap();
        w.advance_cluster(T);
        assert_eq!(status(&d, "s3").master.as_deref(), Some("s1"));
        w.advance_cluster(M);
        assert_eq!((status(&d, "s3").master.as_deref(), status(&d, "s3").epoch), (Some("s2"), 2));
        // It comes back as a member; s2 stays master.
        w.restore_host("s1").unwrap();
        w.advance_cluster(Duration::from_secs(3));
        let s = status(&d, "s1");
        assert_eq!((s.master.as_deref(), s.epoch, s.members.len()), (Some("s2"), 2, 3));
        assert!(s.heartbeats.iter().all(|h| h.heartbeat == HeartbeatState::Alive), "{s:?}");
        assert_eq!(w.cluster_command("nowhere", Epoch(2)).unwrap_err().kind(), crate::ErrorKind::Backend);
        let partitioned = d.connect("sim://s3", DEFAULT_PASSWORD, "m").unwrap();
        w.partition_host("s3").unwrap();
        assert_eq!(partitioned.cluster().unwrap().status().unwrap_err().kind(), crate::ErrorKind::Backend);
        assert!(w.cluster_clock().now_ms() > 0);
    }

    #[test]
    fn the_virtual_ip_is_held_by_one_host_and_goes_with_a_lost_one() {
        use crate::driver::vip::VirtualIp;
        use std::net::Ipv4Addr;

        let d = pool();
        let w = d.world();
        let conn = |h: &str| d.connect(&format!("sim://{h}"), DEFAULT_PASSWORD, "m").unwrap();
        let address = Ipv4Addr::new(10, 77, 0, 100);
        let vip = VirtualIp::new("xenbr0", address, 24).unwrap();
        conn("s1").claim_virtual_ip(&vip).unwrap();
        conn("s1").claim_virtual_ip(&vip).unwrap();
        assert_eq!(w.virtual_ip_holder(address), Some(("s1".into(), "xenbr0".into())));
        let e = conn("s2").claim_virtual_ip(&vip).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Conflict);
        assert!(e.to_string().contains(&w.management_mac("s1").unwrap()), "{e}");
        let other = VirtualIp::new("eth0", address, 24).unwrap();
        assert_eq!(conn("s1").claim_virtual_ip(&other).unwrap_err().kind(), crate::ErrorKind::Conflict);
        let nowhere = VirtualIp::new("nosuch0", address, 24).unwrap();
        assert_eq!(
            conn("s2").claim_virtual_ip(&nowhere).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        // Released twice, then s2 takes it; a lost holder's address goes with it.
        conn("s1").release_virtual_ip(&vip).unwrap();
        conn("s1").release_virtual_ip(&vip).unwrap();
        assert_eq!(w.virtual_ip_holder(address), None);
        conn("s2").claim_virtual_ip(&vip).unwrap();
        conn("s1").release_virtual_ip(&vip).unwrap();
        assert_eq!(w.virtual_ip_holder(address), Some(("s2".into(), "xenbr0".into())), "not s1's to release");
        w.lose_host("s2").unwrap();
        assert_eq!(w.virtual_ip_holder(address), None);
        conn("s3").claim_virtual_ip(&vip).unwrap();
    }
}
