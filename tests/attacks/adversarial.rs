//! The adversarial suite: hostile clients against a live gateway. Every test asserts what the
//! backend received, or that it received nothing.

use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Send raw bytes; return the answer's status line and whether the server then closed.
async fn raw(gw: &TestGateway, bytes: &[u8]) -> (String, bool) {
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or(false);
    let text = String::from_utf8_lossy(&out).into_owned();
    (text.lines().next().unwrap_or("").to_owned(), closed)
}

// ----- 1. limits ------------------------------------------------------------------------------

#[tokio::test]
async fn an_honest_content_length_over_the_limit_is_413_before_any_body() {
    let (up, gw) = pair("[limits]\nbody_bytes = 1000\n").await;
    let t = token("u");
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\nContent-Length: 5000\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf))
        .await
        .expect("no answer before the body")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
    assert_eq!(up.seen.count(), 0);
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    let (up, gw) = pair("[limits]\nbody_bytes = 100000\n").await;
    let t = token("u");
    let r = gw
        .client()
        .call(
            "POST",
            "/upload",
            &[("authorization", &bearer(&t)), ("transfer-encoding", "chunked")],
            Some(vec![b'x'; 300_000]),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "payload_too_large");
    // The backend never got more than the limit.
    assert!(up.seen.take().iter().all(|s| s.body_len <= 100_000));
    // Under the limit passes.
    let r = gw
        .client()
        .call(
            "POST",
            "/upload",
            &[("authorization", &bearer(&t))],
            Some(vec![b'x'; 90_000]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.last().body_len, 90_000);
}

#[tokio::test]
async fn public_routes_take_only_small_bodies() {
    let (up, gw) = pair("[limits]\npublic_body_bytes = 1000\n").await;
    let r = gw
        .client()
        .call("POST", "/api/health", &[], Some(vec![b'x'; 5000]))
        .await;
    assert_eq!(r.status, 413);
    let r = gw
        .client()
        .call(
            "POST",
            "/x",
            &[("authorization", &bearer(&token("u")))],
            Some(vec![b'x'; 5000]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.count(), 1);
}

#[tokio::test]
async fn a_slow_post_body_is_abandoned_at_its_idle_timeout() {
    let (_up, gw) = pair("[limits]\nbody_idle_timeout = \"500ms\"\n").await;
    let t = token("u");
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\nContent-Length: 1000\r\n\r\nfirst bytes"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn idle_connections_are_closed_but_long_streams_are_not() {
    let (up, gw) = pair("[server]\nidle_timeout = \"1s\"\n").await;
    let t = token("u");
    // HTTP/1.1 keep-alive: answered, then closed once nothing more comes for idle_timeout.
    let mut tls = tls_connect(&gw.ca, gw.addr, false).await;
    let req = format!("GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), tls.read_to_end(&mut out)).await;
    let waited = started.elapsed();
    assert!(read.is_ok(), "idle HTTP/1.1 connection still open after {waited:?}");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    assert!(waited >= Duration::from_millis(900), "closed too early: {waited:?}");
    // HTTP/2: GOAWAY and close after idle_timeout, even though the client answers PINGs.
    let mut h2 = h2_raw(&gw).await;
    let started = Instant::now();
    let (seen, closed) = read_frames(&mut h2, Duration::from_secs(6)).await;
    assert!(closed && seen.contains(&7), "h2 idle: closed={closed} frames={seen:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A response that streams for longer than idle_timeout is not cut, on either protocol.
    for client in [gw.client(), gw.h2_client()] {
        let r = client
            .get("/sse?events=3&gap_ms=800", &[("authorization", &bearer(&t))])
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text().matches("data: tick").count(), 3);
    }
    assert_eq!(up.seen.count(), 3);
}

#[tokio::test]
async fn an_oversized_header_block_is_431() {
    let (up, gw) = pair("[server]\nmax_header_bytes = 8192\n").await;
    let big = "a".repeat(20_000);
    let req = format!("GET /x HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n");
    let (status, _) = raw(&gw, req.as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    assert_eq!(up.seen.count(), 0);
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let (_up, gw) = pair("[limits]\nmax_connections = 2\n").await;
    let first = tls_connect(&gw.ca, gw.addr, false).await;
    let _second = tls_connect(&gw.ca, gw.addr, false).await;
    let third = tokio::time::timeout(Duration::from_millis(700), tls_connect(&gw.ca, gw.addr, false)).await;
    assert!(third.is_err(), "a third connection was served past the limit");
    drop(first);
    let fourth = tokio::time::timeout(Duration::from_secs(3), tls_connect(&gw.ca, gw.addr, false)).await;
    assert!(fourth.is_ok(), "a slot freed by a closed connection was not reused");
}

// ----- 2. framing -----------------------------------------------------------------------------

#[tokio::test]
async fn smuggling_shapes_are_400_with_the_connection_closed_and_nothing_forwarded() {
    let (up, gw) = pair("").await;
    let t = token("u");
    let auth = format!("Authorization: Bearer {t}\r\n");
    let cases = [
        (
            "duplicate CL",
            format!("POST /x HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ),
        (
            "CL list",
            format!("POST /x HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 4, 5\r\n\r\nabcde"),
        ),
        (
            "TE list",
            format!("POST /x HTTP/1.1\r\nHost: a\r\n{auth}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ),
        (
            "TE not chunked last",
            format!("POST /x HTTP/1.1\r\nHost: a\r\n{auth}Transfer-Encoding: gzip\r\n\r\nabc"),
        ),
        (
            "obs-fold",
            format!("GET /x HTTP/1.1\r\nHost: a\r\n{auth}X-Folded: a\r\n  b\r\n\r\n"),
        ),
        (
            "NUL in value",
            format!("GET /x HTTP/1.1\r\nHost: a\r\n{auth}X-Nul: a\0b\r\n\r\n"),
        ),
        (
            "CR in value",
            format!("GET /x HTTP/1.1\r\nHost: a\r\n{auth}X-Cr: a\rb\r\n\r\n"),
        ),
        (
            "space before colon",
            format!("GET /x HTTP/1.1\r\nHost: a\r\n{auth}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ),
    ];
    for (what, req) in cases {
        let (status, closed) = raw(&gw, req.as_bytes()).await;
        assert!(
            status.starts_with("HTTP/1.1 400") || status.is_empty(),
            "{what}: {status}"
        );
        assert!(closed, "{what}: connection left open");
    }
    assert_eq!(up.seen.count(), 0);
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_400_closed_and_nothing_forwarded() {
    // hyper alone would let Transfer-Encoding win and close after answering; the connection
    // watcher under it refuses the request outright, in either header order, also after an honest
    // request on the same connection.
    let (up, gw) = pair("").await;
    let t = token("u");
    let auth = format!("Authorization: Bearer {t}\r\n");
    let smuggled = "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n";
    for (what, req) in [
        (
            "CL then TE",
            format!(
                "POST /x HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n{smuggled}"
            ),
        ),
        (
            "TE then CL",
            format!(
                "POST /x HTTP/1.1\r\nHost: a\r\n{auth}Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n{smuggled}"
            ),
        ),
        (
            "duplicate identical CL",
            format!("POST /x HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ),
        (
            "after an honest request",
            format!(
                "GET /first HTTP/1.1\r\nHost: a\r\n{auth}\r\nPOST /x HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n{smuggled}"
            ),
        ),
    ] {
        let (status, closed) = raw(&gw, req.as_bytes()).await;
        if what == "after an honest request" {
            assert!(status.starts_with("HTTP/1.1 200"), "{what}: {status}");
        } else {
            assert!(status.starts_with("HTTP/1.1 400"), "{what}: {status}");
        }
        assert!(closed, "{what}: connection left open");
    }
    let seen = up.seen.take();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["/first"], "only the honest request may reach the backend");
}

#[tokio::test]
async fn the_smuggled_answer_on_a_pipelined_connection_is_400_with_a_json_body() {
    let (up, gw) = pair("").await;
    let t = token("u");
    let req = format!(
        "GET /first HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let text = raw_exchange(&gw.ca, gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    let second = text.rfind("HTTP/1.1 ").map(|i| &text[i..]).unwrap_or_default();
    assert!(second.starts_with("HTTP/1.1 400"), "{text}");
    assert!(second.to_ascii_lowercase().contains("connection: close"), "{second}");
    assert!(second.contains(r#""error":"invalid_request""#), "{second}");
    assert_eq!(up.seen.count(), 1);
}

// ----- 4. JWT attacks -------------------------------------------------------------------------

fn hs256(header: serde_json::Value, claims: serde_json::Value) -> String {
    use hmac::{Hmac, Mac};
    let (h, p) = (B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", B64.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn jwt_attacks_are_401_and_nothing_is_forwarded_or_fetched() {
    // A listener standing in for an attacker's key server: nothing may connect to it.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://{}/jwks.json", trap.local_addr().unwrap());
    let (up, gw) = pair("").await;
    let now = now();
    let good = json!({"sub": "victim", "exp": now + 600, "iat": now});
    let mut attacks: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = B64.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        let p = B64.encode(good.to_string());
        attacks.push((format!("alg {alg}"), format!("{h}.{p}.")));
    }
    for (name, header) in [
        ("kid traversal", json!({"alg": "HS256", "kid": "../../../../dev/null"})),
        ("kid injection", json!({"alg": "HS256", "kid": "x' UNION SELECT 'key"})),
        ("jku", json!({"alg": "HS256", "jku": trap_url})),
        ("x5u", json!({"alg": "HS256", "x5u": trap_url})),
        ("jwk", json!({"alg": "HS256", "jwk": {"kty": "oct", "k": "AAAA"}})),
        ("x5c", json!({"alg": "HS256", "x5c": ["MIIB"]})),
        ("crit", json!({"alg": "HS256", "crit": ["exp"]})),
    ] {
        attacks.push((name.into(), hs256(header, good.clone())));
    }
    // ES256 with r = s = 0 ("psychic signature").
    let h = B64.encode(json!({"alg": "ES256"}).to_string());
    let p = B64.encode(good.to_string());
    attacks.push(("ES256 r=s=0".into(), format!("{h}.{p}.{}", B64.encode([0u8; 64]))));
    attacks.push((
        "exp as string".into(),
        hs256(
            json!({"alg": "HS256"}),
            json!({"sub": "v", "exp": (now + 600).to_string()}),
        ),
    ));
    attacks.push((
        "nbf as string".into(),
        hs256(
            json!({"alg": "HS256"}),
            json!({"sub": "v", "exp": now + 600, "nbf": now.to_string()}),
        ),
    ));
    let dup = format!(r#"{{"sub":"victim","exp":{},"sub":"admin"}}"#, now + 600);
    let h = B64.encode(r#"{"alg":"HS256"}"#);
    attacks.push(("duplicate claims".into(), {
        use hmac::{Hmac, Mac};
        let p = B64.encode(&dup);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", B64.encode(mac.finalize().into_bytes()))
    }));
    attacks.push((
        "refresh context".into(),
        hs256(
            json!({"alg": "HS256"}),
            json!({"sub": "v", "exp": now + 600, "token_use": "refresh"}),
        ),
    ));
    attacks.push((
        "typ refresh".into(),
        hs256(json!({"alg": "HS256", "typ": "refresh+jwt"}), good.clone()),
    ));
    let padding = "x".repeat(9000);
    attacks.push((
        "over 8 KiB".into(),
        hs256(
            json!({"alg": "HS256"}),
            json!({"sub": "v", "exp": now + 600, "pad": padding}),
        ),
    ));

    for (what, t) in &attacks {
        let r = gw
            .client()
            .get("/api/collections", &[("authorization", &bearer(t))])
            .await;
        assert!(
            r.status == 401 || (what == "over 8 KiB" && r.status == 431),
            "{what}: {}",
            r.status
        );
    }
    assert_eq!(up.seen.count(), 0, "an attack reached the backend");
    // Nothing ever connected to the attacker's key server.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), trap.accept())
            .await
            .is_err()
    );
    // The same claims, honestly signed, pass: the refusals above were about the attacks.
    assert_eq!(
        gw.client()
            .get(
                "/api/collections",
                &[("authorization", &bearer(&hs256(json!({"alg": "HS256"}), good)))]
            )
            .await
            .status,
        200
    );
}

// ----- 8. certificates and HTTPS -------------------------------------------------------------

fn first_cert(path: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// The end-entity certificate the gateway presents to a new handshake.
async fn served_cert(roots: &[&std::path::Path], addr: std::net::SocketAddr) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        for c in CertificateDer::pem_file_iter(r).unwrap() {
            store.add(c.unwrap()).unwrap();
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn replaced_certificate_files_serve_new_handshakes_and_a_broken_pair_keeps_the_old() {
    let (_up, gw) = pair("[tls]\nreload_interval = \"200ms\"\n").await;
    let (cert, key) = (gw.dir.path().join("cert.pem"), gw.dir.path().join("key.pem"));
    let side = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = (side.path().join("c.pem"), side.path().join("k.pem"));
    authgate::tls::ensure_self_signed(&new_cert, &new_key).unwrap();
    let old_cert_copy = side.path().join("old.pem");
    std::fs::copy(&cert, &old_cert_copy).unwrap();
    let (old_der, new_der) = (first_cert(&cert), first_cert(&new_cert));
    assert_ne!(old_der, new_der);
    let roots = [old_cert_copy.as_path(), new_cert.as_path()];
    assert_eq!(served_cert(&roots, gw.addr).await, old_der);

    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let started = Instant::now();
    while served_cert(&roots, gw.addr).await != new_der {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "new certificate not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "new certificate served {:?} after the files were replaced",
        started.elapsed()
    );

    // A broken replacement is refused: the last good pair keeps serving.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(served_cert(&roots, gw.addr).await, new_der);
    // And a mismatched pair (old certificate, new key) too.
    std::fs::copy(&old_cert_copy, &cert).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(served_cert(&roots, gw.addr).await, new_der);
}

#[tokio::test]
async fn https_answers_carry_hsts_and_the_plain_listener_redirects() {
    // The redirects name the gateway's public name (the test certificate names only localhost).
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .extra("[server]\npublic_host = \"gw.example\"\n")
        .redirect()
        .start()
        .await;
    let r = gw.client().get("/api/health", &[]).await;
    assert_eq!(
        r.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let r = gw.client().get("/x", &[]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers.contains_key("strict-transport-security"),
        "errors carry HSTS too"
    );

    let out = redirected(&gw).await;
    assert!(out.starts_with("HTTP/1.1 308"), "{out}");
    let want = format!("location: https://gw.example:{}/api/search?q=1", gw.addr.port());
    assert!(out.to_ascii_lowercase().contains(&want), "{out}");
    assert_eq!(up.seen.count(), 1, "the redirect listener forwards nothing");

    // Published on other ports than it listens on (a container's 443 → 8443), it names those.
    for (port, authority) in [(443, "gw.example"), (8444, "gw.example:8444")] {
        let up = TestUpstream::start().await;
        let gw = TestGateway::builder(&up.url())
            .extra(&format!(
                "[server]\npublic_host = \"gw.example\"\nredirect_https_port = {port}\n"
            ))
            .redirect()
            .start()
            .await;
        let out = redirected(&gw).await;
        let want = format!("location: https://{authority}/api/search?q=1\r\n");
        assert!(out.to_ascii_lowercase().contains(&want), "{out}");
        assert_eq!(up.seen.count(), 0);
    }
}

/// Send a request with a body and a token to the redirect listener of `gw`; return the raw answer.
async fn redirected(gw: &TestGateway) -> String {
    let plain_addr = gw.redirect.expect("the gateway was started with .redirect()");
    let mut tcp = tokio::net::TcpStream::connect(plain_addr).await.unwrap();
    tcp.write_all(b"POST /api/search?q=1 HTTP/1.1\r\nHost: gw.example:8080\r\nAuthorization: Bearer secret\r\nContent-Length: 3\r\n\r\nabc").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), tcp.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}
