//! The main listener: accept, TLS handshake with a timeout, HTTP/1.1 or HTTP/2 through hyper, and
//! a graceful drain on shutdown.
//!
//! The rule this module keeps: every connection is tracked, so shutdown stops accepting, tells each
//! connection to finish its in-flight requests (streams and upgraded tunnels included), and waits
//! for them for at most `server.shutdown_grace`. The admin and redirect listeners ([`serve_plain`])
//! keep answering while the main listener drains (`/readyz` then says not ready), and their own
//! connections get what is left of the same grace, so the whole gateway stops within it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::error::GatewayError;
use crate::proxy::{GatewayBody, Peer, Proxy};

pub mod redirect;
mod watch;

pub use redirect::{Redirect, run_redirect};

use watch::{Tracked, Watch, Watched};

/// The watcher's framing step, for the fuzzer only (`fuzz/src/watch_framing.rs`).
#[doc(hidden)]
pub use watch::fuzz_feed;

/// hyper's HTTP/1.1 server and hyper-util's auto server have the same setters but no common trait.
macro_rules! http1_settings {
    ($builder:expr, $s:expr) => {
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout($s.header_read_timeout)
            .max_buf_size($s.max_header_bytes.max(8192))
            .keep_alive(true)
    };
}

/// Likewise for HTTP/2.
macro_rules! http2_settings {
    ($builder:expr, $s:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_concurrent_streams($s.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from($s.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(Some(50))
            .max_local_error_reset_streams(Some(256))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
    };
}

/// The HTTP servers a connection is handed to, all with the same settings: over TLS, hyper's
/// HTTP/1.1 or HTTP/2 server, as ALPN chose; in cleartext, hyper-util's auto server, which reads
/// the first bytes to tell. (A connection served by the auto server keeps room for both.)
pub struct Http {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
}

impl Http {
    pub fn new(s: &ServerConfig) -> Http {
        let mut h1 = http1::Builder::new();
        http1_settings!(h1, s);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        http2_settings!(h2, s);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        http1_settings!(auto.http1(), s);
        http2_settings!(auto.http2(), s);
        Http { h1, h2, auto }
    }
}

/// What the main listener reports to the admin and redirect listeners.
#[derive(Debug, Default)]
pub struct Status {
    /// True while the main listener accepts connections.
    pub serving: AtomicBool,
    /// The main listener's bound port (HTTPS redirects point here).
    pub listen_port: AtomicU16,
}

/// What the main listener works with: the pipeline, TLS, and its connection settings.
pub struct Front {
    pub proxy: Arc<Proxy>,
    pub server: ServerConfig,
    /// `limits.max_connections`.
    pub max_connections: usize,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub status: Arc<Status>,
}

/// Accept connections until `shutdown` resolves, then drain.
pub async fn run(front: Arc<Front>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let cancel = CancellationToken::new();
    let http = Arc::new(Http::new(&front.server));
    let acceptor = front.tls.clone().map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        front.status.listen_port.store(addr.port(), Ordering::SeqCst);
    }
    front.status.serving.store(true, Ordering::SeqCst);
    let slots = Arc::new(tokio::sync::Semaphore::new(front.max_connections));
    let tasks = front.proxy.tasks.clone();

    loop {
        // At the connection limit, stop accepting: further clients wait in the kernel's queue.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // On a dual-stack listener an IPv4 client arrives as ::ffff:a.b.c.d. It is a.b.c.d to
        // trusted_proxies, the limits, X-Forwarded-For and the logs.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let front = front.clone();
        let http = http.clone();
        let acceptor = acceptor.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let _permit = permit;
            front.proxy.metrics.open_connections.inc();
            connection(&front, &http, acceptor, stream, peer, &cancel).await;
            front.proxy.metrics.open_connections.dec();
        });
    }

    front.status.serving.store(false, Ordering::SeqCst);
    drop(listener);
    let grace = front.server.shutdown_grace;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: no new connections, draining"
    );
    cancel.cancel();
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(open = tasks.len(), "shutdown grace elapsed with connections still open");
    } else {
        tracing::info!("drained");
    }
}

/// One client connection, from the TLS handshake to its close.
///
/// The connection is built here, not in a helper `async fn` taking the stream: an `async fn` keeps
/// its arguments for its whole life, so the TLS stream (1.2 KiB) would be held twice.
async fn connection(
    front: &Arc<Front>,
    http: &Http,
    acceptor: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    cancel: &CancellationToken,
) {
    let Some(acceptor) = acceptor else {
        // Cleartext: HTTP/1.1, or HTTP/2 with prior knowledge; the auto server tells them apart.
        let (io, handler, watch) = attach(front, stream, peer);
        let mut conn = Box::pin(http.auto.serve_connection_with_upgrades(io, handler));
        return drive(front, conn.as_mut(), |c| c.graceful_shutdown(), &watch, peer, cancel).await;
    };
    let started = Instant::now();
    let timeout = front.server.tls_handshake_timeout;
    // A local that is borrowed and still in scope at an `.await` keeps its room in the future even
    // after it is moved out, so ALPN is read in the match arm, not from a 1.2 KiB `tls` local.
    let (tls, h2) = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        // Over TLS, HTTP/2 is only ever spoken after ALPN chose "h2" (RFC 9113 §3.2); anything
        // else (ALPN "http/1.1", or no ALPN at all, as with wrk or Python's ssl) is HTTP/1.1.
        Ok(Ok(tls)) => {
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            (tls, h2)
        }
        Ok(Err(e)) => return tracing::debug!(peer = %peer.ip(), error = %e, "TLS handshake failed"),
        Err(_) => return tracing::debug!(peer = %peer.ip(), "TLS handshake timed out"),
    };
    front
        .proxy
        .metrics
        .tls_handshake_seconds
        .observe(started.elapsed().as_secs_f64());
    let (io, handler, watch) = attach(front, tls, peer);
    if h2 {
        // Boxed: the common HTTP/1.1 connection does not keep room for HTTP/2's larger state.
        let mut conn = Box::pin(http.h2.serve_connection(io, handler));
        drive(front, conn.as_mut(), |c| c.graceful_shutdown(), &watch, peer, cancel).await;
    } else {
        let conn = pin!(http.h1.serve_connection(io, handler).with_upgrades());
        drive(front, conn, |c| c.graceful_shutdown(), &watch, peer, cancel).await;
    }
}

/// The watched I/O, the request handler, and the watch they share, for one connection.
fn attach<I>(front: &Arc<Front>, io: I, peer: SocketAddr) -> (TokioIo<Watched<I>>, Handler, Arc<Watch>)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let watch = Watch::new();
    let io = Watched::new(io, watch.clone(), front.server.h2_control_frames);
    let handler = Handler {
        proxy: front.proxy.clone(),
        watch: watch.clone(),
        client: Peer::new(&front.proxy, peer),
    };
    (TokioIo::new(io), handler, watch)
}

/// Serve a connection until it ends, shutdown asks it to drain, or its watcher closes it: a
/// control-frame flood, or `server.idle_timeout` without a request.
async fn drive<C, E>(
    front: &Front,
    mut conn: Pin<&mut C>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    watch: &Watch,
    peer: SocketAddr,
    cancel: &CancellationToken,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let idle = front.server.idle_timeout;
    let result = loop {
        let check = watch.next_idle_check(idle);
        tokio::select! {
            r = conn.as_mut() => break r,
            () = cancel.cancelled() => {
                graceful_shutdown(conn.as_mut());
                break conn.await;
            }
            () = watch.flood_alarm() => {
                tracing::warn!(peer = %peer.ip(), "HTTP/2 control-frame flood: GOAWAY and close");
                front.proxy.metrics.h2_floods.inc();
                graceful_shutdown(conn.as_mut());
                break tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await.unwrap_or(Ok(()));
            }
            () = tokio::time::sleep_until(check) => {
                if watch.is_idle(idle) {
                    tracing::debug!(peer = %peer.ip(), "idle connection closed");
                    graceful_shutdown(conn.as_mut());
                    break tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await.unwrap_or(Ok(()));
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer.ip(), error = %e, "connection ended with an error");
    }
}

/// One connection's request handler.
#[derive(Clone)]
struct Handler {
    proxy: Arc<Proxy>,
    watch: Arc<Watch>,
    client: Peer,
}

type Answer = http::Response<Tracked<GatewayBody>>;

impl hyper::service::Service<http::Request<Incoming>> for Handler {
    type Response = Answer;
    type Error = Infallible;
    // Boxed: hyper keeps room for one request's future for the whole life of a connection; boxed,
    // an idle connection holds a pointer instead of several KiB.
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let Handler { proxy, watch, client } = self.clone();
        Box::pin(async move {
            let busy = watch.begin();
            if req.version() < http::Version::HTTP_2 && watch.refuse_next_head() {
                tracing::info!(peer = %client.addr.ip(), "refused ambiguous HTTP/1.1 framing");
                let mut resp = GatewayError::InvalidRequest("Ambiguous message framing").to_response();
                resp.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                return Ok(resp.map(|b| Tracked::new(http_body_util::Either::Right(b), busy)));
            }
            let mut resp = crate::proxy::handle(proxy, client, req).await?;
            // The watcher stops following a connection at an `Upgrade` (or CONNECT) head: what
            // comes next may not be HTTP/1. Unless it now switches protocols, such a connection
            // ends after this answer, so no later request on it goes unwatched.
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                watch.switched();
            } else if watch.unfollowed() {
                resp.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok(resp.map(|b| Tracked::new(b, busy)))
        })
    }
}

/// Serve a small plain HTTP/1.1 listener (admin, redirect) until `shutdown` resolves with the
/// time left to drain; its open connections are asked to finish and get that long, then whatever
/// is still open is dropped. Each connection gets 5 s to send its head. Accept errors (EMFILE and
/// friends) back off for 50 ms instead of spinning.
pub async fn serve_plain<S>(
    listener: TcpListener,
    service: S,
    keep_alive: bool,
    shutdown: impl Future<Output = Duration>,
) where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<http_body_util::Full<bytes::Bytes>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut open = tokio::task::JoinSet::new();
    let cancel = CancellationToken::new();
    tokio::pin!(shutdown);
    let budget = loop {
        // Finished connections are reaped as they go, so a long-lived listener holds only open ones.
        while open.try_join_next().is_some() {}
        let stream = tokio::select! {
            budget = shutdown.as_mut() => break budget,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = service.clone();
        let cancel = cancel.clone();
        open.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(keep_alive)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    };
    drop(listener);
    cancel.cancel();
    let _ = tokio::time::timeout(budget, async { while open.join_next().await.is_some() {} }).await;
    // Dropping the set aborts what is still open.
}
