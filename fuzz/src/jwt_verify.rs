//! Oracle for the `jwt_verify` target: JWT verification on hostile tokens.
//!
//! The first input byte picks a mode. Raw: the rest is the token, which must be refused (the
//! fuzzer cannot forge an HMAC or an Ed25519 signature). Signed: the rest is a JOSE header and a
//! claims set separated by the first newline, signed here with the HMAC key, so the fuzzer reaches
//! the header and claim checks behind the signature; a token the verifier accepts must then satisfy
//! every rule as read back from the JSON by `serde_json`. Verification must never panic.

use std::time::Duration;

use authgate::auth::jwt::{ClaimRules, JwtAlgorithm, Verifier, VerifyKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";
/// A public key whose private half was thrown away: nothing can sign for it.
const ED25519_PUBLIC: &[u8] = b"-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAHnYrgmy9ukZeosFXQaceHWKD3zqSNHPuDyy6vzwTvyg=
-----END PUBLIC KEY-----
";
/// Verification time, fixed so that every input replays the same way.
pub const NOW: u64 = 1_700_000_000;
const LEEWAY: u64 = 30;
const ISSUER: &str = "iss";
const AUDIENCE: &str = "aud";

/// The verifiers: indexed by (issuer rule, audience rule) as bits 0 and 1.
pub fn verifiers() -> Vec<Verifier> {
    let keys = vec![
        VerifyKey::hmac(None, JwtAlgorithm::HS256, SECRET).expect("an HMAC key"),
        VerifyKey::public_pem(Some("ed".into()), JwtAlgorithm::EdDSA, ED25519_PUBLIC).expect("an Ed25519 key"),
    ];
    (0..4)
        .map(|rules: u8| {
            Verifier::new(
                keys.clone(),
                ClaimRules {
                    issuer: (rules & 1 != 0).then(|| ISSUER.to_owned()),
                    audience: (rules & 2 != 0).then(|| AUDIENCE.to_owned()),
                    leeway: Duration::from_secs(LEEWAY),
                    max_lifetime: None,
                },
            )
        })
        .collect()
}

fn absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// An accepted header or claims set read back: it must be UTF-8 JSON (RFC 7515 §4, RFC 8259 §8.1).
/// `None` for a number past `f64`, which JSON allows but `Value` cannot hold: not judged further.
fn json(bytes: &[u8], what: &str) -> Option<Value> {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("the accepted {what} is not UTF-8: {e}"));
    match serde_json::from_str(text) {
        Ok(v) => Some(v),
        Err(e) if e.to_string().starts_with("number out of range") => None,
        Err(e) => panic!("the accepted {what} is not JSON: {e}"),
    }
}

/// Panics if verification accepts what it must not, or panics itself.
pub fn check(data: &[u8], verifiers: &[Verifier]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let rules = usize::from((mode >> 1) & 3);
    let verifier = &verifiers[rules];
    if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        assert!(
            verifier.verify_at(token, NOW).is_err(),
            "a token nobody signed was accepted"
        );
        return;
    }

    let (header, claims) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    let Ok(verified) = verifier.verify_at(&token, NOW) else {
        return;
    };

    let Some(header) = json(header, "header") else {
        return;
    };
    let header = header.as_object().expect("an accepted header is an object");
    assert_eq!(header.get("alg").and_then(Value::as_str), Some("HS256"), "{header:?}");
    assert!(absent(header.get("kid")), "an HMAC token with a kid: {header:?}");
    for name in ["jku", "x5u", "jwk", "x5c", "crit", "b64", "zip", "cty"] {
        assert!(absent(header.get(name)), "{name} accepted: {header:?}");
    }
    if let Some(typ) = header.get("typ").and_then(Value::as_str) {
        assert!(
            typ.eq_ignore_ascii_case("jwt") || typ.eq_ignore_ascii_case("at+jwt"),
            "typ {typ:?} accepted"
        );
    }

    let Some(claims) = json(claims, "claims set") else {
        return;
    };
    let claims = claims.as_object().expect("accepted claims are an object");
    let num = |name: &str| claims.get(name).and_then(Value::as_u64);
    assert_eq!(
        claims.get("sub").and_then(Value::as_str),
        Some(verified.user_id.as_str()),
        "{claims:?}"
    );
    let exp = num("exp").expect("an accepted token has exp");
    assert_eq!(exp, verified.exp);
    assert!(NOW < exp.saturating_add(LEEWAY), "expired token accepted: {claims:?}");
    for name in ["nbf", "iat"] {
        if !absent(claims.get(name)) {
            let t = num(name).expect("a time claim is a number");
            assert!(t <= NOW + LEEWAY, "{name} in the future accepted: {claims:?}");
        }
    }
    assert_eq!(num("iat"), verified.iat);
    assert_eq!(
        claims.get("jti").and_then(Value::as_str),
        verified.jti.as_deref(),
        "{claims:?}"
    );
    assert_eq!(claims.get("ep").map_or(Some(0), Value::as_i64), Some(verified.epoch));
    if !absent(claims.get("token_use")) {
        assert_eq!(claims.get("token_use").and_then(Value::as_str), Some("access"));
    }
    if rules & 1 != 0 {
        assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER), "{claims:?}");
    }
    if rules & 2 != 0 {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == AUDIENCE,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
            _ => false,
        };
        assert!(ok, "wrong audience accepted: {claims:?}");
    }
}
