//! The AOSM emulator (`emulator/`, binary `aosm-emulator`) for tests of the library's
//! store transfers (`tests/store_*.rs`), and helpers to drive the transfer core
//! (`aosm_artifact_operator::transfer`) and the external tools against it.
//!
//! # How the library comes to trust the emulator
//!
//! The library trusts the system roots plus the PEM bundle named by `SSL_CERT_FILE`, read
//! from the environment whenever it builds an HTTP client (DESIGN.md). The tests run the
//! library in-process, so `SSL_CERT_FILE` must be set in the test process itself, and:
//!
//! - it must be set *before any thread exists*: `std::env::set_var` while another thread
//!   may read the environment (libtest runs tests on parallel threads, tokio has workers,
//!   `Command::spawn` reads it) is undefined behaviour. [`trust_emulator_ca!`] therefore
//!   installs a function in the ELF `.init_array`, which the loader runs before `main`,
//!   while the process has exactly one thread. The value is never changed afterwards, so
//!   every later read (from any thread) sees the same, fully written value.
//! - it must name *one* bundle for the whole test binary, while every test starts its own
//!   emulator: all emulators of a binary therefore serve a certificate from one test CA
//!   made once per binary ([`test_ca`], openssl, in a `OnceLock`), passed with
//!   `--tls-cert/--tls-key/--tls-ca` (the emulator keeps its own CA for signing registry
//!   tokens, which only the registry checks).
//!
//! The constructor only picks the path (`$TMPDIR/aosm-store-tests-<pid>/pki/ca.pem`) and
//! registers its removal at exit; [`test_ca`] writes the file the first time an emulator
//! starts, before the library is ever asked to build a client (every helper that returns
//! an [`Executor`] or an [`Emulator`] calls it first).
//!
//! The alternative — running the library in a child process with its own environment —
//! would need a helper binary or a re-executed test binary and would hide the library's
//! typed errors, tracing output and shared [`Executor`] from the tests.
//!
//! Test binaries that include this module without invoking the macro (the `copy_*` tests)
//! are unaffected: nothing here runs unless called.

use super::cmd::{Cmd, Output, die_with_parent};
use super::env::TestEnv;
use super::registry::{Registry, TlsFiles, make_test_pki};
use super::{rt, wait_for};
use aosm_artifact_operator::aosm::{Cloud, Identity, StoreId};
use aosm_artifact_operator::engine::{Credentials, NoProgress, Secret};
use aosm_artifact_operator::transfer::{
    Destination, Executor, RegistrySide, Source, StoreConfig, StoreSide, TransferError,
    TransferOutcome, TransferRequest,
};
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Subscription and resource group of every test store.
pub const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
pub const RG: &str = "contoso-rg";
/// The ARM api-versions the library speaks.
pub const V2023: &str = "2023-09-01";
pub const V2024: &str = "2024-04-15";
pub const V2025: &str = "2025-03-30";
/// Publisher and store names used by the tests (each test has its own emulator).
pub const PUBLISHER: &str = "contoso";
pub const STORE: &str = "contoso-store";

/// How long the emulator (and its registry) may take to start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);

// ----- one CA per test binary, trusted through SSL_CERT_FILE ---------------------------

static CA_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Installs [`set_ssl_cert_file_before_main`] as an ELF constructor of the test binary.
/// Invoke once at the top level of every test file that runs the library against the
/// emulator (see the module documentation for why it must run before `main`).
#[macro_export]
macro_rules! trust_emulator_ca {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static SET_SSL_CERT_FILE_BEFORE_MAIN: extern "C" fn() = {
            extern "C" fn set_ssl_cert_file() {
                $crate::support::emulator::set_ssl_cert_file_before_main();
            }
            set_ssl_cert_file
        };
    };
}

extern "C" fn remove_ca_dir() {
    if let Some(dir) = CA_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Points `SSL_CERT_FILE` at this binary's test CA (written later by [`test_ca`]).
/// Only for [`trust_emulator_ca!`]: it must run before `main`.
pub fn set_ssl_cert_file_before_main() {
    let dir = std::env::temp_dir().join(format!("aosm-store-tests-{}", std::process::id()));
    // A leftover of a dead process that had the same pid.
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        // test_ca() reports the problem with a proper panic.
        return;
    }
    // SAFETY: this runs from `.init_array`, before `main`: the process has a single thread,
    // so nothing reads or writes the environment concurrently. The value is never changed
    // afterwards.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", dir.join("pki/ca.pem"));
        libc::atexit(remove_ca_dir);
    }
    let _ = CA_DIR.set(dir);
}

/// The test CA of this binary and the server certificate (127.0.0.1, localhost) every
/// emulator of the binary serves; created on first use. Panics unless the test file
/// invoked [`trust_emulator_ca!`].
pub fn test_ca() -> &'static TlsFiles {
    static CA: OnceLock<TlsFiles> = OnceLock::new();
    CA.get_or_init(|| {
        let dir = CA_DIR.get().unwrap_or_else(|| {
            panic!(
                "SSL_CERT_FILE was not set up before main: invoke `trust_emulator_ca!();` at \
                 the top of the test file (and check that $TMPDIR is writable)"
            )
        });
        let files = make_test_pki(dir);
        assert_eq!(
            std::env::var_os("SSL_CERT_FILE")
                .map(PathBuf::from)
                .as_deref(),
            Some(files.ca_pem.as_path()),
            "SSL_CERT_FILE must name the test CA"
        );
        files
    })
}

// ----- the emulator binary -------------------------------------------------------------

/// Path of the `aosm-emulator` binary, built once per test binary with the cargo that
/// runs the tests (root-package tests have no `CARGO_BIN_EXE_` for a workspace member).
/// The path comes from cargo's own build messages, so any target-dir setting works.
pub fn emulator_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Cmd::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "aosm-emulator",
                "--bin",
                "aosm-emulator",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .timeout(Duration::from_secs(1800))
            .ok();
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "aosm-emulator"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| panic!("cargo build did not report the aosm-emulator binary\n{out}"))
    })
}

// ----- a running emulator --------------------------------------------------------------

/// A scoped registry credential from `listCredential`, fetched by the test itself.
#[derive(Clone, Debug)]
pub struct ScopedCredential {
    /// `localhost:PORT` (scheme stripped from `acrServerUrl`).
    pub server: String,
    pub username: String,
    pub token: String,
    pub repositories: Vec<String>,
}

/// A running `aosm-emulator serve` with its own state dir; stopped (SIGTERM) on drop.
pub struct Emulator {
    child: Option<Child>,
    dir: TempDir,
    state: PathBuf,
    ep: Value,
    http: reqwest::Client,
    arm_token: Mutex<Option<String>>,
}

impl Emulator {
    /// `aosm-emulator serve --state-dir <temp> --tls-cert/--tls-key/--tls-ca <test CA>
    /// <extra...>`, logging at debug level; waits for `endpoints.json`.
    pub fn start(extra: &[&str]) -> Self {
        let ca = test_ca();
        let pki = ca.ca_pem.parent().unwrap();
        let mut args: Vec<String> = vec![
            "--tls-cert".into(),
            pki.join("server.pem").display().to_string(),
            "--tls-key".into(),
            pki.join("server.key").display().to_string(),
            "--tls-ca".into(),
            ca.ca_pem.display().to_string(),
            // Advertise `localhost`, not 127.0.0.1: crane (go-containerregistry) refuses a
            // token realm whose host is a literal loopback / private IP (an SSRF guard),
            // and the registry's realm is the emulator's advertised URL.
            "--hostname".into(),
            "localhost".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let emu = Self::spawn(&args);
        assert_eq!(
            emu.ep("caFile"),
            ca.ca_pem.display().to_string(),
            "the emulator must report the test CA as caFile"
        );
        emu
    }

    /// The emulator listening on `ip` (e.g. the node tier's bridge address, so pods reach
    /// it), with certificates of its own CA for `ip` and `storage_host` (the host blob
    /// GETs are redirected to, which must differ from the registry's, as ACR's does; pods
    /// need it in their /etc/hosts).
    pub fn start_on(ip: &str, storage_host: &str, extra: &[&str]) -> Self {
        let mut args: Vec<String> = [
            "--listen",
            &format!("{ip}:0"),
            "--registry-listen",
            &format!("{ip}:0"),
            "--hostname",
            ip,
            "--storage-hostname",
            storage_host,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::spawn(&args)
    }

    fn spawn(args: &[String]) -> Self {
        let bin = emulator_bin();
        let dir = tempfile::Builder::new()
            .prefix("aosm-emulator-")
            .tempdir()
            .expect("emulator temp dir");
        let state = dir.path().join("state");
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--state-dir")
            .arg(&state)
            // The subscription `GET /subscriptions` lists (what `az login` finds).
            .args(["--subscription-id", SUB])
            .args(args)
            .env("RUST_LOG", "debug")
            .env("PATH", super::tools::child_path())
            .env_remove("SSL_CERT_FILE")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let ep_path = state.join("endpoints.json");
        let stderr_log = dir.path().join("stderr.log");
        let ep: Value = wait_for("the emulator's endpoints.json", START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "aosm-emulator exited with {status} before writing endpoints.json:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
            std::fs::read(&ep_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        });
        let ca_file = ep["caFile"].as_str().expect("caFile in endpoints.json");
        let ca_pem = std::fs::read(ca_file).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca_pem).expect("CA PEM"))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        Emulator {
            child: Some(child),
            dir,
            state,
            ep,
            http,
            arm_token: Mutex::new(None),
        }
    }

    /// A string field of `endpoints.json`.
    pub fn ep(&self, key: &str) -> String {
        self.ep[key]
            .as_str()
            .unwrap_or_else(|| panic!("endpoints.json has no string {key:?}: {}", self.ep))
            .to_string()
    }

    /// The registry, `localhost:PORT`.
    pub fn registry(&self) -> String {
        self.ep("registry")
    }

    /// The process id of the registry behind the ACR front.
    pub fn registry_pid(&self) -> Option<u32> {
        self.ep["registryPid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
    }

    /// `localhost:PORT/<path>` in the emulator's registry.
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.registry())
    }

    /// The emulator's state directory (its registry's storage is under `registry/`).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The CA (PEM) of the emulator's listener and registry.
    pub fn ca_file(&self) -> PathBuf {
        test_ca().ca_pem.clone()
    }

    /// A directory holding `ca.crt` (for `skopeo --cert-dir`).
    pub fn cert_dir(&self) -> PathBuf {
        test_ca().cert_dir.clone()
    }

    /// The service principal's secret (random per emulator run).
    pub fn client_secret(&self) -> String {
        self.ep("clientSecret")
    }

    /// The ARM id of a manifest.
    pub fn manifest_id(&self, publisher: &str, store: &str, manifest: &str) -> String {
        store_id(publisher, store).manifest_path(manifest)
    }

    /// Everything the emulator and its registry printed.
    pub fn logs(&self) -> String {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "{}{}{}",
            read(self.dir.path().join("stdout.log")),
            read(self.dir.path().join("stderr.log")),
            read(self.state.join("registry/registry.log"))
        )
    }

    // ----- HTTP to the emulator (the test's own client) ---------------------------------

    /// A request with the test's client (trusts the test CA only); status, headers and
    /// body parsed as JSON (`Null` if none).
    pub fn request(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        rt::block_on(async {
            let mut req = self.http.request(method, url);
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            (
                status,
                headers,
                serde_json::from_str(&text).unwrap_or(Value::Null),
            )
        })
    }

    /// An ARM token for the service principal (client credentials with its secret), cached.
    pub fn arm_token(&self) -> String {
        let mut cached = self.arm_token.lock().unwrap();
        if let Some(t) = cached.as_ref() {
            return t.clone();
        }
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.ep("clientId"))
            .append_pair("client_secret", &self.client_secret())
            .append_pair("scope", "https://management.azure.com/.default")
            .finish();
        let url = self.ep("tokenEndpoint");
        let (status, body) = rt::block_on(async {
            let resp = self
                .http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .expect("Entra token request");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        });
        assert_eq!(status, 200, "Entra token: {body}");
        let token = body["access_token"].as_str().unwrap().to_string();
        *cached = Some(token.clone());
        token
    }

    /// An ARM call as the service principal: `<armEndpoint><path>?api-version=<v>`.
    /// Throttling and 5xx answers (the emulator's fault knobs) are retried after their
    /// `Retry-After`, so that test set-up works under injected faults too.
    pub fn arm(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = format!("{}{path}?api-version={api_version}", self.ep("armEndpoint"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (status, headers, value) =
                self.request(method.clone(), &url, Some(&self.arm_token()), body);
            if !(status == 429 || status >= 500) || attempt == 10 {
                return (status, headers, value);
            }
            let wait = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            std::thread::sleep(Duration::from_secs(wait.min(5)));
        }
    }

    /// PUTs publisher `publisher` and store `store` of type `store_type`
    /// (`AzureContainerRegistry` | `AzureStorageAccount`).
    pub fn create_store(&self, publisher: &str, store: &str, store_type: &str) {
        let id = store_id(publisher, store);
        let publisher_path = id
            .path()
            .split("/artifactStores/")
            .next()
            .unwrap()
            .to_string();
        let (st, _, b) = self.arm(
            Method::PUT,
            &publisher_path,
            V2023,
            Some(&json!({"location": "eastus", "properties": {"scope": "Private"}})),
        );
        assert!(st == 200 || st == 201, "PUT publisher: {st} {b}");
        let (st, _, b) = self.arm(
            Method::PUT,
            &id.path(),
            V2023,
            Some(&json!({"location": "eastus", "properties": {"storeType": store_type}})),
        );
        assert!(st == 200 || st == 201, "PUT artifact store: {st} {b}");
    }

    /// PUTs manifest `manifest` listing `artifacts` as (name, type, version), with
    /// api-version 2023-09-01.
    pub fn create_manifest(
        &self,
        publisher: &str,
        store: &str,
        manifest: &str,
        artifacts: &[(&str, &str, &str)],
    ) {
        self.create_manifest_with(publisher, store, manifest, artifacts, V2023);
    }

    /// [`Emulator::create_manifest`] with api-version `api_version`: a manifest created
    /// with 2025-03-30 keeps its artifacts in `<manifest>/<artifact>`.
    pub fn create_manifest_with(
        &self,
        publisher: &str,
        store: &str,
        manifest: &str,
        artifacts: &[(&str, &str, &str)],
        api_version: &str,
    ) {
        let list: Vec<Value> = artifacts
            .iter()
            .map(|(name, kind, version)| {
                json!({"artifactName": name, "artifactType": kind, "artifactVersion": version})
            })
            .collect();
        let (st, _, b) = self.arm(
            Method::PUT,
            &self.manifest_id(publisher, store, manifest),
            api_version,
            Some(&json!({"location": "eastus", "properties": {"artifacts": list}})),
        );
        assert!(st == 200 || st == 201, "PUT artifact manifest: {st} {b}");
    }

    /// [`Emulator::create_store`] (ACR) of [`PUBLISHER`]/[`STORE`] plus one manifest.
    pub fn create_acr_manifest(&self, manifest: &str, artifacts: &[(&str, &str, &str)]) {
        self.create_store(PUBLISHER, STORE, "AzureContainerRegistry");
        self.create_manifest(PUBLISHER, STORE, manifest, artifacts);
    }

    /// `artifactManifestState` of a manifest in [`PUBLISHER`]/[`STORE`].
    pub fn manifest_state(&self, manifest: &str) -> String {
        let (st, _, b) = self.arm(
            Method::GET,
            &self.manifest_id(PUBLISHER, STORE, manifest),
            V2023,
            None,
        );
        assert_eq!(st, 200, "GET manifest: {b}");
        b["properties"]["artifactManifestState"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `listCredential` of a manifest in [`PUBLISHER`]/[`STORE`], done by the test itself
    /// (it counts in the emulator's stats like any other).
    pub fn list_credential(&self, manifest: &str, api_version: &str) -> ScopedCredential {
        let path = format!(
            "{}/listCredential",
            self.manifest_id(PUBLISHER, STORE, manifest)
        );
        let (st, _, b) = self.arm(Method::POST, &path, api_version, None);
        assert_eq!(st, 200, "listCredential: {b}");
        assert_eq!(
            b["credentialType"], "AzureContainerRegistryScopedToken",
            "{b}"
        );
        let url = b["acrServerUrl"].as_str().unwrap();
        ScopedCredential {
            server: url
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string(),
            username: b["username"].as_str().unwrap().to_string(),
            token: b["acrToken"].as_str().unwrap().to_string(),
            repositories: b["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect(),
        }
    }

    /// A registry access token from the emulator's token server for `scopes`
    /// (`repository:NAME:ACTIONS`), with a scoped credential; status and body.
    pub fn registry_token(&self, cred: &ScopedCredential, scopes: &[&str]) -> (u16, Value) {
        let mut url = url::Url::parse(&format!("{}/oauth2/token", self.ep("armEndpoint"))).unwrap();
        url.query_pairs_mut()
            .append_pair("service", &self.registry());
        for s in scopes {
            url.query_pairs_mut().append_pair("scope", s);
        }
        rt::block_on(async {
            let resp = self
                .http
                .get(url)
                .basic_auth(&cred.username, Some(&cred.token))
                .send()
                .await
                .expect("registry token request");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    }

    /// Status of `GET /v2/<repo>/tags/list` on the emulator's registry with a bearer token.
    pub fn registry_get_tags(&self, repo: &str, bearer: &str) -> u16 {
        let url = format!("https://{}/v2/{repo}/tags/list", self.registry());
        self.request(Method::GET, &url, Some(bearer), None).0
    }

    /// `POST /_emulator/config`.
    pub fn set_config(&self, patch: Value) -> Value {
        let url = format!("{}/config", self.ep("adminUrl"));
        let (st, _, b) = self.request(Method::POST, &url, None, Some(&patch));
        assert_eq!(st, 200, "POST /_emulator/config: {b}");
        b
    }

    /// `GET /_emulator/stats`.
    pub fn stats(&self) -> Value {
        let url = format!("{}/stats", self.ep("adminUrl"));
        let (st, _, b) = self.request(Method::GET, &url, None, None);
        assert_eq!(st, 200, "GET /_emulator/stats: {b}");
        b
    }

    /// `listCredential` calls counted for a manifest of [`STORE`].
    pub fn list_credential_count(&self, manifest: &str) -> u64 {
        self.stats()["listCredential"][format!("{STORE}/{manifest}")]
            .as_u64()
            .unwrap_or(0)
    }

    /// Registry tokens issued for a manifest of [`STORE`].
    pub fn acr_token_count(&self, manifest: &str) -> u64 {
        self.stats()["acrTokens"][format!("{STORE}/{manifest}")]
            .as_u64()
            .unwrap_or(0)
    }

    /// `POST /_emulator/revoke-credentials` for one manifest of [`STORE`]; how many were
    /// revoked.
    pub fn revoke_credentials(&self, manifest: &str) -> u64 {
        let url = format!("{}/revoke-credentials", self.ep("adminUrl"));
        let body = json!({"manifestId": self.manifest_id(PUBLISHER, STORE, manifest)});
        let (st, _, b) = self.request(Method::POST, &url, None, Some(&body));
        assert_eq!(st, 200, "revoke-credentials: {b}");
        b["revoked"].as_u64().unwrap()
    }

    // ----- the library's view of the store ----------------------------------------------

    /// The store [`PUBLISHER`]/[`STORE`] as the library sees it: ARM endpoint and
    /// authority host overridden to the emulator, the service principal's secret.
    pub fn store_config(&self, api_version: &str) -> StoreConfig {
        self.store_config_for(PUBLISHER, STORE, api_version)
    }

    /// [`Emulator::store_config`] for any publisher / store name.
    pub fn store_config_for(&self, publisher: &str, store: &str, api_version: &str) -> StoreConfig {
        StoreConfig {
            id: store_id(publisher, store),
            cloud: Cloud::AzurePublic,
            arm_endpoint: Some(self.ep("armEndpoint")),
            authority_host: Some(self.ep("authorityHost")),
            api_version: api_version.to_string(),
            identity: Identity::ClientSecret {
                tenant_id: self.ep("tenantId"),
                client_id: self.ep("clientId"),
                client_secret: Secret::new(self.client_secret()),
            },
        }
    }

    /// An artifact of a manifest in [`PUBLISHER`]/[`STORE`].
    pub fn artifact(
        &self,
        api_version: &str,
        manifest: &str,
        artifact: &str,
        version: &str,
    ) -> StoreSide {
        store_artifact(self.store_config(api_version), manifest, artifact, version)
    }

    // ----- the external tools against the emulator's registry ----------------------------

    /// `aosm-artifact-operator store <sub>` with the flags of this emulator's store and
    /// `manifest`, not signed in yet.
    pub fn store_cli_unsigned(&self, env: &TestEnv, sub: &str, manifest: &str) -> Cmd {
        env.ours()
            .args(["store", sub])
            .args(["--subscription", SUB, "--resource-group", RG])
            .args(["--publisher", PUBLISHER, "--artifact-store", STORE])
            .args(["--manifest", manifest])
            .arg("--arm-endpoint")
            .arg(self.ep("armEndpoint"))
            .arg("--authority-host")
            .arg(self.ep("authorityHost"))
            .env("SSL_CERT_FILE", self.ca_file())
    }

    /// [`Self::store_cli_unsigned`] signed in as the emulator's service principal
    /// (through the environment).
    pub fn store_cli(&self, env: &TestEnv, sub: &str, manifest: &str) -> Cmd {
        self.store_cli_unsigned(env, sub, manifest)
            .env("AZURE_TENANT_ID", self.ep("tenantId"))
            .env("AZURE_CLIENT_ID", self.ep("clientId"))
            .env("AZURE_CLIENT_SECRET", self.client_secret())
    }

    /// Lets the tools of `env` (crane, skopeo, oras, helm) trust the emulator's CA and log
    /// in to its registry with `cred` (replacing earlier credentials for that host).
    pub fn login_tools(&self, env: &TestEnv, cred: &ScopedCredential) {
        env.prepare_host(&self.registry(), None, Some(&self.ca_file()));
        let path = env.tools_docker_config();
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cred.username, cred.token));
        config["auths"][self.registry()] = json!({ "auth": auth });
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// `crane digest <registry>/<path>` (after [`Emulator::login_tools`]).
    pub fn crane_digest(&self, env: &TestEnv, path: &str) -> Output {
        env.tool("crane")
            .args(["digest", &self.reference(path)])
            .run()
    }

    /// `skopeo inspect --raw --cert-dir <CA> docker://<registry>/<path>`: the manifest bytes
    /// (after [`Emulator::login_tools`]); fails the test on error.
    pub fn skopeo_raw(&self, env: &TestEnv, path: &str) -> Vec<u8> {
        let out = env
            .tool("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("--cert-dir={}", self.cert_dir().display()))
            .arg(format!("docker://{}", self.reference(path)))
            .ok();
        out.stdout.into_bytes()
    }

    /// Pushes an image with one random layer per entry of `layer_sizes` straight into the
    /// store with crane (after [`Emulator::login_tools`]); returns its digest.
    pub fn crane_push_image(&self, env: &TestEnv, path: &str, layer_sizes: &[usize]) -> String {
        let mut cmd = env.tool("crane").args(["append", "--oci-empty-base"]);
        let safe = path.replace(['/', ':'], "_");
        for (i, size) in layer_sizes.iter().enumerate() {
            let tar =
                super::fixtures::random_tar(env, &format!("store-layers/{safe}-{i}.tar"), *size);
            cmd = cmd.arg("-f").arg(tar);
        }
        cmd.args(["-t", &self.reference(path)]).ok();
        let out = self.crane_digest(env, path);
        out.assert_success();
        out.stdout.trim().to_string()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM lets the emulator stop its registry; SIGKILL after a grace period.
        // SAFETY: a plain syscall on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ----- building requests for the library -----------------------------------------------

/// The id of a store in [`SUB`]/[`RG`].
pub fn store_id(publisher: &str, store: &str) -> StoreId {
    StoreId {
        subscription_id: SUB.into(),
        resource_group: RG.into(),
        publisher: publisher.into(),
        artifact_store: store.into(),
    }
}

/// An artifact of a manifest in `store`.
pub fn store_artifact(
    store: StoreConfig,
    manifest: &str,
    artifact: &str,
    version: &str,
) -> StoreSide {
    StoreSide {
        store,
        manifest: manifest.into(),
        artifact: artifact.into(),
        version: version.into(),
    }
}

/// `<reg>/<path>` of a plain-HTTP, anonymous test registry (or a fault proxy's host).
pub fn plain_side(host: &str, path: &str) -> RegistrySide {
    RegistrySide {
        image: format!("{host}/{path}"),
        credentials: Credentials::Anonymous,
        ca_pem: None,
        insecure: false,
        plain_http: true,
    }
}

/// An image in a plain-HTTP test registry as a source.
pub fn registry_source(reg: &Registry, path: &str) -> Source {
    assert!(
        !reg.is_tls(),
        "registry_source is for plain-HTTP registries"
    );
    Source::Registry(plain_side(&reg.host(), path))
}

/// Push `source` into the store artifact `to`.
pub fn push(source: Source, to: StoreSide) -> TransferRequest {
    TransferRequest {
        source,
        destination: Destination::Store(Box::new(to)),
        platforms: Vec::new(),
        referrers: false,
    }
}

/// Pull the store artifact `from` into `to`.
pub fn pull(from: StoreSide, to: RegistrySide) -> TransferRequest {
    TransferRequest {
        source: Source::Store(Box::new(from)),
        destination: Destination::Registry(to),
        platforms: Vec::new(),
        referrers: false,
    }
}

/// A new executor (4 blobs in flight). Makes sure the test CA exists first, since the
/// executor's HTTP client reads `SSL_CERT_FILE` when it is built.
pub fn executor() -> Executor {
    test_ca();
    Executor::new(4).expect("Executor::new")
}

/// Runs one transfer to completion on the harness runtime.
pub fn run(
    executor: &Executor,
    request: &TransferRequest,
) -> Result<TransferOutcome, TransferError> {
    rt::block_on(executor.execute(request, &NoProgress))
}

/// Runs one transfer and fails the test (with the error) unless it succeeds.
#[track_caller]
pub fn run_ok(executor: &Executor, request: &TransferRequest) -> TransferOutcome {
    match run(executor, request) {
        Ok(outcome) => outcome,
        Err(e) => panic!(
            "transfer failed: {e} (reason {:?}, transient {})",
            e.reason,
            e.is_transient()
        ),
    }
}

/// The first JWT in `text` (`eyJ...` header, payload and signature, base64url): every
/// Entra, ARM and registry token the emulator issues is one. Returns its byte range.
pub fn find_jwt(text: &str) -> Option<std::ops::Range<usize>> {
    let b64url = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("eyJ").map(|i| i + from) {
        let mut end = at;
        let mut segments = 0;
        loop {
            let start = end;
            while end < bytes.len() && b64url(bytes[end]) {
                end += 1;
            }
            if end - start < 8 {
                break;
            }
            segments += 1;
            if segments == 3 || end >= bytes.len() || bytes[end] != b'.' {
                break;
            }
            end += 1;
        }
        if segments == 3 {
            return Some(at..end);
        }
        from = at + 3;
    }
    None
}

/// Fails the test if `text` (named `what`) contains any of `secrets` or a JWT.
#[track_caller]
pub fn assert_no_secrets(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            secret.len() >= 8,
            "refusing to look for a short 'secret' {secret:?} (would match by chance)"
        );
        if let Some(at) = text.find(secret) {
            let start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
            panic!(
                "{what} contains a secret value at byte {at}; line: {:?}",
                &text[start..(at + 20).min(text.len())].replace(*secret, "<SECRET>")
            );
        }
    }
    if let Some(range) = find_jwt(text) {
        panic!(
            "{what} contains a JWT (token) at byte {}: {}...",
            range.start,
            &text[range.start..range.start + 12]
        );
    }
}
