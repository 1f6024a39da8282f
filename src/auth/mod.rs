//! Who is calling: the [`Authenticator`] finds the one credential a request carries, verifies it,
//! checks it against revocations, and says what credential material to remove before forwarding.
//!
//! The rule this module keeps: fail closed. A request with two credentials that disagree, a
//! malformed `Authorization`, or any verification error is unauthenticated; nothing here panics on
//! hostile input. Nothing here knows about proxying or the API handlers: callers get a
//! [`Principal`] and a [`credential::Strip`], or a [`GatewayError`].

pub mod access;
pub mod api_token;
pub mod credential;
pub mod jwt;
pub mod keys;
pub mod limiter;
pub mod password;
pub mod principal;
pub mod revocation;
pub mod session;
mod sync;
mod verified;

use std::sync::Arc;
use std::time::Duration;

use http::Request;

use crate::auth::principal::{AuthMethod, Principal};
use crate::auth::revocation::{Revocations, UserGate};
use crate::error::{AuthFailure, GatewayError};
use crate::metrics::{Metrics, TokenLookup};
use crate::policy::Scopes;
use crate::store::Store;
use crate::store::cache::{Event, Redis};

pub use credential::Strip;
pub use sync::Synced;
pub use verified::VerifiedCache;

/// A verified caller, and what to remove from their request before it is forwarded.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    pub strip: Strip,
}

/// What the authenticator is built from.
pub struct AuthenticatorParts {
    pub verifier: jwt::Verifier,
    pub store: Store,
    pub redis: Option<Arc<Redis>>,
    pub metrics: Arc<Metrics>,
    /// `jwt.leeway`: revocations are kept until their token could no longer pass verification.
    pub leeway: Duration,
    /// How long a resolved API token is trusted from memory before it is looked up again.
    pub token_ttl: Duration,
    /// `jwt.expiration`: how long an epoch move can matter (with the leeway).
    pub token_lifetime: Duration,
    /// `session.idle_timeout`: a browser session unused this long has ended.
    pub session_idle: Duration,
    /// `https` or `http`: the gateway's own origin, for the cross-site check on cookie sessions.
    pub scheme: &'static str,
    /// Single sign-on providers whose tokens may be used as `Authorization: Bearer`.
    pub oidc: Arc<crate::oidc::Providers>,
    /// `[cache]`: how many entries each cache may hold.
    pub cache: crate::config::CacheConfig,
}

/// A use of an opaque credential whose `last_used_at` / `last_seen_at` is due, for
/// [`record_token_use`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    Token(String),
    Session(String),
}

/// How long the change log keeps a row: a replica that fell further behind reloads in full.
pub const CHANGE_LOG_KEEP: Duration = Duration::from_secs(3600);

/// Checks credentials. Built once at start-up; owns the verifiers, their caches and revocations.
pub struct Authenticator {
    verifier: jwt::Verifier,
    verified: VerifiedCache,
    revocations: Revocations,
    api_tokens: api_token::TokenCache,
    sessions: api_token::TokenCache<session::SessionOwner>,
    session_idle: i64,
    scheme: &'static str,
    oidc: Arc<crate::oidc::Providers>,
    /// Provider bearer tokens already checked, by hash: who they are and until when.
    provider_bearers: api_token::TokenCache<api_token::TokenOwner>,
    store: Store,
    redis: Option<Arc<Redis>>,
    metrics: Arc<Metrics>,
    leeway: Duration,
    token_lifetime: Duration,
    /// Where this replica stands in the change log; held across a sync's queries, never by a
    /// request.
    cursor: tokio::sync::Mutex<sync::Cursor>,
    /// Tokens and sessions whose last use is due; written by [`record_token_use`].
    touches: tokio::sync::mpsc::Sender<Touch>,
    /// Each user's role and groups, for policies.
    access: access::AccessCache,
}

impl Authenticator {
    /// The authenticator, and the queue of API-token uses that [`record_token_use`] writes.
    pub fn new(parts: AuthenticatorParts) -> (Authenticator, tokio::sync::mpsc::Receiver<Touch>) {
        let (touches, touched) = tokio::sync::mpsc::channel(4096);
        let authn = Authenticator {
            verifier: parts.verifier,
            verified: VerifiedCache::new(parts.cache.verified_tokens, parts.leeway),
            revocations: Revocations::new(),
            api_tokens: api_token::TokenCache::new(parts.token_ttl, parts.cache.api_tokens),
            sessions: api_token::TokenCache::new(parts.token_ttl, parts.cache.sessions),
            session_idle: i64::try_from(parts.session_idle.as_secs()).unwrap_or(i64::MAX),
            scheme: parts.scheme,
            provider_bearers: api_token::TokenCache::new(Duration::from_secs(300), parts.cache.provider_tokens),
            oidc: parts.oidc,
            store: parts.store,
            redis: parts.redis,
            metrics: parts.metrics,
            leeway: parts.leeway,
            token_lifetime: parts.token_lifetime,
            cursor: tokio::sync::Mutex::new(sync::Cursor::default()),
            touches,
            access: access::AccessCache::new(parts.cache.access),
        };
        (authn, touched)
    }

    /// Who sent this request: its one credential verified and checked against revocations. A
    /// header credential wins over a session cookie; a cookie session's unsafe request or
    /// WebSocket handshake must come from the gateway's own origin (403 otherwise).
    pub async fn authenticate<B>(&self, req: &Request<B>) -> Result<Authenticated, GatewayError> {
        self.authenticate_at(req, self.scheme).await
    }

    /// [`Self::authenticate`] for a request whose client spoke `scheme` (`https` or `http`) to
    /// whoever received it: forward-auth decides for an ingress that may have ended TLS itself,
    /// and the cross-site check compares `Origin` with that scheme.
    pub async fn authenticate_at<B>(&self, req: &Request<B>, scheme: &str) -> Result<Authenticated, GatewayError> {
        let strip = credential::strip(req);
        let principal = match credential::extract(req) {
            Ok(token) if token.starts_with(api_token::PREFIX) => self.api_token(token).await?,
            Ok(token) => match self.jwt(token) {
                Ok(p) => p,
                Err(GatewayError::Unauthenticated(why)) if self.oidc.all().iter().any(|p| p.config.accept_bearer) => {
                    Box::pin(self.provider_bearer(token, why)).await?
                }
                Err(e) => return Err(e),
            },
            Err(AuthFailure::Missing) if strip.session_cookie => {
                let secret = session::cookie(req.headers(), session::COOKIE)
                    .map_err(GatewayError::Unauthenticated)?
                    .ok_or(GatewayError::Unauthenticated(AuthFailure::Missing))?;
                let principal = Box::pin(self.session(secret)).await?;
                // A WebSocket handshake is a GET whose answer another origin can read (no CORS),
                // and a same-site page gets the Lax cookie sent with it: checked like a POST.
                let checked = !req.method().is_safe() || crate::upgrade::is_websocket(req);
                if checked && !session::same_origin(req, scheme) {
                    return Err(GatewayError::Forbidden(
                        "A cookie session's request from another site is refused",
                    ));
                }
                principal
            }
            Err(e) => return Err(GatewayError::Unauthenticated(e)),
        };
        Ok(Authenticated { principal, strip })
    }

    /// A bearer token that this gateway did not sign: accepted when a provider with
    /// `accept_bearer` signed it for its audience, and its subject is linked to a local user.
    /// `own` is why the gateway's own verifier refused it, answered when no provider takes it.
    async fn provider_bearer(&self, token: &str, own: AuthFailure) -> Result<Principal, GatewayError> {
        let hash = api_token::hash(token);
        let owner = match self.provider_bearers.get(&hash) {
            Some(owner) => owner,
            None => {
                let iss = crate::auth::jwt::unverified_issuer(token).ok_or(GatewayError::Unauthenticated(own))?;
                let provider = self
                    .oidc
                    .bearer_issuer(&iss)
                    .ok_or(GatewayError::Unauthenticated(own))?;
                let verified = provider.verify_bearer(token).await.map_err(|e| {
                    tracing::info!(provider = %provider.config.id, error = %e, "provider bearer token refused");
                    GatewayError::Unauthenticated(AuthFailure::BadSignature)
                })?;
                let linked = self
                    .store
                    .identity(&provider.config.issuer, &verified.subject)
                    .await
                    .map_err(|_| GatewayError::StoreUnavailable)?
                    .ok_or(GatewayError::Unauthenticated(AuthFailure::UnknownToken))?;
                let exp = verified.claims.get("exp").and_then(serde_json::Value::as_u64);
                let owner = api_token::TokenOwner {
                    token_id: String::new(),
                    user_id: principal::UserId::parse(&linked.user_id)
                        .ok_or(GatewayError::Unauthenticated(AuthFailure::UnknownToken))?,
                    expires_at: exp,
                    scopes: Scopes::FULL,
                };
                self.provider_bearers.insert(hash, owner.clone());
                owner
            }
        };
        if owner
            .expires_at
            .is_none_or(|e| crate::clock::now_secs() >= e + self.leeway.as_secs())
        {
            return Err(GatewayError::Unauthenticated(AuthFailure::Expired));
        }
        self.revocations
            .check_user(owner.user_id.as_str(), i64::MAX, None)
            .map_err(GatewayError::Unauthenticated)?;
        Ok(Principal {
            user_id: owner.user_id,
            method: AuthMethod::ProviderBearer,
            jti: None,
            iat: None,
            exp: owner.expires_at,
            scopes: Scopes::FULL,
        })
    }

    /// A browser session by its cookie's secret: memory, then Redis, then the store.
    pub async fn session(&self, secret: &str) -> Result<Principal, GatewayError> {
        if !session::looks_like(secret) {
            return Err(GatewayError::Unauthenticated(AuthFailure::Malformed));
        }
        let hash = session::hash(secret);
        let owner = match self.sessions.get(&hash) {
            Some(owner) => {
                self.metrics.session_lookup(TokenLookup::Memory);
                owner
            }
            None => self.lookup_session(hash).await?,
        };
        let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
        if let Some(failure) = owner.ended(now, self.session_idle) {
            return Err(GatewayError::Unauthenticated(failure));
        }
        self.revocations
            .check_user(owner.user_id.as_str(), owner.epoch, Some(&owner.session_id))
            .map_err(GatewayError::Unauthenticated)?;
        owner.seen(now);
        if self.sessions.touch_due(&owner.session_id) {
            // Dropped when the queue is full: last_seen_at is best effort; memory holds the truth
            // for this replica.
            let _ = self.touches.try_send(Touch::Session(owner.session_id.clone()));
        }
        Ok(Principal {
            user_id: owner.user_id,
            method: AuthMethod::Session,
            jti: Some(owner.session_id),
            iat: None,
            exp: u64::try_from(owner.expires_at).ok(),
            scopes: Scopes::FULL,
        })
    }

    /// A session missing from the in-process cache: Redis, then the store; remembered in process.
    async fn lookup_session(&self, hash: String) -> Result<session::SessionOwner, GatewayError> {
        let cached = match &self.redis {
            Some(redis) => redis.get_session(&hash).await.flatten(),
            None => None,
        };
        let found = match cached {
            Some(s) => {
                self.metrics.session_lookup(TokenLookup::Redis);
                s
            }
            None => {
                let row = self.store.session_by_hash(&hash).await.map_err(|e| {
                    tracing::warn!(error = %e, "session lookup failed: store unavailable");
                    GatewayError::StoreUnavailable
                })?;
                let Some(row) = row else {
                    self.metrics.session_lookup(TokenLookup::Unknown);
                    return Err(GatewayError::Unauthenticated(AuthFailure::UnknownToken));
                };
                self.metrics.session_lookup(TokenLookup::Store);
                let found = crate::store::cache::CachedSession::from(row);
                if let Some(redis) = &self.redis {
                    redis.put_session(&hash, &found).await;
                }
                found
            }
        };
        let owner = session::SessionOwner {
            user_id: principal::UserId::parse(&found.user_id)
                .ok_or(GatewayError::Unauthenticated(AuthFailure::UnknownToken))?,
            session_id: found.id,
            epoch: found.epoch,
            expires_at: found.expires_at,
            last_seen: Arc::new(std::sync::atomic::AtomicI64::new(found.last_seen_at)),
        };
        self.sessions.insert(hash, owner.clone());
        Ok(owner)
    }

    fn jwt(&self, token: &str) -> Result<Principal, GatewayError> {
        let now = crate::clock::now_secs();
        let verified = match self.verified.get(token, now) {
            Some(v) => v,
            None => {
                let v = self
                    .verifier
                    .verify_at(token, now)
                    .map_err(GatewayError::Unauthenticated)?;
                self.verified.insert(token, &v);
                v
            }
        };
        self.revocations
            .check(verified.user_id.as_str(), &verified)
            .map_err(GatewayError::Unauthenticated)?;
        Ok(Principal {
            user_id: verified.user_id,
            method: AuthMethod::Jwt,
            jti: verified.jti,
            iat: verified.iat,
            exp: Some(verified.exp),
            scopes: Scopes::FULL,
        })
    }

    /// An API token: the in-process cache, then Redis, then the store (fail closed with 503 when
    /// the store is down too).
    async fn api_token(&self, token: &str) -> Result<Principal, GatewayError> {
        if !api_token::looks_like(token) {
            return Err(GatewayError::Unauthenticated(AuthFailure::Malformed));
        }
        let hash = api_token::hash(token);
        let owner = match self.api_tokens.get(&hash) {
            Some(owner) => {
                self.metrics.token_lookup(TokenLookup::Memory);
                owner
            }
            // Boxed: the Redis and store futures are large, and most requests never take this path.
            None => Box::pin(self.lookup_api_token(hash)).await?,
        };
        if owner.expires_at.is_some_and(|e| crate::clock::now_secs() >= e) {
            return Err(GatewayError::Unauthenticated(AuthFailure::Expired));
        }
        // Disabled users' tokens are refused; session epochs do not apply to API tokens.
        self.revocations
            .check_user(owner.user_id.as_str(), i64::MAX, None)
            .map_err(GatewayError::Unauthenticated)?;
        if self.api_tokens.touch_due(&owner.token_id) {
            // Dropped when the queue is full: last_used_at is best effort and never slows a request.
            let _ = self.touches.try_send(Touch::Token(owner.token_id.clone()));
        }
        Ok(Principal {
            user_id: owner.user_id,
            method: AuthMethod::ApiToken,
            jti: None,
            iat: None,
            exp: owner.expires_at,
            scopes: owner.scopes,
        })
    }

    /// An API token missing from the in-process cache: Redis, then the store; remembered in process.
    async fn lookup_api_token(&self, hash: String) -> Result<api_token::TokenOwner, GatewayError> {
        let cached = match &self.redis {
            Some(redis) => redis.get_token(&hash).await.flatten(),
            None => None,
        };
        let (token, from_store) = match cached {
            Some(t) => {
                self.metrics.token_lookup(TokenLookup::Redis);
                (t, false)
            }
            None => {
                let row = self.store.api_token_by_hash(&hash).await.map_err(|e| {
                    tracing::warn!(error = %e, "API token lookup failed: store unavailable");
                    GatewayError::StoreUnavailable
                })?;
                let Some(row) = row else {
                    self.metrics.token_lookup(TokenLookup::Unknown);
                    return Err(GatewayError::Unauthenticated(AuthFailure::UnknownToken));
                };
                self.metrics.token_lookup(TokenLookup::Store);
                let token = crate::store::cache::CachedToken {
                    id: row.id,
                    user_id: row.user_id,
                    expires_at: row.expires_at.map(|e| u64::try_from(e).unwrap_or(0)),
                    scopes: row.scopes,
                };
                (token, true)
            }
        };
        if from_store && let Some(redis) = &self.redis {
            redis.put_token(&hash, &token).await;
        }
        let owner = api_token::TokenOwner {
            user_id: principal::UserId::parse(&token.user_id)
                .ok_or(GatewayError::Unauthenticated(AuthFailure::UnknownToken))?,
            token_id: token.id,
            expires_at: token.expires_at,
            scopes: Scopes::from_names(&token.scopes),
        };
        self.api_tokens.insert(hash, owner.clone());
        Ok(owner)
    }

    /// Apply a revocation change (made here, or by another replica over the bus) to memory.
    pub fn apply(&self, event: Event) {
        match event {
            Event::Jti { jti, exp } => self.revocations.revoke_jti(&jti, exp),
            Event::User {
                id,
                disabled,
                min_epoch,
                exempt_jti,
            } => self.revocations.set_user(
                &id,
                UserGate {
                    disabled,
                    min_epoch,
                    exempt_jti,
                    moved_at: i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX),
                },
            ),
            Event::Token { hash } => self.forget_credential(&hash),
            Event::Access { id } => self.access.forget(&id),
        }
    }

    /// A user's role and groups: from memory, else from the store (then kept for
    /// [`access::ACCESS_TTL`], or until a change drops them). A store that is down is 503.
    pub async fn access(&self, user_id: &principal::UserId) -> Result<Arc<crate::policy::Access>, GatewayError> {
        let id = user_id.as_str();
        if let Some(found) = self.access.get(id) {
            return Ok(found);
        }
        let generation = self.access.generation();
        let found = self.store.user_access(id).await.map_err(|e| {
            tracing::warn!(error = %e, "role and groups lookup failed: store unavailable");
            GatewayError::StoreUnavailable
        })?;
        let found = Arc::new(access::from_store(found));
        self.access.insert(id, found.clone(), generation);
        Ok(found)
    }

    /// Forget a user's role and groups (they changed).
    pub fn forget_access(&self, user_id: &str) {
        self.access.forget(user_id);
    }

    /// Forget an opaque credential that is gone (an API token or a browser session, by hash).
    pub fn forget_credential(&self, hash: &str) {
        self.api_tokens.remove(hash);
        self.sessions.remove(hash);
    }

    /// What restricts this user's tokens now (read before a change that keeps part of it).
    pub fn user_gate(&self, user_id: &str) -> UserGate {
        self.revocations.user(user_id)
    }

    /// Whether this user is disabled, as far as this replica knows.
    pub fn is_disabled(&self, user_id: &str) -> bool {
        self.revocations.is_disabled(user_id)
    }

    /// Drop every cached API token: after a bus outage, deletions elsewhere may have been missed.
    pub fn forget_cached_tokens(&self) {
        self.api_tokens.clear();
        self.sessions.clear();
        self.access.clear();
    }

    /// The newest revocation that may matter: `exp` plus the leeway, in seconds.
    pub fn revocation_cutoff(&self) -> u64 {
        crate::clock::now_secs().saturating_sub(self.leeway.as_secs())
    }

    /// Forget what can no longer matter: revocations of expired tokens and gates whose epoch moved
    /// more than a token lifetime ago, in memory and in the store, browser sessions past their
    /// end or idle timeout, and change-log rows older than [`CHANGE_LOG_KEEP`].
    pub async fn purge_expired(&self) {
        let cutoff = self.revocation_cutoff();
        self.revocations.purge(cutoff, self.moved_since());
        if let Err(e) = self.store.purge_expired(cutoff as i64).await {
            tracing::warn!(error = %e, "purging expired revocations failed");
        }
        let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
        if let Err(e) = self
            .store
            .purge_sessions(now, now.saturating_sub(self.session_idle))
            .await
        {
            tracing::warn!(error = %e, "purging ended browser sessions failed");
        }
        if let Err(e) = self.store.purge_grants(now).await {
            tracing::warn!(error = %e, "purging expired sign-in codes and flows failed");
        }
        let keep_after = crate::clock::now_secs().saturating_sub(CHANGE_LOG_KEEP.as_secs());
        if let Err(e) = self.store.purge_log(i64::try_from(keep_after).unwrap_or(0)).await {
            tracing::warn!(error = %e, "purging the revocation change log failed");
        }
    }

    /// The metrics this authenticator counts into (the pages count single sign-ons there too).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How many revoked `jti`s and gated users are held now.
    pub fn held(&self) -> (usize, usize) {
        (self.revocations.revoked_count(), self.revocations.gated_count())
    }
}

/// Write `last_used_at` for API tokens and `last_seen_at` for sessions, off the request path,
/// until the queue closes.
pub async fn record_token_use(store: Store, mut touched: tokio::sync::mpsc::Receiver<Touch>) {
    while let Some(touch) = touched.recv().await {
        let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
        let done = match &touch {
            Touch::Token(id) => store.touch_api_token(id, now).await,
            Touch::Session(id) => store.touch_session(id, now).await,
        };
        if let Err(e) = done {
            tracing::debug!(error = %e, "last use not recorded");
        }
    }
}
