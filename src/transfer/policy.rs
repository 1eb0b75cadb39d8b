//! What the cluster admin lets tenants' stores do.
//!
//! A namespaced `ArtifactStore` is written by a tenant; the controller holds an Azure
//! identity of its own. Without the admin's opt-in, a tenant's store may neither
//! authenticate as the controller (its workload or managed identity) nor point the
//! controller at Azure endpoints the admin has not allowed, where it would send a
//! federated token or an ARM bearer token. `ClusterArtifactStore`s are the admin's and are
//! not restricted. Checks here make no outbound request.

use super::error::{Reason, TransferError};
use crate::api::{ArtifactStoreSpec, AzureCloud};

/// The admin's rules for namespaced `ArtifactStore`s (controller flags
/// `--namespaced-store-ambient-identity` and `--namespaced-store-endpoint-hosts`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Namespaced stores may authenticate as the controller itself (workload identity
    /// without a ServiceAccount of their own, or managed identity). Default: no.
    pub ambient_identity: bool,
    /// Hosts namespaced stores may name in `armEndpoint` / `authorityHost` (and so use
    /// `cloud: Custom` with): `host` (any port) or `host:port`, lower case. Default: none.
    pub endpoint_hosts: Vec<String>,
}

impl TenantPolicy {
    /// Parses the `--namespaced-store-endpoint-hosts` entries: `host` or `host:port`, no
    /// scheme, path or user info.
    pub fn parse_endpoint_hosts(entries: &[String]) -> Result<Vec<String>, String> {
        entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                let url = url::Url::parse(&format!("https://{e}")).map_err(|err| {
                    format!("endpoint host {e:?} is not host or host:port: {err}")
                })?;
                let host = url.host_str().unwrap_or_default();
                if host.is_empty()
                    || url.path() != "/"
                    || url.query().is_some()
                    || url.fragment().is_some()
                    || !url.username().is_empty()
                    || e.contains("://")
                {
                    return Err(format!(
                        "endpoint host {e:?} must be host or host:port (no scheme, path or user)"
                    ));
                }
                Ok(match url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_string(),
                })
            })
            .collect()
    }

    fn host_allowed(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(443);
        self.endpoint_hosts
            .iter()
            .any(|h| *h == host || *h == format!("{host}:{port}"))
    }

    /// Checks a namespaced ArtifactStore `namespace/name` against the admin's rules.
    pub fn check_namespaced_store(
        &self,
        namespace: &str,
        name: &str,
        spec: &ArtifactStoreSpec,
    ) -> Result<(), TransferError> {
        if spec.identity.is_ambient() && !self.ambient_identity {
            let which = match spec.identity.type_ {
                crate::api::IdentityType::ManagedIdentity => "managed identity",
                _ => "workload identity",
            };
            return Err(TransferError::permanent(
                Reason::AmbientIdentityNotAllowed,
                format!(
                    "ArtifactStore {namespace}/{name} would authenticate as the controller's own {which}, which serves ClusterArtifactStores only; give the store its own credential (identity.serviceAccountName: a ServiceAccount in namespace {namespace} federated with an Azure identity, or identity.type ClientSecret with a Secret), or use a ClusterArtifactStore the cluster admin made"
                ),
            ));
        }
        let overrides = [
            ("armEndpoint", spec.arm_endpoint.as_deref()),
            ("authorityHost", spec.authority_host.as_deref()),
        ];
        for (field, value) in overrides {
            let Some(value) = value else { continue };
            let allowed = url::Url::parse(value).is_ok_and(|u| self.host_allowed(&u));
            if !allowed {
                return Err(TransferError::permanent(
                    Reason::EndpointNotAllowed,
                    format!(
                        "ArtifactStore {namespace}/{name} sets {field} {value}, a host the cluster admin has not allowed for namespaced stores (controller flag --namespaced-store-endpoint-hosts); remove {field}{} or ask the admin to allow the host",
                        if spec.cloud == AzureCloud::Custom {
                            " and cloud: Custom"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{IdentityType, SecretRef, StoreIdentity};

    fn spec(identity: StoreIdentity) -> ArtifactStoreSpec {
        ArtifactStoreSpec {
            subscription_id: "00000000-0000-0000-0000-000000000000".into(),
            resource_group: "rg".into(),
            publisher: "p".into(),
            artifact_store: "s".into(),
            cloud: AzureCloud::AzurePublic,
            arm_endpoint: None,
            authority_host: None,
            api_version: Default::default(),
            identity,
        }
    }

    fn own_sa() -> StoreIdentity {
        StoreIdentity {
            service_account_name: Some("publisher".into()),
            ..Default::default()
        }
    }

    #[test]
    fn ambient_identities_need_the_admins_opt_in() {
        let deny = TenantPolicy::default();
        let allow = TenantPolicy {
            ambient_identity: true,
            ..Default::default()
        };
        for identity in [
            StoreIdentity::default(),
            StoreIdentity {
                type_: IdentityType::ManagedIdentity,
                ..Default::default()
            },
        ] {
            let e = deny
                .check_namespaced_store("team-a", "s", &spec(identity.clone()))
                .unwrap_err();
            assert_eq!(e.reason, Reason::AmbientIdentityNotAllowed);
            assert!(
                e.message.contains("team-a/s") && e.message.contains("serviceAccountName"),
                "{e}"
            );
            allow
                .check_namespaced_store("team-a", "s", &spec(identity))
                .unwrap();
        }
        let client_secret = StoreIdentity {
            type_: IdentityType::ClientSecret,
            secret_ref: Some(SecretRef { name: "sp".into() }),
            ..Default::default()
        };
        for identity in [own_sa(), client_secret] {
            deny.check_namespaced_store("team-a", "s", &spec(identity))
                .unwrap();
        }
    }

    #[test]
    fn endpoint_overrides_need_an_allowed_host() {
        let policy = TenantPolicy {
            ambient_identity: false,
            endpoint_hosts: TenantPolicy::parse_endpoint_hosts(&[
                "arm.example".into(),
                "127.0.0.1:8443".into(),
            ])
            .unwrap(),
        };
        let with = |arm: Option<&str>, authority: Option<&str>| {
            let mut s = spec(own_sa());
            s.cloud = AzureCloud::Custom;
            s.arm_endpoint = arm.map(str::to_string);
            s.authority_host = authority.map(str::to_string);
            policy.check_namespaced_store("team-a", "s", &s)
        };
        with(Some("https://arm.example"), None).unwrap();
        with(
            Some("https://ARM.example:9443/x"),
            Some("https://127.0.0.1:8443"),
        )
        .unwrap();
        for (arm, authority) in [
            (Some("https://evil.example"), None),
            (Some("https://arm.example"), Some("https://127.0.0.1:9443")),
            (Some("https://127.0.0.1"), None),
            (Some("https://arm.example.evil.example"), None),
        ] {
            let e = with(arm, authority).unwrap_err();
            assert_eq!(
                e.reason,
                Reason::EndpointNotAllowed,
                "{arm:?} {authority:?}"
            );
            assert!(
                e.message.contains("--namespaced-store-endpoint-hosts"),
                "{e}"
            );
        }
        // No override: nothing to allow.
        TenantPolicy::default()
            .check_namespaced_store("team-a", "s", &spec(own_sa()))
            .unwrap();
    }

    #[test]
    fn endpoint_host_entries_are_validated() {
        assert_eq!(
            TenantPolicy::parse_endpoint_hosts(&[" Login.Example ".into(), "[::1]:8443".into()])
                .unwrap(),
            vec!["login.example".to_string(), "[::1]:8443".to_string()]
        );
        for bad in ["https://x", "x/path", "user@x", "x?q", ""] {
            if bad.is_empty() {
                assert!(
                    TenantPolicy::parse_endpoint_hosts(&[bad.into()])
                        .unwrap()
                        .is_empty()
                );
                continue;
            }
            assert!(
                TenantPolicy::parse_endpoint_hosts(&[bad.into()]).is_err(),
                "{bad} must be refused"
            );
        }
    }
}
