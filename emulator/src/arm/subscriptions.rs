//! `GET /subscriptions` and `GET /subscriptions/{subscriptionId}` of Microsoft.Resources
//! (`Subscriptions_List`, `Subscriptions_Get`; shapes of api-version 2022-12-01): the one
//! subscription of the emulated directory, which `az login` lists and `az account show`
//! prints. The caller's token is checked by [`super::dispatch`] as for every ARM route.

use super::error::ArmError;
use crate::app::App;
use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// api-versions of the subscription operations the emulator accepts: those the Python
/// SDK the Azure CLI uses (`azure-mgmt-resource`) ships for `SubscriptionClient`.
pub const API_VERSIONS: &[&str] = &[
    "2016-06-01",
    "2018-06-01",
    "2019-06-01",
    "2019-11-01",
    "2021-01-01",
    "2022-12-01",
];

/// The `Subscription` object of the emulator's subscription.
pub fn subscription_json(app: &App) -> Value {
    let sub = &app.subscription;
    json!({
        "id": format!("/subscriptions/{}", sub.id),
        "subscriptionId": sub.id,
        "tenantId": app.identity.tenant_id,
        "displayName": sub.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "tags": {},
    })
}

/// `Subscriptions_List`: one page holding the subscription. `nextLink` is required by the
/// spec; an empty one ends the paging in every Azure SDK.
pub fn list(app: &App) -> Response {
    Json(json!({
        "value": [subscription_json(app)],
        "nextLink": "",
    }))
    .into_response()
}

/// `Subscriptions_Get`: the subscription, or ARM's 404 `SubscriptionNotFound` for any
/// other id (compared case-insensitively, as ARM compares ids).
pub fn get(app: &App, id: &str) -> Result<Response, ArmError> {
    if !id.eq_ignore_ascii_case(&app.subscription.id) {
        return Err(not_found(id));
    }
    Ok(Json(subscription_json(app)).into_response())
}

fn not_found(id: &str) -> ArmError {
    ArmError::new(
        404,
        "SubscriptionNotFound",
        format!("The subscription '{id}' could not be found."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app;
    use axum::http::StatusCode;

    async fn body(resp: Response) -> (StatusCode, Value) {
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// The field names of Microsoft's `GetSubscription.json` example (azure-rest-api-specs,
    /// `specification/resources/resource-manager/Microsoft.Resources/stable/2022-12-01/
    /// examples/GetSubscription.json`), with the emulator's values.
    const EXAMPLE_FIELDS: &[&str] = &[
        "authorizationSource",
        "displayName",
        "id",
        "managedByTenants",
        "state",
        "subscriptionId",
        "subscriptionPolicies",
        "tags",
        "tenantId",
    ];

    #[tokio::test]
    async fn list_and_get_answer_the_one_subscription_in_the_specs_shape() {
        let app = test_app();
        let (status, listed) = body(list(&app)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["nextLink"], "", "{listed}");
        let value = listed["value"].as_array().unwrap();
        assert_eq!(value.len(), 1, "{listed}");
        let sub = &value[0];
        let mut fields: Vec<&str> = sub
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, EXAMPLE_FIELDS);
        assert_eq!(sub["id"], format!("/subscriptions/{}", app.subscription.id));
        assert_eq!(sub["subscriptionId"], app.subscription.id.as_str());
        assert_eq!(sub["tenantId"], app.identity.tenant_id.as_str());
        assert_eq!(sub["displayName"], app.subscription.display_name.as_str());
        assert_eq!(sub["state"], "Enabled");
        assert_eq!(sub["subscriptionPolicies"]["spendingLimit"], "Off");

        let (status, got) = body(get(&app, &app.subscription.id.to_uppercase()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&got, sub);

        let err = get(&app, "11111111-1111-1111-1111-111111111111").unwrap_err();
        assert_eq!(
            (err.status, err.code.as_str()),
            (404, "SubscriptionNotFound")
        );
        assert!(err.message.contains("11111111-1111-1111-1111-111111111111"));
    }
}
