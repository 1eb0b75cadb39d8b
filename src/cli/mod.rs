//! The command line: `copy` and `push` (the engine alone), `transfer -f` (the transfer
//! core on objects from a file, [`transfer_file`]), `run` (the controller,
//! [`run_command`]) and `crds`. Thin adapters: parsing ([`args`]), output ([`output`]),
//! exit codes.

mod args;
mod output;
mod run_command;
mod sign_in;
mod store_command;
mod transfer_file;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use aosm_artifact_operator::engine::{
    self, Credentials, DockerConfigAuth, Endpoint, EngineError, ImageRef, RegistryClient,
    RegistryOptions, TransferOptions, TransferSummary,
};
use clap::Parser as _;

use args::{
    Cli, Command, CopyArgs, OutputFormat, PullArgs, PushArgs, SideArgs, StatusFormat, TransferArgs,
};

/// Runs the CLI and maps the outcome to an exit code: 0 ok, 1 transfer failed, 2 bad input.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run(args) = &cli.command {
        init_controller_tracing(args.log_format);
    } else {
        init_tracing();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run_command::start_controller(args).await,
            Command::Copy(args) => run_copy(args.resolve()).await,
            Command::Push(args) => run_push(args.resolve()).await,
            Command::Pull(args) => run_pull(args).await,
            Command::Crds => print_crds(),
            Command::Transfer(args) => run_transfer(args).await,
            Command::Store(args) => store_command::run_store(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = e.to_string().replace(['\n', '\r'], " ");
            eprintln!("error: {line}");
            ExitCode::from(if e.is_input_error() { 2 } else { 1 })
        }
    }
}

/// `transfer -f FILE`: prints every transfer with its status; fails unless all are Ready.
async fn run_transfer(args: TransferArgs) -> engine::Result<()> {
    let policy = args.tenancy.policy().map_err(EngineError::InvalidInput)?;
    let docs = transfer_file::read_documents(&args.file)?;
    let results = transfer_file::transfer_documents(
        &docs,
        &args.namespace,
        &policy,
        args.concurrency,
        args.mark_uploaded,
    )
    .await?;
    match args.output {
        StatusFormat::Json => {
            let json = serde_json::to_string_pretty(&results)
                .map_err(|e| EngineError::InvalidInput(format!("cannot encode statuses: {e}")))?;
            println!("{json}");
        }
        StatusFormat::Yaml => {
            for t in &results {
                let yaml = serde_yaml::to_string(t).map_err(|e| {
                    EngineError::InvalidInput(format!("cannot encode statuses: {e}"))
                })?;
                println!("---\n{}", yaml.trim_end());
            }
        }
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|t| {
            !t.status.as_ref().is_some_and(|s| {
                aosm_artifact_operator::api::conditions::is_true(&s.conditions, "Ready")
            })
        })
        .map(|t| {
            let reason = t
                .status
                .as_ref()
                .and_then(|s| {
                    aosm_artifact_operator::api::conditions::get_condition(&s.conditions, "Ready")
                })
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            format!(
                "{}/{} ({reason})",
                t.metadata.namespace.as_deref().unwrap_or("default"),
                t.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Failed(format!(
            "{} of {} transfers are not Ready: {}",
            failed.len(),
            results.len(),
            failed.join("; ")
        )))
    }
}

/// `crds`: all CRDs as YAML on stdout.
fn print_crds() -> engine::Result<()> {
    use std::io::Write as _;
    let yaml = aosm_artifact_operator::api::crds_yaml();
    let mut out = std::io::stdout().lock();
    out.write_all(yaml.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| EngineError::io("stdout", e))
}

/// Controller logs: info by default (`AOSM_LOG` overrides), JSON or text lines on stderr.
fn init_controller_tracing(format: args::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AOSM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        args::LogFormat::Json => builder.json().flatten_event(true).try_init(),
        args::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AOSM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves credentials: flags, else the docker config, else anonymous.
fn credentials(
    side: &SideArgs,
    registry: &str,
    config: &DockerConfigAuth,
    flag: &str,
) -> engine::Result<Credentials> {
    let name = |what: &str| {
        if flag.is_empty() {
            format!("--{what}")
        } else {
            format!("--{flag}-{what}")
        }
    };
    match (&side.username, &side.password) {
        (Some(u), Some(p)) => Ok(Credentials::basic(u.clone(), p.clone())),
        (Some(_), None) => Err(EngineError::InvalidInput(format!(
            "{} needs {} too",
            name("username"),
            name("password")
        ))),
        (None, Some(_)) => Err(EngineError::InvalidInput(format!(
            "{} needs {} too",
            name("password"),
            name("username")
        ))),
        (None, None) => Ok(config.lookup(registry).unwrap_or_default()),
    }
}

fn endpoint(
    reference: &str,
    side: &SideArgs,
    config: &DockerConfigAuth,
    flag: &str,
) -> engine::Result<Endpoint> {
    let reference = ImageRef::parse(reference)?;
    let options = RegistryOptions {
        plain_http: side.plain_http,
        insecure: side.insecure,
        ca_file: side.ca_file.clone(),
        ca_pem: None,
        credentials: credentials(side, &reference.registry, config, flag)?,
        retry: Default::default(),
    };
    Ok(Endpoint {
        client: Arc::new(RegistryClient::new(&reference.registry, &options)?),
        reference,
    })
}

fn transfer_options(
    concurrency: usize,
    chunk_size: Option<u64>,
    platforms: &[String],
) -> engine::Result<TransferOptions> {
    if concurrency == 0 {
        return Err(EngineError::InvalidInput(
            "--concurrency must be at least 1".into(),
        ));
    }
    if chunk_size.is_some_and(|c| c < 64 * 1024) {
        return Err(EngineError::InvalidInput(
            "--chunk-size must be at least 65536 bytes".into(),
        ));
    }
    let platforms = platforms
        .iter()
        .map(|p| p.parse().map_err(EngineError::InvalidInput))
        .collect::<engine::Result<Vec<_>>>()?;
    Ok(TransferOptions {
        concurrency,
        chunk_size,
        platforms,
        referrers: None,
    })
}

async fn run_copy(args: CopyArgs) -> engine::Result<()> {
    let config = DockerConfigAuth::load(args.registry_config.as_deref())?;
    let mut opts = transfer_options(args.concurrency, args.chunk_size, &args.platform)?;
    opts.referrers = args.recursive.then(|| engine::ReferrerSelection {
        artifact_type: args.artifact_type.clone(),
    });
    let dst = endpoint(&args.dst, &args.to, &config, "to")?;
    let progress = output::progress(args.output);
    let started = Instant::now();
    let summary = if let Some(repo_url) = &args.from_helm_repo {
        let (chart, version) = args
            .src
            .rsplit_once(':')
            .filter(|(c, v)| !c.is_empty() && !v.is_empty())
            .ok_or_else(|| {
                EngineError::InvalidInput(format!(
                    "with --from-helm-repo the source is CHART:VERSION, got {:?}",
                    args.src
                ))
            })?;
        let url = url::Url::parse(repo_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                EngineError::InvalidInput(format!(
                    "--from-helm-repo {repo_url:?} is not an http(s) URL"
                ))
            })?;
        let host = url.host_str().unwrap_or_default().to_string();
        let repo = engine::helm_repo::HelmRepository {
            credentials: credentials(&args.from, &host, &config, "from")?,
            url,
            ca_file: args.from.ca_file.clone(),
            ca_pem: None,
            insecure: args.from.insecure,
        };
        let fetched = repo.fetch(chart, version).await?;
        if let Some(tag) = &dst.reference.tag
            && *tag != fetched.tag
        {
            return Err(EngineError::InvalidInput(format!(
                "destination tag {tag} must equal the chart version {} (Helm finds charts by version); drop the tag",
                fetched.tag
            )));
        }
        let tag = fetched.tag.clone();
        let summary = engine::copy::publish(
            fetched.plan,
            &dst,
            Some(&tag),
            &opts,
            progress.as_ref(),
            started,
        )
        .await?;
        drop(fetched._archive);
        summary
    } else {
        let src = endpoint(&args.src, &args.from, &config, "from")?;
        engine::copy(&src, &dst, &opts, progress.as_ref()).await?
    };
    finish(args.output, &summary);
    Ok(())
}

async fn run_push(args: PushArgs) -> engine::Result<()> {
    let config = DockerConfigAuth::load(args.registry_config.as_deref())?;
    let opts = transfer_options(args.concurrency, args.chunk_size, &[])?;
    let dst = endpoint(&args.dst, &args.to, &config, "to")?;
    let files: Vec<_> = args
        .files
        .iter()
        .map(|f| engine::files::FileSpec::parse(f))
        .collect();
    let plan = engine::files::plan_files(&files, &[], args.artifact_type.as_deref()).await?;
    let progress = output::progress(args.output);
    let tag = dst
        .reference
        .tag
        .clone()
        .or_else(|| dst.reference.digest.is_none().then(|| "latest".to_string()));
    let summary = engine::copy::publish(
        plan,
        &dst,
        tag.as_deref(),
        &opts,
        progress.as_ref(),
        Instant::now(),
    )
    .await?;
    finish(args.output, &summary);
    Ok(())
}

/// `pull REF -o DIR`: the artifact's files, as `oras pull` writes them.
async fn run_pull(args: PullArgs) -> engine::Result<()> {
    let config = DockerConfigAuth::load(args.registry_config.as_deref())?;
    let src = endpoint(&args.src, &args.side(), &config, "")?;
    let progress = output::progress(args.format);
    let opts = engine::pull_files::PullOptions {
        overwrite: args.overwrite,
    };
    let summary =
        engine::pull_files::pull_files(&src, &args.output, &opts, progress.as_ref()).await?;
    match args.format {
        OutputFormat::Json => output::print_json(&summary),
        OutputFormat::Text => output::print_pulled(&summary, &args.output),
    }
    Ok(())
}

fn finish(format: OutputFormat, summary: &TransferSummary) {
    match format {
        OutputFormat::Json => output::print_json(summary),
        OutputFormat::Text => output::print_summary(summary),
    }
}
