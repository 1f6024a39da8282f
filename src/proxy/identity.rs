//! The identity step: the one place where a request loses every identity and credential the
//! client sent and gains the gateway's own.
//!
//! The rule this module keeps (after linkerd2-proxy): removal always comes first and insertion
//! second, in one function, [`IdentityStep::apply`]. It removes every client-sent identity header
//! (any spelling, `auth.identity_headers` included), every credential the authenticator named
//! (its headers, and the query `token` of a WebSocket handshake), and, when the profile reads a
//! bearer itself (`rag_modulo`), any `Authorization` at all; then it sets `X-User-Id` and the
//! profile's identity (RAG Modulo's bearer JWT) or, when `[upstream.identity]` is set, the signed
//! assertion. The client identity headers it removed are
//! counted (`authgate_identity_headers_stripped_total`) and logged; credentials are removed
//! silently, since every authenticated request carries one.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;

use super::assertion::Asserter;
use super::headers::{self, Forwarding};
use super::profiles::Profile;
use crate::auth::principal::Principal;
use crate::config::AssertionMode;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::store::Store;

/// What the backend is told about the caller, built once at start-up.
pub struct IdentityStep {
    /// Signs the identity assertion, when `[upstream.identity]` is set.
    asserter: Option<Asserter>,
    /// `upstream.profile`.
    profile: Profile,
    /// Where the assertion reads the user's name and email.
    store: Store,
}

impl IdentityStep {
    pub fn new(asserter: Option<Asserter>, profile: Profile, store: Store) -> IdentityStep {
        IdentityStep {
            asserter,
            profile,
            store,
        }
    }

    /// `upstream.profile`, for the start-up banner.
    pub fn profile(&self) -> &'static str {
        self.profile.as_str()
    }

    /// The assertion's mode, for the start-up banner.
    pub fn assertion_mode(&self) -> Option<AssertionMode> {
        self.asserter.as_ref().map(|a| a.mode)
    }

    /// Remove every client identity and credential from `parts`, then set ours for `who` (nobody
    /// on a public route; `fwd.user` is `who`'s id). Returns the request target to forward: the
    /// client's, less its query credential.
    pub async fn apply(
        &self,
        parts: &mut Parts,
        fwd: &Forwarding<'_>,
        who: Option<&Principal>,
        metrics: &Metrics,
    ) -> Result<PathAndQuery, GatewayError> {
        let target = match fwd.strip.target(&parts.uri) {
            Some(stripped) => stripped.map_err(|_| GatewayError::InvalidRequest("Invalid request target"))?,
            None => parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        };
        let mut spoofed = headers::rewrite_request(&mut parts.headers, fwd);
        // RAG Modulo takes any bearer it is sent (`dev-…` and `mock_token_…` as an admin): whatever
        // `Authorization` is left after the credential was stripped is the client's, and goes.
        if self.profile.owns_authorization() {
            let left = parts.headers.get_all(header::AUTHORIZATION).iter().count();
            if left > 0 {
                parts.headers.remove(header::AUTHORIZATION);
                spoofed += left;
            }
        }
        if spoofed > 0 {
            metrics.identity_headers_stripped.inc_by(spoofed as u64);
            tracing::warn!(
                count = spoofed,
                request_id = fwd.request_id.to_str().unwrap_or("-"),
                peer = %fwd.peer_ip,
                "stripped client-sent identity header"
            );
        }
        if let Some(p) = who {
            self.insert(&mut parts.headers, p).await?;
        }
        Ok(target)
    }

    /// Add the signed assertion for `p`, when one is configured (`X-User-Id` is written by the
    /// header pass, after its removals).
    async fn insert(&self, headers: &mut HeaderMap, p: &Principal) -> Result<(), GatewayError> {
        if let Some((name, value)) = self.assertion(p).await? {
            headers.insert(name, value);
        }
        Ok(())
    }

    /// The signed assertion for `p` and the header it goes in (the profile's: RAG Modulo's
    /// `Authorization: Bearer`; else `X-Auth-Assertion`, or `Authorization` in bearer mode), when
    /// one is configured; forward-auth answers it to the ingress.
    pub async fn assertion(&self, p: &Principal) -> Result<Option<(HeaderName, HeaderValue)>, GatewayError> {
        if let Some(identity) = self.profile.identity(&self.store, p).await? {
            return Ok(Some(identity));
        }
        let Some(asserter) = &self.asserter else {
            return Ok(None);
        };
        let value = Box::pin(asserter.assertion(&self.store, &p.user_id))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot sign the identity assertion");
                GatewayError::Unavailable("identity assertion unavailable")
            })?;
        let name = match asserter.mode {
            AssertionMode::Header => headers::X_AUTH_ASSERTION.clone(),
            AssertionMode::Bearer => header::AUTHORIZATION,
        };
        Ok(Some((name, value)))
    }
}
