//! Which protocol upgrades the gateway tunnels, and the credential such a request may carry in
//! its query.
//!
//! The rule this module keeps: the only upgrade is a WebSocket opening handshake (RFC 6455 §4.1)
//! on an HTTP/1.1 GET. Every other upgrade token (`h2c` above all: a backend that switches to
//! cleartext HTTP/2 would take every later request on that connection unchecked) is hop-by-hop
//! and never reaches the backend. A query credential is read only here, and only once.

use http::{HeaderMap, Method, Request, Version, header};

use crate::error::AuthFailure;

/// The one `Upgrade` token the gateway passes on.
pub const WEBSOCKET: &str = "websocket";

/// Whether `req` is a WebSocket opening handshake: HTTP/1.1, GET, `Connection: upgrade` and a
/// single `Upgrade: websocket`.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && upgrade_is_websocket(req.headers())
        && connection_names(req.headers(), "upgrade")
}

/// One `Upgrade` field whose whole value is the `websocket` token (any case).
fn upgrade_is_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(WEBSOCKET.as_bytes()),
        _ => false,
    }
}

/// Whether a `Connection` field lists `option`.
fn connection_names(headers: &HeaderMap, option: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(option))
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

    fn req(method: &str, version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/ws").version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_a_websocket_get_on_http1_is_an_upgrade() {
        let ws = [("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")];
        assert!(is_websocket(&req("GET", Version::HTTP_11, &ws)));
        for (method, version, headers) in [
            ("POST", Version::HTTP_11, &ws[..]),
            ("GET", Version::HTTP_10, &ws[..]),
            ("GET", Version::HTTP_2, &ws[..]),
            (
                "GET",
                Version::HTTP_11,
                &[("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "h2c")][..],
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", "websocket, h2c")][..],
            ),
            (
                "GET",
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", "h2c, websocket")][..],
            ),
            ("GET", Version::HTTP_11, &[("upgrade", "websocket")][..]),
            ("GET", Version::HTTP_11, &[("connection", "upgrade")][..]),
            (
                "GET",
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", "websocket"), ("upgrade", "h2c")][..],
            ),
        ] {
            assert!(
                !is_websocket(&req(method, version, headers)),
                "{method} {version:?} {headers:?}"
            );
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
}
