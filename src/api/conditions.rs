//! `metav1.Condition` helpers, condition types and reasons (kstatus-compatible).
//!
//! The controller keeps three condition types on every object:
//! - [`READY`]: `True` when the work is done for the observed generation, `False` when it
//!   failed, `Unknown` while in progress.
//! - [`RECONCILING`]: present (`True`) only while work is in progress; reason
//!   [`reason::PROGRESSING`] or [`reason::PROGRESSING_WITH_RETRY`].
//! - [`STALLED`]: present (`True`) only when the object cannot succeed without a change of
//!   its spec or of something it references; the reason says why (see [`reason`]).
//!
//! [`mark_ready`], [`mark_reconciling`] and [`mark_stalled`] keep these three consistent;
//! [`set_condition`] is the primitive: it replaces the condition of the same type and keeps
//! `lastTransitionTime` unless the status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

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

/// Condition reasons (CamelCase, as `metav1.Condition` requires).
pub mod reason {
    /// Ready=True: the destination holds the artifact's digest for the observed generation
    /// (or, for a store: ARM answered and the store is ACR-backed).
    pub const SUCCEEDED: &str = "Succeeded";
    /// Reconciling: the first attempt (or a re-run) is in progress.
    pub const PROGRESSING: &str = "Progressing";
    /// Reconciling: a transient failure (network, 5xx, 429, token expiry, ARM throttling)
    /// happened; retrying with backoff.
    pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
    /// Ready=False (no Stalled): `spec.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";

    // Permanent failures (Stalled=True, Ready=False): need a change by the user.
    /// The (artifact, version) is not listed in the AOSM artifact manifest, or its
    /// artifactType does not fit the source.
    pub const ARTIFACT_NOT_IN_MANIFEST: &str = "ArtifactNotInManifest";
    /// A version is not in the `1.2.3` format ACR/AOSM requires.
    pub const VERSION_FORMAT: &str = "VersionFormat";
    /// A Helm chart's name or version differs from the artifact name or version.
    pub const CHART_NAME_MISMATCH: &str = "ChartNameMismatch";
    /// A Secret (or a key in it) named by the spec or the store does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The store does not exist, or a ClusterArtifactStore's `allowedNamespaces` does not
    /// select the transfer's namespace.
    pub const STORE_NOT_ALLOWED: &str = "StoreNotAllowed";
    /// A namespaced ArtifactStore would authenticate as the controller itself (its
    /// workload or managed identity); the cluster admin has not allowed that
    /// (`--namespaced-store-ambient-identity`). Give the store its own credential.
    pub const AMBIENT_IDENTITY_NOT_ALLOWED: &str = "AmbientIdentityNotAllowed";
    /// A namespaced ArtifactStore overrides an Azure endpoint on a host the cluster admin
    /// has not allowed (`--namespaced-store-endpoint-hosts`).
    pub const ENDPOINT_NOT_ALLOWED: &str = "EndpointNotAllowed";
    /// The ServiceAccount named by `identity.serviceAccountName` does not exist in the
    /// store's namespace, or has no `azure.workload.identity/client-id` annotation.
    pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
    /// ARM or the registry answered 403: the identity lacks a role assignment or scope.
    pub const FORBIDDEN: &str = "Forbidden";
    /// The source (image, chart, ConfigMap, key, store artifact) does not exist.
    pub const SOURCE_NOT_FOUND: &str = "SourceNotFound";
    /// The AOSM artifact store is not ACR-backed (e.g. AzureStorageAccount): not supported.
    pub const UNSUPPORTED_STORE_TYPE: &str = "UnsupportedStoreType";
    /// The spec is invalid in a way the CRD schema could not catch.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A ConfigMap (or a key in it) named by the spec does not exist.
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    /// The AOSM publisher, artifact store or artifact manifest does not exist in ARM.
    pub const STORE_NOT_FOUND: &str = "StoreNotFound";
    /// Content failed verification (digest mismatch).
    pub const INTEGRITY_ERROR: &str = "IntegrityError";
    /// Any other permanent failure.
    pub const TRANSFER_FAILED: &str = "TransferFailed";

    /// All permanent (Stalled) reasons.
    pub const PERMANENT: &[&str] = &[
        ARTIFACT_NOT_IN_MANIFEST,
        VERSION_FORMAT,
        CHART_NAME_MISMATCH,
        SECRET_NOT_FOUND,
        STORE_NOT_ALLOWED,
        AMBIENT_IDENTITY_NOT_ALLOWED,
        ENDPOINT_NOT_ALLOWED,
        SERVICE_ACCOUNT_NOT_FOUND,
        FORBIDDEN,
        SOURCE_NOT_FOUND,
        UNSUPPORTED_STORE_TYPE,
        INVALID_SPEC,
        CONFIG_MAP_NOT_FOUND,
        STORE_NOT_FOUND,
        INTEGRITY_ERROR,
        TRANSFER_FAILED,
    ];

    /// Whether `reason` is one of the permanent (Stalled) reasons.
    pub fn is_permanent(reason: &str) -> bool {
        PERMANENT.contains(&reason)
    }
}

/// Builds a condition with `lastTransitionTime = now`. `status` is [`TRUE`], [`FALSE`] or
/// [`UNKNOWN`]. `message` is for humans (a `metav1.Condition` allows up to 32768 bytes;
/// longer messages are cut at a character boundary).
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let mut message = message.into();
    truncate_message(&mut message);
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
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

/// Success: Ready=True with `reason` (usually [`reason::SUCCEEDED`]); removes Reconciling
/// and Stalled. Returns whether anything changed.
pub fn mark_ready(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    let mut changed = set_condition(
        conditions,
        new_condition(READY, TRUE, reason, message, generation, now),
    );
    changed |= remove_condition(conditions, RECONCILING);
    changed |= remove_condition(conditions, STALLED);
    changed
}

/// Work in progress: Reconciling=True with `reason` ([`reason::PROGRESSING`] or
/// [`reason::PROGRESSING_WITH_RETRY`]), Ready=Unknown with the same reason and message;
/// removes Stalled. Returns whether anything changed.
pub fn mark_reconciling(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    let message = message.into();
    let mut changed = set_condition(
        conditions,
        new_condition(RECONCILING, TRUE, reason, message.clone(), generation, now),
    );
    changed |= set_condition(
        conditions,
        new_condition(READY, UNKNOWN, reason, message, generation, now),
    );
    changed |= remove_condition(conditions, STALLED);
    changed
}

/// Permanent failure: Stalled=True and Ready=False, both with `reason` (one of
/// [`reason::PERMANENT`]) and `message` (what the user must fix); removes Reconciling.
/// Returns whether anything changed.
pub fn mark_stalled(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    let message = message.into();
    let mut changed = set_condition(
        conditions,
        new_condition(STALLED, TRUE, reason, message.clone(), generation, now),
    );
    changed |= set_condition(
        conditions,
        new_condition(READY, FALSE, reason, message, generation, now),
    );
    changed |= remove_condition(conditions, RECONCILING);
    changed
}

/// Not ready without being stalled or in progress (e.g. [`reason::SUSPENDED`]):
/// Ready=False; removes Reconciling and Stalled. Returns whether anything changed.
pub fn mark_not_ready(
    conditions: &mut Vec<Condition>,
    generation: Option<i64>,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
) -> bool {
    let mut changed = set_condition(
        conditions,
        new_condition(READY, FALSE, reason, message, generation, now),
    );
    changed |= remove_condition(conditions, RECONCILING);
    changed |= remove_condition(conditions, STALLED);
    changed
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
            new_condition(READY, UNKNOWN, reason::PROGRESSING, "a", Some(1), t(0))
        ));
        assert!(set_condition(
            &mut conds,
            new_condition(RECONCILING, TRUE, reason::PROGRESSING, "b", Some(1), t(0))
        ));
        assert!(set_condition(
            &mut conds,
            new_condition(READY, TRUE, reason::SUCCEEDED, "done", Some(1), t(5))
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
            new_condition(READY, FALSE, reason::SECRET_NOT_FOUND, "x", Some(1), t(0)),
        );
        let changed = set_condition(
            &mut conds,
            new_condition(READY, FALSE, reason::FORBIDDEN, "y", Some(2), t(10)),
        );
        assert!(changed);
        let c = get_condition(&conds, READY).unwrap();
        assert_eq!(c.last_transition_time, Time(t(0)));
        assert_eq!(c.reason, reason::FORBIDDEN);
        assert_eq!(c.message, "y");
        assert_eq!(c.observed_generation, Some(2));
    }

    #[test]
    fn identical_set_reports_unchanged() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            new_condition(READY, TRUE, reason::SUCCEEDED, "ok", Some(3), t(0)),
        );
        let changed = set_condition(
            &mut conds,
            new_condition(READY, TRUE, reason::SUCCEEDED, "ok", Some(3), t(99)),
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
            new_condition(STALLED, TRUE, reason::FORBIDDEN, "403", None, t(0)),
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
            reason::PROGRESSING,
            "copying",
            t(0)
        ));
        assert_eq!(get_condition(&conds, READY).unwrap().status, UNKNOWN);
        assert!(is_true(&conds, RECONCILING));
        assert!(!mark_reconciling(
            &mut conds,
            Some(1),
            reason::PROGRESSING,
            "copying",
            t(1)
        ));

        assert!(mark_stalled(
            &mut conds,
            Some(1),
            reason::ARTIFACT_NOT_IN_MANIFEST,
            "artifact foo:1.0.0 is not in manifest m",
            t(2)
        ));
        assert!(get_condition(&conds, RECONCILING).is_none());
        assert!(is_true(&conds, STALLED));
        let ready = get_condition(&conds, READY).unwrap();
        assert_eq!(ready.status, FALSE);
        assert_eq!(ready.reason, reason::ARTIFACT_NOT_IN_MANIFEST);
        assert_eq!(ready.last_transition_time, Time(t(2)));

        assert!(mark_ready(
            &mut conds,
            Some(2),
            reason::SUCCEEDED,
            "pushed",
            t(3)
        ));
        assert_eq!(conds.len(), 1);
        assert!(is_ready_for(&conds, Some(2)));
        assert!(!is_ready_for(&conds, Some(3)));

        assert!(mark_not_ready(
            &mut conds,
            Some(3),
            reason::SUSPENDED,
            "suspended",
            t(4)
        ));
        assert_eq!(get_condition(&conds, READY).unwrap().status, FALSE);
    }

    #[test]
    fn permanent_reasons() {
        for r in reason::PERMANENT {
            assert!(reason::is_permanent(r));
            assert!(r.chars().next().unwrap().is_ascii_uppercase());
        }
        assert!(!reason::is_permanent(reason::PROGRESSING_WITH_RETRY));
        assert!(!reason::is_permanent(reason::SUCCEEDED));
    }

    #[test]
    fn long_messages_are_cut() {
        let c = new_condition(
            READY,
            FALSE,
            reason::FORBIDDEN,
            "é".repeat(20000),
            None,
            t(0),
        );
        assert!(c.message.len() <= 32768);
        assert!(c.message.ends_with("..."));
    }
}
