//! The ARM operations: resource CRUD, collection lists, listCredential, updateState and
//! operation polls.

use super::MANIFEST_SCOPED_REPOSITORIES_FROM;
use super::auth::{self, Principal};
use super::error::ArmError;
use super::route::{Action, PollKind, Route};
use crate::app::{App, lock};
use crate::config::RuntimeConfig;
use crate::credentials::Grant;
use crate::operations::{Operation, PollState};
use crate::resources::{PutBody, PutOutcome, Resource, ResourceId, StoreType};
use crate::secret::Secret;
use crate::time_fmt;
use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::SystemTime;

/// Serves one authenticated ARM request.
pub fn serve(
    app: &App,
    cfg: &RuntimeConfig,
    who: &Principal,
    method: &Method,
    route: Route,
    api_version: &str,
    body: &[u8],
) -> Result<Response, ArmError> {
    match route {
        Route::Resource(id) => {
            let verb = match *method {
                Method::GET => "read",
                Method::PUT => "write",
                Method::DELETE => "delete",
                _ => return Err(method_not_allowed(method)),
            };
            auth::authorize(
                cfg,
                who,
                &format!("{}/{verb}", id.kind().arm_type()),
                &id.to_string(),
            )?;
            match *method {
                Method::GET => get(app, &id),
                Method::PUT => put(app, &id, body),
                _ => delete(app, &id),
            }
        }
        Route::Collection {
            prefix,
            kind,
            scope,
        } => {
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            auth::authorize(cfg, who, &format!("{}/read", kind.arm_type()), &scope)?;
            let value: Vec<Value> = lock(&app.resources)
                .list(&prefix, kind)
                .into_iter()
                .map(Resource::to_json)
                .collect();
            Ok(Json(json!({ "value": value })).into_response())
        }
        Route::Action(id, action) => {
            if method != Method::POST {
                return Err(method_not_allowed(method));
            }
            auth::authorize(cfg, who, action.rbac(), &id.to_string())?;
            match action {
                Action::ListCredential => list_credential(app, cfg, &id, api_version),
                Action::UpdateState => update_state(app, cfg, &id, api_version, body),
            }
        }
        Route::Operation {
            subscription,
            id,
            kind,
        } => {
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            auth::authorize(
                cfg,
                who,
                "Microsoft.HybridNetwork/locations/operationResults/read",
                &format!("/subscriptions/{subscription}"),
            )?;
            poll(app, &id, kind, api_version)
        }
    }
}

fn method_not_allowed(method: &Method) -> ArmError {
    ArmError::new(
        405,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{method}'."),
    )
}

fn get(app: &App, id: &ResourceId) -> Result<Response, ArmError> {
    let res = lock(&app.resources)
        .get(id)
        .cloned()
        .ok_or_else(|| ArmError::not_found(id))?;
    Ok(Json(res.to_json()).into_response())
}

fn put(app: &App, id: &ResourceId, body: &[u8]) -> Result<Response, ArmError> {
    let body: PutBody = if body.iter().all(u8::is_ascii_whitespace) {
        PutBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: {e}"),
            )
        })?
    };
    let (outcome, res) = lock(&app.resources).put(id, body, false)?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated => StatusCode::OK,
    };
    tracing::info!(id = %res.id, created = (outcome == PutOutcome::Created), "resource written");
    Ok((status, Json(res.to_json())).into_response())
}

fn delete(app: &App, id: &ResourceId) -> Result<Response, ArmError> {
    let existed = lock(&app.resources).delete(id);
    if existed {
        let revoked = if id.manifest.is_some() {
            lock(&app.credentials).revoke(Some(id))
        } else {
            0
        };
        tracing::info!(id = %id, revoked_credentials = revoked, "resource deleted");
        Ok(StatusCode::OK.into_response())
    } else {
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// Repository of an artifact as listCredential names it for `api_version`.
pub fn repository(api_version: &str, manifest: &str, artifact: &str) -> String {
    if api_version >= MANIFEST_SCOPED_REPOSITORIES_FROM {
        format!("{}/{artifact}", manifest.to_ascii_lowercase())
    } else {
        artifact.to_string()
    }
}

fn manifest_and_store(app: &App, id: &ResourceId) -> Result<(Resource, Resource), ArmError> {
    let resources = lock(&app.resources);
    let manifest = resources
        .get(id)
        .cloned()
        .ok_or_else(|| ArmError::not_found(id))?;
    let store_id = id.store_id().ok_or_else(|| ArmError::not_found(id))?;
    let store = resources
        .get(&store_id)
        .cloned()
        .ok_or_else(|| ArmError::not_found(&store_id))?;
    Ok((manifest, store))
}

fn list_credential(
    app: &App,
    cfg: &RuntimeConfig,
    id: &ResourceId,
    api_version: &str,
) -> Result<Response, ArmError> {
    let (manifest, store) = manifest_and_store(app, id)?;
    let expires_at = SystemTime::now() + cfg.credential_ttl;
    let expiry = time_fmt::azure(expires_at);
    let artifacts = manifest.artifacts();
    let body = match store.store_type() {
        Some(StoreType::AzureStorageAccount) => {
            let account = storage_account_name(&store.id);
            let creds: Vec<Value> = artifacts
                .iter()
                .map(|a| {
                    let container = format!("{}-{}", a.artifact_name.replace('/', "-"), a.artifact_version);
                    let sig = Secret::random(24);
                    json!({
                        "containerName": container,
                        "containerSasUri": format!(
                            "https://{account}.blob.core.windows.net/{container}?sv=2021-08-06&se={}&sr=c&sp=racwl&sig={}",
                            url::form_urlencoded::byte_serialize(expiry.as_bytes()).collect::<String>(),
                            sig.expose()
                        ),
                    })
                })
                .collect();
            json!({
                "credentialType": "AzureStorageAccountToken",
                "containerCredentials": creds,
                "storageResourceId": format!(
                    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{account}",
                    store.id.subscription, store.id.resource_group
                ),
                "expiry": expiry,
            })
        }
        _ => {
            let manifest_name = manifest.id.name().to_string();
            let mut repositories: Vec<String> = Vec::new();
            for a in &artifacts {
                let repo = repository(api_version, &manifest_name, &a.artifact_name);
                if !repositories.contains(&repo) {
                    repositories.push(repo);
                }
            }
            let token = lock(&app.credentials).issue(Grant {
                manifest: manifest.id.clone(),
                username: manifest_name.clone(),
                repositories: repositories.clone(),
                expires_at,
            });
            json!({
                "credentialType": "AzureContainerRegistryScopedToken",
                "acrServerUrl": app.acr_server(),
                "username": manifest_name,
                "acrToken": token.expose(),
                "repositories": repositories,
                "expiry": expiry,
            })
        }
    };
    lock(&app.stats).list_credential(manifest.id.stats_key());
    tracing::info!(manifest = %manifest.id, api_version, expiry = %expiry, "listCredential");
    Ok(Json(body).into_response())
}

fn storage_account_name(store: &ResourceId) -> String {
    let mut name: String = store
        .name()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    name.truncate(20);
    format!("{name}sa")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateStateBody {
    artifact_manifest_state: String,
}

fn update_state(
    app: &App,
    cfg: &RuntimeConfig,
    id: &ResourceId,
    api_version: &str,
    body: &[u8],
) -> Result<Response, ArmError> {
    let req: UpdateStateBody = serde_json::from_slice(body).map_err(|e| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid: expected {{\"artifactManifestState\":\"Uploaded\"}} ({e})."),
        )
    })?;
    if !req.artifact_manifest_state.eq_ignore_ascii_case("Uploaded") {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            format!(
                "artifactManifestState can only be set to 'Uploaded', not '{}'.",
                req.artifact_manifest_state
            ),
        ));
    }
    let (manifest, _store) = manifest_and_store(app, id)?;
    *lock(&app.stats)
        .update_state
        .entry(manifest.id.stats_key())
        .or_default() += 1;
    let target = "Uploaded".to_string();
    if cfg.update_state_polls == 0 {
        lock(&app.resources).set_manifest_state(&manifest.id, &target);
        tracing::info!(manifest = %manifest.id, state = %target, "updateState completed");
        return Ok(Json(json!({ "artifactManifestState": target })).into_response());
    }
    let op = Operation {
        manifest: manifest.id.clone(),
        target_state: target,
        location: manifest.location.clone(),
        polls_left: cfg.update_state_polls,
        started: time_fmt::now(),
        ended: None,
        succeeded: false,
    };
    let op_id = lock(&app.operations).start(op.clone());
    tracing::info!(manifest = %manifest.id, operation = %op_id, "updateState accepted");
    Ok(accepted(
        &operation_url(app, &op, &op_id, PollKind::Results, api_version),
        Some(&operation_url(
            app,
            &op,
            &op_id,
            PollKind::Statuses,
            api_version,
        )),
    ))
}

fn operation_url(
    app: &App,
    op: &Operation,
    op_id: &str,
    kind: PollKind,
    api_version: &str,
) -> String {
    let segment = match kind {
        PollKind::Results => "operationResults",
        PollKind::Statuses => "operationStatuses",
    };
    format!(
        "{}/subscriptions/{}/providers/Microsoft.HybridNetwork/locations/{}/{segment}/{op_id}?api-version={api_version}",
        app.base_url, op.manifest.subscription, op.location
    )
}

fn accepted(location: &str, async_op: Option<&str>) -> Response {
    let mut resp = StatusCode::ACCEPTED.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Some(Ok(v)) = async_op.map(HeaderValue::from_str) {
        h.insert("azure-asyncoperation", v);
    }
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn poll(app: &App, op_id: &str, kind: PollKind, api_version: &str) -> Result<Response, ArmError> {
    let polled = lock(&app.operations).poll(op_id);
    let Some((mut op, completes)) = polled else {
        return Err(ArmError::new(
            404,
            "OperationNotFound",
            format!("The operation '{op_id}' was not found."),
        ));
    };
    if completes {
        let ok = lock(&app.resources).set_manifest_state(&op.manifest, &op.target_state);
        let ended = time_fmt::now();
        lock(&app.operations).finish(op_id, ok, ended.clone());
        op.ended = Some(ended);
        op.succeeded = ok;
        tracing::info!(manifest = %op.manifest, operation = %op_id, state = %op.target_state, succeeded = ok, "updateState completed");
    }
    let status_body = |status: &str| {
        let mut v = json!({
            "id": operation_url(app, &op, op_id, PollKind::Statuses, api_version),
            "name": op_id,
            "status": status,
            "startTime": op.started,
        });
        if let (Some(end), Some(obj)) = (&op.ended, v.as_object_mut()) {
            obj.insert("endTime".into(), json!(end));
        }
        v
    };
    Ok(match (kind, op.state()) {
        (PollKind::Results, PollState::InProgress) => accepted(
            &operation_url(app, &op, op_id, PollKind::Results, api_version),
            None,
        ),
        (PollKind::Results, PollState::Done(true)) => {
            Json(json!({ "artifactManifestState": op.target_state })).into_response()
        }
        (PollKind::Results, PollState::Done(false)) => {
            return Err(ArmError::not_found(&op.manifest));
        }
        (PollKind::Statuses, PollState::InProgress) => {
            let mut resp = Json(status_body("InProgress")).into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        (PollKind::Statuses, PollState::Done(true)) => {
            Json(status_body("Succeeded")).into_response()
        }
        (PollKind::Statuses, PollState::Done(false)) => {
            let mut v = status_body("Failed");
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    "error".into(),
                    json!({"code": "ResourceNotFound", "message": "The artifact manifest was deleted before the operation completed."}),
                );
            }
            Json(v).into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_naming_follows_the_api_version() {
        assert_eq!(repository("2023-09-01", "Contoso-Manifest", "cnf"), "cnf");
        assert_eq!(repository("2024-04-15", "m", "cnf"), "cnf");
        assert_eq!(
            repository("2025-03-30", "Contoso-Manifest", "cnf"),
            "contoso-manifest/cnf"
        );
    }
}
