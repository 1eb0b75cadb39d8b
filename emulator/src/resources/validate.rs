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

/// Validates and normalizes the properties of a PUT.
pub fn properties(
    kind: Kind,
    mut props: Map<String, Value>,
    existing: Option<&Resource>,
    parent: Option<&Resource>,
    seeded: bool,
) -> Result<Map<String, Value>, ArmError> {
    match kind {
        Kind::Publisher => {
            let scope = props
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or("Private");
            let Some(scope) = canonical(scope, &["Private", "Public"]) else {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "properties.scope must be Private or Public.",
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
        }
        Kind::ArtifactManifest => {
            let store_type = parent
                .and_then(Resource::store_type)
                .unwrap_or(StoreType::AzureContainerRegistry);
            let artifacts = artifacts(props.get("artifacts"), store_type)?;
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

fn artifacts(value: Option<&Value>, store_type: StoreType) -> Result<Vec<Artifact>, ArmError> {
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
