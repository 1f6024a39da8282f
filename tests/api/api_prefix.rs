//! `auth.api_prefix` moves the gateway's own JSON API; `auth.backend_paths` gives paths below it
//! back to the backend (RAG Modulo's own `/api/auth/*`), forwarded under the normal rules.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn a_moved_api_serves_the_seed_flow_and_the_old_prefix_reaches_the_backend() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .extra("[auth]\napi_prefix = \"/gw/auth\"\n")
        .start()
        .await;
    let c = gw.client();

    // The seed's documented flow, at the new prefix.
    let account = json!({"username": "mover@example.com", "password": PASSWORD, "email": "mover@example.com"});
    let r = c.post_json("/gw/auth/register", account, None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let user_id = r.json()["user_id"].as_str().unwrap().to_owned();
    let r = c
        .post_json(
            "/gw/auth/login",
            json!({"username": "mover@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let jwt = r.json()["access_token"].as_str().unwrap().to_owned();
    let auth = bearer(&jwt);
    let r = c.get("/gw/auth/me", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user_id"], user_id.as_str());
    assert_eq!(up.seen.count(), 0, "the gateway answered all three itself");

    // The old prefix is the backend's now: a protected path like any other.
    let r = c.post_json("/api/auth/login", json!({"provider": "ibm"}), None).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(up.seen.count(), 0, "no credential, nothing forwarded");
    let r = c
        .post_json("/api/auth/login", json!({"provider": "ibm"}), Some(&jwt))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen.last();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/api/auth/login")
    );
    assert_eq!(seen.one("x-user-id").as_deref(), Some(user_id.as_str()));
    assert!(
        seen.all("authorization").is_empty(),
        "the gateway's token is not forwarded"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&seen.body).unwrap()["provider"],
        "ibm"
    );
    // And the gateway does not answer its old paths any more.
    let r = c.get("/api/auth/me", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.last().target, "/api/auth/me");
}

#[tokio::test]
async fn backend_paths_under_the_default_prefix_reach_the_backend_and_login_stays_the_gateways() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .extra(
            "[auth]\napi_prefix = \"/api/auth\"\nbackend_paths = [\"/api/auth/callback\", \"/api/auth/oidc-config\"]\n\
             public_paths = [\"/api/health\", \"/api/auth/oidc-config\"]\n",
        )
        .start()
        .await;
    let (user_id, jwt) = session(&gw, "rag-user").await;
    assert_eq!(up.seen.count(), 0, "register and login are still the gateway's");
    let c = gw.client();
    let auth = bearer(&jwt);

    // Public backend path: forwarded without a credential and without an identity.
    let r = c.get("/api/auth/oidc-config", &[("x-user-id", "admin")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen.last();
    assert_eq!(seen.target, "/api/auth/oidc-config");
    assert!(seen.all("x-user-id").is_empty(), "a forged identity never passes");

    // Protected backend path: a credential is needed, and the backend sees the user.
    let r = c.get("/api/auth/callback?code=abc&state=xyz", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.seen.count(), 1, "the refused callback reached nothing");
    let r = c
        .get("/api/auth/callback?code=abc&state=xyz", &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen.last();
    assert_eq!(seen.target, "/api/auth/callback?code=abc&state=xyz");
    assert_eq!(seen.one("x-user-id").as_deref(), Some(user_id.as_str()));
    assert!(seen.all("authorization").is_empty());

    // Below a backend path, and every other path under the prefix, is still the gateway's.
    let r = c.get("/api/auth/callback/x", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c.get("/api/auth/me", &[("authorization", &auth)]).await;
    assert_eq!((r.status, r.json()["user_id"].as_str()), (200, Some(user_id.as_str())));
    assert_eq!(up.seen.count(), 2);
}
