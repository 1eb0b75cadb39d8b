//! The controller's health and metrics server on a real listener, and the
//! `aosm_list_credential_calls_total` series against `aosm-emulator`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aosm_artifact_operator::aosm::list_credential_calls;
use aosm_artifact_operator::controller::health::{Readiness, serve};
use aosm_artifact_operator::controller::metrics::Metrics;
use support::TestEnv;
use support::emulator::*;
use support::fixtures::{self, Flavor};
use support::registry::Registry;

trust_emulator_ca!();

#[tokio::test]
async fn healthz_readyz_metrics_and_shutdown() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let metrics = Arc::new(Metrics::new());
    metrics.reconcile("ArtifactTransfer", "success", Duration::from_millis(5));
    let readiness = Readiness::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        metrics.clone(),
        readiness.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();

    let r = http.get(format!("{base}/healthz")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, "ok");

    let r = http.get(format!("{base}/readyz")).send().await?;
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await?, "not ready");
    readiness.set(true);
    let r = http.get(format!("{base}/readyz")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, "ok");

    let r = http.get(format!("{base}/metrics")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let body = r.text().await?;
    assert!(
        body.contains(r#"aosm_reconciles_total{kind="ArtifactTransfer",outcome="success"} 1"#),
        "{body}"
    );
    assert!(body.contains("aosm_list_credential_calls_total"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    let r = http.get(format!("{base}/nope")).send().await?;
    assert_eq!(r.status(), 404);

    drop(http);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server).await???;
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "server still answers after shutdown"
    );
    Ok(())
}

/// Only this test of the binary talks to ARM, so the process-wide counter is its own.
#[test]
fn list_credential_requests_are_counted_and_exposed() {
    let env = TestEnv::new();
    let src = Registry::start();
    let image = fixtures::push_image(&env, &src, "app/cnf:1.0", &[64 * 1024], Flavor::Oci, None);
    let emu = Emulator::start(&[]);
    let m = "contoso-cnf-manifest";
    emu.create_acr_manifest(m, &[("contoso-cnf", "OCIArtifact", "1.0.0")]);
    assert_eq!(list_credential_calls(), 0);

    let outcome = run_ok(
        &executor(),
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2023, m, "contoso-cnf", "1.0.0"),
        ),
    );
    assert_eq!(outcome.digest, image.digest);
    assert_eq!(emu.list_credential_count(m), 1);
    assert_eq!(list_credential_calls(), 1);
    let text = Metrics::new().encode();
    assert!(
        text.lines()
            .any(|l| l == "aosm_list_credential_calls_total 1"),
        "{text}"
    );
}
