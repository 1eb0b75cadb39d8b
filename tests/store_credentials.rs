//! Scoped store credentials: shared by concurrent transfers of one manifest (one
//! `listCredential` for all), and renewed mid-transfer when the registry token has expired
//! and the `listCredential` answer behind it has expired or been revoked.

mod support;

use aosm_artifact_operator::engine::NoProgress;
use aosm_artifact_operator::transfer::Source;
use std::sync::Arc;
use std::time::Duration;
use support::emulator::*;
use support::fixtures::{self, Flavor};
use support::proxy::{FaultProxy, ProxyConfig};
use support::registry::Registry;
use support::{TestEnv, rt, wait_for};

trust_emulator_ca!();

const MIB: usize = 1024 * 1024;

#[test]
fn twenty_concurrent_transfers_of_one_manifest_list_its_credential_once() {
    let env = TestEnv::new();
    let src = Registry::start();
    let image = fixtures::push_image(&env, &src, "app/cnf:1.0", &[64 * 1024], Flavor::Oci, None);
    let emu = Emulator::start(&[]);
    let m = "contoso-cnf-manifest";
    let names: Vec<String> = (0..20).map(|i| format!("contoso-cnf-{i:02}")).collect();
    let listed: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "OCIArtifact", "1.0.0"))
        .collect();
    emu.create_acr_manifest(m, &listed);

    let exec = executor();
    let requests: Vec<_> = names
        .iter()
        .map(|n| {
            push(
                registry_source(&src, "app/cnf:1.0"),
                emu.artifact(V2023, m, n, "1.0.0"),
            )
        })
        .collect();
    // All twenty on one shared executor, at the same time.
    let results = rt::block_on(futures_util::future::join_all(
        requests.iter().map(|r| exec.execute(r, &NoProgress)),
    ));
    for (name, result) in names.iter().zip(results) {
        let outcome = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outcome.digest, image.digest, "{name}");
        assert_eq!(
            outcome.destination_ref,
            emu.reference(&format!("{name}:1.0.0"))
        );
    }
    let stats = emu.stats();
    assert_eq!(
        stats["listCredential"][format!("{STORE}/{m}")],
        1,
        "one listCredential for twenty transfers of one manifest: {stats}"
    );
    assert_eq!(stats["listCredentialTotal"], 1, "{stats}");

    // Everything landed (checked by crane with a credential of the test's own).
    let cred = emu.list_credential(m, V2023);
    emu.login_tools(&env, &cred);
    for name in &names {
        let out = emu.crane_digest(&env, &format!("{name}:1.0.0"));
        out.assert_success();
        assert_eq!(out.stdout.trim(), image.digest, "{name}");
    }
}

/// How the scoped credential behind the library's registry token goes away mid-transfer.
#[derive(Clone, Copy, Debug)]
enum CredentialLoss {
    /// The `listCredential` answer expires (emulator `--credential-ttl`).
    Expiry,
    /// The emulator revokes it (admin endpoint) while the transfer is stalled.
    Revocation,
}

/// Pushes an image whose 40 MiB layer (three 16 MiB upload chunks) is read through a proxy
/// that stalls it in the middle of the second chunk. While it is stalled, the credential
/// goes away and the registry token the library holds expires (the test waits until a
/// token, and with `Expiry` a credential, issued *after* the library's is refused). Then
/// the source flows again: the next chunk is refused with 401, and the library must get a
/// new registry token — which needs a new `listCredential` — and resume the upload.
fn transfer_survives_losing_its_credential(loss: CredentialLoss) {
    let env = TestEnv::new();
    let src = Registry::start();
    let image = fixtures::push_image(&env, &src, "app/big:1.0", &[40 * MIB], Flavor::Oci, None);
    let layer = image.layers[0].clone();
    let proxy = FaultProxy::start(
        &src,
        ProxyConfig::stall(std::slice::from_ref(&layer), 20 * MIB as u64),
    );

    let ttl: &[&str] = match loss {
        // The token must outlive the upload up to the stall (a loaded machine takes a few
        // seconds), and expire during it.
        CredentialLoss::Expiry => &["--credential-ttl", "12s", "--registry-token-ttl", "10s"],
        CredentialLoss::Revocation => &["--registry-token-ttl", "10s"],
    };
    let emu = Emulator::start(ttl);
    let (m, probe_m) = ("contoso-big-manifest", "probe-manifest");
    emu.create_acr_manifest(m, &[("contoso-big", "OCIArtifact", "1.0.0")]);
    emu.create_manifest(
        PUBLISHER,
        STORE,
        probe_m,
        &[("probe", "OCIArtifact", "1.0.0")],
    );

    let exec = Arc::new(executor());
    let request = push(
        Source::Registry(plain_side(&proxy.host(), "app/big:1.0")),
        emu.artifact(V2023, m, "contoso-big", "1.0.0"),
    );
    let transfer = {
        let exec = exec.clone();
        std::thread::spawn(move || rt::block_on(exec.execute(&request, &NoProgress)))
    };

    wait_for("the source blob to stall", Duration::from_secs(120), || {
        (proxy.stalled_now() > 0).then_some(())
    });
    let lists_before = emu.list_credential_count(m);
    assert!(lists_before >= 1);
    let tokens_before = emu.acr_token_count(m);
    assert_eq!(
        tokens_before,
        1,
        "the transfer's first registry token expired before its source stalled: {}",
        emu.stats()
    );
    if let CredentialLoss::Revocation = loss {
        assert!(emu.revoke_credentials(m) >= 1);
    }
    // A registry token issued now, for another manifest: once the registry refuses it,
    // it refuses the (older) token the library holds too.
    let probe = emu.list_credential(probe_m, V2023);
    let (st, body) = emu.registry_token(&probe, &["repository:probe:pull"]);
    assert_eq!(st, 200, "{body}");
    let probe_token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        emu.registry_get_tags("probe", &probe_token),
        404,
        "the probe token works"
    );
    wait_for(
        "the registry to refuse tokens issued before now (--registry-token-ttl 10s)",
        Duration::from_secs(180),
        || (emu.registry_get_tags("probe", &probe_token) == 401).then_some(()),
    );
    if let CredentialLoss::Expiry = loss {
        // The probe credential was listed after the library's, with the same TTL: once
        // the token server refuses it, the library's has expired too, and a new registry
        // token needs a new listCredential.
        wait_for(
            "the token server to refuse credentials listed before now (--credential-ttl 12s)",
            Duration::from_secs(60),
            || (emu.registry_token(&probe, &["repository:probe:pull"]).0 == 401).then_some(()),
        );
    }
    if transfer.is_finished() {
        let ended = transfer.join().unwrap().map(|o| o.digest);
        panic!(
            "the transfer ended while its source was stalled: {ended:?}\nsource requests: {:#?}\n{}",
            proxy.requests(),
            emu.stats()
        );
    }
    proxy.release_stalls();

    let outcome = transfer.join().unwrap().unwrap_or_else(|e| {
        panic!("the transfer must survive the loss of its credential ({loss:?}): {e}")
    });
    assert_eq!(outcome.digest, image.digest);
    assert_eq!(outcome.summary.blobs_copied, 2, "{:?}", outcome.summary);
    assert!(
        emu.list_credential_count(m) > lists_before,
        "the credential was listed again: {}",
        emu.stats()
    );
    assert!(
        emu.acr_token_count(m) > tokens_before,
        "a new registry token was issued: {}",
        emu.stats()
    );
    if let CredentialLoss::Revocation = loss {
        let stats = emu.stats();
        assert!(
            stats["acrTokenRefusals"].as_u64().unwrap() >= 1,
            "the token server refused the revoked credential first: {stats}"
        );
    }
    let cred = emu.list_credential(m, V2023);
    emu.login_tools(&env, &cred);
    let out = emu.crane_digest(&env, "contoso-big:1.0.0");
    out.assert_success();
    assert_eq!(out.stdout.trim(), image.digest);
}

#[test]
fn an_expired_credential_and_registry_token_are_renewed_mid_upload() {
    transfer_survives_losing_its_credential(CredentialLoss::Expiry);
}

#[test]
fn a_revoked_credential_is_listed_again_mid_upload() {
    transfer_survives_losing_its_credential(CredentialLoss::Revocation);
}
