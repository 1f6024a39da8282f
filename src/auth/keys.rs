//! The key ring: configured keys turned into a verifier, the one signing key, and the JWKS
//! document published at `/.well-known/jwks.json`.
//!
//! The rule this module keeps: only public material is ever published (HMAC secrets never are),
//! and every key read from disk is checked at start-up, so a bad key refuses to start rather than
//! failing on the first request.

use std::path::Path;

use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::auth::jwt::{ClaimRules, JwtAlgorithm, SigningKey, Verifier, VerifyKey};
use crate::config::{JwtConfig, KeySpec, MIN_HS_SECRET_BYTES, Secret, SecretSource};

pub struct KeyRing {
    pub verifier: Verifier,
    pub signer: SigningKey,
    /// The serialized JWKS (public keys of asymmetric keys that have a private key here).
    pub jwks: Bytes,
}

fn name(spec: &KeySpec) -> String {
    match &spec.kid {
        Some(kid) => format!("jwt.keys (kid {kid})"),
        None => "jwt".to_owned(),
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))
}

fn encoding_key(alg: JwtAlgorithm, pem: &[u8]) -> Result<EncodingKey, jsonwebtoken::errors::Error> {
    match alg {
        JwtAlgorithm::RS256 => EncodingKey::from_rsa_pem(pem),
        JwtAlgorithm::ES256 => EncodingKey::from_ec_pem(pem),
        JwtAlgorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => Ok(EncodingKey::from_secret(pem)),
    }
}

/// Build the key ring from validated config.
pub fn load(cfg: &JwtConfig) -> Result<KeyRing, String> {
    let mut verify = Vec::with_capacity(cfg.keys.len());
    let mut signer = None;
    let mut jwks = JwkSet { keys: Vec::new() };
    for spec in &cfg.keys {
        let what = name(spec);
        let alg = spec.algorithm;
        match &spec.source {
            SecretSource::Given(secret) => {
                let (v, s) = hmac_key(spec, secret)?;
                verify.push(v);
                signer = s.or(signer);
            }
            SecretSource::GenerateInto(path) => {
                let (v, s) = hmac_key(spec, &read_or_generate_secret(path)?)?;
                verify.push(v);
                signer = s.or(signer);
            }
            SecretSource::PrivatePem(path) => {
                let pem = read(path, &format!("{what}.private_key"))?;
                let (enc, mut jwk) = private_key(alg, &pem).map_err(|e| {
                    format!(
                        "{what}.private_key: {} is not a {alg} PKCS#8 PEM key: {e}",
                        path.display()
                    )
                })?;
                jwk.common.key_id.clone_from(&spec.kid);
                jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                let dec = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{what}.private_key: {e}"))?;
                verify.push(VerifyKey::public(spec.kid.clone(), alg, dec));
                jwks.keys.push(jwk);
                if spec.signing {
                    signer = Some(SigningKey {
                        kid: spec.kid.clone(),
                        alg,
                        key: enc,
                    });
                }
            }
            SecretSource::PublicPem(path) => {
                let pem = read(path, &format!("{what}.public_key"))?;
                verify.push(VerifyKey::public_pem(spec.kid.clone(), alg, &pem).map_err(|e| {
                    format!(
                        "{what}.public_key: {} is not a {alg} PEM public key: {e}",
                        path.display()
                    )
                })?);
            }
        }
    }
    let signer = signer.ok_or("jwt: no signing key (mark one [[jwt.keys]] entry with signing = true)")?;
    let verifier = Verifier::new(
        verify,
        ClaimRules {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: cfg.leeway,
        },
    );
    let jwks = serde_json::to_vec(&jwks).map_err(|e| format!("jwks: {e}"))?;
    Ok(KeyRing {
        verifier,
        signer,
        jwks: Bytes::from(jwks),
    })
}

/// A JWKS document with one more key.
pub fn with_jwk(jwks: &[u8], jwk: Jwk) -> Result<Bytes, String> {
    let mut set: JwkSet = serde_json::from_slice(jwks).map_err(|e| format!("jwks: {e}"))?;
    set.keys.push(jwk);
    serde_json::to_vec(&set)
        .map(Bytes::from)
        .map_err(|e| format!("jwks: {e}"))
}

/// A private key (PKCS#8 PEM) for signing, and its public JWK.
pub fn private_key(alg: JwtAlgorithm, pem: &[u8]) -> Result<(EncodingKey, Jwk), String> {
    let enc = encoding_key(alg, pem).map_err(|e| e.to_string())?;
    let jwk = public_jwk(alg, pem, &enc).map_err(|e| format!("cannot derive the public key: {e}"))?;
    Ok((enc, jwk))
}

/// The public JWK of a private key. jsonwebtoken derives it for RSA and EC; for Ed25519 it only
/// reads PKCS#8 v1, so the raw public key comes from rcgen, which reads v1 and v2 alike.
fn public_jwk(alg: JwtAlgorithm, pem: &[u8], enc: &EncodingKey) -> Result<Jwk, String> {
    use base64::Engine;
    use jsonwebtoken::jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    };
    if alg != JwtAlgorithm::EdDSA {
        return Jwk::from_encoding_key(enc, alg.to_jsonwebtoken()).map_err(|e| e.to_string());
    }
    let text = std::str::from_utf8(pem).map_err(|_| "not PEM text".to_owned())?;
    let pair = rcgen::KeyPair::from_pem(text).map_err(|e| e.to_string())?;
    if !pair.is_compatible(&rcgen::PKCS_ED25519) {
        return Err("not an Ed25519 key".into());
    }
    Ok(Jwk {
        common: CommonParameters {
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
        }),
    })
}

/// An HMAC key's verifier, and its signer when it is the signing key.
fn hmac_key(spec: &KeySpec, secret: &Secret) -> Result<(VerifyKey, Option<SigningKey>), String> {
    let bytes = secret.expose().as_bytes();
    let verify =
        VerifyKey::hmac(spec.kid.clone(), spec.algorithm, bytes).map_err(|e| format!("{}: {e}", name(spec)))?;
    let signer = spec.signing.then(|| SigningKey {
        kid: spec.kid.clone(),
        alg: spec.algorithm,
        key: EncodingKey::from_secret(bytes),
    });
    Ok((verify, signer))
}

/// The development secret: read from its file, or generated there (mode 0600) on first run.
pub fn read_or_generate_secret(path: &Path) -> Result<Secret, String> {
    use base64::Engine;
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("jwt.secret_file: cannot read {}: {e}", path.display()))?;
        let secret = text.trim().to_owned();
        if secret.len() < MIN_HS_SECRET_BYTES {
            return Err(format!(
                "jwt.secret_file: {} holds fewer than {MIN_HS_SECRET_BYTES} bytes; delete it to regenerate",
                path.display()
            ));
        }
        return Ok(Secret::new(secret));
    }
    let mut bytes = [0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("jwt.secret_file: cannot create {}: {e}", dir.display()))?;
    }
    crate::tls::write_private(path, secret.as_bytes())
        .map_err(|e| format!("jwt.secret_file: cannot write {}: {e}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "no JWT secret was set: generated a random one for development; production must set JWT_SECRET_KEY"
    );
    Ok(Secret::new(secret))
}

/// A new key pair (or HMAC secret) for `authgate keys generate`: (private PEM or secret, public PEM).
pub fn generate(alg: JwtAlgorithm) -> Result<(String, Option<String>), String> {
    use base64::Engine;
    let pair = match alg {
        JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => {
            let mut bytes = [0u8; 48];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            return Ok((base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes), None));
        }
        JwtAlgorithm::ES256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        JwtAlgorithm::EdDSA => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
        JwtAlgorithm::RS256 => {
            return Err("RS256 key generation is not built in: use `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out key.pem` and `openssl pkey -in key.pem -pubout -out key.pub.pem`".into());
        }
    }
    .map_err(|e| format!("cannot generate a {alg} key: {e}"))?;
    Ok((pair.serialize_pem(), Some(pair.public_key_pem())))
}
