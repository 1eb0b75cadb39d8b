//! Test harness: runs the `aosm-emulator` binary with a temp state dir, waits for its
//! endpoints.json, and talks to it with a client that trusts only the emulator's CA.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the emulator (and its registry) may take to start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
pub const RG: &str = "contoso-rg";
pub const V2023: &str = "2023-09-01";
pub const V2024: &str = "2024-04-15";
pub const V2025: &str = "2025-03-30";

/// `/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.HybridNetwork/publishers/<p>`
pub fn publisher_id(p: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.HybridNetwork/publishers/{p}"
    )
}

pub fn store_id(p: &str, s: &str) -> String {
    format!("{}/artifactStores/{s}", publisher_id(p))
}

pub fn manifest_id(p: &str, s: &str, m: &str) -> String {
    format!("{}/artifactManifests/{m}", store_id(p, s))
}

/// Polls `f` until it returns `Some`, failing the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kernel kills the child when the spawning (test) thread dies: no leftovers if the test
/// binary is killed.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The tool cache of scripts/tools.sh.
pub fn tools_bin() -> PathBuf {
    let non_empty = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
    let dir = match non_empty("AOSM_TOOLS_DIR") {
        Some(d) => PathBuf::from(d),
        None => non_empty("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(non_empty("HOME").expect("HOME is not set")).join(".cache")
            })
            .join("aosm-artifact-operator/tools"),
    };
    dir.join("bin")
}

/// A tool from the cache or PATH; panics with a hint when missing.
pub fn require(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(tools_bin())
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "required tool `{name}` not found: run scripts/tools.sh to install the test tools"
            )
        })
}

/// A running emulator; stopped (SIGTERM) on drop.
pub struct Emulator {
    child: Option<Child>,
    pub dir: TempDir,
    pub ep: Value,
    client: Client,
}

impl Emulator {
    /// `aosm-emulator serve --state-dir <temp> <extra...>`.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aosm-emulator-test-")
            .tempdir()
            .expect("temp dir");
        let state = dir.path().join("state");
        Self::start_in(dir, &state, extra)
    }

    /// Like [`start`] with a given state dir (inside `dir`, which the emulator owns).
    pub fn start_in(dir: TempDir, state: &Path, extra: &[&str]) -> Self {
        let out = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aosm-emulator"));
        cmd.arg("serve")
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .env("RUST_LOG", "debug")
            .env("PATH", {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::join_paths(
                    std::iter::once(tools_bin()).chain(std::env::split_paths(&path)),
                )
                .unwrap()
            })
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start aosm-emulator");
        let ep_path = state.join("endpoints.json");
        let logs_dir = dir.path().to_path_buf();
        let ep: Value = wait_for("endpoints.json", START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "aosm-emulator exited with {status} before writing endpoints.json:\n{}",
                    std::fs::read_to_string(logs_dir.join("stderr.log")).unwrap_or_default()
                );
            }
            // endpoints.json is written just before the ready line is printed: wait for both.
            let ready = std::fs::read_to_string(logs_dir.join("stdout.log"))
                .is_ok_and(|s| s.ends_with('\n'));
            std::fs::read(&ep_path)
                .ok()
                .filter(|_| ready)
                .and_then(|b| serde_json::from_slice(&b).ok())
        });
        let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap_or_default();
        assert!(
            stdout.starts_with("aosm-emulator ready: arm=https://127.0.0.1:"),
            "{stdout}"
        );
        let ca = std::fs::read(ep["caFile"].as_str().unwrap()).expect("caFile readable");
        let client = Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).expect("CA PEM"))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Emulator {
            child: Some(child),
            dir,
            ep,
            client,
        }
    }

    /// A string field of endpoints.json.
    pub fn ep(&self, key: &str) -> String {
        self.ep[key]
            .as_str()
            .unwrap_or_else(|| panic!("endpoints.json has no string {key}: {}", self.ep))
            .to_string()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn base(&self) -> String {
        self.ep("armEndpoint")
    }

    /// Raw Entra token request (form).
    pub fn entra(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let url = self.ep("tokenEndpoint");
        let resp = self
            .client
            .post(url)
            .form(form)
            .send()
            .expect("token request");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// An ARM token for the service principal (client secret).
    pub fn arm_token(&self) -> String {
        let (id, secret) = (self.ep("clientId"), self.ep("clientSecret"));
        let (status, body) = self.entra(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "https://management.azure.com/.default"),
        ]);
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// An ARM request with `token`; returns status, headers and JSON body (Null if none).
    pub fn arm_with(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if path.starts_with("https://") {
            path.to_string()
        } else if api_version.is_empty() {
            format!("{}{path}", self.base())
        } else {
            format!("{}{path}{sep}api-version={api_version}", self.base())
        };
        let mut req = self.client.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("ARM request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap_or_default();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// Creates publisher `p`, store `s` (ACR) and manifest `m` listing `artifacts`
    /// (name, version) as OCIArtifact, with api-version 2023-09-01.
    pub fn create_manifest(
        &self,
        token: &str,
        p: &str,
        s: &str,
        m: &str,
        artifacts: &[(&str, &str)],
    ) {
        self.create_manifest_with(token, p, s, m, artifacts, V2023);
    }

    /// [`Emulator::create_manifest`], the manifest created with `api_version`.
    pub fn create_manifest_with(
        &self,
        token: &str,
        p: &str,
        s: &str,
        m: &str,
        artifacts: &[(&str, &str)],
        api_version: &str,
    ) {
        let (st, _, b) = self.arm_with(
            Some(token),
            Method::PUT,
            &publisher_id(p),
            V2023,
            Some(json!({"location": "eastus", "properties": {"scope": "Private"}})),
        );
        assert!(st == 200 || st == 201, "{st} {b}");
        let (st, _, b) = self.arm_with(
            Some(token),
            Method::PUT,
            &store_id(p, s),
            V2023,
            Some(json!({"location": "eastus", "properties": {"storeType": "AzureContainerRegistry"}})),
        );
        assert!(st == 200 || st == 201, "{st} {b}");
        let list: Vec<Value> = artifacts
            .iter()
            .map(|(n, v)| json!({"artifactName": n, "artifactType": "OCIArtifact", "artifactVersion": v}))
            .collect();
        let (st, _, b) = self.arm_with(
            Some(token),
            Method::PUT,
            &manifest_id(p, s, m),
            api_version,
            Some(json!({"location": "eastus", "properties": {"artifacts": list}})),
        );
        assert_eq!(st, 201, "{b}");
    }

    /// listCredential; asserts 200.
    pub fn list_credential(
        &self,
        token: &str,
        p: &str,
        s: &str,
        m: &str,
        api_version: &str,
    ) -> Value {
        let (st, _, b) = self.arm_with(
            Some(token),
            Method::POST,
            &format!("{}/listCredential", manifest_id(p, s, m)),
            api_version,
            None,
        );
        assert_eq!(st, 200, "{b}");
        b
    }

    /// `GET /oauth2/token` with Basic credentials and scopes; status and body.
    pub fn registry_token(&self, user: &str, password: &str, scopes: &[&str]) -> (u16, Value) {
        let mut query: Vec<(&str, String)> = vec![(
            "service",
            self.ep["registry"]
                .as_str()
                .unwrap_or("emulator")
                .to_string(),
        )];
        query.extend(scopes.iter().map(|s| ("scope", s.to_string())));
        let resp = self
            .client
            .get(format!("{}/oauth2/token", self.base()))
            .query(&query)
            .basic_auth(user, Some(password))
            .send()
            .expect("registry token request");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// `POST /_emulator/config`.
    pub fn set_config(&self, patch: Value) -> Value {
        let resp = self
            .client
            .post(format!("{}/_emulator/config", self.base()))
            .json(&patch)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().unwrap()
    }

    /// `GET /_emulator/stats`.
    pub fn stats(&self) -> Value {
        self.client
            .get(format!("{}/_emulator/stats", self.base()))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Everything the emulator and its registry printed.
    pub fn logs(&self) -> String {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let state = PathBuf::from(self.ep("caFile"))
            .parent()
            .unwrap()
            .to_path_buf();
        format!(
            "{}{}{}",
            read(self.dir.path().join("stdout.log")),
            read(self.dir.path().join("stderr.log")),
            read(state.join("registry/registry.log"))
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGTERM and wait (SIGKILL after 15 s).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Decodes (header, claims) of a JWT without verifying it.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut part = || -> Value {
        let raw = URL_SAFE_NO_PAD
            .decode(it.next().expect("JWT part"))
            .expect("base64url");
        serde_json::from_slice(&raw).expect("JSON")
    };
    let h = part();
    let c = part();
    (h, c)
}

/// A JWT-shaped workload identity assertion with a garbage signature (refused).
pub fn federated_assertion(aud: &str, sub: &str, exp_from_now: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let h = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "k8s"}).to_string());
    let c = URL_SAFE_NO_PAD.encode(
        json!({"aud": [aud], "sub": sub, "iss": "https://kubernetes.default.svc", "iat": now, "exp": now + exp_from_now})
            .to_string(),
    );
    format!("{h}.{c}.c2lnbmF0dXJl")
}

/// `oras` with a private registry config, the emulator's CA, and the password on stdin.
pub struct Oras {
    pub work: TempDir,
    ca: PathBuf,
}

impl Oras {
    pub fn new(emu: &Emulator) -> Self {
        let work = tempfile::Builder::new()
            .prefix("aosm-oras-")
            .tempdir()
            .unwrap();
        Oras {
            work,
            ca: PathBuf::from(emu.ep("caFile")),
        }
    }

    fn run(&self, args: &[&str], password: &str) -> Output {
        let mut cmd = Command::new(require("oras"));
        cmd.args(args)
            .arg("--ca-file")
            .arg(&self.ca)
            .arg("--registry-config")
            .arg(self.work.path().join("config.json"))
            .arg("--password-stdin")
            .current_dir(self.work.path())
            .env("HOME", self.work.path())
            .env("DOCKER_CONFIG", self.work.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start oras");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        child.wait_with_output().expect("oras output")
    }

    /// `oras push <reference> <file>` with a file holding `content`.
    pub fn push(&self, reference: &str, user: &str, password: &str, content: &str) -> Output {
        std::fs::write(self.work.path().join("artifact.txt"), content).unwrap();
        self.run(&["push", "-u", user, reference, "artifact.txt"], password)
    }

    /// `oras pull <reference> -o out`, returning the output and the pulled file content.
    pub fn pull(&self, reference: &str, user: &str, password: &str) -> (Output, Option<String>) {
        let out_dir = self.work.path().join("out");
        let _ = std::fs::remove_dir_all(&out_dir);
        let out = self.run(&["pull", "-u", user, "-o", "out", reference], password);
        (
            out,
            std::fs::read_to_string(out_dir.join("artifact.txt")).ok(),
        )
    }
}

/// Combined output for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
