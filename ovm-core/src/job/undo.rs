//! Undo records, by the subsystem that performs the effect.

use serde::{Deserialize, Serialize};

use crate::model::{Object, ObjectRef};

/// The undo record of one change a step made, persisted with the job so a restart can roll it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "UndoRepr")]
pub enum Undo {
    /// Put back the object as it was (`None`: it did not exist).
    #[serde(rename = "Restore")]
    RevertObject {
        /// The object.
        object: ObjectRef,
        /// Its previous version.
        before: Option<Box<Object>>,
    },
    /// Undo an effect on a domain (a VM on a server).
    Domain(DomainUndo),
    /// Undo an effect on a server's storage.
    Storage(StorageUndo),
    /// Undo an effect on a server itself (its agent).
    Server(ServerUndo),
}

impl Undo {
    /// Whether this undoes an effect on a server (rather than an inventory change).
    pub fn is_server_effect(&self) -> bool {
        !matches!(self, Undo::RevertObject { .. })
    }
}

/// Effects on domains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainUndo {
    /// Destroy a domain the step started (idempotent).
    Destroy {
        /// Server it runs on.
        server: uuid::Uuid,
        /// The VM.
        vm: uuid::Uuid,
    },
    /// Migrate a domain back to where it came from.
    MigrateBack {
        /// Server it was moved to.
        from: uuid::Uuid,
        /// Server it came from.
        to: uuid::Uuid,
        /// The VM.
        vm: uuid::Uuid,
    },
    /// Unpause a domain the step paused.
    Unpause {
        /// Server.
        server: uuid::Uuid,
        /// The VM.
        vm: uuid::Uuid,
    },
    /// Put back a domain a cold move was taking from `source` to `target`, while the source still
    /// has its copy: destroy what the target has of it, then unpause the source's copy if paused.
    /// Once the move completed (the source's copy destroyed after the target ran the domain)
    /// there is nothing to put back, and the target's domain is left alone.
    ColdMoveBack {
        /// Server it was leaving (its saved copy is paused there until the move completes).
        source: uuid::Uuid,
        /// Server it was going to.
        target: uuid::Uuid,
        /// The VM.
        vm: uuid::Uuid,
    },
    /// Unplug a NIC a step plugged into a running domain (what is not there counts as undone).
    DetachNic {
        /// Server.
        server: uuid::Uuid,
        /// The VM.
        vm: uuid::Uuid,
        /// The NIC's MAC.
        mac: String,
    },
    /// Plug back a NIC a step unplugged from a running domain.
    AttachNic {
        /// Server.
        server: uuid::Uuid,
        /// The VM.
        vm: uuid::Uuid,
        /// The NIC.
        nic: crate::driver::NicSpec,
    },
    /// Take back a message a step left for a guest (as it was before: `previous`, or none).
    RestoreGuestMessage {
        /// Server.
        server: uuid::Uuid,
        /// The VM.
        vm: uuid::Uuid,
        /// The message's key.
        key: String,
        /// The message the step replaced, if any.
        previous: Option<String>,
    },
}

/// Effects on a server's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageUndo {
    /// Delete a file a step created on a server's storage.
    DeleteFile {
        /// Server that performs the delete.
        server: uuid::Uuid,
        /// Path of the file.
        path: String,
    },
    /// Unmount a file system a step mounted on a server. Journaled before the mount, so it
    /// unmounts only when `source` is what is mounted there: a mount that failed must not take
    /// away something else mounted at that place.
    Unmount {
        /// The server.
        server: uuid::Uuid,
        /// Where it is mounted.
        mount_point: String,
        /// What the step mounted (`None` in journals of earlier versions: whatever is there).
        #[serde(default)]
        source: Option<crate::driver::MountSource>,
    },
    /// Mount again a file system a step unmounted from a server.
    Mount {
        /// The server.
        server: uuid::Uuid,
        /// What was mounted.
        source: crate::driver::MountSource,
        /// Where.
        mount_point: String,
    },
    /// Log a server out of an iSCSI target a step logged it in to.
    Logout {
        /// The server.
        server: uuid::Uuid,
        /// The portal.
        portal: String,
        /// The target.
        target: String,
    },
    /// Log a server in again to an iSCSI target a step logged it out of.
    Login {
        /// The server.
        server: uuid::Uuid,
        /// The portal.
        portal: String,
        /// The target.
        target: String,
    },
    /// Run a call on a vendor-style storage array through an admin server (deleting a LUN a step
    /// created, unpresenting one it presented...); what is already gone counts as undone.
    ArrayCall {
        /// The admin server.
        server: uuid::Uuid,
        /// The array.
        array: uuid::Uuid,
        /// The call.
        call: crate::driver::ArrayOp,
    },
    /// Remove the marker a step wrote for a new repository.
    RemoveMarker {
        /// The server that wrote it.
        server: uuid::Uuid,
        /// Where the repository's file system is mounted.
        mount_point: String,
        /// The repository's id.
        repository: String,
    },
}

/// Effects on servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerUndo {
    /// Release ownership of a server agent the step took.
    ReleaseOwnership {
        /// The server's address.
        address: String,
    },
    /// Bring a server's network configuration back to what it was before a step changed it.
    Network {
        /// The server.
        server: uuid::Uuid,
        /// What to restore.
        point: Box<crate::driver::RestorePoint>,
    },
    /// Take a server out of the cluster it joined.
    LeaveCluster {
        /// The server.
        server: uuid::Uuid,
    },
    /// Bring a member's view of its cluster back to what it was (the members before a change).
    Cluster {
        /// The server.
        server: uuid::Uuid,
        /// The cluster as it was.
        spec: Box<crate::driver::ClusterSpec>,
    },
}

/// What a journal may hold: today's records, or the flat records of journals written before the
/// undo records were split by subsystem.
#[derive(Deserialize)]
#[serde(untagged)]
enum UndoRepr {
    Current(Current),
    Legacy(Legacy),
}

#[derive(Deserialize)]
enum Current {
    Restore { object: ObjectRef, before: Option<Box<Object>> },
    Domain(DomainUndo),
    Storage(StorageUndo),
    Server(ServerUndo),
}

#[derive(Deserialize)]
enum Legacy {
    DestroyDomain { server: uuid::Uuid, vm: uuid::Uuid },
    MigrateBack { from: uuid::Uuid, to: uuid::Uuid, vm: uuid::Uuid },
    DeleteFile { server: uuid::Uuid, path: String },
    ReleaseOwnership { address: String },
    Unpause { server: uuid::Uuid, vm: uuid::Uuid },
}

impl From<UndoRepr> for Undo {
    fn from(r: UndoRepr) -> Undo {
        match r {
            UndoRepr::Current(Current::Restore { object, before }) => Undo::RevertObject { object, before },
            UndoRepr::Current(Current::Domain(d)) => Undo::Domain(d),
            UndoRepr::Current(Current::Storage(s)) => Undo::Storage(s),
            UndoRepr::Current(Current::Server(s)) => Undo::Server(s),
            UndoRepr::Legacy(Legacy::DestroyDomain { server, vm }) => {
                Undo::Domain(DomainUndo::Destroy { server, vm })
            }
            UndoRepr::Legacy(Legacy::MigrateBack { from, to, vm }) => {
                Undo::Domain(DomainUndo::MigrateBack { from, to, vm })
            }
            UndoRepr::Legacy(Legacy::Unpause { server, vm }) => {
                Undo::Domain(DomainUndo::Unpause { server, vm })
            }
            UndoRepr::Legacy(Legacy::DeleteFile { server, path }) => {
                Undo::Storage(StorageUndo::DeleteFile { server, path })
            }
            UndoRepr::Legacy(Legacy::ReleaseOwnership { address }) => {
                Undo::Server(ServerUndo::ReleaseOwnership { address })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectKind;

    const S: &str = "5b848d1a-c95c-4411-848a-34317e167ad8";
    const V: &str = "0b1c4f8e-3d2a-4e6f-9a1b-2c3d4e5f6a7b";

    fn uuid(s: &str) -> uuid::Uuid {
        s.parse().unwrap()
    }

    #[test]
    fn journals_written_before_the_split_by_subsystem_still_decode() {
        let cases = [
            (
                format!(r#"{{"DestroyDomain":{{"server":"{S}","vm":"{V}"}}}}"#),
                Undo::Domain(DomainUndo::Destroy { server: uuid(S), vm: uuid(V) }),
            ),
            (
                format!(r#"{{"MigrateBack":{{"from":"{S}","to":"{V}","vm":"{V}"}}}}"#),
                Undo::Domain(DomainUndo::MigrateBack { from: uuid(S), to: uuid(V), vm: uuid(V) }),
            ),
            (
                format!(r#"{{"Unpause":{{"server":"{S}","vm":"{V}"}}}}"#),
                Undo::Domain(DomainUndo::Unpause { server: uuid(S), vm: uuid(V) }),
            ),
            (
                format!(r#"{{"DeleteFile":{{"server":"{S}","path":"/OVS/x.img"}}}}"#),
                Undo::Storage(StorageUndo::DeleteFile { server: uuid(S), path: "/OVS/x.img".into() }),
            ),
            (
                r#"{"ReleaseOwnership":{"address":"10.0.0.5"}}"#.to_owned(),
                Undo::Server(ServerUndo::ReleaseOwnership { address: "10.0.0.5".into() }),
            ),
            (
                format!(r#"{{"Restore":{{"object":{{"kind":"Vm","id":"{V}"}},"before":null}}}}"#),
                Undo::RevertObject { object: ObjectRef::new(ObjectKind::Vm, uuid(V)), before: None },
            ),
        ];
        for (json, want) in cases {
            let got: Undo = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(got, want, "{json}");
        }
    }

    #[test]
    fn records_round_trip_in_the_current_encoding() {
        let all = [
            Undo::Domain(DomainUndo::Destroy { server: uuid(S), vm: uuid(V) }),
            Undo::Domain(DomainUndo::ColdMoveBack { source: uuid(S), target: uuid(V), vm: uuid(V) }),
            Undo::Storage(StorageUndo::DeleteFile { server: uuid(S), path: "p".into() }),
            Undo::Server(ServerUndo::ReleaseOwnership { address: "a".into() }),
            Undo::RevertObject { object: ObjectRef::new(ObjectKind::Vm, uuid(V)), before: None },
        ];
        for u in all {
            let json = serde_json::to_string(&u).unwrap();
            assert_eq!(serde_json::from_str::<Undo>(&json).unwrap(), u, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&Undo::Domain(DomainUndo::Destroy { server: uuid(S), vm: uuid(V) }))
                .unwrap(),
            format!(r#"{{"Domain":{{"Destroy":{{"server":"{S}","vm":"{V}"}}}}}}"#)
        );
    }

    #[test]
    fn an_unknown_record_is_refused() {
        assert!(serde_json::from_str::<Undo>(r#"{"Explode":{}}"#).is_err());
    }
}
