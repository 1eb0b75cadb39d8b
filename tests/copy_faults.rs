//! Faults on the wire: throttling (429 + Retry-After), 503s, dropped connections and
//! cut-off bodies from a proxy in front of the source and/or the destination, and a copy
//! killed half-way and run again.

mod support;

use std::time::Duration;
use support::fixtures::{self, Flavor};
use support::{Fault, FaultProxy, ProxyConfig, Registry, Summary, TestEnv, wait_for};

const ALL_FAULTS: &[Fault] = &[
    Fault::TooManyRequests,
    Fault::Unavailable,
    Fault::DropConnection,
    Fault::TruncateBody,
];

#[test]
fn faults_at_the_source_are_retried() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    let image = fixtures::push_image(
        &env,
        &src,
        "apps/app:1",
        &[600_000, 300_000, 200_000, 100_000, 50_000],
        Flavor::Oci,
        None,
    );
    // A copy reads few things from its source: fault every third request.
    let proxy = FaultProxy::start(&src, ProxyConfig::faults(3, ALL_FAULTS));
    let out = env
        .copy(&proxy, "apps/app:1", &dst, "mirror/app:1", [])
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(summary.digest, image.digest);
    assert_eq!(env.crane_digest(&dst, "mirror/app:1"), image.digest);
    assert_eq!(env.skopeo_digest(&dst, "mirror/app:1"), image.digest);
    let faults = proxy.faults_injected();
    assert!(
        faults.len() >= 2,
        "the proxy injected too few faults to mean anything: {} requests: {:#?}\n{out}",
        proxy.request_count(),
        proxy.requests()
    );
}

/// A registry that refuses request bodies above about 20 MB with 413, as Azure Container
/// Registry does: an upload asked for in one 64 MiB request continues in chunks it takes.
#[test]
fn a_413_for_a_large_body_switches_the_upload_to_chunks() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    let image = fixtures::push_image(
        &env,
        &src,
        "apps/big:1",
        &[24 * 1024 * 1024],
        Flavor::Oci,
        None,
    );
    const ACR_LIMIT: u64 = 20 * 1000 * 1000;
    let proxy = FaultProxy::start(
        &dst,
        ProxyConfig {
            max_request_body: Some(ACR_LIMIT),
            ..Default::default()
        },
    );
    let out = env
        .copy(
            &src,
            "apps/big:1",
            &proxy,
            "mirror/big:1",
            ["--chunk-size", "67108864"],
        )
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(summary.digest, image.digest);
    assert_eq!(env.crane_digest(&dst, "mirror/big:1"), image.digest);
    for blob in image.blobs() {
        assert!(dst.blob_exists("mirror/big", &blob));
    }
    let requests = proxy.requests();
    let refused: Vec<_> = requests.iter().filter(|r| r.status == Some(413)).collect();
    assert!(
        !refused.is_empty(),
        "nothing was large enough to refuse: {requests:#?}"
    );
    assert!(
        refused.iter().all(|r| r.path.contains("/blobs/uploads/")),
        "{refused:#?}"
    );
    let uploads_after = requests
        .iter()
        .skip_while(|r| r.status != Some(413))
        .filter(|r| r.path.contains("/blobs/uploads/") && r.status.is_some_and(|s| s < 300))
        .count();
    assert!(uploads_after >= 2, "continued in chunks: {requests:#?}");
}

#[test]
fn faults_at_the_destination_are_retried() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    let image = fixtures::push_image(
        &env,
        &src,
        "apps/app:1",
        &[600_000, 300_000, 200_000],
        Flavor::Docker,
        None,
    );
    let proxy = FaultProxy::start(&dst, ProxyConfig::faults(5, ALL_FAULTS));
    // Small chunks: more upload requests, so faults hit uploads mid-way too.
    let out = env
        .copy(
            &src,
            "apps/app:1",
            &proxy,
            "mirror/app:1",
            ["--chunk-size", "131072"],
        )
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(summary.digest, image.digest);
    assert_eq!(env.crane_digest(&dst, "mirror/app:1"), image.digest);
    for blob in image.blobs() {
        assert!(dst.blob_exists("mirror/app", &blob));
    }
    let faults = proxy.faults_injected();
    assert!(faults.len() >= 2, "{faults:#?}");
    assert!(
        faults.iter().any(|r| r.path.contains("/blobs/uploads/")),
        "no fault hit an upload: {faults:#?}"
    );
}

#[test]
fn faults_on_both_sides_of_an_index_copy() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    let index = fixtures::push_index(
        &env,
        &src,
        "apps/multi",
        "1",
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        150_000,
        Flavor::Oci,
    );
    let src_proxy = FaultProxy::start(&src, ProxyConfig::faults(4, ALL_FAULTS));
    let dst_proxy = FaultProxy::start(
        &dst,
        ProxyConfig::faults(
            5,
            &[
                Fault::Unavailable,
                Fault::DropConnection,
                Fault::TooManyRequests,
            ],
        ),
    );
    let out = env
        .copy(&src_proxy, "apps/multi:1", &dst_proxy, "mirror/multi:1", [])
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(summary.digest, index.digest);
    assert_eq!(env.skopeo_digest(&dst, "mirror/multi:1"), index.digest);
    for (platform, child) in &index.children {
        assert_eq!(
            env.crane_digest(&dst, &format!("mirror/multi@{}", child.digest)),
            child.digest,
            "{platform}"
        );
    }
    assert!(!src_proxy.faults_injected().is_empty());
    assert!(!dst_proxy.faults_injected().is_empty());
}

#[test]
fn throttled_destination_with_basic_auth() {
    let env = TestEnv::new();
    let src = Registry::start();
    let dst = Registry::with_basic_auth("robot", "Thr0ttle-Pw");
    let image = fixtures::push_image(&env, &src, "apps/app:1", &[300_000], Flavor::Oci, None);
    let proxy = FaultProxy::start(&dst, ProxyConfig::faults(3, &[Fault::TooManyRequests]));
    let out = env
        .copy(&src, "apps/app:1", &proxy, "mirror/app:1", [])
        .run();
    assert_eq!(Summary::parse(&out).digest, image.digest);
    assert_eq!(env.crane_digest(&dst, "mirror/app:1"), image.digest);
    assert!(!proxy.faults_injected().is_empty());
    assert!(!out.stderr.contains("Thr0ttle-Pw"), "{out}");
}

#[test]
fn killed_copy_is_resumed_and_skips_finished_blobs() {
    let env = TestEnv::new();
    let (src, dst) = (Registry::start(), Registry::start());
    const MIB: usize = 1024 * 1024;
    let image = fixtures::push_image(
        &env,
        &src,
        "apps/big:1",
        &[2 * MIB, 3 * MIB, 3 * MIB, 3 * MIB],
        Flavor::Oci,
        None,
    );
    // Every layer but the first stalls after 256 KiB, so the copy is stuck half-way with
    // the first layer (and the config) done.
    let stalled: Vec<String> = image.layers[1..].to_vec();
    let proxy = FaultProxy::start(&src, ProxyConfig::stall(&stalled, 256 * 1024));

    let running = env
        .copy(&proxy, "apps/big:1", &dst, "mirror/big:1", [])
        .timeout(Duration::from_secs(60))
        .spawn();
    let first = image.layers[0].clone();
    let mut running = running;
    wait_for(
        "the first layer to land at the destination",
        Duration::from_secs(30),
        || {
            assert!(
                running.is_running(),
                "the copy ended before it could be interrupted"
            );
            dst.blob_exists("mirror/big", &first).then_some(())
        },
    );
    wait_for(
        "the copy to be stuck in stalled downloads",
        Duration::from_secs(10),
        || (proxy.stalled_now() >= 1).then_some(()),
    );
    let killed = running.kill9();
    assert_eq!(killed.signal, Some(9), "{killed}");

    // Half-way: no tag, no manifest, and the stalled layers are not there.
    env.assert_absent(&dst, "mirror/big:1");
    assert_eq!(dst.manifest_status("mirror/big", &image.digest), 404);
    for layer in &stalled {
        assert!(!dst.blob_exists("mirror/big", layer));
    }

    // Run it again (the network is fine now).
    proxy.release_stalls();
    let out = env
        .copy(&proxy, "apps/big:1", &dst, "mirror/big:1", [])
        .run();
    let summary = Summary::parse(&out);
    assert_eq!(summary.digest, image.digest);
    assert_eq!(env.crane_digest(&dst, "mirror/big:1"), image.digest);
    assert_eq!(env.skopeo_digest(&dst, "mirror/big:1"), image.digest);
    assert!(
        summary.blobs_skipped >= 1,
        "the re-run should skip the blobs that landed\n{out}"
    );
    assert_eq!(summary.blobs_total(), 5, "{out}");
    assert!(
        summary.blobs_copied >= 3,
        "the stalled layers still had to be copied\n{out}"
    );
}
