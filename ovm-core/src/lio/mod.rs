//! ovm's storage-array plug-in for Linux LIO targets, and the management interface it talks to.
//!
//! A Linux storage server whose iSCSI target is the kernel's LIO runs `ovm-lio` (the [`server`]
//! module): it owns the targets it is told to manage and creates, resizes, clones and deletes
//! their LUNs (sparse files on its disk, each behind a loop device and an `iblock` backstore, so
//! that a LUN grows while in use) and their **access groups** (sets of initiators; a LUN presented
//! to a group is mapped in the node ACL of each of its initiators). Its state survives restarts.
//!
//! The plug-in ([`call`]) runs on an admin server, as Storage Connect runs a vendor plug-in: it
//! speaks **JSON-RPC 2.0 over HTTPS** (`POST /ovm-lio/v1`, HTTP basic authentication, TLS 1.3
//! only). Methods and parameters are those of [`ArrayOp`], answers those of [`ArrayAnswer`]; an
//! error answer carries ovm's typed [`crate::Error`] in its `data`. The server's certificate is
//! self-signed and pinned by fingerprint: the `fingerprint` method is answered without
//! credentials, and the plug-in never sends credentials to a certificate that is not pinned.

pub mod http;
#[cfg(feature = "lio-server")]
pub mod server;

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::tls;
use crate::driver::storage::{ArrayAdminAccess, ArrayAnswer, ArrayOp};
use crate::{Error, Result};

/// The HTTP path of the JSON-RPC endpoint.
pub const RPC_PATH: &str = "/ovm-lio/v1";
/// The default port of `ovm-lio`.
pub const DEFAULT_PORT: u16 = 3261;
/// How long one call may take (a clone copies a LUN).
const CALL_TIMEOUT: Duration = Duration::from_secs(900);

/// A JSON-RPC request.
#[derive(Debug, Serialize, Deserialize)]
pub struct RpcRequest {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The caller's id, echoed.
    pub id: u64,
    /// The method and its parameters.
    #[serde(flatten)]
    pub op: ArrayOp,
}

/// A JSON-RPC error object; `data` is ovm's error.
#[derive(Debug, Serialize, Deserialize)]
pub struct RpcError {
    /// JSON-RPC code (-32700 parse, -32600 request, -32000 ovm error, -32001 authentication).
    pub code: i64,
    /// Message.
    pub message: String,
    /// The typed error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Error>,
}

/// A JSON-RPC response.
#[derive(Debug, Serialize, Deserialize)]
pub struct RpcResponse {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request's id (0 when it could not be read).
    pub id: u64,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ArrayAnswer>,
    /// Or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

fn backend(access: &ArrayAdminAccess, message: impl Into<String>) -> Error {
    Error::backend(format!("{}:{}", access.host, access.port), message)
}

/// Run `op` on the `ovm-lio` management interface `access` names. Everything but
/// [`ArrayOp::Fingerprint`] needs `access.fingerprint`: credentials go only to a pinned
/// certificate.
pub fn call(access: &ArrayAdminAccess, op: ArrayOp) -> Result<ArrayAnswer> {
    access.check()?;
    op.check()?;
    let learning = matches!(op, ArrayOp::Fingerprint);
    if !learning && access.fingerprint.is_none() {
        return Err(Error::invalid(
            "fingerprint",
            "the management interface's certificate is not pinned (ask for its fingerprint first)",
        ));
    }
    let seen = Arc::new(tls::SeenCert::default());
    let cfg = tls::server_only_client_config(access.fingerprint.clone(), seen.clone())?;
    let addr = (access.host.as_str(), access.port)
        .to_socket_addrs()
        .map_err(|e| backend(access, format!("resolve: {e}")))?
        .next()
        .ok_or_else(|| backend(access, "no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| backend(access, format!("connect: {e}")))?;
    tcp.set_read_timeout(Some(CALL_TIMEOUT)).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(30))).ok();
    let conn = rustls::ClientConnection::new(cfg, tls::server_name(&access.host))
        .map_err(|e| backend(access, format!("TLS: {e}")))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    if learning {
        // The handshake alone shows the certificate.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| backend(access, format!("TLS: {e}")))?;
        }
        return seen.get().map(ArrayAnswer::Fingerprint).ok_or_else(|| backend(access, "no certificate"));
    }
    let body = serde_json::to_vec(&RpcRequest { jsonrpc: "2.0".into(), id: 1, op })
        .map_err(|e| Error::Internal { message: e.to_string() })?;
    let auth = http::basic_auth(&access.username, &access.password);
    http::write_request(&mut stream, &access.host, RPC_PATH, &auth, &body).map_err(|e| match seen.get() {
        Some(fp) if Some(&fp) != access.fingerprint.as_ref() => {
            backend(access, format!("the certificate {fp} is not the pinned one"))
        }
        _ => backend(access, format!("send: {e}")),
    })?;
    let (status, body) =
        http::read_response(&mut stream).map_err(|e| backend(access, format!("answer: {e}")))?;
    if status == 401 {
        return Err(Error::PermissionDenied {
            reason: format!("{}: the array refused the credentials", access.host),
        });
    }
    let resp: RpcResponse = serde_json::from_slice(&body)
        .map_err(|e| backend(access, format!("HTTP {status}, not a JSON-RPC answer: {e}")))?;
    match (resp.result, resp.error) {
        (Some(a), None) => Ok(a),
        (_, Some(e)) => Err(e.data.unwrap_or_else(|| backend(access, format!("{} ({})", e.message, e.code)))),
        (None, None) => Err(backend(access, "an answer with neither result nor error")),
    }
}

/// The SCSI identifier (page 83, NAA type 6 "registered extended") that LIO derives from a
/// device's unit serial number, as servers read it (`naa.` and 32 hex digits): the IEEE company
/// id LIO uses (0x001405) and the first 25 hex digits of the serial.
pub fn naa_of_serial(serial: &str) -> String {
    let mut s = String::from("naa.6001405");
    let digits: String = serial.chars().filter(|c| c.is_ascii_hexdigit()).take(25).collect();
    s.push_str(&digits.to_ascii_lowercase());
    while s.len() < 4 + 32 {
        s.push('0');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naa_from_serial() {
        // What a Linux initiator shows in /sys/block/sdX/device/wwid for LIO's default serial.
        assert_eq!(
            naa_of_serial("3b8c3a4f-9a0e-4d2f-8e4b-6c2d1f0e9a7b"),
            "naa.60014053b8c3a4f9a0e4d2f8e4b6c2d1"
        );
        assert_eq!(naa_of_serial("ab"), format!("naa.6001405ab{}", "0".repeat(23)));
    }

    #[test]
    fn requests_are_json_rpc() {
        let r = RpcRequest {
            jsonrpc: "2.0".into(),
            id: 3,
            op: ArrayOp::CreateLun { target: "iqn.2026-01.x:t".into(), name: "l1".into(), size_bytes: 5 },
        };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"jsonrpc":"2.0","id":3,"method":"create_lun","params":{"target":"iqn.2026-01.x:t","name":"l1","size_bytes":5}}"#
        );
        let back: RpcRequest = serde_json::from_str(&j).unwrap();
        assert_eq!(back.op, r.op);
        let t: RpcRequest = serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"method":"targets"}"#).unwrap();
        assert_eq!(t.op, ArrayOp::Targets);
        assert!(serde_json::from_str::<RpcRequest>(r#"{"jsonrpc":"2.0","id":1,"method":"rm_rf"}"#).is_err());
    }

    #[test]
    fn credentials_need_a_pinned_certificate() {
        let a = ArrayAdminAccess {
            plugin: crate::driver::storage::LIO_PLUGIN.into(),
            host: "127.0.0.1".into(),
            port: 1,
            username: "admin".into(),
            password: "pw".into(),
            fingerprint: None,
        };
        let e = call(&a, ArrayOp::Targets).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
    }
}
