//! [`decide`]: what a reconcile of a transfer does now, from its spec and status alone
//! (pure: no API call, no clock but the one handed in).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::conditions::{self, STALLED, TRUE, get_condition};
use crate::api::{ArtifactTransfer, Reason};

/// What to do with a transfer now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `spec.suspend`: nothing.
    Suspended,
    /// Copy (first sight, new generation, new `requested-at`, retry, or Stalled on a
    /// Kubernetes object that may exist by now).
    Run,
    /// Ready and `interval` has passed: one HEAD of the destination.
    Recheck,
    /// Nothing to do before this much time has passed.
    Wait(Duration),
}

fn elapsed_since(t: Option<&Time>, now: Timestamp) -> Option<Duration> {
    let t = t?;
    let d = now.duration_since(t.0);
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

/// Decides what a reconcile of `t` does at `now`.
pub fn decide(t: &ArtifactTransfer, now: Timestamp) -> Decision {
    if t.spec.suspend {
        return Decision::Suspended;
    }
    let Some(status) = &t.status else {
        return Decision::Run;
    };
    let generation = t.metadata.generation;
    if status.conditions.is_empty() || status.observed_generation != generation {
        return Decision::Run;
    }
    if let Some(requested) = t.requested_at()
        && status.last_handled_reconcile_at.as_deref() != Some(requested)
    {
        return Decision::Run;
    }
    let interval = t.spec.interval_or_default();
    if conditions::is_ready_for(&status.conditions, generation) {
        return match elapsed_since(status.completed_at.as_ref(), now) {
            Some(e) if e < interval => Decision::Wait(interval - e),
            _ => Decision::Recheck,
        };
    }
    if let Some(stalled) = get_condition(&status.conditions, STALLED)
        && stalled.status == TRUE
    {
        if stalled
            .reason
            .parse::<Reason>()
            .is_ok_and(Reason::awaits_kubernetes_object)
        {
            return Decision::Run;
        }
        return match elapsed_since(status.started_at.as_ref(), now) {
            Some(e) if e < interval => Decision::Wait(interval - e),
            _ => Decision::Run,
        };
    }
    Decision::Run
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{mark_ready, mark_stalled};
    use crate::api::{API_VERSION, ArtifactTransferStatus};
    use crate::transfer::{TransferError, status};

    fn transfer(extra: serde_json::Value) -> ArtifactTransfer {
        let mut v = serde_json::json!({
            "apiVersion": API_VERSION, "kind": "ArtifactTransfer",
            "metadata": {"name": "t", "namespace": "ns", "generation": 2},
            "spec": {
                "source": {"registry": {"image": "r.example:5000/a:1.0.0"}},
                "destination": {"artifactStore": {"storeRef": {"kind": "ClusterArtifactStore", "name": "s"},
                    "manifest": "m", "artifact": "a", "version": "1.0.0"}},
                "interval": "10m"
            }
        });
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                if k == "spec" {
                    for (sk, sv) in x.as_object().into_iter().flatten() {
                        obj["spec"][sk] = sv.clone();
                    }
                } else {
                    obj.insert(k.clone(), x.clone());
                }
            }
        }
        serde_json::from_value(v).expect("transfer")
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
    }

    fn ready(t: &mut ArtifactTransfer, generation: i64, completed: i64) {
        let mut s = ArtifactTransferStatus::default();
        mark_ready(
            &mut s.conditions,
            Some(generation),
            Reason::Succeeded,
            "ok",
            at(completed),
        );
        s.observed_generation = Some(generation);
        s.completed_at = Some(Time(at(completed)));
        t.status = Some(s);
    }

    fn stalled(t: &mut ArtifactTransfer, why: Reason, started: i64) {
        let mut s = ArtifactTransferStatus::default();
        mark_stalled(&mut s.conditions, Some(2), why, "fix it", at(started));
        s.observed_generation = Some(2);
        s.started_at = Some(Time(at(started)));
        t.status = Some(s);
    }

    #[test]
    fn first_sight_runs() {
        assert_eq!(
            decide(&transfer(serde_json::json!({})), at(0)),
            Decision::Run
        );
    }

    #[test]
    fn suspended_does_nothing() {
        let mut t = transfer(serde_json::json!({"spec": {"suspend": true}}));
        ready(&mut t, 2, 0);
        assert_eq!(decide(&t, at(10_000)), Decision::Suspended);
    }

    #[test]
    fn ready_waits_until_interval_then_rechecks() {
        let mut t = transfer(serde_json::json!({}));
        ready(&mut t, 2, 0);
        assert_eq!(decide(&t, at(60)), Decision::Wait(Duration::from_secs(540)));
        assert_eq!(decide(&t, at(600)), Decision::Recheck);
    }

    #[test]
    fn new_generation_runs() {
        let mut t = transfer(serde_json::json!({}));
        ready(&mut t, 1, 0);
        assert_eq!(decide(&t, at(1)), Decision::Run);
    }

    #[test]
    fn new_requested_at_runs_once() {
        let mut t = transfer(
            serde_json::json!({"metadata": {"name": "t", "namespace": "ns", "generation": 2,
            "annotations": {"artifacts.aosm.dev/requested-at": "now-1"}}}),
        );
        ready(&mut t, 2, 0);
        assert_eq!(decide(&t, at(1)), Decision::Run);
        if let Some(s) = t.status.as_mut() {
            s.last_handled_reconcile_at = Some("now-1".into());
        }
        assert_eq!(decide(&t, at(1)), Decision::Wait(Duration::from_secs(599)));
    }

    #[test]
    fn stalled_on_arm_waits_for_interval() {
        let mut t = transfer(serde_json::json!({}));
        stalled(&mut t, Reason::ArtifactNotInManifest, 0);
        assert_eq!(decide(&t, at(30)), Decision::Wait(Duration::from_secs(570)));
        assert_eq!(decide(&t, at(601)), Decision::Run);
    }

    #[test]
    fn stalled_on_missing_secret_rechecks() {
        let mut t = transfer(serde_json::json!({}));
        stalled(&mut t, Reason::SecretNotFound, 0);
        assert_eq!(decide(&t, at(1)), Decision::Run);
    }

    #[test]
    fn retrying_runs() {
        let mut t = transfer(serde_json::json!({}));
        let mut s = ArtifactTransferStatus::default();
        status::failed(
            &mut s,
            &TransferError {
                reason: Reason::TransientFailure,
                message: "503".into(),
                retry_after: None,
            },
            Some(2),
            at(0),
        );
        t.status = Some(s);
        assert_eq!(decide(&t, at(1)), Decision::Run);
    }
}
