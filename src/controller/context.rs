//! What every reconcile shares: the Kubernetes client, the transfer executor (with its
//! credential cache), metrics, the event recorder and per-object retry counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use rand::Rng as _;

use super::metrics::Metrics;
use crate::transfer::Executor;

/// The field manager of the controller's server-side-apply status writes.
pub const FIELD_MANAGER: &str = "aosm-artifact-operator";

/// Shared state of all reconcilers.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Runs transfers; shares ARM clients and scoped credentials across them.
    pub executor: Executor,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// The controller's own namespace (Secrets of ClusterArtifactStores).
    pub namespace: String,
    /// How often a written progress may be refreshed during a long copy.
    pub progress_interval: Duration,
    /// Consecutive failures per object (`kind/namespace/name`), for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A new context.
    pub fn new(
        client: Client,
        executor: Executor,
        metrics: Arc<Metrics>,
        namespace: String,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            executor,
            metrics,
            namespace,
            progress_interval: Duration::from_secs(10),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more consecutive failure of `key`; returns the count.
    pub fn failed(&self, key: &str) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the failures of `key` (after a success or a permanent outcome).
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Publishes an event; a failure to publish is logged, never fatal.
    pub async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// Exponential backoff with full jitter: `base · 2^(failures-1)`, capped at `max`, then a
/// random point in its upper half (so retries of many objects spread out).
pub fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    let half = raw / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(300);
        for n in 1..30 {
            let d = backoff(n, base, max);
            let raw = base.saturating_mul(1u32 << (n - 1).min(20)).min(max);
            assert!(
                d >= raw / 2 && d <= raw,
                "failure {n}: {d:?} outside [{:?}, {raw:?}]",
                raw / 2
            );
        }
        assert!(backoff(30, base, max) <= max);
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo".to_string(), 2), "h");
        assert_eq!(truncate("abc".to_string(), 10), "abc");
    }
}
