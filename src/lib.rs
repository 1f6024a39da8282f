//! authgate: a reverse-proxy authentication gateway.
//!
//! [`serve`] runs a gateway on listeners the caller has bound, so tests start one in-process on
//! 127.0.0.1:0 exactly as the binary does on its configured addresses.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::auth::jwt::{ClaimRules, SigningKey, Verifier, VerifyKey};
use crate::config::{Config, MIN_HS_SECRET_BYTES, Secret, SecretSource};
use crate::metrics::Metrics;
use crate::proxy::upstream::Upstream;

/// Why the gateway could not start. Each message names the setting involved.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Secret(String),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Everything a request needs, built once at start-up.
pub struct Gateway {
    pub config: Config,
    pub verifier: Verifier,
    pub signer: SigningKey,
    pub upstream: Upstream,
    pub metrics: Metrics,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `https` or `http`: what the client spoke, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    /// True while the main listener accepts connections.
    pub serving: AtomicBool,
    /// Connections and upgraded tunnels, drained on shutdown.
    pub tasks: TaskTracker,
}

impl Gateway {
    /// Prepare files (development certificate and secret), keys, TLS and the upstream client.
    pub fn build(config: Config) -> Result<Gateway, StartError> {
        let tls = match &config.tls {
            None => None,
            Some(t) => {
                if t.self_signed_if_missing && tls::ensure_self_signed(&t.cert, &t.key).map_err(StartError::Tls)? {
                    tracing::warn!(
                        cert = %t.cert.display(),
                        key = %t.key.display(),
                        "generated a self-signed development certificate; production must configure a real one"
                    );
                }
                Some(tls::server_config(&t.cert, &t.key).map_err(StartError::Tls)?)
            }
        };
        let secret = resolve_secret(&config.jwt.secret)?;
        let alg = config.jwt.algorithm;
        let verify_key = VerifyKey::hmac(None, alg, secret.expose().as_bytes()).map_err(StartError::Secret)?;
        let signer = SigningKey {
            kid: None,
            alg,
            key: jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
        };
        let verifier = Verifier::new(
            vec![verify_key],
            ClaimRules {
                issuer: config.jwt.issuer.clone(),
                audience: config.jwt.audience.clone(),
                leeway: config.jwt.leeway,
            },
        );
        let upstream = Upstream::new(&config.upstream).map_err(StartError::Upstream)?;
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        Ok(Gateway {
            config,
            verifier,
            signer,
            upstream,
            metrics: Metrics::new(),
            tls,
            scheme,
            serving: AtomicBool::new(false),
            tasks: TaskTracker::new(),
        })
    }
}

/// The HMAC secret: as configured, or (development) read from / generated into its file.
fn resolve_secret(source: &SecretSource) -> Result<Secret, StartError> {
    match source {
        SecretSource::Given(s) => Ok(s.clone()),
        SecretSource::GenerateInto(path) => read_or_generate_secret(path),
    }
}

fn read_or_generate_secret(path: &Path) -> Result<Secret, StartError> {
    use base64::Engine;
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StartError::Secret(format!("jwt.secret_file: cannot read {}: {e}", path.display())))?;
        let secret = text.trim().to_owned();
        if secret.len() < MIN_HS_SECRET_BYTES {
            return Err(StartError::Secret(format!(
                "jwt.secret_file: {} holds fewer than {MIN_HS_SECRET_BYTES} bytes; delete it to regenerate",
                path.display()
            )));
        }
        return Ok(Secret::new(secret));
    }
    let mut bytes = [0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StartError::Secret(format!("jwt.secret_file: cannot create {}: {e}", dir.display())))?;
    }
    tls::write_private(path, secret.as_bytes())
        .map_err(|e| StartError::Secret(format!("jwt.secret_file: cannot write {}: {e}", path.display())))?;
    tracing::warn!(
        path = %path.display(),
        "no JWT secret was set: generated a random one for development; production must set JWT_SECRET_KEY"
    );
    Ok(Secret::new(secret))
}

/// Run a gateway on bound listeners until `shutdown` resolves, then drain and return.
pub async fn serve(
    config: Config,
    main: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let gw = Arc::new(Gateway::build(config)?);
    serve_gateway(gw, main, admin, shutdown).await;
    Ok(())
}

/// Run an already built gateway (tests use this to reach its state).
pub async fn serve_gateway(
    gw: Arc<Gateway>,
    main: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let admin_stop = tokio_util::sync::CancellationToken::new();
    let admin_task = tokio::spawn(admin::run(gw.clone(), admin, admin_stop.clone().cancelled_owned()));
    server::run(gw, main, shutdown).await;
    admin_stop.cancel();
    let _ = admin_task.await;
}
