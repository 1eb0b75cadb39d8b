//! Long-running updateState operations, polled through their `Location`
//! (`operationResults`) or `Azure-AsyncOperation` (`operationStatuses`) URL.

use crate::resources::ResourceId;
use std::collections::HashMap;

/// One updateState operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The manifest whose state changes.
    pub manifest: ResourceId,
    /// The requested state.
    pub target_state: String,
    /// Azure region in the polling URLs.
    pub location: String,
    /// Polls still to answer "in progress".
    pub polls_left: u32,
    /// Start time (RFC 3339).
    pub started: String,
    /// End time once done.
    pub ended: Option<String>,
    /// Whether the manifest still existed when the operation completed.
    pub succeeded: bool,
}

/// What a poll sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollState {
    /// Still running.
    InProgress,
    /// Finished now or earlier; `bool` = succeeded.
    Done(bool),
}

/// All operations by id.
#[derive(Debug, Default)]
pub struct Operations {
    ops: HashMap<String, Operation>,
}

impl Operations {
    /// Registers an operation and returns its id.
    pub fn start(&mut self, op: Operation) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.ops.insert(id.clone(), op);
        id
    }

    /// Counts one poll. Returns the operation (after the poll) and whether this poll
    /// completed it (the caller then applies the state change).
    pub fn poll(&mut self, id: &str) -> Option<(Operation, bool)> {
        let op = self.ops.get_mut(id)?;
        if op.ended.is_some() {
            return Some((op.clone(), false));
        }
        if op.polls_left > 0 {
            op.polls_left -= 1;
            return Some((op.clone(), false));
        }
        Some((op.clone(), true))
    }

    /// Marks an operation finished.
    pub fn finish(&mut self, id: &str, succeeded: bool, ended: String) {
        if let Some(op) = self.ops.get_mut(id) {
            op.ended = Some(ended);
            op.succeeded = succeeded;
        }
    }
}

impl Operation {
    /// Poll state for the answer.
    pub fn state(&self) -> PollState {
        match self.ended {
            Some(_) => PollState::Done(self.succeeded),
            None => PollState::InProgress,
        }
    }
}
