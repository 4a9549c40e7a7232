//! Domain creation through the Xen toolstack: [`XlDomainBuilder`] writes an
//! `xl` configuration file and runs `xl create`. Building a domain directly
//! with hypercalls (memory population, PV page tables, device setup) is the
//! job of libxl and is not reimplemented here.

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

/// Builds a PV/PVH domain through `xl create`.
#[derive(Debug, Clone)]
pub struct XlDomainBuilder {
    name: String,
    guest_type: GuestType,
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

    /// PV or PVH.
    pub fn guest_type(mut self, t: GuestType) -> Self {
        self.guest_type = t;
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
        let kernel = self
            .kernel
            .as_ref()
            .ok_or_else(|| XenError::InvalidArgument("a PV/PVH domain needs a kernel".into()))?;
        let mut c = String::new();
        let _ = writeln!(c, "# written by ovm");
        let _ = writeln!(c, "name = \"{}\"", self.name);
        let _ = writeln!(c, "type = \"{}\"", if self.guest_type == GuestType::Pv { "pv" } else { "pvh" });
        if let Some(u) = self.uuid {
            let _ = writeln!(c, "uuid = \"{u}\"");
        }
        let _ = writeln!(c, "kernel = \"{}\"", check_path("kernel", kernel)?);
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
            disks.push(format!(
                "'format={},vdev={},access={},target={}'",
                d.format,
                d.vdev,
                if d.readonly { "ro" } else { "rw" },
                check_path("disk", &d.target)?
            ));
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
        };
        assert!(base().disk(d).to_config().is_err());
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
