//! The transfer core against the AOSM emulator: pushes of an image, a Helm chart and an
//! ARM template into an artifact store, a pull out of it, the 2025-03-30 repository naming
//! and `updateState`. Every result is checked with independent tools (crane, skopeo,
//! helm, oras) through the emulator's CA with a scoped credential the test lists itself.

mod support;

use aosm_artifact_operator::engine::Credentials;
use aosm_artifact_operator::transfer::{Direction, FileSource, HelmSource, Reason, Source};
use serde_json::json;
use std::time::Instant;
use support::TestEnv;
use support::emulator::*;
use support::fixtures::{self, Flavor};
use support::registry::Registry;

trust_emulator_ca!();

const MIB: usize = 1024 * 1024;

#[test]
fn pushes_an_image_from_a_plain_registry_into_the_store() {
    let env = TestEnv::new();
    let src = Registry::start();
    // One layer above ACR's ~20 MB request limit, which the emulator's ACR front enforces
    // with 413: store uploads go in 16 MiB chunks, so no request meets it.
    let image = fixtures::push_image(
        &env,
        &src,
        "app/cnf:1.2.3",
        &[20 * MIB, 300 * 1024],
        Flavor::Oci,
        None,
    );
    let emu = Emulator::start(&[]);
    let m = "contoso-cnf-manifest";
    emu.create_acr_manifest(m, &[("contoso-cnf", "OCIArtifact", "1.0.0")]);

    let exec = executor();
    let outcome = run_ok(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.2.3"),
            emu.artifact(V2023, m, "contoso-cnf", "1.0.0"),
        ),
    );
    assert_eq!(outcome.direction, Direction::Push);
    assert_eq!(outcome.source_digest, image.digest);
    assert_eq!(outcome.digest, image.digest, "byte-exact: same digest");
    assert_eq!(outcome.artifact_type, "OCIArtifact");
    assert_eq!(outcome.destination_ref, emu.reference("contoso-cnf:1.0.0"));
    assert_eq!(outcome.summary.blobs_copied, 3, "{:?}", outcome.summary);
    let front = &emu.stats()["acrFront"];
    assert_eq!(
        front["tooLarge"], 0,
        "no upload request above the limit: {front}"
    );

    // Independent checks with the scoped credential.
    let cred = emu.list_credential(m, V2023);
    assert_eq!(cred.repositories, ["contoso-cnf"]);
    emu.login_tools(&env, &cred);
    let crane = emu.crane_digest(&env, "contoso-cnf:1.0.0");
    crane.assert_success();
    assert_eq!(crane.stdout.trim(), image.digest);
    let raw = emu.skopeo_raw(&env, "contoso-cnf:1.0.0");
    assert_eq!(raw, image.manifest, "skopeo reads the same manifest bytes");
    assert_eq!(support::sha256_digest(&raw), image.digest);
}

#[test]
fn pushes_a_helm_chart_from_an_http_repository_usable_by_helm_pull_oci() {
    let env = TestEnv::new();
    let repo = fixtures::helm_http_repo(&env, &[("contoso-chart", "0.1.0")], None);
    let chart = repo.charts[0].clone();
    let emu = Emulator::start(&[]);
    let m = "contoso-chart-manifest";
    emu.create_acr_manifest(m, &[("contoso-chart", "OCIArtifact", "0.1.0")]);

    let exec = executor();
    let outcome = run_ok(
        &exec,
        &push(
            Source::HelmRepository(HelmSource {
                url: repo.url(),
                chart: "contoso-chart".into(),
                version: "0.1.0".into(),
                credentials: Credentials::Anonymous,
                ca_pem: None,
                insecure: false,
            }),
            emu.artifact(V2023, m, "contoso-chart", "0.1.0"),
        ),
    );
    assert_eq!(outcome.direction, Direction::Push);
    assert_eq!(
        outcome.destination_ref,
        emu.reference("contoso-chart:0.1.0")
    );

    let cred = emu.list_credential(m, V2023);
    emu.login_tools(&env, &cred);
    let crane = emu.crane_digest(&env, "contoso-chart:0.1.0");
    crane.assert_success();
    assert_eq!(crane.stdout.trim(), outcome.digest);

    // helm itself: log in with the scoped credential and pull the chart over OCI.
    let ca = emu.ca_file().display().to_string();
    env.tool("helm")
        .args(["registry", "login", &emu.registry(), "--ca-file", &ca])
        .args(["--username", &cred.username, "--password-stdin"])
        .stdin(cred.token.clone())
        .ok();
    let out_dir = env.path("helm-pulled");
    std::fs::create_dir_all(&out_dir).unwrap();
    env.tool("helm")
        .arg("pull")
        .arg(format!("oci://{}", emu.reference("contoso-chart")))
        .args(["--version", "0.1.0", "--ca-file", &ca, "-d"])
        .arg(&out_dir)
        .ok();
    let pulled =
        std::fs::read(out_dir.join("contoso-chart-0.1.0.tgz")).expect("helm pull wrote the chart");
    assert_eq!(
        pulled,
        std::fs::read(&chart.tgz).unwrap(),
        "helm pulls the very .tgz the Helm repository serves"
    );
}

#[test]
fn pushes_an_arm_template_that_oras_pulls_back_byte_for_byte() {
    let env = TestEnv::new();
    let emu = Emulator::start(&[]);
    let m = "contoso-nf-manifest";
    emu.create_acr_manifest(m, &[("contoso-nf-template", "ArmTemplate", "1.0.0")]);
    let template = format!(
        "{{\"$schema\":\"https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#\",\
         \"contentVersion\":\"1.0.0.0\",\"resources\":[],\"nonce\":\"{}\"}}\n",
        hex::encode(fixtures::random_bytes(16))
    );

    let exec = executor();
    let outcome = run_ok(
        &exec,
        &push(
            Source::File(FileSource {
                name: "template.json".into(),
                media_type: "application/json".into(),
                data: template.clone().into_bytes(),
            }),
            emu.artifact(V2023, m, "contoso-nf-template", "1.0.0"),
        ),
    );
    assert_eq!(outcome.artifact_type, "ArmTemplate");

    let cred = emu.list_credential(m, V2023);
    emu.login_tools(&env, &cred);
    let out_dir = env.path("oras-pulled");
    std::fs::create_dir_all(&out_dir).unwrap();
    // oras talks plain HTTP to `localhost` unless told otherwise.
    env.tool("oras")
        .args(["pull", "--plain-http=false", "--ca-file"])
        .arg(emu.ca_file())
        .arg("-o")
        .arg(&out_dir)
        .arg(emu.reference("contoso-nf-template:1.0.0"))
        .ok();
    let pulled = std::fs::read(out_dir.join("template.json")).expect("oras wrote template.json");
    assert_eq!(String::from_utf8(pulled).unwrap(), template);
    let manifest = emu.skopeo_raw(&env, "contoso-nf-template:1.0.0");
    assert_eq!(support::sha256_digest(&manifest), outcome.digest);
    let v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(v["layers"][0]["mediaType"], "application/json", "{v}");
}

#[test]
fn pulls_from_the_store_into_a_local_registry() {
    let env = TestEnv::new();
    let emu = Emulator::start(&[]);
    let m = "contoso-cnf-manifest";
    emu.create_acr_manifest(m, &[("contoso-cnf", "OCIArtifact", "2.0.0")]);
    // The content is put into the store by crane, with the scoped credential.
    let cred = emu.list_credential(m, V2023);
    emu.login_tools(&env, &cred);
    let digest = emu.crane_push_image(&env, "contoso-cnf:2.0.0", &[3 * MIB, 4096]);

    let dst = Registry::start();
    let exec = executor();
    let outcome = run_ok(
        &exec,
        &pull(
            emu.artifact(V2023, m, "contoso-cnf", "2.0.0"),
            plain_side(&dst.host(), "mirror/cnf:2.0.0"),
        ),
    );
    assert_eq!(outcome.direction, Direction::Pull);
    assert_eq!(outcome.source_digest, digest);
    assert_eq!(outcome.digest, digest);
    assert_eq!(outcome.artifact_type, "OCIArtifact");
    assert_eq!(env.crane_digest(&dst, "mirror/cnf:2.0.0"), digest);
    assert_eq!(env.skopeo_digest(&dst, "mirror/cnf:2.0.0"), digest);
    // Every blob (config and two layers) came through ACR's 307 to the storage origin,
    // which never saw the registry credential.
    let front = &emu.stats()["acrFront"];
    assert!(front["blobRedirects"].as_u64() >= Some(3), "{front}");
    assert!(front["storageGets"].as_u64() >= Some(3), "{front}");
    assert_eq!(front["storageRefusedAuthorization"], 0, "{front}");
}

#[test]
fn api_version_2025_03_30_puts_artifacts_under_the_manifest_name() {
    let env = TestEnv::new();
    let src = Registry::start();
    let image = fixtures::push_image(
        &env,
        &src,
        "app/cnf:1.0",
        &[64 * 1024],
        Flavor::Docker,
        None,
    );
    let emu = Emulator::start(&[]);
    // A manifest name with capitals: repositories use it lowercased. Created with
    // 2025-03-30, its artifacts live under it, whatever api-version later requests use
    // (Microsoft's resource clean-up documentation).
    let m = "Contoso-CNF-Manifest";
    emu.create_store(PUBLISHER, STORE, "AzureContainerRegistry");
    emu.create_manifest_with(
        PUBLISHER,
        STORE,
        m,
        &[("contoso-cnf", "OCIArtifact", "1.0.0")],
        V2025,
    );

    let exec = executor();
    let outcome = run_ok(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2023, m, "contoso-cnf", "1.0.0"),
        ),
    );
    assert_eq!(outcome.digest, image.digest);
    assert_eq!(
        outcome.destination_ref,
        emu.reference("contoso-cnf-manifest/contoso-cnf:1.0.0")
    );

    let cred = emu.list_credential(m, V2024);
    assert_eq!(cred.repositories, ["contoso-cnf-manifest/contoso-cnf"]);
    emu.login_tools(&env, &cred);
    let crane = emu.crane_digest(&env, "contoso-cnf-manifest/contoso-cnf:1.0.0");
    crane.assert_success();
    assert_eq!(crane.stdout.trim(), image.digest);
    assert_eq!(
        support::sha256_digest(&emu.skopeo_raw(&env, "contoso-cnf-manifest/contoso-cnf:1.0.0")),
        image.digest
    );

    // A pull through 2025-03-30 finds the nested repository too.
    let dst = Registry::start();
    let pulled = run_ok(
        &exec,
        &pull(
            emu.artifact(V2025, m, "contoso-cnf", "1.0.0"),
            plain_side(&dst.host(), "mirror/cnf:1.0.0"),
        ),
    );
    assert_eq!(pulled.digest, image.digest);

    // A manifest created with 2023-09-01 keeps `<artifact>`, also through 2025-03-30.
    emu.create_manifest(
        PUBLISHER,
        STORE,
        "old-manifest",
        &[("old-cnf", "OCIArtifact", "1.0.0")],
    );
    let outcome = run_ok(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2025, "old-manifest", "old-cnf", "1.0.0"),
        ),
    );
    assert_eq!(outcome.destination_ref, emu.reference("old-cnf:1.0.0"));
}

/// `repositories` is a hint. Every official listCredential example answers `[""]`, and
/// `az aosm` pushes to `<artifact>` without reading it: with such an answer the transfer
/// tries `<artifact>` and the registry (which enforces the token's real scope) decides.
/// For a manifest created with 2023-09-01 that is right; for one created with 2025-03-30
/// the registry refuses, and the error names the repository tried and why.
#[test]
fn blank_repositories_fall_back_to_the_artifact_and_a_refusal_names_the_repository() {
    let src = Registry::start();
    let env = TestEnv::new();
    let image = fixtures::push_image(&env, &src, "app/cnf:1.0", &[4096], Flavor::Oci, None);
    let emu = Emulator::start(&[]);
    emu.set_config(json!({"credentialRepositoriesBlank": true}));
    emu.create_store(PUBLISHER, STORE, "AzureContainerRegistry");
    emu.create_manifest(
        PUBLISHER,
        STORE,
        "old-manifest",
        &[("cnf", "OCIArtifact", "1.0.0")],
    );
    emu.create_manifest_with(
        PUBLISHER,
        STORE,
        "new-manifest",
        &[("cnf", "OCIArtifact", "1.0.0")],
        V2025,
    );
    assert_eq!(
        emu.list_credential("old-manifest", V2023).repositories,
        [""]
    );

    let exec = executor();
    let outcome = run_ok(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2023, "old-manifest", "cnf", "1.0.0"),
        ),
    );
    assert_eq!(outcome.digest, image.digest);
    assert_eq!(outcome.destination_ref, emu.reference("cnf:1.0.0"));

    let err = run(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2025, "new-manifest", "cnf", "1.0.0"),
        ),
    )
    .expect_err("the token does not grant <artifact> for a 2025-03-30 manifest");
    eprintln!("[{}] {}", err.reason, err.message);
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    assert!(!err.is_transient());
    for needle in [
        "repository cnf on",
        "the listCredential answer's repositories ([\"\"]) name none for artifact cnf",
        "manifest new-manifest",
    ] {
        assert!(err.message.contains(needle), "should say {needle:?}: {err}");
    }
    assert!(!err.message.contains('\n'));
}

#[test]
fn mark_uploaded_follows_the_long_running_operation_and_the_store_becomes_pull_only() {
    let env = TestEnv::new();
    let src = Registry::start();
    let image = fixtures::push_image(&env, &src, "app/cnf:1.0", &[128 * 1024], Flavor::Oci, None);
    let emu = Emulator::start(&["--update-state-polls", "2"]);
    let m = "contoso-cnf-manifest";
    emu.create_acr_manifest(
        m,
        &[
            ("contoso-cnf", "OCIArtifact", "1.0.0"),
            ("contoso-cnf", "OCIArtifact", "1.0.1"),
        ],
    );
    let exec = executor();
    let store = emu.store_config(V2023);
    run_ok(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2023, m, "contoso-cnf", "1.0.0"),
        ),
    );
    assert_eq!(emu.manifest_state(m), "Uploading");

    let calls_before = emu.stats()["armCalls"].as_u64().unwrap();
    let started = Instant::now();
    support::rt::block_on(exec.mark_uploaded(&store, m))
        .unwrap_or_else(|e| panic!("mark_uploaded: {e}"));
    let elapsed = started.elapsed();
    let stats = emu.stats();
    assert_eq!(emu.manifest_state(m), "Uploaded");
    assert_eq!(stats["updateState"][format!("{STORE}/{m}")], 1, "{stats}");
    // POST (202) + two polls answering 202 + the final 200, each wait `Retry-After: 1`.
    let calls = stats["armCalls"].as_u64().unwrap() - calls_before;
    assert!(calls >= 4, "updateState took {calls} ARM calls: {stats}");
    assert!(
        elapsed.as_secs_f64() >= 2.9,
        "three Retry-After: 1 waits, yet mark_uploaded returned after {elapsed:?}"
    );

    // Uploaded: the credential grants pull only, so the registry refuses another push...
    let err = run(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2023, m, "contoso-cnf", "1.0.1"),
        ),
    )
    .expect_err("a push into an Uploaded manifest must fail");
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    assert!(!err.is_transient(), "{err}");
    // ...while pulls go on working.
    let dst = Registry::start();
    let pulled = run_ok(
        &exec,
        &pull(
            emu.artifact(V2023, m, "contoso-cnf", "1.0.0"),
            plain_side(&dst.host(), "mirror/cnf:1.0.0"),
        ),
    );
    assert_eq!(pulled.digest, image.digest);
}
