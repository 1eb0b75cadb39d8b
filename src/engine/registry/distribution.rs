//! The distribution-API calls the copy needs: manifests (GET, HEAD, PUT), blobs (HEAD,
//! GET with `Range`), uploads (start with mount, chunks, status, cancel).

use super::*;

impl RegistryClient {
    /// Fetches a manifest by tag or digest, verifying its digest.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<RawManifest> {
        self.get_manifest_sized(repo, reference, None).await
    }

    /// Fetches a manifest by tag or digest, reading at most `expected_size` bytes (a
    /// child's descriptor size) or [`MAX_MANIFEST_BYTES`], and verifies it: its size
    /// against `expected_size`, its digest against the digest that named it (or the
    /// `Docker-Content-Digest` header for a tag), with that digest's algorithm.
    pub async fn get_manifest_sized(
        &self,
        repo: &str,
        reference: &str,
        expected_size: Option<u64>,
    ) -> Result<RawManifest> {
        check_repository(repo)?;
        let by_digest = check_reference(reference)?;
        let name = manifest_name(repo, reference);
        let too_large = |problem: String| EngineError::LimitExceeded {
            host: self.host.clone(),
            what: format!("manifest {name}"),
            problem,
            hint: MANIFEST_TOO_LARGE_HINT.into(),
        };
        let cap = match expected_size {
            Some(size) if size > MAX_MANIFEST_BYTES as u64 => {
                return Err(too_large(format!(
                    "its descriptor states {size} bytes, more than {} (MAX_MANIFEST_BYTES)",
                    human_bytes(MAX_MANIFEST_BYTES as u64)
                )));
            }
            Some(size) => usize::try_from(size).unwrap_or(MAX_MANIFEST_BYTES),
            None => MAX_MANIFEST_BYTES,
        };
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let action = format!("GET manifest {name}");
        let protocol = |reason: String| EngineError::Protocol {
            host: self.host.clone(),
            action: action.clone(),
            reason,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self
                .send(&Scope::pull(repo), &action, |c| {
                    c.get(&url).header(header::ACCEPT, MANIFEST_ACCEPT)
                })
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(EngineError::NotFound {
                    what: format!("manifest {name}"),
                    location: self.host.clone(),
                    hint: "check the repository name and tag or digest".into(),
                });
            }
            if !resp.status().is_success() {
                return Err(status_error(&self.host, &action, resp).await);
            }
            let content_type = bounded_header(resp.headers(), "Content-Type").map_err(protocol)?;
            // The digest that names the content: the reference itself, else the header
            // (checked by the digest grammar before it is used).
            let expected = match by_digest {
                Some(_) => Some(reference.to_string()),
                None => match bounded_header(resp.headers(), "Docker-Content-Digest")
                    .map_err(protocol)?
                {
                    Some(d) => {
                        parse_digest(&d).map_err(|e| {
                            protocol(format!("its Docker-Content-Digest header: {e}"))
                        })?;
                        Some(d)
                    }
                    None => None,
                },
            };
            let body = match read_capped(resp, cap).await {
                Ok(b) => b,
                Err(CappedReadError::TooLarge { announced, .. }) => {
                    let said = announced
                        .map(|n| format!(" (Content-Length {n})"))
                        .unwrap_or_default();
                    return Err(match expected_size {
                        Some(size) => protocol(format!(
                            "the manifest is longer than the {size} bytes its descriptor states{said}"
                        )),
                        None => too_large(format!(
                            "it is larger than {} (MAX_MANIFEST_BYTES){said}",
                            human_bytes(MAX_MANIFEST_BYTES as u64)
                        )),
                    });
                }
                Err(CappedReadError::Transport(lost)) => {
                    let e = EngineError::Connect {
                        host: self.host.clone(),
                        reason: format!(
                            "{action}: connection lost while reading: {}",
                            describe_reqwest_error(&lost)
                        ),
                    };
                    if attempt < self.retry.max_attempts {
                        tokio::time::sleep(self.retry.delay(attempt, None)).await;
                        continue;
                    }
                    return Err(e);
                }
            };
            if let Some(size) = expected_size
                && body.len() as u64 != size
            {
                return Err(protocol(format!(
                    "the manifest is {} bytes, but its descriptor states {size}",
                    body.len()
                )));
            }
            let algorithm = match &expected {
                Some(d) => parse_digest(d).map_err(|e| protocol(e.to_string()))?,
                None => Algorithm::Sha256,
            };
            let digest = digest_with(algorithm, &body);
            if let Some(expected) = expected
                && expected != digest
            {
                return Err(EngineError::DigestMismatch {
                    what: format!("manifest {name}"),
                    location: self.host.clone(),
                    expected,
                    actual: digest,
                });
            }
            let media_type =
                crate::engine::media::manifest_media_type(&body, content_type.as_deref());
            return Ok(RawManifest {
                bytes: body,
                media_type,
                digest,
            });
        }
    }

    /// HEADs a manifest: `Some(digest)` when it exists, `None` on 404. The digest comes
    /// from `Docker-Content-Digest` and is checked by the digest grammar.
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
        scope: &Scope,
    ) -> Result<Option<String>> {
        check_repository(repo)?;
        check_reference(reference)?;
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let action = format!("HEAD manifest {}", manifest_name(repo, reference));
        let resp = self
            .send(scope, &action, |c| {
                c.head(&url).header(header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => self.digest_header(&resp, &action),
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// The `Docker-Content-Digest` header of `resp`, refused unless it is a valid digest.
    pub(super) fn digest_header(&self, resp: &Response, action: &str) -> Result<Option<String>> {
        let protocol = |reason: String| EngineError::Protocol {
            host: self.host.clone(),
            action: action.to_string(),
            reason,
        };
        match bounded_header(resp.headers(), "Docker-Content-Digest").map_err(protocol)? {
            Some(d) => {
                parse_digest(&d)
                    .map_err(|e| protocol(format!("its Docker-Content-Digest header: {e}")))?;
                Ok(Some(d))
            }
            None => Ok(None),
        }
    }

    /// PUTs a manifest under `reference` (tag or digest), and checks the digest the
    /// registry reports (when it uses the same algorithm).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &RawManifest,
    ) -> Result<()> {
        check_repository(repo)?;
        check_reference(reference)?;
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let action = format!("PUT manifest {}", manifest_name(repo, reference));
        let resp = self
            .send(&Scope::push(repo), &action, |c| {
                c.put(&url)
                    .header(header::CONTENT_TYPE, manifest.media_type.as_str())
                    .body(manifest.bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(&self.host, &action, resp).await);
        }
        if let Some(d) = self.digest_header(&resp, &action)?
            && parse_digest(&d).ok() == parse_digest(&manifest.digest).ok()
            && d != manifest.digest
        {
            return Err(EngineError::Protocol {
                host: self.host.clone(),
                action,
                reason: format!("registry stored digest {d}, expected {}", manifest.digest),
            });
        }
        Ok(())
    }

    /// True when the blob exists in `repo`.
    pub async fn blob_exists(&self, repo: &str, digest: &str, scope: &Scope) -> Result<bool> {
        check_repository(repo)?;
        check_digest(digest)?;
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let action = format!("HEAD blob {repo}@{digest}");
        let resp = self.send(scope, &action, |c| c.head(&url)).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// GETs a blob of `size` bytes from `offset` on; the response streams the bytes. A
    /// `Content-Length` other than `size - offset` is refused before the body is read.
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
        size: u64,
    ) -> Result<Response> {
        check_repository(repo)?;
        check_digest(digest)?;
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let action = format!("GET blob {repo}@{digest}");
        let resp = self
            .send(&Scope::pull(repo), &action, |c| {
                let req = c.get(&url);
                if offset > 0 {
                    req.header(header::RANGE, format!("bytes={offset}-"))
                } else {
                    req
                }
            })
            .await?;
        let resp = match resp.status() {
            StatusCode::OK if offset == 0 => resp,
            StatusCode::PARTIAL_CONTENT if offset > 0 => resp,
            StatusCode::OK => {
                return Err(EngineError::Protocol {
                    host: self.host.clone(),
                    action,
                    reason: "registry ignored the Range header".into(),
                });
            }
            StatusCode::NOT_FOUND => {
                return Err(EngineError::NotFound {
                    what: format!("blob {digest}"),
                    location: format!("{}/{repo}", self.host),
                    hint: "the source manifest references a blob the registry does not have".into(),
                });
            }
            _ => return Err(status_error(&self.host, &action, resp).await),
        };
        let want = size.saturating_sub(offset);
        let mismatch = |announced: u64| {
            let from = if offset > 0 {
                format!(" from offset {offset}")
            } else {
                String::new()
            };
            format!(
                "the registry announces {announced} bytes (Content-Length) where the descriptor states {size}{from}"
            )
        };
        match resp.content_length() {
            // More than stated: refused before a byte is read.
            Some(announced) if announced > want => Err(EngineError::LimitExceeded {
                host: self.host.clone(),
                what: format!("blob {repo}@{digest}"),
                problem: mismatch(announced),
                hint: BLOB_MISMATCH_HINT.into(),
            }),
            Some(announced) if announced < want => Err(EngineError::Protocol {
                host: self.host.clone(),
                action,
                reason: mismatch(announced),
            }),
            _ => Ok(resp),
        }
    }

    /// Starts an upload, trying a cross-repository mount first when `mount_from` is set.
    /// Returns the session URL (the `Location`, resolved and checked).
    pub async fn start_upload(
        &self,
        repo: &str,
        digest: &str,
        mount_from: Option<&str>,
    ) -> Result<UploadStart> {
        check_repository(repo)?;
        check_digest(digest)?;
        if let Some(from) = mount_from {
            check_repository(from)?;
        }
        let (url, scope) = match mount_from {
            Some(from) => (
                self.url(&format!(
                    "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
                )),
                Scope::push(repo).and_pull(from),
            ),
            None => (
                self.url(&format!("/v2/{repo}/blobs/uploads/")),
                Scope::push(repo),
            ),
        };
        let action = format!("POST upload {repo}");
        let resp = self
            .send(&scope, &action, |c| {
                c.post(&url).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED | StatusCode::CREATED => {
                match self.location_header(&resp, &action)? {
                    Some(loc) => Ok(UploadStart::Session(loc)),
                    None => Err(EngineError::Protocol {
                        host: self.host.clone(),
                        action,
                        reason: "upload answer has no Location".into(),
                    }),
                }
            }
            _ => Err(status_error(&self.host, &action, resp).await),
        }
    }

    /// The `Location` header of `resp`, bounded and resolved against the registry.
    pub(super) fn location_header(&self, resp: &Response, action: &str) -> Result<Option<String>> {
        let location =
            bounded_header(resp.headers(), "Location").map_err(|reason| EngineError::Protocol {
                host: self.host.clone(),
                action: action.to_string(),
                reason,
            })?;
        location
            .map(|l| self.resolve_location(&l, action).map(String::from))
            .transpose()
    }

    /// Sends one chunk of an upload: PATCH (more to come) or PUT with the digest (last).
    /// The body is consumed, so this makes one attempt; the caller resumes on failure.
    pub async fn send_chunk(
        &self,
        repo: &str,
        location: &str,
        range: (u64, u64),
        body: reqwest::Body,
        finish_with_digest: Option<&str>,
    ) -> Result<Option<String>> {
        let (start, len) = range;
        if let Some(d) = finish_with_digest {
            check_digest(d)?;
        }
        let body = std::sync::Mutex::new(Some(body));
        let (method, url) = match finish_with_digest {
            Some(d) => (Method::PUT, with_query(location, "digest", d)),
            None => (Method::PATCH, location.to_string()),
        };
        let action = format!("{method} upload {repo}");
        let resp = self
            .send_with(&Scope::push(repo), &action, 1, |c| {
                let mut req = c
                    .request(method.clone(), &url)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, len);
                if len > 0 && finish_with_digest.is_none() {
                    req = req.header("Content-Range", format!("{start}-{}", start + len - 1));
                }
                let taken = body.lock().ok().and_then(|mut b| b.take());
                req.body(taken.unwrap_or_else(|| reqwest::Body::from(Bytes::new())))
            })
            .await?;
        let ok = if finish_with_digest.is_some() {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        if resp.status() != ok && !(finish_with_digest.is_some() && resp.status().is_success()) {
            return Err(status_error(&self.host, &action, resp).await);
        }
        self.location_header(&resp, &action)
    }

    /// Bytes the registry holds for an upload session (end of its `Range`).
    pub async fn upload_offset(&self, repo: &str, location: &str) -> Result<u64> {
        let action = format!("GET upload status {repo}");
        let resp = self
            .send(&Scope::push(repo), &action, |c| c.get(location))
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(&self.host, &action, resp).await);
        }
        let range =
            bounded_header(resp.headers(), "Range").map_err(|reason| EngineError::Protocol {
                host: self.host.clone(),
                action,
                reason,
            })?;
        Ok(range.as_deref().and_then(parse_upload_range).unwrap_or(0))
    }

    /// Abandons an upload session (best effort).
    pub async fn cancel_upload(&self, repo: &str, location: &str) {
        let _ = self
            .send_with(&Scope::push(repo), "DELETE upload", 1, |c| {
                c.delete(location)
            })
            .await;
    }
}

/// `repo:tag` or `repo@sha256:...`, as users write references.
pub(super) fn manifest_name(repo: &str, reference: &str) -> String {
    if reference.contains(':') {
        format!("{repo}@{reference}")
    } else {
        format!("{repo}:{reference}")
    }
}

pub(super) fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}
