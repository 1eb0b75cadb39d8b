//! Kubernetes API types (group `artifacts.aosm.dev`, version `v1alpha1`):
//! [`ArtifactTransfer`], [`ArtifactStore`] and [`ClusterArtifactStore`], their condition
//! helpers ([`conditions`]) and the generated CustomResourceDefinitions ([`crds`],
//! [`crds_yaml`]).
//!
//! Every validation the CRD schema can carry (patterns, enums, lengths, CEL
//! `x-kubernetes-validations` for one-of and cross-field rules) is in the schema, so the API
//! server refuses bad objects at `kubectl apply` time. [`validation`] applies the same
//! schema and CEL rules to objects that never pass an API server (the CLI's
//! `transfer -f`): the rules are written once, on the Rust types.

pub mod artifact_store;
pub mod artifact_transfer;
pub mod conditions;
pub mod duration;
pub mod reason;
pub mod validation;

use std::sync::LazyLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use artifact_store::{
    AosmApiVersion, ArtifactStore, ArtifactStoreSpec, ArtifactStoreStatus, AzureCloud,
    ClusterArtifactStore, ClusterArtifactStoreSpec, IdentityType, StoreIdentity,
};
pub use artifact_transfer::{
    ArtifactTransfer, ArtifactTransferSpec, ArtifactTransferStatus, ConfigMapSource,
    ConfigMapTarget, Direction, HelmRepositorySource, RegistryImage, StoreArtifact, StoreKind,
    StoreRef, TransferDestination, TransferProgress, TransferSource,
};
pub use duration::{DurationError, parse_duration};
pub use reason::{Nature, Reason};
pub use validation::ValidationError;

/// API group of all kinds.
pub const GROUP: &str = "artifacts.aosm.dev";
/// API version of all kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` value of all kinds.
pub const API_VERSION: &str = "artifacts.aosm.dev/v1alpha1";
/// Annotation that re-runs a transfer when its value changes (any new value, e.g. a
/// timestamp); the handled value is echoed in `status.lastHandledReconcileAt`.
pub const REQUESTED_AT_ANNOTATION: &str = "artifacts.aosm.dev/requested-at";
/// On a ConfigMap written from `destination.configMap`: the digest of the artifact it was
/// written from. The controller writes the ConfigMap again only when the store's digest
/// differs from it.
pub const CONFIG_MAP_DIGEST_ANNOTATION: &str = "artifacts.aosm.dev/digest";

/// A reference to a Secret in the namespace of the object that holds the reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret (a DNS subdomain name). Example: `regcred`.
    #[schemars(regex(pattern = patterns::K8S_NAME), length(min = 1, max = 253))]
    pub name: String,
}

impl SecretRef {
    /// A reference to the Secret `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// Regular expressions used in the schema (RE2 syntax, which the API server uses; also
/// valid ECMA-262 and Rust `regex`).
pub mod patterns {
    /// A GUID, e.g. a subscription or client ID.
    pub const GUID: &str =
        r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
    /// An Entra tenant: a GUID or a domain name.
    pub const TENANT: &str = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$";
    /// An Azure resource group name: letters, digits, `-`, `_`, `.`, `(`, `)`; not ending
    /// with `.`.
    pub const RESOURCE_GROUP: &str = r"^[-\w.()]*[-\w()]$";
    /// A publisher or artifact store name, as the `Microsoft.HybridNetwork` specification
    /// defines `publisherName` and `artifactStoreName` (at most 64 characters).
    pub const ARM_NAME: &str = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$";
    /// An artifact manifest name, as the specification defines `artifactManifestName`: no
    /// whitespace (at most 64 characters; sent percent-encoded).
    pub const MANIFEST_NAME: &str = r"^[^\s]+$";
    /// An `https://` URL without query or fragment.
    pub const HTTPS_URL: &str = r"^https://[^\s/?#@]+(/[^\s?#]*)?$";
    /// An `http://` or `https://` URL without query or fragment.
    pub const HTTP_URL: &str = r"^https?://[^\s/?#]+(/[^\s?#]*)?$";
    /// A Kubernetes object name (DNS-1123 subdomain).
    pub const K8S_NAME: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    /// A ConfigMap key.
    pub const CONFIG_MAP_KEY: &str = r"^[-._a-zA-Z0-9]+$";
    /// A media type `type/subtype` (RFC 6838 characters, no parameters).
    pub const MEDIA_TYPE: &str =
        r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$";
    /// An image reference with an explicit registry host:
    /// `host[:port]/repo/path[:tag][@sha256:<64 hex>]`. The host must contain a dot, a
    /// port, be `localhost` or an IPv6 literal in brackets, so `org/repo` is refused
    /// (no implicit Docker Hub).
    pub const IMAGE: &str = concat!(
        r"^(localhost(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?",
        r"|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+(:[0-9]{1,5})?",
        r"|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?:[0-9]{1,5})",
        r"/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*",
        r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
    );
    /// An image reference that ends with a tag or a digest (used in a CEL rule).
    pub const IMAGE_TAG_OR_DIGEST: &str = r"(:[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[a-f0-9]{64})$";
    /// An OCI repository path as AOSM artifact names use it (lowercase).
    pub const ARTIFACT_NAME: &str =
        r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$";
    /// An AOSM/ACR artifact version to push: `MAJOR.MINOR.PATCH` digits only, e.g. `1.0.0`.
    pub const VERSION: &str = r"^[0-9]+\.[0-9]+\.[0-9]+$";
    /// An artifact version as a manifest may list it (an OCI tag, e.g. `v1`): what a pull
    /// accepts.
    pub const ARTIFACT_VERSION: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$";
    /// A Helm chart name.
    pub const CHART_NAME: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$";
    /// A Helm chart version (SemVer 2, optional leading `v`).
    pub const CHART_VERSION: &str =
        r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$";
    /// A platform `os/arch[/variant]`, e.g. `linux/amd64`, `linux/arm64/v8`.
    pub const PLATFORM: &str = r"^[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_.]+)?$";
    /// A duration (Go syntax subset): see [`super::duration::DURATION_PATTERN`].
    pub const DURATION: &str = super::duration::DURATION_PATTERN;
}

/// Deserializes `value` into `T` and refuses fields `T` does not know, as `kubectl apply`
/// (strict field validation) does: the error names them (`unknown field "spec.sources"`).
/// For objects read from files (the CLI); objects from the API server are already pruned,
/// and the types stay lenient there so a newer CRD does not break an older controller.
pub fn from_value_strict<T>(value: serde_json::Value) -> Result<T, String>
where
    T: serde::de::DeserializeOwned + Serialize,
{
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let unknown = unknown_fields(&value, &back);
    if unknown.is_empty() {
        Ok(typed)
    } else {
        Err(unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect::<Vec<_>>()
            .join(", "))
    }
}

/// Paths of the keys of `input` (JSON) that are missing from `known` (the same value
/// after a round trip through a Rust type): fields the type does not know. `null` values
/// are ignored.
pub fn unknown_fields(input: &serde_json::Value, known: &serde_json::Value) -> Vec<String> {
    fn walk(
        input: &serde_json::Value,
        known: &serde_json::Value,
        path: &str,
        out: &mut Vec<String>,
    ) {
        match (input, known) {
            (serde_json::Value::Object(i), serde_json::Value::Object(k)) => {
                for (key, value) in i {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match k.get(key) {
                        Some(kv) => walk(value, kv, &child, out),
                        None if value.is_null() => {}
                        None => out.push(child),
                    }
                }
            }
            (serde_json::Value::Array(i), serde_json::Value::Array(k)) => {
                for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                    walk(iv, kv, &format!("{path}[{n}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(input, known, "", &mut out);
    out
}

/// The three CustomResourceDefinitions, in a stable order: ArtifactStore,
/// ArtifactTransfer, ClusterArtifactStore (the order of their file names in `crds/`).
///
/// Use this rather than `X::crd()`: it also removes the `nullable: true` that kube adds
/// for every `Option` field, so an explicit `null` in a user's YAML is pruned by the API
/// server (as for built-in types) instead of being kept and counted as "set" by
/// `has()` in the CEL rules. The types never serialize `null` themselves.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        ArtifactStore::crd(),
        ArtifactTransfer::crd(),
        ClusterArtifactStore::crd(),
    ]
    .into_iter()
    .map(finish_crd)
    .collect()
}

/// The file name of a CRD under `crds/`: `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One CRD as YAML (the content of its file under `crds/`).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    let yaml = serde_yaml::to_string(crd).expect("a CustomResourceDefinition serializes to YAML");
    quote_dates(&yaml)
}

/// Quotes plain scalars that look like dates (the `2023-09-01` api-versions): YAML 1.2
/// (serde_yaml) reads them as strings, but YAML 1.1 parsers (PyYAML, some tooling) would
/// read dates.
fn quote_dates(yaml: &str) -> String {
    static DATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?m)^(\s*(?:- |[A-Za-z0-9_-]+: ))([0-9]{4}-[0-9]{2}-[0-9]{2})$")
            .expect("valid regex")
    });
    DATE.replace_all(yaml, "$1'$2'").into_owned()
}

/// All CRDs as one multi-document YAML stream (`---` before each), in the order of
/// [`crds`]. This is what `aosm-artifact-operator crds` prints.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| format!("---\n{}", crd_yaml(crd)))
        .collect()
}

fn finish_crd(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(&crd).expect("CRD serializes");
    tidy_schema(&mut value);
    default_status_unobserved(&mut value);
    serde_json::from_value(value).expect("CRD deserializes")
}

/// The status every object has before the controller writes one: generation 0 observed.
///
/// The API server applies a schema `default` whenever it reads an object without
/// `status`, so from the moment a create is accepted every reader (the create response,
/// GET, LIST, WATCH) sees `status.observedGeneration: 0` behind `metadata.generation: 1`.
/// kstatus (Flux's `wait`/`healthChecks`, `kubectl wait --for=jsonpath`, cli-utils) reads
/// that as InProgress; without it an object with no status reads as Current, and a GitOps
/// tool would call a just-applied transfer healthy before the controller saw it. The
/// default is not stored: the controller's first status write replaces it.
pub const UNOBSERVED_STATUS: &str = r#"{"observedGeneration":0}"#;

fn default_status_unobserved(crd: &mut serde_json::Value) {
    let default: serde_json::Value =
        serde_json::from_str(UNOBSERVED_STATUS).expect("UNOBSERVED_STATUS is JSON");
    if let Some(versions) = crd["spec"]["versions"].as_array_mut() {
        for version in versions {
            let status = &mut version["schema"]["openAPIV3Schema"]["properties"]["status"];
            if let Some(status) = status.as_object_mut() {
                status.insert("default".into(), default.clone());
            }
        }
    }
}

/// Removes `nullable: true` and joins the lines of each paragraph of a `description`
/// (doc comments wrap at 90 columns; `kubectl explain` wraps by itself).
fn tidy_schema(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("nullable") == Some(&serde_json::Value::Bool(true)) {
                map.remove("nullable");
            }
            if let Some(serde_json::Value::String(d)) = map.get_mut("description") {
                *d = join_paragraph_lines(d);
            }
            map.values_mut().for_each(tidy_schema);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(tidy_schema),
        _ => {}
    }
}

fn join_paragraph_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|para| {
            para.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_are_in_stable_order_with_names() {
        let names: Vec<String> = crds().iter().map(crd_file_name).collect();
        assert_eq!(
            names,
            [
                "artifacts.aosm.dev_artifactstores.yaml",
                "artifacts.aosm.dev_artifacttransfers.yaml",
                "artifacts.aosm.dev_clusterartifactstores.yaml",
            ]
        );
        let yaml = crds_yaml();
        assert_eq!(yaml.matches("\n---\n").count() + 1, 3);
        assert!(yaml.starts_with("---\n"));
        assert!(!yaml.contains("nullable"));
        assert!(yaml.contains("default: '2023-09-01'"));
        assert!(yaml.contains("- '2025-03-30'"));
        // The YAML reads back to exactly the CRDs.
        for (doc, crd) in yaml.split("---\n").skip(1).zip(crds()) {
            let back: CustomResourceDefinition = serde_yaml::from_str(doc).unwrap();
            assert_eq!(back, crd);
        }
    }

    #[test]
    fn every_status_defaults_to_generation_zero_observed() {
        for crd in crds() {
            for version in &crd.spec.versions {
                let schema = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref());
                let status = schema
                    .and_then(|s| s.properties.as_ref())
                    .and_then(|p| p.get("status"))
                    .unwrap_or_else(|| panic!("{}: a status schema", crd.spec.names.kind));
                let default = status.default.as_ref().map(|d| &d.0);
                assert_eq!(
                    default,
                    Some(&serde_json::json!({"observedGeneration": 0})),
                    "{}",
                    crd.spec.names.kind
                );
            }
        }
    }

    #[test]
    fn strict_deserialization_names_unknown_fields() {
        let good = serde_json::json!({"name": "x"});
        assert_eq!(from_value_strict::<SecretRef>(good).unwrap().name, "x");
        let bad = serde_json::json!({"name": "x", "nmae": "y", "other": null});
        assert_eq!(
            from_value_strict::<SecretRef>(bad).unwrap_err(),
            "unknown field \"nmae\""
        );
        let nested = serde_json::json!({"a": [{"b": 1, "c": 2}]});
        let known = serde_json::json!({"a": [{"b": 1}]});
        assert_eq!(unknown_fields(&nested, &known), ["a[0].c"]);
    }

    #[test]
    fn descriptions_are_single_lines_per_paragraph() {
        assert_eq!(
            join_paragraph_lines("a\nb\n\nc\n d"),
            "a b\n\nc d".to_string()
        );
    }

    #[test]
    fn scopes_short_names_and_categories() {
        let crds = crds();
        let scope: Vec<&str> = crds.iter().map(|c| c.spec.scope.as_str()).collect();
        assert_eq!(scope, ["Namespaced", "Namespaced", "Cluster"]);
        for crd in &crds {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.versions.len(), 1);
            assert_eq!(crd.spec.versions[0].name, VERSION);
            assert!(
                crd.spec.versions[0]
                    .subresources
                    .as_ref()
                    .unwrap()
                    .status
                    .is_some()
            );
            assert_eq!(
                crd.spec.names.categories.as_deref(),
                Some(&["aosm".to_string()][..])
            );
            assert_eq!(crd.spec.names.short_names.as_ref().map(Vec::len), Some(1));
        }
    }
}
