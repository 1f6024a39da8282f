//! Revoked JWT ids, kept until the token they name could no longer pass verification, and the
//! purge of what has expired.

use super::changes::{self, Change};
use super::*;

impl Store {
    /// Remember a revoked JWT id until `expires_at`; revoking twice is not an error.
    pub async fn revoke_jti(&self, jti: &str, user_id: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let added = sqlx::query(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(user_id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if added.rows_affected() > 0 {
            let change = Change::Jti {
                jti: jti.to_owned(),
                expires_at,
            };
            let at = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
            changes::append(&mut tx, &change, at).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Delete revocations and API tokens whose `expires_at <= now`; returns how many rows went.
    pub async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let revoked = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let tokens = sqlx::query("DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(revoked.rows_affected() + tokens.rows_affected())
    }
}
