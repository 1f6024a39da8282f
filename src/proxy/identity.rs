//! The identity step: the one place where a request loses every identity and credential the
//! client sent and gains the gateway's own.
//!
//! The rule this module keeps (after linkerd2-proxy): removal always comes first and insertion
//! second, in one function, [`IdentityStep::apply`]. It removes every client-sent identity header
//! (any spelling, `auth.identity_headers` included), every credential the authenticator named
//! (its headers, and the query `token` of a WebSocket handshake), then sets `X-User-Id` and, when
//! `[upstream.identity]` is set, the signed assertion. The client identity headers it removed are
//! counted (`authgate_identity_headers_stripped_total`) and logged; credentials are removed
//! silently, since every authenticated request carries one.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;

use super::assertion::Asserter;
use super::headers::{self, Forwarding};
use crate::auth::principal::Principal;
use crate::config::AssertionMode;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::store::Store;

/// What the backend is told about the caller, built once at start-up.
pub struct IdentityStep {
    /// Signs the identity assertion, when `[upstream.identity]` is set.
    asserter: Option<Asserter>,
    /// Where the assertion reads the user's name and email.
    store: Store,
}

impl IdentityStep {
    pub fn new(asserter: Option<Asserter>, store: Store) -> IdentityStep {
        IdentityStep { asserter, store }
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
        let spoofed = headers::rewrite_request(&mut parts.headers, fwd);
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

    /// The signed assertion for `p` and the header it goes in (`X-Auth-Assertion`, or
    /// `Authorization` in bearer mode), when one is configured; forward-auth answers it to the
    /// ingress.
    pub async fn assertion(&self, p: &Principal) -> Result<Option<(HeaderName, HeaderValue)>, GatewayError> {
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
