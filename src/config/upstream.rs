//! `[upstream]`, `[upstream.identity]`, `[upstream.rag_modulo]` and `[upstream.ragflow]`: the
//! backend the gateway forwards to, the profile that says how it is told who the caller is, and the
//! signed identity assertion it may be sent.

use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, JwtAlgorithm, MIN_HS_SECRET_BYTES, Secret, secs};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: String,
    pub connect_timeout: Dur,
    pub response_header_timeout: Dur,
    pub pool_idle_timeout: Dur,
    pub pool_max_idle_per_host: usize,
    /// Extra CA certificates (PEM) trusted for an `https://` upstream, on top of the web PKI roots.
    pub ca_cert: Option<PathBuf>,
    /// A signed identity assertion sent to the backend beside `X-User-Id`.
    pub identity: Option<RawIdentity>,
    /// `header` (`X-User-Id`, the default) or `rag_modulo` (the bearer JWT RAG Modulo's middleware reads).
    pub profile: String,
    /// The `rag_modulo` profile's settings.
    pub rag_modulo: Option<RawRagModulo>,
    /// The `ragflow` profile's settings.
    pub ragflow: Option<RawRagflow>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRagflow {
    /// Base64 of 32 random bytes: the AES-256-GCM key that seals the stored RAGFlow API keys. From
    /// the environment: `AUTHGATE_UPSTREAM__RAGFLOW__KEY_ENCRYPTION_KEY`.
    pub key_encryption_key: Option<Secret>,
    /// Older encryption keys, still accepted for opening rows sealed before a rotation.
    pub previous_keys: Vec<Secret>,
    /// How long a decrypted key is kept in memory (0: not at all).
    pub cache_ttl: Dur,
}

impl Default for RawRagflow {
    fn default() -> Self {
        RawRagflow {
            key_encryption_key: None,
            previous_keys: Vec::new(),
            cache_ttl: secs(10),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRagModulo {
    /// RAG Modulo's `JWT_SECRET_KEY` (HS256). From the environment:
    /// `AUTHGATE_UPSTREAM__RAG_MODULO__JWT_SECRET` (authgate reads `JWT_SECRET_KEY` as its own `jwt.secret`).
    pub jwt_secret: Option<Secret>,
    /// The minted token's lifetime.
    pub ttl: Dur,
}

impl Default for RawRagModulo {
    fn default() -> Self {
        RawRagModulo {
            jwt_secret: None,
            ttl: secs(60),
        }
    }
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            url: "http://127.0.0.1:8000".into(),
            connect_timeout: secs(5),
            response_header_timeout: secs(60),
            pool_idle_timeout: secs(90),
            pool_max_idle_per_host: 256,
            ca_cert: None,
            identity: None,
            profile: "header".into(),
            rag_modulo: None,
            ragflow: None,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentity {
    /// `header` (`X-Auth-Assertion: <jwt>`) or `bearer` (`Authorization: Bearer <jwt>`).
    pub mode: String,
    /// `EdDSA` or `ES256`: the backend holds only the public key.
    pub algorithm: String,
    pub private_key: Option<PathBuf>,
    /// Development only: create the key file (mode 0600) on first start.
    pub generate_if_missing: bool,
    pub ttl: Dur,
    pub issuer: Option<String>,
    /// The `aud` claim; unset sends none (PyJWT-based backends such as RAG Modulo refuse an `aud`
    /// they were not told to expect).
    pub audience: Option<String>,
}

impl Default for RawIdentity {
    fn default() -> Self {
        RawIdentity {
            mode: "header".into(),
            algorithm: "EdDSA".into(),
            private_key: None,
            generate_if_missing: false,
            ttl: secs(60),
            issuer: None,
            audience: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub scheme: Scheme,
    pub authority: Authority,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub ca_cert: Option<PathBuf>,
    pub identity: Option<IdentityConfig>,
    pub profile: ProfileConfig,
}

/// `upstream.profile`: what the backend is given as the caller's identity.
#[derive(Debug, Clone)]
pub enum ProfileConfig {
    /// `X-User-Id` (and the `[upstream.identity]` assertion when set): today's behaviour.
    Header,
    /// `Authorization: Bearer <HS256 JWT>` with the claims RAG Modulo's middleware reads.
    RagModulo(RagModuloConfig),
    /// `Authorization: Bearer <the user's RAGFlow API key>`, from keys sealed in the store.
    Ragflow(RagflowConfig),
}

/// An AES-256 key from the config; `Debug` never shows it.
#[derive(Clone)]
pub struct EncryptionKey(pub [u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct RagflowConfig {
    /// Seals new rows and opens rows sealed with it.
    pub key_encryption_key: EncryptionKey,
    /// Open rows sealed before a rotation.
    pub previous_keys: Vec<EncryptionKey>,
    pub cache_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct RagModuloConfig {
    pub jwt_secret: Secret,
    pub ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionMode {
    /// `X-Auth-Assertion: <jwt>`.
    Header,
    /// `Authorization: Bearer <jwt>`, for backends that read a Bearer JWT (RAG Modulo).
    Bearer,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub mode: AssertionMode,
    pub algorithm: JwtAlgorithm,
    pub private_key: PathBuf,
    pub generate_if_missing: bool,
    pub ttl: Duration,
    pub issuer: String,
    pub audience: Option<String>,
}

pub(super) fn validate(raw: &RawUpstream, jwt_issuer: Option<&str>) -> Result<UpstreamConfig, ConfigError> {
    for (key, d) in [
        ("upstream.connect_timeout", raw.connect_timeout),
        ("upstream.response_header_timeout", raw.response_header_timeout),
    ] {
        if d.0.is_zero() {
            return Err(ConfigError::invalid(
                key,
                "is zero",
                "give a positive duration such as \"10s\"",
            ));
        }
    }
    const KEY: &str = "upstream.url";
    const FIX: &str = "write it as http://HOST:PORT or https://HOST:PORT, with no path, query or user info";
    let uri: http::Uri = raw
        .url
        .parse()
        .map_err(|_| ConfigError::invalid(KEY, format!("`{}` is not a URL", raw.url), FIX))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => {
            return Err(ConfigError::invalid(KEY, "must start with http:// or https://", FIX));
        }
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| ConfigError::invalid(KEY, "has no host", FIX))?;
    if authority.as_str().contains('@') {
        return Err(ConfigError::invalid(KEY, "carries user info", FIX));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(ConfigError::invalid(KEY, "has a path or query", FIX));
    }
    Ok(UpstreamConfig {
        scheme,
        authority,
        connect_timeout: raw.connect_timeout.0,
        response_header_timeout: raw.response_header_timeout.0,
        pool_idle_timeout: raw.pool_idle_timeout.0,
        pool_max_idle_per_host: raw.pool_max_idle_per_host,
        ca_cert: raw.ca_cert.clone(),
        identity: match &raw.identity {
            Some(identity) => Some(validate_identity(identity, jwt_issuer)?),
            None => None,
        },
        profile: validate_profile(raw)?,
    })
}

fn validate_profile(raw: &RawUpstream) -> Result<ProfileConfig, ConfigError> {
    match raw.profile.as_str() {
        "header" => {
            if raw.rag_modulo.is_some() {
                return Err(ConfigError::invalid(
                    "upstream.rag_modulo",
                    "is set but upstream.profile is \"header\"",
                    "set upstream.profile = \"rag_modulo\", or remove [upstream.rag_modulo]",
                ));
            }
            if raw.ragflow.is_some() {
                return Err(ConfigError::invalid(
                    "upstream.ragflow",
                    "is set but upstream.profile is \"header\"",
                    "set upstream.profile = \"ragflow\", or remove [upstream.ragflow]",
                ));
            }
            Ok(ProfileConfig::Header)
        }
        "ragflow" => validate_ragflow(raw).map(ProfileConfig::Ragflow),
        "rag_modulo" => {
            if raw.identity.is_some() {
                return Err(ConfigError::invalid(
                    "upstream.identity",
                    "is set with upstream.profile = \"rag_modulo\", which sends its own bearer JWT",
                    "remove [upstream.identity]; the rag_modulo profile is the assertion RAG Modulo reads",
                ));
            }
            let rm = raw.rag_modulo.as_ref();
            let jwt_secret = rm.and_then(|r| r.jwt_secret.clone()).ok_or_else(|| {
                ConfigError::invalid(
                    "upstream.rag_modulo.jwt_secret",
                    "is missing",
                    "set it (or AUTHGATE_UPSTREAM__RAG_MODULO__JWT_SECRET) to RAG Modulo's JWT_SECRET_KEY",
                )
            })?;
            if jwt_secret.expose().len() < MIN_HS_SECRET_BYTES {
                return Err(ConfigError::invalid(
                    "upstream.rag_modulo.jwt_secret",
                    format!("is shorter than {MIN_HS_SECRET_BYTES} bytes"),
                    "give RAG Modulo (JWT_SECRET_KEY) and authgate the same secret of at least 32 random bytes, e.g. `openssl rand -base64 48`",
                ));
            }
            let ttl = rm.map_or(Duration::from_secs(60), |r| r.ttl.0);
            if !(Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&ttl) {
                return Err(ConfigError::invalid(
                    "upstream.rag_modulo.ttl",
                    format!("is {}", humantime::format_duration(ttl)),
                    "use between 10s and 1h (about 60s is the intent: RAG Modulo sees it only in flight)",
                ));
            }
            Ok(ProfileConfig::RagModulo(RagModuloConfig { jwt_secret, ttl }))
        }
        other => Err(ConfigError::invalid(
            "upstream.profile",
            format!("`{other}` is not a profile"),
            "use \"header\" (X-User-Id, the default), \"rag_modulo\" (the bearer JWT RAG Modulo reads) or \"ragflow\" (each user's stored RAGFlow API key)",
        )),
    }
}

const KEK_FIX: &str = "give base64 of 32 random bytes, e.g. `openssl rand -base64 32`";

fn validate_ragflow(raw: &RawUpstream) -> Result<RagflowConfig, ConfigError> {
    if raw.identity.is_some() {
        return Err(ConfigError::invalid(
            "upstream.identity",
            "is set with upstream.profile = \"ragflow\", which sends the user's RAGFlow API key as the bearer",
            "remove [upstream.identity]; RAGFlow reads only its own API keys",
        ));
    }
    if raw.rag_modulo.is_some() {
        return Err(ConfigError::invalid(
            "upstream.rag_modulo",
            "is set but upstream.profile is \"ragflow\"",
            "remove [upstream.rag_modulo], or set upstream.profile = \"rag_modulo\"",
        ));
    }
    let rf = raw.ragflow.as_ref();
    let kek = rf.and_then(|r| r.key_encryption_key.as_ref()).ok_or_else(|| {
        ConfigError::invalid(
            "upstream.ragflow.key_encryption_key",
            "is missing",
            "set it (or AUTHGATE_UPSTREAM__RAGFLOW__KEY_ENCRYPTION_KEY) to base64 of 32 random bytes, e.g. `openssl rand -base64 32`",
        )
    })?;
    let key_encryption_key = encryption_key("upstream.ragflow.key_encryption_key", kek)?;
    let mut previous_keys = Vec::new();
    for (i, k) in rf.map_or(&[][..], |r| &r.previous_keys[..]).iter().enumerate() {
        let key = encryption_key("upstream.ragflow.previous_keys", k).map_err(|e| e.at_entry(i))?;
        previous_keys.push(key);
    }
    let cache_ttl = rf.map_or(Duration::from_secs(10), |r| r.cache_ttl.0);
    if cache_ttl > Duration::from_secs(300) {
        return Err(ConfigError::invalid(
            "upstream.ragflow.cache_ttl",
            format!("is {}", humantime::format_duration(cache_ttl)),
            "use at most 5m (the delay before a changed or removed key is seen); 0 keeps none",
        ));
    }
    Ok(RagflowConfig {
        key_encryption_key,
        previous_keys,
        cache_ttl,
    })
}

/// 32 bytes from base64 (standard or URL-safe, padded or not); the error never shows the value.
fn encryption_key(key: &'static str, value: &Secret) -> Result<EncryptionKey, ConfigError> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = value.expose().trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(text).ok())
        .ok_or_else(|| ConfigError::invalid(key, "is not base64", KEK_FIX))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| ConfigError::invalid(key, format!("decodes to {} bytes, not 32", b.len()), KEK_FIX))?;
    Ok(EncryptionKey(bytes))
}

fn validate_identity(raw: &RawIdentity, jwt_issuer: Option<&str>) -> Result<IdentityConfig, ConfigError> {
    let mode = match raw.mode.as_str() {
        "header" => AssertionMode::Header,
        "bearer" => AssertionMode::Bearer,
        other => {
            return Err(ConfigError::invalid(
                "upstream.identity.mode",
                format!("`{other}` is not a mode"),
                "use \"header\" (X-Auth-Assertion) or \"bearer\" (Authorization: Bearer)",
            ));
        }
    };
    let algorithm = match raw.algorithm.parse::<JwtAlgorithm>() {
        Ok(a @ (JwtAlgorithm::EdDSA | JwtAlgorithm::ES256)) => a,
        _ => {
            return Err(ConfigError::invalid(
                "upstream.identity.algorithm",
                format!("`{}` is not supported for assertions", raw.algorithm),
                "use EdDSA or ES256, so that the backend needs only the public key",
            ));
        }
    };
    let private_key = raw.private_key.clone().ok_or_else(|| {
        ConfigError::invalid(
            "upstream.identity.private_key",
            "is missing",
            "create one with `authgate keys generate --algorithm EdDSA` and give the private key file's path",
        )
    })?;
    let ttl = raw.ttl.0;
    if !(Duration::from_secs(2)..=Duration::from_secs(3600)).contains(&ttl) {
        return Err(ConfigError::invalid(
            "upstream.identity.ttl",
            format!("is {}", humantime::format_duration(ttl)),
            "use between 2s and 1h (about 60s is the intent: a backend sees it only in flight)",
        ));
    }
    if raw.audience.as_ref().is_some_and(|a| a.trim().is_empty()) {
        return Err(ConfigError::invalid(
            "upstream.identity.audience",
            "is empty",
            "name the backend, e.g. audience = \"rag-backend\", or remove the key to send no aud claim",
        ));
    }
    Ok(IdentityConfig {
        mode,
        algorithm,
        private_key,
        generate_if_missing: raw.generate_if_missing,
        ttl,
        issuer: raw
            .issuer
            .clone()
            .or_else(|| jwt_issuer.map(str::to_owned))
            .unwrap_or_else(|| "authgate".into()),
        audience: raw.audience.clone(),
    })
}
