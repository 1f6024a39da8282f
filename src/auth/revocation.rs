//! Which otherwise valid tokens are refused: logged-out `jti`s, users whose sessions were ended
//! (session epoch), and disabled users.
//!
//! The rule this module keeps: the check on the request path is a read of in-memory maps under a
//! short `std` lock that is never held across an `.await`. The store is the record; this is its
//! cache, filled at start-up, updated by the handlers that change it, and re-synced periodically
//! (and, with Redis, pushed by other replicas). A sync never undoes a change made while it ran.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::jwt::VerifiedToken;
use crate::error::AuthFailure;

/// What restricts one user's tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGate {
    pub disabled: bool,
    /// Tokens whose `ep` claim is below this are refused.
    pub min_epoch: i64,
    /// One token kept alive across an epoch bump (the session that changed the password).
    pub exempt_jti: Option<String>,
}

#[derive(Default)]
pub struct Revocations {
    /// Revoked `jti` → its `exp` (dropped after that).
    jtis: RwLock<HashMap<String, u64>>,
    users: RwLock<HashMap<String, UserGate>>,
    /// Bumped on every local change, so a sync that overlapped one is discarded.
    changes: AtomicU64,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuse a verified token that was revoked since it was issued.
    pub fn check(&self, user_id: &str, token: &VerifiedToken) -> Result<(), AuthFailure> {
        if let Some(jti) = &token.jti
            && self.jtis.read().map(|m| m.contains_key(jti)).unwrap_or(true)
        {
            return Err(AuthFailure::Revoked);
        }
        self.check_user(user_id, token.epoch, token.jti.as_deref())
    }

    /// Refuse a user who is disabled, or a session older than the user's epoch.
    pub fn check_user(&self, user_id: &str, epoch: i64, jti: Option<&str>) -> Result<(), AuthFailure> {
        // A poisoned lock fails closed.
        let users = self.users.read().map_err(|_| AuthFailure::Revoked)?;
        if let Some(gate) = users.get(user_id) {
            if gate.disabled {
                return Err(AuthFailure::Revoked);
            }
            let exempt = jti.is_some() && gate.exempt_jti.as_deref() == jti;
            if epoch < gate.min_epoch && !exempt {
                return Err(AuthFailure::Revoked);
            }
        }
        Ok(())
    }

    pub fn is_disabled(&self, user_id: &str) -> bool {
        self.users
            .read()
            .map(|u| u.get(user_id).is_some_and(|g| g.disabled))
            .unwrap_or(true)
    }

    pub fn revoke_jti(&self, jti: &str, exp: u64) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.jtis.write() {
            m.insert(jti.to_owned(), exp);
        }
    }

    /// Record a user's gate (after a disable, an epoch bump, or a message from another replica).
    pub fn set_user(&self, user_id: &str, gate: UserGate) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.users.write() {
            if gate == UserGate::default() {
                m.remove(user_id);
            } else {
                m.insert(user_id.to_owned(), gate);
            }
        }
    }

    pub fn user(&self, user_id: &str) -> UserGate {
        self.users
            .read()
            .ok()
            .and_then(|m| m.get(user_id).cloned())
            .unwrap_or_default()
    }

    /// A marker to pass to [`Revocations::replace`]: the change count when a sync began reading.
    pub fn generation(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Replace the state with a snapshot from the store, unless a local change happened since
    /// `generation` (then the next sync will carry it). Exemptions survive when the epoch is unchanged.
    /// Returns whether the snapshot was applied.
    pub fn replace(&self, generation: u64, jtis: Vec<(String, u64)>, users: Vec<(String, bool, i64)>) -> bool {
        let (Ok(mut jt), Ok(mut us)) = (self.jtis.write(), self.users.write()) else {
            return false;
        };
        if self.changes.load(Ordering::SeqCst) != generation {
            return false;
        }
        *jt = jtis.into_iter().collect();
        let mut fresh = HashMap::with_capacity(users.len());
        for (id, disabled, min_epoch) in users {
            let exempt_jti = us
                .get(&id)
                .filter(|g| g.min_epoch == min_epoch)
                .and_then(|g| g.exempt_jti.clone());
            fresh.insert(
                id,
                UserGate {
                    disabled,
                    min_epoch,
                    exempt_jti,
                },
            );
        }
        *us = fresh;
        true
    }

    /// Forget revoked `jti`s past their expiry.
    pub fn purge(&self, now: u64) {
        if let Ok(mut m) = self.jtis.write() {
            m.retain(|_, exp| *exp > now);
        }
    }

    pub fn revoked_count(&self) -> usize {
        self.jtis.read().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::UserId;

    fn tok(jti: &str, epoch: i64) -> VerifiedToken {
        VerifiedToken {
            user_id: UserId::parse("u1").unwrap(),
            jti: Some(jti.into()),
            iat: Some(1),
            exp: u64::MAX,
            epoch,
        }
    }

    #[test]
    fn revoked_jti_is_refused_and_others_pass() {
        let r = Revocations::new();
        r.revoke_jti("a", u64::MAX);
        assert_eq!(r.check("u1", &tok("a", 0)), Err(AuthFailure::Revoked));
        assert_eq!(r.check("u1", &tok("b", 0)), Ok(()));
    }

    #[test]
    fn epoch_bump_ends_older_sessions_except_the_exempt_one() {
        let r = Revocations::new();
        r.set_user(
            "u1",
            UserGate {
                disabled: false,
                min_epoch: 2,
                exempt_jti: Some("keep".into()),
            },
        );
        assert_eq!(r.check("u1", &tok("old", 1)), Err(AuthFailure::Revoked));
        assert_eq!(r.check("u1", &tok("keep", 1)), Ok(()));
        assert_eq!(r.check("u1", &tok("new", 2)), Ok(()));
        assert_eq!(r.check("u2", &tok("other", 0)), Ok(()));
    }

    #[test]
    fn disabled_user_is_refused() {
        let r = Revocations::new();
        r.set_user(
            "u1",
            UserGate {
                disabled: true,
                ..Default::default()
            },
        );
        assert_eq!(r.check("u1", &tok("x", 5)), Err(AuthFailure::Revoked));
        r.set_user("u1", UserGate::default());
        assert_eq!(r.check("u1", &tok("x", 5)), Ok(()));
    }

    #[test]
    fn a_sync_that_overlapped_a_local_change_is_discarded() {
        let r = Revocations::new();
        let g = r.generation();
        r.revoke_jti("fresh", u64::MAX);
        assert!(!r.replace(g, vec![], vec![]));
        assert_eq!(r.check("u1", &tok("fresh", 0)), Err(AuthFailure::Revoked));
        let g = r.generation();
        assert!(r.replace(g, vec![("fresh".into(), u64::MAX)], vec![("u1".into(), true, 0)]));
        assert!(r.is_disabled("u1"));
    }

    #[test]
    fn purge_drops_expired_entries() {
        let r = Revocations::new();
        r.revoke_jti("old", 10);
        r.revoke_jti("new", 100);
        r.purge(50);
        assert_eq!(r.revoked_count(), 1);
    }
}
