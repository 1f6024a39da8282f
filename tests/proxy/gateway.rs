//! The gateway core end to end: real sockets, a rustls client, a recording upstream.

use std::time::{Duration, Instant};

use crate::common::*;
use http_body_util::BodyExt;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ----- authentication -------------------------------------------------------------------------

#[tokio::test]
async fn valid_jwt_is_forwarded_with_trusted_user_id_and_no_credentials() {
    let (up, gw) = pair("").await;
    let t = token("123e4567-e89b-12d3-a456-426614174000");
    let r = gw
        .client()
        .call(
            "POST",
            "/api/search?q=1",
            &[("authorization", &bearer(&t)), ("content-type", "application/json")],
            Some(b"{\"question\":\"x\"}".to_vec()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/api/search?q=1");
    assert_eq!(
        seen.one("x-user-id").as_deref(),
        Some("123e4567-e89b-12d3-a456-426614174000")
    );
    assert!(seen.all("authorization").is_empty());
    assert_eq!(seen.body, b"{\"question\":\"x\"}");
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let (up, gw) = pair("").await;
    let t = token("u1");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = gw
            .client()
            .get("/x", &[("authorization", &format!("{scheme} {t}"))])
            .await;
        assert_eq!(r.status, 200, "{scheme}");
    }
    assert_eq!(up.seen.count(), 3);
}

#[tokio::test]
async fn missing_and_invalid_tokens_are_401_and_never_forwarded() {
    let (up, gw) = pair("").await;
    let now = now();
    let good_claims = json!({"sub": "u", "exp": now + 600, "iat": now});
    let none = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            e.encode(r#"{"alg":"none","typ":"JWT"}"#),
            e.encode(good_claims.to_string())
        )
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("alg none", Some(bearer(&none))),
        (
            "HS512",
            Some(bearer(&token_with(Algorithm::HS512, SECRET, good_claims.clone()))),
        ),
        (
            "another key",
            Some(bearer(&token_with(
                Algorithm::HS256,
                "another-secret-another-secret-another",
                good_claims.clone(),
            ))),
        ),
        (
            "expired",
            Some(bearer(&token_with(
                Algorithm::HS256,
                SECRET,
                json!({"sub":"u","exp": now - 3600}),
            ))),
        ),
        (
            "no exp",
            Some(bearer(&token_with(Algorithm::HS256, SECRET, json!({"sub":"u"})))),
        ),
        ("garbage", Some("Bearer not.a.jwt".to_string())),
        ("basic", Some("Basic dXNlcjpwYXNz".to_string())),
        ("empty bearer", Some("Bearer ".to_string())),
    ];
    for (what, auth) in cases {
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
        let r = gw.client().get("/api/collections", &headers).await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(
            r.headers["www-authenticate"], "Bearer error=\"invalid_token\"",
            "{what}"
        );
        let body = r.json();
        assert_eq!(body["error"], "invalid_token", "{what}");
        assert!(body["detail"].is_string(), "{what}");
    }
    assert_eq!(up.seen.count(), 0, "the backend must receive nothing");
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_when_configured() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .extra("[jwt]\nissuer = \"authgate\"\naudience = \"rag\"\n")
        .start()
        .await;
    let now = now();
    let ok = token_with(
        Algorithm::HS256,
        SECRET,
        json!({"sub":"u","exp":now+60,"iss":"authgate","aud":"rag"}),
    );
    let wrong = token_with(
        Algorithm::HS256,
        SECRET,
        json!({"sub":"u","exp":now+60,"iss":"other","aud":"rag"}),
    );
    let none = token("u");
    assert_eq!(
        gw.client().get("/a", &[("authorization", &bearer(&ok))]).await.status,
        200
    );
    assert_eq!(
        gw.client()
            .get("/a", &[("authorization", &bearer(&wrong))])
            .await
            .status,
        401
    );
    assert_eq!(
        gw.client().get("/a", &[("authorization", &bearer(&none))]).await.status,
        401
    );
    assert_eq!(up.seen.count(), 1);
}

// ----- identity headers -----------------------------------------------------------------------

#[tokio::test]
async fn client_sent_user_id_is_replaced_in_every_spelling() {
    let (up, gw) = pair("").await;
    let t = token("real-user");
    // Raw bytes, so the header spellings reach the gateway exactly as written.
    let req = format!(
        "GET /data HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\nX-User-Id: admin\r\nx-user-id: admin2\r\nX_User_Id: admin3\r\nx_user_id: admin4\r\nConnection: close\r\n\r\n"
    );
    let resp = raw_exchange(&gw.ca, gw.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = up.seen.last();
    assert_eq!(seen.all("x-user-id"), vec!["real-user"]);
    assert!(
        seen.names()
            .iter()
            .all(|n| n.replace('_', "-") != "x-user-id" || n == "x-user-id"),
        "{:?}",
        seen.names()
    );
}

#[tokio::test]
async fn connection_header_cannot_remove_the_user_id() {
    let (up, gw) = pair("").await;
    let t = token("real-user");
    let req = format!(
        "GET /data HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\nConnection: close, X-User-Id, X-Forwarded-For, X-Request-Id\r\n\r\n"
    );
    let resp = raw_exchange(&gw.ca, gw.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = up.seen.last();
    assert_eq!(seen.one("x-user-id").as_deref(), Some("real-user"));
    assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert!(seen.one("x-request-id").is_some());
    assert!(
        seen.all("connection")
            .iter()
            .all(|c| !c.to_ascii_lowercase().contains("x-user-id"))
    );
}

#[tokio::test]
async fn public_paths_are_forwarded_without_credentials_or_identity() {
    let (up, gw) = pair("").await;
    let t = token("u1");
    for path in ["/api/health", "/docs", "/docs/index.html"] {
        let r = gw
            .client()
            .get(path, &[("authorization", &bearer(&t)), ("x-user-id", "spoofed")])
            .await;
        assert_eq!(r.status, 200, "{path}");
        let seen = up.seen.last();
        assert_eq!(seen.target, path);
        assert!(
            seen.all("x-user-id").is_empty(),
            "{path}: public requests carry no X-User-Id"
        );
        assert!(seen.all("authorization").is_empty(), "{path}");
    }
    // Near misses are protected.
    for path in ["/api/healthz", "/docsx", "/API/health", "/api/health/x"] {
        assert_eq!(gw.client().get(path, &[]).await.status, 401, "{path}");
    }
    assert_eq!(up.seen.count(), 3);
}

#[tokio::test]
async fn forwarding_headers_and_request_id() {
    let (up, gw) = pair("").await;
    let t = token("u1");
    let r = gw
        .client()
        .get(
            "/x",
            &[
                ("authorization", &bearer(&t)),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "http"),
                ("x-request-id", "req-abc-123"),
                ("x-original-url", "/admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-request-id"], "req-abc-123");
    let seen = up.seen.last();
    // 127.0.0.1 is not a trusted proxy here: the client's X-Forwarded-For is replaced.
    assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        seen.one("x-forwarded-host").as_deref(),
        Some(format!("localhost:{}", gw.addr.port()).as_str())
    );
    assert_eq!(seen.one("x-request-id").as_deref(), Some("req-abc-123"));
    assert!(seen.all("x-original-url").is_empty());
    assert_eq!(seen.one("host").as_deref(), Some(up.addr.to_string().as_str()));
    // The upstream's hop-by-hop headers do not reach the client.
    assert!(!r.headers.contains_key("x-upstream-private"));
    // A generated id when none is sent.
    let r = gw.client().get("/x", &[("authorization", &bearer(&t))]).await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(up.seen.last().one("x-request-id").as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_for_is_appended_to() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .extra("[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
        .start()
        .await;
    let r = gw
        .client()
        .get(
            "/x",
            &[
                ("authorization", &bearer(&token("u"))),
                ("x-forwarded-for", "203.0.113.7"),
                ("forwarded", "for=203.0.113.7"),
                // The proxy in front spoke plain HTTP to its client.
                ("x-forwarded-proto", "http"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = up.seen.last();
    assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(seen.one("forwarded").as_deref(), Some("for=203.0.113.7"));
    assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen.one("x-user-id").as_deref(), Some("u"));
}

#[tokio::test]
async fn a_dual_stack_listener_sees_an_ipv4_peer_as_ipv4() {
    let up = TestUpstream::start().await;
    let dual_stack = tokio::net::TcpListener::bind("[::]:0").await.unwrap();
    let extra = "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n";
    let gw = TestGateway::builder(&up.url())
        .listener(dual_stack)
        .extra(extra)
        .start()
        .await;
    // Through the IPv6 socket this peer is ::ffff:127.0.0.1; it is still the trusted 127.0.0.1.
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], gw.addr.port()));
    let r = Client::new(&gw.ca, v4, false)
        .get(
            "/x",
            &[
                ("authorization", &bearer(&token("u"))),
                ("x-forwarded-for", "203.0.113.7"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = up.seen.last();
    assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("203.0.113.7, 127.0.0.1"));
}

// ----- paths ----------------------------------------------------------------------------------

#[tokio::test]
async fn ambiguous_paths_are_400_and_never_reach_the_backend() {
    let (up, gw) = pair("").await;
    let t = token("u1");
    for path in [
        "/api/auth/../x",
        "/docs/../admin",
        "/docs/%2e%2e/admin",
        "/docs/..%2fadmin",
        "/docs%2fadmin",
        "/docs/%2E%2E/admin",
        "/docs/..;/admin",
        "/docs/./x",
        "/a%00b",
        "/a%5cb",
        "/docs/%252e%252e/admin",
    ] {
        for auth in [None, Some(bearer(&t))] {
            let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
            let r = gw.client().get(path, &headers).await;
            assert_eq!(r.status, 400, "{path}");
            assert_eq!(r.json()["error"], "invalid_request", "{path}");
        }
    }
    // Raw forms that a client library would normalise away.
    for target in ["/docs/../admin", "/docs\\..\\admin", "http://evil.example/docs/x", "*"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let resp = raw_exchange(&gw.ca, gw.addr, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{target}: {resp}");
    }
    assert_eq!(up.seen.count(), 0);
}

#[tokio::test]
async fn the_forwarded_path_is_the_path_that_was_authorised() {
    let (up, gw) = pair("").await;
    let t = token("u1");
    for path in ["/a//b", "/a;x=1/b", "/%41pi/x", "/a/b.c/..d"] {
        let r = gw.client().get(path, &[("authorization", &bearer(&t))]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(up.seen.last().target, path);
    }
}

// ----- protocols and streaming ----------------------------------------------------------------

#[tokio::test]
async fn h2_and_http1_both_work_end_to_end() {
    let (up, gw) = pair("").await;
    let t = token("u-h2");
    let r1 = gw
        .client()
        .get("/v1", &[("authorization", &bearer(&t)), ("x-user-id", "evil")])
        .await;
    assert_eq!((r1.status, r1.version), (200, http::Version::HTTP_11));
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some("u-h2"));
    let r2 = gw
        .h2_client()
        .get(
            "/v2",
            &[
                ("authorization", &bearer(&t)),
                ("x-user-id", "evil"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
            ],
        )
        .await;
    assert_eq!((r2.status, r2.version), (200, http::Version::HTTP_2));
    let seen = up.seen.last();
    assert_eq!(seen.target, "/v2");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.one("x-user-id").as_deref(), Some("u-h2"));
    assert_eq!(seen.one("cookie").as_deref(), Some("a=1; b=2"));
    assert!(seen.all("authorization").is_empty());
}

#[tokio::test]
async fn tls_without_alpn_is_http1_and_h2_over_tls_needs_alpn() {
    let (up, gw) = pair("").await;
    let t = token("u-no-alpn");
    // wrk, Python's ssl module and older clients offer no ALPN: they speak HTTP/1.1.
    let request = format!(
        "GET /plain HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\nX-User-Id: evil\r\nConnection: close\r\n\r\n"
    );
    let tls = tls_connect_alpn(&gw.ca, gw.addr, &[]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let resp = raw_exchange_on(tls, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = up.seen.last();
    assert_eq!(
        (seen.target.as_str(), seen.one("x-user-id").as_deref()),
        ("/plain", Some("u-no-alpn"))
    );
    assert!(seen.all("authorization").is_empty());

    // HTTP/2 over TLS only after ALPN chose h2 (RFC 9113 §3.2): a bare preface is not HTTP/2.
    let before = up.seen.count();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let tls = tls_connect_alpn(&gw.ca, gw.addr, &[]).await;
    let resp = raw_exchange_on(tls, preface, Duration::from_secs(2)).await;
    assert!(
        !resp.starts_with("HTTP/1.1 5") && !resp.starts_with("HTTP/1.1 2"),
        "{resp}"
    );
    assert_eq!(up.seen.count(), before);
    // The gateway is unharmed.
    assert_eq!(
        gw.client()
            .get("/after", &[("authorization", &bearer(&t))])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn sse_events_arrive_one_by_one() {
    for h2 in [false, true] {
        let (_up, gw) = pair("").await;
        let t = token("u1");
        let client = if h2 { gw.h2_client() } else { gw.client() };
        let req = client
            .request("GET", "/sse?events=4&gap_ms=300")
            .header("authorization", bearer(&t))
            .header("accept", "text/event-stream")
            .body(BodyExt::boxed(http_body_util::Empty::new()))
            .unwrap();
        let started = Instant::now();
        let resp = client.send(req).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.into_body();
        let mut arrivals = Vec::new();
        let mut text = String::new();
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.unwrap().into_data()
                && !d.is_empty()
            {
                arrivals.push(started.elapsed());
                text.push_str(&String::from_utf8_lossy(&d));
            }
        }
        assert_eq!(text.matches("data: tick").count(), 4, "h2={h2}");
        assert!(arrivals.len() >= 4, "h2={h2}: events were batched: {arrivals:?}");
        // The events are sent 300 ms apart and arrive spread out the same way. (Single gaps are not
        // checked: one late delivery on a loaded machine would shorten the next gap.)
        let spread = arrivals[arrivals.len() - 1] - arrivals[0];
        assert!(spread >= Duration::from_millis(450), "h2={h2}: {arrivals:?}");
    }
}

#[tokio::test]
async fn websocket_upgrade_is_authenticated_and_tunnelled_with_query_token_removed() {
    let (up, gw) = pair("").await;
    let t = token("ws-user");
    let handshake = format!(
        "GET /ws?room=1&token={t} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(handshake.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"hello").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"echo:hello");
    let seen = up.seen.last();
    assert_eq!(seen.target, "/ws?room=1", "the token must not reach the backend");
    assert_eq!(seen.one("x-user-id").as_deref(), Some("ws-user"));
    assert_eq!(seen.one("upgrade").as_deref(), Some("websocket"));

    // Without a token, or with ?token= on a non-upgrade request: 401, nothing forwarded.
    let before = up.seen.count();
    let no_token = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let resp = raw_exchange(&gw.ca, gw.addr, no_token.as_bytes(), Duration::from_secs(2)).await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let r = gw.client().get(&format!("/data?token={t}"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.seen.count(), before);
}

#[tokio::test]
async fn https_upstream_is_reached_over_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let (up, ca) = TestUpstream::start_tls(dir.path()).await;
    let url = format!("https://localhost:{}", up.addr.port());
    let extra = format!("[upstream]\nca_cert = \"{}\"\n", ca.display());
    let gw = TestGateway::builder(&url).extra(&extra).start().await;
    let r = gw
        .client()
        .get("/secure", &[("authorization", &bearer(&token("tls-user")))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen.last();
    assert_eq!(seen.target, "/secure");
    assert_eq!(seen.one("x-user-id").as_deref(), Some("tls-user"));

    // Without the CA the upstream's certificate is not trusted: 502, nothing delivered.
    let before = up.seen.count();
    let untrusting = TestGateway::start(&url).await;
    let r = untrusting
        .client()
        .get("/secure", &[("authorization", &bearer(&token("u")))])
        .await;
    assert_eq!(r.status, 502);
    assert_eq!(up.seen.count(), before);
}

// ----- upstream failures ----------------------------------------------------------------------

#[tokio::test]
async fn unreachable_upstream_is_a_fast_json_502() {
    // Bound and never listening: connections to it are refused, and no other test can take the port.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    let gw = TestGateway::start(&url).await;
    let started = Instant::now();
    let r = gw.client().get("/x", &[("authorization", &bearer(&token("u")))]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "bad_gateway");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn slow_upstream_is_a_json_504_at_the_response_timeout() {
    let (_up, gw) = pair("").await;
    let started = Instant::now();
    let r = gw
        .client()
        .get("/slow?ms=5000", &[("authorization", &bearer(&token("u")))])
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "gateway_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn auth_endpoints_are_never_forwarded() {
    let (up, gw) = pair("").await;
    for path in ["/api/auth/unknown", "/api/auth"] {
        let r = gw.client().get(path, &[("authorization", &bearer(&token("u")))]).await;
        assert!(
            r.status == 404 || r.status == 405 || r.status == 401,
            "{path}: {}",
            r.status
        );
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(up.seen.count(), 0);
}

// ----- shutdown -------------------------------------------------------------------------------

#[tokio::test]
async fn in_flight_stream_finishes_after_shutdown_starts() {
    let (_up, mut gw) = pair("").await;
    let t = token("u1");
    let client = gw.client();
    let req = client
        .request("GET", "/stream?chunks=6&gap_ms=200")
        .header("authorization", bearer(&t))
        .body(BodyExt::boxed(http_body_util::Empty::new()))
        .unwrap();
    let resp = client.send(req).await;
    assert_eq!(resp.status(), 200);
    gw.shutdown();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 48, "the stream was cut: {body:?}");
    let done = gw.done.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), done)
        .await
        .unwrap()
        .unwrap();
    // Nothing is accepted any more.
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
}

/// The one start path drains every listener within `server.shutdown_grace`, all together: a main
/// connection streaming for longer than the grace uses it up, and clients holding an admin or a
/// redirect connection open (an answered keep-alive, a head never finished) do not get a second
/// grace after it. Afterwards none of the three listeners accepts.
#[tokio::test]
async fn every_listener_stops_within_the_shutdown_grace() {
    let up = TestUpstream::start().await;
    let mut gw = TestGateway::builder(&up.url())
        .extra("[server]\nshutdown_grace = \"1s\"\n")
        .redirect()
        .start()
        .await;
    let t = token("u1");
    let client = gw.client();
    let req = client
        .request("GET", "/stream?chunks=20&gap_ms=200")
        .header("authorization", bearer(&t))
        .body(BodyExt::boxed(http_body_util::Empty::new()))
        .unwrap();
    let streaming = client.send(req).await;
    assert_eq!(streaming.status(), 200);
    let mut admin = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    admin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = admin.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    admin.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
    let redirect_addr = gw.redirect.unwrap();
    let mut redirect = tokio::net::TcpStream::connect(redirect_addr).await.unwrap();
    redirect.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let started = Instant::now();
    gw.shutdown();
    let done = gw.done.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("the gateway stops")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "stopped after {took:?}; the grace is 1 s"
    );
    for addr in [gw.addr, gw.admin, redirect_addr] {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts"
        );
    }
    drop((streaming, admin, redirect));
}

// ----- admin ----------------------------------------------------------------------------------

#[tokio::test]
async fn admin_health_readiness_and_metrics() {
    let (up, gw) = pair("").await;
    assert_eq!(gw.admin_get("/healthz").await.0, 200);
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let t = token("u1");
    gw.client().get("/x", &[("authorization", &bearer(&t))]).await;
    gw.client().get("/x", &[]).await;
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains(r#"authgate_requests_total{route="protected",status_class="2xx",auth="jwt"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"authgate_requests_total{route="protected",status_class="4xx",auth="failed"} 1"#));
    assert!(metrics.contains(r#"authgate_auth_failures_total{reason="missing"} 1"#));
    assert!(metrics.contains("authgate_upstream_duration_seconds_count 1"));
    assert!(metrics.contains("authgate_open_connections"));
    drop(up);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
}
