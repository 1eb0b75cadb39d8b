//! The reconciler's failure handling against an in-process fake API server (in the style
//! of kube-rs's controller-rs `fixtures.rs`, over HTTP instead of a mocked service): what
//! it reads, what status it writes, what it asks the error policy for. No external tool.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::*;
use crate::api::API_VERSION;
use crate::controller::metrics::Metrics;
use crate::transfer::Executor;

/// One request the fake API server received.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    body: Value,
}

#[derive(Default)]
struct Fake {
    /// Answers by path for GETs (absent: 404 as the API server words it).
    objects: BTreeMap<String, (StatusCode, Value)>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Fake>>;

async fn answer(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut fake = fake.lock().unwrap_or_else(|p| p.into_inner());
    fake.seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
    });
    let (status, value) = if method == Method::GET {
        fake.objects.get(&path).cloned().unwrap_or_else(|| {
            let name = path.rsplit('/').next().unwrap_or_default();
            (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "NotFound", "code": 404,
                       "message": format!("\"{name}\" not found")}),
            )
        })
    } else {
        // A status write returns the object with the new status, as the API server does;
        // other writes are echoed back.
        let object = path
            .strip_suffix("/status")
            .and_then(|p| fake.objects.get(p));
        let stored = match object {
            Some((_, object)) => {
                let mut object = object.clone();
                object["status"] = body["status"].clone();
                object
            }
            None => body,
        };
        (StatusCode::OK, stored)
    };
    (status, axum::Json(value))
}

/// A fake API server on a free loopback port, and a context whose client talks to it.
async fn fake_cluster(objects: &[(&str, StatusCode, Value)]) -> (Shared, Arc<Context>) {
    let fake: Shared = Arc::default();
    {
        let mut f = fake.lock().unwrap_or_else(|p| p.into_inner());
        for (path, status, value) in objects {
            f.objects
                .insert((*path).to_string(), (*status, value.clone()));
        }
    }
    let app = Router::new().fallback(answer).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}").parse().expect("a URL");
    let client = kube::Client::try_from(kube::Config::new(url)).expect("a client");
    let ctx = Context::new(
        client,
        Executor::new(2).expect("an executor"),
        Arc::new(Metrics::new()),
        "aosm-system".into(),
        None,
    );
    (fake, Arc::new(ctx))
}

fn seen(fake: &Shared) -> Vec<Seen> {
    fake.lock().unwrap_or_else(|p| p.into_inner()).seen.clone()
}

fn transfer(extra_spec: Value) -> ArtifactTransfer {
    let mut v = json!({
        "apiVersion": API_VERSION, "kind": "ArtifactTransfer",
        "metadata": {"name": "t", "namespace": "ns", "generation": 1, "uid": "u-1"},
        "spec": {
            "source": {"registry": {"image": "registry.example/contoso/cnf:1.0.0"}},
            "destination": {"artifactStore": {
                "storeRef": {"kind": "ClusterArtifactStore", "name": "contoso"},
                "manifest": "m", "artifact": "contoso-cnf", "version": "1.0.0"}}
        }
    });
    for (k, x) in extra_spec.as_object().into_iter().flatten() {
        v["spec"][k] = x.clone();
    }
    serde_json::from_value(v).expect("a transfer")
}

const STORE_PATH: &str = "/apis/artifacts.aosm.dev/v1alpha1/clusterartifactstores/contoso";
const TRANSFER_PATH: &str = "/apis/artifacts.aosm.dev/v1alpha1/namespaces/ns/artifacttransfers/t";
const STATUS_PATH: &str =
    "/apis/artifacts.aosm.dev/v1alpha1/namespaces/ns/artifacttransfers/t/status";

fn store() -> Value {
    json!({
        "apiVersion": API_VERSION, "kind": "ClusterArtifactStore",
        "metadata": {"name": "contoso", "uid": "s-1"},
        "spec": {
            "subscriptionId": "00000000-0000-0000-0000-000000000001",
            "resourceGroup": "rg", "publisher": "contoso", "artifactStore": "store",
            "identity": {"type": "ClientSecret", "secretRef": {"name": "contoso-sp"}}
        }
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[tokio::test]
async fn a_missing_secret_stalls_the_transfer_and_asks_nothing_of_azure() {
    let t = transfer(json!({}));
    let object = serde_json::to_value(&t).expect("JSON");
    let (fake, ctx) = fake_cluster(&[
        (STORE_PATH, StatusCode::OK, store()),
        (TRANSFER_PATH, StatusCode::OK, object),
    ])
    .await;
    let action = reconcile(Arc::new(t), ctx.clone())
        .await
        .expect("a permanent failure is not an error");
    // Re-checked soon, with backoff: the Secret may appear at any time.
    assert!(is_requeue(&action), "{action:?}");

    let requests = seen(&fake);
    let paths: Vec<_> = requests
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert!(paths.contains(&("GET", STORE_PATH)), "{paths:?}");
    assert!(
        paths.contains(&("GET", "/api/v1/namespaces/aosm-system/secrets/contoso-sp")),
        "{paths:?}"
    );
    let patch = requests
        .iter()
        .find(|s| s.method == Method::PATCH && s.path == STATUS_PATH)
        .expect("the status is written");
    let status = &patch.body["status"];
    let stalled = condition(status, "Stalled").expect("Stalled");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "SecretNotFound");
    assert!(
        stalled["message"]
            .as_str()
            .is_some_and(|m| m.contains("contoso-sp")),
        "{stalled}"
    );
    let ready = condition(status, "Ready").expect("Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("SecretNotFound"))
    );
    assert!(condition(status, "Reconciling").is_none(), "{status}");
    assert_eq!(status["observedGeneration"], 1);
    let event = requests
        .iter()
        .find(|s| s.method == Method::POST && s.path.ends_with("/events"))
        .expect("a Warning event");
    assert_eq!(event.body["type"], "Warning", "{}", event.body);
    assert_eq!(event.body["reason"], "SecretNotFound", "{}", event.body);
    // Only the fake API server was asked: the identity was never used.
    assert!(
        requests
            .iter()
            .all(|s| s.method != Method::PATCH || s.path == STATUS_PATH),
        "{paths:?}"
    );
    // Each failure counts towards the backoff (two so far: this call makes the third).
    let again = reconcile(Arc::new(transfer(json!({}))), ctx.clone())
        .await
        .expect("stalled");
    assert!(is_requeue(&again), "{again:?}");
    assert_eq!(ctx.failed("ArtifactTransfer/ns/t"), 3);
}

/// Whether `action` asks for a requeue after some delay (kube's `Action` has no getter).
fn is_requeue(action: &Action) -> bool {
    format!("{action:?}").contains("requeue_after: Some(")
}

#[tokio::test]
async fn an_api_server_failure_is_an_error_for_the_backoff_policy_and_writes_nothing() {
    let broken = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "InternalError", "code": 500, "message": "etcd is down"});
    let (fake, ctx) =
        fake_cluster(&[(STORE_PATH, StatusCode::INTERNAL_SERVER_ERROR, broken)]).await;
    let t = Arc::new(transfer(json!({})));
    let error = reconcile(t.clone(), ctx.clone())
        .await
        .expect_err("the API server failed");
    assert!(matches!(error, Error::Kube(_)), "{error}");
    assert!(
        seen(&fake).iter().all(|s| s.method == Method::GET),
        "nothing is written when the inputs cannot be read"
    );
    let first = error_policy(t.clone(), &error, ctx.clone());
    assert!(is_requeue(&first), "{first:?}");
    assert_eq!(
        ctx.failed("ArtifactTransfer/ns/t"),
        2,
        "the error policy counted one failure"
    );
}

#[tokio::test]
async fn a_suspended_transfer_makes_no_request() {
    let (fake, ctx) = fake_cluster(&[]).await;
    let action = reconcile(Arc::new(transfer(json!({"suspend": true}))), ctx)
        .await
        .expect("nothing to do");
    assert_eq!(action, Action::await_change());
    assert!(seen(&fake).is_empty());
}
