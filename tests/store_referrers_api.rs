//! The emulator's ACR front serves the OCI referrers API, as Azure Container Registry does,
//! in front of either registry implementation (neither has the API itself): an image
//! pushed into an artifact store with crane and given an SBOM and a signature with
//! `oras attach` (and a signature of the SBOM), all with the manifest's scoped credential.
//! `oras discover` (forced onto the API) and `RegistryClient::referrers` (by the API,
//! filtered, page by page) list them; oras saw `OCI-Subject` and kept no `sha256-<hex>`
//! fallback tag; the registry still decides who reads: anonymous gets its 401 challenge
//! for `repository:<name>:pull`, a token of another manifest's repository gets nothing.

mod support;

use aosm_artifact_operator::engine::registry::referrers::{Discovery, Referrer};
use aosm_artifact_operator::engine::{Credentials, RegistryClient, RegistryOptions, Secret};
use reqwest::Method;
use serde_json::{Value, json};
use support::TestEnv;
use support::emulator::*;
use support::registry::Implementation;
use support::{Cmd, rt, tools};

trust_emulator_ca!();

const SBOM: &str = "application/spdx+json";
const SIGNATURE: &str = "application/vnd.example.signature";
const MANIFEST: &str = "contoso-cnf-manifest";
const REPO: &str = "contoso-cnf";
const OTHER_MANIFEST: &str = "contoso-other-manifest";
const OTHER_REPO: &str = "contoso-other";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An artifact store holding a signed image with an SBOM (itself signed), all put there
/// by crane and oras with the manifest's scoped credential.
struct SignedImage {
    env: TestEnv,
    emu: Emulator,
    cred: ScopedCredential,
    other: ScopedCredential,
    image: String,
    sbom: String,
    signature: String,
    sbom_signature: String,
}

/// oras against the emulator's registry (https with the test CA; the scoped credential
/// is in the sandbox's docker config).
fn oras(s: &TestEnv, emu: &Emulator, args: &[&str]) -> Cmd {
    s.tool("oras")
        .args(args)
        .args(["--plain-http=false", "--ca-file"])
        .arg(emu.ca_file())
}

fn attach(
    env: &TestEnv,
    emu: &Emulator,
    subject: &str,
    artifact_type: &str,
    file: &str,
    annotation: &str,
) -> String {
    env.write(file, format!("{artifact_type} of {subject}"));
    let out = oras(
        env,
        emu,
        &[
            "attach",
            "--format",
            "json",
            "--artifact-type",
            artifact_type,
            "--annotation",
            annotation,
        ],
    )
    .arg(emu.reference(subject))
    .arg(format!("{file}:application/octet-stream"))
    .ok();
    out.json()["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest in oras attach output\n{out}"))
        .to_string()
}

fn signed_image(imp: Implementation) -> SignedImage {
    let env = TestEnv::new();
    let bin = tools::require(imp.binary());
    let emu = Emulator::start(&["--registry-bin", &bin.display().to_string()]);
    let pid = emu.registry_pid().expect("registryPid in endpoints.json");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        std::fs::canonicalize(&bin).ok(),
        "the registry behind the front is {}",
        imp.binary()
    );
    emu.create_store(PUBLISHER, STORE, "AzureContainerRegistry");
    emu.create_manifest(
        PUBLISHER,
        STORE,
        MANIFEST,
        &[(REPO, "OCIArtifact", "1.0.0")],
    );
    emu.create_manifest(
        PUBLISHER,
        STORE,
        OTHER_MANIFEST,
        &[(OTHER_REPO, "OCIArtifact", "1.0.0")],
    );
    let cred = emu.list_credential(MANIFEST, V2023);
    let other = emu.list_credential(OTHER_MANIFEST, V2023);
    emu.login_tools(&env, &cred);
    let image = emu.crane_push_image(&env, &format!("{REPO}:1.0.0"), &[4096]);
    let sbom = attach(
        &env,
        &emu,
        &format!("{REPO}:1.0.0"),
        SBOM,
        "sbom.json",
        "org.example.kind=sbom",
    );
    let signature = attach(
        &env,
        &emu,
        &format!("{REPO}:1.0.0"),
        SIGNATURE,
        "sig.bin",
        "org.example.kind=signature",
    );
    let sbom_signature = attach(
        &env,
        &emu,
        &format!("{REPO}@{sbom}"),
        SIGNATURE,
        "sbom-sig.bin",
        "org.example.kind=sbom-signature",
    );
    SignedImage {
        env,
        emu,
        cred,
        other,
        image,
        sbom,
        signature,
        sbom_signature,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn client(s: &SignedImage, cred: &ScopedCredential) -> RegistryClient {
    RegistryClient::new(
        &s.emu.registry(),
        &RegistryOptions {
            ca_file: Some(s.emu.ca_file()),
            credentials: Credentials::Basic {
                username: cred.username.clone(),
                password: Secret::new(cred.token.clone()),
            },
            ..Default::default()
        },
    )
    .expect("a registry client")
}

fn digests(found: &[Referrer]) -> Vec<String> {
    sorted(found.iter().map(|r| r.digest.clone()).collect())
}

/// `GET /v2/<REPO>/referrers/<digest>[?query]` on the front, with `bearer`.
fn get_referrers(
    s: &SignedImage,
    digest: &str,
    query: &str,
    bearer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let url = format!(
        "https://{}/v2/{REPO}/referrers/{digest}{query}",
        s.emu.registry()
    );
    s.emu.request(Method::GET, &url, bearer, None)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn oras_discovers_them(s: &SignedImage) {
    let out = oras(
        &s.env,
        &s.emu,
        &[
            "discover",
            "--format",
            "json",
            "--distribution-spec",
            "v1.1-referrers-api",
        ],
    )
    .arg(s.emu.reference(&format!("{REPO}@{}", s.image)))
    .ok();
    let tree = out.json();
    let referrers = tree["referrers"]
        .as_array()
        .unwrap_or_else(|| panic!("no referrers in oras discover output\n{out}"));
    let by_digest = |d: &str| {
        referrers
            .iter()
            .find(|r| r["digest"] == d)
            .unwrap_or_else(|| panic!("{d} not discovered\n{out}"))
    };
    assert_eq!(referrers.len(), 2, "{out}");
    let sbom = by_digest(&s.sbom);
    assert_eq!(sbom["artifactType"], SBOM, "{out}");
    assert_eq!(sbom["annotations"]["org.example.kind"], "sbom", "{out}");
    assert_eq!(by_digest(&s.signature)["artifactType"], SIGNATURE, "{out}");
    // oras walks on to the referrers of the SBOM.
    assert_eq!(
        sbom["referrers"][0]["digest"], s.sbom_signature,
        "the SBOM's signature\n{out}"
    );
}

fn our_client_reads_the_api(s: &SignedImage) {
    let c = client(s, &s.cred);
    rt::block_on(async {
        let (all, how) = c.referrers(REPO, &s.image, None).await.expect("referrers");
        assert_eq!(how, Discovery::Api);
        assert_eq!(
            digests(&all),
            sorted(vec![s.sbom.clone(), s.signature.clone()])
        );
        let sbom = all.iter().find(|r| r.digest == s.sbom).unwrap();
        assert_eq!(sbom.artifact_type.as_deref(), Some(SBOM));
        assert_eq!(
            sbom.media_type,
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            sbom.annotations
                .as_ref()
                .and_then(|a| a.get("org.example.kind"))
                .map(String::as_str),
            Some("sbom")
        );

        let (sboms, how) = c
            .referrers(REPO, &s.image, Some(SBOM))
            .await
            .expect("referrers");
        assert_eq!(
            (digests(&sboms), how),
            (vec![s.sbom.clone()], Discovery::Api)
        );
        let (of_sbom, _) = c.referrers(REPO, &s.sbom, None).await.expect("referrers");
        assert_eq!(digests(&of_sbom), vec![s.sbom_signature.clone()]);
        let (none, how) = c
            .referrers(REPO, &s.signature, None)
            .await
            .expect("referrers");
        assert_eq!((none, how), (Vec::new(), Discovery::Api));
    });

    // One descriptor a page: the client follows the front's `Link` to the second.
    let before = s.emu.stats()["acrFront"]["referrers"].as_u64().unwrap_or(0);
    s.emu.set_config(json!({"referrersPageSize": 1}));
    let (all, how) = rt::block_on(c.referrers(REPO, &s.image, None)).expect("referrers");
    assert_eq!(how, Discovery::Api);
    assert_eq!(
        digests(&all),
        sorted(vec![s.sbom.clone(), s.signature.clone()])
    );
    let after = s.emu.stats()["acrFront"]["referrers"].as_u64().unwrap_or(0);
    assert_eq!(after - before, 2, "two pages were served");
    s.emu.set_config(json!({"referrersPageSize": 1000}));
}

fn the_answers_follow_the_spec(s: &SignedImage) {
    let (st, token) = s
        .emu
        .registry_token(&s.cred, &[&format!("repository:{REPO}:pull")]);
    assert_eq!(st, 200, "{token}");
    let token = token["access_token"].as_str().unwrap().to_string();

    let (st, h, index) = get_referrers(s, &s.image, "", Some(&token));
    assert_eq!(st, 200, "{index}");
    assert_eq!(header(&h, "content-type"), Some(OCI_INDEX));
    assert_eq!(header(&h, "oci-filters-applied"), None);
    assert_eq!(index["schemaVersion"], 2, "{index}");
    assert_eq!(index["mediaType"], OCI_INDEX, "{index}");
    let listed = index["manifests"].as_array().expect("manifests");
    assert_eq!(listed.len(), 2, "{index}");
    for d in listed {
        assert!(d["size"].as_u64().is_some_and(|n| n > 0), "{d}");
        assert!(d["artifactType"].is_string(), "{d}");
        assert!(
            d["annotations"]["org.opencontainers.image.created"].is_string(),
            "{d}"
        );
    }

    let (st, h, filtered) = get_referrers(
        s,
        &s.image,
        "?artifactType=application%2Fspdx%2Bjson",
        Some(&token),
    );
    assert_eq!(st, 200);
    assert_eq!(header(&h, "oci-filters-applied"), Some("artifactType"));
    assert_eq!(filtered["manifests"][0]["digest"], s.sbom, "{filtered}");
    assert_eq!(filtered["manifests"].as_array().map(Vec::len), Some(1));

    // Paging by Link, read as a client would.
    s.emu.set_config(json!({"referrersPageSize": 1}));
    let (st, h, first) = get_referrers(s, &s.image, "", Some(&token));
    assert_eq!(st, 200);
    let link = header(&h, "link")
        .expect("a Link to the next page")
        .to_string();
    let target = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(t, _)| t)
        .unwrap_or_else(|| panic!("Link {link:?}"));
    assert!(target.starts_with(&format!("/v2/{REPO}/referrers/{}?", s.image)));
    let url = format!("https://{}{target}", s.emu.registry());
    let (st, h, second) = s.emu.request(Method::GET, &url, Some(&token), None);
    assert_eq!(st, 200, "{second}");
    assert_eq!(header(&h, "link"), None, "the last page");
    assert_ne!(
        first["manifests"][0]["digest"],
        second["manifests"][0]["digest"]
    );
    s.emu.set_config(json!({"referrersPageSize": 1000}));

    // A subject nobody refers to, or that does not exist: an empty index.
    let absent = format!("sha256:{}", "0".repeat(64));
    for subject in [&s.signature, &absent] {
        let (st, _, empty) = get_referrers(s, subject, "", Some(&token));
        assert_eq!((st, &empty["manifests"]), (200, &json!([])), "{subject}");
    }
    // A malformed digest: 400 DIGEST_INVALID.
    let (st, _, err) = get_referrers(s, "sha256:ABC", "", Some(&token));
    assert_eq!(st, 400, "{err}");
    assert_eq!(err["errors"][0]["code"], "DIGEST_INVALID", "{err}");
}

fn no_fallback_tag(s: &SignedImage) {
    let out = oras(&s.env, &s.emu, &["repo", "tags"])
        .arg(s.emu.reference(REPO))
        .ok();
    let tags: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(tags, ["1.0.0"], "oras kept no sha256-<hex> tag\n{out}");
    // Every attach was answered with OCI-Subject.
    assert_eq!(s.emu.stats()["acrFront"]["subjectManifests"], 3);
}

fn the_registry_decides_who_reads(s: &SignedImage) {
    let refused_before = s.emu.stats()["acrFront"]["referrersRefused"]
        .as_u64()
        .unwrap_or(0);
    // Anonymous: the registry's challenge for pull on the repository.
    let (st, h, body) = get_referrers(s, &s.image, "", None);
    assert_eq!(st, 401, "{body}");
    let challenge = header(&h, "www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("scope=\"repository:{REPO}:pull\"")),
        "{challenge}"
    );
    assert!(body.get("manifests").is_none(), "{body}");

    // Another manifest's credential gets a token without access to this repository.
    let (st, token) = s
        .emu
        .registry_token(&s.other, &[&format!("repository:{REPO}:pull")]);
    assert_eq!(st, 200, "{token}");
    let token = token["access_token"].as_str().unwrap().to_string();
    let (st, _, body) = get_referrers(s, &s.image, "", Some(&token));
    assert!(st == 401 || st == 403, "{st} {body}");
    assert!(body.get("manifests").is_none(), "{body}");
    // It reads its own repository's (none).
    let url = format!(
        "https://{}/v2/{OTHER_REPO}/referrers/{}",
        s.emu.registry(),
        s.image
    );
    let (st, token) = s
        .emu
        .registry_token(&s.other, &[&format!("repository:{OTHER_REPO}:pull")]);
    assert_eq!(st, 200, "{token}");
    let own = token["access_token"].as_str().unwrap();
    let (st, _, body) = s.emu.request(Method::GET, &url, Some(own), None);
    assert_eq!((st, &body["manifests"]), (200, &json!([])), "{body}");

    // Our client with the other credential: refused, nothing listed.
    let refused = rt::block_on(client(s, &s.other).referrers(REPO, &s.image, None));
    assert!(refused.is_err(), "{refused:?}");
    let refused_after = s.emu.stats()["acrFront"]["referrersRefused"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused_after >= refused_before + 3, "{refused_after}");
}

fn referrers_api(imp: Implementation) {
    let s = signed_image(imp);
    no_fallback_tag(&s);
    oras_discovers_them(&s);
    our_client_reads_the_api(&s);
    the_answers_follow_the_spec(&s);
    the_registry_decides_who_reads(&s);
}

#[test]
fn referrers_api_in_front_of_distribution2() {
    referrers_api(Implementation::Distribution2);
}

#[test]
fn referrers_api_in_front_of_distribution3() {
    referrers_api(Implementation::Distribution3);
}
