//! `GET /metadata/endpoints`: ARM's cloud metadata document, naming the emulator's own
//! URLs, so that `az cloud register --endpoint-resource-manager <emulator>` discovers a
//! cloud whose sign-in (`authentication.loginEndpoint`), ARM audience
//! (`authentication.audiences[0]`) and ARM endpoint (`resourceManager`) are the emulator.
//! Like ARM's, it needs no token.
//!
//! ARM answers in three shapes, chosen by `api-version`:
//! - none, `1.0`, or a date before 2019-05-01: the first one (Azure Stack's documentation
//!   shows it): `galleryEndpoint`, `graphEndpoint`, `portalEndpoint` and `authentication`;
//! - 2019-05-01 up to (not including) 2020-06-01: a list of clouds (what the Azure CLI
//!   reads from `ARM_CLOUD_METADATA_URL`), here one;
//! - 2020-06-01 and later (`az cloud register` asks for 2022-09-01): one cloud.
//!
//! The cloud's `name` is not one of the Azure CLI's built-in clouds, so the CLI fills no
//! endpoint from the public cloud; `suffixes` is empty because the emulator serves no
//! Key Vault, storage or database endpoints (the CLI requires the key).

use crate::app::App;
use crate::arm::auth::ARM_SCOPE;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// `name` of the cloud in the document.
pub const CLOUD_NAME: &str = "AosmEmulator";

/// Which document an api-version gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `galleryEndpoint`, `graphEndpoint`, `portalEndpoint`, `authentication`.
    Legacy,
    /// A JSON list of clouds.
    List,
    /// One cloud.
    Cloud,
}

/// The shape for `api-version` (dates compare as text: `YYYY-MM-DD`).
pub fn shape(api_version: Option<&str>) -> Shape {
    let date = |v: &str| {
        v.len() >= 10
            && v.as_bytes()[..10].iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                _ => b.is_ascii_digit(),
            })
    };
    match api_version {
        Some(v) if date(v) && v >= "2020-06-01" => Shape::Cloud,
        Some(v) if date(v) && v >= "2019-05-01" => Shape::List,
        _ => Shape::Legacy,
    }
}

/// The document for `base_url` (the emulator's ARM endpoint and authority host) and
/// tenant `tenant_id`, in `shape`.
pub fn document(base_url: &str, tenant_id: &str, shape: Shape) -> Value {
    let base = base_url.trim_end_matches('/');
    let arm_audience = format!("{}/", ARM_SCOPE.trim_end_matches("/.default"));
    let audiences = json!([arm_audience, format!("{base}/")]);
    let cloud = || {
        json!({
            "name": CLOUD_NAME,
            "portal": base,
            "resourceManager": format!("{base}/"),
            "authentication": {
                "loginEndpoint": base,
                "audiences": audiences,
                "tenant": tenant_id,
                "identityProvider": "AAD",
            },
            "suffixes": {},
        })
    };
    match shape {
        Shape::Legacy => json!({
            "galleryEndpoint": format!("{base}/"),
            "graphEndpoint": format!("{base}/"),
            "portalEndpoint": format!("{base}/"),
            "authentication": {
                "loginEndpoint": format!("{base}/"),
                "audiences": audiences,
            },
        }),
        Shape::List => json!([cloud()]),
        Shape::Cloud => cloud(),
    }
}

/// `GET /metadata/endpoints[?api-version=…]`.
pub async fn endpoints(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let version = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.into_owned());
    Json(document(
        &app.base_url,
        &app.identity.tenant_id,
        shape(version.as_deref()),
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app;

    #[test]
    fn the_api_version_picks_the_shape() {
        for (v, s) in [
            (None, Shape::Legacy),
            (Some("1.0"), Shape::Legacy),
            (Some("2015-01-01"), Shape::Legacy),
            (Some("2019-05-01"), Shape::List),
            (Some("2019-10-01"), Shape::List),
            (Some("2020-06-01"), Shape::Cloud),
            (Some("2022-09-01"), Shape::Cloud),
            (Some("2023-11-01-preview"), Shape::Cloud),
            (Some("garbage"), Shape::Legacy),
        ] {
            assert_eq!(shape(v), s, "{v:?}");
        }
    }

    /// What `az cloud register` reads (azure-cli's `_arm_to_cli_mapper`): the login
    /// endpoint, the first audience (ARM tokens are asked for it), `resourceManager`,
    /// `name` and a `suffixes` object.
    #[tokio::test]
    async fn the_handler_names_the_emulators_own_urls() {
        let app = Arc::new(test_app());
        let base = app.base_url.clone();
        let resp = endpoints(
            State(app.clone()),
            RawQuery(Some("api-version=2022-09-01".into())),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["name"], CLOUD_NAME);
        assert_eq!(doc["authentication"]["loginEndpoint"], base.as_str());
        assert_eq!(
            doc["authentication"]["audiences"][0],
            "https://management.azure.com/"
        );
        assert_eq!(
            doc["authentication"]["tenant"],
            app.identity.tenant_id.as_str()
        );
        assert_eq!(doc["resourceManager"], format!("{base}/"));
        assert!(doc["suffixes"].as_object().unwrap().is_empty());

        let list = document(&base, "t", Shape::List);
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["resourceManager"], format!("{base}/"));
        let legacy = document(&format!("{base}/"), "t", Shape::Legacy);
        assert_eq!(
            legacy["authentication"]["loginEndpoint"],
            format!("{base}/")
        );
        assert_eq!(legacy["portalEndpoint"], format!("{base}/"));
        assert!(legacy.get("resourceManager").is_none());
    }
}
