//! The assembled gateway: built once from a validated config, then served on bound listeners.
//!
//! The rule this module keeps: this is the only place that sees every part. It builds the
//! [`Authenticator`], the [`Accounts`] service, the pipeline and the listeners' views, hands each
//! part only what it needs, and runs them. [`Gateway::serve`] is the one start path: the binary
//! (`main.rs`) and the tests both use it, so both get the banner, the redirect listener, the
//! background tasks, and a drain of every listener on shutdown.

mod background;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::{Accounts, Changes};
use crate::admin::Admin;
use crate::api::{Api, Sessions};
use crate::auth::limiter::LoginLimits;
use crate::auth::password::Passwords;
use crate::auth::{Authenticator, AuthenticatorParts};
use crate::config::{AssertionMode, Config};
use crate::metrics::Metrics;
use crate::proxy::identity::IdentityStep;
use crate::proxy::upstream::Upstream;
use crate::proxy::{Proxy, Settings};
use crate::server::{Front, Redirect, Status};
use crate::store::cache::Redis;
use crate::store::{Store, StoreKind};
use crate::tls::CertStore;

/// Why the gateway could not start. Each message names the setting involved, and most say how to
/// fix it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Keys(#[from] crate::auth::keys::KeyError),
    #[error(transparent)]
    Identity(#[from] crate::proxy::assertion::AssertionKeyError),
    #[error(transparent)]
    Upstream(#[from] crate::proxy::upstream::UpstreamError),
    #[error(
        "store.url: {0}. Fix: check that the database store.url names is running and reachable, and that the \
         credentials in the URL are right"
    )]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Redis(#[from] crate::store::cache::RedisUrlError),
    #[error(transparent)]
    Passwords(#[from] crate::auth::password::PoolError),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The sockets a gateway serves on, bound by the caller: the binary binds the configured
/// addresses ([`Listeners::bind`]), tests bind 127.0.0.1:0.
pub struct Listeners {
    pub main: TcpListener,
    pub admin: TcpListener,
    /// `server.redirect_http`: plain HTTP, answered with a redirect to HTTPS.
    pub redirect: Option<TcpListener>,
}

impl Listeners {
    /// Bind `server.listen`, `admin.listen` and, when set, `server.redirect_http`.
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { key, addr, source })
        }
        Ok(Listeners {
            main: bind("server.listen", config.server.listen).await?,
            admin: bind("admin.listen", config.admin_listen).await?,
            redirect: match config.server.redirect_http {
                Some(addr) => Some(bind("server.redirect_http", addr).await?),
                None => None,
            },
        })
    }
}

/// Everything a running gateway is made of.
pub struct Gateway {
    config: Config,
    front: Arc<Front>,
    admin: Arc<Admin>,
    redirect: Arc<Redirect>,
    authn: Arc<Authenticator>,
    accounts: Arc<Accounts>,
    certs: Option<Arc<CertStore>>,
    redis: Option<Arc<Redis>>,
    store: Store,
    /// Single sign-on providers, loaded in the background when serving starts.
    oidc: Arc<crate::oidc::Providers>,
    metrics: Arc<Metrics>,
    /// API-token uses to record; taken by the background writer when serving starts.
    touched: Mutex<Option<tokio::sync::mpsc::Receiver<crate::auth::Touch>>>,
}

impl Gateway {
    /// Prepare files (development certificate and secret), keys, TLS, the store, the upstream
    /// client, and every part built from them.
    pub async fn build(config: Config) -> Result<Gateway, StartError> {
        let (tls, certs) = match &config.tls {
            None => (None, None),
            Some(t) => {
                if t.self_signed_if_missing && crate::tls::ensure_self_signed(&t.cert, &t.key)? {
                    tracing::warn!(
                        cert = %t.cert.display(),
                        key = %t.key.display(),
                        "generated a self-signed development certificate; production must configure a real one"
                    );
                }
                let store = CertStore::load(&t.cert, &t.key)?;
                (Some(crate::tls::config_for(store.clone())?), Some(store))
            }
        };
        let mut keys = crate::auth::keys::load(&config.jwt)?;
        let asserter = match &config.upstream.identity {
            Some(cfg) => {
                let asserter = crate::proxy::assertion::Asserter::load(cfg)?;
                keys.jwks = crate::auth::keys::with_jwk(&keys.jwks, asserter.jwk.clone())?;
                Some(asserter)
            }
            None => None,
        };
        let idp = match &config.idp {
            Some(cfg) => {
                let idp = crate::idp::Idp::load(cfg, &config.web.prefix)?;
                if keys.jwks_has(&idp.jwk) {
                    return Err(crate::auth::keys::KeyError::SharedIdpKey.into());
                }
                keys.jwks = crate::auth::keys::with_jwk(&keys.jwks, idp.jwk.clone())?;
                Some(Arc::new(idp))
            }
            None => None,
        };
        let upstream = Arc::new(Upstream::new(&config.upstream)?);
        let store = Store::connect(config.store.url.expose()).await?;
        let passwords = Passwords::with_pool(
            config.password.params,
            config.password.hash_concurrency,
            config.password.hash_niceness,
        )?;
        let redis = match &config.redis {
            Some(r) => Some(Arc::new(Redis::new(r.url.expose(), r.timeout, r.token_ttl)?)),
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let oidc = Arc::new(crate::oidc::Providers::new(&config.oidc));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (authn, touched) = Authenticator::new(AuthenticatorParts {
            verifier: keys.verifier,
            store: store.clone(),
            redis: redis.clone(),
            metrics: metrics.clone(),
            leeway: config.jwt.leeway,
            // Without Redis nothing tells this replica about deletions elsewhere: keep entries briefly.
            token_ttl: config.redis.as_ref().map_or(Duration::from_secs(60), |r| r.token_ttl),
            token_lifetime: config.jwt.expiration,
            session_idle: config.web.idle_timeout,
            scheme,
            oidc: oidc.clone(),
        });
        let authn = Arc::new(authn);
        let loaded = authn.sync().await?;
        let (revoked, gated) = authn.held();
        tracing::info!(rows = loaded.rows, revoked, gated, "revocation state loaded");
        let accounts = Arc::new(Accounts::new(
            store.clone(),
            passwords,
            LoginLimits::new(config.login, redis.clone()),
            Changes::new(Some(authn.clone()), redis.clone()),
        ));
        let status = Arc::new(Status::default());
        status
            .listen_port
            .store(config.server.listen.port(), std::sync::atomic::Ordering::SeqCst);
        let proxy = Arc::new(Proxy {
            authn: authn.clone(),
            api: Api {
                accounts: accounts.clone(),
                authn: authn.clone(),
                sessions: Sessions {
                    signer: keys.signer,
                    expiration: config.jwt.expiration,
                    issuer: config.jwt.issuer.clone().unwrap_or_else(|| "authgate".to_owned()),
                    audience: config.jwt.audience.clone(),
                },
                registration: config.registration,
                prefix: config.api_paths.prefix().into(),
            },
            web: crate::web::Web::new(
                accounts.clone(),
                authn.clone(),
                config.web.clone(),
                config.registration,
                scheme,
                config.limits.body_idle_timeout,
            )
            .with_sso(oidc.clone(), config.local_sign_in)
            .with_idp(idp),
            identity: IdentityStep::new(
                asserter,
                crate::proxy::profiles::Profile::new(&config.upstream.profile),
                store.clone(),
            ),
            upstream: upstream.clone(),
            authz: crate::proxy::authorize::Authorizer::new(config.policy.clone(), &metrics),
            metrics: metrics.clone(),
            settings: Settings {
                api_paths: config.api_paths.clone(),
                public_paths: config.public_paths.clone(),
                limits: config.limits,
                trusted_proxies: config.server.trusted_proxies.clone(),
                identity_headers: config.identity_headers.clone(),
                hsts: config.server.hsts.clone().filter(|_| tls.is_some()),
                scheme,
            },
            jwks: keys.jwks,
            tasks: TaskTracker::new(),
        });
        Ok(Gateway {
            front: Arc::new(Front {
                proxy,
                server: config.server.clone(),
                max_connections: config.limits.max_connections,
                tls,
                status: status.clone(),
            }),
            admin: Arc::new(Admin {
                status: status.clone(),
                upstream,
                store: store.clone(),
                redis: redis.clone(),
                metrics: metrics.clone(),
                oidc: oidc.clone(),
            }),
            redirect: Arc::new(Redirect {
                public_host: config.server.public_host.clone(),
                https_port: config.server.redirect_https_port,
                status,
                certs: certs.clone(),
            }),
            authn,
            accounts,
            certs,
            redis,
            store,
            touched: Mutex::new(Some(touched)),
            oidc,
            metrics,
            config,
        })
    }

    /// The account service (tests create users and read state through it).
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The store this gateway serves from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serve on `listeners` until `shutdown` resolves, then drain every listener and stop the
    /// background tasks, all within `server.shutdown_grace`: the main listener drains first while
    /// the admin listener still answers (`/readyz` says not ready), then the admin and redirect
    /// listeners get what is left of the grace.
    pub async fn serve(self: Arc<Self>, listeners: Listeners, shutdown: impl Future<Output = ()> + Send + 'static) {
        self.banner(&listeners);
        let grace = self.config.server.shutdown_grace;
        let (drain, left) = tokio::sync::watch::channel(None::<Duration>);
        let mut listening = vec![tokio::spawn(crate::admin::run(
            self.admin.clone(),
            listeners.admin,
            drain_budget(left.clone()),
        ))];
        if let Some(listener) = listeners.redirect {
            listening.push(tokio::spawn(crate::server::run_redirect(
                self.redirect.clone(),
                listener,
                drain_budget(left),
            )));
        }
        let stop = CancellationToken::new();
        let background = background::start(&self, &stop);
        let began = Arc::new(std::sync::OnceLock::new());
        let marked = began.clone();
        let shutdown = async move {
            shutdown.await;
            let _ = marked.set(std::time::Instant::now());
        };
        crate::server::run(self.front.clone(), listeners.main, shutdown).await;
        let spent = began.get().map_or(Duration::ZERO, |t: &std::time::Instant| t.elapsed());
        let _ = drain.send(Some(grace.saturating_sub(spent)));
        stop.cancel();
        for task in listening.into_iter().chain(background) {
            let _ = task.await;
        }
    }

    /// One line that says what this gateway is: its listeners, mode, upstream, store and cache.
    fn banner(&self, listeners: &Listeners) {
        let config = &self.config;
        let addr = |l: &TcpListener, configured: SocketAddr| l.local_addr().unwrap_or(configured);
        tracing::info!(
            listen = %addr(&listeners.main, config.server.listen),
            admin = %addr(&listeners.admin, config.admin_listen),
            redirect = listeners.redirect.as_ref().and_then(|l| l.local_addr().ok()).map(tracing::field::display),
            mode = if config.tls.is_some() { "https" } else { "plaintext" },
            upstream = %format_args!("{}://{}", config.upstream.scheme, config.upstream.authority),
            store = match self.store.kind() {
                StoreKind::Sqlite => "sqlite",
                StoreKind::Postgres => "postgres",
            },
            cache = if self.redis.is_some() { "redis (shared by replicas)" } else { "in-process only" },
            identity_assertion = self.front.proxy.identity.assertion_mode().map_or("off", |m| match m {
                AssertionMode::Header => "X-Auth-Assertion",
                AssertionMode::Bearer => "Authorization: Bearer",
            }),
            profile = self.front.proxy.identity.profile(),
            "authgate starting"
        );
    }
}

/// Resolves with the drain budget once the main listener has drained.
async fn drain_budget(mut left: tokio::sync::watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(budget) = *left.borrow_and_update() {
            return budget;
        }
        if left.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// Build a gateway from `config`, bind its configured addresses, and serve until `shutdown`.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
    let gateway = Arc::new(Gateway::build(config).await?);
    let listeners = Listeners::bind(&gateway.config).await?;
    gateway.serve(listeners, shutdown).await;
    Ok(())
}
