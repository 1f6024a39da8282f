//! One OpenID Provider: its discovery document, its keys, and the verification of the tokens it
//! signs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    RedirectUrl, SignatureVerificationError,
};
use serde_json::{Map, Value};

use super::http::{FetchError, fetch};
use crate::config::ProviderConfig;

/// The refusal of a bearer token whose `kid` the keys do not hold (fetch them again, then retry).
const UNKNOWN_KID: &str = "no key with this kid";

/// How often keys may be fetched again because a token named an unknown `kid`.
pub const KEY_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The algorithms accepted from a provider: asymmetric only.
const ALGS: [CoreJwsSigningAlgorithm; 7] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The client type the flow uses: authorization endpoint from discovery, token and userinfo
/// endpoints maybe.
pub type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// What discovery found.
struct Loaded {
    metadata: CoreProviderMetadata,
    end_session: Option<String>,
    /// The same keys, for bearer tokens (`verify_bearer`: access tokens are `at+jwt`, which
    /// openidconnect's id_token type refuses).
    keys: jsonwebtoken::jwk::JwkSet,
}

/// Why a provider could not be used or a token was refused (never with a token in it).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider's metadata is not loaded (it was unreachable)")]
    NotLoaded,
    #[error("fetching {what} failed: {source}")]
    Fetch { what: &'static str, source: FetchError },
    #[error("{what} answered {status}")]
    Status { what: &'static str, status: u16 },
    #[error("{what} is not valid: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("the discovery document names issuer {found:?}, not the configured one")]
    IssuerMismatch { found: String },
    #[error("the token was refused: {0}")]
    Token(String),
}

/// A token's claims after its signature, issuer, audience, expiry and nonce were checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub subject: String,
    /// Every claim, for the operator's claim mapping.
    pub claims: Map<String, Value>,
}

pub struct Provider {
    pub config: ProviderConfig,
    loaded: ArcSwapOption<Loaded>,
    /// When the keys were last fetched (discovery included), for the once-a-minute rule.
    fetched: Mutex<Option<Instant>>,
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Provider {
        Provider {
            config,
            loaded: ArcSwapOption::empty(),
            fetched: Mutex::new(None),
        }
    }

    /// Whether its metadata and keys are loaded.
    pub fn is_up(&self) -> bool {
        self.loaded.load().is_some()
    }

    /// Its `end_session_endpoint`, when it has one (RP-initiated logout).
    pub fn end_session(&self) -> Option<String> {
        self.loaded.load().as_ref().and_then(|l| l.end_session.clone())
    }

    /// Fetch the discovery document and the keys, and keep them.
    pub async fn load(&self) -> Result<(), OidcError> {
        if let Ok(mut at) = self.fetched.lock() {
            *at = Some(Instant::now());
        }
        match self.discover().await {
            Ok(loaded) => {
                self.loaded.store(Some(std::sync::Arc::new(loaded)));
                tracing::info!(provider = %self.config.id, "single sign-on provider loaded");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(provider = %self.config.id, error = %e, "single sign-on provider unavailable");
                Err(e)
            }
        }
    }

    async fn discover(&self) -> Result<Loaded, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let doc: Value = get_json(&url, "the discovery document").await?;
        let found = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if found != self.config.issuer {
            return Err(OidcError::IssuerMismatch {
                found: found.to_owned(),
            });
        }
        let end_session = doc
            .get("end_session_endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let metadata: CoreProviderMetadata = serde_json::from_value(doc).map_err(|e| OidcError::Invalid {
            what: "the discovery document",
            detail: e.to_string(),
        })?;
        let jwks_url = metadata.jwks_uri().url().to_string();
        let raw: Value = get_json(&jwks_url, "the JWKS").await?;
        let jwks: CoreJsonWebKeySet = serde_json::from_value(raw.clone()).map_err(|e| OidcError::Invalid {
            what: "the JWKS",
            detail: e.to_string(),
        })?;
        // Keys of kinds jsonwebtoken does not know are skipped, not fatal.
        let keys = raw
            .get("keys")
            .and_then(Value::as_array)
            .map(|ks| {
                ks.iter()
                    .filter_map(|k| serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Loaded {
            metadata: metadata.set_jwks(jwks),
            end_session,
            keys: jsonwebtoken::jwk::JwkSet { keys },
        })
    }

    /// Fetch the keys again, unless that was done less than [`KEY_REFRESH_EVERY`] ago. Whether
    /// a new fetch was made.
    async fn refresh_keys(&self) -> bool {
        let due = self
            .fetched
            .lock()
            .map(|at| at.is_none_or(|t| t.elapsed() >= KEY_REFRESH_EVERY))
            .unwrap_or(false);
        due && self.load().await.is_ok()
    }

    /// The OAuth client for the browser flow, returning to `redirect`.
    pub fn client(&self, redirect: &str) -> Result<Client, OidcError> {
        let loaded = self.loaded.load_full().ok_or(OidcError::NotLoaded)?;
        let redirect = RedirectUrl::new(redirect.to_owned()).map_err(|e| OidcError::Invalid {
            what: "the redirect URL",
            detail: e.to_string(),
        })?;
        Ok(CoreClient::from_provider_metadata(
            loaded.metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    fn verifier(&self, audience: &str) -> Result<CoreIdTokenVerifier<'static>, OidcError> {
        let loaded = self.loaded.load_full().ok_or(OidcError::NotLoaded)?;
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| OidcError::Invalid {
            what: "the issuer",
            detail: e.to_string(),
        })?;
        Ok(CoreIdTokenVerifier::new_public_client(
            ClientId::new(audience.to_owned()),
            issuer,
            loaded.metadata.jwks().clone(),
        )
        .set_allowed_algs(ALGS)
        .set_issue_time_verifier_fn(|iat| {
            // Not issued in the future (a minute of clock skew).
            if iat > chrono::Utc::now() + chrono::Duration::seconds(60) {
                Err("issued in the future".to_owned())
            } else {
                Ok(())
            }
        }))
    }

    /// Check an id_token from the code exchange: signature, `iss`, `aud`/`azp`, `exp`, `iat` and
    /// `nonce`.
    pub async fn verify_id_token(&self, raw: &str, nonce: &str) -> Result<Verified, OidcError> {
        let nonce = Nonce::new(nonce.to_owned());
        let audience = self.config.client_id.clone();
        self.verify(raw, &audience, move |n: Option<&Nonce>| match n {
            Some(n)
                if n.secret().len() == nonce.secret().len()
                    && subtle::ConstantTimeEq::ct_eq(n.secret().as_bytes(), nonce.secret().as_bytes()).into() =>
            {
                Ok(())
            }
            _ => Err("nonce mismatch".to_owned()),
        })
        .await
    }

    /// Check a bearer token this provider issued for `bearer_audience` (an access token in JWT
    /// form, `at+jwt`, or an id_token): an asymmetric signature by one of its keys, its issuer,
    /// the audience, `exp` (with a minute of leeway).
    pub async fn verify_bearer(&self, raw: &str) -> Result<Verified, OidcError> {
        if raw.len() > 16 * 1024 {
            return Err(OidcError::Token("too large".into()));
        }
        let audience = self.config.bearer_audience.clone();
        match self.verify_jwt(raw, &audience, &["exp", "iss", "aud", "sub"]) {
            Err(OidcError::Token(why)) if why == UNKNOWN_KID && self.refresh_keys().await => {
                self.verify_jwt(raw, &audience, &["exp", "iss", "aud", "sub"])
            }
            other => other,
        }
    }

    fn verify_jwt(&self, raw: &str, audience: &str, required: &[&str]) -> Result<Verified, OidcError> {
        use jsonwebtoken::Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
        let loaded = self.loaded.load_full().ok_or(OidcError::NotLoaded)?;
        let header = jsonwebtoken::decode_header(raw).map_err(|_| OidcError::Token("not a signed JWT".into()))?;
        if ![RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA].contains(&header.alg) {
            return Err(OidcError::Token(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let jwk = match header.kid.as_deref() {
            Some(kid) => loaded.keys.find(kid),
            None if loaded.keys.keys.len() == 1 => loaded.keys.keys.first(),
            None => None,
        }
        .ok_or_else(|| OidcError::Token(UNKNOWN_KID.into()))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| OidcError::Token(e.to_string()))?;
        let mut rules = jsonwebtoken::Validation::new(header.alg);
        rules.set_issuer(&[&self.config.issuer]);
        rules.set_audience(&[audience]);
        rules.set_required_spec_claims(required);
        rules.leeway = 60;
        let data = jsonwebtoken::decode::<Map<String, Value>>(raw, &key, &rules)
            .map_err(|e| OidcError::Token(e.to_string()))?;
        let subject = data
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OidcError::Token("no sub".into()))?
            .to_owned();
        Ok(Verified {
            subject,
            claims: data.claims,
        })
    }

    /// Check a back-channel logout token (`logout+jwt`): signed like an id_token, for this
    /// client, issued now, with the logout event and no nonce.
    pub async fn verify_logout_token(&self, raw: &str) -> Result<Verified, OidcError> {
        if raw.len() > 16 * 1024 {
            return Err(OidcError::Token("too large".into()));
        }
        let audience = self.config.client_id.clone();
        let required = ["iss", "aud", "sub"];
        let v = match self.verify_jwt(raw, &audience, &required) {
            Err(OidcError::Token(why)) if why == UNKNOWN_KID && self.refresh_keys().await => {
                self.verify_jwt(raw, &audience, &required)
            }
            other => other,
        }?;
        let now = crate::clock::now_secs();
        let fresh = v
            .claims
            .get("iat")
            .and_then(Value::as_u64)
            .is_some_and(|iat| iat <= now + 60 && iat + 600 >= now);
        let has_event = v
            .claims
            .get("events")
            .and_then(Value::as_object)
            .is_some_and(|e| e.contains_key("http://schemas.openid.net/event/backchannel-logout"));
        if !fresh || !has_event || v.claims.contains_key("nonce") {
            return Err(OidcError::Token(
                "not a logout token (stale iat, no back-channel logout event, or a nonce)".into(),
            ));
        }
        Ok(v)
    }

    async fn verify<N>(&self, raw: &str, audience: &str, nonce: N) -> Result<Verified, OidcError>
    where
        N: Fn(Option<&Nonce>) -> Result<(), String> + Clone,
    {
        if raw.len() > 16 * 1024 {
            return Err(OidcError::Token("too large".into()));
        }
        let token: CoreIdToken = raw.parse().map_err(|_| OidcError::Token("not a signed JWT".into()))?;
        let first = {
            let verifier = self.verifier(audience)?;
            token.claims(&verifier, nonce.clone()).map(|c| c.subject().to_string())
        };
        let subject = match first {
            Ok(sub) => sub,
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                if self.refresh_keys().await =>
            {
                let verifier = self.verifier(audience)?;
                token
                    .claims(&verifier, nonce)
                    .map(|c| c.subject().to_string())
                    .map_err(|e| OidcError::Token(e.to_string()))?
            }
            Err(e) => return Err(OidcError::Token(e.to_string())),
        };
        Ok(Verified {
            subject,
            claims: payload(raw).unwrap_or_default(),
        })
    }
}

/// The JSON claims of a JWT whose signature was already checked.
fn payload(raw: &str) -> Option<Map<String, Value>> {
    let middle = raw.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(middle).ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str, what: &'static str) -> Result<T, OidcError> {
    let req = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| OidcError::Invalid {
            what,
            detail: e.to_string(),
        })?;
    let resp = fetch(req).await.map_err(|source| OidcError::Fetch { what, source })?;
    if !resp.status().is_success() {
        return Err(OidcError::Status {
            what,
            status: resp.status().as_u16(),
        });
    }
    serde_json::from_slice(resp.body()).map_err(|e| OidcError::Invalid {
        what,
        detail: e.to_string(),
    })
}
