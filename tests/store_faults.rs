//! ARM throttling (429 + `Retry-After`) and transient ARM errors (500/503) injected by the
//! emulator: the transfer retries and succeeds, waiting as long as the server asked.

mod support;

use std::time::Instant;
use support::TestEnv;
use support::emulator::*;
use support::fixtures::{self, Flavor};
use support::registry::Registry;

trust_emulator_ca!();

#[test]
fn arm_throttling_is_retried_after_the_servers_retry_after() {
    let env = TestEnv::new();
    let src = Registry::start();
    let image = fixtures::push_image(&env, &src, "app/cnf:1.0", &[256 * 1024], Flavor::Oci, None);
    // Every 2nd ARM call answers 429 with Retry-After: 1.
    let emu = Emulator::start(&["--arm-throttle-every", "2"]);
    let m = "contoso-cnf-manifest";
    emu.create_acr_manifest(m, &[("contoso-cnf", "OCIArtifact", "1.0.0")]);
    let throttled_before = emu.stats()["armThrottled"].as_u64().unwrap();

    let exec = executor();
    let started = Instant::now();
    let outcome = run_ok(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2023, m, "contoso-cnf", "1.0.0"),
        ),
    );
    let elapsed = started.elapsed();
    assert_eq!(outcome.digest, image.digest);
    let stats = emu.stats();
    let throttled = stats["armThrottled"].as_u64().unwrap() - throttled_before;
    assert!(throttled >= 1, "the transfer met throttling: {stats}");
    // The ARM calls of one transfer are sequential: each 429 cost at least its Retry-After.
    assert!(
        elapsed.as_secs_f64() >= throttled as f64 * 0.95,
        "{throttled} answers with Retry-After: 1, yet the transfer took {elapsed:?}"
    );
    assert_eq!(emu.list_credential_count(m), 1, "{stats}");

    // updateState under throttling too (its polls are ARM calls).
    support::rt::block_on(exec.mark_uploaded(&emu.store_config(V2023), m))
        .unwrap_or_else(|e| panic!("mark_uploaded under throttling: {e}"));
    assert_eq!(emu.manifest_state(m), "Uploaded");
}

#[test]
fn transient_arm_errors_are_retried() {
    let env = TestEnv::new();
    let src = Registry::start();
    let image = fixtures::push_image(
        &env,
        &src,
        "app/cnf:1.0",
        &[128 * 1024],
        Flavor::Docker,
        None,
    );
    let emu = Emulator::start(&["--arm-error-rate", "0.5"]);
    let m = "contoso-cnf-manifest";
    emu.create_acr_manifest(m, &[("contoso-cnf", "OCIArtifact", "1.0.0")]);
    let errors_before = emu.stats()["armErrors"].as_u64().unwrap();

    let exec = executor();
    let outcome = run_ok(
        &exec,
        &push(
            registry_source(&src, "app/cnf:1.0"),
            emu.artifact(V2023, m, "contoso-cnf", "1.0.0"),
        ),
    );
    assert_eq!(outcome.digest, image.digest);
    let stats = emu.stats();
    assert!(
        stats["armErrors"].as_u64().unwrap() > errors_before,
        "the transfer met 500/503 answers: {stats}"
    );
    assert_eq!(emu.list_credential_count(m), 1, "{stats}");
}
