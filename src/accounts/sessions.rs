//! Browser sessions as an account operation: start one after a sign-in, list them, end one, and
//! end the rest when the user's epoch moves.
//!
//! The rule this module keeps: a new session always gets a new random id (no fixation), its row
//! is written before the cookie is handed out, and an ended session is forgotten here, in Redis
//! and on every replica (`Changes::token_deleted`) after its row is gone.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use super::{AccountError, Accounts};
use crate::auth::session;
use crate::store::User;
use crate::store::sessions::SessionRow;

/// The most sessions one user keeps: a new one past it ends the oldest, so signing in again and
/// again cannot grow the store without bound.
pub const MAX_SESSIONS_PER_USER: i64 = 50;

/// A session just started: its row, and the cookie value, handed out once and never stored.
pub struct NewSession {
    pub row: SessionRow,
    pub secret: String,
}

impl Accounts {
    /// Start a session for `user`, who just proved who they are.
    pub async fn start_session(
        &self,
        user: &User,
        lifetime: Duration,
        client: IpAddr,
        agent: &str,
        provider: Option<&str>,
    ) -> Result<NewSession, AccountError> {
        let secret = session::generate();
        let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
        let row = SessionRow {
            id: Uuid::new_v4().to_string(),
            token_hash: session::hash(&secret),
            user_id: user.id.clone(),
            epoch: user.token_epoch,
            created_at: now,
            last_seen_at: now,
            expires_at: now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
            client: client.to_string(),
            agent: agent.to_owned(),
            provider: provider.map(str::to_owned),
        };
        self.store.create_session(&row).await?;
        match self.store.prune_sessions(&user.id, MAX_SESSIONS_PER_USER).await {
            Ok(pruned) => {
                for hash in pruned {
                    self.changes.token_deleted(hash).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "old sessions beyond the per-user cap not pruned"),
        }
        Ok(NewSession { row, secret })
    }

    /// The user's sessions that are still live: not past their end and begun at the current
    /// epoch (or the one session kept across its move).
    pub async fn list_sessions(&self, user: &User, keep: Option<&str>) -> Result<Vec<SessionRow>, AccountError> {
        let now = i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX);
        let mut rows = self.store.list_sessions(&user.id, now).await?;
        rows.retain(|s| s.epoch >= user.token_epoch || Some(s.id.as_str()) == keep);
        Ok(rows)
    }

    /// End one of the user's sessions; another user's is [`AccountError::NoSuchSession`].
    pub async fn end_session(&self, user_id: &str, id: &str) -> Result<(), AccountError> {
        if id.is_empty() || id.len() > 64 {
            return Err(AccountError::NoSuchSession);
        }
        let hash = self
            .store
            .delete_session(user_id, id)
            .await?
            .ok_or(AccountError::NoSuchSession)?;
        self.changes.token_deleted(hash).await;
        Ok(())
    }

    /// The session behind a cookie, ended (sign-out). A cookie that names no session is fine.
    /// Returns the session that was ended, when there was one.
    pub async fn end_session_by_secret(&self, secret: &str) -> Result<Option<SessionRow>, AccountError> {
        if !session::looks_like(secret) {
            return Ok(None);
        }
        let hash = session::hash(secret);
        let row = self.store.session_by_hash(&hash).await?;
        if let Some(row) = &row {
            self.end_session(&row.user_id, &row.id).await?;
        }
        Ok(row)
    }

    /// End the user's sessions that began through `provider` (its back-channel logout); how many.
    pub async fn end_provider_sessions(&self, user_id: &str, provider: &str) -> Result<usize, AccountError> {
        let found = self.store.sessions_from(user_id, provider).await?;
        for (id, _) in &found {
            match self.end_session(user_id, id).await {
                Ok(()) | Err(AccountError::NoSuchSession) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found.len())
    }

    /// Delete the rows of sessions the user's epoch move already ended (all but `keep`).
    pub(super) async fn drop_ended_sessions(&self, user_id: &str, keep: Option<&str>) {
        match self.store.delete_user_sessions(user_id, keep).await {
            Ok(hashes) => {
                for hash in hashes {
                    self.changes.token_deleted(hash).await;
                }
            }
            // Tidiness only: the epoch move already refuses them everywhere.
            Err(e) => tracing::warn!(error = %e, "ended sessions not deleted; the purge removes them later"),
        }
    }
}
