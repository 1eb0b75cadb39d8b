//! Command-line arguments (flag names follow oras).

use std::path::PathBuf;

use aosm_artifact_operator::limits::DEFAULT_MAX_CONCURRENT_PER_NAMESPACE;
use aosm_artifact_operator::transfer::TenantPolicy;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Move container images, Helm charts and other OCI artifacts between registries and
/// Azure Operator Service Manager artifact stores.
#[derive(Parser, Debug)]
#[command(name = "aosm-artifact-operator", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Kubernetes controller (in a cluster, or out of cluster with a kubeconfig).
    Run(RunArgs),
    /// Copy an image, index or artifact from one registry to another (or a Helm chart from
    /// an HTTP chart repository), byte-exact.
    Copy(CopyArgs),
    /// Push local files as one OCI artifact (one layer per file, like `oras push`).
    Push(PushArgs),
    /// Pull an artifact's files into a directory (like `oras pull`): one file per layer,
    /// named by its `org.opencontainers.image.title`, digest-checked.
    Pull(PullArgs),
    /// Print the CustomResourceDefinitions (ArtifactStore, ArtifactTransfer,
    /// ClusterArtifactStore) as multi-document YAML, e.g. `crds | kubectl apply -f -`.
    Crds,
    /// Run ArtifactTransfers from a YAML file exactly as the controller does, with the
    /// stores, Secrets, ConfigMaps and Namespaces they need given beside them.
    Transfer(TransferArgs),
    /// The AOSM routine at a terminal: login, push, pull, list, seal an artifact store's
    /// manifest, signed in as `az` users are.
    Store(StoreArgs),
}

/// How `transfer` prints statuses.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum StatusFormat {
    /// The transfers with their status, as YAML documents.
    #[default]
    Yaml,
    /// The transfers with their status, as a JSON list.
    Json,
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// Multi-document YAML with ArtifactTransfer(s) and the ArtifactStore /
    /// ClusterArtifactStore, Secret, ConfigMap and Namespace objects they reference
    /// (`-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Output format of the statuses.
    #[arg(long, short = 'o', value_enum, default_value_t = StatusFormat::Yaml)]
    pub output: StatusFormat,
    /// Namespace of the controller: where ClusterArtifactStore Secrets live.
    #[arg(long, env = "POD_NAMESPACE", default_value = "aosm-system")]
    pub namespace: String,
    /// Blobs in flight at once per transfer.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// After every transfer succeeded, set each artifact manifest pushed to to `Uploaded`
    /// (AOSM's updateState; the manifest then accepts no more pushes).
    #[arg(long)]
    pub mark_uploaded: bool,
    #[command(flatten)]
    pub tenancy: TenancyFlags,
}

/// What namespaced ArtifactStores (tenants' objects) may do; the same flags for `run` and
/// `transfer -f`, so both behave alike. ClusterArtifactStores are not restricted.
#[derive(Args, Debug, Default, Clone)]
pub struct TenancyFlags {
    /// Let namespaced ArtifactStores authenticate as the controller's own Azure identity
    /// (workload identity without a ServiceAccount of their own, or managed identity).
    /// Off: only ClusterArtifactStores use it, and a namespaced store must bring its own
    /// credential (identity.serviceAccountName or a ClientSecret).
    #[arg(long)]
    pub namespaced_store_ambient_identity: bool,

    /// Hosts (`host` for any port, or `host:port`) that namespaced ArtifactStores may name
    /// in armEndpoint / authorityHost; comma-separated or repeated. Default: none (a
    /// namespaced store uses its cloud's own endpoints).
    #[arg(long, value_name = "HOST[:PORT],...", value_delimiter = ',')]
    pub namespaced_store_endpoint_hosts: Vec<String>,
}

impl TenancyFlags {
    /// The policy these flags describe; a malformed host is a usage error.
    pub fn policy(&self) -> Result<TenantPolicy, String> {
        Ok(TenantPolicy {
            ambient_identity: self.namespaced_store_ambient_identity,
            endpoint_hosts: TenantPolicy::parse_endpoint_hosts(
                &self.namespaced_store_endpoint_hosts,
            )
            .map_err(|e| format!("--namespaced-store-endpoint-hosts: {e}"))?,
        })
    }
}

/// How to print the result.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object on stdout.
    Json,
}

/// Connection settings of one side.
#[derive(Debug, Default, Clone)]
pub struct SideArgs {
    pub username: Option<String>,
    pub password: Option<String>,
    pub plain_http: bool,
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source registry user name.
    #[arg(long)]
    pub from_username: Option<String>,
    /// Source registry password or token (or env AOSM_FROM_PASSWORD).
    #[arg(long, env = "AOSM_FROM_PASSWORD", hide_env_values = true)]
    pub from_password: Option<String>,
    /// Talk plain HTTP to the source.
    #[arg(long)]
    pub from_plain_http: bool,
    /// Skip TLS verification of the source.
    #[arg(long)]
    pub from_insecure: bool,
    /// Extra CA bundle (PEM) to trust for the source.
    #[arg(long, value_name = "FILE")]
    pub from_ca_file: Option<PathBuf>,
    /// Copy a chart from this Helm HTTP repository; SRC is then CHART:VERSION.
    #[arg(long, value_name = "URL")]
    pub from_helm_repo: Option<String>,
    #[command(flatten)]
    pub to_flags: ToFlags,
    /// Docker config.json with registry credentials (default ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Copy only these platforms of a multi-arch index (os/arch[/variant]); repeatable.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Vec<String>,
    /// Also copy the referrers (signatures, SBOMs, attestations) of the artifact and of
    /// each manifest of an index, recursively, into the destination repository, before
    /// the tag is written.
    #[arg(short = 'r', long, conflicts_with = "from_helm_repo")]
    pub recursive: bool,
    /// With -r: copy only the referrers of this artifact type (their own referrers, such
    /// as a signature of an SBOM, still come along).
    #[arg(long, value_name = "TYPE", requires = "recursive")]
    pub artifact_type: Option<String>,
    /// Blobs in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Largest upload request body in bytes. Default: one request per blob, or 16 MiB
    /// chunks for ACR (which refuses requests above ~20 MB) and after a 413 answer.
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Source reference (HOST/REPO[:TAG][@DIGEST]), or CHART:VERSION with --from-helm-repo.
    pub src: String,
    /// Destination reference (HOST/REPO[:TAG]); without a tag the source's tag is used.
    pub dst: String,
    #[arg(skip)]
    pub from: SideArgs,
    #[arg(skip)]
    pub to: SideArgs,
}

/// Connection flags of the destination side.
#[derive(Args, Debug, Default)]
pub struct ToFlags {
    /// Destination registry user name.
    #[arg(long)]
    pub to_username: Option<String>,
    /// Destination registry password or token (or env AOSM_TO_PASSWORD).
    #[arg(long, env = "AOSM_TO_PASSWORD", hide_env_values = true)]
    pub to_password: Option<String>,
    /// Talk plain HTTP to the destination.
    #[arg(long)]
    pub to_plain_http: bool,
    /// Skip TLS verification of the destination.
    #[arg(long)]
    pub to_insecure: bool,
    /// Extra CA bundle (PEM) to trust for the destination.
    #[arg(long, value_name = "FILE")]
    pub to_ca_file: Option<PathBuf>,
}

impl ToFlags {
    fn side(&self) -> SideArgs {
        SideArgs {
            username: self.to_username.clone(),
            password: self.to_password.clone(),
            plain_http: self.to_plain_http,
            insecure: self.to_insecure,
            ca_file: self.to_ca_file.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    pub to_flags: ToFlags,
    /// Docker config.json with registry credentials (default ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// The artifact's `artifactType`.
    #[arg(long, value_name = "TYPE")]
    pub artifact_type: Option<String>,
    /// Blobs in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Largest upload request body in bytes (default as for `copy`).
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Destination reference (HOST/REPO[:TAG]; default tag `latest`).
    pub dst: String,
    /// Files to push, each FILE or FILE:MEDIATYPE.
    #[arg(required = true, value_name = "FILE[:MEDIATYPE]")]
    pub files: Vec<String>,
    #[arg(skip)]
    pub to: SideArgs,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Registry user name.
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Registry password or token (or env AOSM_PASSWORD).
    #[arg(long, short = 'p', env = "AOSM_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Talk plain HTTP to the registry.
    #[arg(long)]
    pub plain_http: bool,
    /// Skip TLS verification.
    #[arg(long)]
    pub insecure: bool,
    /// Extra CA bundle (PEM) to trust.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Docker config.json with registry credentials (default ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Directory to write the files into (created if missing).
    #[arg(long, short = 'o', value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
    /// Replace files that already exist in DIR.
    #[arg(long)]
    pub overwrite: bool,
    /// Output format of the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// The artifact (HOST/REPO[:TAG][@DIGEST]; default tag `latest`).
    pub src: String,
}

impl PullArgs {
    /// The connection settings of the registry.
    pub fn side(&self) -> SideArgs {
        SideArgs {
            username: self.username.clone(),
            password: self.password.clone(),
            plain_http: self.plain_http,
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
        }
    }
}

impl CopyArgs {
    /// Fills the per-side settings from the flags.
    pub fn resolve(mut self) -> Self {
        self.from = SideArgs {
            username: self.from_username.clone(),
            password: self.from_password.clone(),
            plain_http: self.from_plain_http,
            insecure: self.from_insecure,
            ca_file: self.from_ca_file.clone(),
        };
        self.to = self.to_flags.side();
        self
    }
}

impl PushArgs {
    /// Fills the per-side settings from the flags.
    pub fn resolve(mut self) -> Self {
        self.to = self.to_flags.side();
        self
    }
}

/// Log line format of `run`.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The controller's own namespace: where ClusterArtifactStore identity Secrets and the
    /// leader-election Lease live. Default: $POD_NAMESPACE, else aosm-system.
    #[arg(long, env = "POD_NAMESPACE", default_value = "aosm-system")]
    pub namespace: String,

    /// Only watch ArtifactTransfers and ArtifactStores in this namespace (default: all).
    #[arg(long, value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Only reconcile ArtifactTransfers matching this label selector, e.g.
    /// `shard=a` (to split transfers across controller instances).
    #[arg(long, value_name = "SELECTOR")]
    pub watch_label_selector: Option<String>,

    /// Transfers reconciled at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// Blobs in flight per transfer.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub blob_concurrency: u16,

    /// Transfers of one namespace running at the same time, so one namespace cannot hold
    /// every worker (--concurrency); the others wait their turn.
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_PER_NAMESPACE as u16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_concurrent_per_namespace: u16,

    #[command(flatten)]
    pub tenancy: TenancyFlags,

    /// Compete for a Lease and reconcile only while holding it (for replicas > 1).
    #[arg(long)]
    pub leader_elect: bool,

    /// Name of the leader-election Lease (in --namespace).
    #[arg(long, default_value = "aosm-artifact-operator")]
    pub lease_name: String,

    /// Seconds a lease stays valid without renewal; a standby takes over after it.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_duration: u64,

    /// Address of the Prometheus metrics server (`/metrics`); empty disables it.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,

    /// Address of the health server (`/healthz`, `/readyz`); empty disables it.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_addr: String,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Seconds between progress writes to a running transfer's status.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600), hide = true)]
    pub progress_interval: u64,
}

/// `store`: the manual AOSM routine, one command per step.
#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// listCredential, then write the ACR credential into the docker config that oras,
    /// helm and docker read.
    Login(StoreLoginArgs),
    /// Push files (as `oras push`), or copy an image or chart, into the store, once the
    /// manifest lists the artifact.
    Push(StorePushArgs),
    /// Pull an artifact into files (`-o DIR`, as `oras pull`; a chart as `helm pull`
    /// writes it) or copy it into a registry (`--to REF`).
    Pull(StorePullArgs),
    /// The manifest's artifacts, their type and version, the manifest state, and whether
    /// the store holds each (with its digest).
    List(StoreListArgs),
    /// Set the manifest's state to `Uploaded` (refused while a listed artifact is missing,
    /// unless --force).
    Seal(StoreSealArgs),
}

/// The Azure cloud of the store.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum CloudArg {
    /// Azure public cloud.
    #[default]
    #[value(name = "AzurePublic")]
    AzurePublic,
    /// Azure US Government.
    #[value(name = "AzureUSGovernment")]
    AzureUsGovernment,
    /// Azure operated by 21Vianet.
    #[value(name = "AzureChina")]
    AzureChina,
    /// Endpoints given with --arm-endpoint / --authority-host.
    #[value(name = "Custom")]
    Custom,
}

/// How to sign in to Azure; default: the first available of client-secret (environment),
/// workload-identity, managed-identity, azure-cli.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SignInArg {
    /// AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET.
    ClientSecret,
    /// AZURE_FEDERATED_TOKEN_FILE (with AZURE_CLIENT_ID and AZURE_TENANT_ID).
    WorkloadIdentity,
    /// The machine's managed identity (AZURE_CLIENT_ID for a user-assigned one).
    ManagedIdentity,
    /// The Azure CLI's sign-in (`az login`).
    AzureCli,
}

/// Where the store and its manifest are (named as in the ARM URL) and how to sign in.
#[derive(Args, Debug, Clone)]
pub struct StoreFlags {
    /// Subscription id.
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID")]
    pub subscription: String,
    /// Resource group of the publisher.
    #[arg(long)]
    pub resource_group: String,
    /// Publisher name.
    #[arg(long)]
    pub publisher: String,
    /// Artifact store name.
    #[arg(long)]
    pub artifact_store: String,
    /// Artifact manifest name.
    #[arg(long)]
    pub manifest: String,
    /// Azure cloud (selects the ARM endpoint and Entra authority).
    #[arg(long, value_enum, default_value_t = CloudArg::AzurePublic)]
    pub cloud: CloudArg,
    /// ARM endpoint (https), instead of the cloud's.
    #[arg(long, value_name = "URL")]
    pub arm_endpoint: Option<String>,
    /// Entra ID authority host (https), instead of the cloud's.
    #[arg(long, env = "AZURE_AUTHORITY_HOST", value_name = "URL")]
    pub authority_host: Option<String>,
    /// ARM api-version of Microsoft.HybridNetwork.
    #[arg(long, default_value = "2023-09-01", value_parser = ["2023-09-01", "2024-04-15", "2025-03-30"])]
    pub api_version: String,
    /// How to sign in (default: the first available, in this order).
    #[arg(long, value_enum)]
    pub sign_in: Option<SignInArg>,
}

/// `-o table|json` of the store commands.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum TableFormat {
    /// Human-readable.
    #[default]
    Table,
    /// One JSON object on stdout.
    Json,
}

#[derive(Args, Debug)]
pub struct StoreLoginArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    /// Docker config.json to write (default $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Also print the registry token (it is a password: keep it out of logs).
    #[arg(long)]
    pub print_password: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = TableFormat::Table)]
    pub output: TableFormat,
}

#[derive(Args, Debug)]
pub struct StoreListArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = TableFormat::Table)]
    pub output: TableFormat,
}

#[derive(Args, Debug)]
pub struct StoreSealArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    /// Seal even while a listed artifact is not in the store.
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = TableFormat::Table)]
    pub output: TableFormat,
}

#[derive(Args, Debug)]
pub struct StorePushArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    /// Copy this image or artifact (HOST/REPO[:TAG][@DIGEST]) instead of pushing files.
    #[arg(long, value_name = "REF", conflicts_with = "from_helm_repo")]
    pub from: Option<String>,
    /// Copy the chart NAME at VERSION from this Helm HTTP repository.
    #[arg(long, value_name = "URL")]
    pub from_helm_repo: Option<String>,
    /// With --from: also push the image's referrers (signatures, SBOMs, attestations),
    /// recursively, into the artifact's repository, before the version tag is written.
    #[arg(short = 'r', long, requires = "from")]
    pub recursive: bool,
    /// Talk plain HTTP to the --from registry.
    #[arg(long)]
    pub from_plain_http: bool,
    /// Skip TLS verification of the --from registry or Helm repository.
    #[arg(long)]
    pub from_insecure: bool,
    /// Docker config.json with the --from registry's credentials.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Blobs in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = TableFormat::Table)]
    pub output: TableFormat,
    /// The artifact, as the manifest lists it.
    #[arg(value_name = "NAME:VERSION")]
    pub artifact: String,
    /// Files to push, each FILE or FILE:MEDIATYPE (not with --from / --from-helm-repo).
    #[arg(value_name = "FILE[:MEDIATYPE]")]
    pub files: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StorePullArgs {
    #[command(flatten)]
    pub store: StoreFlags,
    /// Directory to write the files into (created if missing).
    #[arg(long, short = 'o', value_name = "DIR", conflicts_with = "to")]
    pub output: Option<PathBuf>,
    /// Copy into this registry reference instead (HOST/REPO[:TAG]).
    #[arg(long, value_name = "REF")]
    pub to: Option<String>,
    /// With --to: also pull the artifact's referrers (signatures, SBOMs, attestations),
    /// recursively, into the destination repository, before the tag is written.
    #[arg(short = 'r', long, requires = "to")]
    pub recursive: bool,
    /// Talk plain HTTP to the --to registry.
    #[arg(long)]
    pub to_plain_http: bool,
    /// Skip TLS verification of the --to registry.
    #[arg(long)]
    pub to_insecure: bool,
    /// Docker config.json with the --to registry's credentials.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Replace files that already exist in DIR.
    #[arg(long)]
    pub overwrite: bool,
    /// Output format of the result.
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
    /// The artifact, as the manifest lists it.
    #[arg(value_name = "NAME:VERSION")]
    pub artifact: String,
}
