//! Load samples: what the manager keeps of each server's CPU, memory and network load over time, and
//! how long it keeps it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::{Timestamp, VmId};
use crate::{Error, Result};

/// A server's load over one sampling interval (a raw sample) or the average of several (a
/// downsampled one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct LoadSample {
    /// When the interval ended, ms since the Unix epoch (the manager's clock).
    pub at: Timestamp,
    /// How many raw samples this one averages (1 for a raw sample).
    pub samples: u32,
    /// CPU utilisation, percent of all the server's CPUs.
    pub cpu_percent: f32,
    /// Physical CPUs.
    pub cpus: u32,
    /// Memory free for guests, MiB.
    pub free_memory_mib: u64,
    /// Memory used by guests, MiB.
    pub guest_memory_mib: u64,
    /// Each VM running on the server.
    pub vms: Vec<VmLoad>,
    /// Each network interface of the server's dom0 (ports, bonds, VLAN interfaces, bridges, guest
    /// vifs), with its throughput over the interval.
    pub interfaces: Vec<InterfaceLoad>,
}

/// A VM's load over a sampling interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct VmLoad {
    /// The VM.
    pub vm: VmId,
    /// CPU used, percent of one physical CPU (above 100 for several busy vCPUs).
    pub cpu_percent: f32,
    /// Memory, MiB.
    pub memory_mib: u64,
}

/// A network interface's throughput over a sampling interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct InterfaceLoad {
    /// Interface name in dom0.
    pub name: String,
    /// Bytes received per second.
    pub rx_bytes_per_sec: f64,
    /// Bytes sent per second.
    pub tx_bytes_per_sec: f64,
    /// Link speed, Mbit/s, for interfaces that have one.
    pub speed_mbps: Option<u32>,
}

impl InterfaceLoad {
    /// The busier direction as a share of the link speed, percent (`None` without a speed).
    pub fn utilisation_percent(&self) -> Option<f32> {
        let speed = f64::from(self.speed_mbps?) * 1_000_000.0 / 8.0;
        Some((100.0 * self.rx_bytes_per_sec.max(self.tx_bytes_per_sec) / speed) as f32)
    }
}

/// Which of the kept histories to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub enum LoadResolution {
    /// Every sample, for [`LoadSampling::raw_retention`].
    #[default]
    Raw,
    /// Averages over [`LoadSampling::coarse_interval`], for [`LoadSampling::coarse_retention`].
    Coarse,
}

/// How often the manager samples the load of its servers and how long it keeps what it sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(schemars::JsonSchema))]
pub struct LoadSampling {
    /// Time between samples (1 s to 1 h).
    pub interval: Duration,
    /// How long raw samples are kept.
    pub raw_retention: Duration,
    /// The span one downsampled sample averages (a whole multiple of `interval`).
    pub coarse_interval: Duration,
    /// How long downsampled samples are kept.
    pub coarse_retention: Duration,
}

impl Default for LoadSampling {
    fn default() -> Self {
        LoadSampling {
            interval: Duration::from_secs(10),
            raw_retention: Duration::from_secs(3600),
            coarse_interval: Duration::from_secs(300),
            coarse_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// At most this many samples are kept per server and resolution, whatever the retention says.
pub const MAX_SAMPLES_KEPT: u64 = 100_000;

impl LoadSampling {
    /// Check the settings: the interval within 1 s–1 h, the coarse interval a whole multiple of it,
    /// each retention at least one of its intervals, and no history longer than
    /// [`MAX_SAMPLES_KEPT`] samples.
    pub fn validate(&self) -> Result<()> {
        let s = |d: Duration| d.as_millis() as u64;
        if !(1_000..=3_600_000).contains(&s(self.interval)) {
            return Err(Error::invalid("interval", "must be between 1 s and 1 h"));
        }
        if s(self.coarse_interval) < s(self.interval) || s(self.coarse_interval) % s(self.interval) != 0 {
            return Err(Error::invalid("coarse_interval", "must be a whole multiple of the interval"));
        }
        for (what, keep, every) in [
            ("raw_retention", self.raw_retention, self.interval),
            ("coarse_retention", self.coarse_retention, self.coarse_interval),
        ] {
            if keep < every {
                return Err(Error::invalid(what, "must be at least one interval"));
            }
            if s(keep) / s(every) > MAX_SAMPLES_KEPT {
                return Err(Error::invalid(what, format!("would keep more than {MAX_SAMPLES_KEPT} samples")));
            }
        }
        Ok(())
    }

    /// How many samples of `resolution` are kept.
    pub fn kept(&self, resolution: LoadResolution) -> usize {
        let (keep, every) = match resolution {
            LoadResolution::Raw => (self.raw_retention, self.interval),
            LoadResolution::Coarse => (self.coarse_retention, self.coarse_interval),
        };
        (keep.as_millis() / every.as_millis().max(1)).max(1) as usize
    }

    /// How many raw samples one downsampled sample averages.
    pub fn per_coarse(&self) -> u32 {
        (self.coarse_interval.as_millis() / self.interval.as_millis().max(1)).max(1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_settings_are_checked() {
        assert!(LoadSampling::default().validate().is_ok());
        let d = LoadSampling::default();
        assert_eq!(d.kept(LoadResolution::Raw), 360);
        assert_eq!(d.kept(LoadResolution::Coarse), 7 * 24 * 12);
        assert_eq!(d.per_coarse(), 30);
        let bad = [
            LoadSampling { interval: Duration::from_millis(500), ..d },
            LoadSampling { coarse_interval: Duration::from_secs(15), ..d },
            LoadSampling { coarse_interval: Duration::from_secs(5), ..d },
            LoadSampling { raw_retention: Duration::from_secs(5), ..d },
            LoadSampling {
                interval: Duration::from_secs(1),
                raw_retention: Duration::from_secs(200_000),
                ..d
            },
        ];
        for b in bad {
            assert_eq!(b.validate().unwrap_err().kind(), crate::ErrorKind::InvalidArgument, "{b:?}");
        }
    }

    #[test]
    fn utilisation_is_the_busier_direction_against_the_link_speed() {
        let i = InterfaceLoad {
            name: "bond0".into(),
            rx_bytes_per_sec: 12_500_000.0,
            tx_bytes_per_sec: 25_000_000.0,
            speed_mbps: Some(1000),
        };
        assert_eq!(i.utilisation_percent(), Some(20.0));
        assert_eq!(InterfaceLoad { speed_mbps: None, ..i }.utilisation_percent(), None);
    }
}
