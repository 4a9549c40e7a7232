//! `ovm-lio`: the management interface of a Linux LIO iSCSI target, as ovm's LIO plug-in drives
//! it (see the [module](super) documentation for the protocol).
//!
//! A LUN is a sparse file `STATE/luns/TARGET/NAME.img`, attached to a loop device (cleared when
//! its last user lets go) and exported through an `iblock` backstore whose unit serial number is
//! a fresh UUID, so that its SCSI identifier ([`super::naa_of_serial`]) is unique and known before
//! any server sees it. Growing a LUN grows the file and the loop device's capacity; the
//! backstore follows (a server sees the new size after a rescan). A clone is a sparse copy (the
//! file system under `STATE` has no reflinks, so it is not thin). An access group is a set of
//! initiators; the node ACLs of a managed target are made from the groups: an initiator in no
//! group has no ACL and cannot log in, and it sees exactly the LUNs presented to its groups.
//! What is managed is kept in `STATE/state.json` and set up again at start.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{http, naa_of_serial, RpcError, RpcRequest, RpcResponse, RPC_PATH};
use crate::agent::tls::{self, Identity};
use crate::driver::storage::{check_target, AccessGroup, ArrayAnswer, ArrayManagement, Lun};
use crate::{Error, Result};

/// How `ovm-lio` is set up.
#[derive(Debug, Clone)]
pub struct LioConfig {
    /// LIO's configfs directory (`/sys/kernel/config/target`).
    pub configfs: PathBuf,
    /// Where LUN files, the state and the identity live.
    pub state_dir: PathBuf,
    /// The targets it manages (created if missing).
    pub targets: Vec<String>,
    /// The administrator's name.
    pub username: String,
    /// The administrator's password.
    pub password: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    targets: BTreeMap<String, TargetState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct TargetState {
    luns: BTreeMap<String, LunState>,
    groups: BTreeMap<String, GroupState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LunState {
    serial: String,
    number: u32,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct GroupState {
    initiators: Vec<String>,
    luns: Vec<String>,
}

/// The management interface: LIO through configfs, and the state of what it manages.
#[derive(Debug)]
pub struct Lio {
    cfg: LioConfig,
    identity: Identity,
    state: Mutex<State>,
}

fn backend(m: impl Into<String>) -> Error {
    Error::backend("ovm-lio", m)
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| backend(format!("{what}: {e}"))
}

fn write_attr(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(io(format_args!("write {value:?} to {}", path.display())))
}

fn mkdir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(backend(format!("mkdir {}: {e}", path.display()))),
    }
}

fn rmdir(path: &Path) -> Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(backend(format!("rmdir {}: {e}", path.display()))),
    }
}

/// Remove the symbolic links in a configfs directory (a LUN's or a mapped LUN's link).
fn unlink_all(dir: &Path) -> Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
                fs::remove_file(e.path()).map_err(io(format_args!("unlink {}", e.path().display())))?;
            }
        }
    }
    Ok(())
}

// Loop devices (linux/loop.h).
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// Attach `file` to a free loop device that clears itself when its last user closes it; the
/// returned handle keeps it until the caller's user (the backstore) holds it.
fn loop_attach(file: &Path) -> Result<(PathBuf, File)> {
    let ctl = File::open("/dev/loop-control").map_err(io("open /dev/loop-control"))?;
    for _ in 0..5 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(backend(format!("no free loop device: {}", std::io::Error::last_os_error())));
        }
        let dev = PathBuf::from(format!("/dev/loop{n}"));
        let lo = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .map_err(io(format_args!("open {}", dev.display())))?;
        let backing = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(file)
            .map_err(io(format_args!("open {}", file.display())))?;
        // SAFETY: LOOP_SET_FD takes the backing file's descriptor, valid for the call.
        if unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                continue; // taken meanwhile
            }
            return Err(backend(format!("attach {} to {}: {e}", file.display(), dev.display())));
        }
        // SAFETY: loop_info64 is plain integers and byte arrays: all zeros is a valid value.
        let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
        info.flags = LO_FLAGS_AUTOCLEAR;
        let name = file.as_os_str().as_encoded_bytes();
        let k = name.len().min(63);
        info.file_name[..k].copy_from_slice(&name[..k]);
        // SAFETY: a valid loop_info64 for the duration of the call.
        if unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_SET_STATUS64 as _, &info as *const LoopInfo64) } < 0 {
            return Err(backend(format!("set up {}: {}", dev.display(), std::io::Error::last_os_error())));
        }
        return Ok((dev, lo));
    }
    Err(backend("no free loop device (they were taken meanwhile)"))
}

/// The loop device attached to `file`, from sysfs.
fn loop_of(file: &Path) -> Option<PathBuf> {
    fs::read_dir("/sys/block").ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let backing = fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
        (name.starts_with("loop") && Path::new(backing.trim()) == file)
            .then(|| PathBuf::from("/dev").join(name))
    })
}

/// Copy `from` to a new file `to`, leaving holes where `from` reads zeros.
fn sparse_copy(from: &Path, to: &Path) -> Result<()> {
    let mut src = File::open(from).map_err(io(format_args!("open {}", from.display())))?;
    let len = src.metadata().map_err(io("stat"))?.len();
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)
        .map_err(io(format_args!("create {}", to.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let n = src.read(&mut buf).map_err(io("read"))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(pos)).map_err(io("seek"))?;
            dst.write_all(&buf[..n]).map_err(io("write"))?;
        }
        pos += n as u64;
    }
    dst.set_len(len).map_err(io("size"))?;
    dst.sync_all().map_err(io("sync"))
}

fn free_bytes(path: &Path) -> Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| backend("path"))?;
    // SAFETY: statvfs is plain integers: all zeros is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(backend(format!("statvfs {}: {}", path.display(), std::io::Error::last_os_error())));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

impl Lio {
    /// Open the state (its identity made on first start) and set up again in LIO what it
    /// manages: the targets, their LUNs and the ACLs of their access groups.
    pub fn open(cfg: LioConfig) -> Result<Lio> {
        for t in &cfg.targets {
            check_target(t)?;
        }
        fs::create_dir_all(cfg.state_dir.join("luns")).map_err(io("make the state directory"))?;
        let id_path = cfg.state_dir.join("identity.json");
        let identity = match fs::read(&id_path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| backend(format!("{}: {e}", id_path.display())))?
            }
            Err(_) => {
                let id = Identity::generate("ovm-lio")?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&id_path)
                    .map_err(io("write the identity"))?;
                f.write_all(&serde_json::to_vec(&id).map_err(|e| backend(e.to_string()))?)
                    .map_err(io("write"))?;
                id
            }
        };
        identity.validate()?;
        let state: State = match fs::read(cfg.state_dir.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| backend(format!("state.json: {e}")))?,
            Err(_) => State::default(),
        };
        let lio = Lio { cfg, identity, state: Mutex::new(state) };
        lio.restore()?;
        Ok(lio)
    }

    /// The certificate's fingerprint.
    pub fn fingerprint_of(&self) -> Result<String> {
        self.identity.fingerprint()
    }

    fn tpg(&self, target: &str) -> PathBuf {
        self.cfg.configfs.join("iscsi").join(target).join("tpgt_1")
    }

    fn backstore(&self, serial: &str) -> PathBuf {
        self.cfg.configfs.join("core/iblock_0").join(serial)
    }

    fn lun_file(&self, target: &str, name: &str) -> PathBuf {
        self.cfg.state_dir.join("luns").join(target).join(format!("{name}.img"))
    }

    fn save(&self, st: &State) -> Result<()> {
        let p = self.cfg.state_dir.join("state.json");
        let tmp = p.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(io("write the state"))?;
        f.write_all(&serde_json::to_vec_pretty(st).map_err(|e| backend(e.to_string()))?)
            .and_then(|_| f.sync_all())
            .map_err(io("write the state"))?;
        fs::rename(&tmp, &p).map_err(io("write the state"))
    }

    fn restore(&self) -> Result<()> {
        let mut st = crate::sync::lock(&self.state);
        for t in self.cfg.targets.clone() {
            let tpg = self.tpg(&t);
            if !tpg.exists() {
                fs::create_dir_all(&tpg).map_err(io(format_args!("create target {t}")))?;
            }
            mkdir(&tpg.join("np/0.0.0.0:3260"))?;
            write_attr(&tpg.join("attrib/authentication"), "0")?;
            write_attr(&tpg.join("attrib/generate_node_acls"), "0")?;
            let ts = st.targets.entry(t.clone()).or_default().clone();
            for (name, l) in &ts.luns {
                self.export(&t, name, l)?;
            }
            self.reconcile(&t, &ts)?;
            write_attr(&tpg.join("enable"), "1")?;
        }
        self.save(&st)?;
        drop(st);
        Ok(())
    }

    /// Set up a LUN's backstore and its LUN in the target (what exists already is kept).
    fn export(&self, target: &str, name: &str, l: &LunState) -> Result<()> {
        let bs = self.backstore(&l.serial);
        let enabled = fs::read_to_string(bs.join("enable")).map(|s| s.trim() == "1").unwrap_or(false);
        if !enabled {
            fs::create_dir_all(&bs).map_err(io(format_args!("create backstore {}", bs.display())))?;
            let (dev, hold) = loop_attach(&self.lun_file(target, name))?;
            write_attr(&bs.join("control"), &format!("udev_path={}", dev.display()))?;
            // (the `udev_path` attribute is what is shown; the control parameter alone leaves it empty)
            write_attr(&bs.join("udev_path"), &dev.display().to_string())?;
            write_attr(&bs.join("wwn/vpd_unit_serial"), &l.serial)?;
            write_attr(&bs.join("enable"), "1")?;
            drop(hold); // the backstore holds the loop device now
        }
        let lun = self.tpg(target).join(format!("lun/lun_{}", l.number));
        if !lun.exists() {
            mkdir(&lun)?;
            symlink(&bs, lun.join("dev")).map_err(io(format_args!("link {}", lun.display())))?;
        }
        Ok(())
    }

    fn unexport(&self, target: &str, l: &LunState) -> Result<()> {
        let lun = self.tpg(target).join(format!("lun/lun_{}", l.number));
        unlink_all(&lun)?;
        rmdir(&lun)?;
        rmdir(&self.backstore(&l.serial))
    }

    /// Make the target's node ACLs what its groups say.
    fn reconcile(&self, target: &str, ts: &TargetState) -> Result<()> {
        let mut want: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        for g in ts.groups.values() {
            for i in &g.initiators {
                let e = want.entry(i).or_default();
                for l in &g.luns {
                    if let Some(ls) = ts.luns.get(l) {
                        e.insert(ls.number);
                    }
                }
            }
        }
        let acls = self.tpg(target).join("acls");
        let have: Vec<String> = fs::read_dir(&acls)
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        for ini in &have {
            let dir = acls.join(ini);
            let keep = want.get(ini.as_str());
            let mapped: Vec<String> = fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with("lun_"))
                        .collect()
                })
                .unwrap_or_default();
            for m in mapped {
                let n: Option<u32> = m.strip_prefix("lun_").and_then(|n| n.parse().ok());
                if keep.is_none_or(|k| n.is_none_or(|n| !k.contains(&n))) {
                    unlink_all(&dir.join(&m))?;
                    rmdir(&dir.join(&m))?;
                }
            }
            if keep.is_none() {
                rmdir(&dir)?;
            }
        }
        for (ini, luns) in want {
            let dir = acls.join(ini);
            mkdir(&dir)?;
            for n in luns {
                let m = dir.join(format!("lun_{n}"));
                if !m.join("map").exists() {
                    mkdir(&m)?;
                    let to = self.tpg(target).join(format!("lun/lun_{n}"));
                    symlink(&to, m.join("map"))
                        .map_err(io(format_args!("map {} for {ini}", to.display())))?;
                }
            }
        }
        Ok(())
    }

    fn with_target<T>(&self, target: &str, f: impl FnOnce(&Lio, &mut TargetState) -> Result<T>) -> Result<T> {
        check_target(target)?;
        let mut st = crate::sync::lock(&self.state);
        if !self.cfg.targets.iter().any(|t| t == target) {
            return Err(Error::NotFound {
                kind: crate::model::ObjectKind::StorageArray,
                id: format!("target {target}"),
            });
        }
        let mut ts = st.targets.get(target).cloned().unwrap_or_default();
        let r = f(self, &mut ts)?;
        st.targets.insert(target.to_owned(), ts);
        self.save(&st)?;
        Ok(r)
    }

    fn lun_record(&self, target: &str, name: &str, l: &LunState) -> Lun {
        let size_bytes = fs::metadata(self.lun_file(target, name)).map(|m| m.len()).unwrap_or(0);
        Lun { id: naa_of_serial(&l.serial), name: name.to_owned(), size_bytes, thin_clone_of: None }
    }

    fn name_of(ts: &TargetState, target: &str, id: &str) -> Result<String> {
        ts.luns
            .iter()
            .find(|(n, l)| naa_of_serial(&l.serial) == id || *n == id)
            .map(|(n, _)| n.clone())
            .ok_or_else(|| Error::NotFound {
                kind: crate::model::ObjectKind::PhysicalDisk,
                id: format!("{id} on {target}"),
            })
    }

    fn group<'a>(ts: &'a mut TargetState, target: &str, group: &str) -> Result<&'a mut GroupState> {
        ts.groups.get_mut(group).ok_or_else(|| Error::NotFound {
            kind: crate::model::ObjectKind::AccessGroup,
            id: format!("{group} on {target}"),
        })
    }

    /// Make a LUN from `file` (created by the caller), named `name`.
    fn add_lun(&self, target: &str, ts: &mut TargetState, name: &str, file: &Path) -> Result<Lun> {
        let used: BTreeSet<u32> = ts.luns.values().map(|l| l.number).collect();
        let number = (0..).find(|n| !used.contains(n)).unwrap_or(0);
        let l = LunState { serial: uuid::Uuid::new_v4().simple().to_string(), number };
        if let Err(e) = self.export(target, name, &l) {
            let _ = self.unexport(target, &l);
            let _ = fs::remove_file(file);
            return Err(e);
        }
        ts.luns.insert(name.to_owned(), l.clone());
        Ok(self.lun_record(target, name, &l))
    }

    fn new_file(&self, target: &str, name: &str, ts: &TargetState, size_bytes: u64) -> Result<PathBuf> {
        if ts.luns.contains_key(name) {
            return Err(Error::conflict(format!("{target} has a LUN named {name}")));
        }
        let dir = self.cfg.state_dir.join("luns").join(target);
        fs::create_dir_all(&dir).map_err(io("make the LUN directory"))?;
        let free = free_bytes(&dir)?;
        if size_bytes > free {
            return Err(Error::invalid(
                "size_bytes",
                format!("{size_bytes} bytes: more than the array's free space ({free} bytes)"),
            ));
        }
        Ok(self.lun_file(target, name))
    }
}

impl ArrayManagement for Lio {
    fn fingerprint(&self) -> Result<String> {
        self.fingerprint_of()
    }

    fn targets(&self) -> Result<Vec<String>> {
        Ok(self.cfg.targets.clone())
    }

    fn luns(&self, target: &str) -> Result<Vec<Lun>> {
        self.with_target(target, |me, ts| {
            Ok(ts.luns.iter().map(|(n, l)| me.lun_record(target, n, l)).collect())
        })
    }

    fn create_lun(&self, target: &str, name: &str, size_bytes: u64) -> Result<Lun> {
        self.with_target(target, |me, ts| {
            let file = me.new_file(target, name, ts, size_bytes)?;
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&file)
                .map_err(io(format_args!("create {}", file.display())))?;
            f.set_len(size_bytes).map_err(io("size the LUN"))?;
            drop(f);
            me.add_lun(target, ts, name, &file)
        })
    }

    fn resize_lun(&self, target: &str, lun: &str, size_bytes: u64) -> Result<()> {
        self.with_target(target, |me, ts| {
            let name = Self::name_of(ts, target, lun)?;
            let file = me.lun_file(target, &name);
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&file)
                .map_err(io("open the LUN"))?;
            let now = f.metadata().map_err(io("stat"))?.len();
            if size_bytes < now {
                return Err(Error::invalid(
                    "size_bytes",
                    format!("{size_bytes} bytes: a LUN only grows (it has {now})"),
                ));
            }
            if size_bytes - now > free_bytes(&file)? {
                return Err(Error::invalid("size_bytes", "more than the array's free space"));
            }
            f.set_len(size_bytes).map_err(io("grow the LUN"))?;
            let dev = loop_of(&file)
                .ok_or_else(|| backend(format!("no loop device is attached to {}", file.display())))?;
            let dev = dev.to_string_lossy();
            let dev = dev.as_ref();
            let lo = OpenOptions::new().read(true).open(dev).map_err(io(format_args!("open {dev}")))?;
            // SAFETY: LOOP_SET_CAPACITY takes no argument.
            if unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_SET_CAPACITY as _, 0) } < 0 {
                return Err(backend(format!("grow {dev}: {}", std::io::Error::last_os_error())));
            }
            Ok(())
        })
    }

    fn clone_lun(&self, target: &str, lun: &str, name: &str) -> Result<Lun> {
        self.with_target(target, |me, ts| {
            let src_name = Self::name_of(ts, target, lun)?;
            let src = me.lun_file(target, &src_name);
            let len = fs::metadata(&src).map_err(io("stat the LUN"))?.len();
            let file = me.new_file(target, name, ts, len)?;
            sparse_copy(&src, &file).inspect_err(|_| {
                let _ = fs::remove_file(&file);
            })?;
            me.add_lun(target, ts, name, &file)
        })
    }

    fn delete_lun(&self, target: &str, lun: &str) -> Result<()> {
        self.with_target(target, |me, ts| {
            let name = Self::name_of(ts, target, lun)?;
            for g in ts.groups.values_mut() {
                g.luns.retain(|l| *l != name);
            }
            me.reconcile(target, ts)?;
            let l = ts.luns.remove(&name).expect("found above");
            me.unexport(target, &l)?;
            fs::remove_file(me.lun_file(target, &name)).map_err(io("delete the LUN's file"))
        })
    }

    fn access_groups(&self, target: &str) -> Result<Vec<AccessGroup>> {
        self.with_target(target, |_, ts| {
            Ok(ts
                .groups
                .iter()
                .map(|(n, g)| AccessGroup {
                    name: n.clone(),
                    initiators: g.initiators.clone(),
                    luns: g
                        .luns
                        .iter()
                        .filter_map(|l| ts.luns.get(l))
                        .map(|l| naa_of_serial(&l.serial))
                        .collect(),
                })
                .collect())
        })
    }

    fn create_access_group(&self, target: &str, group: &str) -> Result<()> {
        self.with_target(target, |_, ts| {
            if ts.groups.contains_key(group) {
                return Err(Error::conflict(format!("access group {group} exists on {target}")));
            }
            ts.groups.insert(group.to_owned(), GroupState::default());
            Ok(())
        })
    }

    fn delete_access_group(&self, target: &str, group: &str) -> Result<()> {
        self.with_target(target, |me, ts| {
            Self::group(ts, target, group)?;
            ts.groups.remove(group);
            me.reconcile(target, ts)
        })
    }

    fn add_initiator(&self, target: &str, group: &str, initiator: &str) -> Result<()> {
        check_target(initiator)?;
        self.with_target(target, |me, ts| {
            let g = Self::group(ts, target, group)?;
            if !g.initiators.iter().any(|i| i == initiator) {
                g.initiators.push(initiator.to_owned());
            }
            me.reconcile(target, ts)
        })
    }

    fn remove_initiator(&self, target: &str, group: &str, initiator: &str) -> Result<()> {
        self.with_target(target, |me, ts| {
            Self::group(ts, target, group)?.initiators.retain(|i| i != initiator);
            me.reconcile(target, ts)
        })
    }

    fn present(&self, target: &str, group: &str, lun: &str) -> Result<()> {
        self.with_target(target, |me, ts| {
            let name = Self::name_of(ts, target, lun)?;
            let g = Self::group(ts, target, group)?;
            if !g.luns.contains(&name) {
                g.luns.push(name);
            }
            me.reconcile(target, ts)
        })
    }

    fn unpresent(&self, target: &str, group: &str, lun: &str) -> Result<()> {
        self.with_target(target, |me, ts| {
            let name = Self::name_of(ts, target, lun)?;
            Self::group(ts, target, group)?.luns.retain(|l| *l != name);
            me.reconcile(target, ts)
        })
    }
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answer one request (already read) of an authenticated or unauthenticated client.
pub fn answer(lio: &Lio, req: &http::Request) -> (u16, Vec<u8>) {
    let reply = |status: u16, id: u64, result: Option<ArrayAnswer>, error: Option<RpcError>| {
        let r = RpcResponse { jsonrpc: "2.0".into(), id, result, error };
        (status, serde_json::to_vec(&r).unwrap_or_default())
    };
    let err = |code: i64, message: String, data: Option<Error>| RpcError { code, message, data };
    if req.method != "POST" || req.path != RPC_PATH {
        return reply(404, 0, None, Some(err(-32600, format!("POST {RPC_PATH} only"), None)));
    }
    let authorized = req
        .authorization
        .as_deref()
        .and_then(http::parse_basic)
        .is_some_and(|(u, p)| same(&u, &lio.cfg.username) & same(&p, &lio.cfg.password));
    if !authorized {
        std::thread::sleep(Duration::from_secs(1));
        return reply(401, 0, None, Some(err(-32001, "authentication required".into(), None)));
    }
    let rpc: RpcRequest = match serde_json::from_slice(&req.body) {
        Ok(r) => r,
        Err(e) => return reply(400, 0, None, Some(err(-32700, format!("not a request: {e}"), None))),
    };
    let id = rpc.id;
    match rpc.op.apply(lio) {
        Ok(a) => reply(200, id, Some(a), None),
        Err(e) => reply(200, id, None, Some(err(-32000, e.to_string(), Some(e)))),
    }
}

/// Serve the management interface on `listener` (a thread per connection) until the process ends.
pub fn serve(lio: Arc<Lio>, listener: TcpListener) -> Result<()> {
    let cfg = tls::server_config_no_client_auth(&lio.identity)?;
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let (lio, cfg) = (lio.clone(), cfg.clone());
        std::thread::spawn(move || {
            tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
            tcp.set_write_timeout(Some(Duration::from_secs(30))).ok();
            let Ok(conn) = rustls::ServerConnection::new(cfg) else { return };
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let req = match http::read_request(&mut s) {
                Ok(r) => r,
                Err(_) => return,
            };
            let (status, body) = answer(&lio, &req);
            let reason = match status {
                200 => "OK",
                400 => "Bad Request",
                401 => "Unauthorized",
                _ => "Not Found",
            };
            let _ = http::write_response(&mut s, status, reason, &body);
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::storage::{ArrayAdminAccess, ArrayOp, LIO_PLUGIN};
    use crate::ErrorKind;

    const T: &str = "iqn.2026-01.test.ovm:managed";

    /// The configuration of the test's Lio under `root`.
    fn config(root: &Path) -> LioConfig {
        LioConfig {
            configfs: root.join("cfs"),
            state_dir: root.join("state"),
            targets: vec![T.into()],
            username: "admin".into(),
            password: "pw".into(),
        }
    }

    /// A Lio on a configfs made of plain directories (enough for targets, groups and ACLs; LUNs
    /// need the kernel's loop devices and LIO, which the lab tests).
    fn lio(tag: &str) -> (PathBuf, Lio) {
        let root = std::env::temp_dir().join(format!("ovm-lio-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("cfs/iscsi").join(T).join("tpgt_1/attrib")).unwrap();
        fs::create_dir_all(root.join("cfs/iscsi").join(T).join("tpgt_1/np")).unwrap();
        fs::create_dir_all(root.join("cfs/iscsi").join(T).join("tpgt_1/acls")).unwrap();
        (root.clone(), Lio::open(config(&root)).unwrap())
    }

    fn rpc(lio: &Lio, auth: Option<&str>, body: &str) -> (u16, RpcResponse) {
        let req = http::Request {
            method: "POST".into(),
            path: RPC_PATH.into(),
            authorization: auth.map(str::to_owned),
            body: body.as_bytes().to_vec(),
        };
        let (status, out) = answer(lio, &req);
        (status, serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn requests_are_authenticated_checked_and_answered_with_typed_errors() {
        let (root, lio) = lio("answer");
        let good = http::basic_auth("admin", "pw");
        let req = |m: &str, p: &str| format!(r#"{{"jsonrpc":"2.0","id":4,"method":"{m}","params":{p}}}"#);
        // Not the endpoint; no or wrong credentials; not a request.
        let (s, _) = answer(
            &lio,
            &http::Request { method: "GET".into(), path: "/".into(), authorization: None, body: vec![] },
        );
        assert_eq!(s, 404);
        assert_eq!(rpc(&lio, None, &req("targets", "null")).0, 401);
        assert_eq!(rpc(&lio, Some(&http::basic_auth("admin", "nope")), &req("targets", "null")).0, 401);
        let (s, r) = rpc(&lio, Some(&good), "{not json");
        assert_eq!((s, r.error.unwrap().code), (400, -32700));
        // Targets; a group with an initiator makes the initiator's ACL; removing it takes it away.
        let (_, r) = rpc(&lio, Some(&good), r#"{"jsonrpc":"2.0","id":1,"method":"targets"}"#);
        assert_eq!(r.result, Some(ArrayAnswer::Targets(vec![T.into()])));
        let g = format!(r#"{{"target":"{T}","group":"g1"}}"#);
        assert_eq!(rpc(&lio, Some(&good), &req("create_access_group", &g)).1.result, Some(ArrayAnswer::Done));
        let e = rpc(&lio, Some(&good), &req("create_access_group", &g)).1.error.unwrap();
        assert_eq!(e.data.unwrap().kind(), ErrorKind::Conflict);
        let ini = format!(r#"{{"target":"{T}","group":"g1","initiator":"iqn.2026-01.test.ovm:s1"}}"#);
        rpc(&lio, Some(&good), &req("add_initiator", &ini)).1.result.unwrap();
        let acl = root.join("cfs/iscsi").join(T).join("tpgt_1/acls/iqn.2026-01.test.ovm:s1");
        assert!(acl.is_dir(), "the initiator has an ACL");
        rpc(&lio, Some(&good), &req("remove_initiator", &ini)).1.result.unwrap();
        assert!(!acl.exists(), "and no longer");
        // Typed refusals: an unknown target, an unknown LUN, a LUN larger than the disk, a bad name.
        let e = rpc(&lio, Some(&good), &req("luns", r#"{"target":"iqn.2026-01.test.ovm:other"}"#))
            .1
            .error
            .unwrap();
        assert_eq!(e.data.unwrap().kind(), ErrorKind::NotFound);
        let p = format!(r#"{{"target":"{T}","group":"g1","lun":"naa.60014050"}}"#);
        assert_eq!(
            rpc(&lio, Some(&good), &req("present", &p)).1.error.unwrap().data.unwrap().kind(),
            ErrorKind::NotFound
        );
        let big = format!(r#"{{"target":"{T}","name":"big","size_bytes":{}}}"#, 1u64 << 60);
        let e = rpc(&lio, Some(&good), &req("create_lun", &big)).1.error.unwrap();
        assert_eq!(e.data.unwrap().kind(), ErrorKind::InvalidArgument);
        let bad = format!(r#"{{"target":"{T}","name":"../x","size_bytes":1}}"#);
        let e = rpc(&lio, Some(&good), &req("create_lun", &bad)).1.error.unwrap();
        assert_eq!(e.data.unwrap().kind(), ErrorKind::InvalidArgument);
        // The state survives a restart.
        drop(lio);
        let again = Lio::open(config(&root)).unwrap();
        assert_eq!(again.access_groups(T).unwrap().len(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_plugin_talks_to_it_over_pinned_tls() {
        let (root, lio) = lio("tls");
        let fp = lio.fingerprint_of().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lio = Arc::new(lio);
        std::thread::spawn(move || serve(lio, listener));
        let mut access = ArrayAdminAccess {
            plugin: LIO_PLUGIN.into(),
            host: "127.0.0.1".into(),
            port,
            username: "admin".into(),
            password: "pw".into(),
            fingerprint: None,
        };
        // First contact: the certificate only, no credentials sent.
        assert_eq!(
            super::super::call(&access, ArrayOp::Fingerprint).unwrap(),
            ArrayAnswer::Fingerprint(fp.clone())
        );
        assert_eq!(
            super::super::call(&access, ArrayOp::Targets).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        access.fingerprint = Some(fp);
        assert_eq!(
            super::super::call(&access, ArrayOp::Targets).unwrap(),
            ArrayAnswer::Targets(vec![T.into()])
        );
        // Another certificate pinned: refused before any credentials go out; a wrong password.
        let mut other = access.clone();
        other.fingerprint = Some(format!("sha256:{}", "0".repeat(64)));
        assert_eq!(super::super::call(&other, ArrayOp::Targets).unwrap_err().kind(), ErrorKind::Backend);
        let mut wrong = access.clone();
        wrong.password = "nope".into();
        assert_eq!(
            super::super::call(&wrong, ArrayOp::Targets).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        // A typed error crosses the wire as it is.
        let e = super::super::call(&access, ArrayOp::Luns { target: "iqn.2026-01.test.ovm:nope".into() })
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        fs::remove_dir_all(&root).unwrap();
    }
}
