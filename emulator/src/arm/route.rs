//! What an ARM request path addresses (matched case-insensitively, like ARM).

use crate::resources::id::{NAMESPACE, parse_segments};
use crate::resources::{Kind, ResourceId};

/// A POST action on a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `listCredential`
    ListCredential,
    /// `updateState`
    UpdateState,
}

impl Action {
    /// The RBAC action name (for 403 messages).
    pub fn rbac(self) -> &'static str {
        match self {
            Action::ListCredential => {
                "Microsoft.HybridNetwork/publishers/artifactStores/artifactManifests/listCredential/action"
            }
            Action::UpdateState => {
                "Microsoft.HybridNetwork/publishers/artifactStores/artifactManifests/updateState/action"
            }
        }
    }
}

/// A parsed ARM path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One resource.
    Resource(ResourceId),
    /// A collection: id prefix (ending in `/`) and the kind listed.
    Collection {
        /// Resource id of the parent (or the resource group scope for publishers) + `/`.
        prefix: String,
        /// The kind listed.
        kind: Kind,
        /// `/subscriptions/<sub>/resourceGroups/<rg>` for authorization checks.
        scope: String,
    },
    /// A POST action on a manifest.
    Action(ResourceId, Action),
    /// `GET /subscriptions` (Microsoft.Resources, not the emulated provider).
    Subscriptions,
    /// `GET /subscriptions/{subscriptionId}`.
    Subscription {
        /// The subscription id asked for.
        id: String,
    },
    /// An operation poll: `/providers/Microsoft.HybridNetwork/locations/<loc>/operationStatuses/<id>`
    /// (the examples' form), also under `/subscriptions/<sub>` and as `operationResults`.
    Operation {
        /// Operation id.
        id: String,
    },
}

/// Parses a request path; `None` for paths the emulated provider does not serve.
/// Segments are percent-decoded first (`%41` is `A`); one that does not decode to UTF-8
/// matches nothing.
pub fn parse(path: &str) -> Option<Route> {
    let decoded: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|d| d.into_owned())
        })
        .collect::<Option<_>>()?;
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let operation = |ops: &str, id: &str| {
        (eq(ops, "operationStatuses") || eq(ops, "operationResults"))
            .then(|| Route::Operation { id: id.to_string() })
    };
    match segs.as_slice() {
        [s] if eq(s, "subscriptions") => return Some(Route::Subscriptions),
        [s, id] if eq(s, "subscriptions") && !id.is_empty() => {
            return Some(Route::Subscription { id: id.to_string() });
        }
        [p, ns, l, _loc, ops, id]
            if eq(p, "providers") && eq(ns, NAMESPACE) && eq(l, "locations") =>
        {
            return operation(ops, id);
        }
        [s, _sub, p, ns, l, _loc, ops, id]
            if eq(s, "subscriptions")
                && eq(p, "providers")
                && eq(ns, NAMESPACE)
                && eq(l, "locations") =>
        {
            return operation(ops, id);
        }
        [s, sub, r, rg, p, ns, pubs]
            if eq(s, "subscriptions")
                && eq(r, "resourceGroups")
                && eq(p, "providers")
                && eq(ns, NAMESPACE)
                && eq(pubs, "publishers") =>
        {
            let scope = format!("/subscriptions/{sub}/resourceGroups/{rg}");
            return Some(Route::Collection {
                prefix: format!("{scope}/providers/{NAMESPACE}/publishers/"),
                kind: Kind::Publisher,
                scope,
            });
        }
        _ => {}
    }
    let (id, rest) = parse_segments(&segs)?;
    let kind = id.kind();
    let collection = |child: Kind| Route::Collection {
        prefix: format!("{id}/"),
        kind: child,
        scope: id.to_string(),
    };
    match rest {
        [] => Some(Route::Resource(id)),
        [c] if kind == Kind::Publisher && eq(c, "artifactStores") => {
            Some(collection(Kind::ArtifactStore))
        }
        [c] if kind == Kind::ArtifactStore && eq(c, "artifactManifests") => {
            Some(collection(Kind::ArtifactManifest))
        }
        [a] if kind == Kind::ArtifactManifest && eq(a, "listCredential") => {
            Some(Route::Action(id, Action::ListCredential))
        }
        [a] if kind == Kind::ArtifactManifest && eq(a, "updateState") => {
            Some(Route::Action(id, Action::UpdateState))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/artifactStores/st/artifactManifests/m";

    #[test]
    fn routes() {
        assert!(
            matches!(parse(M), Some(Route::Resource(id)) if id.kind() == Kind::ArtifactManifest)
        );
        assert!(matches!(
            parse(&format!("{M}/listcredential")),
            Some(Route::Action(_, Action::ListCredential))
        ));
        assert!(matches!(
            parse(&format!("{M}/updateState")),
            Some(Route::Action(_, Action::UpdateState))
        ));
        assert!(parse(&format!("{M}/other")).is_none());
        // Percent-encoded segments are decoded; a name may not hide a '/' that way.
        assert_eq!(
            parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/artifactStores/st/artifactManifests/m%2Dx"
            ),
            parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/artifactStores/st/artifactManifests/m-x"
            )
        );
        assert!(
            parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/artifactStores/st/artifactManifests/a%2Fb")
                .is_none()
        );
        let Some(Route::Collection { kind, prefix, .. }) = parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/p/artifactStores/st/artifactManifests",
        ) else {
            panic!("collection expected");
        };
        assert_eq!(kind, Kind::ArtifactManifest);
        assert!(prefix.ends_with("/artifactStores/st/"));
        assert!(matches!(
            parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers"
            ),
            Some(Route::Collection {
                kind: Kind::Publisher,
                ..
            })
        ));
        for path in [
            "/providers/microsoft.hybridnetwork/locations/EASTUS2EUAP/operationStatuses/0b37c625-7e7c-49c5-b86e-c817c85acb5d*B77A",
            "/subscriptions/s/providers/Microsoft.HybridNetwork/locations/eastus/operationResults/0b37c625-7e7c-49c5-b86e-c817c85acb5d*B77A",
        ] {
            assert_eq!(
                parse(path),
                Some(Route::Operation {
                    id: "0b37c625-7e7c-49c5-b86e-c817c85acb5d*B77A".into()
                }),
                "{path}"
            );
        }
        assert!(parse("/providers/Microsoft.HybridNetwork/locations/eastus/other/abc").is_none());
        assert_eq!(parse("/subscriptions"), Some(Route::Subscriptions));
        assert_eq!(parse("/Subscriptions/"), Some(Route::Subscriptions));
        assert_eq!(
            parse("/subscriptions/00000000-0000-0000-0000-0000000000aa"),
            Some(Route::Subscription {
                id: "00000000-0000-0000-0000-0000000000aa".into()
            })
        );
        assert!(
            parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Other/publishers/p")
                .is_none()
        );
    }
}
