//! ARM tokens through `azure_identity` 1.x: workload identity (default), managed identity,
//! or a client secret, against the store's authority host, over our own HTTP client
//! (system roots plus `SSL_CERT_FILE`).

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertion, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::error::AosmError;
use crate::engine::Secret;
use crate::limits::MAX_TOKEN_RESPONSE_BYTES;

/// The audience of a ServiceAccount token exchanged at Entra ID for an Azure identity
/// (what the AKS workload identity webhook projects into pods).
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Hands out short-lived tokens of a Kubernetes ServiceAccount for an audience. The
/// controller implements it with the TokenRequest API; the AOSM client knows nothing of
/// Kubernetes. Errors are one line, never a token.
pub trait ServiceAccountTokens: Send + Sync + std::fmt::Debug {
    /// A token of ServiceAccount `namespace/name` for `audience`.
    fn token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audience: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Secret, ServiceAccountTokenError>>;
}

/// Why a ServiceAccount token could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServiceAccountTokenError {
    /// What failed (one line, no token).
    pub message: String,
    /// Whether asking again may succeed (the API server was unreachable or overloaded).
    pub transient: bool,
}

/// How the controller authenticates to ARM for a store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Kubernetes workload identity (federated token file); ids default to the
    /// `AZURE_CLIENT_ID` / `AZURE_TENANT_ID` the AKS webhook injects.
    WorkloadIdentity {
        /// Client id override.
        client_id: Option<String>,
        /// Tenant id override.
        tenant_id: Option<String>,
    },
    /// Managed identity (App Service style endpoint, or IMDS on a VM).
    ManagedIdentity {
        /// User-assigned identity client id.
        client_id: Option<String>,
    },
    /// Workload identity through a ServiceAccount of the store's own (not the
    /// controller's): its token, asked for through [`ServiceAccountTokens`], is the client
    /// assertion.
    ServiceAccount {
        /// Namespace of the ServiceAccount.
        namespace: String,
        /// Name of the ServiceAccount.
        name: String,
        /// Client id of the federated identity.
        client_id: String,
        /// Tenant id; `None` = the controller's `AZURE_TENANT_ID`.
        tenant_id: Option<String>,
    },
    /// The Azure CLI's own sign-in (`az login`): tokens from `az account get-access-token`,
    /// as `azure_identity`'s `AzureCliCredential` runs it. For people at a terminal.
    AzureCli {
        /// Tenant to ask in; `None` = the CLI's default.
        tenant_id: Option<String>,
        /// Subscription whose account to use when no tenant is given (`az` refuses both).
        subscription: Option<String>,
    },
    /// A service principal with a client secret.
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Client id.
        client_id: String,
        /// The secret.
        client_secret: Secret,
    },
}

impl Identity {
    /// A description for messages: type and client id, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Identity::WorkloadIdentity { client_id, .. } => {
                format!(
                    "workload identity {}",
                    client_id.as_deref().unwrap_or("(from AZURE_CLIENT_ID)")
                )
            }
            Identity::ManagedIdentity { client_id } => {
                format!(
                    "managed identity {}",
                    client_id.as_deref().unwrap_or("(system-assigned)")
                )
            }
            Identity::ServiceAccount {
                namespace,
                name,
                client_id,
                ..
            } => format!("workload identity {client_id} (ServiceAccount {namespace}/{name})"),
            Identity::ClientSecret { client_id, .. } => format!("service principal {client_id}"),
            Identity::AzureCli { .. } => "the Azure CLI's sign-in (az login)".to_string(),
        }
    }
}

/// The client assertion of an [`Identity::ServiceAccount`]: a fresh ServiceAccount token
/// each time Entra ID is asked for a new ARM token.
#[derive(Debug)]
struct ServiceAccountAssertion {
    tokens: Arc<dyn ServiceAccountTokens>,
    namespace: String,
    name: String,
}

#[async_trait::async_trait]
impl ClientAssertion for ServiceAccountAssertion {
    async fn secret(
        &self,
        _options: Option<azure_core::http::ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        match self
            .tokens
            .token(&self.namespace, &self.name, TOKEN_EXCHANGE_AUDIENCE)
            .await
        {
            Ok(token) => Ok(token.expose().to_string()),
            Err(e) => Err(azure_core::Error::with_message(
                if e.transient {
                    azure_core::error::ErrorKind::Io
                } else {
                    azure_core::error::ErrorKind::Credential
                },
                format!(
                    "cannot get a token of ServiceAccount {}/{}: {}",
                    self.namespace, self.name, e.message
                ),
            )),
        }
    }
}

/// The HTTP client `azure_identity` uses: ours (system roots plus `SSL_CERT_FILE`), with
/// every answer's body failing past [`MAX_TOKEN_RESPONSE_BYTES`]. Entra ID and managed
/// identity endpoints answer a token in a few KiB; whatever endpoint a store names must not
/// make the controller read without end. The reader stops at the first error.
#[derive(Debug)]
struct CappedTransport {
    http: reqwest::Client,
    limit: usize,
}

#[async_trait::async_trait]
impl azure_core::http::HttpClient for CappedTransport {
    async fn execute_request(
        &self,
        request: &azure_core::http::Request,
    ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
        use futures_util::StreamExt as _;
        let (status, headers, body) = self.http.execute_request(request).await?.deconstruct();
        let limit = self.limit;
        let mut seen = 0usize;
        let capped = body.map(move |chunk| {
            let bytes = chunk?;
            seen = seen.saturating_add(bytes.len());
            if seen > limit {
                return Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::DataConversion,
                    format!(
                        "the token endpoint's answer is larger than {limit} bytes (MAX_TOKEN_RESPONSE_BYTES)"
                    ),
                ));
            }
            Ok(bytes)
        });
        let stream: std::pin::Pin<
            Box<dyn futures_util::Stream<Item = azure_core::Result<azure_core::Bytes>> + Send>,
        > = Box::pin(capped);
        Ok(azure_core::http::AsyncRawResponse::new(
            status, headers, stream,
        ))
    }
}

fn client_options(authority_host: &str, http: reqwest::Client) -> ClientOptions {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = authority_host.to_string();
    ClientOptions {
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        transport: Some(Transport::new(Arc::new(CappedTransport {
            http,
            limit: MAX_TOKEN_RESPONSE_BYTES,
        }))),
        ..Default::default()
    }
}

/// Builds the token credential for `identity`. `tokens` serves
/// [`Identity::ServiceAccount`]; without it such an identity is a configuration error.
pub fn credential(
    identity: &Identity,
    authority_host: &str,
    http: reqwest::Client,
    tokens: Option<&Arc<dyn ServiceAccountTokens>>,
) -> Result<Arc<dyn TokenCredential>, AosmError> {
    let fail = |e: azure_core::Error| AosmError::Identity {
        identity: identity.describe(),
        reason: describe_azure_error(&e),
    };
    let options = client_options(authority_host, http);
    Ok(match identity {
        Identity::WorkloadIdentity {
            client_id,
            tenant_id,
        } => {
            let mut o = WorkloadIdentityCredentialOptions::default();
            o.credential_options.client_options = options;
            o.client_id = client_id.clone();
            o.tenant_id = tenant_id.clone();
            WorkloadIdentityCredential::new(Some(o)).map_err(fail)?
        }
        Identity::ManagedIdentity { client_id } => {
            let o = ManagedIdentityCredentialOptions {
                client_options: options,
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
            };
            ManagedIdentityCredential::new(Some(o)).map_err(fail)?
        }
        Identity::ServiceAccount {
            namespace,
            name,
            client_id,
            tenant_id,
        } => {
            let tokens = tokens.ok_or_else(|| {
                AosmError::Config(format!(
                    "identity.serviceAccountName {namespace}/{name} needs the Kubernetes API to ask for the ServiceAccount's token, and none is configured"
                ))
            })?;
            let tenant_id = match tenant_id {
                Some(t) => t.clone(),
                None => std::env::var("AZURE_TENANT_ID")
                    .ok()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| AosmError::Identity {
                        identity: identity.describe(),
                        reason: "no tenant: set identity.tenantId, the ServiceAccount annotation azure.workload.identity/tenant-id, or AZURE_TENANT_ID of the controller".into(),
                    })?,
            };
            let assertion = ServiceAccountAssertion {
                tokens: tokens.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
            };
            let o = ClientAssertionCredentialOptions {
                client_options: options,
            };
            ClientAssertionCredential::new(tenant_id, client_id.clone(), assertion, Some(o))
                .map_err(fail)?
        }
        Identity::AzureCli {
            tenant_id,
            subscription,
        } => {
            let o = AzureCliCredentialOptions {
                tenant_id: tenant_id.clone(),
                // `az account get-access-token` refuses --tenant with --subscription.
                subscription: if tenant_id.is_some() {
                    None
                } else {
                    subscription.clone()
                },
                ..Default::default()
            };
            AzureCliCredential::new(Some(o)).map_err(fail)?
        }
        Identity::ClientSecret {
            tenant_id,
            client_id,
            client_secret,
        } => {
            let o = ClientSecretCredentialOptions {
                client_options: options,
            };
            ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                azure_core::credentials::Secret::new(client_secret.expose().to_string()),
                Some(o),
            )
            .map_err(fail)?
        }
    })
}

/// Gets an ARM token, mapping failures to typed errors.
pub async fn arm_token(
    credential: &dyn TokenCredential,
    identity: &Identity,
    scope: &str,
) -> Result<Secret, AosmError> {
    match credential.get_token(&[scope], None).await {
        Ok(t) => Ok(Secret::new(t.token.secret().to_string())),
        Err(e) => {
            let transient = match e.kind() {
                azure_core::error::ErrorKind::Connection | azure_core::error::ErrorKind::Io => true,
                azure_core::error::ErrorKind::HttpResponse { status, .. } => {
                    let s = u16::from(*status);
                    s == 429 || s >= 500
                }
                _ => false,
            };
            let reason = describe_azure_error(&e);
            Err(if transient {
                AosmError::Connect {
                    endpoint: "Entra ID token endpoint".into(),
                    reason,
                }
            } else {
                AosmError::Identity {
                    identity: identity.describe(),
                    reason,
                }
            })
        }
    }
}

/// One line for an `azure_core` error: its own first line and, when the cause deepest in
/// its chain says something else (a limit of ours, a connection error), that too.
fn describe_azure_error(e: &azure_core::Error) -> String {
    let outer = first_line(&e.to_string());
    let mut deepest: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        deepest = Some(cause);
        next = cause.source();
    }
    match deepest.map(|c| first_line(&c.to_string())) {
        Some(cause) if !cause.is_empty() && !outer.contains(&cause) => {
            first_line(&format!("{outer}: {cause}"))
        }
        _ => outer,
    }
}

/// First line of a message, bounded, for one-line errors.
pub(crate) fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default().trim();
    line.chars().take(300).collect()
}
