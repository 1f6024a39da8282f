//! Forward-auth (`GET /_auth/verify`): asked directly over real sockets, and behind Debian's real
//! nginx with its `auth_request` module in front of the recording backend. A credential the gateway
//! accepts lets the request through with the `X-User-Id` nginx copied from the answer; everything
//! else (no credential, a denied route, a path trick, a forged original URI from anyone but a
//! trusted proxy) is refused, and the backend sees nothing.

use std::net::{IpAddr, Ipv4Addr};

use crate::common::nginx::Nginx;
use crate::common::*;
use serde_json::json;

/// The proxy the tests trust, and a loopback address it does not.
const TRUSTED: &str = "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
const UNTRUSTED_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// `/admin/*` is denied to everyone; `/ro/*` is read-only but for admins; `/status` is public.
/// (`auth.public_paths` are `/api/health` and `/docs/*` in every test gateway.)
const RULES: &str = r#"
[[policy.rules]]
paths = ["/admin/*"]
allow = ["authenticated"]
deny = ["authenticated"]
description = "nobody"
[[policy.rules]]
methods = ["GET", "HEAD"]
paths = ["/ro/*"]
allow = ["authenticated"]
description = "read"
[[policy.rules]]
paths = ["/ro/*"]
allow = ["role:admin"]
description = "write"
[[policy.rules]]
paths = ["/status"]
allow = ["public"]
description = "status page"
"#;

async fn gateway() -> (TestUpstream, TestGateway) {
    pair(&format!("{TRUSTED}{RULES}")).await
}

/// What nginx's `auth_request` location adds: the original method and URI.
fn nginx_asks<'a>(method: &'a str, uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("x-original-method", method), ("x-original-uri", uri)]
}

/// What Traefik's ForwardAuth adds.
fn traefik_asks<'a>(method: &'a str, uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-forwarded-method", method),
        ("x-forwarded-uri", uri),
        ("x-forwarded-host", "app.example"),
        ("x-forwarded-proto", "https"),
    ]
}

async fn verify(gw: &TestGateway, headers: &[(&str, &str)]) -> Reply {
    gw.client().get("/_auth/verify", headers).await
}

fn with<'a>(mut headers: Vec<(&'a str, &'a str)>, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    headers.extend_from_slice(more);
    headers
}

fn assert_json_error(r: &Reply, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"], error, "{}", r.text());
    assert!(r.headers.get("x-user-id").is_none(), "a refusal named a user");
}

#[tokio::test]
async fn a_websocket_query_token_is_refused_as_the_ingress_would_pass_it_on_to_the_backend() {
    let (up, gw) = gateway().await;
    let (id, jwt) = session(&gw, "kim").await;
    let ws = [
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];
    // The proxy takes `?token=` off a WebSocket handshake; an ingress forwards the URI as it
    // came, so the backend would get the token: refused, from nginx and from Traefik alike.
    let target = format!("/app/ws?room=1&token={jwt}");
    for asks in [nginx_asks("GET", &target), traefik_asks("GET", &target)] {
        let r = verify(&gw, &with(asks, &ws)).await;
        assert_json_error(&r, 403, "forbidden");
        assert!(r.text().contains("token"), "{}", r.text());
    }
    // Not a handshake: the query is only a query (no credential, so 401).
    assert_json_error(&verify(&gw, &nginx_asks("GET", &target)).await, 401, "invalid_token");
    // The same token in Authorization opens the same WebSocket.
    let auth = bearer(&jwt);
    let r = verify(
        &gw,
        &with(
            nginx_asks("GET", "/app/ws?room=1"),
            &[ws.as_slice(), &[("authorization", auth.as_str())]].concat(),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers.get("x-user-id").unwrap().to_str().unwrap(), id);
    assert_eq!(up.seen.count(), 0, "forward-auth forwards nothing");
}

#[tokio::test]
async fn a_trusted_proxy_asking_for_a_jwt_gets_the_user_id_counted_and_logged() {
    let (up, gw) = gateway().await;
    let (id, jwt) = session(&gw, "ann").await;
    let auth = bearer(&jwt);
    let r = verify(
        &gw,
        &with(nginx_asks("GET", "/app/logged?q=1"), &[("authorization", &auth)]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-user-id"], id.as_str());
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(up.seen.count(), 0, "verify forwards nothing");

    let (_, metrics) = gw.admin_get("/metrics").await;
    for line in [
        r#"authgate_requests_total{route="verify",status_class="2xx",auth="jwt"} 1"#,
        r#"authgate_policy_decisions_total{rule="default",decision="allow"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    let logged = logscan::lines_with(&[
        "authgate::access",
        "route=\"verify\"",
        "original_path=\"/app/logged\"",
        "rule=\"default\"",
    ]);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(!logged[0].contains("q=1"), "the query is never logged: {}", logged[0]);
}

#[tokio::test]
async fn traefik_headers_and_an_api_token_work_the_same() {
    let (_up, gw) = gateway().await;
    let (id, jwt) = session(&gw, "bea").await;
    let r = gw
        .post_json("/api/auth/tokens", json!({"name": "bot"}), Some(&jwt))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    for credential in [("authorization", bearer(&token)), ("x-api-key", token.clone())] {
        let r = verify(
            &gw,
            &with(traefik_asks("GET", "/app/x"), &[(credential.0, &credential.1)]),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.headers["x-user-id"], id.as_str());
    }
}

#[tokio::test]
async fn an_untrusted_peer_is_refused_whatever_it_forges() {
    let (_up, gw) = gateway().await;
    let (_, jwt) = session(&gw, "cid").await;
    let auth = bearer(&jwt);
    // CVE-2026-40575's shape: a protected request described as a public path, straight from a client.
    for asks in [
        nginx_asks("GET", "/docs/x"),
        traefik_asks("GET", "/docs/x"),
        with(nginx_asks("GET", "/app/x"), &[("authorization", &auth)]),
        vec![],
    ] {
        let r = gw.client().bound_to(UNTRUSTED_PEER).get("/_auth/verify", &asks).await;
        assert_json_error(&r, 403, "forbidden");
        assert!(r.json()["detail"].as_str().unwrap().contains("server.trusted_proxies"));
    }
    // The same from the trusted proxy is answered.
    let r = verify(&gw, &nginx_asks("GET", "/docs/x")).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // With no trusted proxy configured (the default), nobody is answered.
    let (_up, open) = pair(RULES).await;
    let r = verify(&open, &nginx_asks("GET", "/docs/x")).await;
    assert_json_error(&r, 403, "forbidden");
}

#[tokio::test]
async fn missing_doubled_or_mixed_descriptions_are_refused() {
    let (_up, gw) = gateway().await;
    let (_, jwt) = session(&gw, "dan").await;
    let auth = bearer(&jwt);
    for asks in [
        vec![("authorization", auth.as_str())],
        vec![("x-original-uri", "/app/x"), ("authorization", &auth)],
        vec![("x-forwarded-method", "GET"), ("authorization", &auth)],
    ] {
        assert_json_error(&verify(&gw, &asks).await, 400, "invalid_request");
    }
    // Behind Traefik a client can add nginx's names (and behind nginx Traefik's): never one
    // picked over the other.
    for asks in [
        with(traefik_asks("GET", "/app/x"), &[("x-original-uri", "/docs/x")]),
        with(nginx_asks("GET", "/app/x"), &[("x-forwarded-uri", "/docs/x")]),
        with(nginx_asks("GET", "/docs/x"), &[("x-original-uri", "/app/x")]),
    ] {
        assert_json_error(&verify(&gw, &asks).await, 403, "forbidden");
    }
    // Only GET and HEAD ask.
    let r = gw
        .client()
        .call("POST", "/_auth/verify", &nginx_asks("GET", "/docs/x"), None)
        .await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn path_tricks_against_a_deny_and_a_denied_route_are_403() {
    let (_up, gw) = gateway().await;
    let (id, jwt) = session(&gw, "eve").await;
    let auth = bearer(&jwt);
    for uri in [
        "/admin/x",
        "/admin",
        "/admin/../admin/x",
        "/x/../admin/x",
        "/%2e%2e/admin/x",
        "/admin/%2e%2e/x",
        "/%61dmin/x",
        "/admin;jsessionid=1/x",
        "/admin%3b/x",
        "//admin/x",
        "/admin%2fx",
        "/docs/../admin/x",
        "/docs/..%2fadmin/x",
        "/docs/..;/admin/x",
        "/docs/%c0%ae%c0%ae/admin/x",
        "/docs\\..\\admin/x",
        "/docs/x#/../../admin/x",
        "admin/x",
        "http://app.example/admin/x",
    ] {
        for asks in [nginx_asks("GET", uri), traefik_asks("GET", uri)] {
            let r = verify(&gw, &with(asks, &[("authorization", &auth)])).await;
            assert_json_error(&r, 403, "forbidden");
        }
    }
    // The original method is the one decided on: GET is allowed, a write is not.
    let r = verify(&gw, &with(nginx_asks("GET", "/ro/x"), &[("authorization", &auth)])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-user-id"], id.as_str());
    for method in ["POST", "PUT", "DELETE"] {
        let r = verify(&gw, &with(nginx_asks(method, "/ro/x"), &[("authorization", &auth)])).await;
        assert_json_error(&r, 403, "forbidden");
    }
}

#[tokio::test]
async fn without_a_credential_a_program_gets_401_and_a_browser_the_way_to_sign_in() {
    let (_up, gw) = gateway().await;
    let browser = [
        ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ("sec-fetch-mode", "navigate"),
    ];
    // Traefik relays the answer: a 302 with a safe `rd` of the original target.
    let r = verify(&gw, &with(traefik_asks("GET", "/app/x?q=1"), &browser)).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.headers["location"], "/_auth/sign-in?rd=%2Fapp%2Fx%3Fq%3D1");
    // nginx passes on only 401 and 403: the 401 carries the same Location for `error_page 401`.
    let r = verify(&gw, &with(nginx_asks("GET", "/app/x?q=1"), &browser)).await;
    assert_json_error(&r, 401, "invalid_token");
    assert_eq!(r.headers["location"], "/_auth/sign-in?rd=%2Fapp%2Fx%3Fq%3D1");
    // A program, a bad token, or a browser's POST: a plain 401.
    for asks in [
        nginx_asks("GET", "/app/x"),
        traefik_asks("GET", "/app/x"),
        with(nginx_asks("GET", "/app/x"), &[("authorization", "Bearer not.a.jwt")]),
        with(traefik_asks("POST", "/app/x"), &browser),
    ] {
        let r = verify(&gw, &asks).await;
        assert_json_error(&r, 401, "invalid_token");
        assert!(r.headers.get("location").is_none());
        assert!(r.headers.contains_key("www-authenticate"));
    }
}

#[tokio::test]
async fn public_paths_and_public_rules_are_200_without_a_credential() {
    let (_up, gw) = gateway().await;
    for uri in ["/docs/x", "/api/health", "/status"] {
        for asks in [nginx_asks("GET", uri), traefik_asks("POST", uri)] {
            let r = verify(&gw, &asks).await;
            assert_eq!(r.status, 200, "{uri}: {}", r.text());
            assert!(r.headers.get("x-user-id").is_none());
        }
    }
    // A `public` rule opens its exact path only; `auth.public_paths` its exact spelling.
    for uri in ["//status", "/status/x", "/api/health/x", "/%64ocs/x"] {
        assert_json_error(&verify(&gw, &nginx_asks("GET", uri)).await, 401, "invalid_token");
    }
    // The gateway's own paths are not the backend's: asked about, they are protected.
    for uri in ["/api/auth/login", "/_auth/sign-in", "/.well-known/jwks.json"] {
        assert_json_error(&verify(&gw, &nginx_asks("GET", uri)).await, 401, "invalid_token");
    }
}

#[tokio::test]
async fn a_cookie_sessions_cross_site_write_is_judged_by_the_original_method() {
    let (_up, gw) = gateway().await;
    register(&gw, "fay").await;
    let jar = signed_in(&gw, "fay").await;
    let cookie = jar.header();
    let read = with(
        nginx_asks("GET", "/app/x"),
        &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
    );
    let r = verify(&gw, &read).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.headers["x-user-id"].to_str().unwrap().to_owned();
    let cross = with(
        nginx_asks("POST", "/app/x"),
        &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
    );
    assert_json_error(&verify(&gw, &cross).await, 403, "forbidden");
    let same = with(
        nginx_asks("POST", "/app/x"),
        &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
    );
    let r = verify(&gw, &same).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-user-id"], id.as_str());
    // Without Sec-Fetch-Site, Origin must be the ingress's own origin, in the scheme it reports.
    let origin = with(
        traefik_asks("POST", "/app/x"),
        &[("cookie", &cookie), ("origin", "https://app.example")],
    );
    assert_eq!(verify(&gw, &origin).await.status, 200);
    let other = with(
        traefik_asks("POST", "/app/x"),
        &[("cookie", &cookie), ("origin", "https://evil.example")],
    );
    assert_json_error(&verify(&gw, &other).await, 403, "forbidden");
}

#[tokio::test]
async fn the_signed_assertion_is_answered_when_configured() {
    let up = TestUpstream::start().await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let key = dir.path().join("identity.pem");
    let extra = format!(
        "{TRUSTED}[upstream.identity]\nmode = \"header\"\nalgorithm = \"ES256\"\nprivate_key = \"{}\"\n\
         generate_if_missing = true\n",
        key.display()
    );
    let gw = TestGateway::builder(&up.url()).dir(dir).extra(&extra).start().await;
    let (id, jwt) = session(&gw, "gus").await;
    let r = verify(
        &gw,
        &with(nginx_asks("GET", "/app/x"), &[("authorization", &bearer(&jwt))]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let assertion = r.headers["x-auth-assertion"].to_str().unwrap();
    // The backend checks it against the JWKS (tests/api/identity.rs); here, that it names this user.
    use base64::Engine;
    let payload = assertion.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], id.as_str());
}

/// The nginx configuration of the README's forward-auth section, word for word but for the
/// addresses of this gateway and backend and the gateway's certificate: the README shows what
/// is tested.
fn nginx_server(gw: &TestGateway, up: &TestUpstream) -> String {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## Forward-auth (nginx auth_request, Traefik ForwardAuth)")
        .expect("the README's forward-auth section")..];
    let start = section
        .find("```nginx\n")
        .expect("an nginx block in the forward-auth section")
        + "```nginx\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    assert!(
        block.contains("http://127.0.0.1:8000;")
            && block.contains("https://127.0.0.1:8443")
            && block.contains("/etc/authgate/cert.pem"),
        "the README's nginx block changed its placeholders:\n{block}"
    );
    block
        .replace("http://127.0.0.1:8000", &format!("http://{}", up.addr))
        .replace("https://127.0.0.1:8443", &format!("https://{}", gw.addr))
        .replace("/etc/authgate/cert.pem", &gw.ca.display().to_string())
}

#[tokio::test]
async fn behind_nginx_a_jwt_an_api_token_and_a_session_pass_with_the_id_nginx_copied() {
    let (up, gw) = gateway().await;
    let nginx = Nginx::start(&nginx_server(&gw, &up)).await;
    let (id, jwt) = session(&gw, "hal").await;
    let r = gw
        .post_json("/api/auth/tokens", json!({"name": "bot"}), Some(&jwt))
        .await;
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let jar = signed_in(&gw, "hal").await;
    let cookie = jar.header();
    let (jwt_auth, token_auth) = (bearer(&jwt), bearer(&token));
    for credential in [
        ("authorization", jwt_auth.as_str()),
        ("authorization", token_auth.as_str()),
        ("x-api-key", token.as_str()),
        ("cookie", cookie.as_str()),
    ] {
        // The client forges an X-User-Id of its own too.
        let r = nginx.get("/app/x?q=1", &[credential, ("x-user-id", "admin")]).await;
        assert_eq!(r.status, 200, "{}: {}\n{}", credential.0, r.text(), nginx.error_log());
        let seen = up.seen.take();
        assert_eq!(seen.len(), 1, "{}", credential.0);
        assert_eq!(seen[0].target, "/app/x?q=1");
        assert_eq!(seen[0].all("x-user-id"), vec![id.clone()], "{}", credential.0);
        assert!(seen[0].all("authorization").is_empty() && seen[0].all("x-api-key").is_empty());
    }
    // A public path goes through without a credential, and without anyone's X-User-Id.
    let r = nginx.get("/docs/readme", &[("x-user-id", "admin")]).await;
    assert_eq!(r.status, 200, "{}", nginx.error_log());
    assert!(up.seen.last().all("x-user-id").is_empty());
    // The sign-in page is served through nginx.
    let r = nginx.get("/_auth/sign-in", &[]).await;
    assert_eq!(r.status, 200, "{}", nginx.error_log());
}

#[tokio::test]
async fn behind_nginx_every_refusal_reaches_nothing() {
    let (up, gw) = gateway().await;
    let nginx = Nginx::start(&nginx_server(&gw, &up)).await;
    let (_, jwt) = session(&gw, "ida").await;
    let auth = bearer(&jwt);

    // No credential, or a bad one: 401.
    for headers in [vec![], vec![("authorization", "Bearer not.a.jwt")]] {
        assert_eq!(nginx.get("/app/x", &headers).await.status, 401);
    }
    // A denied route, and a write where only reads are allowed: 403.
    assert_eq!(nginx.get("/admin/x", &[("authorization", &auth)]).await.status, 403);
    assert_eq!(
        nginx.call("DELETE", "/ro/x", &[("authorization", &auth)]).await.status,
        403
    );
    // Path tricks towards the denied route, raw as the client sent them: nginx passes each on as
    // it came ($request_uri), and authgate's 403 comes back.
    for target in [
        "/%61dmin/x",
        "//admin/x",
        "/admin;x/y",
        "/admin%3b/x",
        "/admin%2fx",
        "/docs/..%2fadmin/x",
        "/docs/%2e%2e/admin/x",
        "/docs/..;/admin/x",
        "/docs/../admin/x",
        "/docs/%c0%ae%c0%ae/admin/x",
    ] {
        let r = nginx.get(target, &[("authorization", &auth)]).await;
        assert_eq!(r.status, 403, "{target}");
    }
    // A client's own X-Original-URI is overwritten by nginx; its X-Forwarded-Uri (Traefik's name)
    // comes along, and a description in two families is refused.
    let forged = [("x-original-uri", "/docs/x"), ("x-original-method", "GET")];
    assert_eq!(nginx.call("POST", "/app/x", &forged).await.status, 401);
    let forged = [("x-forwarded-uri", "/docs/x"), ("x-forwarded-method", "GET")];
    assert_eq!(nginx.call("POST", "/app/x", &forged).await.status, 403);
    // A browser without a session is sent to sign in, and back to where it was going.
    let r = nginx
        .get("/app/x?q=1", &[("accept", "text/html"), ("sec-fetch-mode", "navigate")])
        .await;
    assert_eq!(r.status, 302, "{}", nginx.error_log());
    let location = r.headers["location"].to_str().unwrap();
    assert!(location.ends_with("/_auth/sign-in?rd=%2Fapp%2Fx%3Fq%3D1"), "{location}");
    assert_eq!(
        up.seen.count(),
        0,
        "{:?}",
        up.seen.take().iter().map(|s| s.target.clone()).collect::<Vec<_>>()
    );
    assert!(
        !nginx.error_log().contains("auth request unexpected status"),
        "{}",
        nginx.error_log()
    );

    // The same forged description sent straight to authgate from a peer that is not nginx.
    let r = gw
        .client()
        .bound_to(UNTRUSTED_PEER)
        .get(
            "/_auth/verify",
            &[("x-original-uri", "/docs/x"), ("x-original-method", "GET")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden");
    assert_eq!(up.seen.count(), 0);
}
