//! The recording upstream: a backend on 127.0.0.1:0 that records exactly what arrived (method,
//! target, every header, body size) so tests assert on what the backend saw, not only on status
//! codes. Also the body helpers it answers with.

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
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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
