//! `run`: the controller, configured from flags and the environment.

use std::net::SocketAddr;
use std::time::Duration;

use aosm_artifact_operator::controller::{self, Config, LeaseTiming};
use aosm_artifact_operator::engine::{self, EngineError};

use super::args::RunArgs;

fn addr(value: &str, flag: &str) -> engine::Result<Option<SocketAddr>> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        EngineError::InvalidInput(format!(
            "--{flag} {value:?} is not an address like 0.0.0.0:8080 (or empty to disable)"
        ))
    })
}

/// This instance's identity: `$POD_NAME`, else `<hostname>-<pid>`.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "aosm".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Runs the controller until SIGTERM.
pub async fn start_controller(args: RunArgs) -> engine::Result<()> {
    let config = Config {
        namespace: args.namespace,
        watch_namespace: args.watch_namespace.filter(|n| !n.is_empty()),
        watch_label_selector: args.watch_label_selector.filter(|s| !s.is_empty()),
        concurrency: args.concurrency,
        blob_concurrency: usize::from(args.blob_concurrency),
        leader_elect: args.leader_elect,
        lease_name: args.lease_name,
        lease: LeaseTiming {
            duration: args.lease_duration,
            grace: (args.lease_duration / 3).max(1),
        },
        identity: identity(),
        metrics_addr: addr(&args.metrics_addr, "metrics-addr")?,
        health_addr: addr(&args.health_addr, "health-addr")?,
        progress_interval: Duration::from_secs(args.progress_interval),
        max_concurrent_per_namespace: usize::from(args.max_concurrent_per_namespace),
        policy: args.tenancy.policy().map_err(EngineError::InvalidInput)?,
    };
    let client = kube::Client::try_default().await.map_err(|e| {
        EngineError::InvalidInput(format!(
            "cannot configure the Kubernetes client (in a pod: its service account; outside: KUBECONFIG or ~/.kube/config): {e}"
        ))
    })?;
    tracing::info!(
        namespace = %config.namespace, watch_namespace = ?config.watch_namespace,
        selector = ?config.watch_label_selector, leader_elect = config.leader_elect,
        "starting controller"
    );
    controller::run_manager(config, client)
        .await
        .map_err(|e| EngineError::Failed(e.to_string()))
}
