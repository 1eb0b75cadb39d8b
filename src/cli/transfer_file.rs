//! `transfer -f FILE`: runs ArtifactTransfers from a multi-document YAML file exactly as
//! the controller will, with the stores, Secrets, ConfigMaps and Namespaces given beside
//! them, and prints each resulting status.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aosm_artifact_operator::api::{
    ArtifactStore, ArtifactTransfer, ArtifactTransferStatus, ClusterArtifactStore,
    TransferDestination, from_value_strict,
};
use aosm_artifact_operator::controller::tokens::ServiceAccountTokenRequests;
use aosm_artifact_operator::engine::{EngineError, NoProgress};
use aosm_artifact_operator::transfer::resolve::{Inputs, resolve};
use aosm_artifact_operator::transfer::{
    Destination, Executor, Reason, TenantPolicy, TransferError, status,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::ResourceExt as _;
use serde::Deserialize as _;

/// The objects of a transfer file.
#[derive(Default)]
pub struct Documents {
    pub transfers: Vec<ArtifactTransfer>,
    pub stores: Vec<ArtifactStore>,
    pub cluster_stores: Vec<ClusterArtifactStore>,
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
    pub namespaces: Vec<Namespace>,
    pub service_accounts: Vec<ServiceAccount>,
}

fn bad(path: &Path, index: usize, what: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidInput(format!("{} document {}: {what}", path.display(), index + 1))
}

/// Decodes through JSON, as the API server does: serde_yaml 0.9 would expect YAML tags for
/// the one-of enums (`source: {registry: ...}`), which Kubernetes manifests never use.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
    path: &Path,
    index: usize,
    value: serde_yaml::Value,
) -> Result<T, EngineError> {
    let json: serde_json::Value = serde_yaml::from_value(value).map_err(|e| bad(path, index, e))?;
    // Unknown fields are refused as `kubectl apply` refuses them (a typo is not ignored).
    from_value_strict(json).map_err(|e| bad(path, index, e))
}

/// The checks the API server's schema would make, for objects that never passed through one.
fn check_spec(t: &ArtifactTransfer, docs: &Documents) -> Result<(), TransferError> {
    let mut problems: Vec<String> = Vec::new();
    if let Err(errors) = t.spec.validate() {
        problems.extend(
            errors
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message)),
        );
    }
    if matches!(t.spec.destination, TransferDestination::ConfigMap(_)) {
        problems.push(
            "spec.destination.configMap: a ConfigMap is written by the controller in a cluster; here, pull the file with `store pull NAME:VERSION -o DIR`".to_string(),
        );
    }
    let stores = docs
        .stores
        .iter()
        .map(|s| s.store_spec())
        .chain(docs.cluster_stores.iter().map(|s| s.store_spec()));
    for spec in stores {
        if let Err(errors) = spec.validate() {
            problems.extend(
                errors
                    .into_iter()
                    .map(|e| format!("store {}: {}: {}", spec.artifact_store, e.field, e.message)),
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(TransferError::permanent(
            Reason::InvalidSpec,
            problems.join("; "),
        ))
    }
}

/// Reads every document of `path` (`-` = stdin).
pub fn read_documents(path: &Path) -> Result<Documents, EngineError> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| EngineError::io("stdin", e))?
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            EngineError::InvalidInput(format!("cannot read {}: {e}", path.display()))
        })?
    };
    let mut docs = Documents::default();
    for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml::Value::deserialize(de).map_err(|e| bad(path, i, e))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string();
        match kind.as_str() {
            "ArtifactTransfer" => docs.transfers.push(typed(path, i, value)?),
            "ArtifactStore" => docs.stores.push(typed(path, i, value)?),
            "ClusterArtifactStore" => docs.cluster_stores.push(typed(path, i, value)?),
            "Secret" => docs.secrets.push(typed(path, i, value)?),
            "ConfigMap" => docs.config_maps.push(typed(path, i, value)?),
            "Namespace" => docs.namespaces.push(typed(path, i, value)?),
            "ServiceAccount" => docs.service_accounts.push(typed(path, i, value)?),
            "" => return Err(bad(path, i, "has no kind")),
            other => {
                return Err(bad(
                    path,
                    i,
                    format!(
                        "kind {other} is not used by transfer -f (ArtifactTransfer, ArtifactStore, ClusterArtifactStore, Secret, ConfigMap, Namespace, ServiceAccount)"
                    ),
                ));
            }
        }
    }
    if docs.transfers.is_empty() {
        return Err(EngineError::InvalidInput(format!(
            "{} holds no ArtifactTransfer",
            path.display()
        )));
    }
    // Objects without a namespace live in "default", as kubectl would put them.
    for t in &mut docs.transfers {
        t.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    for s in &mut docs.stores {
        s.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    for s in &mut docs.secrets {
        s.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    for c in &mut docs.config_maps {
        c.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    for a in &mut docs.service_accounts {
        a.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    Ok(docs)
}

/// The executor; when a store's identity is a ServiceAccount, its tokens are asked for
/// from the Kubernetes API of the current kubeconfig, as the controller asks its own.
async fn executor(docs: &Documents, concurrency: usize) -> Result<Executor, EngineError> {
    let executor = Executor::new(concurrency).map_err(|e| EngineError::InvalidInput(e.message))?;
    let uses_service_accounts = docs
        .stores
        .iter()
        .map(|s| s.store_spec())
        .chain(docs.cluster_stores.iter().map(|s| s.store_spec()))
        .any(|s| s.identity.service_account_name.is_some());
    if !uses_service_accounts {
        return Ok(executor);
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        EngineError::InvalidInput(format!(
            "a store's identity.serviceAccountName needs the Kubernetes API to ask for the ServiceAccount's token (KUBECONFIG or ~/.kube/config): {e}"
        ))
    })?;
    Ok(
        executor.with_service_account_tokens(std::sync::Arc::new(
            ServiceAccountTokenRequests::new(client),
        )),
    )
}

/// Runs every transfer (concurrently, sharing credentials) under the same tenant policy
/// as the controller; returns each with its status.
pub async fn transfer_documents(
    docs: &Documents,
    controller_namespace: &str,
    policy: &TenantPolicy,
    concurrency: usize,
    mark_uploaded: bool,
) -> Result<Vec<ArtifactTransfer>, EngineError> {
    let executor = executor(docs, concurrency).await?;
    let empty = BTreeMap::new();
    let runs = docs.transfers.iter().map(|t| {
        let namespace = t.namespace().unwrap_or_default();
        let labels = docs
            .namespaces
            .iter()
            .find(|n| n.name_any() == namespace)
            .map(|n| n.labels())
            .unwrap_or(&empty);
        let inputs = Inputs {
            controller_namespace,
            policy,
            service_accounts: &docs.service_accounts,
            namespace_labels: Some(labels),
            artifact_stores: &docs.stores,
            cluster_artifact_stores: &docs.cluster_stores,
            secrets: &docs.secrets,
            config_maps: &docs.config_maps,
        };
        let executor = &executor;
        async move {
            check_spec(t, docs)?;
            let request = resolve(t, &inputs)?;
            // spec.timeout bounds one attempt here too, as in the controller.
            let timeout = t.spec.timeout().map_err(|e| {
                TransferError::permanent(Reason::InvalidSpec, format!("spec.timeout: {e}"))
            })?;
            let outcome = tokio::time::timeout(timeout, executor.execute(&request, &NoProgress))
                .await
                .map_err(|_| TransferError {
                    reason: Reason::TransientFailure,
                    message: format!(
                        "the attempt did not finish within spec.timeout ({}); run it again or raise the timeout",
                        t.spec.timeout
                    ),
                    retry_after: None,
                })??;
            Ok::<_, TransferError>((request, outcome))
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    let mut all_ok = true;
    let mut pushed_to = Vec::new();
    for (t, result) in docs.transfers.iter().zip(results) {
        let mut t = t.clone();
        let mut st: ArtifactTransferStatus = t.status.take().unwrap_or_default();
        st.describe(&t.spec);
        st.started_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        match result {
            Ok((request, outcome)) => {
                if let Destination::Store(store) = request.destination {
                    pushed_to.push(*store);
                }
                status::succeeded(
                    &mut st,
                    &outcome,
                    t.metadata.generation,
                    jiff::Timestamp::now(),
                );
            }
            Err(e) => {
                all_ok = false;
                status::failed(&mut st, &e, t.metadata.generation, jiff::Timestamp::now());
            }
        }
        t.status = Some(st);
        out.push(t);
    }
    if mark_uploaded && all_ok {
        let mut done = BTreeSet::new();
        for store in pushed_to {
            if done.insert((format!("{:?}", store.store.id), store.manifest.clone())) {
                executor
                    .mark_uploaded(&store.store, &store.manifest)
                    .await
                    .map_err(|e| {
                        EngineError::Failed(format!(
                            "updateState of manifest {}: {e}",
                            store.manifest
                        ))
                    })?;
                eprintln!("artifact manifest {} marked Uploaded", store.manifest);
            }
        }
    }
    Ok(out)
}
