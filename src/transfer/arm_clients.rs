//! [`ArmClients`]: one ARM client per store configuration and identity, made on demand
//! and shared by every transfer of that store, and the store types ARM reported (a
//! store's type never changes). Both bounded ([`crate::limits::MAX_CACHED_ARM_CLIENTS`],
//! [`crate::limits::MAX_CACHED_MANIFESTS`]).

use std::sync::Arc;

use super::error::TransferError;
use super::request::StoreConfig;
use crate::aosm::{AosmError, ArmClient, ServiceAccountTokens};
use crate::engine::retry::RetryPolicy;
use crate::slots::{Memo, SlotMap};

/// The store type the transfer core supports.
pub const SUPPORTED_STORE_TYPE: &str = "AzureContainerRegistry";

/// Makes and keeps ARM clients.
pub struct ArmClients {
    http: reqwest::Client,
    retry: RetryPolicy,
    /// Tokens of stores' own ServiceAccounts (`identity.serviceAccountName`).
    service_account_tokens: Option<Arc<dyn ServiceAccountTokens>>,
    clients: Memo<StoreConfig, ArmClient>,
    store_types: SlotMap<StoreConfig, String>,
}

impl std::fmt::Debug for ArmClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClients")
            .field("clients", &self.clients)
            .field("store_types", &self.store_types)
            .finish_non_exhaustive()
    }
}

impl ArmClients {
    /// Clients that send through `http` with `retry`.
    pub fn new(http: reqwest::Client, retry: RetryPolicy) -> Self {
        Self {
            http,
            retry,
            service_account_tokens: None,
            clients: Memo::new(crate::limits::MAX_CACHED_ARM_CLIENTS),
            store_types: SlotMap::new(crate::limits::MAX_CACHED_MANIFESTS),
        }
    }

    /// Serves stores whose identity is a ServiceAccount of their own with `tokens`.
    pub fn with_service_account_tokens(mut self, tokens: Arc<dyn ServiceAccountTokens>) -> Self {
        self.service_account_tokens = Some(tokens);
        self
    }

    /// The ARM client for `store` (one per store configuration and identity).
    pub fn client(&self, store: &StoreConfig) -> Result<Arc<ArmClient>, TransferError> {
        Ok(self.clients.get_or_try_insert(store, || {
            let endpoints = store.cloud.endpoints(
                store.arm_endpoint.as_deref(),
                store.authority_host.as_deref(),
            )?;
            ArmClient::new(
                self.http.clone(),
                &endpoints,
                &store.api_version,
                store.identity.clone(),
                self.retry.clone(),
                self.service_account_tokens.as_ref(),
            )
        })?)
    }

    /// Refuses a store not backed by a container registry (ARM is asked once per store
    /// and identity; the answer is kept).
    pub async fn check_store_type(&self, store: &StoreConfig) -> Result<(), TransferError> {
        let slot = self.store_types.slot(store);
        let mut known = slot.lock().await;
        let store_type = match known.as_ref() {
            Some(t) => t.clone(),
            None => {
                let t = self.client(store)?.store_type(&store.id).await?;
                *known = Some(t.clone());
                t
            }
        };
        drop(known);
        if store_type == SUPPORTED_STORE_TYPE {
            Ok(())
        } else {
            Err(AosmError::UnsupportedStoreType {
                store: store.id.path(),
                store_type,
            }
            .into())
        }
    }
}
