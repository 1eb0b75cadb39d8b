//! Self-test of the test harness, using only the external tools (no binary under test):
//! registries in each mode, the fault proxy, and the Helm HTTP repository server.

mod support;

use std::time::Duration;
use support::fixtures::{self, Flavor};
use support::{Fault, FaultProxy, ProxyConfig, Registry, TestEnv, rt, sha256_digest, wait_for};

#[test]
fn missing_tool_fails_with_a_hint_to_run_the_tools_script() {
    let err = std::panic::catch_unwind(|| support::tools::require("aosm-no-such-tool"))
        .expect_err("require() must panic for a missing tool");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("run scripts/tools.sh"), "{msg}");
}

#[test]
fn password_values_are_passed_but_never_shown() {
    let out = support::Cmd::new("sh")
        .args([
            "-c",
            r#"[ "$1" = "$EXPECTED" ] && echo received; exit 3"#,
            "sh",
        ])
        .env("EXPECTED", "--password=-s3cret")
        .arg("--password=-s3cret")
        .run();
    assert_eq!(
        out.stdout.trim(),
        "received",
        "the argument reaches the program"
    );
    let shown = out.to_string();
    assert!(shown.contains("--password=***"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn plain_registry_roundtrip_crane_and_skopeo() {
    let env = TestEnv::new();
    let reg = Registry::start();
    let image = fixtures::push_image(
        &env,
        &reg,
        "self/oci:1",
        &[200_000, 100_000],
        Flavor::Oci,
        None,
    );
    assert_eq!(env.crane_digest(&reg, "self/oci:1"), image.digest);
    assert_eq!(env.skopeo_digest(&reg, "self/oci:1"), image.digest);
    for blob in image.blobs() {
        assert!(reg.blob_exists("self/oci", &blob));
        assert!(reg.stored_blobs().contains(&blob));
    }
    assert_eq!(reg.tags("self/oci"), vec!["1".to_string()]);
    // The absence check really notices a present tag.
    let present = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.assert_absent(&reg, "self/oci:1")
    }));
    assert!(present.is_err(), "assert_absent passed for an existing tag");
    env.assert_absent(&reg, "self/oci:2");
    env.assert_absent(&reg, "self/nothing:1");
    let (ctype, _) = reg.manifest("self/oci", "1").unwrap();
    assert_eq!(ctype, "application/vnd.oci.image.manifest.v1+json");

    let docker = fixtures::push_image(
        &env,
        &reg,
        "self/docker:1",
        &[1000],
        Flavor::Docker,
        Some("linux/amd64"),
    );
    let (ctype, _) = reg.manifest("self/docker", "1").unwrap();
    assert_eq!(
        ctype,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(env.skopeo_digest(&reg, "self/docker:1"), docker.digest);
}

#[test]
fn two_registries_get_distinct_ports_and_stop_on_drop() {
    let a = Registry::start();
    let b = Registry::start();
    assert_ne!(a.port(), b.port());
    let port = a.port();
    drop(a);
    // Nothing listens there any more.
    wait_for("registry port to close", Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}

#[test]
fn basic_auth_registry_requires_the_password() {
    let env = TestEnv::new();
    let reg = Registry::with_basic_auth("alice", "s3cret-pw");
    fixtures::push_image(&env, &reg, "self/auth:1", &[1000], Flavor::Oci, None);
    let ok = env.crane_digest(&reg, "self/auth:1");
    assert!(ok.starts_with("sha256:"));
    // A sandbox without the credentials is refused.
    let other = TestEnv::new();
    let out = other
        .tool("crane")
        .args(["--insecure", "digest", &reg.reference("self/auth:1")])
        .run();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("UNAUTHORIZED") || out.stderr.contains("401"),
        "{out}"
    );
}

#[test]
fn tls_registry_is_trusted_only_with_its_ca() {
    let env = TestEnv::new();
    let reg = Registry::with_tls();
    assert_eq!(reg.scheme(), "https");
    let image = fixtures::push_image(&env, &reg, "self/tls:1", &[1000], Flavor::Oci, None);
    assert_eq!(env.skopeo_digest(&reg, "self/tls:1"), image.digest);
    // oras verifies against --ca-file.
    env.oras(&reg)
        .args(["manifest", "fetch", "--ca-file"])
        .arg(reg.ca_file())
        .arg(reg.reference("self/tls:1"))
        .ok();
    // Without the CA, certificate verification fails.
    let out = TestEnv::new()
        .tool("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("docker://{}", reg.reference("self/tls:1")))
        .run();
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("certificate"), "{out}");
}

#[test]
fn proxy_passes_traffic_through_unchanged() {
    let env = TestEnv::new();
    let src = Registry::start();
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg, ProxyConfig::default());
    let image = fixtures::push_image(&env, &src, "self/src:1", &[300_000], Flavor::Oci, None);
    // crane pushes through the proxy (uploads use the Location the registry builds from
    // the Host header, so they must come back through the proxy too).
    let dst = format!("{}/self/dst:1", proxy.host());
    env.tool("crane")
        .args(["--insecure", "copy", &src.reference("self/src:1"), &dst])
        .ok();
    assert_eq!(env.crane_digest(&reg, "self/dst:1"), image.digest);
    let image = fixtures::push_image(&env, &reg, "self/src:1", &[300_000], Flavor::Oci, None);
    let seen = proxy.requests();
    assert!(
        seen.iter()
            .any(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/")),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.method == "PUT" && r.path.contains("/manifests/")),
        "{seen:#?}"
    );
    assert_eq!(proxy.request_count() as usize, seen.len());

    // HEAD keeps Content-Length; GET streams identical bytes.
    let layer = &image.layers[0];
    let url = format!("http://{}/v2/self/src/blobs/{layer}", proxy.host());
    let (head_len, body) = rt::block_on(async {
        let c = reqwest::Client::new();
        let head = c.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        let len = head.headers()["content-length"]
            .to_str()
            .unwrap()
            .to_string();
        let body = c.get(&url).send().await.unwrap().bytes().await.unwrap();
        (len, body)
    });
    assert_eq!(head_len, image.layer_sizes[0].to_string());
    assert_eq!(&sha256_digest(&body), layer);
}

#[test]
fn proxy_injects_faults_deterministically() {
    let env = TestEnv::new();
    let reg = Registry::start();
    let image = fixtures::push_image(&env, &reg, "self/f:1", &[200_000], Flavor::Oci, None);
    let proxy = FaultProxy::start(
        &reg,
        ProxyConfig::faults(
            2,
            &[
                Fault::TooManyRequests,
                Fault::Unavailable,
                Fault::DropConnection,
                Fault::TruncateBody,
            ],
        ),
    );
    let url = format!(
        "http://{}/v2/self/f/blobs/{}",
        proxy.host(),
        image.layers[0]
    );
    let results: Vec<String> = rt::block_on(async {
        let c = reqwest::Client::new();
        let mut out = Vec::new();
        for _ in 0..8 {
            let r = match c.get(&url).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    match resp.bytes().await {
                        Ok(b) => format!(
                            "{status} {retry_after:?} {}",
                            sha256_digest(&b) == image.layers[0]
                        ),
                        Err(_) => format!("{status} body-error"),
                    }
                }
                Err(_) => "connection-error".to_string(),
            };
            out.push(r);
        }
        out
    });
    assert_eq!(
        results,
        vec![
            "200 None true",
            "429 Some(\"1\") false",
            "200 None true",
            "503 Some(\"1\") false",
            "200 None true",
            "connection-error",
            "200 None true",
            "200 body-error",
        ],
    );
    assert_eq!(proxy.faults_injected().len(), 4);
}

#[test]
fn proxy_corrupts_one_blob_and_tools_notice() {
    let env = TestEnv::new();
    let reg = Registry::start();
    let image = fixtures::push_image(&env, &reg, "self/c:1", &[100_000], Flavor::Oci, None);
    let proxy = FaultProxy::start(&reg, ProxyConfig::corrupt(&image.layers[0]));
    let dst = Registry::start();
    let out = env
        .tool("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{}", proxy.reference("self/c:1")))
        .arg(format!("docker://{}", dst.reference("self/c:1")))
        .run();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.to_lowercase().contains("digest did not match"),
        "{out}"
    );
    assert!(proxy.requests().iter().any(|r| r.body_tampered));
}

#[test]
fn proxy_stalls_chosen_blobs_until_released() {
    let env = TestEnv::new();
    let reg = Registry::start();
    let image = fixtures::push_image(&env, &reg, "self/s:1", &[500_000], Flavor::Oci, None);
    let proxy = FaultProxy::start(&reg, ProxyConfig::stall(&image.layers, 64 * 1024));
    let url = format!(
        "http://{}/v2/self/s/blobs/{}",
        proxy.host(),
        image.layers[0]
    );
    let fetch = rt::runtime().spawn(async move {
        let resp = reqwest::get(&url).await.unwrap();
        resp.bytes().await.unwrap()
    });
    wait_for("a stalled body", Duration::from_secs(10), || {
        (proxy.stalled_now() == 1).then_some(())
    });
    assert!(!fetch.is_finished());
    proxy.release_stalls();
    let body = rt::block_on(fetch).unwrap();
    assert_eq!(sha256_digest(&body), image.layers[0]);
    assert_eq!(proxy.stalled_now(), 0);
}

#[test]
fn helm_http_repo_serves_charts_behind_basic_auth() {
    let env = TestEnv::new();
    let repo = fixtures::helm_http_repo(
        &env,
        &[("demo", "0.1.0"), ("demo", "0.2.0")],
        Some(("bob", "repo-pw")),
    );
    let out_dir = env.path("pulled");
    std::fs::create_dir_all(&out_dir).unwrap();
    env.tool("helm")
        .args([
            "pull",
            "demo",
            "--version",
            "0.2.0",
            "--repo",
            &repo.url(),
            "--username",
            "bob",
            "--password=repo-pw",
            "-d",
        ])
        .arg(&out_dir)
        .ok();
    let pulled = std::fs::read(out_dir.join("demo-0.2.0.tgz")).unwrap();
    assert_eq!(pulled, std::fs::read(&repo.charts[1].tgz).unwrap());
    let out = env
        .tool("helm")
        .args([
            "pull",
            "demo",
            "--version",
            "0.2.0",
            "--repo",
            &repo.url(),
            "-d",
        ])
        .arg(env.path("anon"))
        .run();
    assert!(!out.success(), "{out}");
    assert!(repo.server.hits().iter().any(|h| h.status == 401));
}

#[test]
fn index_helm_and_oras_fixtures() {
    let env = TestEnv::new();
    let reg = Registry::start();
    let index = fixtures::push_index(
        &env,
        &reg,
        "self/multi",
        "1",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        50_000,
        Flavor::Oci,
    );
    assert_eq!(env.skopeo_digest(&reg, "self/multi:1"), index.digest);
    let platforms = fixtures::index_platforms(&index.manifest);
    assert_eq!(
        platforms
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    );
    for (platform, digest) in &platforms {
        assert_eq!(&index.child(platform).digest, digest);
    }

    let chart = fixtures::helm_package(&env, "mychart", "1.2.3", "charts");
    let digest = fixtures::helm_push(&env, &reg, &chart, "charts");
    assert_eq!(env.skopeo_digest(&reg, "charts/mychart:1.2.3"), digest);

    let referrer = fixtures::oras_attach(
        &env,
        &reg,
        "self/multi:1-linux-amd64",
        "application/vnd.example.sbom",
        "sbom.json",
        b"{\"sbom\":true}",
        "application/json",
    );
    let raw = env.skopeo_raw(&reg, &format!("self/multi@{referrer}"));
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        v["subject"]["digest"],
        index.child("linux/amd64").digest.as_str()
    );
}

#[test]
fn helm_https_repo_is_trusted_only_with_its_ca() {
    let env = TestEnv::new();
    let repo = fixtures::helm_https_repo(&env, &[("tlsdemo", "0.1.0")], None);
    assert!(repo.url().starts_with("https://"));
    let out_dir = env.path("pulled");
    std::fs::create_dir_all(&out_dir).unwrap();
    env.tool("helm")
        .args([
            "pull",
            "tlsdemo",
            "--version",
            "0.1.0",
            "--repo",
            &repo.url(),
            "--ca-file",
        ])
        .arg(repo.server.ca_file())
        .arg("-d")
        .arg(&out_dir)
        .ok();
    assert_eq!(
        std::fs::read(out_dir.join("tlsdemo-0.1.0.tgz")).unwrap(),
        std::fs::read(&repo.charts[0].tgz).unwrap()
    );
    let out = env
        .tool("helm")
        .env("SSL_CERT_FILE", "/dev/null")
        .args([
            "pull",
            "tlsdemo",
            "--version",
            "0.1.0",
            "--repo",
            &repo.url(),
            "-d",
        ])
        .arg(&out_dir)
        .run();
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("certificate"), "{out}");
}
