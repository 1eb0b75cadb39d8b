//! Store pushes authenticated with workload identity (a federated token file) and with a
//! managed identity (App Service style endpoint) against the AOSM emulator, and a workload
//! identity whose federated token has expired.
//!
//! # Why everything is in one `#[test]`
//!
//! `azure_identity` reads `AZURE_FEDERATED_TOKEN_FILE`, `IDENTITY_ENDPOINT` and
//! `IDENTITY_HEADER` from the process environment. The managed identity endpoint and its
//! header are only known once the emulator has started (random port, random header), so
//! they cannot be set before `main` the way [`trust_emulator_ca!`] sets `SSL_CERT_FILE`.
//! `std::env::set_var` is only sound while no other thread reads the environment, so this
//! binary has exactly one test, and it sets the variables right after the emulator is up
//! and *before* anything starts the harness's tokio runtime (the first ARM call does) or
//! builds an [`aosm_artifact_operator::transfer::Executor`]. At that point the process has
//! only libtest's main thread, which just waits for this test to finish, and this test's
//! own thread (the helper threads of `support::cmd` that built the CA and the emulator
//! binary have been joined); [`set_identity_env`] checks that through `/proc/self/task`.
//! The values are never changed afterwards; the cases then run one after the other, each
//! with its own executor (so each builds its own credential, which reads the token file).

mod support;

use aosm_artifact_operator::aosm::Identity;
use aosm_artifact_operator::transfer::{FileSource, Reason, Source, StoreSide};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use support::emulator::*;
use support::fixtures;

trust_emulator_ca!();

/// An unsigned Kubernetes-style service account token (the emulator does not check the
/// signature) for `api://AzureADTokenExchange`, expiring `exp_offset` seconds from now.
fn federated_token(exp_offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "test"});
    let claims = json!({
        "aud": ["api://AzureADTokenExchange"],
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": "system:serviceaccount:aosm:aosm-artifact-operator",
        "iat": now - 3600,
        "nbf": now - 3600,
        "exp": now + exp_offset,
        "nonce": hex::encode(fixtures::random_bytes(8)),
    });
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.{}",
        part(&header),
        part(&claims),
        URL_SAFE_NO_PAD.encode(fixtures::random_bytes(32))
    )
}

/// Sets the identity variables of `azure_identity` (see the module documentation for why
/// this is sound here).
fn set_identity_env(token_file: &Path, emu: &Emulator) {
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        threads <= 2,
        "{threads} threads exist: the environment can no longer be changed safely"
    );
    // SAFETY: the only other thread is libtest's main thread, which waits for this test
    // and does not touch the environment (checked above); nothing has started the tokio
    // runtime yet. The values are never changed afterwards.
    unsafe {
        std::env::set_var("AZURE_FEDERATED_TOKEN_FILE", token_file);
        std::env::set_var("IDENTITY_ENDPOINT", emu.ep("identityEndpoint"));
        std::env::set_var("IDENTITY_HEADER", emu.ep("identityHeader"));
        // The library passes ids and the authority host explicitly; make sure nothing
        // falls back to ambient values of the machine running the tests.
        std::env::remove_var("AZURE_CLIENT_ID");
        std::env::remove_var("AZURE_TENANT_ID");
        std::env::remove_var("AZURE_AUTHORITY_HOST");
        std::env::remove_var("MSI_ENDPOINT");
        std::env::remove_var("MSI_SECRET");
    }
}

fn template_source() -> (Source, String) {
    let template = format!(
        "{{\"$schema\":\"https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#\",\
         \"contentVersion\":\"1.0.0.0\",\"resources\":[],\"nonce\":\"{}\"}}\n",
        hex::encode(fixtures::random_bytes(16))
    );
    let source = Source::File(FileSource {
        name: "template.json".into(),
        media_type: "application/json".into(),
        data: template.clone().into_bytes(),
    });
    (source, template)
}

fn with_identity(mut artifact: StoreSide, identity: Identity) -> StoreSide {
    artifact.store.identity = identity;
    artifact
}

fn reset_stats(emu: &Emulator) {
    let url = format!("{}/stats", emu.ep("adminUrl"));
    let (st, _, b) = emu.request(Method::DELETE, &url, None, None);
    assert!(st == 200 || st == 204, "DELETE /_emulator/stats: {st} {b}");
}

fn tokens_issued(emu: &Emulator, kind: &str) -> u64 {
    emu.stats()["tokensIssued"][kind].as_u64().unwrap_or(0)
}

#[test]
fn workload_and_managed_identity_push_into_the_store() {
    let token_dir = tempfile::Builder::new()
        .prefix("aosm-federated-token-")
        .tempdir()
        .unwrap();
    let token_file = token_dir.path().join("token");
    let valid = federated_token(3600);
    std::fs::write(&token_file, &valid).unwrap();

    let emu = Emulator::start(&[]);
    set_identity_env(&token_file, &emu);

    let art = "contoso-nf-template";
    for m in ["wi-manifest", "mi-manifest", "expired-manifest"] {
        emu.create_acr_manifest(m, &[(art, "ArmTemplate", "1.0.0")]);
    }

    // (1) Workload identity: the federated token is exchanged through a client assertion.
    reset_stats(&emu);
    let (source, _) = template_source();
    let to = with_identity(
        emu.artifact(V2023, "wi-manifest", art, "1.0.0"),
        Identity::WorkloadIdentity {
            client_id: Some(emu.ep("clientId")),
            tenant_id: Some(emu.ep("tenantId")),
        },
    );
    let outcome = run_ok(&executor(), &push(source, to));
    assert_eq!(outcome.artifact_type, "ArmTemplate");
    assert_eq!(
        outcome.destination_ref,
        emu.reference(&format!("{art}:1.0.0"))
    );
    let stats = emu.stats();
    assert!(
        stats["tokensIssued"]["entraClientAssertion"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "workload identity must use a client assertion: {stats}"
    );
    assert_eq!(
        stats["tokensIssued"]["entraClientSecret"]
            .as_u64()
            .unwrap_or(0),
        0,
        "no client secret is involved: {stats}"
    );
    assert_eq!(
        emu.list_credential_count("wi-manifest"),
        1,
        "ARM accepted the token"
    );

    // (2) Managed identity (user-assigned, App Service style endpoint).
    reset_stats(&emu);
    let (source, _) = template_source();
    let to = with_identity(
        emu.artifact(V2023, "mi-manifest", art, "1.0.0"),
        Identity::ManagedIdentity {
            client_id: Some(emu.ep("managedIdentityClientId")),
        },
    );
    let outcome = run_ok(&executor(), &push(source, to));
    assert_eq!(outcome.artifact_type, "ArmTemplate");
    assert!(
        tokens_issued(&emu, "managedIdentity") >= 1,
        "the managed identity endpoint must have issued the token: {}",
        emu.stats()
    );
    assert_eq!(tokens_issued(&emu, "entraClientAssertion"), 0);
    assert_eq!(tokens_issued(&emu, "entraClientSecret"), 0);
    assert_eq!(
        emu.list_credential_count("mi-manifest"),
        1,
        "ARM accepted the token"
    );

    // (3) Workload identity with an expired federated token: Forbidden, no token in the
    // message. A new executor builds a new credential, which reads the file again.
    let expired = federated_token(-600);
    std::fs::write(&token_file, &expired).unwrap();
    reset_stats(&emu);
    let (source, _) = template_source();
    let to = with_identity(
        emu.artifact(V2023, "expired-manifest", art, "1.0.0"),
        Identity::WorkloadIdentity {
            client_id: Some(emu.ep("clientId")),
            tenant_id: Some(emu.ep("tenantId")),
        },
    );
    let err = match run(&executor(), &push(source, to)) {
        Ok(o) => panic!("an expired federated token must fail, got {o:?}"),
        Err(e) => e,
    };
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.message.contains("workload identity") && err.message.contains("AADSTS700024"),
        "the message names the identity and Entra's reason: {err}"
    );
    assert_no_secrets("the error message", &err.message, &[&expired, &valid]);
    assert_no_secrets("the error", &err.to_string(), &[&expired, &valid]);
    assert_eq!(tokens_issued(&emu, "entraClientAssertion"), 0);
    assert!(
        emu.stats()["entraRefusals"].as_u64().unwrap_or(0) >= 1,
        "the emulator must have refused the assertion: {}",
        emu.stats()
    );
    assert_eq!(emu.list_credential_count("expired-manifest"), 0);
}
