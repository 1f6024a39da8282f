//! authgate: a reverse-proxy authentication gateway.
//!
//! [`serve`] runs a gateway on listeners the caller has bound, so tests start one in-process on
//! 127.0.0.1:0 exactly as the binary does on its configured addresses.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod metrics;
pub mod proxy;
pub mod replicas;
pub mod routes;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upgrade;
pub mod username;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::auth::jwt::{SigningKey, Verifier};
use crate::auth::limiter::LoginLimiter;
use crate::auth::password::Passwords;
use crate::auth::revocation::Revocations;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::upstream::Upstream;
use crate::store::{Store, StoreError};

/// Why the gateway could not start. Each message names the setting involved.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Keys(#[from] auth::keys::KeyError),
    #[error(transparent)]
    Identity(#[from] proxy::identity::AssertionKeyError),
    #[error(transparent)]
    Upstream(#[from] proxy::upstream::UpstreamError),
    #[error(
        "store.url: {0}. Fix: check that the database store.url names is running and reachable, and that the \
         credentials in the URL are right"
    )]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] store::cache::RedisUrlError),
    #[error(transparent)]
    Passwords(#[from] auth::password::PoolError),
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
    /// The JWKS document served at `/.well-known/jwks.json`.
    pub jwks: bytes::Bytes,
    pub upstream: Upstream,
    pub metrics: Metrics,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The serving certificate, reloaded when its files change.
    pub certs: Option<Arc<tls::CertStore>>,
    /// `https` or `http`: what the client spoke, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    /// True while the main listener accepts connections.
    pub serving: AtomicBool,
    /// The main listener's bound port (HTTPS redirects point here).
    pub listen_port: std::sync::atomic::AtomicU16,
    /// Connections and upgraded tunnels, drained on shutdown.
    pub tasks: TaskTracker,
    pub store: Store,
    pub passwords: Passwords,
    pub revocations: Revocations,
    pub limiter: LoginLimiter,
    /// Access tokens already verified (signature and claims), by token.
    pub verified: auth::VerifiedCache,
    /// Resolved API tokens, by hash.
    pub api_tokens: auth::api_token::TokenCache,
    /// Token ids whose `last_used_at` is due; written by a background task.
    pub touch_queue: tokio::sync::mpsc::Sender<String>,
    touch_rx: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
    /// Signs the identity assertion for the backend, when `[upstream.identity]` is set.
    pub identity: Option<proxy::identity::Asserter>,
    /// The shared cache and revocation bus, when `redis.url` is set.
    pub redis: Option<store::cache::Redis>,
    /// Normalised usernames being registered on this replica right now.
    pub registering: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Gateway {
    /// Prepare files (development certificate and secret), keys, TLS and the upstream client.
    pub async fn build(config: Config) -> Result<Gateway, StartError> {
        let (tls, certs) = match &config.tls {
            None => (None, None),
            Some(t) => {
                if t.self_signed_if_missing && tls::ensure_self_signed(&t.cert, &t.key)? {
                    tracing::warn!(
                        cert = %t.cert.display(),
                        key = %t.key.display(),
                        "generated a self-signed development certificate; production must configure a real one"
                    );
                }
                let store = tls::CertStore::load(&t.cert, &t.key)?;
                (Some(tls::config_for(store.clone())?), Some(store))
            }
        };
        let mut keys = auth::keys::load(&config.jwt)?;
        let identity = match &config.upstream.identity {
            Some(cfg) => {
                let asserter = proxy::identity::Asserter::load(cfg)?;
                keys.jwks = auth::keys::with_jwk(&keys.jwks, asserter.jwk.clone())?;
                Some(asserter)
            }
            None => None,
        };
        let upstream = Upstream::new(&config.upstream)?;
        let store = Store::connect(config.store.url.expose()).await?;
        let passwords = Passwords::with_pool(
            config.password.params,
            config.password.hash_concurrency,
            config.password.hash_niceness,
        )?;
        let revocations = Revocations::new();
        sync_revocations(&store, &revocations, config.jwt.leeway).await?;
        let limiter = LoginLimiter::new(config.login);
        let (touch_queue, touch_rx) = tokio::sync::mpsc::channel(4096);
        // Without Redis nothing tells this replica about deletions elsewhere: keep entries briefly.
        let token_ttl = config
            .redis
            .as_ref()
            .map_or(std::time::Duration::from_secs(60), |r| r.token_ttl);
        let api_tokens = auth::api_token::TokenCache::new(token_ttl, 100_000);
        let redis = match &config.redis {
            Some(r) => Some(store::cache::Redis::new(r.url.expose(), r.timeout, r.token_ttl)?),
            None => None,
        };
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let config_listen_port = config.server.listen.port();
        let config_leeway = config.jwt.leeway;
        Ok(Gateway {
            config,
            verifier: keys.verifier,
            signer: keys.signer,
            jwks: keys.jwks,
            upstream,
            metrics: Metrics::new(),
            tls,
            certs,
            scheme,
            serving: AtomicBool::new(false),
            listen_port: std::sync::atomic::AtomicU16::new(config_listen_port),
            tasks: TaskTracker::new(),
            store,
            passwords,
            revocations,
            limiter,
            api_tokens,
            verified: auth::VerifiedCache::new(10_000, config_leeway),
            redis,
            identity,
            registering: std::sync::Mutex::new(std::collections::HashSet::new()),
            touch_queue,
            touch_rx: std::sync::Mutex::new(Some(touch_rx)),
        })
    }
}

/// Run a gateway on bound listeners until `shutdown` resolves, then drain and return.
pub async fn serve(
    config: Config,
    main: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let gw = Arc::new(Gateway::build(config).await?);
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
    let stop = tokio_util::sync::CancellationToken::new();
    let admin_task = tokio::spawn(admin::run(gw.clone(), admin, stop.clone().cancelled_owned()));
    let sync_task = tokio::spawn(maintain(gw.clone(), stop.clone()));
    let bus_task = tokio::spawn(replicas::run_bus(gw.clone(), stop.clone()));
    let cert_task = tokio::spawn(watch_certificates(gw.clone(), stop.clone()));
    let touch_rx = gw.touch_rx.lock().ok().and_then(|mut rx| rx.take());
    let touch_task = touch_rx.map(|rx| tokio::spawn(record_token_use(gw.clone(), rx)));
    server::run(gw, main, shutdown).await;
    stop.cancel();
    let _ = admin_task.await;
    let _ = sync_task.await;
    let _ = bus_task.await;
    let _ = cert_task.await;
    if let Some(t) = touch_task {
        t.abort();
    }
}

/// Swap in replaced certificate files for new handshakes; a broken pair keeps the old one serving.
async fn watch_certificates(gw: Arc<Gateway>, stop: tokio_util::sync::CancellationToken) {
    let (Some(store), Some(t)) = (gw.certs.clone(), gw.config.tls.as_ref()) else {
        return;
    };
    let mut tick = tokio::time::interval(t.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let checked = store.clone();
        match tokio::task::spawn_blocking(move || checked.reload_if_changed()).await {
            Ok(Ok(true)) => tracing::info!(cert = %t.cert.display(), "certificate reloaded"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "new certificate pair rejected; still serving the previous one"),
            Err(_) => {}
        }
    }
}

/// Write `last_used_at` for API tokens, off the request path.
async fn record_token_use(gw: Arc<Gateway>, mut rx: tokio::sync::mpsc::Receiver<String>) {
    while let Some(id) = rx.recv().await {
        if let Err(e) = gw.store.touch_api_token(&id, auth::jwt::now_secs() as i64).await {
            tracing::debug!(error = %e, "last_used_at not recorded");
        }
    }
}

/// The `exp` before which a revocation can be forgotten: it is kept until its token could no longer
/// pass verification, `exp` plus the leeway.
fn revocation_cutoff(leeway: std::time::Duration) -> u64 {
    auth::jwt::now_secs().saturating_sub(leeway.as_secs())
}

/// Load revocations and user gates from the store into memory.
pub(crate) async fn sync_revocations(
    store: &Store,
    revocations: &Revocations,
    leeway: std::time::Duration,
) -> Result<(), StoreError> {
    let generation = revocations.generation();
    let jtis = store.revoked_jtis(revocation_cutoff(leeway) as i64).await?;
    let users = store.user_gates().await?;
    let jtis = jtis
        .into_iter()
        .map(|(jti, exp)| (jti, u64::try_from(exp).unwrap_or(0)))
        .collect();
    revocations.replace(generation, jtis, users);
    Ok(())
}

/// Periodic upkeep: re-sync revocations from the store (changes made by other replicas or the
/// CLI), purge what has expired, sweep the login limiter.
async fn maintain(gw: Arc<Gateway>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(gw.config.store.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = std::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sync_revocations(&gw.store, &gw.revocations, gw.config.jwt.leeway).await {
            tracing::warn!(error = %e, "revocation sync from the store failed; keeping the last state");
        }
        if last_purge.elapsed() > std::time::Duration::from_secs(600) {
            last_purge = std::time::Instant::now();
            let cutoff = revocation_cutoff(gw.config.jwt.leeway);
            gw.revocations.purge(cutoff);
            gw.limiter.sweep();
            if let Err(e) = gw.store.purge_expired(cutoff as i64).await {
                tracing::warn!(error = %e, "purging expired revocations failed");
            }
        }
    }
}
