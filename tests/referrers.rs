//! Referrers against both registry implementations: discovery
//! (`RegistryClient::referrers`) and `copy -r` (`engine::referrer_copy`), with images
//! signed and given SBOMs by `oras attach`, and a signature of the SBOM. Neither
//! distribution 2.8 nor distribution v3.1.2 serves the referrers API (both answer 404), so
//! oras keeps the referrers tag schema (`sha256-<hex>`), we read it at the source and keep
//! it at the destination, and `oras discover` (an independent reader) checks the result.
//! The API path is tested against the in-process fake (`inproc_engine.rs`) and the
//! emulator's ACR front, which serves it as ACR does (`store_referrers_api.rs`,
//! `store_referrers.rs`).

mod support;

use aosm_artifact_operator::engine::registry::referrers::Discovery;
use aosm_artifact_operator::engine::{RegistryClient, RegistryOptions};
use support::fixtures::{self, Flavor, SBOM, SIGNATURE, oras_discover, signed_image};
use support::registry::Implementation;
use support::{Registry, Summary, TestEnv, rt};

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

/// The manifest bytes of `repo@digest` at `reg`, which must exist.
#[track_caller]
fn manifest_bytes(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    reg.manifest(repo, digest)
        .unwrap_or_else(|| panic!("{repo}@{digest} is not at {}", reg.host()))
        .1
}

fn copy_brings_every_referrer_byte_exact_and_keeps_the_tag_schema(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let signed = signed_image(&env, &src, "cnf/app:1.0.0");

    let summary = Summary::parse(
        &env.copy(&src, "cnf/app:1.0.0", &dst, "mirror/app:1.0.0", ["-r"])
            .run(),
    );
    assert_eq!(summary.digest, signed.image);
    assert_eq!(
        (summary.referrers_copied, summary.referrers_skipped),
        (3, 0)
    );
    for d in [&signed.sbom, &signed.signature, &signed.sbom_signature] {
        assert_eq!(
            manifest_bytes(&dst, "mirror/app", d),
            manifest_bytes(&src, "cnf/app", d),
            "{d} must arrive byte-exact"
        );
    }
    // An independent reader finds the same tree at both ends, through the tag schema we
    // kept at the destination (it has no referrers API).
    let at_src = oras_discover(&env, &src, "cnf/app:1.0.0");
    assert_eq!(at_src.len(), 3, "{at_src:?}");
    assert_eq!(oras_discover(&env, &dst, "mirror/app:1.0.0"), at_src);
    let mut tags = dst.tags("mirror/app");
    tags.sort();
    let mut want = vec![
        "1.0.0".to_string(),
        signed.image.replace(':', "-"),
        signed.sbom.replace(':', "-"),
    ];
    want.sort();
    assert_eq!(tags, want, "the tag and one referrers tag per subject");

    // Again: nothing to write, every referrer found in place.
    let again = Summary::parse(
        &env.copy(&src, "cnf/app:1.0.0", &dst, "mirror/app:1.0.0", ["-r"])
            .run(),
    );
    assert_eq!((again.referrers_copied, again.referrers_skipped), (0, 3));
    assert_eq!((again.blobs_copied, again.bytes), (0, 0));

    // A new signature at the source is the only thing a later copy moves.
    let later = fixtures::oras_attach(
        &env,
        &src,
        "cnf/app:1.0.0",
        SIGNATURE,
        "sig2.bin",
        b"second signature",
        "application/octet-stream",
    );
    let third = Summary::parse(
        &env.copy(&src, "cnf/app:1.0.0", &dst, "mirror/app:1.0.0", ["-r"])
            .run(),
    );
    assert_eq!((third.referrers_copied, third.referrers_skipped), (1, 3));
    assert!(
        oras_discover(&env, &dst, "mirror/app:1.0.0")
            .iter()
            .any(|(d, _)| *d == later)
    );

    // Without -r only the image moves.
    let plain = Summary::parse(
        &env.copy(&src, "cnf/app:1.0.0", &dst, "plain/app:1.0.0", [])
            .run(),
    );
    assert_eq!((plain.referrers_copied, plain.referrers_skipped), (0, 0));
    assert!(oras_discover(&env, &dst, "plain/app:1.0.0").is_empty());
}

fn artifact_type_selects_direct_referrers_and_keeps_their_own(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let signed = signed_image(&env, &src, "cnf/app:1.0.0");
    let summary = Summary::parse(
        &env.copy(
            &src,
            "cnf/app:1.0.0",
            &dst,
            "sboms/app:1.0.0",
            ["-r", "--artifact-type", SBOM],
        )
        .run(),
    );
    assert_eq!(summary.referrers_copied, 2, "the SBOM and its signature");
    let mut want = vec![
        (signed.sbom.clone(), SBOM.to_string()),
        (signed.sbom_signature.clone(), SIGNATURE.to_string()),
    ];
    want.sort();
    assert_eq!(oras_discover(&env, &dst, "sboms/app:1.0.0"), want);
    assert_eq!(dst.manifest_status("sboms/app", &signed.signature), 404);

    // --artifact-type without -r is refused before anything moves.
    let out = env
        .copy(
            &src,
            "cnf/app:1.0.0",
            &dst,
            "x/app:1.0.0",
            ["--artifact-type", SBOM],
        )
        .run();
    out.assert_code(2);
    assert!(
        out.stderr_last_line().contains("--recursive") || format!("{out}").contains("--recursive"),
        "{out}"
    );
    assert!(dst.tags("x/app").is_empty());
}

fn referrers_of_every_platform_of_an_index_come_along(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let index = fixtures::push_index(
        &env,
        &src,
        "cnf/multi",
        "2.0.0",
        &["linux/amd64", "linux/arm64"],
        1024,
        Flavor::Oci,
    );
    let amd64 = index.child("linux/amd64").digest.clone();
    let attach = |subject: String, name: &str| {
        fixtures::oras_attach(
            &env,
            &src,
            &subject,
            SIGNATURE,
            name,
            name.as_bytes(),
            "application/octet-stream",
        )
    };
    let of_index = attach("cnf/multi:2.0.0".into(), "index.sig");
    let of_amd64 = attach(format!("cnf/multi@{amd64}"), "amd64.sig");

    let summary = Summary::parse(
        &env.copy(&src, "cnf/multi:2.0.0", &dst, "cnf/multi:2.0.0", ["-r"])
            .run(),
    );
    assert_eq!(summary.digest, index.digest);
    assert_eq!(summary.referrers_copied, 2);
    assert_eq!(
        oras_discover(&env, &dst, "cnf/multi:2.0.0"),
        vec![(of_index.clone(), SIGNATURE.to_string())]
    );
    assert_eq!(
        oras_discover(&env, &dst, &format!("cnf/multi@{amd64}")),
        vec![(of_amd64, SIGNATURE.to_string())]
    );

    // A platform filter rewrites the index: the index's own signature names the source
    // index, so only the kept platform's signature comes along.
    let filtered = Summary::parse(
        &env.copy(
            &src,
            "cnf/multi:2.0.0",
            &dst,
            "amd64/multi:2.0.0",
            ["-r", "--platform", "linux/amd64"],
        )
        .run(),
    );
    assert_ne!(filtered.digest, index.digest);
    assert_eq!(filtered.referrers_copied, 1);
    assert_eq!(dst.manifest_status("amd64/multi", &of_index), 404);
}

on_each_implementation!(
    copy_brings_every_referrer_byte_exact_and_keeps_the_tag_schema,
    artifact_type_selects_direct_referrers_and_keeps_their_own,
    referrers_of_every_platform_of_an_index_come_along,
);
