//! The generic iSCSI storage-array plug-in of the local Xen host: open-iscsi's `iscsiadm` for
//! discovery, login and logout (as Storage Connect's generic plug-in does), and the LUNs read from
//! sysfs: each SCSI disk of a session, its identifier (`device/wwid`, page 83), unit serial (page
//! 80) and size.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::storage::run;
use crate::driver::storage::{check_portal, check_target, IscsiSession, Lun};
use crate::{Error, Result};

const SERVER: &str = "xen:///";
const ISCSIADM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a login waits for its LUNs to appear as disks.
const SCAN_WAIT: Duration = Duration::from_secs(20);

fn backend(what: impl std::fmt::Display) -> Error {
    Error::backend(SERVER, what.to_string())
}

/// `host:port` with the iSCSI port when none is given.
fn with_port(portal: &str) -> String {
    let bracketed_or_plain = !portal.contains(':') || (portal.starts_with('[') && portal.ends_with(']'));
    if bracketed_or_plain {
        format!("{portal}:3260")
    } else {
        portal.to_owned()
    }
}

/// Parse `iscsiadm -m discovery` output: `10.0.0.1:3260,1 iqn...` per line.
pub(crate) fn parse_targets(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| check_target(t).is_ok())
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Parse `iscsiadm -m session` output: `tcp: [1] 10.0.0.1:3260,1 iqn... (non-flash)` per line.
pub(crate) fn parse_sessions(out: &str) -> Vec<IscsiSession> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(2);
            let portal = w.next()?.split(',').next()?.to_owned();
            let target = w.next()?.to_owned();
            check_target(&target).ok()?;
            Some(IscsiSession { portal, target })
        })
        .collect()
}

fn read_trim(p: &Path) -> Option<String> {
    let b = std::fs::read(p).ok()?;
    let s: String = String::from_utf8_lossy(&b).chars().filter(|c| !c.is_control()).collect();
    Some(s.trim().to_owned())
}

/// The generic iSCSI initiator of dom0, with sysfs at `sys` (`/sys`).
#[derive(Debug, Clone)]
pub struct Iscsi {
    sys: PathBuf,
}

impl Default for Iscsi {
    fn default() -> Self {
        Iscsi { sys: PathBuf::from("/sys") }
    }
}

impl Iscsi {
    /// The initiator reading another sysfs tree (tests).
    pub fn with_sysfs(sys: impl Into<PathBuf>) -> Self {
        Iscsi { sys: sys.into() }
    }

    /// This server's initiator name (`/etc/iscsi/initiatorname.iscsi`).
    pub fn initiator(&self) -> Result<String> {
        let text = std::fs::read_to_string("/etc/iscsi/initiatorname.iscsi")
            .map_err(|e| backend(format!("read /etc/iscsi/initiatorname.iscsi: {e}")))?;
        text.lines()
            .find_map(|l| l.trim().strip_prefix("InitiatorName="))
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| backend("/etc/iscsi/initiatorname.iscsi names no initiator"))
    }

    /// SendTargets discovery at `portal`.
    pub fn discover_targets(&self, portal: &str) -> Result<Vec<String>> {
        check_portal(portal)?;
        let p = with_port(portal);
        let out = run("iscsiadm", &["-m", "discovery", "-t", "sendtargets", "-p", &p], ISCSIADM_TIMEOUT)
            .map_err(|e| Error::backend(portal, format!("iSCSI discovery: {e}")))?;
        Ok(parse_targets(&out))
    }

    /// The sessions of this server.
    pub fn sessions(&self) -> Result<Vec<IscsiSession>> {
        match run("iscsiadm", &["-m", "session"], ISCSIADM_TIMEOUT) {
            Ok(out) => Ok(parse_sessions(&out)),
            // iscsiadm exits 21 ("no active sessions") when there are none.
            Err(e)
                if e.to_string().contains("No active sessions")
                    || e.to_string().contains("exit status: 21") =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Log in to `target` through `portal` and wait for its LUNs to appear.
    pub fn login(&self, portal: &str, target: &str) -> Result<()> {
        check_portal(portal)?;
        check_target(target)?;
        if self.sessions()?.iter().any(|s| s.target == target) {
            return Ok(());
        }
        let p = with_port(portal);
        // Discovery makes the node record the login needs (and says whether the portal offers the
        // target to this initiator at all).
        if !self.discover_targets(portal)?.iter().any(|t| t == target) {
            return Err(Error::backend(portal, format!("the portal does not offer {target} to this server")));
        }
        run("iscsiadm", &["-m", "node", "-T", target, "-p", &p, "--login"], ISCSIADM_TIMEOUT)
            .map_err(|e| Error::backend(portal, format!("log in to {target}: {e}")))?;
        // The SCSI scan of the new session runs on after the login returns.
        self.settle(target);
        Ok(())
    }

    /// Rescan the session with `target`: LUNs granted since the login become disks, and disks
    /// that grew show their new size.
    pub fn rescan(&self, target: &str) -> Result<()> {
        check_target(target)?;
        self.disks_of(target)?; // logged in?
        run("iscsiadm", &["-m", "node", "-T", target, "--rescan"], ISCSIADM_TIMEOUT)
            .map_err(|e| backend(format!("rescan {target}: {e}")))?;
        self.settle(target);
        Ok(())
    }

    /// Remove the SCSI device of LUN `id` of `target` (none: nothing to do).
    pub fn forget_lun(&self, target: &str, id: &str) -> Result<()> {
        check_target(target)?;
        let disks = match self.disks_of(target) {
            Ok(d) => d,
            Err(_) => return Ok(()), // not logged in: nothing seen
        };
        for d in disks {
            let dev = self.sys.join("block").join(&d);
            if read_trim(&dev.join("device/wwid")).as_deref() == Some(id) {
                let _ = run("blockdev", &["--flushbufs", &format!("/dev/{d}")], ISCSIADM_TIMEOUT);
                std::fs::write(dev.join("device/delete"), "1")
                    .map_err(|e| backend(format!("remove {d} ({id}): {e}")))?;
            }
        }
        Ok(())
    }

    /// Wait until the session's disks stop changing (a SCSI scan runs on after iscsiadm returns).
    fn settle(&self, target: &str) {
        let t0 = Instant::now();
        let mut last = usize::MAX;
        let mut stable_since = Instant::now();
        while t0.elapsed() < SCAN_WAIT {
            let n = self.disks_of(target).map(|d| d.len()).unwrap_or(0);
            if n != last {
                last = n;
                stable_since = Instant::now();
            } else if n > 0 && stable_since.elapsed() > Duration::from_millis(1500) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Log out of `target` (no session is success).
    pub fn logout(&self, portal: &str, target: &str) -> Result<()> {
        check_portal(portal)?;
        check_target(target)?;
        let p = with_port(portal);
        if self.sessions()?.iter().any(|s| s.target == target) {
            run("iscsiadm", &["-m", "node", "-T", target, "-p", &p, "--logout"], ISCSIADM_TIMEOUT)
                .map_err(|e| Error::backend(portal, format!("log out of {target}: {e}")))?;
        }
        // The node records discovery left go too: iscsid must not log in again on its own (at its
        // next start) to a target this server no longer uses, through any portal. (None is fine.)
        let _ = run("iscsiadm", &["-m", "node", "-T", target, "-o", "delete"], ISCSIADM_TIMEOUT);
        Ok(())
    }

    /// The SCSI disks (`sdX`) of the session with `target`.
    fn disks_of(&self, target: &str) -> Result<Vec<String>> {
        let sessions = self.sys.join("class/iscsi_session");
        let mut ids = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&sessions) {
            for e in rd.flatten() {
                if read_trim(&e.path().join("targetname")).as_deref() == Some(target) {
                    ids.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        if ids.is_empty() {
            return Err(backend(format!("not logged in to {target}")));
        }
        let mut disks = Vec::new();
        let block = self.sys.join("block");
        for e in std::fs::read_dir(&block)
            .map_err(|e| backend(format!("read {}: {e}", block.display())))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("sd") {
                continue;
            }
            // /sys/block/sdX links to .../sessionN/target.../H:C:T:L/block/sdX
            let Ok(link) = std::fs::read_link(e.path()) else { continue };
            let link = link.to_string_lossy();
            if ids.iter().any(|s| link.split('/').any(|c| c == s)) {
                disks.push(name);
            }
        }
        disks.sort();
        Ok(disks)
    }

    /// The LUNs of `target` this server sees.
    pub fn list_luns(&self, target: &str) -> Result<Vec<Lun>> {
        check_target(target)?;
        let mut luns = Vec::new();
        for d in self.disks_of(target)? {
            let dev = self.sys.join("block").join(&d);
            let sectors: u64 = read_trim(&dev.join("size")).and_then(|s| s.parse().ok()).unwrap_or(0);
            let id =
                read_trim(&dev.join("device/wwid")).filter(|s| !s.is_empty()).unwrap_or_else(|| d.clone());
            let name = read_trim(&dev.join("device/vpd_pg80"))
                .map(|s| s.trim_start_matches(|c: char| !c.is_ascii_graphic() || c == ' ').to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| d.clone());
            luns.push(Lun { id, name, size_bytes: sectors * 512, thin_clone_of: None });
        }
        Ok(luns)
    }

    /// The device of this server that is the LUN `id` (its WWID), if any.
    pub fn device_of(&self, id: &str) -> Option<PathBuf> {
        let block = self.sys.join("block");
        std::fs::read_dir(&block).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("sd") && read_trim(&e.path().join("device/wwid")).as_deref() == Some(id))
                .then(|| PathBuf::from("/dev").join(name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iscsiadm_output() {
        let t = parse_targets(
            "10.77.1.254:3260,1 iqn.2026-01.lab.ovm:shared\n10.77.0.254:3260,1 iqn.2026-01.lab.ovm:shared\n\
             [fd00::1]:3260,1 iqn.2026-01.lab.ovm:private3\ngarbage\n",
        );
        assert_eq!(t, ["iqn.2026-01.lab.ovm:private3", "iqn.2026-01.lab.ovm:shared"]);
        let s = parse_sessions("tcp: [1] 10.77.1.254:3260,1 iqn.2026-01.lab.ovm:shared (non-flash)\n");
        assert_eq!(
            s,
            [IscsiSession { portal: "10.77.1.254:3260".into(), target: "iqn.2026-01.lab.ovm:shared".into() }]
        );
        assert_eq!(with_port("10.0.0.1"), "10.0.0.1:3260");
        assert_eq!(with_port("10.0.0.1:3261"), "10.0.0.1:3261");
        assert_eq!(with_port("[fd00::1]"), "[fd00::1]:3260");
    }

    #[test]
    fn luns_from_sysfs() {
        let root = std::env::temp_dir().join(format!("ovm-iscsi-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let sess = root.join("class/iscsi_session/session3");
        std::fs::create_dir_all(&sess).unwrap();
        std::fs::write(sess.join("targetname"), "iqn.2026-01.lab.ovm:shared\n").unwrap();
        let dev = root.join("devices/platform/host2/session3/target2:0:0/2:0:0:1");
        std::fs::create_dir_all(dev.join("block/sdb")).unwrap();
        std::fs::write(dev.join("wwid"), "naa.6001405abc\n").unwrap();
        std::fs::write(dev.join("vpd_pg80"), b"\x00\x80\x00\x10ovm-lab-shared-lun0").unwrap();
        std::fs::write(dev.join("block/sdb/size"), "2097152\n").unwrap();
        std::fs::create_dir_all(root.join("block")).unwrap();
        std::os::unix::fs::symlink(dev.join("block/sdb"), root.join("block/sdb")).unwrap();
        // The device directory the kernel links from the disk.
        std::os::unix::fs::symlink(&dev, dev.join("block/sdb/device")).unwrap();
        let i = Iscsi::with_sysfs(&root);
        let luns = i.list_luns("iqn.2026-01.lab.ovm:shared").unwrap();
        assert_eq!(
            luns,
            [Lun {
                id: "naa.6001405abc".into(),
                name: "ovm-lab-shared-lun0".into(),
                size_bytes: 1 << 30,
                thin_clone_of: None
            }]
        );
        assert_eq!(i.device_of("naa.6001405abc"), Some(PathBuf::from("/dev/sdb")));
        assert!(i.list_luns("iqn.2026-01.lab.ovm:other").is_err(), "no session");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
