use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::proto::{ClientMessage, ServiceMessage};
use super::*;
use crate::agent::proto::frame;
use crate::driver::sim::DEFAULT_PASSWORD;
use crate::manager::{PoolSpec, VmSpec};
use crate::model::*;
use crate::{Error, ErrorKind, Manager};

const LONG: Option<Duration> = Some(Duration::from_secs(60));

/// A service on an in-memory manager, on a socket in a temporary directory (also used by the
/// tests of accounts and roles).
pub(super) struct Fixture {
    dir: PathBuf,
    pub(super) service: Service,
    pub(super) manager: Manager,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        Fixture::with_options(tag, ServiceOptions::default())
    }

    pub(super) fn with_options(tag: &str, opts: ServiceOptions) -> Fixture {
        let dir = std::env::temp_dir().join(format!("ovm-remote-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let manager = Manager::open_in_memory().unwrap();
        let service = Service::bind(Arc::new(manager.clone()), dir.join("m.sock"), opts).unwrap();
        Fixture { dir, service, manager }
    }

    pub(super) fn uri(&self) -> String {
        format!("ovm+unix://{}", self.service.path().display())
    }

    fn connect(&self) -> RemoteManager {
        Manager::connect(&self.uri()).unwrap()
    }

    /// A raw connection that has said hello.
    fn raw(&self) -> UnixStream {
        let mut s = UnixStream::connect(self.service.path()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let hello =
            ClientMessage::Hello { min_version: 1, max_version: 1, client: "raw".into(), credentials: None };
        frame::write_frame_blocking(&mut s, &frame::encode(&hello).unwrap()).unwrap();
        assert!(matches!(read(&mut s), ServiceMessage::Welcome { version: 1, .. }));
        s
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.service.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(s: &mut UnixStream) -> ServiceMessage {
    let mut buf = Vec::new();
    frame::read_frame_blocking(s, &mut buf).unwrap();
    frame::decode(&buf).unwrap()
}

fn done(api: &dyn ManagerApi, job: Job) -> Job {
    let j = api.wait_job_for(job.id, LONG).unwrap();
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    j
}

/// A scenario through the API: two servers, a pool, a VM started and stopped. Returns what an
/// administrator would look at, without ids and times.
fn scenario(api: &dyn ManagerApi) -> Vec<String> {
    for name in ["a", "b"] {
        done(
            api,
            api.discover_server(format!("sim://{name}?cpus=8&memory_mib=16384"), DEFAULT_PASSWORD.into())
                .unwrap(),
        );
    }
    let pool = done(api, api.create_pool(PoolSpec::new("p1")).unwrap()).result.unwrap();
    for s in api.objects(ObjectKind::Server).unwrap() {
        done(api, api.add_server_to_pool(PoolId(pool.id), ServerId(s.uuid())).unwrap());
    }
    let mut spec = VmSpec::new("web01", VmConfig::default());
    spec.pool = Some(PoolId(pool.id));
    let vm = VmId(done(api, api.create_vm(spec).unwrap()).result.unwrap().id);
    done(api, api.start_vm(vm).unwrap());
    let Object::Vm(running) = api.find(ObjectKind::Vm, "web01".into()).unwrap() else { panic!("not a VM") };
    assert_eq!(running.power_state, PowerState::Running);
    done(api, api.stop_vm(vm).unwrap());
    let mut out = Vec::new();
    for kind in [ObjectKind::Server, ObjectKind::ServerPool, ObjectKind::Vm] {
        let mut names: Vec<String> =
            api.objects(kind).unwrap().iter().map(|o| format!("{kind} {}", o.name())).collect();
        names.sort();
        out.extend(names);
    }
    let Object::Vm(vm) = api.object(ObjectRef::new(ObjectKind::Vm, vm)).unwrap() else { panic!("not a VM") };
    out.push(format!("web01 {:?}", vm.power_state));
    let mut jobs: Vec<String> =
        api.jobs(Default::default()).unwrap().iter().map(|j| format!("{} {}", j.kind, j.state)).collect();
    jobs.sort();
    out.extend(jobs);
    out
}

/// A storage and network scenario through the rows for specs and options: a file server of the
/// simulated world (`sim` is the manager behind `api`, which holds the world), a repository on it,
/// a VM network, a template made from a disk and cloned, a server edited, plans and settings read.
fn storage_scenario(api: &dyn ManagerApi, sim: &Manager) -> Vec<String> {
    use crate::manager::{
        CloneOptions, FileServerSpec, MigrateOptions, NetworkApply, NetworkSpec, RepositorySpec, ServerEdit,
        StopOptions,
    };
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        let job =
            api.discover_server(format!("sim://{name}?memory_mib=16384"), DEFAULT_PASSWORD.into()).unwrap();
        servers.push(ServerId(done(api, job).result.unwrap().id));
    }
    let pool = PoolId(done(api, api.create_pool(PoolSpec::new("p1")).unwrap()).result.unwrap().id);
    for s in &servers {
        done(api, api.add_server_to_pool(pool, *s).unwrap());
    }
    sim.sim().add_nfs_export("nfs.example.com", "/export/fs1", 1 << 40);
    let spec = FileServerSpec::nfs("nfs1", "nfs.example.com", vec![servers[0]]);
    let nfs = FileServerId(done(api, api.register_file_server(spec).unwrap()).result.unwrap().id);
    let fss = api.file_systems_of(nfs).unwrap();
    assert_eq!(fss.len(), 1, "{fss:?}");
    let spec = RepositorySpec {
        name: "repo1".into(),
        backing: RepositoryBacking::FileSystem(fss[0].id),
        owner_pool: Some(pool),
        capacity_bytes: 100 << 30,
    };
    let repo = RepositoryId(done(api, api.create_repository(spec).unwrap()).result.unwrap().id);
    done(api, api.present_repository_to(repo, servers.clone()).unwrap());

    let net = NetworkId(
        done(api, api.create_network(NetworkSpec::vm_network("vmnet", "xenbr1")).unwrap()).result.unwrap().id,
    );
    for s in &servers {
        let eth1 = api
            .objects(ObjectKind::Port)
            .unwrap()
            .into_iter()
            .find_map(|o| match o {
                Object::Port(p) if p.server == *s && p.interface == "eth1" => Some(p.id),
                _ => None,
            })
            .unwrap();
        done(api, api.add_network_member(net, NetworkMember::Port(eth1)).unwrap());
    }
    let desired = api.desired_network_config(servers[0]).unwrap();
    let actual = api.server_network_config(servers[0]).unwrap();
    assert_eq!(api.network_drift(servers[0]).unwrap(), Vec::<String>::new());

    let disk = VirtualDiskId(
        done(api, api.create_virtual_disk(repo, "base-disk".into(), 1 << 30, false).unwrap())
            .result
            .unwrap()
            .id,
    );
    let mut config = VmConfig::sized(1024, None, 1, None, 0).unwrap();
    config.disks.push(DiskMapping { slot: 0, target: DiskTarget::VirtualDisk(disk) });
    let template = TemplateId(
        done(api, api.create_template(repo, "base".into(), config, vec![disk]).unwrap()).result.unwrap().id,
    );
    let opts = CloneOptions { pool: Some(pool), ..Default::default() };
    let clone =
        VmId(done(api, api.clone_template(template, "web01".into(), opts).unwrap()).result.unwrap().id);
    done(api, api.add_vnic(clone, Some(net)).unwrap());
    done(api, api.start_vm(clone).unwrap());
    let Object::Vm(running) = api.object(ObjectRef::new(ObjectKind::Vm, clone)).unwrap() else { panic!() };
    let other = servers.iter().copied().find(|s| Some(*s) != running.server).unwrap();
    assert_eq!(api.migration_blockers_with(clone, other, MigrationMode::Cold).unwrap(), Vec::new());
    api.assert_can_migrate(clone, other).unwrap();
    done(api, api.migrate_vm_with(clone, other, MigrateOptions { mode: MigrationMode::Cold }).unwrap());
    let Object::Vm(vm) = api.object(ObjectRef::new(ObjectKind::Vm, clone)).unwrap() else {
        panic!("not a VM")
    };
    let nics: Vec<String> = api.vm_nics(clone).unwrap().into_iter().map(|n| n.1).collect();
    let moved = [format!("web01 moved {}", vm.server == Some(other)), format!("web01 nics {nics:?}")];
    let opts = StopOptions { timeout: Duration::from_secs(10), force_after_timeout: true };
    done(api, api.stop_vm_with(clone, opts).unwrap());
    let edit = ServerEdit { description: Some("rack 4".into()), wol_mac: Some(None), ..Default::default() };
    done(api, api.edit_server(servers[1], edit).unwrap());
    // A bad spec is refused, typed, before any job.
    let spec = NetworkSpec::vm_network("bad", "no such bridge name!");
    assert_eq!(api.create_network(spec).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let how = NetworkApply::default();
    let refused = api.set_addressing(NetworkMember::Port(PortId::new()), Addressing::None, how).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotFound);

    let mut out = Vec::new();
    for kind in [
        ObjectKind::Server,
        ObjectKind::FileServer,
        ObjectKind::FileSystem,
        ObjectKind::Repository,
        ObjectKind::Network,
        ObjectKind::VirtualDisk,
        ObjectKind::Template,
        ObjectKind::Vm,
    ] {
        let mut names: Vec<String> =
            api.objects(kind).unwrap().iter().map(|o| format!("{kind} {}", o.name())).collect();
        names.sort();
        out.extend(names);
    }
    let Object::Vm(vm) = api.object(ObjectRef::new(ObjectKind::Vm, clone)).unwrap() else {
        panic!("not a VM")
    };
    out.push(format!("web01 {:?}", vm.power_state));
    out.extend(moved);
    let Object::Server(edited) = api.object(ObjectRef::new(ObjectKind::Server, servers[1])).unwrap() else {
        panic!("not a server")
    };
    out.push(format!("{} {:?} {:?}", edited.name, edited.description, edited.wol_mac));
    out.push(format!("desired {} actual {}", desired.items().len(), actual.items().len()));
    out.push(format!("plan {:?}", api.policy_plan(pool).unwrap()));
    let ha = api.ha_plan_for(pool, vec![servers[0]]).unwrap();
    out.push(format!("ha {}", serde_json::to_value(&ha).unwrap().as_object().unwrap().len()));
    out.push(format!("sampling {:?}", api.load_sampling().unwrap()));
    out.push(format!("cluster {:?}", api.pool_cluster_status(pool).unwrap()));
    out.push(format!("fingerprint {:?}", api.agent_fingerprint(servers[0]).unwrap()));
    out.push(format!("history {}", api.server_load_history(servers[0], LoadResolution::default()).is_ok()));
    let mut jobs: Vec<String> =
        api.jobs(Default::default()).unwrap().iter().map(|j| format!("{} {}", j.kind, j.state)).collect();
    jobs.sort();
    out.extend(jobs);
    out
}

#[test]
fn the_storage_and_network_rows_give_the_same_results_in_process_and_remote() {
    let local = Manager::open_in_memory().unwrap();
    let here = storage_scenario(&local, &local);
    let f = Fixture::new("storage");
    let there = storage_scenario(&f.connect(), &f.manager);
    assert_eq!(here, there);
    for expected in [
        "Repository repo1",
        "Network vmnet",
        "Template base",
        "Vm web01",
        "web01 Stopped",
        "web01 moved true",
        "web01 nics [\"xenbr1\"]",
    ] {
        assert!(there.iter().any(|l| l == expected), "{expected} missing from {there:?}");
    }
}

#[test]
fn the_same_scenario_gives_the_same_results_in_process_and_remote() {
    let local = Manager::open_in_memory().unwrap();
    let here = scenario(&local);
    let f = Fixture::new("same");
    let remote = f.connect();
    let there = scenario(&remote);
    assert_eq!(here, there);
    assert!(there.contains(&"Vm web01".to_owned()), "{there:?}");
    assert_eq!(remote.manager_id().unwrap(), f.manager.id());
    assert_eq!(remote.protocol_version(), 1);
}

#[test]
fn typed_errors_cross_the_connection() {
    let f = Fixture::new("errors");
    let remote = f.connect();
    let err = remote.find(ObjectKind::Vm, "nope".into()).unwrap_err();
    assert_eq!(err, Error::not_found(ObjectKind::Vm, "nope"));
    let err = remote.start_vm(VmId::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = remote.abort_job(JobId::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn remote_waits_time_out_and_aborts_reach_the_job() {
    let f = Fixture::new("abort");
    let remote = f.connect();
    // Contacting a server takes two seconds: long enough to wait on and abort.
    f.manager.sim().set_delay(crate::driver::sim::SimOp::Connect, Duration::from_secs(2));
    let job = remote.discover_server("sim://slow".into(), DEFAULT_PASSWORD.into()).unwrap();
    let err = remote.wait_job_for(job.id, Some(Duration::from_millis(200))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    remote.abort_job(job.id).unwrap();
    let end = remote.wait_job_for(job.id, LONG).unwrap();
    assert_eq!(end.state, JobState::Aborted, "{end:?}");
    assert!(remote.objects(ObjectKind::Server).unwrap().is_empty());
    let listed = remote.jobs(Default::default()).unwrap();
    assert!(listed.iter().any(|j| j.id == job.id && j.state == JobState::Aborted));
    // Aborting it again is refused, typed.
    assert_eq!(remote.abort_job(job.id).unwrap_err().kind(), ErrorKind::InvalidState);
}

#[test]
fn subscriptions_stream_changes() {
    let f = Fixture::new("feed");
    let remote = f.connect();
    let mut sub = remote.subscribe(None).unwrap();
    let job = done(&remote, remote.create_pool(PoolSpec::new("p")).unwrap());
    let pool = job.result.unwrap();
    let mut seen = false;
    for _ in 0..100 {
        match sub.next_timeout(Duration::from_millis(200)).unwrap() {
            Some(c) if c.object == pool && c.op == ChangeOp::Added => {
                seen = true;
                break;
            }
            _ => {}
        }
    }
    assert!(seen, "the pool's creation was not streamed");
    // Through the trait, from a token: the replay holds the same change.
    let mut replay = remote.subscribe_changes(Some(0)).unwrap();
    let first = replay.next_change(Duration::from_secs(5)).unwrap().unwrap();
    assert!(first.token >= 1);
    drop(sub);
    drop(replay);
    // The service closes both: the connection keeps working.
    assert_eq!(remote.objects(ObjectKind::ServerPool).unwrap().len(), 1);
}

#[test]
fn malformed_and_oversized_frames_are_refused_without_disturbing_others() {
    let f = Fixture::new("bad");
    let good = f.connect();
    let mut bad = f.raw();
    // Not JSON.
    frame::write_frame_blocking(&mut bad, &[0, 0, 0, 3, b'x', b'y', b'z']).unwrap();
    assert!(matches!(
        read(&mut bad),
        ServiceMessage::ProtocolError { id: None, error: Error::InvalidArgument { .. } }
    ));
    // A request for a method that does not exist: answered with its id.
    let unknown = br#"{"type":"request","id":7,"call":{"method":"format_all_disks","args":{}}}"#;
    let mut f1 = (unknown.len() as u32).to_be_bytes().to_vec();
    f1.extend_from_slice(unknown);
    frame::write_frame_blocking(&mut bad, &f1).unwrap();
    assert!(matches!(read(&mut bad), ServiceMessage::ProtocolError { id: Some(7), .. }));
    // The connection still serves.
    let req = ClientMessage::Request { id: 8, call: Box::new(Call::current_token {}) };
    frame::write_frame_blocking(&mut bad, &frame::encode(&req).unwrap()).unwrap();
    assert!(matches!(read(&mut bad), ServiceMessage::Response { id: 8, result: Ok(_) }));
    // Oversized: refused before the body is read, and that connection is closed.
    bad.write_all(&((frame::MAX_FRAME + 1) as u32).to_be_bytes()).unwrap();
    match read(&mut bad) {
        ServiceMessage::ProtocolError { id: None, error: Error::InvalidArgument { field, .. } } => {
            assert_eq!(field, "frame")
        }
        other => panic!("{other:?}"),
    }
    let mut rest = Vec::new();
    assert_eq!(bad.read_to_end(&mut rest).unwrap(), 0);
    // The other client never noticed.
    done(&good, good.create_pool(PoolSpec::new("still-here")).unwrap());
    assert_eq!(good.objects(ObjectKind::ServerPool).unwrap().len(), 1);
}

#[test]
fn a_client_must_say_hello_first_in_a_version_both_speak() {
    let f = Fixture::new("hello");
    let mut s = UnixStream::connect(f.service.path()).unwrap();
    let req = ClientMessage::Request { id: 1, call: Box::new(Call::current_token {}) };
    frame::write_frame_blocking(&mut s, &frame::encode(&req).unwrap()).unwrap();
    assert!(matches!(read(&mut s), ServiceMessage::Refused { error: Error::InvalidArgument { .. } }));
    let mut s = UnixStream::connect(f.service.path()).unwrap();
    let hello =
        ClientMessage::Hello { min_version: 9, max_version: 12, client: "future".into(), credentials: None };
    frame::write_frame_blocking(&mut s, &frame::encode(&hello).unwrap()).unwrap();
    assert!(matches!(read(&mut s), ServiceMessage::Refused { error: Error::Unsupported { .. } }));
}

#[test]
fn the_socket_is_private_and_clients_are_known_by_their_credentials() {
    let f = Fixture::new("creds");
    let mode = std::fs::metadata(f.service.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let remote = f.connect();
    remote.current_token().unwrap();
    let clients = f.service.clients();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].peer.pid, std::process::id());
    // SAFETY: getuid has no preconditions and cannot fail.
    assert_eq!(clients[0].peer.uid, unsafe { libc::getuid() });
    assert!(clients[0].client.starts_with("ovm "), "{:?}", clients[0].client);
    // A second service on the same socket is refused while the first listens.
    let second = Service::bind(Arc::new(f.manager.clone()), f.service.path(), ServiceOptions::default());
    assert_eq!(second.unwrap_err().kind(), ErrorKind::Conflict);
}

#[test]
fn a_closed_service_is_a_closed_manager_to_its_clients() {
    let f = Fixture::new("closed");
    let remote = f.connect();
    remote.current_token().unwrap();
    f.service.shutdown();
    assert!(!f.service.path().exists());
    let mut err = None;
    for _ in 0..50 {
        match remote.current_token() {
            Err(e) => {
                err = Some(e);
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::Closed));
}

#[test]
fn garbage_frames_get_typed_answers_and_the_service_keeps_serving() {
    let f = Fixture::new("garbage");
    let good = f.connect();
    let mut bad = f.raw();
    // A fixed pseudo-random sequence (xorshift), so a failure replays.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: [&[u8]; 6] =
        [br#"{"type":"request","id":"#, br#""call":{"method":"#, br#""objects""#, b"{", b"}", b"\xff\x00"];
    for round in 0..200 {
        let mut body = Vec::new();
        for _ in 0..(next() % 6) {
            let p = next();
            if p % 3 == 0 {
                body.extend_from_slice(pieces[(p / 3 % 6) as usize]);
            } else {
                body.push((p >> 8) as u8);
            }
        }
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame::write_frame_blocking(&mut bad, &frame).unwrap();
        match read(&mut bad) {
            ServiceMessage::ProtocolError { .. } | ServiceMessage::Response { .. } => {}
            other => panic!("round {round}: {other:?}"),
        }
    }
    assert_eq!(good.objects(ObjectKind::Server).unwrap().len(), 0);
    done(&good, good.create_pool(PoolSpec::new("after-garbage")).unwrap());
}
