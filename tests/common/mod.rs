//! Test harness: a recording upstream, an in-process gateway on 127.0.0.1:0, and real TLS clients.
//!
//! The upstream records exactly what arrived (method, target, every header, body size) so tests
//! assert on what the backend saw, not only on status codes.
#![allow(dead_code)]

pub mod logscan;
pub mod services;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

// ---------------------------------------------------------------------------------------------
// Recording upstream
// ---------------------------------------------------------------------------------------------

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body: Vec<u8>,
}

impl Seen {
    /// All values of a header, by case-insensitive name.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
    pub fn one(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} arrived {} times: {all:?}", all.len());
        all.into_iter().next()
    }
    /// Header names, lower-case, as they arrived.
    pub fn names(&self) -> Vec<String> {
        self.headers.keys().map(|k| k.as_str().to_owned()).collect()
    }
}

#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn last(&self) -> Seen {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream received nothing")
    }
}

pub struct TestUpstream {
    pub addr: SocketAddr,
    pub seen: Recorder,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A body that yields `chunks` chunks of `size` bytes, with an optional pause before each.
pub struct Generated {
    pub remaining: u64,
    pub chunk: Bytes,
    pub pause: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Generated {
    pub fn new(total: u64, chunk_size: usize) -> Self {
        Generated {
            remaining: total,
            chunk: Bytes::from(vec![b'x'; chunk_size]),
            pause: None,
            sleep: None,
        }
    }
    pub fn paced(total: u64, chunk: &'static [u8], pause: Duration) -> Self {
        Generated {
            remaining: total,
            chunk: Bytes::from_static(chunk),
            pause: Some(pause),
            sleep: None,
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Some(p) = self.pause {
            let this = &mut *self;
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(p)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let n = (self.chunk.len() as u64).min(self.remaining);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        if self.pause.is_some() {
            return http_body::SizeHint::default();
        }
        http_body::SizeHint::with_exact(self.remaining)
    }
}

impl TestUpstream {
    pub async fn start() -> TestUpstream {
        Self::serve(None).await
    }

    /// Accept connections (behind TLS when `acceptor` is set) and answer them as the recording upstream.
    async fn serve(acceptor: Option<tokio_rustls::TlsAcceptor>) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Recorder::default();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let rec = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stop_rx => return,
                    r = listener.accept() => match r { Ok(p) => p, Err(_) => continue },
                };
                let (rec, acceptor) = (rec.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| upstream_answer(rec.clone(), req));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).with_upgrades().await;
                            }
                        }
                    }
                });
            }
        });
        TestUpstream {
            addr,
            seen,
            stop: Some(stop_tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same recording upstream behind TLS, with a self-signed certificate written into `dir`.
    /// Returns the upstream and the path of its certificate (the CA the gateway must trust).
    pub async fn start_tls(dir: &std::path::Path) -> (TestUpstream, PathBuf) {
        let (cert, key) = (dir.join("up-cert.pem"), dir.join("up-key.pem"));
        authgate::tls::ensure_self_signed(&cert, &key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(authgate::tls::server_config(&cert, &key).unwrap());
        (Self::serve(Some(acceptor)).await, cert)
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn boxed<B: Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static>(b: B) -> UpBody {
    BodyExt::boxed(b)
}

async fn upstream_answer(rec: Recorder, mut req: Request<Incoming>) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, mut body) = req.into_parts();
    let keep = !path.starts_with("/upload");
    let mut body_len = 0u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            body_len += d.len() as u64;
            if keep && kept.len() < 1 << 20 {
                kept.extend_from_slice(d);
            }
        }
    }
    rec.0.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers.clone(),
        body_len,
        body: kept,
    });
    let param = |k: &str| -> Option<u64> {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
    };
    let resp = match path.as_str() {
        "/sse" => {
            let n = param("events").unwrap_or(3);
            let gap = Duration::from_millis(param("gap_ms").unwrap_or(300));
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(boxed(Generated::paced(n * 12, b"data: tick\n\n", gap)))
                .unwrap()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(param("ms").unwrap_or(3000))).await;
            Response::new(boxed(Full::new(Bytes::from_static(b"late"))))
        }
        "/download" => {
            let n = param("bytes").unwrap_or(1024);
            Response::new(boxed(Generated::new(n, 64 * 1024)))
        }
        "/stream" => {
            // `chunks` chunks of 8 bytes, `gap_ms` apart.
            let n = param("chunks").unwrap_or(5);
            let gap = Duration::from_millis(param("gap_ms").unwrap_or(200));
            Response::new(boxed(Generated::paced(n * 8, b"chunk..\n", gap)))
        }
        "/ws" => {
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut out = b"echo:".to_vec();
                                out.extend_from_slice(&buf[..n]);
                                if io.write_all(&out).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(boxed(Empty::new()))
                .unwrap()
        }
        "/h2c" => {
            // A backend like Hypercorn, which switches to cleartext HTTP/2 whatever was asked: the
            // gateway must relay none of what follows.
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let _ = io.write_all(b"h2c-tunnel-open").await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "h2c")
                .body(boxed(Empty::new()))
                .unwrap()
        }
        _ => Response::builder()
            .header("content-type", "application/json")
            .header("connection", "keep-alive, x-upstream-private")
            .header("x-upstream-private", "1")
            .body(boxed(Full::new(Bytes::from(
                json!({"ok": true, "path": path, "received": body_len}).to_string(),
            ))))
            .unwrap(),
    };
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------------------------

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Shared so a test can restart a gateway on the same certificate and database.
    pub dir: Arc<tempfile::TempDir>,
    pub ca: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
    pub gateway: Arc<authgate::Gateway>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The test TOML with `extra` merged over it.
fn test_config(dir: &std::path::Path, upstream: &str, extra: &str) -> authgate::config::Config {
    use figment::Figment;
    use figment::providers::{Format, Toml};
    let figment = Figment::new()
        .merge(Toml::string(&base_toml(dir, upstream)))
        .merge(Toml::string(extra));
    authgate::config::Config::from_figment(figment).expect("test config is valid")
}

/// The TOML a test gateway starts from; `extra` is merged over it (figment layering).
pub fn base_toml(dir: &std::path::Path, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"
[admin]
listen = "127.0.0.1:0"
[tls]
cert = "{cert}"
key = "{key}"
self_signed_if_missing = true
[upstream]
url = "{upstream}"
connect_timeout = "1s"
response_header_timeout = "2s"
[jwt]
secret = "{SECRET}"
[auth]
public_paths = ["/api/health", "/docs/*"]
[store]
url = "sqlite://{db}?mode=rwc"
sync_interval = "200ms"
"#,
        db = dir.join("authgate.db").display(),
        cert = dir.join("cert.pem").display(),
        key = dir.join("key.pem").display(),
    )
}

impl TestGateway {
    pub async fn start(upstream: &str) -> TestGateway {
        Self::start_with(upstream, "").await
    }

    pub async fn start_with(upstream: &str, extra: &str) -> TestGateway {
        Self::start_in(Arc::new(tempfile::tempdir().unwrap()), upstream, extra).await
    }

    /// Start from a complete TOML document (nothing layered under it) in `dir`.
    pub async fn start_toml(dir: Arc<tempfile::TempDir>, toml: &str) -> TestGateway {
        let config = authgate::config::Config::from_toml_str(toml).expect("test config is valid");
        Self::start_config(config, dir).await
    }

    /// Start on an existing directory (certificate, secret and database kept from a previous run).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, upstream: &str, extra: &str) -> TestGateway {
        Self::start_config(test_config(dir.path(), upstream, extra), dir).await
    }

    /// A gateway serving on a listener the test bound itself (say, an IPv6 one).
    pub async fn start_listening(main: TcpListener, upstream: &str, extra: &str) -> TestGateway {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_on(main, test_config(dir.path(), upstream, extra), dir).await
    }

    pub async fn start_config(config: authgate::config::Config, dir: Arc<tempfile::TempDir>) -> TestGateway {
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(main, config, dir).await
    }

    async fn start_on(main: TcpListener, config: authgate::config::Config, dir: Arc<tempfile::TempDir>) -> TestGateway {
        logscan::init();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (main.local_addr().unwrap(), admin.local_addr().unwrap());
        let ca = config
            .tls
            .as_ref()
            .map(|t| t.cert.clone())
            .unwrap_or_else(|| dir.path().join("none.pem"));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let gw = Arc::new(authgate::Gateway::build(config).await.expect("gateway builds"));
        let gateway = gw.clone();
        let done = tokio::spawn(async move {
            authgate::serve_gateway(gw, main, admin, async {
                let _ = stop_rx.await;
            })
            .await;
        });
        TestGateway {
            addr,
            admin: admin_addr,
            gateway,
            dir,
            ca,
            stop: Some(stop_tx),
            done: Some(done),
        }
    }

    /// Begin a graceful shutdown (what SIGTERM does in the binary).
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.ca, self.addr, false)
    }

    /// POST a JSON body over HTTP/1.1 (see [`Client::post_json`]).
    pub async fn post_json(&self, path: &str, body: serde_json::Value, auth: Option<&str>) -> Reply {
        self.client().post_json(path, body, auth).await
    }
    pub fn h2_client(&self) -> Client {
        Client::new(&self.ca, self.addr, true)
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let stream = TcpStream::connect(self.admin).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "admin")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

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
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
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
}

pub type ClientBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl Client {
    pub fn new(ca: &std::path::Path, addr: SocketAddr, h2: bool) -> Client {
        Client {
            ca: ca.to_owned(),
            addr,
            h2,
        }
    }

    pub async fn send(&self, req: Request<ClientBody>) -> Response<Incoming> {
        let tls = tls_connect(&self.ca, self.addr, self.h2).await;
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

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `sub`, valid for an hour, signed with the test secret.
pub fn token(sub: &str) -> String {
    token_with(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        json!({"sub": sub, "exp": now() + 3600, "iat": now()}),
    )
}

pub fn token_with(alg: jsonwebtoken::Algorithm, secret: &str, claims: serde_json::Value) -> String {
    logscan::secret(secret);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    logscan::secret(&token);
    token
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// ----- raw HTTP/2 ------------------------------------------------------------------------------

/// One HTTP/2 frame (RFC 9113 §4.1).
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A raw h2 connection: TLS with ALPN h2, the client preface and an empty SETTINGS frame sent.
pub async fn h2_raw(gw: &TestGateway) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = tls_connect(&gw.ca, gw.addr, true).await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    tls.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    tls
}

/// Frame types read until the server closes or `wait` passes with nothing new.
pub async fn read_frames(tls: &mut (impl tokio::io::AsyncRead + Unpin), wait: Duration) -> (Vec<u8>, bool) {
    let (mut seen, mut buf, mut chunk) = (Vec::new(), Vec::new(), [0u8; 16384]);
    loop {
        match tokio::time::timeout(wait, tls.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Err(_) => return (seen, false),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                while buf.len() >= 9 {
                    let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                    if buf.len() < 9 + len {
                        break;
                    }
                    seen.push(buf[3]);
                    buf.drain(..9 + len);
                }
            }
        }
    }
}
