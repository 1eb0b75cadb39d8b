//! Flux for real: the unmodified source-controller and kustomize-controller that
//! `scripts/tools.sh` builds from their Go modules (`scripts/flux/`), run out of cluster
//! against a test cluster, and Flux OCI artifacts pushed with oras in the layout
//! `flux push artifact` writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::cmd::die_with_parent;
use super::env::TestEnv;
use super::kube::KubeCluster;
use super::registry::{Registry, free_port};
use super::{rt, tools, wait_for};

/// The media types of a Flux OCI artifact (`flux push artifact`): an empty JSON config
/// and one gzipped tarball of the manifests.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
pub const CONTENT_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";

/// The namespace the Flux objects live in, as in a real installation.
pub const FLUX_NS: &str = "flux-system";

/// Where `scripts/tools.sh` puts the CRDs of the Flux controllers it builds (resolved:
/// the cache holds a symbolic link, which `kubectl apply -f` does not enter).
pub fn crds_dir() -> PathBuf {
    let link = tools::tools_dir().join("flux-crds");
    std::fs::canonicalize(&link).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run scripts/tools.sh (or `make test`) to build Flux",
            link.display()
        )
    })
}

/// source-controller and kustomize-controller, running; killed on drop.
pub struct Flux {
    children: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Flux {
    /// Installs Flux's CRDs and the `flux-system` namespace, then starts both controllers
    /// (logs under `dir`) and waits until each answers its readiness probe.
    pub fn start(cluster: &KubeCluster, dir: &Path) -> Flux {
        cluster.apply_crds_from(&crds_dir());
        cluster.create_namespace(FLUX_NS, &[]);
        std::fs::create_dir_all(dir).expect("the Flux log dir");
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).expect("source-controller's storage dir");
        let storage_port = free_port();
        let mut flux = Flux {
            children: Vec::new(),
            dir: dir.to_path_buf(),
        };
        let mut probes = Vec::new();
        for name in ["source-controller", "kustomize-controller"] {
            let health_port = free_port();
            let mut args = vec![
                format!("--metrics-addr=127.0.0.1:{}", free_port()),
                format!("--health-addr=127.0.0.1:{health_port}"),
                "--enable-leader-election=false".to_string(),
                "--watch-all-namespaces=true".to_string(),
                "--log-level=debug".to_string(),
                // A Kustomization whose dependency is not Ready yet is looked at again
                // after this (30s by default).
                "--requeue-dependency=2s".to_string(),
            ];
            if name == "source-controller" {
                args.push(format!("--storage-path={}", storage.display()));
                args.push(format!("--storage-addr=127.0.0.1:{storage_port}"));
                args.push(format!("--storage-adv-addr=127.0.0.1:{storage_port}"));
            }
            let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("a log file");
            let mut cmd = Command::new(tools::require(name));
            cmd.args(&args)
                .env("KUBECONFIG", cluster.kubeconfig_path())
                .env("RUNTIME_NAMESPACE", FLUX_NS)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone a log handle"))
                .stderr(log);
            die_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
            flux.children.push((name.to_string(), child));
            probes.push((name, format!("http://127.0.0.1:{health_port}/readyz")));
        }
        for (name, url) in probes {
            wait_for(
                &format!("{name} to be ready"),
                Duration::from_secs(60),
                || {
                    flux.assert_running();
                    let code = rt::block_on(async {
                        reqwest::get(&url).await.map(|r| r.status().as_u16()).ok()
                    });
                    (code == Some(200)).then_some(())
                },
            );
        }
        flux
    }

    /// Fails the test (with the logs) if a controller has exited.
    pub fn assert_running(&mut self) {
        let mut exited = Vec::new();
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                exited.push(format!("{name} exited with {status}"));
            }
        }
        if !exited.is_empty() {
            panic!("{}\n{}", exited.join("; "), self.logs(60));
        }
    }

    /// The last `lines` lines of each controller's log.
    pub fn logs(&self, lines: usize) -> String {
        self.children
            .iter()
            .map(|(name, _)| {
                let text = std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                    .unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!("--- {name} (last {lines} lines)\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Flux {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pushes the directory `content` as a Flux OCI artifact to `reg` at `repo:tag` (a tar.gz
/// made by `tar`, pushed by oras with Flux's media types and the annotations `flux push
/// artifact` sets); returns the manifest digest.
pub fn push_artifact(
    env: &TestEnv,
    reg: &Registry,
    repo: &str,
    tag: &str,
    content: &Path,
    revision: &str,
) -> String {
    let work = env.path(&format!("flux-push/{repo}/{revision}"));
    std::fs::create_dir_all(&work).expect("a push dir");
    let tgz = work.join("content.tar.gz");
    env.tool("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(content)
        .arg(".")
        .ok();
    std::fs::write(work.join("config.json"), "{}").expect("write the config");
    let reference = reg.reference(&format!("{repo}:{tag}"));
    let out = env
        .tool("oras")
        .current_dir(&work)
        .arg("push")
        .arg("--plain-http")
        .args(["--image-spec", "v1.0"])
        .arg("--config")
        .arg(format!("config.json:{CONFIG_MEDIA_TYPE}"))
        .args([
            "--annotation",
            "org.opencontainers.image.source=https://github.com/contoso/cnf-publish",
            "--annotation",
        ])
        .arg(format!("org.opencontainers.image.revision={revision}"))
        .args(["--format", "go-template={{.digest}}"])
        .arg(&reference)
        .arg(format!("content.tar.gz:{CONTENT_MEDIA_TYPE}"))
        .ok();
    let digest = out.stdout.trim().to_string();
    assert!(
        digest.starts_with("sha256:"),
        "oras push printed no digest\n{out}"
    );
    digest
}
