//! Command line of `aosm-emulator`.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default tenant (directory) id of the emulated Entra ID.
pub const DEFAULT_TENANT_ID: &str = "72f988bf-0000-4000-8000-00000000a05e";
/// Default client (application) id of the emulated service principal.
pub const DEFAULT_CLIENT_ID: &str = "a05e0000-0000-4000-8000-00000000c11e";
/// Default client id of the emulated managed identity (App Service endpoint).
pub const DEFAULT_MANAGED_IDENTITY_CLIENT_ID: &str = "a05e0000-0000-4000-8000-0000000000d1";
/// Default id of the subscription `GET /subscriptions` lists (the one the examples use).
pub const DEFAULT_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Default display name of that subscription.
pub const DEFAULT_SUBSCRIPTION_NAME: &str = "AOSM emulator";

/// Local stand-in for the Azure parts of AOSM artifact transfers: Entra ID token endpoint,
/// ARM `Microsoft.HybridNetwork`, and an ACR-style token server in front of a real
/// `docker-registry`.
#[derive(Debug, Parser)]
#[command(name = "aosm-emulator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the emulator (HTTPS listener + docker-registry) and write DIR/endpoints.json.
    Serve(Box<ServeArgs>),
}

/// Options of `aosm-emulator serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the CA, certificates, registry storage and endpoints.json (created if
    /// missing; an existing CA in it is reused).
    #[arg(long, value_name = "DIR", env = "AOSM_EMULATOR_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Address of the HTTPS listener (ARM, Entra, ACR token server); port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Extra host name (or IP) for the server certificate; the first one is used in the
    /// advertised URLs instead of 127.0.0.1 (e.g. a Kubernetes Service name).
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostnames: Vec<String>,

    /// Serve this certificate (PEM, may hold a chain) instead of one issued by the
    /// emulator's CA; also used by the registry.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA bundle clients should trust for --tls-cert (reported as caFile); default: --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// Tenant id of the emulated directory.
    #[arg(long, default_value = DEFAULT_TENANT_ID)]
    pub tenant_id: String,

    /// Client id of the emulated service principal (client secret and workload identity).
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,

    /// Client secret of the service principal; default: random per run.
    #[arg(long, env = "AOSM_EMULATOR_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,

    /// Subscription the service principal sees (`GET /subscriptions`, `az login`); ARM
    /// paths under other subscriptions are served all the same.
    #[arg(long, value_name = "ID", default_value = DEFAULT_SUBSCRIPTION_ID)]
    pub subscription_id: String,

    /// Display name of --subscription-id.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SUBSCRIPTION_NAME)]
    pub subscription_name: String,

    /// Client id of the emulated managed identity (App Service style endpoint).
    #[arg(long, default_value = DEFAULT_MANAGED_IDENTITY_CLIENT_ID)]
    pub managed_identity_client_id: String,

    /// Lifetime of a listCredential answer (its `expiry`).
    #[arg(long, value_name = "DUR", default_value = "1h", value_parser = crate::duration::parse)]
    pub credential_ttl: Duration,

    /// Lifetime of a registry (ACR) access token.
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = crate::duration::parse)]
    pub registry_token_ttl: Duration,

    /// Lifetime of an Entra access token (azure_identity refreshes 5 minutes before expiry).
    #[arg(long, value_name = "DUR", default_value = "1h", value_parser = crate::duration::parse)]
    pub entra_token_ttl: Duration,

    /// Every Nth ARM call answers 429 TooManyRequests with Retry-After: 1 (0 = never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub arm_throttle_every: u64,

    /// Fraction of ARM calls answered 500/503, spread evenly and deterministically
    /// (0.25 = every 4th call).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub arm_error_rate: f64,

    /// How many polls of an updateState operation answer 202 before it completes
    /// (0 = updateState answers 200 at once).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub update_state_polls: u32,

    /// ARM-shaped JSON to create resources from at start: a list of {id, properties, location?}
    /// (or an object with such a list under "resources" or "value").
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,

    /// The docker-registry (distribution 2.8) binary; default: docker-registry on PATH,
    /// then /usr/bin/docker-registry.
    #[arg(long, value_name = "PATH", env = "AOSM_EMULATOR_REGISTRY_BIN")]
    pub registry_bin: Option<PathBuf>,

    /// Address of the registry's public (ACR front, HTTPS) listener; port 0 picks a free
    /// port. The docker-registry itself listens on a loopback port behind it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub registry_listen: SocketAddr,

    /// Host name of the storage origin blob GETs are redirected to (listening on the
    /// registry's IP, its own port). It must differ from the registry's host name, as
    /// ACR's storage host does, and be in the certificate. Default: `localhost`, or the
    /// registry's IP when the registry is advertised as `localhost`.
    #[arg(long, value_name = "NAME")]
    pub storage_hostname: Option<String>,

    /// Do not start a registry (ARM and token endpoints only; acrServerUrl then points at
    /// the emulator itself).
    #[arg(long)]
    pub no_registry: bool,
}
