//! Runtime knobs: set from the command line at start, changed by `POST /_emulator/config`.

use crate::federation::FederatedCredential;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The current knobs (JSON field names are camelCase; durations are `"5m"` strings on
/// output and strings or seconds on input).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Lifetime of a listCredential answer.
    #[serde(with = "crate::duration::serde_text")]
    pub credential_ttl: Duration,
    /// Lifetime of a registry access token.
    #[serde(with = "crate::duration::serde_text")]
    pub registry_token_ttl: Duration,
    /// Lifetime of an Entra access token.
    #[serde(with = "crate::duration::serde_text")]
    pub entra_token_ttl: Duration,
    /// Every Nth ARM call is throttled (429); 0 = never. Setting it restarts the count.
    pub arm_throttle_every: u64,
    /// Fraction (0..=1) of ARM calls that fail with 500/503, evenly spread. Setting it
    /// restarts the sequence.
    pub arm_error_rate: f64,
    /// Polls of an updateState operation that answer 202 before it completes (0 = sync 200).
    pub update_state_polls: u32,
    /// Whether listCredential's `acrServerUrl` carries the `https://` scheme (real AOSM
    /// answers sometimes omit it).
    pub acr_server_url_scheme: bool,
    /// Whether listCredential answers `"repositories": [""]`, as every official example
    /// does, instead of the repositories the token grants (the grant is the same).
    pub credential_repositories_blank: bool,
    /// Client ids whose ARM calls are refused with 403 AuthorizationFailed.
    pub deny_clients: Vec<String>,
    /// Resource id prefixes (case-insensitive) under which every ARM call is refused with
    /// 403 AuthorizationFailed.
    pub deny_scopes: Vec<String>,
    /// The app's federated identity credentials: a workload identity assertion is
    /// exchanged only when one names its issuer, subject and audience, and its signature
    /// verifies against the issuer's OpenID discovery keys ([`crate::federation`]).
    pub federated_credentials: Vec<FederatedCredential>,
    /// PEM bundle trusted, besides nothing else, for the issuers' HTTPS endpoints (e.g. a
    /// test cluster's CA); `None`: the issuers are unreachable.
    pub oidc_ca_file: Option<String>,
    /// Most descriptors on one page of the registry front's referrers API (1..=10000);
    /// more are announced with a `Link` to the next page.
    pub referrers_page_size: u32,
}

/// Default of [`RuntimeConfig::referrers_page_size`].
pub const DEFAULT_REFERRERS_PAGE_SIZE: u32 = 1000;

/// Largest [`RuntimeConfig::referrers_page_size`].
pub const MAX_REFERRERS_PAGE_SIZE: u32 = 10_000;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            credential_ttl: Duration::from_secs(3600),
            registry_token_ttl: Duration::from_secs(300),
            entra_token_ttl: Duration::from_secs(3600),
            arm_throttle_every: 0,
            arm_error_rate: 0.0,
            update_state_polls: 1,
            acr_server_url_scheme: true,
            credential_repositories_blank: false,
            deny_clients: Vec::new(),
            deny_scopes: Vec::new(),
            federated_credentials: Vec::new(),
            oidc_ca_file: None,
            referrers_page_size: DEFAULT_REFERRERS_PAGE_SIZE,
        }
    }
}

/// A partial update: absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    /// See [`RuntimeConfig::credential_ttl`].
    #[serde(default, with = "crate::duration::serde_opt_text")]
    pub credential_ttl: Option<Duration>,
    /// See [`RuntimeConfig::registry_token_ttl`].
    #[serde(default, with = "crate::duration::serde_opt_text")]
    pub registry_token_ttl: Option<Duration>,
    /// See [`RuntimeConfig::entra_token_ttl`].
    #[serde(default, with = "crate::duration::serde_opt_text")]
    pub entra_token_ttl: Option<Duration>,
    /// See [`RuntimeConfig::arm_throttle_every`].
    pub arm_throttle_every: Option<u64>,
    /// See [`RuntimeConfig::arm_error_rate`].
    pub arm_error_rate: Option<f64>,
    /// See [`RuntimeConfig::update_state_polls`].
    pub update_state_polls: Option<u32>,
    /// See [`RuntimeConfig::acr_server_url_scheme`].
    pub acr_server_url_scheme: Option<bool>,
    /// See [`RuntimeConfig::credential_repositories_blank`].
    pub credential_repositories_blank: Option<bool>,
    /// See [`RuntimeConfig::deny_clients`].
    pub deny_clients: Option<Vec<String>>,
    /// See [`RuntimeConfig::deny_scopes`].
    pub deny_scopes: Option<Vec<String>>,
    /// See [`RuntimeConfig::federated_credentials`].
    pub federated_credentials: Option<Vec<FederatedCredential>>,
    /// See [`RuntimeConfig::oidc_ca_file`].
    pub oidc_ca_file: Option<String>,
    /// See [`RuntimeConfig::referrers_page_size`].
    pub referrers_page_size: Option<u32>,
}

/// Which fault sequences a patch restarts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restarts {
    /// The throttle count restarts.
    pub throttle: bool,
    /// The error sequence restarts.
    pub errors: bool,
}

impl RuntimeConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.arm_error_rate) || self.arm_error_rate.is_nan() {
            return Err(format!(
                "armErrorRate must be within 0..=1, got {}",
                self.arm_error_rate
            ));
        }
        if !(1..=MAX_REFERRERS_PAGE_SIZE).contains(&self.referrers_page_size) {
            return Err(format!(
                "referrersPageSize must be within 1..={MAX_REFERRERS_PAGE_SIZE}, got {}",
                self.referrers_page_size
            ));
        }
        Ok(())
    }

    /// Applies `patch` (all or nothing) and says which fault sequences restart.
    pub fn apply(&mut self, patch: ConfigPatch) -> Result<Restarts, String> {
        let mut next = self.clone();
        let restarts = Restarts {
            throttle: patch.arm_throttle_every.is_some(),
            errors: patch.arm_error_rate.is_some(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = patch.$f { next.$f = v; } )* };
        }
        set!(
            credential_ttl,
            registry_token_ttl,
            entra_token_ttl,
            arm_throttle_every,
            arm_error_rate,
            update_state_polls,
            acr_server_url_scheme,
            credential_repositories_blank,
            deny_clients,
            deny_scopes,
            federated_credentials,
            referrers_page_size
        );
        if let Some(ca) = patch.oidc_ca_file {
            next.oidc_ca_file = (!ca.is_empty()).then_some(ca);
        }
        next.validate()?;
        *self = next;
        Ok(restarts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_changes_only_given_fields() {
        let mut c = RuntimeConfig::default();
        let patch: ConfigPatch = serde_json::from_str(
            r#"{"credentialTtl":"5s","armThrottleEvery":3,"registryTokenTtl":2}"#,
        )
        .unwrap();
        let r = c.apply(patch).unwrap();
        assert_eq!(c.credential_ttl, Duration::from_secs(5));
        assert_eq!(c.registry_token_ttl, Duration::from_secs(2));
        assert_eq!(c.arm_throttle_every, 3);
        assert_eq!(c.update_state_polls, 1);
        assert_eq!(
            r,
            Restarts {
                throttle: true,
                errors: false
            }
        );
        let out = serde_json::to_value(&c).unwrap();
        assert_eq!(out["credentialTtl"], "5s");
    }

    #[test]
    fn bad_patches_are_refused_whole() {
        let mut c = RuntimeConfig::default();
        let patch: ConfigPatch =
            serde_json::from_str(r#"{"armErrorRate":2,"armThrottleEvery":3}"#).unwrap();
        assert!(c.apply(patch).is_err());
        assert_eq!(c, RuntimeConfig::default());
        assert!(serde_json::from_str::<ConfigPatch>(r#"{"nope":1}"#).is_err());
        let zero_page: ConfigPatch = serde_json::from_str(r#"{"referrersPageSize":0}"#).unwrap();
        assert!(c.apply(zero_page).is_err());
        let page: ConfigPatch = serde_json::from_str(r#"{"referrersPageSize":2}"#).unwrap();
        c.apply(page).unwrap();
        assert_eq!(c.referrers_page_size, 2);
    }
}
