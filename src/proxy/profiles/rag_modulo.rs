//! The `rag_modulo` profile: `Authorization: Bearer <jwt>` with the claims RAG Modulo's
//! `AuthenticationMiddleware` reads (`sub`, `uuid`, `email`, `name`, `role`), signed HS256 with
//! RAG Modulo's own `JWT_SECRET_KEY`.
//!
//! The rule this module keeps: the role is authgate's, mapped to RAG Modulo's two (`admin` stays
//! `admin`, anything else is `user`), and a minted token is reused for at most [`REUSE_MAX_SECS`]
//! (and half its lifetime), so a role change or a new email reaches RAG Modulo within seconds while
//! the store is read about once per user per window, not per request (one caller re-mints shortly
//! before the window ends; see `profiles::cache`).
//!
//! RAG Modulo decodes the token without checking its signature (`verify_signature: False`), so
//! the signature protects nothing there; it is made anyway, so that a RAG Modulo that starts
//! verifying needs no change here. What protects RAG Modulo is that only the gateway can reach it.

use http::HeaderValue;
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

use super::cache::UserCache;
use crate::auth::principal::UserId;
use crate::clock::now_secs;
use crate::config::RagModuloConfig;
use crate::policy::Role;
use crate::store::Store;

/// The longest a minted token is reused, in seconds: the delay before a role change is seen.
pub const REUSE_MAX_SECS: u64 = 10;

/// Why the token could not be made (the request then gets 503).
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("reading the user: {0}")]
    Store(crate::store::StoreError),
    #[error("signing: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error("the signed token is not a valid header value")]
    NotAHeader,
}

pub struct RagModulo {
    key: EncodingKey,
    ttl: u64,
    /// By user id: `Bearer <jwt>`, reused for min(ttl / 2, [`REUSE_MAX_SECS`]), at most
    /// `cache.upstream_credentials` users.
    cache: UserCache<HeaderValue>,
}

/// What RAG Modulo's middleware builds its user from (`core/authentication_middleware.py`:
/// `id` ← `sub`, `email`, `name`, `uuid`, `role`), and the lifetime.
#[derive(Serialize)]
pub struct Claims<'a> {
    pub sub: &'a str,
    pub uuid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub role: &'a str,
    pub iat: u64,
    pub exp: u64,
}

/// RAG Modulo's role for an authgate role as stored: `admin` for `admin`, `user` for anything else.
pub fn rag_modulo_role(stored: Option<&str>) -> &'static str {
    match stored.and_then(Role::parse) {
        Some(Role::Admin) => "admin",
        Some(Role::User) | None => "user",
    }
}

impl RagModulo {
    pub fn new(cfg: &RagModuloConfig, max_cached: usize) -> RagModulo {
        RagModulo {
            key: EncodingKey::from_secret(cfg.jwt_secret.expose().as_bytes()),
            ttl: cfg.ttl.as_secs(),
            cache: UserCache::new((cfg.ttl.as_secs() / 2).min(REUSE_MAX_SECS), max_cached),
        }
    }

    /// The `Bearer <jwt>` minted for `user` a moment ago, if it may still be reused; `None`: the
    /// caller mints one ([`RagModulo::mint`]).
    pub fn cached(&self, user: &UserId) -> Option<HeaderValue> {
        self.cache.get(user.as_str(), now_secs())
    }

    /// A fresh `Bearer <jwt>` for `user`, from the store, kept for the next requests.
    pub async fn mint(&self, store: &Store, user: &UserId) -> Result<HeaderValue, MintError> {
        let now = now_secs();
        // Users minted elsewhere (a shared-secret JWT) have no account here: sub, uuid and `user`.
        let account = store.user_by_id(user.as_str()).await.map_err(MintError::Store)?;
        let access = match &account {
            Some(_) => store.user_access(user.as_str()).await.map_err(MintError::Store)?,
            None => None,
        };
        let claims = Claims {
            sub: user.as_str(),
            uuid: user.as_str(),
            email: account.as_ref().map(|u| u.email.as_str()),
            name: account.as_ref().map(|u| u.username.as_str()),
            role: rag_modulo_role(access.as_ref().map(|a| a.role.as_str())),
            iat: now,
            exp: now + self.ttl,
        };
        let jwt = jsonwebtoken::encode(&Header::default(), &claims, &self.key).map_err(MintError::Sign)?;
        let value = HeaderValue::from_str(&format!("Bearer {jwt}")).map_err(|_| MintError::NotAHeader)?;
        self.cache.put(user.as_str(), now, value.clone());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admin_is_admin() {
        assert_eq!(rag_modulo_role(Some("admin")), "admin");
        for other in [Some("user"), Some("root"), Some("Admin"), Some(""), None] {
            assert_eq!(rag_modulo_role(other), "user", "{other:?}");
        }
    }

    #[test]
    fn the_token_is_hs256_with_the_claims_rag_modulo_reads() {
        let cfg = RagModuloConfig {
            jwt_secret: crate::config::Secret::new("rag-modulo-secret-rag-modulo-secret-0123"),
            ttl: std::time::Duration::from_secs(60),
        };
        let rm = RagModulo::new(&cfg, 10);
        let claims = Claims {
            sub: "u1",
            uuid: "u1",
            email: Some("a@example.com"),
            name: Some("ann"),
            role: "admin",
            iat: 1,
            exp: 61,
        };
        let jwt = jsonwebtoken::encode(&Header::default(), &claims, &rm.key).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_exp = false;
        let key = jsonwebtoken::DecodingKey::from_secret(cfg.jwt_secret.expose().as_bytes());
        let got = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(
            got,
            serde_json::json!({"sub": "u1", "uuid": "u1", "email": "a@example.com", "name": "ann", "role": "admin", "iat": 1, "exp": 61})
        );
    }
}
