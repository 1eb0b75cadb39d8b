//! `ArtifactStore` (namespaced) and `ClusterArtifactStore` (cluster-scoped): where an AOSM
//! artifact store is and how the controller authenticates to Azure Resource Manager for it.
//!
//! Both kinds share [`ArtifactStoreSpec`]; a `ClusterArtifactStore`'s spec flattens it and
//! adds `allowedNamespaces` ([`ClusterArtifactStoreSpec`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretRef;

/// Which Azure cloud the store lives in; selects the default ARM endpoint and Entra
/// authority host.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AzureCloud {
    /// Azure public cloud: ARM `https://management.azure.com`, authority
    /// `https://login.microsoftonline.com`.
    #[default]
    AzurePublic,
    /// Azure US Government: ARM `https://management.usgovcloudapi.net`, authority
    /// `https://login.microsoftonline.us`.
    #[serde(rename = "AzureUSGovernment")]
    AzureUsGovernment,
    /// Azure operated by 21Vianet (China): ARM `https://management.chinacloudapi.cn`,
    /// authority `https://login.chinacloudapi.cn`.
    AzureChina,
    /// Any other endpoint (Azure Stack, sovereign clouds, a local emulator): `armEndpoint`
    /// is required and `authorityHost` should be set.
    Custom,
}

impl AzureCloud {
    /// The name as written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            AzureCloud::AzurePublic => "AzurePublic",
            AzureCloud::AzureUsGovernment => "AzureUSGovernment",
            AzureCloud::AzureChina => "AzureChina",
            AzureCloud::Custom => "Custom",
        }
    }
}

/// The ARM `api-version` used for `Microsoft.HybridNetwork` calls.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AosmApiVersion {
    /// 2023-09-01 (the default).
    #[default]
    #[serde(rename = "2023-09-01")]
    V2023_09_01,
    /// 2024-04-15.
    #[serde(rename = "2024-04-15")]
    V2024_04_15,
    /// 2025-03-30. (The `<manifestName>/<artifactName>` repositories belong to manifests
    /// *created* with this api-version, whichever api-version later requests use.)
    #[serde(rename = "2025-03-30")]
    V2025_03_30,
}

impl AosmApiVersion {
    /// The `api-version` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            AosmApiVersion::V2023_09_01 => "2023-09-01",
            AosmApiVersion::V2024_04_15 => "2024-04-15",
            AosmApiVersion::V2025_03_30 => "2025-03-30",
        }
    }
}

/// How the controller obtains an Entra ID token for ARM.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IdentityType {
    /// Azure workload identity (the default). With `serviceAccountName`: a token of that
    /// ServiceAccount (audience `api://AzureADTokenExchange`, asked from the API server),
    /// exchanged for an Entra token of the identity its `azure.workload.identity/client-id`
    /// annotation names. Without it: the controller's own federated token
    /// (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`), which serves
    /// ClusterArtifactStores only unless the cluster admin opts in.
    #[default]
    WorkloadIdentity,
    /// A managed identity of the node or pod (IMDS or App Service style endpoint);
    /// `clientId` selects a user-assigned identity. This is the controller's own identity:
    /// it serves ClusterArtifactStores only unless the cluster admin opts in.
    ManagedIdentity,
    /// A service principal with a client secret, read from the Secret named by `secretRef`
    /// (keys `tenantId`, `clientId`, `clientSecret`).
    ClientSecret,
}

/// How the controller authenticates to Azure Resource Manager for this store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'ClientSecret' || has(self.secretRef)")
        .message("identity.secretRef is required when identity.type is ClientSecret (a Secret with keys tenantId, clientId, clientSecret)")
        .field_path(".secretRef")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type == 'ClientSecret' || !has(self.secretRef)")
        .message("identity.secretRef is only used with identity.type ClientSecret")
        .field_path(".secretRef")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.type == 'WorkloadIdentity' || !has(self.serviceAccountName)")
        .message("identity.serviceAccountName is only used with identity.type WorkloadIdentity")
        .field_path(".serviceAccountName")
        .reason(Reason::FieldValueForbidden),
)]
pub struct StoreIdentity {
    /// Kind of credential: `WorkloadIdentity` (default), `ManagedIdentity` or
    /// `ClientSecret`.
    #[serde(rename = "type", default)]
    pub type_: IdentityType,

    /// Client (application) ID of the identity, a GUID. WorkloadIdentity: overrides
    /// `AZURE_CLIENT_ID`; ManagedIdentity: selects a user-assigned identity (absent = the
    /// system-assigned one); ClientSecret: overrides the Secret's `clientId` key.
    /// Example: `11111111-2222-3333-4444-555555555555`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::patterns::GUID))]
    pub client_id: Option<String>,

    /// Entra ID tenant, a GUID or a domain such as `contoso.onmicrosoft.com`.
    /// WorkloadIdentity: overrides `AZURE_TENANT_ID`; ClientSecret: overrides the Secret's
    /// `tenantId` key; not used by ManagedIdentity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::patterns::TENANT), length(max = 253))]
    pub tenant_id: Option<String>,

    /// ClientSecret only (and then required): the Secret holding the service principal,
    /// with keys `tenantId`, `clientId` and `clientSecret`. An ArtifactStore reads it from
    /// its own namespace, a ClusterArtifactStore from the controller's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,

    /// WorkloadIdentity only: a ServiceAccount whose tokens stand for this store's Azure
    /// identity, in the ArtifactStore's own namespace (a ClusterArtifactStore: in the
    /// controller's namespace). The controller asks the API server for a short-lived token
    /// of it (TokenRequest, audience `api://AzureADTokenExchange`) and exchanges it at
    /// Entra ID for the identity named by the ServiceAccount's annotation
    /// `azure.workload.identity/client-id` (and `azure.workload.identity/tenant-id`),
    /// unless `clientId` / `tenantId` are set here. That identity needs a federated
    /// credential for subject `system:serviceaccount:<namespace>:<name>`.
    /// Example: `aosm-publisher`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::patterns::K8S_NAME), length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
}

impl StoreIdentity {
    /// Whether this identity is the controller's own (ambient) one: workload identity
    /// without a ServiceAccount of the store's, or a managed identity.
    pub fn is_ambient(&self) -> bool {
        match self.type_ {
            IdentityType::WorkloadIdentity => self.service_account_name.is_none(),
            IdentityType::ManagedIdentity => true,
            IdentityType::ClientSecret => false,
        }
    }
}

/// Where an Azure Operator Service Manager (AOSM) artifact store is, and how to
/// authenticate to Azure Resource Manager for it.
// `printcolumn(type_ = "string")` repeats by design; clippy reads it as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "artifacts.aosm.dev",
    version = "v1alpha1",
    kind = "ArtifactStore",
    namespaced,
    status = "ArtifactStoreStatus",
    derive = "PartialEq",
    doc = "ArtifactStore is an Azure Operator Service Manager (AOSM) artifact store (Microsoft.HybridNetwork/publishers/artifactStores) and the way to authenticate to Azure Resource Manager for it. ArtifactTransfers in the same namespace name it in storeRef (kind ArtifactStore). Its identity Secret is read from its own namespace.",
    shortname = "as",
    category = "aosm",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether ARM answered and the store is ACR-backed"
    ),
    printcolumn(
        name = "Publisher",
        type_ = "string",
        json_path = ".spec.publisher",
        description = "AOSM publisher"
    ),
    printcolumn(
        name = "Store",
        type_ = "string",
        json_path = ".spec.artifactStore",
        description = "AOSM artifact store name"
    ),
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".status.storeType",
        description = "Store type reported by ARM"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#,
        priority = 1,
        description = "Message of the Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.cloud != 'Custom' || has(self.armEndpoint)")
        .message("armEndpoint is required when cloud is Custom")
        .field_path(".armEndpoint")
        .reason(Reason::FieldValueRequired)
)]
pub struct ArtifactStoreSpec {
    /// Azure subscription ID of the publisher's resource group, a GUID.
    /// Example: `00000000-0000-0000-0000-000000000000`.
    #[schemars(regex(pattern = super::patterns::GUID))]
    pub subscription_id: String,

    /// Resource group of the AOSM publisher. Example: `contoso-rg`.
    #[schemars(regex(pattern = super::patterns::RESOURCE_GROUP), length(min = 1, max = 90))]
    pub resource_group: String,

    /// Name of the AOSM publisher (`Microsoft.HybridNetwork/publishers`). Example:
    /// `contoso`.
    #[schemars(regex(pattern = super::patterns::ARM_NAME), length(min = 1, max = 64))]
    pub publisher: String,

    /// Name of the AOSM artifact store under the publisher
    /// (`Microsoft.HybridNetwork/publishers/artifactStores`). Example: `contoso-cnf-store`.
    #[schemars(regex(pattern = super::patterns::ARM_NAME), length(min = 1, max = 64))]
    pub artifact_store: String,

    /// Azure cloud: `AzurePublic` (default), `AzureUSGovernment`, `AzureChina` or `Custom`.
    /// Selects the default ARM endpoint and Entra authority host; `Custom` requires
    /// `armEndpoint`.
    #[serde(default)]
    pub cloud: AzureCloud,

    /// ARM endpoint override, an `https://` URL without query. Required when cloud is
    /// `Custom`. Example: `https://management.azure.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::patterns::HTTPS_URL), length(max = 2048))]
    pub arm_endpoint: Option<String>,

    /// Entra ID authority host override, an `https://` URL. Default: the cloud's (for
    /// `Custom`: `AZURE_AUTHORITY_HOST` of the controller, else the public cloud's).
    /// Example: `https://login.microsoftonline.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::patterns::HTTPS_URL), length(max = 2048))]
    pub authority_host: Option<String>,

    /// ARM `api-version` for `Microsoft.HybridNetwork` calls: `2023-09-01` (default),
    /// `2024-04-15` or `2025-03-30`. It does not choose the repository an artifact lives
    /// in: that follows the api-version its manifest was created with (`<artifact>`, or
    /// `<manifest>/<artifact>` for manifests created with 2025-03-30), and the controller
    /// takes it from the `listCredential` answer, falling back to `<artifact>`.
    #[serde(default)]
    pub api_version: AosmApiVersion,

    /// How the controller gets an ARM token for this store. Default: `{type:
    /// WorkloadIdentity}`.
    #[serde(default)]
    pub identity: StoreIdentity,
}

/// Observed state of an ArtifactStore or ClusterArtifactStore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStoreStatus {
    /// The metadata.generation the controller last acted on; 0 (a schema default) until
    /// it first acts on the object, so kstatus tools read a new object as in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions (kstatus): `Ready` (True when ARM answered and the store is ACR-backed),
    /// `Reconciling` while checking, `Stalled` with a reason (Forbidden,
    /// UnsupportedStoreType, SecretNotFound, InvalidSpec, ...) when a change is needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Store type reported by ARM: `AzureContainerRegistry` (supported) or
    /// `AzureStorageAccount` (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_type: Option<String>,
}

/// Where an Azure Operator Service Manager (AOSM) artifact store is, how to authenticate to
/// Azure Resource Manager for it, and which namespaces may use it.
// `printcolumn(type_ = "string")` repeats by design; clippy reads it as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "artifacts.aosm.dev",
    version = "v1alpha1",
    kind = "ClusterArtifactStore",
    status = "ArtifactStoreStatus",
    derive = "PartialEq",
    doc = "ClusterArtifactStore is an Azure Operator Service Manager (AOSM) artifact store (Microsoft.HybridNetwork/publishers/artifactStores) usable by ArtifactTransfers in the namespaces selected by spec.allowedNamespaces (all namespaces when absent). Its identity Secret is read from the controller's namespace.",
    shortname = "cas",
    category = "aosm",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether ARM answered and the store is ACR-backed"
    ),
    printcolumn(
        name = "Publisher",
        type_ = "string",
        json_path = ".spec.publisher",
        description = "AOSM publisher"
    ),
    printcolumn(
        name = "Store",
        type_ = "string",
        json_path = ".spec.artifactStore",
        description = "AOSM artifact store name"
    ),
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".status.storeType",
        description = "Store type reported by ARM"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#,
        priority = 1,
        description = "Message of the Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterArtifactStoreSpec {
    /// The store's location and identity (same fields as an ArtifactStore's spec).
    #[serde(flatten)]
    pub store: ArtifactStoreSpec,

    /// Namespaces whose ArtifactTransfers may use this store, selected by their labels.
    /// Absent: all namespaces. An empty selector (`{}`) also selects all namespaces.
    /// Example: `{matchLabels: {aosm-publish: "true"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<LabelSelector>,
}

impl ArtifactStore {
    /// The store spec shared with [`ClusterArtifactStore`].
    pub fn store_spec(&self) -> &ArtifactStoreSpec {
        &self.spec
    }
}

impl ClusterArtifactStore {
    /// The store spec shared with [`ArtifactStore`].
    pub fn store_spec(&self) -> &ArtifactStoreSpec {
        &self.spec.store
    }
}

impl ArtifactStoreSpec {
    /// The ARM resource ID of the artifact store:
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.HybridNetwork/publishers/{p}/artifactStores/{s}`.
    pub fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.HybridNetwork/publishers/{}/artifactStores/{}",
            self.subscription_id, self.resource_group, self.publisher, self.artifact_store
        )
    }
}

impl ArtifactStoreSpec {
    /// Checks the spec against the `ArtifactStore` CRD's schema and CEL rules (see
    /// [`super::validation`]), for specs that did not come through an API server (e.g. the
    /// CLI's `transfer -f`); a `ClusterArtifactStore` shares them. Returns every broken
    /// rule, each naming its field (`spec.…`).
    pub fn validate(&self) -> Result<(), Vec<super::ValidationError>> {
        super::validation::validate_spec("ArtifactStore", self)
    }
}
