//! What replicas share through Redis: revocations pushed over the bus, API tokens cached, and
//! login failure counts. Without `redis.url` every function here acts on this replica alone.
//!
//! The rule this module keeps: a change is written to the store first, applied locally second,
//! and broadcast third; a replica that reconnects to the bus re-reads the store and drops its token
//! cache, so a missed message can delay a revocation by at most one reconnect, never lose it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::Gateway;
use crate::auth::revocation::UserGate;
use crate::store::cache::{self, Event};

/// Apply an event from the bus (or from this replica) to in-memory state.
pub fn apply(gw: &Gateway, event: Event) {
    match event {
        Event::Jti { jti, exp } => gw.revocations.revoke_jti(&jti, exp),
        Event::User {
            id,
            disabled,
            min_epoch,
            exempt_jti,
        } => gw.revocations.set_user(
            &id,
            UserGate {
                disabled,
                min_epoch,
                exempt_jti,
            },
        ),
        Event::Token { hash } => gw.api_tokens.remove(&hash),
    }
}

impl Gateway {
    /// Apply locally, then tell the other replicas.
    pub async fn broadcast(&self, event: Event) {
        apply(self, event.clone());
        if let Some(redis) = &self.redis
            && !redis.publish(&event).await
        {
            tracing::warn!(
                "revocation not broadcast (redis unavailable); other replicas pick it up at their next store sync"
            );
        }
    }

    /// An API token was deleted: forget it here, in Redis, and on every replica.
    pub async fn broadcast_token_revoked(&self, hash: &str) {
        if let Some(redis) = &self.redis {
            redis.del_token(hash).await;
        }
        self.broadcast(Event::Token { hash: hash.to_owned() }).await;
    }

    /// `Err(retry_after)` when this account or IP has failed too often (shared counts with Redis).
    pub async fn login_allowed(&self, account: &str, ip: IpAddr) -> Result<(), Duration> {
        let c = self.limiter.config();
        if let Some(redis) = &self.redis
            && let Some((a, at, i, it)) = redis.failures(account, &ip.to_string()).await
        {
            let wait = |ttl: i64| Duration::from_secs(u64::try_from(ttl).unwrap_or(0).max(1));
            if a >= c.max_failures_per_account {
                return Err(wait(at));
            }
            if i >= c.max_failures_per_ip {
                return Err(wait(it));
            }
            return Ok(());
        }
        self.limiter.check(account, ip)
    }

    pub async fn login_failed(&self, account: &str, ip: IpAddr) {
        // Counted locally too, so an outage of Redis still has recent history to go on.
        self.limiter.record_failure(account, ip);
        if let Some(redis) = &self.redis {
            redis
                .record_failure(account, &ip.to_string(), self.limiter.config().window)
                .await;
        }
    }

    pub async fn login_succeeded(&self, account: &str) {
        self.limiter.record_success(account);
        if let Some(redis) = &self.redis {
            redis.clear_account(account).await;
        }
    }
}

/// Keep the bus connected: subscribe, catch up from the store, apply events; on any drop, retry.
pub async fn run_bus(gw: Arc<Gateway>, stop: CancellationToken) {
    let Some(redis) = gw.redis.as_ref() else { return };
    loop {
        if stop.is_cancelled() {
            return;
        }
        if redis.connect().await
            && let Some(pubsub) = redis.subscribe().await
        {
            // Anything published while we were away is in the store: re-read it, and drop cached
            // tokens that may have been deleted meanwhile.
            gw.api_tokens.clear();
            if let Err(e) = crate::sync_revocations(&gw.store, &gw.revocations, gw.config.jwt.leeway).await {
                tracing::warn!(error = %e, "store re-sync after redis reconnect failed");
            }
            tracing::info!("connected to the redis revocation bus");
            redis.set_bus_connected(true);
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    () = stop.cancelled() => {
                        redis.set_bus_connected(false);
                        return;
                    }
                    msg = messages.next() => match msg {
                        Some(msg) => {
                            if let Some(event) = cache::decode(&msg) {
                                apply(&gw, event);
                            }
                        }
                        None => break,
                    },
                }
            }
            redis.set_bus_connected(false);
            tracing::warn!("lost the redis revocation bus; reconnecting");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
