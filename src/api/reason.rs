//! [`Reason`]: the one vocabulary of why an object is where it is. It is the `reason` of
//! every condition and event the controller writes, the reason of every transfer error,
//! and the `reason` label of the failure metrics; part of the API's contract, so it lives
//! here. Whether a reason is permanent (Stalled) or transient (retried) is said once, in
//! the table below.

use std::fmt;
use std::str::FromStr;

/// What a reason means for the object's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nature {
    /// The work is done (Ready=True).
    Done,
    /// Work is in progress (Reconciling=True).
    InProgress,
    /// The user asked the controller to do nothing (Ready=False, neither Reconciling nor
    /// Stalled).
    Suspended,
    /// A failure a retry may cure (network, 5xx, 429, throttling, token expiry): retried with
    /// backoff, shown as [`Reason::ProgressingWithRetry`].
    Transient,
    /// A failure only a change of the spec, or of something it references, can cure:
    /// Stalled=True.
    Permanent,
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident => $nature:ident, )+) => {
        /// Why an object is in its state: the CamelCase `reason` of conditions and events
        /// (as `metav1.Condition` requires) and of transfer errors.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$variant,)+];

            /// The name written in conditions, events and metrics labels.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Reason::$variant => stringify!($variant), )+
                }
            }

            /// Whether it is done, in progress, suspended, transient or permanent.
            pub fn nature(self) -> Nature {
                match self {
                    $( Reason::$variant => Nature::$nature, )+
                }
            }
        }
    };
}

reasons! {
    /// Ready=True: the destination holds the artifact's digest for the observed generation
    /// (or, for a store: ARM answered and the store is ACR-backed).
    Succeeded => Done,
    /// Reconciling: the first attempt (or a re-run) is in progress.
    Progressing => InProgress,
    /// Reconciling: a transient failure happened; retrying with backoff.
    ProgressingWithRetry => InProgress,
    /// Ready=False (no Stalled): `spec.suspend` is true.
    Suspended => Suspended,
    /// A transient failure (network, 5xx, 429, throttling, token expiry); retried with
    /// backoff. Conditions show it as [`Reason::ProgressingWithRetry`]; errors and the
    /// failure metric carry this name.
    TransientFailure => Transient,
    /// The (artifact, version) is not listed in the AOSM artifact manifest, or its
    /// artifactType does not fit the source.
    ArtifactNotInManifest => Permanent,
    /// A version is not in the `1.2.3` format ACR/AOSM requires.
    VersionFormat => Permanent,
    /// A Helm chart's name or version differs from the artifact name or version.
    ChartNameMismatch => Permanent,
    /// A Secret (or a key in it) named by the spec or the store does not exist.
    SecretNotFound => Permanent,
    /// A ConfigMap (or a key in it) named by the spec does not exist.
    ConfigMapNotFound => Permanent,
    /// The ConfigMap named by `destination.configMap` exists and is not controlled by this
    /// transfer (a user's own, or another transfer's): it is never overwritten. Delete it
    /// or name another.
    ConfigMapConflict => Permanent,
    /// The artifact cannot go into a ConfigMap: it is not one layer of at most 1 MiB.
    NotASingleFile => Permanent,
    /// The store does not exist, or a ClusterArtifactStore's `allowedNamespaces` does not
    /// select the transfer's namespace.
    StoreNotAllowed => Permanent,
    /// A namespaced ArtifactStore would authenticate as the controller itself (its
    /// workload or managed identity); the cluster admin has not allowed that
    /// (`--namespaced-store-ambient-identity`). Give the store its own credential.
    AmbientIdentityNotAllowed => Permanent,
    /// A namespaced ArtifactStore overrides an Azure endpoint (`armEndpoint`,
    /// `authorityHost`, `cloud: Custom`) on a host the cluster admin has not allowed
    /// (`--namespaced-store-endpoint-hosts`).
    EndpointNotAllowed => Permanent,
    /// The ServiceAccount named by `identity.serviceAccountName` does not exist in the
    /// store's namespace, or has no `azure.workload.identity/client-id` annotation.
    ServiceAccountNotFound => Permanent,
    /// ARM, Entra ID or the registry refused the identity (401/403): a missing role
    /// assignment, scope or federated credential.
    Forbidden => Permanent,
    /// The source (image, chart, ConfigMap key, store artifact) does not exist.
    SourceNotFound => Permanent,
    /// The AOSM artifact store is not ACR-backed (e.g. AzureStorageAccount): not supported.
    UnsupportedStoreType => Permanent,
    /// The AOSM publisher, artifact store or artifact manifest does not exist in ARM.
    StoreNotFound => Permanent,
    /// The spec is invalid in a way the CRD schema could not catch.
    InvalidSpec => Permanent,
    /// Content failed verification (digest mismatch).
    IntegrityError => Permanent,
    /// Any other permanent failure.
    TransferFailed => Permanent,
}

impl Reason {
    /// True for the reasons that stall an object until something changes.
    pub fn is_permanent(self) -> bool {
        self.nature() == Nature::Permanent
    }

    /// True for a failure a retry may cure.
    pub fn is_transient(self) -> bool {
        self.nature() == Nature::Transient
    }

    /// The reason a condition shows: a transient failure is shown as
    /// [`Reason::ProgressingWithRetry`], everything else as itself.
    pub fn for_condition(self) -> Reason {
        if self.is_transient() {
            Reason::ProgressingWithRetry
        } else {
            self
        }
    }

    /// Permanent reasons decided inside the cluster: a Kubernetes object the user may create
    /// or fix at any time (Secrets, ConfigMaps and ServiceAccounts are read, not watched), or
    /// the admin's tenancy flags (a restart with other flags). The controller re-evaluates
    /// them with backoff, and at once after a restart; that costs `get`s, never an outbound
    /// request.
    pub fn awaits_kubernetes_object(self) -> bool {
        matches!(
            self,
            Reason::SecretNotFound
                | Reason::ConfigMapNotFound
                | Reason::ConfigMapConflict
                | Reason::StoreNotAllowed
                | Reason::ServiceAccountNotFound
                | Reason::AmbientIdentityNotAllowed
                | Reason::EndpointNotAllowed
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition reason that is not one of ours (written by someone else, or by a newer
/// controller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_camel_case() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(*r));
            assert!(
                r.as_str()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
            );
            assert!(r.as_str().chars().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_eq!(
            "Nope".parse::<Reason>(),
            Err(UnknownReason("Nope".to_string()))
        );
    }

    #[test]
    fn transient_failures_show_as_progressing_with_retry() {
        assert_eq!(
            Reason::TransientFailure.for_condition(),
            Reason::ProgressingWithRetry
        );
        assert_eq!(
            Reason::SecretNotFound.for_condition(),
            Reason::SecretNotFound
        );
        let transient: Vec<_> = Reason::ALL.iter().filter(|r| r.is_transient()).collect();
        assert_eq!(transient, [&Reason::TransientFailure]);
    }

    #[test]
    fn only_permanent_reasons_await_a_kubernetes_object() {
        for r in Reason::ALL {
            if r.awaits_kubernetes_object() {
                assert!(r.is_permanent(), "{r}");
            }
        }
        assert_eq!(
            Reason::ALL
                .iter()
                .filter(|r| r.awaits_kubernetes_object())
                .count(),
            7
        );
    }
}
