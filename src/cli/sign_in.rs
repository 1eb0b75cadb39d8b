//! Azure sign-in for the `store` commands: the chain a user of `az` expects, in this order
//! — a client secret in the environment (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET`), workload identity (`AZURE_FEDERATED_TOKEN_FILE`), a managed
//! identity (when the machine announces one: `IDENTITY_ENDPOINT` or `MSI_ENDPOINT`;
//! `--sign-in managed-identity` asks IMDS directly), then the Azure CLI's own sign-in
//! (`az account get-access-token`). The first source that is configured is used; when
//! none gives a token, the error says which were tried and how to sign in.

use aosm_artifact_operator::aosm::Identity;
use aosm_artifact_operator::engine::Secret;

use super::args::SignInArg;

/// How to sign in when nothing is configured.
pub const HOW_TO_SIGN_IN: &str =
    "sign in with `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET";

/// The chosen identity, and what was passed over to reach it (for error messages).
#[derive(Debug)]
pub struct SignIn {
    /// The identity to use.
    pub identity: Identity,
    /// Sources tried before it, each with why it was not used.
    pub passed_over: Vec<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The identity `choice` names, or the first configured one of the chain.
pub fn sign_in(choice: Option<SignInArg>, subscription: &str) -> Result<SignIn, String> {
    let client_secret = || {
        match (
        var("AZURE_TENANT_ID"),
        var("AZURE_CLIENT_ID"),
        var("AZURE_CLIENT_SECRET"),
    ) {
        (Some(tenant_id), Some(client_id), Some(secret)) => Ok(Identity::ClientSecret {
            tenant_id,
            client_id,
            client_secret: Secret::new(secret),
        }),
        _ => Err("environment client secret: AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are not all set".to_string()),
    }
    };
    let workload = || match var("AZURE_FEDERATED_TOKEN_FILE") {
        Some(_) => Ok(Identity::WorkloadIdentity {
            client_id: None,
            tenant_id: None,
        }),
        None => Err("workload identity: AZURE_FEDERATED_TOKEN_FILE is not set".to_string()),
    };
    let managed = |asked: bool| {
        if asked || var("IDENTITY_ENDPOINT").is_some() || var("MSI_ENDPOINT").is_some() {
            Ok(Identity::ManagedIdentity {
                client_id: var("AZURE_CLIENT_ID"),
            })
        } else {
            Err("managed identity: IDENTITY_ENDPOINT / MSI_ENDPOINT are not set (IMDS is asked only with --sign-in managed-identity)".to_string())
        }
    };
    let cli = || Identity::AzureCli {
        tenant_id: var("AZURE_TENANT_ID"),
        subscription: Some(subscription.to_string()),
    };
    let one = |identity: Result<Identity, String>| {
        identity
            .map(|identity| SignIn {
                identity,
                passed_over: Vec::new(),
            })
            .map_err(|why| format!("--sign-in: {why}"))
    };
    match choice {
        Some(SignInArg::ClientSecret) => one(client_secret()),
        Some(SignInArg::WorkloadIdentity) => one(workload()),
        Some(SignInArg::ManagedIdentity) => one(managed(true)),
        Some(SignInArg::AzureCli) => one(Ok(cli())),
        None => {
            let mut passed_over = Vec::new();
            for source in [client_secret(), workload(), managed(false)] {
                match source {
                    Ok(identity) => {
                        return Ok(SignIn {
                            identity,
                            passed_over,
                        });
                    }
                    Err(why) => passed_over.push(why),
                }
            }
            Ok(SignIn {
                identity: cli(),
                passed_over,
            })
        }
    }
}

/// The message of a sign-in failure: what was tried, why each was passed over, and how
/// to sign in.
pub fn explain(sign_in: &SignIn, error: &str) -> String {
    let mut tried = sign_in.passed_over.clone();
    tried.push(format!("{}: {error}", sign_in.identity.describe()));
    format!(
        "cannot sign in to Azure; tried {}; {HOW_TO_SIGN_IN}",
        tried.join("; ")
    )
}
