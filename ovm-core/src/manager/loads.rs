//! Load sampling: every owned, reachable server's load (CPU, memory, each VM's CPU, each dom0
//! interface's throughput) sampled at [`LoadSampling::interval`], kept raw for
//! [`LoadSampling::raw_retention`] and as averages over [`LoadSampling::coarse_interval`] for
//! [`LoadSampling::coarse_retention`], in memory (the policies read it; nothing in it must survive
//! the manager). The drivers report interface counters; rates come from consecutive samples.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::{lock, Manager};
use crate::driver::{HostLoad, InterfaceCounters};
use crate::model::*;
use crate::{Error, Result};

#[derive(Debug, Default)]
struct History {
    raw: VecDeque<LoadSample>,
    coarse: VecDeque<LoadSample>,
    /// Raw samples not yet averaged into a coarse one.
    pending: Vec<LoadSample>,
    /// The previous counters, and when they were read.
    last: Option<(Instant, Vec<InterfaceCounters>)>,
}

/// The manager's load histories and sampling settings.
#[derive(Debug)]
pub(crate) struct Loads {
    settings: LoadSampling,
    next: Instant,
    running: bool,
    servers: HashMap<ServerId, History>,
}

impl Default for Loads {
    fn default() -> Self {
        let settings = LoadSampling::default();
        Loads { settings, next: Instant::now() + settings.interval, running: false, servers: HashMap::new() }
    }
}

/// The throughput of each interface between two readings of its counters (an interface whose
/// counters went back, say after it was recreated, starts again).
fn rates(
    before: Option<&(Instant, Vec<InterfaceCounters>)>,
    now: Instant,
    counters: &[InterfaceCounters],
) -> Vec<InterfaceLoad> {
    counters
        .iter()
        .map(|c| {
            let prev = before.and_then(|(t, list)| {
                let p = list.iter().find(|p| p.name == c.name)?;
                (p.rx_bytes <= c.rx_bytes && p.tx_bytes <= c.tx_bytes).then_some((*t, p))
            });
            let (rx, tx) = match prev {
                Some((t, p)) => {
                    let secs = now.duration_since(t).as_secs_f64().max(1e-3);
                    ((c.rx_bytes - p.rx_bytes) as f64 / secs, (c.tx_bytes - p.tx_bytes) as f64 / secs)
                }
                None => (0.0, 0.0),
            };
            InterfaceLoad {
                name: c.name.clone(),
                rx_bytes_per_sec: rx,
                tx_bytes_per_sec: tx,
                speed_mbps: c.speed_mbps,
            }
        })
        .collect()
}

/// The average of several samples, dated by the last.
fn average(samples: &[LoadSample]) -> Option<LoadSample> {
    let last = samples.last()?;
    let n = samples.len() as f64;
    let mean = |f: &dyn Fn(&LoadSample) -> f64| samples.iter().map(f).sum::<f64>() / n;
    let mut vms: Vec<VmLoad> = Vec::new();
    for vm in samples.iter().flat_map(|s| s.vms.iter().map(|v| v.vm)) {
        if vms.iter().any(|v| v.vm == vm) {
            continue;
        }
        let seen: Vec<&VmLoad> = samples.iter().filter_map(|s| s.vms.iter().find(|v| v.vm == vm)).collect();
        let cpu = seen.iter().map(|v| f64::from(v.cpu_percent)).sum::<f64>() / seen.len() as f64;
        vms.push(VmLoad { vm, cpu_percent: cpu as f32, memory_mib: seen.last().map_or(0, |v| v.memory_mib) });
    }
    let mut interfaces: Vec<InterfaceLoad> = Vec::new();
    for i in samples.iter().flat_map(|s| s.interfaces.iter()) {
        if interfaces.iter().any(|x| x.name == i.name) {
            continue;
        }
        let seen: Vec<&InterfaceLoad> =
            samples.iter().filter_map(|s| s.interfaces.iter().find(|x| x.name == i.name)).collect();
        let k = seen.len() as f64;
        interfaces.push(InterfaceLoad {
            name: i.name.clone(),
            rx_bytes_per_sec: seen.iter().map(|x| x.rx_bytes_per_sec).sum::<f64>() / k,
            tx_bytes_per_sec: seen.iter().map(|x| x.tx_bytes_per_sec).sum::<f64>() / k,
            speed_mbps: seen.last().and_then(|x| x.speed_mbps),
        });
    }
    Some(LoadSample {
        at: last.at,
        samples: samples.iter().map(|s| s.samples).sum(),
        cpu_percent: mean(&|s| f64::from(s.cpu_percent)) as f32,
        cpus: last.cpus,
        free_memory_mib: mean(&|s| s.free_memory_mib as f64) as u64,
        guest_memory_mib: mean(&|s| s.guest_memory_mib as f64) as u64,
        vms,
        interfaces,
    })
}

fn trim(q: &mut VecDeque<LoadSample>, keep: usize) {
    while q.len() > keep {
        q.pop_front();
    }
}

impl Loads {
    fn record(&mut self, server: ServerId, at: Timestamp, read_at: Instant, load: HostLoad) {
        let settings = self.settings;
        let h = self.servers.entry(server).or_default();
        let sample = LoadSample {
            at,
            samples: 1,
            cpu_percent: load.cpu_percent,
            cpus: load.cpus,
            free_memory_mib: load.free_memory_mib,
            guest_memory_mib: load.guest_memory_mib,
            vms: load
                .domains
                .iter()
                .map(|d| VmLoad { vm: d.vm, cpu_percent: d.cpu_percent, memory_mib: d.memory_mib })
                .collect(),
            interfaces: rates(h.last.as_ref(), read_at, &load.interfaces),
        };
        h.last = Some((read_at, load.interfaces));
        h.raw.push_back(sample.clone());
        trim(&mut h.raw, settings.kept(LoadResolution::Raw));
        h.pending.push(sample);
        if h.pending.len() >= settings.per_coarse() as usize {
            if let Some(avg) = average(&h.pending) {
                h.coarse.push_back(avg);
                trim(&mut h.coarse, settings.kept(LoadResolution::Coarse));
            }
            h.pending.clear();
        }
    }
}

impl Manager {
    /// How often server loads are sampled and how long they are kept.
    pub fn load_sampling(&self) -> LoadSampling {
        lock(&self.inner.loads).settings
    }

    /// Change how often server loads are sampled and how long they are kept (checked by
    /// [`LoadSampling::validate`]); histories longer than the new retention are cut at once. The
    /// settings hold for this manager's lifetime.
    pub fn set_load_sampling(&self, settings: LoadSampling) -> Result<()> {
        settings.validate()?;
        let mut l = lock(&self.inner.loads);
        l.settings = settings;
        l.next = Instant::now() + settings.interval;
        for h in l.servers.values_mut() {
            trim(&mut h.raw, settings.kept(LoadResolution::Raw));
            trim(&mut h.coarse, settings.kept(LoadResolution::Coarse));
            h.pending.clear();
        }
        Ok(())
    }

    /// Sample the load of every owned, reachable server now (the manager also does it at every
    /// interval when it runs its recurring jobs). Returns how many servers were sampled; a server
    /// that does not answer is left out of this round.
    pub fn sample_loads(&self) -> Result<usize> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let conns: Vec<_> = self.state().conns.iter().map(|(id, c)| (*id, c.clone())).collect();
        let read: Vec<(ServerId, Instant, Result<HostLoad>)> = std::thread::scope(|s| {
            let handles: Vec<_> = conns
                .iter()
                .map(|(id, c)| s.spawn(move || (*id, c.load().map(|l| (Instant::now(), l)))))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok())
                .map(|(id, r)| match r {
                    Ok((t, l)) => (id, t, Ok(l)),
                    Err(e) => (id, Instant::now(), Err(e)),
                })
                .collect()
        });
        let at = self.inner.clock.now_ms();
        let servers: Vec<ServerId> = self.list::<Server>(|_| true).iter().map(|s| s.id).collect();
        let mut l = lock(&self.inner.loads);
        l.servers.retain(|id, _| servers.contains(id));
        let mut sampled = 0;
        for (id, t, r) in read {
            match r {
                Ok(load) => {
                    l.record(id, at, t, load);
                    sampled += 1;
                }
                Err(e) => log::debug!("load of server {id}: {e}"),
            }
        }
        Ok(sampled)
    }

    /// The newest load sample of a server (`None` before the first).
    pub fn server_load(&self, server: ServerId) -> Result<Option<LoadSample>> {
        self.server(server)?;
        Ok(lock(&self.inner.loads).servers.get(&server).and_then(|h| h.raw.back().cloned()))
    }

    /// A server's kept load samples at `resolution`, oldest first.
    pub fn server_load_history(
        &self,
        server: ServerId,
        resolution: LoadResolution,
    ) -> Result<Vec<LoadSample>> {
        self.server(server)?;
        let l = lock(&self.inner.loads);
        Ok(l.servers
            .get(&server)
            .map(|h| match resolution {
                LoadResolution::Raw => h.raw.iter().cloned().collect(),
                LoadResolution::Coarse => h.coarse.iter().cloned().collect(),
            })
            .unwrap_or_default())
    }

    /// A running VM's load in the newest sample of its server (`None` if it has none).
    pub fn vm_load(&self, vm: VmId) -> Result<Option<VmLoad>> {
        let v = self.vm(vm)?;
        let Some(server) = v.server else { return Ok(None) };
        let l = lock(&self.inner.loads);
        Ok(l.servers
            .get(&server)
            .and_then(|h| h.raw.back())
            .and_then(|s| s.vms.iter().find(|x| x.vm == vm).cloned()))
    }

    /// Whether a scheduled sampling round is due (and, if so, mark it running).
    pub(crate) fn load_sampling_due(&self) -> bool {
        let mut l = lock(&self.inner.loads);
        let now = Instant::now();
        if l.running || l.next > now {
            return false;
        }
        l.running = true;
        l.next = now + l.settings.interval;
        true
    }

    /// A scheduled sampling round ended.
    pub(crate) fn load_sampling_done(&self) {
        lock(&self.inner.loads).running = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn counters(rx: u64, tx: u64) -> Vec<InterfaceCounters> {
        vec![InterfaceCounters { name: "eth0".into(), rx_bytes: rx, tx_bytes: tx, speed_mbps: Some(1000) }]
    }

    fn load(cpu: f32, rx: u64) -> HostLoad {
        HostLoad {
            cpu_percent: cpu,
            guest_memory_mib: 1024,
            free_memory_mib: 4096,
            cpus: 4,
            domains: vec![crate::driver::DomainLoad {
                vm: VmId(uuid::Uuid::from_u128(7)),
                cpu_percent: cpu,
                memory_mib: 512,
            }],
            interfaces: counters(rx, 0),
        }
    }

    #[test]
    fn samples_give_rates_and_are_downsampled_within_the_retention() {
        let mut l = Loads {
            settings: LoadSampling {
                interval: Duration::from_secs(1),
                raw_retention: Duration::from_secs(4),
                coarse_interval: Duration::from_secs(2),
                coarse_retention: Duration::from_secs(4),
            },
            ..Loads::default()
        };
        let s = ServerId(uuid::Uuid::from_u128(1));
        let t0 = Instant::now();
        for i in 0..6u64 {
            l.record(s, 1000 * i, t0 + Duration::from_secs(i), load(10.0 * i as f32, 1_000_000 * i));
        }
        let h = &l.servers[&s];
        assert_eq!(h.raw.len(), 4, "raw samples beyond the retention are dropped");
        assert_eq!(h.raw.front().unwrap().at, 2000);
        let newest = h.raw.back().unwrap();
        assert_eq!(newest.interfaces[0].rx_bytes_per_sec, 1_000_000.0, "1 MB in 1 s");
        assert_eq!(newest.interfaces[0].utilisation_percent(), Some(0.8));
        assert_eq!(h.raw.front().unwrap().vms[0].cpu_percent, 20.0);
        // Pairs (0,1), (2,3), (4,5) averaged; two kept.
        let coarse: Vec<(u64, u32, f32)> =
            h.coarse.iter().map(|c| (c.at, c.samples, c.cpu_percent)).collect();
        assert_eq!(coarse, vec![(3000, 2, 25.0), (5000, 2, 45.0)]);
        assert_eq!(h.coarse[1].vms[0].cpu_percent, 45.0);
        // A counter that went back (the interface was recreated) starts again at zero.
        l.record(s, 6000, t0 + Duration::from_secs(6), load(0.0, 10));
        assert_eq!(l.servers[&s].raw.back().unwrap().interfaces[0].rx_bytes_per_sec, 0.0);
    }
}
