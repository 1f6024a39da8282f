//! `[redis]`: the optional shared cache and revocation bus of a replica set.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, Secret, secs};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// May carry a password: a `Secret`. Unset: everything stays in-process (one replica).
    pub url: Option<Secret>,
    pub timeout: Dur,
    pub token_ttl: Dur,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            url: None,
            timeout: Dur(Duration::from_millis(100)),
            token_ttl: secs(300),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    pub timeout: Duration,
    /// How long an API token stays in Redis and in each replica's memory.
    pub token_ttl: Duration,
}

pub(super) fn validate(raw: &RawRedis) -> Result<Option<RedisConfig>, ConfigError> {
    let Some(url) = &raw.url else { return Ok(None) };
    if !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://")) {
        return Err(ConfigError::invalid(
            "redis.url",
            "is not a redis:// URL",
            "use e.g. \"redis://127.0.0.1:6379/\", or remove it to keep everything in-process",
        ));
    }
    if raw.timeout.0.is_zero() || raw.timeout.0 > Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "redis.timeout",
            "is outside 1ms to 1s",
            "use a short bound such as \"100ms\" (the default)",
        ));
    }
    if raw.token_ttl.0 < Duration::from_secs(1) || raw.token_ttl.0 > Duration::from_secs(3600) {
        return Err(ConfigError::invalid(
            "redis.token_ttl",
            "is outside 1s to 1h",
            "use a few minutes (the default is 300s)",
        ));
    }
    Ok(Some(RedisConfig {
        url: url.clone(),
        timeout: raw.timeout.0,
        token_ttl: raw.token_ttl.0,
    }))
}
