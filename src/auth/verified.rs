//! The verified-token cache: access tokens whose signature and claims were checked already.
//!
//! The rule this module keeps: only verified tokens enter, a hit re-checks expiry, and the cache
//! is bounded (when full it starts over). Revocation is never cached: it is checked on every
//! request after this.

use super::jwt;

/// Access tokens whose signature and claims have been checked, so a client's next request with the
/// same token skips the HMAC and JSON work. A hit re-checks expiry; revocation is checked on every
/// request after this (it is not cached), so a logout still takes effect at once. Only verified
/// tokens enter, so a flood of forgeries cannot fill it; when full it starts over.
pub struct VerifiedCache {
    // Only verified tokens are inserted, so an attacker cannot choose the keys; the seed is random
    // per process all the same.
    entries: std::sync::Mutex<foldhash::HashMap<Box<str>, jwt::VerifiedToken>>,
    max_entries: usize,
    leeway: u64,
}

impl VerifiedCache {
    pub fn new(max_entries: usize, leeway: std::time::Duration) -> Self {
        VerifiedCache {
            entries: std::sync::Mutex::new(foldhash::HashMap::default()),
            max_entries,
            leeway: leeway.as_secs(),
        }
    }

    pub fn get(&self, token: &str, now: u64) -> Option<jwt::VerifiedToken> {
        let mut entries = self.entries.lock().ok()?;
        let hit = entries.get(token)?;
        if now >= hit.exp.saturating_add(self.leeway) {
            entries.remove(token);
            return None;
        }
        Some(hit.clone())
    }

    pub fn insert(&self, token: &str, verified: &jwt::VerifiedToken) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.max_entries {
                entries.clear();
            }
            entries.insert(token.into(), verified.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal;

    #[test]
    fn the_verified_cache_rechecks_expiry_and_stays_bounded() {
        let cache = VerifiedCache::new(2, std::time::Duration::from_secs(30));
        let v = |exp| jwt::VerifiedToken {
            user_id: principal::UserId::parse("u").unwrap(),
            jti: None,
            iat: None,
            exp,
            epoch: 0,
        };
        cache.insert("a", &v(1000));
        assert!(cache.get("a", 1029).is_some());
        assert!(cache.get("a", 1030).is_none(), "expired (with leeway) on a hit");
        assert!(cache.get("a", 0).is_none(), "and evicted");
        assert!(cache.get("b", 0).is_none());
        for t in ["x", "y", "z"] {
            cache.insert(t, &v(5000));
        }
        assert!(cache.entries.lock().unwrap().len() <= 2);
    }
}
