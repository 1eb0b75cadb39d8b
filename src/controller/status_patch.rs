//! The one way the controller writes a status: server-side apply of the whole `status` by
//! the controller's field manager (forced: the controller owns it), for transfers and
//! stores alike. An object deleted meanwhile is not an error (there is no finalizer by
//! design: nothing is left to report on).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Error;
use crate::api::API_VERSION;

/// Applies `status` to the object `name` of `kind` through `api`, as `manager`. Returns
/// whether the object still exists.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    status: &S,
    manager: &str,
) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "status": status,
    });
    match api
        .patch_status(
            name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
