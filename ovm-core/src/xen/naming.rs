//! Xen's naming conventions for what the driver seam leaves unnamed: guest disk devices and the
//! default bridge. Used by the Xen driver and by protocol v1 of the agent, which carries Xen device
//! names. (Compiled without the `xen` feature: it is plain naming, no dom0 code.)

use crate::model::DomainType;

/// The bridge a NIC joins when its network names none: `xenbr0`, as Xen's network scripts create it.
pub const DEFAULT_BRIDGE: &str = "xenbr0";

/// The guest device of disk slot `slot`: `hd*` (emulated IDE) for HVM guests, `xvd*` otherwise.
pub fn disk_device(domain_type: DomainType, slot: u8) -> String {
    let letter = (b'a' + (slot % 26)) as char;
    match domain_type {
        DomainType::Hvm => format!("hd{letter}"),
        _ => format!("xvd{letter}"),
    }
}

/// The disk slot of guest device `device` (`xvdc` → 2, `hda` → 0), if it is one of those names.
pub fn disk_slot(device: &str) -> Option<u8> {
    let letter = device.strip_prefix("xvd").or_else(|| device.strip_prefix("hd"))?;
    match letter.as_bytes() {
        [c @ b'a'..=b'z'] => Some(c - b'a'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_round_trip() {
        assert_eq!(disk_device(DomainType::Pv, 0), "xvda");
        assert_eq!(disk_device(DomainType::Hvm, 2), "hdc");
        assert_eq!(disk_device(DomainType::Pvh, 27), "xvdb");
        for s in 0..26 {
            assert_eq!(disk_slot(&disk_device(DomainType::Hvm, s)), Some(s));
            assert_eq!(disk_slot(&disk_device(DomainType::Pv, s)), Some(s));
        }
        assert_eq!(disk_slot("sda"), None);
        assert_eq!(disk_slot("xvdaa"), None);
    }
}
