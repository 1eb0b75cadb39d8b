//! `aosm-emulator serve`: prepares the state dir and certificates, starts the registry,
//! serves HTTPS, writes endpoints.json, and shuts everything down on SIGTERM/SIGINT.

use crate::app::{App, Identity, REGISTRY_TOKEN_ISSUER, RegistryInfo, Subscription};
use crate::cli::ServeArgs;
use crate::config::RuntimeConfig;
use crate::endpoints::{self, Endpoints};
use crate::jwt::JwtKey;
use crate::pki::{self, GivenTls};
use crate::registry::{self, Registry, RegistryOptions};
use crate::secret::Secret;
use crate::{acr, acr_front, admin, arm, entra, metadata, seed};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Errors that stop the emulator.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Filesystem or socket error.
    #[error("{context}: {source}")]
    Io {
        /// What was attempted.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificates.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// Signing keys.
    #[error(transparent)]
    Jwt(#[from] crate::jwt::JwtError),
    /// The registry.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The seed file.
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    /// Bad option values.
    #[error("{0}")]
    Invalid(String),
    /// The registry died while serving.
    #[error("{0}")]
    RegistryDied(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |source| ServeError::Io { context, source }
}

/// Host name for URLs: the first `--hostname`, else the listen IP (127.0.0.1 when the
/// listener is on all interfaces).
fn advertised_host(hostnames: &[String], ip: IpAddr) -> String {
    if let Some(h) = hostnames.first() {
        return h.clone();
    }
    match ip {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// Host name of the storage origin: `given`, else `localhost`, else (when the registry is
/// `localhost`) the registry's IP. Refused when it equals the registry's host name: HTTP
/// clients keep `Authorization` on a redirect to the same host name (Go ignores the
/// port), so the redirect would not be cross-origin as ACR's is.
fn storage_hostname(given: Option<&str>, registry: &str, ip: IpAddr) -> Result<String, ServeError> {
    let name = match given {
        Some(n) => n.to_string(),
        None if registry.eq_ignore_ascii_case("localhost") => match ip {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            ip => ip.to_string(),
        },
        None => "localhost".to_string(),
    };
    if name
        .trim_matches(['[', ']'])
        .eq_ignore_ascii_case(registry.trim_matches(['[', ']']))
    {
        return Err(ServeError::Invalid(format!(
            "--storage-hostname {name} is the registry's host name; give the storage origin another name (as ACR's blob storage host differs from the registry's)"
        )));
    }
    Ok(name)
}

/// Runs until SIGTERM/SIGINT (or the registry dies).
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let initial = RuntimeConfig {
        credential_ttl: args.credential_ttl,
        registry_token_ttl: args.registry_token_ttl,
        entra_token_ttl: args.entra_token_ttl,
        arm_throttle_every: args.arm_throttle_every,
        arm_error_rate: args.arm_error_rate,
        update_state_polls: args.update_state_polls,
        ..RuntimeConfig::default()
    };
    initial.validate().map_err(ServeError::Invalid)?;

    std::fs::create_dir_all(&args.state_dir)
        .map_err(io(format!("creating {}", args.state_dir.display())))?;
    let state_dir = args
        .state_dir
        .canonicalize()
        .map_err(io(format!("resolving {}", args.state_dir.display())))?;

    let listener =
        TcpListener::bind(args.listen).map_err(io(format!("binding {}", args.listen)))?;
    listener
        .set_nonblocking(true)
        .map_err(io("configuring the listener"))?;
    let local = listener
        .local_addr()
        .map_err(io("reading the listener address"))?;
    let host = advertised_host(&args.hostnames, local.ip());
    let base_url = format!("https://{host}:{}", local.port());

    let given = args
        .tls_cert
        .as_ref()
        .zip(args.tls_key.as_ref())
        .map(|(cert, key)| GivenTls {
            cert: absolute(cert),
            key: absolute(key),
            ca: args.tls_ca.as_ref().map(|c| absolute(c)),
        });
    let registry_name = advertised_host(&args.hostnames, args.registry_listen.ip());
    let storage_name = storage_hostname(
        args.storage_hostname.as_deref(),
        &registry_name,
        args.registry_listen.ip(),
    )?;
    let mut cert_names = args.hostnames.clone();
    if !args.no_registry && !cert_names.contains(&storage_name) {
        cert_names.push(storage_name.clone());
    }
    let pki = pki::prepare(&state_dir, &cert_names, given.as_ref())?;
    let entra_key = JwtKey::generate(format!("aosm-emulator-{}", uuid::Uuid::new_v4().simple()))?;
    let registry_key = JwtKey::new(
        &pki.registry_token_key.key,
        "registry",
        Some(std::slice::from_ref(&pki.registry_token_key.cert_der)),
    )?;

    // The registry's public listener (the ACR front) and the storage origin are bound
    // first: the registry's token `service` and generated URLs name the front.
    let mut registry: Option<Registry> = None;
    let mut front_listeners = None;
    if !args.no_registry {
        let front = TcpListener::bind(args.registry_listen)
            .map_err(io(format!("binding {}", args.registry_listen)))?;
        let front_addr = front
            .local_addr()
            .map_err(io("reading the registry listener address"))?;
        let storage =
            TcpListener::bind((front_addr.ip(), 0)).map_err(io("binding the storage origin"))?;
        let storage_port = storage
            .local_addr()
            .map_err(io("reading the storage listener address"))?
            .port();
        let public_host =
            registry::host_port(registry_name.trim_matches(['[', ']']), front_addr.port());
        let storage_origin = format!(
            "https://{}",
            registry::host_port(storage_name.trim_matches(['[', ']']), storage_port)
        );
        let opts = RegistryOptions {
            bin: registry::find_binary(args.registry_bin.as_deref())?,
            listen: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), 0),
            public_host: public_host.clone(),
            dir: state_dir.join("registry"),
            realm: format!("{base_url}/oauth2/token"),
            issuer: REGISTRY_TOKEN_ISSUER.to_string(),
            root_cert_bundle: pki.token_root_file.clone(),
        };
        // Awaited on the main thread on purpose (see registry.rs on PDEATHSIG).
        let reg = registry::start(&opts).await?;
        tracing::info!(registry = %public_host, backend = %reg.url, storage = %storage_origin, pid = ?reg.pid(), log = %reg.log.display(), "docker-registry started behind the ACR front");
        front_listeners = Some((front, storage, public_host, storage_origin));
        registry = Some(reg);
    }

    let identity = Identity {
        tenant_id: args.tenant_id.clone(),
        client_id: args.client_id.clone(),
        client_secret: args
            .client_secret
            .clone()
            .map(Secret::new)
            .unwrap_or_else(|| Secret::random(30)),
        managed_identity_client_id: args.managed_identity_client_id.clone(),
        identity_header: Secret::random(24),
    };
    let mut resources = crate::resources::Resources::default();
    if let Some(path) = &args.seed {
        let n = seed::apply(path, &mut resources)?;
        tracing::info!(resources = n, file = %path.display(), "seeded");
    }
    let app = Arc::new(App {
        identity,
        subscription: Subscription {
            id: args.subscription_id.clone(),
            display_name: args.subscription_name.clone(),
        },
        base_url: base_url.clone(),
        registry: front_listeners
            .as_ref()
            .map(|(_, _, host, _)| RegistryInfo {
                host: host.clone(),
                storage: state_dir.join("registry").join("storage"),
            }),
        entra_key,
        registry_key,
        config: Mutex::new(initial),
        faults: Mutex::default(),
        resources: Mutex::new(resources),
        credentials: Mutex::default(),
        operations: Mutex::default(),
        stats: Mutex::default(),
    });

    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(
        &pki.server_cert_file,
        &pki.server_key_file,
    )
    .await
    .map_err(io(format!(
        "loading {} / {}",
        pki.server_cert_file.display(),
        pki.server_key_file.display()
    )))?;
    let handle = axum_server::Handle::<SocketAddr>::new();
    let server = axum_server::from_tcp_rustls(listener, tls.clone())
        .map_err(io("starting the HTTPS server"))?
        .handle(handle.clone())
        .serve(router(app.clone()).into_make_service());
    let mut server = tokio::spawn(server);

    let mut fronts = tokio::task::JoinSet::new();
    if let (Some((front, storage, _, storage_origin)), Some(reg)) = (front_listeners, &registry) {
        let state = Arc::new(
            acr_front::Front::new(
                app.clone(),
                reg.url.clone(),
                storage_origin,
                state_dir.join("registry").join("storage"),
            )
            .map_err(|e| {
                ServeError::Invalid(format!("building the registry front's client: {e}"))
            })?,
        );
        for (listener, router, what) in [
            (
                front,
                acr_front::registry_router(state.clone()),
                "registry front",
            ),
            (
                storage,
                acr_front::storage_router(state.clone()),
                "storage origin",
            ),
        ] {
            listener
                .set_nonblocking(true)
                .map_err(io(format!("configuring the {what} listener")))?;
            let serve = axum_server::from_tcp_rustls(listener, tls.clone())
                .map_err(io(format!("starting the {what}")))?
                .handle(handle.clone())
                .serve(
                    router
                        .layer(middleware::from_fn(log_request))
                        .into_make_service(),
                );
            fronts.spawn(async move { (what, serve.await) });
        }
    }

    let ep = Endpoints {
        arm_endpoint: base_url.clone(),
        authority_host: base_url.clone(),
        tenant_id: app.identity.tenant_id.clone(),
        subscription_id: app.subscription.id.clone(),
        subscription_name: app.subscription.display_name.clone(),
        client_id: app.identity.client_id.clone(),
        client_secret: app.identity.client_secret.expose().to_string(),
        ca_file: pki.ca_file.clone(),
        registry: app.registry.as_ref().map(|r| r.host.clone()),
        registry_url: app.registry.as_ref().map(|r| format!("https://{}", r.host)),
        token_endpoint: format!("{base_url}/{}/oauth2/v2.0/token", app.identity.tenant_id),
        arm_scope: arm::auth::ARM_SCOPE.into(),
        identity_endpoint: format!("{base_url}/msi/token"),
        identity_header: app.identity.identity_header.expose().to_string(),
        managed_identity_client_id: app.identity.managed_identity_client_id.clone(),
        api_versions: arm::API_VERSIONS.iter().map(|s| s.to_string()).collect(),
        admin_url: format!("{base_url}/_emulator"),
        pid: std::process::id(),
        registry_pid: registry.as_ref().and_then(Registry::pid),
    };
    let ep_path = endpoints::write(&state_dir, &ep).map_err(io("writing endpoints.json"))?;
    println!(
        "aosm-emulator ready: arm={base_url} registry={} endpoints={}",
        ep.registry.as_deref().unwrap_or("-"),
        ep_path.display()
    );
    tracing::info!(arm = %base_url, registry = ?ep.registry, endpoints = %ep_path.display(), "ready");

    let outcome = tokio::select! {
        sig = shutdown_signal() => {
            tracing::info!(signal = sig, "shutting down");
            Ok(())
        }
        res = &mut server => Err(match res {
            Ok(Ok(())) => ServeError::Invalid("the HTTPS server stopped".into()),
            Ok(Err(e)) => ServeError::Io { context: "HTTPS server".into(), source: e },
            Err(e) => ServeError::Invalid(format!("HTTPS server task: {e}")),
        }),
        msg = registry_exit(registry.as_mut()) => Err(ServeError::RegistryDied(msg)),
        Some(res) = fronts.join_next() => Err(match res {
            Ok((what, Ok(()))) => ServeError::Invalid(format!("the {what} stopped")),
            Ok((what, Err(e))) => ServeError::Io { context: what.to_string(), source: e },
            Err(e) => ServeError::Invalid(format!("registry front task: {e}")),
        }),
    };

    let _ = std::fs::remove_file(&ep_path);
    handle.graceful_shutdown(Some(Duration::from_secs(2)));
    let _ = tokio::time::timeout(Duration::from_secs(3), &mut server).await;
    fronts.abort_all();
    if let Some(reg) = registry.as_mut() {
        reg.stop().await;
    }
    outcome
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

async fn registry_exit(reg: Option<&mut Registry>) -> String {
    match reg {
        Some(r) => r.exited().await,
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// All routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token_v2))
        .route("/{tenant}/oauth2/token", post(entra::token_v1))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(entra::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(entra::jwks))
        .route("/common/discovery/instance", get(entra::instance_discovery))
        .route("/msi/token", get(entra::managed_identity))
        .route("/metadata/endpoints", get(metadata::endpoints))
        .route("/oauth2/token", get(acr::token_get).post(acr::token_post))
        .route("/_emulator/health", get(admin::health))
        .route(
            "/_emulator/config",
            get(admin::get_config)
                .post(admin::set_config)
                .patch(admin::set_config),
        )
        .route(
            "/_emulator/stats",
            get(admin::stats).delete(admin::reset_stats),
        )
        .route("/_emulator/revoke-credentials", post(admin::revoke))
        .fallback(fallback)
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

/// ARM paths (`/subscriptions`, `/subscriptions/...` and the operation URLs under
/// `/providers/...`, any case) go to the ARM handler; anything else is 404.
async fn fallback(state: State<Arc<App>>, req: Request) -> Response {
    let path = req.uri().path();
    let is_arm = path
        .trim_end_matches('/')
        .eq_ignore_ascii_case("/subscriptions")
        || ["/subscriptions/", "/providers/"].iter().any(|prefix| {
            path.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        });
    if !is_arm {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({"error": {"code": "NotFound", "message": "no such endpoint"}}),
            ),
        )
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 4 << 20).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    arm::handle(state, parts.method, parts.uri, parts.headers, body).await
}

/// Logs method, path (never the query or headers: they may carry credentials) and status.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(%method, path, status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "request");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storage_host_differs_from_the_registry_host() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            storage_hostname(None, "127.0.0.1", lo).unwrap(),
            "localhost"
        );
        assert_eq!(
            storage_hostname(None, "localhost", lo).unwrap(),
            "127.0.0.1"
        );
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(
            storage_hostname(None, "LOCALHOST", any).unwrap(),
            "127.0.0.1"
        );
        assert_eq!(
            storage_hostname(Some("blob.test"), "reg.test", lo).unwrap(),
            "blob.test"
        );
        let err = storage_hostname(Some("reg.test"), "reg.test", lo).unwrap_err();
        assert!(
            err.to_string().contains("--storage-hostname reg.test"),
            "{err}"
        );
    }
}
