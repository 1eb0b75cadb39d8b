//! The ARM operations: resource CRUD, collection lists, listCredential, updateState and
//! operation polls.

use super::auth::{self, Principal};
use super::error::ArmError;
use super::route::{Action, Route};
use crate::app::{App, lock};
use crate::config::RuntimeConfig;
use crate::credentials::Grant;
use crate::operations::{self, Effect, Operation, PollState, PollStyle};
use crate::resources::{PutBody, PutOutcome, Resource, ResourceId, StoreType, Writer};
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
                Method::PUT => put(app, who, &id, api_version, body),
                _ => delete(app, cfg, &id),
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
                Action::UpdateState => update_state(app, cfg, &id, body),
            }
        }
        Route::Subscriptions | Route::Subscription { .. } => {
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            match route {
                Route::Subscription { id } => super::subscriptions::get(app, &id),
                _ => Ok(super::subscriptions::list(app)),
            }
        }
        Route::Operation { id } => {
            if method != Method::GET {
                return Err(method_not_allowed(method));
            }
            let subscription = lock(&app.operations)
                .get(&id)
                .map(|op| op.subscription.clone())
                .ok_or_else(|| operation_not_found(&id))?;
            auth::authorize(
                cfg,
                who,
                "Microsoft.HybridNetwork/locations/operationStatuses/read",
                &format!("/subscriptions/{subscription}"),
            )?;
            poll(app, &id)
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

/// PUT: 200 with the resource when it existed; 201 with the resource and an
/// `Azure-AsyncOperation` header when it is new (the spec's long-running create, its
/// final state via that operation).
fn put(
    app: &App,
    who: &Principal,
    id: &ResourceId,
    api_version: &str,
    body: &[u8],
) -> Result<Response, ArmError> {
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
    let writer = Writer {
        api_version,
        principal: &who.client_id,
        seeded: false,
    };
    let (outcome, res) = lock(&app.resources).put(id, body, writer)?;
    tracing::info!(id = %res.id, created = (outcome == PutOutcome::Created), api_version, "resource written");
    if outcome == PutOutcome::Updated {
        return Ok((StatusCode::OK, Json(res.to_json())).into_response());
    }
    let url = start(
        app,
        &res.id,
        &res.location,
        Effect::Created,
        PollStyle::AsyncOperation,
        0,
    );
    let mut resp = (StatusCode::CREATED, Json(res.to_json())).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert("azure-asyncoperation", v);
    }
    Ok(resp)
}

/// DELETE: 202 with a `Location` to poll when the resource existed (the spec's
/// long-running delete, final state via location), 204 when it did not. Deleting a
/// manifest revokes its credentials, and one created with api-version 2025-03-30 or later
/// also untags its artifacts in the registry.
fn delete(app: &App, cfg: &RuntimeConfig, id: &ResourceId) -> Result<Response, ArmError> {
    let existing = lock(&app.resources).get(id).cloned();
    let Some(existing) = existing else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let untag: Vec<(String, String)> = if existing.untags_on_delete() {
        existing
            .artifacts()
            .iter()
            .map(|a| {
                (
                    existing.repository(&a.artifact_name),
                    a.artifact_version.clone(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    lock(&app.resources).delete(id);
    let revoked = if id.manifest.is_some() {
        lock(&app.credentials).revoke(Some(id))
    } else {
        0
    };
    let untagged = untag
        .iter()
        .filter(|(repo, tag)| app.untag(repo, tag))
        .count();
    tracing::info!(id = %id, revoked_credentials = revoked, untagged, "resource deleted");
    let url = start(
        app,
        &existing.id,
        &existing.location,
        Effect::Deleted,
        PollStyle::Location,
        cfg.update_state_polls,
    );
    Ok(accepted(&url))
}

/// Registers a long-running operation on `resource` and returns its URL.
fn start(
    app: &App,
    resource: &ResourceId,
    location: &str,
    effect: Effect,
    style: PollStyle,
    polls: u32,
) -> String {
    let op = Operation {
        effect,
        style,
        subscription: resource.subscription.clone(),
        location: location.to_ascii_uppercase(),
        polls_left: polls,
        started: time_fmt::now(),
        ended: None,
        succeeded: false,
    };
    let location = op.location.clone();
    let id = lock(&app.operations).start(op);
    operations::url(&app.base_url, &location, &id)
}

fn operation_not_found(id: &str) -> ArmError {
    ArmError::new(
        404,
        "OperationNotFound",
        format!("The operation '{id}' was not found."),
    )
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

/// `listCredential`: a scoped token for the manifest's repositories (named by the
/// api-version the manifest was created with), or SAS URIs for a storage account store.
/// With the `credentialRepositories: blank` knob the answer's `repositories` is `[""]`,
/// as in every official example; the token's scope is the same.
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
            let account = store
                .properties
                .get("storageResourceId")
                .and_then(Value::as_str)
                .and_then(|id| id.rsplit('/').next())
                .unwrap_or("storage")
                .to_string();
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
                "storageAccountId": store.properties.get("storageResourceId").cloned().unwrap_or_default(),
                "expiry": expiry,
            })
        }
        _ => {
            let manifest_name = manifest.id.name().to_string();
            let mut repositories: Vec<String> = Vec::new();
            for a in &artifacts {
                let repo = manifest.repository(&a.artifact_name);
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
            let shown = if cfg.credential_repositories_blank {
                vec![String::new()]
            } else {
                repositories
            };
            json!({
                "credentialType": "AzureContainerRegistryScopedToken",
                "acrServerUrl": app.acr_server(),
                "username": manifest_name,
                "acrToken": token.expose(),
                "repositories": shown,
                "expiry": expiry,
            })
        }
    };
    lock(&app.stats).list_credential(manifest.id.stats_key());
    tracing::info!(manifest = %manifest.id, api_version, expiry = %expiry, "listCredential");
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateStateBody {
    artifact_manifest_state: String,
}

/// `updateState` (only to `Uploaded`): 200 at once with `updateStatePolls: 0`, else 202
/// with only a `Location` (the official example's answer), polled until done.
fn update_state(
    app: &App,
    cfg: &RuntimeConfig,
    id: &ResourceId,
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
    let url = start(
        app,
        &manifest.id,
        &manifest.location,
        Effect::UpdateState {
            manifest: manifest.id.clone(),
            target_state: target,
        },
        PollStyle::Location,
        cfg.update_state_polls,
    );
    tracing::info!(manifest = %manifest.id, "updateState accepted");
    Ok(accepted(&url))
}

/// 202 with only a `Location`, as the official examples answer updateState and DELETE.
fn accepted(location: &str) -> Response {
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// One poll of operation `op_id`, answered as the header that named it asks: a
/// `Location` 202 without a new `Location` while running, then the final answer (200
/// `{"artifactManifestState": ...}` for updateState, 204 for a DELETE, 200 for a PUT); an
/// `Azure-AsyncOperation` 200 with the status.
fn poll(app: &App, op_id: &str) -> Result<Response, ArmError> {
    let polled = lock(&app.operations).poll(op_id);
    let Some((mut op, completes)) = polled else {
        return Err(operation_not_found(op_id));
    };
    if completes {
        let ok = match &op.effect {
            Effect::UpdateState {
                manifest,
                target_state,
            } => lock(&app.resources).set_manifest_state(manifest, target_state),
            Effect::Created | Effect::Deleted => true,
        };
        let ended = time_fmt::now();
        lock(&app.operations).finish(op_id, ok, ended.clone());
        op.ended = Some(ended);
        op.succeeded = ok;
        tracing::info!(operation = %op_id, effect = ?op.effect, succeeded = ok, "operation completed");
    }
    let state = op.state();
    if op.style == PollStyle::AsyncOperation {
        let status = match state {
            PollState::InProgress => "InProgress",
            PollState::Done(true) => "Succeeded",
            PollState::Done(false) => "Failed",
        };
        let mut v = json!({
            "id": operations::url(&app.base_url, &op.location, op_id),
            "name": op_id,
            "status": status,
            "startTime": op.started,
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(end) = &op.ended {
                obj.insert("endTime".into(), json!(end));
            }
            if state == PollState::Done(false) {
                obj.insert(
                    "error".into(),
                    json!({"code": "ResourceNotFound", "message": "The resource was deleted before the operation completed."}),
                );
            }
        }
        return Ok(Json(v).into_response());
    }
    Ok(match (state, &op.effect) {
        (PollState::InProgress, _) => StatusCode::ACCEPTED.into_response(),
        (PollState::Done(true), Effect::UpdateState { target_state, .. }) => {
            Json(json!({ "artifactManifestState": target_state })).into_response()
        }
        (PollState::Done(true), Effect::Deleted) => StatusCode::NO_CONTENT.into_response(),
        (PollState::Done(true), Effect::Created) => StatusCode::OK.into_response(),
        (PollState::Done(false), Effect::UpdateState { manifest, .. }) => {
            return Err(ArmError::not_found(manifest));
        }
        (PollState::Done(false), _) => {
            return Err(ArmError::new(
                500,
                "OperationFailed",
                format!("The operation '{op_id}' failed."),
            ));
        }
    })
}
