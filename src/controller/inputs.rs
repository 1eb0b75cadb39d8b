//! Reads, from the Kubernetes API, exactly the objects one transfer or store references
//! (its store, Secrets, ServiceAccount, ConfigMap, namespace labels), so [`crate::transfer::resolve`] can
//! turn them into a request. Objects that do not exist are left out: resolving then
//! reports the missing one with a reason (SecretNotFound, StoreNotAllowed, ...).
//!
//! Secrets and ConfigMaps are read with `get` only — never listed or watched — so the
//! controller's RBAC needs no list/watch on Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::{Api, Client, ResourceExt as _};

use crate::api::{
    ArtifactStore, ArtifactStoreSpec, ArtifactTransfer, ClusterArtifactStore, SecretRef, StoreKind,
    TransferDestination, TransferSource,
};
use crate::transfer::TenantPolicy;
use crate::transfer::resolve::Inputs;

/// The objects a transfer or store references, as read from the API.
#[derive(Debug, Default)]
pub struct Gathered {
    artifact_stores: Vec<ArtifactStore>,
    cluster_artifact_stores: Vec<ClusterArtifactStore>,
    secrets: Vec<Secret>,
    config_maps: Vec<ConfigMap>,
    service_accounts: Vec<ServiceAccount>,
    namespace_labels: Option<BTreeMap<String, String>>,
}

impl Gathered {
    /// The [`Inputs`] view for resolving.
    pub fn inputs<'a>(
        &'a self,
        controller_namespace: &'a str,
        policy: &'a TenantPolicy,
    ) -> Inputs<'a> {
        Inputs {
            controller_namespace,
            policy,
            namespace_labels: self.namespace_labels.as_ref(),
            artifact_stores: &self.artifact_stores,
            cluster_artifact_stores: &self.cluster_artifact_stores,
            secrets: &self.secrets,
            config_maps: &self.config_maps,
            service_accounts: &self.service_accounts,
        }
    }
}

async fn push_secret(
    client: &Client,
    out: &mut Vec<Secret>,
    namespace: &str,
    r: Option<&SecretRef>,
) -> Result<(), kube::Error> {
    if let Some(r) = r {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        if let Some(s) = api.get_opt(&r.name).await? {
            out.push(s);
        }
    }
    Ok(())
}

/// The identity Secret or ServiceAccount of a store, if it names one.
async fn store_identity(
    client: &Client,
    g: &mut Gathered,
    spec: &ArtifactStoreSpec,
    namespace: &str,
) -> Result<(), kube::Error> {
    push_secret(
        client,
        &mut g.secrets,
        namespace,
        spec.identity.secret_ref.as_ref(),
    )
    .await?;
    if let Some(name) = &spec.identity.service_account_name {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(sa)) => g.service_accounts.push(sa),
            Ok(None) => {}
            // Installed without the ServiceAccount rules (chart value
            // rbac.serviceAccountTokens=false): the store cannot use one; resolving says so.
            Err(kube::Error::Api(e)) if e.code == 403 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what `transfer` references.
pub async fn for_transfer(
    client: &Client,
    transfer: &ArtifactTransfer,
    controller_namespace: &str,
) -> Result<Gathered, kube::Error> {
    let ns = transfer
        .namespace()
        .unwrap_or_else(|| "default".to_string());
    let mut g = Gathered::default();
    let spec = &transfer.spec;
    let store = spec.store_side();
    match store.store_ref.kind {
        StoreKind::ArtifactStore => {
            let api: Api<ArtifactStore> = Api::namespaced(client.clone(), &ns);
            if let Some(s) = api.get_opt(&store.store_ref.name).await? {
                store_identity(client, &mut g, &s.spec, &ns).await?;
                g.artifact_stores.push(s);
            }
        }
        StoreKind::ClusterArtifactStore => {
            let api: Api<ClusterArtifactStore> = Api::all(client.clone());
            if let Some(s) = api.get_opt(&store.store_ref.name).await? {
                store_identity(client, &mut g, &s.spec.store, controller_namespace).await?;
                if s.spec.allowed_namespaces.is_some() {
                    let api: Api<Namespace> = Api::all(client.clone());
                    g.namespace_labels = api.get_opt(&ns).await?.map(|n| n.labels().clone());
                }
                g.cluster_artifact_stores.push(s);
            }
        }
    }
    match &spec.source {
        TransferSource::Registry(r) => {
            push_secret(client, &mut g.secrets, &ns, r.secret_ref.as_ref()).await?;
            push_secret(client, &mut g.secrets, &ns, r.ca_secret_ref.as_ref()).await?;
        }
        TransferSource::HelmRepository(h) => {
            push_secret(client, &mut g.secrets, &ns, h.secret_ref.as_ref()).await?;
            push_secret(client, &mut g.secrets, &ns, h.ca_secret_ref.as_ref()).await?;
        }
        TransferSource::ConfigMap(c) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            if let Some(m) = api.get_opt(&c.name).await? {
                g.config_maps.push(m);
            }
        }
        TransferSource::ArtifactStore(_) => {}
    }
    match &spec.destination {
        TransferDestination::Registry(r) => {
            push_secret(client, &mut g.secrets, &ns, r.secret_ref.as_ref()).await?;
            push_secret(client, &mut g.secrets, &ns, r.ca_secret_ref.as_ref()).await?;
        }
        TransferDestination::ConfigMap(c) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            if let Some(m) = api.get_opt(&c.name).await? {
                g.config_maps.push(m);
            }
        }
        TransferDestination::ArtifactStore(_) => {}
    }
    Ok(g)
}

/// Reads the identity Secret or ServiceAccount of a store whose objects live in
/// `secret_namespace`.
pub async fn for_store(
    client: &Client,
    spec: &ArtifactStoreSpec,
    secret_namespace: &str,
) -> Result<Gathered, kube::Error> {
    let mut g = Gathered::default();
    store_identity(client, &mut g, spec, secret_namespace).await?;
    Ok(g)
}
