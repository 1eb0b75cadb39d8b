//! The AOSM client against Microsoft's own examples: for each stable api-version
//! (2023-09-01, 2024-04-15, 2025-03-30), an ARM endpoint ([`ScriptedArm`]) answers exactly
//! the response bodies of the official `Microsoft.HybridNetwork` examples
//! (`tests/fixtures/aosm-spec/`, copied verbatim; `SOURCES.md` names their source), with
//! only the registry host (`acrServerUrl`) and the ARM host of the operation URL adapted
//! to this test, and a push, a pull and `updateState` run through the transfer core.
//!
//! What the examples hold that a client must meet, each checked here:
//! - `listCredential` answers `"repositories": [""]`, `acrServerUrl` without a scheme and
//!   an `expiry` in 2022: the transfer uses `<artifact>` (as `az aosm` pushes), talks https,
//!   and uses the stale credential instead of calling `listCredential` in a loop (one call
//!   for the push and the pull together);
//! - the manifest lists `nginx` at version `v1`: a pull takes it as listed;
//! - the store and manifest ids differ from the request path (`UnityCloud`, no resource
//!   group): nothing is read from them;
//! - `updateState` answers 202 with only a `Location` (an `operationStatuses` URL with
//!   api-version 2021-05-01); a later 202 without a new `Location` keeps the same URL; the
//!   final 200 body is the example's.
//!
//! The registry is a real `docker-registry` (TLS from the test CA, htpasswd with the
//! examples' `dummyuser` / `dummytoken`); the fixtures in it are made by crane.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use aosm_artifact_operator::aosm::StoreId;
use serde_json::{Value, json};
use support::emulator::*;
use support::fixtures::{self, Flavor};
use support::registry::{Registry, RegistryOptions};
use support::scripted_arm::*;
use support::{TestEnv, rt};

trust_emulator_ca!();

/// An official example of `version`, parsed.
fn example(version: &str, name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/aosm-spec/{version}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The answers of one api-version's examples.
struct Examples {
    store: Value,
    manifest: Value,
    credential: Value,
    update_state: Value,
}

impl Examples {
    /// The examples of `version`. The index this project reads the specification through
    /// holds no ArtifactStoreGet or ListCredential example of 2023-09-01: its store comes
    /// from ArtifactStoreCreate (200) and its credential from 2024-04-15 (see SOURCES.md).
    fn of(version: &str) -> Self {
        let store = if version == "2023-09-01" {
            example(version, "ArtifactStoreCreate")["responses"]["200"]["body"].clone()
        } else {
            example(version, "ArtifactStoreGet")["responses"]["200"]["body"].clone()
        };
        let credential_version = if version == "2023-09-01" {
            "2024-04-15"
        } else {
            version
        };
        Examples {
            store,
            manifest: example(version, "ArtifactManifestGet")["responses"]["200"]["body"].clone(),
            credential: example(credential_version, "ArtifactManifestListCredential")["responses"]
                ["200"]["body"]
                .clone(),
            update_state: example(version, "ArtifactManifestUpdateState"),
        }
    }
}

/// The ARM host of an absolute URL replaced by `origin` (scheme, host and port).
fn on_origin(url: &str, origin: &str) -> String {
    let u = url::Url::parse(url).expect("an absolute URL");
    let path_and_query = &url[u.origin().ascii_serialization().len()..];
    format!("{origin}{path_and_query}")
}

/// An ARM endpoint answering the examples of `ex`, naming `registry` as the ACR.
fn spec_arm(ex: &Examples, registry: &str) -> (ScriptedArm, Arc<AtomicUsize>) {
    let origin: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let polls = Arc::new(AtomicUsize::new(0));
    let mut credential = ex.credential.clone();
    credential["acrServerUrl"] = json!(registry);
    let location = ex.update_state["responses"]["202"]["headers"]["location"]
        .as_str()
        .expect("the example's Location")
        .to_string();
    let final_body = ex.update_state["responses"]["200"]["body"].clone();
    let (store, manifest) = (ex.store.clone(), ex.manifest.clone());
    let (script_origin, script_polls) = (origin.clone(), polls.clone());
    let arm = ScriptedArm::https(move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or_default();
        let origin = script_origin.get().expect("origin set before any request");
        if path.ends_with("/listCredential") && seen.method == "POST" {
            Reply::json(200, credential.clone())
        } else if path.ends_with("/updateState") && seen.method == "POST" {
            Reply::empty(202, vec![("location", on_origin(&location, origin))])
        } else if path.contains("/operationStatuses/") {
            // First poll: still running, no new Location (the client keeps the URL).
            if script_polls.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::empty(202, vec![])
            } else {
                Reply::json(200, final_body.clone())
            }
        } else if path.contains("/artifactManifests/") {
            Reply::json(200, manifest.clone())
        } else if path.contains("/artifactStores/") {
            Reply::json(200, store.clone())
        } else {
            Reply::json(
                404,
                json!({"error": {"code": "NotFound", "message": "not in the examples"}}),
            )
        }
    });
    origin.set(arm.url()).expect("origin set once");
    (arm, polls)
}

/// The request path of the examples: `subid`, `rg`, `TestPublisher`, `TestArtifactStore`.
fn example_store_id(ex: &Examples) -> StoreId {
    let _ = ex;
    StoreId {
        subscription_id: "subid".into(),
        resource_group: "rg".into(),
        publisher: "TestPublisher".into(),
        artifact_store: "TestArtifactStore".into(),
    }
}

fn transfer_against_the_examples(version: &str) {
    let ex = Examples::of(version);
    let env = TestEnv::new();
    let username = ex.credential["username"].as_str().unwrap().to_string();
    let token = ex.credential["acrToken"].as_str().unwrap().to_string();
    assert_eq!(
        ex.credential["repositories"],
        json!([""]),
        "the examples' hint"
    );
    let store_registry = Registry::start_with(RegistryOptions {
        basic_auth: Some((username, token)),
        tls_files: Some(test_ca().clone()),
        ..Default::default()
    });
    let src = Registry::start();
    let dst = Registry::start();
    // The manifest lists fed-rbac 1.0.0 (pushed here) and nginx v1 (already in the store).
    let artifacts = ex.manifest["properties"]["artifacts"].as_array().unwrap();
    let listed = |name: &str| {
        artifacts
            .iter()
            .find(|a| a["artifactName"] == name)
            .and_then(|a| a["artifactVersion"].as_str())
            .unwrap_or_else(|| panic!("the example lists {name}"))
            .to_string()
    };
    let (push_version, pull_version) = (listed("fed-rbac"), listed("nginx"));
    assert_eq!(pull_version, "v1");
    let image = fixtures::push_image(
        &env,
        &src,
        "team/fed-rbac:1.0",
        &[32 * 1024],
        Flavor::Oci,
        None,
    );
    let nginx = fixtures::push_image(
        &env,
        &store_registry,
        &format!("nginx:{pull_version}"),
        &[16 * 1024],
        Flavor::Docker,
        None,
    );

    let (arm, polls) = spec_arm(&ex, &store_registry.host());
    let store = arm.store_at(example_store_id(&ex), version);
    let manifest = ex.manifest["name"].as_str().unwrap();
    let exec = executor();

    let pushed = run_ok(
        &exec,
        &push(
            registry_source(&src, "team/fed-rbac:1.0"),
            store_artifact(store.clone(), manifest, "fed-rbac", &push_version),
        ),
    );
    assert_eq!(pushed.digest, image.digest);
    assert_eq!(
        pushed.destination_ref,
        format!("{}/fed-rbac:{push_version}", store_registry.host()),
        "repositories [\"\"] name nothing: <artifact>, as az aosm pushes"
    );
    assert_eq!(
        env.crane_digest(&store_registry, &format!("fed-rbac:{push_version}")),
        image.digest
    );

    let pulled = run_ok(
        &exec,
        &pull(
            store_artifact(store.clone(), manifest, "nginx", &pull_version),
            plain_side(&dst.host(), "mirror/nginx:v1"),
        ),
    );
    assert_eq!(pulled.digest, nginx.digest);
    assert_eq!(env.crane_digest(&dst, "mirror/nginx:v1"), nginx.digest);
    assert_eq!(
        arm.count("/listCredential"),
        1,
        "a credential past its expiry (2022) is used, not asked for again"
    );

    rt::block_on(exec.mark_uploaded(&store, manifest)).expect("updateState");
    assert_eq!(arm.count("/updateState"), 1);
    let operation_polls: Vec<Seen> = arm
        .seen()
        .into_iter()
        .filter(|s| s.path.contains("/operationStatuses/"))
        .collect();
    assert_eq!(operation_polls.len(), 2, "202 without Location, then 200");
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    for poll in &operation_polls {
        assert_eq!(poll.method, "GET");
        assert!(
            poll.path.starts_with("/providers/microsoft.hybridnetwork/locations/EASTUS2EUAP/operationStatuses/0b37c625-7e7c-49c5-b86e-c817c85acb5d*B77A34159CA34A0BD446D3BC7EC120649181590DDF991982765DAC1A87491B2D?api-version=2021-05-01"),
            "the example's URL, as given: {}",
            poll.path
        );
        assert_eq!(
            poll.authorization.as_deref(),
            Some(format!("Bearer {ARM_TOKEN}").as_str())
        );
    }
    // Every ARM request went to the examples' request path, percent-encoded as sent.
    for s in arm.seen() {
        assert!(
            s.path.starts_with("/subscriptions/subid/resourceGroups/rg/providers/Microsoft.HybridNetwork/publishers/TestPublisher/artifactStores/TestArtifactStore")
                || s.path.contains("/operationStatuses/"),
            "{} {}",
            s.method,
            s.path
        );
        assert!(
            s.path.contains(&format!("api-version={version}"))
                || s.path.contains("api-version=2021-05-01"),
            "{}",
            s.path
        );
    }
}

#[test]
fn transfer_against_the_2023_09_01_examples() {
    transfer_against_the_examples("2023-09-01");
}

#[test]
fn transfer_against_the_2024_04_15_examples() {
    transfer_against_the_examples("2024-04-15");
}

#[test]
fn transfer_against_the_2025_03_30_examples() {
    transfer_against_the_examples("2025-03-30");
}

/// A push of the example's `v1` entry is refused before anything moves: `1.2.3` is
/// Microsoft's rule for pushing into ACR-backed stores.
#[test]
fn a_push_of_a_v1_artifact_is_refused_with_the_rule() {
    let ex = Examples::of("2025-03-30");
    let src = Registry::start();
    let (arm, _) = spec_arm(&ex, "127.0.0.1:1");
    let exec = executor();
    let err = run(
        &exec,
        &push(
            registry_source(&src, "nginx:v1"),
            store_artifact(
                arm.store_at(example_store_id(&ex), "2025-03-30"),
                "TestManifest",
                "nginx",
                "v1",
            ),
        ),
    )
    .expect_err("v1 cannot be pushed");
    assert_eq!(
        err.reason,
        aosm_artifact_operator::api::Reason::VersionFormat
    );
    assert!(err.message.contains("must look like 1.0.0"), "{err}");
    assert_eq!(arm.seen().len(), 0, "refused before any ARM call");
}
