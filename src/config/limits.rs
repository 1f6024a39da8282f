//! `[limits]`: request body sizes and stalls, and how many client connections are open at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, secs};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Request body limit on protected routes.
    pub body_bytes: u64,
    /// Request body limit on public routes (no credential: kept small).
    pub public_body_bytes: u64,
    /// A request body that sends nothing for this long is abandoned (408).
    pub body_idle_timeout: Dur,
    /// Client connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            body_bytes: 1 << 30,
            public_body_bytes: 1 << 20,
            body_idle_timeout: secs(30),
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LimitsConfig {
    pub body_bytes: u64,
    pub public_body_bytes: u64,
    pub body_idle_timeout: Duration,
    pub max_connections: usize,
}

pub(super) fn validate(l: &RawLimits) -> Result<LimitsConfig, ConfigError> {
    if l.max_connections == 0 {
        return Err(ConfigError::invalid(
            "limits.max_connections",
            "is 0",
            "use a positive number (the default is 10000)",
        ));
    }
    if l.body_idle_timeout.0.is_zero() {
        return Err(ConfigError::invalid(
            "limits.body_idle_timeout",
            "is zero",
            "use a duration such as \"30s\"",
        ));
    }
    Ok(LimitsConfig {
        body_bytes: l.body_bytes,
        public_body_bytes: l.public_body_bytes,
        body_idle_timeout: l.body_idle_timeout.0,
        max_connections: l.max_connections,
    })
}
