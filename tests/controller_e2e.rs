//! End to end: the controller (`aosm-artifact-operator run`, a real process, out of
//! cluster with a kubeconfig) against a real kube-apiserver + etcd, the AOSM emulator
//! (ARM, Entra, ACR token server and its token-auth registry), real docker-registry
//! sources and mirrors and a Helm HTTP repository. Objects are applied with kubectl,
//! readiness is awaited with `kubectl wait`, digests are checked with skopeo.
//!
//! Each test has its own control plane (a controller watches the whole cluster); at most
//! [`PARALLEL`] stacks run at once on this 2-core machine.

mod support;

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::cmd::Cmd;
use support::emulator::*;
use support::fixtures::{self, Flavor};
use support::kube::KubeCluster;
use support::operator::{Controller, Placement};
use support::proxy::{Fault, FaultProxy, ProxyConfig};
use support::registry::Registry;
use support::{TestEnv, sha256_digest, wait_for};

trust_emulator_ca!();

/// Stacks (control plane + emulator + controller) running at once.
const PARALLEL: usize = 3;
/// Upper bound for a transfer to become Ready on a loaded 2-core machine.
const READY: Duration = Duration::from_secs(120);
const NS: &str = "apps";
const SYSTEM_NS: &str = "aosm-system";
const MANIFEST: &str = "contoso-cnf-manifest";

// ----- the stack -------------------------------------------------------------------------

static SLOTS: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

/// One of [`PARALLEL`] slots, held for a test's lifetime.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= PARALLEL {
            used = SLOT_FREED.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        SLOT_FREED.notify_one();
    }
}

/// A control plane with our CRDs, the emulator with an ACR-backed store, a Secret with the
/// service principal and a ClusterArtifactStore `contoso` pointing at it.
struct Stack {
    env: TestEnv,
    emu: Emulator,
    kube: KubeCluster,
    _slot: Slot,
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

fn store_ref(name: &str) -> Value {
    json!({"kind": "ClusterArtifactStore", "name": name})
}

/// A push into the store of `source` as `artifact:version` of [`MANIFEST`].
fn push(name: &str, source: Value, artifact: &str, version: &str) -> Value {
    json!({
        "apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "source": source,
            "destination": {"artifactStore": {"storeRef": store_ref("contoso"), "manifest": MANIFEST,
                "artifact": artifact, "version": version}},
        }
    })
}

/// `transfer` with `spec.referrers: true`.
fn with_referrers(mut transfer: Value) -> Value {
    transfer["spec"]["referrers"] = json!(true);
    transfer
}

fn registry_source(image: &str) -> Value {
    json!({"registry": {"image": image, "plainHTTP": true}})
}

impl Stack {
    fn new(emulator_args: &[&str], artifacts: &[(&str, &str, &str)]) -> Stack {
        let slot = Slot::take();
        let env = TestEnv::new();
        let kube = KubeCluster::start();
        kube.apply_crds();
        kube.create_namespace(SYSTEM_NS, &[]);
        kube.create_namespace(NS, &[]);
        let emu = Emulator::start(emulator_args);
        emu.create_acr_manifest(MANIFEST, artifacts);
        let stack = Stack {
            env,
            emu,
            kube,
            _slot: slot,
        };
        stack.apply(&list(vec![
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "contoso-sp", "namespace": SYSTEM_NS},
                "stringData": {"tenantId": stack.emu.ep("tenantId"), "clientId": stack.emu.ep("clientId"),
                    "clientSecret": stack.emu.client_secret()}}),
            stack.cluster_store("contoso", None),
        ]));
        stack
    }

    fn cluster_store(&self, name: &str, allowed: Option<Value>) -> Value {
        let mut spec = json!({
            "subscriptionId": SUB, "resourceGroup": RG, "publisher": PUBLISHER,
            "artifactStore": STORE,
            "armEndpoint": self.emu.ep("armEndpoint"),
            "authorityHost": self.emu.ep("authorityHost"),
            "identity": {"type": "ClientSecret", "secretRef": {"name": "contoso-sp"}},
        });
        if let Some(a) = allowed {
            spec["allowedNamespaces"] = a;
        }
        json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ClusterArtifactStore",
            "metadata": {"name": name}, "spec": spec})
    }

    fn kubectl(&self) -> Cmd {
        self.kube.kubectl_cmd()
    }

    /// `kubectl apply -f -` of a JSON object or List.
    fn apply(&self, obj: &Value) {
        self.kubectl()
            .args(["apply", "-f", "-"])
            .stdin(obj.to_string())
            .ok();
    }

    /// Starts `aosm-artifact-operator run` as `identity` (its `POD_NAME`).
    fn controller(&self, identity: &str, args: &[&str]) -> Controller {
        self.controller_with_env(identity, args, &[])
    }

    /// [`Stack::controller`] with extra environment variables.
    fn controller_with_env(
        &self,
        identity: &str,
        args: &[&str],
        vars: &[(&str, String)],
    ) -> Controller {
        let at = Placement {
            kubeconfig: self.kube.kubeconfig_path(),
            ca_file: &self.emu.ca_file(),
            namespace: SYSTEM_NS,
        };
        Controller::start(&self.env, &at, identity, args, vars)
    }

    fn transfer(&self, name: &str) -> Value {
        let out = self
            .kubectl()
            .args(["get", "artifacttransfer", name, "-n", NS, "-o", "json"])
            .ok();
        serde_json::from_str(&out.stdout).expect("transfer JSON")
    }

    /// `kubectl wait --for=condition=Ready` on transfers; returns them.
    fn wait_ready(&self, names: &[&str]) -> Vec<Value> {
        let out = self
            .kubectl()
            .args(["wait", "--for=condition=Ready", "-n", NS])
            .arg(format!("--timeout={}s", READY.as_secs()))
            .args(names.iter().map(|n| format!("artifacttransfer/{n}")))
            .run();
        if !out.success() {
            let all = self
                .kubectl()
                .args(["get", "artifacttransfers", "-n", NS, "-o", "yaml"])
                .run();
            panic!(
                "transfers {names:?} did not become Ready\n{out}\n{}\n--- emulator\n{}",
                all.stdout,
                tail(&self.emu.logs(), 40)
            );
        }
        names.iter().map(|n| self.transfer(n)).collect()
    }

    /// Waits until `name` has condition `type_` True; returns (reason, message).
    fn wait_condition(&self, name: &str, type_: &str) -> (String, String) {
        wait_for(&format!("{name} to be {type_}"), READY, || {
            condition(&self.transfer(name), type_)
                .filter(|c| c["status"] == "True")
                .map(|c| {
                    (
                        c["reason"].as_str().unwrap_or_default().to_string(),
                        c["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
        })
    }

    fn events(&self) -> Value {
        let out = self
            .kubectl()
            .args(["get", "events.events.k8s.io", "-A", "-o", "json"])
            .ok();
        serde_json::from_str(&out.stdout).expect("events JSON")
    }

    /// (reason, reportingInstance) of the events about transfer `name`.
    fn events_of(&self, name: &str) -> Vec<(String, String)> {
        self.events()["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["regarding"]["name"] == name)
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_string(),
                    e["reportingInstance"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    }

    /// Lets the tools read the store; returns the scoped credential used.
    fn login_store(&self) -> ScopedCredential {
        let cred = self.emu.list_credential(MANIFEST, V2023);
        self.emu.login_tools(&self.env, &cred);
        cred
    }

    /// sha256 of the store's manifest bytes as skopeo reads them.
    fn store_digest(&self, path: &str) -> String {
        sha256_digest(&self.emu.skopeo_raw(&self.env, path))
    }
}

fn condition<'a>(t: &'a Value, type_: &str) -> Option<&'a Value> {
    t["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn status_str<'a>(t: &'a Value, field: &str) -> &'a str {
    t["status"][field].as_str().unwrap_or_default()
}

/// No secret value anywhere in `haystack`: the service principal's secret, registry
/// passwords, and no JWT (Entra and ACR tokens are JWTs: `eyJ...`).
fn assert_no_secrets(what: &str, haystack: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!haystack.contains(s), "{what} contains a secret value");
    }
    assert!(
        !haystack.contains("eyJ"),
        "{what} contains something that looks like a JWT token"
    );
}

// ----- tests -------------------------------------------------------------------------------

#[test]
fn pushes_image_chart_and_template_then_pulls_back_with_events_metrics_and_no_secrets() {
    let stack = Stack::new(
        &[],
        &[
            ("contoso-cnf", "OCIArtifact", "1.0.0"),
            ("contoso-chart", "OCIArtifact", "0.1.0"),
            ("contoso-template", "ArmTemplate", "1.0.0"),
        ],
    );
    let env = &stack.env;
    let src = Registry::start();
    // Signed, with an SBOM and a signature of the SBOM: `spec.referrers` brings them.
    let image = fixtures::signed_image(env, &src, "contoso/cnf:1.0.0");
    let repo = fixtures::helm_http_repo(env, &[("contoso-chart", "0.1.0")], None);
    let mirror_password = "mirror-pass-5f1c2a";
    let mirror = Registry::with_basic_auth("mirror", mirror_password);
    env.prepare(&mirror);
    let template = r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0", "resources": []}"#;

    stack.apply(&list(vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nf-template", "namespace": NS},
            "data": {"template.json": template}}),
        with_referrers(push("image", registry_source(&src.reference("contoso/cnf:1.0.0")), "contoso-cnf", "1.0.0")),
        push("chart", json!({"helmRepository": {"url": repo.url(), "chart": "contoso-chart", "version": "0.1.0"}}),
            "contoso-chart", "0.1.0"),
        push("template", json!({"configMap": {"name": "nf-template", "key": "template.json", "mediaType": "application/json"}}),
            "contoso-template", "1.0.0"),
    ]));
    let controller = stack.controller("ctrl-0", &[]);
    let ready = stack.wait_ready(&["image", "chart", "template"]);
    assert_eq!(
        status_str(&ready[0], "digest"),
        image.image,
        "image digest is byte-exact"
    );
    assert_eq!(status_str(&ready[0], "direction"), "Push");
    assert_eq!(ready[0]["status"]["referrers"], 3, "{}", ready[0]);
    let message = condition(&ready[0], "Ready").map(|c| c["message"].to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("3 referrers (3 copied)")),
        "{message:?}"
    );
    assert!(ready[1]["status"]["referrers"].is_null(), "not asked for");
    assert_eq!(status_str(&ready[0], "shortDigest"), &image.image[7..19]);
    assert_eq!(status_str(&ready[2], "artifactType"), "ArmTemplate");
    for t in &ready {
        assert_eq!(
            t["status"]["observedGeneration"],
            t["metadata"]["generation"]
        );
        assert!(
            condition(t, "Reconciling").is_none() && condition(t, "Stalled").is_none(),
            "{t}"
        );
    }

    // Independent check of what the store holds.
    stack.login_store();
    assert_eq!(stack.store_digest("contoso-cnf:1.0.0"), image.image);
    assert_eq!(
        stack.store_digest("contoso-chart:0.1.0"),
        status_str(&ready[1], "digest")
    );
    let chart_manifest: Value =
        serde_json::from_slice(&stack.emu.skopeo_raw(env, "contoso-chart:0.1.0")).unwrap();
    assert_eq!(
        chart_manifest["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    assert_eq!(
        stack.store_digest("contoso-template:1.0.0"),
        status_str(&ready[2], "digest")
    );

    // Pull it back into a registry that needs a password (a dockerconfigjson Secret).
    let auth = base64_encode(&format!("mirror:{mirror_password}"));
    stack.apply(&list(vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mirror-cred", "namespace": NS},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json!({"auths": {mirror.host(): {"auth": auth}}}).to_string()}}),
        json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
            "metadata": {"name": "pull", "namespace": NS},
            "spec": {
                "source": {"artifactStore": {"storeRef": store_ref("contoso"), "manifest": MANIFEST,
                    "artifact": "contoso-cnf", "version": "1.0.0"}},
                "destination": {"registry": {"image": mirror.reference("mirror/cnf:1.0.0"), "plainHTTP": true,
                    "secretRef": {"name": "mirror-cred"}}},
                "referrers": true,
            }}),
    ]));
    let pulled = stack.wait_ready(&["pull"]).remove(0);
    assert_eq!(status_str(&pulled, "direction"), "Pull");
    assert_eq!(pulled["status"]["referrers"], 3, "{pulled}");
    let mut at_mirror = fixtures::oras_discover(env, &mirror, "mirror/cnf:1.0.0");
    let mut at_source = fixtures::oras_discover(env, &src, "contoso/cnf:1.0.0");
    at_mirror.sort();
    at_source.sort();
    assert_eq!(
        at_mirror, at_source,
        "the signatures and the SBOM came back"
    );
    assert_eq!(status_str(&pulled, "digest"), image.image);
    assert_eq!(env.skopeo_digest(&mirror, "mirror/cnf:1.0.0"), image.image);

    // Events: Started and Succeeded for each transfer; the store was checked.
    for name in ["image", "chart", "template", "pull"] {
        let reasons: Vec<String> = stack.events_of(name).into_iter().map(|e| e.0).collect();
        assert!(
            reasons.contains(&"Started".to_string()) && reasons.contains(&"Succeeded".to_string()),
            "events of {name}: {reasons:?}"
        );
    }
    let cas = stack
        .kubectl()
        .args(["get", "clusterartifactstore", "contoso", "-o", "json"])
        .ok();
    let cas: Value = serde_json::from_str(&cas.stdout).unwrap();
    assert_eq!(cas["status"]["storeType"], "AzureContainerRegistry");
    assert_eq!(condition(&cas, "Ready").unwrap()["status"], "True");

    // Metrics: four transfers, their blobs, and the credential calls.
    let metrics = controller.metrics();
    assert!(
        metrics.contains("aosm_transfers_total{direction=\"Push\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aosm_transfers_total{direction=\"Pull\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aosm_list_credential_calls_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aosm_reconciles_total{kind=\"ArtifactTransfer\",outcome=\"success\"}")
    );

    // `kubectl get aosm` lists everything with the digest column.
    let listed = stack.kubectl().args(["get", "aosm", "-A"]).ok();
    assert!(
        listed.stdout.contains(&image.image[7..19]),
        "{}",
        listed.stdout
    );

    // Graceful shutdown, then no secret in logs, events or statuses.
    let logs = controller.terminate();
    assert_eq!(logs.code, Some(0), "SIGTERM exits cleanly\n{logs}");
    assert!(
        logs.stderr.contains("transfer succeeded"),
        "controller logs: {}",
        tail(&logs.stderr, 20)
    );
    let secrets = [stack.emu.client_secret(), mirror_password.to_string()];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secrets(
        "the controller's logs",
        &format!("{}{}", logs.stdout, logs.stderr),
        &secrets,
    );
    assert_no_secrets("events", &stack.events().to_string(), &secrets);
    let statuses = stack
        .kubectl()
        .args([
            "get",
            "artifacttransfers,clusterartifactstores",
            "-A",
            "-o",
            "json",
        ])
        .ok();
    let statuses: Value = serde_json::from_str(&statuses.stdout).unwrap();
    let only_status: Vec<&Value> = statuses["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["status"])
        .collect();
    assert_no_secrets("statuses", &json!(only_status).to_string(), &secrets);
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A Helm HTTP repository whose index lists `listed` 1.0.0 but whose archive holds a
/// chart named `actual`: what a chart renamed in the index but not in Chart.yaml looks like.
fn mismatched_helm_repo(
    env: &TestEnv,
    listed: &str,
    actual: &str,
) -> support::fileserver::FileServer {
    let chart = fixtures::helm_package(env, actual, "1.0.0", "mismatch/charts");
    let dir = env.path("mismatch/charts");
    let file = format!("{listed}-1.0.0.tgz");
    std::fs::rename(&chart.tgz, dir.join(&file)).unwrap();
    let bytes = std::fs::read(dir.join(&file)).unwrap();
    let digest = sha256_digest(&bytes);
    let index = format!(
        "apiVersion: v1\nentries:\n  {listed}:\n  - apiVersion: v2\n    name: {listed}\n    version: 1.0.0\n    digest: {}\n    urls:\n    - {file}\n",
        &digest[7..]
    );
    std::fs::write(dir.join("index.yaml"), index).unwrap();
    support::fileserver::FileServer::start(env.path("mismatch"), None)
}

#[test]
fn permanent_failures_stall_with_their_reason_and_a_created_secret_recovers() {
    let stack = Stack::new(
        &[],
        &[
            ("contoso-cnf", "OCIArtifact", "1.0.0"),
            ("contoso-chart", "OCIArtifact", "1.0.0"),
            ("contoso-private", "OCIArtifact", "1.0.0"),
        ],
    );
    let env = &stack.env;
    let src = Registry::start();
    let image = fixtures::push_image(env, &src, "contoso/cnf:1.0.0", &[50_000], Flavor::Oci, None);
    let private_password = "private-pass-93ad";
    let private = Registry::with_basic_auth("puller", private_password);
    env.prepare(&private);
    let private_image = fixtures::push_image(
        env,
        &private,
        "contoso/private:1.0.0",
        &[20_000],
        Flavor::Oci,
        None,
    );
    let charts = mismatched_helm_repo(env, "contoso-chart", "another-chart");
    stack.kube.create_namespace("team-b", &[]);

    let mut not_allowed = push(
        "not-allowed",
        registry_source(&src.reference("contoso/cnf:1.0.0")),
        "contoso-cnf",
        "1.0.0",
    );
    not_allowed["metadata"]["namespace"] = json!("team-b");
    not_allowed["spec"]["destination"]["artifactStore"]["storeRef"] = store_ref("restricted");
    let mut private_source = push(
        "missing-secret",
        json!({"registry": {"image": private.reference("contoso/private:1.0.0"), "plainHTTP": true,
            "secretRef": {"name": "private-cred"}}}),
        "contoso-private",
        "1.0.0",
    );
    private_source["spec"]["interval"] = json!("1h");
    stack.apply(&list(vec![
        stack.cluster_store("restricted", Some(json!({"matchLabels": {"aosm-publish": "true"}}))),
        push("not-in-manifest", registry_source(&src.reference("contoso/cnf:1.0.0")), "contoso-unlisted", "1.0.0"),
        private_source,
        not_allowed,
        push("chart-mismatch",
            json!({"helmRepository": {"url": format!("{}/charts", charts.url()), "chart": "contoso-chart", "version": "1.0.0"}}),
            "contoso-chart", "1.0.0"),
    ]));
    let controller = stack.controller("ctrl-0", &[]);

    let (reason, message) = stack.wait_condition("not-in-manifest", "Stalled");
    assert_eq!(reason, "ArtifactNotInManifest");
    assert!(
        message.contains("contoso-unlisted") && message.contains("contoso-cnf:1.0.0"),
        "{message}"
    );
    let (reason, message) = stack.wait_condition("missing-secret", "Stalled");
    assert_eq!(reason, "SecretNotFound");
    assert!(message.contains("private-cred"), "{message}");
    let (reason, message) = stack.wait_condition("chart-mismatch", "Stalled");
    assert_eq!(reason, "ChartNameMismatch");
    assert!(message.contains("another-chart"), "{message}");
    let team_b = wait_for("not-allowed to be Stalled", READY, || {
        let out = stack
            .kubectl()
            .args([
                "get",
                "artifacttransfer",
                "not-allowed",
                "-n",
                "team-b",
                "-o",
                "json",
            ])
            .ok();
        let t: Value = serde_json::from_str(&out.stdout).unwrap();
        condition(&t, "Stalled")
            .filter(|c| c["status"] == "True")
            .cloned()
    });
    assert_eq!(team_b["reason"], "StoreNotAllowed");
    assert!(
        team_b["message"].as_str().unwrap().contains("team-b"),
        "{team_b}"
    );
    for name in ["not-in-manifest", "missing-secret", "chart-mismatch"] {
        let t = stack.transfer(name);
        let ready = condition(&t, "Ready").unwrap();
        assert_eq!(ready["status"], "False", "{t}");
        assert!(
            condition(&t, "Reconciling").is_none(),
            "Stalled is not Reconciling: {t}"
        );
        let reasons: Vec<String> = stack.events_of(name).into_iter().map(|e| e.0).collect();
        assert!(
            reasons.contains(&ready["reason"].as_str().unwrap().to_string()),
            "Warning event for {name}: {reasons:?}"
        );
    }

    // The user creates the missing Secret: the transfer recovers without being touched.
    let auth = base64_encode(&format!("puller:{private_password}"));
    stack.apply(&json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "private-cred", "namespace": NS},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json!({"auths": {private.host(): {"auth": auth}}}).to_string()}}));
    let recovered = stack.wait_ready(&["missing-secret"]).remove(0);
    assert_eq!(status_str(&recovered, "digest"), private_image.digest);
    assert!(condition(&recovered, "Stalled").is_none(), "{recovered}");

    // Labelling the namespace admits it.
    stack
        .kube
        .create_namespace("team-b", &[("aosm-publish", "true")]);
    stack
        .kubectl()
        .args([
            "annotate",
            "--overwrite",
            "-n",
            "team-b",
            "artifacttransfer/not-allowed",
            "artifacts.aosm.dev/requested-at=after-label",
        ])
        .ok();
    let out = stack
        .kubectl()
        .args([
            "wait",
            "--for=condition=Ready",
            "-n",
            "team-b",
            "artifacttransfer/not-allowed",
        ])
        .arg(format!("--timeout={}s", READY.as_secs()))
        .run();
    out.assert_success();
    assert_eq!(image.digest.len(), 71);

    let logs = controller.terminate();
    let secrets = [stack.emu.client_secret(), private_password.to_string()];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secrets("the controller's logs", &logs.stderr, &secrets);
    assert_no_secrets("events", &stack.events().to_string(), &secrets);
}

#[test]
fn throttled_arm_and_registry_recover_without_user_action() {
    let stack = Stack::new(&[], &[("contoso-cnf", "OCIArtifact", "1.0.0")]);
    let env = &stack.env;
    let src = Registry::start();
    let image = fixtures::push_image(
        env,
        &src,
        "contoso/cnf:1.0.0",
        &[200_000, 100_000],
        Flavor::Oci,
        None,
    );
    // The source answers 429 / 503 to every 3rd request.
    let proxy = FaultProxy::start(
        &src,
        ProxyConfig::faults(3, &[Fault::TooManyRequests, Fault::Unavailable]),
    );
    // ARM fails every call for now: the controller must back off and keep retrying.
    stack.emu.set_config(json!({"armErrorRate": 1.0}));
    stack.apply(&push(
        "image",
        registry_source(&proxy.reference("contoso/cnf:1.0.0")),
        "contoso-cnf",
        "1.0.0",
    ));
    let controller = stack.controller("ctrl-0", &[]);

    let (reason, message) = stack.wait_condition("image", "Reconciling");
    let retrying = if reason == "ProgressingWithRetry" {
        message
    } else {
        wait_for("ProgressingWithRetry", READY, || {
            let t = stack.transfer("image");
            condition(&t, "Reconciling")
                .filter(|c| c["reason"] == "ProgressingWithRetry")
                .map(|c| c["message"].as_str().unwrap_or_default().to_string())
        })
    };
    assert!(!retrying.is_empty());
    let t = stack.transfer("image");
    assert!(
        condition(&t, "Stalled").is_none(),
        "transient is never Stalled: {t}"
    );
    assert_ne!(condition(&t, "Ready").unwrap()["status"], "True");

    // ARM only throttles now (every 2nd call 429 + Retry-After); the transfer completes.
    stack
        .emu
        .set_config(json!({"armErrorRate": 0.0, "armThrottleEvery": 2}));
    let ready = stack.wait_ready(&["image"]).remove(0);
    assert_eq!(status_str(&ready, "digest"), image.digest);
    let stats = stack.emu.stats();
    assert!(stats["armErrors"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["armThrottled"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        !proxy.faults_injected().is_empty(),
        "the source was throttled"
    );
    stack.login_store();
    assert_eq!(stack.store_digest("contoso-cnf:1.0.0"), image.digest);
    let metrics = controller.metrics();
    assert!(
        metrics.contains("aosm_transfer_failures_total{reason=\"TransientFailure\"}"),
        "{metrics}"
    );
    controller.terminate();
}

#[test]
fn twenty_transfers_of_one_manifest_share_one_list_credential() {
    let names: Vec<String> = (0..20).map(|i| format!("contoso-nf-{i:02}")).collect();
    let artifacts: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "OCIArtifact", "1.0.0"))
        .collect();
    let stack = Stack::new(&[], &artifacts);
    let env = &stack.env;
    let src = Registry::start();
    let image = fixtures::push_image(env, &src, "contoso/nf:1.0.0", &[30_000], Flavor::Oci, None);
    let before = stack.emu.list_credential_count(MANIFEST);
    let arm_before = stack.emu.stats()["armCalls"].as_u64().unwrap();
    stack.apply(&list(
        names
            .iter()
            .map(|n| {
                push(
                    n,
                    registry_source(&src.reference("contoso/nf:1.0.0")),
                    n,
                    "1.0.0",
                )
            })
            .collect(),
    ));
    let controller = stack.controller("ctrl-0", &["--concurrency", "8"]);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for t in stack.wait_ready(&refs) {
        assert_eq!(status_str(&t, "digest"), image.digest);
    }
    assert_eq!(
        stack.emu.list_credential_count(MANIFEST) - before,
        1,
        "one listCredential for 20 transfers of one manifest"
    );
    assert!(
        controller
            .metrics()
            .contains("aosm_list_credential_calls_total 1")
    );
    // The store (twice: its own check and the transfers'), the manifest once, listCredential
    // once — not one manifest read per transfer.
    let arm_calls = stack.emu.stats()["armCalls"].as_u64().unwrap() - arm_before;
    assert!(
        arm_calls <= 5,
        "{arm_calls} ARM calls for 20 transfers of one manifest"
    );
    controller.terminate();
}

#[test]
fn controller_killed_mid_transfer_restarts_and_completes_without_a_partial_tag() {
    let stack = Stack::new(&[], &[("contoso-big", "OCIArtifact", "1.0.0")]);
    let env = &stack.env;
    let src = Registry::start();
    let image = fixtures::push_image(
        env,
        &src,
        "contoso/big:1.0.0",
        &[3_000_000, 6_000_000],
        Flavor::Oci,
        None,
    );
    let layers = image.blobs();
    // The big layer's download stalls after 1 MiB: the copy is provably in flight.
    let proxy = FaultProxy::start(&src, ProxyConfig::stall(&layers, 1 << 20));
    stack.apply(&push(
        "big",
        registry_source(&proxy.reference("contoso/big:1.0.0")),
        "contoso-big",
        "1.0.0",
    ));
    let first = stack.controller("ctrl-0", &[]);
    wait_for("a stalled layer download", READY, || {
        (proxy.stalled_now() >= 1).then_some(())
    });
    let (reason, _) = stack.wait_condition("big", "Reconciling");
    assert_eq!(reason, "Progressing");
    let mid = stack.transfer("big");
    assert_eq!(
        condition(&mid, "Ready").unwrap()["status"],
        "Unknown",
        "{mid}"
    );

    let killed = first.process.kill9();
    assert_eq!(killed.signal, Some(9));
    // Nothing is tagged in the store while content is incomplete.
    stack.login_store();
    let absent = stack.emu.crane_digest(env, "contoso-big:1.0.0");
    assert!(
        !absent.success(),
        "the tag must not exist before the copy completes: {absent}"
    );

    proxy.set_config(ProxyConfig::default());
    proxy.release_stalls();
    let second = stack.controller("ctrl-1", &[]);
    let ready = stack.wait_ready(&["big"]).remove(0);
    assert_eq!(status_str(&ready, "digest"), image.digest);
    assert_eq!(stack.store_digest("contoso-big:1.0.0"), image.digest);
    let out = stack.emu.crane_digest(env, "contoso-big:1.0.0");
    assert_eq!(out.stdout.trim(), image.digest);
    second.terminate();
}

/// Who holds the controller's Lease.
fn lease_holder(stack: &Stack) -> Option<String> {
    let out = stack
        .kubectl()
        .args([
            "get",
            "lease",
            "aosm-artifact-operator",
            "-n",
            SYSTEM_NS,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .run();
    (out.success() && !out.stdout.trim().is_empty()).then(|| out.stdout.trim().to_string())
}

#[test]
fn with_leader_election_only_the_leader_acts_and_a_standby_takes_over() {
    let stack = Stack::new(
        &[],
        &[
            ("contoso-cnf", "OCIArtifact", "1.0.0"),
            ("contoso-cnf", "OCIArtifact", "2.0.0"),
        ],
    );
    let env = &stack.env;
    let src = Registry::start();
    let v1 = fixtures::push_image(env, &src, "contoso/cnf:1.0.0", &[40_000], Flavor::Oci, None);
    let v2 = fixtures::push_image(env, &src, "contoso/cnf:2.0.0", &[40_000], Flavor::Oci, None);
    let ha = ["--leader-elect", "--lease-duration", "4"];
    let a = stack.controller("ctrl-a", &ha);
    let holder = wait_for("a lease holder", READY, || lease_holder(&stack));
    assert_eq!(holder, "ctrl-a");
    let b = stack.controller("ctrl-b", &ha);

    stack.apply(&push(
        "v1",
        registry_source(&src.reference("contoso/cnf:1.0.0")),
        "contoso-cnf",
        "1.0.0",
    ));
    let ready = stack.wait_ready(&["v1"]).remove(0);
    assert_eq!(status_str(&ready, "digest"), v1.digest);
    let acted: Vec<String> = stack.events_of("v1").into_iter().map(|e| e.1).collect();
    assert!(
        !acted.is_empty() && acted.iter().all(|i| i == "ctrl-a"),
        "only the leader acts: {acted:?}"
    );
    assert_eq!(lease_holder(&stack).as_deref(), Some("ctrl-a"));

    a.process.kill9();
    let holder = wait_for("the standby to take the lease", READY, || {
        lease_holder(&stack).filter(|h| h == "ctrl-b")
    });
    assert_eq!(holder, "ctrl-b");
    stack.apply(&push(
        "v2",
        registry_source(&src.reference("contoso/cnf:2.0.0")),
        "contoso-cnf",
        "2.0.0",
    ));
    let ready = stack.wait_ready(&["v2"]).remove(0);
    assert_eq!(status_str(&ready, "digest"), v2.digest);
    let acted: Vec<String> = stack.events_of("v2").into_iter().map(|e| e.1).collect();
    assert!(
        !acted.is_empty() && acted.iter().all(|i| i == "ctrl-b"),
        "the new leader acts: {acted:?}"
    );
    let out = b.terminate();
    assert_eq!(out.code, Some(0), "{out}");
}

#[test]
fn ready_pull_rechecks_its_destination_reruns_on_request_and_honours_suspend() {
    let stack = Stack::new(&[], &[("contoso-cnf", "OCIArtifact", "1.0.0")]);
    let env = &stack.env;
    stack.login_store();
    let digest = stack
        .emu
        .crane_push_image(env, "contoso-cnf:1.0.0", &[60_000]);
    let mirror = Registry::start();
    let pull = |name: &str, tag: &str, extra: Value| {
        let mut t = json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "source": {"artifactStore": {"storeRef": store_ref("contoso"), "manifest": MANIFEST,
                "artifact": "contoso-cnf", "version": "1.0.0"}},
            "destination": {"registry": {"image": mirror.reference(&format!("mirror/cnf:{tag}")), "plainHTTP": true}},
            // The shortest interval the CRD allows (src/limits.rs MIN_TRANSFER_INTERVAL).
            "interval": "10s",
        }});
        for (k, v) in extra.as_object().into_iter().flatten() {
            t["spec"][k] = v.clone();
        }
        t
    };
    stack.apply(&list(vec![
        pull("pull", "1.0.0", json!({})),
        pull("paused", "paused", json!({"suspend": true})),
    ]));
    let controller = stack.controller("ctrl-0", &[]);
    let ready = stack.wait_ready(&["pull"]).remove(0);
    assert_eq!(status_str(&ready, "digest"), digest);
    assert_eq!(env.skopeo_digest(&mirror, "mirror/cnf:1.0.0"), digest);
    let paused = stack.transfer("paused");
    assert!(
        paused["status"].is_null() || condition(&paused, "Ready").is_none(),
        "a suspended transfer is left alone: {paused}"
    );
    env.assert_absent(&mirror, "mirror/cnf:paused");

    // Someone deletes the mirrored image: the next re-check (interval 10s) copies it again.
    env.crane(&mirror)
        .args(["delete", &mirror.reference(&format!("mirror/cnf@{digest}"))])
        .ok();
    env.assert_absent(&mirror, "mirror/cnf:1.0.0");
    wait_for("the re-check to restore the mirror", READY, || {
        env.try_crane_digest(&mirror, "mirror/cnf:1.0.0")
            .success()
            .then_some(())
    });
    assert_eq!(env.skopeo_digest(&mirror, "mirror/cnf:1.0.0"), digest);

    // A new requested-at re-runs the transfer once and is recorded.
    let before = status_str(&stack.transfer("pull"), "startedAt").to_string();
    stack
        .kubectl()
        .args([
            "annotate",
            "--overwrite",
            "-n",
            NS,
            "artifacttransfer/pull",
            "artifacts.aosm.dev/requested-at=run-2",
        ])
        .ok();
    let handled = wait_for("requested-at handled", READY, || {
        let t = stack.transfer("pull");
        (status_str(&t, "lastHandledReconcileAt") == "run-2"
            && condition(&t, "Ready").is_some_and(|c| c["status"] == "True"))
        .then_some(t)
    });
    assert!(status_str(&handled, "startedAt") >= before.as_str());

    // Un-suspending starts the suspended one.
    stack
        .kubectl()
        .args([
            "patch",
            "-n",
            NS,
            "artifacttransfer/paused",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":false}}"#,
        ])
        .ok();
    let resumed = stack.wait_ready(&["paused"]).remove(0);
    assert_eq!(status_str(&resumed, "digest"), digest);
    controller.terminate();
}

#[test]
fn stores_report_their_state_and_label_selectors_shard_transfers() {
    let stack = Stack::new(
        &[],
        &[
            ("contoso-cnf", "OCIArtifact", "1.0.0"),
            ("contoso-cnf", "OCIArtifact", "2.0.0"),
        ],
    );
    let env = &stack.env;
    stack
        .emu
        .create_store(PUBLISHER, "blob-store", "AzureStorageAccount");
    let src = Registry::start();
    fixtures::push_image(env, &src, "contoso/cnf:1.0.0", &[20_000], Flavor::Oci, None);
    fixtures::push_image(env, &src, "contoso/cnf:2.0.0", &[20_000], Flavor::Oci, None);
    let mut a = push(
        "shard-a",
        registry_source(&src.reference("contoso/cnf:1.0.0")),
        "contoso-cnf",
        "1.0.0",
    );
    a["metadata"]["labels"] = json!({"shard": "a"});
    let mut b = push(
        "shard-b",
        registry_source(&src.reference("contoso/cnf:2.0.0")),
        "contoso-cnf",
        "2.0.0",
    );
    b["metadata"]["labels"] = json!({"shard": "b"});
    stack.apply(&list(vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sp", "namespace": NS},
            "stringData": {"tenantId": stack.emu.ep("tenantId"), "clientId": stack.emu.ep("clientId"),
                "clientSecret": stack.emu.client_secret()}}),
        json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactStore",
            "metadata": {"name": "blobs", "namespace": NS},
            "spec": {"subscriptionId": SUB, "resourceGroup": RG, "publisher": PUBLISHER, "artifactStore": "blob-store",
                "armEndpoint": stack.emu.ep("armEndpoint"), "authorityHost": stack.emu.ep("authorityHost"),
                "identity": {"type": "ClientSecret", "secretRef": {"name": "sp"}}}}),
        a,
        b,
    ]));
    // The namespaced store names the emulator's endpoints: the admin allows that host.
    let shard_a = stack.controller(
        "ctrl-a",
        &[
            "--watch-label-selector",
            "shard=a",
            "--namespaced-store-endpoint-hosts",
            "localhost",
        ],
    );
    stack.wait_ready(&["shard-a"]);
    let store = wait_for("ArtifactStore blobs to be Stalled", READY, || {
        let out = stack
            .kubectl()
            .args(["get", "artifactstore", "blobs", "-n", NS, "-o", "json"])
            .ok();
        let s: Value = serde_json::from_str(&out.stdout).unwrap();
        condition(&s, "Stalled")
            .filter(|c| c["status"] == "True")
            .is_some()
            .then_some(s)
    });
    assert_eq!(
        condition(&store, "Stalled").unwrap()["reason"],
        "UnsupportedStoreType"
    );
    assert_eq!(store["status"]["storeType"], "AzureStorageAccount");
    let other = stack.transfer("shard-b");
    // Untouched: still the CRD's default (generation 0 observed, no conditions).
    assert_eq!(
        other["status"],
        json!({"observedGeneration": 0}),
        "shard b is not this controller's: {other}"
    );

    let shard_b = stack.controller(
        "ctrl-b",
        &[
            "--watch-label-selector",
            "shard=b",
            "--namespaced-store-endpoint-hosts",
            "localhost",
        ],
    );
    stack.wait_ready(&["shard-b"]);
    let acted: Vec<String> = stack
        .events_of("shard-b")
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert!(acted.iter().all(|i| i == "ctrl-b"), "{acted:?}");
    shard_a.terminate();
    shard_b.terminate();
}

#[test]
fn an_attempt_longer_than_timeout_is_abandoned_and_retried() {
    let stack = Stack::new(&[], &[("contoso-cnf", "OCIArtifact", "1.0.0")]);
    let env = &stack.env;
    let src = Registry::start();
    let image = fixtures::push_image(
        env,
        &src,
        "contoso/cnf:1.0.0",
        &[2_000_000],
        Flavor::Oci,
        None,
    );
    let proxy = FaultProxy::start(&src, ProxyConfig::stall(&image.blobs(), 64 * 1024));
    let mut t = push(
        "slow",
        registry_source(&proxy.reference("contoso/cnf:1.0.0")),
        "contoso-cnf",
        "1.0.0",
    );
    t["spec"]["timeout"] = json!("2s");
    stack.apply(&t);
    let controller = stack.controller("ctrl-0", &[]);
    let message = wait_for("the timeout to be reported", READY, || {
        let t = stack.transfer("slow");
        condition(&t, "Reconciling")
            .filter(|c| c["reason"] == "ProgressingWithRetry")
            .map(|c| c["message"].as_str().unwrap_or_default().to_string())
    });
    assert!(message.contains("spec.timeout (2s)"), "{message}");
    proxy.set_config(ProxyConfig::default());
    proxy.release_stalls();
    let ready = stack.wait_ready(&["slow"]).remove(0);
    assert_eq!(status_str(&ready, "digest"), image.digest);
    controller.terminate();
}

/// A namespaced ArtifactStore in [`NS`] with the emulator's endpoints (unless `spec`
/// overrides them) and `identity`.
fn tenant_store(stack: &Stack, name: &str, identity: Value, overrides: Value) -> Value {
    let mut spec = json!({
        "subscriptionId": SUB, "resourceGroup": RG, "publisher": PUBLISHER, "artifactStore": STORE,
        "armEndpoint": stack.emu.ep("armEndpoint"), "authorityHost": stack.emu.ep("authorityHost"),
        "identity": identity,
    });
    for (k, v) in overrides.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactStore",
        "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// A push of the ConfigMap `nf-template` into `artifact:1.0.0` through namespaced store
/// `store`.
fn tenant_push(name: &str, store: &str, artifact: &str) -> Value {
    json!({
        "apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "source": {"configMap": {"name": "nf-template", "key": "template.json", "mediaType": "application/json"}},
            "destination": {"artifactStore": {"storeRef": {"kind": "ArtifactStore", "name": store},
                "manifest": MANIFEST, "artifact": artifact, "version": "1.0.0"}},
        }
    })
}

fn store_condition(stack: &Stack, name: &str, type_: &str) -> Option<(String, String)> {
    let out = stack
        .kubectl()
        .args(["get", "artifactstore", name, "-n", NS, "-o", "json"])
        .ok();
    let s: Value = serde_json::from_str(&out.stdout).ok()?;
    condition(&s, type_)
        .filter(|c| c["status"] == "True")
        .map(|c| {
            (
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

fn tokens_issued(stack: &Stack, kind: &str) -> u64 {
    stack.emu.stats()["tokensIssued"][kind]
        .as_u64()
        .unwrap_or(0)
}

/// The tenant rules on a real API server. The controller could authenticate as its own
/// managed identity (the emulator's App Service endpoint is in its environment), yet a
/// namespaced store that would borrow it ends Stalled without any token being asked for;
/// a store pointing ARM at a host the admin did not allow ends Stalled without a
/// connection to it; a store with a ServiceAccount of its own works through TokenRequest
/// (the emulator's Entra accepts only that ServiceAccount's subject), once the
/// ServiceAccount exists. Restarted with `--namespaced-store-ambient-identity`, the
/// borrowing store works: the flag is the only thing that stopped it.
#[test]
fn namespaced_stores_bring_their_own_identity_and_allowed_endpoints() {
    let artifacts = [
        ("borrowed-template", "ArmTemplate", "1.0.0"),
        ("redirected-template", "ArmTemplate", "1.0.0"),
        ("own-template", "ArmTemplate", "1.0.0"),
        ("stranger-template", "ArmTemplate", "1.0.0"),
    ];
    let stack = Stack::new(&[], &artifacts);
    let subject = format!("system:serviceaccount:{NS}:publisher");
    stack.emu.set_config(json!({
        "federatedCredentials": [{"issuer": stack.kube.issuer(), "subject": subject}],
        "oidcCaFile": stack.kube.pki().ca_crt,
    }));
    // A host that must never be contacted: it only counts connections.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("https://127.0.0.1:{}", trap.local_addr().unwrap().port());
    let managed =
        json!({"type": "ManagedIdentity", "clientId": stack.emu.ep("managedIdentityClientId")});
    let client_secret = json!({"type": "ClientSecret", "secretRef": {"name": "sp"}});
    stack.apply(&list(vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nf-template", "namespace": NS},
            "data": {"template.json": "{\"resources\":[]}"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sp", "namespace": NS},
            "stringData": {"tenantId": stack.emu.ep("tenantId"), "clientId": stack.emu.ep("clientId"),
                "clientSecret": stack.emu.client_secret()}}),
        // The stranger's ServiceAccount names the same Azure identity, but Entra has no
        // federated credential for its subject.
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "stranger", "namespace": NS,
            "annotations": {"azure.workload.identity/client-id": stack.emu.ep("clientId"),
                "azure.workload.identity/tenant-id": stack.emu.ep("tenantId")}}}),
        tenant_store(&stack, "borrowed", managed, json!({})),
        tenant_store(&stack, "redirected", client_secret, json!({"armEndpoint": trap_url})),
        tenant_store(&stack, "own", json!({"serviceAccountName": "publisher"}), json!({})),
        tenant_store(&stack, "stranger", json!({"serviceAccountName": "stranger"}), json!({})),
        tenant_push("borrow", "borrowed", "borrowed-template"),
        tenant_push("redirect", "redirected", "redirected-template"),
        tenant_push("own", "own", "own-template"),
        tenant_push("stranger", "stranger", "stranger-template"),
    ]));
    // What a pod with a managed identity has: the controller's ambient identity.
    let controller = stack.controller_with_env(
        "ctrl-0",
        &["--namespaced-store-endpoint-hosts", "localhost"],
        &[
            ("IDENTITY_ENDPOINT", stack.emu.ep("identityEndpoint")),
            ("IDENTITY_HEADER", stack.emu.ep("identityHeader")),
        ],
    );

    let (reason, message) = stack.wait_condition("borrow", "Stalled");
    assert_eq!(reason, "AmbientIdentityNotAllowed", "{message}");
    assert!(
        message.contains("serviceAccountName") && message.contains(&format!("{NS}/borrowed")),
        "the message says what to do: {message}"
    );
    let (reason, message) = stack.wait_condition("redirect", "Stalled");
    assert_eq!(reason, "EndpointNotAllowed", "{message}");
    assert!(
        message.contains("--namespaced-store-endpoint-hosts"),
        "{message}"
    );
    let (reason, message) = stack.wait_condition("own", "Stalled");
    assert_eq!(reason, "ServiceAccountNotFound", "{message}");
    let (reason, message) = stack.wait_condition("stranger", "Stalled");
    assert_eq!(reason, "Forbidden", "{message}");
    assert!(
        message.contains("AADSTS700213"),
        "Entra refused the subject: {message}"
    );
    for (store, want) in [
        ("borrowed", "AmbientIdentityNotAllowed"),
        ("redirected", "EndpointNotAllowed"),
    ] {
        let (reason, _) = wait_for(&format!("store {store} Stalled"), READY, || {
            store_condition(&stack, store, "Stalled")
        });
        assert_eq!(reason, want, "store {store}");
    }
    // Refused before any request left the controller.
    assert_eq!(
        tokens_issued(&stack, "managedIdentity"),
        0,
        "the controller's managed identity was asked for a token: {}",
        stack.emu.stats()
    );
    assert!(
        matches!(trap.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the controller connected to the endpoint the admin did not allow"
    );

    // The ServiceAccount appears: the store works with its own identity.
    stack.apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "publisher", "namespace": NS,
            "annotations": {"azure.workload.identity/client-id": stack.emu.ep("clientId"),
                "azure.workload.identity/tenant-id": stack.emu.ep("tenantId")}}}));
    let own = stack.wait_ready(&["own"]).remove(0);
    assert_eq!(status_str(&own, "artifactType"), "ArmTemplate");
    assert!(
        tokens_issued(&stack, "entraClientAssertion") >= 1,
        "the ServiceAccount's token was exchanged at Entra: {}",
        stack.emu.stats()
    );
    assert_eq!(tokens_issued(&stack, "managedIdentity"), 0);
    // The store itself is checked with its own identity too.
    wait_for("store own Ready", READY, || {
        store_condition(&stack, "own", "Ready")
    });
    let (reason, _) = wait_for("store stranger Stalled", READY, || {
        store_condition(&stack, "stranger", "Stalled")
    });
    assert_eq!(reason, "Forbidden");
    let logs = controller.terminate();
    assert!(logs.success(), "{logs}");
    assert_no_secrets(
        "the controller's log",
        &logs.stdout,
        &[&stack.emu.client_secret()],
    );
    assert_no_secrets(
        "the controller's log",
        &logs.stderr,
        &[&stack.emu.client_secret()],
    );

    // The admin opts in: the same store now authenticates as the controller.
    let opted_in = stack.controller_with_env(
        "ctrl-1",
        &[
            "--namespaced-store-endpoint-hosts",
            "localhost",
            "--namespaced-store-ambient-identity",
        ],
        &[
            ("IDENTITY_ENDPOINT", stack.emu.ep("identityEndpoint")),
            ("IDENTITY_HEADER", stack.emu.ep("identityHeader")),
        ],
    );
    stack.wait_ready(&["borrow"]);
    assert!(tokens_issued(&stack, "managedIdentity") >= 1);
    let (reason, _) = stack.wait_condition("redirect", "Stalled");
    assert_eq!(
        reason, "EndpointNotAllowed",
        "the host is still not allowed"
    );
    opted_in.terminate();
}

/// One namespace cannot hold every worker: with `--concurrency 2` and
/// `--max-concurrent-per-namespace 1`, two transfers of a namespace whose source hangs
/// take one worker; a transfer of another namespace still completes.
#[test]
fn one_namespace_cannot_hold_every_worker() {
    let stack = Stack::new(
        &[],
        &[
            ("stuck-a", "OCIArtifact", "1.0.0"),
            ("stuck-b", "OCIArtifact", "1.0.0"),
            ("free", "OCIArtifact", "1.0.0"),
        ],
    );
    let env = &stack.env;
    let src = Registry::start();
    let stuck = fixtures::push_image(
        env,
        &src,
        "contoso/stuck:1.0.0",
        &[2_000_000],
        Flavor::Oci,
        None,
    );
    let free = fixtures::push_image(
        env,
        &src,
        "contoso/free:1.0.0",
        &[50_000],
        Flavor::Oci,
        None,
    );
    // Every download of the stuck image's layer hangs after 64 KiB.
    let proxy = FaultProxy::start(&src, ProxyConfig::stall(&stuck.layers, 64 << 10));
    stack.kube.create_namespace("busy", &[]);
    let in_busy = |name: &str, artifact: &str| {
        let mut t = push(
            name,
            registry_source(&proxy.reference("contoso/stuck:1.0.0")),
            artifact,
            "1.0.0",
        );
        t["metadata"]["namespace"] = json!("busy");
        t
    };
    stack.apply(&list(vec![
        in_busy("stuck-a", "stuck-a"),
        in_busy("stuck-b", "stuck-b"),
    ]));
    let controller = stack.controller(
        "ctrl-0",
        &["--concurrency", "2", "--max-concurrent-per-namespace", "1"],
    );
    wait_for("one stalled download", READY, || {
        (proxy.stalled_now() >= 1).then_some(())
    });
    stack.apply(&push(
        "free",
        registry_source(&src.reference("contoso/free:1.0.0")),
        "free",
        "1.0.0",
    ));
    let ready = stack.wait_ready(&["free"]).remove(0);
    assert_eq!(status_str(&ready, "digest"), free.digest);
    assert_eq!(
        proxy.stalled_now(),
        1,
        "only one transfer of namespace busy may run at a time"
    );
    proxy.set_config(ProxyConfig::default());
    proxy.release_stalls();
    for name in ["stuck-a", "stuck-b"] {
        let out = stack
            .kubectl()
            .args(["wait", "--for=condition=Ready", "-n", "busy"])
            .arg(format!("--timeout={}s", READY.as_secs()))
            .arg(format!("artifacttransfer/{name}"))
            .run();
        assert!(
            out.success(),
            "{name} did not finish once the source recovered\n{out}"
        );
    }
    controller.terminate();
}

/// `oras push` of `files` (`name:mediatype` each, relative to `dir`) into the store as
/// `path`; returns the manifest digest.
fn oras_push_to_store(stack: &Stack, dir: &std::path::Path, path: &str, files: &[&str]) -> String {
    stack
        .env
        .tool("oras")
        .current_dir(dir)
        .args(["push", "--plain-http=false", "--ca-file"])
        .arg(stack.emu.ca_file())
        .arg(stack.emu.reference(path))
        .args(files)
        .ok();
    let out = stack.emu.crane_digest(&stack.env, path);
    out.assert_success();
    out.stdout.trim().to_string()
}

fn config_map(stack: &Stack, name: &str) -> Option<Value> {
    let out = stack
        .kubectl()
        .args(["get", "configmap", name, "-n", NS, "-o", "json"])
        .run();
    out.success()
        .then(|| serde_json::from_str(&out.stdout).expect("ConfigMap JSON"))
}

#[test]
fn pulls_a_template_into_an_owned_config_map_and_rewrites_it_only_when_the_digest_changes() {
    const TEMPLATE_TYPE: &str = "application/vnd.microsoft.azure.resource+json";
    let stack = Stack::new(
        &[],
        &[
            ("nf-template", "ArmTemplate", "1.0.0"),
            ("nf-blob", "OCIArtifact", "1.0.0"),
            ("contoso-cnf", "OCIArtifact", "1.0.0"),
        ],
    );
    let env = &stack.env;
    stack.login_store();
    let work = env.root().join("templates");
    std::fs::create_dir_all(&work).unwrap();
    let v1 = br#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "resources": []}"#;
    std::fs::write(work.join("template.json"), v1).unwrap();
    let first = oras_push_to_store(
        &stack,
        &work,
        "nf-template:1.0.0",
        &[&format!("template.json:{TEMPLATE_TYPE}")],
    );
    // Not UTF-8: it goes to binaryData.
    let binary: Vec<u8> = (0..=255u8).rev().cycle().take(3000).collect();
    std::fs::write(work.join("blob.bin"), &binary).unwrap();
    oras_push_to_store(&stack, &work, "nf-blob:1.0.0", &["blob.bin"]);
    // Two layers: not one file.
    stack
        .emu
        .crane_push_image(env, "contoso-cnf:1.0.0", &[1000, 2000]);

    let into_config_map = |name: &str, artifact: &str, cm: &str| {
        json!({"apiVersion": "artifacts.aosm.dev/v1alpha1", "kind": "ArtifactTransfer",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "source": {"artifactStore": {"storeRef": store_ref("contoso"), "manifest": MANIFEST,
                "artifact": artifact, "version": "1.0.0"}},
            "destination": {"configMap": {"name": cm, "key": "template.json"}},
            "interval": "10s",
        }})
    };
    // A ConfigMap of the user's own, named by a transfer: never taken over.
    stack.apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "users-own", "namespace": NS}, "data": {"keep": "me"}}));
    stack.apply(&list(vec![
        into_config_map("template", "nf-template", "nf-template"),
        into_config_map("binary", "nf-blob", "nf-blob"),
        into_config_map("two-layers", "contoso-cnf", "cnf"),
        into_config_map("foreign", "nf-template", "users-own"),
    ]));
    let controller = stack.controller("ctrl-0", &[]);
    let ready = stack.wait_ready(&["template", "binary"]);
    assert_eq!(status_str(&ready[0], "digest"), first);
    assert_eq!(
        status_str(&ready[0], "destinationRef"),
        "configmap/nf-template/template.json"
    );
    assert_eq!(status_str(&ready[0], "direction"), "Pull");
    let uid = ready[0]["metadata"]["uid"].as_str().unwrap().to_string();

    let cm = config_map(&stack, "nf-template").expect("the ConfigMap was created");
    assert_eq!(
        cm["data"]["template.json"].as_str().unwrap().as_bytes(),
        v1,
        "byte-exact"
    );
    assert_eq!(
        cm["metadata"]["annotations"]["artifacts.aosm.dev/digest"],
        first.as_str()
    );
    let owners = cm["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(owners.len(), 1, "{cm}");
    assert_eq!(owners[0]["uid"], uid.as_str());
    assert_eq!(owners[0]["kind"], "ArtifactTransfer");
    assert_eq!(owners[0]["controller"], true);
    let bin = config_map(&stack, "nf-blob").expect("created");
    assert!(bin["data"].is_null(), "{bin}");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(bin["binaryData"]["template.json"].as_str().unwrap())
            .unwrap(),
        binary
    );

    let (reason, message) = stack.wait_condition("two-layers", "Stalled");
    assert_eq!(reason, "NotASingleFile", "{message}");
    assert!(message.contains("it has 2 layers"), "{message}");
    assert!(config_map(&stack, "cnf").is_none());
    let (reason, message) = stack.wait_condition("foreign", "Stalled");
    assert_eq!(reason, "ConfigMapConflict", "{message}");
    let users = config_map(&stack, "users-own").unwrap();
    assert_eq!(users["data"], json!({"keep": "me"}), "untouched");
    assert!(users["metadata"]["ownerReferences"].is_null());

    // Re-checks while the store holds the same digest write nothing.
    let version = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let completed = status_str(&ready[0], "completedAt").to_string();
    wait_for("a re-check", READY, || {
        (status_str(&stack.transfer("template"), "completedAt") > completed.as_str()).then_some(())
    });
    assert_eq!(
        config_map(&stack, "nf-template").unwrap()["metadata"]["resourceVersion"],
        version.as_str(),
        "an unchanged digest is not written again"
    );

    // The debugging cycle: the template is edited and pushed again under the same version;
    // the next re-check brings it into the ConfigMap.
    let v2 = br#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "resources": [{"type": "Microsoft.Example/things"}]}"#;
    std::fs::write(work.join("template.json"), v2).unwrap();
    let second = oras_push_to_store(
        &stack,
        &work,
        "nf-template:1.0.0",
        &[&format!("template.json:{TEMPLATE_TYPE}")],
    );
    assert_ne!(first, second);
    let updated = wait_for("the ConfigMap to follow the store", READY, || {
        config_map(&stack, "nf-template").filter(|cm| {
            cm["metadata"]["annotations"]["artifacts.aosm.dev/digest"] == second.as_str()
        })
    });
    assert_eq!(
        updated["data"]["template.json"]
            .as_str()
            .unwrap()
            .as_bytes(),
        v2
    );
    wait_for("the status to follow", READY, || {
        (status_str(&stack.transfer("template"), "digest") == second).then_some(())
    });

    // Freeing the name lets the conflicting transfer go on (a ConfigMap re-check backs off
    // from 10 s).
    stack
        .kubectl()
        .args(["delete", "configmap", "users-own", "-n", NS])
        .ok();
    let freed = stack.wait_ready(&["foreign"]).remove(0);
    assert_eq!(status_str(&freed, "digest"), second);
    assert_eq!(
        config_map(&stack, "users-own").unwrap()["data"]["template.json"]
            .as_str()
            .unwrap()
            .as_bytes(),
        v2
    );
    controller.terminate();
}
