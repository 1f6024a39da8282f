//! The signed identity assertion: the backend verifies what it receives against the JWKS the
//! gateway publishes, with nothing shared but the public key.

use std::sync::Arc;

use crate::common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

async fn start(mode: &str, algorithm: &str, audience: Option<&str>) -> (TestUpstream, TestGateway) {
    let up = TestUpstream::start().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let key = dir.path().join("identity.pem");
    let audience = audience.map(|a| format!("audience = \"{a}\"\n")).unwrap_or_default();
    let extra = format!(
        "[upstream.identity]\nmode = \"{mode}\"\nalgorithm = \"{algorithm}\"\nprivate_key = \"{}\"\n\
         generate_if_missing = true\n{audience}",
        key.display()
    );
    let gw = TestGateway::builder(&up.url()).dir(dir).extra(&extra).start().await;
    (up, gw)
}

/// What a backend does: fetch the JWKS once, pick the key by `kid`, check signature, aud (when
/// `audience` is given; else the assertion must carry none) and iss.
async fn verify_as_backend(gw: &TestGateway, assertion: &str, audience: Option<&str>) -> Value {
    let r = gw.client().get("/.well-known/jwks.json", &[]).await;
    assert_eq!(r.status, 200);
    let set: JwkSet = serde_json::from_str(&r.text()).unwrap();
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    let kid = header.kid.expect("the assertion names its key");
    let jwk = set.find(&kid).expect("the assertion key is published");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&["authgate"]);
    match audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        }
        None => {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        }
    }
    let claims = jsonwebtoken::decode::<Value>(assertion, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the backend verifies the assertion")
        .claims;
    assert_eq!(claims.get("aud").and_then(Value::as_str), audience, "{claims}");
    claims
}

#[tokio::test]
async fn the_backend_verifies_the_header_assertion_against_the_published_jwks() {
    for algorithm in ["EdDSA", "ES256"] {
        let (up, gw) = start("header", algorithm, Some("rag-backend")).await;
        let (id, token) = session_with_email(&gw, "alice", "alice@example.com").await;
        let r = gw
            .client()
            .get(
                "/api/search",
                &[("authorization", &bearer(&token)), ("x-auth-assertion", "forged")],
            )
            .await;
        assert_eq!(r.status, 200);
        let seen = up.seen.last();
        assert_eq!(seen.one("x-user-id").as_deref(), Some(id.as_str()));
        assert_eq!(seen.all("x-auth-assertion").len(), 1, "{algorithm}");
        assert_eq!(seen.one("authorization"), None);
        let claims = verify_as_backend(&gw, &seen.one("x-auth-assertion").unwrap(), Some("rag-backend")).await;
        assert_eq!(claims["sub"], id.as_str());
        assert_eq!(claims["uuid"], id.as_str());
        assert_eq!(claims["username"], "alice");
        assert_eq!(claims["name"], "alice");
        assert_eq!(claims["email"], "alice@example.com");
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, 60, "{algorithm}");
        // A second request reuses the cached assertion: same value, still verifiable.
        gw.client()
            .get("/api/other", &[("authorization", &bearer(&token))])
            .await;
        assert_eq!(up.seen.last().one("x-auth-assertion"), seen.one("x-auth-assertion"));
    }
}

#[tokio::test]
async fn bearer_mode_replaces_the_client_token_with_the_assertion() {
    // No audience: RAG Modulo's PyJWT decoder refuses an aud it was not told to expect.
    let (up, gw) = start("bearer", "ES256", None).await;
    let (id, access) = session_with_email(&gw, "alice", "alice@example.com").await;
    let r = gw
        .client()
        .get("/api/search", &[("authorization", &bearer(&access))])
        .await;
    assert_eq!(r.status, 200);
    let seen = up.seen.last();
    let auth = seen.one("authorization").expect("a Bearer assertion");
    let assertion = auth.strip_prefix("Bearer ").unwrap();
    assert_ne!(assertion, access, "the client's own token must not be forwarded");
    assert_eq!(seen.one("x-auth-assertion"), None);
    let claims = verify_as_backend(&gw, assertion, None).await;
    assert_eq!(claims["sub"], id.as_str());
    // A token minted elsewhere with the shared secret: no account here, sub and uuid only.
    gw.client()
        .get("/api/search", &[("authorization", &bearer(&token("external-user")))])
        .await;
    let auth = up.seen.last().one("authorization").unwrap();
    let claims = verify_as_backend(&gw, auth.strip_prefix("Bearer ").unwrap(), None).await;
    assert_eq!(claims["sub"], "external-user");
    assert!(claims.get("username").is_none(), "{claims}");
    // Unauthenticated requests get no assertion at all.
    assert_eq!(gw.client().get("/api/health", &[]).await.status, 200);
    assert_eq!(up.seen.last().one("authorization"), None);
}

#[test]
fn identity_config_errors_name_the_key_and_the_fix() {
    for (extra, key) in [
        (
            "[upstream.identity]\naudience = \"x\"\n",
            "upstream.identity.private_key",
        ),
        (
            "[upstream.identity]\nprivate_key = \"k.pem\"\naudience = \"x\"\nalgorithm = \"HS256\"\n",
            "upstream.identity.algorithm",
        ),
        (
            "[upstream.identity]\nprivate_key = \"k.pem\"\naudience = \" \"\n",
            "upstream.identity.audience",
        ),
        (
            "[upstream.identity]\nprivate_key = \"k.pem\"\naudience = \"x\"\nmode = \"cookie\"\n",
            "upstream.identity.mode",
        ),
    ] {
        let toml = format!("[server]\nplaintext = true\n[jwt]\nsecret = \"{SECRET}\"\n{extra}");
        let err = authgate::config::Config::from_toml_str(&toml).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
}
