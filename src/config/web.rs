//! `[web]` and `[session]`: the browser pages (sign-in, register, account, sign-out) and the
//! cookie sessions they start.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, secs};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeb {
    /// Where the pages live; answered by the gateway, never forwarded.
    pub prefix: String,
    /// Shown in the pages' titles and headings.
    pub product_name: String,
    /// An image shown above the forms (an absolute `https://` URL, or a path on this origin).
    pub logo_url: Option<String>,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            prefix: "/_auth".into(),
            product_name: "authgate".into(),
            logo_url: None,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    pub idle_timeout: Dur,
    pub lifetime: Dur,
}

impl Default for RawSession {
    fn default() -> Self {
        RawSession {
            idle_timeout: secs(12 * 3600),
            lifetime: secs(7 * 24 * 3600),
        }
    }
}

/// `[web]` and `[session]`, validated.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub prefix: String,
    pub product_name: String,
    pub logo_url: Option<String>,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
}

pub(super) fn validate(web: &RawWeb, session: &RawSession) -> Result<WebConfig, ConfigError> {
    let prefix = web.prefix.as_str();
    let shape_ok = crate::routes::is_plain_prefix(prefix);
    if !shape_ok {
        return Err(ConfigError::invalid(
            "web.prefix",
            format!("{prefix:?} is not a plain path"),
            "use a path such as \"/_auth\": a leading /, no trailing /, letters, digits, _ - . and /",
        ));
    }
    // Overlap with `auth.api_prefix` is checked with `[auth]`.
    if prefix == "/.well-known" || prefix.starts_with("/.well-known/") {
        return Err(ConfigError::invalid(
            "web.prefix",
            format!("{prefix:?} collides with the gateway's keys"),
            "use a path of its own, such as \"/_auth\"",
        ));
    }
    let name = web.product_name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            "web.product_name",
            "is empty, over 64 bytes, or has control characters",
            "use a short name such as \"Acme RAG\"",
        ));
    }
    let logo_url = web.logo_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    if let Some(url) = logo_url {
        let plain = !url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '\'' || c == '<');
        let https = url.strip_prefix("https://").is_some_and(|rest| !rest.is_empty());
        let local = url.starts_with('/') && !url.starts_with("//");
        if !plain || !(https || local) {
            return Err(ConfigError::invalid(
                "web.logo_url",
                "is not an https:// URL or a path on this origin",
                "use e.g. \"https://cdn.example.com/logo.svg\" or \"/static/logo.svg\"",
            ));
        }
    }
    let (idle, lifetime) = (session.idle_timeout.0, session.lifetime.0);
    if idle < Duration::from_secs(60) {
        return Err(ConfigError::invalid(
            "session.idle_timeout",
            "is under a minute",
            "use a duration such as \"12h\" (at least \"1m\")",
        ));
    }
    if lifetime < idle {
        return Err(ConfigError::invalid(
            "session.lifetime",
            "is shorter than session.idle_timeout",
            "use a duration such as \"7d\", at least session.idle_timeout",
        ));
    }
    Ok(WebConfig {
        prefix: prefix.to_owned(),
        product_name: name.to_owned(),
        logo_url: logo_url.map(str::to_owned),
        idle_timeout: idle,
        lifetime,
    })
}
