//! aosm-artifact-operator: moves OCI artifacts (container images, Helm charts, files)
//! between registries and Azure Operator Service Manager artifact stores.
//!
//! - [`engine`]: the transfer engine (data plane), independent of Kubernetes.

pub mod engine;
