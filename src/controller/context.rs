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
use crate::limits::DEFAULT_MAX_CONCURRENT_PER_NAMESPACE;
use crate::transfer::{Executor, TenantPolicy};

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
    /// What namespaced ArtifactStores may do.
    pub policy: TenantPolicy,
    /// Transfers of one namespace running at once.
    pub namespace_slots: NamespaceSlots,
    /// Cancelled on SIGTERM or a lost Lease: attempts in flight stop at once (a transfer is
    /// resumable and never tagged half-way), so the process exits within the pod's grace
    /// period and a standby takes over the Lease and the transfers.
    pub shutdown: tokio_util::sync::CancellationToken,
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
            policy: TenantPolicy::default(),
            namespace_slots: NamespaceSlots::new(DEFAULT_MAX_CONCURRENT_PER_NAMESPACE),
            shutdown: tokio_util::sync::CancellationToken::new(),
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

/// A cap on the transfers of one namespace that run at once, so one tenant cannot hold
/// every worker of the controller. A reconcile that finds its namespace full does not
/// wait on a worker: it is requeued.
#[derive(Debug)]
pub struct NamespaceSlots {
    per_namespace: usize,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl NamespaceSlots {
    /// At most `per_namespace` (at least 1) transfers per namespace.
    pub fn new(per_namespace: usize) -> Self {
        Self {
            per_namespace: per_namespace.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A slot of `namespace`, held until dropped; `None` while the namespace is full.
    pub fn try_acquire(&self, namespace: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(namespace.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_namespace)))
            .clone();
        semaphore.try_acquire_owned().ok()
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
    fn namespace_slots_cap_each_namespace_alone() {
        let slots = NamespaceSlots::new(2);
        let a1 = slots.try_acquire("a").expect("first slot of a");
        let _a2 = slots.try_acquire("a").expect("second slot of a");
        assert!(slots.try_acquire("a").is_none(), "a is full");
        let _b1 = slots.try_acquire("b").expect("b is not held by a");
        drop(a1);
        assert!(slots.try_acquire("a").is_some(), "a freed a slot");
        assert!(
            NamespaceSlots::new(0).try_acquire("c").is_some(),
            "at least one"
        );
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo".to_string(), 2), "h");
        assert_eq!(truncate("abc".to_string(), 10), "abc");
    }
}
