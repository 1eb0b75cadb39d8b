//! `updateState` and its long-running operation: followed through `Location` (preferred)
//! or `Azure-AsyncOperation`, only on the ARM endpoint's own host over https, waiting as
//! `Retry-After` says within bounds, until the caller's deadline.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::answer_checks::{parse_json, short, size};
use super::{ArmClient, ArmErrorDetail, StoreId};
use crate::aosm::error::AosmError;
use crate::aosm::identity::first_line;
use crate::limits::{
    MAX_ARM_ERROR_CODE_CHARS as MAX_ERROR_CODE_CHARS, MAX_ARM_NAME_BYTES as MAX_NAME_BYTES,
    MAX_HEADER_VALUE_BYTES, MAX_POLL_INTERVAL, MIN_POLL_INTERVAL,
};

/// The answer of an `Azure-AsyncOperation` URL.
#[derive(Deserialize, Default)]
struct OperationStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: ArmErrorDetail,
}

/// How a long-running operation is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PollKind {
    /// `Location`: 202 while running, then the final answer.
    Location,
    /// `Azure-AsyncOperation`: 200 with `{"status": ...}`.
    AsyncOperation,
}

impl PollKind {
    fn header(self) -> &'static str {
        match self {
            PollKind::Location => "Location",
            PollKind::AsyncOperation => "Azure-AsyncOperation",
        }
    }
}

impl ArmClient {
    /// Sets the manifest state (e.g. `Uploaded`), following the long-running operation
    /// through `Location` (preferred) or `Azure-AsyncOperation`. An operation URL is
    /// followed only when it is https on the ARM endpoint's own host and port: an answer
    /// cannot send the ARM token anywhere else.
    pub async fn update_state(
        &self,
        store: &StoreId,
        manifest: &str,
        state: &str,
        deadline: Duration,
    ) -> Result<(), AosmError> {
        let path = format!("{}/updateState", store.manifest_path(manifest));
        let action = "POST updateState";
        let poll_action = "poll updateState";
        let body = serde_json::json!({ "artifactManifestState": state });
        let mut answer = self
            .call(Method::POST, &self.url(&path), Some(&body), action, &path)
            .await?;
        if answer.status != StatusCode::ACCEPTED {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (kind, mut url) = self.operation_url(&answer.headers, None, action)?;
        loop {
            let wait = crate::http::retry_after_header(&answer.headers)
                .unwrap_or(MIN_POLL_INTERVAL)
                .clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL);
            if started.elapsed() + wait > deadline {
                return Err(AosmError::Transient {
                    status: 202,
                    action: action.into(),
                    code: "OperationTimeout".into(),
                    message: format!(
                        "updateState to {state} still running after {}s",
                        started.elapsed().as_secs()
                    ),
                    retry_after: None,
                });
            }
            tokio::time::sleep(wait).await;
            answer = self
                .call(Method::GET, &url, None, poll_action, &path)
                .await?;
            match kind {
                PollKind::Location => {
                    if answer.status != StatusCode::ACCEPTED {
                        return Ok(());
                    }
                    // A 202 may name the next URL; it is checked like the first.
                    if answer.headers.contains_key(header::LOCATION) {
                        url = self
                            .operation_url(&answer.headers, Some(kind), poll_action)?
                            .1;
                    }
                }
                PollKind::AsyncOperation => {
                    let op: OperationStatus = parse_json(&answer.body, poll_action)?;
                    match op.status.to_ascii_lowercase().as_str() {
                        "succeeded" => return Ok(()),
                        "failed" | "canceled" | "cancelled" => {
                            return Err(AosmError::Refused {
                                action: action.into(),
                                status: answer.status.as_u16(),
                                code: if op.error.code.is_empty() {
                                    short(&op.status, MAX_ERROR_CODE_CHARS)
                                } else {
                                    short(&op.error.code, MAX_ERROR_CODE_CHARS)
                                },
                                message: first_line(&op.error.message),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// The operation URL of a 202 answer: `Location`, else `Azure-AsyncOperation` (or
    /// only the header of `kind`), resolved against the ARM endpoint; refused unless it
    /// is https on the ARM endpoint's host and port, without user info.
    fn operation_url(
        &self,
        headers: &HeaderMap,
        kind: Option<PollKind>,
        action: &str,
    ) -> Result<(PollKind, String), AosmError> {
        let protocol = |reason: String| AosmError::Protocol {
            action: action.to_string(),
            reason,
        };
        let found = [PollKind::Location, PollKind::AsyncOperation]
            .into_iter()
            .filter(|k| kind.is_none_or(|want| want == *k))
            .find_map(|k| headers.get(k.header()).map(|v| (k, v)));
        let Some((kind, value)) = found else {
            return Err(protocol(
                "202 without a Location or Azure-AsyncOperation header".into(),
            ));
        };
        let name = kind.header();
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(protocol(format!(
                "its {name} header is longer than the {} limit",
                size(MAX_HEADER_VALUE_BYTES)
            )));
        }
        let url = value
            .to_str()
            .ok()
            .and_then(|v| self.arm_base.join(v.trim()).ok())
            .ok_or_else(|| protocol(format!("its {name} header is not a URL")))?;
        let refuse = |what: String| {
            protocol(format!(
                "its {name} URL {what}; the ARM token is only sent over https to the ARM endpoint {}",
                self.arm_endpoint
            ))
        };
        if url.scheme() != "https" {
            return Err(refuse(format!(
                "uses {}:// instead of https://",
                short(url.scheme(), MAX_NAME_BYTES)
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("carries user info".into()));
        }
        let host = url.host_str().unwrap_or_default();
        if !host.eq_ignore_ascii_case(self.arm_base.host_str().unwrap_or_default())
            || url.port_or_known_default() != self.arm_base.port_or_known_default()
        {
            return Err(refuse(format!(
                "points at {}:{}, another host",
                short(host, MAX_NAME_BYTES),
                url.port_or_known_default().unwrap_or(443)
            )));
        }
        Ok((kind, url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aosm::arm::API_VERSIONS;
    use crate::aosm::identity::Identity;
    use crate::engine::Secret;
    use crate::http::RetryPolicy;

    fn client(arm_endpoint: &str) -> ArmClient {
        ArmClient::new(
            reqwest::Client::new(),
            &crate::aosm::cloud::CloudEndpoints {
                arm_endpoint: arm_endpoint.into(),
                authority_host: "https://login.microsoftonline.com".into(),
                arm_scope: "https://management.azure.com/.default".into(),
            },
            API_VERSIONS[0],
            Identity::ClientSecret {
                tenant_id: "00000000-0000-0000-0000-000000000001".into(),
                client_id: "00000000-0000-0000-0000-000000000002".into(),
                client_secret: Secret::new("x"),
            },
            RetryPolicy::default(),
            None,
        )
        .expect("a client")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("a header value"));
        }
        h
    }

    #[test]
    fn operation_urls_must_be_https_on_the_arm_host() {
        let c = client("https://management.azure.com");
        let ok = |pairs: &[(&'static str, &str)]| {
            c.operation_url(&headers(pairs), None, "POST updateState")
                .map_err(|e| e.to_string())
        };
        let op = "https://management.azure.com/subscriptions/s/providers/Microsoft.HybridNetwork/locations/eastus/operationResults/1?api-version=2023-09-01";
        assert_eq!(ok(&[("location", op)]), Ok((PollKind::Location, op.into())));
        assert_eq!(
            ok(&[("azure-asyncoperation", op)]),
            Ok((PollKind::AsyncOperation, op.into()))
        );
        assert_eq!(
            ok(&[("location", op), ("azure-asyncoperation", "http://x")]),
            Ok((PollKind::Location, op.into())),
            "Location wins"
        );
        assert_eq!(
            ok(&[("location", "HTTPS://Management.Azure.COM:443/op")]).map(|(_, u)| u),
            Ok("https://management.azure.com/op".into())
        );
        assert_eq!(
            ok(&[("location", "/subscriptions/s/op")]).map(|(_, u)| u),
            Ok("https://management.azure.com/subscriptions/s/op".into()),
            "a relative URL stays on the ARM host"
        );
        for (value, why) in [
            (
                "http://management.azure.com/op",
                "uses http:// instead of https://",
            ),
            (
                "https://evil.example/op",
                "points at evil.example:443, another host",
            ),
            (
                "https://management.azure.com:8443/op",
                "points at management.azure.com:8443",
            ),
            (
                "https://management.azure.com.evil.example/op",
                "another host",
            ),
            ("https://management.azure.com@evil.example/op", "user info"),
            ("https://u:p@management.azure.com/op", "user info"),
            ("//evil.example/op", "another host"),
            ("https://", "not a URL"),
        ] {
            let err = ok(&[("location", value)]).expect_err(value);
            assert!(err.contains(why), "{value}: {err}");
            assert!(
                err.contains("the ARM token is only sent over https to the ARM endpoint https://management.azure.com")
                    || why == "not a URL",
                "{err}"
            );
        }
        let long = format!("https://management.azure.com/{}", "a".repeat(9000));
        assert!(
            ok(&[("location", &long)])
                .unwrap_err()
                .contains("8 KiB limit")
        );
        assert!(ok(&[]).unwrap_err().contains("202 without"));
    }
}
