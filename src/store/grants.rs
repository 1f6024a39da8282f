//! The `oidc_codes` table: authorization codes authgate issued as an OpenID Provider, between
//! `authorize` and `token`.
//!
//! The rule this module keeps: a code is stored by its SHA-256 only, and taken (read and deleted
//! in one statement), so it serves one token request at most, on any replica.

use sqlx::Row;

use super::{Store, StoreError, db_err};

/// What an authorization code stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    pub nonce: Option<String>,
    /// The PKCE S256 challenge, when the request had one.
    pub code_challenge: Option<String>,
    /// When the user signed in (the session's start), unix seconds.
    pub auth_time: i64,
    pub expires_at: i64,
}

impl Store {
    /// Keep a grant under its code's hash.
    pub async fn put_grant(&self, code_hash: &str, g: &Grant) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oidc_codes (code_hash, client_id, user_id, redirect_uri, scope, nonce, code_challenge, \
             auth_time, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(code_hash)
        .bind(&g.client_id)
        .bind(&g.user_id)
        .bind(&g.redirect_uri)
        .bind(&g.scope)
        .bind(g.nonce.as_deref())
        .bind(g.code_challenge.as_deref())
        .bind(g.auth_time)
        .bind(g.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Take the grant of a code: whoever takes it first gets it, every later call gets `None`.
    pub async fn take_grant(&self, code_hash: &str) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM oidc_codes WHERE code_hash = $1 RETURNING client_id, user_id, redirect_uri, scope, nonce, \
             code_challenge, auth_time, expires_at",
        )
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Grant {
            client_id: r.try_get(0).map_err(db_err)?,
            user_id: r.try_get(1).map_err(db_err)?,
            redirect_uri: r.try_get(2).map_err(db_err)?,
            scope: r.try_get(3).map_err(db_err)?,
            nonce: r.try_get(4).map_err(db_err)?,
            code_challenge: r.try_get(5).map_err(db_err)?,
            auth_time: r.try_get(6).map_err(db_err)?,
            expires_at: r.try_get(7).map_err(db_err)?,
        }))
    }

    /// Delete codes never exchanged, and single sign-on flows never finished.
    pub async fn purge_grants(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oidc_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() + self.purge_flows(now).await?)
    }

    /// When a browser session started (an ID token's `auth_time`).
    pub async fn session_started(&self, id: &str) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT created_at FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Whether a provider verified `email` for this user at their last sign-in with it.
    pub async fn email_verified(&self, user_id: &str, email: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM identities WHERE user_id = $1 AND email_verified = 1 AND LOWER(email) = LOWER($2)",
        )
        .bind(user_id)
        .bind(email)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_grant_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/grants.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let id = store.add_user("alice", "alice", "a@example.com", "h").await.unwrap().id;
        let g = Grant {
            client_id: "rag".into(),
            user_id: id,
            redirect_uri: "https://rag.example/cb".into(),
            scope: "openid email".into(),
            nonce: Some("n".into()),
            code_challenge: None,
            auth_time: 1,
            expires_at: 100,
        };
        store.put_grant("h", &g).await.unwrap();
        assert_eq!(store.take_grant("h").await.unwrap(), Some(g));
        assert_eq!(store.take_grant("h").await.unwrap(), None);
        assert_eq!(store.take_grant("other").await.unwrap(), None);
    }
}
