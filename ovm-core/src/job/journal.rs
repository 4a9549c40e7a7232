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

    /// Every undo record of effects on servers, newest first (the order they are undone in).
    pub fn server_effects(&self) -> impl Iterator<Item = &Undo> {
        self.steps.iter().rev().flat_map(|(_, u)| u.iter().rev()).filter(|u| u.is_server_effect())
    }
}
