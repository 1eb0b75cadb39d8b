//! aosm-artifact-operator: moves OCI artifacts (container images, Helm charts, files)
//! between registries and Azure Operator Service Manager artifact stores.
//!
//! - [`api`]: the Kubernetes API types (CRDs) and their condition helpers.
//! - [`engine`]: the transfer engine (data plane), independent of Kubernetes.
//! - [`aosm`]: the AOSM client (ARM, Entra ID tokens, scoped registry credentials).
//! - [`limits`]: every hard limit on untrusted input (sizes, counts, times), in one place.

pub mod aosm;
pub mod api;
pub mod controller;
pub mod engine;
pub mod limits;
pub mod slots;
pub mod transfer;
