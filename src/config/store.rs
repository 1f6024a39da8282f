//! `[store]`: where users, API tokens and revocations live (SQLite or PostgreSQL).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, Secret, secs};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub url: Secret,
    pub sync_interval: Dur,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: Secret::new("sqlite://data/authgate.db?mode=rwc"),
            sync_interval: secs(5),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// May carry a database password: a `Secret`.
    pub url: Secret,
    pub sync_interval: Duration,
}

pub(super) fn validate(raw: &RawStore) -> Result<StoreConfig, ConfigError> {
    let url = raw.url.expose();
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::invalid(
            "store.url",
            "is neither a sqlite: nor a postgres:// URL",
            "use e.g. \"sqlite://data/authgate.db?mode=rwc\" or \"postgres://user:pass@host/db\"",
        ));
    }
    if raw.sync_interval.0 < Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            "store.sync_interval",
            "is below 100ms",
            "use a few seconds (the default is 5s)",
        ));
    }
    Ok(StoreConfig {
        url: raw.url.clone(),
        sync_interval: raw.sync_interval.0,
    })
}
