//! Cluster membership: the servers of a pool form a cluster (Oracle VM: O2CB for the pool file
//! system), with one master, elected over a lock, and an epoch that grows at every election (the
//! rules: [`crate::policy::election`]).

use serde::{Deserialize, Serialize};

use crate::model::MemberStatus;
use crate::{Error, Result};

/// The state of a cluster seen from one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The cluster (the pool's id).
    pub cluster: String,
    /// Host names of the members, in joining order.
    pub members: Vec<String>,
    /// Host name of the master.
    pub master: Option<String>,
    /// The master's epoch: grows each time a master is elected. Commands stamped with an older
    /// one are refused.
    pub epoch: u64,
    /// Each member's heartbeat as the cluster sees it, by host name (empty where the backend does
    /// not report them).
    #[serde(default)]
    pub heartbeats: Vec<MemberStatus>,
}

/// Most members of a cluster (O2CB's limit).
pub const MAX_CLUSTER_NODES: usize = 255;

/// One member of a cluster as every member is told of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Its number in the cluster (0..=254), fixed while it is a member.
    pub number: u8,
    /// Its name in the cluster: letters, digits, `-` and `_`, at most 64 characters (ovm uses the
    /// server's id).
    pub name: String,
    /// The address the cluster's network heartbeat and lock traffic reach it at.
    pub address: std::net::Ipv4Addr,
}

/// What a server is told when it joins a pool's cluster (or when the members change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The cluster: the pool's id (letters, digits and `-`, at most 64 characters).
    pub cluster: String,
    /// Every member, this server included.
    pub nodes: Vec<ClusterNode>,
    /// This server's name among `nodes`.
    pub this_node: String,
    /// The pool file system's disk: its SCSI identifier (page 83 WWID), as the server sees it
    /// (empty for backends without a pool file system, such as the simulator).
    pub pool_disk: String,
    /// The pool file system kept as a file on an NFS export instead of on a disk (Oracle VM's
    /// pool file system on a file server): each member mounts the export and the file through a
    /// loop device. `pool_disk` is empty then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_file: Option<PoolFile>,
    /// Make the pool file system on the disk first (the pool's first member). A disk that holds
    /// another file system, or the pool file system of another cluster, is refused (`Conflict`)
    /// and left as it is.
    pub format: bool,
    /// How long a member may be silent before the others declare it dead, seconds.
    pub timeout_secs: u32,
    /// The pool's virtual IP, held by the master on the interface of its subnet.
    pub virtual_ip: Option<std::net::Ipv4Addr>,
}

/// A pool file system kept as a file on an NFS export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFile {
    /// The NFS server's host name or address.
    pub host: String,
    /// The exported path.
    pub export: String,
    /// The file's size, MiB (256 to 65536), when the first member makes it.
    pub size_mib: u64,
}

impl PoolFile {
    /// Check the fields: a host name or address, an absolute export path without `..`, commas,
    /// colons or control characters, and a size in range.
    pub fn check(&self) -> Result<()> {
        let host_ok = !self.host.is_empty()
            && self.host.len() <= 253
            && self.host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_ok {
            return Err(Error::invalid(
                "pool_file",
                format!("{:?} is not an NFS server's host name", self.host),
            ));
        }
        let export_ok = self.export.starts_with('/')
            && self.export.len() <= 1024
            && !self.export.split('/').any(|c| c == "..")
            && !self.export.chars().any(|c| c.is_control() || c == ',' || c == ':' || c.is_whitespace());
        if !export_ok {
            return Err(Error::invalid("pool_file", format!("{:?} is not an NFS export path", self.export)));
        }
        if !(256..=65536).contains(&self.size_mib) {
            return Err(Error::invalid("pool_file", "the pool file system's size is 256 to 65536 MiB"));
        }
        Ok(())
    }
}

impl ClusterSpec {
    /// A spec for a cluster without a pool file system (simulated clusters): `this_node` alone,
    /// numbered 0, at the unspecified address.
    pub fn named(cluster: &str, this_node: &str) -> ClusterSpec {
        ClusterSpec {
            cluster: cluster.to_owned(),
            nodes: vec![ClusterNode {
                number: 0,
                name: this_node.to_owned(),
                address: std::net::Ipv4Addr::UNSPECIFIED,
            }],
            this_node: this_node.to_owned(),
            pool_disk: String::new(),
            pool_file: None,
            format: false,
            timeout_secs: 30,
            virtual_ip: None,
        }
    }

    /// Check the fields (an agent checks a spec from the wire again before acting on it).
    pub fn check(&self) -> Result<()> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.cluster) {
            return Err(Error::invalid("cluster", "letters, digits, '-' and '_', 1 to 64 characters"));
        }
        if self.nodes.is_empty() || self.nodes.len() > MAX_CLUSTER_NODES {
            return Err(Error::invalid("nodes", format!("1 to {MAX_CLUSTER_NODES} members")));
        }
        let mut numbers = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for n in &self.nodes {
            if !name_ok(&n.name) {
                return Err(Error::invalid(
                    "nodes",
                    format!("member name {:?}: letters, digits, '-' and '_'", n.name),
                ));
            }
            if n.number == 255 || !numbers.insert(n.number) || !names.insert(n.name.as_str()) {
                return Err(Error::invalid(
                    "nodes",
                    format!("member {:?}: numbers 0..=254 and names are unique", n.name),
                ));
            }
        }
        if !names.contains(self.this_node.as_str()) {
            return Err(Error::invalid(
                "this_node",
                format!("{:?} is not among the members", self.this_node),
            ));
        }
        if !self.pool_disk.is_empty() {
            let ok = self.pool_disk.len() <= 256
                && self.pool_disk.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\');
            if !ok {
                return Err(Error::invalid(
                    "pool_disk",
                    format!("{:?} is not a SCSI identifier", self.pool_disk),
                ));
            }
        }
        if let Some(f) = &self.pool_file {
            if !self.pool_disk.is_empty() {
                return Err(Error::invalid(
                    "pool_file",
                    "a pool file system is on a disk or in a file, not both",
                ));
            }
            f.check()?;
        }
        if !(2..=300).contains(&self.timeout_secs) {
            return Err(Error::invalid("timeout_secs", "2 to 300 seconds"));
        }
        if let Some(ip) = self.virtual_ip {
            if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
                return Err(Error::invalid("virtual_ip", format!("{ip} cannot be a pool's address")));
            }
        }
        Ok(())
    }
}

/// Joining and leaving a pool's cluster.
pub trait ClusterOps: Send + Sync {
    /// Join the cluster of `spec`, or bring the membership of the cluster the server is in up to
    /// date (members added since it joined): configure the cluster stack, make the pool file
    /// system if asked, mount it, and take part in the master election. Joining again with the
    /// same spec succeeds and changes nothing; being in another cluster conflicts.
    fn join(&self, spec: &ClusterSpec) -> Result<ClusterStatus>;
    /// Leave the cluster the server is in (leaving none succeeds).
    fn leave(&self) -> Result<()>;
    /// The cluster the server is in, if any.
    fn status(&self) -> Result<Option<ClusterStatus>>;
    /// A request of the owning manager reached the server (its agent tells the cluster layer, so
    /// that the pool's master knows when to act for an absent manager). By default nothing.
    fn manager_seen(&self) {}
}
