//! From Kubernetes objects to a [`TransferRequest`]: find the store the transfer names
//! (checking it admits the namespace), read the Secrets and ConfigMaps it names, and
//! turn them into engine credentials. Objects are handed in; nothing is fetched here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt as _;

use super::error::{Reason, TransferError};
use super::policy::TenantPolicy;
use super::request::{
    ConfigMapSide, Destination, FileSource, HelmSource, RegistrySide, Source, StoreConfig,
    StoreSide as ResolvedArtifact, TransferRequest,
};
use crate::aosm::{Cloud, Identity, StoreId};
use crate::api::{
    ArtifactStore, ArtifactStoreSpec, ArtifactTransfer, AzureCloud, CONFIG_MAP_DIGEST_ANNOTATION,
    ClusterArtifactStore, ConfigMapTarget, IdentityType, RegistryImage, StoreArtifact, StoreKind,
    TransferDestination, TransferSource,
};
use crate::engine::{Credentials, DockerConfigAuth, ImageRef, Secret as EngineSecret};

/// The objects a transfer may reference, and the admin's rules for tenants' stores.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Namespace of the controller (Secrets and ServiceAccounts of ClusterArtifactStores).
    pub controller_namespace: &'a str,
    /// What namespaced ArtifactStores may do.
    pub policy: &'a TenantPolicy,
    /// Labels of the transfer's namespace (for `allowedNamespaces`); `None` = unknown.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// Namespaced stores.
    pub artifact_stores: &'a [ArtifactStore],
    /// Cluster stores.
    pub cluster_artifact_stores: &'a [ClusterArtifactStore],
    /// Secrets (any namespace; matched by namespace and name).
    pub secrets: &'a [Secret],
    /// ConfigMaps (any namespace).
    pub config_maps: &'a [ConfigMap],
    /// ServiceAccounts named by stores' `identity.serviceAccountName` (any namespace).
    pub service_accounts: &'a [ServiceAccount],
}

/// The ServiceAccount annotation naming the Azure identity (client id) its tokens stand
/// for, as the AKS workload identity webhook reads it.
pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// The ServiceAccount annotation naming the identity's Entra tenant.
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

/// Who owns a store: a tenant (a namespaced ArtifactStore) or the cluster admin (a
/// ClusterArtifactStore). It decides where the store's Secret and ServiceAccount live and
/// whether [`TenantPolicy`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOwner<'a> {
    /// ArtifactStore `name` in `namespace`.
    Namespace {
        /// The store's namespace.
        namespace: &'a str,
        /// The store's name.
        name: &'a str,
    },
    /// ClusterArtifactStore `name`.
    Cluster {
        /// The store's name.
        name: &'a str,
    },
}

fn secret<'a>(
    inputs: &Inputs<'a>,
    namespace: &str,
    name: &str,
    purpose: &str,
) -> Result<&'a Secret, TransferError> {
    inputs
        .secrets
        .iter()
        .find(|s| s.name_any() == name && s.namespace().as_deref().unwrap_or("default") == namespace)
        .ok_or_else(|| {
            TransferError::permanent(
                Reason::SecretNotFound,
                format!("Secret {namespace}/{name} ({purpose}) does not exist; create it or fix the reference"),
            )
        })
}

/// A key of a Secret, from `data` or `stringData`.
fn secret_key(s: &Secret, key: &str) -> Option<Vec<u8>> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .or_else(|| {
            s.string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.as_bytes().to_vec())
        })
}

fn required_key(s: &Secret, key: &str, purpose: &str) -> Result<Vec<u8>, TransferError> {
    secret_key(s, key).ok_or_else(|| {
        TransferError::permanent(
            Reason::SecretNotFound,
            format!(
                "Secret {}/{} ({purpose}) has no key {key:?}",
                s.namespace().unwrap_or_default(),
                s.name_any()
            ),
        )
    })
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, TransferError> {
    String::from_utf8(bytes)
        .map(|s| s.trim().to_string())
        .map_err(|_| {
            TransferError::permanent(Reason::InvalidSpec, format!("{what} is not UTF-8 text"))
        })
}

fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let exprs_ok = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
    });
    labels_ok && exprs_ok
}

/// Finds the store a transfer names and checks it admits `namespace`.
/// Returns its spec and its owner.
pub fn find_store<'a, 'b>(
    inputs: &Inputs<'a>,
    namespace: &'b str,
    kind: StoreKind,
    name: &'b str,
) -> Result<(&'a ArtifactStoreSpec, StoreOwner<'b>), TransferError> {
    match kind {
        StoreKind::ArtifactStore => inputs
            .artifact_stores
            .iter()
            .find(|s| s.name_any() == name && s.namespace().as_deref().unwrap_or("default") == namespace)
            .map(|s| (s.store_spec(), StoreOwner::Namespace { namespace, name }))
            .ok_or_else(|| {
                TransferError::permanent(
                    Reason::StoreNotAllowed,
                    format!("ArtifactStore {namespace}/{name} does not exist; a transfer can use an ArtifactStore in its own namespace or a ClusterArtifactStore"),
                )
            }),
        StoreKind::ClusterArtifactStore => {
            let store = inputs
                .cluster_artifact_stores
                .iter()
                .find(|s| s.name_any() == name)
                .ok_or_else(|| {
                    TransferError::permanent(Reason::StoreNotAllowed, format!("ClusterArtifactStore {name} does not exist"))
                })?;
            if let Some(selector) = &store.spec.allowed_namespaces {
                let empty = BTreeMap::new();
                let labels = inputs.namespace_labels.unwrap_or(&empty);
                if !selector_matches(selector, labels) {
                    return Err(TransferError::permanent(
                        Reason::StoreNotAllowed,
                        format!("ClusterArtifactStore {name} does not allow namespace {namespace} (its allowedNamespaces selector does not match the namespace's labels)"),
                    ));
                }
            }
            Ok((store.store_spec(), StoreOwner::Cluster { name }))
        }
    }
}

/// The identity of a store whose tokens come from its own ServiceAccount
/// `namespace/name`: client and tenant ids from the spec, else from the ServiceAccount's
/// workload identity annotations.
fn service_account_identity(
    inputs: &Inputs<'_>,
    spec: &ArtifactStoreSpec,
    namespace: &str,
    name: &str,
) -> Result<Identity, TransferError> {
    let sa = inputs
        .service_accounts
        .iter()
        .find(|s| s.name_any() == name && s.namespace().as_deref().unwrap_or("default") == namespace)
        .ok_or_else(|| {
            TransferError::permanent(
                Reason::ServiceAccountNotFound,
                format!("ServiceAccount {namespace}/{name} (store identity.serviceAccountName) does not exist, or the controller may not read ServiceAccounts (chart value rbac.serviceAccountTokens); create it or fix the name"),
            )
        })?;
    let annotation = |key: &str| {
        sa.annotations()
            .get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let client_id = spec
        .identity
        .client_id
        .clone()
        .or_else(|| annotation(CLIENT_ID_ANNOTATION))
        .ok_or_else(|| {
            TransferError::permanent(
                Reason::ServiceAccountNotFound,
                format!("ServiceAccount {namespace}/{name} has no {CLIENT_ID_ANNOTATION} annotation and the store sets no identity.clientId; annotate it with the client id of the Azure identity federated with it"),
            )
        })?;
    static GUID: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(crate::api::patterns::GUID).ok());
    if !GUID.as_ref().is_some_and(|re| re.is_match(&client_id)) {
        return Err(TransferError::permanent(
            Reason::InvalidSpec,
            format!(
                "ServiceAccount {namespace}/{name}: {CLIENT_ID_ANNOTATION} is not a client id (a GUID)"
            ),
        ));
    }
    Ok(Identity::ServiceAccount {
        namespace: namespace.to_string(),
        name: name.to_string(),
        client_id,
        tenant_id: spec
            .identity
            .tenant_id
            .clone()
            .or_else(|| annotation(TENANT_ID_ANNOTATION)),
    })
}

/// The store's connection settings, with its identity Secret or ServiceAccount read.
/// A namespaced store is first checked against the admin's [`TenantPolicy`], before
/// anything is read or sent.
pub fn store_config(
    inputs: &Inputs<'_>,
    spec: &ArtifactStoreSpec,
    owner: StoreOwner<'_>,
) -> Result<StoreConfig, TransferError> {
    let secret_namespace = match owner {
        StoreOwner::Namespace { namespace, name } => {
            inputs
                .policy
                .check_namespaced_store(namespace, name, spec)?;
            namespace
        }
        StoreOwner::Cluster { .. } => inputs.controller_namespace,
    };
    let identity = match spec.identity.type_ {
        IdentityType::WorkloadIdentity => match &spec.identity.service_account_name {
            Some(sa) => service_account_identity(inputs, spec, secret_namespace, sa)?,
            None => Identity::WorkloadIdentity {
                client_id: spec.identity.client_id.clone(),
                tenant_id: spec.identity.tenant_id.clone(),
            },
        },
        IdentityType::ManagedIdentity => Identity::ManagedIdentity {
            client_id: spec.identity.client_id.clone(),
        },
        IdentityType::ClientSecret => {
            let name = spec
                .identity
                .secret_ref
                .as_ref()
                .map(|r| r.name.as_str())
                .ok_or_else(|| {
                    TransferError::permanent(
                        Reason::InvalidSpec,
                        "identity type ClientSecret needs identity.secretRef",
                    )
                })?;
            let purpose = "store identity";
            let s = secret(inputs, secret_namespace, name, purpose)?;
            Identity::ClientSecret {
                tenant_id: match &spec.identity.tenant_id {
                    Some(t) => t.clone(),
                    None => utf8(required_key(s, "tenantId", purpose)?, "tenantId")?,
                },
                client_id: match &spec.identity.client_id {
                    Some(c) => c.clone(),
                    None => utf8(required_key(s, "clientId", purpose)?, "clientId")?,
                },
                client_secret: EngineSecret::new(utf8(
                    required_key(s, "clientSecret", purpose)?,
                    "clientSecret",
                )?),
            }
        }
    };
    Ok(StoreConfig {
        id: StoreId {
            subscription_id: spec.subscription_id.clone(),
            resource_group: spec.resource_group.clone(),
            publisher: spec.publisher.clone(),
            artifact_store: spec.artifact_store.clone(),
        },
        cloud: aosm_cloud(spec.cloud),
        arm_endpoint: spec.arm_endpoint.clone(),
        authority_host: spec.authority_host.clone(),
        api_version: spec.api_version.as_str().to_string(),
        identity,
    })
}

fn store_artifact(
    inputs: &Inputs<'_>,
    namespace: &str,
    a: &StoreArtifact,
) -> Result<ResolvedArtifact, TransferError> {
    let (spec, owner) = find_store(inputs, namespace, a.store_ref.kind, &a.store_ref.name)?;
    Ok(ResolvedArtifact {
        store: store_config(inputs, spec, owner)?,
        manifest: a.manifest.clone(),
        artifact: a.artifact.clone(),
        version: a.version.clone(),
    })
}

fn ca_pem(
    inputs: &Inputs<'_>,
    namespace: &str,
    r: Option<&crate::api::SecretRef>,
) -> Result<Option<Vec<u8>>, TransferError> {
    match r {
        None => Ok(None),
        Some(r) => {
            let s = secret(inputs, namespace, &r.name, "CA bundle")?;
            Ok(Some(required_key(s, "ca.crt", "CA bundle")?))
        }
    }
}

fn registry_side(
    inputs: &Inputs<'_>,
    namespace: &str,
    r: &RegistryImage,
) -> Result<RegistrySide, TransferError> {
    let credentials = match &r.secret_ref {
        None => Credentials::Anonymous,
        Some(sr) => {
            let purpose = "registry credentials";
            let s = secret(inputs, namespace, &sr.name, purpose)?;
            let json = secret_key(s, ".dockerconfigjson")
                .or_else(|| secret_key(s, "config.json"))
                .ok_or_else(|| {
                    TransferError::permanent(
                        Reason::SecretNotFound,
                        format!("Secret {namespace}/{} ({purpose}) has no .dockerconfigjson key; create it with kubectl create secret docker-registry", sr.name),
                    )
                })?;
            let config = DockerConfigAuth::parse(&json).map_err(|e| {
                TransferError::permanent(
                    Reason::InvalidSpec,
                    format!("Secret {namespace}/{}: {e}", sr.name),
                )
            })?;
            let host = ImageRef::parse(&r.image)?.registry;
            config.lookup(&host).ok_or_else(|| {
                TransferError::permanent(
                    Reason::SecretNotFound,
                    format!(
                        "Secret {namespace}/{} has no credentials for registry {host}",
                        sr.name
                    ),
                )
            })?
        }
    };
    Ok(RegistrySide {
        image: r.image.clone(),
        credentials,
        ca_pem: ca_pem(inputs, namespace, r.ca_secret_ref.as_ref())?,
        insecure: r.insecure,
        plain_http: r.plain_http,
    })
}

/// The ConfigMap a one-file artifact goes into. One that exists must be controlled by
/// this transfer (its controller owner reference names the transfer's uid): a user's own
/// ConfigMap, or another transfer's, is never overwritten. What it holds counts only
/// while it still has the key.
fn config_map_side(
    transfer: &ArtifactTransfer,
    inputs: &Inputs<'_>,
    ns: &str,
    c: &ConfigMapTarget,
) -> Result<ConfigMapSide, TransferError> {
    let existing = inputs
        .config_maps
        .iter()
        .find(|m| m.name_any() == c.name && m.namespace().as_deref().unwrap_or("default") == ns);
    let held_digest = match existing {
        None => None,
        Some(cm) => {
            let controlled = transfer.metadata.uid.as_ref().is_some_and(|uid| {
                cm.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && &o.uid == uid)
            });
            if !controlled {
                return Err(TransferError::permanent(
                    Reason::ConfigMapConflict,
                    format!(
                        "ConfigMap {ns}/{} exists and was not created by this transfer; it is not overwritten: delete it, or name another in destination.configMap.name",
                        c.name
                    ),
                ));
            }
            let has_key = cm.data.as_ref().is_some_and(|d| d.contains_key(&c.key))
                || cm
                    .binary_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&c.key));
            cm.annotations()
                .get(CONFIG_MAP_DIGEST_ANNOTATION)
                .filter(|_| has_key)
                .cloned()
        }
    };
    Ok(ConfigMapSide {
        name: c.name.clone(),
        key: c.key.clone(),
        held_digest,
        found_version: existing.and_then(|m| m.resource_version()),
    })
}

/// Resolves a transfer into a request the executor can run.
pub fn resolve(
    transfer: &ArtifactTransfer,
    inputs: &Inputs<'_>,
) -> Result<TransferRequest, TransferError> {
    let namespace = transfer
        .namespace()
        .unwrap_or_else(|| "default".to_string());
    let ns = namespace.as_str();
    let spec = &transfer.spec;
    let source = match &spec.source {
        TransferSource::Registry(r) => Source::Registry(registry_side(inputs, ns, r)?),
        TransferSource::HelmRepository(h) => {
            let credentials = match &h.secret_ref {
                None => Credentials::Anonymous,
                Some(sr) => {
                    let purpose = "Helm repository credentials";
                    let s = secret(inputs, ns, &sr.name, purpose)?;
                    Credentials::basic(
                        utf8(required_key(s, "username", purpose)?, "username")?,
                        utf8(required_key(s, "password", purpose)?, "password")?,
                    )
                }
            };
            Source::HelmRepository(HelmSource {
                url: h.url.clone(),
                chart: h.chart.clone(),
                version: h.version.clone(),
                credentials,
                ca_pem: ca_pem(inputs, ns, h.ca_secret_ref.as_ref())?,
                insecure: h.insecure,
            })
        }
        TransferSource::ConfigMap(c) => {
            let cm = inputs
                .config_maps
                .iter()
                .find(|m| {
                    m.name_any() == c.name && m.namespace().as_deref().unwrap_or("default") == ns
                })
                .ok_or_else(|| {
                    TransferError::permanent(
                        Reason::ConfigMapNotFound,
                        format!("ConfigMap {ns}/{} does not exist", c.name),
                    )
                })?;
            let data = cm
                .data
                .as_ref()
                .and_then(|d| d.get(&c.key))
                .map(|v| v.as_bytes().to_vec())
                .or_else(|| {
                    cm.binary_data
                        .as_ref()
                        .and_then(|d| d.get(&c.key))
                        .map(|v| v.0.clone())
                })
                .ok_or_else(|| {
                    TransferError::permanent(
                        Reason::ConfigMapNotFound,
                        format!("ConfigMap {ns}/{} has no key {:?}", c.name, c.key),
                    )
                })?;
            Source::File(FileSource {
                name: c.key.clone(),
                media_type: c.media_type.clone(),
                data,
            })
        }
        TransferSource::ArtifactStore(a) => Source::Store(Box::new(store_artifact(inputs, ns, a)?)),
    };
    let destination = match &spec.destination {
        TransferDestination::ArtifactStore(a) => {
            Destination::Store(Box::new(store_artifact(inputs, ns, a)?))
        }
        TransferDestination::Registry(r) => Destination::Registry(registry_side(inputs, ns, r)?),
        TransferDestination::ConfigMap(c) => {
            Destination::ConfigMap(config_map_side(transfer, inputs, ns, c)?)
        }
    };
    let platforms = spec
        .platforms
        .iter()
        .map(|p| {
            p.parse()
                .map_err(|e: String| TransferError::permanent(Reason::InvalidSpec, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TransferRequest {
        source,
        destination,
        platforms,
        referrers: spec.referrers,
    })
}

/// The AOSM client's cloud (which knows each cloud's endpoints) for the spec's `cloud`.
pub fn aosm_cloud(cloud: AzureCloud) -> Cloud {
    match cloud {
        AzureCloud::AzurePublic => Cloud::AzurePublic,
        AzureCloud::AzureUsGovernment => Cloud::AzureUSGovernment,
        AzureCloud::AzureChina => Cloud::AzureChina,
        AzureCloud::Custom => Cloud::Custom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StoreIdentity;

    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

    fn spec(identity: StoreIdentity) -> ArtifactStoreSpec {
        serde_json::from_value(serde_json::json!({
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "resourceGroup": "rg", "publisher": "p", "artifactStore": "s",
            "identity": identity,
        }))
        .unwrap()
    }

    fn service_account(ns: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.namespace = Some(ns.into());
        sa.metadata.name = Some(name.into());
        sa.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        sa
    }

    fn resolve_identity(
        identity: StoreIdentity,
        owner: StoreOwner<'_>,
        accounts: &[ServiceAccount],
    ) -> Result<Identity, TransferError> {
        let policy = TenantPolicy::default();
        store_config(&inputs(&policy, &[], accounts), &spec(identity), owner).map(|c| c.identity)
    }

    /// Inputs holding only `config_maps` and `accounts`, with the controller in
    /// `aosm-system`.
    fn inputs<'a>(
        policy: &'a TenantPolicy,
        config_maps: &'a [ConfigMap],
        accounts: &'a [ServiceAccount],
    ) -> Inputs<'a> {
        Inputs {
            controller_namespace: "aosm-system",
            policy,
            namespace_labels: None,
            artifact_stores: &[],
            cluster_artifact_stores: &[],
            secrets: &[],
            config_maps,
            service_accounts: accounts,
        }
    }

    #[test]
    fn a_stores_own_service_account_names_its_identity() {
        let own = StoreIdentity {
            service_account_name: Some("publisher".into()),
            ..Default::default()
        };
        let team = StoreOwner::Namespace {
            namespace: "team-a",
            name: "s",
        };
        let annotated = service_account(
            "team-a",
            "publisher",
            &[
                (CLIENT_ID_ANNOTATION, CLIENT),
                (TENANT_ID_ANNOTATION, "contoso.example"),
            ],
        );
        assert_eq!(
            resolve_identity(own.clone(), team, std::slice::from_ref(&annotated)).unwrap(),
            Identity::ServiceAccount {
                namespace: "team-a".into(),
                name: "publisher".into(),
                client_id: CLIENT.into(),
                tenant_id: Some("contoso.example".into()),
            }
        );
        // Another namespace's ServiceAccount of the same name is not this store's.
        let elsewhere = service_account("team-b", "publisher", &[(CLIENT_ID_ANNOTATION, CLIENT)]);
        let e = resolve_identity(own.clone(), team, &[elsewhere]).unwrap_err();
        assert_eq!(e.reason, Reason::ServiceAccountNotFound, "{e}");
        // A cluster store's ServiceAccount lives in the controller's namespace.
        let system = service_account(
            "aosm-system",
            "publisher",
            &[(CLIENT_ID_ANNOTATION, CLIENT)],
        );
        let cluster = StoreOwner::Cluster { name: "c" };
        assert!(matches!(
            resolve_identity(own.clone(), cluster, &[system]),
            Ok(Identity::ServiceAccount { namespace, tenant_id: None, .. }) if namespace == "aosm-system"
        ));
        // No client id anywhere, or one that is not a GUID.
        let bare = service_account("team-a", "publisher", &[]);
        let e = resolve_identity(own.clone(), team, &[bare]).unwrap_err();
        assert_eq!(e.reason, Reason::ServiceAccountNotFound, "{e}");
        assert!(e.message.contains(CLIENT_ID_ANNOTATION), "{e}");
        let odd = service_account("team-a", "publisher", &[(CLIENT_ID_ANNOTATION, "x/../y")]);
        let e = resolve_identity(own, team, &[odd]).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidSpec, "{e}");
        // The policy refuses an ambient identity before any object matters.
        let e = resolve_identity(StoreIdentity::default(), team, &[annotated]).unwrap_err();
        assert_eq!(e.reason, Reason::AmbientIdentityNotAllowed, "{e}");
        assert!(resolve_identity(StoreIdentity::default(), cluster, &[]).is_ok());
    }

    #[test]
    fn a_config_map_destination_is_written_only_when_the_transfer_controls_it() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let spec = serde_json::from_value(serde_json::json!({
            "source": {"artifactStore": {"storeRef": {"name": "s"}, "manifest": "m",
                "artifact": "nf-template", "version": "1.0.0"}},
            "destination": {"configMap": {"name": "nf-template", "key": "template.json"}},
        }))
        .unwrap();
        let mut t = ArtifactTransfer::new("pull-template", spec);
        t.metadata.namespace = Some("team-a".into());
        t.metadata.uid = Some("uid-of-the-transfer".into());
        let target = ConfigMapTarget {
            name: "nf-template".into(),
            key: "template.json".into(),
        };
        let config_map = |ns: &str, owner_uid: Option<&str>, controller: bool, key: &str| {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some("nf-template".into());
            cm.metadata.namespace = Some(ns.into());
            cm.metadata.resource_version = Some("42".into());
            cm.metadata.annotations = Some(BTreeMap::from([(
                CONFIG_MAP_DIGEST_ANNOTATION.to_string(),
                "sha256:held".to_string(),
            )]));
            cm.metadata.owner_references = owner_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: crate::api::API_VERSION.into(),
                    kind: "ArtifactTransfer".into(),
                    name: "pull-template".into(),
                    uid: uid.into(),
                    controller: Some(controller),
                    ..Default::default()
                }]
            });
            cm.data = Some(BTreeMap::from([(key.to_string(), "{}".to_string())]));
            cm
        };
        let policy = TenantPolicy::default();
        let side = |maps: &[ConfigMap]| {
            config_map_side(&t, &inputs(&policy, maps, &[]), "team-a", &target)
        };
        // Missing (or only in another namespace): created, nothing held.
        let new = side(&[config_map("team-b", None, false, "template.json")]).unwrap();
        assert_eq!(new.reference(), "configmap/nf-template/template.json");
        assert_eq!((new.held_digest, new.found_version), (None, None));
        // Controlled by this transfer: what it holds counts while the key is there.
        let ours = side(&[config_map(
            "team-a",
            Some("uid-of-the-transfer"),
            true,
            "template.json",
        )])
        .unwrap();
        assert_eq!(ours.held_digest.as_deref(), Some("sha256:held"));
        assert_eq!(ours.found_version.as_deref(), Some("42"));
        let key_gone = side(&[config_map(
            "team-a",
            Some("uid-of-the-transfer"),
            true,
            "other",
        )])
        .unwrap();
        assert_eq!(key_gone.held_digest, None);
        assert_eq!(key_gone.found_version.as_deref(), Some("42"));
        // A user's own, another transfer's, or one merely owned (not controlled): refused.
        for foreign in [
            config_map("team-a", None, false, "template.json"),
            config_map(
                "team-a",
                Some("uid-of-another-transfer"),
                true,
                "template.json",
            ),
            config_map(
                "team-a",
                Some("uid-of-the-transfer"),
                false,
                "template.json",
            ),
        ] {
            let e = side(&[foreign]).unwrap_err();
            assert_eq!(e.reason, Reason::ConfigMapConflict, "{e}");
            assert!(e.message.contains("team-a/nf-template"), "{e}");
        }
    }

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> =
            [("aosm-publish".to_string(), "true".to_string())].into();
        let sel = |yaml: &str| -> LabelSelector { serde_yaml::from_str(yaml).unwrap() };
        assert!(selector_matches(
            &sel("matchLabels: {aosm-publish: 'true'}"),
            &labels
        ));
        assert!(!selector_matches(
            &sel("matchLabels: {aosm-publish: 'false'}"),
            &labels
        ));
        assert!(selector_matches(
            &sel("matchExpressions: [{key: aosm-publish, operator: Exists}]"),
            &labels
        ));
        assert!(!selector_matches(
            &sel("matchExpressions: [{key: x, operator: In, values: [a]}]"),
            &labels
        ));
        assert!(selector_matches(&sel("{}"), &labels));
    }
}
