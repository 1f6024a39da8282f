//! Single sign-on records: which local user a provider's `(issuer, sub)` is, the groups the
//! provider last reported, and the sign-ins in flight.
//!
//! The rule this module keeps: an identity is found by `(issuer, sub)` only, never by email; a
//! flow is taken (read and deleted in one statement) so its state, nonce and verifier serve one
//! callback at most.

use sqlx::Row;

use super::changes::{self, Change};
use super::{Store, StoreError, db_err};

/// A provider identity linked to a local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub user_id: String,
    pub provider: String,
    pub email: String,
    /// Whether the provider said `email_verified: true` for `email` at the last sign-in.
    pub email_verified: bool,
    /// The groups the provider reported at the last sign-in.
    pub groups: Vec<String>,
}

/// A sign-in in flight, between `start` and `callback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub provider: String,
    pub nonce: String,
    pub verifier: String,
    pub return_to: String,
    pub expires_at: i64,
}

fn now() -> i64 {
    i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX)
}

impl Store {
    /// The user linked to `(issuer, subject)`.
    pub async fn identity(&self, issuer: &str, subject: &str) -> Result<Option<Identity>, StoreError> {
        let row = sqlx::query(
            "SELECT issuer, subject, user_id, provider, email, groups, email_verified FROM identities \
             WHERE issuer = $1 AND subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let groups: String = r.try_get(5).map_err(db_err)?;
        let email_verified: i64 = r.try_get(6).map_err(db_err)?;
        Ok(Some(Identity {
            issuer: r.try_get(0).map_err(db_err)?,
            subject: r.try_get(1).map_err(db_err)?,
            user_id: r.try_get(2).map_err(db_err)?,
            provider: r.try_get(3).map_err(db_err)?,
            email: r.try_get(4).map_err(db_err)?,
            email_verified: email_verified != 0,
            groups: serde_json::from_str(&groups).unwrap_or_default(),
        }))
    }

    /// Link an identity to a user, or refresh its email and groups. When the groups are not what
    /// the last sign-in reported, an `access` change is logged in the same transaction, so
    /// replicas without Redis drop the user's cached groups at their next sync; returns whether
    /// they changed.
    pub async fn put_identity(&self, i: &Identity) -> Result<bool, StoreError> {
        let groups = serde_json::to_string(&i.groups).unwrap_or_else(|_| "[]".into());
        let at = now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT groups FROM identities WHERE issuer = $1 AND subject = $2")
                .bind(&i.issuer)
                .bind(&i.subject)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO identities (issuer, subject, user_id, provider, email, groups, created_at, last_sign_in, \
             email_verified) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) \
             ON CONFLICT (issuer, subject) DO UPDATE SET email = $5, groups = $6, last_sign_in = $7, \
             email_verified = $8",
        )
        .bind(&i.issuer)
        .bind(&i.subject)
        .bind(&i.user_id)
        .bind(&i.provider)
        .bind(&i.email)
        .bind(&groups)
        .bind(at)
        .bind(i64::from(i.email_verified))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let before: Vec<String> = before.and_then(|b| serde_json::from_str(&b).ok()).unwrap_or_default();
        let changed = before != i.groups;
        if changed {
            let change = Change::Access { id: i.user_id.clone() };
            changes::append(&mut tx, &change, at).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(changed)
    }

    /// The providers a user is linked to (`authgate user list`).
    pub async fn identities_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT provider FROM identities WHERE user_id = $1 ORDER BY provider")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db_err)).collect()
    }

    /// Remember a sign-in in flight under its state's hash.
    pub async fn put_flow(&self, state_hash: &str, f: &Flow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oidc_flows (state_hash, provider, nonce, verifier, return_to, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(state_hash)
        .bind(&f.provider)
        .bind(&f.nonce)
        .bind(&f.verifier)
        .bind(&f.return_to)
        .bind(f.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Take the flow with this state's hash: it is deleted as it is read, so it serves once.
    pub async fn take_flow(&self, state_hash: &str) -> Result<Option<Flow>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM oidc_flows WHERE state_hash = $1 \
             RETURNING provider, nonce, verifier, return_to, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Flow {
            provider: r.try_get(0).map_err(db_err)?,
            nonce: r.try_get(1).map_err(db_err)?,
            verifier: r.try_get(2).map_err(db_err)?,
            return_to: r.try_get(3).map_err(db_err)?,
            expires_at: r.try_get(4).map_err(db_err)?,
        }))
    }

    /// Delete flows that were never finished.
    pub async fn purge_flows(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oidc_flows WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    /// The ids and hashes of a user's sessions that came from `provider` (back-channel logout).
    pub async fn sessions_from(&self, user_id: &str, provider: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, token_hash FROM sessions WHERE user_id = $1 AND provider = $2")
            .bind(user_id)
            .bind(provider)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
            .collect()
    }
}
