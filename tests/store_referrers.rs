//! A signed image into the artifact store with its referrers, and back out with them: an
//! image given an SBOM, a signature and a signature of the SBOM by `oras attach` in a
//! plain registry is pushed into the emulated store with `referrers` asked for (the
//! transfer core, as the controller runs it, and `store push -r` as a user types it), then
//! pulled from the store into another registry. `oras discover` with the scoped
//! credential is the independent reader at every end. The store's registry front serves
//! the referrers API, as ACR does, so no referrers tag is written there; the plain
//! registries have none, so the tag schema is kept for them.

mod support;

use support::TestEnv;
use support::emulator::*;
use support::fixtures::{SBOM, SIGNATURE, oras_discover, oras_discover_with, signed_image};
use support::registry::{Implementation, Registry};

trust_emulator_ca!();

const MANIFEST: &str = "contoso-cnf-manifest";

/// `oras discover` of `path` in the emulator's registry (after `login_tools`).
fn discover_in_store(env: &TestEnv, emu: &Emulator, path: &str) -> Vec<(String, String)> {
    oras_discover_with(
        env.tool("oras"),
        &[
            "--plain-http=false".into(),
            "--ca-file".into(),
            emu.ca_file().display().to_string(),
            emu.reference(path),
        ],
    )
}

#[test]
fn a_signed_image_goes_into_the_store_with_its_referrers_and_comes_back_with_them() {
    let env = TestEnv::new();
    let src = Registry::start();
    let signed = signed_image(&env, &src, "app/cnf:1.2.3");
    let at_source = oras_discover(&env, &src, "app/cnf:1.2.3");
    assert_eq!(at_source.len(), 3, "{at_source:?}");

    let emu = Emulator::start(&[]);
    emu.create_acr_manifest(MANIFEST, &[("contoso-cnf", "OCIArtifact", "1.0.0")]);
    let exec = executor();
    let mut request = push(
        registry_source(&src, "app/cnf:1.2.3"),
        emu.artifact(V2023, MANIFEST, "contoso-cnf", "1.0.0"),
    );
    request.referrers = true;
    let outcome = run_ok(&exec, &request);
    assert_eq!(outcome.digest, signed.image);
    assert_eq!(outcome.referrers, Some(3));
    assert_eq!(
        (
            outcome.summary.referrers_copied,
            outcome.summary.referrers_skipped
        ),
        (3, 0)
    );

    // In the store, read with the scoped credential of the manifest: the same tree.
    let cred = emu.list_credential(MANIFEST, V2023);
    assert_eq!(cred.repositories, ["contoso-cnf"]);
    emu.login_tools(&env, &cred);
    assert_eq!(
        discover_in_store(&env, &emu, "contoso-cnf:1.0.0"),
        at_source
    );
    for d in [&signed.sbom, &signed.signature, &signed.sbom_signature] {
        let raw = emu.skopeo_raw(&env, &format!("contoso-cnf@{d}"));
        assert_eq!(
            support::sha256_digest(&raw),
            *d,
            "{d} byte-exact in the store"
        );
    }
    // The store's registry has the referrers API (as ACR): no referrers tag was written.
    let tags = env
        .tool("crane")
        .args(["ls", &emu.reference("contoso-cnf")])
        .ok();
    assert_eq!(tags.stdout.trim(), "1.0.0", "{tags}");
    assert_eq!(emu.stats()["acrFront"]["subjectManifests"], 3);

    // Pushed again: everything is found in place.
    let again = run_ok(&exec, &request);
    assert_eq!(
        (
            again.summary.referrers_copied,
            again.summary.referrers_skipped
        ),
        (0, 3)
    );

    // Pulled back into another registry (distribution v3), the referrers come too.
    let dst = Registry::of(Implementation::Distribution3);
    let mut back = pull(
        emu.artifact(V2023, MANIFEST, "contoso-cnf", "1.0.0"),
        plain_side(&dst.host(), "pulled/cnf:1.0.0"),
    );
    back.referrers = true;
    let pulled = run_ok(&exec, &back);
    assert_eq!(pulled.digest, signed.image);
    assert_eq!(pulled.referrers, Some(3));
    assert_eq!(oras_discover(&env, &dst, "pulled/cnf:1.0.0"), at_source);
}

#[test]
fn store_push_and_pull_with_r_carry_the_referrers_through_the_cli() {
    let env = TestEnv::new();
    let src = Registry::start();
    let signed = signed_image(&env, &src, "app/cnf:1.2.3");
    let emu = Emulator::start(&[]);
    emu.create_acr_manifest(MANIFEST, &[("contoso-cnf", "OCIArtifact", "1.0.0")]);

    let out = emu
        .store_cli(&env, "push", MANIFEST)
        .args(["-r", "--from-plain-http", "--output", "json", "--from"])
        .arg(src.reference("app/cnf:1.2.3"))
        .arg("contoso-cnf:1.0.0")
        .ok();
    let v = out.json();
    assert_eq!(v["digest"], signed.image.as_str(), "{out}");
    assert_eq!(v["referrers"], 3, "{out}");

    let dst = Registry::start();
    let out = emu
        .store_cli(&env, "pull", MANIFEST)
        .args(["-r", "--to-plain-http", "--format", "json", "--to"])
        .arg(dst.reference("pulled/cnf:1.0.0"))
        .arg("contoso-cnf:1.0.0")
        .ok();
    assert_eq!(out.json()["referrers"], 3, "{out}");
    let mut want = vec![
        (signed.sbom.clone(), SBOM.to_string()),
        (signed.signature.clone(), SIGNATURE.to_string()),
        (signed.sbom_signature.clone(), SIGNATURE.to_string()),
    ];
    want.sort();
    assert_eq!(oras_discover(&env, &dst, "pulled/cnf:1.0.0"), want);
}
