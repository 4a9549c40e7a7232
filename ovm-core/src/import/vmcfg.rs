//! Xen and Oracle VM `vm.cfg` files: the `key = value` syntax xl and Oracle VM use, Oracle VM
//! template files, and the configuration files ovm keeps in its repositories (see [`render_vm`]).
//!
//! A value is a string (`'...'` or `"..."`, with the escapes `\\`, `\'`, `\"`, `\n`, `\r`, `\t`),
//! an integer, `True`/`False`, or a list of those in `[ ]`, which may span lines. `#` starts a
//! comment. A file is at most 256 KiB with at most 1000 keys, and a string at most 64 KiB.

use crate::model::{DomainType, RestartAction};
use crate::{Error, Result};

mod objects;

pub use objects::*;

/// Largest file accepted, bytes.
pub const MAX_FILE: usize = 256 * 1024;
const MAX_KEYS: usize = 1000;
const MAX_STRING: usize = 64 * 1024;
const MAX_VCPUS: i64 = 512;

/// A value of a `vm.cfg` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// `True` or `False`.
    Bool(bool),
    /// A list of strings, integers and booleans (lists do not nest).
    List(Vec<Value>),
}

/// The keys of a `vm.cfg` file and their values, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmCfg {
    /// Each key and its value.
    pub entries: Vec<(String, Value)>,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::invalid("vm.cfg", reason)
}

/// Parses a `vm.cfg` file; the same as [`VmCfg::parse`].
pub fn parse(text: &str) -> Result<VmCfg> {
    VmCfg::parse(text)
}

impl VmCfg {
    /// Parses a `vm.cfg` file. Duplicate keys, nested lists and anything that is not a plain value
    /// (expressions, unquoted words) are refused.
    pub fn parse(text: &str) -> Result<VmCfg> {
        if text.len() > MAX_FILE {
            return Err(bad(format!("the file is larger than {MAX_FILE} bytes")));
        }
        let mut p = Parser { chars: text.chars().collect(), pos: 0, line: 1 };
        let mut cfg = VmCfg::default();
        while p.skip_blank() {
            let line = p.line;
            let (key, value) = p.entry().map_err(|why| bad(format!("line {line}: {why}")))?;
            if cfg.get(&key).is_some() {
                return Err(bad(format!("line {line}: the key {key:?} is given twice")));
            }
            if cfg.entries.len() >= MAX_KEYS {
                return Err(bad(format!("more than {MAX_KEYS} keys")));
            }
            cfg.entries.push((key, value));
        }
        Ok(cfg)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string value of `key`; an error if it is present but not a string.
    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(bad(format!("{key} must be a string"))),
        }
    }

    /// The integer value of `key`; an error if it is present but not an integer.
    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i)),
            Some(_) => Err(bad(format!("{key} must be an integer"))),
        }
    }

    /// The boolean value of `key` (`True`/`False`, or 1/0); an error if it is anything else.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Int(i @ (0 | 1))) => Ok(Some(*i == 1)),
            Some(_) => Err(bad(format!("{key} must be True or False"))),
        }
    }

    /// The list value of `key`; an error if it is present but not a list.
    pub fn list(&self, key: &str) -> Result<Option<&[Value]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::List(l)) => Ok(Some(l)),
            Some(_) => Err(bad(format!("{key} must be a list"))),
        }
    }

    /// Writes the file back, one `key = value` line per entry, such that [`VmCfg::parse`] gives
    /// the same entries again (for keys of the accepted form and lists that do not nest).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.entries {
            out.push_str(k);
            out.push_str(" = ");
            render_value(v, &mut out);
            out.push('\n');
        }
        out
    }
}

fn render_value(v: &Value, out: &mut String) {
    match v {
        Value::Str(s) => {
            out.push('\'');
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_value(item, out);
            }
            out.push(']');
        }
    }
}

/// A hand-written scanner over the characters of a file.
struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

type Step<T> = std::result::Result<T, String>;

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Skips spaces and tabs, and a comment up to (not including) the end of the line.
    fn skip_spaces(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' => self.pos += 1,
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// Skips blank lines and comments; `false` at the end of the file.
    fn skip_blank(&mut self) -> bool {
        loop {
            self.skip_spaces();
            match self.peek() {
                Some('\n' | ';') => {
                    self.bump();
                }
                Some(_) => return true,
                None => return false,
            }
        }
    }

    fn entry(&mut self) -> Step<(String, Value)> {
        let key = self.key()?;
        self.skip_spaces();
        if self.bump() != Some('=') {
            return Err(format!("expected '=' after {key:?}"));
        }
        self.skip_spaces();
        let value = self.value(true)?;
        self.skip_spaces();
        match self.peek() {
            None | Some('\n' | ';') => Ok((key, value)),
            Some(c) => Err(format!("unexpected {c:?} after the value of {key:?}")),
        }
    }

    fn key(&mut self) -> Step<String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        let key: String = self.chars[start..self.pos].iter().collect();
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
            return Err("expected a key ([A-Za-z_][A-Za-z0-9_]*)".into());
        }
        Ok(key)
    }

    fn value(&mut self, list_allowed: bool) -> Step<Value> {
        match self.peek() {
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                self.string(q).map(Value::Str)
            }
            Some('[') if list_allowed => {
                self.pos += 1;
                self.list().map(Value::List)
            }
            Some('[') => Err("lists inside lists are not accepted".into()),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => self.int().map(Value::Int),
            Some(c) if c.is_ascii_alphabetic() => match self.key()?.as_str() {
                "True" => Ok(Value::Bool(true)),
                "False" => Ok(Value::Bool(false)),
                word => Err(format!("{word:?} is not a value (strings are quoted)")),
            },
            Some(c) => Err(format!("{c:?} does not start a value")),
            None => Err("a value is missing".into()),
        }
    }

    fn string(&mut self, quote: char) -> Step<String> {
        let mut s = String::new();
        loop {
            let c = match self.peek() {
                None | Some('\n') => return Err("unterminated string".into()),
                Some(c) => c,
            };
            self.pos += 1;
            if c == quote {
                return Ok(s);
            }
            if c == '\\' {
                match self.peek() {
                    None | Some('\n') => return Err("unterminated string".into()),
                    Some(e) => {
                        self.pos += 1;
                        s.push(match e {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            '\\' | '\'' | '"' => e,
                            _ => return Err(format!("unknown escape \\{e}")),
                        });
                    }
                }
            } else {
                s.push(c);
            }
            if s.len() > MAX_STRING {
                return Err(format!("a string is longer than {MAX_STRING} bytes"));
            }
        }
    }

    fn int(&mut self) -> Step<i64> {
        let start = self.pos;
        self.pos += 1;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse().map_err(|_| format!("{text:?} is not an integer (or is too large)"))
    }

    /// The items of a list, after its `[`; newlines and comments may appear between items.
    fn list(&mut self) -> Step<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            self.skip_list_blank();
            if self.peek() == Some(']') {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(false)?);
            self.skip_list_blank();
            match self.bump() {
                Some(',') => {}
                Some(']') => return Ok(items),
                Some(c) => return Err(format!("unexpected {c:?} in a list")),
                None => return Err("unterminated list".into()),
            }
        }
    }

    fn skip_list_blank(&mut self) {
        loop {
            self.skip_spaces();
            if self.peek() != Some('\n') {
                return;
            }
            self.bump();
        }
    }
}

/// What backs a disk of a `vm.cfg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfgDiskKind {
    /// A file (`file:` or an xl target).
    File,
    /// A block device (`phy:`, or `backendtype=phy`).
    Phy,
    /// Another prefix, such as `tap:aio:`.
    Other,
}

/// A disk of a `vm.cfg` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgDisk {
    /// The path, with its `file:`/`phy:`/`tap:...:` prefix removed (empty for an empty CD drive).
    pub file: String,
    /// What backs it.
    pub kind: CfgDiskKind,
    /// The guest device, such as `xvda` or `hdc`.
    pub device: String,
    /// Whether it is a CD-ROM drive.
    pub cdrom: bool,
    /// Whether the guest may write it.
    pub writable: bool,
}

/// A virtual NIC of a `vm.cfg` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgVif {
    /// MAC address, if given.
    pub mac: Option<String>,
    /// Bridge, if given.
    pub bridge: Option<String>,
}

/// What ovm takes from an Oracle VM (or xl) template's `vm.cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateCfg {
    /// `OVM_simple_name`, else `name`.
    pub name: Option<String>,
    /// `OVM_description` (empty when absent).
    pub description: String,
    /// `OVM_os_type` (empty when absent).
    pub os_type: String,
    /// From `OVM_domain_type` or `guest_os_type`, else `type`, else `builder`; PV by default.
    pub domain_type: DomainType,
    /// `memory`, MiB.
    pub memory_mib: u64,
    /// `maxmem`, MiB (`memory` when absent).
    pub max_memory_mib: u64,
    /// `vcpus` (1 when absent).
    pub vcpus: u32,
    /// `maxvcpus` (`vcpus` when absent).
    pub max_vcpus: u32,
    /// `disk`.
    pub disks: Vec<CfgDisk>,
    /// `vif`.
    pub vifs: Vec<CfgVif>,
    /// `kernel`.
    pub kernel: Option<String>,
    /// `ramdisk`.
    pub ramdisk: Option<String>,
    /// The kernel command line: `extra`, preceded by `root=...` when `root` is given.
    pub extra: Option<String>,
    /// `bootloader`.
    pub bootloader: Option<String>,
    /// Whether `vfb` lists a framebuffer (a PV guest's screen).
    pub framebuffer: bool,
    /// `on_poweroff`.
    pub on_poweroff: Option<RestartAction>,
    /// `on_reboot`.
    pub on_reboot: Option<RestartAction>,
    /// `on_crash`.
    pub on_crash: Option<RestartAction>,
}

/// Reads an Oracle VM or xl template's `vm.cfg`.
///
/// Refused: no or zero `memory`, `vcpus` or `maxvcpus` of 0 or more than 512, a disk without a
/// device, an unknown domain type or restart action, SPARC (`ldoms_pvm`) templates.
pub fn template_from_cfg(cfg: &VmCfg) -> Result<TemplateCfg> {
    let string = |k: &str| cfg.str(k).map(|v| v.map(str::to_string));
    let memory_mib = positive(cfg.int("memory")?.ok_or_else(|| bad("no memory"))?, "memory")?;
    let max_memory_mib = positive(cfg.int("maxmem")?.unwrap_or(memory_mib as i64), "maxmem")?;
    let vcpus = vcpu_count(cfg.int("vcpus")?.unwrap_or(1), "vcpus")?;
    let max_vcpus = vcpu_count(cfg.int("maxvcpus")?.unwrap_or(i64::from(vcpus)), "maxvcpus")?;
    let extra = match (string("root")?, string("extra")?) {
        (Some(root), Some(extra)) => Some(format!("root={root} {extra}")),
        (Some(root), None) => Some(format!("root={root}")),
        (None, extra) => extra,
    };
    Ok(TemplateCfg {
        name: string("OVM_simple_name")?.or(string("name")?),
        description: string("OVM_description")?.unwrap_or_default(),
        os_type: string("OVM_os_type")?.unwrap_or_default(),
        domain_type: domain_type(cfg)?,
        memory_mib,
        max_memory_mib,
        vcpus,
        max_vcpus,
        disks: strings(cfg, "disk")?.iter().map(|d| parse_disk_spec(d)).collect::<Result<_>>()?,
        vifs: strings(cfg, "vif")?.iter().map(|v| parse_vif_spec(v)).collect::<Result<_>>()?,
        kernel: string("kernel")?,
        ramdisk: string("ramdisk")?,
        extra,
        bootloader: string("bootloader")?,
        framebuffer: !strings(cfg, "vfb")?.is_empty(),
        on_poweroff: restart_action(cfg, "on_poweroff")?,
        on_reboot: restart_action(cfg, "on_reboot")?,
        on_crash: restart_action(cfg, "on_crash")?,
    })
}

fn positive(v: i64, key: &str) -> Result<u64> {
    u64::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| bad(format!("{key} must be positive, not {v}")))
}

fn vcpu_count(v: i64, key: &str) -> Result<u32> {
    if (1..=MAX_VCPUS).contains(&v) {
        Ok(v as u32)
    } else {
        Err(bad(format!("{key} must be 1..={MAX_VCPUS}, not {v}")))
    }
}

/// The strings of a list key (a single string counts as a list of one).
fn strings(cfg: &VmCfg, key: &str) -> Result<Vec<String>> {
    let items = match cfg.get(key) {
        None => return Ok(Vec::new()),
        Some(Value::Str(s)) => return Ok(vec![s.clone()]),
        Some(Value::List(items)) => items,
        Some(_) => return Err(bad(format!("{key} must be a list of strings"))),
    };
    items
        .iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(bad(format!("{key} must be a list of strings"))),
        })
        .collect()
}

fn domain_type(cfg: &VmCfg) -> Result<DomainType> {
    let oracle = cfg.str("OVM_domain_type")?.or(cfg.str("guest_os_type")?);
    if let Some(t) = oracle {
        return match t {
            "xen_pvm" => Ok(DomainType::Pv),
            "hvm" | "xen_hvm" => Ok(DomainType::Hvm),
            "xen_hvm_pv" => Ok(DomainType::PvHvm),
            "pvh" => Ok(DomainType::Pvh),
            "ldoms_pvm" => Err(bad("ldoms_pvm (SPARC) templates are not supported")),
            other => Err(bad(format!("unknown domain type {other:?}"))),
        };
    }
    match (cfg.str("type")?, cfg.str("builder")?) {
        (Some("hvm"), _) | (None, Some("hvm")) => Ok(DomainType::Hvm),
        (Some("pvh"), _) => Ok(DomainType::Pvh),
        (Some("pv"), _) | (None, _) => Ok(DomainType::Pv),
        (Some(other), _) => Err(bad(format!("unknown domain type {other:?}"))),
    }
}

fn restart_action(cfg: &VmCfg, key: &str) -> Result<Option<RestartAction>> {
    let Some(s) = cfg.str(key)? else { return Ok(None) };
    let action = match s {
        "destroy" | "coredump-destroy" => RestartAction::Destroy,
        "restart" | "rename-restart" | "coredump-restart" | "soft-reset" => RestartAction::Restart,
        "preserve" => RestartAction::Preserve,
        other => return Err(bad(format!("{key} {other:?} is not a restart action"))),
    };
    Ok(Some(action))
}

/// Parses a disk string: `'file:/path,xvda,w'`, `'/path,raw,xvda,rw'` or the xl form
/// `'format=raw, vdev=xvda, access=rw, target=/path'`.
pub fn parse_disk_spec(spec: &str) -> Result<CfgDisk> {
    let refuse = |why: &str| Err(bad(format!("disk {spec:?}: {why}")));
    let (head, target) = match spec.find("target=") {
        Some(i) => (&spec[..i], Some(&spec[i + 7..])),
        None => (spec, None),
    };
    let parts: Vec<&str> =
        head.split(',').map(str::trim).filter(|p| !p.is_empty() || target.is_none()).collect();
    let mut positional = Vec::new();
    let (mut vdev, mut access, mut backend, mut devtype) = (None, None, None, None);
    for p in &parts {
        match p.split_once('=') {
            Some(("vdev", v)) => vdev = Some(v.trim()),
            Some(("access" | "mode", v)) => access = Some(v.trim()),
            Some(("backendtype", v)) => backend = Some(v.trim()),
            Some(("devtype", v)) => devtype = Some(v.trim()),
            Some((_, _)) => {}
            None => positional.push(*p),
        }
    }
    let (file, dev, mode) = match (target, positional.as_slice()) {
        (Some(t), []) => (t.trim(), vdev.unwrap_or(""), access.unwrap_or("rw")),
        (None, [file, dev, mode]) | (None, [file, _, dev, mode]) => (*file, *dev, *mode),
        _ => return refuse("not of the form 'prefix:path,device,mode' or 'key=value, ..., target=path'"),
    };
    let (device, cdrom_suffix) = match dev.strip_suffix(":cdrom") {
        Some(d) => (d, true),
        None => (dev, false),
    };
    if device.is_empty() {
        return refuse("no device");
    }
    let writable = match mode {
        "w" | "rw" | "w!" => true,
        "r" | "ro" => false,
        other => return refuse(&format!("unknown access mode {other:?}")),
    };
    let (kind, file) = disk_backing(file, backend == Some("phy"));
    let cdrom = cdrom_suffix || devtype == Some("cdrom");
    Ok(CfgDisk { file, kind, device: device.to_string(), cdrom, writable })
}

/// Splits `file:`, `phy:` or another `word:...:` prefix off a disk path.
fn disk_backing(path: &str, phy: bool) -> (CfgDiskKind, String) {
    if let Some(p) = path.strip_prefix("file:") {
        return (CfgDiskKind::File, p.to_string());
    }
    if let Some(p) = path.strip_prefix("phy:") {
        return (CfgDiskKind::Phy, p.to_string());
    }
    let prefix_end = path.find('/').unwrap_or(path.len());
    match path[..prefix_end].rfind(':') {
        Some(i) => (CfgDiskKind::Other, path[i + 1..].to_string()),
        None if phy => (CfgDiskKind::Phy, path.to_string()),
        None => (CfgDiskKind::File, path.to_string()),
    }
}

/// Parses a VIF string of comma-separated `key=value` settings (`mac`, `bridge`, `type`, ...).
pub fn parse_vif_spec(spec: &str) -> Result<CfgVif> {
    let mut vif = CfgVif { mac: None, bridge: None };
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) =
            part.split_once('=').ok_or_else(|| bad(format!("vif {spec:?}: {part:?} is not key=value")))?;
        let v = v.trim();
        let v = (!v.is_empty()).then(|| v.to_string());
        match k.trim() {
            "mac" => vif.mac = v,
            "bridge" => vif.bridge = v,
            _ => {}
        }
    }
    Ok(vif)
}

#[cfg(test)]
mod tests;
