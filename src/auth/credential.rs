//! Where a request carries its credential: `Authorization: Bearer`, `X-API-Key`, or the `token`
//! query parameter of a WebSocket handshake; else the browser session cookie (`session`); and what
//! of it must be removed before forwarding.
//!
//! The rule this module keeps: exactly one credential, read from one place. Two at once, in any
//! combination, are refused rather than one of them picked (a session cookie beside one of them is
//! ignored: the header wins), and everything a credential could sit in ([`HEADERS`], the query
//! `token` in any spelling, the gateway's cookies) is removed from what the backend gets.
//! Adding a credential kind means adding it here and to [`Strip`].

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Request, Uri, header};

use super::api_token;
use crate::error::AuthFailure;

/// Headers that carry a credential the gateway consumes (RFC 9110 §11.6.2, §11.7.2, and the
/// API-key header). Never forwarded, whatever the route.
pub static HEADERS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
];

/// The credential material to remove from a request before it is forwarded: always [`HEADERS`],
/// the query's `token` parameters when the request is a WebSocket handshake that has one, and the
/// gateway's own cookies (`session::OWN_COOKIES`) when a `Cookie` field carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strip {
    pub query_token: bool,
    pub session_cookie: bool,
}

impl Strip {
    /// The credential headers, dropped in the identity step's one pass over the headers.
    pub fn headers(&self) -> &'static [HeaderName] {
        &HEADERS
    }

    /// The request target without its query credential, or `None` when there is none to remove.
    pub fn target(&self, uri: &Uri) -> Option<Result<PathAndQuery, AuthFailure>> {
        let query = uri.query().filter(|_| self.query_token)?;
        let rest = strip_query_token(query);
        let target = if rest.is_empty() {
            uri.path().to_owned()
        } else {
            format!("{}?{rest}", uri.path())
        };
        Some(PathAndQuery::try_from(target).map_err(|_| AuthFailure::Malformed))
    }
}

/// What to remove from `req`, found without verifying anything (public routes are stripped too).
pub fn strip<B>(req: &Request<B>) -> Strip {
    Strip {
        // Most requests have no query: then no header is looked up for the handshake test.
        query_token: req
            .uri()
            .query()
            .is_some_and(|q| has_query_token(q) && crate::upgrade::is_websocket(req)),
        session_cookie: super::session::carries_own(req.headers()),
    }
}

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

/// The token a request carries: `Authorization: Bearer`, `X-API-Key` (API tokens only), or
/// `?token=` on a WebSocket handshake (browsers cannot set headers there). Exactly one of them:
/// two credentials at once, in any combination, are refused rather than one of them picked.
/// Any other request's query is never read.
pub fn extract<B>(req: &Request<B>) -> Result<&str, AuthFailure> {
    let mut keys = req.headers().get_all(&HEADERS[2]).iter();
    let api_key = match (keys.next(), keys.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.to_str().map_err(|_| AuthFailure::Malformed)?.trim()),
        (Some(_), Some(_)) => return Err(AuthFailure::Malformed),
    };
    // Most requests have no query: then no header is looked up for the handshake test.
    let query = match req.uri().query() {
        Some(q) if crate::upgrade::is_websocket(req) => query_token(Some(q))?,
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

/// Whether a query pair is the `token` parameter, in any spelling a backend could decode to it:
/// any case, and percent-encoded (`%74oken`, `TOKEN`), so that one is never passed on as a
/// second credential behind the one the gateway read.
fn is_token_pair(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    if name.len() == 5 {
        return name.eq_ignore_ascii_case("token");
    }
    if !name.contains('%') || name.len() > 15 {
        return false;
    }
    let mut decoded = [0u8; 5];
    let mut len = 0;
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => match std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    i += 3;
                    b
                }
                None => return false,
            },
            (b, _) => {
                i += 1;
                b
            }
        };
        if len == decoded.len() {
            return false;
        }
        decoded[len] = b;
        len += 1;
    }
    decoded[..len].eq_ignore_ascii_case(b"token")
}

/// The `token` query parameter of a WebSocket handshake (browsers cannot set headers there).
/// `Ok(None)` when there is none; two of them are ambiguous, and another spelling of the name
/// (`TOKEN`, `%74oken`) is a disguise: both are refused.
pub fn query_token(query: Option<&str>) -> Result<Option<&str>, AuthFailure> {
    let Some(query) = query else { return Ok(None) };
    let mut found = None;
    for pair in query.split('&').filter(|p| is_token_pair(p)) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Only `token` itself is read; `TOKEN` or `%74oken` is a disguised credential: refused.
        if found.is_some() || name != "token" {
            return Err(AuthFailure::Malformed);
        }
        found = Some(value);
    }
    Ok(found)
}

/// Whether a query carries a `token` parameter to strip before forwarding.
pub fn has_query_token(query: &str) -> bool {
    query.split('&').any(is_token_pair)
}

/// The query without its `token` parameters.
pub fn strip_query_token(query: &str) -> String {
    let mut rest = String::with_capacity(query.len());
    for pair in query.split('&').filter(|p| !is_token_pair(p)) {
        if !rest.is_empty() {
            rest.push('&');
        }
        rest.push_str(pair);
    }
    rest
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
    fn one_query_token_is_read_and_two_are_refused() {
        assert_eq!(query_token(None), Ok(None));
        assert_eq!(query_token(Some("a=1")), Ok(None));
        assert_eq!(query_token(Some("tokenx=1")), Ok(None));
        assert_eq!(query_token(Some("token=abc")), Ok(Some("abc")));
        assert_eq!(query_token(Some("a=1&token=abc&b=2")), Ok(Some("abc")));
        assert_eq!(query_token(Some("token")), Ok(Some("")));
        assert_eq!(query_token(Some("token=a&token=b")), Err(AuthFailure::Malformed));
        assert_eq!(query_token(Some("token=a&token")), Err(AuthFailure::Malformed));
        // Spellings a backend could decode to `token` are refused, alone or beside it.
        assert_eq!(query_token(Some("%74oken=abc")), Err(AuthFailure::Malformed));
        assert_eq!(query_token(Some("TOKEN=abc")), Err(AuthFailure::Malformed));
        assert_eq!(
            query_token(Some("token=a&%74%6F%6b%65%6e=b")),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(query_token(Some("token=a&%54oken=b")), Err(AuthFailure::Malformed));
        assert_eq!(query_token(Some("%74oke=a&tokenx=b&%zzoken=c")), Ok(None));
    }

    #[test]
    fn the_token_is_stripped_from_the_query() {
        assert_eq!(strip_query_token("token=abc"), "");
        assert_eq!(strip_query_token("a=1&token=abc&b=2"), "a=1&b=2");
        assert_eq!(strip_query_token("a=1&token"), "a=1");
        assert_eq!(strip_query_token("tokenx=1"), "tokenx=1");
        assert!(has_query_token("a&token=1"));
        assert!(!has_query_token("a&tokens=1"));
        assert_eq!(strip_query_token("a=1&%74oken=abc&ToKeN=x"), "a=1");
    }

    #[test]
    fn strip_names_the_query_token_only_on_a_websocket_handshake() {
        let ws = |uri: &str| {
            Request::get(uri)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(())
                .unwrap()
        };
        let s = strip(&ws("/ws?a=1&token=x"));
        assert!(s.query_token);
        assert_eq!(
            s.target(&"/ws?a=1&token=x".parse().unwrap()).unwrap().unwrap(),
            "/ws?a=1"
        );
        assert_eq!(s.target(&"/ws?token=x".parse().unwrap()).unwrap().unwrap(), "/ws");
        assert!(!strip(&ws("/ws?a=1")).query_token);
        let plain = Request::get("/ws?token=x").body(()).unwrap();
        assert!(!strip(&plain).query_token);
        assert!(strip(&plain).target(plain.uri()).is_none());
    }
}
