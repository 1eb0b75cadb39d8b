//! aosm-artifact-operator: moves OCI artifacts (container images, Helm charts, files)
//! between registries and Azure Operator Service Manager artifact stores.
//!
//! Layers, each depending only on those listed before it:
//! - [`limits`]: every hard limit on untrusted input (sizes, counts, times), in one place;
//!   [`slots`]: the bounded caches the transfer core keeps; [`http`]: the HTTP layer
//!   (client factory, bounded reads, one retry policy) every client shares.
//! - [`api`]: the Kubernetes API types (CRDs), their one [`api::Reason`] vocabulary,
//!   condition helpers and validation by the CRDs' own schema.
//! - [`engine`]: the transfer engine (data plane: registries, Helm repositories, files),
//!   independent of Kubernetes and AOSM.
//! - [`aosm`]: the AOSM client (ARM, Entra ID tokens, `listCredential`, `updateState`).
//! - [`transfer`]: the transfer core: resolves an `ArtifactTransfer` into a request, checks
//!   it against the AOSM manifest, shares scoped credentials, drives the engine.
//! - [`controller`]: the Kubernetes controller (reconcilers, manager, metrics, health),
//!   a thin adapter around the transfer core; the CLI (`src/cli`, in the binary) is the
//!   other.

pub mod aosm;
pub mod api;
pub mod controller;
pub mod engine;
pub mod http;
pub mod limits;
pub mod slots;
pub mod transfer;
