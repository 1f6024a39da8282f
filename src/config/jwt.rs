//! `[jwt]` and `[[jwt.keys]]`: the keys access tokens are signed and verified with.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, Secret, secs};

/// The algorithms the gateway signs and verifies with.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    ES256,
    EdDSA,
}

impl JwtAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512)
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = ();
    /// Config spelling is forgiving about case; token headers are compared exactly elsewhere.
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "HS256" => JwtAlgorithm::HS256,
            "HS384" => JwtAlgorithm::HS384,
            "HS512" => JwtAlgorithm::HS512,
            "RS256" => JwtAlgorithm::RS256,
            "ES256" => JwtAlgorithm::ES256,
            "EDDSA" => JwtAlgorithm::EdDSA,
            _ => return Err(()),
        })
    }
}

/// The shortest HMAC secret accepted, in bytes (RFC 7518 §3.2 asks for at least the hash size).
pub const MIN_HS_SECRET_BYTES: usize = 32;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwt {
    pub secret: Option<Secret>,
    /// PEM private key (PKCS#8) for an asymmetric `jwt.algorithm`.
    pub private_key: Option<PathBuf>,
    /// PEM public key, to verify only (no signing) with an asymmetric `jwt.algorithm`.
    pub public_key: Option<PathBuf>,
    pub algorithm: String,
    pub expiration: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Dur,
    pub generate_secret_if_missing: bool,
    pub secret_file: PathBuf,
    /// More keys, selected by `kid`, for rotation. At most one has `signing = true`.
    pub keys: Vec<RawJwtKey>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtKey {
    pub kid: String,
    pub algorithm: String,
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    #[serde(default)]
    pub signing: bool,
}

impl Default for RawJwt {
    fn default() -> Self {
        RawJwt {
            secret: None,
            private_key: None,
            public_key: None,
            algorithm: "HS256".into(),
            expiration: 3600,
            issuer: None,
            audience: None,
            leeway: secs(30),
            generate_secret_if_missing: false,
            secret_file: PathBuf::from("data/jwt_secret"),
            keys: Vec::new(),
        }
    }
}

/// Where a key's material comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// An HMAC secret set in the config or the environment.
    Given(Secret),
    /// Development only: read from this file, or generate it there (mode 0600) on first run.
    GenerateInto(PathBuf),
    /// An asymmetric private key (PEM, PKCS#8): signs, verifies, and is published in the JWKS.
    PrivatePem(PathBuf),
    /// An asymmetric public key (PEM): verifies only.
    PublicPem(PathBuf),
}

/// One verification key; `kid` is `None` for the primary key from `jwt.secret` / `jwt.private_key`.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub kid: Option<String>,
    pub algorithm: JwtAlgorithm,
    pub source: SecretSource,
    pub signing: bool,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Every key tokens are accepted from; exactly one has `signing`.
    pub keys: Vec<KeySpec>,
    pub expiration: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
}

const SECRET_FIX: &str =
    "set JWT_SECRET_KEY (or jwt.secret) to at least 32 random bytes, e.g. `openssl rand -base64 48`";

fn check_hs_secret(key: &'static str, secret: &Secret) -> Result<(), ConfigError> {
    if secret.expose().len() < MIN_HS_SECRET_BYTES {
        return Err(ConfigError::invalid(
            key,
            format!("is shorter than {MIN_HS_SECRET_BYTES} bytes"),
            SECRET_FIX,
        ));
    }
    Ok(())
}

fn parse_algorithm(key: &'static str, value: &str) -> Result<JwtAlgorithm, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("`{value}` is not supported"),
            "use HS256, HS384, HS512, RS256, ES256 or EdDSA (JWT_ALGORITHM sets jwt.algorithm)",
        )
    })
}

/// The primary key, from `jwt.secret` / `jwt.private_key` / `jwt.public_key`, if any.
fn primary_key(raw: &RawJwt, algorithm: JwtAlgorithm) -> Result<Option<SecretSource>, ConfigError> {
    if algorithm.is_hmac() {
        if raw.private_key.is_some() || raw.public_key.is_some() {
            return Err(ConfigError::invalid(
                "jwt.private_key",
                format!("is set but jwt.algorithm is {algorithm}"),
                "use jwt.secret for HS algorithms, or set jwt.algorithm to RS256, ES256 or EdDSA",
            ));
        }
        return Ok(match &raw.secret {
            Some(secret) => {
                check_hs_secret("jwt.secret", secret)?;
                Some(SecretSource::Given(secret.clone()))
            }
            None if raw.generate_secret_if_missing => Some(SecretSource::GenerateInto(raw.secret_file.clone())),
            None => None,
        });
    }
    if raw.secret.is_some() {
        return Err(ConfigError::invalid(
            "jwt.secret",
            format!("is set but jwt.algorithm is {algorithm}, which uses a key pair"),
            "set jwt.private_key (PEM) instead, or use an HS algorithm",
        ));
    }
    Ok(match (&raw.private_key, &raw.public_key) {
        (Some(p), _) => Some(SecretSource::PrivatePem(p.clone())),
        (None, Some(p)) => Some(SecretSource::PublicPem(p.clone())),
        (None, None) => None,
    })
}

/// The one rule for a key id, wherever one comes from: a `[[jwt.keys]]` entry, a token's header,
/// `authgate keys generate --kid` (which also names files after it): 1 to 64 of A-Z a-z 0-9 . _ -,
/// and never `..`.
pub fn kid_is_plain(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !kid.contains("..")
}

fn validate_key(k: &RawJwtKey) -> Result<KeySpec, ConfigError> {
    const KEY: &str = "jwt.keys";
    if !kid_is_plain(&k.kid) {
        return Err(ConfigError::invalid(
            KEY,
            format!(
                "has a kid `{}` that is not 1 to 64 of A-Z a-z 0-9 . _ - (without `..`)",
                k.kid
            ),
            "give each key a short plain kid, e.g. \"2026-11\"",
        ));
    }
    let algorithm = parse_algorithm("jwt.keys.algorithm", &k.algorithm)?;
    let source = if algorithm.is_hmac() {
        match (&k.secret, &k.private_key, &k.public_key) {
            (Some(secret), None, None) => {
                check_hs_secret("jwt.keys.secret", secret)?;
                SecretSource::Given(secret.clone())
            }
            _ => {
                return Err(ConfigError::invalid(
                    KEY,
                    format!("key `{}` ({algorithm}) needs `secret` and no key files", k.kid),
                    "give HS keys a secret of at least 32 bytes",
                ));
            }
        }
    } else {
        match (&k.secret, &k.private_key, &k.public_key) {
            (None, Some(p), _) => SecretSource::PrivatePem(p.clone()),
            (None, None, Some(p)) if !k.signing => SecretSource::PublicPem(p.clone()),
            _ => {
                return Err(ConfigError::invalid(
                    KEY,
                    format!(
                        "key `{}` ({algorithm}) needs `private_key` (or `public_key` to verify only)",
                        k.kid
                    ),
                    "point private_key at the PEM written by `authgate keys generate`",
                ));
            }
        }
    };
    Ok(KeySpec {
        kid: Some(k.kid.clone()),
        algorithm,
        source,
        signing: k.signing,
    })
}

pub(super) fn validate(raw: RawJwt) -> Result<JwtConfig, ConfigError> {
    let algorithm = parse_algorithm("jwt.algorithm", &raw.algorithm)?;
    if raw.expiration == 0 || raw.expiration > 30 * 24 * 3600 {
        return Err(ConfigError::invalid(
            "jwt.expiration",
            format!("is {} seconds", raw.expiration),
            "use 1 to 2592000 seconds (JWT_EXPIRATION sets it too; the default is 3600)",
        ));
    }
    let mut keys = Vec::with_capacity(raw.keys.len() + 1);
    for k in &raw.keys {
        let spec = validate_key(k)?;
        if keys.iter().any(|o: &KeySpec| o.kid == spec.kid) {
            return Err(ConfigError::invalid(
                "jwt.keys",
                format!("has kid `{}` twice", k.kid),
                "give every key its own kid",
            ));
        }
        keys.push(spec);
    }
    let explicit_signers = keys.iter().filter(|k| k.signing).count();
    if explicit_signers > 1 {
        return Err(ConfigError::invalid(
            "jwt.keys",
            "has more than one key with signing = true",
            "mark exactly one key as the signing key",
        ));
    }
    match primary_key(&raw, algorithm)? {
        Some(source) => {
            let signing = explicit_signers == 0;
            if signing && matches!(source, SecretSource::PublicPem(_)) {
                return Err(ConfigError::invalid(
                    "jwt.private_key",
                    "is not set, and no [[jwt.keys]] entry has signing = true",
                    "set jwt.private_key, or mark a [[jwt.keys]] entry with signing = true",
                ));
            }
            keys.insert(
                0,
                KeySpec {
                    kid: None,
                    algorithm,
                    source,
                    signing,
                },
            );
        }
        None if explicit_signers == 1 => {}
        None if algorithm.is_hmac() => {
            return Err(ConfigError::invalid("jwt.secret", "is not set", SECRET_FIX));
        }
        None => {
            return Err(ConfigError::invalid(
                "jwt.private_key",
                format!("is not set, and jwt.algorithm is {algorithm}"),
                "write a key pair with `authgate keys generate --algorithm ES256` and set jwt.private_key",
            ));
        }
    }
    for (key, value) in [("jwt.issuer", &raw.issuer), ("jwt.audience", &raw.audience)] {
        if value.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::invalid(
                key,
                "is empty",
                "remove it, or give a non-empty value",
            ));
        }
    }
    Ok(JwtConfig {
        keys,
        expiration: Duration::from_secs(raw.expiration),
        issuer: raw.issuer,
        audience: raw.audience,
        leeway: raw.leeway.0,
    })
}
