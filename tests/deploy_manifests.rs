//! The Helm chart (`charts/aosm-artifact-operator/`) and the kustomize base (`deploy/`):
//!
//! - offline: the chart's and `deploy/base/`'s CRDs are byte-for-byte `crds/`; `helm lint
//!   --strict` is clean; every rendered container runs restricted; the RBAC is exactly what
//!   the controller calls; `values.schema.json` refuses typos; the workload identity, CA
//!   bundle, leader election, ServiceMonitor and NetworkPolicy values render what they
//!   promise; the rendered arguments are accepted by the binary; `deploy/` holds the same
//!   objects as the chart with default values.
//! - on a real kube-apiserver (`support/kube.rs`, one cluster shared by the tests of this
//!   file, each test in its own namespaces): `helm template` output passes a server-side
//!   dry run; `helm install` creates the objects and the ServiceAccount may do exactly what
//!   the RBAC table says (`kubectl auth can-i`), `helm uninstall` removes them;
//!   `kubectl apply -k deploy/` and its workload identity overlay apply; and the controller,
//!   run with the chart's arguments and a token of the chart's ServiceAccount (nothing
//!   more), acquires its Lease and pushes an ARM template into the AOSM emulator's store.

mod support;

trust_emulator_ca!();

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::{Value, json};
use support::emulator::Emulator;
use support::kube::KubeCluster;
use support::registry::free_port;
use support::{Cmd, Output, Registry, TestEnv, fixtures, tools, wait_for};

const CHART: &str = "charts/aosm-artifact-operator";
/// What the chart names everything with release `aosm-artifact-operator`, and `deploy/`.
const NAME: &str = "aosm-artifact-operator";
/// The restricted user of the image.
const NONROOT_UID: u64 = 65532;
/// Upper bound for the controller to finish a small transfer on a loaded 2-core machine.
const READY: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join(CHART)
}

/// The shared cluster with `crds/` installed (once).
fn cluster() -> &'static KubeCluster {
    static CRDS: Once = Once::new();
    let cluster = KubeCluster::shared();
    CRDS.call_once(|| {
        cluster.apply_crds();
    });
    cluster
}

// ----- helm and YAML -------------------------------------------------------------------

/// `helm ARGS` with its own config/cache/data directories (removed afterwards).
fn helm<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let home = tempfile::Builder::new()
        .prefix("aosm-helm-")
        .tempdir()
        .expect("helm temp dir");
    Cmd::new(tools::require("helm"))
        .env("HOME", home.path())
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env_remove("KUBECONFIG")
        .env_remove("HELM_KUBECONTEXT")
        .env_remove("HELM_NAMESPACE")
        .args(args)
        .current_dir(root())
        .run()
}

/// `helm --kubeconfig <cluster> ARGS`.
fn helm_on(cluster: &KubeCluster, args: &[&str]) -> Output {
    let mut all = vec![
        "--kubeconfig".to_string(),
        cluster.kubeconfig_path().display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    helm(all)
}

/// Every non-empty document of a multi-document YAML text.
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}")))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// `helm template RELEASE chart --namespace NS EXTRA...` (fails the test on an error).
fn render_out(release: &str, ns: &str, extra: &[&str]) -> Output {
    let mut args = vec!["template", release, CHART, "--namespace", ns];
    args.extend(extra);
    helm(args)
}

fn render(release: &str, ns: &str, extra: &[&str]) -> Vec<Value> {
    let out = render_out(release, ns, extra);
    out.assert_success();
    yaml_docs(&out.stdout)
}

/// The chart with default values, as `deploy/` mirrors it.
fn render_default() -> Vec<Value> {
    render(NAME, "aosm-system", &[])
}

/// Values turning on every optional feature, in a temp file kept for the test's life.
struct ValuesFile {
    _dir: tempfile::TempDir,
    path: String,
}

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const TENANT_ID: &str = "66666666-7777-8888-9999-000000000000";

fn all_features() -> ValuesFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("values.yaml");
    std::fs::write(
        &path,
        format!(
            r#"replicaCount: 2
image:
  tag: "0.1.0-test"
imagePullSecrets: [{{name: regcred}}]
azure:
  workloadIdentity: {{clientId: "{CLIENT_ID}", tenantId: "{TENANT_ID}"}}
  authorityHost: https://login.microsoftonline.us
caBundle: {{configMap: corp-ca}}
controller: {{watchNamespace: apps, watchLabelSelector: "shard=a", concurrency: 8, blobConcurrency: 2, maxConcurrentPerNamespace: 3, logFormat: text}}
tenancy: {{namespacedStoreAmbientIdentity: true, namespacedStoreEndpointHosts: [arm.example, "login.example:8443"]}}
extraArgs: ["--progress-interval=5"]
extraEnv: [{{name: RUST_BACKTRACE, value: "1"}}]
networkPolicy:
  enabled: true
  egressPorts: [443, 5000]
  apiServer: {{cidrs: ["10.0.0.1/32"]}}
  ingressFrom: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: monitoring}}}}}}]
metrics:
  serviceMonitor: {{enabled: true, labels: {{release: prometheus}}, scrapeTimeout: 10s}}
podLabels: {{team: cnf}}
podAnnotations: {{example.com/owner: cnf}}
priorityClassName: system-cluster-critical
tolerations: [{{key: dedicated, operator: Exists, effect: NoSchedule}}]
nodeSelector: {{kubernetes.io/os: linux}}
"#
        ),
    )
    .expect("write values");
    ValuesFile {
        path: path.display().to_string(),
        _dir: dir,
    }
}

fn kind_of(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn all_of<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| kind_of(o) == kind).collect()
}

/// The one object of `kind`.
#[track_caller]
fn one<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found = all_of(objs, kind);
    assert_eq!(
        found.len(),
        1,
        "expected one {kind}, got {}: {:#?}",
        found.len(),
        objs.iter()
            .map(|o| (kind_of(o), name_of(o)))
            .collect::<Vec<_>>()
    );
    found[0]
}

fn controller(objs: &[Value]) -> &Value {
    let containers = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"] == "controller")
        .expect("a container named controller")
}

fn args_of(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// The value of `--flag=value` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args.iter().find_map(|a| a.strip_prefix(&prefix))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ----- the checks shared by the chart and deploy/ --------------------------------------

/// Every pod template in `objs` runs restricted (the Pod Security Standard): each container
/// non-root (user 65532), read-only root filesystem, no privilege escalation, all
/// capabilities dropped, RuntimeDefault seccomp; no host namespaces or host paths.
#[track_caller]
fn assert_restricted(objs: &[Value], what: &str) {
    let pods: Vec<(&Value, &Value)> = objs
        .iter()
        .filter_map(|o| {
            let spec = &o["spec"]["template"]["spec"];
            spec.is_object().then_some((o, spec))
        })
        .collect();
    assert!(!pods.is_empty(), "{what}: no pod template");
    for (obj, pod) in pods {
        let at = format!("{what}: {} {}", kind_of(obj), name_of(obj));
        let psc = &pod["securityContext"];
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_ne!(pod[host], json!(true), "{at}: {host}");
        }
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            assert!(
                volume["hostPath"].is_null(),
                "{at}: hostPath volume {volume}"
            );
        }
        let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|k| pod[*k].as_array().into_iter().flatten())
            .collect();
        assert!(!containers.is_empty(), "{at}: no containers");
        for c in containers {
            let at = format!("{at} container {}", c["name"]);
            let sc = &c["securityContext"];
            // A container setting wins over the pod's.
            let effective = |key: &str| {
                if sc[key].is_null() {
                    &psc[key]
                } else {
                    &sc[key]
                }
            };
            assert_eq!(
                effective("runAsNonRoot"),
                &json!(true),
                "{at}: runAsNonRoot"
            );
            assert_eq!(
                effective("runAsUser"),
                &json!(NONROOT_UID),
                "{at}: runAsUser"
            );
            assert_eq!(
                sc["readOnlyRootFilesystem"],
                json!(true),
                "{at}: readOnlyRootFilesystem"
            );
            assert_eq!(
                sc["allowPrivilegeEscalation"],
                json!(false),
                "{at}: allowPrivilegeEscalation"
            );
            assert_ne!(sc["privileged"], json!(true), "{at}: privileged");
            assert!(
                strings(&sc["capabilities"]["drop"]).contains("ALL"),
                "{at}: capabilities.drop must hold ALL: {sc}"
            );
            assert!(
                sc["capabilities"]["add"]
                    .as_array()
                    .is_none_or(|a| a.is_empty()),
                "{at}: capabilities.add: {sc}"
            );
            assert_eq!(
                effective("seccompProfile")["type"],
                json!("RuntimeDefault"),
                "{at}: seccompProfile"
            );
            assert!(
                c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object(),
                "{at}: resources: {}",
                c["resources"]
            );
        }
    }
}

/// The rules the controller needs: (apiGroup, resource) → verbs.
fn expected_cluster_rules() -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m = BTreeMap::new();
    let mut add = |group: &str, resources: &[&str], verbs: &[&str]| {
        for r in resources {
            m.insert((group.to_string(), r.to_string()), set(verbs));
        }
    };
    let crs = [
        "artifacttransfers",
        "artifactstores",
        "clusterartifactstores",
    ];
    add("artifacts.aosm.dev", &crs, &["get", "list", "watch"]);
    let status: Vec<String> = crs.iter().map(|r| format!("{r}/status")).collect();
    let status: Vec<&str> = status.iter().map(String::as_str).collect();
    add("artifacts.aosm.dev", &status, &["get", "patch"]);
    add("", &["secrets"], &["get"]);
    add("", &["configmaps"], &["get", "create", "patch"]);
    add("", &["namespaces"], &["get"]);
    add("", &["serviceaccounts"], &["get"]);
    add("", &["serviceaccounts/token"], &["create"]);
    add("events.k8s.io", &["events"], &["create", "patch"]);
    m
}

/// (apiGroup, resource) → verbs of a role's rules; wildcards and resourceNames checked.
/// One (apiGroup, resource) of a rule: its verbs and resourceNames.
type Grant = ((String, String), BTreeSet<String>, Vec<String>);

fn rules_of(role: &Value, at: &str) -> Vec<Grant> {
    let mut out = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        for key in ["apiGroups", "resources", "verbs", "resourceNames"] {
            assert!(
                !strings(&rule[key]).iter().any(|s| s.contains('*')),
                "{at}: wildcard in {key}: {rule}"
            );
        }
        assert!(rule["nonResourceURLs"].is_null(), "{at}: {rule}");
        let verbs = strings(&rule["verbs"]);
        for dangerous in [
            "escalate",
            "bind",
            "impersonate",
            "deletecollection",
            "delete",
        ] {
            assert!(!verbs.contains(dangerous), "{at}: verb {dangerous}: {rule}");
        }
        let names: Vec<String> = strings(&rule["resourceNames"]).into_iter().collect();
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                out.push(((g.clone(), r), verbs.clone(), names.clone()));
            }
        }
    }
    out
}

/// Least privilege: the ClusterRole has exactly [`expected_cluster_rules`] (Secrets only
/// `get`, no leases, no wildcards); leases only in a Role in `ns`, `get`/`patch` limited to
/// the Lease the controller is told to use; the bindings name the ServiceAccount the
/// Deployment runs as.
#[track_caller]
fn assert_least_privilege(objs: &[Value], ns: &str, what: &str) {
    let sa = one(objs, "ServiceAccount");
    let sa_name = name_of(sa);
    let pod = &one(objs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], json!(sa_name), "{what}");
    assert_ne!(
        pod["automountServiceAccountToken"],
        json!(false),
        "{what}: the controller needs its token"
    );

    let cluster_role = one(objs, "ClusterRole");
    let mut got: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (key, verbs, names) in rules_of(cluster_role, what) {
        assert!(
            names.is_empty(),
            "{what}: ClusterRole resourceNames {names:?}"
        );
        got.entry(key).or_default().extend(verbs);
    }
    assert_eq!(got, expected_cluster_rules(), "{what}: ClusterRole rules");
    assert_eq!(
        got[&(String::new(), "secrets".to_string())],
        set(&["get"]),
        "{what}: Secrets are only read by name"
    );

    let role = one(objs, "Role");
    assert_eq!(
        role["metadata"]["namespace"],
        json!(ns),
        "{what}: Role namespace"
    );
    let lease = flag(&args_of(controller(objs)), "lease-name")
        .expect("--lease-name")
        .to_string();
    let mut lease_rules = rules_of(role, what);
    lease_rules.sort();
    let leases = ("coordination.k8s.io".to_string(), "leases".to_string());
    assert_eq!(
        lease_rules,
        vec![
            (leases.clone(), set(&["create"]), vec![]),
            (leases, set(&["get", "patch"]), vec![lease]),
        ],
        "{what}: Role rules"
    );

    for (binding, role_kind, role_obj) in [
        ("ClusterRoleBinding", "ClusterRole", cluster_role),
        ("RoleBinding", "Role", role),
    ] {
        let b = one(objs, binding);
        assert_eq!(b["roleRef"]["kind"], json!(role_kind), "{what}: {binding}");
        assert_eq!(
            b["roleRef"]["name"],
            json!(name_of(role_obj)),
            "{what}: {binding}"
        );
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa_name, "namespace": ns}]),
            "{what}: {binding}"
        );
        if binding == "RoleBinding" {
            assert_eq!(b["metadata"]["namespace"], json!(ns), "{what}: {binding}");
        }
    }
}

// ----- offline -------------------------------------------------------------------------

fn yaml_file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("read_dir")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".json"))
        .collect()
}

#[test]
fn chart_and_deploy_crds_are_byte_for_byte_crds() {
    let source = root().join("crds");
    let want = yaml_file_names(&source);
    assert_eq!(want.len(), 3, "crds/: {want:?}");
    for copy in [chart_dir().join("crds"), root().join("deploy/base/crds")] {
        assert_eq!(
            yaml_file_names(&copy),
            want,
            "{} must hold exactly the files of crds/ (run `make crds`)",
            copy.display()
        );
        for name in &want {
            let a = std::fs::read(source.join(name)).unwrap();
            let b = std::fs::read(copy.join(name)).unwrap();
            assert!(
                a == b,
                "{}/{name} differs from crds/{name}: run `make crds`",
                copy.display()
            );
        }
    }
}

#[test]
fn helm_lint_strict_is_clean_with_default_and_all_values() {
    let values = all_features();
    for extra in [vec![], vec!["-f", values.path.as_str()]] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend(&extra);
        let out = helm(args);
        out.assert_success();
        assert!(
            out.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
        assert!(
            !out.stdout.contains("[WARNING]") && !out.stdout.contains("[ERROR]"),
            "{out}"
        );
    }
}

#[test]
fn chart_metadata_and_default_image() {
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .expect("Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], NAME);
    assert_eq!(chart["version"], "0.1.0");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let objs = render_default();
    assert_eq!(
        controller(&objs)["image"],
        json!(format!(
            "ghcr.io/aosm-artifact-operator/aosm-artifact-operator:{}",
            env!("CARGO_PKG_VERSION")
        ))
    );
    let objs = render(
        "x",
        "ns",
        &[
            "--set",
            "image.tag=1.2.3",
            "--set",
            "image.pullPolicy=Always",
        ],
    );
    let c = controller(&objs);
    assert_eq!(
        c["image"],
        "ghcr.io/aosm-artifact-operator/aosm-artifact-operator:1.2.3"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
}

#[test]
fn every_rendered_container_runs_restricted() {
    let values = all_features();
    assert_restricted(&render_default(), "chart, default values");
    assert_restricted(
        &render("all", "ns", &["-f", &values.path]),
        "chart, all features",
    );
    // The restricted settings are the defaults, not something a feature switches off.
    for (what, objs) in [
        ("deploy/", kustomize("deploy")),
        (
            "deploy/overlays/workload-identity",
            kustomize("deploy/overlays/workload-identity"),
        ),
    ] {
        assert_restricted(&objs, what);
    }
}

#[test]
fn rbac_is_exactly_what_the_controller_calls() {
    let values = all_features();
    assert_least_privilege(&render_default(), "aosm-system", "chart, default values");
    assert_least_privilege(
        &render("rel", "team-ns", &["-f", &values.path]),
        "team-ns",
        "chart, all features",
    );
    assert_least_privilege(&kustomize("deploy"), "aosm-system", "deploy/");
    // rbac.serviceAccountTokens=false drops exactly the two ServiceAccount rules.
    let objs = render("x", "ns", &["--set", "rbac.serviceAccountTokens=false"]);
    let mut got: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (key, verbs, _) in rules_of(one(&objs, "ClusterRole"), "no ServiceAccount tokens") {
        got.entry(key).or_default().extend(verbs);
    }
    let mut want = expected_cluster_rules();
    want.remove(&(String::new(), "serviceaccounts".to_string()));
    want.remove(&(String::new(), "serviceaccounts/token".to_string()));
    assert_eq!(got, want, "rbac.serviceAccountTokens=false");
    // rbac.create=false leaves RBAC to the user.
    let objs = render("x", "ns", &["--set", "rbac.create=false"]);
    for kind in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(
            all_of(&objs, kind).is_empty(),
            "rbac.create=false renders a {kind}"
        );
    }
}

#[test]
fn deployment_runs_the_controller_with_probes_ports_env_and_tmp() {
    let objs = render_default();
    let deployment = one(&objs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], json!(1));
    let c = controller(&objs);
    let args = args_of(c);
    assert_eq!(args[0], "run", "{args:?}");
    assert_eq!(flag(&args, "log-format"), Some("json"), "{args:?}");
    assert_eq!(
        flag(&args, "metrics-addr"),
        Some("0.0.0.0:8080"),
        "{args:?}"
    );
    assert_eq!(flag(&args, "health-addr"), Some("0.0.0.0:8081"), "{args:?}");
    assert_eq!(flag(&args, "lease-name"), Some(NAME), "{args:?}");
    assert!(!args.contains(&"--leader-elect".to_string()), "{args:?}");
    // One replica without leader election must never overlap another during a rollout.
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");

    let ports: BTreeMap<String, u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([("health".into(), 8081), ("metrics".into(), 8080)])
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(
            c[probe]["httpGet"],
            json!({"path": path, "port": "health"}),
            "{probe}"
        );
    }
    for (var, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        assert_eq!(
            env_of(c, var).map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
            Some(&json!(field)),
            "{var}: {}",
            c["env"]
        );
    }
    for var in [
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "AZURE_AUTHORITY_HOST",
        "AZURE_CLIENT_ID",
    ] {
        assert!(env_of(c, var).is_none(), "{var} set by default");
    }
    // /tmp is a writable emptyDir: Helm repository charts stream through a temp file.
    let pod = &deployment["spec"]["template"]["spec"];
    let tmp_mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/tmp")
        .expect("a /tmp mount");
    assert_ne!(tmp_mount["readOnly"], json!(true));
    let tmp_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == tmp_mount["name"])
        .expect("the /tmp volume");
    assert!(tmp_volume["emptyDir"].is_object(), "{tmp_volume}");
    let no_limit = render("x", "ns", &["--set", "tmpSizeLimit="]);
    let volumes = &one(&no_limit, "Deployment")["spec"]["template"]["spec"]["volumes"];
    assert_eq!(volumes[0]["emptyDir"], json!({}), "{volumes}");

    // The metrics Service selects the pods and targets the metrics port.
    let service = one(&objs, "Service");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "Service selector {k}");
    }
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    // Off by default.
    for kind in ["ServiceMonitor", "NetworkPolicy"] {
        assert!(all_of(&objs, kind).is_empty(), "{kind} rendered by default");
    }
}

#[test]
fn more_than_one_replica_or_force_turns_on_leader_election() {
    for (extra, replicas) in [
        (vec!["--set", "replicaCount=2"], 2),
        (vec!["--set", "replicaCount=3"], 3),
        (vec!["--set", "leaderElection.force=true"], 1),
    ] {
        let objs = render("ha", "ns", &extra);
        let deployment = one(&objs, "Deployment");
        assert_eq!(deployment["spec"]["replicas"], json!(replicas), "{extra:?}");
        let args = args_of(controller(&objs));
        assert_eq!(
            args.iter().filter(|a| *a == "--leader-elect").count(),
            1,
            "{extra:?}: {args:?}"
        );
        // Replicas may roll: the Lease keeps one reconciling.
        assert!(deployment["spec"]["strategy"].is_null(), "{extra:?}");
        assert_eq!(flag(&args, "lease-name"), Some("ha-aosm-artifact-operator"));
        assert_eq!(flag(&args, "lease-duration"), Some("15"));
    }
    let objs = render(
        "ha",
        "ns",
        &[
            "--set",
            "replicaCount=2",
            "--set",
            "leaderElection.leaseName=shard-a",
            "--set",
            "leaderElection.leaseDuration=30",
        ],
    );
    let args = args_of(controller(&objs));
    assert_eq!(flag(&args, "lease-name"), Some("shard-a"));
    assert_eq!(flag(&args, "lease-duration"), Some("30"));
    assert_least_privilege(&objs, "ns", "leaseName=shard-a");
}

#[test]
fn workload_identity_values_render_the_annotations_and_the_pod_label() {
    let sa_annotations =
        |objs: &[Value]| one(objs, "ServiceAccount")["metadata"]["annotations"].clone();
    let pod_label = |objs: &[Value]| {
        one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
            ["azure.workload.identity/use"]
            .clone()
    };
    // None by default.
    let objs = render_default();
    assert!(sa_annotations(&objs).is_null(), "{}", sa_annotations(&objs));
    assert!(pod_label(&objs).is_null());

    // Client ID: annotation and label, no tenant annotation.
    let objs = render(
        "wi",
        "ns",
        &[
            "--set",
            &format!("azure.workloadIdentity.clientId={CLIENT_ID}"),
        ],
    );
    assert_eq!(
        sa_annotations(&objs),
        json!({"azure.workload.identity/client-id": CLIENT_ID})
    );
    assert_eq!(pod_label(&objs), json!("true"));

    // Both, beside the user's own annotations.
    let objs = render(
        "wi",
        "ns",
        &[
            "--set",
            &format!("azure.workloadIdentity.clientId={CLIENT_ID}"),
            "--set",
            &format!("azure.workloadIdentity.tenantId={TENANT_ID}"),
            "--set",
            "serviceAccount.annotations.team=cnf",
        ],
    );
    assert_eq!(
        sa_annotations(&objs),
        json!({
            "azure.workload.identity/client-id": CLIENT_ID,
            "azure.workload.identity/tenant-id": TENANT_ID,
            "team": "cnf",
        })
    );
    assert_eq!(pod_label(&objs), json!("true"));

    // The sovereign-cloud authority host reaches the controller's environment.
    let objs = render(
        "wi",
        "ns",
        &[
            "--set",
            "azure.authorityHost=https://login.microsoftonline.us",
        ],
    );
    assert_eq!(
        env_of(controller(&objs), "AZURE_AUTHORITY_HOST").map(|e| &e["value"]),
        Some(&json!("https://login.microsoftonline.us"))
    );

    // Without the webhook (inject): what the AKS webhook adds, no more.
    let wi_env = |objs: &[Value]| {
        [
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_AUTHORITY_HOST",
        ]
        .map(|name| env_of(controller(objs), name).map(|e| e["value"].clone()))
    };
    assert_eq!(wi_env(&render_default()), [None, None, None, None]);
    let objs = render(
        "wi",
        "ns",
        &[
            "--set",
            &format!("azure.workloadIdentity.clientId={CLIENT_ID}"),
            "--set",
            &format!("azure.workloadIdentity.tenantId={TENANT_ID}"),
            "--set",
            "azure.workloadIdentity.inject=true",
        ],
    );
    assert_eq!(
        wi_env(&objs),
        [
            Some(json!(CLIENT_ID)),
            Some(json!(TENANT_ID)),
            Some(json!("/var/run/secrets/azure/tokens/azure-identity-token")),
            Some(json!("https://login.microsoftonline.com/")),
        ]
    );
    let pod = &one(&objs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "azure-identity-token")
            .map(|v| v["projected"]["sources"][0]["serviceAccountToken"].clone()),
        Some(
            json!({"path": "azure-identity-token", "audience": "api://AzureADTokenExchange",
            "expirationSeconds": 3600})
        )
    );
    assert!(
        controller(&objs)["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "azure-identity-token"
                && m["mountPath"] == "/var/run/secrets/azure/tokens"
                && m["readOnly"] == true),
        "{}",
        controller(&objs)
    );

    // The kustomize overlay does the same to deploy/.
    let objs = kustomize("deploy/overlays/workload-identity");
    let annotations = sa_annotations(&objs);
    assert!(
        annotations["azure.workload.identity/client-id"].is_string(),
        "{annotations}"
    );
    assert_eq!(pod_label(&objs), json!("true"));
}

#[test]
fn ca_bundle_values_mount_the_bundle_and_keep_the_system_roots() {
    for (source, volume_key) in [("configMap", "configMap"), ("secret", "secret")] {
        let objs = render(
            "ca",
            "ns",
            &[
                "--set",
                &format!("caBundle.{source}=corp-ca"),
                "--set",
                "caBundle.key=bundle.pem",
            ],
        );
        let deployment = one(&objs, "Deployment");
        let c = controller(&objs);
        let file = env_of(c, "SSL_CERT_FILE").expect("SSL_CERT_FILE")["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            env_of(c, "SSL_CERT_DIR").map(|e| &e["value"]),
            Some(&json!("/etc/ssl/certs")),
            "the system roots must stay trusted beside the bundle"
        );
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| file.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("no mount holds {file}: {}", c["volumeMounts"]));
        assert_eq!(mount["readOnly"], json!(true));
        assert!(file.ends_with("/bundle.pem"), "{file}");
        let volume = deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the CA volume");
        let name_key = if source == "secret" {
            "secretName"
        } else {
            "name"
        };
        assert_eq!(volume[volume_key][name_key], json!("corp-ca"), "{volume}");
        assert_eq!(
            volume[volume_key]["items"],
            json!([{"key": "bundle.pem", "path": "bundle.pem"}])
        );
    }
    let out = render_out(
        "ca",
        "ns",
        &[
            "--set",
            "caBundle.configMap=a",
            "--set",
            "caBundle.secret=b",
        ],
    );
    assert!(!out.success(), "both CA sources accepted\n{out}");
    assert!(out.stderr.contains("not both"), "{out}");
}

/// The environment the chart gives the controller for a CA bundle really trusts both the
/// bundle (`SSL_CERT_FILE`) and the system roots (`SSL_CERT_DIR`): the binary copies
/// between two TLS registries, one signed by a CA only in the "system" directory, the
/// other by a CA only in the bundle.
#[test]
fn ca_bundle_environment_trusts_the_bundle_and_the_system_directory() {
    let env = TestEnv::new();
    let system_reg = Registry::with_tls();
    let bundle_reg = Registry::with_tls();
    env.prepare(&system_reg);
    let image = fixtures::push_image(
        &env,
        &system_reg,
        "src/app:1.0.0",
        &[1024, 2048],
        fixtures::Flavor::Oci,
        None,
    );
    // A stand-in for /etc/ssl/certs holding the first registry's CA.
    let system_dir = env.path("system-certs");
    std::fs::create_dir_all(&system_dir).unwrap();
    std::fs::copy(system_reg.ca_file(), system_dir.join("ca-certificates.crt")).unwrap();

    let objs = render(
        "ca",
        "ns",
        &[
            "--set",
            "caBundle.secret=corp-ca",
            "--set",
            &format!("caBundle.systemCertDir={}", system_dir.display()),
        ],
    );
    let c = controller(&objs);
    let cert_dir = env_of(c, "SSL_CERT_DIR").expect("SSL_CERT_DIR")["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(env_of(c, "SSL_CERT_FILE").is_some());
    let copy = |with_dir: bool| {
        let mut cmd = env
            .ours()
            .args(["copy"])
            .arg(system_reg.reference("src/app:1.0.0"))
            .arg(bundle_reg.reference("dst/app:1.0.0"))
            // The mounted bundle, here a local file.
            .env("SSL_CERT_FILE", bundle_reg.ca_file());
        if with_dir {
            cmd = cmd.env("SSL_CERT_DIR", &cert_dir);
        }
        cmd.run()
    };
    // Without SSL_CERT_DIR the directory is not read. (With SSL_CERT_FILE set,
    // rustls-native-certs reads the system store from nowhere else — its documented rule —
    // which is why the chart sets SSL_CERT_DIR beside SSL_CERT_FILE.)
    let out = copy(false);
    assert!(!out.success(), "copied without the system directory\n{out}");
    let line = out.stderr_last_line();
    assert!(
        line.contains("invalid peer certificate")
            && line.contains(&format!(":{}", system_reg.port())),
        "not a TLS failure of the source registry: {line}"
    );
    // With the chart's SSL_CERT_DIR both are.
    copy(true).assert_success();
    env.prepare(&bundle_reg);
    assert_eq!(env.crane_digest(&bundle_reg, "dst/app:1.0.0"), image.digest);
}

#[test]
fn optional_service_monitor_and_network_policy() {
    let values = all_features();
    let objs = render("mon", "obs", &["-f", &values.path]);
    let sm = one(&objs, "ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        one(&objs, "Service")["spec"]["selector"]
    );
    assert_eq!(
        sm["spec"]["namespaceSelector"],
        json!({"matchNames": ["obs"]})
    );
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}])
    );

    let np = one(&objs, "NetworkPolicy");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"],
        one(&objs, "Deployment")["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        strings(&np["spec"]["policyTypes"]),
        set(&["Egress", "Ingress"])
    );
    let ports = |rule: &Value| -> BTreeSet<(u64, String)> {
        rule["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["port"].as_u64().unwrap(),
                    p["protocol"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        ports(&ingress[0]),
        BTreeSet::from([(8080, "TCP".into()), (8081, "TCP".into())])
    );
    assert_eq!(
        ingress[0]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    let egress = np["spec"]["egress"].as_array().unwrap();
    let tcp = |p: u64| (p, "TCP".to_string());
    let dns = BTreeSet::from([(53, "UDP".to_string()), tcp(53)]);
    assert!(
        egress.iter().any(|r| ports(r) == dns && r["to"].is_null()),
        "no DNS egress: {egress:#?}"
    );
    assert!(
        egress
            .iter()
            .any(|r| ports(r) == BTreeSet::from([tcp(443), tcp(6443)])
                && r["to"] == json!([{"ipBlock": {"cidr": "10.0.0.1/32"}}])),
        "no API server egress: {egress:#?}"
    );
    assert!(
        egress
            .iter()
            .any(|r| ports(r) == BTreeSet::from([tcp(443), tcp(5000)]) && r["to"].is_null()),
        "no egress to 443 and the extra ports: {egress:#?}"
    );
}

#[test]
fn values_schema_refuses_typos_and_wrong_types() {
    for (set_arg, names) in [
        ("replicaCount=x", "replicaCount"),
        ("replicaCont=2", "replicaCont"),
        ("image.tagg=1.0.0", "tagg"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("controller.logFormat=yaml", "logFormat"),
        ("controller.concurrency=0", "concurrency"),
        ("azure.workloadIdentity.clientID=abc", "clientID"),
        ("azure.workloadIdentity.clientId=not-a-guid", "clientId"),
        ("azure.workloadIdentity.inject=yes", "inject"),
        (
            "azure.workloadIdentity.tokenExpirationSeconds=60",
            "tokenExpirationSeconds",
        ),
        ("azure.authorityHost=http://login.example", "authorityHost"),
        ("leaderElection.enabled=true", "enabled"),
        ("metrics.port=70000", "port"),
        ("networkPolicy.enable=true", "enable"),
        ("serviceMonitor.enabled=true", "serviceMonitor"),
        (
            "controller.maxConcurrentPerNamespace=0",
            "maxConcurrentPerNamespace",
        ),
        (
            "tenancy.namespacedStoreAmbientIdentity=yes please",
            "namespacedStoreAmbientIdentity",
        ),
        (
            "tenancy.namespacedStoreEndpointHosts={https://arm.example}",
            "namespacedStoreEndpointHosts",
        ),
    ] {
        let out = render_out("typo", "ns", &["--set", set_arg]);
        assert!(!out.success(), "--set {set_arg} was accepted\n{out}");
        assert!(
            out.stderr
                .contains("values don't meet the specifications of the schema")
                && out.stderr.contains(names),
            "--set {set_arg}: the error does not name {names:?}\n{out}"
        );
    }
    // inject without the ids it injects: one line naming what is missing.
    let out = render_out("wi", "ns", &["--set", "azure.workloadIdentity.inject=true"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(
            "azure.workloadIdentity.inject needs azure.workloadIdentity.clientId and azure.workloadIdentity.tenantId"
        ),
        "{out}"
    );
    // And the documented values are accepted (all_features covers nearly all of them).
    let values = all_features();
    render("ok", "ns", &["-f", &values.path]);
}

/// Every `--set` this file uses yields arguments the binary accepts: it gets past flag
/// parsing and address checks to building its Kubernetes client (there is none here).
#[test]
fn rendered_arguments_are_accepted_by_the_binary() {
    let values = all_features();
    let env = TestEnv::new();
    for (what, objs) in [
        ("default", render_default()),
        ("all features", render("all", "ns", &["-f", &values.path])),
        ("deploy/", kustomize("deploy")),
    ] {
        let args = args_of(controller(&objs));
        let out = env
            .ours()
            .args(&args)
            .env("KUBECONFIG", env.path("no-such-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("POD_NAMESPACE", "aosm-system")
            .env("POD_NAME", "aosm-artifact-operator-0")
            .run();
        assert!(!out.success(), "{what}: started without a cluster?\n{out}");
        assert!(
            out.stderr
                .contains("cannot configure the Kubernetes client"),
            "{what}: {args:?} was not accepted\n{out}"
        );
    }
}

// ----- deploy/ -------------------------------------------------------------------------

/// `kubectl kustomize DIR` (relative to the repository root), parsed.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = Cmd::new(tools::require("kubectl"))
        .env_remove("KUBECONFIG")
        .arg("kustomize")
        .arg(root().join(dir))
        .ok();
    yaml_docs(&out.stdout)
}

/// Drops the labels only Helm sets (or sets differently): `helm.sh/chart` and
/// `app.kubernetes.io/managed-by`.
fn without_helm_labels(mut obj: Value) -> Value {
    for path in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(labels) = obj.pointer_mut(path).and_then(Value::as_object_mut) {
            labels.remove("helm.sh/chart");
            labels.remove("app.kubernetes.io/managed-by");
        }
    }
    obj
}

/// The first path where `a` and `b` differ (numbers compared by value: kustomize writes
/// `0.0` as `0`), with both values.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let null = Value::Null;
                first_difference(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    &format!("{path}/{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}/{i}"))),
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

fn keyed(objs: Vec<Value>) -> BTreeMap<String, Value> {
    objs.into_iter()
        .map(|o| {
            let key = format!(
                "{} {}/{}",
                kind_of(&o),
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                name_of(&o)
            );
            (key, without_helm_labels(o))
        })
        .collect()
}

#[test]
fn deploy_holds_the_charts_default_objects() {
    let built = kustomize("deploy");
    let crds: Vec<&Value> = all_of(&built, "CustomResourceDefinition");
    let mut from_files: Vec<Value> = yaml_file_names(&root().join("crds"))
        .iter()
        .flat_map(|n| yaml_docs(&std::fs::read_to_string(root().join("crds").join(n)).unwrap()))
        .collect();
    from_files.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let mut crds: Vec<Value> = crds.into_iter().cloned().collect();
    crds.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    assert_eq!(
        crds.len(),
        from_files.len(),
        "deploy/ must install exactly crds/"
    );
    for (built, file) in crds.iter().zip(&from_files) {
        if let Some(diff) = first_difference(built, file, "") {
            panic!(
                "deploy/ must install crds/ unchanged: {} differs at {diff}",
                name_of(file)
            );
        }
    }

    let ns = one(&built, "Namespace");
    assert_eq!(name_of(ns), "aosm-system");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    let deploy = keyed(
        built
            .iter()
            .filter(|o| !["Namespace", "CustomResourceDefinition"].contains(&kind_of(o)))
            .cloned()
            .collect(),
    );
    let chart = keyed(render_default());
    assert_eq!(
        deploy.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>(),
        "deploy/ and the chart (default values) hold different objects"
    );
    for (key, want) in &chart {
        assert!(
            first_difference(&deploy[key], want, "").is_none(),
            "{key} differs between deploy/ and `helm template {NAME} {CHART} -n aosm-system`:\n\
             --- deploy/\n{}\n--- chart\n{}",
            serde_yaml::to_string(&deploy[key]).unwrap(),
            serde_yaml::to_string(want).unwrap()
        );
    }
}

// ----- on the API server ---------------------------------------------------------------

/// `kubectl apply --server-side --dry-run=server -f -` of `objs`; returns the output.
fn server_dry_run(cluster: &KubeCluster, objs: &[Value]) -> Output {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objs});
    cluster
        .kubectl_cmd()
        .args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=aosm-deploy-tests",
            "-f",
            "-",
        ])
        .stdin(list.to_string())
        .run()
}

#[test]
fn helm_template_passes_a_server_side_dry_run() {
    let cluster = cluster();
    let ns = "chart-dry-run";
    cluster.create_namespace(ns, &[]);
    let values = all_features();
    for (what, extra) in [
        ("default values", vec![]),
        // No ServiceMonitor: its CRD (Prometheus Operator) is not installed here.
        (
            "all features",
            vec![
                "-f",
                values.path.as_str(),
                "--set",
                "metrics.serviceMonitor.enabled=false",
            ],
        ),
    ] {
        let objs = render("dry-run", ns, &extra);
        let out = server_dry_run(cluster, &objs);
        assert!(
            out.success(),
            "{what}: the API server refused the chart\n{out}"
        );
        for o in &objs {
            let (kind, name) = (kind_of(o).to_lowercase(), name_of(o));
            let tail = format!("/{name} serverside-applied (server dry run)");
            assert!(
                out.stdout.lines().any(|l| l.ends_with(&tail)
                    && (l.starts_with(&format!("{kind}/")) || l.starts_with(&format!("{kind}.")))),
                "{what}: {kind} {name} not applied\n{out}"
            );
        }
    }
}

fn kubectl_json(cluster: &KubeCluster, args: &[&str]) -> Value {
    let out = cluster.kubectl_cmd().args(args).args(["-o", "json"]).ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"))
}

/// `kubectl auth can-i` as `user`: true for yes.
fn can_i(cluster: &KubeCluster, user: &str, args: &[&str]) -> bool {
    let out = cluster
        .kubectl_cmd()
        .args(["auth", "can-i"])
        .args(args)
        .arg(format!("--as={user}"))
        .run();
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("unexpected answer\n{out}"),
    }
}

#[test]
fn helm_install_creates_the_objects_with_working_rbac_and_uninstall_removes_them() {
    let cluster = cluster();
    let (ns, release) = ("chart-install", "aosm-install");
    let full = "aosm-install-aosm-artifact-operator";
    let out = helm_on(
        cluster,
        &[
            "install",
            release,
            CHART,
            "--namespace",
            ns,
            "--create-namespace",
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.contains(&format!(
            "aosm-artifact-operator 0.1.0 is installed in namespace {ns}"
        )),
        "NOTES.txt not shown\n{out}"
    );
    let list = helm_on(cluster, &["list", "--namespace", ns, "-o", "json"]);
    list.assert_success();
    let releases: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(releases[0]["name"], release, "{list}");
    assert_eq!(releases[0]["status"], "deployed", "{list}");

    let namespaced = [
        ("deployment", full.to_string()),
        ("serviceaccount", full.to_string()),
        ("service", format!("{full}-metrics")),
        ("role", format!("{full}-leader-election")),
        ("rolebinding", format!("{full}-leader-election")),
    ];
    let cluster_scoped = [("clusterrole", full), ("clusterrolebinding", full)];
    for (kind, name) in &namespaced {
        let obj = kubectl_json(cluster, &["get", kind, name, "-n", ns]);
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
    }
    for (kind, name) in cluster_scoped {
        kubectl_json(cluster, &["get", kind, name]);
    }
    let deployment = kubectl_json(cluster, &["get", "deployment", full, "-n", ns]);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        full
    );

    // The bindings give the ServiceAccount exactly the table in the chart README.
    let sa = format!("system:serviceaccount:{ns}:{full}");
    let lease = format!("leases.coordination.k8s.io/{full}");
    let allowed = [
        "get secrets -n anywhere".to_string(),
        "get configmaps -n anywhere".into(),
        "create configmaps -n apps".into(),
        "patch configmaps -n apps".into(),
        "get namespaces".into(),
        "get serviceaccounts -n anywhere".into(),
        "create serviceaccounts --subresource=token -n anywhere".into(),
        "list artifacttransfers.artifacts.aosm.dev -A".into(),
        "watch artifactstores.artifacts.aosm.dev -A".into(),
        "watch clusterartifactstores.artifacts.aosm.dev".into(),
        "patch artifacttransfers.artifacts.aosm.dev --subresource=status -n apps".into(),
        "patch clusterartifactstores.artifacts.aosm.dev --subresource=status".into(),
        "create events.events.k8s.io -n apps".into(),
        "patch events.events.k8s.io -n apps".into(),
        format!("create leases.coordination.k8s.io -n {ns}"),
        format!("get {lease} -n {ns}"),
        format!("patch {lease} -n {ns}"),
    ];
    let refused = [
        "list secrets -A".to_string(),
        format!("watch secrets -n {ns}"),
        format!("create secrets -n {ns}"),
        "list configmaps -A".into(),
        "watch configmaps -n apps".into(),
        "update configmaps -n apps".into(),
        "delete configmaps -n apps".into(),
        "list namespaces".into(),
        "list serviceaccounts -A".into(),
        "create serviceaccounts -n apps".into(),
        "patch serviceaccounts -n apps".into(),
        "update artifacttransfers.artifacts.aosm.dev -n apps".into(),
        "patch artifacttransfers.artifacts.aosm.dev -n apps".into(),
        "delete artifacttransfers.artifacts.aosm.dev -n apps".into(),
        "create artifactstores.artifacts.aosm.dev -n apps".into(),
        "create leases.coordination.k8s.io -n apps".into(),
        format!("patch leases.coordination.k8s.io/someone-elses -n {ns}"),
        format!("delete {lease} -n {ns}"),
        format!("get pods -n {ns}"),
        // Core v1 events: the Recorder writes events.k8s.io ones.
        "create events -n apps".into(),
    ];
    for (question, want) in allowed
        .iter()
        .map(|q| (q, true))
        .chain(refused.iter().map(|q| (q, false)))
    {
        let args: Vec<&str> = question.split_whitespace().collect();
        assert_eq!(
            can_i(cluster, &sa, &args),
            want,
            "kubectl auth can-i {question} as the controller"
        );
    }

    let out = helm_on(cluster, &["uninstall", release, "--namespace", ns]);
    out.assert_success();
    for (kind, name, namespace) in namespaced
        .iter()
        .map(|(k, n)| (*k, n.as_str(), Some(ns)))
        .chain(cluster_scoped.iter().map(|(k, n)| (*k, *n, None)))
    {
        wait_for(&format!("{kind} {name} to be deleted"), READY, || {
            let mut args = vec!["get", kind, name, "--ignore-not-found", "-o", "name"];
            if let Some(namespace) = namespace {
                args.extend(["-n", namespace]);
            }
            let out = cluster.kubectl(&args);
            (out.success() && out.stdout.trim().is_empty()).then_some(())
        });
    }
    // The CRDs stay: uninstalling never deletes stores or transfers.
    for crd in [
        "artifacttransfers",
        "artifactstores",
        "clusterartifactstores",
    ] {
        kubectl_json(
            cluster,
            &["get", "crd", &format!("{crd}.artifacts.aosm.dev")],
        );
    }
}

#[test]
fn kubectl_apply_k_deploy_and_the_workload_identity_overlay() {
    let cluster = cluster();
    // As the README says: `kubectl apply -k deploy/`.
    let out = cluster
        .kubectl_cmd()
        .args(["apply", "-k"])
        .arg(root().join("deploy"))
        .run();
    assert!(out.success(), "kubectl apply -k deploy/ failed\n{out}");
    for line in [
        "namespace/aosm-system",
        "serviceaccount/aosm-artifact-operator",
        "role.rbac.authorization.k8s.io/aosm-artifact-operator-leader-election",
        "clusterrole.rbac.authorization.k8s.io/aosm-artifact-operator",
        "rolebinding.rbac.authorization.k8s.io/aosm-artifact-operator-leader-election",
        "clusterrolebinding.rbac.authorization.k8s.io/aosm-artifact-operator",
        "service/aosm-artifact-operator-metrics",
        "deployment.apps/aosm-artifact-operator",
        "customresourcedefinition.apiextensions.k8s.io/artifacttransfers.artifacts.aosm.dev",
    ] {
        assert!(out.stdout.contains(line), "{line} not applied\n{out}");
    }
    let deployment = kubectl_json(cluster, &["get", "deployment", NAME, "-n", "aosm-system"]);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        NAME
    );
    assert!(
        deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"]
            .is_null()
    );

    // The overlay on top: the annotation and the label, on the server.
    let overlay = root().join("deploy/overlays/workload-identity");
    let dry = cluster
        .kubectl_cmd()
        .args(["apply", "--dry-run=server", "-k"])
        .arg(&overlay)
        .run();
    assert!(dry.success(), "server dry run of the overlay failed\n{dry}");
    let out = cluster
        .kubectl_cmd()
        .args(["apply", "-k"])
        .arg(&overlay)
        .run();
    assert!(
        out.success(),
        "kubectl apply -k {} failed\n{out}",
        overlay.display()
    );
    let sa = kubectl_json(
        cluster,
        &["get", "serviceaccount", NAME, "-n", "aosm-system"],
    );
    assert!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string(),
        "{sa}"
    );
    let deployment = kubectl_json(cluster, &["get", "deployment", NAME, "-n", "aosm-system"]);
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
}

/// A kubeconfig for `cluster` that authenticates as `token` (nothing else).
fn token_kubeconfig(cluster: &KubeCluster, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(&cluster.pki().ca_crt).expect("read the cluster CA"));
    json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": cluster.server(), "certificate-authority-data": ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sa"}}],
        "current-context": "sa",
    })
    .to_string()
}

/// The controller with the chart's arguments and only its ServiceAccount's token does its
/// whole job: Lease, watches, Secret/ConfigMap/Namespace reads, status writes and events,
/// pushing an ARM template into the emulator's store. Nothing is refused on the way.
#[test]
fn controller_does_its_job_with_only_the_charts_rbac() {
    let cluster = cluster();
    let (ns, apps, release) = ("rbac-system", "rbac-apps", "aosm-rbac");
    let full = "aosm-rbac-aosm-artifact-operator";
    let manifest = "contoso-cnf-manifest";
    let env = TestEnv::new();
    let emu = Emulator::start(&[]);
    emu.create_acr_manifest(manifest, &[("rbac-template", "ArmTemplate", "1.0.0")]);
    cluster.create_namespace(apps, &[("aosm-publish", "true")]);
    helm_on(
        cluster,
        &[
            "install",
            release,
            CHART,
            "--namespace",
            ns,
            "--create-namespace",
            "--set",
            "replicaCount=2",
            // The namespaced store below overrides its endpoints with the emulator's.
            "--set",
            "tenancy.namespacedStoreEndpointHosts={localhost}",
        ],
    )
    .assert_success();

    let store_spec = |secret: &str| {
        json!({
            "subscriptionId": support::emulator::SUB, "resourceGroup": support::emulator::RG,
            "publisher": support::emulator::PUBLISHER, "artifactStore": support::emulator::STORE,
            "cloud": "Custom",
            "armEndpoint": emu.ep("armEndpoint"), "authorityHost": emu.ep("authorityHost"),
            "identity": {"type": "ClientSecret", "secretRef": {"name": secret}},
        })
    };
    let sp = |namespace: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sp", "namespace": namespace},
            "stringData": {"tenantId": emu.ep("tenantId"), "clientId": emu.ep("clientId"),
                "clientSecret": emu.client_secret()}})
    };
    let mut cluster_store = store_spec("sp");
    cluster_store["allowedNamespaces"] = json!({"matchLabels": {"aosm-publish": "true"}});
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        sp(ns),
        sp(apps),
        {"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ClusterArtifactStore",
            "metadata": {"name": "rbac-store"}, "spec": cluster_store},
        {"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactStore",
            "metadata": {"name": "local", "namespace": apps}, "spec": store_spec("sp")},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nf-template", "namespace": apps},
            "data": {"template.json": "{\"$schema\":\"https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#\",\"resources\":[]}"}},
        {"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
            "metadata": {"name": "template", "namespace": apps},
            "spec": {
                "source": {"configMap": {"name": "nf-template", "key": "template.json", "mediaType": "application/json"}},
                "destination": {"artifactStore": {"storeRef": {"kind": "ClusterArtifactStore", "name": "rbac-store"},
                    "manifest": manifest, "artifact": "rbac-template", "version": "1.0.0"}},
            }},
    ]});
    cluster
        .kubectl_cmd()
        .args(["apply", "-f", "-"])
        .stdin(objects.to_string())
        .ok();

    // The Deployment Helm installed, run as its ServiceAccount.
    let token = cluster
        .kubectl(["create", "token", full, "-n", ns, "--duration=1h"])
        .stdout
        .trim()
        .to_string();
    assert!(!token.is_empty(), "kubectl create token gave nothing");
    let kubeconfig = env.write("sa-kubeconfig", token_kubeconfig(cluster, &token));
    let deployment = kubectl_json(cluster, &["get", "deployment", full, "-n", ns]);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = args_of(container)
        .into_iter()
        .map(|a| {
            // Free local ports instead of the pod's fixed ones.
            if a.starts_with("--metrics-addr=") {
                format!("--metrics-addr=127.0.0.1:{}", free_port())
            } else if a.starts_with("--health-addr=") {
                format!("--health-addr=127.0.0.1:{}", free_port())
            } else {
                a
            }
        })
        .collect();
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    let pod_name = format!("{full}-rbac-0");
    let controller = env
        .ours()
        .args(&args)
        .env("KUBECONFIG", &kubeconfig)
        // What the downward API gives the pod.
        .env("POD_NAMESPACE", ns)
        .env("POD_NAME", &pod_name)
        .env("SSL_CERT_FILE", emu.ca_file())
        .env("AOSM_LOG", "info,aosm_artifact_operator=debug")
        .timeout(Duration::from_secs(900))
        .spawn();

    let ready = cluster
        .kubectl_cmd()
        .args(["wait", "--for=condition=Ready", "-n", apps])
        .arg(format!("--timeout={}s", READY.as_secs()))
        .arg("artifacttransfer/template")
        .timeout(READY + Duration::from_secs(30))
        .run();
    if !ready.success() {
        let transfer = cluster.kubectl([
            "get",
            "artifacttransfer",
            "template",
            "-n",
            apps,
            "-o",
            "yaml",
        ]);
        let logs = controller.kill9();
        panic!(
            "the transfer did not become Ready\n{ready}\n{}\n--- controller\n{logs}",
            transfer.stdout
        );
    }
    let transfer = kubectl_json(
        cluster,
        &["get", "artifacttransfer", "template", "-n", apps],
    );
    assert_eq!(
        transfer["status"]["artifactType"], "ArmTemplate",
        "{transfer}"
    );
    for (kind, name, namespace) in [
        ("clusterartifactstore", "rbac-store", None),
        ("artifactstore", "local", Some(apps)),
    ] {
        let deadline = std::time::Instant::now() + READY;
        loop {
            let mut args = vec!["get", kind, name, "-o", "json"];
            if let Some(n) = namespace {
                args.extend(["-n", n]);
            }
            let out = cluster.kubectl(&args);
            let last: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
            let ready = last["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if ready {
                break;
            }
            if std::time::Instant::now() >= deadline {
                let logs = controller.kill9();
                panic!(
                    "{kind} {name} is not Ready after {READY:?}: {:#}\n--- controller\n{logs}",
                    last["status"]
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let lease = kubectl_json(cluster, &["get", "lease", full, "-n", ns]);
    assert_eq!(lease["spec"]["holderIdentity"], json!(pod_name), "{lease}");
    let events = kubectl_json(cluster, &["get", "events.events.k8s.io", "-n", apps]);
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["regarding"]["name"] == "template" && e["reason"] == "Succeeded"),
        "no Succeeded event for the transfer: {events}"
    );

    // SIGTERM: a clean stop (the Lease is released), then nothing was ever refused.
    // SAFETY: a plain syscall on our own child's pid.
    unsafe {
        libc::kill(controller.pid() as i32, libc::SIGTERM);
    }
    let logs = controller.wait_timeout(Duration::from_secs(120));
    let all = format!("{}\n{}", logs.stdout, logs.stderr).to_lowercase();
    assert!(
        !all.contains("forbidden") && !all.contains("cannot publish event"),
        "the controller was refused something\n{logs}"
    );
    helm_on(cluster, &["uninstall", release, "--namespace", ns]).assert_success();
}
