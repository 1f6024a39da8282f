//! A real browser for tests: Debian's headless Chromium driven through `chromedriver` (WebDriver,
//! by the fantoccini client), started on a free 127.0.0.1 port and shut down on drop. Each
//! [`Page`] is its own WebDriver session with its own profile, so its own cookie jar: two pages
//! are two people, or one person on two machines.
//!
//! The rule it keeps: a missing Chromium fails the test and says how to install it (`scripts/test`
//! does); the test is skipped only when `AUTHGATE_SKIP_BROWSER=1` asks for that. Everything else a
//! page does is bounded in time ([`WAIT`]), so a page that never appears fails the test instead of
//! hanging it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long a page may take to show what a test waits for (an element, a path).
pub const WAIT: Duration = Duration::from_secs(8);
/// How long chromedriver may take to answer `/status` with `ready`.
const DRIVER_START: Duration = Duration::from_secs(10);
/// How long chromedriver may take to quit its browsers and exit after `/shutdown`.
const DRIVER_STOP: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

/// Set to `1` to skip the browser tests on a machine without Chromium (they fail otherwise).
pub const SKIP_VAR: &str = "AUTHGATE_SKIP_BROWSER";
/// Set to `1` to write screenshots into `docs/screenshots/` (the README's) instead of target/tmp.
pub const SCREENSHOTS_VAR: &str = "AUTHGATE_SCREENSHOTS";

const INSTALL_HINT: &str = "run scripts/test, which installs them \
     (apt-get install -y --no-install-recommends chromium chromium-driver), \
     or set AUTHGATE_SKIP_BROWSER=1 to skip the browser tests";

/// The desktop window every page opens with; screenshots are this wide.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// A phone-sized window, for a screenshot of how a page fits a small screen.
pub const PHONE: (u32, u32) = (390, 844);

/// A running chromedriver, which starts one Chromium per [`Page`].
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    chromium: PathBuf,
    pages: AtomicU32,
    /// Holds chromedriver.log and one profile directory per page. Declared last: removed after
    /// `Drop::drop` has stopped chromedriver and its browsers.
    dir: TempDir,
}

/// The binary at the first of these that exists, else the first found on `PATH`.
fn find_binary(fixed: &[&str], on_path: &[&str]) -> Option<PathBuf> {
    let fixed = fixed.iter().map(PathBuf::from).find(|p| p.is_file());
    fixed.or_else(|| {
        let path = std::env::var_os("PATH")?;
        on_path
            .iter()
            .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// Start chromedriver, ready for sessions. `None` only when Chromium or chromedriver is missing
    /// and `AUTHGATE_SKIP_BROWSER=1` is set; missing without it, the test fails with how to install.
    pub async fn start() -> Option<Browser> {
        let chromium = find_binary(&["/usr/bin/chromium"], &["chromium", "chromium-browser"]);
        let driver = find_binary(&["/usr/bin/chromedriver"], &["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
                eprintln!("browser test skipped: Chromium or chromedriver not found and {SKIP_VAR}=1");
                return None;
            }
            panic!("Chromium and chromedriver are needed for the browser tests and were not found: {INSTALL_HINT}");
        };
        let dir = tempfile::tempdir().unwrap();
        // A port that was free a moment ago; another process may take it first, so try a few.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let log = dir.path().join("chromedriver.log");
            let mut child = Command::new(&driver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{} does not start: {e}", driver.display()));
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match wait_ready(&mut child, addr).await {
                Ok(()) => {
                    return Some(Browser {
                        driver: child,
                        addr,
                        chromium,
                        pages: AtomicU32::new(0),
                        dir,
                    });
                }
                Err(why) => {
                    failures.push(format!("port {port}: {why}"));
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let log = std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default();
        panic!("chromedriver did not become ready: {failures:?}\n{}", tail(&log));
    }

    /// A new session in a desktop window whose viewport is [`DESKTOP`].
    pub async fn page(&self) -> Page {
        self.open(false).await
    }

    /// A new session that shows pages as a phone of [`PHONE`] CSS pixels does (Chromium's mobile
    /// emulation: a desktop window cannot be narrower than 500 pixels).
    pub async fn phone(&self) -> Page {
        self.open(true).await
    }

    /// A new session: a fresh Chromium with its own profile (cookies, storage).
    async fn open(&self, phone: bool) -> Page {
        let n = self.pages.fetch_add(1, Ordering::Relaxed);
        let profile = self.dir.path().join(format!("profile-{n}"));
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // The test gateway's certificate is self-signed.
            "--ignore-certificate-errors".to_owned(),
            "--no-first-run".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
        ];
        let mut chrome = json!({ "binary": self.chromium, "args": args });
        if phone {
            let (width, height) = PHONE;
            chrome["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1, "mobile": true, "touch": true },
            });
        }
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            // WebDriver's own defaults wait up to 300 s for a page load.
            "timeouts": { "pageLoad": 10_000, "script": 5_000 },
            "goog:chromeOptions": chrome,
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{}", self.addr))
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
                panic!("chromedriver could not start Chromium: {e}\n{}", tail(&log))
            });
        let page = Page { client };
        if !phone {
            page.fit_viewport(DESKTOP.0, DESKTOP.1).await;
        }
        page
    }
}

impl Drop for Browser {
    /// Ask chromedriver to quit every browser it started and exit; kill it if it has not within
    /// [`DRIVER_STOP`]. Only the process this harness started is signalled.
    fn drop(&mut self) {
        shutdown_blocking(self.addr);
        let deadline = Instant::now() + DRIVER_STOP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.driver.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Poll chromedriver's `/status` until it says it is ready, for at most [`DRIVER_START`].
async fn wait_ready(driver: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + DRIVER_START;
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("chromedriver exited: {status}"));
        }
        if let Some(body) = http_get(addr, "/status").await {
            let ready = serde_json::from_str::<Value>(&body).is_ok_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {DRIVER_START:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// chromedriver's `GET /shutdown`, sent synchronously (this runs in `Drop`, maybe while a test
/// panics); any failure is left to the kill that follows.
fn shutdown_blocking(addr: SocketAddr) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(DRIVER_STOP));
    let _ = stream.write_all(b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let _ = stream.read_to_end(&mut Vec::new());
}

/// A plain-HTTP GET on 127.0.0.1 (chromedriver's `/status`); the body, or `None` if anything failed.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(2), send.send_request(req))
        .await
        .ok()?
        .ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// The last lines of a log, for a failure message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// One browser session (one person): navigate, read, type, click, screenshot. Every method
/// panics with what it was doing when the browser does not do it.
pub struct Page {
    client: Client,
}

impl Page {
    /// Resize the window so that the viewport (what a screenshot shows) is `width` x `height`:
    /// `--window-size` sizes the whole window, and headless Chromium keeps room for its toolbars.
    async fn fit_viewport(&self, width: u32, height: u32) {
        let inner = self.execute("return [window.innerWidth, window.innerHeight]").await;
        let (Some(w), Some(h)) = (inner[0].as_u64(), inner[1].as_u64()) else {
            panic!("window size: {inner}")
        };
        let (w, h) = (u32::try_from(w).unwrap(), u32::try_from(h).unwrap());
        if (w, h) != (width, height) {
            let (outer_w, outer_h) = self.client.get_window_size().await.unwrap();
            let (outer_w, outer_h) = (u32::try_from(outer_w).unwrap(), u32::try_from(outer_h).unwrap());
            let (new_w, new_h) = (outer_w + width - w.min(width), outer_h + height - h.min(height));
            self.client.set_window_size(new_w, new_h).await.unwrap();
        }
    }

    /// The fantoccini client, for what these helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigate to `url` and wait for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The address bar, whole.
    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// The current path, without the query.
    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// The current query parameter `name`, decoded.
    pub async fn query(&self, name: &str) -> Option<String> {
        let url = self.client.current_url().await.unwrap();
        url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// Wait until the current path is `path`; panic with where the browser is after [`WAIT`].
    pub async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected to be on {path}, still on {} after {WAIT:?}; the page says:\n{}",
                    self.url().await,
                    self.text().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the address bar's origin is `origin` (say after a form posted elsewhere).
    pub async fn wait_for_origin(&self, origin: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.client.current_url().await.unwrap();
            if url.origin().ascii_serialization() == origin {
                return;
            }
            if Instant::now() > deadline {
                panic!("expected a page of {origin}, still on {url} after {WAIT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The first element matching the CSS selector, waiting up to [`WAIT`] for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.find_by(Locator::Css(css), css).await
    }

    /// The first element matching the XPath expression, waiting up to [`WAIT`] for it to appear.
    pub async fn find_xpath(&self, xpath: &str) -> Element {
        self.find_by(Locator::XPath(xpath), xpath).await
    }

    async fn find_by(&self, locator: Locator<'_>, what: &str) -> Element {
        match self.client.wait().at_most(WAIT).for_element(locator).await {
            Ok(element) => element,
            Err(e) => panic!(
                "no element {what} on {} after {WAIT:?} ({e}); the page says:\n{}",
                self.url().await,
                self.text().await
            ),
        }
    }

    /// Every element matching the CSS selector now (no waiting).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// Clear the input (or textarea) named `name` and type `text` into it.
    pub async fn type_into(&self, name: &str, text: &str) {
        let input = self.find(&format!("[name=\"{name}\"]")).await;
        input.clear().await.unwrap_or_else(|e| panic!("clear {name}: {e}"));
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {name}: {e}"));
    }

    /// Click the element matching the CSS selector; when it is a form, click its submit button.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        let element = match element.tag_name().await.unwrap().as_str() {
            "form" => element
                .find(Locator::Css("[type=submit]"))
                .await
                .unwrap_or_else(|e| panic!("form {css} has no submit button: {e}")),
            _ => element,
        };
        element.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// [`Page::click`], then wait until the browser shows the document that came back (a form
    /// posted and answered, wherever it led).
    pub async fn click_and_wait(&self, css: &str) {
        self.mark_document().await;
        self.click(css).await;
        self.wait_for_new_document(css).await;
    }

    /// Click the submit button whose text (or value) contains `text`, and wait for the document
    /// that came back.
    pub async fn click_button(&self, text: &str) {
        let xpath =
            format!("//*[@type='submit' and (contains(normalize-space(.), '{text}') or contains(@value, '{text}'))]");
        let button = self.find_xpath(&xpath).await;
        self.mark_document().await;
        button.click().await.unwrap_or_else(|e| panic!("click {text:?}: {e}"));
        self.wait_for_new_document(text).await;
    }

    /// Click the submit button of the form that holds the input named `input`, and wait for the
    /// document that came back.
    pub async fn submit_form_of(&self, input: &str) {
        let xpath = format!("//*[@name='{input}']/ancestor::form//*[@type='submit']");
        let button = self.find_xpath(&xpath).await;
        self.mark_document().await;
        button
            .click()
            .await
            .unwrap_or_else(|e| panic!("submit the form of {input}: {e}"));
        self.wait_for_new_document(input).await;
    }

    /// Leave a mark on the current document, which the next one will not have.
    async fn mark_document(&self) {
        self.execute("window.authgateTestOldDocument = true; return null").await;
    }

    /// Wait until the marked document is gone and its successor has loaded.
    async fn wait_for_new_document(&self, after: &str) {
        let script = "return window.authgateTestOldDocument !== true && document.readyState === 'complete'";
        let deadline = Instant::now() + WAIT;
        // A script may fail while the old document is unloading; that is not an answer yet.
        while self.client.execute(script, vec![]).await.ok() != Some(Value::Bool(true)) {
            if Instant::now() > deadline {
                panic!("no new page after {after:?} within {WAIT:?}; on {}", self.url().await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The page's HTML as the browser has it now.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// The text a person sees on the page (`body.innerText`).
    pub async fn text(&self) -> String {
        match self
            .execute("return document.body ? document.body.innerText : ''")
            .await
        {
            Value::String(text) => text,
            other => other.to_string(),
        }
    }

    /// Run JavaScript in the page; what it returns.
    pub async fn execute(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// The value of the cookie `name` in this session's jar for the current page (WebDriver sees
    /// HttpOnly cookies too), with its attributes.
    pub async fn cookie(&self, name: &str) -> Option<fantoccini::cookies::Cookie<'static>> {
        let all = self.client.get_all_cookies().await.unwrap();
        all.into_iter().find(|c| c.name() == name)
    }

    /// Save a PNG of the viewport to `path` (its directory is created); the PNG's bytes.
    pub async fn screenshot(&self, path: &Path) -> Vec<u8> {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        png
    }
}

/// Where screenshots go: `docs/screenshots/` when `AUTHGATE_SCREENSHOTS=1` (the README embeds
/// them), else `target/tmp/screenshots/`, to look at and throw away.
pub fn screenshot_dir() -> PathBuf {
    match std::env::var(SCREENSHOTS_VAR).as_deref() {
        Ok("1") => Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots"),
        _ => Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    }
}

/// A PNG's (width, height) in pixels, from its IHDR chunk.
pub fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() >= 24, "not a PNG");
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

/// A page served from another origin than the gateway's: `html` on every path, over plain HTTP
/// or, with [`OtherSite::start_tls`], HTTPS on a certificate of its own. A site a person might
/// visit while signed in to the gateway, for what it can make their browser do.
pub struct OtherSite {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: Option<TempDir>,
}

impl Drop for OtherSite {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl OtherSite {
    /// Serve `html` over plain HTTP on 127.0.0.1:0.
    pub async fn start(html: &str) -> OtherSite {
        Self::serve(html, None, None).await
    }

    /// Serve `html` over HTTPS on 127.0.0.1:0 (a self-signed certificate for localhost).
    pub async fn start_tls(html: &str) -> OtherSite {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        authgate::tls::ensure_self_signed(&cert, &key).unwrap();
        let mut config = (*authgate::tls::server_config(&cert, &key).unwrap()).clone();
        // Served by an HTTP/1.1 connection below; a browser offered h2 would speak h2 to it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        Self::serve(html, Some(acceptor), Some(dir)).await
    }

    async fn serve(html: &str, acceptor: Option<tokio_rustls::TlsAcceptor>, dir: Option<TempDir>) -> OtherSite {
        use bytes::Bytes;
        use http_body_util::Full;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let html = Bytes::from(html.to_owned());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                };
                let (html, acceptor) = (html.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let html = html.clone();
                        async move {
                            http::Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .body(Full::new(html))
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = conn.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = conn.serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await;
                            }
                        }
                    }
                });
            }
        });
        OtherSite {
            addr,
            stop: Some(stop),
            _dir: dir,
        }
    }
}
