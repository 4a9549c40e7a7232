//! Network boot of PV and PVH guests: the installer's kernel and initial ramdisk, read from an
//! install tree over HTTP(S) by the server that boots the guest (the Xen driver, and the simulator,
//! which reads them as a server would).

use std::path::Path;

use crate::model::NetworkBoot;
use crate::source::{Source, Url};
use crate::{Error, Result};

/// The installer's kernel, in its directory.
pub const KERNEL: &str = "vmlinuz";
/// The installer's initial ramdisk, in its directory.
pub const INITRD: &str = "initrd";
/// Largest installer kernel read from an install tree, bytes.
const MAX_NETWORK_BOOT_KERNEL: u64 = 256 << 20;
/// Largest installer ramdisk read from an install tree, bytes.
const MAX_NETWORK_BOOT_INITRD: u64 = 2 << 30;

/// Where a PV installer's kernel and initial ramdisk lie in an install tree, as distributions lay
/// out their ISOs and mirrors: Oracle Linux and Red Hat (`images/xen/`, later `images/pxeboot/`),
/// Debian (`install.amd/xen/`). The first layout whose kernel the server has is taken.
pub const INSTALL_TREE_LAYOUTS: &[(&str, &str)] = &[
    ("images/xen/vmlinuz", "images/xen/initrd.img"),
    ("images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"),
    ("install.amd/xen/vmlinuz", "install.amd/xen/initrd.gz"),
];

/// Read a network-booted guest's installer from its install tree into `dir`: the kernel
/// (an ELF image or a bzImage, at most 256 MiB) and the initial ramdisk (at most 2 GiB), each
/// written beside and renamed into place whole. The URL is checked again here: the agent trusts
/// nothing it is given.
pub fn fetch_installer(nb: &NetworkBoot, dir: &Path) -> Result<()> {
    nb.validate()?;
    let base = nb.url.trim_end_matches('/');
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::backend("network boot", format!("create {}: {e}", dir.display())))?;
    let mut tried = Vec::new();
    for (kernel, initrd) in INSTALL_TREE_LAYOUTS {
        let url = format!("{base}/{kernel}");
        let opened = match Source::Url(Url::parse(&url)?).open() {
            Ok(o) => o,
            // Not this layout: the next one may be the tree's.
            Err(e) if e.to_string().contains("HTTP 404") => {
                tried.push(url);
                continue;
            }
            // The server unreachable, refusing, failing: that is the error.
            Err(e) => return Err(e),
        };
        let path = dir.join(KERNEL);
        store_bounded(opened.reader, &path, MAX_NETWORK_BOOT_KERNEL, &url)?;
        let mut head = [0u8; 0x206];
        let n =
            std::fs::File::open(&path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
        let elf = n >= 4 && head[..4] == *b"\x7fELF";
        let bzimage = n >= 0x206 && head[0x202..0x206] == *b"HdrS";
        if !elf && !bzimage {
            let _ = std::fs::remove_file(&path);
            return Err(Error::invalid(
                "network_boot",
                format!("{url} is not a Linux kernel (ELF or bzImage)"),
            ));
        }
        let url = format!("{base}/{initrd}");
        let opened = Source::Url(Url::parse(&url)?).open()?;
        store_bounded(opened.reader, &dir.join(INITRD), MAX_NETWORK_BOOT_INITRD, &url)?;
        return Ok(());
    }
    Err(Error::invalid(
        "network_boot",
        format!("no installer kernel in the install tree {} (not found: {})", nb.url, tried.join(", ")),
    ))
}

/// Copy `from` into `path` (written as `path.part`, then renamed), refusing more than `limit`
/// bytes.
fn store_bounded(from: Box<dyn std::io::Read + Send>, path: &Path, limit: u64, what: &str) -> Result<()> {
    let part = path.with_extension("part");
    let io = |e: std::io::Error| Error::backend("network boot", format!("{what} -> {}: {e}", part.display()));
    let mut out = std::fs::File::create(&part).map_err(io)?;
    let n = std::io::copy(&mut std::io::Read::take(from, limit + 1), &mut out).map_err(|e| {
        let _ = std::fs::remove_file(&part);
        io(e)
    })?;
    if n > limit {
        let _ = std::fs::remove_file(&part);
        return Err(Error::invalid("network_boot", format!("{what} is larger than {} MiB", limit >> 20)));
    }
    out.sync_all().map_err(io)?;
    std::fs::rename(&part, path).map_err(io)
}
