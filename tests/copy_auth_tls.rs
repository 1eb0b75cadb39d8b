//! Registries with htpasswd basic auth and with TLS from a test CA, as source and as
//! destination; Helm HTTP repositories behind basic auth.

mod support;

use support::fixtures::{self, Flavor};
use support::registry::RegistryOptions;
use support::{Endpoint, FileServer, Registry, Summary, TestEnv, assert_one_line_error};

const USER: &str = "aosm-user";
const PASSWORD: &str = "Corr3ct-H0rse-9b1f";
const WRONG: &str = "Wr0ng-Pa55-7c2e";

fn mentions_authentication(line: &str) -> bool {
    let l = line.to_lowercase();
    ["authenticat", "unauthori", "credential", "401"]
        .iter()
        .any(|w| l.contains(w))
}

#[track_caller]
fn assert_no_secret(out: &support::Output, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !out.stderr.contains(secret),
            "stderr leaks a password\n{out}"
        );
        assert!(
            !out.stdout.contains(secret),
            "stdout leaks a password\n{out}"
        );
    }
}

#[test]
fn basic_auth_source_with_the_right_password() {
    let env = TestEnv::new();
    let src = Registry::with_basic_auth(USER, PASSWORD);
    let dst = Registry::start();
    let image = fixtures::push_image(&env, &src, "private/app:1", &[100_000], Flavor::Oci, None);
    let summary = Summary::parse(
        &env.copy(&src, "private/app:1", &dst, "public/app:1", [])
            .run(),
    );
    assert_eq!(summary.digest, image.digest);
    assert_eq!(env.crane_digest(&dst, "public/app:1"), image.digest);
}

#[test]
fn basic_auth_destination_with_the_right_password() {
    let env = TestEnv::new();
    let src = Registry::start();
    let dst = Registry::with_basic_auth(USER, PASSWORD);
    let index = fixtures::push_index(
        &env,
        &src,
        "apps/multi",
        "1",
        &["linux/amd64", "linux/arm64"],
        30_000,
        Flavor::Oci,
    );
    let summary = Summary::parse(
        &env.copy(&src, "apps/multi:1", &dst, "store/multi:1", [])
            .run(),
    );
    assert_eq!(summary.digest, index.digest);
    assert_eq!(env.crane_digest(&dst, "store/multi:1"), index.digest);
}

#[test]
fn wrong_password_at_the_source_fails_cleanly() {
    let env = TestEnv::new();
    let src = Registry::with_basic_auth(USER, PASSWORD);
    let dst = Registry::start();
    fixtures::push_image(&env, &src, "private/app:1", &[10_000], Flavor::Oci, None);
    let bad = Endpoint::from(&src).with_credentials(USER, WRONG);
    let out = env
        .copy(&bad, "private/app:1", &dst, "public/app:1", [])
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(
        mentions_authentication(&line),
        "the error should say authentication failed: {line}"
    );
    assert_no_secret(&out, &[WRONG, PASSWORD]);
    env.assert_absent(&dst, "public/app:1");
}

#[test]
fn wrong_password_at_the_destination_fails_cleanly() {
    let env = TestEnv::new();
    let src = Registry::start();
    let dst = Registry::with_basic_auth(USER, PASSWORD);
    fixtures::push_image(&env, &src, "apps/app:1", &[10_000], Flavor::Oci, None);
    let bad = Endpoint::from(&dst).with_credentials(USER, WRONG);
    let out = env.copy(&src, "apps/app:1", &bad, "store/app:1", []).run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(
        mentions_authentication(&line),
        "the error should say authentication failed: {line}"
    );
    assert_no_secret(&out, &[WRONG, PASSWORD]);
    env.assert_absent(&dst, "store/app:1");
}

#[test]
fn password_from_the_environment_and_missing_credentials() {
    let env = TestEnv::new();
    let src = Registry::start();
    let dst = Registry::with_basic_auth(USER, PASSWORD);
    let image = fixtures::push_image(&env, &src, "apps/app:1", &[10_000], Flavor::Oci, None);

    // No credentials at all: refused with an authentication error.
    let anon = Endpoint::from(&dst).anonymous();
    let out = env.copy(&src, "apps/app:1", &anon, "store/app:1", []).run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(mentions_authentication(&line), "{line}");
    env.assert_absent(&dst, "store/app:1");

    // The password from AOSM_TO_PASSWORD (keeps it off the command line).
    let out = env
        .copy(
            &src,
            "apps/app:1",
            &anon,
            "store/app:1",
            ["--to-username", USER],
        )
        .env("AOSM_TO_PASSWORD", PASSWORD)
        .run();
    assert_eq!(Summary::parse(&out).digest, image.digest);
}

#[test]
fn registry_config_auths_entry_is_used() {
    let env = TestEnv::new();
    let src = Registry::with_basic_auth("reader", "R3ad-0nly-pw");
    let dst = Registry::with_basic_auth(USER, PASSWORD);
    let image = fixtures::push_image(&env, &src, "private/app:2", &[20_000], Flavor::Oci, None);
    let config = env.path("auth/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let auths = |entries: &[(&str, &str, &str)]| {
        use base64::Engine as _;
        let mut map = serde_json::Map::new();
        for (host, u, p) in entries {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            map.insert(host.to_string(), serde_json::json!({ "auth": auth }));
        }
        serde_json::json!({ "auths": map })
    };
    std::fs::write(
        &config,
        serde_json::to_vec_pretty(&auths(&[
            (&src.host(), "reader", "R3ad-0nly-pw"),
            (&dst.host(), USER, PASSWORD),
        ]))
        .unwrap(),
    )
    .unwrap();
    let out = env
        .copy(
            Endpoint::from(&src).anonymous(),
            "private/app:2",
            Endpoint::from(&dst).anonymous(),
            "store/app:2",
            ["--registry-config", config.to_str().unwrap()],
        )
        .run();
    assert_eq!(Summary::parse(&out).digest, image.digest);
    assert_eq!(env.crane_digest(&dst, "store/app:2"), image.digest);
    assert_no_secret(&out, &[PASSWORD, "R3ad-0nly-pw"]);
}

#[test]
fn default_docker_config_is_used() {
    let env = TestEnv::new();
    let src = Registry::start();
    let dst = Registry::with_basic_auth(USER, PASSWORD);
    let image = fixtures::push_image(&env, &src, "apps/app:3", &[20_000], Flavor::Oci, None);
    // The binary under test runs with HOME=<sandbox>/ours-home and DOCKER_CONFIG pointing
    // at its `.docker`, so this is its ~/.docker/config.json.
    let config = env.root().join("ours-home/.docker/config.json");
    let written = env.docker_config_file("tmp-config.json", &dst.host(), USER, PASSWORD);
    std::fs::copy(written, &config).unwrap();
    let out = env
        .copy(
            &src,
            "apps/app:3",
            Endpoint::from(&dst).anonymous(),
            "store/app:3",
            [],
        )
        .run();
    assert_eq!(Summary::parse(&out).digest, image.digest);
}

#[test]
fn tls_destination_with_ca_file() {
    let env = TestEnv::new();
    let src = Registry::start();
    let dst = Registry::with_tls();
    let image = fixtures::push_image(&env, &src, "apps/app:1", &[100_000], Flavor::Oci, None);
    let summary = Summary::parse(&env.copy(&src, "apps/app:1", &dst, "secure/app:1", []).run());
    assert_eq!(summary.digest, image.digest);
    assert_eq!(env.skopeo_digest(&dst, "secure/app:1"), image.digest);
}

#[test]
fn tls_destination_without_ca_fails_with_a_certificate_error() {
    let env = TestEnv::new();
    let src = Registry::start();
    let dst = Registry::with_tls();
    fixtures::push_image(&env, &src, "apps/app:1", &[10_000], Flavor::Oci, None);
    let out = env
        .copy(
            &src,
            "apps/app:1",
            Endpoint::from(&dst).without_ca(),
            "secure/app:1",
            [],
        )
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(
        line.to_lowercase().contains("certificate"),
        "the error should mention the certificate: {line}"
    );
    env.assert_absent(&dst, "secure/app:1");
}

#[test]
fn tls_destination_with_insecure() {
    let env = TestEnv::new();
    let src = Registry::start();
    let dst = Registry::with_tls();
    let image = fixtures::push_image(&env, &src, "apps/app:1", &[10_000], Flavor::Oci, None);
    let out = env
        .copy(
            &src,
            "apps/app:1",
            Endpoint::from(&dst).without_ca(),
            "secure/app:1",
            ["--to-insecure"],
        )
        .run();
    assert_eq!(Summary::parse(&out).digest, image.digest);
    assert_eq!(env.skopeo_digest(&dst, "secure/app:1"), image.digest);
}

#[test]
fn tls_source_with_ca_file_and_without() {
    let env = TestEnv::new();
    let src = Registry::with_tls();
    let dst = Registry::start();
    let index = fixtures::push_index(
        &env,
        &src,
        "apps/multi",
        "1",
        &["linux/amd64", "linux/arm64"],
        20_000,
        Flavor::Oci,
    );
    let out = env
        .copy(
            Endpoint::from(&src).without_ca(),
            "apps/multi:1",
            &dst,
            "plain/multi:1",
            [],
        )
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    env.assert_absent(&dst, "plain/multi:1");

    let summary = Summary::parse(
        &env.copy(&src, "apps/multi:1", &dst, "plain/multi:1", [])
            .run(),
    );
    assert_eq!(summary.digest, index.digest);
    assert_eq!(env.crane_digest(&dst, "plain/multi:1"), index.digest);
}

#[test]
fn tls_with_basic_auth_on_both_sides() {
    let env = TestEnv::new();
    let opts = RegistryOptions {
        basic_auth: Some((USER.into(), PASSWORD.into())),
        tls: true,
        ..Default::default()
    };
    let (src, dst) = (
        Registry::start_with(opts.clone()),
        Registry::start_with(opts),
    );
    let image = fixtures::push_image(&env, &src, "apps/app:1", &[50_000], Flavor::Docker, None);
    let out = env.copy(&src, "apps/app:1", &dst, "apps/app:1", []).run();
    assert_eq!(Summary::parse(&out).digest, image.digest);
    assert_eq!(env.skopeo_digest(&dst, "apps/app:1"), image.digest);
    assert_no_secret(&out, &[PASSWORD]);
}

#[test]
fn helm_repository_with_basic_auth() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let repo = fixtures::helm_http_repo(
        &env,
        &[("secure-chart", "1.0.0")],
        Some(("helm", "Chart-Pw-41")),
    );
    let copy = |password: &str| {
        env.ours()
            .args([
                "copy",
                "--output",
                "json",
                "--from-helm-repo",
                &repo.url(),
                "--from-username",
                "helm",
                &format!("--from-password={password}"),
                "--to-plain-http",
                "secure-chart:1.0.0",
            ])
            .arg(dst.reference("charts/secure-chart:1.0.0"))
            .run()
    };
    let out = copy("Wrong-Chart-Pw");
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(mentions_authentication(&line), "{line}");
    assert_no_secret(&out, &["Wrong-Chart-Pw", "Chart-Pw-41"]);
    env.assert_absent(&dst, "charts/secure-chart:1.0.0");

    let out = copy("Chart-Pw-41");
    let summary = Summary::parse(&out);
    assert_eq!(
        env.crane_digest(&dst, "charts/secure-chart:1.0.0"),
        summary.digest
    );
}

#[test]
fn helm_repository_credentials_are_not_sent_to_another_host() {
    let env = TestEnv::new();
    let dst = Registry::start();
    // index.yaml on an authenticated server; the chart .tgz on another host.
    let chart = fixtures::helm_package(&env, "elsewhere", "0.3.0", "tgz-host");
    let tgz_host = FileServer::start(env.path("tgz-host"), None);
    let index_dir = env.path("index-host");
    std::fs::create_dir_all(&index_dir).unwrap();
    std::fs::copy(&chart.tgz, index_dir.join("elsewhere-0.3.0.tgz")).unwrap();
    env.tool("helm")
        .args(["repo", "index"])
        .arg(&index_dir)
        .args(["--url", &tgz_host.url()])
        .ok();
    std::fs::remove_file(index_dir.join("elsewhere-0.3.0.tgz")).unwrap();
    let index_host = FileServer::start(&index_dir, Some(("helm", "Idx-Pw-77")));

    let out = env
        .ours()
        .args([
            "copy",
            "--output",
            "json",
            "--from-helm-repo",
            &index_host.url(),
            "--from-username",
            "helm",
            "--from-password=Idx-Pw-77",
            "--to-plain-http",
            "elsewhere:0.3.0",
        ])
        .arg(dst.reference("charts/elsewhere:0.3.0"))
        .run();
    Summary::parse(&out);
    let tgz_hits = tgz_host.hits();
    assert!(
        tgz_hits
            .iter()
            .any(|h| h.path.ends_with(".tgz") && h.status == 200),
        "{tgz_hits:#?}"
    );
    assert!(
        tgz_hits.iter().all(|h| h.authorization.is_none()),
        "repository credentials were sent to another host: {tgz_hits:#?}"
    );
    assert!(
        index_host
            .hits()
            .iter()
            .any(|h| h.path.ends_with("index.yaml") && h.authorization.is_some())
    );
}

#[test]
fn push_to_a_tls_registry_with_basic_auth() {
    let env = TestEnv::new();
    let dst = Registry::start_with(RegistryOptions {
        basic_auth: Some((USER.into(), PASSWORD.into())),
        tls: true,
        ..Default::default()
    });
    let file = env.write("nf/template.json", br#"{"resources":[]}"#);
    let out = env
        .push(&dst, "arm/nf-template:1.0.0", [], &[file.to_str().unwrap()])
        .run();
    let summary = Summary::parse(&out);
    assert_no_secret(&out, &[PASSWORD]);
    assert_eq!(
        env.crane_digest(&dst, "arm/nf-template:1.0.0"),
        summary.digest
    );
    let pulled = env.path("pulled");
    env.oras(&dst)
        .args(["pull", "-o"])
        .arg(&pulled)
        .args(TestEnv::oras_flags(&dst))
        .arg(dst.reference("arm/nf-template:1.0.0"))
        .ok();
    assert_eq!(
        std::fs::read(pulled.join("template.json")).unwrap(),
        std::fs::read(&file).unwrap()
    );

    // Without the CA: a certificate error, nothing tagged.
    let out = env
        .push(
            Endpoint::from(&dst).without_ca(),
            "arm/nf-template:2.0.0",
            [],
            &[file.to_str().unwrap()],
        )
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    env.assert_absent(&dst, "arm/nf-template:2.0.0");
}

#[test]
fn helm_repository_over_https_with_ca_file_insecure_and_neither() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let repo = fixtures::helm_https_repo(
        &env,
        &[("tls-chart", "2.0.0")],
        Some(("helm", "Https-Pw-5")),
    );
    let copy = |extra: &[&str], tag: &str| {
        env.ours()
            .args(["copy", "--output", "json", "--from-helm-repo", &repo.url()])
            .args([
                "--from-username",
                "helm",
                "--from-password=Https-Pw-5",
                "--to-plain-http",
            ])
            .args(extra)
            .arg("tls-chart:2.0.0")
            .arg(dst.reference(&format!("{tag}/tls-chart:2.0.0")))
            .run()
    };
    let out = copy(&[], "verified");
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert_no_secret(&out, &["Https-Pw-5"]);
    env.assert_absent(&dst, "verified/tls-chart:2.0.0");

    let ca = repo.server.ca_file().to_str().unwrap().to_string();
    let summary = Summary::parse(&copy(&["--from-ca-file", &ca], "verified"));
    assert_eq!(
        env.crane_digest(&dst, "verified/tls-chart:2.0.0"),
        summary.digest
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&env.skopeo_raw(&dst, "verified/tls-chart:2.0.0")).unwrap();
    let tgz = std::fs::read(&repo.charts[0].tgz).unwrap();
    assert_eq!(
        manifest["layers"][0]["digest"],
        support::sha256_digest(&tgz).as_str()
    );

    let again = Summary::parse(&copy(&["--from-insecure"], "insecure"));
    assert_eq!(
        again.digest, summary.digest,
        "the same chart must give the same manifest"
    );
}
