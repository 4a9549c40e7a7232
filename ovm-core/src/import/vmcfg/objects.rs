//! The configuration files ovm keeps in a repository for each object it stores there, so that a
//! lost manager database can be rebuilt from the repositories.
//!
//! Each file is a `vm.cfg` whose first line is `# ovm <kind> configuration, kept current by the
//! manager`. Xen keys are used where Xen has them (`name`, `uuid`, `memory`, `vcpus`, `type`, ...),
//! `OVM_` keys for the rest. `parse_x(&render_x(o)) == o` for every valid object, except that the
//! runtime state of a VM (server, power state, domain id) is not stored.

use std::str::FromStr;

use super::{bad, Value, VmCfg};
use crate::model::*;
use crate::Result;

fn header(kind: &str) -> String {
    format!("# ovm {kind} configuration, kept current by the manager\n")
}

/// Builds the entries of a file in order.
#[derive(Default)]
struct Writer(Vec<(String, Value)>);

impl Writer {
    fn put(&mut self, k: &str, v: Value) {
        self.0.push((k.to_string(), v));
    }
    fn str(&mut self, k: &str, v: impl ToString) {
        self.put(k, Value::Str(v.to_string()));
    }
    /// A u64 as an integer, or as a string of digits when it does not fit one.
    fn u64(&mut self, k: &str, v: u64) {
        self.put(k, i64::try_from(v).map_or_else(|_| Value::Str(v.to_string()), Value::Int));
    }
    fn opt(&mut self, k: &str, v: Option<impl ToString>) {
        if let Some(v) = v {
            self.str(k, v);
        }
    }
    fn list(&mut self, k: &str, items: impl IntoIterator<Item = String>) {
        self.put(k, Value::List(items.into_iter().map(Value::Str).collect()));
    }
    fn finish(self, kind: &str) -> String {
        header(kind) + &VmCfg { entries: self.0 }.render()
    }
}

/// Reads the entries of a file.
struct Reader(VmCfg);

impl Reader {
    fn new(text: &str) -> Result<Reader> {
        VmCfg::parse(text).map(Reader)
    }
    fn opt_str(&self, k: &str) -> Result<Option<String>> {
        Ok(self.0.str(k)?.map(str::to_string))
    }
    fn str(&self, k: &str) -> Result<String> {
        self.opt_str(k)?.ok_or_else(|| bad(format!("no {k}")))
    }
    fn opt_id<T: FromStr<Err = crate::Error>>(&self, k: &str) -> Result<Option<T>> {
        self.0.str(k)?.map(|s| s.parse().map_err(|_| bad(format!("{k} {s:?} is not a uuid")))).transpose()
    }
    fn id<T: FromStr<Err = crate::Error>>(&self, k: &str) -> Result<T> {
        self.opt_id(k)?.ok_or_else(|| bad(format!("no {k}")))
    }
    fn u64(&self, k: &str) -> Result<u64> {
        let not = || bad(format!("{k} must be a non-negative integer"));
        match self.0.get(k) {
            Some(Value::Int(i)) => u64::try_from(*i).map_err(|_| not()),
            Some(Value::Str(s)) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().map_err(|_| not()),
            Some(_) => Err(not()),
            None => Err(bad(format!("no {k}"))),
        }
    }
    fn num<T: TryFrom<u64>>(&self, k: &str) -> Result<T> {
        T::try_from(self.u64(k)?).map_err(|_| bad(format!("{k} is out of range")))
    }
    fn bool(&self, k: &str) -> Result<bool> {
        self.0.bool(k)?.ok_or_else(|| bad(format!("no {k}")))
    }
    fn strings(&self, k: &str) -> Result<Vec<String>> {
        let items = self.0.list(k)?.unwrap_or_default();
        items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(bad(format!("{k} must be a list of strings"))),
            })
            .collect()
    }
    fn ids<T: FromStr<Err = crate::Error>>(&self, k: &str) -> Result<Vec<T>> {
        self.strings(k)?
            .iter()
            .map(|s| s.parse().map_err(|_| bad(format!("{k}: {s:?} is not a uuid"))))
            .collect()
    }
}

/// Whether xl accepts `name` as a domain name as it is.
fn xl_safe(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn domain_names(t: DomainType) -> (&'static str, &'static str) {
    match t {
        DomainType::Pv => ("pv", "xen_pvm"),
        DomainType::Hvm => ("hvm", "hvm"),
        DomainType::PvHvm => ("hvm", "xen_hvm_pv"),
        DomainType::Pvh => ("pvh", "pvh"),
    }
}

fn action_name(a: RestartAction) -> &'static str {
    match a {
        RestartAction::Destroy => "destroy",
        RestartAction::Restart => "restart",
        RestartAction::Preserve => "preserve",
    }
}

fn boot_name(b: BootDevice) -> &'static str {
    match b {
        BootDevice::Disk => "disk",
        BootDevice::Cdrom => "cdrom",
        BootDevice::Network => "network",
    }
}

fn disk_entry(d: &DiskMapping) -> String {
    match d.target {
        DiskTarget::VirtualDisk(id) => format!("{}:vdisk:{id}", d.slot),
        DiskTarget::Cdrom(id) => format!("{}:iso:{id}", d.slot),
        DiskTarget::EmptyCdrom => format!("{}:emptycd", d.slot),
        DiskTarget::PhysicalDisk(id) => format!("{}:phys:{id}", d.slot),
    }
}

/// The `vfb` entry of a VM with a framebuffer: a VNC server on its server's loopback.
const FRAMEBUFFER: &str = "type=vnc,vncunused=1,vnclisten=127.0.0.1";

/// The common header of VM and template files: names, then the configuration.
fn write_config(w: &mut Writer, id: impl ToString, name: &str, description: &str, c: &VmConfig) {
    let id = id.to_string();
    w.str("name", if xl_safe(name) { name.to_string() } else { id.clone() });
    w.str("uuid", id);
    w.str("OVM_simple_name", name);
    w.str("OVM_description", description);
    w.u64("memory", c.memory_mib);
    w.u64("maxmem", c.max_memory_mib);
    w.u64("vcpus", c.vcpus.into());
    w.u64("maxvcpus", c.max_vcpus.into());
    let (xen, oracle) = domain_names(c.domain_type);
    w.str("type", xen);
    w.str("OVM_domain_type", oracle);
    w.str("on_poweroff", action_name(c.restart_actions.on_poweroff));
    w.str("on_reboot", action_name(c.restart_actions.on_reboot));
    w.str("on_crash", action_name(c.restart_actions.on_crash));
    if let Some(k) = &c.pv_kernel {
        w.str("kernel", &k.kernel);
        w.opt("ramdisk", k.initrd.as_ref());
        w.str("extra", &k.cmdline);
    }
    let vif =
        |v: &Vnic| format!("mac={},bridge={}", v.mac, v.network.map(|n| n.to_string()).unwrap_or_default());
    w.list("vif", c.vnics.iter().map(vif));
    if c.framebuffer {
        w.list("vfb", [FRAMEBUFFER.to_string()]);
    }
    if let Some(nb) = &c.network_boot {
        w.str("OVM_network_boot_path", &nb.url);
        w.str("OVM_network_boot_cmdline", &nb.cmdline);
    }
    w.str("OVM_os_type", &c.os_type);
    w.put("OVM_high_availability", Value::Bool(c.high_availability));
    w.u64("OVM_start_priority", c.start_priority.into());
    w.list("OVM_boot_order", c.boot_order.iter().map(|b| boot_name(*b).to_string()));
    w.list("OVM_disks", c.disks.iter().map(disk_entry));
}

fn read_domain_type(r: &Reader) -> Result<DomainType> {
    match r.str("OVM_domain_type")?.as_str() {
        "xen_pvm" => Ok(DomainType::Pv),
        "hvm" => Ok(DomainType::Hvm),
        "xen_hvm_pv" => Ok(DomainType::PvHvm),
        "pvh" => Ok(DomainType::Pvh),
        other => Err(bad(format!("unknown OVM_domain_type {other:?}"))),
    }
}

fn read_action(r: &Reader, k: &str) -> Result<RestartAction> {
    match r.str(k)?.as_str() {
        "destroy" => Ok(RestartAction::Destroy),
        "restart" => Ok(RestartAction::Restart),
        "preserve" => Ok(RestartAction::Preserve),
        other => Err(bad(format!("{k} {other:?} is not a restart action"))),
    }
}

fn read_boot(s: &str) -> Result<BootDevice> {
    match s {
        "disk" => Ok(BootDevice::Disk),
        "cdrom" => Ok(BootDevice::Cdrom),
        "network" => Ok(BootDevice::Network),
        other => Err(bad(format!("{other:?} is not a boot device"))),
    }
}

fn read_disk(s: &str) -> Result<DiskMapping> {
    let not = || bad(format!("OVM_disks: {s:?} is not slot:kind:id"));
    let mut parts = s.splitn(3, ':');
    let slot: u8 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(not)?;
    let kind = parts.next().ok_or_else(not)?;
    let id = parts.next();
    let uuid = |id: Option<&str>| id.and_then(|i| uuid::Uuid::parse_str(i).ok()).ok_or_else(not);
    let target = match kind {
        "vdisk" => DiskTarget::VirtualDisk(VirtualDiskId(uuid(id)?)),
        "iso" => DiskTarget::Cdrom(VirtualCdromId(uuid(id)?)),
        "phys" => DiskTarget::PhysicalDisk(PhysicalDiskId(uuid(id)?)),
        "emptycd" if id.is_none_or(str::is_empty) => DiskTarget::EmptyCdrom,
        _ => return Err(not()),
    };
    Ok(DiskMapping { slot, target })
}

fn read_vnic(s: &str) -> Result<Vnic> {
    let vif = super::parse_vif_spec(s)?;
    let network = vif.bridge.map(|b| b.parse().map_err(|_| bad(format!("vif bridge {b:?} is not a uuid"))));
    Ok(Vnic { mac: vif.mac.unwrap_or_default(), network: network.transpose()? })
}

fn read_config(r: &Reader) -> Result<VmConfig> {
    let pv_kernel = match r.opt_str("kernel")? {
        Some(kernel) => Some(PvKernel { kernel, initrd: r.opt_str("ramdisk")?, cmdline: r.str("extra")? }),
        None => None,
    };
    Ok(VmConfig {
        domain_type: read_domain_type(r)?,
        vcpus: r.num("vcpus")?,
        max_vcpus: r.num("maxvcpus")?,
        memory_mib: r.u64("memory")?,
        max_memory_mib: r.u64("maxmem")?,
        disks: r.strings("OVM_disks")?.iter().map(|s| read_disk(s)).collect::<Result<_>>()?,
        vnics: r.strings("vif")?.iter().map(|s| read_vnic(s)).collect::<Result<_>>()?,
        boot_order: r.strings("OVM_boot_order")?.iter().map(|s| read_boot(s)).collect::<Result<_>>()?,
        high_availability: r.bool("OVM_high_availability")?,
        os_type: r.str("OVM_os_type")?,
        restart_actions: RestartActions {
            on_poweroff: read_action(r, "on_poweroff")?,
            on_reboot: read_action(r, "on_reboot")?,
            on_crash: read_action(r, "on_crash")?,
        },
        pv_kernel,
        start_priority: r.num("OVM_start_priority")?,
        framebuffer: !r.strings("vfb")?.is_empty(),
        network_boot: match r.opt_str("OVM_network_boot_path")? {
            Some(url) => {
                Some(NetworkBoot { url, cmdline: r.opt_str("OVM_network_boot_cmdline")?.unwrap_or_default() })
            }
            None => None,
        },
    })
}

/// The repository file of a VM. Its runtime state (server, power state, domain id) is not stored.
pub fn render_vm(vm: &Vm) -> String {
    let mut w = Writer::default();
    write_config(&mut w, vm.id, &vm.name, &vm.description, &vm.config);
    w.opt("OVM_repository", vm.repository);
    w.opt("OVM_pool", vm.pool);
    w.opt("OVM_anti_affinity_group", vm.anti_affinity_group);
    w.finish("vm")
}

/// Reads a VM from its repository file, as stopped and on no server; the VM must be valid.
pub fn parse_vm(text: &str) -> Result<Vm> {
    let r = Reader::new(text)?;
    let vm = Vm {
        id: r.id("uuid")?,
        name: r.str("OVM_simple_name")?,
        description: r.str("OVM_description")?,
        config: read_config(&r)?,
        repository: r.opt_id("OVM_repository")?,
        pool: r.opt_id("OVM_pool")?,
        server: None,
        power_state: PowerState::Stopped,
        domid: None,
        anti_affinity_group: r.opt_id("OVM_anti_affinity_group")?,
    };
    vm.check()?;
    Ok(vm)
}

/// The repository file of a template.
pub fn render_template(t: &Template) -> String {
    let mut w = Writer::default();
    write_config(&mut w, t.id, &t.name, &t.description, &t.config);
    w.str("OVM_repository", t.repository);
    w.list("OVM_template_disks", t.disks.iter().map(ToString::to_string));
    w.opt("OVM_from_assembly", t.from_assembly);
    w.opt("OVM_from_vm", t.from_vm);
    w.finish("template")
}

/// Reads a template from its repository file; the template must be valid.
pub fn parse_template(text: &str) -> Result<Template> {
    let r = Reader::new(text)?;
    let t = Template {
        id: r.id("uuid")?,
        name: r.str("OVM_simple_name")?,
        description: r.str("OVM_description")?,
        repository: r.id("OVM_repository")?,
        config: read_config(&r)?,
        disks: r.ids("OVM_template_disks")?,
        from_assembly: r.opt_id("OVM_from_assembly")?,
        from_vm: r.opt_id("OVM_from_vm")?,
    };
    t.check()?;
    Ok(t)
}

fn format_name(f: DiskFormat) -> &'static str {
    match f {
        DiskFormat::Raw => "raw",
        DiskFormat::Sparse => "sparse",
        DiskFormat::Qcow2 => "qcow2",
    }
}

/// The repository file of a virtual disk.
pub fn render_disk(d: &VirtualDisk) -> String {
    let mut w = Writer::default();
    w.str("OVM_simple_name", &d.name);
    w.str("OVM_description", &d.description);
    w.str("uuid", d.id);
    w.str("OVM_repository", d.repository);
    w.u64("size", d.size_bytes);
    w.str("OVM_format", format_name(d.format));
    w.put("OVM_shareable", Value::Bool(d.shareable));
    w.str("OVM_path", &d.path);
    w.finish("virtual disk")
}

/// Reads a virtual disk from its repository file; the disk must be valid.
pub fn parse_disk(text: &str) -> Result<VirtualDisk> {
    let r = Reader::new(text)?;
    let format = match r.str("OVM_format")?.as_str() {
        "raw" => DiskFormat::Raw,
        "sparse" => DiskFormat::Sparse,
        "qcow2" => DiskFormat::Qcow2,
        other => return Err(bad(format!("unknown OVM_format {other:?}"))),
    };
    let d = VirtualDisk {
        id: r.id("uuid")?,
        name: r.str("OVM_simple_name")?,
        description: r.str("OVM_description")?,
        repository: r.id("OVM_repository")?,
        size_bytes: r.u64("size")?,
        format,
        shareable: r.bool("OVM_shareable")?,
        path: r.str("OVM_path")?,
    };
    d.check()?;
    Ok(d)
}

/// The repository file of an ISO.
pub fn render_iso(c: &VirtualCdrom) -> String {
    let mut w = Writer::default();
    w.str("OVM_simple_name", &c.name);
    w.str("OVM_description", &c.description);
    w.str("uuid", c.id);
    w.str("OVM_repository", c.repository);
    w.u64("size", c.size_bytes);
    w.str("OVM_path", &c.path);
    w.finish("ISO")
}

/// Reads an ISO from its repository file; it must be valid.
pub fn parse_iso(text: &str) -> Result<VirtualCdrom> {
    let r = Reader::new(text)?;
    let c = VirtualCdrom {
        id: r.id("uuid")?,
        name: r.str("OVM_simple_name")?,
        description: r.str("OVM_description")?,
        repository: r.id("OVM_repository")?,
        size_bytes: r.u64("size")?,
        path: r.str("OVM_path")?,
    };
    c.check()?;
    Ok(c)
}

/// The repository file of an assembly.
pub fn render_assembly(a: &Assembly) -> String {
    let mut w = Writer::default();
    w.str("OVM_simple_name", &a.name);
    w.str("OVM_description", &a.description);
    w.str("uuid", a.id);
    w.str("OVM_repository", a.repository);
    w.str("OVM_source_url", &a.source_url);
    w.list("OVM_vm_names", a.vm_names.iter().cloned());
    w.list("OVM_disks", a.disks.iter().map(ToString::to_string));
    w.finish("assembly")
}

/// Reads an assembly from its repository file; it must be valid.
pub fn parse_assembly(text: &str) -> Result<Assembly> {
    let r = Reader::new(text)?;
    let a = Assembly {
        id: r.id("uuid")?,
        name: r.str("OVM_simple_name")?,
        description: r.str("OVM_description")?,
        repository: r.id("OVM_repository")?,
        source_url: r.str("OVM_source_url")?,
        vm_names: r.strings("OVM_vm_names")?,
        disks: r.ids("OVM_disks")?,
    };
    a.check()?;
    Ok(a)
}
