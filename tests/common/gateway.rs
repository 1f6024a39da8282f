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
use tokio_util::sync::CancellationToken;

use super::client::{Client, Reply};
use super::logscan;
use super::tokens::SECRET;
use super::upstream::TestUpstream;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Shared so a test can restart a gateway on the same certificate and database.
    pub dir: Arc<tempfile::TempDir>,
    pub ca: PathBuf,
    /// The plain-HTTP redirect listener, when started with [`GatewayBuilder::redirect`].
    pub redirect: Option<SocketAddr>,
    stop: CancellationToken,
    pub done: Option<tokio::task::JoinHandle<()>>,
    pub gateway: Arc<authgate::Gateway>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A recording upstream and a gateway in front of it, with `extra` merged over [`base_toml`].
pub async fn pair(extra: &str) -> (TestUpstream, TestGateway) {
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url()).extra(extra).start().await;
    (up, gw)
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

/// Where a test gateway's configuration comes from.
enum Source {
    /// [`base_toml`] with this TOML merged over it.
    Layered(String),
    /// A complete TOML document, nothing layered under it.
    Toml(String),
    /// A configuration the test built itself.
    Config(Box<authgate::config::Config>),
}

/// How a test gateway starts: `TestGateway::builder(&up.url())`, then any of `.extra(toml)`,
/// `.toml(document)`, `.config(config)`, `.dir(dir)`, `.listener(listener)`, `.redirect()`, then
/// `.start().await`.
#[must_use = "a builder starts nothing until `.start()`"]
pub struct GatewayBuilder {
    upstream: String,
    source: Source,
    dir: Option<Arc<tempfile::TempDir>>,
    listener: Option<TcpListener>,
    redirect: bool,
}

impl GatewayBuilder {
    /// TOML merged over [`base_toml`] (figment layering), say `"[limits]\nbody_bytes = 1000\n"`.
    pub fn extra(mut self, toml: &str) -> Self {
        self.source = Source::Layered(toml.to_owned());
        self
    }

    /// A complete TOML document instead of [`base_toml`] and `extra`; it names its own upstream.
    pub fn toml(mut self, document: &str) -> Self {
        self.source = Source::Toml(document.to_owned());
        self
    }

    /// A configuration built by the test, used as it is.
    pub fn config(mut self, config: authgate::config::Config) -> Self {
        self.source = Source::Config(Box::new(config));
        self
    }

    /// Start on an existing directory (certificate, secret and database kept from a previous run)
    /// instead of a fresh one.
    pub fn dir(mut self, dir: Arc<tempfile::TempDir>) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Serve on a listener the test bound itself (say, an IPv6 one) instead of 127.0.0.1:0.
    pub fn listener(mut self, main: TcpListener) -> Self {
        self.listener = Some(main);
        self
    }

    /// Also serve the plain-HTTP listener that redirects to HTTPS (what `server.redirect_http`
    /// starts in the binary), on 127.0.0.1:0; its address is [`TestGateway::redirect`].
    pub fn redirect(mut self) -> Self {
        self.redirect = true;
        self
    }

    pub async fn start(self) -> TestGateway {
        let dir = self.dir.unwrap_or_else(|| Arc::new(tempfile::tempdir().unwrap()));
        let config = match self.source {
            Source::Layered(extra) => test_config(dir.path(), &self.upstream, &extra),
            Source::Toml(document) => authgate::config::Config::from_toml_str(&document).expect("test config is valid"),
            Source::Config(config) => *config,
        };
        let main = match self.listener {
            Some(main) => main,
            None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let redirect = match self.redirect {
            true => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        launch(config, dir, main, redirect).await
    }
}

/// The one place a test gateway is started through the library: build it from `config` and serve
/// it on `main`, a fresh admin listener and, when given, the `redirect` listener, until
/// [`TestGateway::shutdown`] or drop. When the library's start path changes, this function is all
/// that changes with it.
async fn launch(
    config: authgate::config::Config,
    dir: Arc<tempfile::TempDir>,
    main: TcpListener,
    redirect: Option<TcpListener>,
) -> TestGateway {
    logscan::init();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (main.local_addr().unwrap(), admin.local_addr().unwrap());
    let ca = config
        .tls
        .as_ref()
        .map(|t| t.cert.clone())
        .unwrap_or_else(|| dir.path().join("none.pem"));
    let redirect_addr = redirect.as_ref().map(|l| l.local_addr().unwrap());
    let stop = CancellationToken::new();
    let gw = Arc::new(authgate::Gateway::build(config).await.expect("gateway builds"));
    let gateway = gw.clone();
    // The binary's own start path: banner, main, admin and redirect listeners, background tasks.
    let listeners = authgate::Listeners { main, admin, redirect };
    let done = tokio::spawn(gw.serve(listeners, stop.clone().cancelled_owned()));
    TestGateway {
        addr,
        admin: admin_addr,
        gateway,
        dir,
        ca,
        redirect: redirect_addr,
        stop,
        done: Some(done),
    }
}

impl TestGateway {
    /// A gateway on 127.0.0.1:0 in front of `upstream`, configured by [`base_toml`] alone.
    pub async fn start(upstream: &str) -> TestGateway {
        Self::builder(upstream).start().await
    }

    pub fn builder(upstream: &str) -> GatewayBuilder {
        GatewayBuilder {
            upstream: upstream.to_owned(),
            source: Source::Layered(String::new()),
            dir: None,
            listener: None,
            redirect: false,
        }
    }

    /// Begin a graceful shutdown (what SIGTERM does in the binary).
    pub fn shutdown(&mut self) {
        self.stop.cancel();
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
