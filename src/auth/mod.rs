//! Who is calling: find the credential a request carries and check it.
//!
//! The rule this module keeps: fail closed. A request with two credentials that disagree, a
//! malformed `Authorization`, or any verification error is unauthenticated; nothing here panics on
//! hostile input.

pub mod jwt;
pub mod keys;
pub mod limiter;
pub mod password;
pub mod principal;
pub mod revocation;

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
    let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(AuthFailure::Malformed);
    }
    Ok(Credential::Bearer(token))
}

/// The token a request carries: `Authorization: Bearer`, or `?token=` on a WebSocket upgrade
/// (browsers cannot set headers there). Any other request's query is never read for credentials.
pub fn request_token<B>(req: &Request<B>) -> Result<&str, AuthFailure> {
    match bearer(req.headers())? {
        Credential::Bearer(t) => Ok(t),
        Credential::None if crate::proxy::is_upgrade(req) => req
            .uri()
            .query()
            .and_then(|q| crate::proxy::split_query_token(q).0)
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Missing),
        Credential::None => Err(AuthFailure::Missing),
    }
}

/// Who sent this request: its credential verified and checked against revocations.
pub async fn authenticate<B>(gw: &Gateway, req: &Request<B>) -> Result<Principal, GatewayError> {
    let token = request_token(req).map_err(GatewayError::Unauthenticated)?;
    let verified = gw.verifier.verify(token).map_err(GatewayError::Unauthenticated)?;
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
}
