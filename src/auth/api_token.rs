//! Long-lived API tokens for programs: `agt_` followed by 43 base62 characters (256 random bits).
//!
//! The rule this module keeps: only the SHA-256 of a token is ever stored or cached, lookups are by
//! that hash (so timing reveals nothing about the secret), and a cached entry is never trusted past
//! its TTL, its expiry, or its user being disabled. `last_used_at` is written at most once a minute
//! per token, by a background task, never on the request path.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::auth::principal::UserId;

pub const PREFIX: &str = "agt_";
/// 43 base62 characters carry 43 × log2(62) ≈ 256.03 bits.
const SECRET_CHARS: usize = 43;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new token (shown to its owner once).
pub fn generate() -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    let mut s = String::with_capacity(PREFIX.len() + SECRET_CHARS);
    s.push_str(PREFIX);
    for _ in 0..SECRET_CHARS {
        s.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    s
}

/// Whether a credential has the API-token shape (checked before any lookup).
pub fn looks_like(token: &str) -> bool {
    token.len() == PREFIX.len() + SECRET_CHARS
        && token.starts_with(PREFIX)
        && token.as_bytes()[PREFIX.len()..].iter().all(u8::is_ascii_alphanumeric)
}

/// The stored form: lower-case hex SHA-256.
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// What a valid token resolves to.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub token_id: String,
    pub user_id: UserId,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<u64>,
    /// What the token may do within its owner's rights.
    pub scopes: crate::policy::Scopes,
}

struct Entry<V> {
    owner: V,
    cached: Instant,
}

/// The in-process cache of resolved opaque credentials (by hash): API tokens, and browser
/// sessions (`auth::session`), and the last-used bookkeeping.
pub struct TokenCache<V = TokenOwner> {
    ttl: Duration,
    max_entries: usize,
    entries: RwLock<HashMap<String, Entry<V>>>,
    touched: Mutex<HashMap<String, Instant>>,
}

/// `last_used_at` is written at most this often per token.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl<V: Clone> TokenCache<V> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        TokenCache {
            ttl,
            max_entries,
            entries: RwLock::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// A cached owner that is still fresh.
    pub fn get(&self, hash: &str) -> Option<V> {
        let entries = self.entries.read().ok()?;
        let e = entries.get(hash)?;
        (e.cached.elapsed() < self.ttl).then(|| e.owner.clone())
    }

    pub fn insert(&self, hash: String, owner: V) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= self.max_entries {
                let ttl = self.ttl;
                entries.retain(|_, e| e.cached.elapsed() < ttl);
                if entries.len() >= self.max_entries {
                    return;
                }
            }
            entries.insert(
                hash,
                Entry {
                    owner,
                    cached: Instant::now(),
                },
            );
        }
    }

    /// Forget a token (deleted here or on another replica).
    pub fn remove(&self, hash: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(hash);
        }
    }

    /// Forget every token (after a cache outage, when invalidations may have been missed).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    /// Whether `last_used_at` is due for this token; records the attempt.
    pub fn touch_due(&self, token_id: &str) -> bool {
        let Ok(mut touched) = self.touched.lock() else {
            return false;
        };
        let now = Instant::now();
        match touched.get(token_id) {
            Some(last) if now.duration_since(*last) < TOUCH_EVERY => false,
            _ => {
                if touched.len() >= self.max_entries {
                    touched.retain(|_, t| now.duration_since(*t) < TOUCH_EVERY);
                }
                touched.insert(token_id.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape_and_are_distinct() {
        let a = generate();
        let b = generate();
        assert!(looks_like(&a) && looks_like(&b));
        assert_ne!(a, b);
        assert_eq!(a.len(), 47);
        for bad in [
            "agt_",
            "agt_short",
            "xyz_0123456789012345678901234567890123456789012",
            &format!("{a}x"),
            &a.replace("agt_", "AGT_"),
        ] {
            assert!(!looks_like(bad), "{bad}");
        }
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cache_entries_expire_and_can_be_removed() {
        let c = TokenCache::new(Duration::from_millis(50), 10);
        let owner = TokenOwner {
            token_id: "t".into(),
            user_id: UserId::parse("u").unwrap(),
            expires_at: None,
            scopes: crate::policy::Scopes::FULL,
        };
        c.insert("h".into(), owner.clone());
        assert!(c.get("h").is_some());
        c.remove("h");
        assert!(c.get("h").is_none());
        c.insert("h".into(), owner);
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get("h").is_none());
    }

    #[test]
    fn touch_is_due_once_a_minute() {
        let c = TokenCache::<TokenOwner>::new(Duration::from_secs(60), 10);
        assert!(c.touch_due("t"));
        assert!(!c.touch_due("t"));
        assert!(c.touch_due("other"));
    }
}
