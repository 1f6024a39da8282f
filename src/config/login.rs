//! `[login]`: brute-force limits on password login, per account and per client IP.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, secs};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogin {
    pub max_failures_per_account: u32,
    pub max_failures_per_ip: u32,
    pub window: Dur,
}

impl Default for RawLogin {
    fn default() -> Self {
        RawLogin {
            max_failures_per_account: 5,
            max_failures_per_ip: 50,
            window: secs(15 * 60),
        }
    }
}

/// Limits from `[login]`.
#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    pub max_failures_per_account: u32,
    pub max_failures_per_ip: u32,
    pub window: Duration,
    /// The most keys each table holds.
    pub max_entries: usize,
}

pub(super) fn validate(raw: &RawLogin) -> Result<LimiterConfig, ConfigError> {
    for (key, v) in [
        ("login.max_failures_per_account", raw.max_failures_per_account),
        ("login.max_failures_per_ip", raw.max_failures_per_ip),
    ] {
        if v == 0 {
            return Err(ConfigError::invalid(
                key,
                "is 0",
                "use a positive number of failed attempts",
            ));
        }
    }
    if raw.window.0.is_zero() {
        return Err(ConfigError::invalid(
            "login.window",
            "is zero",
            "use a duration such as \"15m\"",
        ));
    }
    Ok(LimiterConfig {
        max_failures_per_account: raw.max_failures_per_account,
        max_failures_per_ip: raw.max_failures_per_ip,
        window: raw.window.0,
        max_entries: 100_000,
    })
}
