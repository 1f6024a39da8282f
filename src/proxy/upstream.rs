//! The pooled connections to the backend: HTTP/1.1, over rustls for an `https://` upstream.
//!
//! The rule this module keeps: every wait on the backend is bounded. Connecting is bounded by
//! `upstream.connect_timeout` (then 502) and the response head by `upstream.response_header_timeout`
//! (then 504); bodies then stream for as long as both ends keep them moving.
//!
//! The pool is a stack of idle hyper HTTP/1.1 connections (`hyper::client::conn::http1`). A
//! connection is lent to one request and comes back when its response body has ended cleanly,
//! carried back by the body itself ([`UpstreamBody`]); one that ended any other way is dropped,
//! which closes it. A connection that turns out to be closed when it is reused gets the request
//! again on a fresh one, as long as no byte of it was sent. A task closes connections left idle
//! longer than `upstream.pool_idle_timeout`, whether or not traffic comes.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{HeaderValue, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::UpstreamConfig;
use crate::error::GatewayError;

pub use crate::body::ForwardBody;

type Sender = SendRequest<ForwardBody>;

/// Why the upstream client could not be built. Each message names the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream.url: unusable host {0}. Fix: write it as http://HOST:PORT or https://HOST:PORT")]
    Host(String),
    #[error(
        "upstream.url: {host} is not a TLS server name: {source}. Fix: use the DNS name or IP address the backend's certificate names"
    )]
    ServerName {
        host: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("upstream.ca_cert: cannot read {}: {source}. Fix: point it at a readable PEM file of CA certificates", path.display())]
    ReadCa {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("upstream.ca_cert: bad PEM in {}: {source}. Fix: give PEM CA certificates only", path.display())]
    BadCa {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("upstream.ca_cert: unusable certificate in {}: {source}. Fix: give CA certificates only", path.display())]
    UnusableCa { path: PathBuf, source: rustls::Error },
    #[error("upstream TLS: {0}")]
    Tls(rustls::Error),
}

pub struct Upstream {
    config: UpstreamConfig,
    /// `host` without brackets, and the port, for connecting.
    host: String,
    port: u16,
    /// The `Host` header sent upstream: the authority, without a default port.
    host_header: HeaderValue,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    pool: Arc<Pool>,
}

struct Pool {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let https = config.scheme == Scheme::HTTPS;
        let default_port = if https { 443 } else { 80 };
        let port = config.authority.port_u16().unwrap_or(default_port);
        let host = config
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let host_header = match config.authority.port_u16() {
            Some(p) if p != default_port => format!("{}:{p}", config.authority.host()),
            _ => config.authority.host().to_owned(),
        };
        let host_header = HeaderValue::from_str(&host_header).map_err(|_| UpstreamError::Host(host_header))?;
        let tls = if https {
            let name = ServerName::try_from(host.clone()).map_err(|source| UpstreamError::ServerName {
                host: host.clone(),
                source,
            })?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(client_tls(config)?)), name))
        } else {
            None
        };
        let pool = Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            max_idle: config.pool_max_idle_per_host,
            idle_timeout: config.pool_idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap_idle(Arc::downgrade(&pool)));
        }
        Ok(Upstream {
            config: config.clone(),
            host,
            port,
            host_header,
            tls,
            pool,
        })
    }

    /// The request target sent to the backend: origin-form (checked by `routes::check_path`).
    pub fn uri(&self, path_and_query: PathAndQuery) -> Result<Uri, GatewayError> {
        Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(path_and_query);
            parts
        })
        .map_err(|_| GatewayError::InvalidRequest("Invalid request target"))
    }

    /// Send a request and wait (bounded) for the response head.
    pub async fn send(&self, mut req: Request<ForwardBody>) -> Result<Response<UpstreamBody>, GatewayError> {
        req.headers_mut().insert(header::HOST, self.host_header.clone());
        match tokio::time::timeout(self.config.response_header_timeout, self.exchange(req)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(result) => result,
        }
    }

    async fn exchange(&self, mut req: Request<ForwardBody>) -> Result<Response<UpstreamBody>, GatewayError> {
        loop {
            let (mut sender, reused) = match self.pool.checkout() {
                Some(sender) => (sender, true),
                // Boxed: connecting is rare, and its future (TCP, TLS) large.
                None => (Box::pin(self.connect()).await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                tracing::warn!("upstream connection closed before its first request");
                return Err(GatewayError::UpstreamUnreachable);
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Some((sender, self.pool.clone()));
                    return Ok(resp.map(|inner| UpstreamBody { inner, lease }));
                }
                Err(mut e) => match e.take_message() {
                    // Not a byte of it was sent: a pooled connection the backend had closed.
                    Some(again) if reused => req = again,
                    _ => {
                        tracing::warn!(error = %e.into_error(), "upstream request failed");
                        return Err(GatewayError::UpstreamUnreachable);
                    }
                },
            }
        }
    }

    /// A new connection (TCP, then TLS for `https://`), bounded by `upstream.connect_timeout`.
    async fn connect(&self) -> Result<Sender, GatewayError> {
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, connect = true, "upstream {what} failed");
            GatewayError::UpstreamUnreachable
        };
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| unreachable("connect", &e))?;
            let _ = tcp.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
            match &self.tls {
                None => handshake(tcp).await,
                Some((connector, name)) => {
                    let tls = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| unreachable("TLS handshake", &e))?;
                    handshake(tls).await
                }
            }
        };
        match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Err(_) => Err(unreachable("connect", &"timed out")),
            Ok(result) => result,
        }
    }

    /// Whether a TCP connection to the backend can be opened now (for `/readyz`).
    pub async fn reachable(&self) -> bool {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        matches!(
            tokio::time::timeout(self.config.connect_timeout.min(Duration::from_secs(2)), connect).await,
            Ok(Ok(_))
        )
    }
}

async fn handshake<I>(io: I) -> Result<Sender, GatewayError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(io)).await.map_err(|e| {
        tracing::warn!(error = %e, "upstream HTTP/1.1 handshake failed");
        GatewayError::UpstreamUnreachable
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

fn client_tls(config: &UpstreamConfig) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.ca_cert {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path).map_err(|source| UpstreamError::ReadCa {
            path: path.clone(),
            source,
        })?;
        for cert in certs {
            let cert = cert.map_err(|source| UpstreamError::BadCa {
                path: path.clone(),
                source,
            })?;
            roots.add(cert).map_err(|source| UpstreamError::UnusableCa {
                path: path.clone(),
                source,
            })?;
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(UpstreamError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

impl Pool {
    /// The most recently used idle connection still open, if any. (No lock is held across an await.)
    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Take a connection back once it can carry a new request. One still finishing its exchange
    /// (say, a request body the backend answered before reading) waits for that in a task of its
    /// own, so no request ever waits on another's upload.
    fn checkin(self: Arc<Self>, mut sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if !sender.is_ready() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if sender.ready().await.is_ok() {
                        self.put(sender);
                    }
                });
            }
            return;
        }
        self.put(sender);
    }

    fn put(&self, sender: Sender) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // The oldest are at the bottom: let those idle too long go (dropping closes them).
        let stale = idle
            .iter()
            .take_while(|e| now.duration_since(e.since) >= self.idle_timeout)
            .count();
        idle.drain(..stale);
        if idle.len() < self.max_idle {
            idle.push(Idle { sender, since: now });
        }
    }

    /// Close the connections idle too long, and forget those the backend closed.
    fn reap(&self) {
        let now = Instant::now();
        let gone: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let (keep, gone) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|e| !e.sender.is_closed() && now.duration_since(e.since) < self.idle_timeout);
            *idle = keep;
            gone
        };
        // Dropped, and so closed, outside the lock.
        drop(gone);
    }
}

/// Reap the pool every half idle timeout (at least every 100 ms), so a burst's connections do not
/// stay open on the backend once traffic stops. Ends with the pool.
async fn reap_idle(pool: std::sync::Weak<Pool>) {
    let Some(period) = pool
        .upgrade()
        .map(|p| (p.idle_timeout / 2).max(Duration::from_millis(100)))
    else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.reap(),
            None => return,
        }
    }
}

/// A backend response body. When it ends cleanly its connection goes back to the pool; dropped
/// before its end, the connection is closed (hyper cannot reuse it).
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<(Sender, Arc<Pool>)>,
}

impl UpstreamBody {
    /// The connection is the client's now (101 Switching Protocols): it never goes back.
    pub fn keep_connection(&mut self) {
        self.lease = None;
    }

    fn give_back(&mut self) {
        if let Some((sender, pool)) = self.lease.take() {
            pool.checkin(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304) may never be polled.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(url: &str) -> UpstreamConfig {
        let uri: Uri = url.parse().unwrap();
        UpstreamConfig {
            scheme: uri.scheme().unwrap().clone(),
            authority: uri.authority().unwrap().clone(),
            connect_timeout: Duration::from_secs(1),
            response_header_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(1),
            pool_max_idle_per_host: 4,
            ca_cert: None,
            identity: None,
            profile: crate::config::ProfileConfig::Header,
        }
    }

    #[test]
    fn host_header_and_connect_address_follow_the_upstream_url() {
        for (url, host_header, host, port) in [
            ("http://backend", "backend", "backend", 80),
            ("http://backend:80", "backend", "backend", 80),
            ("http://backend:8000", "backend:8000", "backend", 8000),
            ("https://api.example:443", "api.example", "api.example", 443),
            ("https://[::1]:8443", "[::1]:8443", "::1", 8443),
            ("http://127.0.0.1:9", "127.0.0.1:9", "127.0.0.1", 9),
        ] {
            let up = Upstream::new(&config(url)).unwrap();
            assert_eq!(up.host_header, host_header, "{url}");
            assert_eq!((up.host.as_str(), up.port), (host, port), "{url}");
            assert_eq!(up.tls.is_some(), url.starts_with("https"), "{url}");
        }
    }

    #[test]
    fn the_backend_gets_an_origin_form_target() {
        let up = Upstream::new(&config("http://backend:8000")).unwrap();
        let uri = up.uri(PathAndQuery::from_static("/api/search?q=1")).unwrap();
        assert_eq!(uri.to_string(), "/api/search?q=1");
        assert!(uri.scheme().is_none() && uri.authority().is_none());
    }
}
