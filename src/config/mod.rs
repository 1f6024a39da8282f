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
//!
//! This file holds the sources, the shared value types and the top level. Each section of the
//! file (`[server]`, `[jwt]`, …) has a module of its own holding its raw struct (with defaults), its
//! validated struct and its `validate`: adding a key means editing that one file.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::routes::{ApiPaths, PublicPaths};

mod accounts;
mod admin;
mod auth;
mod idp;
mod jwt;
mod limits;
mod log;
mod login;
mod oidc;
mod password;
mod policy;
mod redis;
mod server;
mod store;
mod tls;
mod upstream;
mod web;

pub use accounts::{RawAccounts, Registration};
pub use admin::RawAdmin;
pub use auth::{AuthConfig, RawAuth, identity_name};
pub use idp::{ClientConfig, IdpConfig, RawClient};
pub use jwt::{JwtAlgorithm, JwtConfig, KeySpec, MIN_HS_SECRET_BYTES, RawJwt, RawJwtKey, SecretSource, kid_is_plain};
pub use limits::{LimitsConfig, RawLimits};
pub use log::{LogConfig, LogFormat, RawLog};
pub use login::{LimiterConfig, RawLogin};
pub use oidc::{ProviderConfig, RawOidc, RawProvider};
pub use password::{PasswordConfig, PasswordParams, RawPassword};
pub use policy::{RawPolicy, RawRule};
pub use redis::{RawRedis, RedisConfig};
pub use server::{RawServer, ServerConfig, valid_host};
pub use store::{RawStore, StoreConfig};
pub use tls::{RawTls, TlsConfig};
pub use upstream::{
    AssertionMode, EncryptionKey, IdentityConfig, ProfileConfig, RagModuloConfig, RagflowConfig, RawIdentity,
    RawRagModulo, RawRagflow, RawUpstream, UpstreamConfig,
};
pub use web::{RawSession, RawWeb, WebConfig};

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

    /// The same error, about entry `i` of a list-valued key.
    fn at_entry(self, i: usize) -> Self {
        match self {
            ConfigError::Invalid { key, problem, fix } => ConfigError::Invalid {
                key,
                problem: format!("entry {i} {problem}"),
                fix,
            },
            other => other,
        }
    }
}

/// A secret string. It never prints: `Debug` and `Serialize` show `***`, and there is no `Display`.
/// There is no `PartialEq` either: `==` on secrets is not constant-time. Compare
/// [`Secret::expose`] with `subtle::ConstantTimeEq` if a comparison is ever needed.
#[derive(Clone, Default)]
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
    pub web: RawWeb,
    pub session: RawSession,
    pub accounts: RawAccounts,
    pub oidc: RawOidc,
    pub policy: RawPolicy,
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
    /// `auth.api_prefix` and `auth.backend_paths`: where the gateway answers its JSON API.
    pub api_paths: ApiPaths,
    pub public_paths: PublicPaths,
    /// `auth.identity_headers`, normalised (lowercase, `_` as `-`).
    pub identity_headers: Vec<Box<str>>,
    pub limits: LimitsConfig,
    pub store: StoreConfig,
    pub redis: Option<RedisConfig>,
    pub login: LimiterConfig,
    pub password: PasswordConfig,
    pub log: LogConfig,
    /// `[web]` and `[session]`.
    pub web: WebConfig,
    /// `accounts.registration`.
    pub registration: Registration,
    /// `accounts.local_sign_in`: the sign-in page's username and password form.
    pub local_sign_in: bool,
    /// `[[oidc.providers]]`.
    pub oidc: Vec<ProviderConfig>,
    /// `oidc.issuer`, `oidc.signing_key` and `[[oidc.clients]]`: authgate as an OpenID Provider,
    /// when any client is configured.
    pub idp: Option<IdpConfig>,
    /// `[policy]`: who may reach what (`auth.public_paths` are matched before its rules).
    pub policy: crate::policy::Policy,
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
const SECTIONS: [&str; 17] = [
    "server", "admin", "tls", "upstream", "jwt", "auth", "limits", "store", "redis", "login", "password", "log", "web",
    "session", "accounts", "oidc", "policy",
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
    /// Validate every section (each in its own module), in the order of the README's reference.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let server = server::validate(&self.server, self.tls.is_some())?;
        let admin_listen = admin::validate(&self.admin)?;
        let tls = tls::validate(self.tls.as_ref(), self.server.plaintext)?;
        let upstream = upstream::validate(&self.upstream, self.jwt.issuer.as_deref())?;
        let jwt = jwt::validate(self.jwt)?;
        let web = web::validate(&self.web, &self.session)?;
        let AuthConfig {
            api_paths,
            public_paths,
            identity_headers,
        } = auth::validate(&self.auth, &web.prefix)?;
        let policy = policy::validate(&self.policy, &api_paths, &public_paths)?;
        let idp = idp::validate(&self.oidc)?;
        if let Some(p) = &idp
            && jwt
                .keys
                .iter()
                .any(|k| matches!(&k.source, SecretSource::PrivatePem(path) if *path == p.signing_key))
        {
            return Err(ConfigError::invalid(
                "oidc.signing_key",
                format!("{} is also a [jwt] key", p.signing_key.display()),
                "give ID tokens a key of their own: a [jwt] key signs access tokens, and an ID token must never pass as one",
            ));
        }
        Ok(Config {
            server,
            admin_listen,
            tls,
            upstream,
            jwt,
            api_paths,
            public_paths,
            identity_headers,
            limits: limits::validate(&self.limits)?,
            store: store::validate(&self.store)?,
            redis: redis::validate(&self.redis)?,
            login: login::validate(&self.login)?,
            password: password::validate(&self.password)?,
            log: log::validate(&self.log)?,
            web,
            registration: accounts::validate(&self.accounts)?,
            local_sign_in: self.accounts.local_sign_in,
            oidc: oidc::validate(&self.oidc)?,
            idp,
            policy,
        })
    }
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
    fn the_api_prefix_and_backend_paths_are_checked() {
        let c = Config::from_toml_str(&base(
            "[auth]\napi_prefix = \"/gw/auth\"\nbackend_paths = [\"/gw/auth/callback\"]\n",
        ))
        .unwrap();
        assert_eq!(c.api_paths.prefix(), "/gw/auth");
        assert!(!c.api_paths.answers("/gw/auth/callback") && c.api_paths.answers("/gw/auth/login"));
        assert_eq!(
            Config::from_toml_str(&base("")).unwrap().api_paths.prefix(),
            "/api/auth"
        );
        // A backend path below the prefix may be public (RAG Modulo's discovery needs no credential);
        // `login/*` takes the login endpoint itself.
        Config::from_toml_str(&base(
            "[auth]\nbackend_paths = [\"/api/auth/login/*\"]\npublic_paths = [\"/api/auth/oidc-config\"]\n",
        ))
        .unwrap_err();
        Config::from_toml_str(&base(
            "[auth]\nbackend_paths = [\"/api/auth/oidc-config\"]\npublic_paths = [\"/api/auth/oidc-config\"]\n",
        ))
        .unwrap();
        for (auth, needles) in [
            (
                "api_prefix = \"gw/auth\"",
                &["auth.api_prefix", "not a clean absolute path"][..],
            ),
            ("api_prefix = \"/gw/auth/\"", &["auth.api_prefix", "clean"]),
            ("api_prefix = \"/gw/../auth\"", &["auth.api_prefix", "clean"]),
            ("api_prefix = \"/gw//auth\"", &["auth.api_prefix", "clean"]),
            ("api_prefix = \"/\"", &["auth.api_prefix", "clean"]),
            ("api_prefix = \"/_auth\"", &["auth.api_prefix", "web.prefix"]),
            ("api_prefix = \"/_auth/api\"", &["auth.api_prefix", "web.prefix"]),
            ("api_prefix = \"/.well-known\"", &["auth.api_prefix", "/.well-known"]),
            (
                "backend_paths = [\"/api/other\"]",
                &["auth.backend_paths", "below auth.api_prefix"],
            ),
            (
                "backend_paths = [\"/api/auth/login\"]",
                &[
                    "auth.backend_paths",
                    "endpoint /api/auth/login",
                    "auth.api_prefix",
                    "/gw/auth",
                ],
            ),
            (
                "backend_paths = [\"/api/auth/*\"]",
                &["auth.backend_paths", "endpoint /api/auth/register"],
            ),
            (
                "backend_paths = [\"/api/auth/tokens/x\"]",
                &["auth.backend_paths", "endpoint /api/auth/tokens/{id}"],
            ),
            (
                "api_prefix = \"/gw/auth\"\nbackend_paths = [\"/api/auth/callback\"]",
                &["auth.backend_paths", "below auth.api_prefix"],
            ),
            (
                "public_paths = [\"/api/auth/me\"]",
                &["auth.public_paths", "auth.backend_paths"],
            ),
        ] {
            let err = Config::from_toml_str(&base(&format!("[auth]\n{auth}\n")))
                .err()
                .unwrap_or_else(|| panic!("{auth} was accepted"))
                .to_string();
            for needle in needles {
                assert!(err.contains(needle), "{auth}: {needle} not in {err}");
            }
        }
        let err = Config::from_toml_str(&base("[web]\nprefix = \"/api/auth/pages\"\n"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("web.prefix"), "{err}");
    }

    #[test]
    fn the_rag_modulo_profile_needs_its_secret_and_no_other_assertion() {
        let secret = "rag-modulo-secret-rag-modulo-secret-0123";
        let c = Config::from_toml_str(&base(&format!(
            "[upstream]\nprofile = \"rag_modulo\"\n[upstream.rag_modulo]\njwt_secret = \"{secret}\"\n"
        )))
        .unwrap();
        match &c.upstream.profile {
            ProfileConfig::RagModulo(rm) => {
                assert_eq!(rm.jwt_secret.expose(), secret);
                assert_eq!(rm.ttl, Duration::from_secs(60));
                assert!(!format!("{c:?}").contains(secret), "Debug masks the secret");
            }
            other => panic!("profile not read: {other:?}"),
        }
        assert!(matches!(
            Config::from_toml_str(&base("")).unwrap().upstream.profile,
            ProfileConfig::Header
        ));
        for (upstream, needles) in [
            ("profile = \"ragdoll\"", &["upstream.profile", "ragflow"][..]),
            (
                "profile = \"rag_modulo\"",
                &["upstream.rag_modulo.jwt_secret", "is missing"],
            ),
            (
                "profile = \"rag_modulo\"\n[upstream.rag_modulo]\njwt_secret = \"short\"",
                &["upstream.rag_modulo.jwt_secret", "32 bytes"],
            ),
            (
                "profile = \"rag_modulo\"\n[upstream.rag_modulo]\njwt_secret = \"rag-modulo-secret-rag-modulo-secret-0123\"\nttl = \"1s\"",
                &["upstream.rag_modulo.ttl"],
            ),
            (
                "profile = \"rag_modulo\"\n[upstream.rag_modulo]\njwt_secret = \"rag-modulo-secret-rag-modulo-secret-0123\"\n[upstream.identity]\nmode = \"bearer\"\nalgorithm = \"ES256\"\nprivate_key = \"k.pem\"",
                &["upstream.identity", "rag_modulo"],
            ),
            (
                "[upstream.rag_modulo]\njwt_secret = \"rag-modulo-secret-rag-modulo-secret-0123\"",
                &["upstream.rag_modulo", "upstream.profile"],
            ),
        ] {
            let err = Config::from_toml_str(&base(&format!("[upstream]\n{upstream}\n")))
                .err()
                .unwrap_or_else(|| panic!("{upstream} was accepted"))
                .to_string();
            assert!(!err.contains("rag-modulo-secret"), "{err}");
            for needle in needles {
                assert!(err.contains(needle), "{upstream}: {needle} not in {err}");
            }
        }
    }

    #[test]
    fn the_ragflow_profile_needs_a_32_byte_base64_encryption_key() {
        // base64 of 32 bytes 0x01 and 0x02.
        let k1 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let k2 = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
        let c = Config::from_toml_str(&base(&format!(
            "[upstream]\nprofile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"{k1}\"\nprevious_keys = [\"{k2}\"]\n"
        )))
        .unwrap();
        match &c.upstream.profile {
            ProfileConfig::Ragflow(rf) => {
                assert_eq!(rf.key_encryption_key.0, [1; 32]);
                assert_eq!(rf.previous_keys.len(), 1);
                assert_eq!(rf.previous_keys[0].0, [2; 32]);
                assert_eq!(rf.cache_ttl, Duration::from_secs(10));
                let shown = format!("{c:?}");
                assert!(!shown.contains(k1) && !shown.contains("[1, 1"), "Debug masks the key");
            }
            other => panic!("profile not read: {other:?}"),
        }
        for (upstream, needles) in [
            (
                "profile = \"ragflow\"".to_owned(),
                &[
                    "upstream.ragflow.key_encryption_key",
                    "is missing",
                    "AUTHGATE_UPSTREAM__RAGFLOW__KEY_ENCRYPTION_KEY",
                ][..],
            ),
            (
                "profile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"not base64 at all!\"".to_owned(),
                &[
                    "upstream.ragflow.key_encryption_key",
                    "not base64",
                    "openssl rand -base64 32",
                ],
            ),
            (
                "profile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"c2hvcnQ=\"".to_owned(),
                &["upstream.ragflow.key_encryption_key", "5 bytes, not 32"],
            ),
            (
                format!(
                    "profile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"{k1}\"\nprevious_keys = [\"{k2}\", \"c2hvcnQ=\"]"
                ),
                &["upstream.ragflow.previous_keys", "entry 1"],
            ),
            (
                format!("profile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"{k1}\"\ncache_ttl = \"1h\""),
                &["upstream.ragflow.cache_ttl"],
            ),
            (
                format!("[upstream.ragflow]\nkey_encryption_key = \"{k1}\""),
                &["upstream.ragflow", "upstream.profile"],
            ),
        ] {
            let err = Config::from_toml_str(&base(&format!("[upstream]\n{upstream}\n")))
                .err()
                .unwrap_or_else(|| panic!("{upstream} was accepted"))
                .to_string();
            assert!(!err.contains(k1) && !err.contains("c2hvcnQ"), "{err}");
            for needle in needles {
                assert!(err.contains(needle), "{upstream}: {needle} not in {err}");
            }
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
