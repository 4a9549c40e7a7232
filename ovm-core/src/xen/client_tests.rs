//! Hermetic tests of the xenstore client against the in-process fake daemon.

use std::time::Duration;

use super::blocking::BlockingXsClient;
use super::client::{XsClient, XsConfig};
use super::error::{XenError, XsErrno};
use super::fake::FakeXenstored;
use super::perms::{Access, Perms};
use super::transport::{Transport, XenbusDevice};
use super::wire::{self, Header, Message, MsgType};

async fn client_for(fake: &FakeXenstored) -> XsClient {
    client_with(fake, XsConfig::default()).await
}

async fn client_with(fake: &FakeXenstored, config: XsConfig) -> XsClient {
    XsClient::connect(Transport::Socket(fake.socket()), config).await.expect("connect to fake")
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test]
async fn read_write_directory_rm() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    assert_eq!(c.read_string("/local/domain/0/name").await.unwrap(), "Domain-0");
    c.write("/test/a/b", "hello").await.unwrap();
    c.write("/test/a/c", b"\x01\x02".as_slice()).await.unwrap();
    assert_eq!(fake.value("/test/a/b").unwrap(), b"hello");
    assert_eq!(c.read("/test/a/c").await.unwrap(), vec![1, 2]);
    let mut dir = c.directory("/test/a").await.unwrap();
    dir.sort();
    assert_eq!(dir, vec!["b", "c"]);
    c.mkdir("/test/empty").await.unwrap();
    assert_eq!(c.read("/test/empty").await.unwrap(), Vec::<u8>::new());
    assert!(c.directory("/test/empty").await.unwrap().is_empty());
    c.rm("/test/a").await.unwrap();
    let e = c.read("/test/a/b").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        matches!(e, XenError::Xenstore { op: "READ", ref path, errno: XsErrno::Enoent } if path == "/test/a/b")
    );
    assert_eq!(c.try_read_string("/test/a/b").await.unwrap(), None);
    // rm of a missing node whose parent exists is fine; without parent it is ENOENT.
    c.rm("/test/nothing").await.unwrap();
    assert!(c.rm("/nope/nothing").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn permissions_and_domain_requests() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    c.write("/perm/x", "1").await.unwrap();
    let p = Perms::owned_by(0, Access::None).grant(5, Access::Read).grant(6, Access::Both);
    c.set_perms("/perm/x", &p).await.unwrap();
    assert_eq!(c.get_perms("/perm/x").await.unwrap(), p);
    assert!(c.get_perms("/perm/missing").await.unwrap_err().is_not_found());
    assert_eq!(c.get_domain_path(7).await.unwrap(), "/local/domain/7");
    assert!(c.is_domain_introduced(0).await.unwrap());
    assert!(!c.is_domain_introduced(9).await.unwrap());
    let mut intro = c.watch("@introduceDomain").await.unwrap();
    let mut rel = c.watch("@releaseDomain").await.unwrap();
    assert_eq!(within("initial", intro.next()).await.unwrap().path, "@introduceDomain");
    assert_eq!(within("initial", rel.next()).await.unwrap().path, "@releaseDomain");
    c.introduce_domain(3, 0xfeffc, 1).await.unwrap();
    assert_eq!(within("introduce", intro.next()).await.unwrap().path, "@introduceDomain");
    c.release_domain(3).await.unwrap();
    assert_eq!(within("release", rel.next()).await.unwrap().path, "@releaseDomain");
    fake.fire_special("@releaseDomain");
    assert_eq!(within("spontaneous release", rel.next()).await.unwrap().path, "@releaseDomain");
    assert!(intro.try_next().is_none());
    // CONTROL is not implemented by the fake: a typed ENOSYS.
    let e = c.raw_request(MsgType::Control, 0, wire::nul_strings(&["print", "x"])).await.unwrap_err();
    assert_eq!(e.xs_errno(), Some(&XsErrno::Enosys));
    assert!(c.raw_request(MsgType::Error, 0, Vec::new()).await.is_err());
}

#[tokio::test]
async fn request_limits_are_checked_locally() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    let before = fake.requests().len();
    let big = vec![b'x'; wire::PAYLOAD_MAX];
    assert!(matches!(c.write("/big", &big).await, Err(XenError::TooLarge { .. })));
    assert!(matches!(c.read("").await, Err(XenError::InvalidArgument(_))));
    assert!(matches!(c.read("/a\0b").await, Err(XenError::InvalidArgument(_))));
    assert_eq!(fake.requests().len(), before, "nothing was sent");
    // The largest legal write goes through.
    let fit = vec![b'y'; wire::PAYLOAD_MAX - "/big".len() - 1];
    c.write("/big", &fit).await.unwrap();
    assert_eq!(c.read("/big").await.unwrap(), fit);
}

#[tokio::test]
async fn pipelined_requests_with_out_of_order_replies() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    for i in 0..8 {
        c.write(&format!("/pipe/{i}"), format!("value-{i}")).await.unwrap();
    }
    fake.with_behaviour(|b| b.reorder_batch = 8);
    // Eight reads in flight at once; the fake answers them in reverse order.
    let futs: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { (i, c.read_string(&format!("/pipe/{i}")).await) })
        })
        .collect();
    for f in futs {
        let (i, v) = within("pipelined read", f).await.unwrap();
        assert_eq!(v.unwrap(), format!("value-{i}"));
    }
    let reads = fake.requests().iter().filter(|(t, _)| *t == MsgType::Read).count();
    assert_eq!(reads, 8);
}

#[tokio::test]
async fn in_flight_limit_serialises_requests() {
    let fake = FakeXenstored::start();
    let config = XsConfig {
        max_in_flight: Some(1),
        request_timeout: Some(Duration::from_millis(400)),
        ..XsConfig::default()
    };
    let c = client_with(&fake, config).await;
    let before = fake.requests().len();
    // The fake holds replies until two requests have arrived: with one
    // request in flight the second is not sent until the first gives up.
    fake.with_behaviour(|b| b.reorder_batch = 2);
    let (a, b) = (c.clone(), c.clone());
    let first = tokio::spawn(async move { a.read_string("/local/domain/0/name").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn(async move { b.read_string("/local/domain/0/name").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(fake.requests().len() - before, 1, "second request held back");
    assert!(matches!(first.await.unwrap(), Err(XenError::Timeout(_))));
    // Now the second goes out, fills the batch, and gets its reply.
    assert_eq!(second.await.unwrap().unwrap(), "Domain-0");
    assert_eq!(fake.requests().len() - before, 2);
}

#[tokio::test]
async fn transaction_retries_on_eagain_and_wins() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    c.write("/counter", "0").await.unwrap();
    let mut attempt = 0;
    let fake_ref = &fake;
    let v = c
        .transaction(|tx| {
            attempt += 1;
            let first = attempt == 1;
            async move {
                let n: u32 = tx.read_string("/counter").await?.parse().unwrap();
                if first {
                    // A competing writer commits between our read and our commit.
                    fake_ref.external_write("/counter", b"10");
                }
                tx.write("/counter", (n + 1).to_string()).await?;
                Ok(n + 1)
            }
        })
        .await
        .unwrap();
    assert_eq!(attempt, 2, "first attempt conflicted, second won");
    assert_eq!(v, 11);
    assert_eq!(c.read_string("/counter").await.unwrap(), "11");
    // The transaction's writes used its id; the commits were TRANSACTION_END.
    let reqs = fake.requests();
    assert!(reqs.iter().any(|(t, tx)| *t == MsgType::Write && *tx != 0));
    assert_eq!(reqs.iter().filter(|(t, _)| *t == MsgType::TransactionEnd).count(), 2);
}

#[tokio::test]
async fn transaction_gives_up_after_max_attempts_and_aborts_on_error() {
    let fake = FakeXenstored::start();
    let c = client_with(&fake, XsConfig { max_transaction_attempts: 3, ..XsConfig::default() }).await;
    fake.with_behaviour(|b| b.forced_eagain_commits = 2);
    c.transaction(|tx| async move { tx.write("/t/x", "1").await }).await.unwrap();
    assert_eq!(c.read_string("/t/x").await.unwrap(), "1");
    fake.with_behaviour(|b| b.forced_eagain_commits = 5);
    let e = c.transaction(|tx| async move { tx.write("/t/y", "1").await }).await.unwrap_err();
    assert!(matches!(e, XenError::TransactionConflict { attempts: 3 }), "{e}");
    assert!(c.read("/t/y").await.unwrap_err().is_not_found());
    // A non-EAGAIN error aborts and is returned without retry; nothing leaks.
    fake.with_behaviour(|b| b.forced_eagain_commits = 0);
    let e = c
        .transaction(|tx| async move {
            tx.write("/t/z", "1").await?;
            tx.read_string("/t/missing").await
        })
        .await
        .unwrap_err();
    assert!(e.is_not_found());
    assert!(c.read("/t/z").await.unwrap_err().is_not_found(), "aborted transaction left no trace");
    // Manual transactions see a snapshot.
    let tx = c.transaction_start().await.unwrap();
    c.write("/t/x", "2").await.unwrap();
    assert_eq!(tx.read_string("/t/x").await.unwrap(), "1");
    assert_ne!(tx.id(), 0);
    assert!(tx.commit().await.unwrap_err().is_eagain(), "conflicting commit is refused");
}

#[tokio::test]
async fn watches_fire_and_unwatch_on_drop() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    let mut w = c.watch("/w").await.unwrap();
    let first = within("initial event", w.next()).await.unwrap();
    assert_eq!(first.path, "/w");
    assert_eq!(first.token, w.token());
    c.write("/w/child", "x").await.unwrap();
    assert_eq!(within("child event", w.next()).await.unwrap().path, "/w/child");
    fake.external_write("/w", b"y");
    assert_eq!(within("external event", w.next()).await.unwrap().path, "/w");
    // Writes elsewhere do not fire.
    c.write("/other", "1").await.unwrap();
    c.write("/w2", "1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(w.try_next().is_none());
    // Duplicate tokens are refused.
    let tok = w.token().to_string();
    assert!(matches!(c.watch_with_token("/x", &tok).await, Err(XenError::InvalidArgument(_))));
    assert_eq!(fake.watch_count(), 1);
    drop(w);
    for _ in 0..100 {
        if fake.watch_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.watch_count(), 0, "dropping the stream sent UNWATCH");
    let w2 = c.watch("/w").await.unwrap();
    w2.unwatch().await.unwrap();
    assert_eq!(fake.watch_count(), 0);
    // RESET_WATCHES drops them on both sides; the streams end.
    let mut w3 = c.watch("/w").await.unwrap();
    assert_eq!(within("initial", w3.next()).await.unwrap().path, "/w");
    assert_eq!(fake.watch_count(), 1);
    c.reset_watches().await.unwrap();
    assert_eq!(fake.watch_count(), 0);
    assert_eq!(within("stream end", w3.next()).await, None);
}

#[tokio::test]
async fn reconnect_rearms_watches_and_fails_pending() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    let mut w = c.watch("/re").await.unwrap();
    within("initial", w.next()).await.unwrap();
    // A request that never gets its reply: the fake holds replies in batches of 2.
    fake.with_behaviour(|b| b.reorder_batch = 2);
    let c2 = c.clone();
    let stuck = tokio::spawn(async move { c2.read_string("/local/domain/0/name").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.with_behaviour(|b| b.reorder_batch = 0);
    fake.drop_connections();
    let e = within("pending fails", stuck).await.unwrap().unwrap_err();
    assert!(matches!(e, XenError::Disconnected), "{e}");
    // The background re-arm reconnects and re-registers the watch; the new
    // registration fires once.
    let ev = within("re-armed initial event", w.next()).await.unwrap();
    assert_eq!(ev.path, "/re");
    assert_eq!(c.reconnect_count(), 1);
    assert_eq!(fake.watch_count(), 1);
    fake.external_write("/re/after", b"1");
    assert_eq!(within("event after reconnect", w.next()).await.unwrap().path, "/re/after");
    assert_eq!(c.read_string("/local/domain/0/name").await.unwrap(), "Domain-0");
}

#[tokio::test]
async fn no_auto_reconnect_reports_disconnected() {
    let fake = FakeXenstored::start();
    let c = client_with(&fake, XsConfig { auto_reconnect: false, ..XsConfig::default() }).await;
    c.read("/local/domain/0/name").await.unwrap();
    fake.drop_connections();
    for _ in 0..100 {
        if !c.is_connected().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(c.read("/local/domain/0/name").await, Err(XenError::Disconnected)));
}

fn raw(ty: u32, req_id: u32, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [ty, req_id, 0, len] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(payload);
    v
}

#[tokio::test]
async fn hostile_replies_give_typed_errors_not_panics() {
    let fake = FakeXenstored::start();
    let c = client_with(
        &fake,
        XsConfig { request_timeout: Some(Duration::from_millis(300)), ..XsConfig::default() },
    )
    .await;
    // Request ids start at 1 and increase by one per request (across
    // reconnects); the hostile replies below carry the ids of their requests.
    // 1. Unknown message type: framing is lost, the connection is dropped.
    fake.with_behaviour(|b| b.hostile.push_back(raw(99, 1, 0, b"")));
    let e = c.read("/local/domain/0/name").await.unwrap_err();
    assert!(matches!(e, XenError::Protocol(ref m) if m.contains("unknown message type 99")), "{e}");
    // The client reconnects for the next request.
    assert_eq!(c.read_string("/local/domain/0/name").await.unwrap(), "Domain-0");
    assert_eq!(c.reconnect_count(), 1);
    // 2. Over-long payload length.
    fake.with_behaviour(|b| b.hostile.push_back(raw(2, 3, 100_000, b"")));
    assert!(matches!(c.read("/local/domain/0/name").await, Err(XenError::Protocol(_))));
    // 3. Reply of the wrong type for its request id.
    fake.with_behaviour(|b| b.hostile.push_back(raw(MsgType::Directory as u32, 4, 3, b"a\0\0")));
    let e = c.read("/local/domain/0/name").await.unwrap_err();
    assert!(matches!(e, XenError::Protocol(ref m) if m.contains("has type DIRECTORY")), "{e}");
    // 4. Value that is not UTF-8.
    fake.with_behaviour(|b| b.hostile.push_back(raw(MsgType::Read as u32, 5, 2, b"\xff\xfe")));
    assert!(matches!(c.read_string("/local/domain/0/name").await, Err(XenError::Protocol(_))));
    // 5. A reply with a request id nobody asked for: dropped; the request times out.
    fake.with_behaviour(|b| b.hostile.push_back(raw(MsgType::Read as u32, 4242, 1, b"x")));
    assert!(matches!(c.read("/local/domain/0/name").await, Err(XenError::Timeout(_))));
    // 6. An unknown error name is kept, not rejected.
    fake.with_behaviour(|b| b.hostile.push_back(raw(MsgType::Error as u32, 7, 8, b"EWEIRD\0\0")));
    let e = c.read("/local/domain/0/name").await.unwrap_err();
    assert_eq!(e.xs_errno(), Some(&XsErrno::Other("EWEIRD".into())));
    // 7. Malformed watch event, then the real reply: the event is dropped.
    let mut w = c.watch("/hw").await.unwrap();
    within("initial", w.next()).await.unwrap();
    let mut burst = raw(MsgType::WatchEvent as u32, 0, 3, b"\xff\0x");
    let reply = Message::new(MsgType::Read, 9, 0, b"Domain-0".to_vec()).unwrap().encode();
    burst.extend_from_slice(&reply);
    fake.with_behaviour(|b| b.hostile.push_back(burst));
    assert_eq!(c.read_string("/local/domain/0/name").await.unwrap(), "Domain-0");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(w.try_next().is_none());
    // 8. Garbage transaction id.
    fake.with_behaviour(|b| b.hostile.push_back(raw(MsgType::TransactionStart as u32, 10, 4, b"abc\0")));
    assert!(matches!(c.transaction_start().await, Err(XenError::Protocol(_))));
    // Still usable afterwards.
    assert_eq!(c.read_string("/local/domain/0/name").await.unwrap(), "Domain-0");
}

#[tokio::test]
async fn large_directory_uses_directory_part() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    let names: Vec<String> = (0..40).map(|i| format!("entry-number-{i:03}")).collect();
    for n in &names {
        c.write(&format!("/big/{n}"), "").await.unwrap();
    }
    fake.with_behaviour(|b| b.dir_part_limit = 100);
    let mut got = c.directory("/big").await.unwrap();
    got.sort();
    assert_eq!(got, names);
    assert!(fake.requests().iter().filter(|(t, _)| *t == MsgType::DirectoryPart).count() > 3);
}

#[tokio::test]
async fn xenbus_device_wrapper_speaks_the_protocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeXenstored::start();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    fake.serve_stream(tokio::net::UnixStream::from_std(theirs).unwrap());
    let mut dev = XenbusDevice::new(ours.into()).unwrap();
    let req = Message::new(MsgType::Read, 77, 0, wire::nul_strings(&["/local/domain/0/name"])).unwrap();
    dev.write_all(&req.encode()).await.unwrap();
    let mut hdr = [0u8; wire::HEADER_LEN];
    within("header", dev.read_exact(&mut hdr)).await.unwrap();
    let h = Header::decode(&hdr).unwrap();
    assert_eq!((h.ty, h.req_id), (MsgType::Read, 77));
    let mut body = vec![0u8; h.len as usize];
    dev.read_exact(&mut body).await.unwrap();
    assert_eq!(body, b"Domain-0");
}

#[test]
fn blocking_facade_works_without_a_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = {
        let _g = rt.enter();
        FakeXenstored::start()
    };
    let c = BlockingXsClient::connect(Transport::Socket(fake.socket()), XsConfig::default()).unwrap();
    assert_eq!(c.read_string("/local/domain/0/name").unwrap(), "Domain-0");
    c.write("/b/x", "1").unwrap();
    assert_eq!(c.directory("/b").unwrap(), vec!["x"]);
    let mut w = c.watch("/b").unwrap();
    assert_eq!(w.next_timeout(Duration::from_secs(5)).unwrap().path, "/b");
    let mut tries = 0;
    c.transaction(|tx| {
        tries += 1;
        let v: u32 = tx.read_string("/b/x")?.parse().unwrap();
        if tries == 1 {
            fake.external_write("/b/x", b"5");
        }
        tx.write("/b/x", (v + 1).to_string())
    })
    .unwrap();
    assert_eq!(tries, 2);
    assert_eq!(c.read_string("/b/x").unwrap(), "6");
    assert_eq!(w.next_timeout(Duration::from_secs(5)).unwrap().path, "/b/x");
    c.rm("/b").unwrap();
    assert_eq!(c.try_read_string("/b/x").unwrap(), None);
    drop(w);
    drop(c);
    drop(fake);
}

fn fake_outside_runtime() -> (tokio::runtime::Runtime, FakeXenstored) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = {
        let _g = rt.enter();
        FakeXenstored::start()
    };
    (rt, fake)
}

#[test]
fn blocking_queues_watch_events_read_with_replies() {
    let (_rt, fake) = fake_outside_runtime();
    let c = BlockingXsClient::connect(Transport::Socket(fake.socket()), XsConfig::default()).unwrap();
    let mut w = c.watch("/q").unwrap();
    let mut other = c.watch("/elsewhere").unwrap();
    // The fake sends each event before the reply of the write that fires it:
    // they are read while waiting for the replies, and queued.
    for i in 0..5 {
        c.write(&format!("/q/{i}"), "x").unwrap();
    }
    let mut got = Vec::new();
    while let Some(ev) = w.try_next() {
        got.push(ev.path);
    }
    assert_eq!(got, ["/q", "/q/0", "/q/1", "/q/2", "/q/3", "/q/4"]);
    assert_eq!(other.try_next().unwrap().path, "/elsewhere");
    assert!(other.try_next().is_none());
    assert!(w.next_timeout(Duration::from_millis(50)).is_none());
    // Events that arrive while nobody makes a request are read by the watch.
    fake.external_write("/q/ext", b"1");
    assert_eq!(w.next_timeout(Duration::from_secs(5)).unwrap().path, "/q/ext");
    drop(other);
    assert_eq!(fake.watch_count(), 1);
    drop(w);
    assert_eq!(fake.watch_count(), 0);
}

#[test]
fn blocking_client_shared_by_threads_with_a_watcher() {
    let (_rt, fake) = fake_outside_runtime();
    let c = std::sync::Arc::new(
        BlockingXsClient::connect(Transport::Socket(fake.socket()), XsConfig::default()).unwrap(),
    );
    for i in 0..8 {
        c.write(&format!("/mt/{i}"), format!("v{i}")).unwrap();
    }
    let mut w = c.watch("/mt-watch").unwrap();
    // Replies held until all eight threads have a request in flight, then
    // sent in reverse order.
    fake.with_behaviour(|b| b.reorder_batch = 8);
    std::thread::scope(|s| {
        // A watcher waits (and reads the connection) while the others make
        // requests whose replies come back out of order.
        let watcher = s.spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 4 {
                match w.next_timeout(Duration::from_secs(10)) {
                    Some(ev) => seen.push(ev.path),
                    None => break,
                }
            }
            seen
        });
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    for _ in 0..50 {
                        assert_eq!(c.read_string(&format!("/mt/{i}")).unwrap(), format!("v{i}"));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        fake.with_behaviour(|b| b.reorder_batch = 0);
        for k in 0..3 {
            c.write(&format!("/mt-watch/{k}"), "1").unwrap();
        }
        let seen = watcher.join().unwrap();
        assert_eq!(seen, ["/mt-watch", "/mt-watch/0", "/mt-watch/1", "/mt-watch/2"]);
    });
}

#[test]
fn blocking_client_reconnects_and_rearms_watches() {
    let (_rt, fake) = fake_outside_runtime();
    let c = BlockingXsClient::connect(Transport::Socket(fake.socket()), XsConfig::default()).unwrap();
    let mut w = c.watch("/bre").unwrap();
    assert_eq!(w.next_timeout(Duration::from_secs(5)).unwrap().path, "/bre");
    fake.drop_connections();
    // The loss is seen by the next read of the connection: the watch's own
    // wait reconnects and re-arms (the re-armed watch fires once).
    assert_eq!(w.next_timeout(Duration::from_secs(5)).unwrap().path, "/bre");
    assert_eq!(c.reconnect_count(), 1);
    assert_eq!(fake.watch_count(), 1);
    fake.external_write("/bre/x", b"1");
    assert_eq!(w.next_timeout(Duration::from_secs(5)).unwrap().path, "/bre/x");
    // A request after another loss fails or reconnects, and then works.
    fake.drop_connections();
    std::thread::sleep(Duration::from_millis(50));
    if let Err(e) = c.read("/local/domain/0/name") {
        assert!(matches!(e, XenError::Disconnected | XenError::Io { .. }), "{e}");
    }
    assert_eq!(c.read_string("/local/domain/0/name").unwrap(), "Domain-0");
    assert_eq!(c.reconnect_count(), 2);

    let n = BlockingXsClient::connect(
        Transport::Socket(fake.socket()),
        XsConfig { auto_reconnect: false, ..XsConfig::default() },
    )
    .unwrap();
    n.read("/local/domain/0/name").unwrap();
    fake.drop_connections();
    std::thread::sleep(Duration::from_millis(50));
    assert!(n.read("/local/domain/0/name").is_err());
    assert!(matches!(n.read("/local/domain/0/name"), Err(XenError::Disconnected)));
}

#[test]
fn blocking_client_typed_errors_and_timeouts() {
    let (_rt, fake) = fake_outside_runtime();
    let c = BlockingXsClient::connect(
        Transport::Socket(fake.socket()),
        XsConfig { request_timeout: Some(Duration::from_millis(300)), ..XsConfig::default() },
    )
    .unwrap();
    let e = c.read("/missing/node").unwrap_err();
    assert!(
        matches!(e, XenError::Xenstore { op: "READ", ref path, errno: XsErrno::Enoent } if path == "/missing/node")
    );
    assert!(matches!(c.write("/x", vec![0u8; wire::PAYLOAD_MAX]), Err(XenError::TooLarge { .. })));
    assert!(c.read("").is_err());
    // Request ids start at 1: the first request above was id 1, the write
    // and the empty path never went out.
    fake.with_behaviour(|b| b.hostile.push_back(raw(MsgType::Read as u32, 4242, 1, b"x")));
    let e = c.read("/local/domain/0/name").unwrap_err();
    assert!(matches!(e, XenError::Timeout(ref m) if m.contains("READ")), "{e}");
    fake.with_behaviour(|b| b.hostile.push_back(raw(99, 3, 0, b"")));
    assert!(matches!(c.read("/local/domain/0/name"), Err(XenError::Protocol(_))));
    assert_eq!(c.read_string("/local/domain/0/name").unwrap(), "Domain-0");
    assert_eq!(c.reconnect_count(), 1);
    // DIRECTORY_PART and permissions over the blocking path.
    let names: Vec<String> = (0..30).map(|i| format!("entry-{i:03}")).collect();
    for n in &names {
        c.write(&format!("/bigb/{n}"), "").unwrap();
    }
    fake.with_behaviour(|b| b.dir_part_limit = 100);
    let mut got = c.directory("/bigb").unwrap();
    got.sort();
    assert_eq!(got, names);
    let p = Perms::owned_by(0, Access::None).grant(5, Access::Read);
    c.set_perms("/bigb", &p).unwrap();
    assert_eq!(c.get_perms("/bigb").unwrap(), p);
    assert_eq!(c.get_domain_path(4).unwrap(), "/local/domain/4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pipelined_requests_coalesce_and_all_complete() {
    let fake = FakeXenstored::start();
    let c = client_for(&fake).await;
    for i in 0..16 {
        c.write(&format!("/many/{i}"), format!("{i}")).await.unwrap();
    }
    // Replies held until all sixteen tasks have a request in flight.
    fake.with_behaviour(|b| b.reorder_batch = 16);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    // Writes of one task keep their order; reads see them.
                    c.write(&format!("/many/{i}"), format!("{i}")).await.unwrap();
                    assert_eq!(c.read_string(&format!("/many/{i}")).await.unwrap(), format!("{i}"));
                }
            })
        })
        .collect();
    for t in tasks {
        within("pipelined task", t).await.unwrap();
    }
    let reads = fake.requests().iter().filter(|(t, _)| *t == MsgType::Read).count();
    assert_eq!(reads, 16 * 20);
}

fn thread_policy() -> libc::c_int {
    // SAFETY: pid 0 is the calling thread; no pointers.
    unsafe { libc::sched_getscheduler(0) }
}

#[test]
fn waiting_threads_get_their_scheduling_policy_back() {
    let (rt, fake) = fake_outside_runtime();
    assert_eq!(thread_policy(), libc::SCHED_OTHER);
    let c = BlockingXsClient::connect(Transport::Socket(fake.socket()), XsConfig::default()).unwrap();
    for _ in 0..20 {
        c.read("/local/domain/0/name").unwrap();
    }
    assert_eq!(thread_policy(), libc::SCHED_OTHER, "blocking client restored the policy");
    let local = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let policy = local.block_on(async {
        let c = client_for(&fake).await;
        for _ in 0..20 {
            c.read("/local/domain/0/name").await.unwrap();
        }
        let futs: Vec<_> = (0..8).map(|_| c.read("/local/domain/0/name")).collect();
        for f in futs {
            f.await.unwrap();
        }
        let after_requests = thread_policy();
        // A request given up while it waits (its reply is held back).
        fake.with_behaviour(|b| b.reorder_batch = 2);
        let gave_up = tokio::time::timeout(Duration::from_millis(100), c.read("/local/domain/0/name")).await;
        assert!(gave_up.is_err());
        (after_requests, thread_policy())
    });
    assert_eq!(policy, (libc::SCHED_OTHER, libc::SCHED_OTHER), "async client restored the policy");
    drop(rt);
}
