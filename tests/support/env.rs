//! A per-test sandbox: a temp directory, an isolated HOME/docker/helm configuration for
//! the external tools, another one for the binary under test, and tool helpers that know
//! how to reach each kind of test registry.

use super::cmd::{Cmd, Output};
use super::endpoint::Endpoint;
use super::registry::Registry;
use super::tools::require;
use base64::Engine as _;
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The binary under test.
pub const OURS: &str = env!("CARGO_BIN_EXE_aosm-artifact-operator");

pub struct TestEnv {
    dir: TempDir,
    /// Registries whose credentials / CA have been given to the tools.
    prepared: RefCell<HashSet<String>>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aosm-test-")
            .tempdir()
            .expect("test temp dir");
        for sub in ["tools-home/.docker", "ours-home/.docker", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(
            dir.path().join("tools-home/.docker/config.json"),
            "{\"auths\":{}}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("tools-home/ca-bundle.pem"), "").unwrap();
        TestEnv {
            dir,
            prepared: RefCell::default(),
        }
    }

    /// The sandbox root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path under the sandbox's `work/` directory (the commands' working directory).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("work").join(rel)
    }

    /// Writes a file under `work/` (creating parents) and returns its path.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn tools_home(&self) -> PathBuf {
        self.dir.path().join("tools-home")
    }

    /// The docker config the external tools use (credentials written by `prepare`).
    pub fn tools_docker_config(&self) -> PathBuf {
        self.tools_home().join(".docker/config.json")
    }

    /// The binary under test, with a HOME of its own (empty `~/.docker`), no inherited
    /// TLS trust variables and no proxy variables.
    pub fn ours(&self) -> Cmd {
        self.ours_env(Cmd::new(OURS))
    }

    /// The binary under test as [`TestEnv::ours`] runs it, under GNU `time`, which writes
    /// the process's peak resident set size (KiB) to `rss_file`; read it with
    /// [`peak_rss_kib`] once the command has exited.
    pub fn ours_measured(&self, rss_file: &Path) -> Cmd {
        let time = super::tools::require("time");
        let cmd = Cmd::new(time)
            .args(["-f", "%M", "-o"])
            .arg(rss_file)
            .arg(OURS);
        self.ours_env(cmd)
    }

    fn ours_env(&self, cmd: Cmd) -> Cmd {
        let home = self.dir.path().join("ours-home");
        cmd.env("HOME", &home)
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env("NO_COLOR", "1")
            .current_dir(self.path(""))
    }

    /// An external tool (crane, oras, helm, skopeo, regctl, ...) with an isolated HOME,
    /// docker config, helm dirs and TLS trust bundle.
    pub fn tool(&self, name: &str) -> Cmd {
        let home = self.tools_home();
        let docker_config = self.tools_docker_config();
        Cmd::new(require(name))
            .env("HOME", &home)
            .env("DOCKER_CONFIG", home.join(".docker"))
            .env("REGISTRY_AUTH_FILE", &docker_config)
            .env("HELM_REGISTRY_CONFIG", &docker_config)
            .env("HELM_CONFIG_HOME", home.join("helm/config"))
            .env("HELM_CACHE_HOME", home.join("helm/cache"))
            .env("HELM_DATA_HOME", home.join("helm/data"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("SSL_CERT_FILE", home.join("ca-bundle.pem"))
            .env_remove("SSL_CERT_DIR")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .current_dir(self.path(""))
    }

    /// Gives the tools (not the binary under test) this registry's credentials and CA.
    pub fn prepare(&self, reg: &Registry) {
        self.prepare_host(
            &reg.host(),
            reg.credentials(),
            reg.tls_files().map(|t| t.ca_pem.as_path()),
        );
    }

    /// Same as [`TestEnv::prepare`] for a host that fronts a registry (e.g. a proxy).
    pub fn prepare_host(&self, host: &str, creds: Option<(&str, &str)>, ca: Option<&Path>) {
        if !self.prepared.borrow_mut().insert(host.to_string()) {
            return;
        }
        if let Some((user, password)) = creds {
            let path = self.tools_docker_config();
            let mut config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            config["auths"][host] = serde_json::json!({ "auth": auth });
            std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        }
        if let Some(ca) = ca {
            let bundle = self.tools_home().join("ca-bundle.pem");
            let mut pem = std::fs::read(&bundle).unwrap();
            pem.extend(std::fs::read(ca).unwrap());
            std::fs::write(&bundle, pem).unwrap();
        }
    }

    /// Writes a docker `config.json` with an `auths` entry for `host` at `rel` (for the
    /// binary's `--registry-config`) and returns its path.
    pub fn docker_config_file(&self, rel: &str, host: &str, user: &str, password: &str) -> PathBuf {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let config = serde_json::json!({ "auths": { host: { "auth": auth } } });
        self.write(rel, serde_json::to_vec_pretty(&config).unwrap())
    }

    // ----- the binary under test ---------------------------------------------

    /// `aosm-artifact-operator copy --output json [src flags] [dst flags] [extra] SRC DST`.
    pub fn copy<'a>(
        &self,
        src: impl Into<Endpoint>,
        src_path: &str,
        dst: impl Into<Endpoint>,
        dst_path: &str,
        extra: impl IntoIterator<Item = &'a str>,
    ) -> Cmd {
        let (src, dst) = (src.into(), dst.into());
        self.ours()
            .args(["copy", "--output", "json"])
            .args(src.flags("from"))
            .args(dst.flags("to"))
            .args(extra)
            .arg(src.reference(src_path))
            .arg(dst.reference(dst_path))
    }

    /// `aosm-artifact-operator push --output json [dst flags] [extra] DST FILE...`.
    pub fn push<'a>(
        &self,
        dst: impl Into<Endpoint>,
        dst_path: &str,
        extra: impl IntoIterator<Item = &'a str>,
        files: &[&str],
    ) -> Cmd {
        let dst = dst.into();
        self.ours()
            .args(["push", "--output", "json"])
            .args(dst.flags("to"))
            .args(extra)
            .arg(dst.reference(dst_path))
            .args(files)
    }

    // ----- crane ---------------------------------------------------------------

    /// `crane` prepared for `reg` (plain HTTP registries get `--insecure`).
    pub fn crane(&self, reg: &Registry) -> Cmd {
        self.prepare(reg);
        let cmd = self.tool("crane");
        if reg.is_tls() {
            cmd
        } else {
            cmd.arg("--insecure")
        }
    }

    /// `crane digest <reg>/<path>`; fails the test if the manifest cannot be read.
    pub fn crane_digest(&self, reg: &Registry, path: &str) -> String {
        let out = self.crane(reg).args(["digest", &reg.reference(path)]).ok();
        out.stdout.trim().to_string()
    }

    /// Fails the test if `<reg>/<path>` resolves (used to check that nothing was tagged).
    #[track_caller]
    pub fn assert_absent(&self, reg: &Registry, path: &str) {
        let out = self.try_crane_digest(reg, path);
        assert!(
            !out.success(),
            "{path} must not exist at the destination\n{out}"
        );
        assert!(
            out.stderr.contains("MANIFEST_UNKNOWN")
                || out.stderr.contains("NAME_UNKNOWN")
                || out.stderr.contains("404"),
            "crane digest failed, but not with 'unknown manifest'\n{out}"
        );
        let skopeo = self.try_skopeo_raw(reg, path);
        assert!(skopeo.is_err(), "skopeo can read {path} at the destination");
    }

    /// `crane digest` without asserting success (to check something is absent).
    pub fn try_crane_digest(&self, reg: &Registry, path: &str) -> Output {
        self.crane(reg).args(["digest", &reg.reference(path)]).run()
    }

    /// `crane manifest` bytes.
    pub fn crane_manifest(&self, reg: &Registry, path: &str) -> Vec<u8> {
        let out = self
            .crane(reg)
            .args(["manifest", &reg.reference(path)])
            .ok();
        out.stdout.into_bytes()
    }

    // ----- skopeo --------------------------------------------------------------

    fn skopeo_transport_flags(reg: &Registry, prefix: &str) -> Vec<String> {
        match reg.tls_files() {
            Some(tls) => vec![format!("--{prefix}cert-dir={}", tls.cert_dir.display())],
            None => vec![format!("--{prefix}tls-verify=false")],
        }
    }

    /// `skopeo inspect --raw docker://<reg>/<path>` (raw manifest bytes), or the failed
    /// command's output.
    pub fn try_skopeo_raw(&self, reg: &Registry, path: &str) -> Result<Vec<u8>, Output> {
        self.prepare(reg);
        let out = self
            .tool("skopeo")
            .args(["inspect", "--raw"])
            .args(Self::skopeo_transport_flags(reg, ""))
            .arg(format!("docker://{}", reg.reference(path)))
            .run();
        if out.success() {
            Ok(out.stdout.into_bytes())
        } else {
            Err(out)
        }
    }

    /// Raw manifest via skopeo; fails the test on error.
    pub fn skopeo_raw(&self, reg: &Registry, path: &str) -> Vec<u8> {
        self.try_skopeo_raw(reg, path)
            .unwrap_or_else(|out| panic!("skopeo inspect failed\n{out}"))
    }

    /// sha256 of the raw manifest bytes as skopeo reads them.
    pub fn skopeo_digest(&self, reg: &Registry, path: &str) -> String {
        super::sha256_digest(&self.skopeo_raw(reg, path))
    }

    /// `skopeo copy --all` between two registries (keeps digests).
    pub fn skopeo_copy(
        &self,
        src: &Registry,
        src_path: &str,
        dst: &Registry,
        dst_path: &str,
        extra: &[&str],
    ) -> Output {
        self.prepare(src);
        self.prepare(dst);
        self.tool("skopeo")
            .args(["--insecure-policy", "copy", "--all", "--retry-times", "2"])
            .args(Self::skopeo_transport_flags(src, "src-"))
            .args(Self::skopeo_transport_flags(dst, "dest-"))
            .args(extra)
            .arg(format!("docker://{}", src.reference(src_path)))
            .arg(format!("docker://{}", dst.reference(dst_path)))
            .ok()
    }

    // ----- oras ----------------------------------------------------------------

    /// Transport flags for oras/helm.
    pub fn oras_flags(reg: &Registry) -> Vec<String> {
        match reg.tls_files() {
            Some(tls) => vec!["--ca-file".into(), tls.ca_pem.display().to_string()],
            None => vec!["--plain-http".into()],
        }
    }

    /// `oras` prepared for `reg`; the caller adds the subcommand and `oras_flags`.
    pub fn oras(&self, reg: &Registry) -> Cmd {
        self.prepare(reg);
        self.tool("oras")
    }

    // ----- helm ----------------------------------------------------------------

    /// `helm` prepared for `reg` (for OCI commands; the caller adds `helm_flags`).
    pub fn helm(&self, reg: &Registry) -> Cmd {
        self.prepare(reg);
        self.tool("helm")
    }

    /// Transport flags for `helm push/pull` against `reg` (helm v4).
    pub fn helm_flags(reg: &Registry) -> Vec<String> {
        match reg.tls_files() {
            Some(tls) => vec!["--ca-file".into(), tls.ca_pem.display().to_string()],
            None => vec!["--plain-http".into()],
        }
    }
}

/// The peak resident set size (KiB) GNU `time -f %M -o FILE` recorded (see
/// [`TestEnv::ours_measured`]).
pub fn peak_rss_kib(rss_file: &Path) -> u64 {
    let text = std::fs::read_to_string(rss_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", rss_file.display()));
    // GNU time writes "Command exited with non-zero status N" first when the command failed.
    text.lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS in {}: {text:?}", rss_file.display()))
}
