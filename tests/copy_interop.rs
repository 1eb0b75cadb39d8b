//! Interoperability of `copy` and `push` with the tools people already use: fixtures are
//! made by crane / skopeo / oras / helm, results are checked by them (digest equality,
//! `helm pull`/`helm template`, `oras pull`), and our results are copied onwards by them.
//! Every case runs against both registry implementations (`distribution2::*`: Debian's
//! docker-registry 2.8; `distribution3::*`: distribution v3).

mod support;

use support::fixtures::{self, Flavor};
use support::registry::Implementation;
use support::{FaultProxy, ProxyConfig, Registry, Summary, TestEnv, sha256_digest};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ALL_PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64", "linux/arm/v7"];

/// Checks that `dst/<path>` holds exactly the manifest bytes of `src/<path>` (skopeo raw
/// bytes, crane digest) with the same Content-Type.
#[track_caller]
fn assert_same_manifest(
    env: &TestEnv,
    src: &Registry,
    src_path: &str,
    dst: &Registry,
    dst_path: &str,
) -> String {
    let src_raw = env.skopeo_raw(src, src_path);
    let dst_raw = env.skopeo_raw(dst, dst_path);
    assert!(
        src_raw == dst_raw,
        "manifest bytes differ:\nsrc: {}\ndst: {}",
        String::from_utf8_lossy(&src_raw),
        String::from_utf8_lossy(&dst_raw)
    );
    let digest = sha256_digest(&dst_raw);
    assert_eq!(env.crane_digest(dst, dst_path), digest);
    assert_eq!(env.crane_digest(src, src_path), digest);
    let (repo_s, ref_s) = split_path(src_path);
    let (repo_d, ref_d) = split_path(dst_path);
    let src_type = src.manifest(repo_s, ref_s).unwrap().0;
    let dst_type = dst.manifest(repo_d, ref_d).unwrap().0;
    assert_eq!(src_type, dst_type, "Content-Type of the manifest differs");
    digest
}

/// `repo:tag` / `repo@digest` → (repo, tag-or-digest).
fn split_path(path: &str) -> (&str, &str) {
    if let Some((repo, digest)) = path.split_once('@') {
        return (repo, digest);
    }
    path.rsplit_once(':').expect("path with a tag")
}

fn oci_image_copy_is_byte_exact(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let image = fixtures::push_image(
        &env,
        &src,
        "apps/web:1.0",
        &[400_000, 150_000],
        Flavor::Oci,
        Some("linux/amd64"),
    );

    let out = env
        .copy(&src, "apps/web:1.0", &dst, "mirror/web:1.0", [])
        .run();
    let summary = Summary::parse(&out);

    let digest = assert_same_manifest(&env, &src, "apps/web:1.0", &dst, "mirror/web:1.0");
    assert_eq!(digest, image.digest);
    for blob in image.blobs() {
        assert!(
            dst.blob_exists("mirror/web", &blob),
            "blob {blob} missing at destination"
        );
    }
    assert_eq!(summary.digest, image.digest, "{out}");
    assert_eq!(summary.reference, dst.reference("mirror/web:1.0"), "{out}");
    assert_eq!(summary.media_type, OCI_MANIFEST, "{out}");
    assert_eq!(summary.blobs_copied, 3, "config + 2 layers\n{out}");
    assert_eq!(
        (summary.blobs_skipped, summary.blobs_mounted),
        (0, 0),
        "{out}"
    );
    let blob_bytes: u64 = image.total_bytes() - image.manifest.len() as u64;
    assert!(
        summary.bytes >= blob_bytes && summary.bytes <= image.total_bytes(),
        "bytes {} should be the blob bytes {blob_bytes} (plus at most the manifest)\n{out}",
        summary.bytes
    );
}

fn docker_v2s2_image_copy_is_byte_exact(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    // An OCI image converted to Docker v2 schema 2 by skopeo.
    fixtures::push_image(
        &env,
        &src,
        "apps/oci:1",
        &[300_000, 20_000],
        Flavor::Oci,
        Some("linux/amd64"),
    );
    env.skopeo_copy(
        &src,
        "apps/oci:1",
        &src,
        "apps/docker:1",
        &["--format", "v2s2"],
    );
    let (ctype, _) = src.manifest("apps/docker", "1").unwrap();
    assert_eq!(
        ctype, DOCKER_MANIFEST,
        "fixture is not a Docker v2s2 manifest"
    );
    let image = fixtures::describe_image(&env, &src, "apps/docker:1");

    let summary = Summary::parse(
        &env.copy(&src, "apps/docker:1", &dst, "mirror/docker:1", [])
            .run(),
    );
    let digest = assert_same_manifest(&env, &src, "apps/docker:1", &dst, "mirror/docker:1");
    assert_eq!(digest, image.digest);
    assert_eq!(summary.digest, image.digest);
    assert_eq!(summary.media_type, DOCKER_MANIFEST);
    for blob in image.blobs() {
        assert!(
            dst.blob_exists("mirror/docker", &blob),
            "blob {blob} missing"
        );
    }
}

fn multi_arch_index_is_copied_whole(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let index = fixtures::push_index(
        &env,
        &src,
        "apps/multi",
        "2.0",
        ALL_PLATFORMS,
        120_000,
        Flavor::Oci,
    );

    let out = env
        .copy(&src, "apps/multi:2.0", &dst, "mirror/multi:2.0", [])
        .run();
    let summary = Summary::parse(&out);

    let digest = assert_same_manifest(&env, &src, "apps/multi:2.0", &dst, "mirror/multi:2.0");
    assert_eq!(digest, index.digest);
    assert_eq!(env.skopeo_digest(&dst, "mirror/multi:2.0"), index.digest);
    assert_eq!(summary.digest, index.digest, "{out}");
    assert_eq!(summary.media_type, OCI_INDEX, "{out}");
    for (platform, child) in &index.children {
        let path = format!("mirror/multi@{}", child.digest);
        assert_eq!(
            env.crane_digest(&dst, &path),
            child.digest,
            "child {platform}"
        );
        assert_eq!(
            env.skopeo_raw(&dst, &path),
            child.manifest,
            "child {platform} bytes"
        );
        for blob in child.blobs() {
            assert!(
                dst.blob_exists("mirror/multi", &blob),
                "blob {blob} of {platform} missing"
            );
        }
    }
    assert_eq!(summary.blobs_copied, 6, "3 configs + 3 layers\n{out}");
}

fn docker_manifest_list_is_copied_whole(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let index = fixtures::push_index(
        &env,
        &src,
        "apps/list",
        "1",
        &["linux/amd64", "linux/arm64"],
        50_000,
        Flavor::Docker,
    );
    assert_eq!(src.manifest("apps/list", "1").unwrap().0, DOCKER_LIST);

    let summary = Summary::parse(
        &env.copy(&src, "apps/list:1", &dst, "mirror/list:1", [])
            .run(),
    );
    assert_eq!(
        assert_same_manifest(&env, &src, "apps/list:1", &dst, "mirror/list:1"),
        index.digest
    );
    assert_eq!(summary.media_type, DOCKER_LIST);
    for (_, child) in &index.children {
        assert_eq!(
            env.crane_digest(&dst, &format!("mirror/list@{}", child.digest)),
            child.digest
        );
    }
}

fn index_filtered_to_one_platform(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let index = fixtures::push_index(
        &env,
        &src,
        "apps/multi",
        "3.0",
        ALL_PLATFORMS,
        80_000,
        Flavor::Oci,
    );

    let out = env
        .copy(
            &src,
            "apps/multi:3.0",
            &dst,
            "mirror/multi:3.0",
            ["--platform", "linux/amd64"],
        )
        .run();
    let summary = Summary::parse(&out);

    let dst_raw = env.skopeo_raw(&dst, "mirror/multi:3.0");
    let dst_digest = sha256_digest(&dst_raw);
    assert_ne!(
        dst_digest, index.digest,
        "a filtered index must be a new manifest"
    );
    assert_eq!(
        summary.digest, dst_digest,
        "the reported digest must be the rewritten index's\n{out}"
    );
    assert_eq!(env.crane_digest(&dst, "mirror/multi:3.0"), dst_digest);
    assert_eq!(summary.media_type, OCI_INDEX, "{out}");

    let amd64 = index.child("linux/amd64");
    assert_eq!(
        fixtures::index_platforms(&dst_raw),
        vec![("linux/amd64".to_string(), amd64.digest.clone())],
        "the destination index must list only linux/amd64, child digest unchanged"
    );
    assert_eq!(
        env.crane_digest(&dst, &format!("mirror/multi@{}", amd64.digest)),
        amd64.digest
    );
    for blob in amd64.blobs() {
        assert!(dst.blob_exists("mirror/multi", &blob));
    }
    for other in ["linux/arm64", "linux/arm/v7"] {
        let child = index.child(other);
        assert_eq!(
            dst.manifest_status("mirror/multi", &child.digest),
            404,
            "{other} must not be copied"
        );
        assert!(
            !dst.blob_exists("mirror/multi", &child.layers[0]),
            "{other}'s layer must not be copied"
        );
    }
    assert_eq!(
        summary.blobs_copied, 2,
        "config + layer of one platform\n{out}"
    );
    // The rewritten index is still a valid index for the other tools.
    env.crane(&dst)
        .args([
            "manifest",
            "--platform",
            "linux/amd64",
            &dst.reference("mirror/multi:3.0"),
        ])
        .ok();
}

fn index_filtered_to_two_platforms_with_variant(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let index = fixtures::push_index(
        &env,
        &src,
        "apps/multi",
        "4.0",
        ALL_PLATFORMS,
        40_000,
        Flavor::Oci,
    );

    let summary = Summary::parse(
        &env.copy(
            &src,
            "apps/multi:4.0",
            &dst,
            "mirror/multi:4.0",
            ["--platform", "linux/arm/v7", "--platform", "linux/amd64"],
        )
        .run(),
    );
    let dst_raw = env.skopeo_raw(&dst, "mirror/multi:4.0");
    assert_eq!(summary.digest, sha256_digest(&dst_raw));
    let listed = fixtures::index_platforms(&dst_raw);
    let mut platforms: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm/v7"]);
    for (platform, digest) in &listed {
        assert_eq!(digest, &index.child(platform).digest);
        assert_eq!(
            env.crane_digest(&dst, &format!("mirror/multi@{digest}")),
            *digest
        );
    }
}

fn helm_chart_pushed_by_helm_is_copied_then_pulled_and_templated(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let chart = fixtures::helm_package(&env, "webapp", "1.2.3", "packaged");
    let digest = fixtures::helm_push(&env, &src, &chart, "charts");

    let summary = Summary::parse(
        &env.copy(
            &src,
            "charts/webapp:1.2.3",
            &dst,
            "mirror/charts/webapp:1.2.3",
            [],
        )
        .run(),
    );
    assert_eq!(
        assert_same_manifest(
            &env,
            &src,
            "charts/webapp:1.2.3",
            &dst,
            "mirror/charts/webapp:1.2.3"
        ),
        digest
    );
    assert_eq!(summary.digest, digest);

    let pulled = env.path("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    env.helm(&dst)
        .args([
            "pull",
            &format!("oci://{}", dst.reference("mirror/charts/webapp")),
            "--version",
            "1.2.3",
            "-d",
        ])
        .arg(&pulled)
        .args(TestEnv::helm_flags(&dst))
        .ok();
    let tgz = pulled.join("webapp-1.2.3.tgz");
    assert_eq!(
        std::fs::read(&tgz).unwrap(),
        std::fs::read(&chart.tgz).unwrap(),
        "chart bytes differ"
    );
    let rendered = env.tool("helm").args(["template", "demo"]).arg(&tgz).ok();
    assert!(rendered.stdout.contains("kind: Deployment"), "{rendered}");
    // Straight from the registry too.
    let rendered = env
        .helm(&dst)
        .args([
            "template",
            "demo",
            &format!("oci://{}", dst.reference("mirror/charts/webapp")),
            "--version",
            "1.2.3",
        ])
        .args(TestEnv::helm_flags(&dst))
        .ok();
    assert!(rendered.stdout.contains("kind: Deployment"), "{rendered}");
}

fn helm_chart_from_http_repository_becomes_an_oci_chart(imp: Implementation) {
    let env = TestEnv::new();
    let dst = Registry::of(imp);
    let repo = fixtures::helm_http_repo(
        &env,
        &[("demo", "0.1.0"), ("demo", "0.2.0"), ("other", "1.0.0")],
        None,
    );

    let out = env
        .ours()
        .args([
            "copy",
            "--output",
            "json",
            "--from-helm-repo",
            &repo.url(),
            "--to-plain-http",
            "demo:0.2.0",
        ])
        .arg(dst.reference("charts/demo:0.2.0"))
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(
        summary.reference,
        dst.reference("charts/demo:0.2.0"),
        "{out}"
    );
    assert_eq!(env.crane_digest(&dst, "charts/demo:0.2.0"), summary.digest);

    // Built like `helm push` builds it.
    let manifest: serde_json::Value =
        serde_json::from_slice(&env.skopeo_raw(&dst, "charts/demo:0.2.0")).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.cncf.helm.config.v1+json",
        "{manifest}"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    let tgz_bytes = std::fs::read(&repo.charts[1].tgz).unwrap();
    assert_eq!(
        layers[0]["digest"],
        sha256_digest(&tgz_bytes).as_str(),
        "the layer must be the repository's .tgz, byte for byte"
    );

    let pulled = env.path("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    env.helm(&dst)
        .args([
            "pull",
            &format!("oci://{}", dst.reference("charts/demo")),
            "--version",
            "0.2.0",
            "-d",
        ])
        .arg(&pulled)
        .args(TestEnv::helm_flags(&dst))
        .ok();
    assert_eq!(
        std::fs::read(pulled.join("demo-0.2.0.tgz")).unwrap(),
        tgz_bytes
    );
    let rendered = env
        .helm(&dst)
        .args([
            "template",
            "x",
            &format!("oci://{}", dst.reference("charts/demo")),
            "--version",
            "0.2.0",
        ])
        .args(TestEnv::helm_flags(&dst))
        .ok();
    assert!(rendered.stdout.contains("kind: Service"), "{rendered}");
    // Only the chosen version was pushed.
    assert_eq!(dst.tags("charts/demo"), vec!["0.2.0".to_string()]);
}

fn pushed_files_come_back_identical_with_oras_pull(imp: Implementation) {
    let env = TestEnv::new();
    let reg = Registry::of(imp);
    let template = env.write("in/template.json", br#"{"$schema":"https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#","resources":[]}"#);
    let blob = env.write("in/payload.bin", fixtures::random_bytes(300_000));
    let spec = format!("{}:application/vnd.example.arm+json", template.display());
    let out = env
        .push(
            &reg,
            "arm/template:1.0.0",
            ["--artifact-type", "application/vnd.example.bundle"],
            &[&spec, blob.to_str().unwrap()],
        )
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(
        summary.reference,
        reg.reference("arm/template:1.0.0"),
        "{out}"
    );
    assert_eq!(env.crane_digest(&reg, "arm/template:1.0.0"), summary.digest);

    let manifest: serde_json::Value =
        serde_json::from_slice(&env.skopeo_raw(&reg, "arm/template:1.0.0")).unwrap();
    assert_eq!(
        manifest["artifactType"], "application/vnd.example.bundle",
        "{manifest}"
    );
    let layers = manifest["layers"].as_array().unwrap();
    let by_title = |title: &str| {
        layers
            .iter()
            .find(|l| l["annotations"]["org.opencontainers.image.title"] == title)
            .unwrap_or_else(|| panic!("no layer titled {title}: {manifest}"))
    };
    assert_eq!(
        by_title("template.json")["mediaType"],
        "application/vnd.example.arm+json"
    );
    assert_eq!(
        by_title("payload.bin")["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );

    let pulled = env.path("pulled");
    env.oras(&reg)
        .args(["pull", "-o"])
        .arg(&pulled)
        .args(TestEnv::oras_flags(&reg))
        .arg(reg.reference("arm/template:1.0.0"))
        .ok();
    assert_eq!(
        std::fs::read(pulled.join("template.json")).unwrap(),
        std::fs::read(&template).unwrap()
    );
    assert_eq!(
        std::fs::read(pulled.join("payload.bin")).unwrap(),
        std::fs::read(&blob).unwrap()
    );
}

fn artifact_with_subject_is_copied_by_digest_byte_exact(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    fixtures::push_image(&env, &src, "apps/signed:1", &[50_000], Flavor::Oci, None);
    let referrer = fixtures::oras_attach(
        &env,
        &src,
        "apps/signed:1",
        "application/vnd.example.sbom",
        "sbom.json",
        br#"{"packages":[]}"#,
        "application/spdx+json",
    );
    let src_raw = env.skopeo_raw(&src, &format!("apps/signed@{referrer}"));
    let parsed: serde_json::Value = serde_json::from_slice(&src_raw).unwrap();
    assert!(
        parsed["subject"]["digest"].is_string(),
        "fixture has no subject: {parsed}"
    );

    // The subject first, then the referrer by digest.
    Summary::parse(
        &env.copy(&src, "apps/signed:1", &dst, "apps/signed:1", [])
            .run(),
    );
    let out = env
        .copy(
            &src,
            &format!("apps/signed@{referrer}"),
            &dst,
            "apps/signed:sbom",
            [],
        )
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(summary.digest, referrer, "{out}");
    let dst_raw = env.skopeo_raw(&dst, &format!("apps/signed@{referrer}"));
    assert!(dst_raw == src_raw, "referrer manifest bytes differ");
    assert_eq!(env.crane_digest(&dst, "apps/signed:sbom"), referrer);
    for blob in fixtures::manifest_blobs(&src_raw) {
        assert!(dst.blob_exists("apps/signed", &blob), "blob {blob} missing");
    }
}

fn artifact_with_subject_is_copied_to_a_digest_reference(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    fixtures::push_image(&env, &src, "apps/signed:1", &[50_000], Flavor::Oci, None);
    let referrer = fixtures::oras_attach(
        &env,
        &src,
        "apps/signed:1",
        "application/vnd.example.sig",
        "sig.txt",
        b"signature",
        "text/plain",
    );
    let path = format!("apps/signed@{referrer}");
    let summary = Summary::parse(&env.copy(&src, &path, &dst, &path, []).run());
    assert_eq!(summary.digest, referrer);
    assert_eq!(env.skopeo_raw(&dst, &path), env.skopeo_raw(&src, &path));
}

fn interop_both_ways_with_crane_oras_regctl_and_skopeo(imp: Implementation) {
    let env = TestEnv::new();
    let (a, b, c) = (Registry::of(imp), Registry::of(imp), Registry::of(imp));
    let index = fixtures::push_index(
        &env,
        &a,
        "apps/multi",
        "1",
        &["linux/amd64", "linux/arm64"],
        60_000,
        Flavor::Oci,
    );

    // Ours: a → b.
    Summary::parse(&env.copy(&a, "apps/multi:1", &b, "ours/multi:1", []).run());
    // Theirs, starting from our result: b → c.
    env.crane(&b)
        .args([
            "copy",
            &b.reference("ours/multi:1"),
            &c.reference("by-crane/multi:1"),
        ])
        .ok();
    env.oras(&b)
        .args([
            "cp",
            "--from-plain-http",
            "--to-plain-http",
            &b.reference("ours/multi:1"),
            &c.reference("by-oras/multi:1"),
        ])
        .ok();
    env.tool("regctl")
        .args(["registry", "set", "--tls", "disabled", &b.host()])
        .ok();
    env.tool("regctl")
        .args(["registry", "set", "--tls", "disabled", &c.host()])
        .ok();
    env.tool("regctl")
        .args([
            "image",
            "copy",
            &b.reference("ours/multi:1"),
            &c.reference("by-regctl/multi:1"),
        ])
        .ok();
    // skopeo 1.9 re-serialises OCI indexes (drops descriptor fields it does not know,
    // like `artifactType`), so it is checked on a child image, which it keeps byte-exact.
    let amd64 = &index.child("linux/amd64").digest;
    env.skopeo_copy(
        &b,
        &format!("ours/multi@{amd64}"),
        &c,
        "by-skopeo/amd64:1",
        &[],
    );
    assert_eq!(env.crane_digest(&c, "by-skopeo/amd64:1"), *amd64);
    for tool in ["crane", "oras", "regctl"] {
        assert_eq!(
            env.crane_digest(&c, &format!("by-{tool}/multi:1")),
            index.digest,
            "{tool}"
        );
        for (_, child) in &index.children {
            assert_eq!(
                env.crane_digest(&c, &format!("by-{tool}/multi@{}", child.digest)),
                child.digest,
                "{tool}"
            );
        }
    }

    // And the other way round: theirs a → b, ours b → c.
    env.crane(&a)
        .args([
            "copy",
            &a.reference("apps/multi:1"),
            &b.reference("crane/multi:1"),
        ])
        .ok();
    Summary::parse(
        &env.copy(&b, "crane/multi:1", &c, "ours-again/multi:1", [])
            .run(),
    );
    assert_eq!(
        assert_same_manifest(&env, &a, "apps/multi:1", &c, "ours-again/multi:1"),
        index.digest
    );
}

fn json_output_has_every_field_and_uses_the_source_tag_when_dst_has_none(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let image = fixtures::push_image(&env, &src, "apps/web:7.1", &[10_000], Flavor::Oci, None);
    let out = env.copy(&src, "apps/web:7.1", &dst, "mirror/web", []).run();
    let v = out.json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    for key in [
        "blobsCopied",
        "blobsMounted",
        "blobsSkipped",
        "bytes",
        "digest",
        "mediaType",
        "reference",
        "referrersCopied",
        "referrersSkipped",
        "seconds",
    ] {
        assert!(keys.contains(&key), "field {key} missing from {v}");
    }
    let summary = Summary::parse(&out);
    assert_eq!(summary.reference, dst.reference("mirror/web:7.1"), "{out}");
    assert_eq!(summary.digest, image.digest);
    assert_eq!(env.crane_digest(&dst, "mirror/web:7.1"), image.digest);
}

fn noop_recopy_skips_every_blob_and_moves_no_blob_bytes(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let image = fixtures::push_image(
        &env,
        &src,
        "apps/web:1",
        &[200_000, 100_000, 50_000],
        Flavor::Oci,
        None,
    );
    let first = Summary::parse(&env.copy(&src, "apps/web:1", &dst, "mirror/web:1", []).run());
    assert_eq!(first.blobs_copied, 4);

    let (src_proxy, dst_proxy) = (
        FaultProxy::start(&src, ProxyConfig::default()),
        FaultProxy::start(&dst, ProxyConfig::default()),
    );
    let out = env
        .copy(&src_proxy, "apps/web:1", &dst_proxy, "mirror/web:1", [])
        .run();
    let again = Summary::parse(&out);
    assert_eq!(again.digest, image.digest);
    assert_eq!(again.blobs_copied, 0, "{out}");
    assert_eq!(again.blobs_mounted, 0, "{out}");
    assert_eq!(again.blobs_skipped, 4, "{out}");
    let blob_gets: Vec<_> = src_proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && support::proxy::blob_digest_of(&r.path).is_some())
        .collect();
    assert!(
        blob_gets.is_empty(),
        "a no-op re-copy must not download blobs: {blob_gets:#?}"
    );
    let uploads: Vec<_> = dst_proxy
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/uploads"))
        .collect();
    assert!(
        uploads.is_empty(),
        "a no-op re-copy must not upload blobs: {uploads:#?}"
    );
}

fn copy_within_one_registry_mounts_blobs(imp: Implementation) {
    let env = TestEnv::new();
    let reg = Registry::of(imp);
    let image = fixtures::push_image(
        &env,
        &reg,
        "team-a/web:1",
        &[100_000, 100_000],
        Flavor::Oci,
        None,
    );
    let out = env
        .copy(&reg, "team-a/web:1", &reg, "team-b/web:1", [])
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(env.crane_digest(&reg, "team-b/web:1"), image.digest);
    assert_eq!(
        summary.blobs_mounted, 3,
        "blobs of the same registry should be mounted\n{out}"
    );
    assert_eq!(summary.blobs_copied, 0, "{out}");
    for blob in image.blobs() {
        assert!(reg.blob_exists("team-b/web", &blob));
    }
}

fn text_output_reports_success_on_stderr_and_copies(imp: Implementation) {
    let env = TestEnv::new();
    let (src, dst) = (Registry::of(imp), Registry::of(imp));
    let image = fixtures::push_image(&env, &src, "apps/web:1", &[10_000], Flavor::Oci, None);
    let out = env
        .ours()
        .args([
            "copy",
            "--from-plain-http",
            "--to-plain-http",
            &src.reference("apps/web:1"),
            &dst.reference("apps/web:1"),
        ])
        .ok();
    assert!(!out.stderr.contains("error:"), "{out}");
    assert_eq!(env.crane_digest(&dst, "apps/web:1"), image.digest);
}

on_each_implementation!(
    oci_image_copy_is_byte_exact,
    docker_v2s2_image_copy_is_byte_exact,
    multi_arch_index_is_copied_whole,
    docker_manifest_list_is_copied_whole,
    index_filtered_to_one_platform,
    index_filtered_to_two_platforms_with_variant,
    helm_chart_pushed_by_helm_is_copied_then_pulled_and_templated,
    helm_chart_from_http_repository_becomes_an_oci_chart,
    pushed_files_come_back_identical_with_oras_pull,
    artifact_with_subject_is_copied_by_digest_byte_exact,
    artifact_with_subject_is_copied_to_a_digest_reference,
    interop_both_ways_with_crane_oras_regctl_and_skopeo,
    json_output_has_every_field_and_uses_the_source_tag_when_dst_has_none,
    noop_recopy_skips_every_blob_and_moves_no_blob_bytes,
    copy_within_one_registry_mounts_blobs,
    text_output_reports_success_on_stderr_and_copies,
);
