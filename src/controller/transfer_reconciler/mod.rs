//! Reconciles one ArtifactTransfer: [`decide`] (run, re-check, wait, nothing), then
//! [`attempt`] runs the phases of one attempt and records the outcome in the status
//! (server-side apply), events and metrics.

mod attempt;
pub mod decide;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt as _;
use kube::runtime::controller::Action;

use super::context::{Context, backoff};
use super::error::Error;
use crate::api::ArtifactTransfer;
pub use decide::{Decision, decide};

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

pub(super) fn key(t: &ArtifactTransfer) -> String {
    format!(
        "ArtifactTransfer/{}/{}",
        t.namespace().unwrap_or_default(),
        t.name_any()
    )
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

/// What a reconcile did: the next action and the metrics label.
pub(super) struct Outcome {
    action: Action,
    label: &'static str,
}

impl Outcome {
    pub(super) fn new(action: Action, label: &'static str) -> Self {
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
            let attempt = async {
                match decision {
                    Decision::Recheck => attempt::recheck(t, ctx).await,
                    _ => attempt::perform(t, ctx, None).await,
                }
            };
            // Shutting down: the attempt stops where it is (nothing tagged half-way; the
            // status still says Reconciling), and whoever holds the Lease next runs it
            // again, skipping the blobs already uploaded.
            tokio::select! {
                outcome = attempt => outcome,
                () = ctx.shutdown.cancelled() => {
                    tracing::info!(transfer = %key(t), "shutting down: attempt abandoned, to be resumed by the next leader");
                    Ok(Outcome::new(Action::await_change(), "interrupted"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
