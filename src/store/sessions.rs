//! Browser sessions: a signed-in browser holds an opaque random id in its cookie; the store keeps
//! only that id's SHA-256, who it belongs to, and when it was made, last seen and ends.
//!
//! The rule this module keeps: a session is ended by deleting its row, and the deletion is logged
//! (as the `token` kind: "the opaque credential with this hash is gone") in the same transaction,
//! so every replica forgets its cached copy at its next sync even when the bus missed it. Ending
//! all of a user's sessions is an epoch move (`bump_token_epoch`); the rows are deleted too, but
//! only for tidiness.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::changes::{self, Change};
use super::{Store, StoreError, db_err};

/// A session as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The public id: shown on the account page and used to end the session.
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    /// The user's session epoch when it began: a later epoch move ends it.
    pub epoch: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// The absolute end (`session.lifetime` after it began).
    pub expires_at: i64,
    /// The client address it began from.
    pub client: String,
    /// A short summary of the browser it began in.
    pub agent: String,
    /// The single sign-on provider it began through (`None`: a local sign-in).
    pub provider: Option<String>,
}

const SESSION_COLUMNS: &str =
    "id, token_hash, user_id, epoch, created_at, last_seen_at, expires_at, client, agent, provider";

fn session_from_row(r: &AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: r.try_get("id").map_err(db_err)?,
        token_hash: r.try_get("token_hash").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        epoch: r.try_get("epoch").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        last_seen_at: r.try_get("last_seen_at").map_err(db_err)?,
        expires_at: r.try_get("expires_at").map_err(db_err)?,
        client: r.try_get("client").map_err(db_err)?,
        agent: r.try_get("agent").map_err(db_err)?,
        provider: r.try_get("provider").map_err(db_err)?,
    })
}

impl Store {
    /// Insert a session. An unknown user is [`StoreError::NotFound`].
    pub async fn create_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&s.id)
        .bind(&s.token_hash)
        .bind(&s.user_id)
        .bind(s.epoch)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(&s.client)
        .bind(&s.agent)
        .bind(&s.provider)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// The session with this hash, ended or not (the caller checks the times and the epoch).
    pub async fn session_by_hash(&self, token_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// The user's sessions that have not reached their absolute end, newest first.
    pub async fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionRow>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND expires_at > $2 \
             ORDER BY created_at DESC, id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(session_from_row).collect()
    }

    /// End the user's session `id`; returns its hash, or `None` when that user has no such session.
    pub async fn delete_session(&self, user_id: &str, id: &str) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let row = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING token_hash")
            .bind(id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let hash = match row {
            Some(row) => {
                let hash = row.try_get::<String, _>(0).map_err(db_err)?;
                let change = Change::Token { hash: hash.clone() };
                changes::append(&mut tx, &change, now()).await?;
                Some(hash)
            }
            None => None,
        };
        tx.commit().await.map_err(db_err)?;
        Ok(hash)
    }

    /// Delete every session of the user but `keep` (after their epoch moved, which already ends
    /// them); returns the hashes, for the caches.
    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<&str>) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2 RETURNING token_hash")
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db_err)).collect()
    }

    /// Delete the user's sessions beyond the newest `keep`; returns their hashes, for the caches.
    pub async fn prune_sessions(&self, user_id: &str, keep: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "DELETE FROM sessions WHERE user_id = $1 AND id NOT IN \
             (SELECT id FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2) \
             RETURNING token_hash",
        )
        .bind(user_id)
        .bind(keep)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db_err)).collect()
    }

    /// Record that session `id` was used at `now`. A session ended meanwhile is not an error.
    pub async fn touch_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Delete sessions past their absolute end, or idle since before `idle_before`.
    pub async fn purge_sessions(&self, now: i64, idle_before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2")
            .bind(now)
            .bind(idle_before)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}

fn now() -> i64 {
    i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX)
}
