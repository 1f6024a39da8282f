//! The main listener: accept, TLS handshake with a timeout, HTTP/1.1 or HTTP/2 through hyper-util's
//! auto server, and a graceful drain on shutdown.
//!
//! The rule this module keeps: every connection is tracked, so shutdown stops accepting, tells each
//! connection to finish its in-flight requests (streams and upgraded tunnels included), and waits
//! for them for at most `server.shutdown_grace`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::Gateway;
use crate::error::GatewayError;

mod watch;

use watch::{Tracked, Watch, Watched};

/// The HTTP server settings shared by every connection.
pub fn http_builder(gw: &Gateway) -> auto::Builder<TokioExecutor> {
    let s = &gw.config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(50))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Accept connections until `shutdown` resolves, then drain.
pub async fn run(gw: Arc<Gateway>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let cancel = CancellationToken::new();
    let builder = Arc::new(http_builder(&gw));
    let acceptor = gw.tls.clone().map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        gw.listen_port.store(addr.port(), Ordering::SeqCst);
    }
    gw.serving.store(true, Ordering::SeqCst);
    let slots = Arc::new(tokio::sync::Semaphore::new(gw.config.limits.max_connections));

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
        let gw = gw.clone();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let cancel = cancel.clone();
        gw.clone().tasks.spawn(async move {
            let _permit = permit;
            gw.metrics.open_connections.inc();
            connection(&gw, &builder, acceptor, stream, peer, cancel).await;
            gw.metrics.open_connections.dec();
        });
    }

    gw.serving.store(false, Ordering::SeqCst);
    drop(listener);
    let grace = gw.config.server.shutdown_grace;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: no new connections, draining"
    );
    cancel.cancel();
    gw.tasks.close();
    if tokio::time::timeout(grace, gw.tasks.wait()).await.is_err() {
        tracing::warn!(
            open = gw.tasks.len(),
            "shutdown grace elapsed with connections still open"
        );
    } else {
        tracing::info!("drained");
    }
}

async fn connection(
    gw: &Arc<Gateway>,
    builder: &auto::Builder<TokioExecutor>,
    acceptor: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    cancel: CancellationToken,
) {
    match acceptor {
        None => serve_io(gw, builder, stream, peer, cancel).await,
        Some(acceptor) => {
            let started = Instant::now();
            let timeout = gw.config.server.tls_handshake_timeout;
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    gw.metrics
                        .tls_handshake_seconds
                        .observe(started.elapsed().as_secs_f64());
                    serve_io(gw, builder, tls, peer, cancel).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer.ip(), error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(peer = %peer.ip(), "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(
    gw: &Arc<Gateway>,
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    peer: SocketAddr,
    cancel: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server = &gw.config.server;
    let watch = Watch::new();
    let io = Watched::new(io, watch.clone(), server.h2_control_frames);
    let (gw2, watch2) = (gw.clone(), watch.clone());
    let client = crate::proxy::Peer::new(gw, peer);
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (gw, watch, client) = (gw2.clone(), watch2.clone(), client.clone());
        // Boxed: hyper keeps room for one request's future for the whole life of a connection;
        // boxed, an idle connection holds a pointer instead of several KiB.
        Box::pin(async move {
            let busy = watch.begin();
            if req.version() < http::Version::HTTP_2 && watch.refuse_next_head() {
                tracing::info!(peer = %peer.ip(), "refused ambiguous HTTP/1.1 framing");
                let mut resp = GatewayError::InvalidRequest("Ambiguous message framing").to_response();
                resp.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                return Ok(resp.map(|b| Tracked::new(http_body_util::Either::Right(b), busy)));
            }
            let resp = crate::proxy::handle(gw, client, req).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|b| Tracked::new(b, busy)))
        })
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = server.idle_timeout;
    let result = loop {
        let check = watch.next_idle_check(idle);
        tokio::select! {
            r = conn.as_mut() => break r,
            () = cancel.cancelled() => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            () = watch.flood_alarm() => {
                tracing::warn!(peer = %peer.ip(), "HTTP/2 control-frame flood: GOAWAY and close");
                gw.metrics.h2_floods.inc();
                conn.as_mut().graceful_shutdown();
                break tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await.unwrap_or(Ok(()));
            }
            () = tokio::time::sleep_until(check) => {
                if watch.is_idle(idle) {
                    tracing::debug!(peer = %peer.ip(), "idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    break tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await.unwrap_or(Ok(()));
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer.ip(), error = %e, "connection ended with an error");
    }
}

/// The next connection, or `None` once `shutdown` resolves. Accept errors (EMFILE and friends)
/// back off for 50 ms instead of spinning.
pub async fn accept_until(
    listener: &TcpListener,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<TcpStream> {
    loop {
        tokio::select! {
            () = shutdown.as_mut() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => return Some(stream),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
}

/// The optional plain listener (`server.redirect_http`): every request gets 308 to the same host
/// and path on HTTPS. It never forwards anything and never reads a body.
pub async fn run_redirect(gw: Arc<Gateway>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    while let Some(stream) = accept_until(&listener, shutdown.as_mut()).await {
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let resp = redirect(&gw, &req);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn redirect<B>(gw: &Gateway, req: &http::Request<B>) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let bad = || crate::error::GatewayError::InvalidRequest("Cannot redirect this request").to_response();
    let Some(host) = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
    else {
        return bad();
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if !path.starts_with('/') || req.uri().scheme().is_some() {
        return bad();
    }
    let port = match gw.listen_port.load(Ordering::SeqCst) {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let location = format!("https://{}{port}{path}", host.host());
    match http::HeaderValue::from_str(&location) {
        Ok(v) => {
            let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
            *resp.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut().insert(http::header::LOCATION, v);
            resp
        }
        Err(_) => bad(),
    }
}
