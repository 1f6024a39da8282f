//! `[oidc]`: single sign-on through OpenID Connect providers, several at once
//! (`[[oidc.providers]]`), beside or instead of local accounts.

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use super::idp::RawClient;
use super::{ConfigError, Dur, Secret, secs};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOidc {
    /// Single sign-on: authgate as a relying party of these providers.
    pub providers: Vec<RawProvider>,
    // authgate as an OpenID Provider (`config::idp`): its issuer, signing key and clients.
    pub issuer: Option<String>,
    pub signing_key: Option<PathBuf>,
    pub signing_algorithm: String,
    pub signing_kid: Option<String>,
    /// How long an ID token, and an access token for `userinfo`, live.
    pub token_lifetime: Dur,
    pub clients: Vec<RawClient>,
}

impl Default for RawOidc {
    fn default() -> Self {
        RawOidc {
            providers: Vec::new(),
            issuer: None,
            signing_key: None,
            signing_algorithm: "RS256".into(),
            signing_kid: None,
            token_lifetime: secs(600),
            clients: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProvider {
    /// A short name used in URLs (`/_auth/oidc/<id>/…`).
    pub id: String,
    /// Shown on the sign-in button.
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// Or `AUTHGATE_OIDC_<ID>_CLIENT_SECRET` (the id upper-cased, `-` as `_`).
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    /// The claim a new user's username is taken from (then `email`'s local part, then `sub`).
    pub username_claim: String,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: String,
    /// Email domains allowed to sign in (a verified email is then required); empty: any.
    pub allowed_domains: Vec<String>,
    /// Groups of which a user must have one; empty: any.
    pub allowed_groups: Vec<String>,
    /// Accept this provider's access tokens and id_tokens as `Authorization: Bearer`.
    pub accept_bearer: bool,
    /// The `aud` a bearer token from this provider must carry (default: `client_id`).
    pub bearer_audience: Option<String>,
    /// Link a first sign-in to an existing local account with the same email, when the provider
    /// says `email_verified: true`. Off by default: never link by email alone.
    pub link_verified_email: bool,
}

impl Default for RawProvider {
    fn default() -> Self {
        RawProvider {
            id: String::new(),
            name: String::new(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            username_claim: "preferred_username".into(),
            email_claim: "email".into(),
            name_claim: "name".into(),
            groups_claim: "groups".into(),
            allowed_domains: Vec::new(),
            allowed_groups: Vec::new(),
            accept_bearer: false,
            bearer_audience: None,
            link_verified_email: false,
        }
    }
}

/// One provider, validated.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: String,
    pub name: String,
    /// Exactly as configured: the discovery document's `issuer` must equal it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: String,
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub accept_bearer: bool,
    pub bearer_audience: String,
    pub link_verified_email: bool,
}

fn bad(problem: String, fix: &'static str) -> ConfigError {
    ConfigError::invalid("oidc.providers", problem, fix)
}

/// Whether an issuer URL may be used: `https://`, or `http://` on a loopback address only (a
/// provider on the same host, as in development and the tests).
fn issuer_ok(issuer: &str) -> bool {
    if let Some(rest) = issuer.strip_prefix("https://") {
        return !rest.is_empty() && !rest.starts_with('/');
    }
    let Some(rest) = issuer.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

pub(super) fn validate(raw: &RawOidc) -> Result<Vec<ProviderConfig>, ConfigError> {
    let mut out: Vec<ProviderConfig> = Vec::with_capacity(raw.providers.len());
    for (i, p) in raw.providers.iter().enumerate() {
        let id = p.id.trim();
        if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(bad(
                format!("provider {i}: id {id:?} is not a short name"),
                "give each provider an id of 1 to 32 letters, digits, - or _ (it appears in URLs)",
            ));
        }
        if out.iter().any(|o| o.id == id) {
            return Err(bad(
                format!("provider id {id:?} is used twice"),
                "give each provider its own id",
            ));
        }
        if !issuer_ok(p.issuer.trim()) {
            return Err(bad(
                format!("provider {id}: issuer {:?} is not an https:// URL", p.issuer),
                "use the provider's issuer URL, e.g. \"https://keycloak.example.com/realms/acme\" (http:// only on 127.0.0.1 or localhost)",
            ));
        }
        if p.client_id.trim().is_empty() {
            return Err(bad(
                format!("provider {id}: client_id is empty"),
                "set the client id registered at the provider",
            ));
        }
        let env = format!(
            "AUTHGATE_OIDC_{}_CLIENT_SECRET",
            id.to_ascii_uppercase().replace('-', "_")
        );
        let client_secret = match (std::env::var(&env).ok(), &p.client_secret) {
            (Some(v), _) if !v.is_empty() => Secret::new(v),
            (_, Some(s)) if !s.expose().is_empty() => s.clone(),
            _ => {
                return Err(bad(
                    format!("provider {id}: no client_secret"),
                    "set client_secret in the file, or the environment variable AUTHGATE_OIDC_<ID>_CLIENT_SECRET",
                ));
            }
        };
        if !p.scopes.iter().any(|s| s == "openid") {
            return Err(bad(
                format!("provider {id}: scopes lack \"openid\""),
                "include \"openid\" in scopes",
            ));
        }
        for (what, claim) in [
            ("username_claim", &p.username_claim),
            ("email_claim", &p.email_claim),
            ("name_claim", &p.name_claim),
            ("groups_claim", &p.groups_claim),
        ] {
            if claim.trim().is_empty() {
                return Err(bad(
                    format!("provider {id}: {what} is empty"),
                    "name a claim, or leave the default",
                ));
            }
        }
        let name = if p.name.trim().is_empty() { id } else { p.name.trim() };
        out.push(ProviderConfig {
            id: id.to_owned(),
            name: name.to_owned(),
            issuer: p.issuer.trim().to_owned(),
            client_id: p.client_id.trim().to_owned(),
            client_secret,
            scopes: p.scopes.clone(),
            username_claim: p.username_claim.clone(),
            email_claim: p.email_claim.clone(),
            name_claim: p.name_claim.clone(),
            groups_claim: p.groups_claim.clone(),
            allowed_domains: p
                .allowed_domains
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect(),
            allowed_groups: p.allowed_groups.clone(),
            accept_bearer: p.accept_bearer,
            bearer_audience: p
                .bearer_audience
                .clone()
                .unwrap_or_else(|| p.client_id.trim().to_owned()),
            link_verified_email: p.link_verified_email,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_https_or_loopback_http() {
        for ok in [
            "https://idp.example.com/realms/a",
            "http://127.0.0.1:4000",
            "http://localhost:9/x",
        ] {
            assert!(issuer_ok(ok), "{ok}");
        }
        for bad in [
            "http://idp.example.com",
            "ftp://x",
            "https://",
            "http://127.0.0.1.evil.example",
            "",
        ] {
            assert!(!issuer_ok(bad), "{bad}");
        }
    }
}
