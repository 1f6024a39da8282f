//! Accounts: register, login, me, refresh, logout, password change.
//!
//! The rule this module keeps: a wrong password and an unknown user are indistinguishable (same
//! status, body and argon2 work), no password or token is ever logged, and every change that ends
//! sessions is written to the store before it takes effect in memory.

use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiResponse, Ctx, json, no_content, store_err, string_field};
use crate::auth::jwt::{Issue, now_secs};
use crate::auth::password::{PasswordError, Verdict};
use crate::auth::principal::{AuthMethod, Principal};
use crate::error::{AuthFailure, GatewayError};
use crate::store::cache::Event;
use crate::store::{StoreError, User};

/// Passwords: 12 to 128 characters, any Unicode, never truncated (ASVS 2.1.1, 2.1.2).
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 12..=128;

fn password_err(e: PasswordError) -> GatewayError {
    match e {
        PasswordError::Busy => GatewayError::Unavailable("Too many password checks in progress; retry"),
        PasswordError::Failed => GatewayError::Internal,
    }
}

use crate::username::normalize as normalize_username;

fn check_password(field: &'static str, password: &str) -> Result<(), GatewayError> {
    if !PASSWORD_CHARS.contains(&password.chars().count()) {
        return Err(GatewayError::InvalidField {
            field,
            message: "must be 12 to 128 characters",
        });
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), GatewayError> {
    if email.len() > 254 || !email_address::EmailAddress::is_valid(email) {
        return Err(GatewayError::InvalidField {
            field: "email",
            message: "is not a valid email address",
        });
    }
    Ok(())
}

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

/// A username being registered; released when dropped.
struct NameClaim<'a> {
    gw: &'a crate::Gateway,
    name: String,
}

impl<'a> NameClaim<'a> {
    fn take(gw: &'a crate::Gateway, name: &str) -> Option<NameClaim<'a>> {
        let mut names = gw.registering.lock().ok()?;
        names.insert(name.to_owned()).then(|| NameClaim {
            gw,
            name: name.to_owned(),
        })
    }
}

impl Drop for NameClaim<'_> {
    fn drop(&mut self) {
        if let Ok(mut names) = self.gw.registering.lock() {
            names.remove(&self.name);
        }
    }
}

/// `POST /api/auth/register {username, password, email}` → 201 `{user_id, username, email}`.
pub async fn register(ctx: &Ctx<'_>, body: Value) -> Result<ApiResponse, GatewayError> {
    let (username, norm) = normalize_username(string_field(&body, "username")?)?;
    let password = string_field(&body, "password")?;
    let email = string_field(&body, "email")?.trim();
    check_password("password", password)?;
    check_email(email)?;
    let gw = ctx.gw;
    // One registration per name at a time on this replica: concurrent duplicates are answered at
    // once instead of each paying for an argon2 hash. Across replicas the unique index settles it.
    let _claim = NameClaim::take(gw, &norm).ok_or(GatewayError::Conflict("Username already registered"))?;
    // A look-alike of a taken name (Cyrillic `а` for Latin `a`) is taken too.
    if gw.store.name_taken(&username, &norm).await.map_err(store_err)? {
        return Err(GatewayError::Conflict("Username already registered"));
    }
    let hash = gw.passwords.hash(password.to_owned()).await.map_err(password_err)?;
    let user = gw
        .store
        .add_user(&username, &norm, email, &hash)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => GatewayError::Conflict("Username already registered"),
            other => store_err(other),
        })?;
    audit(ctx, "register", Some(&user.id));
    Ok(json(
        StatusCode::CREATED,
        &json!({"user_id": user.id, "username": user.username, "email": user.email}),
    ))
}

/// A fresh access token for `user`, answered as login does: exactly the seed's fields, and the
/// token again in an `Authorization` response header.
fn token_response(ctx: &Ctx<'_>, user: &User) -> Result<ApiResponse, GatewayError> {
    let cfg = &ctx.gw.config.jwt;
    let jti = Uuid::new_v4().simple().to_string();
    let token = ctx
        .gw
        .signer
        .sign(&Issue {
            sub: &user.id,
            jti: &jti,
            iat: now_secs(),
            ttl: cfg.expiration,
            issuer: cfg.issuer.as_deref().unwrap_or("authgate"),
            audience: cfg.audience.as_deref(),
            epoch: user.token_epoch,
        })
        .map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            GatewayError::Internal
        })?;
    let mut resp = json(
        StatusCode::OK,
        &json!({"access_token": token, "token_type": "bearer", "expires_in": cfg.expiration.as_secs()}),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        resp.headers_mut().insert(header::AUTHORIZATION, v);
    }
    Ok(resp)
}

/// `POST /api/auth/login {username, password}` → 200 `{access_token, token_type, expires_in}`.
pub async fn login(ctx: &Ctx<'_>, body: Value) -> Result<ApiResponse, GatewayError> {
    let raw_username = string_field(&body, "username")?;
    let password = string_field(&body, "password")?;
    let gw = ctx.gw;
    let norm = normalize_username(raw_username).ok().map(|(_, n)| n);
    // Unknown and malformed names are limited under their own key, like real ones.
    let limit_key = norm.clone().unwrap_or_else(|| raw_username.trim().to_lowercase());
    gw.login_allowed(&limit_key, ctx.client)
        .await
        .map_err(|retry_after| GatewayError::TooManyRequests { retry_after })?;

    let user = match &norm {
        Some(n) => gw.store.user_by_norm(n).await.map_err(store_err)?,
        None => None,
    };
    let verdict = match &user {
        Some(u) => gw
            .passwords
            .verify(password.to_owned(), u.password_hash.clone())
            .await
            .map_err(password_err)?,
        None => {
            gw.passwords
                .verify_dummy(password.to_owned())
                .await
                .map_err(password_err)?;
            Verdict {
                ok: false,
                needs_rehash: false,
            }
        }
    };
    let user = match user {
        Some(u) if verdict.ok && !u.disabled && !gw.revocations.is_disabled(&u.id) => u,
        other => {
            gw.login_failed(&limit_key, ctx.client).await;
            audit(ctx, "login_failure", other.as_ref().map(|u| u.id.as_str()));
            return Err(GatewayError::BadCredentials);
        }
    };
    gw.login_succeeded(&limit_key).await;
    if verdict.needs_rehash {
        let (gw, id, password) = (gw.clone(), user.id.clone(), password.to_owned());
        tokio::spawn(async move {
            match gw.passwords.hash(password).await {
                Ok(hash) => match gw.store.set_password_hash(&id, &hash).await {
                    Ok(()) => {
                        tracing::info!(user_id = %id, "password hash upgraded to current parameters")
                    }
                    Err(e) => {
                        tracing::warn!(user_id = %id, error = %e, "password hash upgrade not stored")
                    }
                },
                Err(e) => tracing::warn!(user_id = %id, error = %e, "password hash upgrade failed"),
            }
        });
    }
    audit(ctx, "login_success", Some(&user.id));
    token_response(ctx, &user)
}

/// The caller's user row; a token for a user that no longer exists is refused.
async fn current_user(ctx: &Ctx<'_>, p: &Principal) -> Result<User, GatewayError> {
    ctx.gw
        .store
        .user_by_id(p.user_id.as_str())
        .await
        .map_err(store_err)?
        .filter(|u| !u.disabled)
        .ok_or(GatewayError::Unauthenticated(AuthFailure::UnknownToken))
}

/// `GET /api/auth/me`.
pub async fn me(ctx: &Ctx<'_>, p: &Principal) -> Result<ApiResponse, GatewayError> {
    let u = current_user(ctx, p).await?;
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
            "role": "user",
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
    let gw = ctx.gw;
    let uid = p.user_id.as_str();
    if all {
        let epoch = gw.store.bump_token_epoch(uid).await.map_err(store_err)?;
        let gate = gw.revocations.user(uid);
        gw.broadcast(Event::User {
            id: uid.to_owned(),
            disabled: gate.disabled,
            min_epoch: epoch,
            exempt_jti: None,
        })
        .await;
        audit(ctx, "logout_all", Some(uid));
        return Ok(no_content());
    }
    let (Some(jti), Some(exp), AuthMethod::Jwt) = (&p.jti, p.exp, p.method) else {
        return Err(GatewayError::InvalidRequest(
            "This credential has no session to end; revoke API tokens with DELETE /api/auth/tokens/{id}",
        ));
    };
    gw.store
        .revoke_jti(jti, uid, i64::try_from(exp).unwrap_or(i64::MAX))
        .await
        .map_err(store_err)?;
    gw.broadcast(Event::Jti { jti: jti.clone(), exp }).await;
    audit(ctx, "logout", Some(uid));
    Ok(no_content())
}

/// `POST /api/auth/password {current_password, new_password}` → 204; every other session ends.
pub async fn change_password(ctx: &Ctx<'_>, p: &Principal, body: Value) -> Result<ApiResponse, GatewayError> {
    let current = string_field(&body, "current_password")?;
    let new = string_field(&body, "new_password")?;
    check_password("new_password", new)?;
    let gw = ctx.gw;
    let user = current_user(ctx, p).await?;
    gw.login_allowed(&user.username_norm, ctx.client)
        .await
        .map_err(|retry_after| GatewayError::TooManyRequests { retry_after })?;
    let verdict = gw
        .passwords
        .verify(current.to_owned(), user.password_hash.clone())
        .await
        .map_err(password_err)?;
    if !verdict.ok {
        gw.login_failed(&user.username_norm, ctx.client).await;
        audit(ctx, "password_change_failure", Some(&user.id));
        return Err(GatewayError::Forbidden("Current password is incorrect"));
    }
    let hash = gw.passwords.hash(new.to_owned()).await.map_err(password_err)?;
    gw.store.set_password_hash(&user.id, &hash).await.map_err(store_err)?;
    let epoch = gw.store.bump_token_epoch(&user.id).await.map_err(store_err)?;
    gw.broadcast(Event::User {
        id: user.id.clone(),
        disabled: false,
        min_epoch: epoch,
        exempt_jti: p.jti.clone(),
    })
    .await;
    audit(ctx, "password_change", Some(&user.id));
    Ok(no_content())
}
