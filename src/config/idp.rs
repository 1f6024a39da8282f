//! `[oidc]` as an OpenID Provider: `oidc.issuer`, the ID-token signing key, and the relying
//! parties in `[[oidc.clients]]` that may sign people in with authgate's accounts.
//!
//! The rule this module keeps: a provider starts only fully specified. Clients need an issuer
//! that is an origin (https, or http on loopback), a signing key of their own (never one of the
//! `[jwt]` keys, so an ID token can never pass as an access token), a long secret, and
//! redirect URIs that are absolute and matched exactly.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, JwtAlgorithm, RawOidc, Secret};

/// The scopes a client may ask for, and the claims each one releases (the README says which).
pub const SCOPES: [&str; 4] = ["openid", "email", "profile", "groups"];
/// The shortest client secret accepted: 32 characters, enough entropy for a shared secret.
pub const MIN_CLIENT_SECRET: usize = 32;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClient {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// Skip the consent screen (a first-party application).
    pub trusted: bool,
    /// Refuse an authorization request without a PKCE S256 challenge.
    pub require_pkce: bool,
}

impl Default for RawClient {
    fn default() -> Self {
        RawClient {
            client_id: String::new(),
            client_secret: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            trusted: false,
            require_pkce: true,
        }
    }
}

/// One relying party, validated.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub trusted: bool,
    pub require_pkce: bool,
}

/// The provider, validated: present only when at least one client is configured.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// An origin, without a trailing `/`: `iss` of every token and the discovery document's base.
    pub issuer: String,
    pub signing_key: PathBuf,
    pub algorithm: JwtAlgorithm,
    pub kid: Option<String>,
    pub token_lifetime: Duration,
    pub clients: Vec<ClientConfig>,
}

fn bad(key: &'static str, problem: String, fix: &'static str) -> ConfigError {
    ConfigError::invalid(key, problem, fix)
}

/// `https://host[:port]`, or `http://` on a loopback host, with no path, query or fragment.
fn origin_ok(url: &str) -> bool {
    let (rest, loopback_only) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => return false,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '\\']) {
        return false;
    }
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    !loopback_only || matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// An absolute `https://` URL (or `http://` on loopback) without a fragment: what a redirect URI
/// must be (OAuth 2.0 §3.1.2).
fn redirect_ok(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else { return false };
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && (url.scheme() == "https" || (url.scheme() == "http" && loopback))
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub(super) fn validate(raw: &RawOidc) -> Result<Option<IdpConfig>, ConfigError> {
    if raw.clients.is_empty() {
        return Ok(None);
    }
    let issuer = raw.issuer.as_deref().map(str::trim).unwrap_or("");
    if !origin_ok(issuer) {
        return Err(bad(
            "oidc.issuer",
            format!("{issuer:?} is not an origin"),
            "set oidc.issuer to the gateway's public origin, e.g. \"https://auth.example.com\" (no path; http:// only on 127.0.0.1 or localhost)",
        ));
    }
    let Some(signing_key) = raw.signing_key.clone() else {
        return Err(bad(
            "oidc.signing_key",
            "ID tokens need a signing key of their own".into(),
            "write one with `authgate keys generate --algorithm ES256 --out DIR` (or an RSA key with openssl) and set oidc.signing_key to its private PEM",
        ));
    };
    let algorithm = match raw.signing_algorithm.as_str() {
        "RS256" => JwtAlgorithm::RS256,
        "ES256" => JwtAlgorithm::ES256,
        other => {
            return Err(bad(
                "oidc.signing_algorithm",
                format!("{other:?} is not RS256 or ES256"),
                "use \"RS256\" (what every relying party accepts) or \"ES256\"",
            ));
        }
    };
    if raw.token_lifetime.0 < Duration::from_secs(60) || raw.token_lifetime.0 > Duration::from_secs(86_400) {
        return Err(bad(
            "oidc.token_lifetime",
            format!("{:?} is outside 1 minute to 1 day", raw.token_lifetime.0),
            "use a few minutes, e.g. \"10m\"",
        ));
    }
    let mut clients: Vec<ClientConfig> = Vec::with_capacity(raw.clients.len());
    for c in &raw.clients {
        clients.push(client(c, &clients)?);
    }
    Ok(Some(IdpConfig {
        issuer: issuer.to_owned(),
        signing_key,
        algorithm,
        kid: raw.signing_kid.clone().filter(|k| !k.trim().is_empty()),
        token_lifetime: raw.token_lifetime.0,
        clients,
    }))
}

fn client(c: &RawClient, before: &[ClientConfig]) -> Result<ClientConfig, ConfigError> {
    const KEY: &str = "oidc.clients";
    let id = c.client_id.trim();
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(bad(
            KEY,
            format!("client_id {id:?} is not 1 to 128 visible characters without `:`"),
            "give each client a short id such as \"rag-modulo\"",
        ));
    }
    if before.iter().any(|b| b.client_id == id) {
        return Err(bad(
            KEY,
            format!("client_id {id:?} is used twice"),
            "give each client its own id",
        ));
    }
    let secret = c
        .client_secret
        .clone()
        .filter(|s| s.expose().len() >= MIN_CLIENT_SECRET);
    let Some(client_secret) = secret else {
        return Err(bad(
            KEY,
            format!("client {id}: client_secret is missing or shorter than {MIN_CLIENT_SECRET} characters"),
            "set client_secret to a random value, e.g. `openssl rand -base64 32`, and give the same to the relying party",
        ));
    };
    if c.redirect_uris.is_empty() {
        return Err(bad(
            KEY,
            format!("client {id}: no redirect_uris"),
            "list the relying party's callback URL(s), exactly as it sends them",
        ));
    }
    for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
        if !redirect_ok(uri) {
            return Err(bad(
                KEY,
                format!("client {id}: {uri:?} is not an absolute https:// URL without a fragment"),
                "write the full URL, e.g. \"https://rag.example.com/api/auth/callback\" (http:// only on 127.0.0.1 or localhost)",
            ));
        }
    }
    if !c.scopes.iter().any(|s| s == "openid") {
        return Err(bad(
            KEY,
            format!("client {id}: scopes lack \"openid\""),
            "include \"openid\" in scopes",
        ));
    }
    if let Some(s) = c.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(bad(
            KEY,
            format!("client {id}: scope {s:?} is not one authgate issues"),
            "use openid, email, profile and groups",
        ));
    }
    Ok(ClientConfig {
        client_id: id.to_owned(),
        client_secret,
        redirect_uris: c.redirect_uris.clone(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        scopes: c.scopes.clone(),
        trusted: c.trusted,
        require_pkce: c.require_pkce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_is_an_origin() {
        for ok in [
            "https://auth.example.com",
            "https://auth.example.com:8443",
            "http://127.0.0.1:9000",
        ] {
            assert!(origin_ok(ok), "{ok}");
        }
        for bad in [
            "https://auth.example.com/",
            "https://auth.example.com/x",
            "http://auth.example.com",
            "https://a.example?x",
            "https://user@a.example",
            "",
        ] {
            assert!(!origin_ok(bad), "{bad}");
        }
    }

    #[test]
    fn redirect_uris_are_absolute_without_fragment() {
        assert!(redirect_ok("https://rag.example.com/api/auth/callback"));
        assert!(redirect_ok("http://localhost:3000/cb?x=1"));
        for bad in [
            "/callback",
            "http://rag.example.com/cb",
            "https://rag.example.com/cb#x",
            "javascript:alert(1)",
            "https://u:p@rag.example.com/cb",
        ] {
            assert!(!redirect_ok(bad), "{bad}");
        }
    }

    fn raw(clients: Vec<RawClient>) -> RawOidc {
        RawOidc {
            issuer: Some("https://auth.example.com".into()),
            signing_key: Some("k.pem".into()),
            clients,
            ..RawOidc::default()
        }
    }

    fn good() -> RawClient {
        RawClient {
            client_id: "rag".into(),
            client_secret: Some(Secret::new("s".repeat(32))),
            redirect_uris: vec!["https://rag.example.com/cb".into()],
            ..RawClient::default()
        }
    }

    #[test]
    fn clients_are_checked() {
        assert!(validate(&raw(vec![good()])).unwrap().is_some());
        assert!(validate(&RawOidc::default()).unwrap().is_none());
        let short = RawClient {
            client_secret: Some(Secret::new("short")),
            ..good()
        };
        let no_uri = RawClient {
            redirect_uris: vec![],
            ..good()
        };
        let odd_scope = RawClient {
            scopes: vec!["openid".into(), "admin".into()],
            ..good()
        };
        for c in [short, no_uri, odd_scope] {
            let e = validate(&raw(vec![c])).unwrap_err().to_string();
            assert!(e.contains("oidc.clients"), "{e}");
        }
        let e = validate(&raw(vec![good(), good()])).unwrap_err().to_string();
        assert!(e.contains("used twice"), "{e}");
        let no_key = RawOidc {
            signing_key: None,
            ..raw(vec![good()])
        };
        assert!(validate(&no_key).unwrap_err().to_string().contains("oidc.signing_key"));
    }
}
