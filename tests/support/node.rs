//! The node tier's cluster: a real single-node Kubernetes cluster on this machine, brought
//! up and torn down by `scripts/cluster.sh up --node DIR` / `down DIR` (containerd,
//! kubelet, kube-proxy, kube-scheduler, kube-controller-manager next to etcd +
//! kube-apiserver; see `scripts/kube/node.sh`). Needs root, and one such cluster runs per
//! machine (a bridge, fixed ports): `tests/node_e2e.rs` starts it once and runs its cases one
//! after another.
//!
//! Every address of the cluster is inside one private /16 on a bridge of this machine. A
//! server that pods must reach listens on [`NodeCluster::node_ip`] (the bridge address, also
//! the node's and the API server's), e.g. a [`Registry`] started with
//! [`NodeCluster::registry`]; the kubeconfig is [`NodeCluster::kubeconfig`]. Both are read
//! from `DIR/node/env`, which `up --node` writes.

use super::cmd::{Cmd, Output};
use super::registry::{Registry, RegistryOptions};
use super::tools;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Upper bound for `up --node` (Node Ready in ~8 s here; generous for a loaded CI box).
pub const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// Upper bound for `down` (deletes the pods, then stops everything).
pub const DOWN_TIMEOUT: Duration = Duration::from_secs(180);

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `Err` with a one-line reason unless this process runs as root.
pub fn require_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(
            "the node tier needs root (a network bridge, iptables, cgroups, mounts): \
             run `sudo -E make test-node`, or as root"
                .into(),
        )
    }
}

/// A running node cluster (stopped only by [`NodeCluster::down`], never on drop: the test
/// main decides when, also after a panic or a signal).
pub struct NodeCluster {
    dir: PathBuf,
    env: BTreeMap<String, String>,
    /// What `up` printed (the bridge address, how to use it).
    pub up_output: String,
    /// How long `up --node` took.
    pub up_time: Duration,
}

impl NodeCluster {
    /// `scripts/cluster.sh up --node DIR`; on failure `Err` holds its output (the caller
    /// still runs [`down`] on DIR: a failed `up` may have made host changes).
    pub fn up(dir: &Path) -> Result<NodeCluster, String> {
        let started = Instant::now();
        let out = Cmd::new("bash")
            .arg(root().join("scripts/cluster.sh"))
            .args(["up", "--node"])
            .arg(dir)
            .timeout(UP_TIMEOUT)
            .run();
        if !out.success() {
            return Err(format!("scripts/cluster.sh up --node failed\n{out}"));
        }
        let env_file = dir.join("node/env");
        let text = std::fs::read_to_string(&env_file)
            .map_err(|e| format!("read {}: {e}\n{out}", env_file.display()))?;
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(NodeCluster {
            dir: dir.to_path_buf(),
            env,
            up_output: out.stdout.clone(),
            up_time: started.elapsed(),
        })
    }

    /// A value of `DIR/node/env` (NODE_IP, BRIDGE, NET_CIDR, SERVICE_CIDR,
    /// KUBERNETES_SERVICE_IP, API_SERVER, SA_ISSUER, NODE_NAME, CONTAINERD_SOCK,
    /// REGISTRY_HOSTS_DIR, KUBECONFIG).
    pub fn env(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not in {}/node/env", self.dir.display()))
    }

    /// The bridge address: the node IP, the API server's address, where servers that pods
    /// must reach listen (e.g. `10.88.0.1`).
    pub fn node_ip(&self) -> std::net::Ipv4Addr {
        self.env("NODE_IP")
            .parse()
            .unwrap_or_else(|e| panic!("NODE_IP {:?}: {e}", self.env("NODE_IP")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (`https://<bridge address>:<port>`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// `kubectl ARGS` against the cluster (not checked).
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Cmd::new(tools::require("kubectl"))
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .run()
    }

    /// `kubectl apply -f -` of `yaml`; panics on failure.
    #[track_caller]
    pub fn apply(&self, yaml: &str) {
        let out = Cmd::new(tools::require("kubectl"))
            .env("KUBECONFIG", self.kubeconfig())
            .args(["apply", "-f", "-"])
            .stdin(yaml)
            .run();
        assert!(out.success(), "kubectl apply failed\n{out}\n{yaml}");
    }

    /// `.status.phase` and whether the Ready condition is True, of pod `ns/name`.
    pub fn pod_state(&self, ns: &str, name: &str) -> Option<(String, bool)> {
        let out = self.kubectl([
            "-n",
            ns,
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.status.phase} {.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if !out.success() {
            return None;
        }
        let text = out.stdout.trim().to_string();
        let (phase, ready) = text.split_once(' ').unwrap_or((&text, ""));
        Some((phase.to_string(), ready == "True"))
    }

    /// Polls until pod `ns/name` is Ready (or has `Succeeded` when `until_succeeded`); on
    /// timeout or failure panics with `kubectl describe` and its logs.
    #[track_caller]
    pub fn wait_pod(&self, ns: &str, name: &str, until_succeeded: bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.pod_state(ns, name);
            match &state {
                Some((phase, _)) if until_succeeded && phase == "Succeeded" => return,
                Some((phase, true)) if !until_succeeded && phase == "Running" => return,
                Some((phase, _)) if phase == "Failed" => break,
                _ => {}
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let describe = self.kubectl(["-n", ns, "describe", "pod", name]);
        let logs = self.kubectl(["-n", ns, "logs", name, "--all-containers"]);
        panic!(
            "pod {ns}/{name} did not become {} within {timeout:?}\n{describe}\n{logs}",
            if until_succeeded {
                "Succeeded"
            } else {
                "Ready"
            }
        );
    }

    /// Lets containerd pull from the plain-HTTP registry at `host_port` (a hosts.toml in
    /// `REGISTRY_HOSTS_DIR`, read at each pull).
    pub fn allow_plain_http_registry(&self, host_port: &str) {
        let dir = Path::new(self.env("REGISTRY_HOSTS_DIR")).join(host_port);
        std::fs::create_dir_all(&dir).expect("create the registry's hosts dir");
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"http://{host_port}\"\n\n[host.\"http://{host_port}\"]\n  \
                 capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )
        .expect("write hosts.toml");
    }

    /// The first container of pod `ns/pod` as a process of this machine (found through
    /// containerd's task list): its `/proc` status and whether its root is read-only.
    pub fn process_status(&self, ns: &str, pod: &str) -> ProcessStatus {
        let id = self
            .kubectl([
                "get",
                "pod",
                pod,
                "-n",
                ns,
                "-o",
                "jsonpath={.status.containerStatuses[0].containerID}",
            ])
            .stdout
            .trim()
            .trim_start_matches("containerd://")
            .to_string();
        assert!(!id.is_empty(), "no container ID for pod {ns}/{pod}");
        let ctr = Cmd::new("ctr")
            .args(["--address", self.env("CONTAINERD_SOCK")])
            .args(["-n", "k8s.io", "tasks", "ls"])
            .ok();
        let pid: u32 = ctr
            .stdout
            .lines()
            .find(|l| l.starts_with(&id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("task {id} not in `ctr tasks ls`\n{ctr}"));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap_or_default();
        let root_read_only = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some("/"))
            .and_then(|l| l.split(' ').nth(3))
            .is_some_and(|o| o.split(',').any(|o| o == "ro"));
        ProcessStatus {
            status,
            root_read_only,
        }
    }

    /// A plain-HTTP `docker-registry` on the bridge address that pods can pull from.
    pub fn registry(&self) -> Registry {
        let registry = Registry::start_with(RegistryOptions {
            bind: Some(self.node_ip()),
            ..Default::default()
        });
        self.allow_plain_http_registry(&registry.host());
        registry
    }
}

/// A container's process seen from the host (through containerd): `/proc/PID/status` and
/// whether its root is mounted read-only.
pub struct ProcessStatus {
    /// `/proc/PID/status`.
    pub status: String,
    /// Whether `/` is mounted read-only.
    pub root_read_only: bool,
}

impl ProcessStatus {
    /// A field of `/proc/PID/status`, its words joined by single spaces.
    pub fn field(&self, name: &str) -> String {
        self.status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}

/// Node clusters an earlier run of the node tier left behind in `tmp` (its
/// `aosm-node-e2e-*` directories holding a `node/` state dir): a run killed without a
/// chance to clean up (SIGKILL, a CI time limit). The machine holds one node cluster at a
/// time, so a new run takes them down first instead of failing on their bridge.
pub fn stale_clusters(tmp: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("aosm-node-e2e-"))
                && p.join("node").is_dir()
        })
        .collect()
}

/// `scripts/cluster.sh down DIR`: stops the cluster and undoes its host changes.
pub fn down(dir: &Path) -> Output {
    Cmd::new("bash")
        .arg(root().join("scripts/cluster.sh"))
        .arg("down")
        .arg(dir)
        .timeout(DOWN_TIMEOUT)
        .run()
}

/// Builds `tests/node/probe` (a static Go program, standard library only) into `dir` and
/// pushes it as the image `<registry>/aosm-node-probe:1` (one layer: `/probe`, an
/// `/etc/passwd` naming user 65532; entrypoint `/probe`, user 65532). Returns the reference.
pub fn push_probe_image(registry: &Registry, dir: &Path) -> String {
    let rootfs = dir.join("probe-rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("create the image's rootfs");
    Cmd::new(tools::require("go"))
        .args(["build", "-ldflags=-s -w", "-o"])
        .arg(rootfs.join("probe"))
        .arg(".")
        .current_dir(root().join("tests/node/probe"))
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-trimpath -buildvcs=false")
        .timeout(Duration::from_secs(300))
        .ok();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/:/probe\nnonroot:x:65532:65532:nonroot:/:/probe\n",
    )
    .expect("write /etc/passwd");
    let image = push_rootfs_image(registry, &rootfs, &["probe", "etc"], "aosm-node-probe:1");
    let crane = tools::require("crane");
    Cmd::new(&crane)
        .args([
            "mutate",
            "--insecure",
            &image,
            "--entrypoint",
            "/probe",
            "--user",
            "65532:65532",
            "-t",
            &image,
        ])
        .ok();
    image
}

/// Pushes `entries` of `rootfs` as a one-layer linux/amd64 image `<registry>/<name>`: a
/// reproducible tar (sorted, owned by 0:0, time 0) appended with crane. Returns the
/// reference.
pub fn push_rootfs_image(
    registry: &Registry,
    rootfs: &Path,
    entries: &[&str],
    name: &str,
) -> String {
    let layer = rootfs.with_extension("tar");
    Cmd::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(rootfs)
        .arg("-cf")
        .arg(&layer)
        .args(entries)
        .ok();
    let image = registry.reference(name);
    Cmd::new(tools::require("crane"))
        .args(["append", "--insecure", "--platform", "linux/amd64", "-f"])
        .arg(&layer)
        .args(["-t", &image])
        .ok();
    image
}

/// What the host looks like in the ways a node cluster changes it; compared before `up`
/// and after `down` ([`HostSnapshot::leftovers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    /// `iptables-save` and `ip6tables-save`: every rule and user chain (no counters).
    pub iptables: Vec<String>,
    /// Network interface names.
    pub links: Vec<String>,
    /// Mount points under the temp dir and the components' fixed paths.
    pub mounts: Vec<String>,
    /// The sysctls `up` or the components may set, with their values.
    pub sysctls: Vec<String>,
    /// Which of the fixed paths the components create exist (and kubepods cgroups).
    pub paths: Vec<String>,
}

const SNAPSHOT_SYSCTLS: &[&str] = &[
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.conf.all.route_localnet",
];

const SNAPSHOT_PATHS: &[&str] = &[
    "/run/containerd",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/netns",
    "/opt/cni",
    "/etc/cni",
    "/run/mount",
    "/sys/fs/cgroup/cpu/kubepods",
    "/sys/fs/cgroup/memory/kubepods",
    "/sys/fs/cgroup/pids/kubepods",
];

impl HostSnapshot {
    pub fn take() -> HostSnapshot {
        let mut iptables = Vec::new();
        for tool in ["iptables-save", "ip6tables-save"] {
            let out = Cmd::new(tool).run();
            iptables.extend(
                out.stdout
                    .lines()
                    .filter(|l| l.starts_with("-A") || (l.starts_with(':') && l.contains(" - ")))
                    .map(|l| format!("{tool}: {l}")),
            );
        }
        iptables.sort();
        let links = Cmd::new("ip")
            .args(["-o", "link", "show"])
            .ok()
            .stdout
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect();
        // Only where a node cluster mounts (pod volumes under its DIR in a temp dir, network
        // namespaces, containerd's fixed paths): other work on the machine may mount elsewhere.
        let tmp = std::env::temp_dir().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| {
                m.starts_with(&tmp)
                    || [
                        "/run/netns",
                        "/run/containerd",
                        "/var/lib/kubelet",
                        "/var/lib/cni",
                    ]
                    .iter()
                    .any(|p| m.starts_with(p))
            })
            .collect();
        let sysctls = SNAPSHOT_SYSCTLS
            .iter()
            .map(|k| {
                let path = format!("/proc/sys/{}", k.replace('.', "/"));
                let v = std::fs::read_to_string(path).unwrap_or_else(|_| "-".into());
                format!("{k}={}", v.trim())
            })
            .collect();
        let paths = SNAPSHOT_PATHS
            .iter()
            .filter(|p| Path::new(p).exists())
            .map(|p| p.to_string())
            .collect();
        HostSnapshot {
            iptables,
            links,
            mounts,
            sysctls,
            paths,
        }
    }

    /// What differs from `before`, plus any process whose command line names `dir` (the
    /// cluster's own processes and the shims of its containerd), one line each.
    pub fn leftovers(before: &HostSnapshot, dir: &Path) -> Vec<String> {
        let after = HostSnapshot::take();
        let mut found = Vec::new();
        let diff = |what: &str, b: &[String], a: &[String], found: &mut Vec<String>| {
            for x in a.iter().filter(|x| !b.contains(x)) {
                found.push(format!("{what} added: {x}"));
            }
            for x in b.iter().filter(|x| !a.contains(x)) {
                found.push(format!("{what} removed: {x}"));
            }
        };
        diff("iptables", &before.iptables, &after.iptables, &mut found);
        diff("network interface", &before.links, &after.links, &mut found);
        diff("mount", &before.mounts, &after.mounts, &mut found);
        diff("sysctl", &before.sysctls, &after.sysctls, &mut found);
        diff("path", &before.paths, &after.paths, &mut found);
        let needle = dir.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push(format!("process {pid}: {}", cmdline.trim()));
            }
        }
        if dir.exists() {
            found.push(format!("{} still exists", dir.display()));
        }
        found
    }
}
