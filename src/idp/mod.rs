//! authgate as an OpenID Provider: the relying parties of `[[oidc.clients]]`, the ID tokens and
//! access tokens issued to them, and the checks of OpenID Connect Core and RFC 6749 / 7636. The
//! HTTP endpoints are `web::openid`'s; this module knows nothing of pages or cookies.
//!
//! The rules this module keeps:
//! - a client is found by exact `client_id`, authenticated by its secret compared in constant
//!   time, and sent only to a redirect URI registered for it, compared byte for byte;
//! - a code is random, stored only as its hash, lives 60 s and is taken once (`store::grants`);
//! - ID tokens (`typ: JWT`) and access tokens (`typ: at+jwt`, RFC 9068) are signed with the
//!   provider's own key, never a `[jwt]` key, so neither can pass as a gateway credential; each
//!   verifier accepts only its own `typ`;
//! - every refusal is the error code the specifications name, with a short description that never
//!   holds a secret.

mod claims;
pub mod pkce;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::keys::{KeyError, PemKeyError};
use crate::config::{ClientConfig, IdpConfig, JwtAlgorithm};
use crate::store::grants::Grant;

pub use claims::Person;

/// Where discovery lives, on the issuer's origin.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// How long an authorization code may wait for its token request (OAuth 2.0 §4.1.2 advises 10
/// minutes at most; a browser needs a few seconds).
pub const CODE_LIFETIME: i64 = 60;
/// The endpoints, below `web.prefix`.
pub const AUTHORIZE: &str = "/openid/authorize";
pub const TOKEN: &str = "/openid/token";
pub const USERINFO: &str = "/openid/userinfo";
pub const END_SESSION: &str = "/openid/end_session";

/// A refusal, as OAuth 2.0 §5.2 and OpenID Connect Core §3.1.2.6 name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `access_denied`, `unsupported_response_type`,
    /// `login_required`, `consent_required`, `request_not_supported`, `invalid_token`.
    pub error: &'static str,
    pub description: &'static str,
}

impl OAuthError {
    pub const fn new(error: &'static str, description: &'static str) -> Self {
        OAuthError { error, description }
    }
}

/// The provider: its clients, its signing key, and the documents it publishes.
pub struct Idp {
    pub config: IdpConfig,
    signer: Signer,
    decoding: DecodingKey,
    alg: jsonwebtoken::Algorithm,
    kid: String,
    /// The public key, for the JWKS at `/.well-known/jwks.json`.
    pub jwk: Jwk,
    /// The discovery document, serialized once.
    pub discovery: Bytes,
    /// `web.prefix`: the endpoints are below it.
    pub prefix: String,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("issuer", &self.config.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What signs the provider's tokens. RS256 goes through `ring` (the RSA that rustls already
/// uses, in assembly): `jsonwebtoken`'s pure-Rust RSA took about 2.5 ms a signature here, twice
/// per token request, against the 5 ms the token endpoint has. ES256 stays with `jsonwebtoken`.
enum Signer {
    Jwt(EncodingKey),
    Rsa(Box<ring::signature::RsaKeyPair>),
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
    #[error("RSA signing failed")]
    Rsa,
}

impl Signer {
    /// A compact JWS of `claims` under `header`.
    fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, SignError> {
        match self {
            Signer::Jwt(key) => Ok(jsonwebtoken::encode(header, claims, key)?),
            Signer::Rsa(pair) => {
                let mut jws = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
                jws.push('.');
                jws.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
                let mut sig = vec![0u8; pair.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                pair.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, jws.as_bytes(), &mut sig)
                    .map_err(|_| SignError::Rsa)?;
                jws.push('.');
                jws.push_str(&URL_SAFE_NO_PAD.encode(sig));
                Ok(jws)
            }
        }
    }
}

/// The RSA key pair of a PKCS#8 PEM, for `ring`.
fn ring_rsa(pem: &[u8]) -> Option<ring::signature::RsaKeyPair> {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject;
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem).ok()?;
    ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).ok()
}

/// The claims of an access token for `userinfo` (RFC 9068).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// The user's session epoch at issue (`Person::epoch`).
    pub ep: i64,
}

/// What the token endpoint answers.
#[derive(Debug, Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub id_token: String,
    pub scope: String,
}

impl Idp {
    /// Read the signing key and build the published documents.
    pub fn load(config: &IdpConfig, prefix: &str) -> Result<Idp, KeyError> {
        let what = "oidc".to_owned();
        let path: &Path = &config.signing_key;
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            what: "oidc.signing_key".into(),
            path: path.to_owned(),
            source,
        })?;
        let bad = |source: PemKeyError| KeyError::BadPrivateKey {
            what: what.clone(),
            alg: config.algorithm,
            path: path.to_owned(),
            source,
        };
        let (encoding, mut jwk) = crate::auth::keys::private_key(config.algorithm, &pem).map_err(bad)?;
        let kid = match &config.kid {
            Some(kid) => kid.clone(),
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|e| bad(PemKeyError::PublicKey(e)))?,
        };
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|source| KeyError::PublicHalf {
            what: "oidc.signing_key".into(),
            source,
        })?;
        let alg = match config.algorithm {
            JwtAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            _ => jsonwebtoken::Algorithm::RS256,
        };
        let signer = match config.algorithm {
            JwtAlgorithm::RS256 => Signer::Rsa(Box::new(ring_rsa(&pem).ok_or_else(|| {
                bad(PemKeyError::PublicKey(
                    jsonwebtoken::errors::ErrorKind::InvalidRsaKey("not a PKCS#8 RSA key ring can sign with".into())
                        .into(),
                ))
            })?)),
            _ => Signer::Jwt(encoding),
        };
        let discovery = discovery(config, prefix).map_err(KeyError::Jwks)?;
        Ok(Idp {
            config: config.clone(),
            signer,
            decoding,
            alg,
            kid,
            jwk,
            discovery,
            prefix: prefix.to_owned(),
        })
    }

    /// The client with exactly this id.
    pub fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.config.clients.iter().find(|c| c.client_id == id)
    }

    /// The client whose id and secret these are (a wrong secret is as unknown as a wrong id).
    pub fn authenticate(&self, id: &str, secret: &str) -> Result<&ClientConfig, OAuthError> {
        const REFUSED: OAuthError = OAuthError::new("invalid_client", "client authentication failed");
        let client = self.client(id).ok_or(REFUSED)?;
        let expected = Sha256::digest(client.client_secret.expose().as_bytes());
        let given = Sha256::digest(secret.as_bytes());
        if bool::from(expected.ct_eq(&given)) {
            Ok(client)
        } else {
            Err(REFUSED)
        }
    }

    /// The ID token and the access token for a grant just taken.
    pub fn issue(&self, grant: &Grant, person: &Person, now: u64) -> Result<Tokens, SignError> {
        let lifetime = self.config.token_lifetime.as_secs();
        let access = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: grant.user_id.clone(),
            aud: grant.client_id.clone(),
            client_id: grant.client_id.clone(),
            scope: grant.scope.clone(),
            iat: now,
            exp: now + lifetime,
            jti: crate::auth::session::generate(),
            ep: person.epoch,
        };
        let mut at_header = Header::new(self.alg);
        at_header.kid = Some(self.kid.clone());
        at_header.typ = Some("at+jwt".into());
        let access_token = self.signer.sign(&at_header, &access)?;
        let digest = Sha256::digest(access_token.as_bytes());
        let id_claims = claims::IdClaims {
            iss: &self.config.issuer,
            sub: &grant.user_id,
            aud: &grant.client_id,
            iat: now,
            exp: now + lifetime,
            auth_time: u64::try_from(grant.auth_time).unwrap_or(0),
            nonce: grant.nonce.as_deref(),
            at_hash: URL_SAFE_NO_PAD.encode(&digest[..16]),
            person: person.released(&grant.scope),
        };
        let mut id_header = Header::new(self.alg);
        id_header.kid = Some(self.kid.clone());
        let id_token = self.signer.sign(&id_header, &id_claims)?;
        Ok(Tokens {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime,
            id_token,
            scope: grant.scope.clone(),
        })
    }

    /// The claims of an access token this provider issued, unexpired.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, OAuthError> {
        const BAD: OAuthError = OAuthError::new("invalid_token", "the access token is not valid");
        let header = jsonwebtoken::decode_header(token).map_err(|_| BAD)?;
        if header.typ.as_deref() != Some("at+jwt") || header.kid.as_deref() != Some(&self.kid) {
            return Err(BAD);
        }
        let mut v = Validation::new(self.alg);
        v.set_issuer(&[&self.config.issuer]);
        v.validate_aud = false;
        v.leeway = 5;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &v)
            .map_err(|_| BAD)?
            .claims;
        if claims.aud != claims.client_id || self.client(&claims.client_id).is_none() {
            return Err(BAD);
        }
        Ok(claims)
    }

    /// The `(sub, aud)` of an ID token this provider issued, expired or not (an
    /// `id_token_hint` at sign-out is usually past its `exp`).
    pub fn verify_hint(&self, token: &str) -> Option<(String, String)> {
        #[derive(Deserialize)]
        struct Hint {
            sub: String,
            aud: String,
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() == Some("at+jwt") || header.kid.as_deref() != Some(&self.kid) {
            return None;
        }
        let mut v = Validation::new(self.alg);
        v.set_issuer(&[&self.config.issuer]);
        v.validate_aud = false;
        v.validate_exp = false;
        v.set_required_spec_claims(&["iss", "sub"]);
        let hint = jsonwebtoken::decode::<Hint>(token, &self.decoding, &v).ok()?.claims;
        self.client(&hint.aud)?;
        Some((hint.sub, hint.aud))
    }

    /// An endpoint's absolute URL.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}{path}", self.config.issuer, self.prefix)
    }
}

/// A new authorization code, and the hash it is stored under.
pub fn new_code() -> (String, String) {
    let code = crate::auth::session::generate();
    let hash = crate::auth::session::hash(&code);
    (code, hash)
}

/// The hash a presented code is looked up by.
pub fn code_hash(code: &str) -> String {
    crate::auth::session::hash(code)
}

/// The discovery document (OpenID Connect Discovery 1.0 §3).
fn discovery(c: &IdpConfig, prefix: &str) -> Result<Bytes, serde_json::Error> {
    let iss = &c.issuer;
    let mut scopes: Vec<&str> = Vec::new();
    for client in &c.clients {
        for s in &client.scopes {
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
    }
    let doc = serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}{prefix}{AUTHORIZE}"),
        "token_endpoint": format!("{iss}{prefix}{TOKEN}"),
        "userinfo_endpoint": format!("{iss}{prefix}{USERINFO}"),
        "end_session_endpoint": format!("{iss}{prefix}{END_SESSION}"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [c.algorithm.as_str()],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "claims_supported": claims::SUPPORTED,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    });
    serde_json::to_vec(&doc).map(Bytes::from)
}

/// How long until a grant made now expires.
pub fn code_expiry(now: i64) -> i64 {
    now + CODE_LIFETIME
}
