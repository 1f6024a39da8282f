//! The admin listener (plain HTTP, loopback by default): `/healthz`, `/readyz`, `/metrics`.
//!
//! The rule this module keeps: it never touches client traffic, and `/readyz` is true only while
//! the gateway is accepting and its upstream and store are reachable, so an orchestrator stops sending
//! traffic to a replica that could not serve it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::Gateway;
use crate::error::{GatewayError, json_response};

/// Serve the admin endpoints until `shutdown` resolves.
pub async fn run(gw: Arc<Gateway>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    while let Some(stream) = crate::server::accept_until(&listener, shutdown.as_mut()).await {
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(gw.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(gw: Arc<Gateway>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(GatewayError::MethodNotAllowed.to_response());
    }
    Ok(match req.uri().path() {
        "/healthz" => json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        "/readyz" => {
            let serving = gw.serving.load(Ordering::SeqCst);
            let (upstream, store) = tokio::join!(gw.upstream.reachable(), gw.store.ping());
            let store = store.is_ok();
            let ready = serving && upstream && store;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(
                status,
                &serde_json::json!({
                    "ready": ready,
                    "checks": { "serving": serving, "upstream": upstream, "store": store },
                    // Informational: without Redis the gateway serves from the store and memory.
                    "redis": gw.redis.as_ref().map(|r| r.is_up()),
                    // Subscribed to the revocation bus: other replicas' revocations arrive at once
                    // (otherwise within `store.sync_interval`).
                    "revocation_bus": gw.redis.as_ref().map(|r| r.bus_connected()),
                }),
            )
        }
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(gw.metrics.render())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            resp
        }
        _ => GatewayError::NotFound.to_response(),
    })
}
