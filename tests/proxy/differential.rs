//! The differential matrix: the gateway in front of the real Python servers that RAG backends run
//! on, each started as a child process on 127.0.0.1 with a recording app (`tests/differential/`).
//!
//! The recording upstream in `tests/common` is our own code, so it cannot show what a real server
//! does with the same bytes. Here every hostile request of `tests/attacks/adversarial.rs` (smuggling,
//! upgrades, paths, headers, trailers) goes through the gateway to Hypercorn + Quart, uvicorn +
//! Starlette (httptools and h11 parsers) and gunicorn + WSGI, and the rule checked is on what the
//! *application* recorded: it never sees a protected path without the gateway's `X-User-Id`, and
//! never sees an identity the client forged. Each server runs the whole table and reports every
//! failing case at once.
//!
//! The servers live in a virtualenv that `scripts/test` creates (`target/pyenv`, or the Python
//! named by `DIFF_TEST_PYTHON`). Without it the tests fail, saying so: a security matrix that
//! skips itself quietly is how a closed class comes back.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The subject of every token the table sends: the only identity the app may ever see.
const USER: &str = "alice";
/// What every forged identity claims; the app must never see it in any header.
const FORGED: &str = "admin";
/// Bytes that, if a backend ever parsed them as a request of their own, are a smuggled request.
const SMUGGLED: &str = "GET /api/admin/smuggled HTTP/1.1\r\nHost: a\r\nX-User-Id: admin\r\n\r\n";
/// A second request written into what the gateway may have made a tunnel.
const IN_TUNNEL: &[u8] = b"GET /api/admin/tunnelled HTTP/1.1\r\nHost: a\r\nX-User-Id: admin\r\n\r\n";
/// RFC 6455's sample key: fixed, so no random header value can look like a forged identity.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an answer may take to begin, and how long a quiet connection counts as answered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);
/// Time for a request the gateway let through late (a smuggled one) to reach the app's record.
const SETTLE: Duration = Duration::from_millis(100);
/// How long a request that must reach the app may take to show in its record (a loaded machine).
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

// ----- the servers -----------------------------------------------------------------------------

struct Kind {
    name: &'static str,
    /// Arguments to `python`, given the port.
    args: fn(u16) -> Vec<String>,
    websocket: bool,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// RAGFlow's stack. Hypercorn accepts `Upgrade: h2c` on HTTP/1.1.
const HYPERCORN: Kind = Kind {
    name: "hypercorn+quart",
    args: |port| {
        strings(&[
            "-m",
            "hypercorn",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "1",
            "quart_app:app",
        ])
    },
    websocket: true,
};

/// RAG Modulo's stack as `uvicorn[standard]` installs it: the httptools parser.
const UVICORN_HTTPTOOLS: Kind = Kind {
    name: "uvicorn(httptools)+starlette",
    args: |port| uvicorn(port, "httptools", "websockets-sansio"),
    websocket: true,
};

/// The same app on plain `pip install uvicorn`: the h11 parser.
const UVICORN_H11: Kind = Kind {
    name: "uvicorn(h11)+starlette",
    args: |port| uvicorn(port, "h11", "wsproto"),
    websocket: true,
};

fn uvicorn(port: u16, http: &str, ws: &str) -> Vec<String> {
    strings(&[
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--http",
        http,
        "--ws",
        ws,
        "--no-access-log",
        "starlette_app:app",
    ])
}

/// gunicorn's own parser, sync worker, plain WSGI (no WebSocket).
const GUNICORN: Kind = Kind {
    name: "gunicorn(sync)+wsgi",
    args: |port| {
        strings(&[
            "-m",
            "gunicorn",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "1",
            "--worker-class",
            "sync",
            // The default control socket is one fixed path per user: tests running at once collide.
            "--no-control-socket",
            "wsgi_app:application",
        ])
    },
    websocket: false,
};

/// The virtualenv's Python: `DIFF_TEST_PYTHON`, else `target/pyenv/bin/python` in this crate.
fn python() -> PathBuf {
    let path = std::env::var_os("DIFF_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"));
    assert!(
        path.is_file(),
        "no Python virtualenv with the backend servers at {}: run scripts/test, which creates it \
         (or set DIFF_TEST_PYTHON to a Python that has hypercorn, quart, uvicorn, starlette, gunicorn)",
        path.display()
    );
    path
}

/// One real server with its recording app, in its own process group, killed on drop.
struct Backend {
    child: Child,
    port: u16,
    record: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for Backend {
    fn drop(&mut self) {
        // The whole group: gunicorn's worker too, not only the master we started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Backend {
    /// Start on a free port (another one if the port was taken meanwhile) and wait until the server
    /// answers with this backend's nonce.
    fn start(kind: &'static Kind) -> Backend {
        let python = python();
        let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential");
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let (record, log) = (dir.path().join("seen.jsonl"), dir.path().join("server.log"));
            let nonce = format!("nonce-{}", uuid::Uuid::new_v4().simple());
            let port = services::free_port();
            let out = File::create(&log).unwrap();
            let child = Command::new(&python)
                .args((kind.args)(port))
                .current_dir(&apps)
                .env("PYTHONPATH", &apps)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("DIFF_RECORD", &record)
                .env("DIFF_NONCE", &nonce)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
            let mut backend = Backend {
                child,
                port,
                record,
                log,
                _dir: dir,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if backend.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if probe(port).contains(&nonce) {
                    return backend;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last_log = std::fs::read_to_string(&backend.log).unwrap_or_default();
            drop(backend);
        }
        panic!("{} did not come up; its log:\n{last_log}", kind.name)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every complete line the app has recorded, in order.
    fn seen(&self) -> Vec<AppSaw> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        let complete = text.rfind('\n').map(|i| &text[..=i]).unwrap_or("");
        complete
            .lines()
            .map(|l| AppSaw::parse(serde_json::from_str(l).expect("the app records JSON lines")))
            .collect()
    }
}

/// A direct request to the server's port (not through the gateway); its raw answer.
fn probe(port: u16) -> String {
    let Ok(mut tcp) = StdTcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = tcp.write_all(b"GET /probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

// ----- what the application saw ----------------------------------------------------------------

/// One request as the application recorded it (ASGI scope, or WSGI environ).
#[derive(Debug)]
struct AppSaw {
    kind: String,
    method: String,
    /// Decoded (`scope["path"]`, `PATH_INFO`).
    path: String,
    /// As sent (`scope["raw_path"]`, `RAW_URI`).
    raw_path: String,
    headers: Vec<(String, String)>,
}

impl AppSaw {
    fn parse(v: Value) -> AppSaw {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let headers = v["headers"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let part = |i: usize| h[i].as_str().unwrap_or_default().to_owned();
                        (part(0), part(1))
                    })
                    .collect()
            })
            .unwrap_or_default();
        AppSaw {
            kind: s("type"),
            method: s("method"),
            path: s("path"),
            raw_path: s("raw_path"),
            headers,
        }
    }

    /// Values of the headers the app would read as `X-User-Id`: any case, `_` as `-`, and the
    /// WSGI environ's `HTTP_` prefix.
    fn user_ids(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(name, _)| {
                let n = name.to_ascii_lowercase().replace('_', "-");
                n.strip_prefix("http-").unwrap_or(&n) == "x-user-id"
            })
            .map(|(_, value)| value.as_str())
            .collect()
    }

    fn summary(&self) -> String {
        format!("{} {} {:?}", self.kind, self.method, self.raw_path)
    }

    /// What is wrong with this request having reached the application.
    fn violations(&self) -> Vec<String> {
        let mut wrong = Vec::new();
        for (name, value) in &self.headers {
            if value.to_ascii_lowercase().contains(FORGED) {
                wrong.push(format!("app saw a forged identity {name}: {value:?}"));
            }
        }
        let ids = self.user_ids();
        if ids.len() > 1 {
            wrong.push(format!("app saw {} X-User-Id values: {ids:?}", ids.len()));
        }
        match ids.first() {
            Some(&id) if id != USER => wrong.push(format!("app saw X-User-Id {id:?}, not the gateway's")),
            Some(_) => {}
            None => {
                for path in [&self.path, &self.raw_path] {
                    if !is_public(path) {
                        wrong.push(format!("app saw protected path {path:?} without X-User-Id"));
                    }
                }
            }
        }
        if self.raw_path.contains("smuggled") || self.raw_path.contains("tunnelled") {
            wrong.push(format!(
                "app saw the request hidden inside another: {:?}",
                self.raw_path
            ));
        }
        wrong
    }
}

/// Whether `path` stays inside the gateway's public paths (`/api/health`, `/docs/*`) however a
/// backend or an app behind it reads it: percent-decoded up to three times (overlong UTF-8 dots and
/// slashes included), `\` as `/`, `;` parameters dropped, dot segments resolved, empty segments
/// merged. Deliberately the most generous reading: any reading that escapes counts.
fn is_public(path: &str) -> bool {
    let mut p = path.split('?').next().unwrap_or("").to_owned();
    for _ in 0..3 {
        p = p
            .replace("%c0%ae", ".")
            .replace("%C0%AE", ".")
            .replace("%c0%af", "/")
            .replace("%C0%AF", "/");
        p = percent_decode(&p);
    }
    let p = p.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for segment in p.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    matches!(out.as_slice(), ["api", "health"] | ["docs", _, ..])
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let (mut out, mut i) = (Vec::with_capacity(b.len()), 0);
    while i < b.len() {
        let escaped = match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => Some((h * 16 + l) as u8),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ----- the table -------------------------------------------------------------------------------

/// What a case sends to the gateway.
enum Send {
    /// Raw HTTP/1.1 bytes over TLS.
    H1(String),
    /// Raw HTTP/1.1 bytes, then, once the gateway has answered, more bytes on the same connection
    /// (where a gateway that made a tunnel would pass them to the backend unparsed).
    H1Then(String, Vec<u8>),
    /// Raw HTTP/2 (ALPN h2): one request's HEADERS (HPACK literals), an optional body and trailers.
    H2 {
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        trailers: Vec<(String, String)>,
    },
    /// A WebSocket handshake on `/ws` with a token, then one text message that must come back.
    WebSocket,
}

/// What must happen besides the rule every case keeps (no protected path without identity, no
/// forged identity, nothing smuggled).
#[derive(PartialEq)]
enum Must {
    /// Nothing more: refusing is as good as forwarding safely.
    KeepTheRule,
    /// The request reaches the app (a control: proves the pipe is not simply broken).
    Reach,
    /// The WebSocket works end to end and the app sees the gateway's X-User-Id.
    Echo,
}

struct Case {
    name: String,
    send: Send,
    must: Must,
}

fn case(name: impl Into<String>, send: Send) -> Case {
    Case {
        name: name.into(),
        send,
        must: Must::KeepTheRule,
    }
}

fn h1(name: impl Into<String>, bytes: String) -> Case {
    case(name, Send::H1(bytes))
}

/// The forged identity headers of the attack report (h1 and h2 lower-case names alike, so one
/// spelling each; `_` stands for every server that maps it to `-`).
const IDENTITY_HEADERS: [&str; 15] = [
    "X-User-Id",
    "X_User_Id",
    "Remote-User",
    "X-Remote-User",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-User",
    "X-User-Email",
    "X-Userid",
    "X-Authenticated-User",
    "X-User-Role",
    "X-User-UUID",
    "X-Auth-Assertion",
];

/// Paths that leave `/docs/*` (public) for `/api/admin` (protected) in some reading.
const ESCAPING_PATHS: [&str; 22] = [
    "/docs/..%3b/api/admin",
    "/docs/..%3B/api/admin",
    "/docs/..%3bjsessionid=1/api/admin",
    "/docs/..;/api/admin",
    "/docs/..;jsessionid=1/api/admin",
    "/docs/%c0%ae%c0%ae/api/admin",
    "/docs/%C0%AE%C0%AE/api/admin",
    "/docs/%2e%2e/api/admin",
    "/docs/%2E%2E/api/admin",
    "/docs/.%2e/api/admin",
    "/docs/..%2fapi/admin",
    "/docs/..%2Fapi/admin",
    "/docs%2f..%2fapi/admin",
    "/docs/..%5capi/admin",
    "/docs/..%5Capi/admin",
    "/docs/..\\api/admin",
    "/docs/%252e%252e/api/admin",
    "/docs/%252e%252e%252fapi/admin",
    "/docs/../api/admin",
    "/docs/./../api/admin",
    "/docs/%c0%af../api/admin",
    "/api/health/..%2fadmin",
];

fn cases(t: &str, websocket: bool) -> Vec<Case> {
    let auth = format!("Authorization: Bearer {t}\r\n");
    let mut all = vec![
        Case {
            must: Must::Reach,
            ..h1(
                "control: public path, no credential",
                "GET /api/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".into(),
            )
        },
        Case {
            must: Must::Reach,
            ..h1(
                "control: protected path with a token",
                format!("GET /api/things HTTP/1.1\r\nHost: a\r\n{auth}Connection: close\r\n\r\n"),
            )
        },
        Case {
            must: Must::Reach,
            ..case(
                "control: protected path with a token over h2",
                Send::H2 {
                    headers: h2_get("/api/things", &[("authorization", &bearer(t))]),
                    body: None,
                    trailers: vec![],
                },
            )
        },
    ];
    if websocket {
        all.push(Case {
            must: Must::Echo,
            ..case("websocket with a token works end to end", Send::WebSocket)
        });
    }

    // 1. Upgrades: only `websocket` may become a tunnel, and only after the backend said 101.
    let settings = "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    for (what, target, cred) in [
        ("public path, no credential", "/api/health", ""),
        ("protected path with a token", "/api/things", auth.as_str()),
    ] {
        for upgrade in ["h2c", "H2C", "h2c, websocket", "websocket, h2c"] {
            all.push(case(
                format!("Upgrade: {upgrade} on a {what}, then h2 for /api/admin inside"),
                Send::H1Then(
                    format!(
                        "GET {target} HTTP/1.1\r\nHost: a\r\n{cred}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\n{settings}\r\n"
                    ),
                    h2c_attack(),
                ),
            ));
        }
        let ws = format!("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {WS_KEY}\r\n");
        for (shape, head) in [
            (
                "a WebSocket the backend refuses",
                format!("GET {target} HTTP/1.1\r\nHost: a\r\n{cred}{ws}Sec-WebSocket-Version: 13\r\n\r\n"),
            ),
            (
                "a WebSocket of an unknown version",
                format!("GET /ws HTTP/1.1\r\nHost: a\r\n{cred}{ws}Sec-WebSocket-Version: 8\r\n\r\n"),
            ),
            (
                "Upgrade: foo",
                format!("GET {target} HTTP/1.1\r\nHost: a\r\n{cred}Connection: Upgrade\r\nUpgrade: foo\r\n\r\n"),
            ),
        ] {
            all.push(case(
                format!("{shape} on a {what}, then a request inside"),
                Send::H1Then(head, IN_TUNNEL.to_vec()),
            ));
        }
    }

    // 2. Paths: nothing that resolves outside /docs reaches the app without X-User-Id.
    for path in ESCAPING_PATHS {
        all.push(h1(
            format!("h1 path {path}"),
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        ));
        all.push(case(
            format!("h2 path {path}"),
            Send::H2 {
                headers: h2_get(path, &[]),
                body: None,
                trailers: vec![],
            },
        ));
    }

    // 3. Forged identity headers, without a credential on a public path and with a token.
    for name in IDENTITY_HEADERS {
        all.push(h1(
            format!("forged {name}, public path"),
            format!("GET /api/health HTTP/1.1\r\nHost: a\r\n{name}: {FORGED}\r\nConnection: close\r\n\r\n"),
        ));
        all.push(h1(
            format!("forged {name}, with a token"),
            format!("GET /api/things HTTP/1.1\r\nHost: a\r\n{auth}{name}: {FORGED}\r\nConnection: close\r\n\r\n"),
        ));
        let lower = name.to_ascii_lowercase();
        all.push(case(
            format!("forged {lower} over h2, with a token"),
            Send::H2 {
                headers: h2_get("/api/things", &[("authorization", &bearer(t)), (&lower, FORGED)]),
                body: None,
                trailers: vec![],
            },
        ));
    }
    for (what, lines) in [
        (
            "Connection names X-User-Id",
            "Connection: X-User-Id\r\nX-User-Id: admin\r\n".to_owned(),
        ),
        ("space before the colon", "X-User-Id : admin\r\n".to_owned()),
        ("tab before the colon", "X-User-Id\t: admin\r\n".to_owned()),
        (
            "folded into another header",
            "X-Note: a\r\n X-User-Id: admin\r\n".to_owned(),
        ),
        ("folded value", "X-User-Id: alice\r\n admin\r\n".to_owned()),
    ] {
        all.push(h1(
            format!("forged identity, {what}, with a token"),
            format!("GET /api/things HTTP/1.1\r\nHost: a\r\n{auth}{lines}\r\n"),
        ));
    }
    all.push(h1(
        "forged X-User-Id with bare LF line ends",
        format!("GET /api/health HTTP/1.1\nHost: a\nX-User-Id: {FORGED}\nConnection: close\n\n"),
    ));

    // 4. Smuggling: the request hidden in the body must never reach the app as a request.
    let hidden = format!("0\r\n\r\n{SMUGGLED}");
    let n = hidden.len();
    let post = |head: &str, body: &str| format!("POST /api/things HTTP/1.1\r\nHost: a\r\n{auth}{head}\r\n{body}");
    for (what, req) in [
        (
            "CL then TE",
            post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", &hidden),
        ),
        (
            "TE then CL",
            post("Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", &hidden),
        ),
        (
            "duplicate CL",
            post(&format!("Content-Length: 5\r\nContent-Length: {n}\r\n"), &hidden),
        ),
        (
            "duplicate identical CL",
            post(&format!("Content-Length: {n}\r\nContent-Length: {n}\r\n"), &hidden),
        ),
        ("CL list", post(&format!("Content-Length: 5, {n}\r\n"), &hidden)),
        ("CL with a sign", post("Content-Length: +5\r\n", &hidden)),
        (
            "TE list chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n", &hidden),
        ),
        (
            "TE list identity, chunked",
            post("Transfer-Encoding: identity, chunked\r\n", &hidden),
        ),
        (
            "TE not chunked last",
            post("Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", &hidden),
        ),
        (
            "two TE headers",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", &hidden),
        ),
        (
            "TE xchunked",
            post("Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", &hidden),
        ),
        (
            "TE Chunked casing with CL",
            post("Transfer-Encoding: Chunked\r\nContent-Length: 5\r\n", &hidden),
        ),
        (
            "TE by obs-fold",
            post("Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n", &hidden),
        ),
        (
            "TE with space before the colon",
            post("Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", &hidden),
        ),
        (
            "TE with a vertical tab",
            post("Transfer-Encoding: \x0bchunked\r\nContent-Length: 5\r\n", &hidden),
        ),
        ("NUL in a value", post("X-Nul: a\0b\r\nContent-Length: 5\r\n", &hidden)),
        ("CR in a value", post("X-Cr: a\rb\r\nContent-Length: 5\r\n", &hidden)),
        (
            "chunk extension",
            post("Transfer-Encoding: chunked\r\n", &format!("5;a=b\r\nabcde\r\n{hidden}")),
        ),
        (
            "chunk size with leading zeros",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("0000000000000000005\r\nabcde\r\n{hidden}"),
            ),
        ),
        (
            "chunk size overflowing 64 bits",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("10000000000000005\r\nabcde\r\n{hidden}"),
            ),
        ),
        (
            "chunk size 0x5",
            post("Transfer-Encoding: chunked\r\n", &format!("0x5\r\nabcde\r\n{hidden}")),
        ),
        (
            "chunk size with a space",
            post("Transfer-Encoding: chunked\r\n", &format!("5 \r\nabcde\r\n{hidden}")),
        ),
        (
            "chunk with bare LF",
            post("Transfer-Encoding: chunked\r\n", &format!("5\nabcde\n{hidden}")),
        ),
        (
            "chunk longer than its size",
            post("Transfer-Encoding: chunked\r\n", &format!("2\r\nabcde\r\n{hidden}")),
        ),
        (
            "GET with a body that is a request",
            format!(
                "GET /api/things HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        (
            "after an honest request",
            format!(
                "GET /api/things HTTP/1.1\r\nHost: a\r\n{auth}\r\n{}",
                post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", &hidden)
            ),
        ),
    ] {
        all.push(h1(format!("smuggling: {what}"), req));
    }

    // 5. Trailers: never an identity, on either protocol.
    for name in ["X-User-Id", "x_user_id", "Remote-User", "X-Forwarded-User"] {
        for (what, target, cred) in [
            ("public path", "/api/health", ""),
            ("with a token", "/api/things", auth.as_str()),
        ] {
            all.push(h1(
                format!("trailer {name}, {what}"),
                format!(
                    "POST {target} HTTP/1.1\r\nHost: a\r\n{cred}Transfer-Encoding: chunked\r\nTrailer: {name}\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n{name}: {FORGED}\r\n\r\n"
                ),
            ));
        }
        let lower = name.to_ascii_lowercase();
        all.push(case(
            format!("h2 trailer {lower}, with a token"),
            Send::H2 {
                headers: h2_post("/api/things", &[("authorization", &bearer(t))]),
                body: Some(b"abc".to_vec()),
                trailers: vec![(lower, FORGED.to_owned())],
            },
        ));
    }
    all
}

// ----- HTTP/2 by hand --------------------------------------------------------------------------

fn h2_request(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_owned(), method.to_owned()),
        (":scheme".to_owned(), "https".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), "localhost".to_owned()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    headers
}

fn h2_get(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    h2_request("GET", path, extra)
}

fn h2_post(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    h2_request("POST", path, extra)
}

/// A header block of HPACK literals without indexing, new names (RFC 7541 §6.2.2), so any bytes go.
fn hpack(headers: &[(String, String)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(0x00);
        for s in [name.as_bytes(), value.as_bytes()] {
            hpack_string(&mut block, s);
        }
    }
    block
}

/// An HPACK string literal, not Huffman-coded, with its 7-bit-prefix length (RFC 7541 §5.1, §5.2).
fn hpack_string(block: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 127 {
        block.push(len as u8);
    } else {
        block.push(127);
        len -= 127;
        while len >= 128 {
            block.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        block.push(len as u8);
    }
    block.extend_from_slice(s);
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// What an attacker sends into an h2c tunnel: the h2 preface, SETTINGS, and on stream 3 (stream 1
/// is the upgraded request) a request for /api/admin claiming `x-user-id: admin`.
fn h2c_attack() -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    let mut headers = h2_get("/api/admin/tunnelled", &[("x-user-id", FORGED)]);
    headers[1].1 = "http".into();
    bytes.extend(frame(0x1, END_STREAM | END_HEADERS, 3, &hpack(&headers)));
    bytes
}

// ----- sending ---------------------------------------------------------------------------------

/// Read until the peer closes, `ANSWER_TIMEOUT` passes, or it has been quiet for `QUIET` after
/// saying something.
async fn read_answer(tls: &mut Tls) -> Vec<u8> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let (mut out, mut buf) = (Vec::new(), [0u8; 8192]);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if out.is_empty() { left } else { QUIET.min(left) };
        match tokio::time::timeout(wait, tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => return out,
        }
    }
}

async fn write(tls: &mut Tls, bytes: &[u8]) {
    logscan::raw(bytes);
    // The gateway may already have closed the connection (that is an answer too).
    let _ = tls.write_all(bytes).await;
}

/// Send a case; what the gateway answered, shortened to its first line (or the frames for h2).
async fn send(gw: &TestGateway, what: &Send, t: &str) -> (String, bool) {
    match what {
        Send::H1(bytes) => {
            let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
            write(&mut tls, bytes.as_bytes()).await;
            (first_line(&read_answer(&mut tls).await), true)
        }
        Send::H1Then(head, then) => {
            let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
            write(&mut tls, head.as_bytes()).await;
            let answer = first_line(&read_answer(&mut tls).await);
            write(&mut tls, then).await;
            let after = read_answer(&mut tls).await;
            (format!("{answer}; then {} bytes back", after.len()), true)
        }
        Send::H2 {
            headers,
            body,
            trailers,
        } => {
            let mut tls = h2_raw(gw).await;
            let mut bytes = Vec::new();
            let ends = body.is_none() && trailers.is_empty();
            let flags = END_HEADERS | if ends { END_STREAM } else { 0 };
            bytes.extend(frame(0x1, flags, 1, &hpack(headers)));
            if let Some(body) = body {
                bytes.extend(frame(0x0, if trailers.is_empty() { END_STREAM } else { 0 }, 1, body));
            }
            if !trailers.is_empty() {
                bytes.extend(frame(0x1, END_STREAM | END_HEADERS, 1, &hpack(trailers)));
            }
            write(&mut tls, &bytes).await;
            let (frames, _) = read_frames(&mut tls, QUIET).await;
            (format!("h2 frames {frames:?}"), true)
        }
        Send::WebSocket => websocket(gw, t).await,
    }
}

/// A WebSocket handshake on /ws with a token and one masked text message; whether it echoed.
async fn websocket(gw: &TestGateway, t: &str) -> (String, bool) {
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n"
    );
    write(&mut tls, head.as_bytes()).await;
    let answer = read_answer(&mut tls).await;
    let status = first_line(&answer);
    if !status.starts_with("HTTP/1.1 101") {
        return (status, false);
    }
    // One masked text frame (RFC 6455 §5.2).
    let (mask, text) = ([7u8, 1, 9, 3], b"hello");
    let mut message = vec![0x81, 0x80 | text.len() as u8];
    message.extend_from_slice(&mask);
    message.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    write(&mut tls, &message).await;
    let echoed = read_answer(&mut tls).await;
    let ok = String::from_utf8_lossy(&echoed).contains("echo:hello");
    (
        format!("{status}; echo {}", if ok { "came back" } else { "missing" }),
        ok,
    )
}

fn first_line(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    match text.lines().next() {
        Some(line) if !line.is_empty() => line.to_owned(),
        _ => "(no answer)".into(),
    }
}

// ----- the matrix ------------------------------------------------------------------------------

async fn matrix(kind: &'static Kind) {
    let backend = tokio::task::spawn_blocking(move || Backend::start(kind))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let gw = TestGateway::start(&backend.url()).await;
    let t = token(USER);
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut done = backend.seen().len();
    for case in cases(&t, kind.websocket) {
        let (answer, worked) = send(&gw, &case.send, &t).await;
        tokio::time::sleep(SETTLE).await;
        let mut seen = backend.seen();
        let deadline = Instant::now() + REACH_TIMEOUT;
        while case.must != Must::KeepTheRule && seen.len() <= done && Instant::now() < deadline {
            tokio::time::sleep(SETTLE).await;
            seen = backend.seen();
        }
        let arrived = &seen[done.min(seen.len())..];
        done = seen.len();
        let mut wrong: Vec<String> = arrived.iter().flat_map(AppSaw::violations).collect();
        match case.must {
            Must::KeepTheRule => {}
            Must::Reach if arrived.is_empty() => wrong.push("the request never reached the app".into()),
            Must::Reach => {}
            Must::Echo => {
                if !worked {
                    wrong.push("the WebSocket did not work end to end".into());
                }
                if !arrived.iter().any(|s| s.kind == "websocket" && s.user_ids() == [USER]) {
                    wrong.push(format!("the app did not see the WebSocket with X-User-Id {USER}"));
                }
            }
        }
        let verdict = if wrong.is_empty() { "ok  " } else { "FAIL" };
        let saw: Vec<String> = arrived.iter().map(AppSaw::summary).collect();
        let _ = writeln!(report, "{verdict} {} | gateway: {answer} | app saw: {saw:?}", case.name);
        if !wrong.is_empty() {
            failures.push(format!("{} | {}: {}", kind.name, case.name, wrong.join("; ")));
        }
    }
    // Anything that arrived after its case was counted.
    tokio::time::sleep(SETTLE * 3).await;
    for late in backend.seen().iter().skip(done) {
        for w in late.violations() {
            failures.push(format!("{} | (late, after the table): {w}", kind.name));
        }
    }
    println!("== {} ==\n{report}", kind.name);
    assert!(
        failures.is_empty(),
        "{} case(s) failed against {}:\n{}",
        failures.len(),
        kind.name,
        failures.join("\n")
    );
}

#[tokio::test]
async fn hypercorn_quart_app_never_sees_a_forged_or_missing_identity() {
    matrix(&HYPERCORN).await;
}

#[tokio::test]
async fn uvicorn_httptools_starlette_app_never_sees_a_forged_or_missing_identity() {
    matrix(&UVICORN_HTTPTOOLS).await;
}

#[tokio::test]
async fn uvicorn_h11_starlette_app_never_sees_a_forged_or_missing_identity() {
    matrix(&UVICORN_H11).await;
}

#[tokio::test]
async fn gunicorn_wsgi_app_never_sees_a_forged_or_missing_identity() {
    matrix(&GUNICORN).await;
}

#[test]
fn the_public_path_reading_is_generous() {
    for public in [
        "/api/health",
        "/docs/a",
        "/docs/a/../b",
        "/docs/x%20y",
        "/api/health?x=1",
    ] {
        assert!(is_public(public), "{public}");
    }
    for path in ESCAPING_PATHS
        .iter()
        .chain(&["/api/admin", "/docs", "/docs/..", "//api/admin"])
    {
        assert!(!is_public(path), "{path}");
    }
}
