//! Who a request is from, once authenticated: newtypes that cannot be mixed up.

use std::fmt;

use http::HeaderValue;

use crate::policy::Scopes;

/// A user id as the backend receives it in `X-User-Id`.
///
/// Construction checks it is 1 to 256 visible ASCII bytes, so it is always a valid header value
/// and can never smuggle a CR, LF or space into the forwarded request.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserId(HeaderValue);

impl UserId {
    pub fn parse(s: &str) -> Option<UserId> {
        if s.is_empty() || s.len() > 256 || !s.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return None;
        }
        HeaderValue::from_str(s).ok().map(UserId)
    }

    pub fn as_str(&self) -> &str {
        // Checked visible ASCII at construction.
        self.0.to_str().unwrap_or_default()
    }

    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.as_str())
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    ApiToken,
    /// A browser's session cookie (`auth::session`).
    Session,
    /// A single sign-on provider's JWT (`accept_bearer`): a program's way onto protected routes.
    /// It is not a gateway login, so it cannot act on one (refresh, logout, password, tokens):
    /// were it allowed to, a provider token of minutes could mint a gateway JWT or a ten-year API
    /// token that outlives it and the provider's own revocation. Logged and counted as `jwt`.
    ProviderBearer,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt | AuthMethod::ProviderBearer => "jwt",
            AuthMethod::ApiToken => "api_token",
            AuthMethod::Session => "session",
        }
    }
}

impl From<AuthMethod> for crate::metrics::AuthOutcome {
    fn from(m: AuthMethod) -> Self {
        match m {
            AuthMethod::Jwt | AuthMethod::ProviderBearer => crate::metrics::AuthOutcome::Jwt,
            AuthMethod::ApiToken => crate::metrics::AuthOutcome::ApiToken,
            AuthMethod::Session => crate::metrics::AuthOutcome::Session,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub method: AuthMethod,
    /// The JWT's `jti`, when it had one (used for logout); for a browser session, the session's
    /// public id.
    pub jti: Option<String>,
    /// The JWT's `iat` (used for per-user session epochs).
    pub iat: Option<u64>,
    /// The JWT's `exp`.
    pub exp: Option<u64>,
    /// What this credential may do within its owner's rights: [`Scopes::FULL`] for a JWT, a
    /// cookie session or a provider's bearer; an API token's own scopes.
    pub scopes: Scopes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_that_could_break_a_header_are_refused() {
        for bad in ["", "a b", "a\r\nb", "a\0", "é", &"x".repeat(257)] {
            assert!(UserId::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            UserId::parse("123e4567-e89b-12d3-a456-426614174000")
                .unwrap()
                .as_str()
                .len(),
            36
        );
    }
}
