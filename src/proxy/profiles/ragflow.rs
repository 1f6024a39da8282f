//! The `ragflow` profile: credential injection. RAGFlow accepts only its own API keys, so the
//! caller's stored key (`authgate backend-key set`) goes upstream as `Authorization: Bearer <key>`.
//!
//! The rule this module keeps: a caller with no key is refused (403) before anything is
//! forwarded, a row that does not open fails closed (503), and an opened key lives only in this
//! process's memory, marked sensitive, for at most `upstream.ragflow.cache_ttl` (10 s by default),
//! so a set, changed or removed key is seen within that window on every replica (one caller
//! re-reads it shortly before the window ends; see `profiles::cache`); it is never written to
//! Redis or a log.

use http::HeaderValue;

use super::cache::UserCache;
use crate::accounts::backend_keys::{BackendKeyError, BackendKeys};
use crate::auth::principal::UserId;
use crate::clock::now_secs;
use crate::config::RagflowConfig;
use crate::store::Store;

pub struct Ragflow {
    cfg: RagflowConfig,
    /// By user id: `Bearer <key>`, or `None` for no key; at most `cache.upstream_credentials` users.
    cache: UserCache<Option<HeaderValue>>,
}

impl Ragflow {
    pub fn new(cfg: &RagflowConfig, max_cached: usize) -> Ragflow {
        Ragflow {
            cfg: cfg.clone(),
            cache: UserCache::new(cfg.cache_ttl.as_secs(), max_cached),
        }
    }

    /// What was read for `user` within `cache_ttl` (`Some(None)`: they have no key), if it may
    /// still be used; `None`: the caller reads it ([`Ragflow::fetch`]).
    pub fn cached(&self, user: &UserId) -> Option<Option<HeaderValue>> {
        self.cache.get(user.as_str(), now_secs())
    }

    /// `Bearer <key>` for `user` from the store, or `None` when neither they nor any of their
    /// groups has a key; kept for `cache_ttl`.
    pub async fn fetch(&self, store: &Store, user: &UserId) -> Result<Option<HeaderValue>, BackendKeyError> {
        let now = now_secs();
        let groups = store
            .user_access(user.as_str())
            .await?
            .map(|a| a.groups)
            .unwrap_or_default();
        let keys = BackendKeys::new(&self.cfg, store.clone());
        let value = match keys.for_user(user.as_str(), &groups).await? {
            Some(key) => {
                // `check_key` let only printable ASCII in, so this cannot fail for a stored key.
                let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| BackendKeyError::NotAToken)?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        self.cache.put(user.as_str(), now, value.clone());
        Ok(value)
    }
}
