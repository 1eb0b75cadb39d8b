//! Reconciles ArtifactStores and ClusterArtifactStores: Ready when ARM answers and the
//! store is backed by a container registry; Stalled with a reason otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::{Context, FIELD_MANAGER, backoff};
use super::error::Error;
use super::inputs;
use super::status_patch;
use super::transfer_reconciler::{INPUT_RECHECK_BASE, INPUT_RECHECK_MAX, RETRY_BASE, RETRY_MAX};
use crate::api::conditions;
use crate::api::{
    ArtifactStore, ArtifactStoreSpec, ArtifactStoreStatus, ClusterArtifactStore, Reason,
};
use crate::transfer::arm_clients::SUPPORTED_STORE_TYPE;
use crate::transfer::resolve::{StoreOwner, store_config};

/// How often a Ready store is checked again.
pub const STORE_RECHECK: Duration = Duration::from_secs(3600);

/// What the two store kinds have in common for reconciling.
pub trait StoreObject:
    Resource<DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The kind, for keys, logs and metrics.
    const KIND: &'static str;
    /// The store spec.
    fn store(&self) -> &ArtifactStoreSpec;
    /// The current status.
    fn store_status(&self) -> Option<&ArtifactStoreStatus>;
    /// The namespace its identity Secret or ServiceAccount lives in.
    fn secret_namespace(&self, controller_namespace: &str) -> String;
    /// Who owns it (a tenant's namespace or the cluster admin).
    fn owner(&self) -> StoreOwner<'_>;
    /// The API for status writes.
    fn api(&self, client: kube::Client) -> Api<Self>;
}

impl StoreObject for ArtifactStore {
    const KIND: &'static str = "ArtifactStore";
    fn store(&self) -> &ArtifactStoreSpec {
        &self.spec
    }
    fn store_status(&self) -> Option<&ArtifactStoreStatus> {
        self.status.as_ref()
    }
    fn secret_namespace(&self, _: &str) -> String {
        self.namespace().unwrap_or_else(|| "default".into())
    }
    fn owner(&self) -> StoreOwner<'_> {
        StoreOwner::Namespace {
            namespace: self.metadata.namespace.as_deref().unwrap_or("default"),
            name: self.metadata.name.as_deref().unwrap_or_default(),
        }
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::namespaced(client, &self.secret_namespace(""))
    }
}

impl StoreObject for ClusterArtifactStore {
    const KIND: &'static str = "ClusterArtifactStore";
    fn store(&self) -> &ArtifactStoreSpec {
        &self.spec.store
    }
    fn store_status(&self) -> Option<&ArtifactStoreStatus> {
        self.status.as_ref()
    }
    fn secret_namespace(&self, controller_namespace: &str) -> String {
        controller_namespace.to_string()
    }
    fn owner(&self) -> StoreOwner<'_> {
        StoreOwner::Cluster {
            name: self.metadata.name.as_deref().unwrap_or_default(),
        }
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::all(client)
    }
}

fn key<S: StoreObject>(s: &S) -> String {
    format!(
        "{}/{}/{}",
        S::KIND,
        s.namespace().unwrap_or_default(),
        s.name_any()
    )
}

/// The reconcile function of both store controllers.
pub async fn reconcile<S: StoreObject>(s: Arc<S>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(s.as_ref(), &ctx).await;
    let label = match &result {
        Ok((_, label)) => *label,
        Err(_) => "retry",
    };
    ctx.metrics.reconcile(S::KIND, label, started.elapsed());
    result.map(|(a, _)| a)
}

/// The error policy of both store controllers: exponential backoff with jitter.
pub fn error_policy<S: StoreObject>(s: Arc<S>, error: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.failed(&key(s.as_ref()));
    let delay = backoff(n, RETRY_BASE, RETRY_MAX);
    tracing::info!(store = %key(s.as_ref()), error = %error, retry_in = ?delay, "store will be checked again");
    Action::requeue(delay)
}

async fn reconcile_inner<S: StoreObject>(
    s: &S,
    ctx: &Context,
) -> Result<(Action, &'static str), Error> {
    let generation = s.meta().generation;
    let previous = s.store_status().cloned().unwrap_or_default();
    let mut status = previous.clone();
    let secret_ns = s.secret_namespace(&ctx.namespace);
    let gathered = inputs::for_store(&ctx.client, s.store(), &secret_ns).await?;
    let inputs = gathered.inputs(&ctx.namespace, &ctx.policy);
    let checked = match store_config(&inputs, s.store(), s.owner()) {
        Ok(config) => match ctx.executor.store_type(&config).await {
            Ok(t) if t == SUPPORTED_STORE_TYPE => Ok(t),
            Ok(t) => {
                status.store_type = Some(t.clone());
                Err(crate::aosm::AosmError::UnsupportedStoreType {
                    store: config.id.path(),
                    store_type: t,
                }
                .into())
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let now = Timestamp::now();
    status.observed_generation = generation;
    let (action, label, event) = match checked {
        Ok(store_type) => {
            let message = format!("ARM answered; the store is backed by {store_type}");
            status.store_type = Some(store_type);
            conditions::mark_ready(
                &mut status.conditions,
                generation,
                Reason::Succeeded,
                message.clone(),
                now,
            );
            ctx.reset(&key(s));
            (
                Action::requeue(STORE_RECHECK),
                "success",
                (
                    EventType::Normal,
                    Reason::Succeeded.as_str().to_string(),
                    message,
                ),
            )
        }
        Err(e) if e.is_transient() => {
            conditions::mark_retrying(&mut status.conditions, generation, e.message.clone(), now);
            write(s, ctx, &status, &previous).await?;
            return Err(Error::Transient(e));
        }
        Err(e) => {
            conditions::mark_stalled(
                &mut status.conditions,
                generation,
                e.reason,
                e.message.clone(),
                now,
            );
            let action = if e.reason.awaits_kubernetes_object() {
                Action::requeue(backoff(
                    ctx.failed(&key(s)),
                    INPUT_RECHECK_BASE,
                    INPUT_RECHECK_MAX,
                ))
            } else {
                Action::requeue(STORE_RECHECK)
            };
            (
                action,
                "stalled",
                (EventType::Warning, e.reason.as_str().to_string(), e.message),
            )
        }
    };
    let changed = write(s, ctx, &status, &previous).await?;
    if changed {
        ctx.event(&s.object_ref(&()), event.0, &event.1, "Check", event.2)
            .await;
    }
    Ok((action, label))
}

/// Writes the status when it differs (ignoring condition times); returns whether it did.
async fn write<S: StoreObject>(
    s: &S,
    ctx: &Context,
    status: &ArtifactStoreStatus,
    previous: &ArtifactStoreStatus,
) -> Result<bool, Error> {
    if status == previous {
        return Ok(false);
    }
    status_patch::apply_status(
        &s.api(ctx.client.clone()),
        S::KIND,
        &s.name_any(),
        status,
        FIELD_MANAGER,
    )
    .await
}
