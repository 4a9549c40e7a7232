//! High availability without the manager: the members of a clustered pool keep, on the pool file
//! system, a record of every HA-enabled domain they run (its spec and its server), and the pool's
//! master restarts the domains of a member its cluster declared dead while the manager is away.
//! Oracle VM's manager is a single point of failure for HA; here the pool goes on by itself.
//!
//! * **Records.** `.ovm/ha/<vm>.json` on the pool file system ([`HaRecord`]): written by the server
//!   that creates, restores or receives an HA-enabled domain (its spec carries
//!   [`DomainSpec::ha_priority`]), and removed by that server when the domain is shut down,
//!   destroyed or suspended at the manager's request. Every change is made holding the cluster
//!   lock `ha` of the DLM domain `ovm-NAME`, so that two members never claim a VM at once.
//! * **Restarts.** The master, once no request of the owning manager has reached its agent for a
//!   grace period, looks each second for records of members that are configured but whose disk
//!   heartbeat O2CB no longer sees (a member is declared dead only after it fenced itself), and
//!   restarts their domains on itself, highest start priority first, within its free memory: the
//!   record names it first (under the lock), then the domain is built; a domain that cannot be
//!   built gives the record back and is tried again a minute later. A claim is refused to a
//!   former master: the epoch it was elected in must still be the pool's (`.ovm/epoch`).
//! * **The manager's return.** It finds the restarted domains running on the master and records
//!   them there (`ha.restarted_by_pool`), before its own HA acts.
//!
//! Records are read with the same suspicion as anything from another server: a size limit, the
//! file name matching the VM, and the domain built from it checked as any other spec is.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::driver::DomainSpec;
use crate::model::VmId;
use crate::{Error, Result};

/// Where the records are, under the pool file system's mount point.
pub const HA_DIR: &str = ".ovm/ha";
/// The largest record read, bytes.
const MAX_RECORD: u64 = 256 * 1024;
/// How long a restart that failed waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// An HA-enabled domain of a clustered pool, as its pool file system keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaRecord {
    /// The VM.
    pub vm: VmId,
    /// Its start priority (higher first).
    pub priority: u8,
    /// The member (cluster node name) it runs on.
    pub server: String,
    /// When the record was written, milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// Restarted by the pool's master while the manager was away.
    #[serde(default)]
    pub by_pool: bool,
    /// The domain.
    pub spec: DomainSpec,
}

fn backend(what: impl std::fmt::Display) -> Error {
    Error::backend("xen:///", what.to_string())
}

fn now_ms() -> u64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

/// The records' directory of the pool file system mounted at `mount`.
pub fn dir(mount: &Path) -> PathBuf {
    mount.join(HA_DIR)
}

fn path_of(mount: &Path, vm: VmId) -> PathBuf {
    dir(mount).join(format!("{}.json", vm.0.simple()))
}

/// Parse a record read from `file_name`; refused unless it is a record of the VM the name says.
pub fn parse(file_name: &str, text: &[u8]) -> Result<HaRecord> {
    let r: HaRecord = serde_json::from_slice(text)
        .map_err(|e| Error::invalid("ha record", format!("{file_name}: not a record: {e}")))?;
    if file_name != format!("{}.json", r.vm.0.simple()) || r.spec.uuid != r.vm {
        return Err(Error::invalid("ha record", format!("{file_name} is not the record of VM {}", r.vm)));
    }
    if r.server.is_empty() || r.server.len() > 64 {
        return Err(Error::invalid("ha record", format!("{file_name}: no server")));
    }
    Ok(r)
}

/// Read one record; `None` if there is none.
pub fn read(mount: &Path, vm: VmId) -> Result<Option<HaRecord>> {
    let p = path_of(mount, vm);
    match fs::metadata(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(backend(format!("{}: {e}", p.display()))),
        Ok(m) if m.len() > MAX_RECORD => return Err(backend(format!("{}: too large", p.display()))),
        Ok(_) => {}
    }
    let text = fs::read(&p).map_err(|e| backend(format!("read {}: {e}", p.display())))?;
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parse(&name, &text).map(Some)
}

/// Every valid record (an invalid one is logged and left alone).
pub fn read_all(mount: &Path) -> Vec<HaRecord> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir(mount)).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json").and_then(|s| s.parse::<uuid::Uuid>().ok()) else {
            continue;
        };
        match read(mount, VmId(id)) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => log::warn!("HA record {name} ignored: {e}"),
        }
    }
    out
}

/// Write a record durably (a temporary file renamed over it).
pub fn write(mount: &Path, r: &HaRecord) -> Result<()> {
    let d = dir(mount);
    fs::create_dir_all(&d).map_err(|e| backend(format!("create {}: {e}", d.display())))?;
    let p = path_of(mount, r.vm);
    let tmp = p.with_extension("new");
    let text = serde_json::to_vec(r).map_err(|e| backend(format!("encode the HA record: {e}")))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| backend(format!("create {}: {e}", tmp.display())))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| backend(format!("write {}: {e}", tmp.display())))?;
    fs::rename(&tmp, &p).map_err(|e| backend(format!("rename {}: {e}", p.display())))
}

/// Remove a record (none is fine).
pub fn remove(mount: &Path, vm: VmId) -> Result<()> {
    match fs::remove_file(path_of(mount, vm)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(backend(format!("remove the HA record: {e}")))
        }
        _ => Ok(()),
    }
}

/// Run `f` holding the pool's `ha` lock (exclusive, across the cluster: a DLM lock taken by
/// opening it read-write in `ocfs2_dlmfs`, which waits until it is granted).
pub fn with_lock<T>(dlm_domain: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _ = fs::create_dir(dlm_domain);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dlm_domain.join("ha"))
        .map_err(|e| backend(format!("the pool's HA lock: {e}")))?;
    let r = f();
    drop(lock);
    r
}

/// The records the master restarts: those on a member the cluster has configured (`nodes`:
/// name -> number) whose heartbeat it does not see (`live`), other than `me`; highest priority
/// first, then by VM.
pub fn orphans(records: &[HaRecord], nodes: &BTreeMap<String, u8>, live: &[u8], me: &str) -> Vec<HaRecord> {
    let mut out: Vec<HaRecord> = records
        .iter()
        .filter(|r| r.server != me)
        .filter(|r| nodes.get(&r.server).is_some_and(|n| !live.contains(n)))
        .cloned()
        .collect();
    out.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.vm.0.cmp(&b.vm.0)));
    out
}

/// The pool's epoch, as its pool file system keeps it (`.ovm/epoch`, raised by each master
/// elected; see `xen::cluster`).
pub fn current_epoch(mount: &Path) -> Option<u64> {
    fs::read_to_string(mount.join(".ovm/epoch")).ok()?.trim().parse().ok()
}

/// Record that `me` now runs the HA-enabled domain `spec` (nothing for a domain that is not).
pub fn record(mount: &Path, dlm_domain: &Path, me: &str, spec: &DomainSpec) -> Result<()> {
    let Some(priority) = spec.ha_priority else { return Ok(()) };
    let r = HaRecord {
        vm: spec.uuid,
        priority,
        server: me.to_owned(),
        updated_ms: now_ms(),
        by_pool: false,
        spec: spec.clone(),
    };
    with_lock(dlm_domain, || write(mount, &r))
}

/// Forget the record of `vm` if it names `me` (its domain was stopped here on request; a record
/// another member has taken since stays).
pub fn forget(mount: &Path, dlm_domain: &Path, me: &str, vm: VmId) -> Result<()> {
    with_lock(dlm_domain, || match read(mount, vm)? {
        Some(r) if r.server == me => remove(mount, vm),
        _ => Ok(()),
    })
}

/// One round of the master's restarts (see the module): the domains of dead members, built here
/// by `start`. `tried` remembers failed restarts, so that they wait [`RETRY_AFTER`].
#[allow(clippy::too_many_arguments)]
pub fn restart_orphans(
    mount: &Path,
    dlm_domain: &Path,
    me: &str,
    epoch: u64,
    nodes: &BTreeMap<String, u8>,
    live: &[u8],
    start: &dyn Fn(&DomainSpec) -> Result<u32>,
    tried: &mut HashMap<VmId, Instant>,
) {
    tried.retain(|_, t| t.elapsed() < RETRY_AFTER);
    for o in orphans(&read_all(mount), nodes, live, me) {
        if tried.contains_key(&o.vm) {
            continue;
        }
        // Claimed under the lock, unless someone else did meanwhile; never by a former master.
        let claimed = with_lock(dlm_domain, || match read(mount, o.vm)? {
            _ if current_epoch(mount) != Some(epoch) => Err(Error::conflict(format!(
                "this server was master of epoch {epoch}; the pool is at epoch {}",
                current_epoch(mount).map_or_else(|| "unknown".to_owned(), |e| e.to_string())
            ))),
            Some(r) if r.server == o.server => {
                let mine = HaRecord { server: me.to_owned(), updated_ms: now_ms(), by_pool: true, ..r };
                write(mount, &mine).map(|()| true)
            }
            _ => Ok(false),
        });
        match claimed {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                log::warn!("HA: VM {} of dead member {} not claimed: {e}", o.spec.name, o.server);
                tried.insert(o.vm, Instant::now());
                continue;
            }
        }
        match start(&o.spec) {
            Ok(domid) => log::info!(
                "HA: VM {} of dead member {} restarted here as domain {domid} (the manager is away)",
                o.spec.name,
                o.server
            ),
            Err(e) => {
                log::warn!(
                    "HA: VM {} of dead member {} could not be restarted here: {e}",
                    o.spec.name,
                    o.server
                );
                tried.insert(o.vm, Instant::now());
                // Given back, for a later try (here or by the manager).
                let _ = with_lock(dlm_domain, || match read(mount, o.vm)? {
                    Some(r) if r.server == me => write(mount, &o),
                    _ => Ok(()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RestartActions;

    fn rec(server: &str, priority: u8) -> HaRecord {
        let vm = VmId::new();
        HaRecord {
            vm,
            priority,
            server: server.into(),
            updated_ms: 1,
            by_pool: false,
            spec: DomainSpec {
                uuid: vm,
                name: format!("vm-{priority}"),
                domain_type: crate::model::DomainType::Pv,
                vcpus: 1,
                max_vcpus: 1,
                memory_mib: 64,
                max_memory_mib: 64,
                disks: Vec::new(),
                nics: Vec::new(),
                kernel: Some("/k".into()),
                initrd: None,
                cmdline: None,
                restart_actions: RestartActions::default(),
                boot_order: Vec::new(),
                ha_priority: Some(priority),
                framebuffer: false,
                network_boot: None,
            },
        }
    }

    #[test]
    fn the_master_restarts_only_the_vms_of_dead_configured_members_by_priority() {
        let nodes: BTreeMap<String, u8> = [("a".into(), 0), ("b".into(), 1), ("c".into(), 2)].into();
        let records = vec![rec("a", 10), rec("b", 5), rec("b", 50), rec("c", 99), rec("gone", 100)];
        // b (1) is dead; a is this master; c is alive; "gone" is no member.
        let o = orphans(&records, &nodes, &[0, 2], "a");
        assert_eq!(o.iter().map(|r| r.priority).collect::<Vec<_>>(), vec![50, 5]);
        assert!(orphans(&records, &nodes, &[0, 1, 2], "a").is_empty());
    }

    #[test]
    fn the_master_claims_then_builds_and_a_former_master_does_nothing() {
        let root = std::env::temp_dir().join(format!("ovm-pool-ha-restart-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (mount, dlm) = (root.join("poolfs"), root.join("dlm"));
        fs::create_dir_all(mount.join(".ovm")).unwrap();
        fs::write(mount.join(".ovm/epoch"), "3\n").unwrap();
        let nodes: BTreeMap<String, u8> = [("a".into(), 0), ("b".into(), 1)].into();
        let (r1, r2) = (rec("b", 10), rec("b", 20));
        write(&mount, &r1).unwrap();
        write(&mount, &r2).unwrap();
        let started = std::sync::Mutex::new(Vec::new());
        let start = |s: &DomainSpec| {
            started.lock().unwrap().push(s.uuid);
            Ok(7)
        };
        let mut tried = HashMap::new();
        // A former master (epoch 2) claims nothing.
        restart_orphans(&mount, &dlm, "a", 2, &nodes, &[0], &start, &mut tried);
        assert!(started.lock().unwrap().is_empty());
        assert_eq!(read(&mount, r1.vm).unwrap().unwrap().server, "b");
        // The master of epoch 3: highest priority first, each record naming it, by the pool.
        tried.clear();
        restart_orphans(&mount, &dlm, "a", 3, &nodes, &[0], &start, &mut tried);
        assert_eq!(*started.lock().unwrap(), vec![r2.vm, r1.vm]);
        for r in [&r1, &r2] {
            let now = read(&mount, r.vm).unwrap().unwrap();
            assert_eq!((now.server.as_str(), now.by_pool), ("a", true));
        }
        // Nothing twice.
        restart_orphans(&mount, &dlm, "a", 3, &nodes, &[0], &start, &mut tried);
        assert_eq!(started.lock().unwrap().len(), 2);
        // A domain that cannot be built gives its record back, and waits before a new try.
        let r3 = rec("b", 5);
        write(&mount, &r3).unwrap();
        let fail = |_: &DomainSpec| Err(Error::backend("xen:///", "no memory"));
        restart_orphans(&mount, &dlm, "a", 3, &nodes, &[0], &fail, &mut tried);
        assert_eq!(read(&mount, r3.vm).unwrap().unwrap().server, "b");
        assert!(tried.contains_key(&r3.vm));
        restart_orphans(&mount, &dlm, "a", 3, &nodes, &[0], &start, &mut tried);
        assert_eq!(started.lock().unwrap().len(), 2, "not before a minute has passed");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn records_round_trip_and_foreign_ones_are_refused() {
        let root = std::env::temp_dir().join(format!("ovm-pool-ha-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.as_path();
        let r = rec("a", 7);
        write(dir, &r).unwrap();
        assert_eq!(read(dir, r.vm).unwrap(), Some(r.clone()));
        assert_eq!(read_all(dir), vec![r.clone()]);
        // A record under another VM's name is refused.
        let other = VmId::new();
        let text = serde_json::to_vec(&r).unwrap();
        let e = parse(&format!("{}.json", other.0.simple()), &text).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
        assert!(parse("x.json", b"{not json").is_err());
        remove(dir, r.vm).unwrap();
        remove(dir, r.vm).unwrap();
        assert_eq!(read(dir, r.vm).unwrap(), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
