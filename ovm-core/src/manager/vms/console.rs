//! One-time console endpoints on the manager's loopback (see [`crate::console`]).

use std::net::{SocketAddr, TcpListener};
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

/// Wait for the client, authenticate it, then carry the protocol between it and the guest.
fn serve(listener: TcpListener, mut guest: UnixStream, password: &str, deadline: Instant) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let mut wrong = 0;
    while Instant::now() < deadline && wrong < MAX_WRONG {
        let mut client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(_) => return,
        };
        let _ = client.set_nonblocking(false);
        let _ = client.set_read_timeout(Some(HANDSHAKE));
        let Some(c) = challenge() else { return };
        match authenticate_client(&mut client, password, &c) {
            Ok(()) => {
                drop(listener);
                let _ = guest.set_read_timeout(Some(HANDSHAKE));
                if let Err(e) = open_guest_side(&mut guest) {
                    log::warn!("console: {e}");
                    return;
                }
                let _ = client.set_read_timeout(None);
                let _ = guest.set_read_timeout(None);
                let _ = client.set_nodelay(true);
                let _ = crate::driver::splice_console(client, guest);
                return;
            }
            Err(ClientRefused::WrongPassword) => wrong += 1,
            Err(ClientRefused::Other(why)) => log::debug!("console client refused: {why}"),
        }
    }
}
