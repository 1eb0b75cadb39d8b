//! ARM and Entra behaviour without a registry: authentication, api-versions, errors,
//! fault knobs, credential expiry and revocation, seed files, TLS options.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

fn no_registry(extra: &[&str]) -> Emulator {
    let mut args = vec!["--no-registry"];
    args.extend_from_slice(extra);
    Emulator::start(&args)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[test]
fn arm_checks_tokens_api_versions_and_answers_arm_errors() {
    let emu = no_registry(&[]);
    let t = emu.arm_token();
    let (p, s, m) = ("contoso", "acr-store", "manifest");
    emu.create_manifest(&t, p, s, m, &[("cnf", "1.0.0")]);
    let mid = manifest_id(p, s, m);

    // Authentication.
    let (st, h, b) = emu.arm_with(None, Method::GET, &mid, V2023, None);
    assert_eq!((st, code(&b)), (401, "AuthenticationFailed"), "{b}");
    assert!(h.contains_key("www-authenticate"));
    let (st, _, b) = emu.arm_with(Some("not.a.token"), Method::GET, &mid, V2023, None);
    assert_eq!((st, code(&b)), (401, "InvalidAuthenticationToken"), "{b}");
    let (id, secret) = (emu.ep("clientId"), emu.ep("clientSecret"));
    let (_, storage) = emu.entra(&[
        ("grant_type", "client_credentials"),
        ("client_id", &id),
        ("client_secret", &secret),
        ("scope", "https://storage.azure.com/.default"),
    ]);
    let storage_token = storage["access_token"].as_str().unwrap();
    let (st, _, b) = emu.arm_with(Some(storage_token), Method::GET, &mid, V2023, None);
    assert_eq!(
        (st, code(&b)),
        (401, "InvalidAuthenticationTokenAudience"),
        "{b}"
    );

    // api-versions.
    let (st, _, b) = emu.arm_with(Some(&t), Method::GET, &mid, "2022-01-01-preview", None);
    assert_eq!((st, code(&b)), (400, "InvalidApiVersionParameter"), "{b}");
    let (st, _, b) = emu.arm_with(Some(&t), Method::GET, &mid, "", None);
    assert_eq!((st, code(&b)), (400, "MissingApiVersionParameter"), "{b}");
    for v in [V2023, V2024, V2025] {
        assert_eq!(
            emu.arm_with(Some(&t), Method::GET, &mid, v, None).0,
            200,
            "{v}"
        );
    }

    // Resource rules and errors.
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::GET,
        &manifest_id(p, s, "missing"),
        V2023,
        None,
    );
    assert_eq!((st, code(&b)), (404, "ResourceNotFound"), "{b}");
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::PUT,
        &store_id("no-such-publisher", "x"),
        V2023,
        Some(json!({"properties": {"storeType": "AzureContainerRegistry"}})),
    );
    assert_eq!((st, code(&b)), (404, "ParentResourceNotFound"), "{b}");
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::PUT,
        &store_id(p, "bad"),
        V2023,
        Some(json!({"properties": {"storeType": "Floppy"}})),
    );
    assert_eq!((st, code(&b)), (400, "InvalidParameter"), "{b}");
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::PUT,
        &manifest_id(p, s, "bad-version"),
        V2023,
        Some(json!({"properties": {"artifacts": [{"artifactName": "cnf", "artifactType": "OCIArtifact", "artifactVersion": "1.0"}]}})),
    );
    assert_eq!((st, code(&b)), (400, "InvalidParameter"), "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("1.0.0"),
        "{b}"
    );

    // ARM paths are case-insensitive; GET answers the ARM shape.
    let lower = mid
        .replace("resourceGroups", "resourcegroups")
        .replace("Microsoft.HybridNetwork", "microsoft.hybridnetwork");
    let (st, _, b) = emu.arm_with(Some(&t), Method::GET, &lower, V2023, None);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["id"], mid);
    assert_eq!(b["name"], m);
    assert_eq!(
        b["type"],
        "Microsoft.HybridNetwork/publishers/artifactStores/artifactManifests"
    );
    assert_eq!(
        b["properties"]["artifacts"],
        json!([{"artifactName": "cnf", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}])
    );
    assert_eq!(b["properties"]["provisioningState"], "Succeeded");
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::GET,
        &format!("{}/artifactManifests", store_id(p, s)),
        V2023,
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(b["value"].as_array().map(Vec::len), Some(1), "{b}");

    // Without scheme, as some real answers are.
    emu.set_config(json!({"acrServerUrlScheme": false}));
    let cred = emu.list_credential(&t, p, s, m, V2023);
    assert!(
        !cred["acrServerUrl"].as_str().unwrap().contains("://"),
        "{cred}"
    );

    // 403 for a denied client, then allowed again.
    emu.set_config(json!({"denyClients": [emu.ep("clientId")]}));
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::POST,
        &format!("{mid}/listCredential"),
        V2023,
        None,
    );
    assert_eq!((st, code(&b)), (403, "AuthorizationFailed"), "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("listCredential/action"),
        "{b}"
    );
    emu.set_config(json!({"denyClients": [], "denyScopes": [store_id(p, s)]}));
    assert_eq!(
        emu.arm_with(Some(&t), Method::GET, &mid, V2023, None).0,
        403
    );
    assert_eq!(
        emu.arm_with(Some(&t), Method::GET, &publisher_id(p), V2023, None)
            .0,
        200
    );
    emu.set_config(json!({"denyScopes": []}));

    // updateState synchronously when configured so.
    emu.set_config(json!({"updateStatePolls": 0}));
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::POST,
        &format!("{mid}/updateState"),
        V2023,
        Some(json!({"artifactManifestState": "Uploaded"})),
    );
    assert_eq!(
        (st, &b),
        (200, &json!({"artifactManifestState": "Uploaded"}))
    );
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::POST,
        &format!("{mid}/updateState"),
        V2023,
        Some(json!({"artifactManifestState": "Succeeded"})),
    );
    assert_eq!((st, code(&b)), (400, "InvalidParameter"), "{b}");

    // A storage-account store answers the other credential type.
    let (st, h, b) = emu.arm_with(
        Some(&t),
        Method::PUT,
        &store_id(p, "sa-store"),
        V2023,
        Some(json!({"properties": {"storeType": "AzureStorageAccount"}})),
    );
    assert_eq!(st, 201);
    // A create is the spec's long-running PUT: 201 with Azure-AsyncOperation, whose URL
    // answers the operation's status.
    let status_url = h["azure-asyncoperation"].to_str().unwrap().to_string();
    let (st, _, op) = emu.arm_with(Some(&t), Method::GET, &status_url, "", None);
    assert_eq!(
        (st, op["status"].as_str()),
        (200, Some("Succeeded")),
        "{op}"
    );
    let storage_id = b["properties"]["storageResourceId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        storage_id.contains("/providers/Microsoft.Storage/storageAccounts/"),
        "{b}"
    );
    assert_eq!(b["systemData"]["createdByType"], "Application", "{b}");
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::PUT,
        &manifest_id(p, "sa-store", "vhd"),
        V2023,
        Some(json!({"properties": {"artifacts": [{"artifactName": "nf-vhd", "artifactType": "VhdImageFile", "artifactVersion": "1-0-0"}]}})),
    );
    assert_eq!(st, 201, "{b}");
    let cred = emu.list_credential(&t, p, "sa-store", "vhd", V2023);
    assert_eq!(cred["credentialType"], "AzureStorageAccountToken");
    assert_eq!(
        cred["containerCredentials"][0]["containerName"],
        "nf-vhd-1-0-0"
    );
    assert!(
        cred["containerCredentials"][0]["containerSasUri"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert!(cred["expiry"].is_string());
    assert_eq!(cred["storageAccountId"], storage_id.as_str());

    // DELETE is the spec's long-running delete: 202 with only a Location in the official
    // example's form (ArtifactManifestDelete.json), polled to 204. It cascades; a second
    // DELETE is 204.
    let (st, h, _) = emu.arm_with(Some(&t), Method::DELETE, &store_id(p, s), V2023, None);
    assert_eq!(st, 202);
    assert!(h.get("azure-asyncoperation").is_none());
    let location = h["location"].to_str().unwrap().to_string();
    let base = emu.base();
    let rest = location
        .strip_prefix(&format!(
            "{base}/providers/microsoft.hybridnetwork/locations/EASTUS/operationStatuses/"
        ))
        .unwrap_or_else(|| panic!("{location}"));
    let (id, query) = rest.split_once('?').unwrap();
    let (uuid, tail) = id.split_once('*').unwrap();
    assert_eq!((uuid.len(), tail.len()), (36, 64), "{id}");
    assert_eq!(query, "api-version=2021-05-01");
    assert_eq!(
        emu.arm_with(Some(&t), Method::GET, &location, "", None).0,
        204
    );
    assert_eq!(emu.arm_with(None, Method::GET, &location, "", None).0, 401);
    assert_eq!(
        emu.arm_with(Some(&t), Method::GET, &mid, V2023, None).0,
        404
    );
    assert_eq!(
        emu.arm_with(Some(&t), Method::DELETE, &store_id(p, s), V2023, None)
            .0,
        204
    );
    assert!(emu.stats()["armAuthFailures"].as_u64().unwrap() >= 3);
}

#[test]
fn fault_knobs_throttle_and_fail_deterministically() {
    let emu = no_registry(&["--arm-throttle-every", "2"]);
    let t = emu.arm_token();
    let path = publisher_id("p");
    let put = Some(json!({"properties": {}}));
    assert_eq!(
        emu.arm_with(Some(&t), Method::PUT, &path, V2023, put.clone())
            .0,
        201
    );
    let (st, h, b) = emu.arm_with(Some(&t), Method::GET, &path, V2023, None);
    assert_eq!(
        (st, code(&b)),
        (429, "TooManyRequests"),
        "every 2nd call from --arm-throttle-every 2: {b}"
    );
    assert_eq!(h["retry-after"], "1");

    // Changed at runtime: the count restarts.
    emu.set_config(json!({"armThrottleEvery": 3}));
    let statuses: Vec<u16> = (0..6)
        .map(|_| emu.arm_with(Some(&t), Method::GET, &path, V2023, None).0)
        .collect();
    assert_eq!(statuses, [200, 200, 429, 200, 200, 429]);

    emu.set_config(json!({"armThrottleEvery": 0, "armErrorRate": 0.5}));
    let answers: Vec<(u16, String, Option<String>)> = (0..4)
        .map(|_| {
            let (st, h, b) = emu.arm_with(Some(&t), Method::GET, &path, V2023, None);
            (
                st,
                code(&b).to_string(),
                h.get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            (200, String::new(), None),
            (500, "InternalServerError".into(), None),
            (200, String::new(), None),
            (503, "ServiceUnavailable".into(), Some("1".into())),
        ]
    );
    emu.set_config(json!({"armErrorRate": 0}));
    assert_eq!(
        emu.arm_with(Some(&t), Method::GET, &path, V2023, None).0,
        200
    );

    let stats = emu.stats();
    assert_eq!(stats["armThrottled"], 3, "{stats}");
    assert_eq!(stats["armErrors"], 2, "{stats}");
    assert_eq!(stats["armCalls"], 13, "{stats}");

    // Bad knob values are refused whole.
    let resp = emu
        .client()
        .post(format!("{}/_emulator/config", emu.base()))
        .json(&json!({"armErrorRate": 7}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let cfg: Value = emu
        .client()
        .get(format!("{}/_emulator/config", emu.base()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(cfg["armErrorRate"], 0.0);
    assert_eq!(cfg["credentialTtl"], "1h");
}

#[test]
fn entra_client_secret_workload_identity_and_managed_identity() {
    let emu = no_registry(&[]);
    let (id, secret, tenant) = (
        emu.ep("clientId"),
        emu.ep("clientSecret"),
        emu.ep("tenantId"),
    );
    let arm_scope = "https://management.azure.com/.default";
    let grant = |extra: &[(&str, &str)]| {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", arm_scope)];
        form.extend_from_slice(extra);
        emu.entra(&form)
    };
    let list_publishers = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.HybridNetwork/publishers"
    );

    // Client secret.
    let (st, b) = grant(&[("client_id", &id), ("client_secret", &secret)]);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 3600);
    assert_eq!(b["ext_expires_in"], 3600);
    let (_, claims) = jwt_parts(b["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://management.azure.com");
    assert_eq!(claims["appid"], id);
    assert_eq!(claims["tid"], tenant);
    let (st, b) = grant(&[("client_id", &id), ("client_secret", "wrong")]);
    assert_eq!(
        (st, &b["error"], &b["error_codes"]),
        (401, &json!("invalid_client"), &json!([7000215])),
        "{b}"
    );
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    let (st, b) = grant(&[
        ("client_id", "00000000-0000-0000-0000-000000000000"),
        ("client_secret", &secret),
    ]);
    assert_eq!(
        (st, &b["error"]),
        (400, &json!("unauthorized_client")),
        "{b}"
    );
    let (st, b) = emu.entra(&[
        ("grant_type", "client_credentials"),
        ("client_id", &id),
        ("client_secret", &secret),
        ("scope", "https://management.azure.com"),
    ]);
    assert_eq!((st, &b["error"]), (400, &json!("invalid_scope")), "{b}");
    let other_tenant = emu
        .ep("tokenEndpoint")
        .replace(&tenant, "contoso.onmicrosoft.com");
    let resp = emu
        .client()
        .post(other_tenant)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", arm_scope),
        ])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // Workload identity, checked as Entra does: a federated identity credential names the
    // assertion's issuer, subject and audience, and the signature verifies against the
    // issuer's OpenID discovery keys. The external issuer here is the emulator's own Entra
    // (HTTPS, discovery and JWKS): a token it issues for `api://AzureADTokenExchange` is
    // the assertion, its subject the client id.
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let assert_with = |assertion: &str| {
        grant(&[
            ("client_id", &id),
            ("client_assertion_type", assertion_type),
            ("client_assertion", assertion),
        ])
    };
    let codes = |b: &Value| b["error_codes"].clone();
    let (st, b) = emu.entra(&[
        ("grant_type", "client_credentials"),
        ("scope", "api://AzureADTokenExchange/.default"),
        ("client_id", &id),
        ("client_secret", &secret),
    ]);
    assert_eq!(st, 200, "{b}");
    let external = b["access_token"].as_str().unwrap().to_string();
    let issuer = jwt_parts(&external).1["iss"].as_str().unwrap().to_string();
    // No federated credential yet: refused for its issuer.
    let (st, b) = assert_with(&external);
    assert_eq!((st, codes(&b)), (400, json!([700211])), "{b}");
    let credential = |subject: &str| {
        json!({"federatedCredentials": [{"issuer": issuer, "subject": subject}],
            "oidcCaFile": emu.ep("caFile")})
    };
    emu.set_config(credential(&id));
    let (st, b) = assert_with(&external);
    assert_eq!(st, 200, "{b}");
    let wi_token = b["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        emu.arm_with(Some(&wi_token), Method::GET, &list_publishers, V2023, None)
            .0,
        200
    );
    // Another subject, another audience, a forged signature, garbage.
    emu.set_config(credential("system:serviceaccount:a:b"));
    let (st, b) = assert_with(&external);
    assert_eq!((st, codes(&b)), (400, json!([700213])), "{b}");
    emu.set_config(credential(&id));
    let (st, b) = emu.entra(&[
        ("grant_type", "client_credentials"),
        ("scope", "https://kubernetes.default.svc/.default"),
        ("client_id", &id),
        ("client_secret", &secret),
    ]);
    assert_eq!(st, 200, "{b}");
    let (st, b) = assert_with(b["access_token"].as_str().unwrap());
    assert_eq!((st, codes(&b)), (400, json!([700212])), "{b}");
    let mut forged: Vec<&str> = external.split('.').collect();
    let other = federated_assertion("api://AzureADTokenExchange", &id, 3600);
    forged[2] = other.split('.').nth(2).unwrap();
    let (st, b) = assert_with(&forged.join("."));
    assert_eq!((st, codes(&b)), (400, json!([700027])), "{b}");
    let (st, b) = assert_with("not-a-jwt");
    assert_eq!((st, codes(&b)), (400, json!([50027])), "{b}");

    // App Service managed identity (IDENTITY_ENDPOINT + IDENTITY_HEADER).
    let msi = |header: Option<&str>, query: &[(&str, &str)]| {
        let mut req = emu
            .client()
            .get(emu.ep("identityEndpoint"))
            .query(query)
            .header("metadata", "true");
        if let Some(h) = header {
            req = req.header("X-IDENTITY-HEADER", h);
        }
        let resp = req.send().unwrap();
        (
            resp.status().as_u16(),
            resp.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let q = [
        ("api-version", "2019-08-01"),
        ("resource", "https://management.azure.com"),
    ];
    assert_eq!(msi(None, &q).0, 401);
    assert_eq!(msi(Some("wrong"), &q).0, 401);
    let header = emu.ep("identityHeader");
    let (st, b) = msi(Some(&header), &q);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["resource"], "https://management.azure.com");
    let expires_on: u64 = b["expires_on"]
        .as_str()
        .expect("expires_on is a string")
        .parse()
        .expect("unix seconds");
    assert!(expires_on > 1_700_000_000);
    let mi_token = b["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        jwt_parts(&mi_token).1["appid"],
        emu.ep("managedIdentityClientId")
    );
    assert_eq!(
        emu.arm_with(Some(&mi_token), Method::GET, &list_publishers, V2023, None)
            .0,
        200
    );
    let mi_id = emu.ep("managedIdentityClientId");
    assert_eq!(
        msi(Some(&header), &[q[0], q[1], ("client_id", &mi_id)]).0,
        200
    );
    assert_eq!(
        msi(Some(&header), &[q[0], q[1], ("client_id", "unknown")]).0,
        400
    );
    assert_eq!(
        msi(Some(&header), &[("api-version", "2017-09-01"), q[1]]).0,
        400
    );

    // OpenID metadata and keys.
    let meta: Value = emu
        .client()
        .get(format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            emu.base()
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["token_endpoint"], emu.ep("tokenEndpoint"));
    let jwks: Value = emu
        .client()
        .get(meta["jwks_uri"].as_str().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["kid"], jwt_parts(&wi_token).0["kid"]);
    // `organizations` has a discovery document too (MSAL reads it on `az logout`); a
    // tenant that does not exist has none.
    let discovery = |t: &str| {
        let resp = emu
            .client()
            .get(format!(
                "{}/{t}/v2.0/.well-known/openid-configuration",
                emu.base()
            ))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    };
    let (st, orgs) = discovery("organizations");
    assert_eq!(st, 200, "{orgs}");
    assert_eq!(
        orgs["issuer"],
        format!("{}/{{tenantid}}/v2.0", emu.base()),
        "{orgs}"
    );
    assert_eq!(discovery("not-a-tenant").0, 400);

    let stats = emu.stats();
    // Client secret: the ARM token and the two tokens used as assertions; one exchange.
    assert_eq!(stats["tokensIssued"]["entraClientSecret"], 3, "{stats}");
    assert_eq!(stats["tokensIssued"]["entraClientAssertion"], 1, "{stats}");
    assert_eq!(stats["tokensIssued"]["managedIdentity"], 2, "{stats}");
    assert_eq!(stats["tokensIssued"]["entra"], 6, "{stats}");
}

#[test]
fn credentials_and_registry_tokens_expire_and_can_be_revoked() {
    let emu = no_registry(&["--credential-ttl", "2s", "--registry-token-ttl", "1s"]);
    let t = emu.arm_token();
    let (p, s, m) = ("p", "s", "m");
    emu.create_manifest(&t, p, s, m, &[("cnf", "1.0.0")]);
    let cred = emu.list_credential(&t, p, s, m, V2023);
    let expiry: jiff::Timestamp = cred["expiry"].as_str().unwrap().parse().unwrap();
    assert!(
        expiry.as_second() - jiff::Timestamp::now().as_second() <= 2,
        "{cred}"
    );
    let token = cred["acrToken"].as_str().unwrap().to_string();
    let (st, b) = emu.registry_token(m, &token, &["repository:cnf:pull,push"]);
    assert_eq!(st, 200, "{b}");
    let (_, claims) = jwt_parts(b["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        1
    );
    assert_eq!(b["expires_in"], 1);
    // Without a registry the token's audience is the requested service.
    assert_eq!(claims["aud"], "emulator");
    wait_for("the credential to expire", Duration::from_secs(20), || {
        (emu.registry_token(m, &token, &["repository:cnf:pull"]).0 == 401).then_some(())
    });

    // Revocation (all credentials of one manifest), and deleting the manifest.
    emu.set_config(json!({"credentialTtl": "1h"}));
    let token = emu.list_credential(&t, p, s, m, V2023)["acrToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(emu.registry_token(m, &token, &[]).0, 200);
    let resp = emu
        .client()
        .post(format!("{}/_emulator/revoke-credentials", emu.base()))
        .json(&json!({"manifestId": manifest_id(p, s, m)}))
        .send()
        .unwrap();
    assert_eq!(resp.json::<Value>().unwrap(), json!({"revoked": 1}));
    assert_eq!(emu.registry_token(m, &token, &[]).0, 401);
    let token = emu.list_credential(&t, p, s, m, V2023)["acrToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        emu.arm_with(Some(&t), Method::DELETE, &manifest_id(p, s, m), V2023, None)
            .0,
        202
    );
    assert_eq!(emu.registry_token(m, &token, &[]).0, 401);
    let stats = emu.stats();
    assert_eq!(stats["listCredential"]["s/m"], 3, "{stats}");
    assert!(stats["acrTokenRefusals"].as_u64().unwrap() >= 3, "{stats}");

    // Stats can be reset.
    let resp = emu
        .client()
        .delete(format!("{}/_emulator/stats", emu.base()))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(emu.stats()["listCredentialTotal"], 0);
}

#[test]
fn seed_file_ca_reuse_and_given_tls_certificate() {
    let state_a = tempfile::tempdir().unwrap();
    let seed = state_a.path().join("seed.json");
    let p = publisher_id("seeded");
    std::fs::write(
        &seed,
        json!([
            {"id": format!("{p}/artifactStores/store/artifactManifests/done"), "properties": {
                "artifacts": [{"artifactName": "cnf", "artifactType": "OCIArtifact", "artifactVersion": "1.0.0"}],
                "artifactManifestState": "Uploaded"}},
            {"id": format!("{p}/artifactStores/store"), "properties": {"storeType": "AzureContainerRegistry"}},
            {"id": p, "location": "westeurope", "properties": {}},
        ])
        .to_string(),
    )
    .unwrap();
    let state = state_a.path().join("state");
    let seed_arg = seed.to_str().unwrap();
    let mut first = Emulator::start_in(
        tempfile::tempdir().unwrap(),
        &state,
        &["--no-registry", "--seed", seed_arg],
    );
    let t = first.arm_token();
    let cred = first.list_credential(&t, "seeded", "store", "done", V2023);
    let (st, b) = first.registry_token(
        "done",
        cred["acrToken"].as_str().unwrap(),
        &["repository:cnf:pull,push"],
    );
    assert_eq!(st, 200);
    let (_, claims) = jwt_parts(b["access_token"].as_str().unwrap());
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "cnf", "actions": ["pull"]}]),
        "seeded as Uploaded"
    );
    let (_, _, store) = first.arm_with(
        Some(&t),
        Method::GET,
        &format!("{p}/artifactStores/store"),
        V2023,
        None,
    );
    assert_eq!(store["location"], "westeurope");
    let ca_before = std::fs::read(state.join("ca.pem")).unwrap();
    first.stop();

    // Same state dir: the CA is reused, so clients keep trusting it.
    let second = Emulator::start_in(tempfile::tempdir().unwrap(), &state, &["--no-registry"]);
    assert_eq!(std::fs::read(state.join("ca.pem")).unwrap(), ca_before);
    assert_eq!(
        second.arm_with(None, Method::GET, &p, V2023, None).0,
        401,
        "served over TLS the old CA verifies"
    );
    drop(second);

    // A given certificate: served as is, caFile is the given CA.
    let given_state = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (
        state.join("server.pem"),
        state.join("server.key"),
        state.join("ca.pem"),
    );
    let third = Emulator::start_in(
        tempfile::tempdir().unwrap(),
        &given_state.path().join("state"),
        &[
            "--no-registry",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-ca",
            ca.to_str().unwrap(),
        ],
    );
    assert_eq!(third.ep("caFile"), ca.to_str().unwrap());
    assert_eq!(third.ep["registry"], Value::Null);
    assert_eq!(third.arm_with(None, Method::GET, &p, V2023, None).0, 401);
}

#[test]
fn subscriptions_need_a_token_and_list_the_one_subscription_metadata_needs_none() {
    let emu = no_registry(&[
        "--subscription-id",
        "00000000-0000-0000-0000-0000000000aa",
        "--subscription-name",
        "Contoso",
    ]);
    let sub = emu.ep("subscriptionId");
    assert_eq!(sub, "00000000-0000-0000-0000-0000000000aa");
    assert_eq!(emu.ep("subscriptionName"), "Contoso");
    let (st, _, b) = emu.arm_with(None, Method::GET, "/subscriptions", "2022-12-01", None);
    assert_eq!((st, code(&b)), (401, "AuthenticationFailed"), "{b}");
    let t = emu.arm_token();
    let (st, _, b) = emu.arm_with(Some(&t), Method::GET, "/subscriptions", "2022-12-01", None);
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["value"][0]["subscriptionId"], sub.as_str(), "{b}");
    assert_eq!(
        b["value"][0]["tenantId"],
        emu.ep("tenantId").as_str(),
        "{b}"
    );
    assert_eq!(b["value"][0]["displayName"], "Contoso", "{b}");
    let path = format!("/subscriptions/{sub}");
    let (st, _, b) = emu.arm_with(Some(&t), Method::GET, &path, "2022-12-01", None);
    assert_eq!((st, b["id"].as_str()), (200, Some(path.as_str())), "{b}");
    let (st, _, b) = emu.arm_with(Some(&t), Method::GET, &path, V2023, None);
    assert_eq!((st, code(&b)), (400, "InvalidApiVersionParameter"), "{b}");
    let (st, _, b) = emu.arm_with(
        Some(&t),
        Method::GET,
        "/subscriptions/11111111-1111-1111-1111-111111111111",
        "2022-12-01",
        None,
    );
    assert_eq!((st, code(&b)), (404, "SubscriptionNotFound"), "{b}");
    let (st, _, b) = emu.arm_with(Some(&t), Method::DELETE, &path, "2022-12-01", None);
    assert_eq!((st, code(&b)), (405, "MethodNotAllowed"), "{b}");

    // The cloud metadata document, anonymous, in the shape the api-version asks for.
    let (st, _, doc) = emu.arm_with(None, Method::GET, "/metadata/endpoints", "2022-09-01", None);
    assert_eq!(st, 200, "{doc}");
    assert_eq!(doc["resourceManager"], format!("{}/", emu.base()), "{doc}");
    assert_eq!(
        doc["authentication"]["loginEndpoint"],
        emu.ep("authorityHost")
    );
    let (_, _, list) = emu.arm_with(None, Method::GET, "/metadata/endpoints", "2019-05-01", None);
    assert_eq!(list[0]["resourceManager"], doc["resourceManager"], "{list}");
    let (_, _, legacy) = emu.arm_with(None, Method::GET, "/metadata/endpoints", "", None);
    assert!(legacy["portalEndpoint"].is_string(), "{legacy}");
}
