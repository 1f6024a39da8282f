//! Clients of the gateway: rustls connections (h1 or h2, any ALPN), a request/`Reply` client, and
//! raw byte exchanges for requests no well-behaved client would send.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::logscan;
use super::tokens::bearer;
use super::upstream::boxed;

pub fn tls_client_config(ca: &std::path::Path, h2: bool) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config
}

/// Open a TLS connection to the gateway.
pub async fn tls_connect(
    ca: &std::path::Path,
    addr: SocketAddr,
    h2: bool,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    connect_with(tls_client_config(ca, h2), addr).await
}

/// Open a TLS connection offering exactly these ALPN protocols (none, like wrk or Python's ssl).
pub async fn tls_connect_alpn(
    ca: &std::path::Path,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = tls_client_config(ca, false);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    connect_with(config, addr).await
}

async fn connect_with(config: rustls::ClientConfig, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    connect_from(config, addr, None).await
}

/// Open a TLS connection from the local address `local` (another loopback address, say
/// 127.0.0.2, is a peer that `server.trusted_proxies` may leave out), or from any.
async fn connect_from(
    config: rustls::ClientConfig,
    addr: SocketAddr,
    local: Option<IpAddr>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = match local {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => {
            let socket = match ip {
                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4().unwrap(),
                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6().unwrap(),
            };
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

pub struct Reply {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client over one TLS connection (h1 or h2).
pub struct Client {
    ca: PathBuf,
    addr: SocketAddr,
    h2: bool,
    /// The local address it connects from, when not any.
    local: Option<IpAddr>,
}

pub type ClientBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl Client {
    pub fn new(ca: &std::path::Path, addr: SocketAddr, h2: bool) -> Client {
        Client {
            ca: ca.to_owned(),
            addr,
            h2,
            local: None,
        }
    }

    /// The same client, connecting from the local address `ip` (say 127.0.0.2, a peer outside
    /// `server.trusted_proxies = ["127.0.0.1/32"]`).
    pub fn bound_to(mut self, ip: IpAddr) -> Client {
        self.local = Some(ip);
        self
    }

    pub async fn send(&self, req: Request<ClientBody>) -> Response<Incoming> {
        let tls = connect_from(tls_client_config(&self.ca, self.h2), self.addr, self.local).await;
        if self.h2 {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn.with_upgrades());
            send.send_request(req).await.unwrap()
        }
    }

    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        let b = Request::builder().method(method);
        if self.h2 {
            b.uri(format!("https://localhost:{}{path}", self.addr.port()))
        } else {
            b.uri(path).header("host", format!("localhost:{}", self.addr.port()))
        }
    }

    /// POST a JSON body, with `Authorization: Bearer` when `auth` is given.
    pub async fn post_json(&self, path: &str, body: serde_json::Value, auth: Option<&str>) -> Reply {
        let bearer_value = auth.map(bearer);
        let mut headers = vec![("content-type", "application/json")];
        if let Some(b) = &bearer_value {
            headers.push(("authorization", b.as_str()));
        }
        self.call("POST", path, &headers, Some(body.to_string().into_bytes()))
            .await
    }

    pub async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply {
        logscan::request(headers, body.as_deref());
        let mut b = self.request(method, path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let body = match body {
            Some(bytes) => boxed(Full::new(Bytes::from(bytes))),
            None => boxed(Empty::new()),
        };
        let resp = self.send(b.body(body).unwrap()).await;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        logscan::response(&body);
        logscan::set_cookies(&parts.headers);
        Reply {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.call("GET", path, headers, None).await
    }
}

/// Send raw bytes over TLS (HTTP/1.1) and read the answer until the server closes or `wait` passes.
pub async fn raw_exchange(ca: &std::path::Path, addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    raw_exchange_on(tls_connect(ca, addr, false).await, bytes, wait).await
}

/// Send raw bytes on an open TLS connection; everything that comes back within `wait`.
pub async fn raw_exchange_on(
    mut tls: tokio_rustls::client::TlsStream<TcpStream>,
    bytes: &[u8],
    wait: Duration,
) -> String {
    logscan::raw(bytes);
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 8192];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}
