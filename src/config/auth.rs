//! `[auth]`: the paths served without a credential, and more identity headers to strip.

use http::HeaderName;
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
            problem.to_string(),
            "use exact paths like \"/api/health\" or prefixes like \"/docs/*\"",
        )
    })?;
    let mut identity_headers = Vec::with_capacity(raw.identity_headers.len());
    for name in &raw.identity_headers {
        let norm = identity_name(name).ok_or_else(|| {
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

/// An `auth.identity_headers` entry as `proxy::headers::is_identity` compares it: a header name, or a prefix
/// ending in `*` (`X-Auth-Request-*`), lowercased with `_` read as `-`. `None` for anything else
/// (a `*` elsewhere, an empty prefix, a character no header name has).
pub fn identity_name(raw: &str) -> Option<Box<str>> {
    let raw = raw.trim();
    let (name, prefix) = match raw.strip_suffix('*') {
        Some(p) => (p, true),
        None => (raw, false),
    };
    if name.is_empty() || name.contains('*') {
        return None;
    }
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    let mut norm = name.as_str().replace('_', "-");
    if prefix {
        norm.push('*');
    }
    Some(norm.into_boxed_str())
}
