//! Starts the controller: health and metrics servers, optional leader election, and the
//! three controllers (ArtifactTransfer, ArtifactStore, ClusterArtifactStore) until SIGTERM.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, predicates, watcher};
use kube::{Api, Client, ResourceExt as _};
use tokio_util::sync::CancellationToken;

use super::context::{Context, NamespaceSlots};
use super::error::Error;
use super::health::{self, Readiness};
use super::leader::{Leadership, LeaseTiming};
use super::metrics::Metrics;
use super::tokens::ServiceAccountTokenRequests;
use super::{store_reconciler, transfer_reconciler};
use crate::api::conditions::{READY, RECONCILING, STALLED, is_true};
use crate::api::{ArtifactStore, ArtifactTransfer, ClusterArtifactStore, StoreKind};
use crate::transfer::{Executor, TenantPolicy};

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The controller's own namespace (ClusterArtifactStore Secrets, the Lease).
    pub namespace: String,
    /// Only watch this namespace (ArtifactTransfers and ArtifactStores); all when `None`.
    pub watch_namespace: Option<String>,
    /// Only reconcile ArtifactTransfers matching this label selector (sharding).
    pub watch_label_selector: Option<String>,
    /// Transfers reconciled at once.
    pub concurrency: u16,
    /// Blobs in flight per transfer.
    pub blob_concurrency: usize,
    /// Compete for a Lease and act only while holding it.
    pub leader_elect: bool,
    /// Name of the Lease.
    pub lease_name: String,
    /// Lease timing.
    pub lease: LeaseTiming,
    /// This instance's identity in the Lease and in events.
    pub identity: String,
    /// Address of the metrics server (`/metrics`), if any.
    pub metrics_addr: Option<SocketAddr>,
    /// Address of the health server (`/healthz`, `/readyz`), if any.
    pub health_addr: Option<SocketAddr>,
    /// How often progress of a running transfer may be written to its status.
    pub progress_interval: Duration,
    /// Transfers of one namespace running at once.
    pub max_concurrent_per_namespace: usize,
    /// What namespaced ArtifactStores may do.
    pub policy: TenantPolicy,
}

/// What triggers a transfer reconcile from its own watch: a new object, generation or
/// `requested-at` annotation (status writes do not).
fn transfer_trigger(t: &ArtifactTransfer) -> Option<u64> {
    let mut h = DefaultHasher::new();
    t.metadata.uid.hash(&mut h);
    t.metadata.generation.hash(&mut h);
    t.requested_at().hash(&mut h);
    Some(h.finish())
}

/// Transfers in the cache that use store `name` of `kind` (in `namespace` for
/// namespaced stores).
fn transfers_using(
    reader: &Store<ArtifactTransfer>,
    kind: StoreKind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<ArtifactTransfer>> {
    reader
        .state()
        .into_iter()
        .filter(|t| {
            let r = &t.spec.store_side().store_ref;
            r.kind == kind
                && r.name == name
                && (kind == StoreKind::ClusterArtifactStore
                    || t.namespace().as_deref() == namespace)
        })
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Startup(format!("cannot listen on {addr} for {what}: {e}")))
}

/// Cancels `token` on SIGTERM or SIGINT.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = term => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        token.cancel();
    });
}

/// Runs the controller until SIGTERM/SIGINT (Ok) or until leadership is lost (Err, so
/// the process exits and restarts as a standby).
pub async fn run_manager(config: Config, client: Client) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    metrics.set_list_credential_calls(crate::aosm::list_credential_calls);
    let readiness = Readiness::default();
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());

    let mut addrs: Vec<(SocketAddr, &str)> = Vec::new();
    if let Some(a) = config.metrics_addr {
        addrs.push((a, "metrics"));
    }
    if let Some(a) = config.health_addr
        && Some(a) != config.metrics_addr
    {
        addrs.push((a, "health probes"));
    }
    for (addr, what) in addrs {
        let listener = bind(addr, what).await?;
        let (m, r, stop) = (metrics.clone(), readiness.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = health::serve(listener, m, r, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "health/metrics server failed");
            }
        });
        tracing::info!(%addr, what, "listening");
    }

    let mut leadership = None;
    if config.leader_elect {
        let mut l = Leadership::start(
            client.clone(),
            &config.namespace,
            &config.lease_name,
            &config.identity,
            config.lease,
        )
        .await?;
        // A standby is healthy and ready: it is doing its job (waiting).
        readiness.set(true);
        tracing::info!(lease = %config.lease_name, identity = %config.identity, "waiting for leadership");
        tokio::select! {
            r = l.acquired() => r?,
            () = shutdown.cancelled() => {
                l.release().await;
                return Ok(());
            }
        }
        tracing::info!(identity = %config.identity, "leadership acquired");
        leadership = Some(l);
    }

    let executor = Executor::new(config.blob_concurrency)
        .map_err(|e| Error::Startup(e.message))?
        .with_service_account_tokens(Arc::new(ServiceAccountTokenRequests::new(client.clone())));
    let mut context = Context::new(
        client.clone(),
        executor,
        metrics.clone(),
        config.namespace.clone(),
        Some(config.identity.clone()),
    );
    context.progress_interval = config.progress_interval;
    context.policy = config.policy.clone();
    context.namespace_slots = NamespaceSlots::new(config.max_concurrent_per_namespace);
    context.shutdown = shutdown.clone();
    let ctx = Arc::new(context);

    let controllers = controllers(&config, client, ctx, &readiness, &shutdown);
    let result = match leadership.as_mut() {
        Some(l) => {
            tokio::select! {
                () = controllers => Ok(()),
                () = l.lost() => {
                    shutdown.cancel();
                    Err(Error::Leader("lost the lease; exiting so a restart competes again".into()))
                }
            }
        }
        None => {
            controllers.await;
            Ok(())
        }
    };
    if let Some(l) = leadership {
        l.release().await;
    }
    result
}

/// The three controllers, until `shutdown`.
async fn controllers(
    config: &Config,
    client: Client,
    ctx: Arc<Context>,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) {
    let transfers: Api<ArtifactTransfer> = match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let stores: Api<ArtifactStore> = match &config.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let cluster_stores: Api<ClusterArtifactStore> = Api::all(client.clone());
    let mut wc = watcher::Config::default();
    if let Some(sel) = &config.watch_label_selector {
        wc = wc.labels(sel);
    }

    let (reader, writer) = reflector::store();
    let trigger = watcher(transfers, wc)
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(transfer_trigger, Default::default());
    let by_store = reader.clone();
    let by_cluster_store = reader.clone();
    let transfer_controller = Controller::for_stream(trigger, reader.clone())
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .watches(
            stores.clone(),
            watcher::Config::default(),
            move |s: ArtifactStore| {
                transfers_using(
                    &by_store,
                    StoreKind::ArtifactStore,
                    s.namespace().as_deref(),
                    &s.name_any(),
                )
            },
        )
        .watches(
            cluster_stores.clone(),
            watcher::Config::default(),
            move |s: ClusterArtifactStore| {
                transfers_using(
                    &by_cluster_store,
                    StoreKind::ClusterArtifactStore,
                    None,
                    &s.name_any(),
                )
            },
        )
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            transfer_reconciler::reconcile,
            transfer_reconciler::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "transfer controller");
            }
        });

    let namespaced_store_controller = store_controller(stores, ctx.clone(), shutdown);
    let cluster_store_controller = store_controller(cluster_stores, ctx.clone(), shutdown);

    // Ready once the transfer cache has its first full list.
    let ready = {
        let (reader, readiness, metrics) = (reader.clone(), readiness.clone(), ctx.metrics.clone());
        let stop = shutdown.clone();
        async move {
            if reader.wait_until_ready().await.is_ok() {
                readiness.set(true);
                tracing::info!("caches synced; ready");
            }
            // Keep the per-state gauge current.
            loop {
                let (mut r, mut p, mut s) = (0, 0, 0);
                for t in reader.state() {
                    let c = t
                        .status
                        .as_ref()
                        .map(|s| s.conditions.as_slice())
                        .unwrap_or(&[]);
                    if is_true(c, READY) {
                        r += 1;
                    } else if is_true(c, STALLED) {
                        s += 1;
                    } else if is_true(c, RECONCILING) || c.is_empty() {
                        p += 1;
                    }
                }
                metrics.set_transfers_by_state(r, p, s);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(15)) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    };
    futures_util::join!(
        transfer_controller,
        namespaced_store_controller,
        cluster_store_controller,
        ready
    );
    tracing::info!("controllers stopped");
}

/// The controller of one store kind, until `shutdown`; reconciles on new generations.
async fn store_controller<S: store_reconciler::StoreObject>(
    api: Api<S>,
    ctx: Arc<Context>,
    shutdown: &CancellationToken,
) {
    let (reader, writer) = reflector::store();
    let trigger = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    Controller::for_stream(trigger, reader)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            store_reconciler::reconcile::<S>,
            store_reconciler::error_policy::<S>,
            ctx,
        )
        .for_each(|_| async {})
        .await;
}
