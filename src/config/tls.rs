//! `[tls]`: the serving certificate of the main listener, or its deliberate absence
//! (`server.plaintext = true`, for a sidecar behind a mesh that already does TLS).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub self_signed_if_missing: bool,
    /// How often the certificate files are checked for replacement.
    pub reload_interval: Option<Dur>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub self_signed_if_missing: bool,
    pub reload_interval: Duration,
}

/// `None` when `plaintext` is asked for; exactly one of `[tls]` and `server.plaintext` must be set.
pub(super) fn validate(raw: Option<&RawTls>, plaintext: bool) -> Result<Option<TlsConfig>, ConfigError> {
    Ok(match (raw, plaintext) {
        (Some(_), true) => {
            return Err(ConfigError::invalid(
                "server.plaintext",
                "is true while a [tls] section is present",
                "remove [tls] for a plaintext sidecar, or drop server.plaintext for HTTPS",
            ));
        }
        (None, false) => {
            return Err(ConfigError::invalid(
                "tls",
                "is missing, and plaintext was not asked for",
                "add [tls] with cert and key (PEM paths) for HTTPS, or set server.plaintext = true \
                 for a sidecar behind a mesh that already does TLS",
            ));
        }
        (None, true) => None,
        (Some(t), false) => {
            let cert = t.cert.clone().ok_or_else(|| {
                ConfigError::invalid("tls.cert", "is missing", "set it to the PEM certificate chain path")
            })?;
            let key = t
                .key
                .clone()
                .ok_or_else(|| ConfigError::invalid("tls.key", "is missing", "set it to the PEM private key path"))?;
            let reload_interval = t.reload_interval.map_or(Duration::from_secs(5), |d| d.0);
            if reload_interval < Duration::from_millis(100) {
                return Err(ConfigError::invalid(
                    "tls.reload_interval",
                    "is below 100ms",
                    "use a few seconds (the default is 5s)",
                ));
            }
            Some(TlsConfig {
                cert,
                key,
                self_signed_if_missing: t.self_signed_if_missing,
                reload_interval,
            })
        }
    })
}
