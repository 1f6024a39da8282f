//! What the two RAG backends' own clients read from the gateway: error bodies carrying `error`,
//! `detail`, `message` and `code` (issue 19), read by RAGFlow's real SDK from the test virtualenv.

use crate::common::python::{PythonBackend, pyenv_python};
use crate::common::*;
use serde_json::json;

fn assert_four_fields(r: &Reply, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], error, "{}", r.text());
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(!detail.is_empty(), "{}", r.text());
    assert_eq!(body["message"].as_str(), Some(detail), "{}", r.text());
    assert_eq!(body["code"].as_u64(), Some(u64::from(status)), "{}", r.text());
}

#[tokio::test]
async fn every_refusal_carries_error_detail_message_and_code() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let c = gw.client();

    let r = c.get("/api/collections", &[]).await;
    assert_four_fields(&r, 401, "invalid_token");
    let r = c
        .get("/api/collections", &[("authorization", "Bearer agt_bogus")])
        .await;
    assert_four_fields(&r, 401, "invalid_token");
    // Forward-auth answers nobody until server.trusted_proxies names a proxy.
    let r = c.get("/_auth/verify", &[]).await;
    assert_four_fields(&r, 403, "forbidden");
    let r = c.get("/api/a/%2e%2e/collections", &[]).await;
    assert_four_fields(&r, 400, "invalid_request");
    let r = c.get("/api/auth/no-such-endpoint", &[]).await;
    assert_four_fields(&r, 404, "not_found");
    let big = format!("{{\"username\":\"{}\",\"password\":\"x\"}}", "a".repeat(70 * 1024));
    let r = c
        .call(
            "POST",
            "/api/auth/login",
            &[("content-type", "application/json")],
            Some(big.into_bytes()),
        )
        .await;
    assert_four_fields(&r, 413, "payload_too_large");
    assert_eq!(up.seen.count(), 0, "no refusal reaches the backend");
}

#[tokio::test]
async fn ragflow_sdk_raises_the_gateways_message_for_an_unknown_token() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ragflow_sdk_error.py");
    let base = format!("https://localhost:{}", gw.addr.port());
    let ca = gw.ca.clone();
    let python = pyenv_python();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(&base)
            .arg(&ca)
            .output()
    })
    .await
    .unwrap()
    .expect("the virtualenv's python runs");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Before issue 19 this was KeyError('message').
    assert_eq!(v["type"], "Exception", "{v}");
    assert_eq!(v["text"], "Invalid token", "{v}");
    assert_eq!(up.seen.count(), 0, "the bogus token reaches nothing");
}

/// RAG Modulo's `JWT_SECRET_KEY` in these tests.
const RAG_MODULO_SECRET: &str = "rag-modulo-jwt-secret-for-the-tests-0123456789";

/// `tests/backends/rag_modulo_backend.py`: decodes the bearer and authorizes as RAG Modulo does.
fn rag_modulo_backend() -> PythonBackend {
    PythonBackend::start("rag_modulo_backend.py", &[RAG_MODULO_SECRET.to_owned()])
}

async fn rag_modulo_gateway(backend: &PythonBackend) -> TestGateway {
    crate::common::logscan::secret(RAG_MODULO_SECRET);
    TestGateway::builder(&backend.url())
        .extra(&format!(
            "[upstream]\nprofile = \"rag_modulo\"\n[upstream.rag_modulo]\njwt_secret = \"{RAG_MODULO_SECRET}\"\n"
        ))
        .start()
        .await
}

async fn make_admin(gw: &TestGateway, name: &str) {
    let accounts = gw.gateway.accounts();
    let user = accounts.find_user(name).await.unwrap();
    accounts.set_role(&user, authgate::policy::Role::Admin).await.unwrap();
}

/// What the backend answered (it echoes what it saw), for `method path` with these headers.
async fn ask(gw: &TestGateway, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let r = gw.client().call(method, path, headers, None).await;
    (r.status, r.json())
}

#[tokio::test]
async fn rag_modulo_profile_a_user_reaches_user_routes_and_is_refused_admin_ones() {
    let backend = rag_modulo_backend();
    let gw = rag_modulo_gateway(&backend).await;
    let (id, jwt) = session_with_email(&gw, "ursula", "ursula@example.com").await;
    let auth = bearer(&jwt);
    let h = [("authorization", auth.as_str())];

    let (status, seen) = ask(&gw, "GET", "/api/collections/c1", &h).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["user"],
        json!({"sub": id, "uuid": id, "email": "ursula@example.com", "name": "ursula", "role": "user"})
    );
    assert_eq!(seen["signed_with_secret"], true, "{seen}");
    let sent = seen["authorization"][0].as_str().unwrap();
    assert_ne!(sent, auth, "the client's own bearer never reaches RAG Modulo");
    assert_eq!(seen["authorization"].as_array().unwrap().len(), 1);
    let (status, seen) = ask(&gw, "GET", &format!("/api/users/{id}/pipelines"), &h).await;
    assert_eq!((status, seen["detail"].as_str()), (200, Some("authorized")));

    // RAG Modulo's admin routes: refused by its RBAC, from the role authgate asserted.
    for method in ["DELETE", "PUT", "POST"] {
        let (status, seen) = ask(&gw, method, "/api/collections/c1", &h).await;
        assert_eq!(status, 403, "{method}: {seen}");
        assert_eq!(seen["user"]["role"], "user");
    }
    let (status, _) = ask(&gw, "GET", "/api/users/u2/profile", &h).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn rag_modulo_profile_an_admin_reaches_both() {
    let backend = rag_modulo_backend();
    let gw = rag_modulo_gateway(&backend).await;
    let (id, jwt) = session_with_email(&gw, "ada", "ada@example.com").await;
    make_admin(&gw, "ada").await;
    // Tokens are reused for at most rag_modulo::REUSE_MAX_SECS; this user has none yet.
    let auth = bearer(&jwt);
    let h = [("authorization", auth.as_str())];
    for (method, path) in [
        ("GET", "/api/collections/c1"),
        ("DELETE", "/api/collections/c1"),
        ("PUT", "/api/collections/c1"),
        ("GET", "/api/users/u2/profile"),
    ] {
        let (status, seen) = ask(&gw, method, path, &h).await;
        assert_eq!(status, 200, "{method} {path}: {seen}");
        assert_eq!(seen["user"]["role"], "admin");
        assert_eq!(seen["user"]["uuid"], id.as_str());
        assert_eq!(seen["signed_with_secret"], true);
    }
}

#[tokio::test]
async fn rag_modulo_profile_never_forwards_the_clients_bearer() {
    let backend = rag_modulo_backend();
    let gw = rag_modulo_gateway(&backend).await;
    let (id, jwt) = session(&gw, "mallory").await;
    let r = gw
        .post_json("/api/auth/tokens", json!({"name": "sdk"}), Some(&jwt))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    crate::common::logscan::secret(&token);

    // The mock token alone: not a credential authgate knows, refused before RAG Modulo.
    let mock = [("authorization", "Bearer mock_token_for_testing")];
    let r = gw.client().call("DELETE", "/api/collections/c1", &mock, None).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_token")));

    // The mock token beside a valid API token: two credentials, refused, nothing forwarded
    // (the backend would have answered with what it saw).
    let both = [
        ("authorization", "Bearer mock_token_for_testing"),
        ("x-api-key", token.as_str()),
    ];
    let r = gw.client().call("DELETE", "/api/collections/c1", &both, None).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_token")));

    // The API token as the bearer, with RAG Modulo's own override headers: the backend sees
    // authgate's JWT for this user, never the agt_ token, and none of the headers.
    let forged = [
        ("authorization", &*format!("Bearer {token}")),
        ("x-user-role", "admin"),
        ("x-user-uuid", "00000000-0000-0000-0000-000000000000"),
    ];
    let (status, seen) = ask(&gw, "GET", "/api/collections/c1", &forged).await;
    assert_eq!(status, 200, "{seen}");
    let sent = seen["authorization"][0].as_str().unwrap();
    assert!(!sent.contains(&token) && !sent.contains("mock_token"), "{sent}");
    assert_eq!(seen["user"]["sub"], id.as_str());
    assert_eq!(seen["user"]["role"], "user");
    assert_eq!(
        (seen["x_user_role"].clone(), seen["x_user_uuid"].clone()),
        (json!(null), json!(null))
    );
    let (status, _) = ask(&gw, "DELETE", "/api/collections/c1", &forged).await;
    assert_eq!(status, 403, "the forged role header made no admin");

    // A public path: a client's bearer is removed all the same (RAG Modulo reads any it gets).
    let (status, seen) = ask(&gw, "GET", "/api/health", &mock).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["authorization"], json!([]), "{seen}");
    assert_eq!(seen["detail"], "open path");
}
