//! Keeping the revocation state in step with the store: a full, streamed load at start (and
//! after a bus reconnect, or when the change log was purged past this replica's watermark), then
//! only the changes after the watermark.
//!
//! The rule this module keeps: an idle sync reads O(changes) rows, not O(table). Sequence order
//! is not commit order (PostgreSQL hands out numbers before commit), so a number skipped over is
//! remembered as a hole and re-read until it shows up or [`HOLE_WAIT`] passes; after a full load
//! the last [`OVERLAP`] numbers are re-read the same way. Applying a change twice is harmless:
//! a `jti` is only ever added, a token only ever removed, and a user's gate is re-read from the
//! users table, so a late row can never roll a newer gate back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Authenticator;
use super::revocation::{Snapshot, UserGate};
use crate::store::StoreError;
use crate::store::changes::{Change, Logged};

/// How long a skipped sequence number is waited for before it counts as rolled back.
pub const HOLE_WAIT: Duration = Duration::from_secs(30);
/// Sequence numbers at or below the head of a full load that are re-read after it.
pub const OVERLAP: i64 = 64;
/// Changes read per query.
const BATCH: i64 = 1000;
/// Past this many holes, the next sync is a full load.
const MAX_HOLES: usize = 10_000;

/// Where this replica stands in the change log.
#[derive(Debug, Default)]
pub struct Cursor {
    /// A full load has been done.
    loaded: bool,
    /// The highest sequence number applied.
    watermark: i64,
    /// Numbers below the watermark not seen yet, and since when.
    holes: BTreeMap<i64, Instant>,
}

/// What one sync did, for the log and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// A full load was done.
    pub full: bool,
    /// Log rows (or, for a full load, revocations and gated users) read.
    pub rows: u64,
}

impl Authenticator {
    /// Bring the revocation state up to date with the store: a full load when none was done yet
    /// or the log no longer reaches back to this replica's watermark, else the changes since.
    pub async fn sync(&self) -> Result<Synced, StoreError> {
        let mut cursor = self.cursor.lock().await;
        // The horizon is read only once a load was done: it is then one single-row query.
        let stale =
            !cursor.loaded || cursor.holes.len() > MAX_HOLES || self.store.purged_through().await? > cursor.watermark;
        let synced = if stale {
            self.load(&mut cursor).await?
        } else {
            self.catch_up(&mut cursor).await?
        };
        self.record(synced);
        Ok(synced)
    }

    fn record(&self, synced: Synced) {
        self.metrics.revocation_sync(synced.full, synced.rows);
        let (revoked, gated) = self.held();
        self.metrics
            .revocations_held
            .set(i64::try_from(revoked).unwrap_or(i64::MAX));
        self.metrics.gated_users.set(i64::try_from(gated).unwrap_or(i64::MAX));
    }

    /// Forget the watermark: the next [`Authenticator::sync`] is a full load (after a bus
    /// reconnect, when messages may have been missed).
    pub async fn reload(&self) -> Result<Synced, StoreError> {
        let mut cursor = self.cursor.lock().await;
        let synced = self.load(&mut cursor).await?;
        self.record(synced);
        Ok(synced)
    }

    /// Stream the live revocations and the gated users into a new state and swap it in.
    async fn load(&self, cursor: &mut Cursor) -> Result<Synced, StoreError> {
        self.revocations.begin_rebuild();
        match self.read_all().await {
            Ok((head, fresh, rows)) => {
                self.revocations.swap(fresh);
                // Role and group changes before `head` are not replayed: drop what is held.
                self.access.clear();
                let now = Instant::now();
                *cursor = Cursor {
                    loaded: true,
                    watermark: head,
                    holes: (head.saturating_sub(OVERLAP).max(0) + 1..=head)
                        .map(|s| (s, now))
                        .collect(),
                };
                Ok(Synced { full: true, rows })
            }
            Err(e) => {
                self.revocations.abandon_rebuild();
                Err(e)
            }
        }
    }

    async fn read_all(&self) -> Result<(i64, Snapshot, u64), StoreError> {
        // The head first: whatever commits after it is read from the log next.
        let head = self.store.log_position().await?.head;
        let mut fresh = Snapshot::new();
        let cutoff = i64::try_from(self.revocation_cutoff()).unwrap_or(i64::MAX);
        // A few more than counted: revocations committed between the count and the read.
        let expected = self.store.count_live_jtis(cutoff).await?;
        fresh.reserve_loaded(usize::try_from(expected).unwrap_or(0).saturating_add(1024));
        let jtis = self
            .store
            .each_live_jti(cutoff, |jti, exp| fresh.load_jti(jti, u64::try_from(exp).unwrap_or(0)))
            .await?;
        let users = self
            .store
            .each_gated_user(self.moved_since(), |(id, disabled, epoch, moved_at)| {
                fresh.set_user(
                    &id,
                    UserGate {
                        disabled,
                        min_epoch: epoch,
                        exempt_jti: None,
                        moved_at,
                    },
                )
            })
            .await?;
        Ok((head, fresh, jtis + users))
    }

    /// Read and apply the changes after the watermark, and the holes below it.
    async fn catch_up(&self, cursor: &mut Cursor) -> Result<Synced, StoreError> {
        cursor.holes.retain(|_, since| since.elapsed() < HOLE_WAIT);
        let mut after = cursor
            .holes
            .keys()
            .next()
            .map_or(cursor.watermark, |first| (first - 1).min(cursor.watermark));
        let mut rows = 0;
        loop {
            let batch = self.store.changes_after(after, BATCH).await?;
            rows += batch.len() as u64;
            let fresh: Vec<&Logged> = batch.iter().filter(|l| cursor.is_new(l.seq)).collect();
            self.apply_logged(&fresh).await?;
            for l in &fresh {
                cursor.saw(l.seq);
            }
            match batch.last() {
                Some(last) if batch.len() as i64 == BATCH => after = last.seq,
                _ => break,
            }
        }
        Ok(Synced { full: false, rows })
    }

    /// Apply logged changes. A user's gate is re-read from the users table (once per user), so
    /// rows that arrive out of order cannot leave an older gate in place.
    async fn apply_logged(&self, changes: &[&Logged]) -> Result<(), StoreError> {
        // Each changed user once, with the epoch and exempt session of their latest row.
        let mut users: BTreeMap<&str, (i64, Option<&str>)> = BTreeMap::new();
        for l in changes {
            match &l.change {
                Change::Jti { jti, expires_at } => self
                    .revocations
                    .revoke_jti(jti, u64::try_from(*expires_at).unwrap_or(0)),
                Change::Token { hash } => self.forget_credential(hash),
                Change::Access { id } => self.forget_access(id),
                Change::User {
                    id, epoch, exempt_jti, ..
                } => {
                    users.insert(id, (*epoch, exempt_jti.as_deref()));
                }
            }
        }
        for (id, logged) in users {
            let Some((disabled, epoch, moved_at)) = self.store.user_gate(id).await? else {
                // The user row is gone: nothing to re-read; whatever gate is held stays.
                continue;
            };
            let exempt_jti = (logged.0 == epoch).then_some(logged.1).flatten().map(str::to_owned);
            self.revocations.set_user(
                id,
                UserGate {
                    disabled,
                    min_epoch: epoch,
                    exempt_jti,
                    moved_at,
                },
            );
        }
        Ok(())
    }

    /// Users whose epoch moved before this (unix seconds) need no gate: every token issued
    /// before the move has expired, `jwt.expiration` plus the leeway later.
    pub fn moved_since(&self) -> i64 {
        let horizon = self.token_lifetime.saturating_add(self.leeway).as_secs();
        i64::try_from(crate::clock::now_secs().saturating_sub(horizon)).unwrap_or(0)
    }
}

impl Cursor {
    /// Whether `seq` has not been applied yet.
    fn is_new(&self, seq: i64) -> bool {
        seq > self.watermark || self.holes.contains_key(&seq)
    }

    /// `seq` was applied: fill its hole, or move the watermark and remember what was skipped.
    fn saw(&mut self, seq: i64) {
        if self.holes.remove(&seq).is_some() || seq <= self.watermark {
            return;
        }
        let now = Instant::now();
        let skipped = (self.watermark + 1..seq).take(MAX_HOLES + 1);
        for s in skipped {
            self.holes.insert(s, now);
        }
        self.watermark = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_numbers_are_holes_until_seen() {
        let mut c = Cursor {
            loaded: true,
            watermark: 10,
            holes: BTreeMap::new(),
        };
        assert!(!c.is_new(10) && c.is_new(11));
        c.saw(13);
        assert_eq!(c.watermark, 13);
        assert_eq!(c.holes.keys().copied().collect::<Vec<_>>(), vec![11, 12]);
        assert!(c.is_new(12) && !c.is_new(13));
        c.saw(12);
        assert_eq!(c.holes.keys().copied().collect::<Vec<_>>(), vec![11]);
        c.saw(5);
        assert_eq!(c.watermark, 13, "an old number moves nothing");
    }
}
