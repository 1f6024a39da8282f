//! `[auth]`: the paths served without a credential, and more identity headers to strip.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::routes::PublicPaths;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub public_paths: Vec<String>,
    /// More header names a backend may trust as identity, stripped from clients in every spelling
    /// (on top of the built-in list in `proxy::headers`).
    pub identity_headers: Vec<String>,
}

/// `[auth]` validated. (`Config` keeps its two fields at the top level: `public_paths`,
/// `identity_headers`.)
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub public_paths: PublicPaths,
    /// `auth.identity_headers`, normalised (lowercase, `_` as `-`).
    pub identity_headers: Vec<Box<str>>,
}

pub(super) fn validate(raw: &RawAuth) -> Result<AuthConfig, ConfigError> {
    let public_paths = PublicPaths::parse(&raw.public_paths).map_err(|problem| {
        ConfigError::invalid(
            "auth.public_paths",
            problem,
            "use exact paths like \"/api/health\" or prefixes like \"/docs/*\"",
        )
    })?;
    let mut identity_headers = Vec::with_capacity(raw.identity_headers.len());
    for name in &raw.identity_headers {
        let norm = crate::proxy::headers::identity_name(name).ok_or_else(|| {
            ConfigError::invalid(
                "auth.identity_headers",
                format!("{name:?} is not a header name, nor a prefix ending in *"),
                "list header names such as \"X-Tenant-Id\", or prefixes such as \"X-Tenant-*\"",
            )
        })?;
        identity_headers.push(norm);
    }
    Ok(AuthConfig {
        public_paths,
        identity_headers,
    })
}
