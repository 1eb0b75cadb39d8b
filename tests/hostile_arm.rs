//! A hostile (or broken) ARM endpoint: a store's `armEndpoint` may name any host the
//! admin allowed, and a proxy on the way may send anything, so every byte the AOSM client
//! reads from it is bounded (`src/limits.rs`: `MAX_ARM_RESPONSE_BYTES`,
//! `MAX_ERROR_BODY_BYTES`), `listCredential`'s answer is checked before use, and the
//! ARM token is never sent to an operation URL off the ARM endpoint's host.
//!
//! Each case runs the transfer core in-process against [`ScriptedArm`], an https server
//! (the test CA of `support::emulator`) that also plays Entra ID (it hands out
//! [`ARM_TOKEN`]). Every refusal is checked for its reason, one line naming the problem,
//! no token in it, how many requests it took (a permanent refusal is never retried), and
//! that it came back well before the ARM request timeout (so the size limit ended it, not
//! a clock; a case not over within [`QUICK`] fails instead of hanging). Memory is not
//! measured in-process: [`transfer_file_against_an_endless_manifest_stays_in_bounded_memory`]
//! runs the real binary under GNU time.
//!
//! Peak RSS measured for that test (debug build, 2 cores, four runs): 40,428 to 40,976 KiB
//! (39.5 to 40.0 MiB), in 0.7 to 2.9 s; the same binary's floor is ~39 MiB. Without the
//! cap the binary was still reading the endless answer after a minute. The bound asserted
//! is [`RSS_BOUND_KIB`].

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aosm_artifact_operator::engine::NoProgress;
use aosm_artifact_operator::engine::retry::RetryPolicy;
use aosm_artifact_operator::limits::{MAX_ARM_RESPONSE_BYTES, MAX_ERROR_BODY_BYTES};
use aosm_artifact_operator::transfer::{
    Executor, FileSource, Reason, Source, TransferError, TransferRequest,
};
use bytes::Bytes;
use serde_json::{Value, json};
use support::emulator::*;
use support::scripted_arm::*;
use support::{TestEnv, rt};

trust_emulator_ca!();

/// The scoped registry token of the `listCredential` answers.
const ACR_TOKEN: &str = "hostile-arm-acr-token-value";
const MANIFEST: &str = "hostile-manifest";
const ARTIFACT: &str = "hostile-template";
/// How the manifest GET's path ends.
const MANIFEST_GET: &str = "/artifactManifests/hostile-manifest";
const MIB: usize = 1024 * 1024;
/// Every refusal must come back well within this: the ARM request timeout is 60 s, so a
/// case ended by the size limit (or a check) is never near it.
const QUICK: Duration = Duration::from_secs(30);
/// Peak RSS of the binary refusing an endless manifest: measured at ~40 MiB (see the
/// module documentation) against a ~39 MiB floor; an endless answer buffered whole passes
/// any bound, one cut at 4 MiB stays well under this one.
const RSS_BOUND_KIB: u64 = 56 * 1024;

// ----- what a well-behaved ARM answers ---------------------------------------------------

fn store_answer() -> Reply {
    Reply::json(
        200,
        json!({"id": store_id(PUBLISHER, STORE).path(),
               "properties": {"storeType": "AzureContainerRegistry"}}),
    )
}

fn manifest_answer() -> Reply {
    Reply::json(
        200,
        json!({"properties": {
            "artifacts": [{"artifactName": ARTIFACT, "artifactType": "ArmTemplate", "artifactVersion": "1.0.0"}],
            "artifactManifestState": "Uploading"}}),
    )
}

fn credential(server_url: &str, token: &str) -> Reply {
    Reply::json(
        200,
        json!({"credentialType": "AzureContainerRegistryScopedToken",
               "acrServerUrl": server_url, "username": MANIFEST, "acrToken": token,
               "repositories": [ARTIFACT], "expiry": "2099-01-01T00:00:00Z"}),
    )
}

/// Answers the store and manifest GETs as ARM would, `listCredential` with
/// `list_credential`, and anything else with 404.
fn arm_with(list_credential: Reply) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or_default();
        if path.ends_with("/listCredential") {
            list_credential.clone()
        } else if path.ends_with(&format!("/artifactManifests/{MANIFEST}")) {
            manifest_answer()
        } else if path.ends_with(&format!("/artifactStores/{STORE}")) {
            store_answer()
        } else {
            Reply::json(
                404,
                json!({"error": {"code": "NotFound", "message": "no such thing"}}),
            )
        }
    }
}

/// Answers the store GET as ARM would and the manifest GET with `manifest`.
fn arm_manifest(manifest: Reply) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or_default();
        if path.ends_with(&format!("/artifactManifests/{MANIFEST}")) {
            manifest.clone()
        } else {
            store_answer()
        }
    }
}

/// The endless JSON of a manifest that lists the same artifact again and again.
fn endless_manifest(status: u16) -> Reply {
    Reply::endless(
        status,
        r#"{"properties": {"artifactManifestState": "Uploading", "artifacts": ["#,
        r#"{"artifactName": "a", "artifactType": "ArmTemplate", "artifactVersion": "1.0.0"},"#,
    )
}

/// A valid manifest answer of at least `size` bytes (many artifacts).
fn big_manifest(size: usize) -> Bytes {
    let entry = json!({"artifactName": ARTIFACT, "artifactType": "ArmTemplate", "artifactVersion": "1.0.0"})
        .to_string();
    let count = size / (entry.len() + 1) + 1;
    let list = vec![entry; count].join(",");
    Bytes::from(format!(
        r#"{{"properties": {{"artifactManifestState": "Uploading", "artifacts": [{list}]}}}}"#
    ))
}

// ----- running the transfer core ----------------------------------------------------------

fn template() -> Source {
    Source::File(FileSource {
        name: "template.json".into(),
        media_type: "application/json".into(),
        data: b"{\"resources\":[]}".to_vec(),
    })
}

/// Pushes a template into `arm`'s store and expects it to fail with `reason` quickly;
/// checks the message is one line without a secret or token and contains `needles`.
#[track_caller]
fn refused(arm: &ScriptedArm, reason: Reason, needles: &[&str]) -> TransferError {
    let exec = executor();
    let request = push(
        template(),
        store_artifact(
            arm.store_at(store_id(PUBLISHER, STORE), V2023),
            MANIFEST,
            ARTIFACT,
            "1.0.0",
        ),
    );
    let started = Instant::now();
    check_refusal(push_bounded(&exec, &request), started, reason, needles)
}

/// Runs `request`, failing the test (instead of hanging) if it is not over within
/// [`QUICK`].
#[track_caller]
fn push_bounded(exec: &Executor, request: &TransferRequest) -> Result<(), TransferError> {
    bounded(exec.execute(request, &NoProgress)).map(|_| ())
}

/// `fut` on the harness runtime; fails the test if it is not over within [`QUICK`].
#[track_caller]
fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    rt::block_on(async { tokio::time::timeout(QUICK, fut).await })
        .unwrap_or_else(|_| panic!("not over within {QUICK:?}: an answer was not bounded"))
}

/// The checks of [`refused`] on any result.
#[track_caller]
fn check_refusal(
    result: Result<(), TransferError>,
    started: Instant,
    reason: Reason,
    needles: &[&str],
) -> TransferError {
    let elapsed = started.elapsed();
    let err = result.expect_err("the hostile answer must be refused");
    eprintln!("[{}] {} ({elapsed:.1?})", err.reason, err.message);
    assert_eq!(err.reason, reason, "{err}");
    assert!(elapsed < QUICK, "took {elapsed:?}: not ended by the limit");
    assert!(!err.message.contains(['\n', '\r']), "one line: {err}");
    assert!(err.message.len() < 1000, "a short line: {err}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert_no_secrets("the error", &text, &[ARM_TOKEN, CLIENT_SECRET, ACR_TOKEN]);
    }
    for needle in needles {
        assert!(err.message.contains(needle), "should say {needle:?}: {err}");
    }
    err
}

/// Every ARM request `arm` saw carried our bearer token (so a listener that saw none
/// was not sent it).
fn assert_arm_saw_the_token(arm: &ScriptedArm) {
    let seen = arm.seen();
    assert!(!seen.is_empty(), "the ARM server saw no request");
    let bearer = format!("Bearer {ARM_TOKEN}");
    for s in seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(bearer.as_str()),
            "{} {}",
            s.method,
            s.path
        );
    }
}

fn limit_text(bytes: usize) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB limit", bytes / MIB)
    } else {
        format!("{} KiB limit", bytes / 1024)
    }
}

// ----- answers too large or without end ---------------------------------------------------

#[test]
fn endless_entra_token_answer_is_cut_at_the_limit() {
    // The authority host a store names answers its token request without end: the
    // identity library reads it through our capped transport.
    let arm = ScriptedArm::https_with_token(
        Reply::endless(200, r#"{"token_type": "Bearer", "access_token": ""#, "x"),
        arm_manifest(manifest_answer()),
    );
    let err = refused(&arm, Reason::Forbidden, &["MAX_TOKEN_RESPONSE_BYTES"]);
    assert!(arm.seen().is_empty(), "no ARM call without a token: {err}");
    // What the kernel buffers on loopback comes on top of the 128 KiB read.
    assert!(
        arm.served() < 32 * MIB as u64,
        "the endless answer was read on: {} bytes served",
        arm.served()
    );
}

#[test]
fn endless_manifest_body_is_cut_at_the_limit() {
    let arm = ScriptedArm::https(arm_manifest(endless_manifest(200)));
    refused(
        &arm,
        Reason::TransferFailed,
        &[
            "GET artifact manifest",
            &format!("answer from {}", arm.url()),
            &limit_text(MAX_ARM_RESPONSE_BYTES),
        ],
    );
    assert_eq!(
        arm.count(MANIFEST_GET),
        1,
        "a body over the limit is permanent: asked once"
    );
    assert!(
        arm.served() >= MAX_ARM_RESPONSE_BYTES as u64,
        "the client read up to the limit before refusing ({} bytes served)",
        arm.served()
    );
}

#[test]
fn manifest_of_5_mib_announced_by_content_length_is_refused_unread() {
    let body = big_manifest(5 * MIB);
    let len = body.len();
    let arm = ScriptedArm::https(arm_manifest(Reply {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        payload: Payload::Fixed(body),
    }));
    refused(
        &arm,
        Reason::TransferFailed,
        &[
            "GET artifact manifest",
            &arm.url(),
            &limit_text(MAX_ARM_RESPONSE_BYTES),
            &format!("(Content-Length {len})"),
        ],
    );
    assert_eq!(arm.count(MANIFEST_GET), 1);
}

#[test]
fn manifest_of_5_mib_without_content_length_is_cut_at_the_limit() {
    let arm = ScriptedArm::https(arm_manifest(Reply {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        payload: Payload::Chunked(big_manifest(5 * MIB)),
    }));
    let err = refused(
        &arm,
        Reason::TransferFailed,
        &[
            "GET artifact manifest",
            &arm.url(),
            &limit_text(MAX_ARM_RESPONSE_BYTES),
        ],
    );
    assert!(!err.message.contains("Content-Length"), "{err}");
    assert_eq!(arm.count(MANIFEST_GET), 1);
}

#[test]
fn manifest_just_under_the_limit_is_read() {
    // The control of the two cases above: a valid answer below the limit is used.
    let body = big_manifest(MAX_ARM_RESPONSE_BYTES - 64 * 1024);
    assert!(body.len() < MAX_ARM_RESPONSE_BYTES);
    let arm = ScriptedArm::https(arm_manifest(Reply {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        payload: Payload::Chunked(body),
    }));
    // The manifest is read and the artifact found in it; the next step, listCredential,
    // gets the store's answer from this server and is what fails.
    refused(
        &arm,
        Reason::TransferFailed,
        &["POST listCredential", "missing field `credentialType`"],
    );
    assert_eq!(arm.count(MANIFEST_GET), 1);
    assert_eq!(arm.count("/listCredential"), 1);
}

#[test]
fn endless_403_error_body_is_cut_and_the_status_decides() {
    let arm = ScriptedArm::https(arm_manifest(Reply::endless(
        403,
        r#"{"error": {"code": "AuthorizationFailed", "message": ""#,
        "denied and denied again ",
    )));
    refused(
        &arm,
        Reason::Forbidden,
        &[
            "GET artifact manifest",
            &format!("error body from {}", arm.url()),
            &limit_text(MAX_ERROR_BODY_BYTES),
        ],
    );
    assert_eq!(arm.count(MANIFEST_GET), 1, "403 is not retried");
}

#[test]
fn endless_503_error_body_is_cut_and_retried_a_bounded_number_of_times() {
    // A 5xx stays transient (a proxy's large error page is common): each attempt reads at
    // most the error-body limit, and the attempts are those of the retry policy.
    let arm = ScriptedArm::https(arm_manifest(Reply::endless(
        503,
        "<html><body>",
        "Service Unavailable ",
    )));
    refused(
        &arm,
        Reason::TransientFailure,
        &[
            "GET artifact manifest",
            &format!("error body from {}", arm.url()),
            &limit_text(MAX_ERROR_BODY_BYTES),
        ],
    );
    assert_eq!(
        arm.count(MANIFEST_GET) as u32,
        RetryPolicy::default().max_attempts
    );
}

#[test]
fn endless_list_credential_body_is_cut_at_the_limit() {
    let arm = ScriptedArm::https(arm_with(Reply::endless(
        200,
        r#"{"credentialType": "AzureContainerRegistryScopedToken", "repositories": ["#,
        r#""hostile-template","#,
    )));
    refused(
        &arm,
        Reason::TransferFailed,
        &[
            "POST listCredential",
            &arm.url(),
            &limit_text(MAX_ARM_RESPONSE_BYTES),
        ],
    );
    assert_eq!(arm.count("/listCredential"), 1, "not retried");
}

// ----- listCredential answers that cannot be used -----------------------------------------

#[test]
fn list_credential_with_a_path_in_acr_server_url_is_refused() {
    let arm = ScriptedArm::https(arm_with(credential(
        "https://evil.example/path?x",
        ACR_TOKEN,
    )));
    refused(
        &arm,
        Reason::TransferFailed,
        &[
            "POST listCredential",
            "acrServerUrl \"https://evil.example/path?x\"",
            "path, query",
        ],
    );
}

#[test]
fn list_credential_with_a_plain_http_acr_server_url_is_refused() {
    let arm = ScriptedArm::https(arm_with(credential("http://myacr.azurecr.io", ACR_TOKEN)));
    refused(
        &arm,
        Reason::TransferFailed,
        &["POST listCredential", "acrServerUrl", "does not use https"],
    );
}

#[test]
fn list_credential_with_an_empty_token_is_refused() {
    let arm = ScriptedArm::https(arm_with(credential("myacr.azurecr.io", "")));
    refused(
        &arm,
        Reason::TransferFailed,
        &["POST listCredential", "empty acrToken"],
    );
}

#[test]
fn list_credential_with_an_oversized_token_is_refused_without_quoting_it() {
    let token = format!("{ACR_TOKEN}-{}", "x".repeat(9000));
    let arm = ScriptedArm::https(arm_with(credential("myacr.azurecr.io", &token)));
    let err = refused(
        &arm,
        Reason::TransferFailed,
        &[
            "POST listCredential",
            "acrToken is",
            "more than the 8192 allowed",
        ],
    );
    assert!(!err.message.contains("xxxxxxxx"), "{err}");
}

#[test]
fn list_credential_with_a_malformed_answer_quotes_none_of_it() {
    // A type error in the answer: serde would quote the offending value (the token).
    let arm = ScriptedArm::https(arm_with(Reply::json(
        200,
        json!({"credentialType": "AzureContainerRegistryScopedToken",
               "acrServerUrl": "myacr.azurecr.io", "username": MANIFEST,
               "acrToken": ACR_TOKEN, "repositories": ACR_TOKEN,
               "expiry": "2099-01-01T00:00:00Z"}),
    )));
    refused(
        &arm,
        Reason::TransferFailed,
        &["POST listCredential", "wrong type", "line 1 column"],
    );
}

// ----- the ARM token stays on the ARM host ------------------------------------------------

/// An ARM server answering updateState with 202 and `headers`, and operation URLs with
/// `poll`.
fn update_state_arm(
    headers: Vec<(&'static str, String)>,
    poll: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> ScriptedArm {
    let polls = AtomicU64::new(0);
    ScriptedArm::https(move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or_default();
        if path.ends_with("/updateState") {
            Reply::empty(202, headers.clone())
        } else if path.contains("/operation") {
            poll(polls.fetch_add(1, Ordering::Relaxed) as usize)
        } else {
            store_answer()
        }
    })
}

/// `mark_uploaded` of [`MANIFEST`] in `arm`'s store.
fn mark_uploaded(arm: &ScriptedArm) -> Result<(), TransferError> {
    let exec: Executor = executor();
    bounded(exec.mark_uploaded(&arm.store_at(store_id(PUBLISHER, STORE), V2023), MANIFEST))
}

/// A listener that records what reaches it (and answers 200 `{}`).
fn recorder(tls: bool) -> ScriptedArm {
    let ok = |_: &Seen| Reply::json(200, json!({}));
    if tls {
        ScriptedArm::https(ok)
    } else {
        ScriptedArm::plain(ok)
    }
}

#[track_caller]
fn assert_untouched(recorder: &ScriptedArm) {
    let seen = recorder.seen();
    assert!(
        seen.iter().all(|s| s.authorization.is_none()),
        "the ARM token reached another listener: {seen:?}"
    );
    assert!(seen.is_empty(), "nothing is sent there at all: {seen:?}");
}

#[test]
fn update_state_refuses_a_plain_http_location() {
    let other = recorder(false);
    let arm = update_state_arm(
        vec![("location", format!("{}/operationResults/1", other.url()))],
        |_| Reply::empty(200, vec![]),
    );
    let started = Instant::now();
    check_refusal(
        mark_uploaded(&arm),
        started,
        Reason::TransferFailed,
        &[
            "POST updateState",
            "Location URL uses http:// instead of https://",
            &format!(
                "ARM token is only sent over https to the ARM endpoint {}",
                arm.url()
            ),
        ],
    );
    assert_untouched(&other);
    assert_arm_saw_the_token(&arm);
    assert_eq!(arm.count("/operationResults/1"), 0);
}

#[test]
fn update_state_refuses_a_location_on_another_host() {
    let other = recorder(true);
    // The test CA's certificate is valid for localhost too: only our check stops it.
    let arm = update_state_arm(
        vec![(
            "location",
            format!("https://localhost:{}/operationResults/1", other.port()),
        )],
        |_| Reply::empty(200, vec![]),
    );
    let started = Instant::now();
    check_refusal(
        mark_uploaded(&arm),
        started,
        Reason::TransferFailed,
        &[
            "POST updateState",
            &format!(
                "Location URL points at localhost:{}, another host",
                other.port()
            ),
        ],
    );
    assert_untouched(&other);
    assert_arm_saw_the_token(&arm);
}

#[test]
fn update_state_refuses_an_azure_async_operation_on_another_host() {
    let other = recorder(true);
    let arm = update_state_arm(
        vec![(
            "azure-asyncoperation",
            format!("https://localhost:{}/operationStatuses/1", other.port()),
        )],
        |_| Reply::json(200, json!({"status": "Succeeded"})),
    );
    let started = Instant::now();
    check_refusal(
        mark_uploaded(&arm),
        started,
        Reason::TransferFailed,
        &[
            "Azure-AsyncOperation URL points at localhost",
            "another host",
        ],
    );
    assert_untouched(&other);
}

#[test]
fn update_state_refuses_a_second_location_on_another_host() {
    // The first hop (relative, so on the ARM host) is followed; the 202 it answers names
    // another host.
    let other = recorder(true);
    let next = format!("https://localhost:{}/operationResults/2", other.port());
    let arm = update_state_arm(
        vec![("location", "/operationResults/1".into())],
        move |_| Reply::empty(202, vec![("location", next.clone())]),
    );
    let started = Instant::now();
    check_refusal(
        mark_uploaded(&arm),
        started,
        Reason::TransferFailed,
        &[
            "poll updateState",
            "Location URL points at localhost",
            "another host",
        ],
    );
    assert_untouched(&other);
    assert_eq!(arm.count("/operationResults/1"), 1, "{:?}", arm.seen());
    assert_arm_saw_the_token(&arm);
}

#[test]
fn a_redirect_to_another_host_does_not_carry_the_arm_token() {
    let other = recorder(true);
    let target = format!("https://localhost:{}/elsewhere", other.port());
    let arm = ScriptedArm::https(arm_manifest(Reply::empty(307, vec![("location", target)])));
    let exec = executor();
    let request = push(
        template(),
        store_artifact(
            arm.store_at(store_id(PUBLISHER, STORE), V2023),
            MANIFEST,
            ARTIFACT,
            "1.0.0",
        ),
    );
    // The redirect is followed (reqwest's policy), without the Authorization header; the
    // other host's `{}` lists no artifact.
    let started = Instant::now();
    check_refusal(
        push_bounded(&exec, &request),
        started,
        Reason::ArtifactNotInManifest,
        &[ARTIFACT],
    );
    let seen = other.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].authorization, None, "{seen:?}");
}

// ----- operations on the ARM host are followed --------------------------------------------

#[test]
fn update_state_follows_a_location_on_the_arm_host() {
    let arm = Arc::new(Mutex::new(None::<String>));
    let url = arm.clone();
    let server = ScriptedArm::https(move |seen: &Seen| {
        let base = url.lock().unwrap().clone().unwrap_or_default();
        let path = seen.path.split('?').next().unwrap_or_default().to_string();
        if path.ends_with("/updateState") {
            Reply::empty(
                202,
                vec![
                    ("location", format!("{base}/operationResults/1")),
                    ("retry-after", "0".into()),
                ],
            )
        } else if path.ends_with("/operationResults/1") {
            Reply::empty(
                202,
                vec![("location", format!("{base}/operationResults/2"))],
            )
        } else if path.ends_with("/operationResults/2") {
            Reply::json(200, json!({"artifactManifestState": "Uploaded"}))
        } else {
            store_answer()
        }
    });
    *arm.lock().unwrap() = Some(server.url());
    mark_uploaded(&server).expect("the operation is followed to its end");
    assert_eq!(server.count("/operationResults/1"), 1);
    assert_eq!(server.count("/operationResults/2"), 1);
    assert_arm_saw_the_token(&server);
}

#[test]
fn update_state_follows_an_azure_async_operation_until_it_succeeds() {
    let arm = update_state_arm(
        vec![("azure-asyncoperation", "/operationStatuses/1".into())],
        |n| {
            Reply::json(
                200,
                json!({"status": if n == 0 { "InProgress" } else { "Succeeded" }}),
            )
        },
    );
    mark_uploaded(&arm).expect("the operation is followed to its end");
    assert_eq!(
        arm.count("/operationStatuses/1"),
        2,
        "200 InProgress is not the end"
    );
}

#[test]
fn update_state_reports_a_failed_azure_async_operation() {
    let arm = update_state_arm(
        vec![("azure-asyncoperation", "/operationStatuses/1".into())],
        |_| {
            Reply::json(
                200,
                json!({"status": "Failed",
                       "error": {"code": "ManifestLocked", "message": "the manifest is locked"}}),
            )
        },
    );
    let started = Instant::now();
    check_refusal(
        mark_uploaded(&arm),
        started,
        Reason::TransferFailed,
        &[
            "POST updateState",
            "ManifestLocked",
            "the manifest is locked",
        ],
    );
}

// ----- the real binary, measured ----------------------------------------------------------

#[test]
fn transfer_file_against_an_endless_manifest_stays_in_bounded_memory() {
    let arm = ScriptedArm::https(arm_manifest(endless_manifest(200)));
    let env = TestEnv::new();
    let file = env.write(
        "transfer.yaml",
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: hostile-sp, namespace: aosm-system}}
stringData: {{tenantId: "{TENANT}", clientId: "{CLIENT}", clientSecret: "{CLIENT_SECRET}"}}
---
apiVersion: artifacts.aosm.dev/v1alpha1
kind: ClusterArtifactStore
metadata: {{name: hostile}}
spec:
  subscriptionId: "{SUB}"
  resourceGroup: {RG}
  publisher: {PUBLISHER}
  artifactStore: {STORE}
  armEndpoint: {arm}
  authorityHost: {arm}
  identity: {{type: ClientSecret, secretRef: {{name: hostile-sp}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: nf-template, namespace: default}}
data:
  template.json: '{{"resources":[]}}'
---
apiVersion: artifacts.aosm.dev/v1alpha1
kind: ArtifactTransfer
metadata: {{name: template, namespace: default}}
spec:
  source:
    configMap: {{name: nf-template, key: template.json, mediaType: application/json}}
  destination:
    artifactStore:
      storeRef: {{kind: ClusterArtifactStore, name: hostile}}
      manifest: {MANIFEST}
      artifact: {ARTIFACT}
      version: "1.0.0"
"#,
            arm = arm.url(),
        ),
    );
    let rss_file = env.path("rss.txt");
    let out = env
        .ours_measured(&rss_file)
        .args(["transfer", "-o", "json", "-f"])
        .arg(&file)
        .env("SSL_CERT_FILE", &test_ca().ca_pem)
        .timeout(Duration::from_secs(120))
        .run();
    let rss = support::env::peak_rss_kib(&rss_file);
    eprintln!(
        "[transfer -f, endless manifest] peak RSS {rss} KiB ({:.1} MiB), {:.1?}",
        rss as f64 / 1024.0,
        out.elapsed
    );
    out.assert_code(1);
    let statuses: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("statuses are JSON ({e})\n{out}"));
    let ready = statuses[0]["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .unwrap_or_else(|| panic!("no Ready condition\n{out}"))
        .clone();
    assert_eq!(ready["status"], "False", "{out}");
    assert_eq!(ready["reason"], "TransferFailed", "{out}");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&limit_text(MAX_ARM_RESPONSE_BYTES)) && message.contains(&arm.url()),
        "the condition names the limit and the endpoint: {message}"
    );
    assert_no_secrets(
        "the binary's output",
        &format!("{}{}", out.stdout, out.stderr),
        &[ARM_TOKEN, CLIENT_SECRET],
    );
    assert_eq!(arm.count(MANIFEST_GET), 1, "not retried");
    assert!(
        rss < RSS_BOUND_KIB,
        "peak RSS {rss} KiB is above the bound {RSS_BOUND_KIB} KiB\n{out}"
    );
}

// ----- answers that are transient in ARM ---------------------------------------------------

/// Answers the store GET with `first` on its first `times` requests, as ARM would after.
fn arm_store_answering(first: Reply, times: usize) -> (ScriptedArm, Arc<AtomicU64>) {
    let store_gets = Arc::new(AtomicU64::new(0));
    let count = store_gets.clone();
    let arm = ScriptedArm::https(move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or_default();
        if path.ends_with(&format!("/artifactStores/{STORE}")) {
            if (count.fetch_add(1, Ordering::SeqCst) as usize) < times {
                return first.clone();
            }
            return store_answer();
        }
        Reply::json(
            404,
            json!({"error": {"code": "NotFound", "message": "no such thing"}}),
        )
    });
    (arm, store_gets)
}

/// ARM answers 409 Conflict while another operation on the resource runs: retried with
/// backoff, never a permanent failure.
#[test]
fn arm_409_conflict_is_retried_until_it_passes() {
    let (arm, gets) = arm_store_answering(
        Reply::json(
            409,
            json!({"error": {"code": "AnotherOperationInProgress", "message": "Another operation is in progress."}}),
        ),
        2,
    );
    let exec = executor();
    let store = arm.store_at(store_id(PUBLISHER, STORE), V2023);
    let store_type = bounded(exec.store_type(&store)).expect("retried past the 409s");
    assert_eq!(store_type, "AzureContainerRegistry");
    assert_eq!(gets.load(Ordering::SeqCst), 3);
}

/// ARM answers 401 to a token (expired, or ARM's clock ahead of ours): the client asks
/// Entra ID for a fresh token at once and sends the request again.
#[test]
fn arm_401_is_retried_with_a_fresh_token() {
    let (arm, gets) = arm_store_answering(
        Reply::json(
            401,
            json!({"error": {"code": "ExpiredAuthenticationToken", "message": "The access token expiry UTC time is earlier than current UTC time."}}),
        ),
        1,
    );
    let exec = executor();
    let store = arm.store_at(store_id(PUBLISHER, STORE), V2023);
    let store_type = bounded(exec.store_type(&store)).expect("retried with a fresh token");
    assert_eq!(store_type, "AzureContainerRegistry");
    assert_eq!(gets.load(Ordering::SeqCst), 2);
    assert_eq!(arm.token_requests(), 2, "a second token was asked for");
    assert_arm_saw_the_token(&arm);
}

/// A 401 that does not go away is reported as transient (the controller keeps retrying
/// with backoff and says so), never as a permanent refusal.
#[test]
fn arm_401_that_persists_is_transient() {
    let (arm, _) = arm_store_answering(
        Reply::json(
            401,
            json!({"error": {"code": "InvalidAuthenticationToken", "message": "The access token is invalid."}}),
        ),
        usize::MAX,
    );
    let exec = executor();
    let store = arm.store_at(store_id(PUBLISHER, STORE), V2023);
    let err = bounded(exec.store_type(&store)).expect_err("401 every time");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.reason, Reason::TransientFailure);
    assert!(err.message.contains("InvalidAuthenticationToken"), "{err}");
    assert!(!err.message.contains(ARM_TOKEN));
}
