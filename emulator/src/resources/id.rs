//! ARM resource ids of `Microsoft.HybridNetwork` publishers, artifact stores and artifact
//! manifests. ARM compares ids case-insensitively; names keep the casing they were
//! created with.

use std::fmt;

/// The resource provider namespace.
pub const NAMESPACE: &str = "Microsoft.HybridNetwork";

/// Kinds of resources the emulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `publishers`
    Publisher,
    /// `publishers/artifactStores`
    ArtifactStore,
    /// `publishers/artifactStores/artifactManifests`
    ArtifactManifest,
}

impl Kind {
    /// The ARM `type` of the kind.
    pub fn arm_type(self) -> &'static str {
        match self {
            Kind::Publisher => "Microsoft.HybridNetwork/publishers",
            Kind::ArtifactStore => "Microsoft.HybridNetwork/publishers/artifactStores",
            Kind::ArtifactManifest => {
                "Microsoft.HybridNetwork/publishers/artifactStores/artifactManifests"
            }
        }
    }
}

/// A publisher, store or manifest id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    /// Subscription id.
    pub subscription: String,
    /// Resource group name.
    pub resource_group: String,
    /// Publisher name.
    pub publisher: String,
    /// Artifact store name (stores and manifests).
    pub store: Option<String>,
    /// Artifact manifest name (manifests).
    pub manifest: Option<String>,
}

impl ResourceId {
    /// The kind, from which names are present.
    pub fn kind(&self) -> Kind {
        match (&self.store, &self.manifest) {
            (None, _) => Kind::Publisher,
            (Some(_), None) => Kind::ArtifactStore,
            (Some(_), Some(_)) => Kind::ArtifactManifest,
        }
    }

    /// The last name.
    pub fn name(&self) -> &str {
        self.manifest
            .as_deref()
            .or(self.store.as_deref())
            .unwrap_or(&self.publisher)
    }

    /// The id of the parent resource (None for a publisher).
    pub fn parent(&self) -> Option<ResourceId> {
        let mut p = self.clone();
        if p.manifest.take().is_some() || p.store.take().is_some() {
            Some(p)
        } else {
            None
        }
    }

    /// The id of the artifact store of a manifest (or the store itself).
    pub fn store_id(&self) -> Option<ResourceId> {
        self.store.as_ref()?;
        Some(ResourceId {
            manifest: None,
            ..self.clone()
        })
    }

    /// Lowercased id: the key under which ARM finds the resource.
    pub fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }

    /// `<store>/<manifest>`, the key of per-manifest statistics.
    pub fn stats_key(&self) -> String {
        format!(
            "{}/{}",
            self.store.as_deref().unwrap_or(""),
            self.manifest.as_deref().unwrap_or("")
        )
    }

    /// Parses an id like `/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p[/artifactStores/s[/artifactManifests/m]]`.
    pub fn parse(id: &str) -> Option<ResourceId> {
        let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
        match parse_segments(&segs)? {
            (rid, []) => Some(rid),
            _ => None,
        }
    }
}

/// Parses the leading resource id of `segs` and returns the rest (collection names,
/// actions).
pub fn parse_segments<'a>(segs: &'a [&'a str]) -> Option<(ResourceId, &'a [&'a str])> {
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    // Names arrive percent-decoded: none may be empty, hold a '/' (it would make another
    // path), whitespace or control characters; the rules of each kind are checked on PUT.
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= 128
            && !name
                .chars()
                .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    };
    match segs {
        [s, sub, r, rg, p, ns, pubs, publisher, rest @ ..]
            if eq(s, "subscriptions")
                && eq(r, "resourceGroups")
                && eq(p, "providers")
                && eq(ns, NAMESPACE)
                && eq(pubs, "publishers")
                && valid(sub)
                && valid(rg)
                && valid(publisher) =>
        {
            let mut id = ResourceId {
                subscription: sub.to_string(),
                resource_group: rg.to_string(),
                publisher: publisher.to_string(),
                store: None,
                manifest: None,
            };
            match rest {
                [stores, store, rest @ ..] if eq(stores, "artifactStores") && valid(store) => {
                    id.store = Some(store.to_string());
                    match rest {
                        [manifests, manifest, rest @ ..]
                            if eq(manifests, "artifactManifests") && valid(manifest) =>
                        {
                            id.manifest = Some(manifest.to_string());
                            Some((id, rest))
                        }
                        _ => Some((id, rest)),
                    }
                }
                _ => Some((id, rest)),
            }
        }
        _ => None,
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{NAMESPACE}/publishers/{}",
            self.subscription, self.resource_group, self.publisher
        )?;
        if let Some(s) = &self.store {
            write!(f, "/artifactStores/{s}")?;
        }
        if let Some(m) = &self.manifest {
            write!(f, "/artifactManifests/{m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_case_insensitively() {
        let id = ResourceId::parse(
            "/subscriptions/S1/resourcegroups/RG/providers/microsoft.hybridnetwork/publishers/P/artifactstores/St/artifactmanifests/M",
        )
        .unwrap();
        assert_eq!(id.kind(), Kind::ArtifactManifest);
        assert_eq!(id.name(), "M");
        assert_eq!(
            id.to_string(),
            "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.HybridNetwork/publishers/P/artifactStores/St/artifactManifests/M"
        );
        assert_eq!(id.stats_key(), "St/M");
        assert_eq!(id.parent().unwrap().kind(), Kind::ArtifactStore);
        assert_eq!(
            id.parent().unwrap().parent().unwrap().kind(),
            Kind::Publisher
        );
        assert!(id.parent().unwrap().parent().unwrap().parent().is_none());
        assert!(id.key().chars().all(|c| !c.is_ascii_uppercase()));
    }

    #[test]
    fn leaves_actions_to_the_caller() {
        let segs: Vec<&str> =
            "subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/artifactStores/s/artifactManifests/m/listCredential"
                .split('/')
                .collect();
        let (id, rest) = parse_segments(&segs).unwrap();
        assert_eq!(id.kind(), Kind::ArtifactManifest);
        assert_eq!(rest, ["listCredential"]);
        assert!(
            ResourceId::parse("/subscriptions/s/resourceGroups/rg/providers/Other/publishers/p")
                .is_none()
        );
        assert!(ResourceId::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/x").is_none());
    }
}
