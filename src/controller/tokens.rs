//! Tokens of the ServiceAccounts that stores name in `identity.serviceAccountName`, asked
//! for through the TokenRequest API (`POST .../serviceaccounts/<name>/token`), as Flux's
//! object-level workload identity does. The AOSM client exchanges them at Entra ID; the
//! controller never reads a token from disk for a tenant's store.

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::aosm::{ServiceAccountTokenError, ServiceAccountTokens};
use crate::engine::Secret;

/// How long a requested token is valid. The API server's minimum is 10 minutes; the
/// token is used once, for one Entra exchange, right away.
pub const TOKEN_LIFETIME_SECONDS: i64 = 600;

/// [`ServiceAccountTokens`] over the Kubernetes API.
#[derive(Clone)]
pub struct ServiceAccountTokenRequests {
    client: Client,
}

impl std::fmt::Debug for ServiceAccountTokenRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokenRequests")
            .finish_non_exhaustive()
    }
}

impl ServiceAccountTokenRequests {
    /// Tokens through `client` (needs `create` on `serviceaccounts/token`).
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn describe(e: &kube::Error) -> ServiceAccountTokenError {
    match e {
        kube::Error::Api(s) => ServiceAccountTokenError {
            message: format!(
                "the Kubernetes API answered {} {}: {}",
                s.code,
                s.reason,
                s.message.lines().next().unwrap_or_default()
            ),
            transient: s.code == 429 || s.code >= 500,
        },
        other => ServiceAccountTokenError {
            message: format!("cannot reach the Kubernetes API: {other}"),
            transient: true,
        },
    }
}

impl ServiceAccountTokens for ServiceAccountTokenRequests {
    fn token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Secret, ServiceAccountTokenError>> {
        async move {
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![audience.to_string()],
                    expiration_seconds: Some(TOKEN_LIFETIME_SECONDS),
                    bound_object_ref: None,
                },
                ..Default::default()
            };
            let answer = api
                .create_token_request(name, &PostParams::default(), &request)
                .await
                .map_err(|e| describe(&e))?;
            answer
                .status
                .map(|s| Secret::new(s.token))
                .filter(|t| !t.expose().is_empty())
                .ok_or_else(|| ServiceAccountTokenError {
                    message: "the Kubernetes API answered a TokenRequest without a token".into(),
                    transient: true,
                })
        }
        .boxed()
    }
}
