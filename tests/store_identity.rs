//! Store pushes authenticated with workload identity (a federated token file holding a
//! real service account token of a test kube-apiserver, which the emulator's Entra verifies
//! against the API server's OpenID discovery keys and a federated identity credential)
//! and with a managed identity (App Service style endpoint) against the AOSM emulator, and
//! a workload identity whose token is for a subject Entra has no federated credential for.
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
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use support::emulator::*;
use support::fixtures;
use support::kube::KubeCluster;

trust_emulator_ca!();

/// The ServiceAccount the emulator's Entra has a federated credential for.
const NAMESPACE: &str = "aosm";
const OPERATOR_SA: &str = "aosm-artifact-operator";
const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

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

    let emu = Emulator::start(&[]);
    set_identity_env(&token_file, &emu);
    // Real service account tokens, and Entra federated with their issuer for one subject.
    let kube = KubeCluster::start();
    kube.create_namespace(NAMESPACE, &[]);
    let valid = kube.service_account_token(NAMESPACE, OPERATOR_SA, FEDERATED_AUDIENCE);
    let stranger = kube.service_account_token(NAMESPACE, "stranger", FEDERATED_AUDIENCE);
    std::fs::write(&token_file, &valid).unwrap();
    emu.set_config(json!({
        "federatedCredentials": [{
            "issuer": kube.issuer(),
            "subject": format!("system:serviceaccount:{NAMESPACE}:{OPERATOR_SA}"),
            "audiences": [FEDERATED_AUDIENCE],
        }],
        "oidcCaFile": kube.pki().ca_crt,
    }));

    let art = "contoso-nf-template";
    for m in ["wi-manifest", "mi-manifest", "stranger-manifest"] {
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

    // (3) Workload identity with the token of a ServiceAccount Entra has no federated
    // credential for: Forbidden, no token in the message. A new executor builds a new
    // credential, which reads the file again.
    std::fs::write(&token_file, &stranger).unwrap();
    reset_stats(&emu);
    let (source, _) = template_source();
    let to = with_identity(
        emu.artifact(V2023, "stranger-manifest", art, "1.0.0"),
        Identity::WorkloadIdentity {
            client_id: Some(emu.ep("clientId")),
            tenant_id: Some(emu.ep("tenantId")),
        },
    );
    let err = match run(&executor(), &push(source, to)) {
        Ok(o) => panic!("a token of another subject must fail, got {o:?}"),
        Err(e) => e,
    };
    assert_eq!(err.reason, Reason::Forbidden, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.message.contains("workload identity") && err.message.contains("AADSTS700213"),
        "the message names the identity and Entra's reason: {err}"
    );
    assert_no_secrets("the error message", &err.message, &[&stranger, &valid]);
    assert_no_secrets("the error", &err.to_string(), &[&stranger, &valid]);
    assert_eq!(tokens_issued(&emu, "entraClientAssertion"), 0);
    assert!(
        emu.stats()["entraRefusals"].as_u64().unwrap_or(0) >= 1,
        "the emulator must have refused the assertion: {}",
        emu.stats()
    );
    assert_eq!(emu.list_credential_count("stranger-manifest"), 0);
}
