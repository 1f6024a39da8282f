//! The `ragflow` profile end to end: RAGFlow's real SDK (`ragflow-sdk`, from the test virtualenv)
//! with an authgate `agt_` token, through the gateway, to a RAGFlow-shaped backend
//! (`tests/backends/ragflow_backend.py`) that accepts only its own API keys. The gateway injects
//! the caller's stored key; the backend must never see the `agt_` token.

use crate::common::python::{PythonBackend, pyenv_python};
use crate::common::*;
use authgate::accounts::backend_keys::BackendKeys;
use authgate::config::{EncryptionKey, RagflowConfig};
use authgate::store::backend_keys::SubjectKind;
use serde_json::{Value, json};

/// base64 of 32 bytes of 0x07: the tests' `upstream.ragflow.key_encryption_key`.
const KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const ALICE_KEY: &str = "ragflow-IjA1ZTk0OWE4LWFsaWNlLWtleQ";
const RESEARCH_KEY: &str = "ragflow-IjA1ZTk0OWE4LXJlc2VhcmNoLWtleQ";

/// `tests/backends/ragflow_backend.py` knowing alice's and the research group's keys. Killed on drop.
struct RagflowBackend(PythonBackend);

impl RagflowBackend {
    fn start() -> RagflowBackend {
        RagflowBackend(PythonBackend::start(
            "ragflow_backend.py",
            &[
                format!("alice-tenant={ALICE_KEY}"),
                format!("research-tenant={RESEARCH_KEY}"),
            ],
        ))
    }

    fn url(&self) -> String {
        self.0.url()
    }

    /// Every request the backend received: [{method, path, headers: [[name, value]]}].
    async fn seen(&self) -> Vec<Value> {
        let port = self.0.port;
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /__seen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
            serde_json::from_str::<Vec<Value>>(&body).unwrap()
        })
        .await
        .unwrap()
    }
}

fn ragflow_config() -> RagflowConfig {
    RagflowConfig {
        key_encryption_key: EncryptionKey([7; 32]),
        previous_keys: Vec::new(),
        cache_ttl: std::time::Duration::from_secs(10),
    }
}

async fn ragflow_gateway(backend: &RagflowBackend) -> TestGateway {
    for s in [KEK, ALICE_KEY, RESEARCH_KEY] {
        crate::common::logscan::secret(s);
    }
    TestGateway::builder(&backend.url())
        .extra(&format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[upstream]\nprofile = \"ragflow\"\n[upstream.ragflow]\nkey_encryption_key = \"{KEK}\"\n"
        ))
        .start()
        .await
}

/// An `agt_` API token for a new user `name`: (user id, token).
async fn user_with_token(gw: &TestGateway, name: &str) -> (String, String) {
    let (id, _) = session(gw, name).await;
    let token = gw
        .gateway
        .accounts()
        .create_token(&id, "sdk", None, None)
        .await
        .unwrap()
        .secret;
    crate::common::logscan::secret(&token);
    (id, token)
}

/// What ragflow-sdk did with `key` against the gateway: list datasets, create a chat.
async fn sdk(gw: &TestGateway, key: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ragflow_sdk_calls.py");
    let base = format!("https://localhost:{}", gw.addr.port());
    let (ca, key, python) = (gw.ca.clone(), key.to_owned(), pyenv_python());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(&base)
            .arg(&ca)
            .arg(&key)
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
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The Authorization values the backend received, and whether any header carried `needle`.
fn authorizations(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .flat_map(|r| r["headers"].as_array().unwrap().iter())
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("authorization"))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

fn carries(seen: &[Value], needle: &str) -> bool {
    seen.iter().any(|r| r.to_string().contains(needle))
}

#[tokio::test]
async fn ragflow_sdk_lists_datasets_and_creates_a_chat_with_the_injected_key() {
    let backend = RagflowBackend::start();
    let gw = ragflow_gateway(&backend).await;
    let (alice, alice_token) = user_with_token(&gw, "alice").await;
    let keys = BackendKeys::new(&ragflow_config(), gw.gateway.store().clone());
    keys.set(SubjectKind::User, &alice, ALICE_KEY).await.unwrap();

    let v = sdk(&gw, &alice_token).await;
    assert_eq!(v["datasets"], json!(["kb-of-alice-tenant"]), "{v}");
    assert_eq!(v["chat"], json!({"id": "chat-alice-tenant", "name": "helper"}), "{v}");

    let seen = backend.seen().await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0]["path"].as_str().unwrap().split('?').next(),
        Some("/api/v1/datasets")
    );
    assert_eq!(
        (seen[1]["method"].as_str(), seen[1]["path"].as_str()),
        (Some("POST"), Some("/api/v1/chats"))
    );
    assert_eq!(
        authorizations(&seen),
        [format!("Bearer {ALICE_KEY}"), format!("Bearer {ALICE_KEY}")]
    );
    assert!(!carries(&seen, &alice_token) && !carries(&seen, "agt_"), "{seen:?}");
}

#[tokio::test]
async fn a_group_key_serves_members_without_their_own_and_no_key_is_a_readable_403() {
    let backend = RagflowBackend::start();
    let gw = ragflow_gateway(&backend).await;
    let (_, bob_token) = user_with_token(&gw, "bob").await;
    let (_, carol_token) = user_with_token(&gw, "carol").await;
    let accounts = gw.gateway.accounts();
    let bob = accounts.find_user("bob").await.unwrap();
    accounts.set_group(&bob, "research", true).await.unwrap();
    let keys = BackendKeys::new(&ragflow_config(), gw.gateway.store().clone());
    keys.set(SubjectKind::Group, "research", RESEARCH_KEY).await.unwrap();

    let v = sdk(&gw, &bob_token).await;
    assert_eq!(v["datasets"], json!(["kb-of-research-tenant"]), "{v}");

    // carol has no key and is in no group that has one: refused by the gateway, nothing forwarded.
    let before = backend.seen().await.len();
    let v = sdk(&gw, &carol_token).await;
    assert_eq!(v["error"]["type"], "Exception", "{v}");
    assert_eq!(v["error"]["text"], "No RAGFlow API key is set for this user", "{v}");
    let r = gw
        .client()
        .get(
            "/api/v1/datasets",
            &[("authorization", &format!("Bearer {carol_token}"))],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "forbidden");
    assert_eq!(r.json()["code"], 403);
    let seen = backend.seen().await;
    assert_eq!(seen.len(), before, "carol's requests reached nothing");
    assert!(!carries(&seen, "agt_"), "{seen:?}");
}

#[tokio::test]
async fn unknown_and_revoked_tokens_raise_a_readable_sdk_error_and_reach_nothing() {
    let backend = RagflowBackend::start();
    let gw = ragflow_gateway(&backend).await;
    let (alice, alice_token) = user_with_token(&gw, "alice").await;
    let keys = BackendKeys::new(&ragflow_config(), gw.gateway.store().clone());
    keys.set(SubjectKind::User, &alice, ALICE_KEY).await.unwrap();

    let v = sdk(&gw, "agt_bogus").await;
    assert_eq!(v["error"], json!({"type": "Exception", "text": "Invalid token"}), "{v}");

    let accounts = gw.gateway.accounts();
    let row = accounts.list_tokens(&alice).await.unwrap().remove(0);
    accounts.revoke_token(&alice, &row.id).await.unwrap();
    let v = sdk(&gw, &alice_token).await;
    assert_eq!(v["error"]["type"], "Exception", "{v}");
    assert!(!v["error"]["text"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(backend.seen().await.len(), 0, "no refused token reaches RAGFlow");
}

#[tokio::test]
async fn a_clients_own_bearer_never_reaches_ragflow_even_on_a_public_path() {
    let backend = RagflowBackend::start();
    let gw = ragflow_gateway(&backend).await;
    let (alice, alice_token) = user_with_token(&gw, "alice").await;
    let keys = BackendKeys::new(&ragflow_config(), gw.gateway.store().clone());
    keys.set(SubjectKind::User, &alice, ALICE_KEY).await.unwrap();

    // A RAGFlow key a client learnt somehow, on a public path: removed, not forwarded.
    let r = gw
        .client()
        .get("/api/health", &[("authorization", &format!("Bearer {RESEARCH_KEY}"))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // With X-API-Key as the credential and a forged bearer beside it: the bearer is replaced.
    let r = gw
        .client()
        .get("/api/v1/datasets", &[("x-api-key", alice_token.as_str())])
        .await;
    assert_eq!(r.json()["code"], 0, "{}", r.text());
    let seen = backend.seen().await;
    assert_eq!(authorizations(&seen), [format!("Bearer {ALICE_KEY}")], "{seen:?}");
    assert!(!carries(&seen, "agt_"), "{seen:?}");
}

#[tokio::test]
async fn forward_auth_answers_the_callers_ragflow_key_or_403() {
    let backend = RagflowBackend::start();
    let gw = ragflow_gateway(&backend).await;
    let (alice, alice_token) = user_with_token(&gw, "alice").await;
    let (_, carol_token) = user_with_token(&gw, "carol").await;
    let keys = BackendKeys::new(&ragflow_config(), gw.gateway.store().clone());
    keys.set(SubjectKind::User, &alice, ALICE_KEY).await.unwrap();
    let asks = |token: &str| {
        vec![
            ("x-original-method".to_owned(), "GET".to_owned()),
            ("x-original-uri".to_owned(), "/api/v1/datasets".to_owned()),
            ("authorization".to_owned(), format!("Bearer {token}")),
        ]
    };
    let gw = &gw;
    let call = |h: Vec<(String, String)>| async move {
        let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        gw.client().get("/_auth/verify", &h).await
    };
    let r = call(asks(&alice_token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.headers["authorization"].to_str().unwrap(),
        format!("Bearer {ALICE_KEY}")
    );
    let r = call(asks(&carol_token)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "forbidden");
    assert!(r.headers.get("authorization").is_none());
    assert_eq!(backend.seen().await.len(), 0, "forward-auth forwards nothing itself");
}
