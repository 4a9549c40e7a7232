//! On this host's kernel: two network namespaces joined by a veth pair, made with `ip` (root
//! needed: CI runs as root, and these tests fail rather than skip without it). The namespaces go
//! when the test ends, passing or not.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

use super::*;

/// A named network namespace, deleted on drop.
struct Netns {
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Netns {
    fn new(tag: &str) -> Netns {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "the virtual IP tests make network namespaces: run them as root");
        let name = format!("ovm-vip-{}-{}-{tag}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// Runs `f` on a thread of its own inside the namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// `ip -j addr show dev <dev>` in the namespace: (address, prefix) of every IPv4 address.
    fn ipv4_addresses(&self, dev: &str) -> Vec<(String, u64)> {
        let out = ip(&["-n", &self.name, "-j", "addr", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["family"] == "inet")
            .map(|a| {
                (a["local"].as_str().unwrap_or_default().to_owned(), a["prefixlen"].as_u64().unwrap_or(0))
            })
            .collect()
    }

    /// The MAC of `dev` as `ip` reports it.
    fn mac(&self, dev: &str) -> String {
        let out = ip(&["-n", &self.name, "-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j prints JSON");
        v[0]["address"].as_str().expect("a link address").to_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: a valid namespace descriptor; CLONE_NEWNET moves only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Servers A (`va`) and B (`vb`) on one link.
fn pair() -> (Netns, Netns) {
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    ip(&["-n", &a.name, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name]);
    ip(&["-n", &a.name, "link", "set", "va", "up"]);
    ip(&["-n", &b.name, "link", "set", "vb", "up"]);
    (a, b)
}

fn fast() -> ArpTiming {
    ArpTiming {
        probes: 3,
        probe_interval: Duration::from_millis(40),
        probe_wait: Duration::from_millis(150),
        announcements: 2,
        announce_interval: Duration::from_millis(40),
    }
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 251, 7, 100);

fn vip(dev: &str) -> VirtualIp {
    VirtualIp::new(dev, VIP, 24).unwrap()
}

/// Captures the ARP frames arriving on `dev` in `ns` for `for_how_long`, from a thread started
/// now; the returned receiver yields them once the time is up. Returns when the socket is open.
fn capture(ns: &Netns, dev: &'static str, for_how_long: Duration) -> mpsc::Receiver<Vec<ArpPacket>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (out_tx, out_rx) = mpsc::channel();
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        enter(&path);
        let iface = vip(dev).interface_state().unwrap();
        let sock = ArpSocket::open(iface.index, iface.mac).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + for_how_long;
        let mut seen = Vec::new();
        while let Some(p) = sock.recv_until(deadline).unwrap() {
            seen.push(p);
        }
        let _ = out_tx.send(seen);
    });
    ready_rx.recv().expect("the capture socket opened");
    out_rx
}

#[test]
fn a_claim_probes_adds_and_announces_a_second_claimer_conflicts_and_release_hands_over() {
    let (a, b) = pair();
    let (mac_a, mac_b) = (a.mac("va"), b.mac("vb"));
    let b_before = b.ipv4_addresses("vb");

    // A claims; B, its neighbour, sees the probes and then the gratuitous ARP.
    let frames = capture(&b, "vb", Duration::from_millis(1500));
    let claimed = a.run(|| vip("va").claim(&fast())).unwrap();
    assert_eq!(claimed.mac.to_string(), mac_a);
    assert!(!claimed.already_held);
    assert_eq!(a.ipv4_addresses("va"), [(VIP.to_string(), 24)], "read back with ip -j addr");
    assert!(a.run(|| vip("va").is_held()).unwrap());
    let frames = frames.recv().unwrap();
    let from_a = |p: &&ArpPacket| p.sha.to_string() == mac_a;
    let probes = frames.iter().filter(from_a).filter(|p| p.is_probe_for(VIP)).count();
    let announcements = frames.iter().filter(from_a).filter(|p| p.is_announcement_of(VIP)).count();
    assert_eq!((probes, announcements), (3, 2), "{frames:?}");
    let first_announcement = frames.iter().position(|p| p.is_announcement_of(VIP)).unwrap();
    assert!(frames[..first_announcement].iter().filter(|p| p.is_probe_for(VIP)).count() == 3, "probes first");

    // B's claim meets A's kernel answering for the address: a conflict naming A, B unchanged.
    let err = b.run(|| vip("vb").claim(&fast())).unwrap_err();
    match &err {
        VipError::Conflict { address, mac } => assert_eq!((*address, mac.to_string()), (VIP, mac_a.clone())),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(crate::Error::from(err).kind(), crate::ErrorKind::Conflict);
    assert_eq!(b.ipv4_addresses("vb"), b_before);
    assert!(!b.run(|| vip("vb").is_held()).unwrap());

    // A again: announced again, nothing else.
    let again = a.run(|| vip("va").claim(&fast())).unwrap();
    assert!(again.already_held);
    assert_eq!(a.ipv4_addresses("va"), [(VIP.to_string(), 24)]);

    // A releases (twice: the second finds nothing), then B takes it and A conflicts with B.
    assert!(a.run(|| vip("va").release()).unwrap());
    assert!(!a.run(|| vip("va").release()).unwrap());
    assert!(a.ipv4_addresses("va").is_empty());
    assert!(!a.run(|| vip("va").is_held()).unwrap());
    let claimed = b.run(|| vip("vb").claim(&fast())).unwrap();
    assert_eq!(claimed.mac.to_string(), mac_b);
    assert_eq!(b.ipv4_addresses("vb"), [(VIP.to_string(), 24)]);
    let err = a.run(|| vip("va").claim(&fast())).unwrap_err();
    assert!(matches!(err, VipError::Conflict { mac, .. } if mac.to_string() == mac_b), "{err:?}");
    assert!(a.ipv4_addresses("va").is_empty());
}

#[test]
fn a_claimer_probing_at_the_same_time_is_a_conflict() {
    let (a, b) = pair();
    let mac_a = a.mac("va");
    // A probes slowly; B's probe for the same address comes in while A listens.
    let slow = ArpTiming { probes: 2, probe_interval: Duration::from_millis(600), ..fast() };
    let path = format!("/run/netns/{}", b.name);
    let b_probes = std::thread::spawn(move || {
        enter(&path);
        std::thread::sleep(Duration::from_millis(200));
        let iface = vip("vb").interface_state().unwrap();
        let sock = ArpSocket::open(iface.index, iface.mac).unwrap();
        sock.send(&ArpPacket::probe(iface.mac, VIP)).unwrap();
        iface.mac
    });
    let err = a.run(move || vip("va").claim(&slow)).unwrap_err();
    let mac_b = b_probes.join().unwrap();
    assert_eq!(err, VipError::Conflict { address: VIP, mac: mac_b });
    assert!(a.ipv4_addresses("va").is_empty(), "nothing taken");
    assert_ne!(mac_b.to_string(), mac_a);
}

#[test]
fn bad_arguments_are_typed_errors() {
    let bad = |a: [u8; 4], p: u8| VirtualIp::new("eth0", Ipv4Addr::from(a), p).unwrap_err();
    for (a, p, reason) in [
        ([0, 0, 0, 0], 24, "the unspecified address"),
        ([255, 255, 255, 255], 24, "the broadcast address"),
        ([224, 0, 0, 18], 24, "a multicast address"),
        ([127, 0, 0, 2], 8, "a loopback address"),
        ([10, 1, 2, 0], 24, "the network address of its subnet"),
        ([10, 1, 2, 255], 24, "the broadcast address of its subnet"),
    ] {
        assert_eq!(bad(a, p), VipError::InvalidAddress { address: Ipv4Addr::from(a), reason });
    }
    assert_eq!(bad([10, 1, 2, 3], 0), VipError::InvalidPrefix(0));
    assert_eq!(bad([10, 1, 2, 3], 33), VipError::InvalidPrefix(33));
    assert!(VirtualIp::new("eth0", Ipv4Addr::new(10, 1, 2, 255), 32).is_ok(), "a /32 has no broadcast");
    assert!(VirtualIp::new("eth0", Ipv4Addr::new(10, 1, 2, 0), 31).is_ok(), "nor a /31");
    for name in ["", "a/b", "sixteen-chars-xx", ".."] {
        assert_eq!(VirtualIp::new(name, VIP, 24).unwrap_err(), VipError::InvalidInterface(name.to_owned()));
    }
    let e: crate::Error = bad([224, 0, 0, 18], 24).into();
    assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
    assert_eq!(
        ArpTiming { probes: 0, ..fast() }.check(),
        Err(VipError::InvalidTiming("probes must be 1 to 16"))
    );
    assert_eq!(
        ArpTiming { announce_interval: Duration::from_secs(61), ..fast() }.check(),
        Err(VipError::InvalidTiming("intervals must be at most 60 s"))
    );

    // What only the kernel can tell: the interface must exist, be up, and not have the address
    // on another interface of the server.
    let (a, _b) = pair();
    ip(&["-n", &a.name, "link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    let e = a.run(|| VirtualIp::new("nosuch0", VIP, 24).unwrap().claim(&fast())).unwrap_err();
    assert_eq!(e, VipError::NoInterface("nosuch0".into()));
    let e = a.run(|| VirtualIp::new("nosuch0", VIP, 24).unwrap().release()).unwrap_err();
    assert_eq!(e, VipError::NoInterface("nosuch0".into()));
    let e = a.run(|| vip("vx").claim(&fast())).unwrap_err();
    assert_eq!(e, VipError::InterfaceDown("vx".into()));
    ip(&["-n", &a.name, "link", "set", "vx", "up"]);
    ip(&["-n", &a.name, "addr", "add", "10.251.7.100/24", "dev", "vx"]);
    let e = a.run(|| vip("va").claim(&fast())).unwrap_err();
    assert_eq!(e, VipError::AssignedElsewhere { address: VIP, interface: "vx".into() });
    assert!(a.ipv4_addresses("va").is_empty());
    assert!(!a.run(|| vip("va").is_held()).unwrap());
    assert!(a.run(|| vip("vx").is_held()).unwrap());
}

#[test]
fn frames_round_trip_and_conflicts_follow_rfc_5227() {
    let own = Mac([2, 0, 0, 0, 0, 1]);
    let other = Mac([2, 0, 0, 0, 0, 2]);
    for p in [ArpPacket::probe(own, VIP), ArpPacket::announcement(own, VIP)] {
        let f = p.frame();
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(ArpPacket::parse(&f), Some(p));
        let mut padded = f.to_vec();
        padded.resize(60, 0);
        assert_eq!(ArpPacket::parse(&padded), Some(p), "Ethernet padding is ignored");
        assert_eq!(ArpPacket::parse(&f[..41]), None);
    }
    let reply = ArpPacket { op: ARP_REPLY, sha: other, spa: VIP, tha: own, tpa: Ipv4Addr::UNSPECIFIED };
    assert_eq!(reply.conflicts_with(VIP, own), Some(other));
    assert_eq!(ArpPacket::announcement(other, VIP).conflicts_with(VIP, own), Some(other));
    assert_eq!(ArpPacket::probe(other, VIP).conflicts_with(VIP, own), Some(other));
    assert_eq!(ArpPacket::probe(own, VIP).conflicts_with(VIP, own), None, "our own probe");
    let elsewhere = Ipv4Addr::new(10, 251, 7, 101);
    assert_eq!(ArpPacket::probe(other, elsewhere).conflicts_with(VIP, own), None);
    assert_eq!(ArpPacket::announcement(other, elsewhere).conflicts_with(VIP, own), None);
}
