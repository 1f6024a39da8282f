//! Single sign-on: the configured OpenID Connect providers (`[[oidc.providers]]`), their metadata
//! and keys, and the checks on what they send back. The browser flow itself (start, callback,
//! back-channel logout) is in `web::sso`; the account linking in `accounts::sso`.
//!
//! The rules this module keeps:
//! - a provider's metadata and keys come from its own discovery document and JWKS, fetched with
//!   bounded calls (`http`); a provider that is down at start-up is retried in the background and
//!   never stops the gateway or the other providers;
//! - an id_token, bearer token or logout token is accepted only with a valid signature by one of
//!   that provider's keys, in an asymmetric algorithm (never `none`, never an HMAC, so a public
//!   key can never be used as an HMAC secret), from its exact issuer, for this client;
//! - keys are fetched again on an unknown `kid` at most once a minute.

pub mod http;
mod provider;

use std::sync::Arc;

pub use provider::{Provider, Verified};

use crate::config::ProviderConfig;

/// Every configured provider, in the order of the config file.
pub struct Providers {
    list: Vec<Arc<Provider>>,
}

impl Providers {
    pub fn new(configs: &[ProviderConfig]) -> Providers {
        Providers {
            list: configs.iter().map(|c| Arc::new(Provider::new(c.clone()))).collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.config.id == id)
    }

    pub fn all(&self) -> &[Arc<Provider>] {
        &self.list
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The provider whose issuer is `iss` and that accepts bearer tokens.
    pub fn bearer_issuer(&self, iss: &str) -> Option<&Arc<Provider>> {
        self.list
            .iter()
            .find(|p| p.config.accept_bearer && p.config.issuer == iss)
    }

    /// Load every provider's metadata now, and keep retrying those that fail, every 30 s, in the
    /// background (a provider down at start-up joins when it comes up).
    pub fn spawn_loading(&self, metrics: Arc<crate::metrics::Metrics>, stop: tokio_util::sync::CancellationToken) {
        for p in &self.list {
            let (p, metrics, stop) = (p.clone(), metrics.clone(), stop.clone());
            metrics.oidc_provider_up(&p.config.id, false);
            tokio::spawn(async move {
                loop {
                    let up = p.load().await.is_ok();
                    metrics.oidc_provider_up(&p.config.id, up);
                    if up {
                        return;
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                    }
                }
            });
        }
    }

    /// Each provider's id and whether it is loaded, for `/readyz`.
    pub fn states(&self) -> Vec<(String, bool)> {
        self.list.iter().map(|p| (p.config.id.clone(), p.is_up())).collect()
    }
}
