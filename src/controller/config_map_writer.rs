//! Writes the file of a `destination.configMap` transfer into its ConfigMap: created by
//! the controller (so one that appeared meanwhile is refused by the API server, never
//! taken over), then updated by server-side apply with the `resourceVersion` it was
//! found at as a precondition. The ConfigMap is controlled by the transfer (owner
//! reference, no `blockOwnerDeletion`: the controller needs no permission on the
//! transfer's finalizers) and garbage-collected with it; its
//! [`CONFIG_MAP_DIGEST_ANNOTATION`] records the artifact digest it holds. RBAC: `get`,
//! `create` and `patch` on ConfigMaps, nothing else.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource as _, ResourceExt as _};

use super::context::FIELD_MANAGER;
use super::error::Error;
use crate::api::{ArtifactTransfer, CONFIG_MAP_DIGEST_ANNOTATION};
use crate::engine::pull_one::OneFile;
use crate::transfer::{ConfigMapSide, Reason, TransferError};

/// Why the ConfigMap was not written.
#[derive(Debug)]
pub enum WriteError {
    /// Recorded in the status (a conflict, or a refusal only a change can cure).
    Transfer(TransferError),
    /// The Kubernetes API failed; retried by the error policy.
    Api(Error),
}

/// The ConfigMap holding `file` under `side.key`, as the controller writes it.
pub fn desired(
    t: &ArtifactTransfer,
    side: &ConfigMapSide,
    digest: &str,
    file: &OneFile,
) -> ConfigMap {
    let (data, binary_data) = match std::str::from_utf8(&file.data) {
        Ok(text) => (
            Some(BTreeMap::from([(side.key.clone(), text.to_string())])),
            None,
        ),
        Err(_) => (
            None,
            Some(BTreeMap::from([(
                side.key.clone(),
                ByteString(file.data.clone()),
            )])),
        ),
    };
    let owner = t.controller_owner_ref(&()).map(|mut o| {
        o.block_owner_deletion = None;
        o
    });
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(side.name.clone()),
            namespace: t.namespace(),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                FIELD_MANAGER.to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                CONFIG_MAP_DIGEST_ANNOTATION.to_string(),
                digest.to_string(),
            )])),
            owner_references: owner.map(|o| vec![o]),
            resource_version: side.found_version.clone(),
            ..Default::default()
        },
        data,
        binary_data,
        ..Default::default()
    }
}

/// Creates or updates the ConfigMap `side` names with `file` (from the artifact `digest`).
pub async fn write(
    client: &Client,
    t: &ArtifactTransfer,
    side: &ConfigMapSide,
    digest: &str,
    file: &OneFile,
) -> Result<(), WriteError> {
    let namespace = t.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let cm = desired(t, side, digest, file);
    let result = match side.found_version {
        None => api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..Default::default()
                },
                &cm,
            )
            .await
            .map(drop),
        Some(_) => {
            let mut apply = serde_json::to_value(&cm).map_err(|e| {
                WriteError::Transfer(TransferError::permanent(
                    Reason::TransferFailed,
                    format!("cannot encode ConfigMap {namespace}/{}: {e}", side.name),
                ))
            })?;
            apply["apiVersion"] = "v1".into();
            apply["kind"] = "ConfigMap".into();
            api.patch(
                &side.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&apply),
            )
            .await
            .map(drop)
        }
    };
    match result {
        Ok(()) => Ok(()),
        // Created, changed or deleted since it was read: the next attempt looks again.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            Err(WriteError::Transfer(TransferError {
                reason: Reason::TransientFailure,
                message: format!(
                    "ConfigMap {namespace}/{} changed while it was being written ({}); looking at it again",
                    side.name, e.reason
                ),
                retry_after: None,
            }))
        }
        Err(kube::Error::Api(e)) if e.code == 403 => {
            Err(WriteError::Transfer(TransferError::permanent(
                Reason::Forbidden,
                format!(
                    "the controller may not write ConfigMap {namespace}/{} ({}); install the chart's RBAC, which grants get, create and patch on ConfigMaps",
                    side.name, e.message
                ),
            )))
        }
        Err(kube::Error::Api(e)) if e.code == 422 => {
            Err(WriteError::Transfer(TransferError::permanent(
                Reason::TransferFailed,
                format!(
                    "the API server refused ConfigMap {namespace}/{}: {}",
                    side.name, e.message
                ),
            )))
        }
        Err(e) => Err(WriteError::Api(e.into())),
    }
}
