//! Host operations: what a server says about itself, its load, and powering it off.

use serde::{Deserialize, Serialize};

use crate::model::{HostHardware, VmId};
use crate::Result;

/// A server's load at one moment: rates the driver computes between its consecutive samples,
/// and cumulative counters the manager turns into rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostLoad {
    /// CPU utilisation, percent of all CPUs (Xen: from each physical CPU's idle time).
    pub cpu_percent: f32,
    /// Memory used by guests, MiB.
    pub guest_memory_mib: u64,
    /// Memory free for guests, MiB.
    pub free_memory_mib: u64,
    /// Physical CPUs.
    #[serde(default)]
    pub cpus: u32,
    /// The load of each guest domain (not dom0).
    #[serde(default)]
    pub domains: Vec<DomainLoad>,
    /// Traffic counters of dom0's network interfaces (ports, bonds, VLANs, bridges, guest vifs).
    #[serde(default)]
    pub interfaces: Vec<InterfaceCounters>,
}

/// The load of one guest domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainLoad {
    /// The VM (domains without an ovm VM id are left out).
    pub vm: VmId,
    /// CPU used since the previous sample, percent of one physical CPU (a domain with several busy
    /// vCPUs goes above 100).
    pub cpu_percent: f32,
    /// Current memory, MiB.
    pub memory_mib: u64,
}

/// Cumulative traffic counters of one network interface in dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceCounters {
    /// Interface name (`eth0`, `bond0`, `bond0.20`, `xenbr0`, `vif3.0`).
    pub name: String,
    /// Bytes received since the interface appeared.
    pub rx_bytes: u64,
    /// Bytes sent since the interface appeared.
    pub tx_bytes: u64,
    /// Link speed, Mbit/s, when the interface has one (ports and bonds with carrier).
    pub speed_mbps: Option<u32>,
}

/// What the host says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Hardware.
    pub hardware: HostHardware,
    /// Memory kept by dom0, MiB.
    pub dom0_memory_mib: u64,
    /// Identifier of the manager owning the server, if any.
    pub owner: Option<String>,
    /// The bridge a guest NIC joins when its network names none (Xen: `xenbr0`); the manager names
    /// the management network's bridge after it at the first discovery.
    pub default_bridge: String,
}

/// Host operations every server connection offers. Calls block; the manager runs them on job threads.
pub trait HostOps: Send + Sync {
    /// Host information.
    fn host_info(&self) -> Result<HostInfo>;
    /// Current load.
    fn load(&self) -> Result<HostLoad>;
    /// Power the host off (DPM), cleanly: refused while guest domains run (the manager evacuates
    /// first). The call returns before the host is off; the connection drops when it goes.
    /// Drivers that cannot return [`crate::Error::Unsupported`].
    fn power_off(&self) -> Result<()>;
    /// Send a Wake-on-LAN magic packet for `mac` out of this host's interface `interface` (a
    /// server is powered on by another server of its pool, on the management LAN the sleeping
    /// server's NIC listens on). Drivers that cannot return [`crate::Error::Unsupported`].
    fn wake_on_lan(&self, mac: &str, interface: &str) -> Result<()> {
        let _ = (mac, interface);
        Err(crate::Error::Unsupported { what: "sending Wake-on-LAN packets".into() })
    }
    /// Take a clustered pool's virtual IP `vip` on this host (the master's): probe for it as RFC
    /// 5227 asks, add it to its interface, announce it by gratuitous ARP. `Conflict` naming the
    /// MAC that holds it (nothing changed), or when it is on another interface of the host or the
    /// interface is down; `InvalidArgument` if the host has no such interface. Taking it again
    /// announces it again. Drivers that cannot return [`crate::Error::Unsupported`].
    fn claim_virtual_ip(&self, vip: &crate::driver::vip::VirtualIp) -> Result<()> {
        let _ = vip;
        Err(crate::Error::Unsupported { what: "taking a virtual IP".into() })
    }
    /// Give the virtual IP `vip` up (whatever prefix it was taken with); giving up an address
    /// not held succeeds. Drivers that cannot return [`crate::Error::Unsupported`].
    fn release_virtual_ip(&self, vip: &crate::driver::vip::VirtualIp) -> Result<()> {
        let _ = vip;
        Err(crate::Error::Unsupported { what: "giving up a virtual IP".into() })
    }
}

/// The Wake-on-LAN magic packet for `mac`: six bytes 0xff, then the MAC sixteen times (sent as a
/// UDP broadcast to port 9; a NIC armed for it wakes whatever carries it).
pub fn magic_packet(mac: &str) -> Result<[u8; 102]> {
    let v = crate::model::parse_mac(mac)?;
    let bytes: [u8; 6] = std::array::from_fn(|i| (v >> (8 * (5 - i))) as u8);
    if bytes[0] & 1 == 1 {
        return Err(crate::Error::invalid("mac", format!("{mac} is a multicast address, not a NIC's")));
    }
    let mut p = [0xffu8; 102];
    for k in 0..16 {
        p[6 + 6 * k..12 + 6 * k].copy_from_slice(&bytes);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_packet_repeats_the_mac_after_the_sync_bytes() {
        let p = magic_packet("52:54:00:0a:00:02").unwrap();
        assert_eq!(&p[..6], &[0xff; 6]);
        for k in 0..16 {
            assert_eq!(&p[6 + 6 * k..12 + 6 * k], &[0x52, 0x54, 0x00, 0x0a, 0x00, 0x02]);
        }
        assert_eq!(magic_packet("52-54-00-0A-00-02").unwrap(), p);
        for bad in ["", "52:54:00:0a:00", "zz:54:00:0a:00:02", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"] {
            assert_eq!(magic_packet(bad).unwrap_err().kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
