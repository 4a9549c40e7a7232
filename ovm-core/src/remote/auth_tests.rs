//! Users, roles and the audit log through a service.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::driver::sim::DEFAULT_PASSWORD;
use crate::manager::VmSpec;
use crate::model::*;
use crate::{ErrorKind, Manager};

const LONG: Option<Duration> = Some(Duration::from_secs(60));

use super::tests::Fixture;

/// A service for the tests of accounts: `trust_local_peers` off makes this process a stranger
/// that must log in.
fn fixture(tag: &str, trust_local_peers: bool) -> Fixture {
    Fixture::with_options(
        &format!("auth-{tag}"),
        ServiceOptions { trust_local_peers, ..ServiceOptions::default() },
    )
}

impl Fixture {
    fn login(&self, user: &str, password: &str) -> crate::Result<RemoteManager> {
        Manager::connect_with(&self.uri(), Credentials::new(user, password))
    }

    /// A server and a stopped VM on it.
    fn vm(&self) -> VmId {
        let m = &self.manager;
        let job = m.discover_server("sim://a?cpus=8&memory_mib=16384", DEFAULT_PASSWORD).unwrap();
        let server = ServerId(job.wait(LONG).unwrap().result.unwrap().id);
        let mut spec = VmSpec::new("v", VmConfig::default());
        spec.server = Some(server);
        VmId(m.create_vm(spec).unwrap().wait(LONG).unwrap().result.unwrap().id)
    }
}

fn refusals(m: &Manager, user: &str) -> Vec<AuditEntry> {
    let f = AuditFilter { user: Some(user.into()), refused_only: true, ..Default::default() };
    m.audit_log(&f).unwrap()
}

#[test]
fn a_wrong_password_is_refused_and_audited() {
    let f = fixture("wrong", false);
    f.manager.create_user("alice", Role::Operator, Some("alice-password"), vec![]).unwrap();
    let e = f.login("alice", "not-her-password").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let e2 = f.login("mallory", "alice-password").unwrap_err();
    assert_eq!(e2.kind(), ErrorKind::PermissionDenied);
    assert_eq!(e.to_string(), e2.to_string(), "an unknown user and a wrong password look the same");
    // Without credentials, a peer that is not trusted is refused too.
    let e3 = Manager::connect(&f.uri()).unwrap_err();
    assert_eq!(e3.kind(), ErrorKind::PermissionDenied);

    let refused = refusals(&f.manager, "alice");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].method, "hello");
    assert!(refused[0].peer.starts_with("unix:pid="));
    assert!(!format!("{refused:?}").contains("not-her-password"), "no password in the audit log");
    assert_eq!(refusals(&f.manager, "mallory").len(), 1);
    // The right password gets in; the refusals disturbed nothing.
    let alice = f.login("alice", "alice-password").unwrap();
    assert_eq!(alice.manager_id().unwrap(), f.manager.id());
    assert_eq!(f.service.clients().iter().filter(|c| c.user == "alice").count(), 1);
}

#[test]
fn a_read_only_user_lists_but_cannot_start_a_vm() {
    let f = fixture("ro", true);
    let vm = f.vm();
    f.manager.create_user("reader", Role::ReadOnly, Some("reader-password"), vec![]).unwrap();
    let r = f.login("reader", "reader-password").unwrap();
    assert_eq!(r.objects(ObjectKind::Vm).unwrap().len(), 1);
    assert!(!r.jobs(Default::default()).unwrap().is_empty());
    let e = r.start_vm(vm).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert_eq!(r.users().unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert_eq!(f.manager.vm(vm).unwrap().power_state, PowerState::Stopped, "nothing started");
    let refused = refusals(&f.manager, "reader");
    assert_eq!(refused.iter().map(|e| e.method.as_str()).collect::<Vec<_>>(), ["users", "start_vm"]);
    assert!(refused[1].summary.contains(&vm.0.to_string()));
    // Reads are not audited.
    let all =
        f.manager.audit_log(&AuditFilter { user: Some("reader".into()), ..Default::default() }).unwrap();
    assert_eq!(all.len(), 2);
    // The connection still serves after the refusals.
    assert_eq!(r.objects(ObjectKind::Vm).unwrap().len(), 1);
}

#[test]
fn an_operator_runs_vms_but_cannot_manage_users_and_every_change_is_audited_with_its_user() {
    let f = fixture("op", true);
    let vm = f.vm();
    let admin = Manager::connect(&f.uri()).unwrap();
    // The service's own user, without credentials, is the local superuser.
    let local = f.service.clients()[0].user.clone();
    assert!(local.starts_with("local:"), "{local}");
    admin.create_user("op".into(), Role::Operator, Some("operator-password".into()), vec![]).unwrap();
    admin.create_user("boss".into(), Role::Administrator, Some("boss-password1".into()), vec![]).unwrap();
    let op = f.login("op", "operator-password").unwrap();
    let job = op.start_vm(vm).unwrap();
    assert_eq!(op.wait_job_for(job.id, LONG).unwrap().state, JobState::Completed);
    let e =
        op.create_user("eve".into(), Role::Administrator, Some("eve-password".into()), vec![]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        op.set_user_role("op".into(), Role::Administrator).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(op.audit_log(AuditFilter::default()).unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert!(f.manager.users().unwrap().iter().all(|u| u.name != "eve"));
    let boss = f.login("boss", "boss-password1").unwrap();
    boss.set_user_role("op".into(), Role::ReadOnly).unwrap();
    let failed = boss.delete_user("nobody".into()).unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::InvalidArgument);

    let log = boss.audit_log(AuditFilter::default()).unwrap();
    let seen: Vec<(&str, &str, bool)> = log
        .iter()
        .rev()
        .map(|e| (e.user.as_str(), e.method.as_str(), matches!(e.outcome, AuditOutcome::Ok)))
        .collect();
    assert_eq!(
        seen,
        [
            (local.as_str(), "create_user", true),
            (local.as_str(), "create_user", true),
            ("op", "start_vm", true),
            ("op", "create_user", false),
            ("op", "set_user_role", false),
            ("op", "audit_log", false),
            ("boss", "set_user_role", true),
            ("boss", "delete_user", false),
        ]
    );
    assert!(matches!(log[0].outcome, AuditOutcome::Failed { .. }));
    assert!(log.windows(2).all(|w| w[0].id > w[1].id && w[0].at >= w[1].at), "newest first");
    let text = format!("{log:?}");
    for secret in ["operator-password", "boss-password1", "eve-password"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    // The role change holds for new connections.
    let op = f.login("op", "operator-password").unwrap();
    assert_eq!(op.stop_vm(vm).unwrap_err().kind(), ErrorKind::PermissionDenied);
}

#[test]
fn an_authenticated_client_sending_garbage_does_not_disturb_others() {
    use super::proto::{ClientMessage, ServiceMessage};
    use crate::agent::proto::frame;
    use std::io::Write;
    let f = fixture("garbage", false);
    f.manager.create_user("u1", Role::ReadOnly, Some("u1-password"), vec![]).unwrap();
    let other = f.login("u1", "u1-password").unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(f.service.path()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let hello = ClientMessage::Hello {
        min_version: 1,
        max_version: 1,
        client: "raw".into(),
        credentials: Some(Credentials::new("u1", "u1-password")),
    };
    frame::write_frame_blocking(&mut s, &frame::encode(&hello).unwrap()).unwrap();
    let mut buf = Vec::new();
    frame::read_frame_blocking(&mut s, &mut buf).unwrap();
    assert!(matches!(frame::decode::<ServiceMessage>(&buf).unwrap(), ServiceMessage::Welcome { .. }));
    s.write_all(&[0, 0, 0, 3, b'{', b'x', b'}']).unwrap();
    frame::read_frame_blocking(&mut s, &mut buf).unwrap();
    assert!(matches!(frame::decode::<ServiceMessage>(&buf).unwrap(), ServiceMessage::ProtocolError { .. }));
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    frame::read_frame_blocking(&mut s, &mut buf).unwrap();
    assert!(matches!(frame::decode::<ServiceMessage>(&buf).unwrap(), ServiceMessage::ProtocolError { .. }));
    assert_eq!(other.manager_id().unwrap(), f.manager.id());
}

#[test]
fn over_tls_a_registered_certificate_or_a_password_gets_in_and_nothing_else_does() {
    use crate::agent::tls::Identity;
    let dir = std::env::temp_dir().join(format!("ovm-auth-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let manager = Manager::open_in_memory().unwrap();
    let server_id = Identity::generate("ovm-service").unwrap();
    let listen = TlsListen { address: "127.0.0.1:0".into(), identity: server_id.clone() };
    let opts = ServiceOptions { tls: Some(listen), ..ServiceOptions::default() };
    let service = Service::bind(Arc::new(manager.clone()), dir.join("m.sock"), opts).unwrap();
    let uri = format!("ovm+tls://{}", service.tls_address().unwrap());
    let pin = server_id.fingerprint().unwrap();

    let registered = Identity::generate("op-laptop").unwrap();
    let stranger = Identity::generate("stranger").unwrap();
    manager.create_user("op", Role::Operator, None, vec![registered.fingerprint().unwrap()]).unwrap();
    manager.create_user("reader", Role::ReadOnly, Some("reader-password"), vec![]).unwrap();

    // A registered certificate logs in as its user, with its role.
    let with_cert = TlsClient { pin: pin.clone(), identity: Some(registered) };
    let op = RemoteManager::connect_tls(&uri, &with_cert, None).unwrap();
    let job = op.create_pool(crate::manager::PoolSpec::new("p")).unwrap();
    assert_eq!(op.wait_job_for(job.id, LONG).unwrap().state, JobState::Completed);
    assert_eq!(op.users().unwrap_err().kind(), ErrorKind::PermissionDenied);
    assert!(service.clients().iter().any(|c| c.user == "op" && c.address.starts_with("tls:127.0.0.1:")));

    // A certificate nobody registered, or none, is refused; so is being the service's own user.
    let with_stranger = TlsClient { pin: pin.clone(), identity: Some(stranger) };
    let e = RemoteManager::connect_tls(&uri, &with_stranger, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let bare = TlsClient { pin: pin.clone(), identity: None };
    assert_eq!(
        RemoteManager::connect_tls(&uri, &bare, None).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    // A password works over TLS; a wrong one does not.
    let reader =
        RemoteManager::connect_tls(&uri, &bare, Some(Credentials::new("reader", "reader-password"))).unwrap();
    assert_eq!(reader.objects(ObjectKind::ServerPool).unwrap().len(), 1);
    let wrong = RemoteManager::connect_tls(&uri, &bare, Some(Credentials::new("reader", "wrong-password")));
    assert_eq!(wrong.unwrap_err().kind(), ErrorKind::PermissionDenied);
    // A service whose certificate is not the pinned one is refused by the client.
    let other_pin = Identity::generate("other").unwrap().fingerprint().unwrap();
    let mispinned = TlsClient { pin: other_pin, identity: None };
    let e = RemoteManager::connect_tls(&uri, &mispinned, Some(Credentials::new("reader", "reader-password")));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::PermissionDenied);
    // A TLS address needs a pin.
    assert_eq!(Manager::connect(&uri).unwrap_err().kind(), ErrorKind::InvalidArgument);

    let refused = manager.audit_log(&AuditFilter { refused_only: true, ..Default::default() }).unwrap();
    // The stranger's certificate, no certificate, the wrong password (the mispinned client never
    // reached the service), and the operator's call above its role.
    let seen: Vec<(&str, &str)> =
        refused.iter().rev().map(|e| (e.user.as_str(), e.method.as_str())).collect();
    let stranger = format!("certificate:{}", with_stranger.identity.as_ref().unwrap().fingerprint().unwrap());
    assert_eq!(
        seen,
        [("op", "users"), (stranger.as_str(), "hello"), ("anonymous", "hello"), ("reader", "hello")]
    );
    assert!(refused.iter().all(|e| e.peer.starts_with("tls:127.0.0.1:")));
    let ok = manager.audit_log(&AuditFilter { user: Some("op".into()), ..Default::default() }).unwrap();
    assert_eq!(ok.len(), 2, "create_pool and the refused users call: {ok:?}");
    drop((op, reader));
    service.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
