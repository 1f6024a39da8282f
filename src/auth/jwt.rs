//! JWT verification and issuance, with the rules of RFC 8725.
//!
//! The rule this module keeps: nothing in a token chooses how it is checked. The algorithm is the
//! configured key's (a token naming another, `none` in any casing included, is refused); `kid` only
//! selects among configured keys and must be a short plain name; `jku`, `x5u`, `jwk`, `x5c`, `crit`
//! and friends are refused, never fetched. Oversized tokens are refused before any base64 or crypto,
//! claims are read only after the signature is valid, and duplicate members are an error.
//! Signing and verification use `jsonwebtoken`'s crypto; HMAC keys are pre-keyed once at start-up.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::{Sha256, Sha384, Sha512};

use crate::auth::principal::UserId;
use crate::config::kid_is_plain;
use crate::error::AuthFailure;

/// Tokens longer than this are refused before any decoding (8 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

pub use crate::config::JwtAlgorithm;

impl JwtAlgorithm {
    /// The `jsonwebtoken` spelling (the type itself lives in `config`, which is a leaf).
    pub fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// Pre-keyed verification material.
#[derive(Clone)]
enum Material {
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
    Public(Box<DecodingKey>),
}

/// One key the gateway accepts tokens from.
#[derive(Clone)]
pub struct VerifyKey {
    kid: Option<String>,
    alg: JwtAlgorithm,
    material: Material,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why key material could not become a [`VerifyKey`].
#[derive(Debug, thiserror::Error)]
pub enum KeyMaterialError {
    #[error("{0} is not an HMAC algorithm")]
    NotHmac(JwtAlgorithm),
    #[error("{0} is not a public-key algorithm")]
    NotPublicKey(JwtAlgorithm),
    #[error("{0}")]
    HmacLength(hmac::digest::InvalidLength),
    #[error("{0}")]
    Pem(jsonwebtoken::errors::Error),
}

impl VerifyKey {
    /// An HMAC key. `secret` must already have passed the length check.
    pub fn hmac(kid: Option<String>, alg: JwtAlgorithm, secret: &[u8]) -> Result<Self, KeyMaterialError> {
        let bad = KeyMaterialError::HmacLength;
        let material = match alg {
            JwtAlgorithm::HS256 => Material::Hs256(Hmac::new_from_slice(secret).map_err(bad)?),
            JwtAlgorithm::HS384 => Material::Hs384(Hmac::new_from_slice(secret).map_err(bad)?),
            JwtAlgorithm::HS512 => Material::Hs512(Hmac::new_from_slice(secret).map_err(bad)?),
            other => return Err(KeyMaterialError::NotHmac(other)),
        };
        Ok(VerifyKey { kid, alg, material })
    }

    /// A public key (RS256, ES256, EdDSA) from PEM.
    pub fn public_pem(kid: Option<String>, alg: JwtAlgorithm, pem: &[u8]) -> Result<Self, KeyMaterialError> {
        let key = match alg {
            JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem),
            JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(pem),
            JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            other => return Err(KeyMaterialError::NotPublicKey(other)),
        }
        .map_err(KeyMaterialError::Pem)?;
        Ok(VerifyKey {
            kid,
            alg,
            material: Material::Public(Box::new(key)),
        })
    }

    /// A public key already decoded (e.g. derived from a private key's JWK).
    pub fn public(kid: Option<String>, alg: JwtAlgorithm, key: DecodingKey) -> Self {
        VerifyKey {
            kid,
            alg,
            material: Material::Public(Box::new(key)),
        }
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn alg(&self) -> JwtAlgorithm {
        self.alg
    }

    fn verify(&self, message: &[u8], signature_b64: &str) -> bool {
        fn mac<M: Mac + Clone>(m: &M, message: &[u8], sig_b64: &str) -> bool {
            let Ok(sig) = URL_SAFE_NO_PAD.decode(sig_b64) else {
                return false;
            };
            let mut m = m.clone();
            m.update(message);
            // Constant-time comparison.
            m.verify_slice(&sig).is_ok()
        }
        match &self.material {
            Material::Hs256(m) => mac(m, message, signature_b64),
            Material::Hs384(m) => mac(m, message, signature_b64),
            Material::Hs512(m) => mac(m, message, signature_b64),
            Material::Public(key) => {
                jsonwebtoken::crypto::verify(signature_b64, message, key, self.alg.to_jsonwebtoken()).unwrap_or(false)
            }
        }
    }
}

/// What the gateway checks besides the signature.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
    /// `jwt.expiration`: a token may not live longer than the gateway would issue one (plus the
    /// leeway), counted from `iat`, or from now when it has none. A session epoch is kept only
    /// that long after it moves, so a longer-lived token could outlast the gate that refuses it.
    pub max_lifetime: Option<Duration>,
}

/// The verified content of an access token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub user_id: UserId,
    pub jti: Option<String>,
    pub iat: Option<u64>,
    pub exp: u64,
    /// The user's session epoch when the token was issued (`ep`; 0 when absent).
    pub epoch: i64,
}

/// The keys tokens are accepted from, and the claim rules.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<VerifyKey>,
    rules: ClaimRules,
}

#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    // Headers that would make the token choose its own key or processing: refused when present.
    #[serde(default)]
    jku: Option<IgnoredAny>,
    #[serde(default)]
    x5u: Option<IgnoredAny>,
    #[serde(default)]
    jwk: Option<IgnoredAny>,
    #[serde(default)]
    x5c: Option<IgnoredAny>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    b64: Option<IgnoredAny>,
    #[serde(default)]
    zip: Option<IgnoredAny>,
    #[serde(default)]
    cty: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    sub: Cow<'a, str>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    aud: Option<Audience<'a>>,
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
    /// Set on tokens minted for another purpose (refresh, assertion): never an access token.
    #[serde(borrow, default)]
    token_use: Option<Cow<'a, str>>,
    #[serde(default)]
    ep: i64,
}

pub use crate::clock::now_secs;

impl Verifier {
    pub fn new(keys: Vec<VerifyKey>, rules: ClaimRules) -> Self {
        Verifier { keys, rules }
    }

    pub fn keys(&self) -> &[VerifyKey] {
        &self.keys
    }

    fn select_key(&self, kid: Option<&str>, alg: &str) -> Result<&VerifyKey, AuthFailure> {
        let key = match kid {
            Some(kid) => {
                if !kid_is_plain(kid) {
                    return Err(AuthFailure::ForbiddenHeader);
                }
                self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
            }
            // A token without `kid` is checked against the primary key (the one without a kid).
            None => self.keys.iter().find(|k| k.kid.is_none()),
        }
        .ok_or(AuthFailure::UnknownKey)?;
        // The key fixes the algorithm; the token may only agree with it, byte for byte.
        if alg != key.alg.as_str() {
            return Err(AuthFailure::BadAlgorithm);
        }
        Ok(key)
    }

    /// Verify a compact JWS access token.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthFailure> {
        self.verify_at(token, now_secs())
    }

    pub fn verify_at(&self, token: &str, now: u64) -> Result<VerifiedToken, AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::TooLarge);
        }
        let mut parts = token.splitn(4, '.');
        let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(AuthFailure::Malformed);
        };
        if h64.is_empty() || p64.is_empty() || s64.is_empty() {
            return Err(AuthFailure::Malformed);
        }

        let header_json = URL_SAFE_NO_PAD.decode(h64).map_err(|_| AuthFailure::Malformed)?;
        // JSON is UTF-8 (RFC 8259 §8.1). serde skips members it does not read without checking
        // them, so the whole text is checked first (fuzzing found a header with a stray 0xff).
        let header_json = std::str::from_utf8(&header_json).map_err(|_| AuthFailure::Malformed)?;
        let header: JoseHeader<'_> = serde_json::from_str(header_json).map_err(|_| AuthFailure::Malformed)?;
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
            || header.b64.is_some()
            || header.zip.is_some()
            || header.cty.is_some()
        {
            return Err(AuthFailure::ForbiddenHeader);
        }
        if let Some(typ) = header.typ.as_deref()
            && !(typ.eq_ignore_ascii_case("JWT") || typ.eq_ignore_ascii_case("at+jwt"))
        {
            return Err(AuthFailure::BadClaims);
        }
        let key = self.select_key(header.kid.as_deref(), &header.alg)?;

        // h64 and p64 are contiguous in `token`: the signing input is that slice.
        let message = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        if !key.verify(message, s64) {
            return Err(AuthFailure::BadSignature);
        }

        let payload = URL_SAFE_NO_PAD.decode(p64).map_err(|_| AuthFailure::Malformed)?;
        let payload = std::str::from_utf8(&payload).map_err(|_| AuthFailure::BadClaims)?;
        let claims: Claims<'_> = serde_json::from_str(payload).map_err(|_| AuthFailure::BadClaims)?;
        self.check_claims(&claims, now)?;
        let user_id = UserId::parse(&claims.sub).ok_or(AuthFailure::BadClaims)?;
        Ok(VerifiedToken {
            user_id,
            jti: claims.jti.map(Cow::into_owned),
            iat: claims.iat,
            exp: claims.exp,
            epoch: claims.ep,
        })
    }

    fn check_claims(&self, c: &Claims<'_>, now: u64) -> Result<(), AuthFailure> {
        let leeway = self.rules.leeway.as_secs();
        if c.token_use.as_deref().is_some_and(|u| u != "access") {
            return Err(AuthFailure::BadClaims);
        }
        if now >= c.exp.saturating_add(leeway) {
            return Err(AuthFailure::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(AuthFailure::NotYetValid);
        }
        if c.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(AuthFailure::NotYetValid);
        }
        if let Some(want) = &self.rules.issuer
            && c.iss.as_deref() != Some(want.as_str())
        {
            return Err(AuthFailure::WrongIssuer);
        }
        if let Some(want) = &self.rules.audience {
            let ok = match &c.aud {
                Some(Audience::One(a)) => a == want,
                Some(Audience::Many(list)) => list.iter().any(|a| a == want),
                None => false,
            };
            if !ok {
                return Err(AuthFailure::WrongAudience);
            }
        }
        if let Some(max) = self.rules.max_lifetime
            && c.exp.saturating_sub(c.iat.unwrap_or(now)) > max.as_secs().saturating_add(leeway)
        {
            return Err(AuthFailure::BadClaims);
        }
        Ok(())
    }
}

/// The key tokens are signed with.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: Option<String>,
    pub alg: JwtAlgorithm,
    pub key: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct OutClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    ep: i64,
}

/// What an issued token says.
pub struct Issue<'a> {
    pub sub: &'a str,
    pub jti: &'a str,
    pub iat: u64,
    pub ttl: Duration,
    pub issuer: &'a str,
    pub audience: Option<&'a str>,
    /// The user's session epoch (`ep`).
    pub epoch: i64,
}

impl SigningKey {
    pub fn sign(&self, issue: &Issue<'_>) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = jsonwebtoken::Header::new(self.alg.to_jsonwebtoken());
        header.kid.clone_from(&self.kid);
        let claims = OutClaims {
            sub: issue.sub,
            iat: issue.iat,
            exp: issue.iat + issue.ttl.as_secs(),
            jti: issue.jti,
            iss: issue.issuer,
            aud: issue.audience,
            ep: issue.epoch,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

/// The `iss` claim of a JWT, read without verifying anything: only to choose which provider's
/// keys to verify it with (`Authenticator::provider_bearer`). Never trusted by itself.
pub fn unverified_issuer(token: &str) -> Option<String> {
    if token.len() > 16 * 1024 {
        return None;
    }
    let middle = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(middle).ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    serde_json::from_slice::<Iss>(&bytes).ok().map(|c| c.iss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> Verifier {
        Verifier::new(
            vec![VerifyKey::hmac(None, JwtAlgorithm::HS256, SECRET).unwrap()],
            ClaimRules {
                issuer: None,
                audience: None,
                leeway: Duration::from_secs(30),
                max_lifetime: Some(Duration::from_secs(3600)),
            },
        )
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn sign_raw(header: &str, payload: &str, secret: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{p}.{sig}")
    }

    fn claims(exp: u64) -> String {
        json!({"sub": "user-1", "exp": exp, "iat": now_secs()}).to_string()
    }

    #[test]
    fn valid_token_yields_subject() {
        let t = sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &claims(now_secs() + 60), SECRET);
        assert_eq!(verifier().verify(&t).unwrap().user_id.as_str(), "user-1");
    }

    #[test]
    fn alg_none_in_any_casing_is_refused() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let h = b64(&json!({"alg": alg}));
            let p = URL_SAFE_NO_PAD.encode(claims(now_secs() + 60));
            for t in [format!("{h}.{p}."), format!("{h}.{p}.x")] {
                assert!(verifier().verify(&t).is_err(), "{alg}");
            }
        }
    }

    #[test]
    fn other_algorithms_are_refused_even_if_validly_signed_with_the_secret() {
        let t = sign_raw(r#"{"alg":"hs256"}"#, &claims(now_secs() + 60), SECRET);
        assert_eq!(verifier().verify(&t).unwrap_err(), AuthFailure::BadAlgorithm);
    }

    #[test]
    fn forbidden_headers_are_refused() {
        for extra in [
            r#""jku":"http://evil/""#,
            r#""x5u":"http://evil/""#,
            r#""jwk":{}"#,
            r#""x5c":[]"#,
            r#""crit":["exp"]"#,
        ] {
            let t = sign_raw(
                &format!(r#"{{"alg":"HS256",{extra}}}"#),
                &claims(now_secs() + 60),
                SECRET,
            );
            assert_eq!(
                verifier().verify(&t).unwrap_err(),
                AuthFailure::ForbiddenHeader,
                "{extra}"
            );
        }
    }

    #[test]
    fn kid_traversal_is_refused() {
        for kid in ["../../dev/null", "/etc/passwd", "x' OR '1'='1", "a|b", ""] {
            let t = sign_raw(
                &json!({"alg":"HS256","kid":kid}).to_string(),
                &claims(now_secs() + 60),
                SECRET,
            );
            assert!(verifier().verify(&t).is_err(), "{kid}");
        }
    }

    #[test]
    fn time_claims_are_enforced() {
        let now = now_secs();
        let expired = sign_raw(r#"{"alg":"HS256"}"#, &claims(now - 3600), SECRET);
        assert_eq!(verifier().verify(&expired).unwrap_err(), AuthFailure::Expired);
        let future = sign_raw(
            r#"{"alg":"HS256"}"#,
            &json!({"sub":"u","exp":now+7200,"nbf":now+3600}).to_string(),
            SECRET,
        );
        assert_eq!(verifier().verify(&future).unwrap_err(), AuthFailure::NotYetValid);
        let no_exp = sign_raw(r#"{"alg":"HS256"}"#, r#"{"sub":"u"}"#, SECRET);
        assert_eq!(verifier().verify(&no_exp).unwrap_err(), AuthFailure::BadClaims);
        let string_exp = sign_raw(
            r#"{"alg":"HS256"}"#,
            &json!({"sub":"u","exp":(now+60).to_string()}).to_string(),
            SECRET,
        );
        assert_eq!(verifier().verify(&string_exp).unwrap_err(), AuthFailure::BadClaims);
    }

    #[test]
    fn duplicate_claims_are_refused() {
        let now = now_secs();
        let dup = format!(r#"{{"sub":"a","sub":"b","exp":{}}}"#, now + 60);
        let t = sign_raw(r#"{"alg":"HS256"}"#, &dup, SECRET);
        assert_eq!(verifier().verify(&t).unwrap_err(), AuthFailure::BadClaims);
        let dup_alg = sign_raw(r#"{"alg":"HS256","alg":"none"}"#, &claims(now + 60), SECRET);
        assert!(verifier().verify(&dup_alg).is_err());
    }

    #[test]
    fn wrong_key_and_garbage_are_refused() {
        let t = sign_raw(
            r#"{"alg":"HS256"}"#,
            &claims(now_secs() + 60),
            b"another-secret-another-secret-xx",
        );
        assert_eq!(verifier().verify(&t).unwrap_err(), AuthFailure::BadSignature);
        for g in ["", "a", "a.b", "a.b.c.d", "...", "eyJ.eyJ.sig", "\u{0}"] {
            assert!(verifier().verify(g).is_err(), "{g:?}");
        }
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verifier().verify(&big).unwrap_err(), AuthFailure::TooLarge);
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let mut v = verifier();
        v.rules.issuer = Some("authgate".into());
        v.rules.audience = Some("rag".into());
        let now = now_secs();
        let good = sign_raw(
            r#"{"alg":"HS256"}"#,
            &json!({"sub":"u","exp":now+60,"iss":"authgate","aud":["x","rag"]}).to_string(),
            SECRET,
        );
        assert!(v.verify(&good).is_ok());
        let bad_iss = sign_raw(
            r#"{"alg":"HS256"}"#,
            &json!({"sub":"u","exp":now+60,"iss":"evil","aud":"rag"}).to_string(),
            SECRET,
        );
        assert_eq!(v.verify(&bad_iss).unwrap_err(), AuthFailure::WrongIssuer);
        let bad_aud = sign_raw(
            r#"{"alg":"HS256"}"#,
            &json!({"sub":"u","exp":now+60,"iss":"authgate","aud":"x"}).to_string(),
            SECRET,
        );
        assert_eq!(v.verify(&bad_aud).unwrap_err(), AuthFailure::WrongAudience);
    }

    #[test]
    fn other_token_uses_are_not_access_tokens() {
        let t = sign_raw(
            r#"{"alg":"HS256"}"#,
            &json!({"sub":"u","exp":now_secs()+60,"token_use":"refresh"}).to_string(),
            SECRET,
        );
        assert_eq!(verifier().verify(&t).unwrap_err(), AuthFailure::BadClaims);
    }

    #[test]
    fn subject_must_be_header_safe() {
        let t = sign_raw(
            r#"{"alg":"HS256"}"#,
            &json!({"sub":"a\r\nX-Evil: 1","exp":now_secs()+60}).to_string(),
            SECRET,
        );
        assert_eq!(verifier().verify(&t).unwrap_err(), AuthFailure::BadClaims);
    }

    #[test]
    fn signed_tokens_verify() {
        let key = SigningKey {
            kid: None,
            alg: JwtAlgorithm::HS256,
            key: EncodingKey::from_secret(SECRET),
        };
        let t = key
            .sign(&Issue {
                sub: "abc",
                jti: "j1",
                iat: now_secs(),
                ttl: Duration::from_secs(60),
                issuer: "authgate",
                audience: None,
                epoch: 3,
            })
            .unwrap();
        let v = verifier().verify(&t).unwrap();
        assert_eq!(v.user_id.as_str(), "abc");
        assert_eq!(v.jti.as_deref(), Some("j1"));
        assert_eq!(v.epoch, 3);
    }

    #[test]
    fn a_token_that_outlives_what_the_gateway_issues_is_refused() {
        let v = verifier();
        let now = now_secs();
        let sign = |claims: serde_json::Value| sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &claims.to_string(), SECRET);
        // jwt.expiration is 3600 here, the leeway 30.
        assert!(
            v.verify(&sign(json!({"sub": "u", "iat": now, "exp": now + 3630})))
                .is_ok()
        );
        assert_eq!(
            v.verify(&sign(json!({"sub": "u", "iat": now, "exp": now + 3631})))
                .unwrap_err(),
            AuthFailure::BadClaims
        );
        // Without iat the lifetime counts from now.
        assert!(v.verify(&sign(json!({"sub": "u", "exp": now + 600}))).is_ok());
        assert_eq!(
            v.verify(&sign(json!({"sub": "u", "exp": now + 30 * 24 * 3600})))
                .unwrap_err(),
            AuthFailure::BadClaims
        );
    }
}
