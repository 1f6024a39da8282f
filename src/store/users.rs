//! User accounts: insert (one name, look-alikes included, at a time), look up, change, and the
//! gates (disabled, session epoch) that revocation checks read.

use sqlx::Row;

use super::changes::{self, Change};
use super::*;

impl Store {
    /// Insert a new account: a fresh random id, created now. A taken `username_norm` is
    /// [`StoreError::Conflict`].
    pub async fn add_user(
        &self,
        username: &str,
        username_norm: &str,
        email: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.create_user(&NewUser {
            id: &id,
            username,
            username_norm,
            email,
            password_hash,
            created_at: crate::clock::now_secs() as i64,
        })
        .await
    }

    /// Insert a user; a taken `username_norm`, a look-alike of a taken name (a shared UTS #39
    /// key, `username::skeletons`), or a taken id is [`StoreError::Conflict`].
    ///
    /// The look-alike check is part of the insert. On PostgreSQL the insert also holds a
    /// transaction-scoped advisory lock, so two replicas cannot add two look-alikes at once (under
    /// READ COMMITTED, `NOT EXISTS` alone would let both through); SQLite runs one writer at a time.
    pub async fn create_user(&self, u: &NewUser<'_>) -> Result<User, StoreError> {
        let [norm_key, given_key] = crate::username::skeletons(u.username, u.username_norm);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if self.kind == StoreKind::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_NEW_USER_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let done = sqlx::query(
            "INSERT INTO users (id, username, username_norm, email, password_hash, created_at, \
             disabled, token_epoch, skeleton_norm, skeleton_given) \
             SELECT $1, $2, $3, $4, $5, $6, 0, 0, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM users \
             WHERE skeleton_norm IN ($7, $8) OR skeleton_given IN ($7, $8))",
        )
        .bind(u.id)
        .bind(u.username)
        .bind(u.username_norm)
        .bind(u.email)
        .bind(u.password_hash)
        .bind(u.created_at)
        .bind(&norm_key)
        .bind(&given_key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(User {
            id: u.id.to_owned(),
            username: u.username.to_owned(),
            username_norm: u.username_norm.to_owned(),
            email: u.email.to_owned(),
            password_hash: u.password_hash.to_owned(),
            created_at: u.created_at,
            disabled: false,
            token_epoch: 0,
        })
    }

    /// Whether a name is taken: the same normalized name, or a look-alike of one.
    pub async fn name_taken(&self, given: &str, username_norm: &str) -> Result<bool, StoreError> {
        let [norm_key, given_key] = crate::username::skeletons(given, username_norm);
        let row = sqlx::query(
            "SELECT 1 FROM users WHERE username_norm = $1 OR skeleton_norm IN ($2, $3) \
             OR skeleton_given IN ($2, $3) LIMIT 1",
        )
        .bind(username_norm)
        .bind(&norm_key)
        .bind(&given_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.is_some())
    }

    /// Give every user stored without look-alike keys its keys: rows from before migration 2, or
    /// added meanwhile by an older replica. Runs at every start; the keys are computed here, in
    /// Rust, from Unicode's table.
    pub(super) async fn backfill_skeletons(&self) -> Result<(), StoreError> {
        loop {
            let rows = sqlx::query(
                "SELECT id, username, username_norm FROM users \
                 WHERE skeleton_norm IS NULL OR skeleton_given IS NULL LIMIT 500",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in &rows {
                let id: String = row.try_get(0).map_err(db_err)?;
                let given: String = row.try_get(1).map_err(db_err)?;
                let norm: String = row.try_get(2).map_err(db_err)?;
                let [norm_key, given_key] = crate::username::skeletons(&given, &norm);
                sqlx::query("UPDATE users SET skeleton_norm = $1, skeleton_given = $2 WHERE id = $3")
                    .bind(&norm_key)
                    .bind(&given_key)
                    .bind(&id)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err)?;
            }
        }
    }

    pub async fn user_by_norm(&self, username_norm: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username_norm = $1");
        let row = sqlx::query(&sql)
            .bind(username_norm)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The users with this email, compared without case (at most a few: emails are not unique).
    pub async fn users_by_email(&self, email: &str) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE LOWER(email) = LOWER($1) LIMIT 2");
        let rows = sqlx::query(&sql)
            .bind(email)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(user_from_row).collect()
    }

    /// Every user, oldest first (ties by `username_norm`).
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, username_norm");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        found(done.rows_affected())
    }

    /// `(disabled, token_epoch, epoch_moved_at)` of one user as it stands, `None` when gone.
    pub async fn user_gate(&self, id: &str) -> Result<Option<(bool, i64, i64)>, StoreError> {
        let row = sqlx::query("SELECT disabled, token_epoch, epoch_moved_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok((
                r.try_get::<i64, _>(0).map_err(db_err)? != 0,
                r.try_get::<i64, _>(1).map_err(db_err)?,
                r.try_get::<i64, _>(2).map_err(db_err)?,
            ))
        })
        .transpose()
    }

    /// Disable or enable a user, and log it.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        found(done.rows_affected())?;
        let row = sqlx::query("SELECT token_epoch, epoch_moved_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let change = Change::User {
            id: id.to_owned(),
            disabled,
            epoch: row.try_get::<i64, _>(0).map_err(db_err)?,
            exempt_jti: None,
            moved_at: row.try_get::<i64, _>(1).map_err(db_err)?,
        };
        changes::append(&mut tx, &change, now()).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Invalidate every token issued to the user so far, but the session `exempt_jti` (the one
    /// that changed the password); returns the new epoch.
    pub async fn bump_token_epoch(&self, id: &str, exempt_jti: Option<&str>) -> Result<i64, StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query("UPDATE users SET token_epoch = token_epoch + 1, epoch_moved_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        found(done.rows_affected())?;
        let row = sqlx::query("SELECT token_epoch, disabled FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let epoch = row.try_get::<i64, _>(0).map_err(db_err)?;
        let change = Change::User {
            id: id.to_owned(),
            disabled: row.try_get::<i64, _>(1).map_err(db_err)? != 0,
            epoch,
            exempt_jti: exempt_jti.map(str::to_owned),
            moved_at: at,
        };
        changes::append(&mut tx, &change, at).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(epoch)
    }
}

fn now() -> i64 {
    i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX)
}
