//! Microsoft's how-to with the real Azure CLI (`az`, PyPI azure-cli pinned in
//! `scripts/tools.sh`) against the emulator, exactly as a user types it:
//! `az config set core.instance_discovery=false`, `az cloud register
//! --endpoint-resource-manager <emulator>` (endpoints discovered from its
//! `/metadata/endpoints`) + `az cloud set`, `az login --service-principal`, `az account
//! show`, `az rest --method POST …/listCredential`, then `oras login`, `oras push`,
//! `oras pull`; and the same routine with our `store` commands signed in through that
//! `az` (no client secret in their environment: the sign-in chain ends at the Azure CLI).
//!
//! Every test has its own emulator, temp dirs, `AZURE_CONFIG_DIR` and HOME (so `az` never
//! touches `~/.azure`), and docker config. Nothing leaves loopback: `az` trusts the
//! emulator's CA through `REQUESTS_CA_BUNDLE`, instance discovery is off, telemetry is
//! off, and every process runs with `HTTPS_PROXY`/`HTTP_PROXY` pointing at a loopback
//! listener of the test that only records what arrives (`NO_PROXY` lets loopback through):
//! a request for any other host (login.microsoftonline.com, management.azure.com) would
//! reach it and be refused, and the test fails if anything but az's version check (which
//! no setting turns off) did.

mod support;

use base64::Engine as _;
use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::TestEnv;
use support::cmd::{Cmd, Output};
use support::emulator::*;

trust_emulator_ca!();

/// The name the cloud is registered under in `az`.
const CLOUD: &str = "AosmEmulator";
/// The api-version of the how-to's `az rest` calls.
const API_VERSION: &str = "2023-09-01";
/// Where az looks up its latest release (see [`ProxyTrap::assert_only_version_check`]).
const AZ_VERSION_CHECK_HOST: &str = "azcliprod.blob.core.windows.net:443";
/// Upper bound of one `az` (or oras, or our) command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

// ----- the pinned az ---------------------------------------------------------------------

/// The pinned azure-cli version: `AZURE_CLI_VERSION=` in scripts/tools.sh.
fn pinned_version() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tools.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("AZURE_CLI_VERSION="))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no AZURE_CLI_VERSION= in {}", script.display()))
        .to_string()
}

/// `az` from the tools cache (never another `az` on PATH), the pinned version's wrapper;
/// fails the test, never skips it, when scripts/tools.sh has not installed it. (`az
/// version` is not asked: it looks up the latest release online.)
fn az_bin() -> PathBuf {
    let az = support::tools::bin_dir().join("az");
    let venv = format!("azure-cli-{}/bin/python", pinned_version());
    let wrapper = std::fs::read_to_string(&az).unwrap_or_default();
    assert!(
        wrapper.contains(&venv),
        "the Azure CLI {} is not installed at {} (a wrapper running {venv}): run \
         scripts/tools.sh (or `make test`, which runs it) to install the test tools",
        pinned_version(),
        az.display(),
    );
    az
}

// ----- a proxy that only records ---------------------------------------------------------

/// A loopback listener named as the HTTP(S) proxy of every process the tests start: it
/// records the first line of every connection (`CONNECT host:443 …` for https) and
/// answers 403, so a request for a non-loopback host is seen and goes nowhere.
struct ProxyTrap {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ProxyTrap {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        // The thread ends with the test binary; it holds no process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                record.lock().unwrap().push(line.trim().to_string());
                let _ = std::io::Write::write_all(
                    &mut &stream,
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        ProxyTrap { url, seen }
    }

    /// Fails the test if any process asked the proxy for anything but az's version check.
    ///
    /// The one request allowed: the first `az` command in a fresh configuration directory
    /// asks `azcliprod.blob.core.windows.net` for the latest release (azure-cli's
    /// `get_cached_latest_versions`, run when `versionCheck.json` holds no versions; no
    /// setting turns it off). The trap answers it 403, so it goes nowhere, and az goes on.
    #[track_caller]
    fn assert_only_version_check(&self) {
        let seen = self.seen.lock().unwrap();
        let others: Vec<&String> = seen
            .iter()
            .filter(|l| !l.starts_with(&format!("CONNECT {AZ_VERSION_CHECK_HOST} ")))
            .collect();
        assert!(
            others.is_empty(),
            "requests for non-loopback hosts were made: {others:?}"
        );
    }

    /// The proxy and trust environment of every process of the test.
    fn env(&self, cmd: Cmd, ca: &Path) -> Cmd {
        cmd.env("HTTPS_PROXY", &self.url)
            .env("HTTP_PROXY", &self.url)
            .env("https_proxy", &self.url)
            .env("http_proxy", &self.url)
            .env_remove("ALL_PROXY")
            .env("NO_PROXY", "localhost,127.0.0.1")
            .env("no_proxy", "localhost,127.0.0.1")
            .env("SSL_CERT_FILE", ca)
            .timeout(COMMAND_TIMEOUT)
    }
}

// ----- az in the test's sandbox ----------------------------------------------------------

/// `az` with a configuration directory and HOME of the test's own.
struct Az<'a> {
    env: &'a TestEnv,
    trap: &'a ProxyTrap,
    ca: PathBuf,
}

impl<'a> Az<'a> {
    fn new(env: &'a TestEnv, emu: &Emulator, trap: &'a ProxyTrap) -> Self {
        std::fs::create_dir_all(env.root().join("az-home")).unwrap();
        Az {
            env,
            trap,
            ca: emu.ca_file(),
        }
    }

    /// The environment `az` runs with, given to `cmd` (also to our binary, which runs
    /// `az` itself): its own config dir and HOME, the emulator's CA for Python's
    /// `requests`, no telemetry, no colour, errors only, and no Azure sign-in variables.
    fn env_of(&self, cmd: Cmd) -> Cmd {
        let cmd = self
            .trap
            .env(cmd, &self.ca)
            .env("AZURE_CONFIG_DIR", self.env.root().join("azure"))
            .env("REQUESTS_CA_BUNDLE", &self.ca)
            .env("AZURE_CORE_COLLECT_TELEMETRY", "false")
            .env("AZURE_CORE_NO_COLOR", "true")
            .env("AZURE_CORE_ONLY_SHOW_ERRORS", "true")
            .env("AZURE_CORE_SURVEY_MESSAGE", "false");
        [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_AUTHORITY_HOST",
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "MSI_ENDPOINT",
            "AZURE_CLOUD_NAME",
            "ARM_CLOUD_METADATA_URL",
        ]
        .iter()
        .fold(cmd, |cmd, var| cmd.env_remove(var))
    }

    /// `az <args>`.
    fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.env_of(Cmd::new(az_bin()))
            .env("HOME", self.env.root().join("az-home"))
            .current_dir(self.env.path(""))
            .args(args)
    }

    /// `az <args>`, which must succeed.
    fn ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.cmd(args).run();
        out.assert_success();
        out
    }
}

/// The how-to's sign-in: instance discovery off, the emulator registered as a cloud from
/// its metadata endpoint and selected, the service principal signed in; `az account show`
/// names the emulator's subscription.
fn signed_in<'a>(env: &'a TestEnv, emu: &Emulator, trap: &'a ProxyTrap) -> Az<'a> {
    let az = Az::new(env, emu, trap);

    az.ok(["config", "set", "core.instance_discovery=false"]);
    az.ok([
        "cloud",
        "register",
        "-n",
        CLOUD,
        "--endpoint-resource-manager",
        &emu.ep("armEndpoint"),
    ]);
    az.ok(["cloud", "set", "-n", CLOUD]);
    // What az discovered from /metadata/endpoints: where to sign in, and the audience of
    // ARM tokens (resourceManager is the value given on the command line).
    let cloud = az.ok(["cloud", "show", "-n", CLOUD, "-o", "json"]).json();
    let endpoints = &cloud["endpoints"];
    assert_eq!(
        endpoints["activeDirectory"],
        emu.ep("authorityHost").as_str(),
        "{cloud}"
    );
    let arm_audience = format!("{}/", emu.ep("armScope").trim_end_matches("/.default"));
    assert_eq!(
        endpoints["activeDirectoryResourceId"],
        arm_audience.as_str(),
        "{cloud}"
    );
    assert_eq!(endpoints["management"], arm_audience.as_str(), "{cloud}");

    // `--password=` (az's advice for a secret that starts with '-', which a random one
    // may; shown as *** if the command fails).
    let login = az
        .cmd(["login", "--service-principal", "-u", &emu.ep("clientId")])
        .arg(format!("--password={}", emu.client_secret()))
        .args(["--tenant", &emu.ep("tenantId"), "-o", "json"])
        .run();
    login.assert_success();
    let login = login.json();
    assert_eq!(login[0]["id"], SUB, "{login}");

    let account = az.ok(["account", "show", "-o", "json"]).json();
    assert_eq!(account["id"], SUB, "{account}");
    assert_eq!(
        account["tenantId"],
        emu.ep("tenantId").as_str(),
        "{account}"
    );
    assert_eq!(account["environmentName"], CLOUD, "{account}");
    assert_eq!(account["state"], "Enabled", "{account}");
    assert_eq!(account["user"]["type"], "servicePrincipal", "{account}");
    az
}

/// `Digest: sha256:…` of oras push/pull output.
fn oras_digest(out: &Output) -> String {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in the oras output: {out}"))
        .trim()
        .to_string()
}

/// oras in the test's sandbox, with the docker config in `docker_dir`. The emulator's
/// registry is `localhost:PORT` over https; oras assumes plain HTTP for `localhost`
/// unless told otherwise (an ACR login server is never localhost, so the how-to does not
/// need `--plain-http=false`).
fn oras(env: &TestEnv, trap: &ProxyTrap, emu: &Emulator, docker_dir: &Path, sub: &str) -> Cmd {
    trap.env(env.tool("oras"), &emu.ca_file())
        .env("DOCKER_CONFIG", docker_dir)
        .arg(sub)
        .arg("--plain-http=false")
}

#[test]
fn the_how_to_by_hand_with_az_and_oras() {
    let env = TestEnv::new();
    let trap = ProxyTrap::start();
    let emu = Emulator::start(&[]);
    let manifest = "az-manifest";
    emu.create_acr_manifest(manifest, &[("contoso-template", "ArmTemplate", "1.0.0")]);
    let az = signed_in(&env, &emu, &trap);

    // az rest --method POST …/listCredential
    let url = format!(
        "{}{}/listCredential?api-version={API_VERSION}",
        emu.ep("armEndpoint"),
        emu.manifest_id(PUBLISHER, STORE, manifest)
    );
    let cred = az
        .ok(["rest", "--method", "POST", "--url", &url, "-o", "json"])
        .json();
    assert_eq!(
        cred["credentialType"], "AzureContainerRegistryScopedToken",
        "{cred}"
    );
    assert_eq!(
        cred["repositories"],
        serde_json::json!(["contoso-template"]),
        "{cred}"
    );
    let server = cred["acrServerUrl"].as_str().unwrap();
    let registry = server.trim_start_matches("https://");
    assert_eq!(registry, emu.registry());
    let username = cred["username"].as_str().unwrap();
    let token = cred["acrToken"].as_str().unwrap();
    assert_eq!(emu.list_credential_count(manifest), 1);

    // oras login <acr> -u <username> -p <acrToken>
    let docker = env.root().join("oras-docker");
    std::fs::create_dir_all(&docker).unwrap();
    let login = oras(&env, &trap, &emu, &docker, "login")
        .args([registry, "-u", username])
        .arg(format!("--password={token}"))
        .run();
    login.assert_success();
    assert!(login.stdout.contains("Login Succeeded"), "{login}");

    // oras push <acr>/contoso-template:1.0.0 template.json:application/json
    let template = env.write("template.json", br#"{"resources":[],"by":"hand"}"#);
    let reference = format!("{registry}/contoso-template:1.0.0");
    let pushed = oras(&env, &trap, &emu, &docker, "push")
        .args([&reference, "template.json:application/json"])
        .run();
    pushed.assert_success();
    let digest = oras_digest(&pushed);

    // oras pull it back, byte-exact.
    let pulled_dir = env.path("pulled");
    let pulled = oras(&env, &trap, &emu, &docker, "pull")
        .arg(&reference)
        .arg("-o")
        .arg(&pulled_dir)
        .run();
    pulled.assert_success();
    assert_eq!(oras_digest(&pulled), digest);
    assert_eq!(
        std::fs::read(pulled_dir.join("template.json")).unwrap(),
        std::fs::read(&template).unwrap()
    );
    trap.assert_only_version_check();
}

#[test]
fn store_commands_signed_in_through_az() {
    let env = TestEnv::new();
    let trap = ProxyTrap::start();
    let emu = Emulator::start(&[]);
    let manifest = "az-store-manifest";
    emu.create_acr_manifest(
        manifest,
        &[
            ("contoso-template", "ArmTemplate", "1.0.0"),
            ("contoso-values", "OCIArtifact", "1.0.0"),
        ],
    );
    let az = signed_in(&env, &emu, &trap);

    // Our commands with the store flags and the emulator's ARM endpoint, and only `az`'s
    // sign-in to go on.
    let store = |sub: &str| {
        az.env_of(env.ours())
            .args(["store", sub])
            .args(["--subscription", SUB, "--resource-group", RG])
            .args(["--publisher", PUBLISHER, "--artifact-store", STORE])
            .args(["--manifest", manifest])
            .arg("--arm-endpoint")
            .arg(emu.ep("armEndpoint"))
    };
    let client_secret = emu.client_secret();
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut run = |what: &str, cmd: Cmd| -> Output {
        let out = cmd.run();
        outputs.push((what.to_string(), out.clone()));
        out
    };

    // store login: the registry config oras then reads.
    let config = env.path("registry/config.json");
    let login = run(
        "store login",
        store("login")
            .arg("--registry-config")
            .arg(&config)
            .args(["-o", "json"]),
    );
    let login = login.assert_success().json();
    assert_eq!(login["registry"], emu.registry().as_str(), "{login}");
    assert_eq!(emu.list_credential_count(manifest), 1);
    let written: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let auth = written["auths"][emu.registry()]["auth"]
        .as_str()
        .unwrap_or_else(|| panic!("no auth for {} in {written}", emu.registry()));
    let auth = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap();
    let auth = String::from_utf8(auth).unwrap();
    let (_, acr_token) = auth.split_once(':').unwrap();
    let acr_token = acr_token.to_string();

    // oras pushes one artifact with the config `store login` wrote, and nothing else.
    let values = env.write("values.yaml", b"replicas: 2\n");
    let reference = emu.reference("contoso-values:1.0.0");
    let pushed = oras(&env, &trap, &emu, config.parent().unwrap(), "push")
        .args([&reference, "values.yaml"])
        .run();
    pushed.assert_success();
    let values_digest = oras_digest(&pushed);

    // store push of the other one.
    let template = env.write("template.json", br#"{"resources":[],"by":"store push"}"#);
    let out = run(
        "store push",
        store("push")
            .args(["-o", "json", "contoso-template:1.0.0"])
            .arg(format!("{}:application/json", template.display())),
    );
    let template_digest = out.assert_success().json()["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // store list: both in the store, with the digests oras and store push reported.
    let listed = run("store list", store("list").args(["-o", "json"]));
    let listed = listed.assert_success().json();
    assert_eq!(listed["state"], "Uploading", "{listed}");
    let row = |name: &str| support::store_list_row(&listed, name);
    assert_eq!(row("contoso-values")["inStore"], true, "{listed}");
    assert_eq!(row("contoso-values")["digest"], values_digest.as_str());
    assert_eq!(row("contoso-template")["inStore"], true, "{listed}");
    assert_eq!(row("contoso-template")["digest"], template_digest.as_str());

    // store pull -o DIR: both files back, byte-exact.
    let pulled = env.path("pulled");
    for artifact in ["contoso-template:1.0.0", "contoso-values:1.0.0"] {
        run(
            "store pull",
            store("pull").arg("-o").arg(&pulled).arg(artifact),
        )
        .assert_success();
    }
    assert_eq!(
        std::fs::read(pulled.join("template.json")).unwrap(),
        std::fs::read(&template).unwrap()
    );
    assert_eq!(
        std::fs::read(pulled.join("values.yaml")).unwrap(),
        std::fs::read(&values).unwrap()
    );

    // store seal: the manifest is Uploaded in the emulator.
    let sealed = run("store seal", store("seal").args(["-o", "json"]));
    assert_eq!(sealed.assert_success().json()["state"], "Uploaded");
    assert_eq!(emu.manifest_state(manifest), "Uploaded");

    // The sign-in was az's: signed out, the same command fails and says `az login`.
    az.ok(["logout"]);
    let refused = run("store list after az logout", store("list"));
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.stderr.contains("az login"), "{refused}");

    // No secret in anything our commands printed.
    for (what, out) in &outputs {
        assert_no_secrets(
            &format!("{what} stdout"),
            &out.stdout,
            &[&client_secret, &acr_token],
        );
        assert_no_secrets(
            &format!("{what} stderr"),
            &out.stderr,
            &[&client_secret, &acr_token],
        );
    }
    trap.assert_only_version_check();
}

/// The proxy trap sees what a client sends it (so a trap that saw nothing else means no
/// other request was made).
#[test]
fn the_proxy_trap_records_a_request_for_another_host() {
    let trap = ProxyTrap::start();
    let addr = trap.url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"CONNECT login.microsoftonline.com:443 HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let seen = trap.seen.lock().unwrap();
    assert_eq!(
        seen.as_slice(),
        ["CONNECT login.microsoftonline.com:443 HTTP/1.1"]
    );
}
