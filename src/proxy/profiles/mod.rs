//! `upstream.profile`: what a backend is given as the caller's identity.
//!
//! The rule this module keeps: a profile only says what to add for an authenticated caller and
//! which client header it never lets through; the removal itself stays in `proxy::identity`, which
//! calls this after every client identity and credential is gone.

pub mod cache;
pub mod rag_modulo;
pub mod ragflow;

use http::{HeaderName, HeaderValue};

use crate::accounts::backend_keys::BackendKeyError;
use crate::auth::principal::Principal;
use crate::config::ProfileConfig;
use crate::error::GatewayError;
use crate::store::Store;

/// The configured profile, built once at start-up.
pub enum Profile {
    /// `X-User-Id` (set by the header pass) and the `[upstream.identity]` assertion, if any.
    Header,
    /// RAG Modulo's bearer JWT.
    RagModulo(rag_modulo::RagModulo),
    /// The caller's own RAGFlow API key, from the store.
    Ragflow(ragflow::Ragflow),
}

impl Profile {
    /// `max_cached`: users whose upstream credential is kept at most (`cache.upstream_credentials`).
    pub fn new(cfg: &ProfileConfig, max_cached: usize) -> Profile {
        match cfg {
            ProfileConfig::Header => Profile::Header,
            ProfileConfig::RagModulo(c) => Profile::RagModulo(rag_modulo::RagModulo::new(c, max_cached)),
            ProfileConfig::Ragflow(c) => Profile::Ragflow(ragflow::Ragflow::new(c, max_cached)),
        }
    }

    /// A stable label for the start-up banner.
    pub fn as_str(&self) -> &'static str {
        match self {
            Profile::Header => "header",
            Profile::RagModulo(_) => "rag_modulo",
            Profile::Ragflow(_) => "ragflow",
        }
    }

    /// Whether the client's `Authorization` is always removed, credential or not: a backend that
    /// reads a bearer itself must never see the client's own.
    pub fn owns_authorization(&self) -> bool {
        match self {
            Profile::Header => false,
            Profile::RagModulo(_) | Profile::Ragflow(_) => true,
        }
    }

    /// The header this profile gives the backend for `p`, if any. The `ragflow` profile refuses
    /// (403) a caller with no key, so that nothing is forwarded for them. A value still in the
    /// profile's cache is taken without an allocation; only a miss builds (and boxes) the future
    /// that reads the store.
    pub async fn identity(
        &self,
        store: &Store,
        p: &Principal,
    ) -> Result<Option<(HeaderName, HeaderValue)>, GatewayError> {
        match self {
            Profile::Header => Ok(None),
            Profile::RagModulo(rm) => {
                let value = match rm.cached(&p.user_id) {
                    Some(value) => value,
                    None => Box::pin(rm.mint(store, &p.user_id)).await.map_err(|e| {
                        tracing::error!(error = %e, "cannot mint RAG Modulo's bearer JWT");
                        GatewayError::Unavailable("identity assertion unavailable")
                    })?,
                };
                Ok(Some((http::header::AUTHORIZATION, value)))
            }
            Profile::Ragflow(rf) => {
                let key = match rf.cached(&p.user_id) {
                    Some(key) => Ok(key),
                    None => Box::pin(rf.fetch(store, &p.user_id)).await,
                };
                match key {
                    Ok(Some(value)) => Ok(Some((http::header::AUTHORIZATION, value))),
                    Ok(None) => Err(GatewayError::Forbidden("No RAGFlow API key is set for this user")),
                    Err(BackendKeyError::Store(e)) => {
                        tracing::error!(error = %e, "cannot read the caller's RAGFlow API key");
                        Err(GatewayError::StoreUnavailable)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, user_id = %p.user_id.as_str(), "cannot open the caller's RAGFlow API key");
                        Err(GatewayError::Unavailable("backend credential unavailable"))
                    }
                }
            }
        }
    }
}
