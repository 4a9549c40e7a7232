//! Server and VM loads: how they are sampled (`ovm_load_sampling_get`/`_set`), a sampling round
//! now (`ovm_sample_loads`), each server's newest sample and its history (`ovm_server_load`,
//! `ovm_server_load_history`), the interfaces of the newest sample (`ovm_server_interface_loads`),
//! a VM's load (`ovm_vm_load`), and everything as JSON (`ovm_server_load_history_json`).

use std::ffi::c_char;
use std::time::Duration;

use ovm_core::model::{InterfaceLoad, LoadResolution, LoadSample, LoadSampling, ServerId, VmId};

use crate::boundary::{id_arg, out_arg, put, put_json, with_mgr};
use crate::handles::ovm_manager;
use crate::result::{ovm_result, FfiError};

/// How often server loads are sampled and how long they are kept, in milliseconds.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ovm_load_sampling {
    /// Time between samples (1 000 to 3 600 000).
    pub interval_ms: u64,
    /// How long raw samples are kept.
    pub raw_retention_ms: u64,
    /// The span one downsampled sample averages (a whole multiple of `interval_ms`).
    pub coarse_interval_ms: u64,
    /// How long downsampled samples are kept.
    pub coarse_retention_ms: u64,
}

/// Which kept history `ovm_server_load_history` reads.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_load_resolution {
    /// Every sample.
    OVM_LOAD_RAW = 0,
    /// Averages over the coarse interval.
    OVM_LOAD_COARSE = 1,
}

/// A server's load over one sampling interval, or the average of several.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ovm_load_sample {
    /// When the interval ended, ms since the Unix epoch.
    pub at_ms: u64,
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
    /// How many VMs the sample has (their loads: `ovm_vm_load`, or the JSON).
    pub vm_count: u32,
    /// How many dom0 interfaces it has (`ovm_server_interface_loads`).
    pub interface_count: u32,
}

impl From<&LoadSample> for ovm_load_sample {
    fn from(s: &LoadSample) -> Self {
        ovm_load_sample {
            at_ms: s.at,
            samples: s.samples,
            cpu_percent: s.cpu_percent,
            cpus: s.cpus,
            free_memory_mib: s.free_memory_mib,
            guest_memory_mib: s.guest_memory_mib,
            vm_count: s.vms.len() as u32,
            interface_count: s.interfaces.len() as u32,
        }
    }
}

/// A dom0 interface's throughput over one sampling interval.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ovm_interface_load {
    /// Interface name, NUL-terminated (Linux names are at most 15 bytes).
    pub name: [c_char; 16],
    /// Bytes received per second.
    pub rx_bytes_per_sec: f64,
    /// Bytes sent per second.
    pub tx_bytes_per_sec: f64,
    /// Link speed, Mbit/s; 0 when the interface has none.
    pub speed_mbps: u32,
    /// The busier direction as a share of the link speed, percent; negative without a speed.
    pub utilisation_percent: f32,
}

impl From<&InterfaceLoad> for ovm_interface_load {
    fn from(i: &InterfaceLoad) -> Self {
        let mut name = [0 as c_char; 16];
        for (dst, src) in name.iter_mut().take(15).zip(i.name.bytes()) {
            *dst = src as c_char;
        }
        ovm_interface_load {
            name,
            rx_bytes_per_sec: i.rx_bytes_per_sec,
            tx_bytes_per_sec: i.tx_bytes_per_sec,
            speed_mbps: i.speed_mbps.unwrap_or(0),
            utilisation_percent: i.utilisation_percent().unwrap_or(-1.0),
        }
    }
}

/// A VM's load over one sampling interval.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ovm_vm_load_sample {
    /// CPU used, percent of one physical CPU (above 100 for several busy vCPUs).
    pub cpu_percent: f32,
    /// Memory, MiB.
    pub memory_mib: u64,
}

/// How server loads are sampled now.
#[no_mangle]
pub unsafe extern "C" fn ovm_load_sampling_get(
    mgr: *const ovm_manager,
    out: *mut ovm_load_sampling,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let out = out_arg(out, "out")?;
        let s = m.api.load_sampling()?;
        let ms = |d: Duration| d.as_millis() as u64;
        put(
            out,
            ovm_load_sampling {
                interval_ms: ms(s.interval),
                raw_retention_ms: ms(s.raw_retention),
                coarse_interval_ms: ms(s.coarse_interval),
                coarse_retention_ms: ms(s.coarse_retention),
            },
        );
        Ok(())
    })
}

/// Change how server loads are sampled: the interval 1 s to 1 h, the coarse interval a whole
/// multiple of it, each retention at least one of its intervals (otherwise
/// `OVM_RESULT_INVALID_ARGUMENT`, nothing changed).
#[no_mangle]
pub unsafe extern "C" fn ovm_load_sampling_set(
    mgr: *const ovm_manager,
    settings: ovm_load_sampling,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let d = Duration::from_millis;
        m.api.set_load_sampling(LoadSampling {
            interval: d(settings.interval_ms),
            raw_retention: d(settings.raw_retention_ms),
            coarse_interval: d(settings.coarse_interval_ms),
            coarse_retention: d(settings.coarse_retention_ms),
        })?;
        Ok(())
    })
}

/// Sample the load of every owned, reachable server now; `*out_n` (may be NULL) is how many
/// answered.
#[no_mangle]
pub unsafe extern "C" fn ovm_sample_loads(mgr: *const ovm_manager, out_n: *mut usize) -> ovm_result {
    with_mgr!(mgr, |m| {
        let n = m.local_only("ovm_manager_sample_loads")?.sample_loads()?;
        if !out_n.is_null() {
            put(out_n, n);
        }
        Ok(())
    })
}

/// The newest load sample of `server` into `*out`; `*found` is false (and `*out` untouched)
/// before the first sample.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_load(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut ovm_load_sample,
    found: *mut bool,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let server = ServerId(id_arg(server, "server")?);
        let (out, found) = (out_arg(out, "out")?, out_arg(found, "found")?);
        let s = m.api.server_load(server)?;
        put(found, s.is_some());
        if let Some(s) = s {
            put(out, ovm_load_sample::from(&s));
        }
        Ok(())
    })
}

/// Write up to `cap` items into `out`, or report that more are needed.
unsafe fn fill<T, U>(
    items: &[T],
    out: *mut U,
    cap: usize,
    out_n: *mut usize,
    what: &str,
    f: impl Fn(&T) -> U,
) -> Result<(), FfiError> {
    let out_n = out_arg(out_n, "out_n")?;
    if cap > 0 {
        out_arg(out, "out")?;
    }
    // SAFETY: out_n was checked non-null; the caller vouches for its validity.
    unsafe { put(out_n, items.len()) };
    if items.len() > cap {
        return Err(FfiError::new(
            ovm_result::OVM_RESULT_BUFFER_TOO_SMALL,
            format!("{} {what}, room for {cap}", items.len()),
        ));
    }
    for (i, x) in items.iter().enumerate() {
        // SAFETY: i < items.len() <= cap, and out is valid for cap writes per the contract.
        unsafe { put(out.add(i), f(x)) };
    }
    Ok(())
}

/// A server's kept load samples at `resolution` (an `ovm_load_resolution`), oldest first, into
/// `out[0..*out_n]`. `cap` is how many `out` holds (`out` may be NULL when `cap` is 0); with more
/// samples than `cap`, `OVM_RESULT_BUFFER_TOO_SMALL` with `*out_n` set to their number and nothing
/// written.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_load_history(
    mgr: *const ovm_manager,
    server: *const c_char,
    resolution: u32,
    out: *mut ovm_load_sample,
    cap: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let server = ServerId(id_arg(server, "server")?);
        let res = resolution_arg(resolution)?;
        let h = m.api.server_load_history(server, res)?;
        fill(&h, out, cap, out_n, "samples", |s| ovm_load_sample::from(s))
    })
}

fn resolution_arg(resolution: u32) -> Result<LoadResolution, FfiError> {
    match resolution {
        0 => Ok(LoadResolution::Raw),
        1 => Ok(LoadResolution::Coarse),
        other => {
            Err(ovm_core::Error::invalid("resolution", format!("{other} is not an ovm_load_resolution"))
                .into())
        }
    }
}

/// The interfaces of `server`'s newest load sample into `out[0..*out_n]` (none before the first
/// sample), with the same `cap` and `OVM_RESULT_BUFFER_TOO_SMALL` rules as
/// `ovm_server_load_history`.
#[no_mangle]
pub unsafe extern "C" fn ovm_server_interface_loads(
    mgr: *const ovm_manager,
    server: *const c_char,
    out: *mut ovm_interface_load,
    cap: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let server = ServerId(id_arg(server, "server")?);
        let s = m.api.server_load(server)?;
        let list = s.map(|s| s.interfaces).unwrap_or_default();
        fill(&list, out, cap, out_n, "interfaces", |i| ovm_interface_load::from(i))
    })
}

/// A running VM's load in its server's newest sample into `*out`; `*found` is false when it has
/// none.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_load(
    mgr: *const ovm_manager,
    vm: *const c_char,
    out: *mut ovm_vm_load_sample,
    found: *mut bool,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let vm = VmId(id_arg(vm, "vm")?);
        let (out, found) = (out_arg(out, "out")?, out_arg(found, "found")?);
        let l = m.api.vm_load(vm)?;
        put(found, l.is_some());
        if let Some(l) = l {
            put(out, ovm_vm_load_sample { cpu_percent: l.cpu_percent, memory_mib: l.memory_mib });
        }
        Ok(())
    })
}

/// A server's kept load samples at `resolution`, with every VM and interface, as a JSON array of
/// `{"at", "samples", "cpu_percent", "cpus", "free_memory_mib", "guest_memory_mib", "vms": [{"vm",
/// "cpu_percent", "memory_mib"}], "interfaces": [{"name", "rx_bytes_per_sec", "tx_bytes_per_sec",
/// "speed_mbps"}]}` (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_server_load_history_json(
    mgr: *const ovm_manager,
    server: *const c_char,
    resolution: u32,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let server = ServerId(id_arg(server, "server")?);
        put_json(out, &m.api.server_load_history(server, resolution_arg(resolution)?)?)
    })
}
