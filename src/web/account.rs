//! The account page: who the user is, their API tokens, their sessions and their password.
//!
//! The rule this module keeps: every action needs the signed-in session and a passing CSRF check,
//! acts only on the session's own user, and answers with a redirect back to the page (so a reload
//! never repeats it), except token creation, whose secret is shown once in the answer itself.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use super::pages::{PageResponse, see_other, when};
use super::{Ctx, audit, csrf_for, current, expired_form, forms, signed_out, with_cookie};
use crate::accounts::{AccountError, NewToken};
use crate::auth::principal::Principal;
use crate::error::GatewayError;
use crate::store::User;

#[derive(Serialize)]
struct UserView {
    id: String,
    username: String,
    email: String,
    created: String,
}

#[derive(Serialize)]
struct TokenView {
    id: String,
    name: String,
    created: String,
    expires: String,
    last_used: String,
}

#[derive(Serialize)]
struct SessionView {
    id: String,
    agent: String,
    client: String,
    created: String,
    last_seen: String,
    current: bool,
}

#[derive(Serialize)]
struct AccountPage<'a> {
    user: UserView,
    tokens: Vec<TokenView>,
    sessions: Vec<SessionView>,
    csrf: &'a str,
    message: &'a str,
    message_kind: &'a str,
    new_token: Option<&'a str>,
    new_token_name: Option<&'a str>,
}

/// What a finished action says on the page it returns to (a fixed set: nothing from the URL is
/// echoed).
fn done_message(query: Option<&str>) -> &'static str {
    let done = query
        .map(|q| form_urlencoded::parse(q.as_bytes()))
        .and_then(|mut p| p.find(|(k, _)| k == "done").map(|(_, v)| v.into_owned()));
    match done.as_deref() {
        Some("token-revoked") => "The token was revoked.",
        Some("session-ended") => "The session was ended.",
        Some("password-changed") => "Your password was changed. Your other sessions have ended.",
        _ => "",
    }
}

/// `GET account`: the page, or sign-in first.
pub async fn show(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let prefix = &ctx.web.config.prefix;
    let Some(p) = current(ctx.web, &req).await else {
        return Ok(see_other(&ctx.web.sign_in_url(&format!("{prefix}/account"))));
    };
    let p = who.insert(p);
    let message = done_message(req.uri().query());
    render(ctx, &req, p, StatusCode::OK, (message, "ok"), None).await
}

async fn render<B>(
    ctx: &Ctx<'_>,
    req: &Request<B>,
    p: &Principal,
    status: StatusCode,
    (message, message_kind): (&str, &str),
    new_token: Option<&NewToken>,
) -> Result<PageResponse, GatewayError> {
    let accounts = &ctx.web.accounts;
    let user = accounts
        .current_user(p.user_id.as_str())
        .await
        .map_err(crate::api::account_err)?;
    let tokens = accounts.list_tokens(&user.id).await.map_err(crate::api::account_err)?;
    let sessions = accounts
        .list_sessions(&user, p.jti.as_deref())
        .await
        .map_err(crate::api::account_err)?;
    let (csrf, cookie) = csrf_for(req);
    let page = AccountPage {
        user: user_view(&user),
        tokens: tokens
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.name,
                created: when(t.created_at),
                expires: t.expires_at.map_or_else(|| "never".to_owned(), when),
                last_used: t.last_used_at.map_or_else(|| "never".to_owned(), when),
            })
            .collect(),
        sessions: sessions
            .into_iter()
            .map(|s| SessionView {
                current: p.jti.as_deref() == Some(s.id.as_str()),
                id: s.id,
                agent: s.agent,
                client: s.client,
                created: when(s.created_at),
                last_seen: when(s.last_seen_at),
            })
            .collect(),
        csrf: &csrf,
        message,
        message_kind,
        new_token: new_token.map(|t| t.secret.as_str()),
        new_token_name: new_token.map(|t| t.row.name.as_str()),
    };
    Ok(with_cookie(
        ctx.web.pages.render(status, "account.html", "Your account", page),
        cookie,
    ))
}

fn user_view(user: &User) -> UserView {
    UserView {
        id: user.id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        created: when(user.created_at),
    }
}

/// `POST account/…`: one action on the signed-in user's account.
pub async fn act(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    who: &mut Option<Principal>,
) -> Result<PageResponse, GatewayError> {
    let web = ctx.web;
    let prefix = &web.config.prefix;
    let account = format!("{prefix}/account");
    let (parts, form) = forms::read(req, web.body_idle).await?;
    if !forms::csrf_ok(&parts, &form, web.scheme) {
        return Ok(expired_form(web, &account));
    }
    let req = Request::from_parts(parts, ());
    let Some(p) = current(web, &req).await else {
        return Ok(see_other(&web.sign_in_url(&account)));
    };
    let p = who.insert(p);
    let action = req.uri().path().strip_prefix(account.as_str()).unwrap_or("");
    let uid = p.user_id.as_str();
    let refused = |e: AccountError| -> Result<PageResponse, GatewayError> { Err(crate::api::account_err(e)) };
    match action {
        "/tokens" => {
            let expires_in = match form.get("expires_in").trim() {
                "" => None,
                n => match n.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        let msg = ("Choose when the token expires from the list.", "error");
                        return render(ctx, &req, p, StatusCode::BAD_REQUEST, msg, None).await;
                    }
                },
            };
            match web
                .accounts
                .create_token(uid, form.get("name").trim(), expires_in, None)
                .await
            {
                Ok(made) => {
                    audit(ctx, "token_created", Some(uid));
                    render(ctx, &req, p, StatusCode::OK, ("", "ok"), Some(&made)).await
                }
                Err(AccountError::Invalid { field, message }) => {
                    let msg = format!("Token {} {message}.", field.replace('_', " "));
                    render(ctx, &req, p, StatusCode::BAD_REQUEST, (&msg, "error"), None).await
                }
                Err(e) => refused(e),
            }
        }
        "/tokens/revoke" => match web.accounts.revoke_token(uid, form.get("id")).await {
            Ok(()) | Err(AccountError::NoSuchToken) => {
                audit(ctx, "token_revoked", Some(uid));
                Ok(see_other(&format!("{account}?done=token-revoked")))
            }
            Err(e) => refused(e),
        },
        "/sessions/end" => {
            let id = form.get("id");
            match web.accounts.end_session(uid, id).await {
                Ok(()) | Err(AccountError::NoSuchSession) => {}
                Err(e) => return refused(e),
            }
            audit(ctx, "session_ended", Some(uid));
            if p.jti.as_deref() == Some(id) {
                return Ok(signed_out(web));
            }
            Ok(see_other(&format!("{account}?done=session-ended")))
        }
        "/sign-out-everywhere" => {
            web.accounts.logout_all(uid).await.map_err(crate::api::account_err)?;
            audit(ctx, "logout_all", Some(uid));
            Ok(signed_out(web))
        }
        "/password" => {
            let changed = web
                .accounts
                .change_password(p, form.get("current_password"), form.get("new_password"), ctx.client)
                .await;
            let msg = match changed {
                Ok(_) => {
                    audit(ctx, "password_changed", Some(uid));
                    return Ok(see_other(&format!("{account}?done=password-changed")));
                }
                Err(AccountError::WrongPassword) => "The current password is wrong.".to_owned(),
                Err(AccountError::Invalid { message, .. }) => format!("The new password {message}."),
                Err(AccountError::TooManyAttempts(_)) => "Too many failed attempts. Try again later.".to_owned(),
                Err(e) => return refused(e),
            };
            render(ctx, &req, p, StatusCode::BAD_REQUEST, (&msg, "error"), None).await
        }
        _ => Ok(see_other(&account)),
    }
}
