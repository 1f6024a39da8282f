//! The key ring: configured keys turned into a verifier, the one signing key, and the JWKS
//! document published at `/.well-known/jwks.json`.
//!
//! The rule this module keeps: only public material is ever published (HMAC secrets never are),
//! and every key read from disk is checked at start-up, so a bad key refuses to start rather than
//! failing on the first request.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::auth::jwt::{ClaimRules, JwtAlgorithm, SigningKey, Verifier, VerifyKey};
use crate::config::{JwtConfig, KeySpec, MIN_HS_SECRET_BYTES, Secret, SecretSource};

/// Why the key ring could not be built. `what` names the config key (`jwt`, `jwt.keys (kid k)`).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what}: cannot read {}: {source}. Fix: point it at a readable PEM file", path.display())]
    Read {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}.private_key: {} is not a {alg} PKCS#8 PEM key: {source}. Fix: write one with `authgate keys generate --algorithm {alg}`", path.display())]
    BadPrivateKey {
        what: String,
        alg: JwtAlgorithm,
        path: PathBuf,
        source: PemKeyError,
    },
    #[error("{what}.private_key: {source}")]
    PublicHalf {
        what: String,
        source: jsonwebtoken::errors::Error,
    },
    #[error("{what}.public_key: {} is not a {alg} PEM public key: {reason}. Fix: give the public key that matches the algorithm", path.display())]
    BadPublicKey {
        what: String,
        alg: JwtAlgorithm,
        path: PathBuf,
        reason: crate::auth::jwt::KeyMaterialError,
    },
    #[error("{what}: {reason}")]
    Hmac {
        what: String,
        reason: crate::auth::jwt::KeyMaterialError,
    },
    #[error(
        "oidc.signing_key: this key is also a [jwt] key. Fix: give ID tokens a key of their own (an ID token must never pass as an access token)"
    )]
    SharedIdpKey,
    #[error("jwt: no signing key (mark one [[jwt.keys]] entry with signing = true)")]
    NoSigningKey,
    #[error("jwks: {0}")]
    Jwks(serde_json::Error),
    #[error("jwt.secret_file: cannot read {}: {source}", path.display())]
    ReadSecret { path: PathBuf, source: std::io::Error },
    #[error("jwt.secret_file: {} holds fewer than {MIN_HS_SECRET_BYTES} bytes; delete it to regenerate", path.display())]
    ShortSecret { path: PathBuf },
    #[error("jwt.secret_file: cannot create {}: {source}. Fix: make its directory writable", dir.display())]
    CreateSecretDir { dir: PathBuf, source: std::io::Error },
    #[error("jwt.secret_file: cannot write {}: {source}. Fix: make its directory writable", path.display())]
    WriteSecret { path: PathBuf, source: std::io::Error },
    #[error(
        "RS256 key generation is not built in: use `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out key.pem` and `openssl pkey -in key.pem -pubout -out key.pub.pem`"
    )]
    NoRsaGeneration,
    #[error("cannot generate a {alg} key: {source}")]
    Generate { alg: JwtAlgorithm, source: rcgen::Error },
}

/// Why a PEM private key is unusable for its algorithm.
#[derive(Debug, thiserror::Error)]
pub enum PemKeyError {
    #[error("{0}")]
    Parse(jsonwebtoken::errors::Error),
    #[error("cannot derive the public key: {0}")]
    PublicKey(jsonwebtoken::errors::Error),
    #[error("cannot derive the public key: not PEM text")]
    NotText,
    #[error("cannot derive the public key: {0}")]
    Ed25519(rcgen::Error),
    #[error("cannot derive the public key: not an Ed25519 key")]
    NotEd25519,
}

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

fn read(path: &Path, what: String) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        what,
        path: path.to_owned(),
        source,
    })
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
pub fn load(cfg: &JwtConfig) -> Result<KeyRing, KeyError> {
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
                let pem = read(path, format!("{what}.private_key"))?;
                let (enc, mut jwk) = private_key(alg, &pem).map_err(|source| KeyError::BadPrivateKey {
                    what: what.clone(),
                    alg,
                    path: path.clone(),
                    source,
                })?;
                jwk.common.key_id.clone_from(&spec.kid);
                jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                let dec = DecodingKey::from_jwk(&jwk).map_err(|source| KeyError::PublicHalf {
                    what: what.clone(),
                    source,
                })?;
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
                let pem = read(path, format!("{what}.public_key"))?;
                verify.push(VerifyKey::public_pem(spec.kid.clone(), alg, &pem).map_err(|reason| {
                    KeyError::BadPublicKey {
                        what: what.clone(),
                        alg,
                        path: path.clone(),
                        reason,
                    }
                })?);
            }
        }
    }
    let signer = signer.ok_or(KeyError::NoSigningKey)?;
    let verifier = Verifier::new(
        verify,
        ClaimRules {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: cfg.leeway,
            max_lifetime: Some(cfg.expiration),
        },
    );
    let jwks = serde_json::to_vec(&jwks).map_err(KeyError::Jwks)?;
    Ok(KeyRing {
        verifier,
        signer,
        jwks: Bytes::from(jwks),
    })
}

impl KeyRing {
    /// Whether the published keys hold `jwk`'s public key (whatever its `kid`).
    pub fn jwks_has(&self, jwk: &Jwk) -> bool {
        let Ok(set) = serde_json::from_slice::<JwkSet>(&self.jwks) else {
            return false;
        };
        set.keys.iter().any(|k| k.algorithm == jwk.algorithm)
    }
}

/// A JWKS document with one more key.
pub fn with_jwk(jwks: &[u8], jwk: Jwk) -> Result<Bytes, KeyError> {
    let mut set: JwkSet = serde_json::from_slice(jwks).map_err(KeyError::Jwks)?;
    set.keys.push(jwk);
    serde_json::to_vec(&set).map(Bytes::from).map_err(KeyError::Jwks)
}

/// A private key (PKCS#8 PEM) for signing, and its public JWK.
pub fn private_key(alg: JwtAlgorithm, pem: &[u8]) -> Result<(EncodingKey, Jwk), PemKeyError> {
    let enc = encoding_key(alg, pem).map_err(PemKeyError::Parse)?;
    let jwk = public_jwk(alg, pem, &enc)?;
    Ok((enc, jwk))
}

/// The public JWK of a private key. jsonwebtoken derives it for RSA and EC; for Ed25519 it only
/// reads PKCS#8 v1, so the raw public key comes from rcgen, which reads v1 and v2 alike.
fn public_jwk(alg: JwtAlgorithm, pem: &[u8], enc: &EncodingKey) -> Result<Jwk, PemKeyError> {
    use base64::Engine;
    use jsonwebtoken::jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    };
    if alg != JwtAlgorithm::EdDSA {
        return Jwk::from_encoding_key(enc, alg.to_jsonwebtoken()).map_err(PemKeyError::PublicKey);
    }
    let text = std::str::from_utf8(pem).map_err(|_| PemKeyError::NotText)?;
    let pair = rcgen::KeyPair::from_pem(text).map_err(PemKeyError::Ed25519)?;
    if !pair.is_compatible(&rcgen::PKCS_ED25519) {
        return Err(PemKeyError::NotEd25519);
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
fn hmac_key(spec: &KeySpec, secret: &Secret) -> Result<(VerifyKey, Option<SigningKey>), KeyError> {
    let bytes = secret.expose().as_bytes();
    let verify = VerifyKey::hmac(spec.kid.clone(), spec.algorithm, bytes).map_err(|reason| KeyError::Hmac {
        what: name(spec),
        reason,
    })?;
    let signer = spec.signing.then(|| SigningKey {
        kid: spec.kid.clone(),
        alg: spec.algorithm,
        key: EncodingKey::from_secret(bytes),
    });
    Ok((verify, signer))
}

/// The development secret: read from its file, or generated there (mode 0600) on first run.
pub fn read_or_generate_secret(path: &Path) -> Result<Secret, KeyError> {
    use base64::Engine;
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::ReadSecret {
            path: path.to_owned(),
            source,
        })?;
        let secret = text.trim().to_owned();
        if secret.len() < MIN_HS_SECRET_BYTES {
            return Err(KeyError::ShortSecret { path: path.to_owned() });
        }
        return Ok(Secret::new(secret));
    }
    let mut bytes = [0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::CreateSecretDir {
            dir: dir.to_owned(),
            source,
        })?;
    }
    crate::tls::write_private(path, secret.as_bytes()).map_err(|source| KeyError::WriteSecret {
        path: path.to_owned(),
        source,
    })?;
    tracing::warn!(
        path = %path.display(),
        "no JWT secret was set: generated a random one for development; production must set JWT_SECRET_KEY"
    );
    Ok(Secret::new(secret))
}

/// A new key pair (or HMAC secret) for `authgate keys generate`: (private PEM or secret, public PEM).
pub fn generate(alg: JwtAlgorithm) -> Result<(String, Option<String>), KeyError> {
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
            return Err(KeyError::NoRsaGeneration);
        }
    }
    .map_err(|source| KeyError::Generate { alg, source })?;
    Ok((pair.serialize_pem(), Some(pair.public_key_pem())))
}
