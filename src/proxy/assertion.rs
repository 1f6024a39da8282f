//! The signed identity assertion (`[upstream.identity]`): a short-lived JWT, signed with the
//! gateway's own assertion key, that tells the backend who the caller is in a form it can verify
//! against the gateway's JWKS instead of trusting a header.
//!
//! The rule this module keeps: the assertion key is asymmetric (the backend holds only the public
//! half), and an assertion is reused for at most half its lifetime, so a backend never receives one
//! with less than `ttl / 2` left and the signing cost is paid about once per user per `ttl / 2`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use http::HeaderValue;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::Jwk;
use serde::Serialize;

use crate::auth::jwt::{JwtAlgorithm, now_secs};
use crate::auth::principal::UserId;
use crate::config::{AssertionMode, IdentityConfig};
use crate::store::Store;

/// Why an assertion could not be made for a request (the request then gets 503).
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("reading the user for the assertion: {0}")]
    Store(crate::store::StoreError),
    #[error("signing the assertion: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error("the signed assertion is not a valid header value")]
    NotAHeader,
}

/// Why the assertion key (`upstream.identity.private_key`) could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum AssertionKeyError {
    #[error("upstream.identity.private_key: {0}")]
    Generate(crate::auth::keys::KeyError),
    #[error("upstream.identity.private_key: cannot write {}: {source}. Fix: make its directory writable", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("upstream.identity.private_key: cannot read {}: {source} (create one with `authgate keys generate --algorithm {alg}`)", path.display())]
    Read {
        path: PathBuf,
        alg: JwtAlgorithm,
        source: std::io::Error,
    },
    #[error("upstream.identity.private_key: {} is not a {alg} PKCS#8 PEM key: {source}. Fix: write one with `authgate keys generate --algorithm {alg}`", path.display())]
    BadKey {
        path: PathBuf,
        alg: JwtAlgorithm,
        source: crate::auth::keys::PemKeyError,
    },
    #[error("upstream.identity.private_key: {0}")]
    Thumbprint(jsonwebtoken::errors::Error),
}

pub struct Asserter {
    pub mode: AssertionMode,
    key: EncodingKey,
    header: jsonwebtoken::Header,
    /// The public half, published in the JWKS.
    pub jwk: Jwk,
    ttl: u64,
    issuer: String,
    audience: Option<String>,
    /// By user id: (reuse until, header value).
    cache: Mutex<HashMap<String, (u64, HeaderValue)>>,
    /// Users kept at most; past this the cache starts over (`cache.upstream_credentials`).
    max_cached: usize,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    uuid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    /// The username again, under the name RAG Modulo's middleware reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    iat: u64,
    exp: u64,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

impl Asserter {
    /// Load (or, in development, generate) the assertion key.
    pub fn load(cfg: &IdentityConfig, max_cached: usize) -> Result<Asserter, AssertionKeyError> {
        if cfg.generate_if_missing && !cfg.private_key.exists() {
            let (pem, _) = crate::auth::keys::generate(cfg.algorithm).map_err(AssertionKeyError::Generate)?;
            crate::tls::write_private(&cfg.private_key, pem.as_bytes()).map_err(|source| AssertionKeyError::Write {
                path: cfg.private_key.clone(),
                source,
            })?;
            tracing::warn!(key = %cfg.private_key.display(), "generated an identity assertion key");
        }
        let pem = std::fs::read(&cfg.private_key).map_err(|source| AssertionKeyError::Read {
            path: cfg.private_key.clone(),
            alg: cfg.algorithm,
            source,
        })?;
        let (key, mut jwk) =
            crate::auth::keys::private_key(cfg.algorithm, &pem).map_err(|source| AssertionKeyError::BadKey {
                path: cfg.private_key.clone(),
                alg: cfg.algorithm,
                source,
            })?;
        // The kid is the key's thumbprint: stable across restarts, new when the key changes.
        let thumbprint = jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(AssertionKeyError::Thumbprint)?;
        let kid = format!("assertion-{}", thumbprint.get(..16).unwrap_or(&thumbprint));
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let mut header = jsonwebtoken::Header::new(cfg.algorithm.to_jsonwebtoken());
        header.kid = Some(kid);
        Ok(Asserter {
            mode: cfg.mode,
            key,
            header,
            jwk,
            ttl: cfg.ttl.as_secs().max(2),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            cache: Mutex::new(HashMap::new()),
            max_cached,
        })
    }

    /// The assertion for `user`, as a header value in the configured mode.
    pub async fn assertion(&self, store: &Store, user: &UserId) -> Result<HeaderValue, AssertionError> {
        let now = now_secs();
        if let Ok(cache) = self.cache.lock()
            && let Some((until, value)) = cache.get(user.as_str())
            && now < *until
        {
            return Ok(value.clone());
        }
        // Users minted elsewhere (a shared secret) have no account here: sub and uuid only.
        let account = store.user_by_id(user.as_str()).await.map_err(AssertionError::Store)?;
        let claims = Claims {
            sub: user.as_str(),
            uuid: user.as_str(),
            username: account.as_ref().map(|u| u.username.as_str()),
            name: account.as_ref().map(|u| u.username.as_str()),
            email: account.as_ref().map(|u| u.email.as_str()),
            iat: now,
            exp: now + self.ttl,
            iss: &self.issuer,
            aud: self.audience.as_deref(),
        };
        let jwt = jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(AssertionError::Sign)?;
        let text = match self.mode {
            AssertionMode::Header => jwt,
            AssertionMode::Bearer => format!("Bearer {jwt}"),
        };
        let value = HeaderValue::from_str(&text).map_err(|_| AssertionError::NotAHeader)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.max_cached {
                cache.clear();
            }
            cache.insert(user.as_str().to_owned(), (now + self.ttl / 2, value.clone()));
        }
        Ok(value)
    }
}
