//! `[auth]`: where the gateway's own API lives (and which paths below it are the backend's), the
//! paths served without a credential, and more identity headers to strip.

use http::HeaderName;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::routes::{ApiPaths, ApiPathsError, DEFAULT_API_PREFIX, PublicPaths, is_plain_prefix};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Where the gateway answers its JSON API (`/api/auth` when unset).
    pub api_prefix: Option<String>,
    /// Paths below `api_prefix` that belong to the backend (RAG Modulo's own `/api/auth/*`).
    pub backend_paths: Vec<String>,
    pub public_paths: Vec<String>,
    /// More header names a backend may trust as identity, stripped from clients in every spelling
    /// (on top of the built-in list in `proxy::headers`).
    pub identity_headers: Vec<String>,
}

/// `[auth]` validated. (`Config` keeps its two fields at the top level: `public_paths`,
/// `identity_headers`.)
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `auth.api_prefix` and `auth.backend_paths`.
    pub api_paths: ApiPaths,
    pub public_paths: PublicPaths,
    /// `auth.identity_headers`, normalised (lowercase, `_` as `-`).
    pub identity_headers: Vec<Box<str>>,
}

/// `web_prefix` is `web.prefix`, validated: the two prefixes may not overlap.
pub(super) fn validate(raw: &RawAuth, web_prefix: &str) -> Result<AuthConfig, ConfigError> {
    let api_paths = api_paths(raw, web_prefix)?;
    let public_paths = PublicPaths::parse(&raw.public_paths)
        .and_then(|p| api_paths.check_outside(&p).map(|()| p))
        .map_err(|problem| {
            ConfigError::invalid(
                "auth.public_paths",
                problem.to_string(),
                "use exact paths like \"/api/health\" or prefixes like \"/docs/*\"; to open a backend path \
                 below auth.api_prefix, list it in auth.backend_paths too",
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
        api_paths,
        public_paths,
        identity_headers,
    })
}

fn api_paths(raw: &RawAuth, web_prefix: &str) -> Result<ApiPaths, ConfigError> {
    let prefix = raw.api_prefix.as_deref().unwrap_or(DEFAULT_API_PREFIX);
    if !is_plain_prefix(prefix) {
        return Err(ConfigError::invalid(
            "auth.api_prefix",
            format!("{prefix:?} is not a clean absolute path"),
            "use a path such as \"/api/auth\" or \"/gw/auth\": a leading /, no trailing /, letters, digits, _ - . and /",
        ));
    }
    let overlaps = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"));
    if overlaps(prefix, web_prefix) {
        return Err(ConfigError::invalid(
            "auth.api_prefix",
            format!("{prefix:?} overlaps web.prefix ({web_prefix:?})"),
            "give the JSON API and the browser pages paths of their own, such as \"/gw/auth\" and \"/_auth\"",
        ));
    }
    if overlaps(prefix, "/.well-known") {
        return Err(ConfigError::invalid(
            "auth.api_prefix",
            format!("{prefix:?} overlaps /.well-known, where the gateway serves its keys"),
            "use a path such as \"/gw/auth\"",
        ));
    }
    let backend = PublicPaths::parse(&raw.backend_paths).map_err(|problem| {
        ConfigError::invalid(
            "auth.backend_paths",
            problem.to_string(),
            "use exact paths like \"/api/auth/callback\" or prefixes like \"/api/auth/cli/*\"",
        )
    })?;
    ApiPaths::new(prefix, backend).map_err(|problem| {
        let fix = match &problem {
            ApiPathsError::Outside(..) => {
                "list only paths below auth.api_prefix; a path outside it reaches the backend already"
            }
            ApiPathsError::TakesEndpoint { .. } => {
                "drop the entry, or move authgate's API out of the way with auth.api_prefix (for example \
                 \"/gw/auth\") and leave the old prefix to the backend"
            }
        };
        ConfigError::invalid("auth.backend_paths", problem.to_string(), fix)
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
