//! The gateway's own HTTP client for talking to identity providers: discovery documents, JWKS,
//! the token endpoint. One connection per call (these calls are rare), HTTP/1.1, rustls with the
//! web PKI roots for `https://`.
//!
//! The rule this module keeps: every call is bounded: [`TIMEOUT`] for the whole exchange, and
//! [`MAX_BODY`] bytes for the answer. A provider that is slow, huge or down costs one bounded
//! failure, never a stuck task.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The longest a provider call may take, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a provider.
pub const MAX_BODY: usize = 512 * 1024;

/// Why a provider call failed (never with a secret in it).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the URL has no usable host or scheme")]
    BadUrl,
    #[error("no answer within {TIMEOUT:?}")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    #[error("TLS failed: {0}")]
    Tls(std::io::Error),
    #[error("HTTP failed: {0}")]
    Http(hyper::Error),
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
}

/// The TLS client settings for `https://` providers (`None` only if ring lacked the default
/// protocol versions, which it does not).
static TLS: LazyLock<Option<Arc<rustls::ClientConfig>>> = LazyLock::new(|| {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(tls))
});

/// One request to a provider, bounded by [`TIMEOUT`] and [`MAX_BODY`]. The signature is the one
/// `openidconnect` takes as an async HTTP client.
pub async fn fetch(req: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, FetchError> {
    tokio::time::timeout(TIMEOUT, exchange(req))
        .await
        .unwrap_or(Err(FetchError::Timeout))
}

async fn exchange(req: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, FetchError> {
    let uri = req.uri().clone();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::BadUrl),
    };
    let host = uri.host().ok_or(FetchError::BadUrl)?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(FetchError::Connect)?;
    let (mut parts, body) = req.into_parts();
    // Origin-form target and a Host header, as an HTTP/1.1 server expects.
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    parts.uri = target.parse().map_err(|_| FetchError::BadUrl)?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or(FetchError::BadUrl)?;
    parts.headers.insert(
        http::header::HOST,
        http::HeaderValue::from_str(&authority).map_err(|_| FetchError::BadUrl)?,
    );
    parts
        .headers
        .entry(http::header::USER_AGENT)
        .or_insert(http::HeaderValue::from_static("authgate"));
    let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let resp = if https {
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|_| FetchError::BadUrl)?;
        let config = TLS
            .clone()
            .ok_or_else(|| FetchError::Tls(std::io::Error::other("no TLS settings")))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(FetchError::Tls)?;
        send(TokioIo::new(tls), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| FetchError::TooLarge)?
        .to_bytes();
    Ok(http::Response::from_parts(parts, body.to_vec()))
}

async fn send<T>(io: T, req: http::Request<Full<Bytes>>) -> Result<http::Response<hyper::body::Incoming>, FetchError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(FetchError::Http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(FetchError::Http)
}
