//! `metav1.Condition` helpers and condition types (kstatus-compatible); the reasons are
//! [`Reason`].
//!
//! The controller keeps three condition types on every object:
//! - [`READY`]: `True` when the work is done for the observed generation, `False` when it
//!   failed, `Unknown` while in progress.
//! - [`RECONCILING`]: present (`True`) only while work is in progress; reason
//!   [`Reason::Progressing`] or [`Reason::ProgressingWithRetry`].
//! - [`STALLED`]: present (`True`) only when the object cannot succeed without a change of
//!   its spec or of something it references; the reason says why (a permanent [`Reason`]).
//!
//! [`mark_ready`], [`mark_reconciling`], [`mark_retrying`], [`mark_stalled`] and
//! [`mark_not_ready`] keep these three consistent;
//! [`set_condition`] is the primitive: it replaces the condition of the same type and keeps
//! `lastTransitionTime` unless the status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::reason::Reason;

/// Condition type: the object's work is done (`True`), failed (`False`) or in progress (`Unknown`).
pub const READY: &str = "Ready";
/// Condition type: work is in progress (abnormal-true: present only while reconciling).
pub const RECONCILING: &str = "Reconciling";
/// Condition type: the object cannot succeed without a spec change (abnormal-true).
pub const STALLED: &str = "Stalled";

/// Condition status `"True"`.
pub const TRUE: &str = "True";
/// Condition status `"False"`.
pub const FALSE: &str = "False";
/// Condition status `"Unknown"`.
pub const UNKNOWN: &str = "Unknown";

/// Builds a condition with `lastTransitionTime = now`. `status` is [`TRUE`], [`FALSE`] or
/// [`UNKNOWN`]. `message` is for humans (a `metav1.Condition` allows up to 32768 bytes;
/// longer messages are cut at a character boundary).
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: Reason,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let mut message = message.into();
    truncate_message(&mut message);
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.as_str().to_string(),
        message,
        observed_generation,
        // The API server keeps whole seconds; so do we, so a status read back compares equal.
        last_transition_time: Time(Timestamp::from_second(now.as_second()).unwrap_or(now)),
    }
}

/// Cuts `message` to the 32768-byte limit of `metav1.Condition.message`.
fn truncate_message(message: &mut String) {
    const MAX: usize = 32768;
    if message.len() > MAX {
        let mut cut = MAX - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
}

/// Sets `condition` in `conditions`, replacing the one of the same type in place (order
/// is kept) or appending it. When the status is unchanged, the existing
/// `lastTransitionTime` is kept (reason, message and observedGeneration are updated).
/// Returns whether anything other than `lastTransitionTime` differs from before, so a
/// caller can skip a status write when nothing changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.clone();
            }
            let changed = *existing != condition;
            *existing = condition;
            changed
        }
        None => {
            conditions.push(condition);
            true
        }
    }
}

/// The condition of type `type_`, if present.
pub fn get_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Removes the condition of type `type_`; returns whether one was removed.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get_condition(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// Whether the object is Ready=True for `generation` (the condition's observedGeneration
/// equals it). This is what `kubectl wait --for=condition=Ready` plus kstatus mean.
pub fn is_ready_for(conditions: &[Condition], generation: Option<i64>) -> bool {
    get_condition(conditions, READY)
        .is_some_and(|c| c.status == TRUE && c.observed_generation == generation)
}

/// Sets each `(type, status)` of `set` with the same reason, message and generation, in
/// that order, and removes the types in `remove`; returns whether anything changed.
fn transition(
    conditions: &mut Vec<Condition>,
    set: &[(&str, &str)],
    remove: &[&str],
    (reason, message, generation, now): (Reason, String, Option<i64>, Timestamp),
) -> bool {
    let mut changed = false;
    for (type_, status) in set {
        changed |= set_condition(
            conditions,
            new_condition(type_, status, reason, message.clone(), generation, now),
        );
    }
    for type_ in remove {
        changed |= remove_condition(conditions, type_);
    }
    changed
}

/// Success: Ready=True with `reason` (usually [`Reason::Succeeded`]); removes Reconciling
/// and Stalled. Returns whether anything changed.
pub fn mark_ready(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reason: Reason,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    transition(
        conditions,
        &[(READY, TRUE)],
        &[RECONCILING, STALLED],
        (reason, message.into(), generation, now),
    )
}

/// Work in progress: Reconciling=True with `reason` (usually [`Reason::Progressing`]),
/// Ready=Unknown with the same reason and message;
/// removes Stalled. Returns whether anything changed.
pub fn mark_reconciling(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reason: Reason,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    transition(
        conditions,
        &[(RECONCILING, TRUE), (READY, UNKNOWN)],
        &[STALLED],
        (reason, message.into(), generation, now),
    )
}

/// A transient failure, retried with backoff: Reconciling=True and Ready=False, both with
/// [`Reason::ProgressingWithRetry`] and `message` (what failed); removes Stalled. Transfers
/// and stores both use it. kstatus reads Reconciling=True as in progress whatever Ready
/// says; Ready=False (not Unknown, as a first attempt has) lets `kubectl wait
/// --for=condition=Ready=false` and Argo CD's message tell a retrying object from a fresh
/// one, as Flux's own objects do. Returns whether anything changed.
pub fn mark_retrying(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    transition(
        conditions,
        &[(READY, FALSE), (RECONCILING, TRUE)],
        &[STALLED],
        (
            Reason::ProgressingWithRetry,
            message.into(),
            generation,
            now,
        ),
    )
}

/// Permanent failure: Stalled=True and Ready=False, both with `reason` (a permanent
/// [`Reason`]) and `message` (what the user must fix); removes Reconciling.
/// Returns whether anything changed.
pub fn mark_stalled(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reason: Reason,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    transition(
        conditions,
        &[(STALLED, TRUE), (READY, FALSE)],
        &[RECONCILING],
        (reason, message.into(), generation, now),
    )
}

/// Not ready without being stalled or in progress (e.g. [`Reason::Suspended`]):
/// Ready=False; removes Reconciling and Stalled. Returns whether anything changed.
pub fn mark_not_ready(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reason: Reason,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    transition(
        conditions,
        &[(READY, FALSE)],
        &[RECONCILING, STALLED],
        (reason, message.into(), generation, now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn set_appends_then_replaces_in_place() {
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            new_condition(READY, UNKNOWN, Reason::Progressing, "a", Some(1), t(0))
        ));
        assert!(set_condition(
            &mut conds,
            new_condition(RECONCILING, TRUE, Reason::Progressing, "b", Some(1), t(0))
        ));
        assert!(set_condition(
            &mut conds,
            new_condition(READY, TRUE, Reason::Succeeded, "done", Some(1), t(5))
        ));
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[0].type_, READY, "order kept");
        assert_eq!(conds[0].status, TRUE);
        assert_eq!(conds[0].last_transition_time, Time(t(5)), "status changed");
    }

    #[test]
    fn same_status_keeps_transition_time() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            new_condition(READY, FALSE, Reason::SecretNotFound, "x", Some(1), t(0)),
        );
        let changed = set_condition(
            &mut conds,
            new_condition(READY, FALSE, Reason::Forbidden, "y", Some(2), t(10)),
        );
        assert!(changed);
        let c = get_condition(&conds, READY).unwrap();
        assert_eq!(c.last_transition_time, Time(t(0)));
        assert_eq!(c.reason, "Forbidden");
        assert_eq!(c.message, "y");
        assert_eq!(c.observed_generation, Some(2));
    }

    #[test]
    fn identical_set_reports_unchanged() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            new_condition(READY, TRUE, Reason::Succeeded, "ok", Some(3), t(0)),
        );
        let changed = set_condition(
            &mut conds,
            new_condition(READY, TRUE, Reason::Succeeded, "ok", Some(3), t(99)),
        );
        assert!(!changed, "only the timestamp differed and it is kept");
        assert_eq!(conds[0].last_transition_time, Time(t(0)));
    }

    #[test]
    fn get_remove_is_true() {
        let mut conds = Vec::new();
        assert!(get_condition(&conds, READY).is_none());
        assert!(!remove_condition(&mut conds, READY));
        set_condition(
            &mut conds,
            new_condition(STALLED, TRUE, Reason::Forbidden, "403", None, t(0)),
        );
        assert!(is_true(&conds, STALLED));
        assert!(!is_true(&conds, READY));
        assert!(remove_condition(&mut conds, STALLED));
        assert!(conds.is_empty());
    }

    #[test]
    fn kstatus_transitions() {
        let mut conds = Vec::new();
        assert!(mark_reconciling(
            &mut conds,
            Some(1),
            Reason::Progressing,
            "copying",
            t(0)
        ));
        assert_eq!(get_condition(&conds, READY).unwrap().status, UNKNOWN);
        assert!(is_true(&conds, RECONCILING));
        assert!(!mark_reconciling(
            &mut conds,
            Some(1),
            Reason::Progressing,
            "copying",
            t(1)
        ));

        assert!(mark_stalled(
            &mut conds,
            Some(1),
            Reason::ArtifactNotInManifest,
            "artifact foo:1.0.0 is not in manifest m",
            t(2)
        ));
        assert!(get_condition(&conds, RECONCILING).is_none());
        assert!(is_true(&conds, STALLED));
        let ready = get_condition(&conds, READY).unwrap();
        assert_eq!(ready.status, FALSE);
        assert_eq!(ready.reason, "ArtifactNotInManifest");
        assert_eq!(ready.last_transition_time, Time(t(2)));

        assert!(mark_ready(
            &mut conds,
            Some(2),
            Reason::Succeeded,
            "pushed",
            t(3)
        ));
        assert_eq!(conds.len(), 1);
        assert!(is_ready_for(&conds, Some(2)));
        assert!(!is_ready_for(&conds, Some(3)));

        assert!(mark_not_ready(
            &mut conds,
            Some(3),
            Reason::Suspended,
            "suspended",
            t(4)
        ));
        assert_eq!(get_condition(&conds, READY).unwrap().status, FALSE);

        assert!(mark_retrying(&mut conds, Some(3), "429", t(5)));
        assert!(is_true(&conds, RECONCILING));
        let ready = get_condition(&conds, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            (FALSE, "ProgressingWithRetry")
        );
        assert!(!mark_retrying(&mut conds, Some(3), "429", t(6)));
    }

    #[test]
    fn long_messages_are_cut() {
        let c = new_condition(
            READY,
            FALSE,
            Reason::Forbidden,
            "é".repeat(20000),
            None,
            t(0),
        );
        assert!(c.message.len() <= 32768);
        assert!(c.message.ends_with("..."));
    }
}
