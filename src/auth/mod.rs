//! Who is calling: find the credential a request carries and check it.
//!
//! The rule this module keeps: fail closed. A request with two credentials that disagree, a
//! malformed `Authorization`, or any verification error is unauthenticated; nothing here panics on
//! hostile input.

pub mod jwt;
pub mod principal;

use http::{HeaderMap, header};

use crate::error::AuthFailure;

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
        for v in [&["Basic YWJj"][..], &["Bearer"], &["Bearer "], &["Bearer a b"], &["Bearer a", "Bearer b"]] {
            assert!(bearer(&with(v)).is_err(), "{v:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), Ok(Credential::None));
    }
}
