//! The engine's edge cases against an in-process fake registry (`inproc/fake_registry.rs`):
//! upload resume, token renewal mid-transfer, the retry policy, ACR's 413, HEAD-skip and
//! no-op re-copies, and no tag over incomplete content. No external tool: part of
//! `make test-unit`. The same behaviours are tested against real registries by
//! `copy_faults.rs`, `copy_interop.rs` and `store_credentials.rs`.

#[path = "inproc/fake_registry.rs"]
mod fake_registry;
#[path = "inproc/images.rs"]
mod images;

use std::time::Duration;

use aosm_artifact_operator::engine::{
    self, EngineError, NoProgress, TransferOptions, TransferSummary,
};
use axum::http::Method;
use fake_registry::{FakeRegistry, Fault, Rule};
use images::{assert_copied, endpoint, image, image_seeded};

async fn copy_with(
    src: &FakeRegistry,
    dst: &FakeRegistry,
    reference: &str,
    chunk_size: Option<u64>,
) -> Result<TransferSummary, EngineError> {
    let opts = TransferOptions {
        concurrency: 1,
        chunk_size,
        ..Default::default()
    };
    engine::copy(
        &endpoint(src, reference),
        &endpoint(dst, reference),
        &opts,
        &NoProgress,
    )
    .await
}

#[tokio::test]
async fn a_failed_chunk_is_resent_from_its_own_offset_not_from_zero() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[200 * 1024, 1000]);
    // The second PATCH (the big layer's second 64 KiB chunk) fails; nothing of it stored.
    dst.fault(Rule {
        method: Method::PATCH,
        path_part: "/blobs/uploads/",
        nth: 2,
        fault: Fault::Status(503, None),
    });
    let summary = copy_with(&src, &dst, "cnf/app:1.0.0", Some(64 * 1024))
        .await
        .expect("the copy resumes");
    assert_eq!(summary.digest, image.digest);
    assert_copied(&dst, "cnf/app", "1.0.0", &image);

    let patches: Vec<_> = dst
        .requests_to(Method::PATCH, "/blobs/uploads/")
        .iter()
        .map(|r| (r.range_start, r.status))
        .collect();
    assert_eq!(
        patches,
        [
            (Some(0), 202),
            (Some(65536), 503),
            (Some(65536), 202),
            (Some(131072), 202)
        ],
        "the failed chunk is sent again from its offset"
    );
    // The registry was asked where the upload stood, and no second session was opened.
    assert_eq!(dst.requests_to(Method::GET, "/blobs/uploads/").len(), 1);
    let sessions = dst.requests_to(Method::POST, "/blobs/uploads/").len();
    assert_eq!(sessions, image.blobs.len(), "one session per blob");
}

#[tokio::test]
async fn a_token_revoked_mid_transfer_is_renewed_and_the_copy_completes() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await.with_token_auth();
    let image = image(&src, "cnf/app", "1.0.0", &[150 * 1024, 2000, 3000]);
    // The second blob upload finds every token revoked.
    dst.fault(Rule {
        method: Method::POST,
        path_part: "/blobs/uploads/",
        nth: 2,
        fault: Fault::RevokeTokens,
    });
    copy_with(&src, &dst, "cnf/app:1.0.0", None)
        .await
        .expect("a renewed token finishes the copy");
    assert_copied(&dst, "cnf/app", "1.0.0", &image);
    let tokens = dst.requests_to(Method::GET, "/token");
    assert_eq!(tokens.len(), 2, "one token, then one renewal: {tokens:?}");
    let refused: Vec<_> = dst
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r.authorized && r.method == Method::POST),
        "the revoked token was refused once: {refused:?}"
    );
    // Every request after the first challenge carried a token, except the token requests
    // themselves (the realm is this origin; the fake needs no credential for it).
    assert!(
        dst.requests()
            .iter()
            .filter(|r| r.path != "/token" && r.path != "/v2/" && r.status != 401)
            .all(|r| r.authorized)
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_permanent_answer_is_not_retried() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[1000]);
    // The tag's PUT is throttled once with Retry-After: 1, then taken.
    dst.fault(Rule {
        method: Method::PUT,
        path_part: "/manifests/",
        nth: 1,
        fault: Fault::Status(429, Some(1)),
    });
    // A blob HEAD answers 503 twice.
    for nth in [1, 2] {
        dst.fault(Rule {
            method: Method::HEAD,
            path_part: "/blobs/",
            nth,
            fault: Fault::Status(503, None),
        });
    }
    copy_with(&src, &dst, "cnf/app:1.0.0", None)
        .await
        .expect("transient answers are retried");
    assert_copied(&dst, "cnf/app", "1.0.0", &image);
    let puts = dst.requests_to(Method::PUT, "/manifests/");
    assert_eq!(puts.len(), 2);
    let waited = puts[1].at.duration_since(puts[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: retried after {waited:?}"
    );
    let heads = dst.requests_to(Method::HEAD, "/blobs/");
    assert_eq!(heads.iter().filter(|r| r.status == 503).count(), 2);

    // 400 on the tag: refused at once, not retried.
    let other = FakeRegistry::start().await;
    other.fault(Rule {
        method: Method::PUT,
        path_part: "/manifests/",
        nth: 1,
        fault: Fault::Status(400, None),
    });
    let err = copy_with(&src, &other, "cnf/app:1.0.0", None)
        .await
        .expect_err("a 400 is permanent");
    assert!(!err.is_transient(), "{err}");
    assert_eq!(other.requests_to(Method::PUT, "/manifests/").len(), 1);
}

#[tokio::test]
async fn a_413_above_the_size_limit_switches_to_chunks_as_acr_needs() {
    let src = FakeRegistry::start().await;
    // ACR refuses request bodies above ~20 MB.
    let dst = FakeRegistry::start().await.with_max_body(20 * 1024 * 1024);
    let image = image(&src, "cnf/big", "1.0.0", &[24 * 1024 * 1024]);
    copy_with(&src, &dst, "cnf/big:1.0.0", None)
        .await
        .expect("chunks under the limit");
    assert_copied(&dst, "cnf/big", "1.0.0", &image);
    let requests = dst.requests();
    assert!(
        requests.iter().any(|r| r.status == 413),
        "the first, whole-blob request was refused"
    );
    let largest_accepted = requests
        .iter()
        .filter(|r| r.status != 413)
        .map(|r| r.body_len)
        .max()
        .unwrap_or(0);
    assert!(largest_accepted <= 16 * 1024 * 1024, "{largest_accepted}");
}

#[tokio::test]
async fn blobs_already_there_are_skipped_and_a_second_copy_moves_nothing() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[5000, 6000]);
    // The destination already holds the first layer.
    let (held, data) = &image.blobs[1];
    dst.put_blob("cnf/app", data);
    let summary = copy_with(&src, &dst, "cnf/app:1.0.0", None)
        .await
        .expect("copied");
    assert_eq!(summary.blobs_skipped, 1);
    assert_eq!(summary.blobs_copied, image.blobs.len() - 1);
    assert!(
        dst.requests_to(Method::POST, "/blobs/uploads/")
            .iter()
            .all(|r| !r.query.contains(held.trim_start_matches("sha256:"))),
        "the held blob was not uploaded"
    );
    assert_copied(&dst, "cnf/app", "1.0.0", &image);

    dst.clear_requests();
    let again = copy_with(&src, &dst, "cnf/app:1.0.0", None)
        .await
        .expect("a no-op");
    assert_eq!(again.digest, image.digest);
    assert!(
        dst.requests().iter().all(|r| !r.path.contains("/blobs/")),
        "a no-op re-copy makes no blob request: {:?}",
        dst.requests()
    );
}

#[tokio::test]
async fn a_failed_blob_leaves_no_tag() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    image(&src, "cnf/app", "1.0.0", &[4000, 5000]);
    // Every blob upload is refused.
    for nth in 1..=8 {
        dst.fault(Rule {
            method: Method::POST,
            path_part: "/blobs/uploads/",
            nth,
            fault: Fault::Status(400, None),
        });
    }
    let err = copy_with(&src, &dst, "cnf/app:1.0.0", None)
        .await
        .expect_err("the blobs cannot be stored");
    assert!(!err.is_transient(), "{err}");
    assert!(dst.requests_to(Method::PUT, "/manifests/").is_empty());
    assert!(dst.manifest("cnf/app", "1.0.0").is_none());
}

/// Seeds a one-layer artifact as `oras push` makes it (title annotation), with `layers`
/// other layers beside it; returns the manifest digest and the layer's bytes.
fn seed_file_artifact(
    reg: &FakeRegistry,
    repo: &str,
    tag: &str,
    data: &[u8],
    extra_layers: usize,
) -> (String, String) {
    let config = b"{}".to_vec();
    let config_digest = reg.put_blob(repo, &config);
    let mut layers = vec![serde_json::json!({
        "mediaType": "application/vnd.microsoft.azure.resource+json",
        "digest": reg.put_blob(repo, data),
        "size": data.len(),
        "annotations": {"org.opencontainers.image.title": "template.json"},
    })];
    for i in 0..extra_layers {
        let more = format!("more {i}").into_bytes();
        layers.push(serde_json::json!({
            "mediaType": "text/plain",
            "digest": reg.put_blob(repo, &more),
            "size": more.len(),
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.template",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).expect("JSON");
    let digest = reg.put_manifest(
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &bytes,
    );
    (
        digest,
        layers[0]["digest"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_one_file_artifact_is_read_into_memory_and_not_again_while_its_digest_is_held() {
    use aosm_artifact_operator::engine::pull_one::read_one_file;
    let reg = FakeRegistry::start().await;
    let data: Vec<u8> = (0..=255u8).cycle().take(200 * 1024).collect();
    let (digest, layer) = seed_file_artifact(&reg, "nf/template", "1.0.0", &data, 0);
    let src = endpoint(&reg, "nf/template:1.0.0");

    let read = read_one_file(&src, 1024 * 1024, None).await.expect("read");
    assert_eq!(read.digest, digest);
    let file = read.file.expect("the file");
    assert_eq!(file.data, data, "byte-exact");
    assert_eq!(file.layer_digest, layer);
    assert_eq!(file.name.as_deref(), Some("template.json"));
    assert_eq!(
        reg.requests_to(Method::GET, &format!("/blobs/{layer}"))
            .len(),
        1
    );

    // Held already: the manifest is fetched, the blob is not.
    let again = read_one_file(&src, 1024 * 1024, Some(&digest))
        .await
        .expect("read");
    assert_eq!((again.digest.as_str(), again.file), (digest.as_str(), None));
    assert_eq!(
        reg.requests_to(Method::GET, &format!("/blobs/{layer}"))
            .len(),
        1
    );
    // Held an older digest: read again.
    let newer = read_one_file(&src, 1024 * 1024, Some("sha256:older"))
        .await
        .expect("read");
    assert!(newer.file.is_some());
}

#[tokio::test]
async fn what_is_not_one_small_file_is_refused_before_its_bytes_are_read() {
    use aosm_artifact_operator::engine::pull_one::read_one_file;
    let reg = FakeRegistry::start().await;
    let big = vec![b'x'; 64 * 1024];
    seed_file_artifact(&reg, "nf/big", "1.0.0", &big, 0);
    let e = read_one_file(&endpoint(&reg, "nf/big:1.0.0"), 64 * 1024 - 1, None)
        .await
        .expect_err("over the limit");
    assert!(matches!(e, EngineError::NotOneFile { .. }), "{e:?}");
    assert!(
        e.to_string().contains("65536 bytes, more than the 65535"),
        "{e}"
    );
    assert!(
        reg.requests_to(Method::GET, "/blobs/").is_empty(),
        "no blob read"
    );

    seed_file_artifact(&reg, "nf/two", "1.0.0", b"{}", 1);
    let e = read_one_file(&endpoint(&reg, "nf/two:1.0.0"), 1024, None)
        .await
        .expect_err("two layers");
    assert!(e.to_string().contains("it has 2 layers"), "{e}");

    let child = image(&reg, "nf/multi", "child", &[10]);
    images::index(&reg, "nf/multi", "1.0.0", &[&child]);
    let e = read_one_file(&endpoint(&reg, "nf/multi:1.0.0"), 1024, None)
        .await
        .expect_err("an index");
    assert!(e.to_string().contains("is an index"), "{e}");
    assert!(
        reg.requests_to(Method::GET, "/blobs/").is_empty(),
        "no blob read"
    );
}

/// Seeds an OCI artifact manifest in `repo` whose `subject` is `subject`, stored by digest
/// only (as referrers are pushed); returns its digest.
fn seed_referrer(
    reg: &FakeRegistry,
    repo: &str,
    subject: &str,
    artifact_type: &str,
    n: u8,
) -> String {
    let config = b"{}".to_vec();
    let config_digest = reg.put_blob(repo, &config);
    let layer = vec![n; 16];
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/octet-stream", "digest": reg.put_blob(repo, &layer), "size": layer.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1},
    });
    let bytes = serde_json::to_vec(&manifest).expect("JSON");
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    reg.put_manifest(
        repo,
        &digest,
        "application/vnd.oci.image.manifest.v1+json",
        &bytes,
    )
}

#[tokio::test]
async fn referrers_are_read_through_the_api_page_by_page_and_filtered() {
    use aosm_artifact_operator::engine::registry::referrers::Discovery;
    let reg = FakeRegistry::start().await.with_referrers_api(2);
    let image = image(&reg, "cnf/app", "1.0.0", &[1000]);
    let mut sboms: Vec<String> = (0..3)
        .map(|n| seed_referrer(&reg, "cnf/app", &image.digest, "application/spdx+json", n))
        .collect();
    let signature = seed_referrer(
        &reg,
        "cnf/app",
        &image.digest,
        "application/vnd.example.sig",
        9,
    );
    let client = endpoint(&reg, "cnf/app:1.0.0").client;

    let (all, how) = client
        .referrers("cnf/app", &image.digest, None)
        .await
        .expect("referrers");
    assert_eq!(how, Discovery::Api);
    let mut found: Vec<String> = all.iter().map(|r| r.digest.clone()).collect();
    found.sort();
    let mut want = sboms.clone();
    want.push(signature.clone());
    want.sort();
    assert_eq!(found, want, "four referrers over two pages");
    assert_eq!(
        reg.requests_to(Method::GET, "/referrers/").len(),
        2,
        "one request a page"
    );

    let (only, _) = client
        .referrers("cnf/app", &image.digest, Some("application/spdx+json"))
        .await
        .expect("referrers");
    let mut only: Vec<String> = only.into_iter().map(|r| r.digest).collect();
    only.sort();
    sboms.sort();
    assert_eq!(only, sboms);

    // A registry without the API (404) and without the fallback tag: none.
    let bare = FakeRegistry::start().await;
    let plain = image_seeded(&bare, "cnf/app", Some("1.0.0"), &[10], 1);
    let (none, how) = endpoint(&bare, "cnf/app:1.0.0")
        .client
        .referrers("cnf/app", &plain.digest, None)
        .await
        .expect("referrers");
    assert_eq!((none.len(), how), (0, Discovery::TagSchema));
}

/// A registry's `Link` is hostile input: one that leaves the referrers path or the
/// registry's origin is refused, and an endless chain of pages stops at the page limit.
#[tokio::test]
async fn hostile_referrers_links_are_refused() {
    let other = FakeRegistry::start().await;
    for (link, expected) in [
        (
            "/v2/cnf/other/referrers/sha256:0".to_string(),
            "leaves the referrers",
        ),
        (
            format!("http://{}/v2/cnf/app/referrers/x", other.host),
            "leaves the referrers",
        ),
        // The same page again and again.
        (
            "/v2/cnf/app/referrers/x?again=1".to_string(),
            "pages of referrers",
        ),
    ] {
        let reg = FakeRegistry::start()
            .await
            .with_referrers_api(10)
            .with_referrers_link(&link);
        let image = image(&reg, "cnf/app", "1.0.0", &[100]);
        let err = endpoint(&reg, "cnf/app:1.0.0")
            .client
            .referrers("cnf/app", &image.digest, None)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(expected), "{link}: {err}");
    }
    assert!(
        other.requests().is_empty(),
        "nothing reached the other origin"
    );
}

/// [`copy_with`] for a copy that brings the referrers along (`-r`).
async fn copy_with_referrers(
    src: &FakeRegistry,
    dst: &FakeRegistry,
    reference: &str,
) -> Result<TransferSummary, EngineError> {
    let opts = TransferOptions {
        concurrency: 2,
        referrers: Some(engine::ReferrerSelection::default()),
        ..Default::default()
    };
    engine::copy(
        &endpoint(src, reference),
        &endpoint(dst, reference),
        &opts,
        &NoProgress,
    )
    .await
}

/// A destination with the referrers API indexes `subject`s itself: the referrers are
/// pushed by digest before the tag, and no referrers tag is written.
#[tokio::test]
async fn referrers_go_to_a_destination_with_the_api_before_the_tag_and_without_a_referrers_tag() {
    let src = FakeRegistry::start().await.with_referrers_api(10);
    let dst = FakeRegistry::start().await.with_referrers_api(10);
    let image = image(&src, "cnf/app", "1.0.0", &[1000]);
    let sbom = seed_referrer(&src, "cnf/app", &image.digest, "application/spdx+json", 1);
    let sbom_sig = seed_referrer(&src, "cnf/app", &sbom, "application/vnd.example.sig", 2);

    let summary = copy_with_referrers(&src, &dst, "cnf/app:1.0.0")
        .await
        .expect("copy");
    assert_eq!(
        (summary.referrers_copied, summary.referrers_skipped),
        (2, 0)
    );
    assert_copied(&dst, "cnf/app", "1.0.0", &image);
    for d in [&sbom, &sbom_sig] {
        assert_eq!(
            dst.manifest("cnf/app", d),
            src.manifest("cnf/app", d),
            "{d}"
        );
    }
    let puts: Vec<String> = dst
        .requests_to(Method::PUT, "/manifests/")
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(
        puts.iter().all(|p| !p.contains("/manifests/sha256-")),
        "no referrers tag where the API exists: {puts:?}"
    );
    assert_eq!(
        puts.last().map(String::as_str),
        Some("/v2/cnf/app/manifests/1.0.0"),
        "the tag is written last: {puts:?}"
    );
}

/// What a source lists as a referrer must name the subject it is listed for: a listing
/// (here the referrers tag schema) that names an unrelated manifest is refused, nothing
/// of it is written, and the artifact is not tagged.
#[tokio::test]
async fn a_source_listing_an_unrelated_manifest_as_referrer_is_refused_and_nothing_is_tagged() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[1000]);
    let other = image_seeded(&src, "cnf/app", Some("other"), &[10], 7);
    let unrelated = seed_referrer(&src, "cnf/app", &other.digest, "application/spdx+json", 3);
    let listed = src.manifest("cnf/app", &unrelated).expect("seeded");
    let lying_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": unrelated, "size": listed.len(),
            "artifactType": "application/spdx+json"}],
    });
    src.put_manifest(
        "cnf/app",
        &image.digest.replace(':', "-"),
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&lying_index).expect("JSON"),
    );

    let err = copy_with_referrers(&src, &dst, "cnf/app:1.0.0")
        .await
        .expect_err("a lying listing is refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("its subject is {}", other.digest)),
        "{msg}"
    );
    assert!(!err.is_transient(), "{msg}");
    assert!(dst.manifest("cnf/app", "1.0.0").is_none(), "not tagged");
    assert!(
        dst.manifest("cnf/app", &unrelated).is_none(),
        "nothing of it written"
    );
}

/// What counts as copied is whether the referrer's manifest was written, not whether its
/// blobs were: a referrer whose blobs the destination already holds is copied; one whose
/// manifest is there but missing from the destination's referrers tag is skipped, and
/// added to the tag.
#[tokio::test]
async fn a_referrer_counts_as_copied_when_its_manifest_is_written_and_a_held_one_joins_the_tag() {
    let src = FakeRegistry::start().await.with_referrers_api(10);
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[1000]);
    let sbom = seed_referrer(&src, "cnf/app", &image.digest, "application/spdx+json", 1);
    let signature = seed_referrer(
        &src,
        "cnf/app",
        &image.digest,
        "application/vnd.example.sig",
        2,
    );
    // The destination holds the SBOM's blobs, and the signature's manifest itself, but
    // no referrers tag.
    dst.put_blob("cnf/app", b"{}");
    dst.put_blob("cnf/app", &[1u8; 16]);
    dst.put_blob("cnf/app", &[2u8; 16]);
    let held = src.manifest("cnf/app", &signature).expect("seeded");
    dst.put_manifest(
        "cnf/app",
        &signature,
        "application/vnd.oci.image.manifest.v1+json",
        &held,
    );

    let summary = copy_with_referrers(&src, &dst, "cnf/app:1.0.0")
        .await
        .expect("copy");
    assert_eq!(
        (summary.referrers_copied, summary.referrers_skipped),
        (1, 1)
    );
    assert_eq!(
        dst.manifest("cnf/app", &sbom),
        src.manifest("cnf/app", &sbom)
    );
    let index = dst
        .manifest("cnf/app", &image.digest.replace(':', "-"))
        .expect("the referrers tag");
    let index: serde_json::Value = serde_json::from_slice(&index).expect("JSON");
    let mut listed: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["digest"].as_str())
        .collect();
    listed.sort();
    let mut want = vec![sbom.as_str(), signature.as_str()];
    want.sort();
    assert_eq!(listed, want);
}
