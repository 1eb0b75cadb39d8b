//! Reconciles one ArtifactTransfer: decide (run, re-check, wait, nothing), then run the
//! transfer core and write the outcome to status (server-side apply), events and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource as _, ResourceExt as _};

use super::context::{Context, FIELD_MANAGER, backoff};
use super::error::Error;
use super::inputs;
use super::progress::Counters;
use crate::api::conditions::{self, READY, RECONCILING, STALLED, TRUE, get_condition};
use crate::api::{API_VERSION, ArtifactTransfer, ArtifactTransferStatus};
use crate::transfer::resolve::resolve;
use crate::transfer::{Reason, TransferError, TransferRequest, status};

/// First retry delay of a transient failure; doubles up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest delay between retries of a transient failure.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// First re-check of a Stalled transfer waiting for a Kubernetes object (Secret,
/// ConfigMap, store, namespace label); doubles up to [`INPUT_RECHECK_MAX`].
pub const INPUT_RECHECK_BASE: Duration = Duration::from_secs(10);
/// Longest delay between re-checks of a missing Kubernetes object.
pub const INPUT_RECHECK_MAX: Duration = Duration::from_secs(300);
/// When a transfer's namespace already runs `--max-concurrent-per-namespace` transfers,
/// it is tried again after half to all of this.
pub const NAMESPACE_FULL_REQUEUE: Duration = Duration::from_secs(4);

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
    let interval = t.spec.interval().unwrap_or(Duration::from_secs(3600));
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

fn key(t: &ArtifactTransfer) -> String {
    format!(
        "ArtifactTransfer/{}/{}",
        t.namespace().unwrap_or_default(),
        t.name_any()
    )
}

/// Writes `status` with server-side apply (the controller owns the whole status).
async fn apply_status(
    ctx: &Context,
    t: &ArtifactTransfer,
    status: &ArtifactTransferStatus,
    manager: &str,
) -> Result<(), Error> {
    let api: Api<ArtifactTransfer> =
        Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "ArtifactTransfer",
        "status": status,
    });
    match api
        .patch_status(
            &t.name_any(),
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing left to report on (no finalizer by design).
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The reconcile function of the ArtifactTransfer controller.
pub async fn reconcile(t: Arc<ArtifactTransfer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&t, &ctx).await;
    let outcome = match &result {
        Ok(o) => o.label,
        Err(_) => "retry",
    };
    ctx.metrics
        .reconcile("ArtifactTransfer", outcome, started.elapsed());
    result.map(|o| o.action)
}

/// The error policy: exponential backoff with jitter per transfer.
pub fn error_policy(t: Arc<ArtifactTransfer>, error: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.failed(&key(&t));
    let delay = backoff(n, RETRY_BASE, RETRY_MAX);
    tracing::info!(
        transfer = %key(&t), error = %error, retry_in = ?delay, attempt = n,
        "transfer will be retried"
    );
    Action::requeue(delay)
}

struct Outcome {
    action: Action,
    label: &'static str,
}

impl Outcome {
    fn new(action: Action, label: &'static str) -> Self {
        Self { action, label }
    }
}

async fn reconcile_inner(t: &ArtifactTransfer, ctx: &Context) -> Result<Outcome, Error> {
    let now = Timestamp::now();
    match decide(t, now) {
        Decision::Suspended => {
            tracing::debug!(transfer = %key(t), "suspended");
            Ok(Outcome::new(Action::await_change(), "skipped"))
        }
        Decision::Wait(d) => Ok(Outcome::new(Action::requeue(d), "requeue")),
        decision => {
            let namespace = t.namespace().unwrap_or_default();
            // Held until this attempt is recorded: one namespace cannot hold every worker.
            let Some(_slot) = ctx.namespace_slots.try_acquire(&namespace) else {
                let delay = backoff(1, NAMESPACE_FULL_REQUEUE, NAMESPACE_FULL_REQUEUE);
                tracing::debug!(transfer = %key(t), retry_in = ?delay, "namespace at its concurrent-transfer cap; queued");
                return Ok(Outcome::new(Action::requeue(delay), "queued"));
            };
            match decision {
                Decision::Recheck => recheck(t, ctx).await,
                _ => run(t, ctx).await,
            }
        }
    }
}

/// One HEAD of the destination; a match only moves `completedAt`, anything else re-runs.
async fn recheck(t: &ArtifactTransfer, ctx: &Context) -> Result<Outcome, Error> {
    let status = t.status.clone().unwrap_or_default();
    let (Some(digest), Some(dest)) = (&status.digest, &status.destination_ref) else {
        return run(t, ctx).await;
    };
    let request = resolved(t, ctx).await?;
    let Ok(resolved_request) = &request else {
        return copy(t, ctx, request).await;
    };
    match ctx
        .executor
        .destination_digest(resolved_request, dest)
        .await
    {
        Ok(Some(found)) if &found == digest => {
            let mut next = status.clone();
            next.completed_at = Some(Time(Timestamp::now()));
            apply_status(ctx, t, &next, FIELD_MANAGER).await?;
            let interval = t.spec.interval().unwrap_or(Duration::from_secs(3600));
            tracing::debug!(transfer = %key(t), %digest, "destination still holds the digest");
            Ok(Outcome::new(Action::requeue(interval), "success"))
        }
        Ok(found) => {
            tracing::info!(
                transfer = %key(t), expected = %digest, found = ?found,
                "destination no longer holds the digest; copying again"
            );
            copy(t, ctx, request).await
        }
        Err(e) => {
            tracing::info!(transfer = %key(t), error = %e, "re-check failed; copying again");
            copy(t, ctx, request).await
        }
    }
}

/// Reads what `t` references and resolves it into a request (or the reason it cannot be).
async fn resolved(
    t: &ArtifactTransfer,
    ctx: &Context,
) -> Result<Result<TransferRequest, TransferError>, Error> {
    let gathered = inputs::for_transfer(&ctx.client, t, &ctx.namespace).await?;
    Ok(resolve(t, &gathered.inputs(&ctx.namespace, &ctx.policy)))
}

/// Resolves, runs and records one transfer attempt.
async fn run(t: &ArtifactTransfer, ctx: &Context) -> Result<Outcome, Error> {
    let request = resolved(t, ctx).await?;
    copy(t, ctx, request).await
}

/// Runs and records one attempt of an already resolved transfer (a resolve error is
/// recorded like any other failure).
async fn copy(
    t: &ArtifactTransfer,
    ctx: &Context,
    request: Result<TransferRequest, TransferError>,
) -> Result<Outcome, Error> {
    let generation = t.metadata.generation;
    let reference = t.object_ref(&());
    let previous = t.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.describe(&t.spec);
    status.last_handled_reconcile_at = t.requested_at().map(str::to_string);

    let request = match request {
        Ok(r) => r,
        Err(e) => return permanent_or_retry(t, ctx, status, &previous, e, Timestamp::now()).await,
    };

    let now = Timestamp::now();
    let retrying = get_condition(&previous.conditions, RECONCILING)
        .is_some_and(|c| c.reason == Reason::ProgressingWithRetry.as_str());
    let side = t.spec.store_side();
    let (verb, preposition) = match t.spec.direction() {
        crate::api::Direction::Push => ("pushing", "to"),
        crate::api::Direction::Pull => ("pulling", "from"),
    };
    let message = format!(
        "{verb} {}:{} {preposition} {} {} (manifest {})",
        side.artifact,
        side.version,
        side.store_ref.kind.as_str(),
        side.store_ref.name,
        side.manifest
    );

    if !retrying {
        conditions::mark_reconciling(
            &mut status.conditions,
            generation,
            Reason::Progressing,
            message.clone(),
            now,
        );
    }
    status.observed_generation = generation;
    status.started_at = Some(Time(now));
    status.progress = None;
    apply_status(ctx, t, &status, FIELD_MANAGER).await?;
    if !retrying {
        ctx.event(
            &reference,
            EventType::Normal,
            "Started",
            "Transfer",
            message,
        )
        .await;
    }
    tracing::info!(transfer = %key(t), "transfer started");

    let timeout = t.spec.timeout().unwrap_or(Duration::from_secs(1800));
    let counters = Arc::new(Counters::default());
    let began = Instant::now();
    let attempt = ctx.executor.run(&request, counters.as_ref());
    let result = {
        let writer = progress_writer(ctx, t, &status, counters.clone());
        tokio::pin!(attempt);
        tokio::pin!(writer);
        tokio::select! {
            r = tokio::time::timeout(timeout, &mut attempt) => r,
            () = &mut writer => unreachable_writer(),
        }
    };
    let result = match result {
        Ok(r) => r,
        Err(_) => Err(TransferError {
            reason: Reason::TransientFailure,
            message: format!(
                "the attempt did not finish within spec.timeout ({}); it will be retried",
                t.spec.timeout
            ),
            retry_after: None,
        }),
    };
    let now = Timestamp::now();
    match result {
        Ok(outcome) => {
            status::succeeded(&mut status, &outcome, generation, now);
            apply_status(ctx, t, &status, FIELD_MANAGER).await?;
            ctx.reset(&key(t));
            let s = &outcome.summary;
            ctx.metrics.transfer_completed(
                &outcome.direction.to_string(),
                s.bytes,
                s.blobs_copied as u64,
                s.blobs_skipped as u64,
                s.blobs_mounted as u64,
                began.elapsed(),
            );
            let note = get_condition(&status.conditions, READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ctx.event(&reference, EventType::Normal, "Succeeded", "Transfer", note)
                .await;
            tracing::info!(transfer = %key(t), digest = %outcome.digest, "transfer succeeded");
            let interval = t.spec.interval().unwrap_or(Duration::from_secs(3600));
            Ok(Outcome::new(Action::requeue(interval), "success"))
        }
        Err(e) => permanent_or_retry(t, ctx, status, &previous, e, now).await,
    }
}

/// The progress writer never finishes on its own.
fn unreachable_writer<T>() -> T {
    unreachable!("the progress writer loops until dropped")
}

/// Writes `status.progress` every progress interval while the copy runs (its own field
/// manager, so the final status write takes the field back).
async fn progress_writer(
    ctx: &Context,
    t: &ArtifactTransfer,
    status: &ArtifactTransferStatus,
    counters: Arc<Counters>,
) {
    let mut last = None;
    loop {
        tokio::time::sleep(ctx.progress_interval).await;
        let snapshot = counters.snapshot();
        if last.as_ref() == Some(&snapshot) {
            continue;
        }
        let mut next = status.clone();
        next.progress = Some(snapshot.clone());
        if let Err(e) = apply_status(ctx, t, &next, FIELD_MANAGER).await {
            tracing::debug!(transfer = %key(t), error = %e, "cannot write progress");
        }
        last = Some(snapshot);
    }
}

/// Records a failure: permanent → Stalled (event once per new reason/message), transient
/// → Reconciling/ProgressingWithRetry and an error for the backoff policy.
async fn permanent_or_retry(
    t: &ArtifactTransfer,
    ctx: &Context,
    mut status: ArtifactTransferStatus,
    previous: &ArtifactTransferStatus,
    error: TransferError,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let generation = t.metadata.generation;
    let reference = t.object_ref(&());
    let before = get_condition(
        &previous.conditions,
        if error.is_transient() {
            RECONCILING
        } else {
            STALLED
        },
    )
    .map(|c| (c.reason.clone(), c.message.clone(), c.observed_generation));
    let same = before.as_ref().is_some_and(|(r, m, g)| {
        r == error.reason.for_condition().as_str() && m == &error.message && *g == generation
    });
    status::failed(&mut status, &error, generation, now);
    ctx.metrics.transfer_failed(error.reason.as_str());
    if !same || status != *previous {
        apply_status(ctx, t, &status, FIELD_MANAGER).await?;
    }
    if !same {
        ctx.event(
            &reference,
            EventType::Warning,
            error.reason.for_condition().as_str(),
            "Transfer",
            error.message.clone(),
        )
        .await;
    }
    if error.is_transient() {
        tracing::warn!(transfer = %key(t), error = %error.message, "transfer failed; will retry");
        return Err(Error::Transient(error));
    }
    tracing::warn!(transfer = %key(t), reason = error.reason.as_str(), error = %error.message, "transfer stalled");
    let action = if error.reason.awaits_kubernetes_object() {
        let n = ctx.failed(&key(t));
        Action::requeue(backoff(n, INPUT_RECHECK_BASE, INPUT_RECHECK_MAX))
    } else {
        ctx.reset(&key(t));
        Action::requeue(t.spec.interval().unwrap_or(Duration::from_secs(3600)))
    };
    Ok(Outcome::new(action, "stalled"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{mark_ready, mark_stalled};

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
