//! Roles and groups: each user's one role (`users.role`), their local groups (`user_groups`), and
//! what policies read, the union of local groups and the groups their providers last reported.
//!
//! The rule this module keeps: a change to a role or a group commits together with its change-log
//! row (kind `access`), so every replica drops what it holds of that user even without Redis.

use sqlx::Row;

use super::changes::{self, Change};
use super::{Store, StoreError, db_err, found};

/// What policies know of a user: their role and every group they are in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAccess {
    /// `user` or `admin` (as stored; `policy::Role::parse` reads it).
    pub role: String,
    /// Local and provider groups, sorted, each once.
    pub groups: Vec<String>,
}

fn now() -> i64 {
    i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX)
}

impl Store {
    /// A user's role and groups (local and from providers); `None` when the user does not exist.
    pub async fn user_access(&self, user_id: &str) -> Result<Option<UserAccess>, StoreError> {
        let Some(row) = sqlx::query("SELECT role FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let role: String = row.try_get(0).map_err(db_err)?;
        let mut groups = self.local_groups(user_id).await?;
        let provided = sqlx::query("SELECT groups FROM identities WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        for r in &provided {
            let json: String = r.try_get(0).map_err(db_err)?;
            groups.extend(serde_json::from_str::<Vec<String>>(&json).unwrap_or_default());
        }
        groups.sort_unstable();
        groups.dedup();
        Ok(Some(UserAccess { role, groups }))
    }

    /// A user's local groups, sorted.
    pub async fn local_groups(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM user_groups WHERE user_id = $1 ORDER BY name")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db_err)).collect()
    }

    /// Set a user's role, and log it.
    pub async fn set_role(&self, user_id: &str, role: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        found(done.rows_affected())?;
        let change = Change::Access { id: user_id.to_owned() };
        changes::append(&mut tx, &change, now()).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Add a user to a local group (`true`), or remove them (`false`), and log it. Returns whether
    /// anything changed; a user that does not exist is [`StoreError::NotFound`].
    pub async fn set_group(&self, user_id: &str, name: &str, member: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = if member {
            sqlx::query("INSERT INTO user_groups (user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        } else {
            sqlx::query("DELETE FROM user_groups WHERE user_id = $1 AND name = $2")
        }
        .bind(user_id)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        let change = Change::Access { id: user_id.to_owned() };
        changes::append(&mut tx, &change, now()).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roles_and_groups_are_stored_logged_and_joined_with_provider_groups() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/access.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let id = store.add_user("alice", "alice", "a@example.com", "h").await.unwrap().id;
        let access = store.user_access(&id).await.unwrap().unwrap();
        assert_eq!(access.role, "user");
        assert!(access.groups.is_empty());
        assert_eq!(store.user_access("nobody").await.unwrap(), None);

        store.set_role(&id, "admin").await.unwrap();
        assert!(store.set_group(&id, "research", true).await.unwrap());
        assert!(!store.set_group(&id, "research", true).await.unwrap(), "already in it");
        assert!(store.set_group(&id, "ops", true).await.unwrap());
        assert!(matches!(
            store.set_role("nobody", "admin").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.set_group("nobody", "x", true).await,
            Err(StoreError::NotFound)
        ));
        let mut identity = crate::store::identities::Identity {
            issuer: "https://idp".into(),
            subject: "s".into(),
            user_id: id.clone(),
            provider: "idp".into(),
            email: "a@example.com".into(),
            email_verified: false,
            groups: vec!["research".into(), "staff".into()],
        };
        // A first sign-in with groups, and a second with the same: only the first is a change.
        assert!(store.put_identity(&identity).await.unwrap());
        assert!(!store.put_identity(&identity).await.unwrap());
        let access = store.user_access(&id).await.unwrap().unwrap();
        assert_eq!(access.role, "admin");
        assert_eq!(access.groups, ["ops", "research", "staff"]);
        assert_eq!(store.local_groups(&id).await.unwrap(), ["ops", "research"]);

        assert!(store.set_group(&id, "ops", false).await.unwrap());
        assert!(!store.set_group(&id, "ops", false).await.unwrap());
        // The provider stops reporting `staff`: logged, so replicas without Redis see it.
        identity.groups = vec!["research".into()];
        assert!(store.put_identity(&identity).await.unwrap());
        assert_eq!(store.user_access(&id).await.unwrap().unwrap().groups, ["research"]);
        let logged: Vec<Change> = store
            .changes_after(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.change)
            .collect();
        assert_eq!(logged, vec![Change::Access { id: id.clone() }; 6]);
    }
}
