//! Which protocol upgrades the gateway tunnels.
//!
//! The rule this module keeps: the only upgrade is a WebSocket opening handshake (RFC 6455 §4.1)
//! on an HTTP/1.1 GET. Every other upgrade token (`h2c` above all: a backend that switches to
//! cleartext HTTP/2 would take every later request on that connection unchecked) is hop-by-hop
//! and never reaches the backend. (The `?token=` credential such a handshake may carry is
//! `auth::credential`'s.)

use http::{HeaderMap, Method, Request, Version, header};

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
}
