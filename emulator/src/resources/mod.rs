//! The emulated `Microsoft.HybridNetwork` resources: an in-memory map from id to resource,
//! with the rules ARM and AOSM apply on PUT and DELETE.

pub mod id;
mod validate;

pub use id::{Kind, ResourceId};
pub use validate::{PUSHABLE_STATES, StoreType};

use crate::arm::MANIFEST_SCOPED_REPOSITORIES_FROM;
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

/// Who writes a resource, and how (the `api-version` of the PUT decides how a manifest's
/// artifacts are named in the registry, for as long as the manifest lives).
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The `api-version` of the request.
    pub api_version: &'a str,
    /// The caller (client id), for `systemData`.
    pub principal: &'a str,
    /// A seed file, not a request: a manifest may carry its own `artifactManifestState`
    /// and any version form (as a store filled by other means may hold).
    pub seeded: bool,
}

/// ARM's `systemData` of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemData {
    /// Who created it.
    pub created_by: String,
    /// `Application` (a service principal) here.
    pub created_by_type: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// Who changed it last.
    pub last_modified_by: String,
    /// `Application` here.
    pub last_modified_by_type: String,
    /// When (RFC 3339).
    pub last_modified_at: String,
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
    /// The `api-version` it was created with (never changed by later PUTs).
    pub created_with: String,
    /// Creation and last change.
    pub system_data: SystemData,
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
            "systemData": self.system_data,
        });
        if let (Some(tags), Some(obj)) = (&self.tags, v.as_object_mut()) {
            obj.insert("tags".into(), tags.clone());
        }
        v
    }

    /// The registry repository of a manifest's artifact: `<manifest>/<artifact>` for
    /// manifests created with api-version 2025-03-30 or later, `<artifact>` before
    /// (Microsoft's resource clean-up documentation), whatever api-version asks.
    pub fn repository(&self, artifact: &str) -> String {
        if self.created_with.as_str() >= MANIFEST_SCOPED_REPOSITORIES_FROM {
            format!("{}/{artifact}", self.id.name().to_ascii_lowercase())
        } else {
            artifact.to_string()
        }
    }

    /// Whether deleting this manifest untags its artifacts (created with 2025-03-30 or
    /// later).
    pub fn untags_on_delete(&self) -> bool {
        self.created_with.as_str() >= MANIFEST_SCOPED_REPOSITORIES_FROM
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

    /// Creates or replaces a resource. The parent must exist and the name must follow the
    /// specification's pattern. A seeded manifest may carry its own
    /// `artifactManifestState` (otherwise it is read-only: new manifests start
    /// `Uploading`, updates keep the state).
    pub fn put(
        &mut self,
        id: &ResourceId,
        body: PutBody,
        writer: Writer<'_>,
    ) -> Result<(PutOutcome, Resource), ArmError> {
        validate::name(id)?;
        let seeded = writer.seeded;
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
        let location = body
            .location
            .clone()
            .or_else(|| existing.as_ref().map(|e| e.location.clone()))
            .or_else(|| parent_store.as_ref().map(|p| p.location.clone()))
            .unwrap_or_else(|| DEFAULT_LOCATION.to_string());
        let properties = validate::properties(
            id,
            &location,
            body.properties,
            existing.as_ref(),
            parent_store.as_ref(),
            seeded,
        )?;
        let now = crate::time_fmt::now();
        let system_data = match &existing {
            Some(e) => SystemData {
                last_modified_by: writer.principal.to_string(),
                last_modified_at: now,
                ..e.system_data.clone()
            },
            None => SystemData {
                created_by: writer.principal.to_string(),
                created_by_type: "Application".into(),
                created_at: now.clone(),
                last_modified_by: writer.principal.to_string(),
                last_modified_by_type: "Application".into(),
                last_modified_at: now,
            },
        };
        let resource = Resource {
            created_with: existing.as_ref().map_or_else(
                || writer.api_version.to_string(),
                |e| e.created_with.clone(),
            ),
            system_data,
            // Keep the original casing of an existing resource, like ARM.
            id: existing
                .as_ref()
                .map_or_else(|| id.clone(), |e| e.id.clone()),
            location,
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

    const W: Writer<'static> = Writer {
        api_version: "2023-09-01",
        principal: "client",
        seeded: false,
    };

    fn setup() -> Resources {
        let mut r = Resources::default();
        r.put(
            &id(P),
            body(json!({"location": "westeurope", "properties": {}})),
            W,
        )
        .unwrap();
        r.put(
            &id(&format!("{P}/artifactStores/st")),
            body(json!({"properties": {"storeType": "AzureContainerRegistry"}})),
            W,
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
                W,
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
                W,
            )
            .unwrap();
        assert_eq!(outcome, PutOutcome::Updated);
        assert_eq!(res.manifest_state(), "Uploaded");
    }

    #[test]
    fn parent_must_exist_and_delete_cascades() {
        let mut r = setup();
        let orphan = id(&format!("{P}/artifactStores/nope/artifactManifests/m"));
        let err = r.put(&orphan, PutBody::default(), W).unwrap_err();
        assert_eq!(err.status, 404);
        let m = id(&format!("{P}/artifactStores/st/artifactManifests/m"));
        r.put(
            &m,
            body(json!({"properties": {"artifacts": [{"artifactName": "a", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}]}})),
            W,
        )
        .unwrap();
        assert!(r.delete(&id(P)));
        assert!(r.get(&m).is_none());
        assert!(!r.delete(&id(P)));
    }

    #[test]
    fn repositories_follow_the_api_version_a_manifest_was_created_with() {
        let mut r = setup();
        let artifacts = json!({"properties": {"artifacts": [{"artifactName": "cnf", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}]}});
        for (name, created_with, repo, untags) in [
            ("Old-M", "2024-04-15", "cnf", false),
            ("New-M", "2025-03-30", "new-m/cnf", true),
        ] {
            let m = id(&format!("{P}/artifactStores/st/artifactManifests/{name}"));
            let w = Writer {
                api_version: created_with,
                ..W
            };
            let (_, res) = r.put(&m, body(artifacts.clone()), w).unwrap();
            assert_eq!(res.repository("cnf"), repo);
            assert_eq!(res.untags_on_delete(), untags);
            // A later PUT with another api-version changes nothing of it.
            let w = Writer {
                api_version: "2023-09-01",
                ..W
            };
            let (_, res) = r.put(&m, body(artifacts.clone()), w).unwrap();
            assert_eq!(res.repository("cnf"), repo);
            assert_eq!(res.created_with, created_with);
        }
    }

    #[test]
    fn names_follow_the_spec_patterns() {
        let mut r = setup();
        for bad in [
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p.x",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/-p",
            &format!("{P}/artifactStores/{}", "s".repeat(65)),
            &format!("{P}/artifactStores/st/artifactManifests/{}", "m".repeat(65)),
        ] {
            let err = r
                .put(
                    &id(bad),
                    body(json!({"properties": {"storeType": "AzureContainerRegistry"}})),
                    W,
                )
                .unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (400, "InvalidResourceName"),
                "{bad}"
            );
        }
        // Manifest names may hold anything but whitespace.
        let m = id(&format!("{P}/artifactStores/st/artifactManifests/m.1_(x)"));
        let artifacts = json!({"properties": {"artifacts": [{"artifactName": "a", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}]}});
        assert!(r.put(&m, body(artifacts), W).is_ok());
    }

    #[test]
    fn stores_carry_the_spec_read_only_fields() {
        let r = setup();
        let store = r
            .get(&id(&format!("{P}/artifactStores/st")))
            .unwrap()
            .to_json();
        let props = &store["properties"];
        assert_eq!(props["replicationStrategy"], "SingleReplication");
        assert_eq!(
            props["managedResourceGroupConfiguration"]["location"],
            "westeurope"
        );
        assert!(
            props["storageResourceId"]
                .as_str()
                .unwrap()
                .contains("/providers/Microsoft.ContainerRegistry/registries/")
        );
        assert_eq!(store["systemData"]["createdBy"], "client");
        assert_eq!(store["systemData"]["createdByType"], "Application");
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
