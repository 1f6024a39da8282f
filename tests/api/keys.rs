//! Signing keys: rotation by `kid` without logging anyone out, asymmetric algorithms, and the JWKS
//! that lets a backend verify tokens itself.

use std::path::Path;
use std::sync::Arc;

use crate::common::*;
use base64::Engine;
use serde_json::{Value, json};

const SECRET_2: &str = "second-secret-second-secret-second-secret";

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// `authgate keys generate` into `dir`; returns the private key path.
fn generate(dir: &Path, alg: &str, kid: &str) -> std::path::PathBuf {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["keys", "generate", "--algorithm", alg, "--kid", kid, "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[[jwt.keys]]") && stdout.contains(&format!("kid = \"{kid}\"")),
        "{stdout}"
    );
    let key = dir.join(format!("{kid}.pem"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(dir.join(format!("{kid}.pub.pem")).exists());
    key
}

#[tokio::test]
async fn rotating_an_hs_key_logs_nobody_out_until_the_old_key_is_removed() {
    let up = TestUpstream::start().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let base = base_toml(dir.path(), &up.url());

    // 1. The original secret signs.
    let gw = TestGateway::builder(&up.url())
        .dir(dir.clone())
        .toml(&base)
        .start()
        .await;
    register(&gw, "rot").await;
    let old = login_token(&gw, "rot").await;
    assert!(header_of(&old).get("kid").is_none());
    drop(gw);

    // 2. A new signing key is added next to it: old tokens still work, new ones carry its kid.
    let rotated =
        format!("{base}\n[[jwt.keys]]\nkid = \"k2\"\nalgorithm = \"HS256\"\nsecret = \"{SECRET_2}\"\nsigning = true\n");
    let gw = TestGateway::builder(&up.url())
        .dir(dir.clone())
        .toml(&rotated)
        .start()
        .await;
    assert_eq!(status_with_jwt(&gw, &old).await, 200);
    let new = login_token(&gw, "rot").await;
    assert_eq!(header_of(&new)["kid"], "k2");
    assert_eq!(status_with_jwt(&gw, &new).await, 200);
    drop(gw);

    // 3. The old key is removed: its tokens stop working, the new ones keep going.
    let retired = rotated.replace(&format!("secret = \"{SECRET}\"\n"), "");
    assert!(!retired.contains(SECRET));
    let gw = TestGateway::builder(&up.url())
        .dir(dir.clone())
        .toml(&retired)
        .start()
        .await;
    assert_eq!(status_with_jwt(&gw, &old).await, 401);
    assert_eq!(status_with_jwt(&gw, &new).await, 200);
    // A token naming an unknown kid is refused.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("k9".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &json!({"sub": "x", "exp": now() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET_2.as_bytes()),
    )
    .unwrap();
    assert_eq!(status_with_jwt(&gw, &forged).await, 401);
}

async fn jwks(gw: &TestGateway) -> Value {
    let r = gw.client().get("/.well-known/jwks.json", &[]).await;
    assert_eq!(r.status, 200);
    r.json()
}

#[tokio::test]
async fn asymmetric_keys_sign_and_the_jwks_lets_a_backend_verify() {
    let up = TestUpstream::start().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let keys = dir.path().join("keys");
    let es = generate(&keys, "ES256", "es-1");
    let ed = generate(&keys, "EdDSA", "ed-1");
    let rsa = keys.join("rs-1.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&rsa)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let base = base_toml(dir.path(), &up.url());

    // HS keys are never published.
    let gw = TestGateway::builder(&up.url())
        .dir(dir.clone())
        .toml(&base)
        .start()
        .await;
    assert_eq!(jwks(&gw).await, json!({"keys": []}));
    register(&gw, "rot").await;
    drop(gw);

    for (alg, kid, path, kty) in [
        ("ES256", "es-1", &es, "EC"),
        ("EdDSA", "ed-1", &ed, "OKP"),
        ("RS256", "rs-1", &rsa, "RSA"),
    ] {
        let toml = format!(
            "{base}\n[[jwt.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\nprivate_key = \"{}\"\nsigning = true\n",
            path.display()
        );
        let gw = TestGateway::builder(&up.url())
            .dir(dir.clone())
            .toml(&toml)
            .start()
            .await;
        let token = login_token(&gw, "rot").await;
        let header = header_of(&token);
        assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some(alg), Some(kid)));
        assert_eq!(status_with_jwt(&gw, &token).await, 200, "{alg}");

        let set = jwks(&gw).await;
        let published = set["keys"].as_array().unwrap();
        assert_eq!(published.len(), 1, "{set}");
        let jwk = &published[0];
        assert_eq!(
            (jwk["kid"].as_str(), jwk["kty"].as_str(), jwk["use"].as_str()),
            (Some(kid), Some(kty), Some("sig"))
        );
        assert!(
            jwk.get("d").is_none() && jwk.get("p").is_none(),
            "private material published: {jwk}"
        );

        // What a backend does: verify the token with the published key alone.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg.parse().unwrap());
        validation.set_issuer(&["authgate"]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert!(data.claims["sub"].is_string());

        // An HS256 token signed with the public key as its secret (key confusion) is refused.
        let public_pem = std::fs::read(path.with_extension("pub.pem")).unwrap_or_default();
        if !public_pem.is_empty() {
            let confused = jsonwebtoken::encode(
                &jsonwebtoken::Header {
                    kid: Some(kid.into()),
                    ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
                },
                &json!({"sub": "attacker", "exp": now() + 60}),
                &jsonwebtoken::EncodingKey::from_secret(&public_pem),
            )
            .unwrap();
            assert_eq!(status_with_jwt(&gw, &confused).await, 401, "{alg}");
        }
    }
    // Only the logins' tokens reached the backend.
    assert_eq!(up.seen.count(), 3);
}

#[test]
fn a_bad_key_file_refuses_to_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
    std::fs::write(
        dir.path().join("g.toml"),
        format!(
            "[server]\nplaintext = true\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}/db?mode=rwc\"\n[[jwt.keys]]\nkid = \"k\"\nalgorithm = \"ES256\"\nprivate_key = \"bad.pem\"\nsigning = true\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .current_dir(dir.path())
        .args(["--config", "g.toml"])
        .env_remove("JWT_SECRET_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jwt.keys (kid k).private_key"), "{err}");
}
