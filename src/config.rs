//! Configuration: read once at start-up, validated once, then immutable.
//!
//! Priority, lowest first (a later source overrides an earlier one):
//! 1. built-in defaults;
//! 2. the TOML file (`gateway.toml` unless `--config` names another);
//! 3. `AUTHGATE_<SECTION>__<KEY>` environment variables (`AUTHGATE_SERVER__LISTEN=0.0.0.0:443`);
//! 4. the RAG Modulo settings `JWT_SECRET_KEY`, `JWT_ALGORITHM` and `JWT_EXPIRATION`,
//!    mapped to `jwt.secret`, `jwt.algorithm` and `jwt.expiration`.
//!
//! The sources merge into a [`RawConfig`] (unknown keys are an error naming the key), which
//! [`RawConfig::validate`] turns into a typed [`Config`]. Every error names the key and the fix.
//! Secrets are [`Secret`]s: their `Debug` and `Serialize` print `***`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use http::uri::{Authority, Scheme};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::auth::jwt::JwtAlgorithm;
use crate::routes::PublicPaths;

/// The shortest HMAC secret accepted, in bytes (RFC 7518 §3.2 asks for at least the hash size).
pub const MIN_HS_SECRET_BYTES: usize = 32;

/// A configuration error: which key, what is wrong, how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Parse(String),
    #[error("config: `{key}` {problem}. Fix: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
}

impl ConfigError {
    fn invalid(key: &'static str, problem: impl Into<String>, fix: &'static str) -> Self {
        ConfigError::Invalid {
            key,
            problem: problem.into(),
            fix,
        }
    }
}

/// A secret string. It never prints: `Debug`, `Display` and `Serialize` show `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Environment values are parsed as TOML scalars, so an all-digit secret arrives as a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Str(String),
            Int(i128),
        }
        Ok(match Scalar::deserialize(d)? {
            Scalar::Str(s) => Secret(s),
            Scalar::Int(n) => Secret(n.to_string()),
        })
    }
}

/// A duration written as whole seconds (`30`) or a human string (`"30s"`, `"500ms"`, `"2m"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map(Dur).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{t}` is not a duration ({e}); write e.g. 30, \"30s\" or \"500ms\""
                ))
            }),
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

const fn secs(s: u64) -> Dur {
    Dur(Duration::from_secs(s))
}

// ---------------------------------------------------------------------------------------------
// Raw: exactly what the sources say, with defaults. Unknown keys are refused.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub admin: RawAdmin,
    pub tls: Option<RawTls>,
    pub upstream: RawUpstream,
    pub jwt: RawJwt,
    pub auth: RawAuth,
    pub limits: RawLimits,
    pub store: RawStore,
    pub redis: RawRedis,
    pub login: RawLogin,
    pub password: RawPassword,
    pub log: RawLog,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub url: Secret,
    pub sync_interval: Dur,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: Secret::new("sqlite://data/authgate.db?mode=rwc"),
            sync_interval: secs(5),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Request body limit on protected routes.
    pub body_bytes: u64,
    /// Request body limit on public routes (no credential: kept small).
    pub public_body_bytes: u64,
    /// A request body that sends nothing for this long is abandoned (408).
    pub body_idle_timeout: Dur,
    /// Client connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            body_bytes: 1 << 30,
            public_body_bytes: 1 << 20,
            body_idle_timeout: secs(30),
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// May carry a password: a `Secret`. Unset: everything stays in-process (one replica).
    pub url: Option<Secret>,
    pub timeout: Dur,
    pub token_ttl: Dur,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            url: None,
            timeout: Dur(Duration::from_millis(100)),
            token_ttl: secs(300),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogin {
    pub max_failures_per_account: u32,
    pub max_failures_per_ip: u32,
    pub window: Dur,
}

impl Default for RawLogin {
    fn default() -> Self {
        RawLogin {
            max_failures_per_account: 5,
            max_failures_per_ip: 50,
            window: secs(15 * 60),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPassword {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// How many hashes may run at once (0: one per core).
    pub hash_concurrency: usize,
    /// CPU niceness of the hashing threads (0 to 19): higher yields more readily to proxying.
    pub hash_niceness: u32,
}

impl Default for RawPassword {
    fn default() -> Self {
        RawPassword {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            hash_concurrency: 0,
            hash_niceness: 19,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub plaintext: bool,
    pub shutdown_grace: Dur,
    pub tls_handshake_timeout: Dur,
    pub header_read_timeout: Dur,
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 control frames (PING, SETTINGS, RST_STREAM, PRIORITY, empty DATA) a client may send
    /// in 10 s; past it the connection gets GOAWAY and is closed.
    pub h2_control_frames: u32,
    /// A connection with no request in flight and none started for this long is closed.
    pub idle_timeout: Dur,
    /// Peers (CIDRs) whose `X-Forwarded-For` / `Forwarded` are kept and appended to; from any
    /// other peer those headers are replaced.
    pub trusted_proxies: Vec<String>,
    /// `Strict-Transport-Security` on HTTPS answers; empty to send none.
    pub hsts: String,
    /// An optional plain-HTTP listener that redirects everything to HTTPS.
    pub redirect_http: Option<String>,
    /// The HTTPS port the redirects name, when clients reach the gateway on another port than the
    /// one it listens on (a container's published port); default: the listening port.
    pub redirect_https_port: Option<u16>,
    /// The host name HTTPS redirects name (`gw.example.com`); default: the client's `Host` when the
    /// TLS certificate covers it, else the certificate's first DNS name.
    pub public_host: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:8443".into(),
            plaintext: false,
            shutdown_grace: secs(30),
            tls_handshake_timeout: secs(10),
            header_read_timeout: secs(10),
            max_header_bytes: 64 * 1024,
            h2_max_concurrent_streams: 128,
            h2_control_frames: 1000,
            idle_timeout: secs(60),
            trusted_proxies: Vec::new(),
            hsts: "max-age=31536000; includeSubDomains".into(),
            redirect_http: None,
            redirect_https_port: None,
            public_host: None,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub self_signed_if_missing: bool,
    /// How often the certificate files are checked for replacement.
    pub reload_interval: Option<Dur>,
}

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
        }
    }
}

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

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub public_paths: Vec<String>,
    /// More header names a backend may trust as identity, stripped from clients in every spelling
    /// (on top of the built-in list in `proxy::headers`).
    pub identity_headers: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validated: typed, checked, ready to use.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin_listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub upstream: UpstreamConfig,
    pub jwt: JwtConfig,
    pub public_paths: PublicPaths,
    /// `auth.identity_headers`, normalised (lowercase, `_` as `-`).
    pub identity_headers: Vec<Box<str>>,
    pub limits: LimitsConfig,
    pub store: StoreConfig,
    pub redis: Option<RedisConfig>,
    pub login: crate::auth::limiter::LimiterConfig,
    pub password: PasswordConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// May carry a database password: a `Secret`.
    pub url: Secret,
    pub sync_interval: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct LimitsConfig {
    pub body_bytes: u64,
    pub public_body_bytes: u64,
    pub body_idle_timeout: Duration,
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    pub timeout: Duration,
    /// How long an API token stays in Redis and in each replica's memory.
    pub token_ttl: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct PasswordConfig {
    pub params: crate::auth::password::PasswordParams,
    pub hash_concurrency: usize,
    pub hash_niceness: u32,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_control_frames: u32,
    pub idle_timeout: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub hsts: Option<http::HeaderValue>,
    pub redirect_http: Option<SocketAddr>,
    pub redirect_https_port: Option<u16>,
    /// A valid host name (no port), lowercased.
    pub public_host: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub self_signed_if_missing: bool,
    pub reload_interval: Duration,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// The figment for a config file plus the process environment, in the documented priority order.
pub fn figment_for(path: &Path) -> Figment {
    let mut figment = Figment::new()
        .merge(Toml::file_exact(path))
        // Only `AUTHGATE_<SECTION>__<KEY>` is config. Other `AUTHGATE_*` variables belong to someone
        // else: the CLI's own `AUTHGATE_CONFIG`, or the `AUTHGATE_PORT`, `AUTHGATE_SERVICE_HOST`,
        // `AUTHGATE_PORT_8443_TCP_ADDR`… that Kubernetes puts in every pod beside a Service named
        // `authgate`. They are passed over, by name only (a value may be a secret).
        .merge(Env::prefixed("AUTHGATE_").filter(is_config_var).split("__"));
    for (var, key) in [("JWT_SECRET_KEY", "jwt.secret"), ("JWT_ALGORITHM", "jwt.algorithm")] {
        if let Ok(value) = std::env::var(var) {
            figment = figment.merge(Serialized::default(key, value));
        }
    }
    if let Ok(value) = std::env::var("JWT_EXPIRATION") {
        // Kept as text when it is not a number, so validation names the variable.
        match value.trim().parse::<u64>() {
            Ok(n) => figment = figment.merge(Serialized::default("jwt.expiration", n)),
            Err(_) => figment = figment.merge(Serialized::default("jwt.expiration", value)),
        }
    }
    figment
}

/// The config file's sections: the `<SECTION>` an `AUTHGATE_<SECTION>__<KEY>` variable may name.
const SECTIONS: [&str; 12] = [
    "server", "admin", "tls", "upstream", "jwt", "auth", "limits", "store", "redis", "login", "password", "log",
];

/// Whether an `AUTHGATE_`-prefixed variable (prefix stripped) is a `<SECTION>__<KEY>` setting of a
/// known section. (A Kubernetes Service named `authgate-x--y` gives `AUTHGATE_X__Y_SERVICE_HOST`:
/// that is not config either.) An unknown key inside a known section stays an error.
fn is_config_var(key: &figment::value::UncasedStr) -> bool {
    key.as_str()
        .split_once("__")
        .is_some_and(|(section, _)| SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section)))
}

/// The `AUTHGATE_*` variables in the environment that are not config (names only: a value may be
/// a secret), for a debug line once logging is set up.
pub fn ignored_env_vars() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.strip_prefix("AUTHGATE_")
                .is_some_and(|rest| !is_config_var(figment::value::UncasedStr::new(rest)))
        })
        .collect()
}

impl Config {
    /// Load `path`, then the environment, and validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Parse(format!(
                "config file {} does not exist. Fix: pass --config PATH, or run from the directory holding gateway.toml",
                path.display()
            )));
        }
        Self::from_figment(figment_for(path))
    }

    /// Parse a TOML document alone (no environment): for tests and `check-config` of snippets.
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        raw_from_figment(figment)?.validate()
    }
}

/// Extract the raw config, turning figment's error into one that names the key.
pub fn raw_from_figment(figment: Figment) -> Result<RawConfig, ConfigError> {
    figment.extract::<RawConfig>().map_err(|e| {
        let mut lines = Vec::new();
        for err in e {
            let key = err.path.join(".");
            let source = err
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            let fix = match &err.kind {
                figment::error::Kind::UnknownField(..) => {
                    "remove or rename it; the README's configuration reference lists every key"
                }
                figment::error::Kind::MissingField(..) => "add it",
                _ => "give it a value of the type the README's configuration reference shows",
            };
            let key_part = if key.is_empty() {
                String::new()
            } else {
                format!("`{key}`: ")
            };
            lines.push(format!("{key_part}{}{source}. Fix: {fix}", err.kind));
        }
        ConfigError::Parse(lines.join("; "))
    })
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen = parse_addr("server.listen", &self.server.listen)?;
        let admin_listen = parse_addr("admin.listen", &self.admin.listen)?;

        let tls = match (&self.tls, self.server.plaintext) {
            (Some(_), true) => {
                return Err(ConfigError::invalid(
                    "server.plaintext",
                    "is true while a [tls] section is present",
                    "remove [tls] for a plaintext sidecar, or drop server.plaintext for HTTPS",
                ));
            }
            (None, false) => {
                return Err(ConfigError::invalid(
                    "tls",
                    "is missing, and plaintext was not asked for",
                    "add [tls] with cert and key (PEM paths) for HTTPS, or set server.plaintext = true \
                     for a sidecar behind a mesh that already does TLS",
                ));
            }
            (None, true) => None,
            (Some(t), false) => {
                let cert = t.cert.clone().ok_or_else(|| {
                    ConfigError::invalid("tls.cert", "is missing", "set it to the PEM certificate chain path")
                })?;
                let key = t.key.clone().ok_or_else(|| {
                    ConfigError::invalid("tls.key", "is missing", "set it to the PEM private key path")
                })?;
                let reload_interval = t.reload_interval.map_or(Duration::from_secs(5), |d| d.0);
                if reload_interval < Duration::from_millis(100) {
                    return Err(ConfigError::invalid(
                        "tls.reload_interval",
                        "is below 100ms",
                        "use a few seconds (the default is 5s)",
                    ));
                }
                Some(TlsConfig {
                    cert,
                    key,
                    self_signed_if_missing: t.self_signed_if_missing,
                    reload_interval,
                })
            }
        };

        let s = &self.server;
        for (key, d) in [
            ("server.tls_handshake_timeout", s.tls_handshake_timeout),
            ("server.header_read_timeout", s.header_read_timeout),
            ("server.idle_timeout", s.idle_timeout),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            (
                "upstream.response_header_timeout",
                self.upstream.response_header_timeout,
            ),
        ] {
            if d.0.is_zero() {
                return Err(ConfigError::invalid(
                    key,
                    "is zero",
                    "give a positive duration such as \"10s\"",
                ));
            }
        }
        if s.max_header_bytes < 1024 {
            return Err(ConfigError::invalid(
                "server.max_header_bytes",
                format!("is {}, below 1024", s.max_header_bytes),
                "use at least 1024 (the default is 65536)",
            ));
        }
        if s.h2_max_concurrent_streams == 0 {
            return Err(ConfigError::invalid(
                "server.h2_max_concurrent_streams",
                "is 0",
                "use a positive number (the default is 128)",
            ));
        }
        if s.h2_control_frames < 10 {
            return Err(ConfigError::invalid(
                "server.h2_control_frames",
                format!("is {}, below 10", s.h2_control_frames),
                "use at least 10 control frames per 10 s (the default is 1000)",
            ));
        }

        let mut trusted_proxies = Vec::with_capacity(s.trusted_proxies.len());
        for cidr in &s.trusted_proxies {
            let net = cidr
                .parse::<ipnet::IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(
                        "server.trusted_proxies",
                        format!("`{cidr}` is not an IP address or CIDR"),
                        "list load balancers as CIDRs, e.g. [\"10.0.0.0/8\", \"192.0.2.7/32\"]",
                    )
                })?;
            trusted_proxies.push(net);
        }
        let hsts = match s.hsts.trim() {
            "" => None,
            v => Some(http::HeaderValue::from_str(v).map_err(|_| {
                ConfigError::invalid(
                    "server.hsts",
                    "is not a valid header value",
                    "use e.g. \"max-age=31536000; includeSubDomains\", or \"\" to send none",
                )
            })?),
        };
        let redirect_http = match &s.redirect_http {
            Some(addr) if tls.is_none() => {
                return Err(ConfigError::invalid(
                    "server.redirect_http",
                    format!("is set to {addr} but there is no [tls] to redirect to"),
                    "remove it, or configure [tls]",
                ));
            }
            Some(addr) => Some(parse_addr("server.redirect_http", addr)?),
            None => None,
        };
        if s.redirect_https_port == Some(0) {
            return Err(ConfigError::invalid(
                "server.redirect_https_port",
                "is 0",
                "give the HTTPS port clients connect to, such as 443, or leave it out to use the listening port",
            ));
        }
        let public_host = match &s.public_host {
            Some(h) => Some(
                crate::server::redirect::valid_host(h)
                    .filter(|_| !h.contains(':'))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "server.public_host",
                            format!("{h:?} is not a host name"),
                            "give the name clients use, without scheme or port, such as \"gw.example.com\"",
                        )
                    })?,
            ),
            None => None,
        };
        let mut upstream = validate_upstream(&self.upstream)?;
        if let Some(raw) = &self.upstream.identity {
            upstream.identity = Some(validate_identity(raw, self.jwt.issuer.as_deref())?);
        }
        let jwt = validate_jwt(self.jwt)?;
        let public_paths = PublicPaths::parse(&self.auth.public_paths).map_err(|problem| {
            ConfigError::invalid(
                "auth.public_paths",
                problem,
                "use exact paths like \"/api/health\" or prefixes like \"/docs/*\"",
            )
        })?;
        let mut identity_headers = Vec::with_capacity(self.auth.identity_headers.len());
        for name in &self.auth.identity_headers {
            let norm = crate::proxy::headers::identity_name(name).ok_or_else(|| {
                ConfigError::invalid(
                    "auth.identity_headers",
                    format!("{name:?} is not a header name, nor a prefix ending in *"),
                    "list header names such as \"X-Tenant-Id\", or prefixes such as \"X-Tenant-*\"",
                )
            })?;
            identity_headers.push(norm);
        }
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err(ConfigError::invalid(
                "limits.max_connections",
                "is 0",
                "use a positive number (the default is 10000)",
            ));
        }
        if l.body_idle_timeout.0.is_zero() {
            return Err(ConfigError::invalid(
                "limits.body_idle_timeout",
                "is zero",
                "use a duration such as \"30s\"",
            ));
        }
        let limits = LimitsConfig {
            body_bytes: l.body_bytes,
            public_body_bytes: l.public_body_bytes,
            body_idle_timeout: l.body_idle_timeout.0,
            max_connections: l.max_connections,
        };
        let store = validate_store(&self.store)?;
        let redis = validate_redis(&self.redis)?;
        let login = validate_login(&self.login)?;
        let password = validate_password(&self.password)?;
        let format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("is `{other}`"),
                    "use \"text\" or \"json\"",
                ));
            }
        };
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                format!("`{}` is not a log filter", self.log.level),
                "use error, warn, info, debug or trace (or a tracing filter like \"authgate=debug\")",
            ));
        }

        Ok(Config {
            server: ServerConfig {
                listen,
                shutdown_grace: s.shutdown_grace.0,
                tls_handshake_timeout: s.tls_handshake_timeout.0,
                header_read_timeout: s.header_read_timeout.0,
                max_header_bytes: s.max_header_bytes,
                h2_max_concurrent_streams: s.h2_max_concurrent_streams,
                h2_control_frames: s.h2_control_frames,
                idle_timeout: s.idle_timeout.0,
                trusted_proxies,
                hsts,
                redirect_http,
                redirect_https_port: s.redirect_https_port,
                public_host,
            },
            admin_listen,
            tls,
            upstream,
            jwt,
            public_paths,
            identity_headers,
            limits,
            store,
            redis,
            login,
            password,
            log: LogConfig {
                format,
                level: self.log.level,
            },
        })
    }
}

fn validate_store(raw: &RawStore) -> Result<StoreConfig, ConfigError> {
    let url = raw.url.expose();
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::invalid(
            "store.url",
            "is neither a sqlite: nor a postgres:// URL",
            "use e.g. \"sqlite://data/authgate.db?mode=rwc\" or \"postgres://user:pass@host/db\"",
        ));
    }
    if raw.sync_interval.0 < Duration::from_millis(100) {
        return Err(ConfigError::invalid(
            "store.sync_interval",
            "is below 100ms",
            "use a few seconds (the default is 5s)",
        ));
    }
    Ok(StoreConfig {
        url: raw.url.clone(),
        sync_interval: raw.sync_interval.0,
    })
}

fn validate_redis(raw: &RawRedis) -> Result<Option<RedisConfig>, ConfigError> {
    let Some(url) = &raw.url else { return Ok(None) };
    if !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://")) {
        return Err(ConfigError::invalid(
            "redis.url",
            "is not a redis:// URL",
            "use e.g. \"redis://127.0.0.1:6379/\", or remove it to keep everything in-process",
        ));
    }
    if raw.timeout.0.is_zero() || raw.timeout.0 > Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "redis.timeout",
            "is outside 1ms to 1s",
            "use a short bound such as \"100ms\" (the default)",
        ));
    }
    if raw.token_ttl.0 < Duration::from_secs(1) || raw.token_ttl.0 > Duration::from_secs(3600) {
        return Err(ConfigError::invalid(
            "redis.token_ttl",
            "is outside 1s to 1h",
            "use a few minutes (the default is 300s)",
        ));
    }
    Ok(Some(RedisConfig {
        url: url.clone(),
        timeout: raw.timeout.0,
        token_ttl: raw.token_ttl.0,
    }))
}

fn validate_login(raw: &RawLogin) -> Result<crate::auth::limiter::LimiterConfig, ConfigError> {
    for (key, v) in [
        ("login.max_failures_per_account", raw.max_failures_per_account),
        ("login.max_failures_per_ip", raw.max_failures_per_ip),
    ] {
        if v == 0 {
            return Err(ConfigError::invalid(
                key,
                "is 0",
                "use a positive number of failed attempts",
            ));
        }
    }
    if raw.window.0.is_zero() {
        return Err(ConfigError::invalid(
            "login.window",
            "is zero",
            "use a duration such as \"15m\"",
        ));
    }
    Ok(crate::auth::limiter::LimiterConfig {
        max_failures_per_account: raw.max_failures_per_account,
        max_failures_per_ip: raw.max_failures_per_ip,
        window: raw.window.0,
        max_entries: 100_000,
    })
}

fn validate_password(raw: &RawPassword) -> Result<PasswordConfig, ConfigError> {
    // OWASP's argon2id floor: m = 19 MiB, t = 2, p = 1.
    if raw.memory_kib < 19 * 1024 || raw.iterations < 2 || raw.parallelism < 1 {
        return Err(ConfigError::invalid(
            "password",
            format!(
                "(m={} KiB, t={}, p={}) is below OWASP's argon2id minimum",
                raw.memory_kib, raw.iterations, raw.parallelism
            ),
            "use memory_kib >= 19456, iterations >= 2, parallelism >= 1",
        ));
    }
    if raw.memory_kib > 4 * 1024 * 1024 || raw.iterations > 100 || raw.parallelism > 64 {
        return Err(ConfigError::invalid(
            "password",
            "asks for more than 4 GiB, 100 iterations or 64 lanes",
            "use values near the defaults (memory_kib = 19456, iterations = 2, parallelism = 1)",
        ));
    }
    if raw.hash_niceness > 19 {
        return Err(ConfigError::invalid(
            "password.hash_niceness",
            format!("is {}", raw.hash_niceness),
            "use 0 (normal priority) to 19 (lowest); the default is 19",
        ));
    }
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    Ok(PasswordConfig {
        params: crate::auth::password::PasswordParams {
            memory_kib: raw.memory_kib,
            iterations: raw.iterations,
            parallelism: raw.parallelism,
        },
        hash_concurrency: if raw.hash_concurrency == 0 {
            cores
        } else {
            raw.hash_concurrency
        },
        hash_niceness: raw.hash_niceness,
    })
}

fn parse_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("`{value}` is not an IP address and port"),
            "write it as IP:PORT, e.g. \"0.0.0.0:8443\" or \"[::]:8443\"",
        )
    })
}

fn validate_upstream(raw: &RawUpstream) -> Result<UpstreamConfig, ConfigError> {
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
        identity: None,
    })
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

fn validate_key(k: &RawJwtKey) -> Result<KeySpec, ConfigError> {
    const KEY: &str = "jwt.keys";
    let plain = !k.kid.is_empty()
        && k.kid.len() <= 64
        && k.kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !plain {
        return Err(ConfigError::invalid(
            KEY,
            format!("has a kid `{}` that is not 1 to 64 of A-Z a-z 0-9 . _ -", k.kid),
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

fn validate_jwt(raw: RawJwt) -> Result<JwtConfig, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_sections_are_the_config_sections() {
        let raw = serde_json::to_value(RawConfig::default()).unwrap();
        let mut fields: Vec<&str> = raw.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sections = SECTIONS.to_vec();
        fields.sort_unstable();
        sections.sort_unstable();
        assert_eq!(fields, sections);
    }

    #[test]
    fn only_section_key_variables_are_config() {
        for (key, config) in [
            ("SERVER__LISTEN", true),
            ("UPSTREAM__IDENTITY__TTL", true),
            ("CONFIG", false),
            ("PORT", false),
            ("PORT_8443_TCP_ADDR", false),
            ("SERVICE_HOST", false),
            ("__LISTEN", false),
            ("X__Y_SERVICE_HOST", false),
            ("SERVR__LISTEN", false),
        ] {
            assert_eq!(is_config_var(figment::value::UncasedStr::new(key)), config, "{key}");
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn base(extra: &str) -> String {
        format!("[server]\nplaintext = true\n[jwt]\nsecret = \"{SECRET}\"\n{extra}")
    }

    #[test]
    fn defaults_fill_what_is_not_written() {
        let c = Config::from_toml_str(&base("")).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.upstream.authority.as_str(), "127.0.0.1:8000");
        assert_eq!(c.jwt.expiration, Duration::from_secs(3600));
        assert_eq!(c.jwt.keys.len(), 1);
        assert_eq!(c.jwt.keys[0].algorithm, JwtAlgorithm::HS256);
        assert!(c.jwt.keys[0].signing);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str(&base("[admin]\nlisten_port = 1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn unknown_nested_key_is_named_with_its_section() {
        let err = Config::from_toml_str("[server]\nplaintext = true\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.bogus") || err.contains("bogus"), "{err}");
    }

    #[test]
    fn missing_tls_without_plaintext_says_how_to_fix() {
        let err = Config::from_toml_str(&format!("[jwt]\nsecret = \"{SECRET}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`tls`") && err.contains("server.plaintext = true"),
            "{err}"
        );
    }

    #[test]
    fn short_secret_is_refused_and_not_printed() {
        let err = Config::from_toml_str("[server]\nplaintext = true\n[jwt]\nsecret = \"tooshort-secret\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("jwt.secret") && err.contains("32"), "{err}");
        assert!(!err.contains("tooshort-secret"), "{err}");
    }

    #[test]
    fn missing_secret_is_refused_unless_generation_is_on() {
        let err = Config::from_toml_str("[server]\nplaintext = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("jwt.secret") && err.contains("JWT_SECRET_KEY"), "{err}");
        let c =
            Config::from_toml_str("[server]\nplaintext = true\n[jwt]\ngenerate_secret_if_missing = true\n").unwrap();
        assert!(matches!(c.jwt.keys[0].source, SecretSource::GenerateInto(_)));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (snippet, key) in [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            ("[upstream]\nurl = \"ftp://x\"", "upstream.url"),
            ("[upstream]\nurl = \"http://h:1/base\"", "upstream.url"),
            ("[jwt]\nalgorithm = \"none\"", "jwt.algorithm"),
            ("[jwt]\nexpiration = 0", "jwt.expiration"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[auth]\npublic_paths = [\"nope\"]", "auth.public_paths"),
            ("[server]\nshutdown_grace = \"soon\"", "shutdown_grace"),
            ("[server]\nredirect_https_port = 0", "server.redirect_https_port"),
            ("[server]\nredirect_https_port = 70000", "redirect_https_port"),
        ] {
            let base = format!("[jwt]\nsecret = \"{SECRET}\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n");
            let figment = Figment::new().merge(Toml::string(&base)).merge(Toml::string(snippet));
            let err = match Config::from_figment(figment) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{snippet} was accepted"),
            };
            assert!(err.contains(key), "{snippet}: {err}");
        }
    }

    #[test]
    fn rotation_keys_are_validated() {
        let ok = base(
            "[[jwt.keys]]\nkid = \"k2\"\nalgorithm = \"HS256\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789\"\nsigning = true\n",
        );
        let c = Config::from_toml_str(&ok).unwrap();
        assert_eq!(c.jwt.keys.len(), 2);
        assert!(!c.jwt.keys[0].signing && c.jwt.keys[1].signing);
        for (extra, needle) in [
            (
                "[[jwt.keys]]\nkid = \"../x\"\nalgorithm = \"HS256\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789\"\n",
                "kid",
            ),
            (
                "[[jwt.keys]]\nkid = \"a\"\nalgorithm = \"HS256\"\nsecret = \"short\"\n",
                "jwt.keys.secret",
            ),
            (
                "[[jwt.keys]]\nkid = \"a\"\nalgorithm = \"ES256\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789\"\n",
                "private_key",
            ),
            (
                "[[jwt.keys]]\nkid = \"a\"\nalgorithm = \"HS256\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789\"\nsigning = true\n[[jwt.keys]]\nkid = \"b\"\nalgorithm = \"HS256\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789\"\nsigning = true\n",
                "signing",
            ),
            (
                "[[jwt.keys]]\nkid = \"a\"\nalgorithm = \"HS256\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789\"\n[[jwt.keys]]\nkid = \"a\"\nalgorithm = \"HS256\"\nsecret = \"abcdefghijklmnopqrstuvwxyz0123456789\"\n",
                "twice",
            ),
        ] {
            let err = Config::from_toml_str(&base(extra)).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        // Without jwt.secret, a signing key from [[jwt.keys]] suffices.
        let only = "[server]\nplaintext = true\n[[jwt.keys]]\nkid = \"k\"\nalgorithm = \"ES256\"\nprivate_key = \"k.pem\"\nsigning = true\n";
        assert_eq!(Config::from_toml_str(only).unwrap().jwt.keys.len(), 1);
    }

    #[test]
    fn durations_accept_seconds_and_text() {
        let c = Config::from_toml_str(&base(
            "[upstream]\nconnect_timeout = \"250ms\"\nresponse_header_timeout = 7",
        ))
        .unwrap();
        assert_eq!(c.upstream.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.upstream.response_header_timeout, Duration::from_secs(7));
    }

    #[test]
    fn secret_debug_is_masked() {
        let c = Config::from_toml_str(&base("")).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
