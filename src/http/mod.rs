//! The HTTP layer every client here shares (registries, Helm repositories, ARM): the
//! client factory ([`client`]), bounded reads of what untrusted servers send ([`body`]),
//! and one retry policy with `Retry-After` ([`retry`]). It knows nothing about
//! registries, Helm or Azure.

pub mod body;
pub mod client;
pub mod retry;

pub use body::{
    CappedReadError, bounded_header, describe_reqwest_error, human_bytes, one_line, read_capped,
    read_up_to,
};
pub use client::{ClientError, http_client, system_ca_bundle};
pub use retry::{RetryPolicy, Retryable, Step, parse_retry_after, retry_after_header, with_retry};
