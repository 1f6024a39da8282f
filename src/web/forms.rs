//! What a page's request carries: its form body, its CSRF proof, and where to go after sign-in.
//!
//! The rules this module keeps:
//! - a form body is `application/x-www-form-urlencoded`, at most [`MAX_FORM_BYTES`];
//! - every POST carries the double-submit CSRF token (the `__Host-authgate-csrf` cookie and the
//!   form's `csrf` field, compared in constant time) and comes from the gateway's own origin;
//! - `rd` is a same-origin path that passes the gateway's path rules, or it is `/`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use crate::auth::session;
use crate::body::{BodyError, ForwardBody};
use crate::error::GatewayError;

/// The largest form body a page reads.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// A parsed form: its fields, by name (the last of a repeated name wins).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Read a form body (refused when it is not a form, or too large, or when the client stops
/// sending it for `idle`: 408, as for a proxied body, so a slow POST cannot hold a task forever).
pub async fn read(req: Request<Incoming>, idle: Duration) -> Result<(http::request::Parts, Form), GatewayError> {
    let (parts, bytes) = read_raw(req, idle).await?;
    let fields = form_urlencoded::parse(&bytes).into_owned().collect();
    Ok((parts, Form(fields)))
}

/// Read a form body under the same limits as [`read`], undecoded (for a caller that must see
/// repeated names).
pub async fn read_raw(req: Request<Incoming>, idle: Duration) -> Result<(http::request::Parts, Bytes), GatewayError> {
    let (parts, body) = req.into_parts();
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(GatewayError::UnsupportedMediaType);
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let (body, _) = ForwardBody::new(body, MAX_FORM_BYTES as u64, idle);
    let bytes: Bytes = body
        .collect()
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => GatewayError::PayloadTooLarge,
            BodyError::Stalled => GatewayError::RequestTimeout,
            BodyError::Client(_) => GatewayError::InvalidRequest("The request body could not be read"),
        })?
        .to_bytes();
    Ok((parts, bytes))
}

/// A new CSRF token (the cookie's value and the forms' `csrf` field).
pub fn new_csrf() -> String {
    session::generate()
}

/// The CSRF token this browser already holds, when it has a well-formed one.
pub fn held_csrf(headers: &HeaderMap) -> Option<&str> {
    session::cookie(headers, session::CSRF_COOKIE)
        .ok()
        .flatten()
        .filter(|v| session::looks_like(v))
}

/// Whether a form POST proves it came from this gateway's own page: the same-origin check, and
/// the form's token equal to the cookie's.
pub fn csrf_ok(parts: &http::request::Parts, form: &Form, scheme: &str) -> bool {
    if !session::same_origin_head(&parts.headers, &parts.uri, scheme) {
        return false;
    }
    let Some(held) = held_csrf(&parts.headers) else {
        return false;
    };
    let sent = form.get("csrf");
    sent.len() == held.len() && bool::from(sent.as_bytes().ct_eq(held.as_bytes()))
}

/// The `rd` query parameter of a page's URL, decoded and made safe: a path on this origin that
/// passes the gateway's path rules, else `/`. `//host`, `/\\host`, `https://…`, control bytes and
/// encoded forms of those all become `/`.
pub fn return_to(query: Option<&str>) -> String {
    let raw = query
        .map(|q| form_urlencoded::parse(q.as_bytes()))
        .and_then(|mut pairs| pairs.find(|(k, _)| k == "rd").map(|(_, v)| v.into_owned()));
    raw.filter(|rd| safe_return(rd)).unwrap_or_else(|| "/".to_owned())
}

/// Whether `rd` is a local path a browser cannot read as another origin.
pub fn safe_return(rd: &str) -> bool {
    let bytes = rd.as_bytes();
    if rd.len() > 2048 || bytes.first() != Some(&b'/') || matches!(bytes.get(1), Some(b'/' | b'\\')) {
        return false;
    }
    // Visible ASCII only: no control byte, space, backslash or non-ASCII a browser might fold.
    if !bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\') {
        return false;
    }
    let path = rd.split(['?', '#']).next().unwrap_or(rd);
    crate::routes::check_path(path).is_ok()
}

/// `Set-Cookie` for a value of one of the gateway's cookies.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>, same_site: &str) -> HeaderValue {
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("__Host-authgate=; Path=/; Secure; HttpOnly; Max-Age=0"))
}

/// `Set-Cookie` that deletes the session cookie.
pub fn clear_session_cookie() -> HeaderValue {
    set_cookie(session::COOKIE, "", Some(0), "Lax")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_open_redirect_trick_lands_on_the_root() {
        for bad in [
            "//evil.example",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/a/../..//evil.example",
            "/\tevil",
            "/ /evil",
            "/\u{3000}/evil",
            "/%00",
        ] {
            assert!(!safe_return(bad), "{bad:?}");
        }
        for good in ["/", "/app", "/app/page?x=1&y=%2F", "/a#frag", "/api/collections/1"] {
            assert!(safe_return(good), "{good:?}");
        }
    }

    #[test]
    fn rd_is_decoded_once_then_checked() {
        assert_eq!(return_to(Some("rd=%2Fapp%2Fpage%3Fx%3D1")), "/app/page?x=1");
        assert_eq!(return_to(Some("rd=%2F%2Fevil.example")), "/");
        assert_eq!(return_to(Some("rd=%2F%5Cevil.example")), "/");
        assert_eq!(return_to(Some("rd=https%3A%2F%2Fevil.example")), "/");
        assert_eq!(return_to(Some("rd=%252F%252Fevil.example")), "/", "double-encoded");
        assert_eq!(return_to(Some("rd=/%2f%2fevil.example")), "/");
        assert_eq!(return_to(None), "/");
        assert_eq!(return_to(Some("x=1")), "/");
    }
}
