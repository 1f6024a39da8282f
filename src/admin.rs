//! The admin listener (plain HTTP, loopback by default): `/healthz`, `/readyz`, `/metrics`.
//!
//! The rule this module keeps: it never touches client traffic, and `/readyz` is true only while
//! the gateway is accepting and its upstream and store are reachable, so an orchestrator stops sending
//! traffic to a replica that could not serve it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use crate::error::{GatewayError, json_response};
use crate::metrics::Metrics;
use crate::proxy::upstream::Upstream;
use crate::server::Status;
use crate::store::Store;
use crate::store::cache::Redis;

/// What the admin endpoints report on.
pub struct Admin {
    pub status: Arc<Status>,
    pub upstream: Arc<Upstream>,
    pub store: Store,
    pub redis: Option<Arc<Redis>>,
    pub metrics: Arc<Metrics>,
    /// Single sign-on providers, reported (not required) by `/readyz`.
    pub oidc: Arc<crate::oidc::Providers>,
}

/// Serve the admin endpoints until `shutdown` resolves with the time left to drain.
pub async fn run(admin: Arc<Admin>, listener: TcpListener, shutdown: impl Future<Output = Duration>) {
    let service = service_fn(move |req| answer(admin.clone(), req));
    crate::server::serve_plain(listener, service, true, shutdown).await;
}

async fn answer(admin: Arc<Admin>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(GatewayError::MethodNotAllowed.to_response());
    }
    Ok(match req.uri().path() {
        "/healthz" => json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        "/readyz" => {
            let serving = admin.status.serving.load(Ordering::SeqCst);
            let (upstream, store) = tokio::join!(admin.upstream.reachable(), admin.store.ping());
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
                    "redis": admin.redis.as_ref().map(|r| r.is_up()),
                    // Subscribed to the revocation bus: other replicas' revocations arrive at once
                    // (otherwise within `store.sync_interval`).
                    "revocation_bus": admin.redis.as_ref().map(|r| r.bus_connected()),
                    // Informational: a provider that is down leaves local sign-in and the others
                    // working; its state is here and in `authgate_oidc_provider_up`.
                    "oidc": admin
                        .oidc
                        .states()
                        .into_iter()
                        .map(|(id, up)| (id, serde_json::Value::Bool(up)))
                        .collect::<serde_json::Map<_, _>>(),
                }),
            )
        }
        "/metrics" => {
            let mut resp = Response::new(Full::new(Bytes::from(admin.metrics.render())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            resp
        }
        _ => GatewayError::NotFound.to_response(),
    })
}
