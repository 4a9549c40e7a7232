//! A job's journal: its steps and their undo records, persisted with the job.

use serde::{Deserialize, Serialize};

use super::Undo;

/// The persisted progress of a job's steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// Number of steps the job has.
    #[serde(default)]
    pub total: usize,
    /// Completed or in-progress steps with the undo records written so far, in order.
    pub steps: Vec<(String, Vec<Undo>)>,
    /// Number of steps fully completed.
    #[serde(default)]
    pub done: usize,
}

impl Journal {
    /// A journal for a job of `total` steps, none begun.
    pub fn new(total: usize) -> Journal {
        Journal { total, steps: Vec::new(), done: 0 }
    }

    /// Every undo record with the step that wrote it, newest first: the order a rollback runs them
    /// in (the last step first, and within a step the last change first).
    pub fn rollback_order(&self) -> impl Iterator<Item = (&str, &Undo)> {
        self.steps.iter().rev().flat_map(|(name, u)| u.iter().rev().map(move |u| (name.as_str(), u)))
    }

    /// Every undo record of effects on servers, newest first (the order they are undone in).
    pub fn server_effects(&self) -> impl Iterator<Item = &Undo> {
        self.rollback_order().map(|(_, u)| u).filter(|u| u.is_server_effect())
    }

    /// The steps a rollback undoes, newest first (begun steps included: a step that failed half-way
    /// has its first changes journaled).
    pub fn steps_undone(&self) -> Vec<String> {
        self.steps.iter().rev().map(|(name, _)| name.clone()).collect()
    }

    /// Whether every step had completed: a restart finalizes such a job instead of rolling it back.
    pub fn all_steps_done(&self) -> bool {
        self.total > 0 && self.done >= self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{DomainUndo, StorageUndo};
    use crate::model::{ObjectKind, ObjectRef};

    fn revert(n: u128) -> Undo {
        Undo::RevertObject { object: ObjectRef::new(ObjectKind::Vm, uuid::Uuid::from_u128(n)), before: None }
    }
    fn destroy(n: u128) -> Undo {
        Undo::Domain(DomainUndo::Destroy { server: uuid::Uuid::from_u128(100), vm: uuid::Uuid::from_u128(n) })
    }

    /// A job of three steps whose third failed after its first change: "place" changed the VM,
    /// "start domain" journaled a domain to destroy and changed the VM, "copy" journaled a file.
    fn interrupted() -> Journal {
        Journal {
            total: 3,
            steps: vec![
                ("place".into(), vec![revert(1)]),
                ("start domain".into(), vec![destroy(1), revert(2)]),
                (
                    "copy".into(),
                    vec![Undo::Storage(StorageUndo::DeleteFile {
                        server: uuid::Uuid::from_u128(100),
                        path: "/x".into(),
                    })],
                ),
            ],
            done: 2,
        }
    }

    #[test]
    fn a_rollback_undoes_the_last_step_first_and_within_a_step_the_last_change_first() {
        let j = interrupted();
        let order: Vec<(&str, &Undo)> = j.rollback_order().collect();
        assert_eq!(order.len(), 4);
        assert_eq!(order[0].0, "copy");
        assert!(matches!(order[0].1, Undo::Storage(_)));
        assert_eq!((order[1].0, order[1].1), ("start domain", &revert(2)));
        assert_eq!((order[2].0, order[2].1), ("start domain", &destroy(1)));
        assert_eq!((order[3].0, order[3].1), ("place", &revert(1)));
        assert_eq!(j.steps_undone(), ["copy", "start domain", "place"]);
    }

    #[test]
    fn server_effects_are_the_undos_a_restart_runs_once_servers_are_back() {
        let j = interrupted();
        let effects: Vec<&Undo> = j.server_effects().collect();
        assert_eq!(effects.len(), 2);
        assert!(matches!(effects[0], Undo::Storage(_)));
        assert_eq!(effects[1], &destroy(1));
    }

    #[test]
    fn only_a_journal_whose_steps_all_completed_is_finalized() {
        let mut j = interrupted();
        assert!(!j.all_steps_done());
        j.done = 3;
        assert!(j.all_steps_done());
        assert!(!Journal::new(0).all_steps_done(), "a job with no steps recorded is rolled back");
    }

    #[test]
    fn a_journal_round_trips_through_its_stored_encoding() {
        let j = interrupted();
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(serde_json::from_str::<Journal>(&text).unwrap(), j);
    }
}
