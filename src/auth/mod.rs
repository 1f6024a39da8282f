//! Who is calling: find the credential a request carries and check it.
//!
//! The rule this module keeps: fail closed. A request with two credentials that disagree, a
//! malformed `Authorization`, or any verification error is unauthenticated; nothing here panics on
//! hostile input.

pub mod api_token;
pub mod jwt;
pub mod keys;
pub mod limiter;
pub mod password;
pub mod principal;
pub mod revocation;

use crate::metrics::TokenLookup;
use http::{HeaderMap, Request, header};

use crate::Gateway;
use crate::auth::principal::{AuthMethod, Principal};
use crate::error::{AuthFailure, GatewayError};

/// A credential as found on the request, not yet checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    None,
}

/// Read `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
///
/// More than one `Authorization` header, another scheme, or an empty token are errors.
pub fn bearer(headers: &HeaderMap) -> Result<Credential<'_>, AuthFailure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credential::None);
    };
    if values.next().is_some() {
        return Err(AuthFailure::Malformed);
    }
    // A HeaderValue never holds a control character but tab, so `to_str`'s byte-by-byte check
    // for visible ASCII is `is_ascii`, which goes a word at a time over a long JWT.
    let value = Some(value.as_bytes())
        .filter(|b| b.is_ascii())
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or(AuthFailure::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || memchr::memchr(b' ', token.as_bytes()).is_some() {
        return Err(AuthFailure::Malformed);
    }
    Ok(Credential::Bearer(token))
}

static X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");

/// The token a request carries: `Authorization: Bearer`, `X-API-Key` (API tokens only), or
/// `?token=` on a WebSocket handshake (browsers cannot set headers there). Exactly one of them:
/// two credentials at once, in any combination, are refused rather than one of them picked.
/// Any other request's query is never read.
pub fn request_token<B>(req: &Request<B>) -> Result<&str, AuthFailure> {
    let mut keys = req.headers().get_all(&X_API_KEY).iter();
    let api_key = match (keys.next(), keys.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.to_str().map_err(|_| AuthFailure::Malformed)?.trim()),
        (Some(_), Some(_)) => return Err(AuthFailure::Malformed),
    };
    // Most requests have no query: then no header is looked up for the handshake test.
    let query = match req.uri().query() {
        Some(q) if crate::upgrade::is_websocket(req) => crate::upgrade::query_token(Some(q))?,
        _ => None,
    };
    match (bearer(req.headers())?, api_key, query) {
        (Credential::Bearer(_), Some(_), _) | (Credential::Bearer(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            Err(AuthFailure::Malformed)
        }
        (Credential::Bearer(t), None, None) => Ok(t),
        (Credential::None, Some(k), None) if api_token::looks_like(k) => Ok(k),
        (Credential::None, Some(_), None) => Err(AuthFailure::Malformed),
        (Credential::None, None, Some(t)) if !t.is_empty() => Ok(t),
        (Credential::None, None, _) => Err(AuthFailure::Missing),
    }
}

/// Who sent this request: its credential verified and checked against revocations.
pub async fn authenticate<B>(gw: &Gateway, req: &Request<B>) -> Result<Principal, GatewayError> {
    let token = request_token(req).map_err(GatewayError::Unauthenticated)?;
    if token.starts_with(api_token::PREFIX) {
        return authenticate_api_token(gw, token).await;
    }
    let now = jwt::now_secs();
    let verified = match gw.verified.get(token, now) {
        Some(v) => v,
        None => {
            let v = gw
                .verifier
                .verify_at(token, now)
                .map_err(GatewayError::Unauthenticated)?;
            gw.verified.insert(token, &v);
            v
        }
    };
    gw.revocations
        .check(verified.user_id.as_str(), &verified)
        .map_err(GatewayError::Unauthenticated)?;
    Ok(Principal {
        user_id: verified.user_id,
        method: AuthMethod::Jwt,
        jti: verified.jti,
        iat: verified.iat,
        exp: Some(verified.exp),
    })
}

/// Access tokens whose signature and claims have been checked, so a client's next request with the
/// same token skips the HMAC and JSON work. A hit re-checks expiry; revocation is checked on every
/// request after this (it is not cached), so a logout still takes effect at once. Only verified
/// tokens enter, so a flood of forgeries cannot fill it; when full it starts over.
pub struct VerifiedCache {
    // Only verified tokens are inserted, so an attacker cannot choose the keys; the seed is random
    // per process all the same.
    entries: std::sync::Mutex<foldhash::HashMap<Box<str>, jwt::VerifiedToken>>,
    max_entries: usize,
    leeway: u64,
}

impl VerifiedCache {
    pub fn new(max_entries: usize, leeway: std::time::Duration) -> Self {
        VerifiedCache {
            entries: std::sync::Mutex::new(foldhash::HashMap::default()),
            max_entries,
            leeway: leeway.as_secs(),
        }
    }

    pub fn get(&self, token: &str, now: u64) -> Option<jwt::VerifiedToken> {
        let mut entries = self.entries.lock().ok()?;
        let hit = entries.get(token)?;
        if now >= hit.exp.saturating_add(self.leeway) {
            entries.remove(token);
            return None;
        }
        Some(hit.clone())
    }

    pub fn insert(&self, token: &str, verified: &jwt::VerifiedToken) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.max_entries {
                entries.clear();
            }
            entries.insert(token.into(), verified.clone());
        }
    }
}

/// An API token: the in-process cache, then Redis, then the store (fail closed with 503 when the
/// store is down too).
async fn authenticate_api_token(gw: &Gateway, token: &str) -> Result<Principal, GatewayError> {
    if !api_token::looks_like(token) {
        return Err(GatewayError::Unauthenticated(AuthFailure::Malformed));
    }
    let hash = api_token::hash(token);
    let owner = match gw.api_tokens.get(&hash) {
        Some(owner) => {
            gw.metrics.token_lookup(TokenLookup::Memory);
            owner
        }
        // Boxed: the Redis and store futures are large, and most requests never take this path.
        None => Box::pin(lookup_api_token(gw, hash)).await?,
    };
    if owner.expires_at.is_some_and(|e| jwt::now_secs() >= e) {
        return Err(GatewayError::Unauthenticated(AuthFailure::Expired));
    }
    // Disabled users' tokens are refused; session epochs do not apply to API tokens.
    gw.revocations
        .check_user(owner.user_id.as_str(), i64::MAX, None)
        .map_err(GatewayError::Unauthenticated)?;
    if gw.api_tokens.touch_due(&owner.token_id) {
        // Dropped when the queue is full: last_used_at is best effort and never slows a request.
        let _ = gw.touch_queue.try_send(owner.token_id.clone());
    }
    Ok(Principal {
        user_id: owner.user_id,
        method: AuthMethod::ApiToken,
        jti: None,
        iat: None,
        exp: owner.expires_at,
    })
}

/// An API token missing from the in-process cache: Redis, then the store; remembered in process.
async fn lookup_api_token(gw: &Gateway, hash: String) -> Result<api_token::TokenOwner, GatewayError> {
    let cached = match &gw.redis {
        Some(redis) => redis.get_token(&hash).await.flatten(),
        None => None,
    };
    let (token, from_store) = match cached {
        Some(t) => {
            gw.metrics.token_lookup(TokenLookup::Redis);
            (t, false)
        }
        None => {
            let row = gw.store.api_token_by_hash(&hash).await.map_err(|e| {
                tracing::warn!(error = %e, "API token lookup failed: store unavailable");
                GatewayError::StoreUnavailable
            })?;
            let Some(row) = row else {
                gw.metrics.token_lookup(TokenLookup::Unknown);
                return Err(GatewayError::Unauthenticated(AuthFailure::UnknownToken));
            };
            gw.metrics.token_lookup(TokenLookup::Store);
            let token = crate::store::cache::CachedToken {
                id: row.id,
                user_id: row.user_id,
                expires_at: row.expires_at.map(|e| u64::try_from(e).unwrap_or(0)),
            };
            (token, true)
        }
    };
    if from_store && let Some(redis) = &gw.redis {
        redis.put_token(&hash, &token).await;
    }
    let owner = api_token::TokenOwner {
        user_id: principal::UserId::parse(&token.user_id)
            .ok_or(GatewayError::Unauthenticated(AuthFailure::UnknownToken))?,
        token_id: token.id,
        expires_at: token.expires_at,
    };
    gw.api_tokens.insert(hash, owner.clone());
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc"] {
            assert_eq!(bearer(&with(&[v])), Ok(Credential::Bearer("abc")), "{v}");
        }
    }

    #[test]
    fn other_schemes_and_duplicates_are_refused() {
        for v in [
            &["Basic YWJj"][..],
            &["Bearer"],
            &["Bearer "],
            &["Bearer a b"],
            &["Bearer a", "Bearer b"],
        ] {
            assert!(bearer(&with(v)).is_err(), "{v:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), Ok(Credential::None));
    }

    #[test]
    fn a_token_with_bytes_outside_visible_ascii_is_malformed() {
        for v in [&b"Bearer t\xc3\xa9st"[..], b"Bearer \xffabc", b"Bearer a\tb"] {
            let mut h = HeaderMap::new();
            h.append(header::AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
            let tab = v.contains(&b'\t');
            // A tab is a HeaderValue's only allowed control character: `to_str` accepts it, and so
            // does this; the token "a\tb" then fails verification like any other wrong token.
            assert_eq!(bearer(&h).is_err(), !tab, "{v:?}");
        }
    }

    #[test]
    fn the_verified_cache_rechecks_expiry_and_stays_bounded() {
        let cache = VerifiedCache::new(2, std::time::Duration::from_secs(30));
        let v = |exp| jwt::VerifiedToken {
            user_id: principal::UserId::parse("u").unwrap(),
            jti: None,
            iat: None,
            exp,
            epoch: 0,
        };
        cache.insert("a", &v(1000));
        assert!(cache.get("a", 1029).is_some());
        assert!(cache.get("a", 1030).is_none(), "expired (with leeway) on a hit");
        assert!(cache.get("a", 0).is_none(), "and evicted");
        assert!(cache.get("b", 0).is_none());
        for t in ["x", "y", "z"] {
            cache.insert(t, &v(5000));
        }
        assert!(cache.entries.lock().unwrap().len() <= 2);
    }
}
