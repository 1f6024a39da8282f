//! API tokens for programs (RAGFlow's `new_token`): create, list, delete.
//!
//! The rule this module keeps: the secret is returned once, at creation, and never again; only its
//! SHA-256 is stored. Tokens are created from an interactive session (a JWT), not by another API
//! token, and a user only ever sees or deletes their own (another user's token is a 404).

use http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiResponse, Ctx, json, no_content, store_err, string_field};
use crate::auth::api_token;
use crate::auth::jwt::now_secs;
use crate::auth::principal::{AuthMethod, Principal};
use crate::error::GatewayError;
use crate::store::{ApiTokenRow, NewApiToken};

/// The longest lifetime a token may ask for: ten years.
const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

fn time(secs: Option<i64>) -> Value {
    match secs {
        Some(s) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(s).unwrap_or(0));
            Value::from(humantime::format_rfc3339_seconds(t).to_string())
        }
        None => Value::Null,
    }
}

fn listed(row: &ApiTokenRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "created_at": time(Some(row.created_at)),
        "last_used_at": time(row.last_used_at),
        "expires_at": time(row.expires_at),
    })
}

/// `POST /api/auth/tokens {name, expires_in?}` → 201 `{id, name, token, created_at, expires_at}`.
pub async fn create(ctx: &Ctx<'_>, p: &Principal, body: Value) -> Result<ApiResponse, GatewayError> {
    // `api::session_only` refused API tokens already; checked again where the token is made.
    if p.method != AuthMethod::Jwt {
        return Err(GatewayError::Forbidden(
            "API tokens are created from a login session, not by another API token",
        ));
    }
    let name = string_field(&body, "name")?.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(GatewayError::InvalidField {
            field: "name",
            message: "must be 1 to 100 characters",
        });
    }
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_EXPIRES_IN).contains(&n) => Some(n),
            _ => {
                return Err(GatewayError::InvalidField {
                    field: "expires_in",
                    message: "must be a whole number of seconds from 1 to 315360000",
                });
            }
        },
    };
    let token = api_token::generate();
    let id = Uuid::new_v4().to_string();
    let now = now_secs() as i64;
    let row = ctx
        .gw
        .store
        .create_api_token(&NewApiToken {
            id: &id,
            user_id: p.user_id.as_str(),
            name,
            token_hash: &api_token::hash(&token),
            created_at: now,
            expires_at: expires_in.map(|n| now + n as i64),
        })
        .await
        .map_err(store_err)?;
    tracing::info!(
        target: "authgate::audit",
        event = "token_created",
        user_id = p.user_id.as_str(),
        token_id = %row.id,
        peer = %ctx.peer,
        client = %ctx.client,
        request_id = ctx.request_id.to_str().unwrap_or("-"),
    );
    Ok(json(
        StatusCode::CREATED,
        &json!({
            "id": row.id,
            "name": row.name,
            "token": token,
            "created_at": time(Some(row.created_at)),
            "expires_at": time(row.expires_at),
        }),
    ))
}

/// `GET /api/auth/tokens` → 200 `[{id, name, created_at, last_used_at, expires_at}]`, no secrets.
pub async fn list(ctx: &Ctx<'_>, p: &Principal) -> Result<ApiResponse, GatewayError> {
    let rows = ctx
        .gw
        .store
        .list_api_tokens(p.user_id.as_str())
        .await
        .map_err(store_err)?;
    Ok(json(StatusCode::OK, &Value::Array(rows.iter().map(listed).collect())))
}

/// `DELETE /api/auth/tokens/{id}` → 204, or 404 when the caller has no such token.
pub async fn delete(ctx: &Ctx<'_>, p: &Principal, id: &str) -> Result<ApiResponse, GatewayError> {
    if id.is_empty() || id.len() > 64 {
        return Err(GatewayError::NotFound);
    }
    let hash = ctx
        .gw
        .store
        .delete_api_token(p.user_id.as_str(), id)
        .await
        .map_err(store_err)?
        .ok_or(GatewayError::NotFound)?;
    ctx.gw.broadcast_token_revoked(&hash).await;
    tracing::info!(
        target: "authgate::audit",
        event = "token_revoked",
        user_id = p.user_id.as_str(),
        token_id = id,
        peer = %ctx.peer,
        client = %ctx.client,
        request_id = ctx.request_id.to_str().unwrap_or("-"),
    );
    Ok(no_content())
}
