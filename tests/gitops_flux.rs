//! GitOps with real Flux: the unmodified source-controller and kustomize-controller
//! (built from their Go modules by `scripts/tools.sh`, run out of cluster) deliver
//! `examples/publish/` — pushed as a Flux OCI artifact with oras — through an
//! `OCIRepository` and a `Kustomization` with `wait: true`, next to the operator (a real
//! process), the AOSM emulator, a docker-registry holding the image and the artifact, and a
//! Helm HTTP repository holding the chart.
//!
//! What is asserted is the order of writes, read from a watch of every version of the
//! objects (`support::timeline`, resourceVersion order): Flux calls the Kustomization Ready
//! only at a resourceVersion where every transfer and the store were already Ready, also
//! when the operator starts after Flux applied everything; a `dependsOn` Kustomization
//! creates its objects only after that; a revision that names an artifact missing from the
//! manifest fails fast naming the object, and the next good revision recovers; `prune`
//! deletes a transfer removed from the revision and nothing else changes.
//!
//! Each test has its own stack; the two run at once.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::emulator::*;
use support::fixtures::{self, Flavor, HelmRepo};
use support::flux::{FLUX_NS, Flux, push_artifact};
use support::kube::KubeCluster;
use support::operator::{Controller, Placement};
use support::registry::Registry;
use support::timeline::{Seen, Timeline, Watched};
use support::{Cmd, TestEnv};

trust_emulator_ca!();

/// Upper bound for Flux + the operator to settle a revision on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(240);
const PUBLISH_NS: &str = "contoso-publish";
const SYSTEM_NS: &str = "aosm-system";
const MANIFEST: &str = "contoso-cnf-manifest";
/// The transfers of `examples/publish/`.
const TRANSFERS: [&str; 3] = [
    "contoso-cnf-container",
    "contoso-chart",
    "contoso-cnf-template",
];
const STORE_OBJECT: &str = "contoso";
/// The Kustomization of `examples/publish/` and the one that depends on it.
const PUBLISH: &str = "contoso-publish";
const CNF: &str = "contoso-cnf";
/// The ConfigMap the dependent Kustomization creates (stands for the CNF's deployment).
const CNF_OBJECT: &str = "contoso-cnf-values";
const ARTIFACT_REPO: &str = "flux/cnf-publish";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a pushed revision of the Git-like content holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Content {
    /// `examples/publish/` as it is (endpoints pointed at this stack).
    Publish,
    /// The image transfer names an artifact the manifest does not list.
    MissingArtifact,
    /// The chart transfer removed from the kustomization.
    WithoutChart,
}

struct GitOps {
    env: TestEnv,
    kube: KubeCluster,
    emu: Emulator,
    reg: Registry,
    helm: HelmRepo,
    flux: Flux,
    timeline: Timeline,
    operator: Option<Controller>,
    pushes: usize,
}

impl GitOps {
    /// Everything but the operator: cluster + CRDs, emulator with the manifest of the
    /// example, the image in the registry, the chart in the Helm repository, the store's
    /// Secret, Flux, and a timeline of transfers, stores, Kustomizations and ConfigMaps.
    fn new() -> GitOps {
        let env = TestEnv::new();
        let kube = KubeCluster::start();
        kube.apply_crds();
        kube.create_namespace(SYSTEM_NS, &[]);
        let emu = Emulator::start(&[]);
        emu.create_acr_manifest(
            MANIFEST,
            &[
                ("contoso-cnf-container", "OCIArtifact", "1.0.0"),
                ("contoso-cnf-template", "ArmTemplate", "1.0.0"),
                ("contoso-chart", "OCIArtifact", "1.0.0"),
            ],
        );
        let reg = Registry::start();
        fixtures::push_image(
            &env,
            &reg,
            "contoso/cnf:1.0.0",
            &[4096, 8192],
            Flavor::Oci,
            None,
        );
        let helm = fixtures::helm_http_repo(&env, &[("contoso-chart", "1.0.0")], None);
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "contoso-sp", "namespace": SYSTEM_NS},
            "stringData": {"tenantId": emu.ep("tenantId"), "clientId": emu.ep("clientId"),
                "clientSecret": emu.client_secret()}});
        kube.kubectl_cmd()
            .args(["apply", "-f", "-"])
            .stdin(secret.to_string())
            .ok();
        let flux = Flux::start(&kube, &env.path("flux"));
        let timeline = Timeline::start(
            &kube,
            &[
                Watched {
                    group: "artifacts.aosm.dev",
                    version: "v1alpha1",
                    kind: "ArtifactTransfer",
                    plural: "artifacttransfers",
                    namespace: None,
                },
                Watched {
                    group: "artifacts.aosm.dev",
                    version: "v1alpha1",
                    kind: "ClusterArtifactStore",
                    plural: "clusterartifactstores",
                    namespace: None,
                },
                Watched {
                    group: "kustomize.toolkit.fluxcd.io",
                    version: "v1",
                    kind: "Kustomization",
                    plural: "kustomizations",
                    namespace: Some(FLUX_NS),
                },
                Watched {
                    group: "",
                    version: "v1",
                    kind: "ConfigMap",
                    plural: "configmaps",
                    namespace: Some(PUBLISH_NS),
                },
            ],
        );
        GitOps {
            env,
            kube,
            emu,
            reg,
            helm,
            flux,
            timeline,
            operator: None,
            pushes: 0,
        }
    }

    fn start_operator(&mut self) {
        let ca = self.emu.ca_file();
        let at = Placement {
            kubeconfig: self.kube.kubeconfig_path(),
            ca_file: &ca,
            namespace: SYSTEM_NS,
        };
        self.operator = Some(Controller::start(&self.env, &at, "operator-0", &[], &[]));
    }

    fn kubectl(&self) -> Cmd {
        self.kube.kubectl_cmd()
    }

    /// The content of one revision: `publish/` (the example, its endpoints pointed at this
    /// stack) and `cnf/` (what the dependent Kustomization applies).
    fn content(&self, what: Content, dir: &Path) {
        let publish = dir.join("publish");
        std::fs::create_dir_all(&publish).expect("content dir");
        let example = root().join("examples/publish");
        for entry in std::fs::read_dir(&example).expect("read examples/publish") {
            let path = entry.expect("a dir entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .to_string();
            let text = std::fs::read_to_string(&path).expect("read an example file");
            let text = match name.as_str() {
                "store.yaml" => self.point_store(&text),
                "image.yaml" => {
                    let t = replace_one(
                        &text,
                        "image: 127.0.0.1:15000/",
                        &format!("image: {}/", self.reg.host()),
                    );
                    if what == Content::MissingArtifact {
                        replace_one(
                            &t,
                            "artifact: contoso-cnf-container",
                            "artifact: contoso-cnf-missing",
                        )
                    } else {
                        t
                    }
                }
                "chart.yaml" => replace_one(
                    &text,
                    "url: http://127.0.0.1:18879/charts",
                    &format!("url: {}", self.helm.url()),
                ),
                "kustomization.yaml" if what == Content::WithoutChart => {
                    replace_one(&text, "  - chart.yaml\n", "")
                }
                _ => text,
            };
            std::fs::write(publish.join(&name), text).expect("write a content file");
        }
        let cnf = dir.join("cnf");
        std::fs::create_dir_all(&cnf).expect("cnf dir");
        std::fs::write(
            cnf.join("values.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {CNF_OBJECT}\n  namespace: {PUBLISH_NS}\n\
                 data:\n  image: contoso-cnf-container:1.0.0\n"
            ),
        )
        .expect("write cnf/values.yaml");
    }

    /// The example's store, pointed at this emulator and its store.
    fn point_store(&self, text: &str) -> String {
        let mut out = replace_one(
            text,
            "subscriptionId: 00000000-0000-0000-0000-000000000001",
            &format!("subscriptionId: {SUB}"),
        );
        out = replace_one(
            &out,
            "artifactStore: contoso-cnf-store",
            &format!("artifactStore: {STORE}"),
        );
        out = replace_one(
            &out,
            "armEndpoint: https://127.0.0.1:18443",
            &format!("armEndpoint: {}", self.emu.ep("armEndpoint")),
        );
        replace_one(
            &out,
            "authorityHost: https://127.0.0.1:18443",
            &format!("authorityHost: {}", self.emu.ep("authorityHost")),
        )
    }

    /// Pushes a revision as the artifact's `latest` tag and asks Flux to look now (as
    /// `flux reconcile source oci` does); returns the revision Flux will report.
    fn publish(&mut self, what: Content) -> String {
        self.pushes += 1;
        let dir = self.env.path(&format!("content/{}", self.pushes));
        self.content(what, &dir);
        let digest = push_artifact(
            &self.env,
            &self.reg,
            ARTIFACT_REPO,
            "latest",
            &dir,
            &format!("rev{}", self.pushes),
        );
        if self.pushes > 1 {
            self.kubectl()
                .args([
                    "annotate",
                    "--overwrite",
                    "-n",
                    FLUX_NS,
                    "ocirepository/cnf-publish",
                ])
                .arg(format!(
                    "reconcile.fluxcd.io/requestedAt=push-{}",
                    self.pushes
                ))
                .ok();
        }
        format!("latest@{digest}")
    }

    /// The OCIRepository and the two Kustomizations, as a user would apply them.
    fn apply_flux_objects(&self) {
        let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
             "metadata": {"name": "cnf-publish", "namespace": FLUX_NS},
             "spec": {"interval": "10m", "url": format!("oci://{}", self.reg.reference(ARTIFACT_REPO)),
                      "ref": {"tag": "latest"}, "insecure": true}},
            {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
             "metadata": {"name": PUBLISH, "namespace": FLUX_NS},
             "spec": {"interval": "10m", "retryInterval": "5s", "timeout": "3m",
                      "sourceRef": {"kind": "OCIRepository", "name": "cnf-publish"},
                      "path": "./publish", "prune": true, "wait": true}},
            {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
             "metadata": {"name": CNF, "namespace": FLUX_NS},
             "spec": {"interval": "10m", "retryInterval": "5s", "timeout": "3m",
                      "dependsOn": [{"name": PUBLISH}],
                      "sourceRef": {"kind": "OCIRepository", "name": "cnf-publish"},
                      "path": "./cnf", "prune": true, "wait": true}},
        ]});
        self.kubectl()
            .args(["apply", "-f", "-"])
            .stdin(objects.to_string())
            .ok();
    }

    /// Waits until the timeline holds a version of `kind`/`name` for which `pred` holds;
    /// returns the first such version. On timeout, fails with the whole story.
    fn wait_seen(
        &mut self,
        what: &str,
        kind: &str,
        name: &str,
        pred: impl Fn(&Seen) -> bool,
    ) -> Seen {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(seen) = self.timeline.first(kind, name, &pred) {
                return seen;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {SETTLE:?} waiting for {what}\n{}",
                    self.diagnostics()
                );
            }
            self.flux.assert_running();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for Flux to report `Ready=<ready>` on Kustomization `name` for `revision`.
    fn wait_kustomization(&mut self, name: &str, revision: &str, ready: &str) -> Seen {
        let field = if ready == "True" {
            "lastAppliedRevision"
        } else {
            "lastAttemptedRevision"
        };
        self.wait_seen(
            &format!("Kustomization {name} Ready={ready} for {revision}"),
            "Kustomization",
            name,
            |s| {
                s.object["status"][field] == revision
                    && s.condition_status("Ready") == ready
                    && s.object["status"]["observedGeneration"]
                        == s.object["metadata"]["generation"]
            },
        )
    }

    /// The version of `kind`/`name` current at resourceVersion `rv`.
    fn at(&self, kind: &str, name: &str, rv: u64) -> Option<Seen> {
        self.timeline
            .all()
            .into_iter()
            .rev()
            .find(|s| s.kind == kind && s.name == name && s.rv <= rv)
    }

    /// At resourceVersion `rv`, `kind`/`name` was Ready for its current generation.
    fn assert_ready_at(&self, kind: &str, name: &str, rv: u64, why: &str) -> Seen {
        let seen = self.at(kind, name, rv).unwrap_or_else(|| {
            panic!(
                "{kind}/{name} did not exist at rv {rv} ({why})\n{}",
                self.diagnostics()
            )
        });
        assert!(
            seen.is("Ready")
                && seen.object["status"]["observedGeneration"]
                    == seen.object["metadata"]["generation"],
            "{kind}/{name} was not Ready at rv {rv}, {why}: {}\n{}",
            seen.line(),
            self.diagnostics()
        );
        seen
    }

    fn diagnostics(&self) -> String {
        let mut names: Vec<&str> = TRANSFERS.to_vec();
        names.extend([
            STORE_OBJECT,
            PUBLISH,
            CNF,
            CNF_OBJECT,
            "contoso-cnf-missing",
        ]);
        let kustomizations = self
            .kubectl()
            .args([
                "get",
                "kustomizations,ocirepositories",
                "-n",
                FLUX_NS,
                "-o",
                "yaml",
            ])
            .run();
        let operator = self
            .operator
            .as_ref()
            .map(|_| "(operator running; its log is printed when it exits)")
            .unwrap_or("(operator not started)");
        format!(
            "--- timeline\n{}\n--- Flux objects\n{}\n--- {operator}\n{}",
            self.timeline.story(&names),
            kustomizations.stdout,
            self.flux.logs(40)
        )
    }

    /// `kubectl get` of a transfer as JSON, or None when it does not exist.
    fn transfer(&self, name: &str) -> Option<Value> {
        let out = self
            .kubectl()
            .args([
                "get",
                "artifacttransfer",
                name,
                "-n",
                PUBLISH_NS,
                "-o",
                "json",
            ])
            .run();
        out.success()
            .then(|| serde_json::from_str(&out.stdout).expect("transfer JSON"))
    }

    /// The digest of `artifact:1.0.0` in the AOSM store (crane, with a scoped credential).
    fn store_digest(&self, artifact: &str) -> String {
        let cred = self.emu.list_credential(MANIFEST, V2023);
        self.emu.login_tools(&self.env, &cred);
        let out = self
            .emu
            .crane_digest(&self.env, &format!("{artifact}:1.0.0"));
        out.assert_success();
        out.stdout.trim().to_string()
    }
}

/// `text` with its only occurrence of `from` replaced (fails if there is not exactly one:
/// the example changed, and this test must follow).
fn replace_one(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected exactly one `{from}` in an examples/publish/ file:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The `dependsOn` Kustomization applied its ConfigMap only after [`PUBLISH`] was Ready
/// (`publish_ready`), and became Ready for `revision` itself after that.
fn assert_dependent_applied_after(g: &mut GitOps, revision: &str, publish_ready: &Seen) {
    let cnf_ready = g.wait_kustomization(CNF, revision, "True");
    let created = g
        .timeline
        .first("ConfigMap", CNF_OBJECT, |_| true)
        .expect("the dependent Kustomization created its ConfigMap");
    assert!(
        created.rv > publish_ready.rv && created.rv < cnf_ready.rv,
        "{CNF_OBJECT} created at rv {} must come after {PUBLISH} Ready (rv {}) and before {CNF} Ready (rv {})\n{}",
        created.rv,
        publish_ready.rv,
        cnf_ready.rv,
        g.diagnostics()
    );
}

/// The Kustomization became Ready for `revision` only after every transfer and the store
/// were Ready; returns its Ready version.
fn assert_flux_waited_for_the_artifacts(
    g: &mut GitOps,
    revision: &str,
    transfers: &[&str],
) -> Seen {
    let ready = g.wait_kustomization(PUBLISH, revision, "True");
    for t in transfers {
        g.assert_ready_at(
            "ArtifactTransfer",
            t,
            ready.rv,
            "when Flux called the Kustomization Ready",
        );
    }
    g.assert_ready_at(
        "ClusterArtifactStore",
        STORE_OBJECT,
        ready.rv,
        "when Flux called the Kustomization Ready",
    );
    ready
}

#[test]
fn flux_waits_for_the_transfers_fails_fast_on_a_bad_revision_recovers_and_prunes() {
    let mut g = GitOps::new();
    g.start_operator();
    let rev1 = g.publish(Content::Publish);
    g.apply_flux_objects();

    // Ready only once every artifact is in the store.
    let ready = assert_flux_waited_for_the_artifacts(&mut g, &rev1, &TRANSFERS);
    let message = ready.condition("Ready").expect("Ready")["message"].clone();
    assert_eq!(
        message,
        format!("Applied revision: {rev1}"),
        "{}",
        ready.line()
    );
    for artifact in [
        "contoso-cnf-container",
        "contoso-chart",
        "contoso-cnf-template",
    ] {
        let digest = g.store_digest(artifact);
        assert!(digest.starts_with("sha256:"), "{artifact}: {digest}");
    }

    // The dependent Kustomization applied its objects only after that.
    assert_dependent_applied_after(&mut g, &rev1, &ready);

    // A revision naming an artifact the manifest does not list: the transfer stalls and
    // Flux gives up early, naming the object (not after its 3m timeout).
    let rev2 = g.publish(Content::MissingArtifact);
    let failed = g.wait_kustomization(PUBLISH, &rev2, "False");
    let failure = failed.condition("Ready").expect("Ready").clone();
    let text = failure["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("failed early due to stalled resources")
            && text.contains("ArtifactTransfer/contoso-publish/contoso-cnf-container"),
        "Flux's message must say the transfer stalled: {failure}"
    );
    assert_eq!(failure["reason"], "HealthCheckFailed", "{failure}");
    eprintln!("Flux on a revision naming an artifact not in the manifest: {failure}");
    // The reason and message live on the transfer (kubectl describe / get -o yaml).
    let t = g.transfer("contoso-cnf-container").expect("the transfer");
    let stalled = t["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Stalled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(stalled["reason"], "ArtifactNotInManifest", "{t}");
    let describe = g
        .kubectl()
        .args([
            "describe",
            "artifacttransfer",
            "contoso-cnf-container",
            "-n",
            PUBLISH_NS,
        ])
        .ok();
    assert!(
        describe.stdout.contains("ArtifactNotInManifest"),
        "{describe}"
    );

    // The good revision again: Ready again, after the transfer is.
    let rev3 = g.publish(Content::Publish);
    let recovered = assert_flux_waited_for_the_artifacts(&mut g, &rev3, &TRANSFERS);
    assert!(recovered.rv > failed.rv);

    // prune: a revision without the chart's transfer deletes that object only; the
    // artifact stays in the store and everything else stays Ready.
    let chart_digest = g.store_digest("contoso-chart");
    let rev4 = g.publish(Content::WithoutChart);
    let pruned = assert_flux_waited_for_the_artifacts(
        &mut g,
        &rev4,
        &["contoso-cnf-container", "contoso-cnf-template"],
    );
    assert!(
        g.transfer("contoso-chart").is_none(),
        "contoso-chart was not pruned"
    );
    assert_eq!(
        g.store_digest("contoso-chart"),
        chart_digest,
        "the store's chart changed"
    );
    let still = g.wait_kustomization(CNF, &rev4, "True");
    assert!(still.rv > pruned.rv);
    let operator = g.operator.take().expect("the operator").terminate();
    assert!(
        operator.success(),
        "the operator did not exit cleanly\n{operator}"
    );
}

#[test]
fn flux_waits_for_an_operator_that_starts_after_the_objects_were_applied() {
    let mut g = GitOps::new();
    let rev1 = g.publish(Content::Publish);
    g.apply_flux_objects();

    // Flux applied everything and is waiting: every object reads as not yet observed.
    let checking = format!("Running health checks for revision {rev1}");
    let waiting = g.wait_seen(
        "Flux to apply the revision and run its health checks",
        "Kustomization",
        PUBLISH,
        |s| {
            s.condition_status("Healthy") == "Unknown"
                && s.condition("Healthy")
                    .and_then(|c| c["message"].as_str())
                    .is_some_and(|m| m.starts_with(&checking))
        },
    );
    for t in TRANSFERS {
        let seen = g.at("ArtifactTransfer", t, waiting.rv).unwrap_or_else(|| {
            panic!(
                "Flux had not applied {t} when it started waiting\n{}",
                g.diagnostics()
            )
        });
        assert_eq!(
            seen.object["status"],
            json!({"observedGeneration": 0}),
            "{}",
            seen.line()
        );
    }
    assert!(
        g.timeline
            .first("Kustomization", PUBLISH, |s| s.is("Ready"))
            .is_none(),
        "Flux called the Kustomization Ready before the operator ran\n{}",
        g.diagnostics()
    );
    assert!(
        g.timeline
            .first("ConfigMap", CNF_OBJECT, |_| true)
            .is_none()
    );

    g.start_operator();
    let ready = assert_flux_waited_for_the_artifacts(&mut g, &rev1, &TRANSFERS);
    assert_dependent_applied_after(&mut g, &rev1, &ready);
    // The order of events, for the record (the test log and docs/gitops.md).
    let mut names: Vec<&str> = TRANSFERS.to_vec();
    names.extend([STORE_OBJECT, PUBLISH, CNF, CNF_OBJECT]);
    eprintln!(
        "order of events, operator started late:\n{}",
        g.timeline.story(&names)
    );
}
