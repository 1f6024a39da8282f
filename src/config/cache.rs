//! `[cache]`: how many entries each in-memory cache may hold, so that no traffic pattern grows the
//! gateway's memory without bound. A full cache drops what has expired, then starts over or stops
//! admitting until entries expire (each cache says which); a miss only costs a lookup.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// JWTs whose signature and claims were checked already.
    pub verified_tokens: usize,
    /// API tokens resolved to their owner (by hash), and their last-use bookkeeping.
    pub api_tokens: usize,
    /// Browser sessions resolved to their owner (by hash).
    pub sessions: usize,
    /// Single sign-on providers' access tokens resolved to a user (by hash).
    pub provider_tokens: usize,
    /// Users' roles and groups, for policies.
    pub access: usize,
    /// Per-user upstream credentials: ragflow keys, rag_modulo tokens, identity assertions.
    pub upstream_credentials: usize,
    /// TLS sessions kept for resumption by session ID (0: none).
    pub tls_sessions: usize,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            verified_tokens: 10_000,
            api_tokens: 100_000,
            sessions: 100_000,
            provider_tokens: 10_000,
            access: 100_000,
            upstream_credentials: 10_000,
            tls_sessions: 256,
        }
    }
}

/// The validated caps (entries).
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    pub verified_tokens: usize,
    pub api_tokens: usize,
    pub sessions: usize,
    pub provider_tokens: usize,
    pub access: usize,
    pub upstream_credentials: usize,
    pub tls_sessions: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        // The defaults are valid by construction (a unit test holds them to it).
        let r = RawCache::default();
        CacheConfig {
            verified_tokens: r.verified_tokens,
            api_tokens: r.api_tokens,
            sessions: r.sessions,
            provider_tokens: r.provider_tokens,
            access: r.access,
            upstream_credentials: r.upstream_credentials,
            tls_sessions: r.tls_sessions,
        }
    }
}

/// At most this many entries in any one cache: past it, a cache is a leak by another name.
const MAX_ENTRIES: usize = 10_000_000;

fn entries(key: &'static str, value: usize, min: usize) -> Result<usize, ConfigError> {
    if value < min || value > MAX_ENTRIES {
        return Err(ConfigError::invalid(
            key,
            format!("is {value}"),
            if min == 0 {
                "use 0 to 10000000 entries (see the README's config table for the default)"
            } else {
                "use 1 to 10000000 entries (see the README's config table for the default)"
            },
        ));
    }
    Ok(value)
}

pub(super) fn validate(c: &RawCache) -> Result<CacheConfig, ConfigError> {
    Ok(CacheConfig {
        verified_tokens: entries("cache.verified_tokens", c.verified_tokens, 1)?,
        api_tokens: entries("cache.api_tokens", c.api_tokens, 1)?,
        sessions: entries("cache.sessions", c.sessions, 1)?,
        provider_tokens: entries("cache.provider_tokens", c.provider_tokens, 1)?,
        access: entries("cache.access", c.access, 1)?,
        upstream_credentials: entries("cache.upstream_credentials", c.upstream_credentials, 1)?,
        tls_sessions: entries("cache.tls_sessions", c.tls_sessions, 0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_the_same_both_ways() {
        let v = validate(&RawCache::default()).unwrap();
        let d = CacheConfig::default();
        assert_eq!(
            (v.verified_tokens, v.api_tokens, v.sessions, v.provider_tokens),
            (d.verified_tokens, d.api_tokens, d.sessions, d.provider_tokens)
        );
        assert_eq!(
            (v.access, v.upstream_credentials, v.tls_sessions),
            (d.access, d.upstream_credentials, d.tls_sessions)
        );
    }
}
