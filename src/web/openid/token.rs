//! The provider's endpoints for programs: `openid/token` (a code for tokens, after client
//! authentication) and `openid/userinfo` (the claims of an access token's user). Their answers
//! are JSON, refusals the error codes of RFC 6749 §5.2 and RFC 6750 §3.1.
//!
//! The rules this module keeps: the client is authenticated before the code is read; the code is
//! taken once, then checked for client, expiry, redirect URI, PKCE verifier and user, in that
//! order; every answer carries `Cache-Control: no-store`.

use http::{HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::super::pages::PageResponse;
use super::super::{Ctx, forms};
use super::Params;
use crate::config::ClientConfig;
use crate::idp::{self, Idp, OAuthError, Person};

/// An OAuth error as JSON (RFC 6749 §5.2), with authgate's `detail`, `message` and `code` too.
pub(super) fn oauth_error(status: StatusCode, e: OAuthError) -> PageResponse {
    crate::error::json_response(
        status,
        &json!({
            "error": e.error,
            "error_description": e.description,
            "detail": e.description,
            "message": e.description,
            "code": status.as_u16(),
        }),
    )
}

/// The client credentials of a token request: HTTP Basic (RFC 6749 §2.3.1, each part
/// form-urlencoded) or `client_id` and `client_secret` in the body, never both.
fn client_credentials(headers: &http::HeaderMap, p: &Params) -> Result<(String, String, bool), OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")));
    match (basic, p.get("client_secret")) {
        (Some(_), Some(_)) => Err(OAuthError::new(
            "invalid_request",
            "use one client authentication method, not two",
        )),
        (Some(b64), None) => {
            use base64::Engine;
            let bad = OAuthError::new("invalid_client", "client authentication failed");
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| bad)?;
            let text = String::from_utf8(raw).map_err(|_| bad)?;
            let (id, secret) = text.split_once(':').ok_or(bad)?;
            let decode = |s: &str| -> String {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let id = decode(id);
            if p.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::new(
                    "invalid_request",
                    "client_id differs from the authenticated client",
                ));
            }
            Ok((id, decode(secret), true))
        }
        (None, Some(secret)) => {
            let id = p
                .get("client_id")
                .ok_or(OAuthError::new("invalid_client", "client authentication failed"))?;
            Ok((id.to_owned(), secret.to_owned(), false))
        }
        (None, None) => Err(OAuthError::new("invalid_client", "client authentication is required")),
    }
}

/// `POST openid/token`: a code for tokens (RFC 6749 §4.1.3, OpenID Connect Core §3.1.3).
pub(super) async fn token(ctx: &Ctx<'_>, idp: &Idp, req: Request<Incoming>) -> PageResponse {
    let (parts, body) = match forms::read_raw(req, ctx.web.body_idle).await {
        Ok(read) => read,
        Err(e) => {
            let status = e.to_response().status();
            return oauth_error(
                status,
                OAuthError::new(
                    "invalid_request",
                    "the body must be a form (application/x-www-form-urlencoded)",
                ),
            );
        }
    };
    let p = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, e),
    };
    let (id, secret, basic) = match client_credentials(&parts.headers, &p) {
        Ok(c) => c,
        Err(e) if e.error == "invalid_client" => return client_refused(e, true),
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, e),
    };
    let client = match idp.authenticate(&id, &secret) {
        Ok(c) => c,
        Err(e) => {
            audit_token(ctx, "oidc_client_refused", None, Some(&id));
            return client_refused(e, basic);
        }
    };
    match exchange(ctx, idp, client, &p).await {
        Ok(tokens) => {
            let mut resp = crate::error::json_response(StatusCode::OK, &tokens);
            resp.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Err((status, e)) => oauth_error(status, e),
    }
}

/// 401 `invalid_client`, with a Basic challenge (RFC 6749 §5.2).
fn client_refused(e: OAuthError, basic: bool) -> PageResponse {
    let mut resp = oauth_error(StatusCode::UNAUTHORIZED, e);
    if basic {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"authgate\""),
        );
    }
    resp
}

fn audit_token(ctx: &Ctx<'_>, event: &'static str, user_id: Option<&str>, client_id: Option<&str>) {
    tracing::info!(
        target: "authgate::audit",
        event,
        user_id,
        client_id,
        client = %ctx.client,
        request_id = ctx.request_id.to_str().unwrap_or("-"),
    );
}

async fn exchange(
    ctx: &Ctx<'_>,
    idp: &Idp,
    client: &ClientConfig,
    p: &Params,
) -> Result<Value, (StatusCode, OAuthError)> {
    let bad = |d| (StatusCode::BAD_REQUEST, OAuthError::new("invalid_grant", d));
    let unavailable = |_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::new("temporarily_unavailable", "the store is not available; retry"),
        )
    };
    if p.get("grant_type") != Some("authorization_code") {
        return Err((
            StatusCode::BAD_REQUEST,
            OAuthError::new("unsupported_grant_type", "only authorization_code is supported"),
        ));
    }
    let code = p.get("code").ok_or((
        StatusCode::BAD_REQUEST,
        OAuthError::new("invalid_request", "code is missing"),
    ))?;
    let store = ctx.web.accounts.store();
    let grant = store
        .take_grant(&idp::code_hash(code))
        .await
        .map_err(unavailable)?
        .ok_or(bad("the code is unknown, expired or already used"))?;
    let now = crate::clock::now_secs();
    if grant.client_id != client.client_id {
        audit_token(ctx, "oidc_code_misused", Some(&grant.user_id), Some(&client.client_id));
        return Err(bad("the code was issued to another client"));
    }
    if i64::try_from(now).unwrap_or(i64::MAX) >= grant.expires_at {
        return Err(bad("the code is unknown, expired or already used"));
    }
    if p.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(bad("redirect_uri differs from the authorization request's"));
    }
    match (&grant.code_challenge, p.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if idp::pkce::matches(challenge, verifier) => {}
        (Some(_), Some(_)) => return Err(bad("the code_verifier does not match the code_challenge")),
        (Some(_), None) => return Err(bad("code_verifier is missing")),
        (None, Some(_)) => {
            return Err(bad(
                "code_verifier given, but the authorization request had no challenge",
            ));
        }
        (None, None) => {}
    }
    let accounts = &ctx.web.accounts;
    let user = accounts
        .current_user(&grant.user_id)
        .await
        .map_err(|_| bad("the user may not sign in"))?;
    let access = accounts
        .access(&user.id)
        .await
        .map_err(|_| bad("the user may not sign in"))?;
    let email_verified = store.email_verified(&user.id, &user.email).await.map_err(unavailable)?;
    let person = Person {
        username: user.username.clone(),
        email: user.email.clone(),
        email_verified,
        role: access.role,
        groups: access.groups,
    };
    let tokens = idp.issue(&grant, &person, now).map_err(|e| {
        tracing::error!(error = %e, "signing an ID token failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            OAuthError::new("server_error", "the tokens could not be signed"),
        )
    })?;
    audit_token(ctx, "oidc_token_issued", Some(&user.id), Some(&client.client_id));
    serde_json::to_value(&tokens).map_err(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            OAuthError::new("server_error", "the tokens could not be written"),
        )
    })
}

/// `GET|POST openid/userinfo`: the claims of the access token's user (OpenID Connect Core §5.3).
pub(super) async fn userinfo<B>(ctx: &Ctx<'_>, idp: &Idp, req: &Request<B>) -> PageResponse {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let Some(token) = bearer else {
        let mut resp = oauth_error(
            StatusCode::UNAUTHORIZED,
            OAuthError::new("invalid_request", "send the access token as Authorization: Bearer"),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"authgate\""),
        );
        return resp;
    };
    let refused = |e: OAuthError| {
        let mut resp = oauth_error(StatusCode::UNAUTHORIZED, e);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"authgate\", error=\"invalid_token\""),
        );
        resp
    };
    let claims = match idp.verify_access(token.trim()) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let accounts = &ctx.web.accounts;
    let inactive = OAuthError::new("invalid_token", "the user is disabled or deleted");
    let Ok(user) = accounts.current_user(&claims.sub).await else {
        return refused(inactive);
    };
    let Ok(access) = accounts.access(&user.id).await else {
        return refused(inactive);
    };
    let email_verified = accounts
        .store()
        .email_verified(&user.id, &user.email)
        .await
        .unwrap_or(false);
    let person = Person {
        username: user.username.clone(),
        email: user.email.clone(),
        email_verified,
        role: access.role,
        groups: access.groups,
    };
    let mut body = serde_json::to_value(person.released(&claims.scope)).unwrap_or_else(|_| json!({}));
    if let Some(map) = body.as_object_mut() {
        map.insert("sub".into(), Value::String(claims.sub));
    }
    crate::error::json_response(StatusCode::OK, &body)
}
