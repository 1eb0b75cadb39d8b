//! Counters served by `GET /_emulator/stats`.

use serde::Serialize;
use std::collections::BTreeMap;

/// Tokens issued, by issuer.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensIssued {
    /// Entra tokens for a client secret.
    pub entra_client_secret: u64,
    /// Entra tokens for a client assertion (workload identity).
    pub entra_client_assertion: u64,
    /// Tokens from the managed identity endpoint.
    pub managed_identity: u64,
    /// All Entra tokens (the three above).
    pub entra: u64,
    /// Registry (ACR) access tokens.
    pub acr: u64,
}

/// All counters.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// ARM requests received (including throttled and failed ones and operation polls).
    pub arm_calls: u64,
    /// ARM requests answered 429 by the throttle knob.
    pub arm_throttled: u64,
    /// ARM requests answered 500/503 by the error knob.
    pub arm_errors: u64,
    /// ARM requests refused for a missing or bad token (401) or missing permission (403).
    pub arm_auth_failures: u64,
    /// Successful listCredential calls per `<store>/<manifest>`.
    pub list_credential: BTreeMap<String, u64>,
    /// Sum of `listCredential`.
    pub list_credential_total: u64,
    /// Accepted updateState calls per `<store>/<manifest>`.
    pub update_state: BTreeMap<String, u64>,
    /// Tokens issued.
    pub tokens_issued: TokensIssued,
    /// Registry tokens issued per `<store>/<manifest>`.
    pub acr_tokens: BTreeMap<String, u64>,
    /// Registry token requests refused (unknown, expired or revoked credential).
    pub acr_token_refusals: u64,
    /// Entra token requests refused.
    pub entra_refusals: u64,
    /// What the ACR front and its storage origin did.
    pub acr_front: AcrFrontStats,
}

/// Counters of the ACR front (`acr_front`).
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcrFrontStats {
    /// Requests refused with 413 for a body above the limit.
    pub too_large: u64,
    /// Blob GETs answered with a 307 redirect to the storage origin.
    pub blob_redirects: u64,
    /// Blob reads the storage origin served (200 or 206).
    pub storage_gets: u64,
    /// Storage requests refused because they carried an `Authorization` header.
    pub storage_refused_authorization: u64,
    /// Storage requests refused for a missing, expired or mismatched signature.
    pub storage_refused_signature: u64,
    /// Referrers API requests answered with an index (200).
    pub referrers: u64,
    /// Referrers API requests answered with the registry's refusal (401/403).
    pub referrers_refused: u64,
    /// Manifest PUTs answered with `OCI-Subject` (stored manifests with a subject).
    pub subject_manifests: u64,
}

/// Which kind of Entra token was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntraGrant {
    /// client_credentials with client_secret.
    ClientSecret,
    /// client_credentials with client_assertion.
    ClientAssertion,
    /// Managed identity endpoint.
    ManagedIdentity,
}

impl Stats {
    /// Counts an Entra token.
    pub fn entra_token(&mut self, grant: EntraGrant) {
        let t = &mut self.tokens_issued;
        match grant {
            EntraGrant::ClientSecret => t.entra_client_secret += 1,
            EntraGrant::ClientAssertion => t.entra_client_assertion += 1,
            EntraGrant::ManagedIdentity => t.managed_identity += 1,
        }
        t.entra += 1;
    }

    /// Counts a listCredential for `key` (`<store>/<manifest>`).
    pub fn list_credential(&mut self, key: String) {
        *self.list_credential.entry(key).or_default() += 1;
        self.list_credential_total += 1;
    }

    /// Counts a registry token for `key`.
    pub fn acr_token(&mut self, key: String) {
        *self.acr_tokens.entry(key).or_default() += 1;
        self.tokens_issued.acr += 1;
    }
}
