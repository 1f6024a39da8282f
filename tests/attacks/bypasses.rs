//! The bypasses an outside attack on the gateway found (issue 13), one test or more each. Every
//! test asserts what the backend received, or that it received nothing.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const H2C: &str = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
const WS: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

// ----- 1. Upgrade: h2c --------------------------------------------------------------------------

#[tokio::test]
async fn an_h2c_upgrade_on_a_public_path_is_forwarded_as_a_plain_request() {
    let (up, gw) = pair("[auth]\npublic_paths = [\"/api/health\", \"/h2c\"]\n").await;
    // `/h2c` is a backend that switches to h2c whatever it is asked (Hypercorn does on any
    // `Upgrade: h2c`): the gateway answers 502 and relays nothing.
    for (path, status) in [("/api/health", "HTTP/1.1 200"), ("/h2c", "HTTP/1.1 502")] {
        up.seen.take();
        let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{H2C}\r\n");
        // What a client would send into the tunnel, were one opened: the HTTP/2 preface, SETTINGS,
        // and then anything at all.
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        bytes.extend_from_slice(&frame(4, 0, 0, &[]));
        let answer = raw_exchange(&gw.ca, gw.addr, &bytes, Duration::from_secs(3)).await;
        assert!(answer.starts_with(status), "{path}: {answer}");
        assert!(
            !answer.contains("h2c-tunnel-open"),
            "{path}: a tunnel was opened: {answer}"
        );
        let seen = up.seen.take();
        assert_eq!(seen.len(), 1, "{path}: one request, nothing after it");
        for gone in ["upgrade", "connection", "http2-settings"] {
            assert!(seen[0].all(gone).is_empty(), "{path}: {gone} reached the backend");
        }
        assert!(seen[0].all("x-user-id").is_empty());
    }
}

#[tokio::test]
async fn an_h2c_upgrade_with_a_token_cannot_carry_another_identity() {
    let (up, gw) = pair("").await;
    let t = token("alice");
    let head = format!("GET /h2c HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n{H2C}\r\n");
    let answer = raw_exchange(&gw.ca, gw.addr, head.as_bytes(), Duration::from_secs(3)).await;
    assert!(!answer.contains("h2c-tunnel-open"), "{answer}");
    let seen = up.seen.last();
    assert_eq!(seen.one("x-user-id").as_deref(), Some("alice"));
    assert!(seen.all("upgrade").is_empty() && seen.all("http2-settings").is_empty());
}

#[tokio::test]
async fn a_101_to_another_protocol_than_websocket_is_502_and_nothing_is_relayed() {
    let (up, gw) = pair("").await;
    let t = token("alice");
    // A WebSocket handshake that the backend answers by switching to h2c.
    let head = format!("GET /h2c HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n{WS}\r\n");
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut rest)).await;
    assert!(!String::from_utf8_lossy(&rest).contains("h2c-tunnel-open"));
    assert!(
        !String::from_utf8_lossy(&rest).contains("PRI *"),
        "bytes were relayed back"
    );
    assert_eq!(up.seen.count(), 1);

    // And a 101 to a request that asked for no upgrade at all.
    let r = gw.client().get("/ws", &[("authorization", &bearer(&t))]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "bad_gateway");
}

#[tokio::test]
async fn a_websocket_handshake_still_tunnels_with_the_gateways_own_upgrade_headers() {
    let (up, gw) = pair("").await;
    let t = token("ws-user");
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\nConnection: keep-alive, Upgrade, X-Private\r\nX-Private: 1\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    tls.write_all(b"hi").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"echo:hi");
    let seen = up.seen.last();
    assert_eq!(seen.one("upgrade").as_deref(), Some("websocket"));
    assert_eq!(seen.one("connection").as_deref(), Some("upgrade"));
    assert!(seen.all("x-private").is_empty());
}

#[tokio::test]
async fn a_request_with_an_upgrade_that_does_not_switch_ends_its_connection() {
    // The framing watcher stops following at an Upgrade head. Were the connection kept, the next
    // request on it would pass unwatched: here an ambiguous one, pipelined behind.
    let (up, gw) = pair("[auth]\npublic_paths = [\"/pub\"]\n").await;
    let bytes = "GET /pub HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n\
                 POST /pub HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n";
    let answer = raw_exchange(&gw.ca, gw.addr, bytes.as_bytes(), Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    let seen = up.seen.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
}

// ----- 2. API tokens cannot act as a login ------------------------------------------------------

#[tokio::test]
async fn an_api_token_is_403_on_refresh_logout_password_and_token_creation() {
    let (up, gw) = pair("").await;
    let (user_id, jwt) = session(&gw, "tok-owner").await;
    let r = gw
        .post_json("/api/auth/tokens", json!({"name": "bot"}), Some(&jwt))
        .await;
    assert_eq!(r.status, 201);
    let api = r.json()["token"].as_str().unwrap().to_owned();

    for (path, body) in [
        ("/api/auth/refresh", json!({})),
        ("/api/auth/logout", json!({})),
        ("/api/auth/logout", json!({"all": true})),
        (
            "/api/auth/password",
            json!({"current_password": PASSWORD, "new_password": "another long password"}),
        ),
        ("/api/auth/tokens", json!({"name": "minted", "expires_in": 315360000})),
    ] {
        for header in ["authorization", "x-api-key"] {
            let value = if header == "authorization" {
                bearer(&api)
            } else {
                api.clone()
            };
            let r = gw
                .client()
                .call(
                    "POST",
                    path,
                    &[(header, &value), ("content-type", "application/json")],
                    Some(body.to_string().into_bytes()),
                )
                .await;
            assert_eq!(r.status, 403, "{path} {body} via {header}: {}", r.text());
            assert_eq!(r.json()["error"], "forbidden");
            assert!(
                r.json()["detail"].as_str().unwrap().contains("login session"),
                "{}",
                r.text()
            );
            assert!(r.json().get("access_token").is_none());
        }
    }
    // Nothing changed: the login still works, the password is the old one, one token exists.
    let r = gw
        .client()
        .get("/api/auth/tokens", &[("authorization", &bearer(&jwt))])
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = gw
        .post_json(
            "/api/auth/login",
            json!({"username": "tok-owner", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    // The API token still does what it is for.
    let r = gw.client().get("/api/data", &[("x-api-key", &api)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some(user_id.as_str()));
    let r = gw.client().get("/api/auth/me", &[("x-api-key", &api)]).await;
    assert_eq!(r.status, 200);
    // A login session can still refresh.
    let r = gw.post_json("/api/auth/refresh", json!({}), Some(&jwt)).await;
    assert_eq!(r.status, 200);
}

// ----- 3. Paths a backend could read differently ------------------------------------------------

#[tokio::test]
async fn encoded_semicolons_and_non_utf8_escapes_are_400_on_h1_and_h2() {
    let (up, gw) = pair("[auth]\npublic_paths = [\"/docs/*\"]\n").await;
    for h2 in [false, true] {
        let client = if h2 { gw.h2_client() } else { gw.client() };
        for path in [
            "/docs/..%3b/api/admin",
            "/docs/..%3B/api/admin",
            "/docs/..%3bjsessionid=1/api/admin",
            "/docs/%3b/x",
            "/docs/%c0%ae%c0%ae/api/admin",
            "/docs/%C0%AE%C0%AE/api/admin",
            "/docs/%e0%80%ae%e0%80%ae/api/admin",
            "/docs/%ff/x",
            "/docs/%c3/x",
        ] {
            let r = client.get(path, &[]).await;
            assert_eq!(r.status, 400, "h2={h2} {path}");
            assert_eq!(r.json()["error"], "invalid_request");
        }
        // A valid UTF-8 escape is an ordinary path.
        let r = client.get("/docs/caf%c3%a9", &[]).await;
        assert_eq!(r.status, 200, "h2={h2}");
    }
    let seen = up.seen.take();
    assert_eq!(seen.len(), 2, "only the two valid paths were forwarded");
    assert!(seen.iter().all(|s| s.target == "/docs/caf%c3%a9"));
}

// ----- 4. Duplicate JSON members ----------------------------------------------------------------

#[tokio::test]
async fn a_duplicate_json_member_is_400_naming_it_on_every_auth_body() {
    let (_up, gw) = pair("").await;
    let (_, jwt) = session(&gw, "dup-owner").await;
    let post = |path: &'static str, body: String, auth: Option<String>| {
        let client = gw.client();
        async move {
            let mut headers = vec![("content-type", "application/json".to_owned())];
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client.call("POST", path, &h, Some(body.into_bytes())).await
        }
    };
    let cases = [
        (
            "/api/auth/register",
            format!(r#"{{"username":"first","username":"second","password":"{PASSWORD}","email":"a@example.com"}}"#),
            None,
            "username",
        ),
        (
            "/api/auth/login",
            format!(r#"{{"username":"dup-owner","password":"wrong password here","password":"{PASSWORD}"}}"#),
            None,
            "password",
        ),
        (
            "/api/auth/password",
            format!(r#"{{"current_password":"{PASSWORD}","new_password":"a new long password","new_password":"x"}}"#),
            Some(bearer(&jwt)),
            "new_password",
        ),
        (
            "/api/auth/tokens",
            r#"{"name":"a","expires_in":60,"expires_in":315360000}"#.to_owned(),
            Some(bearer(&jwt)),
            "expires_in",
        ),
        (
            "/api/auth/logout",
            r#"{"all":false,"all":true}"#.to_owned(),
            Some(bearer(&jwt)),
            "all",
        ),
    ];
    for (path, body, auth, member) in cases {
        let r = post(path, body, auth).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["field"], member, "{path}: {}", r.text());
        assert!(r.json()["detail"].as_str().unwrap().contains(member));
    }
    // Neither name was registered, and the session is still alive.
    for name in ["first", "second"] {
        let r = gw
            .post_json("/api/auth/login", json!({"username": name, "password": PASSWORD}), None)
            .await;
        assert_eq!(r.status, 401, "{name}");
    }
    let r = gw
        .client()
        .get("/api/auth/me", &[("authorization", &bearer(&jwt))])
        .await;
    assert_eq!(r.status, 200);
}

// ----- 5. Two credentials on an upgrade ---------------------------------------------------------

#[tokio::test]
async fn two_credentials_on_a_websocket_handshake_are_401_and_not_forwarded() {
    let (up, gw) = pair("").await;
    let (_, jwt) = session(&gw, "ws-owner").await;
    let api = gw
        .post_json("/api/auth/tokens", json!({"name": "ws"}), Some(&jwt))
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (a, b) = (token("alice"), token("bob"));
    let before = up.seen.count();
    for (query, extra) in [
        (format!("token={a}&token={b}"), String::new()),
        (format!("token={a}&x=1&token"), String::new()),
        (format!("token={a}"), format!("Authorization: Bearer {b}\r\n")),
        (format!("token={a}"), format!("X-API-Key: {api}\r\n")),
        (format!("token={api}"), format!("Authorization: Bearer {b}\r\n")),
        ("token=".to_owned(), format!("Authorization: Bearer {b}\r\n")),
    ] {
        let head = format!("GET /ws?{query} HTTP/1.1\r\nHost: localhost\r\n{extra}{WS}\r\n");
        let answer = raw_exchange(&gw.ca, gw.addr, head.as_bytes(), Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{query} + {extra}: {answer}");
    }
    assert_eq!(up.seen.count(), before, "nothing was forwarded");
    // One query token alone still works.
    let head = format!("GET /ws?token={a} HTTP/1.1\r\nHost: localhost\r\n{WS}\r\n");
    let answer = raw_exchange(&gw.ca, gw.addr, head.as_bytes(), Duration::from_secs(1)).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some("alice"));
}

// ----- 9. The HTTP-to-HTTPS redirect ------------------------------------------------------------

async fn redirect_answer(gw: &TestGateway, host: &str) -> String {
    let addr = gw.redirect.expect("the gateway was started with .redirect()");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET /x?y=1 HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn location(answer: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .map(str::to_owned)
}

#[tokio::test]
async fn the_redirect_names_a_host_the_certificate_or_the_operator_vouches_for() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .extra("[server]\nredirect_https_port = 443\n")
        .redirect()
        .start()
        .await;
    // The test certificate names localhost: a client's Host it covers is kept.
    assert_eq!(
        location(&redirect_answer(&gw, "localhost:8080").await).as_deref(),
        Some("https://localhost/x?y=1")
    );
    // Any other host is replaced by the certificate's name.
    assert_eq!(
        location(&redirect_answer(&gw, "evil.example").await).as_deref(),
        Some("https://localhost/x?y=1")
    );
    // Not a host at all: 400.
    for bad in ["evil.example/x", "a..b", "evil.example:99999", "e vil"] {
        let answer = redirect_answer(&gw, bad).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(location(&answer).is_none());
    }
    // server.public_host wins over everything.
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .extra("[server]\nredirect_https_port = 443\npublic_host = \"gw.example.com\"\n")
        .redirect()
        .start()
        .await;
    for host in ["localhost", "evil.example"] {
        assert_eq!(
            location(&redirect_answer(&gw, host).await).as_deref(),
            Some("https://gw.example.com/x?y=1")
        );
    }
}

// ----- 10. Identity headers other than X-User-Id ------------------------------------------------

#[tokio::test]
async fn identity_headers_that_backends_trust_never_reach_the_backend() {
    let (up, gw) = pair("[auth]\nidentity_headers = [\"X-Tenant-Id\"]\npublic_paths = [\"/pub\"]\n").await;
    let names = [
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
        "X_User_Role",
        "x_remote_user",
        "X-Tenant-Id",
        "X_Tenant_Id",
    ];
    let t = token("alice");
    for (path, auth) in [("/private", Some(bearer(&t))), ("/pub", None)] {
        for h2 in [false, true] {
            let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (*n, "admin")).collect();
            if let Some(a) = &auth {
                headers.push(("authorization", a));
            }
            let client = if h2 { gw.h2_client() } else { gw.client() };
            let r = client.get(path, &headers).await;
            assert_eq!(r.status, 200, "{path} h2={h2}");
            let seen = up.seen.last();
            assert!(
                seen.headers.values().all(|v| v != "admin"),
                "{path} h2={h2}: {:?}",
                seen.names()
            );
        }
    }
}

// ----- 11. Look-alike usernames -----------------------------------------------------------------

#[tokio::test]
async fn a_look_alike_of_a_taken_username_is_409() {
    let (_up, gw) = pair("").await;
    session(&gw, "alice").await;
    // Cyrillic а (U+0430); Cyrillic е and о; a full-width form (folded by RFC 8265 first).
    for name in ["\u{0430}lice", "ALICE", "\u{FF41}lice"] {
        let body = json!({"username": name, "password": PASSWORD, "email": "b@example.com"});
        let r = gw.post_json("/api/auth/register", body, None).await;
        assert_eq!(r.status, 409, "{name}: {}", r.text());
        assert_eq!(r.json()["error"], "conflict");
    }
    let r = gw
        .post_json(
            "/api/auth/register",
            json!({"username": "bob", "password": PASSWORD, "email": "b@example.com"}),
            None,
        )
        .await;
    assert_eq!(r.status, 201);
    let users = gw.gateway.store().list_users().await.unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
}

// ----- 7. An early answer reaches the client ----------------------------------------------------

#[tokio::test]
async fn a_client_still_sending_a_refused_body_reads_the_413_with_requests_and_curl() {
    let (up, gw) = pair("").await;
    let base = format!("https://localhost:{}", gw.addr.port());
    let ca = gw.ca.clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/oversized_bodies.py");
    let (b, c) = (base.clone(), ca.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(&b)
            .arg(&c)
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for case in ["register_100k", "login_8m"] {
        assert_eq!(v[case]["status"], 413, "{case}: {v}");
        assert_eq!(v[case]["json"]["error"], "payload_too_large", "{case}: {v}");
    }

    // curl, over HTTP/1.1, with an 8 MiB body from a file and no `Expect: 100-continue` pause.
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, vec![b'x'; 8 << 20]).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--http1.1",
                "--max-time",
                "30",
                "-H",
                "Content-Type: application/json",
                "-H",
                "Expect:",
            ])
            .arg("--cacert")
            .arg(&ca)
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg("-w")
            .arg("\n%{http_code}")
            .arg(format!("{base}/api/auth/login"))
            .output()
    })
    .await
    .unwrap()
    .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl: {} {text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with("\n413") && text.contains("payload_too_large"), "{text}");
    assert_eq!(up.seen.count(), 0);
}
