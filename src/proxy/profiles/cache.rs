//! The profiles' per-user cache: what a profile sends upstream for a user (RAG Modulo's minted
//! bearer, a RAGFlow key), kept for a bounded time and a bounded number of users.
//!
//! The rule this module keeps: a value is never served at or after its `until`. Shortly before
//! then (the last fifth of its window), exactly one caller is told to refresh it, by a miss, while
//! the others keep the still-valid value; so a busy user costs one store read per window, not one
//! for every request in flight when the window ends. A hit takes one lock, one hash and one
//! reference-count increment, and allocates nothing. Past `max` users the cache starts over.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct UserCache<V> {
    /// How long a value is served, in seconds (0: nothing is kept).
    window: u64,
    /// Users kept at most.
    max: usize,
    entries: Mutex<HashMap<Box<str>, Entry<V>, foldhash::fast::RandomState>>,
}

struct Entry<V> {
    /// Served while `now < until`.
    until: u64,
    /// From then on, the next caller refreshes (once).
    refresh_at: u64,
    /// Whether that caller has been sent.
    claimed: bool,
    value: V,
}

impl<V: Clone> UserCache<V> {
    pub fn new(window_secs: u64, max: usize) -> UserCache<V> {
        UserCache {
            window: window_secs,
            max,
            entries: Mutex::new(HashMap::default()),
        }
    }

    /// The value kept for `user` at `now` (seconds), or `None`: none kept, expired, or this caller
    /// is the one to refresh it.
    pub fn get(&self, user: &str, now: u64) -> Option<V> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get_mut(user)?;
        if now >= entry.until {
            return None;
        }
        if now >= entry.refresh_at && !entry.claimed {
            entry.claimed = true;
            return None;
        }
        Some(entry.value.clone())
    }

    /// Keep `value` for `user` from `now` for the window.
    pub fn put(&self, user: &str, now: u64, value: V) {
        if self.window == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.max && !entries.contains_key(user) {
            entries.clear();
        }
        let until = now.saturating_add(self.window);
        let entry = Entry {
            until,
            refresh_at: until - self.window / 5,
            claimed: false,
            value,
        };
        match entries.get_mut(user) {
            Some(old) => *old = entry,
            None => {
                entries.insert(user.into(), entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_served_within_its_window_and_never_at_its_end() {
        let cache = UserCache::new(10, 100);
        assert_eq!(cache.get("u1", 100), None);
        cache.put("u1", 100, "a");
        assert_eq!(cache.get("u1", 100), Some("a"));
        assert_eq!(cache.get("u1", 107), Some("a"));
        assert_eq!(cache.get("u2", 101), None);
        assert_eq!(cache.get("u1", 110), None);
        assert_eq!(cache.get("u1", 10_000), None);
    }

    #[test]
    fn near_the_end_one_caller_refreshes_and_the_others_keep_the_value() {
        let cache = UserCache::new(10, 100);
        cache.put("u1", 100, "a");
        // The last fifth of the window: the first caller misses (and refreshes), the rest hit.
        assert_eq!(cache.get("u1", 108), None);
        assert_eq!(cache.get("u1", 108), Some("a"));
        assert_eq!(cache.get("u1", 109), Some("a"));
        // Its refresh starts a new window, with a new refresher at its end.
        cache.put("u1", 109, "b");
        assert_eq!(cache.get("u1", 109), Some("b"));
        assert_eq!(cache.get("u1", 117), None);
        assert_eq!(cache.get("u1", 117), Some("b"));
        // A refresher that never came back: at `until` everyone misses.
        assert_eq!(cache.get("u1", 119), None);
        assert_eq!(cache.get("u1", 119), None);
    }

    #[test]
    fn a_zero_window_keeps_nothing_and_the_cache_is_bounded() {
        let none = UserCache::new(0, 100);
        none.put("u1", 100, 1);
        assert_eq!(none.get("u1", 100), None);

        let cache = UserCache::new(10, 3);
        for (i, user) in ["u1", "u2", "u3"].into_iter().enumerate() {
            cache.put(user, 100, i);
        }
        // Replacing a kept user does not start over; a fourth user does.
        cache.put("u3", 100, 30);
        assert_eq!(cache.get("u1", 100), Some(0));
        cache.put("u4", 100, 4);
        assert_eq!(cache.get("u1", 100), None);
        assert_eq!(cache.get("u4", 100), Some(4));
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
    }
}
