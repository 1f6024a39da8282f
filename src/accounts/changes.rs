//! How a change to who may sign in reaches every replica: a logout, an ended session, a disabled
//! user, a deleted API token.
//!
//! The rule this module keeps: a change is written to the store first (by the caller), applied
//! locally second, and broadcast third. A replica that reconnects to the bus re-reads the store
//! and drops its token cache, so a missed message can delay a revocation by at most one
//! reconnect, never lose it.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::store::cache::{Event, Redis};

/// Where changes go: this replica's authenticator (absent in the CLI, which serves nothing) and
/// the Redis bus (when `redis.url` is set).
pub struct Changes {
    local: Option<Arc<Authenticator>>,
    redis: Option<Arc<Redis>>,
}

impl Changes {
    pub fn new(local: Option<Arc<Authenticator>>, redis: Option<Arc<Redis>>) -> Changes {
        Changes { local, redis }
    }

    /// Apply locally, then tell the other replicas. False when a bus is configured but the event
    /// did not reach it: the other replicas then pick it up at their next store sync.
    pub async fn publish(&self, event: Event) -> bool {
        if let Some(authn) = &self.local {
            authn.apply(event.clone());
        }
        let Some(redis) = &self.redis else { return true };
        let sent = redis.publish(&event).await;
        if !sent {
            tracing::warn!(
                "revocation not broadcast (redis unavailable); other replicas pick it up at their next store sync"
            );
        }
        sent
    }

    /// An API token was deleted or a browser session ended: forget it in Redis, here, and on every
    /// replica.
    pub async fn token_deleted(&self, hash: String) -> bool {
        if let Some(redis) = &self.redis {
            redis.del_token(&hash).await;
        }
        self.publish(Event::Token { hash }).await
    }

    /// A user's role or groups changed (the store logged it): drop them here and on every replica.
    pub async fn access_changed(&self, user_id: &str) -> bool {
        self.publish(Event::Access { id: user_id.to_owned() }).await
    }

    /// Whether this user is disabled, as far as this replica knows (the store may not say yet).
    pub fn locally_disabled(&self, user_id: &str) -> bool {
        self.local.as_ref().is_some_and(|a| a.is_disabled(user_id))
    }

    /// This user's `disabled` flag as this replica holds it, kept when the session epoch moves.
    pub fn disabled_now(&self, user_id: &str) -> bool {
        self.local.as_ref().is_some_and(|a| a.user_gate(user_id).disabled)
    }
}
