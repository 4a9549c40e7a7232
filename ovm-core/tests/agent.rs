//! The agent, hermetically: agents serving simulated hosts on loopback, managers discovering them by
//! address, and every refusal (wrong password, rate limit, unknown certificate, a second manager,
//! plaintext, a wrong protocol version, a changed agent certificate, malformed frames).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ovm_core::agent::proto::Ownership as AgentOwnership;
use ovm_core::agent::proto::{self, AgentMessage, ClientMessage, Op, Reply};
use ovm_core::agent::{tls, Agent, AgentConfig, AgentDriver, Identity, ServeEnd};
use ovm_core::driver::sim::{SimDriver, SimWorld, DEFAULT_PASSWORD};
use ovm_core::driver::Driver;
use ovm_core::model::*;
use ovm_core::store::EventFilter;
use ovm_core::{ErrorKind, JobHandle, Manager};

const PASSWORD: &str = "agent-secret";
const WAIT: Option<Duration> = Some(Duration::from_secs(30));

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ovm-agent-test-{tag}-{}", uuid_str()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn uuid_str() -> String {
    VmId::new().to_string()[..8].to_owned()
}

/// An agent serving a simulated host on 127.0.0.1, in its own thread and runtime.
struct TestAgent {
    agent: Agent,
    addr: String,
    dir: PathBuf,
    world: SimWorld,
    thread: Option<std::thread::JoinHandle<ServeEnd>>,
}

type Served = (Agent, String, std::thread::JoinHandle<ServeEnd>);

/// Serves the simulated host `host` of `world` with the agent state of `dir` on `listen`.
fn serve(dir: &Path, world: &SimWorld, host: &str, listen: &str) -> std::io::Result<Served> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind(listen))?;
    let addr = listener.local_addr()?.to_string();
    let mut cfg = AgentConfig::new(dir);
    cfg.lockout = Duration::from_millis(500);
    cfg.migration_address = Some(addr.clone());
    let hv = SimDriver::new(world.clone())
        .connect(&format!("sim://{host}?cpus=8&memory_mib=16384"), DEFAULT_PASSWORD, "ovm-agent")
        .unwrap();
    let agent = Agent::open(cfg, hv).unwrap();
    let a = agent.clone();
    let thread = std::thread::spawn(move || {
        let end = rt.block_on(a.serve(listener)).unwrap();
        rt.shutdown_timeout(Duration::from_secs(1));
        end
    });
    Ok((agent, addr, thread))
}

impl TestAgent {
    fn start(tag: &str) -> TestAgent {
        TestAgent::start_in(tag, &SimWorld::default())
    }

    /// An agent serving the simulated host `tag` of `world` (shared with other agents).
    fn start_in(tag: &str, world: &SimWorld) -> TestAgent {
        let dir = temp_dir(tag);
        Agent::init(&dir, PASSWORD).unwrap();
        let (agent, addr, thread) = serve(&dir, world, tag, "127.0.0.1:0").unwrap();
        TestAgent { agent, addr, dir, world: world.clone(), thread: Some(thread) }
    }

    /// Stop serving (connections drop) and start again from the same state directory and port.
    fn restart(&mut self) {
        self.halt();
        self.resume();
    }

    /// Stop serving.
    fn halt(&mut self) {
        self.agent.stop();
        let end = self.thread.take().unwrap().join().unwrap();
        assert_eq!(end, ServeEnd::Stopped);
    }

    /// Serve again after [`TestAgent::halt`].
    fn resume(&mut self) {
        let host = self.agent_host();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (agent, _, thread) = loop {
            match serve(&self.dir, &self.world, &host, &self.addr) {
                Ok(x) => break x,
                // The port may linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("{e}");
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("{e}"),
            }
        };
        self.agent = agent;
        self.thread = Some(thread);
    }

    /// The simulated host this agent serves: its state directory's tag.
    fn agent_host(&self) -> String {
        let name = self.dir.file_name().unwrap().to_string_lossy().into_owned();
        let tag = name.strip_prefix("ovm-agent-test-").unwrap();
        tag[..tag.rfind('-').unwrap()].to_owned()
    }

    fn audit_has(&self, what: &str) -> bool {
        self.agent.audit().iter().any(|r| r.what.contains(what))
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.agent.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn manager(tag: &str) -> (Manager, PathBuf) {
    let dir = temp_dir(tag);
    let db = dir.join("manager.db");
    let mgr = Manager::builder()
        .database(ovm_core::manager::DatabaseLocation::File(db.clone()))
        .recurring_jobs(false)
        .open()
        .unwrap();
    (mgr, db)
}

fn ok(job: ovm_core::Result<JobHandle>) -> ObjectRef {
    let j = job.unwrap().wait(WAIT).unwrap();
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    j.result.unwrap_or(ObjectRef::new(ObjectKind::Job, j.id))
}

fn job_error(job: ovm_core::Result<JobHandle>) -> ovm_core::Error {
    match job {
        Err(e) => e,
        Ok(j) => j.wait(WAIT).unwrap_err(),
    }
}

fn wait_until(what: &str, secs: u64, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_event(mgr: &Manager, object: ObjectRef, event_type: &str) -> bool {
    mgr.events(&EventFilter { object: Some(object.id), ..Default::default() })
        .unwrap()
        .iter()
        .any(|e| e.event_type == event_type)
}

#[test]
fn discover_by_address_then_run_a_vm_through_the_agent() {
    let a = TestAgent::start("discover");
    let (mgr, _) = manager("discover");
    let server = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    let s = mgr.server(server).unwrap();
    assert_eq!((s.ownership.clone(), s.power_state), (Ownership::Owned, ServerPowerState::Running));
    assert_eq!(s.address, a.addr);
    assert_eq!((s.hardware.cpus, s.hardware.memory_mib), (8, 16384));
    assert!(!s.ports.is_empty(), "the host's ports are recorded");
    let mgmt: Vec<_> =
        mgr.networks().into_iter().filter(|n| n.functions.contains(&NetworkFunction::Management)).collect();
    assert_eq!(mgmt.len(), 1, "the server-management network is created on first discovery");

    // Both sides pinned each other.
    let owner = a.agent.owner().expect("owned");
    assert_eq!(owner.manager_id, mgr.id());
    assert_eq!(owner.fingerprint, mgr.certificate_fingerprint().unwrap());
    assert_eq!(mgr.agent_fingerprint(server).unwrap(), Some(a.agent.fingerprint().unwrap()));
    assert!(a.audit_has("ownership taken by manager"));

    // A VM, run on the simulated host through the agent.
    let cfg = VmConfig { memory_mib: 512, max_memory_mib: 512, ..VmConfig::default() };
    let mut spec = ovm_core::manager::VmSpec::new("vm1", cfg);
    spec.server = Some(server);
    let vm = VmId(ok(mgr.create_vm(spec)).id);
    ok(mgr.start_vm(vm));
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(server)));
    assert!(mgr.vm_console(vm).unwrap().contains("guest up"));
    ok(mgr.pause_vm(vm));
    ok(mgr.resume_vm(vm));
    ok(mgr.stop_vm(vm));
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Stopped);

    // Domains that change outside the manager are reported through the agent's change stream: a
    // guest reboot (the VM follows its rebuilt domain's new domid), then a crash that destroys it.
    ok(mgr.start_vm(vm));
    let first = mgr.vm(vm).unwrap().domid;
    a.world.guest_reboot(vm).unwrap();
    wait_until("the reboot to reach the manager", 10, || mgr.vm(vm).unwrap().domid != first);
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Running);
    assert!(has_event(&mgr, mgr.vm(vm).unwrap().object_ref(), "vm.restarted"));
    ok(mgr.kill_vm(vm));
    ok(mgr.edit_vm(vm, |v| v.config.restart_actions.on_crash = RestartAction::Destroy));
    ok(mgr.start_vm(vm));
    a.world.crash_domain(vm).unwrap();
    wait_until("the crash to reach the manager", 10, || {
        mgr.vm(vm).unwrap().power_state == PowerState::Stopped
    });
    assert!(has_event(&mgr, mgr.vm(vm).unwrap().object_ref(), "vm.stopped"));
    assert!(has_event(&mgr, mgr.vm(vm).unwrap().object_ref(), "vm.crashed"));
}

#[test]
fn wrong_password_is_refused_and_rate_limited() {
    let a = TestAgent::start("password");
    let (mgr, _) = manager("password");
    for _ in 0..3 {
        let e = job_error(mgr.discover_server(&a.addr, "wrong"));
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("wrong agent password"), "{e}");
    }
    assert!(a.agent.owner().is_none(), "nothing changed");
    assert!(mgr.servers().is_empty(), "no server recorded");
    // Locked out: even the right password is not checked now.
    let e = job_error(mgr.discover_server(&a.addr, PASSWORD));
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("too many failed password attempts"), "{e}");
    assert!(a.agent.owner().is_none());
    assert!(a.audit_has("wrong agent password") && a.audit_has("too many failed"));
    // After the lockout the right password works.
    std::thread::sleep(Duration::from_millis(600));
    ok(mgr.discover_server(&a.addr, PASSWORD));
    assert_eq!(a.agent.owner().unwrap().manager_id, mgr.id());
}

#[test]
fn a_second_manager_is_refused() {
    let a = TestAgent::start("second");
    let (m1, _) = manager("second1");
    let (m2, _) = manager("second2");
    ok(m1.discover_server(&a.addr, PASSWORD));
    let before = a.agent.owner();
    let e = job_error(m2.discover_server(&a.addr, PASSWORD));
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("owned by manager"), "{e}");
    assert_eq!(a.agent.owner(), before, "ownership unchanged");
    assert!(m2.servers().is_empty());
    assert!(a.audit_has("not the owner's"));
    // The owner still works.
    let s = m1.servers()[0].id;
    ok(m1.refresh_server(s));
}

#[test]
fn a_rebuilt_manager_takes_a_server_over_with_its_password_and_the_agent_records_it() {
    let a = TestAgent::start("takeover");
    let (m1, _) = manager("takeover1");
    let (m2, _) = manager("takeover2");
    ok(m1.discover_server(&a.addr, PASSWORD));
    let e = job_error(m2.take_over_server(&a.addr, "wrong"));
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert_eq!(a.agent.owner().unwrap().manager_id, m1.id(), "a wrong password changes nothing");
    ok(m2.take_over_server(&a.addr, PASSWORD));
    assert_eq!(a.agent.owner().unwrap().manager_id, m2.id());
    assert!(a.audit_has(&format!("taken over from manager {}", m1.id())));
    let s = m2.servers()[0].id;
    ok(m2.refresh_server(s));
    // The former owner is refused from now on.
    let s1 = m1.servers()[0].id;
    assert!(m1.refresh_server(s1).and_then(|j| j.wait(Some(Duration::from_secs(20)))).is_err());
}

#[test]
fn an_unknown_certificate_is_refused_even_with_the_owners_id() {
    let a = TestAgent::start("unknowncert");
    let (mgr, _) = manager("unknowncert");
    ok(mgr.discover_server(&a.addr, PASSWORD));
    // Another key pair claiming to be the same manager.
    let impostor = AgentDriver::new(Identity::generate("impostor").unwrap());
    impostor.pin(&a.addr, &a.agent.fingerprint().unwrap());
    let e = impostor.reconnect(&a.addr, mgr.id()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = impostor.release(&a.addr, mgr.id()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert_eq!(a.agent.owner().unwrap().manager_id, mgr.id(), "still owned");
    assert!(a.audit_has("not the owner's"));
}

#[test]
fn plaintext_is_refused_and_the_agent_keeps_serving() {
    let a = TestAgent::start("plaintext");
    let mut tcp = TcpStream::connect(&a.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello =
        ClientMessage::Hello { min_version: 1, max_version: 1, manager_id: "plain".into(), take_over: false };
    tcp.write_all(&proto::encode(&hello).unwrap()).unwrap();
    let mut buf = [0u8; 256];
    // The agent answers with a TLS alert at most, then closes: never a protocol message.
    let mut got = Vec::new();
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(proto::decode::<AgentMessage>(got.get(4..).unwrap_or(&[])).is_err());
    wait_until("the refusal to be logged", 5, || a.audit_has("TLS handshake failed"));
    assert!(a.agent.owner().is_none());
    let (mgr, _) = manager("plaintext");
    ok(mgr.discover_server(&a.addr, PASSWORD));
}

/// A protocol client speaking TLS directly (to send what a manager never would).
struct Raw {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: &str, identity: &Identity) -> Raw {
        let cfg = tls::client_config(identity, None, Arc::default()).unwrap();
        let conn = rustls::ClientConnection::new(cfg, tls::server_name("127.0.0.1")).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { tls: rustls::StreamOwned::new(conn, tcp), buf: Vec::new() }
    }

    fn send_bytes(&mut self, b: &[u8]) {
        proto::write_frame_blocking(&mut self.tls, b).unwrap();
    }

    fn send(&mut self, m: &ClientMessage) {
        self.send_bytes(&proto::encode(m).unwrap());
    }

    fn recv(&mut self) -> Option<AgentMessage> {
        proto::read_frame_blocking(&mut self.tls, &mut self.buf).ok()?;
        Some(proto::decode(&self.buf).unwrap())
    }

    fn hello(&mut self, min: u32, max: u32) -> AgentMessage {
        self.send(&ClientMessage::Hello {
            min_version: min,
            max_version: max,
            manager_id: "raw".into(),
            take_over: false,
        });
        self.recv().expect("an answer to hello")
    }

    fn request(&mut self, id: u64, op: Op) -> Result<Reply, ovm_core::Error> {
        self.send(&ClientMessage::Request { id, op });
        loop {
            match self.recv().expect("a response") {
                AgentMessage::Response { id: got, result } if got == id => return result,
                AgentMessage::Change { .. } => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn an_unowned_agent_serves_only_take_ownership() {
    let a = TestAgent::start("unowned");
    let me = Identity::generate("raw").unwrap();
    let mut raw = Raw::connect(&a.addr, &me);
    assert!(matches!(
        raw.hello(1, 1),
        AgentMessage::Welcome { ownership: AgentOwnership::Unowned, version: 1, .. }
    ));
    for op in [
        Op::ListDomains,
        Op::HostInfo,
        Op::ReleaseOwnership,
        Op::RestartAgent,
        Op::StorageDelete { path: "/etc/passwd".into() },
    ] {
        let e = raw.request(1, op).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    }
    assert!(a.audit_has("does not own the server"));
    assert_eq!(
        raw.request(2, Op::TakeOwnership { password: PASSWORD.into(), take_over: false }).unwrap(),
        Reply::Done
    );
    assert!(matches!(raw.request(3, Op::ListDomains).unwrap(), Reply::Domains(_)));
    assert_eq!(a.agent.owner().unwrap().fingerprint, me.fingerprint().unwrap());
}

#[test]
fn malformed_frames_get_an_error_reply_and_others_are_still_served() {
    let a = TestAgent::start("malformed");
    let mut raw = Raw::connect(&a.addr, &Identity::generate("raw").unwrap());
    assert!(matches!(raw.hello(1, 1), AgentMessage::Welcome { .. }));
    let (mgr, _) = manager("malformed");
    let server = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    raw.send_bytes(&[0, 0, 0, 3, b'{', b'x', b'}']);
    assert!(matches!(raw.recv(), Some(AgentMessage::ProtocolError { .. })));
    let body = br#"{"type":"request","id":1,"op":{"op":"format_disk"}}"#;
    raw.send_bytes(&[&(body.len() as u32).to_be_bytes()[..], body].concat());
    assert!(matches!(raw.recv(), Some(AgentMessage::ProtocolError { .. })));
    // The connection goes on after a malformed frame.
    assert!(matches!(raw.request(5, Op::HostInfo), Err(e) if e.kind() == ErrorKind::PermissionDenied));
    // A frame over the limit closes the connection.
    raw.send_bytes(&[0x7f, 0xff, 0xff, 0xff]);
    assert!(matches!(raw.recv(), Some(AgentMessage::ProtocolError { .. })));
    assert!(raw.recv().is_none(), "closed");
    assert!(a.audit_has("malformed frame") && a.audit_has("over the limit"));
    // The owner was served all along.
    ok(mgr.refresh_server(server));
    assert_eq!(mgr.server(server).unwrap().power_state, ServerPowerState::Running);
}

#[test]
fn an_unknown_protocol_version_is_refused() {
    let a = TestAgent::start("version");
    let mut raw = Raw::connect(&a.addr, &Identity::generate("raw").unwrap());
    match raw.hello(7, 9) {
        AgentMessage::Refused { error } => assert_eq!(error.kind(), ErrorKind::Unsupported),
        other => panic!("{other:?}"),
    }
    assert!(raw.recv().is_none(), "closed after the refusal");
    // A request before the hello is refused too.
    let mut raw = Raw::connect(&a.addr, &Identity::generate("raw").unwrap());
    raw.send(&ClientMessage::Request { id: 1, op: Op::HostInfo });
    assert!(matches!(raw.recv(), Some(AgentMessage::Refused { .. })));
    wait_until("the refusal to be logged", 5, || a.audit_has("expected hello"));
}

#[test]
fn a_changed_agent_certificate_is_refused_by_the_manager() {
    let mut a = TestAgent::start("pinning");
    let (mgr, _) = manager("pinning");
    let server = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    // Someone replaces the agent (new key, same address), and even hands it over.
    for f in ["agent-cert.pem", "agent-key.pem", "state.json"] {
        std::fs::remove_file(a.dir.join(f)).unwrap();
    }
    Agent::init(&a.dir, PASSWORD).unwrap();
    a.restart();
    wait_until("the manager to notice", 10, || {
        mgr.server(server).unwrap().power_state == ServerPowerState::Unreachable
    });
    // The background reconnection gives up with an Error event: retrying cannot help.
    let sref = mgr.server(server).unwrap().object_ref();
    wait_until("the refusal event", 10, || has_event(&mgr, sref, "server.agent_refused"));
    let ev = mgr.events(&EventFilter { object: Some(sref.id), ..Default::default() }).unwrap();
    let refused = ev.iter().find(|e| e.event_type == "server.agent_refused").unwrap();
    assert!(refused.summary.contains("not the pinned"), "{}", refused.summary);
    assert_eq!(refused.severity, Severity::Error);
    assert_eq!(mgr.server(server).unwrap().power_state, ServerPowerState::Unreachable);
    assert!(a.agent.owner().is_none(), "the manager did not hand anything to the new agent");
}

#[test]
fn release_returns_the_agent_to_unowned() {
    let a = TestAgent::start("release");
    let (m1, _) = manager("release1");
    let server = ServerId(ok(m1.discover_server(&a.addr, PASSWORD)).id);
    ok(m1.release_ownership(server));
    assert!(a.agent.owner().is_none());
    assert!(a.audit_has("ownership released"));
    assert_eq!(m1.agent_fingerprint(server).unwrap(), None);
    let (m2, _) = manager("release2");
    ok(m2.discover_server(&a.addr, PASSWORD));
    assert_eq!(a.agent.owner().unwrap().manager_id, m2.id());
}

#[test]
fn agent_restart_keeps_its_key_and_owner_and_the_manager_recovers() {
    let mut a = TestAgent::start("restart");
    let (mgr, db) = manager("restart");
    let server = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    let mut spec = ovm_core::manager::VmSpec::new("keep", VmConfig::default());
    spec.server = Some(server);
    let vm = VmId(ok(mgr.create_vm(spec)).id);
    ok(mgr.start_vm(vm));
    let fp = a.agent.fingerprint().unwrap();
    let token = mgr.current_token().unwrap();

    a.restart();
    assert_eq!(a.agent.fingerprint().unwrap(), fp, "same key after the restart");
    assert_eq!(a.agent.owner().unwrap().manager_id, mgr.id(), "same owner after the restart");
    let sref = mgr.server(server).unwrap().object_ref();
    wait_until("the Warning event", 10, || has_event(&mgr, sref, "server.unreachable"));
    wait_until("the reconnection", 20, || {
        mgr.server(server).unwrap().power_state == ServerPowerState::Running
    });
    assert!(has_event(&mgr, sref, "server.reachable"));
    let v = mgr.vm(vm).unwrap();
    assert_eq!(v.power_state, PowerState::Running, "the VM kept running; no HA restart");
    let (changes, _) = mgr.events_since(token).unwrap();
    assert!(changes.iter().any(|c| c.object == sref));
    ok(mgr.stop_vm(vm));

    // The manager itself restarts: its key and the pin come from its database.
    mgr.close(Duration::from_secs(10)).unwrap();
    drop(mgr);
    let mgr = Manager::builder()
        .database(ovm_core::manager::DatabaseLocation::File(db))
        .recurring_jobs(false)
        .open()
        .unwrap();
    assert_eq!(mgr.server(server).unwrap().power_state, ServerPowerState::Running);
    ok(mgr.start_vm(vm));
    assert_eq!(mgr.vm(vm).unwrap().server, Some(server));
}

#[test]
fn a_corrupt_state_file_stops_the_agent_and_is_left_alone() {
    let dir = temp_dir("corrupt");
    Agent::init(&dir, PASSWORD).unwrap();
    let state = dir.join("state.json");
    std::fs::write(&state, b"{\"version\": 1, \"owner\": ").unwrap();
    let hv = SimDriver::new(SimWorld::default()).connect("sim://c", DEFAULT_PASSWORD, "ovm-agent").unwrap();
    let e = Agent::open(AgentConfig::new(&dir), hv).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(std::fs::read(&state).unwrap(), b"{\"version\": 1, \"owner\": ");
    assert_eq!(Agent::init(&dir, PASSWORD).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(Agent::init(&dir, "").unwrap_err().kind(), ErrorKind::InvalidArgument);
    let _ = std::fs::remove_dir_all(&dir);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn agent_process(dir: &Path, port: u16) -> std::process::Child {
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_ovm-agent"))
        .args(["serve", "--backend", "sim:proc", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--password-file")
        .arg(&pw)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_agent_program_restarts_itself_on_request() {
    let dir = temp_dir("process");
    let port = free_port();
    let mut child = agent_process(&dir, port);
    let addr = format!("127.0.0.1:{port}");
    wait_until("the agent to listen", 20, || TcpStream::connect(&addr).is_ok());
    let (mgr, _) = manager("process");
    let server = ServerId(ok(mgr.discover_server(&addr, PASSWORD)).id);
    let fp = mgr.agent_fingerprint(server).unwrap().unwrap();
    ok(mgr.restart_agent(server));
    let sref = mgr.server(server).unwrap().object_ref();
    wait_until("the Warning event", 10, || has_event(&mgr, sref, "server.unreachable"));
    wait_until("the reconnection", 30, || {
        mgr.server(server).unwrap().power_state == ServerPowerState::Running
    });
    assert!(has_event(&mgr, sref, "server.reachable"));
    assert!(child.try_wait().unwrap().is_none(), "the same process runs on");
    assert_eq!(mgr.agent_fingerprint(server).unwrap().unwrap(), fp);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ovm-agent"))
        .args(["status", "--state-dir"])
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&fp) && text.contains(mgr.id()), "{text}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_command_lines_are_refused() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ovm-agent")).args(args).output().unwrap()
    };
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["serve"]).status.code(), Some(2));
    assert_eq!(run(&["serve", "--state-dir"]).status.code(), Some(2));
    assert_eq!(run(&["serve", "--bogus", "x"]).status.code(), Some(2));
    let dir = temp_dir("cli");
    let out = run(&["serve", "--state-dir", dir.to_str().unwrap(), "--backend", "qemu"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["fingerprint", "--state-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "no identity yet");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn addresses_select_the_agent_driver() {
    let (mgr, _) = manager("addresses");
    // Nothing listens there: a typed backend error, no server recorded.
    let port = free_port();
    let e = job_error(mgr.discover_server(&format!("127.0.0.1:{port}"), PASSWORD));
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    let e = job_error(mgr.discover_server("no such host:1", PASSWORD));
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(mgr.servers().is_empty());
}

#[test]
fn a_manager_opened_while_the_agent_is_down_reconnects_when_it_is_back() {
    let mut a = TestAgent::start("down");
    let (mgr, db) = manager("down");
    let server = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    let mut spec =
        ovm_core::manager::VmSpec::new("ha", VmConfig { high_availability: true, ..VmConfig::default() });
    spec.server = Some(server);
    let vm = VmId(ok(mgr.create_vm(spec)).id);
    ok(mgr.start_vm(vm));
    mgr.close(Duration::from_secs(10)).unwrap();
    drop(mgr);

    a.halt();
    let mgr = Manager::builder()
        .database(ovm_core::manager::DatabaseLocation::File(db))
        .recurring_jobs(false)
        .open()
        .unwrap();
    let s = mgr.server(server).unwrap();
    assert_eq!(s.power_state, ServerPowerState::Unreachable);
    assert!(has_event(&mgr, s.object_ref(), "server.unreachable"));
    // An unanswering agent is not a failed server: its VMs are left alone (no HA restart).
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Running);
    a.resume();
    wait_until("the reconnection", 30, || {
        mgr.server(server).unwrap().power_state == ServerPowerState::Running
    });
    assert!(has_event(&mgr, s.object_ref(), "server.reachable"));
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Running);
}

#[test]
fn of_two_managers_racing_for_an_unowned_agent_one_wins() {
    let a = TestAgent::start("race");
    let (m1, _) = manager("race1");
    let (m2, _) = manager("race2");
    let (j1, j2) =
        (m1.discover_server(&a.addr, PASSWORD).unwrap(), m2.discover_server(&a.addr, PASSWORD).unwrap());
    let (r1, r2) = (j1.wait(WAIT), j2.wait(WAIT));
    let (winner, loser) = match (r1, r2) {
        (Ok(_), Err(e)) => (&m1, e),
        (Err(e), Ok(_)) => (&m2, e),
        other => panic!("exactly one wins: {other:?}"),
    };
    assert_eq!(loser.kind(), ErrorKind::PermissionDenied, "{loser}");
    assert_eq!(a.agent.owner().unwrap().manager_id, winner.id());
}

/// Two agents with their own simulated hosts, both owned by one manager and in one pool.
fn two_agent_pool(tag: &str) -> (TestAgent, TestAgent, Manager, ServerId, ServerId, PoolId) {
    let (a, b) = (TestAgent::start(&format!("{tag}-a")), TestAgent::start(&format!("{tag}-b")));
    let (mgr, _) = manager(tag);
    let sa = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    let sb = ServerId(ok(mgr.discover_server(&b.addr, PASSWORD)).id);
    let pool = PoolId(ok(mgr.create_pool(ovm_core::manager::PoolSpec::new("pool"))).id);
    ok(mgr.add_server_to_pool(pool, sa));
    ok(mgr.add_server_to_pool(pool, sb));
    (a, b, mgr, sa, sb, pool)
}

fn resident(agent: &TestAgent, vm: VmId) -> bool {
    agent.world.resident_on(vm).is_some()
}

#[test]
fn a_running_vm_migrates_between_two_agents_over_their_own_tls_and_back() {
    let (a, b, mgr, sa, sb, pool) = two_agent_pool("migrate");
    let cfg = VmConfig { memory_mib: 512, max_memory_mib: 512, ..VmConfig::default() };
    let mut spec = ovm_core::manager::VmSpec::new("mig1", cfg);
    spec.server = Some(sa);
    spec.pool = Some(pool);
    let vm = VmId(ok(mgr.create_vm(spec)).id);
    ok(mgr.start_vm(vm));
    assert!(resident(&a, vm));

    ok(mgr.migrate_vm(vm, sb));
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(sb)));
    assert!(resident(&b, vm), "the domain runs on the destination's host");
    assert!(!resident(&a, vm), "and no longer on the source's");
    assert!(b.audit_has(&format!(
        "migration of VM {vm} admitted from the agent {}",
        a.agent.fingerprint().unwrap()
    )));
    assert!(b.audit_has(&format!("migration of VM {vm} received")));

    ok(mgr.migrate_vm(vm, sa));
    assert_eq!(mgr.vm(vm).unwrap().server, Some(sa));
    assert!(resident(&a, vm) && !resident(&b, vm));
    ok(mgr.stop_vm(vm));
}

#[test]
fn the_destination_agent_refuses_forged_reused_and_misdirected_tickets() {
    use ovm_core::driver::{DomainSpec, MigrationTicket};
    let (a, b) = (TestAgent::start("tickets-a"), TestAgent::start("tickets-b"));
    let driver = ovm_core::agent::AgentDriver::new(ovm_core::agent::Identity::generate("manager").unwrap());
    let src = driver.connect(&a.addr, PASSWORD, "m").unwrap();
    let dst = driver.connect(&b.addr, PASSWORD, "m").unwrap();
    let (ms, md) = (src.migration().unwrap(), dst.migration().unwrap());
    let spec = DomainSpec {
        uuid: VmId::new(),
        name: "t1".into(),
        domain_type: DomainType::Pv,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 256,
        max_memory_mib: 256,
        disks: vec![],
        nics: vec![],
        kernel: None,
        initrd: None,
        cmdline: None,
        restart_actions: Default::default(),
        boot_order: Vec::new(),
        ha_priority: None,
        framebuffer: false,
        network_boot: None,
    };
    src.create_domain(&spec).unwrap();
    let src_id = ms.identity().unwrap();
    assert_eq!(src_id, a.agent.fingerprint().unwrap());
    let denied = |r: ovm_core::Result<()>| match r {
        Err(ovm_core::Error::PermissionDenied { reason }) => reason,
        other => panic!("expected PermissionDenied, got {other:?}"),
    };

    // A forged token.
    let real = md.prepare_incoming(&spec, &src_id, MigrationMode::Live).unwrap();
    assert_eq!(real.peer, b.agent.fingerprint().unwrap());
    let forged = MigrationTicket { token: "00".repeat(32), ..real.clone() };
    assert!(denied(ms.send(spec.uuid, &forged, true)).contains("no such ticket"));
    wait_until("the refusal to be logged", 5, || b.audit_has("migration ticket refused: no such ticket"));
    // A destination that is not the one the manager pinned: the source refuses to send.
    let impostor = MigrationTicket { peer: src_id.clone(), ..real.clone() };
    assert!(denied(ms.send(spec.uuid, &impostor, true)).contains("presented certificate"));
    assert!(resident(&a, spec.uuid), "nothing left the source");
    // The real ticket, once; then it is spent.
    ms.send(spec.uuid, &real, true).unwrap();
    assert!(resident(&b, spec.uuid) && !resident(&a, spec.uuid));
    let back = ms.prepare_incoming(&spec, &md.identity().unwrap(), MigrationMode::Live).unwrap();
    md.send(spec.uuid, &back, true).unwrap();
    assert!(denied(ms.send(spec.uuid, &real, true)).contains("no such ticket"), "a used ticket is refused");
    // A ticket issued for another source certificate.
    let for_other = md.prepare_incoming(&spec, &md.identity().unwrap(), MigrationMode::Live).unwrap();
    assert!(denied(ms.send(spec.uuid, &for_other, true)).contains("issued for the agent"));
    md.cancel_incoming(&for_other).unwrap();
    // A stream carrying another domain than the one prepared: refused, and the VM stays.
    let mut bigger = spec.clone();
    bigger.memory_mib = 512;
    bigger.max_memory_mib = 512;
    let mismatched = md.prepare_incoming(&bigger, &src_id, MigrationMode::Live).unwrap();
    let e = ms.send(spec.uuid, &mismatched, true).unwrap_err();
    assert!(
        resident(&a, spec.uuid) && !resident(&b, spec.uuid),
        "a refused migration leaves the VM at the source: {e}"
    );
    // Preparation checks: a spec that does not fit, a source that is not a fingerprint.
    let mut huge = spec.clone();
    huge.uuid = VmId::new();
    huge.memory_mib = 1 << 20;
    huge.max_memory_mib = 1 << 20;
    assert_eq!(
        md.prepare_incoming(&huge, &src_id, MigrationMode::Live).unwrap_err().kind(),
        ErrorKind::InsufficientResources
    );
    assert_eq!(
        md.prepare_incoming(&spec, "someone", MigrationMode::Live).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn a_running_vm_moves_cold_between_two_agents_and_the_source_copy_goes_only_after() {
    let (a, b, mgr, sa, sb, pool) = two_agent_pool("cold");
    let cfg = VmConfig { memory_mib: 512, max_memory_mib: 512, ..VmConfig::default() };
    let mut spec = ovm_core::manager::VmSpec::new("cold1", cfg);
    spec.server = Some(sa);
    spec.pool = Some(pool);
    let vm = VmId(ok(mgr.create_vm(spec)).id);
    ok(mgr.start_vm(vm));
    let cold = ovm_core::manager::MigrateOptions { mode: MigrationMode::Cold };
    let job = mgr.migrate_vm_with(vm, sb, cold).unwrap().wait(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(job.kind, "MoveVmCold");
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(sb)));
    assert!(resident(&b, vm), "the domain runs on the destination's host");
    assert!(!resident(&a, vm), "the paused source copy was destroyed once the destination ran it");
    assert!(b.audit_has(&format!("migration of VM {vm} received")));

    // A destination that fails to run it (it prepares, then cannot admit the saved domain): the
    // VM runs on at the source, unpaused, and nothing is left at the destination.
    a.world.fail_after(ovm_core::driver::sim::SimOp::Migrate, None, 1);
    let failed = mgr.migrate_vm_with(vm, sa, cold).unwrap().wait_done(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(failed.state, JobState::Failed, "{failed:?}");
    let v = mgr.vm(vm).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(sb)));
    assert!(resident(&b, vm) && !resident(&a, vm));
    let host_b = SimDriver::new(b.world.clone())
        .connect(&format!("sim://{}?cpus=8&memory_mib=16384", "cold-b"), DEFAULT_PASSWORD, "ovm-agent")
        .unwrap();
    let d = host_b.list_domains().unwrap().into_iter().find(|d| d.uuid == Some(vm)).unwrap();
    assert_eq!(d.state, ovm_core::driver::DomainRunState::Running, "unpaused after the failed move");
    ok(mgr.acknowledge_all(ObjectRef::new(ObjectKind::Vm, vm)));
    ok(mgr.migrate_vm(vm, sa));
    assert!(resident(&a, vm) && !resident(&b, vm));
    ok(mgr.stop_vm(vm));
}

#[test]
fn a_ticket_prepared_for_one_mode_is_refused_for_the_other() {
    use ovm_core::driver::{DomainSpec, MigrationTicket};
    let (a, b) = (TestAgent::start("modes-a"), TestAgent::start("modes-b"));
    let driver = ovm_core::agent::AgentDriver::new(ovm_core::agent::Identity::generate("manager").unwrap());
    let src = driver.connect(&a.addr, PASSWORD, "m").unwrap();
    let dst = driver.connect(&b.addr, PASSWORD, "m").unwrap();
    let (ms, md) = (src.migration().unwrap(), dst.migration().unwrap());
    let spec = DomainSpec {
        uuid: VmId::new(),
        name: "m1".into(),
        domain_type: DomainType::Pv,
        vcpus: 1,
        max_vcpus: 1,
        memory_mib: 256,
        max_memory_mib: 256,
        disks: vec![],
        nics: vec![],
        kernel: None,
        initrd: None,
        cmdline: None,
        restart_actions: Default::default(),
        boot_order: Vec::new(),
        ha_priority: None,
        framebuffer: false,
        network_boot: None,
    };
    src.create_domain(&spec).unwrap();
    let src_id = ms.identity().unwrap();
    let denied = |r: ovm_core::Result<()>| match r {
        Err(ovm_core::Error::PermissionDenied { reason }) => reason,
        other => panic!("expected PermissionDenied, got {other:?}"),
    };
    // A live ticket presented with a saved domain (a cold stream): refused before a byte moves.
    let live = md.prepare_incoming(&spec, &src_id, MigrationMode::Live).unwrap();
    assert_eq!(live.mode, MigrationMode::Live);
    let as_cold = MigrationTicket { mode: MigrationMode::Cold, ..live.clone() };
    assert!(
        denied(ms.send(spec.uuid, &as_cold, true)).contains("prepared for a live migration, not a cold move")
    );
    wait_until("the refusal to be logged", 5, || {
        b.audit_has("prepared for a live migration, not a cold move")
    });
    let here = src.list_domains().unwrap().into_iter().find(|d| d.uuid == Some(spec.uuid)).unwrap();
    assert_eq!(here.state, ovm_core::driver::DomainRunState::Running, "the source did not even pause");
    // The refused ticket is spent.
    assert!(denied(ms.send(spec.uuid, &live, true)).contains("no such ticket"));
    // And the other way round.
    let cold = md.prepare_incoming(&spec, &src_id, MigrationMode::Cold).unwrap();
    let as_live = MigrationTicket { mode: MigrationMode::Live, ..cold.clone() };
    assert!(
        denied(ms.send(spec.uuid, &as_live, true)).contains("prepared for a cold move, not a live migration")
    );
    assert!(resident(&a, spec.uuid) && !resident(&b, spec.uuid));
    // A cold ticket used as prepared: the domain runs there, its paused copy stays here.
    let cold = md.prepare_incoming(&spec, &src_id, MigrationMode::Cold).unwrap();
    ms.send(spec.uuid, &cold, true).unwrap();
    let here = src.list_domains().unwrap().into_iter().find(|d| d.uuid == Some(spec.uuid)).unwrap();
    assert_eq!(here.state, ovm_core::driver::DomainRunState::Paused);
    let there = dst.list_domains().unwrap().into_iter().find(|d| d.uuid == Some(spec.uuid)).unwrap();
    assert_eq!(there.state, ovm_core::driver::DomainRunState::Running);
}

#[test]
fn storage_through_the_agent_nfs_and_iscsi() {
    let a = TestAgent::start("storage");
    a.world.add_nfs_export("nfs1", "/srv/repo", 50 << 30);
    let target = "iqn.2026-01.ovm.sim:lio";
    let wwid = a.world.add_lun(target, "lun0", 2 << 30);
    let (mgr, _) = manager("storage");
    let server = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    // The agent's host, seen directly (as the agent serves it).
    let host = SimDriver::new(a.world.clone())
        .connect("sim://storage?cpus=8&memory_mib=16384", DEFAULT_PASSWORD, "ovm-agent")
        .unwrap();

    // NFS: discovered through the agent with the storage's size, mounted and unmounted by it.
    let spec = ovm_core::manager::FileServerSpec::nfs("nfs1", "nfs1", vec![server]);
    let fsrv = FileServerId(ok(mgr.register_file_server(spec)).id);
    let fss = mgr.file_systems_of(fsrv);
    assert_eq!(
        fss.iter().map(|f| (f.path.as_str(), f.size_bytes)).collect::<Vec<_>>(),
        [("/srv/repo", 50 << 30)]
    );
    let repo = RepositoryId(
        ok(mgr.create_repository(ovm_core::manager::RepositorySpec {
            name: "repo".into(),
            backing: RepositoryBacking::FileSystem(fss[0].id),
            owner_pool: None,
            capacity_bytes: 0,
        }))
        .id,
    );
    ok(mgr.present_repository(repo, server));
    let mounts = host.file_storage().unwrap().mounts().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].mount_point, ovm_core::manager::repository_path(repo));
    let disk = VirtualDiskId(ok(mgr.create_virtual_disk(repo, "d", 1 << 30, false)).id);
    assert_eq!(a.world.file_size(&ovm_core::manager::virtual_disk_path(repo, disk)), Some(1 << 30));
    ok(mgr.unpresent_repository(repo, server));
    assert!(host.file_storage().unwrap().mounts().unwrap().is_empty());

    // iSCSI: the array's LUN discovered through the agent, the session opened and closed by it.
    let spec = ovm_core::manager::StorageArraySpec::iscsi("lio", "storage", vec![server]);
    let array = StorageArrayId(ok(mgr.register_storage_array(spec)).id);
    let luns = mgr.physical_disks_of(array);
    assert_eq!(
        luns.iter().map(|l| (l.page83_id.as_str(), l.size_bytes)).collect::<Vec<_>>(),
        [(wwid.as_str(), 2 << 30)]
    );
    assert_eq!(host.array_storage().unwrap().sessions().unwrap().len(), 1);
    ok(mgr.unpresent_storage_array(array, server));
    assert!(host.array_storage().unwrap().sessions().unwrap().is_empty());
}

#[test]
fn the_agent_takes_and_gives_up_the_virtual_ip() {
    let a = TestAgent::start("vip");
    let me = Identity::generate("raw").unwrap();
    let mut raw = Raw::connect(&a.addr, &me);
    raw.hello(1, 1);
    raw.request(1, Op::TakeOwnership { password: PASSWORD.into(), take_over: false }).unwrap();
    let address = std::net::Ipv4Addr::new(10, 77, 0, 100);
    let claim = |prefix| Op::ClaimVirtualIp { interface: "xenbr0".into(), address, prefix };
    assert_eq!(raw.request(2, claim(24)).unwrap(), Reply::Done);
    assert_eq!(a.world.virtual_ip_holder(address), Some(("vip".into(), "xenbr0".into())));
    let e = raw.request(3, claim(33)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = raw.request(
        4,
        Op::ClaimVirtualIp { interface: "xenbr0".into(), address: [224, 0, 0, 1].into(), prefix: 24 },
    );
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidArgument);
    let release = Op::ReleaseVirtualIp { interface: "xenbr0".into(), address, prefix: 24 };
    assert_eq!(raw.request(5, release.clone()).unwrap(), Reply::Done);
    assert_eq!(raw.request(6, release).unwrap(), Reply::Done);
    assert_eq!(a.world.virtual_ip_holder(address), None);
}

#[test]
fn with_a_sealing_key_the_managers_private_key_is_not_in_the_database_in_the_clear() {
    use ovm_core::manager::sealing::SealingKey;
    let a = TestAgent::start("sealed");
    let (mgr, db) = manager("sealed");
    let server = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    let fp = mgr.certificate_fingerprint().unwrap();
    mgr.close(Duration::from_secs(10)).unwrap();
    drop(mgr);
    let in_clear = |db: &Path| {
        let mut bytes = std::fs::read(db).unwrap();
        bytes.extend(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
        bytes.windows(11).any(|w| w == b"PRIVATE KEY")
    };
    assert!(in_clear(&db), "without a key the private key is stored as PEM");

    let key = [0x5au8; 32];
    let open = |key: Option<&[u8]>| {
        let mut b = Manager::builder()
            .database(ovm_core::manager::DatabaseLocation::File(db.clone()))
            .recurring_jobs(false);
        if let Some(k) = key {
            b = b.sealing_key(SealingKey::from_bytes(k).unwrap());
        }
        b.open()
    };
    // Given a key, the manager encrypts the key it had in the clear, and is still the same manager
    // to its agent.
    let mgr = open(Some(&key)).unwrap();
    assert_eq!(mgr.certificate_fingerprint().unwrap(), fp);
    wait_until("the reconnection", 20, || {
        mgr.server(server).unwrap().power_state == ServerPowerState::Running
    });
    mgr.close(Duration::from_secs(10)).unwrap();
    drop(mgr);
    assert!(!in_clear(&db), "the private key is in the database file in the clear");

    // Without the key, or with another, the manager does not open; nothing is changed.
    assert_eq!(open(None).unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(open(Some(&[1u8; 32])).unwrap_err().kind(), ErrorKind::PermissionDenied);

    // With it, after the restart, the manager talks to its agent: a VM runs there.
    let mgr = open(Some(&key)).unwrap();
    assert_eq!(mgr.certificate_fingerprint().unwrap(), fp);
    wait_until("the reconnection", 20, || {
        mgr.server(server).unwrap().power_state == ServerPowerState::Running
    });
    let mut spec = ovm_core::manager::VmSpec::new("sealed", VmConfig::default());
    spec.server = Some(server);
    let vm = VmId(ok(mgr.create_vm(spec)).id);
    ok(mgr.start_vm(vm));
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Running);
    mgr.close(Duration::from_secs(10)).unwrap();
}

/// A clustered pool on three agents serving simulated hosts of one world: a server whose agent
/// alone stops is not dead (its heartbeat beats; its VMs are left alone); a server killed is
/// declared dead only once its cluster says so, and then its HA VMs run again on the survivors and
/// the pool follows the master the cluster elected.
#[test]
fn a_clustered_pool_restarts_ha_vms_by_itself_while_the_manager_is_away() {
    use ovm_core::manager::{PoolSpec, StorageArraySpec, VmSpec};
    use ovm_core::policy::election::ElectionConfig;

    let world = SimWorld::default();
    world.set_cluster_timing(ElectionConfig::new(12_000, 2_000).unwrap());
    // A master acts for the manager once no request of it reached its agent for 3 s.
    world.set_manager_grace(Some(Duration::from_secs(3)));
    let wwid = world.add_lun("iqn.2026-01.ovm.sim:pool", "pool", 1 << 30);
    let mut agents: Vec<TestAgent> =
        ["awaynode1", "awaynode2", "awaynode3"].iter().map(|h| TestAgent::start_in(h, &world)).collect();
    let (mgr, db) = manager("ha-away");
    let servers: Vec<ServerId> =
        agents.iter().map(|a| ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id)).collect();
    let array = StorageArrayId(
        ok(mgr.register_storage_array(StorageArraySpec::iscsi("array", "storage", vec![servers[0]]))).id,
    );
    ok(mgr.present_storage_array_to(array, &servers[1..]));
    let disk = mgr.physical_disks_of(array).iter().find(|d| d.page83_id == wwid).expect("the LUN").id;
    let spec = PoolSpec {
        clustered: true,
        virtual_ip: Some("192.0.2.21".parse().unwrap()),
        pool_disk: Some(disk),
        cluster_timeout_secs: 12,
        ..PoolSpec::new("away-pool")
    };
    let pool = PoolId(ok(mgr.create_pool(spec)).id);
    for s in &servers {
        ok(mgr.add_server_to_pool(pool, *s));
    }
    let vm = |name: &str, on: usize, ha: bool| {
        let cfg =
            VmConfig { memory_mib: 512, max_memory_mib: 512, high_availability: ha, ..VmConfig::default() };
        let mut spec = VmSpec::new(name, cfg);
        spec.server = Some(servers[on]);
        spec.pool = Some(pool);
        let vm = VmId(ok(mgr.create_vm(spec)).id);
        ok(mgr.start_vm_on(vm, servers[on]));
        vm
    };
    let (ha, plain) = (vm("ha-on-2", 1, true), vm("plain-on-2", 1, false));
    // Server 2 keeps the HA VM's record in its cluster; the plain VM has none.
    let records = world.ha_records();
    assert_eq!(records.get(&ha).map(String::as_str), Some("awaynode2"));
    assert!(!records.contains_key(&plain));
    for _ in 0..5 {
        world.advance_cluster(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(600));
    }

    // The manager stops; server 2 dies; past the grace and the cluster timeout, the master
    // restarts the HA VM on itself. The plain VM is not restarted.
    mgr.close(Duration::from_secs(30)).unwrap();
    drop(mgr);
    std::thread::sleep(Duration::from_millis(3500));
    agents[1].halt();
    world.lose_host("awaynode2").unwrap();
    world.advance_cluster(Duration::from_secs(20));
    assert_eq!(world.resident_on(ha).as_deref(), Some("awaynode1"), "restarted by the master");
    assert_eq!(world.resident_on(plain), None, "not HA-enabled");
    assert_eq!(world.ha_records().get(&ha).map(String::as_str), Some("awaynode1"));

    // The manager comes back: it finds the VM on the master, declares server 2 dead, marks the
    // plain VM stopped, and starts nothing twice.
    let mgr = Manager::builder()
        .database(ovm_core::manager::DatabaseLocation::File(db))
        .recurring_jobs(false)
        .open()
        .unwrap();
    wait_until("the HA VM to be recorded on the master", 10, || {
        mgr.vm(ha).is_ok_and(|v| v.server == Some(servers[0]) && v.power_state == PowerState::Running)
    });
    assert!(has_event(&mgr, ObjectRef::new(ObjectKind::Vm, ha), "ha.restarted_by_pool"));
    for _ in 0..3 {
        world.advance_cluster(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(600));
    }
    wait_until("server 2 to be declared dead", 20, || {
        has_event(&mgr, ObjectRef::new(ObjectKind::Server, servers[1]), "server.dead")
    });
    wait_until("the plain VM to be stopped", 10, || {
        mgr.vm(plain).is_ok_and(|v| v.power_state == PowerState::Stopped)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(world.resident_on(ha).as_deref(), Some("awaynode1"), "one copy, where the master put it");
    assert_eq!(mgr.vm(ha).unwrap().server, Some(servers[0]));
    assert!(
        !has_event(&mgr, ObjectRef::new(ObjectKind::Vm, ha), "ha.restart"),
        "the manager's HA did not start it"
    );
}

#[test]
fn a_clustered_pool_restarts_ha_vms_only_of_a_member_its_cluster_declares_dead() {
    use ovm_core::manager::{PoolSpec, StorageArraySpec, VmSpec};
    use ovm_core::policy::election::ElectionConfig;

    let world = SimWorld::default();
    world.set_cluster_timing(ElectionConfig::new(12_000, 2_000).unwrap());
    let wwid = world.add_lun("iqn.2026-01.ovm.sim:pool", "pool", 1 << 30);
    let mut agents: Vec<TestAgent> =
        ["hanode1", "hanode2", "hanode3"].iter().map(|h| TestAgent::start_in(h, &world)).collect();
    let (mgr, _) = manager("ha-verdict");
    let servers: Vec<ServerId> =
        agents.iter().map(|a| ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id)).collect();
    let array = StorageArrayId(
        ok(mgr.register_storage_array(StorageArraySpec::iscsi("array", "storage", vec![servers[0]]))).id,
    );
    ok(mgr.present_storage_array_to(array, &servers[1..]));
    let disk = mgr.physical_disks_of(array).iter().find(|d| d.page83_id == wwid).expect("the LUN").id;
    let spec = PoolSpec {
        clustered: true,
        virtual_ip: Some("192.0.2.20".parse().unwrap()),
        pool_disk: Some(disk),
        cluster_timeout_secs: 12,
        ..PoolSpec::new("ha-pool")
    };
    let pool = PoolId(ok(mgr.create_pool(spec)).id);
    for s in &servers {
        ok(mgr.add_server_to_pool(pool, *s));
    }
    assert_eq!(mgr.pool(pool).unwrap().master, Some(servers[0]), "the first member is master");

    let vm = |name: &str, on: usize, ha: bool| {
        let cfg =
            VmConfig { memory_mib: 512, max_memory_mib: 512, high_availability: ha, ..VmConfig::default() };
        let mut spec = VmSpec::new(name, cfg);
        spec.server = Some(servers[on]);
        spec.pool = Some(pool);
        let vm = VmId(ok(mgr.create_vm(spec)).id);
        ok(mgr.start_vm_on(vm, servers[on]));
        assert_eq!(mgr.vm(vm).unwrap().server, Some(servers[on]));
        vm
    };
    let (ha1, plain1, ha3) = (vm("ha-on-1", 0, true), vm("plain-on-1", 0, false), vm("ha-on-3", 2, true));
    // A second of the clusters' time passes: every member that is up heartbeats.
    let heartbeats = || world.advance_cluster(Duration::from_secs(1));
    // The watch has seen every member alive.
    for _ in 0..5 {
        heartbeats();
        std::thread::sleep(Duration::from_millis(600));
    }
    let restarted = |vm: VmId| has_event(&mgr, ObjectRef::new(ObjectKind::Vm, vm), "ha.restart");

    // Server 3's agent stops; the server heartbeats on: not dead, its VM is not restarted.
    agents[2].halt();
    wait_until("server 3 to be unreachable", 10, || {
        mgr.server(servers[2]).unwrap().power_state == ServerPowerState::Unreachable
    });
    for _ in 0..20 {
        heartbeats();
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("the agent-unreachable warning", 10, || {
        has_event(&mgr, ObjectRef::new(ObjectKind::Server, servers[2]), "server.agent_unreachable")
    });
    let v = mgr.vm(ha3).unwrap();
    assert_eq!((v.power_state, v.server), (PowerState::Running, Some(servers[2])));
    assert_eq!(world.resident_on(ha3).as_deref(), Some("hanode3"));
    assert!(!restarted(ha3));
    agents[2].resume();
    wait_until("server 3 to be reachable again", 30, || {
        mgr.server(servers[2]).unwrap().power_state == ServerPowerState::Running
    });

    // Server 1 (the master) is killed: its agent and its host. Until its cluster declares it dead,
    // nothing is restarted.
    agents[0].halt();
    world.lose_host("hanode1").unwrap();
    wait_until("server 1 to be unreachable", 10, || {
        mgr.server(servers[0]).unwrap().power_state == ServerPowerState::Unreachable
    });
    world.advance_cluster(Duration::from_secs(8));
    std::thread::sleep(Duration::from_secs(3));
    assert!(!restarted(ha1), "not restarted before the cluster declares its server dead");
    assert_eq!(mgr.vm(ha1).unwrap().power_state, PowerState::Running, "still recorded running");
    // Past T + M its cluster declares it dead.
    world.advance_cluster(Duration::from_secs(8));
    wait_until("server 1 to be declared dead", 20, || {
        has_event(&mgr, ObjectRef::new(ObjectKind::Server, servers[0]), "server.dead")
    });
    wait_until("the HA VM to run on a survivor", 30, || {
        mgr.vm(ha1).unwrap().power_state == PowerState::Running
            && mgr.vm(ha1).unwrap().server.is_some_and(|s| s != servers[0])
    });
    let host = world.resident_on(ha1).expect("running");
    assert!(host == "hanode2" || host == "hanode3", "{host}");
    assert!(restarted(ha1));
    let p = mgr.vm(plain1).unwrap();
    assert_eq!((p.power_state, p.server), (PowerState::Stopped, Some(servers[0])), "not HA-enabled");
    assert!(has_event(&mgr, p.object_ref(), "vm.stopped"));
    assert_eq!(mgr.vm(ha3).unwrap().server, Some(servers[2]), "the others' VMs stay");
    // The pool follows the master the cluster elected.
    let st = mgr.pool_cluster_status(pool).unwrap().unwrap();
    assert!(st.epoch >= 2, "{st:?}");
    wait_until("the pool to follow the elected master", 10, || {
        mgr.pool(pool).unwrap().master.is_some_and(|m| Some(m) != Some(servers[0]))
    });
    assert!(has_event(&mgr, mgr.pool(pool).unwrap().object_ref(), "pool.master_elected"));

    // Server 1 boots again, in no cluster, and its agent is back: the manager reconnects and it
    // joins its pool's cluster again, as the member it was.
    world.restore_host("hanode1").unwrap();
    let direct =
        SimDriver::new(world.clone()).connect("sim://hanode1", DEFAULT_PASSWORD, "ovm-agent").unwrap();
    direct.cluster().unwrap().leave().unwrap();
    assert_eq!(direct.cluster().unwrap().status().unwrap(), None, "in no cluster after its boot");
    agents[0].resume();
    wait_until("server 1 to be reachable again", 30, || {
        mgr.server(servers[0]).unwrap().power_state == ServerPowerState::Running
    });
    wait_until("server 1 to join the cluster again", 20, || {
        has_event(&mgr, ObjectRef::new(ObjectKind::Server, servers[0]), "cluster.rejoined")
    });
    let st = direct.cluster().unwrap().status().unwrap().expect("in the pool's cluster");
    assert_eq!(st.cluster, pool.0.to_string());
    assert_eq!(st.members.len(), 3, "{st:?}");
    assert_eq!(mgr.pool(pool).unwrap().cluster_nodes[0], (servers[0], 0), "the member it was");
}

#[test]
fn an_hvm_guests_console_is_reached_through_the_agent_by_its_owner_only() {
    let a = TestAgent::start("console");
    let (mgr, _) = manager("console");
    let server = ServerId(ok(mgr.discover_server(&a.addr, PASSWORD)).id);
    let cfg = VmConfig {
        domain_type: DomainType::Hvm,
        memory_mib: 512,
        max_memory_mib: 512,
        ..VmConfig::default()
    };
    let mut spec = ovm_core::manager::VmSpec::new("hvm-screen", cfg);
    spec.server = Some(server);
    let vm = VmId(ok(mgr.create_vm(spec)).id);
    ok(mgr.start_vm(vm));
    // Through the agent's TLS connection, a console stream of its own.
    let ep = mgr.open_vm_console(vm).unwrap();
    let shot =
        ovm_core::console::screenshot(ep.address, &ep.password, std::time::Duration::from_secs(10)).unwrap();
    assert_eq!((shot.width, shot.height, shot.name.as_str()), (160, 100, "hvm-screen"));
    assert!(shot.colours() > 1);
    assert!(a.audit_has("opened"), "the agent records the console");
    // Another certificate gets no console, even naming the VM: refused at its first message.
    let mut raw = Raw::connect(&a.addr, &Identity::generate("peeker").unwrap());
    raw.send(&ClientMessage::Console { vm });
    match raw.recv() {
        Some(AgentMessage::Refused { error }) => {
            assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(a.audit_has("not the owning manager"));
}
