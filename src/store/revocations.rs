//! Revoked JWT ids, kept until the token they name could no longer pass verification, and the
//! purge of what has expired.

use sqlx::Row;

use super::*;

impl Store {
    /// Remember a revoked JWT id until `expires_at`; revoking twice is not an error.
    pub async fn revoke_jti(&self, jti: &str, user_id: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(user_id)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// `(jti, expires_at)` of revocations still in force at `now` (`expires_at > now`).
    pub async fn revoked_jtis(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1 ORDER BY expires_at, jti")
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0).map_err(db_err)?,
                    r.try_get::<i64, _>(1).map_err(db_err)?,
                ))
            })
            .collect()
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
