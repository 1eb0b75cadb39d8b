//! `store login | push | list | pull | seal` against the emulator (its Entra and ARM
//! endpoints through the flags, a service principal through the environment): the
//! routine of Microsoft's how-to, one command per step. `crane` reads what `store push`
//! pushed with the credential `store login` wrote; `store pull -o DIR` gives the files back
//! byte-exact; `store seal` refuses while an artifact is missing, then seals.

mod support;

use serde_json::Value;
use support::TestEnv;
use support::cmd::{Cmd, Output};
use support::emulator::*;

trust_emulator_ca!();

const MANIFEST: &str = "cli-manifest";

/// `store <sub>` with the store flags of the emulator's store, no sign-in yet.
fn store_unsigned(env: &TestEnv, emu: &Emulator, sub: &str) -> Cmd {
    emu.store_cli_unsigned(env, sub, MANIFEST)
}

/// `store <sub> <flags…> <args…>` signed in as the emulator's service principal.
fn store(env: &TestEnv, emu: &Emulator, sub: &str) -> Cmd {
    emu.store_cli(env, sub, MANIFEST)
}

fn json(out: &Output) -> Value {
    out.assert_success();
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("JSON ({e}): {out}"))
}

#[test]
fn login_push_list_pull_seal_as_the_how_to_does_by_hand() {
    let env = TestEnv::new();
    let emu = Emulator::start(&[]);
    emu.create_acr_manifest(
        MANIFEST,
        &[
            ("contoso-template", "ArmTemplate", "1.0.0"),
            ("contoso-values", "OCIArtifact", "1.0.0"),
        ],
    );

    // login: the docker config that oras reads, and no token on stdout.
    let config = env.path("docker/config.json");
    let out = store(&env, &emu, "login")
        .arg("--registry-config")
        .arg(&config)
        .args(["-o", "json"])
        .run();
    let login = json(&out);
    assert_eq!(login["registry"], emu.registry().as_str(), "{login}");
    assert!(login.get("password").is_none(), "{login}");
    let written: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(
        written["auths"][emu.registry()]["auth"].is_string(),
        "{written}"
    );
    assert_eq!(
        emu.list_credential_count(MANIFEST),
        1,
        "one listCredential per command"
    );

    // push: files as oras push does.
    let template = env.write("in/template.json", br#"{"resources":[]}"#);
    let out = store(&env, &emu, "push")
        .args(["-o", "json", "contoso-template:1.0.0"])
        .arg(format!("{}:application/json", template.display()))
        .run();
    let pushed = json(&out);
    let digest = pushed["digest"].as_str().unwrap().to_string();

    // crane, with the docker config `store login` wrote (and nothing else), reads what
    // `store push` pushed. (oras talks plain HTTP to `localhost` registries, and the
    // emulator's registry is https on localhost.)
    let read = env
        .tool("crane")
        .args(["digest", &emu.reference("contoso-template:1.0.0")])
        .env("DOCKER_CONFIG", config.parent().unwrap())
        .env("SSL_CERT_FILE", emu.ca_file())
        .run();
    read.assert_success();
    assert_eq!(read.stdout.trim(), digest, "{read}");

    // list: the template is there with its digest, the values file is not yet.
    let listed = json(&store(&env, &emu, "list").args(["-o", "json"]).run());
    assert_eq!(listed["state"], "Uploading", "{listed}");
    let row = |name: &str| support::store_list_row(&listed, name);
    assert_eq!(row("contoso-template")["inStore"], true);
    assert_eq!(row("contoso-template")["digest"], digest.as_str());
    assert_eq!(row("contoso-values")["inStore"], false);
    let table = store(&env, &emu, "list").run();
    table.assert_success();
    assert!(table.stdout.contains("contoso-values"), "{table}");

    // seal refuses while contoso-values is missing (exit 2, the manifest untouched).
    let refused = store(&env, &emu, "seal").run();
    assert_eq!(refused.code, Some(2), "{refused}");
    assert!(refused.stderr.contains("contoso-values:1.0.0"), "{refused}");
    assert_eq!(emu.manifest_state(MANIFEST), "Uploading");

    // pull -o DIR: the file back, byte-exact.
    let out_dir = env.path("pulled");
    store(&env, &emu, "pull")
        .arg("-o")
        .arg(&out_dir)
        .arg("contoso-template:1.0.0")
        .ok();
    assert_eq!(
        std::fs::read(out_dir.join("template.json")).unwrap(),
        std::fs::read(&template).unwrap()
    );

    // A version the manifest does not list: a clear refusal naming what it lists.
    let unlisted = store(&env, &emu, "push")
        .arg("contoso-template:2.0.0")
        .arg(&template)
        .run();
    assert_eq!(unlisted.code, Some(2), "{unlisted}");
    assert!(
        unlisted.stderr.contains("ArtifactNotInManifest"),
        "{unlisted}"
    );

    // Push the rest, then seal.
    let values = env.write("in/values.yaml", b"replicas: 2\n");
    store(&env, &emu, "push")
        .arg("contoso-values:1.0.0")
        .arg(&values)
        .ok();
    let sealed = json(&store(&env, &emu, "seal").args(["-o", "json"]).run());
    assert_eq!(sealed["state"], "Uploaded", "{sealed}");
    assert_eq!(emu.manifest_state(MANIFEST), "Uploaded");
}

#[test]
fn without_any_sign_in_the_error_says_what_was_tried_and_how_to_sign_in() {
    let env = TestEnv::new();
    let emu = Emulator::start(&[]);
    emu.create_acr_manifest(MANIFEST, &[("contoso-template", "ArmTemplate", "1.0.0")]);
    // No client secret, no workload identity, no managed identity, and an `az` that is not
    // signed in (a stand-in on PATH that answers as `az` does then).
    let bin = env.path("fake-az-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let az = bin.join("az");
    std::fs::write(
        &az,
        "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/calls\"\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = store_unsigned(&env, &emu, "list")
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .env_remove("IDENTITY_ENDPOINT")
        .run();
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    for said in [
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "az login",
    ] {
        assert!(out.stderr.contains(said), "{said}: {out}");
    }
    // `az` was asked for an ARM token for the subscription.
    let calls = std::fs::read_to_string(bin.join("calls")).unwrap_or_default();
    assert!(calls.contains("account get-access-token"), "{calls}");
    assert!(calls.contains(SUB), "{calls}");
}
