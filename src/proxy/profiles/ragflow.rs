//! The `ragflow` profile: credential injection. RAGFlow accepts only its own API keys, so the
//! caller's stored key (`authgate backend-key set`) goes upstream as `Authorization: Bearer <key>`.
//!
//! The rule this module keeps: a caller with no key is refused (403) before anything is
//! forwarded, a row that does not open fails closed (503), and an opened key lives only in this
//! process's memory, marked sensitive, for at most `upstream.ragflow.cache_ttl` (10 s by default),
//! so a set, changed or removed key is seen within that window on every replica; it is never
//! written to Redis or a log.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderValue;

use crate::accounts::backend_keys::{BackendKeyError, BackendKeys};
use crate::auth::principal::UserId;
use crate::clock::now_secs;
use crate::config::RagflowConfig;
use crate::store::Store;

pub struct Ragflow {
    cfg: RagflowConfig,
    ttl: u64,
    /// By user id: (valid until, `Bearer <key>`, or `None` for no key).
    cache: Mutex<HashMap<String, (u64, Option<HeaderValue>)>>,
    /// Users kept at most; past this the cache starts over (`cache.upstream_credentials`).
    max_cached: usize,
}

impl Ragflow {
    pub fn new(cfg: &RagflowConfig, max_cached: usize) -> Ragflow {
        Ragflow {
            cfg: cfg.clone(),
            ttl: cfg.cache_ttl.as_secs(),
            cache: Mutex::new(HashMap::new()),
            max_cached,
        }
    }

    /// `Bearer <key>` for `user`, or `None` when neither they nor any of their groups has a key.
    pub async fn bearer(&self, store: &Store, user: &UserId) -> Result<Option<HeaderValue>, BackendKeyError> {
        let now = now_secs();
        if let Ok(cache) = self.cache.lock()
            && let Some((until, value)) = cache.get(user.as_str())
            && now < *until
        {
            return Ok(value.clone());
        }
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
        if self.ttl > 0
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= self.max_cached {
                cache.clear();
            }
            cache.insert(user.as_str().to_owned(), (now + self.ttl, value.clone()));
        }
        Ok(value)
    }
}
