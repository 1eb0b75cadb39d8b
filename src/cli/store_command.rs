//! `store login | push | pull | list | seal`: the manual AOSM routine (`az rest …
//! listCredential`, `oras login`, `oras push|pull`, `az rest … updateState`) as one command
//! per step, through the same transfer core as the controller. One `listCredential` per
//! command; exit codes as `copy` (2: bad input, 1: failed).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aosm_artifact_operator::aosm::{AcrCredential, AosmError, ArtifactManifest, StoreId};
use aosm_artifact_operator::api::{
    AosmApiVersion, ArtifactStoreSpec, AzureCloud, IdentityType, Reason, StoreIdentity,
};
use aosm_artifact_operator::engine::auth::default_docker_config_path;
use aosm_artifact_operator::engine::registry::Scope;
use aosm_artifact_operator::engine::{
    self, Credentials, DockerConfigAuth, EngineError, RegistryClient, RegistryOptions,
};
use aosm_artifact_operator::transfer::resolve::aosm_cloud;
use aosm_artifact_operator::transfer::{
    Destination, Executor, HelmSource, RegistrySide, Source, StoreConfig, StoreSide, TransferError,
    TransferRequest,
};
use base64::Engine as _;
use serde_json::json;

use super::args::{
    CloudArg, StoreArgs, StoreCommand, StoreFlags, StoreListArgs, StoreLoginArgs, StorePullArgs,
    StorePushArgs, StoreSealArgs, TableFormat,
};
use super::output;
use super::sign_in::{SignIn, explain, sign_in};

/// Runs one `store` command.
pub async fn run_store(args: StoreArgs) -> engine::Result<()> {
    match args.command {
        StoreCommand::Login(a) => login(a).await,
        StoreCommand::List(a) => list(a).await,
        StoreCommand::Seal(a) => seal(a).await,
        StoreCommand::Push(a) => push(a).await,
        StoreCommand::Pull(a) => pull(a).await,
    }
}

/// The store the flags name, its manifest, and how the user signed in.
struct Target {
    config: StoreConfig,
    manifest: String,
    sign_in: SignIn,
    executor: Executor,
}

fn api_cloud(c: CloudArg) -> AzureCloud {
    match c {
        CloudArg::AzurePublic => AzureCloud::AzurePublic,
        CloudArg::AzureUsGovernment => AzureCloud::AzureUsGovernment,
        CloudArg::AzureChina => AzureCloud::AzureChina,
        CloudArg::Custom => AzureCloud::Custom,
    }
}

fn api_version(v: &str) -> AosmApiVersion {
    match v {
        "2024-04-15" => AosmApiVersion::V2024_04_15,
        "2025-03-30" => AosmApiVersion::V2025_03_30,
        _ => AosmApiVersion::V2023_09_01,
    }
}

/// Checks the flags by the same schema an `ArtifactStore` has (one source of truth for
/// names and endpoints), then signs in.
fn target(flags: &StoreFlags, concurrency: usize) -> engine::Result<Target> {
    let spec = ArtifactStoreSpec {
        subscription_id: flags.subscription.clone(),
        resource_group: flags.resource_group.clone(),
        publisher: flags.publisher.clone(),
        artifact_store: flags.artifact_store.clone(),
        cloud: api_cloud(flags.cloud),
        arm_endpoint: flags.arm_endpoint.clone(),
        authority_host: flags.authority_host.clone(),
        api_version: api_version(&flags.api_version),
        // Only the address is checked here; the sign-in is the user's (below).
        identity: StoreIdentity {
            type_: IdentityType::WorkloadIdentity,
            ..Default::default()
        },
    };
    if let Err(errors) = spec.validate() {
        let text: Vec<String> = errors
            .iter()
            .map(|e| {
                let flag = match e.field.as_str() {
                    "spec.subscriptionId" => "--subscription",
                    "spec.resourceGroup" => "--resource-group",
                    "spec.publisher" => "--publisher",
                    "spec.artifactStore" => "--artifact-store",
                    "spec.armEndpoint" => "--arm-endpoint",
                    "spec.authorityHost" => "--authority-host",
                    _ => "",
                };
                format!("{flag} {}", e.message).trim().to_string()
            })
            .collect();
        return Err(EngineError::InvalidInput(text.join("; ")));
    }
    if flags.manifest.is_empty() || flags.manifest.chars().any(char::is_whitespace) {
        return Err(EngineError::InvalidInput(format!(
            "--manifest {:?} is not an artifact manifest name",
            flags.manifest
        )));
    }
    let sign_in = sign_in(flags.sign_in, &flags.subscription).map_err(EngineError::InvalidInput)?;
    let config = StoreConfig {
        id: StoreId {
            subscription_id: flags.subscription.clone(),
            resource_group: flags.resource_group.clone(),
            publisher: flags.publisher.clone(),
            artifact_store: flags.artifact_store.clone(),
        },
        cloud: aosm_cloud(spec.cloud),
        arm_endpoint: flags.arm_endpoint.clone(),
        authority_host: flags.authority_host.clone(),
        api_version: flags.api_version.clone(),
        identity: sign_in.identity.clone(),
    };
    Ok(Target {
        config,
        manifest: flags.manifest.clone(),
        sign_in,
        executor: Executor::new(concurrency).map_err(failed_plain)?,
    })
}

/// A transfer error as the CLI's: bad input (exit 2) or failed (exit 1), one line.
fn failed(target: &Target, e: TransferError) -> EngineError {
    let input = matches!(
        e.reason,
        Reason::InvalidSpec
            | Reason::VersionFormat
            | Reason::ArtifactNotInManifest
            | Reason::ChartNameMismatch
            | Reason::SourceNotFound
            | Reason::StoreNotFound
    );
    let message = if e.reason == Reason::Forbidden && e.message.contains("token") {
        explain(&target.sign_in, &e.message)
    } else {
        format!("{}: {}", e.reason, e.message)
    };
    if input {
        EngineError::InvalidInput(message)
    } else {
        EngineError::Failed(message)
    }
}

fn failed_plain(e: TransferError) -> EngineError {
    EngineError::Failed(format!("{}: {}", e.reason, e.message))
}

fn aosm_failed(target: &Target, e: AosmError) -> EngineError {
    failed(target, TransferError::from(e))
}

/// Progress on stderr: bars on a terminal, lines otherwise, nothing with `-o json`.
fn progress(format: TableFormat) -> Box<dyn engine::Progress> {
    output::progress(match format {
        TableFormat::Json => super::args::OutputFormat::Json,
        TableFormat::Table => super::args::OutputFormat::Text,
    })
}

/// `NAME:VERSION`.
fn artifact_version(arg: &str) -> engine::Result<(String, String)> {
    match arg.rsplit_once(':') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n.to_string(), v.to_string())),
        _ => Err(EngineError::InvalidInput(format!(
            "{arg:?} is not NAME:VERSION (the artifact as the manifest lists it, e.g. contoso-cnf:1.0.0)"
        ))),
    }
}

fn side(target: &Target, artifact: String, version: String) -> StoreSide {
    StoreSide {
        store: target.config.clone(),
        manifest: target.manifest.clone(),
        artifact,
        version,
    }
}

/// One listCredential for the manifest.
async fn credential(target: &Target) -> engine::Result<AcrCredential> {
    let arm = target
        .executor
        .arm(&target.config)
        .map_err(|e| failed(target, e))?;
    arm.list_credential(&target.config.id, &target.manifest)
        .await
        .map_err(|e| aosm_failed(target, e))
}

async fn login(a: StoreLoginArgs) -> engine::Result<()> {
    let target = target(&a.store, 1)?;
    let cred = credential(&target).await?;
    let path = match a
        .registry_config
        .clone()
        .or_else(default_docker_config_path)
    {
        Some(p) => p,
        None => {
            return Err(EngineError::InvalidInput(
                "no home directory: pass --registry-config FILE".into(),
            ));
        }
    };
    write_docker_auth(&path, &cred.server, &cred.username, cred.token.expose())?;
    let expiry = cred.expiry.to_string();
    match a.output {
        TableFormat::Json => {
            let mut v = json!({
                "registry": cred.server, "username": cred.username,
                "repositories": cred.repositories, "expiry": expiry,
                "registryConfig": path.display().to_string(),
            });
            if a.print_password {
                v["password"] = json!(cred.token.expose());
            }
            println!("{v}");
        }
        TableFormat::Table => {
            println!("Login Succeeded: {} (user {})", cred.server, cred.username);
            println!("  repositories: {}", cred.repositories.join(", "));
            println!("  expires:      {expiry}");
            println!("  written to:   {}", path.display());
            if a.print_password {
                println!("  password:     {}", cred.token.expose());
            }
        }
    }
    Ok(())
}

/// Sets `auths[server]` in a docker config.json, keeping everything else; written to a
/// temporary file beside it (mode 0600) and renamed, so the file is never half-written.
fn write_docker_auth(path: &Path, server: &str, username: &str, token: &str) -> engine::Result<()> {
    let mut config: serde_json::Value = match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => json!({}),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::InvalidInput(format!("{} is not JSON: {e}", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(EngineError::io(path.display(), e)),
    };
    let Some(object) = config.as_object_mut() else {
        return Err(EngineError::InvalidInput(format!(
            "{} is not a JSON object",
            path.display()
        )));
    };
    let auths = object.entry("auths").or_insert_with(|| json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(EngineError::InvalidInput(format!(
            "{}: `auths` is not an object",
            path.display()
        )));
    };
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{token}"));
    auths.insert(server.to_string(), json!({ "auth": auth }));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir.display(), e))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(|e| EngineError::io(dir.display(), e))?;
    let text = serde_json::to_vec_pretty(&config)
        .map_err(|e| EngineError::InvalidInput(format!("cannot encode the config: {e}")))?;
    temp.write_all(&text)
        .map_err(|e| EngineError::io(temp.path().display(), e))?;
    temp.persist(path)
        .map_err(|e| EngineError::io(path.display(), e.error))?;
    Ok(())
}

/// One artifact of the manifest, and what the store holds for it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    artifact: String,
    artifact_type: String,
    version: String,
    repository: String,
    in_store: bool,
    digest: Option<String>,
}

/// The manifest, and for each artifact whether the store holds it (one listCredential).
async fn inventory(target: &Target) -> engine::Result<(ArtifactManifest, String, Vec<Listed>)> {
    let arm = target
        .executor
        .arm(&target.config)
        .map_err(|e| failed(target, e))?;
    let manifest = arm
        .manifest(&target.config.id, &target.manifest)
        .await
        .map_err(|e| aosm_failed(target, e))?;
    let cred = arm
        .list_credential(&target.config.id, &target.manifest)
        .await
        .map_err(|e| aosm_failed(target, e))?;
    let options = RegistryOptions {
        credentials: Credentials::basic(cred.username.clone(), cred.token.expose().to_string()),
        ..Default::default()
    };
    let client = Arc::new(RegistryClient::new(&cred.server, &options)?);
    let mut rows = Vec::new();
    for a in &manifest.artifacts {
        let repository = cred.repository_for(&target.manifest, &a.artifact_name).name;
        let digest = client
            .head_manifest(&repository, &a.artifact_version, &Scope::pull(&repository))
            .await
            .unwrap_or(None);
        rows.push(Listed {
            artifact: a.artifact_name.clone(),
            artifact_type: a.artifact_type.clone(),
            version: a.artifact_version.clone(),
            repository,
            in_store: digest.is_some(),
            digest,
        });
    }
    Ok((manifest, cred.server, rows))
}

async fn list(a: StoreListArgs) -> engine::Result<()> {
    let target = target(&a.store, 1)?;
    let (manifest, registry, rows) = inventory(&target).await?;
    match a.output {
        TableFormat::Json => println!(
            "{}",
            json!({"manifest": target.manifest, "state": manifest.state, "registry": registry,
                   "artifacts": rows, "ignoredEntries": manifest.ignored})
        ),
        TableFormat::Table => {
            println!(
                "manifest {} (state {}) in {}",
                target.manifest,
                manifest.state,
                target.config.id.path()
            );
            let width = rows
                .iter()
                .map(|r| r.artifact.len())
                .max()
                .unwrap_or(8)
                .max(8);
            println!(
                "{:<width$}  {:<12}  {:<10}  {:<8}  DIGEST",
                "ARTIFACT", "TYPE", "VERSION", "IN STORE"
            );
            for r in &rows {
                println!(
                    "{:<width$}  {:<12}  {:<10}  {:<8}  {}",
                    r.artifact,
                    r.artifact_type,
                    r.version,
                    if r.in_store { "yes" } else { "no" },
                    r.digest.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

async fn seal(a: StoreSealArgs) -> engine::Result<()> {
    let target = target(&a.store, 1)?;
    let (_, _, rows) = inventory(&target).await?;
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| !r.in_store)
        .map(|r| format!("{}:{}", r.artifact, r.version))
        .collect();
    if !missing.is_empty() && !a.force {
        return Err(EngineError::InvalidInput(format!(
            "manifest {} lists artifacts the store does not hold yet ({}); push them first, or pass --force",
            target.manifest,
            missing.join(", ")
        )));
    }
    target
        .executor
        .mark_uploaded(&target.config, &target.manifest)
        .await
        .map_err(|e| failed(&target, e))?;
    match a.output {
        TableFormat::Json => println!(
            "{}",
            json!({"manifest": target.manifest, "state": "Uploaded"})
        ),
        TableFormat::Table => println!("manifest {}: Uploaded", target.manifest),
    }
    Ok(())
}

async fn push(a: StorePushArgs) -> engine::Result<()> {
    let target = target(&a.store, a.concurrency.max(1))?;
    let (artifact, version) = artifact_version(&a.artifact)?;
    let config = DockerConfigAuth::load(a.registry_config.as_deref())?;
    let source = match (&a.from, &a.from_helm_repo, a.files.is_empty()) {
        (Some(reference), None, true) => {
            let parsed = engine::ImageRef::parse(reference)?;
            Source::Registry(RegistrySide {
                image: reference.clone(),
                credentials: config.lookup(&parsed.registry).unwrap_or_default(),
                ca_pem: None,
                insecure: a.from_insecure,
                plain_http: a.from_plain_http,
            })
        }
        (None, Some(url), true) => Source::HelmRepository(HelmSource {
            url: url.clone(),
            chart: artifact.clone(),
            version: version.clone(),
            credentials: Credentials::Anonymous,
            ca_pem: None,
            insecure: a.from_insecure,
        }),
        (None, None, false) => Source::LocalFiles(
            a.files
                .iter()
                .map(|f| engine::files::FileSpec::parse(f))
                .collect(),
        ),
        (None, None, true) => {
            return Err(EngineError::InvalidInput(
                "nothing to push: name FILEs, --from REF or --from-helm-repo URL".into(),
            ));
        }
        _ => {
            return Err(EngineError::InvalidInput(
                "FILEs cannot be pushed together with --from or --from-helm-repo".into(),
            ));
        }
    };
    let request = TransferRequest {
        source,
        destination: Destination::Store(Box::new(side(&target, artifact, version))),
        platforms: Vec::new(),
        referrers: a.recursive,
    };
    let progress = progress(a.output);
    let outcome = target
        .executor
        .execute(&request, progress.as_ref())
        .await
        .map_err(|e| failed(&target, e))?;
    match a.output {
        TableFormat::Json => output::print_json(&outcome),
        TableFormat::Table => {
            println!("{}", outcome.destination_ref);
            println!("  digest:     {}", outcome.digest);
            println!("  type:       {}", outcome.artifact_type);
            println!(
                "  blobs:      {} copied, {} skipped, {} mounted",
                outcome.summary.blobs_copied,
                outcome.summary.blobs_skipped,
                outcome.summary.blobs_mounted
            );
            if a.recursive {
                println!(
                    "  referrers:  {} copied, {} skipped",
                    outcome.summary.referrers_copied, outcome.summary.referrers_skipped
                );
            }
        }
    }
    Ok(())
}

async fn pull(a: StorePullArgs) -> engine::Result<()> {
    let target = target(&a.store, 4)?;
    let (artifact, version) = artifact_version(&a.artifact)?;
    let side = side(&target, artifact, version);
    let progress = progress(a.format);
    if let Some(reference) = &a.to {
        let config = DockerConfigAuth::load(a.registry_config.as_deref())?;
        let parsed = engine::ImageRef::parse(reference)?;
        let request = TransferRequest {
            source: Source::Store(Box::new(side)),
            destination: Destination::Registry(RegistrySide {
                image: reference.clone(),
                credentials: config.lookup(&parsed.registry).unwrap_or_default(),
                ca_pem: None,
                insecure: a.to_insecure,
                plain_http: a.to_plain_http,
            }),
            platforms: Vec::new(),
            referrers: a.recursive,
        };
        let outcome = target
            .executor
            .execute(&request, progress.as_ref())
            .await
            .map_err(|e| failed(&target, e))?;
        match a.format {
            TableFormat::Json => output::print_json(&outcome),
            TableFormat::Table => println!(
                "{}\n  digest:     {}",
                outcome.destination_ref, outcome.digest
            ),
        }
        return Ok(());
    }
    let dir: PathBuf = a.output.clone().unwrap_or_else(|| PathBuf::from("."));
    let (endpoint, _cred, _listed) = target
        .executor
        .store_source(&side)
        .await
        .map_err(|e| failed(&target, e))?;
    let opts = engine::pull_files::PullOptions {
        overwrite: a.overwrite,
    };
    let summary = engine::pull_files::pull_files(&endpoint, &dir, &opts, progress.as_ref()).await?;
    match a.format {
        TableFormat::Json => output::print_json(&summary),
        TableFormat::Table => output::print_pulled(&summary, &dir),
    }
    Ok(())
}
