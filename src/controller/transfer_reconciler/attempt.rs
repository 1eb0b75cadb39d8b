//! One attempt at a transfer, in phases in the manner of Flux's sub-reconcilers:
//! resolve (read what the spec references) → start (record Reconciling) → check (against
//! the AOSM manifest) → move bytes → write (a ConfigMap destination's file) → record. A phase either hands the next what it needs
//! or stops the attempt with a [`Stop`]: a transfer failure (recorded in the status, with
//! its reason) or a Kubernetes API error (retried by the error policy). One status is built
//! along the way and written by [`super::super::status_patch::apply_status`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource as _, ResourceExt as _};

use super::super::config_map_writer::{self, WriteError};
use super::super::context::{Context, FIELD_MANAGER, backoff};
use super::super::error::Error;
use super::super::inputs;
use super::super::progress::Counters;
use super::super::status_patch;
use super::{INPUT_RECHECK_BASE, INPUT_RECHECK_MAX, Outcome, key};
use crate::aosm::ManifestArtifact;
use crate::api::conditions::{self, READY, RECONCILING, STALLED, get_condition};
use crate::api::{ArtifactTransfer, ArtifactTransferStatus, Reason};
use crate::transfer::resolve::resolve;
use crate::transfer::{Destination, TransferError, TransferOutcome, TransferRequest, status};

/// Why an attempt stopped before it succeeded.
#[derive(Debug)]
pub(super) enum Stop {
    /// The transfer failed: recorded in the status (Stalled, or retrying).
    Failed(TransferError),
    /// The Kubernetes API failed: nothing recorded; the error policy retries.
    Api(Error),
}

impl From<TransferError> for Stop {
    fn from(e: TransferError) -> Self {
        Stop::Failed(e)
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Api(e)
    }
}

/// The status an attempt builds, and the one it started from.
struct Record<'a> {
    t: &'a ArtifactTransfer,
    previous: ArtifactTransferStatus,
    status: ArtifactTransferStatus,
}

impl<'a> Record<'a> {
    fn new(t: &'a ArtifactTransfer) -> Self {
        let previous = t.status.clone().unwrap_or_default();
        let mut status = previous.clone();
        status.describe(&t.spec);
        status.last_handled_reconcile_at = t.requested_at().map(str::to_string);
        Self {
            t,
            previous,
            status,
        }
    }

    async fn write(&self, ctx: &Context) -> Result<(), Error> {
        write(ctx, self.t, &self.status).await
    }
}

/// Writes `status` as the controller's field manager.
async fn write(
    ctx: &Context,
    t: &ArtifactTransfer,
    status: &ArtifactTransferStatus,
) -> Result<(), Error> {
    let api: Api<ArtifactTransfer> =
        Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    status_patch::apply_status(
        &api,
        "ArtifactTransfer",
        &t.name_any(),
        status,
        FIELD_MANAGER,
    )
    .await
    .map(drop)
}

/// Resolve: reads what `t` references and turns it into a request.
async fn resolve_phase(t: &ArtifactTransfer, ctx: &Context) -> Result<TransferRequest, Stop> {
    let gathered = inputs::for_transfer(&ctx.client, t, &ctx.namespace)
        .await
        .map_err(Error::from)?;
    Ok(resolve(t, &gathered.inputs(&ctx.namespace, &ctx.policy))?)
}

/// Start: Reconciling=True (unless already retrying), `startedAt`, a Started event.
async fn start_phase(record: &mut Record<'_>, ctx: &Context) -> Result<(), Stop> {
    let t = record.t;
    let now = Timestamp::now();
    let retrying = get_condition(&record.previous.conditions, RECONCILING)
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
    let status = &mut record.status;
    if !retrying {
        conditions::mark_reconciling(
            &mut status.conditions,
            t.metadata.generation,
            Reason::Progressing,
            message.clone(),
            now,
        );
    }
    status.observed_generation = t.metadata.generation;
    status.started_at = Some(Time(now));
    status.progress = None;
    record.write(ctx).await?;
    if !retrying {
        ctx.event(
            &t.object_ref(&()),
            EventType::Normal,
            "Started",
            "Transfer",
            message,
        )
        .await;
    }
    tracing::info!(transfer = %key(t), "transfer started");
    Ok(())
}

/// Check: the artifact against its manifest (before any byte moves).
async fn check_phase(ctx: &Context, request: &TransferRequest) -> Result<ManifestArtifact, Stop> {
    Ok(ctx.executor.check(request).await?)
}

/// Move bytes, writing `status.progress` meanwhile.
async fn move_phase(
    record: &Record<'_>,
    ctx: &Context,
    request: &TransferRequest,
    listed: &ManifestArtifact,
    counters: Arc<Counters>,
) -> Result<TransferOutcome, Stop> {
    let moving = ctx.executor.move_bytes(request, listed, counters.as_ref());
    let writer = progress_writer(ctx, record.t, &record.status, counters.clone());
    tokio::pin!(moving);
    tokio::pin!(writer);
    tokio::select! {
        r = &mut moving => Ok(r?),
        () = &mut writer => unreachable!("the progress writer loops until dropped"),
    }
}

/// Write: a file read for a ConfigMap destination goes into the ConfigMap (nothing when
/// the ConfigMap already held the store's digest).
async fn write_phase(
    t: &ArtifactTransfer,
    ctx: &Context,
    request: &TransferRequest,
    outcome: &TransferOutcome,
) -> Result<(), Stop> {
    let (Destination::ConfigMap(side), Some(file)) = (&request.destination, &outcome.file) else {
        return Ok(());
    };
    config_map_writer::write(&ctx.client, t, side, &outcome.digest, file)
        .await
        .map_err(|e| match e {
            WriteError::Transfer(e) => Stop::Failed(e),
            WriteError::Api(e) => Stop::Api(e),
        })
}

/// Check, move bytes and write within `spec.timeout`.
async fn bounded_phases(
    record: &Record<'_>,
    ctx: &Context,
    request: &TransferRequest,
    counters: Arc<Counters>,
) -> Result<TransferOutcome, Stop> {
    let t = record.t;
    let phases = async {
        let listed = check_phase(ctx, request).await?;
        let outcome = move_phase(record, ctx, request, &listed, counters).await?;
        write_phase(t, ctx, request, &outcome).await?;
        Ok(outcome)
    };
    match tokio::time::timeout(t.spec.timeout_or_default(), phases).await {
        Ok(r) => r,
        Err(_) => Err(Stop::Failed(TransferError {
            reason: Reason::TransientFailure,
            message: format!(
                "the attempt did not finish within spec.timeout ({}); it will be retried",
                t.spec.timeout
            ),
            retry_after: None,
        })),
    }
}

/// Runs one attempt: every phase from resolve (unless `request` is already resolved) to
/// record.
pub(super) async fn perform(
    t: &ArtifactTransfer,
    ctx: &Context,
    request: Option<TransferRequest>,
) -> Result<Outcome, Error> {
    let mut record = Record::new(t);
    let began = Instant::now();
    let phases = async {
        let request = match request {
            Some(r) => r,
            None => resolve_phase(t, ctx).await?,
        };
        start_phase(&mut record, ctx).await?;
        bounded_phases(&record, ctx, &request, Arc::new(Counters::default())).await
    };
    let result = phases.await;
    match result {
        Ok(outcome) => record_success(record, ctx, &outcome, began.elapsed()).await,
        Err(Stop::Failed(e)) => record_failure(record, ctx, e).await,
        Err(Stop::Api(e)) => Err(e),
    }
}

/// Re-check of a Ready transfer: one HEAD of the destination; a match only moves
/// `completedAt`, anything else runs an attempt.
pub(super) async fn recheck(t: &ArtifactTransfer, ctx: &Context) -> Result<Outcome, Error> {
    let previous = t.status.clone().unwrap_or_default();
    let (Some(digest), Some(dest)) = (&previous.digest, &previous.destination_ref) else {
        return perform(t, ctx, None).await;
    };
    let request = match resolve_phase(t, ctx).await {
        Ok(r) => r,
        Err(Stop::Failed(e)) => return record_failure(Record::new(t), ctx, e).await,
        Err(Stop::Api(e)) => return Err(e),
    };
    match ctx.executor.destination_digest(&request, dest).await {
        Ok(Some(found)) if &found == digest => {
            let mut next = previous.clone();
            next.completed_at = Some(Time(Timestamp::now()));
            write(ctx, t, &next).await?;
            tracing::debug!(transfer = %key(t), %digest, "destination still holds the digest");
            Ok(Outcome::new(
                Action::requeue(t.spec.interval_or_default()),
                "success",
            ))
        }
        Ok(found) => {
            tracing::info!(
                transfer = %key(t), expected = %digest, found = ?found,
                "destination no longer holds the digest; copying again"
            );
            perform(t, ctx, Some(request)).await
        }
        Err(e) => {
            tracing::info!(transfer = %key(t), error = %e, "re-check failed; copying again");
            perform(t, ctx, Some(request)).await
        }
    }
}

/// Record a success: Ready=True with the digest, an event, metrics.
async fn record_success(
    mut record: Record<'_>,
    ctx: &Context,
    outcome: &TransferOutcome,
    took: Duration,
) -> Result<Outcome, Error> {
    let t = record.t;
    status::succeeded(
        &mut record.status,
        outcome,
        t.metadata.generation,
        Timestamp::now(),
    );
    record.write(ctx).await?;
    ctx.reset(&key(t));
    let s = &outcome.summary;
    ctx.metrics.transfer_completed(
        &outcome.direction.to_string(),
        s.bytes,
        s.blobs_copied as u64,
        s.blobs_skipped as u64,
        s.blobs_mounted as u64,
        took,
    );
    let note = get_condition(&record.status.conditions, READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ctx.event(
        &t.object_ref(&()),
        EventType::Normal,
        "Succeeded",
        "Transfer",
        note,
    )
    .await;
    tracing::info!(transfer = %key(t), digest = %outcome.digest, "transfer succeeded");
    Ok(Outcome::new(
        Action::requeue(t.spec.interval_or_default()),
        "success",
    ))
}

/// Record a failure: permanent → Stalled (an event once per new reason/message),
/// transient → retrying, and an error for the backoff policy.
async fn record_failure(
    mut record: Record<'_>,
    ctx: &Context,
    error: TransferError,
) -> Result<Outcome, Error> {
    let t = record.t;
    let generation = t.metadata.generation;
    let shown = error.reason.for_condition();
    let before = get_condition(
        &record.previous.conditions,
        if error.is_transient() {
            RECONCILING
        } else {
            STALLED
        },
    )
    .map(|c| (c.reason.clone(), c.message.clone(), c.observed_generation));
    let same = before
        .as_ref()
        .is_some_and(|(r, m, g)| r == shown.as_str() && m == &error.message && *g == generation);
    status::failed(&mut record.status, &error, generation, Timestamp::now());
    ctx.metrics.transfer_failed(error.reason);
    if !same || record.status != record.previous {
        record.write(ctx).await?;
    }
    if !same {
        ctx.event(
            &t.object_ref(&()),
            EventType::Warning,
            shown.as_str(),
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
        Action::requeue(t.spec.interval_or_default())
    };
    Ok(Outcome::new(action, "stalled"))
}

/// Writes `status.progress` every progress interval while the bytes move (the final
/// status write replaces it).
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
        if let Err(e) = write(ctx, t, &next).await {
            tracing::debug!(transfer = %key(t), error = %e, "cannot write progress");
        }
        last = Some(snapshot);
    }
}
