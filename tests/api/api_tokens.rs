//! API tokens for programs: create, list, delete, and use through Bearer or X-API-Key.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

async fn create(gw: &TestGateway, jwt: &str, body: Value) -> Reply {
    gw.post_json("/api/auth/tokens", body, Some(jwt)).await
}

#[tokio::test]
async fn a_created_token_is_shown_once_and_works_through_bearer_and_x_api_key() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let (user_id, jwt) = session(&gw, "prog").await;
    let r = create(&gw, &jwt, json!({"name": "ci bot"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("agt_") && token.len() >= 47, "{token}");
    assert_eq!(created["name"], "ci bot");
    assert!(created["expires_at"].is_null());
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let id = created["id"].as_str().unwrap().to_owned();

    for headers in [
        vec![("authorization", bearer(&token))],
        vec![("x-api-key", token.clone())],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = gw.client().get("/api/collections", &h).await;
        assert_eq!(r.status, 200);
        let seen = up.seen.last();
        assert_eq!(seen.one("x-user-id").as_deref(), Some(user_id.as_str()));
        assert!(seen.all("authorization").is_empty() && seen.all("x-api-key").is_empty());
    }

    // The list never carries the secret.
    let r = gw
        .client()
        .get("/api/auth/tokens", &[("authorization", &bearer(&jwt))])
        .await;
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert!(!r.text().contains(&token[4..]));
    let keys: Vec<&String> = list[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["created_at", "expires_at", "id", "last_used_at", "name", "scopes"]
    );
    assert_eq!(list[0]["scopes"], json!(["full"]));
    assert_eq!(created["scopes"], json!(["full"]));

    // last_used_at is recorded off the request path, soon after use.
    let started = Instant::now();
    loop {
        let r = gw
            .client()
            .get("/api/auth/tokens", &[("authorization", &bearer(&jwt))])
            .await;
        if r.json()[0]["last_used_at"].is_string() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "last_used_at never set");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The token is stored as a hash only.
    let db = std::fs::read(gw.dir.path().join("authgate.db")).unwrap_or_default();
    let wal = std::fs::read(gw.dir.path().join("authgate.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test]
async fn deleting_a_token_refuses_it_at_once_and_only_the_owner_can() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let (_, owner) = session(&gw, "owner").await;
    let (_, other) = session(&gw, "other").await;
    let created = create(&gw, &owner, json!({"name": "t"})).await.json();
    let (token, id) = (
        created["token"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(gw.client().get("/x", &[("x-api-key", &token)]).await.status, 200);

    let path = format!("/api/auth/tokens/{id}");
    let r = gw
        .client()
        .call("DELETE", &path, &[("authorization", &bearer(&other))], None)
        .await;
    assert_eq!(r.status, 404, "another user's token is not found");
    let r = gw
        .client()
        .get("/api/auth/tokens", &[("authorization", &bearer(&other))])
        .await;
    assert_eq!(r.json(), json!([]));
    assert_eq!(gw.client().get("/x", &[("x-api-key", &token)]).await.status, 200);

    let r = gw
        .client()
        .call("DELETE", &path, &[("authorization", &bearer(&owner))], None)
        .await;
    assert_eq!(r.status, 204);
    let r = gw.client().get("/x", &[("x-api-key", &token)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        gw.client()
            .call("DELETE", &path, &[("authorization", &bearer(&owner))], None)
            .await
            .status,
        404
    );
    assert_eq!(up.seen.count(), 2);
}

#[tokio::test]
async fn token_rules() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let (_, jwt) = session(&gw, "rules").await;
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "n", "expires_in": 0}), "expires_in"),
        (json!({"name": "n", "expires_in": -5}), "expires_in"),
        (json!({"name": "n", "expires_in": "soon"}), "expires_in"),
    ] {
        let r = create(&gw, &jwt, body.clone()).await;
        assert_eq!((r.status, r.json()["field"].as_str()), (400, Some(field)), "{body}");
    }
    // A token expires. Expiry is counted in whole seconds, so a 2 s token lives between 1 and 2 s:
    // enough for the first use, and over 2.1 s later.
    let t = create(&gw, &jwt, json!({"name": "short", "expires_in": 2}))
        .await
        .json();
    assert!(t["expires_at"].is_string());
    let token = t["token"].as_str().unwrap().to_owned();
    assert_eq!(gw.client().get("/x", &[("x-api-key", &token)]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(gw.client().get("/x", &[("x-api-key", &token)]).await.status, 401);

    // API tokens cannot mint API tokens.
    let t = create(&gw, &jwt, json!({"name": "long"})).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(create(&gw, &t, json!({"name": "child"})).await.status, 403);
    // Two credentials at once, or a malformed key, are refused and not forwarded.
    let before = up.seen.count();
    let r = gw
        .client()
        .get("/x", &[("x-api-key", &t), ("authorization", &bearer(&jwt))])
        .await;
    assert_eq!(r.status, 401);
    for bad in ["agt_short", "not-a-token", &format!("{t}x"), &t.replace("agt_", "agx_")] {
        assert_eq!(gw.client().get("/x", &[("x-api-key", bad)]).await.status, 401, "{bad}");
        assert_eq!(
            gw.client().get("/x", &[("authorization", &bearer(bad))]).await.status,
            401,
            "{bad}"
        );
    }
    let unknown = format!("agt_{}", "A".repeat(43));
    assert_eq!(gw.client().get("/x", &[("x-api-key", &unknown)]).await.status, 401);
    assert_eq!(up.seen.count(), before);
}

#[tokio::test]
async fn a_disabled_users_api_tokens_are_refused() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let (user_id, jwt) = session(&gw, "gone").await;
    let token = create(&gw, &jwt, json!({"name": "t"})).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(gw.client().get("/x", &[("x-api-key", &token)]).await.status, 200);
    let store = authgate::store::Store::connect(&format!(
        "sqlite://{}?mode=rwc",
        gw.dir.path().join("authgate.db").display()
    ))
    .await
    .unwrap();
    store.set_disabled(&user_id, true).await.unwrap();
    let started = Instant::now();
    while gw.client().get("/x", &[("x-api-key", &token)]).await.status != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "disabled user's API token still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
