//! Brute-force limits on login: failed attempts are counted per account and per client IP in a
//! fixed window; past either limit the answer is 429 with `Retry-After` until the window ends.
//!
//! The rule this module keeps: memory is bounded (expired windows are swept, and a full table
//! refuses new keys rather than growing), unknown accounts are counted exactly like known ones,
//! and no lock is held across an `.await`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::config::LimiterConfig;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Default)]
struct Table(HashMap<String, Window>);

impl Table {
    fn blocked(&self, key: &str, max: u32, window: Duration, now: Instant) -> Option<Duration> {
        let w = self.0.get(key)?;
        let ends = w.started + window;
        (w.failures >= max && now < ends).then(|| ends - now)
    }

    fn fail(&mut self, key: &str, window: Duration, max_entries: usize, now: Instant) {
        if self.0.len() >= max_entries && !self.0.contains_key(key) {
            self.0.retain(|_, w| now < w.started + window);
            if self.0.len() >= max_entries {
                return;
            }
        }
        let w = self.0.entry(key.to_owned()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started + window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

pub struct LoginLimiter {
    config: LimiterConfig,
    accounts: Mutex<Table>,
    ips: Mutex<Table>,
}

impl LoginLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        LoginLimiter {
            config,
            accounts: Mutex::new(Table::default()),
            ips: Mutex::new(Table::default()),
        }
    }

    pub fn config(&self) -> LimiterConfig {
        self.config
    }

    /// `Err(retry_after)` when this account or this IP has failed too often.
    pub fn check(&self, account: &str, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let c = &self.config;
        let full = |m: &Mutex<Table>| m.lock().map(|t| t.0.len() >= c.max_entries).unwrap_or(true);
        let by_account =
            self.accounts
                .lock()
                .map_err(|_| c.window)?
                .blocked(account, c.max_failures_per_account, c.window, now);
        let by_ip =
            self.ips
                .lock()
                .map_err(|_| c.window)?
                .blocked(&ip.to_string(), c.max_failures_per_ip, c.window, now);
        match by_account.max(by_ip) {
            Some(wait) => Err(wait),
            // A table that cannot record failures any more fails closed.
            None if full(&self.accounts) || full(&self.ips) => {
                self.sweep();
                if full(&self.accounts) || full(&self.ips) {
                    Err(c.window)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, account: &str, ip: IpAddr) {
        let now = Instant::now();
        let c = &self.config;
        if let Ok(mut t) = self.accounts.lock() {
            t.fail(account, c.window, c.max_entries, now);
        }
        if let Ok(mut t) = self.ips.lock() {
            t.fail(&ip.to_string(), c.window, c.max_entries, now);
        }
    }

    /// A successful login clears the account's count (not the IP's).
    pub fn record_success(&self, account: &str) {
        if let Ok(mut t) = self.accounts.lock() {
            t.0.remove(account);
        }
    }

    /// Drop expired windows.
    pub fn sweep(&self) {
        let now = Instant::now();
        let window = self.config.window;
        for m in [&self.accounts, &self.ips] {
            if let Ok(mut t) = m.lock() {
                t.0.retain(|_, w| now < w.started + window);
            }
        }
    }
}

/// The login limits as a replica set applies them: counts shared through Redis when there is one
/// (so an attacker cannot spread attempts over replicas), and this replica's own table otherwise
/// or while Redis is down. Used by every way of signing in.
pub struct LoginLimits {
    local: LoginLimiter,
    redis: Option<std::sync::Arc<crate::store::cache::Redis>>,
}

impl LoginLimits {
    pub fn new(config: LimiterConfig, redis: Option<std::sync::Arc<crate::store::cache::Redis>>) -> Self {
        LoginLimits {
            local: LoginLimiter::new(config),
            redis,
        }
    }

    /// `Err(retry_after)` when this account or IP has failed too often.
    pub async fn allowed(&self, account: &str, ip: IpAddr) -> Result<(), Duration> {
        let c = self.local.config();
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
        self.local.check(account, ip)
    }

    pub async fn failed(&self, account: &str, ip: IpAddr) {
        // Counted locally too, so an outage of Redis still has recent history to go on.
        self.local.record_failure(account, ip);
        if let Some(redis) = &self.redis {
            redis
                .record_failure(account, &ip.to_string(), self.local.config().window)
                .await;
        }
    }

    pub async fn succeeded(&self, account: &str) {
        self.local.record_success(account);
        if let Some(redis) = &self.redis {
            redis.clear_account(account).await;
        }
    }

    /// Drop expired windows from this replica's table.
    pub fn sweep(&self) {
        self.local.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(acct: u32, ip: u32) -> LoginLimiter {
        LoginLimiter::new(LimiterConfig {
            max_failures_per_account: acct,
            max_failures_per_ip: ip,
            window: Duration::from_secs(60),
            max_entries: 1000,
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const IP2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn account_is_blocked_after_its_limit_from_any_ip() {
        let l = limiter(3, 100);
        for _ in 0..3 {
            assert!(l.check("alice", IP).is_ok());
            l.record_failure("alice", IP);
        }
        let wait = l.check("alice", IP2).unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert!(l.check("bob", IP2).is_ok());
    }

    #[test]
    fn ip_is_blocked_across_accounts() {
        let l = limiter(100, 3);
        for name in ["a", "b", "c"] {
            l.record_failure(name, IP);
        }
        assert!(l.check("d", IP).is_err());
        assert!(l.check("d", IP2).is_ok());
    }

    #[test]
    fn success_clears_the_account() {
        let l = limiter(2, 100);
        l.record_failure("alice", IP);
        l.record_success("alice");
        l.record_failure("alice", IP);
        assert!(l.check("alice", IP).is_ok());
    }

    #[test]
    fn a_full_table_fails_closed() {
        let l = LoginLimiter::new(LimiterConfig {
            max_failures_per_account: 5,
            max_failures_per_ip: 5,
            window: Duration::from_secs(60),
            max_entries: 2,
        });
        l.record_failure("a", IP);
        l.record_failure("b", IP);
        assert!(l.check("c", IP2).is_err());
    }
}
