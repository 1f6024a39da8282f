//! The request path. Each request goes through these phases, in order:
//!
//! 1. **parse**: refuse odd targets and ambiguous paths (400), classify the route;
//! 2. **authenticate**: for a protected route, the [`Authenticator`] finds and verifies the one
//!    credential (401 otherwise) and names the credential material to strip (a route the policy
//!    makes public skips this); then **authorize** ([`authorize::Authorizer`]): the first matching
//!    rule decides, and the request must be within the credential's scopes; a caller refused
//!    either way gets 403;
//! 3. **identity step** ([`identity::IdentityStep`]): strip that material, hop-by-hop and client
//!    identity headers, then set ours (`X-User-Id`, and the assertion when configured);
//! 4. **forward**: send to the pooled upstream, stream both bodies, tunnel an upgrade;
//! 5. **log**: one line and the metrics, whatever the outcome.
//!
//! Forward-auth (`{web.prefix}/verify`, `verify`) runs phases 1 and 2 on the request an ingress
//! describes and answers the decision instead of forwarding; phase 2 is one function, `admit`, for
//! both.
//!
//! The rule this module keeps: a request reaches the backend only through [`forward`], and only
//! after phase 2 said yes (authenticated, and authorized) or the route is public. Nothing here
//! buffers a body. The pipeline is a [`Proxy`]: the parts it is handed (authenticator, API
//! handlers, pages, authorizer, identity step, upstream, metrics, settings), never the whole
//! gateway.

pub mod assertion;
pub mod authorize;
pub mod headers;
pub mod identity;
pub mod profiles;
pub mod upstream;
mod verify;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::api::Api;
use crate::auth::principal::Principal;
use crate::auth::{Authenticated, Authenticator};
use crate::config::LimitsConfig;
use crate::error::GatewayError;
use crate::metrics::{AuthOutcome, Metrics};
use crate::policy::{Decided, Effect, Verdict};
use crate::routes::{self, ApiPaths, PublicPaths, RouteClass};

/// The request pipeline and what it works with, built once at start-up: route, authenticate,
/// identity step, forward, log. Each part is handed in; none of them reaches the others' state.
pub struct Proxy {
    pub authn: Arc<Authenticator>,
    pub api: Api,
    /// The browser pages under `web.prefix`.
    pub web: crate::web::Web,
    pub identity: identity::IdentityStep,
    pub upstream: Arc<upstream::Upstream>,
    pub metrics: Arc<Metrics>,
    /// `[policy]` and the credentials' scopes; without rules, every authenticated caller is
    /// allowed within their scopes.
    pub authz: authorize::Authorizer,
    pub settings: Settings,
    /// The JWKS document served at `/.well-known/jwks.json`.
    pub jwks: Bytes,
    /// Upgraded tunnels are tracked with the connections, so shutdown drains them too.
    pub tasks: tokio_util::task::TaskTracker,
}

/// The settings the pipeline reads on every request.
pub struct Settings {
    /// `auth.api_prefix` and `auth.backend_paths`.
    pub api_paths: ApiPaths,
    pub public_paths: PublicPaths,
    pub limits: LimitsConfig,
    /// `server.trusted_proxies`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `auth.identity_headers`.
    pub identity_headers: Vec<Box<str>>,
    /// `Strict-Transport-Security`, sent only over TLS.
    pub hsts: Option<HeaderValue>,
    /// `https` or `http`: what the client spoke, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
}

/// What the gateway answers with: a streamed upstream body, or its own small JSON.
pub type GatewayBody = Either<upstream::UpstreamBody, Full<Bytes>>;

/// What a request's phases found out, for the log line and metrics.
struct Outcome {
    route: Option<RouteClass>,
    auth: AuthOutcome,
    /// Who, for the access line (kept only when it is written).
    user: Option<Principal>,
    /// The policy rule that decided, when there is a policy.
    rule: Option<Decided>,
    /// For forward-auth, the method and path (never the query) it decided on; kept only when the
    /// access line is written.
    original: Option<(Method, Box<str>)>,
    logged: bool,
}

/// The client end of a connection, worked out once when it is accepted.
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The peer is a listed proxy: its `X-Forwarded-For` and `Forwarded` are kept and extended.
    pub trusted: bool,
    /// The peer's address as a header value, for `X-Forwarded-For`.
    pub address_value: HeaderValue,
}

impl Peer {
    pub fn new(proxy: &Proxy, addr: SocketAddr) -> Peer {
        let ip = addr.ip();
        Peer {
            addr,
            trusted: proxy.settings.trusted_proxies.iter().any(|net| net.contains(&ip)),
            address_value: headers::ip_value(ip),
        }
    }

    /// The client behind this peer (see `headers::client_ip`); the peer itself unless it is trusted.
    fn client(&self, proxy: &Proxy, headers: &http::HeaderMap) -> IpAddr {
        if self.trusted {
            headers::client_ip(headers, self.addr.ip(), &proxy.settings.trusted_proxies)
        } else {
            self.addr.ip()
        }
    }
}

/// Serve one request from a client connection.
pub async fn handle(
    proxy: Arc<Proxy>,
    peer: Peer,
    req: Request<Incoming>,
) -> Result<Response<GatewayBody>, Infallible> {
    let started = Instant::now();
    let request_id = headers::request_id(req.headers());
    // What only the access line needs is copied only when that line is written.
    let logged = tracing::enabled!(target: "authgate::access", tracing::Level::INFO).then(|| {
        (
            req.method().clone(),
            req.uri().clone(),
            peer.client(&proxy, req.headers()),
        )
    });
    let mut outcome = Outcome {
        route: None,
        auth: AuthOutcome::None,
        user: None,
        rule: None,
        original: None,
        logged: logged.is_some(),
    };

    let mut resp = match route(&proxy, &peer, req, &request_id, &mut outcome).await {
        Ok(resp) => resp,
        Err(err) => {
            if let GatewayError::Unauthenticated(reason) = &err {
                proxy.metrics.auth_failure(*reason);
                outcome.auth = AuthOutcome::Failed;
                tracing::info!(
                    reason = reason.as_str(),
                    request_id = request_id_str(&request_id),
                    "authentication refused"
                );
            }
            err.to_response().map(Either::Right)
        }
    };
    resp.headers_mut()
        .insert(headers::X_REQUEST_ID.clone(), request_id.clone());
    if let Some(hsts) = &proxy.settings.hsts {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }

    let status = resp.status().as_u16();
    proxy.metrics.request(outcome.route, status, outcome.auth);
    let Some((method, uri, client)) = logged else {
        return Ok(resp);
    };
    tracing::info!(
        target: "authgate::access",
        method = %method,
        path = uri.path(),
        status,
        user_id = outcome.user.as_ref().map(|p| p.user_id.as_str()),
        auth_method = outcome.user.as_ref().map(|p| p.method.as_str()),
        route = outcome.route.map(RouteClass::as_str),
        rule = outcome.rule.map(|d| proxy.authz.policy.label(d)),
        original_method = outcome.original.as_ref().map(|(m, _)| m.as_str()),
        original_path = outcome.original.as_ref().map(|(_, p)| &**p),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = request_id_str(&request_id),
        peer = %peer.addr.ip(),
        client = %client,
    );
    Ok(resp)
}

fn request_id_str(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("-")
}

/// Phases 1 to 4.
async fn route(
    proxy: &Arc<Proxy>,
    peer: &Peer,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    outcome: &mut Outcome,
) -> Result<Response<GatewayBody>, GatewayError> {
    // 1. parse
    if req.method() == Method::CONNECT {
        return Err(GatewayError::InvalidRequest("CONNECT is not supported"));
    }
    if req.version() < Version::HTTP_2 && req.uri().scheme().is_some() {
        // Absolute-form targets are for forward proxies; an origin gateway refuses them.
        return Err(GatewayError::InvalidRequest(
            "Absolute-form request targets are not accepted",
        ));
    }
    let path = req.uri().path();
    routes::check_path(path).map_err(GatewayError::AmbiguousPath)?;
    let class = routes::classify(
        path,
        &proxy.settings.api_paths,
        &proxy.settings.public_paths,
        &proxy.web.config.prefix,
    );
    // Discovery is the gateway's own once it is an OpenID Provider; the web pages answer it.
    let class = match class {
        RouteClass::Protected if path == crate::idp::DISCOVERY_PATH && proxy.web.idp.is_some() => RouteClass::Web,
        other => other,
    };
    outcome.route = Some(class);

    match class {
        RouteClass::AuthApi => {
            let ctx = crate::api::Ctx {
                api: &proxy.api,
                peer: peer.addr.ip(),
                client: peer.client(proxy, req.headers()),
                request_id,
            };
            // Boxed, like every rare and large future here: the per-request future stays small.
            let resp = Box::pin(crate::api::handle(&ctx, req, &mut outcome.user)).await;
            if let Some(p) = &outcome.user {
                outcome.auth = AuthOutcome::from(p.method);
            }
            resp.map(|r| r.map(Either::Right))
        }
        RouteClass::Jwks => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(GatewayError::MethodNotAllowed);
            }
            let mut resp = Response::new(Either::Right(Full::new(proxy.jwks.clone())));
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            Ok(resp)
        }
        RouteClass::Public => {
            if !proxy.authz.is_open() {
                proxy.authz.count(Decided::PublicPaths, Verdict::Public);
                outcome.rule = Some(Decided::PublicPaths);
            }
            let strip = crate::auth::credential::strip(&req);
            forward(proxy, peer, req, None, strip, request_id).await
        }
        RouteClass::Web => {
            let ctx = crate::web::Ctx {
                web: &proxy.web,
                client: peer.client(proxy, req.headers()),
                request_id,
            };
            let resp = Box::pin(crate::web::handle(&ctx, req, &mut outcome.user)).await;
            if let Some(p) = &outcome.user {
                outcome.auth = AuthOutcome::from(p.method);
            }
            resp.map(|r| r.map(Either::Right))
        }
        RouteClass::Protected => match admit(proxy, &req, proxy.settings.scheme, outcome).await? {
            Admission::Public => {
                outcome.route = Some(RouteClass::Public);
                let strip = crate::auth::credential::strip(&req);
                forward(proxy, peer, req, None, strip, request_id).await
            }
            // A person's browser: sent to sign in and back, not shown a JSON 401.
            Admission::SignIn(_) => Ok(to_sign_in(proxy, &req)),
            Admission::Caller(Authenticated { principal, strip }) => {
                forward(proxy, peer, req, Some(principal), strip, request_id).await
            }
        },
        RouteClass::Verify => Box::pin(verify::answer(proxy, peer, req, outcome)).await,
    }
}

/// What phase 2 decided for a request that `auth.public_paths` does not open.
enum Admission {
    /// A `public` policy rule: no credential is needed, and no identity is given.
    Public,
    /// A browser navigation without a working header credential: it is sent to sign in.
    SignIn(crate::error::AuthFailure),
    /// Authenticated, and allowed by the policy.
    Caller(Authenticated),
}

/// Phase 2, authenticate and authorize, for `req` as its client sent it (forward-auth hands in
/// the request the ingress describes): the policy's rule for its method and path, then its one
/// credential (the cross-site check against `scheme`), then the rule's verdict on the caller. A
/// refusal is the error to answer: 401, or 403 when the policy refuses the caller. The proxy and
/// forward-auth both decide here, so the two can never disagree.
async fn admit<B>(
    proxy: &Proxy,
    req: &Request<B>,
    scheme: &str,
    outcome: &mut Outcome,
) -> Result<Admission, GatewayError> {
    let authz = &proxy.authz;
    let decided = authz.matching(req.method(), req.uri().path());
    if !authz.is_open() {
        outcome.rule = Some(decided);
    }
    if authz.policy.is_public(decided) {
        authz.count(decided, Verdict::Public);
        return Ok(Admission::Public);
    }
    let found = match proxy.authn.authenticate_at(req, scheme).await {
        Ok(found) => found,
        Err(GatewayError::Unauthenticated(reason)) if sign_in_first(req) => {
            proxy.metrics.auth_failure(reason);
            outcome.auth = AuthOutcome::Failed;
            return Ok(Admission::SignIn(reason));
        }
        Err(e) => return Err(e),
    };
    outcome.auth = AuthOutcome::from(found.principal.method);
    if outcome.logged {
        outcome.user = Some(found.principal.clone());
    }
    if authz.decides(&found.principal) {
        outcome.rule = Some(decided);
    }
    let effect = Effect::of(req.method(), crate::upgrade::is_websocket(req));
    if !Box::pin(authz.allows(&proxy.authn, decided, effect, &found.principal)).await? {
        return Err(GatewayError::Forbidden("You may not reach this route"));
    }
    Ok(Admission::Caller(found))
}

/// Whether an unauthenticated request is a browser navigation with no header credential: it is
/// sent to the sign-in page instead of getting a 401 (programs keep their JSON 401).
fn sign_in_first<B>(req: &Request<B>) -> bool {
    crate::web::is_navigation(req)
        && crate::auth::credential::HEADERS
            .iter()
            .all(|h| !req.headers().contains_key(h))
}

/// 303 to the sign-in page, returning to this request's path and query; a session cookie that
/// no longer works is cleared.
fn to_sign_in<B>(proxy: &Proxy, req: &Request<B>) -> Response<GatewayBody> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut resp = crate::web::pages::see_other(&proxy.web.sign_in_url(target));
    if crate::auth::session::carries_own(req.headers()) {
        resp.headers_mut()
            .append(header::SET_COOKIE, crate::web::forms::clear_session_cookie());
    }
    resp.map(Either::Right)
}

/// 3 and 4. the identity step, and forward.
async fn forward(
    proxy: &Arc<Proxy>,
    peer: &Peer,
    mut req: Request<Incoming>,
    principal: Option<Principal>,
    strip: crate::auth::Strip,
    request_id: &HeaderValue,
) -> Result<Response<GatewayBody>, GatewayError> {
    // Only a WebSocket handshake is tunneled; any other `Upgrade` is hop-by-hop and dropped below.
    let upgrade = crate::upgrade::is_websocket(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if parts.version == Version::HTTP_2 {
        join_cookies(&mut parts.headers);
    }
    let fwd = headers::Forwarding {
        peer: &peer.address_value,
        trusted_peer: peer.trusted,
        proto: proxy.settings.scheme,
        host,
        user: principal.as_ref().map(|p| &p.user_id),
        request_id,
        upgrade,
        extra_identity: &proxy.settings.identity_headers,
        strip,
        peer_ip: peer.addr.ip(),
    };
    let path_and_query = proxy
        .identity
        .apply(&mut parts, &fwd, principal.as_ref(), &proxy.metrics)
        .await?;
    parts.uri = proxy.upstream.uri(path_and_query)?;
    parts.version = Version::HTTP_11;

    let limits = &proxy.settings.limits;
    let limit = if principal.is_some() {
        limits.body_bytes
    } else {
        limits.public_body_bytes
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        // Refused on its honest Content-Length, before a byte of the body is read or forwarded.
        return Err(GatewayError::PayloadTooLarge);
    }
    let (body, verdict) = crate::body::ForwardBody::new(body, limit, limits.body_idle_timeout);
    let upstream_req = Request::from_parts(parts, body);
    let sent = Instant::now();
    let mut resp = match proxy.upstream.send(upstream_req).await {
        Ok(resp) => resp,
        Err(_) if verdict.too_large() => return Err(GatewayError::PayloadTooLarge),
        Err(_) if verdict.stalled() => return Err(GatewayError::RequestTimeout),
        Err(e) => return Err(e),
    };
    proxy.metrics.upstream_seconds.observe(sent.elapsed().as_secs_f64());

    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let to_websocket = resp.headers().get(header::UPGRADE).is_some_and(|v| {
            v.as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(crate::upgrade::WEBSOCKET.as_bytes())
        });
        match client_upgrade {
            Some(client_upgrade) if to_websocket => {
                resp.body_mut().keep_connection();
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                proxy.tasks.spawn(tunnel(client_upgrade, upstream_upgrade));
            }
            // The backend switched protocols on a request that did not ask for a WebSocket, or to
            // another protocol: refuse it, and relay nothing (the backend connection is dropped).
            _ => {
                tracing::warn!(
                    request_id = request_id_str(request_id),
                    "upstream answered 101 to a request that was not a WebSocket handshake"
                );
                return Err(GatewayError::BadUpstreamResponse);
            }
        }
    }
    headers::rewrite_response(resp.headers_mut(), switching);
    Ok(resp.map(Either::Left))
}

/// Copy bytes both ways between an upgraded client and backend until either side closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        }
        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
    }
}

/// HTTP/2 may split `Cookie` into several fields (RFC 9113 §8.2.3); HTTP/1.1 wants one.
fn join_cookies(headers: &mut http::HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<u8> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}
