//! Backend API keys (the `ragflow` profile): sealed with AES-256-GCM before they reach the store,
//! opened only to be sent to the backend, and looked up for a user as their own key, else the
//! first of their groups' keys in byte order of the group name.
//!
//! The rule this module keeps: a key never leaves this module in the clear except as the value
//! [`BackendKeys::open`] returns to the one caller that sends it upstream, never appears in a log
//! line or an error, and a row that does not open (wrong encryption key, moved to another subject,
//! tampered with) fails closed. Each row carries the id of the key that sealed it, a random 96-bit
//! nonce, and is bound to its subject (`user:<id>` or `group:<name>`) as associated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{EncryptionKey, RagflowConfig};
use crate::store::backend_keys::{SealedRow, SubjectKind};
use crate::store::{Store, StoreError};

/// The longest key accepted, in bytes (RAGFlow's are about 40).
pub const MAX_KEY_LEN: usize = 4096;

/// Why a key could not be stored or opened; no variant carries key material.
#[derive(Debug, thiserror::Error)]
pub enum BackendKeyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Sealed with a key that is neither `key_encryption_key` nor one of `previous_keys`.
    #[error("sealed with encryption key `{0}`, which is not configured (add it to upstream.ragflow.previous_keys)")]
    UnknownKeyId(String),
    /// The row does not open under its key: tampered with, or bound to another subject.
    #[error("does not decrypt (tampered with, or not this subject's)")]
    Corrupt,
    #[error("the key is empty")]
    Empty,
    #[error("the key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    #[error("the key has a space or a control character (a RAGFlow API key is one printable token)")]
    NotAToken,
}

struct SealKey {
    id: String,
    cipher: Aes256Gcm,
}

impl SealKey {
    fn new(key: &EncryptionKey) -> SealKey {
        SealKey {
            id: key_id(key),
            cipher: Aes256Gcm::new(&key.0.into()),
        }
    }
}

/// The id stored beside each row: the first 8 bytes of SHA-256 over a label and the key, hex.
/// It names the key for rotation without revealing anything usable about it.
pub fn key_id(key: &EncryptionKey) -> String {
    let mut h = Sha256::new();
    h.update(b"authgate backend key id\0");
    h.update(key.0);
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the row is bound to, so that a sealed key copied to another subject does not open.
fn aad(kind: SubjectKind, subject: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(32 + subject.len());
    a.extend_from_slice(b"authgate backend key v1\0");
    a.extend_from_slice(kind.as_str().as_bytes());
    a.push(0);
    a.extend_from_slice(subject.as_bytes());
    a
}

/// Whether `key` can be sent as `Authorization: Bearer <key>`: printable ASCII, no space.
pub fn check_key(key: &str) -> Result<(), BackendKeyError> {
    if key.is_empty() {
        return Err(BackendKeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(BackendKeyError::TooLong);
    }
    if !key.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(BackendKeyError::NotAToken);
    }
    Ok(())
}

/// Seals with `key_encryption_key`; opens with it or any of `previous_keys`.
pub struct BackendKeys {
    current: SealKey,
    previous: Vec<SealKey>,
    store: Store,
}

impl BackendKeys {
    pub fn new(cfg: &RagflowConfig, store: Store) -> BackendKeys {
        BackendKeys {
            current: SealKey::new(&cfg.key_encryption_key),
            previous: cfg.previous_keys.iter().map(SealKey::new).collect(),
            store,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The id of the key new rows are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// `plaintext` sealed for the subject under the current key, with a fresh random nonce.
    pub fn seal(&self, kind: SubjectKind, subject: &str, plaintext: &str) -> Result<SealedRow, BackendKeyError> {
        check_key(plaintext)?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let nonce = Nonce::from(nonce);
        let aad = aad(kind, subject);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| BackendKeyError::Corrupt)?;
        Ok(SealedRow {
            kind,
            subject: subject.to_owned(),
            key_id: self.current.id.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
            updated_at: i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX),
        })
    }

    /// The key in `row`, if it opens under the key it names.
    pub fn open(&self, row: &SealedRow) -> Result<String, BackendKeyError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == row.key_id)
            .ok_or_else(|| BackendKeyError::UnknownKeyId(row.key_id.clone()))?;
        let nonce: [u8; 12] = STANDARD
            .decode(&row.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(BackendKeyError::Corrupt)?;
        let ciphertext = STANDARD.decode(&row.ciphertext).map_err(|_| BackendKeyError::Corrupt)?;
        let aad = aad(row.kind, &row.subject);
        let plain = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| BackendKeyError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| BackendKeyError::Corrupt)
    }

    /// Seal and store `plaintext` as the subject's key (replacing any).
    pub async fn set(&self, kind: SubjectKind, subject: &str, plaintext: &str) -> Result<(), BackendKeyError> {
        let row = self.seal(kind, subject, plaintext)?;
        self.store.put_backend_key(&row).await?;
        Ok(())
    }

    /// The key `user_id` sends upstream: their own, else that of the first of `groups` (sorted,
    /// as `Store::user_access` returns them) that has one. `None`: no key anywhere.
    pub async fn for_user(&self, user_id: &str, groups: &[String]) -> Result<Option<String>, BackendKeyError> {
        if let Some(row) = self.store.backend_key(SubjectKind::User, user_id).await? {
            return self.open(&row).map(Some);
        }
        for g in groups {
            if let Some(row) = self.store.backend_key(SubjectKind::Group, g).await? {
                return self.open(&row).map(Some);
            }
        }
        Ok(None)
    }

    /// Re-seal every row not under the current key; returns (re-sealed, already current). A row
    /// that does not open stops the rotation with its error, leaving the rest as they were.
    pub async fn rotate(&self) -> Result<(usize, usize), BackendKeyError> {
        let (mut moved, mut current) = (0, 0);
        for row in self.store.backend_keys().await? {
            if row.key_id == self.current.id {
                current += 1;
                continue;
            }
            let plain = self.open(&row)?;
            self.set(row.kind, &row.subject, &plain).await?;
            moved += 1;
        }
        Ok((moved, current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(current: u8, previous: &[u8]) -> RagflowConfig {
        RagflowConfig {
            key_encryption_key: EncryptionKey([current; 32]),
            previous_keys: previous.iter().map(|b| EncryptionKey([*b; 32])).collect(),
            cache_ttl: Duration::from_secs(10),
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bk.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_sealed_key_round_trips_and_is_not_stored_in_the_clear() {
        let (_d, store) = store().await;
        let keys = BackendKeys::new(&cfg(1, &[]), store.clone());
        keys.set(SubjectKind::User, "u1", "ragflow-ABCDEF0123456789")
            .await
            .unwrap();
        let row = store.backend_key(SubjectKind::User, "u1").await.unwrap().unwrap();
        assert!(!row.ciphertext.contains("ragflow-ABCDEF"));
        assert_eq!(row.key_id, keys.current_key_id());
        assert_eq!(STANDARD.decode(&row.nonce).unwrap().len(), 12);
        assert_eq!(keys.open(&row).unwrap(), "ragflow-ABCDEF0123456789");
        // A fresh nonce each time: sealing the same key twice gives different rows.
        let again = keys.seal(SubjectKind::User, "u1", "ragflow-ABCDEF0123456789").unwrap();
        assert_ne!(again.nonce, row.nonce);
        assert_ne!(again.ciphertext, row.ciphertext);
    }

    #[tokio::test]
    async fn a_wrong_key_a_moved_row_or_a_flipped_bit_fails_closed() {
        let (_d, store) = store().await;
        let keys = BackendKeys::new(&cfg(1, &[]), store.clone());
        let row = keys.seal(SubjectKind::User, "u1", "secret-key").unwrap();
        // Another encryption key that claims the same id (a misconfiguration) does not open it.
        let mut other = BackendKeys::new(&cfg(2, &[]), store.clone());
        other.current.id = keys.current_key_id().to_owned();
        assert!(matches!(other.open(&row), Err(BackendKeyError::Corrupt)));
        // Not configured at all: named by id, never opened.
        let other = BackendKeys::new(&cfg(2, &[]), store.clone());
        let err = other.open(&row).unwrap_err();
        assert!(matches!(err, BackendKeyError::UnknownKeyId(_)));
        assert!(!err.to_string().contains("secret-key"));
        // Bound to its subject.
        let moved = SealedRow {
            subject: "u2".into(),
            ..row.clone()
        };
        assert!(matches!(keys.open(&moved), Err(BackendKeyError::Corrupt)));
        let as_group = SealedRow {
            kind: SubjectKind::Group,
            ..row.clone()
        };
        assert!(matches!(keys.open(&as_group), Err(BackendKeyError::Corrupt)));
        let mut ct = STANDARD.decode(&row.ciphertext).unwrap();
        ct[0] ^= 1;
        let flipped = SealedRow {
            ciphertext: STANDARD.encode(ct),
            ..row.clone()
        };
        assert!(matches!(keys.open(&flipped), Err(BackendKeyError::Corrupt)));
        let short_nonce = SealedRow {
            nonce: STANDARD.encode([0u8; 8]),
            ..row
        };
        assert!(matches!(keys.open(&short_nonce), Err(BackendKeyError::Corrupt)));
    }

    #[tokio::test]
    async fn rotation_opens_old_rows_and_reseals_them_under_the_new_key() {
        let (_d, store) = store().await;
        let old = BackendKeys::new(&cfg(1, &[]), store.clone());
        old.set(SubjectKind::User, "u1", "key-one").await.unwrap();
        old.set(SubjectKind::Group, "research", "key-two").await.unwrap();
        let new = BackendKeys::new(&cfg(2, &[1]), store.clone());
        assert_ne!(new.current_key_id(), old.current_key_id());
        // Before rotating, old rows still open through previous_keys.
        assert_eq!(new.for_user("u1", &[]).await.unwrap().as_deref(), Some("key-one"));
        assert_eq!(new.rotate().await.unwrap(), (2, 0));
        assert_eq!(new.rotate().await.unwrap(), (0, 2));
        for row in store.backend_keys().await.unwrap() {
            assert_eq!(row.key_id, new.current_key_id());
        }
        // Once rotated, the old key is no longer needed.
        let only_new = BackendKeys::new(&cfg(2, &[]), store.clone());
        assert_eq!(
            only_new.for_user("u9", &["research".into()]).await.unwrap().as_deref(),
            Some("key-two")
        );
        assert!(matches!(
            old.for_user("u1", &[]).await,
            Err(BackendKeyError::UnknownKeyId(_))
        ));
    }

    #[tokio::test]
    async fn a_users_own_key_wins_then_the_first_group_in_name_order() {
        let (_d, store) = store().await;
        let keys = BackendKeys::new(&cfg(1, &[]), store.clone());
        keys.set(SubjectKind::Group, "beta", "key-beta").await.unwrap();
        keys.set(SubjectKind::Group, "alpha", "key-alpha").await.unwrap();
        let groups = vec!["alpha".to_owned(), "beta".to_owned()];
        assert_eq!(
            keys.for_user("u1", &groups).await.unwrap().as_deref(),
            Some("key-alpha")
        );
        assert_eq!(
            keys.for_user("u1", &groups[1..]).await.unwrap().as_deref(),
            Some("key-beta")
        );
        assert_eq!(keys.for_user("u1", &[]).await.unwrap(), None);
        keys.set(SubjectKind::User, "u1", "key-own").await.unwrap();
        assert_eq!(keys.for_user("u1", &groups).await.unwrap().as_deref(), Some("key-own"));
        assert!(store.remove_backend_key(SubjectKind::User, "u1").await.unwrap());
        assert!(!store.remove_backend_key(SubjectKind::User, "u1").await.unwrap());
        assert_eq!(
            keys.for_user("u1", &groups).await.unwrap().as_deref(),
            Some("key-alpha")
        );
    }

    #[test]
    fn keys_must_be_one_printable_token() {
        assert!(check_key("ragflow-abc").is_ok());
        for bad in ["", "a b", "a\nb", "a\u{7f}", "é"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            check_key(&"a".repeat(MAX_KEY_LEN + 1)),
            Err(BackendKeyError::TooLong)
        ));
    }
}
