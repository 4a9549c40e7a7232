//! The lab switch: an Ethernet switch that the lab's QEMU machines plug into through Unix datagram
//! sockets (QEMU's `-netdev dgram` with `local.type=unix`), so that no lab traffic touches the host's
//! IP stack and no machine's death takes the network down.
//!
//! Every port belongs to a **segment** (a broadcast domain: the management LAN, the storage LAN, …);
//! frames go only between ports of one segment. 802.1Q-tagged frames pass unchanged, so VLANs
//! between servers are real. The switch learns source MACs per segment and floods broadcast,
//! multicast and unknown unicast.
//!
//! On command it **cuts a link** (one port), **partitions** machines into groups that cannot reach
//! each other, **drops** a share of a port's frames, or **delays** them. It **records** what it saw:
//! every ARP sender (so a test can ask which MAC answered for an address) and every Wake-on-LAN
//! magic packet (so the lab's power controller can boot the machine it names).
//!
//! A port is named `MACHINE.NIC` (e.g. `node1.eth0`); commands that name a machine apply to all its
//! ports. The [`Switch`] holds the state and decides where each frame goes ([`Switch::route`], pure
//! and unit-tested); [`serve`] runs it on sockets, with a control socket speaking the line protocol
//! of [`Switch::command`].

pub mod tap;

use std::collections::{BinaryHeap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A MAC address.
pub type Mac = [u8; 6];

/// Format a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac_str(m: &Mac) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let parts: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<Result<_, _>>().ok()?;
    parts.try_into().ok()
}

/// One port of the switch.
#[derive(Debug, Clone)]
pub struct Port {
    /// `MACHINE.NIC`.
    pub name: String,
    /// The segment (broadcast domain) it is on.
    pub segment: String,
    /// Whether its link is up (a cut link passes nothing either way).
    pub link_up: bool,
    /// Its partition group: frames pass only between ports of one group (0 = not partitioned).
    pub group: u32,
    /// Share of frames to and from it that are dropped, percent.
    pub drop_percent: u32,
    /// Delay added to frames to and from it.
    pub delay: Duration,
    /// Frames received from the machine.
    pub rx: u64,
    /// Frames sent to the machine.
    pub tx: u64,
    /// Frames dropped by a fault.
    pub dropped: u64,
}

impl Port {
    /// The machine the port belongs to.
    pub fn machine(&self) -> &str {
        self.name.split('.').next().unwrap_or(&self.name)
    }
}

/// An ARP packet the switch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpSeen {
    /// The address the sender claims.
    pub ip: [u8; 4],
    /// The sender's MAC.
    pub mac: Mac,
    /// The port it came in on.
    pub port: String,
    /// `request`, `reply` or `announce` (gratuitous).
    pub op: &'static str,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// A Wake-on-LAN magic packet the switch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WolSeen {
    /// The MAC it wakes.
    pub mac: Mac,
    /// The port it came in on.
    pub port: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// Where a frame goes: the port index and the delay before it is sent.
pub type Delivery = (usize, Duration);

/// The switch's state.
#[derive(Debug)]
pub struct Switch {
    ports: Vec<Port>,
    /// Learned MACs per segment.
    fdb: HashMap<(String, Mac), usize>,
    arp: Vec<ArpSeen>,
    wol: Vec<WolSeen>,
    rng: u64,
}

const ARP_LOG_MAX: usize = 10_000;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Switch {
    /// A switch with these `(name, segment)` ports. Names must be unique.
    pub fn new(ports: &[(String, String)], seed: u64) -> Result<Switch, String> {
        let mut seen = std::collections::HashSet::new();
        let mut v = Vec::new();
        for (name, segment) in ports {
            if name.is_empty() || name.contains(['/', ' ']) || !seen.insert(name.clone()) {
                return Err(format!("bad or repeated port name {name:?}"));
            }
            v.push(Port {
                name: name.clone(),
                segment: segment.clone(),
                link_up: true,
                group: 0,
                drop_percent: 0,
                delay: Duration::ZERO,
                rx: 0,
                tx: 0,
                dropped: 0,
            });
        }
        Ok(Switch { ports: v, fdb: HashMap::new(), arp: Vec::new(), wol: Vec::new(), rng: seed | 1 })
    }

    /// The ports.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// What ARP the switch saw.
    pub fn arp_log(&self) -> &[ArpSeen] {
        &self.arp
    }

    /// What magic packets the switch saw.
    pub fn wol_log(&self) -> &[WolSeen] {
        &self.wol
    }

    fn random_percent(&mut self) -> u32 {
        // xorshift64: deterministic for a seed, good enough for fault injection.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 100) as u32
    }

    fn faulty(&mut self, port: usize) -> bool {
        let p = self.ports[port].drop_percent;
        p > 0 && self.random_percent() < p
    }

    /// A frame arrived from the machine on port `from`: record what it says, and return where it
    /// goes. Frames shorter than an Ethernet header are dropped.
    pub fn route(&mut self, from: usize, frame: &[u8]) -> Vec<Delivery> {
        if frame.len() < 14 || from >= self.ports.len() {
            return Vec::new();
        }
        self.ports[from].rx += 1;
        self.observe(from, frame);
        if !self.ports[from].link_up || self.faulty(from) {
            self.ports[from].dropped += 1;
            return Vec::new();
        }
        let dst: Mac = frame[0..6].try_into().unwrap_or_default();
        let src: Mac = frame[6..12].try_into().unwrap_or_default();
        let segment = self.ports[from].segment.clone();
        if src[0] & 1 == 0 {
            self.fdb.insert((segment.clone(), src), from);
        }
        let targets: Vec<usize> = match self.fdb.get(&(segment.clone(), dst)) {
            Some(&p) if dst[0] & 1 == 0 => vec![p],
            _ => (0..self.ports.len()).filter(|&p| self.ports[p].segment == segment).collect(),
        };
        let group = self.ports[from].group;
        let from_delay = self.ports[from].delay;
        let mut out = Vec::new();
        for t in targets {
            if t == from || self.ports[t].group != group {
                continue;
            }
            if !self.ports[t].link_up || self.faulty(t) {
                self.ports[t].dropped += 1;
                continue;
            }
            self.ports[t].tx += 1;
            out.push((t, from_delay + self.ports[t].delay));
        }
        out
    }

    /// Record ARP senders and magic packets.
    fn observe(&mut self, from: usize, frame: &[u8]) {
        let (ethertype, payload) = match u16::from_be_bytes([frame[12], frame[13]]) {
            0x8100 if frame.len() >= 18 => (u16::from_be_bytes([frame[16], frame[17]]), &frame[18..]),
            t => (t, &frame[14..]),
        };
        if ethertype == 0x0806 && payload.len() >= 28 && payload[4] == 6 && payload[5] == 4 {
            let oper = u16::from_be_bytes([payload[6], payload[7]]);
            let mac: Mac = payload[8..14].try_into().unwrap_or_default();
            let ip: [u8; 4] = payload[14..18].try_into().unwrap_or_default();
            let target: [u8; 4] = payload[24..28].try_into().unwrap_or_default();
            let op = match oper {
                2 => "reply",
                1 if ip == target => "announce",
                _ => "request",
            };
            if ip != [0, 0, 0, 0] {
                if self.arp.len() >= ARP_LOG_MAX {
                    self.arp.remove(0);
                }
                self.arp.push(ArpSeen { ip, mac, port: self.ports[from].name.clone(), op, at_ms: now_ms() });
            }
        }
        if let Some(mac) = magic_packet_target(payload) {
            self.wol.push(WolSeen { mac, port: self.ports[from].name.clone(), at_ms: now_ms() });
        }
    }

    /// The ports a command names: a port by its name, or every port of a machine.
    fn select(&self, what: &str) -> Result<Vec<usize>, String> {
        let v: Vec<usize> = (0..self.ports.len())
            .filter(|&i| self.ports[i].name == what || self.ports[i].machine() == what)
            .collect();
        if v.is_empty() {
            Err(format!("no port or machine {what:?}"))
        } else {
            Ok(v)
        }
    }

    /// Run one control command; returns the reply lines (without the final `ok`).
    ///
    /// ```text
    /// ports                          name segment link group drop% delay-ms rx tx dropped
    /// link TARGET up|down            cut or restore a port's (or a machine's) links
    /// partition A B | C              machines A and B in one group, C in another; the rest in none
    /// heal                           end every partition
    /// drop TARGET PERCENT            drop that share of frames to and from TARGET
    /// delay TARGET MS                delay frames to and from TARGET
    /// clear TARGET                   no drop, no delay, link up
    /// arp IP                         who sent ARP for IP: MAC PORT OP AT-MS, oldest first
    /// wol                            magic packets seen: MAC PORT AT-MS
    /// ```
    pub fn command(&mut self, line: &str) -> Result<Vec<String>, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ports"] => Ok(self
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "{} {} {} {} {} {} {} {} {}",
                        p.name,
                        p.segment,
                        if p.link_up { "up" } else { "down" },
                        p.group,
                        p.drop_percent,
                        p.delay.as_millis(),
                        p.rx,
                        p.tx,
                        p.dropped
                    )
                })
                .collect()),
            ["link", what, state @ ("up" | "down")] => {
                for i in self.select(what)? {
                    self.ports[i].link_up = *state == "up";
                }
                Ok(vec![])
            }
            ["partition", rest @ ..] if !rest.is_empty() => {
                let mut assignments = Vec::new();
                for (g, machines) in rest.split(|w| *w == "|").enumerate() {
                    for m in machines {
                        for i in self.select(m)? {
                            assignments.push((i, g as u32 + 1));
                        }
                    }
                }
                for p in &mut self.ports {
                    p.group = 0;
                }
                for (i, g) in assignments {
                    self.ports[i].group = g;
                }
                Ok(vec![])
            }
            ["heal"] => {
                for p in &mut self.ports {
                    p.group = 0;
                }
                Ok(vec![])
            }
            ["drop", what, pct] => {
                let pct: u32 = pct.parse().ok().filter(|p| *p <= 100).ok_or("PERCENT is 0..=100")?;
                for i in self.select(what)? {
                    self.ports[i].drop_percent = pct;
                }
                Ok(vec![])
            }
            ["delay", what, ms] => {
                let ms: u64 = ms.parse().ok().filter(|m| *m <= 60_000).ok_or("MS is 0..=60000")?;
                for i in self.select(what)? {
                    self.ports[i].delay = Duration::from_millis(ms);
                }
                Ok(vec![])
            }
            ["clear", what] => {
                for i in self.select(what)? {
                    let p = &mut self.ports[i];
                    p.drop_percent = 0;
                    p.delay = Duration::ZERO;
                    p.link_up = true;
                }
                Ok(vec![])
            }
            ["arp", ip] => {
                let ip: std::net::Ipv4Addr =
                    ip.parse().map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
                Ok(self
                    .arp
                    .iter()
                    .filter(|a| a.ip == ip.octets())
                    .map(|a| format!("{} {} {} {}", mac_str(&a.mac), a.port, a.op, a.at_ms))
                    .collect())
            }
            ["wol"] => {
                Ok(self.wol.iter().map(|w| format!("{} {} {}", mac_str(&w.mac), w.port, w.at_ms)).collect())
            }
            _ => Err(format!("unknown command {line:?}")),
        }
    }
}

/// The MAC a Wake-on-LAN magic packet in `payload` wakes: six 0xff bytes followed by sixteen
/// copies of the MAC, anywhere in the payload (raw EtherType 0x0842 or inside a UDP datagram).
pub fn magic_packet_target(payload: &[u8]) -> Option<Mac> {
    const SYNC: [u8; 6] = [0xff; 6];
    let need = 6 + 16 * 6;
    let mut i = 0;
    while i + need <= payload.len() {
        if payload[i..i + 6] == SYNC {
            // Skip over a longer run of 0xff to where the MAC repetitions start.
            let mut start = i + 6;
            while start + 96 <= payload.len() && payload[start..start + 6] == SYNC {
                start += 1;
            }
            if start + 96 <= payload.len() {
                let mac: Mac = payload[start..start + 6].try_into().ok()?;
                if (0..16).all(|k| payload[start + 6 * k..start + 6 * k + 6] == mac) && mac != SYNC {
                    return Some(mac);
                }
            }
        }
        i += 1;
    }
    None
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many frames wait for a machine that is slow to read before its port drops them.
const EGRESS_QUEUE: usize = 1024;

/// The socket the switch receives a port's frames on, and the one it sends them to (the machine's).
pub fn socket_paths(dir: &Path, port: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{port}.switch")), dir.join(format!("{port}.machine")))
}

struct Delayed {
    due: Instant,
    port: usize,
    frame: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        self.due == o.due
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.due.cmp(&self.due) // earliest first in the max-heap
    }
}

/// A running switch: its state, shared with the threads that serve it.
#[derive(Clone)]
pub struct Running {
    /// The state.
    pub switch: Arc<Mutex<Switch>>,
    dir: PathBuf,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("dir", &self.dir).finish()
    }
}

impl Running {
    /// Run a control command (as the control socket does).
    pub fn command(&self, line: &str) -> Result<Vec<String>, String> {
        lock(&self.switch).command(line)
    }
}

/// Serve `switch` on sockets in `dir`: one datagram socket per port (see [`socket_paths`]) and the
/// control socket `dir/control`. Runs on background threads; returns at once. `on_wol` is called
/// with each magic packet's MAC (the lab's power controller).
pub fn serve(
    switch: Switch,
    dir: &Path,
    on_wol: Option<Arc<dyn Fn(Mac) + Send + Sync>>,
) -> std::io::Result<Running> {
    std::fs::create_dir_all(dir)?;
    let names: Vec<String> = switch.ports().iter().map(|p| p.name.clone()).collect();
    let mut sockets = Vec::new();
    for n in &names {
        let (ours, _) = socket_paths(dir, n);
        let _ = std::fs::remove_file(&ours);
        sockets.push(Arc::new(UnixDatagram::bind(&ours)?));
    }
    let running = Running { switch: Arc::new(Mutex::new(switch)), dir: dir.to_path_buf() };
    let queue: Arc<(Mutex<BinaryHeap<Delayed>>, Condvar)> =
        Arc::new((Mutex::new(BinaryHeap::new()), Condvar::new()));
    let targets: Arc<Vec<PathBuf>> = Arc::new(names.iter().map(|n| socket_paths(dir, n).1).collect());
    // A frame for a port leaves from that port's own socket, so the machine sees it come from the
    // address it sends to (a machine may accept datagrams from its peer only).
    //
    // Each port has its own egress queue and thread, as a switch port has its own buffer: a
    // machine that does not read its socket (a guest whose NIC has no receive buffers while it
    // boots, a QEMU stopped by a test) fills its own queue and loses frames past it, as on a
    // congested port; it never holds up the frames of other ports. (A blocking send to it
    // would stall the thread that routes every frame of the sending port, and with broadcasts
    // every port in time: the whole lab's network would stop.)
    let mut egress: Vec<SyncSender<Vec<u8>>> = Vec::new();
    for (i, sock) in sockets.iter().enumerate() {
        let (tx, rx) = sync_channel::<Vec<u8>>(EGRESS_QUEUE);
        let (sock, target) = (sock.clone(), targets[i].clone());
        std::thread::Builder::new().name(format!("egress-{}", names[i])).spawn(move || {
            for frame in rx {
                // A machine that is not running has no socket: the frame is lost, as on a wire.
                let _ = sock.send_to(&frame, &target);
            }
        })?;
        egress.push(tx);
    }
    let egress = Arc::new(egress);
    let send = move |egress: &[SyncSender<Vec<u8>>], port: usize, frame: Vec<u8>| {
        // A full queue drops the frame (tail drop).
        let _ = egress[port].try_send(frame);
    };

    for (i, sock) in sockets.iter().enumerate() {
        let sock = sock.clone();
        let (running, queue, egress, on_wol) =
            (running.clone(), queue.clone(), egress.clone(), on_wol.clone());
        std::thread::Builder::new().name(format!("port-{}", names[i])).spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                let frame = &buf[..n];
                let (deliveries, woken) = {
                    let mut sw = lock(&running.switch);
                    let before = sw.wol_log().len();
                    let d = sw.route(i, frame);
                    let woken: Vec<Mac> = sw.wol_log()[before..].iter().map(|w| w.mac).collect();
                    (d, woken)
                };
                if let Some(cb) = &on_wol {
                    for m in woken {
                        cb(m);
                    }
                }
                for (port, delay) in deliveries {
                    if delay.is_zero() {
                        send(&egress, port, frame.to_vec());
                    } else {
                        let (q, cv) = &*queue;
                        lock(q).push(Delayed { due: Instant::now() + delay, port, frame: frame.to_vec() });
                        cv.notify_one();
                    }
                }
            }
        })?;
    }
    {
        let (queue, egress) = (queue.clone(), egress.clone());
        std::thread::Builder::new().name("delay".into()).spawn(move || {
            let (q, cv) = &*queue;
            let mut heap = lock(q);
            loop {
                let now = Instant::now();
                match heap.peek().map(|d| d.due) {
                    Some(due) if due <= now => {
                        if let Some(d) = heap.pop() {
                            send(&egress, d.port, d.frame);
                        }
                    }
                    Some(due) => {
                        heap = cv
                            .wait_timeout(heap, due - now)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|p| p.into_inner().0)
                    }
                    None => heap = cv.wait(heap).unwrap_or_else(|p| p.into_inner()),
                }
            }
        })?;
    }
    let control = dir.join("control");
    let _ = std::fs::remove_file(&control);
    let listener = UnixListener::bind(&control)?;
    {
        let running = running.clone();
        std::thread::Builder::new().name("control".into()).spawn(move || {
            for conn in listener.incoming().flatten() {
                let running = running.clone();
                std::thread::spawn(move || {
                    let Ok(mut out) = conn.try_clone() else { return };
                    for line in BufReader::new(conn).lines() {
                        let Ok(line) = line else { break };
                        let reply = match running.command(&line) {
                            Ok(lines) => lines.into_iter().map(|l| l + "\n").collect::<String>() + "ok\n",
                            Err(e) => format!("error: {e}\n"),
                        };
                        if out.write_all(reply.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        })?;
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [0x02, 0, 0, 0, 0, 0xa];
    const B: Mac = [0x02, 0, 0, 0, 0, 0xb];
    const BCAST: Mac = [0xff; 6];

    fn frame(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn arp(oper: u16, sha: Mac, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4];
        p.extend_from_slice(&oper.to_be_bytes());
        p.extend_from_slice(&sha);
        p.extend_from_slice(&spa);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&tpa);
        p
    }

    fn lab() -> Switch {
        let ports = [
            ("n1.eth0", "mgmt"),
            ("n2.eth0", "mgmt"),
            ("n3.eth0", "mgmt"),
            ("n1.eth1", "storage"),
            ("n2.eth1", "storage"),
        ];
        Switch::new(&ports.map(|(a, b)| (a.to_owned(), b.to_owned())), 7).unwrap()
    }

    fn ports(d: &[Delivery]) -> Vec<usize> {
        d.iter().map(|(p, _)| *p).collect()
    }

    #[test]
    fn floods_within_a_segment_then_forwards_to_the_learned_port() {
        let mut sw = lab();
        assert_eq!(ports(&sw.route(0, &frame(BCAST, A, 0x0800, b"hi"))), vec![1, 2], "flood, not to storage");
        assert_eq!(ports(&sw.route(1, &frame(A, B, 0x0800, b"re"))), vec![0], "A was learned on port 0");
        assert_eq!(ports(&sw.route(0, &frame(B, A, 0x0800, b"x"))), vec![1]);
        // The storage segment is its own broadcast domain.
        assert_eq!(ports(&sw.route(3, &frame(BCAST, A, 0x0800, b"s"))), vec![4]);
    }

    #[test]
    fn vlan_tagged_frames_pass_unchanged_and_arp_inside_them_is_seen() {
        let mut sw = lab();
        let mut tagged = frame(BCAST, A, 0x8100, &[0x00, 0x64]);
        tagged.extend_from_slice(&0x0806u16.to_be_bytes());
        tagged.extend_from_slice(&arp(1, A, [10, 0, 100, 1], [10, 0, 100, 1]));
        assert_eq!(ports(&sw.route(0, &tagged)), vec![1, 2]);
        assert_eq!(sw.arp_log()[0].op, "announce");
        assert_eq!(sw.arp_log()[0].ip, [10, 0, 100, 1]);
    }

    #[test]
    fn a_cut_link_passes_nothing_either_way() {
        let mut sw = lab();
        sw.command("link n2.eth0 down").unwrap();
        assert_eq!(ports(&sw.route(0, &frame(BCAST, A, 0x0800, b""))), vec![2]);
        assert!(sw.route(1, &frame(BCAST, B, 0x0800, b"")).is_empty());
        sw.command("link n2 up").unwrap();
        assert_eq!(ports(&sw.route(0, &frame(BCAST, A, 0x0800, b""))), vec![1, 2]);
    }

    #[test]
    fn a_partition_separates_machines_until_healed() {
        let mut sw = lab();
        sw.command("partition n1 | n2 n3").unwrap();
        assert!(sw.route(0, &frame(BCAST, A, 0x0800, b"")).is_empty(), "n1 is alone");
        assert_eq!(ports(&sw.route(1, &frame(BCAST, B, 0x0800, b""))), vec![2]);
        assert!(sw.route(3, &frame(BCAST, A, 0x0800, b"")).is_empty(), "all of n1's links");
        sw.command("heal").unwrap();
        assert_eq!(ports(&sw.route(0, &frame(BCAST, A, 0x0800, b""))), vec![1, 2]);
    }

    #[test]
    fn drops_and_delays_are_applied_and_counted() {
        let mut sw = lab();
        sw.command("drop n3 100").unwrap();
        assert_eq!(ports(&sw.route(0, &frame(BCAST, A, 0x0800, b""))), vec![1]);
        assert_eq!(sw.ports()[2].dropped, 1);
        sw.command("drop n3 50").unwrap();
        let passed = (0..1000).filter(|_| sw.route(0, &frame(BCAST, A, 0x0800, b"")).len() == 2).count();
        assert!((350..650).contains(&passed), "about half pass: {passed}");
        sw.command("clear n3").unwrap();
        sw.command("delay n2.eth0 40").unwrap();
        let d = sw.route(0, &frame(BCAST, A, 0x0800, b""));
        assert_eq!(d, vec![(1, Duration::from_millis(40)), (2, Duration::ZERO)]);
    }

    #[test]
    fn arp_replies_say_which_mac_answered_for_an_address() {
        let mut sw = lab();
        sw.route(0, &frame(BCAST, A, 0x0806, &arp(1, A, [10, 77, 0, 1], [10, 77, 0, 99])));
        sw.route(1, &frame(A, B, 0x0806, &arp(2, B, [10, 77, 0, 99], [10, 77, 0, 1])));
        let lines = sw.command("arp 10.77.0.99").unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("02:00:00:00:00:0b n2.eth0 reply "), "{lines:?}");
        assert!(sw.command("arp nonsense").is_err());
    }

    #[test]
    fn magic_packets_are_recognised_raw_and_in_udp() {
        let target: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let mut magic = vec![0xff; 6];
        for _ in 0..16 {
            magic.extend_from_slice(&target);
        }
        assert_eq!(magic_packet_target(&magic), Some(target));
        let mut udp = vec![0u8; 28]; // IPv4 + UDP headers
        udp.extend_from_slice(&magic);
        let mut sw = lab();
        sw.route(1, &frame(BCAST, B, 0x0800, &udp));
        assert_eq!(sw.wol_log().len(), 1);
        assert_eq!(sw.wol_log()[0].mac, target);
        assert_eq!(
            sw.command("wol").unwrap()[0].split(' ').take(2).collect::<Vec<_>>(),
            ["52:54:00:12:34:56", "n2.eth0"]
        );
        // Fifteen copies are not a magic packet.
        assert_eq!(magic_packet_target(&magic[..magic.len() - 6]), None);
    }

    #[test]
    fn bad_commands_and_configurations_are_refused() {
        let mut sw = lab();
        for bad in ["", "link n9 down", "drop n1 101", "delay n1 x", "partition", "fly"] {
            assert!(sw.command(bad).is_err(), "{bad:?}");
        }
        assert!(Switch::new(&[("a".into(), "s".into()), ("a".into(), "s".into())], 1).is_err());
        assert!(sw.route(0, &[0u8; 10]).is_empty(), "runt frame");
    }

    #[test]
    fn serves_frames_and_commands_over_unix_sockets() {
        let dir = std::env::temp_dir().join(format!("ovm-lab-switch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let woken: Arc<Mutex<Vec<Mac>>> = Arc::default();
        let w = woken.clone();
        let ports = [("m1.eth0", "lan"), ("m2.eth0", "lan")];
        let sw = Switch::new(&ports.map(|(a, b)| (a.to_owned(), b.to_owned())), 1).unwrap();
        let running = serve(sw, &dir, Some(Arc::new(move |m| lock(&w).push(m)))).unwrap();
        let machine = |name: &str| {
            let (switch_side, ours) = socket_paths(&dir, name);
            let s = UnixDatagram::bind(ours).unwrap();
            s.connect(switch_side).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        };
        let (m1, m2) = (machine("m1.eth0"), machine("m2.eth0"));
        let f = frame(BCAST, A, 0x0800, b"hello");
        m1.send(&f).unwrap();
        let mut buf = [0u8; 2048];
        let n = m2.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &f[..]);
        // A magic packet reaches the power controller's callback.
        let mut magic = vec![0xff; 6];
        for _ in 0..16 {
            magic.extend_from_slice(&B);
        }
        m1.send(&frame(BCAST, A, 0x0842, &magic)).unwrap();
        m2.recv(&mut buf).unwrap();
        assert_eq!(*lock(&woken), vec![B]);
        // The control socket.
        let mut ctl = std::os::unix::net::UnixStream::connect(dir.join("control")).unwrap();
        ctl.write_all(b"link m2 down\nports\nbogus\n").unwrap();
        let mut r = BufReader::new(ctl.try_clone().unwrap());
        let mut lines = Vec::new();
        for _ in 0..5 {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            lines.push(l.trim_end().to_owned());
        }
        assert_eq!(lines[0], "ok");
        assert!(lines[1].starts_with("m1.eth0 lan up 0 0 0 2 0"), "{lines:?}");
        assert!(lines[2].starts_with("m2.eth0 lan down"), "{lines:?}");
        assert_eq!(lines[3], "ok");
        assert!(lines[4].starts_with("error: unknown command"), "{lines:?}");
        m1.send(&f).unwrap();
        m2.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        assert!(m2.recv(&mut buf).is_err(), "the cut link passes nothing");
        assert_eq!(running.command("ports").unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_machine_that_does_not_read_holds_up_no_other_port() {
        let dir = std::env::temp_dir().join(format!("ovm-lab-switch-stuck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ports = [("m1.eth0", "lan"), ("m2.eth0", "lan"), ("stuck.eth0", "lan")];
        let sw = Switch::new(&ports.map(|(a, b)| (a.to_owned(), b.to_owned())), 1).unwrap();
        let _running = serve(sw, &dir, None).unwrap();
        let machine = |name: &str| {
            let (switch_side, ours) = socket_paths(&dir, name);
            let s = UnixDatagram::bind(ours).unwrap();
            s.connect(switch_side).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        };
        // `stuck` is plugged in and never reads: its socket's queue fills with the floods.
        let (m1, m2, _stuck) = (machine("m1.eth0"), machine("m2.eth0"), machine("stuck.eth0"));
        let total = 5000;
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut got = 0;
            while got < total {
                match m2.recv(&mut buf) {
                    Ok(_) => got += 1,
                    Err(_) => break,
                }
            }
            got
        });
        for k in 0..total {
            let f = frame(BCAST, A, 0x0800, format!("frame {k}").as_bytes());
            // Paced below the reader's speed: the test is about the stuck port, not about m2's.
            while m1.send(&f).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
            if k % 64 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let got = reader.join().unwrap();
        assert!(
            got >= total * 9 / 10,
            "m2 received {got} of {total} broadcasts while another port was stuck"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
