//! Forward-auth, `GET {web.prefix}/verify`: the decision for a request that an ingress (nginx
//! `auth_request`, Traefik `ForwardAuth`) proxies itself. 200 with `X-User-Id` (and the signed
//! assertion, when configured) lets it through; 401, 403, or for a browser the way to sign in,
//! refuse it.
//!
//! The rules this module keeps:
//! - the request to decide is read from `X-Original-Method` and `X-Original-URI` (nginx) or
//!   `X-Forwarded-Method` and `X-Forwarded-Uri` (Traefik), with `X-Forwarded-Host`, and only when
//!   the TCP peer is in `server.trusted_proxies`: any other peer is refused with 403 whatever it
//!   sends (oauth2-proxy's CVE-2026-40575 decided on a client's `X-Forwarded-Uri`);
//! - one family, each header once: an ingress passes the client's own headers along, so behind
//!   nginx a client can send Traefik's names and behind Traefik nginx's. Both families at once, or
//!   a header twice, is 403, never one of them picked;
//! - the described request then goes through the proxy's own steps: `routes::check_path` (an
//!   ambiguous target is 403 here, which nginx passes on, where 400 would become its 500),
//!   `routes::classify` for `auth.public_paths`, and [`super::admit`] for the credential and the
//!   policy, so forward-auth and the proxy cannot decide differently;
//! - one credential the proxy takes and forward-auth does not: a WebSocket handshake's `?token=`,
//!   which the ingress would forward to the backend in the URL (403).

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::{Admission, GatewayBody, Outcome, Peer, Proxy, admit, headers};
use crate::auth::Authenticated;
use crate::error::{AuthFailure, GatewayError};
use crate::policy::{Decided, Verdict};
use crate::routes::{self, RouteClass};

static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

const UNTRUSTED: &str = "Forward-auth answers only the proxies listed in server.trusted_proxies";
const MISSING: &str = "Forward-auth needs the original method and URI: X-Original-Method and X-Original-URI \
                       (nginx auth_request) or X-Forwarded-Method and X-Forwarded-Uri (Traefik ForwardAuth)";
const BOTH: &str = "The request carries both X-Original-Method/URI and X-Forwarded-Method/Uri";
const TWICE: &str = "A forward-auth header was sent more than once";
const AMBIGUOUS: &str = "Ambiguous request path";
const QUERY_TOKEN: &str = "A WebSocket's ?token= cannot be used through forward-auth: the ingress would pass it on to the \
                           backend in the URL. Send the token in Authorization, or sign in (the session cookie)";

/// Which kind of ingress described the request: each passes a refusal on in its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ingress {
    /// nginx `auth_request`: passes on 401 and 403 only (anything else but 2xx becomes its 500),
    /// so a browser learns where to sign in from the 401's `Location`, through `error_page 401`.
    Nginx,
    /// Traefik `ForwardAuth`, which relays the answer as it is: a browser gets the 302 itself.
    Traefik,
}

/// The request an ingress asks about, as its client sent it.
#[derive(Debug)]
struct Described {
    ingress: Ingress,
    method: Method,
    target: PathAndQuery,
    /// `X-Forwarded-Host`: the host the client asked for (the cross-site check compares it with
    /// `Origin`).
    host: Option<HeaderValue>,
}

/// Answer a forward-auth request (phases 1 and 2 for the request it describes; nothing is
/// forwarded).
pub(super) async fn answer(
    proxy: &Arc<Proxy>,
    peer: &Peer,
    req: Request<Incoming>,
    outcome: &mut Outcome,
) -> Result<Response<GatewayBody>, GatewayError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(GatewayError::MethodNotAllowed);
    }
    if !peer.trusted {
        tracing::info!(peer = %peer.addr.ip(), "forward-auth request from outside server.trusted_proxies refused");
        return Err(GatewayError::Forbidden(UNTRUSTED));
    }
    let described = described(req.headers())?;
    let path = described.target.path();
    if let Err(e) = routes::check_path(path) {
        tracing::info!(reason = %e, "forward-auth refused an ambiguous path");
        return Err(GatewayError::Forbidden(AMBIGUOUS));
    }
    if outcome.logged {
        outcome.original = Some((described.method.clone(), path.into()));
    }
    // Behind an ingress that ended TLS, the client spoke the ingress's scheme, not ours.
    let scheme = headers::forwarded_proto(req.headers()).unwrap_or(proxy.settings.scheme);

    // The request as the client sent it to the ingress: its method, target and host, and the
    // headers the ingress passed along (its credential among them). The body is never read.
    let (mut parts, _) = req.into_parts();
    parts.method = described.method;
    parts.uri = Uri::from(described.target);
    if let Some(host) = described.host {
        parts.headers.insert(header::HOST, host);
    }
    let original = Request::from_parts(parts, ());
    // The proxy takes a WebSocket's `?token=` off before forwarding; an ingress forwards the
    // target as it came, so that credential would reach the backend: never accepted here.
    if crate::auth::credential::strip(&original).query_token {
        tracing::info!("forward-auth refused a WebSocket query token");
        return Err(GatewayError::Forbidden(QUERY_TOKEN));
    }

    // A path the gateway answers itself (`auth.api_prefix`, the pages) is routed to the gateway by the
    // ingress, not decided here: asked anyway, it is decided as a protected path (fail closed).
    let class = routes::classify(
        original.uri().path(),
        &proxy.settings.api_paths,
        &proxy.settings.public_paths,
        &proxy.web.config.prefix,
    );
    if class == RouteClass::Public {
        if !proxy.authz.is_open() {
            proxy.authz.count(Decided::PublicPaths, Verdict::Public);
            outcome.rule = Some(Decided::PublicPaths);
        }
        return Ok(allowed());
    }
    match admit(proxy, &original, scheme, outcome).await? {
        Admission::Public => Ok(allowed()),
        Admission::SignIn(reason) => Ok(to_sign_in(proxy, &original, described.ingress, reason)),
        Admission::Caller(Authenticated { principal, .. }) => {
            let mut resp = allowed();
            let h = resp.headers_mut();
            h.insert(headers::X_USER_ID.clone(), principal.user_id.header_value());
            if let Some((name, value)) = proxy.identity.assertion(&principal).await? {
                h.insert(name, value);
            }
            Ok(resp)
        }
    }
}

/// The request the headers describe, refused when they are missing (400: the ingress is not set
/// up), doubled, or mixed (403: a client's own headers came along).
fn described(h: &HeaderMap) -> Result<Described, GatewayError> {
    let nginx = (one(h, &X_ORIGINAL_METHOD)?, one(h, &X_ORIGINAL_URI)?);
    let traefik = (one(h, &X_FORWARDED_METHOD)?, one(h, &X_FORWARDED_URI)?);
    let (ingress, (method, target)) = match (nginx, traefik) {
        ((None, None), (None, None)) => return Err(GatewayError::InvalidRequest(MISSING)),
        (n, (None, None)) => (Ingress::Nginx, n),
        ((None, None), t) => (Ingress::Traefik, t),
        _ => return Err(GatewayError::Forbidden(BOTH)),
    };
    let (Some(method), Some(target)) = (method, target) else {
        return Err(GatewayError::InvalidRequest(MISSING));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| GatewayError::InvalidRequest("The original method is not an HTTP method"))?;
    if method == Method::CONNECT {
        return Err(GatewayError::Forbidden("CONNECT is not supported"));
    }
    Ok(Described {
        ingress,
        method,
        target: origin_form(target)?,
        host: one(h, &headers::X_FORWARDED_HOST)?.cloned(),
    })
}

/// The original request target: a path and query (origin form), nothing else. A fragment is
/// refused rather than dropped, as the backend may read it as part of the path.
fn origin_form(v: &HeaderValue) -> Result<PathAndQuery, GatewayError> {
    let bytes = v.as_bytes();
    if bytes.first() != Some(&b'/') || memchr::memchr(b'#', bytes).is_some() {
        return Err(GatewayError::Forbidden(AMBIGUOUS));
    }
    PathAndQuery::try_from(bytes).map_err(|_| GatewayError::Forbidden(AMBIGUOUS))
}

/// The one value of `name`, if any; two are refused.
fn one<'a>(h: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a HeaderValue>, GatewayError> {
    let mut all = h.get_all(name).iter();
    match (all.next(), all.next()) {
        (first, None) => Ok(first),
        (_, Some(_)) => Err(GatewayError::Forbidden(TWICE)),
    }
}

/// 200: let it through. No body; never cached (the answer is about one caller).
fn allowed() -> Response<GatewayBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A browser to send to sign in and back: a 302 for an ingress that relays it, and for nginx the
/// 401 with the same `Location` (its `error_page 401` turns that into the redirect).
fn to_sign_in(proxy: &Proxy, original: &Request<()>, ingress: Ingress, reason: AuthFailure) -> Response<GatewayBody> {
    let mut redirect = super::to_sign_in(proxy, original);
    match ingress {
        Ingress::Traefik => {
            *redirect.status_mut() = StatusCode::FOUND;
            redirect
        }
        Ingress::Nginx => {
            let mut refused = GatewayError::Unauthenticated(reason).to_response().map(Either::Right);
            for name in [header::LOCATION, header::SET_COOKIE] {
                for value in redirect.headers().get_all(&name) {
                    refused.headers_mut().append(name.clone(), value.clone());
                }
            }
            refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn each_ingress_names_the_request_its_own_way() {
        let d = described(&map(&[("x-original-method", "POST"), ("x-original-uri", "/a?b=1")])).unwrap();
        assert_eq!(
            (d.ingress, d.method, d.target.as_str()),
            (Ingress::Nginx, Method::POST, "/a?b=1")
        );
        let d = described(&map(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/x"),
            ("x-forwarded-host", "app.example"),
        ]))
        .unwrap();
        assert_eq!(
            (d.ingress, d.method, d.target.as_str()),
            (Ingress::Traefik, Method::DELETE, "/x")
        );
        assert_eq!(d.host.unwrap(), "app.example");
    }

    #[test]
    fn missing_mixed_doubled_or_odd_descriptions_are_refused() {
        for (pairs, status) in [
            (&[][..], 400),
            (&[("x-original-uri", "/a")][..], 400),
            (&[("x-forwarded-method", "GET")][..], 400),
            (&[("x-original-method", "GET POST"), ("x-original-uri", "/a")][..], 400),
            (
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/a"),
                    ("x-forwarded-uri", "/b"),
                ][..],
                403,
            ),
            (
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/a"),
                    ("x-original-uri", "/b"),
                ][..],
                403,
            ),
            (&[("x-original-method", "CONNECT"), ("x-original-uri", "/a")][..], 403),
            (&[("x-original-method", "GET"), ("x-original-uri", "a")][..], 403),
            (
                &[("x-original-method", "GET"), ("x-original-uri", "http://h/a")][..],
                403,
            ),
            (&[("x-original-method", "GET"), ("x-original-uri", "/a#/../b")][..], 403),
            (&[("x-original-method", "GET"), ("x-original-uri", "*")][..], 403),
        ] {
            let err = described(&map(pairs)).unwrap_err();
            assert_eq!(err.status().as_u16(), status, "{pairs:?}: {err:?}");
        }
    }
}
