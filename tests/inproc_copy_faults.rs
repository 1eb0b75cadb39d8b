//! The copy engine against network faults and registry behaviours that only an
//! in-process fake (`inproc/fake_registry.rs`) shows on demand: connections dropped before
//! an answer or in the middle of a chunk, a source body cut short, a credential rotated
//! mid-transfer, blob reads redirected to a storage origin, permanent 404s, `Retry-After`
//! capped by the policy and honoured between chunks, retries that run out, an index
//! written children first, cross-repository mounts. No external tool: part of
//! `make test-unit`. `copy_faults.rs` and `copy_auth_tls.rs` test the same families
//! against real registries through a proxy.

#[path = "inproc/fake_registry.rs"]
mod fake_registry;
#[path = "inproc/images.rs"]
mod images;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aosm_artifact_operator::engine::retry::RetryPolicy;
use aosm_artifact_operator::engine::{
    self, CredentialSource, Credentials, Endpoint, EngineError, NoProgress, Secret,
    TransferOptions, TransferSummary,
};
use axum::http::Method;
use base64::Engine as _;
use fake_registry::{FakeRegistry, Fault, Request, Rule, Server};
use futures_util::future::BoxFuture;
use images::{
    INDEX, Image, assert_copied, endpoint, endpoint_with, image, image_seeded, index, quick_retry,
};

const KIB: usize = 1024;

/// Copies `src` to `dst` one blob at a time (so the Nth request of a kind is a known one).
async fn copy(
    src: &Endpoint,
    dst: &Endpoint,
    chunk_size: Option<u64>,
) -> engine::Result<TransferSummary> {
    let opts = TransferOptions {
        concurrency: 1,
        chunk_size,
        ..Default::default()
    };
    engine::copy(src, dst, &opts, &NoProgress).await
}

/// A `&'static str` for a [`Rule`]'s path part (a digest known only at run time).
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// (`Content-Range` start, status) of every upload PATCH.
fn patches(reg: &FakeRegistry) -> Vec<(Option<u64>, u16)> {
    reg.requests_to(Method::PATCH, "/blobs/uploads/")
        .iter()
        .map(|r| (r.range_start, r.status))
        .collect()
}

/// (`Range`, status) of every GET of blob `digest`.
fn blob_reads(reg: &FakeRegistry, digest: &str) -> Vec<(Option<String>, u16)> {
    reg.requests_to(Method::GET, &format!("/blobs/{digest}"))
        .into_iter()
        .map(|r| (r.range, r.status))
        .collect()
}

/// The `scope` parameters of a token request.
fn scopes(r: &Request) -> Vec<String> {
    url::form_urlencoded::parse(r.query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The `Authorization` value of basic credentials.
fn basic(user: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {pair}")
}

#[tokio::test]
async fn a_connection_dropped_mid_chunk_resumes_from_the_offset_the_registry_reports() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[300 * KIB]);
    // The third 64 KiB chunk of the layer: the connection breaks after 10,000 of its
    // bytes, and the registry keeps nothing of it.
    dst.fault(Rule {
        method: Method::PATCH,
        path_part: "/blobs/uploads/",
        nth: 3,
        fault: Fault::DropAfterBody(10_000),
    });
    let summary = copy(
        &endpoint(&src, "cnf/app:1.0.0"),
        &endpoint(&dst, "cnf/app:1.0.0"),
        Some(64 * KIB as u64),
    )
    .await
    .expect("the copy resumes");
    assert_eq!(summary.digest, image.digest);
    assert_copied(&dst, "cnf/app", "1.0.0", &image);

    // The lost chunk is sent again from its own offset, on the same session; the fake
    // refuses any Content-Range that does not continue the session (416).
    assert_eq!(
        patches(&dst),
        [
            (Some(0), 202),
            (Some(65536), 202),
            (Some(131072), 0),
            (Some(131072), 202),
            (Some(196608), 202)
        ]
    );
    assert_eq!(
        dst.requests_to(Method::GET, "/blobs/uploads/").len(),
        1,
        "the registry is asked once where the upload stands"
    );
    assert_eq!(
        dst.requests_to(Method::POST, "/blobs/uploads/").len(),
        image.blobs.len(),
        "no second session: nothing restarted from 0"
    );
    assert!(
        dst.requests_to(Method::DELETE, "/blobs/uploads/")
            .is_empty()
    );
    // The source is read again only from that offset.
    assert_eq!(
        blob_reads(&src, image.layer(0)),
        [(None, 200), (Some("bytes=131072-".into()), 206)]
    );
}

/// A body larger than the default chunk whose connection breaks (as a server capping
/// bodies does when it answers 413 and closes before reading the rest): the upload goes
/// on in default-size chunks from where the registry stands, and never asks for the
/// large body again.
#[tokio::test]
async fn a_large_body_broken_off_continues_in_default_chunks() {
    const MIB: usize = 1024 * KIB;
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/big", "1", &[20 * MIB]);
    dst.fault(Rule {
        method: Method::PUT,
        path_part: "/blobs/uploads/",
        // The config's monolithic PUT is the first; the layer's single PUT the second.
        nth: 2,
        fault: Fault::DropAfterBody(MIB),
    });
    let summary = copy(
        &endpoint(&src, "cnf/big:1"),
        &endpoint(&dst, "cnf/big:1"),
        Some(64 * MIB as u64),
    )
    .await
    .expect("the upload goes on in smaller chunks");
    assert_eq!(summary.digest, image.digest);
    assert_copied(&dst, "cnf/big", "1", &image);

    let uploads: Vec<(Method, usize, u16)> = dst
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/uploads/") && r.method != Method::POST)
        .filter(|r| r.method != Method::GET && (r.status == 0 || r.body_len > 64 * KIB))
        .map(|r| (r.method, r.body_len, r.status))
        .collect();
    let default = 16 * MIB;
    let layer = 20 * MIB;
    assert_eq!(uploads[0].2, 0, "the first body broke off: {uploads:?}");
    assert!(
        uploads[1..]
            .iter()
            .all(|(_, len, status)| *len <= default && *status < 300),
        "{uploads:?}"
    );
    assert_eq!(
        uploads[1..].iter().map(|(_, len, _)| len).sum::<usize>(),
        layer,
        "{uploads:?}"
    );
}

/// A registry that keeps what arrived of a broken chunk (docker distribution does)
/// reports an offset past the chunk's start. Whatever the engine makes of it (today it
/// abandons the session and starts the blob again), the blob arrives byte-exact, and no
/// session is left open.
#[tokio::test]
async fn a_chunk_the_registry_kept_part_of_still_ends_byte_exact() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await.with_partial_chunks();
    let image = image(&src, "cnf/app", "1.0.0", &[300 * KIB]);
    dst.fault(Rule {
        method: Method::PATCH,
        path_part: "/blobs/uploads/",
        nth: 3,
        fault: Fault::DropAfterBody(10_000),
    });
    copy(
        &endpoint(&src, "cnf/app:1.0.0"),
        &endpoint(&dst, "cnf/app:1.0.0"),
        Some(64 * KIB as u64),
    )
    .await
    .expect("the copy completes");
    assert_copied(&dst, "cnf/app", "1.0.0", &image);
    assert_eq!(dst.open_uploads(), 0, "a session was left open");
    assert!(
        dst.requests_to(Method::PATCH, "/blobs/uploads/")
            .iter()
            .all(|r| r.status != 416),
        "a chunk was sent at an offset the session does not stand at"
    );
}

#[tokio::test]
async fn a_source_body_cut_mid_blob_is_read_again_from_the_chunk_it_broke_in() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[40 * KIB]);
    // The source announces the whole layer and sends 12,000 bytes of it: the break
    // falls in the second 8 KiB chunk.
    src.fault(Rule {
        method: Method::GET,
        path_part: leak(image.layer(0)),
        nth: 1,
        fault: Fault::CutBody(12_000),
    });
    copy(
        &endpoint(&src, "cnf/app:1.0.0"),
        &endpoint(&dst, "cnf/app:1.0.0"),
        Some(8 * KIB as u64),
    )
    .await
    .expect("the copy resumes");
    assert_copied(&dst, "cnf/app", "1.0.0", &image);
    assert_eq!(
        blob_reads(&src, image.layer(0)),
        [(None, 200), (Some("bytes=8192-".into()), 206)],
        "read again from the start of the chunk that broke, not from 0"
    );
    // The broken chunk never completed at the destination (when its request got there
    // at all: status 0) and was sent again on the same session.
    let sent = patches(&dst);
    let accepted: Vec<_> = sent.iter().filter(|p| p.1 == 202).map(|p| p.0).collect();
    assert_eq!(
        accepted,
        [Some(0), Some(8192), Some(16384), Some(24576)],
        "{sent:?}"
    );
    assert!(
        sent.iter().all(|p| p.1 == 202 || *p == (Some(8192), 0)),
        "{sent:?}"
    );
    assert_eq!(dst.requests_to(Method::GET, "/blobs/uploads/").len(), 1);
    assert_eq!(
        dst.requests_to(Method::POST, "/blobs/uploads/").len(),
        image.blobs.len()
    );
}

#[tokio::test]
async fn connections_dropped_before_an_answer_are_retried() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[3000, 4000]);
    let drop_first = |reg: &FakeRegistry, method: Method, path_part: &'static str| {
        reg.fault(Rule {
            method,
            path_part,
            nth: 1,
            fault: Fault::Drop,
        });
    };
    drop_first(&src, Method::GET, "/manifests/");
    drop_first(&src, Method::GET, "/blobs/");
    drop_first(&dst, Method::HEAD, "/blobs/");
    drop_first(&dst, Method::PUT, "/manifests/");
    copy(
        &endpoint(&src, "cnf/app:1.0.0"),
        &endpoint(&dst, "cnf/app:1.0.0"),
        None,
    )
    .await
    .expect("dropped connections are retried");
    assert_copied(&dst, "cnf/app", "1.0.0", &image);
    let statuses = |reg: &FakeRegistry, method: Method, part: &str| -> Vec<u16> {
        reg.requests_to(method, part)
            .iter()
            .map(|r| r.status)
            .collect()
    };
    assert_eq!(statuses(&src, Method::GET, "/manifests/"), [0, 200]);
    assert_eq!(statuses(&dst, Method::PUT, "/manifests/"), [0, 201]);
    let heads = statuses(&dst, Method::HEAD, "/blobs/");
    assert_eq!(heads.len(), image.blobs.len() + 1, "{heads:?}");
    assert_eq!(heads[..2], [0, 404]);
}

/// A credential source like AOSM's `listCredential` cache: `first` until it is told the
/// credential was refused, `second` from then on. Records every call's `refresh`.
struct Rotating {
    calls: Mutex<Vec<bool>>,
}

impl CredentialSource for Rotating {
    fn basic(&self, refresh: bool) -> BoxFuture<'_, engine::Result<(String, Secret)>> {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.push(refresh);
        let password = if calls.contains(&true) {
            "second"
        } else {
            "first"
        };
        Box::pin(async move { Ok(("aosm".to_string(), Secret::new(password))) })
    }
}

#[tokio::test]
async fn a_credential_rotated_mid_transfer_is_asked_for_again_and_stays_at_home() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start()
        .await
        .with_token_server("aosm", "first")
        .await;
    let image = image(&src, "cnf/app", "1.0.0", &[2000, 3000, 4000]);
    // At the second blob upload the password changes and every token is revoked.
    dst.fault(Rule {
        method: Method::POST,
        path_part: "/blobs/uploads/",
        nth: 2,
        fault: Fault::RotatePassword("second"),
    });
    let source = Arc::new(Rotating {
        calls: Mutex::new(Vec::new()),
    });
    let dst_endpoint = endpoint_with(
        &dst,
        "cnf/app:1.0.0",
        Credentials::Dynamic(source.clone()),
        quick_retry(),
    );
    copy(&endpoint(&src, "cnf/app:1.0.0"), &dst_endpoint, None)
        .await
        .expect("the new credential finishes the copy");
    assert_copied(&dst, "cnf/app", "1.0.0", &image);

    let calls = source.calls.lock().expect("calls").clone();
    assert_eq!(
        calls.iter().filter(|r| **r).count(),
        1,
        "asked for a new credential once: {calls:?}"
    );
    let requests = dst.requests();
    let (token_server, registry): (Vec<&Request>, Vec<&Request>) = requests
        .iter()
        .partition(|r| r.server == Server::TokenServer);
    let token_answers: Vec<_> = token_server
        .iter()
        .map(|r| (r.authorization.clone(), r.status))
        .collect();
    assert_eq!(
        token_answers,
        [
            (Some(basic("aosm", "first")), 200),
            (Some(basic("aosm", "first")), 401),
            (Some(basic("aosm", "second")), 200)
        ]
    );
    // The password goes only to the token server, the token only to the registry.
    assert!(
        registry.iter().all(|r| r.auth_scheme() != Some("Basic")),
        "{registry:#?}"
    );
    assert!(
        registry
            .iter()
            .filter(|r| r.path != "/v2/" && r.status != 401)
            .all(|r| r.auth_scheme() == Some("Bearer")),
        "{registry:#?}"
    );
    let refused: Vec<_> = registry.iter().filter(|r| r.status == 401).collect();
    assert_eq!(
        refused.len(),
        2,
        "the ping and the revoked token: {refused:#?}"
    );
}

#[tokio::test]
async fn blob_reads_redirected_to_a_storage_origin_carry_no_credentials() {
    let storage = FakeRegistry::start().await;
    let src = FakeRegistry::start()
        .await
        .with_token_server("reader", "s3cret")
        .await
        .with_blob_redirect(&storage.host);
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[5000, 6000]);
    for (_, data) in &image.blobs {
        storage.put_blob("cnf/app", data);
    }
    let src_endpoint = endpoint_with(
        &src,
        "cnf/app:1.0.0",
        Credentials::basic("reader", "s3cret"),
        quick_retry(),
    );
    copy(&src_endpoint, &endpoint(&dst, "cnf/app:1.0.0"), None)
        .await
        .expect("copied through the redirect");
    assert_copied(&dst, "cnf/app", "1.0.0", &image);

    let redirected = src.requests_to(Method::GET, "/blobs/");
    assert_eq!(redirected.len(), image.blobs.len());
    assert!(
        redirected
            .iter()
            .all(|r| r.status == 307 && r.auth_scheme() == Some("Bearer")),
        "{redirected:#?}"
    );
    let at_storage = storage.requests_to(Method::GET, "/blobs/");
    assert_eq!(at_storage.len(), image.blobs.len());
    assert!(
        at_storage.iter().all(|r| r.authorization.is_none()),
        "the registry's token followed the redirect: {at_storage:#?}"
    );
    assert!(
        src.requests()
            .iter()
            .filter(|r| r.server == Server::TokenServer)
            .all(|r| r.auth_scheme() == Some("Basic")),
        "the token server saw a bearer token"
    );
}

#[tokio::test]
async fn a_404_is_not_retried_and_a_missing_blob_leaves_no_tag_or_session() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let err = copy(
        &endpoint(&src, "cnf/none:1.0.0"),
        &endpoint(&dst, "cnf/none:1.0.0"),
        None,
    )
    .await
    .expect_err("no such tag");
    assert!(matches!(err, EngineError::NotFound { .. }), "{err}");
    assert_eq!(src.requests_to(Method::GET, "/manifests/").len(), 1);

    // A manifest whose second layer the source does not have.
    let image = image(&src, "cnf/app", "1.0.0", &[1000, 2000]);
    let lost = image.layer(1).to_string();
    let partial = FakeRegistry::start().await;
    for (_, data) in &image.blobs[..2] {
        partial.put_blob("cnf/app", data);
    }
    partial.put_manifest("cnf/app", "1.0.0", images::MANIFEST, &image.manifest);
    let err = copy(
        &endpoint(&partial, "cnf/app:1.0.0"),
        &endpoint(&dst, "cnf/app:1.0.0"),
        None,
    )
    .await
    .expect_err("a blob is missing");
    assert!(matches!(err, EngineError::NotFound { .. }), "{err}");
    assert_eq!(blob_reads(&partial, &lost), [(None, 404)], "not retried");
    assert!(dst.requests_to(Method::PUT, "/manifests/").is_empty());
    assert!(dst.manifest("cnf/app", "1.0.0").is_none());
    assert_eq!(dst.open_uploads(), 0, "the upload session was cancelled");
}

#[tokio::test]
async fn retry_after_is_capped_by_the_policy_and_honoured_between_chunks() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let image = image(&src, "cnf/app", "1.0.0", &[200 * KIB]);
    // The source asks for 30 s; the policy caps any delay at 300 ms.
    src.fault(Rule {
        method: Method::GET,
        path_part: "/manifests/",
        nth: 1,
        fault: Fault::Status(429, Some(30)),
    });
    // The destination throttles the second chunk for 1 s.
    dst.fault(Rule {
        method: Method::PATCH,
        path_part: "/blobs/uploads/",
        nth: 2,
        fault: Fault::Status(429, Some(1)),
    });
    let capped = RetryPolicy {
        max_delay: Duration::from_millis(300),
        ..quick_retry()
    };
    copy(
        &endpoint_with(&src, "cnf/app:1.0.0", Credentials::Anonymous, capped),
        &endpoint(&dst, "cnf/app:1.0.0"),
        Some(64 * KIB as u64),
    )
    .await
    .expect("throttling is waited out");
    assert_copied(&dst, "cnf/app", "1.0.0", &image);

    let gets = src.requests_to(Method::GET, "/manifests/");
    let waited = gets[1].at.duration_since(gets[0].at);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
        "Retry-After: 30 under a 300 ms cap: retried after {waited:?}"
    );

    // After the throttled chunk, the next upload request (the status check) waits 1 s.
    let uploads: Vec<Request> = dst
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/uploads/"))
        .collect();
    let throttled = uploads
        .iter()
        .position(|r| r.status == 429)
        .expect("a throttled chunk");
    let next = &uploads[throttled + 1];
    assert_eq!(next.method, Method::GET, "{uploads:#?}");
    let waited = next.at.duration_since(uploads[throttled].at);
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After: 1 on a chunk: continued after {waited:?}"
    );
    assert_eq!(
        patches(&dst),
        [
            (Some(0), 202),
            (Some(65536), 429),
            (Some(65536), 202),
            (Some(131072), 202)
        ]
    );
}

#[tokio::test]
async fn a_blob_that_never_uploads_fails_the_copy_without_a_tag() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    image(&src, "cnf/app", "1.0.0", &[1000, 2000]);
    dst.fault_every(Method::PUT, "/blobs/uploads/", Fault::Status(503, None));
    let err = copy(
        &endpoint(&src, "cnf/app:1.0.0"),
        &endpoint(&dst, "cnf/app:1.0.0"),
        None,
    )
    .await
    .expect_err("the upload never succeeds");
    assert!(
        matches!(err, EngineError::Transient { status: 503, .. }),
        "{err}"
    );
    // Attempts are bounded by the policy (across sessions: an empty session's status
    // reads `0-0`, as distribution words it, which the engine takes for one byte and so
    // starts a new session), every session is abandoned, nothing is tagged.
    assert_eq!(
        dst.requests_to(Method::PUT, "/blobs/uploads/").len(),
        quick_retry().max_attempts as usize
    );
    assert_eq!(
        dst.requests_to(Method::DELETE, "/blobs/uploads/").len(),
        dst.requests_to(Method::POST, "/blobs/uploads/").len()
    );
    assert_eq!(dst.open_uploads(), 0);
    assert!(dst.requests_to(Method::PUT, "/manifests/").is_empty());
    assert!(dst.manifest("cnf/app", "1.0.0").is_none());
}

#[tokio::test]
async fn an_index_is_written_blobs_first_then_children_then_the_tag() {
    let src = FakeRegistry::start().await;
    let dst = FakeRegistry::start().await;
    let amd64: Image = image_seeded(&src, "cnf/multi", None, &[3000, 4000], 1);
    let arm64: Image = image_seeded(&src, "cnf/multi", None, &[5000], 2);
    let (digest, bytes) = index(&src, "cnf/multi", "2.0.0", &[&amd64, &arm64]);
    let summary = copy(
        &endpoint(&src, "cnf/multi:2.0.0"),
        &endpoint(&dst, "cnf/multi:2.0.0"),
        None,
    )
    .await
    .expect("copied");
    assert_eq!(summary.digest, digest);
    let (media_type, stored) = dst
        .manifest_with_type("cnf/multi", "2.0.0")
        .expect("the tag");
    assert_eq!((media_type.as_str(), &stored[..]), (INDEX, &bytes[..]));
    for child in [&amd64, &arm64] {
        for (d, data) in &child.blobs {
            assert_eq!(dst.blob("cnf/multi", d).as_deref(), Some(&data[..]));
        }
    }

    // The fake refuses a manifest whose content is missing; the order is also visible.
    let requests = dst.requests();
    let puts: Vec<(usize, &Request)> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method == Method::PUT && r.path.contains("/manifests/"))
        .collect();
    let paths: Vec<&str> = puts.iter().map(|(_, r)| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/v2/cnf/multi/manifests/{}", amd64.digest),
            format!("/v2/cnf/multi/manifests/{}", arm64.digest),
            "/v2/cnf/multi/manifests/2.0.0".to_string()
        ]
    );
    assert!(puts.iter().all(|(_, r)| r.status == 201));
    let first_put = puts[0].0;
    assert!(
        requests[first_put..]
            .iter()
            .all(|r| !r.path.contains("/blobs/")),
        "a blob request after the first manifest: {requests:#?}"
    );
    assert_eq!(puts[2].0, requests.len() - 1, "the tag is the last write");
}

#[tokio::test]
async fn a_blob_in_another_repository_of_the_registry_is_mounted_not_uploaded() {
    let reg = FakeRegistry::start()
        .await
        .with_token_server("aosm", "pw")
        .await;
    let image = image(&reg, "team/a", "1.0.0", &[7000, 8000]);
    let credentials = Credentials::basic("aosm", "pw");
    let summary = copy(
        &endpoint_with(&reg, "team/a:1.0.0", credentials.clone(), quick_retry()),
        &endpoint_with(&reg, "team/b:1.0.0", credentials, quick_retry()),
        None,
    )
    .await
    .expect("copied by mounts");
    assert_eq!(summary.blobs_mounted, image.blobs.len());
    assert_eq!(summary.bytes, 0);
    assert_copied(&reg, "team/b", "1.0.0", &image);
    let posts = reg.requests_to(Method::POST, "/v2/team/b/blobs/uploads/");
    assert!(
        posts.len() == image.blobs.len()
            && posts.iter().all(|r| {
                r.status == 201
                    && (r.query.contains("from=team/a") || r.query.contains("from=team%2Fa"))
            }),
        "{posts:#?}"
    );
    assert!(reg.requests_to(Method::PATCH, "/blobs/uploads/").is_empty());
    assert!(reg.requests_to(Method::PUT, "/blobs/uploads/").is_empty());
    // The fake mounts only with a token that may pull from the source repository.
    assert!(
        reg.requests()
            .iter()
            .filter(|r| r.server == Server::TokenServer)
            .any(|r| scopes(r) == ["repository:team/b:pull,push", "repository:team/a:pull"]),
        "no token asked for the mount's scopes"
    );
}
