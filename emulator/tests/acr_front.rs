//! The ACR front of the emulator's registry does what Azure Container Registry does and
//! distribution 2.8 does not: a blob GET the registry allows is redirected (307) to a
//! signed URL on a storage origin of another host, which refuses any request carrying an
//! `Authorization` header and serves ranges; a request body above ~20 MB is refused with
//! 413 before it reaches the registry. oras, an independent client, pulls through it.

mod support;

use serde_json::Value;
use support::*;

const REPO: &str = "contoso-cnf";

/// Pushes `content` with oras and returns (pull/push registry token, layer digest).
fn pushed(emu: &Emulator, content: &str) -> (String, String) {
    let arm = emu.arm_token();
    let (p, s, m) = ("contoso", "contoso-store", "contoso-cnf-manifest");
    emu.create_manifest(&arm, p, s, m, &[(REPO, "1.0.0")]);
    let cred = emu.list_credential(&arm, p, s, m, V2023);
    let acr_token = cred["acrToken"].as_str().expect("acrToken").to_string();
    let oras = Oras::new(emu);
    let out = oras.push(
        &format!("{}/{REPO}:1.0.0", emu.ep("registry")),
        m,
        &acr_token,
        content,
    );
    assert!(out.status.success(), "oras push: {}", show(&out));
    let (status, body) =
        emu.registry_token(m, &acr_token, &[&format!("repository:{REPO}:pull,push")]);
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_string();
    let manifest: Value = emu
        .client()
        .get(format!(
            "https://{}/v2/{REPO}/manifests/1.0.0",
            emu.ep("registry")
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .bearer_auth(&token)
        .send()
        .expect("GET manifest")
        .json()
        .expect("manifest JSON");
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no layer in {manifest}"))
        .to_string();
    (token, digest)
}

#[test]
fn blob_gets_are_redirected_to_a_storage_origin_that_refuses_registry_credentials() {
    let emu = Emulator::start(&[]);
    let content = "artifact bytes behind a signed storage URL";
    let (token, digest) = pushed(&emu, content);
    let registry = emu.ep("registry");
    let blob_url = format!("https://{registry}/v2/{REPO}/blobs/{digest}");

    // Without a token the registry's own challenge comes back, not a redirect.
    let resp = emu.client().get(&blob_url).send().expect("GET blob");
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));

    // With one: 307 to another host, named by its digest.
    let resp = emu
        .client()
        .get(&blob_url)
        .bearer_auth(&token)
        .send()
        .expect("GET blob");
    assert_eq!(resp.status().as_u16(), 307);
    assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let to = url::Url::parse(&location).expect("absolute Location");
    let from = url::Url::parse(&format!("https://{registry}")).unwrap();
    assert_eq!(to.scheme(), "https");
    assert_ne!(
        to.host_str(),
        from.host_str(),
        "storage must be another host: {location}"
    );
    assert!(to.path().ends_with("/data"), "{location}");
    assert!(to.query().is_some_and(|q| q.contains("sig=")), "{location}");

    // The registry credential sent to storage is refused, as Azure Storage refuses it.
    let resp = emu
        .client()
        .get(&location)
        .bearer_auth(&token)
        .send()
        .expect("GET storage");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().unwrap().contains("InvalidAuthenticationInfo"));

    // The signed URL alone opens the blob, whole or from an offset.
    let resp = emu.client().get(&location).send().expect("GET storage");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().unwrap(), content);
    let resp = emu
        .client()
        .get(&location)
        .header("Range", "bytes=9-")
        .send()
        .expect("GET storage range");
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(
        resp.headers()["content-range"].to_str().unwrap(),
        format!("bytes 9-{}/{}", content.len() - 1, content.len())
    );
    assert_eq!(resp.text().unwrap(), &content[9..]);

    // A forged signature, or the signature of this blob used for another, is refused.
    let forged = location.replace("sig=", "sig=x");
    assert_eq!(
        emu.client().get(&forged).send().unwrap().status().as_u16(),
        403
    );
    let other_hex = "ab".repeat(32);
    let hex = digest.trim_start_matches("sha256:");
    let other = location.replace(
        &format!("/{}/{hex}/", &hex[..2]),
        &format!("/ab/{other_hex}/"),
    );
    assert_ne!(other, location);
    assert_eq!(
        emu.client().get(&other).send().unwrap().status().as_u16(),
        403
    );

    // oras (Go's redirect rules) pulls through the redirect.
    let oras = Oras::new(&emu);
    let arm = emu.arm_token();
    let cred = emu.list_credential(
        &arm,
        "contoso",
        "contoso-store",
        "contoso-cnf-manifest",
        V2023,
    );
    let (out, pulled) = oras.pull(
        &format!("{registry}/{REPO}:1.0.0"),
        "contoso-cnf-manifest",
        cred["acrToken"].as_str().unwrap(),
    );
    assert!(out.status.success(), "oras pull: {}", show(&out));
    assert_eq!(pulled.as_deref(), Some(content));

    let front = &emu.stats()["acrFront"];
    assert_eq!(front["storageRefusedAuthorization"], 1, "{front}");
    assert_eq!(front["storageRefusedSignature"], 2, "{front}");
    assert!(front["blobRedirects"].as_u64().unwrap() >= 2, "{front}");
    assert!(front["storageGets"].as_u64().unwrap() >= 3, "{front}");
}

#[test]
fn a_request_body_above_20_mb_is_refused_with_413_before_the_registry_sees_it() {
    let emu = Emulator::start(&[]);
    let (token, _) = pushed(&emu, "small");
    let registry = emu.ep("registry");
    let resp = emu
        .client()
        .post(format!("https://{registry}/v2/{REPO}/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .expect("start upload");
    assert_eq!(resp.status().as_u16(), 202);
    let upload = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        upload.starts_with(&format!("https://{registry}/")),
        "upload Location names the front: {upload}"
    );

    let body = vec![7u8; 20_000_001];
    let digest = format!("sha256:{}", sha256_hex(&body));
    let sep = if upload.contains('?') { '&' } else { '?' };
    let resp = emu
        .client()
        .put(format!("{upload}{sep}digest={digest}"))
        .bearer_auth(&token)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .expect("PUT 20 MB + 1");
    assert_eq!(resp.status().as_u16(), 413);
    assert!(resp.text().unwrap().contains("upload in chunks"));

    // Nothing reached the registry: the blob is unknown.
    let resp = emu
        .client()
        .head(format!("https://{registry}/v2/{REPO}/blobs/{digest}"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(emu.stats()["acrFront"]["tooLarge"], 1);
}

#[test]
fn a_manifest_above_4_mib_is_refused_with_413_announced_or_chunked() {
    let emu = Emulator::start(&[]);
    let (token, _) = pushed(&emu, "small");
    let registry = emu.ep("registry");
    let pad = "x".repeat(4 * 1024 * 1024);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{{"pad":"{pad}"}}}}"#
    );
    let url = format!("https://{registry}/v2/{REPO}/manifests/big");
    let put = |body: reqwest::blocking::Body| {
        emu.client()
            .put(&url)
            .bearer_auth(&token)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
            .expect("PUT manifest")
    };
    // With Content-Length (refused before reading), then chunked (refused while reading).
    let announced = put(manifest.clone().into());
    let chunked = put(reqwest::blocking::Body::new(std::io::Cursor::new(
        manifest.into_bytes(),
    )));
    for resp in [announced, chunked] {
        assert_eq!(resp.status().as_u16(), 413);
        let body: Value = resp.json().expect("an error body");
        assert_eq!(body["errors"][0]["code"], "SIZE_INVALID", "{body}");
    }
    let resp = emu.client().get(&url).bearer_auth(&token).send().unwrap();
    assert_eq!(resp.status().as_u16(), 404, "nothing was stored");
    assert_eq!(emu.stats()["acrFront"]["tooLarge"], 2);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
