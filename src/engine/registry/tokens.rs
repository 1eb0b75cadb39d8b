//! Authentication to a registry: the `/v2/` challenge, bearer tokens per scope (cached,
//! dropped on refusal), basic credentials, and the `Authorization` of each request.

use super::*;

impl RegistryClient {
    pub(super) async fn challenge(&self) -> Result<&Challenge> {
        self.challenge
            .get_or_try_init(|| async {
                let url = self.url("/v2/");
                with_retry(
                    &self.retry,
                    self.retry.max_attempts,
                    "GET /v2/",
                    |_| async {
                        let resp = match self.http.get(&url).send().await {
                            Ok(resp) => resp,
                            Err(e) => return Step::Failed(transport_error(&self.host, &e)),
                        };
                        match resp.status() {
                            s if s.is_success() => Step::Done(Challenge::None),
                            StatusCode::UNAUTHORIZED => match self.read_challenge(&resp) {
                                Ok(challenge) => Step::Done(challenge),
                                Err(e) => Step::Abort(e),
                            },
                            _ => Step::Failed(status_error(&self.host, "GET /v2/", resp).await),
                        }
                    },
                )
                .await
            })
            .await
    }

    /// The challenge of a 401 answer to `/v2/`; a bearer realm must pass [`check_realm`].
    fn read_challenge(&self, resp: &Response) -> Result<Challenge> {
        let protocol = |reason: String| EngineError::Protocol {
            host: self.host.clone(),
            action: "GET /v2/".into(),
            reason,
        };
        let header = bounded_header(resp.headers(), "WWW-Authenticate")
            .map_err(protocol)?
            .unwrap_or_default();
        let challenge = Challenge::parse(&header)
            .ok_or_else(|| protocol("401 without a usable WWW-Authenticate header".into()))?;
        if let Challenge::Bearer { realm, .. } = &challenge {
            check_realm(realm, self.origin.scheme() == "https").map_err(protocol)?;
        }
        Ok(challenge)
    }

    /// A bearer token for `scope`, from the cache or the token endpoint. The realm was
    /// checked by [`check_realm`] when the challenge was read; the answer is read capped
    /// at [`MAX_TOKEN_RESPONSE_BYTES`].
    pub(super) async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<String> {
        let key = scope.key();
        let mut tokens = self.tokens.lock().await;
        if let Some(t) = tokens.get(&key) {
            return Ok(t.clone());
        }
        let realm_url = check_realm(realm, self.origin.scheme() == "https").map_err(|reason| {
            EngineError::Protocol {
                host: self.host.clone(),
                action: "token request".into(),
                reason,
            }
        })?;
        let token_host = match (realm_url.host_str(), realm_url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => self.host.clone(),
        };
        let mut query: Vec<(&str, &str)> = scope.0.iter().map(|s| ("scope", s.as_str())).collect();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let protocol = |reason: String| EngineError::Protocol {
            host: token_host.clone(),
            action: format!("token request for {}", self.host),
            reason,
        };
        let action = format!("token request for {}", self.host);
        let token = with_retry(&self.retry, self.retry.max_attempts, &action, |refreshed| {
            let (realm_url, query, token_host, protocol) =
                (&realm_url, &query, &token_host, &protocol);
            async move {
                let mut req = self.http.get(realm_url.clone()).query(query);
                // The credential source retries on its own: not again here.
                match self.basic_pair(refreshed).await {
                    Ok(Some((username, password))) => {
                        req = req.basic_auth(username, Some(password.expose()));
                    }
                    Ok(None) => {}
                    Err(e) => return Step::Abort(e),
                }
                let resp = match req.send().await {
                    Ok(resp) => resp,
                    Err(e) => return Step::Failed(transport_error(token_host, &e)),
                };
                let status = resp.status();
                if status.is_success() {
                    return match read_capped(resp, MAX_TOKEN_RESPONSE_BYTES).await {
                        Ok(body) => match parse_token_answer(&body) {
                            Ok(token) => Step::Done(token),
                            Err(reason) => Step::Abort(protocol(reason)),
                        },
                        Err(CappedReadError::TooLarge { .. }) => {
                            Step::Abort(EngineError::LimitExceeded {
                                host: token_host.clone(),
                                what: format!("the token answer for {}", self.host),
                                problem: format!(
                                    "it is larger than {} (MAX_TOKEN_RESPONSE_BYTES)",
                                    human_bytes(MAX_TOKEN_RESPONSE_BYTES as u64)
                                ),
                                hint: TOKEN_TOO_LARGE_HINT.into(),
                            })
                        }
                        Err(CappedReadError::Transport(e)) => Step::Failed(EngineError::Connect {
                            host: token_host.clone(),
                            reason: format!(
                                "reading the token answer: {}",
                                describe_reqwest_error(&e)
                            ),
                        }),
                    };
                }
                if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                    return Step::Failed(status_error(token_host, "token request", resp).await);
                }
                let reason = error_text(resp).await;
                if status == StatusCode::FORBIDDEN {
                    return Step::Abort(EngineError::Forbidden {
                        registry: self.host.clone(),
                        action: scope.key(),
                        reason,
                    });
                }
                let refused = EngineError::Unauthorized {
                    registry: self.host.clone(),
                    reason: format!("token endpoint refused the credentials ({reason})"),
                };
                if !refreshed && matches!(self.credentials, Credentials::Dynamic(_)) {
                    // The credential expired or was revoked: ask its source for a new one.
                    Step::Renew(refused)
                } else {
                    Step::Abort(refused)
                }
            }
        })
        .await?;
        tokens.insert(key, token.clone());
        Ok(token)
    }

    /// The username/password to present, if any.
    pub(super) async fn basic_pair(
        &self,
        refresh: bool,
    ) -> Result<Option<(String, crate::engine::auth::Secret)>> {
        Ok(match &self.credentials {
            Credentials::Anonymous => None,
            Credentials::Basic { username, password } => Some((username.clone(), password.clone())),
            Credentials::Dynamic(source) => Some(source.basic(refresh).await?),
        })
    }

    /// Drops the cached token for `scope` (after a 401: expired or too narrow).
    pub(super) async fn forget_token(&self, scope: &Scope) {
        self.tokens.lock().await.remove(&scope.key());
    }

    /// Adds this registry's credentials to a request, if it goes to the registry's own
    /// origin (scheme, host and port). A request elsewhere (an upload `Location` on
    /// another host, say) is sent without them. reqwest itself drops `Authorization` when
    /// it follows a redirect to another origin.
    pub(super) async fn authorize(
        &self,
        req: RequestBuilder,
        scope: &Scope,
        action: &str,
    ) -> Result<RequestBuilder> {
        let (client, request) = req.build_split();
        let request = request.map_err(|e| EngineError::Protocol {
            host: self.host.clone(),
            action: action.to_string(),
            reason: format!("cannot build the request: {}", describe_reqwest_error(&e)),
        })?;
        if !self.is_own_origin(request.url()) {
            tracing::debug!(host = %self.host, action, "request to another origin: no credentials");
            return Ok(RequestBuilder::from_parts(client, request));
        }
        let req = RequestBuilder::from_parts(client, request);
        Ok(match self.challenge().await? {
            Challenge::None => req,
            Challenge::Basic => match self.basic_pair(false).await? {
                Some((username, password)) => req.basic_auth(username, Some(password.expose())),
                None => {
                    return Err(EngineError::Unauthorized {
                        registry: self.host.clone(),
                        reason: "the registry requires credentials and none were given".into(),
                    });
                }
            },
            Challenge::Bearer { realm, service } => {
                let token = self.token(realm, service.as_deref(), scope).await?;
                req.bearer_auth(token)
            }
        })
    }
}

/// The token of a token server's answer (`{"token": ...}` or `{"access_token": ...}`),
/// refused when missing or not usable in an HTTP header.
pub(super) fn parse_token_answer(body: &[u8]) -> std::result::Result<String, String> {
    #[derive(Deserialize)]
    struct TokenAnswer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| format!("token answer is not JSON: {e}"))?;
    match answer.access_token.or(answer.token) {
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => Ok(t),
        Some(t) if !t.is_empty() => {
            Err("the token holds characters not allowed in an HTTP header".into())
        }
        _ => Err("token answer has no token".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() {
        assert_eq!(parse_token_answer(br#"{"token":"abc"}"#).unwrap(), "abc");
        assert_eq!(
            parse_token_answer(br#"{"token":"t","access_token":"a"}"#).unwrap(),
            "a"
        );
        for bad in [
            &br#"{}"#[..],
            br#"{"token":""}"#,
            br#"{"token":"a b"}"#,
            b"{\"token\":\"a\\r\\nX-Evil: 1\"}",
            b"not json",
        ] {
            assert!(parse_token_answer(bad).is_err());
        }
    }
}
