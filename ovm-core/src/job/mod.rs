//! The records of the job engine: what a job journals so that a failure, an abort or a crash undoes
//! exactly what it did.
//!
//! A job's [`Journal`] lists its steps with the [`Undo`] records each wrote so far. An undo record
//! is plain data: either "put this object back as it was" ([`Undo::RevertObject`], written in the
//! same transaction as the inventory change it reverts) or the undo of an effect on a server, owned
//! by the subsystem that performed the effect ([`DomainUndo`], [`StorageUndo`], [`ServerUndo`]).
//! Effects on servers are journaled *before* they are made and their undo is idempotent, so
//! recovery after a crash needs no closures: it replays the records. The manager's engine
//! (`manager::jobs`) runs the steps and executes the records; each subsystem executes its own.
//!
//! Adding an effect with its undo: add a variant to that subsystem's undo enum (say
//! [`StorageUndo`]) and its arm where the subsystem executes it; a new subsystem adds its enum here
//! and one variant of [`Undo`]. Journals written by earlier versions stay readable
//! ([`Undo`]'s decoding accepts the former flat variants).

mod journal;
mod undo;

pub use journal::Journal;
pub use undo::{DomainUndo, ServerUndo, StorageUndo, Undo};
