//! The emulated `Microsoft.HybridNetwork` resources: an in-memory map from id to resource,
//! with the rules ARM and AOSM apply on PUT and DELETE.

pub mod id;
mod validate;

pub use id::{Kind, ResourceId};
pub use validate::{PUSHABLE_STATES, StoreType};

use crate::arm::error::ArmError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Default location when a PUT gives none.
pub const DEFAULT_LOCATION: &str = "eastus";

/// One entry of an artifact manifest's `properties.artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Repository name (under `<manifest>/` from api-version 2025-03-30).
    pub artifact_name: String,
    /// OCIArtifact | ArmTemplate | ImageFile | VhdImageFile | Unknown.
    pub artifact_type: String,
    /// Tag (ACR: `1.0.0` format).
    pub artifact_version: String,
}

/// The body of a PUT.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PutBody {
    /// Azure region.
    pub location: Option<String>,
    /// Resource tags.
    pub tags: Option<Value>,
    /// Resource properties.
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// A stored resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Its id (casing as created).
    pub id: ResourceId,
    /// Azure region.
    pub location: String,
    /// Tags as given.
    pub tags: Option<Value>,
    /// Properties, normalized (read-only ones filled in).
    pub properties: Map<String, Value>,
}

impl Resource {
    /// The ARM representation.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id.to_string(),
            "name": self.id.name(),
            "type": self.id.kind().arm_type(),
            "location": self.location,
            "properties": self.properties,
        });
        if let (Some(tags), Some(obj)) = (&self.tags, v.as_object_mut()) {
            obj.insert("tags".into(), tags.clone());
        }
        v
    }

    /// A manifest's artifacts (empty for other kinds).
    pub fn artifacts(&self) -> Vec<Artifact> {
        self.properties
            .get("artifacts")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// A manifest's `artifactManifestState`.
    pub fn manifest_state(&self) -> &str {
        self.properties
            .get("artifactManifestState")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
    }

    /// A store's `storeType`.
    pub fn store_type(&self) -> Option<StoreType> {
        self.properties
            .get("storeType")
            .and_then(Value::as_str)
            .and_then(StoreType::parse)
    }
}

/// Whether a PUT created or replaced the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// 201
    Created,
    /// 200
    Updated,
}

/// All resources, keyed by lowercased id.
#[derive(Debug, Default)]
pub struct Resources {
    map: BTreeMap<String, Resource>,
}

impl Resources {
    /// The resource with this id.
    pub fn get(&self, id: &ResourceId) -> Option<&Resource> {
        self.map.get(&id.key())
    }

    /// Creates or replaces a resource. The parent must exist. With `seeded`, a manifest may
    /// carry its own `artifactManifestState` (otherwise it is read-only: new manifests start
    /// `Uploading`, updates keep the state).
    pub fn put(
        &mut self,
        id: &ResourceId,
        body: PutBody,
        seeded: bool,
    ) -> Result<(PutOutcome, Resource), ArmError> {
        let parent_store = match id.parent() {
            Some(parent) => match self.get(&parent) {
                Some(p) => Some(p.clone()),
                None => {
                    return Err(ArmError::parent_not_found(&parent));
                }
            },
            None => None,
        };
        let existing = self.get(id).cloned();
        let properties = validate::properties(
            id.kind(),
            body.properties,
            existing.as_ref(),
            parent_store.as_ref(),
            seeded,
        )?;
        let resource = Resource {
            // Keep the original casing of an existing resource, like ARM.
            id: existing
                .as_ref()
                .map_or_else(|| id.clone(), |e| e.id.clone()),
            location: body
                .location
                .or_else(|| existing.as_ref().map(|e| e.location.clone()))
                .or_else(|| parent_store.as_ref().map(|p| p.location.clone()))
                .unwrap_or_else(|| DEFAULT_LOCATION.to_string()),
            tags: body.tags,
            properties,
        };
        let outcome = if existing.is_some() {
            PutOutcome::Updated
        } else {
            PutOutcome::Created
        };
        self.map.insert(id.key(), resource.clone());
        Ok((outcome, resource))
    }

    /// Deletes a resource and everything under it; false if it did not exist.
    pub fn delete(&mut self, id: &ResourceId) -> bool {
        let key = id.key();
        if self.map.remove(&key).is_none() {
            return false;
        }
        let prefix = format!("{key}/");
        self.map.retain(|k, _| !k.starts_with(&prefix));
        true
    }

    /// Resources of `kind` directly under `parent` (publishers: under the resource group of
    /// `parent`'s subscription/group, `parent` being any id in that group).
    pub fn list(&self, scope_prefix: &str, kind: Kind) -> Vec<&Resource> {
        let prefix = scope_prefix.to_ascii_lowercase();
        self.map
            .iter()
            .filter(|(k, r)| k.starts_with(&prefix) && r.id.kind() == kind)
            .map(|(_, r)| r)
            .collect()
    }

    /// Sets a manifest's `artifactManifestState`; false if the manifest is gone.
    pub fn set_manifest_state(&mut self, id: &ResourceId, state: &str) -> bool {
        match self.map.get_mut(&id.key()) {
            Some(r) => {
                r.properties.insert(
                    "artifactManifestState".into(),
                    Value::String(state.to_string()),
                );
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    const P: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p";

    fn body(v: Value) -> PutBody {
        serde_json::from_value(v).unwrap()
    }

    fn setup() -> Resources {
        let mut r = Resources::default();
        r.put(
            &id(P),
            body(json!({"location": "westeurope", "properties": {}})),
            false,
        )
        .unwrap();
        r.put(
            &id(&format!("{P}/artifactStores/st")),
            body(json!({"properties": {"storeType": "AzureContainerRegistry"}})),
            false,
        )
        .unwrap();
        r
    }

    #[test]
    fn manifests_start_uploading_and_inherit_location() {
        let mut r = setup();
        let m = id(&format!("{P}/artifactStores/st/artifactManifests/m"));
        let (outcome, res) = r
            .put(
                &m,
                body(json!({"properties": {"artifacts": [{"artifactName": "a", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}], "artifactManifestState": "Uploaded"}})),
                false,
            )
            .unwrap();
        assert_eq!(outcome, PutOutcome::Created);
        assert_eq!(res.manifest_state(), "Uploading");
        assert_eq!(res.location, "westeurope");
        assert_eq!(res.artifacts()[0].artifact_name, "a");
        assert!(r.set_manifest_state(&m, "Uploaded"));
        let (outcome, res) = r
            .put(
                &m,
                body(json!({"properties": {"artifacts": [{"artifactName": "a", "artifactType": "OCIArtifact", "artifactVersion": "1.0.1"}]}})),
                false,
            )
            .unwrap();
        assert_eq!(outcome, PutOutcome::Updated);
        assert_eq!(res.manifest_state(), "Uploaded");
    }

    #[test]
    fn parent_must_exist_and_delete_cascades() {
        let mut r = setup();
        let orphan = id(&format!("{P}/artifactStores/nope/artifactManifests/m"));
        let err = r.put(&orphan, PutBody::default(), false).unwrap_err();
        assert_eq!(err.status, 404);
        let m = id(&format!("{P}/artifactStores/st/artifactManifests/m"));
        r.put(
            &m,
            body(json!({"properties": {"artifacts": [{"artifactName": "a", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}]}})),
            false,
        )
        .unwrap();
        assert!(r.delete(&id(P)));
        assert!(r.get(&m).is_none());
        assert!(!r.delete(&id(P)));
    }

    #[test]
    fn lists_children_of_one_kind() {
        let r = setup();
        let stores = r.list(&format!("{P}/"), Kind::ArtifactStore);
        assert_eq!(stores.len(), 1);
        assert_eq!(
            stores[0].to_json()["type"],
            "Microsoft.HybridNetwork/publishers/artifactStores"
        );
    }
}
