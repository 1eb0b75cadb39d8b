//! Prometheus metrics of the controller (prefix `aosm`), encoded as OpenMetrics text.
//!
//! Series: `aosm_reconciles_total{kind,outcome}`, `aosm_reconcile_duration_seconds{kind}`,
//! `aosm_transfers_total{direction}`, `aosm_transfer_bytes_total{direction}`,
//! `aosm_blobs_total{direction,result}`, `aosm_transfer_duration_seconds{direction}`,
//! `aosm_transfer_failures_total{reason}`, `aosm_artifact_transfers{state}` and
//! `aosm_list_credential_calls_total` (read from the AOSM client at scrape time).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOutcome {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionResult {
    direction: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

/// Reconcile durations: 5 ms .. ~41 s.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Transfer durations: 0.1 s .. 1 h.
fn transfer_histogram() -> Histogram {
    Histogram::new([
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
        3600.0,
    ])
}

/// Reads the process-wide `listCredential` counter at scrape time.
#[derive(Debug)]
struct ListCredentialCalls(Arc<Mutex<fn() -> u64>>);

impl Collector for ListCredentialCalls {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let read = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let counter = ConstCounter::new(read());
        let metric = encoder.encode_descriptor(
            "list_credential_calls",
            "listCredential requests sent to ARM (every attempt)",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// The controller's metrics. Cheap to clone; clones share the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<KindOutcome, Counter>,
    reconcile_duration: Family<Kind, Histogram, fn() -> Histogram>,
    transfers: Family<Direction, Counter>,
    transfer_bytes: Family<Direction, Counter>,
    blobs: Family<DirectionResult, Counter>,
    transfer_duration: Family<Direction, Histogram, fn() -> Histogram>,
    transfer_failures: Family<ReasonLabel, Counter>,
    transfers_by_state: Family<State, Gauge>,
    list_credential_calls: Arc<Mutex<fn() -> u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every series registered; `aosm_list_credential_calls_total`
    /// reads [`crate::aosm::list_credential_calls`] unless [`Self::set_list_credential_calls`]
    /// says otherwise.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("aosm");
        let reconciles = Family::<KindOutcome, Counter>::default();
        r.register(
            "reconciles",
            "Reconciles by kind and outcome",
            reconciles.clone(),
        );
        let reconcile_duration: Family<Kind, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(reconcile_histogram);
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let transfers = Family::<Direction, Counter>::default();
        r.register("transfers", "Completed transfers", transfers.clone());
        let transfer_bytes = Family::<Direction, Counter>::default();
        r.register(
            "transfer_bytes",
            "Bytes copied by completed transfers",
            transfer_bytes.clone(),
        );
        let blobs = Family::<DirectionResult, Counter>::default();
        r.register(
            "blobs",
            "Blobs of completed transfers by result (copied, skipped, mounted)",
            blobs.clone(),
        );
        let transfer_duration: Family<Direction, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(transfer_histogram);
        r.register(
            "transfer_duration_seconds",
            "Duration of completed transfers",
            transfer_duration.clone(),
        );
        let transfer_failures = Family::<ReasonLabel, Counter>::default();
        r.register(
            "transfer_failures",
            "Failed transfer attempts by reason",
            transfer_failures.clone(),
        );
        let transfers_by_state = Family::<State, Gauge>::default();
        // Not `aosm_transfers`: that family name is taken by the counter `aosm_transfers_total`.
        r.register(
            "artifact_transfers",
            "ArtifactTransfers by state (ready, reconciling, stalled)",
            transfers_by_state.clone(),
        );
        let list_credential_calls: Arc<Mutex<fn() -> u64>> =
            Arc::new(Mutex::new(crate::aosm::list_credential_calls));
        r.register_collector(Box::new(ListCredentialCalls(list_credential_calls.clone())));
        Self {
            registry: Arc::new(r),
            reconciles,
            reconcile_duration,
            transfers,
            transfer_bytes,
            blobs,
            transfer_duration,
            transfer_failures,
            transfers_by_state,
            list_credential_calls,
        }
    }

    /// Records one reconcile. `kind`: `ArtifactTransfer` | `ArtifactStore` |
    /// `ClusterArtifactStore`; `outcome`: `success` | `retry` | `stalled` | `requeue` | `skipped`.
    pub fn reconcile(&self, kind: &str, outcome: &str, duration: Duration) {
        self.reconciles
            .get_or_create(&KindOutcome {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&Kind { kind: kind.into() })
            .observe(duration.as_secs_f64());
    }

    /// Records a completed transfer (`direction`: e.g. `push` | `pull`).
    pub fn transfer_completed(
        &self,
        direction: &str,
        bytes: u64,
        blobs_copied: u64,
        blobs_skipped: u64,
        blobs_mounted: u64,
        duration: Duration,
    ) {
        let d = Direction {
            direction: direction.into(),
        };
        self.transfers.get_or_create(&d).inc();
        self.transfer_bytes.get_or_create(&d).inc_by(bytes);
        for (result, n) in [
            ("copied", blobs_copied),
            ("skipped", blobs_skipped),
            ("mounted", blobs_mounted),
        ] {
            self.blobs
                .get_or_create(&DirectionResult {
                    direction: direction.into(),
                    result,
                })
                .inc_by(n);
        }
        self.transfer_duration
            .get_or_create(&d)
            .observe(duration.as_secs_f64());
    }

    /// Records a failed transfer attempt with its [`crate::api::Reason`].
    pub fn transfer_failed(&self, reason: crate::api::Reason) {
        self.transfer_failures
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().into(),
            })
            .inc();
    }

    /// Sets where `aosm_list_credential_calls_total` reads its value at scrape time
    /// (default: [`crate::aosm::list_credential_calls`]).
    pub fn set_list_credential_calls(&self, f: fn() -> u64) {
        *self
            .list_credential_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = f;
    }

    /// Sets the gauge `aosm_artifact_transfers{state}` (ArtifactTransfer objects by state).
    pub fn set_transfers_by_state(&self, ready: i64, reconciling: i64, stalled: i64) {
        for (state, n) in [
            ("ready", ready),
            ("reconciling", reconciling),
            ("stalled", stalled),
        ] {
            self.transfers_by_state
                .get_or_create(&State { state })
                .set(n);
        }
    }

    /// All series as OpenMetrics text (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seven() -> u64 {
        7
    }

    #[test]
    fn encodes_series_with_values() {
        let m = Metrics::new();
        m.reconcile("ArtifactTransfer", "success", Duration::from_millis(20));
        m.reconcile("ArtifactTransfer", "success", Duration::from_millis(30));
        m.transfer_completed("push", 1024, 3, 2, 1, Duration::from_secs(12));
        m.transfer_failed(crate::api::Reason::SourceNotFound);
        m.set_transfers_by_state(4, 1, 2);
        m.set_list_credential_calls(seven);
        let text = m.encode();
        for line in [
            r#"aosm_reconciles_total{kind="ArtifactTransfer",outcome="success"} 2"#,
            r#"aosm_reconcile_duration_seconds_count{kind="ArtifactTransfer"} 2"#,
            r#"aosm_transfers_total{direction="push"} 1"#,
            r#"aosm_transfer_bytes_total{direction="push"} 1024"#,
            r#"aosm_blobs_total{direction="push",result="copied"} 3"#,
            r#"aosm_blobs_total{direction="push",result="skipped"} 2"#,
            r#"aosm_blobs_total{direction="push",result="mounted"} 1"#,
            r#"aosm_transfer_duration_seconds_bucket{le="30.0",direction="push"} 1"#,
            r#"aosm_transfer_duration_seconds_bucket{le="10.0",direction="push"} 0"#,
            r#"aosm_transfer_failures_total{reason="SourceNotFound"} 1"#,
            r#"aosm_artifact_transfers{state="ready"} 4"#,
            r#"aosm_artifact_transfers{state="reconciling"} 1"#,
            r#"aosm_artifact_transfers{state="stalled"} 2"#,
            "aosm_list_credential_calls_total 7",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn list_credential_calls_defaults_to_the_aosm_counter() {
        let text = Metrics::default().encode();
        assert!(
            text.contains("# TYPE aosm_list_credential_calls counter"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("aosm_list_credential_calls_total ")),
            "{text}"
        );
    }

    #[test]
    fn family_names_are_unique() {
        let m = Metrics::new();
        m.transfer_completed("pull", 1, 1, 0, 0, Duration::from_secs(1));
        m.set_transfers_by_state(1, 0, 0);
        let text = m.encode();
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup_by(|a, b| a.split(' ').nth(2) == b.split(' ').nth(2));
        assert_eq!(types.len(), n, "{text}");
    }

    #[test]
    fn clones_share_series() {
        let m = Metrics::new();
        m.clone().transfer_failed(crate::api::Reason::Forbidden);
        assert!(
            m.encode()
                .contains(r#"aosm_transfer_failures_total{reason="Forbidden"} 1"#)
        );
    }
}
