//! The in-process gateway: started on 127.0.0.1:0 from the test TOML, with its admin listener,
//! its directory (certificate, database) and a graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::client::{Client, Reply};
use super::logscan;
use super::tokens::SECRET;

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
