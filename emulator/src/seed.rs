//! `--seed FILE`: resources to create at start, as ARM-shaped JSON — a list of
//! `{id, properties, location?, tags?}` (or an object holding that list under `resources`
//! or `value`). Parents are created before children whatever the order in the file; a
//! manifest may set its own `artifactManifestState`.

use crate::resources::{PutBody, ResourceId, Resources};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;

/// Errors of loading a seed file.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The JSON is not a list of resources.
    #[error("seed file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The api-version a seeded resource counts as created with, unless it says.
const DEFAULT_SEED_API_VERSION: &str = "2023-09-01";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    id: String,
    /// The api-version it counts as created with (decides a manifest's repositories).
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    properties: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    List(Vec<Item>),
    Resources { resources: Vec<Item> },
    Value { value: Vec<Item> },
}

/// Reads `path` and creates its resources; returns how many.
pub fn apply(path: &Path, resources: &mut Resources) -> Result<usize, SeedError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
        path: shown.clone(),
        source,
    })?;
    apply_str(&text, resources).map_err(|message| SeedError::Invalid {
        path: shown,
        message,
    })
}

/// Creates the resources of a seed document.
pub fn apply_str(text: &str, resources: &mut Resources) -> Result<usize, String> {
    let file: File = serde_json::from_str(text)
        .map_err(|e| format!("expected a list of {{id, properties}} objects: {e}"))?;
    let items = match file {
        File::List(v) | File::Resources { resources: v } | File::Value { value: v } => v,
    };
    let mut parsed = Vec::with_capacity(items.len());
    for item in items {
        let id = ResourceId::parse(&item.id)
            .ok_or_else(|| format!("'{}' is not a Microsoft.HybridNetwork publisher, artifact store or artifact manifest id", item.id))?;
        parsed.push((id, item));
    }
    parsed.sort_by_key(|(id, _)| id.kind());
    let n = parsed.len();
    for (id, item) in parsed {
        let body = PutBody {
            location: item.location,
            tags: item.tags,
            properties: item.properties,
        };
        let writer = crate::resources::Writer {
            api_version: item
                .api_version
                .as_deref()
                .unwrap_or(DEFAULT_SEED_API_VERSION),
            principal: "seed",
            seeded: true,
        };
        resources
            .put(&id, body, writer)
            .map_err(|e| format!("{}: {} {}", id, e.code, e.message))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_parents_first_and_keeps_seeded_state() {
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p";
        let doc = serde_json::json!({"resources": [
            {"id": format!("{p}/artifactStores/st/artifactManifests/m"), "properties": {
                "artifacts": [{"artifactName": "a", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}],
                "artifactManifestState": "Uploaded"}},
            {"id": format!("{p}/artifactStores/st"), "properties": {"storeType": "AzureContainerRegistry"}},
            {"id": p, "location": "westus"},
        ]});
        let mut r = Resources::default();
        assert_eq!(apply_str(&doc.to_string(), &mut r).unwrap(), 3);
        let m = ResourceId::parse(&format!("{p}/artifactStores/st/artifactManifests/m")).unwrap();
        assert_eq!(r.get(&m).unwrap().manifest_state(), "Uploaded");
        assert_eq!(r.get(&m).unwrap().location, "westus");
        assert!(apply_str(r#"[{"id": "/nope"}]"#, &mut r).is_err());
        assert!(apply_str(r#"{"x": 1}"#, &mut r).is_err());
    }
}
