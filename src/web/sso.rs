//! Single sign-on in the browser: `oidc/<id>/start` sends the browser to the provider,
//! `oidc/<id>/callback` brings it back signed in, `oidc/<id>/backchannel-logout` lets the
//! provider end its sessions.
//!
//! The rules this module keeps:
//! - the flow is the authorization code flow with PKCE (S256), `state` and `nonce`; what the
//!   callback needs is kept server-side (`store::identities`, taken once) under the state's hash,
//!   and the state is also bound to this browser by the `__Host-authgate-oidc` cookie;
//! - every failure at the callback (a wrong or replayed state, an error from the provider, a
//!   failed code exchange, an id_token that fails a check, a user who may not sign in) ends on
//!   the sign-in page with one generic message; the reason goes to the log only;
//! - a session from a provider is the same cookie session as a local sign-in.

use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, Scope};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::pages::{PageResponse, see_other};
use super::{Ctx, audit, forms, sign_in_form, start};
use crate::accounts::sso::SsoUser;
use crate::auth::principal::Principal;
use crate::auth::session;
use crate::error::GatewayError;
use crate::oidc::{Provider, Verified};
use crate::store::identities::Flow;

/// How long a started sign-in may take to come back.
const FLOW_LIFETIME: i64 = 600;

/// Answer `oidc/<id>/…`.
pub async fn handle(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let web = ctx.web;
    let path = req.uri().path();
    let rest = path
        .strip_prefix(web.config.prefix.as_str())
        .and_then(|p| p.strip_prefix("/oidc/"))
        .unwrap_or("");
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(provider) = web.oidc.get(id).cloned() else {
        return Ok(super::not_found(web));
    };
    match (action, req.method()) {
        ("start", &Method::GET | &Method::HEAD) => start_flow(ctx, &req, &provider).await,
        ("callback", &Method::GET) => Box::pin(callback(ctx, req, &provider, who)).await,
        ("backchannel-logout", &Method::POST) => Box::pin(backchannel_logout(ctx, req, &provider)).await,
        ("start" | "callback" | "backchannel-logout", _) => Err(GatewayError::MethodNotAllowed),
        _ => Ok(super::not_found(web)),
    }
}

/// This gateway's callback URL for `provider`, on the origin the browser used.
fn redirect_uri<B>(ctx: &Ctx<'_>, req: &Request<B>, provider: &Provider) -> Option<String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    crate::config::valid_host(host).is_some().then(|| {
        format!(
            "{}://{host}{}/oidc/{}/callback",
            ctx.web.scheme, ctx.web.config.prefix, provider.config.id
        )
    })
}

/// The sign-in page again, with the one message every failed single sign-on shows.
fn failed<B>(ctx: &Ctx<'_>, req: &Request<B>, provider: &Provider, reason: &str) -> PageResponse {
    tracing::info!(provider = %provider.config.id, reason, "single sign-on refused");
    ctx.web.authn.metrics().oidc_sign_in(&provider.config.id, false);
    let message = format!(
        "Signing in with {} did not work. Please try again.",
        provider.config.name
    );
    let mut resp = sign_in_form(ctx, req, StatusCode::UNAUTHORIZED, &message, "");
    resp.headers_mut().append(
        header::SET_COOKIE,
        forms::set_cookie(session::OIDC_COOKIE, "", Some(0), "Lax"),
    );
    resp
}

/// `GET oidc/<id>/start?rd=…`: to the provider's authorization endpoint.
async fn start_flow(ctx: &Ctx<'_>, req: &Request<Incoming>, provider: &Provider) -> Result<PageResponse, GatewayError> {
    if !provider.is_up() && provider.load().await.is_err() {
        let message = format!(
            "{} cannot be reached right now. Try again in a moment.",
            provider.config.name
        );
        return Ok(sign_in_form(ctx, req, StatusCode::SERVICE_UNAVAILABLE, &message, ""));
    }
    let Some(redirect) = redirect_uri(ctx, req, provider) else {
        return Err(GatewayError::InvalidRequest("The Host header is not a host name"));
    };
    let client = match provider.client(&redirect) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(provider = %provider.config.id, error = %e, "single sign-on cannot start");
            return Err(GatewayError::Unavailable("single sign-on provider unavailable"));
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut auth = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in provider.config.scopes.iter().filter(|s| *s != "openid") {
        auth = auth.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = auth.url();
    let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
    let flow = Flow {
        provider: provider.config.id.clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        return_to: forms::return_to(req.uri().query()),
        expires_at: now + FLOW_LIFETIME,
    };
    ctx.web
        .accounts
        .store()
        .put_flow(&session::hash(state.secret()), &flow)
        .await
        .map_err(crate::api::store_err)?;
    let mut resp = see_other(url.as_str());
    resp.headers_mut().append(
        header::SET_COOKIE,
        forms::set_cookie(session::OIDC_COOKIE, state.secret(), Some(FLOW_LIFETIME as u64), "Lax"),
    );
    Ok(resp)
}

/// A query parameter, decoded.
fn param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET oidc/<id>/callback?code=…&state=…`: check everything, then sign in.
async fn callback(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    provider: &Provider,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let state = param(&req, "state").unwrap_or_default();
    let held = session::cookie(req.headers(), session::OIDC_COOKIE)
        .ok()
        .flatten()
        .unwrap_or("");
    if state.is_empty() || state.len() != held.len() || !bool::from(state.as_bytes().ct_eq(held.as_bytes())) {
        return Ok(failed(ctx, &req, provider, "state does not match this browser's"));
    }
    let flow = ctx
        .web
        .accounts
        .store()
        .take_flow(&session::hash(&state))
        .await
        .map_err(crate::api::store_err)?;
    let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
    let Some(flow) = flow.filter(|f| f.provider == provider.config.id && f.expires_at > now) else {
        return Ok(failed(ctx, &req, provider, "unknown, used or expired state"));
    };
    // From here on the sign-in page keeps the flow's `rd`.
    let rd: String = form_urlencoded::byte_serialize(flow.return_to.as_bytes()).collect();
    let page_req = Request::get(format!("/?rd={rd}"))
        .body(())
        .map_err(|_| GatewayError::Internal)?;
    let page_req = with_headers(page_req, &req);
    if param(&req, "error").is_some() {
        return Ok(failed(ctx, &page_req, provider, "the provider answered with an error"));
    }
    let Some(code) = param(&req, "code").filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return Ok(failed(ctx, &page_req, provider, "no code"));
    };
    let verified = match exchange(ctx, &req, provider, code, &flow).await {
        Ok(v) => v,
        Err(reason) => return Ok(failed(ctx, &page_req, provider, &reason)),
    };
    let who_signed = match sso_user(provider, &verified) {
        Ok(u) => u,
        Err(reason) => return Ok(failed(ctx, &page_req, provider, reason)),
    };
    let user = match ctx.web.accounts.sign_in_sso(&who_signed).await {
        Ok(u) => u,
        Err(crate::accounts::AccountError::Store(e)) => return Err(crate::api::store_err(e)),
        Err(e) => return Ok(failed(ctx, &page_req, provider, &e.to_string())),
    };
    ctx.web.authn.metrics().oidc_sign_in(&provider.config.id, true);
    let mut resp = start(
        ctx,
        &page_req,
        &user,
        who,
        ("sso_sign_in", Some(&provider.config.id)),
        &flow.return_to,
    )
    .await?;
    resp.headers_mut().append(
        header::SET_COOKIE,
        forms::set_cookie(session::OIDC_COOKIE, "", Some(0), "Lax"),
    );
    Ok(resp)
}

fn with_headers(mut to: Request<()>, from: &Request<Incoming>) -> Request<()> {
    *to.headers_mut() = from.headers().clone();
    to
}

/// The code exchange (with the PKCE verifier) and the id_token's checks.
async fn exchange(
    ctx: &Ctx<'_>,
    req: &Request<Incoming>,
    provider: &Provider,
    code: String,
    flow: &Flow,
) -> Result<Verified, String> {
    let redirect = redirect_uri(ctx, req, provider).ok_or("the Host header is not a host name")?;
    let client = provider.client(&redirect).map_err(|e| e.to_string())?;
    let request = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()));
    let http = |r| crate::oidc::http::fetch(r);
    let tokens = request
        .request_async(&http)
        .await
        .map_err(|e| format!("code exchange failed: {e}"))?;
    let id_token = openidconnect::TokenResponse::id_token(&tokens).ok_or("no id_token in the token response")?;
    provider
        .verify_id_token(&id_token.to_string(), &flow.nonce)
        .await
        .map_err(|e| e.to_string())
}

/// A string claim (or the first of an array).
fn claim_str<'a>(claims: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    match claims.get(name)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
    .filter(|s| !s.trim().is_empty())
}

/// Who signed in, mapped by the operator's claim names, and whether they may.
fn sso_user(provider: &Provider, v: &Verified) -> Result<SsoUser, &'static str> {
    let c = &provider.config;
    let email = claim_str(&v.claims, &c.email_claim).map(str::to_owned);
    let email_verified = match v.claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let groups: Vec<String> = match v.claims.get(&c.groups_claim) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .take(256)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    if !c.allowed_domains.is_empty() {
        let domain = email
            .as_deref()
            .filter(|_| email_verified)
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        if !domain.is_some_and(|d| c.allowed_domains.contains(&d)) {
            return Err("the email domain is not allowed (or the email is not verified)");
        }
    }
    if !c.allowed_groups.is_empty() && !groups.iter().any(|g| c.allowed_groups.contains(g)) {
        return Err("the user is in none of the allowed groups");
    }
    Ok(SsoUser {
        issuer: c.issuer.clone(),
        subject: v.subject.clone(),
        provider: c.id.clone(),
        email,
        email_verified,
        username: claim_str(&v.claims, &c.username_claim).map(str::to_owned),
        groups,
        may_link_by_email: c.link_verified_email,
    })
}

/// `POST oidc/<id>/backchannel-logout` (`logout_token=…`): the provider says a user signed out;
/// their sessions from this provider end on every replica.
async fn backchannel_logout(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    provider: &Provider,
) -> Result<PageResponse, GatewayError> {
    let (_, form) = forms::read(req, ctx.web.body_idle).await?;
    let token = form.get("logout_token");
    let verified = match provider.verify_logout_token(token).await {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(provider = %provider.config.id, error = %e, "back-channel logout refused");
            return Err(GatewayError::InvalidRequest("The logout token is not valid"));
        }
    };
    let accounts = &ctx.web.accounts;
    let linked = accounts
        .store()
        .identity(&provider.config.issuer, &verified.subject)
        .await
        .map_err(crate::api::store_err)?;
    if let Some(linked) = linked {
        let ended = accounts
            .end_provider_sessions(&linked.user_id, &provider.config.id)
            .await
            .map_err(crate::api::account_err)?;
        audit(ctx, "backchannel_logout", Some(&linked.user_id));
        tracing::info!(provider = %provider.config.id, sessions = ended, "back-channel logout");
    }
    Ok(super::pages::respond(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        bytes::Bytes::new(),
    ))
}
