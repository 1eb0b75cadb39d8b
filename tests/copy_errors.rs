//! Bad input and failed transfers: the right exit code (2 for bad usage or input, 1 for
//! a failed transfer), one clear `error:` line at the end of stderr, and nothing tagged
//! at the destination.

mod support;

use support::fixtures::{self, Flavor};
use support::registry::free_port;
use support::{FaultProxy, ProxyConfig, Registry, TestEnv, assert_one_line_error};

#[test]
fn malformed_references_exit_2() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let good = dst.reference("ok/app:1");
    for bad in [
        "not a reference",
        "127.0.0.1:5000/UPPER/case:1",
        "127.0.0.1:5000/app:bad tag",
        "127.0.0.1:5000/app@sha256:abc",
        "http://127.0.0.1:5000/app:1",
        "",
    ] {
        let out = env
            .ours()
            .args(["copy", "--from-plain-http", "--to-plain-http", bad, &good])
            .run();
        out.assert_code(2);
        assert_one_line_error(&out);
        // Same as destination.
        let out = env
            .ours()
            .args(["copy", "--from-plain-http", "--to-plain-http", &good, bad])
            .run();
        out.assert_code(2);
        assert_one_line_error(&out);
    }
    assert!(dst.tags("ok/app").is_empty());
}

#[test]
fn unknown_host_exits_1_with_one_line() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let out = env
        .ours()
        .args([
            "copy",
            "--from-plain-http",
            "--to-plain-http",
            "no-such-registry.invalid:5000/app:1",
        ])
        .arg(dst.reference("app/x:1"))
        .timeout(std::time::Duration::from_secs(60))
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(
        line.contains("no-such-registry.invalid"),
        "the error should name the host: {line}"
    );
    env.assert_absent(&dst, "app/x:1");
}

#[test]
fn unreachable_destination_exits_1_with_one_line() {
    let env = TestEnv::new();
    let src = Registry::start();
    fixtures::push_image(&env, &src, "apps/app:1", &[1000], Flavor::Oci, None);
    // A port nobody listens on.
    let port = free_port();
    let out = env
        .ours()
        .args([
            "copy",
            "--from-plain-http",
            "--to-plain-http",
            &src.reference("apps/app:1"),
            &format!("127.0.0.1:{port}/app:1"),
        ])
        .timeout(std::time::Duration::from_secs(60))
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(
        line.contains(&port.to_string()),
        "the error should say where: {line}"
    );
}

#[test]
fn missing_source_tag_or_repository_exits_2() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    fixtures::push_image(&env, &src, "apps/app:1", &[1000], Flavor::Oci, None);
    for missing in ["apps/app:2", "apps/nothing-here:1"] {
        let out = env.copy(&src, missing, &dst, "mirror/app:1", []).run();
        out.assert_code(2);
        let line = assert_one_line_error(&out);
        assert!(
            line.contains("not found") || line.contains("unknown"),
            "should say what is missing: {line}"
        );
        env.assert_absent(&dst, "mirror/app:1");
    }
    // A missing digest too.
    let digest = support::sha256_digest(b"nothing");
    let out = env
        .copy(
            &src,
            &format!("apps/app@{digest}"),
            &dst,
            "mirror/app:1",
            [],
        )
        .run();
    out.assert_code(2);
    let line = assert_one_line_error(&out);
    assert!(
        line.contains(&format!("apps/app@{digest}")),
        "the error should name the missing manifest as REPO@DIGEST: {line}"
    );
}

#[test]
fn missing_chart_or_version_in_helm_repository_exits_2() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let repo = fixtures::helm_http_repo(&env, &[("present", "1.0.0")], None);
    for (src, what) in [("absent:1.0.0", "absent"), ("present:9.9.9", "9.9.9")] {
        let out = env
            .ours()
            .args([
                "copy",
                "--from-helm-repo",
                &repo.url(),
                "--to-plain-http",
                src,
            ])
            .arg(dst.reference("charts/x:1.0.0"))
            .run();
        out.assert_code(2);
        let line = assert_one_line_error(&out);
        assert!(
            line.contains(what),
            "the error should name the missing {what}: {line}"
        );
        env.assert_absent(&dst, "charts/x:1.0.0");
    }
    // A source that is not CHART:VERSION.
    let out = env
        .ours()
        .args([
            "copy",
            "--from-helm-repo",
            &repo.url(),
            "--to-plain-http",
            "present",
        ])
        .arg(dst.reference("charts/x:1.0.0"))
        .run();
    out.assert_code(2);
    assert_one_line_error(&out);
}

#[test]
fn corrupt_blob_from_source_exits_1_and_tags_nothing() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    let image = fixtures::push_image(
        &env,
        &src,
        "apps/app:1",
        &[200_000, 50_000],
        Flavor::Oci,
        None,
    );
    let bad = image.layers[0].clone();
    let proxy = FaultProxy::start(&src, ProxyConfig::corrupt(&bad));
    let out = env
        .copy(&proxy, "apps/app:1", &dst, "mirror/app:1", [])
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(
        line.to_lowercase().contains("digest"),
        "the error should mention the digest: {line}"
    );
    assert!(
        proxy.requests().iter().any(|r| r.body_tampered),
        "the corrupt blob was never fetched"
    );
    env.assert_absent(&dst, "mirror/app:1");
    assert!(
        !dst.blob_exists("mirror/app", &bad),
        "the corrupt blob must not be committed at the destination"
    );
}

#[test]
fn corrupt_child_blob_of_an_index_tags_nothing() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    let index = fixtures::push_index(
        &env,
        &src,
        "apps/multi",
        "1",
        &["linux/amd64", "linux/arm64"],
        100_000,
        Flavor::Oci,
    );
    let bad = index.child("linux/arm64").layers[0].clone();
    let proxy = FaultProxy::start(&src, ProxyConfig::corrupt(&bad));
    let out = env
        .copy(&proxy, "apps/multi:1", &dst, "mirror/multi:1", [])
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(line.to_lowercase().contains("digest"), "{line}");
    env.assert_absent(&dst, "mirror/multi:1");
    assert!(!dst.blob_exists("mirror/multi", &bad));
}

#[test]
fn push_of_a_missing_file_exits_2() {
    let env = TestEnv::new();
    let dst = Registry::start();
    let present = env.write("present.txt", "hello");
    let out = env
        .push(
            &dst,
            "files/x:1",
            [],
            &[present.to_str().unwrap(), "does-not-exist.json"],
        )
        .run();
    out.assert_code(2);
    let line = assert_one_line_error(&out);
    assert!(
        line.contains("does-not-exist.json"),
        "the error should name the file: {line}"
    );
    env.assert_absent(&dst, "files/x:1");
}

#[test]
fn unknown_or_malformed_platform_exits_2() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    fixtures::push_index(
        &env,
        &src,
        "apps/multi",
        "1",
        &["linux/amd64", "linux/arm64"],
        1000,
        Flavor::Oci,
    );
    for platform in ["linux/s390x", "windows/amd64", "linux"] {
        let out = env
            .copy(
                &src,
                "apps/multi:1",
                &dst,
                "mirror/multi:1",
                ["--platform", platform],
            )
            .run();
        out.assert_code(2);
        assert_one_line_error(&out);
        env.assert_absent(&dst, "mirror/multi:1");
    }
}

#[test]
fn bad_usage_exits_2() {
    let env = TestEnv::new();
    for args in [
        vec!["copy"],
        vec!["copy", "only-one-argument/x:1"],
        vec!["copy", "--no-such-flag", "a/b:1", "c/d:1"],
        vec!["push", "127.0.0.1:1/x:1"],
        vec!["copy", "--concurrency", "zero", "a/b:1", "c/d:1"],
    ] {
        let out = env.ours().args(&args).run();
        out.assert_code(2);
    }
}

#[test]
fn plain_http_registry_needs_the_plain_http_flag() {
    // 127.0.0.1 is not plain HTTP by default: without --from-plain-http the tool speaks
    // TLS to a plain-HTTP registry and fails with one clear line.
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    fixtures::push_image(&env, &src, "apps/app:1", &[1000], Flavor::Oci, None);
    let out = env
        .ours()
        .args([
            "copy",
            "--to-plain-http",
            &src.reference("apps/app:1"),
            &dst.reference("apps/app:1"),
        ])
        .timeout(std::time::Duration::from_secs(60))
        .run();
    out.assert_code(1);
    let line = assert_one_line_error(&out);
    assert!(
        line.contains(&src.host()),
        "the error should name the registry: {line}"
    );
    env.assert_absent(&dst, "apps/app:1");
}
