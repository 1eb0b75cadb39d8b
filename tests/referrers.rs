//! Referrers discovery (`RegistryClient::referrers`) against both registry implementations:
//! an image signed and given an SBOM with `oras attach`, and a signature of the SBOM.
//! Neither distribution 2.8 nor distribution v3.1.2 serves the referrers API (both answer
//! 404), so oras keeps the referrers tag schema (`sha256-<hex>`) and we read it; the API
//! path is tested against the in-process fake (`inproc_engine.rs`) and against the
//! emulator's ACR front, which serves it (`store_referrers_api.rs`).

mod support;

use aosm_artifact_operator::engine::registry::referrers::Discovery;
use aosm_artifact_operator::engine::{RegistryClient, RegistryOptions};
use support::fixtures::{self, Flavor};
use support::registry::Implementation;
use support::{Registry, TestEnv, rt};

const SBOM: &str = "application/spdx+json";
const SIGNATURE: &str = "application/vnd.example.signature";

fn referrers_of_a_signed_image(imp: Implementation) {
    let env = TestEnv::new();
    let reg = Registry::of(imp);
    let image = fixtures::push_image(&env, &reg, "cnf/app:1.0.0", &[4096], Flavor::Oci, None);
    let sbom = fixtures::oras_attach(
        &env,
        &reg,
        "cnf/app:1.0.0",
        SBOM,
        "sbom.json",
        br#"{"spdxVersion": "SPDX-2.3"}"#,
        SBOM,
    );
    let signature = fixtures::oras_attach(
        &env,
        &reg,
        "cnf/app:1.0.0",
        SIGNATURE,
        "sig.bin",
        b"signed",
        "application/octet-stream",
    );
    let sbom_signature = fixtures::oras_attach(
        &env,
        &reg,
        &format!("cnf/app@{sbom}"),
        SIGNATURE,
        "sbom-sig.bin",
        b"signed sbom",
        "application/octet-stream",
    );
    let client = RegistryClient::new(
        &reg.host(),
        &RegistryOptions {
            plain_http: true,
            ..Default::default()
        },
    )
    .expect("a client");
    // Neither implementation has the referrers API.
    let expected = Discovery::TagSchema;
    rt::block_on(async {
        let (all, how) = client
            .referrers("cnf/app", &image.digest, None)
            .await
            .expect("referrers");
        assert_eq!(how, expected);
        let mut found: Vec<(String, Option<String>)> = all
            .iter()
            .map(|r| (r.digest.clone(), r.artifact_type.clone()))
            .collect();
        found.sort();
        let mut want = vec![
            (sbom.clone(), Some(SBOM.to_string())),
            (signature.clone(), Some(SIGNATURE.to_string())),
        ];
        want.sort();
        assert_eq!(found, want);

        let (sboms, _) = client
            .referrers("cnf/app", &image.digest, Some(SBOM))
            .await
            .expect("referrers");
        assert_eq!(sboms.iter().map(|r| &r.digest).collect::<Vec<_>>(), [&sbom]);

        // A referrer has referrers of its own.
        let (of_sbom, _) = client
            .referrers("cnf/app", &sbom, None)
            .await
            .expect("referrers");
        assert_eq!(
            of_sbom.iter().map(|r| &r.digest).collect::<Vec<_>>(),
            [&sbom_signature]
        );
        // And a manifest nobody refers to has none.
        let (none, _) = client
            .referrers("cnf/app", &signature, None)
            .await
            .expect("referrers");
        assert!(none.is_empty(), "{none:?}");
    });
}

#[test]
fn referrers_of_a_signed_image_on_distribution2_by_the_tag_schema() {
    referrers_of_a_signed_image(Implementation::Distribution2);
}

#[test]
fn referrers_of_a_signed_image_on_distribution3_by_the_tag_schema() {
    referrers_of_a_signed_image(Implementation::Distribution3);
}
