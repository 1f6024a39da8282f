//! JWT minting for tests: HS256 tokens signed with the secret every test gateway is configured
//! with, and the `Authorization` value that carries them. Each minted secret is told to logscan.

use serde_json::json;

use super::logscan;

pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `sub`, valid for an hour, signed with the test secret.
pub fn token(sub: &str) -> String {
    token_with(
        jsonwebtoken::Algorithm::HS256,
        SECRET,
        json!({"sub": sub, "exp": now() + 3600, "iat": now()}),
    )
}

pub fn token_with(alg: jsonwebtoken::Algorithm, secret: &str, claims: serde_json::Value) -> String {
    logscan::secret(secret);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    logscan::secret(&token);
    token
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
