//! One-time console endpoints on the manager's loopback (see [`crate::console`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::console::{authenticate_client, open_guest_side, ClientRefused};
use crate::manager::Manager;
use crate::model::*;
use crate::{Error, Result};

/// How long an endpoint waits for its client.
pub const CONSOLE_TTL: Duration = Duration::from_secs(60);
/// Wrong passwords an endpoint takes before it closes.
const MAX_WRONG: u32 = 3;
/// How long a client has for its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Where and how a VNC client reaches a VM's screen: once, within [`CONSOLE_TTL`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsoleEndpoint {
    /// The VM.
    pub vm: VmId,
    /// The endpoint, on the manager's loopback (`127.0.0.1:PORT`).
    pub address: SocketAddr,
    /// The one-time password the client gives (RFB VNC Authentication): 8 letters and digits.
    pub password: String,
    /// How long the endpoint waits for its client.
    pub expires_in: Duration,
}

fn random_password() -> Result<String> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal { message: "no randomness for a console password".into() })?;
    Ok(bytes.iter().map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])).collect())
}

fn challenge() -> Option<[u8; 16]> {
    use ring::rand::SecureRandom;
    let mut c = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut c).ok()?;
    Some(c)
}

impl Manager {
    /// Open a running VM's graphical console for one VNC client: the guest's screen (Xen: the
    /// device model's VNC server of an HVM or PVHVM guest, on its server's loopback, reached
    /// through the agent) is offered at a one-time endpoint on this machine's loopback, with a
    /// one-time password (RFB VNC Authentication). The first client that gives the password gets
    /// the console; a wrong password is refused (the third closes the endpoint); the endpoint
    /// takes no other client once one is in, and none after [`CONSOLE_TTL`].
    pub fn open_vm_console(&self, vm: VmId) -> Result<ConsoleEndpoint> {
        let v = self.vm(vm)?;
        if !v.power_state.is_resident() {
            return Err(Error::state(v.object_ref(), "Running or Paused", v.power_state));
        }
        let server =
            v.server.ok_or_else(|| Error::Internal { message: "resident VM without server".into() })?;
        let guest = self.hypervisor(server)?.open_console(vm)?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| Error::backend("console", format!("listen: {e}")))?;
        let address = listener.local_addr().map_err(|e| Error::backend("console", e.to_string()))?;
        let password = random_password()?;
        let pw = password.clone();
        std::thread::Builder::new()
            .name(format!("console-{}", vm.0.simple()))
            .spawn(move || serve(listener, guest, &pw, Instant::now() + CONSOLE_TTL))
            .map_err(|e| Error::Internal { message: format!("console thread: {e}") })?;
        Ok(ConsoleEndpoint { vm, address, password, expires_in: CONSOLE_TTL })
    }
}

/// How long the endpoint waits for a WebSocket client's request before it speaks RFB first (a
/// VNC client waits for the server's version; a WebSocket client sends its upgrade at once).
const WEBSOCKET_PEEK: Duration = Duration::from_millis(500);

/// A client connection: RFB straight on TCP, or inside WebSocket frames (noVNC).
struct Client {
    rd: Box<dyn Read + Send>,
    wr: Box<dyn Write + Send>,
    close: Box<dyn Fn() + Send + Sync>,
    /// The socket (for its timeouts).
    sock: TcpStream,
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.rd.read(buf)
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.wr.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.wr.flush()
    }
}

/// The client on `tcp`, WebSocket or plain.
fn client(tcp: TcpStream) -> std::io::Result<Client> {
    tcp.set_read_timeout(Some(WEBSOCKET_PEEK))?;
    let mut first = [0u8; 4];
    let websocket = matches!(tcp.peek(&mut first), Ok(4) if &first == b"GET ");
    tcp.set_read_timeout(Some(HANDSHAKE))?;
    let sock = tcp.try_clone()?;
    if websocket {
        let (rd, wr) = crate::console::accept_websocket(tcp)?;
        let closer = wr.clone();
        return Ok(Client {
            rd: Box::new(rd),
            wr: Box::new(wr),
            close: Box::new(move || closer.shutdown()),
            sock,
        });
    }
    let (rd, wr, closer) = (tcp.try_clone()?, tcp.try_clone()?, tcp);
    Ok(Client {
        rd: Box::new(rd),
        wr: Box::new(wr),
        close: Box::new(move || {
            let _ = closer.shutdown(std::net::Shutdown::Both);
        }),
        sock,
    })
}

/// Wait for the client, authenticate it, then carry the protocol between it and the guest.
fn serve(listener: TcpListener, mut guest: UnixStream, password: &str, deadline: Instant) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let mut wrong = 0;
    while Instant::now() < deadline && wrong < MAX_WRONG {
        let tcp = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(_) => return,
        };
        let _ = tcp.set_nonblocking(false);
        let _ = tcp.set_nodelay(true);
        let Ok(mut client) = client(tcp) else { continue };
        let Some(c) = challenge() else { return };
        match authenticate_client(&mut client, password, &c) {
            Ok(()) => {
                drop(listener);
                let _ = guest.set_read_timeout(Some(HANDSHAKE));
                if let Err(e) = open_guest_side(&mut guest) {
                    log::warn!("console: {e}");
                    (client.close)();
                    return;
                }
                let _ = guest.set_read_timeout(None);
                // A viewer may stay idle for long.
                let _ = client.sock.set_read_timeout(None);
                splice(client, guest);
                return;
            }
            Err(ClientRefused::WrongPassword) => wrong += 1,
            Err(ClientRefused::Other(why)) => log::debug!("console client refused: {why}"),
        }
    }
}

/// Carry bytes both ways between the client and the guest until either side ends.
fn splice(client: Client, guest: UnixStream) {
    let Client { mut rd, mut wr, close, .. } = client;
    let close = std::sync::Arc::new(close);
    let Ok(mut guest_rd) = guest.try_clone() else { return };
    let mut guest_wr = guest;
    let c2 = close.clone();
    let g2 = guest_rd.try_clone();
    let _ = std::thread::Builder::new().name("console-in".into()).spawn(move || {
        let _ = std::io::copy(&mut rd, &mut guest_wr);
        let _ = guest_wr.shutdown(std::net::Shutdown::Both);
        c2();
    });
    let _ = std::thread::Builder::new().name("console-out".into()).spawn(move || {
        let _ = std::io::copy(&mut guest_rd, &mut wr);
        close();
        if let Ok(g) = g2 {
            let _ = g.shutdown(std::net::Shutdown::Both);
        }
    });
}
