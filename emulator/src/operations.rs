//! Long-running operations (a PUT that creates a resource, a DELETE, an `updateState`),
//! polled through the URL their first answer names, in the form of the official examples
//! of the `Microsoft.HybridNetwork` specification:
//! `https://<arm>/providers/microsoft.hybridnetwork/locations/<LOCATION>/operationStatuses/<uuid>*<HEX>?api-version=2021-05-01`
//! (`ArtifactManifestUpdateState.json`, `ArtifactManifestDelete.json`). How that URL
//! answers depends on the header that named it: a `Location` answers 202 while the
//! operation runs and then its final answer; an `Azure-AsyncOperation` answers 200 with
//! `{"status": "InProgress" | "Succeeded" | "Failed", ...}`.

use crate::resources::ResourceId;
use std::collections::HashMap;

/// The api-version of the operation URLs, as in the official examples.
pub const OPERATION_API_VERSION: &str = "2021-05-01";

/// How an operation's URL is polled: the header of the first answer that named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStyle {
    /// `Location`: 202 (without a new `Location`) until done, then the final answer.
    Location,
    /// `Azure-AsyncOperation`: 200 with the operation's `status`.
    AsyncOperation,
}

/// What an operation does when it completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Sets a manifest's `artifactManifestState`; its final answer is
    /// `{"artifactManifestState": ...}`.
    UpdateState {
        /// The manifest.
        manifest: ResourceId,
        /// The state requested.
        target_state: String,
    },
    /// A PUT that created a resource (already written): nothing left to do.
    Created,
    /// A DELETE (already applied): its final answer is 204.
    Deleted,
}

/// One operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// What completing it does.
    pub effect: Effect,
    /// How it is polled.
    pub style: PollStyle,
    /// Subscription of the resource (whose principals may poll it).
    pub subscription: String,
    /// Azure region in its URL (upper case, as in the examples).
    pub location: String,
    /// Polls still to answer "in progress".
    pub polls_left: u32,
    /// Start time (RFC 3339).
    pub started: String,
    /// End time once done.
    pub ended: Option<String>,
    /// Whether it succeeded (set when done).
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

/// A new operation id in the examples' form: a UUID, `*`, and 64 upper-case hex digits.
fn new_id() -> String {
    let uuid = uuid::Uuid::new_v4();
    let tail: String = (0..2)
        .map(|_| {
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .to_ascii_uppercase()
        })
        .collect();
    format!("{uuid}*{tail}")
}

impl Operations {
    /// Registers an operation and returns its id.
    pub fn start(&mut self, op: Operation) -> String {
        let id = new_id();
        self.ops.insert(id.clone(), op);
        id
    }

    /// The operation `id`, if any (without counting a poll).
    pub fn get(&self, id: &str) -> Option<&Operation> {
        self.ops.get(id)
    }

    /// Counts one poll. Returns the operation (after the poll) and whether this poll
    /// completed it (the caller then applies its effect and calls [`Operations::finish`]).
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

/// The URL of operation `id` on the emulator at `base_url`, in the examples' form.
pub fn url(base_url: &str, location: &str, id: &str) -> String {
    format!(
        "{base_url}/providers/microsoft.hybridnetwork/locations/{}/operationStatuses/{id}?api-version={OPERATION_API_VERSION}",
        location.to_ascii_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_urls_have_the_examples_form() {
        let id = new_id();
        let (uuid, tail) = id.split_once('*').unwrap();
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{id}");
        assert_eq!(tail.len(), 64);
        assert!(
            tail.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_eq!(
            url("https://management.azure.com", "eastus2euap", "x*AB"),
            "https://management.azure.com/providers/microsoft.hybridnetwork/locations/EASTUS2EUAP/operationStatuses/x*AB?api-version=2021-05-01"
        );
    }

    #[test]
    fn polls_count_down_then_complete_once() {
        let mut ops = Operations::default();
        let id = ops.start(Operation {
            effect: Effect::Deleted,
            style: PollStyle::Location,
            subscription: "s".into(),
            location: "EASTUS".into(),
            polls_left: 1,
            started: "t0".into(),
            ended: None,
            succeeded: false,
        });
        assert!(!ops.poll(&id).unwrap().1);
        let (op, completes) = ops.poll(&id).unwrap();
        assert!(completes);
        assert_eq!(op.state(), PollState::InProgress);
        ops.finish(&id, true, "t1".into());
        let (op, completes) = ops.poll(&id).unwrap();
        assert!(!completes);
        assert_eq!(op.state(), PollState::Done(true));
        assert!(ops.poll("nope").is_none());
    }
}
