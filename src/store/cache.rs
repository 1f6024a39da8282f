//! Redis: the shared cache and revocation bus of a replica set. Every Redis key and channel name
//! lives in this file.
//!
//! The rule this module keeps: Redis is an accelerator, never a dependency of correctness or of
//! liveness. Every call is bounded by `redis.timeout` (100 ms by default); the first failure opens a
//! breaker for one second, during which Redis is skipped entirely (no pile-up of waiting
//! requests), and callers fall back to the store or to in-process state. The bus carries
//! invalidations; after any reconnect the replica re-reads the store, since messages may have been
//! missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

const CHANNEL: &str = "authgate:events";
const BREAKER: Duration = Duration::from_secs(1);

fn token_key(hash: &str) -> String {
    format!("authgate:tok:{hash}")
}
fn session_key(hash: &str) -> String {
    format!("authgate:ses:{hash}")
}
fn account_key(account: &str) -> String {
    format!("authgate:fail:acct:{account}")
}
fn ip_key(ip: &str) -> String {
    format!("authgate:fail:ip:{ip}")
}

/// What replicas tell each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// A session token was logged out.
    Jti { jti: String, exp: u64 },
    /// A user's gate changed (disabled, or a new session epoch).
    User {
        id: String,
        disabled: bool,
        min_epoch: i64,
        exempt_jti: Option<String>,
    },
    /// An opaque credential is gone (by hash): an API token was deleted or a browser session ended.
    Token { hash: String },
    /// A user's role or groups changed: replicas drop what they hold of them.
    Access { id: String },
}

/// An API token as cached in Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedToken {
    pub id: String,
    pub user_id: String,
    pub expires_at: Option<u64>,
    /// The token's scopes, as stored. Required: an entry written before scopes existed does not
    /// parse, so it is looked up in the store again instead of being read as `full`.
    pub scopes: Vec<String>,
}

/// A browser session as cached in Redis (`store::sessions::SessionRow` without its secret's hash,
/// client and browser).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedSession {
    pub id: String,
    pub user_id: String,
    pub epoch: i64,
    pub expires_at: i64,
    pub last_seen_at: i64,
}

impl From<crate::store::sessions::SessionRow> for CachedSession {
    fn from(row: crate::store::sessions::SessionRow) -> Self {
        CachedSession {
            id: row.id,
            user_id: row.user_id,
            epoch: row.epoch,
            expires_at: row.expires_at,
            last_seen_at: row.last_seen_at,
        }
    }
}

/// Redis calls that failed or timed out, exported as `authgate_redis_errors_total`.
pub static ERRORS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// Why the Redis client could not be made from `redis.url`.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    #[error("redis.url: {0}. Fix: use e.g. \"redis://127.0.0.1:6379/\", or remove it to keep everything in-process")]
    Invalid(redis::RedisError),
}

pub struct Redis {
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    timeout: Duration,
    token_ttl: Duration,
    started: Instant,
    /// Milliseconds since `started` until which Redis is skipped.
    down_until: AtomicU64,
    /// Subscribed to the revocation bus.
    bus: AtomicBool,
}

impl Redis {
    /// Parse the URL; the connection is made in the background (a Redis that is down at start-up
    /// does not stop the gateway).
    pub fn new(url: &str, timeout: Duration, token_ttl: Duration) -> Result<Redis, RedisUrlError> {
        let client = redis::Client::open(url).map_err(RedisUrlError::Invalid)?;
        Ok(Redis {
            client,
            conn: ArcSwapOption::empty(),
            timeout,
            token_ttl,
            started: Instant::now(),
            down_until: AtomicU64::new(0),
            bus: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn is_up(&self) -> bool {
        self.conn.load().is_some() && self.now_ms() >= self.down_until.load(Ordering::Relaxed)
    }

    /// Whether this replica hears the other replicas' revocations now.
    pub fn bus_connected(&self) -> bool {
        self.bus.load(Ordering::Relaxed)
    }

    pub fn set_bus_connected(&self, connected: bool) {
        self.bus.store(connected, Ordering::Relaxed);
    }

    fn trip(&self) {
        let until = self.now_ms() + u64::try_from(BREAKER.as_millis()).unwrap_or(1000);
        self.down_until.store(until, Ordering::Relaxed);
    }

    /// A connection to use now, or `None` while the breaker is open or nothing is connected.
    fn conn(&self) -> Option<ConnectionManager> {
        if !self.is_up() {
            return None;
        }
        self.conn.load_full().map(|c| (*c).clone())
    }

    /// Bound a call by the timeout; a failure opens the breaker.
    async fn bounded<T>(&self, fut: impl std::future::Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis call failed; using the store for the next second");
                ERRORS.inc();
                self.trip();
                None
            }
            Err(_) => {
                tracing::warn!("redis call timed out; using the store for the next second");
                ERRORS.inc();
                self.trip();
                None
            }
        }
    }

    /// Connect (or reconnect) the command connection.
    pub async fn connect(&self) -> bool {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout.max(Duration::from_millis(500)))
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_max_delay(200);
        match tokio::time::timeout(
            Duration::from_secs(2),
            self.client.get_connection_manager_with_config(config),
        )
        .await
        {
            Ok(Ok(c)) => {
                self.conn.store(Some(Arc::new(c)));
                self.down_until.store(0, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// `Some(None)`: Redis answered that it does not know the token; `None`: Redis is unavailable.
    pub async fn get_token(&self, hash: &str) -> Option<Option<CachedToken>> {
        self.get_json(token_key(hash)).await
    }

    pub async fn put_token(&self, hash: &str, token: &CachedToken) {
        self.put_json(token_key(hash), token).await;
    }

    /// Forget an opaque credential that is gone: an API token or a browser session, by hash.
    pub async fn del_token(&self, hash: &str) {
        let Some(mut c) = self.conn() else { return };
        let _: Option<()> = self.bounded(c.del(&[token_key(hash), session_key(hash)])).await;
    }

    pub async fn get_session(&self, hash: &str) -> Option<Option<CachedSession>> {
        self.get_json(session_key(hash)).await
    }

    pub async fn put_session(&self, hash: &str, session: &CachedSession) {
        self.put_json(session_key(hash), session).await;
    }

    /// A cached value: `None` when Redis is skipped or failed, `Some(None)` when it has none.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, key: String) -> Option<Option<T>> {
        let mut c = self.conn()?;
        let raw: Option<String> = self.bounded(c.get(key)).await?;
        Some(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Cache a value for `redis.token_ttl`.
    async fn put_json<T: Serialize>(&self, key: String, value: &T) {
        let Some(mut c) = self.conn() else { return };
        let Ok(value) = serde_json::to_string(value) else {
            return;
        };
        let ttl = self.token_ttl.as_secs().max(1);
        let _: Option<()> = self.bounded(c.set_ex(key, value, ttl)).await;
    }

    /// Tell every replica (this one included). Returns whether it was sent.
    pub async fn publish(&self, event: &Event) -> bool {
        let Some(mut c) = self.conn() else { return false };
        let Ok(payload) = serde_json::to_string(event) else {
            return false;
        };
        let sent: Option<i64> = self.bounded(c.publish(CHANNEL, payload)).await;
        sent.is_some()
    }

    /// Shared login failure counts: `(account failures, its seconds left, ip failures, its seconds left)`.
    pub async fn failures(&self, account: &str, ip: &str) -> Option<(u32, i64, u32, i64)> {
        let mut c = self.conn()?;
        let (ak, ik) = (account_key(account), ip_key(ip));
        let mut pipe = redis::pipe();
        pipe.get(&ak).ttl(&ak).get(&ik).ttl(&ik);
        let (a, at, i, it): (Option<u32>, i64, Option<u32>, i64) = self.bounded(pipe.query_async(&mut c)).await?;
        Some((a.unwrap_or(0), at, i.unwrap_or(0), it))
    }

    /// Count a failure for both keys; a key's window starts at its first failure.
    pub async fn record_failure(&self, account: &str, ip: &str, window: Duration) -> bool {
        let Some(mut c) = self.conn() else { return false };
        let (ak, ik) = (account_key(account), ip_key(ip));
        let secs = i64::try_from(window.as_secs().max(1)).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.incr(&ak, 1)
            .ignore()
            .expire(&ak, secs)
            .arg("NX")
            .ignore()
            .incr(&ik, 1)
            .ignore()
            .expire(&ik, secs)
            .arg("NX")
            .ignore();
        let done: Option<()> = self.bounded(pipe.query_async(&mut c)).await;
        done.is_some()
    }

    pub async fn clear_account(&self, account: &str) {
        let Some(mut c) = self.conn() else { return };
        let _: Option<()> = self.bounded(c.del(account_key(account))).await;
    }

    /// Subscribe to the bus; yields events until the connection drops.
    pub async fn subscribe(&self) -> Option<redis::aio::PubSub> {
        let mut ps = tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
            .await
            .ok()?
            .ok()?;
        tokio::time::timeout(Duration::from_secs(2), ps.subscribe(CHANNEL))
            .await
            .ok()?
            .ok()?;
        Some(ps)
    }
}

/// Decode a bus message; anything malformed is ignored.
pub fn decode(msg: &redis::Msg) -> Option<Event> {
    let payload: String = msg.get_payload().ok()?;
    serde_json::from_str(&payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_tagged_json() {
        let e = Event::User {
            id: "u".into(),
            disabled: true,
            min_epoch: 3,
            exempt_jti: None,
        };
        let s = serde_json::to_string(&e).unwrap();
        assert!(s.starts_with("{\"t\":\"user\""), "{s}");
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
    }

    #[tokio::test]
    async fn an_unreachable_redis_answers_none_fast() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Redis::new(
            &format!("redis://127.0.0.1:{port}/"),
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .unwrap();
        let started = Instant::now();
        assert!(!r.connect().await);
        assert!(r.get_token("h").await.is_none());
        assert!(!r.publish(&Event::Token { hash: "h".into() }).await);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
