//! The `authgate` binary as an operator runs it: first run with no set-up, config errors,
//! environment overrides, check-config, and a SIGTERM drain.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use http_body_util::BodyExt;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

/// A command with no inherited AUTHGATE_* / JWT_* variables.
fn authgate(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("AUTHGATE_") || k.starts_with("JWT_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

struct Running {
    child: Child,
    listen: String,
    admin: String,
    /// The start-up line.
    banner: String,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    /// The log so far, and its lines with `target` parsed as JSON: once there are `wanted` of
    /// those, or after 5 s.
    fn json_lines(&self, target: &str, wanted: usize) -> (Vec<String>, Vec<serde_json::Value>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.stderr.lock().unwrap().clone();
            let parsed: Vec<serde_json::Value> = lines
                .iter()
                .filter(|l| l.contains(target))
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
                .collect();
            if parsed.len() >= wanted || std::time::Instant::now() > deadline {
                return (lines, parsed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the binary and wait for its start-up line (JSON logs), returning the bound addresses.
fn spawn(mut cmd: Command) -> Running {
    let mut child = cmd
        .env("AUTHGATE_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Store the line before announcing it, so a test that reads `stderr` after `spawn`
            // returns always finds the start-up line there.
            let starting = line.contains("authgate starting").then(|| line.clone());
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            if let Some(line) = starting {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("no start-up line; stderr: {:?}", lines.lock().unwrap()));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    Running {
        child,
        listen: v["listen"].as_str().unwrap().to_owned(),
        admin: v["admin"].as_str().unwrap().to_owned(),
        banner: line,
        stderr: lines,
    }
}

fn copy_dev_config(dir: &Path, upstream: &str) {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"))
        .unwrap()
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0")
        .replace("http://127.0.0.1:8000", upstream);
    std::fs::write(dir.join("gateway.toml"), toml).unwrap();
}

#[tokio::test]
async fn first_run_generates_a_certificate_and_a_private_secret() {
    use std::os::unix::fs::PermissionsExt;
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    copy_dev_config(dir.path(), &up.url());
    let run = spawn(authgate(dir.path()));
    let cert = dir.path().join("certs/dev-cert.pem");
    assert!(cert.exists() && dir.path().join("certs/dev-key.pem").exists());
    let secret_file = dir.path().join("data/jwt_secret");
    let mode = std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let logs = run.stderr.lock().unwrap().join("\n");
    assert!(
        logs.contains("JWT_SECRET_KEY") && logs.contains("dev-cert.pem"),
        "{logs}"
    );

    // The generated secret signs tokens the gateway accepts, and is never logged.
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(!logs.contains(secret.trim()));
    let t = token_with(
        jsonwebtoken::Algorithm::HS256,
        secret.trim(),
        serde_json::json!({"sub": "first-run", "exp": now() + 60}),
    );
    let client = Client::new(&cert, run.listen.parse().unwrap(), false);
    let r = client.get("/api/search", &[("authorization", &bearer(&t))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some("first-run"));
    assert_eq!(client.get("/api/search", &[]).await.status, 401);

    // The admin listener answers on its own port.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut admin = tokio::net::TcpStream::connect(&run.admin).await.unwrap();
    admin
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    admin.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn production_config_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = authgate(dir.path())
        .args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/production.toml"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jwt.secret") && err.contains("JWT_SECRET_KEY"), "{err}");
    // It generated nothing.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "env-secret-that-must-not-be-printed-0123456789";
    let out = authgate(dir.path())
        .args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/production.toml"),
        ])
        .env("JWT_SECRET_KEY", secret)
        .env("JWT_EXPIRATION", "900")
        .env("AUTHGATE_SERVER__LISTEN", "127.0.0.1:9443")
        .env("AUTHGATE_UPSTREAM__URL", "http://10.1.2.3:8080")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(secret), "{stdout}");
    assert!(stdout.contains("secret = \"***\""), "{stdout}");
    assert!(stdout.contains("expiration = 900"), "{stdout}");
    assert!(stdout.contains("listen = \"127.0.0.1:9443\""), "{stdout}");
    assert!(stdout.contains("http://10.1.2.3:8080"), "{stdout}");
}

#[test]
fn jwt_env_overrides_authgate_env_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        "[server]\nplaintext = true\n[jwt]\nalgorithm = \"HS256\"\nexpiration = 100\nsecret = \"file-secret-file-secret-file-secret-xx\"\n",
    )
    .unwrap();
    let out = authgate(dir.path())
        .args(["check-config", "--config", "g.toml"])
        .env("AUTHGATE_JWT__EXPIRATION", "200")
        .env("AUTHGATE_JWT__ALGORITHM", "HS384")
        .env("JWT_ALGORITHM", "HS512")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("expiration = 200"), "{stdout}");
    assert!(stdout.contains("algorithm = \"HS512\""), "{stdout}");
}

#[test]
fn check_config_refuses_a_backend_path_that_takes_the_gateways_login() {
    let dir = tempfile::tempdir().unwrap();
    let head = "[server]\nplaintext = true\n[jwt]\nsecret = \"file-secret-file-secret-file-secret-xx\"\n[auth]\n";
    for (auth, needles) in [
        (
            "backend_paths = [\"/api/auth/login\"]",
            &["auth.backend_paths", "/api/auth/login", "auth.api_prefix"][..],
        ),
        ("api_prefix = \"/_auth\"", &["auth.api_prefix", "web.prefix"]),
        (
            "api_prefix = \"/gw/auth\"\nbackend_paths = [\"/api/auth/callback\"]",
            &["auth.backend_paths", "below"],
        ),
    ] {
        std::fs::write(dir.path().join("g.toml"), format!("{head}{auth}\n")).unwrap();
        let out = authgate(dir.path())
            .args(["check-config", "--config", "g.toml"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{auth} was accepted");
        for needle in needles {
            assert!(stderr.contains(needle), "{auth}: {needle} not in {stderr}");
        }
    }
    let ok = "api_prefix = \"/gw/auth\"\nbackend_paths = [\"/gw/auth/callback\"]\n";
    std::fs::write(dir.path().join("g.toml"), format!("{head}{ok}")).unwrap();
    let out = authgate(dir.path())
        .args(["check-config", "--config", "g.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("api_prefix = \"/gw/auth\""), "{stdout}");
}

#[test]
fn check_config_masks_rag_modulos_secret_read_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        "[server]\nplaintext = true\n[jwt]\nsecret = \"file-secret-file-secret-file-secret-xx\"\n[upstream]\nprofile = \"rag_modulo\"\n",
    )
    .unwrap();
    let secret = "rag-modulo-secret-from-the-environment-0123456789";
    let out = authgate(dir.path())
        .args(["check-config", "--config", "g.toml"])
        .env("AUTHGATE_UPSTREAM__RAG_MODULO__JWT_SECRET", secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(secret), "{stdout}");
    assert!(stdout.contains("profile = \"rag_modulo\""), "{stdout}");
    assert!(stdout.contains("jwt_secret = \"***\""), "{stdout}");
}

#[test]
fn authgate_variables_that_are_not_config_keys_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        "[server]\nplaintext = true\n[jwt]\nsecret = \"file-secret-file-secret-file-secret-xx\"\n",
    )
    .unwrap();
    // What Kubernetes injects into every pod of a namespace with a Service named `authgate`, and
    // the CLI's own AUTHGATE_CONFIG.
    let kubernetes = [
        ("AUTHGATE_PORT", "tcp://10.96.0.17:8443"),
        ("AUTHGATE_PORT_8443_TCP", "tcp://10.96.0.17:8443"),
        ("AUTHGATE_PORT_8443_TCP_ADDR", "10.96.0.17"),
        ("AUTHGATE_PORT_8443_TCP_PORT", "8443"),
        ("AUTHGATE_PORT_8443_TCP_PROTO", "tcp"),
        ("AUTHGATE_SERVICE_HOST", "10.96.0.17"),
        ("AUTHGATE_SERVICE_PORT", "8443"),
        ("AUTHGATE_SERVICE_PORT_HTTPS", "8443"),
    ];
    for args in [&["check-config"][..], &["check-config", "--config", "g.toml"]] {
        let mut cmd = authgate(dir.path());
        cmd.args(args).env("AUTHGATE_CONFIG", "g.toml").envs(kubernetes);
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A Service named `authgate-x--y` gives variables with a double underscore: not a section.
    let out = authgate(dir.path())
        .args(["check-config", "--config", "g.toml"])
        .env("AUTHGATE_X__Y_SERVICE_HOST", "10.96.0.18")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // An unknown key inside a known section is still an error naming it.
    let out = authgate(dir.path())
        .args(["check-config", "--config", "g.toml"])
        .envs(kubernetes)
        .env("AUTHGATE_SERVER__LISTN", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"));
}

#[test]
fn config_errors_name_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, key) in [
        (
            "[server]\nplaintext = true\nlisten_addr = \"x\"\n[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
            "listen_addr",
        ),
        (
            "[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
            "server.plaintext = true",
        ),
        ("[server]\nplaintext = true\n[jwt]\nsecret = \"short\"\n", "jwt.secret"),
        (
            "[server]\nplaintext = true\n[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n[upstream]\nurl = \"localhost:8000\"\n",
            "upstream.url",
        ),
    ] {
        std::fs::write(dir.path().join("bad.toml"), toml).unwrap();
        for args in [&["check-config", "--config", "bad.toml"][..], &["--config", "bad.toml"]] {
            let out = authgate(dir.path()).args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?} {toml}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(key) && err.contains("Fix"), "{key}: {err}");
            assert!(!err.contains("short\""), "{err}");
        }
    }
    let out = authgate(dir.path())
        .args(["--config", "missing.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        format!(
            "[server]\nplaintext = true\nlisten = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
            busy.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = authgate(dir.path()).args(["--config", "g.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen") && err.contains("cannot listen"), "{err}");
}

#[test]
fn unreadable_certificate_and_unreachable_store_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n";
    let listen = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let cases = [
        (
            format!("{listen}[tls]\ncert = \"missing-cert.pem\"\nkey = \"missing-key.pem\"\n{secret}"),
            "tls.cert",
        ),
        (
            format!(
                "[server]\nplaintext = true\n{}{secret}[store]\nurl = \"postgres://authgate@127.0.0.1:1/authgate\"\n",
                &listen[9..]
            ),
            "store.url",
        ),
    ];
    for (toml, key) in cases {
        std::fs::write(dir.path().join("g.toml"), &toml).unwrap();
        let started = std::time::Instant::now();
        let out = authgate(dir.path()).args(["--config", "g.toml"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{key}: took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn the_start_up_banner_names_listeners_mode_store_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        "[server]\nplaintext = true\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
    )
    .unwrap();
    let mut cmd = authgate(dir.path());
    cmd.args(["--config", "g.toml"]);
    let run = spawn(cmd);
    let banner = &run.banner;
    let v: serde_json::Value = serde_json::from_str(banner).unwrap();
    assert_eq!(v["mode"], "plaintext", "{banner}");
    assert_eq!(v["store"], "sqlite", "{banner}");
    assert_eq!(v["cache"], "in-process only", "{banner}");
    assert!(run.listen.starts_with("127.0.0.1:") && run.admin.starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_then_exits_0() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    copy_dev_config(dir.path(), &up.url());
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/jwt_secret"), SECRET).unwrap();
    let mut run = spawn(authgate(dir.path()));
    let client = Client::new(
        &dir.path().join("certs/dev-cert.pem"),
        run.listen.parse().unwrap(),
        false,
    );
    let req = client
        .request("GET", "/stream?chunks=8&gap_ms=150")
        .header("authorization", bearer(&token("u1")))
        .body(BodyExt::boxed(http_body_util::Empty::new()))
        .unwrap();
    let resp = client.send(req).await;
    assert_eq!(resp.status(), 200);
    let pid = run.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 64, "the stream was cut short");
    let status = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        loop {
            if let Some(s) = run.child.try_wait().unwrap() {
                return Some(s);
            }
            if started.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap()
    .expect("authgate did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn stalled_handshake_and_slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .extra("[server]\ntls_handshake_timeout = \"500ms\"\nheader_read_timeout = \"500ms\"\n")
        .start()
        .await;
    // A TCP connection that never starts TLS is closed.
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(3));

    // Headers trickled and never finished: closed at the header timeout.
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(up.seen.count(), 0);
}

#[test]
fn operator_cli_adds_lists_and_disables_users() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        "[server]\nplaintext = true\n[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n[store]\nurl = \"sqlite://data/ops.db?mode=rwc\"\n",
    )
    .unwrap();
    let mut child = authgate(dir.path())
        .args([
            "user",
            "add",
            "Operator",
            "--email",
            "op@example.com",
            "--password-stdin",
            "--config",
            "g.toml",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"operator password 1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("created user Operator") && !stdout.contains("operator password 1"),
        "{stdout}"
    );

    // Without --password-stdin a password is generated and shown once.
    let out = authgate(dir.path())
        .args([
            "user",
            "add",
            "second",
            "--email",
            "s@example.com",
            "--config",
            "g.toml",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("password (shown once): "));
    // Clashing names are refused.
    let out = authgate(dir.path())
        .args([
            "user",
            "add",
            "OPERATOR",
            "--email",
            "x@example.com",
            "--config",
            "g.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let list = || {
        let out = authgate(dir.path())
            .args(["user", "list", "--config", "g.toml"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = list();
    assert!(
        before.contains("Operator") && before.contains("second") && !before.contains("disabled"),
        "{before}"
    );
    let out = authgate(dir.path())
        .args(["user", "disable", "operator", "--config", "g.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let after = list();
    let line = after.lines().find(|l| l.contains("Operator")).unwrap();
    assert!(line.contains(" disabled "), "{after}");
    assert!(line.ends_with(" -"), "a local account links no provider: {after}");
    let out = authgate(dir.path())
        .args(["user", "disable", "ghost", "--config", "g.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // The database is under data/, which git ignores.
    assert!(dir.path().join("data/ops.db").exists());
}

#[tokio::test]
async fn audit_events_are_json_lines_with_user_ip_and_request_id_and_no_secret() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    copy_dev_config(dir.path(), &up.url());
    let run = spawn(authgate(dir.path()));
    let c = Client::new(
        &dir.path().join("certs/dev-cert.pem"),
        run.listen.parse().unwrap(),
        false,
    );
    let post = |path: &'static str, body: serde_json::Value, auth: Option<String>| {
        let c = &c;
        async move { c.post_json(path, body, auth.as_deref()).await }
    };
    let password = "audit horse battery";
    let new_password = "audit horse battery 2";
    let r = post(
        "/api/auth/register",
        serde_json::json!({"username": "auditor", "password": password, "email": "a@example.com"}),
        None,
    )
    .await;
    assert_eq!(r.status, 201);
    let user_id = r.json()["user_id"].as_str().unwrap().to_owned();
    let bad = post(
        "/api/auth/login",
        serde_json::json!({"username": "auditor", "password": "wrong horse battery"}),
        None,
    )
    .await;
    assert_eq!(bad.status, 401);
    let login = post(
        "/api/auth/login",
        serde_json::json!({"username": "auditor", "password": password}),
        None,
    )
    .await;
    let jwt = login.json()["access_token"].as_str().unwrap().to_owned();
    let created = post("/api/auth/tokens", serde_json::json!({"name": "ci"}), Some(jwt.clone())).await;
    assert_eq!(created.status, 201);
    let api = created.json()["token"].as_str().unwrap().to_owned();
    let token_id = created.json()["id"].as_str().unwrap().to_owned();
    let r = c
        .call(
            "DELETE",
            &format!("/api/auth/tokens/{token_id}"),
            &[("authorization", &bearer(&jwt))],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = post(
        "/api/auth/password",
        serde_json::json!({"current_password": password, "new_password": new_password}),
        Some(jwt.clone()),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        post("/api/auth/logout", serde_json::json!({}), Some(jwt.clone()))
            .await
            .status,
        204
    );

    let wanted = [
        "register",
        "login_failure",
        "login_success",
        "token_created",
        "token_revoked",
        "password_change",
        "logout",
    ];
    let (lines, audit) = run.json_lines("authgate::audit", wanted.len());
    for l in &lines {
        for secret in [password, new_password, jwt.as_str(), api.as_str()] {
            assert!(!l.contains(secret), "a secret in the log: {l}");
        }
    }
    let events: Vec<&str> = audit.iter().map(|v| v["event"].as_str().unwrap_or("?")).collect();
    assert_eq!(events, wanted, "{audit:?}");
    for v in &audit {
        assert_eq!(v["target"], "authgate::audit", "{v}");
        assert_eq!(v["user_id"], user_id.as_str(), "{v}");
        assert_eq!(v["peer"], "127.0.0.1", "{v}");
        assert_eq!(v["client"], "127.0.0.1", "{v}");
        assert!(v["request_id"].as_str().is_some_and(|r| r.len() >= 8), "{v}");
    }
}

#[tokio::test]
async fn the_access_line_names_request_status_user_peer_and_client_but_no_query_or_token() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    copy_dev_config(dir.path(), &up.url());
    let toml = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    let toml = toml.replacen("[server]\n", "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n", 1);
    std::fs::write(dir.path().join("gateway.toml"), toml).unwrap();
    let mut cmd = authgate(dir.path());
    cmd.env("JWT_SECRET_KEY", SECRET);
    let run = spawn(cmd);
    let c = Client::new(
        &dir.path().join("certs/dev-cert.pem"),
        run.listen.parse().unwrap(),
        false,
    );
    let jwt = token("access-user");
    let query = "q=private-query-text";
    let ok = c
        .get(
            &format!("/api/search?{query}"),
            &[
                ("authorization", &bearer(&jwt)),
                ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some("access-user"));
    let refused = c.get("/api/other", &[]).await;
    assert_eq!(refused.status, 401);

    let request_id = |r: &Reply| r.headers["x-request-id"].to_str().unwrap().to_owned();
    let (lines, access) = run.json_lines("authgate::access", 2);
    assert_eq!(access.len(), 2, "{lines:?}");
    let (a, b) = (&access[0], &access[1]);
    assert_eq!(a["method"], "GET", "{a}");
    assert_eq!(a["path"], "/api/search", "{a}");
    assert_eq!(a["status"], 200, "{a}");
    assert_eq!(a["user_id"], "access-user", "{a}");
    assert_eq!(a["auth_method"], "jwt", "{a}");
    assert_eq!(a["route"], "protected", "{a}");
    assert_eq!(a["request_id"], request_id(&ok).as_str(), "{a}");
    assert_eq!(a["peer"], "127.0.0.1", "{a}");
    // The peer is a trusted proxy: the client is the address it saw, not one the client wrote.
    assert_eq!(a["client"], "203.0.113.9", "{a}");
    assert!(a["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{a}");

    assert_eq!(b["path"], "/api/other", "{b}");
    assert_eq!(b["status"], 401, "{b}");
    assert!(b["user_id"].is_null(), "{b}");
    assert_eq!(b["request_id"], request_id(&refused).as_str(), "{b}");
    assert_eq!(b["client"], "127.0.0.1", "{b}");

    for l in &lines {
        assert!(!l.contains("private-query-text") && !l.contains(&jwt), "{l}");
    }
}

#[tokio::test]
async fn a_policy_names_its_rule_in_the_access_line_and_check_config_refuses_a_shadowed_rule() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    copy_dev_config(dir.path(), &up.url());
    let mut toml = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    let rule =
        "\n[[policy.rules]]\npaths = [\"/api/mine/*\"]\nallow = [\"user:policy-user\"]\ndescription = \"owner only\"\n";
    toml.push_str(rule);
    std::fs::write(dir.path().join("gateway.toml"), &toml).unwrap();

    // A second rule the first covers entirely is refused, naming both and the key.
    let shadowed =
        format!("{toml}[[policy.rules]]\nmethods = [\"GET\"]\npaths = [\"/api/mine/a\"]\nallow = [\"role:admin\"]\n");
    std::fs::write(dir.path().join("shadowed.toml"), shadowed).unwrap();
    let out = authgate(dir.path())
        .env("JWT_SECRET_KEY", SECRET)
        .args(["check-config", "--config", "shadowed.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.rules") && err.contains("rule 2 is shadowed by rule 1 (\"owner only\")"),
        "{err}"
    );

    let mut cmd = authgate(dir.path());
    cmd.env("JWT_SECRET_KEY", SECRET);
    let run = spawn(cmd);
    let c = Client::new(
        &dir.path().join("certs/dev-cert.pem"),
        run.listen.parse().unwrap(),
        false,
    );
    let owner = bearer(&token("policy-user"));
    let other = bearer(&token("someone-else"));
    assert_eq!(c.get("/api/mine/1", &[("authorization", &owner)]).await.status, 200);
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some("policy-user"));
    let refused = c.get("/api/mine/1", &[("authorization", &other)]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "forbidden");
    assert_eq!(c.get("/api/other", &[("authorization", &other)]).await.status, 200);
    assert_eq!(up.seen.count(), 2, "the refused request reached the backend");

    let (lines, access) = run.json_lines("authgate::access", 3);
    let rules: Vec<(&str, i64)> = access
        .iter()
        .map(|a| (a["rule"].as_str().unwrap_or("?"), a["status"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(
        rules,
        [("owner only", 200), ("owner only", 403), ("default", 200)],
        "{lines:?}"
    );
}

#[test]
fn operator_cli_sets_roles_and_groups_and_explains_a_decision() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        "[server]\nplaintext = true\n[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n[store]\nurl = \"sqlite://data/ops.db?mode=rwc\"\n\
         [policy]\ndefault = \"deny\"\n[[policy.rules]]\nmethods = [\"GET\"]\npaths = [\"/api/collections/*\"]\nallow = [\"group:research\"]\ndescription = \"research reads\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = authgate(dir.path())
            .args(args)
            .args(["--config", "g.toml"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(run(&["user", "add", "alice", "--email", "a@example.com"]).0, Some(0));
    let explain = ["policy", "explain", "--user", "alice", "GET", "/api/collections/1"];
    let (code, out, _) = run(&explain);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("decision: deny") && out.contains("rule: research reads"),
        "{out}"
    );

    let (code, out, _) = run(&["user", "role", "alice", "admin"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("now has role admin"), "{out}");
    let (code, _, err) = run(&["user", "role", "alice", "root"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("ROLE: must be user or admin"), "{err}");
    let (code, out, _) = run(&["user", "groups", "alice", "add", "research"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("group: research (local)") && out.contains("role: admin"),
        "{out}"
    );

    let (_, out, _) = run(&explain);
    assert!(
        out.contains("decision: allow") && out.contains("rule: research reads"),
        "{out}"
    );
    let (_, out, _) = run(&["policy", "explain", "--user", "alice", "DELETE", "/api/collections/1"]);
    assert!(out.contains("decision: deny") && out.contains("rule: default"), "{out}");
    let (_, out, _) = run(&["policy", "explain", "GET", "/api/collections/1"]);
    assert!(out.contains("401"), "{out}");

    let (code, out, _) = run(&["user", "groups", "alice", "remove", "research"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("groups: (none)"), "{out}");
    let (code, _, err) = run(&["user", "groups", "nobody"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no user `nobody`"), "{err}");
}

#[tokio::test]
async fn operator_cli_makes_scoped_tokens_that_a_running_gateway_enforces() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    copy_dev_config(dir.path(), &up.url());
    let run_cli = |args: &[&str]| {
        let out = authgate(dir.path())
            .env("JWT_SECRET_KEY", SECRET)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        run_cli(&["user", "add", "scoper", "--email", "s@example.com"]).0,
        Some(0)
    );
    let create = ["token", "create", "--user", "scoper", "--name"];
    let (code, read, err) = run_cli(&[&create[..], &["ro", "--scope", "read"]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("scopes read"), "{err}");
    let read = read.trim().to_owned();
    logscan::secret(&read);
    // Repeated and comma-separated, duplicates dropped.
    let (code, _, err) = run_cli(
        &[
            &create[..],
            &[
                "mixed",
                "--scope",
                "ingest,read",
                "--scope",
                "docs:write",
                "--scope",
                "read",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("scopes ingest,read,docs:write"), "{err}");
    let (code, full, _) = run_cli(&[&create[..], &["plain"]].concat());
    assert_eq!(code, Some(0));
    logscan::secret(full.trim());
    // Bad names are refused before the store is touched, naming the flag.
    for bad in ["Read", "read,", "a b", &"x".repeat(65)] {
        let (code, _, err) = run_cli(&[&create[..], &["bad", "--scope", bad]].concat());
        assert_eq!(code, Some(1), "{bad}");
        assert!(
            err.contains("--scope: must each be 1 to 64 of a-z 0-9 _ . : -"),
            "{bad}: {err}"
        );
    }
    let (code, listed, _) = run_cli(&["token", "list", "--user", "scoper"]);
    assert_eq!(code, Some(0));
    let mut scopes: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split('\t').find_map(|f| f.strip_prefix("scopes=")))
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["full", "ingest,read,docs:write", "read"], "{listed}");
    // No secret, and no token named `bad` (its name field, not a substring: an id's hex can hold "bad").
    assert!(!listed.contains(&read[4..]), "{listed}");
    assert!(!listed.lines().any(|l| l.split('\t').nth(1) == Some("bad")), "{listed}");

    // policy explain with --scope: the read scope allows GET and refuses POST.
    let (_, out, _) = run_cli(&[
        "policy", "explain", "--user", "scoper", "--scope", "read", "GET", "/api/x",
    ]);
    assert!(out.contains("decision: allow") && out.contains("scopes read"), "{out}");
    let (_, out, _) = run_cli(&[
        "policy", "explain", "--user", "scoper", "--scope", "read", "POST", "/api/x",
    ]);
    assert!(
        out.contains("decision: deny") && out.contains("outside the credential's scopes"),
        "{out}"
    );
    let (_, out, _) = run_cli(&["policy", "explain", "--user", "scoper", "POST", "/api/x"]);
    assert!(out.contains("decision: allow"), "{out}");

    // A running gateway on the same store: the read token reads, and only reads.
    let (_, users, _) = run_cli(&["user", "list"]);
    let mut cmd = authgate(dir.path());
    cmd.env("JWT_SECRET_KEY", SECRET);
    let running = spawn(cmd);
    let c = Client::new(
        &dir.path().join("certs/dev-cert.pem"),
        running.listen.parse().unwrap(),
        false,
    );
    let auth = bearer(&read);
    let ok = c.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let id = up.seen.last().one("x-user-id").unwrap();
    assert!(
        users.lines().any(|l| l.starts_with(&id) && l.contains("scoper")),
        "{users}"
    );
    let refused = c
        .call("POST", "/api/x", &[("authorization", &auth)], Some(b"{}".to_vec()))
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"], "forbidden");
    assert_eq!(up.seen.count(), 1, "the refused POST reached the backend");
    let ok = c
        .call("POST", "/api/x", &[("authorization", &bearer(full.trim()))], None)
        .await;
    assert_eq!(ok.status, 200);
    // Without rules, a scoped token's decisions name the default in the access line; a full
    // credential's name no rule.
    let (lines, access) = running.json_lines("authgate::access", 3);
    let rules: Vec<(Option<&str>, i64)> = access
        .iter()
        .map(|a| (a["rule"].as_str(), a["status"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(
        rules,
        [(Some("default"), 200), (Some("default"), 403), (None, 200)],
        "{lines:?}"
    );
}

#[test]
fn operator_cli_stores_backend_keys_from_stdin_lists_them_without_key_material_and_rotates() {
    const KEK1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const KEK2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    const KEY: &str = "ragflow-Y2xpLXRlc3Qta2V5LWZvci1hbGljZQ";
    let dir = tempfile::tempdir().unwrap();
    let write_config = |ragflow: &str| {
        std::fs::write(
            dir.path().join("g.toml"),
            format!(
                "[server]\nplaintext = true\n[jwt]\nsecret = \"0123456789abcdef0123456789abcdef\"\n[store]\nurl = \"sqlite://data/bk.db?mode=rwc\"\n{ragflow}"
            ),
        )
        .unwrap();
    };
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = authgate(dir.path())
            .args(args)
            .args(["--config", "g.toml"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that fails before reading stdin closes it: a broken pipe is no failure here.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    write_config("");
    assert_eq!(
        run(&["user", "add", "alice", "--email", "a@example.com"], "").0,
        Some(0)
    );
    let (code, _, err) = run(&["backend-key", "set", "--user", "alice"], &format!("{KEY}\n"));
    assert_eq!(code, Some(1));
    assert!(err.contains("upstream.profile") && err.contains("ragflow"), "{err}");

    write_config(&format!(
        "[upstream]\nprofile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"{KEK1}\"\n"
    ));
    let (code, out, err) = run(&["backend-key", "set", "--user", "alice"], &format!("{KEY}\n"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("stored the backend key of user alice"), "{out}");
    assert!(!out.contains(KEY) && !err.contains(KEY), "{out}{err}");
    let (code, out, _) = run(&["backend-key", "set", "--group", "research"], "ragflow-group-key\r\n");
    assert_eq!(code, Some(0));
    assert!(out.contains("group research"), "{out}");
    for (bad, why) in [
        ("", "empty"),
        ("\n", "empty"),
        ("two words\n", "space"),
        ("a\nb\n", "control"),
    ] {
        let (code, _, err) = run(&["backend-key", "set", "--user", "alice"], bad);
        assert_eq!(code, Some(1), "{bad:?}");
        assert!(err.contains("stdin:") && err.contains(why), "{bad:?}: {err}");
    }
    let (code, _, err) = run(&["backend-key", "set", "--user", "nobody"], "k\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("no user `nobody`"), "{err}");
    let (code, _, err) = run(&["backend-key", "set"], "k\n");
    assert_eq!(code, Some(2), "clap wants --user or --group: {err}");

    let (code, out, _) = run(&["backend-key", "list"], "");
    assert_eq!(code, Some(0));
    assert!(out.contains("alice") && out.contains("research"), "{out}");
    assert!(!out.contains(KEY) && !out.contains("ragflow-group-key"), "{out}");
    let db = std::fs::read(dir.path().join("data/bk.db")).unwrap();
    let wal = std::fs::read(dir.path().join("data/bk.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "key stored in the clear"
        );
    }
    let (_, shown, _) = run(&["check-config"], "");
    assert!(!shown.contains(KEK1), "{shown}");

    // Rotation: the new key seals, the old one only opens; after `rotate` it can go.
    let old_id = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_owned();
    write_config(&format!(
        "[upstream]\nprofile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"{KEK2}\"\nprevious_keys = [\"{KEK1}\"]\n"
    ));
    let (code, out, err) = run(&["backend-key", "rotate"], "");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("re-sealed 2 backend key(s)"), "{out}");
    let (_, out, _) = run(&["backend-key", "list"], "");
    assert!(!out.contains(&old_id), "{out}");
    write_config(&format!(
        "[upstream]\nprofile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"{KEK2}\"\n"
    ));
    let (code, out, _) = run(&["backend-key", "rotate"], "");
    assert_eq!(code, Some(0));
    assert!(out.contains("re-sealed 0") && out.contains("2 already were"), "{out}");

    let (code, out, _) = run(&["backend-key", "remove", "--user", "alice"], "");
    assert_eq!(code, Some(0));
    assert!(out.contains("removed the backend key of user alice"), "{out}");
    let (_, out, _) = run(&["backend-key", "remove", "--user", "alice"], "");
    assert!(out.contains("had no backend key"), "{out}");
    let (_, out, _) = run(&["backend-key", "list"], "");
    assert!(!out.contains("alice") && out.contains("research"), "{out}");
}
