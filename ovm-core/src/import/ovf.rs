//! OVF 1.x and 2.0 descriptors (the `.ovf` file of an OVA package or an OVF directory).
//!
//! The descriptor is parsed with DTDs forbidden (so no entity expansion and no external
//! entities), at most [`MAX_DESCRIPTOR`] bytes, 100 000 nodes, 64 levels of elements and 64 KiB
//! per attribute value or text. Only what ovm needs is kept: the referenced files, the disks, the
//! networks and, for each virtual system, its CPUs, memory, disks, NICs and CD-ROM drive.

use std::collections::HashSet;

use roxmltree::{Document, Node, ParsingOptions};

use crate::{Error, Result};

/// Largest descriptor accepted, bytes.
pub const MAX_DESCRIPTOR: usize = 4 * 1024 * 1024;
const MAX_NODES: u32 = 100_000;
const MAX_DEPTH: u32 = 64;
const MAX_VALUE: usize = 64 * 1024;
const MAX_VCPUS: u32 = 512;

const OVF1: &str = "http://schemas.dmtf.org/ovf/envelope/1";
const OVF2: &str = "http://schemas.dmtf.org/ovf/envelope/2";
const CIM: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";
const RASD: &str = "CIM_ResourceAllocationSettingData";
const SASD: &str = "CIM_StorageAllocationSettingData";
const EPASD: &str = "CIM_EthernetPortAllocationSettingData";

/// The OVF version of a descriptor, from its envelope namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OvfVersion {
    /// OVF 1.x (`http://schemas.dmtf.org/ovf/envelope/1`).
    V1,
    /// OVF 2.0 (`http://schemas.dmtf.org/ovf/envelope/2`).
    V2,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// OVF version.
    pub version: OvfVersion,
    /// Files of the package (the `References` section).
    pub files: Vec<OvfFile>,
    /// Virtual disks (the `DiskSection`).
    pub disks: Vec<OvfDisk>,
    /// Names of the logical networks (the `NetworkSection`).
    pub networks: Vec<String>,
    /// Virtual systems, nested collections flattened, in document order.
    pub systems: Vec<VirtualSystem>,
    /// Name of the virtual system collection, if the package has one.
    pub name: Option<String>,
}

/// A file of the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvfFile {
    /// Its id, which disks refer to.
    pub id: String,
    /// Its name: a plain relative file name, without directories.
    pub href: String,
    /// Its size in bytes, when given.
    pub size: Option<u64>,
}

/// Format of a disk image, from the disk's format URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskFileFormat {
    /// A raw image.
    Raw,
    /// A VMware VMDK (usually stream-optimized).
    Vmdk,
    /// A QCOW2 image.
    Qcow2,
    /// Another format: its URI as given (empty when none was given).
    Other(String),
}

/// A virtual disk of the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvfDisk {
    /// Its id (`diskId`), which virtual systems refer to.
    pub id: String,
    /// The id of the file holding its image; `None` for a blank disk.
    pub file_ref: Option<String>,
    /// Capacity, bytes.
    pub capacity_bytes: u64,
    /// Image format.
    pub format: DiskFileFormat,
}

/// A virtual machine of the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualSystem {
    /// Its id.
    pub id: String,
    /// Its `Name`, or its id when it has none.
    pub name: String,
    /// The description of its operating system, if given.
    pub os: Option<String>,
    /// Number of virtual CPUs (1 when not given).
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Ids of its disks, in the order of their items.
    pub disks: Vec<String>,
    /// One entry per NIC: the network it connects to, if any.
    pub nics: Vec<Option<String>>,
    /// Whether it has a CD or DVD drive.
    pub cdrom: bool,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::invalid("ovf", reason)
}

/// Parses an OVF descriptor.
pub fn parse(xml: &[u8]) -> Result<Envelope> {
    if xml.len() > MAX_DESCRIPTOR {
        return Err(bad(format!("the descriptor is larger than {MAX_DESCRIPTOR} bytes")));
    }
    let text = std::str::from_utf8(xml).map_err(|_| bad("the descriptor is not UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains("<!DOCTYPE") {
        return Err(bad("the descriptor has a DOCTYPE, which is not accepted"));
    }
    check_depth(text.as_bytes())?;
    let options = ParsingOptions { allow_dtd: false, nodes_limit: MAX_NODES };
    let doc = Document::parse_with_options(text, options)
        .map_err(|e| bad(format!("the descriptor is not well-formed XML: {e}")))?;
    check_shape(&doc)?;
    read_envelope(doc.root_element())
}

/// Refuses elements nested deeper than [`MAX_DEPTH`] before the XML parser (which recurses on
/// element depth) sees them: a scan of the markup that skips comments, CDATA, processing
/// instructions and quoted attribute values, and counts start and end tags.
fn check_depth(text: &[u8]) -> Result<()> {
    let find = |from: usize, pat: &[u8]| {
        text.get(from..)
            .and_then(|t| t.windows(pat.len()).position(|w| w == pat))
            .map(|p| from + p + pat.len())
    };
    let mut depth = 0u32;
    let mut i = 0;
    while let Some(p) = text.get(i..).and_then(|t| t.iter().position(|&b| b == b'<')) {
        let at = i + p;
        let rest = &text[at..];
        let next = if rest.starts_with(b"<!--") {
            find(at + 4, b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            find(at + 9, b"]]>")
        } else if rest.starts_with(b"<?") {
            find(at + 2, b"?>")
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            find(at + 2, b">")
        } else {
            let end = tag_end(text, at + 1);
            if end.is_some_and(|e| text[e - 2] != b'/') {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(bad(format!("elements are nested deeper than {MAX_DEPTH} levels")));
                }
            }
            end
        };
        match next {
            Some(n) => i = n,
            None => return Ok(()),
        }
    }
    Ok(())
}

/// The index just past the `>` ending the tag whose body starts at `from`, skipping quoted values.
fn tag_end(text: &[u8], mut from: usize) -> Option<usize> {
    let mut quote = None;
    while let Some(&b) = text.get(from) {
        from += 1;
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(from),
            _ => {}
        }
    }
    None
}

/// Refuses attribute values or texts larger than [`MAX_VALUE`] and checks the depth again on the
/// tree, without recursion.
fn check_shape(doc: &Document) -> Result<()> {
    let mut depth = vec![0u32; doc.descendants().count()];
    for node in doc.descendants() {
        let d = node.parent().map_or(0, |p| depth.get(p.id().get_usize()).copied().unwrap_or(0) + 1);
        if let Some(slot) = depth.get_mut(node.id().get_usize()) {
            *slot = d;
        }
        if d > MAX_DEPTH {
            return Err(bad(format!("elements are nested deeper than {MAX_DEPTH} levels")));
        }
        if node.attributes().any(|a| a.value().len() > MAX_VALUE) {
            return Err(bad(format!("an attribute of <{}> is larger than {MAX_VALUE} bytes", local(node))));
        }
        if node.is_text() && node.text().is_some_and(|t| t.len() > MAX_VALUE) {
            return Err(bad(format!("a text is larger than {MAX_VALUE} bytes")));
        }
    }
    Ok(())
}

fn local<'a>(node: Node<'a, '_>) -> &'a str {
    node.tag_name().name()
}

/// The namespaces of one descriptor.
struct Ns {
    ovf: &'static str,
}

impl Ns {
    fn is(&self, node: Node, name: &str) -> bool {
        node.is_element() && node.tag_name().namespace() == Some(self.ovf) && local(node) == name
    }

    fn child<'a, 'i>(&self, node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
        node.children().find(|c| self.is(*c, name))
    }

    fn children<'a, 'i: 'a>(
        &'a self,
        node: Node<'a, 'i>,
        name: &'a str,
    ) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
        node.children().filter(move |c| self.is(*c, name))
    }

    /// An `ovf:` attribute, or the same attribute without a namespace.
    fn attr<'a>(&self, node: Node<'a, '_>, name: &str) -> Option<&'a str> {
        node.attribute((self.ovf, name)).or_else(|| node.attribute(name))
    }

    fn required<'a>(&self, node: Node<'a, '_>, name: &str) -> Result<&'a str> {
        self.attr(node, name).ok_or_else(|| bad(format!("<{}> has no {name} attribute", local(node))))
    }
}

fn read_envelope(root: Node) -> Result<Envelope> {
    let (version, ovf) = match root.tag_name().namespace() {
        Some(OVF1) => (OvfVersion::V1, OVF1),
        Some(OVF2) => (OvfVersion::V2, OVF2),
        _ => return Err(bad("the root element is not an OVF 1.x or 2.0 Envelope")),
    };
    let ns = Ns { ovf };
    if local(root) != "Envelope" {
        return Err(bad("the root element is not an OVF Envelope"));
    }
    let files = read_files(&ns, root)?;
    let disks = read_disks(&ns, root, &files)?;
    let networks = ns
        .children(root, "NetworkSection")
        .flat_map(|s| ns.children(s, "Network").collect::<Vec<_>>())
        .filter_map(|n| ns.attr(n, "name").map(str::to_string))
        .collect();
    let (systems, name) = read_systems(&ns, root, &disks)?;
    Ok(Envelope { version, files, disks, networks, systems, name })
}

fn read_files(ns: &Ns, root: Node) -> Result<Vec<OvfFile>> {
    let mut files = Vec::new();
    let mut ids = HashSet::new();
    for refs in ns.children(root, "References") {
        for f in ns.children(refs, "File") {
            let id = ns.required(f, "id")?.to_string();
            let href = check_href(ns.required(f, "href")?)?;
            let size = ns.attr(f, "size").map(|s| number(s, "File size")).transpose()?;
            if !ids.insert(id.clone()) {
                return Err(bad(format!("the file id {id:?} is used twice")));
            }
            files.push(OvfFile { id, href, size });
        }
    }
    Ok(files)
}

/// A file reference must be a plain file name in the package.
fn check_href(href: &str) -> Result<String> {
    let refuse = |why: &str| Err(bad(format!("the file reference {href:?} {why}")));
    if href.is_empty() || href == "." || href == ".." {
        return refuse("is not a file name");
    }
    if href.contains(':') {
        return refuse("is a URL or has a ':'");
    }
    if href.contains('/') || href.contains('\\') {
        return refuse("names a directory (or '..'), not a plain file name");
    }
    if href.chars().any(char::is_control) {
        return refuse("contains a control character");
    }
    Ok(href.to_string())
}

fn number(s: &str, what: &str) -> Result<u64> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{what} {s:?} is not a number")));
    }
    t.parse().map_err(|_| bad(format!("{what} {s:?} is too large")))
}

/// Bytes per unit of an allocation unit such as `byte * 2^20` or `MegaBytes`.
fn unit_bytes(units: &str) -> Result<u64> {
    let u: String = units.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    let shift = match u.as_str() {
        "byte" | "bytes" | "b" => 0,
        "kilobytes" | "kb" | "kib" => 10,
        "megabytes" | "mb" | "mib" => 20,
        "gigabytes" | "gb" | "gib" => 30,
        "terabytes" | "tb" | "tib" => 40,
        _ => match u.strip_prefix("byte*2^").map(str::parse::<u32>) {
            Some(Ok(n)) if n <= 60 => n,
            _ => return Err(bad(format!("the allocation unit {units:?} is not understood"))),
        },
    };
    Ok(1u64 << shift)
}

fn read_disks(ns: &Ns, root: Node, files: &[OvfFile]) -> Result<Vec<OvfDisk>> {
    let mut disks = Vec::new();
    let mut ids = HashSet::new();
    for section in ns.children(root, "DiskSection") {
        for d in ns.children(section, "Disk") {
            let id = ns.required(d, "diskId")?.to_string();
            let file_ref = ns.attr(d, "fileRef").map(str::to_string);
            if let Some(f) = &file_ref {
                if !files.iter().any(|x| &x.id == f) {
                    return Err(bad(format!("disk {id:?} refers to an unknown file {f:?}")));
                }
            }
            let capacity = number(ns.required(d, "capacity")?, "disk capacity")?;
            let unit = unit_bytes(ns.attr(d, "capacityAllocationUnits").unwrap_or("byte"))?;
            let capacity_bytes = capacity
                .checked_mul(unit)
                .ok_or_else(|| bad(format!("the capacity of disk {id:?} overflows")))?;
            let format = disk_format(ns.attr(d, "format").unwrap_or(""));
            if !ids.insert(id.clone()) {
                return Err(bad(format!("the disk id {id:?} is used twice")));
            }
            disks.push(OvfDisk { id, file_ref, capacity_bytes, format });
        }
    }
    Ok(disks)
}

fn disk_format(uri: &str) -> DiskFileFormat {
    let lower = uri.to_lowercase();
    // A fragment names the variant: `…qcow-image-format.html#raw` is a raw image.
    if lower == "raw" || lower.ends_with("#raw") || lower.ends_with("/raw") {
        DiskFileFormat::Raw
    } else if lower.contains("vmdk") {
        DiskFileFormat::Vmdk
    } else if lower.contains("qcow") {
        DiskFileFormat::Qcow2
    } else {
        DiskFileFormat::Other(uri.to_string())
    }
}

/// Reads the virtual systems, flattening nested collections with a work list.
fn read_systems(ns: &Ns, root: Node, disks: &[OvfDisk]) -> Result<(Vec<VirtualSystem>, Option<String>)> {
    let mut systems = Vec::new();
    let mut name = None;
    let mut ids = HashSet::new();
    let mut work: Vec<Node> = root.children().filter(|c| c.is_element()).rev().collect();
    while let Some(node) = work.pop() {
        if ns.is(node, "VirtualSystemCollection") {
            if name.is_none() {
                let id = ns.attr(node, "id").unwrap_or("");
                name = Some(ns.child(node, "Name").and_then(|n| n.text()).unwrap_or(id).trim().to_string());
            }
            work.extend(node.children().filter(|c| c.is_element()).rev());
        } else if ns.is(node, "VirtualSystem") {
            let system = read_system(ns, node, disks)?;
            if !ids.insert(system.id.clone()) {
                return Err(bad(format!("the virtual system id {:?} is used twice", system.id)));
            }
            systems.push(system);
        }
    }
    if systems.is_empty() {
        return Err(bad("the descriptor has no virtual system"));
    }
    Ok((systems, name))
}

/// The settings of one `Item`, `StorageItem` or `EthernetPortItem` that ovm reads.
#[derive(Default)]
struct Item<'a> {
    resource_type: Option<&'a str>,
    quantity: Option<&'a str>,
    units: Option<&'a str>,
    host_resource: Option<&'a str>,
    connection: Option<&'a str>,
}

fn read_item<'a>(node: Node<'a, '_>) -> Item<'a> {
    let mut item = Item::default();
    for c in node.children().filter(|c| c.is_element()) {
        let in_cim = c.tag_name().namespace().and_then(|n| n.strip_prefix(CIM));
        if !matches!(in_cim, Some(RASD | SASD | EPASD)) {
            continue;
        }
        let text = c.text().map(str::trim);
        match local(c) {
            "ResourceType" => item.resource_type = text,
            "VirtualQuantity" => item.quantity = text,
            "AllocationUnits" => item.units = text,
            "HostResource" => item.host_resource = item.host_resource.or(text),
            "Connection" => item.connection = item.connection.or(text),
            _ => {}
        }
    }
    item
}

fn read_system(ns: &Ns, node: Node, disks: &[OvfDisk]) -> Result<VirtualSystem> {
    let id = ns.required(node, "id")?.to_string();
    let name = ns.child(node, "Name").and_then(|n| n.text()).map_or(id.clone(), |n| n.trim().to_string());
    let os = ns
        .child(node, "OperatingSystemSection")
        .and_then(|s| ns.child(s, "Description"))
        .and_then(|d| d.text())
        .map(|t| t.trim().to_string());
    let mut system = VirtualSystem {
        id,
        name,
        os,
        vcpus: 1,
        memory_mib: 0,
        disks: Vec::new(),
        nics: Vec::new(),
        cdrom: false,
    };
    if let Some(hw) = ns.child(node, "VirtualHardwareSection") {
        let items = hw
            .children()
            .filter(|c| ns.is(*c, "Item") || ns.is(*c, "StorageItem") || ns.is(*c, "EthernetPortItem"));
        for item in items {
            apply_item(&mut system, &read_item(item), disks)?;
        }
    }
    if system.vcpus == 0 || system.vcpus > MAX_VCPUS {
        return Err(bad(format!(
            "virtual system {:?} has {} vCPUs (1..={MAX_VCPUS})",
            system.id, system.vcpus
        )));
    }
    if system.memory_mib == 0 {
        return Err(bad(format!("virtual system {:?} has no memory", system.id)));
    }
    Ok(system)
}

fn apply_item(system: &mut VirtualSystem, item: &Item, disks: &[OvfDisk]) -> Result<()> {
    let id = &system.id;
    match item.resource_type {
        Some("3") => {
            let n = number(item.quantity.unwrap_or(""), "the vCPU count")?;
            system.vcpus = u32::try_from(n).unwrap_or(u32::MAX);
        }
        Some("4") => {
            let n = number(item.quantity.unwrap_or(""), "the memory size")?;
            let unit = unit_bytes(item.units.unwrap_or("byte * 2^20"))?;
            let bytes = n.checked_mul(unit).ok_or_else(|| bad(format!("the memory of {id:?} overflows")))?;
            system.memory_mib = bytes.div_ceil(1 << 20);
        }
        Some("17") => {
            if let Some(host) = item.host_resource {
                system.disks.push(disk_ref(host, id, disks)?);
            }
        }
        Some("10") => system.nics.push(item.connection.filter(|c| !c.is_empty()).map(str::to_string)),
        Some("15" | "16") => system.cdrom = true,
        _ => {}
    }
    Ok(())
}

/// The disk id named by a HostResource `ovf:/disk/ID` or `/disk/ID`; it must be a known disk.
fn disk_ref(host: &str, system: &str, disks: &[OvfDisk]) -> Result<String> {
    let id = host.strip_prefix("ovf:").unwrap_or(host).strip_prefix("/disk/");
    match id {
        Some(id) if disks.iter().any(|d| d.id == id) => Ok(id.to_string()),
        _ => Err(bad(format!("virtual system {system:?} refers to an unknown disk {host:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVF_10: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:href="web-disk001.vmdk" ovf:id="file1" ovf:size="1073741824"/>
    <File ovf:href="db-disk001.vmdk" ovf:id="file2"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="20" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk1"
        ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
    <Disk ovf:capacity="10737418240" ovf:diskId="vmdisk2" ovf:fileRef="file2"
        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT"><Description>Logical network used by this appliance.</Description></Network>
  </NetworkSection>
  <VirtualSystemCollection ovf:id="web-app">
    <Info>A collection of virtual machines</Info>
    <Name>Web application</Name>
    <VirtualSystem ovf:id="web">
      <Info>A virtual machine</Info>
      <OperatingSystemSection ovf:id="109">
        <Info>The kind of installed guest operating system</Info>
        <Description>Oracle_64</Description>
      </OperatingSystemSection>
      <VirtualHardwareSection>
        <Info>Virtual hardware requirements for a virtual machine</Info>
        <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
          <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType></System>
        <Item><rasd:Caption>2 virtual CPU</rasd:Caption><rasd:InstanceID>1</rasd:InstanceID>
          <rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
        <Item><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID>
          <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
        <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>5</rasd:ResourceType></Item>
        <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>NAT</rasd:Connection>
          <rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceSubType>E1000</rasd:ResourceSubType>
          <rasd:ResourceType>10</rasd:ResourceType></Item>
        <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
          <rasd:InstanceID>5</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
        <Item ovf:required="false"><rasd:AddressOnParent>1</rasd:AddressOnParent><rasd:InstanceID>6</rasd:InstanceID>
          <rasd:ResourceType>15</rasd:ResourceType></Item>
      </VirtualHardwareSection>
    </VirtualSystem>
    <VirtualSystem ovf:id="db">
      <Info>A virtual machine</Info>
      <Name>Database</Name>
      <VirtualHardwareSection>
        <Info>Virtual hardware requirements</Info>
        <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
          <rasd:VirtualQuantity>4</rasd:VirtualQuantity></Item>
        <Item><rasd:AllocationUnits>byte * 2^30</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID>
          <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>8</rasd:VirtualQuantity></Item>
        <Item><rasd:HostResource>ovf:/disk/vmdisk2</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID>
          <rasd:ResourceType>17</rasd:ResourceType></Item>
        <Item><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></Item>
        <Item><rasd:Connection>NAT</rasd:Connection><rasd:InstanceID>5</rasd:InstanceID>
          <rasd:ResourceType>10</rasd:ResourceType></Item>
      </VirtualHardwareSection>
    </VirtualSystem>
  </VirtualSystemCollection>
</Envelope>"#;

    const OVF_20: &str = r#"<?xml version="1.0"?>
<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/2"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:sasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData"
    xmlns:epasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData">
  <ovf:References><ovf:File ovf:id="f1" ovf:href="system.qcow2" ovf:size="5000"/></ovf:References>
  <ovf:DiskSection>
    <ovf:Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="8" ovf:capacityAllocationUnits="byte * 2^30"
        ovf:format="http://www.gnome.org/~markmc/qcow-image-format.html"/>
    <ovf:Disk ovf:diskId="d2" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^40" ovf:format="raw"/>
  </ovf:DiskSection>
  <ovf:NetworkSection><ovf:Network ovf:name="public"/></ovf:NetworkSection>
  <ovf:VirtualSystem ovf:id="vm1">
    <ovf:Name>Appliance</ovf:Name>
    <ovf:VirtualHardwareSection>
      <ovf:Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></ovf:Item>
      <ovf:Item><rasd:ResourceType>4</rasd:ResourceType><rasd:AllocationUnits>byte</rasd:AllocationUnits>
        <rasd:VirtualQuantity>536870912</rasd:VirtualQuantity></ovf:Item>
      <ovf:StorageItem><sasd:HostResource>ovf:/disk/d1</sasd:HostResource><sasd:ResourceType>17</sasd:ResourceType></ovf:StorageItem>
      <ovf:StorageItem><sasd:HostResource>ovf:/disk/d2</sasd:HostResource><sasd:ResourceType>17</sasd:ResourceType></ovf:StorageItem>
      <ovf:StorageItem><sasd:ResourceType>16</sasd:ResourceType></ovf:StorageItem>
      <ovf:EthernetPortItem><epasd:Connection>public</epasd:Connection><epasd:ResourceType>10</epasd:ResourceType></ovf:EthernetPortItem>
    </ovf:VirtualHardwareSection>
  </ovf:VirtualSystem>
</ovf:Envelope>"#;

    fn refused(xml: &[u8], needle: &str) {
        match parse(xml) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "ovf");
                assert!(reason.contains(needle), "{reason:?} should mention {needle:?}");
            }
            other => panic!("expected a refusal mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn ovf_10_collection_of_two_systems() {
        let e = parse(OVF_10.as_bytes()).unwrap();
        assert_eq!(e.version, OvfVersion::V1);
        assert_eq!(e.name.as_deref(), Some("Web application"));
        assert_eq!(
            e.files,
            [
                OvfFile { id: "file1".into(), href: "web-disk001.vmdk".into(), size: Some(1 << 30) },
                OvfFile { id: "file2".into(), href: "db-disk001.vmdk".into(), size: None },
            ]
        );
        assert_eq!(e.disks[0].capacity_bytes, 20 << 30);
        assert_eq!(e.disks[0].format, DiskFileFormat::Vmdk);
        assert_eq!(e.disks[1].capacity_bytes, 10 << 30);
        assert_eq!(e.disks[1].file_ref.as_deref(), Some("file2"));
        assert_eq!(e.networks, ["NAT"]);
        let web = &e.systems[0];
        assert_eq!(
            web,
            &VirtualSystem {
                id: "web".into(),
                name: "web".into(),
                os: Some("Oracle_64".into()),
                vcpus: 2,
                memory_mib: 2048,
                disks: vec!["vmdisk1".into()],
                nics: vec![Some("NAT".into())],
                cdrom: true,
            }
        );
        let db = &e.systems[1];
        assert_eq!((db.name.as_str(), db.vcpus, db.memory_mib), ("Database", 4, 8192));
        assert_eq!(db.disks, ["vmdisk2"]);
        assert_eq!(db.nics, [None, Some("NAT".to_string())]);
        assert!(!db.cdrom && db.os.is_none());
    }

    #[test]
    fn ovf_20_storage_and_ethernet_port_items() {
        let e = parse(OVF_20.as_bytes()).unwrap();
        assert_eq!(e.version, OvfVersion::V2);
        assert_eq!(e.name, None);
        assert_eq!(e.disks[0].format, DiskFileFormat::Qcow2);
        assert_eq!(e.disks[1].format, DiskFileFormat::Raw);
        assert_eq!(e.disks[1].capacity_bytes, 1 << 40);
        assert_eq!(e.disks[1].file_ref, None);
        let s = &e.systems[0];
        assert_eq!((s.name.as_str(), s.vcpus, s.memory_mib), ("Appliance", 1, 512));
        assert_eq!(s.disks, ["d1", "d2"]);
        assert_eq!(s.nics, [Some("public".to_string())]);
        assert!(s.cdrom);
    }

    #[test]
    fn nested_collections_are_flattened() {
        let xml = OVF_20.replace(
            "<ovf:VirtualSystem ovf:id=\"vm1\">",
            "<ovf:VirtualSystemCollection ovf:id=\"outer\"><ovf:VirtualSystemCollection ovf:id=\"inner\">\
             <ovf:VirtualSystem ovf:id=\"vm1\">",
        );
        let xml = xml.replace(
            "</ovf:VirtualSystem>",
            "</ovf:VirtualSystem></ovf:VirtualSystemCollection></ovf:VirtualSystemCollection>",
        );
        let e = parse(xml.as_bytes()).unwrap();
        assert_eq!(e.name.as_deref(), Some("outer"));
        assert_eq!(e.systems.len(), 1);
    }

    #[test]
    fn dtds_and_entities_are_refused() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&lol3;</Envelope>"#;
        refused(laughs.as_bytes(), "DOCTYPE");
        let external = r#"<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><Name>&x;</Name></Envelope>"#;
        refused(external.as_bytes(), "DOCTYPE");
        let undeclared = r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&x;</Envelope>"#;
        refused(undeclared.as_bytes(), "not well-formed");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let depth = 10_000;
        let xml =
            format!("<Envelope xmlns=\"{OVF1}\">{}{}</Envelope>", "<a>".repeat(depth), "</a>".repeat(depth));
        refused(xml.as_bytes(), "nested deeper than 64");
        // End tags hidden in comments, CDATA or attribute values do not hide the depth.
        let xml = format!(
            "<Envelope xmlns=\"{OVF1}\"><!--{c}--><![CDATA[{c}]]><b a=\"{c}\" b='>'/>{}{}</Envelope>",
            "<a>".repeat(depth),
            "</a>".repeat(depth),
            c = "</a>".repeat(100),
        );
        refused(xml.as_bytes(), "nested deeper than 64");
    }

    #[test]
    fn huge_values_and_documents_are_refused() {
        let xml = format!("<Envelope xmlns=\"{OVF1}\" a=\"{}\"/>", "x".repeat(10 << 20));
        refused(xml.as_bytes(), "larger than 4194304 bytes");
        let xml = format!("<Envelope xmlns=\"{OVF1}\" a=\"{}\"/>", "x".repeat(1 << 20));
        refused(xml.as_bytes(), "attribute of <Envelope> is larger");
        let xml = format!("<Envelope xmlns=\"{OVF1}\"><Info>{}</Info></Envelope>", "x".repeat(1 << 17));
        refused(xml.as_bytes(), "text is larger");
        let xml = format!("<Envelope xmlns=\"{OVF1}\">{}</Envelope>", "<a/>".repeat(200_000));
        refused(xml.as_bytes(), "not well-formed");
    }

    #[test]
    fn bad_file_references_are_refused() {
        for href in ["../etc/passwd", "/etc/passwd", "dir/disk.vmdk", "http://evil/disk.vmdk", ".."] {
            let xml = OVF_10.replace("web-disk001.vmdk", href);
            refused(xml.as_bytes(), "file reference");
        }
    }

    #[test]
    fn inconsistent_descriptors_are_refused() {
        refused(OVF_10.replace("/disk/vmdisk1", "/disk/nope").as_bytes(), "unknown disk");
        refused(OVF_10.replace("ovf:fileRef=\"file1\"", "ovf:fileRef=\"nofile\"").as_bytes(), "unknown file");
        refused(OVF_10.replace("ovf:id=\"file2\"", "ovf:id=\"file1\"").as_bytes(), "used twice");
        refused(OVF_10.replace("diskId=\"vmdisk2\"", "diskId=\"vmdisk1\"").as_bytes(), "used twice");
        refused(OVF_10.replace("ovf:id=\"db\"", "ovf:id=\"web\"").as_bytes(), "used twice");
        refused(OVF_10.replace(">4</rasd:VirtualQuantity>", ">0</rasd:VirtualQuantity>").as_bytes(), "vCPUs");
        refused(
            OVF_10.replace(">4</rasd:VirtualQuantity>", ">513</rasd:VirtualQuantity>").as_bytes(),
            "vCPUs",
        );
        refused(
            OVF_10.replace(">8</rasd:VirtualQuantity>", ">0</rasd:VirtualQuantity>").as_bytes(),
            "no memory",
        );
        let overflow = OVF_10.replace("ovf:capacity=\"20\"", "ovf:capacity=\"99999999999999\"");
        refused(overflow.as_bytes(), "overflows");
        let no_systems = OVF_20.split("<ovf:VirtualSystem ").next().unwrap().to_string() + "</ovf:Envelope>";
        refused(no_systems.as_bytes(), "no virtual system");
        refused(b"<Envelope xmlns=\"urn:other\"/>", "not an OVF");
        refused(b"\xff\xfe<", "not UTF-8");
    }
}
