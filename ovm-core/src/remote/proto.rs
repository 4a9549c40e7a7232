//! The manager protocol's messages (version 1).
//!
//! Frames are the agent protocol's ([`crate::agent::proto::frame`]): a 4-byte big-endian length,
//! then that many bytes of one JSON message, at most [`MAX_FRAME`] bytes.
//!
//! The client speaks first with [`ClientMessage::Hello`]; the service answers
//! [`ServiceMessage::Welcome`] with the version both speak, or [`ServiceMessage::Refused`] and closes.
//! Then each [`ClientMessage::Request`] gets one [`ServiceMessage::Response`] with the same id
//! (requests run concurrently, so responses may come out of order), and a subscription's changes
//! arrive as [`ServiceMessage::Change`]s tagged with the id of the request that opened it.
//!
//! A frame that is not a message gets [`ServiceMessage::ProtocolError`] and the connection goes on;
//! a frame announced longer than [`MAX_FRAME`] gets a `ProtocolError` and the connection is closed
//! (its body is never read). Other clients are not affected by either.

use serde::{Deserialize, Serialize};

pub use crate::agent::proto::frame::MAX_FRAME;

use super::api::Call;
use super::auth::Credentials;
use crate::model::Change;
use crate::Error;

/// The protocol version this build speaks (also the newest).
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest protocol version this build speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// A message from a client to the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The first message: the protocol versions the client speaks (oldest and newest).
    Hello {
        /// Oldest version spoken.
        min_version: u32,
        /// Newest version spoken.
        max_version: u32,
        /// What the client is (for the service's log), e.g. `ovm 0.1.0`.
        client: String,
        /// The user to act as, and its password. Without them a Unix-socket peer running as the
        /// service's user or root is the local superuser; anyone else is refused. Absent from the
        /// encoding when not given, so a hello without them is the same as before they existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials: Option<Credentials>,
    },
    /// A call of the manager's API.
    Request {
        /// Chosen by the client; the response carries it.
        id: u64,
        /// The call.
        call: Box<Call>,
    },
    /// Open a subscription to the change feed; its changes carry `id`.
    Subscribe {
        /// Chosen by the client; the response and every change carry it.
        id: u64,
        /// Replay the changes after this token first.
        from: Option<u64>,
    },
    /// Close the subscription opened by request `id`.
    Unsubscribe {
        /// The subscription's id.
        id: u64,
    },
}

/// A message from the service to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceMessage {
    /// The hello was accepted.
    Welcome {
        /// The version spoken from now on.
        version: u32,
        /// The manager's identity.
        manager_id: String,
    },
    /// The hello was refused (no common version, or the peer may not connect); the service closes.
    Refused {
        /// Why.
        error: Error,
    },
    /// The answer to a request or subscribe: the method's result as JSON, or its typed error.
    Response {
        /// The request's id.
        id: u64,
        /// The result.
        result: Result<serde_json::Value, Error>,
    },
    /// A change of a subscription, or the error that ended it.
    Change {
        /// The subscription's id.
        id: u64,
        /// The change.
        change: Result<Change, Error>,
    },
    /// A frame the service could not take: not a message, out of order, or too long.
    ProtocolError {
        /// The request's id, when it could be read.
        id: Option<u64>,
        /// What was wrong.
        error: Error,
    },
}

/// The version both sides speak, if any.
pub fn negotiate(min_version: u32, max_version: u32) -> Option<u32> {
    let v = max_version.min(PROTOCOL_VERSION);
    (v >= min_version.max(MIN_PROTOCOL_VERSION)).then_some(v)
}

/// The id of a request frame that does not otherwise decode, when it has one.
pub fn salvage_id(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?.get("id")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobId, ObjectKind};

    #[test]
    fn versions_negotiate() {
        assert_eq!(negotiate(1, 1), Some(1));
        assert_eq!(negotiate(1, 7), Some(1));
        assert_eq!(negotiate(2, 7), None);
        assert_eq!(negotiate(0, 0), None);
    }

    /// The encoding of each message is pinned: changing it is a new protocol version.
    #[test]
    fn messages_are_pinned() {
        let id = JobId(uuid::Uuid::nil());
        let cases: Vec<(ClientMessage, &str)> = vec![
            (
                ClientMessage::Hello {
                    min_version: 1,
                    max_version: 1,
                    client: "t".into(),
                    credentials: None,
                },
                r#"{"type":"hello","min_version":1,"max_version":1,"client":"t"}"#,
            ),
            (
                ClientMessage::Hello {
                    min_version: 1,
                    max_version: 1,
                    client: "t".into(),
                    credentials: Some(Credentials::new("u", "p")),
                },
                r#"{"type":"hello","min_version":1,"max_version":1,"client":"t","credentials":{"user":"u","password":"p"}}"#,
            ),
            (
                ClientMessage::Request { id: 3, call: Box::new(Call::abort_job { id }) },
                r#"{"type":"request","id":3,"call":{"method":"abort_job","args":{"id":"00000000-0000-0000-0000-000000000000"}}}"#,
            ),
            (
                ClientMessage::Request { id: 4, call: Box::new(Call::objects { kind: ObjectKind::Vm }) },
                r#"{"type":"request","id":4,"call":{"method":"objects","args":{"kind":"Vm"}}}"#,
            ),
            (ClientMessage::Subscribe { id: 5, from: None }, r#"{"type":"subscribe","id":5,"from":null}"#),
            (ClientMessage::Unsubscribe { id: 5 }, r#"{"type":"unsubscribe","id":5}"#),
        ];
        for (msg, text) in cases {
            assert_eq!(serde_json::to_string(&msg).unwrap(), text);
            assert_eq!(serde_json::from_str::<ClientMessage>(text).unwrap(), msg);
        }
        let answers: Vec<(ServiceMessage, &str)> = vec![
            (
                ServiceMessage::Welcome { version: 1, manager_id: "m".into() },
                r#"{"type":"welcome","version":1,"manager_id":"m"}"#,
            ),
            (
                ServiceMessage::Response { id: 3, result: Ok(serde_json::json!(7)) },
                r#"{"type":"response","id":3,"result":{"Ok":7}}"#,
            ),
            (
                ServiceMessage::Response { id: 3, result: Err(Error::Closed) },
                r#"{"type":"response","id":3,"result":{"Err":"Closed"}}"#,
            ),
            (
                ServiceMessage::ProtocolError { id: None, error: Error::invalid("frame", "x") },
                r#"{"type":"protocol_error","id":null,"error":{"InvalidArgument":{"field":"frame","reason":"x"}}}"#,
            ),
        ];
        for (msg, text) in answers {
            assert_eq!(serde_json::to_string(&msg).unwrap(), text);
            assert_eq!(serde_json::from_str::<ServiceMessage>(text).unwrap(), msg);
        }
    }

    #[test]
    fn ids_are_salvaged_from_bad_requests() {
        assert_eq!(salvage_id(br#"{"type":"request","id":9,"call":{"method":"nope"}}"#), Some(9));
        assert_eq!(salvage_id(b"not json"), None);
        assert_eq!(salvage_id(br#"{"type":"request"}"#), None);
    }
}
