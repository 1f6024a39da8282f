//! The optional plain listener (`server.redirect_http`): every request is sent to HTTPS.
//!
//! The rule this module keeps: the redirect names only a host the operator vouches for, never
//! whatever `Host` a client sent: `server.public_host` when set, else the client's host when the
//! serving certificate covers it, else the certificate's own name. A `Host` that is not a host is
//! 400. Nothing is forwarded and no body is read.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use tokio::net::TcpListener;

use super::Status;
use crate::error::GatewayError;
use crate::tls::CertStore;

pub use crate::config::valid_host;

/// What a redirect is built from.
pub struct Redirect {
    /// `server.public_host`.
    pub public_host: Option<String>,
    /// `server.redirect_https_port`; else the main listener's port.
    pub https_port: Option<u16>,
    pub status: Arc<Status>,
    /// The serving certificate: a client's host it covers may be redirected to.
    pub certs: Option<Arc<CertStore>>,
}

/// Serve the redirect listener until `shutdown` resolves with the time left to drain.
pub async fn run_redirect(redirect: Arc<Redirect>, listener: TcpListener, shutdown: impl Future<Output = Duration>) {
    let service = hyper::service::service_fn(move |req| {
        let resp = answer(&redirect, &req);
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    super::serve_plain(listener, service, false, shutdown).await;
}

fn answer<B>(r: &Redirect, req: &Request<B>) -> Response<Full<Bytes>> {
    let refuse = |why| GatewayError::InvalidRequest(why).to_response();
    let Some(asked) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(valid_host)
    else {
        return refuse("The Host header is not a valid host name; connect with https:// to the gateway's name");
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if !path.starts_with('/') || req.uri().scheme().is_some() {
        return refuse("Cannot redirect this request");
    }
    let certs = r.certs.as_deref();
    let host = match &r.public_host {
        Some(public) => public.clone(),
        None if certs.is_some_and(|c| c.covers(asked.trim_start_matches('[').trim_end_matches(']'))) => asked,
        None => match certs.and_then(|c| c.dns_name()) {
            Some(name) => name,
            None => {
                tracing::warn!("redirect: the certificate names no DNS host; set server.public_host");
                return refuse("This gateway does not know its public name; connect with https://");
            }
        },
    };
    let port = match r
        .https_port
        .unwrap_or_else(|| r.status.listen_port.load(Ordering::SeqCst))
    {
        443 => String::new(),
        p => format!(":{p}"),
    };
    match HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
        Ok(location) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        Err(_) => refuse("Cannot redirect this request"),
    }
}
