//! Raw ABI of the Xen 4.17 hypercall interfaces used by ovm (x86-64 only):
//! the Linux privcmd ioctl, `xen_version`, `sysctl` and `domctl`.
//!
//! Layouts follow Xen 4.17's public headers (`xen/include/public/sysctl.h`,
//! `domctl.h`, `xen.h`, `arch-x86/xen.h`) and Linux's `privcmd.h`; every
//! struct has compile-time size and offset assertions.
//! `XEN_SYSCTL_INTERFACE_VERSION` and `XEN_DOMCTL_INTERFACE_VERSION` are both
//! `0x15` in Xen 4.17.

#![allow(missing_docs)] // field names are those of the C headers

use std::mem::{offset_of, size_of};

/// Xen's page size on x86 (pages in sysctl/domctl results are 4 KiB).
pub const XEN_PAGE_SIZE: u64 = 4096;

/// The Xen release whose interfaces this module speaks.
pub const SUPPORTED_XEN: &str = "4.17";
/// Major and minor version of [`SUPPORTED_XEN`].
pub const SUPPORTED_XEN_VERSION: (u32, u32) = (4, 17);

// Hypercall numbers (xen.h).
pub const HYPERVISOR_XEN_VERSION: u64 = 17;
pub const HYPERVISOR_SYSCTL: u64 = 35;
pub const HYPERVISOR_DOMCTL: u64 = 36;
/// `__HYPERVISOR_sched_op`.
pub const HYPERVISOR_SCHED_OP: u64 = 29;
/// `SCHEDOP_watchdog`: create, pet or destroy a watchdog of the calling domain.
pub const SCHEDOP_WATCHDOG: u64 = 6;

/// `struct sched_watchdog` (public/sched.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedWatchdog {
    /// 0 to create a watchdog (the hypercall returns its id); otherwise the watchdog to pet.
    pub id: u32,
    /// Seconds until it fires if not petted again; 0 destroys it.
    pub timeout: u32,
}

// xen_version sub-commands (version.h).
pub const XENVER_VERSION: u64 = 0;
pub const XENVER_EXTRAVERSION: u64 = 1;
/// `xen_extraversion_t` is `char[16]`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;

// sysctl (sysctl.h).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x0000_0015;
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;
pub const XEN_SYSCTL_GETCPUINFO: u32 = 8;
pub const XEN_SYSCTL_PHYSCAP_HVM: u32 = 1 << 0;
pub const XEN_SYSCTL_PHYSCAP_PV: u32 = 1 << 1;
pub const XEN_SYSCTL_PHYSCAP_HAP: u32 = 1 << 3;
pub const XEN_SYSCTL_PHYSCAP_SHADOW: u32 = 1 << 4;

// domctl (domctl.h).
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x0000_0015;
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;

// xen_domctl_getdomaininfo.flags.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
pub const XEN_DOMINF_DEBUGGED: u32 = 1 << 6;
pub const XEN_DOMINF_XS_DOMAIN: u32 = 1 << 7;
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;

// Shutdown reasons (sched.h).
pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_REBOOT: u32 = 1;
pub const SHUTDOWN_SUSPEND: u32 = 2;
pub const SHUTDOWN_CRASH: u32 = 3;
pub const SHUTDOWN_WATCHDOG: u32 = 4;
pub const SHUTDOWN_SOFT_RESET: u32 = 5;

/// First reserved domain id (`DOMID_FIRST_RESERVED`); real domains are below.
pub const DOMID_FIRST_RESERVED: u32 = 0x7FF0;

/// `struct privcmd_hypercall` (Linux `xen/privcmd.h`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PrivcmdHypercall {
    pub op: u64,
    pub arg: [u64; 5],
}

/// `IOCTL_PRIVCMD_HYPERCALL` = `_IOC(_IOC_NONE, 'P', 0, sizeof(privcmd_hypercall))`.
pub const IOCTL_PRIVCMD_HYPERCALL: u64 =
    ((size_of::<PrivcmdHypercall>() as u64) << 16) | ((b'P' as u64) << 8);

/// `struct xen_sysctl_physinfo`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenSysctlPhysinfo {
    pub threads_per_core: u32,
    pub cores_per_socket: u32,
    pub nr_cpus: u32,
    pub max_cpu_id: u32,
    pub nr_nodes: u32,
    pub max_node_id: u32,
    pub cpu_khz: u32,
    pub capabilities: u32,
    pub arch_capabilities: u32,
    pub pad: u32,
    pub total_pages: u64,
    pub free_pages: u64,
    pub scrub_pages: u64,
    pub outstanding_pages: u64,
    pub max_mfn: u64,
    pub hw_cap: [u32; 8],
}

/// `struct xen_sysctl_getdomaininfolist`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenSysctlGetdomaininfolist {
    pub first_domain: u16,
    pub _pad0: u16,
    pub max_domains: u32,
    /// `XEN_GUEST_HANDLE_64(xen_domctl_getdomaininfo_t)`: a pointer into
    /// hypercall-safe memory.
    pub buffer: u64,
    pub num_domains: u32,
    pub _pad1: u32,
}

/// `struct xen_sysctl_getcpuinfo`: the idle time of each physical CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenSysctlGetcpuinfo {
    pub max_cpus: u32,
    pub _pad0: u32,
    /// `XEN_GUEST_HANDLE_64(xen_sysctl_cpuinfo_t)`: `max_cpus` entries of one `uint64_t`
    /// (`idletime`, ns) in hypercall-safe memory.
    pub info: u64,
    pub nr_cpus: u32,
    pub _pad1: u32,
}

/// `struct xen_arch_domainconfig` (x86).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenArchDomainconfig {
    pub emulation_flags: u32,
    pub misc_flags: u32,
}

/// `struct xen_domctl_getdomaininfo`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenDomctlGetdomaininfo {
    pub domain: u16,
    pub pad1: u16,
    pub flags: u32,
    pub tot_pages: u64,
    pub max_pages: u64,
    pub outstanding_pages: u64,
    pub shr_pages: u64,
    pub paged_pages: u64,
    pub shared_info_frame: u64,
    pub cpu_time: u64,
    pub nr_online_vcpus: u32,
    pub max_vcpu_id: u32,
    pub ssidref: u32,
    pub handle: [u8; 16],
    pub cpupool: u32,
    pub gpaddr_bits: u8,
    pub pad2: [u8; 7],
    pub arch_config: XenArchDomainconfig,
}

/// `struct xen_domctl_max_mem`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenDomctlMaxMem {
    pub max_memkb: u64,
}

/// `struct xen_domctl_max_vcpus`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenDomctlMaxVcpus {
    pub max: u32,
}

/// The union of `struct xen_sysctl` (padded to 128 bytes by Xen).
#[repr(C)]
#[derive(Clone, Copy)]
pub union XenSysctlU {
    pub physinfo: XenSysctlPhysinfo,
    pub getdomaininfolist: XenSysctlGetdomaininfolist,
    pub getcpuinfo: XenSysctlGetcpuinfo,
    pub pad: [u8; 128],
}

/// `struct xen_sysctl`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct XenSysctl {
    pub cmd: u32,
    pub interface_version: u32,
    pub u: XenSysctlU,
}

impl std::fmt::Debug for XenSysctlU {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XenSysctlU { .. }")
    }
}

impl XenSysctl {
    /// A zeroed request for `cmd` with this build's interface version.
    pub fn new(cmd: u32) -> XenSysctl {
        XenSysctl { cmd, interface_version: XEN_SYSCTL_INTERFACE_VERSION, u: XenSysctlU { pad: [0; 128] } }
    }
}

impl std::fmt::Debug for XenSysctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenSysctl").field("cmd", &self.cmd).finish_non_exhaustive()
    }
}

/// The union of `struct xen_domctl` (padded to 128 bytes by Xen).
#[repr(C)]
#[derive(Clone, Copy)]
pub union XenDomctlU {
    pub getdomaininfo: XenDomctlGetdomaininfo,
    pub max_mem: XenDomctlMaxMem,
    pub max_vcpus: XenDomctlMaxVcpus,
    pub pad: [u8; 128],
}

/// `struct xen_domctl`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct XenDomctl {
    pub cmd: u32,
    pub interface_version: u32,
    pub domain: u16,
    pub _pad: [u16; 3],
    pub u: XenDomctlU,
}

impl std::fmt::Debug for XenDomctlU {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XenDomctlU { .. }")
    }
}

impl XenDomctl {
    /// A zeroed request for `cmd` on `domain` with this build's interface version.
    pub fn new(cmd: u32, domain: u16) -> XenDomctl {
        XenDomctl {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            _pad: [0; 3],
            u: XenDomctlU { pad: [0; 128] },
        }
    }
}

impl std::fmt::Debug for XenDomctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenDomctl")
            .field("cmd", &self.cmd)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Layout assertions against Xen 4.17's public headers (x86-64).

macro_rules! assert_layout {
    ($t:ty, size = $size:expr, align = $align:expr $(, $field:ident @ $off:expr)* $(,)?) => {
        const _: () = assert!(size_of::<$t>() == $size, concat!("size of ", stringify!($t)));
        const _: () = assert!(std::mem::align_of::<$t>() == $align, concat!("align of ", stringify!($t)));
        $(const _: () = assert!(offset_of!($t, $field) == $off, concat!(stringify!($t), ".", stringify!($field)));)*
    };
}

assert_layout!(PrivcmdHypercall, size = 48, align = 8, op @ 0, arg @ 8);
const _: () = assert!(IOCTL_PRIVCMD_HYPERCALL == 0x0030_5000);

assert_layout!(XenSysctlPhysinfo, size = 112, align = 8,
    threads_per_core @ 0, cores_per_socket @ 4, nr_cpus @ 8, max_cpu_id @ 12, nr_nodes @ 16,
    max_node_id @ 20, cpu_khz @ 24, capabilities @ 28, arch_capabilities @ 32, pad @ 36,
    total_pages @ 40, free_pages @ 48, scrub_pages @ 56, outstanding_pages @ 64, max_mfn @ 72, hw_cap @ 80);
assert_layout!(XenSysctlGetdomaininfolist, size = 24, align = 8,
    first_domain @ 0, max_domains @ 4, buffer @ 8, num_domains @ 16);
assert_layout!(XenArchDomainconfig, size = 8, align = 4, emulation_flags @ 0, misc_flags @ 4);
assert_layout!(XenDomctlGetdomaininfo, size = 112, align = 8,
    domain @ 0, pad1 @ 2, flags @ 4, tot_pages @ 8, max_pages @ 16, outstanding_pages @ 24, shr_pages @ 32,
    paged_pages @ 40, shared_info_frame @ 48, cpu_time @ 56, nr_online_vcpus @ 64, max_vcpu_id @ 68,
    ssidref @ 72, handle @ 76, cpupool @ 92, gpaddr_bits @ 96, pad2 @ 97, arch_config @ 104);
assert_layout!(XenDomctlMaxMem, size = 8, align = 8, max_memkb @ 0);
assert_layout!(XenDomctlMaxVcpus, size = 4, align = 4, max @ 0);
assert_layout!(XenSysctlU, size = 128, align = 8);
assert_layout!(XenSysctl, size = 136, align = 8, cmd @ 0, interface_version @ 4, u @ 8);
assert_layout!(XenDomctlU, size = 128, align = 8);
assert_layout!(XenDomctl, size = 144, align = 8, cmd @ 0, interface_version @ 4, domain @ 8, _pad @ 10, u @ 16);
