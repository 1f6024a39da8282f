//! authgate as an OpenID Provider, over HTTP: discovery, `openid/authorize` (the code flow, with
//! the sign-in page and sessions of this module's parent), `openid/consent`, `openid/token`,
//! `openid/userinfo` (those two in `token`) and `openid/end_session`. Clients, keys and tokens are
//! `idp`'s.
//!
//! The rules this module keeps:
//! - an authorization request names a registered client and one of its redirect URIs, exactly, or
//!   it ends on an error page here: nothing is ever sent to an unregistered URI; every later
//!   refusal goes back to the client as the error OpenID Connect names, with `state` echoed;
//! - a request parameter given twice is refused (RFC 6749 §3.1), as are `request` and
//!   `request_uri`;
//! - a code is issued only for a live session, after consent unless the client is trusted;
//! - sign-out returns only to a URI registered for the client, and ends the session without
//!   asking only for an `id_token_hint` of this browser's user.

use std::collections::HashMap;

use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;

mod token;

use super::pages::{PageResponse, see_other};
use super::{Ctx, audit, csrf_for, current, expired_form, forms, with_cookie};
use crate::auth::principal::Principal;
use crate::auth::session;
use crate::config::ClientConfig;
use crate::error::GatewayError;
use crate::idp::{self, Idp, OAuthError};
use crate::store::grants::Grant;
use token::oauth_error;

/// The longest `state` or `nonce` accepted (they come back in URLs and tokens).
const MAX_ECHO: usize = 512;

/// Answer `/.well-known/openid-configuration` and `openid/…` below `web.prefix`.
pub async fn handle(
    ctx: &Ctx<'_>,
    idp: &Idp,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let path = req.uri().path();
    if path == idp::DISCOVERY_PATH {
        return match *req.method() {
            Method::GET | Method::HEAD => Ok(discovery(idp)),
            _ => Err(GatewayError::MethodNotAllowed),
        };
    }
    let page = path.strip_prefix(idp.prefix.as_str()).unwrap_or(path).to_owned();
    match (page.as_str(), req.method()) {
        // GET only: a HEAD must not issue a code the client never sees.
        (idp::AUTHORIZE, &Method::GET) => {
            let query = req.uri().query().unwrap_or("").to_owned();
            authorize(ctx, idp, &req, &query, who).await
        }
        ("/openid/consent", &Method::POST) => Box::pin(consent(ctx, idp, req, who)).await,
        (idp::TOKEN, &Method::POST) => Ok(Box::pin(token::token(ctx, idp, req)).await),
        (idp::USERINFO, &Method::GET | &Method::POST) => Ok(Box::pin(token::userinfo(ctx, idp, &req)).await),
        (idp::END_SESSION, &Method::GET) => Box::pin(end_session(ctx, idp, req)).await,
        (idp::END_SESSION, &Method::POST) => Box::pin(end_session_confirmed(ctx, idp, req)).await,
        (idp::TOKEN, _) => Ok(oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            OAuthError::new("invalid_request", "the token endpoint takes POST"),
        )),
        (idp::AUTHORIZE | idp::USERINFO | idp::END_SESSION | "/openid/consent", _) => {
            Err(GatewayError::MethodNotAllowed)
        }
        _ => Ok(super::not_found(ctx.web)),
    }
}

fn discovery(idp: &Idp) -> PageResponse {
    let mut resp = http::Response::new(http_body_util::Full::new(idp.discovery.clone()));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// Query or form parameters, each name at most once.
pub(super) struct Params(HashMap<String, String>);

impl Params {
    pub(super) fn parse(input: &[u8]) -> Result<Params, OAuthError> {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(input) {
            if map.insert(k.into_owned(), v.into_owned()).is_some() {
                return Err(OAuthError::new(
                    "invalid_request",
                    "a parameter is given more than once",
                ));
            }
        }
        Ok(Params(map))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// A checked authorization request: its client, where to answer, and what it asks for.
struct AuthzRequest<'a> {
    client: &'a ClientConfig,
    redirect_uri: String,
    state: Option<String>,
    /// The granted scopes, in the client's order, space-separated.
    scope: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    prompt_none: bool,
    prompt_consent: bool,
    prompt_login: bool,
    /// `max_age`: the longest time since the person last signed in, in seconds.
    max_age: Option<u64>,
}

/// Where a refused request ends: on a page here (no trustworthy redirect URI), or back at the
/// client with an error.
enum Refusal {
    Page(&'static str),
    Redirect(String),
}

/// The client's redirect URI with `pairs` added to its query.
fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(uri.len() + 64);
    out.push_str(uri);
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    out.push(if uri.contains('?') { '&' } else { '?' });
    out.push_str(&ser.finish());
    out
}

fn error_redirect(idp: &Idp, uri: &str, state: Option<&str>, e: OAuthError) -> String {
    let mut pairs = vec![("error", e.error), ("error_description", e.description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &idp.config.issuer));
    redirect_with(uri, &pairs)
}

/// Check an authorization request (OpenID Connect Core §3.1.2.2).
fn check<'a>(idp: &'a Idp, p: &Params) -> Result<AuthzRequest<'a>, Refusal> {
    let client = p.get("client_id").and_then(|id| idp.client(id)).ok_or(Refusal::Page(
        "The application that sent you here is not registered with this gateway.",
    ))?;
    let redirect_uri = p
        .get("redirect_uri")
        .filter(|uri| client.redirect_uris.iter().any(|r| r == uri))
        .ok_or(Refusal::Page(
            "The application asked to send you back to an address it has not registered.",
        ))?
        .to_owned();
    // A state too long to echo is refused without it (an error redirect never carries it).
    let state = p.get("state").map(str::to_owned).filter(|s| s.len() <= MAX_ECHO);
    let refuse = |e: OAuthError| Refusal::Redirect(error_redirect(idp, &redirect_uri, state.as_deref(), e));
    if p.get("request").is_some() {
        return Err(refuse(OAuthError::new(
            "request_not_supported",
            "request objects are not supported",
        )));
    }
    if p.get("request_uri").is_some() {
        return Err(refuse(OAuthError::new(
            "request_uri_not_supported",
            "request_uri is not supported",
        )));
    }
    if p.get("state").is_some_and(|s| s.len() > MAX_ECHO) {
        return Err(refuse(OAuthError::new("invalid_request", "state is too long")));
    }
    if p.get("response_type") != Some("code") {
        return Err(refuse(OAuthError::new(
            "unsupported_response_type",
            "only response_type=code is supported",
        )));
    }
    if p.get("response_mode").is_some_and(|m| m != "query") {
        return Err(refuse(OAuthError::new(
            "invalid_request",
            "only response_mode=query is supported",
        )));
    }
    let asked: Vec<&str> = p
        .get("scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    if !asked.contains(&"openid") {
        return Err(refuse(OAuthError::new("invalid_scope", "scope must include openid")));
    }
    if asked.iter().any(|s| !client.scopes.iter().any(|c| c == s)) {
        return Err(refuse(OAuthError::new(
            "invalid_scope",
            "a scope is not allowed for this client",
        )));
    }
    let scope = client
        .scopes
        .iter()
        .filter(|s| asked.contains(&s.as_str()))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let nonce = p.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_ECHO) {
        return Err(refuse(OAuthError::new("invalid_request", "nonce is too long")));
    }
    let code_challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (Some(c), Some("S256")) if idp::pkce::challenge_ok(c) => Some(c.to_owned()),
        (Some(_), Some("S256")) => {
            return Err(refuse(OAuthError::new(
                "invalid_request",
                "code_challenge is not an S256 challenge",
            )));
        }
        (Some(_), _) => {
            return Err(refuse(OAuthError::new(
                "invalid_request",
                "code_challenge_method must be S256",
            )));
        }
        (None, Some(_)) => return Err(refuse(OAuthError::new("invalid_request", "code_challenge is missing"))),
        (None, None) if client.require_pkce => {
            return Err(refuse(OAuthError::new(
                "invalid_request",
                "this client must send a PKCE code_challenge (S256)",
            )));
        }
        (None, None) => None,
    };
    let prompt: Vec<&str> = p
        .get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    let prompt_none = prompt.contains(&"none");
    if prompt_none && prompt.len() > 1 {
        return Err(refuse(OAuthError::new(
            "invalid_request",
            "prompt=none cannot be combined",
        )));
    }
    let max_age = match p.get("max_age").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return Err(refuse(OAuthError::new(
                "invalid_request",
                "max_age is not a number of seconds",
            )));
        }
    };
    Ok(AuthzRequest {
        client,
        redirect_uri,
        state,
        scope,
        nonce,
        code_challenge,
        prompt_none,
        prompt_consent: prompt.contains(&"consent"),
        prompt_login: prompt.contains(&"login"),
        max_age,
    })
}

/// An authorization request's query, checked; a refusal is already the answer to give (a page
/// here, or a redirect back to the client).
fn authz_request<'a>(ctx: &Ctx<'_>, idp: &'a Idp, query: &str) -> Result<AuthzRequest<'a>, Box<PageResponse>> {
    let params = Params::parse(query.as_bytes()).map_err(|_| {
        Box::new(bad_request_page(
            ctx,
            "A parameter of the request is given more than once.",
        ))
    })?;
    check(idp, &params).map_err(|refusal| {
        Box::new(match refusal {
            Refusal::Page(why) => bad_request_page(ctx, why),
            Refusal::Redirect(to) => see_other(&to),
        })
    })
}

/// The page for a request that names no registered client and redirect URI: never redirected.
fn bad_request_page(ctx: &Ctx<'_>, why: &str) -> PageResponse {
    ctx.web.pages.message(
        StatusCode::BAD_REQUEST,
        "This sign-in link is not valid",
        &format!("{why} Go back to the application and start signing in again."),
        None,
    )
}

/// The sign-in page keeps only a return address it accepts (`forms::safe_return`: 2048 characters
/// at most). A longer authorization request would be dropped there and the person left on `/`
/// with the client waiting, so it is refused before the sign-in page, where the client hears of it.
const TOO_LONG_FOR_SIGN_IN: OAuthError = OAuthError::new(
    "invalid_request",
    "the authorization request is too long to carry through the sign-in page",
);

/// `GET openid/authorize`: sign in if needed, ask consent if needed, then send the browser back
/// with a code.
async fn authorize<B>(
    ctx: &Ctx<'_>,
    idp: &Idp,
    req: &Request<B>,
    query: &str,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let ar = match authz_request(ctx, idp, query) {
        Ok(ar) => ar,
        Err(answer) => return Ok(*answer),
    };
    let refuse = |e| {
        Ok(see_other(&error_redirect(
            idp,
            &ar.redirect_uri,
            ar.state.as_deref(),
            e,
        )))
    };
    let Some(principal) = current(ctx.web, req).await else {
        if ar.prompt_none {
            return refuse(OAuthError::new("login_required", "the user is not signed in"));
        }
        let here = format!("{}{}?{query}", idp.prefix, idp::AUTHORIZE);
        if !forms::safe_return(&here) {
            return refuse(TOO_LONG_FOR_SIGN_IN);
        }
        return Ok(see_other(&ctx.web.sign_in_url(&here)));
    };
    *who = Some(principal.clone());
    let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
    let auth_time = auth_time(ctx, &principal, now).await;
    if ar.prompt_login || too_old(&ar, auth_time, now) {
        if ar.prompt_none {
            return refuse(OAuthError::new("login_required", "the user must sign in again"));
        }
        return Ok(sign_in_again(ctx, idp, &ar, query));
    }
    if !ar.client.trusted || ar.prompt_consent {
        if ar.prompt_none {
            return refuse(OAuthError::new("consent_required", "the user has not consented"));
        }
        return Ok(consent_page(ctx, idp, req, &ar, query));
    }
    grant(ctx, idp, &ar, &principal, auth_time).await
}

/// `max_age` below this counts as this: the time a person needs to sign in again, so a client
/// asking for `max_age=0` is not sent round in circles.
const MIN_MAX_AGE: u64 = 30;

/// To the sign-in form even though signed in (`login=1`), and back to authorize without
/// `prompt=login` afterwards, so it is asked once.
fn sign_in_again(ctx: &Ctx<'_>, idp: &Idp, ar: &AuthzRequest<'_>, query: &str) -> PageResponse {
    let here = format!("{}{}?{}", idp.prefix, idp::AUTHORIZE, without_login_prompt(query));
    if !forms::safe_return(&here) {
        return see_other(&error_redirect(
            idp,
            &ar.redirect_uri,
            ar.state.as_deref(),
            TOO_LONG_FOR_SIGN_IN,
        ));
    }
    see_other(&format!("{}&login=1", ctx.web.sign_in_url(&here)))
}

/// Whether the sign-in at `auth_time` is older than the request's `max_age` allows.
fn too_old(ar: &AuthzRequest<'_>, auth_time: i64, now: i64) -> bool {
    ar.max_age
        .is_some_and(|max| now.saturating_sub(auth_time) > i64::try_from(max.max(MIN_MAX_AGE)).unwrap_or(i64::MAX))
}

/// When the person behind `principal` signed in: their session's start.
async fn auth_time(ctx: &Ctx<'_>, principal: &Principal, now: i64) -> i64 {
    match &principal.jti {
        Some(id) => ctx
            .web
            .accounts
            .store()
            .session_started(id)
            .await
            .ok()
            .flatten()
            .unwrap_or(now),
        None => now,
    }
}

/// An authorization request's query with `login` taken out of `prompt` (and an empty `prompt`
/// dropped).
fn without_login_prompt(query: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "prompt" {
            let rest: Vec<&str> = v.split(' ').filter(|p| !p.is_empty() && *p != "login").collect();
            if !rest.is_empty() {
                out.append_pair("prompt", &rest.join(" "));
            }
        } else {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

/// Issue a code for a signed-in user and send the browser back with it.
async fn grant(
    ctx: &Ctx<'_>,
    idp: &Idp,
    ar: &AuthzRequest<'_>,
    principal: &Principal,
    auth_time: i64,
) -> Result<PageResponse, GatewayError> {
    let store = ctx.web.accounts.store();
    let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
    let (code, hash) = idp::new_code();
    let g = Grant {
        client_id: ar.client.client_id.clone(),
        user_id: principal.user_id.as_str().to_owned(),
        redirect_uri: ar.redirect_uri.clone(),
        scope: ar.scope.clone(),
        nonce: ar.nonce.clone(),
        code_challenge: ar.code_challenge.clone(),
        auth_time,
        expires_at: idp::code_expiry(now),
    };
    store.put_grant(&hash, &g).await.map_err(|e| {
        tracing::warn!(error = %e, "storing an authorization code failed");
        GatewayError::StoreUnavailable
    })?;
    tracing::info!(
        target: "authgate::audit",
        event = "oidc_code_issued",
        user_id = principal.user_id.as_str(),
        client_id = ar.client.client_id.as_str(),
        request_id = ctx.request_id.to_str().unwrap_or("-"),
    );
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &ar.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &idp.config.issuer));
    Ok(see_other(&redirect_with(&ar.redirect_uri, &pairs)))
}

/// The origin of an absolute URL (`https://host:port`), for the pages' `form-action`.
fn origin(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    Some(url.origin().ascii_serialization()).filter(|o| o != "null")
}

/// For a sign-in or registration page whose `rd` is a valid authorization request: the origin
/// its form's answer will end at (the client's redirect URI), for `form-action`.
pub fn form_target(web: &super::Web, rd: &str) -> Option<String> {
    let idp = web.idp.as_ref()?;
    let query = rd.strip_prefix(&format!("{}{}?", idp.prefix, idp::AUTHORIZE))?;
    let params = Params::parse(query.as_bytes()).ok()?;
    let ar = check(idp, &params).ok()?;
    origin(&ar.redirect_uri)
}

/// The consent page: which application, what it will learn, Allow or Deny.
fn consent_page<B>(ctx: &Ctx<'_>, idp: &Idp, req: &Request<B>, ar: &AuthzRequest<'_>, query: &str) -> PageResponse {
    #[derive(serde::Serialize)]
    struct Consent<'a> {
        client: &'a str,
        claims: Vec<&'static str>,
        query: &'a str,
        csrf: &'a str,
        action: String,
    }
    let has = |s: &str| ar.scope.split(' ').any(|x| x == s);
    let mut claims = vec!["your account id"];
    if has("profile") {
        claims.push("your username, role and groups");
    } else if has("groups") {
        claims.push("your role and groups");
    }
    if has("email") {
        claims.push("your email address");
    }
    let (csrf, cookie) = csrf_for(req);
    let page = Consent {
        client: &ar.client.client_id,
        claims,
        query,
        csrf: &csrf,
        action: format!("{}/openid/consent", idp.prefix),
    };
    let mut resp = ctx
        .web
        .pages
        .render(StatusCode::OK, "consent.html", "Allow access?", page);
    if let Some(o) = origin(&ar.redirect_uri) {
        super::pages::allow_form_target(&mut resp, &o);
    }
    with_cookie(resp, cookie)
}

/// `POST openid/consent`: the person's answer; the request is checked again from the form.
async fn consent(
    ctx: &Ctx<'_>,
    idp: &Idp,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let (parts, form) = forms::read(req, ctx.web.body_idle).await?;
    let query = form.get("query").to_owned();
    if !forms::csrf_ok(&parts, &form, ctx.web.scheme) {
        let back = format!("{}{}?{query}", idp.prefix, idp::AUTHORIZE);
        return Ok(expired_form(ctx.web, &back));
    }
    let ar = match authz_request(ctx, idp, &query) {
        Ok(ar) => ar,
        Err(answer) => return Ok(*answer),
    };
    let req = Request::from_parts(parts, ());
    let Some(principal) = current(ctx.web, &req).await else {
        let here = format!("{}{}?{query}", idp.prefix, idp::AUTHORIZE);
        return Ok(see_other(&ctx.web.sign_in_url(&here)));
    };
    *who = Some(principal.clone());
    if form.get("decision") != "allow" {
        audit(ctx, "oidc_consent_denied", Some(principal.user_id.as_str()));
        let e = OAuthError::new("access_denied", "the user denied access");
        return Ok(see_other(&error_redirect(
            idp,
            &ar.redirect_uri,
            ar.state.as_deref(),
            e,
        )));
    }
    let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
    let auth_time = auth_time(ctx, &principal, now).await;
    if too_old(&ar, auth_time, now) {
        // The consent page stayed open past `max_age`: a fresh sign-in, then authorize and its
        // consent again, instead of a code for a sign-in older than the client allows.
        return Ok(sign_in_again(ctx, idp, &ar, &query));
    }
    grant(ctx, idp, &ar, &principal, auth_time).await
}

/// Where to go after signing out, when the request names a registered URI for its client (from
/// `client_id` or the hint's audience); `Err` when it names one that is not registered.
fn logout_target(idp: &Idp, p: &Params, hint_aud: Option<&str>) -> Result<Option<String>, &'static str> {
    let Some(uri) = p.get("post_logout_redirect_uri") else {
        return Ok(None);
    };
    let client = p
        .get("client_id")
        .or(hint_aud)
        .and_then(|id| idp.client(id))
        .ok_or("The application did not say who it is, so the gateway cannot send you back to it.")?;
    if p.get("client_id").is_some() && hint_aud.is_some_and(|aud| Some(aud) != p.get("client_id")) {
        return Err("The sign-out request names two different applications.");
    }
    if !client.post_logout_redirect_uris.iter().any(|r| r == uri) {
        return Err("The application asked to send you to an address it has not registered.");
    }
    let mut pairs = Vec::new();
    if let Some(s) = p.get("state") {
        if s.len() > MAX_ECHO {
            return Err("The sign-out request is too long.");
        }
        pairs.push(("state", s));
    }
    Ok(Some(if pairs.is_empty() {
        uri.to_owned()
    } else {
        redirect_with(uri, &pairs)
    }))
}

/// `GET openid/end_session` (RP-Initiated Logout 1.0): with an `id_token_hint` for this
/// browser's user, sign out at once; otherwise ask first.
async fn end_session(ctx: &Ctx<'_>, idp: &Idp, req: Request<Incoming>) -> Result<PageResponse, GatewayError> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let Ok(p) = Params::parse(query.as_bytes()) else {
        return Ok(bad_request_page(
            ctx,
            "A parameter of the request is given more than once.",
        ));
    };
    let hint = p.get("id_token_hint").and_then(|t| idp.verify_hint(t));
    let target = match logout_target(idp, &p, hint.as_ref().map(|(_, aud)| aud.as_str())) {
        Ok(t) => t,
        Err(why) => return Ok(bad_request_page(ctx, why)),
    };
    let signed_in = current(ctx.web, &req).await;
    let hinted = match (&signed_in, &hint) {
        (Some(who), Some((sub, _))) => who.user_id.as_str() == sub,
        _ => false,
    };
    if signed_in.is_none() || hinted {
        return sign_out_and_go(ctx, &req, target).await;
    }
    #[derive(serde::Serialize)]
    struct Confirm<'a> {
        message: &'a str,
        csrf: &'a str,
        query: &'a str,
        action: String,
    }
    let (csrf, cookie) = csrf_for(&req);
    let page = Confirm {
        message: "An application asked to sign you out of this gateway.",
        csrf: &csrf,
        query: &query,
        action: format!("{}{}", idp.prefix, idp::END_SESSION),
    };
    let mut resp = ctx
        .web
        .pages
        .render(StatusCode::OK, "end_session.html", "Sign out?", page);
    if let Some(o) = target.as_deref().and_then(origin) {
        super::pages::allow_form_target(&mut resp, &o);
    }
    Ok(with_cookie(resp, cookie))
}

/// `POST openid/end_session`: the person confirmed signing out.
async fn end_session_confirmed(ctx: &Ctx<'_>, idp: &Idp, req: Request<Incoming>) -> Result<PageResponse, GatewayError> {
    let (parts, form) = forms::read(req, ctx.web.body_idle).await?;
    let query = form.get("query").to_owned();
    if !forms::csrf_ok(&parts, &form, ctx.web.scheme) {
        return Ok(expired_form(
            ctx.web,
            &format!("{}{}?{query}", idp.prefix, idp::END_SESSION),
        ));
    }
    let Ok(p) = Params::parse(query.as_bytes()) else {
        return Ok(bad_request_page(
            ctx,
            "A parameter of the request is given more than once.",
        ));
    };
    let hint = p.get("id_token_hint").and_then(|t| idp.verify_hint(t));
    let target = match logout_target(idp, &p, hint.as_ref().map(|(_, aud)| aud.as_str())) {
        Ok(t) => t,
        Err(why) => return Ok(bad_request_page(ctx, why)),
    };
    let req = Request::from_parts(parts, ());
    sign_out_and_go(ctx, &req, target).await
}

/// End this browser's session, then go to `target` or show the signed-out page.
async fn sign_out_and_go<B>(
    ctx: &Ctx<'_>,
    req: &Request<B>,
    target: Option<String>,
) -> Result<PageResponse, GatewayError> {
    if let Ok(Some(secret)) = session::cookie(req.headers(), session::COOKIE) {
        let ended = ctx
            .web
            .accounts
            .end_session_by_secret(secret)
            .await
            .map_err(crate::api::account_err)?;
        audit(ctx, "oidc_end_session", ended.as_ref().map(|s| s.user_id.as_str()));
    }
    let Some(target) = target else {
        return Ok(super::signed_out(ctx.web));
    };
    let mut resp = see_other(&target);
    resp.headers_mut()
        .append(header::SET_COOKIE, forms::clear_session_cookie());
    Ok(resp)
}
