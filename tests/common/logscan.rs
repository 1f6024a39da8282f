//! The whole suite runs its in-process gateways at debug log level, into one file per test binary,
//! and the test client records every secret it sends (bearer tokens, API keys, passwords) and every
//! token the gateway hands out. `scripts/scan-logs` then searches every log line for every secret;
//! finding one fails the suite.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, Once, OnceLock};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("logscan")
}

fn stem() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
    format!("{}-{}", exe.unwrap_or_else(|| "test".into()), std::process::id())
}

static INIT: Once = Once::new();
static SECRETS: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Capture this process's logs at debug level (idempotent).
pub fn init() {
    INIT.call_once(|| {
        let _ = std::fs::create_dir_all(dir());
        let Ok(file) = std::fs::File::create(dir().join(format!("{}.log", stem()))) else {
            return;
        };
        // Frame-level transport chatter stays at info; everything else, authgate included, at debug.
        let filter = tracing_subscriber::EnvFilter::new("debug,h2=info,rustls=info,tokio_util=info,hyper_util=info");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init();
    });
}

/// The lines this process has logged so far that contain every one of `needles`.
pub fn lines_with(needles: &[&str]) -> Vec<String> {
    let log = std::fs::read_to_string(dir().join(format!("{}.log", stem()))).unwrap_or_default();
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Remember a secret the suite sent or received (short strings are not secrets worth matching).
pub fn secret(s: &str) {
    let s = s.trim();
    if s.len() < 12 || s.contains('\n') {
        return;
    }
    let file = SECRETS.get_or_init(|| {
        let _ = std::fs::create_dir_all(dir());
        Mutex::new(std::fs::File::create(dir().join(format!("{}.secrets", stem()))).expect("secrets file"))
    });
    if let Ok(mut f) = file.lock() {
        let _ = writeln!(f, "{s}");
    }
}

/// Record the credentials in a request's headers and JSON body.
pub fn request(headers: &[(&str, &str)], body: Option<&[u8]>) {
    for (name, value) in headers {
        match name.to_ascii_lowercase().as_str() {
            "authorization" => {
                if let Some((_, token)) = value.split_once(' ') {
                    secret(token);
                }
            }
            "x-api-key" => secret(value),
            "cookie" => cookies(value),
            _ => {}
        }
    }
    if let Some(form) = body.filter(|b| !b.starts_with(b"{")) {
        for (k, v) in form_urlencoded::parse(form) {
            // The sign-in forms, and an OpenID Provider's token request.
            if k.contains("password") || matches!(&*k, "csrf" | "client_secret" | "code" | "code_verifier") {
                secret(&v);
            }
        }
    }
    if let Some(json) = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok()) {
        for field in ["password", "current_password", "new_password"] {
            if let Some(p) = json.get(field).and_then(|v| v.as_str()) {
                secret(p);
            }
        }
    }
}

/// Record the gateway's cookies (session and CSRF) in a `Cookie` or `Set-Cookie` value.
pub fn cookies(value: &str) {
    for pair in value.split(';') {
        if let Some((name, v)) = pair.trim().split_once('=')
            && name.starts_with("__Host-authgate")
        {
            secret(v);
        }
    }
}

/// Record the cookies an answer sets.
pub fn set_cookies(headers: &http::HeaderMap) {
    for v in headers.get_all(http::header::SET_COOKIE) {
        if let Ok(v) = v.to_str() {
            cookies(v);
        }
    }
}

/// Record tokens handed out in a JSON answer.
pub fn response(body: &[u8]) {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        for field in ["access_token", "token", "id_token", "refresh_token"] {
            if let Some(t) = json.get(field).and_then(|v| v.as_str()) {
                secret(t);
            }
        }
    }
}

/// Record `Authorization:` / `X-API-Key:` lines of a raw request.
pub fn raw(bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).split("\r\n") {
        if let Some((name, value)) = line.split_once(':') {
            request(&[(name.trim(), value.trim())], None);
        }
        if let Some(q) = line.split_once("token=").map(|(_, rest)| rest) {
            secret(q.split([' ', '&']).next().unwrap_or(""));
        }
    }
}
