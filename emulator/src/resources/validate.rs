//! Property rules per resource kind (what AOSM refuses with 400 on PUT) and the read-only
//! properties it fills in.

use super::{Artifact, Kind, Resource};
use crate::arm::error::ArmError;
use serde_json::{Map, Value};

/// All values of `artifactManifestState`.
pub const MANIFEST_STATES: &[&str] = &[
    "Unknown",
    "Uploading",
    "Uploaded",
    "Validating",
    "ValidationFailed",
    "Succeeded",
];

/// States in which a manifest's credential may push (after `Uploaded` it is pull-only).
pub const PUSHABLE_STATES: &[&str] = &["Unknown", "Uploading"];

const ARTIFACT_TYPES: &[&str] = &[
    "OCIArtifact",
    "ArmTemplate",
    "ImageFile",
    "VhdImageFile",
    "Unknown",
];

/// Backing storage of an artifact store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    /// Azure Container Registry.
    AzureContainerRegistry,
    /// Azure Storage Account.
    AzureStorageAccount,
}

impl StoreType {
    /// Parses the ARM value (case-insensitive).
    pub fn parse(s: &str) -> Option<StoreType> {
        if s.eq_ignore_ascii_case("AzureContainerRegistry") {
            Some(StoreType::AzureContainerRegistry)
        } else if s.eq_ignore_ascii_case("AzureStorageAccount") {
            Some(StoreType::AzureStorageAccount)
        } else {
            None
        }
    }

    /// The ARM value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreType::AzureContainerRegistry => "AzureContainerRegistry",
            StoreType::AzureStorageAccount => "AzureStorageAccount",
        }
    }
}

fn canonical<'a>(value: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .copied()
        .find(|a| a.eq_ignore_ascii_case(value))
}

/// Refuses a PUT whose name breaks the specification's pattern for its kind:
/// `publisherName` and `artifactStoreName` `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`,
/// `artifactManifestName` `^[^\s]*[^\s]+[^\s]*$`, each at most 64 characters.
pub fn name(id: &super::ResourceId) -> Result<(), ArmError> {
    let arm_name = |n: &str| {
        n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let (what, name, ok, rule) = match id.kind() {
        Kind::Publisher => (
            "publisher",
            id.publisher.as_str(),
            arm_name(&id.publisher),
            "^[a-zA-Z0-9][a-zA-Z0-9_-]*$",
        ),
        Kind::ArtifactStore => {
            let n = id.store.as_deref().unwrap_or_default();
            (
                "artifact store",
                n,
                arm_name(n),
                "^[a-zA-Z0-9][a-zA-Z0-9_-]*$",
            )
        }
        Kind::ArtifactManifest => {
            let n = id.manifest.as_deref().unwrap_or_default();
            (
                "artifact manifest",
                n,
                !n.is_empty() && !n.chars().any(char::is_whitespace),
                "^[^\\s]*[^\\s]+[^\\s]*$",
            )
        }
    };
    if !ok || name.chars().count() > 64 {
        return Err(ArmError::bad_request(
            "InvalidResourceName",
            format!(
                "The {what} name '{name}' is invalid: it must match {rule} and be at most 64 characters."
            ),
        ));
    }
    Ok(())
}

/// Validates and normalizes the properties of a PUT of resource `id`.
pub fn properties(
    id: &super::ResourceId,
    location: &str,
    mut props: Map<String, Value>,
    existing: Option<&Resource>,
    parent: Option<&Resource>,
    seeded: bool,
) -> Result<Map<String, Value>, ArmError> {
    match id.kind() {
        Kind::Publisher => {
            let scope = props
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("Private");
            // `PublisherScope` of the specification: Unknown | Private.
            let Some(scope) = canonical(scope, &["Private", "Unknown"]) else {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!("properties.scope '{scope}' is not supported: use Private."),
                ));
            };
            props.insert("scope".into(), scope.into());
        }
        Kind::ArtifactStore => {
            let given = props.get("storeType").and_then(Value::as_str);
            let store_type = match (given, existing.and_then(Resource::store_type)) {
                (None, Some(t)) => t,
                (None, None) => {
                    return Err(ArmError::bad_request(
                        "InvalidParameter",
                        "properties.storeType is required: AzureContainerRegistry or AzureStorageAccount.",
                    ));
                }
                (Some(g), old) => {
                    let Some(t) = StoreType::parse(g) else {
                        return Err(ArmError::bad_request(
                            "InvalidParameter",
                            format!(
                                "properties.storeType '{g}' is not supported: use AzureContainerRegistry or AzureStorageAccount."
                            ),
                        ));
                    };
                    if old.is_some_and(|o| o != t) {
                        return Err(ArmError::bad_request(
                            "PropertyChangeNotAllowed",
                            "properties.storeType of an existing artifact store cannot be changed.",
                        ));
                    }
                    t
                }
            };
            props.insert("storeType".into(), store_type.as_str().into());
            props
                .entry("replicationStrategy")
                .or_insert_with(|| "SingleReplication".into());
            // The managed resource group AOSM creates for the backing registry or
            // storage account: the one given, else one named after the store.
            let store = id.store.as_deref().unwrap_or_default();
            let mrg = existing
                .and_then(|e| {
                    e.properties
                        .get("managedResourceGroupConfiguration")
                        .cloned()
                })
                .or_else(|| props.get("managedResourceGroupConfiguration").cloned())
                .unwrap_or_else(|| {
                    serde_json::json!({
                        "name": format!("{}-{store}-mrg", id.publisher),
                        "location": location,
                    })
                });
            let mrg_name = mrg
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("mrg")
                .to_string();
            props.insert("managedResourceGroupConfiguration".into(), mrg);
            // Read-only: the backing resource.
            let backing = backing_name(&id.publisher, store);
            let storage_id = match store_type {
                StoreType::AzureContainerRegistry => format!(
                    "/subscriptions/{}/resourceGroups/{mrg_name}/providers/Microsoft.ContainerRegistry/registries/{backing}",
                    id.subscription
                ),
                StoreType::AzureStorageAccount => format!(
                    "/subscriptions/{}/resourceGroups/{mrg_name}/providers/Microsoft.Storage/storageAccounts/{backing}",
                    id.subscription
                ),
            };
            props.insert("storageResourceId".into(), storage_id.into());
        }
        Kind::ArtifactManifest => {
            let store_type = parent
                .and_then(Resource::store_type)
                .unwrap_or(StoreType::AzureContainerRegistry);
            let artifacts = artifacts(props.get("artifacts"), store_type, seeded)?;
            props.insert(
                "artifacts".into(),
                serde_json::to_value(artifacts).unwrap_or_default(),
            );
            let state = if seeded {
                match props.get("artifactManifestState").and_then(Value::as_str) {
                    None => "Uploading",
                    Some(s) => canonical(s, MANIFEST_STATES).ok_or_else(|| {
                        ArmError::bad_request(
                            "InvalidParameter",
                            format!("artifactManifestState '{s}' is not a known state."),
                        )
                    })?,
                }
            } else {
                existing.map_or("Uploading", Resource::manifest_state)
            };
            let state = state.to_string();
            props.insert("artifactManifestState".into(), state.into());
        }
    }
    props.insert("provisioningState".into(), "Succeeded".into());
    Ok(props)
}

/// The name of a store's backing registry or storage account: letters and digits of the
/// publisher and store, lower case, at most 24 (what both resource types allow).
pub fn backing_name(publisher: &str, store: &str) -> String {
    let mut name: String = format!("{publisher}{store}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    name.truncate(22);
    format!("{name}cr")
}

/// The artifacts of a manifest PUT. A seeded manifest may list any non-empty version
/// (a store filled by other means, as the official example lists `v1`).
fn artifacts(
    value: Option<&Value>,
    store_type: StoreType,
    seeded: bool,
) -> Result<Vec<Artifact>, ArmError> {
    let Some(list) = value.and_then(Value::as_array).filter(|l| !l.is_empty()) else {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            "properties.artifacts must list at least one artifact.",
        ));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let mut a: Artifact = serde_json::from_value(item.clone()).map_err(|e| {
            ArmError::bad_request(
                "InvalidParameter",
                format!("properties.artifacts[{i}] needs artifactName, artifactType and artifactVersion: {e}"),
            )
        })?;
        let Some(t) = canonical(&a.artifact_type, ARTIFACT_TYPES) else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!(
                    "properties.artifacts[{i}].artifactType '{}' must be one of {}.",
                    a.artifact_type,
                    ARTIFACT_TYPES.join(", ")
                ),
            ));
        };
        a.artifact_type = t.to_string();
        if !valid_name(&a.artifact_name) {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!(
                    "properties.artifacts[{i}].artifactName '{}' is not a valid repository name (lowercase letters, digits and . _ - / separators).",
                    a.artifact_name
                ),
            ));
        }
        let (ok, format) = match store_type {
            StoreType::AzureContainerRegistry => {
                (version_ok(&a.artifact_version, '.'), "A.B.C, e.g. 1.0.0")
            }
            StoreType::AzureStorageAccount => {
                (version_ok(&a.artifact_version, '-'), "A-B-C, e.g. 1-0-0")
            }
        };
        let ok = ok || (seeded && !a.artifact_version.trim().is_empty());
        if !ok {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!(
                    "properties.artifacts[{i}].artifactVersion '{}' must be in the format {format} for a {} artifact store.",
                    a.artifact_version,
                    store_type.as_str()
                ),
            ));
        }
        out.push(a);
    }
    Ok(out)
}

/// A registry repository path: components of `[a-z0-9]+([._-][a-z0-9]+)*` joined by `/`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.split('/').all(|comp| {
            !comp.is_empty()
                && comp.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
                && comp.starts_with(|c: char| c.is_ascii_alphanumeric())
                && comp.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

fn version_ok(v: &str, sep: char) -> bool {
    let parts: Vec<&str> = v.split(sep).collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_names() {
        assert!(version_ok("1.0.0", '.'));
        assert!(version_ok("10.20.30", '.'));
        assert!(!version_ok("1.0", '.'));
        assert!(!version_ok("1.0.0-rc1", '.'));
        assert!(!version_ok("v1.0.0", '.'));
        assert!(version_ok("1-0-0", '-'));
        assert!(valid_name("contoso-cnf-container"));
        assert!(valid_name("nginx/web"));
        assert!(!valid_name("Upper"));
        assert!(!valid_name("-lead"));
        assert!(!valid_name(""));
    }
}
