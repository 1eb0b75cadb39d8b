//! The referrers of a manifest (OCI distribution spec 1.1): the manifests whose `subject`
//! names it — signatures, SBOMs, attestations. Found through the referrers API
//! (`GET /v2/<name>/referrers/<digest>`, an image index, further pages by `Link`), or,
//! where a registry lacks the API (it answers 404), through the referrers tag schema: the
//! tag `<alg>-<hex>` holding an index of them, which clients keep up to date.
//!
//! What a registry sends is hostile input: each page is read up to
//! [`MAX_MANIFEST_BYTES`], at most [`MAX_REFERRER_PAGES`] pages and [`MAX_REFERRERS`]
//! descriptors are taken, every digest is checked, and a `Link` that leaves the registry's
//! origin or its referrers path is refused.

use serde::{Deserialize, Serialize};

use super::distribution::with_query;
use super::*;

/// Most referrers taken for one manifest.
pub const MAX_REFERRERS: usize = 1024;
/// Most pages of the referrers API read for one manifest.
pub const MAX_REFERRER_PAGES: usize = 64;

/// One referrer, as the index lists it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// Media type of the referring manifest.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its artifact type (e.g. `application/spdx+json`, a signature type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// How the referrers were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// The referrers API.
    Api,
    /// The referrers tag schema (the registry has no API).
    TagSchema,
}

#[derive(Deserialize)]
struct ReferrerIndex {
    #[serde(default)]
    manifests: Vec<Referrer>,
}

impl RegistryClient {
    /// The referrers of `repo@digest`, with `artifact_type` only when given (filtered here
    /// when the registry did not), and how they were found.
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<(Vec<Referrer>, Discovery)> {
        check_repository(repo)?;
        check_digest(digest)?;
        let action = format!("GET referrers of {repo}@{digest}");
        let protocol = |reason: String| EngineError::Protocol {
            host: self.host.clone(),
            action: action.clone(),
            reason,
        };
        let mut url = self.url(&format!("/v2/{repo}/referrers/{digest}"));
        if let Some(t) = artifact_type {
            url = with_query(&url, "artifactType", &urlencode(t));
        }
        let path_prefix = format!("/v2/{repo}/referrers/");
        let mut found = Vec::new();
        for page in 0.. {
            if page == MAX_REFERRER_PAGES {
                return Err(protocol(format!(
                    "more than {MAX_REFERRER_PAGES} pages of referrers (MAX_REFERRER_PAGES)"
                )));
            }
            let resp = self
                .send(&Scope::pull(repo), &action, |c| {
                    c.get(&url)
                        .header(header::ACCEPT, crate::engine::media::OCI_INDEX)
                })
                .await?;
            if resp.status() == StatusCode::NOT_FOUND && page == 0 {
                let by_tag = self.referrers_by_tag(repo, digest).await?;
                return Ok((filtered(by_tag, artifact_type), Discovery::TagSchema));
            }
            if !resp.status().is_success() {
                return Err(status_error(&self.host, &action, resp).await);
            }
            let filters_applied = bounded_header(resp.headers(), "OCI-Filters-Applied")
                .map_err(&protocol)?
                .is_some_and(|f| f.split(',').any(|f| f.trim() == "artifactType"));
            let next = bounded_header(resp.headers(), "Link").map_err(&protocol)?;
            let body = read_capped(resp, MAX_MANIFEST_BYTES)
                .await
                .map_err(|e| protocol(e.to_string()))?;
            let index: ReferrerIndex = serde_json::from_slice(&body)
                .map_err(|e| protocol(format!("not an image index: {e}")))?;
            let listed = if filters_applied {
                index.manifests
            } else {
                filtered(index.manifests, artifact_type)
            };
            found.extend(listed);
            if found.len() > MAX_REFERRERS {
                return Err(protocol(format!(
                    "more than {MAX_REFERRERS} referrers (MAX_REFERRERS)"
                )));
            }
            match next.as_deref().and_then(next_link) {
                None => break,
                Some(link) => {
                    let next_url = self.resolve_location(link, &action)?;
                    if !self.is_own_origin(&next_url) || !next_url.path().starts_with(&path_prefix)
                    {
                        return Err(protocol(format!(
                            "its Link leaves the referrers of {repo} on this registry: {}",
                            quote_untrusted(next_url.as_str(), 120)
                        )));
                    }
                    url = next_url.to_string();
                }
            }
        }
        for r in &found {
            check_digest(&r.digest)?;
        }
        Ok((found, Discovery::Api))
    }

    /// The referrers tag schema: the index tagged `<alg>-<hex>`, or none.
    async fn referrers_by_tag(&self, repo: &str, digest: &str) -> Result<Vec<Referrer>> {
        let tag = referrers_tag(digest);
        let index = match self.get_manifest(repo, &tag).await {
            Ok(m) => m,
            Err(EngineError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let parsed: ReferrerIndex =
            serde_json::from_slice(&index.bytes).map_err(|e| EngineError::Protocol {
                host: self.host.clone(),
                action: format!("GET manifest {repo}:{tag}"),
                reason: format!("the referrers tag is not an image index: {e}"),
            })?;
        if parsed.manifests.len() > MAX_REFERRERS {
            return Err(EngineError::Protocol {
                host: self.host.clone(),
                action: format!("GET manifest {repo}:{tag}"),
                reason: format!("more than {MAX_REFERRERS} referrers (MAX_REFERRERS)"),
            });
        }
        for r in &parsed.manifests {
            check_digest(&r.digest)?;
        }
        Ok(parsed.manifests)
    }
}

/// The tag of the referrers tag schema for `digest`: `sha256:<hex>` → `sha256-<hex>`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

fn filtered(referrers: Vec<Referrer>, artifact_type: Option<&str>) -> Vec<Referrer> {
    match artifact_type {
        None => referrers,
        Some(t) => referrers
            .into_iter()
            .filter(|r| r.artifact_type.as_deref() == Some(t))
            .collect(),
    }
}

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then_some(target)
    })
}

/// Percent-encodes a query value (media types hold `/` and `+`).
fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_and_tags() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:x?n=1&last=y>; rel="next""#),
            Some("/v2/a/referrers/sha256:x?n=1&last=y")
        );
        assert_eq!(next_link(r#"</v2/a/referrers/x>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(referrers_tag("sha256:abc"), "sha256-abc");
        assert_eq!(
            urlencode("application/spdx+json"),
            "application%2Fspdx%2Bjson"
        );
    }
}
