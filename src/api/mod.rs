//! The JSON API under `auth.api_prefix` (`/api/auth/*` by default), answered by the gateway itself
//! and never forwarded. The endpoints are listed in `routes::API_ENDPOINTS` too.
//!
//! The rule this module keeps: bodies are JSON, at most 64 KiB (an honest `Content-Length` over
//! that is refused before any byte is read), and every handler answers with JSON or an empty 204.
//! Register and login ignore any `Authorization` header; every other endpoint needs a credential,
//! and a scoped API token (one without `full`) may at most read here, with `read`: `GET /me` and
//! `GET /tokens`. It never refreshes into a JWT, ends sessions, or makes or deletes a token.

mod accounts;
pub mod strict_json;
mod tokens;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::accounts::{AccountError, Accounts};
use crate::auth::Authenticator;
use crate::auth::jwt::SigningKey;
use crate::auth::principal::Principal;
use crate::error::{AuthFailure, GatewayError};

/// The largest request body an auth endpoint reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers work with, built once at start-up.
pub struct Api {
    pub accounts: Arc<Accounts>,
    pub authn: Arc<Authenticator>,
    pub sessions: Sessions,
    /// `accounts.registration`: whether `POST /api/auth/register` is open.
    pub registration: crate::config::Registration,
    /// `auth.api_prefix`: the path the endpoints are below.
    pub prefix: Box<str>,
}

/// How a login session's access token is made: the signing key and the `[jwt]` claims.
pub struct Sessions {
    pub signer: SigningKey,
    pub expiration: std::time::Duration,
    pub issuer: String,
    pub audience: Option<String>,
}

/// What every handler needs to know about the request besides its body.
pub struct Ctx<'a> {
    pub api: &'a Api,
    /// The TCP peer.
    pub peer: IpAddr,
    /// The client behind it when the peer is a trusted proxy (see `proxy::headers::client_ip`);
    /// the login limits count this address.
    pub client: IpAddr,
    pub request_id: &'a HeaderValue,
}

pub type ApiResponse = Response<Full<Bytes>>;

/// Answer an `/api/auth/*` request. `authenticated` reports the caller for the access log.
pub async fn handle(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    authenticated: &mut Option<Principal>,
) -> Result<ApiResponse, GatewayError> {
    let path = req.uri().path().trim_end_matches('/');
    let endpoint = path.strip_prefix(ctx.api.prefix.as_ref()).unwrap_or(path);
    let method = req.method().clone();
    // Every endpoint but register and login needs a credential; those two ignore any.
    match (endpoint, &method) {
        ("/register", &Method::POST) => accounts::register(ctx, read_json(req).await?).await,
        ("/login", &Method::POST) => accounts::login(ctx, read_json(req).await?).await,
        ("/me", &Method::GET) => {
            let p = caller(ctx.api, &req, authenticated).await?;
            accounts::me(ctx, p).await
        }
        ("/refresh", &Method::POST) => {
            let p = session_only(caller(ctx.api, &req, authenticated).await?)?;
            accounts::refresh(ctx, p).await
        }
        ("/logout", &Method::POST) => {
            let p = session_only(caller(ctx.api, &req, authenticated).await?)?;
            let body = read_optional_json(req).await?;
            accounts::logout(ctx, p, &body).await
        }
        ("/password", &Method::POST) => {
            let p = session_only(caller(ctx.api, &req, authenticated).await?)?;
            accounts::change_password(ctx, p, read_json(req).await?).await
        }
        ("/tokens", &Method::POST) => {
            let p = session_only(caller(ctx.api, &req, authenticated).await?)?;
            tokens::create(ctx, p, read_json(req).await?).await
        }
        ("/tokens", &Method::GET) => {
            let p = caller(ctx.api, &req, authenticated).await?;
            tokens::list(ctx, p).await
        }
        (e, &Method::DELETE) if e.starts_with("/tokens/") => {
            let id = e.trim_start_matches("/tokens/").to_owned();
            let p = caller(ctx.api, &req, authenticated).await?;
            tokens::delete(ctx, p, &id).await
        }
        ("/register" | "/login" | "/me" | "/refresh" | "/logout" | "/password" | "/tokens", _) => {
            Err(GatewayError::MethodNotAllowed)
        }
        _ => Err(GatewayError::NotFound),
    }
}

/// The caller of an endpoint that needs a credential, kept in `who` for the access line, and
/// refused unless this request is within their scopes.
async fn caller<'w>(
    api: &Api,
    req: &Request<Incoming>,
    who: &'w mut Option<Principal>,
) -> Result<&'w Principal, GatewayError> {
    let p = api.authn.authenticate(req).await?.principal;
    within_scopes(who.insert(p), req.method())
}

/// A scoped credential here: every endpoint that takes one is read-only (GET) or acts on the login
/// and its tokens, so `read` permits the first kind and only `full` the second; no rule can grant
/// a custom scope on `/api/auth/*`.
fn within_scopes<'p>(p: &'p Principal, method: &Method) -> Result<&'p Principal, GatewayError> {
    if p.scopes.permits(crate::policy::Effect::of(method, false)) {
        return Ok(p);
    }
    Err(GatewayError::Forbidden(
        "This API token's scopes do not permit it here: with read it may only GET /api/auth/me and /api/auth/tokens; refresh, logout, password, and making or deleting tokens need a login session",
    ))
}

/// Refresh, logout (one or all), password change and token creation act on the login itself, so
/// they need an interactive session: a JWT from login or refresh, or a browser's cookie session.
/// An API token is a program's credential; were it allowed here, a stolen one could mint a login
/// JWT, and through it new ten-year tokens that outlive its own deletion and a logout-all. A
/// single sign-on provider's bearer token is refused for the same reason: it would outlive the
/// provider's own expiry and revocation.
fn session_only(p: &Principal) -> Result<&Principal, GatewayError> {
    use crate::auth::principal::AuthMethod;
    match p.method {
        AuthMethod::Jwt | AuthMethod::Session => Ok(p),
        AuthMethod::ApiToken => Err(GatewayError::Forbidden(
            "This endpoint needs a login session (a JWT from login); an API token cannot refresh, log out, change the password or create tokens",
        )),
        AuthMethod::ProviderBearer => Err(GatewayError::Forbidden(
            "This endpoint needs a login session (a JWT from login, or a browser's sign-in); a single sign-on provider's token works on protected routes only: it cannot refresh, log out, change the password or create tokens",
        )),
    }
}

/// Refuse a body over the limit by its `Content-Length`, before reading it.
fn check_declared_length<B>(req: &Request<B>) -> Result<(), GatewayError> {
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or(GatewayError::InvalidRequest("Invalid Content-Length"))?;
        if len > MAX_BODY_BYTES as u64 {
            return Err(GatewayError::PayloadTooLarge);
        }
    }
    Ok(())
}

fn is_json<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json")
                || (v.len() > 5 && v[v.len() - 5..].eq_ignore_ascii_case("+json"))
        })
        .unwrap_or(false)
}

/// Read at most 64 KiB.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, GatewayError> {
    check_declared_length(&req)?;
    match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(GatewayError::PayloadTooLarge),
        Err(_) => Err(GatewayError::InvalidRequest("The request body could not be read")),
    }
}

/// A JSON object body (`Content-Type: application/json` required: it keeps cross-site forms out).
async fn read_json(req: Request<Incoming>) -> Result<Value, GatewayError> {
    if !is_json(&req) {
        check_declared_length(&req)?;
        return Err(GatewayError::UnsupportedMediaType);
    }
    let bytes = read_body(req).await?;
    strict_json::parse_object(&bytes)
}

/// A JSON object body, or `{}` when the body is empty.
async fn read_optional_json(req: Request<Incoming>) -> Result<Value, GatewayError> {
    let declared_empty = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    if declared_empty || (!is_json(&req) && !req.headers().contains_key(header::CONTENT_TYPE)) {
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        return Err(GatewayError::UnsupportedMediaType);
    }
    read_json(req).await
}

/// A store failure as the client sees it: 503 when the store is down (the detail goes to the log).
pub fn store_err(e: crate::store::StoreError) -> GatewayError {
    use crate::store::StoreError;
    match e {
        StoreError::Conflict => GatewayError::Conflict("Already exists"),
        StoreError::NotFound => GatewayError::NotFound,
        StoreError::Unavailable(detail) => {
            tracing::error!(%detail, "store unavailable");
            GatewayError::StoreUnavailable
        }
    }
}

/// An account service refusal as the client sees it.
pub fn account_err(e: AccountError) -> GatewayError {
    match e {
        AccountError::Invalid { field, message } => GatewayError::InvalidField { field, message },
        AccountError::NameTaken => GatewayError::Conflict("Username already registered"),
        AccountError::BadCredentials(_) => GatewayError::BadCredentials,
        AccountError::TooManyAttempts(retry_after) => GatewayError::TooManyRequests { retry_after },
        AccountError::WrongPassword => GatewayError::Forbidden("Current password is incorrect"),
        AccountError::UnknownUser => GatewayError::Unauthenticated(AuthFailure::UnknownToken),
        AccountError::NoSuchToken | AccountError::NoSuchSession => GatewayError::NotFound,
        AccountError::NoSession => GatewayError::InvalidRequest(
            "This credential has no session to end; revoke API tokens with DELETE on tokens/{id}",
        ),
        AccountError::Busy => GatewayError::Unavailable("Too many password checks in progress; retry"),
        AccountError::Hashing => GatewayError::Internal,
        AccountError::Store(e) => store_err(e),
    }
}

/// A required string field, or a 400 naming it.
pub fn string_field<'v>(body: &'v Value, field: &'static str) -> Result<&'v str, GatewayError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(GatewayError::InvalidField {
            field,
            message: "must be a string",
        }),
        None => Err(GatewayError::InvalidField {
            field,
            message: "is required",
        }),
    }
}

/// A 2xx JSON answer.
pub fn json(status: StatusCode, body: &Value) -> ApiResponse {
    crate::error::json_response(status, body)
}

pub fn no_content() -> ApiResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
