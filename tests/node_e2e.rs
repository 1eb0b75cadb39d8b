//! The node tier: pods on a real single-node cluster of this machine
//! (`scripts/cluster.sh up --node`, `tests/support/node.rs`). Needs root.
//!
//! A custom test main (`harness = false`): the cluster is machine-wide (a bridge, iptables,
//! cgroups, fixed ports), so it is brought up once, the cases run one after another (each
//! under `catch_unwind`), and `scripts/cluster.sh down` ALWAYS runs afterwards: after a
//! failed case, a failed `up`, and on SIGINT/SIGTERM/SIGHUP (a watcher thread). The last
//! case checks that `down` left nothing behind. Names given on the command line filter the
//! cases as libtest does (`cargo test --test node_e2e restricted`; `--exact`, `--skip`,
//! `--list`).

#[path = "node/operator.rs"]
mod operator;
mod support;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::Registry;
use support::node::{self, HostSnapshot, NodeCluster};

/// How long a pod may take to become Ready (typically 1-2 s once its image is local).
const POD_TIMEOUT: Duration = Duration::from_secs(120);

/// What the cases share: the cluster, a scratch dir, and the probe image (pushed once, on
/// first use, to a registry on the bridge address).
struct Ctx {
    cluster: NodeCluster,
    scratch: tempfile::TempDir,
    probe: Mutex<Option<(Registry, String)>>,
    /// The operator installed by the chart (`node/operator.rs`), made on first use.
    operator: std::cell::OnceCell<operator::Operator>,
}

impl Ctx {
    /// The probe image's reference (`<bridge address>:<port>/aosm-node-probe:1`).
    fn probe_image(&self) -> String {
        let mut probe = self.probe.lock().unwrap_or_else(|e| e.into_inner());
        if probe.is_none() {
            let registry = self.cluster.registry();
            let image = node::push_probe_image(&registry, self.scratch.path());
            *probe = Some((registry, image));
        }
        probe.as_ref().map(|(_, image)| image.clone()).unwrap()
    }
}

/// The chart's restricted pod and container security contexts (the Pod Security
/// "restricted" profile).
const RESTRICTED_POD: &str = "securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile: {type: RuntimeDefault}";
const RESTRICTED_CONTAINER: &str = "securityContext:
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}";

/// (a) A pod with the restricted security context and HTTP probes becomes Ready, and runs
/// as 65532 with no capabilities, a read-only root file system and seccomp filtering.
fn restricted_pod_becomes_ready(ctx: &Ctx) {
    let image = ctx.probe_image();
    ctx.cluster.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: restricted, namespace: default}}
spec:
  {RESTRICTED_POD}
  containers:
    - name: probe
      image: {image}
      args: [serve, ':8081']
      ports: [{{name: health, containerPort: 8081}}]
      readinessProbe:
        httpGet: {{path: /readyz, port: health}}
        periodSeconds: 1
      livenessProbe:
        httpGet: {{path: /healthz, port: health}}
        periodSeconds: 5
      {RESTRICTED_CONTAINER}
"
    ));
    let started = Instant::now();
    ctx.cluster
        .wait_pod("default", "restricted", false, POD_TIMEOUT);
    eprintln!(
        "    pod/restricted Ready {:.1}s after kubectl apply",
        started.elapsed().as_secs_f64()
    );
    // The container's process, seen from the host through containerd's task.
    let process = ctx.cluster.process_status("default", "restricted");
    assert_eq!(
        process.field("Uid"),
        "65532 65532 65532 65532",
        "{}",
        process.status
    );
    assert_eq!(
        process.field("CapEff"),
        "0000000000000000",
        "{}",
        process.status
    );
    assert_eq!(
        process.field("CapBnd"),
        "0000000000000000",
        "{}",
        process.status
    );
    assert_eq!(process.field("NoNewPrivs"), "1", "{}", process.status);
    assert_eq!(
        process.field("Seccomp"),
        "2",
        "seccomp filter mode\n{}",
        process.status
    );
    assert!(
        process.root_read_only,
        "the root file system is not read-only"
    );
}

/// (b) A pod pulls its image from a registry on the bridge address and, with its
/// ServiceAccount token, reaches the API server through the `kubernetes` Service, which
/// knows it as its ServiceAccount.
fn pod_pulls_from_bridge_registry_and_calls_the_api_server(ctx: &Ctx) {
    let image = ctx.probe_image();
    let node_ip = ctx.cluster.node_ip().to_string();
    assert!(
        image.starts_with(&format!("{node_ip}:")),
        "the image {image} is not on the bridge address {node_ip}"
    );
    ctx.cluster.apply(&format!(
        "apiVersion: v1
kind: ServiceAccount
metadata: {{name: whoami, namespace: default}}
---
apiVersion: v1
kind: Pod
metadata: {{name: whoami, namespace: default}}
spec:
  serviceAccountName: whoami
  restartPolicy: Never
  {RESTRICTED_POD}
  containers:
    - name: probe
      image: {image}
      imagePullPolicy: Always
      args: [whoami]
      {RESTRICTED_CONTAINER}
"
    ));
    ctx.cluster.wait_pod("default", "whoami", true, POD_TIMEOUT);
    let logs = ctx.cluster.kubectl(["logs", "whoami"]);
    logs.assert_success();
    let service_ip = ctx.cluster.env("KUBERNETES_SERVICE_IP");
    assert!(
        logs.stdout
            .contains(&format!("via: https://{service_ip}:443/")),
        "the pod did not go through the `kubernetes` Service ({service_ip}:443)\n{logs}"
    );
    assert!(
        logs.stdout
            .contains("whoami: system:serviceaccount:default:whoami"),
        "the API server did not authenticate the pod's ServiceAccount token\n{logs}"
    );
    // The image came from the registry on the bridge (containerd pulled it there).
    let pulled = ctx.cluster.kubectl([
        "get",
        "pod",
        "whoami",
        "-o",
        "jsonpath={.status.containerStatuses[0].imageID}",
    ]);
    assert!(
        pulled.stdout.starts_with(&format!("{node_ip}:")),
        "imageID {:?} is not from the bridge registry",
        pulled.stdout
    );
}

type Case = (&'static str, fn(&Ctx));

const CASES: &[Case] = &[
    ("restricted_pod_becomes_ready", restricted_pod_becomes_ready),
    (
        "pod_pulls_from_bridge_registry_and_calls_the_api_server",
        pod_pulls_from_bridge_registry_and_calls_the_api_server,
    ),
    (
        "operator_installed_by_the_chart_runs_restricted",
        operator::operator_installed_by_the_chart_runs_restricted,
    ),
    (
        "workload_identity_pushes_and_pulls_with_exact_digests",
        operator::workload_identity_pushes_and_pulls_with_exact_digests,
    ),
    (
        "leader_failover_mid_transfer_and_upgrade_lose_nothing",
        operator::leader_failover_mid_transfer_and_upgrade_lose_nothing,
    ),
    (
        "operator_logs_hold_no_secret",
        operator::operator_logs_hold_no_secret,
    ),
];

/// (c) Checked after `down`, not with the cluster up.
const DOWN_CASE: &str = "down_leaves_nothing";

/// The cluster's DIR while it may be up: whoever takes it (the main thread at the end, or
/// the signal watcher) runs `down` on it, exactly once.
static CLUSTER_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

fn down_once() -> Option<support::Output> {
    let dir = CLUSTER_DIR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()?;
    Some(node::down(&dir))
}

/// SIGINT, SIGTERM and SIGHUP are blocked in every thread (this runs before any other
/// thread starts) and taken by one watcher thread, which runs `down` and exits. Children
/// start with an empty signal mask (std's spawn resets it).
fn watch_signals() {
    // SAFETY: plain libc calls on a local sigset; no other thread exists yet.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set = set;
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                eprintln!("node_e2e: signal {sig}: taking the node cluster down");
                if let Some(out) = down_once()
                    && !out.success()
                {
                    eprintln!("{out}");
                }
                std::process::exit(128 + sig);
            }
        });
    }
}

struct Args {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
    ignored: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        filters: Vec::new(),
        skip: Vec::new(),
        exact: false,
        list: false,
        ignored: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exact" => args.exact = true,
            "--list" => args.list = true,
            "--ignored" => args.ignored = true,
            "--skip" => args.skip.extend(it.next()),
            // libtest options with a value that mean nothing here.
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                it.next();
            }
            _ if a.starts_with('-') => {} // --nocapture, --quiet, --include-ignored, ...
            _ => args.filters.push(a),
        }
    }
    args
}

impl Args {
    fn selects(&self, name: &str) -> bool {
        let matches = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        !self.ignored
            && (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(panic without a message)".into())
}

fn main() {
    let args = parse_args();
    let all: Vec<&str> = CASES.iter().map(|(n, _)| *n).chain([DOWN_CASE]).collect();
    if args.list {
        for name in &all {
            println!("{name}: test");
        }
        return;
    }
    let selected: Vec<&Case> = CASES.iter().filter(|(n, _)| args.selects(n)).collect();
    let check_down = args.selects(DOWN_CASE);
    let total = selected.len() + usize::from(check_down);
    let filtered_out = all.len() - total;
    println!("\nrunning {total} tests");
    let started = Instant::now();
    if total == 0 {
        println!(
            "\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in 0.00s\n"
        );
        return;
    }
    if let Err(why) = node::require_root() {
        eprintln!("node_e2e: {why}");
        std::process::exit(1);
    }
    watch_signals();

    let mut failures: Vec<(String, String)> = Vec::new();
    let mut passed = 0;
    for stale in node::stale_clusters(&std::env::temp_dir()) {
        eprintln!(
            "node_e2e: taking down a node cluster an earlier run left: {}",
            stale.display()
        );
        let out = node::down(&stale);
        if out.success() {
            let _ = std::fs::remove_dir_all(&stale);
        } else {
            eprintln!("{out}");
        }
    }
    let before = HostSnapshot::take();
    let dir = tempfile::Builder::new()
        .prefix("aosm-node-e2e-")
        .tempdir()
        .expect("temp dir")
        .keep();
    *CLUSTER_DIR.lock().unwrap() = Some(dir.clone());
    let up = NodeCluster::up(&dir);
    match up {
        Err(why) => {
            for (name, _) in &selected {
                println!("test {name} ... FAILED");
                failures.push((name.to_string(), why.clone()));
            }
        }
        Ok(cluster) => {
            eprintln!(
                "node_e2e: node cluster up in {:.1}s ({}); bridge address {}",
                cluster.up_time.as_secs_f64(),
                dir.display(),
                cluster.node_ip()
            );
            let ctx = Ctx {
                cluster,
                scratch: tempfile::TempDir::new().expect("scratch dir"),
                probe: Mutex::new(None),
                operator: std::cell::OnceCell::new(),
            };
            for (name, case) in &selected {
                let t0 = Instant::now();
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| case(&ctx)));
                let secs = t0.elapsed().as_secs_f64();
                match result {
                    Ok(()) => {
                        println!("test {name} ... ok ({secs:.1}s)");
                        passed += 1;
                    }
                    Err(e) => {
                        println!("test {name} ... FAILED ({secs:.1}s)");
                        failures.push((name.to_string(), panic_message(&*e)));
                    }
                }
            }
            // The registry on the bridge stops before the bridge goes.
            drop(ctx);
        }
    }
    let t0 = Instant::now();
    let down = down_once();
    let down_secs = t0.elapsed().as_secs_f64();
    eprintln!("node_e2e: scripts/cluster.sh down took {down_secs:.1}s");
    if check_down {
        let mut problems = Vec::new();
        if let Some(out) = &down
            && !out.success()
        {
            problems.push(format!("scripts/cluster.sh down failed\n{out}"));
        }
        problems.extend(HostSnapshot::leftovers(&before, &dir));
        if problems.is_empty() {
            println!("test {DOWN_CASE} ... ok ({down_secs:.1}s)");
            passed += 1;
        } else {
            println!("test {DOWN_CASE} ... FAILED");
            failures.push((DOWN_CASE.into(), problems.join("\n")));
        }
    } else if let Some(out) = &down
        && !out.success()
    {
        eprintln!("node_e2e: scripts/cluster.sh down failed\n{out}");
    }
    report(passed, &failures, filtered_out, started.elapsed());
}

fn report(passed: usize, failures: &[(String, String)], filtered_out: usize, took: Duration) {
    if !failures.is_empty() {
        println!("\nfailures:\n");
        for (name, why) in failures {
            println!("---- {name} ----\n{why}\n");
        }
        println!("failures:");
        for (name, _) in failures {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        if failures.is_empty() { "ok" } else { "FAILED" },
        failures.len(),
        took.as_secs_f64()
    );
    if !failures.is_empty() {
        std::process::exit(101);
    }
}
