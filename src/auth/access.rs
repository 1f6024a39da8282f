//! Each user's role and groups, held in memory for [`ACCESS_TTL`] so that a policy naming a role or
//! a group costs no store query per request.
//!
//! The rule this module keeps: a change drops the entry (made here, over the Redis bus, or read
//! from the change log), and a store read that raced a drop is answered but not kept, so a dropped
//! role or group never comes back from a read that started before the change.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::api_token::TokenCache;
use crate::policy::{Access, Role};
use crate::store::access::UserAccess;

/// How long a user's role and groups are trusted from memory. Changes reach replicas sooner (the
/// bus, the change log); this bounds what a missed one can cost.
pub const ACCESS_TTL: Duration = Duration::from_secs(30);

/// The per-user cache.
pub struct AccessCache {
    entries: TokenCache<Arc<Access>>,
    /// Moves at every drop: a read that began at another generation is not kept.
    generation: AtomicU64,
}

impl Default for AccessCache {
    fn default() -> Self {
        AccessCache::new(crate::config::CacheConfig::default().access)
    }
}

impl AccessCache {
    /// At most `max_entries` users (`cache.access`).
    pub fn new(max_entries: usize) -> Self {
        AccessCache {
            entries: TokenCache::new(ACCESS_TTL, max_entries),
            generation: AtomicU64::new(0),
        }
    }

    pub fn get(&self, user_id: &str) -> Option<Arc<Access>> {
        self.entries.get(user_id)
    }

    /// The generation to hand back to [`AccessCache::insert`] after a store read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keep what the store said, unless something was dropped since `generation` was read.
    pub fn insert(&self, user_id: &str, access: Arc<Access>, generation: u64) {
        if self.generation() == generation {
            self.entries.insert(user_id.to_owned(), access);
        }
    }

    /// This user's role or groups changed.
    pub fn forget(&self, user_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(user_id);
    }

    /// Changes may have been missed (a bus reconnect, a full reload).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }
}

/// What policies read from what the store holds. An unknown role reads as `user`; a user who is
/// gone has no role beyond `user` and no group.
pub fn from_store(found: Option<UserAccess>) -> Access {
    let Some(found) = found else {
        return Access::default();
    };
    Access {
        role: Role::parse(&found.role).unwrap_or_default(),
        groups: found.groups.into_iter().map(String::into_boxed_str).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_a_drop_is_not_kept() {
        let cache = AccessCache::default();
        let admin = Arc::new(Access {
            role: Role::Admin,
            groups: Box::new([]),
        });
        let before = cache.generation();
        cache.forget("u");
        cache.insert("u", admin.clone(), before);
        assert!(cache.get("u").is_none());
        cache.insert("u", admin, cache.generation());
        assert_eq!(cache.get("u").map(|a| a.role), Some(Role::Admin));
        cache.forget("u");
        assert!(cache.get("u").is_none());
    }

    #[test]
    fn store_values_read_safely() {
        assert_eq!(from_store(None), Access::default());
        let a = from_store(Some(UserAccess {
            role: "superuser".into(),
            groups: vec!["g".into()],
        }));
        assert_eq!(a.role, Role::User);
        assert_eq!(&*a.groups[0], "g");
    }
}
