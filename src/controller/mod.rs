//! The Kubernetes controller (`aosm-artifact-operator run`): reconciles ArtifactTransfers
//! with the transfer core, checks ArtifactStores and ClusterArtifactStores, and serves
//! health probes and Prometheus metrics. A thin adapter: the work is in
//! [`crate::transfer`] and [`crate::engine`].

pub mod config_map_writer;
pub mod context;
pub mod error;
pub mod health;
pub mod inputs;
pub mod leader;
mod manager;
pub mod metrics;
pub mod progress;
pub mod status_patch;
pub mod store_reconciler;
pub mod tokens;
pub mod transfer_reconciler;

pub use error::Error;
pub use leader::LeaseTiming;
pub use manager::{Config, run_manager};
