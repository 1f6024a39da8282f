//! Browser sessions on the request path: the `__Host-authgate` cookie carries an opaque random id
//! (256 bits, base64url), never a JWT; the store and the caches know it only by its SHA-256.
//!
//! The rule this module keeps: a session is trusted only while it is inside both its idle timeout
//! and its absolute lifetime, its user is not disabled, and its user's session epoch has not moved
//! past the epoch it began in (a sign-out everywhere, a password change, a disable). The cookie is
//! read from the `Cookie` header only, and never reaches the backend (`credential::Strip`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;

use crate::auth::principal::UserId;
use crate::error::AuthFailure;

/// The session cookie's name. `__Host-` makes a browser insist on `Secure`, `Path=/` and no
/// `Domain`, so a sibling subdomain can neither set nor shadow it.
pub const COOKIE: &str = "__Host-authgate";
/// The sign-in forms' double-submit CSRF cookie (`web`), stripped like the session cookie.
pub const CSRF_COOKIE: &str = "__Host-authgate-csrf";
/// The single sign-on flow's cookie (`web::sso`): the `state` it must come back with.
pub const OIDC_COOKIE: &str = "__Host-authgate-oidc";
/// The cookies the gateway owns: removed from every forwarded `Cookie` header.
pub const OWN_COOKIES: [&str; 3] = [COOKIE, CSRF_COOKIE, OIDC_COOKIE];

/// 32 random bytes, base64url without padding.
const SECRET_LEN: usize = 43;

/// A new session secret (the cookie value).
pub fn generate() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a cookie value has the session shape (checked before any hashing or lookup).
pub fn looks_like(secret: &str) -> bool {
    secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The stored form: lower-case hex SHA-256 (as for API tokens).
pub fn hash(secret: &str) -> String {
    super::api_token::hash(secret)
}

/// The pairs of a `Cookie` header: `(name, value)`, names and values trimmed of spaces.
pub fn pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.split(|b| *b == b';').filter_map(|pair| {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            return None;
        }
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (&pair[..0], pair),
        };
        Some((name.trim_ascii(), value.trim_ascii()))
    })
}

/// Whether a cookie name is one of the gateway's own, in any case: a backend that folds case
/// must not be handed one in disguise.
pub fn is_own(name: &[u8]) -> bool {
    OWN_COOKIES.iter().any(|own| own.as_bytes().eq_ignore_ascii_case(name))
}

/// The value of cookie `name` across every `Cookie` field (HTTP/2 may send several). `Ok(None)`
/// when absent; two of them are ambiguous and refused, as two credentials are.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthFailure> {
    let mut found = None;
    for field in headers.get_all(http::header::COOKIE) {
        for (n, v) in pairs(field.as_bytes()) {
            if n == name.as_bytes() {
                if found.is_some() {
                    return Err(AuthFailure::Malformed);
                }
                found = Some(std::str::from_utf8(v).map_err(|_| AuthFailure::Malformed)?);
            }
        }
    }
    Ok(found)
}

/// Whether any `Cookie` field carries one of the gateway's cookies (cheap: a substring search,
/// any case; the identity step then removes exactly the matching pairs).
pub fn carries_own(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::COOKIE).iter().any(|v| {
        v.as_bytes()
            .windows(COOKIE.len())
            .any(|w| w.eq_ignore_ascii_case(COOKIE.as_bytes()))
    })
}

/// A `Cookie` field without the gateway's cookies; `None` when nothing is left. A pair is also
/// removed when a `,` inside it starts one of the gateway's cookies (`a=1, __Host-authgate=…`):
/// a proxy that folds two `Cookie` fields with a comma, or an RFC 2965 parser behind us, would
/// otherwise hand the backend the session secret.
pub fn without_own(value: &[u8]) -> Option<Vec<u8>> {
    let names_own = |piece: &[u8]| -> bool {
        let name = piece.trim_ascii().split(|b| *b == b'=').next().unwrap_or_default();
        is_own(name.trim_ascii())
    };
    let mut out = Vec::with_capacity(value.len());
    for pair in value.split(|b| *b == b';') {
        let trimmed = pair.trim_ascii();
        if trimmed.is_empty() || trimmed.split(|b| *b == b',').any(names_own) {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(trimmed);
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a request comes from the gateway's own origin, as a cookie session's unsafe request
/// must: `Sec-Fetch-Site: same-origin`, or, from a browser that does not send it, an `Origin`
/// equal to `scheme://host` (the request's own `Host` or `:authority`). Neither is refused: a
/// browser sends at least `Origin` on every cross-origin POST, so its absence is not vouched for.
pub fn same_origin<B>(req: &http::Request<B>, scheme: &str) -> bool {
    same_origin_head(req.headers(), req.uri(), scheme)
}

/// [`same_origin`] for a request's head alone (the pages read the body first).
pub fn same_origin_head(headers: &HeaderMap, uri: &http::Uri, scheme: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let Some(origin) = headers.get(http::header::ORIGIN).map(http::HeaderValue::as_bytes) else {
        return false;
    };
    let host = headers
        .get(http::header::HOST)
        .map(http::HeaderValue::as_bytes)
        .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()));
    let (Some(host), Some(rest)) = (host, origin.strip_prefix(scheme.as_bytes())) else {
        return false;
    };
    rest.strip_prefix(b"://").is_some_and(|h| h.eq_ignore_ascii_case(host))
}

/// What a live session resolves to, as cached in memory.
#[derive(Debug, Clone)]
pub struct SessionOwner {
    pub session_id: String,
    pub user_id: UserId,
    /// The user's epoch when the session began.
    pub epoch: i64,
    /// The absolute end, unix seconds.
    pub expires_at: i64,
    /// When it was last used (shared by the clones of one cache entry).
    pub last_seen: Arc<AtomicI64>,
}

impl SessionOwner {
    pub fn last_seen(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    pub fn seen(&self, now: i64) {
        self.last_seen.fetch_max(now, Ordering::Relaxed);
    }

    /// Why this session can no longer be used at `now`, if it cannot.
    pub fn ended(&self, now: i64, idle_timeout: i64) -> Option<AuthFailure> {
        (now >= self.expires_at || now.saturating_sub(self.last_seen()) >= idle_timeout).then_some(AuthFailure::Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn secrets_have_the_documented_shape_and_are_distinct() {
        let (a, b) = (generate(), generate());
        assert!(looks_like(&a) && looks_like(&b) && a != b);
        for bad in ["", "short", &format!("{a}x"), &a.replace(&a[..1], "."), "agt_x"] {
            assert!(!looks_like(bad), "{bad}");
        }
    }

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_session_cookie_is_read_once_across_fields_and_two_are_refused() {
        let h = cookies(&["a=1; __Host-authgate=abc", "b=2"]);
        assert_eq!(cookie(&h, COOKIE), Ok(Some("abc")));
        assert_eq!(cookie(&cookies(&["a=1"]), COOKIE), Ok(None));
        assert_eq!(cookie(&cookies(&["__Host-authgatex=1"]), COOKIE), Ok(None));
        let two = cookies(&["__Host-authgate=a", "__Host-authgate=b"]);
        assert_eq!(cookie(&two, COOKIE), Err(AuthFailure::Malformed));
        let two = cookies(&["__Host-authgate=a;__Host-authgate=b"]);
        assert_eq!(cookie(&two, COOKIE), Err(AuthFailure::Malformed));
    }

    #[test]
    fn the_gateways_cookies_are_removed_in_any_spelling_and_the_apps_kept() {
        let strip = |v: &str| without_own(v.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(strip("a=1; __Host-authgate=s; b=2").as_deref(), Some("a=1; b=2"));
        assert_eq!(strip("__Host-authgate=s").as_deref(), None);
        assert_eq!(
            strip(" __host-AUTHGATE = s ;__Host-authgate-csrf=t;app=x=y").as_deref(),
            Some("app=x=y")
        );
        assert_eq!(strip("__Host-authgatex=1").as_deref(), Some("__Host-authgatex=1"));
        assert_eq!(
            strip("a=1, __Host-authgate=s; b=2").as_deref(),
            Some("b=2"),
            "folded with a comma"
        );
        assert_eq!(strip("a=1,__host-authgate-CSRF=s").as_deref(), None);
        assert_eq!(
            strip("list=1,2,3; b=2").as_deref(),
            Some("list=1,2,3; b=2"),
            "commas in values stay"
        );
        assert!(carries_own(&cookies(&["x=1; __HOST-authgate=2"])));
        assert!(!carries_own(&cookies(&["x=1"])));
    }

    #[test]
    fn only_the_gateways_own_origin_is_same_origin() {
        let req = |pairs: &[(&str, &str)]| {
            let mut b = http::Request::post("/x");
            for (k, v) in pairs {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        let host = ("host", "gw.example:8443");
        assert!(same_origin(&req(&[host, ("sec-fetch-site", "same-origin")]), "https"));
        for site in ["same-site", "cross-site", "none", ""] {
            assert!(!same_origin(&req(&[host, ("sec-fetch-site", site)]), "https"), "{site}");
        }
        assert!(same_origin(
            &req(&[host, ("origin", "https://gw.example:8443")]),
            "https"
        ));
        assert!(same_origin(
            &req(&[host, ("origin", "https://GW.example:8443")]),
            "https"
        ));
        for origin in [
            "https://gw.example",
            "http://gw.example:8443",
            "https://evil.example",
            "https://gw.example:8443.evil.example",
            "null",
        ] {
            assert!(!same_origin(&req(&[host, ("origin", origin)]), "https"), "{origin}");
        }
        // Sec-Fetch-Site, when sent, decides: a matching Origin beside cross-site is refused.
        let both = req(&[
            host,
            ("origin", "https://gw.example:8443"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(!same_origin(&both, "https"));
        assert!(!same_origin(&req(&[host]), "https"), "neither header: refused");
    }

    #[test]
    fn a_session_ends_at_its_idle_timeout_or_its_lifetime() {
        let s = SessionOwner {
            session_id: "s".into(),
            user_id: UserId::parse("u").unwrap(),
            epoch: 0,
            expires_at: 1000,
            last_seen: Arc::new(AtomicI64::new(100)),
        };
        assert_eq!(s.ended(150, 100), None);
        assert_eq!(s.ended(200, 100), Some(AuthFailure::Expired));
        s.seen(190);
        s.seen(120);
        assert_eq!(s.last_seen(), 190, "a late touch never moves it back");
        assert_eq!(s.ended(250, 100), None);
        assert_eq!(s.ended(1000, 10_000), Some(AuthFailure::Expired));
    }
}
