//! Migration between agents: one-time tickets, and the domain's migration stream carried over
//! mutual TLS from the source agent to the destination agent, with no ssh and no open port besides
//! the agents' own.
//!
//! 1. The manager asks the destination agent to prepare ([`Incoming::prepare`]): it names the
//!    domain and the fingerprint of the source agent's certificate (both from the manager's own
//!    records). The destination checks the domain may come (its backend's
//!    [`MigrationStreams::check_incoming`]) and issues a random one-time token, valid for
//!    [`AgentConfig::incoming_ttl`](super::server::AgentConfig).
//! 2. The manager asks the source agent to send ([`send`]) with the token, the destination's
//!    migration address and the fingerprint of the destination's certificate. The source connects,
//!    refuses a destination with another certificate, presents its own, and sends
//!    [`ClientMessage::Migration`].
//! 3. The destination accepts a ticket once, before it expires, for its VM, from the certificate
//!    it was told to expect, for the mode it was prepared for (a live migration stream or a saved
//!    domain, [`MigrationMode`]) ([`Incoming::admit`]); anything else is refused and audited. It then
//!    answers [`AgentMessage::Receiving`] and both agents hand the connection's bytes to their
//!    backends: `send_stream` at the source, `receive_stream` at the destination, which validates
//!    the domain the stream carries against the prepared one before it accepts it.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::proto::{self, v1, AgentMessage, ClientMessage};
use super::tls::{self, Identity, SeenCert};
use crate::driver::{DomainSpec, MigrationStreams};
use crate::model::{MigrationMode, VmId};
use crate::sync::lock;
use crate::{Error, Result};

/// How long a source may take to connect and present its ticket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A prepared incoming migration.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) spec: DomainSpec,
    /// What the connection is to carry.
    pub(crate) mode: MigrationMode,
    source: String,
    expires: Instant,
}

/// The destination's prepared migrations, by token.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    tickets: Mutex<HashMap<String, Prepared>>,
}

fn random_token() -> Result<String> {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::Internal { message: "no system randomness".into() })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Incoming {
    /// Check that `spec` may come here from the agent with certificate `source` the way `mode`
    /// says and issue a ticket valid for `ttl`.
    pub(crate) fn prepare(
        &self,
        streams: &dyn MigrationStreams,
        spec: DomainSpec,
        source: &str,
        mode: MigrationMode,
        ttl: Duration,
    ) -> Result<String> {
        if !source.starts_with("sha256:") || source.len() != 7 + 64 {
            return Err(Error::invalid("source", format!("{source:?} is not a certificate fingerprint")));
        }
        let mut t = lock(&self.tickets);
        let now = Instant::now();
        t.retain(|_, p| p.expires > now);
        if t.values().any(|p| p.spec.uuid == spec.uuid) {
            return Err(Error::invalid(
                "vm",
                format!("a migration of {} to this server is already prepared", spec.uuid),
            ));
        }
        streams.check_incoming(&spec)?;
        let token = random_token()?;
        t.insert(token.clone(), Prepared { spec, mode, source: source.to_owned(), expires: now + ttl });
        Ok(token)
    }

    /// Give up a prepared migration (unknown tokens are ignored: cancelling is idempotent).
    pub(crate) fn cancel(&self, token: &str) {
        lock(&self.tickets).remove(token);
    }

    /// Take the ticket `token` for `vm` presented by the certificate `fingerprint` for a stream of
    /// `mode`: once, before it expires, from the expected source, for the mode it was prepared
    /// for (a ticket presented for the other mode is used up).
    pub(crate) fn admit(
        &self,
        token: &str,
        vm: VmId,
        fingerprint: &str,
        mode: MigrationMode,
    ) -> Result<Prepared> {
        let mut t = lock(&self.tickets);
        let denied =
            |why: &str| Error::PermissionDenied { reason: format!("migration ticket refused: {why}") };
        let p = t.get(token).cloned().ok_or_else(|| denied("no such ticket (forged, used or cancelled)"))?;
        if p.expires <= Instant::now() {
            t.remove(token);
            return Err(denied("it expired"));
        }
        if p.spec.uuid != vm {
            return Err(denied(&format!("it admits VM {}, not {vm}", p.spec.uuid)));
        }
        if p.source != fingerprint {
            return Err(denied(&format!("it was issued for the agent {}, not {fingerprint}", p.source)));
        }
        if p.mode != mode {
            t.remove(token);
            let name = |m: MigrationMode| match m {
                MigrationMode::Live => "a live migration",
                MigrationMode::Cold => "a cold move",
            };
            return Err(denied(&format!("it was prepared for {}, not {}", name(p.mode), name(mode))));
        }
        t.remove(token);
        Ok(p)
    }
}

/// Carry bytes between a TLS connection and the backend's end of a socket pair until both
/// directions are done.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(tls: S, local: UnixStream) -> Result<()> {
    super::relay(tls, local).await.map_err(|e| match e {
        Error::Backend { message, .. } => {
            Error::backend("migration", format!("between the agents: {message}"))
        }
        other => other,
    })
}

/// Destination side, on an accepted connection whose first message was a migration ticket:
/// answer, then receive the domain from the connection.
pub(crate) async fn receive<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut tls: S,
    prepared: Prepared,
    streams: impl FnOnce(DomainSpec, MigrationMode, UnixStream) -> Result<u32> + Send + 'static,
) -> Result<u32> {
    let frame = proto::encode(&AgentMessage::Receiving)?;
    proto::write_frame(&mut tls, &frame)
        .await
        .map_err(|e| Error::backend("migration", format!("answer the source agent: {e}")))?;
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::Internal { message: format!("socket pair: {e}") })?;
    let (spec, mode) = (prepared.spec, prepared.mode);
    let backend = tokio::task::spawn_blocking(move || streams(spec, mode, ours));
    let carried = relay(tls, theirs).await;
    let received = backend.await.map_err(|e| Error::Internal { message: format!("receive task: {e}") })?;
    let domid = received?;
    carried?;
    Ok(domid)
}

/// Source side (on a blocking thread of the agent's runtime): connect to the destination agent at
/// `destination`, which must present the certificate `peer`, present the ticket, and send `vm`.
pub(crate) fn send(
    identity: &Identity,
    streams: &dyn MigrationStreams,
    vm: VmId,
    ticket: &v1::Op,
) -> Result<()> {
    let v1::Op::SendDomain { destination, token, peer, live, mode, .. } = ticket else {
        return Err(Error::Internal { message: "send without a ticket".into() });
    };
    let (host, port) = super::parse_address(destination)
        .ok_or_else(|| Error::invalid("destination", format!("{destination:?} is not host:port")))?;
    if !peer.starts_with("sha256:") {
        return Err(Error::invalid("peer", format!("{peer:?} is not a certificate fingerprint")));
    }
    let seen = std::sync::Arc::new(SeenCert::default());
    let cfg = tls::client_config(identity, Some(peer.clone()), seen.clone())?;
    let rt = tokio::runtime::Handle::current();
    let mode = MigrationMode::from(*mode);
    let hello = proto::encode(&ClientMessage::Migration { token: token.clone(), vm, mode: mode.into() })?;
    let dest = destination.clone();
    let peer2 = peer.clone();
    let tls_stream = rt.block_on(async move {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| Error::Timeout { what: format!("connect to the agent at {dest}"), millis: 20_000 })?
            .map_err(|e| Error::backend(&dest, format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let mut s = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            connector.connect(tls::server_name(&host), tcp),
        )
        .await
        {
            Err(_) => {
                return Err(Error::Timeout { what: format!("TLS handshake with {dest}"), millis: 20_000 })
            }
            Ok(Err(e)) => {
                return Err(match seen.get() {
                    Some(s) if s != peer2 => Error::PermissionDenied {
                        reason: format!("the destination {dest} presented certificate {s}, not {peer2}"),
                    },
                    _ => Error::backend(&dest, format!("TLS handshake: {e}")),
                })
            }
            Ok(Ok(s)) => s,
        };
        proto::write_frame(&mut s, &hello).await.map_err(|e| Error::backend(&dest, format!("write: {e}")))?;
        let mut buf = Vec::new();
        tokio::time::timeout(CONNECT_TIMEOUT, proto::read_frame(&mut s, &mut buf))
            .await
            .map_err(|_| Error::Timeout {
                what: format!("the answer of {dest} to the ticket"),
                millis: 20_000,
            })?
            .map_err(|e| Error::backend(&dest, format!("read: {e}")))?;
        match proto::decode::<AgentMessage>(&buf) {
            Ok(AgentMessage::Receiving) => Ok(s),
            Ok(AgentMessage::Refused { error }) => Err(error),
            Ok(other) => Err(Error::backend(&dest, format!("unexpected answer to the ticket: {other:?}"))),
            Err(e) => Err(Error::backend(&dest, format!("malformed answer to the ticket: {e}"))),
        }
    })?;
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::Internal { message: format!("socket pair: {e}") })?;
    let carrier = rt.spawn(relay(tls_stream, theirs));
    let sent = streams.send_stream(vm, *live, mode, ours);
    let carried = rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs(30), carrier).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(Error::Internal { message: format!("relay task: {e}") }),
            Err(_) => Err(Error::Timeout { what: "the end of the migration stream".into(), millis: 30_000 }),
        }
    });
    sent?;
    if let Err(e) = carried {
        log::warn!("migration of {vm} to {destination}: sent, but the relay ended badly: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::sim::{SimDriver, DEFAULT_PASSWORD};
    use crate::driver::Driver;

    const SOURCE: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    fn spec() -> DomainSpec {
        crate::driver::sim::tests::spec(256)
    }

    #[test]
    fn a_ticket_admits_its_vm_once_before_it_expires_from_its_source() {
        let conn = SimDriver::default().connect("sim://d", DEFAULT_PASSWORD, "m").unwrap();
        let streams = conn.migration_streams().unwrap();
        let incoming = Incoming::default();
        let s = spec();
        let token = incoming
            .prepare(streams, s.clone(), SOURCE, MigrationMode::Live, Duration::from_secs(60))
            .unwrap();
        assert_eq!(token.len(), 64, "256 random bits");
        assert!(
            incoming
                .prepare(streams, s.clone(), SOURCE, MigrationMode::Live, Duration::from_secs(60))
                .is_err(),
            "one prepared migration per VM"
        );
        let other = SOURCE.replace("01", "02");
        assert!(incoming.admit(&token, s.uuid, &other, MigrationMode::Live).is_err(), "another source");
        assert!(incoming.admit(&token, VmId::new(), SOURCE, MigrationMode::Live).is_err(), "another VM");
        assert_eq!(incoming.admit(&token, s.uuid, SOURCE, MigrationMode::Live).unwrap().spec, s);
        assert!(incoming.admit(&token, s.uuid, SOURCE, MigrationMode::Live).is_err(), "used once");

        let expired =
            incoming.prepare(streams, s.clone(), SOURCE, MigrationMode::Live, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let e = incoming.admit(&expired, s.uuid, SOURCE, MigrationMode::Live).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");

        let cancelled = incoming
            .prepare(streams, s.clone(), SOURCE, MigrationMode::Live, Duration::from_secs(60))
            .unwrap();
        incoming.cancel(&cancelled);
        incoming.cancel(&cancelled);
        assert!(incoming.admit(&cancelled, s.uuid, SOURCE, MigrationMode::Live).is_err());
        let cold = incoming
            .prepare(streams, s.clone(), SOURCE, MigrationMode::Cold, Duration::from_secs(60))
            .unwrap();
        let e = incoming.admit(&cold, s.uuid, SOURCE, MigrationMode::Live).unwrap_err();
        assert!(e.to_string().contains("prepared for a cold move, not a live migration"), "{e}");
        assert!(
            incoming.admit(&cold, s.uuid, SOURCE, MigrationMode::Cold).is_err(),
            "used up by the wrong mode"
        );
        assert!(incoming
            .prepare(streams, s, "not-a-fingerprint", MigrationMode::Live, Duration::from_secs(60))
            .is_err());
    }
}
