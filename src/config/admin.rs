//! `[admin]`: the listener for `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, parse_addr};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// The admin listener's address (the validated config keeps it as `Config::admin_listen`).
pub(super) fn validate(raw: &RawAdmin) -> Result<SocketAddr, ConfigError> {
    parse_addr("admin.listen", &raw.listen)
}
