//! Domain operations built on the hypercalls and the xenstore client:
//! listing with names, graceful shutdown/reboot with a destroy fallback,
//! pause/unpause/destroy, memory target, online vCPUs, console output and a
//! stream of state changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::client::XsClient;
use super::error::{XenError, XenResult};
use super::privcmd::{DomainInfo, DomainState, PhysInfo, Privcmd, ShutdownReason, XenVersion};

/// The hypervisor operations the domain layer needs. [`Privcmd`] is the real
/// implementation; tests substitute a fake.
pub trait Hypercalls: Send + Sync + std::fmt::Debug {
    /// All domains.
    fn domains(&self) -> XenResult<Vec<DomainInfo>>;
    /// One domain ([`XenError::NoSuchDomain`] if absent).
    fn domain(&self, domid: u32) -> XenResult<DomainInfo>;
    /// Pauses a domain.
    fn pause(&self, domid: u32) -> XenResult<()>;
    /// Unpauses a domain.
    fn unpause(&self, domid: u32) -> XenResult<()>;
    /// Destroys a domain.
    fn destroy(&self, domid: u32) -> XenResult<()>;
    /// Sets the memory limit in KiB.
    fn set_max_mem(&self, domid: u32, kib: u64) -> XenResult<()>;
    /// Host facts.
    fn physinfo(&self) -> XenResult<PhysInfo>;
    /// Hypervisor version.
    fn version(&self) -> XenResult<XenVersion>;
    /// Idle time of each physical CPU since boot, ns (at most `max_cpus`).
    fn cpu_idle_times(&self, max_cpus: u32) -> XenResult<Vec<u64>>;
}

impl Hypercalls for Privcmd {
    fn domains(&self) -> XenResult<Vec<DomainInfo>> {
        Privcmd::domains(self)
    }
    fn domain(&self, domid: u32) -> XenResult<DomainInfo> {
        Privcmd::domain(self, domid)
    }
    fn pause(&self, domid: u32) -> XenResult<()> {
        self.pause_domain(domid)
    }
    fn unpause(&self, domid: u32) -> XenResult<()> {
        self.unpause_domain(domid)
    }
    fn destroy(&self, domid: u32) -> XenResult<()> {
        self.destroy_domain(domid)
    }
    fn set_max_mem(&self, domid: u32, kib: u64) -> XenResult<()> {
        Privcmd::set_max_mem(self, domid, kib)
    }
    fn physinfo(&self) -> XenResult<PhysInfo> {
        Privcmd::physinfo(self)
    }
    fn version(&self) -> XenResult<XenVersion> {
        self.xen_version()
    }
    fn cpu_idle_times(&self, max_cpus: u32) -> XenResult<Vec<u64>> {
        Privcmd::cpu_idle_times(self, max_cpus)
    }
}

/// A domain with its xenstore facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// What the hypervisor reports.
    pub info: DomainInfo,
    /// `/local/domain/<id>/name`, if set.
    pub name: Option<String>,
    /// `/local/domain/<id>/vm` (e.g. `/vm/<uuid>`), if set.
    pub vm_path: Option<String>,
}

impl Domain {
    /// Domain id.
    pub fn domid(&self) -> u32 {
        self.info.domid
    }

    /// The VM UUID (the domain handle).
    pub fn uuid(&self) -> Uuid {
        self.info.uuid
    }
}

/// What a guest is asked to do through `control/shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// Power off.
    Poweroff,
    /// Reboot.
    Reboot,
}

impl ShutdownRequest {
    fn word(self) -> &'static str {
        match self {
            ShutdownRequest::Poweroff => "poweroff",
            ShutdownRequest::Reboot => "reboot",
        }
    }
}

/// How a graceful shutdown ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The guest shut down by itself, with this reason (it may already have
    /// been cleaned up by the toolstack, then the reason is unknown: `None`).
    Guest(Option<ShutdownReason>),
    /// The guest did not react in time and was destroyed.
    Destroyed,
}

/// A change seen by [`XenHost::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// A domain appeared.
    Appeared(DomainInfo),
    /// A domain's run state changed.
    StateChanged {
        /// The domain id.
        domid: u32,
        /// The domain handle (VM UUID).
        uuid: Uuid,
        /// The previous state.
        old: DomainState,
        /// The new state.
        new: DomainState,
    },
    /// A domain is gone.
    Disappeared {
        /// The domain id it had.
        domid: u32,
        /// The domain handle (VM UUID) it had.
        uuid: Uuid,
    },
}

/// Where xenconsoled writes guest console logs (`--log=guest`).
pub const CONSOLE_LOG_DIR: &str = "/var/log/xen/console";

/// A Xen host seen from its dom0: hypercalls plus xenstore.
#[derive(Debug, Clone)]
pub struct XenHost {
    hv: Arc<dyn Hypercalls>,
    xs: XsClient,
    console_dir: PathBuf,
}

impl XenHost {
    /// Opens privcmd and connects to xenstore over the default transport.
    pub async fn open() -> XenResult<XenHost> {
        let hv = Privcmd::open()?;
        let xs = XsClient::connect_default().await?;
        Ok(XenHost::with_parts(Arc::new(hv), xs))
    }

    /// Builds a host from its parts.
    pub fn with_parts(hv: Arc<dyn Hypercalls>, xs: XsClient) -> XenHost {
        XenHost { hv, xs, console_dir: CONSOLE_LOG_DIR.into() }
    }

    /// Uses another directory for guest console logs.
    pub fn with_console_dir(mut self, dir: impl Into<PathBuf>) -> XenHost {
        self.console_dir = dir.into();
        self
    }

    /// The xenstore client.
    pub fn xenstore(&self) -> &XsClient {
        &self.xs
    }

    /// The hypercall interface.
    pub fn hypercalls(&self) -> &Arc<dyn Hypercalls> {
        &self.hv
    }

    fn dompath(domid: u32) -> String {
        format!("/local/domain/{domid}")
    }

    async fn decorate(&self, info: DomainInfo) -> XenResult<Domain> {
        let base = Self::dompath(info.domid);
        let name = self.xs.try_read_string(&format!("{base}/name")).await?;
        let vm_path = self.xs.try_read_string(&format!("{base}/vm")).await?;
        Ok(Domain { info, name, vm_path })
    }

    /// Every domain with state, resources, name and UUID.
    pub async fn list_domains(&self) -> XenResult<Vec<Domain>> {
        let infos = self.hv.domains()?;
        let mut out = Vec::with_capacity(infos.len());
        for i in infos {
            out.push(self.decorate(i).await?);
        }
        Ok(out)
    }

    /// One domain.
    pub async fn domain(&self, domid: u32) -> XenResult<Domain> {
        let info = self.hv.domain(domid)?;
        self.decorate(info).await
    }

    /// Finds a domain by its xenstore name.
    pub async fn find_by_name(&self, name: &str) -> XenResult<Option<Domain>> {
        Ok(self.list_domains().await?.into_iter().find(|d| d.name.as_deref() == Some(name)))
    }

    /// Pauses a domain.
    pub fn pause(&self, domid: u32) -> XenResult<()> {
        self.hv.pause(domid)
    }

    /// Unpauses a domain.
    pub fn unpause(&self, domid: u32) -> XenResult<()> {
        self.hv.unpause(domid)
    }

    /// Destroys a domain at once (hypercall). Backend devices set up by the
    /// toolstack are left to it (`xl` cleans up when it sees the domain die).
    pub fn destroy(&self, domid: u32) -> XenResult<()> {
        if domid == 0 {
            return Err(XenError::InvalidArgument("refusing to destroy dom0".into()));
        }
        self.hv.destroy(domid)
    }

    /// Asks the guest to power off or reboot (`control/shutdown`) and waits
    /// up to `timeout` for it to do so; if it does not and `destroy_on_timeout`
    /// is set, destroys it, otherwise fails with [`XenError::Timeout`].
    pub async fn shutdown(
        &self,
        domid: u32,
        request: ShutdownRequest,
        timeout: Duration,
        destroy_on_timeout: bool,
    ) -> XenResult<ShutdownOutcome> {
        if domid == 0 {
            return Err(XenError::InvalidArgument("refusing to shut down dom0".into()));
        }
        let before = self.hv.domain(domid)?;
        let mut rel = self.xs.watch("@releaseDomain").await?;
        self.xs.write(&format!("{}/control/shutdown", Self::dompath(domid)), request.word()).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.hv.domain(domid) {
                Ok(i) if i.uuid != before.uuid => return Ok(ShutdownOutcome::Guest(None)),
                Ok(i) => match i.state {
                    DomainState::Shutdown(r) => return Ok(ShutdownOutcome::Guest(Some(r))),
                    DomainState::Dying => return Ok(ShutdownOutcome::Guest(None)),
                    _ => {}
                },
                Err(XenError::NoSuchDomain(_)) => return Ok(ShutdownOutcome::Guest(None)),
                Err(e) => return Err(e),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            // Woken by @releaseDomain, or re-check periodically.
            let wait = (deadline - now).min(Duration::from_millis(250));
            let _ = tokio::time::timeout(wait, rel.next()).await;
        }
        if destroy_on_timeout {
            self.destroy(domid)?;
            Ok(ShutdownOutcome::Destroyed)
        } else {
            Err(XenError::Timeout(format!("domain {domid} did not {} within {timeout:?}", request.word())))
        }
    }

    /// Sets the balloon target (`memory/target`, KiB).
    pub async fn set_memory_target(&self, domid: u32, kib: u64) -> XenResult<()> {
        let info = self.hv.domain(domid)?;
        let max_kib = info.max_memory_bytes / 1024;
        if kib == 0 || kib > max_kib {
            return Err(XenError::InvalidArgument(format!(
                "memory target {kib} KiB outside 1..={max_kib} KiB for domain {domid}"
            )));
        }
        self.xs.write(&format!("{}/memory/target", Self::dompath(domid)), kib.to_string()).await
    }

    /// The balloon target in KiB, if set.
    pub async fn memory_target(&self, domid: u32) -> XenResult<Option<u64>> {
        let v = self.xs.try_read_string(&format!("{}/memory/target", Self::dompath(domid))).await?;
        v.map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| XenError::Protocol(format!("memory/target of {domid} is {s:?}")))
        })
        .transpose()
    }

    /// Sets the memory limit (hypercall, KiB).
    pub fn set_max_memory(&self, domid: u32, kib: u64) -> XenResult<()> {
        self.hv.set_max_mem(domid, kib)
    }

    /// Brings vCPUs `0..online` online and the rest offline
    /// (`cpu/N/availability`, acted on by the guest kernel).
    pub async fn set_online_vcpus(&self, domid: u32, online: u32) -> XenResult<()> {
        let info = self.hv.domain(domid)?;
        let total = info.max_vcpu_id.wrapping_add(1);
        if online == 0 || online > total {
            return Err(XenError::InvalidArgument(format!(
                "{online} online vCPUs outside 1..={total} for domain {domid}"
            )));
        }
        let base = Self::dompath(domid);
        self.xs
            .transaction(|tx| {
                let base = base.clone();
                async move {
                    for n in 0..total {
                        let v = if n < online { "online" } else { "offline" };
                        tx.write(&format!("{base}/cpu/{n}/availability"), v).await?;
                    }
                    Ok(())
                }
            })
            .await
    }

    /// Where guests' console logs are (xenconsoled's `--log-dir`; an HVM guest's serial port is
    /// written there too).
    pub fn console_dir(&self) -> &Path {
        &self.console_dir
    }

    /// The path of a guest's console log written by xenconsoled.
    pub fn console_log_path(&self, name: &str) -> XenResult<PathBuf> {
        if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
            return Err(XenError::InvalidArgument(format!("bad domain name {name:?}")));
        }
        Ok(self.console_dir.join(format!("guest-{name}.log")))
    }

    /// The last `max_bytes` of a domain's console output (from xenconsoled's
    /// log file; needs xenconsoled started with `--log=guest`). A domain that
    /// migrated here was created as `NAME--incoming` and renamed once it
    /// arrived, and xenconsoled keeps the log it opened at creation: of the two
    /// logs, the one written last is the domain's.
    pub async fn console_output(&self, domid: u32, max_bytes: usize) -> XenResult<String> {
        let d = self.domain(domid).await?;
        let name = d.name.ok_or_else(|| XenError::InvalidArgument(format!("domain {domid} has no name")))?;
        let plain = self.console_log_path(&name)?;
        let incoming = self.console_log_path(&format!("{name}--incoming"))?;
        let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let path = match (modified(&plain), modified(&incoming)) {
            (Some(a), Some(b)) if b > a => incoming,
            (None, Some(_)) => incoming,
            _ => plain,
        };
        read_tail(&path, max_bytes)
    }

    /// A stream of domain changes: driven by the `@introduceDomain` and
    /// `@releaseDomain` watches, plus a full resync every `resync`.
    pub async fn events(&self, resync: Duration) -> XenResult<DomainEvents> {
        let mut intro = self.xs.watch("@introduceDomain").await?;
        let mut rel = self.xs.watch("@releaseDomain").await?;
        let hv = self.hv.clone();
        let mut known: BTreeMap<u32, DomainInfo> = hv.domains()?.into_iter().map(|d| (d.domid, d)).collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(resync);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    e = intro.next() => if e.is_none() { return },
                    e = rel.next() => if e.is_none() { return },
                    _ = tick.tick() => {},
                }
                let Ok(now) = hv.domains() else { continue };
                let now: BTreeMap<u32, DomainInfo> = now.into_iter().map(|d| (d.domid, d)).collect();
                for ev in diff(&known, &now) {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                known = now;
            }
        });
        Ok(DomainEvents { rx, task })
    }
}

/// Run states that differ only in scheduling (running, blocked, neither)
/// are one class: a guest flips between them all the time.
fn class(s: DomainState) -> u8 {
    match s {
        DomainState::Running | DomainState::Blocked | DomainState::NoState => 0,
        DomainState::Paused => 1,
        DomainState::Shutdown(_) => 2,
        DomainState::Dying => 3,
    }
}

/// Differences between two snapshots keyed by domain id; scheduling-only
/// changes (running/blocked) are not reported. A domain id reused
/// by a new domain (different UUID) shows as disappeared + appeared.
fn diff(old: &BTreeMap<u32, DomainInfo>, new: &BTreeMap<u32, DomainInfo>) -> Vec<DomainEvent> {
    let mut out = Vec::new();
    for (id, o) in old {
        match new.get(id) {
            None => out.push(DomainEvent::Disappeared { domid: *id, uuid: o.uuid }),
            Some(n) if n.uuid != o.uuid => {
                out.push(DomainEvent::Disappeared { domid: *id, uuid: o.uuid });
                out.push(DomainEvent::Appeared(n.clone()));
            }
            Some(n) if class(n.state) != class(o.state) => {
                out.push(DomainEvent::StateChanged { domid: *id, uuid: n.uuid, old: o.state, new: n.state })
            }
            Some(_) => {}
        }
    }
    for (id, n) in new {
        if !old.contains_key(id) {
            out.push(DomainEvent::Appeared(n.clone()));
        }
    }
    out
}

fn read_tail(path: &Path, max_bytes: usize) -> XenResult<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| XenError::io(format!("open {}", path.display()), e))?;
    let len = f.metadata().map_err(|e| XenError::io(format!("stat {}", path.display()), e))?.len();
    let start = len.saturating_sub(max_bytes as u64);
    f.seek(SeekFrom::Start(start)).map_err(|e| XenError::io(format!("seek {}", path.display()), e))?;
    let mut buf = Vec::new();
    f.take(max_bytes as u64)
        .read_to_end(&mut buf)
        .map_err(|e| XenError::io(format!("read {}", path.display()), e))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The stream returned by [`XenHost::events`]; dropping it stops watching.
#[derive(Debug)]
pub struct DomainEvents {
    rx: mpsc::UnboundedReceiver<DomainEvent>,
    task: JoinHandle<()>,
}

impl DomainEvents {
    /// The next change (`None` if the watcher stopped).
    pub async fn next(&mut self) -> Option<DomainEvent> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for DomainEvents {
    type Item = DomainEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<DomainEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for DomainEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::xen::client::XsConfig;
    use crate::xen::fake::FakeXenstored;
    use crate::xen::sys;
    use crate::xen::transport::Transport;

    #[derive(Debug, Default)]
    pub(crate) struct FakeHv {
        doms: Mutex<BTreeMap<u32, DomainInfo>>,
        calls: Mutex<Vec<String>>,
    }

    pub(crate) fn info(domid: u32, state_flags: u32) -> DomainInfo {
        let raw = sys::XenDomctlGetdomaininfo {
            domain: domid as u16,
            flags: state_flags,
            tot_pages: 65536,
            max_pages: 65536,
            nr_online_vcpus: 2,
            max_vcpu_id: 1,
            handle: *Uuid::from_u128(0x1000 + u128::from(domid)).as_bytes(),
            ..Default::default()
        };
        DomainInfo::from_raw(&raw)
    }

    impl FakeHv {
        pub(crate) fn with(domids: &[u32]) -> Arc<FakeHv> {
            let hv = FakeHv::default();
            for d in domids {
                hv.doms.lock().unwrap().insert(*d, info(*d, sys::XEN_DOMINF_RUNNING));
            }
            Arc::new(hv)
        }
        pub(crate) fn set_flags(&self, domid: u32, flags: u32) {
            self.doms.lock().unwrap().insert(domid, info(domid, flags));
        }
        pub(crate) fn remove(&self, domid: u32) {
            self.doms.lock().unwrap().remove(&domid);
        }
        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        fn call(&self, c: String) {
            self.calls.lock().unwrap().push(c);
        }
    }

    impl Hypercalls for FakeHv {
        fn domains(&self) -> XenResult<Vec<DomainInfo>> {
            Ok(self.doms.lock().unwrap().values().cloned().collect())
        }
        fn domain(&self, domid: u32) -> XenResult<DomainInfo> {
            self.doms.lock().unwrap().get(&domid).cloned().ok_or(XenError::NoSuchDomain(domid))
        }
        fn pause(&self, domid: u32) -> XenResult<()> {
            self.call(format!("pause {domid}"));
            self.set_flags(domid, sys::XEN_DOMINF_PAUSED);
            Ok(())
        }
        fn unpause(&self, domid: u32) -> XenResult<()> {
            self.call(format!("unpause {domid}"));
            self.set_flags(domid, sys::XEN_DOMINF_RUNNING);
            Ok(())
        }
        fn destroy(&self, domid: u32) -> XenResult<()> {
            self.call(format!("destroy {domid}"));
            self.remove(domid);
            Ok(())
        }
        fn set_max_mem(&self, domid: u32, kib: u64) -> XenResult<()> {
            self.call(format!("max_mem {domid} {kib}"));
            Ok(())
        }
        fn physinfo(&self) -> XenResult<PhysInfo> {
            Err(XenError::InvalidArgument("not faked".into()))
        }
        fn version(&self) -> XenResult<XenVersion> {
            Ok(XenVersion { major: 4, minor: 17, extra: ".7".into() })
        }
        fn cpu_idle_times(&self, _max_cpus: u32) -> XenResult<Vec<u64>> {
            Err(XenError::InvalidArgument("not faked".into()))
        }
    }

    async fn setup(domids: &[u32]) -> (FakeXenstored, Arc<FakeHv>, XenHost) {
        let fake = FakeXenstored::start();
        for d in domids.iter().filter(|d| **d != 0) {
            fake.external_write(&format!("/local/domain/{d}/name"), format!("guest{d}").as_bytes());
            fake.external_write(&format!("/local/domain/{d}/vm"), format!("/vm/{d}").as_bytes());
        }
        let xs = XsClient::connect(Transport::Socket(fake.socket()), XsConfig::default()).await.unwrap();
        let hv = FakeHv::with(domids);
        let host = XenHost::with_parts(hv.clone(), xs);
        (fake, hv, host)
    }

    #[tokio::test]
    async fn lists_domains_with_names() {
        let (_fake, _hv, host) = setup(&[0, 5]).await;
        let doms = host.list_domains().await.unwrap();
        assert_eq!(doms.len(), 2);
        assert_eq!(doms[0].name.as_deref(), Some("Domain-0"));
        assert_eq!(doms[0].vm_path, None);
        assert_eq!(doms[1].name.as_deref(), Some("guest5"));
        assert_eq!(doms[1].vm_path.as_deref(), Some("/vm/5"));
        assert_eq!(doms[1].uuid(), Uuid::from_u128(0x1005));
        assert_eq!(host.find_by_name("guest5").await.unwrap().unwrap().domid(), 5);
        assert!(host.find_by_name("nope").await.unwrap().is_none());
        assert!(matches!(host.domain(9).await, Err(XenError::NoSuchDomain(9))));
    }

    #[tokio::test]
    async fn cooperative_shutdown_is_seen() {
        let (fake, hv, host) = setup(&[0, 5]).await;
        // The "guest" reacts to control/shutdown by shutting down.
        let fake = Arc::new(fake);
        let (f2, hv2) = (fake.clone(), hv.clone());
        let guest = tokio::spawn(async move {
            loop {
                if f2.value("/local/domain/5/control/shutdown").as_deref() == Some(b"poweroff".as_slice()) {
                    hv2.set_flags(
                        5,
                        sys::XEN_DOMINF_SHUTDOWN | (sys::SHUTDOWN_POWEROFF << sys::XEN_DOMINF_SHUTDOWNSHIFT),
                    );
                    f2.fire_special("@releaseDomain");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let out = host.shutdown(5, ShutdownRequest::Poweroff, Duration::from_secs(10), true).await.unwrap();
        assert_eq!(out, ShutdownOutcome::Guest(Some(ShutdownReason::Poweroff)));
        guest.await.unwrap();
        assert!(hv.calls().is_empty(), "no destroy: {:?}", hv.calls());
        assert!(host.shutdown(0, ShutdownRequest::Reboot, Duration::from_secs(1), true).await.is_err());
    }

    #[tokio::test]
    async fn unresponsive_guest_is_destroyed_or_times_out() {
        let (fake, hv, host) = setup(&[0, 5, 6]).await;
        let e =
            host.shutdown(6, ShutdownRequest::Reboot, Duration::from_millis(300), false).await.unwrap_err();
        assert!(matches!(e, XenError::Timeout(_)), "{e}");
        assert_eq!(fake.value("/local/domain/6/control/shutdown").unwrap(), b"reboot");
        let out =
            host.shutdown(5, ShutdownRequest::Poweroff, Duration::from_millis(300), true).await.unwrap();
        assert_eq!(out, ShutdownOutcome::Destroyed);
        assert_eq!(hv.calls(), vec!["destroy 5"]);
        // A domain that vanished (reaped by the toolstack) counts as shut down.
        let h2 = hv.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            h2.remove(6);
        });
        let out = host.shutdown(6, ShutdownRequest::Poweroff, Duration::from_secs(5), true).await.unwrap();
        assert_eq!(out, ShutdownOutcome::Guest(None));
        assert!(host.destroy(0).is_err());
    }

    #[tokio::test]
    async fn pause_memory_and_vcpus() {
        let (fake, hv, host) = setup(&[0, 5]).await;
        host.pause(5).unwrap();
        assert_eq!(host.domain(5).await.unwrap().info.state, DomainState::Paused);
        host.unpause(5).unwrap();
        assert_eq!(host.domain(5).await.unwrap().info.state, DomainState::Running);
        host.set_max_memory(5, 524288).unwrap();
        assert_eq!(hv.calls(), vec!["pause 5", "unpause 5", "max_mem 5 524288"]);
        // 65536 pages = 256 MiB = 262144 KiB maximum.
        host.set_memory_target(5, 131072).await.unwrap();
        assert_eq!(fake.value("/local/domain/5/memory/target").unwrap(), b"131072");
        assert_eq!(host.memory_target(5).await.unwrap(), Some(131072));
        assert!(host.set_memory_target(5, 262145).await.is_err());
        assert!(host.set_memory_target(5, 0).await.is_err());
        assert_eq!(host.memory_target(0).await.unwrap(), None);
        fake.external_write("/local/domain/5/memory/target", b"lots");
        assert!(matches!(host.memory_target(5).await, Err(XenError::Protocol(_))));
        host.set_online_vcpus(5, 1).await.unwrap();
        assert_eq!(fake.value("/local/domain/5/cpu/0/availability").unwrap(), b"online");
        assert_eq!(fake.value("/local/domain/5/cpu/1/availability").unwrap(), b"offline");
        assert!(host.set_online_vcpus(5, 3).await.is_err());
        assert!(host.set_online_vcpus(5, 0).await.is_err());
    }

    #[tokio::test]
    async fn console_output_reads_the_log_tail() {
        let (_fake, _hv, host) = setup(&[0, 5]).await;
        let dir = std::env::temp_dir().join(format!("ovm-console-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("guest-guest5.log"), "line1\nline2\nDOMU-UP\n").unwrap();
        let host = host.with_console_dir(&dir);
        assert_eq!(host.console_output(5, 1 << 20).await.unwrap(), "line1\nline2\nDOMU-UP\n");
        assert_eq!(host.console_output(5, 8).await.unwrap(), "DOMU-UP\n");
        // A domain that migrated in: its console is the log of its incoming name, written last.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join("guest-guest5--incoming.log"), "ALIVE 7\n").unwrap();
        assert_eq!(host.console_output(5, 1 << 20).await.unwrap(), "ALIVE 7\n");
        assert!(host.console_output(0, 100).await.is_err(), "no log for Domain-0");
        assert!(host.console_log_path("../etc/passwd").is_err());
        assert!(host.console_log_path("").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn events_follow_watches_and_resync() {
        let (fake, hv, host) = setup(&[0]).await;
        let mut ev = host.events(Duration::from_secs(3600)).await.unwrap();
        hv.set_flags(7, sys::XEN_DOMINF_RUNNING);
        fake.fire_special("@introduceDomain");
        let e = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ev.next().await {
                    Some(DomainEvent::Appeared(i)) => return i.domid,
                    Some(_) => continue,
                    None => panic!("stream ended"),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(e, 7);
        hv.set_flags(7, sys::XEN_DOMINF_PAUSED);
        hv.remove(7);
        fake.fire_special("@releaseDomain");
        let got = tokio::time::timeout(Duration::from_secs(5), ev.next()).await.unwrap().unwrap();
        assert_eq!(got, DomainEvent::Disappeared { domid: 7, uuid: Uuid::from_u128(0x1007) });
        // Periodic resync catches changes without a watch event.
        let mut ev = host.events(Duration::from_millis(50)).await.unwrap();
        hv.set_flags(0, sys::XEN_DOMINF_BLOCKED);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(1), ev.next()).await.is_err(),
            "blocked is not news"
        );
        hv.set_flags(0, sys::XEN_DOMINF_PAUSED);
        let got = tokio::time::timeout(Duration::from_secs(5), ev.next()).await.unwrap().unwrap();
        assert_eq!(
            got,
            DomainEvent::StateChanged {
                domid: 0,
                uuid: Uuid::from_u128(0x1000),
                old: DomainState::Blocked,
                new: DomainState::Paused
            }
        );
    }

    #[test]
    fn diff_reports_reused_domids() {
        let a: BTreeMap<u32, DomainInfo> = [(3, info(3, sys::XEN_DOMINF_RUNNING))].into();
        let mut reused = info(3, sys::XEN_DOMINF_RUNNING);
        reused.uuid = Uuid::from_u128(99);
        let b: BTreeMap<u32, DomainInfo> = [(3, reused.clone())].into();
        assert_eq!(
            diff(&a, &b),
            vec![
                DomainEvent::Disappeared { domid: 3, uuid: Uuid::from_u128(0x1003) },
                DomainEvent::Appeared(reused)
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
