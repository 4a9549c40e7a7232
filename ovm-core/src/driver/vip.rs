//! The pool's virtual IP as the seam sees it: the address on an interface, checked, and the typed
//! errors of taking it. The dom0 side that takes it is `xen::vip`; the simulated servers take
//! it in their world.

use std::fmt;
use std::net::Ipv4Addr;

/// How ovm names itself in errors of the kernel's making.
const WHAT: &str = "virtual-ip";

/// An Ethernet (MAC) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::model::format_mac(self.0.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b))))
    }
}

/// Why the virtual IP could not be claimed, released or looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VipError {
    /// The address cannot be a host's: unspecified, broadcast, multicast, loopback, or the network
    /// or broadcast address of its subnet.
    #[error("{address} cannot be a virtual IP: {reason}")]
    InvalidAddress {
        /// The address.
        address: Ipv4Addr,
        /// Why not.
        reason: &'static str,
    },
    /// The prefix length is not 1 to 32.
    #[error("prefix length {0} is not 1 to 32")]
    InvalidPrefix(u8),
    /// The interface name is not a Linux interface name.
    #[error("{0:?} is not an interface name (1-15 characters [A-Za-z0-9_.-])")]
    InvalidInterface(String),
    /// The probe and announcement timing is out of range.
    #[error("ARP timing: {0}")]
    InvalidTiming(&'static str),
    /// This server has no interface of that name.
    #[error("this server has no interface {0}")]
    NoInterface(String),
    /// The interface is administratively down: no ARP can go out of it.
    #[error("interface {0} is down")]
    InterfaceDown(String),
    /// The address is already on another interface of this server.
    #[error("{address} is already on interface {interface} of this server")]
    AssignedElsewhere {
        /// The address.
        address: Ipv4Addr,
        /// The interface it is on.
        interface: String,
    },
    /// Another host answered for the address, announced it, or probes for it: the virtual IP was
    /// not taken.
    #[error("{address} is in use by {mac}")]
    Conflict {
        /// The address.
        address: Ipv4Addr,
        /// The MAC of the host that holds (or claims) it.
        mac: Mac,
    },
    /// The kernel refused or failed a call.
    #[error("{what}: {message}")]
    System {
        /// What was being done.
        what: String,
        /// What the kernel said.
        message: String,
    },
}

impl VipError {
    pub(crate) fn io(what: impl Into<String>, e: std::io::Error) -> VipError {
        VipError::System { what: what.into(), message: e.to_string() }
    }

    pub(crate) fn from_ovm(what: impl Into<String>, e: crate::Error) -> VipError {
        VipError::System { what: what.into(), message: e.to_string() }
    }
}

impl From<VipError> for crate::Error {
    fn from(e: VipError) -> crate::Error {
        let msg = e.to_string();
        match e {
            VipError::InvalidAddress { .. } => crate::Error::invalid("address", msg),
            VipError::InvalidPrefix(_) => crate::Error::invalid("prefix", msg),
            VipError::InvalidInterface(_) | VipError::NoInterface(_) => {
                crate::Error::invalid("interface", msg)
            }
            VipError::InvalidTiming(_) => crate::Error::invalid("timing", msg),
            VipError::InterfaceDown(_) | VipError::AssignedElsewhere { .. } | VipError::Conflict { .. } => {
                crate::Error::conflict(msg)
            }
            VipError::System { .. } => crate::Error::backend(WHAT, msg),
        }
    }
}

/// A pool's virtual IP on one of this server's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualIp {
    pub(crate) interface: String,
    pub(crate) address: Ipv4Addr,
    pub(crate) prefix: u8,
}

impl VirtualIp {
    /// The address `address/prefix` on `interface`. The address must be a host's (not
    /// unspecified, broadcast, multicast or loopback, and with a prefix of 30 or less not its
    /// subnet's network or broadcast address), the prefix 1 to 32, the interface name a Linux
    /// one. Whether the interface exists is checked when the address is used.
    pub fn new(interface: &str, address: Ipv4Addr, prefix: u8) -> Result<VirtualIp, VipError> {
        if crate::driver::network::check_interface_name("interface", interface).is_err() {
            return Err(VipError::InvalidInterface(interface.to_owned()));
        }
        if !(1..=32).contains(&prefix) {
            return Err(VipError::InvalidPrefix(prefix));
        }
        let bad = |reason| Err(VipError::InvalidAddress { address, reason });
        if address.is_unspecified() {
            return bad("the unspecified address");
        }
        if address.is_broadcast() {
            return bad("the broadcast address");
        }
        if address.is_multicast() {
            return bad("a multicast address");
        }
        if address.is_loopback() {
            return bad("a loopback address");
        }
        if prefix <= 30 {
            let host_mask = u32::MAX >> prefix;
            let host = u32::from(address) & host_mask;
            if host == 0 {
                return bad("the network address of its subnet");
            }
            if host == host_mask {
                return bad("the broadcast address of its subnet");
            }
        }
        Ok(VirtualIp { interface: interface.to_owned(), address, prefix })
    }

    /// The interface.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The address.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl fmt::Display for VirtualIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} on {}", self.address, self.prefix, self.interface)
    }
}
