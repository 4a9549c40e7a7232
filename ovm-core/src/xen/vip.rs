//! The virtual IP of a clustered pool, on the master's dom0: an IPv4 address that moves with
//! mastership, added as a secondary address of the management interface.
//!
//! [`VirtualIp::claim`] does what RFC 5227 asks of a host taking an address:
//! 1. **probes**: ARP requests with sender address 0.0.0.0 asking for the address, a few of them
//!    some time apart, while an `AF_PACKET` socket on the interface listens for any ARP packet
//!    that gives the address as its sender (a holder's reply or announcement) or that probes for
//!    it from another MAC (someone claiming it at the same time). Either is a
//!    [`VipError::Conflict`] naming the other MAC, and nothing has been changed;
//! 2. adds the address to the interface through netlink (`RTM_NEWADDR`, the plumbing of
//!    [`super::network`]);
//! 3. **announces** it: gratuitous ARP requests with the address as sender and target, so that
//!    neighbours and switches learn the new holder.
//!
//! [`VirtualIp::release`] removes it (`RTM_DELADDR`), idempotently; [`VirtualIp::is_held`] says
//! whether this server has it. Everything acts in the network namespace of the calling thread.
//!
//! Who may claim is the election's business ([`crate::policy::election`]): a server claims the
//! address only as the master of the current epoch, and a master that loses its lease releases it
//! before fencing itself.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::network::{address_of, addresses, links, nl_err, put_address, Netlink};
use crate::driver::network::AddressConfig;
pub use crate::driver::vip::{Mac, VipError, VirtualIp};

/// The probe and announcement timing. The default is RFC 5227's: three probes a second apart,
/// two seconds of listening after the last (`ANNOUNCE_WAIT`), two announcements two seconds
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpTiming {
    /// ARP probes sent (at least 1).
    pub probes: u32,
    /// Time between two probes.
    pub probe_interval: Duration,
    /// How long to listen after the last probe before taking the address.
    pub probe_wait: Duration,
    /// Gratuitous ARP announcements sent once the address is taken (at least 1).
    pub announcements: u32,
    /// Time between two announcements.
    pub announce_interval: Duration,
}

impl Default for ArpTiming {
    fn default() -> ArpTiming {
        ArpTiming {
            probes: 3,
            probe_interval: Duration::from_secs(1),
            probe_wait: Duration::from_secs(2),
            announcements: 2,
            announce_interval: Duration::from_secs(2),
        }
    }
}

impl ArpTiming {
    /// Most probes or announcements.
    pub const MAX_PACKETS: u32 = 16;
    /// Longest wait between two packets.
    pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

    /// Checks the counts (1 to [`Self::MAX_PACKETS`]) and the waits (at most
    /// [`Self::MAX_INTERVAL`]).
    pub fn check(&self) -> Result<(), VipError> {
        if !(1..=Self::MAX_PACKETS).contains(&self.probes) {
            return Err(VipError::InvalidTiming("probes must be 1 to 16"));
        }
        if !(1..=Self::MAX_PACKETS).contains(&self.announcements) {
            return Err(VipError::InvalidTiming("announcements must be 1 to 16"));
        }
        if [self.probe_interval, self.probe_wait, self.announce_interval]
            .iter()
            .any(|d| *d > Self::MAX_INTERVAL)
        {
            return Err(VipError::InvalidTiming("intervals must be at most 60 s"));
        }
        Ok(())
    }
}

/// What a successful claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    /// The MAC of the interface, now answering for the address.
    pub mac: Mac,
    /// The address was on the interface already (it was announced again, without probing).
    pub already_held: bool,
}

impl VirtualIp {
    /// Takes the address: probes for it, adds it, announces it (see the module). If it is on the
    /// interface already, it is only announced again. Errors: [`VipError::NoInterface`],
    /// [`VipError::InterfaceDown`], [`VipError::AssignedElsewhere`], [`VipError::Conflict`]
    /// (nothing changed), [`VipError::InvalidTiming`], [`VipError::System`].
    pub fn claim(&self, timing: &ArpTiming) -> Result<Claimed, VipError> {
        timing.check()?;
        let iface = self.interface_state()?;
        if !iface.up {
            return Err(VipError::InterfaceDown(self.interface.clone()));
        }
        let sock = ArpSocket::open(iface.index, iface.mac)
            .map_err(|e| VipError::io(format!("opening an ARP socket on {}", self.interface), e))?;
        match self.located()? {
            Some((index, _)) if index == iface.index => {
                self.announce(&sock, timing)?;
                return Ok(Claimed { mac: iface.mac, already_held: true });
            }
            Some((_, interface)) => {
                return Err(VipError::AssignedElsewhere { address: self.address, interface })
            }
            None => {}
        }
        self.probe(&sock, timing)?;
        let cfg = AddressConfig {
            interface: self.interface.clone(),
            address: IpAddr::V4(self.address),
            prefix: self.prefix,
        };
        Netlink::new()
            .run(|h| async move { put_address(&h, &cfg).await })
            .map_err(|e| VipError::from_ovm(format!("adding {} to {}", self.address, self.interface), e))?;
        if let Err(e) = self.announce(&sock, timing) {
            // Taken whole or not at all.
            let _ = self.release();
            return Err(e);
        }
        Ok(Claimed { mac: iface.mac, already_held: false })
    }

    /// Removes the address from the interface, whatever prefix it was added with. Returns whether
    /// it was there; releasing an address not held succeeds. [`VipError::NoInterface`] if the
    /// interface does not exist.
    pub fn release(&self) -> Result<bool, VipError> {
        let name = self.interface.clone();
        let address = IpAddr::V4(self.address);
        let removed = Netlink::new()
            .run(|h| async move {
                let index = match links(&h).await?.by_name(&name) {
                    Some(l) => l.index,
                    None => return Ok(None),
                };
                let found = addresses(&h)
                    .await?
                    .into_iter()
                    .find(|m| m.header.index == index && address_of(m) == Some(address));
                let Some(m) = found else { return Ok(Some(false)) };
                h.address().del(m).execute().await.map_err(|e| nl_err(format!("removing {address}"), e))?;
                Ok(Some(true))
            })
            .map_err(|e| {
                VipError::from_ovm(format!("releasing {} on {}", self.address, self.interface), e)
            })?;
        removed.ok_or_else(|| VipError::NoInterface(self.interface.clone()))
    }

    /// Whether the address is on the interface. [`VipError::NoInterface`] if it does not exist.
    pub fn is_held(&self) -> Result<bool, VipError> {
        let iface = self.interface_state()?;
        Ok(self.located()?.is_some_and(|(index, _)| index == iface.index))
    }

    fn interface_state(&self) -> Result<Interface, VipError> {
        let name = self.interface.clone();
        let found = Netlink::new()
            .run(|h| async move {
                Ok(links(&h).await?.by_name(&name).map(|l| {
                    let mut mac = [0u8; 6];
                    if l.address.len() == 6 {
                        mac.copy_from_slice(&l.address);
                    }
                    Interface { index: l.index, mac: Mac(mac), up: l.up }
                }))
            })
            .map_err(|e| VipError::from_ovm("listing interfaces", e))?;
        found.ok_or_else(|| VipError::NoInterface(self.interface.clone()))
    }

    /// The interface (index and name) the address is on, if any.
    fn located(&self) -> Result<Option<(u32, String)>, VipError> {
        let address = IpAddr::V4(self.address);
        Netlink::new()
            .run(|h| async move {
                let ls = links(&h).await?;
                Ok(addresses(&h).await?.into_iter().find(|m| address_of(m) == Some(address)).map(|m| {
                    let index = m.header.index;
                    (index, ls.name_of(index).unwrap_or_default().to_owned())
                }))
            })
            .map_err(|e| VipError::from_ovm("listing addresses", e))
    }

    /// RFC 5227 §2.1: probes, listening for a conflict until `probe_wait` after the last.
    fn probe(&self, sock: &ArpSocket, timing: &ArpTiming) -> Result<(), VipError> {
        let probe = ArpPacket::probe(sock.mac, self.address);
        for i in 0..timing.probes {
            sock.send(&probe)
                .map_err(|e| VipError::io(format!("sending an ARP probe on {}", self.interface), e))?;
            let wait = if i + 1 == timing.probes { timing.probe_wait } else { timing.probe_interval };
            let deadline = Instant::now() + wait;
            while let Some(p) = sock
                .recv_until(deadline)
                .map_err(|e| VipError::io(format!("listening for ARP on {}", self.interface), e))?
            {
                if let Some(mac) = p.conflicts_with(self.address, sock.mac) {
                    return Err(VipError::Conflict { address: self.address, mac });
                }
            }
        }
        Ok(())
    }

    /// RFC 5227 §2.3: gratuitous ARP requests naming the address as sender and target.
    fn announce(&self, sock: &ArpSocket, timing: &ArpTiming) -> Result<(), VipError> {
        let announcement = ArpPacket::announcement(sock.mac, self.address);
        for i in 0..timing.announcements {
            if i > 0 {
                std::thread::sleep(timing.announce_interval);
            }
            sock.send(&announcement)
                .map_err(|e| VipError::io(format!("sending an ARP announcement on {}", self.interface), e))?;
        }
        Ok(())
    }
}

struct Interface {
    index: u32,
    mac: Mac,
    up: bool,
}

const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// An Ethernet header and an Ethernet/IPv4 ARP packet.
const FRAME_LEN: usize = 42;

/// An Ethernet/IPv4 ARP packet (RFC 826).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArpPacket {
    /// 1: request, 2: reply.
    pub(crate) op: u16,
    /// Sender hardware address.
    pub(crate) sha: Mac,
    /// Sender protocol address.
    pub(crate) spa: Ipv4Addr,
    /// Target hardware address.
    pub(crate) tha: Mac,
    /// Target protocol address.
    pub(crate) tpa: Ipv4Addr,
}

impl ArpPacket {
    /// An ARP probe: who has `address`, asked from 0.0.0.0.
    fn probe(mac: Mac, address: Ipv4Addr) -> ArpPacket {
        ArpPacket { op: ARP_REQUEST, sha: mac, spa: Ipv4Addr::UNSPECIFIED, tha: Mac::default(), tpa: address }
    }

    /// An ARP announcement: `address` is at `mac`.
    fn announcement(mac: Mac, address: Ipv4Addr) -> ArpPacket {
        ArpPacket { op: ARP_REQUEST, sha: mac, spa: address, tha: Mac::default(), tpa: address }
    }

    /// Whether this is a probe for `address` (sender 0.0.0.0).
    pub(crate) fn is_probe_for(&self, address: Ipv4Addr) -> bool {
        self.op == ARP_REQUEST && self.spa.is_unspecified() && self.tpa == address
    }

    /// Whether this is an announcement of `address` (sender and target both the address).
    #[cfg(test)]
    pub(crate) fn is_announcement_of(&self, address: Ipv4Addr) -> bool {
        self.op == ARP_REQUEST && self.spa == address && self.tpa == address
    }

    /// RFC 5227 §2.1.1: the MAC of another host that holds `address` (any ARP packet with it as
    /// sender) or probes for it at the same time, seen while probing from `own`.
    fn conflicts_with(&self, address: Ipv4Addr, own: Mac) -> Option<Mac> {
        if self.sha == own || !matches!(self.op, ARP_REQUEST | ARP_REPLY) {
            return None;
        }
        (self.spa == address || self.is_probe_for(address)).then_some(self.sha)
    }

    /// The frame, broadcast from `self.sha`.
    fn frame(&self) -> [u8; FRAME_LEN] {
        let mut f = [0u8; FRAME_LEN];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&self.sha.0);
        f[12..14].copy_from_slice(&(libc::ETH_P_ARP as u16).to_be_bytes());
        f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        f[16..18].copy_from_slice(&(libc::ETH_P_IP as u16).to_be_bytes());
        f[18] = 6;
        f[19] = 4;
        f[20..22].copy_from_slice(&self.op.to_be_bytes());
        f[22..28].copy_from_slice(&self.sha.0);
        f[28..32].copy_from_slice(&self.spa.octets());
        f[32..38].copy_from_slice(&self.tha.0);
        f[38..42].copy_from_slice(&self.tpa.octets());
        f
    }

    /// An Ethernet/IPv4 ARP packet from a frame (with its Ethernet header), or `None`.
    fn parse(f: &[u8]) -> Option<ArpPacket> {
        if f.len() < FRAME_LEN
            || f[12..14] != (libc::ETH_P_ARP as u16).to_be_bytes()
            || f[14..16] != 1u16.to_be_bytes()
            || f[16..18] != (libc::ETH_P_IP as u16).to_be_bytes()
            || f[18] != 6
            || f[19] != 4
        {
            return None;
        }
        let mac = |r: std::ops::Range<usize>| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&f[r]);
            Mac(m)
        };
        let ip = |at: usize| Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
        Some(ArpPacket {
            op: u16::from_be_bytes([f[20], f[21]]),
            sha: mac(22..28),
            spa: ip(28),
            tha: mac(32..38),
            tpa: ip(38),
        })
    }
}

/// A raw `AF_PACKET` socket for ARP on one interface.
#[derive(Debug)]
pub(crate) struct ArpSocket {
    fd: OwnedFd,
    ifindex: u32,
    mac: Mac,
}

impl ArpSocket {
    /// A socket receiving the ARP frames of interface `ifindex` (whose MAC is `mac`) and sending
    /// on it.
    pub(crate) fn open(ifindex: u32, mac: Mac) -> std::io::Result<ArpSocket> {
        // SAFETY: socket takes no pointers. Protocol 0 receives nothing until the bind below
        // names the protocol and the interface, so no frame of another interface slips in.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just opened and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sll = Self::sockaddr(ifindex, [0; 6]);
        // SAFETY: `sll` is a valid sockaddr_ll for the duration of the call, with its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ArpSocket { fd, ifindex, mac })
    }

    fn sockaddr(ifindex: u32, dest: [u8; 6]) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&dest);
        sll
    }

    fn send(&self, p: &ArpPacket) -> std::io::Result<()> {
        let frame = p.frame();
        let to = Self::sockaddr(self.ifindex, [0xff; 6]);
        // SAFETY: `frame` and `to` are valid for the call, with their sizes.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next ARP packet received (not sent) on the interface before `deadline`, or `None` when
    /// the deadline passes.
    pub(crate) fn recv_until(&self, deadline: Instant) -> std::io::Result<Option<ArpPacket>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                continue;
            }
            let mut buf = [0u8; 1514];
            // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid for writes of their sizes, `len` holds the latter.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) {
                    continue;
                }
                return Err(e);
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if let Some(p) = ArpPacket::parse(&buf[..n as usize]) {
                return Ok(Some(p));
            }
        }
    }
}

#[cfg(test)]
mod tests;
