//! The seed's documented flow, run by its own Python client (`requests`) against a live gateway,
//! with the backend's view asserted.

use crate::common::*;

#[tokio::test]
async fn rag_modulo_python_client_works_unchanged() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed/rag_modulo_client.py");
    let base = format!("https://localhost:{}", gw.addr.port());
    let ca = gw.ca.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(&base)
            .arg(&ca)
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    crate::common::logscan::secret("secure_password");
    crate::common::logscan::secret(v["login"]["access_token"].as_str().unwrap_or_default());
    let user_id = v["register"]["user_id"].as_str().unwrap();
    assert_eq!(v["register"]["username"], "user@example.com");
    assert_eq!(v["login"]["token_type"], "bearer");
    assert_eq!(v["login"]["expires_in"], 3600);
    assert!(v["login"].get("expires_at").is_none());
    let token = v["login"]["access_token"].as_str().unwrap();
    assert_eq!(v["login_authorization_header"], format!("Bearer {token}"));
    assert_eq!(v["search_status"], 200);

    // What the backend received: the search, with the trusted id and no credential.
    assert_eq!(up.seen.count(), 1, "only /api/search reaches the backend");
    let seen = up.seen.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/api/search"));
    assert_eq!(seen.one("x-user-id").as_deref(), Some(user_id));
    assert!(seen.all("authorization").is_empty());
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["question"], "What is machine learning?");
}
