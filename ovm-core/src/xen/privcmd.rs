//! Hypercalls through Linux's `/dev/xen/privcmd` (dom0 only).
//!
//! Memory that Xen reads or writes during a hypercall must stay mapped and
//! resident: buffers come from `/dev/xen/hypercall` (the kernel's
//! hypercall-buffer device), or, when that device is missing, from
//! page-aligned anonymous memory locked with `mlock(2)`.

use std::fs::{File, OpenOptions};
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::path::Path;

use uuid::Uuid;

use super::error::{XenError, XenResult};
use super::sys::{self, XenDomctl, XenSysctl};

/// Paths of the privcmd device, in the order they are tried.
pub const PRIVCMD_PATHS: [&str; 2] = ["/dev/xen/privcmd", "/proc/xen/privcmd"];
/// Path of the hypercall-buffer device.
pub const HYPERCALL_BUF_PATH: &str = "/dev/xen/hypercall";

/// The hypervisor's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenVersion {
    /// Major version (4 for Xen 4.17.7).
    pub major: u32,
    /// Minor version (17 for Xen 4.17.7).
    pub minor: u32,
    /// Extra version string (".7" for Xen 4.17.7).
    pub extra: String,
}

impl std::fmt::Display for XenVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}{}", self.major, self.minor, self.extra)
    }
}

/// Host facts from `XEN_SYSCTL_physinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysInfo {
    /// Hardware threads per core.
    pub threads_per_core: u32,
    /// Cores per socket.
    pub cores_per_socket: u32,
    /// CPUs currently online.
    pub nr_cpus: u32,
    /// Largest possible CPU id.
    pub max_cpu_id: u32,
    /// NUMA nodes online.
    pub nr_nodes: u32,
    /// CPU frequency in kHz.
    pub cpu_khz: u32,
    /// The host can run HVM guests.
    pub hvm: bool,
    /// The host can run PV guests.
    pub pv: bool,
    /// Hardware-assisted paging is available.
    pub hap: bool,
    /// The hypervisor is built with shadow paging (which live migration of PV guests needs).
    pub shadow: bool,
    /// The boot CPU's feature words (x86: Xen's featureset words 0-7).
    pub hw_cap: [u32; 8],
    /// Total memory in bytes.
    pub total_bytes: u64,
    /// Free memory in bytes.
    pub free_bytes: u64,
    /// Memory waiting to be scrubbed, in bytes.
    pub scrub_bytes: u64,
    /// Memory claimed but not yet allocated, in bytes.
    pub outstanding_bytes: u64,
}

impl PhysInfo {
    /// Decodes Xen's answer: pages to bytes, capability bits to flags.
    fn from_raw(p: &sys::XenSysctlPhysinfo) -> PhysInfo {
        let pg = |n: u64| n.saturating_mul(sys::XEN_PAGE_SIZE);
        PhysInfo {
            threads_per_core: p.threads_per_core,
            cores_per_socket: p.cores_per_socket,
            nr_cpus: p.nr_cpus,
            max_cpu_id: p.max_cpu_id,
            nr_nodes: p.nr_nodes,
            cpu_khz: p.cpu_khz,
            hvm: p.capabilities & sys::XEN_SYSCTL_PHYSCAP_HVM != 0,
            pv: p.capabilities & sys::XEN_SYSCTL_PHYSCAP_PV != 0,
            hap: p.capabilities & sys::XEN_SYSCTL_PHYSCAP_HAP != 0,
            shadow: p.capabilities & sys::XEN_SYSCTL_PHYSCAP_SHADOW != 0,
            hw_cap: p.hw_cap,
            total_bytes: pg(p.total_pages),
            free_bytes: pg(p.free_pages),
            scrub_bytes: pg(p.scrub_pages),
            outstanding_bytes: pg(p.outstanding_pages),
        }
    }
}

/// Why a domain shut down (`SHUTDOWN_*` of Xen's `sched.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutdownReason {
    /// Normal power-off.
    Poweroff,
    /// Reboot requested.
    Reboot,
    /// Suspended (for save or migration).
    Suspend,
    /// Crashed.
    Crash,
    /// Watchdog fired.
    Watchdog,
    /// Soft reset.
    SoftReset,
    /// A code not known to this build.
    Unknown(u8),
}

impl ShutdownReason {
    /// Decodes a `SHUTDOWN_*` code.
    pub fn from_code(code: u32) -> ShutdownReason {
        match code {
            sys::SHUTDOWN_POWEROFF => ShutdownReason::Poweroff,
            sys::SHUTDOWN_REBOOT => ShutdownReason::Reboot,
            sys::SHUTDOWN_SUSPEND => ShutdownReason::Suspend,
            sys::SHUTDOWN_CRASH => ShutdownReason::Crash,
            sys::SHUTDOWN_WATCHDOG => ShutdownReason::Watchdog,
            sys::SHUTDOWN_SOFT_RESET => ShutdownReason::SoftReset,
            other => ShutdownReason::Unknown((other & 0xff) as u8),
        }
    }
}

/// The run state of a domain, derived from its `XEN_DOMINF_*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainState {
    /// A vCPU is running right now.
    Running,
    /// All vCPUs are blocked waiting for events (idle guest).
    Blocked,
    /// Paused by the toolstack.
    Paused,
    /// The guest has shut down, for the given reason, and awaits cleanup.
    Shutdown(ShutdownReason),
    /// Being destroyed.
    Dying,
    /// None of the above flags are set (e.g. runnable but not scheduled).
    NoState,
}

impl DomainState {
    /// Decodes the flags; the most significant condition wins
    /// (dying, shutdown, paused, running, blocked).
    pub fn from_flags(flags: u32) -> DomainState {
        if flags & sys::XEN_DOMINF_DYING != 0 {
            DomainState::Dying
        } else if flags & sys::XEN_DOMINF_SHUTDOWN != 0 {
            let code = (flags >> sys::XEN_DOMINF_SHUTDOWNSHIFT) & sys::XEN_DOMINF_SHUTDOWNMASK;
            DomainState::Shutdown(ShutdownReason::from_code(code))
        } else if flags & sys::XEN_DOMINF_PAUSED != 0 {
            DomainState::Paused
        } else if flags & sys::XEN_DOMINF_RUNNING != 0 {
            DomainState::Running
        } else if flags & sys::XEN_DOMINF_BLOCKED != 0 {
            DomainState::Blocked
        } else {
            DomainState::NoState
        }
    }
}

/// One domain as the hypervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// Domain id.
    pub domid: u32,
    /// Run state.
    pub state: DomainState,
    /// Raw `XEN_DOMINF_*` flags.
    pub flags: u32,
    /// HVM (or PVH) guest rather than PV.
    pub hvm: bool,
    /// Memory currently allocated, in bytes.
    pub memory_bytes: u64,
    /// Memory limit, in bytes.
    pub max_memory_bytes: u64,
    /// Online vCPUs.
    pub online_vcpus: u32,
    /// Highest vCPU id (`u32::MAX` if the domain has no vCPUs).
    pub max_vcpu_id: u32,
    /// CPU time consumed, in nanoseconds.
    pub cpu_time_ns: u64,
    /// The domain handle (the VM's UUID).
    pub uuid: Uuid,
    /// CPU pool id.
    pub cpupool: u32,
}

impl DomainInfo {
    /// Decodes a raw `xen_domctl_getdomaininfo`.
    pub fn from_raw(r: &sys::XenDomctlGetdomaininfo) -> DomainInfo {
        DomainInfo {
            domid: u32::from(r.domain),
            state: DomainState::from_flags(r.flags),
            flags: r.flags,
            hvm: r.flags & sys::XEN_DOMINF_HVM_GUEST != 0,
            memory_bytes: r.tot_pages.saturating_mul(sys::XEN_PAGE_SIZE),
            max_memory_bytes: r.max_pages.saturating_mul(sys::XEN_PAGE_SIZE),
            online_vcpus: r.nr_online_vcpus,
            max_vcpu_id: r.max_vcpu_id,
            cpu_time_ns: r.cpu_time,
            uuid: Uuid::from_bytes(r.handle),
            cpupool: r.cpupool,
        }
    }
}

/// A page-aligned buffer that Xen may access during a hypercall.
#[derive(Debug)]
struct HypercallBuf {
    ptr: *mut u8,
    len: usize,
    locked: bool,
}

// SAFETY: the buffer is plain memory owned exclusively by this value; the raw
// pointer is only dereferenced through `&mut self` methods.
unsafe impl Send for HypercallBuf {}

impl HypercallBuf {
    fn page_size() -> usize {
        // SAFETY: sysconf has no memory-safety preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as usize
        } else {
            4096
        }
    }

    fn new(dev: Option<&File>, bytes: usize) -> XenResult<HypercallBuf> {
        let page = Self::page_size();
        let len = bytes.max(1).div_ceil(page) * page;
        if let Some(dev) = dev {
            // SAFETY: mapping a fresh region (address chosen by the kernel) of
            // the hypercall-buffer device; no existing memory is affected.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    dev.as_raw_fd(),
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                return Ok(HypercallBuf { ptr: p.cast(), len, locked: false });
            }
        }
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(XenError::io("mmap hypercall buffer", std::io::Error::last_os_error()));
        }
        // SAFETY: `p..p+len` is the mapping created just above.
        let r = unsafe { libc::mlock(p, len) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: unmapping the mapping created above, which nothing else references.
            unsafe { libc::munmap(p, len) };
            return Err(XenError::io("mlock hypercall buffer", e));
        }
        Ok(HypercallBuf { ptr: p.cast(), len, locked: true })
    }

    fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// Copies `v` to offset 0.
    fn put<T: Copy>(&mut self, v: &T) {
        assert!(size_of::<T>() <= self.len);
        // SAFETY: the mapping is at least size_of::<T>() bytes (checked) and
        // page-aligned, so suitably aligned for any T used here (align <= 8).
        unsafe { std::ptr::write(self.ptr.cast::<T>(), *v) };
    }

    /// Reads a `T` at byte offset `off`.
    ///
    /// Only used with the `#[repr(C)]` integer-only structs of `sys`, for
    /// which every bit pattern is valid.
    fn get<T: Copy>(&self, off: usize) -> T {
        assert!(off % std::mem::align_of::<T>() == 0 && off + size_of::<T>() <= self.len);
        // SAFETY: in bounds and aligned (checked above; the base is page-aligned);
        // T is plain old data (integers and arrays of integers), so any bytes
        // the hypervisor wrote form a valid T.
        unsafe { std::ptr::read(self.ptr.add(off).cast::<T>()) }
    }
}

impl Drop for HypercallBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr+len` is the mapping made in `new`, no longer used.
        unsafe {
            if self.locked {
                libc::munlock(self.ptr.cast(), self.len);
            }
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// An open privcmd device.
#[derive(Debug)]
pub struct Privcmd {
    fd: File,
    bufdev: Option<File>,
    sysctl_version: u32,
    domctl_version: u32,
}

impl Privcmd {
    /// Opens `/dev/xen/privcmd` (or `/proc/xen/privcmd`) and, if present,
    /// the hypercall-buffer device.
    pub fn open() -> XenResult<Privcmd> {
        let mut last = None;
        for p in PRIVCMD_PATHS {
            match OpenOptions::new().read(true).write(true).open(p) {
                Ok(fd) => {
                    let bufdev = OpenOptions::new().read(true).write(true).open(HYPERCALL_BUF_PATH).ok();
                    return Ok(Privcmd {
                        fd,
                        bufdev,
                        sysctl_version: sys::XEN_SYSCTL_INTERFACE_VERSION,
                        domctl_version: sys::XEN_DOMCTL_INTERFACE_VERSION,
                    });
                }
                Err(e) => last = Some((p, e)),
            }
        }
        let (p, e) = last.expect("at least one path tried");
        Err(XenError::io(format!("open {p}"), e))
    }

    /// True if privcmd exists on this machine (dom0 or a domain with xenfs).
    pub fn available() -> bool {
        PRIVCMD_PATHS.iter().any(|p| Path::new(p).exists())
    }

    /// True if hypercall buffers come from `/dev/xen/hypercall`.
    pub fn uses_hypercall_device(&self) -> bool {
        self.bufdev.is_some()
    }

    fn buffer(&self, bytes: usize) -> XenResult<HypercallBuf> {
        HypercallBuf::new(self.bufdev.as_ref(), bytes)
    }

    /// Issues a raw hypercall; returns its non-negative result or the errno.
    fn hypercall(&self, op: u64, args: [u64; 5], what: &'static str) -> XenResult<i64> {
        let mut h = sys::PrivcmdHypercall { op, arg: args };
        // SAFETY: the ioctl reads and writes only `h`, a live PrivcmdHypercall
        // of the size encoded in the request; pointers inside `args` refer to
        // hypercall buffers that the callers keep alive across this call.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                sys::IOCTL_PRIVCMD_HYPERCALL as libc::Ioctl,
                &mut h as *mut sys::PrivcmdHypercall,
            )
        };
        if r < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            return Err(XenError::Hypercall { op: what, errno });
        }
        Ok(i64::from(r))
    }

    /// `SCHEDOP_watchdog` for the calling domain (dom0 here): `id` 0 creates a watchdog and
    /// returns its id; otherwise the watchdog `id` is petted with a new `timeout_secs` (0 destroys
    /// it). A watchdog not petted within its timeout shuts its domain down; for dom0, Xen resets
    /// the machine.
    pub fn watchdog(&self, id: u32, timeout_secs: u32) -> XenResult<u32> {
        let mut buf = self.buffer(size_of::<sys::SchedWatchdog>())?;
        buf.put(&sys::SchedWatchdog { id, timeout: timeout_secs });
        let r = self.hypercall(
            sys::HYPERVISOR_SCHED_OP,
            [sys::SCHEDOP_WATCHDOG, buf.addr(), 0, 0, 0],
            "sched_op/watchdog",
        )?;
        Ok(u32::try_from(r).unwrap_or(0))
    }

    /// `__HYPERVISOR_xen_version`: version and extra version.
    pub fn xen_version(&self) -> XenResult<XenVersion> {
        let v =
            self.hypercall(sys::HYPERVISOR_XEN_VERSION, [sys::XENVER_VERSION, 0, 0, 0, 0], "xen_version")?;
        let buf = self.buffer(sys::XEN_EXTRAVERSION_LEN)?;
        self.hypercall(
            sys::HYPERVISOR_XEN_VERSION,
            [sys::XENVER_EXTRAVERSION, buf.addr(), 0, 0, 0],
            "xen_version/extraversion",
        )?;
        let raw: [u8; sys::XEN_EXTRAVERSION_LEN] = buf.get(0);
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        Ok(XenVersion {
            major: (v as u32) >> 16,
            minor: (v as u32) & 0xffff,
            extra: String::from_utf8_lossy(&raw[..end]).into_owned(),
        })
    }

    /// Sends other sysctl/domctl interface versions than Xen 4.17's (the
    /// structures stay those of 4.17). Only useful to exercise the mismatch
    /// detection against a real hypervisor.
    pub fn with_interface_versions(mut self, sysctl: u32, domctl: u32) -> Privcmd {
        self.sysctl_version = sysctl;
        self.domctl_version = domctl;
        self
    }

    /// Checks that the hypervisor accepts this build's sysctl and domctl
    /// interfaces ([`XenError::InterfaceVersion`] if not).
    pub fn check_interfaces(&self) -> XenResult<()> {
        self.physinfo()?;
        // A domctl on a domain that cannot exist: Xen checks the interface
        // version first (EACCES), then looks the domain up (ESRCH).
        match self.unpause_domain(sys::DOMID_FIRST_RESERVED - 1) {
            Ok(()) | Err(XenError::NoSuchDomain(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Maps `EACCES`, Xen's answer to an interface-version mismatch, to a
    /// typed error when the versions cannot match.
    fn check_interface(&self, e: XenError, what: &'static str, sent: u32, expected: u32) -> XenError {
        if let XenError::Hypercall { errno, .. } = &e {
            let xen = self.xen_version().ok();
            if version_mismatch(*errno, sent, expected, xen.as_ref().map(|v| (v.major, v.minor))) {
                return XenError::InterfaceVersion {
                    what,
                    sent,
                    supported: sys::SUPPORTED_XEN,
                    found: xen.map_or_else(|| "unknown".into(), |v| v.to_string()),
                };
            }
        }
        e
    }

    /// Runs a sysctl. Buffers referenced by `req` must outlive the call.
    fn sysctl(&self, req: &XenSysctl, what: &'static str) -> XenResult<XenSysctl> {
        let mut buf = self.buffer(size_of::<XenSysctl>())?;
        let mut req = *req;
        req.interface_version = self.sysctl_version;
        buf.put(&req);
        self.hypercall(sys::HYPERVISOR_SYSCTL, [buf.addr(), 0, 0, 0, 0], what).map_err(|e| {
            self.check_interface(e, "sysctl", self.sysctl_version, sys::XEN_SYSCTL_INTERFACE_VERSION)
        })?;
        Ok(buf.get(0))
    }

    fn domctl(&self, req: &XenDomctl, what: &'static str) -> XenResult<XenDomctl> {
        let mut buf = self.buffer(size_of::<XenDomctl>())?;
        let mut req = *req;
        req.interface_version = self.domctl_version;
        buf.put(&req);
        self.hypercall(sys::HYPERVISOR_DOMCTL, [buf.addr(), 0, 0, 0, 0], what).map_err(|e| {
            self.check_interface(e, "domctl", self.domctl_version, sys::XEN_DOMCTL_INTERFACE_VERSION)
        })?;
        Ok(buf.get(0))
    }

    /// `XEN_SYSCTL_physinfo`: CPUs, memory, capabilities and CPU features of the host.
    pub fn physinfo(&self) -> XenResult<PhysInfo> {
        let out = self.sysctl(&XenSysctl::new(sys::XEN_SYSCTL_PHYSINFO), "sysctl/physinfo")?;
        // SAFETY: the union holds plain integers only; every bit pattern is a
        // valid XenSysctlPhysinfo, and physinfo is the member Xen filled in.
        let p = unsafe { out.u.physinfo };
        Ok(PhysInfo::from_raw(&p))
    }

    /// `XEN_SYSCTL_getdomaininfolist`: every domain, in domain-id order.
    pub fn domains(&self) -> XenResult<Vec<DomainInfo>> {
        const BATCH: u32 = 128;
        let entry = size_of::<sys::XenDomctlGetdomaininfo>();
        let list = self.buffer(entry * BATCH as usize)?;
        let mut out = Vec::new();
        let mut first: u32 = 0;
        while first < sys::DOMID_FIRST_RESERVED {
            let n = self.domain_batch(&list, first as u16, BATCH, &mut out)?;
            if n < BATCH {
                break;
            }
            first = out.last().map_or(sys::DOMID_FIRST_RESERVED, |d| d.domid + 1);
        }
        Ok(out)
    }

    /// `XEN_SYSCTL_getcpuinfo`: the time each physical CPU has spent idle since boot, ns, in CPU
    /// order (at most `max_cpus` CPUs).
    pub fn cpu_idle_times(&self, max_cpus: u32) -> XenResult<Vec<u64>> {
        let max = max_cpus.clamp(1, 4096);
        let list = self.buffer(size_of::<u64>() * max as usize)?;
        let mut req = XenSysctl::new(sys::XEN_SYSCTL_GETCPUINFO);
        req.u.getcpuinfo =
            sys::XenSysctlGetcpuinfo { max_cpus: max, info: list.addr(), ..Default::default() };
        let res = self.sysctl(&req, "sysctl/getcpuinfo")?;
        // SAFETY: integer-only union member, filled in by Xen.
        let n = unsafe { res.u.getcpuinfo.nr_cpus }.min(max);
        Ok((0..n as usize).map(|i| list.get::<u64>(i * size_of::<u64>())).collect())
    }

    fn domain_batch(
        &self,
        list: &HypercallBuf,
        first: u16,
        max: u32,
        out: &mut Vec<DomainInfo>,
    ) -> XenResult<u32> {
        let mut req = XenSysctl::new(sys::XEN_SYSCTL_GETDOMAININFOLIST);
        req.u.getdomaininfolist = sys::XenSysctlGetdomaininfolist {
            first_domain: first,
            max_domains: max,
            buffer: list.addr(),
            ..Default::default()
        };
        let res = self.sysctl(&req, "sysctl/getdomaininfolist")?;
        // SAFETY: integer-only union member, filled in by Xen.
        let n = unsafe { res.u.getdomaininfolist.num_domains }.min(max);
        let entry = size_of::<sys::XenDomctlGetdomaininfo>();
        for i in 0..n as usize {
            let raw: sys::XenDomctlGetdomaininfo = list.get(i * entry);
            out.push(DomainInfo::from_raw(&raw));
        }
        Ok(n)
    }

    /// Information about one domain.
    pub fn domain(&self, domid: u32) -> XenResult<DomainInfo> {
        let d = check_domid(domid)?;
        let list = self.buffer(size_of::<sys::XenDomctlGetdomaininfo>())?;
        let mut out = Vec::new();
        self.domain_batch(&list, d, 1, &mut out)?;
        out.into_iter().find(|i| i.domid == domid).ok_or(XenError::NoSuchDomain(domid))
    }

    fn simple_domctl(&self, cmd: u32, domid: u32, what: &'static str) -> XenResult<()> {
        let d = check_domid(domid)?;
        self.domctl(&XenDomctl::new(cmd, d), what).map(drop).map_err(|e| no_such(e, domid))
    }

    /// `XEN_DOMCTL_pausedomain`.
    pub fn pause_domain(&self, domid: u32) -> XenResult<()> {
        self.simple_domctl(sys::XEN_DOMCTL_PAUSEDOMAIN, domid, "domctl/pausedomain")
    }

    /// `XEN_DOMCTL_unpausedomain`.
    pub fn unpause_domain(&self, domid: u32) -> XenResult<()> {
        self.simple_domctl(sys::XEN_DOMCTL_UNPAUSEDOMAIN, domid, "domctl/unpausedomain")
    }

    /// `XEN_DOMCTL_destroydomain`, repeated while Xen asks to continue
    /// (`EAGAIN` from its preemptible teardown). This kills the domain; the
    /// toolstack's device cleanup (backends, xenstore) is separate.
    pub fn destroy_domain(&self, domid: u32) -> XenResult<()> {
        for _ in 0..10_000 {
            match self.simple_domctl(sys::XEN_DOMCTL_DESTROYDOMAIN, domid, "domctl/destroydomain") {
                Err(XenError::Hypercall { errno, .. }) if errno == libc::EAGAIN || errno == libc::EINTR => {
                    continue
                }
                other => return other,
            }
        }
        Err(XenError::Timeout(format!("destroying domain {domid}")))
    }

    /// `XEN_DOMCTL_max_mem`: the domain's memory limit, in KiB.
    pub fn set_max_mem(&self, domid: u32, max_kib: u64) -> XenResult<()> {
        let d = check_domid(domid)?;
        let mut req = XenDomctl::new(sys::XEN_DOMCTL_MAX_MEM, d);
        req.u.max_mem = sys::XenDomctlMaxMem { max_memkb: max_kib };
        self.domctl(&req, "domctl/max_mem").map(drop).map_err(|e| no_such(e, domid))
    }

    /// `XEN_DOMCTL_max_vcpus`: sets the number of vCPUs of a domain being
    /// built (Xen refuses to change it later).
    pub fn set_max_vcpus(&self, domid: u32, max: u32) -> XenResult<()> {
        let d = check_domid(domid)?;
        let mut req = XenDomctl::new(sys::XEN_DOMCTL_MAX_VCPUS, d);
        req.u.max_vcpus = sys::XenDomctlMaxVcpus { max };
        self.domctl(&req, "domctl/max_vcpus").map(drop).map_err(|e| no_such(e, domid))
    }
}

/// Whether an error number from a sysctl/domctl means "interface version
/// mismatch": Xen answers `EACCES` to a wrong `interface_version`, which is
/// certain if we sent another version than 4.17's or the hypervisor is not
/// 4.17 (an `EACCES` from a matching 4.17 is a permission problem).
fn version_mismatch(errno: i32, sent: u32, expected: u32, xen: Option<(u32, u32)>) -> bool {
    errno == libc::EACCES && (sent != expected || xen.is_some_and(|v| v != sys::SUPPORTED_XEN_VERSION))
}

fn check_domid(domid: u32) -> XenResult<u16> {
    if domid >= sys::DOMID_FIRST_RESERVED {
        return Err(XenError::InvalidArgument(format!("domain id {domid} is reserved or out of range")));
    }
    Ok(domid as u16)
}

fn no_such(e: XenError, domid: u32) -> XenError {
    match e {
        XenError::Hypercall { errno, .. } if errno == libc::ESRCH => XenError::NoSuchDomain(domid),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_from_flags() {
        use sys::*;
        assert_eq!(DomainState::from_flags(XEN_DOMINF_RUNNING), DomainState::Running);
        assert_eq!(DomainState::from_flags(XEN_DOMINF_BLOCKED), DomainState::Blocked);
        assert_eq!(DomainState::from_flags(XEN_DOMINF_PAUSED | XEN_DOMINF_BLOCKED), DomainState::Paused);
        assert_eq!(
            DomainState::from_flags(XEN_DOMINF_SHUTDOWN | (SHUTDOWN_REBOOT << XEN_DOMINF_SHUTDOWNSHIFT)),
            DomainState::Shutdown(ShutdownReason::Reboot)
        );
        assert_eq!(
            DomainState::from_flags(XEN_DOMINF_SHUTDOWN | (SHUTDOWN_CRASH << XEN_DOMINF_SHUTDOWNSHIFT)),
            DomainState::Shutdown(ShutdownReason::Crash)
        );
        assert_eq!(
            DomainState::from_flags(XEN_DOMINF_SHUTDOWN | (200 << XEN_DOMINF_SHUTDOWNSHIFT)),
            DomainState::Shutdown(ShutdownReason::Unknown(200))
        );
        assert_eq!(DomainState::from_flags(XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN), DomainState::Dying);
        assert_eq!(DomainState::from_flags(0), DomainState::NoState);
    }

    #[test]
    fn domain_info_decodes_units_and_uuid() {
        let raw = sys::XenDomctlGetdomaininfo {
            domain: 3,
            flags: sys::XEN_DOMINF_RUNNING | sys::XEN_DOMINF_HVM_GUEST,
            tot_pages: 65536,
            max_pages: 65792,
            cpu_time: 123_456_789,
            nr_online_vcpus: 2,
            max_vcpu_id: 1,
            handle: *Uuid::parse_str("6f1d8e8b-8f7a-4d8e-9f2c-2b1d0c9a8e7f").unwrap().as_bytes(),
            ..Default::default()
        };
        let d = DomainInfo::from_raw(&raw);
        assert_eq!(d.domid, 3);
        assert!(d.hvm);
        assert_eq!(d.state, DomainState::Running);
        assert_eq!(d.memory_bytes, 256 * 1024 * 1024);
        assert_eq!(d.max_memory_bytes, 65792 * 4096);
        assert_eq!(d.uuid.to_string(), "6f1d8e8b-8f7a-4d8e-9f2c-2b1d0c9a8e7f");
        assert_eq!(d.online_vcpus, 2);
    }

    #[test]
    fn physinfo_decodes_capabilities_and_cpu_features() {
        // Xen 4.17's XEN_SYSCTL_PHYSCAP_*: hvm 1<<0, pv 1<<1, directio 1<<2, hap 1<<3, shadow 1<<4.
        let raw = sys::XenSysctlPhysinfo {
            nr_cpus: 4,
            capabilities: 0b1_1011,
            total_pages: 1024,
            hw_cap: [0x178b_fbff, 0x7ffa_3223, 0, 0, 0, 0, 0, 1],
            ..Default::default()
        };
        let p = PhysInfo::from_raw(&raw);
        assert_eq!((p.hvm, p.pv, p.hap, p.shadow), (true, true, true, true));
        assert_eq!(p.total_bytes, 4 << 20);
        assert_eq!(p.hw_cap[1], 0x7ffa_3223);
        let no_shadow = PhysInfo::from_raw(&sys::XenSysctlPhysinfo { capabilities: 0b0_1110, ..raw });
        assert_eq!(
            (no_shadow.hvm, no_shadow.pv, no_shadow.hap, no_shadow.shadow),
            (false, true, true, false)
        );
    }

    #[test]
    fn requests_carry_interface_versions() {
        let s = XenSysctl::new(sys::XEN_SYSCTL_PHYSINFO);
        assert_eq!((s.cmd, s.interface_version), (3, 0x15));
        let d = XenDomctl::new(sys::XEN_DOMCTL_PAUSEDOMAIN, 7);
        assert_eq!((d.cmd, d.interface_version, d.domain), (3, 0x15, 7));
        assert!(check_domid(sys::DOMID_FIRST_RESERVED).is_err());
        assert_eq!(check_domid(5).unwrap(), 5);
    }

    #[test]
    fn interface_mismatch_classification() {
        let (iv, eacces) = (sys::XEN_SYSCTL_INTERFACE_VERSION, libc::EACCES);
        assert!(!version_mismatch(eacces, iv, iv, Some((4, 17))), "plain permission problem");
        assert!(version_mismatch(eacces, iv, iv, Some((4, 18))), "other hypervisor release");
        assert!(version_mismatch(eacces, 0x14, iv, Some((4, 17))), "other version sent");
        assert!(!version_mismatch(libc::ESRCH, iv, iv, Some((4, 18))), "only EACCES");
        assert!(!version_mismatch(eacces, iv, iv, None), "unknown release: keep the raw error");
    }

    #[test]
    fn locked_fallback_buffer_is_page_aligned_and_usable() {
        let mut b = HypercallBuf::new(None, 100).unwrap();
        assert_eq!(b.addr() as usize % HypercallBuf::page_size(), 0);
        assert!(b.len >= 100);
        b.put(&XenSysctl::new(sys::XEN_SYSCTL_PHYSINFO));
        let back: XenSysctl = b.get(0);
        assert_eq!(back.interface_version, sys::XEN_SYSCTL_INTERFACE_VERSION);
    }

    #[test]
    fn open_without_xen_is_a_typed_error() {
        if Privcmd::available() {
            // Running inside a Xen domain: opening must then succeed.
            assert!(Privcmd::open().is_ok());
        } else {
            assert!(matches!(Privcmd::open(), Err(XenError::Io { .. })));
        }
    }
}
