//! Permanent failures of store transfers: each has its own reason and a message that
//! names what to fix and never carries a secret; and the registry itself enforces the
//! scope of a manifest's credential when our validation is bypassed.

mod support;

use aosm_artifact_operator::aosm::Identity;
use aosm_artifact_operator::engine::{
    Credentials, ImageRef, NoProgress, RegistryClient, RegistryOptions, Secret, TransferOptions,
};
use aosm_artifact_operator::transfer::{
    FileSource, HelmSource, Reason, Source, StoreSide, TransferError,
};
use std::sync::Arc;
use support::TestEnv;
use support::emulator::*;
use support::fixtures::{self, Flavor};
use support::registry::Registry;

trust_emulator_ca!();

fn template() -> Source {
    Source::File(FileSource {
        name: "template.json".into(),
        media_type: "application/json".into(),
        data: b"{\"resources\":[]}".to_vec(),
    })
}

/// The error of a transfer that must fail permanently with `reason`; checks that its
/// message is one line and holds none of `secrets` (nor any token).
#[track_caller]
fn permanent(
    result: Result<impl std::fmt::Debug, TransferError>,
    reason: Reason,
    secrets: &[&str],
) -> TransferError {
    let err = result.expect_err("the transfer must fail");
    assert_eq!(err.reason, reason, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(!err.message.contains('\n'), "one line: {err}");
    assert_no_secrets("the error message", &err.to_string(), secrets);
    assert_no_secrets("the error's Debug form", &format!("{err:?}"), secrets);
    eprintln!("[{reason}] {}", err.message);
    err
}

#[test]
fn artifact_not_in_manifest_is_refused_before_any_credential_is_listed() {
    let emu = Emulator::start(&["--no-registry"]);
    let m = "contoso-nf-manifest";
    emu.create_acr_manifest(m, &[("contoso-nf-template", "ArmTemplate", "1.0.0")]);
    let exec = executor();
    let secret = emu.client_secret();

    // Another name.
    let err = permanent(
        run(
            &exec,
            &push(template(), emu.artifact(V2023, m, "contoso-other", "1.0.0")),
        ),
        Reason::ArtifactNotInManifest,
        &[&secret],
    );
    assert!(
        err.message.contains("contoso-other"),
        "names the artifact: {err}"
    );
    assert!(err.message.contains(m), "names the manifest: {err}");
    assert!(
        err.message.contains("contoso-nf-template:1.0.0"),
        "says what the manifest lists: {err}"
    );
    // A version the manifest does not list.
    let err = permanent(
        run(
            &exec,
            &push(
                template(),
                emu.artifact(V2023, m, "contoso-nf-template", "1.0.1"),
            ),
        ),
        Reason::ArtifactNotInManifest,
        &[&secret],
    );
    assert!(err.message.contains("contoso-nf-template:1.0.1"), "{err}");
    // A pull of an unlisted artifact is refused the same way.
    let err = permanent(
        run(
            &exec,
            &pull(
                emu.artifact(V2023, m, "contoso-other", "1.0.0"),
                plain_side("127.0.0.1:9", "mirror/x:1.0.0"),
            ),
        ),
        Reason::ArtifactNotInManifest,
        &[&secret],
    );
    assert!(err.message.contains("contoso-other"), "{err}");
    assert_eq!(
        emu.list_credential_count(m),
        0,
        "no credential is listed for an artifact the manifest does not hold"
    );
}

#[test]
fn a_version_that_is_not_a_b_c_is_refused_without_calling_arm() {
    let emu = Emulator::start(&["--no-registry"]);
    let m = "contoso-nf-manifest";
    emu.create_acr_manifest(m, &[("contoso-nf-template", "ArmTemplate", "1.0.0")]);
    let calls = emu.stats()["armCalls"].as_u64().unwrap();
    let exec = executor();
    for bad in ["1.0", "v1.0.0", "1.0.0-rc1"] {
        let err = permanent(
            run(
                &exec,
                &push(
                    template(),
                    emu.artifact(V2023, m, "contoso-nf-template", bad),
                ),
            ),
            Reason::VersionFormat,
            &[&emu.client_secret()],
        );
        assert!(err.message.contains(bad), "quotes the version: {err}");
        assert!(err.message.contains("1.0.0"), "shows the format: {err}");
    }
    assert_eq!(
        emu.stats()["armCalls"].as_u64().unwrap(),
        calls,
        "a malformed version is refused before any ARM call"
    );
}

#[test]
fn a_chart_whose_name_differs_from_the_artifact_is_refused() {
    let env = TestEnv::new();
    let repo = fixtures::helm_http_repo(&env, &[("other-chart", "0.1.0")], None);
    let emu = Emulator::start(&["--no-registry"]);
    let m = "contoso-chart-manifest";
    emu.create_acr_manifest(m, &[("contoso-chart", "OCIArtifact", "0.1.0")]);
    let exec = executor();
    let err = permanent(
        run(
            &exec,
            &push(
                Source::HelmRepository(HelmSource {
                    url: repo.url(),
                    chart: "other-chart".into(),
                    version: "0.1.0".into(),
                    credentials: Credentials::Anonymous,
                    ca_pem: None,
                    insecure: false,
                }),
                emu.artifact(V2023, m, "contoso-chart", "0.1.0"),
            ),
        ),
        Reason::ChartNameMismatch,
        &[&emu.client_secret()],
    );
    assert!(
        err.message.contains("other-chart") && err.message.contains("contoso-chart"),
        "names both the chart and the artifact: {err}"
    );
    assert_eq!(emu.list_credential_count(m), 0);
}

#[test]
fn a_store_that_does_not_exist_is_store_not_found() {
    let emu = Emulator::start(&["--no-registry"]);
    let m = "contoso-nf-manifest";
    emu.create_acr_manifest(m, &[("contoso-nf-template", "ArmTemplate", "1.0.0")]);
    let exec = executor();
    let secret = emu.client_secret();

    let wrong_store = store_artifact(
        emu.store_config_for(PUBLISHER, "no-such-store", V2023),
        m,
        "contoso-nf-template",
        "1.0.0",
    );
    let err = permanent(
        run(&exec, &push(template(), wrong_store)),
        Reason::StoreNotFound,
        &[&secret],
    );
    assert!(
        err.message.contains("no-such-store"),
        "names the store: {err}"
    );

    let err = permanent(
        run(
            &exec,
            &push(
                template(),
                emu.artifact(V2023, "no-such-manifest", "contoso-nf-template", "1.0.0"),
            ),
        ),
        Reason::StoreNotFound,
        &[&secret],
    );
    assert!(
        err.message.contains("no-such-manifest"),
        "names the manifest: {err}"
    );
}

#[test]
fn a_wrong_client_secret_is_forbidden_and_never_echoed() {
    let emu = Emulator::start(&["--no-registry"]);
    let m = "contoso-nf-manifest";
    emu.create_acr_manifest(m, &[("contoso-nf-template", "ArmTemplate", "1.0.0")]);
    let exec = executor();
    let wrong = format!("wrong-secret-{}", hex::encode(fixtures::random_bytes(12)));
    let artifact = with_secret(
        emu.artifact(V2023, m, "contoso-nf-template", "1.0.0"),
        &wrong,
    );
    let err = permanent(
        run(&exec, &push(template(), artifact)),
        Reason::Forbidden,
        &[&wrong, &emu.client_secret()],
    );
    assert!(
        err.message.contains(&emu.ep("clientId")),
        "names the identity that failed: {err}"
    );
    assert_eq!(emu.list_credential_count(m), 0);
    assert!(emu.stats()["entraRefusals"].as_u64().unwrap() >= 1);
}

#[test]
fn the_registry_itself_refuses_repositories_outside_the_manifest_scope() {
    let env = TestEnv::new();
    let emu = Emulator::start(&[]);
    let (a, b) = ("manifest-a", "manifest-b");
    emu.create_acr_manifest(a, &[("cnf-a", "OCIArtifact", "1.0.0")]);
    emu.create_manifest(PUBLISHER, STORE, b, &[("cnf-b", "OCIArtifact", "1.0.0")]);
    let cred_a = emu.list_credential(a, V2023);
    assert_eq!(cred_a.repositories, ["cnf-a"]);

    // crane with A's credential: inside the scope it works...
    emu.login_tools(&env, &cred_a);
    emu.crane_push_image(&env, "cnf-a:1.0.0", &[4096]);
    // ...outside it the registry refuses.
    let tar = fixtures::random_tar(&env, "outside.tar", 4096);
    let out = env
        .tool("crane")
        .args(["append", "--oci-empty-base", "-f"])
        .arg(&tar)
        .args(["-t", &emu.reference("cnf-b:1.0.0")])
        .run();
    assert!(!out.success(), "a push outside the scope must fail\n{out}");
    let stderr = out.stderr.to_ascii_lowercase();
    assert!(
        stderr.contains("unauthorized") || stderr.contains("denied") || stderr.contains("401"),
        "refused by the registry's authorization\n{out}"
    );

    // Our validation refuses the artifact up front...
    let exec = executor();
    let src = Registry::start();
    fixtures::push_image(&env, &src, "app/cnf:1.0", &[8192], Flavor::Oci, None);
    permanent(
        run(
            &exec,
            &push(
                registry_source(&src, "app/cnf:1.0"),
                emu.artifact(V2023, a, "cnf-b", "1.0.0"),
            ),
        ),
        Reason::ArtifactNotInManifest,
        &[&cred_a.token],
    );
    // ...and with the validation bypassed (the engine driven directly with A's credential),
    // the registry refuses it by itself, with a clear error.
    let options = RegistryOptions {
        credentials: Credentials::basic(&cred_a.username, &cred_a.token),
        ..Default::default()
    };
    let dst = aosm_artifact_operator::engine::Endpoint {
        client: Arc::new(RegistryClient::new(&emu.registry(), &options).unwrap()),
        reference: ImageRef::parse(&emu.reference("cnf-b:1.0.0")).unwrap(),
    };
    let src_ep = aosm_artifact_operator::engine::Endpoint {
        client: Arc::new(
            RegistryClient::new(
                &src.host(),
                &RegistryOptions {
                    plain_http: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        reference: ImageRef::parse(&src.reference("app/cnf:1.0")).unwrap(),
    };
    let result = support::rt::block_on(aosm_artifact_operator::engine::copy(
        &src_ep,
        &dst,
        &TransferOptions::default(),
        &NoProgress,
    ));
    let engine_err = result.expect_err("the registry must refuse a repository outside the scope");
    let err = TransferError::from(engine_err);
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    assert!(
        err.message.contains(&emu.registry()),
        "names the registry: {err}"
    );
    assert_no_secrets("the error message", &err.to_string(), &[&cred_a.token]);
    eprintln!("[registry refusal] {err}");

    // Nothing was written under cnf-b: B's own credential finds no such manifest.
    let cred_b = emu.list_credential(b, V2023);
    emu.login_tools(&env, &cred_b);
    let out = emu.crane_digest(&env, "cnf-b:1.0.0");
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("MANIFEST_UNKNOWN") || out.stderr.contains("NAME_UNKNOWN"),
        "{out}"
    );
}

fn with_secret(mut artifact: StoreSide, secret: &str) -> StoreSide {
    let Identity::ClientSecret { client_secret, .. } = &mut artifact.store.identity else {
        unreachable!("the test stores use a client secret")
    };
    *client_secret = Secret::new(secret);
    artifact
}

/// Store configs that differ only in the client secret (whose Debug form is `***`) must
/// not share an ARM client or its Entra token.
#[test]
fn each_store_config_authenticates_with_its_own_client_secret_on_a_shared_executor() {
    let emu = Emulator::start(&["--no-registry"]);
    let m = "contoso-nf-manifest";
    emu.create_acr_manifest(
        m,
        &[
            ("contoso-nf-template", "ArmTemplate", "1.0.0"),
            ("contoso-nf-template", "ArmTemplate", "1.0.1"),
        ],
    );
    let wrong = "wrong-secret-0123456789abcdef";

    // A wrong secret first, then the corrected one (a rotated / fixed Secret): the
    // correction must take effect on the same executor.
    let exec = executor();
    let err = run(
        &exec,
        &push(
            template(),
            with_secret(
                emu.artifact(V2023, m, "contoso-nf-template", "1.0.0"),
                wrong,
            ),
        ),
    )
    .expect_err("wrong secret");
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    // (--no-registry: the push itself cannot succeed, but it must get past ARM.)
    let err = run(
        &exec,
        &push(
            template(),
            emu.artifact(V2023, m, "contoso-nf-template", "1.0.0"),
        ),
    )
    .expect_err("no registry");
    assert_ne!(
        err.reason,
        Reason::Forbidden,
        "the right secret must be used once it is given: {err}"
    );

    // The right secret first, then a wrong one: the wrong one must not ride on the
    // ARM client (and token) of the right one.
    let exec = executor();
    let err = run(
        &exec,
        &push(
            template(),
            emu.artifact(V2023, m, "contoso-nf-template", "1.0.0"),
        ),
    )
    .expect_err("no registry");
    assert_ne!(err.reason, Reason::Forbidden, "{err}");
    let err = run(
        &exec,
        &push(
            template(),
            with_secret(
                emu.artifact(V2023, m, "contoso-nf-template", "1.0.1"),
                wrong,
            ),
        ),
    )
    .expect_err("a wrong client secret must be refused even after the right one was used");
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
}

fn arm_template_source() -> Source {
    Source::File(FileSource {
        name: "template.json".into(),
        media_type: "application/json".into(),
        data: b"{\"resources\":[]}".to_vec(),
    })
}

/// A storage-account store is refused as such, before its A-B-C versions or its manifest
/// could produce a misleading VersionFormat or ArtifactNotInManifest.
#[test]
fn a_storage_account_store_is_unsupported() {
    let emu = Emulator::start(&["--no-registry"]);
    let m = "contoso-vhd-manifest";
    emu.create_store(PUBLISHER, STORE, "AzureStorageAccount");
    // Storage-account stores list versions as A-B-C (AOSM's rule, enforced by the emulator).
    emu.create_manifest(
        PUBLISHER,
        STORE,
        m,
        &[("contoso-template", "ArmTemplate", "1-0-0")],
    );
    let exec = executor();
    // The schema only admits 1.0.0-style versions, so that is what reaches the executor.
    let version = "1.0.0";
    let err = run(
        &exec,
        &push(
            arm_template_source(),
            emu.artifact(V2023, m, "contoso-template", version),
        ),
    )
    .expect_err("a storage-account store is not supported");
    assert_eq!(err.reason, Reason::UnsupportedStoreType, "{version}: {err}");
    assert!(
        err.message.contains("AzureContainerRegistry"),
        "says which store type works: {err}"
    );
    assert_no_secrets(
        "the error message",
        &err.to_string(),
        &[&emu.client_secret()],
    );
}
