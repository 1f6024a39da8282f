//! Accounts over JSON: register, login, me, refresh, logout, password change. The rules and the
//! changes are the account service's (`crate::accounts`); this module reads fields, writes the
//! audit line and shapes the answer.
//!
//! The rule this module keeps: a wrong password and an unknown user get the same answer, and no
//! password or token is ever logged.

use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiResponse, Ctx, account_err, json, no_content, string_field};
use crate::accounts::AccountError;
use crate::auth::jwt::{Issue, now_secs};
use crate::auth::principal::Principal;
use crate::error::GatewayError;
use crate::store::User;

fn audit(ctx: &Ctx<'_>, event: &'static str, user_id: Option<&str>) {
    tracing::info!(
        target: "authgate::audit",
        event,
        user_id,
        peer = %ctx.peer,
        client = %ctx.client,
        request_id = ctx.request_id.to_str().unwrap_or("-"),
    );
}

/// `POST /api/auth/register {username, password, email}` → 201 `{user_id, username, email}`.
pub async fn register(ctx: &Ctx<'_>, body: Value) -> Result<ApiResponse, GatewayError> {
    if ctx.api.registration == crate::config::Registration::Closed {
        return Err(GatewayError::Forbidden(
            "Registration is closed (accounts.registration = \"closed\"); ask an operator for an account",
        ));
    }
    // The username's rule first, as before the other fields are read: a bad name is named first.
    let username = string_field(&body, "username")?;
    crate::accounts::rules::username(username).map_err(account_err)?;
    let password = string_field(&body, "password")?;
    let email = string_field(&body, "email")?;
    let user = ctx
        .api
        .accounts
        .register(username, email, password)
        .await
        .map_err(account_err)?;
    audit(ctx, "register", Some(&user.id));
    Ok(json(
        StatusCode::CREATED,
        &json!({"user_id": user.id, "username": user.username, "email": user.email}),
    ))
}

/// A fresh access token for `user`, answered as login does: exactly the seed's fields, and the
/// token again in an `Authorization` response header.
fn token_response(ctx: &Ctx<'_>, user: &User) -> Result<ApiResponse, GatewayError> {
    let sessions = &ctx.api.sessions;
    let jti = Uuid::new_v4().simple().to_string();
    let token = sessions
        .signer
        .sign(&Issue {
            sub: &user.id,
            jti: &jti,
            iat: now_secs(),
            ttl: sessions.expiration,
            issuer: &sessions.issuer,
            audience: sessions.audience.as_deref(),
            epoch: user.token_epoch,
        })
        .map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            GatewayError::Internal
        })?;
    let mut resp = json(
        StatusCode::OK,
        &json!({"access_token": token, "token_type": "bearer", "expires_in": sessions.expiration.as_secs()}),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        resp.headers_mut().insert(header::AUTHORIZATION, v);
    }
    Ok(resp)
}

/// `POST /api/auth/login {username, password}` → 200 `{access_token, token_type, expires_in}`.
pub async fn login(ctx: &Ctx<'_>, body: Value) -> Result<ApiResponse, GatewayError> {
    let username = string_field(&body, "username")?;
    let password = string_field(&body, "password")?;
    match ctx.api.accounts.sign_in(username, password, ctx.client).await {
        Ok(user) => {
            audit(ctx, "login_success", Some(&user.id));
            token_response(ctx, &user)
        }
        Err(AccountError::BadCredentials(user_id)) => {
            audit(ctx, "login_failure", user_id.as_deref());
            Err(GatewayError::BadCredentials)
        }
        Err(e) => Err(account_err(e)),
    }
}

/// The caller's user row; a token for a user that is gone or disabled is refused (401).
async fn current_user(ctx: &Ctx<'_>, p: &Principal) -> Result<User, GatewayError> {
    ctx.api
        .accounts
        .current_user(p.user_id.as_str())
        .await
        .map_err(account_err)
}

/// `GET /api/auth/me`.
pub async fn me(ctx: &Ctx<'_>, p: &Principal) -> Result<ApiResponse, GatewayError> {
    let u = current_user(ctx, p).await?;
    let access = ctx.api.accounts.access(&u.id).await.map_err(account_err)?;
    // RAG Modulo reads `role` (`admin` or `user`); anything else stored reads as `user`.
    let role = crate::policy::Role::parse(&access.role).unwrap_or_default();
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u.created_at.max(0) as u64);
    Ok(json(
        StatusCode::OK,
        &json!({
            "user_id": u.id,
            "id": u.id,
            "uuid": u.id,
            "username": u.username,
            "email": u.email,
            "name": u.username,
            "role": role.as_str(),
            "groups": access.groups,
            "created_at": humantime::format_rfc3339_seconds(created).to_string(),
        }),
    ))
}

/// `POST /api/auth/refresh` → a new token, shaped like login's.
pub async fn refresh(ctx: &Ctx<'_>, p: &Principal) -> Result<ApiResponse, GatewayError> {
    let u = current_user(ctx, p).await?;
    audit(ctx, "refresh", Some(&u.id));
    token_response(ctx, &u)
}

/// `POST /api/auth/logout [{"all": true}]` → 204.
pub async fn logout(ctx: &Ctx<'_>, p: &Principal, body: &Value) -> Result<ApiResponse, GatewayError> {
    let all = match body.get("all") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(GatewayError::InvalidField {
                field: "all",
                message: "must be true or false",
            });
        }
    };
    let uid = p.user_id.as_str();
    if all {
        ctx.api.accounts.logout_all(uid).await.map_err(account_err)?;
        audit(ctx, "logout_all", Some(uid));
    } else {
        ctx.api.accounts.logout(p).await.map_err(account_err)?;
        audit(ctx, "logout", Some(uid));
    }
    Ok(no_content())
}

/// `POST /api/auth/password {current_password, new_password}` → 204; every other session ends.
pub async fn change_password(ctx: &Ctx<'_>, p: &Principal, body: Value) -> Result<ApiResponse, GatewayError> {
    let current = string_field(&body, "current_password")?;
    let new = string_field(&body, "new_password")?;
    let uid = p.user_id.as_str();
    match ctx.api.accounts.change_password(p, current, new, ctx.client).await {
        Ok(_) => {
            audit(ctx, "password_change", Some(uid));
            Ok(no_content())
        }
        Err(e @ AccountError::WrongPassword) => {
            audit(ctx, "password_change_failure", Some(uid));
            Err(account_err(e))
        }
        Err(e) => Err(account_err(e)),
    }
}
