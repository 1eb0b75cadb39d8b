//! The OCI referrers API (distribution spec v1.1, "Listing Referrers"), which Azure
//! Container Registry serves and neither registry behind the front (distribution 2.8,
//! distribution v3.1.2) does: `GET /v2/<name>/referrers/<digest>[?artifactType=T]`
//! answers an image index of the manifests whose `subject` is `<digest>`.
//!
//! **Who may read** stays the registry's decision: before answering, the front asks the
//! registry `GET /v2/<name>/tags/list?n=1` with the client's `Authorization` (the same
//! `pull` permission on `<name>`). A 401/403 (or any other refusal) goes back to the
//! client unchanged, with the registry's `WWW-Authenticate` challenge for
//! `repository:<name>:pull`; a 200, or a 404 (the repository does not exist, which the
//! registry says only to a client allowed to pull it), lets the index be served: a subject
//! nobody refers to, or that does not exist, has an empty index, as the spec allows.
//!
//! **Where the referrers come from**: the registry's own filesystem storage, read on every
//! request. A repository's manifests are the files
//! `docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link`
//! (holding `sha256:<hex>`), and each manifest's bytes are the blob
//! `docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data`; the manifests whose JSON
//! `subject.digest` is the asked digest are the referrers. Both implementations use this
//! layout (checked with distribution 2.8.2 and v3.1.2: same paths, same link content, and
//! a `DELETE` of a manifest removes its `link`, leaving the directory). The alternative —
//! indexing manifests as they pass through `PUT` — would be state of the emulator's own
//! next to the registry's: lost on a restart with the same state directory (where the
//! registry keeps everything), blind to deletes unless those were tracked too, and wrong
//! for manifests that reached the storage any other way. Reading the storage is right
//! for manifests pushed before and after restarts, and after deletes, with nothing to
//! keep in step.
//!
//! **Bounds**, so that a repository cannot wedge the emulator: at most
//! [`MAX_SCANNED_MANIFESTS`] manifests are looked at and [`MAX_SCANNED_BYTES`] read per
//! request (beyond either the request fails with 500, never a silently short list); a
//! manifest blob over [`MAX_MANIFEST_BYTES`] is skipped (ACR refuses to store one); at
//! most [`MAX_CONCURRENT_SCANS`] scans run at once, on blocking threads. Pages hold
//! `referrersPageSize` descriptors (a runtime knob, default
//! [`crate::config::DEFAULT_REFERRERS_PAGE_SIZE`]); a further page is announced with
//! `Link: </v2/<name>/referrers/<digest>?last=<digest>...>; rel="next"` (descriptors are
//! ordered by digest, so `last` is a stateless cursor).
//!
//! A manifest `PUT` whose body has a `subject` is answered with `OCI-Subject: <digest>`
//! once the registry stored it (201), as a registry with the referrers API does, so
//! clients (oras) do not maintain the `sha256-<hex>` fallback tag ([`subject_of`]; the
//! buffering is in [`super::proxy`]).

use super::Front;
use crate::app::lock;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Largest manifest the front accepts in a `PUT` (413 above) and reads from storage
/// (skipped above): ACR's manifest size limit, 4 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Most manifests of one repository looked at for one referrers request.
pub const MAX_SCANNED_MANIFESTS: usize = 10_000;
/// Most manifest bytes read for one referrers request.
pub const MAX_SCANNED_BYTES: u64 = 64 * 1024 * 1024;
/// Most referrers scans running at once (further requests wait for a turn).
pub const MAX_CONCURRENT_SCANS: usize = 4;
/// Largest repository name (distribution's limit).
const MAX_NAME_LEN: usize = 255;
/// Largest `link` file read (`sha256:` + 64 hex is 71 bytes).
const MAX_LINK_BYTES: u64 = 256;

/// Media type of an OCI image index (the referrers answer).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image manifest.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A referrers request, as parsed from its path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The repository (`<name>`), valid per distribution's grammar.
    pub name: String,
    /// The subject digest asked for.
    pub digest: String,
    /// The `artifactType` filter, when one was given (non-empty).
    pub artifact_type: Option<String>,
    /// The cursor of a further page: list only referrers whose digest sorts after it.
    pub last: Option<String>,
}

/// Why a referrers request is refused before anything else happens (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The repository name breaks distribution's grammar (`NAME_INVALID`).
    Name,
    /// The digest (or the `last` cursor) is no valid digest (`DIGEST_INVALID`).
    Digest,
}

/// The referrers request `path` (and `query`) names, `None` when the path is no
/// `/v2/<name>/referrers/<digest>` at all (the request is forwarded as any other).
pub fn parse(path: &str, query: Option<&str>) -> Option<Result<Query, Invalid>> {
    let rest = path.strip_prefix("/v2/")?;
    let (name, digest) = rest.rsplit_once("/referrers/")?;
    if name.is_empty() || digest.is_empty() || digest.contains('/') {
        return None;
    }
    Some(parse_parts(name, digest, query))
}

fn parse_parts(name: &str, digest: &str, query: Option<&str>) -> Result<Query, Invalid> {
    if !valid_name(name) {
        return Err(Invalid::Name);
    }
    let digest = percent_encoding::percent_decode_str(digest)
        .decode_utf8()
        .map_err(|_| Invalid::Digest)?
        .into_owned();
    if !valid_digest(&digest) {
        return Err(Invalid::Digest);
    }
    let mut artifact_type = None;
    let mut last = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "artifactType" if !v.is_empty() => artifact_type = Some(v.into_owned()),
            "last" => {
                if !valid_digest(&v) {
                    return Err(Invalid::Digest);
                }
                last = Some(v.into_owned());
            }
            _ => {}
        }
    }
    Ok(Query {
        name: name.to_string(),
        digest,
        artifact_type,
        last,
    })
}

/// A repository name per distribution's grammar: `/`-separated components of lower-case
/// letters and digits, joined inside a component by `.`, `_`, `__` or runs of `-`; at most
/// 255 bytes. This also keeps the name a safe relative path (no `..`, no empty component).
pub fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Between alphanumeric runs: one `.`, one or two `_`, or any number of `-`.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A digest this front knows: `sha256:` + 64 or `sha512:` + 128 lower-case hex digits.
pub fn valid_digest(digest: &str) -> bool {
    let Some((alg, hex)) = digest.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The subject digest of a manifest body, when it has a valid one.
pub fn subject_of(manifest: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct WithSubject {
        subject: Option<Subject>,
    }
    let parsed: WithSubject = serde_json::from_slice(manifest).ok()?;
    let digest = parsed.subject?.digest;
    valid_digest(&digest).then_some(digest)
}

#[derive(Deserialize)]
struct Subject {
    digest: String,
}

/// The fields of a stored manifest that its referrers descriptor needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Config>,
    subject: Option<Subject>,
    annotations: Option<BTreeMap<String, String>>,
    manifests: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    media_type: Option<String>,
}

/// One referrer in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The referring manifest's media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its `artifactType`, else its config's media type (an image manifest's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The descriptor of manifest `digest` (`bytes`) when its subject is `subject`.
pub fn referrer(digest: &str, bytes: &[u8], subject: &str) -> Option<Descriptor> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    if stored.subject?.digest != subject {
        return None;
    }
    let is_index = stored.manifests.is_some();
    let media_type = stored
        .media_type
        .unwrap_or_else(|| if is_index { OCI_INDEX } else { OCI_MANIFEST }.to_string());
    // The spec: an image manifest without `artifactType` is listed with its config's
    // media type; an index has no config.
    let artifact_type = stored
        .artifact_type
        .filter(|t| !t.is_empty())
        .or_else(|| stored.config.and_then(|c| c.media_type));
    Some(Descriptor {
        media_type,
        digest: digest.to_string(),
        size: bytes.len() as u64,
        artifact_type,
        annotations: stored.annotations.filter(|a| !a.is_empty()),
    })
}

/// How much one scan may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most manifests looked at.
    pub manifests: usize,
    /// Most manifest bytes read.
    pub bytes: u64,
    /// Manifests larger than this are skipped.
    pub manifest_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifests: MAX_SCANNED_MANIFESTS,
            bytes: MAX_SCANNED_BYTES,
            manifest_bytes: MAX_MANIFEST_BYTES,
        }
    }
}

/// Why a scan gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The repository holds more manifests than [`Limits::manifests`].
    #[error("the repository holds more than {0} manifests")]
    TooManyManifests(usize),
    /// Its manifests hold more bytes than [`Limits::bytes`].
    #[error("the repository's manifests hold more than {0} bytes")]
    TooManyBytes(u64),
    /// The storage could not be read.
    #[error("reading the registry's storage: {0}")]
    Io(String),
}

/// The referrers of `subject` in repository `name` of the registry storage at `root`,
/// ordered by digest. `name` must be valid ([`valid_name`]); a repository that does not
/// exist has none. Blocking (std::fs): run it on a blocking thread.
pub fn scan(
    root: &Path,
    name: &str,
    subject: &str,
    limits: Limits,
) -> Result<Vec<Descriptor>, ScanError> {
    let v2 = root.join("docker/registry/v2");
    let revisions = v2
        .join("repositories")
        .join(name)
        .join("_manifests/revisions/sha256");
    let entries = match std::fs::read_dir(&revisions) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ScanError::Io(e.to_string())),
    };
    let mut found = Vec::new();
    let mut seen = 0usize;
    let mut read = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| ScanError::Io(e.to_string()))?;
        seen += 1;
        if seen > limits.manifests {
            return Err(ScanError::TooManyManifests(limits.manifests));
        }
        let Some(hex) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let digest = format!("sha256:{hex}");
        if !valid_digest(&digest) {
            continue;
        }
        // No link: the manifest was deleted (the directory stays).
        match read_capped(&entry.path().join("link"), MAX_LINK_BYTES) {
            Some(link) if link == digest.as_bytes() => {}
            _ => continue,
        }
        let data = blob_path(&v2, &hex);
        let Ok(meta) = std::fs::metadata(&data) else {
            continue;
        };
        if !meta.is_file() || meta.len() > limits.manifest_bytes {
            continue;
        }
        read = read.saturating_add(meta.len());
        if read > limits.bytes {
            return Err(ScanError::TooManyBytes(limits.bytes));
        }
        let Some(bytes) = read_capped(&data, limits.manifest_bytes) else {
            continue;
        };
        if let Some(d) = referrer(&digest, &bytes, subject) {
            found.push(d);
        }
    }
    found.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(found)
}

/// `docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data` under `v2`.
fn blob_path(v2: &Path, hex: &str) -> PathBuf {
    v2.join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// The file's bytes, when it exists and holds at most `cap`.
fn read_capped(path: &Path, cap: u64) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= cap).then_some(bytes)
}

/// One page of `all` (ordered by digest): the referrers of type `artifact_type` (when
/// given) after `last`, at most `size` of them, and the digest to continue after when
/// more remain.
pub fn page(
    all: Vec<Descriptor>,
    artifact_type: Option<&str>,
    last: Option<&str>,
    size: usize,
) -> (Vec<Descriptor>, Option<String>) {
    let mut rest = all
        .into_iter()
        .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
        .filter(|d| last.is_none_or(|l| d.digest.as_str() > l))
        .peekable();
    let size = size.max(1);
    let mut out = Vec::new();
    while out.len() < size {
        match rest.next() {
            Some(d) => out.push(d),
            None => break,
        }
    }
    let next = rest
        .peek()
        .is_some()
        .then(|| out.last().map(|d| d.digest.clone()))
        .flatten();
    (out, next)
}

/// The image index listing `manifests`.
pub fn index(manifests: &[Descriptor]) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    })
}

/// The `Link` target of the page after `last`.
pub fn next_link(q: &Query, last: &str) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("last", last);
    if let Some(t) = &q.artifact_type {
        query.append_pair("artifactType", t);
    }
    format!("/v2/{}/referrers/{}?{}", q.name, q.digest, query.finish())
}

/// A distribution-style error answer.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (status, axum::Json(body)).into_response()
}

/// The answer to a request [`parse`] refused.
pub fn invalid(why: Invalid) -> Response {
    match why {
        Invalid::Name => error(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            "invalid repository name",
        ),
        Invalid::Digest => error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "invalid digest: sha256 (64) or sha512 (128) lower-case hex digits expected",
        ),
    }
}

/// Headers of the client's request that the authorization probe carries.
const PROBE_HEADERS: [HeaderName; 2] = [header::AUTHORIZATION, header::USER_AGENT];

/// Answers a referrers request: the registry's refusal, or the index.
pub async fn serve(front: &Front, q: Query, headers: &HeaderMap) -> Response {
    let probe_url = format!("{}/v2/{}/tags/list?n=1", front.backend, q.name);
    let mut probe = front.client.get(&probe_url);
    for h in &PROBE_HEADERS {
        for v in headers.get_all(h) {
            probe = probe.header(h, v);
        }
    }
    let answer = match probe.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "registry front: the registry behind it did not answer");
            return error(
                StatusCode::BAD_GATEWAY,
                "UNAVAILABLE",
                "the registry behind the front did not answer",
            );
        }
    };
    let status = answer.status();
    if status != reqwest::StatusCode::OK && status != reqwest::StatusCode::NOT_FOUND {
        // The registry's own refusal (401 with its challenge, 403, 429, 5xx), unchanged.
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            lock(&front.app.stats).acr_front.referrers_refused += 1;
        }
        let mut out_headers = super::proxy::forwardable(answer.headers());
        out_headers.remove(header::CONTENT_LENGTH);
        let mut resp = Response::new(Body::from_stream(answer.bytes_stream()));
        *resp.status_mut() = status;
        std::mem::swap(resp.headers_mut(), &mut out_headers);
        return resp;
    }
    drop(answer);

    let Ok(_turn) = front.scans.acquire().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the registry front is shutting down",
        );
    };
    let (root, name, subject) = (front.storage_root.clone(), q.name.clone(), q.digest.clone());
    let scanned =
        tokio::task::spawn_blocking(move || scan(&root, &name, &subject, Limits::default())).await;
    let all = match scanned {
        Ok(Ok(all)) => all,
        Ok(Err(e)) => {
            tracing::warn!(repository = %q.name, error = %e, "registry front: referrers scan refused");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                &format!("the emulator cannot list these referrers: {e}"),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "registry front: referrers scan failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "listing the referrers failed",
            );
        }
    };
    let size = usize::try_from(front.app.config().referrers_page_size).unwrap_or(usize::MAX);
    let (listed, next) = page(all, q.artifact_type.as_deref(), q.last.as_deref(), size);
    lock(&front.app.stats).acr_front.referrers += 1;
    let mut resp = (StatusCode::OK, axum::Json(index(&listed))).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    h.insert(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static("registry/2.0"),
    );
    if q.artifact_type.is_some() {
        h.insert(
            HeaderName::from_static("oci-filters-applied"),
            HeaderValue::from_static("artifactType"),
        );
    }
    if let Some(last) = next
        && let Ok(v) = HeaderValue::from_str(&format!("<{}>; rel=\"next\"", next_link(&q, &last)))
    {
        h.insert(header::LINK, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> String {
        format!("sha256:{}", format!("{byte:02x}").repeat(32))
    }

    #[test]
    fn referrers_paths_are_parsed_strictly() {
        let d = digest(0xab);
        let q = parse(&format!("/v2/ns/app/referrers/{d}"), None)
            .expect("a referrers path")
            .expect("valid");
        assert_eq!(q.name, "ns/app");
        assert_eq!(q.digest, d);
        assert_eq!((q.artifact_type, q.last), (None, None));

        let q = parse(
            &format!("/v2/app/referrers/{d}"),
            Some("artifactType=application%2Fspdx%2Bjson&n=3"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(q.artifact_type.as_deref(), Some("application/spdx+json"));
        // An empty filter is none.
        let q = parse(&format!("/v2/app/referrers/{d}"), Some("artifactType="))
            .unwrap()
            .unwrap();
        assert_eq!(q.artifact_type, None);
        // A percent-encoded colon is the same digest.
        let encoded = d.replace(':', "%3A");
        let q = parse(&format!("/v2/app/referrers/{encoded}"), None)
            .unwrap()
            .unwrap();
        assert_eq!(q.digest, d);

        // Not referrers requests: forwarded as any other.
        assert_eq!(parse(&format!("/v2/app/manifests/{d}"), None), None);
        assert_eq!(parse(&format!("/v2/referrers/{d}"), None), None);
        assert_eq!(parse("/v2/app/referrers/", None), None);
        assert_eq!(parse(&format!("/v2/app/referrers/{d}/x"), None), None);

        // Refused with 400.
        for bad in [
            "sha256:AB",
            "sha256:0a",
            &format!("md5:{}", "0".repeat(32)),
            &d.to_uppercase(),
            &d.replace(':', ""),
        ] {
            assert_eq!(
                parse(&format!("/v2/app/referrers/{bad}"), None),
                Some(Err(Invalid::Digest)),
                "{bad}"
            );
        }
        assert_eq!(
            parse(&format!("/v2/app/referrers/{d}"), Some("last=nope")),
            Some(Err(Invalid::Digest))
        );
        for name in ["App", "a/../b", "..", "a//b", "-a", "a-", "a...b", "a___b"] {
            assert_eq!(
                parse(&format!("/v2/{name}/referrers/{d}"), None),
                Some(Err(Invalid::Name)),
                "{name}"
            );
        }
        assert_eq!(
            parse(&format!("/v2/{}/referrers/{d}", "a".repeat(256)), None),
            Some(Err(Invalid::Name))
        );
    }

    #[test]
    fn names_follow_distributions_grammar() {
        for ok in [
            "a",
            "a0/b-c",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "contoso-cnf/x.y_z",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a/", "/a", "a/.b", "a..b", "a.-b", "_a", "a b", "ä"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_digest(&format!("sha512:{}", "f".repeat(128))));
        assert!(!valid_digest(&format!("sha512:{}", "f".repeat(64))));
    }

    #[test]
    fn descriptors_carry_type_and_annotations_as_the_spec_says() {
        let subject = digest(1);
        let with_type = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/spdx+json",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json"}},"subject":{{"digest":"{subject}"}},
            "annotations":{{"org.opencontainers.image.created":"2025-01-01T00:00:00Z"}}}}"#
        );
        let d = referrer(&digest(2), with_type.as_bytes(), &subject).expect("a referrer");
        assert_eq!(d.media_type, OCI_MANIFEST);
        assert_eq!(d.size, with_type.len() as u64);
        assert_eq!(d.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(
            d.annotations.as_ref().map(|a| a.len()),
            Some(1),
            "{:?}",
            d.annotations
        );
        // No artifactType: the config's media type.
        let by_config = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.example.sig"}},"subject":{{"digest":"{subject}"}}}}"#
        );
        let d = referrer(&digest(3), by_config.as_bytes(), &subject).unwrap();
        assert_eq!(
            d.artifact_type.as_deref(),
            Some("application/vnd.example.sig")
        );
        assert_eq!(d.media_type, OCI_MANIFEST);
        assert_eq!(d.annotations, None);
        // An index with a subject: no artifactType unless it says one.
        let idx =
            format!(r#"{{"schemaVersion":2,"manifests":[],"subject":{{"digest":"{subject}"}}}}"#);
        let d = referrer(&digest(4), idx.as_bytes(), &subject).unwrap();
        assert_eq!(
            (d.media_type.as_str(), d.artifact_type.as_deref()),
            (OCI_INDEX, None)
        );
        // Another subject, no subject, not JSON: no referrer.
        assert_eq!(referrer(&digest(5), with_type.as_bytes(), &digest(9)), None);
        assert_eq!(
            referrer(&digest(5), br#"{"schemaVersion":2}"#, &subject),
            None
        );
        assert_eq!(referrer(&digest(5), b"\xff", &subject), None);

        let json = serde_json::to_value(index(&[d])).unwrap();
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["mediaType"], OCI_INDEX);
        assert_eq!(json["manifests"][0]["digest"], digest(4));
        assert!(json["manifests"][0].get("artifactType").is_none(), "{json}");
        assert_eq!(
            serde_json::to_value(index(&[])).unwrap()["manifests"],
            serde_json::json!([])
        );
    }

    #[test]
    fn subjects_of_pushed_manifests() {
        let s = digest(7);
        assert_eq!(
            subject_of(format!(r#"{{"subject":{{"digest":"{s}","size":1}}}}"#).as_bytes()),
            Some(s)
        );
        assert_eq!(subject_of(br#"{"subject":{"digest":"sha256:zz"}}"#), None);
        assert_eq!(subject_of(br#"{"schemaVersion":2}"#), None);
        assert_eq!(subject_of(b"not json"), None);
    }

    fn descriptor(byte: u8, kind: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest(byte),
            size: 1,
            artifact_type: Some(kind.into()),
            annotations: None,
        }
    }

    #[test]
    fn pages_continue_after_their_last_digest() {
        let all: Vec<_> = (1..=5)
            .map(|b| descriptor(b, if b % 2 == 0 { "even" } else { "odd" }))
            .collect();
        let (p1, next) = page(all.clone(), None, None, 2);
        assert_eq!(p1, all[..2]);
        assert_eq!(next, Some(digest(2)));
        let (p2, next) = page(all.clone(), None, next.as_deref(), 2);
        assert_eq!(p2, all[2..4]);
        let (p3, next) = page(all.clone(), None, next.as_deref(), 2);
        assert_eq!((p3, next), (all[4..].to_vec(), None));
        // Exactly one full page: no next.
        assert_eq!(page(all[..2].to_vec(), None, None, 2).1, None);
        // The filter applies before paging.
        let (odd, next) = page(all.clone(), Some("odd"), None, 2);
        assert_eq!(odd, vec![all[0].clone(), all[2].clone()]);
        assert_eq!(next, Some(digest(3)));
        let (odd, next) = page(all, Some("odd"), next.as_deref(), 2);
        assert_eq!((odd.len(), next), (1, None));

        let q = Query {
            name: "ns/app".into(),
            digest: digest(1),
            artifact_type: Some("application/spdx+json".into()),
            last: None,
        };
        assert_eq!(
            next_link(&q, &digest(2)),
            format!(
                "/v2/ns/app/referrers/{}?last=sha256%3A{}&artifactType=application%2Fspdx%2Bjson",
                digest(1),
                "02".repeat(32)
            )
        );
    }

    /// A registry storage with `manifests` (bytes) in repository `name`; the digests.
    fn storage(root: &Path, name: &str, manifests: &[&[u8]]) -> Vec<String> {
        use sha2::Digest as _;
        let v2 = root.join("docker/registry/v2");
        manifests
            .iter()
            .map(|bytes| {
                let hex = hex_of(&sha2::Sha256::digest(bytes));
                let data = blob_path(&v2, &hex);
                std::fs::create_dir_all(data.parent().unwrap()).unwrap();
                std::fs::write(&data, bytes).unwrap();
                let link = v2
                    .join("repositories")
                    .join(name)
                    .join("_manifests/revisions/sha256")
                    .join(&hex);
                std::fs::create_dir_all(&link).unwrap();
                std::fs::write(link.join("link"), format!("sha256:{hex}")).unwrap();
                format!("sha256:{hex}")
            })
            .collect()
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_scan_reads_the_registry_storage_within_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let subject = digest(0x11);
        let referring = |n: u32| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"t/{n}","config":{{"mediaType":"x"}},"subject":{{"digest":"{subject}"}}}}"#
            )
        };
        let (a, b) = (referring(1), referring(2));
        let big = format!("{}{}", referring(3), " ".repeat(2048));
        let other = br#"{"schemaVersion":2,"config":{"mediaType":"x"}}"#;
        let digests = storage(
            root,
            "ns/app",
            &[a.as_bytes(), b.as_bytes(), big.as_bytes(), other],
        );
        let small = Limits {
            manifest_bytes: 1024,
            ..Limits::default()
        };
        let found = scan(root, "ns/app", &subject, small).unwrap();
        let mut want = vec![digests[0].clone(), digests[1].clone()];
        want.sort();
        assert_eq!(
            found.iter().map(|d| d.digest.clone()).collect::<Vec<_>>(),
            want,
            "the manifest over the size cap is skipped"
        );
        assert_eq!(
            scan(root, "ns/app", &subject, Limits::default())
                .unwrap()
                .len(),
            3
        );
        // Another repository, a repository that does not exist: none.
        storage(root, "ns/other", &[a.as_bytes()]);
        assert_eq!(scan(root, "nope", &subject, small), Ok(Vec::new()));
        assert_eq!(scan(root, "ns/app", &digest(0x22), small), Ok(Vec::new()));
        // A deleted manifest (its link removed, the directory kept) is gone.
        let hex = digests[0].trim_start_matches("sha256:");
        std::fs::remove_file(
            root.join("docker/registry/v2/repositories/ns/app/_manifests/revisions/sha256")
                .join(hex)
                .join("link"),
        )
        .unwrap();
        assert_eq!(scan(root, "ns/app", &subject, small).unwrap().len(), 1);
        // Bounds: too many manifests, too many bytes.
        let few = Limits {
            manifests: 2,
            ..Limits::default()
        };
        assert_eq!(
            scan(root, "ns/app", &subject, few),
            Err(ScanError::TooManyManifests(2))
        );
        let little = Limits {
            bytes: 300,
            ..Limits::default()
        };
        assert_eq!(
            scan(root, "ns/app", &subject, little),
            Err(ScanError::TooManyBytes(300))
        );
    }
}
