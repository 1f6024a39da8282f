//! What the two RAG backends' own clients read from the gateway: error bodies carrying `error`,
//! `detail`, `message` and `code` (issue 19), read by RAGFlow's real SDK from the test virtualenv.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The virtualenv's Python (`scripts/test` builds it): `DIFF_TEST_PYTHON`, else `target/pyenv/bin/python`.
fn pyenv_python() -> PathBuf {
    let path = std::env::var_os("DIFF_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"));
    assert!(
        path.is_file(),
        "no Python virtualenv at {}: run scripts/test, which creates it from tests/differential/requirements.txt",
        path.display()
    );
    path
}

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
