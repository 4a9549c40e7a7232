//! Simulated clusters: membership lives in the world, so every member sees the same master and
//! epoch. The first member to join is the master; when the master leaves, the next member takes over.

use super::{SimConnection, SimOp};
use crate::driver::cluster::{ClusterOps, ClusterStatus};
use crate::driver::lock;
use crate::{Error, Result};

use super::world::SimCluster;

fn status(id: &str, c: &SimCluster) -> ClusterStatus {
    ClusterStatus {
        cluster: id.to_owned(),
        members: c.members.clone(),
        master: c.master.clone(),
        epoch: c.epoch,
    }
}

impl ClusterOps for SimConnection {
    fn join(&self, cluster: &str) -> Result<ClusterStatus> {
        self.op(SimOp::Cluster, |st| {
            let mut clusters = lock(&self.world.inner.clusters);
            if let Some((other, _)) =
                clusters.iter().find(|(id, c)| id.as_str() != cluster && c.members.contains(&st.name))
            {
                return Err(Error::conflict(format!("{} is a member of cluster {other}", st.name)));
            }
            let c = clusters.entry(cluster.to_owned()).or_default();
            if !c.members.contains(&st.name) {
                c.members.push(st.name.clone());
                if c.master.is_none() {
                    c.master = Some(st.name.clone());
                }
                c.epoch += 1;
            }
            Ok(status(cluster, c))
        })
    }

    fn leave(&self) -> Result<()> {
        self.op(SimOp::Cluster, |st| {
            let mut clusters = lock(&self.world.inner.clusters);
            let Some((id, c)) = clusters.iter_mut().find(|(_, c)| c.members.contains(&st.name)) else {
                return Ok(());
            };
            c.members.retain(|m| *m != st.name);
            if c.master.as_deref() == Some(st.name.as_str()) {
                c.master = c.members.first().cloned();
            }
            c.epoch += 1;
            if c.members.is_empty() {
                let id = id.clone();
                clusters.remove(&id);
            }
            Ok(())
        })
    }

    fn status(&self) -> Result<Option<ClusterStatus>> {
        self.op(SimOp::Cluster, |st| {
            let clusters = lock(&self.world.inner.clusters);
            Ok(clusters.iter().find(|(_, c)| c.members.contains(&st.name)).map(|(id, c)| status(id, c)))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::driver::sim::{SimDriver, DEFAULT_PASSWORD};
    use crate::driver::Driver;

    #[test]
    fn membership_master_and_epoch() {
        let d = SimDriver::default();
        let h1 = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let h2 = d.connect("sim://s2", DEFAULT_PASSWORD, "m").unwrap();
        let (c1, c2) = (h1.cluster().unwrap(), h2.cluster().unwrap());
        assert_eq!(c1.status().unwrap(), None);
        let s = c1.join("pool-a").unwrap();
        assert_eq!((s.master.as_deref(), s.epoch), (Some("s1"), 1));
        assert_eq!(c1.join("pool-a").unwrap().epoch, 1, "joining again changes nothing");
        let s = c2.join("pool-a").unwrap();
        assert_eq!((s.members.len(), s.master.as_deref(), s.epoch), (2, Some("s1"), 2));
        assert_eq!(c1.join("pool-b").unwrap_err().kind(), crate::ErrorKind::Conflict);
        c1.leave().unwrap();
        let s = c2.status().unwrap().unwrap();
        assert_eq!((s.members, s.master.as_deref(), s.epoch), (vec!["s2".to_owned()], Some("s2"), 3));
        c1.leave().unwrap();
        c2.leave().unwrap();
        assert_eq!(c2.status().unwrap(), None);
        assert_eq!(c1.join("pool-b").unwrap().epoch, 1);
    }
}
