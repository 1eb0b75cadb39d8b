//! End-to-end: Entra token → ARM resources → listCredential → ACR token server → a real
//! docker-registry in token-auth mode that enforces the manifest's scope, driven by oras.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

fn registry_ref(emu: &Emulator, repo_tag: &str) -> String {
    format!("{}/{repo_tag}", emu.ep("registry"))
}

fn granted(token_body: &Value) -> Value {
    let (_, claims) = jwt_parts(token_body["access_token"].as_str().expect("access_token"));
    claims["access"].clone()
}

#[test]
fn scoped_credential_is_enforced_by_the_registry_and_uploaded_manifests_are_pull_only() {
    let emu = Emulator::start(&["--registry-token-ttl", "2m"]);
    let arm_token = emu.arm_token();
    let (p, s, m) = ("contoso", "contoso-store", "contoso-cnf-manifest");
    emu.create_manifest(
        &arm_token,
        p,
        s,
        m,
        &[("contoso-cnf", "1.0.0"), ("contoso-chart", "0.1.0")],
    );

    // listCredential: the documented shape.
    let cred = emu.list_credential(&arm_token, p, s, m, V2023);
    assert_eq!(
        cred["credentialType"], "AzureContainerRegistryScopedToken",
        "{cred}"
    );
    assert_eq!(cred["username"], m);
    assert_eq!(
        cred["acrServerUrl"],
        format!("https://{}", emu.ep("registry"))
    );
    assert_eq!(
        cred["repositories"],
        json!(["contoso-cnf", "contoso-chart"])
    );
    let expiry: jiff::Timestamp = cred["expiry"]
        .as_str()
        .unwrap()
        .parse()
        .expect("RFC 3339 expiry");
    let ttl = expiry.as_second() - jiff::Timestamp::now().as_second();
    assert!(
        (3500..=3600).contains(&ttl),
        "default credential TTL is 1h, got {ttl}s"
    );
    assert!(cred["expiry"].as_str().unwrap().ends_with("+00:00"));
    let acr_token = cred["acrToken"].as_str().unwrap().to_string();

    // The token server grants only the manifest's repositories, with a docker-distribution JWT.
    let (status, body) = emu.registry_token(
        m,
        &acr_token,
        &[
            "repository:contoso-cnf:pull,push",
            "repository:other:pull,push",
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token"], body["access_token"]);
    let (header, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(header["alg"], "ES256");
    assert!(
        header["x5c"].as_array().is_some_and(|c| !c.is_empty()),
        "{header}"
    );
    assert_eq!(claims["iss"], "aosm-emulator");
    assert_eq!(claims["aud"], emu.ep("registry"));
    assert_eq!(claims["sub"], m);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );
    assert!(claims["jti"].is_string() && claims["nbf"].is_u64());
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "contoso-cnf", "actions": ["pull", "push"]}])
    );
    assert_eq!(
        emu.registry_token(m, "not-the-token", &["repository:contoso-cnf:pull"])
            .0,
        401
    );
    assert_eq!(
        emu.registry_token(
            "other-manifest",
            &acr_token,
            &["repository:contoso-cnf:pull"]
        )
        .0,
        401
    );

    // The registry accepts a push to the listed repository...
    let oras = Oras::new(&emu);
    let out = oras.push(
        &registry_ref(&emu, "contoso-cnf:1.0.0"),
        m,
        &acr_token,
        "nf arm template v1",
    );
    assert!(out.status.success(), "{}", show(&out));
    // ...and refuses one outside the scope by itself.
    let out = oras.push(&registry_ref(&emu, "other:1.0.0"), m, &acr_token, "nope");
    assert!(
        !out.status.success(),
        "push outside the scope must fail: {}",
        show(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("401") || err.contains("unauthorized") || err.contains("denied"),
        "{err}"
    );

    // updateState → 202 with only a Location, in the official example's form
    // (ArtifactManifestUpdateState.json), polled to completion.
    let path = format!("{}/updateState", manifest_id(p, s, m));
    let (st, headers, _) = emu.arm_with(
        Some(&arm_token),
        Method::POST,
        &path,
        V2023,
        Some(json!({"artifactManifestState": "Uploaded"})),
    );
    assert_eq!(st, 202);
    assert!(!headers.contains_key("azure-asyncoperation"));
    let location = headers["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!(
            "{}/providers/microsoft.hybridnetwork/locations/EASTUS/operationStatuses/",
            emu.base()
        )) && location.ends_with("?api-version=2021-05-01"),
        "{location}"
    );
    let (_, _, manifest) = emu.arm_with(
        Some(&arm_token),
        Method::GET,
        &manifest_id(p, s, m),
        V2023,
        None,
    );
    assert_eq!(
        manifest["properties"]["artifactManifestState"], "Uploading",
        "not done before the operation completes"
    );
    let mut polls = Vec::new();
    let done = wait_for("updateState to complete", Duration::from_secs(30), || {
        let (st, _, body) = emu.arm_with(Some(&arm_token), Method::GET, &location, "", None);
        polls.push(st);
        (st == 200).then_some(body)
    });
    assert_eq!(
        polls.first(),
        Some(&202),
        "the first poll reports progress: {polls:?}"
    );
    assert_eq!(done["artifactManifestState"], "Uploaded");
    let (_, _, manifest) = emu.arm_with(
        Some(&arm_token),
        Method::GET,
        &manifest_id(p, s, m),
        V2023,
        None,
    );
    assert_eq!(manifest["properties"]["artifactManifestState"], "Uploaded");

    // Uploaded: the same credential now gets pull only; the registry refuses pushes.
    let (status, body) = emu.registry_token(m, &acr_token, &["repository:contoso-cnf:pull,push"]);
    assert_eq!(status, 200);
    assert_eq!(
        granted(&body),
        json!([{"type": "repository", "name": "contoso-cnf", "actions": ["pull"]}])
    );
    let out = oras.push(
        &registry_ref(&emu, "contoso-cnf:1.0.1"),
        m,
        &acr_token,
        "too late",
    );
    assert!(
        !out.status.success(),
        "push after Uploaded must fail: {}",
        show(&out)
    );
    let (out, content) = oras.pull(&registry_ref(&emu, "contoso-cnf:1.0.0"), m, &acr_token);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(content.as_deref(), Some("nf arm template v1"));

    // Counters.
    let stats = emu.stats();
    let key = format!("{s}/{m}");
    assert_eq!(stats["listCredential"][&key], 1, "{stats}");
    assert_eq!(stats["listCredentialTotal"], 1);
    assert_eq!(stats["updateState"][&key], 1);
    assert!(
        stats["tokensIssued"]["acr"].as_u64().unwrap() >= 4,
        "{stats}"
    );
    assert_eq!(stats["tokensIssued"]["acr"], stats["acrTokens"][&key]);
    assert_eq!(stats["tokensIssued"]["entraClientSecret"], 1);
    assert!(stats["armCalls"].as_u64().unwrap() >= 8, "{stats}");
    assert!(stats["acrTokenRefusals"].as_u64().unwrap() >= 2, "{stats}");

    // No credential value ever reaches a log (debug level), the emulator's or the registry's.
    let logs = emu.logs();
    assert!(logs.contains("listCredential"), "logs were captured");
    for (what, secret) in [
        ("client secret", emu.ep("clientSecret")),
        ("identity header", emu.ep("identityHeader")),
        ("acrToken", acr_token.clone()),
        ("ARM token", arm_token.clone()),
        (
            "registry token",
            body["access_token"].as_str().unwrap().to_string(),
        ),
    ] {
        assert!(!logs.contains(&secret), "the {what} appears in the logs");
    }
}

/// The `<manifest>/<artifact>` naming belongs to manifests created with api-version
/// 2025-03-30 (Microsoft's resource clean-up documentation), whatever api-version later
/// requests use; deleting such a manifest untags its artifacts.
#[test]
fn manifests_created_with_2025_03_30_keep_artifacts_under_the_manifest() {
    let emu = Emulator::start(&[]);
    let t = emu.arm_token();
    let (p, s, m) = ("fabrikam", "store", "nf-manifest");
    emu.create_manifest(&t, p, s, "old-manifest", &[("nf-image", "2.0.0")]);
    emu.create_manifest_with(&t, p, s, m, &[("nf-image", "2.0.0")], V2025);
    for asked_with in [V2023, V2024, V2025] {
        assert_eq!(
            emu.list_credential(&t, p, s, "old-manifest", asked_with)["repositories"],
            json!(["nf-image"]),
            "created with {V2023}, asked with {asked_with}"
        );
        assert_eq!(
            emu.list_credential(&t, p, s, m, asked_with)["repositories"],
            json!(["nf-manifest/nf-image"]),
            "created with {V2025}, asked with {asked_with}"
        );
    }
    let cred = emu.list_credential(&t, p, s, m, V2023);
    let token = cred["acrToken"].as_str().unwrap();

    let oras = Oras::new(&emu);
    let out = oras.push(
        &registry_ref(&emu, "nf-manifest/nf-image:2.0.0"),
        m,
        token,
        "image",
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = oras.push(&registry_ref(&emu, "nf-image:2.0.0"), m, token, "image");
    assert!(
        !out.status.success(),
        "the 2023 naming is outside a 2025 credential: {}",
        show(&out)
    );
    assert_eq!(emu.stats()["listCredential"][format!("{s}/{m}")], 4);

    // Deleting the manifest untags its artifact: the tag is gone, and a fresh credential
    // of another manifest naming the same repository finds nothing to pull.
    let (st, _, _) = emu.arm_with(Some(&t), Method::DELETE, &manifest_id(p, s, m), V2023, None);
    assert_eq!(st, 202);
    emu.create_manifest_with(&t, p, s, m, &[("nf-image", "2.0.0")], V2025);
    let cred = emu.list_credential(&t, p, s, m, V2025);
    let (out, _) = oras.pull(
        &registry_ref(&emu, "nf-manifest/nf-image:2.0.0"),
        m,
        cred["acrToken"].as_str().unwrap(),
    );
    assert!(!out.status.success(), "untagged on delete: {}", show(&out));
    assert!(
        show(&out).to_lowercase().contains("not found"),
        "the tag is gone, not refused: {}",
        show(&out)
    );
}

#[test]
fn sigterm_stops_the_registry_and_removes_endpoints_json() {
    let mut emu = Emulator::start(&[]);
    let registry_pid = emu.ep["registryPid"].as_u64().expect("registryPid") as u32;
    let emulator_pid = emu.pid();
    assert_eq!(emu.ep["pid"].as_u64(), Some(u64::from(emulator_pid)));
    assert!(process_alive(registry_pid));
    let registry = emu.ep("registry");
    let state = std::path::PathBuf::from(emu.ep("caFile"))
        .parent()
        .unwrap()
        .to_path_buf();
    let status = emu.stop().expect("exit status");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    wait_for("registry to exit", Duration::from_secs(15), || {
        (!process_alive(registry_pid)).then_some(())
    });
    assert!(
        std::net::TcpStream::connect(registry).is_err(),
        "registry port closed"
    );
    assert!(
        !state.join("endpoints.json").exists(),
        "endpoints.json is removed on exit"
    );
}
