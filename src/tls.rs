//! TLS for the main listener: PEM files to a rustls `ServerConfig` (TLS 1.2 and 1.3 only, ALPN h2
//! then http/1.1), certificate reload without a restart, and the development self-signed pair.
//!
//! The rule this module keeps: a new certificate pair takes effect only once it has loaded and its
//! key matches its certificate; until then the old pair keeps serving. The private key never
//! leaves this module in a printable form, and a generated key file is created with mode 0600.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why the serving certificate could not be loaded or made. Each message names the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert: cannot read {}: {source}. Fix: point tls.cert at a readable PEM certificate chain", path.display())]
    ReadCert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("tls.cert: {} is not a PEM certificate chain: {source}. Fix: give the PEM chain, leaf first", path.display())]
    BadCert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("tls.cert: {} holds no certificate. Fix: give the PEM chain, leaf first", path.display())]
    NoCert { path: PathBuf },
    #[error("tls.key: cannot read a PEM private key from {}: {source}. Fix: point tls.key at the certificate's PEM private key", path.display())]
    ReadKey {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error(
        "tls: the certificate and key do not form a usable pair: {0}. Fix: give tls.key the private key of tls.cert's leaf"
    )]
    Pair(rustls::Error),
    #[error("tls: {0}")]
    Protocols(rustls::Error),
    #[error("tls: cannot generate a certificate: {0}")]
    Generate(rcgen::Error),
    #[error("tls: cannot create {}: {source}. Fix: make the directory of tls.cert and tls.key writable, or create the files", dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("{key}: cannot write {}: {source}. Fix: make the directory writable, or create the files", path.display())]
    Write {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read and check a certificate chain and its private key.
fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|source| TlsError::ReadCert {
            path: cert.to_owned(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::BadCert {
            path: cert.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: cert.to_owned() });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    CertifiedKey::from_der(certs, key_der, &provider()).map_err(TlsError::Pair)
}

/// What identifies a version of the files: modification time and length of each.
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let c = std::fs::metadata(cert).ok()?;
    let k = std::fs::metadata(key).ok()?;
    Some((c.modified().ok()?, c.len(), k.modified().ok()?, k.len()))
}

/// The serving certificate, swapped in place when its files change.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    cert: PathBuf,
    key: PathBuf,
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertStore>, TlsError> {
        let seen = stamp(cert, key);
        let pair = load_pair(cert, key)?;
        Ok(Arc::new(CertStore {
            current: ArcSwap::from_pointee(pair),
            cert: cert.to_owned(),
            key: key.to_owned(),
            seen: Mutex::new(seen),
        }))
    }

    /// Reload when the files changed. `Ok(true)`: new pair serving; `Err`: rejected, old pair kept.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.cert, &self.key);
        {
            let Ok(mut seen) = self.seen.lock() else {
                return Ok(false);
            };
            if *seen == now {
                return Ok(false);
            }
            // Recorded before loading: a broken pair is reported once, not on every poll.
            *seen = now;
        }
        let pair = load_pair(&self.cert, &self.key)?;
        self.current.store(Arc::new(pair));
        Ok(true)
    }

    /// Whether the serving certificate is valid for `host` (a DNS name or an IP address).
    pub fn covers(&self, host: &str) -> bool {
        let pair = self.current.load();
        let (Some(leaf), Ok(name)) = (pair.cert.first(), rustls::pki_types::ServerName::try_from(host)) else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf).is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
    }

    /// The serving certificate's first DNS name that is not a wildcard.
    pub fn dns_name(&self) -> Option<String> {
        let pair = self.current.load();
        let cert = webpki::EndEntityCert::try_from(pair.cert.first()?).ok()?;
        cert.valid_dns_names()
            .find(|n| !n.starts_with('*'))
            .map(str::to_ascii_lowercase)
    }
}

/// A server config that serves whatever `store` holds, keeping at most `sessions` TLS sessions
/// for resumption by session ID (`cache.tls_sessions`; TLS 1.3 tickets name these too).
pub fn config_for(store: Arc<CertStore>, sessions: usize) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Protocols)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if sessions == 0 {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    } else {
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(sessions);
    }
    Ok(Arc::new(config))
}

/// Load a certificate chain and private key into a server config (no reload).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    config_for(
        CertStore::load(cert, key)?,
        crate::config::CacheConfig::default().tls_sessions,
    )
}

/// Write a self-signed certificate for `localhost` when either file is missing.
/// Returns whether one was generated.
pub fn ensure_self_signed(cert: &Path, key: &Path) -> Result<bool, TlsError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).map_err(TlsError::Generate)?;
    for path in [cert, key] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| TlsError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
    }
    write_private(key, generated.signing_key.serialize_pem().as_bytes()).map_err(|source| TlsError::Write {
        key: "tls.key",
        path: key.to_owned(),
        source,
    })?;
    std::fs::write(cert, generated.cert.pem()).map_err(|source| TlsError::Write {
        key: "tls.cert",
        path: cert.to_owned(),
        source,
    })?;
    Ok(true)
}

/// Create (or replace) a file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through open(); force it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn self_signed_pair_loads_and_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c/cert.pem"), dir.path().join("c/key.pem"));
        assert!(ensure_self_signed(&cert, &key).unwrap());
        assert!(!ensure_self_signed(&cert, &key).unwrap());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let config = server_config(&cert, &key).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn the_tls_session_cache_holds_at_most_cache_tls_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        ensure_self_signed(&cert, &key).unwrap();
        let store = CertStore::load(&cert, &key).unwrap();
        let two = config_for(store.clone(), 2).unwrap();
        for i in 0..3u8 {
            assert!(two.session_storage.put(vec![i], vec![i]));
        }
        let kept = (0..3u8).filter(|i| two.session_storage.get(&[*i]).is_some()).count();
        assert_eq!(kept, 2);
        let none = config_for(store, 0).unwrap();
        assert!(!none.session_storage.can_cache());
        assert!(!none.session_storage.put(vec![1], vec![1]));
        assert_eq!(none.send_tls13_tickets, 0);
    }

    #[test]
    fn unreadable_files_name_the_key() {
        let err = server_config(Path::new("/nonexistent/c.pem"), Path::new("/nonexistent/k.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tls.cert"), "{err}");
    }
}
