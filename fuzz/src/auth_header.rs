//! Oracle for the `auth_header` target: arbitrary request headers and upgrade query.
//!
//! The input is read as lines; each line's first byte picks what the rest is: an `Authorization`,
//! `X-API-Key`, `Upgrade`, `Connection` or other header value, or the query of the request
//! target. `bearer` and `extract` must never panic, must refuse two credentials at once in
//! any combination (two headers, a header and a query token, two query tokens, a `token` query
//! name in disguise among them), and a token they return must be exactly what the request carried.

use authgate::auth::api_token;
use authgate::auth::credential::{Credential, bearer, extract};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, Version, header};

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The request the input describes.
fn request(data: &[u8]) -> Request<()> {
    let mut headers = HeaderMap::new();
    let mut uri = Uri::from_static("/ws");
    for line in data.split(|b| *b == b'\n') {
        let Some((&which, value)) = line.split_first() else {
            continue;
        };
        let name = match which % 6 {
            0 => header::AUTHORIZATION,
            1 => X_API_KEY.clone(),
            2 => header::UPGRADE,
            3 => header::CONNECTION,
            4 => {
                if let Some(u) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|q| format!("/ws?{q}").parse::<Uri>().ok())
                {
                    uri = u;
                }
                continue;
            }
            _ => HeaderName::from_static("x-other"),
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    let mut req = Request::new(());
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    req
}

/// Whether a query pair's name is `token` to a backend that percent-decodes it once and ignores
/// case (`TOKEN`, `%74oken`): such a pair is a credential whether or not the gateway reads it.
fn names_token(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(name, _)| name).as_bytes();
    let mut decoded = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let hex = |j: usize| name.get(j).and_then(|b| (*b as char).to_digit(16));
        if name[i] == b'%'
            && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
        {
            decoded.push((h * 16 + l) as u8);
            i += 3;
        } else {
            decoded.push(name[i]);
            i += 1;
        }
    }
    decoded.eq_ignore_ascii_case(b"token")
}

/// Panics if credential extraction breaks one of the rules above.
pub fn check(data: &[u8]) {
    let req = request(data);
    let h = req.headers();
    let auths: Vec<&HeaderValue> = h.get_all(header::AUTHORIZATION).iter().collect();
    let keys: Vec<&HeaderValue> = h.get_all(&X_API_KEY).iter().collect();

    let found = bearer(h);
    match &found {
        Ok(Credential::None) => assert!(auths.is_empty(), "an Authorization header was ignored"),
        Ok(Credential::Bearer(t)) => {
            assert_eq!(
                auths.len(),
                1,
                "a bearer token taken from one of several Authorization headers"
            );
            assert!(!t.is_empty() && t.is_ascii() && !t.contains(' '), "token {t:?}");
            let value = auths[0]
                .to_str()
                .expect("an accepted Authorization value is visible ASCII");
            let (scheme, rest) = value.split_once(' ').expect("an accepted Authorization has a scheme");
            assert!(scheme.eq_ignore_ascii_case("bearer"), "scheme {scheme:?} accepted");
            assert_eq!(rest.trim_matches(' '), *t, "the token is not the header's");
        }
        Err(_) => {}
    }

    // The query is a credential only on a WebSocket handshake (a GET here): HTTP/1.1, one
    // `Upgrade: websocket`, `Connection` naming upgrade.
    let upgrades: Vec<&HeaderValue> = h.get_all(header::UPGRADE).iter().collect();
    let websocket = upgrades.len() == 1
        && upgrades[0].as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket")
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let query = req.uri().query().unwrap_or("");
    let query_tokens: Vec<&str> = if websocket {
        let pairs = query.split('&');
        pairs.filter(|p| names_token(p)).collect()
    } else {
        Vec::new()
    };

    let Ok(token) = extract(&req) else {
        return;
    };
    assert!(!token.is_empty(), "an empty token was returned");
    let sources =
        usize::from(!auths.is_empty()) + usize::from(!keys.is_empty()) + usize::from(!query_tokens.is_empty());
    assert_eq!(sources, 1, "a token was picked from {sources} kinds of credential");
    if !auths.is_empty() {
        assert_eq!(found, Ok(Credential::Bearer(token)), "extract disagrees with bearer");
    } else if !keys.is_empty() {
        assert_eq!(keys.len(), 1, "one of several X-API-Key headers was accepted");
        assert!(api_token::looks_like(token), "X-API-Key {token:?} is not an API token");
    } else {
        assert_eq!(
            query_tokens,
            [format!("token={token}")],
            "token {token:?} is not the one token= pair of {query:?}"
        );
    }
}
