//! The revocation change log: every change that makes a token invalid (a logout's `jti`, a moved
//! session epoch, a disable or enable, a deleted API token) is appended here with a rising
//! sequence number, in the same transaction as the change itself, so a replica catches up by
//! reading only `seq > watermark`; and the streamed full load a replica starts from.
//!
//! The rule this module keeps: a change and its log row commit together or not at all, and a
//! reader never needs more than the rows after its watermark, the rows of sequence numbers it has
//! not seen yet (`seq` order is not commit order on PostgreSQL), or, once the log was purged past
//! its watermark, a full load.

use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, db_err};

/// One revocation-relevant change, as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A session token was logged out; refused until `expires_at`.
    Jti { jti: String, expires_at: i64 },
    /// A user's gate: disabled or not, and the session epoch below which tokens are refused.
    User {
        id: String,
        disabled: bool,
        epoch: i64,
        /// The one session kept across an epoch move (the one that changed the password).
        exempt_jti: Option<String>,
        /// When the epoch last moved (unix seconds).
        moved_at: i64,
    },
    /// An API token was deleted or a browser session ended (by hash).
    Token { hash: String },
    /// A user's role or groups changed: what replicas hold of them is dropped.
    Access { id: String },
}

/// A change and its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub seq: i64,
    pub change: Change,
}

/// Where the log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The highest sequence number written so far (0 when none).
    pub head: i64,
    /// Every row at or below this was purged: a reader whose watermark is below it must reload.
    pub purged_through: i64,
}

/// A user as the full load sees them: `(id, disabled, token_epoch, epoch_moved_at)`.
pub type GatedUser = (String, bool, i64, i64);

/// Append `change` to the log inside the caller's transaction.
pub(super) async fn append(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    change: &Change,
    at: i64,
) -> Result<(), StoreError> {
    let (kind, subject, disabled, epoch, exempt, expires_at) = match change {
        Change::Jti { jti, expires_at } => ("jti", jti.as_str(), false, 0, None, *expires_at),
        Change::User {
            id,
            disabled,
            epoch,
            exempt_jti,
            moved_at,
        } => ("user", id.as_str(), *disabled, *epoch, exempt_jti.as_deref(), *moved_at),
        Change::Token { hash } => ("token", hash.as_str(), false, 0, None, 0),
        Change::Access { id } => ("access", id.as_str(), false, 0, None, 0),
    };
    sqlx::query(
        "INSERT INTO revocation_log (kind, subject, disabled, epoch, exempt, expires_at, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(kind)
    .bind(subject)
    .bind(i64::from(disabled))
    .bind(epoch)
    .bind(exempt)
    .bind(expires_at)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

fn logged_from_row(r: &AnyRow) -> Result<Option<Logged>, StoreError> {
    let seq = r.try_get::<i64, _>(0).map_err(db_err)?;
    let kind = r.try_get::<String, _>(1).map_err(db_err)?;
    let subject = r.try_get::<String, _>(2).map_err(db_err)?;
    let disabled = r.try_get::<i64, _>(3).map_err(db_err)? != 0;
    let epoch = r.try_get::<i64, _>(4).map_err(db_err)?;
    let exempt = r.try_get::<Option<String>, _>(5).map_err(db_err)?;
    let number = r.try_get::<i64, _>(6).map_err(db_err)?;
    let change = match kind.as_str() {
        "jti" => Change::Jti {
            jti: subject,
            expires_at: number,
        },
        "user" => Change::User {
            id: subject,
            disabled,
            epoch,
            exempt_jti: exempt,
            moved_at: number,
        },
        "token" => Change::Token { hash: subject },
        "access" => Change::Access { id: subject },
        // A kind a newer replica wrote: skipped, never misread.
        _ => return Ok(None),
    };
    Ok(Some(Logged { seq, change }))
}

impl Store {
    /// Up to `limit` logged changes with `seq > after`, in sequence order.
    pub async fn changes_after(&self, after: i64, limit: i64) -> Result<Vec<Logged>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject, disabled, epoch, exempt, expires_at FROM revocation_log \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(l) = logged_from_row(r)? {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// The log's head and purge horizon: two single-row reads by index.
    pub async fn log_position(&self) -> Result<LogPosition, StoreError> {
        let head = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM revocation_log")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?
            .try_get::<i64, _>(0)
            .map_err(db_err)?;
        let purged_through = self.purged_through().await?;
        // A purge that emptied the log leaves no row to take the head from.
        Ok(LogPosition {
            head: head.max(purged_through),
            purged_through,
        })
    }

    /// Every row at or below this sequence number was purged.
    pub async fn purged_through(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT purged_through FROM revocation_log_horizon WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        match row {
            Some(r) => r.try_get::<i64, _>(0).map_err(db_err),
            None => Ok(0),
        }
    }

    /// Drop log rows written before `before` (unix seconds) and move the horizon past them.
    pub async fn purge_log(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let through = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM revocation_log WHERE at < $1")
            .bind(before)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?
            .try_get::<i64, _>(0)
            .map_err(db_err)?;
        if through == 0 {
            tx.commit().await.map_err(db_err)?;
            return Ok(0);
        }
        let gone = sqlx::query("DELETE FROM revocation_log WHERE seq <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO revocation_log_horizon (id, purged_through) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET purged_through = excluded.purged_through \
             WHERE revocation_log_horizon.purged_through < excluded.purged_through",
        )
        .bind(through)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(gone.rows_affected())
    }

    /// How many revocations are in force after `cutoff` (so a full load allocates once).
    pub async fn count_live_jtis(&self, cutoff: i64) -> Result<u64, StoreError> {
        let n = sqlx::query("SELECT COUNT(*) FROM revoked_tokens WHERE expires_at > $1")
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?
            .try_get::<i64, _>(0)
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Stream every revocation still in force after `cutoff` into `each`, one row at a time.
    pub async fn each_live_jti(&self, cutoff: i64, mut each: impl FnMut(&str, i64)) -> Result<u64, StoreError> {
        let mut rows = sqlx::query("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1")
            .bind(cutoff)
            .fetch(&self.pool);
        let mut n = 0;
        while let Some(r) = rows.try_next().await.map_err(db_err)? {
            let jti = r.try_get::<&str, _>(0).map_err(db_err)?;
            each(jti, r.try_get::<i64, _>(1).map_err(db_err)?);
            n += 1;
        }
        Ok(n)
    }

    /// Stream every user whose tokens are restricted now into `each`: the disabled, and those whose
    /// epoch moved after `moved_since` (earlier moves only refuse tokens that have expired since).
    pub async fn each_gated_user(&self, moved_since: i64, mut each: impl FnMut(GatedUser)) -> Result<u64, StoreError> {
        let mut rows = sqlx::query(
            "SELECT id, disabled, token_epoch, epoch_moved_at FROM users \
             WHERE disabled <> 0 OR epoch_moved_at > $1",
        )
        .bind(moved_since)
        .fetch(&self.pool);
        let mut n = 0;
        while let Some(r) = rows.try_next().await.map_err(db_err)? {
            each((
                r.try_get::<String, _>(0).map_err(db_err)?,
                r.try_get::<i64, _>(1).map_err(db_err)? != 0,
                r.try_get::<i64, _>(2).map_err(db_err)?,
                r.try_get::<i64, _>(3).map_err(db_err)?,
            ));
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/changes.db?mode=rwc", dir.path().display());
        (dir, Store::connect(&url).await.unwrap())
    }

    #[tokio::test]
    async fn every_revocation_is_logged_with_its_change_and_read_after_a_watermark() {
        let (_dir, store) = store().await;
        let id = store
            .add_user("alice", "alice", "a@example.com", "hash")
            .await
            .unwrap()
            .id;
        store.revoke_jti("j1", &id, 900).await.unwrap();
        // Revoking twice logs once.
        store.revoke_jti("j1", &id, 900).await.unwrap();
        assert_eq!(store.bump_token_epoch(&id, Some("keep")).await.unwrap(), 1);
        store.set_disabled(&id, true).await.unwrap();
        let token = crate::store::NewApiToken {
            id: "t1",
            user_id: &id,
            name: "ci",
            token_hash: "h1",
            created_at: 1,
            expires_at: None,
            scopes: &[],
        };
        store.create_api_token(&token).await.unwrap();
        store.delete_api_token(&id, "t1").await.unwrap();

        let all = store.changes_after(0, 100).await.unwrap();
        let seqs: Vec<i64> = all.iter().map(|l| l.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let kinds: Vec<&Change> = all.iter().map(|l| &l.change).collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!(
            *kinds[0],
            Change::Jti {
                jti: "j1".into(),
                expires_at: 900
            }
        );
        assert!(
            matches!(kinds[1], Change::User { epoch: 1, disabled: false, exempt_jti: Some(k), moved_at, .. } if k == "keep" && *moved_at > 0)
        );
        assert!(matches!(
            kinds[2],
            Change::User {
                epoch: 1,
                disabled: true,
                exempt_jti: None,
                ..
            }
        ));
        assert_eq!(*kinds[3], Change::Token { hash: "h1".into() });
        assert_eq!(store.changes_after(seqs[1], 100).await.unwrap().len(), 2);
        assert_eq!(store.changes_after(seqs[0], 1).await.unwrap()[0].seq, seqs[1]);

        // A failed change logs nothing.
        assert!(store.set_disabled("nobody", true).await.is_err());
        assert_eq!(store.log_position().await.unwrap().head, seqs[3]);
    }

    #[tokio::test]
    async fn a_purge_moves_the_horizon_past_what_it_dropped() {
        let (_dir, store) = store().await;
        let id = store.add_user("bob", "bob", "b@example.com", "hash").await.unwrap().id;
        store.revoke_jti("j1", &id, 900).await.unwrap();
        store.revoke_jti("j2", &id, 900).await.unwrap();
        let head = store.log_position().await.unwrap().head;
        assert_eq!(store.purge_log(0).await.unwrap(), 0, "nothing is that old");
        assert_eq!(store.purged_through().await.unwrap(), 0);
        assert_eq!(store.purge_log(i64::MAX).await.unwrap(), 2);
        let position = store.log_position().await.unwrap();
        assert_eq!(
            position,
            LogPosition {
                head,
                purged_through: head
            }
        );
        // The sequence goes on past the purge.
        store.revoke_jti("j3", &id, 900).await.unwrap();
        assert!(store.log_position().await.unwrap().head > head);
    }

    #[tokio::test]
    async fn the_full_load_streams_live_revocations_and_gated_users_only() {
        let (_dir, store) = store().await;
        let a = store.add_user("a", "a", "a@example.com", "h").await.unwrap().id;
        let b = store.add_user("b", "b", "b@example.com", "h").await.unwrap().id;
        store.add_user("c", "c", "c@example.com", "h").await.unwrap();
        store.bump_token_epoch(&a, None).await.unwrap();
        store.set_disabled(&b, true).await.unwrap();
        store.revoke_jti("live", &a, 2_000).await.unwrap();
        store.revoke_jti("gone", &a, 10).await.unwrap();
        let mut jtis = Vec::new();
        store
            .each_live_jti(100, |j, e| jtis.push((j.to_owned(), e)))
            .await
            .unwrap();
        assert_eq!(jtis, [("live".to_owned(), 2_000)]);
        let gated = |since| {
            let store = store.clone();
            async move {
                let mut ids = Vec::new();
                store.each_gated_user(since, |(id, ..)| ids.push(id)).await.unwrap();
                ids.sort();
                ids
            }
        };
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        assert_eq!(gated(0).await, both);
        // An epoch that moved before `since` no longer gates; a disabled user always does.
        assert_eq!(gated(i64::MAX).await, [b]);
    }
}
