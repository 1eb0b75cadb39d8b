//! A real Kubernetes control plane for tests: `etcd` + `kube-apiserver`, envtest-style
//! (no controllers, no kubelet, no scheduler), on free ports of 127.0.0.1.
//!
//! # Where the binaries come from
//!
//! [`assets_dir`] — the one rule, the same as `kube_assets` in `scripts/lib.sh`:
//! `$AOSM_KUBE_ASSETS`, else `$KUBEBUILDER_ASSETS` when it holds both `kube-apiserver` and
//! `etcd`, else `${XDG_CACHE_HOME:-$HOME/.cache}/aosm-artifact-operator/kube/<k8s-version>`
//! where `scripts/tools.sh` builds them from the Go modules in `scripts/kube/` (the version
//! is read from `scripts/kube/apiserver/go.mod`). A missing binary fails the test with
//! "run scripts/tools.sh".
//!
//! # What runs
//!
//! etcd with `--unsafe-no-fsync` (a throw-away store); kube-apiserver serving
//! `https://127.0.0.1:PORT` with a certificate of a per-cluster test CA (made with openssl),
//! client-certificate authentication (the kubeconfig's user is `admin` in `system:masters`),
//! RBAC authorization, service-account keys, `--endpoint-reconciler-type=none` and the
//! `ServiceAccount` admission plugin disabled (there is no controller-manager to make
//! tokens). [`KubeCluster::start`] returns once `/readyz` says `ok` (~3.5 s on 2 cores).
//!
//! # One cluster per test, or one per test binary
//!
//! - [`KubeCluster::start`] gives a test its own cluster, stopped (SIGKILL) and removed on
//!   drop. The processes are spawned from the calling (test) thread with
//!   `PR_SET_PDEATHSIG`, so they also die if the test binary is killed. Use it when a test
//!   needs a pristine API server (e.g. a controller that watches everything).
//! - [`KubeCluster::shared`] gives every test of a binary the same cluster, started by the
//!   first caller. Starting costs ~3.5 s of both cores, so a test file with several tests
//!   should share it and keep its tests apart with their own namespaces and object names
//!   (libtest runs them on parallel threads). Since `PR_SET_PDEATHSIG` fires when the
//!   *thread* that spawned a child exits — and each test runs on its own thread — the shared
//!   cluster is spawned from a dedicated thread that never exits. A `static` is never
//!   dropped, so an `atexit` handler stops the processes and removes the temp dir when the
//!   test binary exits (libtest exits through `exit` whether tests passed or failed); if the
//!   binary is killed, the kernel still kills both processes, and the next cluster started
//!   removes the temp dir left behind (`$TMPDIR/aosm-kube-<pid>-*` of a pid that is gone).

use super::cmd::{Cmd, Output, die_with_parent};
use super::registry::free_port;
use super::rt;
use super::tools;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Upper bound for `/readyz` to say `ok` (typically ~3.5 s; generous for a loaded CI box).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts to start when a port picked as free was taken meanwhile by another process.
const START_ATTEMPTS: usize = 3;
/// How long CRDs may take to become Established and discoverable.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root (the test crate's manifest dir).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Kubernetes version pinned by `scripts/kube/apiserver/go.mod`, e.g. `v1.35.4`.
pub fn kube_version() -> String {
    let go_mod = root().join("scripts/kube/apiserver/go.mod");
    let text = std::fs::read_to_string(&go_mod)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", go_mod.display()));
    text.lines()
        .map(|l| l.trim().trim_start_matches("require").trim())
        .find_map(|l| l.strip_prefix("k8s.io/kubernetes "))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{} does not require k8s.io/kubernetes", go_mod.display()))
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The directory holding `kube-apiserver` and `etcd` (see the module documentation).
pub fn assets_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("AOSM_KUBE_ASSETS") {
        return dir;
    }
    if let Some(dir) = non_empty_env("KUBEBUILDER_ASSETS")
        && is_executable(&dir.join("kube-apiserver"))
        && is_executable(&dir.join("etcd"))
    {
        return dir;
    }
    let cache = non_empty_env("XDG_CACHE_HOME").unwrap_or_else(|| {
        non_empty_env("HOME")
            .expect("HOME is not set")
            .join(".cache")
    });
    cache
        .join("aosm-artifact-operator")
        .join("kube")
        .join(kube_version())
}

/// Path of `kube-apiserver` or `etcd`; fails the test (never skips it) when missing.
pub fn require_asset(name: &str) -> PathBuf {
    let path = assets_dir().join(name);
    assert!(
        is_executable(&path),
        "{} is missing: run scripts/tools.sh (or `make test`, which runs it) to build \
         kube-apiserver and etcd, or point AOSM_KUBE_ASSETS / KUBEBUILDER_ASSETS at a \
         directory holding both",
        path.display()
    );
    path
}

/// Files of the cluster's PKI (all PEM).
#[derive(Clone, Debug)]
pub struct KubePki {
    pub ca_crt: PathBuf,
    pub server_crt: PathBuf,
    pub server_key: PathBuf,
    /// `CN=admin, O=system:masters`, signed by the CA (client authentication).
    pub admin_crt: PathBuf,
    pub admin_key: PathBuf,
    /// Service-account token signing key pair.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

/// A throw-away CA, a serving certificate for 127.0.0.1/localhost/the service IP, an
/// admin client certificate and a service-account key pair, all ECDSA P-256, in `dir`.
pub fn make_kube_pki(dir: &Path) -> KubePki {
    std::fs::create_dir_all(dir).expect("create the PKI dir");
    let openssl = tools::require("openssl");
    let run = |args: &[&str]| {
        Cmd::new(&openssl).args(args).current_dir(dir).ok();
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,\
         DNS:kubernetes.default,DNS:kubernetes.default.svc\n",
    )
    .expect("write server.ext");
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\n",
    )
    .expect("write client.ext");
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "7",
        "-subj",
        "/CN=aosm-artifact-operator test kube CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&ca);
    for (name, subject, ext) in [
        ("server", "/CN=kube-apiserver", "server.ext"),
        ("admin", "/O=system:masters/CN=admin", "client.ext"),
    ] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let mut req = vec!["req", "-new"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
        run(&req);
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            // Distinct serials for the two leaves.
            if name == "server" { "2" } else { "3" },
            "-days",
            "7",
            "-extfile",
            ext,
            "-out",
            &crt,
        ]);
    }
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "sa.key",
    ]);
    run(&["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    KubePki {
        ca_crt: dir.join("ca.crt"),
        server_crt: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        admin_crt: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    }
}

/// A kubeconfig for `server` with the CA and the admin client certificate embedded.
pub fn kubeconfig_yaml(server: &str, pki: &KubePki) -> String {
    let b64 = |p: &Path| {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
    };
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: aosm-test\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: admin\n  \
           user:\n    \
             client-certificate-data: {crt}\n    \
             client-key-data: {key}\n\
         contexts:\n\
         - name: aosm-test\n  \
           context:\n    \
             cluster: aosm-test\n    \
             user: admin\n    \
             namespace: default\n\
         current-context: aosm-test\n",
        ca = b64(&pki.ca_crt),
        crt = b64(&pki.admin_crt),
        key = b64(&pki.admin_key),
    )
}

/// A running etcd + kube-apiserver; both SIGKILLed and the temp dir removed on drop.
pub struct KubeCluster {
    port: u16,
    dir: PathBuf,
    kubeconfig: PathBuf,
    pki: KubePki,
    /// The temp dir; taken (and so removed) by [`KubeCluster::shutdown`].
    tmp: Mutex<Option<TempDir>>,
    /// kube-apiserver then etcd; emptied by [`KubeCluster::shutdown`].
    procs: Mutex<Vec<Child>>,
}

enum StartError {
    /// A port was taken between picking it and binding it: try other ports.
    PortTaken(String),
    Failed(String),
}

impl KubeCluster {
    /// Starts a cluster owned by the caller (see the module documentation).
    pub fn start() -> KubeCluster {
        let apiserver = require_asset("kube-apiserver");
        let etcd = require_asset("etcd");
        remove_stale_dirs();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("aosm-kube-{}-", std::process::id()))
            .tempdir()
            .expect("create the cluster's temp dir");
        let dir = tmp.path().to_path_buf();
        let pki = make_kube_pki(&dir.join("pki"));
        let started = Instant::now();
        let mut last = String::new();
        let mut tmp = Some(tmp);
        for attempt in 1..=START_ATTEMPTS {
            let _ = std::fs::remove_dir_all(dir.join("etcd"));
            let cluster = KubeCluster {
                port: free_port(),
                kubeconfig: dir.join("kubeconfig"),
                dir: dir.clone(),
                pki: pki.clone(),
                tmp: Mutex::new(None),
                procs: Mutex::new(Vec::new()),
            };
            match cluster.spawn_and_wait(&etcd, &apiserver) {
                Ok(()) => {
                    *cluster.tmp.lock().unwrap() = tmp.take();
                    eprintln!(
                        "[kube] API server {} ready after {:.1?} (dir {})",
                        cluster.server(),
                        started.elapsed(),
                        dir.display()
                    );
                    return cluster;
                }
                Err(StartError::PortTaken(log)) => {
                    eprintln!("[kube] attempt {attempt}: a port was taken, retrying");
                    last = log;
                    cluster.kill_processes();
                }
                Err(StartError::Failed(log)) => {
                    cluster.kill_processes();
                    panic!("the test Kubernetes API server did not start:\n{log}");
                }
            }
        }
        panic!(
            "the test Kubernetes API server could not get free ports in {START_ATTEMPTS} \
             attempts:\n{last}"
        );
    }

    /// The cluster shared by every test of this test binary, started on first use (see the
    /// module documentation). If it fails to start, every caller fails with the reason.
    pub fn shared() -> &'static KubeCluster {
        let result = SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("kube-cluster".into())
                .spawn(move || {
                    let started = std::panic::catch_unwind(KubeCluster::start).map_err(|e| {
                        e.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "KubeCluster::start panicked".into())
                    });
                    let ok = started.is_ok();
                    let _ = tx.send(started);
                    // The processes die with this thread (PR_SET_PDEATHSIG): it must live as
                    // long as the process.
                    if ok {
                        loop {
                            std::thread::park();
                        }
                    }
                });
            if let Err(e) = spawned {
                return Err(format!("cannot spawn the kube-cluster thread: {e}"));
            }
            let cluster = rx
                .recv()
                .map_err(|_| "the kube-cluster thread died".to_string())??;
            // SAFETY: registers a plain `extern "C" fn` with no arguments.
            unsafe {
                libc::atexit(shutdown_shared);
            }
            Ok(cluster)
        });
        match result {
            Ok(cluster) => cluster,
            Err(e) => panic!("the shared test cluster did not start: {e}"),
        }
    }

    fn spawn_and_wait(&self, etcd: &Path, apiserver: &Path) -> Result<(), StartError> {
        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            "--name".to_string(),
            "aosm-test".into(),
            "--data-dir".into(),
            self.dir.join("etcd").display().to_string(),
            "--listen-client-urls".into(),
            etcd_url.clone(),
            "--advertise-client-urls".into(),
            etcd_url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("aosm-test={peer_url}"),
            // Throw-away data: no fsync (what envtest does too).
            "--unsafe-no-fsync".into(),
        ];
        self.spawn("etcd", etcd, &etcd_args)?;

        let pki = &self.pki;
        let p = |path: &Path| path.display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.port),
            format!("--cert-dir={}", p(&self.dir.join("certdir"))),
            format!("--tls-cert-file={}", p(&pki.server_crt)),
            format!("--tls-private-key-file={}", p(&pki.server_key)),
            format!("--client-ca-file={}", p(&pki.ca_crt)),
            format!("--service-account-key-file={}", p(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
            // The issuer is the API server's own URL, which serves OpenID discovery and the
            // keys (readable without credentials, see `allow_issuer_discovery`): the
            // emulator's Entra verifies service account tokens against them, as Entra does.
            format!("--service-account-issuer=https://127.0.0.1:{}", self.port),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            // No controller-manager makes service-account tokens, no controller keeps the
            // `kubernetes` Service's endpoints.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--endpoint-reconciler-type=none".into(),
        ];
        self.spawn("kube-apiserver", apiserver, &apiserver_args)?;
        std::fs::write(&self.kubeconfig, kubeconfig_yaml(&self.server(), pki))
            .map_err(|e| StartError::Failed(format!("write the kubeconfig: {e}")))?;
        self.wait_ready()?;
        self.allow_issuer_discovery();
        Ok(())
    }

    /// Lets anyone read the service account issuer's discovery document and keys (what a
    /// cluster federated with Entra ID publishes); Kubernetes binds the role to service
    /// accounts only.
    fn allow_issuer_discovery(&self) {
        self.kubectl_cmd()
            .args([
                "create",
                "clusterrolebinding",
                "issuer-discovery-for-everyone",
                "--clusterrole=system:service-account-issuer-discovery",
                "--group=system:unauthenticated",
            ])
            .ok();
    }

    /// The service account issuer (`iss` of its tokens): the API server's URL.
    pub fn issuer(&self) -> String {
        self.server()
    }

    /// A token of ServiceAccount `namespace/name` for `audience` (TokenRequest, one hour),
    /// as the kubelet projects it for workload identity. Creates the ServiceAccount first.
    pub fn service_account_token(&self, namespace: &str, name: &str, audience: &str) -> String {
        self.kubectl_cmd()
            .args(["create", "serviceaccount", name, "-n", namespace])
            .ok();
        let out = self
            .kubectl_cmd()
            .args(["create", "token", name, "-n", namespace, "--duration=1h"])
            .arg(format!("--audience={audience}"))
            .ok();
        out.stdout.trim().to_string()
    }

    fn spawn(&self, name: &str, bin: &Path, args: &[String]) -> Result<(), StartError> {
        let log = std::fs::File::create(self.log_path(name))
            .map_err(|e| StartError::Failed(format!("create {name}.log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| StartError::Failed(format!("dup {name}.log: {e}")))?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| StartError::Failed(format!("cannot start {}: {e}", bin.display())))?;
        self.procs.lock().unwrap().push(child);
        Ok(())
    }

    /// Polls `/readyz` (as admin) until it answers `ok`; fails early if a process exits.
    fn wait_ready(&self) -> Result<(), StartError> {
        let read = |p: &Path| std::fs::read(p).unwrap_or_default();
        let mut identity = read(&self.pki.admin_crt);
        identity.extend(read(&self.pki.admin_key));
        let http = reqwest::Client::builder()
            .tls_certs_only(
                reqwest::Certificate::from_pem_bundle(&read(&self.pki.ca_crt))
                    .map_err(|e| StartError::Failed(format!("test CA: {e}")))?,
            )
            .identity(
                reqwest::Identity::from_pem(&identity)
                    .map_err(|e| StartError::Failed(format!("admin identity: {e}")))?,
            )
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| StartError::Failed(format!("reqwest client: {e}")))?;
        let url = format!("{}/readyz", self.server());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(exited) = self.exited() {
                let logs = self.logs();
                return Err(if logs.contains("address already in use") {
                    StartError::PortTaken(logs)
                } else {
                    StartError::Failed(format!("{exited}\n{logs}"))
                });
            }
            let answer = rt::block_on(async {
                let resp = http.get(&url).send().await?;
                let status = resp.status();
                Ok::<_, reqwest::Error>((status, resp.text().await?))
            });
            let last_answer = match answer {
                Ok((status, body)) if status.is_success() && body.trim() == "ok" => return Ok(()),
                Ok((status, body)) => format!("{status}: {body}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(StartError::Failed(format!(
                    "{url} did not say ok within {READY_TIMEOUT:?}; last answer: \
                     {last_answer}\n{}",
                    self.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Some(description)` once etcd or kube-apiserver has exited.
    fn exited(&self) -> Option<String> {
        let mut procs = self.procs.lock().unwrap();
        for (child, name) in procs.iter_mut().zip(["etcd", "kube-apiserver"]) {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!("{name} exited with {status}"));
            }
        }
        None
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// The last lines of a process's log (`"etcd"` or `"kube-apiserver"`).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Both logs' last lines, for failure messages.
    pub fn logs(&self) -> String {
        ["etcd", "kube-apiserver"]
            .iter()
            .map(|name| {
                format!(
                    "--- {name}.log (last 40 lines) ---\n{}",
                    self.log_tail(name, 40)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn kill_processes(&self) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        // The API server first, so it does not log etcd going away.
        while let Some(mut child) = procs.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs both processes and removes the temp dir. Idempotent; never panics.
    pub fn shutdown(&self) {
        self.kill_processes();
        let tmp = self.tmp.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tmp);
    }

    /// `https://127.0.0.1:PORT`
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's temp dir (logs, PKI, etcd data, kubeconfig).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pki(&self) -> &KubePki {
        &self.pki
    }

    /// A kubeconfig file (CA and admin client certificate embedded; namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl --kubeconfig <this cluster> --cache-dir <this cluster's>` (kubectl from the
    /// tool cache), to add arguments, stdin or a timeout to.
    pub fn kubectl_cmd(&self) -> Cmd {
        Cmd::new(tools::require("kubectl"))
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            // Discovery is cached per cluster, never in ~/.kube: a port reused by a later
            // cluster must not see this one's resources.
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
    }

    /// Runs kubectl with `args` against this cluster (the caller checks the outcome).
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.kubectl_cmd().args(args).run()
    }

    /// A `kube::Client` for this cluster, as admin.
    pub async fn client(&self) -> ::kube::Client {
        let kubeconfig = ::kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .expect("read the test cluster's kubeconfig");
        let config = ::kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("load the test cluster's kubeconfig");
        ::kube::Client::try_from(config).expect("build a kube::Client for the test cluster")
    }

    /// `kubectl apply --server-side -f crds/`, then waits until every CRD is Established
    /// and its resources are discoverable. Idempotent; returns the apply's output.
    pub fn apply_crds(&self) -> Output {
        self.apply_crds_from(&root().join("crds"))
    }

    /// [`KubeCluster::apply_crds`] for the CRDs in another directory (Flux's, say).
    pub fn apply_crds_from(&self, crds: &Path) -> Output {
        let out = self
            .kubectl_cmd()
            .args(["apply", "--server-side", "--field-manager=aosm-tests", "-f"])
            .arg(crds)
            .run();
        assert!(
            out.success(),
            "kubectl apply of {} failed\n{out}",
            crds.display()
        );
        self.kubectl_cmd()
            .args(["wait", "--for=condition=Established"])
            .arg(format!("--timeout={}s", CRD_TIMEOUT.as_secs()))
            .arg("-f")
            .arg(crds)
            .ok();
        // Established does not mean discovery lists the resources yet (kubectl get by
        // resource name, short name or category needs it).
        let want = crd_resource_names(crds);
        super::wait_for("the CRDs' resources in discovery", CRD_TIMEOUT, || {
            let listed = self.kubectl(["api-resources", "--cached=false", "-o", "name"]);
            let names: Vec<&str> = listed.stdout.lines().collect();
            want.iter()
                .all(|w| names.contains(&w.as_str()))
                .then_some(())
        });
        out
    }

    /// Creates (or updates) a namespace with labels.
    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let ns = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": labels },
        });
        self.kubectl_cmd()
            .args([
                "apply",
                "--server-side",
                "--field-manager=aosm-tests",
                "-f",
                "-",
            ])
            .stdin(ns.to_string())
            .ok();
    }
}

/// Removes `$TMPDIR/aosm-kube-<pid>-*` dirs of processes that no longer exist (a test
/// binary killed before its clean-up ran).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("aosm-kube-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `plural.group` of every CRD in `dir` (what `kubectl api-resources -o name` prints).
fn crd_resource_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("read crds/").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a CRD file");
        let crd: serde_json::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        let plural = crd["spec"]["names"]["plural"].as_str().expect("CRD plural");
        let group = crd["spec"]["group"].as_str().expect("CRD group");
        names.push(format!("{plural}.{group}"));
    }
    names
}

static SHARED: OnceLock<Result<KubeCluster, String>> = OnceLock::new();

extern "C" fn shutdown_shared() {
    if let Some(Ok(cluster)) = SHARED.get() {
        cluster.shutdown();
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
