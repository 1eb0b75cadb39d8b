//! A real `docker-registry` (distribution 2.8) per test: plain HTTP, htpasswd basic
//! auth, or TLS with a throw-away CA.

use super::cmd::{Cmd, die_with_parent};
use super::rt;
use super::tools::require;
use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 5;

/// Accept header listing every manifest type the tests deal with.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.artifact.manifest.v1+json";

/// How to start a registry.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// htpasswd basic auth with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Serve https with a certificate signed by a fresh test CA.
    pub tls: bool,
    /// Serve https with these files instead (`server.pem`/`server.key` beside `ca_pem`),
    /// e.g. the test CA the whole test binary trusts ([`super::emulator::test_ca`]).
    pub tls_files: Option<TlsFiles>,
    /// Listen on this address instead of 127.0.0.1 (e.g. the node cluster's bridge
    /// address, where pods reach it: `tests/support/node.rs`).
    pub bind: Option<std::net::Ipv4Addr>,
    /// Which implementation serves.
    pub implementation: Implementation,
}

/// Each case (a `fn(Implementation)`) as one test per registry implementation, in modules
/// `distribution2` and `distribution3`.
#[macro_export]
macro_rules! on_each_implementation {
    ($($case:ident),* $(,)?) => {
        mod distribution2 {
            $( #[test] fn $case() {
                super::$case($crate::support::registry::Implementation::Distribution2)
            } )*
        }
        mod distribution3 {
            $( #[test] fn $case() {
                super::$case($crate::support::registry::Implementation::Distribution3)
            } )*
        }
    };
}

/// The registry implementations tests run against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Implementation {
    /// Debian's `docker-registry`: distribution 2.8, no referrers API (the default).
    #[default]
    Distribution2,
    /// distribution v3 (`registry`, built from its Go module by scripts/tools.sh): a
    /// current implementation, stricter than 2.8, but (v3.1.2) also without the referrers
    /// API; the emulator's registry front serves that API, as ACR does.
    Distribution3,
}

impl Implementation {
    /// Every implementation.
    pub const ALL: [Implementation; 2] =
        [Implementation::Distribution2, Implementation::Distribution3];

    /// The tool that serves it.
    pub fn binary(self) -> &'static str {
        match self {
            Implementation::Distribution2 => "docker-registry",
            Implementation::Distribution3 => "registry",
        }
    }
}

/// Files of a TLS registry's test PKI.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate (PEM) that signed the server certificate.
    pub ca_pem: PathBuf,
    /// A directory holding `ca.crt` (for `skopeo --cert-dir`).
    pub cert_dir: PathBuf,
}

/// A running `docker-registry serve`; killed on drop.
pub struct Registry {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    id: String,
    auth: Option<(String, String)>,
    tls: Option<TlsFiles>,
    ip: std::net::Ipv4Addr,
}

/// Ports handed out by this process, so two registries of one test binary never race
/// for the same one (other processes are handled by the retry on "address in use").
fn claimed_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: std::sync::OnceLock<Mutex<HashSet<u16>>> = std::sync::OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// A currently free port on 127.0.0.1 (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if claimed_ports().lock().unwrap().insert(port) {
            return port;
        }
    }
}

impl Registry {
    /// Plain HTTP, anonymous.
    pub fn start() -> Self {
        Self::start_with(RegistryOptions::default())
    }

    /// Plain HTTP with htpasswd basic auth.
    pub fn with_basic_auth(user: &str, password: &str) -> Self {
        Self::start_with(RegistryOptions {
            basic_auth: Some((user.into(), password.into())),
            ..Default::default()
        })
    }

    /// HTTPS with a test CA (see [`Registry::ca_file`]), anonymous.
    pub fn with_tls() -> Self {
        Self::start_with(RegistryOptions {
            tls: true,
            ..Default::default()
        })
    }

    /// A plain registry of `implementation`.
    pub fn of(implementation: Implementation) -> Self {
        Self::start_with(RegistryOptions {
            implementation,
            ..Default::default()
        })
    }

    pub fn start_with(opts: RegistryOptions) -> Self {
        let registry_bin = require(opts.implementation.binary());
        let mut dir = tempfile::Builder::new()
            .prefix("aosm-registry-")
            .tempdir()
            .expect("registry temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();

        let htpasswd = opts.basic_auth.as_ref().map(|(user, password)| {
            let out = Cmd::new(require("htpasswd"))
                .args(["-Bbn", user, password])
                .ok();
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, out.stdout.trim_end().to_string() + "\n").unwrap();
            path
        });
        let tls = opts
            .tls_files
            .clone()
            .or_else(|| opts.tls.then(|| make_test_pki(dir.path())));

        let ip = opts.bind.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let mut last_log = String::new();
        for _attempt in 0..START_ATTEMPTS {
            let port = free_port();
            let id = format!("{}-{port}", std::process::id());
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                config_yaml(ip, port, &storage, &id, htpasswd.as_deref(), tls.as_ref()),
            )
            .unwrap();
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = Command::new(&registry_bin);
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            die_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", registry_bin.display()));
            let mut reg = Registry {
                child: Some(child),
                port,
                dir,
                id,
                auth: opts.basic_auth.clone(),
                tls: tls.clone(),
                ip,
            };
            match reg.wait_ready() {
                Ok(()) => return reg,
                Err(log) => {
                    let _ = reg.stop();
                    if !log.contains("address already in use") {
                        panic!(
                            "{} did not become ready on port {port}:\n{log}",
                            opts.implementation.binary()
                        );
                    }
                    last_log = log;
                    // Take the temp dir back for the next attempt.
                    dir = std::mem::replace(&mut reg.dir, TempDir::new().unwrap());
                    reg.child = None;
                }
            }
        }
        panic!(
            "docker-registry could not get a free port in {START_ATTEMPTS} attempts:\n{last_log}"
        );
    }

    /// Polls `GET /v2/` until this very registry (identified by a response header unique
    /// to it) answers; `Err(log)` if the process exited first or the deadline passed.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = self.http_client();
        let url = format!("{}/v2/", self.base_url());
        loop {
            if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            let answered = rt::block_on(async {
                match client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                {
                    Ok(resp) => resp
                        .headers()
                        .get("x-aosm-test-registry")
                        .is_some_and(|v| v.as_bytes() == self.id.as_bytes()),
                    Err(_) => false,
                }
            });
            if answered {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no answer from {url} within {READY_TIMEOUT:?}\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) -> Option<()> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        let _ = child.wait();
        Some(())
    }

    /// `127.0.0.1:PORT` (or the `bind` address), the registry part of a reference.
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT/<path>`, e.g. `reg.reference("app/web:1.0")`.
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.host())
    }

    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The test CA's certificate (PEM). Panics for a plain-HTTP registry.
    pub fn ca_file(&self) -> &Path {
        &self.tls.as_ref().expect("not a TLS registry").ca_pem
    }

    /// The registry's filesystem storage root.
    pub fn storage_root(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's own log (stdout + stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// A client for direct API probes (trusts the test CA, sends the credentials).
    fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            // The harness only probes; certificate checking is exercised by the tools.
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("reqwest client")
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let client = self.http_client();
        let url = format!("{}{path}", self.base_url());
        rt::block_on(async {
            let mut req = client
                .request(method, &url)
                .header("Accept", MANIFEST_ACCEPT)
                .timeout(Duration::from_secs(30));
            if let Some((u, p)) = self.credentials() {
                req = req.basic_auth(u, Some(p));
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            (status, headers, body)
        })
    }

    /// `HEAD /v2/<repo>/blobs/<digest>` answers 200 (the blob is linked in that repo).
    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        self.request(reqwest::Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))
            .0
            == 200
    }

    /// Status of `HEAD /v2/<repo>/manifests/<reference>`.
    pub fn manifest_status(&self, repo: &str, reference: &str) -> u16 {
        self.request(
            reqwest::Method::HEAD,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .0
    }

    /// Raw manifest bytes and Content-Type, or `None` on 404.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        let (status, headers, body) = self.request(
            reqwest::Method::GET,
            &format!("/v2/{repo}/manifests/{reference}"),
        );
        match status {
            200 => Some((
                headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                body,
            )),
            404 => None,
            s => panic!(
                "GET manifest {repo}:{reference} answered {s}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// Tags of a repository (empty if the repository does not exist).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let (status, _, body) =
            self.request(reqwest::Method::GET, &format!("/v2/{repo}/tags/list"));
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(
            status,
            200,
            "tags/list of {repo}: {}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Digests of all blobs in the registry's storage (`.../blobs/sha256/xx/<hex>/data`),
    /// independent of repositories. Lets a test watch blobs land without any API call.
    pub fn stored_blobs(&self) -> HashSet<String> {
        let root = self.storage_root().join("docker/registry/v2/blobs/sha256");
        let mut found = HashSet::new();
        let Ok(prefixes) = std::fs::read_dir(&root) else {
            return found;
        };
        for prefix in prefixes.flatten() {
            for blob in std::fs::read_dir(prefix.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if blob.path().join("data").is_file() {
                    found.insert(format!("sha256:{}", blob.file_name().to_string_lossy()));
                }
            }
        }
        found
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_yaml(
    ip: std::net::Ipv4Addr,
    port: u16,
    storage: &Path,
    id: &str,
    htpasswd: Option<&Path>,
    tls: Option<&TlsFiles>,
) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {ip}:{port}\n  headers:\n    X-Aosm-Test-Registry: [\"{id}\"]\n",
        storage.display()
    );
    if let Some(tls) = tls {
        let dir = tls.ca_pem.parent().unwrap();
        y += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        );
    }
    if let Some(path) = htpasswd {
        y += &format!(
            "auth:\n  htpasswd:\n    realm: aosm-test\n    path: {}\n",
            path.display()
        );
    }
    y
}

/// Creates `pki/{ca.pem,ca.key,server.pem,server.key}` and `pki/certs.d/ca.crt` with
/// openssl: a CA and a server certificate for IP:127.0.0.1 and DNS:localhost.
pub fn make_test_pki(dir: &Path) -> TlsFiles {
    let pki = dir.join("pki");
    let certs_d = pki.join("certs.d");
    std::fs::create_dir_all(&certs_d).unwrap();
    let openssl = require("openssl");
    let run = |args: &[&str]| {
        Cmd::new(&openssl).args(args).current_dir(&pki).ok();
    };
    std::fs::write(
        pki.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         authorityKeyIdentifier=keyid,issuer\n\
         subjectKeyIdentifier=hash\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=aosm-artifact-operator test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    std::fs::copy(pki.join("ca.pem"), certs_d.join("ca.crt")).unwrap();
    TlsFiles {
        ca_pem: pki.join("ca.pem"),
        cert_dir: certs_d,
    }
}
