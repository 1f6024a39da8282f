//! The pooled connection to the backend: HTTP/1.1, over rustls for an `https://` upstream.
//!
//! The rule this module keeps: every wait on the backend is bounded. Connecting is bounded by
//! `upstream.connect_timeout` (then 502) and the response head by `upstream.response_header_timeout`
//! (then 504); bodies then stream for as long as both ends keep them moving.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::UpstreamConfig;
use crate::error::GatewayError;

pub use crate::proxy::body::ForwardBody;

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ForwardBody>,
    config: UpstreamConfig,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &config.ca_cert {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("upstream.ca_cert: cannot read {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("upstream.ca_cert: bad PEM in {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("upstream.ca_cert: unusable certificate in {}: {e}", path.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("upstream TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);

        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Ok(Upstream {
            client,
            config: config.clone(),
        })
    }

    /// The backend URI for a request path (already checked by `routes::check_path`).
    pub fn uri(&self, path_and_query: PathAndQuery) -> Result<Uri, GatewayError> {
        Uri::builder()
            .scheme(self.config.scheme.clone())
            .authority(self.config.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| GatewayError::InvalidRequest("Invalid request target"))
    }

    /// Send a request and wait (bounded) for the response head.
    pub async fn send(&self, req: Request<ForwardBody>) -> Result<Response<Incoming>, GatewayError> {
        match tokio::time::timeout(self.config.response_header_timeout, self.client.request(req)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, connect = e.is_connect(), "upstream request failed");
                Err(GatewayError::UpstreamUnreachable)
            }
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Whether a TCP connection to the backend can be opened now (for `/readyz`).
    pub async fn reachable(&self) -> bool {
        let port = self
            .config
            .authority
            .port_u16()
            .unwrap_or(if self.config.scheme == http::uri::Scheme::HTTPS {
                443
            } else {
                80
            });
        let host = self
            .config
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let connect = tokio::net::TcpStream::connect((host, port));
        matches!(
            tokio::time::timeout(self.config.connect_timeout.min(Duration::from_secs(2)), connect).await,
            Ok(Ok(_))
        )
    }
}
