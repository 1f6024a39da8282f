//! API tokens for programs (RAGFlow's `new_token`): create, list, delete. The rules and the
//! changes are the account service's; this module reads fields and shapes the answer.
//!
//! The rule this module keeps: the secret is returned once, at creation, and never again; only its
//! SHA-256 is stored. Tokens are created from an interactive session (a JWT), not by another API
//! token (so a token can never make one with more scopes than its own), and a user only ever sees
//! or deletes their own (another user's token is a 404).

use http::StatusCode;
use serde_json::{Value, json};

use super::{ApiResponse, Ctx, account_err, json, no_content, string_field};
use crate::auth::principal::{AuthMethod, Principal};
use crate::error::GatewayError;
use crate::store::ApiTokenRow;

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
        "scopes": row.scopes,
    })
}

/// The optional `scopes` field: an array of names; absent or `null` is `["full"]`. The names
/// themselves are checked by `accounts::rules::token_scopes`.
fn scopes_field(body: &Value) -> Result<Option<Vec<&str>>, GatewayError> {
    let not_names = GatewayError::InvalidField {
        field: "scopes",
        message: "must be an array of scope names, such as [\"read\"]",
    };
    match body.get("scopes") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| not_names.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(not_names),
    }
}

/// `POST /api/auth/tokens {name, expires_in?, scopes?}` → 201 `{id, name, token, created_at,
/// expires_at, scopes}`.
pub async fn create(ctx: &Ctx<'_>, p: &Principal, body: Value) -> Result<ApiResponse, GatewayError> {
    // `api::session_only` refused API tokens already; checked again where the token is made.
    if p.method != AuthMethod::Jwt {
        return Err(GatewayError::Forbidden(
            "API tokens are created from a login session, not by another API token",
        ));
    }
    let name = string_field(&body, "name")?;
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        // Not a whole number of seconds at all: refused with the lifetime rule's own message.
        Some(v) => Some(v.as_u64().unwrap_or(0)),
    };
    let scopes = scopes_field(&body)?;
    let made = ctx
        .api
        .accounts
        .create_token(p.user_id.as_str(), name, expires_in, scopes.as_deref())
        .await
        .map_err(account_err)?;
    let (row, token) = (made.row, made.secret);
    tracing::info!(
        target: "authgate::audit",
        event = "token_created",
        user_id = p.user_id.as_str(),
        token_id = %row.id,
        scopes = %row.scopes.join(","),
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
            "scopes": row.scopes,
        }),
    ))
}

/// `GET /api/auth/tokens` → 200 `[{id, name, created_at, last_used_at, expires_at, scopes}]`, no
/// secrets.
pub async fn list(ctx: &Ctx<'_>, p: &Principal) -> Result<ApiResponse, GatewayError> {
    let rows = ctx
        .api
        .accounts
        .list_tokens(p.user_id.as_str())
        .await
        .map_err(account_err)?;
    Ok(json(StatusCode::OK, &Value::Array(rows.iter().map(listed).collect())))
}

/// `DELETE /api/auth/tokens/{id}` → 204, or 404 when the caller has no such token.
pub async fn delete(ctx: &Ctx<'_>, p: &Principal, id: &str) -> Result<ApiResponse, GatewayError> {
    ctx.api
        .accounts
        .revoke_token(p.user_id.as_str(), id)
        .await
        .map_err(account_err)?;
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
