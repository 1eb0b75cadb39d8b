//! The `ArtifactTransfer` status for an outcome: kstatus conditions (Ready, Reconciling,
//! Stalled) and the result fields.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::error::TransferError;
use super::execute::TransferOutcome;
use crate::api::ArtifactTransferStatus;
use crate::api::Reason;
use crate::api::TransferProgress;
use crate::api::conditions;

/// Applies a successful outcome: Ready=True, no Reconciling or Stalled.
pub fn succeeded(
    status: &mut ArtifactTransferStatus,
    outcome: &TransferOutcome,
    generation: Option<i64>,
    now: Timestamp,
) {
    let s = &outcome.summary;
    let mut message = format!(
        "{} {} ({}): {} blobs copied, {} skipped, {} mounted",
        match outcome.direction {
            super::Direction::Push => "pushed to",
            super::Direction::Pull => "pulled to",
        },
        outcome.destination_ref,
        outcome.digest,
        s.blobs_copied,
        s.blobs_skipped,
        s.blobs_mounted
    );
    if let Some(n) = outcome.referrers {
        message.push_str(&format!("; {n} referrers ({} copied)", s.referrers_copied));
    }
    conditions::mark_ready(
        &mut status.conditions,
        generation,
        Reason::Succeeded,
        message,
        now,
    );
    status.observed_generation = generation;
    status.direction = Some(outcome.direction);
    status.source_digest = Some(outcome.source_digest.clone());
    status.set_digest(outcome.digest.clone());
    status.destination_ref = Some(outcome.destination_ref.clone());
    status.artifact_type = Some(outcome.artifact_type.clone());
    status.referrers = outcome.referrers.map(|n| n as i64);
    status.progress = Some(TransferProgress {
        bytes_total: s.bytes_total as i64,
        bytes_done: s.bytes_total as i64,
        blobs_total: (s.blobs_copied + s.blobs_skipped + s.blobs_mounted) as i64,
        blobs_copied: s.blobs_copied as i64,
        blobs_skipped: s.blobs_skipped as i64,
        blobs_mounted: s.blobs_mounted as i64,
    });
    status.completed_at = Some(Time(now));
}

/// Applies a failure: permanent → Stalled=True with the reason; transient → Reconciling
/// with `ProgressingWithRetry`. Ready=False either way.
pub fn failed(
    status: &mut ArtifactTransferStatus,
    error: &TransferError,
    generation: Option<i64>,
    now: Timestamp,
) {
    let message = error.message.clone();
    if error.is_transient() {
        conditions::mark_retrying(&mut status.conditions, generation, message, now);
    } else {
        conditions::mark_stalled(
            &mut status.conditions,
            generation,
            error.reason,
            message,
            now,
        );
    }
    status.observed_generation = generation;
}
