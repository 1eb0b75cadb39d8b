//! `transfer -f` applies the controller's tenant policy with the same flags: a namespaced
//! ArtifactStore that would authenticate as the process's own (ambient) managed identity
//! is refused unless `--namespaced-store-ambient-identity`, and one that names the
//! emulator's endpoints is refused unless `--namespaced-store-endpoint-hosts` allows
//! their host; refusals are made before any token is asked for.

mod support;

use serde_json::Value;
use support::TestEnv;
use support::cmd::Output;
use support::emulator::*;

trust_emulator_ca!();

const MANIFEST: &str = "tenancy-manifest";
const ARTIFACT: &str = "tenancy-template";

/// A namespaced store with the process's managed identity, and a transfer of a ConfigMap
/// through it.
fn documents(emu: &Emulator) -> String {
    format!(
        r#"apiVersion: artifacts.aosm.dev/v1alpha1
kind: ArtifactStore
metadata: {{name: team-store, namespace: team-a}}
spec:
  subscriptionId: "{SUB}"
  resourceGroup: {RG}
  publisher: {PUBLISHER}
  artifactStore: {STORE}
  armEndpoint: {arm}
  authorityHost: {authority}
  identity: {{type: ManagedIdentity, clientId: "{mi}"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: nf-template, namespace: team-a}}
data:
  template.json: '{{"resources":[]}}'
---
apiVersion: artifacts.aosm.dev/v1alpha1
kind: ArtifactTransfer
metadata: {{name: template, namespace: team-a}}
spec:
  source:
    configMap: {{name: nf-template, key: template.json, mediaType: application/json}}
  destination:
    artifactStore:
      storeRef: {{kind: ArtifactStore, name: team-store}}
      manifest: {MANIFEST}
      artifact: {ARTIFACT}
      version: "1.0.0"
"#,
        arm = emu.ep("armEndpoint"),
        authority = emu.ep("authorityHost"),
        mi = emu.ep("managedIdentityClientId"),
    )
}

fn transfer(env: &TestEnv, emu: &Emulator, file: &std::path::Path, flags: &[&str]) -> Output {
    env.ours()
        .args(["transfer", "-o", "json", "-f"])
        .arg(file)
        .args(flags)
        .env("SSL_CERT_FILE", emu.ca_file())
        // What a pod with a managed identity has: the process's ambient identity.
        .env("IDENTITY_ENDPOINT", emu.ep("identityEndpoint"))
        .env("IDENTITY_HEADER", emu.ep("identityHeader"))
        .run()
}

/// The Ready condition's (status, reason) of the one transfer printed.
fn ready(out: &Output) -> (String, String) {
    let docs: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("statuses are JSON ({e})\n{out}"));
    let ready = docs[0]["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .unwrap_or_else(|| panic!("no Ready condition\n{out}"));
    (
        ready["status"].as_str().unwrap_or_default().to_string(),
        ready["reason"].as_str().unwrap_or_default().to_string(),
    )
}

fn managed_identity_tokens(emu: &Emulator) -> u64 {
    emu.stats()["tokensIssued"]["managedIdentity"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn transfer_file_follows_the_controllers_tenant_policy() {
    let env = TestEnv::new();
    let emu = Emulator::start(&[]);
    emu.create_acr_manifest(MANIFEST, &[(ARTIFACT, "ArmTemplate", "1.0.0")]);
    let file = env.write("transfer.yaml", documents(&emu));

    // No flags: the namespaced store may not borrow the process's identity.
    let out = transfer(&env, &emu, &file, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(
        ready(&out),
        ("False".into(), "AmbientIdentityNotAllowed".into()),
        "{out}"
    );
    let line = support::assert_one_line_error(&out);
    assert!(line.contains("AmbientIdentityNotAllowed"), "{line}");
    assert_eq!(managed_identity_tokens(&emu), 0, "refused before any token");

    // Ambient identity allowed, but the emulator's host is not an allowed endpoint.
    let out = transfer(&env, &emu, &file, &["--namespaced-store-ambient-identity"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(
        ready(&out),
        ("False".into(), "EndpointNotAllowed".into()),
        "{out}"
    );
    assert_eq!(managed_identity_tokens(&emu), 0, "refused before any token");

    // A malformed host is a usage error.
    let out = transfer(
        &env,
        &emu,
        &file,
        &["--namespaced-store-endpoint-hosts", "https://localhost"],
    );
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        support::assert_one_line_error(&out).contains("--namespaced-store-endpoint-hosts"),
        "{out}"
    );

    // Both allowed: the same file works, with the process's managed identity.
    let out = transfer(
        &env,
        &emu,
        &file,
        &[
            "--namespaced-store-ambient-identity",
            "--namespaced-store-endpoint-hosts",
            "localhost",
        ],
    );
    assert!(out.success(), "{out}");
    assert_eq!(ready(&out), ("True".into(), "Succeeded".into()), "{out}");
    assert!(managed_identity_tokens(&emu) >= 1, "{}", emu.stats());
}
