//! No secret in any log, status or error: a full round of store transfers (image, chart,
//! ARM template, updateState, pull, and failures) with ARM throttling and registry faults
//! so that the retry paths log too, while every tracing event of the process (the
//! library's and its dependencies', at debug level) is captured, and the emulator and its
//! registry log at debug level. None of it may hold the client secret, an `acrToken`, an
//! Entra token or a registry token.
//!
//! The `acrToken` and Entra token values the library received are learnt by a recording
//! TLS proxy between the library and the emulator's ARM / Entra endpoints; registry tokens
//! (which the library fetches from the emulator's token server directly) are JWTs, found
//! by their shape. This binary holds this one test: the tracing subscriber is global.

mod support;

use aosm_artifact_operator::aosm::Identity;
use aosm_artifact_operator::engine::{Credentials, Secret};
use aosm_artifact_operator::transfer::{FileSource, HelmSource, Reason, Source};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use support::emulator::*;
use support::fixtures::{self, Flavor};
use support::proxy::{Fault, FaultProxy, ProxyConfig};
use support::registry::Registry;
use support::{TestEnv, rt};

trust_emulator_ca!();

// ----- capturing every tracing event of the process --------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Installs a global subscriber (debug, all targets, `log` records included) writing into
/// a buffer.
fn capture_tracing() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only global subscriber of this test binary");
    captured
}

// ----- a recording TLS proxy in front of the emulator's ARM and Entra endpoints -----------

/// Forwards `https://localhost:PORT/...` to the emulator and keeps every request and
/// response body (to learn the secret values the library was handed).
struct RecordingProxy {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RecordingProxy {
    fn start(emu: &Emulator) -> Self {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let pki = test_ca().ca_pem.parent().unwrap().to_path_buf();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.join("server.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let ca = std::fs::read(&test_ca().ca_pem).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let upstream = emu.ep("armEndpoint");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let listener = rt::block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Operation URLs in answers name the upstream; rewritten to the proxy's own URL (as a
        // reverse proxy's `proxy_redirect` does): the client follows them only on the
        // host of its ARM endpoint.
        let own = format!("https://localhost:{}", addr.port());
        let state = (client, upstream, own, bodies.clone());
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { forward(state, req).await }
        });
        support::serve::spawn_http1(listener, Some(acceptor), service, rx);
        RecordingProxy {
            addr,
            bodies,
            shutdown: Some(tx),
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

type ProxyState = (reqwest::Client, String, String, Arc<Mutex<Vec<String>>>);

async fn forward(
    (client, upstream, own, bodies): ProxyState,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    const SKIP: &[&str] = &["host", "content-length", "connection", "transfer-encoding"];
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut forwarded = client.request(method, format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !SKIP.contains(&name.as_str()) {
            forwarded = forwarded.header(name.as_str(), value.as_bytes());
        }
    }
    bodies
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    let mut response = hyper::Response::builder();
    let answer = match forwarded.body(body).send().await {
        Ok(resp) => {
            response = response.status(resp.status().as_u16());
            for (name, value) in resp.headers() {
                if SKIP.contains(&name.as_str()) {
                    continue;
                }
                match value.to_str() {
                    Ok(v) if ["location", "azure-asyncoperation"].contains(&name.as_str()) => {
                        response = response.header(name.as_str(), v.replacen(&upstream, &own, 1));
                    }
                    _ => response = response.header(name.as_str(), value.as_bytes()),
                }
            }
            resp.bytes().await.unwrap_or_default()
        }
        Err(e) => {
            response = response.status(502);
            Bytes::from(format!("recording proxy: {e}"))
        }
    };
    bodies
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&answer).into_owned());
    Ok(response.body(Full::new(answer)).unwrap())
}

/// Values of secret-bearing fields in JSON answers (`acrToken`, `access_token`, ...) and
/// form requests (`client_secret`, `client_assertion`).
fn secret_values(bodies: &[String]) -> Vec<String> {
    const KEYS: &[&str] = &[
        "acrToken",
        "access_token",
        "token",
        "refresh_token",
        "client_secret",
        "client_assertion",
    ];
    let mut found = Vec::new();
    for body in bodies {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body) {
            for key in KEYS {
                if let Some(Value::String(s)) = map.get(*key) {
                    found.push(s.clone());
                }
            }
        } else {
            for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
                if KEYS.contains(&k.as_ref()) {
                    found.push(v.into_owned());
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_secret_or_token_appears_in_logs_statuses_or_errors() {
    let captured = capture_tracing();
    let env = TestEnv::new();
    // Source registry behind a proxy that answers every 7th request with 429 / 503.
    let src = Registry::start();
    let image = fixtures::push_image(
        &env,
        &src,
        "app/cnf:1.0",
        &[2 << 20, 4096],
        Flavor::Oci,
        None,
    );
    let faulty = FaultProxy::start(
        &src,
        ProxyConfig::faults(7, &[Fault::TooManyRequests, Fault::Unavailable]),
    );
    let repo = fixtures::helm_http_repo(&env, &[("contoso-chart", "0.1.0")], None);
    // Every 3rd ARM call is throttled: the library's retry path logs.
    let emu = Emulator::start(&["--arm-throttle-every", "3", "--update-state-polls", "1"]);
    let m = "contoso-nf-manifest";
    emu.create_acr_manifest(
        m,
        &[
            ("contoso-cnf", "OCIArtifact", "1.0.0"),
            ("contoso-cnf", "OCIArtifact", "1.0.1"),
            ("contoso-chart", "OCIArtifact", "0.1.0"),
            ("contoso-nf-template", "ArmTemplate", "1.0.0"),
        ],
    );
    let recorder = RecordingProxy::start(&emu);
    let mut store = emu.store_config(V2023);
    store.arm_endpoint = Some(recorder.url());
    store.authority_host = Some(recorder.url());
    let artifact = |name: &str, version: &str| store_artifact(store.clone(), m, name, version);

    let exec = executor();
    let mut statuses = Vec::new();
    let mut errors = Vec::new();

    // Pushes of the three kinds.
    let outcome = run_ok(
        &exec,
        &push(
            Source::Registry(plain_side(&faulty.host(), "app/cnf:1.0")),
            artifact("contoso-cnf", "1.0.0"),
        ),
    );
    assert_eq!(outcome.digest, image.digest);
    statuses.push(outcome);
    statuses.push(run_ok(
        &exec,
        &push(
            Source::HelmRepository(HelmSource {
                url: repo.url(),
                chart: "contoso-chart".into(),
                version: "0.1.0".into(),
                credentials: Credentials::Anonymous,
                ca_pem: None,
                insecure: false,
            }),
            artifact("contoso-chart", "0.1.0"),
        ),
    ));
    statuses.push(run_ok(
        &exec,
        &push(
            Source::File(FileSource {
                name: "template.json".into(),
                media_type: "application/json".into(),
                data: b"{\"resources\":[]}".to_vec(),
            }),
            artifact("contoso-nf-template", "1.0.0"),
        ),
    ));
    // Failures: an unlisted artifact, a wrong client secret, a push after Uploaded.
    errors.push(
        run(
            &exec,
            &push(
                Source::Registry(plain_side(&faulty.host(), "app/cnf:1.0")),
                artifact("contoso-unlisted", "1.0.0"),
            ),
        )
        .expect_err("unlisted artifact"),
    );
    let wrong_secret = format!("wrong-secret-{}", hex::encode(fixtures::random_bytes(12)));
    let mut wrong = artifact("contoso-cnf", "1.0.0");
    wrong.store.identity = Identity::ClientSecret {
        tenant_id: emu.ep("tenantId"),
        client_id: emu.ep("clientId"),
        client_secret: Secret::new(wrong_secret.clone()),
    };
    let err = run(
        &exec,
        &push(
            Source::Registry(plain_side(&faulty.host(), "app/cnf:1.0")),
            wrong,
        ),
    )
    .expect_err("wrong client secret");
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    errors.push(err);
    rt::block_on(exec.mark_uploaded(&store, m)).unwrap_or_else(|e| panic!("mark_uploaded: {e}"));
    let err = run(
        &exec,
        &push(
            Source::Registry(plain_side(&faulty.host(), "app/cnf:1.0")),
            artifact("contoso-cnf", "1.0.1"),
        ),
    )
    .expect_err("push after Uploaded");
    errors.push(err);
    // A pull.
    let dst = Registry::start();
    statuses.push(run_ok(
        &exec,
        &pull(
            artifact("contoso-cnf", "1.0.0"),
            plain_side(&dst.host(), "mirror/cnf:1.0.0"),
        ),
    ));

    // The secret values in play.
    let mut secrets = vec![emu.client_secret(), wrong_secret];
    let handed_to_library = secret_values(&recorder.bodies());
    assert!(
        handed_to_library.len() >= 3,
        "the recorder saw the client secret, Entra tokens and acrTokens: {} values",
        handed_to_library.len()
    );
    assert!(
        recorder.bodies().iter().any(|b| b.contains("\"acrToken\"")),
        "the library's listCredential went through the recorder"
    );
    secrets.extend(handed_to_library);
    // Tokens of the test's own (the emulator logs every issuance).
    let cred = emu.list_credential(m, V2023);
    let (st, body) = emu.registry_token(&cred, &["repository:contoso-cnf:pull"]);
    assert_eq!(st, 200, "{body}");
    let registry_token = body["access_token"].as_str().unwrap().to_string();
    assert!(
        find_jwt(&format!("x {registry_token} y")).is_some(),
        "registry tokens are JWTs, which the checks below detect by shape"
    );
    assert!(find_jwt(&emu.arm_token()).is_some(), "so are Entra tokens");
    secrets.push(cred.token.clone());
    secrets.push(registry_token);
    secrets.push(emu.arm_token());
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();

    let library_log = captured.text();
    assert!(
        library_log.contains("retrying"),
        "the capture holds the library's retry events:\n{library_log}"
    );
    assert_no_secrets("the library's tracing output", &library_log, &secrets);
    let emulator_log = emu.logs();
    assert!(
        emulator_log.contains("DEBUG") || emulator_log.contains("debug"),
        "the emulator logged at debug level"
    );
    assert_no_secrets(
        "the emulator's and its registry's logs",
        &emulator_log,
        &secrets,
    );
    for status in &statuses {
        let json = serde_json::to_string(status).unwrap();
        assert_no_secrets("a transfer status", &json, &secrets);
        assert_no_secrets(
            "a transfer status (Debug)",
            &format!("{status:?}"),
            &secrets,
        );
    }
    for err in &errors {
        assert_no_secrets("an error message", &err.to_string(), &secrets);
        assert_no_secrets("an error (Debug)", &format!("{err:?}"), &secrets);
    }
    eprintln!(
        "checked {} secret values against {} bytes of library log and {} bytes of emulator log",
        secrets.len(),
        library_log.len(),
        emulator_log.len()
    );
}
