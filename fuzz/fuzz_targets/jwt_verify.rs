//! Any byte string as a bearer token: verification must never panic, and must never accept a
//! token that was not signed with the key.
#![no_main]

use std::time::Duration;

use authgate::auth::jwt::{ClaimRules, JwtAlgorithm, Verifier, VerifyKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let key = VerifyKey::hmac(None, JwtAlgorithm::HS256, b"fuzz-secret-fuzz-secret-fuzz-secret!").unwrap();
    let verifier = Verifier::new(vec![key], ClaimRules { issuer: None, audience: None, leeway: Duration::from_secs(30) });
    // The fuzzer cannot forge an HMAC: any acceptance is a bug.
    assert!(verifier.verify(token).is_err());
});
