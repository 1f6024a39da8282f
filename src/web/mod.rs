//! The browser half of the gateway: the pages under `web.prefix` (`/_auth` by default), answered
//! by the gateway and never forwarded (but `{web.prefix}/verify`, forward-auth, which is
//! `proxy::verify`'s). Sign-in and registration start a cookie session
//! (`__Host-authgate`); the account page manages API tokens, sessions and the password; sign-out
//! ends the session.
//!
//! The rules this module keeps:
//! - every POST passes the CSRF check (`forms::csrf_ok`) before anything else is done with it;
//! - a sign-in goes through `Accounts::sign_in`, so the login limits and the dummy hash apply
//!   exactly as on `/api/auth/login`, and its one failure message never says whether the user
//!   exists;
//! - a session's id is new at every sign-in, and the cookie never holds anything but that id;
//! - pages render with the security headers of `pages::respond`.

mod account;
mod agent;
pub mod forms;
mod openid;
pub mod pages;
mod sso;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;

use crate::accounts::{AccountError, Accounts};
use crate::auth::Authenticator;
use crate::auth::principal::Principal;
use crate::auth::session;
use crate::config::{Registration, WebConfig};
use crate::error::GatewayError;
use crate::store::User;
use pages::{PageResponse, Pages, see_other};

/// What the pages work with, built once at start-up.
pub struct Web {
    pub accounts: Arc<Accounts>,
    pub authn: Arc<Authenticator>,
    pub config: WebConfig,
    pub registration: Registration,
    /// `https` or `http`: the gateway's own origin, for the CSRF check.
    pub scheme: &'static str,
    pub pages: Pages,
    /// `limits.body_idle_timeout`: a form body that stops coming for this long is refused (408).
    pub body_idle: std::time::Duration,
    /// `[[oidc.providers]]`: one button each on the sign-in page.
    pub oidc: Arc<crate::oidc::Providers>,
    /// `accounts.local_sign_in`: the username and password form.
    pub local_sign_in: bool,
    /// `[[oidc.clients]]`: authgate as their OpenID Provider (`openid/…`), when configured.
    pub idp: Option<Arc<crate::idp::Idp>>,
}

/// What a page needs to know about the request besides its body.
pub struct Ctx<'a> {
    pub web: &'a Web,
    /// The client (behind a trusted proxy, the address it reported): the login limits count it.
    pub client: IpAddr,
    pub request_id: &'a HeaderValue,
}

impl Web {
    pub fn new(
        accounts: Arc<Accounts>,
        authn: Arc<Authenticator>,
        config: WebConfig,
        registration: Registration,
        scheme: &'static str,
        body_idle: std::time::Duration,
    ) -> Web {
        let pages = Pages::new(&config);
        Web {
            accounts,
            authn,
            config,
            registration,
            scheme,
            pages,
            body_idle,
            oidc: Arc::new(crate::oidc::Providers::new(&[])),
            local_sign_in: true,
            idp: None,
        }
    }

    /// As an OpenID Provider for `[[oidc.clients]]`.
    pub fn with_idp(mut self, idp: Option<Arc<crate::idp::Idp>>) -> Web {
        self.idp = idp;
        self
    }

    /// With single sign-on providers, and the local form on or off.
    pub fn with_sso(mut self, oidc: Arc<crate::oidc::Providers>, local_sign_in: bool) -> Web {
        self.oidc = oidc;
        self.local_sign_in = local_sign_in;
        self
    }

    /// Where a browser is sent to sign in before reaching `target` (a path and query that passed
    /// the path rules).
    pub fn sign_in_url(&self, target: &str) -> String {
        let rd: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
        format!("{}/sign-in?rd={rd}", self.config.prefix)
    }
}

/// Whether a request is a browser navigating to a page (sent to sign in rather than given a 401):
/// a GET or HEAD with `Sec-Fetch-Mode: navigate`, or whose `Accept` puts HTML first. API clients
/// (`*/*`, `application/json`) are not.
pub fn is_navigation<B>(req: &Request<B>) -> bool {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return false;
    }
    let h = req.headers();
    if let Some(mode) = h.get("sec-fetch-mode") {
        return mode.as_bytes() == b"navigate";
    }
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|first| {
            let media = first.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("text/html") || media.eq_ignore_ascii_case("application/xhtml+xml")
        })
}

/// Answer a request under `web.prefix`. `who` reports the signed-in user for the access log.
/// A refusal is a page with the refusal's status (a person reads it, not a program).
pub async fn handle(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    match route(ctx, req, who).await {
        Ok(resp) => Ok(resp),
        Err(e) => Ok(error_page(ctx.web, &e)),
    }
}

/// The page for a refusal: its status and what it tells a client to do (`Retry-After`, `Allow`),
/// in words instead of JSON.
fn error_page(web: &Web, e: &GatewayError) -> PageResponse {
    let json = e.to_response();
    let status = json.status();
    let (title, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("This form is too large", "Shorten what you typed and send it again."),
        StatusCode::REQUEST_TIMEOUT => ("This form took too long", "Open the page again and retry."),
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("This page cannot do that", "Open the page again and use its form.")
        }
        StatusCode::TOO_MANY_REQUESTS => ("Too many attempts", "Wait a little, then try again."),
        StatusCode::UNAUTHORIZED => ("Please sign in again", "Your session has ended."),
        s if s.is_server_error() => (
            "Not possible right now",
            "The gateway could not do this right now. Try again in a moment.",
        ),
        _ => ("This request could not be handled", "Open the page again and retry."),
    };
    let mut page = web.pages.message(
        status,
        title,
        message,
        Some((&format!("{}/account", web.config.prefix), "Go to your account")),
    );
    for name in [header::RETRY_AFTER, header::ALLOW, header::CONNECTION] {
        if let Some(v) = json.headers().get(&name) {
            page.headers_mut().insert(name, v.clone());
        }
    }
    page
}

async fn route(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let web = ctx.web;
    let path = req.uri().path();
    let page = path.strip_prefix(web.config.prefix.as_str()).unwrap_or(path).to_owned();
    if let Some(idp) = &web.idp
        && (path == crate::idp::DISCOVERY_PATH || page.starts_with("/openid/"))
    {
        return Box::pin(openid::handle(ctx, idp, req, who)).await;
    }
    let method = req.method().clone();
    match (page.as_str(), &method) {
        ("" | "/", &Method::GET | &Method::HEAD) => Ok(see_other(&format!("{}/account", web.config.prefix))),
        ("/style.css", &Method::GET | &Method::HEAD) => Ok(web.pages.style()),
        ("/sign-in", &Method::GET | &Method::HEAD) => sign_in_page(ctx, &req, who).await,
        ("/sign-in", &Method::POST) if web.local_sign_in => Box::pin(sign_in(ctx, req, who)).await,
        ("/register", _) if web.registration == Registration::Closed || !web.local_sign_in => Ok(not_found(web)),
        (p, _) if p.starts_with("/oidc/") => Box::pin(sso::handle(ctx, req, who)).await,
        ("/register", &Method::GET | &Method::HEAD) => Ok(register_page(ctx, &req, "", "", "")),
        ("/register", &Method::POST) => Box::pin(register(ctx, req, who)).await,
        ("/sign-out", &Method::GET | &Method::HEAD) => Ok(see_other(&format!("{}/account", web.config.prefix))),
        ("/sign-out", &Method::POST) => Box::pin(sign_out(ctx, req)).await,
        ("/account", &Method::GET | &Method::HEAD) => Box::pin(account::show(ctx, req, who)).await,
        (p, &Method::POST) if p.starts_with("/account/") => Box::pin(account::act(ctx, req, who)).await,
        ("/style.css" | "/sign-in" | "/register" | "/sign-out" | "/account", _) => Err(GatewayError::MethodNotAllowed),
        _ => Ok(not_found(web)),
    }
}

fn not_found(web: &Web) -> PageResponse {
    web.pages.message(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no such page.",
        Some((&format!("{}/sign-in", web.config.prefix), "Go to sign in")),
    )
}

/// The signed-in user of a page request, when its session cookie is good.
async fn current<B>(web: &Web, req: &Request<B>) -> Option<Principal> {
    let secret = session::cookie(req.headers(), session::COOKIE).ok().flatten()?;
    web.authn.session(secret).await.ok()
}

/// The CSRF token for the forms of a page, and the cookie to set when the browser has none yet.
fn csrf_for<B>(req: &Request<B>) -> (String, Option<HeaderValue>) {
    match forms::held_csrf(req.headers()) {
        Some(held) => (held.to_owned(), None),
        None => {
            let fresh = forms::new_csrf();
            let cookie = forms::set_cookie(session::CSRF_COOKIE, &fresh, None, "Strict");
            (fresh, Some(cookie))
        }
    }
}

fn with_cookie(mut resp: PageResponse, cookie: Option<HeaderValue>) -> PageResponse {
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// The page answered to a POST whose CSRF check failed.
fn expired_form(web: &Web, back: &str) -> PageResponse {
    web.pages.message(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form was not sent from this site, or it is too old. Open the page again and retry.",
        Some((back, "Open the page again")),
    )
}

#[derive(Serialize)]
struct SignInPage<'a> {
    message: &'a str,
    username: &'a str,
    rd: &'a str,
    csrf: &'a str,
    registration_open: bool,
    local: bool,
    providers: Vec<ProviderButton<'a>>,
}

/// A single sign-on button: its label and where it starts.
#[derive(Serialize)]
struct ProviderButton<'a> {
    id: &'a str,
    name: &'a str,
}

fn sign_in_form<B>(ctx: &Ctx<'_>, req: &Request<B>, status: StatusCode, message: &str, username: &str) -> PageResponse {
    let rd = forms::return_to(req.uri().query());
    let (csrf, cookie) = csrf_for(req);
    let web = ctx.web;
    let page = SignInPage {
        message,
        username,
        rd: &rd,
        csrf: &csrf,
        registration_open: web.registration == Registration::Open && web.local_sign_in,
        local: web.local_sign_in,
        providers: web
            .oidc
            .all()
            .iter()
            .map(|p| ProviderButton {
                id: &p.config.id,
                name: &p.config.name,
            })
            .collect(),
    };
    let mut resp = ctx.web.pages.render(status, "sign_in.html", "Sign in", page);
    if let Some(origin) = openid::form_target(ctx.web, &rd) {
        pages::allow_form_target(&mut resp, &origin);
    }
    with_cookie(resp, cookie)
}

/// `GET sign-in`: the form; a browser already signed in goes straight on to `rd`.
async fn sign_in_page(
    ctx: &Ctx<'_>,
    req: &Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    // `login=1`: an OpenID client asked for a fresh sign-in (`prompt=login`, `max_age`).
    let fresh = req
        .uri()
        .query()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "login" && v == "1"));
    if !fresh && let Some(p) = current(ctx.web, req).await {
        *who = Some(p);
        return Ok(see_other(&forms::return_to(req.uri().query())));
    }
    Ok(sign_in_form(ctx, req, StatusCode::OK, "", ""))
}

/// `POST sign-in`: check the password under the login limits, start a session, go on to `rd`.
async fn sign_in(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let (parts, form) = forms::read(req, ctx.web.body_idle).await?;
    if !forms::csrf_ok(&parts, &form, ctx.web.scheme) {
        let back = format!("{}/sign-in?{}", ctx.web.config.prefix, parts.uri.query().unwrap_or(""));
        return Ok(expired_form(ctx.web, &back));
    }
    let req = Request::from_parts(parts, ());
    let username = form.get("username");
    let user = match ctx
        .web
        .accounts
        .sign_in(username, form.get("password"), ctx.client)
        .await
    {
        Ok(user) => user,
        Err(e) => {
            audit(ctx, "sign_in_failed", failed_user(&e));
            let (status, message) = refusal(&e);
            let mut resp = sign_in_form(ctx, &req, status, &message, username.trim());
            if let AccountError::TooManyAttempts(retry) = e
                && let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string())
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Ok(resp);
        }
    };
    let rd = forms::return_to(req.uri().query());
    start(ctx, &req, &user, who, ("sign_in", None), &rd).await
}

/// Start a session for `user` and send the browser on to `rd`; a session the browser held
/// before is ended (a new id at every sign-in: no fixation).
async fn start(
    ctx: &Ctx<'_>,
    req: &Request<()>,
    user: &User,
    who: &mut Option<Principal>,
    (event, provider): (&'static str, Option<&str>),
    return_to: &str,
) -> Result<PageResponse, GatewayError> {
    let web = ctx.web;
    if let Ok(Some(old)) = session::cookie(req.headers(), session::COOKIE)
        && let Err(e) = web.accounts.end_session_by_secret(old).await
    {
        tracing::warn!(error = %e, "the session held before sign-in was not ended");
    }
    let agent = agent::summary(req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()));
    let made = web
        .accounts
        .start_session(user, web.config.lifetime, ctx.client, &agent, provider)
        .await
        .map_err(crate::api::account_err)?;
    audit(ctx, event, Some(&user.id));
    *who = Some(Principal {
        user_id: crate::auth::principal::UserId::parse(&user.id).ok_or(GatewayError::Internal)?,
        method: crate::auth::principal::AuthMethod::Session,
        jti: Some(made.row.id),
        iat: None,
        exp: None,
        scopes: crate::policy::Scopes::FULL,
    });
    let mut resp = see_other(return_to);
    resp.headers_mut().append(
        header::SET_COOKIE,
        forms::set_cookie(
            session::COOKIE,
            &made.secret,
            Some(web.config.lifetime.as_secs()),
            "Lax",
        ),
    );
    Ok(resp)
}

/// The status and the one message a failed sign-in shows: never whether the user exists.
fn refusal(e: &AccountError) -> (StatusCode, String) {
    match e {
        AccountError::TooManyAttempts(retry) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed attempts. Try again in {} minute(s).",
                retry.as_secs().div_ceil(60).max(1)
            ),
        ),
        AccountError::Busy | AccountError::Hashing | AccountError::Store(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not possible right now. Try again in a moment.".to_owned(),
        ),
        _ => (StatusCode::UNAUTHORIZED, "Wrong username or password.".to_owned()),
    }
}

fn failed_user(e: &AccountError) -> Option<&str> {
    match e {
        AccountError::BadCredentials(id) => id.as_deref(),
        _ => None,
    }
}

fn register_page<B>(ctx: &Ctx<'_>, req: &Request<B>, message: &str, username: &str, email: &str) -> PageResponse {
    #[derive(Serialize)]
    struct RegisterPage<'a> {
        message: &'a str,
        username: &'a str,
        email: &'a str,
        rd: &'a str,
        csrf: &'a str,
    }
    let rd = forms::return_to(req.uri().query());
    let (csrf, cookie) = csrf_for(req);
    let status = if message.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = RegisterPage {
        message,
        username,
        email,
        rd: &rd,
        csrf: &csrf,
    };
    let mut resp = ctx.web.pages.render(status, "register.html", "Create an account", page);
    if let Some(origin) = openid::form_target(ctx.web, &rd) {
        pages::allow_form_target(&mut resp, &origin);
    }
    with_cookie(resp, cookie)
}

/// `POST register` (only while `accounts.registration` is open): make the account, sign in.
async fn register(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let (parts, form) = forms::read(req, ctx.web.body_idle).await?;
    if !forms::csrf_ok(&parts, &form, ctx.web.scheme) {
        let back = format!("{}/register?{}", ctx.web.config.prefix, parts.uri.query().unwrap_or(""));
        return Ok(expired_form(ctx.web, &back));
    }
    let req = Request::from_parts(parts, ());
    let (username, email) = (form.get("username").trim(), form.get("email").trim());
    let made = ctx.web.accounts.register(username, email, form.get("password")).await;
    let user = match made {
        Ok(user) => user,
        Err(AccountError::Invalid { field, message }) => {
            return Ok(register_page(
                ctx,
                &req,
                &format!("{} {message}.", title_case(field)),
                username,
                email,
            ));
        }
        Err(AccountError::NameTaken) => {
            return Ok(register_page(
                ctx,
                &req,
                "That username is taken. Choose another.",
                "",
                email,
            ));
        }
        Err(e) => return Err(crate::api::account_err(e)),
    };
    let rd = forms::return_to(req.uri().query());
    start(ctx, &req, &user, who, ("register", None), &rd).await
}

fn title_case(field: &str) -> String {
    let mut chars = field.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
        .replace('_', " ")
}

/// `POST sign-out`: end this browser's session, clear its cookie, say so.
async fn sign_out(ctx: &Ctx<'_>, req: Request<Incoming>) -> Result<PageResponse, GatewayError> {
    let (parts, form) = forms::read(req, ctx.web.body_idle).await?;
    let prefix = &ctx.web.config.prefix;
    if !forms::csrf_ok(&parts, &form, ctx.web.scheme) {
        return Ok(expired_form(ctx.web, &format!("{prefix}/account")));
    }
    let mut ended = None;
    if let Ok(Some(secret)) = session::cookie(&parts.headers, session::COOKIE) {
        ended = ctx
            .web
            .accounts
            .end_session_by_secret(secret)
            .await
            .map_err(crate::api::account_err)?;
        audit(ctx, "sign_out", ended.as_ref().map(|s| s.user_id.as_str()));
    }
    // Signed in through a provider that has an end_session_endpoint: offer to sign out there too
    // (RP-initiated logout).
    let provider = ended
        .and_then(|s| s.provider)
        .and_then(|id| ctx.web.oidc.get(&id).cloned());
    if let Some(p) = provider
        && let Some(end) = p.end_session()
    {
        let client: String = form_urlencoded::byte_serialize(p.config.client_id.as_bytes()).collect();
        let sep = if end.contains('?') { '&' } else { '?' };
        let link = format!("{end}{sep}client_id={client}");
        let text = format!("Also sign out of {}", p.config.name);
        let mut resp = ctx.web.pages.message(
            StatusCode::OK,
            "You are signed out",
            "Your session has ended in this browser.",
            Some((&link, &text)),
        );
        resp.headers_mut()
            .append(header::SET_COOKIE, forms::clear_session_cookie());
        return Ok(resp);
    }
    Ok(signed_out(ctx.web))
}

/// The signed-out page, clearing the session cookie.
fn signed_out(web: &Web) -> PageResponse {
    let mut resp = web.pages.message(
        StatusCode::OK,
        "You are signed out",
        "Your session has ended in this browser.",
        Some((&format!("{}/sign-in", web.config.prefix), "Sign in again")),
    );
    resp.headers_mut()
        .append(header::SET_COOKIE, forms::clear_session_cookie());
    resp
}

/// One audit line per page action (never a password, a secret or a cookie).
fn audit(ctx: &Ctx<'_>, event: &'static str, user_id: Option<&str>) {
    tracing::info!(
        target: "authgate::audit",
        event,
        user_id,
        via = "web",
        client = %ctx.client,
        request_id = ctx.request_id.to_str().unwrap_or("-"),
    );
}
