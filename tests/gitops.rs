//! GitOps: `examples/publish/` (rendered by `kubectl kustomize`, applied with
//! `kubectl apply --dry-run=server -k` to a real kube-apiserver with our CRDs, and kept in
//! line with the emulator seed the demo uses), the Argo CD health checks and the
//! `reconcile` resource action in `gitops/argocd/` (every case of their `health_test.yaml`
//! / `action_test.yaml` run through Argo CD's own Lua code by `argocd-lua-check`, with the
//! scripts as the argocd-cm patch registers them), the argocd-cm patch that carries them (generated from the scripts, applied to a
//! real ConfigMap), and `docs/gitops.md`.
//!
//! Regenerate `gitops/argocd/argocd-cm-patch.yaml` after editing a script:
//! `AOSM_UPDATE_GITOPS=1 cargo test --test gitops argocd_cm_patch_is_up_to_date`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Once;

use aosm_artifact_operator::api::{
    self, ArtifactStore, ArtifactTransfer, ClusterArtifactStore, StoreKind, TransferSource,
};
use regex::Regex;
use serde::Deserialize as _;
use serde_json::{Value, json};
use support::kube::KubeCluster;
use support::{Cmd, Output, tools};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every non-empty YAML document of `text` as JSON (what Argo CD and kubectl see).
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_file(path: &Path) -> Value {
    let mut docs = yaml_docs(&read(path), &path.display().to_string());
    assert_eq!(docs.len(), 1, "{}: one YAML document", path.display());
    docs.remove(0)
}

/// The shared cluster of this test binary, with the CRDs installed.
fn cluster() -> &'static KubeCluster {
    static CRDS: Once = Once::new();
    let cluster = KubeCluster::shared();
    CRDS.call_once(|| {
        cluster.apply_crds();
    });
    cluster
}

// ---------------------------------------------------------------------------------------
// examples/publish/

const PUBLISH_NAMESPACE: &str = "contoso-publish";

fn publish_dir() -> PathBuf {
    root().join("examples/publish")
}

/// `kubectl kustomize examples/publish/`, as objects.
fn render_publish() -> Vec<Value> {
    let out = Cmd::new(tools::require("kubectl"))
        .arg("kustomize")
        .arg(publish_dir())
        .ok();
    yaml_docs(&out.stdout, "kubectl kustomize examples/publish/")
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendered kustomization"))
}

fn transfers(objects: &[Value]) -> Vec<ArtifactTransfer> {
    objects
        .iter()
        .filter(|o| o["kind"] == "ArtifactTransfer")
        .map(|o| {
            api::from_value_strict::<ArtifactTransfer>(o.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", o["metadata"]["name"]))
        })
        .collect()
}

#[test]
fn publish_kustomization_renders_a_store_and_three_transfers() {
    let objects = render_publish();
    let kinds: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        objects.iter().all(|o| o["kind"] != "Secret"),
        "Secrets do not belong in the kustomization (the demo or the user creates contoso-sp from a vault): {kinds:?}"
    );

    // The namespace carries the label the store's allowedNamespaces selects.
    let ns = find(&objects, "Namespace", PUBLISH_NAMESPACE);
    let ns_labels = ns["metadata"]["labels"]
        .as_object()
        .expect("namespace labels");

    // The store: the emulator's fixed endpoints and the seeded publisher, ClientSecret from
    // contoso-sp; cluster-scoped (no namespace).
    let store_obj = find(&objects, "ClusterArtifactStore", "contoso");
    assert!(
        store_obj["metadata"].get("namespace").is_none(),
        "a ClusterArtifactStore has no namespace: {store_obj}"
    );
    let store: ClusterArtifactStore = api::from_value_strict(store_obj.clone()).unwrap();
    let spec = store.store_spec();
    spec.validate().unwrap();
    assert_eq!(spec.subscription_id, "00000000-0000-0000-0000-000000000001");
    assert_eq!(spec.resource_group, "contoso-rg");
    assert_eq!(spec.publisher, "contoso");
    assert_eq!(spec.artifact_store, "contoso-cnf-store");
    assert_eq!(
        spec.arm_endpoint.as_deref(),
        Some("https://127.0.0.1:18443")
    );
    assert_eq!(
        spec.authority_host.as_deref(),
        Some("https://127.0.0.1:18443")
    );
    assert_eq!(
        spec.identity.secret_ref.as_ref().map(|s| s.name.as_str()),
        Some("contoso-sp")
    );
    let selector = store_obj["spec"]["allowedNamespaces"]["matchLabels"]
        .as_object()
        .expect("allowedNamespaces.matchLabels");
    for (k, v) in selector {
        assert_eq!(
            ns_labels.get(k),
            Some(v),
            "the store's allowedNamespaces must select namespace {PUBLISH_NAMESPACE}"
        );
    }

    // The ARM template: a ConfigMap (name with the generator's hash) holding valid JSON.
    let config_maps: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .collect();
    assert_eq!(config_maps.len(), 1, "{kinds:?}");
    let cm = config_maps[0];
    let cm_name = cm["metadata"]["name"].as_str().unwrap();
    assert!(cm_name.starts_with("nf-arm-template-"), "{cm_name}");
    assert_eq!(cm["metadata"]["namespace"], PUBLISH_NAMESPACE);
    let template: Value = serde_json::from_str(
        cm["data"]["template.json"]
            .as_str()
            .expect("data.template.json"),
    )
    .expect("template.json is JSON");
    assert!(
        template["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("deploymentTemplate.json")),
        "{template}"
    );
    assert!(template["contentVersion"].is_string(), "{template}");
    assert!(template["resources"].is_array(), "{template}");

    // Three pushes into the store, one per source kind, from the demo's fixed addresses.
    let transfers = transfers(&objects);
    assert_eq!(transfers.len(), 3, "{kinds:?}");
    let mut sources = BTreeSet::new();
    for t in &transfers {
        let name = t.metadata.name.as_deref().unwrap();
        assert_eq!(
            t.metadata.namespace.as_deref(),
            Some(PUBLISH_NAMESPACE),
            "{name}"
        );
        t.spec
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            t.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("argocd.argoproj.io/sync-wave"))
                .map(String::as_str),
            Some("1"),
            "{name}: Argo CD syncs transfers after the store"
        );
        let side = t.spec.store_side();
        assert_eq!(
            t.spec.direction(),
            api::Direction::Push,
            "{name} pushes into the store"
        );
        assert_eq!(
            side.store_ref.kind,
            StoreKind::ClusterArtifactStore,
            "{name}"
        );
        assert_eq!(side.store_ref.name, "contoso", "{name}");
        assert_eq!(side.manifest, "contoso-cnf-manifest", "{name}");
        match &t.spec.source {
            TransferSource::Registry(r) => {
                sources.insert("registry");
                assert_eq!(r.image, "127.0.0.1:15000/contoso/cnf:1.0.0", "{name}");
                assert!(r.plain_http, "{name}: the demo registry is plain HTTP");
            }
            TransferSource::HelmRepository(h) => {
                sources.insert("helmRepository");
                assert_eq!(h.url, "http://127.0.0.1:18879/charts", "{name}");
                assert_eq!(
                    (h.chart.as_str(), h.version.as_str()),
                    ("contoso-chart", "1.0.0")
                );
            }
            TransferSource::ConfigMap(c) => {
                sources.insert("configMap");
                assert_eq!(
                    c.name, cm_name,
                    "{name} must follow the generated ConfigMap's name (kustomizeconfig.yaml)"
                );
                assert_eq!(c.key, "template.json", "{name}");
            }
            TransferSource::ArtifactStore(_) => panic!("{name}: a pull in the publish example"),
        }
    }
    assert_eq!(
        sources,
        BTreeSet::from(["configMap", "helmRepository", "registry"])
    );
}

/// The artifacts the demo's emulator seed (`examples/emulator/seed.json`) lists in
/// `manifest` of the store at `store_id`: name → (type, version).
fn seeded_artifacts(store_id: &str, manifest: &str) -> BTreeMap<(String, String), String> {
    let seed: Value = serde_json::from_str(&read(&root().join("examples/emulator/seed.json")))
        .expect("seed.json is JSON");
    let id = format!("{store_id}/artifactManifests/{manifest}");
    let entry = seed
        .as_array()
        .expect("seed.json is an array")
        .iter()
        .find(|r| {
            r["id"]
                .as_str()
                .is_some_and(|i| i.eq_ignore_ascii_case(&id))
        })
        .unwrap_or_else(|| panic!("examples/emulator/seed.json has no resource {id}"));
    entry["properties"]["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| {
            (
                (
                    a["artifactName"].as_str().unwrap().to_string(),
                    a["artifactVersion"].as_str().unwrap().to_string(),
                ),
                a["artifactType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn publish_kustomization_matches_the_emulator_seed() {
    let objects = render_publish();
    let store: ClusterArtifactStore =
        api::from_value_strict(find(&objects, "ClusterArtifactStore", "contoso").clone()).unwrap();
    let spec = store.store_spec();
    let store_id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.HybridNetwork/publishers/{}/artifactStores/{}",
        spec.subscription_id, spec.resource_group, spec.publisher, spec.artifact_store
    );
    let seeded = seeded_artifacts(&store_id, "contoso-cnf-manifest");
    for t in transfers(&objects) {
        let side = t.spec.store_side();
        let want_type = match t.spec.source {
            TransferSource::ConfigMap(_) => "ArmTemplate",
            _ => "OCIArtifact",
        };
        let key = (side.artifact.clone(), side.version.clone());
        assert_eq!(
            seeded.get(&key).map(String::as_str),
            Some(want_type),
            "examples/emulator/seed.json must list {{\"artifactName\": \"{}\", \"artifactType\": \"{want_type}\", \"artifactVersion\": \"{}\"}} in contoso-cnf-manifest (it lists {seeded:?})",
            key.0,
            key.1
        );
    }
}

#[test]
fn publish_kustomization_passes_a_server_side_dry_run() {
    let cluster = cluster();
    // A dry run creates nothing, so the namespace the kustomization creates must exist for
    // the objects in it to be checked (a real apply creates the Namespace first). It is
    // made bare: the dry run must add the label the store selects.
    cluster.create_namespace(PUBLISH_NAMESPACE, &[]);
    let out = cluster
        .kubectl_cmd()
        .args(["apply", "--dry-run=server", "-k"])
        .arg(publish_dir())
        .run();
    assert!(out.success(), "examples/publish/ refused\n{out}");
    let objects = render_publish();
    for o in &objects {
        let kind = o["kind"].as_str().unwrap().to_lowercase();
        let name = o["metadata"]["name"].as_str().unwrap();
        assert!(
            out.stdout.lines().any(|l| l.contains(kind.as_str())
                && l.contains(&format!("/{name} "))
                && l.ends_with("(server dry run)")),
            "{kind}/{name} not applied (server dry run)\n{out}"
        );
    }
    // A dry run stores nothing.
    let stored = cluster
        .kubectl_cmd()
        .args(["get", "aosm", "-A", "-o", "name"])
        .ok();
    assert!(
        !stored.stdout.contains("/contoso"),
        "the dry run stored objects\n{stored}"
    );
    let ns = cluster
        .kubectl_cmd()
        .args(["get", "namespace", PUBLISH_NAMESPACE, "-o", "json"])
        .ok()
        .json();
    assert!(
        ns["metadata"]["labels"].get("aosm-publish").is_none(),
        "the dry run labelled the namespace: {ns}"
    );
}

// ---------------------------------------------------------------------------------------
// Argo CD: its own Lua code path

/// What Argo CD computes for every case of the customizations under `dir`, with the
/// scripts registered in the argocd-cm patch `patch`: `argocd-lua-check` (built by
/// `scripts/tools.sh` from `scripts/gitops/argocd-lua/`) reads the patch with Argo CD's
/// settings manager and runs each case through Argo CD's `util/lua` (gopher-lua, Lua 5.1,
/// the libraries Argo CD opens for argocd-cm scripts). One JSON object per case.
fn argocd(patch: &Path, dir: &Path) -> Vec<Value> {
    let out = Cmd::new(tools::require("argocd-lua-check"))
        .arg(patch)
        .arg(dir)
        .run();
    out.assert_success();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{out}")))
        .collect()
}

/// What Argo CD computes for the shipped patch and customizations.
fn argocd_shipped() -> Vec<Value> {
    argocd(&root().join(PATCH), &root().join("gitops/argocd"))
}

/// The line of `results` for `test` (health, discovery, action) of `kind` on `input`.
fn result_for<'a>(results: &'a [Value], test: &str, kind: &str, input: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["test"] == test && r["kind"] == kind && r["inputPath"] == input)
        .unwrap_or_else(|| panic!("Argo CD computed no {test} result for {kind} {input}"))
}

/// (status, message) Argo CD computed, or the error it reported.
fn health_of(result: &Value) -> Result<(String, String), String> {
    if let Some(e) = result["error"].as_str() {
        return Err(e.to_string());
    }
    let s = |k: &str| result[k].as_str().unwrap_or_default().to_string();
    Ok((s("status"), s("message")))
}

// ---------------------------------------------------------------------------------------
// Argo CD: health checks

const GROUP_DIR: &str = "gitops/argocd/artifacts.aosm.dev";
const KINDS: [&str; 3] = ["ArtifactTransfer", "ArtifactStore", "ClusterArtifactStore"];

fn kind_dir(kind: &str) -> PathBuf {
    root().join(GROUP_DIR).join(kind)
}

/// `(inputPath, status, message)` of every case in `<kind>/health_test.yaml`.
fn health_cases(kind: &str) -> Vec<(String, String, String)> {
    let tests = yaml_file(&kind_dir(kind).join("health_test.yaml"));
    tests["tests"]
        .as_array()
        .expect("tests: a list")
        .iter()
        .map(|t| {
            let s = |v: &Value| v.as_str().map(str::to_string);
            (
                s(&t["inputPath"]).expect("inputPath"),
                s(&t["healthStatus"]["status"]).expect("healthStatus.status"),
                s(&t["healthStatus"]["message"]).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn argocd_health_checks_pass_their_tests() {
    let results = argocd_shipped();
    let mut failures = Vec::new();
    let mut ran = 0;
    for kind in KINDS {
        for (input, status, message) in health_cases(kind) {
            ran += 1;
            let got = health_of(result_for(&results, "health", kind, &input));
            if got != Ok((status.clone(), message.clone())) {
                failures.push(format!(
                    "{kind}/{input}: want {status:?} {message:?}, Argo CD computed {got:?}"
                ));
            }
        }
    }
    assert!(ran >= 20, "only {ran} health cases");
    assert_eq!(
        results.iter().filter(|r| r["test"] == "health").count(),
        ran,
        "Argo CD ran another number of health cases than the files hold"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} health cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn argocd_health_tests_cover_every_state_and_every_testdata_file() {
    let transfer = health_cases("ArtifactTransfer");
    let statuses: BTreeSet<&str> = transfer.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["Degraded", "Healthy", "Progressing", "Suspended"]),
        "the ArtifactTransfer cases must cover every health status the script returns"
    );
    for must in [
        "testdata/new.yaml",
        "testdata/created.yaml",
        "testdata/progressing.yaml",
        "testdata/progressing-with-retry.yaml",
        "testdata/healthy.yaml",
        "testdata/stale-generation.yaml",
        "testdata/degraded.yaml",
        "testdata/suspended.yaml",
    ] {
        assert!(
            transfer.iter().any(|(i, _, _)| i == must),
            "ArtifactTransfer/health_test.yaml has no case for {must}"
        );
    }
    for kind in KINDS {
        let dir = kind_dir(kind);
        let used: BTreeSet<String> = health_cases(kind).into_iter().map(|(i, _, _)| i).collect();
        let files: BTreeSet<String> = std::fs::read_dir(dir.join("testdata"))
            .unwrap()
            .map(|e| format!("testdata/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        assert_eq!(
            used, files,
            "{kind}: every testdata file is a case and every case has a file"
        );
    }
}

/// `created.yaml` is what the API server returns for a new object (the CRD's status
/// default), `new.yaml` an object without any status: both wait.
#[test]
fn argocd_reads_a_just_created_object_as_progressing() {
    let results = argocd_shipped();
    let crds = api::crds();
    for kind in KINDS {
        let created = yaml_file(&kind_dir(kind).join("testdata/created.yaml"));
        let crd = crds
            .iter()
            .find(|c| c.spec.names.kind == kind)
            .expect("a CRD of the kind");
        let default = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| s.properties.as_ref())
            .and_then(|p| p.get("status"))
            .and_then(|s| s.default.as_ref())
            .map(|d| d.0.clone());
        assert_eq!(
            Some(&created["status"]),
            default.as_ref(),
            "{kind}/testdata/created.yaml must carry the CRD's status default"
        );
        for input in ["testdata/created.yaml", "testdata/new.yaml"] {
            let (status, message) = health_of(result_for(&results, "health", kind, input))
                .unwrap_or_else(|e| panic!("{kind} {input}: {e}"));
            assert_eq!(
                (status.as_str(), message.as_str()),
                (
                    "Progressing",
                    "Waiting for the controller to report a status"
                ),
                "{kind} {input}"
            );
        }
    }
}

#[test]
fn argocd_health_check_is_one_script_for_the_three_kinds() {
    let transfer = read(&kind_dir("ArtifactTransfer").join("health.lua"));
    for kind in ["ArtifactStore", "ClusterArtifactStore"] {
        assert_eq!(
            read(&kind_dir(kind).join("health.lua")),
            transfer,
            "{GROUP_DIR}/{kind}/health.lua must be a copy of ArtifactTransfer/health.lua"
        );
    }
}

/// The inputs are real objects of our API: they read into the Rust types, strictly.
#[test]
fn argocd_testdata_are_objects_of_our_api() {
    let mut dirs: Vec<PathBuf> = KINDS.iter().map(|k| kind_dir(k).join("testdata")).collect();
    dirs.push(kind_dir("ArtifactTransfer").join("actions/testdata"));
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let obj = yaml_file(&path);
            let what = path.display().to_string();
            match obj["kind"].as_str() {
                Some("ArtifactTransfer") => {
                    let t: ArtifactTransfer = api::from_value_strict(obj.clone())
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    t.spec
                        .validate()
                        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                }
                Some("ArtifactStore") => {
                    let s: ArtifactStore = api::from_value_strict(obj.clone())
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    s.spec
                        .validate()
                        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                }
                Some("ClusterArtifactStore") => {
                    let s: ClusterArtifactStore = api::from_value_strict(obj.clone())
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    s.store_spec()
                        .validate()
                        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                }
                other => panic!("{what}: unexpected kind {other:?}"),
            }
            assert_eq!(obj["apiVersion"], api::API_VERSION, "{what}");
        }
    }
}

/// Argo CD's code path itself, on scripts made for the purpose: what argocd-cm scripts
/// cannot use (`string`, `math`, `io`, string methods) fails, so do syntax and run-time
/// errors; a status outside Argo CD's list becomes Unknown; values reach a script intact.
#[test]
fn argocd_code_path_refuses_what_argocd_cm_scripts_cannot_use() {
    let healthy = yaml_file(&kind_dir("ArtifactTransfer").join("testdata/healthy.yaml"));
    let odd = json!({"apiVersion": api::API_VERSION, "kind": "ArtifactTransfer",
        "metadata": {"name": "odd", "generation": 1},
        "s": "a\"b\\c\nd\u{e9}\u{1F600}", "num": 42, "b": true, "l": [{"x": "1"}, {"x": "2"}]});
    // (A field named `n` reads as nil in Argo CD's VM — gopher-lua — so the number is `num`.)
    // One customizations dir and patch per script, each with one case.
    let run = |name: &str, script: &str, obj: &Value| -> Result<(String, String), String> {
        let tmp = tempfile::tempdir().unwrap();
        let kind = tmp.path().join("artifacts.aosm.dev/ArtifactTransfer");
        std::fs::create_dir_all(kind.join("testdata")).unwrap();
        std::fs::write(
            kind.join("testdata/input.yaml"),
            serde_yaml::to_string(obj).unwrap(),
        )
        .unwrap();
        std::fs::write(
            kind.join("health_test.yaml"),
            "tests:\n  - healthStatus: {status: Healthy}\n    inputPath: testdata/input.yaml\n",
        )
        .unwrap();
        let patch = tmp.path().join("patch.yaml");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"},
            "data": {health_key("ArtifactTransfer"): script}});
        std::fs::write(&patch, serde_yaml::to_string(&cm).unwrap()).unwrap();
        let results = argocd(&patch, tmp.path());
        assert_eq!(results.len(), 1, "{name}: {results:?}");
        health_of(&results[0]).map_err(|e| format!("{name}: {e}"))
    };
    assert_eq!(
        run(
            "plain",
            "return {status = 'Healthy', message = 'ok'}",
            &healthy
        ),
        Ok(("Healthy".into(), "ok".into()))
    );
    for (name, text) in [
        ("syntax", "hs = {\nreturn hs\n"),
        (
            "string-lib",
            "return {status = string.format('%s', 'Healthy')}",
        ),
        ("string-method", "return {status = ('Healthy'):lower()}"),
        (
            "math-lib",
            "return {status = 'Healthy', message = tostring(math.max(1, 2))}",
        ),
        ("io-lib", "io.write('x') return {status = 'Healthy'}"),
        ("runtime", "return {status = obj.status.nothing.here}"),
        ("not-a-table", "return 'Healthy'"),
    ] {
        let got = run(name, text, &healthy);
        assert!(got.is_err(), "{name} must fail in Argo CD: {got:?}");
    }
    assert_eq!(
        run("invalid", "return {status = 'Fine'}", &healthy),
        Ok((
            "Unknown".into(),
            "Lua returned an invalid health status".into()
        ))
    );
    assert_eq!(
        run(
            "echo",
            "return {status = 'Healthy', message = obj.s .. '|' .. tostring(obj.num) .. '|' .. tostring(obj.b) .. '|' .. obj.l[2].x}",
            &odd
        ),
        Ok((
            "Healthy".into(),
            "a\"b\\c\nd\u{e9}\u{1F600}|42|true|2".into()
        ))
    );
}

// ---------------------------------------------------------------------------------------
// Argo CD: the reconcile action

fn actions_dir() -> PathBuf {
    kind_dir("ArtifactTransfer").join("actions")
}

#[test]
fn argocd_reconcile_action_passes_its_tests() {
    let results = argocd_shipped();
    let dir = actions_dir();
    let tests = yaml_file(&dir.join("action_test.yaml"));
    let discovery_tests = tests["discoveryTests"].as_array().expect("discoveryTests");
    assert!(discovery_tests.len() >= 2);
    for t in discovery_tests {
        let input = t["inputPath"].as_str().unwrap();
        let got = result_for(&results, "discovery", "ArtifactTransfer", input);
        assert!(got["error"].is_null(), "discovery of {input}: {got}");
        let got: BTreeSet<(String, bool)> = got["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or_default().to_string(),
                    a["disabled"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        let want: BTreeSet<(String, bool)> = t["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["disabled"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        assert_eq!(got, want, "discovery of {input}");
    }

    let stamp = Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$").unwrap();
    let action_tests = tests["actionTests"].as_array().expect("actionTests");
    assert!(action_tests.len() >= 2);
    for t in action_tests {
        let action = t["action"].as_str().unwrap();
        let input = t["inputPath"].as_str().unwrap();
        let obj = yaml_file(&dir.join(input));
        let result = results
            .iter()
            .find(|r| r["test"] == "action" && r["action"] == action && r["inputPath"] == input)
            .unwrap_or_else(|| panic!("Argo CD ran no {action} on {input}"));
        assert!(result["error"].is_null(), "{action} on {input}: {result}");
        let impacted = result["impacted"].as_array().expect("impacted resources");
        assert_eq!(impacted.len(), 1, "{action} on {input}: {result}");
        assert_eq!(impacted[0]["operation"], "patch", "{result}");
        let mut got = impacted[0]["resource"].clone();
        let mut want = yaml_file(&dir.join(t["expectedOutputPath"].as_str().unwrap()));
        // The action writes the current time: check it, then compare the rest.
        let key = api::REQUESTED_AT_ANNOTATION;
        let written = got["metadata"]["annotations"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{action} on {input} set no {key}: {got}"))
            .to_string();
        assert!(stamp.is_match(&written), "{key}: {written:?}");
        assert_ne!(
            Some(written.as_str()),
            obj["metadata"]["annotations"][key].as_str(),
            "{action} on {input} must write a new value"
        );
        let now = k8s_openapi::jiff::Timestamp::now();
        let at: k8s_openapi::jiff::Timestamp = written.parse().unwrap();
        assert!(
            (now.as_second() - at.as_second()).abs() < 600,
            "{key} {written} is not the current UTC time ({now})"
        );
        got["metadata"]["annotations"][key] = Value::Null;
        want["metadata"]["annotations"][key] = Value::Null;
        assert_eq!(got, want, "{action} on {input}");
    }
}

// ---------------------------------------------------------------------------------------
// argocd-cm patch and docs

const PATCH: &str = "gitops/argocd/argocd-cm-patch.yaml";

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

fn health_key(kind: &str) -> String {
    format!("resource.customizations.health.artifacts.aosm.dev_{kind}")
}

const ACTIONS_KEY: &str = "resource.customizations.actions.artifacts.aosm.dev_ArtifactTransfer";

/// The argocd-cm patch, generated from the scripts.
fn render_patch() -> String {
    let mut s = String::from(
        "# Generated from gitops/argocd/artifacts.aosm.dev/*/health.lua and\n\
         # ArtifactTransfer/actions/ by tests/gitops.rs (AOSM_UPDATE_GITOPS=1 cargo test --test\n\
         # gitops argocd_cm_patch_is_up_to_date); do not edit by hand.\n\
         #\n\
         # Adds the health checks of ArtifactTransfer, ArtifactStore and ClusterArtifactStore\n\
         # and the ArtifactTransfer \"reconcile\" action to Argo CD (docs/gitops.md):\n\
         #\n\
         #   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file gitops/argocd/argocd-cm-patch.yaml\n\
         #\n\
         # or list it under `patches:` of the kustomization that installs Argo CD.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n",
    );
    let health = read(&kind_dir("ArtifactTransfer").join("health.lua"));
    for kind in KINDS {
        s += &format!("  {}: |\n", health_key(kind));
        s += &indent(&health, 4);
    }
    s += &format!("  {ACTIONS_KEY}: |\n    discovery.lua: |\n");
    s += &indent(&read(&actions_dir().join("discovery.lua")), 6);
    s += "    definitions:\n      - name: reconcile\n        action.lua: |\n";
    s += &indent(&read(&actions_dir().join("reconcile/action.lua")), 10);
    s
}

#[test]
fn argocd_cm_patch_is_up_to_date() {
    let path = root().join(PATCH);
    let want = render_patch();
    if std::env::var_os("AOSM_UPDATE_GITOPS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    assert!(
        path.exists() && read(&path) == want,
        "{PATCH} is stale: run `AOSM_UPDATE_GITOPS=1 cargo test --test gitops argocd_cm_patch_is_up_to_date`"
    );
    // And it says what it should once parsed, the way Argo CD reads argocd-cm.
    let patch = yaml_file(&path);
    let health = read(&kind_dir("ArtifactTransfer").join("health.lua"));
    for kind in KINDS {
        assert_eq!(patch["data"][health_key(kind)], health.as_str(), "{kind}");
    }
    let actions: Value = serde_yaml::from_str(patch["data"][ACTIONS_KEY].as_str().unwrap())
        .expect("the actions value is YAML");
    assert_eq!(
        actions["discovery.lua"],
        read(&actions_dir().join("discovery.lua")).as_str()
    );
    assert_eq!(actions["definitions"][0]["name"], "reconcile");
    assert_eq!(
        actions["definitions"][0]["action.lua"],
        read(&actions_dir().join("reconcile/action.lua")).as_str()
    );
}

/// The documented command works on a real argocd-cm and keeps its other settings.
#[test]
fn argocd_cm_patch_applies_to_an_argocd_cm() {
    let cluster = cluster();
    let ns = "gitops-argocd";
    cluster.create_namespace(ns, &[]);
    cluster
        .kubectl_cmd()
        .args(["create", "configmap", "argocd-cm", "-n", ns])
        .arg("--from-literal=url=https://argocd.example.com")
        .ok();
    cluster
        .kubectl_cmd()
        .args([
            "-n",
            ns,
            "patch",
            "configmap",
            "argocd-cm",
            "--type",
            "merge",
        ])
        .arg("--patch-file")
        .arg(root().join(PATCH))
        .ok();
    let out: Output = cluster
        .kubectl_cmd()
        .args(["-n", ns, "get", "configmap", "argocd-cm", "-o", "json"])
        .ok();
    let cm = out.json();
    assert_eq!(cm["data"]["url"], "https://argocd.example.com", "{out}");
    let health = read(&kind_dir("ArtifactTransfer").join("health.lua"));
    for kind in KINDS {
        assert_eq!(cm["data"][health_key(kind)], health.as_str(), "{kind}");
    }
    assert!(cm["data"][ACTIONS_KEY].is_string(), "{out}");
}

#[test]
fn docs_gitops_is_consistent_with_the_files() {
    let docs = read(&root().join("docs/gitops.md"));
    // The inline argocd-cm example carries the current ArtifactTransfer script.
    let health = read(&kind_dir("ArtifactTransfer").join("health.lua"));
    assert!(
        docs.contains(&format!(
            "  {}: |\n{}",
            health_key("ArtifactTransfer"),
            indent(&health, 4)
        )),
        "docs/gitops.md must show the current ArtifactTransfer health.lua under {} (indented 4)",
        health_key("ArtifactTransfer")
    );
    for needle in [
        "kubectl -n argocd patch configmap argocd-cm --type merge --patch-file gitops/argocd/argocd-cm-patch.yaml",
        api::REQUESTED_AT_ANNOTATION,
        "wait: true",
        "healthChecks",
        "timeout:",
        "kind: Application",
        "kind: Kustomization",
        "path: examples/publish",
        "contoso-sp",
    ] {
        assert!(
            docs.contains(needle),
            "docs/gitops.md does not mention {needle:?}"
        );
    }
    // Every YAML block parses, and every repository path it names exists.
    let mut blocks = 0;
    let mut in_block = None::<String>;
    for line in docs.lines() {
        match (&mut in_block, line.trim_start().strip_prefix("```")) {
            (None, Some("yaml")) => in_block = Some(String::new()),
            (Some(block), Some("")) => {
                yaml_docs(block, &format!("docs/gitops.md YAML block {}", blocks + 1));
                blocks += 1;
                in_block = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks >= 4, "only {blocks} YAML blocks in docs/gitops.md");
    let paths = Regex::new(r"`((?:examples|gitops|docs|crds|scripts)/[A-Za-z0-9._/-]*)`").unwrap();
    for c in paths.captures_iter(&docs) {
        let p = c[1].trim_end_matches('/');
        assert!(
            root().join(p).exists(),
            "docs/gitops.md names {p}, which does not exist"
        );
    }
}
