//! Xen's naming conventions for what the driver seam leaves unnamed: guest disk devices and the
//! default bridge. Used by the Xen driver and by protocol v1 of the agent, which carries Xen device
//! names. (Compiled without the `xen` feature: it is plain naming, no dom0 code.)

use crate::model::DomainType;

/// The bridge a NIC joins when its network names none: `xenbr0`, as Xen's network scripts create it.
pub const DEFAULT_BRIDGE: &str = "xenbr0";

/// The PV boot loaders a server may have, by the guest type they boot, in the order they are
/// looked for: GRUB built as a Xen PV (or PVH) kernel, as Debian's `grub-xen-host` installs it,
/// which finds `/boot/grub/grub.cfg` on the guest's disks and boots the kernel it names, inside
/// the guest's own domain.
pub const PV_BOOT_LOADERS: &[(DomainType, &str)] = &[
    (DomainType::Pv, "/usr/lib/grub-xen/grub-x86_64-xen.bin"),
    (DomainType::Pvh, "/usr/lib/grub-xen/grub-i386-xen_pvh.bin"),
];

/// The first of [`PV_BOOT_LOADERS`] for `domain_type` that `exists` says this server has.
pub fn pv_boot_loader(
    domain_type: DomainType,
    exists: impl Fn(&std::path::Path) -> bool,
) -> Option<std::path::PathBuf> {
    PV_BOOT_LOADERS
        .iter()
        .filter(|(t, _)| *t == domain_type)
        .map(|(_, p)| std::path::PathBuf::from(p))
        .find(|p| exists(p))
}

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

/// The longest domain name ovm gives a domain.
const MAX_DOMAIN_NAME: usize = 64;

/// The Xen domain name of a VM: its name when the toolstack takes it as it is (ASCII letters,
/// digits, `_`, `.` and `-`, at most 64 bytes, not only digits), otherwise the name with every other
/// character replaced by `_`, cut short, and the first 8 hex digits of the VM's UUID appended, so
/// that "web 01" and "web_01" remain two domains.
pub fn domain_name(name: &str, uuid: uuid::Uuid) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !name.is_empty()
        && name.len() <= MAX_DOMAIN_NAME
        && name.chars().all(plain)
        && !name.chars().all(|c| c.is_ascii_digit())
    {
        return name.to_owned();
    }
    let mut base: String =
        name.chars().map(|c| if plain(c) { c } else { '_' }).take(MAX_DOMAIN_NAME - 9).collect();
    if base.is_empty() {
        base.push_str("vm");
    }
    format!("{base}-{}", &uuid.simple().to_string()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_are_the_vm_name_or_a_safe_name_with_the_uuid() {
        let u = uuid::Uuid::parse_str("1234abcd-0000-4000-8000-000000000000").unwrap();
        assert_eq!(domain_name("web01", u), "web01");
        assert_eq!(domain_name("a.b_c-d", u), "a.b_c-d");
        assert_eq!(domain_name("web 01", u), "web_01-1234abcd");
        assert_eq!(domain_name("Grüße", u), "Gr__e-1234abcd");
        assert_eq!(domain_name("", u), "vm-1234abcd");
        assert_eq!(domain_name("42", u), "42-1234abcd", "xl would read a number as a domid");
        let long = "x".repeat(100);
        assert_eq!(domain_name(&long, u).len(), MAX_DOMAIN_NAME);
        assert_ne!(domain_name("web 01", u), domain_name("web_01", u));
    }

    #[test]
    fn the_pv_boot_loader_is_the_one_for_the_guest_type_that_the_server_has() {
        let pv = "/usr/lib/grub-xen/grub-x86_64-xen.bin";
        let pvh = "/usr/lib/grub-xen/grub-i386-xen_pvh.bin";
        let all = |_: &std::path::Path| true;
        assert_eq!(pv_boot_loader(DomainType::Pv, all).unwrap().to_str(), Some(pv));
        assert_eq!(pv_boot_loader(DomainType::Pvh, all).unwrap().to_str(), Some(pvh));
        assert_eq!(pv_boot_loader(DomainType::Hvm, all), None, "HVM guests boot from their firmware");
        let only_pv = |p: &std::path::Path| p.to_str() == Some(pv);
        assert_eq!(pv_boot_loader(DomainType::Pvh, only_pv), None);
    }

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
