//! The operator as users run it: the shipped image (`scripts/image.sh`, the musl build)
//! pushed to a registry on the bridge, installed by `helm install` of the chart with two
//! replicas, signed in to the emulator's Entra with workload identity (the chart's
//! `azure.workloadIdentity.inject`: a projected ServiceAccount token, which the emulator
//! verifies against this cluster's OpenID discovery keys and a federated credential).
//! Included by `node_e2e.rs`; the cases share one [`Operator`] stack, made on first use.

use serde_json::{Value, json};
use support::TestEnv;
use support::emulator::{Emulator, PUBLISHER, RG, STORE, SUB};
use support::fixtures::{self, Flavor};

use super::*;

const SYSTEM_NS: &str = "aosm-system";
const NS: &str = "cnf";
/// The release name, chosen so that the chart's full name (Deployment, ServiceAccount,
/// Lease) is the chart's name.
const RELEASE: &str = "aosm-artifact-operator";
const MANIFEST: &str = "contoso-cnf-manifest";
const VERSION: &str = "1.0.0";
/// The host blob GETs of the store are redirected to (as ACR's go to a storage account);
/// pods find it through the chart's `hostAliases`.
const STORAGE_HOST: &str = "aosm-storage.test";
/// Upper bound for an image build (a cold musl release build takes ~12 min on 2 cores).
const IMAGE_BUILD: Duration = Duration::from_secs(40 * 60);
/// Upper bound for a transfer, a rollout or a failover on a loaded 2-core machine.
const READY: Duration = Duration::from_secs(600);
const BIG_LAYER: usize = 1 << 30;

/// What the cases share.
pub struct Operator {
    env: TestEnv,
    /// Plain-HTTP registry on the bridge: the operator's image and the sources.
    registry: Registry,
    emu: Emulator,
    /// `<registry>/aosm-artifact-operator` (tags `e2e-1`, later `e2e-2`).
    image_repo: String,
    /// The chart's values, as `--set` arguments.
    values: Vec<String>,
}

/// The stack, made once (kept in [`Ctx`]): image built and pushed, emulator on the bridge
/// with a federated credential for the operator's ServiceAccount, chart installed,
/// Deployment available.
fn operator(ctx: &Ctx) -> &Operator {
    ctx.operator.get_or_init(|| install(ctx))
}

fn install(ctx: &Ctx) -> Operator {
    let cluster = &ctx.cluster;
    let node_ip = cluster.node_ip().to_string();
    let env = TestEnv::new();
    let registry = cluster.registry();
    let image_repo = registry.reference("aosm-artifact-operator");

    // The shipped image, as `make image` builds it.
    let t0 = Instant::now();
    let built = support::Cmd::new("bash")
        .arg(node::root().join("scripts/image.sh"))
        .arg(format!("{image_repo}:e2e-1"))
        .env("INSECURE", "1")
        .timeout(IMAGE_BUILD)
        .ok();
    eprintln!(
        "    scripts/image.sh {image_repo}:e2e-1 in {:.0}s: {}",
        t0.elapsed().as_secs_f64(),
        built.stdout.lines().last().unwrap_or_default()
    );

    let emu = Emulator::start_on(&node_ip, STORAGE_HOST, &[]);
    emu.create_acr_manifest(
        MANIFEST,
        &[
            ("contoso-cnf", "OCIArtifact", VERSION),
            ("contoso-chart", "OCIArtifact", VERSION),
            ("contoso-template", "ArmTemplate", VERSION),
            ("contoso-big", "OCIArtifact", VERSION),
        ],
    );
    // Entra trusts this cluster's service account issuer for the operator's account.
    emu.set_config(json!({
        "federatedCredentials": [{
            "issuer": cluster.env("SA_ISSUER"),
            "subject": format!("system:serviceaccount:{SYSTEM_NS}:{RELEASE}"),
        }],
        "oidcCaFile": cluster.dir().join("pki/ca.crt"),
    }));
    reset_stats(&emu);

    for ns in [SYSTEM_NS, NS] {
        cluster
            .kubectl(["create", "namespace", ns])
            .assert_success();
    }
    cluster
        .kubectl([
            "create",
            "secret",
            "generic",
            "emulator-ca",
            "-n",
            SYSTEM_NS,
            &format!("--from-file=ca.crt={}", emu.ep("caFile")),
        ])
        .assert_success();
    let values: Vec<String> = [
        format!("image.repository={image_repo}"),
        "image.tag=e2e-1".into(),
        "replicaCount=2".into(),
        format!("azure.workloadIdentity.clientId={}", emu.ep("clientId")),
        format!("azure.workloadIdentity.tenantId={}", emu.ep("tenantId")),
        "azure.workloadIdentity.inject=true".into(),
        format!("azure.authorityHost={}", emu.ep("authorityHost")),
        "caBundle.secret=emulator-ca".into(),
        format!("hostAliases[0].ip={node_ip}"),
        format!("hostAliases[0].hostnames[0]={STORAGE_HOST}"),
    ]
    .into_iter()
    .flat_map(|v| ["--set".to_string(), v])
    .collect();
    let t0 = Instant::now();
    helm(ctx)
        .args(["install", RELEASE])
        .arg(node::root().join("charts/aosm-artifact-operator"))
        .args(["-n", SYSTEM_NS, "--wait", "--timeout", "10m"])
        .args(&values)
        .ok();
    eprintln!(
        "    helm install: Deployment available {:.1}s later",
        t0.elapsed().as_secs_f64()
    );
    // The store every case uses, signed in with the controller's own workload identity.
    cluster.apply(
        &json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ClusterArtifactStore",
            "metadata": {"name": "contoso"},
            "spec": {"subscriptionId": SUB, "resourceGroup": RG, "publisher": PUBLISHER,
                "artifactStore": STORE, "armEndpoint": emu.ep("armEndpoint"),
                "authorityHost": emu.ep("authorityHost"),
                "identity": {"type": "WorkloadIdentity"}}})
        .to_string(),
    );
    let ready = cluster.kubectl([
        "wait",
        "--for=condition=Ready",
        "clusterartifactstore/contoso",
        "--timeout=300s",
    ]);
    assert!(
        ready.success(),
        "the store did not become Ready\n{ready}\n{}",
        cluster
            .kubectl(["get", "clusterartifactstore", "contoso", "-o", "yaml"])
            .stdout
    );
    Operator {
        env,
        registry,
        emu,
        image_repo,
        values,
    }
}

fn helm(ctx: &Ctx) -> support::Cmd {
    support::Cmd::new(support::tools::require("helm"))
        .env("KUBECONFIG", ctx.cluster.kubeconfig())
        .env("HELM_CACHE_HOME", ctx.scratch.path().join("helm/cache"))
        .env("HELM_CONFIG_HOME", ctx.scratch.path().join("helm/config"))
        .env("HELM_DATA_HOME", ctx.scratch.path().join("helm/data"))
        .timeout(Duration::from_secs(900))
}

fn reset_stats(emu: &Emulator) {
    let url = format!("{}/stats", emu.ep("adminUrl"));
    let (st, _, b) = emu.request(reqwest::Method::DELETE, &url, None, None);
    assert!(st == 200 || st == 204, "DELETE /_emulator/stats: {st} {b}");
}

fn json_of(out: &support::Output) -> Value {
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e})\n{out}"))
}

/// One of the operator's pods.
struct Pod {
    name: String,
    uid: String,
    ready: bool,
    restarts: u64,
    image: String,
}

/// The operator's pods, those being deleted left out.
fn operator_pods(ctx: &Ctx) -> Vec<Pod> {
    let pods = json_of(&ctx.cluster.kubectl([
        "get",
        "pods",
        "-n",
        SYSTEM_NS,
        "-l",
        "app.kubernetes.io/name=aosm-artifact-operator",
        "-o",
        "json",
    ]));
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| Pod {
            name: text(&p["metadata"]["name"]),
            uid: text(&p["metadata"]["uid"]),
            ready: p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
            restarts: p["status"]["containerStatuses"][0]["restartCount"]
                .as_u64()
                .unwrap_or(0),
            image: text(&p["spec"]["containers"][0]["image"]),
        })
        .collect()
}

/// The pod holding the controller's Lease.
fn leader(ctx: &Ctx) -> Option<String> {
    let out = ctx.cluster.kubectl([
        "get",
        "lease",
        RELEASE,
        "-n",
        SYSTEM_NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    (out.success() && !out.stdout.trim().is_empty()).then(|| out.stdout.trim().to_string())
}

fn transfer(ctx: &Ctx, name: &str) -> Value {
    json_of(
        &ctx.cluster
            .kubectl(["get", "artifacttransfer", name, "-n", NS, "-o", "json"]),
    )
}

fn condition(t: &Value, type_: &str) -> Option<Value> {
    t["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn wait_ready(ctx: &Ctx, names: &[&str], timeout: Duration) -> Vec<Value> {
    let out = ctx.cluster.kubectl(
        ["wait", "--for=condition=Ready", "-n", NS]
            .into_iter()
            .map(String::from)
            .chain([format!("--timeout={}s", timeout.as_secs())])
            .chain(names.iter().map(|n| format!("artifacttransfer/{n}"))),
    );
    if !out.success() {
        let all = ctx
            .cluster
            .kubectl(["get", "artifacttransfers", "-n", NS, "-o", "yaml"]);
        let logs = ctx.cluster.kubectl([
            "logs",
            "-n",
            SYSTEM_NS,
            "-l",
            "app.kubernetes.io/name=aosm-artifact-operator",
            "--tail=30",
        ]);
        panic!(
            "transfers {names:?} did not become Ready\n{out}\n{}\n--- operator logs\n{}",
            all.stdout, logs.stdout
        );
    }
    names.iter().map(|n| transfer(ctx, n)).collect()
}

fn digest_of(t: &Value) -> String {
    t["status"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The digest the emulator's registry storage holds under `repo:tag` (read from its files:
/// no client involved).
fn stored_digest(emu: &Emulator, repo: &str, tag: &str) -> Option<String> {
    let root = emu.state_dir().join("registry");
    let link = walk_find(
        &root,
        &format!("repositories/{repo}/_manifests/tags/{tag}/current/link"),
    )?;
    std::fs::read_to_string(link)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The first file under `dir` whose path ends with `suffix`.
fn walk_find(dir: &std::path::Path, suffix: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = walk_find(&path, suffix) {
                return Some(found);
            }
        } else if path.to_string_lossy().ends_with(suffix) {
            return Some(path);
        }
    }
    None
}

fn push_transfer(name: &str, artifact: &str, source: Value) -> Value {
    json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
    "metadata": {"name": name, "namespace": NS},
    "spec": {
        "source": source,
        "destination": {"artifactStore": {
            "storeRef": {"kind": "ClusterArtifactStore", "name": "contoso"},
            "manifest": MANIFEST, "artifact": artifact, "version": VERSION}},
    }})
}

fn pull_transfer(name: &str, artifact: &str, image: &str) -> Value {
    json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
    "metadata": {"name": name, "namespace": NS},
    "spec": {
        "source": {"artifactStore": {
            "storeRef": {"kind": "ClusterArtifactStore", "name": "contoso"},
            "manifest": MANIFEST, "artifact": artifact, "version": VERSION}},
        "destination": {"registry": {"image": image, "plainHTTP": true}},
    }})
}

fn apply_json(ctx: &Ctx, obj: &Value) {
    ctx.cluster.apply(&obj.to_string());
}

/// The chart's Deployment is available with two pods that are Ready, never restarted,
/// and restricted as the chart says (checked in the pod spec and in the container's
/// process).
pub fn operator_installed_by_the_chart_runs_restricted(ctx: &Ctx) {
    operator(ctx);
    let deployment = json_of(&ctx.cluster.kubectl([
        "get",
        "deployment",
        RELEASE,
        "-n",
        SYSTEM_NS,
        "-o",
        "json",
    ]));
    assert_eq!(deployment["status"]["availableReplicas"], 2, "{deployment}");
    let pods = operator_pods(ctx);
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pods.len(), 2, "{names:?}");
    for Pod {
        name,
        ready,
        restarts,
        ..
    } in &pods
    {
        assert!(ready, "pod {name} is not Ready");
        assert_eq!(*restarts, 0, "pod {name} restarted");
        let status = ctx.cluster.process_status(SYSTEM_NS, name);
        assert_eq!(status.field("Uid"), "65532 65532 65532 65532", "{name}");
        assert_eq!(status.field("CapEff"), "0000000000000000", "{name}");
        assert_eq!(status.field("NoNewPrivs"), "1", "{name}");
        assert_eq!(status.field("Seccomp"), "2", "{name}");
        assert!(
            status.root_read_only,
            "{name}: the root file system is writable"
        );
    }
    // One of them leads.
    let holder = wait_for_value("a Lease holder", READY, || leader(ctx));
    assert!(names.contains(&holder.as_str()), "{holder} {names:?}");
}

/// Entra (the emulator) checks the cluster's tokens as Entra does: the operator's
/// ServiceAccount token is exchanged, another ServiceAccount's is refused (no federated
/// credential for its subject); then the operator, signed in only with its projected
/// token, pushes an image, a Helm chart and an ARM template into the store, and pulls the
/// image back into a registry running as a pod.
pub fn workload_identity_pushes_and_pulls_with_exact_digests(ctx: &Ctx) {
    let op = operator(ctx);
    let cluster = &ctx.cluster;
    let emu = &op.emu;
    // Since the chart was installed, the operator signed in (its store is Ready) only by
    // exchanging its projected ServiceAccount token: no client secret was used.
    let stats = emu.stats();
    assert!(
        stats["tokensIssued"]["entraClientAssertion"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{stats}"
    );
    assert_eq!(stats["tokensIssued"]["entraClientSecret"], 0, "{stats}");
    // The token endpoint against real tokens of this cluster.
    let exchange = |sa: &str| {
        let token = cluster
            .kubectl([
                "create",
                "token",
                sa,
                "-n",
                SYSTEM_NS,
                "--audience=api://AzureADTokenExchange",
            ])
            .stdout
            .trim()
            .to_string();
        let out = support::Cmd::new("curl")
            .args(["-sS", "--cacert", &emu.ep("caFile"), "-o", "/dev/stdout"])
            .args(["-w", "\n%{http_code}"])
            .args(["--data-urlencode", "grant_type=client_credentials"])
            .args([
                "--data-urlencode",
                &format!("client_id={}", emu.ep("clientId")),
            ])
            .args([
                "--data-urlencode",
                "scope=https://management.azure.com/.default",
            ])
            .args([
                "--data-urlencode",
                "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ])
            .args(["--data-urlencode", &format!("client_assertion={token}")])
            .arg(emu.ep("tokenEndpoint"))
            .ok();
        let (body, code) = out.stdout.rsplit_once('\n').unwrap_or_default();
        (code.trim().to_string(), body.to_string())
    };
    cluster
        .kubectl(["create", "serviceaccount", "stranger", "-n", SYSTEM_NS])
        .assert_success();
    let (code, body) = exchange(RELEASE);
    assert_eq!(code, "200", "the operator's token: {body}");
    let (code, body) = exchange("stranger");
    assert_eq!(code, "400", "another ServiceAccount's token: {body}");
    assert!(body.contains("AADSTS700213"), "{body}");
    reset_stats(emu);

    // Sources: an image and a Helm chart in a registry on the bridge, a template in a
    // ConfigMap; a registry as a pod of the cluster to pull into.
    let image = fixtures::push_image(
        &op.env,
        &op.registry,
        "src/cnf:1.0.0",
        &[300_000, 40_000],
        Flavor::Oci,
        None,
    );
    let chart = fixtures::helm_package(&op.env, "contoso-chart", VERSION, "charts");
    let chart_digest = fixtures::helm_push(&op.env, &op.registry, &chart, "charts");
    let mirror = registry_pod(ctx, op);
    let template = r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0", "resources": []}"#;
    apply_json(
        ctx,
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nf-template", "namespace": NS},
             "data": {"template.json": template}},
            push_transfer("image", "contoso-cnf", json!({"registry": {
                "image": op.registry.reference("src/cnf:1.0.0"), "plainHTTP": true}})),
            push_transfer("chart", "contoso-chart", json!({"registry": {
                "image": op.registry.reference(&format!("charts/contoso-chart:{VERSION}")), "plainHTTP": true}})),
            push_transfer("template", "contoso-template", json!({"configMap": {
                "name": "nf-template", "key": "template.json"}})),
        ]}),
    );
    let ready = wait_ready(ctx, &["image", "chart", "template"], READY);
    assert_eq!(digest_of(&ready[0]), image.digest);
    assert_eq!(digest_of(&ready[1]), chart_digest);
    for (t, repo) in ready
        .iter()
        .zip(["contoso-cnf", "contoso-chart", "contoso-template"])
    {
        assert_eq!(
            stored_digest(emu, repo, VERSION).as_deref(),
            Some(digest_of(t).as_str()),
            "the store's registry holds {repo}:{VERSION} at the reported digest"
        );
    }
    // Pull the image back into the registry pod (blob GETs go through the storage host).
    apply_json(
        ctx,
        &pull_transfer(
            "pull-image",
            "contoso-cnf",
            &format!("{mirror}/cnf/image:{VERSION}"),
        ),
    );
    let pulled = wait_ready(ctx, &["pull-image"], READY).remove(0);
    assert_eq!(digest_of(&pulled), image.digest);
    let crane = support::Cmd::new(support::tools::require("crane"))
        .args([
            "digest",
            "--insecure",
            &format!("{mirror}/cnf/image:{VERSION}"),
        ])
        .ok();
    assert_eq!(
        crane.stdout.trim(),
        image.digest,
        "crane reads the pod registry"
    );

    // All of it under the Entra token the operator got by exchanging its projected
    // token (before this case), and no client secret anywhere.
    let stats = emu.stats();
    assert_eq!(stats["tokensIssued"]["entraClientSecret"], 0, "{stats}");
    assert!(
        stats["listCredentialTotal"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
}

/// A `registry` (distribution v3, static) as a Deployment + Service in namespace
/// `mirror`; returns `<service IP>:5000`.
fn registry_pod(ctx: &Ctx, op: &Operator) -> String {
    let rootfs = ctx.scratch.path().join("registry-rootfs");
    std::fs::create_dir_all(rootfs.join("etc/distribution")).unwrap();
    std::fs::copy(support::tools::require("registry"), rootfs.join("registry")).unwrap();
    std::fs::write(
        rootfs.join("etc/distribution/config.yml"),
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n",
    )
    .unwrap();
    let image = node::push_rootfs_image(
        &op.registry,
        &rootfs,
        &["registry", "etc"],
        "distribution-registry:3",
    );
    ctx.cluster.apply(&format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: mirror}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: registry, namespace: mirror}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: registry}}}}
  template:
    metadata: {{labels: {{app: registry}}}}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: registry
          image: {image}
          command: [/registry, serve, /etc/distribution/config.yml]
          ports: [{{name: http, containerPort: 5000}}]
          readinessProbe:
            httpGet: {{path: /v2/, port: http}}
            periodSeconds: 1
          volumeMounts: [{{name: data, mountPath: /var/lib/registry}}]
          securityContext:
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities: {{drop: [ALL]}}
      volumes: [{{name: data, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: registry, namespace: mirror}}
spec:
  selector: {{app: registry}}
  ports: [{{name: http, port: 5000, targetPort: http}}]
"
    ));
    ctx.cluster
        .kubectl([
            "rollout",
            "status",
            "deployment/registry",
            "-n",
            "mirror",
            "--timeout=180s",
        ])
        .assert_success();
    let ip = ctx
        .cluster
        .kubectl([
            "get",
            "service",
            "registry",
            "-n",
            "mirror",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .stdout
        .trim()
        .to_string();
    format!("{ip}:5000")
}

/// Two replicas: the leader is deleted while it moves a 1 GiB image; the other takes the
/// Lease and the transfer ends Ready with the exact digest. The peak memory of the pod
/// that finished it (its cgroup's high-water mark) stays well within the chart's limit.
/// Then `helm upgrade` to a new image tag rolls the pods and loses nothing.
pub fn leader_failover_mid_transfer_and_upgrade_lose_nothing(ctx: &Ctx) {
    let op = operator(ctx);
    let cluster = &ctx.cluster;
    let big = fixtures::push_image(
        &op.env,
        &op.registry,
        "src/big:1.0.0",
        &[BIG_LAYER],
        Flavor::Oci,
        None,
    );
    let first_leader = wait_for_value("a Lease holder", READY, || leader(ctx));
    apply_json(
        ctx,
        &push_transfer(
            "big",
            "contoso-big",
            json!({"registry": {
            "image": op.registry.reference("src/big:1.0.0"), "plainHTTP": true}}),
        ),
    );
    // Mid-transfer: bytes have moved (status.progress), the transfer is not Ready yet.
    wait_for_value("the big transfer to move bytes", READY, || {
        let t = transfer(ctx, "big");
        if let Some(c) = condition(&t, "Stalled").filter(|c| c["status"] == "True") {
            panic!("the big transfer stalled: {c}");
        }
        let done = t["status"]["progress"]["bytesDone"].as_u64().unwrap_or(0);
        (done > 0 && done < BIG_LAYER as u64).then_some(done)
    });
    cluster
        .kubectl([
            "delete",
            "pod",
            &first_leader,
            "-n",
            SYSTEM_NS,
            "--wait=false",
        ])
        .assert_success();
    let ready = wait_ready(ctx, &["big"], READY).remove(0);
    assert_eq!(
        digest_of(&ready),
        big.digest,
        "the exact digest after a failover"
    );
    assert_eq!(
        stored_digest(&op.emu, "contoso-big", VERSION).as_deref(),
        Some(big.digest.as_str())
    );
    let second_leader = wait_for_value("the other replica to hold the Lease", READY, || {
        leader(ctx).filter(|l| *l != first_leader)
    });
    // It finished the transfer: the Succeeded event comes from it.
    let events = json_of(&cluster.kubectl(["get", "events.events.k8s.io", "-n", NS, "-o", "json"]));
    let succeeded_by: Vec<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["regarding"]["name"] == "big" && e["reason"] == "Succeeded")
        .filter_map(|e| e["reportingInstance"].as_str())
        .collect();
    assert_eq!(succeeded_by, [second_leader.as_str()], "{events}");

    // The same image pulled back by the new leader: every byte through one pod.
    apply_json(
        ctx,
        &pull_transfer(
            "pull-big",
            "contoso-big",
            &op.registry.reference("back/big:1.0.0"),
        ),
    );
    let pulled = wait_ready(ctx, &["pull-big"], READY).remove(0);
    assert_eq!(digest_of(&pulled), big.digest);
    let leader_now = leader(ctx).expect("a leader");
    let leader_pod = operator_pods(ctx)
        .into_iter()
        .find(|p| p.name == leader_now)
        .expect("the leader's pod");
    let peak = pod_memory_peak(&leader_pod.uid);
    let limit: u64 = 512 << 20;
    eprintln!(
        "    peak memory of the pod that moved 1 GiB in and 1 GiB out: {:.1} MiB (chart limit {} MiB)",
        peak as f64 / f64::from(1 << 20),
        limit >> 20
    );
    assert!(
        peak < limit / 2,
        "peak {peak} bytes: not within half the 512 MiB limit"
    );

    // helm upgrade to a new image tag: pods roll, every transfer stays Ready with its
    // digest, and a new one works.
    let before: Vec<(String, String)> = transfers(ctx);
    support::Cmd::new(support::tools::require("crane"))
        .args([
            "tag",
            "--insecure",
            &format!("{}:e2e-1", op.image_repo),
            "e2e-2",
        ])
        .ok();
    let mut values = op.values.clone();
    values.extend(["--set".into(), "image.tag=e2e-2".into()]);
    helm(ctx)
        .args(["upgrade", RELEASE])
        .arg(node::root().join("charts/aosm-artifact-operator"))
        .args(["-n", SYSTEM_NS, "--wait", "--timeout", "10m"])
        .args(&values)
        .ok();
    cluster
        .kubectl([
            "rollout",
            "status",
            &format!("deployment/{RELEASE}"),
            "-n",
            SYSTEM_NS,
            "--timeout=300s",
        ])
        .assert_success();
    // Two pods of the new tag run, Ready (the old ones are terminating or gone).
    wait_for_value("two pods of the new image, Ready", READY, || {
        let pods = operator_pods(ctx);
        (pods.len() == 2 && pods.iter().all(|p| p.ready && p.image.ends_with(":e2e-2")))
            .then_some(())
    });
    assert_eq!(
        transfers(ctx),
        before,
        "the upgrade changed a transfer's outcome"
    );
    cluster
        .kubectl([
            "annotate",
            "--overwrite",
            "-n",
            NS,
            "artifacttransfer/image",
            "artifacts.aosm.dev/requested-at=after-upgrade",
        ])
        .assert_success();
    let rerun = wait_for_value("the re-run after the upgrade", READY, || {
        let t = transfer(ctx, "image");
        (t["status"]["lastHandledReconcileAt"] == "after-upgrade"
            && condition(&t, "Ready").is_some_and(|c| c["status"] == "True"))
        .then_some(t)
    });
    assert_eq!(digest_of(&rerun), digest_of(&transfer(ctx, "image")));
}

/// (name, Ready status + digest) of every transfer.
fn transfers(ctx: &Ctx) -> Vec<(String, String)> {
    let all = json_of(
        &ctx.cluster
            .kubectl(["get", "artifacttransfers", "-n", NS, "-o", "json"]),
    );
    all["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let ready = condition(t, "Ready")
                .map(|c| c["status"].clone())
                .unwrap_or_default();
            (
                t["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                format!("{ready} {}", digest_of(t)),
            )
        })
        .collect()
}

/// The memory high-water mark of pod `uid`'s cgroup (cgroup v1, cgroupfs driver).
fn pod_memory_peak(uid: &str) -> u64 {
    let root = std::path::Path::new("/sys/fs/cgroup/memory/kubepods");
    let dir = find_dir(root, &format!("pod{uid}"))
        .unwrap_or_else(|| panic!("no cgroup of pod {uid} under {}", root.display()));
    std::fs::read_to_string(dir.join("memory.max_usage_in_bytes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no memory.max_usage_in_bytes in {}", dir.display()))
}

fn find_dir(dir: &std::path::Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name().to_string_lossy() == name {
            return Some(path);
        }
        if let Some(found) = find_dir(&path, name) {
            return Some(found);
        }
    }
    None
}

/// `kubectl logs` of the operator's pods hold no token or secret: no JWT (Entra, the
/// projected ServiceAccount token, registry tokens), no client secret, no ACR password.
pub fn operator_logs_hold_no_secret(ctx: &Ctx) {
    let op = operator(ctx);
    let mut logs = String::new();
    for pod in operator_pods(ctx) {
        let out = ctx.cluster.kubectl(["logs", &pod.name, "-n", SYSTEM_NS]);
        out.assert_success();
        logs.push_str(&out.stdout);
        logs.push_str(&out.stderr);
    }
    assert!(
        logs.lines().count() > 5,
        "too few log lines to mean anything:\n{logs}"
    );
    let secret = op.emu.client_secret();
    assert!(!logs.contains(&secret), "the client secret is in the logs");
    assert!(!logs.contains("eyJ"), "a JWT is in the logs:\n{logs}");
    let cred = op.emu.list_credential(MANIFEST, support::emulator::V2023);
    assert!(!logs.contains(&cred.token), "an ACR token is in the logs");
}

/// Polls `f` until it gives a value.
fn wait_for_value<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    support::wait_for(what, timeout, f)
}
