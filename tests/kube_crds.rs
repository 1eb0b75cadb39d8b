//! The CRDs against a real kube-apiserver (etcd + kube-apiserver built by
//! `scripts/tools.sh`, see `support/kube.rs`): `crds/` installs and is documented by
//! `kubectl explain`; every object in `fixtures/invalid/` is refused with the message its
//! `# expect:` lines name (the offline twin of this is `tests/api.rs`); every example is
//! accepted and reads back into the Rust types; the printer columns and the `aosm`
//! category work; `scripts/cluster.sh` starts and stops a cluster.
//!
//! All tests share one cluster (started by the first, ~3.5 s) and keep apart with their own
//! namespaces and object names.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use aosm_artifact_operator::api::{
    self, ArtifactStore, ArtifactTransfer, ArtifactTransferStatus, ClusterArtifactStore, conditions,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::Deserialize as _;
use serde_json::{Value, json};
use support::kube::KubeCluster;
use support::{Cmd, Output, rt};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared cluster with the CRDs installed.
fn cluster() -> &'static KubeCluster {
    static CRDS: Once = Once::new();
    let cluster = KubeCluster::shared();
    CRDS.call_once(|| {
        cluster.apply_crds();
    });
    cluster
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read a YAML file");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Whitespace collapsed to single spaces (kubectl wraps and indents descriptions).
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A `kubectl get` table: the header's column names and each row's cells (cells never
/// contain spaces in the tables checked here).
fn table(out: &Output) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table\n{out}"))
        .split_whitespace()
        .map(String::from)
        .collect();
    let rows = lines
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    (header, rows)
}

// ---------------------------------------------------------------------------------------

#[test]
fn crds_install_established_and_documented() {
    let cluster = cluster();
    // Applying again is accepted (the shared setup applied them once already).
    let out = cluster.apply_crds();
    for name in [
        "artifactstores.artifacts.aosm.dev",
        "artifacttransfers.artifacts.aosm.dev",
        "clusterartifactstores.artifacts.aosm.dev",
    ] {
        assert!(
            out.stdout.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{name} serverside-applied"
            )),
            "{name} not applied\n{out}"
        );
    }

    // Every CRD is Established and its names accepted, and the server kept our schema's
    // printer columns and category.
    let crds: Vec<CustomResourceDefinition> = rt::block_on(async {
        let api: Api<CustomResourceDefinition> = Api::all(cluster.client().await);
        api.list(&ListParams::default())
            .await
            .expect("list CRDs")
            .items
    });
    let ours: Vec<&CustomResourceDefinition> = crds
        .iter()
        .filter(|c| c.spec.group == "artifacts.aosm.dev")
        .collect();
    assert_eq!(
        ours.len(),
        api::crds().len(),
        "CRDs on the server: {ours:#?}"
    );
    for crd in &ours {
        let name = crd.metadata.name.as_deref().unwrap_or_default();
        let status = crd.status.as_ref().expect("CRD status");
        for condition in ["Established", "NamesAccepted"] {
            assert!(
                status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == condition && c.status == "True"),
                "{name}: {condition} is not True: {status:#?}"
            );
        }
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["aosm".to_string()][..]),
            "{name}"
        );
    }

    // `kubectl explain` shows the doc comments (the schema descriptions in crds/), for both
    // sides of a transfer and every field of each.
    let crd = &yaml_docs(&root().join("crds/artifacts.aosm.dev_artifacttransfers.yaml"))[0];
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for side in ["source", "destination"] {
        let schema = &spec[side];
        let description = schema["description"]
            .as_str()
            .unwrap_or_else(|| panic!("spec.{side} has a description"));
        assert!(
            description.contains("exactly one of"),
            "unexpected description of spec.{side}: {description:?}"
        );
        let explain = cluster.kubectl(["explain", &format!("artifacttransfer.spec.{side}")]);
        explain.assert_success();
        assert!(
            squash(&explain.stdout).contains(&squash(description)),
            "kubectl explain does not show the description {description:?}\n{explain}"
        );
        for (field, field_schema) in schema["properties"].as_object().expect("properties") {
            assert!(
                explain.stdout.contains(&format!("  {field}\t<Object>")),
                "kubectl explain does not list {side}.{field}\n{explain}"
            );
            let first_sentence = field_schema["description"]
                .as_str()
                .and_then(|d| d.split(". ").next())
                .expect("every field has a description");
            assert!(
                squash(&explain.stdout).contains(&squash(first_sentence)),
                "kubectl explain does not document {side}.{field} with {first_sentence:?}\n{explain}"
            );
        }
    }
    let explain = cluster.kubectl(["explain", "artifacttransfer.spec.destination.configMap"]);
    explain.assert_success();
    for field in ["name", "key"] {
        assert!(
            explain
                .stdout
                .contains(&format!("  {field}\t<string> -required-")),
            "{explain}"
        );
    }
}

/// `# PREFIX ` lines of a fixture.
fn header_lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

#[test]
fn invalid_fixtures_are_refused_with_the_expected_messages() {
    let cluster = cluster();
    let ns = "invalid-fixtures";
    cluster.create_namespace(ns, &[("aosm-publish", "true")]);
    let files = yaml_files(&root().join("tests/fixtures/invalid"));
    assert!(files.len() >= 50, "only {} invalid fixtures", files.len());

    // Client-side `kubectl apply` creates the object (POST with strict field validation);
    // `--server-side` sends an apply patch, which the server turns into a typed object
    // first: for unknown fields and duplicate set entries that step refuses it, with its
    // own wording (the fixture's `# expect-server-side:` lines, when it has them).
    let verbs: [&[&str]; 2] = [&["apply"], &["apply", "--server-side"]];
    let jobs: Vec<(&PathBuf, &[&str])> = files
        .iter()
        .flat_map(|f| verbs.iter().map(move |v| (f, *v)))
        .collect();
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while let Some((file, verb)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let text = std::fs::read_to_string(file).expect("read a fixture");
                    let mut expect = header_lines(&text, "# expect: ");
                    let server_side = verb.contains(&"--server-side");
                    let ssa = header_lines(&text, "# expect-server-side: ");
                    if server_side && !ssa.is_empty() {
                        expect = ssa;
                    }
                    assert!(
                        !expect.is_empty(),
                        "{}: no `# expect:` line",
                        file.display()
                    );
                    let out = cluster
                        .kubectl_cmd()
                        .args(*verb)
                        .args(["-n", ns, "-f"])
                        .arg(file)
                        .run();
                    let name = file.file_name().unwrap().to_string_lossy().into_owned();
                    let shown = verb.join(" ");
                    let mut failures = failures.lock().unwrap();
                    if out.success() {
                        failures.push(format!("{name}: accepted by `kubectl {shown}`\n{out}"));
                        continue;
                    }
                    for e in expect {
                        if !out.stderr.contains(e) {
                            failures.push(format!(
                                "{name}: `kubectl {shown}` refused it without {e:?}; stderr:\n  {}",
                                out.stderr.trim_end().replace('\n', "\n  ")
                            ));
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing was stored.
    let left = cluster.kubectl([
        "get",
        "artifacttransfers,artifactstores",
        "-n",
        ns,
        "-o",
        "name",
    ]);
    left.assert_success();
    assert_eq!(
        left.stdout.trim(),
        "",
        "refused objects were stored\n{left}"
    );
    let cluster_stores = cluster.kubectl(["get", "clusterartifactstores", "-o", "name"]);
    cluster_stores.assert_success();
    assert!(
        !cluster_stores
            .stdout
            .lines()
            .any(|l| l.ends_with("/invalid")),
        "a refused ClusterArtifactStore was stored\n{cluster_stores}"
    );
}

#[test]
fn examples_are_accepted_and_read_back_into_the_rust_types() {
    let cluster = cluster();
    let files = yaml_files(&root().join("examples"));
    assert!(files.len() >= 5, "only {} examples", files.len());
    let client = rt::block_on(cluster.client());
    for file in &files {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let ns = format!("ex-{stem}");
        // Namespaces using a ClusterArtifactStore carry the label its examples select.
        cluster.create_namespace(&ns, &[("aosm-publish", "true")]);
        let out = cluster
            .kubectl_cmd()
            .args(["apply", "--server-side", "--field-manager=aosm-tests", "-n"])
            .arg(&ns)
            .arg("-f")
            .arg(file)
            .run();
        assert!(out.success(), "{stem} refused\n{out}");
        let docs = yaml_docs(file);
        assert_eq!(
            out.stdout
                .lines()
                .filter(|l| l.contains("serverside-applied"))
                .count(),
            docs.len(),
            "{stem}: not every object was applied\n{out}"
        );
        // Each object reads back from the server into our types (with the schema's
        // defaults filled in), and the Rust-side validation agrees that it is valid.
        for doc in &docs {
            let kind = doc["kind"].as_str().expect("kind");
            let name = doc["metadata"]["name"].as_str().expect("metadata.name");
            let what = format!("{stem}: {kind}/{name}");
            rt::block_on(async {
                match kind {
                    "ArtifactTransfer" => {
                        let t = Api::<ArtifactTransfer>::namespaced(client.clone(), &ns)
                            .get(name)
                            .await
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        t.spec
                            .validate()
                            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                        assert!(t.spec.interval().is_ok(), "{what}");
                    }
                    "ArtifactStore" => {
                        let s = Api::<ArtifactStore>::namespaced(client.clone(), &ns)
                            .get(name)
                            .await
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        s.spec
                            .validate()
                            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                    }
                    "ClusterArtifactStore" => {
                        let s = Api::<ClusterArtifactStore>::all(client.clone())
                            .get(name)
                            .await
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        s.store_spec()
                            .validate()
                            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                    }
                    "Secret" => {
                        Api::<Secret>::namespaced(client.clone(), &ns)
                            .get(name)
                            .await
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                    }
                    "ConfigMap" => {
                        Api::<ConfigMap>::namespaced(client.clone(), &ns)
                            .get(name)
                            .await
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                    }
                    other => panic!("{what}: no read-back for kind {other}"),
                }
            });
        }
    }
}

const PRINTER_NS: &str = "printer-columns";

const PRINTER_OBJECTS: &str = r#"
apiVersion: artifacts.aosm.dev/v1alpha1
kind: ClusterArtifactStore
metadata:
  name: printer-cluster-store
spec:
  subscriptionId: 00000000-0000-0000-0000-000000000000
  resourceGroup: printer-rg
  publisher: printer
  artifactStore: printer-cluster-store
---
apiVersion: artifacts.aosm.dev/v1alpha1
kind: ArtifactStore
metadata:
  name: printer-store
  namespace: printer-columns
spec:
  subscriptionId: 00000000-0000-0000-0000-000000000000
  resourceGroup: printer-rg
  publisher: printer
  artifactStore: printer-store
---
apiVersion: artifacts.aosm.dev/v1alpha1
kind: ArtifactTransfer
metadata:
  name: printer-push
  namespace: printer-columns
spec:
  source:
    registry:
      image: registry.registry.svc:5000/printer/cnf:1.2.3
      plainHTTP: true
  destination:
    artifactStore:
      storeRef:
        kind: ClusterArtifactStore
        name: printer-cluster-store
      manifest: printer-manifest
      artifact: printer-cnf
      version: 1.2.3
"#;

#[test]
fn printer_columns_and_the_aosm_category() {
    let cluster = cluster();
    cluster.create_namespace(PRINTER_NS, &[]);
    cluster
        .kubectl_cmd()
        .args([
            "apply",
            "--server-side",
            "--field-manager=aosm-tests",
            "-f",
            "-",
        ])
        .stdin(PRINTER_OBJECTS)
        .ok();

    // The status the controller would write for a finished push (the API's helpers), set
    // through the status subresource.
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    rt::block_on(async {
        let api = Api::<ArtifactTransfer>::namespaced(cluster.client().await, PRINTER_NS);
        let t = api.get("printer-push").await.expect("get printer-push");
        let mut status = ArtifactTransferStatus::for_spec(&t.spec);
        status.set_digest(&digest);
        status.observed_generation = t.metadata.generation;
        conditions::mark_ready(
            &mut status.conditions,
            t.metadata.generation,
            aosm_artifact_operator::api::Reason::Succeeded,
            "pushed to printer-cluster-store",
            // metav1.Time has whole seconds: the server drops the fraction.
            Timestamp::from_second(Timestamp::now().as_second()).expect("a timestamp"),
        );
        let patched = api
            .patch_status(
                "printer-push",
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .expect("the status subresource accepts the controller's status");
        assert_eq!(patched.status.as_ref(), Some(&status), "status round trip");
    });

    // kubectl get at: the default columns.
    let out = cluster.kubectl(["get", "at", "-n", PRINTER_NS]);
    out.assert_success();
    let (header, rows) = table(&out);
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "DIRECTION",
            "ARTIFACT",
            "VERSION",
            "DIGEST",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(
        rows[0][..6],
        [
            "printer-push",
            "True",
            "Push",
            "printer-cnf",
            "1.2.3",
            "0123456789ab"
        ],
        "{out}"
    );
    assert!(
        rows[0][5].len() == 12 && rows[0][5].chars().all(|c| c.is_ascii_hexdigit()),
        "the Digest column is not 12 hex digits\n{out}"
    );

    // -o wide adds the full digest and the Ready message.
    let wide = cluster.kubectl([
        "get",
        "artifacttransfer",
        "printer-push",
        "-n",
        PRINTER_NS,
        "-o",
        "wide",
    ]);
    wide.assert_success();
    let header = wide.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("FULL-DIGEST") && header.contains("STATUS"),
        "{wide}"
    );
    assert!(
        wide.stdout.contains(&digest) && wide.stdout.contains("pushed to printer-cluster-store"),
        "{wide}"
    );

    // The stores' columns (Status is a -o wide column; no controller filled Ready/Type).
    let stores = cluster.kubectl(["get", "as", "-n", PRINTER_NS]);
    stores.assert_success();
    let (header, rows) = table(&stores);
    assert_eq!(
        header,
        ["NAME", "READY", "PUBLISHER", "STORE", "TYPE", "AGE"],
        "{stores}"
    );
    assert_eq!(rows[0][0], "printer-store", "{stores}");
    assert!(rows[0].contains(&"printer".to_string()), "{stores}");
    let cas = cluster.kubectl(["get", "cas", "printer-cluster-store"]);
    cas.assert_success();
    assert!(cas.stdout.contains("printer-cluster-store"), "{cas}");

    // `kubectl get aosm -A` lists transfers, stores and cluster stores together.
    let all = cluster.kubectl(["get", "aosm", "-A", "-o", "name"]);
    all.assert_success();
    for want in [
        "artifacttransfer.artifacts.aosm.dev/printer-push",
        "artifactstore.artifacts.aosm.dev/printer-store",
        "clusterartifactstore.artifacts.aosm.dev/printer-cluster-store",
    ] {
        assert!(
            all.stdout.lines().any(|l| l == want),
            "`kubectl get aosm -A` does not list {want}\n{all}"
        );
    }
    let table_all = cluster.kubectl(["get", "aosm", "-n", PRINTER_NS]);
    table_all.assert_success();
    assert!(
        table_all
            .stdout
            .contains("artifacttransfer.artifacts.aosm.dev/printer-push")
            && table_all.stdout.contains("0123456789ab"),
        "{table_all}"
    );
}

/// Runs `scripts/cluster.sh down DIR` on drop, so a failed assertion stops the cluster.
struct ClusterScript {
    dir: PathBuf,
}

impl ClusterScript {
    fn run(&self, verb: &str) -> Output {
        Cmd::new("bash")
            .arg(root().join("scripts/cluster.sh"))
            .arg(verb)
            .arg(&self.dir)
            .timeout(std::time::Duration::from_secs(180))
            .run()
    }
}

impl Drop for ClusterScript {
    fn drop(&mut self) {
        if self.dir.join("etcd.pid").exists() || self.dir.join("kube-apiserver.pid").exists() {
            let _ = self.run("down");
        }
    }
}

/// The process exists and is not a zombie.
fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn cluster_script_starts_and_stops_a_cluster() {
    let tmp = tempfile::Builder::new()
        .prefix("aosm-cluster-sh-")
        .tempdir()
        .expect("temp dir");
    let script = ClusterScript {
        dir: tmp.path().join("cluster"),
    };
    let up = script.run("up");
    up.assert_success();
    let kubeconfig = script.dir.join("kubeconfig");
    assert!(
        up.stdout
            .contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "`up` does not say how to use the cluster\n{up}"
    );
    let pids: Vec<i32> = ["etcd", "kube-apiserver"]
        .iter()
        .map(|name| {
            let path = script.dir.join(format!("{name}.pid"));
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}\n{up}", path.display()))
                .trim()
                .parse()
                .expect("a pid")
        })
        .collect();
    assert!(pids.iter().all(|&p| pid_alive(p)), "{up}");

    // Usable with kubectl and the kubeconfig it wrote; `status` reports it.
    let ns = Cmd::new(support::tools::require("kubectl"))
        .env("KUBECONFIG", &kubeconfig)
        .args(["--cache-dir"])
        .arg(tmp.path().join("kubectl-cache"))
        .args(["get", "namespace", "default", "-o", "name"])
        .ok();
    assert_eq!(ns.stdout.trim(), "namespace/default", "{ns}");
    let status = script.run("status");
    status.assert_success();
    assert!(
        status.stdout.starts_with("running: https://127.0.0.1:"),
        "{status}"
    );

    // `down` stops both and removes what `up` wrote.
    script.run("down").assert_success();
    support::wait_for(
        "etcd and kube-apiserver to exit",
        std::time::Duration::from_secs(30),
        || pids.iter().all(|&p| !pid_alive(p)).then_some(()),
    );
    assert!(
        !script.dir.exists(),
        "`down` left files: {:?}",
        std::fs::read_dir(&script.dir).map(|d| d.count())
    );
    script.run("status").assert_code(1);
}

const UNOBSERVED_NS: &str = "unobserved-status";

/// The same three kinds as [`PRINTER_OBJECTS`], with names of their own.
fn unobserved_objects() -> String {
    PRINTER_OBJECTS
        .replace("printer-columns", UNOBSERVED_NS)
        .replace("printer-cluster-store", "unobserved-cluster-store")
        .replace("printer-store", "unobserved-store")
        .replace("printer-push", "unobserved-push")
}

/// kstatus (what Flux's `wait`, cli-utils and `kubectl wait` build on) reads an object
/// without `status` as Current: the CRDs default `status` to `{observedGeneration: 0}`,
/// so every reader sees a generation not yet observed from the create response on, and
/// the controller's first server-side apply of status replaces it.
#[test]
fn a_new_object_reads_as_unobserved_until_the_controller_writes_status() {
    let cluster = cluster();
    cluster.create_namespace(UNOBSERVED_NS, &[]);
    let created = cluster
        .kubectl_cmd()
        .args([
            "apply",
            "--server-side",
            "--field-manager=aosm-tests",
            "-o",
            "json",
            "-f",
            "-",
        ])
        .stdin(unobserved_objects())
        .ok();
    let created: Value = serde_json::from_str(&created.stdout).expect("kubectl -o json");
    let items = created["items"]
        .as_array()
        .expect("a List of three objects");
    assert_eq!(items.len(), 3, "{created}");
    for o in items {
        // The response to the create itself already carries the default.
        assert_eq!(o["metadata"]["generation"], 1, "{o}");
        assert_eq!(o["status"], json!({"observedGeneration": 0}), "{o}");
    }
    // So does every later read, and the Rust types read it (no conditions: not seen yet).
    let got = cluster.kubectl([
        "get",
        "at/unobserved-push",
        "as/unobserved-store",
        "-n",
        UNOBSERVED_NS,
        "-o",
        "json",
    ]);
    got.assert_success();
    let got: Value = serde_json::from_str(&got.stdout).expect("kubectl -o json");
    for o in got["items"].as_array().expect("a List") {
        assert_eq!(o["status"], json!({"observedGeneration": 0}), "{o}");
    }
    let cas = cluster.kubectl(["get", "cas/unobserved-cluster-store", "-o", "json"]);
    cas.assert_success();
    let cas: ClusterArtifactStore = serde_json::from_str(&cas.stdout).expect("a store");
    let status = cas.status.expect("the defaulted status");
    assert_eq!(
        (status.observed_generation, status.conditions.len()),
        (Some(0), 0)
    );
    // The table leaves the columns the controller fills blank (not "0" or an error): the
    // row is the name and the age.
    let table_out = cluster.kubectl(["get", "at", "-n", UNOBSERVED_NS]);
    table_out.assert_success();
    let (_, rows) = table(&table_out);
    assert_eq!(rows.len(), 1, "{table_out}");
    assert_eq!(
        (rows[0].len(), rows[0][0].as_str()),
        (2, "unobserved-push"),
        "{table_out}"
    );

    // The controller's first status write (server-side apply, its field manager, as in
    // src/controller/transfer_reconciler/attempt.rs) replaces the default and owns what it wrote.
    rt::block_on(async {
        let api = Api::<ArtifactTransfer>::namespaced(cluster.client().await, UNOBSERVED_NS);
        let t = api
            .get("unobserved-push")
            .await
            .expect("get unobserved-push");
        let mut status = ArtifactTransferStatus::for_spec(&t.spec);
        status.observed_generation = t.metadata.generation;
        conditions::mark_reconciling(
            &mut status.conditions,
            t.metadata.generation,
            aosm_artifact_operator::api::Reason::Progressing,
            "copying",
            Timestamp::from_second(Timestamp::now().as_second()).expect("a timestamp"),
        );
        let patch = json!({
            "apiVersion": "artifacts.aosm.dev/v1alpha1",
            "kind": "ArtifactTransfer",
            "status": status,
        });
        let patched = api
            .patch_status(
                "unobserved-push",
                &PatchParams::apply("aosm-artifact-operator").force(),
                &Patch::Apply(&patch),
            )
            .await
            .expect("server-side apply of status");
        let got = patched.status.expect("a status");
        assert_eq!(got.observed_generation, Some(1));
        assert_eq!(got.conditions, status.conditions);
        let owners: Vec<&str> = patched
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| m.subresource.as_deref() == Some("status"))
            .filter_map(|m| m.manager.as_deref())
            .collect();
        assert_eq!(owners, ["aosm-artifact-operator"]);
    });
}
