//! API tokens: only their hashes are stored, never a token itself.

use sqlx::Row;

use super::changes::{self, Change};
use super::*;

impl Store {
    /// Insert an API token. A taken id or hash is [`StoreError::Conflict`]; an unknown user is
    /// [`StoreError::NotFound`].
    pub async fn create_api_token(&self, t: &NewApiToken<'_>) -> Result<ApiTokenRow, StoreError> {
        // As `identities.groups`: a JSON array; what cannot be encoded is stored as no scope at all.
        let scopes = serde_json::to_string(t.scopes).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at, last_used_at, scopes) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(t.id)
        .bind(t.user_id)
        .bind(t.name)
        .bind(t.token_hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(scopes)
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
            scopes: t.scopes.to_vec(),
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
        Ok(self
            .delete_token_where("id = $1 AND user_id = $2", id, Some(user_id))
            .await?
            .map(|(_, hash)| hash))
    }

    /// Delete token `id` whoever owns it (operator CLI); returns `(user_id, token_hash)`.
    pub async fn delete_api_token_any_user(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        self.delete_token_where("id = $1", id, None).await
    }

    /// Delete one token and log it, in one transaction; `(user_id, token_hash)` when there was one.
    async fn delete_token_where(
        &self,
        filter: &'static str,
        id: &str,
        user_id: Option<&str>,
    ) -> Result<Option<(String, String)>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let sql = format!("DELETE FROM api_tokens WHERE {filter} RETURNING user_id, token_hash");
        let mut query = sqlx::query(&sql).bind(id);
        if let Some(user_id) = user_id {
            query = query.bind(user_id);
        }
        let row = query.fetch_optional(&mut *tx).await.map_err(db_err)?;
        let Some(row) = row else {
            tx.commit().await.map_err(db_err)?;
            return Ok(None);
        };
        let owner = row.try_get::<String, _>(0).map_err(db_err)?;
        let hash = row.try_get::<String, _>(1).map_err(db_err)?;
        let at = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
        changes::append(&mut tx, &Change::Token { hash: hash.clone() }, at).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some((owner, hash)))
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
