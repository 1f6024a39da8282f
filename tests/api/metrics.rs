//! The Prometheus metrics move as they should after a scripted set of requests.

use std::collections::HashMap;

use crate::common::*;
use serde_json::json;

/// `/metrics` as a map from series (name plus labels) to value.
async fn scrape(gw: &TestGateway) -> HashMap<String, f64> {
    let (status, text) = gw.admin_get("/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    let a = after
        .get(series)
        .copied()
        .unwrap_or_else(|| panic!("no series {series}"));
    a - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_follow_a_scripted_session() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let before = scrape(&gw).await;
    let c = gw.client();
    // Auth API: register and log in (2 auth_api 2xx), one wrong password (auth_api 4xx).
    let body = json!({"username": "metrics", "password": "correct horse battery", "email": "m@example.com"});
    assert_eq!(c.post_json("/api/auth/register", body, None).await.status, 201);
    let login = json!({"username": "metrics", "password": "correct horse battery"});
    let r = c.post_json("/api/auth/login", login, None).await;
    let jwt = r.json()["access_token"].as_str().unwrap().to_owned();
    let wrong = json!({"username": "metrics", "password": "wrong horse battery"});
    assert_eq!(c.post_json("/api/auth/login", wrong, None).await.status, 401);
    // Proxied with a JWT: 3 x 2xx.
    for _ in 0..3 {
        assert_eq!(
            c.get("/api/search", &[("authorization", &bearer(&jwt))]).await.status,
            200
        );
    }
    // Refused: 2 without a credential, 1 expired.
    for _ in 0..2 {
        assert_eq!(c.get("/api/search", &[]).await.status, 401);
    }
    let expired = token_with(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        json!({"sub": "u", "exp": now() - 3600}),
    );
    assert_eq!(
        c.get("/api/search", &[("authorization", &bearer(&expired))])
            .await
            .status,
        401
    );
    // A public route.
    assert_eq!(c.get("/api/health", &[]).await.status, 200);
    // An API token: created (auth_api 2xx, by JWT), then used twice (store hit, then memory hit), and an
    // unknown one.
    let r = c.post_json("/api/auth/tokens", json!({"name": "ci"}), Some(&jwt)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let api = r.json()["token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(
            c.get("/api/search", &[("authorization", &bearer(&api))]).await.status,
            200
        );
    }
    let unknown = format!("agt_{}", "A".repeat(43));
    assert_eq!(
        c.get("/api/search", &[("authorization", &bearer(&unknown))])
            .await
            .status,
        401
    );

    let after = scrape(&gw).await;
    let req = |route: &str, class: &str, auth: &str| {
        format!(r#"authgate_requests_total{{route="{route}",status_class="{class}",auth="{auth}"}}"#)
    };
    for (series, want) in [
        (req("auth_api", "2xx", "none"), 2.0),
        (req("auth_api", "2xx", "jwt"), 1.0),
        (req("auth_api", "4xx", "none"), 1.0),
        (req("protected", "2xx", "jwt"), 3.0),
        (req("protected", "2xx", "api_token"), 2.0),
        (req("protected", "4xx", "failed"), 4.0),
        (req("public", "2xx", "none"), 1.0),
        (r#"authgate_auth_failures_total{reason="missing"}"#.to_owned(), 2.0),
        (r#"authgate_auth_failures_total{reason="expired"}"#.to_owned(), 1.0),
        (
            r#"authgate_auth_failures_total{reason="unknown_token"}"#.to_owned(),
            1.0,
        ),
        (
            r#"authgate_api_token_lookups_total{result="store_hit"}"#.to_owned(),
            1.0,
        ),
        (
            r#"authgate_api_token_lookups_total{result="memory_hit"}"#.to_owned(),
            1.0,
        ),
        (r#"authgate_api_token_lookups_total{result="unknown"}"#.to_owned(), 1.0),
        ("authgate_upstream_duration_seconds_count".to_owned(), 6.0),
    ] {
        assert_eq!(delta(&before, &after, &series), want, "{series}");
    }
    assert!(after.contains_key("authgate_store_errors_total"));
    assert!(after.contains_key("authgate_redis_errors_total"));
    assert!(delta(&before, &after, "authgate_tls_handshake_duration_seconds_count") >= 1.0);
    assert_eq!(up.seen.count(), 6);
}

#[tokio::test]
async fn client_sent_identity_headers_are_counted_as_they_are_stripped() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let before = scrape(&gw).await;
    let c = gw.client();
    // A public route and a protected one: both lose what the client claimed about itself.
    let spoof = [("x-user-id", "admin"), ("remote-user", "admin")];
    assert_eq!(c.get("/api/health", &spoof).await.status, 200);
    let jwt = token("alice");
    let mut with_token = spoof.to_vec();
    let auth = bearer(&jwt);
    with_token.push(("authorization", &auth));
    assert_eq!(c.get("/api/search", &with_token).await.status, 200);
    let seen = up.seen.take();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].one("x-user-id").is_none() && seen[0].one("remote-user").is_none());
    assert_eq!(seen[1].one("x-user-id").as_deref(), Some("alice"));
    assert!(seen[1].one("remote-user").is_none());
    let after = scrape(&gw).await;
    assert_eq!(delta(&before, &after, "authgate_identity_headers_stripped_total"), 4.0);
}
