//! Scoped API tokens end to end: `read` reads and does nothing else, with rules and without, over
//! HTTP/1.1 and HTTP/2; a custom scope passes only where a rule names it; a token is never more
//! than its owner; a scoped token cannot use the auth API to widen itself; strict validation; the
//! listing. Each test asserts what the backend received, or that it received nothing.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const RULES: &str = r#"
[policy]
default = "authenticated"
[[policy.rules]]
methods = ["POST", "PUT"]
paths = ["/api/ingest/*"]
allow = ["scope:ingest"]
description = "ingest"
[[policy.rules]]
paths = ["/api/research/*"]
allow = ["group:research"]
description = "research"
[[policy.rules]]
paths = ["/api/admin/*"]
allow = ["role:admin"]
description = "admins"
[[policy.rules]]
paths = ["/api/curated/*"]
allow = ["group:research", "scope:ingest"]
description = "curated"
"#;

/// A token made by `jwt`'s owner with these scopes (`None`: the field left out); its (id, secret).
async fn token(gw: &TestGateway, jwt: &str, scopes: Option<Value>) -> (String, String) {
    let mut body = json!({"name": "t"});
    if let Some(s) = scopes {
        body["scopes"] = s;
    }
    let r = gw.post_json("/api/auth/tokens", body, Some(jwt)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// `method path` with the credential, over h1 and h2: each status, and what the backend saw of it.
async fn both(
    gw: &TestGateway,
    up: &TestUpstream,
    method: &str,
    path: &str,
    credential: &str,
) -> Vec<(u16, Option<Seen>)> {
    let mut out = Vec::new();
    for client in [gw.client(), gw.h2_client()] {
        let before = up.seen.count();
        let body = (method != "GET" && method != "HEAD").then(|| b"{\"x\":1}".to_vec());
        let r = client
            .call(method, path, &[("authorization", &bearer(credential))], body)
            .await;
        let seen = (up.seen.count() > before).then(|| up.seen.last());
        if r.status == 403 {
            assert_eq!(r.json()["error"], "forbidden", "{method} {path}: {}", r.text());
        }
        out.push((r.status, seen));
    }
    out
}

/// Every attempt was forwarded, as this method and path, with this user's id and no credential.
fn forwarded(results: &[(u16, Option<Seen>)], method: &str, path: &str, id: &str) {
    for (status, seen) in results {
        assert_eq!(*status, 200, "{method} {path}");
        let seen = seen
            .as_ref()
            .unwrap_or_else(|| panic!("{method} {path}: the backend saw nothing"));
        assert_eq!((seen.method.as_str(), seen.target.as_str()), (method, path));
        assert_eq!(seen.one("x-user-id").as_deref(), Some(id), "{method} {path}");
        assert_eq!(seen.one("authorization"), None);
    }
}

/// Every attempt was refused with 403 JSON and the backend saw nothing.
fn refused(results: &[(u16, Option<Seen>)], method: &str, path: &str) {
    for (status, seen) in results {
        assert_eq!(*status, 403, "{method} {path}");
        assert!(seen.is_none(), "{method} {path} reached the backend");
    }
}

/// The read token's whole contract on one path.
async fn reads_only(gw: &TestGateway, up: &TestUpstream, read: &str, id: &str, path: &str) {
    for method in ["GET", "HEAD"] {
        forwarded(&both(gw, up, method, path, read).await, method, path, id);
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        refused(&both(gw, up, method, path, read).await, method, path);
    }
}

/// `authgate_policy_decisions_total{rule,decision}` now (0 when absent).
async fn decisions(gw: &TestGateway, rule: &str, decision: &str) -> u64 {
    let (_, metrics) = gw.admin_get("/metrics").await;
    let series = format!("authgate_policy_decisions_total{{rule=\"{rule}\",decision=\"{decision}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Poll `check` until it holds, for at most a second.
async fn within_a_second(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(1), "{what}: not after a second");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_read_token_reads_and_nothing_else_without_any_rule() {
    let (up, gw) = pair("").await;
    let (id, jwt) = session(&gw, "reader").await;
    let (_, read) = token(&gw, &jwt, Some(json!(["read"]))).await;
    reads_only(&gw, &up, &read, &id, "/api/collections/1").await;
    // Through X-API-Key too.
    let r = gw
        .client()
        .call("POST", "/api/collections", &[("x-api-key", &read)], None)
        .await;
    assert_eq!(r.status, 403);
    // The owner's login, and a token made without scopes (`full`), still do everything.
    let (_, full) = token(&gw, &jwt, None).await;
    for credential in [&jwt, &full] {
        forwarded(
            &both(&gw, &up, "DELETE", "/api/collections/1", credential).await,
            "DELETE",
            "/api/collections/1",
            &id,
        );
    }
    // Without rules the default decides, and only scoped tokens are counted.
    assert_eq!(decisions(&gw, "default", "deny").await, 9);
    assert_eq!(decisions(&gw, "default", "allow").await, 4);
}

#[tokio::test]
async fn a_read_token_reads_and_nothing_else_under_a_policy() {
    let (up, gw) = pair(RULES).await;
    let (id, jwt) = session(&gw, "reader").await;
    let (_, read) = token(&gw, &jwt, Some(json!(["read"]))).await;
    reads_only(&gw, &up, &read, &id, "/api/collections/1").await;
    // A rule that admits the owner does not widen the token.
    let accounts = gw.gateway.accounts();
    let user = accounts.find_user("reader").await.unwrap();
    accounts.set_role(&user, authgate::policy::Role::Admin).await.unwrap();
    within_a_second("role admin", async || {
        gw.client()
            .get("/api/admin/x", &[("authorization", &bearer(&read))])
            .await
            .status
            == 200
    })
    .await;
    reads_only(&gw, &up, &read, &id, "/api/admin/x").await;
    forwarded(
        &both(&gw, &up, "DELETE", "/api/admin/x", &jwt).await,
        "DELETE",
        "/api/admin/x",
        &id,
    );
    // The decisions are counted under the rule that matched (the wait for the role may have
    // been refused a few times).
    assert_eq!(decisions(&gw, "default", "deny").await, 8);
    assert_eq!(decisions(&gw, "default", "allow").await, 4);
    assert!(decisions(&gw, "admins", "deny").await >= 8);
    assert_eq!(decisions(&gw, "admins", "allow").await, 1 + 4 + 2);
}

#[tokio::test]
async fn a_read_token_cannot_open_a_websocket() {
    let (up, gw) = pair("").await;
    let (_, jwt) = session(&gw, "socket").await;
    let (_, read) = token(&gw, &jwt, Some(json!(["read"]))).await;
    let port = gw.addr.port();
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {read}\r\n\r\n"
    );
    let answer = raw_exchange(&gw.ca, gw.addr, handshake.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("\"forbidden\""), "{answer}");
    assert_eq!(up.seen.count(), 0, "the handshake reached the backend");
}

#[tokio::test]
async fn a_custom_scope_passes_only_where_a_rule_names_it() {
    let (up, gw) = pair(RULES).await;
    let (id, jwt) = session(&gw, "loader").await;
    let (_, ingest) = token(&gw, &jwt, Some(json!(["ingest"]))).await;
    let (_, read) = token(&gw, &jwt, Some(json!(["read"]))).await;
    let (_, other) = token(&gw, &jwt, Some(json!(["export"]))).await;
    let (_, full) = token(&gw, &jwt, Some(json!(["full"]))).await;
    for method in ["POST", "PUT"] {
        forwarded(
            &both(&gw, &up, method, "/api/ingest/batch", &ingest).await,
            method,
            "/api/ingest/batch",
            &id,
        );
        // `full` (a token or the login) holds every scope a rule names.
        for credential in [&full, &jwt] {
            forwarded(
                &both(&gw, &up, method, "/api/ingest/batch", credential).await,
                method,
                "/api/ingest/batch",
                &id,
            );
        }
        for credential in [&read, &other] {
            refused(
                &both(&gw, &up, method, "/api/ingest/batch", credential).await,
                method,
                "/api/ingest/batch",
            );
        }
    }
    // Nowhere that does not name it: another method on the same path, the default, any read.
    for (method, path) in [
        ("GET", "/api/ingest/batch"),
        ("DELETE", "/api/ingest/batch"),
        ("POST", "/api/collections"),
        ("GET", "/api/collections"),
    ] {
        refused(&both(&gw, &up, method, path, &ingest).await, method, path);
    }
    assert_eq!(decisions(&gw, "ingest", "allow").await, 12);
    assert_eq!(decisions(&gw, "ingest", "deny").await, 8);
    assert_eq!(decisions(&gw, "default", "deny").await, 8);
}

#[tokio::test]
async fn a_token_is_never_more_than_its_owner() {
    let (up, gw) = pair(RULES).await;
    let (id, jwt) = session(&gw, "outsider").await;
    let (_, read) = token(&gw, &jwt, Some(json!(["read"]))).await;
    let (_, both_scopes) = token(&gw, &jwt, Some(json!(["ingest", "read"]))).await;
    // The owner is not in research: no scope opens the research rule, not even for a read.
    for credential in [&read, &both_scopes, &jwt] {
        refused(
            &both(&gw, &up, "GET", "/api/research/x", credential).await,
            "GET",
            "/api/research/x",
        );
        // Nor the rule for research members' `ingest` tokens: the scope names no one.
        refused(
            &both(&gw, &up, "POST", "/api/curated/x", credential).await,
            "POST",
            "/api/curated/x",
        );
    }
    let accounts = gw.gateway.accounts();
    let user = accounts.find_user("outsider").await.unwrap();
    accounts.set_group(&user, "research", true).await.unwrap();
    within_a_second("group research", async || {
        gw.client()
            .get("/api/research/x", &[("authorization", &bearer(&read))])
            .await
            .status
            == 200
    })
    .await;
    // Now the owner may, so the read token reads there, and still only reads.
    reads_only(&gw, &up, &read, &id, "/api/research/x").await;
    refused(
        &both(&gw, &up, "POST", "/api/research/x", &both_scopes).await,
        "POST",
        "/api/research/x",
    );
    // A member's `ingest` token writes where the rule names research and `ingest`.
    for (status, seen) in both(&gw, &up, "POST", "/api/curated/x", &both_scopes).await {
        assert_eq!(status, 200);
        let seen = seen.expect("the backend saw the curated POST");
        assert_eq!(seen.one("x-user-id").as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn a_scoped_token_cannot_widen_itself_through_the_auth_api() {
    let (up, gw) = pair("").await;
    let (_, jwt) = session(&gw, "keeper").await;
    let (read_id, read) = token(&gw, &jwt, Some(json!(["read"]))).await;
    let (_, ingest) = token(&gw, &jwt, Some(json!(["ingest"]))).await;
    let json_type = ("content-type", "application/json");
    for credential in [&read, &ingest] {
        let auth = bearer(credential);
        for (method, path, body) in [
            ("POST", "/api/auth/tokens", json!({"name": "wider", "scopes": ["full"]})),
            ("POST", "/api/auth/tokens", json!({"name": "same", "scopes": ["read"]})),
            ("POST", "/api/auth/refresh", json!({})),
            ("POST", "/api/auth/logout", json!({"all": true})),
            ("POST", "/api/auth/logout", json!({})),
            (
                "POST",
                "/api/auth/password",
                json!({"current_password": PASSWORD, "new_password": "another long password"}),
            ),
            ("DELETE", &format!("/api/auth/tokens/{read_id}"), json!(null)),
        ] {
            for client in [gw.client(), gw.h2_client()] {
                let body = (!body.is_null()).then(|| body.to_string().into_bytes());
                let r = client
                    .call(method, path, &[("authorization", &auth), json_type], body)
                    .await;
                assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
                assert_eq!(r.json()["error"], "forbidden");
                assert!(r.json().get("access_token").is_none() && r.json().get("token").is_none());
            }
        }
    }
    // `read` may read its own account and the token list; a custom scope alone may not.
    for path in ["/api/auth/me", "/api/auth/tokens"] {
        let r = gw.client().get(path, &[("authorization", &bearer(&read))]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let r = gw.client().get(path, &[("authorization", &bearer(&ingest))]).await;
        assert_eq!(r.status, 403, "{path}");
    }
    // Nothing happened: both tokens are there (the read one not deleted), the login still works,
    // the password is unchanged.
    let list = gw
        .client()
        .get("/api/auth/tokens", &[("authorization", &bearer(&jwt))])
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(status_with_jwt(&gw, &jwt).await, 200);
    assert_eq!(login(&gw, "keeper", PASSWORD).await.status, 200);
    assert_eq!(up.seen.count(), 1, "only the login's own request was forwarded");

    // A login (full) makes tokens of any scope.
    let r = gw
        .post_json(
            "/api/auth/tokens",
            json!({"name": "n", "scopes": ["read", "ingest"]}),
            Some(&jwt),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["scopes"], json!(["read", "ingest"]));
}

#[tokio::test]
async fn bad_scopes_are_400_naming_the_field_and_nothing_is_made() {
    let (up, gw) = pair("").await;
    let (_, jwt) = session(&gw, "strict").await;
    let many: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
    for bad in [
        json!([]),
        json!(["Read"]),
        json!([" read"]),
        json!(["read write"]),
        json!([""]),
        json!(["x".repeat(65)]),
        json!(["ré"]),
        json!(["a/b"]),
        json!(many),
        json!("read"),
        json!([1]),
        json!(["read", null]),
        json!({"read": true}),
        json!(true),
    ] {
        let r = gw
            .post_json("/api/auth/tokens", json!({"name": "t", "scopes": bad}), Some(&jwt))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let body = r.json();
        assert_eq!(body["error"], "invalid_request", "{bad}");
        assert_eq!(body["field"], "scopes", "{bad}");
        assert!(body["detail"].as_str().unwrap().starts_with("scopes "), "{body}");
    }
    let list = gw
        .client()
        .get("/api/auth/tokens", &[("authorization", &bearer(&jwt))])
        .await
        .json();
    assert_eq!(list, json!([]));
    assert_eq!(up.seen.count(), 0);
    // At most 16, duplicates dropped in order; `null` is the default.
    let (_, _) = token(&gw, &jwt, Some(json!(many[..16]))).await;
    let r = gw
        .post_json(
            "/api/auth/tokens",
            json!({"name": "d", "scopes": ["read", "docs:write", "read"]}),
            Some(&jwt),
        )
        .await;
    assert_eq!(r.json()["scopes"], json!(["read", "docs:write"]));
    let r = gw
        .post_json("/api/auth/tokens", json!({"name": "n", "scopes": null}), Some(&jwt))
        .await;
    assert_eq!(r.json()["scopes"], json!(["full"]));
}

#[tokio::test]
async fn the_listing_shows_each_tokens_scopes() {
    let (_up, gw) = pair("").await;
    let (_, jwt) = session(&gw, "lister").await;
    let r = gw
        .post_json("/api/auth/tokens", json!({"name": "default"}), Some(&jwt))
        .await;
    assert_eq!(r.json()["scopes"], json!(["full"]));
    let (read_id, _) = token(&gw, &jwt, Some(json!(["read"]))).await;
    let (custom_id, _) = token(&gw, &jwt, Some(json!(["ingest", "read"]))).await;
    let list = gw
        .client()
        .get("/api/auth/tokens", &[("authorization", &bearer(&jwt))])
        .await
        .json();
    let scopes: Vec<(String, Value)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t["scopes"].clone()))
        .collect();
    assert_eq!(scopes.len(), 3);
    assert!(scopes.contains(&("default".into(), json!(["full"]))));
    let by_id = |id: &str| list.as_array().unwrap().iter().find(|t| t["id"] == id).unwrap()["scopes"].clone();
    assert_eq!(by_id(&read_id), json!(["read"]));
    assert_eq!(by_id(&custom_id), json!(["ingest", "read"]));
}
