//! The `backend_keys` table: RAGFlow API keys for the `ragflow` profile, one per user or group,
//! as sealed rows (encryption key id, nonce, ciphertext).
//!
//! The rule this module keeps: the store only ever holds and returns sealed rows; sealing and
//! opening are `accounts::backend_keys`'s, so no plaintext key passes through a query here.

use sqlx::Row;

use super::{Store, StoreError, db_err};

/// Whose key a row is: a user's (by id) or a group's (by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Group,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Group => "group",
        }
    }

    fn parse(s: &str) -> Option<SubjectKind> {
        match s {
            "user" => Some(SubjectKind::User),
            "group" => Some(SubjectKind::Group),
            _ => None,
        }
    }
}

/// A sealed key as stored (base64 nonce and ciphertext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRow {
    pub kind: SubjectKind,
    pub subject: String,
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
    pub updated_at: i64,
}

const COLUMNS: &str = "subject_kind, subject, key_id, nonce, ciphertext, updated_at";

fn row(r: &sqlx::any::AnyRow) -> Result<SealedRow, StoreError> {
    let kind: String = r.try_get(0).map_err(db_err)?;
    Ok(SealedRow {
        kind: SubjectKind::parse(&kind)
            .ok_or_else(|| StoreError::Unavailable("backend_keys: unknown subject_kind".into()))?,
        subject: r.try_get(1).map_err(db_err)?,
        key_id: r.try_get(2).map_err(db_err)?,
        nonce: r.try_get(3).map_err(db_err)?,
        ciphertext: r.try_get(4).map_err(db_err)?,
        updated_at: r.try_get(5).map_err(db_err)?,
    })
}

impl Store {
    /// Store `row`, replacing the subject's previous key.
    pub async fn put_backend_key(&self, row: &SealedRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO backend_keys (subject_kind, subject, key_id, nonce, ciphertext, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (subject_kind, subject) DO UPDATE SET key_id = excluded.key_id,
             nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(row.kind.as_str())
        .bind(&row.subject)
        .bind(&row.key_id)
        .bind(&row.nonce)
        .bind(&row.ciphertext)
        .bind(row.updated_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// The subject's sealed key, if any.
    pub async fn backend_key(&self, kind: SubjectKind, subject: &str) -> Result<Option<SealedRow>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backend_keys WHERE subject_kind = $1 AND subject = $2"
        ))
        .bind(kind.as_str())
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        r.as_ref().map(row).transpose()
    }

    /// Remove the subject's key; whether there was one.
    pub async fn remove_backend_key(&self, kind: SubjectKind, subject: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM backend_keys WHERE subject_kind = $1 AND subject = $2")
            .bind(kind.as_str())
            .bind(subject)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    /// Every sealed key, users first, then groups, each by subject.
    pub async fn backend_keys(&self) -> Result<Vec<SealedRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backend_keys ORDER BY subject_kind DESC, subject"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(row).collect()
    }
}
