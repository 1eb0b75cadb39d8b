//! The transfer core: from a resolved request to a result, used by the CLI (`transfer -f`)
//! and the controller. It knows nothing about the Kubernetes API.

pub mod arm_clients;
pub mod credential_cache;
pub mod error;
pub mod execute;
pub mod manifest_check;
pub mod policy;
pub mod request;
pub mod resolve;
pub mod status;

pub use error::{Reason, TransferError};
pub use execute::{Direction, Executor, TransferOutcome};
pub use policy::TenantPolicy;
pub use request::{
    ConfigMapSide, Destination, FileSource, HelmSource, RegistrySide, Source, StoreConfig,
    StoreSide, TransferRequest,
};
