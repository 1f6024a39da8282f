//! API tokens: only their hashes are stored, never a token itself.

use sqlx::Row;

use super::*;

impl Store {
    /// Insert an API token. A taken id or hash is [`StoreError::Conflict`]; an unknown user is
    /// [`StoreError::NotFound`].
    pub async fn create_api_token(&self, t: &NewApiToken<'_>) -> Result<ApiTokenRow, StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(t.id)
        .bind(t.user_id)
        .bind(t.name)
        .bind(t.token_hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(ApiTokenRow {
            id: t.id.to_owned(),
            user_id: t.user_id.to_owned(),
            name: t.name.to_owned(),
            token_hash: t.token_hash.to_owned(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: None,
        })
    }

    /// The token with this hash, expired or not (the caller checks `expires_at`).
    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiTokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// The user's tokens, oldest first (ties by id).
    pub async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id");
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(token_from_row).collect()
    }

    /// Delete the user's token `id`; returns its hash, or `None` when that user has no such token.
    pub async fn delete_api_token(&self, user_id: &str, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2 RETURNING token_hash")
            .bind(id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(db_err)).transpose()
    }

    /// Delete token `id` whoever owns it (operator CLI); returns `(user_id, token_hash)`.
    pub async fn delete_api_token_any_user(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("DELETE FROM api_tokens WHERE id = $1 RETURNING user_id, token_hash")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok((
                r.try_get::<String, _>(0).map_err(db_err)?,
                r.try_get::<String, _>(1).map_err(db_err)?,
            ))
        })
        .transpose()
    }

    /// Record a use of token `id`. A token deleted meanwhile is not an error.
    pub async fn touch_api_token(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
