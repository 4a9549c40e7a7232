//! Domain creation through the Xen toolstack: [`XlDomainBuilder`] writes an
//! `xl` configuration file and runs `xl create`. Building a domain directly
//! with hypercalls (memory population, PV page tables, device setup) is the
//! job of libxl and is not reimplemented here. HVM and PVHVM guests get their
//! device model (`qemu-system-xen`, which libxl starts in dom0), SeaBIOS, a
//! boot order, their serial port written to the console log and a VNC server
//! on dom0's loopback (reached only through the agent).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use uuid::Uuid;

use super::error::{XenError, XenResult};

/// The guest type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestType {
    /// Paravirtualised.
    Pv,
    /// PVH.
    Pvh,
    /// Fully virtualised: emulated devices only (no Xen platform device, so the guest's PV
    /// drivers stay idle).
    Hvm,
    /// Fully virtualised with PV drivers: the Xen platform device lets the guest unplug the
    /// emulated disks and NICs and use PV ones.
    PvHvm,
}

impl GuestType {
    /// Whether the guest is fully virtualised (HVM or PVHVM: firmware and a device model).
    pub fn is_hvm(self) -> bool {
        matches!(self, GuestType::Hvm | GuestType::PvHvm)
    }
}

/// A boot device of an HVM guest, in the order of [`XlDomainBuilder::boot_order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XlBoot {
    /// The first hard disk.
    Disk,
    /// The CD-ROM drive.
    Cdrom,
    /// The network (PXE, through the NIC's iPXE ROM).
    Network,
}

impl XlBoot {
    fn letter(self) -> char {
        match self {
            XlBoot::Disk => 'c',
            XlBoot::Cdrom => 'd',
            XlBoot::Network => 'n',
        }
    }
}

/// A disk of a domain (`disk=[...]` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlDisk {
    /// Backing file or block device.
    pub target: PathBuf,
    /// Guest device name, e.g. `xvda`.
    pub vdev: String,
    /// `raw` or `qcow2` ...
    pub format: String,
    /// Read-only access.
    pub readonly: bool,
    /// A CD-ROM drive (HVM guests): `target` is its ISO, or empty for an empty drive.
    pub cdrom: bool,
}

/// A network interface of a domain (`vif=[...]` entry) on a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XlVif {
    /// Bridge in dom0.
    pub bridge: String,
    /// MAC address (`None`: let the toolstack choose).
    pub mac: Option<String>,
}

/// Whether `mac` is a MAC address `xx:xx:xx:xx:xx:xx` (hexadecimal digits).
pub fn check_mac(mac: &str) -> XenResult<()> {
    let ok = mac.len() == 17
        && mac.split(':').count() == 6
        && mac.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(XenError::InvalidArgument(format!("bad MAC address {mac:?}")));
    }
    Ok(())
}

impl XlVif {
    /// The `xl` device string, `bridge=B[,mac=M]` (as in `vif=[...]` and `xl network-attach`),
    /// with every value validated.
    pub fn spec(&self) -> XenResult<String> {
        check_text("bridge", &self.bridge)?;
        if self.bridge.is_empty() || self.bridge.contains(',') || self.bridge.contains('=') {
            return Err(XenError::InvalidArgument(format!("bad bridge {:?}", self.bridge)));
        }
        let mut s = format!("bridge={}", self.bridge);
        if let Some(m) = &self.mac {
            check_mac(m)?;
            s.push_str(&format!(",mac={m}"));
        }
        Ok(s)
    }
}

/// What the toolstack does when the guest powers off, reboots or crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleAction {
    /// Destroy the domain.
    Destroy,
    /// Restart it.
    Restart,
    /// Keep it in the shut-down state.
    Preserve,
}

impl LifecycleAction {
    fn word(self) -> &'static str {
        match self {
            LifecycleAction::Destroy => "destroy",
            LifecycleAction::Restart => "restart",
            LifecycleAction::Preserve => "preserve",
        }
    }
}

/// Builds a PV, PVH, HVM or PVHVM domain through `xl create`.
#[derive(Debug, Clone)]
pub struct XlDomainBuilder {
    name: String,
    guest_type: GuestType,
    boot: Vec<XlBoot>,
    serial_log: Option<PathBuf>,
    vnc: bool,
    kernel: Option<PathBuf>,
    ramdisk: Option<PathBuf>,
    cmdline: Option<String>,
    memory_mib: u64,
    maxmem_mib: Option<u64>,
    vcpus: u32,
    maxvcpus: Option<u32>,
    uuid: Option<Uuid>,
    disks: Vec<XlDisk>,
    vifs: Vec<XlVif>,
    on_poweroff: LifecycleAction,
    on_reboot: LifecycleAction,
    on_crash: LifecycleAction,
}

fn check_text(what: &str, s: &str) -> XenResult<()> {
    if s.chars().any(|c| c == '"' || c == '\\' || c == '\'' || c.is_control()) {
        return Err(XenError::InvalidArgument(format!("{what} {s:?} contains quotes or control characters")));
    }
    Ok(())
}

fn check_path(what: &str, p: &Path) -> XenResult<String> {
    let s = p
        .to_str()
        .ok_or_else(|| XenError::InvalidArgument(format!("{what} path {} is not UTF-8", p.display())))?;
    check_text(what, s)?;
    if s.contains(',') {
        return Err(XenError::InvalidArgument(format!("{what} path {s:?} contains a comma")));
    }
    Ok(s.to_string())
}

impl XlDomainBuilder {
    /// A PV domain named `name` with 256 MiB and one vCPU.
    pub fn new(name: impl Into<String>) -> XlDomainBuilder {
        XlDomainBuilder {
            name: name.into(),
            guest_type: GuestType::Pv,
            boot: Vec::new(),
            serial_log: None,
            vnc: false,
            kernel: None,
            ramdisk: None,
            cmdline: None,
            memory_mib: 256,
            maxmem_mib: None,
            vcpus: 1,
            maxvcpus: None,
            uuid: None,
            disks: Vec::new(),
            vifs: Vec::new(),
            on_poweroff: LifecycleAction::Destroy,
            on_reboot: LifecycleAction::Restart,
            on_crash: LifecycleAction::Destroy,
        }
    }

    /// PV, PVH, HVM or PVHVM.
    pub fn guest_type(mut self, t: GuestType) -> Self {
        self.guest_type = t;
        self
    }
    /// The boot order of an HVM guest (empty: the disk, then the CD-ROM drive).
    pub fn boot_order(mut self, order: Vec<XlBoot>) -> Self {
        self.boot = order;
        self
    }
    /// Where an HVM guest's first serial port is written (its text console).
    pub fn serial_log(mut self, p: impl Into<PathBuf>) -> Self {
        self.serial_log = Some(p.into());
        self
    }
    /// A VNC server for the guest's screen on dom0's loopback, at the first free display.
    pub fn vnc(mut self, on: bool) -> Self {
        self.vnc = on;
        self
    }
    /// The guest kernel (a plain ELF `vmlinux` boots fastest).
    pub fn kernel(mut self, p: impl Into<PathBuf>) -> Self {
        self.kernel = Some(p.into());
        self
    }
    /// The initial ramdisk.
    pub fn ramdisk(mut self, p: impl Into<PathBuf>) -> Self {
        self.ramdisk = Some(p.into());
        self
    }
    /// The kernel command line.
    pub fn cmdline(mut self, c: impl Into<String>) -> Self {
        self.cmdline = Some(c.into());
        self
    }
    /// Memory in MiB.
    pub fn memory_mib(mut self, m: u64) -> Self {
        self.memory_mib = m;
        self
    }
    /// Maximum memory in MiB (for ballooning up).
    pub fn maxmem_mib(mut self, m: u64) -> Self {
        self.maxmem_mib = Some(m);
        self
    }
    /// vCPUs online at boot.
    pub fn vcpus(mut self, n: u32) -> Self {
        self.vcpus = n;
        self
    }
    /// Maximum vCPUs (for hot-plugging).
    pub fn maxvcpus(mut self, n: u32) -> Self {
        self.maxvcpus = Some(n);
        self
    }
    /// The VM's UUID.
    pub fn uuid(mut self, u: Uuid) -> Self {
        self.uuid = Some(u);
        self
    }
    /// Adds a disk.
    pub fn disk(mut self, d: XlDisk) -> Self {
        self.disks.push(d);
        self
    }
    /// Adds a network interface on `bridge`.
    pub fn vif(mut self, v: XlVif) -> Self {
        self.vifs.push(v);
        self
    }
    /// Action on power-off.
    pub fn on_poweroff(mut self, a: LifecycleAction) -> Self {
        self.on_poweroff = a;
        self
    }
    /// Action on reboot.
    pub fn on_reboot(mut self, a: LifecycleAction) -> Self {
        self.on_reboot = a;
        self
    }
    /// Action on crash.
    pub fn on_crash(mut self, a: LifecycleAction) -> Self {
        self.on_crash = a;
        self
    }

    /// The domain name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders the `xl` configuration file, validating every value.
    pub fn to_config(&self) -> XenResult<String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(XenError::InvalidArgument(format!("bad domain name {:?}", self.name)));
        }
        if self.memory_mib == 0 || self.vcpus == 0 {
            return Err(XenError::InvalidArgument("memory and vcpus must be positive".into()));
        }
        if self.maxmem_mib.is_some_and(|m| m < self.memory_mib) {
            return Err(XenError::InvalidArgument("maxmem below memory".into()));
        }
        if self.maxvcpus.is_some_and(|m| m < self.vcpus) {
            return Err(XenError::InvalidArgument("maxvcpus below vcpus".into()));
        }
        let hvm = self.guest_type.is_hvm();
        if !hvm && self.kernel.is_none() {
            return Err(XenError::InvalidArgument("a PV/PVH domain needs a kernel".into()));
        }
        if self.ramdisk.is_some() && self.kernel.is_none() {
            return Err(XenError::InvalidArgument("a ramdisk without a kernel".into()));
        }
        let mut seen = Vec::new();
        for b in &self.boot {
            if seen.contains(b) {
                return Err(XenError::InvalidArgument(format!("boot device {b:?} listed twice")));
            }
            seen.push(*b);
        }
        if !hvm && !self.boot.is_empty() {
            return Err(XenError::InvalidArgument("only HVM guests have a boot order".into()));
        }
        if !hvm && self.serial_log.is_some() {
            return Err(XenError::InvalidArgument("only HVM guests have an emulated serial port".into()));
        }
        let mut c = String::new();
        let _ = writeln!(c, "# written by ovm");
        let _ = writeln!(c, "name = \"{}\"", self.name);
        let ty = match self.guest_type {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
            GuestType::Hvm | GuestType::PvHvm => "hvm",
        };
        let _ = writeln!(c, "type = \"{ty}\"");
        if let Some(u) = self.uuid {
            let _ = writeln!(c, "uuid = \"{u}\"");
        }
        if hvm {
            let _ = writeln!(c, "firmware = \"seabios\"");
            let _ = writeln!(c, "xen_platform_pci = {}", u8::from(self.guest_type == GuestType::PvHvm));
            let order: String = if self.boot.is_empty() {
                "cd".into()
            } else {
                self.boot.iter().map(|b| b.letter()).collect()
            };
            let _ = writeln!(c, "boot = \"{order}\"");
            match &self.serial_log {
                Some(p) => {
                    let _ = writeln!(c, "serial = \"file:{}\"", check_path("serial log", p)?);
                }
                None => {
                    let _ = writeln!(c, "serial = \"pty\"");
                }
            }
            // The screen: VNC on dom0's loopback only (the agent relays it to its manager).
            if self.vnc {
                let _ = writeln!(c, "vnc = 1");
                let _ = writeln!(c, "vnclisten = \"127.0.0.1\"");
                let _ = writeln!(c, "vncunused = 1");
            } else {
                let _ = writeln!(c, "vnc = 0");
                let _ = writeln!(c, "nographic = 1");
            }
        } else if self.vnc {
            // A PV guest's screen is its virtual framebuffer, served by the xenpv device model
            // (xl adds the virtual keyboard that goes with it).
            let _ = writeln!(c, "vfb = [ 'vnc=1,vnclisten=127.0.0.1,vncunused=1' ]");
        }
        if let Some(kernel) = &self.kernel {
            let _ = writeln!(c, "kernel = \"{}\"", check_path("kernel", kernel)?);
        }
        if let Some(r) = &self.ramdisk {
            let _ = writeln!(c, "ramdisk = \"{}\"", check_path("ramdisk", r)?);
        }
        if let Some(cmd) = &self.cmdline {
            check_text("cmdline", cmd)?;
            let _ = writeln!(c, "extra = \"{cmd}\"");
        }
        let _ = writeln!(c, "memory = {}", self.memory_mib);
        if let Some(m) = self.maxmem_mib {
            let _ = writeln!(c, "maxmem = {m}");
        }
        let _ = writeln!(c, "vcpus = {}", self.vcpus);
        if let Some(m) = self.maxvcpus {
            let _ = writeln!(c, "maxvcpus = {m}");
        }
        let mut disks = Vec::new();
        for d in &self.disks {
            check_text("vdev", &d.vdev)?;
            check_text("format", &d.format)?;
            if d.vdev.contains(',') || d.format.contains(',') || d.vdev.is_empty() {
                return Err(XenError::InvalidArgument(format!("bad disk {d:?}")));
            }
            if d.cdrom && !hvm {
                return Err(XenError::InvalidArgument(format!(
                    "{}: a CD-ROM drive is emulated; PV and PVH guests reach an ISO as a read-only disk",
                    d.vdev
                )));
            }
            let target = check_path("disk", &d.target)?;
            if d.cdrom {
                // An empty drive has no target; a drive always reads only.
                disks.push(format!(
                    "'format={},vdev={},access=ro,devtype=cdrom,target={}'",
                    d.format, d.vdev, target
                ));
            } else {
                if target.is_empty() {
                    return Err(XenError::InvalidArgument(format!("disk {} has no target", d.vdev)));
                }
                disks.push(format!(
                    "'format={},vdev={},access={},target={}'",
                    d.format,
                    d.vdev,
                    if d.readonly { "ro" } else { "rw" },
                    target
                ));
            }
        }
        if !disks.is_empty() {
            let _ = writeln!(c, "disk = [ {} ]", disks.join(", "));
        }
        let mut vifs = Vec::new();
        for v in &self.vifs {
            vifs.push(format!("'{}'", v.spec()?));
        }
        if !vifs.is_empty() {
            let _ = writeln!(c, "vif = [ {} ]", vifs.join(", "));
        }
        let _ = writeln!(c, "on_poweroff = \"{}\"", self.on_poweroff.word());
        let _ = writeln!(c, "on_reboot = \"{}\"", self.on_reboot.word());
        let _ = writeln!(c, "on_crash = \"{}\"", self.on_crash.word());
        Ok(c)
    }

    /// Writes the configuration into `xl.config_dir()` and runs `xl create`;
    /// returns the new domain id.
    pub fn create(&self, xl: &XlToolstack) -> XenResult<u32> {
        let cfg = self.to_config()?;
        std::fs::create_dir_all(&xl.config_dir)
            .map_err(|e| XenError::io(format!("create {}", xl.config_dir.display()), e))?;
        let path = xl.config_dir.join(format!("{}.cfg", self.name));
        std::fs::write(&path, cfg).map_err(|e| XenError::io(format!("write {}", path.display()), e))?;
        let p = check_path("config", &path)?;
        xl.run(&["create", &p])?;
        xl.domid(&self.name)
    }
}

/// The `xl` command of the Xen toolstack.
#[derive(Debug, Clone)]
pub struct XlToolstack {
    binary: PathBuf,
    config_dir: PathBuf,
    timeout: Duration,
}

impl Default for XlToolstack {
    fn default() -> Self {
        XlToolstack {
            binary: "xl".into(),
            config_dir: std::env::temp_dir().join("ovm-xl"),
            timeout: Duration::from_secs(120),
        }
    }
}

impl XlToolstack {
    /// Uses `binary` (default `xl` from `PATH`) and writes configuration
    /// files into `config_dir`.
    pub fn new(binary: impl Into<PathBuf>, config_dir: impl Into<PathBuf>) -> XlToolstack {
        XlToolstack { binary: binary.into(), config_dir: config_dir.into(), ..XlToolstack::default() }
    }

    /// The `xl` program.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The directory for generated configuration files.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Runs `xl ARGS...`, returning stdout; a non-zero exit is an error
    /// carrying stderr.
    pub fn run(&self, args: &[&str]) -> XenResult<String> {
        let child = Command::new(&self.binary)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| XenError::io(format!("run {}", self.binary.display()), e))?;
        let out = child.wait_with_output().map_err(|e| XenError::io("wait for xl", e))?;
        if !out.status.success() {
            return Err(XenError::Toolstack {
                command: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `xl domid NAME`.
    pub fn domid(&self, name: &str) -> XenResult<u32> {
        let out = self.run(&["domid", name])?;
        out.trim().parse().map_err(|_| XenError::Toolstack {
            command: format!("domid {name}"),
            status: "0".into(),
            stderr: format!("unexpected output {out:?}"),
        })
    }

    /// `xl destroy DOMID` (the toolstack also tears down the devices).
    pub fn destroy(&self, domid: u32) -> XenResult<()> {
        self.run(&["destroy", &domid.to_string()]).map(drop)
    }

    /// The per-command timeout (informational; `xl` enforces its own).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_pv_config() {
        let u = Uuid::parse_str("0b7a1b6e-3d4c-4f5e-8a9b-0c1d2e3f4a5b").unwrap();
        let c = XlDomainBuilder::new("vm-1")
            .kernel("/var/lib/ovm/vmlinux")
            .ramdisk("/var/lib/ovm/initrd.gz")
            .cmdline("console=hvc0 quiet")
            .memory_mib(512)
            .maxmem_mib(1024)
            .vcpus(2)
            .maxvcpus(4)
            .uuid(u)
            .disk(XlDisk {
                target: "/srv/vm-1.img".into(),
                vdev: "xvda".into(),
                format: "raw".into(),
                readonly: false,
                cdrom: false,
            })
            .vif(XlVif { bridge: "xenbr0".into(), mac: Some("00:16:3e:00:00:01".into()) })
            .on_reboot(LifecycleAction::Destroy)
            .to_config()
            .unwrap();
        let expect = [
            "name = \"vm-1\"",
            "type = \"pv\"",
            "uuid = \"0b7a1b6e-3d4c-4f5e-8a9b-0c1d2e3f4a5b\"",
            "kernel = \"/var/lib/ovm/vmlinux\"",
            "ramdisk = \"/var/lib/ovm/initrd.gz\"",
            "extra = \"console=hvc0 quiet\"",
            "memory = 512",
            "maxmem = 1024",
            "vcpus = 2",
            "maxvcpus = 4",
            "disk = [ 'format=raw,vdev=xvda,access=rw,target=/srv/vm-1.img' ]",
            "vif = [ 'bridge=xenbr0,mac=00:16:3e:00:00:01' ]",
            "on_poweroff = \"destroy\"",
            "on_reboot = \"destroy\"",
            "on_crash = \"destroy\"",
        ];
        for line in expect {
            assert!(c.lines().any(|l| l == line), "missing {line:?} in\n{c}");
        }
    }

    #[test]
    fn rejects_injection_and_nonsense() {
        let base = || XlDomainBuilder::new("vm").kernel("/k");
        assert!(base().to_config().is_ok());
        assert!(XlDomainBuilder::new("vm").to_config().is_err(), "no kernel");
        assert!(XlDomainBuilder::new("bad name").kernel("/k").to_config().is_err());
        assert!(base().cmdline("x\" ; evil = \"1").to_config().is_err());
        assert!(base().cmdline("a\nb").to_config().is_err());
        assert!(XlDomainBuilder::new("vm").kernel("/k,x").to_config().is_err());
        assert!(base().memory_mib(0).to_config().is_err());
        assert!(base().memory_mib(512).maxmem_mib(256).to_config().is_err());
        assert!(base().vcpus(2).maxvcpus(1).to_config().is_err());
        assert!(base().vif(XlVif { bridge: "br0,script=x".into(), mac: None }).to_config().is_err());
        assert!(base().vif(XlVif { bridge: "br0".into(), mac: Some("zz".into()) }).to_config().is_err());
        let d = XlDisk {
            target: "/d".into(),
            vdev: "xvda,script=evil".into(),
            format: "raw".into(),
            readonly: true,
            cdrom: false,
        };
        assert!(base().disk(d).to_config().is_err());
    }

    fn disk(target: &str, vdev: &str, cdrom: bool) -> XlDisk {
        XlDisk { target: target.into(), vdev: vdev.into(), format: "raw".into(), readonly: cdrom, cdrom }
    }

    #[test]
    fn renders_an_hvm_config_booting_from_its_cd() {
        let c = XlDomainBuilder::new("win")
            .guest_type(GuestType::Hvm)
            .memory_mib(1024)
            .disk(disk("/repo/VirtualDisks/a.img", "hda", false))
            .disk(disk("/repo/ISOs/install.iso", "hdc", true))
            .vif(XlVif { bridge: "xenbr0".into(), mac: None })
            .boot_order(vec![XlBoot::Cdrom, XlBoot::Disk, XlBoot::Network])
            .serial_log("/var/log/xen/console/guest-win.log")
            .vnc(true)
            .to_config()
            .unwrap();
        for line in [
            "type = \"hvm\"",
            "firmware = \"seabios\"",
            "xen_platform_pci = 0",
            "boot = \"dcn\"",
            "serial = \"file:/var/log/xen/console/guest-win.log\"",
            "vnc = 1",
            "vnclisten = \"127.0.0.1\"",
            "vncunused = 1",
            "disk = [ 'format=raw,vdev=hda,access=rw,target=/repo/VirtualDisks/a.img', \
             'format=raw,vdev=hdc,access=ro,devtype=cdrom,target=/repo/ISOs/install.iso' ]",
        ] {
            assert!(c.lines().any(|l| l == line), "missing {line:?} in\n{c}");
        }
        assert!(!c.contains("kernel"), "an HVM guest boots from its firmware: {c}");
    }

    #[test]
    fn renders_a_pvhvm_config_with_direct_kernel_boot_and_no_screen() {
        let c = XlDomainBuilder::new("pvhvm")
            .guest_type(GuestType::PvHvm)
            .kernel("/k")
            .ramdisk("/r")
            .cmdline("console=ttyS0")
            .disk(disk("/d.img", "xvda", false))
            .disk(disk("", "hdc", true))
            .to_config()
            .unwrap();
        for line in [
            "type = \"hvm\"",
            "xen_platform_pci = 1",
            "boot = \"cd\"",
            "serial = \"pty\"",
            "vnc = 0",
            "nographic = 1",
            "kernel = \"/k\"",
            "ramdisk = \"/r\"",
            "disk = [ 'format=raw,vdev=xvda,access=rw,target=/d.img', 'format=raw,vdev=hdc,access=ro,devtype=cdrom,target=' ]",
        ] {
            assert!(c.lines().any(|l| l == line), "missing {line:?} in\n{c}");
        }
    }

    #[test]
    fn a_pv_guest_screen_is_its_framebuffer_and_hvm_only_settings_are_refused() {
        let c = XlDomainBuilder::new("pv").kernel("/k").vnc(true).to_config().unwrap();
        assert!(c.contains("vfb = [ 'vnc=1,vnclisten=127.0.0.1,vncunused=1' ]"), "{c}");
        let pv = || XlDomainBuilder::new("pv").kernel("/k");
        assert!(pv().boot_order(vec![XlBoot::Cdrom]).to_config().is_err());
        assert!(pv().serial_log("/l").to_config().is_err());
        assert!(pv().disk(disk("/x.iso", "xvdc", true)).to_config().is_err(), "a CD-ROM on a PV guest");
        let hvm = || XlDomainBuilder::new("h").guest_type(GuestType::Hvm);
        assert!(hvm().to_config().is_ok(), "an HVM guest needs no kernel");
        assert!(hvm().boot_order(vec![XlBoot::Disk, XlBoot::Disk]).to_config().is_err());
        assert!(hvm().ramdisk("/r").to_config().is_err(), "a ramdisk without a kernel");
        assert!(hvm().disk(disk("", "hda", false)).to_config().is_err(), "a disk without a target");
        assert!(hvm().serial_log("/l,x").to_config().is_err());
    }

    #[test]
    fn missing_xl_binary_is_a_typed_error() {
        let xl = XlToolstack::new("/nonexistent/ovm/xl", std::env::temp_dir());
        assert!(matches!(xl.run(&["list"]), Err(XenError::Io { .. })));
        // A failing command carries its stderr.
        let f = XlToolstack::new("sh", std::env::temp_dir());
        match f.run(&["-c", "echo boom >&2; exit 3"]) {
            Err(XenError::Toolstack { stderr, status, .. }) => {
                assert_eq!(stderr, "boom");
                assert!(status.contains('3'));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
